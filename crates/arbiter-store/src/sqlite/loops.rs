//! The supervisor's records on SQLite (the SQL; the rules are in `crate::loops`).

use arbiter_core::lease::{Holder, Lease};
use arbiter_core::loops::LoopStatus;
use arbiter_core::name::{LoopName, Namespace};
use arbiter_core::{Millis, Result};
use async_trait::async_trait;
use rusqlite::{OptionalExtension, Transaction, params};

use super::{Outcome, SqliteStore, internal, now_ms};
use crate::api::LoopStore;
use crate::loops::{
    ABANDONED, LoopState, ROUND_COLUMNS, RoundEnd, RoundInfo, RoundLogPath, RoundRow, STATE_COLUMNS, StateRow,
    check_fence, decode_round, decode_state, join_logins, overrides_abandoned, updates_loop,
};
use crate::schema::Migration;

/// A stored row as its tuple (rusqlite reads tuples by position).
fn row<T: for<'a> TryFrom<&'a rusqlite::Row<'a>, Error = rusqlite::Error>>(
    r: &rusqlite::Row<'_>,
) -> rusqlite::Result<T> {
    T::try_from(r)
}

fn ensure(tx: &Transaction<'_>, ns: &str, name: &str, holder: &Holder, now: Millis) -> Result<()> {
    tx.execute(
        "INSERT OR IGNORE INTO loop_state (namespace, loop, round, state, consecutive_failures, next_run_at, host, pid, heartbeat_at)
         VALUES (?1, ?2, 0, ?6, 0, ?3, ?4, ?5, ?3)",
        params![ns, name, now, holder.host, holder.pid, LoopStatus::Idle.as_str()],
    )
    .map(drop)
    .map_err(internal)
}

/// Takes the loop's next round number and records the round running (`abandon`: first
/// marks `abandoned` the rounds an earlier holder left running).
fn start_round(
    tx: &Transaction<'_>,
    ns: &str,
    name: &str,
    holder: &Holder,
    now: Millis,
    abandon: bool,
    log_path: RoundLogPath,
) -> Result<i64> {
    ensure(tx, ns, name, holder, now)?;
    if abandon {
        tx.execute(
            "UPDATE loop_rounds SET status = 'abandoned', ended_at = ?3, reason = ?4
             WHERE namespace = ?1 AND loop = ?2 AND status = 'running'",
            params![ns, name, now, ABANDONED],
        )
        .map_err(internal)?;
    }
    let round: i64 = tx
        .query_row(
            "UPDATE loop_state SET round = round + 1, state = 'running', host = ?3, pid = ?4, heartbeat_at = ?5
             WHERE namespace = ?1 AND loop = ?2 RETURNING round",
            params![ns, name, holder.host, holder.pid, now],
            |r| r.get(0),
        )
        .map_err(internal)?;
    tx.execute(
        "INSERT INTO loop_rounds (namespace, loop, round, host, pid, started_at, status, log_path)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'running', ?7)",
        params![ns, name, round, holder.host, holder.pid, now, log_path(round)],
    )
    .map_err(internal)?;
    Ok(round)
}

#[async_trait]
impl LoopStore for SqliteStore {
    async fn begin_round(
        &self,
        namespace: &Namespace,
        loop_name: &LoopName,
        lease: &Lease,
        log_path: RoundLogPath,
    ) -> Result<i64> {
        let (ns, name, lease) = (namespace.to_string(), loop_name.to_string(), lease.clone());
        self.write(move |tx| {
            let now = now_ms(tx)?;
            // The fence: the caller must still hold the loop's lease.
            let expires_at: Option<Millis> = tx
                .query_row(
                    "SELECT expires_at FROM lease_holders WHERE namespace = ?1 AND name = ?2 AND token = ?3",
                    params![ns, lease.name.as_str(), lease.token],
                    |r| r.get(0),
                )
                .optional()
                .map_err(internal)?;
            check_fence(&lease, expires_at, now)?;
            start_round(tx, &ns, &name, &lease.holder, now, true, log_path).map(Outcome::Commit)
        })
        .await
    }

    async fn begin_item_round(
        &self,
        namespace: &Namespace,
        loop_name: &LoopName,
        item: i64,
        claim: &Lease,
        log_path: RoundLogPath,
    ) -> Result<i64> {
        let (ns, name, claim) = (namespace.to_string(), loop_name.to_string(), claim.clone());
        self.write(move |tx| {
            let now = now_ms(tx)?;
            // The fence: the item must still be claimed with this token.
            let expires_at: Option<Millis> = tx
                .query_row(
                    "SELECT expires_at FROM queue_items
                     WHERE namespace = ?1 AND id = ?2 AND state = 'claimed' AND last_token = ?3",
                    params![ns, item, claim.token],
                    |r| r.get(0),
                )
                .optional()
                .map_err(internal)?;
            check_fence(&claim, expires_at, now)?;
            start_round(tx, &ns, &name, &claim.holder, now, false, log_path).map(Outcome::Commit)
        })
        .await
    }

