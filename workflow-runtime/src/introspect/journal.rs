//! An unfinished execution as its store row and journal show it, without
//! replaying the journal: for tools that have the store but not the workflow's
//! code (the command line, the dashboard over a store, a node of a cluster looking
//! at an execution that another node holds).
//!
//! Replaying a journal rebuilds the exact state, but it needs the definition's
//! code, and it runs user code again (graft functions), so a tool never does it.
//! What the journal says on its own is a timeline (every step attempt that ended,
//! timers, pauses, resumes, cancellation) and, from it, where each step and the
//! execution stand *as far as the journal shows*: a step that is running now
//! shows as `pending` (starting a step is not journaled), and a failed attempt
//! shows as `retrying` while retries remain by the step's `max_retries`.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::machine::event::{ExecutionEvent, HandlerKind, StepReport};
use crate::model::execution::{ExecutionState, FailureInfo, Progress, StepState, Trigger};
use crate::model::status::{Status, StepStatus};
use crate::model::{DefinitionSnapshot, ExecutionId, StepError, format_duration};
use crate::store::{NodeId, StoredExecution};

/// One journal event, as a line of a timeline.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[non_exhaustive]
pub struct TimelineEntry {
    /// Its position in the journal, from 1.
    pub seq: u64,
    /// When it happened (`None` for an event this build cannot read).
    pub at: Option<DateTime<Utc>>,
    /// What happened: `step_finished`, `timer_fired`, `resumed`, `paused`,
    /// `cancelled`, `compensation_finished`, `handler_finished`, `child_started`,
    /// `recovered`, `aborted`, `signalled`, `signal_taken` (or `unreadable`).
    pub event: String,
    /// The step it concerns.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    /// The step's attempt.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u32>,
    /// For a step attempt, what it reported: `done`, `output`, `skip`, `await`,
    /// `snooze`, `expand`, `failed`; for a compensation or a handler, `ok` or
    /// `failed`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
    /// More: the error, the skip or cancel reason, the snooze delay, the keys a
    /// resume merged, the child execution...
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// One step, as the journal shows it.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[non_exhaustive]
pub struct JournalStep {
    /// Name.
    pub name: String,
    /// Where it stands as far as the journal shows (`pending` for a step that
    /// is running now or has not started).
    pub status: StepStatus,
    /// Attempts that ended.
    pub attempts: u32,
    /// When its latest attempt ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<DateTime<Utc>>,
    /// Its latest error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<StepError>,
    /// The graft that added it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub graft: Option<String>,
    /// The child execution of a nested-workflow step.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub child: Option<ExecutionId>,
}

/// An unfinished execution: its store row and what its journal shows.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[non_exhaustive]
pub struct StoredView {
    /// Execution id.
    pub id: ExecutionId,
    /// Workflow name.
    pub workflow: String,
    /// The definition version it runs.
    pub version: String,
    /// How it was started.
    pub trigger: Trigger,
    /// The parent execution, for a nested workflow.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent: Option<ExecutionId>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// For a delayed start: when it starts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_at: Option<DateTime<Utc>>,
    /// Whether it has started.
    pub started: bool,
    /// On a shared store: the node that holds it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub holder: Option<NodeId>,
    /// Its status as far as the journal shows: `pending`, `running`, `paused`,
    /// `awaiting`, `cancelling`, `rolling_back` or `failing`.
    pub status: Status,
    /// Its input (its context as it started).
    pub input: Map<String, Value>,
    /// Every step of its definition (and those grafts added), in order.
    pub steps: Vec<JournalStep>,
    /// Its journal, event by event.
    pub timeline: Vec<TimelineEntry>,
    /// Whether the definition's snapshot was found (without it, steps are
    /// named by their index).
    pub definition_known: bool,
}

impl StoredView {
    /// The view of `stored`, held by `holder`, with the snapshot of the version
    /// of its definition that it runs (from [`Store::definition_version`]).
    ///
    /// [`Store::definition_version`]: crate::store::Store::definition_version
    pub fn of(stored: &StoredExecution, holder: Option<NodeId>, def: Option<&DefinitionSnapshot>) -> StoredView {
        let n = &stored.execution;
        let mut names: Vec<String> = def.map(|d| d.steps.iter().map(|s| s.name.clone()).collect()).unwrap_or_default();
        let mut steps: Vec<JournalStep> = names.iter().map(|name| step(name.clone(), None)).collect();
        let max_retries = |i: usize| def.and_then(|d| d.steps.get(i)).map_or(0, |s| s.max_retries);
        let mut timeline = Vec::with_capacity(stored.events.len());
        let (mut paused, mut cancelled, mut aborted, mut compensating) = (false, false, false, false);
        // Awaiting steps, with when their await times out.
        let mut awaiting: Vec<(usize, Option<DateTime<Utc>>)> = Vec::new();
        // Of those, the steps parked for a signal, in the order they began to
        // wait: the signal's name, and whether the step runs again when it comes.
        let mut signal_waits: Vec<(usize, std::sync::Arc<str>, bool)> = Vec::new();
        for entry in &stored.events {
            let event: ExecutionEvent = match serde_json::from_str(&entry.event) {
                Ok(e) => e,
                Err(e) => {
                    timeline.push(TimelineEntry {
                        seq: entry.seq,
                        at: None,
                        event: "unreadable".into(),
                        step: None,
                        attempt: None,
                        outcome: None,
                        detail: Some(e.to_string()),
                    });
                    continue;
                }
            };
            let at = event.at();
            let mut line = TimelineEntry {
                seq: entry.seq,
                at: Some(at),
                event: kind(&event).into(),
                step: None,
                attempt: None,
                outcome: None,
                detail: None,
            };
            match &event {
                ExecutionEvent::StepFinished { step: id, attempt, report, .. } => {
                    let i = slot(*id, &mut names, &mut steps);
                    line.step = Some(names[i].clone());
                    line.attempt = Some(*attempt);
                    awaiting.retain(|(s, _)| *s != i);
                    signal_waits.retain(|(s, _, _)| *s != i);
                    let s = &mut steps[i];
                    s.attempts = s.attempts.max(*attempt);
                    s.ended_at = Some(at);
                    let (outcome, status, detail) = match report {
                        StepReport::Done => ("done", StepStatus::Completed, None),
                        StepReport::Output { .. } => ("output", StepStatus::Completed, None),
                        StepReport::Skip { reason } => ("skip", StepStatus::Skipped, Some(reason.clone())),
                        StepReport::Await { spec } => {
                            if let Some(signal) = &spec.signal {
                                signal_waits.push((i, std::sync::Arc::clone(signal), spec.rerun));
                            }
                            awaiting.push((
                                i,
                                spec.timeout.and_then(|t| chrono::TimeDelta::from_std(t).ok()).map(|t| at + t),
                            ));
                            let detail = spec.timeout.map(|t| format!("times out after {}", format_duration(t)));
                            ("await", StepStatus::Awaiting, detail)
                        }
                        StepReport::Snooze { delay } => {
                            ("snooze", StepStatus::Snoozed, Some(format!("for {}", format_duration(*delay))))
                        }
                        StepReport::Expand { steps: added } => {
                            let parent = names[i].clone();
                            for x in added {
                                names.push(x.name.to_string());
                                steps.push(step(x.name.to_string(), Some(parent.clone())));
                            }
                            ("expand", StepStatus::Expanded, Some(format!("added {} steps", added.len())))
                        }
                        StepReport::Failed { error, .. } => {
                            let s = &mut steps[i];
                            s.error = Some(error.clone());
                            let final_attempt = !error.is_retryable() || *attempt > max_retries(i);
                            let status = if final_attempt { StepStatus::Failed } else { StepStatus::Retrying };
                            ("failed", status, Some(error.to_string()))
                        }
                    };
                    steps[i].status = status;
                    line.outcome = Some(outcome.into());
                    line.detail = detail;
                }
                ExecutionEvent::TimerFired { timer, .. } => {
                    // An await whose timeout has come no longer awaits.
                    awaiting.retain(|(_, due)| due.is_none_or(|d| d > at));
                    line.detail = Some(format!("timer {timer}"));
                }
                ExecutionEvent::Resumed { step: target, data, .. } => {
                    paused = false;
                    match target {
                        Some(id) => {
                            let i = slot(*id, &mut names, &mut steps);
                            line.step = Some(names[i].clone());
                            complete_await(&mut steps[i], at);
                            awaiting.retain(|(s, _)| *s != i);
                        }
                        None => {
                            for (i, _) in awaiting.drain(..) {
                                complete_await(&mut steps[i], at);
                            }
                        }
                    }
                    if !data.is_empty() {
                        let keys: Vec<&str> = data.keys().map(String::as_str).collect();
                        line.detail = Some(format!("merged {}", keys.join(", ")));
                    }
                }
                ExecutionEvent::Paused { .. } => paused = true,
                ExecutionEvent::Cancelled { reason, rollback, .. } => {
                    cancelled = true;
                    line.detail = Some(if *rollback { format!("{reason} (with rollback)") } else { reason.clone() });
                }
                ExecutionEvent::CompensationFinished { step: id, attempt, result, .. } => {
                    compensating = true;
                    let i = slot(*id, &mut names, &mut steps);
                    line.step = Some(names[i].clone());
                    line.attempt = Some(*attempt);
                    match result {
                        Ok(()) => {
                            steps[i].status = StepStatus::Compensated;
                            line.outcome = Some("ok".into());
                        }
                        Err(e) => {
                            steps[i].status = StepStatus::CompensationFailed;
                            line.outcome = Some("failed".into());
                            line.detail = Some(e.to_string());
                        }
                    }
                }
                ExecutionEvent::HandlerFinished { handler, result, .. } => {
                    line.step = Some(handler_name(*handler).into());
                    line.outcome = Some(if result.is_ok() { "ok" } else { "failed" }.into());
                    line.detail = result.as_ref().err().map(ToString::to_string);
                }
                ExecutionEvent::ChildStarted { step: id, attempt, child, .. } => {
                    let i = slot(*id, &mut names, &mut steps);
                    line.step = Some(names[i].clone());
                    line.attempt = Some(*attempt);
                    steps[i].child = Some(*child);
                    line.detail = Some(format!("child {child}"));
                }
                ExecutionEvent::Recovered { .. } => {}
                ExecutionEvent::Aborted { error, .. } => {
                    aborted = true;
                    line.detail = Some(error.to_string());
                }
                ExecutionEvent::Signalled { name, .. } => {
                    // The step waiting longest for it receives it (as the engine
                    // does); otherwise it is buffered.
                    signal_waits.retain(|(s, _, _)| awaiting.iter().any(|(a, _)| a == s));
                    match signal_waits.iter().position(|(_, n, _)| n == name) {
                        Some(pos) => {
                            let (i, _, rerun) = signal_waits.remove(pos);
                            awaiting.retain(|(s, _)| *s != i);
                            line.step = Some(names[i].clone());
                            if rerun {
                                steps[i].status = StepStatus::Pending;
                            } else {
                                complete_await(&mut steps[i], at);
                            }
                            line.detail = Some(format!("signal `{name}`"));
                        }
                        None => line.detail = Some(format!("signal `{name}` (buffered)")),
                    }
                }
                ExecutionEvent::SignalTaken { step: id, attempt, name, .. } => {
                    let i = slot(*id, &mut names, &mut steps);
                    line.step = Some(names[i].clone());
                    line.attempt = Some(*attempt);
                    line.detail = Some(format!("took signal `{name}`"));
                }
            }
            timeline.push(line);
        }
        let status = if !stored.started {
            Status::Pending
        } else if aborted {
            Status::Failing
        } else if cancelled {
            Status::Cancelling
        } else if compensating {
            Status::RollingBack
        } else if paused {
            Status::Paused
        } else if !awaiting.is_empty() {
            Status::Awaiting
        } else {
            Status::Running
        };
        StoredView {
            id: n.id,
            workflow: n.workflow.clone(),
            version: n.version.clone(),
            trigger: n.trigger.clone(),
            parent: n.parent.as_ref().map(|p| p.execution),
            created_at: n.created_at,
            start_at: n.start_at,
            started: stored.started,
            holder,
            status,
            input: n.input.clone(),
            steps,
            timeline,
            definition_known: def.is_some(),
        }
    }

