//! The supervisor's records: one row per loop (its state, a heartbeat) and one per round.

use arbiter_core::Millis;
use serde::Serialize;

/// A loop as the fleet view shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LoopState {
    pub name: String,
    /// The last round started (0: none yet).
    pub round: i64,
    /// `idle`, `running`, `backing off`, `disabled` (what the supervisor last said).
    pub state: String,
    pub consecutive_failures: i64,
    pub next_run_at: Millis,
    pub last_status: Option<String>,
    pub last_reason: Option<String>,
    pub last_exit: Option<i64>,
    pub host: String,
    pub pid: i64,
    pub heartbeat_at: Millis,
}

/// How a round ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoundEnd {
    pub round: i64,
    /// `succeeded`, `failed`, `timed out`, `lost`, `interrupted`.
    pub status: String,
    pub exit_code: Option<i64>,
    pub reason: String,
    pub consecutive_failures: i64,
    /// When the loop runs next: this long after now (store clock).
    pub next_in_ms: i64,
    pub state: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RoundInfo {
    pub round: i64,
    pub host: String,
    pub pid: i64,
    pub started_at: Millis,
    pub ended_at: Option<Millis>,
    /// `running`, `succeeded`, `failed`, `timed out`, `lost`, `interrupted`, `abandoned`.
    pub status: String,
    pub exit_code: Option<i64>,
    pub reason: Option<String>,
    pub log_path: String,
}

pub(crate) const STATE_COLUMNS: &str = "loop, round, state, consecutive_failures, next_run_at, last_status, last_reason, \
     last_exit, host, pid, heartbeat_at";
pub(crate) const ROUND_COLUMNS: &str = "round, host, pid, started_at, ended_at, status, exit_code, reason, log_path";
pub(crate) const ABANDONED: &str = "the supervisor running it stopped mid-round (crashed or was killed)";
