//! [`SqliteStore`]: the embedded, durable default. One file, WAL, one writer thread.

mod lock;

use std::collections::HashMap;
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension, params};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::oneshot;

use self::lock::FileLock;

use super::{
    DeadLetter, Durability, ExecutionQuery, Inbox, JournalEntry, NewExecution, QueuedRequest, Request, Store,
    StoreError, StoredExecution, Upgrade, Write,
};
use crate::model::execution::{ExecutionState, Trigger};
use crate::model::{DefinitionSnapshot, ExecutionId};

/// `PRAGMA application_id` of sagaflow databases: `SAGA` in ASCII.
const APPLICATION_ID: i64 = 0x5341_4741;

/// The schema, one migration per version: migration `i` takes the database from
/// `user_version = i` to `i + 1`. Append only; never edit a released migration.
const MIGRATIONS: &[&str] = &[
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
const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// How hard SQLite works to make each commit survive (`PRAGMA synchronous`).
///
/// Both modes run in WAL mode, and both survive a crash of the process (`kill -9`,
/// a panic, an OOM kill): a commit is in the operating system's hands before an
/// acknowledged call returns. They differ on a crash of the machine (power loss,
/// kernel panic). See [`SqliteStore`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Synchronous {
    /// `synchronous=FULL` (the default): the WAL is flushed to the disk (fsync) at
    /// every commit, so an acknowledged call survives power loss too.
    #[default]
    Full,
    /// `synchronous=NORMAL`: the WAL is flushed to the disk only at checkpoints. An
    /// acknowledged call survives a crash of the process, but the last commits
    /// before a power loss or an OS crash may be lost (the database stays
    /// consistent: it rolls back to an earlier commit).
    Normal,
}

impl Synchronous {
    fn pragma(self) -> &'static str {
        match self {
            Synchronous::Full => "FULL",
            Synchronous::Normal => "NORMAL",
        }
    }

    fn parse(value: &str) -> Option<Self> {
        match value.to_ascii_lowercase().as_str() {
            "full" | "2" => Some(Synchronous::Full),
            "normal" | "1" => Some(Synchronous::Normal),
            _ => None,
        }
    }
}

/// Options of a [`SqliteStore`].
///
/// ```
/// use sagaflow_runtime::store::{SqliteOptions, Synchronous};
/// let options = SqliteOptions::default().synchronous(Synchronous::Normal);
/// # let _ = options;
/// ```
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct SqliteOptions {
    synchronous: Synchronous,
    read_only: bool,
    /// Read-only, except for queueing requests (`open_control`).
    control: bool,
}

impl SqliteOptions {
    /// Sets `PRAGMA synchronous` (default: [`Synchronous::Full`]).
    pub fn synchronous(mut self, mode: Synchronous) -> Self {
        self.synchronous = mode;
        self
    }

    /// Opens the file only to read it (default: `false`): no lock is taken, so a
    /// file that an engine is using can be read beside it, and every write fails
    /// with [`StoreError::ReadOnly`]. The file must exist and hold sagaflow's
    /// current schema. An engine does not run on a read-only store.
    pub fn read_only(mut self, yes: bool) -> Self {
        self.read_only = yes;
        if !yes {
            self.control = false;
        }
        self
    }

    /// Opens the file to read it and to queue requests for the engine that
    /// holds it (default: `false`): like [`read_only`](Self::read_only), except
    /// that [`Inbox::send`] works. See [`SqliteStore::open_control`].
    pub fn control(mut self, yes: bool) -> Self {
        self.control = yes;
        if yes {
            self.read_only = true;
        }
        self
    }
}

/// A job for the database thread.
type Job = Box<dyn FnOnce(&mut Db) + Send>;

