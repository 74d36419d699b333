//! The work the machine's commands become: `Action`s, decided under the
//! execution's lock (`prepare`), and the telemetry its notices become.

use std::sync::Arc;
use std::time::Duration;

use crate::engine::EngineInner;
use crate::engine::timers::TimerTarget;
use crate::machine::Runnable;
use crate::machine::command::{Command, Notice};
use crate::machine::event::HandlerKind;
use crate::model::execution::ExecutionState;
use crate::model::ids::StepId;
use crate::model::{
    BreakerOptions, CancelHandler, Context, ExecutionId, StepBody, StepError, StepErrorHandler, StepLimits, Timeout,
};
use crate::telemetry::Event as Telemetry;

use super::execution::{Core, Execution};

/// Work decided under the execution's lock and carried out after releasing it.
pub(super) enum Action {
    Run {
        step: StepId,
        attempt: u32,
        name: Arc<str>,
        body: Option<StepBody>,
        ctx: Context,
        timeout: Timeout,
        cancellable: bool,
        breaker: Option<(Arc<str>, BreakerOptions)>,
        limits: Option<Arc<StepLimits>>,
    },
    Child {
        step: StepId,
        attempt: u32,
        name: Arc<str>,
        workflow: Arc<str>,
        input: Option<StepBody>,
        ctx: Context,
        existing: Option<ExecutionId>,
        timeout: Timeout,
        limits: Option<Arc<StepLimits>>,
    },
    /// Interrupt a cancellable step once its grace period has passed.
    Interrupt(StepId, Duration),
    /// A step start interrupted before it began: it reports the interruption
    /// without its function being called.
    Withdrawn {
        step: StepId,
        attempt: u32,
        name: Arc<str>,
    },
    CancelChild(ExecutionId, String),
    Compensate {
        step: StepId,
        attempt: u32,
        name: Arc<str>,
        body: StepBody,
        ctx: Context,
        timeout: Timeout,
    },
    Handler {
        kind: HandlerKind,
        run: HandlerRun,
        ctx: Context,
    },
    /// Run `on_step_error`; the step's next attempt waits for it.
    Hook {
        handler: StepErrorHandler,
        ctx: Context,
        step: String,
        error: StepError,
        attempt: u32,
        id: StepId,
    },
    Emit(Telemetry),
    Finish(Arc<ExecutionState>),
}

impl Action {
    /// Whether the action only records what happened (telemetry, the final state)
    /// and starts no work.
    pub(super) fn only_records(&self) -> bool {
        matches!(self, Action::Emit(_) | Action::Finish(_))
    }
}

pub(super) enum HandlerRun {
    Body(StepBody),
    Cancel(CancelHandler, String),
}

impl EngineInner {
    /// Turns commands into actions; must run under the execution's lock.
    pub(super) fn prepare(
        &self,
        exec: &Execution,
        core: &mut Core,
        cmds: &mut Vec<Command>,
        actions: &mut Vec<Action>,
    ) {
        let wanted = self.bus.wanted();
        for cmd in cmds.drain(..) {
            let m = &core.machine;
            match cmd {
                Command::RunStep { step, attempt, on_timeout } => {
                    let policy = m.step_policy(step);
                    let body = if on_timeout {
                        policy.on_timeout.as_ref().map(|h| Arc::clone(&h.f))
                    } else {
                        match m.runnable(step) {
                            Runnable::Task(b) | Runnable::Graft(b) => Some(Arc::clone(b)),
                            Runnable::Workflow { .. } | Runnable::Missing => None,
                        }
                    };
                    actions.push(Action::Run {
                        step,
                        attempt,
                        name: Arc::clone(m.step_name(step)),
                        body,
                        ctx: exec.step_context(m, step, attempt),
                        timeout: policy.timeout.clone(),
                        cancellable: policy.cancellable,
                        breaker: policy.circuit_breaker.clone(),
                        limits: policy.limits.clone(),
                    });
                }
                Command::StartChild { step, attempt } => {
                    if let Runnable::Workflow { workflow, input } = m.runnable(step) {
                        actions.push(Action::Child {
                            step,
                            attempt,
                            name: Arc::clone(m.step_name(step)),
                            workflow: Arc::clone(workflow),
                            input: input.cloned(),
                            ctx: exec.step_context(m, step, attempt),
                            existing: m.current_child(step),
                            timeout: m.step_policy(step).timeout.clone(),
                            limits: m.step_policy(step).limits.clone(),
                        });
                    }
                }
                Command::ArmTimer { timer, due } => {
                    self.timers.arm(TimerTarget::Execution(exec.id, timer), self.clock.instant_at(due));
                }
                Command::CancelTimer { timer, due } => {
                    self.timers.cancel(TimerTarget::Execution(exec.id, timer), self.clock.instant_at(due));
                }
                Command::Interrupt { step, graceful } => {
                    // A cancel gives the step its grace period; a failing execution
                    // (a workflow timeout, a failed step) interrupts it at once. An
                    // execution cancelled while it waited for its workflow's slot
                    // begins none of the steps it was about to start.
                    let held = match core.withdrawing {
                        true => actions.iter().position(|a| matches!(a, Action::Run { step: s, .. } if *s == step)),
                        false => None,
                    };
                    if let Some(at) = held
                        && let Action::Run { step, attempt, name, .. } = actions.remove(at)
                    {
                        actions.insert(at, Action::Withdrawn { step, attempt, name });
                        continue;
                    }
                    let grace = if graceful { m.step_policy(step).cancel_grace } else { Duration::ZERO };
                    actions.push(Action::Interrupt(step, grace));
                }
                Command::CancelChild { child, reason } => actions.push(Action::CancelChild(child, reason)),
                Command::SignalCancel => exec.meta.cancel.cancel(),
                Command::RunCompensation { step, attempt } => {
                    let policy = m.step_policy(step);
                    if let Some(rb) = &policy.rollback {
                        let mut ctx = m.compensation_context(step);
                        ctx.meta = Some(Arc::clone(&exec.meta));
                        ctx.step = Some(Arc::clone(m.step_name(step)));
                        ctx.attempt = attempt;
                        actions.push(Action::Compensate {
                            step,
                            attempt,
                            name: Arc::clone(m.step_name(step)),
                            body: Arc::clone(&rb.f),
                            ctx,
                            timeout: policy.timeout.clone(),
                        });
                    }
                }
                Command::RunHandler { handler } => {
                    let p = &exec.def.inner.policy;
                    let run = match handler {
                        HandlerKind::OnFailure => p.on_failure.as_ref().map(|h| HandlerRun::Body(Arc::clone(&h.f))),
                        HandlerKind::OnSuccess => p.on_success.as_ref().map(|h| HandlerRun::Body(Arc::clone(&h.f))),
                        HandlerKind::OnCancel => p.on_cancel.as_ref().map(|h| {
                            let reason = m.cancel.as_ref().map(|c| c.reason.clone()).unwrap_or_default();
                            HandlerRun::Cancel(Arc::clone(&h.f), reason)
                        }),
                    };
                    if let Some(run) = run {
                        actions.push(Action::Handler { kind: handler, run, ctx: exec.handler_context(m) });
                    }
                }
                Command::StepErrorHook { step, error, attempt } => {
                    if let Some(h) = &exec.def.inner.policy.on_step_error {
                        actions.push(Action::Hook {
                            handler: Arc::clone(&h.f),
                            ctx: exec.step_context(m, step, attempt),
                            step: m.step_name(step).to_string(),
                            error,
                            attempt,
                            id: step,
                        });
                    }
                }
                Command::Notify(notice) => {
                    if wanted && let Some(event) = self.telemetry_of(exec, core, *notice) {
                        actions.push(Action::Emit(event));
                    }
                }
                Command::Finish { status } => {
                    tracing::debug!(execution_id = %exec.id, %status, "execution ended");
                    let state = Arc::new(core.machine.view(exec.identity(), self.clock.now()));
                    core.final_state = Some(Arc::clone(&state));
                    actions.push(Action::Finish(state));
                }
            }
        }
        core.withdrawing = false;
    }

