//! Work items: a durable queue whose claims are leases with fencing tokens.
//!
//! An item is pushed into a queue (optionally under an idempotency **key**: the same key
//! pushed twice into one queue is one item, whatever state it is in now), waits `ready`
//! until its `not_before`, and is **claimed** by one worker at a time: the highest
//! priority, then the oldest, among the ready items whose `requires` are all among the
//! worker's capabilities. A claim is a lease on the item: it lasts `lease` from the store's
//! clock, is extended by heartbeats, and carries a **claim token** that strictly increases
//! per item (never reused, never decreased), so a worker that paused past its claim cannot
//! heartbeat, finish or fail an item someone else now holds: a stale token is
//! [`ErrorKind::Lost`](crate::ErrorKind::Lost) and changes nothing.
//!
//! States: `ready` → (claim) → `claimed` → `done` (success), back to `ready` (a failure with
//! attempts left, after a backoff; an expired claim, at once), or `dead` (a failure or an
//! expiry on the last attempt). `queue retry` brings a `dead` or `cancelled` item back to
//! `ready` with a fresh set of attempts; `cancelled` is an item withdrawn before it was
//! worked (a GitHub issue closed while its item waited).
//!
//! The attempt counter counts claims: the first claim is attempt 1. An item is dead when
//! the attempt that just ended (failed or expired) was attempt `max_attempts`.
//!
//! Pure rules only, as everywhere in this crate: the store applies them in its
//! transactions with its own clock.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::Millis;
use crate::lease::Holder;
use crate::name::{Capability, Namespace, QueueName};
use crate::{Error, ErrorKind, ParseError};

/// Attempts an item gets unless its push says otherwise.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 5;
/// The most attempts a push may ask for.
pub const MAX_ATTEMPTS: u32 = 1000;
/// The largest body an item may carry (1 MiB).
pub const MAX_BODY_BYTES: usize = 1 << 20;
/// The longest idempotency key (a GitHub issue URL fits many times over).
pub const MAX_KEY_BYTES: usize = 1024;
/// The most capabilities an item may require, or a worker may declare.
pub const MAX_CAPABILITIES: usize = 64;
/// The largest `done --result` or `fail --reason` text kept (64 KiB).
pub const MAX_NOTE_BYTES: usize = 64 * 1024;
/// The shortest and longest claim lease.
pub const MIN_LEASE: Duration = Duration::from_millis(100);
pub const MAX_LEASE: Duration = Duration::from_secs(24 * 3600);
/// The default claim lease (`--lease`).
pub const DEFAULT_LEASE: Duration = Duration::from_secs(5 * 60);
/// Backoff after a failure without `--retry-in`: `BACKOFF_BASE · 2^(attempt−1)`, at most
/// `BACKOFF_MAX`.
pub const BACKOFF_BASE: Duration = Duration::from_secs(10);
pub const BACKOFF_MAX: Duration = Duration::from_secs(3600);
/// The latest `--retry-in` or relative `--not-before` (30 days).
pub const MAX_DELAY: Duration = Duration::from_secs(30 * 24 * 3600);

/// Where an item is in its life.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ItemState {
    Ready,
    Claimed,
    Done,
    Dead,
    Cancelled,
}

impl ItemState {
    pub const ALL: [ItemState; 5] = [
        ItemState::Ready,
        ItemState::Claimed,
        ItemState::Done,
        ItemState::Dead,
        ItemState::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ItemState::Ready => "ready",
            ItemState::Claimed => "claimed",
            ItemState::Done => "done",
            ItemState::Dead => "dead",
            ItemState::Cancelled => "cancelled",
        }
    }
}

impl fmt::Display for ItemState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ItemState {
    type Err = ParseError;
    fn from_str(text: &str) -> Result<Self, ParseError> {
        ItemState::ALL
            .into_iter()
            .find(|state| state.as_str() == text)
            .ok_or_else(|| {
                ParseError::new(format!(
                    "invalid item state {text:?}: expected one of ready, claimed, done, dead, cancelled"
                ))
            })
    }
}

/// How an attempt ended.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AttemptOutcome {
    Done,
    Failed,
    /// The claim ran out without a heartbeat, done or fail (the worker died or stalled).
    Expired,
}

