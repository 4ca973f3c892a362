//! Acquiring and keeping leases.
//!
//! **Acquire** is a loop of single-transaction attempts (the store decides each one):
//! 1. An attempt either gets a place or returns what is in the way (holders, waiters ahead)
//!    and, for a waiting request, the request's place in the queue.
//! 2. Holders and waiters recorded on *this* host whose process is gone (pid and start time
//!    checked, and the command's process group empty) are named in the next attempt, which
//!    removes them first: a crashed holder on this host blocks nobody for its TTL.
//! 3. Otherwise a waiting request sleeps on the store's change feed until something
//!    changes, the first holder's TTL runs out, or its queue entry needs refreshing — never
//!    a busy loop.
//!
//! **Keep-alive** ([`HeldLease`]) renews at a third of the TTL under the deadline rule of
//! [`Deadlines`]: every renew has a deadline, a renew not confirmed in time counts as not
//! renewed, and the holder counts the lease lost early enough — by its own monotonic
//! clock, from when the last confirmed request was *sent* — to stop its command before the
//! store could grant the lease to anyone else. A `Lost` answer ends it at once. Loss is
//! always reported, never silent. Where the renews and the release go is a
//! [`LeaseKeeper`]: the store, or a server in front of it (`arbiter_remote::Client`, for
//! `arbiter --server … lock`) — one deadline rule for both.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arbiter_core::lease::{AcquireOutcome, Attempt, Busy, Holder, Lease, RenewRequest, WAITER_TTL};
use arbiter_core::name::{LeaseName, Namespace};
use arbiter_core::{Detail, Error, ErrorKind, Result};
use arbiter_process::Liveness;
use arbiter_store::{Store, Topic};
use tokio::sync::watch;
use tokio::time::Instant;

/// How soon a waiter looks again at a holder that is exiting.
const EXITING_RECHECK: Duration = Duration::from_millis(20);

/// What to acquire, and how long to wait for it: the store's request type, built once by
/// the front end. [`acquire`] sends it as [`Attempt`]s.
pub use arbiter_core::lease::AcquireRequest;

/// A granted lease and when the attempt that got it was sent: the lease cannot expire
/// before `sent + ttl` by the caller's monotonic clock.
#[derive(Debug, Clone)]
pub struct Granted {
    pub lease: Lease,
    pub sent: Instant,
}

