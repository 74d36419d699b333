//! What each command does.

use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use sagaflow::introspect::{self, StoredView};
use sagaflow::store::{
    Command, ExecutionQuery, Request, Sent, Store, StoreControl, StoreError, StoredExecution, open_for_reading,
    redact_url,
};
use sagaflow::{DefinitionSnapshot, DiagramOptions, ExecutionId, ExecutionState, Trigger};
use serde_json::{Map, Value, json};

use super::output::{Paint, Style, Table, clip, duration, painted, plain, time, time_opt};
use super::{Cli, CliError, DeadLetters, Executions, Format, Schedules, Serve, Top, Wait, Workflows};

/// What a command needs: the store URL, the output and its style.
struct Ctx {
    url: String,
    json: bool,
    style: Style,
    out: std::io::Stdout,
}

impl Ctx {
    async fn reads(&self) -> Result<Arc<dyn Store>, CliError> {
        Ok(open_for_reading(&self.url).await?)
    }

    async fn control(&self) -> Result<StoreControl, CliError> {
        Ok(StoreControl::open(&self.url).await?)
    }

    fn print_json(&self, value: &impl serde::Serialize) -> Result<(), CliError> {
        let text = serde_json::to_string_pretty(value).map_err(|e| CliError::Other(e.to_string()))?;
        writeln!(self.out.lock(), "{text}")?;
        Ok(())
    }

    fn line(&self, text: &str) -> Result<(), CliError> {
        writeln!(self.out.lock(), "{text}")?;
        Ok(())
    }

    fn table(&self, table: &Table, empty: &str) -> Result<(), CliError> {
        if table.is_empty() {
            return self.line(empty);
        }
        table.print(&self.style, &mut self.out.lock())?;
        Ok(())
    }
}

pub(crate) async fn run(cli: Cli) -> Result<(), CliError> {
    let url = cli.store.clone().filter(|u| !u.is_empty()).ok_or_else(|| {
        CliError::Usage("no store: pass `--store sqlite://file.db` (or `postgres://...`) or set SAGAFLOW_STORE".into())
    })?;
    let ctx = Ctx { url, json: cli.json, style: Style::new(cli.color), out: std::io::stdout() };
    match cli.command {
        Top::Executions(Executions::List { workflow, status, limit }) => list(&ctx, workflow, status, limit).await,
        Top::Executions(Executions::Show { id }) => show(&ctx, parse_id(&id)?).await,
        Top::Executions(Executions::Cancel { id, reason, rollback, cleanup, wait }) => {
            let command = Command::Cancel { reason, cleanup, rollback };
            control(&ctx, Request::Control { execution: parse_id(&id)?, command }, &wait).await
        }
        Top::Executions(Executions::Pause { id, wait }) => {
            control(&ctx, Request::Control { execution: parse_id(&id)?, command: Command::Pause }, &wait).await
        }
        Top::Executions(Executions::Resume { id, context, step, wait }) => {
            let context = parse_context(context.as_deref())?;
            let command = Command::Resume { step, context };
            control(&ctx, Request::Control { execution: parse_id(&id)?, command }, &wait).await
        }
        Top::Executions(Executions::Signal { id, name, payload, wait }) => {
            let command = Command::Signal { name: signal_name(&name)?, payload: parse_payload(payload.as_deref())? };
            control(&ctx, Request::Control { execution: parse_id(&id)?, command }, &wait).await
        }
        Top::Executions(Executions::Restart { id, from, context, wait }) => {
            let request = Request::RestartFrom {
                execution: parse_id(&id)?,
                step: from,
                context: parse_context(context.as_deref())?,
            };
            control(&ctx, request, &wait).await
        }
        Top::Executions(Executions::Purge { older_than, workflow, wait }) => {
            let age = sagaflow::DurationArg::from(older_than.as_str())
                .to_duration()
                .map_err(|e| CliError::Usage(format!("`--older-than {older_than}`: {e}")))?;
            let age = chrono::Duration::from_std(age)
                .map_err(|_| CliError::Usage(format!("`--older-than {older_than}` is too long")))?;
            let ended_before = Utc::now() - age;
            control(&ctx, Request::PurgeHistory { workflow, ended_before }, &wait).await
        }
        Top::DeadLetters(DeadLetters::List { workflow }) => letters(&ctx, workflow).await,
        Top::DeadLetters(DeadLetters::Replay { id, wait }) => {
            control(&ctx, Request::ReplayDeadLetter { id: parse_id(&id)? }, &wait).await
        }
        Top::DeadLetters(DeadLetters::Purge { ids, expired, wait }) => purge(&ctx, ids, expired, &wait).await,
        Top::Workflows(Workflows::List) => workflows(&ctx).await,
        Top::Workflows(Workflows::Show { name, format }) => workflow(&ctx, &name, format).await,
        Top::Schedules(Schedules::List { workflow, next }) => schedules(&ctx, workflow, next).await,
        Top::Serve(serve_args) => serve(&ctx, serve_args).await,
    }
}

