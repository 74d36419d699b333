//! One workflow's page: its DAG, its schedules with their next fire times and the
//! events that start it, the statistics of its recent executions (overall and per
//! step), and those executions, newest first.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::extract::rejection::NestedPathRejection;
use axum::extract::{NestedPath, Path, Query, State};
use axum::http::StatusCode;
use axum::response::Html;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Value, json};

use super::page::shell;
use super::source::{RunningRow, ScheduleRow};
use super::stats::Stats;
use super::svg::{dag, escape};
use super::{ApiError, AppState, FRESH_FOR, PageQuery, STATS_WINDOW, base, page_of};
use crate::model::ExecutionId;
use crate::model::execution::ExecutionState;
use crate::model::status::StepStatus;

/// Executions listed on the page when `?limit=` is not given.
const LISTED: usize = 50;

/// What a workflow's page shows but its list of executions, and that list whole.
pub(super) struct Figures {
    head: Value,
    executions: Vec<ExecutionRow>,
}

/// One execution in the list.
#[derive(Clone, Serialize)]
struct ExecutionRow {
    id: ExecutionId,
    status: String,
    trigger: &'static str,
    started_at: DateTime<Utc>,
    duration_ms: f64,
    done: u32,
    total: u32,
    /// Step attempts beyond the first, over all steps.
    retries: u32,
    error_step: Option<String>,
    error: Option<String>,
}

/// What one step adds up to over the recent executions.
#[derive(Serialize, Default)]
struct StepRow {
    name: String,
    /// Executions in which it ran at least once.
    runs: usize,
    completed: usize,
    failed: usize,
    skipped: usize,
    compensated: usize,
    /// Attempts beyond the first.
    retries: u32,
    avg_ms: Option<f64>,
}

fn row(s: &ExecutionState) -> ExecutionRow {
    ExecutionRow {
        id: s.id,
        status: s.status.to_string(),
        trigger: s.trigger.kind(),
        started_at: s.started_at,
        duration_ms: s.duration.as_secs_f64() * 1000.0,
        done: s.progress.done,
        total: s.progress.total,
        retries: s.steps.iter().map(|st| st.attempts.saturating_sub(1)).sum(),
        error_step: s.failure.as_ref().and_then(|f| f.step.clone()),
        error: s.failure.as_ref().map(|f| f.error.to_string()),
    }
}

fn live_row(r: &RunningRow, now: DateTime<Utc>) -> ExecutionRow {
    ExecutionRow {
        id: r.id,
        status: r.status.clone(),
        trigger: "",
        started_at: r.started_at,
        duration_ms: (now - r.started_at).num_microseconds().unwrap_or(0).max(0) as f64 / 1000.0,
        done: r.done,
        total: r.total,
        retries: 0,
        error_step: None,
        error: None,
    }
}

/// Per-step figures, in the definition's step order (steps that grafts added are
/// folded under their graft, so a batch of a thousand images is one row).
fn step_rows(order: &[String], history: &[ExecutionState]) -> Vec<StepRow> {
    let mut rows: BTreeMap<&str, (StepRow, f64, usize)> = BTreeMap::new();
    for name in order {
        rows.insert(name, (StepRow { name: name.clone(), ..StepRow::default() }, 0.0, 0));
    }
    for s in history {
        let mut ran: BTreeMap<&str, bool> = BTreeMap::new();
        for st in &s.steps {
            let key = st.graft.as_deref().unwrap_or(&st.name);
            let Some((r, total_ms, timed)) = rows.get_mut(key) else { continue };
            match st.status {
                StepStatus::Completed if st.graft.is_none() => r.completed += 1,
                StepStatus::Failed => r.failed += 1,
                StepStatus::Skipped if st.graft.is_none() => r.skipped += 1,
                StepStatus::Compensated | StepStatus::CompensationFailed => r.compensated += 1,
                _ => {}
            }
            r.retries += st.attempts.saturating_sub(1);
            if st.attempts > 0 {
                ran.insert(key, true);
            }
            if st.graft.is_none()
                && let (Some(a), Some(b)) = (st.started_at, st.ended_at)
            {
                *total_ms += (b - a).num_microseconds().unwrap_or(0) as f64 / 1000.0;
                *timed += 1;
            }
        }
        for key in ran.keys() {
            if let Some((r, _, _)) = rows.get_mut(key) {
                r.runs += 1;
            }
        }
    }
    order
        .iter()
        .filter_map(|name| rows.remove(name.as_str()))
        .map(|(mut r, total_ms, timed)| {
            r.avg_ms = (timed > 0).then(|| total_ms / timed as f64);
            r
        })
        .collect()
}

