//! What both backends share for work items beyond SQL text: the raw columns of item,
//! attempt and host rows and their decoding (a stored value that does not decode is
//! `Internal` "corrupted store", never a panic), the claim token check, the claim a pick
//! becomes, and the refusals. The rules (what a failure or an expiry turns an item into,
//! the backoff) are `arbiter_core::queue`'s.

use std::time::Duration;

use arbiter_core::lease::Holder;
use arbiter_core::name::{Capability, Namespace};
use arbiter_core::queue::{
    AttemptOutcome, Claim, ClaimRequest, Item, ItemAttempt, ItemState, QueueStats, after_attempt, backoff, stale_token,
};
use arbiter_core::{Error, ErrorKind, Millis, Result};

use crate::sql::{ms, stored};

/// The columns [`ItemRow`] reads, in its order (of `queue_items`).
macro_rules! item_columns {
    () => {
        "queue, id, state, priority, requires, key, body, attempt, max_attempts, last_token, holder, expires_at, \
         not_before, created_at, updated_at, result, last_error"
    };
}
pub(crate) use item_columns;

/// The columns [`AttemptRow`] reads, in its order (of `queue_attempts`).
pub(crate) const ATTEMPT_COLUMNS: &str = "attempt, token, holder, claimed_at, ended_at, outcome, error";

/// How many run-out claims one claim ends (the rest are ended by the claims after it, which
/// the `next_at` of an empty claim — a time already passed — sends at once).
pub(crate) const EXPIRE_BATCH: i64 = 100;

/// The `last_error` of an item whose claim ran out, and its attempt's error.
pub(crate) const EXPIRED: &str = "claim expired";

/// A list of capabilities as a backend stores it: SQLite, a JSON array of strings;
/// PostgreSQL, a `text[]`.
pub(crate) enum StoredCaps {
    Json(String),
    List(Vec<String>),
}

impl StoredCaps {
    pub fn decode(self) -> Result<Vec<Capability>> {
        let list = match self {
            StoredCaps::List(list) => list,
            StoredCaps::Json(text) => serde_json::from_str::<Vec<String>>(&text)
                .map_err(|e| corrupted(format!("capability list {text:?} is not a JSON array of strings: {e}")))?,
        };
        list.into_iter().map(stored).collect()
    }
}

/// Capabilities as SQLite stores them (a JSON array, sorted as given).
pub(crate) fn caps_json(caps: &[Capability]) -> String {
    serde_json::to_string(&caps.iter().map(|c| c.as_str()).collect::<Vec<_>>()).expect("strings always serialize")
}

/// Capabilities as PostgreSQL stores them.
pub(crate) fn caps_list(caps: &[Capability]) -> Vec<String> {
    caps.iter().map(|c| c.as_str().to_string()).collect()
}

fn corrupted(what: String) -> Error {
    Error::internal(format!("corrupted store: {what}"))
}

fn count<T: TryFrom<i64>>(what: &str, value: i64) -> Result<T> {
    T::try_from(value).map_err(|_| corrupted(format!("{what} {value} is out of range")))
}

fn state(text: &str) -> Result<ItemState> {
    text.parse()
        .map_err(|_| corrupted(format!("unknown item state {text:?}")))
}

fn holder(text: &str) -> Result<Holder> {
    serde_json::from_str(text).map_err(|e| corrupted(format!("item holder record {text:?}: {e}")))
}

/// The columns of an item row ([`item_columns!`]), as both backends read them.
pub(crate) struct ItemRow {
    pub queue: String,
    pub id: i64,
    pub state: String,
    pub priority: i64,
    pub requires: StoredCaps,
    pub key: Option<String>,
    pub body: String,
    pub attempt: i64,
    pub max_attempts: i64,
    pub last_token: i64,
    pub holder: Option<String>,
    pub expires_at: Option<i64>,
    pub not_before: i64,
    pub created_at: i64,
    pub updated_at: i64,
    pub result: Option<String>,
    pub last_error: Option<String>,
}

impl ItemRow {
    pub fn decode(self, namespace: &Namespace) -> Result<Item> {
        Ok(Item {
            namespace: namespace.clone(),
            queue: stored(self.queue)?,
            id: self.id,
            state: state(&self.state)?,
            priority: count("item priority", self.priority)?,
            requires: self.requires.decode()?,
            key: self.key,
            body: self.body,
            attempt: count("item attempt", self.attempt)?,
            max_attempts: count("item max attempts", self.max_attempts)?,
            last_token: self.last_token,
            holder: self.holder.as_deref().map(holder).transpose()?,
            expires_at: self.expires_at,
            not_before: self.not_before,
            created_at: self.created_at,
            updated_at: self.updated_at,
            result: self.result,
            last_error: self.last_error,
        })
    }
}

