//! The conformance suite: the same tests against every backend.
//!
//! Each `conformance!` test body runs twice, on a fresh SQLite file and on a fresh
//! PostgreSQL schema (skipped, loudly, when no server is reachable outside CI).

mod kv;
mod lease;
mod limit;
mod log;
mod loops;
mod notify;
mod pgconn;
mod queue;
mod schema;
mod token;

use std::time::Duration;

use arbiter_core::ParseError;
use arbiter_core::lease::{AcquireOutcome, AcquireRequest, Attempt, Holder, Lease};
use arbiter_core::name::Namespace;
use arbiter_store::{Store, StoreUrl};

/// A store under test.
pub struct Harness {
    pub url: StoreUrl,
    pub store: Store,
}

impl Harness {
    pub async fn open(url: &str) -> Harness {
        let url = StoreUrl::parse(url).unwrap();
        let store = Store::open(&url).await.unwrap();
        Harness { url, store }
    }

    /// A second, independent handle on the same store (its own connections).
    pub async fn reopen(&self) -> Store {
        Store::open(&self.url).await.unwrap()
    }

    /// Runs SQL on the store behind arbiter's back (to corrupt it): `sqlite` on a SQLite
    /// store, `postgres` in a PostgreSQL store's schema.
    pub async fn raw(&self, sqlite: &str, postgres: &str) {
        match &self.url {
            StoreUrl::Sqlite { path, .. } => {
                rusqlite::Connection::open(path).unwrap().execute_batch(sqlite).unwrap();
            }
            StoreUrl::Postgres { url, schema, .. } => {
                let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.unwrap();
                let driver = tokio::spawn(connection);
                let schema = schema.as_deref().unwrap_or("public");
                client
                    .batch_execute(&format!("SET search_path = {schema}; {postgres}"))
                    .await
                    .unwrap();
                drop(client);
                let _ = driver.await;
            }
        }
    }
}

/// Declares a test that runs `body(harness)` on every backend.
macro_rules! conformance {
    ($name:ident, $body:expr) => {
        arbiter_testkit::each_backend!($name, |url: String| async move {
            ($body)(crate::Harness::open(&url).await).await
        });
    };
}
pub(crate) use conformance;

/// The namespace the tests use.
pub fn ns() -> Namespace {
    Namespace::default()
}

/// A name of the type the call takes (`LeaseName`, `Key`, `Prefix`, …); the tests' names
/// are valid.
pub fn n<T: std::str::FromStr<Err = ParseError>>(text: &str) -> T {
    text.parse().unwrap()
}

pub fn holder(agent: &str) -> Holder {
    Holder {
        host: "test-host".into(),
        boot_id: "test-boot".into(),
        pid: 4242,
        start_time: 1,
        agent: agent.into(),
        pgid: None,
    }
}

/// The first try of a request that does not wait (a try), for a 30 s lease of one slot.
pub fn attempt(name: &str, agent: &str) -> Attempt {
    Attempt::from(AcquireRequest {
        namespace: ns(),
        name: n(name),
        holder: holder(agent),
        ttl: Duration::from_secs(30),
        slots: 1,
        wait: None,
    })
}

pub fn granted(outcome: AcquireOutcome) -> Lease {
    match outcome {
        AcquireOutcome::Acquired(lease) => lease,
        AcquireOutcome::Busy(busy) => panic!("expected a grant, got busy: {busy:?}"),
    }
}

pub fn busy(outcome: AcquireOutcome) -> arbiter_core::lease::Busy {
    match outcome {
        AcquireOutcome::Busy(busy) => busy,
        AcquireOutcome::Acquired(lease) => panic!("expected busy, got a grant: {lease:?}"),
    }
}
