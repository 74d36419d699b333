//! The engine under load, in memory: many concurrent executions of sleeping
//! steps, and many parked executions. The hot path (chains, diamonds, fan-outs)
//! is in `hot.rs`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use sagaflow::prelude::*;
use tokio::time::Instant;

use crate::{Table, heap_now, median, ms, noop, percentile, settled_heap};

pub(crate) async fn run(table: &mut Table) {
    if table.wants("concurrent") {
        concurrent(table).await;
    }
    if table.wants("parked") {
        parked(table).await;
    }
    if table.wants("keyed") {
        keyed(table).await;
    }
}

/// 20,000 executions of `a → b` with tiny steps, started together and waited
/// for: throughput when `b` is limited to 2 at once per key over 100 keys,
/// against the same load without a limit (what admission costs).
async fn keyed(table: &mut Table) {
    const N: usize = 20_000;
    let build = |limited: bool| {
        let opts = Step::opts().after("a");
        let opts = if limited { opts.concurrency(2).concurrency_key("key") } else { opts };
        Workflow::new("keyed").step("a", noop).step_with("b", noop, opts).build().expect("builds")
    };
    let mut rates = [Vec::new(), Vec::new()];
    for (i, limited) in [false, true].into_iter().enumerate() {
        let engine = Engine::builder().register(build(limited)).build().await.expect("engine");
        for _ in 0..3 {
            let start = Instant::now();
            let mut ids = Vec::with_capacity(N);
            for n in 0..N {
                ids.push(engine.start("keyed", json!({ "key": n % 100 })).await.expect("start"));
            }
            for id in ids {
                engine.wait(id).await.expect("wait");
            }
            rates[i].push(start.elapsed());
        }
        engine.shutdown().await;
    }
    let [free, limited] = rates.map(median);
    let per_sec = |d: Duration| format!("{:.0} /s", N as f64 / d.as_secs_f64());
    table.add("20,000 × (a → b), no limit", "executions / s", per_sec(free), "-");
    table.add("20,000 × (a → b), b: 2 at once × 100 keys", "executions / s", per_sec(limited), "-");
    let ratio = free.as_secs_f64() / limited.as_secs_f64();
    table.add("20,000 × (a → b), b: 2 at once × 100 keys", "throughput vs no limit", format!("{ratio:.2}"), "≥ 0.8");
}

/// 100,000 executions parked in an await: memory per execution, and the time to
/// resume them all and see them complete.
async fn parked(table: &mut Table) {
    const N: usize = 100_000;
    let awaiting = Arc::new(AtomicU64::new(0));
    let a = Arc::clone(&awaiting);
    let def = Workflow::new("approval")
        .step("request", move |_ctx: Context| {
            a.fetch_add(1, Ordering::Relaxed);
            std::future::ready(Ok::<_, StepError>(Outcome::await_for("7d")))
        })
        .step_with("finish", noop, Step::opts().after("request"))
        .build()
        .expect("builds");
    let engine = Engine::builder().register(def).build().await.expect("engine");
    let before = settled_heap().await;
    let mut ids = Vec::with_capacity(N);
    for i in 0..N {
        ids.push(engine.start("approval", json!({ "request": i })).await.expect("start"));
    }
    while awaiting.load(Ordering::Relaxed) < N as u64 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let per = (heap_now().saturating_sub(before) as f64 - (N * 16) as f64) / N as f64;
    table.add("100,000 executions parked in await", "heap / execution", format!("{per:.0} B"), "≤ 1 KiB");
    let start = Instant::now();
    for &id in &ids {
        engine.resume(id, json!({ "approved": true })).await.expect("resume");
    }
    for id in ids {
        engine.wait(id).await.expect("wait");
    }
    table.add("100,000 executions parked in await", "resume all + complete", ms(start.elapsed()), "-");
}

/// 10,000 executions of a 10-step chain whose steps each sleep 10 ms. Lateness is
/// how long a step started after its predecessor ended.
async fn concurrent(table: &mut Table) {
    const EXECUTIONS: usize = 10_000;
    const STEPS: usize = 10;
    let lateness = Arc::new(Mutex::new(Vec::with_capacity(EXECUTIONS * STEPS)));
    let ends: Arc<slots::Ends> = Arc::new(slots::Ends::new(EXECUTIONS));
    let mut wf = Workflow::new("sleepy");
    for i in 0..STEPS {
        let lateness = Arc::clone(&lateness);
        let ends = Arc::clone(&ends);
        let step = move |ctx: Context| {
            let lateness = Arc::clone(&lateness);
            let ends = Arc::clone(&ends);
            async move {
                let slot: usize = ctx.get("slot")?;
                let now = ends.now_nanos();
                if i > 0 {
                    let prev = ends.get(slot);
                    lateness.lock().push(Duration::from_nanos(now.saturating_sub(prev)));
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
                ends.set(slot, ends.now_nanos());
                Ok::<_, StepError>(())
            }
        };
        let opts = if i == 0 { Step::opts() } else { Step::opts().after(format!("s{}", i - 1)) };
        wf = wf.step_with(format!("s{i}"), step, opts);
    }
    let engine = Engine::builder().register(wf.build().expect("builds")).build().await.expect("engine");
    let mut walls = Vec::new();
    let mut p99s = Vec::new();
    for _ in 0..3 {
        lateness.lock().clear();
        let start = Instant::now();
        let mut ids = Vec::with_capacity(EXECUTIONS);
        for slot in 0..EXECUTIONS {
            ids.push(engine.start("sleepy", json!({ "slot": slot })).await.expect("start"));
        }
        for id in ids {
            engine.wait(id).await.expect("wait");
        }
        walls.push(start.elapsed());
        let mut l = std::mem::take(&mut *lateness.lock());
        p99s.push(percentile(&mut l, 99.0));
    }
    table.add("10,000 × 10-step chain, 10 ms steps", "wall time", ms(median(walls)), "≤ 250 ms");
    table.add("10,000 × 10-step chain, 10 ms steps", "step lateness p99", ms(median(p99s)), "≤ 5 ms");
}

/// Per-execution end times without a map: one atomic per slot.
mod slots {
    use super::*;

    pub(crate) struct Ends {
        base: Instant,
        slots: Vec<AtomicU64>,
    }

    impl Ends {
        pub(crate) fn new(n: usize) -> Self {
            Ends { base: Instant::now(), slots: (0..n).map(|_| AtomicU64::new(0)).collect() }
        }
        pub(crate) fn now_nanos(&self) -> u64 {
            self.base.elapsed().as_nanos() as u64
        }
        pub(crate) fn get(&self, i: usize) -> u64 {
            self.slots[i].load(Ordering::Acquire)
        }
        pub(crate) fn set(&self, i: usize, v: u64) {
            self.slots[i].store(v, Ordering::Release);
        }
    }
}