    /// Steps that ended (completed, skipped, failed...) and all steps.
    pub fn progress(&self) -> Progress {
        let done = self.steps.iter().filter(|s| s.status.is_ended()).count() as u32;
        Progress { done, total: self.steps.len() as u32 }
    }

    /// When it started (or starts, for a delayed start).
    pub fn started_at(&self) -> DateTime<Utc> {
        self.start_at.unwrap_or(self.created_at)
    }

    /// When its latest event happened.
    pub fn last_event_at(&self) -> Option<DateTime<Utc>> {
        self.timeline.iter().rev().find_map(|e| e.at)
    }

    /// The view in the shape of an [`ExecutionState`], for what draws one
    /// (diagrams, pages). Its context is the execution's input: the context the
    /// steps built is known only to the engine that holds the execution.
    pub fn to_state(&self, now: DateTime<Utc>) -> ExecutionState {
        let started_at = self.started_at();
        let failed = self.steps.iter().find(|s| s.status == StepStatus::Failed);
        ExecutionState {
            id: self.id,
            workflow: self.workflow.clone(),
            version: self.version.clone(),
            status: self.status,
            running: Vec::new(),
            current_step: None,
            progress: self.progress(),
            context: self.input.clone(),
            started_at,
            ended_at: None,
            duration: (now - started_at).to_std().unwrap_or_default(),
            attempt: 1,
            steps: self
                .steps
                .iter()
                .map(|s| StepState {
                    name: s.name.as_str().into(),
                    status: s.status,
                    attempts: s.attempts,
                    started_at: None,
                    ended_at: s.ended_at,
                    error: s.error.clone(),
                    skip_reason: None,
                    graft: s.graft.clone(),
                    child: s.child,
                    compensation_error: None,
                    history: Vec::new(),
                    compensations: Vec::new(),
                })
                .collect(),
            awaiting: Vec::new(),
            failure: failed.and_then(|s| {
                s.error.clone().map(|error| FailureInfo { step: Some(s.name.clone()), error, attempts: s.attempts })
            }),
            rollback: None,
            cancel_reason: None,
            handler_errors: Vec::new(),
            parent: self.parent,
            trigger: self.trigger.clone(),
            parked: None,
            // Which signals are consumed is known to the engine that holds the
            // execution; the timeline shows the ones sent.
            signals: Vec::new(),
            input: self.input.clone(),
            outputs: Map::new(),
        }
    }
}

fn step(name: String, graft: Option<String>) -> JournalStep {
    JournalStep { name, status: StepStatus::Pending, attempts: 0, ended_at: None, error: None, graft, child: None }
}

/// The index of step `i`, adding placeholders for steps the definition does not
/// name (its snapshot is missing).
fn slot(i: u32, names: &mut Vec<String>, steps: &mut Vec<JournalStep>) -> usize {
    let i = i as usize;
    while steps.len() <= i {
        let name = format!("step #{}", steps.len());
        names.push(name.clone());
        steps.push(step(name, None));
    }
    i
}

fn complete_await(step: &mut JournalStep, at: DateTime<Utc>) {
    if step.status == StepStatus::Awaiting {
        step.status = StepStatus::Completed;
        step.ended_at = Some(at);
    }
}

fn kind(event: &ExecutionEvent) -> &'static str {
    match event {
        ExecutionEvent::StepFinished { .. } => "step_finished",
        ExecutionEvent::TimerFired { .. } => "timer_fired",
        ExecutionEvent::Resumed { .. } => "resumed",
        ExecutionEvent::Paused { .. } => "paused",
        ExecutionEvent::Cancelled { .. } => "cancelled",
        ExecutionEvent::CompensationFinished { .. } => "compensation_finished",
        ExecutionEvent::HandlerFinished { .. } => "handler_finished",
        ExecutionEvent::ChildStarted { .. } => "child_started",
        ExecutionEvent::Recovered { .. } => "recovered",
        ExecutionEvent::Aborted { .. } => "aborted",
        ExecutionEvent::Signalled { .. } => "signalled",
        ExecutionEvent::SignalTaken { .. } => "signal_taken",
    }
}

