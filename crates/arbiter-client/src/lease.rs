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
//! **Keep-alive** renews at a third of the TTL. A `Lost` answer ends it at once; if the
//! store cannot be reached, it retries until the lease would have expired by the caller's
//! own monotonic clock (counted from when the last successful renew was *sent*), then
//! reports the lease lost. Loss is always reported, never silent.

use std::time::Duration;

use arbiter_core::lease::{AcquireOutcome, AcquireRequest, Busy, Holder, Lease, RenewRequest, WAITER_TTL};
use arbiter_core::{Error, ErrorKind, Result};
use arbiter_process::Liveness;
use arbiter_store::{Store, Topic};
use tokio::sync::watch;
use tokio::time::Instant;

/// How soon a waiter looks again at a holder that is exiting.
const EXITING_RECHECK: Duration = Duration::from_millis(20);

/// What to acquire, and how long to wait for it.
#[derive(Debug, Clone)]
pub struct Acquire {
    pub namespace: String,
    pub name: String,
    pub holder: Holder,
    pub ttl: Duration,
    pub slots: u32,
    /// `None`: fail at once when busy. `Some(d)`: queue and wait up to `d`.
    pub wait: Option<Duration>,
}

/// A granted lease and when the attempt that got it was sent: the lease cannot expire
/// before `sent + ttl` by the caller's monotonic clock.
#[derive(Debug, Clone)]
pub struct Granted {
    pub lease: Lease,
    pub sent: Instant,
}

/// Acquires a place of a lease; see the module documentation. A busy lease (after any
/// wait) is `ErrorKind::Held`, with the holders named.
pub async fn acquire(store: &Store, request: Acquire) -> Result<Granted> {
    let deadline = request.wait.map(|wait| Instant::now() + wait);
    let mut subscription = match request.wait {
        Some(_) => Some(store.changes().subscribe(Topic::Leases).await?),
        None => None,
    };
    let mut attempt = AcquireRequest {
        namespace: request.namespace.clone(),
        name: request.name.clone(),
        holder: request.holder.clone(),
        ttl: request.ttl,
        slots: request.slots,
        enqueue: request.wait.is_some(),
        ticket: None,
        reclaim_tokens: Vec::new(),
        reclaim_tickets: Vec::new(),
    };
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
            return Err(held(&request.name, &busy));
        };
        if now >= deadline {
            if let Some(ticket) = attempt.ticket {
                store
                    .leases()
                    .cancel_wait(&request.namespace, &request.name, ticket)
                    .await?;
            }
            return Err(held(&request.name, &busy).context(format!(
                "gave up after waiting {}",
                arbiter_core::duration::format_duration(request.wait.unwrap_or_default())
            )));
        }
        let until_expiry = busy
            .next_expiry()
            .map(|at| Duration::from_millis((at - busy.now).max(0) as u64 + 1))
            .unwrap_or(WAITER_TTL);
        // A holder whose process is gone while its group is being killed frees the lease
        // within milliseconds, without any change in the store: look again soon.
        let exiting = busy.holders.iter().any(|lease| arbiter_process::exiting(&lease.holder));
        let recheck = if exiting { EXITING_RECHECK } else { WAITER_TTL / 3 };
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
    Error::new(ErrorKind::Held, message)
}

fn format_left(left: Duration) -> String {
    if left < Duration::from_secs(1) {
        format!("{}ms", left.as_millis())
    } else {
        arbiter_core::duration::format_duration(Duration::from_secs(left.as_secs()))
    }
}

/// A holder, for a person: `agent on host (pid 123)`.
pub fn describe(holder: &Holder) -> String {
    let who = if holder.agent.is_empty() {
        String::from("pid")
    } else {
        format!("{} (pid", holder.agent)
    };
    let close = if holder.agent.is_empty() { "" } else { ")" };
    format!("{who} {} on {}{close}", holder.pid, holder.host)
}

/// The renewal task of one lease; dropping it stops renewing (it does not release).
pub struct KeepAlive {
    lost: watch::Receiver<Option<Error>>,
    task: tokio::task::JoinHandle<()>,
}

impl KeepAlive {
    /// Starts renewing a granted lease every third of its TTL.
    pub fn start(store: Store, granted: &Granted) -> KeepAlive {
        let lease = &granted.lease;
        let (sender, lost) = watch::channel(None);
        let ttl = Duration::from_millis(lease.ttl_ms.max(1) as u64);
        let request = RenewRequest {
            namespace: lease.namespace.clone(),
            name: lease.name.clone(),
            token: lease.token,
            ttl: None,
            pgid: None,
        };
        let task = tokio::spawn(renew_loop(store, request, ttl, granted.sent + ttl, sender));
        KeepAlive { lost, task }
    }

    /// Resolves when the lease is lost, with the reason.
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
}

impl Drop for KeepAlive {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn renew_loop(
    store: Store,
    request: RenewRequest,
    ttl: Duration,
    mut expires: Instant,
    lost: watch::Sender<Option<Error>>,
) {
    let interval = ttl / 3;
    let mut next = Instant::now() + interval;
    loop {
        tokio::time::sleep_until(next.min(expires)).await;
        if Instant::now() >= expires {
            let _ = lost.send(Some(Error::new(
                ErrorKind::Lost,
                format!(
                    "lease {:?} expired before it could be renewed (store unreachable)",
                    request.name
                ),
            )));
            return;
        }
        let sent = Instant::now();
        match store.leases().renew(request.clone()).await {
            Ok(_) => {
                expires = sent + ttl;
                next = sent + interval;
            }
            Err(err) if err.kind == ErrorKind::Lost => {
                let _ = lost.send(Some(err));
                return;
            }
            Err(err) => {
                tracing::warn!(name = %request.name, error = %err, "lease renewal failed; retrying");
                next = Instant::now() + (interval / 4).max(Duration::from_millis(10));
            }
        }
    }
}