/// Acquires a place of a lease; see the module documentation. A busy lease (after any
/// wait) is `ErrorKind::Held`, with the holders named in the message and, as data,
/// [`Detail::Held`].
pub async fn acquire(store: &Store, request: AcquireRequest) -> Result<Granted> {
    let deadline = request.wait.map(|wait| Instant::now() + wait);
    let mut subscription = match request.wait {
        Some(_) => Some(store.changes().subscribe(Topic::Leases).await?),
        None => None,
    };
    // The request, plus what the tries so far learnt (a ticket, entries to reclaim).
    let mut attempt = Attempt::from(request);
    let mut exiting_pause = EXITING_RECHECK;
    loop {
        let sent = Instant::now();
        let busy = match store.leases().acquire(attempt.clone()).await? {
            AcquireOutcome::Acquired(lease) => {
                if !attempt.reclaim_tokens.is_empty() {
                    tracing::info!(
                        name = %lease.name,
                        dead_tokens = ?attempt.reclaim_tokens,
                        "took over from holders whose processes are gone"
                    );
                }
                return Ok(Granted { lease, sent });
            }
            AcquireOutcome::Busy(busy) => busy,
        };
        attempt.ticket = busy.ticket;
        let (dead_tokens, dead_tickets) = dead_on_this_host(&busy);
        // Reclaim once per set of dead entries: if the store kept them (a race with a
        // renewal that proved them alive), do not spin.
        if (!dead_tokens.is_empty() || !dead_tickets.is_empty())
            && (dead_tokens != attempt.reclaim_tokens || dead_tickets != attempt.reclaim_tickets)
        {
            attempt.reclaim_tokens = dead_tokens;
            attempt.reclaim_tickets = dead_tickets;
            continue;
        }
        attempt.reclaim_tokens.clear();
        attempt.reclaim_tickets.clear();
        let now = Instant::now();
        let (Some(deadline), Some(subscription)) = (deadline, subscription.as_mut()) else {
            return Err(held(&attempt.request.name, &busy));
        };
        if now >= deadline {
            if let Some(ticket) = attempt.ticket {
                store
                    .leases()
                    .cancel_wait(&attempt.request.namespace, &attempt.request.name, ticket)
                    .await?;
            }
            return Err(held(&attempt.request.name, &busy).context(format!(
                "gave up after waiting {}",
                arbiter_core::duration::format_duration(attempt.request.wait.unwrap_or_default())
            )));
        }
        let until_expiry = busy
            .next_expiry()
            .map(|at| Duration::from_millis((at - busy.now).max(0) as u64 + 1))
            .unwrap_or(WAITER_TTL);
        // A holder whose process is gone while its group is being killed frees the lease
        // within milliseconds, without any change in the store: look again soon.
        // Backing off: a script's group (`lease acquire`) may outlive its holder process.
        let exiting = busy.holders.iter().any(|lease| arbiter_process::exiting(&lease.holder));
        let recheck = if exiting {
            let pause = exiting_pause;
            exiting_pause = (exiting_pause * 2).min(WAITER_TTL / 3);
            pause
        } else {
            exiting_pause = EXITING_RECHECK;
            WAITER_TTL / 3
        };
        let timeout = (deadline - now).min(until_expiry).min(recheck);
        subscription.wait(timeout).await?;
    }
}

/// Holders and waiters ahead that were recorded on this host and whose processes are gone.
fn dead_on_this_host(busy: &Busy) -> (Vec<i64>, Vec<i64>) {
    let tokens = busy
        .holders
        .iter()
        .filter(|lease| arbiter_process::liveness(&lease.holder) == Liveness::Dead)
        .map(|lease| lease.token)
        .collect();
    let tickets = busy
        .ahead
        .iter()
        .filter(|waiter| arbiter_process::liveness(&waiter.holder) == Liveness::Dead)
        .map(|waiter| waiter.ticket)
        .collect();
    (tokens, tickets)
}

/// The failure of a busy acquire: who holds the lease and how many wait ahead, in words
/// and as [`Detail::Held`].
fn held(name: &str, busy: &Busy) -> Error {
    let holders: Vec<String> = busy
        .holders
        .iter()
        .map(|lease| {
            let left = Duration::from_millis((lease.expires_at - busy.now).max(0) as u64);
            format!(
                "{} (token {}, expires in {})",
                describe(&lease.holder),
                lease.token,
                format_left(left)
            )
        })
        .collect();
    let mut message = match holders.len() {
        0 => format!("lease {name:?} is free, but earlier waiters are ahead in the queue"),
        _ => format!("lease {name:?} is held by {}", holders.join(", ")),
    };
    if !busy.ahead.is_empty() {
        message.push_str(&format!("; {} waiting", busy.ahead.len()));
    }
    Error::new(ErrorKind::Held, message).with_detail(Detail::Held {
        holders: busy.holders.clone(),
        waiters_ahead: busy.ahead.len(),
    })
}

fn format_left(left: Duration) -> String {
    if left < Duration::from_secs(1) {
        format!("{}ms", left.as_millis())
    } else {
        arbiter_core::duration::format_duration(Duration::from_secs(left.as_secs()))
    }
}

