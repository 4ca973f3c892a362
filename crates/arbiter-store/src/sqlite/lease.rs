//! Leases on SQLite. The rules are `arbiter_core::lease::decide`; this file loads the
//! state it needs and writes what it decided, in one `BEGIN IMMEDIATE` transaction.

use arbiter_core::lease::{
    AcquireOutcome, AcquireRequest, Busy, Decision, Holder, Lease, LeaseInfo, RenewRequest, Waiter, decide,
};
use arbiter_core::{Error, ErrorKind, Millis, Result};
use async_trait::async_trait;
use rusqlite::{OptionalExtension, Transaction, params};

use super::{Outcome, SqliteStore, internal, now_ms};
use crate::api::LeaseStore;
use crate::schema::Migration;
use crate::sql::{decode_holder, encode_holder, lost, ms, waiter_expiry, waiter_needs_refresh};

const HOLDER_COLUMNS: &str = "h.token, h.holder, n.slots, h.ttl_ms, h.acquired_at, h.expires_at, h.name";

fn lease_from_row(namespace: &str, row: &rusqlite::Row<'_>) -> rusqlite::Result<(Lease, String)> {
    let holder: String = row.get(1)?;
    Ok((
        Lease {
            namespace: namespace.to_string(),
            name: row.get(6)?,
            token: row.get(0)?,
            // Decoded from the JSON text by `collect_leases`, outside rusqlite's row callback.
            holder: Holder::default(),
            slots: row.get(2)?,
            ttl_ms: row.get(3)?,
            acquired_at: row.get(4)?,
            expires_at: row.get(5)?,
        },
        holder,
    ))
}

fn collect_leases(rows: Vec<(Lease, String)>) -> Result<Vec<Lease>> {
    rows.into_iter()
        .map(|(mut lease, holder)| {
            lease.holder = decode_holder(&holder)?;
            Ok(lease)
        })
        .collect()
}

fn holders(tx: &Transaction<'_>, namespace: &str, name: &str, now: Millis) -> Result<Vec<Lease>> {
    let mut stmt = tx
        .prepare_cached(&format!(
            "SELECT {HOLDER_COLUMNS} FROM lease_holders h JOIN lease_names n USING (namespace, name)
             WHERE h.namespace = ?1 AND h.name = ?2 AND h.expires_at > ?3 ORDER BY h.token"
        ))
        .map_err(internal)?;
    let rows = stmt
        .query_map(params![namespace, name, now], |row| lease_from_row(namespace, row))
        .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
        .map_err(internal)?;
    collect_leases(rows)
}

fn waiters(tx: &Transaction<'_>, namespace: &str, name: &str, now: Millis) -> Result<Vec<Waiter>> {
    let mut stmt = tx
        .prepare_cached(
            "SELECT ticket, holder, enqueued_at, expires_at FROM lease_waiters
             WHERE namespace = ?1 AND name = ?2 AND expires_at > ?3 ORDER BY ticket",
        )
        .map_err(internal)?;
    let rows = stmt
        .query_map(params![namespace, name, now], |row| {
            Ok((
                row.get::<_, i64>(0)?,
                row.get::<_, String>(1)?,
                row.get(2)?,
                row.get(3)?,
            ))
        })
        .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
        .map_err(internal)?;
    rows.into_iter()
        .map(|(ticket, holder, enqueued_at, expires_at)| {
            Ok(Waiter {
                ticket,
                holder: decode_holder(&holder)?,
                enqueued_at,
                expires_at,
            })
        })
        .collect()
}

