//! What the database thread writes: a batch of ops in one transaction, the
//! journal's garbage collected on the way, and the writes outside batches
//! (purging dead letters, pruning ended executions, claiming a schedule tick).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};

use super::convert::{from_json, sql_error, timestamp, to_json};
use super::db::{Db, Live};
use super::ops::Op;
use crate::model::ExecutionId;
use crate::store::{NewExecution, StoreError};

/// Journal rows that may be garbage before the writer starts deleting them.
pub(super) const GARBAGE_THRESHOLD: u64 = 4096;

/// Journal rows (by id) examined per batch while collecting garbage.
const GARBAGE_WINDOW: i64 = 8192;

impl Db {
    pub(super) fn write(&mut self, ops: &[Op]) -> Result<(), StoreError> {
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

    pub(super) fn purge_dead_letters(&mut self, now: DateTime<Utc>) -> Result<usize, StoreError> {
        self.conn.execute("DELETE FROM dead_letters WHERE expires_at <= ?1", [timestamp(&now)]).map_err(self.err())
    }

    pub(super) fn prune_finished(
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

    pub(super) fn claim_tick(&mut self, key: &str, fire_time: DateTime<Utc>) -> Result<bool, StoreError> {
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