fn parse_id(text: &str) -> Result<ExecutionId, CliError> {
    text.parse::<ExecutionId>().map_err(|e| CliError::Usage(e.to_string()))
}

fn parse_context(text: Option<&str>) -> Result<Map<String, Value>, CliError> {
    let Some(text) = text else { return Ok(Map::new()) };
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(other) => Err(CliError::Usage(format!("`--context` must be a JSON object, got `{other}`"))),
        Err(e) => Err(CliError::Usage(format!("`--context` is not JSON: {e}"))),
    }
}

fn signal_name(name: &str) -> Result<String, CliError> {
    if name.trim().is_empty() {
        return Err(CliError::Usage("a signal name cannot be empty".into()));
    }
    Ok(name.to_owned())
}

fn parse_payload(text: Option<&str>) -> Result<Value, CliError> {
    let Some(text) = text else { return Ok(Value::Null) };
    serde_json::from_str(text).map_err(|e| CliError::Usage(format!("`--payload` is not JSON: {e}")))
}

/// Definition snapshots by (workflow, version), each read once.
struct Snapshots {
    store: Arc<dyn Store>,
    seen: HashMap<(String, String), Option<DefinitionSnapshot>>,
}

impl Snapshots {
    fn new(store: &Arc<dyn Store>) -> Self {
        Snapshots { store: Arc::clone(store), seen: HashMap::new() }
    }

    async fn view(
        &mut self,
        stored: &StoredExecution,
        holder: Option<sagaflow::store::NodeId>,
    ) -> Result<StoredView, StoreError> {
        let key = (stored.execution.workflow.clone(), stored.execution.version.clone());
        if !self.seen.contains_key(&key) {
            let snap = self.store.definition_version(&key.0, &key.1).await?;
            self.seen.insert(key.clone(), snap);
        }
        Ok(StoredView::of(stored, holder, self.seen[&key].as_ref()))
    }
}

/// Every unfinished execution, as its row and journal show it.
async fn live_views(store: &Arc<dyn Store>) -> Result<Vec<StoredView>, CliError> {
    let mut snapshots = Snapshots::new(store);
    let mut out = Vec::new();
    for stored in store.unfinished().await? {
        out.push(snapshots.view(&stored, None).await?);
    }
    out.sort_by_key(|v| std::cmp::Reverse((v.started_at(), v.id)));
    Ok(out)
}

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

