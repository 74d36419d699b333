//! The dashboard under load: 20 clients polling the overview of an engine that
//! holds 5,000 live executions (awaiting approval) on SQLite, and what that costs
//! the engine: its step throughput on a workload of 10-step chains, measured
//! alone and while the clients poll. The ratio of the two is the figure to watch
//! (target ≥ 0.8).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use sagaflow::WorkflowDef;
use sagaflow::dashboard::Dashboard;
use sagaflow::prelude::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

use crate::{Table, chain, median, ms};

const LIVE: usize = 5_000;
const CLIENTS: usize = 20;
/// Each client asks again this long after an answer: a page left open polls
/// every 5 s and on events at most once a second, so this is 10 busy browsers'
/// worth per client.
const POLL: Duration = Duration::from_millis(100);
const CHAINS: usize = 2_000;
const STEPS: usize = 10;

pub(crate) async fn run(table: &mut Table) {
    let name = "dashboard: 20 clients polling, 5,000 live executions";
    if table.wants(name) {
        load(table, name).await;
    }
}

fn approval() -> WorkflowDef {
    Workflow::new("approval")
        .step("submit", crate::noop)
        .step_with(
            "approve",
            |_ctx: Context| async { Ok::<_, StepError>(Outcome::await_resume()) },
            Step::opts().after("submit").await_approval(true),
        )
        .build()
        .expect("approval builds")
}

/// Steps per second of `CHAINS` chains of `STEPS` steps started at once.
async fn throughput(engine: &Engine) -> f64 {
    let start = Instant::now();
    let ids = futures::future::join_all((0..CHAINS).map(|_| engine.start("chain", json!({})))).await;
    let ends = futures::future::join_all(ids.into_iter().map(|id| engine.wait(id.expect("start")))).await;
    assert!(ends.into_iter().all(|s| s.expect("wait").status == Status::Completed));
    (CHAINS * STEPS) as f64 / start.elapsed().as_secs_f64()
}

async fn get(addr: SocketAddr, path: &str) -> usize {
    let Ok(mut s) = tokio::net::TcpStream::connect(addr).await else { return 0 };
    let req = format!("GET {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).await.is_err() {
        return 0;
    }
    let mut body = Vec::new();
    let _ = s.read_to_end(&mut body).await;
    assert!(
        body.starts_with(b"HTTP/1.1 200"),
        "the overview answers: {}",
        String::from_utf8_lossy(&body[..body.len().min(200)])
    );
    body.len()
}

async fn load(table: &mut Table, name: &str) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let url = format!("sqlite://{}", dir.path().join("dashboard.db").display());
    let engine =
        Engine::builder().store_url(url).register(chain(STEPS)).register(approval()).build().await.expect("engine");
    let started = futures::future::join_all((0..LIVE).map(|_| engine.start("approval", json!({ "amount": 1 })))).await;
    for id in started {
        id.expect("start");
    }
    while engine.list_running("approval").await.expect("list").iter().any(|s| s.status != Status::Awaiting) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Warm up, then the engine alone.
    throughput(&engine).await;
    let mut alone = Vec::new();
    for _ in 0..5 {
        alone.push(throughput(&engine).await);
    }

    let app = axum::Router::new().nest("/workflows", Dashboard::new(engine.clone()).router());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("binds");
    let addr = listener.local_addr().expect("address");
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let stop = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicUsize::new(0));
    let latencies = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        let (stop, served, latencies) = (Arc::clone(&stop), Arc::clone(&served), Arc::clone(&latencies));
        clients.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                if get(addr, "/workflows/api/overview").await > 0 {
                    served.fetch_add(1, Ordering::Relaxed);
                    latencies.lock().push(t.elapsed());
                }
                tokio::time::sleep(POLL).await;
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let polled_from = Instant::now();
    let served_before = served.load(Ordering::Relaxed);
    let mut busy = Vec::new();
    for _ in 0..5 {
        busy.push(throughput(&engine).await);
    }
    let requests = served.load(Ordering::Relaxed) - served_before;
    let rate = requests as f64 / polled_from.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        let _ = c.await;
    }
    server.abort();
    engine.shutdown().await;

    let med = |mut xs: Vec<f64>| {
        xs.sort_by(f64::total_cmp);
        xs[xs.len() / 2]
    };
    let (alone, busy) = (med(alone), med(busy));
    let latency = median(latencies.lock().clone());
    table.add(name, "steps/s, no clients", format!("{alone:.0}"), "–");
    table.add(name, "steps/s, 20 polling", format!("{busy:.0}"), "–");
    table.add(name, "ratio", format!("{:.2}", busy / alone), "≥ 0.8");
    table.add(name, "overviews served/s", format!("{rate:.0}"), "–");
    table.add(name, "overview latency p50", ms(latency), "–");
}