#[doc = include_str!("../../docs/sqlite.md")]
pub struct SqliteStore {
    jobs: mpsc::Sender<Job>,
    path: Option<PathBuf>,
    synchronous: Synchronous,
    read_only: bool,
    control: bool,
    /// The file's lock while this store may write it (see `lock`).
    lock: parking_lot::Mutex<Option<FileLock>>,
}

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .field("synchronous", &self.synchronous)
            .field("read_only", &self.read_only)
            .field("control", &self.control)
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (or creates) the database file at `path` with the default options.
    ///
    /// Fails with [`StoreError::Foreign`] if the file is not a sagaflow database
    /// and with [`StoreError::TooNew`] if a newer sagaflow wrote it; in both cases
    /// the file is left untouched.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::open_with(path, SqliteOptions::default()).await
    }

    /// Opens (or creates) the database file at `path`.
    ///
    /// Unless the options say [`read_only`](SqliteOptions::read_only), the store
    /// holds the file: a second store opening it for writing, in this process or
    /// another, fails with [`StoreError::Locked`] naming the holder, until this
    /// one is dropped, its engine shuts down, or its process dies.
    pub async fn open_with(path: impl AsRef<Path>, options: SqliteOptions) -> Result<Self, StoreError> {
        let path = path.as_ref().to_path_buf();
        Self::spawn(Some(path), options).await
    }

    /// Opens an existing database file only to read it, beside the engine that
    /// may be using it (for tools: introspection, the dashboard over a file, a
    /// command line). Writes fail with [`StoreError::ReadOnly`].
    pub async fn open_read_only(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::open_with(path, SqliteOptions::default().read_only(true)).await
    }

    /// Opens an existing database file beside the engine that holds it, to read
    /// it and to queue requests for that engine ([`Inbox::send`]: cancel, pause,
    /// resume, replay a dead letter...). It takes no lock and writes nothing but
    /// the queue; every other write fails with [`StoreError::ReadOnly`], and no
    /// engine runs on it. The engine that holds the file carries the requests
    /// out within a fraction of a second (see [`Inbox`]); while no engine holds
    /// the file, they wait for the next one.
    pub async fn open_control(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::open_with(path, SqliteOptions::default().control(true)).await
    }

    /// Who holds the database file at `path` now (an engine, as its lock file
    /// describes it), or `None` if no store has it open for writing.
    pub fn holder(path: impl AsRef<Path>) -> Result<Option<String>, StoreError> {
        FileLock::holder(path.as_ref())
    }

    /// A database in memory: the same tables and queries, gone with the store
    /// (so it reports [`Durability::Volatile`] and the engine does not journal
    /// into it).
    pub async fn in_memory() -> Result<Self, StoreError> {
        Self::spawn(None, SqliteOptions::default()).await
    }

    /// Opens the store a URL names: `sqlite://path/to/file.db` (relative to the
    /// working directory; `sqlite:///abs/path.db` for an absolute path),
    /// `sqlite:path.db`, or `sqlite::memory:`. The query parameter
    /// `synchronous=full|normal` sets [`Synchronous`]; `mode=ro` opens the file
    /// read-only ([`open_read_only`](Self::open_read_only)), `mode=control` to
    /// read it and queue requests for its engine ([`open_control`](Self::open_control)),
    /// `mode=rw` (the default) for writing.
    pub async fn open_url(url: &str) -> Result<Self, StoreError> {
        let invalid = |reason: String| StoreError::InvalidUrl { url: super::redact_url(url), reason };
        let rest = url.strip_prefix("sqlite:").ok_or_else(|| invalid("expected `sqlite://path`".into()))?;
        let (target, query) = rest.split_once('?').unwrap_or((rest, ""));
        let mut options = SqliteOptions::default();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            match key {
                "synchronous" => {
                    options.synchronous = Synchronous::parse(value).ok_or_else(|| {
                        invalid(format!("unknown `synchronous` value `{value}`; expected `full` or `normal`"))
                    })?;
                }
                "mode" => {
                    options = match value.to_ascii_lowercase().as_str() {
                        "ro" => options.read_only(true),
                        "control" => options.control(true),
                        "rw" | "rwc" => options.read_only(false),
                        _ => {
                            return Err(invalid(format!(
                                "unknown `mode` value `{value}`; expected `ro`, `control` or `rw`"
                            )));
                        }
                    };
                }
                other => {
                    return Err(invalid(format!("unknown parameter `{other}`; expected `synchronous` or `mode`")));
                }
            }
        }
        if target == ":memory:" {
            if options.read_only {
                return Err(invalid("an in-memory database cannot be opened read-only".into()));
            }
            return Self::spawn(None, options).await;
        }
        let path = target.strip_prefix("//").unwrap_or(target);
        if path.is_empty() {
            return Err(invalid("no file path after `sqlite://`".into()));
        }
        Self::open_with(path, options).await
    }

    /// The database file (`None` in memory).
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The `synchronous` mode in force.
    pub fn synchronous_mode(&self) -> Synchronous {
        self.synchronous
    }

    /// Whether the store was opened read-only.
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    async fn spawn(path: Option<PathBuf>, options: SqliteOptions) -> Result<Self, StoreError> {
        let SqliteOptions { synchronous, read_only, control } = options;
        // Lock before touching the file: a second engine changes nothing in it.
        let lock = match &path {
            Some(p) if !read_only => Some(FileLock::acquire(p)?),
            _ => None,
        };
        let (jobs, inbox) = mpsc::channel::<Job>();
        let (ready_tx, ready) = oneshot::channel();
        let thread_path = path.clone();
        std::thread::Builder::new()
            .name("sagaflow-sqlite".into())
            .spawn(move || {
                let mut db = match Db::open(thread_path.as_deref(), synchronous, read_only, control) {
                    Ok(db) => {
                        let _ = ready_tx.send(Ok(()));
                        db
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                while let Ok(job) = inbox.recv() {
                    // A panic drops the job's reply channel, so its caller sees an
                    // error; the thread goes on serving the others.
                    let _ = catch_unwind(AssertUnwindSafe(|| job(&mut db)));
                }
            })
            .map_err(|e| StoreError::Unavailable(format!("cannot start the SQLite thread: {e}")))?;
        ready.await.map_err(|_| StoreError::Unavailable("the SQLite thread stopped while opening".into()))??;
        Ok(SqliteStore { jobs, path, synchronous, read_only, control, lock: parking_lot::Mutex::new(lock) })
    }

    /// Fails if the store is read-only.
    fn writable(&self, action: &'static str) -> Result<(), StoreError> {
        if self.read_only {
            let path = self.path.as_deref().map_or_else(|| ":memory:".to_owned(), |p| p.display().to_string());
            return Err(StoreError::ReadOnly { path, action });
        }
        Ok(())
    }

    /// Runs `f` on the database thread and returns its result: one hop to the
    /// thread and one wake back, whatever `f` does.
    async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Db) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |db| {
            let _ = tx.send(f(db));
        });
        let gone = || StoreError::Unavailable("the SQLite thread has stopped (a query panicked)".into());
        self.jobs.send(job).map_err(|_| gone())?;
        rx.await.map_err(|_| gone())?
    }
}

#[async_trait]
impl Store for SqliteStore {
    fn durability(&self) -> Durability {
        if self.path.is_some() { Durability::Durable } else { Durability::Volatile }
    }

