//! Rate-limit buckets. Rates in these tests are slow (a few tokens per hour) wherever a
//! count is asserted, so the refill during a test is a tiny fraction of a token.

use std::time::Duration;

use arbiter_core::limit::{BucketSpec, Observation, Priority, Rate, TakeRequest};
use arbiter_core::name::{BucketName, Namespace};
use arbiter_core::{Detail, ErrorKind};
use arbiter_store::Store;

use crate::{Harness, conformance, n, ns};

fn spec(rate: &str, burst: u64, reserve: u8, fair: bool) -> BucketSpec {
    BucketSpec {
        rate: Rate::parse(rate).unwrap(),
        burst,
        reserve_percent: reserve,
        fair,
    }
}

fn take(names: &[&str], cost: u64, priority: Priority, party: Option<&str>) -> TakeRequest {
    TakeRequest {
        namespace: ns(),
        buckets: names.iter().map(|name| n(name)).collect(),
        cost,
        priority,
        party: party.map(str::to_string),
    }
}

async fn tokens(store: &Store, name: &str) -> f64 {
    store.limits().show(&ns(), &n(name)).await.unwrap().tokens
}

/// Takes `cost` until refused; returns how many were granted (bounded by `max`).
async fn take_until_refused(store: &Store, request: &TakeRequest, max: usize) -> usize {
    for granted in 0..max {
        if !store.limits().take(request).await.unwrap().granted {
            return granted;
        }
    }
    panic!("more than {max} takes granted");
}

conformance!(define_show_and_list, |h: Harness| async move {
    let limits = h.store.limits();
    let a = limits
        .define(&ns(), &n("a"), &spec("5000/h", 5000, 20, false), false)
        .await
        .unwrap();
    assert_eq!((a.name.as_str(), a.tokens, a.spec.burst), ("a", 5000.0, 5000));
    assert_eq!(a.spec.rate.to_string(), "5000/h");
    limits
        .define(&ns(), &n("b/c"), &spec("10/s", 3, 0, true), false)
        .await
        .unwrap();
    let other = Namespace::parse("team-b").unwrap();
    limits
        .define(&other, &n("z"), &spec("1/s", 1, 0, false), false)
        .await
        .unwrap();
    let names = |list: Vec<arbiter_core::limit::BucketInfo>| list.into_iter().map(|b| b.name).collect::<Vec<_>>();
    assert_eq!(names(limits.list(&ns()).await.unwrap()), ["a", "b/c"]);
    assert_eq!(names(limits.list(&other).await.unwrap()), ["z"]);
    let shown = limits.show(&ns(), &n("b/c")).await.unwrap();
    assert_eq!(shown.spec, spec("10/s", 3, 0, true));
    assert!(shown.now >= a.now, "the store's clock");
    // Redefining keeps the tokens (up to the new burst); if_absent changes nothing.
    limits.take(&take(&["a"], 1000, Priority::Normal, None)).await.unwrap();
    let again = limits
        .define(&ns(), &n("a"), &spec("5000/h", 5000, 0, false), true)
        .await
        .unwrap();
    assert_eq!(again.spec.reserve_percent, 20, "if_absent leaves it as it is");
    assert!(again.tokens < 4002.0, "{}", again.tokens);
    let smaller = limits
        .define(&ns(), &n("a"), &spec("100/h", 100, 0, false), false)
        .await
        .unwrap();
    assert_eq!((smaller.spec.burst, smaller.tokens), (100, 100.0));
    let err = limits.show(&ns(), &n("missing")).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::NotFound);
    assert!(err.message.contains("no bucket \"missing\""), "{}", err.message);
    assert_eq!(
        limits.show(&other, &n("a")).await.unwrap_err().kind,
        ErrorKind::NotFound,
        "namespaces do not see each other's buckets"
    );
});

