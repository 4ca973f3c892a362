//! The supervisor's records on PostgreSQL.

use arbiter_core::lease::{Holder, Lease};
use arbiter_core::{Millis, Result};
use async_trait::async_trait;
use deadpool_postgres::Transaction;
use tokio_postgres::Row;

use super::{PgStore, execute, now_ms, pg_error, query};
use crate::api::LoopStore;
use crate::loops::{ABANDONED, LoopState, ROUND_COLUMNS, RoundEnd, RoundInfo, STATE_COLUMNS};
use crate::sql::lost;

fn state_row(r: &Row) -> LoopState {
    LoopState {
        name: r.get(0),
        round: r.get(1),
        state: r.get(2),
        consecutive_failures: r.get(3),
        next_run_at: r.get(4),
        last_status: r.get(5),
        last_reason: r.get(6),
        last_exit: r.get(7),
        host: r.get(8),
        pid: r.get(9),
        heartbeat_at: r.get(10),
    }
}

async fn ensure(tx: &Transaction<'_>, ns: &str, name: &str, holder: &Holder, now: Millis) -> Result<()> {
    execute(
        tx,
        "INSERT INTO loop_state (namespace, loop, round, state, consecutive_failures, next_run_at, host, pid, heartbeat_at)
         VALUES ($1, $2, 0, 'idle', 0, $3, $4, $5, $3) ON CONFLICT DO NOTHING",
        &[&ns, &name, &now, &holder.host, &i64::from(holder.pid)],
    )
    .await
    .map(drop)
}

#[async_trait]
impl LoopStore for PgStore {
    async fn begin_round(&self, namespace: &str, lease: &Lease, log_path: &str) -> Result<i64> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_error)?;
        // The fence: lock the holder row; only the current holder may start a round.
        let held = query(
            &tx,
            "SELECT expires_at FROM lease_holders WHERE namespace = $1 AND name = $2 AND token = $3 FOR UPDATE",
            &[&namespace, &lease.name.as_str(), &lease.token],
        )
        .await?;
        let now = now_ms(&tx).await?;
        if held.first().is_none_or(|r| r.get::<_, i64>(0) <= now) {
            return Err(lost(&lease.name, lease.token));
        }
        let name = lease.name.strip_prefix("loop/").unwrap_or(&lease.name).to_string();
        ensure(&tx, namespace, &name, &lease.holder, now).await?;
        execute(
            &tx,
            "UPDATE loop_rounds SET status = 'abandoned', ended_at = $3, reason = $4
             WHERE namespace = $1 AND loop = $2 AND status = 'running'",
            &[&namespace, &name, &now, &ABANDONED],
        )
        .await?;
        let pid = i64::from(lease.holder.pid);
        let rows = query(
            &tx,
            "UPDATE loop_state SET round = round + 1, state = 'running', host = $3, pid = $4, heartbeat_at = $5
             WHERE namespace = $1 AND loop = $2 RETURNING round",
            &[&namespace, &name, &lease.holder.host, &pid, &now],
        )
        .await?;
        let round: i64 = rows[0].get(0);
        execute(
            &tx,
            "INSERT INTO loop_rounds (namespace, loop, round, host, pid, started_at, status, log_path)
             VALUES ($1, $2, $3, $4, $5, $6, 'running', $7)",
            &[
                &namespace,
                &name,
                &round,
                &lease.holder.host,
                &pid,
                &now,
                &log_path.replace("{round}", &round.to_string()),
            ],
        )
        .await?;
        tx.commit().await.map_err(pg_error)?;
        Ok(round)
    }

    async fn end_round(&self, namespace: &str, loop_name: &str, end: RoundEnd) -> Result<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_error)?;
        let now = now_ms(&tx).await?;
        execute(
            &tx,
            // A round the next supervisor marked abandoned is recorded as lost by the one
            // that ran it, which knows why it ended.
            "UPDATE loop_rounds SET status = $4, ended_at = $5, exit_code = $6, reason = $7
             WHERE namespace = $1 AND loop = $2 AND round = $3
               AND (status = 'running' OR (status = 'abandoned' AND $4 = 'lost'))",
            &[
                &namespace,
                &loop_name,
                &end.round,
                &end.status,
                &now,
                &end.exit_code,
                &end.reason,
            ],
        )
        .await?;
        execute(
            &tx,
            "UPDATE loop_state SET state = $4, consecutive_failures = $5, next_run_at = $6, last_status = $7,
                 last_reason = $8, last_exit = $9, heartbeat_at = $10
             WHERE namespace = $1 AND loop = $2 AND round = $3",
            &[
                &namespace,
                &loop_name,
                &end.round,
                &end.state,
                &end.consecutive_failures,
                &(now + end.next_in_ms),
                &end.status,
                &end.reason,
                &end.exit_code,
                &now,
            ],
        )
        .await?;
        tx.commit().await.map_err(pg_error)
    }

    async fn heartbeat(
        &self,
        namespace: &str,
        loop_name: &str,
        state: &str,
        next_run_at: Option<Millis>,
        holder: &Holder,
    ) -> Result<LoopState> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_error)?;
        let now = now_ms(&tx).await?;
        ensure(&tx, namespace, loop_name, holder, now).await?;
        let rows = query(
            &tx,
            &format!(
                "UPDATE loop_state SET state = $3, host = $4, pid = $5, heartbeat_at = $6,
                     next_run_at = COALESCE($7, next_run_at)
                 WHERE namespace = $1 AND loop = $2 RETURNING {STATE_COLUMNS}"
            ),
            &[
                &namespace,
                &loop_name,
                &state,
                &holder.host,
                &i64::from(holder.pid),
                &now,
                &next_run_at,
            ],
        )
        .await?;
        tx.commit().await.map_err(pg_error)?;
        Ok(state_row(&rows[0]))
    }

    async fn status(&self, namespace: &str) -> Result<(Millis, Vec<LoopState>)> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_error)?;
        let now = now_ms(&tx).await?;
        let rows = query(
            &tx,
            &format!("SELECT {STATE_COLUMNS} FROM loop_state WHERE namespace = $1 ORDER BY loop COLLATE \"C\""),
            &[&namespace],
        )
        .await?;
        Ok((now, rows.iter().map(state_row).collect()))
    }

    async fn rounds(&self, namespace: &str, loop_name: &str, limit: usize) -> Result<Vec<RoundInfo>> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_error)?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = query(
            &tx,
            &format!("SELECT {ROUND_COLUMNS} FROM loop_rounds WHERE namespace = $1 AND loop = $2 ORDER BY round DESC LIMIT $3"),
            &[&namespace, &loop_name, &limit],
        )
        .await?;
        Ok(rows
            .iter()
            .map(|r| RoundInfo {
                round: r.get(0),
                host: r.get(1),
                pid: r.get(2),
                started_at: r.get(3),
                ended_at: r.get(4),
                status: r.get(5),
                exit_code: r.get(6),
                reason: r.get(7),
                log_path: r.get(8),
            })
            .collect())
    }
}