/// A holder, for a person: `agent (pid 123 on host)`, or `agent (remote, no process)` for
/// one taken over HTTP or MCP without naming a process.
pub fn describe(holder: &Holder) -> String {
    if holder.host.is_empty() {
        // A holder that came over HTTP or MCP without naming a process: only its TTL ends it.
        let who = if holder.agent.is_empty() {
            "a remote caller"
        } else {
            holder.agent.as_str()
        };
        return format!("{who} (remote, no process)");
    }
    let who = if holder.agent.is_empty() {
        String::from("pid")
    } else {
        format!("{} (pid", holder.agent)
    };
    let close = if holder.agent.is_empty() { "" } else { ")" };
    format!("{who} {} on {}{close}", holder.pid, holder.host)
}

/// The holder's side of the deadline rule, for a lease of `ttl` whose holder needs up to
/// `grace` to stop what it protects (TERM, then KILL after `grace`):
///
/// - a renew is sent every third of the TTL (from when the last confirmed one was sent);
/// - each renew, like every store call of the keep-alive, has a deadline: the stop point
///   below. A renew not confirmed by then counts as not renewed, even if the store call is
///   still stuck underneath (a stalled link, a file lock held elsewhere);
/// - the lease counts as lost on the holder's side at the **stop point**: `sent + ttl −
///   ttl/6 − grace`, where `sent` is when the last confirmed grant or renew was *sent* (the
///   store counted its TTL from later than that). The holder then stops its command: TERM,
///   KILL after `grace`, so the command is gone by `sent + 5/6·ttl`. The remaining sixth
///   of the TTL ([`margin`]) covers delivering the KILL, the scheduler, and clocks running at
///   slightly different rates; the store lets nobody else have the lease before
///   `sent + ttl`.
///
/// `grace` may be at most a third of the TTL ([`check_grace`]), so a renew always has
/// time to be tried: the stop point is never sooner than half the TTL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadlines {
    pub ttl: Duration,
    pub grace: Duration,
}

impl Deadlines {
    /// The rule for `ttl` and `grace` (a grace above [`max_grace`] is capped to it).
    pub fn new(ttl: Duration, grace: Duration) -> Deadlines {
        let ttl = ttl.max(Duration::from_millis(1));
        Deadlines {
            ttl,
            grace: grace.min(max_grace(ttl)),
        }
    }

    /// How often a renew is sent.
    pub fn renew_every(&self) -> Duration {
        self.ttl / 3
    }

    /// How long after the last confirmed request was sent the lease counts as lost here.
    pub fn stop_after(&self) -> Duration {
        self.ttl.saturating_sub(margin(self.ttl)).saturating_sub(self.grace)
    }
}

/// The part of the TTL kept between the command's KILL and the store's expiry: a sixth.
pub fn margin(ttl: Duration) -> Duration {
    ttl / 6
}

/// The longest grace (TERM to KILL) a holder of a lease of `ttl` may take: a third.
pub fn max_grace(ttl: Duration) -> Duration {
    ttl / 3
}

/// The grace when none is given: 10 s, or a third of the TTL if that is less.
pub fn default_grace(ttl: Duration) -> Duration {
    Duration::from_secs(10).min(max_grace(ttl))
}

/// Refuses a grace that does not fit the TTL: the command could still run when the store
/// hands the lease to someone else. `grace_flag` and `ttl_flag` name them for the message.
pub fn check_grace(ttl: Duration, grace: Duration, grace_flag: &str, ttl_flag: &str) -> Result<()> {
    use arbiter_core::duration::format_duration;
    if grace > max_grace(ttl) {
        return Err(Error::bad_input(format!(
            "{grace_flag} {} does not fit {ttl_flag} {}: expected at most a third of the TTL ({}), so that a \
             command which ignores TERM is killed before the lease could go to someone else; use a shorter \
             {grace_flag} or a longer {ttl_flag}",
            format_duration(grace),
            format_duration(ttl),
            format_left(max_grace(ttl)),
        )));
    }
    Ok(())
}

