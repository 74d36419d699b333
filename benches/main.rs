//! The benchmark harness: runs every workload and prints one table of figures
//! (medians of several runs). `cargo bench` runs it; `cargo bench -- <filter>` runs
//! the workloads whose name contains `<filter>`.
//!
//! Figures are for reading, never for pass/fail: no test depends on them.
//!
//! The harness runs on mimalloc, as a service that runs many small steps would:
//! with the system allocator (glibc malloc), allocation takes about a fifth of the
//! time of the workloads made of tiny steps (the concurrent chains take about 290 ms
//! instead of about 215 ms on the 2-core machine the targets are for).

mod cluster;
mod dashboard;
mod durable;
mod engine;
mod schedule;

use std::time::Duration;

use sagaflow::WorkflowDef;
use sagaflow::prelude::*;

/// A no-op step.
pub(crate) async fn noop(_ctx: Context) -> StepResult {
    Ok(Outcome::Done)
}

/// A workflow `chain` of `n` no-op steps, each after the one before.
pub(crate) fn chain(n: usize) -> WorkflowDef {
    let mut wf = Workflow::new("chain").step("s0", noop);
    for i in 1..n {
        wf = wf.step_with(format!("s{i}"), noop, Step::opts().after(format!("s{}", i - 1)));
    }
    wf.build().expect("chain builds")
}

/// One row of the result table.
pub(crate) struct Row {
    pub(crate) workload: String,
    pub(crate) metric: String,
    pub(crate) value: String,
    pub(crate) target: String,
}

/// The result table.
#[derive(Default)]
pub(crate) struct Table {
    rows: Vec<Row>,
    filter: Option<String>,
}

impl Table {
    /// Whether a workload should run under the command-line filter.
    pub(crate) fn wants(&self, workload: &str) -> bool {
        self.filter.as_deref().is_none_or(|f| workload.contains(f))
    }

    /// Adds a figure.
    pub(crate) fn add(&mut self, workload: &str, metric: &str, value: String, target: &str) {
        println!("  {workload:<44} {metric:<22} {value:>14}   target {target}");
        self.rows.push(Row { workload: workload.into(), metric: metric.into(), value, target: target.into() });
    }

    fn print(&self) {
        let w = self.rows.iter().map(|r| r.workload.len()).max().unwrap_or(8).max(8);
        let m = self.rows.iter().map(|r| r.metric.len()).max().unwrap_or(6).max(6);
        let v = self.rows.iter().map(|r| r.value.len()).max().unwrap_or(5).max(5);
        println!("\n{:<w$}  {:<m$}  {:>v$}  target", "workload", "metric", "value");
        println!("{}", "-".repeat(w + m + v + 16));
        for r in &self.rows {
            println!("{:<w$}  {:<m$}  {:>v$}  {}", r.workload, r.metric, r.value, r.target);
        }
    }
}

/// The median of some durations.
pub(crate) fn median(mut xs: Vec<Duration>) -> Duration {
    xs.sort();
    xs[xs.len() / 2]
}

/// The `p`-th percentile (0..=100) of some durations.
pub(crate) fn percentile(xs: &mut [Duration], p: f64) -> Duration {
    xs.sort();
    let i = ((xs.len() as f64 - 1.0) * p / 100.0).round() as usize;
    xs[i.min(xs.len() - 1)]
}

/// The allocator, counting the bytes the program holds, so memory figures do not
/// depend on what earlier workloads left in the allocator's free lists.
#[global_allocator]
static HEAP: cap::Cap<mimalloc::MiMalloc> = cap::Cap::new(mimalloc::MiMalloc, usize::MAX);

/// Heap bytes the program holds now.
pub(crate) fn heap_now() -> usize {
    HEAP.allocated()
}

/// Heap bytes the program holds once what earlier workloads left behind is freed
/// (their engines' tasks end in the background): the first of two readings 50 ms
/// apart that differ by less than 64 KiB, or the last reading after 2 s.
pub(crate) async fn settled_heap() -> usize {
    let mut last = heap_now();
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = heap_now();
        if now.abs_diff(last) < 64 * 1024 {
            return now;
        }
        last = now;
    }
    last
}

/// Peak resident memory of this process since the last [`reset_peak_memory`], in bytes.
pub(crate) fn peak_memory() -> usize {
    proc_status("VmHWM:")
}

/// Current resident memory, in bytes.
pub(crate) fn current_memory() -> usize {
    proc_status("VmRSS:")
}

fn proc_status(field: &str) -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<usize>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Resets the peak-memory mark to the current resident size (Linux).
pub(crate) fn reset_peak_memory() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// Formats bytes as MiB.
pub(crate) fn mib(bytes: usize) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// Formats a duration in milliseconds.
pub(crate) fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

/// Formats a duration in microseconds.
pub(crate) fn us(d: Duration) -> String {
    format!("{:.3} µs", d.as_secs_f64() * 1e6)
}

fn main() {
    if durable::victim_main() {
        return;
    }
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let mut table = Table { rows: Vec::new(), filter };

    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    println!("sagaflow benchmarks (medians; 2 tokio worker threads)");
    // Workloads run as a task on the runtime, as application code does, so that
    // starting executions does not cross from a foreign thread.
    let table = rt.block_on(async move {
        tokio::spawn(async move {
            engine::run(&mut table).await;
            durable::run(&mut table).await;
            schedule::run(&mut table).await;
            cluster::run(&mut table).await;
            dashboard::run(&mut table).await;
            table
        })
        .await
        .expect("benchmarks ran")
    });
    table.print();
}
