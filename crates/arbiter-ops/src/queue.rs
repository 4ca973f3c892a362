//! Work items: push, claim (waiting without polling), heartbeat, done, fail, retry, list,
//! show, stats; hosts and their capabilities; the `queue.dead` alert.
//!
//! A stale claim token is `ErrorKind::Lost` and changes nothing. An item that turns dead
//! raises one notification of kind `queue.dead`, folded per queue (dedupe key
//! `queue/<queue>/dead`); the store remembers which dead items were alerted, so an alert
//! that a crash kept from being raised is raised by the next claim, failure or `stats` of
//! the namespace (at least once).

use std::time::Duration;

use arbiter_config::Config;
use arbiter_core::lease::Holder;
use arbiter_core::name::{Capability, Namespace, QueueName};
use arbiter_core::notify::{Notification, Severity};
use arbiter_core::queue::{
    AttemptOutcome, ClaimRequest, FailRequest, HostRecord, Item, ItemAttempt, ItemInfo, ItemState, NewItem, NotBefore,
    Pushed, QueueStats,
};
use arbiter_core::{Millis, ParseError, Result};
use arbiter_store::Store;
use serde::{Deserialize, Serialize};

pub use arbiter_client::queue::{ClaimGrant, ClaimResult};

use crate::view::timestamp;

/// The most items one listing returns.
pub const MAX_LIST: usize = 1000;
/// The most dead items one alert sweep looks at.
const ALERT_BATCH: usize = 100;

/// An item. Field names are stable.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemView {
    pub namespace: String,
    pub queue: String,
    pub id: i64,
    pub state: ItemState,
    pub priority: i32,
    pub requires: Vec<Capability>,
    pub key: Option<String>,
    pub body: String,
    pub attempt: u32,
    pub max_attempts: u32,
    pub last_token: i64,
    pub holder: Option<Holder>,
    pub expires_at: Option<String>,
    pub not_before: String,
    pub created_at: String,
    pub updated_at: String,
    pub result: Option<String>,
    pub last_error: Option<String>,
}

impl From<&Item> for ItemView {
    fn from(item: &Item) -> Self {
        ItemView {
            namespace: item.namespace.to_string(),
            queue: item.queue.to_string(),
            id: item.id,
            state: item.state,
            priority: item.priority,
            requires: item.requires.clone(),
            key: item.key.clone(),
            body: item.body.clone(),
            attempt: item.attempt,
            max_attempts: item.max_attempts,
            last_token: item.last_token,
            holder: item.holder.clone(),
            expires_at: item.expires_at.map(timestamp),
            not_before: timestamp(item.not_before),
            created_at: timestamp(item.created_at),
            updated_at: timestamp(item.updated_at),
            result: item.result.clone(),
            last_error: item.last_error.clone(),
        }
    }
}

/// A claim: what a worker needs to do the work and report it (`--json` of `queue claim`:
/// `id`, `token`, `body`, `attempt`, …).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimView {
    pub namespace: String,
    pub queue: String,
    pub id: i64,
    pub token: i64,
    pub attempt: u32,
    pub max_attempts: u32,
    pub body: String,
    pub key: Option<String>,
    pub priority: i32,
    pub requires: Vec<Capability>,
    pub holder: Holder,
    pub claimed_at: String,
    pub expires_at: String,
    pub lease_ms: i64,
}

impl From<&arbiter_core::queue::Claim> for ClaimView {
    fn from(claim: &arbiter_core::queue::Claim) -> Self {
        ClaimView {
            namespace: claim.namespace.to_string(),
            queue: claim.queue.to_string(),
            id: claim.id,
            token: claim.token,
            attempt: claim.attempt,
            max_attempts: claim.max_attempts,
            body: claim.body.clone(),
            key: claim.key.clone(),
            priority: claim.priority,
            requires: claim.requires.clone(),
            holder: claim.holder.clone(),
            claimed_at: timestamp(claim.claimed_at),
            expires_at: timestamp(claim.expires_at),
            lease_ms: claim.lease_ms,
        }
    }
}

/// One claim of an item.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptView {
    pub attempt: u32,
    pub token: i64,
    pub holder: Holder,
    pub claimed_at: String,
    pub ended_at: Option<String>,
    pub outcome: Option<AttemptOutcome>,
    pub error: Option<String>,
}

