//! Leases on PostgreSQL. The rules are `arbiter_core::lease::decide`; this file locks the
//! name's row, loads the state it needs and writes what it decided, in one transaction.

use arbiter_core::lease::{
    AcquireOutcome, AcquireRequest, Busy, Decision, Lease, LeaseInfo, RenewRequest, Waiter, decide,
};
use arbiter_core::{Error, ErrorKind, Millis, Result};
use async_trait::async_trait;
use deadpool_postgres::Transaction;
use tokio_postgres::Row;

use super::{PgStore, execute, notify, now_ms, pg_error, query};
use crate::api::LeaseStore;
use crate::api::Topic;
use crate::sql::{decode_holder, encode_holder, lost, ms, waiter_expiry, waiter_needs_refresh};

const HOLDER_COLUMNS: &str = "h.token, h.holder, n.slots, h.ttl_ms, h.acquired_at, h.expires_at, h.name";

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

fn slots_from(value: i64) -> u32 {
    u32::try_from(value).unwrap_or(u32::MAX)
}

async fn holders(tx: &Transaction<'_>, ns: &str, name: &str, now: Millis) -> Result<Vec<Lease>> {
    let sql = format!(
        "SELECT {HOLDER_COLUMNS} FROM lease_holders h JOIN lease_names n USING (namespace, name)
         WHERE h.namespace = $1 AND h.name = $2 AND h.expires_at > $3 ORDER BY h.token"
    );
    query(tx, &sql, &[&ns, &name, &now])
        .await?
        .iter()
        .map(|row| lease_from_row(ns, row))
        .collect()
}

async fn waiters(tx: &Transaction<'_>, ns: &str, name: &str, now: Millis) -> Result<Vec<Waiter>> {
    let rows = query(
        tx,
        "SELECT ticket, holder, enqueued_at, expires_at FROM lease_waiters
         WHERE namespace = $1 AND name = $2 AND expires_at > $3 ORDER BY ticket",
        &[&ns, &name, &now],
    )
    .await?;
    rows.iter()
        .map(|row| {
            Ok(Waiter {
                ticket: row.get(0),
                holder: decode_holder(row.get(1))?,
                enqueued_at: row.get(2),
                expires_at: row.get(3),
            })
        })
        .collect()
}

