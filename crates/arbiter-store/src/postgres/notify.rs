//! The notification outbox on PostgreSQL. An accept or resolve locks the fold's row (or
//! creates it), so concurrent repeats of one dedupe key count exactly.

use arbiter_core::Result;
use arbiter_core::name::Namespace;
use async_trait::async_trait;
use deadpool_postgres::Transaction;
use tokio_postgres::types::ToSql;

use super::{PgStore, execute, notify, now_ms, pg_error, query};
use crate::api::{NotifyStore, Topic};
use crate::notify::{
    AcceptRequest, Accepted, COLUMNS, DeliveryState, Due, Failure, FoldRow, OutboxEntry, Queued, Resolved, Row,
    decode_channels, encode_channels, no_notification, no_open_condition, not_retryable, plan_accept, plan_due,
    plan_recovery,
};
use crate::schema::Migration;
use crate::sql::ms;

async fn select(tx: &Transaction<'_>, filter: &str, args: &[&(dyn ToSql + Sync)]) -> Result<Vec<OutboxEntry>> {
    let rows = query(tx, &format!("SELECT {COLUMNS} FROM notify_outbox WHERE {filter}"), args).await?;
    rows.iter()
        .map(|r| {
            Row {
                id: r.get(0),
                namespace: r.get(1),
                channel: r.get(2),
                message: r.get(3),
                state: r.get(4),
                attempts: r.get(5),
                next_attempt_at: r.get(6),
                last_error: r.get(7),
                created_at: r.get(8),
                delivered_at: r.get(9),
                digest_at: r.get(10),
            }
            .decode()
        })
        .collect()
}

async fn insert(tx: &Transaction<'_>, ns: &str, now: i64, row: &Queued) -> Result<i64> {
    let rows = query(
        tx,
        "INSERT INTO notify_outbox (namespace, channel, message, state, attempts, next_attempt_at, created_at, digest_at)
         VALUES ($1, $2, $3, 'pending', 0, $4, $4, $5) RETURNING id",
        &[&ns, &row.channel, &row.message, &now, &row.digest_at],
    )
    .await?;
    Ok(rows[0].get(0))
}

/// Locks and reads a fold (None if there is none).
async fn fold(tx: &Transaction<'_>, ns: &str, key: &str) -> Result<Option<(FoldRow, String)>> {
    let rows = query(
        tx,
        "SELECT count, first_at, channels, notification FROM notify_folds
         WHERE namespace = $1 AND dedupe_key = $2 FOR UPDATE",
        &[&ns, &key],
    )
    .await?;
    rows.first()
        .map(|r| {
            let count: i64 = r.get(0);
            Ok((
                FoldRow {
                    count: count as u64,
                    first_at: r.get(1),
                    channels: decode_channels(r.get(2))?,
                },
                r.get(3),
            ))
        })
        .transpose()
}