    async fn write(&self, batch: &[Write]) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        self.writable("writing")?;
        // Serialize here, on the caller's thread, while the database thread
        // commits the previous batch.
        let ops = prepare(batch)?;
        self.call(move |db| db.write(&ops)).await
    }

    async fn unfinished(&self) -> Result<Vec<StoredExecution>, StoreError> {
        self.call(Db::unfinished).await
    }

    async fn finished(&self, id: ExecutionId) -> Result<Option<ExecutionState>, StoreError> {
        self.call(move |db| db.finished(id)).await
    }

    async fn list_finished(&self, query: &ExecutionQuery) -> Result<Vec<ExecutionState>, StoreError> {
        let query = query.clone();
        self.call(move |db| db.list_finished(&query)).await
    }

    async fn ended_with_key(
        &self,
        workflow: &str,
        key: &str,
        since: DateTime<Utc>,
    ) -> Result<Option<ExecutionId>, StoreError> {
        let (workflow, key) = (workflow.to_owned(), key.to_owned());
        self.call(move |db| db.ended_with_key(&workflow, &key, since)).await
    }

    async fn dead_letters(&self, workflow: Option<&str>) -> Result<Vec<DeadLetter>, StoreError> {
        let workflow = workflow.map(str::to_owned);
        self.call(move |db| db.dead_letters(workflow.as_deref())).await
    }

    async fn purge_dead_letters(&self, now: DateTime<Utc>) -> Result<usize, StoreError> {
        self.writable("purging dead letters")?;
        self.call(move |db| db.purge_dead_letters(now)).await
    }

    async fn prune_finished(
        &self,
        workflow: &str,
        ended_before: DateTime<Utc>,
        limit: usize,
    ) -> Result<usize, StoreError> {
        self.writable("pruning ended executions")?;
        let workflow = workflow.to_owned();
        self.call(move |db| db.prune_finished(&workflow, ended_before, limit)).await
    }

    async fn definitions(&self) -> Result<Vec<DefinitionSnapshot>, StoreError> {
        self.call(Db::definitions).await
    }

    async fn definition_version(&self, name: &str, version: &str) -> Result<Option<DefinitionSnapshot>, StoreError> {
        let (name, version) = (name.to_owned(), version.to_owned());
        self.call(move |db| db.definition_version(&name, &version)).await
    }

    async fn claim_tick(&self, key: &str, fire_time: DateTime<Utc>) -> Result<bool, StoreError> {
        self.writable("claiming a schedule tick")?;
        let key = key.to_owned();
        self.call(move |db| db.claim_tick(&key, fire_time)).await
    }

    async fn last_ticks(&self) -> Result<Vec<(String, DateTime<Utc>)>, StoreError> {
        self.call(Db::last_ticks).await
    }

    fn read_only(&self) -> bool {
        self.read_only
    }

    async fn release(&self) {
        // Every write this engine queued was committed before it let go.
        self.lock.lock().take();
    }

    fn inbox(&self) -> Option<&dyn Inbox> {
        self.path.is_some().then_some(self as &dyn Inbox)
    }
}

#[async_trait]
impl Inbox for SqliteStore {
    async fn send(&self, request: &Request) -> Result<i64, StoreError> {
        if self.read_only && !self.control {
            let path = self.path.as_deref().map_or_else(|| ":memory:".to_owned(), |p| p.display().to_string());
            return Err(StoreError::ReadOnly {
                path,
                action: "queueing a request (open it with `SqliteStore::open_control` or `?mode=control`)",
            });
        }
        let text = to_json(request, "request")?;
        let execution = request.execution();
        let check = matches!(request, Request::Control { .. });
        let queued_at = timestamp(&Utc::now());
        self.call(move |db| db.send(execution, check, &text, &queued_at)).await
    }

    async fn queued(&self, limit: usize) -> Result<Vec<QueuedRequest>, StoreError> {
        self.call(move |db| db.queued(limit)).await
    }

    async fn remove(&self, seqs: &[i64]) -> Result<(), StoreError> {
        if seqs.is_empty() {
            return Ok(());
        }
        self.writable("deleting carried-out requests")?;
        let seqs = seqs.to_vec();
        self.call(move |db| db.remove_requests(&seqs)).await
    }

    async fn is_queued(&self, seq: i64) -> Result<bool, StoreError> {
        self.call(move |db| db.is_queued(seq)).await
    }
}

/// Journal rows that may be garbage before the writer starts deleting them.
const GARBAGE_THRESHOLD: u64 = 4096;

/// Journal rows (by id) examined per batch while collecting garbage.
const GARBAGE_WINDOW: i64 = 8192;

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
struct Db {
    conn: Connection,
    /// For error messages.
    name: String,
    /// Executions that have not ended: their row key and journal length.
    live: HashMap<ExecutionId, Live>,
    /// Journal rows that belong to no live execution (an upper bound).
    garbage: u64,
    /// Rows that became garbage since the collector's last full pass.
    garbage_this_pass: u64,
    /// Where the collector's next window starts.
    sweep_from: i64,
    /// The `registered` stamp of the next definition written.
    next_registration: i64,
    /// Wakes the checkpointer after each commit (`None`: SQLite checkpoints on
    /// this thread, as it does by default).
    checkpoints: Option<mpsc::Sender<()>>,
}

#[derive(Clone, Copy, Debug)]
struct Live {
    key: i64,
    events: u64,
    /// Whether it was started with a unique key (its record has one).
    keyed: bool,
}

