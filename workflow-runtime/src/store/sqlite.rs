//! [`SqliteStore`]: the embedded, durable default. One file, WAL, one writer thread.

mod checkpoint;
mod convert;
mod db;
mod lock;
mod ops;
mod reads;
mod requests;
mod schema;
mod writes;

use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio::sync::oneshot;

use self::convert::{timestamp, to_json};
use self::db::Db;
use self::lock::FileLock;
use self::ops::prepare;
use super::{
    DeadLetter, Durability, ExecutionQuery, Inbox, QueuedRequest, Request, Store, StoreError, StoredExecution, Write,
};
use crate::model::execution::ExecutionState;
use crate::model::{DefinitionSnapshot, ExecutionId};

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

// The tests name these as items of this module (`super::MIGRATIONS`, ...).
#[cfg(test)]
use self::schema::{APPLICATION_ID, MIGRATIONS, SCHEMA_VERSION};
#[cfg(test)]
use self::writes::GARBAGE_THRESHOLD;

#[cfg(test)]
mod tests;
