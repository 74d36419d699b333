//! `executions list` and `executions show`: the table of executions and the detail of one.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sagaflow::introspect::StoredView;
use sagaflow::store::ExecutionQuery;
use sagaflow::{ExecutionId, ExecutionState, Trigger};
use serde_json::{Value, json};

use super::Ctx;
use super::views::{live_view, live_views};
use crate::CliError;
use crate::output::{Paint, Table, clip, duration, painted, plain, time, time_opt};

/// One row of `executions list`.
#[derive(serde::Serialize)]
struct Row {
    id: ExecutionId,
    workflow: String,
    status: String,
    ended: bool,
    started_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ended_at: Option<DateTime<Utc>>,
    duration_ms: u128,
    done: u32,
    total: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_step: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

pub(super) async fn list(
    ctx: &Ctx,
    workflow: Option<String>,
    statuses: Vec<String>,
    limit: usize,
) -> Result<(), CliError> {
    let statuses: Vec<String> =
        statuses.iter().map(|s| s.trim().to_ascii_lowercase()).filter(|s| !s.is_empty()).collect();
    for s in &statuses {
        if serde_json::from_value::<sagaflow::Status>(Value::String(s.clone())).is_err() {
            return Err(CliError::Usage(format!(
                "unknown status `{s}`; expected one of pending, running, paused, awaiting, failing, rolling_back, \
                 cancelling, completed, failed, rolled_back, rollback_failed, cancelled"
            )));
        }
    }
    let wanted = |status: &str| statuses.is_empty() || statuses.iter().any(|s| s == status);
    let store = ctx.reads().await?;
    let now = Utc::now();
    let mut rows = Vec::new();
    for v in live_views(&store).await? {
        if workflow.as_deref().is_some_and(|w| w != v.workflow) || !wanted(v.status.as_str()) {
            continue;
        }
        let p = v.progress();
        let failed = v.steps.iter().rev().find(|s| s.error.is_some());
        rows.push(Row {
            id: v.id,
            workflow: v.workflow.clone(),
            status: v.status.to_string(),
            ended: false,
            started_at: v.started_at(),
            ended_at: None,
            duration_ms: (now - v.started_at()).to_std().unwrap_or_default().as_millis(),
            done: p.done,
            total: p.total,
            error_step: failed.map(|s| s.name.clone()),
            error: failed.and_then(|s| s.error.as_ref()).map(ToString::to_string),
        });
    }
    // Ended ones, newest first; with a status filter, from a wider window.
    let window = if statuses.is_empty() { limit } else { limit.saturating_mul(20) };
    let history = store.list_finished(&ExecutionQuery { workflow: workflow.clone(), limit: window }).await?;
    for s in history.iter().filter(|s| wanted(s.status.as_str())) {
        rows.push(ended_row(s));
    }
    if limit > 0 {
        rows.truncate(limit);
    }
    if ctx.json {
        return ctx.print_json(&rows);
    }
    let mut table = Table::new(&["EXECUTION", "WORKFLOW", "STATUS", "STARTED", "DURATION", "STEPS", "ERROR"]);
    for r in &rows {
        let error = match (&r.error_step, &r.error) {
            (Some(step), Some(e)) => format!("{step}: {}", clip(e, 60)),
            (None, Some(e)) => clip(e, 60),
            _ => String::new(),
        };
        table.row(vec![
            plain(r.id.to_string()),
            plain(&r.workflow),
            painted(&r.status, Paint::Status),
            plain(time(r.started_at)),
            plain(duration(Duration::from_millis(r.duration_ms as u64))),
            plain(format!("{}/{}", r.done, r.total)),
            painted(error, Paint::Red),
        ]);
    }
    ctx.table(&table, "no executions")
}

fn ended_row(s: &ExecutionState) -> Row {
    Row {
        id: s.id,
        workflow: s.workflow.clone(),
        status: s.status.to_string(),
        ended: true,
        started_at: s.started_at,
        ended_at: s.ended_at,
        duration_ms: s.duration.as_millis(),
        done: s.progress.done,
        total: s.progress.total,
        error_step: s.failure.as_ref().and_then(|f| f.step.clone()),
        error: s.failure.as_ref().map(|f| f.error.to_string()),
    }
}

pub(super) async fn show(ctx: &Ctx, id: ExecutionId) -> Result<(), CliError> {
    let store = ctx.reads().await?;
    if let Some(state) = store.finished(id).await? {
        return show_ended(ctx, &state);
    }
    match live_view(&store, id).await? {
        Some(view) => show_live(ctx, &view),
        // It may have ended between the two reads.
        None => match store.finished(id).await? {
            Some(state) => show_ended(ctx, &state),
            None => Err(CliError::NotFound(format!("unknown execution {id}: the store has no execution with this id"))),
        },
    }
}

fn trigger(t: &Trigger) -> String {
    match t {
        Trigger::Manual => "manual".into(),
        Trigger::Delayed { at } => format!("delayed to {}", time(*at)),
        Trigger::Scheduled { schedule, fire_time } => format!("{schedule} (tick {})", time(*fire_time)),
        Trigger::Event { name } => format!("event `{name}`"),
        Trigger::Parent { execution, step } => format!("step `{step}` of {execution}"),
        Trigger::Replay { of } => format!("replay of {of}"),
        Trigger::Restart { of, from } => format!("restart of {of} from step `{from}`"),
        other => other.kind().to_owned(),
    }
}

fn show_ended(ctx: &Ctx, s: &ExecutionState) -> Result<(), CliError> {
    if ctx.json {
        return ctx.print_json(&json!({ "ended": true, "state": s }));
    }
    let st = &ctx.style;
    ctx.line(&format!("{} {}", st.paint("execution", Paint::Bold), s.id))?;
    ctx.line(&format!("  workflow  {} (version {})", s.workflow, s.version))?;
    ctx.line(&format!("  status    {}", st.paint(s.status.as_str(), Paint::Status)))?;
    ctx.line(&format!("  trigger   {}", trigger(&s.trigger)))?;
    ctx.line(&format!("  started   {}", time(s.started_at)))?;
    ctx.line(&format!("  ended     {}  ({})", time_opt(s.ended_at), duration(s.duration)))?;
    if s.attempt > 1 {
        ctx.line(&format!("  attempt   {}", s.attempt))?;
    }
    if let Some(p) = s.parent {
        ctx.line(&format!("  parent    {p}"))?;
    }
    if let Some(r) = &s.cancel_reason {
        ctx.line(&format!("  cancelled {r}"))?;
    }
    ctx.line("")?;
    let mut table = Table::new(&["STEP", "STATUS", "ATTEMPTS", "STARTED", "DURATION", "ERROR"]);
    for step in &s.steps {
        let took = match (step.started_at, step.ended_at) {
            (Some(a), Some(b)) => duration((b - a).to_std().unwrap_or_default()),
            _ => "–".into(),
        };
        let name = match &step.graft {
            Some(g) => format!("{} (from {g})", step.name),
            None => step.name.to_string(),
        };
        let error = step.error.as_ref().map(|e| clip(&e.to_string(), 70)).or_else(|| step.skip_reason.clone());
        table.row(vec![
            plain(name),
            painted(step.status.as_str(), Paint::Status),
            plain(step.attempts.to_string()),
            plain(time_opt(step.started_at)),
            plain(took),
            painted(error.unwrap_or_default(), Paint::Red),
        ]);
    }
    ctx.table(&table, "no steps")?;
    if let Some(f) = &s.failure {
        ctx.line("")?;
        let step = f.step.as_deref().unwrap_or("(the workflow)");
        ctx.line(&format!("{} {step} after {} attempt(s): {}", st.paint("failure", Paint::Bold), f.attempts, f.error))?;
    }
    if let Some(rb) = &s.rollback {
        ctx.line(&format!(
            "{} compensated: {}; failed: {}; not run: {}",
            st.paint("rollback", Paint::Bold),
            list_or_none(&rb.compensated),
            list_or_none(&rb.failed.iter().map(|(n, e)| format!("{n} ({e})")).collect::<Vec<_>>()),
            list_or_none(&rb.remaining)
        ))?;
    }
    for e in &s.handler_errors {
        ctx.line(&format!("{} {e}", st.paint("handler error", Paint::Bold)))?;
    }
    ctx.line("")?;
    ctx.line(&st.paint("context", Paint::Bold))?;
    ctx.line(&serde_json::to_string_pretty(&s.context).unwrap_or_default())
}

fn list_or_none(items: &[String]) -> String {
    if items.is_empty() { "none".into() } else { items.join(", ") }
}

fn show_live(ctx: &Ctx, v: &StoredView) -> Result<(), CliError> {
    if ctx.json {
        return ctx.print_json(&json!({ "ended": false, "execution": v }));
    }
    let st = &ctx.style;
    ctx.line(&format!("{} {}", st.paint("execution", Paint::Bold), v.id))?;
    ctx.line(&format!("  workflow  {} (version {})", v.workflow, v.version))?;
    ctx.line(&format!("  status    {} (as its journal shows)", st.paint(v.status.as_str(), Paint::Status)))?;
    ctx.line(&format!("  trigger   {}", trigger(&v.trigger)))?;
    match v.start_at.filter(|_| !v.started) {
        Some(at) => ctx.line(&format!("  starts    {}", time(at)))?,
        None => ctx.line(&format!("  started   {}", time(v.started_at())))?,
    }
    if let Some(h) = v.holder {
        ctx.line(&format!("  held by   node {h}"))?;
    }
    if let Some(p) = v.parent {
        ctx.line(&format!("  parent    {p}"))?;
    }
    ctx.line("")?;
    let mut steps = Table::new(&["STEP", "STATUS", "ATTEMPTS", "LAST ENDED", "ERROR"]);
    for s in &v.steps {
        let name = match &s.graft {
            Some(g) => format!("{} (from {g})", s.name),
            None => s.name.clone(),
        };
        steps.row(vec![
            plain(name),
            painted(s.status.as_str(), Paint::Status),
            plain(s.attempts.to_string()),
            plain(time_opt(s.ended_at)),
            painted(s.error.as_ref().map(|e| clip(&e.to_string(), 70)).unwrap_or_default(), Paint::Red),
        ]);
    }
    ctx.table(&steps, "no steps")?;
    ctx.line("")?;
    ctx.line(&st.paint("timeline", Paint::Bold))?;
    let mut timeline = Table::new(&["#", "AT", "EVENT", "STEP", "ATTEMPT", "OUTCOME", "DETAIL"]);
    for e in &v.timeline {
        timeline.row(vec![
            plain(e.seq.to_string()),
            plain(time_opt(e.at)),
            plain(&e.event),
            plain(e.step.clone().unwrap_or_default()),
            plain(e.attempt.map(|a| a.to_string()).unwrap_or_default()),
            painted(
                e.outcome.clone().unwrap_or_default(),
                if e.outcome.as_deref() == Some("failed") { Paint::Red } else { Paint::Plain },
            ),
            plain(e.detail.as_deref().map(|d| clip(d, 70)).unwrap_or_default()),
        ]);
    }
    ctx.table(&timeline, "(nothing journaled yet)")?;
    ctx.line("")?;
    ctx.line(&format!("{} (its context is known to the engine that holds it)", st.paint("input", Paint::Bold)))?;
    ctx.line(&serde_json::to_string_pretty(&v.input).unwrap_or_default())
}
