//! [`Db`]: the database thread's connection and what it remembers between
//! batches; opening a file (its header checked, then set up and migrated) and
//! loading that state.

use std::collections::HashMap;
use std::path::Path;
use std::sync::mpsc;

use rusqlite::{Connection, ErrorCode, OpenFlags};

use super::Synchronous;
use super::checkpoint::Checkpointer;
use super::convert::{id_from, sql_error};
use super::schema::{APPLICATION_ID, SCHEMA_VERSION, migrate};
use crate::model::ExecutionId;
use crate::store::StoreError;

/// The connection and what the thread remembers between batches.
///
/// The journal is append-only, so that a batch of events from many executions
/// writes a few new pages at the end of one table instead of dirtying a page per
/// execution. An execution's rows are found by its row key: when it ends, or when
/// an upgrade rewrites its journal under a new key, its old rows become garbage.
/// Readers skip garbage (its key is no longer in `executions`, and keys are never
/// reused), and each write batch deletes the garbage in the next window of the
/// journal while there is enough of it, so the table stays near the size of the
/// live journals.
pub(super) struct Db {
    pub(super) conn: Connection,
    /// For error messages.
    pub(super) name: String,
    /// Executions that have not ended: their row key and journal length.
    pub(super) live: HashMap<ExecutionId, Live>,
    /// Journal rows that belong to no live execution (an upper bound).
    pub(super) garbage: u64,
    /// Rows that became garbage since the collector's last full pass.
    pub(super) garbage_this_pass: u64,
    /// Where the collector's next window starts.
    pub(super) sweep_from: i64,
    /// The `registered` stamp of the next definition written.
    pub(super) next_registration: i64,
    /// Wakes the checkpointer after each commit (`None`: SQLite checkpoints on
    /// this thread, as it does by default).
    pub(super) checkpoints: Option<mpsc::Sender<()>>,
}

#[derive(Clone, Copy, Debug)]
pub(super) struct Live {
    pub(super) key: i64,
    pub(super) events: u64,
    /// Whether it was started with a unique key (its record has one).
    pub(super) keyed: bool,
}

