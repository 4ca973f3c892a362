//! The notification outbox on SQLite.

use arbiter_core::Result;
use arbiter_core::name::Namespace;
use async_trait::async_trait;
use rusqlite::{OptionalExtension, Transaction, params};

use super::{Outcome, SqliteStore, internal, now_ms};
use crate::api::NotifyStore;
use crate::notify::{
    AcceptRequest, Accepted, COLUMNS, DeliveryState, Due, Failure, FoldRow, OutboxEntry, Queued, Resolved, Row,
    decode_channels, encode_channels, no_notification, no_open_condition, not_retryable, plan_accept, plan_due,
    plan_recovery,
};
use crate::schema::Migration;
use crate::sql::ms;

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Row> {
    Ok(Row {
        id: r.get(0)?,
        namespace: r.get(1)?,
        channel: r.get(2)?,
        message: r.get(3)?,
        state: r.get(4)?,
        attempts: r.get(5)?,
        next_attempt_at: r.get(6)?,
        last_error: r.get(7)?,
        created_at: r.get(8)?,
        delivered_at: r.get(9)?,
        digest_at: r.get(10)?,
    })
}

fn select(tx: &Transaction<'_>, filter: &str, args: impl rusqlite::Params) -> Result<Vec<OutboxEntry>> {
    let mut stmt = tx
        .prepare_cached(&format!("SELECT {COLUMNS} FROM notify_outbox WHERE {filter}"))
        .map_err(internal)?;
    let rows = stmt
        .query_map(args, row)
        .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
        .map_err(internal)?;
    rows.into_iter().map(Row::decode).collect()
}

fn insert(tx: &Transaction<'_>, ns: &str, now: i64, row: &Queued) -> Result<i64> {
    tx.execute(
        "INSERT INTO notify_outbox (namespace, channel, message, state, attempts, next_attempt_at, created_at, digest_at)
         VALUES (?1, ?2, ?3, 'pending', 0, ?4, ?4, ?5)",
        params![ns, row.channel, row.message, now, row.digest_at],
    )
    .map_err(internal)?;
    Ok(tx.last_insert_rowid())
}