conformance!(takes_are_granted_then_wait, |h: Harness| async move {
    let limits = h.store.limits();
    limits
        .define(&ns(), &n("fast"), &spec("10/s", 2, 0, false), false)
        .await
        .unwrap();
    let one = take(&["fast"], 1, Priority::Normal, None);
    for _ in 0..2 {
        let decision = limits.take(&one).await.unwrap();
        assert!(decision.granted);
        assert_eq!(decision.wait, Duration::ZERO);
    }
    let refused = limits.take(&one).await.unwrap();
    assert!(!refused.granted);
    assert_eq!(refused.limiting.as_deref(), Some("fast"));
    // One token at 10/s: at most 100 ms away (the refill since the last take shortens it).
    assert!(
        refused.wait > Duration::ZERO && refused.wait <= Duration::from_millis(100),
        "{:?}",
        refused.wait
    );
    assert!(
        refused.refusal().starts_with("bucket \"fast\" has 0"),
        "{}",
        refused.refusal()
    );
    let err = refused.limited();
    assert_eq!(err.kind, ErrorKind::Limited);
    assert!(matches!(err.detail.as_deref(), Some(Detail::Limited { wait_ms }) if *wait_ms <= 100));
});

conformance!(a_multi_bucket_take_is_all_or_none, |h: Harness| async move {
    let limits = h.store.limits();
    limits
        .define(&ns(), &n("full"), &spec("10/h", 10, 0, false), false)
        .await
        .unwrap();
    limits
        .define(&ns(), &n("low"), &spec("10/h", 10, 0, false), false)
        .await
        .unwrap();
    assert!(
        limits
            .take(&take(&["low"], 8, Priority::Normal, None))
            .await
            .unwrap()
            .granted
    );
    // "low" has 2: a take of 3 from both is refused and charges neither.
    let refused = limits
        .take(&take(&["full", "low"], 3, Priority::Normal, None))
        .await
        .unwrap();
    assert!(!refused.granted);
    assert_eq!(refused.limiting.as_deref(), Some("low"));
    assert_eq!(refused.buckets.len(), 2);
    assert!(tokens(&h.store, "full").await >= 10.0 - 1e-9);
    assert!(tokens(&h.store, "low").await < 2.01);
    // 2 from both is granted and charges both.
    let granted = limits
        .take(&take(&["low", "full"], 2, Priority::Normal, None))
        .await
        .unwrap();
    assert!(granted.granted);
    assert_eq!(
        granted.buckets.iter().map(|b| b.name.as_str()).collect::<Vec<_>>(),
        ["low", "full"],
        "in the request's order"
    );
    assert!(tokens(&h.store, "full").await < 8.01);
    assert!(tokens(&h.store, "low").await < 0.01);
});

conformance!(
    concurrent_takes_from_two_handles_never_over_spend,
    |h: Harness| async move {
        for name in ["x", "y"] {
            h.store
                .limits()
                .define(&ns(), &n(name), &spec("1/h", 20, 0, false), false)
                .await
                .unwrap();
        }
        let second = h.reopen().await;
        let mut tasks = Vec::new();
        for i in 0..8 {
            let store = if i % 2 == 0 { h.store.clone() } else { second.clone() };
            // Half take "x,y", half "y,x": opposite orders never deadlock.
            let names: &[&str] = if i % 2 == 0 { &["x", "y"] } else { &["y", "x"] };
            let request = take(names, 1, Priority::Normal, None);
            tasks.push(tokio::spawn(async move {
                let mut granted = 0;
                for _ in 0..10 {
                    if store.limits().take(&request).await.unwrap().granted {
                        granted += 1;
                    }
                }
                granted
            }));
        }
        let mut granted = 0;
        for task in tasks {
            granted += task.await.unwrap();
        }
        assert_eq!(granted, 20, "exactly the burst, from 80 tries");
        assert!(tokens(&h.store, "x").await < 1.0);
    }
);

conformance!(the_priority_reserve_holds, |h: Harness| async move {
    h.store
        .limits()
        .define(&ns(), &n("api"), &spec("10/h", 10, 20, false), false)
        .await
        .unwrap();
    let request = |priority| take(&["api"], 1, priority, None);
    // Background leaves 4, normal 2, interactive nothing.
    assert_eq!(
        take_until_refused(&h.store, &request(Priority::Background), 20).await,
        6
    );
    assert_eq!(take_until_refused(&h.store, &request(Priority::Normal), 20).await, 2);
    assert_eq!(
        take_until_refused(&h.store, &request(Priority::Interactive), 20).await,
        2
    );
});

