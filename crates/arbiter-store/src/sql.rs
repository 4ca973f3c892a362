//! What both SQL backends share: decoding stored holders and the rules for when an acquire
//! transaction must write.

use arbiter_core::lease::{Holder, WAITER_TTL};
use arbiter_core::{Error, Millis, Result};

pub(crate) fn encode_holder(holder: &Holder) -> String {
    serde_json::to_string(holder).expect("a holder always serializes")
}

pub(crate) fn decode_holder(text: &str) -> Result<Holder> {
    serde_json::from_str(text).map_err(|e| Error::internal(format!("corrupt lease holder record {text:?}: {e}")))
}

/// A waiter's queue entry is refreshed only when less than half of its TTL is left, so
/// waiters coming back do not write (and wake everyone) on every visit.
pub(crate) fn waiter_needs_refresh(expires_at: Millis, now: Millis) -> bool {
    expires_at - now < WAITER_TTL.as_millis() as Millis / 2
}

pub(crate) fn waiter_expiry(now: Millis) -> Millis {
    now + WAITER_TTL.as_millis() as Millis
}

pub(crate) fn ms(duration: std::time::Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// The message of a stale-token failure, the same on every backend.
pub(crate) fn lost(name: &str, token: i64) -> Error {
    Error::new(
        arbiter_core::ErrorKind::Lost,
        format!("lease {name:?} is no longer held with token {token} (it expired, was released or was taken over)"),
    )
}

/// Checks a compare-and-swap precondition against the key's current version.
pub(crate) fn check_if_version(key: &str, current: Option<i64>, if_version: arbiter_core::kv::IfVersion) -> Result<()> {
    match (if_version, current) {
        (None, _) => Ok(()),
        (Some(0), None) => Ok(()),
        (Some(want), Some(have)) if want == have => Ok(()),
        (Some(want), have) => Err(Error::new(
            arbiter_core::ErrorKind::Conflict,
            match have {
                Some(have) => format!("key {key:?} is at version {have}, not {want}"),
                None if want == 0 => unreachable!("handled above"),
                None => format!("key {key:?} does not exist (expected version {want})"),
            },
        )),
    }
}

pub(crate) fn event_kind(kind: arbiter_core::kv::EventType) -> &'static str {
    match kind {
        arbiter_core::kv::EventType::Put => "put",
        arbiter_core::kv::EventType::Delete => "delete",
    }
}

pub(crate) fn parse_event_kind(text: &str) -> Result<arbiter_core::kv::EventType> {
    match text {
        "put" => Ok(arbiter_core::kv::EventType::Put),
        "delete" => Ok(arbiter_core::kv::EventType::Delete),
        other => Err(Error::internal(format!("corrupt key event kind {other:?}"))),
    }
}

pub(crate) fn encode_tags(tags: &std::collections::BTreeMap<String, String>) -> String {
    serde_json::to_string(tags).expect("tags always serialize")
}

pub(crate) fn decode_tags(text: &str) -> Result<std::collections::BTreeMap<String, String>> {
    serde_json::from_str(text).map_err(|e| Error::internal(format!("corrupt record tags {text:?}: {e}")))
}

/// The message of a consumer commit past the end of its stream, the same on every backend.
pub(crate) fn commit_out_of_range(stream: &str, offset: i64, next_offset: i64) -> Error {
    Error::bad_input(format!(
        "offset {offset} is outside stream {stream:?}: a consumer offset is the next offset to read, 0 to {next_offset}"
    ))
}

/// A consumer's row (`offset`, `updated_at`), if it has one, as `LogStore::consumer`
/// returns it.
pub(crate) fn consumer_info(
    stream: &arbiter_core::name::StreamName,
    consumer: &arbiter_core::name::ConsumerName,
    row: Option<(i64, Millis)>,
) -> Option<arbiter_core::log::ConsumerInfo> {
    row.map(|(offset, updated_at)| arbiter_core::log::ConsumerInfo {
        stream: stream.to_string(),
        consumer: consumer.to_string(),
        offset,
        updated_at,
    })
}
