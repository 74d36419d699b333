//! The scheduler: one task per engine that fires every schedule of every
//! registered workflow.
//!
//! Each schedule's next fire time is a timer in the engine's one timer index
//! ([`Timers`]), converted to an instant by the engine's [`Clock`]; there is no
//! tokio timer per schedule and no second index. The timer task hands due
//! schedules to the scheduler's queue and wakes it. The scheduler takes them,
//! decides which ticks run ([`misfire`]), claims each tick in the store
//! (concurrently across schedules, in order within one), and starts an execution
//! per tick won, with [`Trigger::Scheduled`] naming the schedule (the matching
//! cron pattern, the interval...) and the tick. Executions are launched at once;
//! waiting for a durable store to commit their creation moves to a separate task,
//! so that a commit never delays the next wake.
//!
//! Schedules are armed when their workflow is registered: the engine reads the
//! schedule's records from the store ([`durable`](crate::schedule::durable)) and
//! resumes after the last claimed tick; ticks missed while no engine ran are then
//! due at once, and the misfire policy applies.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Weak};
use std::time::Duration;

use chrono::{DateTime, Utc};
use parking_lot::Mutex;
use serde_json::Value;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::timers::{TimerTarget, Timers};
use super::{Clock, EngineError, EngineInner};
use crate::model::context::{Data, object_to_data};
use crate::model::execution::Trigger;
use crate::model::{Schedule, ScheduleKind, WorkflowDef};
use crate::schedule::ScheduleInfo;
use crate::schedule::durable::{armed_instant, armed_key, decode_armed, encode_armed, resume_point, tick_key};
use crate::schedule::fire::Fire;
use crate::schedule::misfire;
use crate::store::{Store, StoreError};

/// How long to wait before retrying a store operation that failed.
const RETRY: Duration = Duration::from_secs(1);

/// The most schedules fired in one step of a wake.
const CHUNK: usize = 256;

/// The engine's handle on its scheduler: new workflows to arm, and what the
/// scheduler shows.
#[derive(Debug, Default)]
pub(crate) struct Scheduler {
    /// Workflows whose schedules are still to be armed.
    to_arm: Mutex<Vec<WorkflowDef>>,
    /// Schedules whose timer fired, by index, in the order they came due.
    due: Mutex<Vec<usize>>,
    wake: Notify,
    board: Mutex<Vec<ScheduleInfo>>,
}

impl Scheduler {
    /// Queues the schedules of newly registered workflows.
    pub(crate) fn add(&self, defs: &[WorkflowDef]) {
        let mut pending = self.to_arm.lock();
        let before = pending.len();
        pending.extend(defs.iter().filter(|d| !d.triggers().schedules.is_empty()).cloned());
        if pending.len() > before {
            drop(pending);
            self.wake.notify_one();
        }
    }

    /// The timer of schedule `index` fired.
    pub(crate) fn fire(&self, index: usize) {
        self.due.lock().push(index);
        self.wake.notify_one();
    }

    /// Wakes the scheduler (to retry arming schedules).
    pub(crate) fn wake(&self) {
        self.wake.notify_one();
    }

    /// Every armed schedule, by workflow and index.
    pub(crate) fn board(&self) -> Vec<ScheduleInfo> {
        let mut out = self.board.lock().clone();
        out.sort_by(|a, b| (&a.workflow, a.index).cmp(&(&b.workflow, b.index)));
        out
    }
}

/// Arms the schedules registered so far, then starts the scheduler task. Returns
/// once they are armed, so that `build()` reports a store failure.
pub(crate) async fn start(inner: &Arc<EngineInner>) -> Result<(), EngineError> {
    let mut service = Service {
        engine: Arc::downgrade(inner),
        scheduler: Arc::clone(&inner.scheduler),
        store: Arc::clone(&inner.store),
        clock: inner.clock,
        timers: Arc::clone(&inner.timers),
        entries: Vec::new(),
        ready: VecDeque::new(),
        arm_retry: None,
    };
    service.arm_pending().await?;
    tokio::spawn(service.run(inner.shutdown.clone()));
    Ok(())
}

/// One armed schedule.
struct Entry {
    key: String,
    def: WorkflowDef,
    index: usize,
    input: Data,
    /// What executions record as their trigger, per cron pattern (one for other kinds).
    labels: Vec<String>,
    armed: DateTime<Utc>,
    next: Option<Fire>,
    /// The instant of the entry's timer while one is armed (a timer is cancelled by
    /// its target and instant).
    timer: Option<Instant>,
}

impl Entry {
    fn schedule(&self) -> &Schedule {
        &self.def.triggers().schedules[self.index]
    }
}