impl Figures {
    async fn compute(app: &AppState, name: &str) -> Result<Figures, ApiError> {
        let source = &*app.source;
        let entry = source
            .workflows()
            .await?
            .into_iter()
            .find(|w| w.snapshot.name == name)
            .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("no workflow `{name}` is known")))?;
        let snap = &entry.snapshot;
        let now = source.now();
        let schedules: Vec<ScheduleRow> = source.schedules(name).await?;
        let history = source.history(name, STATS_WINDOW).await?;
        let overview = app.cache.overview(source).await?;
        // Newest first, like the history that follows them.
        let live: Vec<&RunningRow> = overview.running.iter().filter(|r| r.workflow == name).collect();
        let mut executions: Vec<ExecutionRow> = live.iter().map(|r| live_row(r, now)).collect();
        executions.extend(history.iter().map(row));
        let order: Vec<String> = snap.steps.iter().map(|s| s.name.clone()).collect();
        let head = json!({
            "name": name,
            "summary": crate::introspect::summary(snap),
            "description": entry.description,
            "dag": dag(snap, None),
            "schedules": schedules,
            "events": snap.events,
            "stats": Stats::of(&history),
            "steps": step_rows(&order, &history),
            "running": live.len(),
            "now": now,
        });
        Ok(Figures { head, executions })
    }
}

pub(super) async fn api(
    State(app): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<PageQuery>,
) -> Result<Json<Value>, ApiError> {
    let figures = {
        let mut cached = app.cache.workflows.lock().await;
        match cached.get(&name) {
            Some((at, f)) if at.elapsed() < FRESH_FOR => Arc::clone(f),
            _ => {
                let f = Arc::new(Figures::compute(&app, &name).await?);
                // Bounded by the number of workflows: only known names get here.
                cached.insert(name.clone(), (Instant::now(), Arc::clone(&f)));
                f
            }
        }
    };
    let mut answer = figures.head.clone();
    answer["executions"] = json!(page_of(&figures.executions, q.offset, q.limit.or(Some(LISTED))));
    answer["executions_total"] = json!(figures.executions.len());
    Ok(Json(answer))
}

pub(super) async fn page(
    State(app): State<AppState>,
    nested: Result<NestedPath, NestedPathRejection>,
    Path(name): Path<String>,
) -> Result<Html<String>, ApiError> {
    if !app.source.workflows().await?.iter().any(|w| w.snapshot.name == name) {
        return Err(ApiError(StatusCode::NOT_FOUND, format!("no workflow `{name}` is known")));
    }
    Ok(Html(render(&base(nested), &name)))
}

