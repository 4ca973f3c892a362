//! Leases on PostgreSQL. The rules are `arbiter_core::lease::decide`; this file locks the
//! name's row, loads the state it needs and writes what it decided, in one transaction.
//! The statements of each step go in one [`pipeline`] (one round trip): an acquire is
//! `BEGIN`, three round trips and `COMMIT`; a release is one statement.

use arbiter_core::lease::{
    AcquireOutcome, AcquireRequest, Busy, Decision, Lease, LeaseInfo, RenewRequest, Waiter, decide,
};
use arbiter_core::{Error, ErrorKind, Millis, Result};
use async_trait::async_trait;
use deadpool_postgres::Transaction;
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use super::{NOTIFY, NOW_MS, PgStore, execute, notify, now_ms, now_ms_sql, pg_error, pipeline, query};
use crate::api::LeaseStore;
use crate::api::Topic;
use crate::schema::Migration;
use crate::sql::{decode_holder, encode_holder, lost, ms, waiter_expiry, waiter_needs_refresh};

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

fn lease_from_row(namespace: &str, row: &Row) -> Result<Lease> {
    Ok(Lease {
        namespace: namespace.to_string(),
        name: row.get(6),
        token: row.get(0),
        holder: decode_holder(row.get(1))?,
        slots: slots_from(row.get(2)),
        ttl_ms: row.get(3),
        acquired_at: row.get(4),
        expires_at: row.get(5),
    })
}

fn waiter_from_row(row: &Row) -> Result<Waiter> {
    Ok(Waiter {
        ticket: row.get(0),
        holder: decode_holder(row.get(1))?,
        enqueued_at: row.get(2),
        expires_at: row.get(3),
    })
}

fn slots_from(value: i64) -> u32 {
    u32::try_from(value).unwrap_or(u32::MAX)
}

impl PgStore {
    /// Decides an acquire inside `tx` and writes the decision, with the NOTIFY when holders
    /// or waiters changed.
    async fn acquire_tx(&self, tx: &Transaction<'_>, mut request: AcquireRequest) -> Result<AcquireOutcome> {
        let (ns, name) = (request.namespace.clone(), request.name.clone());
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
        let now: Millis = rows[2][0].get(0);
        // Drop expired and reclaimed holders and waiters, then read who is left.
        let rows = pipeline(
            tx,
            &[
                (
                    "DELETE FROM lease_holders WHERE namespace = $1 AND name = $2 AND (expires_at <= $3 OR token = ANY($4))
                     RETURNING token",
                    &[&ns, &name, &now, &request.reclaim_tokens],
                ),
                (
                    "DELETE FROM lease_waiters WHERE namespace = $1 AND name = $2 AND (expires_at <= $3 OR ticket = ANY($4))
                     RETURNING ticket",
                    &[&ns, &name, &now, &request.reclaim_tickets],
                ),
                (HOLDERS, &[&ns, &name, &now]),
                (WAITERS, &[&ns, &name, &now]),
            ],
        )
        .await?;
        let removed = rows[0].len() + rows[1].len();
        let holders = rows[2]
            .iter()
            .map(|row| lease_from_row(&ns, row))
            .collect::<Result<Vec<_>>>()?;
        let waiters = rows[3].iter().map(waiter_from_row).collect::<Result<Vec<_>>>()?;
        // A ticket whose entry expired has lost its place: it queues again at the back.
        let mine = request
            .ticket
            .and_then(|t| waiters.iter().find(|w| w.ticket == t).cloned());
        if mine.is_none() {
            request.ticket = None;
        }
        let notify: [&(dyn ToSql + Sync); 2] = [&Topic::Leases.channel(), &self.schema];
        match decide(&request, slots, &holders, &waiters)? {
            Decision::Grant => {
                let token = last_token + 1;
                let ttl_ms = ms(request.ttl);
                let holder = encode_holder(&request.holder);
                let expires_at = now + ttl_ms;
                let update: [&(dyn ToSql + Sync); 4] = [&ns, &name, &token, &requested_slots];
                let insert: [&(dyn ToSql + Sync); 7] = [&ns, &name, &token, &holder, &ttl_ms, &now, &expires_at];
                let mut steps = vec![
                    (
                        "UPDATE lease_names SET last_token = $3, slots = $4 WHERE namespace = $1 AND name = $2",
                        &update[..],
                    ),
                    (
                        "INSERT INTO lease_holders (namespace, name, token, holder, ttl_ms, acquired_at, expires_at)
                         VALUES ($1, $2, $3, $4, $5, $6, $7)",
                        &insert[..],
                    ),
                ];
                let ticket: [&(dyn ToSql + Sync); 1] = [&request.ticket];
                if request.ticket.is_some() {
                    steps.push(("DELETE FROM lease_waiters WHERE ticket = $1", &ticket[..]));
                }
                if removed > 0 || request.ticket.is_some() {
                    steps.push((NOTIFY, &notify[..]));
                }
                pipeline(tx, &steps).await?;
                let lease = Lease {
                    namespace: ns,
                    name,
                    token,
                    holder: request.holder,
                    slots: request.slots,
                    ttl_ms,
                    acquired_at: now,
                    expires_at,
                };
                Ok(AcquireOutcome::Acquired(lease))
            }
            Decision::Wait { ahead } => {
                let holder = encode_holder(&request.holder);
                let expiry = waiter_expiry(now);
                let refresh: [&(dyn ToSql + Sync); 2];
                let enqueue: [&(dyn ToSql + Sync); 5] = [&ns, &name, &holder, &now, &expiry];
                let mut steps = Vec::new();
                let mut ticket = None;
                if request.enqueue {
                    match &mine {
                        Some(entry) => {
                            ticket = Some(entry.ticket);
                            if waiter_needs_refresh(entry.expires_at, now) {
                                refresh = [&entry.ticket, &expiry];
                                steps.push((
                                    "UPDATE lease_waiters SET expires_at = $2 WHERE ticket = $1",
                                    &refresh[..],
                                ));
                            }
                        }
                        None => steps.push((
                            "INSERT INTO lease_waiters (namespace, name, holder, enqueued_at, expires_at)
                             VALUES ($1, $2, $3, $4, $5) RETURNING ticket",
                            &enqueue[..],
                        )),
                    }
                }
                let enqueued = request.enqueue && mine.is_none();
                if removed > 0 {
                    steps.push((NOTIFY, &notify[..]));
                }
                if !steps.is_empty() {
                    let rows = pipeline(tx, &steps).await?;
                    if enqueued {
                        ticket = Some(rows[0][0].get(0));
                    }
                }
                Ok(AcquireOutcome::Busy(Busy {
                    holders,
                    ahead,
                    ticket,
                    now,
                }))
            }
        }
    }
}