struct Service {
    engine: Weak<EngineInner>,
    scheduler: Arc<Scheduler>,
    store: Arc<dyn Store>,
    clock: Clock,
    timers: Arc<Timers>,
    entries: Vec<Entry>,
    /// Schedules whose timer fired, not yet taken (a wake takes [`CHUNK`] at a time).
    ready: VecDeque<usize>,
    /// Arming failed (store error): try again at this instant.
    arm_retry: Option<Instant>,
}

/// A tick won: start an execution for it.
struct Start {
    def: WorkflowDef,
    input: Data,
    trigger: Trigger,
    /// The schedule's tick key and the tick.
    key: String,
    fire_time: DateTime<Utc>,
}

impl Service {
    async fn run(mut self, shutdown: CancellationToken) {
        let scheduler = Arc::clone(&self.scheduler);
        loop {
            let notified = scheduler.wake.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if shutdown.is_cancelled() {
                return;
            }
            let now = Instant::now();
            if self.arm_retry.is_none_or(|at| at <= now) && !scheduler.to_arm.lock().is_empty() {
                self.arm_retry = None;
                if let Err(e) = self.arm_pending().await {
                    tracing::warn!(error = %e, "arming schedules failed; retrying");
                    let at = Instant::now() + RETRY;
                    self.arm_retry = Some(at);
                    self.timers.arm(TimerTarget::ArmSchedules, at);
                }
            }
            self.ready.extend(scheduler.due.lock().drain(..));
            if !self.fire_due(self.clock.now()).await {
                return;
            }
            tokio::select! {
                _ = notified => {}
                _ = shutdown.cancelled() => return,
            }
        }
    }

    /// Sets schedule `idx`'s timer to `at`, in place of the one armed before.
    fn arm_timer(&mut self, idx: usize, at: DateTime<Utc>) {
        let at = self.clock.instant_at(at);
        if let Some(old) = self.entries[idx].timer.replace(at) {
            self.timers.cancel(TimerTarget::Schedule(idx), old);
        }
        self.timers.arm(TimerTarget::Schedule(idx), at);
    }

    /// Arms the schedules of the workflows registered since the last call.
    async fn arm_pending(&mut self) -> Result<(), StoreError> {
        let defs = std::mem::take(&mut *self.scheduler.to_arm.lock());
        if defs.is_empty() {
            return Ok(());
        }
        match self.arm(&defs).await {
            Ok(()) => Ok(()),
            Err(e) => {
                // Keep them for the next attempt (ahead of any registered since).
                let mut pending = self.scheduler.to_arm.lock();
                let later = std::mem::replace(&mut *pending, defs);
                pending.extend(later);
                Err(e)
            }
        }
    }

    async fn arm(&mut self, defs: &[WorkflowDef]) -> Result<(), StoreError> {
        let mut records: HashMap<String, DateTime<Utc>> = self.store.last_ticks().await?.into_iter().collect();
        let now = self.clock.now();
        // Armed instants first: every one must be read or won before anything fires.
        let mut armed = Vec::new();
        for def in defs {
            for index in 0..def.triggers().schedules.len() {
                let key = armed_key(def.name(), index);
                let at = match records.get(&key) {
                    Some(stored) => decode_armed(*stored),
                    None => {
                        let mine = armed_instant(now);
                        if !self.store.claim_tick(&key, encode_armed(mine)).await? {
                            // Another engine armed it first: read its instant.
                            records = self.store.last_ticks().await?.into_iter().collect();
                        }
                        records.get(&key).map_or(mine, |stored| decode_armed(*stored))
                    }
                };
                armed.push(at);
            }
        }
        let mut armed = armed.into_iter();
        let mut board = Vec::new();
        for def in defs {
            for (index, schedule) in def.triggers().schedules.iter().enumerate() {
                let armed = armed.next().expect("one armed instant per schedule");
                let key = tick_key(def.name(), index);
                let last = records.get(&key).copied();
                let next = schedule.next_fire(resume_point(last, armed), armed);
                let labels = match schedule.kind() {
                    ScheduleKind::Cron(exprs) => exprs.iter().map(|e| schedule.cron_label(e.as_str())).collect(),
                    _ => vec![schedule.label()],
                };
                let input = object_to_data(Value::Object(schedule.input_value().clone())).unwrap_or_default();
                board.push(ScheduleInfo {
                    workflow: def.name().to_owned(),
                    index,
                    key: key.clone(),
                    schedule: schedule.describe(),
                    misfire: schedule.misfire_policy(),
                    armed_at: armed,
                    last_fire: last,
                    next_fire: next.map(|f| f.at),
                });
                tracing::debug!(workflow = def.name(), index, next = ?next.map(|f| f.at), "schedule armed");
                self.entries.push(Entry { key, def: def.clone(), index, input, labels, armed, next, timer: None });
                if let Some(next) = next {
                    self.arm_timer(self.entries.len() - 1, next.at);
                }
            }
        }
        self.scheduler.board.lock().extend(board);
        Ok(())
    }

