//! The PostgreSQL backend, for fleets that span machines.
//!
//! Any number of arbiter processes on any number of hosts share one database (optionally
//! one schema of it, `?schema=`). Connections come from a small pool. Every state change is
//! one transaction that first locks the row it decides on (`SELECT … FOR UPDATE`), so
//! concurrent requests for one name or one revision queue in the database; the store's
//! clock is the server's (`clock_timestamp()`), read after that lock.
//!
//! Waiting for changes uses LISTEN/NOTIFY: writers `pg_notify` in the same transaction
//! (delivered on commit), and one listening connection per handle wakes subscribers.

mod connect;
mod deadline;
mod kv;
mod lease;
mod limit;
mod log;
mod loops;
mod notify;
mod queue;
mod tls;
mod token;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arbiter_core::{Error, Millis, Result};
use async_trait::async_trait;
use deadpool::managed::{Metrics, RecycleError, RecycleResult};
use deadpool_postgres::ClientWrapper;
use tokio::sync::watch;
use tokio_postgres::types::ToSql;
use tokio_postgres::{AsyncMessage, Row};

use self::connect::Connector;
use crate::api::{Changes, Subscription, Topic};
use crate::url::{PgOptions, redact};
use crate::{Backend, SCHEMA_VERSION, StoreInfo};

/// Every primitive's schema steps (`crate::schema`).
pub(crate) const MIGRATIONS: &[&[crate::schema::Migration]] = crate::schema::primitives!();

const POOL_SIZE: usize = 8;
/// How long the server lets a session sit idle inside a transaction before ending it.
const IDLE_IN_TRANSACTION: Duration = Duration::from_secs(5);
/// The pool's connections come from the store's [`Connector`] (bounded, TLS); one whose
/// connection ended (a statement deadline passed, the server went away) is not reused.
pub(crate) struct PgManager(Arc<Connector>);

impl deadpool::managed::Manager for PgManager {
    type Type = ClientWrapper;
    type Error = Error;

    async fn create(&self) -> Result<ClientWrapper> {
        let (client, connection) = self.0.connect().await?;
        let task = tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!("PostgreSQL connection ended: {e}");
            }
        });
        Ok(ClientWrapper::new(client, task))
    }

    async fn recycle(&self, client: &mut ClientWrapper, metrics: &Metrics) -> RecycleResult<Error> {
        if client.is_closed() || self.0.expired_since(metrics.created) {
            return Err(RecycleError::message("the connection is closed"));
        }
        Ok(())
    }
}

type Pool = deadpool::managed::Pool<PgManager>;
/// A pooled connection.
pub(crate) type PgClient = deadpool::managed::Object<PgManager>;

pub(crate) struct PgStore {
    location: String,
    /// The schema, or `public`; also the NOTIFY payload, so two schemas do not wake each other.
    schema: String,
    pool: Pool,
    hub: Arc<ListenHub>,
}

/// The store's LISTEN connection, started on the first subscribe and again when it ended.
struct ListenHub {
    connector: Arc<Connector>,
    schema: String,
    current: Mutex<Option<Listener>>,
}

/// One LISTEN connection and the counters it bumps, one per topic.
#[derive(Clone)]
struct Listener {
    counters: Vec<(Topic, watch::Receiver<u64>)>,
    alive: Arc<AtomicBool>,
    /// Dropping the last clone drops the client, which ends the connection and its task.
    _client: Arc<tokio_postgres::Client>,
}

