//! Leases on SQLite. The rules are `arbiter_core::lease`'s plans; this file loads the state
//! a plan needs and applies what it says, in one `BEGIN IMMEDIATE` transaction.

use arbiter_core::Result;
use arbiter_core::lease::{
    AcquireOutcome, AcquirePlan, AcquireRequest, AcquireStep, Attempt, Busy, Lease, LeaseInfo, NameState, QueueWrite,
    RenewRequest, Waiter, not_found, plan_acquire, plan_renew,
};
use arbiter_core::name::{LeaseName, Namespace, Prefix};
use async_trait::async_trait;
use rusqlite::{OptionalExtension, Transaction, params};

use super::{Outcome, SqliteStore, internal, now_ms};
use crate::api::LeaseStore;
use crate::lease::{LeaseRow, WaiterRow};
use crate::schema::Migration;
use crate::sql::{encode_holder, lost};

const HOLDER_COLUMNS: &str = "h.token, h.holder, n.slots, h.ttl_ms, h.acquired_at, h.expires_at, h.name";

fn lease_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<LeaseRow> {
    Ok(LeaseRow {
        token: row.get(0)?,
        holder: row.get(1)?,
        slots: row.get(2)?,
        ttl_ms: row.get(3)?,
        acquired_at: row.get(4)?,
        expires_at: row.get(5)?,
        name: row.get(6)?,
    })
}

/// Runs a query of [`HOLDER_COLUMNS`] and decodes its rows (outside rusqlite's callback).
fn select_leases(
    tx: &Transaction<'_>,
    namespace: &Namespace,
    sql: &str,
    args: impl rusqlite::Params,
) -> Result<Vec<Lease>> {
    let mut stmt = tx.prepare_cached(sql).map_err(internal)?;
    let rows = stmt
        .query_map(args, lease_row)
        .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
        .map_err(internal)?;
    rows.into_iter().map(|row| row.decode(namespace)).collect()
}

fn holders(tx: &Transaction<'_>, namespace: &Namespace, name: &str, now: i64) -> Result<Vec<Lease>> {
    select_leases(
        tx,
        namespace,
        &format!(
            "SELECT {HOLDER_COLUMNS} FROM lease_holders h JOIN lease_names n USING (namespace, name)
             WHERE h.namespace = ?1 AND h.name = ?2 AND h.expires_at > ?3 ORDER BY h.token"
        ),
        params![namespace.as_str(), name, now],
    )
}

fn waiters(tx: &Transaction<'_>, namespace: &str, name: &str, now: i64) -> Result<Vec<Waiter>> {
    let mut stmt = tx
        .prepare_cached(
            "SELECT ticket, holder, enqueued_at, expires_at FROM lease_waiters
             WHERE namespace = ?1 AND name = ?2 AND expires_at > ?3 ORDER BY ticket",
        )
        .map_err(internal)?;
    let rows = stmt
        .query_map(params![namespace, name, now], |row| {
            Ok(WaiterRow {
                ticket: row.get(0)?,
                holder: row.get(1)?,
                enqueued_at: row.get(2)?,
                expires_at: row.get(3)?,
            })
        })
        .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
        .map_err(internal)?;
    rows.into_iter().map(WaiterRow::decode).collect()
}

