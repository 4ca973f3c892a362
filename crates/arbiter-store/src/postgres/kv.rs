//! Versioned keys on PostgreSQL. Every change first locks and bumps the one `revision` row,
//! so changes commit in revision order and a watch reading by revision never skips one.

use arbiter_core::Result;
use arbiter_core::kv::{EventType, IfVersion, KeyValue, KvEvent, check_delete, check_version};
use arbiter_core::name::{Key, Namespace, Prefix};
use async_trait::async_trait;
use deadpool_postgres::Transaction;

use super::{NOTIFY, PgStore, channel, pg_error, pipeline};
use crate::api::KvStore;
use crate::api::Topic;
use crate::sql::stored;

/// Locks and bumps the revision row, and reads the key's version: one round trip. The lock
/// orders every change and serializes the version check that follows.
async fn begin_change(tx: &Transaction<'_>, ns: &str, key: &str) -> Result<(i64, Option<i64>)> {
    let rows = pipeline(
        tx,
        &[
            (
                "UPDATE revision SET value = value + 1 WHERE id = 1 RETURNING value",
                &[],
            ),
            ("SELECT version FROM kv WHERE namespace = $1 AND key = $2", &[&ns, &key]),
        ],
    )
    .await?;
    Ok((rows[0][0].get(0), rows[1].first().map(|row| row.get(0))))
}

/// Records a change in the history watches read.
const RECORD_EVENT: &str = "INSERT INTO kv_events (revision, namespace, key, kind, value) VALUES ($1, $2, $3, $4, $5)";

fn key_value(row: &tokio_postgres::Row) -> Result<KeyValue> {
    Ok(KeyValue {
        key: stored(row.get(0))?,
        value: row.get(1),
        version: row.get(2),
        create_revision: row.get(3),
    })
}

#[async_trait]
impl KvStore for PgStore {
    async fn get(&self, namespace: &Namespace, key: &Key) -> Result<Option<KeyValue>> {
        let rows = self
            .single(
                "SELECT key, value, version, create_revision FROM kv WHERE namespace = $1 AND key = $2",
                &[&namespace.as_str(), &key.as_str()],
            )
            .await?;
        rows.first().map(key_value).transpose()
    }

    async fn put(&self, namespace: &Namespace, key: &Key, value: &str, if_version: IfVersion) -> Result<i64> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_error)?;
        let (revision, current) = begin_change(&tx, namespace, key).await?;
        check_version(key, current, if_version)?;
        let (namespace, key, kind) = (namespace.as_str(), key.as_str(), EventType::Put.as_str());
        pipeline(
            &tx,
            &[
                (
                    "INSERT INTO kv (namespace, key, value, version, create_revision) VALUES ($1, $2, $3, $4, $4)
                     ON CONFLICT (namespace, key) DO UPDATE SET value = excluded.value, version = excluded.version",
                    &[&namespace, &key, &value, &revision],
                ),
                (RECORD_EVENT, &[&revision, &namespace, &key, &kind, &Some(value)]),
                (NOTIFY, &[&channel(Topic::Kv), &self.schema]),
            ],
        )
        .await?;
        tx.commit().await.map_err(pg_error)?;
        Ok(revision)
    }

    async fn delete(&self, namespace: &Namespace, key: &Key, if_version: IfVersion) -> Result<i64> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_error)?;
        let (revision, current) = begin_change(&tx, namespace, key).await?;
        check_delete(namespace, key, current, if_version)?;
        let (namespace, key, kind) = (namespace.as_str(), key.as_str(), EventType::Delete.as_str());
        pipeline(
            &tx,
            &[
                ("DELETE FROM kv WHERE namespace = $1 AND key = $2", &[&namespace, &key]),
                (RECORD_EVENT, &[&revision, &namespace, &key, &kind, &None::<&str>]),
                (NOTIFY, &[&channel(Topic::Kv), &self.schema]),
            ],
        )
        .await?;
        tx.commit().await.map_err(pg_error)?;
        Ok(revision)
    }

    async fn list(&self, namespace: &Namespace, prefix: &Prefix) -> Result<Vec<KeyValue>> {
        let rows = self
            .single(
                "SELECT key, value, version, create_revision FROM kv
                 WHERE namespace = $1 AND starts_with(key, $2) ORDER BY key COLLATE \"C\"",
                &[&namespace.as_str(), &prefix.as_str()],
            )
            .await?;
        rows.iter().map(key_value).collect()
    }

    async fn events(&self, namespace: &Namespace, prefix: &Prefix, from: i64, limit: usize) -> Result<Vec<KvEvent>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self
            .single(
                "SELECT revision, key, kind, value FROM kv_events
                 WHERE namespace = $1 AND revision >= $2 AND starts_with(key, $3)
                 ORDER BY revision LIMIT $4",
                &[&namespace.as_str(), &from, &prefix.as_str(), &limit],
            )
            .await?;
        rows.iter()
            .map(|row| {
                Ok(KvEvent {
                    version: row.get(0),
                    key: stored(row.get(1))?,
                    kind: EventType::parse(row.get(2))?,
                    value: row.get(3),
                })
            })
            .collect()
    }

    async fn revision(&self) -> Result<i64> {
        Ok(self.single("SELECT value FROM revision WHERE id = 1", &[]).await?[0].get(0))
    }
}