/// Where a [`HeldLease`]'s renews and release go: the store itself, or a server in front
/// of it (implemented for `arbiter_remote::Client` in that crate, which this one cannot
/// name). The keep-alive's deadline rule is the holder's and stays the same whichever it
/// is: a keeper only carries one request and reports its answer.
pub trait LeaseKeeper: Clone + Send + Sync + 'static {
    /// Renews `request.token` (recording `request.pgid`); `Lost` when the token no longer
    /// holds the lease.
    fn renew(&self, request: RenewRequest) -> impl Future<Output = Result<()>> + Send;

    /// Gives the place of `token` back; `Lost` when it was no longer held.
    fn release(&self, namespace: &Namespace, name: &LeaseName, token: i64) -> impl Future<Output = Result<()>> + Send;
}

impl LeaseKeeper for Store {
    async fn renew(&self, request: RenewRequest) -> Result<()> {
        self.leases().renew(request).await.map(|_| ())
    }

    async fn release(&self, namespace: &Namespace, name: &LeaseName, token: i64) -> Result<()> {
        self.leases().release(namespace, name, token).await
    }
}

/// A held lease: granted, renewed in the background under [`Deadlines`], and released by
/// the code that took it ([`HeldLease::release`]). Every user of a lease (`arbiter lock`,
/// the supervisor's loops, the dispatcher, the inbox sweep) holds it through this type.
///
/// Dropping it stops renewing and does not release (the lease then expires after its TTL).
pub struct HeldLease<K: LeaseKeeper = Store> {
    keeper: K,
    lease: Lease,
    deadlines: Deadlines,
    state: Arc<Mutex<KeepState>>,
    lost: watch::Receiver<Option<Error>>,
    task: tokio::task::JoinHandle<()>,
}

/// What the keep-alive task and the holder share.
#[derive(Debug)]
struct KeepState {
    /// When the last confirmed grant or renew was sent.
    sent: Instant,
    /// The process group to record with every renew.
    pgid: Option<u32>,
}

impl HeldLease {
    /// Acquires (see [`acquire`]) and starts the keep-alive. `grace` is how long the holder
    /// needs to stop its work once the lease is lost (zero for work that stops at once).
    pub async fn acquire(store: &Store, request: AcquireRequest, grace: Duration) -> Result<HeldLease> {
        let granted = acquire(store, request).await?;
        Ok(HeldLease::hold(store.clone(), granted, grace))
    }
}

impl<K: LeaseKeeper> HeldLease<K> {
    /// Starts keeping a granted lease, renewing and releasing it through `keeper`.
    pub fn hold(keeper: K, granted: Granted, grace: Duration) -> HeldLease<K> {
        let ttl = Duration::from_millis(granted.lease.ttl_ms.max(1) as u64);
        let deadlines = Deadlines::new(ttl, grace);
        let state = Arc::new(Mutex::new(KeepState {
            sent: granted.sent,
            pgid: None,
        }));
        let (sender, lost) = watch::channel(None);
        let task = tokio::spawn(renew_loop(
            keeper.clone(),
            granted.lease.clone(),
            deadlines,
            state.clone(),
            sender,
        ));
        HeldLease {
            keeper,
            lease: granted.lease,
            deadlines,
            state,
            lost,
            task,
        }
    }

    /// The lease as granted.
    pub fn lease(&self) -> &Lease {
        &self.lease
    }

    pub fn name(&self) -> &str {
        &self.lease.name
    }

    pub fn namespace(&self) -> &str {
        &self.lease.namespace
    }

    pub fn token(&self) -> i64 {
        self.lease.token
    }

    /// The rule this lease is kept by; `deadlines().grace` is the grace the holder may use
    /// when the lease is lost.
    pub fn deadlines(&self) -> Deadlines {
        self.deadlines
    }

    /// The stop point now: when the lease counts as lost unless a renew is confirmed first.
    fn stop_at(&self) -> Instant {
        lock(&self.state).sent + self.deadlines.stop_after()
    }