impl PgStore {
    pub(crate) async fn open(url: &str, schema: Option<&str>, options: &PgOptions) -> Result<PgStore> {
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| Error::bad_input(format!("invalid PostgreSQL URL {}: {e}", redact(url))))?;
        let statement_timeout = connect::statement_timeout(options);
        // A client frozen inside a transaction (SIGSTOP, a paused VM) would hold its row
        // locks, and so every other holder, for as long as it stays frozen: the server ends
        // such a session after a few seconds instead. Our transactions never wait on anything
        // but the database, so a healthy one is never idle that long. The server cancels a
        // statement a little before the client's deadline ends the connection, so a slow
        // server costs one statement, not the connection.
        let mut options_text = format!(
            "{} -c idle_in_transaction_session_timeout={} -c statement_timeout={}",
            config.get_options().unwrap_or_default(),
            IDLE_IN_TRANSACTION.as_millis(),
            (statement_timeout * 4 / 5).as_millis().max(1)
        );
        if let Some(schema) = schema {
            options_text.push_str(&format!(" -c search_path={schema}"));
        }
        config.options(options_text.trim());
        let connector = Arc::new(Connector::new(config, options)?);
        let pool = Pool::builder(PgManager(connector.clone()))
            .max_size(POOL_SIZE)
            .build()
            .map_err(|e| Error::internal(format!("cannot build PostgreSQL pool: {e}")))?;
        let location = match schema {
            Some(schema) => format!("{} (schema {schema})", redact(url)),
            None => redact(url),
        };
        let schema_name = schema.unwrap_or("public").to_string();
        let store = PgStore {
            location,
            schema: schema_name.clone(),
            pool,
            hub: Arc::new(ListenHub {
                connector,
                schema: schema_name,
                current: Mutex::new(None),
            }),
        };
        store.migrate(schema).await?;
        Ok(store)
    }
    async fn migrate(&self, schema: Option<&str>) -> Result<()> {
        let mut client = self.client().await?;
        // Up to date (every open but the first): a read, no lock, no write.
        match client.query_opt("SELECT version FROM arbiter_schema", &[]).await {
            Ok(Some(row)) if row.get::<_, i64>(0) == SCHEMA_VERSION => return Ok(()),
            // No table yet (a new store), or an older version: migrate below.
            Ok(_) => {}
            Err(e) if e.as_db_error().is_some_and(|db| !db.code().code().starts_with("08")) => {}
            // The connection failed (a deadline, say): that is the error to report.
            Err(e) => return Err(pg_error(e)),
        }
        let tx = client.transaction().await.map_err(pg_error)?;
        tx.execute(
            "SELECT pg_advisory_xact_lock(hashtext($1))",
            &[&format!("arbiter-migrate:{}", self.schema)],
        )
        .await
        .map_err(pg_error)?;
        if let Some(schema) = schema {
            // The name was checked when the URL was parsed: lowercase letters, digits, _.
            tx.batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {schema}"))
                .await
                .map_err(pg_error)?;
        }
        tx.batch_execute("CREATE TABLE IF NOT EXISTS arbiter_schema (version BIGINT NOT NULL)")
            .await
            .map_err(pg_error)?;
        let version: i64 = tx
            .query_opt("SELECT version FROM arbiter_schema", &[])
            .await
            .map_err(pg_error)?
            .map(|row| row.get(0))
            .unwrap_or(0);
        if version > SCHEMA_VERSION {
            return Err(Error::unavailable(format!(
                "PostgreSQL store {} has schema version {version}, newer than this arbiter's {SCHEMA_VERSION}: upgrade arbiter",
                self.location
            )));
        }
        for step in crate::schema::pending(MIGRATIONS, version) {
            tx.batch_execute(step.sql)
                .await
                .map_err(|e| pg_error(e).context(format!("migration {}", step.version)))?;
        }
        tx.execute("DELETE FROM arbiter_schema", &[]).await.map_err(pg_error)?;
        tx.execute("INSERT INTO arbiter_schema (version) VALUES ($1)", &[&SCHEMA_VERSION])
            .await
            .map_err(pg_error)?;
        tx.commit().await.map_err(pg_error)
    }

    pub(crate) async fn client(&self) -> Result<PgClient> {
        self.pool.get().await.map_err(|e| match e {
            deadpool::managed::PoolError::Backend(e) => e,
            other => Error::unavailable(format!("cannot connect to PostgreSQL store {}: {other}", self.location)),
        })
    }

    /// Runs one statement on its own (it commits by itself): one round trip, for reads of
    /// one statement that need no transaction around them.
    pub(crate) async fn single(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>> {
        let client = self.client().await?;
        let statement = client.prepare_cached(sql).await.map_err(pg_error)?;
        client.query(&statement, params).await.map_err(pg_error)
    }
}

impl ListenHub {
    /// The live listener, or a new one.
    async fn listener(&self) -> Result<Listener> {
        let live = self
            .current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .filter(|l| l.alive.load(Ordering::SeqCst));
        if let Some(listener) = live {
            return Ok(listener);
        }
        let listener = self.start().await?;
        *self.current.lock().unwrap_or_else(|p| p.into_inner()) = Some(listener.clone());
        Ok(listener)
    }

