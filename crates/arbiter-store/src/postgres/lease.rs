//! Leases on PostgreSQL. The rules are `arbiter_core::lease`'s plans; this file locks the
//! name's row, loads the state a plan needs and applies it, in one transaction.
//! The statements of each step go in one [`pipeline`] (one round trip): an acquire is
//! `BEGIN`, three round trips and `COMMIT`; a release is one statement.

use arbiter_core::Result;
use arbiter_core::lease::{
    AcquireOutcome, AcquireStep, Attempt, Lease, LeaseInfo, NameState, QueueWrite, RenewRequest, Waiter, not_found,
    plan_acquire, plan_renew,
};
use arbiter_core::name::{LeaseName, Namespace, Prefix};
use async_trait::async_trait;
use deadpool_postgres::Transaction;
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use super::{NOTIFY, NOW_MS, PgStore, execute, notify, now_ms, now_ms_sql, pg_error, pipeline, query};
use crate::api::LeaseStore;
use crate::api::Topic;
use crate::lease::{LeaseRow, WaiterRow, slots_from};
use crate::schema::Migration;
use crate::sql::{encode_holder, lost};

/// The columns [`lease_from_row`] reads, of `lease_holders h JOIN lease_names n`.
macro_rules! holder_columns {
    () => {
        "h.token, h.holder, n.slots, h.ttl_ms, h.acquired_at, h.expires_at, h.name"
    };
}

/// The live holders of a name (`$1`, `$2`) at `$3`, by token.
const HOLDERS: &str = concat!(
    "SELECT ",
    holder_columns!(),
    " FROM lease_holders h JOIN lease_names n USING (namespace, name)
     WHERE h.namespace = $1 AND h.name = $2 AND h.expires_at > $3 ORDER BY h.token"
);

/// The live waiters of a name (`$1`, `$2`) at `$3`, by ticket.
const WAITERS: &str = "SELECT ticket, holder, enqueued_at, expires_at FROM lease_waiters
     WHERE namespace = $1 AND name = $2 AND expires_at > $3 ORDER BY ticket";

fn lease_from_row(namespace: &Namespace, row: &Row) -> Result<Lease> {
    LeaseRow {
        token: row.get(0),
        holder: row.get(1),
        slots: row.get(2),
        ttl_ms: row.get(3),
        acquired_at: row.get(4),
        expires_at: row.get(5),
        name: row.get(6),
    }
    .decode(namespace)
}

fn waiter_from_row(row: &Row) -> Result<Waiter> {
    WaiterRow {
        ticket: row.get(0),
        holder: row.get(1),
        enqueued_at: row.get(2),
        expires_at: row.get(3),
    }
    .decode()
}