impl Db {
    fn open(path: Option<&Path>, synchronous: Synchronous, read_only: bool, control: bool) -> Result<Db, StoreError> {
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
    fn load(&mut self) -> Result<(), StoreError> {
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

    fn err(&self) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
        move |e| sql_error(&self.name, e)
    }

    fn write(&mut self, ops: &[Op]) -> Result<(), StoreError> {
        self.conn.execute_batch("BEGIN IMMEDIATE").map_err(self.err())?;
        let result = self
            .apply(ops)
            .and_then(|()| self.collect_garbage())
            .and_then(|()| self.conn.execute_batch("COMMIT").map_err(self.err()));
        if result.is_ok()
            && let Some(wake) = &self.checkpoints
        {
            let _ = wake.send(());
        }
        if let Err(e) = result {
            if !self.conn.is_autocommit() {
                let _ = self.conn.execute_batch("ROLLBACK");
            }
            // What the thread remembers may have run ahead of the rolled-back
            // transaction: read it again.
            if let Err(reload) = self.load() {
                tracing::error!(error = %reload, "reloading the SQLite store's state after a failed batch");
            }
            return Err(e);
        }
        Ok(())
    }

    fn apply(&mut self, ops: &[Op]) -> Result<(), StoreError> {
        let conn = &self.conn;
        let name = &self.name;
        let err = |e| sql_error(name, e);
        let mut insert_event =
            conn.prepare_cached("INSERT INTO journal (execution, seq, event) VALUES (?1, ?2, ?3)").map_err(err)?;
        for op in ops {
            match op {
                Op::Event { id, seq, event } => {
                    let live = self.live.get_mut(id).ok_or(StoreError::UnknownExecution(*id))?;
                    // An execution's entries are numbered from 1 without gaps: one
                    // the journal has already came from an earlier try of a batch
                    // whose commit's outcome was unknown.
                    if (*seq as u64) <= live.events {
                        continue;
                    }
                    insert_event.execute(params![live.key, seq, event]).map_err(err)?;
                    live.events += 1;
                }
                Op::Tick { key, fire_time, create: op } => {
                    if claim_tick_in(conn, key, *fire_time).map_err(&err)? {
                        create(conn, &mut self.live, name, op)?;
                    }
                }
                op @ Op::Create { .. } => create(conn, &mut self.live, name, op)?,
                Op::Started { id } => {
                    if let Some(live) = self.live.get(id) {
                        conn.prepare_cached("UPDATE executions SET started = 1 WHERE key = ?1")
                            .and_then(|mut s| s.execute([live.key]))
                            .map_err(err)?;
                    }
                }
                Op::Reschedule { id, record } => {
                    if let Some(live) = self.live.get(id) {
                        conn.prepare_cached("UPDATE executions SET record = ?2 WHERE key = ?1 AND started = 0")
                            .and_then(|mut s| s.execute(params![live.key, record]))
                            .map_err(err)?;
                    }
                }
                Op::Finish { id, workflow, started_at, ended_at, state } => {
                    let mut unique_key: Option<String> = None;
                    if let Some(old) = self.live.remove(id) {
                        if old.keyed {
                            unique_key = conn
                                .prepare_cached(
                                    "SELECT json_extract(record, '$.unique_key') FROM executions WHERE key = ?1",
                                )
                                .and_then(|mut s| s.query_row([old.key], |r| r.get(0)))
                                .map_err(err)?;
                        }
                        retire(conn, old, &mut self.garbage, &mut self.garbage_this_pass).map_err(err)?;
                    }
                    conn.prepare_cached(
                        "INSERT OR REPLACE INTO history (id, workflow, started_at, ended_at, state, unique_key)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    )
                    .and_then(|mut s| {
                        s.execute(params![id.as_uuid().as_bytes(), workflow, started_at, ended_at, state, unique_key])
                    })
                    .map_err(err)?;
                }
                Op::DeadLetter { id, workflow, failed_at, expires_at, record } => {
                    conn.prepare_cached(
                        "INSERT OR REPLACE INTO dead_letters (id, workflow, failed_at, expires_at, record)
                         VALUES (?1, ?2, ?3, ?4, ?5)",
                    )
                    .and_then(|mut s| {
                        s.execute(params![id.as_uuid().as_bytes(), workflow, failed_at, expires_at, record])
                    })
                    .map_err(err)?;
                }
                Op::RemoveDeadLetter { id } => {
                    conn.prepare_cached("DELETE FROM dead_letters WHERE id = ?1")
                        .and_then(|mut s| s.execute([id.as_uuid().as_bytes()]))
                        .map_err(err)?;
                }
                Op::Definition { name, version, snapshot } => {
                    let stamp = self.next_registration;
                    self.next_registration += 1;
                    conn.prepare_cached(
                        "INSERT INTO definitions (name, version, registered, snapshot) VALUES (?1, ?2, ?3, ?4)
                         ON CONFLICT (name, version) DO UPDATE
                         SET registered = excluded.registered, snapshot = excluded.snapshot",
                    )
                    .and_then(|mut s| s.execute(params![name, version, stamp, snapshot]))
                    .map_err(err)?;
                }
                Op::Upgrade { id, version, events } => {
                    // The execution gets a new key, under which its rewritten journal
                    // is appended; the rows under the old key become garbage.
                    let old = *self.live.get(id).ok_or(StoreError::UnknownExecution(*id))?;
                    let (created_at, started, record): (String, bool, String) = conn
                        .query_row(
                            "SELECT created_at, started, record FROM executions WHERE key = ?1",
                            [old.key],
                            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                        )
                        .map_err(err)?;
                    let mut n: NewExecution = from_json(&record, "execution record")?;
                    n.version.clone_from(version);
                    let record = to_json(&n, "execution record")?;
                    retire(conn, old, &mut self.garbage, &mut self.garbage_this_pass).map_err(err)?;
                    let key = insert_execution(conn, id, &created_at, started, &record).map_err(err)?;
                    for (seq, event) in events {
                        insert_event.execute(params![key, seq, event]).map_err(err)?;
                    }
                    self.live.insert(*id, Live { key, events: events.len() as u64, keyed: old.keyed });
                }
            }
        }
        Ok(())
    }

    /// Deletes the garbage in the next window of the journal, if there is enough
    /// garbage to bother. Windows move from the oldest rows to the newest, then
    /// start over.
    fn collect_garbage(&mut self) -> Result<(), StoreError> {
        if self.garbage < GARBAGE_THRESHOLD {
            return Ok(());
        }
        let err = |e| sql_error(&self.name, e);
        let (first, last): (Option<i64>, Option<i64>) = self
            .conn
            .prepare_cached("SELECT MIN(id), MAX(id) FROM journal")
            .and_then(|mut s| s.query_row([], |r| Ok((r.get(0)?, r.get(1)?))))
            .map_err(err)?;
        let (Some(first), Some(last)) = (first, last) else {
            self.garbage = 0;
            self.garbage_this_pass = 0;
            return Ok(());
        };
        let from = self.sweep_from.max(first);
        let deleted = self
            .conn
            .prepare_cached(
                "DELETE FROM journal WHERE id >= ?1 AND id < ?2
                 AND execution NOT IN (SELECT key FROM executions)",
            )
            .and_then(|mut s| s.execute([from, from + GARBAGE_WINDOW]))
            .map_err(err)? as u64;
        self.garbage = self.garbage.saturating_sub(deleted);
        self.sweep_from = from + GARBAGE_WINDOW;
        if self.sweep_from > last {
            // A full pass ended: what is left is at most what turned to garbage
            // during the pass.
            self.sweep_from = 0;
            self.garbage = self.garbage.min(self.garbage_this_pass);
            self.garbage_this_pass = 0;
        }
        Ok(())
    }

    fn unfinished(&mut self) -> Result<Vec<StoredExecution>, StoreError> {
        let err = self.err();
        // One read transaction: both tables from the same commit, even while the
        // engine that holds the file writes (for a read-only store beside it).
        let tx = self.conn.unchecked_transaction().map_err(&err)?;
        let mut out = Vec::with_capacity(self.live.len());
        let mut index: HashMap<i64, usize> = HashMap::with_capacity(self.live.len());
        let mut stmt =
            self.conn.prepare("SELECT key, record, started FROM executions ORDER BY created_at, id").map_err(&err)?;
        let mut rows = stmt.query([]).map_err(&err)?;
        while let Some(row) = rows.next().map_err(&err)? {
            let key: i64 = row.get(0).map_err(&err)?;
            let record: String = row.get(1).map_err(&err)?;
            let execution: NewExecution = from_json(&record, "execution record")?;
            index.insert(key, out.len());
            out.push(StoredExecution { execution, started: row.get(2).map_err(&err)?, events: Vec::new() });
        }
        drop(rows);
        let mut stmt = self.conn.prepare("SELECT execution, seq, event FROM journal ORDER BY id").map_err(&err)?;
        let mut rows = stmt.query([]).map_err(&err)?;
        while let Some(row) = rows.next().map_err(&err)? {
            let key: i64 = row.get(0).map_err(&err)?;
            let Some(&i) = index.get(&key) else { continue };
            let seq: i64 = row.get(1).map_err(&err)?;
            let e = &mut out[i];
            e.events.push(JournalEntry {
                execution: e.execution.id,
                seq: seq as u64,
                event: row.get(2).map_err(&err)?,
            });
        }
        drop(rows);
        drop(stmt);
        tx.finish().map_err(&err)?;
        Ok(out)
    }

    fn finished(&mut self, id: ExecutionId) -> Result<Option<ExecutionState>, StoreError> {
        let state: Option<String> = self
            .conn
            .prepare_cached("SELECT state FROM history WHERE id = ?1")
            .and_then(|mut s| s.query_row([id.as_uuid().as_bytes()], |r| r.get(0)).optional())
            .map_err(self.err())?;
        state.map(|s| from_json(&s, "final state")).transpose()
    }

    fn ended_with_key(
        &mut self,
        workflow: &str,
        key: &str,
        since: DateTime<Utc>,
    ) -> Result<Option<ExecutionId>, StoreError> {
        let id: Option<Vec<u8>> = self
            .conn
            .prepare_cached(
                "SELECT id FROM history WHERE workflow = ?1 AND unique_key = ?2 AND ended_at >= ?3
                 ORDER BY ended_at DESC LIMIT 1",
            )
            .and_then(|mut s| s.query_row(params![workflow, key, timestamp(&since)], |r| r.get(0)).optional())
            .map_err(self.err())?;
        id.map(|id| id_from(&id)).transpose()
    }

    fn list_finished(&mut self, query: &ExecutionQuery) -> Result<Vec<ExecutionState>, StoreError> {
        let limit = if query.limit == 0 { -1 } else { query.limit as i64 };
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT state FROM history WHERE ?1 IS NULL OR workflow = ?1
                 ORDER BY started_at DESC, id DESC LIMIT ?2",
            )
            .map_err(self.err())?;
        let states: Vec<String> = stmt
            .query_map(params![query.workflow, limit], |r| r.get(0))
            .and_then(|r| r.collect())
            .map_err(self.err())?;
        states.iter().map(|s| from_json(s, "final state")).collect()
    }

    fn dead_letters(&mut self, workflow: Option<&str>) -> Result<Vec<DeadLetter>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT record FROM dead_letters WHERE ?1 IS NULL OR workflow = ?1 ORDER BY failed_at, id")
            .map_err(self.err())?;
        let records: Vec<String> =
            stmt.query_map([workflow], |r| r.get(0)).and_then(|r| r.collect()).map_err(self.err())?;
        records.iter().map(|s| from_json(s, "dead letter")).collect()
    }