    async fn start(&self) -> Result<Listener> {
        let (client, mut connection) = self.connector.connect().await?;
        let client = Arc::new(client);
        let (senders, counters): (Vec<_>, Vec<_>) = Topic::ALL
            .iter()
            .map(|topic| {
                let (sender, receiver) = watch::channel(0u64);
                ((topic.channel(), sender), (*topic, receiver))
            })
            .unzip();
        let alive = Arc::new(AtomicBool::new(true));
        let task_alive = alive.clone();
        let schema = self.schema.clone();
        let probe_client = Arc::downgrade(&client);
        let probe_every = self.connector.statement_timeout();
        tokio::spawn(async move {
            // Ends when the connection does (error, server gone, or a probe unanswered
            // within the statement deadline); subscribers then start a new listener. The
            // probe, once per statement timeout, proves the server still answers: a link
            // that went silent would otherwise only show as notifications that never come.
            let mut probe = tokio::time::interval(probe_every);
            probe.tick().await;
            loop {
                tokio::select! {
                    message = std::future::poll_fn(|cx| connection.poll_message(cx)) => match message {
                        Some(Ok(AsyncMessage::Notification(n))) if n.payload() == schema => {
                            for (_, sender) in senders.iter().filter(|(name, _)| *name == n.channel()) {
                                sender.send_modify(|c| *c += 1);
                            }
                        }
                        Some(Ok(_)) => {}
                        Some(Err(_)) | None => break,
                    },
                    _ = probe.tick() => {
                        // An empty query: one round trip. Its answer (or the deadline that
                        // ends the connection) arrives through `connection` above.
                        let Some(client) = probe_client.upgrade() else { break };
                        tokio::spawn(async move { let _ = client.batch_execute("").await; });
                    }
                }
            }
            task_alive.store(false, Ordering::SeqCst);
            // Wake everyone so they re-read rather than sleep through a lost notification.
            for (_, sender) in &senders {
                sender.send_modify(|c| *c += 1);
            }
        });
        client
            .batch_execute(
                &Topic::ALL
                    .iter()
                    .map(|topic| format!("LISTEN {};", topic.channel()))
                    .collect::<String>(),
            )
            .await
            .map_err(pg_error)?;
        Ok(Listener {
            counters,
            alive,
            _client: client,
        })
    }
}

/// Runs `sql` as a cached prepared statement.
pub(crate) async fn query(
    tx: &deadpool_postgres::Transaction<'_>,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Vec<Row>> {
    let stmt = tx.prepare_cached(sql).await.map_err(pg_error)?;
    tx.query(&stmt, params).await.map_err(pg_error)
}

/// Runs `sql` as a cached prepared statement and returns the rows it changed.
pub(crate) async fn execute(
    tx: &deadpool_postgres::Transaction<'_>,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<u64> {
    let stmt = tx.prepare_cached(sql).await.map_err(pg_error)?;
    tx.execute(&stmt, params).await.map_err(pg_error)
}

/// One statement of a [`pipeline`]: its SQL and parameters.
pub(crate) type Step<'a> = (&'a str, &'a [&'a (dyn ToSql + Sync)]);

/// The most statements one [`pipeline`] takes: `try_join_all` polls a list this short in
/// index order (a longer one goes through `FuturesOrdered`, whose first-poll order is not
/// documented).
const MAX_PIPELINE: usize = 30;

/// Runs statements in one round trip and returns the rows of each. All are sent before the
/// first answer is read, and the server runs them in the order given, each seeing what the
/// ones before it did: tokio-postgres sends a request when its future is first polled, and
/// `try_join_all` polls a short list in order. If one fails, the ones after it fail too
/// (the transaction is aborted) and the first error is returned. Statements are prepared
/// (and cached per connection) first, so only a connection's first use of one costs extra
/// round trips.
pub(crate) async fn pipeline(tx: &deadpool_postgres::Transaction<'_>, steps: &[Step<'_>]) -> Result<Vec<Vec<Row>>> {
    assert!(
        steps.len() <= MAX_PIPELINE,
        "a pipeline of {} statements: at most {MAX_PIPELINE} run in order",
        steps.len()
    );
    let mut statements = Vec::with_capacity(steps.len());
    for (sql, _) in steps {
        statements.push(tx.prepare_cached(sql).await.map_err(pg_error)?);
    }
    let requests = statements
        .iter()
        .zip(steps)
        .map(|(stmt, (_, params))| tx.query(stmt, params));
    futures_util::future::try_join_all(requests).await.map_err(pg_error)
}

/// The store's clock in SQL: the server's, in milliseconds since the Unix epoch.
macro_rules! now_ms_sql {
    () => {
        "(extract(epoch FROM clock_timestamp()) * 1000)::bigint"
    };
}
pub(crate) use now_ms_sql;

/// The store's clock: the server's, in milliseconds since the Unix epoch.
pub(crate) async fn now_ms(tx: &deadpool_postgres::Transaction<'_>) -> Result<Millis> {
    let rows = query(tx, NOW_MS, &[]).await?;
    Ok(rows[0].get(0))
}

/// The statement that reads the store's clock.
pub(crate) const NOW_MS: &str = concat!("SELECT ", now_ms_sql!());

/// The statement that wakes the subscribers of a topic (`$1`: its channel, `$2`: the
/// schema) when the transaction commits.
pub(crate) const NOTIFY: &str = "SELECT pg_notify($1, $2)";

