//! The [`Store`] side of [`PostgresStore`]: the reads, `write` (a batch in one
//! transaction, see `apply`), and the executions read with their journals.

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio_postgres::types::ToSql;
use uuid::Uuid;

use super::{PostgresStore, from_json};
use crate::model::execution::ExecutionState;
use crate::model::{DefinitionSnapshot, ExecutionId};
use crate::store::cluster::{Cluster, SharedExecution};
use crate::store::{
    DeadLetter, Durability, ExecutionQuery, JournalEntry, NewExecution, Store, StoreError, StoredExecution, Write,
};

impl PostgresStore {
    /// Executions with their journals, read on one client: `filter` is the
    /// `WHERE` clause over `executions` with parameters `params`.
    pub(super) async fn read_executions(
        &self,
        client: &tokio_postgres::Client,
        filter: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<SharedExecution>, StoreError> {
        let err = self.err();
        let rows = client
            .query(
                &format!("SELECT id, record, started, holder FROM executions WHERE {filter} ORDER BY created_at, id"),
                params,
            )
            .await
            .map_err(&err)?;
        let mut out = Vec::with_capacity(rows.len());
        let mut ids = Vec::with_capacity(rows.len());
        for row in &rows {
            let execution: NewExecution = from_json(row.get(1), "execution record")?;
            ids.push(row.get::<_, Uuid>(0));
            out.push(SharedExecution {
                stored: StoredExecution { execution, started: row.get(2), events: Vec::new() },
                holder: row.get(3),
            });
        }
        attach_journals(client, &ids, out.iter_mut().map(|e| &mut e.stored), &err).await?;
        Ok(out)
    }
}

/// Reads the journals of `ids` into `into` (the executions in the same order).
pub(super) async fn attach_journals<'a>(
    client: &tokio_postgres::Client,
    ids: &[Uuid],
    into: impl Iterator<Item = &'a mut StoredExecution>,
    err: &impl Fn(tokio_postgres::Error) -> StoreError,
) -> Result<(), StoreError> {
    if ids.is_empty() {
        return Ok(());
    }
    let mut slots: HashMap<Uuid, &mut StoredExecution> = ids.iter().copied().zip(into).collect();
    let rows = client
        .query("SELECT execution, seq, event FROM journal WHERE execution = ANY($1) ORDER BY execution, seq", &[&ids])
        .await
        .map_err(err)?;
    for row in rows {
        let id: Uuid = row.get(0);
        if let Some(e) = slots.get_mut(&id) {
            let seq: i64 = row.get(1);
            e.events.push(JournalEntry { execution: ExecutionId::from_uuid(id), seq: seq as u64, event: row.get(2) });
        }
    }
    Ok(())
}

#[async_trait]
impl Store for PostgresStore {
    fn durability(&self) -> Durability {
        Durability::Durable
    }

