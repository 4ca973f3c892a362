//! Notifications: what one is, how severities order, how kinds match, and when a storm of
//! repeats is worth another message.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{Error, Millis, Result};

/// How bad it is. Ordered: `Info < Warning < Critical`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
    pub fn parse(text: &str) -> std::result::Result<Severity, String> {
        match text {
            "info" => Ok(Severity::Info),
            "warning" => Ok(Severity::Warning),
            "critical" => Ok(Severity::Critical),
            other => Err(format!(
                "invalid severity {other:?}: expected info, warning or critical"
            )),
        }
    }
}

/// A notification as a caller submits it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notification {
    /// What happened, dotted: `loop.failure`, `news`, `security.finding`.
    pub kind: String,
    pub severity: Severity,
    /// Who sent it (a loop, a host, a tool).
    pub source: String,
    pub title: String,
    #[serde(default)]
    pub body: String,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// Repeats with one dedupe key fold into one alert.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dedupe_key: Option<String>,
}

pub const MAX_TITLE_LEN: usize = 300;
pub const MAX_BODY_LEN: usize = 64 * 1024;

impl Notification {
    /// Checks the fields: what is wrong and what is allowed.
    pub fn validate(&self) -> Result<()> {
        validate_kind(&self.kind)?;
        if self.title.trim().is_empty() {
            return Err(Error::bad_input("--title is empty: a notification needs a title"));
        }
        if self.title.len() > MAX_TITLE_LEN || self.title.contains('\n') {
            return Err(Error::bad_input(format!(
                "--title must be one line of at most {MAX_TITLE_LEN} bytes"
            )));
        }
        if self.body.len() > MAX_BODY_LEN {
            return Err(Error::bad_input(format!(
                "the body is {} bytes; at most {MAX_BODY_LEN} are allowed",
                self.body.len()
            )));
        }
        if let Some(key) = &self.dedupe_key {
            crate::name::validate_name("dedupe key", key)?;
        }
        if self.source.len() > 200 || self.source.chars().any(char::is_control) {
            return Err(Error::bad_input(
                "--source must be at most 200 characters, no control characters",
            ));
        }
        Ok(())
    }
}

/// Checks a kind: dot-separated segments of `a-z 0-9 _ -`, 1-100 characters.
pub fn validate_kind(kind: &str) -> Result<()> {
    let ok = !kind.is_empty()
        && kind.len() <= 100
        && kind.split('.').all(|segment| {
            !segment.is_empty()
                && segment
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
        });
    if ok {
        Ok(())
    } else {
        Err(Error::bad_input(format!(
            "invalid kind {kind:?}: expected dot-separated words of a-z, 0-9, _ and - (like loop.failure)"
        )))
    }
}

/// Whether `text` matches a glob where `*` matches any run of characters (dots too) and
/// every other character matches itself: `loop.*`, `*.failure`, `*`.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ti < t.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|b| *b == b'*')
}

/// The default escalation thresholds: the 1st, 3rd, 10th, 30th, 100th … occurrence.
pub const DEFAULT_THRESHOLDS: [u64; 5] = [1, 3, 10, 30, 100];

/// Whether the `count`th occurrence of a folded condition is sent: when it is one of
/// `thresholds`, or past the last of them, when it is 10^k or 3·10^k (…, 300, 1000,
/// 3000, …), so a storm that never ends still surfaces, ever more rarely.
pub fn crosses_threshold(count: u64, thresholds: &[u64]) -> bool {
    if thresholds.contains(&count) {
        return true;
    }
    let last = thresholds.last().copied().unwrap_or(0);
    if count <= last || count == 0 {
        return false;
    }
    let mut rest = count;
    while rest.is_multiple_of(10) {
        rest /= 10;
    }
    rest == 1 || rest == 3
}

/// What a folded condition looks like when a message about it is sent.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fold {
    pub dedupe_key: String,
    /// Occurrences so far.
    pub count: u64,
    /// When the first occurrence was accepted (store clock).
    pub first_at: Millis,
}

/// The kind of message a delivery carries.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MessageType {
    /// A notification (possibly a folded repeat).
    Alert,
    /// The condition behind a dedupe key cleared.
    Recovery,
    /// Several notifications in one message.
    Digest,
    /// `arbiter channels test`.
    Test,
}

/// What a channel is sent: everything a formatter needs.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// Stable across retries: receivers dedupe at-least-once delivery with it.
    pub id: String,
    #[serde(rename = "type")]
    pub message_type: MessageType,
    pub notification: Notification,
    /// For folded alerts and recoveries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fold: Option<Fold>,
    /// For recoveries: when the condition cleared (store clock).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_at: Option<Millis>,
    /// For digests: the notifications batched.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub items: Vec<Notification>,
    pub created_at: Millis,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds() {
        let sent: Vec<u64> = (1..=3000)
            .filter(|c| crosses_threshold(*c, &DEFAULT_THRESHOLDS))
            .collect();
        assert_eq!(sent, [1, 3, 10, 30, 100, 300, 1000, 3000]);
        let sent: Vec<u64> = (1..=37)
            .filter(|c| crosses_threshold(*c, &DEFAULT_THRESHOLDS))
            .collect();
        assert_eq!(sent, [1, 3, 10, 30]);
        assert!(crosses_threshold(2, &[1, 2]));
        assert!(
            crosses_threshold(3, &[1, 2]) && crosses_threshold(10, &[1, 2]),
            "then 1-3-10"
        );
        assert!(!crosses_threshold(5, &[1, 2]));
        assert!(!crosses_threshold(0, &DEFAULT_THRESHOLDS));
    }

    #[test]
    fn globs() {
        assert!(glob_match("loop.*", "loop.failure"));
        assert!(glob_match("*", "anything.at.all"));
        assert!(glob_match("*.failure", "loop.failure"));
        assert!(glob_match("security.finding", "security.finding"));
        assert!(!glob_match("loop.*", "looping"));
        assert!(!glob_match("loop", "loop.failure"));
        assert!(glob_match("a*b*c", "a-x-b-y-c"));
    }

    #[test]
    fn severities_order() {
        assert!(Severity::Info < Severity::Warning && Severity::Warning < Severity::Critical);
        assert_eq!(Severity::parse("warning"), Ok(Severity::Warning));
        assert!(
            Severity::parse("fatal")
                .unwrap_err()
                .contains("expected info, warning or critical")
        );
    }

    #[test]
    fn kinds() {
        assert!(validate_kind("loop.failure").is_ok());
        assert!(validate_kind("news").is_ok());
        for bad in ["", "Loop", "loop..x", ".x", "a b"] {
            assert!(validate_kind(bad).is_err(), "{bad}");
        }
    }
}
