//! The [`Cluster`] side of [`PostgresStore`]: node leases, claims and releases,
//! commands, and the shared reads of executions.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio::sync::watch;
use uuid::Uuid;

use super::reads::attach_journals;
use super::{PostgresStore, from_json, to_json};
use crate::model::ExecutionId;
use crate::store::cluster::{CallOutcome, Claimed, Cluster, ControlCall, NodeId, QueuedCall, SharedExecution};
use crate::store::{NewExecution, StoreError, StoredExecution};

#[async_trait]
impl Cluster for PostgresStore {
    fn node(&self) -> NodeId {
        *self.node.read()
    }

    async fn heartbeat(&self, lease: Duration) -> Result<(), StoreError> {
        let client = self.reader.get().await?;
        let secs = lease.as_secs_f64();
        // Only a live lease is renewed: a node whose lease expired may have had its
        // executions taken over, and must learn it rather than carry on.
        let renewed = client
            .execute(
                "UPDATE nodes SET expires_at = clock_timestamp() + make_interval(secs => $2)
                 WHERE id = $1 AND expires_at > clock_timestamp()",
                &[&self.node(), &secs],
            )
            .await
            .map_err(self.err())?;
        if renewed == 0 {
            return Err(StoreError::Lapsed(self.node()));
        }
        Ok(())
    }

    async fn rejoin(&self, lease: Duration) -> Result<NodeId, StoreError> {
        let fresh = Uuid::now_v7();
        let client = self.reader.get().await?;
        client
            .execute(
                "INSERT INTO nodes (id, started_at, expires_at)
                 VALUES ($1, now(), clock_timestamp() + make_interval(secs => $2))",
                &[&fresh, &lease.as_secs_f64()],
            )
            .await
            .map_err(self.err())?;
        *self.node.write() = fresh;
        Ok(fresh)
    }

    async fn reap(&self) -> Result<usize, StoreError> {
        let mut client = self.control.get().await?;
        let tx = client.transaction().await.map_err(self.err())?;
        // Only a node whose own lease lives reaps: after an outage every lease has
        // expired, and a node that lapsed itself must not release the others.
        let alive = tx
            .query_opt(
                "SELECT 1 FROM nodes WHERE id = $1 AND expires_at > clock_timestamp() FOR SHARE",
                &[&self.node()],
            )
            .await
            .map_err(self.err())?;
        if alive.is_none() {
            return Ok(0);
        }
        let dead: Vec<Uuid> = tx
            .query("DELETE FROM nodes WHERE expires_at < clock_timestamp() RETURNING id", &[])
            .await
            .map_err(self.err())?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let mut released = 0;
        if !dead.is_empty() {
            released = tx
                .execute("UPDATE executions SET holder = NULL WHERE holder = ANY($1)", &[&dead])
                .await
                .map_err(self.err())? as usize;
            if released > 0 {
                self.notify(&tx).await?;
            }
            // Their slots count for nothing now.
            self.announce_any_freed(&tx).await?;
            tracing::warn!(nodes = ?dead, released, "nodes stopped renewing their leases; their executions are released");
        }
        // Outcomes that no sender came back for.
        tx.execute("DELETE FROM commands WHERE state <> 'queued' AND queued_at < now() - interval '1 hour'", &[])
            .await
            .map_err(self.err())?;
        tx.commit().await.map_err(self.err())?;
        Ok(released)
    }

