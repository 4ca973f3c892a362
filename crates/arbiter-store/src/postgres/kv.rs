//! Versioned keys on PostgreSQL. Every change first locks and bumps its namespace's row of
//! `kv_revisions`, so a namespace's changes commit in revision order and a watch reading by
//! revision never skips one.

use arbiter_core::Result;
use arbiter_core::kv::{EventType, IfVersion, KeyValue, KvEvent, check_delete, check_version};
use arbiter_core::name::{Key, Namespace, Prefix};
use async_trait::async_trait;
use deadpool_postgres::Transaction;

use super::{NOTIFY, PgStore, pg_error, pipeline};
use crate::api::KvStore;
use crate::api::Topic;
use crate::schema::Migration;
use crate::sql::stored;

/// Locks and bumps the namespace's revision (creating it at 1), and reads the key's
/// version: one round trip. The lock orders the namespace's changes and serializes the
/// version check that follows.
async fn begin_change(tx: &Transaction<'_>, ns: &str, key: &str) -> Result<(i64, Option<i64>)> {
    let rows = pipeline(
        tx,
        &[
            (
                "INSERT INTO kv_revisions (namespace, value) VALUES ($1, 1)
                 ON CONFLICT (namespace) DO UPDATE SET value = kv_revisions.value + 1 RETURNING value",
                &[&ns],
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
                (NOTIFY, &[&Topic::Kv.channel(), &self.schema]),
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
                (NOTIFY, &[&Topic::Kv.channel(), &self.schema]),
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

    async fn revision(&self, namespace: &Namespace) -> Result<i64> {
        let rows = self
            .single(
                "SELECT value FROM kv_revisions WHERE namespace = $1",
                &[&namespace.as_str()],
            )
            .await?;
        Ok(rows.first().map_or(0, |row| row.get(0)))
    }
}

/// This primitive's schema steps (see `crate::schema`). Never edit a shipped step; add one.
pub(super) const MIGRATIONS: &[Migration] = &[
    // 1: versioned keys, one store-wide revision counter, and the history of changes.
    Migration {
        version: 1,
        sql: r#"
    CREATE TABLE revision (
        id    INT PRIMARY KEY CHECK (id = 1),
        value BIGINT NOT NULL
    );
    INSERT INTO revision (id, value) VALUES (1, 0);
    CREATE TABLE kv (
        namespace       TEXT NOT NULL,
        key             TEXT NOT NULL,
        value           TEXT NOT NULL,
        version         BIGINT NOT NULL,
        create_revision BIGINT NOT NULL,
        PRIMARY KEY (namespace, key)
    );
    CREATE TABLE kv_events (
        revision  BIGINT PRIMARY KEY,
        namespace TEXT NOT NULL,
        key       TEXT NOT NULL,
        kind      TEXT NOT NULL,
        value     TEXT
    );
    CREATE INDEX kv_events_by_namespace ON kv_events (namespace, revision);
    "#,
    },
    // 5: revisions count per namespace (`kv_revisions`); history is keyed by
    // (namespace, revision). Each namespace known so far continues from the old store-wide
    // counter, so its revisions keep increasing.
    Migration {
        version: 5,
        sql: r#"
    CREATE TABLE kv_revisions (
        namespace TEXT PRIMARY KEY,
        value     BIGINT NOT NULL
    );
    INSERT INTO kv_revisions (namespace, value)
        SELECT namespace, (SELECT value FROM revision WHERE id = 1)
        FROM (SELECT namespace FROM kv_events UNION SELECT namespace FROM kv) AS known;
    DROP TABLE revision;
    ALTER TABLE kv_events DROP CONSTRAINT kv_events_pkey;
    ALTER TABLE kv_events ADD PRIMARY KEY (namespace, revision);
    DROP INDEX kv_events_by_namespace;
    "#,
    },
];