#[async_trait]
impl LeaseStore for PgStore {
    async fn acquire(&self, request: AcquireRequest) -> Result<AcquireOutcome> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_error)?;
        let outcome = self.acquire_tx(&tx, request).await?;
        tx.commit().await.map_err(pg_error)?;
        Ok(outcome)
    }

    async fn renew(&self, request: RenewRequest) -> Result<Lease> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_error)?;
        let (ns, name, token) = (&request.namespace, &request.name, request.token);
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
                    &[ns, name, &token],
                ),
                (NOW_MS, &[]),
            ],
        )
        .await?;
        let now: Millis = rows[1][0].get(0);
        let Some(mut lease) = rows[0].first().map(|row| lease_from_row(ns, row)).transpose()? else {
            return Err(lost(name, token));
        };
        if lease.expires_at <= now {
            return Err(lost(name, token));
        }
        let ttl_ms = request.ttl.map(ms).unwrap_or(lease.ttl_ms);
        if let Some(pgid) = request.pgid {
            lease.holder.pgid = Some(pgid);
        }
        execute(
            &tx,
            "UPDATE lease_holders SET expires_at = $4, ttl_ms = $5, holder = $6
             WHERE namespace = $1 AND name = $2 AND token = $3",
            &[
                ns,
                name,
                &token,
                &(now + ttl_ms),
                &ttl_ms,
                &encode_holder(&lease.holder),
            ],
        )
        .await?;
        tx.commit().await.map_err(pg_error)?;
        lease.ttl_ms = ttl_ms;
        lease.expires_at = now + ttl_ms;
        Ok(lease)
    }

    async fn release(&self, namespace: &str, name: &str, token: i64) -> Result<()> {
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
                &[&namespace, &name, &token, &Topic::Leases.channel(), &self.schema],
            )
            .await
            .map_err(pg_error)?;
        if rows.is_empty() {
            return Err(lost(name, token));
        }
        Ok(())
    }

    async fn cancel_wait(&self, namespace: &str, name: &str, ticket: i64) -> Result<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_error)?;
        let deleted = execute(
            &tx,
            "DELETE FROM lease_waiters WHERE namespace = $1 AND name = $2 AND ticket = $3",
            &[&namespace, &name, &ticket],
        )
        .await?;
        if deleted > 0 {
            notify(&tx, Topic::Leases, &self.schema).await?;
        }
        tx.commit().await.map_err(pg_error)
    }

    async fn list(&self, namespace: &str, prefix: &str) -> Result<Vec<Lease>> {
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
                &[&namespace, &prefix],
            )
            .await?;
        rows.iter().map(|row| lease_from_row(namespace, row)).collect()
    }

    async fn show(&self, namespace: &str, name: &str) -> Result<LeaseInfo> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_error)?;
        let now = now_ms(&tx).await?;
        let rows = query(
            &tx,
            "SELECT slots, last_token FROM lease_names WHERE namespace = $1 AND name = $2",
            &[&namespace, &name],
        )
        .await?;
        let Some(row) = rows.first() else {
            return Err(Error::new(
                ErrorKind::NotFound,
                format!("no lease named {name:?} in namespace {namespace:?}"),
            ));
        };
        Ok(LeaseInfo {
            namespace: namespace.to_string(),
            name: name.to_string(),
            slots: slots_from(row.get(0)),
            last_token: row.get(1),
            holders: query(&tx, HOLDERS, &[&namespace, &name, &now])
                .await?
                .iter()
                .map(|row| lease_from_row(namespace, row))
                .collect::<Result<_>>()?,
            waiters: query(&tx, WAITERS, &[&namespace, &name, &now])
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
