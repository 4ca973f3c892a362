//! Taking from rate-limit buckets: waiting for a grant ([`take`]) and the fast path for
//! frequent decisions ([`Permits`]).
//!
//! The store never sleeps: a refused take answers the wait after which it would be granted
//! (computed from the buckets' rates, or their freeze). [`take`] sleeps that long (plus a
//! little jitter, so waiters do not all come back at once) and asks again, failing at once
//! with [`ErrorKind::Limited`](arbiter_core::ErrorKind::Limited) when the wait needed is
//! longer than what is left of the caller's `max_wait`.
//!
//! [`Permits`] saves a store round trip per decision when decisions are frequent: it takes
//! a batch of tokens from the store and hands them out locally. The batch starts at 1 and
//! doubles whenever the last batch was used up within one store round trip (callers come
//! faster than the store answers), halves when the demand is slower than four round trips,
//! and is at most 5% of the smallest burst of its buckets (so the permits a process holds
//! are a small part of any bucket). A batch the store refuses is not asked again: the take
//! falls back to what the caller needs, and the batch to 1. Permits are only ever handed
//! out of what the store granted, so the fleet never spends more than the buckets allow;
//! the ones left unused for a second are given back ([`LimitStore::refund`]), as are those
//! left at [`Permits::close`]. The store is asked by a task of its own, so a caller dropped
//! meanwhile (cancelled) loses nothing: what the store granted stays held. Callers queued
//! when the store failed to answer share that failure instead of each waiting out a
//! deadline in turn.
//!
//! [`LimitStore::refund`]: arbiter_store::LimitStore::refund

use std::sync::Arc;
use std::time::Duration;

use arbiter_core::limit::{Priority, TakeDecision, TakeRequest};
use arbiter_core::name::{BucketName, Namespace};
use arbiter_core::{ErrorKind, Result};
use arbiter_store::Store;
use tokio::time::Instant;

/// How long permits may sit unused in a process before they are given back.
pub const PERMIT_IDLE: Duration = Duration::from_secs(1);
/// The largest batch, as a share of the smallest burst: 1/20 (5%).
const MAX_BATCH_SHARE: u64 = 20;

/// Takes `request.cost` from every bucket the request names, waiting until the buckets
/// allow it. Fails at once with `Limited` (its detail: the wait needed) when that wait is
/// longer than what is left of `max_wait`; `Duration::ZERO` tries once.
pub async fn take(store: &Store, request: TakeRequest, max_wait: Duration) -> Result<TakeDecision> {
    let deadline = deadline_after(max_wait);
    loop {
        let decision = store.limits().take(&request).await?;
        if decision.granted {
            return Ok(decision);
        }
        wait_or_fail(&decision, deadline).await?;
    }
}

/// When a wait of `max_wait` from now ends; `Duration::MAX` (or anything past what an
/// `Instant` holds) is a century: as long as it takes.
fn deadline_after(max_wait: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(max_wait)
        .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 86_400))
}

/// Sleeps the wait a refused take needs (with jitter, never past `deadline`), or fails with
/// `Limited` when it is longer than what is left.
async fn wait_or_fail(decision: &TakeDecision, deadline: Instant) -> Result<()> {
    let left = deadline.saturating_duration_since(Instant::now());
    if decision.wait > left {
        return Err(decision.limited());
    }
    tokio::time::sleep((decision.wait + jitter(decision.wait)).min(left)).await;
    Ok(())
}

/// Up to a tenth of the wait, at most 20 ms.
fn jitter(wait: Duration) -> Duration {
    let most = (wait.as_millis() as u64 / 10).clamp(1, 20);
    Duration::from_millis(fastrand::u64(0..=most))
}

/// The fast path: permits taken from the store in batches and handed out locally (see the
/// module docs). Share one per process and set of buckets (it is `Send + Sync`; callers
/// take through `&self`).
pub struct Permits {
    shared: Arc<Shared>,
}

struct Shared {
    store: Store,
    namespace: Namespace,
    buckets: Vec<BucketName>,
    priority: Priority,
    local: tokio::sync::Mutex<Local>,
}

