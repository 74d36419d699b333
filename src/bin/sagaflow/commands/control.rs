//! Control requests (cancel, pause, resume, signal, restart, replay, purge) and whether the engine applied them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use sagaflow::introspect::StoredView;
use sagaflow::store::{ControlCall, ExecutionQuery, Request, Sent, Store};
use sagaflow::{ExecutionId, Trigger};
use serde_json::json;

use super::Ctx;
use super::views::live_view;
use crate::output::time;
use crate::{CliError, Wait};

/// Sends a request, then (on SQLite) waits for the engine to take it.
pub(super) async fn control(ctx: &Ctx, request: Request, wait: &Wait) -> Result<(), CliError> {
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
fn journaled_as(command: &ControlCall) -> &'static str {
    match command {
        ControlCall::Cancel { .. } => "cancelled",
        ControlCall::Pause => "paused",
        ControlCall::Resume { .. } => "resumed",
        ControlCall::Signal { .. } => "signalled",
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
