//! What only the SQLite store does: persistence across opens, foreign and newer
//! files, URLs, and the tables staying small.

use chrono::{TimeZone, Utc};
use rusqlite::Connection;

use super::{APPLICATION_ID, SCHEMA_VERSION, SqliteOptions, SqliteStore, Synchronous};
use crate::model::status::Status;
use crate::store::conformance::{final_state, new_execution};
use crate::store::{Durability, JournalEntry, Store, StoreError, Write};

fn entry(execution: crate::model::ExecutionId, seq: u64) -> JournalEntry {
    JournalEntry { execution, seq, event: format!("{{\"event\":\"paused\",\"seq\":{seq}}}") }
}

#[tokio::test]
async fn everything_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("persist.db");
    let at = Utc.timestamp_opt(1_700_000_000, 0).unwrap();
    let live = new_execution("alpha", at);
    let done = new_execution("alpha", at);
    {
        let store = SqliteStore::open(&path).await.unwrap();
        assert_eq!(store.durability(), Durability::Durable);
        store
            .write(&[
                Write::Create(Box::new(live.clone())),
                Write::Create(Box::new(done.clone())),
                Write::Event(entry(live.id, 1)),
                Write::Event(entry(done.id, 1)),
            ])
            .await
            .unwrap();
        store.write(&[Write::Event(entry(live.id, 2))]).await.unwrap();
        store.write(&[Write::Finish(std::sync::Arc::new(final_state(&done, Status::Completed, at)))]).await.unwrap();
        assert!(store.claim_tick("daily#0", at).await.unwrap());
    }
    // The database thread closes the file once the store is dropped; reopening
    // does not depend on that, WAL allows a second connection.
    let store = SqliteStore::open(&path).await.unwrap();
    let unfinished = store.unfinished().await.unwrap();
    assert_eq!(unfinished.len(), 1, "the live execution is still live after reopening");
    assert_eq!(unfinished[0].execution, live);
    assert_eq!(unfinished[0].events, vec![entry(live.id, 1), entry(live.id, 2)]);
    assert_eq!(store.finished(done.id).await.unwrap().map(|s| s.status), Some(Status::Completed));
    assert!(!store.claim_tick("daily#0", at).await.unwrap(), "claimed ticks are remembered");
    store.write(&[Write::Event(entry(live.id, 3))]).await.expect("the reopened store knows the live execution");
    let orphan = store.write(&[Write::Event(entry(done.id, 2))]).await;
    assert!(matches!(orphan, Err(StoreError::UnknownExecution(_))), "and knows the ended one has ended");
}

#[tokio::test]
async fn finished_executions_leave_the_hot_tables() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hot.db");
    let store = SqliteStore::open_with(&path, SqliteOptions::default().synchronous(Synchronous::Normal)).await.unwrap();
    let at = Utc.timestamp_opt(1_700_000_000, 0).unwrap();
    let conn = Connection::open(&path).unwrap();
    let count = |table: &str| {
        conn.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get::<_, i64>(0).map(|n| n as u64))
    };

    // Executions of 30 events each start in one round and end in the next.
    let mut previous: Vec<crate::store::NewExecution> = Vec::new();
    for round in 0..60 {
        let current: Vec<_> = (0..10).map(|_| new_execution("alpha", at)).collect();
        let mut batch: Vec<Write> = current.iter().map(|n| Write::Create(Box::new(n.clone()))).collect();
        for seq in 1..=30 {
            batch.extend(current.iter().map(|n| Write::Event(entry(n.id, seq))));
        }
        batch
            .extend(previous.iter().map(|n| Write::Finish(std::sync::Arc::new(final_state(n, Status::Completed, at)))));
        store.write(&batch).await.unwrap();
        let live_rows = 300;
        let rows = count("journal").unwrap();
        assert!(
            rows <= live_rows + super::GARBAGE_THRESHOLD + 300,
            "round {round}: the journal holds {rows} rows for {live_rows} live ones"
        );
        assert_eq!(count("executions").unwrap(), 10, "ended executions leave `executions`");
        previous = current;
    }
    assert_eq!(count("history").unwrap(), 590, "every ended execution's final state is in `history`");
    let live = store.unfinished().await.unwrap();
    assert_eq!(live.len(), 10);
    assert!(live.iter().all(|e| e.events.len() == 30), "garbage collection keeps the live journals whole");

    // Once enough garbage accumulated, one batch clears it.
    let finishing: Vec<Write> =
        previous.iter().map(|n| Write::Finish(std::sync::Arc::new(final_state(n, Status::Completed, at)))).collect();
    store.write(&finishing).await.unwrap();
    let many: Vec<_> = (0..100).map(|_| new_execution("beta", at)).collect();
    let mut batch: Vec<Write> = many.iter().map(|n| Write::Create(Box::new(n.clone()))).collect();
    for seq in 1..=50 {
        batch.extend(many.iter().map(|n| Write::Event(entry(n.id, seq))));
    }
    store.write(&batch).await.unwrap();
    let done: Vec<Write> =
        many.iter().map(|n| Write::Finish(std::sync::Arc::new(final_state(n, Status::Completed, at)))).collect();
    store.write(&done).await.unwrap();
    assert_eq!(count("journal").unwrap(), 0, "the journals of ended executions are deleted");
    assert!(store.unfinished().await.unwrap().is_empty());
}

