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
//!
//! Core decides, the store applies: [`plan_acquire`] and [`plan_renew`] are pure functions
//! of the request, the store's clock and the name's live state, and say exactly what the
//! store writes and returns; each backend only loads that state and applies the plan.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::name::{LeaseName, Namespace};
use crate::{Millis, ParseError};

/// Who holds (or waits for) a lease: enough to tell, on the same host, whether it is alive.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub namespace: Namespace,
    pub name: LeaseName,
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

/// The longest agent name a holder may carry.
pub const MAX_AGENT_LEN: usize = 200;

/// A fencing token as a caller gives it back: a positive integer.
pub fn check_token(token: i64) -> Result<i64, ParseError> {
    if token > 0 {
        Ok(token)
    } else {
        Err(ParseError::new(format!(
            "invalid token {:?}: expected the positive integer `lease acquire` printed",
            token.to_string()
        )))
    }
}

/// A holder's agent name: at most [`MAX_AGENT_LEN`] characters, no control characters
/// (it is shown in `lease show` and the dashboard).
pub fn check_agent(agent: &str) -> Result<(), ParseError> {
    if agent.len() > MAX_AGENT_LEN || agent.chars().any(char::is_control) {
        return Err(ParseError::new(format!(
            "invalid holder {agent:?}: expected at most {MAX_AGENT_LEN} characters, no control characters"
        )));
    }
    Ok(())
}

/// A lease's number of places: 1 (a lock) to [`MAX_SLOTS`].
pub fn check_slots(slots: u32) -> Result<u32, ParseError> {
    if (1..=MAX_SLOTS).contains(&slots) {
        Ok(slots)
    } else {
        Err(ParseError::new(format!(
            "invalid slots {slots}: expected 1 to {MAX_SLOTS}"
        )))
    }
}

/// A request for one place of a lease: what the caller asks for, once. Front ends build
/// it; the client's acquire loop ([`Attempt`]) sends it to the store as often as it must.
#[derive(Debug, Clone)]
pub struct AcquireRequest {
    pub namespace: Namespace,
    pub name: LeaseName,
    pub holder: Holder,
    pub ttl: Duration,
    pub slots: u32,
    /// `None`: fail at once when busy (a try). `Some(d)`: join the queue and wait up to
    /// `d` — the store only looks at whether it is set; the client keeps the clock.
    pub wait: Option<Duration>,
}

impl AcquireRequest {
    /// Whether the request joins the queue when the lease is busy.
    pub fn waits(&self) -> bool {
        self.wait.is_some()
    }
}

/// One try of an [`AcquireRequest`], as the store's `acquire` takes it: the request plus
/// what the caller learnt from earlier tries of it. The first try is
/// `Attempt::from(request)` (no ticket, nothing to reclaim); the client updates the other
/// fields from each [`AcquireOutcome::Busy`] answer.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub request: AcquireRequest,
    /// The caller's place in the queue, from an earlier [`AcquireOutcome::Busy`]; a ticket
    /// whose entry is gone counts for nothing (the request queues again at the back).
    pub ticket: Option<i64>,
    /// Tokens of holders the caller found dead on its own host: removed before deciding.
    pub reclaim_tokens: Vec<i64>,
    /// Tickets of waiters the caller found dead on its own host: removed before deciding.
    pub reclaim_tickets: Vec<i64>,
}

impl From<AcquireRequest> for Attempt {
    fn from(request: AcquireRequest) -> Self {
        Attempt {
            request,
            ticket: None,
            reclaim_tokens: Vec::new(),
            reclaim_tickets: Vec::new(),
        }
    }
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
    pub namespace: Namespace,
    pub name: LeaseName,
    pub token: i64,
    /// New TTL from now; `None` keeps the lease's own TTL.
    pub ttl: Option<Duration>,
    pub pgid: Option<u32>,
}

