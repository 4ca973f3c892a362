//! The notification outbox's types, and what both backends share: building the messages
//! a transaction queues, digest windows, and grouping what is due.

use std::time::Duration;

use arbiter_core::name::Namespace;
use arbiter_core::notify::{Fold, Message, MessageType, Notification, crosses_threshold};
use arbiter_core::{Error, ErrorKind, Millis, Result};
use serde::{Deserialize, Serialize};

/// A notification to accept, with the channels routing chose for it.
#[derive(Debug, Clone)]
pub struct AcceptRequest {
    pub namespace: Namespace,
    pub notification: Notification,
    /// Channel ids, each with the digest period of the route that chose it.
    pub targets: Vec<(String, Option<Duration>)>,
    /// Which occurrences of a dedupe key are sent.
    pub thresholds: Vec<u64>,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Accepted {
    /// Occurrences of the dedupe key so far (1 without a key).
    pub count: u64,
    /// Whether this occurrence was queued for sending (else it was only counted).
    pub sent: bool,
    /// The outbox ids queued.
    pub deliveries: Vec<i64>,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resolved {
    pub count: u64,
    pub first_at: Millis,
    pub resolved_at: Millis,
    pub deliveries: Vec<i64>,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryState {
    Pending,
    Delivered,
    Dead,
}

impl DeliveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Delivered => "delivered",
            DeliveryState::Dead => "dead",
        }
    }
    pub fn parse(text: &str) -> std::result::Result<DeliveryState, String> {
        match text {
            "pending" => Ok(DeliveryState::Pending),
            "delivered" => Ok(DeliveryState::Delivered),
            "dead" => Ok(DeliveryState::Dead),
            other => Err(format!("invalid state {other:?}: expected pending, delivered or dead")),
        }
    }
}

/// A failed delivery attempt, as the dispatcher reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// What went wrong, for `notifications list`.
    pub error: String,
    /// When to try again.
    pub retry_in: Duration,
    /// A message older than this is dead instead.
    pub max_age: Duration,
}

/// One queued message for one channel.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxEntry {
    pub id: i64,
    pub channel: String,
    pub message: Message,
    pub state: DeliveryState,
    pub attempts: u32,
    pub next_attempt_at: Millis,
    pub last_error: Option<String>,
    pub created_at: Millis,
    pub delivered_at: Option<Millis>,
    /// For a digest route: when its window closes.
    pub digest_at: Option<Millis>,
}

/// What is due now.
#[derive(Debug, Clone, Default)]
pub struct Due {
    /// The store's clock.
    pub now: Millis,
    /// The first pending message of each channel whose attempt is due.
    pub heads: Vec<OutboxEntry>,
    /// Closed digest windows, each one channel's entries (to be sent as one message).
    pub digests: Vec<Vec<OutboxEntry>>,
    /// When the next not-yet-due entry becomes due.
    pub next_at: Option<Millis>,
}

/// The raw columns of an outbox row, as both backends read them.
pub(crate) struct Row {
    pub id: i64,
    pub namespace: String,
    pub channel: String,
    pub message: String,
    pub state: String,
    pub attempts: i64,
    pub next_attempt_at: Millis,
    pub last_error: Option<String>,
    pub created_at: Millis,
    pub delivered_at: Option<Millis>,
    pub digest_at: Option<Millis>,
}

pub(crate) const COLUMNS: &str = "id, namespace, channel, message, state, attempts, next_attempt_at, last_error, created_at, delivered_at, digest_at";

impl Row {
    pub fn decode(self) -> Result<OutboxEntry> {
        let mut message: Message = serde_json::from_str(&self.message)
            .map_err(|e| Error::internal(format!("corrupt outbox message {}: {e}", self.id)))?;
        message.id = match self.digest_at {
            Some(at) => format!("{}-digest-{}-{at}", self.namespace, self.channel),
            None => format!("{}-{}", self.namespace, self.id),
        };
        Ok(OutboxEntry {
            id: self.id,
            channel: self.channel,
            message,
            state: DeliveryState::parse(&self.state).map_err(Error::internal)?,
            attempts: u32::try_from(self.attempts).unwrap_or(u32::MAX),
            next_attempt_at: self.next_attempt_at,
            last_error: self.last_error,
            created_at: self.created_at,
            delivered_at: self.delivered_at,
            digest_at: self.digest_at,
        })
    }
}

/// A fold's state before this occurrence.
pub(crate) struct FoldRow {
    pub count: u64,
    pub first_at: Millis,
    pub channels: Vec<String>,
}

/// What an accept transaction writes, decided from the fold's previous state.
pub(crate) struct AcceptPlan {
    pub count: u64,
    pub first_at: Millis,
    pub sent: bool,
    /// The fold's channels after this occurrence.
    pub fold_channels: Vec<String>,
    /// The outbox rows to insert.
    pub rows: Vec<Queued>,
}

/// One outbox row a transaction inserts: a message (JSON) for a channel, pending from the
/// transaction's clock.
pub(crate) struct Queued {
    pub channel: String,
    pub message: String,
    /// For a digest route: when its window closes.
    pub digest_at: Option<Millis>,
}

