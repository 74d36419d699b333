//! The schema: its migrations, its version and the header that marks a sagaflow
//! database, and migrating a file to the current version.

use rusqlite::Connection;

use crate::store::StoreError;

/// `PRAGMA application_id` of sagaflow databases: `SAGA` in ASCII.
pub(super) const APPLICATION_ID: i64 = 0x5341_4741;

/// The schema, one migration per version: migration `i` takes the database from
/// `user_version = i` to `i + 1`. Append only; never edit a released migration.
pub(super) const MIGRATIONS: &[&str] = &[
    // 1: the first schema.
    "CREATE TABLE executions (
        key        INTEGER PRIMARY KEY AUTOINCREMENT,
        id         BLOB NOT NULL UNIQUE,
        created_at TEXT NOT NULL,
        started    INTEGER NOT NULL,
        record     TEXT NOT NULL
    );
    CREATE TABLE journal (
        id         INTEGER PRIMARY KEY,
        execution  INTEGER NOT NULL,
        seq        INTEGER NOT NULL,
        event      TEXT NOT NULL
    );
    CREATE TABLE history (
        id         BLOB PRIMARY KEY,
        workflow   TEXT NOT NULL,
        started_at TEXT NOT NULL,
        state      TEXT NOT NULL
    );
    CREATE INDEX history_by_start ON history (started_at, id);
    CREATE INDEX history_by_workflow ON history (workflow, started_at, id);
    CREATE TABLE dead_letters (
        id         BLOB PRIMARY KEY,
        workflow   TEXT NOT NULL,
        failed_at  TEXT NOT NULL,
        expires_at TEXT NOT NULL,
        record     TEXT NOT NULL
    );
    CREATE INDEX dead_letters_by_failure ON dead_letters (failed_at, id);
    CREATE INDEX dead_letters_by_expiry ON dead_letters (expires_at);
    CREATE TABLE definitions (
        name       TEXT NOT NULL,
        version    TEXT NOT NULL,
        registered INTEGER NOT NULL,
        snapshot   TEXT NOT NULL,
        PRIMARY KEY (name, version)
    );
    CREATE TABLE schedule_ticks (
        key        TEXT PRIMARY KEY,
        fire_time  TEXT NOT NULL
    );",
    // 2: requests from tools beside the engine (see `store::inbox`).
    "CREATE TABLE commands (
        id         INTEGER PRIMARY KEY AUTOINCREMENT,
        execution  BLOB,
        command    TEXT NOT NULL,
        queued_at  TEXT NOT NULL
    );",
    // 3: when each ended execution ended, for pruning by retention.
    "ALTER TABLE history ADD COLUMN ended_at TEXT;
    UPDATE history SET ended_at = COALESCE(json_extract(state, '$.ended_at'), started_at);
    CREATE INDEX history_by_end ON history (workflow, ended_at);",
    // 4: the unique key an ended execution was started with, for starts that
    // keep a key held for a while after its execution ended.
    "ALTER TABLE history ADD COLUMN unique_key TEXT;
    CREATE INDEX history_by_key ON history (workflow, unique_key, ended_at) WHERE unique_key IS NOT NULL;",
];

/// The schema version this build writes and reads.
pub(super) const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Brings the schema from `from` to [`SCHEMA_VERSION`] in one transaction.
pub(super) fn migrate(conn: &Connection, from: i64, name: &str) -> Result<(), StoreError> {
    if from >= SCHEMA_VERSION {
        return Ok(());
    }
    let fail =
        |e: rusqlite::Error| StoreError::Unavailable(format!("cannot migrate `{name}` from version {from}: {e}"));
    conn.execute_batch("BEGIN IMMEDIATE").map_err(fail)?;
    let result = (|| {
        for sql in &MIGRATIONS[from as usize..] {
            conn.execute_batch(sql)?;
        }
        conn.execute_batch(&format!(
            "PRAGMA application_id = {APPLICATION_ID}; PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
        ))
    })();
    if let Err(e) = result {
        let _ = conn.execute_batch("ROLLBACK");
        return Err(fail(e));
    }
    Ok(())
}
