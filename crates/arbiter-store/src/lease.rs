//! What both backends share for leases beyond SQL text: the raw columns of holder and
//! waiter rows and their decoding. The rules are `arbiter_core::lease`'s plans.

use arbiter_core::Result;
use arbiter_core::lease::{Lease, Waiter};
use arbiter_core::name::Namespace;

use crate::sql::{decode_holder, stored};

/// The columns of a holder row, as both backends read them (`h.token, h.holder, n.slots,
/// h.ttl_ms, h.acquired_at, h.expires_at, h.name` of `lease_holders h JOIN lease_names n`).
pub(crate) struct LeaseRow {
    pub token: i64,
    pub holder: String,
    pub slots: i64,
    pub ttl_ms: i64,
    pub acquired_at: i64,
    pub expires_at: i64,
    pub name: String,
}

impl LeaseRow {
    pub fn decode(self, namespace: &Namespace) -> Result<Lease> {
        Ok(Lease {
            namespace: namespace.clone(),
            name: stored(self.name)?,
            token: self.token,
            holder: decode_holder(&self.holder)?,
            slots: slots_from(self.slots),
            ttl_ms: self.ttl_ms,
            acquired_at: self.acquired_at,
            expires_at: self.expires_at,
        })
    }
}

/// The columns of a waiter row (`ticket, holder, enqueued_at, expires_at`).
pub(crate) struct WaiterRow {
    pub ticket: i64,
    pub holder: String,
    pub enqueued_at: i64,
    pub expires_at: i64,
}

impl WaiterRow {
    pub fn decode(self) -> Result<Waiter> {
        Ok(Waiter {
            ticket: self.ticket,
            holder: decode_holder(&self.holder)?,
            enqueued_at: self.enqueued_at,
            expires_at: self.expires_at,
        })
    }
}

/// A stored slot count (an integer column) as the `u32` it was written from.
pub(crate) fn slots_from(value: i64) -> u32 {
    u32::try_from(value).unwrap_or(u32::MAX)
}