    /// Records the process group of the command run under the lease (so a same-host
    /// acquirer counts the holder alive while the group has members), with a renew under
    /// the same deadline. Fails with `Lost` if it cannot be confirmed in time.
    pub async fn record_pgid(&mut self, pgid: u32) -> Result<()> {
        lock(&self.state).pgid = Some(pgid);
        let request = RenewRequest {
            namespace: self.lease.namespace.clone(),
            name: self.lease.name.clone(),
            token: self.lease.token,
            ttl: None,
            pgid: Some(pgid),
        };
        let sent = Instant::now();
        match tokio::time::timeout_at(self.stop_at(), self.keeper.renew(request)).await {
            Ok(result) => result.map(|_| confirm(&self.state, sent)),
            Err(_) => Err(unconfirmed(&self.lease.name, &not_answered(sent, self.stop_at()))),
        }
    }

    /// Resolves when the lease is lost (the store said so, or no renew was confirmed
    /// before the stop point), with the reason. Cancel-safe.
    pub async fn lost(&mut self) -> Error {
        loop {
            if let Some(err) = self.lost.borrow_and_update().clone() {
                return err;
            }
            if self.lost.changed().await.is_err() {
                // The task ended without a loss (it never does): treat as lost to be safe.
                return Error::new(ErrorKind::Lost, "lease keep-alive stopped");
            }
        }
    }

    /// The loss, if it happened already.
    pub fn is_lost(&self) -> Option<Error> {
        self.lost.borrow().clone()
    }

    /// Stops renewing and releases the lease. `Lost` if it was lost (or ran out) first;
    /// a release that cannot be confirmed before the stop point is not waited for past it
    /// (the lease then expires by itself) and fails as unavailable.
    pub async fn release(self) -> Result<()> {
        self.task.abort();
        if let Some(err) = self.is_lost() {
            return Err(err);
        }
        let release = self
            .keeper
            .release(&self.lease.namespace, &self.lease.name, self.lease.token);
        match tokio::time::timeout_at(self.stop_at(), release).await {
            Ok(result) => result,
            Err(_) => Err(Error::new(
                ErrorKind::Unavailable,
                format!(
                    "the release of lease {:?} was not confirmed in time; it expires by itself within its TTL",
                    self.lease.name
                ),
            )),
        }
    }
}

