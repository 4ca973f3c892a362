//! Leases: locks and semaphores with TTLs and fencing tokens.
//!
//! A lease name has `slots` places (1 for a lock). Each grant takes one place and gets a
//! **fencing token**: a number that strictly increases for that name, forever. Only the
//! current token renews or releases; a stale one is [`ErrorKind::Lost`](crate::ErrorKind).
//! Expiry is decided by the store's clock.
//!
//! Waiters queue in arrival order: a request is granted only when a place is free *and*
//! every waiter that arrived earlier has been served (or has gone away). The store keeps the
//! queue; the caller keeps its place alive by coming back before its waiter entry expires.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::Millis;

/// Who holds (or waits for) a lease: enough to tell, on the same host, whether it is alive.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    /// Host name of the holder's machine.
    pub host: String,
    /// Identifies one boot of that machine (so a pid from before a reboot is not confused
    /// with one after it). Empty when the platform gives none.
    pub boot_id: String,
    /// The process that holds the lease.
    pub pid: u32,
    /// That process's start time, in a platform unit; compared only for equality, so a
    /// reused pid is not mistaken for the holder.
    pub start_time: u64,
    /// A free-form agent name (`--holder`).
    pub agent: String,
    /// The process group of the command run under the lease (`arbiter lock`), or of the
    /// script that took it (`lease acquire`), if any: the holder counts as dead only when
    /// this group is empty too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pgid: Option<u32>,
}

/// One granted place of a lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub namespace: String,
    pub name: String,
    pub token: i64,
    pub holder: Holder,
    /// Number of places of this lease name (1: a lock).
    pub slots: u32,
    pub ttl_ms: i64,
    pub acquired_at: Millis,
    pub expires_at: Millis,
}

/// A queued request for a lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Waiter {
    pub ticket: i64,
    pub holder: Holder,
    pub enqueued_at: Millis,
    pub expires_at: Millis,
}

/// How long a waiter's place in the queue lasts without the waiter coming back.
pub const WAITER_TTL: Duration = Duration::from_secs(10);

/// The largest number of slots a semaphore may have.
pub const MAX_SLOTS: u32 = 10_000;

/// A request for one place of a lease.
#[derive(Debug, Clone)]
pub struct AcquireRequest {
    pub namespace: String,
    pub name: String,
    pub holder: Holder,
    pub ttl: Duration,
    pub slots: u32,
    /// Join the queue when the lease is busy (a waiting request), instead of failing.
    pub enqueue: bool,
    /// The caller's place in the queue, from an earlier [`AcquireOutcome::Busy`].
    pub ticket: Option<i64>,
    /// Tokens of holders the caller found dead on its own host: removed before deciding.
    pub reclaim_tokens: Vec<i64>,
    /// Tickets of waiters the caller found dead on its own host: removed before deciding.
    pub reclaim_tickets: Vec<i64>,
}

/// What an acquire attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AcquireOutcome {
    Acquired(Lease),
    Busy(Busy),
}

/// The state that kept a request from being granted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Busy {
    /// The current holders.
    pub holders: Vec<Lease>,
    /// Waiters ahead of this request (all waiters when it did not queue).
    pub ahead: Vec<Waiter>,
    /// This request's place in the queue, when it queued.
    pub ticket: Option<i64>,
    /// The store's clock when it decided.
    pub now: Millis,
}

impl Busy {
    /// The earliest moment (store clock) at which a holder's TTL runs out.
    pub fn next_expiry(&self) -> Option<Millis> {
        self.holders.iter().map(|l| l.expires_at).min()
    }
}

/// A request to extend a held lease, and optionally record its command's process group.
#[derive(Debug, Clone)]
pub struct RenewRequest {
    pub namespace: String,
    pub name: String,
    pub token: i64,
    /// New TTL from now; `None` keeps the lease's own TTL.
    pub ttl: Option<Duration>,
    pub pgid: Option<u32>,
}

/// Everything known about one lease name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseInfo {
    pub namespace: String,
    pub name: String,
    pub slots: u32,
    /// The last fencing token granted for this name (the next grant gets a larger one).
    pub last_token: i64,
    pub holders: Vec<Lease>,
    pub waiters: Vec<Waiter>,
}