    async fn write(&self, batch: &[Write]) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut client = self.writer.get().await?;
        let tx = client.transaction().await.map_err(self.err())?;
        self.apply(&tx, batch).await?;
        tx.commit().await.map_err(self.err())
    }

    async fn unfinished(&self) -> Result<Vec<StoredExecution>, StoreError> {
        let client = self.reader.get().await?;
        Ok(self.read_executions(&client, "true", &[]).await?.into_iter().map(|e| e.stored).collect())
    }

    async fn finished(&self, id: ExecutionId) -> Result<Option<ExecutionState>, StoreError> {
        let client = self.reader.get().await?;
        let row =
            client.query_opt("SELECT state FROM history WHERE id = $1", &[&id.as_uuid()]).await.map_err(self.err())?;
        row.map(|r| from_json(r.get(0), "final state")).transpose()
    }

    async fn list_finished(&self, query: &ExecutionQuery) -> Result<Vec<ExecutionState>, StoreError> {
        let client = self.reader.get().await?;
        let limit: Option<i64> = (query.limit > 0).then_some(query.limit as i64);
        let rows = client
            .query(
                "SELECT state FROM history WHERE $1::text IS NULL OR workflow = $1
                 ORDER BY started_at DESC, id DESC LIMIT $2",
                &[&query.workflow, &limit],
            )
            .await
            .map_err(self.err())?;
        rows.iter().map(|r| from_json(r.get(0), "final state")).collect()
    }

    async fn dead_letters(&self, workflow: Option<&str>) -> Result<Vec<DeadLetter>, StoreError> {
        let client = self.reader.get().await?;
        let rows = client
            .query(
                "SELECT record FROM dead_letters WHERE $1::text IS NULL OR workflow = $1 ORDER BY failed_at, id",
                &[&workflow],
            )
            .await
            .map_err(self.err())?;
        rows.iter().map(|r| from_json(r.get(0), "dead letter")).collect()
    }

    async fn purge_dead_letters(&self, now: DateTime<Utc>) -> Result<usize, StoreError> {
        let client = self.reader.get().await?;
        let n = client.execute("DELETE FROM dead_letters WHERE expires_at <= $1", &[&now]).await.map_err(self.err())?;
        Ok(n as usize)
    }

    async fn prune_finished(
        &self,
        workflow: &str,
        ended_before: DateTime<Utc>,
        limit: usize,
    ) -> Result<usize, StoreError> {
        let client = self.reader.get().await?;
        // Rows another node is deleting at the same moment are left to it.
        let n = client
            .execute(
                "DELETE FROM history WHERE id IN (
                     SELECT id FROM history WHERE workflow = $1 AND ended_at < $2
                     ORDER BY ended_at LIMIT $3 FOR UPDATE SKIP LOCKED)",
                &[&workflow, &ended_before, &(limit as i64)],
            )
            .await
            .map_err(self.err())?;
        Ok(n as usize)
    }

    async fn ended_with_key(
        &self,
        workflow: &str,
        key: &str,
        since: DateTime<Utc>,
    ) -> Result<Option<ExecutionId>, StoreError> {
        let client = self.reader.get().await?;
        let row = client
            .query_opt(
                "SELECT id FROM history WHERE workflow = $1 AND unique_key = $2 AND ended_at >= $3
                 ORDER BY ended_at DESC LIMIT 1",
                &[&workflow, &key, &since],
            )
            .await
            .map_err(self.err())?;
        Ok(row.map(|r| ExecutionId::from_uuid(r.get(0))))
    }

    async fn definitions(&self) -> Result<Vec<DefinitionSnapshot>, StoreError> {
        let client = self.reader.get().await?;
        let rows = client
            .query("SELECT DISTINCT ON (name) snapshot FROM definitions ORDER BY name, registered DESC", &[])
            .await
            .map_err(self.err())?;
        rows.iter().map(|r| from_json(r.get(0), "definition snapshot")).collect()
    }

    async fn definition_version(&self, name: &str, version: &str) -> Result<Option<DefinitionSnapshot>, StoreError> {
        let client = self.reader.get().await?;
        let row = client
            .query_opt("SELECT snapshot FROM definitions WHERE name = $1 AND version = $2", &[&name, &version])
            .await
            .map_err(self.err())?;
        row.map(|r| from_json(r.get(0), "definition snapshot")).transpose()
    }

    async fn claim_tick(&self, key: &str, fire_time: DateTime<Utc>) -> Result<bool, StoreError> {
        let client = self.reader.get().await?;
        let row = client
            .query_opt(
                "INSERT INTO schedule_ticks (key, fire_time) VALUES ($1, $2)
                 ON CONFLICT (key) DO UPDATE SET fire_time = excluded.fire_time
                 WHERE schedule_ticks.fire_time < excluded.fire_time
                 RETURNING key",
                &[&key, &fire_time],
            )
            .await
            .map_err(self.err())?;
        Ok(row.is_some())
    }

    async fn last_ticks(&self) -> Result<Vec<(String, DateTime<Utc>)>, StoreError> {
        let client = self.reader.get().await?;
        let rows =
            client.query("SELECT key, fire_time FROM schedule_ticks ORDER BY key", &[]).await.map_err(self.err())?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    fn cluster(&self) -> Option<&dyn Cluster> {
        Some(self)
    }
}
