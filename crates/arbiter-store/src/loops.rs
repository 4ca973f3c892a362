//! The supervisor's records: one row per loop (its state, a heartbeat) and one per round.
//!
//! What both backends share lives here: the row types, decoding (stored text back into
//! [`LoopName`], [`LoopStatus`], [`RoundStatus`]), the fence check and the rules of
//! [`LoopStore::end_round`](crate::LoopStore::end_round). The backends differ only in SQL.
//!
//! The store knows nothing of the supervisor's naming: it is told the loop's name, the
//! lease that fences a round, and how to name the round's log once the number is known
//! ([`RoundLogPath`]); it never derives one from the other.

use arbiter_core::lease::Lease;
use arbiter_core::loops::{LoopStatus, RoundStatus};
use arbiter_core::name::LoopName;
use arbiter_core::{Error, Millis, Result};
use serde::Serialize;

use crate::sql::lost;

/// A loop as the fleet view shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LoopState {
    pub name: LoopName,
    /// The last round started (0: none yet).
    pub round: i64,
    /// What the supervisor last said it was doing.
    pub state: LoopStatus,
    pub consecutive_failures: i64,
    pub next_run_at: Millis,
    pub last_status: Option<RoundStatus>,
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
    pub status: RoundStatus,
    pub exit_code: Option<i64>,
    pub reason: String,
    pub consecutive_failures: i64,
    /// When the loop runs next: this long after now (store clock).
    pub next_in_ms: i64,
    /// What the loop does until then.
    pub state: LoopStatus,
    /// The GitHub API calls the round made upstream, as the supervisor's proxy counted
    /// them for this loop (`None`: the loop does not go through the proxy).
    pub api_calls: Option<i64>,
    /// The GitHub logins the loop's calls were made as (empty: none seen).
    pub github_logins: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RoundInfo {
    pub round: i64,
    pub host: String,
    pub pid: i64,
    pub started_at: Millis,
    pub ended_at: Option<Millis>,
    pub status: RoundStatus,
    pub exit_code: Option<i64>,
    pub reason: Option<String>,
    pub log_path: String,
    /// The GitHub API calls the round made upstream (`None`: not measured — the loop does
    /// not go through the proxy, or the round has not ended).
    pub api_calls: Option<i64>,
    /// The GitHub logins its calls were made as.
    pub github_logins: Vec<String>,
}

/// Names a round's log from its number, inside the transaction that takes the number (so
/// the round is never recorded without its log). The supervisor decides the naming.
pub type RoundLogPath = Box<dyn FnOnce(i64) -> String + Send>;

pub(crate) const STATE_COLUMNS: &str = "loop, round, state, consecutive_failures, next_run_at, last_status, last_reason, \
     last_exit, host, pid, heartbeat_at";
pub(crate) const ROUND_COLUMNS: &str =
    "round, host, pid, started_at, ended_at, status, exit_code, reason, log_path, api_calls, github_logins";
pub(crate) const ABANDONED: &str = "the supervisor running it stopped mid-round (crashed or was killed)";

/// A `loop_state` row as stored, in [`STATE_COLUMNS`] order.
pub(crate) type StateRow = (
    String,
    i64,
    String,
    i64,
    Millis,
    Option<String>,
    Option<String>,
    Option<i64>,
    String,
    i64,
    Millis,
);

/// A `loop_rounds` row as stored, in [`ROUND_COLUMNS`] order.
pub(crate) type RoundRow = (
    i64,
    String,
    i64,
    Millis,
    Option<Millis>,
    String,
    Option<i64>,
    Option<String>,
    String,
    Option<i64>,
    Option<String>,
);

fn corrupt(what: &str, e: arbiter_core::ParseError) -> Error {
    Error::internal(format!("corrupt {what} record: {}", e.message))
}

pub(crate) fn decode_state(row: StateRow) -> Result<LoopState> {
    let (
        name,
        round,
        state,
        consecutive_failures,
        next_run_at,
        last_status,
        last_reason,
        last_exit,
        host,
        pid,
        heartbeat_at,
    ) = row;
    Ok(LoopState {
        name: LoopName::parse(&name).map_err(|e| corrupt("loop", e))?,
        round,
        state: LoopStatus::parse(&state).map_err(|e| corrupt("loop", e))?,
        consecutive_failures,
        next_run_at,
        last_status: last_status
            .map(|s| RoundStatus::parse(&s))
            .transpose()
            .map_err(|e| corrupt("loop", e))?,
        last_reason,
        last_exit,
        host,
        pid,
        heartbeat_at,
    })
}

pub(crate) fn decode_round(row: RoundRow) -> Result<RoundInfo> {
    let (round, host, pid, started_at, ended_at, status, exit_code, reason, log_path, api_calls, logins) = row;
    Ok(RoundInfo {
        round,
        host,
        pid,
        started_at,
        ended_at,
        status: RoundStatus::parse(&status).map_err(|e| corrupt("round", e))?,
        exit_code,
        reason,
        log_path,
        api_calls,
        github_logins: split_logins(logins.as_deref()),
    })
}

/// How a round's GitHub logins are stored: space-separated (a login has no spaces), `NULL`
/// for none.
pub(crate) fn join_logins(logins: &[String]) -> Option<String> {
    (!logins.is_empty()).then(|| logins.join(" "))
}

fn split_logins(text: Option<&str>) -> Vec<String> {
    text.map(|t| t.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default()
}

/// The fence of a new round: the lease's holder row (its expiry, if the token still
/// holds it) must be live at `now`, else the caller lost it.
pub(crate) fn check_fence(lease: &Lease, expires_at: Option<Millis>, now: Millis) -> Result<()> {
    match expires_at {
        Some(expires_at) if expires_at > now => Ok(()),
        _ => Err(lost(&lease.name, lease.token)),
    }
}

/// Whether an end may overwrite a round the next holder marked `abandoned`: only a `lost`
/// end, from the supervisor that ran it and knows why it ended.
pub(crate) fn overrides_abandoned(end: &RoundEnd) -> bool {
    end.status == RoundStatus::Lost
}

/// Whether an end updates the loop's own row. A `lost` round's supervisor no longer holds
/// the loop: what the loop does next belongs to whoever holds it now, so only the round
/// is recorded.
pub(crate) fn updates_loop(end: &RoundEnd) -> bool {
    end.status != RoundStatus::Lost
}