    fn purge_dead_letters(&mut self, now: DateTime<Utc>) -> Result<usize, StoreError> {
        self.conn.execute("DELETE FROM dead_letters WHERE expires_at <= ?1", [timestamp(&now)]).map_err(self.err())
    }

    fn prune_finished(
        &mut self,
        workflow: &str,
        ended_before: DateTime<Utc>,
        limit: usize,
    ) -> Result<usize, StoreError> {
        self.conn
            .prepare_cached(
                "DELETE FROM history WHERE id IN (
                     SELECT id FROM history WHERE workflow = ?1 AND ended_at < ?2 ORDER BY ended_at LIMIT ?3)",
            )
            .and_then(|mut s| s.execute(params![workflow, timestamp(&ended_before), limit as i64]))
            .map_err(self.err())
    }

    fn definitions(&mut self) -> Result<Vec<DefinitionSnapshot>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT snapshot FROM definitions AS d
                 WHERE registered = (SELECT MAX(registered) FROM definitions WHERE name = d.name)
                 ORDER BY name",
            )
            .map_err(self.err())?;
        let snaps: Vec<String> = stmt.query_map([], |r| r.get(0)).and_then(|r| r.collect()).map_err(self.err())?;
        snaps.iter().map(|s| from_json(s, "definition snapshot")).collect()
    }

    fn definition_version(&mut self, name: &str, version: &str) -> Result<Option<DefinitionSnapshot>, StoreError> {
        let snap: Option<String> = self
            .conn
            .query_row("SELECT snapshot FROM definitions WHERE name = ?1 AND version = ?2", [name, version], |r| {
                r.get(0)
            })
            .optional()
            .map_err(self.err())?;
        snap.map(|s| from_json(&s, "definition snapshot")).transpose()
    }

    fn claim_tick(&mut self, key: &str, fire_time: DateTime<Utc>) -> Result<bool, StoreError> {
        // BEGIN IMMEDIATE takes the write lock first, so two processes sharing the
        // file cannot both read the old tick and both win.
        self.conn.execute_batch("BEGIN IMMEDIATE").map_err(self.err())?;
        let result = self.claim_tick_in_tx(key, fire_time);
        let end = if matches!(result, Ok(true)) { "COMMIT" } else { "ROLLBACK" };
        let ended = self.conn.execute_batch(end).map_err(self.err());
        if ended.is_err() && !self.conn.is_autocommit() {
            let _ = self.conn.execute_batch("ROLLBACK");
        }
        let won = result?;
        ended?;
        Ok(won)
    }

    fn claim_tick_in_tx(&mut self, key: &str, fire_time: DateTime<Utc>) -> Result<bool, StoreError> {
        claim_tick_in(&self.conn, key, fire_time).map_err(self.err())
    }

    fn last_ticks(&mut self) -> Result<Vec<(String, DateTime<Utc>)>, StoreError> {
        let mut stmt =
            self.conn.prepare("SELECT key, fire_time FROM schedule_ticks ORDER BY key").map_err(self.err())?;
        let rows: Vec<(String, String)> =
            stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).and_then(|r| r.collect()).map_err(self.err())?;
        rows.into_iter().map(|(k, t)| Ok((k, parse_timestamp(&t)?))).collect()
    }

    /// Queues a request; with `check`, only if `execution` has not ended.
    fn send(
        &mut self,
        execution: Option<ExecutionId>,
        check: bool,
        text: &str,
        queued_at: &str,
    ) -> Result<i64, StoreError> {
        let err = self.err();
        // The check and the insert in one write transaction: the engine cannot
        // end the execution in between.
        self.conn.execute_batch("BEGIN IMMEDIATE").map_err(&err)?;
        let result = (|| {
            let id = execution.map(|e| e.as_uuid().as_bytes().to_vec());
            if check && let Some(e) = execution {
                let known: Option<i64> = self
                    .conn
                    .query_row("SELECT 1 FROM executions WHERE id = ?1", [&id], |r| r.get(0))
                    .optional()
                    .map_err(&err)?;
                if known.is_none() {
                    return Err(StoreError::UnknownExecution(e));
                }
            }
            self.conn
                .execute(
                    "INSERT INTO commands (execution, command, queued_at) VALUES (?1, ?2, ?3)",
                    params![id, text, queued_at],
                )
                .map_err(&err)?;
            Ok(self.conn.last_insert_rowid())
        })();
        let end = if result.is_ok() { "COMMIT" } else { "ROLLBACK" };
        let ended = self.conn.execute_batch(end).map_err(&err);
        if ended.is_err() && !self.conn.is_autocommit() {
            let _ = self.conn.execute_batch("ROLLBACK");
        }
        let seq = result?;
        ended?;
        Ok(seq)
    }

    fn queued(&mut self, limit: usize) -> Result<Vec<QueuedRequest>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT id, command, queued_at FROM commands ORDER BY id LIMIT ?1")
            .map_err(self.err())?;
        let rows: Vec<(i64, String, String)> = stmt
            .query_map([limit.min(i64::MAX as usize) as i64], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .and_then(|r| r.collect())
            .map_err(self.err())?;
        rows.into_iter()
            .map(|(seq, text, at)| {
                Ok(QueuedRequest { seq, request: from_json(&text, "request")?, queued_at: parse_timestamp(&at)? })
            })
            .collect()
    }

    fn remove_requests(&mut self, seqs: &[i64]) -> Result<(), StoreError> {
        let err = self.err();
        let tx = self.conn.unchecked_transaction().map_err(&err)?;
        {
            let mut stmt = tx.prepare_cached("DELETE FROM commands WHERE id = ?1").map_err(&err)?;
            for seq in seqs {
                stmt.execute([seq]).map_err(&err)?;
            }
        }
        tx.commit().map_err(&err)
    }

    fn is_queued(&mut self, seq: i64) -> Result<bool, StoreError> {
        let found: Option<i64> = self
            .conn
            .prepare_cached("SELECT 1 FROM commands WHERE id = ?1")
            .and_then(|mut s| s.query_row([seq], |r| r.get(0)).optional())
            .map_err(self.err())?;
        Ok(found.is_some())
    }
}

