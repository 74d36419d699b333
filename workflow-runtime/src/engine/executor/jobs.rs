//! What a driver runs: its jobs (step, compensation and handler futures), their
//! admission gates and the one timer that enforces their timeouts.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll, Waker};
use std::time::Duration;

use futures::future::{AbortHandle, Abortable};
use futures::stream::{FuturesUnordered, StreamExt};
use tokio::time::{Instant, Sleep};

use crate::engine::breaker::Ticket;
use crate::engine::limits::Admission;
use crate::machine::event::HandlerKind;
use crate::model::ids::StepId;
use crate::model::{BoxStepFuture, Outcome, StepError, StepResult, guard, kinds};

/// What a job is for.
#[derive(Clone, Debug)]
pub(super) enum JobTag {
    Step { step: StepId, attempt: u32, name: Arc<str>, breaker: Option<Arc<Ticket>> },
    Compensation { step: StepId, attempt: u32, name: Arc<str> },
    Handler(HandlerKind),
}

/// A step, compensation or handler future with its deadline. Deadlines are
/// enforced by one timer per driver (see [`Jobs`]), so a step costs no timer of
/// its own.
pub(super) struct Job {
    tag: JobTag,
    fut: JobFuture,
    limit: Option<Duration>,
    deadline: Option<Instant>,
    expired: bool,
    /// The waker of the last pending poll, to wake the job when it expires.
    waker: Option<Waker>,
    started: Instant,
    span: tracing::Span,
    /// A limited step's admission (see `engine::limits`), before its function runs.
    gate: Option<Box<Gate>>,
}

/// A job that waits for its step's concurrency slot and rate limit turn first:
/// its timeout counts from its admission, on a timer of its own.
struct Gate {
    admit: Pin<Box<dyn Future<Output = Result<Admission, StepError>> + Send>>,
    admitted: Option<Admission>,
    timer: Option<Pin<Box<Sleep>>>,
}

impl Job {
    pub(super) fn new(
        tag: JobTag,
        fut: JobFuture,
        limit: Option<Duration>,
        span: tracing::Span,
        started: Instant,
    ) -> Self {
        Job {
            tag,
            fut,
            limit,
            deadline: limit.and_then(|l| started.checked_add(l)),
            expired: false,
            waker: None,
            started,
            span,
            gate: None,
        }
    }

    /// A job that runs `fut` once `admit` let it.
    pub(super) fn gated(
        tag: JobTag,
        fut: JobFuture,
        limit: Option<Duration>,
        span: tracing::Span,
        started: Instant,
        admit: Pin<Box<dyn Future<Output = Result<Admission, StepError>> + Send>>,
    ) -> Self {
        let mut job = Job::new(tag, fut, None, span, started);
        job.limit = limit;
        job.gate = Some(Box::new(Gate { admit, admitted: None, timer: None }));
        job
    }

    /// For a gated job: `Ready(Some(result))` when it ends before running
    /// (refused, or timed out on its own timer), `Pending` while it waits.
    fn poll_gate(&mut self, cx: &mut TaskContext<'_>) -> Poll<Option<StepResult>> {
        let Some(gate) = &mut self.gate else { return Poll::Ready(None) };
        if gate.admitted.is_none() {
            match gate.admit.as_mut().poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Some(Err(e))),
                Poll::Ready(Ok(admission)) => {
                    gate.admitted = Some(admission);
                    self.started = Instant::now();
                    gate.timer = self.limit.map(|l| Box::pin(tokio::time::sleep(l)));
                }
            }
        }
        if let Some(timer) = &mut gate.timer
            && timer.as_mut().poll(cx).is_ready()
        {
            self.expired = true;
        }
        Poll::Ready(None)
    }

    /// Marks the job timed out and wakes it so that it reports so.
    fn expire(&mut self) {
        self.expired = true;
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }
}

pub(super) enum JobFuture {
    Plain(BoxStepFuture),
    Abortable(Abortable<BoxStepFuture>),
}

/// The running jobs of one execution. Most executions run one or two steps at a
/// time, so the first [`FEW`] jobs are polled directly with the driver's own
/// waker; only further concurrent jobs pay for a `FuturesUnordered` slot.
///
/// Timeouts: one timer serves every job, armed at the earliest deadline of the
/// jobs that are still pending. Jobs that finish at their first poll never touch
/// it, and a new job with a later deadline than the armed one costs nothing.
#[derive(Default)]
pub(super) struct Jobs {
    few: [Option<Job>; FEW],
    /// Created on first use: an empty `FuturesUnordered` still allocates.
    rest: Option<FuturesUnordered<Job>>,
    timer: Option<Pin<Box<Sleep>>>,
    armed: Option<Instant>,
    /// Earliest deadline of the jobs pushed since the timer was last armed.
    earliest_new: Option<Instant>,
}

/// How many jobs a driver polls itself (each at every wake-up of the driver)
/// before the rest go to a `FuturesUnordered`, which polls only those woken.
const FEW: usize = 2;

impl Jobs {
    pub(super) fn push(&mut self, job: Job) {
        if let Some(d) = job.deadline {
            self.earliest_new = Some(self.earliest_new.map_or(d, |e| e.min(d)));
        }
        match self.few.iter_mut().find(|slot| slot.is_none()) {
            Some(slot) => *slot = Some(job),
            None => self.rest.get_or_insert_with(FuturesUnordered::new).push(job),
        }
    }

