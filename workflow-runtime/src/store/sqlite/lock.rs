//! One engine per SQLite file: an operating-system lock on a file beside the
//! database (`<database>.lock`), taken when a store opens the file for writing.
//!
//! The lock is the kernel's (`flock`), so it ends when the store is dropped, when
//! the engine shuts down, or when the process dies however it dies; nothing a
//! crash leaves behind can keep a file locked. It is taken on a separate file,
//! not on the database itself: closing any descriptor of the database would drop
//! the POSIX locks SQLite holds on it in this process. The lock file holds a line
//! that describes its holder, for the error a second engine gets.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use super::StoreError;

/// A held lock on a database file; released on drop.
#[derive(Debug)]
pub(super) struct FileLock {
    _file: File,
}

impl FileLock {
    /// The lock file of the database at `db`.
    pub(super) fn path_for(db: &Path) -> PathBuf {
        let mut name = db.as_os_str().to_owned();
        name.push(".lock");
        PathBuf::from(name)
    }

    /// Takes the lock of the database at `db`, or reports who holds it.
    pub(super) fn acquire(db: &Path) -> Result<FileLock, StoreError> {
        let path = Self::path_for(db);
        let unavailable = |e: std::io::Error| StoreError::Unavailable(format!("cannot lock `{}`: {e}", path.display()));
        let mut file =
            OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path).map_err(unavailable)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                return Err(StoreError::Locked {
                    path: db.display().to_string(),
                    holder: if holder.is_empty() { "another engine".to_owned() } else { holder.to_owned() },
                });
            }
            Err(TryLockError::Error(e)) => return Err(unavailable(e)),
        }
        let mut describe = || -> std::io::Result<()> {
            file.set_len(0)?;
            file.rewind()?;
            writeln!(file, "{}", holder_line())?;
            file.sync_data()
        };
        // The description only helps the error of a second engine: the lock holds
        // without it.
        if let Err(e) = describe() {
            tracing::debug!(path = %path.display(), error = %e, "cannot describe the holder in the lock file");
        }
        Ok(FileLock { _file: file })
    }

    /// Who holds the lock of the database at `db` now, without taking it for
    /// longer than a moment: `None` if nobody does (or there is no lock file).
    pub(super) fn holder(db: &Path) -> Result<Option<String>, StoreError> {
        let path = Self::path_for(db);
        let mut file = match OpenOptions::new().read(true).open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(StoreError::Unavailable(format!("cannot read `{}`: {e}", path.display()))),
        };
        match file.try_lock_shared() {
            Ok(()) => Ok(None),
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                Ok(Some(if holder.is_empty() { "another engine".to_owned() } else { holder.to_owned() }))
            }
            Err(TryLockError::Error(e)) => {
                Err(StoreError::Unavailable(format!("cannot probe the lock `{}`: {e}", path.display())))
            }
        }
    }
}

/// `process 4242 (billing-worker) on host-1, since 2026-12-03T07:05:19Z`.
fn holder_line() -> String {
    let program = std::env::current_exe()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "unknown program".to_owned());
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "this machine".to_owned());
    let since = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    format!("process {} ({program}) on {host}, since {since}", std::process::id())
}