impl AttemptOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            AttemptOutcome::Done => "done",
            AttemptOutcome::Failed => "failed",
            AttemptOutcome::Expired => "expired",
        }
    }
}

/// When a pushed item becomes claimable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotBefore {
    /// This long after the push, by the store's clock.
    After(Duration),
    /// At this time of the store's clock.
    At(Millis),
}

/// An idempotency key: 1–1024 bytes with no control characters.
pub fn check_key(key: &str) -> Result<(), ParseError> {
    if key.is_empty() || key.len() > MAX_KEY_BYTES {
        return Err(ParseError::new(format!(
            "invalid item key: expected 1-{MAX_KEY_BYTES} bytes, got {}",
            key.len()
        )));
    }
    if key.chars().any(char::is_control) {
        return Err(ParseError::new("invalid item key: control characters are not allowed"));
    }
    Ok(())
}

/// An item body: at most [`MAX_BODY_BYTES`] (it may be empty).
pub fn check_body(body: &str) -> Result<(), ParseError> {
    if body.len() > MAX_BODY_BYTES {
        return Err(ParseError::new(format!(
            "item body is {} bytes; at most {MAX_BODY_BYTES} (1 MiB) are allowed",
            body.len()
        )));
    }
    Ok(())
}

/// `done --result` / `fail --reason` text: at most [`MAX_NOTE_BYTES`]. `what` names it.
pub fn check_note(what: &str, text: &str) -> Result<(), ParseError> {
    if text.len() > MAX_NOTE_BYTES {
        return Err(ParseError::new(format!(
            "{what} is {} bytes; at most {MAX_NOTE_BYTES} (64 KiB) are allowed",
            text.len()
        )));
    }
    Ok(())
}

/// `--max-attempts`: 1 to [`MAX_ATTEMPTS`].
pub fn check_max_attempts(n: u32) -> Result<u32, ParseError> {
    if (1..=MAX_ATTEMPTS).contains(&n) {
        Ok(n)
    } else {
        Err(ParseError::new(format!(
            "invalid max attempts {n}: expected 1 to {MAX_ATTEMPTS}"
        )))
    }
}

/// A claim's lease: [`MIN_LEASE`] to [`MAX_LEASE`].
pub fn check_lease(lease: Duration) -> Result<Duration, ParseError> {
    if (MIN_LEASE..=MAX_LEASE).contains(&lease) {
        Ok(lease)
    } else {
        Err(ParseError::new(format!(
            "invalid claim lease {lease:?}: expected 100ms to 24h"
        )))
    }
}

/// A delay (`--retry-in`, relative `--not-before`): at most [`MAX_DELAY`].
pub fn check_delay(what: &str, delay: Duration) -> Result<Duration, ParseError> {
    if delay <= MAX_DELAY {
        Ok(delay)
    } else {
        Err(ParseError::new(format!("invalid {what} {delay:?}: at most 30 days")))
    }
}

/// A set of capabilities, sorted and without repeats (what an item requires, or what a
/// worker offers). At most [`MAX_CAPABILITIES`].
pub fn capability_set(caps: impl IntoIterator<Item = Capability>) -> Result<Vec<Capability>, ParseError> {
    let set: BTreeSet<Capability> = caps.into_iter().collect();
    if set.len() > MAX_CAPABILITIES {
        return Err(ParseError::new(format!(
            "{} capabilities given; at most {MAX_CAPABILITIES} are allowed",
            set.len()
        )));
    }
    Ok(set.into_iter().collect())
}

/// Whether a worker with `offered` may take an item that `requires`: every requirement is
/// offered.
pub fn satisfies(requires: &[Capability], offered: &[Capability]) -> bool {
    requires.iter().all(|need| offered.contains(need))
}

/// The wait before a failed item is ready again when the failure named none:
/// `BACKOFF_BASE · 2^(attempt−1)`, at most `BACKOFF_MAX`.
pub fn backoff(attempt: u32) -> Duration {
    let exp = attempt.saturating_sub(1).min(20);
    BACKOFF_BASE.saturating_mul(1u32 << exp).min(BACKOFF_MAX)
}

/// Where an item goes when its attempt `attempt` (of `max_attempts`) failed or expired.
pub fn after_attempt(attempt: u32, max_attempts: u32) -> ItemState {
    if attempt >= max_attempts {
        ItemState::Dead
    } else {
        ItemState::Ready
    }
}