/// What the store should do with an acquire request, given the live state of its name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Grant a place now.
    Grant,
    /// No place for this request yet; these waiters are ahead of it.
    Wait { ahead: Vec<Waiter> },
}

/// Decides an acquire request. `holders` and `waiters` are the live ones (expired and
/// reclaimed entries already removed), `waiters` in ticket order; `slots` is the name's
/// current slot count when it has holders.
///
/// The rule: a request is granted when the free places outnumber the waiters ahead of it
/// (first come, first served). A request whose slot count disagrees with a held lease is
/// bad input: the holders agreed on another size.
pub fn decide(request: &AcquireRequest, slots: u32, holders: &[Lease], waiters: &[Waiter]) -> crate::Result<Decision> {
    if !holders.is_empty() && slots != request.slots {
        return Err(crate::Error::bad_input(format!(
            "lease {:?} is held with {slots} slot(s); this request asks for {} (--slots must match while it is held)",
            request.name, request.slots
        )));
    }
    let ahead: Vec<Waiter> = waiters
        .iter()
        .filter(|w| request.ticket.is_none_or(|mine| w.ticket < mine))
        .cloned()
        .collect();
    let free = (request.slots as usize).saturating_sub(holders.len());
    if ahead.len() < free {
        Ok(Decision::Grant)
    } else {
        Ok(Decision::Wait { ahead })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn holder() -> Holder {
        Holder {
            host: "h".into(),
            boot_id: "b".into(),
            pid: 1,
            start_time: 1,
            agent: String::new(),
            pgid: None,
        }
    }
    fn lease(token: i64) -> Lease {
        Lease {
            namespace: "default".into(),
            name: "x".into(),
            token,
            holder: holder(),
            slots: 2,
            ttl_ms: 1000,
            acquired_at: 0,
            expires_at: 1000,
        }
    }
    fn waiter(ticket: i64) -> Waiter {
        Waiter {
            ticket,
            holder: holder(),
            enqueued_at: 0,
            expires_at: 1,
        }
    }
    fn request(slots: u32, ticket: Option<i64>) -> AcquireRequest {
        AcquireRequest {
            namespace: "default".into(),
            name: "x".into(),
            holder: holder(),
            ttl: Duration::from_secs(1),
            slots,
            enqueue: true,
            ticket,
            reclaim_tokens: vec![],
            reclaim_tickets: vec![],
        }
    }

    #[test]
    fn first_come_first_served() {
        // Free lock, nobody waiting: granted.
        assert_eq!(decide(&request(1, None), 1, &[], &[]), Ok(Decision::Grant));
        // Held lock: wait behind nobody.
        assert_eq!(
            decide(&request(1, None), 1, &[lease(1)], &[]),
            Ok(Decision::Wait { ahead: vec![] })
        );
        // Free lock but an earlier waiter: a newcomer waits behind it.
        assert_eq!(
            decide(&request(1, None), 1, &[], &[waiter(5)]),
            Ok(Decision::Wait { ahead: vec![waiter(5)] })
        );
        // The earlier waiter itself is granted.
        assert_eq!(
            decide(&request(1, Some(5)), 1, &[], &[waiter(5), waiter(6)]),
            Ok(Decision::Grant)
        );
        // Semaphore with 2 slots, one held, one waiter ahead: the second in line waits.
        assert_eq!(
            decide(&request(2, Some(7)), 2, &[lease(1)], &[waiter(6), waiter(7)]),
            Ok(Decision::Wait { ahead: vec![waiter(6)] })
        );
        // Two free places, one waiter ahead: granted.
        assert_eq!(
            decide(&request(2, Some(7)), 2, &[], &[waiter(6), waiter(7)]),
            Ok(Decision::Grant)
        );
    }

    #[test]
    fn slots_must_match_while_held() {
        let err = decide(&request(3, None), 1, &[lease(1)], &[]).unwrap_err();
        assert_eq!(err.kind, crate::ErrorKind::BadInput);
        assert!(
            err.message.contains("held with 1 slot(s); this request asks for 3"),
            "{}",
            err.message
        );
        // A free name takes the request's slot count.
        assert_eq!(decide(&request(3, None), 1, &[], &[]), Ok(Decision::Grant));
    }
}
