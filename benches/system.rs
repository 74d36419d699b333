//! The engine's hot-path workloads (see `hot.rs`) on the system allocator (glibc
//! malloc here), the default that other engines' benchmarks use: `cargo bench
//! --bench system`. The `main` benchmarks run the same workloads on mimalloc.

// Shared with the main benchmarks, which use all of it; these use a part.
#[allow(dead_code)]
mod harness;
mod hot;

pub(crate) use harness::*;

/// The system allocator, counting the bytes the program holds.
#[global_allocator]
static HEAP: cap::Cap<std::alloc::System> = cap::Cap::new(std::alloc::System, usize::MAX);

/// Heap bytes the program holds now.
#[allow(dead_code)] // read through `harness::heap_now`, which only the main benchmarks call
pub(crate) fn allocated() -> usize {
    HEAP.allocated()
}

fn main() {
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let mut table = Table::new(filter);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    println!("sagaflow hot-path benchmarks on the system allocator (medians; 2 tokio worker threads)");
    let table = rt.block_on(async move {
        tokio::spawn(async move {
            hot::run(&mut table, "system allocator").await;
            table
        })
        .await
        .expect("benchmarks ran")
    });
    table.print();
}