struct Local {
    /// Permits taken from the store and not handed out yet.
    available: u64,
    /// How many to take from the store next time.
    batch: u64,
    /// 5% of the smallest burst (known after the first answer).
    max_batch: u64,
    /// When the last batch arrived, and how long the store took to answer it.
    last_fetch: Option<(Instant, Duration)>,
    last_used: Instant,
    /// Whether a task will give back idle permits.
    reaper: bool,
    /// When the store last failed to answer, and how.
    unavailable: Option<(Instant, arbiter_core::Error)>,
    closed: bool,
    /// Totals: taken from the store, handed out, given back.
    stats: PermitStats,
}

/// What a [`Permits`] did so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PermitStats {
    /// Tokens the store granted it.
    pub taken: u64,
    /// Permits it handed out.
    pub handed_out: u64,
    /// Tokens it gave back.
    pub refunded: u64,
    /// Store round trips for takes.
    pub store_takes: u64,
}

impl Permits {
    pub fn new(store: Store, namespace: Namespace, buckets: Vec<BucketName>, priority: Priority) -> Self {
        Permits {
            shared: Arc::new(Shared {
                store,
                namespace,
                buckets,
                priority,
                local: tokio::sync::Mutex::new(Local {
                    available: 0,
                    batch: 1,
                    max_batch: 1,
                    last_fetch: None,
                    last_used: Instant::now(),
                    reaper: false,
                    unavailable: None,
                    closed: false,
                    stats: PermitStats::default(),
                }),
            }),
        }
    }

    /// Takes `cost` permits: from those held, or from the store (a batch), waiting as
    /// [`take`] does — `Limited` when the wait needed exceeds what is left of `max_wait`.
    ///
    /// Cancel-safe: the store is asked by a task of its own, which finishes even if this
    /// call is dropped (a request whose client went away), so what the store granted is
    /// kept for the next caller or given back, never lost.
    pub async fn take(&self, cost: u64, max_wait: Duration) -> Result<()> {
        if cost == 0 {
            return Err(arbiter_core::Error::bad_input(
                "invalid cost 0: expected at least 1 permit",
            ));
        }
        let deadline = deadline_after(max_wait);
        loop {
            let asked = Instant::now();
            {
                // The fast path: no store call, nothing to cancel.
                let mut local = self.shared.local.lock().await;
                if local.closed {
                    return Err(closed());
                }
                if local.available >= cost && !local.idle() {
                    local.hand_out(cost);
                    return Ok(());
                }
            }
            let (answer, answered) = tokio::sync::oneshot::channel();
            tokio::spawn(self.shared.clone().serve(cost, asked, answer));
            let refused = answered
                .await
                .map_err(|_| arbiter_core::Error::internal("the permit task ended without an answer"))??;
            match refused {
                None => return Ok(()),
                // Not under the lock: others may still hand out what is held.
                Some(refused) => wait_or_fail(&refused, deadline).await?,
            }
        }
    }

    /// The permits held now (taken from the store, not handed out).
    pub async fn held(&self) -> u64 {
        self.shared.local.lock().await.available
    }

    /// What it did so far.
    pub async fn stats(&self) -> PermitStats {
        self.shared.local.lock().await.stats
    }

    /// Gives back the permits not handed out.
    pub async fn close(self) -> Result<()> {
        let mut local = self.shared.local.lock().await;
        local.closed = true;
        self.shared.give_back(&mut local).await
    }
}

fn closed() -> arbiter_core::Error {
    arbiter_core::Error::bad_input("these permits were closed")
}

impl Local {
    fn hand_out(&mut self, cost: u64) {
        self.available -= cost;
        self.stats.handed_out += cost;
        self.last_used = Instant::now();
    }

    /// Takes back permits handed out to a caller that was gone before it heard of them.
    fn take_back(&mut self, cost: u64) {
        self.available += cost;
        self.stats.handed_out -= cost;
    }

    /// Whether the held permits sat unused long enough to be given back.
    fn idle(&self) -> bool {
        self.available > 0 && self.last_used.elapsed() >= PERMIT_IDLE
    }
}

/// What a take's task answers: handed out (`None`), or the store's refusal.
type Served = Result<Option<TakeDecision>>;

