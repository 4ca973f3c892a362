//! The semantics and types of arbiter's primitives.
//!
//! Layout:
//! - [`name`]: what a namespace, lease name or key may look like.
//! - [`duration`]: `30s`, `5m`, `1h30m` — the one duration syntax of the CLI and config.
//! - [`lease`]: holders, leases, the requests that change them and the plans the store
//!   applies for them.
//! - [`kv`]: versioned keys, their change events and the compare-and-swap rule.
//! - [`limit`]: rate-limit buckets (token buckets with a priority reserve and fair share),
//!   the take/observe/refund plans the store applies.
//! - [`log`]: append-only streams, records valid by construction, consumers.
//! - [`loops`]: the supervisor's round and loop states as types.
//! - [`decisions`]: decisions as Markdown: the render projection and the inbox merge.
//! - [`notify`]: notifications, severities, kind globs, storm thresholds, messages.
//! - [`queue`]: work items: pushes, claims with fencing tokens, attempts, dead letters.
//! - [`github`]: GitHub budgets: bucket names, pauses, deferrals of rounds, forecasts.
//! - [`token`]: what an API token of the server reaches: scopes, namespaces, `Principal`.
//! - [`redact`]: the one way a URL or a command's output is shown with its secrets hidden.
//! - [`error`]: the failure classes every layer reports (mapped to exit codes by the binary,
//!   to HTTP statuses by the server, each in one place).
//!
//! **Architecture invariant:** this crate does no IO and never reads the clock. Times are
//! passed in as milliseconds since the Unix epoch *of the store's clock*; a caller's clock is
//! never used to decide expiry.

pub mod decisions;
pub mod duration;
pub mod error;
pub mod github;
pub mod kv;
pub mod lease;
pub mod limit;
pub mod log;
pub mod loops;
pub mod name;
pub mod notify;
pub mod queue;
pub mod redact;
pub mod token;

pub use error::{Detail, Error, ErrorKind, Result};

/// Milliseconds since the Unix epoch, as read from the store's clock.
pub type Millis = i64;

/// An input that does not have the expected form. The message says what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ParseError {
    pub message: String,
}

impl ParseError {
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }
}

impl From<ParseError> for Error {
    fn from(err: ParseError) -> Self {
        Error::new(ErrorKind::BadInput, err.message)
    }
}
