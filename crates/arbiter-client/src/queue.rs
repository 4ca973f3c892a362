//! Work items on the worker's side: waiting for a claim without polling the store, and
//! keeping a claim by the lease deadline rule.
//!
//! A claim is a lease on one item, so it is kept by the one type that keeps leases,
//! [`HeldLease`], over an [`ItemKeeper`] that turns its renews into heartbeats: a worker
//! that cannot confirm a heartbeat in time counts its claim lost and stops its command
//! before the store could hand the item to another worker.

use std::time::Duration;

use arbiter_core::Result;
use arbiter_core::lease::{Lease, RenewRequest};
use arbiter_core::name::{LeaseName, Namespace};
use arbiter_core::queue::{Claim, ClaimOutcome, ClaimRequest, FailRequest};
use arbiter_store::{Store, Topic};
use tokio::time::Instant;

use crate::lease::{Granted, HeldLease, LeaseKeeper};

/// The longest a waiting claim sleeps between tries when nothing wakes it (a missed
/// notification costs at most this).
const MAX_NAP: Duration = Duration::from_secs(30);

/// A claim and when the try that got it was sent: it cannot run out before `sent + lease`
/// by the caller's monotonic clock.
#[derive(Debug, Clone)]
pub struct ClaimGrant {
    pub claim: Claim,
    pub sent: Instant,
}

/// What [`claim`] found.
#[derive(Debug, Clone)]
pub struct ClaimResult {
    /// `None`: nothing to claim (within the wait).
    pub grant: Option<ClaimGrant>,
    /// Items that turned dead while this claim tidied up expired claims: the caller raises
    /// their `queue.dead` alerts.
    pub newly_dead: u32,
}

/// Claims one item, waiting up to `wait` (none: one try) for one to become claimable. The
/// wait sleeps on the queue's change feed, waking at a push or an ended claim, or when a
/// delayed item becomes ready or a claim runs out (the store says when), never polling.
pub async fn claim(store: &Store, request: &ClaimRequest, wait: Option<Duration>) -> Result<ClaimResult> {
    let deadline = wait.map(|wait| Instant::now() + wait);
    // Subscribe before the first try, so no change between a try and the wait is missed.
    let mut subscription = match wait {
        Some(_) => Some(store.changes().subscribe(Topic::Queue).await?),
        None => None,
    };
    let mut newly_dead = 0;
    loop {
        let sent = Instant::now();
        let claimed = store.queue().claim(request).await?;
        newly_dead += claimed.newly_dead;
        let (now, next_at) = match claimed.outcome {
            ClaimOutcome::Claimed(claim) => {
                return Ok(ClaimResult {
                    grant: Some(ClaimGrant { claim, sent }),
                    newly_dead,
                });
            }
            ClaimOutcome::Empty { now, next_at } => (now, next_at),
        };
        let (Some(subscription), Some(deadline)) = (subscription.as_mut(), deadline) else {
            return Ok(ClaimResult {
                grant: None,
                newly_dead,
            });
        };
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(ClaimResult {
                grant: None,
                newly_dead,
            });
        }
        // A few milliseconds past the store's time, so the next try sees it passed.
        let until_next = next_at.map(|at| Duration::from_millis((at - now).max(0) as u64 + 5));
        let nap = [Some(left), until_next, Some(MAX_NAP)]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(MAX_NAP);
        subscription.wait(nap).await?;
    }
}

/// Keeps a claim: a [`LeaseKeeper`] whose renew is a heartbeat of the item (with the
/// claim's own lease) and whose release gives the item back at once (a failure with no
/// backoff: the attempt counts).
#[derive(Clone)]
pub struct ItemKeeper {
    store: Store,
    id: i64,
    lease: Duration,
}

impl LeaseKeeper for ItemKeeper {
    async fn renew(&self, request: RenewRequest) -> Result<()> {
        let lease = request.ttl.unwrap_or(self.lease);
        self.store
            .queue()
            .heartbeat(&request.namespace, self.id, request.token, lease, request.pgid)
            .await
            .map(|_| ())
    }

    async fn release(&self, namespace: &Namespace, _name: &LeaseName, token: i64) -> Result<()> {
        let request = FailRequest {
            namespace: namespace.clone(),
            id: self.id,
            token,
            reason: "given back by its worker".to_string(),
            retry_in: Some(Duration::ZERO),
        };
        self.store.queue().fail(&request).await.map(|_| ())
    }
}

/// The lease name a held claim goes by in messages and logs: `item/<id>`.
pub fn claim_lease_name(id: i64) -> LeaseName {
    LeaseName::parse(&format!("item/{id}")).expect("item/<number> is a valid name")
}

/// Starts keeping `grant` under the lease deadline rule (`grace`: the time the worker needs
/// to stop once the claim is lost). The claim's token is the lease's token.
pub fn hold(store: &Store, grant: ClaimGrant, grace: Duration) -> HeldLease<ItemKeeper> {
    let claim = &grant.claim;
    let lease = Lease {
        namespace: claim.namespace.clone(),
        name: claim_lease_name(claim.id),
        token: claim.token,
        holder: claim.holder.clone(),
        slots: 1,
        ttl_ms: claim.lease_ms,
        acquired_at: claim.claimed_at,
        expires_at: claim.expires_at,
    };
    let keeper = ItemKeeper {
        store: store.clone(),
        id: claim.id,
        lease: Duration::from_millis(claim.lease_ms.max(1) as u64),
    };
    HeldLease::hold(
        keeper,
        Granted {
            lease,
            sent: grant.sent,
        },
        grace,
    )
}
