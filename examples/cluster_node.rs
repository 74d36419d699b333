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
//! 5 ms), `SAGAFLOW_LEASE_MS` the node's lease (default 15 s); `RUST_LOG=info`
//! shows what the node does.
//!
//! The node registers three workflows:
//! - `fan_out`: `split`, then `part_0` … `part_7` in parallel, then `join`. Every
//!   step first inserts `(execution, step, attempt, node)` into the table
//!   `{schema}.step_runs`, created if missing, whose primary key is all four: a
//!   node that ran one attempt twice would fail on it;
//! - `hold`: one cancellable step that sleeps for an hour;
//! - `approval`: `request` awaits approval, then `finish` copies `approver` into
//!   its output.
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
    client: Arc<tokio_postgres::Client>,
    insert: String,
    node: Arc<str>,
}

impl Runs {
    async fn connect(url: &str, schema: &str, node: &str) -> Result<Self, Box<dyn std::error::Error>> {
        let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                eprintln!("step_runs connection: {e}");
            }
        });
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
        Ok(Runs {
            client: Arc::new(client),
            insert: format!("INSERT INTO {schema}.step_runs (execution, step, attempt, node) VALUES ($1, $2, $3, $4)"),
            node: node.into(),
        })
    }

    async fn record(&self, ctx: &Context) -> Result<(), StepError> {
        let attempt = ctx.attempt() as i32;
        let step = ctx.step().unwrap_or_default();
        self.client
            .execute(&self.insert, &[&ctx.execution_id().as_uuid(), &step, &attempt, &&*self.node])
            .await
            .map_err(|e| {
                let cause = e.as_db_error().map_or_else(|| e.to_string(), |db| db.message().to_owned());
                StepError::new("step_runs", format!("recording {step} attempt {attempt} on {}: {cause}", self.node))
                    .permanent()
            })?;
        Ok(())
    }
}

fn fan_out(runs: &Runs, step_ms: u64) -> Result<WorkflowDef, BuildError> {
    let step = |runs: &Runs| {
        let runs = runs.clone();
        move |ctx: Context| {
            let runs = runs.clone();
            async move {
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
    let runs = Runs::connect(url, schema, name).await?;
    let sep = if url.contains('?') { '&' } else { '?' };
    let engine = Engine::builder()
        .store_url(format!("{url}{sep}schema={schema}"))
        .cluster(ClusterOptions::default().lease(lease).batch(16))
        .register(fan_out(&runs, step_ms)?)
        .register(hold()?)
        .register(approval()?)
        .build()
        .await?;
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