conformance!(
    fair_share_keeps_a_greedy_party_from_starving_another,
    |h: Harness| async move {
        let limits = h.store.limits();
        limits
            .define(&ns(), &n("shared"), &spec("100/h", 100, 0, true), false)
            .await
            .unwrap();
        let by = |party, cost| take(&["shared"], cost, Priority::Normal, Some(party));
        // "modest" is active; "greedy" borrows freely while the bucket is not contended...
        assert!(limits.take(&by("modest", 1)).await.unwrap().granted);
        assert!(limits.take(&by("greedy", 40)).await.unwrap().granted);
        assert!(limits.take(&by("greedy", 10)).await.unwrap().granted);
        // ...but now (49 left, under half the burst) only its share, which it spent.
        let refused = limits.take(&by("greedy", 5)).await.unwrap();
        assert!(!refused.granted, "the greedy party waits for its share");
        assert!(refused.wait > Duration::from_secs(60), "{:?}", refused.wait);
        // The modest party still gets its share.
        for _ in 0..5 {
            assert!(limits.take(&by("modest", 5)).await.unwrap().granted);
        }
        // Without fairness the greedy party would have been served.
        limits
            .define(&ns(), &n("shared"), &spec("100/h", 100, 0, false), false)
            .await
            .unwrap();
        assert!(limits.take(&by("greedy", 5)).await.unwrap().granted);
    }
);

