//! Views shared by several operations, and how a time of the store's clock is shown.

use std::time::{Duration, UNIX_EPOCH};

use arbiter_core::Millis;
use arbiter_core::lease::{Holder, Lease};
use serde::{Deserialize, Serialize};

/// The last instant RFC 3339 can show (9999-12-31T23:59:59.999Z).
const LAST_SHOWN_MS: Millis = 253_402_300_799_999;

/// A time of the store's clock, as RFC 3339 with milliseconds (UTC). Times before 1970 show
/// as 1970, times after year 9999 as its last instant (the formatter fails beyond it).
pub fn timestamp(ms: Millis) -> String {
    let time = UNIX_EPOCH + Duration::from_millis(ms.clamp(0, LAST_SHOWN_MS) as u64);
    humantime::format_rfc3339_millis(time).to_string()
}

/// The reverse of [`timestamp`]: an RFC 3339 time (`2026-12-01T14:00:00Z`, with or
/// without fractions of a second; UTC) as milliseconds since the epoch. `what` names the
/// input in the error.
pub fn parse_timestamp(what: &str, text: &str) -> Result<Millis, arbiter_core::ParseError> {
    humantime::parse_rfc3339(text)
        .ok()
        .and_then(|time| time.duration_since(UNIX_EPOCH).ok())
        .and_then(|since| Millis::try_from(since.as_millis()).ok())
        .ok_or_else(|| {
            arbiter_core::ParseError::new(format!(
                "invalid {what} {text:?}: expected an RFC 3339 time in UTC, e.g. 2026-12-01T14:00:00Z"
            ))
        })
}

/// A lease. Field names are stable.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseView {
    pub namespace: String,
    pub name: String,
    pub token: i64,
    pub holder: Holder,
    pub slots: u32,
    pub ttl_ms: i64,
    pub acquired_at: String,
    pub expires_at: String,
}

impl From<&Lease> for LeaseView {
    fn from(lease: &Lease) -> Self {
        LeaseView {
            namespace: lease.namespace.to_string(),
            name: lease.name.to_string(),
            token: lease.token,
            holder: lease.holder.clone(),
            slots: lease.slots,
            ttl_ms: lease.ttl_ms,
            acquired_at: timestamp(lease.acquired_at),
            expires_at: timestamp(lease.expires_at),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_read_back_as_shown() {
        for ms in [0, 1_764_600_000_123, LAST_SHOWN_MS] {
            assert_eq!(parse_timestamp("time", &timestamp(ms)).unwrap(), ms);
        }
        assert_eq!(parse_timestamp("t", "2026-12-01T14:00:00Z").unwrap(), 1_796_133_600_000);
        for bad in ["", "tomorrow", "2026-12-01", "2026-12-01T14:00:00+01:00"] {
            let err = parse_timestamp("not-before", bad).unwrap_err();
            assert!(err.message.contains("not-before"), "{bad:?}: {}", err.message);
        }
    }

    /// A stored time past year 9999 (a bogus upstream reset) made every view of it panic.
    #[test]
    fn any_time_can_be_shown() {
        assert_eq!(timestamp(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(timestamp(-5), "1970-01-01T00:00:00.000Z");
        assert_eq!(timestamp(Millis::MAX), "9999-12-31T23:59:59.999Z");
        assert_eq!(timestamp(LAST_SHOWN_MS + 1), "9999-12-31T23:59:59.999Z");
    }
}
