//! The supervisor's records on PostgreSQL (the SQL; the rules are in `crate::loops`).

use arbiter_core::lease::{Holder, Lease};
use arbiter_core::loops::LoopStatus;
use arbiter_core::name::{LoopName, Namespace};
use arbiter_core::{Millis, Result};
use async_trait::async_trait;
use deadpool_postgres::Transaction;
use tokio_postgres::Row;

use super::{PgStore, execute, notify, now_ms, pg_error, query};
use crate::api::{LoopStore, Topic};
use crate::loops::{
    ABANDONED, LoopState, ROUND_COLUMNS, RoundEnd, RoundInfo, RoundLogPath, RoundRow, STATE_COLUMNS, StateRow,
    check_fence, decode_round, decode_state, join_logins, overrides_abandoned, updates_loop,
};
use crate::schema::Migration;

/// A row's columns `0..n` as a tuple, in order.
macro_rules! columns {
    ($row:expr; $($i:literal)+) => {
        ($($row.get($i),)+)
    };
}

fn state_row(r: &Row) -> StateRow {
    columns!(r; 0 1 2 3 4 5 6 7 8 9 10)
}

fn round_row(r: &Row) -> RoundRow {
    columns!(r; 0 1 2 3 4 5 6 7 8 9 10)
}

async fn ensure(tx: &Transaction<'_>, ns: &str, name: &str, holder: &Holder, now: Millis) -> Result<()> {
    execute(
        tx,
        "INSERT INTO loop_state (namespace, loop, round, state, consecutive_failures, next_run_at, host, pid, heartbeat_at)
         VALUES ($1, $2, 0, $6, 0, $3, $4, $5, $3) ON CONFLICT DO NOTHING",
        &[&ns, &name, &now, &holder.host, &i64::from(holder.pid), &LoopStatus::Idle.as_str()],
    )
    .await
    .map(drop)
}

/// Takes the loop's next round number and records the round running (`abandon`: first
/// marks `abandoned` the rounds an earlier holder left running).
async fn start_round(
    tx: &Transaction<'_>,
    ns: &str,
    name: &str,
    holder: &Holder,
    now: Millis,
    abandon: bool,
    log_path: RoundLogPath,
) -> Result<i64> {
    ensure(tx, ns, name, holder, now).await?;
    if abandon {
        execute(
            tx,
            "UPDATE loop_rounds SET status = 'abandoned', ended_at = $3, reason = $4
             WHERE namespace = $1 AND loop = $2 AND status = 'running'",
            &[&ns, &name, &now, &ABANDONED],
        )
        .await?;
    }
    let pid = i64::from(holder.pid);
    let rows = query(
        tx,
        "UPDATE loop_state SET round = round + 1, state = 'running', host = $3, pid = $4, heartbeat_at = $5
         WHERE namespace = $1 AND loop = $2 RETURNING round",
        &[&ns, &name, &holder.host, &pid, &now],
    )
    .await?;
    let round: i64 = rows[0].get(0);
    execute(
        tx,
        "INSERT INTO loop_rounds (namespace, loop, round, host, pid, started_at, status, log_path)
         VALUES ($1, $2, $3, $4, $5, $6, 'running', $7)",
        &[&ns, &name, &round, &holder.host, &pid, &now, &log_path(round)],
    )
    .await?;
    Ok(round)
}

