//! Versioned keys on SQLite. Every change bumps its namespace's row of `kv_revisions` and
//! records an event in `kv_events`, in the same transaction, so watches see every change in
//! order.

use arbiter_core::Result;
use arbiter_core::kv::{EventType, IfVersion, KeyValue, KvEvent, check_delete, check_version};
use arbiter_core::name::{Key, Namespace, Prefix};
use async_trait::async_trait;
use rusqlite::{OptionalExtension, Transaction, params};

use super::{Outcome, SqliteStore, internal};
use crate::api::KvStore;
use crate::schema::Migration;
use crate::sql::stored;

fn current_version(tx: &Transaction<'_>, ns: &str, key: &str) -> Result<Option<i64>> {
    tx.query_row(
        "SELECT version FROM kv WHERE namespace = ?1 AND key = ?2",
        params![ns, key],
        |r| r.get(0),
    )
    .optional()
    .map_err(internal)
}

/// The namespace's next revision (its first is 1).
fn next_revision(tx: &Transaction<'_>, ns: &str) -> Result<i64> {
    tx.query_row(
        "INSERT INTO kv_revisions (namespace, value) VALUES (?1, 1)
         ON CONFLICT (namespace) DO UPDATE SET value = value + 1 RETURNING value",
        params![ns],
        |r| r.get(0),
    )
    .map_err(internal)
}

fn record_event(
    tx: &Transaction<'_>,
    revision: i64,
    ns: &str,
    key: &str,
    kind: EventType,
    value: Option<&str>,
) -> Result<()> {
    tx.execute(
        "INSERT INTO kv_events (revision, namespace, key, kind, value) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![revision, ns, key, kind.as_str(), value],
    )
    .map(drop)
    .map_err(internal)
}

#[async_trait]
impl KvStore for SqliteStore {
    async fn get(&self, namespace: &Namespace, key: &Key) -> Result<Option<KeyValue>> {
        let (ns, key) = (namespace.clone(), key.clone());
        self.read(move |tx| {
            tx.query_row(
                "SELECT value, version, create_revision FROM kv WHERE namespace = ?1 AND key = ?2",
                params![ns.as_str(), key.as_str()],
                |r| {
                    Ok(KeyValue {
                        key: key.clone(),
                        value: r.get(0)?,
                        version: r.get(1)?,
                        create_revision: r.get(2)?,
                    })
                },
            )
            .optional()
            .map_err(internal)
        })
        .await
    }

    async fn put(&self, namespace: &Namespace, key: &Key, value: &str, if_version: IfVersion) -> Result<i64> {
        let (ns, key, value) = (namespace.to_string(), key.clone(), value.to_string());
        self.write(move |tx| {
            let current = current_version(tx, &ns, &key)?;
            check_version(&key, current, if_version)?;
            let revision = next_revision(tx, &ns)?;
            tx.execute(
                "INSERT INTO kv (namespace, key, value, version, create_revision) VALUES (?1, ?2, ?3, ?4, ?4)
                 ON CONFLICT (namespace, key) DO UPDATE SET value = excluded.value, version = excluded.version",
                params![ns, key.as_str(), value, revision],
            )
            .map_err(internal)?;
            record_event(tx, revision, &ns, &key, EventType::Put, Some(&value))?;
            Ok(Outcome::Commit(revision))
        })
        .await
    }

    async fn delete(&self, namespace: &Namespace, key: &Key, if_version: IfVersion) -> Result<i64> {
        let (ns, key) = (namespace.clone(), key.clone());
        self.write(move |tx| {
            let current = current_version(tx, &ns, &key)?;
            check_delete(&ns, &key, current, if_version)?;
            let revision = next_revision(tx, &ns)?;
            tx.execute(
                "DELETE FROM kv WHERE namespace = ?1 AND key = ?2",
                params![ns.as_str(), key.as_str()],
            )
            .map_err(internal)?;
            record_event(tx, revision, &ns, &key, EventType::Delete, None)?;
            Ok(Outcome::Commit(revision))
        })
        .await
    }

