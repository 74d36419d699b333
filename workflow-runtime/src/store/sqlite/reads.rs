//! What the database thread reads: the unfinished executions with their
//! journals, ended executions, dead letters, definitions and schedule ticks.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, params};

use super::convert::{from_json, id_from, parse_timestamp, timestamp};
use super::db::Db;
use crate::model::execution::ExecutionState;
use crate::model::{DefinitionSnapshot, ExecutionId};
use crate::store::{DeadLetter, ExecutionQuery, JournalEntry, NewExecution, StoreError, StoredExecution};

impl Db {
    pub(super) fn unfinished(&mut self) -> Result<Vec<StoredExecution>, StoreError> {
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

    pub(super) fn finished(&mut self, id: ExecutionId) -> Result<Option<ExecutionState>, StoreError> {
        let state: Option<String> = self
            .conn
            .prepare_cached("SELECT state FROM history WHERE id = ?1")
            .and_then(|mut s| s.query_row([id.as_uuid().as_bytes()], |r| r.get(0)).optional())
            .map_err(self.err())?;
        state.map(|s| from_json(&s, "final state")).transpose()
    }

    pub(super) fn ended_with_key(
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

    pub(super) fn list_finished(&mut self, query: &ExecutionQuery) -> Result<Vec<ExecutionState>, StoreError> {
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

    pub(super) fn dead_letters(&mut self, workflow: Option<&str>) -> Result<Vec<DeadLetter>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT record FROM dead_letters WHERE ?1 IS NULL OR workflow = ?1 ORDER BY failed_at, id")
            .map_err(self.err())?;
        let records: Vec<String> =
            stmt.query_map([workflow], |r| r.get(0)).and_then(|r| r.collect()).map_err(self.err())?;
        records.iter().map(|s| from_json(s, "dead letter")).collect()
    }

    pub(super) fn definitions(&mut self) -> Result<Vec<DefinitionSnapshot>, StoreError> {
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

    pub(super) fn definition_version(
        &mut self,
        name: &str,
        version: &str,
    ) -> Result<Option<DefinitionSnapshot>, StoreError> {
        let snap: Option<String> = self
            .conn
            .query_row("SELECT snapshot FROM definitions WHERE name = ?1 AND version = ?2", [name, version], |r| {
                r.get(0)
            })
            .optional()
            .map_err(self.err())?;
        snap.map(|s| from_json(&s, "definition snapshot")).transpose()
    }

    pub(super) fn last_ticks(&mut self) -> Result<Vec<(String, DateTime<Utc>)>, StoreError> {
        let mut stmt =
            self.conn.prepare("SELECT key, fire_time FROM schedule_ticks ORDER BY key").map_err(self.err())?;
        let rows: Vec<(String, String)> =
            stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).and_then(|r| r.collect()).map_err(self.err())?;
        rows.into_iter().map(|(k, t)| Ok((k, parse_timestamp(&t)?))).collect()
    }
}