/// Copies the WAL back into the database file on a thread of its own, so that
/// the writer never waits for a checkpoint (and, in `NORMAL` mode, for the only
/// fsyncs there are). It runs a passive checkpoint, which never blocks the
/// writer, at most every [`Checkpointer::PAUSE`] while commits keep coming.
///
/// Under a steady load a passive checkpoint never catches up with the writer, and
/// SQLite starts the WAL over only once it has: the file would grow without end.
/// So once the WAL holds more than [`Checkpointer::TRUNCATE_AT`] frames, the
/// thread waits for the writer's transaction to end, copies what is left and
/// truncates the WAL (a pause of the writer for the frames the passive
/// checkpoints had not copied yet), giving up after [`Checkpointer::TRUNCATE_WAIT`]
/// if a reader holds an old snapshot, to try again [`Checkpointer::TRUNCATE_BACKOFF`]
/// later.
struct Checkpointer;

impl Checkpointer {
    const PAUSE: std::time::Duration = std::time::Duration::from_millis(20);
    /// About 16 MiB of WAL with 4 KiB pages.
    const TRUNCATE_AT: i64 = 4096;
    const TRUNCATE_WAIT: std::time::Duration = std::time::Duration::from_millis(200);
    const TRUNCATE_BACKOFF: std::time::Duration = std::time::Duration::from_secs(2);