#[tokio::test]
async fn garbage_left_by_a_previous_process_is_collected() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("garbage.db");
    let at = Utc.timestamp_opt(1_700_000_000, 0).unwrap();
    let execs: Vec<_> = (0..100).map(|_| new_execution("alpha", at)).collect();
    {
        let store = SqliteStore::open(&path).await.unwrap();
        let mut batch: Vec<Write> = execs.iter().map(|n| Write::Create(Box::new(n.clone()))).collect();
        for seq in 1..=30 {
            batch.extend(execs.iter().map(|n| Write::Event(entry(n.id, seq))));
        }
        store.write(&batch).await.unwrap();
        // 3,000 rows of garbage: below the threshold, so they stay for now.
        let done: Vec<Write> =
            execs.iter().map(|n| Write::Finish(std::sync::Arc::new(final_state(n, Status::Completed, at)))).collect();
        store.write(&done).await.unwrap();
    }
    let conn = Connection::open(&path).unwrap();
    let rows = || conn.query_row("SELECT COUNT(*) FROM journal", [], |r| r.get::<_, i64>(0).map(|n| n as u64)).unwrap();
    assert_eq!(rows(), 3000);
    let store = SqliteStore::open(&path).await.unwrap();
    assert!(store.unfinished().await.unwrap().is_empty(), "garbage rows are not read back as journals");
    let more: Vec<_> = (0..40).map(|_| new_execution("beta", at)).collect();
    let mut batch: Vec<Write> = more.iter().map(|n| Write::Create(Box::new(n.clone()))).collect();
    for seq in 1..=30 {
        batch.extend(more.iter().map(|n| Write::Event(entry(n.id, seq))));
    }
    store.write(&batch).await.unwrap();
    let done: Vec<Write> =
        more.iter().map(|n| Write::Finish(std::sync::Arc::new(final_state(n, Status::Completed, at)))).collect();
    store.write(&done).await.unwrap();
    assert_eq!(rows(), 0, "the reopened store counted the old garbage and collected it with the new");
}

#[tokio::test]
async fn new_files_are_marked_as_ours_and_use_wal() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("new.db");
    let store = SqliteStore::open(&path).await.unwrap();
    drop(store);
    let conn = Connection::open(&path).unwrap();
    let app: i64 = conn.pragma_query_value(None, "application_id", |r| r.get(0)).unwrap();
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0)).unwrap();
    let mode: String = conn.pragma_query_value(None, "journal_mode", |r| r.get(0)).unwrap();
    assert_eq!(app, APPLICATION_ID);
    assert_eq!(version, SCHEMA_VERSION);
    assert_eq!(mode, "wal");
}

#[tokio::test]
async fn a_file_that_is_not_a_database_is_reported_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.txt");
    let text = "these are my notes, not a database\n".repeat(100);
    std::fs::write(&path, &text).unwrap();
    let err = SqliteStore::open(&path).await.unwrap_err();
    assert!(matches!(&err, StoreError::Foreign { path: p, .. } if p.ends_with("notes.txt")), "got {err:?}");
    assert!(err.to_string().contains("not an SQLite database"), "the message says why: {err}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), text, "the file is unchanged");
}

