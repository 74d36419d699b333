//! The benchmark harness: runs every workload and prints one table of figures
//! (medians of several runs). `cargo bench` runs it; `cargo bench -- <filter>` runs
//! the workloads whose name contains `<filter>`.
//!
//! Figures are for reading, never for pass/fail: no test depends on them.
//!
//! The harness runs on mimalloc, as a service that runs many small steps would
//! (`cargo bench --bench system` runs the engine's hot-path workloads on the
//! system allocator, the default of peers' benchmarks):
//! with the system allocator (glibc malloc), allocation takes about a fifth of the
//! time of the workloads made of tiny steps (the concurrent chains take about 290 ms
//! instead of about 215 ms on the 2-core machine the targets are for).

mod cluster;
mod dashboard;
mod durable;
mod engine;
mod harness;
mod hot;
mod schedule;

pub(crate) use harness::*;

/// The allocator, counting the bytes the program holds, so memory figures do not
/// depend on what earlier workloads left in the allocator's free lists.
#[global_allocator]
static HEAP: cap::Cap<mimalloc::MiMalloc> = cap::Cap::new(mimalloc::MiMalloc, usize::MAX);

/// Heap bytes the program holds now.
pub(crate) fn allocated() -> usize {
    HEAP.allocated()
}

fn main() {
    if durable::victim_main() {
        return;
    }
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let mut table = Table::new(filter);

    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    println!("sagaflow benchmarks (medians; 2 tokio worker threads)");
    // Workloads run as a task on the runtime, as application code does, so that
    // starting executions does not cross from a foreign thread.
    let table = rt.block_on(async move {
        tokio::spawn(async move {
            hot::run(&mut table, "mimalloc").await;
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