fn acquire_tx(tx: &Transaction<'_>, mut request: AcquireRequest) -> Result<Outcome<AcquireOutcome>> {
    let (ns, name) = (request.namespace.clone(), request.name.clone());
    let now = now_ms(tx)?;
    tx.execute(
        "INSERT OR IGNORE INTO lease_names (namespace, name, slots, last_token) VALUES (?1, ?2, ?3, 0)",
        params![ns, name, request.slots],
    )
    .map_err(internal)?;
    let mut removed = tx
        .execute(
            "DELETE FROM lease_holders WHERE namespace = ?1 AND name = ?2 AND expires_at <= ?3",
            params![ns, name, now],
        )
        .map_err(internal)?;
    removed += tx
        .execute(
            "DELETE FROM lease_waiters WHERE namespace = ?1 AND name = ?2 AND expires_at <= ?3",
            params![ns, name, now],
        )
        .map_err(internal)?;
    for token in &request.reclaim_tokens {
        removed += tx
            .execute(
                "DELETE FROM lease_holders WHERE namespace = ?1 AND name = ?2 AND token = ?3",
                params![ns, name, token],
            )
            .map_err(internal)?;
    }
    for ticket in &request.reclaim_tickets {
        removed += tx
            .execute(
                "DELETE FROM lease_waiters WHERE namespace = ?1 AND name = ?2 AND ticket = ?3",
                params![ns, name, ticket],
            )
            .map_err(internal)?;
    }
    let (slots, last_token): (u32, i64) = tx
        .query_row(
            "SELECT slots, last_token FROM lease_names WHERE namespace = ?1 AND name = ?2",
            params![ns, name],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .map_err(internal)?;
    let holders = holders(tx, &ns, &name, now)?;
    let waiters = waiters(tx, &ns, &name, now)?;
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
            tx.execute(
                "UPDATE lease_names SET last_token = ?3, slots = ?4 WHERE namespace = ?1 AND name = ?2",
                params![ns, name, token, request.slots],
            )
            .map_err(internal)?;
            tx.execute(
                "INSERT INTO lease_holders (namespace, name, token, holder, ttl_ms, acquired_at, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    ns,
                    name,
                    token,
                    encode_holder(&request.holder),
                    ttl_ms,
                    now,
                    now + ttl_ms
                ],
            )
            .map_err(internal)?;
            if let Some(ticket) = request.ticket {
                tx.execute("DELETE FROM lease_waiters WHERE ticket = ?1", params![ticket])
                    .map_err(internal)?;
            }
            Ok(Outcome::Commit(AcquireOutcome::Acquired(Lease {
                namespace: ns,
                name,
                token,
                holder: request.holder,
                slots: request.slots,
                ttl_ms,
                acquired_at: now,
                expires_at: now + ttl_ms,
            })))
        }
        Decision::Wait { ahead } => {
            let mut wrote = removed > 0;
            let ticket = match (request.enqueue, mine) {
                (false, _) => None,
                (true, Some(entry)) => {
                    if waiter_needs_refresh(entry.expires_at, now) {
                        tx.execute(
                            "UPDATE lease_waiters SET expires_at = ?2 WHERE ticket = ?1",
                            params![entry.ticket, waiter_expiry(now)],
                        )
                        .map_err(internal)?;
                        wrote = true;
                    }
                    Some(entry.ticket)
                }
                (true, None) => {
                    tx.execute(
                        "INSERT INTO lease_waiters (namespace, name, holder, enqueued_at, expires_at)
                         VALUES (?1, ?2, ?3, ?4, ?5)",
                        params![ns, name, encode_holder(&request.holder), now, waiter_expiry(now)],
                    )
                    .map_err(internal)?;
                    wrote = true;
                    Some(tx.last_insert_rowid())
                }
            };
            let busy = AcquireOutcome::Busy(Busy {
                holders,
                ahead,
                ticket,
                now,
            });
            Ok(if wrote {
                Outcome::Commit(busy)
            } else {
                Outcome::Rollback(busy)
            })
        }
    }
}

/// The refusal of a try, read from a snapshot — or `None` when the write path must decide
/// (a new name, expired entries to remove, or a place to grant). Refusing at the snapshot
/// is linearizable: the lease was held at that instant.
fn refused_by_snapshot(tx: &Transaction<'_>, request: &AcquireRequest) -> Result<Option<Busy>> {
    let (ns, name) = (&request.namespace, &request.name);
    let now = now_ms(tx)?;
    let slots: Option<u32> = tx
        .query_row(
            "SELECT slots FROM lease_names WHERE namespace = ?1 AND name = ?2",
            params![ns, name],
            |r| r.get(0),
        )
        .optional()
        .map_err(internal)?;
    let Some(slots) = slots else { return Ok(None) };
    let expired: i64 = tx
        .query_row(
            "SELECT (SELECT count(*) FROM lease_holders WHERE namespace = ?1 AND name = ?2 AND expires_at <= ?3)
                  + (SELECT count(*) FROM lease_waiters WHERE namespace = ?1 AND name = ?2 AND expires_at <= ?3)",
            params![ns, name, now],
            |r| r.get(0),
        )
        .map_err(internal)?;
    if expired > 0 {
        return Ok(None);
    }
    let holders = holders(tx, ns, name, now)?;
    let waiters = waiters(tx, ns, name, now)?;
    match decide(request, slots, &holders, &waiters)? {
        Decision::Grant => Ok(None),
        Decision::Wait { ahead } => Ok(Some(Busy {
            holders,
            ahead,
            ticket: None,
            now,
        })),
    }
}

#[async_trait]
impl LeaseStore for SqliteStore {
    async fn acquire(&self, request: AcquireRequest) -> Result<AcquireOutcome> {
        // A try (no queueing, nothing to reclaim) that will be refused needs no write lock:
        // decide it from a read snapshot, so refused tries do not queue behind writers.
        let is_try = !request.enqueue
            && request.ticket.is_none()
            && request.reclaim_tokens.is_empty()
            && request.reclaim_tickets.is_empty();
        if is_try {
            let probe = request.clone();
            if let Some(busy) = self.read(move |tx| refused_by_snapshot(tx, &probe)).await? {
                return Ok(AcquireOutcome::Busy(busy));
            }
        }
        self.write(move |tx| acquire_tx(tx, request)).await
    }