#[tokio::test]
async fn another_applications_database_is_reported_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("other.db");
    {
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT); INSERT INTO customers (name) VALUES ('Zoë');",
        )
        .unwrap();
    }
    let before = std::fs::read(&path).unwrap();
    let err = SqliteStore::open(&path).await.unwrap_err();
    assert!(matches!(err, StoreError::Foreign { .. }), "got {err:?}");
    assert!(err.to_string().contains("`customers`"), "the message names what the file holds: {err}");
    assert_eq!(std::fs::read(&path).unwrap(), before, "the file is unchanged");

    let tagged = dir.path().join("tagged.db");
    {
        let conn = Connection::open(&tagged).unwrap();
        conn.execute_batch("PRAGMA application_id = 1234; CREATE TABLE t (x);").unwrap();
    }
    let before = std::fs::read(&tagged).unwrap();
    let err = SqliteStore::open(&tagged).await.unwrap_err();
    assert!(err.to_string().contains("application_id 0x000004d2"), "the message shows the id found: {err}");
    assert_eq!(std::fs::read(&tagged).unwrap(), before, "the file is unchanged");
}

#[tokio::test]
async fn a_newer_schema_is_reported_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("future.db");
    drop(SqliteStore::open(&path).await.unwrap());
    {
        let conn = Connection::open(&path).unwrap();
        // The dropped store's threads may still be closing their connections.
        conn.busy_timeout(std::time::Duration::from_secs(10)).unwrap();
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1).unwrap();
        // Leaving WAL mode takes the last connection: until the dropped store's
        // checkpoint thread has closed its own, SQLite keeps the WAL.
        let waited = std::time::Instant::now();
        loop {
            // "database is locked" while it still holds it, or the old mode.
            let mode = conn.pragma_update_and_check(None, "journal_mode", "DELETE", |r| r.get::<_, String>(0));
            if mode.as_deref().is_ok_and(|m| m.eq_ignore_ascii_case("delete")) {
                break;
            }
            assert!(waited.elapsed() < std::time::Duration::from_secs(10), "the file leaves WAL mode: {mode:?}");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
    let before = std::fs::read(&path).unwrap();
    let err = SqliteStore::open(&path).await.unwrap_err();
    match &err {
        StoreError::TooNew { found, supported, .. } => {
            assert_eq!((*found, *supported), (SCHEMA_VERSION + 1, SCHEMA_VERSION));
        }
        other => panic!("expected TooNew, got {other:?}"),
    }
    assert!(err.to_string().contains("newer"), "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), before, "the file is unchanged");
}

#[tokio::test]
async fn an_empty_file_becomes_a_database() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("empty.db");
    std::fs::write(&path, b"").unwrap();
    let store = SqliteStore::open(&path).await.expect("an empty file is a new database");
    assert!(store.unfinished().await.unwrap().is_empty());
}

#[tokio::test]
async fn urls_choose_the_file_and_the_synchronous_mode() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("url.db");
    let store = SqliteStore::open_url(&format!("sqlite://{}", path.display())).await.unwrap();
    assert_eq!(store.path(), Some(path.as_path()));
    assert_eq!(store.synchronous_mode(), Synchronous::Full, "FULL is the default");
    drop(store);
    let store = SqliteStore::open_url(&format!("sqlite:{}?synchronous=normal", path.display())).await.unwrap();
    assert_eq!(store.synchronous_mode(), Synchronous::Normal);
    let mode: i64 =
        store.call(|db| Ok(db.conn.pragma_query_value(None, "synchronous", |r| r.get(0)).unwrap())).await.unwrap();
    assert_eq!(mode, 1, "PRAGMA synchronous is NORMAL (1)");
    drop(store);
    let store = SqliteStore::open_with(&path, SqliteOptions::default()).await.unwrap();
    let mode: i64 =
        store.call(|db| Ok(db.conn.pragma_query_value(None, "synchronous", |r| r.get(0)).unwrap())).await.unwrap();
    assert_eq!(mode, 2, "PRAGMA synchronous is FULL (2)");

    let memory = SqliteStore::open_url("sqlite::memory:").await.unwrap();
    assert_eq!(memory.path(), None);
    assert_eq!(memory.durability(), Durability::Volatile);

    let err = SqliteStore::open_url("sqlite://x.db?synchronous=off").await.unwrap_err();
    assert!(matches!(err, StoreError::InvalidUrl { .. }) && err.to_string().contains("`off`"), "{err}");
    let err = SqliteStore::open_url("sqlite://x.db?cache=shared").await.unwrap_err();
    assert!(err.to_string().contains("unknown parameter `cache`"), "{err}");
    let err = SqliteStore::open_url("sqlite://").await.unwrap_err();
    assert!(matches!(err, StoreError::InvalidUrl { .. }), "{err}");
    let err = SqliteStore::open_url("sqlite://x.db?mode=rwx").await.unwrap_err();
    assert!(err.to_string().contains("unknown `mode` value `rwx`"), "{err}");
    let err = SqliteStore::open_url("sqlite::memory:?mode=ro").await.unwrap_err();
    assert!(matches!(err, StoreError::InvalidUrl { .. }), "{err}");
}

