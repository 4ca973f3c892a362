//! Append-only streams: append, read (from an offset or a consumer's committed offset),
//! follow, commit, streams, consumers.

use std::collections::BTreeMap;

pub use arbiter_client::log::Follow;
use arbiter_core::Result;
use arbiter_core::log::{ConsumerInfo, ContentType, NewRecord, Record, StreamInfo};
use arbiter_core::name::{ConsumerName, Namespace, StreamName};
use arbiter_store::Store;
use serde::{Deserialize, Serialize};

use crate::view::timestamp;

/// Where a read starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Start {
    /// This offset (0: the first record).
    Offset(i64),
    /// The consumer's committed offset: the first record it has not processed (0 for a
    /// consumer that never committed).
    Consumer(ConsumerName),
}

/// What an append came to.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppendedView {
    pub stream: String,
    pub offset: i64,
    /// True when the idempotency key was already used: nothing was written.
    pub duplicate: bool,
}

/// A record as every front end shows it: its time as RFC 3339.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordView {
    pub stream: String,
    pub offset: i64,
    pub kind: String,
    pub author: String,
    pub created_at: String,
    pub content_type: ContentType,
    pub body: String,
    pub tags: BTreeMap<String, String>,
    pub trace_id: Option<String>,
    pub idempotency_key: Option<String>,
}

impl From<Record> for RecordView {
    fn from(record: Record) -> Self {
        RecordView {
            stream: record.stream.to_string(),
            offset: record.offset,
            kind: record.kind,
            author: record.author,
            created_at: timestamp(record.created_at),
            content_type: record.content_type,
            body: record.body,
            tags: record.tags,
            trace_id: record.trace_id,
            idempotency_key: record.idempotency_key,
        }
    }
}

/// Appends a record (valid by construction); with an idempotency key already used on the
/// stream, writes nothing and returns the first offset.
pub async fn append(store: &Store, record: NewRecord) -> Result<AppendedView> {
    let stream = record.stream().to_string();
    let appended = store.log().append(record).await?;
    Ok(AppendedView {
        stream,
        offset: appended.offset,
        duplicate: appended.duplicate,
    })
}

/// The offset a read from `start` begins at.
pub async fn start_offset(store: &Store, namespace: &Namespace, stream: &StreamName, start: &Start) -> Result<i64> {
    match start {
        Start::Offset(offset) => Ok(*offset),
        Start::Consumer(consumer) => consumer_offset(store, namespace, stream, consumer).await,
    }
}

/// The consumer's committed offset (the next one it reads); 0 for one that never committed.
pub async fn consumer_offset(
    store: &Store,
    namespace: &Namespace,
    stream: &StreamName,
    consumer: &ConsumerName,
) -> Result<i64> {
    let info = store.log().consumer(namespace, stream, consumer).await?;
    Ok(info.map_or(0, |c| c.offset))
}

/// Up to `limit` records from offset `from` on (fewer at the end of the stream).
pub async fn read(
    store: &Store,
    namespace: &Namespace,
    stream: &StreamName,
    from: i64,
    limit: usize,
) -> Result<Vec<RecordView>> {
    let records = store.log().read(namespace, stream, from, limit).await?;
    Ok(records.into_iter().map(RecordView::from).collect())
}

/// Up to `limit` records from the consumer's committed offset on: what it has not
/// processed yet.
pub async fn read_from(
    store: &Store,
    namespace: &Namespace,
    stream: &StreamName,
    consumer: &ConsumerName,
    limit: usize,
) -> Result<Vec<RecordView>> {
    let from = consumer_offset(store, namespace, stream, consumer).await?;
    read(store, namespace, stream, from, limit).await
}

/// Follows the stream from `from`: `Follow::next` waits for new records.
pub async fn follow(store: &Store, namespace: &Namespace, stream: &StreamName, from: i64) -> Result<Follow> {
    Follow::start(store, namespace, stream, from).await
}

/// Records that `consumer` has processed everything before `offset`.
pub async fn commit(
    store: &Store,
    namespace: &Namespace,
    stream: &StreamName,
    consumer: &ConsumerName,
    offset: i64,
) -> Result<ConsumerInfo> {
    store.log().commit(namespace, stream, consumer, offset).await
}

/// A stream's consumers, in name order.
pub async fn consumers(store: &Store, namespace: &Namespace, stream: &StreamName) -> Result<Vec<ConsumerInfo>> {
    store.log().consumers(namespace, stream).await
}

/// The streams and their lengths, in name order.
pub async fn streams(store: &Store, namespace: &Namespace) -> Result<Vec<StreamInfo>> {
    store.log().streams(namespace).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use arbiter_core::log::RecordFields;

    fn record(ns: &Namespace, stream: &StreamName, body: &str) -> NewRecord {
        NewRecord::new(
            ns.clone(),
            stream.clone(),
            RecordFields {
                kind: "note".into(),
                author: String::new(),
                body: body.into(),
                content_type: ContentType::Text,
                tags: BTreeMap::new(),
                trace_id: None,
                idempotency_key: None,
            },
        )
        .unwrap()
    }

    #[tokio::test]
    async fn a_consumer_reads_from_its_committed_offset() {
        let (_dir, store) = crate::testing::temp_store().await;
        let ns = Namespace::default();
        let stream = StreamName::parse("jobs").unwrap();
        let (audit, render) = (
            ConsumerName::parse("audit").unwrap(),
            ConsumerName::parse("render").unwrap(),
        );
        for body in ["a", "b", "c"] {
            append(&store, record(&ns, &stream, body)).await.unwrap();
        }
        // A consumer that never committed starts at the beginning.
        assert_eq!(consumer_offset(&store, &ns, &stream, &audit).await.unwrap(), 0);
        assert_eq!(read_from(&store, &ns, &stream, &audit, 10).await.unwrap().len(), 3);

        commit(&store, &ns, &stream, &audit, 2).await.unwrap();
        commit(&store, &ns, &stream, &render, 1).await.unwrap();
        assert_eq!(consumer_offset(&store, &ns, &stream, &audit).await.unwrap(), 2);
        let unread = read_from(&store, &ns, &stream, &audit, 10).await.unwrap();
        assert_eq!(
            unread.iter().map(|r| (r.offset, r.body.as_str())).collect::<Vec<_>>(),
            [(2, "c")]
        );
        let start = Start::Consumer(render.clone());
        assert_eq!(start_offset(&store, &ns, &stream, &start).await.unwrap(), 1);
        assert_eq!(start_offset(&store, &ns, &stream, &Start::Offset(3)).await.unwrap(), 3);
        // Another stream's consumer of the same name is another consumer.
        let other = StreamName::parse("other").unwrap();
        assert_eq!(consumer_offset(&store, &ns, &other, &audit).await.unwrap(), 0);
    }
}
