//! The failure classes of arbiter's operations.
//!
//! Every layer reports failures as an [`Error`] with one of these kinds and a message for a
//! person. The kinds are the contract: the binary maps each to an exit code and a stable
//! JSON `error` code, the server (later) to an HTTP status — each in exactly one place.
//! Dependency errors (SQLite, PostgreSQL, IO) are turned into an `Error` at the boundary of
//! the crate that met them, with the context a person needs, and go no further.

use std::fmt;

/// What kind of failure happened. New kinds may be added.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The input was malformed (flag, name, duration, URL, config): fix it and retry.
    BadInput,
    /// The lease is held by someone else (or the wait ran out).
    Held,
    /// A compare-and-swap or similar precondition did not hold.
    Conflict,
    /// The caller's lease token is no longer valid: the lease was lost.
    Lost,
    /// The object does not exist.
    NotFound,
    /// The store could not be reached or opened.
    Unavailable,
    /// What arbiter ran or checked did not succeed (the store was fine): a channel that
    /// did not take a test message, a loop whose last round failed under `watch --once`
    /// or `--rounds`, a failed `doctor` check.
    Failed,
    /// A rate limit did not allow the request within the wait the caller gave: retry later
    /// (the detail says how long the wait needed was).
    Limited,
    /// The caller did not prove who it is: no bearer token, or one that is unknown,
    /// expired or revoked (a server's answer; the CLI against a store never says it).
    Unauthorized,
    /// The caller is known but its token does not reach this namespace or scope.
    Forbidden,
    /// Anything else: a bug, a corrupted store, an OS failure.
    Internal,
}

impl ErrorKind {
    /// The stable machine-readable code of this kind, used in JSON output.
    pub fn code(self) -> &'static str {
        match self {
            ErrorKind::BadInput => "bad_input",
            ErrorKind::Held => "held",
            ErrorKind::Conflict => "conflict",
            ErrorKind::Lost => "lost",
            ErrorKind::NotFound => "not_found",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Failed => "failed",
            ErrorKind::Limited => "limited",
            ErrorKind::Unauthorized => "unauthorized",
            ErrorKind::Forbidden => "forbidden",
            ErrorKind::Internal => "internal",
        }
    }

    /// The kind whose [`code`](ErrorKind::code) is `code`: how a client of the server
    /// (`--server`) turns an error body back into the kind the server had.
    pub fn from_code(code: &str) -> Option<ErrorKind> {
        Some(match code {
            "bad_input" => ErrorKind::BadInput,
            "held" => ErrorKind::Held,
            "conflict" => ErrorKind::Conflict,
            "lost" => ErrorKind::Lost,
            "not_found" => ErrorKind::NotFound,
            "unavailable" => ErrorKind::Unavailable,
            "failed" => ErrorKind::Failed,
            "limited" => ErrorKind::Limited,
            "unauthorized" => ErrorKind::Unauthorized,
            "forbidden" => ErrorKind::Forbidden,
            "internal" => ErrorKind::Internal,
            _ => return None,
        })
    }
}

/// A failure: its kind and a message that says what happened and, for bad input, what was
/// expected; for some kinds, the state behind it as data ([`Detail`]), so a front end can
/// show it without parsing the message (an HTTP 409 body, an MCP error).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub kind: ErrorKind,
    pub message: String,
    pub detail: Option<Box<Detail>>,
}

/// The state behind an error, where there is one worth returning as data.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Detail {
    /// A lease is held: by whom, and how many requests wait ahead of the caller.
    Held {
        holders: Vec<crate::lease::Lease>,
        waiters_ahead: usize,
    },
    /// A versioned write's precondition failed: the version the object has now (0: absent).
    Conflict { current_version: i64 },
    /// A rate limit refused: the wait (milliseconds) the request would have needed.
    Limited { wait_ms: u64 },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            detail: None,
        }
    }
    /// Attaches the state behind the error.
    pub fn with_detail(mut self, detail: Detail) -> Self {
        self.detail = Some(Box::new(detail));
        self
    }
    pub fn bad_input(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::BadInput, message)
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unavailable, message)
    }
    /// Prefixes the message with context, keeping the kind.
    pub fn context(mut self, context: impl fmt::Display) -> Self {
        self.message = format!("{context}: {}", self.message);
        self
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every kind's code reads back as that kind: a server's error body keeps its kind.
    #[test]
    fn every_code_reads_back() {
        let kinds = [
            ErrorKind::BadInput,
            ErrorKind::Held,
            ErrorKind::Conflict,
            ErrorKind::Lost,
            ErrorKind::NotFound,
            ErrorKind::Unavailable,
            ErrorKind::Failed,
            ErrorKind::Limited,
            ErrorKind::Unauthorized,
            ErrorKind::Forbidden,
            ErrorKind::Internal,
        ];
        for kind in kinds {
            assert_eq!(ErrorKind::from_code(kind.code()), Some(kind));
        }
        assert_eq!(ErrorKind::from_code("teapot"), None);
    }
}