    /// Runs a checkpoint of `mode`; returns how many frames the WAL holds.
    fn checkpoint(conn: &Connection, mode: &str) -> rusqlite::Result<i64> {
        let (busy, frames): (i64, i64) =
            conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |r| Ok((r.get(0)?, r.get(1)?)))?;
        if busy != 0 {
            return Err(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
                Some(format!("the {mode} checkpoint could not finish")),
            ));
        }
        Ok(frames)
    }

    /// Starts the thread and turns off the writer's own checkpoints; `None` (and
    /// SQLite's usual checkpoints on the writer) if that is not possible.
    fn start(writer: &Connection, path: &Path, synchronous: Synchronous, name: &str) -> Option<mpsc::Sender<()>> {
        let open = || -> rusqlite::Result<Connection> {
            let conn =
                Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
            conn.execute_batch(&format!("PRAGMA busy_timeout = 5000; PRAGMA synchronous = {};", synchronous.pragma()))?;
            Ok(conn)
        };
        let conn = match open() {
            Ok(conn) => conn,
            Err(e) => {
                tracing::warn!(path = name, error = %e, "no checkpoint thread; the writer checkpoints");
                return None;
            }
        };
        let (wake, commits) = mpsc::channel::<()>();
        let spawned = std::thread::Builder::new().name("sagaflow-sqlite-checkpoint".into()).spawn(move || {
            let mut next_truncate = std::time::Instant::now();
            while commits.recv().is_ok() {
                while commits.try_recv().is_ok() {}
                match Self::checkpoint(&conn, "PASSIVE") {
                    Ok(frames) if frames > Self::TRUNCATE_AT && std::time::Instant::now() >= next_truncate => {
                        let _ = conn.busy_timeout(Self::TRUNCATE_WAIT);
                        if let Err(e) = Self::checkpoint(&conn, "TRUNCATE") {
                            // A reader holds an old snapshot: leave the writer
                            // alone for a while.
                            next_truncate = std::time::Instant::now() + Self::TRUNCATE_BACKOFF;
                            tracing::debug!(error = %e, frames, "SQLite could not truncate the WAL yet; will retry");
                        }
                        let _ = conn.busy_timeout(std::time::Duration::from_secs(5));
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "SQLite checkpoint failed; will retry"),
                }
                std::thread::sleep(Self::PAUSE);
            }
        });
        if let Err(e) = spawned {
            tracing::warn!(path = name, error = %e, "no checkpoint thread; the writer checkpoints");
            return None;
        }
        match writer.pragma_update(None, "wal_autocheckpoint", 0) {
            Ok(()) => Some(wake),
            Err(e) => {
                tracing::warn!(path = name, error = %e, "cannot hand checkpoints to their thread");
                None
            }
        }
    }
}

