//! Taking from buckets through the client: waiting for a grant, and `Permits`, the batched
//! fast path. Counts are asserted on slow buckets (a token an hour), where the refill during
//! a test is a tiny fraction of a token.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use arbiter_client::limit::{Permits, take};
use arbiter_core::limit::{BucketSpec, Priority, Rate, TakeRequest};
use arbiter_core::{Detail, ErrorKind};
use arbiter_store::Store;
use arbiter_testkit::each_backend;
use arbiter_testkit::wait::eventually_async;

use super::{n, ns, open};

/// A bound for waits that end much sooner; never asserted as a duration.
const BOUND: Duration = Duration::from_secs(60);

async fn bucket(store: &Store, name: &str, rate: &str, burst: u64) {
    let spec = BucketSpec {
        rate: Rate::parse(rate).unwrap(),
        burst,
        reserve_percent: 0,
        fair: false,
    };
    store.limits().define(&ns(), &n(name), &spec, false).await.unwrap();
}

fn request(names: &[&str], cost: u64) -> TakeRequest {
    TakeRequest {
        namespace: ns(),
        buckets: names.iter().map(|name| n(name)).collect(),
        cost,
        priority: Priority::Normal,
        party: None,
    }
}

async fn tokens(store: &Store, name: &str) -> f64 {
    store.limits().show(&ns(), &n(name)).await.unwrap().tokens
}

each_backend!(take_waits_for_the_refill_or_fails_at_once, |url: String| async move {
    let store = open(&url).await;
    bucket(&store, "fast", "20/s", 1).await;
    bucket(&store, "slow", "1/h", 1).await;
    assert!(
        take(&store, request(&["fast"], 1), Duration::ZERO)
            .await
            .unwrap()
            .granted
    );
    // Empty now: the next one waits for the refill (~50 ms) and is granted.
    let decision = take(&store, request(&["fast"], 1), BOUND).await.unwrap();
    assert!(decision.granted);
    // A wait longer than what is left fails at once, with the wait needed as data.
    assert!(
        take(&store, request(&["slow"], 1), Duration::ZERO)
            .await
            .unwrap()
            .granted
    );
    let err = take(&store, request(&["fast", "slow"], 1), Duration::from_secs(1))
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Limited);
    assert!(
        err.message
            .starts_with("not granted: bucket \"slow\" has 0 of 1 tokens; wait"),
        "{}",
        err.message
    );
    match err.detail.as_deref() {
        Some(Detail::Limited { wait_ms }) => assert!(*wait_ms > 3_000_000, "{wait_ms}"),
        other => panic!("expected a Limited detail, got {other:?}"),
    }
});

each_backend!(
    permits_never_hand_out_more_than_the_store_granted,
    |url: String| async move {
        let store = open(&url).await;
        bucket(&store, "a", "1/h", 100).await;
        bucket(&store, "b", "1/h", 1000).await;
        // Two processes' worth of permits (two handles), many tasks each, until the smaller
        // bucket runs dry.
        let second = open(&url).await;
        let granted = Arc::new(AtomicU64::new(0));
        let mut all = Vec::new();
        for handle in [store.clone(), second] {
            let permits = Arc::new(Permits::new(handle, ns(), vec![n("a"), n("b")], Priority::Normal));
            let mut tasks = Vec::new();
            for _ in 0..10 {
                let (permits, granted) = (permits.clone(), granted.clone());
                tasks.push(tokio::spawn(async move {
                    for _ in 0..20 {
                        match permits.take(1, Duration::ZERO).await {
                            Ok(()) => {
                                granted.fetch_add(1, Ordering::SeqCst);
                            }
                            Err(e) => assert_eq!(e.kind, ErrorKind::Limited, "{e}"),
                        }
                    }
                }));
            }
            all.push((permits, tasks));
        }
        let mut handed_out = 0;
        let mut taken = 0;
        for (permits, tasks) in all {
            for task in tasks {
                task.await.unwrap();
            }
            let stats = permits.stats().await;
            assert!(stats.handed_out <= stats.taken, "{stats:?}");
            handed_out += stats.handed_out;
            taken += stats.taken - stats.refunded;
            Arc::into_inner(permits)
                .expect("the tasks ended")
                .close()
                .await
                .unwrap();
        }
        assert_eq!(granted.load(Ordering::SeqCst), handed_out);
        // Never more than the smaller bucket held; none lost: what was not handed out went back
        // (permits a handle still held when its callers stopped were given back on close).
        assert!(handed_out <= 100, "{handed_out}");
        assert!(taken >= handed_out);
        let left = tokens(&store, "a").await;
        assert!(
            (left - (100 - handed_out) as f64).abs() < 0.5,
            "{left} left after handing out {handed_out}"
        );
        assert!(handed_out > 0);
    }
);