    async fn list(&self, namespace: &Namespace, prefix: &Prefix) -> Result<Vec<KeyValue>> {
        let (ns, prefix) = (namespace.to_string(), prefix.to_string());
        self.read(move |tx| {
            let mut stmt = tx
                .prepare_cached(
                    "SELECT key, value, version, create_revision FROM kv
                     WHERE namespace = ?1 AND substr(key, 1, length(?2)) = ?2 ORDER BY key",
                )
                .map_err(internal)?;
            let rows = stmt
                .query_map(params![ns, prefix], |r| {
                    Ok((r.get::<_, String>(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                })
                .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
                .map_err(internal)?;
            rows.into_iter()
                .map(|(key, value, version, create_revision)| {
                    Ok(KeyValue {
                        key: stored(key)?,
                        value,
                        version,
                        create_revision,
                    })
                })
                .collect()
        })
        .await
    }

    async fn events(&self, namespace: &Namespace, prefix: &Prefix, from: i64, limit: usize) -> Result<Vec<KvEvent>> {
        let (ns, prefix) = (namespace.to_string(), prefix.to_string());
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(move |tx| {
            let mut stmt = tx
                .prepare_cached(
                    "SELECT revision, key, kind, value FROM kv_events
                     WHERE namespace = ?1 AND revision >= ?2 AND substr(key, 1, length(?3)) = ?3
                     ORDER BY revision LIMIT ?4",
                )
                .map_err(internal)?;
            let rows = stmt
                .query_map(params![ns, from, prefix, limit], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get(3)?,
                    ))
                })
                .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
                .map_err(internal)?;
            rows.into_iter()
                .map(|(version, key, kind, value)| {
                    Ok(KvEvent {
                        kind: EventType::parse(&kind)?,
                        key: stored(key)?,
                        value,
                        version,
                    })
                })
                .collect()
        })
        .await
    }

    async fn revision(&self, namespace: &Namespace) -> Result<i64> {
        let ns = namespace.to_string();
        self.read(move |tx| {
            tx.query_row(
                "SELECT value FROM kv_revisions WHERE namespace = ?1",
                params![ns],
                |r| r.get(0),
            )
            .optional()
            .map(|value| value.unwrap_or(0))
            .map_err(internal)
        })
        .await
    }
}

/// This primitive's schema steps (see `crate::schema`). Never edit a shipped step; add one.
pub(super) const MIGRATIONS: &[Migration] = &[
    // 1: versioned keys, one store-wide revision counter, and the history of changes.
    Migration {
        version: 1,
        sql: r#"
    CREATE TABLE revision (
        id    INTEGER PRIMARY KEY CHECK (id = 1),
        value INTEGER NOT NULL
    );
    INSERT INTO revision (id, value) VALUES (1, 0);
    CREATE TABLE kv (
        namespace       TEXT NOT NULL,
        key             TEXT NOT NULL,
        value           TEXT NOT NULL,
        version         INTEGER NOT NULL,
        create_revision INTEGER NOT NULL,
        PRIMARY KEY (namespace, key)
    ) WITHOUT ROWID;
    CREATE TABLE kv_events (
        revision  INTEGER PRIMARY KEY,
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
        namespace TEXT NOT NULL,
        value     INTEGER NOT NULL,
        PRIMARY KEY (namespace)
    ) WITHOUT ROWID;
    INSERT INTO kv_revisions (namespace, value)
        SELECT namespace, (SELECT value FROM revision WHERE id = 1)
        FROM (SELECT namespace FROM kv_events UNION SELECT namespace FROM kv);
    DROP TABLE revision;
    CREATE TABLE kv_events_v5 (
        namespace TEXT NOT NULL,
        revision  INTEGER NOT NULL,
        key       TEXT NOT NULL,
        kind      TEXT NOT NULL,
        value     TEXT,
        PRIMARY KEY (namespace, revision)
    );
    INSERT INTO kv_events_v5 (namespace, revision, key, kind, value)
        SELECT namespace, revision, key, kind, value FROM kv_events;
    DROP TABLE kv_events;
    ALTER TABLE kv_events_v5 RENAME TO kv_events;
    "#,
    },
];