impl PgStore {
    /// Wakes the subscribers of `topic` now, from a transaction of its own committed
    /// without waiting for its WAL flush (one round trip), for a change already committed.
    /// A transaction that notifies holds PostgreSQL's database-wide notify lock from its
    /// commit's start to its end — through the WAL flush when `synchronous_commit` is on
    /// —, so writers that notify in their own transaction commit one at a time: a
    /// frequent change whose waiters can afford a lost wake (a crash between the two
    /// commits) wakes this way. A failure is logged, not returned: the change stands.
    pub(crate) async fn wake_after(&self, topic: Topic) {
        let literal = |text: &str| format!("'{}'", text.replace('\'', "''"));
        let sql = format!(
            "BEGIN; SET LOCAL synchronous_commit TO OFF; SELECT pg_notify({}, {}); COMMIT",
            literal(topic.channel()),
            literal(&self.schema)
        );
        let woken = async {
            let client = self.client().await?;
            let woken = client.batch_execute(&sql).await.map_err(pg_error);
            if woken.is_err() {
                // Not back to the pool inside a failed transaction.
                let _ = client.batch_execute("ROLLBACK").await;
            }
            woken
        };
        if let Err(e) = woken.await {
            tracing::warn!(error = %e, "could not wake the waiters of {topic:?}; they wake at their next deadline");
        }
    }
}

/// Wakes the subscribers of `topic` when the transaction commits.
pub(crate) async fn notify(tx: &deadpool_postgres::Transaction<'_>, topic: Topic, schema: &str) -> Result<()> {
    query(tx, NOTIFY, &[&topic.channel(), &schema]).await.map(drop)
}

pub(crate) fn pg_error(e: tokio_postgres::Error) -> Error {
    match e.as_db_error() {
        // Connection failures (class 08, including the client-side statement deadline,
        // which names the server), shutdowns (57P0x) and the server's statement_timeout
        // (57014): the store is unavailable, not wrong.
        Some(db) if db.code().code().starts_with("08") || db.code().code().starts_with("57") => {
            Error::unavailable(format!("PostgreSQL error {}: {}", db.code().code(), db.message()))
        }
        Some(db) => Error::internal(format!("PostgreSQL error {}: {}", db.code().code(), db.message())),
        None => Error::unavailable(match std::error::Error::source(&e) {
            Some(source) => format!("PostgreSQL connection failed: {e}: {source}"),
            None => format!("PostgreSQL connection failed: {e}"),
        }),
    }
}

impl Backend for PgStore {
    fn info(&self) -> StoreInfo {
        StoreInfo {
            backend: "postgres".into(),
            location: self.location.clone(),
            schema_version: SCHEMA_VERSION,
        }
    }
}

/// A subscription to one topic. When its LISTEN connection ends, the next wait starts a
/// new one (within the connect timeout) and returns at once, so the caller re-reads what it
/// may have missed; if the server cannot be reached the wait just runs out and the caller's
/// next read reports the store unavailable.
struct WatchSubscription {
    receiver: watch::Receiver<u64>,
    hub: Arc<ListenHub>,
    topic: Topic,
}

impl ListenHub {
    async fn receiver(&self, topic: Topic) -> Result<watch::Receiver<u64>> {
        let mut receiver = self
            .listener()
            .await?
            .counters
            .into_iter()
            .find(|(t, _)| *t == topic)
            .map(|(_, receiver)| receiver)
            .expect("every topic has a counter");
        receiver.mark_unchanged();
        Ok(receiver)
    }
}

#[async_trait]
impl Changes for PgStore {
    async fn subscribe(&self, topic: Topic) -> Result<Box<dyn Subscription>> {
        Ok(Box::new(WatchSubscription {
            receiver: self.hub.receiver(topic).await?,
            hub: self.hub.clone(),
            topic,
        }))
    }
}

#[async_trait]
impl Subscription for WatchSubscription {
    async fn wait(&mut self, timeout: Duration) -> Result<()> {
        let until = tokio::time::Instant::now() + timeout;
        if self.receiver.has_changed().is_err() {
            // The listener ended (it woke everyone when it did): start another.
            if let Ok(Ok(receiver)) = tokio::time::timeout_at(until, self.hub.receiver(self.topic)).await {
                self.receiver = receiver;
                return Ok(());
            }
        }
        if let Ok(Err(_)) = tokio::time::timeout_at(until, self.receiver.changed()).await {
            // The listener ended during this wait. It wakes everyone before it ends, but a
            // waiter that had already taken that wake meets the end here: start another now
            // (and return, so the caller re-reads) rather than sleep out the whole wait.
            if let Ok(Ok(receiver)) = tokio::time::timeout_at(until, self.hub.receiver(self.topic)).await {
                self.receiver = receiver;
                return Ok(());
            }
            tokio::time::sleep_until(until).await;
        }
        Ok(())
    }
}
