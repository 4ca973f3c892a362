//! What both SQL backends share beyond SQL text: encoding and decoding stored values. The
//! rules (what a transaction writes) are `arbiter-core`'s plans.

use arbiter_core::lease::Holder;
use arbiter_core::{Error, ParseError, Result};

/// The message of a stale-token failure (the loops' fencing check uses it too).
pub(crate) use arbiter_core::lease::lost;

pub(crate) fn encode_holder(holder: &Holder) -> String {
    serde_json::to_string(holder).expect("a holder always serializes")
}

pub(crate) fn decode_holder(text: &str) -> Result<Holder> {
    serde_json::from_str(text).map_err(|e| Error::internal(format!("corrupt lease holder record {text:?}: {e}")))
}

/// Parses a name read back from the store (`Key`, `LeaseName`, `StreamName`, …). Only
/// valid names are ever written, so one that does not parse means the store was changed
/// behind arbiter's back: `Internal`, naming the value.
pub(crate) fn stored<T: TryFrom<String, Error = ParseError>>(text: String) -> Result<T> {
    T::try_from(text).map_err(|e| Error::internal(format!("corrupted store: {}", e.message)))
}

pub(crate) fn ms(duration: std::time::Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

pub(crate) fn encode_tags(tags: &std::collections::BTreeMap<String, String>) -> String {
    serde_json::to_string(tags).expect("tags always serialize")
}

pub(crate) fn decode_tags(text: &str) -> Result<std::collections::BTreeMap<String, String>> {
    serde_json::from_str(text).map_err(|e| Error::internal(format!("corrupt record tags {text:?}: {e}")))
}

/// The columns of a log record row, as both backends read them.
pub(crate) struct RecordRow {
    pub offset: i64,
    pub kind: String,
    pub author: String,
    pub created_at: i64,
    pub body: String,
    pub content_type: String,
    pub tags: String,
    pub trace_id: Option<String>,
    pub idempotency_key: Option<String>,
}

impl RecordRow {
    pub fn decode(self, stream: &arbiter_core::name::StreamName) -> Result<arbiter_core::log::Record> {
        Ok(arbiter_core::log::Record {
            stream: stream.clone(),
            offset: self.offset,
            kind: self.kind,
            author: self.author,
            created_at: self.created_at,
            body: self.body,
            content_type: arbiter_core::log::ContentType::parse(&self.content_type)?,
            tags: decode_tags(&self.tags)?,
            trace_id: self.trace_id,
            idempotency_key: self.idempotency_key,
        })
    }
}

/// A consumer's row (`offset`, `updated_at`), if it has one, as `LogStore::consumer`
/// returns it.
pub(crate) fn consumer_info(
    stream: &arbiter_core::name::StreamName,
    consumer: &arbiter_core::name::ConsumerName,
    row: Option<(i64, arbiter_core::Millis)>,
) -> Option<arbiter_core::log::ConsumerInfo> {
    row.map(|(offset, updated_at)| arbiter_core::log::ConsumerInfo {
        stream: stream.clone(),
        consumer: consumer.clone(),
        offset,
        updated_at,
    })
}

#[cfg(test)]
mod tests {
    use arbiter_core::ErrorKind;
    use arbiter_core::name::Key;

    use super::*;

    #[test]
    fn a_stored_name_that_does_not_parse_is_a_corrupted_store() {
        assert_eq!(stored::<Key>("a/b".into()).unwrap(), "a/b");
        let err = stored::<Key>("a//b".into()).unwrap_err();
        assert_eq!(err.kind, ErrorKind::Internal);
        assert!(
            err.message.starts_with("corrupted store: invalid name \"a//b\""),
            "{}",
            err.message
        );
    }
}