fn fold(tx: &Transaction<'_>, ns: &str, key: &str) -> Result<Option<(FoldRow, String)>> {
    let found: Option<(i64, i64, String, String)> = tx
        .query_row(
            "SELECT count, first_at, channels, notification FROM notify_folds WHERE namespace = ?1 AND dedupe_key = ?2",
            params![ns, key],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .optional()
        .map_err(internal)?;
    found
        .map(|(count, first_at, channels, notification)| {
            Ok((
                FoldRow {
                    count: count as u64,
                    first_at,
                    channels: decode_channels(&channels)?,
                },
                notification,
            ))
        })
        .transpose()
}

#[async_trait]
impl NotifyStore for SqliteStore {
    async fn accept(&self, request: AcceptRequest) -> Result<Accepted> {
        self.write(move |tx| {
            let now = now_ms(tx)?;
            let ns = request.namespace.as_str();
            let previous = match &request.notification.dedupe_key {
                Some(key) => fold(tx, ns, key)?.map(|(row, _)| row),
                None => None,
            };
            let plan = plan_accept(&request, previous, now);
            if let Some(key) = &request.notification.dedupe_key {
                let latest = serde_json::to_string(&request.notification).expect("notifications serialize");
                tx.execute(
                    "INSERT INTO notify_folds (namespace, dedupe_key, count, first_at, last_at, notification, channels)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                     ON CONFLICT (namespace, dedupe_key) DO UPDATE SET count = excluded.count,
                         last_at = excluded.last_at, notification = excluded.notification, channels = excluded.channels",
                    params![ns, key, plan.count as i64, plan.first_at, now, latest, encode_channels(&plan.fold_channels)],
                )
                .map_err(internal)?;
            }
            let mut deliveries = Vec::new();
            for row in &plan.rows {
                deliveries.push(insert(tx, ns, now, row)?);
            }
            Ok(Outcome::Commit(Accepted { count: plan.count, sent: plan.sent, deliveries }))
        })
        .await
    }

    async fn resolve(&self, namespace: &Namespace, dedupe_key: &str, body: Option<&str>) -> Result<Resolved> {
        let (ns, key, body) = (namespace.clone(), dedupe_key.to_string(), body.map(str::to_string));
        self.write(move |tx| {
            let now = now_ms(tx)?;
            let Some((fold, latest)) = fold(tx, &ns, &key)? else {
                return Err(no_open_condition(&ns, &key));
            };
            tx.execute(
                "DELETE FROM notify_folds WHERE namespace = ?1 AND dedupe_key = ?2",
                params![ns.as_str(), key],
            )
            .map_err(internal)?;
            let mut deliveries = Vec::new();
            for row in &plan_recovery(&latest, body.as_deref(), &fold, &key, now)? {
                deliveries.push(insert(tx, &ns, now, row)?);
            }
            Ok(Outcome::Commit(Resolved {
                count: fold.count,
                first_at: fold.first_at,
                resolved_at: now,
                deliveries,
            }))
        })
        .await
    }

    async fn due(&self, namespace: &Namespace) -> Result<Due> {
        let ns = namespace.to_string();
        self.read(move |tx| {
            let now = now_ms(tx)?;
            // Each channel's first pending message (not every row: a backlog stays cheap),
            // and the digest rows.
            let pending = select(
                tx,
                "namespace = ?1 AND state = 'pending' AND (digest_at IS NOT NULL OR id IN (
                     SELECT min(id) FROM notify_outbox
                     WHERE namespace = ?1 AND state = 'pending' AND digest_at IS NULL GROUP BY channel))
                 ORDER BY id",
                params![ns],
            )?;
            Ok(plan_due(pending, now))
        })
        .await
    }

    async fn delivered(&self, namespace: &Namespace, ids: &[i64]) -> Result<()> {
        let (ns, ids) = (namespace.to_string(), ids.to_vec());
        self.write(move |tx| {
            let now = now_ms(tx)?;
            for id in ids {
                tx.execute(
                    "UPDATE notify_outbox SET state = 'delivered', delivered_at = ?3, attempts = attempts + 1
                     WHERE namespace = ?1 AND id = ?2 AND state = 'pending'",
                    params![ns, id, now],
                )
                .map_err(internal)?;
            }
            Ok(Outcome::Commit(()))
        })
        .await
    }

    async fn failed(&self, namespace: &Namespace, ids: &[i64], failure: &Failure) -> Result<DeliveryState> {
        let (ns, ids, failure) = (namespace.to_string(), ids.to_vec(), failure.clone());
        self.write(move |tx| {
            let now = now_ms(tx)?;
            let mut state = DeliveryState::Pending;
            for id in ids {
                tx.execute(
                    "UPDATE notify_outbox SET attempts = attempts + 1, last_error = ?3, next_attempt_at = ?4,
                         state = CASE WHEN ?5 - created_at >= ?6 THEN 'dead' ELSE 'pending' END
                     WHERE namespace = ?1 AND id = ?2 AND state = 'pending'",
                    params![
                        ns,
                        id,
                        failure.error,
                        now + ms(failure.retry_in),
                        now,
                        ms(failure.max_age)
                    ],
                )
                .map_err(internal)?;
                let now_state: Option<String> = tx
                    .query_row("SELECT state FROM notify_outbox WHERE id = ?1", params![id], |r| {
                        r.get(0)
                    })
                    .optional()
                    .map_err(internal)?;
                if now_state.as_deref() == Some("dead") {
                    state = DeliveryState::Dead;
                }
            }
            Ok(Outcome::Commit(state))
        })
        .await
    }

    async fn list(&self, ns: &Namespace, state: Option<DeliveryState>, limit: usize) -> Result<Vec<OutboxEntry>> {
        let ns = ns.to_string();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(move |tx| match state {
            Some(state) => select(
                tx,
                "namespace = ?1 AND state = ?2 ORDER BY id DESC LIMIT ?3",
                params![ns, state.as_str(), limit],
            ),
            None => select(tx, "namespace = ?1 ORDER BY id DESC LIMIT ?2", params![ns, limit]),
        })
        .await
    }

    async fn retry(&self, namespace: &Namespace, id: i64) -> Result<OutboxEntry> {
        let namespace = namespace.clone();
        self.write(move |tx| {
            let now = now_ms(tx)?;
            let ns = namespace.as_str();
            let Some(entry) = select(tx, "namespace = ?1 AND id = ?2", params![ns, id])?.pop() else {
                return Err(no_notification(&namespace, id));
            };
            if entry.state != DeliveryState::Dead {
                return Err(not_retryable(id, entry.state));
            }
            tx.execute(
                "UPDATE notify_outbox SET state = 'pending', attempts = 0, next_attempt_at = ?3, created_at = ?3
                 WHERE namespace = ?1 AND id = ?2",
                params![ns, id, now],
            )
            .map_err(internal)?;
            Ok(Outcome::Commit(
                select(tx, "namespace = ?1 AND id = ?2", params![ns, id])?.remove(0),
            ))
        })
        .await
    }
}

/// This primitive's schema steps (see `crate::schema`). Never edit a shipped step; add one.
pub(super) const MIGRATIONS: &[Migration] = &[
    // 3: notifications: storm folds and the delivery outbox.
    Migration {
        version: 3,
        sql: r#"
    CREATE TABLE notify_folds (
        namespace    TEXT NOT NULL,
        dedupe_key   TEXT NOT NULL,
        count        INTEGER NOT NULL,
        first_at     INTEGER NOT NULL,
        last_at      INTEGER NOT NULL,
        notification TEXT NOT NULL,
        channels     TEXT NOT NULL,
        PRIMARY KEY (namespace, dedupe_key)
    ) WITHOUT ROWID;
    CREATE TABLE notify_outbox (
        id              INTEGER PRIMARY KEY AUTOINCREMENT,
        namespace       TEXT NOT NULL,
        channel         TEXT NOT NULL,
        message         TEXT NOT NULL,
        state           TEXT NOT NULL,
        attempts        INTEGER NOT NULL,
        next_attempt_at INTEGER NOT NULL,
        last_error      TEXT,
        created_at      INTEGER NOT NULL,
        delivered_at    INTEGER,
        digest_at       INTEGER
    );
    CREATE INDEX notify_outbox_pending ON notify_outbox (namespace, state, channel, id);
    "#,
    },
];
