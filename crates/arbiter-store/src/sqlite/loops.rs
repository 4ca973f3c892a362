//! The supervisor's records on SQLite.

use arbiter_core::lease::{Holder, Lease};
use arbiter_core::{Millis, Result};
use async_trait::async_trait;
use rusqlite::{OptionalExtension, Transaction, params};

use super::{Outcome, SqliteStore, internal, now_ms};
use crate::api::LoopStore;
use crate::loops::{ABANDONED, LoopState, ROUND_COLUMNS, RoundEnd, RoundInfo, STATE_COLUMNS};
use crate::sql::lost;

fn state_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<LoopState> {
    Ok(LoopState {
        name: r.get(0)?,
        round: r.get(1)?,
        state: r.get(2)?,
        consecutive_failures: r.get(3)?,
        next_run_at: r.get(4)?,
        last_status: r.get(5)?,
        last_reason: r.get(6)?,
        last_exit: r.get(7)?,
        host: r.get(8)?,
        pid: r.get(9)?,
        heartbeat_at: r.get(10)?,
    })
}

fn load(tx: &Transaction<'_>, ns: &str, name: &str) -> Result<Option<LoopState>> {
    tx.query_row(
        &format!("SELECT {STATE_COLUMNS} FROM loop_state WHERE namespace = ?1 AND loop = ?2"),
        params![ns, name],
        state_row,
    )
    .optional()
    .map_err(internal)
}

fn ensure(tx: &Transaction<'_>, ns: &str, name: &str, holder: &Holder, now: Millis) -> Result<()> {
    tx.execute(
        "INSERT OR IGNORE INTO loop_state (namespace, loop, round, state, consecutive_failures, next_run_at, host, pid, heartbeat_at)
         VALUES (?1, ?2, 0, 'idle', 0, ?3, ?4, ?5, ?3)",
        params![ns, name, now, holder.host, holder.pid],
    )
    .map(drop)
    .map_err(internal)
}

#[async_trait]
impl LoopStore for SqliteStore {
    async fn begin_round(&self, namespace: &str, lease: &Lease, log_path: &str) -> Result<i64> {
        let (ns, lease, log_path) = (namespace.to_string(), lease.clone(), log_path.to_string());
        self.write(move |tx| {
            let now = now_ms(tx)?;
            // The fence: the caller must still hold the loop's lease.
            let held: Option<i64> = tx
                .query_row(
                    "SELECT token FROM lease_holders WHERE namespace = ?1 AND name = ?2 AND token = ?3 AND expires_at > ?4",
                    params![ns, lease.name.as_str(), lease.token, now],
                    |r| r.get(0),
                )
                .optional()
                .map_err(internal)?;
            if held.is_none() {
                return Err(lost(&lease.name, lease.token));
            }
            let name = lease.name.strip_prefix("loop/").unwrap_or(&lease.name).to_string();
            ensure(tx, &ns, &name, &lease.holder, now)?;
            tx.execute(
                "UPDATE loop_rounds SET status = 'abandoned', ended_at = ?3, reason = ?4
                 WHERE namespace = ?1 AND loop = ?2 AND status = 'running'",
                params![ns, name, now, ABANDONED],
            )
            .map_err(internal)?;
            let round: i64 = tx
                .query_row(
                    "UPDATE loop_state SET round = round + 1, state = 'running', host = ?3, pid = ?4, heartbeat_at = ?5
                     WHERE namespace = ?1 AND loop = ?2 RETURNING round",
                    params![ns, name, lease.holder.host, lease.holder.pid, now],
                    |r| r.get(0),
                )
                .map_err(internal)?;
            tx.execute(
                "INSERT INTO loop_rounds (namespace, loop, round, host, pid, started_at, status, log_path)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'running', ?7)",
                params![ns, name, round, lease.holder.host, lease.holder.pid, now, log_path.replace("{round}", &round.to_string())],
            )
            .map_err(internal)?;
            Ok(Outcome::Commit(round))
        })
        .await
    }