each_backend!(permits_give_back_what_they_hold, |url: String| async move {
    let store = open(&url).await;
    bucket(&store, "big", "1/h", 10_000).await;
    let permits = Arc::new(Permits::new(store.clone(), ns(), vec![n("big")], Priority::Interactive));
    // Many callers at once, so the batch grows and permits are held between takes.
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let permits = permits.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..25 {
                permits.take(1, BOUND).await.unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let stats = permits.stats().await;
    assert_eq!(stats.handed_out, 500);
    assert!(stats.taken >= 500 && stats.taken <= 500 + 500, "{stats:?}");
    // Unused permits go back after a second idle; what the store holds then is the burst
    // less exactly what was handed out.
    eventually_async(BOUND, "idle permits given back", || {
        let permits = permits.clone();
        async move { (permits.held().await == 0).then_some(()) }
    })
    .await;
    let left = tokens(&store, "big").await;
    assert!((left - 9_500.0).abs() < 0.5, "{left}");
    // Held ones go back on close too.
    permits.take(1, BOUND).await.unwrap();
    Arc::into_inner(permits).unwrap().close().await.unwrap();
    let left = tokens(&store, "big").await;
    assert!((left - 9_499.0).abs() < 0.5, "{left}");
});

/// A caller dropped while its batch was being taken from the store (a cancelled request:
/// the proxy's client went away) lost the batch: the store's transaction went through, and
/// the `Permits` never heard of it. Reproduced on SQLite, where a second connection holds
/// the write lock so the take waits inside the store while its caller is cancelled; once
/// the lock goes, the take commits. Every token must come back: held for the next caller,
/// then given back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_take_loses_no_permit() {
    let file = arbiter_testkit::TempSqlite::new();
    let store = open(&file.url()).await;
    bucket(&store, "c", "1/h", 100).await;
    let permits = Arc::new(Permits::new(store.clone(), ns(), vec![n("c")], Priority::Interactive));
    let lock = rusqlite::Connection::open(file.path()).unwrap();
    lock.execute_batch("BEGIN IMMEDIATE").unwrap();
    let caller = {
        let permits = permits.clone();
        tokio::spawn(async move { permits.take(1, BOUND).await })
    };
    // Nothing but the store can keep it this long: it waits there, and is cancelled.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!caller.is_finished(), "the take waits for the write lock");
    caller.abort();
    assert!(caller.await.unwrap_err().is_cancelled());
    lock.execute_batch("COMMIT").unwrap();
    // The store's transaction went through: the token left the bucket ...
    eventually_async(BOUND, "the cancelled take reached the store", || {
        let store = store.clone();
        async move { (tokens(&store, "c").await < 99.5).then_some(()) }
    })
    .await;
    // ... and comes back: nobody was handed it.
    eventually_async(BOUND, "the cancelled caller's permit given back", || {
        let store = store.clone();
        async move { (tokens(&store, "c").await > 99.5).then_some(()) }
    })
    .await;
    let stats = permits.stats().await;
    assert_eq!((stats.handed_out, stats.taken, stats.refunded), (0, 1, 1), "{stats:?}");
    Arc::into_inner(permits).unwrap().close().await.unwrap();
}

/// Callers of one `Permits` queue behind the task that asks the store. When the store's link
/// stalls, every one of them used to ask again in turn once the one ahead had failed, each
/// waiting out a statement deadline or a connect timeout: the 20th caller waited 20 of them,
/// whatever its `max_wait`. Callers that were queued when a store call failed now share its
/// failure. A liveness bound with a wide margin (each store call here gives up within about
/// a second; 20 in turn take 20 s or more), not a measurement.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_queued_behind_a_stalled_store_fail_together() {
    let Some(url) = arbiter_testkit::postgres_url("permits_stalled_store").await else {
        return;
    };
    let setup = open(&url).await;
    bucket(&setup, "s", "1/h", 1000).await;
    let proxy = arbiter_testkit::net::StallProxy::start(arbiter_testkit::net::postgres_server_addr(&url));
    let stalled = open(&format!(
        "{}&statement_timeout=1s&connect_timeout=1",
        proxy.postgres_url(&url)
    ))
    .await;
    let permits = Arc::new(Permits::new(stalled, ns(), vec![n("s")], Priority::Interactive));
    permits.take(1, Duration::ZERO).await.unwrap();
    proxy.freeze();
    let mut callers = Vec::new();
    for _ in 0..20 {
        let permits = permits.clone();
        // More than one batch holds, so each needs the store.
        callers.push(tokio::spawn(async move { permits.take(100, Duration::ZERO).await }));
    }
    let all = async {
        let mut errors = Vec::new();
        for caller in callers {
            errors.push(caller.await.unwrap().unwrap_err());
        }
        errors
    };
    let errors = tokio::time::timeout(Duration::from_secs(15), all)
        .await
        .expect("every caller of a stalled store hears of it within a few deadlines");
    for err in errors {
        assert_eq!(err.kind, ErrorKind::Unavailable, "{err}");
    }
    proxy.resume();
}

// `Duration::MAX` is how a caller says "wait as long as it takes": the deadline
// `now + max_wait` overflowed and panicked before the store was even asked.
each_backend!(an_unbounded_wait_is_allowed, |url: String| async move {
    let store = open(&url).await;
    bucket(&store, "u", "20/s", 1).await;
    assert!(take(&store, request(&["u"], 1), Duration::MAX).await.unwrap().granted);
    // Empty now: it waits for the refill, as long as that takes.
    assert!(take(&store, request(&["u"], 1), Duration::MAX).await.unwrap().granted);
    let permits = Permits::new(store.clone(), ns(), vec![n("u")], Priority::Interactive);
    permits.take(1, Duration::MAX).await.unwrap();
    permits.close().await.unwrap();
});