/// Everything known about one lease name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseInfo {
    pub namespace: Namespace,
    pub name: LeaseName,
    pub slots: u32,
    /// The last fencing token granted for this name (the next grant gets a larger one).
    pub last_token: i64,
    pub holders: Vec<Lease>,
    pub waiters: Vec<Waiter>,
}

/// The state of one lease name inside an acquire's transaction, as the store loaded it
/// after dropping the name's expired holders and waiters and those the request reclaims.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameState {
    /// The store's clock, read inside the transaction (after the name's lock).
    pub now: Millis,
    /// The name's slot count (that of its holders while it has any).
    pub slots: u32,
    /// The last fencing token granted for the name (0 for a new name).
    pub last_token: i64,
    /// The live holders, by token.
    pub holders: Vec<Lease>,
    /// The live waiters, by ticket (arrival order).
    pub waiters: Vec<Waiter>,
    /// Whether dropping expired or reclaimed entries removed anything.
    pub removed: bool,
}

/// What an acquire's transaction writes and returns: decided by [`plan_acquire`], applied
/// by the store as it says, nothing more.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcquirePlan {
    pub step: AcquireStep,
    /// Whether the transaction changed anything: commit it; otherwise roll it back, so a
    /// waiting request that changes nothing does not wake the other waiters.
    pub commit: bool,
    /// Whether the other waiters are to be woken (a NOTIFY): a holder or waiter left, or
    /// the queue moved up. A new holder or a new waiter frees nothing for anyone.
    pub notify: bool,
}

/// The one write an acquire decides on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AcquireStep {
    /// Grant a place: set the name's `last_token` to `lease.token` (`last_token + 1`) and its
    /// slot count to `lease.slots`, insert `lease` as a holder, delete the waiter entry
    /// `drop_ticket` (the request's own, when it had queued); return the lease.
    Grant { lease: Lease, drop_ticket: Option<i64> },
    /// No place yet: apply `queue`, return `busy` (with the ticket of a new entry).
    Wait { queue: QueueWrite, busy: Busy },
}

/// What a waiting request writes to the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueWrite {
    /// Nothing: the request does not queue, or its entry lives long enough as it is.
    Nothing,
    /// A new entry for the request's holder, enqueued at `enqueued_at`, expiring at
    /// `expires_at`; the store gives it the next ticket.
    Enqueue { enqueued_at: Millis, expires_at: Millis },
    /// The request's entry `ticket` lives on until `expires_at`.
    Refresh { ticket: i64, expires_at: Millis },
}

impl AcquirePlan {
    /// What the acquire returns. `enqueued` is the ticket the store gave a new queue entry
    /// ([`QueueWrite::Enqueue`]); it is ignored otherwise.
    pub fn outcome(self, enqueued: Option<i64>) -> AcquireOutcome {
        match self.step {
            AcquireStep::Grant { lease, .. } => AcquireOutcome::Acquired(lease),
            AcquireStep::Wait { queue, mut busy } => {
                if let QueueWrite::Enqueue { .. } = queue {
                    busy.ticket = enqueued;
                }
                AcquireOutcome::Busy(busy)
            }
        }
    }
}

