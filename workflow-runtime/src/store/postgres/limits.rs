//! Concurrency slots and rate windows shared by every node.
//!
//! A slot ticket is a row of `limit_slots`: queued first, then holding. Taking a
//! slot runs under a transaction-level advisory lock on its scope and key, so two
//! nodes never both take the last one; rows of nodes whose lease expired are
//! removed on the way, which is how a dead node's slots come back within its
//! lease. A rate window is one row of `rate_windows` holding the latest `count`
//! start times, read and written under a row lock on the database's clock.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::PostgresStore;
use crate::model::limits::next_start;
use crate::store::StoreError;
use crate::store::cluster::Cluster as _;

impl PostgresStore {
    pub(super) async fn queue_slot(&self, scope: &str, key: &str, priority: i32) -> Result<i64, StoreError> {
        let client = self.control.get().await?;
        let row = client
            .query_one(
                "INSERT INTO limit_slots (scope, key, priority, node) VALUES ($1, $2, $3, $4) RETURNING ticket",
                &[&scope, &key, &priority, &self.node()],
            )
            .await
            .map_err(self.err())?;
        Ok(row.get(0))
    }

    pub(super) async fn try_slot(&self, ticket: i64, scope: &str, key: &str, limit: u32) -> Result<bool, StoreError> {
        let mut client = self.control.get().await?;
        let tx = client.transaction().await.map_err(self.err())?;
        tx.execute("SELECT pg_advisory_xact_lock(hashtext($1), hashtext($2))", &[&scope, &key])
            .await
            .map_err(self.err())?;
        tx.execute(
            "DELETE FROM limit_slots s WHERE s.scope = $1 AND s.key = $2
               AND NOT EXISTS (SELECT 1 FROM nodes n WHERE n.id = s.node AND n.expires_at > clock_timestamp())",
            &[&scope, &key],
        )
        .await
        .map_err(self.err())?;
        // Held slots, and the tickets that come before this one.
        let row = tx
            .query_one(
                "SELECT
                     (SELECT count(*) FROM limit_slots WHERE scope = $1 AND key = $2 AND holding),
                     (SELECT count(*) FROM limit_slots w, limit_slots me
                      WHERE me.ticket = $3 AND w.scope = $1 AND w.key = $2 AND NOT w.holding
                        AND (w.priority > me.priority OR (w.priority = me.priority AND w.ticket < me.ticket))),
                     EXISTS (SELECT 1 FROM limit_slots WHERE ticket = $3)",
                &[&scope, &key, &ticket],
            )
            .await
            .map_err(self.err())?;
        let (held, ahead, queued): (i64, i64, bool) = (row.get(0), row.get(1), row.get(2));
        if !queued {
            // This node's lease expired and its tickets went with it.
            return Err(StoreError::Lapsed(self.node()));
        }
        if held + ahead >= i64::from(limit) {
            return Ok(false);
        }
        tx.execute("UPDATE limit_slots SET holding = true WHERE ticket = $1", &[&ticket]).await.map_err(self.err())?;
        tx.commit().await.map_err(self.err())?;
        Ok(true)
    }

    pub(super) async fn drop_slot(&self, ticket: i64) -> Result<(), StoreError> {
        let client = self.control.get().await?;
        client.execute("DELETE FROM limit_slots WHERE ticket = $1", &[&ticket]).await.map_err(self.err())?;
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