    async fn renew(&self, request: RenewRequest) -> Result<Lease> {
        self.write(move |tx| {
            let now = now_ms(tx)?;
            let (ns, name, token) = (&request.namespace, &request.name, request.token);
            let current = holders(tx, ns, name, now)?.into_iter().find(|l| l.token == token);
            let Some(mut lease) = current else {
                return Err(lost(name, token));
            };
            let ttl_ms = request.ttl.map(ms).unwrap_or(lease.ttl_ms);
            if let Some(pgid) = request.pgid {
                lease.holder.pgid = Some(pgid);
            }
            tx.execute(
                "UPDATE lease_holders SET expires_at = ?4, ttl_ms = ?5, holder = ?6
                 WHERE namespace = ?1 AND name = ?2 AND token = ?3",
                params![ns, name, token, now + ttl_ms, ttl_ms, encode_holder(&lease.holder)],
            )
            .map_err(internal)?;
            lease.ttl_ms = ttl_ms;
            lease.expires_at = now + ttl_ms;
            Ok(Outcome::Commit(lease))
        })
        .await
    }

    async fn release(&self, namespace: &str, name: &str, token: i64) -> Result<()> {
        let (ns, name) = (namespace.to_string(), name.to_string());
        self.write(move |tx| {
            let now = now_ms(tx)?;
            let deleted = tx
                .execute(
                    "DELETE FROM lease_holders WHERE namespace = ?1 AND name = ?2 AND token = ?3 AND expires_at > ?4",
                    params![ns, name, token, now],
                )
                .map_err(internal)?;
            if deleted == 0 {
                Err(lost(&name, token))
            } else {
                Ok(Outcome::Commit(()))
            }
        })
        .await
    }

    async fn cancel_wait(&self, namespace: &str, name: &str, ticket: i64) -> Result<()> {
        let (ns, name) = (namespace.to_string(), name.to_string());
        self.write(move |tx| {
            tx.execute(
                "DELETE FROM lease_waiters WHERE namespace = ?1 AND name = ?2 AND ticket = ?3",
                params![ns, name, ticket],
            )
            .map_err(internal)?;
            Ok(Outcome::Commit(()))
        })
        .await
    }

    async fn list(&self, namespace: &str, prefix: &str) -> Result<Vec<Lease>> {
        let (ns, prefix) = (namespace.to_string(), prefix.to_string());
        self.read(move |tx| {
            let now = now_ms(tx)?;
            let mut stmt = tx
                .prepare_cached(&format!(
                    "SELECT {HOLDER_COLUMNS} FROM lease_holders h JOIN lease_names n USING (namespace, name)
                     WHERE h.namespace = ?1 AND substr(h.name, 1, length(?2)) = ?2 AND h.expires_at > ?3
                     ORDER BY h.name, h.token"
                ))
                .map_err(internal)?;
            let rows = stmt
                .query_map(params![ns, prefix, now], |row| lease_from_row(&ns, row))
                .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
                .map_err(internal)?;
            collect_leases(rows)
        })
        .await
    }

    async fn show(&self, namespace: &str, name: &str) -> Result<LeaseInfo> {
        let (ns, name) = (namespace.to_string(), name.to_string());
        self.read(move |tx| {
            let now = now_ms(tx)?;
            let row: Option<(u32, i64)> = tx
                .query_row(
                    "SELECT slots, last_token FROM lease_names WHERE namespace = ?1 AND name = ?2",
                    params![ns, name],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()
                .map_err(internal)?;
            let Some((slots, last_token)) = row else {
                return Err(Error::new(
                    ErrorKind::NotFound,
                    format!("no lease named {name:?} in namespace {ns:?}"),
                ));
            };
            Ok(LeaseInfo {
                holders: holders(tx, &ns, &name, now)?,
                waiters: waiters(tx, &ns, &name, now)?,
                namespace: ns,
                name,
                slots,
                last_token,
            })
        })
        .await
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
        slots      INTEGER NOT NULL,
        last_token INTEGER NOT NULL,
        PRIMARY KEY (namespace, name)
    ) WITHOUT ROWID;
    CREATE TABLE lease_holders (
        namespace   TEXT NOT NULL,
        name        TEXT NOT NULL,
        token       INTEGER NOT NULL,
        holder      TEXT NOT NULL,
        ttl_ms      INTEGER NOT NULL,
        acquired_at INTEGER NOT NULL,
        expires_at  INTEGER NOT NULL,
        PRIMARY KEY (namespace, name, token)
    ) WITHOUT ROWID;
    CREATE TABLE lease_waiters (
        ticket      INTEGER PRIMARY KEY AUTOINCREMENT,
        namespace   TEXT NOT NULL,
        name        TEXT NOT NULL,
        holder      TEXT NOT NULL,
        enqueued_at INTEGER NOT NULL,
        expires_at  INTEGER NOT NULL
    );
    CREATE INDEX lease_waiters_by_name ON lease_waiters (namespace, name, ticket);
    "#,
    },
];