/// Plans an acquire attempt: a pure function of the attempt and the name's live state
/// (read after the attempt's reclaims were applied).
///
/// The rule: a request is granted when the free places outnumber the waiters ahead of it
/// (first come, first served). A ticket whose entry is gone (it expired or was reclaimed)
/// has lost its place: the request queues again at the back. A request whose slot count
/// disagrees with a held lease is bad input: the holders agreed on another size.
pub fn plan_acquire(attempt: &Attempt, state: NameState) -> crate::Result<AcquirePlan> {
    let request = &attempt.request;
    let NameState {
        now,
        slots,
        last_token,
        holders,
        waiters,
        removed,
    } = state;
    if !holders.is_empty() && slots != request.slots {
        return Err(crate::Error::bad_input(format!(
            "lease {:?} is held with {slots} slot(s); this request asks for {} (--slots must match while it is held)",
            request.name, request.slots
        )));
    }
    let mine = attempt
        .ticket
        .and_then(|ticket| waiters.iter().find(|w| w.ticket == ticket))
        .cloned();
    let ahead: Vec<Waiter> = waiters
        .into_iter()
        .filter(|w| mine.as_ref().is_none_or(|mine| w.ticket < mine.ticket))
        .collect();
    let free = (request.slots as usize).saturating_sub(holders.len());
    if ahead.len() < free {
        let ttl_ms = i64::try_from(request.ttl.as_millis()).unwrap_or(i64::MAX);
        let lease = Lease {
            namespace: request.namespace.clone(),
            name: request.name.clone(),
            token: last_token + 1,
            holder: request.holder.clone(),
            slots: request.slots,
            ttl_ms,
            acquired_at: now,
            expires_at: now.saturating_add(ttl_ms),
        };
        let drop_ticket = mine.map(|w| w.ticket);
        return Ok(AcquirePlan {
            notify: removed || drop_ticket.is_some(),
            commit: true,
            step: AcquireStep::Grant { lease, drop_ticket },
        });
    }
    let queue = match (request.waits(), &mine) {
        (false, _) => QueueWrite::Nothing,
        (true, Some(entry)) if waiter_needs_refresh(entry.expires_at, now) => QueueWrite::Refresh {
            ticket: entry.ticket,
            expires_at: waiter_expiry(now),
        },
        (true, Some(_)) => QueueWrite::Nothing,
        (true, None) => QueueWrite::Enqueue {
            enqueued_at: now,
            expires_at: waiter_expiry(now),
        },
    };
    Ok(AcquirePlan {
        commit: removed || queue != QueueWrite::Nothing,
        notify: removed,
        step: AcquireStep::Wait {
            queue,
            busy: Busy {
                holders,
                ahead,
                ticket: mine.filter(|_| request.waits()).map(|w| w.ticket),
                now,
            },
        },
    })
}

/// A waiter's queue entry is refreshed only when less than half of its TTL is left, so
/// waiters coming back do not write (and wake everyone) on every visit.
fn waiter_needs_refresh(expires_at: Millis, now: Millis) -> bool {
    expires_at - now < WAITER_TTL.as_millis() as Millis / 2
}

fn waiter_expiry(now: Millis) -> Millis {
    now + WAITER_TTL.as_millis() as Millis
}

