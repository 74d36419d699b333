//! Many nodes on PostgreSQL: durable steps per second with one node and with
//! three (engines in this process, each with its own connections and lease), and
//! how soon an idle node picks up a new execution.
//!
//! The database comes from `SAGAFLOW_BENCH_DATABASE_URL`, else from
//! `SAGAFLOW_TEST_DATABASE_URL`; each workload runs in a schema of its own, dropped
//! afterwards. Without either variable the workloads are listed as skipped.

use std::sync::Arc;
use std::time::Duration;

use sagaflow::prelude::*;
use sagaflow::store::ClusterOptions;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::{Table, chain, median, ms, percentile};

const EXECUTIONS: usize = 1_000;
const STEPS: usize = 20;

fn database() -> Option<String> {
    ["SAGAFLOW_BENCH_DATABASE_URL", "SAGAFLOW_TEST_DATABASE_URL"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|u| !u.is_empty()))
}

/// A schema for one run, dropped with the value.
struct Schema {
    admin: tokio_postgres::Client,
    url: String,
    name: String,
}

impl Schema {
    async fn new(url: &str) -> Schema {
        let (admin, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.expect("database");
        tokio::spawn(connection);
        let name = format!("sf_bench_{}", uuid::Uuid::now_v7().simple());
        Schema { admin, url: url.to_owned(), name }
    }

    fn store_url(&self) -> String {
        let sep = if self.url.contains('?') { '&' } else { '?' };
        format!("{}{sep}schema={}", self.url, self.name)
    }

    async fn ended(&self) -> i64 {
        let row = self.admin.query_one(&format!("SELECT count(*) FROM {}.history", self.name), &[]).await;
        row.map(|r| r.get(0)).unwrap_or(0)
    }

    async fn drop(self) {
        self.admin.batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name)).await.expect("drop");
    }
}

pub(crate) async fn run(table: &mut Table) {
    let names = [
        ("PostgreSQL, 1 node: 1,000 × 20-step chain", 1, "≥ 8,000/s"),
        ("PostgreSQL, 3 nodes: 1,000 × 20-step chain", 3, "≥ 90 % of 1 node"),
    ];
    let pickup = "PostgreSQL: idle node picks up a new execution";
    let Some(url) = database() else {
        for (name, _, target) in names {
            if table.wants(name) {
                table.add(name, "durable steps/s", "skipped".into(), target);
            }
        }
        if table.wants(pickup) {
            table.add(pickup, "p50 latency", "skipped".into(), "≤ 5 ms");
        }
        println!("  (PostgreSQL workloads skipped: set SAGAFLOW_BENCH_DATABASE_URL or SAGAFLOW_TEST_DATABASE_URL)");
        return;
    };
    for (name, nodes, target) in names {
        if table.wants(name) {
            throughput(table, &url, name, nodes, target).await;
        }
    }
    if table.wants(pickup) {
        pickup_latency(table, &url, pickup).await;
    }
}

/// `nodes` engines share 1,000 executions of a 20-step chain of no-op steps,
/// started from an engine that runs nothing: 20,000 journaled steps, from the
/// first start until the last execution is in the history table.
async fn throughput(table: &mut Table, url: &str, name: &str, nodes: usize, target: &str) {
    let mut per_step = Vec::new();
    for _ in 0..3 {
        let schema = Schema::new(url).await;
        let mut engines = Vec::new();
        for _ in 0..nodes {
            let engine = Engine::builder()
                .store_url(schema.store_url())
                .cluster(ClusterOptions::default().batch(128))
                .register(chain(STEPS))
                .build()
                .await
                .expect("node");
            engines.push(engine);
        }
        let submitter = Engine::builder()
            .store_url(schema.store_url())
            .cluster(ClusterOptions::default().capacity(0))
            .register(chain(STEPS))
            .build()
            .await
            .expect("submitter");
        let start = Instant::now();
        let ids = futures::future::join_all((0..EXECUTIONS).map(|_| submitter.start("chain", json!({})))).await;
        assert!(ids.iter().all(Result::is_ok), "every start is acknowledged");
        while schema.ended().await < EXECUTIONS as i64 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let elapsed = start.elapsed();
        for e in engines.iter().chain([&submitter]) {
            e.shutdown().await;
        }
        drop(engines);
        schema.drop().await;
        per_step.push(Duration::from_secs_f64(elapsed.as_secs_f64() / (EXECUTIONS * STEPS) as f64));
    }
    let per_step = median(per_step);
    table.add(name, "durable steps/s", format!("{:.0}/s", 1.0 / per_step.as_secs_f64()), target);
}

/// One idle node; 200 times, an engine that runs nothing starts a one-step
/// execution and the time until the step runs on the node is taken: the start's
/// commit, the notification, the claim.
async fn pickup_latency(table: &mut Table, url: &str, name: &str) {
    let schema = Schema::new(url).await;
    let (tx, mut rx) = mpsc::unbounded_channel::<Instant>();
    let tx = Arc::new(tx);
    let one = Workflow::new("one")
        .step("ran", move |_ctx: Context| {
            let _ = tx.send(Instant::now());
            async { Ok::<_, StepError>(()) }
        })
        .build()
        .expect("one builds");
    let node = Engine::builder().store_url(schema.store_url()).register(one).build().await.expect("node");
    let submitter = Engine::builder()
        .store_url(schema.store_url())
        .cluster(ClusterOptions::default().capacity(0))
        .register(Workflow::new("one").step("ran", crate::noop).build().expect("one builds"))
        .build()
        .await
        .expect("submitter");
    let mut latencies = Vec::new();
    for _ in 0..200 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let started = Instant::now();
        submitter.start("one", json!({})).await.expect("start");
        let ran = rx.recv().await.expect("the step runs");
        latencies.push(ran - started);
    }
    node.shutdown().await;
    submitter.shutdown().await;
    schema.drop().await;
    table.add(name, "p50 latency", ms(percentile(&mut latencies, 50.0)), "≤ 5 ms");
    table.add(name, "p99 latency", ms(percentile(&mut latencies, 99.0)), "-");
}
