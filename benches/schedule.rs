//! The scheduler: 10,000 schedules firing every second for a minute.
//!
//! Lateness is measured end to end: from a tick's instant to the moment the step
//! of the execution it started begins, on the engine's clock. Each execution
//! carries its schedule's number in its input, so every (schedule, tick) pair is
//! counted: none may be missing or doubled. Drift is the change of the median
//! lateness from the first sixth of the run to the last.
//!
//! Two shapes of load:
//! - **spread**: each schedule is `every 1s` on its own grid (`start_at` offsets of
//!   100 µs), so 10,000 fires a second arrive evenly, as independent schedules do;
//! - **burst**: each schedule is `* * * * * *`, so all 10,000 fire on the same
//!   instant every second; lateness then grows with the position in the burst
//!   (the last execution of a burst waits for the 9,999 before it).
//!
//! The engine runs on a `MemoryStore` that keeps the last 10,000 final states, so
//! the 600,000 executions of a run do not pile up in memory.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use parking_lot::Mutex;
use sagaflow::prelude::*;
use sagaflow::store::MemoryStore;
use sagaflow::{Clock, WorkflowDef};

use crate::{Table, ms, percentile};

const SCHEDULES: usize = 10_000;

pub(crate) async fn run(table: &mut Table) {
    let spread = "10,000 schedules every 1 s for 60 s (spread)";
    if table.wants(spread) {
        let r = measure(Shape::Spread, 60).await;
        table.add(spread, "fire lateness p50", ms(r.p50), "≤ 2 ms");
        table.add(spread, "fire lateness p99", ms(r.p99), "≤ 5 ms");
        table.add(spread, "fire lateness max", ms(r.max), "-");
        table.add(spread, "drift (end − start)", signed_ms(r.drift), "≈ 0");
        table.add(spread, "fires", r.fires.to_string(), "600,000");
        table.add(spread, "missed / doubled", format!("{} / {}", r.missed, r.doubled), "0 / 0");
    }
    let burst = "10,000 schedules `* * * * * *` for 10 s (burst)";
    if table.wants(burst) {
        let r = measure(Shape::Burst, 10).await;
        table.add(burst, "fire lateness p50", ms(r.p50), "-");
        table.add(burst, "fire lateness p99", ms(r.p99), "-");
        table.add(burst, "drift (end − start)", signed_ms(r.drift), "≈ 0");
        table.add(burst, "missed / doubled", format!("{} / {}", r.missed, r.doubled), "0 / 0");
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Shape {
    Spread,
    Burst,
}

struct Report {
    p50: Duration,
    p99: Duration,
    max: Duration,
    drift: i64,
    fires: usize,
    missed: usize,
    doubled: usize,
}

fn signed_ms(nanos: i64) -> String {
    format!("{:+.3} ms", nanos as f64 / 1e6)
}

/// The offset of schedule `i`'s grid within the second.
fn offset(shape: Shape, i: usize) -> TimeDelta {
    match shape {
        Shape::Spread => TimeDelta::microseconds((i * 1_000_000 / SCHEDULES) as i64),
        Shape::Burst => TimeDelta::zero(),
    }
}

/// When each step started: (schedule number, instant).
type Log = Arc<Mutex<Vec<(u32, DateTime<Utc>)>>>;

fn workflow(shape: Shape, base: DateTime<Utc>, clock: Clock, log: Log) -> WorkflowDef {
    let step = move |ctx: Context| {
        let now = clock.now();
        let i: u32 = ctx.get("i").unwrap_or(u32::MAX);
        log.lock().push((i, now));
        std::future::ready(Ok::<_, StepError>(Outcome::Done))
    };
    let mut wf = Workflow::new("tick").step("record", step);
    for i in 0..SCHEDULES {
        let schedule = match shape {
            Shape::Spread => Schedule::every("1s").and_then(|s| s.start_at(base + offset(shape, i))),
            Shape::Burst => Schedule::cron("* * * * * *").and_then(|s| s.start_at(base)),
        };
        wf = wf.schedule(schedule.and_then(|s| s.input(json!({ "i": i }))).expect("valid schedule"));
    }
    wf.build().expect("builds")
}

async fn measure(shape: Shape, seconds: i64) -> Report {
    let clock = Clock::system();
    let log: Log = Arc::new(Mutex::new(Vec::with_capacity(SCHEDULES * (seconds as usize + 2))));
    // The first tick: a whole second, two seconds ahead (arming takes a moment).
    let base = clock.now().duration_trunc(TimeDelta::seconds(1)).expect("truncates") + TimeDelta::seconds(2);
    let engine = Engine::builder()
        .store(MemoryStore::with_history(10_000))
        .clock(clock)
        .register(workflow(shape, base, clock, Arc::clone(&log)))
        .build()
        .await
        .expect("engine");
    // Run past the last tick of the last schedule; later ticks are not counted.
    let end = base + TimeDelta::seconds(seconds + 1);
    tokio::time::sleep_until(clock.instant_at(end)).await;
    engine.shutdown().await;
    tokio::time::sleep(Duration::from_millis(300)).await; // let the last steps run

    let records = std::mem::take(&mut *log.lock());
    let ticks = seconds as usize;
    let mut counts = vec![0u8; SCHEDULES * ticks];
    let mut lateness = Vec::with_capacity(records.len());
    let mut first = Vec::new();
    let mut last = Vec::new();
    let mut fires = 0;
    // Drift compares the first and the last sixth of the run.
    let window = (seconds / 6).max(1);
    for (i, at) in records {
        let i = i as usize;
        let anchor = base + offset(shape, i);
        // The tick this execution is for: the latest at or before its start.
        let since = (at - anchor).num_nanoseconds().expect("fits");
        let k = since.div_euclid(1_000_000_000);
        let late = since.rem_euclid(1_000_000_000);
        if !(0..seconds).contains(&k) {
            continue;
        }
        fires += 1;
        counts[i * ticks + k as usize] = counts[i * ticks + k as usize].saturating_add(1);
        lateness.push(Duration::from_nanos(late as u64));
        if k < window {
            first.push(late);
        } else if k >= seconds - window {
            last.push(late);
        }
    }
    let median = |v: &mut Vec<i64>| {
        v.sort_unstable();
        v.get(v.len() / 2).copied().unwrap_or(0)
    };
    let drift = median(&mut last) - median(&mut first);

    Report {
        p50: percentile(&mut lateness, 50.0),
        p99: percentile(&mut lateness, 99.0),
        max: percentile(&mut lateness, 100.0),
        drift,
        fires,
        missed: counts.iter().filter(|c| **c == 0).count(),
        doubled: counts.iter().filter(|c| **c > 1).count(),
    }
}