    async fn end_round(&self, namespace: &str, loop_name: &str, end: RoundEnd) -> Result<()> {
        let (ns, name) = (namespace.to_string(), loop_name.to_string());
        self.write(move |tx| {
            let now = now_ms(tx)?;
            tx.execute(
                // A round the next supervisor marked abandoned is recorded as lost by the
                // one that ran it, which knows why it ended.
                "UPDATE loop_rounds SET status = ?4, ended_at = ?5, exit_code = ?6, reason = ?7
                 WHERE namespace = ?1 AND loop = ?2 AND round = ?3
                   AND (status = 'running' OR (status = 'abandoned' AND ?4 = 'lost'))",
                params![ns, name, end.round, end.status, now, end.exit_code, end.reason],
            )
            .map_err(internal)?;
            tx.execute(
                "UPDATE loop_state SET state = ?4, consecutive_failures = ?5, next_run_at = ?6, last_status = ?7,
                     last_reason = ?8, last_exit = ?9, heartbeat_at = ?10
                 WHERE namespace = ?1 AND loop = ?2 AND round = ?3",
                params![
                    ns,
                    name,
                    end.round,
                    end.state,
                    end.consecutive_failures,
                    now + end.next_in_ms,
                    end.status,
                    end.reason,
                    end.exit_code,
                    now
                ],
            )
            .map_err(internal)?;
            Ok(Outcome::Commit(()))
        })
        .await
    }

    async fn heartbeat(
        &self,
        namespace: &str,
        loop_name: &str,
        state: &str,
        next_run_at: Option<Millis>,
        holder: &Holder,
    ) -> Result<LoopState> {
        let (ns, name, state, holder) = (
            namespace.to_string(),
            loop_name.to_string(),
            state.to_string(),
            holder.clone(),
        );
        self.write(move |tx| {
            let now = now_ms(tx)?;
            ensure(tx, &ns, &name, &holder, now)?;
            tx.execute(
                "UPDATE loop_state SET state = ?3, host = ?4, pid = ?5, heartbeat_at = ?6,
                     next_run_at = COALESCE(?7, next_run_at)
                 WHERE namespace = ?1 AND loop = ?2",
                params![ns, name, state, holder.host, holder.pid, now, next_run_at],
            )
            .map_err(internal)?;
            let state = load(tx, &ns, &name)?.expect("the row was just ensured");
            Ok(Outcome::Commit(state))
        })
        .await
    }

    async fn status(&self, namespace: &str) -> Result<(Millis, Vec<LoopState>)> {
        let ns = namespace.to_string();
        self.read(move |tx| {
            let now = now_ms(tx)?;
            let mut stmt = tx
                .prepare_cached(&format!(
                    "SELECT {STATE_COLUMNS} FROM loop_state WHERE namespace = ?1 ORDER BY loop"
                ))
                .map_err(internal)?;
            let rows = stmt
                .query_map(params![ns], state_row)
                .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
                .map_err(internal)?;
            Ok((now, rows))
        })
        .await
    }

    async fn rounds(&self, namespace: &str, loop_name: &str, limit: usize) -> Result<Vec<RoundInfo>> {
        let (ns, name) = (namespace.to_string(), loop_name.to_string());
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(move |tx| {
            let mut stmt = tx
                .prepare_cached(&format!(
                    "SELECT {ROUND_COLUMNS} FROM loop_rounds WHERE namespace = ?1 AND loop = ?2 ORDER BY round DESC LIMIT ?3"
                ))
                .map_err(internal)?;
            stmt.query_map(params![ns, name, limit], |r| {
                Ok(RoundInfo {
                    round: r.get(0)?,
                    host: r.get(1)?,
                    pid: r.get(2)?,
                    started_at: r.get(3)?,
                    ended_at: r.get(4)?,
                    status: r.get(5)?,
                    exit_code: r.get(6)?,
                    reason: r.get(7)?,
                    log_path: r.get(8)?,
                })
            })
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(internal)
        })
        .await
    }
}
