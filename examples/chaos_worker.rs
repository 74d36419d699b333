//! The worker process of the chaos test (`tests/chaos.rs`): it runs 510
//! executions of six shapes against an SQLite file while the test kills it with
//! SIGKILL at random moments and starts it again, and appends a line to a side
//! file for every side effect of a step, so the test can hold what ran against
//! what the guarantees allow.
//!
//! ```text
//! cargo run --example chaos_worker -- <database> <side file>
//! ```
//!
//! Every run of the worker does the same: it recovers what the file holds,
//! starts the executions the file does not know yet (ten every 100 ms, so that
//! starting spreads over several lives of the process), resumes executions that
//! await an approval once they have waited 300 ms, and exits with `done` once all
//! 510 have ended.
//!
//! The shapes (slot `n` runs shape `n % 6`):
//! - `chain`: five steps, one after the other;
//! - `fan`: a root, four branches in parallel, a join;
//! - `retry`: a step that fails on its first two attempts;
//! - `nap`: a step that snoozes 300 ms on its first attempt;
//! - `approval`: a step that awaits an approval, given by the worker itself;
//! - `saga`: two steps with rollbacks, then a step that fails for good: both
//!   compensations run and the execution ends rolled back.
//!
//! A side-file line is `<kind> <execution> <step> <attempt> <pid>`, written with
//! one `write` call (whole lines with `O_APPEND`) just before the step returns;
//! kinds: `run` (the step succeeded), `fail`, `snooze`, `await`, `compensate`.

use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sagaflow::prelude::*;
use sagaflow::store::{ExecutionQuery, SqliteStore, Store};
use sagaflow::{StepStatus, WorkflowDef};

/// Executions in all.
const EXECUTIONS: u64 = 510;
/// The shapes, by `slot % 6`.
const SHAPES: [&str; 6] = ["chain", "fan", "retry", "nap", "approval", "saga"];

/// The side file.
#[derive(Clone)]
struct Effects(Arc<File>);

impl Effects {
    fn write(&self, kind: &str, ctx: &Context) {
        let line = format!(
            "{kind} {} {} {} {}\n",
            ctx.execution_id(),
            ctx.step().unwrap_or("-"),
            ctx.attempt(),
            std::process::id()
        );
        (&*self.0).write_all(line.as_bytes()).expect("the side file is writable");
    }

    /// A step that sleeps a little (its length depends on the slot and the step)
    /// and records its run.
    fn step(&self, salt: u64) -> impl Fn(Context) -> BoxFuture + Send + Sync + 'static {
        let effects = self.clone();
        move |ctx: Context| {
            let effects = effects.clone();
            Box::pin(async move {
                let slot: u64 = ctx.get("slot")?;
                tokio::time::sleep(Duration::from_millis(20 + (slot * 31 + salt * 17) % 80)).await;
                effects.write("run", &ctx);
                Ok(Outcome::Done)
            })
        }
    }
}

type BoxFuture = std::pin::Pin<Box<dyn std::future::Future<Output = StepResult> + Send>>;

fn chain(fx: &Effects) -> WorkflowDef {
    let mut wf = Workflow::new("chain").step("c1", fx.step(1));
    for i in 2..=5u64 {
        wf = wf.step_with(format!("c{i}"), fx.step(i), Step::opts().after(format!("c{}", i - 1)));
    }
    wf.build().expect("chain builds")
}

fn fan(fx: &Effects) -> WorkflowDef {
    let mut wf = Workflow::new("fan").step("root", fx.step(1));
    for i in 0..4u64 {
        wf = wf.step_with(format!("branch{i}"), fx.step(i + 2), Step::opts().after("root"));
    }
    let branches: Vec<String> = (0..4).map(|i| format!("branch{i}")).collect();
    wf.step_with("join", fx.step(7), Step::opts().after(branches)).build().expect("fan builds")
}

fn retry(fx: &Effects) -> WorkflowDef {
    let effects = fx.clone();
    let flaky = move |ctx: Context| {
        let effects = effects.clone();
        async move {
            if ctx.attempt() <= 2 {
                effects.write("fail", &ctx);
                return Err(StepError::new("flaky", "the service is warming up"));
            }
            effects.write("run", &ctx);
            Ok(Outcome::Done)
        }
    };
    Workflow::new("retry")
        .step("prepare", fx.step(1))
        .step_with("flaky", flaky, Step::opts().after("prepare").max_retries(5).retry_delay("50ms"))
        .step_with("finish", fx.step(3), Step::opts().after("flaky"))
        .build()
        .expect("retry builds")
}