/// The refusal for a token that does not hold the item's live claim.
pub fn stale_token(id: i64, token: i64, why: &str) -> Error {
    Error::new(
        ErrorKind::Lost,
        format!("item {id}: claim token {token} is stale ({why}); nothing was changed"),
    )
}

/// An item to push, valid by construction ([`NewItem::new`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewItem {
    pub namespace: Namespace,
    pub queue: QueueName,
    pub body: String,
    pub key: Option<String>,
    pub priority: i32,
    /// Sorted, no repeats.
    pub requires: Vec<Capability>,
    pub not_before: Option<NotBefore>,
    pub max_attempts: u32,
}

impl NewItem {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        namespace: Namespace,
        queue: QueueName,
        body: String,
        key: Option<String>,
        priority: i32,
        requires: Vec<Capability>,
        not_before: Option<NotBefore>,
        max_attempts: u32,
    ) -> Result<NewItem, ParseError> {
        check_body(&body)?;
        if let Some(key) = &key {
            check_key(key)?;
        }
        if let Some(NotBefore::After(delay)) = not_before {
            check_delay("not-before delay", delay)?;
        }
        Ok(NewItem {
            namespace,
            queue,
            body,
            key,
            priority,
            requires: capability_set(requires)?,
            not_before,
            max_attempts: check_max_attempts(max_attempts)?,
        })
    }
}

/// What a push did.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pushed {
    pub id: i64,
    /// False when the key was already in the queue: `id` is the first push's item.
    pub created: bool,
    pub state: ItemState,
}

/// A worker asking for one item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimRequest {
    pub namespace: Namespace,
    pub queue: QueueName,
    pub holder: Holder,
    /// Sorted, no repeats ([`capability_set`]).
    pub capabilities: Vec<Capability>,
    /// How long the claim lasts without a heartbeat ([`check_lease`]).
    pub lease: Duration,
}

/// A held claim: the item and the token that proves it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claim {
    pub namespace: Namespace,
    pub queue: QueueName,
    pub id: i64,
    /// The fencing token of this claim: larger than every earlier claim's of this item.
    pub token: i64,
    /// Which claim of the item this is (1 for the first).
    pub attempt: u32,
    pub max_attempts: u32,
    pub body: String,
    pub key: Option<String>,
    pub priority: i32,
    pub requires: Vec<Capability>,
    pub holder: Holder,
    pub claimed_at: Millis,
    pub expires_at: Millis,
    pub lease_ms: i64,
}

/// What one claim try found.
// One per claim try, returned at once: not worth a box.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimOutcome {
    Claimed(Claim),
    /// Nothing this worker may take now. `next_at`: the earliest time of the store's clock
    /// when that may change without a push — a delayed item this worker could take becomes
    /// ready, or a claim runs out —, if any. `now`: the store's clock.
    Empty {
        now: Millis,
        next_at: Option<Millis>,
    },
}

/// How a claim try also tidied up: claims of the queue that had run out were ended
/// (returned to ready, or dead on their last attempt) in the same transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimed {
    pub outcome: ClaimOutcome,
    /// How many items turned dead in this transaction (their alert is raised by the caller
    /// through [`QueueStore::unalerted_dead`](../../arbiter_store/api/trait.QueueStore.html)).
    pub newly_dead: u32,
}

/// A failure report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailRequest {
    pub namespace: Namespace,
    pub id: i64,
    pub token: i64,
    pub reason: String,
    /// When to make it ready again; `None`: [`backoff`] of the attempt.
    pub retry_in: Option<Duration>,
}

/// One item as stored.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Item {
    pub namespace: Namespace,
    pub queue: QueueName,
    pub id: i64,
    pub state: ItemState,
    pub priority: i32,
    pub requires: Vec<Capability>,
    pub key: Option<String>,
    pub body: String,
    /// Claims so far (since the last `retry`).
    pub attempt: u32,
    pub max_attempts: u32,
    /// The last claim token given out (0: never claimed).
    pub last_token: i64,
    /// The current claim's holder (`claimed` only).
    pub holder: Option<Holder>,
    /// The current claim's expiry (`claimed` only).
    pub expires_at: Option<Millis>,
    /// Claimable from (`ready` only matters).
    pub not_before: Millis,
    pub created_at: Millis,
    pub updated_at: Millis,
    /// `done --result`.
    pub result: Option<String>,
    /// The last failure's reason, or "claim expired".
    pub last_error: Option<String>,
}

