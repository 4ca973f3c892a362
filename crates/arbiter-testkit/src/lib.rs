//! Test support shared by every crate's tests: [`each_backend!`] (a test per backend),
//! [`wait`] (bounded waits: [`eventually`]), [`receiver`] (an HTTP receiver on loopback
//! that records requests and answers as told), [`net`] (a link that can be frozen).
//!
//! PostgreSQL tests call [`postgres_url`] for a store URL naming a fresh schema of their
//! own (so tests run in parallel and a rerun starts clean). The server is
//! `ARBITER_TEST_POSTGRES` (default `postgres://postgres@127.0.0.1:5432/test`). When it
//! cannot be reached, the test prints that it was skipped and returns — except under
//! `CI`, where an unreachable server fails the test: CI must run them.

pub mod net;
pub mod receiver;
pub mod wait;

pub use wait::{eventually, eventually_async, poll_for, poll_for_async};

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

pub const DEFAULT_POSTGRES: &str = "postgres://postgres@127.0.0.1:5432/test";

/// The PostgreSQL server tests use.
pub fn postgres_server() -> String {
    std::env::var("ARBITER_TEST_POSTGRES").unwrap_or_else(|_| DEFAULT_POSTGRES.to_string())
}

/// A fresh, unique schema name: `t<unix seconds>_<pid>_<counter>_<test>`.
pub fn unique_schema(test: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let clean: String = test
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .take(24)
        .collect();
    format!(
        "t{}_{}_{}_{clean}",
        unix_seconds(),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

fn unix_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Drops test schemas older than an hour (left by earlier runs), once per process.
async fn drop_stale_schemas(client: &tokio_postgres::Client) {
    static DONE: std::sync::Once = std::sync::Once::new();
    let mut first = false;
    DONE.call_once(|| first = true);
    if !first {
        return;
    }
    let Ok(rows) = client
        .query("SELECT nspname FROM pg_namespace WHERE nspname ~ '^t[0-9]+_'", &[])
        .await
    else {
        return;
    };
    let cutoff = unix_seconds().saturating_sub(3600);
    for row in rows {
        let name: String = row.get(0);
        let born: u64 = name[1..]
            .split('_')
            .next()
            .and_then(|s| s.parse().ok())
            .unwrap_or(u64::MAX);
        if born < cutoff {
            let _ = client
                .batch_execute(&format!("DROP SCHEMA IF EXISTS {name} CASCADE"))
                .await;
        }
    }
}

/// A store URL on a fresh schema for `test`, or `None` (after printing why) when no server
/// is reachable outside CI. Under `CI` an unreachable server panics.
pub async fn postgres_url(test: &str) -> Option<String> {
    let server = postgres_server();
    match tokio_postgres::connect(&server, tokio_postgres::NoTls).await {
        Ok((client, connection)) => {
            let driver = tokio::spawn(connection);
            drop_stale_schemas(&client).await;
            drop(client);
            let _ = driver.await;
            Some(format!("{server}?schema={}", unique_schema(test)))
        }
        Err(e) if std::env::var_os("CI").is_some() => {
            panic!("CI is set but PostgreSQL at {server} is unreachable ({e}): the Postgres tests must run in CI")
        }
        Err(e) => {
            eprintln!("SKIPPED {test} on postgres: no server at {server} ({e}); set ARBITER_TEST_POSTGRES");
            None
        }
    }
}

/// Like [`postgres_url`], for blocking tests.
pub fn postgres_url_blocking(test: &str) -> Option<String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime starts")
        .block_on(postgres_url(test))
}

/// A temp directory holding a SQLite store; the URL is `sqlite://<dir>/arbiter.db`.
pub struct TempSqlite {
    pub dir: tempfile::TempDir,
}

impl TempSqlite {
    pub fn new() -> TempSqlite {
        TempSqlite {
            dir: tempfile::tempdir().expect("a temp dir"),
        }
    }
    pub fn path(&self) -> std::path::PathBuf {
        self.dir.path().join("arbiter.db")
    }
    pub fn url(&self) -> String {
        format!("sqlite://{}", self.path().display())
    }
}

impl Default for TempSqlite {
    fn default() -> Self {
        Self::new()
    }
}

/// A test per backend, in one of two forms:
///
/// - `each_backend!(name, |url: String| async move { … })` declares a module `name` with two
///   tokio tests, `sqlite` and `postgres`, each calling the body with the URL of a fresh
///   store of that backend.
/// - `each_backend!(Harness; a, b, …)` declares modules `sqlite` and `postgres`, each with a
///   `#[test]` per scenario `fn a(store: &Harness)` of the calling module: the harness comes
///   from `Harness::sqlite()` and `Harness::postgres(test_name) -> Option<Harness>`.
///
/// The Postgres tests return early (after printing SKIPPED) when no server is reachable
/// outside CI.
#[macro_export]
macro_rules! each_backend {
    ($harness:ident; $($scenario:ident),* $(,)?) => {
        mod sqlite {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[test]
                fn $scenario() {
                    super::$scenario(&$harness::sqlite());
                }
            )*
        }
        mod postgres {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[test]
                fn $scenario() {
                    if let Some(store) = $harness::postgres(stringify!($scenario)) {
                        super::$scenario(&store);
                    }
                }
            )*
        }
    };
    ($name:ident, $body:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let dir = $crate::TempSqlite::new();
                ($body)(dir.url()).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if let Some(url) = $crate::postgres_url(stringify!($name)).await {
                    ($body)(url).await;
                }
            }
        }
    };
}
