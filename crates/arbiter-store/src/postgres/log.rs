//! Append-only streams on PostgreSQL. An append takes its stream's next offset with one
//! upsert, which also holds the stream's row lock until commit (appends to one stream are
//! serialised, offsets have no gaps), checks the idempotency key if there is one, then
//! writes the record and its NOTIFY in one statement: four round trips with `BEGIN` and
//! `COMMIT`, five with a key.

use arbiter_core::Result;
use arbiter_core::log::{Appended, ConsumerInfo, ContentType, NewRecord, Record, StreamInfo};
use arbiter_core::name::{ConsumerName, Namespace, StreamName};
use async_trait::async_trait;

use super::{PgStore, channel, execute, now_ms, now_ms_sql, pg_error, query};
use crate::api::{LogStore, Topic};
use crate::sql::{commit_out_of_range, consumer_info, decode_tags, encode_tags};

#[async_trait]
impl LogStore for PgStore {
    async fn append(&self, record: NewRecord) -> Result<Appended> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_error)?;
        let (ns, stream) = (&record.namespace, &record.stream);
        let rows = query(
            &tx,
            "INSERT INTO log_streams (namespace, stream, next_offset) VALUES ($1, $2, 1)
             ON CONFLICT (namespace, stream) DO UPDATE SET next_offset = log_streams.next_offset + 1
             RETURNING next_offset - 1",
            &[ns, stream],
        )
        .await?;
        let offset: i64 = rows[0].get(0);
        if let Some(key) = &record.idempotency_key {
            // A statement of its own, after the lock: it sees an append of the same key that
            // committed while this one waited. Rolling back gives the offset back.
            let rows = query(
                &tx,
                "SELECT \"offset\" FROM log_records WHERE namespace = $1 AND stream = $2 AND idempotency_key = $3",
                &[ns, stream, key],
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
                ns,
                stream,
                &offset,
                &record.kind,
                &record.author,
                &record.body,
                &record.content_type.as_str(),
                &encode_tags(&record.tags),
                &record.trace_id,
                &record.idempotency_key,
                &channel(Topic::Log),
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

    async fn read(&self, namespace: &str, stream: &str, from: i64, limit: usize) -> Result<Vec<Record>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self
            .single(
                "SELECT \"offset\", kind, author, created_at, body, content_type, tags, trace_id, idempotency_key
             FROM log_records WHERE namespace = $1 AND stream = $2 AND \"offset\" >= $3
             ORDER BY \"offset\" LIMIT $4",
                &[&namespace, &stream, &from, &limit],
            )
            .await?;
        rows.iter()
            .map(|row| {
                Ok(Record {
                    stream: stream.to_string(),
                    offset: row.get(0),
                    kind: row.get(1),
                    author: row.get(2),
                    created_at: row.get(3),
                    body: row.get(4),
                    content_type: ContentType::parse(row.get(5))?,
                    tags: decode_tags(row.get(6))?,
                    trace_id: row.get(7),
                    idempotency_key: row.get(8),
                })
            })
            .collect()
    }

    async fn streams(&self, namespace: &str) -> Result<Vec<StreamInfo>> {
        let rows = self
            .single(
                "SELECT stream, next_offset FROM log_streams WHERE namespace = $1 AND next_offset > 0
             ORDER BY stream COLLATE \"C\"",
                &[&namespace],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|row| StreamInfo {
                stream: row.get(0),
                next_offset: row.get(1),
            })
            .collect())
    }

    async fn commit(&self, namespace: &str, stream: &str, consumer: &str, offset: i64) -> Result<ConsumerInfo> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_error)?;
        let end = query(
            &tx,
            "SELECT next_offset FROM log_streams WHERE namespace = $1 AND stream = $2",
            &[&namespace, &stream],
        )
        .await?
        .first()
        .map(|row| row.get(0))
        .unwrap_or(0);
        if !(0..=end).contains(&offset) {
            return Err(commit_out_of_range(stream, offset, end));
        }
        let now = now_ms(&tx).await?;
        execute(
            &tx,
            "INSERT INTO log_consumers (namespace, stream, consumer, \"offset\", updated_at) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (namespace, stream, consumer) DO UPDATE SET \"offset\" = excluded.\"offset\",
                                                                    updated_at = excluded.updated_at",
            &[&namespace, &stream, &consumer, &offset, &now],
        )
        .await?;
        tx.commit().await.map_err(pg_error)?;
        Ok(ConsumerInfo {
            stream: stream.to_string(),
            consumer: consumer.to_string(),
            offset,
            updated_at: now,
        })
    }

    async fn consumers(&self, namespace: &str, stream: &str) -> Result<Vec<ConsumerInfo>> {
        let rows = self
            .single(
                "SELECT consumer, \"offset\", updated_at FROM log_consumers
             WHERE namespace = $1 AND stream = $2 ORDER BY consumer COLLATE \"C\"",
                &[&namespace, &stream],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|row| ConsumerInfo {
                stream: stream.to_string(),
                consumer: row.get(0),
                offset: row.get(1),
                updated_at: row.get(2),
            })
            .collect())
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