/// One claim of an item, kept for `queue show`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemAttempt {
    pub attempt: u32,
    pub token: i64,
    pub holder: Holder,
    pub claimed_at: Millis,
    /// `None` while the claim is live.
    pub ended_at: Option<Millis>,
    pub outcome: Option<AttemptOutcome>,
    pub error: Option<String>,
}

/// An item and every claim of it, oldest first.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemInfo {
    pub item: Item,
    pub attempts: Vec<ItemAttempt>,
    /// The store's clock when read.
    pub now: Millis,
}

/// One queue's counts.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueStats {
    pub queue: QueueName,
    /// Ready now.
    pub ready: u64,
    /// Ready later (`not_before` in the future: delayed pushes and failures backing off).
    pub delayed: u64,
    /// Claimed, with the claim still live.
    pub claimed: u64,
    /// Claimed, with the claim run out: returned by the next claim of the queue.
    pub expired: u64,
    pub done: u64,
    pub dead: u64,
    pub cancelled: u64,
    /// When the oldest item ready now became ready (its `not_before`, or its push).
    pub oldest_ready_at: Option<Millis>,
    /// Claims in the last 60 s of the store's clock.
    pub claims_last_minute: u64,
}

/// A host that declared its capabilities (`watch`, `queue work`).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostRecord {
    pub host: String,
    pub capabilities: Vec<Capability>,
    pub last_seen: Millis,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps(list: &[&str]) -> Vec<Capability> {
        list.iter().map(|c| Capability::parse(c).unwrap()).collect()
    }

    #[test]
    fn requirements_are_a_subset_of_what_is_offered() {
        assert!(satisfies(&[], &[]));
        assert!(satisfies(&caps(&["gpu"]), &caps(&["gpu", "windows"])));
        assert!(!satisfies(&caps(&["gpu", "repo:web"]), &caps(&["gpu"])));
    }

    #[test]
    fn capabilities_are_lowercase_names() {
        for ok in ["gpu", "repo:web", "os/windows-11", "x86_64", "9"] {
            assert!(Capability::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", "GPU", "-x", "a b", "é", &"x".repeat(65)] {
            assert!(Capability::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn backoff_doubles_up_to_an_hour() {
        assert_eq!(backoff(1), Duration::from_secs(10));
        assert_eq!(backoff(2), Duration::from_secs(20));
        assert_eq!(backoff(0), Duration::from_secs(10));
        assert_eq!(backoff(12), BACKOFF_MAX);
        assert_eq!(backoff(u32::MAX), BACKOFF_MAX);
    }

    #[test]
    fn the_last_attempt_ends_dead() {
        assert_eq!(after_attempt(1, 3), ItemState::Ready);
        assert_eq!(after_attempt(3, 3), ItemState::Dead);
        assert_eq!(after_attempt(4, 3), ItemState::Dead);
    }

    #[test]
    fn new_items_are_checked() {
        let ns = Namespace::default();
        let q = QueueName::parse("q").unwrap();
        let item = |body: String, key: Option<&str>, max| {
            NewItem::new(
                ns.clone(),
                q.clone(),
                body,
                key.map(String::from),
                0,
                caps(&["b", "a", "b"]),
                None,
                max,
            )
        };
        assert_eq!(item("x".into(), Some("k"), 3).unwrap().requires, caps(&["a", "b"]));
        assert!(item("x".repeat(MAX_BODY_BYTES + 1), None, 3).is_err());
        assert!(item("x".into(), Some(""), 3).is_err());
        assert!(item("x".into(), Some("a\nb"), 3).is_err());
        assert!(item("x".into(), None, 0).is_err());
        assert!(item("x".into(), None, MAX_ATTEMPTS + 1).is_err());
    }

    #[test]
    fn states_parse() {
        for state in ItemState::ALL {
            assert_eq!(state.as_str().parse::<ItemState>().unwrap(), state);
        }
        assert!("pending".parse::<ItemState>().is_err());
    }
}