#[async_trait]
impl NotifyStore for PgStore {
    async fn accept(&self, request: AcceptRequest) -> Result<Accepted> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_error)?;
        let ns = &request.namespace.as_str();
        let previous = match &request.notification.dedupe_key {
            Some(key) => {
                // Serialize repeats of one key: create the row if needed, then lock it.
                execute(
                    &tx,
                    "INSERT INTO notify_folds (namespace, dedupe_key, count, first_at, last_at, notification, channels)
                     VALUES ($1, $2, 0, 0, 0, '', '[]') ON CONFLICT DO NOTHING",
                    &[ns, key],
                )
                .await?;
                fold(&tx, ns, key)
                    .await?
                    .map(|(row, _)| row)
                    .filter(|row| row.count > 0)
            }
            None => None,
        };
        let now = now_ms(&tx).await?;
        let plan = plan_accept(&request, previous, now);
        if let Some(key) = &request.notification.dedupe_key {
            let latest = serde_json::to_string(&request.notification).expect("notifications serialize");
            execute(
                &tx,
                "UPDATE notify_folds SET count = $3, first_at = $4, last_at = $5, notification = $6, channels = $7
                 WHERE namespace = $1 AND dedupe_key = $2",
                &[
                    ns,
                    key,
                    &(plan.count as i64),
                    &plan.first_at,
                    &now,
                    &latest,
                    &encode_channels(&plan.fold_channels),
                ],
            )
            .await?;
        }
        let mut deliveries = Vec::new();
        for row in &plan.rows {
            deliveries.push(insert(&tx, ns, now, row).await?);
        }
        if !deliveries.is_empty() {
            notify(&tx, Topic::Notify, &self.schema).await?;
        }
        tx.commit().await.map_err(pg_error)?;
        Ok(Accepted {
            count: plan.count,
            sent: plan.sent,
            deliveries,
        })
    }

    async fn resolve(&self, namespace: &Namespace, dedupe_key: &str, body: Option<&str>) -> Result<Resolved> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_error)?;
        let found = fold(&tx, namespace, dedupe_key).await?.filter(|(row, _)| row.count > 0);
        let Some((fold, latest)) = found else {
            return Err(no_open_condition(namespace, dedupe_key));
        };
        let namespace = namespace.as_str();
        let now = now_ms(&tx).await?;
        execute(
            &tx,
            "DELETE FROM notify_folds WHERE namespace = $1 AND dedupe_key = $2",
            &[&namespace, &dedupe_key],
        )
        .await?;
        let mut deliveries = Vec::new();
        for row in &plan_recovery(&latest, body, &fold, dedupe_key, now)? {
            deliveries.push(insert(&tx, namespace, now, row).await?);
        }
        notify(&tx, Topic::Notify, &self.schema).await?;
        tx.commit().await.map_err(pg_error)?;
        Ok(Resolved {
            count: fold.count,
            first_at: fold.first_at,
            resolved_at: now,
            deliveries,
        })
    }

    async fn due(&self, namespace: &Namespace) -> Result<Due> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_error)?;
        let now = now_ms(&tx).await?;
        // Each channel's first pending message (not every row: a backlog stays cheap), and
        // the digest rows.
        let pending = select(
            &tx,
            "namespace = $1 AND state = 'pending' AND (digest_at IS NOT NULL OR id IN (
                 SELECT min(id) FROM notify_outbox
                 WHERE namespace = $1 AND state = 'pending' AND digest_at IS NULL GROUP BY channel))
             ORDER BY id",
            &[&namespace.as_str()],
        )
        .await?;
        Ok(plan_due(pending, now))
    }

    async fn delivered(&self, namespace: &Namespace, ids: &[i64]) -> Result<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_error)?;
        let now = now_ms(&tx).await?;
        execute(
            &tx,
            "UPDATE notify_outbox SET state = 'delivered', delivered_at = $3, attempts = attempts + 1
             WHERE namespace = $1 AND id = ANY($2) AND state = 'pending'",
            &[&namespace.as_str(), &ids, &now],
        )
        .await?;
        tx.commit().await.map_err(pg_error)
    }

    async fn failed(&self, namespace: &Namespace, ids: &[i64], failure: &Failure) -> Result<DeliveryState> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_error)?;
        let now = now_ms(&tx).await?;
        let rows = query(
            &tx,
            "UPDATE notify_outbox SET attempts = attempts + 1, last_error = $3, next_attempt_at = $4,
                 state = CASE WHEN $5 - created_at >= $6 THEN 'dead' ELSE 'pending' END
             WHERE namespace = $1 AND id = ANY($2) AND state = 'pending' RETURNING state",
            &[
                &namespace.as_str(),
                &ids,
                &failure.error,
                &(now + ms(failure.retry_in)),
                &now,
                &ms(failure.max_age),
            ],
        )
        .await?;
        tx.commit().await.map_err(pg_error)?;
        let dead = rows.iter().any(|r| r.get::<_, &str>(0) == "dead");
        Ok(if dead {
            DeliveryState::Dead
        } else {
            DeliveryState::Pending
        })
    }

    async fn list(&self, ns: &Namespace, state: Option<DeliveryState>, limit: usize) -> Result<Vec<OutboxEntry>> {
        let namespace = ns.as_str();
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_error)?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        match state {
            Some(state) => {
                select(
                    &tx,
                    "namespace = $1 AND state = $2 ORDER BY id DESC LIMIT $3",
                    &[&namespace, &state.as_str(), &limit],
                )
                .await
            }
            None => select(&tx, "namespace = $1 ORDER BY id DESC LIMIT $2", &[&namespace, &limit]).await,
        }
    }

    async fn retry(&self, namespace: &Namespace, id: i64) -> Result<OutboxEntry> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_error)?;
        let now = now_ms(&tx).await?;
        let ns = namespace.as_str();
        let Some(entry) = select(&tx, "namespace = $1 AND id = $2 FOR UPDATE", &[&ns, &id])
            .await?
            .pop()
        else {
            return Err(no_notification(namespace, id));
        };
        let namespace = ns;
        if entry.state != DeliveryState::Dead {
            return Err(not_retryable(id, entry.state));
        }
        execute(
            &tx,
            "UPDATE notify_outbox SET state = 'pending', attempts = 0, next_attempt_at = $3, created_at = $3
             WHERE namespace = $1 AND id = $2",
            &[&namespace, &id, &now],
        )
        .await?;
        let entry = select(&tx, "namespace = $1 AND id = $2", &[&namespace, &id])
            .await?
            .remove(0);
        notify(&tx, Topic::Notify, &self.schema).await?;
        tx.commit().await.map_err(pg_error)?;
        Ok(entry)
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
        count        BIGINT NOT NULL,
        first_at     BIGINT NOT NULL,
        last_at      BIGINT NOT NULL,
        notification TEXT NOT NULL,
        channels     TEXT NOT NULL,
        PRIMARY KEY (namespace, dedupe_key)
    );
    CREATE TABLE notify_outbox (
        id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        namespace       TEXT NOT NULL,
        channel         TEXT NOT NULL,
        message         TEXT NOT NULL,
        state           TEXT NOT NULL,
        attempts        BIGINT NOT NULL,
        next_attempt_at BIGINT NOT NULL,
        last_error      TEXT,
        created_at      BIGINT NOT NULL,
        delivered_at    BIGINT,
        digest_at       BIGINT
    );
    CREATE INDEX notify_outbox_pending ON notify_outbox (namespace, state, channel, id);
    "#,
    },
];
