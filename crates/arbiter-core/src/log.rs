//! Append-only logs (streams) with idempotency keys, and their consumers.
//!
//! A stream's records have dense offsets from 0, in append order; records never change.
//! An append that carries an idempotency key already used on that stream writes nothing
//! and returns the first append's offset. A consumer's committed offset is the next offset
//! it will read (everything before it is done), as in Kafka.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{Error, Millis, Result};

/// The largest record body, in bytes.
pub const MAX_BODY_LEN: usize = 1 << 20;
/// The longest kind, author, idempotency key, tag key or value, or trace id.
pub const MAX_FIELD_LEN: usize = 200;

/// How a record's body is to be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ContentType {
    #[default]
    Text,
    Json,
}

impl ContentType {
    pub fn as_str(self) -> &'static str {
        match self {
            ContentType::Text => "text",
            ContentType::Json => "json",
        }
    }
    pub fn parse(text: &str) -> Result<ContentType> {
        match text {
            "text" => Ok(ContentType::Text),
            "json" => Ok(ContentType::Json),
            other => Err(Error::internal(format!("corrupt record content type {other:?}"))),
        }
    }
}

/// A record to append.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NewRecord {
    pub namespace: String,
    pub stream: String,
    pub kind: String,
    pub author: String,
    pub body: String,
    pub content_type: ContentType,
    pub tags: BTreeMap<String, String>,
    pub trace_id: Option<String>,
    pub idempotency_key: Option<String>,
}

/// A stored record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub stream: String,
    pub offset: i64,
    pub kind: String,
    pub author: String,
    /// When it was appended, by the store's clock.
    pub created_at: Millis,
    pub body: String,
    pub content_type: ContentType,
    pub tags: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
}

/// What an append came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Appended {
    pub offset: i64,
    /// True when the idempotency key was already used: nothing was written.
    pub duplicate: bool,
}

/// A stream and how far it has grown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StreamInfo {
    pub stream: String,
    /// The offset the next record will get (= the number of records).
    pub next_offset: i64,
}

/// A consumer's position in a stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConsumerInfo {
    pub stream: String,
    pub consumer: String,
    /// The next offset the consumer will read.
    pub offset: i64,
    pub updated_at: Millis,
}

impl NewRecord {
    /// Checks the record's fields (the stream name is checked by the caller with
    /// [`crate::name::validate_name`]): what is wrong and what is allowed.
    pub fn validate(&self) -> Result<()> {
        crate::name::validate_name("stream name", &self.stream)?;
        if self.body.trim().is_empty() {
            return Err(Error::bad_input("the record body is empty: give the text to append"));
        }
        if self.body.len() > MAX_BODY_LEN {
            return Err(Error::bad_input(format!(
                "the record body is {} bytes; at most {MAX_BODY_LEN} are allowed",
                self.body.len()
            )));
        }
        if self.content_type == ContentType::Json {
            serde_json::from_str::<serde_json::Value>(&self.body)
                .map_err(|e| Error::bad_input(format!("the record body is not valid JSON: {e}")))?;
        }
        check_field("kind", &self.kind, true)?;
        check_field("author", &self.author, false)?;
        for (key, value) in &self.tags {
            check_field("tag key", key, true)?;
            check_field("tag value", value, false)?;
        }
        if let Some(trace) = &self.trace_id {
            check_field("trace id", trace, true)?;
        }
        if let Some(key) = &self.idempotency_key {
            check_field("idempotency key", key, true)?;
        }
        Ok(())
    }
}

fn check_field(what: &str, value: &str, required: bool) -> Result<()> {
    if required && value.is_empty() {
        return Err(Error::bad_input(format!("the {what} is empty")));
    }
    if value.len() > MAX_FIELD_LEN || value.chars().any(char::is_control) {
        return Err(Error::bad_input(format!(
            "invalid {what} {value:?}: expected at most {MAX_FIELD_LEN} characters, no control characters"
        )));
    }
    Ok(())
}

/// Parses `K=V` (a `--tag`).
pub fn parse_tag(text: &str) -> std::result::Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_string(), value.to_string())),
        _ => Err(format!("invalid tag {text:?}: expected KEY=VALUE")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(body: &str) -> NewRecord {
        NewRecord {
            stream: "s".into(),
            kind: "note".into(),
            body: body.into(),
            ..Default::default()
        }
    }

    #[test]
    fn validates() {
        assert_eq!(record("hello").validate(), Ok(()));
        assert!(record("  \n").validate().unwrap_err().message.contains("body is empty"));
        let mut bad_stream = record("x");
        bad_stream.stream = "a b".into();
        assert!(
            bad_stream
                .validate()
                .unwrap_err()
                .message
                .contains("invalid stream name")
        );
        let mut json = record("{\"a\": 1}");
        json.content_type = ContentType::Json;
        assert_eq!(json.validate(), Ok(()));
        json.body = "{nope".into();
        assert!(json.validate().unwrap_err().message.contains("not valid JSON"));
        let mut kind = record("x");
        kind.kind = String::new();
        assert!(kind.validate().unwrap_err().message.contains("kind is empty"));
        let mut key = record("x");
        key.idempotency_key = Some("a\nb".into());
        assert!(key.validate().unwrap_err().message.contains("invalid idempotency key"));
    }

    #[test]
    fn tags() {
        assert_eq!(parse_tag("a=b=c"), Ok(("a".into(), "b=c".into())));
        assert_eq!(parse_tag("a="), Ok(("a".into(), String::new())));
        assert!(parse_tag("=b").is_err());
        assert!(parse_tag("ab").is_err());
    }
}
