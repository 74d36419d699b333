//! One node of a sagaflow cluster on PostgreSQL. Start several, each with its own
//! name, on one database; start executions from any of them (or from an engine
//! that only submits work) and the nodes share them. The cluster tests
//! (`tests/cluster.rs`) run three of these.
//!
//! ```text
//! cargo run --example cluster_node -- postgres://postgres@127.0.0.1:5432/postgres demo node-a
//! ```
//!
//! Arguments: the database URL, the schema that holds sagaflow's tables, the node's
//! name. `SAGAFLOW_STEP_MS` sets how long each step of `fan_out` sleeps (default
//! 5 ms), `SAGAFLOW_LEASE_MS` the node's lease (default 15 s), `SAGAFLOW_PARK_MS`
//! how long an idle execution stays before the node parks it in the store
//! (default 30 s); `SAGAFLOW_EFFECTS=path` makes every `fan_out` step append
//! `start` and `end` lines (`<kind> <execution> <step> <attempt> <node> <identity>
//! <unix µs>`, one `write` each; the identity is the node's in the cluster when
//! the step started, which changes when it joins again after its lease lapsed)
//! to that file, the `end` line also when the step's future is dropped
//! unfinished; `RUST_LOG=info` shows what the node does.
//!
//! The node registers four workflows:
//! - `fan_out`: `split`, then `part_0` … `part_7` in parallel, then `join`. Every
//!   step first inserts `(execution, step, attempt, node)` into the table
//!   `{schema}.step_runs`, created if missing, whose primary key is all four: a
//!   node that ran one attempt twice would fail on it;
//! - `hold`: one cancellable step that sleeps for an hour;
//! - `approval`: `request` awaits approval, then `finish` copies `approver` into
//!   its output;
//! - `limited`: one step, `charge`, that records its run like `fan_out`'s and
//!   sleeps as long, at most two at once per input `tenant` across the cluster.
//!
//! It prints `ready <node id>` once it takes part in the cluster; a line `drain`
//! on its input (or the end of its input) drains it: it finishes what it runs,
//! hands back what waits, prints `drained` and exits.

use std::sync::Arc;
use std::time::Duration;

use sagaflow::prelude::*;
use sagaflow::store::ClusterOptions;
use sagaflow::{BuildError, WorkflowDef};
use tokio::io::AsyncBufReadExt;

/// Where steps record their runs.
#[derive(Clone)]
struct Runs {
    url: Arc<str>,
    /// Reopened when it breaks (the server restarted).
    client: Arc<tokio::sync::Mutex<Arc<tokio_postgres::Client>>>,
    insert: String,
    node: Arc<str>,
    effects: Option<Arc<std::fs::File>>,
    /// The engine, once built: steps read its cluster identity.
    engine: Arc<std::sync::OnceLock<Engine>>,
}

/// Writes a step's `end` line when dropped: when the step returns, and when its
/// future is dropped unfinished (a timeout, a node that stops its executions).
struct Ending {
    runs: Runs,
    line: String,
}

impl Drop for Ending {
    fn drop(&mut self) {
        self.runs.effect("end", &self.line);
    }
}

impl Runs {
    async fn open(url: &str) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
        let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                eprintln!("step_runs connection: {e}");
            }
        });
        Ok(client)
    }

    async fn connect(url: &str, schema: &str, node: &str) -> Result<Self, Box<dyn std::error::Error>> {
        let client = Self::open(url).await?;
        client
            .batch_execute(&format!(
                "CREATE SCHEMA IF NOT EXISTS {schema};
                 CREATE TABLE IF NOT EXISTS {schema}.step_runs (
                     execution uuid NOT NULL,
                     step      text NOT NULL,
                     attempt   integer NOT NULL,
                     node      text NOT NULL,
                     at        timestamptz NOT NULL DEFAULT clock_timestamp(),
                     PRIMARY KEY (execution, step, attempt, node)
                 )"
            ))
            .await?;
        let effects = match std::env::var("SAGAFLOW_EFFECTS") {
            Ok(path) => Some(Arc::new(std::fs::OpenOptions::new().create(true).append(true).open(path)?)),
            Err(_) => None,
        };
        Ok(Runs {
            url: url.into(),
            client: Arc::new(tokio::sync::Mutex::new(Arc::new(client))),
            insert: format!("INSERT INTO {schema}.step_runs (execution, step, attempt, node) VALUES ($1, $2, $3, $4)"),
            node: node.into(),
            effects,
            engine: Arc::default(),
        })
    }

    /// Appends `<kind> <what> <unix µs>` to the effects file, if there is one.
    fn effect(&self, kind: &str, what: &str) {
        use std::io::Write as _;
        if let Some(file) = &self.effects {
            let us = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_micros();
            let _ = (&**file).write_all(format!("{kind} {what} {us}\n").as_bytes());
        }
    }

    /// Records the start of a step attempt; the returned guard records its end.
    fn started(&self, ctx: &Context) -> Ending {
        let identity = self.engine.get().and_then(Engine::node_id).map_or_else(|| "-".to_owned(), |id| id.to_string());
        let line =
            format!("{} {} {} {} {identity}", ctx.execution_id(), ctx.step().unwrap_or("-"), ctx.attempt(), self.node);
        self.effect("start", &line);
        Ending { runs: self.clone(), line }
    }

    async fn record(&self, ctx: &Context) -> Result<(), StepError> {
        let attempt = ctx.attempt() as i32;
        let step = ctx.step().unwrap_or_default();
        let id = ctx.execution_id().as_uuid();
        let failed = |e: tokio_postgres::Error| {
            let cause = e.as_db_error().map_or_else(|| e.to_string(), |db| db.message().to_owned());
            // An attempt recorded twice is for good; anything else (a server
            // restarting, a broken connection) is worth a retry.
            let error =
                StepError::new("step_runs", format!("recording {step} attempt {attempt} on {}: {cause}", self.node));
            if e.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION) { error.permanent() } else { error }
        };
        let client = {
            let mut guard = self.client.lock().await;
            if guard.is_closed() {
                *guard = Arc::new(Self::open(&self.url).await.map_err(failed)?);
            }
            Arc::clone(&guard)
        };
        client.execute(&self.insert, &[&id, &step, &attempt, &&*self.node]).await.map_err(failed)?;
        Ok(())
    }
}

