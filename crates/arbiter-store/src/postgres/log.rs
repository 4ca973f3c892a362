//! Append-only streams on PostgreSQL: an append locks its stream's row, checks the
//! idempotency key, takes the next offset and writes the record, in one transaction.

use arbiter_core::Result;
use arbiter_core::log::{Appended, ConsumerInfo, ContentType, NewRecord, Record, StreamInfo};
use async_trait::async_trait;
use deadpool_postgres::Transaction;

use super::{PgStore, execute, notify, now_ms, pg_error, query};
use crate::api::{LogStore, Topic};
use crate::sql::{commit_out_of_range, decode_tags, encode_tags};

/// Locks the stream's row (creating it) and returns its next offset.
async fn lock_stream(tx: &Transaction<'_>, ns: &str, stream: &str) -> Result<i64> {
    execute(
        tx,
        "INSERT INTO log_streams (namespace, stream, next_offset) VALUES ($1, $2, 0) ON CONFLICT DO NOTHING",
        &[&ns, &stream],
    )
    .await?;
    let rows = query(
        tx,
        "SELECT next_offset FROM log_streams WHERE namespace = $1 AND stream = $2 FOR UPDATE",
        &[&ns, &stream],
    )
    .await?;
    Ok(rows[0].get(0))
}

#[async_trait]
impl LogStore for PgStore {
    async fn append(&self, record: NewRecord) -> Result<Appended> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_error)?;
        let (ns, stream) = (&record.namespace, &record.stream);
        let offset = lock_stream(&tx, ns, stream).await?;
        if let Some(key) = &record.idempotency_key {
            let rows = query(
                &tx,
                "SELECT \"offset\" FROM log_records WHERE namespace = $1 AND stream = $2 AND idempotency_key = $3",
                &[ns, stream, key],
            )
            .await?;
            if let Some(row) = rows.first() {
                return Ok(Appended {
                    offset: row.get(0),
                    duplicate: true,
                });
            }
        }
        let now = now_ms(&tx).await?;
        execute(
            &tx,
            "INSERT INTO log_records (namespace, stream, \"offset\", kind, author, created_at, body,
                                      content_type, tags, trace_id, idempotency_key)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            &[
                ns,
                stream,
                &offset,
                &record.kind,
                &record.author,
                &now,
                &record.body,
                &record.content_type.as_str(),
                &encode_tags(&record.tags),
                &record.trace_id,
                &record.idempotency_key,
            ],
        )
        .await?;
        execute(
            &tx,
            "UPDATE log_streams SET next_offset = $3 WHERE namespace = $1 AND stream = $2",
            &[ns, stream, &(offset + 1)],
        )
        .await?;
        notify(&tx, Topic::Log, &self.schema).await?;
        tx.commit().await.map_err(pg_error)?;
        Ok(Appended {
            offset,
            duplicate: false,
        })
    }

    async fn read(&self, namespace: &str, stream: &str, from: i64, limit: usize) -> Result<Vec<Record>> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_error)?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = query(
            &tx,
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
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_error)?;
        let rows = query(
            &tx,
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
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_error)?;
        let rows = query(
            &tx,
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
}