impl Db {
    pub(super) fn open(
        path: Option<&Path>,
        synchronous: Synchronous,
        read_only: bool,
        control: bool,
    ) -> Result<Db, StoreError> {
        let name = path.map_or_else(|| ":memory:".to_owned(), |p| p.display().to_string());
        let flags = if control {
            // Writes only the request queue; never creates the file.
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX
        } else if read_only {
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
        } else {
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX
        };
        let conn = match path {
            Some(p) => Connection::open_with_flags(p, flags),
            None => Connection::open_in_memory(),
        }
        .map_err(|e| StoreError::Unavailable(format!("cannot open `{name}`: {e}")))?;
        let foreign = |reason: String| StoreError::Foreign { path: name.clone(), reason };
        // Read the header before writing anything: a file that is not ours is
        // reported, never converted.
        let app_id: i64 =
            conn.pragma_query_value(None, "application_id", |r| r.get(0)).map_err(|e| match e.sqlite_error_code() {
                Some(ErrorCode::NotADatabase) => foreign("the file is not an SQLite database".into()),
                Some(ErrorCode::DatabaseCorrupt) => foreign(format!("the database is corrupt: {e}")),
                _ => StoreError::Unavailable(format!("cannot read `{name}`: {e}")),
            })?;
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(|e| StoreError::Unavailable(format!("cannot read `{name}`: {e}")))?;
        if app_id != APPLICATION_ID {
            if app_id != 0 {
                return Err(foreign(format!(
                    "it is an SQLite database of another application (application_id {app_id:#010x}, \
                     sagaflow's is {APPLICATION_ID:#010x})"
                )));
            }
            let mut stmt = conn
                .prepare("SELECT name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' ORDER BY name LIMIT 5")
                .map_err(|e| foreign(format!("its schema cannot be read: {e}")))?;
            let tables: Vec<String> = stmt
                .query_map([], |r| r.get(0))
                .and_then(|rows| rows.collect())
                .map_err(|e| foreign(format!("its schema cannot be read: {e}")))?;
            if !tables.is_empty() {
                return Err(foreign(format!(
                    "it is an SQLite database of another application (it holds `{}`)",
                    tables.join("`, `")
                )));
            }
        } else if version > SCHEMA_VERSION {
            return Err(StoreError::TooNew { path: name, found: version, supported: SCHEMA_VERSION });
        }
        if read_only {
            return Self::open_read_only(conn, name, version, control);
        }
        let unavailable = |e: rusqlite::Error| StoreError::Unavailable(format!("cannot set up `{name}`: {e}"));
        if path.is_some() {
            let mode: String =
                conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0)).map_err(&unavailable)?;
            if !mode.eq_ignore_ascii_case("wal") {
                return Err(StoreError::Unavailable(format!("`{name}` cannot use WAL mode (got `{mode}`)")));
            }
        }
        conn.execute_batch(&format!(
            "PRAGMA synchronous = {};
             PRAGMA busy_timeout = 5000;
             PRAGMA cache_size = -32768;
             PRAGMA temp_store = MEMORY;",
            synchronous.pragma()
        ))
        .map_err(&unavailable)?;
        conn.set_prepared_statement_cache_capacity(64);
        migrate(&conn, version, &name)?;
        let checkpoints = match path {
            Some(p) => Checkpointer::start(&conn, p, synchronous, &name),
            None => None,
        };
        let mut db = Db {
            conn,
            name,
            live: HashMap::new(),
            garbage: 0,
            garbage_this_pass: 0,
            sweep_from: 0,
            next_registration: 0,
            checkpoints,
        };
        db.load()?;
        Ok(db)
    }

    /// The rest of opening a file read-only: nothing is set up or migrated, so
    /// the file must hold the current schema already.
    fn open_read_only(conn: Connection, name: String, version: i64, control: bool) -> Result<Db, StoreError> {
        if version != SCHEMA_VERSION {
            return Err(StoreError::Foreign {
                path: name,
                reason: format!(
                    "it has schema version {version} and this build reads version {SCHEMA_VERSION}; open it \
                     for writing once (an engine does) to create or migrate its schema"
                ),
            });
        }
        let setup =
            if control { "PRAGMA busy_timeout = 5000;" } else { "PRAGMA busy_timeout = 5000; PRAGMA query_only = ON;" };
        conn.execute_batch(setup).map_err(|e| StoreError::Unavailable(format!("cannot set up `{name}`: {e}")))?;
        let mut db = Db {
            conn,
            name,
            live: HashMap::new(),
            garbage: 0,
            garbage_this_pass: 0,
            sweep_from: 0,
            next_registration: 0,
            checkpoints: None,
        };
        db.load()?;
        Ok(db)
    }

    /// Loads what the thread keeps in memory: live executions, journal lengths,
    /// the amount of garbage and the definition stamp.
    pub(super) fn load(&mut self) -> Result<(), StoreError> {
        let err = |e| sql_error(&self.name, e);
        let mut by_key: HashMap<i64, Live> = HashMap::new();
        let mut ids = Vec::new();
        let mut stmt = self
            .conn
            .prepare("SELECT id, key, json_extract(record, '$.unique_key') IS NOT NULL FROM executions")
            .map_err(err)?;
        let mut rows = stmt.query([]).map_err(err)?;
        while let Some(row) = rows.next().map_err(err)? {
            let key: i64 = row.get(1).map_err(err)?;
            ids.push((id_from(&row.get::<_, Vec<u8>>(0).map_err(err)?)?, key));
            by_key.insert(key, Live { key, events: 0, keyed: row.get(2).map_err(err)? });
        }
        drop(rows);
        let mut garbage = 0;
        let mut stmt = self.conn.prepare("SELECT execution FROM journal").map_err(err)?;
        let mut rows = stmt.query([]).map_err(err)?;
        while let Some(row) = rows.next().map_err(err)? {
            match by_key.get_mut(&row.get::<_, i64>(0).map_err(err)?) {
                Some(live) => live.events += 1,
                None => garbage += 1,
            }
        }
        drop(rows);
        self.live = ids.into_iter().map(|(id, key)| (id, by_key[&key])).collect();
        self.garbage = garbage;
        self.garbage_this_pass = garbage;
        self.sweep_from = 0;
        self.next_registration = self
            .conn
            .query_row("SELECT COALESCE(MAX(registered), 0) + 1 FROM definitions", [], |r| r.get(0))
            .map_err(err)?;
        Ok(())
    }

    pub(super) fn err(&self) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
        move |e| sql_error(&self.name, e)
    }
}