impl PgStore {
    async fn acquire_tx(&self, tx: &Transaction<'_>, mut request: AcquireRequest) -> Result<(AcquireOutcome, bool)> {
        let (ns, name) = (request.namespace.clone(), request.name.clone());
        execute(
            tx,
            "INSERT INTO lease_names (namespace, name, slots, last_token) VALUES ($1, $2, $3, 0)
             ON CONFLICT DO NOTHING",
            &[&ns, &name, &i64::from(request.slots)],
        )
        .await?;
        let row = query(
            tx,
            "SELECT slots, last_token FROM lease_names WHERE namespace = $1 AND name = $2 FOR UPDATE",
            &[&ns, &name],
        )
        .await?;
        let (slots, last_token): (u32, i64) = (slots_from(row[0].get(0)), row[0].get(1));
        let now = now_ms(tx).await?;
        let removed = execute(
            tx,
            "DELETE FROM lease_holders WHERE namespace = $1 AND name = $2 AND (expires_at <= $3 OR token = ANY($4))",
            &[&ns, &name, &now, &request.reclaim_tokens],
        )
        .await?
            + execute(
                tx,
                "DELETE FROM lease_waiters WHERE namespace = $1 AND name = $2 AND (expires_at <= $3 OR ticket = ANY($4))",
                &[&ns, &name, &now, &request.reclaim_tickets],
            )
            .await?;
        let holders = holders(tx, &ns, &name, now).await?;
        let waiters = waiters(tx, &ns, &name, now).await?;
        // A ticket whose entry expired has lost its place: it queues again at the back.
        let mine = request
            .ticket
            .and_then(|t| waiters.iter().find(|w| w.ticket == t).cloned());
        if mine.is_none() {
            request.ticket = None;
        }
        match decide(&request, slots, &holders, &waiters)? {
            Decision::Grant => {
                let token = last_token + 1;
                let ttl_ms = ms(request.ttl);
                execute(
                    tx,
                    "UPDATE lease_names SET last_token = $3, slots = $4 WHERE namespace = $1 AND name = $2",
                    &[&ns, &name, &token, &i64::from(request.slots)],
                )
                .await?;
                execute(
                    tx,
                    "INSERT INTO lease_holders (namespace, name, token, holder, ttl_ms, acquired_at, expires_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                    &[
                        &ns,
                        &name,
                        &token,
                        &encode_holder(&request.holder),
                        &ttl_ms,
                        &now,
                        &(now + ttl_ms),
                    ],
                )
                .await?;
                if let Some(ticket) = request.ticket {
                    execute(tx, "DELETE FROM lease_waiters WHERE ticket = $1", &[&ticket]).await?;
                }
                let moved = removed > 0 || request.ticket.is_some();
                let lease = Lease {
                    namespace: ns,
                    name,
                    token,
                    holder: request.holder,
                    slots: request.slots,
                    ttl_ms,
                    acquired_at: now,
                    expires_at: now + ttl_ms,
                };
                Ok((AcquireOutcome::Acquired(lease), moved))
            }
            Decision::Wait { ahead } => {
                let ticket = match (request.enqueue, mine) {
                    (false, _) => None,
                    (true, Some(entry)) => {
                        if waiter_needs_refresh(entry.expires_at, now) {
                            execute(
                                tx,
                                "UPDATE lease_waiters SET expires_at = $2 WHERE ticket = $1",
                                &[&entry.ticket, &waiter_expiry(now)],
                            )
                            .await?;
                        }
                        Some(entry.ticket)
                    }
                    (true, None) => {
                        let rows = query(
                            tx,
                            "INSERT INTO lease_waiters (namespace, name, holder, enqueued_at, expires_at)
                             VALUES ($1, $2, $3, $4, $5) RETURNING ticket",
                            &[&ns, &name, &encode_holder(&request.holder), &now, &waiter_expiry(now)],
                        )
                        .await?;
                        Some(rows[0].get(0))
                    }
                };
                Ok((
                    AcquireOutcome::Busy(Busy {
                        holders,
                        ahead,
                        ticket,
                        now,
                    }),
                    removed > 0,
                ))
            }
        }
    }
}

#[async_trait]
impl LeaseStore for PgStore {
    async fn acquire(&self, request: AcquireRequest) -> Result<AcquireOutcome> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_error)?;
        let (outcome, moved) = self.acquire_tx(&tx, request).await?;
        if moved {
            notify(&tx, Topic::Leases, &self.schema).await?;
        }
        tx.commit().await.map_err(pg_error)?;
        Ok(outcome)
    }

    async fn renew(&self, request: RenewRequest) -> Result<Lease> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_error)?;
        let (ns, name, token) = (&request.namespace, &request.name, request.token);
        let rows = query(
            &tx,
            &format!(
                "SELECT {HOLDER_COLUMNS} FROM lease_holders h JOIN lease_names n USING (namespace, name)
                 WHERE h.namespace = $1 AND h.name = $2 AND h.token = $3 FOR UPDATE OF h"
            ),
            &[ns, name, &token],
        )
        .await?;
        let now = now_ms(&tx).await?;
        let Some(mut lease) = rows.first().map(|row| lease_from_row(ns, row)).transpose()? else {
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
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_error)?;
        let now = now_ms(&tx).await?;
        let deleted = execute(
            &tx,
            "DELETE FROM lease_holders WHERE namespace = $1 AND name = $2 AND token = $3 AND expires_at > $4",
            &[&namespace, &name, &token, &now],
        )
        .await?;
        if deleted == 0 {
            return Err(lost(name, token));
        }
        notify(&tx, Topic::Leases, &self.schema).await?;
        tx.commit().await.map_err(pg_error)
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
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_error)?;
        let now = now_ms(&tx).await?;
        let rows = query(
            &tx,
            &format!(
                "SELECT {HOLDER_COLUMNS} FROM lease_holders h JOIN lease_names n USING (namespace, name)
                 WHERE h.namespace = $1 AND starts_with(h.name, $2) AND h.expires_at > $3
                 ORDER BY h.name COLLATE \"C\", h.token"
            ),
            &[&namespace, &prefix, &now],
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
            holders: holders(&tx, namespace, name, now).await?,
            waiters: waiters(&tx, namespace, name, now).await?,
        })
    }
}
