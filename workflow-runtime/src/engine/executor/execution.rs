//! One execution known to the engine: the `Execution`, its mutable `Core`, the
//! views of its state, and the `Wake` its driver waits on.

use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};

use chrono::{DateTime, Utc};
use parking_lot::Mutex;
use tokio::sync::Notify;

use crate::machine::Machine;
use crate::machine::command::Command;
use crate::machine::view::Identity;
use crate::model::TraceContext;
use crate::model::context::ExecMeta;
use crate::model::execution::{ExecutionState, Trigger};
use crate::model::ids::StepId;
use crate::model::{Context, ExecutionId, WorkflowDef, guard};
use crate::store::ParentRef;

/// How many executions this process created or recovered.
static CREATED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// One execution known to this engine.
pub(crate) struct Execution {
    pub(crate) id: ExecutionId,
    pub(crate) def: WorkflowDef,
    pub(crate) meta: Arc<ExecMeta>,
    /// How it was started; `None` for a manual start (kept small: most are).
    trigger: Option<Box<Trigger>>,
    /// The trace its spans join (see `engine::trace`).
    pub(crate) trace: Option<Box<TraceContext>>,
    pub(crate) core: Mutex<Core>,
    /// Where it waits, higher goes first ([`StartOptions::priority`](crate::StartOptions::priority)).
    pub(crate) priority: i32,
    /// Its place in the order executions were created (or recovered) in this
    /// process: among equal priorities, the earlier waits less for its
    /// workflow's concurrency slots.
    pub(crate) order: u64,
    /// Wakes the driver when an outside event queued commands.
    pub(crate) wake: Wake,
    /// Wakes `wait()` callers when the execution ends.
    pub(crate) done: Notify,
}

/// The mutable part of an execution.
pub(crate) struct Core {
    pub(crate) machine: Machine,
    /// Commands from outside events, for the driver.
    pub(crate) commands: Vec<Command>,
    /// Whether a driver task is running.
    pub(crate) driver: bool,
    /// Last journal sequence number.
    pub(crate) seq: u64,
    /// The journal ticket of the latest write for this execution (its creation,
    /// its events): what it asks for next waits until this ticket is durable.
    pub(crate) ticket: u64,
    /// Another node holds the execution now: the driver stops.
    pub(crate) abandoned: bool,
    /// On a shared store: the node is letting go of the waiting execution (its
    /// `Park` write is queued); calls about it go through the store.
    pub(crate) parking: bool,
    /// The execution was cancelled while it waited for its workflow's slot:
    /// the next turn begins none of the steps it was about to start.
    pub(crate) withdrawing: bool,
    /// The final state, once ended.
    pub(crate) final_state: Option<Arc<ExecutionState>>,
    /// The `sagaflow.execution` span: one per execution, closed when it ends (none
    /// when no subscriber listens, to keep parked executions small).
    pub(super) span: Option<Box<tracing::Span>>,
}

impl Execution {
    pub(crate) fn new(
        id: ExecutionId,
        def: WorkflowDef,
        machine: Machine,
        trigger: Trigger,
        parent: Option<ParentRef>,
        trace: Option<TraceContext>,
        priority: i32,
    ) -> Self {
        let meta = Arc::new(ExecMeta {
            id,
            workflow: Arc::clone(&def.inner.name),
            cancel: Default::default(),
            parent: parent.as_ref().map(|p| p.execution),
            signals: Default::default(),
        });
        let span = tracing::info_span!(
            "sagaflow.execution",
            workflow_name = %def.name(),
            execution_id = %id,
            trigger_type = trigger.kind(),
            state = tracing::field::Empty,
            trace_id = tracing::field::Empty,
            parent_span_id = tracing::field::Empty,
        );
        if let Some(t) = &trace
            && !span.is_disabled()
        {
            span.record("trace_id", t.trace_id.as_str());
            span.record("parent_span_id", t.span_id.as_str());
            crate::engine::trace::adopt(&span, t);
        }
        let span = (!span.is_disabled()).then(|| Box::new(span));
        Execution {
            id,
            def,
            meta,
            trigger: (trigger != Trigger::Manual).then(|| Box::new(trigger)),
            trace: trace.map(Box::new),
            priority,
            order: CREATED.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            core: Mutex::new(Core {
                machine,
                commands: Vec::new(),
                driver: false,
                seq: 0,
                ticket: 0,
                abandoned: false,
                parking: false,
                withdrawing: false,
                final_state: None,
                span,
            }),
            wake: Wake::default(),
            done: Notify::new(),
        }
    }