fn fan_out(runs: &Runs, step_ms: u64) -> Result<WorkflowDef, BuildError> {
    let step = |runs: &Runs| {
        let runs = runs.clone();
        move |ctx: Context| {
            let runs = runs.clone();
            async move {
                let _ending = runs.started(&ctx);
                runs.record(&ctx).await?;
                tokio::time::sleep(Duration::from_millis(step_ms)).await;
                Ok::<_, StepError>(())
            }
        }
    };
    let parts: Vec<String> = (0..8).map(|i| format!("part_{i}")).collect();
    let mut wf = Workflow::new("fan_out").step("split", step(runs));
    for part in &parts {
        wf = wf.step_with(part.as_str(), step(runs), Step::opts().after("split"));
    }
    wf.step_with("join", step(runs), Step::opts().after(parts)).build()
}

/// `limited`: one step, `charge`, at most two at once per `tenant` across the
/// cluster, that records its run and then sleeps like the `fan_out` steps.
fn limited(runs: &Runs, step_ms: u64) -> Result<WorkflowDef, BuildError> {
    let runs = runs.clone();
    Workflow::new("limited")
        .step_with(
            "charge",
            move |ctx: Context| {
                let runs = runs.clone();
                async move {
                    runs.record(&ctx).await?;
                    tokio::time::sleep(Duration::from_millis(step_ms)).await;
                    Ok::<_, StepError>(())
                }
            },
            Step::opts().concurrency(2).concurrency_key("tenant"),
        )
        .build()
}

fn hold() -> Result<WorkflowDef, BuildError> {
    Workflow::new("hold")
        .step_with(
            "hold",
            |_ctx: Context| async {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                Ok::<_, StepError>(())
            },
            Step::opts().cancellable(true),
        )
        .build()
}

fn approval() -> Result<WorkflowDef, BuildError> {
    Workflow::new("approval")
        .step_with(
            "request",
            |_ctx: Context| async { Ok::<_, StepError>(Outcome::await_resume()) },
            Step::opts().await_approval(true),
        )
        .step_with(
            "finish",
            |ctx: Context| async move {
                let approver: String = ctx.get("approver")?;
                Ok::<_, StepError>(json!({ "approved_by": approver }))
            },
            Step::opts().after("request"),
        )
        .build()
}

fn env_ms(name: &str, default: u64) -> Result<u64, Box<dyn std::error::Error>> {
    match std::env::var(name) {
        Ok(v) => Ok(v.parse().map_err(|e| format!("{name}=`{v}` is not a number of milliseconds: {e}"))?),
        Err(_) => Ok(default),
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [url, schema, name] = args.as_slice() else {
        return Err("usage: cluster_node <postgres-url> <schema> <node-name>".into());
    };
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let step_ms = env_ms("SAGAFLOW_STEP_MS", 5)?;
    let lease = Duration::from_millis(env_ms("SAGAFLOW_LEASE_MS", 15_000)?);
    let park_after = Duration::from_millis(env_ms("SAGAFLOW_PARK_MS", 30_000)?);
    let runs = Runs::connect(url, schema, name).await?;
    let sep = if url.contains('?') { '&' } else { '?' };
    let engine = Engine::builder()
        .store_url(format!("{url}{sep}schema={schema}"))
        .cluster(ClusterOptions::default().lease(lease).batch(16).park_after(park_after))
        .register(fan_out(&runs, step_ms)?)
        .register(hold()?)
        .register(approval()?)
        .register(limited(&runs, step_ms)?)
        .build()
        .await?;
    let _ = runs.engine.set(engine.clone());
    println!("ready {name}");
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    while let Some(line) = lines.next_line().await? {
        if line.trim() == "drain" {
            break;
        }
    }
    engine.drain().await;
    println!("drained {name}");
    Ok(())
}