#[async_trait]
impl LoopStore for PgStore {
    async fn begin_round(
        &self,
        namespace: &Namespace,
        loop_name: &LoopName,
        lease: &Lease,
        log_path: RoundLogPath,
    ) -> Result<i64> {
        let (ns, name) = (namespace.as_str(), loop_name.as_str());
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_error)?;
        // The fence: lock the holder row; only the current holder may start a round.
        let held = query(
            &tx,
            "SELECT expires_at FROM lease_holders WHERE namespace = $1 AND name = $2 AND token = $3 FOR UPDATE",
            &[&ns, &lease.name.as_str(), &lease.token],
        )
        .await?;
        let now = now_ms(&tx).await?;
        check_fence(lease, held.first().map(|r| r.get::<_, i64>(0)), now)?;
        let round = start_round(&tx, ns, name, &lease.holder, now, true, log_path).await?;
        notify(&tx, Topic::Loops, &self.schema).await?;
        tx.commit().await.map_err(pg_error)?;
        Ok(round)
    }

    async fn begin_item_round(
        &self,
        namespace: &Namespace,
        loop_name: &LoopName,
        item: i64,
        claim: &Lease,
        log_path: RoundLogPath,
    ) -> Result<i64> {
        let (ns, name) = (namespace.as_str(), loop_name.as_str());
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_error)?;
        // The fence: the item must still be claimed with this token (its row locked
        // against a concurrent end of the claim until the round is recorded).
        let held = query(
            &tx,
            "SELECT expires_at FROM queue_items
             WHERE namespace = $1 AND id = $2 AND state = 'claimed' AND last_token = $3 FOR SHARE",
            &[&ns, &item, &claim.token],
        )
        .await?;
        let now = now_ms(&tx).await?;
        check_fence(claim, held.first().and_then(|r| r.get::<_, Option<i64>>(0)), now)?;
        let round = start_round(&tx, ns, name, &claim.holder, now, false, log_path).await?;
        notify(&tx, Topic::Loops, &self.schema).await?;
        tx.commit().await.map_err(pg_error)?;
        Ok(round)
    }

    async fn end_round(&self, namespace: &Namespace, loop_name: &LoopName, end: RoundEnd) -> Result<()> {
        let (ns, name) = (namespace.as_str(), loop_name.as_str());
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_error)?;
        let now = now_ms(&tx).await?;
        execute(
            &tx,
            "UPDATE loop_rounds SET status = $4, ended_at = $5, exit_code = $6, reason = $7, api_calls = $9,
                 github_logins = $10
             WHERE namespace = $1 AND loop = $2 AND round = $3
               AND (status = 'running' OR (status = 'abandoned' AND $8))",
            &[
                &ns,
                &name,
                &end.round,
                &end.status.as_str(),
                &now,
                &end.exit_code,
                &end.reason,
                &overrides_abandoned(&end),
                &end.api_calls,
                &join_logins(&end.github_logins),
            ],
        )
        .await?;
        if updates_loop(&end) {
            execute(
                &tx,
                "UPDATE loop_state SET state = $4, consecutive_failures = $5, next_run_at = $6, last_status = $7,
                     last_reason = $8, last_exit = $9, heartbeat_at = $10
                 WHERE namespace = $1 AND loop = $2 AND round = $3",
                &[
                    &ns,
                    &name,
                    &end.round,
                    &end.state.as_str(),
                    &end.consecutive_failures,
                    &(now + end.next_in_ms),
                    &end.status.as_str(),
                    &end.reason,
                    &end.exit_code,
                    &now,
                ],
            )
            .await?;
        }
        notify(&tx, Topic::Loops, &self.schema).await?;
        tx.commit().await.map_err(pg_error)
    }

    async fn heartbeat(
        &self,
        namespace: &Namespace,
        loop_name: &LoopName,
        state: LoopStatus,
        next_run_at: Option<Millis>,
        holder: &Holder,
    ) -> Result<LoopState> {
        let (ns, name) = (namespace.as_str(), loop_name.as_str());
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_error)?;
        let now = now_ms(&tx).await?;
        ensure(&tx, ns, name, holder, now).await?;
        let rows = query(
            &tx,
            &format!(
                "UPDATE loop_state SET state = $3, host = $4, pid = $5, heartbeat_at = $6,
                     next_run_at = COALESCE($7, next_run_at)
                 WHERE namespace = $1 AND loop = $2 RETURNING {STATE_COLUMNS}"
            ),
            &[
                &ns,
                &name,
                &state.as_str(),
                &holder.host,
                &i64::from(holder.pid),
                &now,
                &next_run_at,
            ],
        )
        .await?;
        tx.commit().await.map_err(pg_error)?;
        decode_state(state_row(&rows[0]))
    }

    async fn status(&self, namespace: &Namespace) -> Result<(Millis, Vec<LoopState>)> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_error)?;
        let now = now_ms(&tx).await?;
        let rows = query(
            &tx,
            &format!("SELECT {STATE_COLUMNS} FROM loop_state WHERE namespace = $1 ORDER BY loop COLLATE \"C\""),
            &[&namespace.as_str()],
        )
        .await?;
        let loops = rows.iter().map(|r| decode_state(state_row(r))).collect::<Result<_>>()?;
        Ok((now, loops))
    }

    async fn rounds(&self, namespace: &Namespace, loop_name: &LoopName, limit: usize) -> Result<Vec<RoundInfo>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self
            .single(
                &format!(
                    "SELECT {ROUND_COLUMNS} FROM loop_rounds WHERE namespace = $1 AND loop = $2 ORDER BY round DESC LIMIT $3"
                ),
                &[&namespace.as_str(), &loop_name.as_str(), &limit],
            )
            .await?;
        rows.iter().map(|r| decode_round(round_row(r))).collect()
    }

    async fn round(&self, namespace: &Namespace, loop_name: &LoopName, round: i64) -> Result<Option<RoundInfo>> {
        let rows = self
            .single(
                &format!("SELECT {ROUND_COLUMNS} FROM loop_rounds WHERE namespace = $1 AND loop = $2 AND round = $3"),
                &[&namespace.as_str(), &loop_name.as_str(), &round],
            )
            .await?;
        rows.first().map(|r| decode_round(round_row(r))).transpose()
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
        round                BIGINT NOT NULL,
        state                TEXT NOT NULL,
        consecutive_failures BIGINT NOT NULL,
        next_run_at          BIGINT NOT NULL,
        last_status          TEXT,
        last_reason          TEXT,
        last_exit            BIGINT,
        host                 TEXT NOT NULL,
        pid                  BIGINT NOT NULL,
        heartbeat_at         BIGINT NOT NULL,
        PRIMARY KEY (namespace, loop)
    );
    CREATE TABLE loop_rounds (
        namespace  TEXT NOT NULL,
        loop       TEXT NOT NULL,
        round      BIGINT NOT NULL,
        host       TEXT NOT NULL,
        pid        BIGINT NOT NULL,
        started_at BIGINT NOT NULL,
        ended_at   BIGINT,
        status     TEXT NOT NULL,
        exit_code  BIGINT,
        reason     TEXT,
        log_path   TEXT NOT NULL,
        PRIMARY KEY (namespace, loop, round)
    );
    "#,
    },
    // 6: what a round spent of GitHub's budget, and as whom (issue 14).
    Migration {
        version: 6,
        sql: r#"
    ALTER TABLE loop_rounds ADD COLUMN api_calls BIGINT;
    ALTER TABLE loop_rounds ADD COLUMN github_logins TEXT;
    "#,
    },
];
