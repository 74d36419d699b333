//! Carrying out actions outside the lock: starting step attempts, nested
//! workflows, compensations, handlers and hooks, with their time limits, spans and
//! limits admission.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Waker;
use std::time::Duration;

use futures::FutureExt;
use futures::future::{AbortHandle, Abortable};
use tokio::time::Instant;

use crate::engine::EngineInner;
use crate::engine::breaker::Permit;
use crate::engine::limits::{Admission, Keys};
use crate::model::{BoxStepFuture, Context, Outcome, StepError, StepLimits, Timeout, guard, kinds};
use crate::telemetry::Event as Telemetry;

use super::actions::{Action, HandlerRun};
use super::child::run_child;
use super::execution::Execution;
use super::jobs::{Finished, Job, JobFuture, JobTag, Running};

impl EngineInner {
    /// Carries out an action outside the lock.
    pub(super) fn carry_out(
        self: &Arc<Self>,
        exec: &Arc<Execution>,
        action: Action,
        running: &mut Running,
        immediate: &mut Vec<Finished>,
        now: Instant,
        waker: &Waker,
    ) {
        let Running { jobs, aborts, hooks } = running;
        match action {
            Action::Run { step, attempt, name, body, ctx, timeout, cancellable, breaker, limits } => {
                if self.bus.wanted() {
                    self.bus.emit(Telemetry::StepStart {
                        workflow_name: Arc::clone(exec.workflow()),
                        execution_id: exec.id,
                        step_name: Arc::clone(&name),
                        attempt,
                    });
                }
                let mut tag = JobTag::Step { step, attempt, name: Arc::clone(&name), breaker: None };
                // Where the step's `ctx.signal` reads (created once per execution).
                self.signal_port(exec);
                let Some(body) = body else {
                    let err = StepError::new(
                        kinds::VERSION_MISMATCH,
                        format!("the function of step `{name}` is not available after recovery"),
                    )
                    .permanent();
                    immediate.push(Finished { tag, result: Err(err), started: now });
                    return;
                };
                if let Some((b, opts)) = &breaker {
                    let permit = self.breakers.acquire(b, opts);
                    if permit == Permit::Reject {
                        let err = StepError::new(kinds::CIRCUIT_OPEN, format!("circuit breaker `{b}` is open"));
                        immediate.push(Finished { tag, result: Err(err), started: now });
                        return;
                    }
                    let ticket = self.breakers.ticket(b, permit);
                    tag = JobTag::Step { step, attempt, name: Arc::clone(&name), breaker: Some(ticket) };
                }
                let limit = match step_limit(&name, &timeout, &ctx) {
                    Ok(limit) => limit,
                    Err(err) => {
                        immediate.push(Finished { tag, result: Err(err), started: now });
                        return;
                    }
                };
                let admit = match self.admission(exec, &name, limits.as_ref(), &ctx) {
                    Ok(admit) => admit,
                    Err(err) => {
                        immediate.push(Finished { tag, result: Err(err), started: now });
                        return;
                    }
                };
                let span = step_span(exec, &name, attempt);
                let hook = if hooks.is_empty() { None } else { hooks.remove(&step) };
                let fut: BoxStepFuture = match hook {
                    // An `on_step_error` hook for the attempt before ends first,
                    // and a limited step is admitted first: only then is the
                    // step's function called.
                    hook if hook.is_some() || admit.is_some() => Box::pin(async move {
                        if let Some(hook) = hook {
                            let _ = hook.await;
                        }
                        match guard::call(|| body(ctx)) {
                            Ok(f) => f.await,
                            Err(panicked) => Err(panicked.into_error(None)),
                        }
                    }),
                    _ => match guard::call(|| body(ctx)) {
                        Ok(f) => f,
                        Err(panicked) => {
                            immediate.push(Finished { tag, result: Err(panicked.into_error(None)), started: now });
                            return;
                        }
                    },
                };
                let fut = if cancellable {
                    let (handle, reg) = AbortHandle::new_pair();
                    aborts.insert(step, handle);
                    JobFuture::Abortable(Abortable::new(fut, reg))
                } else {
                    JobFuture::Plain(fut)
                };
                jobs.start(
                    match admit {
                        None => Job::new(tag, fut, limit, span, now),
                        Some(admit) => Job::gated(tag, fut, limit, span, now, admit),
                    },
                    waker,
                    immediate,
                );
            }
            Action::Child { step, attempt, name, workflow, input, ctx, existing, timeout, limits } => {
                if self.bus.wanted() {
                    self.bus.emit(Telemetry::StepStart {
                        workflow_name: Arc::clone(exec.workflow()),
                        execution_id: exec.id,
                        step_name: Arc::clone(&name),
                        attempt,
                    });
                }
                let limit = match step_limit(&name, &timeout, &ctx) {
                    Ok(limit) => limit,
                    Err(err) => {
                        let tag = JobTag::Step { step, attempt, name, breaker: None };
                        immediate.push(Finished { tag, result: Err(err), started: now });
                        return;
                    }
                };
                let admit = match self.admission(exec, &name, limits.as_ref(), &ctx) {
                    Ok(admit) => admit,
                    Err(err) => {
                        let tag = JobTag::Step { step, attempt, name, breaker: None };
                        immediate.push(Finished { tag, result: Err(err), started: now });
                        return;
                    }
                };
                let span = step_span(exec, &name, attempt);
                let fut = run_child(Arc::clone(self), Arc::clone(exec), step, attempt, workflow, input, ctx, existing);
                let tag = JobTag::Step { step, attempt, name, breaker: None };
                let fut = JobFuture::Plain(Box::pin(fut));
                jobs.push(match admit {
                    None => Job::new(tag, fut, limit, span, now),
                    Some(admit) => Job::gated(tag, fut, limit, span, now, admit),
                });
            }
            Action::Withdrawn { step, attempt, name } => {
                let tag = JobTag::Step { step, attempt, name, breaker: None };
                let err = StepError::new(kinds::CANCELLED, "interrupted before it began: the execution was cancelled");
                immediate.push(Finished { tag, result: Err(err.permanent()), started: now });
            }
            Action::Interrupt(step, grace) => {
                // The step saw the cancellation already (`SignalCancel`); it gets
                // its grace period to return, then it is dropped.
                if let Some(h) = aborts.remove(&step) {
                    if grace.is_zero() {
                        h.abort();
                    } else {
                        tokio::spawn(async move {
                            tokio::time::sleep(grace).await;
                            h.abort();
                        });
                    }
                }
            }
            Action::CancelChild(child, reason) => {
                let engine = Arc::clone(self);
                tokio::spawn(async move {
                    let options = crate::engine::CancelOptions::reason(reason);
                    if let Err(e) = engine.cancel(child, options).await {
                        tracing::debug!(%child, error = %e, "cancelling a child execution");
                    }
                });
            }
            Action::Compensate { step, attempt, name, body, ctx, timeout } => {
                if self.bus.wanted() {
                    self.bus.emit(Telemetry::RollbackStepStart {
                        workflow_name: Arc::clone(exec.workflow()),
                        execution_id: exec.id,
                        step_name: Arc::clone(&name),
                        attempt,
                    });
                }
                let tag = JobTag::Compensation { step, attempt, name: Arc::clone(&name) };
                let limit = match step_limit(&name, &timeout, &ctx) {
                    Ok(limit) => limit,
                    Err(err) => {
                        immediate.push(Finished { tag, result: Err(err), started: now });
                        return;
                    }
                };
                let fut = match guard::call(|| body(ctx)) {
                    Ok(f) => f,
                    Err(panicked) => {
                        let what = format!("the rollback of step `{name}`");
                        immediate.push(Finished { tag, result: Err(panicked.into_error(Some(&what))), started: now });
                        return;
                    }
                };
                let span = tracing::info_span!(
                    "sagaflow.rollback",
                    workflow_name = %exec.workflow(),
                    execution_id = %exec.id,
                    step_name = %name,
                    attempt,
                    result = tracing::field::Empty,
                );
                jobs.start(Job::new(tag, JobFuture::Plain(fut), limit, span, now), waker, immediate);
            }
            Action::Handler { kind, run, ctx } => {
                let tag = JobTag::Handler(kind);
                let fut: BoxStepFuture = match guard::call(|| match run {
                    HandlerRun::Body(b) => b(ctx),
                    HandlerRun::Cancel(h, reason) => Box::pin(h(ctx, reason).map(|r| r.map(|()| Outcome::Done))),
                }) {
                    Ok(f) => f,
                    Err(panicked) => {
                        let what = format!("the `{}` handler", kind.as_str());
                        immediate.push(Finished { tag, result: Err(panicked.into_error(Some(&what))), started: now });
                        return;
                    }
                };
                jobs.start(Job::new(tag, JobFuture::Plain(fut), None, tracing::Span::none(), now), waker, immediate);
            }
            Action::Hook { handler, ctx, step, error, attempt, id } => {
                let fut = guard::call(|| handler(ctx, step, error, attempt));
                let done = tokio::spawn(async move {
                    let result = match fut {
                        Ok(fut) => guard::run(fut).await.unwrap_or_else(|p| Err(p.into_error(None))),
                        Err(panicked) => Err(panicked.into_error(None)),
                    };
                    if let Err(e) = result {
                        tracing::warn!(error = %e, "on_step_error handler failed");
                    }
                });
                hooks.insert(id, done);
            }
            Action::Emit(event) => self.bus.emit(event),
            Action::Finish(state) => self.finish(exec, state),
        }
    }