    async fn claim(&self, workflows: &[String], limit: usize) -> Result<Vec<Claimed>, StoreError> {
        if workflows.is_empty() || limit == 0 {
            return Ok(Vec::new());
        }
        let node = self.node();
        let mut client = self.control.get().await?;
        let tx = client.transaction().await.map_err(self.err())?;
        // A node claims only while its own lease lives; the lock keeps the reaper
        // from deleting it until the claim is committed.
        let alive = tx
            .query_opt("SELECT 1 FROM nodes WHERE id = $1 AND expires_at > clock_timestamp() FOR SHARE", &[&node])
            .await
            .map_err(self.err())?;
        if alive.is_none() {
            return Ok(Vec::new());
        }
        // Claimable: unheld executions that have started (or whose start time
        // passed) and are not parked, or parked but due; and any with a command
        // waiting.
        let rows = tx
            .query(
                "WITH picked AS (
                     SELECT id FROM executions e
                     WHERE holder IS NULL AND workflow = ANY($2)
                       AND (((started OR start_at <= clock_timestamp()) AND (NOT parked OR wake_at <= clock_timestamp()))
                            OR EXISTS (SELECT 1 FROM commands c WHERE c.execution = e.id AND c.state = 'queued'))
                     ORDER BY priority DESC, created_at, id
                     LIMIT $3
                     FOR UPDATE SKIP LOCKED)
                 UPDATE executions e SET holder = $1, claims = e.claims + 1, parked = false, wake_at = NULL
                 FROM picked WHERE e.id = picked.id
                 RETURNING e.id, e.record, e.started, e.created_at, e.claims",
                &[&node, &workflows, &(limit as i64)],
            )
            .await
            .map_err(self.err())?;
        let mut claimed: Vec<((std::cmp::Reverse<i32>, DateTime<Utc>), Uuid, Claimed)> = Vec::with_capacity(rows.len());
        for row in &rows {
            let execution: NewExecution = from_json(row.get(1), "execution record")?;
            let order = (std::cmp::Reverse(execution.priority), row.get(3));
            let stored = StoredExecution { execution, started: row.get(2), events: Vec::new() };
            claimed.push((order, row.get(0), Claimed { stored, fresh: row.get::<_, i32>(4) == 1 }));
        }
        claimed.sort_by_key(|c| (c.0, c.1));
        let ids: Vec<Uuid> = claimed.iter().map(|c| c.1).collect();
        attach_journals(tx.client(), &ids, claimed.iter_mut().map(|c| &mut c.2.stored), &self.err()).await?;
        tx.commit().await.map_err(self.err())?;
        Ok(claimed.into_iter().map(|c| c.2).collect())
    }

    async fn release(&self, ids: &[ExecutionId]) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        let ids: Vec<Uuid> = ids.iter().map(ExecutionId::as_uuid).collect();
        let mut client = self.control.get().await?;
        let tx = client.transaction().await.map_err(self.err())?;
        tx.execute("UPDATE executions SET holder = NULL WHERE id = ANY($1) AND holder = $2", &[&ids, &self.node()])
            .await
            .map_err(self.err())?;
        self.notify(&tx).await?;
        tx.commit().await.map_err(self.err())
    }

    async fn leave(&self) -> Result<(), StoreError> {
        let node = self.node();
        let mut client = self.control.get().await?;
        let tx = client.transaction().await.map_err(self.err())?;
        let released =
            tx.execute("UPDATE executions SET holder = NULL WHERE holder = $1", &[&node]).await.map_err(self.err())?;
        tx.execute("DELETE FROM nodes WHERE id = $1", &[&node]).await.map_err(self.err())?;
        if released > 0 {
            self.notify(&tx).await?;
        }
        tx.commit().await.map_err(self.err())
    }

    async fn send(&self, id: ExecutionId, command: &ControlCall) -> Result<i64, StoreError> {
        let text = to_json(command, "command")?;
        let mut client = self.control.get().await?;
        let tx = client.transaction().await.map_err(self.err())?;
        let row = tx
            .query_opt(
                "INSERT INTO commands (execution, command)
                 SELECT $1, $2 WHERE EXISTS (SELECT 1 FROM executions WHERE id = $1)
                 RETURNING id",
                &[&id.as_uuid(), &text],
            )
            .await
            .map_err(self.err())?;
        let Some(row) = row else { return Err(StoreError::UnknownExecution(id)) };
        self.notify(&tx).await?;
        tx.commit().await.map_err(self.err())?;
        Ok(row.get(0))
    }

    async fn command_outcome(&self, seq: i64) -> Result<CallOutcome, StoreError> {
        let client = self.reader.get().await?;
        let row =
            client.query_opt("SELECT state, error FROM commands WHERE id = $1", &[&seq]).await.map_err(self.err())?;
        Ok(match row {
            None => CallOutcome::Gone,
            Some(row) => match row.get::<_, &str>(0) {
                "queued" => CallOutcome::Queued,
                "applied" => CallOutcome::Applied,
                _ => CallOutcome::Rejected(row.get::<_, Option<String>>(1).unwrap_or_default()),
            },
        })
    }

    async fn forget_command(&self, seq: i64) -> Result<(), StoreError> {
        let client = self.reader.get().await?;
        client.execute("DELETE FROM commands WHERE id = $1", &[&seq]).await.map_err(self.err())?;
        Ok(())
    }

    async fn pending_commands(&self) -> Result<Vec<QueuedCall>, StoreError> {
        let client = self.reader.get().await?;
        let rows = client
            .query(
                "SELECT c.id, c.execution, c.command FROM commands c JOIN executions e ON e.id = c.execution
                 WHERE e.holder = $1 AND c.state = 'queued' ORDER BY c.id",
                &[&self.node()],
            )
            .await
            .map_err(self.err())?;
        rows.iter()
            .map(|row| {
                Ok(QueuedCall {
                    seq: row.get(0),
                    execution: ExecutionId::from_uuid(row.get(1)),
                    command: from_json(row.get(2), "command")?,
                })
            })
            .collect()
    }

    async fn load(&self, id: ExecutionId) -> Result<Option<SharedExecution>, StoreError> {
        let client = self.reader.get().await?;
        Ok(self.read_executions(&client, "id = $1", &[&id.as_uuid()]).await?.pop())
    }

    async fn is_unfinished(&self, id: ExecutionId) -> Result<bool, StoreError> {
        let client = self.reader.get().await?;
        let row =
            client.query_opt("SELECT 1 FROM executions WHERE id = $1", &[&id.as_uuid()]).await.map_err(self.err())?;
        Ok(row.is_some())
    }

    async fn queue_for_slot(&self, scope: &str, key: &str, priority: i32) -> Result<i64, StoreError> {
        self.queue_slot(scope, key, priority).await
    }

    async fn take_slot(&self, ticket: i64, scope: &str, key: &str, limit: u32) -> Result<bool, StoreError> {
        Ok(self.try_slot(ticket, scope, key, limit).await? == 0)
    }

    async fn take_slot_behind(&self, ticket: i64, scope: &str, key: &str, limit: u32) -> Result<u32, StoreError> {
        self.try_slot(ticket, scope, key, limit).await
    }

    async fn free_slot(&self, ticket: i64) -> Result<(), StoreError> {
        self.drop_slot(ticket).await
    }

    fn slots_freed(&self, scope: &str, key: &str) -> Option<watch::Receiver<u64>> {
        self.freed_count(scope, key)
    }

    async fn reserve_start(&self, scope: &str, key: &str, count: u32, per: Duration) -> Result<Duration, StoreError> {
        self.reserve(scope, key, count, per).await
    }

    async fn live_with_key(&self, workflow: &str, key: &str) -> Result<Option<ExecutionId>, StoreError> {
        let client = self.reader.get().await?;
        let row = client
            .query_opt("SELECT id FROM executions WHERE workflow = $1 AND unique_key = $2", &[&workflow, &key])
            .await
            .map_err(self.err())?;
        Ok(row.map(|r| ExecutionId::from_uuid(r.get(0))))
    }

    async fn debounce(&self, new: &NewExecution) -> Result<ExecutionId, StoreError> {
        self.debounce_start(new).await
    }

    async fn unfinished_of(&self, workflow: &str) -> Result<Vec<SharedExecution>, StoreError> {
        let client = self.reader.get().await?;
        self.read_executions(&client, "workflow = $1", &[&workflow]).await
    }

    async fn notified(&self) {
        self.wakeups.notify.notified().await;
    }
}