/// The columns of an attempt row ([`ATTEMPT_COLUMNS`]).
pub(crate) struct AttemptRow {
    pub attempt: i64,
    pub token: i64,
    pub holder: String,
    pub claimed_at: i64,
    pub ended_at: Option<i64>,
    pub outcome: Option<String>,
    pub error: Option<String>,
}

impl AttemptRow {
    pub fn decode(self) -> Result<ItemAttempt> {
        let outcome = match self.outcome.as_deref() {
            None => None,
            Some("done") => Some(AttemptOutcome::Done),
            Some("failed") => Some(AttemptOutcome::Failed),
            Some("expired") => Some(AttemptOutcome::Expired),
            Some(other) => return Err(corrupted(format!("unknown attempt outcome {other:?}"))),
        };
        Ok(ItemAttempt {
            attempt: count("attempt number", self.attempt)?,
            token: self.token,
            holder: holder(&self.holder)?,
            claimed_at: self.claimed_at,
            ended_at: self.ended_at,
            outcome,
            error: self.error,
        })
    }
}

/// The failure of an id that is not an item of the namespace.
pub(crate) fn not_found(namespace: &Namespace, id: i64) -> Error {
    Error::new(ErrorKind::NotFound, format!("no item {id} in namespace {namespace:?}"))
}

/// The refusal of `retry` for an item that is neither dead nor cancelled.
pub(crate) fn not_retryable(item: &Item) -> Error {
    Error::new(
        ErrorKind::Conflict,
        format!(
            "item {} is {}; only dead or cancelled items can be retried",
            item.id, item.state
        ),
    )
}

/// Whether `token` holds the live claim of `item` at `now` (the store's clock); else the
/// `Lost` refusal saying why.
pub(crate) fn check_claim(item: &Item, token: i64, now: Millis) -> Result<()> {
    let why = if item.state != ItemState::Claimed {
        format!("the item is {}", item.state)
    } else if token != item.last_token {
        format!("the item's claim has token {}", item.last_token)
    } else if item.expires_at.is_none_or(|at| at <= now) {
        "the claim ran out".to_string()
    } else {
        return Ok(());
    };
    Err(stale_token(item.id, token, &why))
}

/// The claim a ready item becomes for `request` at `now`: the next attempt and token.
pub(crate) fn claim_of(item: Item, request: &ClaimRequest, now: Millis) -> Claim {
    let lease_ms = ms(request.lease);
    Claim {
        namespace: item.namespace,
        queue: item.queue,
        id: item.id,
        token: item.last_token.saturating_add(1),
        attempt: item.attempt.saturating_add(1),
        max_attempts: item.max_attempts,
        body: item.body,
        key: item.key,
        priority: item.priority,
        requires: item.requires,
        holder: request.holder.clone(),
        claimed_at: now,
        expires_at: now.saturating_add(lease_ms),
        lease_ms,
    }
}

/// The claim of an item a backend claimed in SQL (state, attempt, token and expiry already
/// written by the rule of [`claim_of`]), for `request`.
pub(crate) fn claimed_by(item: Item, request: &ClaimRequest) -> Result<Claim> {
    let expires_at = item
        .expires_at
        .ok_or_else(|| corrupted(format!("claimed item {} has no expiry", item.id)))?;
    Ok(Claim {
        namespace: item.namespace,
        queue: item.queue,
        id: item.id,
        token: item.last_token,
        attempt: item.attempt,
        max_attempts: item.max_attempts,
        body: item.body,
        key: item.key,
        priority: item.priority,
        requires: item.requires,
        holder: request.holder.clone(),
        claimed_at: item.updated_at,
        expires_at,
        lease_ms: ms(request.lease),
    })
}

/// Where a failed item goes: its state, and when it is ready again (`not_before`, for a
/// ready item; `now` for a dead one).
pub(crate) fn after_failure(item: &Item, retry_in: Option<Duration>, now: Millis) -> (ItemState, Millis) {
    match after_attempt(item.attempt, item.max_attempts) {
        ItemState::Ready => (
            ItemState::Ready,
            now.saturating_add(ms(retry_in.unwrap_or_else(|| backoff(item.attempt)))),
        ),
        other => (other, now),
    }
}