conformance!(observations_correct_and_freeze, |h: Harness| async move {
    let limits = h.store.limits();
    let name: BucketName = n("github/octo/core");
    limits
        .define(&ns(), &name, &spec("5000/h", 5000, 0, false), false)
        .await
        .unwrap();
    let now = limits.show(&ns(), &name).await.unwrap().now;
    let reset = now + 3_600_000;
    let observe = |remaining, reset_at| Observation {
        remaining: Some(remaining),
        reset_at: Some(reset_at),
        ..Observation::default()
    };
    // Down at once.
    let seen = limits.observe(&ns(), &name, &observe(4000, reset)).await.unwrap();
    assert_eq!(seen.tokens, 4000.0);
    // Never up within the window (5000/h refills ~1.4 a second meanwhile).
    let seen = limits.observe(&ns(), &name, &observe(4500, reset)).await.unwrap();
    assert!(seen.tokens < 4050.0, "{}", seen.tokens);
    // Up when the reset moved forward: a new window.
    let seen = limits
        .observe(&ns(), &name, &observe(4999, reset + 3_600_000))
        .await
        .unwrap();
    assert_eq!((seen.tokens, seen.reset_at), (4999.0, Some(reset + 3_600_000)));
    // A different limit replaces the burst and the rate.
    let seen = limits
        .observe(
            &ns(),
            &name,
            &Observation {
                limit: Some(15000),
                ..Observation::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        (seen.spec.burst, seen.spec.rate.to_string().as_str()),
        (15000, "15000/h")
    );
    // A hit freezes the bucket for everyone: even an interactive take of 1 waits.
    let frozen = limits
        .observe(
            &ns(),
            &name,
            &Observation {
                retry_after: Some(Duration::from_secs(30)),
                hit: true,
                ..Observation::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(frozen.tokens, 0.0);
    let until = frozen.frozen_until.expect("frozen");
    assert_eq!(until, frozen.now + 30_000);
    let other_handle = h.reopen().await;
    let refused = other_handle
        .limits()
        .take(&TakeRequest {
            buckets: vec![name.clone()],
            ..take(&[], 1, Priority::Interactive, None)
        })
        .await
        .unwrap();
    assert!(!refused.granted);
    assert!(refused.wait > Duration::from_secs(25), "{:?}", refused.wait);
    assert!(refused.refusal().contains("frozen"), "{}", refused.refusal());
    assert_eq!(limits.show(&ns(), &name).await.unwrap().frozen_until, Some(until));
});

conformance!(refunds_give_tokens_back, |h: Harness| async move {
    let limits = h.store.limits();
    for name in ["r", "s"] {
        limits
            .define(&ns(), &n(name), &spec("10/h", 10, 0, false), false)
            .await
            .unwrap();
    }
    assert!(
        limits
            .take(&take(&["r", "s"], 5, Priority::Normal, None))
            .await
            .unwrap()
            .granted
    );
    limits.refund(&ns(), &[n("r"), n("s")], 3).await.unwrap();
    let r = tokens(&h.store, "r").await;
    assert!((8.0..8.01).contains(&r), "{r}");
    limits.refund(&ns(), &[n("r")], 100).await.unwrap();
    assert_eq!(tokens(&h.store, "r").await, 10.0, "up to the burst");
    let err = limits.refund(&ns(), &[n("r"), n("nope")], 1).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::NotFound);
    assert!(err.message.contains("\"nope\""), "{}", err.message);
});

conformance!(counters_sum_over_sources, |h: Harness| async move {
    let limits = h.store.limits();
    let deltas = |pairs: &[(&str, i64)]| pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect::<Vec<_>>();
    limits
        .add_counters(
            &ns(),
            "github/octo",
            "host-a",
            &deltas(&[("upstream_calls", 3), ("cache_hits", 1)]),
        )
        .await
        .unwrap();
    limits
        .add_counters(
            &ns(),
            "github/octo",
            "host-b",
            &deltas(&[("upstream_calls", 2), ("upstream_calls", 5)]),
        )
        .await
        .unwrap();
    limits
        .add_counters(
            &ns(),
            "github/octo/loop/one",
            "host-a",
            &deltas(&[("upstream_calls", 4)]),
        )
        .await
        .unwrap();
    limits
        .add_counters(&ns(), "github/other", "host-a", &deltas(&[("limited", 1)]))
        .await
        .unwrap();
    limits.add_counters(&ns(), "github/octo", "host-a", &[]).await.unwrap();
    let seen = |list: Vec<arbiter_core::limit::Counter>| {
        list.into_iter().map(|c| (c.scope, c.name, c.value)).collect::<Vec<_>>()
    };
    assert_eq!(
        seen(limits.counters(&ns(), "github/octo").await.unwrap()),
        [
            ("github/octo".into(), "cache_hits".into(), 1),
            ("github/octo".into(), "upstream_calls".into(), 10),
            ("github/octo/loop/one".into(), "upstream_calls".into(), 4),
        ]
    );
    assert_eq!(limits.counters(&ns(), "").await.unwrap().len(), 4);
    assert!(
        limits
            .counters(&Namespace::parse("x").unwrap(), "")
            .await
            .unwrap()
            .is_empty()
    );
    let err = limits
        .add_counters(&ns(), "bad scope", "host-a", &deltas(&[("x", 1)]))
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::BadInput);
    assert!(err.message.contains("counter scope"), "{}", err.message);
});

conformance!(bad_input_and_unknown_buckets_change_nothing, |h: Harness| async move {
    let limits = h.store.limits();
    limits
        .define(&ns(), &n("a"), &spec("10/h", 10, 0, false), false)
        .await
        .unwrap();
    let err = limits
        .take(&take(&["a", "missing"], 1, Priority::Normal, None))
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::NotFound);
    assert!(err.message.contains("no bucket \"missing\""), "{}", err.message);
    let err = limits
        .take(&take(&["a"], 11, Priority::Normal, None))
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::BadInput);
    assert!(err.message.contains("burst 10"), "{}", err.message);
    for bad in [
        take(&["a", "a"], 1, Priority::Normal, None),
        take(&["a"], 0, Priority::Normal, None),
        take(&[], 1, Priority::Normal, None),
        take(&["a"], 1, Priority::Normal, Some("")),
    ] {
        assert_eq!(
            limits.take(&bad).await.unwrap_err().kind,
            ErrorKind::BadInput,
            "{bad:?}"
        );
    }
    assert_eq!(tokens(&h.store, "a").await, 10.0, "nothing was charged");
    let err = limits
        .define(&ns(), &n("b"), &spec("10/h", 0, 0, false), false)
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::BadInput);
    assert!(err.message.contains("invalid burst 0"), "{}", err.message);
    let err = limits
        .define(&ns(), &n("b"), &spec("10/h", 1, 101, false), false)
        .await
        .unwrap_err();
    assert!(err.message.contains("invalid reserve 101%"), "{}", err.message);
    assert_eq!(limits.list(&ns()).await.unwrap().len(), 1, "no bucket was created");
    let err = limits
        .observe(&ns(), &n("missing"), &Observation::default())
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::NotFound);
});

