//! The embedded SQLite backend.
//!
//! One database file in WAL mode, shared directly by every arbiter process on the machine.
//! rusqlite is blocking, so each operation runs on tokio's blocking pool with the handle's
//! one connection; writers take SQLite's write lock up front (`BEGIN IMMEDIATE`), so a
//! read-then-write transaction never fails half-way on a lock upgrade, and wait for each
//! other through the busy timeout. The store's clock is this machine's clock, read inside
//! the transaction.
//!
//! Waiting for changes: `PRAGMA data_version` on a second connection changes whenever
//! another connection commits. A subscription polls it — a read of the WAL index in shared
//! memory, not of the database — every millisecond at first, backing off to every 50 ms
//! while nothing changes: the cheap wait SQLite allows (it has no LISTEN/NOTIFY).

mod kv;
mod lease;
mod log;
mod loops;
mod migrations;
mod notify;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arbiter_core::{Error, ErrorKind, Millis, Result};
use async_trait::async_trait;
use rusqlite::{Connection, OpenFlags, Transaction, TransactionBehavior};

use crate::api::{Changes, Subscription, Topic};
use crate::url::Synchronous;
use crate::{Backend, SCHEMA_VERSION, StoreInfo};

/// How often a subscription looks at `data_version`: soon after a change (a busy lease
/// hands over quickly), backing off while nothing happens (an idle watcher costs little).
const POLL_FIRST: Duration = Duration::from_millis(1);
const POLL_MAX: Duration = Duration::from_millis(50);

pub(crate) struct SqliteStore {
    path: PathBuf,
    conn: Arc<Mutex<Connection>>,
    watcher: Arc<Mutex<Connection>>,
}

impl SqliteStore {
    pub(crate) async fn open(path: PathBuf, synchronous: Synchronous, busy_timeout: Duration) -> Result<SqliteStore> {
        let open_path = path.clone();
        let (conn, watcher) = tokio::task::spawn_blocking(move || -> Result<_> {
            let mut conn = open_connection(&open_path, synchronous, busy_timeout)?;
            migrate(&mut conn, &open_path)?;
            let watcher = open_connection(&open_path, synchronous, busy_timeout)?;
            Ok((conn, watcher))
        })
        .await
        .map_err(|e| Error::internal(format!("SQLite open task failed: {e}")))??;
        Ok(SqliteStore {
            path,
            conn: Arc::new(Mutex::new(conn)),
            watcher: Arc::new(Mutex::new(watcher)),
        })
    }

    /// Runs `f` in a write transaction (`BEGIN IMMEDIATE`) on the blocking pool; commits
    /// when it returns `Ok(Commit(..))`, rolls back otherwise.
    pub(crate) async fn write<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>) -> Result<Outcome<T>> + Send + 'static,
    {
        let conn = self.conn.clone();
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(|e| sqlite_error(&path, e))?;
            match f(&tx)? {
                Outcome::Commit(value) => {
                    tx.commit().map_err(|e| sqlite_error(&path, e))?;
                    Ok(value)
                }
                Outcome::Rollback(value) => {
                    tx.rollback().map_err(|e| sqlite_error(&path, e))?;
                    Ok(value)
                }
            }
        })
        .await
        .map_err(|e| Error::internal(format!("SQLite task failed: {e}")))?
    }

    /// Runs `f` in a read transaction (one consistent snapshot) on the blocking pool.
    pub(crate) async fn read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>) -> Result<T> + Send + 'static,
    {
        let conn = self.conn.clone();
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Deferred)
                .map_err(|e| sqlite_error(&path, e))?;
            let value = f(&tx)?;
            tx.commit().map_err(|e| sqlite_error(&path, e))?;
            Ok(value)
        })
        .await
        .map_err(|e| Error::internal(format!("SQLite task failed: {e}")))?
    }
}

/// What a write transaction does at its end. A transaction that changed nothing worth
/// telling others rolls back, so it does not wake every waiter.
pub(crate) enum Outcome<T> {
    Commit(T),
    Rollback(T),
}

fn open_connection(path: &std::path::Path, synchronous: Synchronous, busy_timeout: Duration) -> Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
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
    conn.execute_batch(&format!("PRAGMA synchronous = {sync}; PRAGMA foreign_keys = ON;"))
        .map_err(|e| sqlite_error(path, e))?;
    // The last connection to close checkpoints the WAL into the database (SQLite's default),
    // which costs a CLI call two fsyncs. Keeping the WAL instead
    // (SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE) was measured slower: the next process to open the
    // store alone rebuilds the WAL index by reading the whole WAL (9 ms per `kv put` call
    // against 5.5 ms).
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
    for step in crate::schema::pending(migrations::PRIMITIVES, version) {
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
            backend: "sqlite",
            location: self.path.display().to_string(),
            schema_version: SCHEMA_VERSION,
        }
    }
}

struct DataVersionSubscription {
    watcher: Arc<Mutex<Connection>>,
    seen: i64,
}

fn data_version(watcher: &Arc<Mutex<Connection>>) -> Result<i64> {
    let conn = watcher.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    conn.query_row("PRAGMA data_version", [], |r| r.get(0))
        .map_err(internal)
}

#[async_trait]
impl Changes for SqliteStore {
    async fn subscribe(&self, _topic: Topic) -> Result<Box<dyn Subscription>> {
        let seen = data_version(&self.watcher)?;
        Ok(Box::new(DataVersionSubscription {
            watcher: self.watcher.clone(),
            seen,
        }))
    }
}

#[async_trait]
impl Subscription for DataVersionSubscription {
    async fn wait(&mut self, timeout: Duration) -> Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut interval = POLL_FIRST;
        // Bounded: ends at the deadline at the latest.
        loop {
            let now = data_version(&self.watcher)?;
            if now != self.seen {
                self.seen = now;
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(());
            }
            tokio::time::sleep_until(deadline.min(tokio::time::Instant::now() + interval)).await;
            interval = (interval * 2).min(POLL_MAX);
        }
    }
}
