//! Append-only streams on SQLite: one `BEGIN IMMEDIATE` transaction per append checks the
//! idempotency key, takes the stream's next offset and writes the record.

use arbiter_core::Result;
use arbiter_core::log::{Appended, ConsumerInfo, NewRecord, Record, StreamInfo, check_commit};
use arbiter_core::name::{ConsumerName, Namespace, StreamName};
use async_trait::async_trait;
use rusqlite::{OptionalExtension, params};

use super::{Outcome, SqliteStore, internal, now_ms};
use crate::api::LogStore;
use crate::schema::Migration;
use crate::sql::{RecordRow, consumer_info, encode_tags, stored};

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
            let (ns, stream, fields) = (record.namespace().as_str(), record.stream().as_str(), record.fields());
            if let Some(key) = &fields.idempotency_key {
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
                    fields.kind,
                    fields.author,
                    now,
                    fields.body,
                    fields.content_type.as_str(),
                    encode_tags(&fields.tags),
                    fields.trace_id,
                    fields.idempotency_key
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

    async fn read(&self, namespace: &Namespace, stream: &StreamName, from: i64, limit: usize) -> Result<Vec<Record>> {
        let (ns, stream) = (namespace.to_string(), stream.clone());
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
                .query_map(params![ns, stream.as_str(), from, limit], |r| {
                    Ok(RecordRow {
                        offset: r.get(0)?,
                        kind: r.get(1)?,
                        author: r.get(2)?,
                        created_at: r.get(3)?,
                        body: r.get(4)?,
                        content_type: r.get(5)?,
                        tags: r.get(6)?,
                        trace_id: r.get(7)?,
                        idempotency_key: r.get(8)?,
                    })
                })
                .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
                .map_err(internal)?;
            rows.into_iter().map(|row| row.decode(&stream)).collect()
        })
        .await
    }

    async fn streams(&self, namespace: &Namespace) -> Result<Vec<StreamInfo>> {
        let ns = namespace.to_string();
        self.read(move |tx| {
            let mut stmt = tx
                .prepare_cached("SELECT stream, next_offset FROM log_streams WHERE namespace = ?1 ORDER BY stream")
                .map_err(internal)?;
            let rows = stmt
                .query_map(params![ns], |r| Ok((r.get::<_, String>(0)?, r.get(1)?)))
                .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
                .map_err(internal)?;
            rows.into_iter()
                .map(|(stream, next_offset)| {
                    Ok(StreamInfo {
                        stream: stored(stream)?,
                        next_offset,
                    })
                })
                .collect()
        })
        .await
    }

    async fn commit(
        &self,
        namespace: &Namespace,
        stream: &StreamName,
        consumer: &ConsumerName,
        offset: i64,
    ) -> Result<ConsumerInfo> {
        let (ns, stream, consumer) = (namespace.to_string(), stream.clone(), consumer.clone());
        self.write(move |tx| {
            check_commit(&stream, offset, next_offset(tx, &ns, &stream)?)?;
            let now = now_ms(tx)?;
            tx.execute(
                "INSERT INTO log_consumers (namespace, stream, consumer, \"offset\", updated_at) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (namespace, stream, consumer) DO UPDATE SET \"offset\" = excluded.\"offset\",
                                                                        updated_at = excluded.updated_at",
                params![ns, stream.as_str(), consumer.as_str(), offset, now],
            )
            .map_err(internal)?;
            Ok(Outcome::Commit(ConsumerInfo { stream, consumer, offset, updated_at: now }))
        })
        .await
    }

    async fn consumers(&self, namespace: &Namespace, stream: &StreamName) -> Result<Vec<ConsumerInfo>> {
        let (ns, stream) = (namespace.to_string(), stream.clone());
        self.read(move |tx| {
            let mut stmt = tx
                .prepare_cached(
                    "SELECT consumer, \"offset\", updated_at FROM log_consumers
                     WHERE namespace = ?1 AND stream = ?2 ORDER BY consumer",
                )
                .map_err(internal)?;
            let rows = stmt
                .query_map(params![ns, stream.as_str()], |r| {
                    Ok((r.get::<_, String>(0)?, r.get(1)?, r.get(2)?))
                })
                .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
                .map_err(internal)?;
            rows.into_iter()
                .map(|(consumer, offset, updated_at)| {
                    Ok(ConsumerInfo {
                        stream: stream.clone(),
                        consumer: stored(consumer)?,
                        offset,
                        updated_at,
                    })
                })
                .collect()
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

/// This primitive's schema steps (see `crate::schema`). Never edit a shipped step; add one.
pub(super) const MIGRATIONS: &[Migration] = &[
    // 2: append-only streams and their consumers.
    Migration {
        version: 2,
        sql: r#"
    CREATE TABLE log_streams (
        namespace   TEXT NOT NULL,
        stream      TEXT NOT NULL,
        next_offset INTEGER NOT NULL,
        PRIMARY KEY (namespace, stream)
    ) WITHOUT ROWID;
    CREATE TABLE log_records (
        namespace       TEXT NOT NULL,
        stream          TEXT NOT NULL,
        "offset"        INTEGER NOT NULL,
        kind            TEXT NOT NULL,
        author          TEXT NOT NULL,
        created_at      INTEGER NOT NULL,
        body            TEXT NOT NULL,
        content_type    TEXT NOT NULL,
        tags            TEXT NOT NULL,
        trace_id        TEXT,
        idempotency_key TEXT,
        PRIMARY KEY (namespace, stream, "offset")
    ) WITHOUT ROWID;
    CREATE UNIQUE INDEX log_records_by_key ON log_records (namespace, stream, idempotency_key)
        WHERE idempotency_key IS NOT NULL;
    CREATE TABLE log_consumers (
        namespace  TEXT NOT NULL,
        stream     TEXT NOT NULL,
        consumer   TEXT NOT NULL,
        "offset"   INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        PRIMARY KEY (namespace, stream, consumer)
    ) WITHOUT ROWID;
    "#,
    },
];
