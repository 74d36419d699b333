//! Connections: the URL, lazily (re)opened clients, and the listener that turns
//! `NOTIFY` into wake-ups.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::{MappedMutexGuard, Mutex, MutexGuard, Notify};
use tokio_postgres::{AsyncMessage, Client, Config, NoTls};

use crate::store::{StoreError, redact};

/// A parsed `postgres://` URL: the connection settings, and the schema that holds
/// the tables.
#[derive(Clone)]
pub(super) struct Target {
    pub(super) config: Config,
    pub(super) schema: String,
    /// The URL without its password, for messages.
    pub(super) display: String,
}

impl Target {
    pub(super) fn parse(url: &str) -> Result<Self, StoreError> {
        let invalid = |reason: String| StoreError::InvalidUrl { url: redact(url), reason };
        let (base, query) = url.split_once('?').unwrap_or((url, ""));
        let mut schema = String::from("sagaflow");
        let mut rest = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("schema", value)) => schema = value.to_owned(),
                _ => rest.push(pair),
            }
        }
        if schema.is_empty()
            || schema.len() > 63
            || !schema.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
            || !schema.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        {
            return Err(invalid(format!(
                "schema `{schema}` must be 1 to 63 lowercase letters, digits and underscores, not starting with a digit"
            )));
        }
        let url_rest = if rest.is_empty() { base.to_owned() } else { format!("{base}?{}", rest.join("&")) };
        let mut config: Config = url_rest.parse().map_err(|e| invalid(format!("{e}")))?;
        if config.get_application_name().is_none() {
            config.application_name("sagaflow");
        }
        config.connect_timeout(Duration::from_secs(5));
        Ok(Target { config, schema, display: redact(url) })
    }

    /// Opens a client whose `search_path` is the schema.
    pub(super) async fn connect(&self) -> Result<Client, StoreError> {
        let (client, connection) = self.config.connect(NoTls).await.map_err(|e| self.error(&e))?;
        let shown = self.display.clone();
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(store = %shown, error = %e, "PostgreSQL connection closed");
            }
        });
        client.batch_execute(&format!("SET search_path TO {}", self.schema)).await.map_err(|e| self.error(&e))?;
        Ok(client)
    }

    pub(super) fn error(&self, e: &tokio_postgres::Error) -> StoreError {
        pg_error(&self.display, e)
    }

    /// The notification channel of this schema.
    pub(super) fn channel(&self) -> String {
        format!("sagaflow_{}", self.schema).chars().take(63).collect()
    }
}

/// A database error as a store error: the server's message when there is one.
/// Errors that trying again may cure (connections, conflicts between
/// transactions, a server restarting or out of resources, a schema or table that
/// is not there yet) are [`StoreError::Unavailable`]; errors that the values
/// written cause (data exceptions, constraints, limits) are
/// [`StoreError::Rejected`].
pub(super) fn pg_error(target: &str, e: &tokio_postgres::Error) -> StoreError {
    match e.as_db_error() {
        Some(db) => {
            let code = db.code().code();
            let text = format!("PostgreSQL `{target}`: {code}: {}", db.message());
            match &code[..2] {
                // 22 data exception, 23 integrity constraint violation, 54 program
                // limit exceeded (a row or value too large).
                "22" | "23" | "54" => StoreError::Rejected(text),
                _ => StoreError::Unavailable(text),
            }
        }
        None => {
            let cause = std::error::Error::source(e).map(|s| format!(": {s}")).unwrap_or_default();
            StoreError::Unavailable(format!("PostgreSQL `{target}`: {e}{cause}"))
        }
    }
}

/// One connection used by one kind of work at a time (transactions need the
/// client exclusively); reopened on the next use after it broke.
pub(super) struct Slot {
    target: Arc<Target>,
    client: Mutex<Option<Client>>,
}

impl Slot {
    pub(super) fn new(target: Arc<Target>) -> Self {
        Slot { target, client: Mutex::new(None) }
    }

    /// The client, connected.
    pub(super) async fn get(&self) -> Result<MappedMutexGuard<'_, Client>, StoreError> {
        let mut guard = self.client.lock().await;
        if guard.as_ref().is_none_or(Client::is_closed) {
            *guard = Some(self.target.connect().await?);
        }
        MutexGuard::try_map(guard, Option::as_mut).map_err(|_| StoreError::Other("a connection vanished".into()))
    }
}

/// A shared client for reads: queries from many callers are pipelined on it.
pub(super) struct Shared {
    target: Arc<Target>,
    client: Mutex<Option<Arc<Client>>>,
}

impl Shared {
    pub(super) fn new(target: Arc<Target>) -> Self {
        Shared { target, client: Mutex::new(None) }
    }

    pub(super) async fn get(&self) -> Result<Arc<Client>, StoreError> {
        let mut guard = self.client.lock().await;
        match &*guard {
            Some(c) if !c.is_closed() => Ok(Arc::clone(c)),
            _ => {
                let c = Arc::new(self.target.connect().await?);
                *guard = Some(Arc::clone(&c));
                Ok(c)
            }
        }
    }
}

/// Wake-ups from `NOTIFY` on the schema's channel.
#[derive(Default)]
pub(super) struct Wakeups {
    pub(super) notify: Notify,
    /// The counts of freed slots that attempts wait on, from the announcements
    /// of freed slots (which do not wake the claim loop).
    pub(super) slots: super::limits::SlotWaiters,
    /// Set when the listener is connected and listening.
    pub(super) listening: AtomicBool,
}

/// Listens on the channel until `stop` is dropped, reconnecting with backoff;
/// every notification (and every reconnection, since notifications may have been
/// missed meanwhile) wakes one waiter, but for freed slots, which count for the
/// attempts waiting for them (for all of them on a reconnection).
pub(super) async fn listen(target: Arc<Target>, wakeups: Arc<Wakeups>, stop: tokio_util::sync::CancellationToken) {
    let mut delay = Duration::from_millis(50);
    loop {
        let session = async {
            let (client, mut connection) = target.config.connect(NoTls).await.map_err(|e| target.error(&e))?;
            let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
            let sql = format!("LISTEN {}", target.channel());
            let listen = client.batch_execute(&sql);
            tokio::pin!(listen);
            // Drive the connection while the LISTEN runs.
            loop {
                tokio::select! {
                    r = &mut listen => { r.map_err(|e| target.error(&e))?; break; }
                    m = messages.next() => match m {
                        Some(Ok(_)) => {}
                        Some(Err(e)) => return Err(target.error(&e)),
                        None => return Err(StoreError::Unavailable("the listener's connection closed".into())),
                    }
                }
            }
            wakeups.listening.store(true, Ordering::Release);
            wakeups.notify.notify_one();
            wakeups.slots.missed();
            while let Some(m) = messages.next().await {
                match m {
                    Ok(AsyncMessage::Notification(n)) => {
                        if !wakeups.slots.announced(n.payload()) {
                            wakeups.notify.notify_one();
                        }
                    }
                    Ok(_) => {}
                    Err(e) => return Err(target.error(&e)),
                }
            }
            Err::<(), _>(StoreError::Unavailable("the listener's connection closed".into()))
        };
        tokio::select! {
            _ = stop.cancelled() => return,
            r = session => {
                if wakeups.listening.swap(false, Ordering::AcqRel) {
                    delay = Duration::from_millis(50);
                }
                if let Err(e) = r {
                    tracing::warn!(store = %target.display, error = %e, "PostgreSQL listener lost; reconnecting");
                }
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}
