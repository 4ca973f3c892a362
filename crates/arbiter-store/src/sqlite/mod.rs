//! The embedded SQLite backend.
//!
//! One database file in WAL mode, shared directly by every arbiter process on the machine.
//! rusqlite is blocking, so each operation runs on tokio's blocking pool, on a connection of
//! the handle's small pool ([`Connections`]): one write at a time per handle (writers of
//! other handles and processes wait for each other through the busy timeout), and beside it
//! up to [`READERS`] reads, each in its own snapshot, so a long read holds up neither other
//! reads nor writes. Writers take SQLite's write lock up front (`BEGIN IMMEDIATE`), so a
//! read-then-write transaction never fails half-way on a lock upgrade. The store's clock is
//! this machine's clock, read inside the transaction.
//!
//! Waiting for changes: see [`feed`].

mod feed;
mod kv;
mod lease;
mod limit;
mod log;
mod loops;
mod notify;
mod queue;
mod token;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use arbiter_core::{Error, ErrorKind, Millis, Result};
use async_trait::async_trait;
use rusqlite::{Connection, OpenFlags, Transaction, TransactionBehavior};

use crate::api::{Changes, Subscription, Topic};
use crate::url::Synchronous;
use crate::{Backend, SCHEMA_VERSION, StoreInfo};

/// Every primitive's schema steps (`crate::schema`).
pub(crate) const MIGRATIONS: &[&[crate::schema::Migration]] = crate::schema::primitives!();

/// How many reads of one handle run at once (each on its own connection and snapshot).
const READERS: usize = 4;

pub(crate) struct SqliteStore {
    path: PathBuf,
    connections: Arc<Connections>,
    /// The change feed, started by the first subscription.
    feed: OnceLock<feed::Feed>,
}

/// A handle's connections: at most one in a write and [`READERS`] in reads at a time, so
/// at most `READERS + 1` exist. Idle ones are kept for the next operation; new ones are
/// opened when none is idle (a CLI call that reads or writes once opens one). The permits
/// are tokio semaphores: a caller waits for one without holding a thread; the idle list's
/// lock is taken only on the blocking pool, around a push or a pop.
struct Connections {
    path: PathBuf,
    synchronous: Synchronous,
    busy_timeout: Duration,
    idle: Mutex<Vec<Connection>>,
    write: Arc<tokio::sync::Semaphore>,
    read: Arc<tokio::sync::Semaphore>,
}

impl Connections {
    /// An idle connection, or a new one.
    fn take(&self) -> Result<Connection> {
        let idle = self.idle.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).pop();
        match idle {
            Some(conn) => Ok(conn),
            None => connect(&self.path, self.synchronous, self.busy_timeout),
        }
    }

    fn put(&self, conn: Connection) {
        self.idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(conn);
    }

    /// Runs `f` on a connection, on the blocking pool, holding `permit` (of `write` or
    /// `read`) until it is done — even if the caller stops waiting.
    async fn run<T, F>(self: &Arc<Self>, permits: &Arc<tokio::sync::Semaphore>, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection, &Path) -> Result<T> + Send + 'static,
    {
        let permit = permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| Error::internal(format!("SQLite connection permits closed: {e}")))?;
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let mut conn = this.take()?;
            let result = f(&mut conn, &this.path);
            // A connection left inside a transaction (a failed commit or rollback) is not
            // reused.
            if conn.is_autocommit() {
                this.put(conn);
            }
            result
        })
        .await
        .map_err(|e| Error::internal(format!("SQLite task failed: {e}")))?
    }
}

impl SqliteStore {
    pub(crate) async fn open(path: PathBuf, synchronous: Synchronous, busy_timeout: Duration) -> Result<SqliteStore> {
        let open_path = path.clone();
        let conn = tokio::task::spawn_blocking(move || -> Result<_> {
            let mut conn = open_connection(&open_path, synchronous, busy_timeout)?;
            migrate(&mut conn, &open_path)?;
            Ok(conn)
        })
        .await
        .map_err(|e| Error::internal(format!("SQLite open task failed: {e}")))??;
        Ok(SqliteStore {
            connections: Arc::new(Connections {
                path: path.clone(),
                synchronous,
                busy_timeout,
                idle: Mutex::new(vec![conn]),
                write: Arc::new(tokio::sync::Semaphore::new(1)),
                read: Arc::new(tokio::sync::Semaphore::new(READERS)),
            }),
            path,
            feed: OnceLock::new(),
        })
    }

