//! [`PostgresStore`]: one PostgreSQL database shared by any number of engines.

mod conn;
mod debounce;
mod limits;
mod schema;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio_postgres::Transaction;
use tokio_postgres::types::ToSql;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use self::conn::{Shared, Slot, Target, Wakeups, listen};
use super::cluster::{Claimed, Cluster, Command, CommandOutcome, NodeId, QueuedCommand, SharedExecution};
use super::{
    DeadLetter, Durability, ExecutionQuery, JournalEntry, NewExecution, Store, StoreError, StoredExecution, Upgrade,
    Write,
};
use crate::model::execution::ExecutionState;
use crate::model::{DefinitionSnapshot, ExecutionId};

/// A store in a PostgreSQL database, shared by every engine that opens it.
///
/// Open it with `Engine::builder().store_url("postgres://user:password@host:5432/db")`.
/// The tables live in their own schema, `sagaflow` unless the URL names another
/// with `?schema=name`; they are created, and migrated to this build's version, on
/// start, under an advisory lock, so that several nodes may start at once. Other
/// URL parameters are those of PostgreSQL's connection URIs (`connect_timeout`,
/// `application_name`, ...); connections are not encrypted (TLS is not built in).
///
/// Every engine on the store is a node of one cluster (see [`Cluster`]): executions
/// are claimed by whichever node is free (`FOR UPDATE SKIP LOCKED`), held under a
/// lease that heartbeats renew, and taken over by other nodes when a node dies.
/// `LISTEN`/`NOTIFY` on the channel `sagaflow_{schema}` wakes idle nodes as soon as
/// there is work; polling is the fallback. Schedules fire once per tick across the
/// cluster. When the database goes away, every operation fails with
/// [`StoreError::Unavailable`] and the engine retries with backoff; transactions
/// keep the tables consistent, and connections reopen when it is back.
///
/// Journal writes arrive in batches (group commit) and each batch is one
/// transaction of a few statements whatever its size: rows go in as arrays
/// (`UNNEST`), and finished executions leave the hot tables for `history`.
pub struct PostgresStore {
    target: Arc<Target>,
    /// This node's identity; a new one after its lease lapsed (see `rejoin`).
    node: parking_lot::RwLock<NodeId>,
    writer: Slot,
    control: Slot,
    reader: Shared,
    wakeups: Arc<Wakeups>,
    stop: CancellationToken,
}

