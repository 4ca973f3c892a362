//! Bounded waits for tests: look, and look again a little later, until something holds or
//! the bound passes. The first looks come soon (after 1 ms, then twice as long each time, up
//! to [`POLL`]), so what happens at once is seen at once; the bound is never asserted as a
//! duration.

use std::future::Future;
use std::time::{Duration, Instant};

/// The longest pause between two looks.
pub const POLL: Duration = Duration::from_millis(20);

/// When to look next: pauses from 1 ms doubling to [`POLL`], until a deadline.
struct Backoff {
    deadline: Instant,
    pause: Duration,
}

impl Backoff {
    fn new(limit: Duration) -> Backoff {
        Backoff {
            deadline: Instant::now() + limit,
            pause: Duration::from_millis(1),
        }
    }

    /// The pause before the next look; `None` once the deadline has passed.
    fn next(&mut self) -> Option<Duration> {
        if Instant::now() >= self.deadline {
            return None;
        }
        let pause = self.pause;
        self.pause = (self.pause * 2).min(POLL);
        Some(pause)
    }
}

/// Looks at `check` until it returns `Some`, for at most `limit`; `None` when the time runs
/// out.
pub fn poll_for<T>(limit: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let mut backoff = Backoff::new(limit);
    loop {
        if let Some(value) = check() {
            return Some(value);
        }
        std::thread::sleep(backoff.next()?);
    }
}

/// Looks at `check` until it returns `Some`, for at most `limit`; panics naming `what` when
/// the time runs out.
#[track_caller]
pub fn eventually<T>(limit: Duration, what: &str, check: impl FnMut() -> Option<T>) -> T {
    match poll_for(limit, check) {
        Some(value) => value,
        None => panic!("timed out after {limit:?} waiting for {what}"),
    }
}

/// [`poll_for`] for async tests: `check` is awaited, and the pauses do not block the
/// runtime.
pub async fn poll_for_async<T, F: Future<Output = Option<T>>>(
    limit: Duration,
    mut check: impl FnMut() -> F,
) -> Option<T> {
    let mut backoff = Backoff::new(limit);
    loop {
        if let Some(value) = check().await {
            return Some(value);
        }
        tokio::time::sleep(backoff.next()?).await;
    }
}

/// [`eventually`] for async tests: `check` is awaited, and the pauses do not block the
/// runtime.
pub async fn eventually_async<T, F: Future<Output = Option<T>>>(
    limit: Duration,
    what: &str,
    check: impl FnMut() -> F,
) -> T {
    match poll_for_async(limit, check).await {
        Some(value) => value,
        None => panic!("timed out after {limit:?} waiting for {what}"),
    }
}