fn handler_name(h: HandlerKind) -> &'static str {
    h.as_str()
}

#[cfg(test)]
mod signal_tests {
    use std::sync::Arc;

    use chrono::TimeZone;
    use serde_json::json;

    use super::*;
    use crate::machine::event::AwaitSpec;
    use crate::store::{JournalEntry, NewExecution};

    fn at(s: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_700_000_000 + s, 0).single().unwrap()
    }

    #[test]
    fn the_timeline_shows_signals_delivered_buffered_and_taken() {
        let id = ExecutionId::new();
        let wait = |rerun| StepReport::Await {
            spec: Box::new(AwaitSpec { signal: Some(Arc::from("approval")), rerun, ..Default::default() }),
        };
        let events = [
            ExecutionEvent::StepFinished { step: 0, attempt: 1, report: wait(false), at: at(1) },
            ExecutionEvent::Signalled { name: Arc::from("note"), payload: json!("later"), at: at(2) },
            ExecutionEvent::Signalled { name: Arc::from("approval"), payload: json!({ "ok": true }), at: at(3) },
            ExecutionEvent::SignalTaken { step: 1, attempt: 1, name: Arc::from("note"), at: at(4) },
        ];
        let stored = StoredExecution {
            execution: NewExecution {
                id,
                workflow: "w".into(),
                version: "v".into(),
                input: Map::new(),
                parent: None,
                trigger: Trigger::Manual,
                created_at: at(0),
                start_at: None,
                unique_key: None,
                debounce_key: None,
                kept: Vec::new(),
                priority: 0,
                trace: None,
            },
            started: true,
            events: events
                .iter()
                .enumerate()
                .map(|(i, e)| JournalEntry {
                    execution: id,
                    seq: i as u64 + 1,
                    event: serde_json::to_string(e).unwrap(),
                })
                .collect(),
        };
        let view = StoredView::of(&stored, None, None);
        let lines: Vec<(&str, Option<&str>, Option<&str>)> =
            view.timeline.iter().map(|e| (e.event.as_str(), e.step.as_deref(), e.detail.as_deref())).collect();
        assert_eq!(
            lines,
            [
                ("step_finished", Some("step #0"), None),
                ("signalled", None, Some("signal `note` (buffered)")),
                ("signalled", Some("step #0"), Some("signal `approval`")),
                ("signal_taken", Some("step #1"), Some("took signal `note`")),
            ]
        );
        assert_eq!(view.steps[0].status, StepStatus::Completed, "the signal completed the wait");
        assert_eq!(view.status, Status::Running);
    }
}