#[tokio::test]
async fn one_store_at_a_time_writes_a_file_and_the_second_learns_who_holds_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("held.db");
    let first = SqliteStore::open(&path).await.unwrap();
    let err = SqliteStore::open(&path).await.unwrap_err();
    let StoreError::Locked { path: named, holder } = &err else { panic!("expected Locked, got {err:?}") };
    assert_eq!(named, &path.display().to_string());
    assert!(holder.contains(&format!("process {}", std::process::id())), "the holder names its process: {holder}");
    assert!(err.to_string().contains("in use by another engine"), "{err}");
    // A URL opens the same file, and is refused the same way.
    let err = SqliteStore::open_url(&format!("sqlite://{}", path.display())).await.unwrap_err();
    assert!(matches!(err, StoreError::Locked { .. }), "{err:?}");
    // Releasing (as an engine's shutdown does) or dropping lets the next one in.
    first.release().await;
    let second = SqliteStore::open(&path).await.expect("released: the file opens");
    drop(second);
    drop(first);
    SqliteStore::open(&path).await.expect("dropped: the file opens");
}

#[tokio::test]
async fn a_read_only_store_reads_a_held_file_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shared.db");
    let err = SqliteStore::open_read_only(&path).await.unwrap_err();
    assert!(err.to_string().contains(&path.display().to_string()), "a missing file is named: {err}");
    assert!(!path.exists(), "opening read-only creates nothing");

    let writer = SqliteStore::open(&path).await.unwrap();
    let reader = SqliteStore::open_read_only(&path).await.expect("read-only beside the writer");
    assert!(reader.is_read_only() && reader.read_only());
    assert!(reader.unfinished().await.unwrap().is_empty());
    let new = new_execution("wf", Utc::now());
    let id = new.id;
    writer.write(&[Write::Create(Box::new(new))]).await.unwrap();
    let live = reader.unfinished().await.unwrap();
    assert_eq!(live.iter().map(|e| e.execution.id).collect::<Vec<_>>(), [id], "the reader sees what was committed");

    let err = reader.write(&[Write::Create(Box::new(new_execution("wf", Utc::now())))]).await.unwrap_err();
    assert!(matches!(err, StoreError::ReadOnly { .. }), "{err:?}");
    assert!(err.to_string().contains("open read-only"), "{err}");
    assert!(matches!(reader.claim_tick("wf#0", Utc::now()).await, Err(StoreError::ReadOnly { .. })));
    assert!(matches!(reader.purge_dead_letters(Utc::now()).await, Err(StoreError::ReadOnly { .. })));
    assert_eq!(writer.unfinished().await.unwrap().len(), 1, "the refused write changed nothing");

    let by_url = SqliteStore::open_url(&format!("sqlite://{}?mode=ro", path.display())).await.unwrap();
    assert!(by_url.is_read_only());
}

#[tokio::test]
async fn a_directory_is_not_a_database() {
    let dir = tempfile::tempdir().unwrap();
    let err = SqliteStore::open(dir.path()).await.unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_) | StoreError::Foreign { .. }), "got {err:?}");
    assert!(err.to_string().contains(&dir.path().display().to_string()), "the message names the path: {err}");
}