pub(crate) fn plan_accept(request: &AcceptRequest, previous: Option<FoldRow>, now: Millis) -> AcceptPlan {
    let count = previous.as_ref().map_or(0, |p| p.count) + 1;
    let first_at = previous.as_ref().map_or(now, |p| p.first_at);
    let sent = request.notification.dedupe_key.is_none() || crosses_threshold(count, &request.thresholds);
    let mut fold_channels = previous.map(|p| p.channels).unwrap_or_default();
    let mut rows = Vec::new();
    if sent {
        let message = Message {
            id: String::new(),
            message_type: MessageType::Alert,
            notification: request.notification.clone(),
            fold: request.notification.dedupe_key.clone().map(|dedupe_key| Fold {
                dedupe_key,
                count,
                first_at,
            }),
            resolved_at: None,
            items: Vec::new(),
            created_at: now,
        };
        let json = serde_json::to_string(&message).expect("messages serialize");
        for (channel, digest) in &request.targets {
            if !fold_channels.contains(channel) {
                fold_channels.push(channel.clone());
            }
            rows.push(Queued {
                channel: channel.clone(),
                message: json.clone(),
                digest_at: digest.map(|period| digest_window_end(now, period)),
            });
        }
    }
    AcceptPlan {
        count,
        first_at,
        sent,
        fold_channels,
        rows,
    }
}

/// The end of the digest window `now` falls in.
fn digest_window_end(now: Millis, period: Duration) -> Millis {
    let period = i64::try_from(period.as_millis()).unwrap_or(i64::MAX).max(1);
    (now.div_euclid(period) + 1).saturating_mul(period)
}

/// What a resolve queues: the recovery message for a fold (`latest`: its last
/// notification, as stored), to every channel it alerted.
pub(crate) fn plan_recovery(
    latest: &str,
    body: Option<&str>,
    fold: &FoldRow,
    key: &str,
    now: Millis,
) -> Result<Vec<Queued>> {
    let mut notification: Notification =
        serde_json::from_str(latest).map_err(|e| Error::internal(format!("corrupt fold notification: {e}")))?;
    if let Some(body) = body {
        notification.body = body.to_string();
    }
    let message = Message {
        id: String::new(),
        message_type: MessageType::Recovery,
        notification,
        fold: Some(Fold {
            dedupe_key: key.to_string(),
            count: fold.count,
            first_at: fold.first_at,
        }),
        resolved_at: Some(now),
        items: Vec::new(),
        created_at: now,
    };
    let message = serde_json::to_string(&message).expect("messages serialize");
    Ok(fold
        .channels
        .iter()
        .map(|channel| Queued {
            channel: channel.clone(),
            message: message.clone(),
            digest_at: None,
        })
        .collect())
}

pub(crate) fn encode_channels(channels: &[String]) -> String {
    serde_json::to_string(channels).expect("channel lists serialize")
}

pub(crate) fn decode_channels(text: &str) -> Result<Vec<String>> {
    serde_json::from_str(text).map_err(|e| Error::internal(format!("corrupt fold channels {text:?}: {e}")))
}

/// Groups the pending rows of a namespace into what is due: per-channel heads (rows in id
/// order, digests excluded) and closed digest windows.
pub(crate) fn plan_due(pending: Vec<OutboxEntry>, now: Millis) -> Due {
    let mut due = Due { now, ..Due::default() };
    let mut seen_channels: Vec<String> = Vec::new();
    let mut windows: Vec<Vec<OutboxEntry>> = Vec::new();
    let later = |at: Millis, due: &mut Due| due.next_at = Some(due.next_at.map_or(at, |n| n.min(at)));
    for entry in pending {
        match entry.digest_at {
            None => {
                if seen_channels.contains(&entry.channel) {
                    continue;
                }
                seen_channels.push(entry.channel.clone());
                if entry.next_attempt_at <= now {
                    due.heads.push(entry);
                } else {
                    later(entry.next_attempt_at, &mut due);
                }
            }
            Some(at) => match windows
                .iter_mut()
                .find(|w| w[0].channel == entry.channel && w[0].digest_at == Some(at))
            {
                Some(window) => window.push(entry),
                None => windows.push(vec![entry]),
            },
        }
    }
    for window in windows {
        let ready = window
            .iter()
            .map(|e| e.next_attempt_at.max(e.digest_at.unwrap_or(0)))
            .max()
            .unwrap_or(0);
        if ready <= now {
            due.digests.push(window);
        } else {
            later(ready, &mut due);
        }
    }
    due
}

/// The failure of `resolve` when no condition is open under the key.
pub(crate) fn no_open_condition(namespace: &Namespace, key: &str) -> Error {
    Error::new(
        ErrorKind::NotFound,
        format!("no open condition with dedupe key {key:?} in namespace {namespace:?}"),
    )
}

/// The failure of `retry` on an id the namespace does not have.
pub(crate) fn no_notification(namespace: &Namespace, id: i64) -> Error {
    Error::new(
        ErrorKind::NotFound,
        format!("no notification {id} in namespace {namespace:?}"),
    )
}

/// The message of `notifications retry` on an entry that is not dead.
pub(crate) fn not_retryable(id: i64, state: DeliveryState) -> Error {
    match state {
        DeliveryState::Delivered => Error::new(
            arbiter_core::ErrorKind::Conflict,
            format!("notification {id} was already delivered"),
        ),
        _ => Error::new(
            arbiter_core::ErrorKind::Conflict,
            format!("notification {id} is still pending"),
        ),
    }
}
