//! The batch writer: `apply` writes a batch of [`Write`]s in one transaction, a
//! few statements per kind of write whatever the batch's size.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use tokio_postgres::Transaction;
use uuid::Uuid;

use super::{PostgresStore, from_json, to_json};
use crate::model::ExecutionId;
use crate::model::execution::ExecutionState;
use crate::store::cluster::{Cluster as _, NodeId};
use crate::store::{JournalEntry, NewExecution, StoreError, Upgrade, Write};

impl PostgresStore {
    pub(super) async fn apply(&self, tx: &Transaction<'_>, batch: &[Write]) -> Result<(), StoreError> {
        let node = self.node();
        let created = created(batch);
        // The statements below go by kind of write, not in batch order: a write
        // that would depend on the order (one after its execution's end) is refused.
        refuse_after_end(batch)?;
        let present = self.fence(tx, batch, node, &created).await?;
        let won = self.ticks(tx, batch).await?;
        let creates = self.create(tx, batch, &won).await?;
        self.mark_started(tx, batch).await?;
        self.upgrades(tx, batch).await?;
        let applied = self.journal(tx, batch).await?;
        self.commands_done(tx, batch, &applied).await?;
        self.finish(tx, batch, &created, &present).await?;
        let parked = self.park_and_record(tx, batch, node).await?;
        let answered = !applied.is_empty() || batch.iter().any(|w| matches!(w, Write::CommandDone { .. }));
        if creates || parked || answered {
            self.notify(tx).await?;
        }
        Ok(())
    }

    /// Fencing: every execution this batch writes to must exist and be held by
    /// this node (not by another, not by nobody: a node whose lease lapsed had
    /// its executions released); the rows stay locked until the commit.
    ///
    /// Returns the executions found, with their holders.
    async fn fence(
        &self,
        tx: &Transaction<'_>,
        batch: &[Write],
        node: NodeId,
        created: &HashSet<ExecutionId>,
    ) -> Result<HashMap<Uuid, Option<Uuid>>, StoreError> {
        let err = self.err();
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
        Ok(present)
    }

    /// Schedule ticks: each creates its execution only if it wins the tick.
    ///
    /// Returns the executions of the ticks won.
    async fn ticks(&self, tx: &Transaction<'_>, batch: &[Write]) -> Result<HashSet<ExecutionId>, StoreError> {
        let err = self.err();
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
        Ok(won)
    }

    /// New executions, unheld: any node may claim them. Ids are never reused,
    /// so one that exists already was written by an earlier try of this batch
    /// (whose commit's outcome was unknown) and may be held by now: keep it.
    ///
    /// Returns whether the batch creates any (the ticks `won` included).
    async fn create(
        &self,
        tx: &Transaction<'_>,
        batch: &[Write],
        won: &HashSet<ExecutionId>,
    ) -> Result<bool, StoreError> {
        let err = self.err();
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
        Ok(!creates.is_empty())
    }

    /// Started marks: executions whose start time came.
    async fn mark_started(&self, tx: &Transaction<'_>, batch: &[Write]) -> Result<(), StoreError> {
        let err = self.err();
        let started: Vec<Uuid> = batch
            .iter()
            .filter_map(|w| if let Write::Started { id, .. } = w { Some(id.as_uuid()) } else { None })
            .collect();
        if !started.is_empty() {
            tx.execute("UPDATE executions SET started = true WHERE id = ANY($1)", &[&started]).await.map_err(&err)?;
        }
        Ok(())
    }

    /// Upgrades, one after the other in batch order.
    async fn upgrades(&self, tx: &Transaction<'_>, batch: &[Write]) -> Result<(), StoreError> {
        for w in batch {
            if let Write::Upgrade(u) = w {
                self.upgrade(tx, u).await?;
            }
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

    /// Journal events, the commands' among them.
    ///
    /// Returns the queued commands whose events these are.
    async fn journal(&self, tx: &Transaction<'_>, batch: &[Write]) -> Result<Vec<i64>, StoreError> {
        let err = self.err();
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
        Ok(applied)
    }

    /// Queued commands: what they did is in this transaction.
    async fn commands_done(&self, tx: &Transaction<'_>, batch: &[Write], applied: &[i64]) -> Result<(), StoreError> {
        let err = self.err();
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
        Ok(())
    }

    /// Final states: into history, out of the hot tables. A final state for an
    /// execution that is no longer there never replaces one already recorded.
    async fn finish(
        &self,
        tx: &Transaction<'_>,
        batch: &[Write],
        created: &HashSet<ExecutionId>,
        present: &HashMap<Uuid, Option<Uuid>>,
    ) -> Result<(), StoreError> {
        let err = self.err();
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
        Ok(())
    }

    /// Parks, dead letters (and their removals), reschedules and definitions,
    /// in batch order.
    ///
    /// Returns whether any execution parked.
    async fn park_and_record(&self, tx: &Transaction<'_>, batch: &[Write], node: NodeId) -> Result<bool, StoreError> {
        let err = self.err();
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
        Ok(parked)
    }
}

/// The executions this batch creates: its creates and its ticks' (won or not).
fn created(batch: &[Write]) -> HashSet<ExecutionId> {
    batch
        .iter()
        .filter_map(|w| match w {
            Write::Create(n) => Some(n.id),
            Write::Tick { execution, .. } => Some(execution.id),
            _ => None,
        })
        .collect()
}

/// Refuses a write to an execution after its end in the batch (`apply` would
/// not write them in batch order).
fn refuse_after_end(batch: &[Write]) -> Result<(), StoreError> {
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
    Ok(())
}
