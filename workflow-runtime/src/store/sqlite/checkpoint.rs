//! [`Checkpointer`]: the thread that copies the WAL back into the database file.

use std::path::Path;
use std::sync::mpsc;

use rusqlite::{Connection, OpenFlags};

use super::Synchronous;

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
pub(super) struct Checkpointer;

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
    pub(super) fn start(
        writer: &Connection,
        path: &Path,
        synchronous: Synchronous,
        name: &str,
    ) -> Option<mpsc::Sender<()>> {
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