impl fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresStore")
            .field("url", &self.target.display)
            .field("schema", &self.target.schema)
            .field("node", &*self.node.read())
            .finish_non_exhaustive()
    }
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl PostgresStore {
    /// Connects, creates or migrates the schema, and starts listening for
    /// notifications.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let target = Arc::new(Target::parse(url)?);
        let store = PostgresStore {
            node: parking_lot::RwLock::new(Uuid::now_v7()),
            writer: Slot::new(Arc::clone(&target)),
            control: Slot::new(Arc::clone(&target)),
            reader: Shared::new(Arc::clone(&target)),
            wakeups: Arc::new(Wakeups::default()),
            stop: CancellationToken::new(),
            target,
        };
        {
            let mut client = store.control.get().await?;
            schema::migrate(&mut client, &store.target).await?;
        }
        tokio::spawn(listen(Arc::clone(&store.target), Arc::clone(&store.wakeups), store.stop.clone()));
        Ok(store)
    }

    /// The schema that holds the tables.
    pub fn schema(&self) -> &str {
        &self.target.schema
    }

    fn err(&self) -> impl Fn(tokio_postgres::Error) -> StoreError + '_ {
        |e| self.target.error(&e)
    }

    async fn notify(&self, tx: &Transaction<'_>) -> Result<(), StoreError> {
        tx.execute("SELECT pg_notify($1, '')", &[&self.target.channel()]).await.map_err(self.err())?;
        Ok(())
    }

    async fn apply(&self, tx: &Transaction<'_>, batch: &[Write]) -> Result<(), StoreError> {
        let err = self.err();
        let node = self.node();
        let created: HashSet<ExecutionId> = batch
            .iter()
            .filter_map(|w| match w {
                Write::Create(n) => Some(n.id),
                Write::Tick { execution, .. } => Some(execution.id),
                _ => None,
            })
            .collect();
        // The statements below go by kind of write, not in batch order: a write
        // that would depend on the order (one after its execution's end) is refused.
        let mut ended = HashSet::new();
        for w in batch {
            match w {
                Write::Create(n) => {
                    ended.remove(&n.id);
                }
                Write::Finish(s) => {
                    ended.insert(s.id);
                }
                Write::Event(JournalEntry { execution: id, .. })
                | Write::CommandEvent { entry: JournalEntry { execution: id, .. }, .. }
                | Write::Started { id, .. }
                | Write::Park { id, .. }
                    if ended.contains(id) =>
                {
                    return Err(StoreError::UnknownExecution(*id));
                }
                Write::Upgrade(u) if ended.contains(&u.id) => return Err(StoreError::UnknownExecution(u.id)),
                _ => {}
            }
        }

        // Fencing: every execution this batch writes to must exist and be held by
        // this node (not by another, not by nobody: a node whose lease lapsed had
        // its executions released); the rows stay locked until the commit.
        let mut touched: Vec<Uuid> = batch
            .iter()
            .filter_map(Write::execution)
            .filter(|id| !created.contains(id))
            .map(|id| id.as_uuid())
            .collect();
        touched.sort_unstable();
        touched.dedup();
        let mut present: HashMap<Uuid, Option<Uuid>> = HashMap::with_capacity(touched.len());
        if !touched.is_empty() {
            let rows = tx
                .query("SELECT id, holder FROM executions WHERE id = ANY($1) ORDER BY id FOR SHARE", &[&touched])
                .await
                .map_err(&err)?;
            for row in rows {
                present.insert(row.get(0), row.get(1));
            }
        }
        let mut not_held = Vec::new();
        for (&id, holder) in &present {
            if *holder != Some(node) {
                not_held.push(ExecutionId::from_uuid(id));
            }
        }
        if !not_held.is_empty() {
            not_held.sort_by_key(ExecutionId::as_uuid);
            return Err(StoreError::NotHeld(not_held));
        }
        for w in batch {
            let id = match w {
                Write::Event(e) | Write::CommandEvent { entry: e, .. } => e.execution,
                Write::Upgrade(u) => u.id,
                Write::Park { id, .. } => *id,
                _ => continue,
            };
            if !created.contains(&id) && !present.contains_key(&id.as_uuid()) {
                return Err(StoreError::UnknownExecution(id));
            }
        }

        // Schedule ticks: each creates its execution only if it wins the tick.
        let mut won: HashSet<ExecutionId> = HashSet::new();
        for w in batch {
            if let Write::Tick { key, fire_time, execution } = w {
                let row = tx
                    .query_opt(
                        "INSERT INTO schedule_ticks (key, fire_time) VALUES ($1, $2)
                         ON CONFLICT (key) DO UPDATE SET fire_time = excluded.fire_time
                         WHERE schedule_ticks.fire_time < excluded.fire_time
                         RETURNING key",
                        &[key, fire_time],
                    )
                    .await
                    .map_err(&err)?;
                if row.is_some() {
                    won.insert(execution.id);
                }
            }
        }

        // New executions, unheld: any node may claim them. Ids are never reused,
        // so one that exists already was written by an earlier try of this batch
        // (whose commit's outcome was unknown) and may be held by now: keep it.
        let creates: Vec<&NewExecution> = batch
            .iter()
            .filter_map(|w| match w {
                Write::Create(n) => Some(&**n),
                Write::Tick { execution, .. } if won.contains(&execution.id) => Some(&**execution),
                _ => None,
            })
            .collect();
        if !creates.is_empty() {
            let mut ids = Vec::with_capacity(creates.len());
            let mut workflows = Vec::with_capacity(creates.len());
            let mut created_at = Vec::with_capacity(creates.len());
            let mut start_at: Vec<Option<DateTime<Utc>>> = Vec::with_capacity(creates.len());
            let mut records = Vec::with_capacity(creates.len());
            let mut keys: Vec<Option<&str>> = Vec::with_capacity(creates.len());
            let mut priorities: Vec<i32> = Vec::with_capacity(creates.len());
            let mut seen = HashSet::new();
            for n in &creates {
                if seen.insert(n.id) {
                    ids.push(n.id.as_uuid());
                    workflows.push(n.workflow.as_str());
                    created_at.push(n.created_at);
                    start_at.push(n.start_at);
                    records.push(to_json(n, "execution record")?);
                    keys.push(n.unique_key.as_deref());
                    priorities.push(n.priority);
                }
            }
            // An id that ended already is not created again either (a replay
            // started twice), nor one whose unique key a live execution of its
            // workflow holds (`ON CONFLICT` covers both unique indexes).
            tx.execute(
                "INSERT INTO executions (id, workflow, created_at, start_at, started, record, holder, unique_key, priority)
                 SELECT id, workflow, created_at, start_at, start_at IS NULL, record, NULL, unique_key, priority
                 FROM UNNEST($1::uuid[], $2::text[], $3::timestamptz[], $4::timestamptz[], $5::text[], $6::text[],
                             $7::integer[])
                      AS t (id, workflow, created_at, start_at, record, unique_key, priority)
                 WHERE NOT EXISTS (SELECT 1 FROM history h WHERE h.id = t.id)
                 ON CONFLICT DO NOTHING",
                &[&ids, &workflows, &created_at, &start_at, &records, &keys, &priorities],
            )
            .await
            .map_err(&err)?;
            // A replay removes its dead letter in the same transaction.
            let replayed: Vec<Uuid> = creates
                .iter()
                .filter_map(|n| match n.trigger {
                    crate::model::execution::Trigger::Replay { of } => Some(of.as_uuid()),
                    _ => None,
                })
                .collect();
            if !replayed.is_empty() {
                tx.execute("DELETE FROM dead_letters WHERE id = ANY($1)", &[&replayed]).await.map_err(&err)?;
            }
        }

        let started: Vec<Uuid> = batch
            .iter()
            .filter_map(|w| if let Write::Started { id, .. } = w { Some(id.as_uuid()) } else { None })
            .collect();
        if !started.is_empty() {
            tx.execute("UPDATE executions SET started = true WHERE id = ANY($1)", &[&started]).await.map_err(&err)?;
        }

        for w in batch {
            if let Write::Upgrade(u) = w {
                self.upgrade(tx, u).await?;
            }
        }

        let mut ev_ids = Vec::new();
        let mut ev_seqs = Vec::new();
        let mut ev_events = Vec::new();
        let mut applied: Vec<i64> = Vec::new();
        for w in batch {
            let (Write::Event(e) | Write::CommandEvent { entry: e, .. }) = w else { continue };
            ev_ids.push(e.execution.as_uuid());
            ev_seqs.push(e.seq as i64);
            ev_events.push(e.event.as_str());
            if let Write::CommandEvent { command, .. } = w {
                applied.push(*command);
            }
        }
        if !ev_ids.is_empty() {
            // A batch is retried when its commit's outcome is unknown (the connection
            // broke): entries it already wrote are skipped. An entry that exists
            // with other content means another driver wrote this execution's
            // journal: this node does not hold it (the batch is rolled back).
            let clashes = tx
                .query(
                    "WITH new AS (SELECT * FROM UNNEST($1::uuid[], $2::int8[], $3::text[]) AS t (execution, seq, event)),
                          ins AS (INSERT INTO journal (execution, seq, event) SELECT * FROM new
                                  ON CONFLICT (execution, seq) DO NOTHING)
                     SELECT DISTINCT new.execution FROM new
                     JOIN journal j ON j.execution = new.execution AND j.seq = new.seq AND j.event <> new.event",
                    &[&ev_ids, &ev_seqs, &ev_events],
                )
                .await
                .map_err(&err)?;
            if !clashes.is_empty() {
                let mut ids: Vec<ExecutionId> = clashes.iter().map(|r| ExecutionId::from_uuid(r.get(0))).collect();
                ids.sort_by_key(ExecutionId::as_uuid);
                tracing::warn!(executions = ids.len(), "journal entries clash with another driver's: not held here");
                return Err(StoreError::NotHeld(ids));
            }
        }

        // Queued commands: what they did is in this transaction.
        if !applied.is_empty() {
            tx.execute("UPDATE commands SET state = 'applied' WHERE id = ANY($1) AND state = 'queued'", &[&applied])
                .await
                .map_err(&err)?;
        }
        for w in batch {
            if let Write::CommandDone { command, error } = w {
                let state = if error.is_some() { "rejected" } else { "applied" };
                tx.execute(
                    "UPDATE commands SET state = $2, error = $3 WHERE id = $1 AND state = 'queued'",
                    &[command, &state, error],
                )
                .await
                .map_err(&err)?;
            }
        }

        // Final states: into history, out of the hot tables. A final state for an
        // execution that is no longer there never replaces one already recorded.
        let mut fin: Vec<(&ExecutionState, String, bool)> = Vec::new();
        let mut seen = HashSet::new();
        for w in batch.iter().rev() {
            if let Write::Finish(s) = w
                && seen.insert(s.id)
            {
                let live = created.contains(&s.id) || present.contains_key(&s.id.as_uuid());
                fin.push((&**s, to_json(&**s, "final state")?, live));
            }
        }
        for replace in [true, false] {
            let part: Vec<_> = fin.iter().filter(|f| f.2 == replace).collect();
            if part.is_empty() {
                continue;
            }
            let ids: Vec<Uuid> = part.iter().map(|f| f.0.id.as_uuid()).collect();
            let workflows: Vec<&str> = part.iter().map(|f| f.0.workflow.as_str()).collect();
            let started_at: Vec<DateTime<Utc>> = part.iter().map(|f| f.0.started_at).collect();
            let ended_at: Vec<DateTime<Utc>> = part.iter().map(|f| f.0.ended_at.unwrap_or(f.0.started_at)).collect();
            let states: Vec<&str> = part.iter().map(|f| f.1.as_str()).collect();
            let conflict = if replace {
                "DO UPDATE SET workflow = excluded.workflow, started_at = excluded.started_at,
                    ended_at = excluded.ended_at, state = excluded.state"
            } else {
                "DO NOTHING"
            };
            let sql = format!(
                "INSERT INTO history (id, workflow, started_at, ended_at, state)
                 SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::timestamptz[], $4::timestamptz[], $5::text[])
                 ON CONFLICT (id) {conflict}"
            );
            tx.execute(&sql, &[&ids, &workflows, &started_at, &ended_at, &states]).await.map_err(&err)?;
            if replace {
                // Their unique keys stay with them, for starts that keep a key
                // held after its execution ended.
                tx.execute(
                    "WITH gone AS (DELETE FROM executions WHERE id = ANY($1) RETURNING id, unique_key)
                     UPDATE history h SET unique_key = gone.unique_key
                     FROM gone WHERE h.id = gone.id AND gone.unique_key IS NOT NULL",
                    &[&ids],
                )
                .await
                .map_err(&err)?;
                tx.execute("DELETE FROM journal WHERE execution = ANY($1)", &[&ids]).await.map_err(&err)?;
                // Commands still queued will never apply; their senders read why.
                tx.execute(
                    "UPDATE commands SET state = 'rejected', error = 'the execution has ended'
                     WHERE execution = ANY($1) AND state = 'queued'",
                    &[&ids],
                )
                .await
                .map_err(&err)?;
            }
        }

        let mut parked = false;
        for w in batch {
            match w {
                Write::Park { id, wake_at } => {
                    parked = true;
                    tx.execute(
                        "UPDATE executions SET holder = NULL, parked = true, wake_at = $3 WHERE id = $1 AND holder = $2",
                        &[&id.as_uuid(), &node, wake_at],
                    )
                    .await
                    .map_err(&err)?;
                }
                Write::DeadLetter(d) => {
                    tx.execute(
                        "INSERT INTO dead_letters (id, workflow, failed_at, expires_at, record)
                         VALUES ($1, $2, $3, $4, $5)
                         ON CONFLICT (id) DO UPDATE SET workflow = excluded.workflow, failed_at = excluded.failed_at,
                             expires_at = excluded.expires_at, record = excluded.record",
                        &[&d.id.as_uuid(), &d.workflow, &d.failed_at, &d.expires_at, &to_json(&**d, "dead letter")?],
                    )
                    .await
                    .map_err(&err)?;
                }
                Write::Reschedule(n) => {
                    tx.execute(
                        "UPDATE executions SET record = $2, start_at = $3, priority = $4
                         WHERE id = $1 AND NOT started",
                        &[&n.id.as_uuid(), &to_json(&**n, "execution record")?, &n.start_at, &n.priority],
                    )
                    .await
                    .map_err(&err)?;
                }
                Write::RemoveDeadLetter(id) => {
                    tx.execute("DELETE FROM dead_letters WHERE id = $1", &[&id.as_uuid()]).await.map_err(&err)?;
                }
                Write::Definition(d) => {
                    tx.execute(
                        "INSERT INTO definitions (name, version, registered, snapshot)
                         VALUES ($1, $2, nextval('definition_registrations'), $3)
                         ON CONFLICT (name, version) DO UPDATE
                         SET registered = excluded.registered, snapshot = excluded.snapshot",
                        &[&d.name, &d.version, &to_json(&**d, "definition snapshot")?],
                    )
                    .await
                    .map_err(&err)?;
                }
                _ => {}
            }
        }
        let answered = !applied.is_empty() || batch.iter().any(|w| matches!(w, Write::CommandDone { .. }));
        if !creates.is_empty() || parked || answered {
            self.notify(tx).await?;
        }
        Ok(())
    }

    async fn upgrade(&self, tx: &Transaction<'_>, u: &Upgrade) -> Result<(), StoreError> {
        let err = self.err();
        let Upgrade { id, version, events } = u;
        if let Some(e) = events.iter().find(|e| e.execution != *id) {
            return Err(StoreError::Other(format!("the upgrade of {id} carries a journal entry of {}", e.execution)));
        }
        let row = tx
            .query_opt("SELECT record FROM executions WHERE id = $1", &[&id.as_uuid()])
            .await
            .map_err(&err)?
            .ok_or(StoreError::UnknownExecution(*id))?;
        let mut n: NewExecution = from_json(row.get(0), "execution record")?;
        n.version.clone_from(version);
        tx.execute(
            "UPDATE executions SET record = $2 WHERE id = $1",
            &[&id.as_uuid(), &to_json(&n, "execution record")?],
        )
        .await
        .map_err(&err)?;
        tx.execute("DELETE FROM journal WHERE execution = $1", &[&id.as_uuid()]).await.map_err(&err)?;
        let ids: Vec<Uuid> = events.iter().map(|e| e.execution.as_uuid()).collect();
        let seqs: Vec<i64> = events.iter().map(|e| e.seq as i64).collect();
        let texts: Vec<&str> = events.iter().map(|e| e.event.as_str()).collect();
        tx.execute(
            "INSERT INTO journal (execution, seq, event) SELECT * FROM UNNEST($1::uuid[], $2::int8[], $3::text[])
             ON CONFLICT (execution, seq) DO NOTHING",
            &[&ids, &seqs, &texts],
        )
        .await
        .map_err(&err)?;
        Ok(())
    }

    /// Executions with their journals, read on one client: `filter` is the
    /// `WHERE` clause over `executions` with parameters `params`.
    async fn read_executions(
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
async fn attach_journals<'a>(
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

    async fn send(&self, id: ExecutionId, command: &Command) -> Result<i64, StoreError> {
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

    async fn command_outcome(&self, seq: i64) -> Result<CommandOutcome, StoreError> {
        let client = self.reader.get().await?;
        let row =
            client.query_opt("SELECT state, error FROM commands WHERE id = $1", &[&seq]).await.map_err(self.err())?;
        Ok(match row {
            None => CommandOutcome::Gone,
            Some(row) => match row.get::<_, &str>(0) {
                "queued" => CommandOutcome::Queued,
                "applied" => CommandOutcome::Applied,
                _ => CommandOutcome::Rejected(row.get::<_, Option<String>>(1).unwrap_or_default()),
            },
        })
    }

    async fn forget_command(&self, seq: i64) -> Result<(), StoreError> {
        let client = self.reader.get().await?;
        client.execute("DELETE FROM commands WHERE id = $1", &[&seq]).await.map_err(self.err())?;
        Ok(())
    }

    async fn pending_commands(&self) -> Result<Vec<QueuedCommand>, StoreError> {
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
                Ok(QueuedCommand {
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
        self.try_slot(ticket, scope, key, limit).await
    }

    async fn free_slot(&self, ticket: i64) -> Result<(), StoreError> {
        self.drop_slot(ticket).await
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

fn to_json<T: Serialize + ?Sized>(value: &T, what: &str) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Other(format!("a {what} cannot be serialized: {e}")))
}

fn from_json<T: DeserializeOwned>(text: &str, what: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("a stored {what} cannot be read: {e}")))
}
