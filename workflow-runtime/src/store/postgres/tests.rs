//! The PostgreSQL store against the database named by `SAGAFLOW_TEST_DATABASE_URL`,
//! each store in a schema of its own, dropped afterwards.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use super::PostgresStore;
use crate::store::cluster::{CallOutcome, Cluster, ControlCall};
use crate::store::conformance::{self, new_execution};
use crate::store::{Store, StoreError, Write};

/// The variable that names the test database.
const URL_VAR: &str = "SAGAFLOW_TEST_DATABASE_URL";

/// The test database's URL; `None` (said loudly) when it is not configured,
/// a failure under `CI=true`.
fn database() -> Option<String> {
    match std::env::var(URL_VAR) {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            assert!(
                std::env::var("CI").map_or(true, |v| v != "true"),
                "{URL_VAR} is not set: under CI=true the PostgreSQL tests must run"
            );
            // Straight to the process's stderr: the harness captures `eprintln!`.
            use std::io::Write as _;
            let _ = writeln!(
                std::io::stderr(),
                "\n!!! SKIPPED: PostgreSQL store tests; set {URL_VAR}=postgres://user@host:5432/database to run them\n"
            );
            None
        }
    }
}

/// Schemas made by one test, dropped when it ends.
#[derive(Default)]
struct Schemas {
    url: String,
    made: Mutex<Vec<String>>,
}

impl Schemas {
    fn new(url: String) -> Arc<Self> {
        Arc::new(Schemas { url, made: Mutex::default() })
    }

    fn url(&self) -> String {
        let name = format!("sf_test_{}", uuid::Uuid::now_v7().simple());
        self.made.lock().push(name.clone());
        let sep = if self.url.contains('?') { '&' } else { '?' };
        format!("{}{sep}schema={name}", self.url)
    }

    async fn open(&self) -> PostgresStore {
        PostgresStore::connect(&self.url()).await.expect("the test database is reachable")
    }
}

