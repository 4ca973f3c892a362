//! Notifications: accept one into the outbox (routed by the config), resolve a dedupe
//! key, list and retry the outbox, list and test the configured channels.

use arbiter_config::{Config, Target};
use arbiter_core::name::Namespace;
use arbiter_core::notify::Notification;
use arbiter_core::{Error, ErrorKind, Result};
use arbiter_notify::send::Attempt;
use arbiter_store::{AcceptRequest, Accepted, DeliveryState, OutboxEntry, Resolved, Store};
use serde::{Deserialize, Serialize};

/// A notification checked and routed: what [`notify`] accepts into the outbox.
#[derive(Debug, Clone)]
pub struct Routed(AcceptRequest);

/// Checks `notification` and routes it by `config` (or to `channel` alone). Touches no
/// store: a front end calls it before opening one, so bad input writes nothing. The
/// notification is validated here, once, for every front end (by `arbiter_notify::route`).
pub fn route(
    config: &Config,
    namespace: &Namespace,
    notification: Notification,
    channel: Option<&str>,
) -> Result<Routed> {
    arbiter_notify::route(config, namespace, notification, channel).map(Routed)
}

/// Accepts a routed notification into the outbox (folding repeats of its dedupe key);
/// returns once that is durable.
pub async fn notify(store: &Store, routed: Routed) -> Result<Accepted> {
    store.notify().accept(routed.0).await
}

/// The condition behind `dedupe_key` cleared: one recovery message to every channel it
/// alerted.
pub async fn resolve(store: &Store, namespace: &Namespace, dedupe_key: &str, body: Option<&str>) -> Result<Resolved> {
    store.notify().resolve(namespace, dedupe_key, body).await
}

/// The most entries one outbox listing returns.
pub const MAX_LIST: u64 = 10_000;

/// The outbox, newest first (only `state` ones when given).
pub async fn list(
    store: &Store,
    namespace: &Namespace,
    state: Option<DeliveryState>,
    limit: usize,
) -> Result<Vec<OutboxEntry>> {
    store.notify().list(namespace, state, limit).await
}

/// Puts a dead notification back in the queue.
pub async fn retry(store: &Store, namespace: &Namespace, id: i64) -> Result<OutboxEntry> {
    store.notify().retry(namespace, id).await
}

/// A configured channel, secrets hidden: a URL target shows its host only.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelView {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: std::borrow::Cow<'static, str>,
    pub name: Option<String>,
    pub target: String,
    pub signed: bool,
    /// `N/Ss`: at most N messages every S seconds.
    pub rate: Option<String>,
}

/// The configured channels, in the config's order.
pub fn channels(config: &Config) -> Vec<ChannelView> {
    config
        .channels
        .iter()
        .map(|c| ChannelView {
            id: c.id.clone(),
            kind: c.kind.as_str().into(),
            name: c.name.clone(),
            target: match &c.target {
                Target::Url(url) => arbiter_config::redact_url(url),
                Target::File(path) => path.display().to_string(),
                Target::Stdout => "stdout".to_string(),
            },
            signed: c.secret.is_some(),
            rate: c.rate.map(|r| format!("{}/{}s", r.count, r.per.as_secs())),
        })
        .collect()
}

/// A test message the channel took.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TestDelivered {
    pub channel: String,
    pub delivered: bool,
    /// The receiver's HTTP status, for HTTP channels.
    pub status: Option<u16>,
}

/// Sends a test message to channel `id` now. A channel that does not take it is
/// `ErrorKind::Failed` (the channel failed, not the store).
pub async fn test_channel(config: &Config, id: &str) -> Result<TestDelivered> {
    let channel = config.channel_by_id(id)?;
    match arbiter_notify::dispatch::test_channel(config, channel).await {
        Attempt::Delivered { status } => Ok(TestDelivered {
            channel: id.to_string(),
            delivered: true,
            status,
        }),
        Attempt::Failed { error, .. } => Err(Error::new(
            ErrorKind::Failed,
            format!("channel {id:?} did not take the test message: {error}"),
        )),
    }
}