/// Brings the schema from `from` to [`SCHEMA_VERSION`] in one transaction.
fn migrate(conn: &Connection, from: i64, name: &str) -> Result<(), StoreError> {
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

/// Inserts an execution's row; returns its key (never reused: `AUTOINCREMENT`).
fn insert_execution(
    conn: &Connection,
    id: &ExecutionId,
    created_at: &str,
    started: bool,
    record: &str,
) -> rusqlite::Result<i64> {
    conn.prepare_cached("INSERT INTO executions (id, created_at, started, record) VALUES (?1, ?2, ?3, ?4)")?
        .execute(params![id.as_uuid().as_bytes(), created_at, started, record])?;
    Ok(conn.last_insert_rowid())
}

/// A write, serialized and ready for the database thread.
enum Op {
    Event {
        id: ExecutionId,
        seq: i64,
        event: String,
    },
    /// `replay_of`: the dead letter the new execution replays, removed with it.
    Create {
        id: ExecutionId,
        created_at: String,
        started: bool,
        record: String,
        keyed: bool,
        replay_of: Option<ExecutionId>,
    },
    /// Creates the execution only if the tick is later than the last one claimed.
    Tick {
        key: String,
        fire_time: DateTime<Utc>,
        create: Box<Op>,
    },
    Started {
        id: ExecutionId,
    },
    Reschedule {
        id: ExecutionId,
        record: String,
    },
    Finish {
        id: ExecutionId,
        workflow: String,
        started_at: String,
        ended_at: String,
        state: String,
    },
    DeadLetter {
        id: ExecutionId,
        workflow: String,
        failed_at: String,
        expires_at: String,
        record: String,
    },
    RemoveDeadLetter {
        id: ExecutionId,
    },
    Definition {
        name: String,
        version: String,
        snapshot: String,
    },
    Upgrade {
        id: ExecutionId,
        version: String,
        events: Vec<(i64, String)>,
    },
}

fn create_op(n: &NewExecution) -> Result<Op, StoreError> {
    Ok(Op::Create {
        id: n.id,
        created_at: timestamp(&n.created_at),
        started: n.start_at.is_none(),
        record: to_json(n, "execution record")?,
        keyed: n.unique_key.is_some(),
        replay_of: match n.trigger {
            Trigger::Replay { of } => Some(of),
            _ => None,
        },
    })
}

fn prepare(batch: &[Write]) -> Result<Vec<Op>, StoreError> {
    let mut ops = Vec::with_capacity(batch.len());
    for w in batch {
        ops.push(match w {
            Write::Event(e) | Write::CommandEvent { entry: e, .. } => {
                Op::Event { id: e.execution, seq: e.seq as i64, event: e.event.clone() }
            }
            Write::Create(n) => create_op(n)?,
            Write::Tick { key, fire_time, execution } => {
                Op::Tick { key: key.clone(), fire_time: *fire_time, create: Box::new(create_op(execution)?) }
            }
            // One engine owns the file: nothing is parked, and commands are
            // applied by that engine.
            Write::CommandDone { .. } | Write::Park { .. } => continue,
            Write::Started { id, .. } => Op::Started { id: *id },
            Write::Reschedule(n) => Op::Reschedule { id: n.id, record: to_json(n, "execution record")? },
            Write::Finish(state) => Op::Finish {
                id: state.id,
                workflow: state.workflow.clone(),
                started_at: timestamp(&state.started_at),
                ended_at: timestamp(&state.ended_at.unwrap_or(state.started_at)),
                state: to_json(&**state, "final state")?,
            },
            Write::DeadLetter(d) => Op::DeadLetter {
                id: d.id,
                workflow: d.workflow.clone(),
                failed_at: timestamp(&d.failed_at),
                expires_at: timestamp(&d.expires_at),
                record: to_json(&**d, "dead letter")?,
            },
            Write::RemoveDeadLetter(id) => Op::RemoveDeadLetter { id: *id },
            Write::Definition(d) => Op::Definition {
                name: d.name.clone(),
                version: d.version.clone(),
                snapshot: to_json(&**d, "definition snapshot")?,
            },
            Write::Upgrade(u) => {
                let Upgrade { id, version, events } = &**u;
                if let Some(e) = events.iter().find(|e| e.execution != *id) {
                    return Err(StoreError::Other(format!(
                        "the upgrade of {id} carries a journal entry of {}",
                        e.execution
                    )));
                }
                let events = events.iter().map(|e| (e.seq as i64, e.event.clone())).collect();
                Op::Upgrade { id: *id, version: version.clone(), events }
            }
        });
    }
    Ok(ops)
}

/// Records `fire_time` as the last tick of `key` if it is later than the one
/// recorded; returns whether it was.
fn claim_tick_in(conn: &Connection, key: &str, fire_time: DateTime<Utc>) -> rusqlite::Result<bool> {
    let stamp = timestamp(&fire_time);
    // Timestamps are stored in a fixed-width UTC format: text order is time order.
    let changed = conn.execute(
        "INSERT INTO schedule_ticks (key, fire_time) VALUES (?1, ?2)
         ON CONFLICT (key) DO UPDATE SET fire_time = excluded.fire_time WHERE schedule_ticks.fire_time < excluded.fire_time",
        [key, &stamp],
    )?;
    Ok(changed > 0)
}

/// Creates an execution, once: an id that exists already, running or ended,
/// is left as it is (a batch retried after an unknown outcome, a replay
/// started twice). A replay removes its dead letter in the same transaction.
fn create(conn: &Connection, live: &mut HashMap<ExecutionId, Live>, name: &str, op: &Op) -> Result<(), StoreError> {
    let Op::Create { id, created_at, started, record, keyed, replay_of } = op else { return Ok(()) };
    let err = |e| sql_error(name, e);
    if live.contains_key(id) {
        return Ok(());
    }
    let ended: Option<i64> = conn
        .prepare_cached("SELECT 1 FROM history WHERE id = ?1")
        .and_then(|mut s| s.query_row([id.as_uuid().as_bytes()], |r| r.get(0)).optional())
        .map_err(err)?;
    if ended.is_some() {
        return Ok(());
    }
    let key = insert_execution(conn, id, created_at, *started, record).map_err(err)?;
    live.insert(*id, Live { key, events: 0, keyed: *keyed });
    if let Some(letter) = replay_of {
        conn.prepare_cached("DELETE FROM dead_letters WHERE id = ?1")
            .and_then(|mut s| s.execute([letter.as_uuid().as_bytes()]))
            .map_err(err)?;
    }
    Ok(())
}

/// Removes a live execution's row; its journal rows become garbage.
fn retire(conn: &Connection, old: Live, garbage: &mut u64, this_pass: &mut u64) -> rusqlite::Result<()> {
    conn.prepare_cached("DELETE FROM executions WHERE key = ?1")?.execute([old.key])?;
    *garbage += old.events;
    *this_pass += old.events;
    Ok(())
}

fn sql_error(name: &str, e: rusqlite::Error) -> StoreError {
    match e.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
            StoreError::Unavailable(format!("`{name}` is locked by another connection: {e}"))
        }
        Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase) => {
            StoreError::Corrupt(format!("`{name}` is damaged: {e}"))
        }
        // What the values written cause: retrying cannot help.
        Some(
            ErrorCode::ConstraintViolation
            | ErrorCode::TooBig
            | ErrorCode::TypeMismatch
            | ErrorCode::ParameterOutOfRange,
        ) => StoreError::Rejected(format!("`{name}`: {e}")),
        _ => StoreError::Unavailable(format!("`{name}`: {e}")),
    }
}

fn to_json<T: Serialize + ?Sized>(value: &T, what: &str) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Other(format!("a {what} cannot be serialized: {e}")))
}

fn from_json<T: DeserializeOwned>(text: &str, what: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("a stored {what} cannot be read: {e}")))
}

fn id_from(bytes: &[u8]) -> Result<ExecutionId, StoreError> {
    uuid::Uuid::from_slice(bytes)
        .map(ExecutionId::from_uuid)
        .map_err(|e| StoreError::Corrupt(format!("a stored execution id is not a UUID: {e}")))
}

/// A UTC timestamp as fixed-width text, so that text order is time order.
fn timestamp(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.9fZ").to_string()
}

fn parse_timestamp(text: &str) -> Result<DateTime<Utc>, StoreError> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| StoreError::Corrupt(format!("a stored time `{text}` cannot be read: {e}")))
}

#[cfg(test)]
mod tests;
