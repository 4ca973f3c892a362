//! Append-only streams on SQLite: one `BEGIN IMMEDIATE` transaction per append checks the
//! idempotency key, takes the stream's next offset and writes the record.

use arbiter_core::Result;
use arbiter_core::log::{Appended, ConsumerInfo, ContentType, NewRecord, Record, StreamInfo};
use arbiter_core::name::{ConsumerName, Namespace, StreamName};
use async_trait::async_trait;
use rusqlite::{OptionalExtension, params};

use super::{Outcome, SqliteStore, internal, now_ms};
use crate::api::LogStore;
use crate::sql::{commit_out_of_range, consumer_info, decode_tags, encode_tags};

fn next_offset(tx: &rusqlite::Transaction<'_>, ns: &str, stream: &str) -> Result<i64> {
    Ok(tx
        .query_row(
            "SELECT next_offset FROM log_streams WHERE namespace = ?1 AND stream = ?2",
            params![ns, stream],
            |r| r.get(0),
        )
        .optional()
        .map_err(internal)?
        .unwrap_or(0))
}

#[async_trait]
impl LogStore for SqliteStore {
    async fn append(&self, record: NewRecord) -> Result<Appended> {
        self.write(move |tx| {
            let (ns, stream) = (&record.namespace, &record.stream);
            if let Some(key) = &record.idempotency_key {
                let existing: Option<i64> = tx
                    .query_row(
                        "SELECT \"offset\" FROM log_records WHERE namespace = ?1 AND stream = ?2 AND idempotency_key = ?3",
                        params![ns, stream, key],
                        |r| r.get(0),
                    )
                    .optional()
                    .map_err(internal)?;
                if let Some(offset) = existing {
                    return Ok(Outcome::Rollback(Appended { offset, duplicate: true }));
                }
            }
            let now = now_ms(tx)?;
            let offset = next_offset(tx, ns, stream)?;
            tx.execute(
                "INSERT INTO log_records (namespace, stream, \"offset\", kind, author, created_at, body,
                                          content_type, tags, trace_id, idempotency_key)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                params![
                    ns,
                    stream,
                    offset,
                    record.kind,
                    record.author,
                    now,
                    record.body,
                    record.content_type.as_str(),
                    encode_tags(&record.tags),
                    record.trace_id,
                    record.idempotency_key
                ],
            )
            .map_err(internal)?;
            tx.execute(
                "INSERT INTO log_streams (namespace, stream, next_offset) VALUES (?1, ?2, ?3)
                 ON CONFLICT (namespace, stream) DO UPDATE SET next_offset = excluded.next_offset",
                params![ns, stream, offset + 1],
            )
            .map_err(internal)?;
            Ok(Outcome::Commit(Appended { offset, duplicate: false }))
        })
        .await
    }

    async fn read(&self, namespace: &str, stream: &str, from: i64, limit: usize) -> Result<Vec<Record>> {
        let (ns, stream) = (namespace.to_string(), stream.to_string());
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(move |tx| {
            let mut stmt = tx
                .prepare_cached(
                    "SELECT \"offset\", kind, author, created_at, body, content_type, tags, trace_id, idempotency_key
                     FROM log_records WHERE namespace = ?1 AND stream = ?2 AND \"offset\" >= ?3
                     ORDER BY \"offset\" LIMIT ?4",
                )
                .map_err(internal)?;
            let rows = stmt
                .query_map(params![ns, stream, from, limit], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, i64>(3)?,
                        r.get::<_, String>(4)?,
                        r.get::<_, String>(5)?,
                        r.get::<_, String>(6)?,
                        r.get::<_, Option<String>>(7)?,
                        r.get::<_, Option<String>>(8)?,
                    ))
                })
                .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
                .map_err(internal)?;
            rows.into_iter()
                .map(
                    |(offset, kind, author, created_at, body, content_type, tags, trace_id, idempotency_key)| {
                        Ok(Record {
                            stream: stream.clone(),
                            offset,
                            kind,
                            author,
                            created_at,
                            body,
                            content_type: ContentType::parse(&content_type)?,
                            tags: decode_tags(&tags)?,
                            trace_id,
                            idempotency_key,
                        })
                    },
                )
                .collect()
        })
        .await
    }

    async fn streams(&self, namespace: &str) -> Result<Vec<StreamInfo>> {
        let ns = namespace.to_string();
        self.read(move |tx| {
            let mut stmt = tx
                .prepare_cached("SELECT stream, next_offset FROM log_streams WHERE namespace = ?1 ORDER BY stream")
                .map_err(internal)?;
            stmt.query_map(params![ns], |r| {
                Ok(StreamInfo {
                    stream: r.get(0)?,
                    next_offset: r.get(1)?,
                })
            })
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(internal)
        })
        .await
    }

    async fn commit(&self, namespace: &str, stream: &str, consumer: &str, offset: i64) -> Result<ConsumerInfo> {
        let (ns, stream, consumer) = (namespace.to_string(), stream.to_string(), consumer.to_string());
        self.write(move |tx| {
            let end = next_offset(tx, &ns, &stream)?;
            if !(0..=end).contains(&offset) {
                return Err(commit_out_of_range(&stream, offset, end));
            }
            let now = now_ms(tx)?;
            tx.execute(
                "INSERT INTO log_consumers (namespace, stream, consumer, \"offset\", updated_at) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (namespace, stream, consumer) DO UPDATE SET \"offset\" = excluded.\"offset\",
                                                                        updated_at = excluded.updated_at",
                params![ns, stream, consumer, offset, now],
            )
            .map_err(internal)?;
            Ok(Outcome::Commit(ConsumerInfo { stream, consumer, offset, updated_at: now }))
        })
        .await
    }

    async fn consumers(&self, namespace: &str, stream: &str) -> Result<Vec<ConsumerInfo>> {
        let (ns, stream) = (namespace.to_string(), stream.to_string());
        self.read(move |tx| {
            let mut stmt = tx
                .prepare_cached(
                    "SELECT consumer, \"offset\", updated_at FROM log_consumers
                     WHERE namespace = ?1 AND stream = ?2 ORDER BY consumer",
                )
                .map_err(internal)?;
            stmt.query_map(params![ns, stream], |r| {
                Ok(ConsumerInfo {
                    stream: stream.clone(),
                    consumer: r.get(0)?,
                    offset: r.get(1)?,
                    updated_at: r.get(2)?,
                })
            })
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(internal)
        })
        .await
    }

    async fn consumer(
        &self,
        namespace: &Namespace,
        stream: &StreamName,
        consumer: &ConsumerName,
    ) -> Result<Option<ConsumerInfo>> {
        let (ns, stream, consumer) = (namespace.clone(), stream.clone(), consumer.clone());
        self.read(move |tx| {
            let row = tx
                .query_row(
                    "SELECT \"offset\", updated_at FROM log_consumers
                     WHERE namespace = ?1 AND stream = ?2 AND consumer = ?3",
                    params![ns.as_str(), stream.as_str(), consumer.as_str()],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()
                .map_err(internal)?;
            Ok(consumer_info(&stream, &consumer, row))
        })
        .await
    }
}