fn nap(fx: &Effects) -> WorkflowDef {
    let effects = fx.clone();
    let nap = move |ctx: Context| {
        let effects = effects.clone();
        async move {
            if ctx.attempt() == 1 {
                effects.write("snooze", &ctx);
                return Ok::<_, StepError>(Outcome::snooze("300ms"));
            }
            effects.write("run", &ctx);
            Ok(Outcome::Done)
        }
    };
    Workflow::new("nap")
        .step("prepare", fx.step(1))
        .step_with("nap", nap, Step::opts().after("prepare"))
        .step_with("wake", fx.step(3), Step::opts().after("nap"))
        .build()
        .expect("nap builds")
}

fn approval(fx: &Effects) -> WorkflowDef {
    let effects = fx.clone();
    let approve = move |ctx: Context| {
        effects.write("await", &ctx);
        async { Ok::<_, StepError>(Outcome::await_resume()) }
    };
    Workflow::new("approval")
        .step("submit", fx.step(1))
        .step_with("approve", approve, Step::opts().after("submit").await_approval(true))
        .step_with("ship", fx.step(3), Step::opts().after("approve"))
        .build()
        .expect("approval builds")
}

fn saga(fx: &Effects) -> WorkflowDef {
    let compensation = |fx: &Effects| {
        let effects = fx.clone();
        move |ctx: Context| {
            effects.write("compensate", &ctx);
            async { Ok::<_, StepError>(()) }
        }
    };
    let effects = fx.clone();
    let ship = move |ctx: Context| {
        effects.write("fail", &ctx);
        async { Err::<(), _>(StepError::new("carrier_down", "no carrier accepts the parcel").permanent()) }
    };
    Workflow::new("saga")
        .step_with("reserve", fx.step(1), Step::opts().rollback(compensation(fx)))
        .step_with("charge", fx.step(2), Step::opts().after("reserve").rollback(compensation(fx)))
        .step_with("ship", ship, Step::opts().after("charge").rollback(compensation(fx)))
        .build()
        .expect("saga builds")
}

/// The slots the file knows: every execution started so far, running or ended.
/// Read from the file itself (read-only, beside the engine), the unfinished ones
/// first: an execution that ends between the two reads is in one of them.
async fn known_slots(database: &str) -> Result<HashSet<u64>, Box<dyn std::error::Error>> {
    let store = SqliteStore::open_read_only(database).await?;
    let mut slots = HashSet::new();
    for e in store.unfinished().await? {
        slots.extend(e.execution.input.get("slot").and_then(|v| v.as_u64()));
    }
    for state in store.list_finished(&ExecutionQuery::default()).await? {
        slots.extend(state.get::<u64>("slot"));
    }
    Ok(slots)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [database, effects] = args.as_slice() else {
        return Err("usage: chaos_worker <database> <side file>".into());
    };
    let fx = Effects(Arc::new(OpenOptions::new().create(true).append(true).open(effects)?));
    let engine = Engine::builder()
        .store_url(format!("sqlite://{database}"))
        .register(chain(&fx))
        .register(fan(&fx))
        .register(retry(&fx))
        .register(nap(&fx))
        .register(approval(&fx))
        .register(saga(&fx))
        .build()
        .await?;
    println!("ready");

    // Approvals: resume each awaiting execution once it has waited 300 ms here.
    let approver = engine.clone();
    tokio::spawn(async move {
        let mut seen: HashMap<ExecutionId, Instant> = HashMap::new();
        loop {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let Ok(running) = approver.list_running("approval").await else { continue };
            for state in running {
                let awaiting = state.step("approve").is_some_and(|s| s.status == StepStatus::Awaiting);
                if !awaiting {
                    continue;
                }
                let since = *seen.entry(state.id).or_insert_with(Instant::now);
                if since.elapsed() >= Duration::from_millis(300) {
                    let _ = approver.resume(state.id, json!({ "approved": true })).await;
                }
            }
        }
    });

    // Start what the file does not know yet, ten at a time.
    let known = known_slots(database).await?;
    let missing: Vec<u64> = (0..EXECUTIONS).filter(|s| !known.contains(s)).collect();
    for batch in missing.chunks(10) {
        let starts = batch.iter().map(|&slot| engine.start(SHAPES[(slot % 6) as usize], json!({ "slot": slot })));
        for id in futures::future::join_all(starts).await {
            id?;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Wait for every execution to end.
    loop {
        let ended = engine.history(&ExecutionQuery::default()).await?.len() as u64;
        if ended >= EXECUTIONS {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    engine.shutdown().await;
    println!("done");
    Ok(())
}
