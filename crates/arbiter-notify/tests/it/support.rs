//! What the delivery tests share: a configuration from text, a store, notifications, and
//! the dispatcher run in the test (library API), once or as a daemon.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use arbiter_config::Config;
use arbiter_core::notify::{Notification, Severity};
use arbiter_notify::dispatch::{Dispatcher, LEASE, Report};
use arbiter_store::{Accepted, Store, StoreUrl};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The namespace the tests use (message ids are `fleet-<outbox id>`).
pub const NS: &str = "fleet";

/// [`NS`] as the store takes it.
pub fn ns() -> arbiter_core::name::Namespace {
    arbiter_core::name::Namespace::parse(NS).unwrap()
}

pub fn config(text: &str) -> Arc<Config> {
    Arc::new(Config::parse(text, Path::new("arbiter.toml")).unwrap_or_else(|e| panic!("{}\n{text}", e.message)))
}

pub async fn open_store(url: &str) -> Store {
    let url = StoreUrl::parse(url).expect("a store URL");
    Store::open(&url).await.expect("the store opens")
}

pub fn note(kind: &str, title: &str, dedupe: Option<&str>) -> Notification {
    Notification {
        kind: kind.into(),
        severity: Severity::Warning,
        source: "tests".into(),
        title: title.into(),
        body: String::new(),
        tags: Default::default(),
        dedupe_key: dedupe.map(str::to_string),
    }
}

/// Routes and accepts a notification (durable when this returns).
pub async fn accept(store: &Store, config: &Config, notification: Notification) -> Accepted {
    arbiter_notify::accept(store, config, &ns(), notification, None)
        .await
        .unwrap_or_else(|e| panic!("accept failed: {e:?}"))
}

/// The id a receiver sees for outbox entry `id`.
pub fn message_id(id: i64) -> String {
    format!("{NS}-{id}")
}

/// Runs a dispatcher until nothing more is due now (`arbiter dispatch --once`).
pub async fn dispatch_once(store: &Store, config: &Arc<Config>) -> Report {
    let dispatcher = Dispatcher::new(store.clone(), config.clone(), &ns());
    let mut held = dispatcher
        .lease(Some(Duration::from_secs(10)))
        .await
        .expect("the dispatcher lease");
    let report = tokio::time::timeout(
        Duration::from_secs(30),
        dispatcher.run(&mut held, true, std::future::pending()),
    )
    .await
    .expect("dispatch --once finishes within 30s");
    release(held).await;
    report.expect("the dispatcher runs")
}

async fn release(held: arbiter_client::lease::HeldLease) {
    assert_eq!(held.name(), LEASE);
    held.release().await.expect("the dispatcher lease is released");
}

/// A dispatcher running in the background (`arbiter dispatch`), until [`Running::stop`].
pub struct Running {
    stop: oneshot::Sender<()>,
    task: JoinHandle<Report>,
}

pub async fn start_dispatcher(store: &Store, config: &Arc<Config>) -> Running {
    let dispatcher = Dispatcher::new(store.clone(), config.clone(), &ns());
    let mut held = dispatcher
        .lease(Some(Duration::from_secs(10)))
        .await
        .expect("the dispatcher lease");
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let report = dispatcher
            .run(&mut held, false, async {
                let _ = stopped.await;
            })
            .await;
        release(held).await;
        report.expect("the dispatcher runs until stopped")
    });
    Running { stop, task }
}

impl Running {
    pub async fn stop(self) -> Report {
        let _ = self.stop.send(());
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("the dispatcher stops within 10s")
            .expect("the dispatcher task does not panic")
    }
}