    /// The admission a limited step's attempt waits for (`None`: not limited).
    ///
    /// # Errors
    ///
    /// The context lacks a field a limit counts by.
    #[allow(clippy::type_complexity)] // the gate's future, named where it is built
    fn admission(
        &self,
        exec: &Execution,
        step: &str,
        limits: Option<&Arc<StepLimits>>,
        ctx: &Context,
    ) -> Result<Option<Pin<Box<dyn Future<Output = Result<Admission, StepError>> + Send>>>, StepError> {
        let Some(limits) = limits else { return Ok(None) };
        let keys = Keys::of(step, limits, ctx)?;
        let scope: Arc<str> = Arc::from(format!("{}.{step}", exec.workflow()));
        Ok(Some(Box::pin(Arc::clone(&self.limits).admit(scope, Arc::clone(limits), keys, exec.priority, None))))
    }
}

/// The time limit of a step attempt (or compensation) from its timeout, which may
/// be a function of the context: called through the guard, and range-checked.
fn step_limit(step: &str, timeout: &Timeout, ctx: &Context) -> Result<Option<Duration>, StepError> {
    let limit = guard::call(|| timeout.resolve(ctx))
        .map_err(|panicked| panicked.into_error(Some(&format!("the timeout function of step `{step}`"))).permanent())?;
    match limit {
        Some(d) if d > crate::model::MAX_DURATION => Err(StepError::new(
            kinds::INVALID_DURATION,
            format!(
                "the timeout function of step `{step}` returned {d:?}, longer than the longest supported ({})",
                crate::model::format_duration(crate::model::MAX_DURATION)
            ),
        )
        .permanent()),
        limit => Ok(limit),
    }
}

/// The `sagaflow.step` span of one step attempt, a child of the execution's span.
/// `result` is recorded when the attempt ends (`ok`, `skip`, ..., `error`).
fn step_span(exec: &Execution, name: &str, attempt: u32) -> tracing::Span {
    tracing::info_span!(
        "sagaflow.step",
        workflow_name = %exec.workflow(),
        execution_id = %exec.id,
        step_name = %name,
        attempt,
        result = tracing::field::Empty,
    )
}