/// The name's slot count and last token, if it was ever acquired.
fn name_row(tx: &Transaction<'_>, namespace: &str, name: &str) -> Result<Option<(u32, i64)>> {
    tx.query_row(
        "SELECT slots, last_token FROM lease_names WHERE namespace = ?1 AND name = ?2",
        params![namespace, name],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .optional()
    .map_err(internal)
}

/// The state a plan decides on: the name's row (slots, last token) and its live holders
/// and waiters at `now`.
fn load(tx: &Transaction<'_>, request: &AcquireRequest, now: i64, row: (u32, i64), removed: bool) -> Result<NameState> {
    let name = request.name.as_str();
    Ok(NameState {
        now,
        slots: row.0,
        last_token: row.1,
        holders: holders(tx, &request.namespace, name, now)?,
        waiters: waiters(tx, &request.namespace, name, now)?,
        removed,
    })
}

fn acquire_tx(tx: &Transaction<'_>, attempt: Attempt) -> Result<Outcome<AcquireOutcome>> {
    let request = &attempt.request;
    let (ns, name) = (request.namespace.as_str(), request.name.as_str());
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
    for token in &attempt.reclaim_tokens {
        removed += tx
            .execute(
                "DELETE FROM lease_holders WHERE namespace = ?1 AND name = ?2 AND token = ?3",
                params![ns, name, token],
            )
            .map_err(internal)?;
    }
    for ticket in &attempt.reclaim_tickets {
        removed += tx
            .execute(
                "DELETE FROM lease_waiters WHERE namespace = ?1 AND name = ?2 AND ticket = ?3",
                params![ns, name, ticket],
            )
            .map_err(internal)?;
    }
    let row = name_row(tx, ns, name)?
        .ok_or_else(|| arbiter_core::Error::internal(format!("lease name {name:?} vanished inside its transaction")))?;
    let plan = plan_acquire(&attempt, load(tx, request, now, row, removed > 0)?)?;
    let enqueued = apply(tx, request, &plan)?;
    let commit = plan.commit;
    let outcome = plan.outcome(enqueued);
    Ok(if commit {
        Outcome::Commit(outcome)
    } else {
        Outcome::Rollback(outcome)
    })
}

/// Writes what `plan` says; returns the ticket of a new queue entry.
fn apply(tx: &Transaction<'_>, request: &AcquireRequest, plan: &AcquirePlan) -> Result<Option<i64>> {
    let (ns, name) = (request.namespace.as_str(), request.name.as_str());
    match &plan.step {
        AcquireStep::Grant { lease, drop_ticket } => {
            tx.execute(
                "UPDATE lease_names SET last_token = ?3, slots = ?4 WHERE namespace = ?1 AND name = ?2",
                params![ns, name, lease.token, lease.slots],
            )
            .map_err(internal)?;
            tx.execute(
                "INSERT INTO lease_holders (namespace, name, token, holder, ttl_ms, acquired_at, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    ns,
                    name,
                    lease.token,
                    encode_holder(&lease.holder),
                    lease.ttl_ms,
                    lease.acquired_at,
                    lease.expires_at
                ],
            )
            .map_err(internal)?;
            if let Some(ticket) = drop_ticket {
                tx.execute("DELETE FROM lease_waiters WHERE ticket = ?1", params![ticket])
                    .map_err(internal)?;
            }
            Ok(None)
        }
        AcquireStep::Wait { queue, .. } => match *queue {
            QueueWrite::Nothing => Ok(None),
            QueueWrite::Refresh { ticket, expires_at } => {
                tx.execute(
                    "UPDATE lease_waiters SET expires_at = ?2 WHERE ticket = ?1",
                    params![ticket, expires_at],
                )
                .map_err(internal)?;
                Ok(None)
            }
            QueueWrite::Enqueue {
                enqueued_at,
                expires_at,
            } => {
                tx.execute(
                    "INSERT INTO lease_waiters (namespace, name, holder, enqueued_at, expires_at)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![ns, name, encode_holder(&request.holder), enqueued_at, expires_at],
                )
                .map_err(internal)?;
                Ok(Some(tx.last_insert_rowid()))
            }
        },
    }
}

/// The refusal of a try, read from a snapshot — or `None` when the write path must decide
/// (a new name, expired entries to remove, or a place to grant). Refusing at the snapshot
/// is linearizable: the lease was held at that instant.
fn refused_by_snapshot(tx: &Transaction<'_>, attempt: &Attempt) -> Result<Option<Busy>> {
    let request = &attempt.request;
    let (ns, name) = (request.namespace.as_str(), request.name.as_str());
    let now = now_ms(tx)?;
    let Some(row) = name_row(tx, ns, name)? else {
        return Ok(None);
    };
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
    match plan_acquire(attempt, load(tx, request, now, row, false)?)?.step {
        AcquireStep::Grant { .. } => Ok(None),
        AcquireStep::Wait { busy, .. } => Ok(Some(busy)),
    }
}