    /// Fires every due schedule, in chunks of [`CHUNK`] so that the first
    /// executions of a large burst start while the rest are still being claimed.
    /// Returns false once the engine is gone.
    async fn fire_due(&mut self, now: DateTime<Utc>) -> bool {
        loop {
            let batch = self.take_due(now);
            if batch.is_empty() {
                return true;
            }
            let full = batch.len() == CHUNK;
            let Some(engine) = self.engine.upgrade() else { return false };
            self.claim_and_start(engine, batch).await;
            if !full {
                return true;
            }
            tokio::task::yield_now().await;
        }
    }

    /// Takes up to [`CHUNK`] due schedules and decides which of their ticks run
    /// (possibly none, when the misfire policy drops them).
    fn take_due(&mut self, now: DateTime<Utc>) -> Vec<(usize, Vec<Fire>)> {
        let mut batch: Vec<(usize, Vec<Fire>)> = Vec::new();
        while batch.len() < CHUNK
            && let Some(idx) = self.ready.pop_front()
        {
            self.entries[idx].timer = None;
            let Some(next) = self.entries[idx].next else { continue };
            if next.at > now {
                // The timer's instant came a little before the clock reads the tick.
                self.arm_timer(idx, next.at);
                continue;
            }
            let entry = &self.entries[idx];
            let due = misfire::due(entry.schedule(), entry.armed, next, now);
            if let Some(from) = due.dropped_from {
                tracing::info!(
                    workflow = entry.def.name(),
                    index = entry.index,
                    first_missed = %from,
                    runs = due.run.len(),
                    policy = ?entry.schedule().misfire_policy(),
                    "missed ticks"
                );
            }
            self.entries[idx].next = due.next;
            if let Some(n) = due.next {
                self.arm_timer(idx, n.at);
            }
            // Kept even with nothing to run, so that what `schedules()` shows moves on.
            batch.push((idx, due.run));
        }
        batch
    }

    /// Starts an execution for each tick of a batch. The store claims each tick
    /// and creates its execution in one transaction (`Write::Tick`), so a tick is
    /// never claimed without its execution, and on a shared store the one engine
    /// that wins a tick creates it.
    async fn claim_and_start(&mut self, engine: Arc<EngineInner>, batch: Vec<(usize, Vec<Fire>)>) {
        let mut starts = Vec::new();
        let mut board_updates = Vec::with_capacity(batch.len());
        for (idx, fires) in batch {
            let entry = &self.entries[idx];
            for fire in &fires {
                let label = entry.labels.get(fire.pattern).or(entry.labels.first()).cloned().unwrap_or_default();
                starts.push(Start {
                    def: entry.def.clone(),
                    input: entry.input.clone(),
                    trigger: Trigger::Scheduled { schedule: label, fire_time: fire.at },
                    key: entry.key.clone(),
                    fire_time: fire.at,
                });
            }
            board_updates.push((idx, fires.last().map(|f| f.at)));
        }
        {
            let mut board = self.scheduler.board.lock();
            for (idx, last) in board_updates {
                if let Some(info) = board.get_mut(idx) {
                    if last.is_some() {
                        info.last_fire = last;
                    }
                    info.next_fire = self.entries[idx].next.map(|f| f.at);
                }
            }
        }
        if !starts.is_empty() {
            // The first poll launches every execution; only waiting for a durable
            // store's commit, if any, moves to a task of its own.
            let mut starting = Box::pin(start_all(engine, starts));
            if futures::poll!(starting.as_mut()).is_pending() {
                tokio::spawn(starting);
            }
        }
    }
}

/// Starts the executions of the ticks won, together (so that a durable store
/// commits them in one batch). Every execution is launched on the first poll.
async fn start_all(engine: Arc<EngineInner>, starts: Vec<Start>) {
    let engine = &engine;
    let results = futures::future::join_all(
        starts
            .into_iter()
            .map(|s| async move { engine.start_tick(s.def, s.input, s.trigger, s.key, s.fire_time).await }),
    )
    .await;
    for r in results {
        if let Err(e) = r {
            tracing::warn!(error = %e, "starting a scheduled execution failed");
        }
    }
}