    pub(crate) fn workflow(&self) -> &Arc<str> {
        &self.meta.workflow
    }

    /// Whether the node is letting go of the execution (see `Core::parking`).
    pub(crate) fn is_parking(&self) -> bool {
        self.core.lock().parking
    }

    /// The public view of the execution now.
    pub(crate) fn state(&self, now: DateTime<Utc>) -> ExecutionState {
        let core = self.core.lock();
        match &core.final_state {
            Some(s) => (**s).clone(),
            None => core.machine.view(self.identity(), now),
        }
    }

    /// The public view, or, if building it fails (the machine broke: a bug), the
    /// facts the execution's record holds.
    pub(super) fn state_or_minimal(&self, now: DateTime<Utc>) -> ExecutionState {
        let core = self.core.lock();
        if let Ok(state) = guard::call(|| core.machine.view(self.identity(), now)) {
            return state;
        }
        crate::engine::pending_state(&crate::store::NewExecution {
            id: self.id,
            workflow: self.workflow().to_string(),
            version: self.def.version().to_owned(),
            input: serde_json::Map::new(),
            parent: None,
            trigger: self.trigger.as_deref().cloned().unwrap_or_default(),
            created_at: core.machine.started_at,
            start_at: None,
            unique_key: None,
            debounce_key: None,
            kept: Vec::new(),
            priority: 0,
            trace: None,
        })
    }

    pub(crate) fn identity(&self) -> Identity<'_> {
        const MANUAL: &Trigger = &Trigger::Manual;
        Identity {
            id: self.id,
            parent: self.meta.parent,
            trigger: self.trigger.as_deref().unwrap_or(MANUAL),
            parked: None,
        }
    }

    pub(crate) fn is_finished(&self) -> bool {
        self.core.lock().final_state.is_some()
    }

    /// Stops the driver (its running jobs are dropped) and wakes the waiters.
    pub(crate) fn abandon(&self) {
        let mut core = self.core.lock();
        core.abandoned = true;
        core.commands.clear();
        drop(core);
        self.wake.signal();
        self.done.notify_waiters();
    }

    pub(super) fn step_context(&self, machine: &Machine, step: StepId, attempt: u32) -> Context {
        let mut ctx = machine.context();
        ctx.meta = Some(Arc::clone(&self.meta));
        ctx.step = Some(Arc::clone(machine.step_name(step)));
        ctx.attempt = attempt;
        ctx
    }

    pub(super) fn handler_context(&self, machine: &Machine) -> Context {
        let mut ctx = machine.context();
        ctx.meta = Some(Arc::clone(&self.meta));
        ctx
    }
}

/// The driver's wake-up: an outside event queued commands for it. Cheaper than a
/// `Notify` on the driver's hot path: registering is two atomic operations.
#[derive(Default)]
pub(crate) struct Wake {
    signalled: std::sync::atomic::AtomicBool,
    waker: futures::task::AtomicWaker,
}

impl Wake {
    pub(crate) fn signal(&self) {
        self.signalled.store(true, std::sync::atomic::Ordering::Release);
        self.waker.wake();
    }

    pub(crate) fn poll(&self, cx: &mut TaskContext<'_>) -> Poll<()> {
        self.waker.register(cx.waker());
        if self.signalled.swap(false, std::sync::atomic::Ordering::AcqRel) { Poll::Ready(()) } else { Poll::Pending }
    }
}