impl From<&ItemAttempt> for AttemptView {
    fn from(a: &ItemAttempt) -> Self {
        AttemptView {
            attempt: a.attempt,
            token: a.token,
            holder: a.holder.clone(),
            claimed_at: timestamp(a.claimed_at),
            ended_at: a.ended_at.map(timestamp),
            outcome: a.outcome,
            error: a.error.clone(),
        }
    }
}

/// An item with its attempts (`queue show`).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemInfoView {
    pub item: ItemView,
    pub attempts: Vec<AttemptView>,
}

impl From<&ItemInfo> for ItemInfoView {
    fn from(info: &ItemInfo) -> Self {
        ItemInfoView {
            item: ItemView::from(&info.item),
            attempts: info.attempts.iter().map(AttemptView::from).collect(),
        }
    }
}

/// One queue's counts (`queue stats`, `arbiter status`).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueStatsView {
    pub queue: String,
    pub ready: u64,
    pub delayed: u64,
    pub claimed: u64,
    pub expired: u64,
    pub done: u64,
    pub dead: u64,
    pub cancelled: u64,
    /// Ready items waiting: ready now, not yet claimed (`ready`).
    pub depth: u64,
    /// How long the oldest item ready now has waited, in milliseconds.
    pub oldest_ready_age_ms: Option<i64>,
    pub claims_last_minute: u64,
}

pub(crate) fn stats_view(now: Millis, stats: &QueueStats) -> QueueStatsView {
    QueueStatsView {
        queue: stats.queue.to_string(),
        ready: stats.ready,
        delayed: stats.delayed,
        claimed: stats.claimed,
        expired: stats.expired,
        done: stats.done,
        dead: stats.dead,
        cancelled: stats.cancelled,
        depth: stats.ready,
        oldest_ready_age_ms: stats.oldest_ready_at.map(|at| (now - at).max(0)),
        claims_last_minute: stats.claims_last_minute,
    }
}

/// A host and what it can do.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostView {
    pub host: String,
    pub capabilities: Vec<Capability>,
    pub last_seen: String,
    pub last_seen_ago_ms: i64,
}

fn host_view(now: Millis, host: &HostRecord) -> HostView {
    HostView {
        host: host.host.clone(),
        capabilities: host.capabilities.clone(),
        last_seen: timestamp(host.last_seen),
        last_seen_ago_ms: (now - host.last_seen).max(0),
    }
}

/// When a pushed item becomes claimable, as every front end reads it: a duration from now
/// by the store's clock (`10m`, `0s`), or an RFC 3339 time (`2026-12-01T14:00:00Z`). `what`
/// names the input (`--not-before`, `not_before`) in the error.
pub fn parse_not_before(what: &str, text: &str) -> std::result::Result<NotBefore, ParseError> {
    if let Ok(delay) = arbiter_core::duration::parse_duration_or_zero(text) {
        return arbiter_core::queue::check_delay(what, delay).map(NotBefore::After);
    }
    crate::view::parse_timestamp(what, text)
        .map(NotBefore::At)
        .map_err(|e| ParseError::new(format!("{}; or a duration from now such as 10m", e.message)))
}

/// Pushes an item (valid by construction); the same key again returns the first item.
pub async fn push(store: &Store, item: &NewItem) -> Result<Pushed> {
    store.queue().push(item).await
}

/// Claims one item, waiting up to `wait` (none: one try); `None` when there was nothing to
/// claim. Raises the alerts of items that turned dead on the way.
pub async fn claim(
    store: &Store,
    config: &Config,
    request: &ClaimRequest,
    wait: Option<Duration>,
) -> Result<Option<ClaimView>> {
    let result = arbiter_client::queue::claim(store, request, wait).await?;
    if result.newly_dead > 0 {
        raise_dead_alerts(store, config, &request.namespace).await?;
    }
    Ok(result.grant.map(|grant| ClaimView::from(&grant.claim)))
}

/// Extends a live claim by `lease` from now.
pub async fn heartbeat(
    store: &Store,
    namespace: &Namespace,
    id: i64,
    token: i64,
    lease: Duration,
    pgid: Option<u32>,
) -> Result<ItemView> {
    let item = store.queue().heartbeat(namespace, id, token, lease, pgid).await?;
    Ok(ItemView::from(&item))
}