    /// Runs `f` in a write transaction (`BEGIN IMMEDIATE`) on the blocking pool; commits
    /// when it returns `Ok(Commit(..))`, rolls back otherwise.
    pub(crate) async fn write<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>) -> Result<Outcome<T>> + Send + 'static,
    {
        let connections = self.connections.clone();
        connections
            .run(&self.connections.write, move |conn, path| {
                let tx = conn
                    .transaction_with_behavior(TransactionBehavior::Immediate)
                    .map_err(|e| sqlite_error(path, e))?;
                match f(&tx)? {
                    Outcome::Commit(value) => {
                        tx.commit().map_err(|e| sqlite_error(path, e))?;
                        Ok(value)
                    }
                    Outcome::Rollback(value) => {
                        tx.rollback().map_err(|e| sqlite_error(path, e))?;
                        Ok(value)
                    }
                }
            })
            .await
    }

    /// Runs `f` in a read transaction (one consistent snapshot) on the blocking pool.
    pub(crate) async fn read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>) -> Result<T> + Send + 'static,
    {
        let connections = self.connections.clone();
        connections
            .run(&self.connections.read, move |conn, path| {
                let tx = conn
                    .transaction_with_behavior(TransactionBehavior::Deferred)
                    .map_err(|e| sqlite_error(path, e))?;
                let value = f(&tx)?;
                tx.commit().map_err(|e| sqlite_error(path, e))?;
                Ok(value)
            })
            .await
    }
}

/// What a write transaction does at its end. A transaction that changed nothing worth
/// telling others rolls back, so it does not wake every waiter.
pub(crate) enum Outcome<T> {
    Commit(T),
    Rollback(T),
}

/// The handle's first connection: checks where the store is, creates it private, and
/// puts it in WAL mode.
fn open_connection(path: &Path, synchronous: Synchronous, busy_timeout: Duration) -> Result<Connection> {
    // WAL needs shared memory and locks a network filesystem does not give: refused there.
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    if let Some(fs) = arbiter_process::disk::filesystem(dir).filter(|fs| fs.network) {
        return Err(Error::bad_input(format!(
            "the SQLite store {} is on a network filesystem ({}), where SQLite's WAL is unsafe: put it on a local disk, or use PostgreSQL",
            path.display(),
            fs.name
        )));
    }
    // A new store is created 0600 here, never through a planted link; SQLite then creates
    // its -wal and -shm files with the same mode. (A missing directory is SQLite's error.)
    if path
        .parent()
        .is_none_or(|dir| dir.as_os_str().is_empty() || dir.is_dir())
    {
        arbiter_process::private::create_private(path)?;
    }
    let conn = connect(path, synchronous, busy_timeout)?;
    // Switching a new database to WAL does not wait through the busy handler: when several
    // processes open a brand-new store at once, retry it (bounded by the busy timeout).
    let deadline = std::time::Instant::now() + busy_timeout;
    let mut pause = Duration::from_millis(5);
    loop {
        match conn.execute_batch("PRAGMA journal_mode = WAL;") {
            Ok(()) => break,
            Err(e) if is_busy(&e) && std::time::Instant::now() < deadline => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(200));
            }
            Err(e) => return Err(sqlite_error(path, e)),
        }
    }
    // The last connection to close checkpoints the WAL into the database (SQLite's default),
    // which costs a CLI call two fsyncs. Keeping the WAL instead
    // (SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE) was measured slower: the next process to open the
    // store alone rebuilds the WAL index by reading the whole WAL (9 ms per `kv put` call
    // against 5.5 ms).
    Ok(conn)
}

/// A connection to a store that exists (WAL is a property of the file): the busy timeout
/// and the per-connection settings.
fn connect(path: &Path, synchronous: Synchronous, busy_timeout: Duration) -> Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(|e| {
        let hint = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() && !dir.is_dir() => {
                format!(" (directory {} does not exist)", dir.display())
            }
            _ => String::new(),
        };
        Error::unavailable(format!("cannot open SQLite store {}{hint}: {e}", path.display()))
    })?;
    conn.busy_timeout(busy_timeout).map_err(|e| sqlite_error(path, e))?;
    let sync = match synchronous {
        Synchronous::Full => "FULL",
        Synchronous::Normal => "NORMAL",
    };
    conn.execute_batch(&format!("PRAGMA synchronous = {sync}; PRAGMA foreign_keys = ON;"))
        .map_err(|e| sqlite_error(path, e))?;
    Ok(conn)
}

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

fn migrate(conn: &mut Connection, path: &std::path::Path) -> Result<()> {
    // Up to date (every open but the first): no write transaction, so opening the store
    // neither waits for nor takes SQLite's write lock.
    let current: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(|e| sqlite_error(path, e))?;
    if current == SCHEMA_VERSION {
        return Ok(());
    }
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(|e| sqlite_error(path, e))?;
    let version: i64 = tx
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(|e| sqlite_error(path, e))?;
    if version > SCHEMA_VERSION {
        return Err(Error::unavailable(format!(
            "SQLite store {} has schema version {version}, newer than this arbiter's {SCHEMA_VERSION}: upgrade arbiter",
            path.display()
        )));
    }
    for step in crate::schema::pending(MIGRATIONS, version) {
        tx.execute_batch(step.sql)
            .map_err(|e| sqlite_error(path, e).context(format!("migration {}", step.version)))?;
    }
    tx.execute_batch(&format!("PRAGMA user_version = {SCHEMA_VERSION}"))
        .map_err(|e| sqlite_error(path, e))?;
    tx.commit().map_err(|e| sqlite_error(path, e))
}