/// An item whose claim ran out, as the expiry step reads it.
pub(crate) struct Expired {
    pub id: i64,
    pub attempt: i64,
    pub max_attempts: i64,
    pub last_token: i64,
}

impl Expired {
    /// Whether this expiry was the item's last attempt (it turns dead, else ready). A
    /// stored count out of range is corrupted.
    pub fn dies(&self) -> Result<bool> {
        let attempt: u32 = count("item attempt", self.attempt)?;
        let max: u32 = count("item max attempts", self.max_attempts)?;
        Ok(after_attempt(attempt, max) == ItemState::Dead)
    }
}

/// One queue's counts as both backends read them: `counts` are ready now, delayed, claimed
/// (live), expired, done, dead, cancelled.
pub(crate) fn stats_of(
    queue: String,
    counts: [i64; 7],
    oldest_ready_at: Option<Millis>,
    claims: i64,
) -> Result<QueueStats> {
    let n = |value: i64| u64::try_from(value).unwrap_or(0);
    let [ready, delayed, claimed, expired, done, dead, cancelled] = counts.map(n);
    Ok(QueueStats {
        queue: stored(queue)?,
        ready,
        delayed,
        claimed,
        expired,
        done,
        dead,
        cancelled,
        oldest_ready_at,
        claims_last_minute: n(claims),
    })
}

#[cfg(test)]
mod tests {
    use arbiter_core::name::QueueName;

    use super::*;

    fn claimed(last_token: i64, expires_at: Option<Millis>) -> Item {
        Item {
            namespace: Namespace::default(),
            queue: QueueName::parse("q").unwrap(),
            id: 7,
            state: ItemState::Claimed,
            priority: 0,
            requires: vec![],
            key: None,
            body: String::new(),
            attempt: 2,
            max_attempts: 3,
            last_token,
            holder: None,
            expires_at,
            not_before: 0,
            created_at: 0,
            updated_at: 0,
            result: None,
            last_error: None,
        }
    }

    #[test]
    fn a_token_holds_only_the_live_claim_and_a_refusal_says_why() {
        assert!(check_claim(&claimed(4, Some(100)), 4, 99).is_ok());
        let why = |item: &Item, token, now| {
            let err = check_claim(item, token, now).unwrap_err();
            assert_eq!(err.kind, ErrorKind::Lost);
            err.message
        };
        assert!(why(&claimed(4, Some(100)), 4, 100).contains("the claim ran out"));
        assert!(why(&claimed(4, Some(100)), 3, 50).contains("the item's claim has token 4"));
        let done = Item {
            state: ItemState::Done,
            ..claimed(4, None)
        };
        assert_eq!(
            why(&done, 4, 50),
            "item 7: claim token 4 is stale (the item is done); nothing was changed"
        );
    }

    #[test]
    fn failures_back_off_or_die_by_the_core_rules() {
        let item = claimed(4, Some(100));
        assert_eq!(after_failure(&item, None, 1000), (ItemState::Ready, 1000 + 20_000));
        assert_eq!(
            after_failure(&item, Some(Duration::from_millis(5)), 1000),
            (ItemState::Ready, 1005)
        );
        let last = Item { attempt: 3, ..item };
        assert_eq!(after_failure(&last, None, 1000), (ItemState::Dead, 1000));
    }

    #[test]
    fn stored_rows_that_do_not_decode_are_corrupted_not_panics() {
        let expired = |attempt, max_attempts| Expired {
            id: 1,
            attempt,
            max_attempts,
            last_token: 1,
        };
        assert!(expired(3, 3).dies().unwrap());
        assert!(!expired(1, 3).dies().unwrap());
        assert!(
            expired(-1, 3)
                .dies()
                .unwrap_err()
                .message
                .starts_with("corrupted store")
        );
        assert!(StoredCaps::Json("[1]".into()).decode().is_err());
        assert!(StoredCaps::List(vec!["GPU".into()]).decode().is_err());
        assert_eq!(
            StoredCaps::Json(caps_json(&[Capability::parse("gpu").unwrap()]))
                .decode()
                .unwrap(),
            [Capability::parse("gpu").unwrap()]
        );
        let bad = AttemptRow {
            attempt: 1,
            token: 1,
            holder: "{}".into(),
            claimed_at: 0,
            ended_at: None,
            outcome: None,
            error: None,
        };
        assert!(bad.decode().unwrap_err().message.starts_with("corrupted store"));
    }
}
