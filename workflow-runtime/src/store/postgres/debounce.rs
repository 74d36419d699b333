//! Debounced starts shared by every node.
//!
//! A debounced start runs in one transaction under an advisory lock on its
//! workflow and key, so starts with one key are serialized: the delayed execution
//! waiting under the key, if it is neither due nor claimed, takes the new input
//! and start time; otherwise the start creates one. A claim locks the rows it
//! takes, so an execution is rescheduled before it is claimed or not at all.

use uuid::Uuid;

use super::{PostgresStore, from_json, to_json};
use crate::model::ExecutionId;
use crate::store::{NewExecution, StoreError};

impl PostgresStore {
    pub(super) async fn debounce_start(&self, new: &NewExecution) -> Result<ExecutionId, StoreError> {
        let key = new
            .debounce_key
            .as_deref()
            .ok_or_else(|| StoreError::Rejected(format!("execution {} has no debounce key", new.id)))?;
        let start_at = new
            .start_at
            .ok_or_else(|| StoreError::Rejected(format!("debounced execution {} has no start time", new.id)))?;
        let err = self.err();
        let mut client = self.control.get().await?;
        let tx = client.transaction().await.map_err(&err)?;
        tx.execute(
            "SELECT pg_advisory_xact_lock(hashtext('debounce'), hashtext($1 || '/' || $2))",
            &[&new.workflow, &key],
        )
        .await
        .map_err(&err)?;
        let waiting = tx
            .query_opt(
                "SELECT id, record FROM executions
                 WHERE workflow = $1 AND debounce_key = $2 AND holder IS NULL AND NOT started
                   AND start_at > clock_timestamp()
                 FOR UPDATE",
                &[&new.workflow, &key],
            )
            .await
            .map_err(&err)?;
        let id = match waiting {
            Some(row) => {
                let id: Uuid = row.get(0);
                let mut record: NewExecution = from_json(row.get(1), "execution record")?;
                record.input = new.input.clone();
                record.start_at = new.start_at;
                record.trigger = new.trigger.clone();
                record.priority = new.priority;
                tx.execute(
                    "UPDATE executions SET record = $2, start_at = $3, priority = $4 WHERE id = $1",
                    &[&id, &to_json(&record, "execution record")?, &start_at, &new.priority],
                )
                .await
                .map_err(&err)?;
                ExecutionId::from_uuid(id)
            }
            None => {
                tx.execute(
                    "INSERT INTO executions (id, workflow, created_at, start_at, started, record, holder, priority,
                                             debounce_key)
                     VALUES ($1, $2, $3, $4, false, $5, NULL, $6, $7)",
                    &[
                        &new.id.as_uuid(),
                        &new.workflow,
                        &new.created_at,
                        &start_at,
                        &to_json(new, "execution record")?,
                        &new.priority,
                        &key,
                    ],
                )
                .await
                .map_err(&err)?;
                new.id
            }
        };
        tx.commit().await.map_err(&err)?;
        Ok(id)
    }
}