/// The store's clock: this machine's, in milliseconds since the Unix epoch.
pub(crate) fn now_ms(tx: &Transaction<'_>) -> Result<Millis> {
    tx.query_row("SELECT CAST(unixepoch('subsec') * 1000 AS INTEGER)", [], |r| r.get(0))
        .map_err(internal)
}

pub(crate) fn internal(e: rusqlite::Error) -> Error {
    sqlite_error(std::path::Path::new(""), e)
}

fn sqlite_error(path: &std::path::Path, e: rusqlite::Error) -> Error {
    use rusqlite::ErrorCode;
    let kind = match e.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => ErrorKind::Unavailable,
        Some(ErrorCode::CannotOpen | ErrorCode::ReadOnly | ErrorCode::DiskFull | ErrorCode::SystemIoFailure) => {
            ErrorKind::Unavailable
        }
        Some(ErrorCode::NotADatabase) => ErrorKind::Unavailable,
        _ => ErrorKind::Internal,
    };
    let place = if path.as_os_str().is_empty() {
        String::new()
    } else {
        format!(" ({})", path.display())
    };
    if matches!(
        e.sqlite_error_code(),
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
    ) {
        // SQLite's own words ("database is locked") do not say whose lock or what to do.
        return Error::new(
            kind,
            format!(
                "the SQLite store{place} stayed locked by another process's write for longer than its busy \
                 timeout (?busy_timeout=, 15s by default): retry, raise ?busy_timeout=, or find the process \
                 holding it ({e})"
            ),
        );
    }
    Error::new(kind, format!("SQLite store error{place}: {e}"))
}

impl Backend for SqliteStore {
    fn info(&self) -> StoreInfo {
        StoreInfo {
            backend: "sqlite".into(),
            location: self.path.display().to_string(),
            schema_version: SCHEMA_VERSION,
        }
    }
}

#[async_trait]
impl Changes for SqliteStore {
    async fn subscribe(&self, _topic: Topic) -> Result<Box<dyn Subscription>> {
        let feed = self.feed.get_or_init(|| {
            feed::Feed::start(
                self.path.clone(),
                self.connections.synchronous,
                self.connections.busy_timeout,
            )
        });
        Ok(Box::new(feed.subscribe().await?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A bound for waits that end much sooner; never asserted as a duration.
    const BOUND: Duration = Duration::from_secs(60);

    fn count(tx: &Transaction<'_>) -> Result<i64> {
        tx.query_row("SELECT count(*) FROM lease_names", [], |r| r.get(0))
            .map_err(internal)
    }

    async fn add(store: &SqliteStore, name: &'static str) {
        store
            .write(move |tx| {
                tx.execute(
                    "INSERT INTO lease_names (namespace, name, slots, last_token) VALUES ('default', ?1, 1, 1)",
                    [name],
                )
                .map_err(internal)?;
                Ok(Outcome::Commit(()))
            })
            .await
            .unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_long_read_holds_up_neither_another_read_nor_a_write() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(
            SqliteStore::open(
                dir.path().join("arbiter.db"),
                Synchronous::Normal,
                Duration::from_secs(15),
            )
            .await
            .unwrap(),
        );
        add(&store, "a").await;
        let (entered, in_snapshot) = tokio::sync::oneshot::channel();
        let (release, released) = std::sync::mpsc::channel::<()>();
        let long = tokio::spawn({
            let store = store.clone();
            async move {
                store
                    .read(move |tx| {
                        let before = count(tx)?;
                        let _ = entered.send(());
                        released
                            .recv_timeout(BOUND)
                            .map_err(|_| Error::internal("the long read was never released"))?;
                        Ok((before, count(tx)?))
                    })
                    .await
            }
        });
        in_snapshot.await.expect("the long read started");
        // While it holds its snapshot open, another read completes, and a write commits.
        let other = tokio::time::timeout(BOUND, store.read(count))
            .await
            .expect("a second read completes while the first is open")
            .unwrap();
        assert_eq!(other, 1);
        tokio::time::timeout(BOUND, add(&store, "b"))
            .await
            .expect("a write commits while a read is open");
        assert_eq!(store.read(count).await.unwrap(), 2);
        release.send(()).unwrap();
        // The long read saw one snapshot throughout.
        assert_eq!(long.await.unwrap().unwrap(), (1, 1));
    }
}