    fn telemetry_of(&self, exec: &Execution, core: &Core, notice: Notice) -> Option<Telemetry> {
        let m = &core.machine;
        let workflow_name = Arc::clone(exec.workflow());
        let execution_id = exec.id;
        let name = |s: StepId| Arc::clone(m.step_name(s));
        Some(match notice {
            Notice::StepSkipped { step, reason } => {
                Telemetry::StepSkip { workflow_name, execution_id, step_name: name(step), reason }
            }
            Notice::WorkflowFailed { step, error } => {
                Telemetry::WorkflowFail { workflow_name, execution_id, error, error_step: step.map(name) }
            }
            Notice::Cancelling { reason } => Telemetry::WorkflowCancel { workflow_name, execution_id, reason },
            Notice::Paused { running } => {
                Telemetry::WorkflowPause { workflow_name, execution_id, step_name: running.first().map(|&s| name(s)) }
            }
            Notice::Resumed => Telemetry::WorkflowResume { workflow_name, execution_id },
            Notice::RollbackStarted { steps } => {
                Telemetry::RollbackStart { workflow_name, execution_id, steps: steps.into_iter().map(name).collect() }
            }
            Notice::RollbackFinished { compensated, failed, duration } => Telemetry::RollbackStop {
                workflow_name,
                execution_id,
                duration,
                steps: compensated.into_iter().map(name).collect(),
                failed: failed.into_iter().map(name).collect(),
            },
            Notice::StepRetrying { step, attempt, delay, error } => {
                tracing::info!(%execution_id, step = %name(step), attempt, ?delay, %error, "step failed; retrying");
                return None;
            }
            Notice::StepFailed { step, attempt, error } => {
                tracing::info!(%execution_id, step = %name(step), attempt, %error, "step failed for good");
                return None;
            }
            Notice::StepAwaiting { step } => {
                tracing::info!(%execution_id, step = %name(step), "step awaiting resume");
                return None;
            }
            Notice::StepSnoozed { step, delay } => {
                tracing::debug!(%execution_id, step = %name(step), ?delay, "step snoozed");
                return None;
            }
            Notice::StepExpanded { step, added } => {
                tracing::debug!(%execution_id, step = %name(step), added, "graft added steps");
                return None;
            }
            Notice::Restarting { attempt, delay } => {
                tracing::info!(%execution_id, attempt, ?delay, "workflow failed; restarting");
                return None;
            }
            Notice::SignalReceived { name: signal_name, step } => {
                Telemetry::SignalReceive { workflow_name, execution_id, signal_name, step_name: step.map(name) }
            }
            Notice::SignalTaken { name: signal_name, step } => {
                Telemetry::SignalTake { workflow_name, execution_id, signal_name, step_name: name(step) }
            }
        })
    }
}
