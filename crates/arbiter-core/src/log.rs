//! Append-only logs (streams) with idempotency keys, and their consumers.
//!
//! A stream's records have dense offsets from 0, in append order; records never change.
//! An append that carries an idempotency key already used on that stream writes nothing
//! and returns the first append's offset. A consumer's committed offset is the next offset
//! it will read (everything before it is done), as in Kafka.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::name::{ConsumerName, Namespace, StreamName};
use crate::{Error, Millis, Result};

/// The largest record body, in bytes.
pub const MAX_BODY_LEN: usize = 1 << 20;
/// The longest kind, author, idempotency key, tag key or value, or trace id.
pub const MAX_FIELD_LEN: usize = 200;

/// How a record's body is to be read.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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

/// A record to append: valid by construction ([`NewRecord::new`] checks every field), so
/// no caller has to remember to check it and the store can take it as it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRecord {
    namespace: Namespace,
    stream: StreamName,
    fields: RecordFields,
}

/// What a record says, as its author gives it; checked by [`NewRecord::new`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RecordFields {
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
    pub stream: StreamName,
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Appended {
    pub offset: i64,
    /// True when the idempotency key was already used: nothing was written.
    pub duplicate: bool,
}

/// A stream and how far it has grown.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamInfo {
    pub stream: StreamName,
    /// The offset the next record will get (= the number of records).
    pub next_offset: i64,
}

/// A consumer's position in a stream.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsumerInfo {
    pub stream: StreamName,
    pub consumer: ConsumerName,
    /// The next offset the consumer will read.
    pub offset: i64,
    pub updated_at: Millis,
}

impl NewRecord {
    /// Checks the record's fields — what is wrong and what is allowed — and makes the record.
    pub fn new(namespace: Namespace, stream: StreamName, fields: RecordFields) -> Result<NewRecord> {
        fields.check()?;
        Ok(NewRecord {
            namespace,
            stream,
            fields,
        })
    }
    pub fn namespace(&self) -> &Namespace {
        &self.namespace
    }
    pub fn stream(&self) -> &StreamName {
        &self.stream
    }
    pub fn fields(&self) -> &RecordFields {
        &self.fields
    }
}

impl RecordFields {
    fn check(&self) -> Result<()> {
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

/// Checks a consumer commit: a consumer offset is the next offset to read, so it lies
/// between 0 and the stream's `next_offset` (everything read).
pub fn check_commit(stream: &StreamName, offset: i64, next_offset: i64) -> Result<()> {
    if (0..=next_offset).contains(&offset) {
        return Ok(());
    }
    Err(Error::bad_input(format!(
        "offset {offset} is outside stream {stream:?}: a consumer offset is the next offset to read, 0 to {next_offset}"
    )))
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

/// An offset a caller names (a read's start, a consumer's commit): 0 or more.
pub fn check_offset(offset: i64) -> std::result::Result<i64, crate::ParseError> {
    if offset >= 0 {
        Ok(offset)
    } else {
        Err(crate::ParseError::new(format!(
            "invalid offset {offset}: expected 0 or more"
        )))
    }
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

    fn fields(body: &str) -> RecordFields {
        RecordFields {
            kind: "note".into(),
            body: body.into(),
            ..Default::default()
        }
    }
    fn new(fields: RecordFields) -> Result<NewRecord> {
        NewRecord::new(Namespace::default(), StreamName::parse("s").unwrap(), fields)
    }

    #[test]
    fn a_new_record_is_checked_when_made() {
        let record = new(fields("hello")).unwrap();
        assert_eq!(
            (record.namespace().as_str(), record.stream().as_str()),
            ("default", "s")
        );
        assert_eq!(record.fields(), &fields("hello"));
        assert!(new(fields("  \n")).unwrap_err().message.contains("body is empty"));
        let mut json = fields("{\"a\": 1}");
        json.content_type = ContentType::Json;
        assert!(new(json.clone()).is_ok());
        json.body = "{nope".into();
        assert!(new(json).unwrap_err().message.contains("not valid JSON"));
        let mut kind = fields("x");
        kind.kind = String::new();
        assert!(new(kind).unwrap_err().message.contains("kind is empty"));
        let mut key = fields("x");
        key.idempotency_key = Some("a\nb".into());
        assert!(new(key).unwrap_err().message.contains("invalid idempotency key"));
        let mut tag = fields("x");
        tag.tags.insert("k".into(), "v\u{7}".into());
        assert!(new(tag).unwrap_err().message.contains("invalid tag value"));
    }

    #[test]
    fn commits_stay_inside_the_stream() {
        let stream = StreamName::parse("s").unwrap();
        assert_eq!(check_commit(&stream, 0, 0), Ok(()));
        assert_eq!(check_commit(&stream, 3, 3), Ok(()));
        let err = check_commit(&stream, 4, 3).unwrap_err();
        assert_eq!(
            err.message,
            "offset 4 is outside stream \"s\": a consumer offset is the next offset to read, 0 to 3"
        );
        assert!(check_commit(&stream, -1, 3).is_err());
    }

    #[test]
    fn tags() {
        assert_eq!(parse_tag("a=b=c"), Ok(("a".into(), "b=c".into())));
        assert_eq!(parse_tag("a="), Ok(("a".into(), String::new())));
        assert!(parse_tag("=b").is_err());
        assert!(parse_tag("ab").is_err());
    }
}
