//! Notifications out of arbiter.
//!
//! Layout:
//! - [`format`]: a message in each channel's native payload (Teams Adaptive Card, Slack
//!   Block Kit, Discord embeds, a generic JSON webhook signed with HMAC-SHA256, JSON lines,
//!   a console line), severity visible in each.
//! - [`send`]: one delivery attempt to one channel, classified (delivered, retry after).
//! - [`dispatch`]: the dispatcher: one per namespace (a lease), draining the store's
//!   outbox with per-channel order, rate limits, backoff with jitter and `Retry-After`.
//! - [`route`] (checking and routing a notification, no IO) and [`accept`] (routing it
//!   and accepting it into the outbox).
//!
//! Secrets — webhook URLs (their path is the credential) and HMAC keys — never reach logs
//! or error messages: errors name the channel id and the URL's host only.

pub mod dispatch;
pub mod format;
pub mod send;

use arbiter_config::Config;
use arbiter_core::name::Namespace;
use arbiter_core::notify::Notification;
use arbiter_core::{Error, Result};
use arbiter_store::{AcceptRequest, Accepted, Store};

/// Routes `notification` with `config` (or sends it to `channel` alone) and accepts it
/// into the outbox; returns once that is durable.
pub async fn accept(
    store: &Store,
    config: &Config,
    namespace: &Namespace,
    notification: Notification,
    channel: Option<&str>,
) -> Result<Accepted> {
    let request = route(config, namespace, notification, channel)?;
    store.notify().accept(request).await
}

/// Checks `notification` (the one place it is validated) and routes it with `config`, or
/// to `channel` alone: what [`accept`] writes. Touches no store, so a front end calls it
/// before opening one and bad input writes nothing.
pub fn route(
    config: &Config,
    namespace: &Namespace,
    notification: Notification,
    channel: Option<&str>,
) -> Result<AcceptRequest> {
    notification.validate()?;
    let targets = match channel {
        Some(id) => vec![(
            config.channel_by_id(id).map_err(|e| e.context("--channel"))?.id.clone(),
            None,
        )],
        None => config.route(&notification),
    };
    if targets.is_empty() {
        return Err(Error::bad_input(format!(
            "no route in {} takes kind {:?} (severity {}): add a default route, or pass --channel",
            config
                .path
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "the configuration".into()),
            notification.kind,
            notification.severity.as_str()
        )));
    }
    Ok(AcceptRequest {
        namespace: namespace.clone(),
        notification,
        targets,
        thresholds: config.notifications.thresholds.clone(),
    })
}

/// Installs the TLS crypto provider reqwest uses (ring). Idempotent.
pub fn init_tls() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
