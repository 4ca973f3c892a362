//! Append-only streams on PostgreSQL. An append takes its stream's next offset with one
//! upsert, which also holds the stream's row lock until commit (appends to one stream are
//! serialised, offsets have no gaps), checks the idempotency key if there is one, then
//! writes the record and its NOTIFY in one statement: four round trips with `BEGIN` and
//! `COMMIT`, five with a key.

use arbiter_core::Result;
use arbiter_core::log::{Appended, ConsumerInfo, NewRecord, Record, StreamInfo, check_commit};
use arbiter_core::name::{ConsumerName, Namespace, StreamName};
use async_trait::async_trait;

use super::{PgStore, execute, now_ms, now_ms_sql, pg_error, query};
use crate::api::{LogStore, Topic};
use crate::schema::Migration;
use crate::sql::{RecordRow, consumer_info, encode_tags, stored};

#[async_trait]
impl LogStore for PgStore {
    async fn append(&self, record: NewRecord) -> Result<Appended> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_error)?;
        let (ns, stream, fields) = (record.namespace().as_str(), record.stream().as_str(), record.fields());
        let rows = query(
            &tx,
            "INSERT INTO log_streams (namespace, stream, next_offset) VALUES ($1, $2, 1)
             ON CONFLICT (namespace, stream) DO UPDATE SET next_offset = log_streams.next_offset + 1
             RETURNING next_offset - 1",
            &[&ns, &stream],
        )
        .await?;
        let offset: i64 = rows[0].get(0);
        if let Some(key) = &fields.idempotency_key {
            // A statement of its own, after the lock: it sees an append of the same key that
            // committed while this one waited. Rolling back gives the offset back.
            let rows = query(
                &tx,
                "SELECT \"offset\" FROM log_records WHERE namespace = $1 AND stream = $2 AND idempotency_key = $3",
                &[&ns, &stream, key],
            )
            .await?;
            if let Some(row) = rows.first() {
                let offset = row.get(0);
                tx.rollback().await.map_err(pg_error)?;
                return Ok(Appended {
                    offset,
                    duplicate: true,
                });
            }
        }
        query(
            &tx,
            concat!(
                "WITH r AS (
                   INSERT INTO log_records (namespace, stream, \"offset\", kind, author, created_at, body,
                                            content_type, tags, trace_id, idempotency_key)
                   VALUES ($1, $2, $3, $4, $5, ",
                now_ms_sql!(),
                ", $6, $7, $8, $9, $10)
                   RETURNING 1)
                 SELECT pg_notify($11, $12) FROM r"
            ),
            &[
                &ns,
                &stream,
                &offset,
                &fields.kind,
                &fields.author,
                &fields.body,
                &fields.content_type.as_str(),
                &encode_tags(&fields.tags),
                &fields.trace_id,
                &fields.idempotency_key,
                &Topic::Log.channel(),
                &self.schema,
            ],
        )
        .await?;
        tx.commit().await.map_err(pg_error)?;
        Ok(Appended {
            offset,
            duplicate: false,
        })
    }

    async fn read(&self, namespace: &Namespace, stream: &StreamName, from: i64, limit: usize) -> Result<Vec<Record>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self
            .single(
                "SELECT \"offset\", kind, author, created_at, body, content_type, tags, trace_id, idempotency_key
             FROM log_records WHERE namespace = $1 AND stream = $2 AND \"offset\" >= $3
             ORDER BY \"offset\" LIMIT $4",
                &[&namespace.as_str(), &stream.as_str(), &from, &limit],
            )
            .await?;
        rows.iter()
            .map(|row| {
                RecordRow {
                    offset: row.get(0),
                    kind: row.get(1),
                    author: row.get(2),
                    created_at: row.get(3),
                    body: row.get(4),
                    content_type: row.get(5),
                    tags: row.get(6),
                    trace_id: row.get(7),
                    idempotency_key: row.get(8),
                }
                .decode(stream)
            })
            .collect()
    }

    async fn streams(&self, namespace: &Namespace) -> Result<Vec<StreamInfo>> {
        let rows = self
            .single(
                "SELECT stream, next_offset FROM log_streams WHERE namespace = $1 AND next_offset > 0
             ORDER BY stream COLLATE \"C\"",
                &[&namespace.as_str()],
            )
            .await?;
        rows.iter()
            .map(|row| {
                Ok(StreamInfo {
                    stream: stored(row.get(0))?,
                    next_offset: row.get(1),
                })
            })
            .collect()
    }

    async fn commit(
        &self,
        namespace: &Namespace,
        stream: &StreamName,
        consumer: &ConsumerName,
        offset: i64,
    ) -> Result<ConsumerInfo> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_error)?;
        let end = query(
            &tx,
            "SELECT next_offset FROM log_streams WHERE namespace = $1 AND stream = $2",
            &[&namespace.as_str(), &stream.as_str()],
        )
        .await?
        .first()
        .map(|row| row.get(0))
        .unwrap_or(0);
        check_commit(stream, offset, end)?;
        let now = now_ms(&tx).await?;
        execute(
            &tx,
            "INSERT INTO log_consumers (namespace, stream, consumer, \"offset\", updated_at) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (namespace, stream, consumer) DO UPDATE SET \"offset\" = excluded.\"offset\",
                                                                    updated_at = excluded.updated_at",
            &[&namespace.as_str(), &stream.as_str(), &consumer.as_str(), &offset, &now],
        )
        .await?;
        tx.commit().await.map_err(pg_error)?;
        Ok(ConsumerInfo {
            stream: stream.clone(),
            consumer: consumer.clone(),
            offset,
            updated_at: now,
        })
    }

    async fn consumers(&self, namespace: &Namespace, stream: &StreamName) -> Result<Vec<ConsumerInfo>> {
        let rows = self
            .single(
                "SELECT consumer, \"offset\", updated_at FROM log_consumers
             WHERE namespace = $1 AND stream = $2 ORDER BY consumer COLLATE \"C\"",
                &[&namespace.as_str(), &stream.as_str()],
            )
            .await?;
        rows.iter()
            .map(|row| {
                Ok(ConsumerInfo {
                    stream: stream.clone(),
                    consumer: stored(row.get(0))?,
                    offset: row.get(1),
                    updated_at: row.get(2),
                })
            })
            .collect()
    }

    async fn consumer(
        &self,
        namespace: &Namespace,
        stream: &StreamName,
        consumer: &ConsumerName,
    ) -> Result<Option<ConsumerInfo>> {
        let rows = self
            .single(
                "SELECT \"offset\", updated_at FROM log_consumers
             WHERE namespace = $1 AND stream = $2 AND consumer = $3",
                &[&namespace.as_str(), &stream.as_str(), &consumer.as_str()],
            )
            .await?;
        Ok(consumer_info(
            stream,
            consumer,
            rows.first().map(|row| (row.get(0), row.get(1))),
        ))
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
        next_offset BIGINT NOT NULL,
        PRIMARY KEY (namespace, stream)
    );
    CREATE TABLE log_records (
        namespace       TEXT NOT NULL,
        stream          TEXT NOT NULL,
        "offset"        BIGINT NOT NULL,
        kind            TEXT NOT NULL,
        author          TEXT NOT NULL,
        created_at      BIGINT NOT NULL,
        body            TEXT NOT NULL,
        content_type    TEXT NOT NULL,
        tags            TEXT NOT NULL,
        trace_id        TEXT,
        idempotency_key TEXT,
        PRIMARY KEY (namespace, stream, "offset")
    );
    CREATE UNIQUE INDEX log_records_by_key ON log_records (namespace, stream, idempotency_key)
        WHERE idempotency_key IS NOT NULL;
    CREATE TABLE log_consumers (
        namespace  TEXT NOT NULL,
        stream     TEXT NOT NULL,
        consumer   TEXT NOT NULL,
        "offset"   BIGINT NOT NULL,
        updated_at BIGINT NOT NULL,
        PRIMARY KEY (namespace, stream, consumer)
    );
    "#,
    },
];
