//! The request queue (the `commands` table) behind the store's [`Inbox`]:
//! queueing a request, reading the queue, removing the requests carried out.
//!
//! [`Inbox`]: crate::store::Inbox

use rusqlite::{OptionalExtension, params};

use super::convert::{from_json, parse_timestamp};
use super::db::Db;
use crate::model::ExecutionId;
use crate::store::{QueuedRequest, StoreError};

impl Db {
    /// Queues a request; with `check`, only if `execution` has not ended.
    pub(super) fn send(
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

    pub(super) fn queued(&mut self, limit: usize) -> Result<Vec<QueuedRequest>, StoreError> {
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

    pub(super) fn remove_requests(&mut self, seqs: &[i64]) -> Result<(), StoreError> {
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

    pub(super) fn is_queued(&mut self, seq: i64) -> Result<bool, StoreError> {
        let found: Option<i64> = self
            .conn
            .prepare_cached("SELECT 1 FROM commands WHERE id = ?1")
            .and_then(|mut s| s.query_row([seq], |r| r.get(0)).optional())
            .map_err(self.err())?;
        Ok(found.is_some())
    }
}