#[tokio::test]
async fn a_control_store_queues_requests_for_the_engine_that_holds_the_file() {
    use crate::store::{ControlCall, Inbox, Request};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("inbox.db");
    assert_eq!(SqliteStore::holder(&path).unwrap(), None, "no lock file yet");
    let engine_side = SqliteStore::open(&path).await.unwrap();
    let holder = SqliteStore::holder(&path).unwrap().expect("the writer holds the file");
    assert!(holder.contains(&std::process::id().to_string()), "{holder}");
    let at = Utc.timestamp_opt(1_700_000_000, 0).unwrap();
    let live = new_execution("alpha", at);
    engine_side.write(&[Write::Create(Box::new(live.clone()))]).await.unwrap();

    let control = SqliteStore::open_control(&path).await.expect("opens beside the writer");
    assert!(Store::read_only(&control), "no engine runs on a control store");
    assert!(matches!(control.write(&[]).await, Ok(())));
    assert!(matches!(
        control.write(&[Write::Create(Box::new(new_execution("alpha", at)))]).await,
        Err(StoreError::ReadOnly { .. })
    ));
    let pause = Request::Control { execution: live.id, command: ControlCall::Pause };
    let seq = control.send(&pause).await.expect("queued");
    let unknown = new_execution("alpha", at).id;
    let refused = control.send(&Request::Control { execution: unknown, command: ControlCall::Pause }).await;
    assert!(matches!(refused, Err(StoreError::UnknownExecution(id)) if id == unknown), "{refused:?}");
    let replay = control.send(&Request::ReplayDeadLetter { id: unknown }).await.expect("not checked");
    assert!(replay > seq);

    let reader = SqliteStore::open_read_only(&path).await.unwrap();
    assert!(matches!(reader.send(&pause).await, Err(StoreError::ReadOnly { .. })), "a read-only store queues nothing");
    let queued = engine_side.queued(10).await.unwrap();
    assert_eq!(
        queued.iter().map(|q| (q.seq, q.request.clone())).collect::<Vec<_>>(),
        vec![(seq, pause.clone()), (replay, Request::ReplayDeadLetter { id: unknown })]
    );
    assert!(control.is_queued(seq).await.unwrap());
    engine_side.remove(&[seq]).await.unwrap();
    assert!(!control.is_queued(seq).await.unwrap(), "the control store sees the deletion");
    assert_eq!(engine_side.queued(10).await.unwrap().len(), 1);

    // A finished execution takes no more requests.
    engine_side.write(&[Write::Finish(std::sync::Arc::new(final_state(&live, Status::Completed, at)))]).await.unwrap();
    assert!(matches!(control.send(&pause).await, Err(StoreError::UnknownExecution(_))));
    drop(engine_side);
    for _ in 0..100 {
        if SqliteStore::holder(&path).unwrap().is_none() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("the lock is released once the writer is gone");
}

#[tokio::test]
async fn a_first_version_file_gains_the_request_queue() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v1.db");
    {
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(super::MIGRATIONS[0]).unwrap();
        conn.execute_batch(&format!("PRAGMA application_id = {APPLICATION_ID}; PRAGMA user_version = 1;")).unwrap();
    }
    let err = SqliteStore::open_control(&path).await.unwrap_err();
    assert!(err.to_string().contains("schema version 1"), "a tool does not migrate: {err}");
    drop(SqliteStore::open(&path).await.unwrap());
    let conn = Connection::open(&path).unwrap();
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0)).unwrap();
    assert_eq!(version, SCHEMA_VERSION);
    let n: i64 = conn.query_row("SELECT COUNT(*) FROM commands", [], |r| r.get(0)).unwrap();
    assert_eq!(n, 0);
    SqliteStore::open_control(&path).await.expect("opens once migrated");
}

#[tokio::test]
async fn a_second_version_file_learns_when_its_executions_ended() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v2.db");
    {
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(super::MIGRATIONS[0]).unwrap();
        conn.execute_batch(super::MIGRATIONS[1]).unwrap();
        conn.execute_batch(&format!("PRAGMA application_id = {APPLICATION_ID}; PRAGMA user_version = 2;")).unwrap();
        for (id, ended) in [(1u8, "2020-01-01T00:00:00Z"), (2, "2030-01-01T00:00:00Z")] {
            conn.execute(
                "INSERT INTO history (id, workflow, started_at, state) VALUES (?1, 'w', '2019-12-31T00:00:00Z', ?2)",
                rusqlite::params![vec![id; 16], format!(r#"{{"ended_at":"{ended}"}}"#)],
            )
            .unwrap();
        }
    }
    let store = SqliteStore::open(&path).await.unwrap();
    let cut = chrono::DateTime::parse_from_rfc3339("2025-01-01T00:00:00Z").unwrap().with_timezone(&chrono::Utc);
    assert_eq!(store.prune_finished("w", cut, 10).await.unwrap(), 1, "the one that ended in 2020 goes");
    drop(store);
    let conn = Connection::open(&path).unwrap();
    let left: Vec<u8> = conn.query_row("SELECT id FROM history", [], |r| r.get(0)).unwrap();
    assert_eq!(left, vec![2u8; 16], "the one that ends in 2030 stays");
}
