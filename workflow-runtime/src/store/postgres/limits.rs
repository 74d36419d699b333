//! Concurrency slots and rate windows shared by every node.
//!
//! A slot ticket is a row of `limit_slots`: queued first, then holding. Taking a
//! slot runs under a transaction-level advisory lock on its scope and key, so two
//! nodes never both take the last one; rows of nodes whose lease expired are
//! removed on the way, which is how a dead node's slots come back within its
//! lease. A rate window is one row of `rate_windows` holding the latest `count`
//! start times, read and written under a row lock on the database's clock.
//!
//! Giving a slot back (or leaving its queue) announces it on the schema's
//! channel in the same statement, with a payload that names the scope and key
//! ([`freed_payload`]); every node's listener counts it for the attempts waiting
//! under them ([`SlotWaiters`]), so the next ticket in line asks again at once.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::watch;
use tokio_postgres::types::{ToSql, Type};

use super::PostgresStore;
use crate::model::limits::next_start;
use crate::store::StoreError;
use crate::store::cluster::Cluster as _;

/// Under the advisory lock of its scope and key, in one statement: removes the
/// tickets of nodes whose lease expired (uncounted, on one clock reading), and
/// turns ticket `$3` into a held slot if fewer than `$4` slots are held and no
/// ticket before it waits. Returns whether the ticket is queued still, whether
/// it holds a slot now, and the slots held plus the tickets before it.
const TAKE_SLOT: &str = "
    WITH now AS MATERIALIZED (SELECT clock_timestamp() AS at),
    live AS MATERIALIZED (
        SELECT s.ticket, s.priority, s.holding FROM limit_slots s
        WHERE s.scope = $1 AND s.key = $2
          AND EXISTS (SELECT 1 FROM nodes n WHERE n.id = s.node AND n.expires_at > (SELECT at FROM now))),
    gone AS (
        DELETE FROM limit_slots s WHERE s.scope = $1 AND s.key = $2
          AND NOT EXISTS (SELECT 1 FROM nodes n WHERE n.id = s.node AND n.expires_at > (SELECT at FROM now))),
    me AS (SELECT priority FROM live WHERE ticket = $3),
    used AS (
        SELECT (SELECT count(*) FROM live WHERE holding)
             + (SELECT count(*) FROM live w, me WHERE NOT w.holding
                  AND (w.priority > me.priority OR (w.priority = me.priority AND w.ticket < $3))) AS n),
    taken AS (
        UPDATE limit_slots SET holding = true
        WHERE ticket = $3 AND EXISTS (SELECT 1 FROM me) AND (SELECT n FROM used) < $4
        RETURNING ticket)
    SELECT EXISTS (SELECT 1 FROM me), EXISTS (SELECT 1 FROM taken), (SELECT n FROM used)";

/// The payload announcing a slot freed whose scope and key did not fit in one,
/// or the slots of dead nodes: it counts for every waiting attempt.
const FREED_ANY: &str = "slot";

/// How much the count of freed slots grows by when some may have been missed:
/// more than any attempt waits for.
const MISSED: u64 = 1 << 32;

/// The payload announcing a slot of `scope` and `key` freed: the one that
/// [`PostgresStore::drop_slot`] builds in SQL (`length` counts characters).
fn freed_payload(scope: &str, key: &str) -> String {
    format!("{FREED_ANY} {} {scope}{key}", scope.chars().count())
}

/// The count of slots freed for this node's waiting attempts, by the payload
/// that announces one of their scope and key.
#[derive(Default)]
pub(super) struct SlotWaiters {
    counts: parking_lot::Mutex<Counts>,
}

#[derive(Default)]
struct Counts {
    by_payload: HashMap<String, watch::Sender<u64>>,
    /// The size at which the counts that nobody reads any more are swept.
    sweep_at: usize,
}

impl SlotWaiters {
    /// The count of slots freed announced by `payload` (or by [`FREED_ANY`]).
    fn subscribe(&self, payload: String) -> watch::Receiver<u64> {
        let mut counts = self.counts.lock();
        if counts.by_payload.len() >= counts.sweep_at {
            counts.by_payload.retain(|_, count| count.receiver_count() > 0);
            counts.sweep_at = (counts.by_payload.len() * 2).max(256);
        }
        counts.by_payload.entry(payload).or_insert_with(|| watch::Sender::new(0)).subscribe()
    }

    /// Counts a notification's `payload` for the attempts it concerns; returns
    /// whether it announced a freed slot (rather than work for the claim loop).
    pub(super) fn announced(&self, payload: &str) -> bool {
        if payload == FREED_ANY {
            self.missed();
        } else if payload.strip_prefix(FREED_ANY).is_some_and(|named| named.starts_with(' ')) {
            if let Some(count) = self.counts.lock().by_payload.get(payload) {
                count.send_modify(|n| *n = n.wrapping_add(1));
            }
        } else {
            return false;
        }
        true
    }

    /// Makes every waiting attempt ask again: announcements may have been
    /// missed (the listener was not listening), or dead nodes' slots came back.
    pub(super) fn missed(&self) {
        for count in self.counts.lock().by_payload.values() {
            count.send_modify(|n| *n = n.wrapping_add(MISSED));
        }
    }
}