impl PgStore {
    /// Plans an acquire inside `tx` and applies the plan, with the NOTIFY it asks for.
    /// Returns what to answer and whether to commit (else nothing changed).
    async fn acquire_tx(&self, tx: &Transaction<'_>, attempt: Attempt) -> Result<(AcquireOutcome, bool)> {
        let request = &attempt.request;
        let (ns, name) = (request.namespace.as_str(), request.name.as_str());
        let requested_slots = i64::from(request.slots);
        // Create the name if new, lock its row, then read the clock (after the lock).
        let rows = pipeline(
            tx,
            &[
                (
                    "INSERT INTO lease_names (namespace, name, slots, last_token) VALUES ($1, $2, $3, 0)
                     ON CONFLICT DO NOTHING",
                    &[&ns, &name, &requested_slots],
                ),
                (
                    "SELECT slots, last_token FROM lease_names WHERE namespace = $1 AND name = $2 FOR UPDATE",
                    &[&ns, &name],
                ),
                (NOW_MS, &[]),
            ],
        )
        .await?;
        let (slots, last_token): (u32, i64) = (slots_from(rows[1][0].get(0)), rows[1][0].get(1));
        let now: i64 = rows[2][0].get(0);
        // Drop expired and reclaimed holders and waiters, then read who is left.
        let rows = pipeline(
            tx,
            &[
                (
                    "DELETE FROM lease_holders WHERE namespace = $1 AND name = $2 AND (expires_at <= $3 OR token = ANY($4))
                     RETURNING token",
                    &[&ns, &name, &now, &attempt.reclaim_tokens],
                ),
                (
                    "DELETE FROM lease_waiters WHERE namespace = $1 AND name = $2 AND (expires_at <= $3 OR ticket = ANY($4))
                     RETURNING ticket",
                    &[&ns, &name, &now, &attempt.reclaim_tickets],
                ),
                (HOLDERS, &[&ns, &name, &now]),
                (WAITERS, &[&ns, &name, &now]),
            ],
        )
        .await?;
        let state = NameState {
            now,
            slots,
            last_token,
            holders: rows[2]
                .iter()
                .map(|row| lease_from_row(&request.namespace, row))
                .collect::<Result<_>>()?,
            waiters: rows[3].iter().map(waiter_from_row).collect::<Result<_>>()?,
            removed: !rows[0].is_empty() || !rows[1].is_empty(),
        };
        let plan = plan_acquire(&attempt, state)?;
        // The plan's writes, then its NOTIFY: one round trip.
        let grant_name: [&(dyn ToSql + Sync); 4];
        let grant_holder: [&(dyn ToSql + Sync); 7];
        let drop_ticket: [&(dyn ToSql + Sync); 1];
        let refresh: [&(dyn ToSql + Sync); 2];
        let enqueue: [&(dyn ToSql + Sync); 5];
        let (holder, lease_slots);
        let mut steps: Vec<(&str, &[&(dyn ToSql + Sync)])> = Vec::new();
        match &plan.step {
            AcquireStep::Grant {
                lease,
                drop_ticket: ticket,
            } => {
                holder = encode_holder(&lease.holder);
                lease_slots = i64::from(lease.slots);
                grant_name = [&ns, &name, &lease.token, &lease_slots];
                grant_holder = [
                    &ns,
                    &name,
                    &lease.token,
                    &holder,
                    &lease.ttl_ms,
                    &lease.acquired_at,
                    &lease.expires_at,
                ];
                steps.push((
                    "UPDATE lease_names SET last_token = $3, slots = $4 WHERE namespace = $1 AND name = $2",
                    &grant_name,
                ));
                steps.push((
                    "INSERT INTO lease_holders (namespace, name, token, holder, ttl_ms, acquired_at, expires_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                    &grant_holder,
                ));
                if let Some(ticket) = ticket {
                    drop_ticket = [ticket];
                    steps.push(("DELETE FROM lease_waiters WHERE ticket = $1", &drop_ticket));
                }
            }
            AcquireStep::Wait { queue, .. } => match queue {
                QueueWrite::Nothing => {}
                QueueWrite::Refresh { ticket, expires_at } => {
                    refresh = [ticket, expires_at];
                    steps.push(("UPDATE lease_waiters SET expires_at = $2 WHERE ticket = $1", &refresh));
                }
                QueueWrite::Enqueue {
                    enqueued_at,
                    expires_at,
                } => {
                    holder = encode_holder(&request.holder);
                    enqueue = [&ns, &name, &holder, enqueued_at, expires_at];
                    steps.push((
                        "INSERT INTO lease_waiters (namespace, name, holder, enqueued_at, expires_at)
                         VALUES ($1, $2, $3, $4, $5) RETURNING ticket",
                        &enqueue,
                    ));
                }
            },
        }
        let notify: [&(dyn ToSql + Sync); 2] = [&Topic::Leases.channel(), &self.schema];
        if plan.notify {
            steps.push((NOTIFY, &notify));
        }
        let mut enqueued = None;
        if !steps.is_empty() {
            let rows = pipeline(tx, &steps).await?;
            if let AcquireStep::Wait {
                queue: QueueWrite::Enqueue { .. },
                ..
            } = plan.step
            {
                enqueued = Some(rows[0][0].get(0));
            }
        }
        let commit = plan.commit;
        Ok((plan.outcome(enqueued), commit))
    }
}

