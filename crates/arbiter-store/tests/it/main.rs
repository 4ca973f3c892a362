//! The conformance suite: the same tests against every backend.
//!
//! Each `conformance!` test body runs twice, on a fresh SQLite file and on a fresh
//! PostgreSQL schema (skipped, loudly, when no server is reachable outside CI).

mod kv;
mod lease;

use std::time::Duration;

use arbiter_core::lease::{AcquireOutcome, AcquireRequest, Holder, Lease};
use arbiter_store::{Store, StoreUrl};

/// A store under test.
pub struct Harness {
    pub url: StoreUrl,
    pub store: Store,
}

impl Harness {
    /// A fresh SQLite store, and the temp dir that must outlive it (kept by the caller:
    /// a test body's `async move` captures only the fields it uses).
    pub async fn sqlite() -> (Harness, arbiter_testkit::TempSqlite) {
        let dir = arbiter_testkit::TempSqlite::new();
        let url = StoreUrl::parse(&dir.url()).unwrap();
        let store = Store::open(&url).await.unwrap();
        (Harness { url, store }, dir)
    }

    pub async fn postgres(test: &str) -> Option<Harness> {
        let url = StoreUrl::parse(&arbiter_testkit::postgres_url(test).await?).unwrap();
        let store = Store::open(&url).await.unwrap();
        Some(Harness { url, store })
    }

    /// A second, independent handle on the same store (its own connections).
    pub async fn reopen(&self) -> Store {
        Store::open(&self.url).await.unwrap()
    }
}

/// Declares a test that runs `body(harness)` on every backend.
macro_rules! conformance {
    ($name:ident, $body:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let (harness, _dir) = crate::Harness::sqlite().await;
                ($body)(harness).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if let Some(harness) = crate::Harness::postgres(stringify!($name)).await {
                    ($body)(harness).await;
                }
            }
        }
    };
}
pub(crate) use conformance;

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

pub fn request(name: &str, agent: &str) -> AcquireRequest {
    AcquireRequest {
        namespace: "default".into(),
        name: name.into(),
        holder: holder(agent),
        ttl: Duration::from_secs(30),
        slots: 1,
        enqueue: false,
        ticket: None,
        reclaim_tokens: vec![],
        reclaim_tickets: vec![],
    }
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