#[async_trait]
impl LeaseStore for SqliteStore {
    async fn acquire(&self, attempt: Attempt) -> Result<AcquireOutcome> {
        // A try (no queueing, nothing to reclaim) that will be refused needs no write lock:
        // decide it from a read snapshot, so refused tries do not queue behind writers.
        let is_try = !attempt.request.waits()
            && attempt.ticket.is_none()
            && attempt.reclaim_tokens.is_empty()
            && attempt.reclaim_tickets.is_empty();
        if is_try {
            let probe = attempt.clone();
            if let Some(busy) = self.read(move |tx| refused_by_snapshot(tx, &probe)).await? {
                return Ok(AcquireOutcome::Busy(busy));
            }
        }
        self.write(move |tx| acquire_tx(tx, attempt)).await
    }

    async fn renew(&self, request: RenewRequest) -> Result<Lease> {
        self.write(move |tx| {
            let now = now_ms(tx)?;
            let (ns, name, token) = (&request.namespace, request.name.as_str(), request.token);
            let current = holders(tx, ns, name, now)?.into_iter().find(|l| l.token == token);
            let lease = plan_renew(&request, now, current)?;
            tx.execute(
                "UPDATE lease_holders SET expires_at = ?4, ttl_ms = ?5, holder = ?6
                 WHERE namespace = ?1 AND name = ?2 AND token = ?3",
                params![
                    ns.as_str(),
                    name,
                    token,
                    lease.expires_at,
                    lease.ttl_ms,
                    encode_holder(&lease.holder)
                ],
            )
            .map_err(internal)?;
            Ok(Outcome::Commit(lease))
        })
        .await
    }

    async fn release(&self, namespace: &Namespace, name: &LeaseName, token: i64) -> Result<()> {
        let (ns, name) = (namespace.clone(), name.clone());
        self.write(move |tx| {
            let now = now_ms(tx)?;
            let deleted = tx
                .execute(
                    "DELETE FROM lease_holders WHERE namespace = ?1 AND name = ?2 AND token = ?3 AND expires_at > ?4",
                    params![ns.as_str(), name.as_str(), token, now],
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

    async fn cancel_wait(&self, namespace: &Namespace, name: &LeaseName, ticket: i64) -> Result<()> {
        let (ns, name) = (namespace.clone(), name.clone());
        self.write(move |tx| {
            tx.execute(
                "DELETE FROM lease_waiters WHERE namespace = ?1 AND name = ?2 AND ticket = ?3",
                params![ns.as_str(), name.as_str(), ticket],
            )
            .map_err(internal)?;
            Ok(Outcome::Commit(()))
        })
        .await
    }

    async fn list(&self, namespace: &Namespace, prefix: &Prefix) -> Result<Vec<Lease>> {
        let (ns, prefix) = (namespace.clone(), prefix.clone());
        self.read(move |tx| {
            let now = now_ms(tx)?;
            select_leases(
                tx,
                &ns,
                &format!(
                    "SELECT {HOLDER_COLUMNS} FROM lease_holders h JOIN lease_names n USING (namespace, name)
                     WHERE h.namespace = ?1 AND substr(h.name, 1, length(?2)) = ?2 AND h.expires_at > ?3
                     ORDER BY h.name, h.token"
                ),
                params![ns.as_str(), prefix.as_str(), now],
            )
        })
        .await
    }

    async fn show(&self, namespace: &Namespace, name: &LeaseName) -> Result<LeaseInfo> {
        let (ns, name) = (namespace.clone(), name.clone());
        self.read(move |tx| {
            let now = now_ms(tx)?;
            let Some((slots, last_token)) = name_row(tx, &ns, &name)? else {
                return Err(not_found(&ns, &name));
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
