//! The `governor` crate's GCRA rate limiter, as a single process would use it: one limiter
//! in memory, shared by the process's clients. It is the floor of what a decision can cost;
//! it is not shared with any other process, so a fleet of processes would each spend the
//! whole budget.

use std::num::NonZeroU32;
use std::sync::{Arc, OnceLock};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

pub struct GovernorClient {
    limiter: Arc<DefaultDirectRateLimiter>,
}

/// One limiter per process, whatever the number of clients in it.
fn shared() -> Arc<DefaultDirectRateLimiter> {
    static LIMITER: OnceLock<Arc<DefaultDirectRateLimiter>> = OnceLock::new();
    LIMITER
        .get_or_init(|| {
            // As generous as the other systems' buckets: every decision is a grant.
            let quota = Quota::per_second(NonZeroU32::MAX).allow_burst(NonZeroU32::MAX);
            Arc::new(RateLimiter::direct(quota))
        })
        .clone()
}

impl GovernorClient {
    pub fn new() -> GovernorClient {
        GovernorClient { limiter: shared() }
    }

    pub fn take(&self) -> bool {
        self.limiter.check().is_ok()
    }
}