impl PostgresStore {
    /// The count of slots of `scope` and `key` freed on any node, while the
    /// listener listens (none otherwise: announcements would be missed).
    pub(super) fn freed_count(&self, scope: &str, key: &str) -> Option<watch::Receiver<u64>> {
        if !self.wakeups.listening.load(Ordering::Acquire) {
            return None;
        }
        Some(self.wakeups.slots.subscribe(freed_payload(scope, key)))
    }

    /// Announces, on commit, that slots of any scope and key may be free: those
    /// of the dead nodes `tx` removed.
    pub(super) async fn announce_any_freed(&self, tx: &tokio_postgres::Transaction<'_>) -> Result<(), StoreError> {
        tx.execute("SELECT pg_notify($1, $2)", &[&self.target.channel(), &FREED_ANY]).await.map_err(self.err())?;
        Ok(())
    }

    pub(super) async fn queue_slot(&self, scope: &str, key: &str, priority: i32) -> Result<i64, StoreError> {
        let client = self.reader.get().await?;
        let row = client
            .query_typed_one(
                "INSERT INTO limit_slots (scope, key, priority, node) VALUES ($1, $2, $3, $4) RETURNING ticket",
                &[(&scope, Type::TEXT), (&key, Type::TEXT), (&priority, Type::INT4), (&self.node(), Type::UUID)],
            )
            .await
            .map_err(self.err())?;
        Ok(row.get(0))
    }

    /// Takes a slot for `ticket` if it may; returns how many slots or tickets
    /// before it must be given back first (see [`Cluster::take_slot_behind`]).
    /// One round trip: the transaction's four requests go out at once, and the
    /// server runs them in order (an error in one rolls the others back).
    pub(super) async fn try_slot(&self, ticket: i64, scope: &str, key: &str, limit: u32) -> Result<u32, StoreError> {
        let client = self.control.get().await?;
        let limit = i64::from(limit);
        let lock_params = [(&scope as &(dyn ToSql + Sync), Type::TEXT), (&key, Type::TEXT)];
        let take_params = [
            (&scope as &(dyn ToSql + Sync), Type::TEXT),
            (&key, Type::TEXT),
            (&ticket, Type::INT8),
            (&limit, Type::INT8),
        ];
        let (_, _, row, _) = futures::try_join!(
            client.batch_execute("BEGIN"),
            client.execute_typed("SELECT pg_advisory_xact_lock(hashtext($1), hashtext($2))", &lock_params),
            client.query_typed_one(TAKE_SLOT, &take_params),
            client.batch_execute("COMMIT"),
        )
        .map_err(self.err())?;
        let (queued, taken, used): (bool, bool, i64) = (row.get(0), row.get(1), row.get(2));
        if !queued {
            // This node's lease expired and its tickets went with it.
            return Err(StoreError::Lapsed(self.node()));
        }
        if taken {
            return Ok(0);
        }
        Ok(u32::try_from(used - limit + 1).unwrap_or(u32::MAX).max(1))
    }

    /// Deletes `ticket` and announces it, on commit, to the nodes waiting under
    /// its scope and key (a payload too long for `NOTIFY` announces any slot).
    /// One statement, on the shared client: it waits for no other call.
    pub(super) async fn drop_slot(&self, ticket: i64) -> Result<(), StoreError> {
        let client = self.reader.get().await?;
        client
            .execute_typed(
                "WITH freed AS (
                     DELETE FROM limit_slots WHERE ticket = $1
                     RETURNING $3 || ' ' || length(scope) || ' ' || scope || key AS payload)
                 SELECT pg_notify($2, CASE WHEN octet_length(payload) < 7900 THEN payload ELSE $3 END) FROM freed",
                &[(&ticket, Type::INT8), (&self.target.channel(), Type::TEXT), (&FREED_ANY, Type::TEXT)],
            )
            .await
            .map_err(self.err())?;
        Ok(())
    }

    pub(super) async fn reserve(
        &self,
        scope: &str,
        key: &str,
        count: u32,
        per: Duration,
    ) -> Result<Duration, StoreError> {
        let mut client = self.control.get().await?;
        let tx = client.transaction().await.map_err(self.err())?;
        tx.execute(
            "INSERT INTO rate_windows (scope, key, starts) VALUES ($1, $2, '{}') ON CONFLICT DO NOTHING",
            &[&scope, &key],
        )
        .await
        .map_err(self.err())?;
        let row = tx
            .query_one(
                "SELECT starts, clock_timestamp() FROM rate_windows WHERE scope = $1 AND key = $2 FOR UPDATE",
                &[&scope, &key],
            )
            .await
            .map_err(self.err())?;
        let (mut starts, now): (Vec<DateTime<Utc>>, DateTime<Utc>) = (row.get(0), row.get(1));
        let at = next_start(&mut starts, now, count, |t| {
            t + chrono::Duration::from_std(per).unwrap_or(chrono::TimeDelta::MAX)
        });
        tx.execute("UPDATE rate_windows SET starts = $3 WHERE scope = $1 AND key = $2", &[&scope, &key, &starts])
            .await
            .map_err(self.err())?;
        tx.commit().await.map_err(self.err())?;
        Ok((at - now).to_std().unwrap_or_default())
    }
}
