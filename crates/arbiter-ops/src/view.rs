//! Views shared by several operations, and how a time of the store's clock is shown.

use std::time::{Duration, UNIX_EPOCH};

use arbiter_core::Millis;
use arbiter_core::lease::{Holder, Lease};
use serde::Serialize;

/// A time of the store's clock, as RFC 3339 with milliseconds (UTC).
pub fn timestamp(ms: Millis) -> String {
    let time = UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_millis(time).to_string()
}

/// A lease. Field names are stable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
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