    /// Polls a new job once, in the driver's turn, with the driver's `waker`: a
    /// job that ends without waiting (most steps) never takes a place among the
    /// running jobs, and its result joins `done`. A job waiting for admission
    /// first is only pushed.
    pub(super) fn start(&mut self, mut job: Job, waker: &Waker, done: &mut Vec<Finished>) {
        if job.gate.is_none()
            && let Poll::Ready(finished) = Pin::new(&mut job).poll(&mut TaskContext::from_waker(waker))
        {
            done.push(finished);
            return;
        }
        self.push(job);
    }

    pub(super) fn is_empty(&self) -> bool {
        self.few.iter().all(Option::is_none) && self.rest.as_ref().is_none_or(FuturesUnordered::is_empty)
    }

    /// Polls the jobs; collects the finished ones, and times out expired ones.
    pub(super) fn poll_finished(&mut self, cx: &mut TaskContext<'_>, out: &mut Vec<Finished>) -> Poll<()> {
        loop {
            for slot in &mut self.few {
                if let Some(job) = slot
                    && let Poll::Ready(done) = Pin::new(job).poll(cx)
                {
                    *slot = None;
                    out.push(done);
                }
            }
            if let Some(rest) = &mut self.rest {
                while let Poll::Ready(Some(done)) = rest.poll_next_unpin(cx) {
                    out.push(done);
                }
            }
            if !out.is_empty() {
                return Poll::Ready(());
            }
            if let Some(d) = self.earliest_new.take()
                && self.armed.is_none_or(|a| d < a)
            {
                self.arm(d);
            }
            let Some(timer) = self.timer.as_mut().filter(|_| self.armed.is_some()) else { return Poll::Pending };
            if timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            self.armed = None;
            let now = Instant::now();
            let mut next: Option<Instant> = None;
            for job in self.few.iter_mut().flatten().chain(self.rest.iter_mut().flat_map(|r| r.iter_mut())) {
                match job.deadline {
                    Some(d) if d <= now => job.expire(),
                    Some(d) => next = Some(next.map_or(d, |n| n.min(d))),
                    None => {}
                }
            }
            if let Some(n) = next {
                self.arm(n);
            }
        }
    }

    fn arm(&mut self, at: Instant) {
        match &mut self.timer {
            Some(t) => t.as_mut().reset(at),
            None => self.timer = Some(Box::pin(tokio::time::sleep_until(at))),
        }
        self.armed = Some(at);
    }
}

/// What a driver runs: its jobs, the abort handles of its cancellable steps, and
/// the `on_step_error` hooks that the next attempt of their step waits for.
#[derive(Default)]
pub(super) struct Running {
    pub(super) jobs: Jobs,
    pub(super) aborts: HashMap<StepId, AbortHandle>,
    pub(super) hooks: HashMap<StepId, tokio::task::JoinHandle<()>>,
}

/// A finished job.
pub(super) struct Finished {
    pub(super) tag: JobTag,
    pub(super) result: StepResult,
    pub(super) started: Instant,
}

impl Future for Job {
    type Output = Finished;

    fn poll(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Finished> {
        let this = &mut *self;
        match this.poll_gate(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Some(result)) => {
                return Poll::Ready(Finished { tag: this.tag.clone(), result, started: this.started });
            }
            Poll::Ready(None) => {}
        }
        if this.expired {
            // Drop the step's future now: the timed-out work stops here.
            this.fut = JobFuture::Plain(Box::pin(std::future::pending()));
            let limit = this.limit.unwrap_or_default();
            let err = StepError::timeout(format!("did not finish within {}", crate::model::format_duration(limit)));
            return Poll::Ready(Finished { tag: this.tag.clone(), result: Err(err), started: this.started });
        }
        let polled = {
            let _entered = this.span.enter();
            guard::call(|| match &mut this.fut {
                JobFuture::Plain(f) => f.as_mut().poll(cx),
                JobFuture::Abortable(f) => match Pin::new(f).poll(cx) {
                    Poll::Ready(Ok(r)) => Poll::Ready(r),
                    Poll::Ready(Err(_)) => {
                        Poll::Ready(Err(
                            StepError::new(kinds::CANCELLED, "interrupted: the execution was cancelled").permanent()
                        ))
                    }
                    Poll::Pending => Poll::Pending,
                },
            })
        };
        let result = match polled {
            Ok(Poll::Ready(r)) => r,
            Ok(Poll::Pending) => {
                if this.deadline.is_some() && !this.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                    this.waker = Some(cx.waker().clone());
                }
                return Poll::Pending;
            }
            Err(panicked) => Err(panicked.into_error(None)),
        };
        this.span.record("result", result.as_ref().map_or("error", outcome_name));
        Poll::Ready(Finished { tag: this.tag.clone(), result, started: this.started })
    }
}

pub(super) fn outcome_name(o: &Outcome) -> &'static str {
    match o {
        Outcome::Done | Outcome::Output(_) => "ok",
        Outcome::Skip(_) => "skip",
        Outcome::Await(_) => "await",
        Outcome::Expand(_) => "expand",
        Outcome::Snooze(_) => "snooze",
    }
}
