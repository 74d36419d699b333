//! [`PostgresStore`]: one PostgreSQL database shared by any number of engines.

mod apply;
mod cluster;
mod conn;
mod debounce;
mod limits;
mod reads;
mod schema;
#[cfg(test)]
mod tests;

use std::fmt;
use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio_postgres::Transaction;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use self::conn::{Shared, Slot, Target, Wakeups, listen};
use super::StoreError;
#[cfg(doc)]
use super::cluster::Cluster;
use super::cluster::NodeId;

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
}

fn to_json<T: Serialize + ?Sized>(value: &T, what: &str) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Other(format!("a {what} cannot be serialized: {e}")))
}

fn from_json<T: DeserializeOwned>(text: &str, what: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("a stored {what} cannot be read: {e}")))
}
