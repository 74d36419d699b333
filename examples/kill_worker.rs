//! A worker process for the kill test (`tests/kill.rs`): it runs executions against
//! an SQLite file and appends a line to a side file for every step run, so that a
//! test can kill it with SIGKILL at any moment, start it again, and compare what
//! ran with what the store recorded.
//!
//! ```text
//! cargo run --example kill_worker -- <database> <records> start|resume
//! ```
//!
//! `start` starts 500 executions of `five_steps` (five chained steps that sleep
//! 100–300 ms each), one of `nap` (a step that snoozes 3 s on its first attempt)
//! and one of `deadline` (a step that awaits approval for at most 3 s; its
//! `on_timeout` handler completes it), and prints `started` once all are
//! acknowledged. In both modes the worker then waits until every execution in the
//! store has ended and prints `done`.
//!
//! A record line is `<kind> <execution> <step> <attempt> <pid> <unix ms>`, written
//! with one `write` call (atomic with `O_APPEND`) just before the step returns.

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sagaflow::prelude::*;
use sagaflow::store::{SqliteStore, Store};

const EXECUTIONS: u64 = 500;

/// The side file of step runs.
#[derive(Clone)]
struct Records(Arc<File>);

impl Records {
    fn write(&self, kind: &str, ctx: &Context) {
        let ms = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_millis();
        let line = format!(
            "{kind} {} {} {} {} {ms}\n",
            ctx.execution_id(),
            ctx.step().unwrap_or("-"),
            ctx.attempt(),
            std::process::id()
        );
        (&*self.0).write_all(line.as_bytes()).expect("the records file is writable");
    }
}

fn five_steps(records: &Records) -> Result<sagaflow::WorkflowDef, sagaflow::BuildError> {
    let mut wf = Workflow::new("five_steps");
    for i in 1..=5u64 {
        let records = records.clone();
        let step = move |ctx: Context| {
            let records = records.clone();
            async move {
                let slot: u64 = ctx.get("slot")?;
                tokio::time::sleep(Duration::from_millis(100 + (slot * 37 + i * 53) % 200)).await;
                records.write("step", &ctx);
                Ok::<_, StepError>(())
            }
        };
        let opts = if i == 1 { Step::opts() } else { Step::opts().after(format!("s{}", i - 1)) };
        wf = wf.step_with(format!("s{i}"), step, opts);
    }
    wf.build()
}

fn nap(records: &Records) -> Result<sagaflow::WorkflowDef, sagaflow::BuildError> {
    let records = records.clone();
    Workflow::new("nap")
        .step("nap", move |ctx: Context| {
            records.write("nap", &ctx);
            let outcome = if ctx.attempt() == 1 { Outcome::snooze("3s") } else { Outcome::Done };
            async move { Ok::<_, StepError>(outcome) }
        })
        .build()
}

fn deadline(records: &Records) -> Result<sagaflow::WorkflowDef, sagaflow::BuildError> {
    let (on_await, on_timeout) = (records.clone(), records.clone());
    Workflow::new("deadline")
        .step_with(
            "approve",
            move |ctx: Context| {
                on_await.write("await", &ctx);
                async { Ok::<Outcome, StepError>(Outcome::await_for("3s")) }
            },
            Step::opts().await_approval(true).on_timeout(move |ctx: Context| {
                on_timeout.write("timeout", &ctx);
                async { Ok::<_, StepError>(json!({ "timed_out": true })) }
            }),
        )
        .build()
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [database, records, mode] = args.as_slice() else {
        return Err("usage: kill_worker <database> <records> start|resume".into());
    };
    let file = OpenOptions::new().create(true).append(true).open(records)?;
    let records = Records(Arc::new(file));
    let engine = Engine::builder()
        .store_url(format!("sqlite://{database}"))
        .register(five_steps(&records)?)
        .register(nap(&records)?)
        .register(deadline(&records)?)
        .build()
        .await?;
    match mode.as_str() {
        "start" => {
            let starts = (0..EXECUTIONS).map(|slot| engine.start("five_steps", json!({ "slot": slot })));
            for id in futures::future::join_all(starts).await {
                id?;
            }
            engine.start("nap", json!({})).await?;
            engine.start("deadline", json!({})).await?;
            println!("started");
        }
        "resume" => {}
        other => return Err(format!("unknown mode `{other}`: expected `start` or `resume`").into()),
    }
    let mut ids = Vec::new();
    for workflow in ["five_steps", "nap", "deadline"] {
        ids.extend(engine.list_running(workflow).await?.into_iter().map(|s| s.id));
    }
    for id in ids {
        engine.wait(id).await?;
    }
    engine.shutdown().await;
    let store = SqliteStore::open(database).await?;
    let left = store.unfinished().await?.len();
    if left > 0 {
        return Err(format!("{left} executions have not ended").into());
    }
    println!("done");
    Ok(())
}
