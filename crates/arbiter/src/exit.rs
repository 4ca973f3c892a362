//! Exit codes: the one place where a failure kind becomes a number.
//!
//! | code | meaning |
//! |------|---------|
//! | 0 | success |
//! | 1 | internal error (a bug, a corrupt store, an OS failure) |
//! | 2 | bad input: a flag, name, duration, URL or config was malformed |
//! | 3 | held, conflict or limited: the lease is held by someone else (or the wait ran out); a compare-and-swap did not match; `limit take` was not granted within `--wait` (the wait needed is on stderr); `queue claim` found nothing to claim (within `--wait`); `queue retry` of an item neither dead nor cancelled |
//! | 4 | lost: the lease or claim token is stale (nothing was changed), or `arbiter lock` lost its lease and stopped the command |
//! | 5 | not found |
//! | 6 | store unavailable: it could not be opened or reached |
//! | 7 | failed: what was run or checked did not succeed — `channels test` (the channel did not take the message), `watch --once`/`--rounds N` (a loop's last round failed), `doctor` (a check failed) |
//! | 8 | refused by the server (`--server`): the token is missing, unknown, expired or revoked, or does not reach this namespace or scope |
//!
//! `arbiter queue work` exits 0 (with `--drain`, once nothing is left), 130 after SIGINT
//! or SIGTERM (the items given back), or with the code of a failure of its own.
//!
//! `arbiter lock` exits with its command's code when the command ends by itself (128 +
//! signal number when a signal ended it), so those codes can overlap with the ones above;
//! the lock's own failures are also reported on stderr (or as JSON with `--json`). A lock
//! stopped by SIGINT or SIGTERM whose command still exited 0 exits 130 (128 + SIGINT, as a
//! shell reports an interrupted command): see [`interrupted`].

use arbiter_core::ErrorKind;

pub const SUCCESS: i32 = 0;
pub const BAD_INPUT: i32 = 2;
pub const FAILED: i32 = 7;
pub const REFUSED: i32 = 8;

/// The exit code of `arbiter lock` stopped by a signal, given its command's code: the
/// command's, unless that says success — an interrupted run did not succeed.
pub fn interrupted(command_code: i32) -> i32 {
    if command_code == SUCCESS { 130 } else { command_code }
}

pub fn code(kind: ErrorKind) -> i32 {
    match kind {
        ErrorKind::BadInput => BAD_INPUT,
        ErrorKind::Held | ErrorKind::Conflict | ErrorKind::Limited => 3,
        ErrorKind::Lost => 4,
        ErrorKind::NotFound => 5,
        ErrorKind::Unavailable => 6,
        ErrorKind::Failed => FAILED,
        ErrorKind::Unauthorized | ErrorKind::Forbidden => REFUSED,
        _ => 1,
    }
}