fn render(base: &str, name: &str) -> String {
    let body = format!(
        r#"<p><a href="{home}">← all workflows</a></p>
<h1>Workflow <code>{name}</code></h1>
<p id="about"></p>
<div id="dag"></div>
<h2>Schedules and triggers</h2>
<table id="schedules"><thead><tr><th>Schedule</th><th>Misfire</th><th>Last fire</th><th>Next fires</th></tr></thead><tbody></tbody></table>
<p id="events"></p>
<h2>Statistics</h2>
<p id="stats"></p>
<table id="step-stats"><thead><tr><th>Step</th><th>Ran in</th><th>Completed</th><th>Failed</th><th>Skipped</th>
<th>Compensated</th><th>Retries</th><th>Average</th></tr></thead><tbody></tbody></table>
<h2>Recent executions</h2>
<table id="executions"><thead><tr><th>Execution</th><th>Status</th><th>Trigger</th><th>Started</th><th>Duration</th>
<th>Progress</th><th>Retries</th><th>Error</th></tr></thead><tbody></tbody></table>"#,
        home = escape(if base.is_empty() { "/" } else { base }),
        name = escape(name),
    );
    let name_js = serde_json::to_string(name).unwrap_or_else(|_| "\"\"".into());
    let script = format!(
        r#"
const NAME = {name_js};
const concerns = (event) => event.workflow_name === NAME;
const when = (t, now) => {{
  const s = Math.round((Date.parse(t) - now) / 1000);
  const rel = Math.abs(s) < 90 ? s + ' s' : Math.abs(s) < 5400 ? Math.round(s / 60) + ' min' : Math.round(s / 3600) + ' h';
  const ago = s === 0 ? 'now' : (s > 0 ? 'in ' + rel : rel.replace('-', '') + ' ago');
  return esc(t.replace('T', ' ').replace(/\.\d+/, '')) + ' <small>(' + ago + ')</small>';
}};
async function load() {{
  const res = await get('/api/workflows/' + encodeURIComponent(NAME));
  if (res === null) return;
  if (!res.ok) {{ flash('cannot load the workflow: ' + res.status); return; }}
  const d = await res.json();
  const now = Date.parse(d.now);
  const sm = d.summary;
  document.getElementById('about').innerHTML = [
    d.description ? esc(d.description) : null,
    sm.steps + ' steps', sm.parallel_groups + ' parallel groups', sm.grafts + ' grafts',
    sm.has_rollback ? 'with rollbacks' : 'no rollbacks', 'trigger: ' + esc(sm.trigger),
    sm.tags.length ? 'tags: ' + sm.tags.map(esc).join(', ') : null,
    d.running + ' running',
  ].filter(Boolean).join(' · ');
  document.getElementById('dag').innerHTML = d.dag;
  document.querySelector('#schedules tbody').innerHTML = d.schedules.length ? d.schedules.map((s) =>
    `<tr class="schedule"><td>${{esc(s.schedule)}}</td><td>${{esc(s.misfire)}}</td>
     <td>${{s.last_fire ? when(s.last_fire, now) : '–'}}</td>
     <td class="next-fires">${{s.next.map((t) => `<div class="fire">${{when(t, now)}}</div>`).join('') || '–'}}</td></tr>`).join('')
    : '<tr><td colspan="4">no schedule: started by hand, by events or by a parent</td></tr>';
  document.getElementById('events').textContent = d.events.length ? 'Started by the events: ' + d.events.join(', ') : '';
  const st = d.stats;
  const errors = Object.entries(st.errors).map(([k, n]) => esc(k) + ' × ' + n).join(', ');
  document.getElementById('stats').innerHTML = st.ended === 0 ? 'No execution has ended yet.' :
    `<span class="ended">${{st.ended}}</span> ended: ${{st.completed}} completed, ${{st.failed}} failed, ${{st.cancelled}} cancelled —
     success <strong class="success">${{st.success_rate.toFixed(1)}} %</strong>, average ${{ms(st.avg_ms)}}, p95 ${{ms(st.p95_ms)}}`
    + (errors ? ` — errors: <span class="errors">${{errors}}</span>` : '');
  document.querySelector('#step-stats tbody').innerHTML = d.steps.map((s) =>
    `<tr data-step="${{esc(s.name)}}"><td>${{esc(s.name)}}</td><td>${{s.runs}}</td><td>${{s.completed}}</td>
     <td class="${{s.failed ? 'failed' : ''}}">${{s.failed}}</td><td>${{s.skipped}}</td><td>${{s.compensated}}</td>
     <td class="retries">${{s.retries}}</td><td>${{ms(s.avg_ms)}}</td></tr>`).join('');
  document.querySelector('#executions tbody').innerHTML = d.executions.map((e) =>
    `<tr data-execution="${{e.id}}"><td><a href="${{BASE}}/executions/${{e.id}}">${{e.id}}</a></td>
     <td class="status ${{esc(e.status)}}">${{esc(e.status)}}</td><td>${{esc(e.trigger)}}</td><td>${{when(e.started_at, now)}}</td>
     <td>${{ms(e.duration_ms)}}</td><td>${{e.done}} / ${{e.total}}</td><td class="retries">${{e.retries}}</td>
     <td>${{esc(e.error_step ? e.error_step + ': ' + e.error : '')}}</td></tr>`).join('');
}}
"#
    );
    shell(&format!("sagaflow — {name}"), base, &body, &script)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::model::execution::StepState;
    use crate::store::conformance::{final_state, new_execution};

    fn step(name: &str, status: StepStatus, attempts: u32, ms: i64, graft: Option<&str>) -> StepState {
        let t0 = Utc::now();
        StepState {
            name: name.into(),
            status,
            attempts,
            started_at: Some(t0),
            ended_at: Some(t0 + chrono::Duration::milliseconds(ms)),
            error: None,
            skip_reason: None,
            graft: graft.map(str::to_owned),
            child: None,
            compensation_error: None,
            history: Vec::new(),
            compensations: Vec::new(),
        }
    }

    fn ended(steps: Vec<StepState>) -> ExecutionState {
        let n = new_execution("w", Utc::now());
        let mut s = final_state(&n, crate::model::status::Status::Completed, n.created_at);
        s.duration = Duration::from_millis(10);
        s.steps = steps;
        s
    }

    #[test]
    fn step_figures_add_up_over_executions_and_fold_grafted_steps() {
        let history = vec![
            ended(vec![
                step("fetch", StepStatus::Completed, 1, 10, None),
                step("fan", StepStatus::Completed, 1, 2, None),
                step("item_1", StepStatus::Completed, 2, 5, Some("fan")),
                step("item_2", StepStatus::Failed, 4, 5, Some("fan")),
            ]),
            ended(vec![
                step("fetch", StepStatus::Compensated, 3, 30, None),
                step("fan", StepStatus::Pending, 0, 0, None),
            ]),
        ];
        let rows = step_rows(&["fetch".into(), "fan".into()], &history);
        assert_eq!(rows.len(), 2);
        let fetch = &rows[0];
        assert_eq!((fetch.runs, fetch.completed, fetch.compensated, fetch.retries), (2, 1, 1, 2));
        assert_eq!(fetch.avg_ms, Some(20.0));
        let fan = &rows[1];
        assert_eq!(
            (fan.runs, fan.completed, fan.failed, fan.retries),
            (1, 1, 1, 4),
            "grafted steps count under their graft"
        );
    }
}