    async fn end_round(&self, namespace: &Namespace, loop_name: &LoopName, end: RoundEnd) -> Result<()> {
        let (ns, name) = (namespace.to_string(), loop_name.to_string());
        self.write(move |tx| {
            let now = now_ms(tx)?;
            tx.execute(
                "UPDATE loop_rounds SET status = ?4, ended_at = ?5, exit_code = ?6, reason = ?7, api_calls = ?9,
                     github_logins = ?10
                 WHERE namespace = ?1 AND loop = ?2 AND round = ?3
                   AND (status = 'running' OR (status = 'abandoned' AND ?8))",
                params![
                    ns,
                    name,
                    end.round,
                    end.status.as_str(),
                    now,
                    end.exit_code,
                    end.reason,
                    overrides_abandoned(&end),
                    end.api_calls,
                    join_logins(&end.github_logins)
                ],
            )
            .map_err(internal)?;
            if updates_loop(&end) {
                tx.execute(
                    "UPDATE loop_state SET state = ?4, consecutive_failures = ?5, next_run_at = ?6, last_status = ?7,
                         last_reason = ?8, last_exit = ?9, heartbeat_at = ?10
                     WHERE namespace = ?1 AND loop = ?2 AND round = ?3",
                    params![
                        ns,
                        name,
                        end.round,
                        end.state.as_str(),
                        end.consecutive_failures,
                        now + end.next_in_ms,
                        end.status.as_str(),
                        end.reason,
                        end.exit_code,
                        now
                    ],
                )
                .map_err(internal)?;
            }
            Ok(Outcome::Commit(()))
        })
        .await
    }

    async fn heartbeat(
        &self,
        namespace: &Namespace,
        loop_name: &LoopName,
        state: LoopStatus,
        next_run_at: Option<Millis>,
        holder: &Holder,
    ) -> Result<LoopState> {
        let (ns, name, holder) = (namespace.to_string(), loop_name.to_string(), holder.clone());
        self.write(move |tx| {
            let now = now_ms(tx)?;
            ensure(tx, &ns, &name, &holder, now)?;
            let row = tx
                .query_row(
                    &format!(
                        "UPDATE loop_state SET state = ?3, host = ?4, pid = ?5, heartbeat_at = ?6,
                             next_run_at = COALESCE(?7, next_run_at)
                         WHERE namespace = ?1 AND loop = ?2 RETURNING {STATE_COLUMNS}"
                    ),
                    params![ns, name, state.as_str(), holder.host, holder.pid, now, next_run_at],
                    row::<StateRow>,
                )
                .map_err(internal)?;
            Ok(Outcome::Commit(decode_state(row)?))
        })
        .await
    }

    async fn status(&self, namespace: &Namespace) -> Result<(Millis, Vec<LoopState>)> {
        let ns = namespace.to_string();
        self.read(move |tx| {
            let now = now_ms(tx)?;
            let mut stmt = tx
                .prepare_cached(&format!(
                    "SELECT {STATE_COLUMNS} FROM loop_state WHERE namespace = ?1 ORDER BY loop"
                ))
                .map_err(internal)?;
            let rows = stmt
                .query_map(params![ns], row::<StateRow>)
                .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
                .map_err(internal)?;
            Ok((now, rows.into_iter().map(decode_state).collect::<Result<_>>()?))
        })
        .await
    }

    async fn rounds(&self, namespace: &Namespace, loop_name: &LoopName, limit: usize) -> Result<Vec<RoundInfo>> {
        let (ns, name) = (namespace.to_string(), loop_name.to_string());
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(move |tx| {
            let mut stmt = tx
                .prepare_cached(&format!(
                    "SELECT {ROUND_COLUMNS} FROM loop_rounds WHERE namespace = ?1 AND loop = ?2 ORDER BY round DESC LIMIT ?3"
                ))
                .map_err(internal)?;
            let rows = stmt
                .query_map(params![ns, name, limit], row::<RoundRow>)
                .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
                .map_err(internal)?;
            rows.into_iter().map(decode_round).collect()
        })
        .await
    }

    async fn round(&self, namespace: &Namespace, loop_name: &LoopName, round: i64) -> Result<Option<RoundInfo>> {
        let (ns, name) = (namespace.to_string(), loop_name.to_string());
        self.read(move |tx| {
            let row = tx
                .query_row(
                    &format!(
                        "SELECT {ROUND_COLUMNS} FROM loop_rounds WHERE namespace = ?1 AND loop = ?2 AND round = ?3"
                    ),
                    params![ns, name, round],
                    row::<RoundRow>,
                )
                .optional()
                .map_err(internal)?;
            row.map(decode_round).transpose()
        })
        .await
    }
}

/// This primitive's schema steps (see `crate::schema`). Never edit a shipped step; add one.
pub(super) const MIGRATIONS: &[Migration] = &[
    // 4: the supervisor's loops and their rounds.
    Migration {
        version: 4,
        sql: r#"
    CREATE TABLE loop_state (
        namespace            TEXT NOT NULL,
        loop                 TEXT NOT NULL,
        round                INTEGER NOT NULL,
        state                TEXT NOT NULL,
        consecutive_failures INTEGER NOT NULL,
        next_run_at          INTEGER NOT NULL,
        last_status          TEXT,
        last_reason          TEXT,
        last_exit            INTEGER,
        host                 TEXT NOT NULL,
        pid                  INTEGER NOT NULL,
        heartbeat_at         INTEGER NOT NULL,
        PRIMARY KEY (namespace, loop)
    ) WITHOUT ROWID;
    CREATE TABLE loop_rounds (
        namespace  TEXT NOT NULL,
        loop       TEXT NOT NULL,
        round      INTEGER NOT NULL,
        host       TEXT NOT NULL,
        pid        INTEGER NOT NULL,
        started_at INTEGER NOT NULL,
        ended_at   INTEGER,
        status     TEXT NOT NULL,
        exit_code  INTEGER,
        reason     TEXT,
        log_path   TEXT NOT NULL,
        PRIMARY KEY (namespace, loop, round)
    ) WITHOUT ROWID;
    "#,
    },
    // 6: what a round spent of GitHub's budget, and as whom (issue 14).
    Migration {
        version: 6,
        sql: r#"
    ALTER TABLE loop_rounds ADD COLUMN api_calls INTEGER;
    ALTER TABLE loop_rounds ADD COLUMN github_logins TEXT;
    "#,
    },
];
