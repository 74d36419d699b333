//! Every store passes the conformance suite.

use std::sync::atomic::{AtomicUsize, Ordering};

use super::{MemoryStore, SqliteStore, conformance};

#[tokio::test]
async fn memory_store_conforms() {
    conformance::run_all(|| async { MemoryStore::new() }).await;
}

#[tokio::test]
async fn sqlite_file_store_conforms() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let n = AtomicUsize::new(0);
    conformance::run_all(|| async {
        let path = dir.path().join(format!("store-{}.db", n.fetch_add(1, Ordering::Relaxed)));
        SqliteStore::open(&path).await.expect("a new file opens")
    })
    .await;
}

#[tokio::test]
async fn sqlite_memory_store_conforms() {
    conformance::run_all(|| async { SqliteStore::in_memory().await.expect("an in-memory database opens") }).await;
}