impl Shared {
    /// The part of a take that calls the store, in a task of its own (see [`Permits::take`]):
    /// gives back idle permits, hands out from what is held or from a new batch, and answers
    /// on `answer`. If the caller is gone by then, what it was handed goes back to the held
    /// permits. A caller that `asked` before the store last failed to answer shares that
    /// failure rather than ask again: behind a stalled store, queued callers would otherwise
    /// each wait out a deadline in turn.
    async fn serve(self: Arc<Self>, cost: u64, asked: Instant, answer: tokio::sync::oneshot::Sender<Served>) {
        let mut local = self.local.lock().await;
        let served = match &local.unavailable {
            Some((at, failure)) if *at >= asked => Err(failure.clone()),
            _ => self.serve_locked(&mut local, cost).await,
        };
        if let Err(e) = &served
            && e.kind == ErrorKind::Unavailable
        {
            local.unavailable = Some((Instant::now(), e.clone()));
        }
        let handed = matches!(served, Ok(None));
        if answer.send(served).is_err() && handed {
            local.take_back(cost);
        }
        self.start_reaper(&mut local);
    }

    async fn serve_locked(&self, local: &mut Local, cost: u64) -> Served {
        if local.closed {
            return Err(closed());
        }
        self.expire(local).await;
        if local.available < cost
            && let Some(refused) = self.fetch(local, cost).await?
        {
            return Ok(Some(refused));
        }
        local.hand_out(cost);
        Ok(None)
    }

    /// Gives back permits unused for [`PERMIT_IDLE`].
    async fn expire(&self, local: &mut Local) {
        if local.idle()
            && let Err(e) = self.give_back(local).await
        {
            tracing::warn!("could not give back idle permits: {e}");
        }
    }

    async fn give_back(&self, local: &mut Local) -> Result<()> {
        if local.available == 0 {
            return Ok(());
        }
        let count = local.available;
        // Dropped from the count first: a refund that fails leaves them spent, never
        // handed out twice.
        local.available = 0;
        self.store
            .limits()
            .refund(&self.namespace, &self.buckets, count)
            .await?;
        local.stats.refunded += count;
        Ok(())
    }

    /// Takes a batch (at least what `cost` still needs) from the store. `None`: granted and
    /// added to what is held; else the refused decision.
    async fn fetch(&self, local: &mut Local, cost: u64) -> Result<Option<TakeDecision>> {
        let needed = cost - local.available;
        if let Some((at, round_trip)) = local.last_fetch {
            let since = at.elapsed();
            if since < round_trip {
                local.batch = (local.batch * 2).min(local.max_batch);
            } else if since > round_trip * 4 {
                local.batch = (local.batch / 2).max(1);
            }
        }
        let mut want = needed.max(local.batch);
        loop {
            let request = TakeRequest {
                namespace: self.namespace.clone(),
                buckets: self.buckets.clone(),
                cost: want,
                priority: self.priority,
                party: None,
            };
            let sent = Instant::now();
            let decision = self.store.limits().take(&request).await?;
            local.stats.store_takes += 1;
            if let Some(smallest) = decision.buckets.iter().map(|b| b.spec.burst).min() {
                local.max_batch = (smallest / MAX_BATCH_SHARE).max(1);
            }
            if decision.granted {
                local.available += want;
                local.stats.taken += want;
                local.last_fetch = Some((Instant::now(), sent.elapsed()));
                return Ok(None);
            }
            local.batch = 1;
            if want == needed {
                return Ok(Some(decision));
            }
            want = needed;
        }
    }

    /// Starts the task that gives back permits left idle, unless one runs.
    fn start_reaper(self: &Arc<Self>, local: &mut Local) {
        if local.reaper || local.available == 0 {
            return;
        }
        local.reaper = true;
        let shared = self.clone();
        tokio::spawn(async move {
            loop {
                let idle_at = shared.local.lock().await.last_used + PERMIT_IDLE;
                tokio::time::sleep_until(idle_at).await;
                let mut local = shared.local.lock().await;
                if local.closed || local.available == 0 {
                    local.reaper = false;
                    return;
                }
                if local.idle() {
                    shared.expire(&mut local).await;
                    local.reaper = false;
                    return;
                }
            }
        });
    }
}
