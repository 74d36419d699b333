//! The engine's own cost, in memory, on the path every execution takes: a long
//! chain of no-op steps, short executions one after another (the fixed cost of
//! starting, finishing and waiting), and wide fan-outs. Both benchmark binaries run
//! these, `main` on mimalloc and `system` on the system allocator, so the figures
//! compare with other engines' defaults.

use std::time::Duration;

use sagaflow::prelude::*;
use sagaflow::{Task, WorkflowDef};
use tokio::time::Instant;

use crate::{Table, chain, current_memory, median, mib, ms, noop, peak_memory, reset_peak_memory, us};

fn fan(width: usize) -> WorkflowDef {
    Workflow::new("fan")
        .step("start", noop)
        .fan_out("start", (0..width).map(|i| Task::new(format!("b{i}"), noop)))
        .fan_in((0..width).map(|i| format!("b{i}")).collect::<Vec<_>>(), "join", noop)
        .build()
        .expect("fan builds")
}

async fn time_one(engine: &Engine, workflow: &str) -> Duration {
    let start = Instant::now();
    let id = engine.start(workflow, json!({})).await.expect("start");
    let state = engine.wait(id).await.expect("wait");
    assert_eq!(state.status, Status::Completed);
    start.elapsed()
}

/// `a → (b, c) → d` of no-op steps.
fn diamond() -> WorkflowDef {
    Workflow::new("diamond")
        .step("a", noop)
        .step_with("b", noop, Step::opts().after("a"))
        .step_with("c", noop, Step::opts().after("a"))
        .step_with("d", noop, Step::opts().after(["b", "c"]))
        .build()
        .expect("diamond builds")
}

pub(crate) async fn run(table: &mut Table, allocator: &str) {
    let name = format!("chain of 10,000 no-op steps ({allocator})");
    if table.wants(&name) {
        let n = 10_000;
        let engine = Engine::builder().register(chain(n)).build().await.expect("engine");
        time_one(&engine, "chain").await;
        let mut runs = Vec::new();
        for _ in 0..7 {
            runs.push(time_one(&engine, "chain").await);
        }
        table.add(&name, "engine cost / step", us(median(runs) / n as u32), "≤ 1.5 µs");
    }
    let name = format!("1,000 diamonds one after another ({allocator})");
    if table.wants(&name) {
        let engine = Engine::builder().register(diamond()).build().await.expect("engine");
        for _ in 0..1_000 {
            time_one(&engine, "diamond").await;
        }
        let mut apart = Vec::new();
        let mut together = Vec::new();
        for _ in 0..7 {
            let start = Instant::now();
            for _ in 0..1_000 {
                let id = engine.start("diamond", json!({})).await.expect("start");
                engine.wait(id).await.expect("wait");
            }
            apart.push(start.elapsed() / 1_000);
        }
        for _ in 0..7 {
            let start = Instant::now();
            for _ in 0..1_000 {
                engine.run("diamond", json!({})).await.expect("run");
            }
            together.push(start.elapsed() / 1_000);
        }
        table.add(&name, "start() + 4 steps + wait()", us(median(apart)), "-");
        table.add(&name, "run(): start + 4 steps + wait", us(median(together)), "≤ 2.5 µs (system)");
    }
    for (width, target_ms, target_mem) in [(10_000usize, "≤ 15 ms", "-"), (100_000, "≤ 40 ms", "≤ 50 MiB")] {
        let name = format!("fan-out 1 → {width} → 1 ({allocator})");
        if !table.wants(&name) {
            continue;
        }
        let def = fan(width);
        let engine = Engine::builder().register(def).build().await.expect("engine");
        time_one(&engine, "fan").await;
        let mut runs = Vec::new();
        let mut peaks = Vec::new();
        for _ in 0..5 {
            reset_peak_memory();
            let before = current_memory();
            runs.push(time_one(&engine, "fan").await);
            peaks.push(peak_memory().saturating_sub(before));
        }
        peaks.sort();
        table.add(&name, "total", ms(median(runs)), target_ms);
        if width == 100_000 {
            table.add(&name, "peak memory (added)", mib(peaks[peaks.len() / 2]), target_mem);
        }
    }
}