/// Plans a renew: `current` is the holder row of the request's token, if the store has
/// one, and `now` the store's clock. Returns the lease as the store is to write it (expiry,
/// TTL, holder with the new process group) and return it; a token that no longer holds
/// the lease live is [`lost`].
pub fn plan_renew(request: &RenewRequest, now: Millis, current: Option<Lease>) -> crate::Result<Lease> {
    let Some(mut lease) = current.filter(|lease| lease.expires_at > now) else {
        return Err(lost(&request.name, request.token));
    };
    lease.ttl_ms = request
        .ttl
        .map(|ttl| i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(lease.ttl_ms);
    lease.expires_at = now.saturating_add(lease.ttl_ms);
    if let Some(pgid) = request.pgid {
        lease.holder.pgid = Some(pgid);
    }
    Ok(lease)
}

/// The failure of a renew or release whose token no longer holds the lease.
pub fn lost(name: &LeaseName, token: i64) -> crate::Error {
    crate::Error::new(
        crate::ErrorKind::Lost,
        format!("lease {name:?} is no longer held with token {token} (it expired, was released or was taken over)"),
    )
}

/// The failure of `show` on a name that was never acquired.
pub fn not_found(namespace: &Namespace, name: &LeaseName) -> crate::Error {
    crate::Error::new(
        crate::ErrorKind::NotFound,
        format!("no lease named {name:?} in namespace {namespace:?}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a caller gives back or names is checked by these, for every front end.
    #[test]
    fn tokens_agents_and_slots_are_checked() {
        assert_eq!(check_token(7).unwrap(), 7);
        assert_eq!(
            check_token(0).unwrap_err().message,
            "invalid token \"0\": expected the positive integer `lease acquire` printed"
        );
        assert!(check_token(-1).is_err());
        assert!(check_agent("").is_ok() && check_agent("builder-7").is_ok());
        assert!(check_agent("a\u{7}b").is_err());
        assert!(check_agent(&"a".repeat(MAX_AGENT_LEN + 1)).is_err());
        assert_eq!(check_slots(MAX_SLOTS).unwrap(), MAX_SLOTS);
        assert!(check_slots(0).is_err() && check_slots(MAX_SLOTS + 1).is_err());
    }

    const NOW: Millis = 1_000_000;

    fn holder(agent: &str) -> Holder {
        Holder {
            host: "h".into(),
            boot_id: "b".into(),
            pid: 1,
            start_time: 1,
            agent: agent.into(),
            pgid: None,
        }
    }
    fn lease(token: i64, slots: u32) -> Lease {
        Lease {
            namespace: Namespace::default(),
            name: LeaseName::parse("x").unwrap(),
            token,
            holder: holder("other"),
            slots,
            ttl_ms: 1000,
            acquired_at: NOW - 10,
            expires_at: NOW + 990,
        }
    }
    /// A waiter whose entry has `left` ms to live.
    fn waiter(ticket: i64, left: Millis) -> Waiter {
        Waiter {
            ticket,
            holder: holder("waiter"),
            enqueued_at: NOW - 100,
            expires_at: NOW + left,
        }
    }
    fn request(slots: u32, ticket: Option<i64>) -> Attempt {
        Attempt {
            ticket,
            ..Attempt::from(AcquireRequest {
                namespace: Namespace::default(),
                name: LeaseName::parse("x").unwrap(),
                holder: holder("me"),
                ttl: Duration::from_secs(2),
                slots,
                wait: Some(Duration::from_secs(60)),
            })
        }
    }
    fn state(slots: u32, last_token: i64, holders: Vec<Lease>, waiters: Vec<Waiter>) -> NameState {
        NameState {
            now: NOW,
            slots,
            last_token,
            holders,
            waiters,
            removed: false,
        }
    }
    fn plan(request: &Attempt, state: NameState) -> AcquirePlan {
        plan_acquire(request, state).unwrap()
    }
    fn granted(plan: &AcquirePlan) -> (&Lease, Option<i64>) {
        match &plan.step {
            AcquireStep::Grant { lease, drop_ticket } => (lease, *drop_ticket),
            other => panic!("expected a grant, got {other:?}"),
        }
    }
    fn waiting(plan: &AcquirePlan) -> (QueueWrite, &Busy) {
        match &plan.step {
            AcquireStep::Wait { queue, busy } => (*queue, busy),
            other => panic!("expected a wait, got {other:?}"),
        }
    }

    #[test]
    fn a_free_name_is_granted_with_the_next_token() {
        let plan = plan(&request(1, None), state(1, 41, vec![], vec![]));
        let (lease, drop_ticket) = granted(&plan);
        assert_eq!(
            lease,
            &Lease {
                namespace: Namespace::default(),
                name: LeaseName::parse("x").unwrap(),
                token: 42,
                holder: holder("me"),
                slots: 1,
                ttl_ms: 2000,
                acquired_at: NOW,
                expires_at: NOW + 2000,
            }
        );
        assert_eq!(drop_ticket, None);
        // A grant writes; with nothing removed and no queue entry left, it wakes nobody.
        assert!(plan.commit);
        assert!(!plan.notify);
        assert_eq!(plan.clone().outcome(Some(9)), AcquireOutcome::Acquired(lease.clone()));
    }

    #[test]
    fn tokens_increase_from_the_last_one_whatever_the_holders() {
        // A semaphore: the second place gets last_token + 1, not holders + 1.
        let plan = plan(&request(3, None), state(3, 7, vec![lease(5, 3), lease(7, 3)], vec![]));
        assert_eq!(granted(&plan).0.token, 8);
        // A new name starts at 1.
        let plan = plan_acquire(&request(1, None), state(1, 0, vec![], vec![])).unwrap();
        assert_eq!(granted(&plan).0.token, 1);
    }

    #[test]
    fn a_newcomer_waits_behind_earlier_waiters() {
        // Free lock, but an earlier waiter: the newcomer queues behind it.
        let plan = plan(&request(1, None), state(1, 3, vec![], vec![waiter(5, 9000)]));
        let (queue, busy) = waiting(&plan);
        assert_eq!(
            queue,
            QueueWrite::Enqueue {
                enqueued_at: NOW,
                expires_at: NOW + WAITER_TTL.as_millis() as Millis
            }
        );
        assert_eq!(busy.ahead, vec![waiter(5, 9000)]);
        assert_eq!(busy.ticket, None);
        assert!(plan.commit, "a new queue entry is a write");
        assert!(!plan.notify, "a new waiter frees nothing for anyone");
        // The store's ticket for the new entry is what the caller gets back.
        match plan.clone().outcome(Some(6)) {
            AcquireOutcome::Busy(busy) => assert_eq!(busy.ticket, Some(6)),
            other => panic!("{other:?}"),
        }
        // The earlier waiter itself is granted, and its entry dropped.
        let plan = plan_acquire(
            &request(1, Some(5)),
            state(1, 3, vec![], vec![waiter(5, 9000), waiter(6, 9000)]),
        )
        .unwrap();
        assert_eq!(granted(&plan), (&lease_for_me(4, 1), Some(5)));
        assert!(plan.notify, "the queue moved up");
        // Semaphore of 2, one held, one waiter ahead: the second in line waits behind it.
        let plan = plan_acquire(
            &request(2, Some(7)),
            state(2, 1, vec![lease(1, 2)], vec![waiter(6, 9000), waiter(7, 9000)]),
        )
        .unwrap();
        let (queue, busy) = waiting(&plan);
        assert_eq!(queue, QueueWrite::Nothing);
        assert_eq!(busy.ahead, vec![waiter(6, 9000)]);
        assert_eq!(busy.ticket, Some(7));
        assert!(!plan.commit, "nothing changed: roll back, wake nobody");
        // Two free places, one waiter ahead: granted.
        let plan = plan_acquire(
            &request(2, Some(7)),
            state(2, 1, vec![], vec![waiter(6, 9000), waiter(7, 9000)]),
        )
        .unwrap();
        assert_eq!(granted(&plan).1, Some(7));
    }

    fn lease_for_me(token: i64, slots: u32) -> Lease {
        Lease {
            holder: holder("me"),
            token,
            slots,
            ttl_ms: 2000,
            acquired_at: NOW,
            expires_at: NOW + 2000,
            ..lease(0, slots)
        }
    }

    #[test]
    fn a_ticket_is_refreshed_only_past_half_its_life() {
        // Plenty of life left: nothing to write.
        let held = vec![lease(1, 1)];
        let plan = plan_acquire(&request(1, Some(5)), state(1, 1, held.clone(), vec![waiter(5, 6000)])).unwrap();
        assert_eq!(waiting(&plan).0, QueueWrite::Nothing);
        assert!(!plan.commit);
        // Less than half left: the entry lives on from now.
        let plan = plan_acquire(&request(1, Some(5)), state(1, 1, held, vec![waiter(5, 4000)])).unwrap();
        let (queue, busy) = waiting(&plan);
        assert_eq!(
            queue,
            QueueWrite::Refresh {
                ticket: 5,
                expires_at: NOW + WAITER_TTL.as_millis() as Millis
            }
        );
        assert_eq!(busy.ticket, Some(5));
        assert!(busy.ahead.is_empty());
        assert!(plan.commit);
        assert!(!plan.notify);
    }

    #[test]
    fn a_try_neither_queues_nor_writes() {
        let mut try_it = request(1, None);
        try_it.request.wait = None;
        let plan = plan_acquire(&try_it, state(1, 1, vec![lease(1, 1)], vec![waiter(3, 9000)])).unwrap();
        let (queue, busy) = waiting(&plan);
        assert_eq!(queue, QueueWrite::Nothing);
        assert_eq!(busy.ahead.len(), 1, "all waiters are ahead of a try");
        assert_eq!(busy.ticket, None);
        assert_eq!(busy.next_expiry(), Some(NOW + 990));
        assert!(!plan.commit && !plan.notify);
    }

    #[test]
    fn reclaimed_and_expired_entries() {
        // The caller's entry is gone (expired or reclaimed): it lost its place and queues
        // again at the back, behind a waiter that came after it.
        let plan = plan_acquire(
            &request(1, Some(5)),
            state(1, 1, vec![lease(1, 1)], vec![waiter(6, 9000)]),
        )
        .unwrap();
        let (queue, busy) = waiting(&plan);
        assert!(matches!(queue, QueueWrite::Enqueue { .. }), "{queue:?}");
        assert_eq!(busy.ahead, vec![waiter(6, 9000)]);
        // Entries removed before deciding are a change: commit and wake the others, even
        // when this request only waits.
        let mut removed = state(1, 1, vec![lease(1, 1)], vec![]);
        removed.removed = true;
        let mut try_it = request(1, None);
        try_it.request.wait = None;
        let plan = plan_acquire(&try_it, removed.clone()).unwrap();
        assert!(plan.commit && plan.notify);
        // With the dead holder removed, the name is free: granted, and the others told.
        removed.holders.clear();
        let plan = plan_acquire(&request(1, None), removed).unwrap();
        assert_eq!(granted(&plan).0.token, 2);
        assert!(plan.notify);
    }

    #[test]
    fn slots_must_match_while_held() {
        let err = plan_acquire(&request(3, None), state(1, 1, vec![lease(1, 1)], vec![])).unwrap_err();
        assert_eq!(err.kind, crate::ErrorKind::BadInput);
        assert!(
            err.message
                .contains("lease \"x\" is held with 1 slot(s); this request asks for 3"),
            "{}",
            err.message
        );
        // A free name takes the request's slot count.
        let plan = plan_acquire(&request(3, None), state(1, 1, vec![], vec![])).unwrap();
        assert_eq!(granted(&plan).0.slots, 3);
    }

    #[test]
    fn renew() {
        let renew = |ttl: Option<u64>, pgid: Option<u32>| RenewRequest {
            namespace: Namespace::default(),
            name: LeaseName::parse("x").unwrap(),
            token: 1,
            ttl: ttl.map(Duration::from_millis),
            pgid,
        };
        // Keeps its own TTL, counted from now; records the process group.
        let renewed = plan_renew(&renew(None, Some(77)), NOW, Some(lease(1, 1))).unwrap();
        assert_eq!((renewed.ttl_ms, renewed.expires_at), (1000, NOW + 1000));
        assert_eq!(renewed.holder.pgid, Some(77));
        assert_eq!(renewed.acquired_at, lease(1, 1).acquired_at);
        // A new TTL.
        let renewed = plan_renew(&renew(Some(5000), None), NOW, Some(lease(1, 1))).unwrap();
        assert_eq!(
            (renewed.ttl_ms, renewed.expires_at, renewed.holder.pgid),
            (5000, NOW + 5000, None)
        );
        // Gone or expired: lost.
        let err = plan_renew(&renew(None, None), NOW, None).unwrap_err();
        assert_eq!(err.kind, crate::ErrorKind::Lost);
        assert!(
            err.message.contains("lease \"x\" is no longer held with token 1"),
            "{}",
            err.message
        );
        let err = plan_renew(&renew(None, None), NOW + 990, Some(lease(1, 1))).unwrap_err();
        assert_eq!(err.kind, crate::ErrorKind::Lost);
    }
}