#[async_trait]
impl LeaseStore for PgStore {
    async fn acquire(&self, attempt: Attempt) -> Result<AcquireOutcome> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_error)?;
        let (outcome, commit) = self.acquire_tx(&tx, attempt).await?;
        if commit {
            tx.commit().await.map_err(pg_error)?;
        } else {
            tx.rollback().await.map_err(pg_error)?;
        }
        Ok(outcome)
    }

    async fn renew(&self, request: RenewRequest) -> Result<Lease> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_error)?;
        let (ns, name, token) = (request.namespace.as_str(), request.name.as_str(), request.token);
        // Lock the holder's row, then read the clock (after the lock): one round trip.
        let rows = pipeline(
            &tx,
            &[
                (
                    concat!(
                        "SELECT ",
                        holder_columns!(),
                        " FROM lease_holders h JOIN lease_names n USING (namespace, name)
                         WHERE h.namespace = $1 AND h.name = $2 AND h.token = $3 FOR UPDATE OF h"
                    ),
                    &[&ns, &name, &token],
                ),
                (NOW_MS, &[]),
            ],
        )
        .await?;
        let now: i64 = rows[1][0].get(0);
        let current = rows[0]
            .first()
            .map(|row| lease_from_row(&request.namespace, row))
            .transpose()?;
        let lease = plan_renew(&request, now, current)?;
        execute(
            &tx,
            "UPDATE lease_holders SET expires_at = $4, ttl_ms = $5, holder = $6
             WHERE namespace = $1 AND name = $2 AND token = $3",
            &[
                &ns,
                &name,
                &token,
                &lease.expires_at,
                &lease.ttl_ms,
                &encode_holder(&lease.holder),
            ],
        )
        .await?;
        tx.commit().await.map_err(pg_error)?;
        Ok(lease)
    }

    async fn release(&self, namespace: &Namespace, name: &LeaseName, token: i64) -> Result<()> {
        // One statement, committed on its own: the NOTIFY goes out only if a holder went.
        // It commits once the server has it: a caller that gives up after sending (a dropped
        // future, a broken connection) may have released, and its retry is told `Lost`.
        let client = self.client().await?;
        let statement = client
            .prepare_cached(concat!(
                "WITH released AS (
                   DELETE FROM lease_holders
                   WHERE namespace = $1 AND name = $2 AND token = $3 AND expires_at > ",
                now_ms_sql!(),
                " RETURNING 1)
                 SELECT pg_notify($4, $5) FROM released"
            ))
            .await
            .map_err(pg_error)?;
        let rows = client
            .query(
                &statement,
                &[
                    &namespace.as_str(),
                    &name.as_str(),
                    &token,
                    &Topic::Leases.channel(),
                    &self.schema,
                ],
            )
            .await
            .map_err(pg_error)?;
        if rows.is_empty() {
            return Err(lost(name, token));
        }
        Ok(())
    }

    async fn cancel_wait(&self, namespace: &Namespace, name: &LeaseName, ticket: i64) -> Result<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_error)?;
        let deleted = execute(
            &tx,
            "DELETE FROM lease_waiters WHERE namespace = $1 AND name = $2 AND ticket = $3",
            &[&namespace.as_str(), &name.as_str(), &ticket],
        )
        .await?;
        if deleted > 0 {
            notify(&tx, Topic::Leases, &self.schema).await?;
        }
        tx.commit().await.map_err(pg_error)
    }

    async fn list(&self, namespace: &Namespace, prefix: &Prefix) -> Result<Vec<Lease>> {
        let rows = self
            .single(
                concat!(
                    "SELECT ",
                    holder_columns!(),
                    " FROM lease_holders h JOIN lease_names n USING (namespace, name)
                     WHERE h.namespace = $1 AND starts_with(h.name, $2) AND h.expires_at > ",
                    now_ms_sql!(),
                    " ORDER BY h.name COLLATE \"C\", h.token"
                ),
                &[&namespace.as_str(), &prefix.as_str()],
            )
            .await?;
        rows.iter().map(|row| lease_from_row(namespace, row)).collect()
    }

    async fn show(&self, namespace: &Namespace, name: &LeaseName) -> Result<LeaseInfo> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_error)?;
        let now = now_ms(&tx).await?;
        let (ns, key) = (namespace.as_str(), name.as_str());
        let rows = query(
            &tx,
            "SELECT slots, last_token FROM lease_names WHERE namespace = $1 AND name = $2",
            &[&ns, &key],
        )
        .await?;
        let Some(row) = rows.first() else {
            return Err(not_found(namespace, name));
        };
        Ok(LeaseInfo {
            namespace: namespace.clone(),
            name: name.clone(),
            slots: slots_from(row.get(0)),
            last_token: row.get(1),
            holders: query(&tx, HOLDERS, &[&ns, &key, &now])
                .await?
                .iter()
                .map(|row| lease_from_row(namespace, row))
                .collect::<Result<_>>()?,
            waiters: query(&tx, WAITERS, &[&ns, &key, &now])
                .await?
                .iter()
                .map(waiter_from_row)
                .collect::<Result<_>>()?,
        })
    }
}

/// This primitive's schema steps (see `crate::schema`). Never edit a shipped step; add one.
pub(super) const MIGRATIONS: &[Migration] = &[
    // 1: names, holders (each with its fencing token) and the queue of waiters.
    Migration {
        version: 1,
        sql: r#"
    CREATE TABLE lease_names (
        namespace  TEXT NOT NULL,
        name       TEXT NOT NULL,
        slots      BIGINT NOT NULL,
        last_token BIGINT NOT NULL,
        PRIMARY KEY (namespace, name)
    );
    CREATE TABLE lease_holders (
        namespace   TEXT NOT NULL,
        name        TEXT NOT NULL,
        token       BIGINT NOT NULL,
        holder      TEXT NOT NULL,
        ttl_ms      BIGINT NOT NULL,
        acquired_at BIGINT NOT NULL,
        expires_at  BIGINT NOT NULL,
        PRIMARY KEY (namespace, name, token)
    );
    CREATE TABLE lease_waiters (
        ticket      BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        namespace   TEXT NOT NULL,
        name        TEXT NOT NULL,
        holder      TEXT NOT NULL,
        enqueued_at BIGINT NOT NULL,
        expires_at  BIGINT NOT NULL
    );
    CREATE INDEX lease_waiters_by_name ON lease_waiters (namespace, name, ticket);
    "#,
    },
];
