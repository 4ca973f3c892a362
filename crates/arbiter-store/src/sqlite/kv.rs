//! Versioned keys on SQLite. Every change bumps the one `revision` row and records an event
//! in `kv_events`, in the same transaction, so watches see every change in order.

use arbiter_core::Result;
use arbiter_core::kv::{EventType, IfVersion, KeyValue, KvEvent, check_delete, check_version};
use arbiter_core::name::{Key, Namespace, Prefix};
use async_trait::async_trait;
use rusqlite::{OptionalExtension, Transaction, params};

use super::{Outcome, SqliteStore, internal};
use crate::api::KvStore;
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

fn next_revision(tx: &Transaction<'_>) -> Result<i64> {
    tx.query_row(
        "UPDATE revision SET value = value + 1 WHERE id = 1 RETURNING value",
        [],
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
            let revision = next_revision(tx)?;
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
            let revision = next_revision(tx)?;
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

    async fn revision(&self) -> Result<i64> {
        self.read(|tx| {
            tx.query_row("SELECT value FROM revision WHERE id = 1", [], |r| r.get(0))
                .map_err(internal)
        })
        .await
    }
}