// A refund naming a bucket twice gave it back twice on SQLite and failed `NotFound` on
// PostgreSQL; a cost of 0 or above any bucket's reach was taken as it came. Both backends
// now refuse them as a take does, changing nothing.
conformance!(a_bad_refund_changes_nothing, |h: Harness| async move {
    let limits = h.store.limits();
    limits
        .define(&ns(), &n("f"), &spec("1/h", 10, 0, false), false)
        .await
        .unwrap();
    assert!(
        limits
            .take(&take(&["f"], 6, Priority::Normal, None))
            .await
            .unwrap()
            .granted
    );
    for (names, cost, why) in [
        (vec![n("f"), n("f")], 2, "named twice in one refund"),
        (vec![], 2, "names no bucket"),
        (vec![n("f")], 0, "invalid cost 0"),
        (vec![n("f")], u64::MAX, "invalid cost"),
    ] {
        let err = limits.refund(&ns(), &names, cost).await.unwrap_err();
        assert_eq!(err.kind, ErrorKind::BadInput, "{names:?} {cost}");
        assert!(err.message.contains(why), "{}", err.message);
    }
    let left = tokens(&h.store, "f").await;
    assert!((4.0..4.01).contains(&left), "nothing given back: {left}");
});

/// Two hosts define the same new bucket `if_absent` at once (every proxy does, on first use
/// of an identity). On PostgreSQL both saw no row; the second's upsert then overwrote the
/// first's committed bucket, refilling whatever had been spent from it. Reproduced with a
/// raw connection holding an uncommitted insert of a spent bucket while the store's define
/// runs: once it commits, the define must leave that bucket as it is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_define_if_absent_racing_a_creation_leaves_the_bucket_on_postgres() {
    let Some(url) = arbiter_testkit::postgres_url("define_if_absent_race").await else {
        return;
    };
    let store = Harness::open(&url).await.store;
    let schema = url.rsplit_once("?schema=").expect("a schema").1.to_string();
    let (client, connection) = tokio_postgres::connect(&arbiter_testkit::postgres_server(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    // Another host's define, not committed yet, of a bucket already spent to 0.
    client
        .batch_execute(&format!(
            "SET search_path = {schema}; BEGIN;
             INSERT INTO limit_buckets (namespace, name, rate_amount, rate_per_ms, burst, reserve_percent,
                                        fair, tokens, updated_at, frozen_until, reset_at)
             VALUES ('{}', 'race', 1, 3600000, 100, 0, false, 0, {}, NULL, NULL);",
            ns(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis()
        ))
        .await
        .unwrap();
    let definer = {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .limits()
                .define(&ns(), &n("race"), &spec("1/h", 100, 0, false), true)
                .await
        })
    };
    // The define waits on the uncommitted row (seen as a lock wait on the server).
    let waiting = "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'
                   AND query LIKE 'INSERT INTO limit_buckets%'";
    for _ in 0..500 {
        let row = client.query_one(waiting, &[]).await.unwrap();
        if row.get::<_, i64>(0) > 0 || definer.is_finished() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    client.batch_execute("COMMIT").await.unwrap();
    let defined = definer.await.unwrap().unwrap();
    assert!(
        defined.tokens < 0.5,
        "the define answered a refilled bucket: {defined:?}"
    );
    let left = tokens(&store, "race").await;
    assert!(left < 0.5, "the racing define refilled the spent bucket to {left}");
}
