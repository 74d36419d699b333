//! What the benchmark binaries share: the result table, statistics, memory
//! readings and the workflows several workloads use. Each binary includes it and
//! provides `allocated()`, the heap bytes its counting allocator holds.

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
    /// An empty table for the workloads whose name contains `filter`.
    pub(crate) fn new(filter: Option<String>) -> Self {
        Table { rows: Vec::new(), filter }
    }

    /// Whether a workload should run under the command-line filter.
    pub(crate) fn wants(&self, workload: &str) -> bool {
        self.filter.as_deref().is_none_or(|f| workload.contains(f))
    }

    /// Adds a figure.
    pub(crate) fn add(&mut self, workload: &str, metric: &str, value: String, target: &str) {
        println!("  {workload:<44} {metric:<22} {value:>14}   target {target}");
        self.rows.push(Row { workload: workload.into(), metric: metric.into(), value, target: target.into() });
    }

    pub(crate) fn print(&self) {
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

/// Heap bytes the program holds now (counted by the binary's allocator).
pub(crate) fn heap_now() -> usize {
    crate::allocated()
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