async fn list(ctx: &Ctx, workflow: Option<String>, statuses: Vec<String>, limit: usize) -> Result<(), CliError> {
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

/// The stored view of an unfinished execution, with its holder on a cluster.
async fn live_view(store: &Arc<dyn Store>, id: ExecutionId) -> Result<Option<StoredView>, CliError> {
    let mut snapshots = Snapshots::new(store);
    if let Some(cluster) = store.cluster() {
        return match cluster.load(id).await? {
            Some(shared) => Ok(Some(snapshots.view(&shared.stored, shared.holder).await?)),
            None => Ok(None),
        };
    }
    for stored in store.unfinished().await? {
        if stored.execution.id == id {
            return Ok(Some(snapshots.view(&stored, None).await?));
        }
    }
    Ok(None)
}

async fn show(ctx: &Ctx, id: ExecutionId) -> Result<(), CliError> {
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

/// Sends a request, then (on SQLite) waits for the engine to take it.
async fn control(ctx: &Ctx, request: Request, wait: &Wait) -> Result<(), CliError> {
    if !(wait.wait.is_finite() && wait.wait >= 0.0) {
        return Err(CliError::Usage(format!("`--wait` must be a number of seconds, got {}", wait.wait)));
    }
    let control = ctx.control().await?;
    let action = request.action();
    let target = request.execution();
    // How many events of the kind this request journals there are before it, to
    // tell afterwards whether the engine applied it.
    let before = match &request {
        Request::Control { execution, command } => match live_view(&control.store(), *execution).await? {
            Some(v) => count_events(&v, journaled_as(command)),
            None => 0,
        },
        Request::RestartFrom { execution, .. } => restarts_of(&control.store(), *execution).await?.len(),
        _ => 0,
    };
    let sent = control.send(request.clone()).await?;
    let what = match target {
        Some(id) => format!("{action} of {id}"),
        None => action.to_owned(),
    };
    let (queued, note) = match &sent {
        Sent::Queued { holder: Some(h), .. } => {
            (true, format!("{what} queued for the engine that holds the file ({h}); it applies it once it sees it"))
        }
        Sent::Queued { holder: None, .. } => {
            (true, format!("{what} queued; no engine holds the file now: it applies once one opens the file"))
        }
        Sent::QueuedForHolder { .. } => {
            (true, format!("{what} queued for the node that holds the execution; it applies once that node sees it"))
        }
        Sent::Written { execution: Some(new), .. } => {
            (false, format!("{what}: new execution {new}, started by whichever node claims it"))
        }
        Sent::Written { removed, .. } if matches!(request, Request::PurgeHistory { .. }) => {
            (false, format!("{what}: {removed} ended execution(s) removed"))
        }
        Sent::Written { removed, .. } => (false, format!("{what}: {removed} dead letter(s) removed")),
        _ => (true, format!("{what} sent")),
    };
    // On SQLite, wait for the engine to take it and look for its effect.
    let mut taken = None;
    let mut effect = None;
    if matches!(sent, Sent::Queued { holder: Some(_), .. }) && wait.wait > 0.0 {
        let deadline = Instant::now() + Duration::from_secs_f64(wait.wait.min(3600.0));
        loop {
            match control.is_pending(&sent).await? {
                Some(false) => {
                    taken = Some(true);
                    break;
                }
                _ if Instant::now() >= deadline => {
                    taken = Some(false);
                    break;
                }
                _ => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
        if taken == Some(true) {
            effect = Some(effect_of(&control.store(), &request, before).await?);
        }
    }
    // On PostgreSQL, the node that holds the execution records the outcome.
    if matches!(sent, Sent::QueuedForHolder { .. }) && wait.wait > 0.0 {
        let deadline = Instant::now() + Duration::from_secs_f64(wait.wait.min(3600.0));
        loop {
            if let Some(outcome) = control.outcome(&sent).await? {
                taken = Some(true);
                effect = Some(outcome.map(|()| "the node that holds it carried it out".to_owned()));
                break;
            }
            if Instant::now() >= deadline {
                taken = Some(false);
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    if ctx.json {
        let mut answer = json!({ "action": action, "execution": target, "queued": queued, "note": note });
        if let Sent::Written { execution, removed } = &sent {
            answer["new_execution"] = json!(execution);
            answer["removed"] = json!(removed);
        }
        if let Some(t) = taken {
            answer["taken"] = json!(t);
        }
        if let Some(e) = &effect {
            answer["applied"] = json!(e.is_ok());
            answer["effect"] = json!(match e {
                Ok(s) | Err(s) => s,
            });
        }
        ctx.print_json(&answer)?;
    } else {
        ctx.line(&note)?;
        match (taken, &effect) {
            (Some(false), _) => {
                ctx.line(&format!("the engine has not taken it within {} s; it stays queued", wait.wait))?
            }
            (_, Some(Ok(e))) => ctx.line(&format!("applied: {e}"))?,
            _ => {}
        }
    }
    match effect {
        Some(Err(e)) => Err(CliError::Conflict(format!("the engine took the request but it did not apply: {e}"))),
        _ => Ok(()),
    }
}

/// The journal event a control command produces.
fn journaled_as(command: &Command) -> &'static str {
    match command {
        Command::Cancel { .. } => "cancelled",
        Command::Pause => "paused",
        Command::Resume { .. } => "resumed",
        Command::Signal { .. } => "signalled",
        _ => "",
    }
}

/// The executions that restart `id`, live or ended (among the 200 newest ended
/// of its workflow), oldest first.
async fn restarts_of(store: &Arc<dyn Store>, id: ExecutionId) -> Result<Vec<(DateTime<Utc>, ExecutionId)>, CliError> {
    let of_it = |t: &Trigger| matches!(t, Trigger::Restart { of, .. } if *of == id);
    let workflow = store.finished(id).await?.map(|s| s.workflow);
    let mut found: Vec<(DateTime<Utc>, ExecutionId)> = store
        .unfinished()
        .await?
        .into_iter()
        .filter(|s| of_it(&s.execution.trigger))
        .map(|s| (s.execution.created_at, s.execution.id))
        .collect();
    let ended = store.list_finished(&ExecutionQuery { workflow, limit: 200 }).await?;
    found.extend(ended.into_iter().filter(|s| of_it(&s.trigger)).map(|s| (s.started_at, s.id)));
    found.sort();
    Ok(found)
}

fn count_events(v: &StoredView, event: &str) -> usize {
    v.timeline.iter().filter(|e| e.event == event).count()
}

/// What the store shows of a request the engine took: `Ok` with what changed,
/// `Err` when nothing did (the request did not apply). `before` is how many
/// events of the kind a control call journals the execution had before it.
async fn effect_of(
    store: &Arc<dyn Store>,
    request: &Request,
    before: usize,
) -> Result<Result<String, String>, CliError> {
    match request {
        Request::Control { execution, command } => {
            if let Some(state) = store.finished(*execution).await? {
                return Ok(Ok(format!("the execution ended {}", state.status)));
            }
            let Some(v) = live_view(store, *execution).await? else {
                return Ok(Err("the execution is gone from the store".into()));
            };
            let event = journaled_as(command);
            Ok(if count_events(&v, event) > before {
                Ok(format!("its journal shows it {event} (it is {} now)", v.status))
            } else {
                Err(format!("its journal shows no new `{event}` (it is {}); the engine's log says why", v.status))
            })
        }
        Request::ReplayDeadLetter { id } => {
            let replay = Trigger::Replay { of: *id };
            let live =
                store.unfinished().await?.into_iter().find(|s| s.execution.trigger == replay).map(|s| s.execution.id);
            let new = match live {
                Some(n) => Some(n),
                None => store
                    .list_finished(&ExecutionQuery { workflow: None, limit: 200 })
                    .await?
                    .into_iter()
                    .find(|s| s.trigger == replay)
                    .map(|s| s.id),
            };
            Ok(match new {
                Some(n) => Ok(format!("new execution {n}")),
                None if store.dead_letters(None).await?.iter().all(|d| d.id != *id) => {
                    Ok("the dead letter was replayed".into())
                }
                None => Err("the dead letter is still there".into()),
            })
        }
        Request::RemoveDeadLetter { id } => Ok(if store.dead_letters(None).await?.iter().any(|d| d.id == *id) {
            Err("the dead letter is still there".into())
        } else {
            Ok("the dead letter is gone".into())
        }),
        Request::RestartFrom { execution, .. } => {
            let restarts = restarts_of(store, *execution).await?;
            Ok(match restarts.get(before..).and_then(|new| new.last()) {
                Some((_, n)) => Ok(format!("new execution {n}")),
                None => Err("no new restart of it is in the store".to_owned()),
            })
        }
        Request::PurgeHistory { workflow, ended_before } => {
            let query = ExecutionQuery { workflow: workflow.clone(), limit: 0 };
            let left = store
                .list_finished(&query)
                .await?
                .iter()
                .filter(|s| s.ended_at.unwrap_or(s.started_at) < *ended_before)
                .count();
            Ok(if left == 0 {
                Ok(format!("no execution that ended before {} is left", time(*ended_before)))
            } else {
                Err(format!("{left} executions that ended before {} are left", time(*ended_before)))
            })
        }
        Request::PurgeExpiredDeadLetters => {
            let now = Utc::now();
            let left = store.dead_letters(None).await?.iter().filter(|d| d.expires_at <= now).count();
            Ok(if left == 0 {
                Ok("no expired dead letter is left".into())
            } else {
                Err(format!("{left} expired dead letters are left"))
            })
        }
        _ => Ok(Ok(String::new())),
    }
}

async fn letters(ctx: &Ctx, workflow: Option<String>) -> Result<(), CliError> {
    let store = ctx.reads().await?;
    let mut letters = store.dead_letters(workflow.as_deref()).await?;
    letters.reverse();
    if ctx.json {
        let rows: Vec<Value> = letters
            .iter()
            .map(|d| {
                json!({
                    "id": d.id, "workflow": d.workflow, "error_step": d.error_step,
                    "error": d.error.as_ref().map(ToString::to_string), "failed_at": d.failed_at,
                    "expires_at": d.expires_at, "input": d.input,
                })
            })
            .collect();
        return ctx.print_json(&rows);
    }
    let mut table = Table::new(&["EXECUTION", "WORKFLOW", "FAILED STEP", "ERROR", "FAILED AT", "EXPIRES"]);
    for d in &letters {
        table.row(vec![
            plain(d.id.to_string()),
            plain(&d.workflow),
            plain(d.error_step.clone().unwrap_or_default()),
            painted(d.error.as_ref().map(|e| clip(&e.to_string(), 60)).unwrap_or_default(), Paint::Red),
            plain(time(d.failed_at)),
            plain(time(d.expires_at)),
        ]);
    }
    ctx.table(&table, "no dead letters")
}

async fn purge(ctx: &Ctx, ids: Vec<String>, expired: bool, wait: &Wait) -> Result<(), CliError> {
    if ids.is_empty() && !expired {
        return Err(CliError::Usage("name the dead letters to remove, or pass `--expired`".into()));
    }
    for id in &ids {
        control(ctx, Request::RemoveDeadLetter { id: parse_id(id)? }, wait).await?;
    }
    if expired {
        control(ctx, Request::PurgeExpiredDeadLetters, wait).await?;
    }
    Ok(())
}

async fn workflows(ctx: &Ctx) -> Result<(), CliError> {
    let store = ctx.reads().await?;
    let defs = store.definitions().await?;
    let infos: Vec<_> = defs.iter().map(|d| introspect::workflow_info(d, 0)).collect();
    if ctx.json {
        let rows: Vec<Value> = infos
            .iter()
            .map(|i| {
                json!({
                    "name": i.name, "version": i.version, "label": i.label, "steps": i.steps,
                    "trigger": i.trigger_type.as_str(), "schedules": i.schedules, "events": i.events, "tags": i.tags,
                })
            })
            .collect();
        return ctx.print_json(&rows);
    }
    let mut table = Table::new(&["WORKFLOW", "VERSION", "STEPS", "TRIGGER", "SCHEDULES", "EVENTS", "TAGS"]);
    for i in &infos {
        let version = match &i.label {
            Some(l) => format!("{l} ({})", i.version),
            None => i.version.clone(),
        };
        table.row(vec![
            painted(&i.name, Paint::Bold),
            plain(version),
            plain(i.steps.to_string()),
            plain(i.trigger_type.as_str()),
            plain(i.schedules.join("; ")),
            plain(i.events.join(", ")),
            plain(i.tags.join(", ")),
        ]);
    }
    ctx.table(&table, "no workflows: no engine has registered one on this store")
}

async fn workflow(ctx: &Ctx, name: &str, format: Format) -> Result<(), CliError> {
    let store = ctx.reads().await?;
    let defs = store.definitions().await?;
    let Some(def) = defs.iter().find(|d| d.name == name) else {
        let known: Vec<String> = defs.iter().map(|d| format!("`{}`", d.name)).collect();
        let known = if known.is_empty() { "none".to_owned() } else { known.join(", ") };
        return Err(CliError::NotFound(format!("unknown workflow `{name}`; workflows in the store: {known}")));
    };
    if ctx.json {
        return ctx.print_json(&json!({ "definition": def, "summary": introspect::summary(def) }));
    }
    let text = match format {
        Format::Table => {
            let s = introspect::summary(def);
            let head = format!(
                "{} {} (version {}): {} steps, {} parallel groups, {} grafts, trigger {}",
                ctx.style.paint("workflow", Paint::Bold),
                def.name,
                def.version,
                s.steps,
                s.parallel_groups,
                s.grafts,
                s.trigger
            );
            format!("{head}\n\n{}", introspect::to_table(def))
        }
        Format::Mermaid => introspect::to_mermaid(def, &DiagramOptions::new()),
        Format::Dot => introspect::to_dot(def, &DiagramOptions::new()),
    };
    ctx.line(text.trim_end())
}

async fn schedules(ctx: &Ctx, workflow: Option<String>, next: usize) -> Result<(), CliError> {
    let store = ctx.reads().await?;
    let defs: Vec<DefinitionSnapshot> =
        store.definitions().await?.into_iter().filter(|d| workflow.as_deref().is_none_or(|w| w == d.name)).collect();
    if let Some(w) = &workflow
        && defs.is_empty()
    {
        return Err(CliError::NotFound(format!("unknown workflow `{w}`")));
    }
    let ticks = store.last_ticks().await?;
    let now = Utc::now();
    let rows = sagaflow::stored_schedules(&defs, &ticks, now, next.max(1));
    if ctx.json {
        return ctx.print_json(&rows);
    }
    let mut table = Table::new(&["WORKFLOW", "#", "SCHEDULE", "MISFIRE", "LAST FIRE", "NEXT FIRE"]);
    for r in &rows {
        let next = match (&r.problem, r.next.first()) {
            (Some(p), _) => p.clone(),
            (None, None) => "none (fired, or its window closed)".into(),
            (None, Some(_)) => r
                .next
                .iter()
                .take(next.max(1))
                .map(|t| if *t < now { format!("{} (due)", time(*t)) } else { time(*t) })
                .collect::<Vec<_>>()
                .join(", "),
        };
        table.row(vec![
            plain(&r.workflow),
            plain(r.index.to_string()),
            plain(&r.schedule),
            plain(r.misfire.map(|m| format!("{m:?}").to_lowercase()).unwrap_or_default()),
            plain(time_opt(r.last_fire)),
            plain(next),
        ]);
    }
    ctx.table(&table, "no schedules")
}

async fn serve(ctx: &Ctx, args: Serve) -> Result<(), CliError> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host(args.listen.as_str())
        .await
        .map_err(|e| CliError::Usage(format!("`--listen {}` is not an address to listen on: {e}", args.listen)))?
        .collect();
    let Some(&addr) = addrs.first() else {
        return Err(CliError::Usage(format!("`--listen {}` names no address", args.listen)));
    };
    let loopback = addrs.iter().all(|a| a.ip().is_loopback());
    let token = args.token.filter(|t| !t.is_empty());
    if !loopback && token.is_none() {
        return Err(CliError::Usage(format!(
            "refusing to serve on {addr} without authentication: anyone who reaches it would see every \
             execution's data; pass `--token` (or set SAGAFLOW_DASHBOARD_TOKEN), or listen on a loopback address"
        )));
    }
    let path = args.path.trim_end_matches('/').to_owned();
    if !path.is_empty() && !path.starts_with('/') {
        return Err(CliError::Usage(format!("`--path {}` must start with `/`", args.path)));
    }
    let reads = ctx.reads().await?;
    let control = ctx.control().await?;
    let dashboard = sagaflow::dashboard::Dashboard::over_store(reads, Some(control));
    let (router, actions) = match &token {
        Some(t) => {
            (dashboard.bearer_token(t.clone()).map_err(|e| CliError::Usage(format!("`--token`: {e}")))?.router(), true)
        }
        None => (dashboard.router(), false),
    };
    let app = if path.is_empty() { router } else { axum::Router::new().nest(&path, router) };
    // Without a token, only loopback clients that name a loopback host: a web page
    // cannot use DNS rebinding to read the dashboard through the browser.
    let app = if token.is_none() { app.layer(axum::middleware::from_fn(loopback_host_only)) } else { app };
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| CliError::Other(format!("cannot listen on {addr}: {e}")))?;
    let bound = listener.local_addr().map_err(|e| CliError::Other(e.to_string()))?;
    let url = format!("http://{bound}{}", if path.is_empty() { "/" } else { &path });
    if ctx.json {
        ctx.print_json(&json!({ "listening": url, "store": redact_url(&ctx.url), "actions": actions }))?;
    } else {
        ctx.line(&format!("sagaflow dashboard: {url}"))?;
        ctx.line(&format!("store: {}", redact_url(&ctx.url)))?;
        ctx.line(if actions {
            "every request needs the token; browsers log in once"
        } else {
            "read-only: no token, so no actions (pass `--token` to enable cancel, pause, resume and retry)"
        })?;
    }
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .map_err(|e| CliError::Other(format!("the dashboard stopped: {e}")))
}

async fn loopback_host_only(req: axum::extract::Request, next: axum::middleware::Next) -> axum::response::Response {
    use axum::response::IntoResponse;
    let host = req.headers().get(axum::http::header::HOST).and_then(|h| h.to_str().ok()).unwrap_or_default();
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => host.split(':').next().unwrap_or_default(),
    };
    let loopback =
        name.eq_ignore_ascii_case("localhost") || name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
    if loopback {
        next.run(req).await
    } else {
        (axum::http::StatusCode::FORBIDDEN, "this dashboard answers requests for a loopback host only").into_response()
    }
}