impl<K: LeaseKeeper> Drop for HeldLease<K> {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn lock(state: &Mutex<KeepState>) -> std::sync::MutexGuard<'_, KeepState> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

/// A renew sent at `sent` was confirmed: the lease lives at least until `sent + ttl`.
fn confirm(state: &Mutex<KeepState>, sent: Instant) {
    let mut state = lock(state);
    state.sent = state.sent.max(sent);
}

/// Why no renew was confirmed: the store did not answer in time.
const STALLED: &str = "the store did not answer in time: unreachable or stalled";
/// Why no renew was confirmed: nothing failed, the TTL left no time for one.
const TOO_SHORT: &str =
    "the TTL ran out before a renewal could be confirmed; the store answered, so the TTL is too short for it";

/// Why a renew sent at `sent` got no answer by `stop_at`. Under a second to answer is no
/// sign of a stall: the TTL left too little time.
fn not_answered(sent: Instant, stop_at: Instant) -> String {
    let left = stop_at.saturating_duration_since(sent);
    if left < Duration::from_secs(1) {
        format!("the store did not answer within the {left:?} the TTL left; the TTL is too short for it")
    } else {
        STALLED.to_string()
    }
}

fn unconfirmed(name: &str, why: &str) -> Error {
    Error::new(
        ErrorKind::Lost,
        format!("lease {name:?} could not be renewed in time ({why}); stopping before it expires"),
    )
}

async fn renew_loop<K: LeaseKeeper>(
    keeper: K,
    lease: Lease,
    deadlines: Deadlines,
    state: Arc<Mutex<KeepState>>,
    lost: watch::Sender<Option<Error>>,
) {
    let every = deadlines.renew_every();
    let retry = (every / 8).max(Duration::from_millis(10));
    let mut next = lock(&state).sent + every;
    // What went wrong with the last renew, for the message when the stop point comes.
    let mut why = TOO_SHORT.to_string();
    loop {
        let stop_at = lock(&state).sent + deadlines.stop_after();
        tokio::time::sleep_until(next.min(stop_at)).await;
        if Instant::now() >= stop_at {
            let _ = lost.send(Some(unconfirmed(&lease.name, &why)));
            return;
        }
        let request = RenewRequest {
            namespace: lease.namespace.clone(),
            name: lease.name.clone(),
            token: lease.token,
            ttl: None,
            pgid: lock(&state).pgid,
        };
        let sent = Instant::now();
        // The store call may stay stuck underneath (a stalled link, a held file lock); past
        // the stop point its answer no longer matters.
        match tokio::time::timeout_at(stop_at, keeper.renew(request)).await {
            Ok(Ok(_)) => {
                confirm(&state, sent);
                why = TOO_SHORT.to_string();
                next = sent + every;
            }
            Ok(Err(err)) if err.kind == ErrorKind::Lost => {
                let _ = lost.send(Some(err));
                return;
            }
            Ok(Err(err)) => {
                tracing::warn!(name = %lease.name, error = %err, "lease renewal failed; retrying");
                why = format!("the store failed: {}", err.message);
                next = Instant::now() + retry;
            }
            Err(_) => {
                tracing::warn!(name = %lease.name, "lease renewal not confirmed before the stop point");
                why = not_answered(sent, stop_at);
                next = Instant::now();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holders_are_described_with_their_process_or_as_remote() {
        let local = Holder {
            host: "build-1".into(),
            pid: 42,
            agent: "builder".into(),
            ..Holder::default()
        };
        assert_eq!(describe(&local), "builder (pid 42 on build-1)");
        let remote = Holder {
            agent: "team-a".into(),
            ..Holder::default()
        };
        assert_eq!(describe(&remote), "team-a (remote, no process)");
        assert_eq!(describe(&Holder::default()), "a remote caller (remote, no process)");
    }

    #[test]
    fn the_deadline_rule() {
        let s = Duration::from_secs;
        // The defaults of `arbiter lock`: TTL 30s, grace 10s. TERM at 15s, KILL at 25s.
        let rule = Deadlines::new(s(30), s(10));
        assert_eq!((rule.renew_every(), rule.stop_after()), (s(10), s(15)));
        assert_eq!(rule.stop_after() + rule.grace + margin(s(30)), s(30));
        // No command: lost at 5/6 of the TTL.
        assert_eq!(Deadlines::new(s(60), Duration::ZERO).stop_after(), s(50));
        // A grace longer than a third of the TTL is capped for the rule, refused as a flag.
        assert_eq!(Deadlines::new(s(3), s(10)).grace, s(1));
        assert_eq!(default_grace(s(3)), s(1));
        assert_eq!(default_grace(s(60)), s(10));
        assert!(check_grace(s(3), s(1), "--grace", "--ttl").is_ok());
        let err = check_grace(s(3), Duration::from_millis(1001), "--grace", "--ttl").unwrap_err();
        assert_eq!(err.kind, ErrorKind::BadInput);
        assert!(
            err.message.starts_with("--grace 1s1ms does not fit --ttl 3s"),
            "{}",
            err.message
        );
        // Whatever the grace, a renew is tried before the stop point.
        for ttl_ms in [3u64, 300, 1000, 30_000, 86_400_000] {
            let ttl = Duration::from_millis(ttl_ms);
            let rule = Deadlines::new(ttl, ttl);
            assert!(rule.renew_every() < rule.stop_after(), "{rule:?}");
        }
    }
}
