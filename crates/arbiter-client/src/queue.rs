//! Work items on the worker's side: waiting for a claim without polling the store, and
//! keeping a claim by the lease deadline rule.
//!
//! A claim is a lease on one item, so it is kept by the one type that keeps leases,
//! [`HeldLease`], over an [`ItemKeeper`] that turns its renews into heartbeats: a worker
//! that cannot confirm a heartbeat in time counts its claim lost and stops its command
//! before the store could hand the item to another worker.

use std::process::ExitStatus;
use std::time::Duration;

use arbiter_core::lease::{Lease, RenewRequest};
use arbiter_core::name::{LeaseName, Namespace};
use arbiter_core::queue::{Claim, ClaimOutcome, ClaimRequest, FailRequest, Item};
use arbiter_core::{Error, ErrorKind, Millis, Result};
use arbiter_store::{Store, Topic};
use tokio::time::Instant;

use crate::lease::{Granted, HeldLease, LeaseKeeper};
use crate::lock::{LockCommand, Ran, run_held};

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
    /// Nothing claimed: when, by the store's clock, the last try said something may become
    /// claimable for this caller without a push (a delayed item, a claim running out);
    /// `None`: nothing pending at all (`queue work --drain` stops there).
    pub next_at: Option<Millis>,
}

/// Claims one item, waiting up to `wait` (none: one try) for one to become claimable. The
/// wait sleeps on the queue's change feed, waking at a push or an ended claim, or when a
/// delayed item becomes ready or a claim runs out (the store says when), never polling.
pub async fn claim(store: &Store, request: &ClaimRequest, wait: Option<Duration>) -> Result<ClaimResult> {
    claim_loop(store, request, wait, false).await
}

/// [`claim`], but the wait also ends (with no grant and `next_at: None`) as soon as a try
/// finds nothing pending for the caller at all — no delayed item it could take, no claim
/// that could run out: what `queue work --drain` waits for.
pub async fn claim_or_idle(store: &Store, request: &ClaimRequest, wait: Option<Duration>) -> Result<ClaimResult> {
    claim_loop(store, request, wait, true).await
}

async fn claim_loop(
    store: &Store,
    request: &ClaimRequest,
    wait: Option<Duration>,
    until_idle: bool,
) -> Result<ClaimResult> {
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
                    next_at: None,
                });
            }
            ClaimOutcome::Empty { now, next_at } => (now, next_at),
        };
        let (Some(subscription), Some(deadline)) = (subscription.as_mut(), deadline) else {
            return Ok(ClaimResult {
                grant: None,
                newly_dead,
                next_at,
            });
        };
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || (until_idle && next_at.is_none()) {
            return Ok(ClaimResult {
                grant: None,
                newly_dead,
                next_at,
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

/// How an item's command run by [`run_item`] ended.
#[derive(Debug)]
pub enum ItemOutcome {
    /// The command exited 0 and the item is done.
    Done(Item),
    /// The command exited otherwise and the failure was reported: `item` is ready again
    /// (after its backoff) or dead (that was its last attempt).
    Failed { status: ExitStatus, item: Item },
    /// The claim was lost (the store said so, or no heartbeat was confirmed in time, or it
    /// ran out before the report): the command was stopped and nothing was reported — the
    /// token is stale, the item is someone else's to finish.
    Lost(Error),
    /// `shutdown` fired: the command was stopped and the item given back (ready again at
    /// once, the attempt counted).
    Interrupted(ExitStatus),
}

/// The reason a failed run is recorded with: `exit N`, or `killed by signal S` (unix).
pub fn failure_reason(status: &ExitStatus) -> String {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(signal) = status.signal() {
            return format!("killed by signal {signal}");
        }
    }
    format!("exit {}", arbiter_process::exit_code(status))
}

/// Holds `grant` ([`hold`], with `grace` for the command to stop) and runs `command` for
/// it the way `arbiter lock` runs one under a lease (the same guarded process tree, process
/// group recorded, stopped when the claim is lost or at `shutdown`; see [`crate::lock`]),
/// with the item's body on its standard input: exit 0 marks the
/// item done, any other exit fails it with [`failure_reason`] (its backoff applies), a
/// lost claim reports nothing, and `shutdown` gives the item back. A failed item is ready
/// again after `retry_in` (`None`: the backoff of its attempt).
///
/// The body is fed from a file only the owner can read (0600, in the temp directory,
/// removed when the command ends), not a pipe: a command that never reads its input
/// neither blocks on nor fails by it, and one that does can read it at its own pace.
pub async fn run_item(
    store: &Store,
    mut grant: ClaimGrant,
    grace: Duration,
    command: LockCommand,
    retry_in: Option<Duration>,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<ItemOutcome> {
    let (namespace, id, token) = (grant.claim.namespace.clone(), grant.claim.id, grant.claim.token);
    let body = std::mem::take(&mut grant.claim.body);
    let mut held = hold(store, grant, grace);
    let body_file = std::env::temp_dir().join(format!(
        "arbiter-item-{}-{id}-{token}.in",
        arbiter_process::current_pid()
    ));
    if let Err(err) = arbiter_process::private::replace_private(&body_file, body.as_bytes()) {
        give_back(held).await;
        return Err(err);
    }
    let spawn = arbiter_process::Spawn {
        argv: command.argv,
        env: command.env,
        stdin: Some(body_file.clone()),
        ..Default::default()
    };
    let ran = run_held(&mut held, &spawn, &command.guard_exe, shutdown).await;
    let _ = std::fs::remove_file(&body_file);
    let ran = match ran {
        Ok(ran) => ran,
        Err(err) => {
            give_back(held).await;
            return Err(err);
        }
    };
    let status = match ran {
        Ran::Lost(err) => return Ok(ItemOutcome::Lost(err)),
        Ran::Interrupted(status) => {
            give_back(held).await;
            return Ok(ItemOutcome::Interrupted(status));
        }
        Ran::Exited(status) => status,
    };
    if let Some(err) = held.is_lost() {
        return Ok(ItemOutcome::Lost(err));
    }
    // Stop heartbeating; the report is checked against the claim's expiry by the store.
    drop(held);
    let report = if status.success() {
        store
            .queue()
            .done(&namespace, id, token, None)
            .await
            .map(ItemOutcome::Done)
    } else {
        let request = FailRequest {
            namespace,
            id,
            token,
            reason: failure_reason(&status),
            retry_in,
        };
        store
            .queue()
            .fail(&request)
            .await
            .map(|item| ItemOutcome::Failed { status, item })
    };
    match report {
        Err(err) if err.kind == ErrorKind::Lost => Ok(ItemOutcome::Lost(err)),
        other => other,
    }
}

/// Gives a held claim back (ready again at once, the attempt counted); a claim already
/// lost has nothing to give.
async fn give_back(held: HeldLease<ItemKeeper>) {
    let name = held.name().to_string();
    if let Err(e) = held.release().await {
        tracing::warn!(name = %name, error = %e, "could not give the item back");
    }
}
