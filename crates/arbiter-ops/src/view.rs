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

    /// A stored time past year 9999 (a bogus upstream reset) made every view of it panic.
    #[test]
    fn any_time_can_be_shown() {
        assert_eq!(timestamp(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(timestamp(-5), "1970-01-01T00:00:00.000Z");
        assert_eq!(timestamp(Millis::MAX), "9999-12-31T23:59:59.999Z");
        assert_eq!(timestamp(LAST_SHOWN_MS + 1), "9999-12-31T23:59:59.999Z");
    }
}