impl Drop for Schemas {
    /// Drops the test's schemas, also when the test failed: on a thread of its
    /// own, since the test's runtime may be gone.
    fn drop(&mut self) {
        let names: Vec<String> = self.made.lock().drain(..).collect();
        if names.is_empty() {
            return;
        }
        let url = self.url.clone();
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
            rt.block_on(async {
                let target = super::Target::parse(&url).expect("the test URL parses");
                let client = target.connect().await.expect("the test database is reachable");
                for name in names {
                    client
                        .batch_execute(&format!("DROP SCHEMA IF EXISTS {name} CASCADE"))
                        .await
                        .expect("the schema drops");
                }
            });
        })
        .join();
        if dropped.is_err() && !std::thread::panicking() {
            panic!("the test schemas could not be dropped");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_store_passes_conformance() {
    let Some(url) = database() else { return };
    let schemas = Schemas::new(url);
    let s = Arc::clone(&schemas);
    conformance::run_all(move || {
        let s = Arc::clone(&s);
        async move { Holding(s.open().await) }
    })
    .await;
}

/// The conformance suite's view of a shared store: one engine that holds what it
/// creates. On PostgreSQL new executions are written unheld and only their holder
/// may write to them; this wrapper makes the writing node hold them, as a claim
/// would.
#[derive(Debug)]
struct Holding(PostgresStore);

#[async_trait::async_trait]
impl Store for Holding {
    fn durability(&self) -> crate::store::Durability {
        self.0.durability()
    }

    async fn write(&self, batch: &[Write]) -> Result<(), StoreError> {
        self.0.write(batch).await?;
        let client = self.0.writer.get().await?;
        client
            .execute("UPDATE executions SET holder = $1 WHERE holder IS NULL", &[&self.0.node()])
            .await
            .map_err(|e| self.0.target.error(&e))?;
        Ok(())
    }

    async fn unfinished(&self) -> Result<Vec<crate::store::StoredExecution>, StoreError> {
        self.0.unfinished().await
    }

    async fn finished(&self, id: crate::model::ExecutionId) -> Result<Option<crate::ExecutionState>, StoreError> {
        self.0.finished(id).await
    }

    async fn list_finished(&self, q: &crate::store::ExecutionQuery) -> Result<Vec<crate::ExecutionState>, StoreError> {
        self.0.list_finished(q).await
    }

    async fn dead_letters(&self, workflow: Option<&str>) -> Result<Vec<crate::store::DeadLetter>, StoreError> {
        self.0.dead_letters(workflow).await
    }

    async fn purge_dead_letters(&self, now: chrono::DateTime<chrono::Utc>) -> Result<usize, StoreError> {
        self.0.purge_dead_letters(now).await
    }

    async fn prune_finished(
        &self,
        workflow: &str,
        ended_before: chrono::DateTime<chrono::Utc>,
        limit: usize,
    ) -> Result<usize, StoreError> {
        self.0.prune_finished(workflow, ended_before, limit).await
    }

    async fn ended_with_key(
        &self,
        workflow: &str,
        key: &str,
        since: chrono::DateTime<chrono::Utc>,
    ) -> Result<Option<crate::model::ExecutionId>, StoreError> {
        self.0.ended_with_key(workflow, key, since).await
    }

    async fn definitions(&self) -> Result<Vec<crate::DefinitionSnapshot>, StoreError> {
        self.0.definitions().await
    }

    async fn definition_version(&self, n: &str, v: &str) -> Result<Option<crate::DefinitionSnapshot>, StoreError> {
        self.0.definition_version(n, v).await
    }

    async fn claim_tick(&self, key: &str, fire_time: chrono::DateTime<chrono::Utc>) -> Result<bool, StoreError> {
        self.0.claim_tick(key, fire_time).await
    }

    async fn last_ticks(&self) -> Result<Vec<(String, chrono::DateTime<chrono::Utc>)>, StoreError> {
        self.0.last_ticks().await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_starting_together_migrate_once() {
    let Some(url) = database() else { return };
    let schemas = Schemas::new(url);
    let shared = schemas.url();
    let opened = futures::future::join_all((0..4).map(|_| PostgresStore::connect(&shared))).await;
    for store in &opened {
        assert!(store.is_ok(), "every node opens the store: {store:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_are_exclusive_and_expired_leases_are_taken_over() {
    let Some(url) = database() else { return };
    let schemas = Schemas::new(url);
    let shared = schemas.url();
    let a = PostgresStore::connect(&shared).await.expect("opens");
    let b = PostgresStore::connect(&shared).await.expect("opens");
    let workflows = vec!["w".to_owned()];
    let news: Vec<_> = (0..10).map(|_| new_execution("w", chrono::Utc::now())).collect();
    let batch: Vec<Write> = news.iter().map(|n| Write::Create(Box::new(n.clone()))).collect();
    a.write(&batch).await.expect("creates");

    // Without a lease, a node claims nothing.
    assert!(a.claim(&workflows, 10).await.expect("claims").is_empty(), "a node without a lease claims nothing");
    assert!(
        matches!(a.heartbeat(Duration::from_secs(30)).await, Err(StoreError::Lapsed(_))),
        "a node that never joined has no lease to renew"
    );
    a.rejoin(Duration::from_millis(400)).await.expect("joins");
    b.rejoin(Duration::from_secs(30)).await.expect("joins");
    b.heartbeat(Duration::from_secs(30)).await.expect("renews");
    let (first, second) = tokio::join!(a.claim(&workflows, 6), b.claim(&workflows, 6));
    let (first, second) = (first.expect("claims"), second.expect("claims"));
    assert_eq!(first.len() + second.len(), 10, "every execution is claimed once: {} + {}", first.len(), second.len());
    assert!(first.iter().chain(&second).all(|c| c.fresh), "a first claim is fresh");
    let mut ids: Vec<_> = first.iter().chain(&second).map(|e| e.stored.execution.id).collect();
    ids.sort_by_key(|i| i.as_uuid());
    ids.dedup();
    assert_eq!(ids.len(), 10, "no execution is claimed by both nodes");
    assert!(a.claim(&workflows, 10).await.expect("claims").is_empty(), "nothing is left to claim");

    // `b` may not write to what `a` holds.
    if let Some(held) = first.first() {
        let entry = crate::store::JournalEntry { execution: held.stored.execution.id, seq: 1, event: "{}".into() };
        let refused = b.write(&[Write::Event(entry)]).await;
        assert!(
            matches!(&refused, Err(StoreError::NotHeld(ids)) if ids == &vec![held.stored.execution.id]),
            "a write to another node's execution is refused with NotHeld: {refused:?}"
        );
    }

    // Nobody may write to an execution nobody holds.
    let unheld = new_execution("elsewhere", chrono::Utc::now());
    a.write(&[Write::Create(Box::new(unheld.clone()))]).await.expect("creates");
    let entry = crate::store::JournalEntry { execution: unheld.id, seq: 1, event: "{}".into() };
    let refused = a.write(&[Write::Event(entry)]).await;
    assert!(matches!(&refused, Err(StoreError::NotHeld(_))), "an unheld execution is not written: {refused:?}");

    // Commands reach the holder, which records their outcome.
    if let Some(held) = second.first() {
        let seq = a.send(held.stored.execution.id, &ControlCall::Pause).await.expect("sends");
        assert!(a.pending_commands().await.expect("reads").is_empty(), "commands go to the holder only");
        let queued = b.pending_commands().await.expect("reads");
        assert_eq!(queued.len(), 1, "the holder sees the command");
        assert_eq!((queued[0].seq, &queued[0].command), (seq, &ControlCall::Pause));
        assert_eq!(a.command_outcome(seq).await.expect("reads"), CallOutcome::Queued);
        b.write(&[Write::CommandDone { command: seq, error: Some("it is already paused".into()) }])
            .await
            .expect("done");
        assert!(b.pending_commands().await.expect("reads").is_empty(), "a command with an outcome is not queued");
        assert_eq!(
            a.command_outcome(seq).await.expect("reads"),
            CallOutcome::Rejected("it is already paused".into()),
            "the sender reads why"
        );
        a.forget_command(seq).await.expect("forgets");
        assert_eq!(a.command_outcome(seq).await.expect("reads"), CallOutcome::Gone);
    }
    assert!(a.is_unfinished(first[0].stored.execution.id).await.expect("reads"), "a claimed execution is unfinished");
    let unknown = crate::model::ExecutionId::new();
    assert!(!a.is_unfinished(unknown).await.expect("reads"), "an unknown execution is not");
    assert!(
        matches!(a.send(unknown, &ControlCall::Pause).await, Err(StoreError::UnknownExecution(id)) if id == unknown),
        "a command for an unknown execution is refused"
    );

    // `a` stops renewing its lease: it learns it lapsed, `b` reaps and takes its
    // executions over.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(matches!(a.heartbeat(Duration::from_secs(30)).await, Err(StoreError::Lapsed(_))), "a learns it lapsed");
    assert_eq!(a.reap().await.expect("reaps"), 0, "a lapsed node reaps nobody");
    let released = b.reap().await.expect("reaps");
    assert_eq!(released, first.len(), "the expired node's executions are released");
    let taken = b.claim(&workflows, 100).await.expect("claims");
    assert_eq!(taken.len(), first.len(), "the other node takes them over");
    assert!(taken.iter().all(|c| !c.fresh), "a claim after another node's is not fresh");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifications_wake_other_nodes() {
    let Some(url) = database() else { return };
    let schemas = Schemas::new(url);
    let shared = schemas.url();
    let a = PostgresStore::connect(&shared).await.expect("opens");
    let b = PostgresStore::connect(&shared).await.expect("opens");
    // Wait until the listener is up (its first connection wakes once).
    tokio::time::timeout(Duration::from_secs(5), b.notified()).await.expect("the listener connects");
    let n = new_execution("w", chrono::Utc::now());
    a.write(&[Write::Create(Box::new(n))]).await.expect("creates");
    tokio::time::timeout(Duration::from_secs(5), b.notified()).await.expect("a new execution wakes the other node");
}

#[tokio::test]
async fn bad_urls_are_named() {
    let e = PostgresStore::connect("postgres://u@localhost/db?schema=Bad-Name").await.expect_err("rejected");
    assert!(
        matches!(&e, StoreError::InvalidUrl { reason, .. } if reason.contains("Bad-Name")),
        "an invalid schema name is named: {e}"
    );
    let e = PostgresStore::connect("postgres://u:secret@localhost/db?bogus_option=1").await.expect_err("rejected");
    assert!(matches!(&e, StoreError::InvalidUrl { .. }), "an unknown URL parameter is rejected: {e}");
    assert!(!e.to_string().contains("secret"), "the password is not shown: {e}");
}