/// Ends a live claim with success.
pub async fn done(store: &Store, namespace: &Namespace, id: i64, token: i64, result: Option<&str>) -> Result<ItemView> {
    let item = store.queue().done(namespace, id, token, result).await?;
    Ok(ItemView::from(&item))
}

/// Ends a live claim with a failure; raises the `queue.dead` alert if that was the last
/// attempt.
pub async fn fail(store: &Store, config: &Config, request: &FailRequest) -> Result<ItemView> {
    let item = store.queue().fail(request).await?;
    if item.state == ItemState::Dead {
        raise_dead_alerts(store, config, &request.namespace).await?;
    }
    Ok(ItemView::from(&item))
}

/// Brings a dead or cancelled item back to ready.
pub async fn retry(store: &Store, namespace: &Namespace, id: i64) -> Result<ItemView> {
    let item = store.queue().retry(namespace, id).await?;
    Ok(ItemView::from(&item))
}

/// Items, newest first, at most `limit` (capped at [`MAX_LIST`]).
pub async fn list(
    store: &Store,
    namespace: &Namespace,
    queue: Option<&QueueName>,
    state: Option<ItemState>,
    limit: usize,
) -> Result<Vec<ItemView>> {
    let items = store.queue().list(namespace, queue, state, limit.min(MAX_LIST)).await?;
    Ok(items.iter().map(ItemView::from).collect())
}

/// One item with its attempts.
pub async fn show(store: &Store, namespace: &Namespace, id: i64) -> Result<ItemInfoView> {
    let info = store.queue().show(namespace, id).await?;
    Ok(ItemInfoView::from(&info))
}

/// Every queue's counts; raises dead alerts a crash left unraised.
pub async fn stats(store: &Store, config: &Config, namespace: &Namespace) -> Result<Vec<QueueStatsView>> {
    raise_dead_alerts(store, config, namespace).await?;
    let (now, stats) = store.queue().stats(namespace).await?;
    Ok(stats.iter().map(|s| stats_view(now, s)).collect())
}

/// Records this host's capabilities (seen now).
pub async fn register_host(
    store: &Store,
    namespace: &Namespace,
    host: &str,
    capabilities: &[Capability],
) -> Result<()> {
    store.queue().register_host(namespace, host, capabilities).await
}

/// The hosts that declared capabilities.
pub async fn hosts(store: &Store, namespace: &Namespace) -> Result<Vec<HostView>> {
    let (now, hosts) = store.queue().hosts(namespace).await?;
    Ok(hosts.iter().map(|h| host_view(now, h)).collect())
}

/// Raises one `queue.dead` notification per queue for the dead items not yet alerted
/// (folded by the dedupe key `queue/<queue>/dead`), then marks them alerted. Returns how
/// many items it alerted. With no route for the kind, nothing is sent but the items are
/// still marked (a notification nobody routes is not retried forever).
pub async fn raise_dead_alerts(store: &Store, config: &Config, namespace: &Namespace) -> Result<u32> {
    let dead = store.queue().unalerted_dead(namespace, ALERT_BATCH).await?;
    if dead.is_empty() {
        return Ok(0);
    }
    let mut by_queue: std::collections::BTreeMap<&QueueName, Vec<&Item>> = Default::default();
    for item in &dead {
        by_queue.entry(&item.queue).or_default().push(item);
    }
    for (queue, items) in by_queue {
        let mut body = String::new();
        for item in &items {
            body.push_str(&format!(
                "item {} dead after {} attempts: {}\n",
                item.id,
                item.attempt,
                item.last_error.as_deref().unwrap_or("no reason recorded")
            ));
        }
        let notification = Notification {
            kind: "queue.dead".to_string(),
            severity: Severity::Warning,
            source: format!("arbiter on {}", arbiter_process::host_name()),
            title: format!("queue {queue}: {} item(s) dead", items.len()),
            body,
            tags: [("queue".to_string(), queue.to_string())].into_iter().collect(),
            dedupe_key: Some(format!("queue/{queue}/dead")),
        };
        // No route for this kind: nobody asked to hear of it (accepting would refuse it as
        // bad input, and the items would never be marked).
        if config.route(&notification).is_empty() {
            continue;
        }
        arbiter_notify::accept(store, config, namespace, notification, None).await?;
    }
    let ids: Vec<i64> = dead.iter().map(|item| item.id).collect();
    store.queue().mark_alerted(namespace, &ids).await?;
    Ok(ids.len() as u32)
}
