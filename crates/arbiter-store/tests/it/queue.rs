//! Work items: claim order, capabilities, idempotent pushes, fenced claims, expiry, dead
//! letters, delays, and concurrent claimers.

use std::collections::BTreeMap;
use std::time::Duration;

use arbiter_core::ErrorKind;
use arbiter_core::name::Capability;
use arbiter_core::queue::{
    AttemptOutcome, Claim, ClaimOutcome, ClaimRequest, Claimed, FailRequest, Item, ItemState, NewItem, NotBefore,
};
use arbiter_store::{Store, Topic};

use crate::{Harness, conformance, holder, n, ns};

fn caps(list: &[&str]) -> Vec<Capability> {
    list.iter().map(|c| n(c)).collect()
}

/// An item of `queue` with `body`, priority 0, no key, no requirements, 5 attempts.
fn item(queue: &str, body: &str) -> NewItem {
    NewItem::new(ns(), n(queue), body.into(), None, 0, vec![], None, 5).unwrap()
}

fn keyed(queue: &str, key: &str) -> NewItem {
    NewItem {
        key: Some(key.into()),
        ..item(queue, key)
    }
}

/// A worker's request on `queue` with capabilities `offered` and a 30 s lease.
fn request(queue: &str, agent: &str, offered: &[&str]) -> ClaimRequest {
    ClaimRequest {
        namespace: ns(),
        queue: n(queue),
        holder: holder(agent),
        capabilities: caps(offered),
        lease: Duration::from_secs(30),
    }
}

fn short(queue: &str, agent: &str, lease_ms: u64) -> ClaimRequest {
    ClaimRequest {
        lease: Duration::from_millis(lease_ms),
        ..request(queue, agent, &[])
    }
}

async fn claim(store: &Store, request: &ClaimRequest) -> Claim {
    match store.queue().claim(request).await.unwrap().outcome {
        ClaimOutcome::Claimed(claim) => claim,
        ClaimOutcome::Empty { .. } => panic!("expected a claim on {}", request.queue),
    }
}

/// An empty claim: the store's clock and `next_at`.
async fn empty(store: &Store, request: &ClaimRequest) -> (i64, Option<i64>) {
    match store.queue().claim(request).await.unwrap().outcome {
        ClaimOutcome::Empty { now, next_at } => (now, next_at),
        ClaimOutcome::Claimed(claim) => panic!("expected nothing to claim, got item {}", claim.id),
    }
}

async fn get(store: &Store, id: i64) -> Item {
    store.queue().show(&ns(), id).await.unwrap().item
}

fn failure(id: i64, token: i64, reason: &str, retry_in: Option<Duration>) -> FailRequest {
    FailRequest {
        namespace: ns(),
        id,
        token,
        reason: reason.into(),
        retry_in,
    }
}

conformance!(claims_go_by_priority_then_age, |h: Harness| async move {
    let q = h.store.queue();
    let mut pushed = vec![];
    for (body, priority) in [("low", 0), ("high-1", 5), ("high-2", 5), ("lowest", -3), ("low-2", 0)] {
        let new = NewItem {
            priority,
            ..item("jobs", body)
        };
        let p = q.push(&new).await.unwrap();
        assert!(p.created);
        assert_eq!(p.state, ItemState::Ready);
        pushed.push(p.id);
    }
    assert!(pushed.windows(2).all(|w| w[0] < w[1]), "ids increase: {pushed:?}");
    // Another queue's item is never given to this one.
    q.push(&NewItem {
        priority: 100,
        ..item("other", "elsewhere")
    })
    .await
    .unwrap();
    let worker = request("jobs", "w", &[]);
    let mut order = vec![];
    for _ in 0..5 {
        let c = claim(&h.store, &worker).await;
        assert_eq!((c.token, c.attempt, c.max_attempts), (1, 1, 5));
        assert_eq!(c.expires_at - c.claimed_at, 30_000);
        assert_eq!(c.lease_ms, 30_000);
        assert_eq!(c.holder, holder("w"));
        order.push(c.body);
    }
    assert_eq!(order, ["high-1", "high-2", "low", "low-2", "lowest"]);
    // Nothing left; the earliest claim to run out is when it may change.
    let (now, next_at) = empty(&h.store, &worker).await;
    let first = get(&h.store, pushed[1]).await;
    assert_eq!(first.state, ItemState::Claimed);
    assert_eq!(next_at, first.expires_at);
    assert!(next_at.unwrap() > now);
});

conformance!(requirements_must_all_be_offered, |h: Harness| async move {
    let q = h.store.queue();
    let gpu = q
        .push(&NewItem {
            requires: caps(&["gpu"]),
            ..item("build", "needs a gpu")
        })
        .await
        .unwrap();
    let both = q
        .push(&NewItem {
            requires: caps(&["gpu", "repo:web"]),
            ..item("build", "needs both")
        })
        .await
        .unwrap();
    // A worker without gpu gets nothing, and no time to wait for (nothing it could take).
    assert_eq!(empty(&h.store, &request("build", "plain", &[])).await.1, None);
    assert_eq!(empty(&h.store, &request("build", "web", &["repo:web"])).await.1, None);
    // gpu alone may take the first, not the second.
    let c = claim(&h.store, &request("build", "g", &["gpu", "windows"])).await;
    assert_eq!((c.id, c.requires.clone()), (gpu.id, caps(&["gpu"])));
    empty(&h.store, &request("build", "g", &["gpu", "windows"])).await;
    let c = claim(&h.store, &request("build", "gw", &["gpu", "repo:web", "windows"])).await;
    assert_eq!(c.id, both.id);
    // An item requiring nothing goes to anyone.
    let free = q.push(&item("build", "anyone")).await.unwrap();
    assert_eq!(claim(&h.store, &request("build", "plain", &[])).await.id, free.id);
});

conformance!(pushing_a_key_again_returns_the_first_item, |h: Harness| async move {
    let q = h.store.queue();
    let first = q
        .push(&keyed("issues", "https://github.com/o/r/issues/1"))
        .await
        .unwrap();
    assert!(first.created);
    let again = q
        .push(&keyed("issues", "https://github.com/o/r/issues/1"))
        .await
        .unwrap();
    assert_eq!(
        (again.id, again.created, again.state),
        (first.id, false, ItemState::Ready)
    );
    // Whatever its state now.
    let c = claim(&h.store, &request("issues", "w", &[])).await;
    assert_eq!(c.key.as_deref(), Some("https://github.com/o/r/issues/1"));
    q.done(&ns(), c.id, c.token, None).await.unwrap();
    let after = q
        .push(&keyed("issues", "https://github.com/o/r/issues/1"))
        .await
        .unwrap();
    assert_eq!(
        (after.id, after.created, after.state),
        (first.id, false, ItemState::Done)
    );
    // The same key in another queue, or another namespace, is another item.
    let other = q
        .push(&keyed("triage", "https://github.com/o/r/issues/1"))
        .await
        .unwrap();
    assert!(other.created && other.id != first.id);
    let elsewhere = q
        .push(&NewItem {
            namespace: n("team-b"),
            ..keyed("issues", "https://github.com/o/r/issues/1")
        })
        .await
        .unwrap();
    assert!(elsewhere.created);
    // Without a key every push is an item.
    let a = q.push(&item("issues", "x")).await.unwrap();
    let b = q.push(&item("issues", "x")).await.unwrap();
    assert!(a.created && b.created && a.id != b.id);
    assert_eq!(q.list(&ns(), Some(&n("issues")), None, 100).await.unwrap().len(), 3);
});

conformance!(concurrent_pushes_of_one_key_make_one_item, |h: Harness| async move {
    let mut tasks = vec![];
    for _ in 0..8 {
        let store = h.reopen().await;
        tasks.push(tokio::spawn(async move {
            let mut results = vec![];
            for _ in 0..5 {
                results.push(store.queue().push(&keyed("race", "the-key")).await.unwrap());
            }
            results
        }));
    }
    let mut results = vec![];
    for task in tasks {
        results.extend(task.await.unwrap());
    }
    assert_eq!(results.len(), 40);
    assert_eq!(results.iter().filter(|p| p.created).count(), 1, "{results:?}");
    assert!(results.iter().all(|p| p.id == results[0].id), "{results:?}");
    let items = h.store.queue().list(&ns(), Some(&n("race")), None, 100).await.unwrap();
    assert_eq!(items.len(), 1);
});

conformance!(stale_tokens_are_lost_and_change_nothing, |h: Harness| async move {
    let q = h.store.queue();
    let id = q.push(&item("stale", "work")).await.unwrap().id;
    let first = claim(&h.store, &short("stale", "slow", 200)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The claim ran out: the next claim ends it and takes the item with a larger token.
    let second = claim(&h.store, &request("stale", "fast", &[])).await;
    assert_eq!(second.id, id);
    assert!(second.token > first.token);
    assert_eq!(second.attempt, 2);
    let before = get(&h.store, id).await;
    // The paused worker can neither heartbeat, finish nor fail it.
    let lost = |e: arbiter_core::Error| {
        assert_eq!(e.kind, ErrorKind::Lost, "{e:?}");
        e.message
    };
    let message = lost(
        q.heartbeat(&ns(), id, first.token, Duration::from_secs(30), None)
            .await
            .unwrap_err(),
    );
    assert!(
        message.contains(&format!("claim token {} is stale", first.token)),
        "{message}"
    );
    lost(q.done(&ns(), id, first.token, Some("late")).await.unwrap_err());
    lost(q.fail(&failure(id, first.token, "late", None)).await.unwrap_err());
    // A token never given out.
    lost(q.done(&ns(), id, second.token + 5, None).await.unwrap_err());
    assert_eq!(get(&h.store, id).await, before, "refused calls change nothing");
    // Done once; done again is stale too, and so is a heartbeat.
    let done = q.done(&ns(), id, second.token, Some("ok")).await.unwrap();
    assert_eq!((done.state, done.result.as_deref()), (ItemState::Done, Some("ok")));
    assert_eq!(get(&h.store, id).await, done);
    lost(q.done(&ns(), id, second.token, Some("twice")).await.unwrap_err());
    lost(
        q.heartbeat(&ns(), id, second.token, Duration::from_secs(1), None)
            .await
            .unwrap_err(),
    );
    assert_eq!(get(&h.store, id).await, done);
    // An unknown id, or one of another namespace, is not found.
    let err = q.done(&ns(), id + 1000, 1, None).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::NotFound);
    assert_eq!(
        q.done(&n("team-b"), id, second.token, None).await.unwrap_err().kind,
        ErrorKind::NotFound
    );
    assert_eq!(q.show(&n("team-b"), id).await.unwrap_err().kind, ErrorKind::NotFound);
    // The attempts: the first expired, the second done.
    let info = q.show(&ns(), id).await.unwrap();
    let outcomes: Vec<_> = info.attempts.iter().map(|a| (a.attempt, a.token, a.outcome)).collect();
    assert_eq!(
        outcomes,
        [
            (1, first.token, Some(AttemptOutcome::Expired)),
            (2, second.token, Some(AttemptOutcome::Done))
        ]
    );
    assert_eq!(info.attempts[0].error.as_deref(), Some("claim expired"));
    assert_eq!(info.attempts[0].holder, holder("slow"));
    assert!(info.attempts.iter().all(|a| a.ended_at.is_some()));
});

conformance!(heartbeats_extend_the_claim, |h: Harness| async move {
    let q = h.store.queue();
    let id = q.push(&item("beat", "work")).await.unwrap().id;
    let c = claim(&h.store, &short("beat", "w", 1000)).await;
    let beat = q
        .heartbeat(&ns(), id, c.token, Duration::from_secs(30), Some(77))
        .await
        .unwrap();
    assert!(beat.expires_at.unwrap() >= c.expires_at);
    assert!(beat.expires_at.unwrap() - beat.updated_at == 30_000);
    assert_eq!(beat.holder.as_ref().unwrap().pgid, Some(77));
    assert_eq!(get(&h.store, id).await, beat);
    // Past the first lease the claim still holds: nobody else gets the item.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (_, next_at) = empty(&h.store, &request("beat", "other", &[])).await;
    assert_eq!(next_at, beat.expires_at);
    let done = q.done(&ns(), id, c.token, None).await.unwrap();
    assert_eq!(done.state, ItemState::Done);
    assert_eq!(done.holder, None);
    assert_eq!(done.expires_at, None);
    // A heartbeat without pgid keeps the holder as it was.
    let id = q.push(&item("beat", "more")).await.unwrap().id;
    let c = claim(&h.store, &request("beat", "w", &[])).await;
    let beat = q
        .heartbeat(&ns(), id, c.token, Duration::from_secs(5), None)
        .await
        .unwrap();
    assert_eq!(beat.holder, Some(holder("w")));
});

conformance!(
    an_expired_claim_returns_the_item_with_the_attempt_counted,
    |h: Harness| async move {
        let q = h.store.queue();
        let id = q.push(&item("exp", "work")).await.unwrap().id;
        let first = claim(&h.store, &short("exp", "dies", 150)).await;
        tokio::time::sleep(Duration::from_millis(250)).await;
        let (_, stats) = q.stats(&ns()).await.unwrap();
        assert_eq!((stats[0].claimed, stats[0].expired), (0, 1));
        let claimed = q.claim(&request("exp", "next", &[])).await.unwrap();
        assert_eq!(claimed.newly_dead, 0);
        let ClaimOutcome::Claimed(second) = claimed.outcome else {
            panic!("the expired item is claimable at once")
        };
        assert_eq!((second.id, second.attempt, second.token), (id, 2, first.token + 1));
        let item = get(&h.store, id).await;
        assert_eq!(item.last_error.as_deref(), Some("claim expired"));
        assert_eq!(item.holder, Some(holder("next")));
        assert_eq!(item.last_token, second.token);
    }
);

conformance!(items_die_after_their_last_attempt, |h: Harness| async move {
    let q = h.store.queue();
    let new = NewItem {
        max_attempts: 2,
        ..item("dlq", "flaky")
    };
    let id = q.push(&new).await.unwrap().id;
    // A failure with attempts left: ready again after retry_in.
    let c = claim(&h.store, &request("dlq", "w", &[])).await;
    let failed = q
        .fail(&failure(id, c.token, "boom 1", Some(Duration::ZERO)))
        .await
        .unwrap();
    assert_eq!((failed.state, failed.attempt), (ItemState::Ready, 1));
    assert_eq!(failed.last_error.as_deref(), Some("boom 1"));
    assert_eq!(get(&h.store, id).await, failed);
    // The last attempt's failure: dead.
    let c = claim(&h.store, &request("dlq", "w", &[])).await;
    assert_eq!((c.attempt, c.token), (2, 2));
    let dead = q.fail(&failure(id, c.token, "boom 2", None)).await.unwrap();
    assert_eq!(dead.state, ItemState::Dead);
    assert_eq!(dead.last_error.as_deref(), Some("boom 2"));
    empty(&h.store, &request("dlq", "w", &[])).await;
    let listed = q.list(&ns(), None, Some(ItemState::Dead), 10).await.unwrap();
    assert_eq!(listed, std::slice::from_ref(&dead));
    // Its alert is owed until marked.
    assert_eq!(q.unalerted_dead(&ns(), 10).await.unwrap(), std::slice::from_ref(&dead));
    assert!(q.unalerted_dead(&n("team-b"), 10).await.unwrap().is_empty());
    q.mark_alerted(&ns(), &[id]).await.unwrap();
    assert!(q.unalerted_dead(&ns(), 10).await.unwrap().is_empty());
    // Retry: ready with fresh attempts, tokens keep counting, the last error kept.
    let retried = q.retry(&ns(), id).await.unwrap();
    assert_eq!((retried.state, retried.attempt), (ItemState::Ready, 0));
    assert_eq!(retried.last_error.as_deref(), Some("boom 2"));
    assert_eq!(get(&h.store, id).await, retried);
    let c = claim(&h.store, &request("dlq", "w", &[])).await;
    assert_eq!((c.attempt, c.token), (1, 3));
    // Only dead or cancelled items can be retried.
    let err = q.retry(&ns(), id).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Conflict);
    assert_eq!(
        err.message,
        format!("item {id} is claimed; only dead or cancelled items can be retried")
    );
    assert_eq!(q.retry(&ns(), id + 1000).await.unwrap_err().kind, ErrorKind::NotFound);
    // A failure without retry_in backs off by the core's rule (10 s after attempt 1).
    let backed = q.fail(&failure(id, c.token, "again", None)).await.unwrap();
    assert_eq!(backed.state, ItemState::Ready);
    assert_eq!(backed.not_before - backed.updated_at, 10_000);
    let (now, next_at) = empty(&h.store, &request("dlq", "w", &[])).await;
    assert_eq!(next_at, Some(backed.not_before));
    assert!(next_at.unwrap() > now);
});

conformance!(an_expiry_on_the_last_attempt_kills_the_item, |h: Harness| async move {
    let q = h.store.queue();
    let new = NewItem {
        max_attempts: 1,
        ..item("once", "one shot")
    };
    let id = q.push(&new).await.unwrap().id;
    claim(&h.store, &short("once", "w", 100)).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let Claimed { outcome, newly_dead } = q.claim(&request("once", "w", &[])).await.unwrap();
    assert_eq!(newly_dead, 1);
    assert!(
        matches!(outcome, ClaimOutcome::Empty { next_at: None, .. }),
        "{outcome:?}"
    );
    let dead = get(&h.store, id).await;
    assert_eq!((dead.state, dead.attempt), (ItemState::Dead, 1));
    assert_eq!(dead.last_error.as_deref(), Some("claim expired"));
    assert_eq!((dead.holder, dead.expires_at), (None, None));
    assert_eq!(q.unalerted_dead(&ns(), 10).await.unwrap().len(), 1);
    // Ended once: the next claim finds nothing to end.
    assert_eq!(q.claim(&request("once", "w", &[])).await.unwrap().newly_dead, 0);
});

conformance!(cancel_withdraws_ready_items_only, |h: Harness| async move {
    let q = h.store.queue();
    let id = q.push(&keyed("gh", "issue-1")).await.unwrap().id;
    let busy = q.push(&keyed("gh", "issue-2")).await.unwrap().id;
    let c = claim(&h.store, &request("gh", "w", &[])).await;
    assert_eq!(c.id, id);
    // The claimed one is left to its worker.
    let kept = q.cancel(&ns(), &n("gh"), "issue-1").await.unwrap().unwrap();
    assert_eq!(kept.state, ItemState::Claimed);
    let cancelled = q.cancel(&ns(), &n("gh"), "issue-2").await.unwrap().unwrap();
    assert_eq!((cancelled.id, cancelled.state), (busy, ItemState::Cancelled));
    assert_eq!(get(&h.store, busy).await, cancelled);
    assert_eq!(q.cancel(&ns(), &n("gh"), "issue-3").await.unwrap(), None);
    assert_eq!(q.cancel(&ns(), &n("other"), "issue-2").await.unwrap(), None);
    empty(&h.store, &request("gh", "w", &[])).await;
    // A cancelled item comes back with retry.
    assert_eq!(q.retry(&ns(), busy).await.unwrap().state, ItemState::Ready);
    assert_eq!(claim(&h.store, &request("gh", "w", &[])).await.id, busy);
});

conformance!(not_before_delays_an_item, |h: Harness| async move {
    let q = h.store.queue();
    let later = q
        .push(&NewItem {
            not_before: Some(NotBefore::After(Duration::from_millis(1500))),
            ..item("delay", "later")
        })
        .await
        .unwrap();
    let worker = request("delay", "w", &[]);
    let (now, next_at) = empty(&h.store, &worker).await;
    let delayed = get(&h.store, later.id).await;
    assert_eq!(delayed.not_before - delayed.created_at, 1500);
    assert_eq!(next_at, Some(delayed.not_before));
    assert!(next_at.unwrap() > now);
    // A time in the past is ready now; one far ahead waits, and is what next_at names once
    // the first is taken.
    let past = q
        .push(&NewItem {
            not_before: Some(NotBefore::At(now - 1000)),
            ..item("delay", "past")
        })
        .await
        .unwrap();
    let far = q
        .push(&NewItem {
            not_before: Some(NotBefore::At(now + 3_600_000)),
            ..item("delay", "far")
        })
        .await
        .unwrap();
    let c = claim(&h.store, &worker).await;
    assert_eq!(c.id, past.id);
    q.done(&ns(), c.id, c.token, None).await.unwrap();
    let wait_for = (delayed.not_before - now).max(0) as u64 + 50;
    tokio::time::sleep(Duration::from_millis(wait_for)).await;
    let c = claim(&h.store, &worker).await;
    assert_eq!(c.id, later.id);
    q.done(&ns(), c.id, c.token, None).await.unwrap();
    let (_, next_at) = empty(&h.store, &worker).await;
    assert_eq!(next_at, Some(now + 3_600_000));
    assert_eq!(get(&h.store, far.id).await.state, ItemState::Ready);
});

conformance!(list_show_and_stats_count_what_is_there, |h: Harness| async move {
    let q = h.store.queue();
    let mut ids = vec![];
    for i in 0..6 {
        ids.push(q.push(&item("stats", &format!("item {i}"))).await.unwrap().id);
    }
    q.push(&NewItem {
        not_before: Some(NotBefore::After(Duration::from_secs(600))),
        ..item("stats", "delayed")
    })
    .await
    .unwrap();
    q.push(&item("another", "x")).await.unwrap();
    // One done; one failed and claimed again; one more claimed.
    let worker = request("stats", "w", &[]);
    let done = claim(&h.store, &worker).await;
    q.done(&ns(), done.id, done.token, None).await.unwrap();
    let dies = claim(&h.store, &worker).await;
    q.fail(&failure(dies.id, dies.token, "bad", Some(Duration::ZERO)))
        .await
        .unwrap();
    let running = claim(&h.store, &worker).await;
    assert_eq!(running.id, dies.id, "the failed item is first again (oldest)");
    let running2 = claim(&h.store, &worker).await;
    let (now, stats) = q.stats(&ns()).await.unwrap();
    let names: Vec<&str> = stats.iter().map(|s| s.queue.as_str()).collect();
    assert_eq!(names, ["another", "stats"]);
    let s = &stats[1];
    assert_eq!(
        (s.ready, s.delayed, s.claimed, s.expired, s.done, s.dead, s.cancelled),
        (3, 1, 2, 0, 1, 0, 0)
    );
    assert_eq!(s.claims_last_minute, 4);
    let oldest = get(&h.store, ids[3]).await;
    assert_eq!(s.oldest_ready_at, Some(oldest.created_at));
    assert!(s.oldest_ready_at.unwrap() <= now);
    assert_eq!((stats[0].ready, stats[0].claims_last_minute), (1, 0));
    // List: newest first, filtered, limited.
    let all: Vec<i64> = q
        .list(&ns(), Some(&n("stats")), None, 100)
        .await
        .unwrap()
        .iter()
        .map(|i| i.id)
        .collect();
    assert_eq!(all.len(), 7);
    assert!(all.windows(2).all(|w| w[0] > w[1]), "{all:?}");
    let claimed: Vec<i64> = q
        .list(&ns(), None, Some(ItemState::Claimed), 100)
        .await
        .unwrap()
        .iter()
        .map(|i| i.id)
        .collect();
    assert_eq!(claimed, [running2.id, running.id]);
    assert_eq!(q.list(&ns(), None, None, 2).await.unwrap().len(), 2);
    assert_eq!(q.list(&ns(), None, None, 100).await.unwrap().len(), 8);
    assert!(q.list(&n("team-b"), None, None, 100).await.unwrap().is_empty());
    // Show: the item, its attempts oldest first, the clock.
    let info = q.show(&ns(), dies.id).await.unwrap();
    assert_eq!(info.item.state, ItemState::Claimed);
    let attempts: Vec<_> = info
        .attempts
        .iter()
        .map(|a| (a.attempt, a.token, a.outcome, a.error.clone(), a.ended_at.is_some()))
        .collect();
    assert_eq!(
        attempts,
        [
            (1, 1, Some(AttemptOutcome::Failed), Some("bad".to_string()), true),
            (2, 2, None, None, false)
        ]
    );
    assert!(info.now >= info.item.updated_at);
    // An empty namespace has no queues.
    assert!(q.stats(&n("team-b")).await.unwrap().1.is_empty());
});

conformance!(hosts_declare_capabilities, |h: Harness| async move {
    let q = h.store.queue();
    q.register_host(&ns(), "zeta", &caps(&["gpu", "windows"]))
        .await
        .unwrap();
    q.register_host(&ns(), "alpha", &[]).await.unwrap();
    q.register_host(&n("team-b"), "other", &caps(&["x"])).await.unwrap();
    let (now, hosts) = q.hosts(&ns()).await.unwrap();
    let seen: Vec<_> = hosts
        .iter()
        .map(|h| (h.host.as_str(), h.capabilities.clone()))
        .collect();
    assert_eq!(seen, [("alpha", vec![]), ("zeta", caps(&["gpu", "windows"]))]);
    assert!(hosts.iter().all(|h| h.last_seen <= now));
    // Registering again replaces the capabilities and refreshes last_seen.
    let before = hosts[1].last_seen;
    tokio::time::sleep(Duration::from_millis(5)).await;
    q.register_host(&ns(), "zeta", &caps(&["repo:web"])).await.unwrap();
    let (_, hosts) = q.hosts(&ns()).await.unwrap();
    assert_eq!(hosts[1].capabilities, caps(&["repo:web"]));
    assert!(hosts[1].last_seen > before);
    assert_eq!(q.hosts(&n("team-b")).await.unwrap().1.len(), 1);
});

conformance!(
    concurrent_claimers_take_every_item_exactly_once,
    |h: Harness| async move {
        const ITEMS: usize = 60;
        const WORKERS: usize = 6;
        for i in 0..ITEMS {
            h.store.queue().push(&item("pool", &format!("{i}"))).await.unwrap();
        }
        let mut tasks = vec![];
        for w in 0..WORKERS {
            let store = h.reopen().await;
            tasks.push(tokio::spawn(async move {
                let worker = request("pool", &format!("w{w}"), &[]);
                let mut taken = vec![];
                // Bounded: a worker stops at its first empty claim once every item was pushed.
                for _ in 0..ITEMS {
                    match store.queue().claim(&worker).await.unwrap().outcome {
                        ClaimOutcome::Claimed(c) => {
                            store.queue().done(&ns(), c.id, c.token, None).await.unwrap();
                            taken.push(c.id);
                        }
                        ClaimOutcome::Empty { .. } => break,
                    }
                }
                taken
            }));
        }
        let mut by_item: BTreeMap<i64, usize> = BTreeMap::new();
        for task in tasks {
            for id in task.await.unwrap() {
                *by_item.entry(id).or_default() += 1;
            }
        }
        assert_eq!(by_item.len(), ITEMS, "every item claimed");
        assert!(by_item.values().all(|&count| count == 1), "{by_item:?}");
        let (_, stats) = h.store.queue().stats(&ns()).await.unwrap();
        assert_eq!((stats[0].done, stats[0].ready, stats[0].claimed), (ITEMS as u64, 0, 0));
    }
);

conformance!(changes_wake_waiting_claimers, |h: Harness| async move {
    // Each change a waiting claimer could use wakes a subscriber of the queue's topic.
    let other = h.reopen().await;
    let q = h.store.queue();
    let wakes = async |change: &str| {
        let mut subscription = other.changes().subscribe(Topic::Queue).await.unwrap();
        let waiter = tokio::spawn(async move { subscription.wait(Duration::from_secs(60)).await });
        (waiter, change.to_string())
    };
    let woken = async |(waiter, change): (tokio::task::JoinHandle<arbiter_core::Result<()>>, String)| {
        tokio::time::timeout(Duration::from_secs(30), waiter)
            .await
            .unwrap_or_else(|_| panic!("woken by {change}"))
            .unwrap()
            .unwrap();
    };
    let w = wakes("a push").await;
    let id = q.push(&item("wake", "x")).await.unwrap().id;
    woken(w).await;
    let c = claim(&h.store, &short("wake", "w", 100)).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let w = wakes("a claim that ended a run-out claim").await;
    let c2 = claim(&h.store, &request("wake", "w", &[])).await;
    assert!(c2.token > c.token);
    woken(w).await;
    let w = wakes("a failure").await;
    q.fail(&failure(id, c2.token, "x", Some(Duration::ZERO))).await.unwrap();
    woken(w).await;
    let c3 = claim(&h.store, &request("wake", "w", &[])).await;
    let w = wakes("done").await;
    q.done(&ns(), id, c3.token, None).await.unwrap();
    woken(w).await;
});

conformance!(
    stored_values_that_do_not_decode_are_a_corrupted_store,
    |h: Harness| async move {
        let q = h.store.queue();
        let expect_corrupted = |result: arbiter_core::Result<Vec<Item>>| {
            let err = result.expect_err("a corrupted row is an error");
            assert_eq!(err.kind, ErrorKind::Internal, "{err:?}");
            assert!(err.message.contains("corrupted store"), "{}", err.message);
        };
        let id = q.push(&item("bad", "x")).await.unwrap().id;
        let corruptions = [
            (
                "UPDATE queue_items SET state = 'pending'",
                "UPDATE queue_items SET state = 'pending'",
            ),
            (
                "UPDATE queue_items SET requires = '[\"GPU\"]'",
                "UPDATE queue_items SET requires = ARRAY['GPU']",
            ),
            (
                "UPDATE queue_items SET requires = 'not json'",
                "UPDATE queue_items SET requires = ARRAY[NULL]::text[]",
            ),
            (
                "UPDATE queue_items SET holder = 'not a holder'",
                "UPDATE queue_items SET holder = 'not a holder'",
            ),
            (
                "UPDATE queue_items SET attempt = -1",
                "UPDATE queue_items SET attempt = -1",
            ),
            (
                "UPDATE queue_items SET priority = 1 << 40",
                "UPDATE queue_items SET priority = 1::bigint << 40",
            ),
            (
                "UPDATE queue_items SET queue = 'a//b'",
                "UPDATE queue_items SET queue = 'a//b'",
            ),
        ];
        let restore = "UPDATE queue_items SET state = 'ready', requires = '[]', holder = NULL, attempt = 0,
                   priority = 0, queue = 'bad'";
        let restore_pg = "UPDATE queue_items SET state = 'ready', requires = '{}', holder = NULL, attempt = 0,
                      priority = 0, queue = 'bad'";
        for (sqlite, postgres) in corruptions {
            h.raw(sqlite, postgres).await;
            expect_corrupted(q.list(&ns(), None, None, 10).await);
            let err = q.show(&ns(), id).await.unwrap_err();
            assert_eq!(err.kind, ErrorKind::Internal, "{sqlite}: {err:?}");
            h.raw(restore, restore_pg).await;
            assert_eq!(q.list(&ns(), None, None, 10).await.unwrap().len(), 1);
        }
        // A run-out claim whose counts are out of range fails the claim, never panics.
        let c = claim(&h.store, &short("bad", "w", 100)).await;
        h.raw(
            "UPDATE queue_items SET max_attempts = -5",
            "UPDATE queue_items SET max_attempts = -5",
        )
        .await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        let err = q.claim(&request("bad", "w", &[])).await.unwrap_err();
        assert_eq!(err.kind, ErrorKind::Internal, "{err:?}");
        // An attempt's outcome and a host's capabilities are checked too.
        h.raw(
            "UPDATE queue_items SET max_attempts = 5; UPDATE queue_attempts SET outcome = 'vanished'",
            "UPDATE queue_items SET max_attempts = 5; UPDATE queue_attempts SET outcome = 'vanished'",
        )
        .await;
        let err = q.show(&ns(), c.id).await.unwrap_err();
        assert!(err.message.contains("corrupted store"), "{}", err.message);
        q.register_host(&ns(), "h", &caps(&["gpu"])).await.unwrap();
        h.raw(
            "UPDATE queue_hosts SET capabilities = '{\"gpu\": true}'",
            "UPDATE queue_hosts SET capabilities = ARRAY['has space']",
        )
        .await;
        let err = q.hosts(&ns()).await.unwrap_err();
        assert!(err.message.contains("corrupted store"), "{}", err.message);
    }
);

conformance!(
    concurrent_claimers_take_back_abandoned_claims_once,
    |h: Harness| async move {
        // Workers abandon the first claim of every third item (a worker that died): those run
        // out and are ended by whichever claim comes next, and every item is still done once.
        const ITEMS: usize = 30;
        const WORKERS: usize = 5;
        for i in 0..ITEMS {
            h.store.queue().push(&item("abandon", &format!("{i}"))).await.unwrap();
        }
        let mut tasks = vec![];
        for w in 0..WORKERS {
            let store = h.reopen().await;
            tasks.push(tokio::spawn(async move {
                let worker = short("abandon", &format!("w{w}"), 150);
                let (mut done, mut abandoned, mut died) = (vec![], 0, 0);
                // Bounded: far more tries than items; a worker stops when nothing is left.
                for _ in 0..ITEMS * 20 {
                    let claimed = store.queue().claim(&worker).await.unwrap();
                    died += claimed.newly_dead;
                    match claimed.outcome {
                        ClaimOutcome::Claimed(c) if c.attempt == 1 && c.id % 3 == 0 => abandoned += 1,
                        // A done that came after the short lease (a loaded machine) is refused as
                        // stale, and the item goes to another claim.
                        ClaimOutcome::Claimed(c) => match store.queue().done(&ns(), c.id, c.token, None).await {
                            Ok(_) => done.push(c.id),
                            Err(e) => assert_eq!(e.kind, ErrorKind::Lost, "{e:?}"),
                        },
                        ClaimOutcome::Empty { next_at: None, .. } => break,
                        ClaimOutcome::Empty { now, next_at: Some(at) } => {
                            tokio::time::sleep(Duration::from_millis((at - now).clamp(0, 1000) as u64 + 5)).await
                        }
                    }
                }
                (done, abandoned, died)
            }));
        }
        let (mut by_item, mut abandoned, mut died) = (BTreeMap::<i64, usize>::new(), 0, 0);
        for task in tasks {
            let (done, a, d) = task.await.unwrap();
            for id in done {
                *by_item.entry(id).or_default() += 1;
            }
            abandoned += a;
            died += d;
        }
        assert_eq!(by_item.len(), ITEMS, "every item done");
        assert!(by_item.values().all(|&count| count == 1), "{by_item:?}");
        assert_eq!(abandoned, ITEMS / 3);
        assert_eq!(died, 0);
        // Each abandoned item's first attempt expired; every item's last is its done one.
        for &id in by_item.keys() {
            let info = h.store.queue().show(&ns(), id).await.unwrap();
            let outcomes: Vec<_> = info.attempts.iter().map(|a| a.outcome).collect();
            assert_eq!(outcomes.last(), Some(&Some(AttemptOutcome::Done)), "{outcomes:?}");
            if id % 3 == 0 {
                assert_eq!(outcomes[0], Some(AttemptOutcome::Expired), "{outcomes:?}");
            }
        }
    }
);

/// PostgreSQL only (SQLite has no row locks): a claim never waits for a row another
/// transaction holds — neither the best ready item nor a run-out claim being ended —; it
/// skips it and takes the next item.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_claims_skip_rows_others_hold() {
    let Some(url) = arbiter_testkit::postgres_url("postgres_claims_skip_rows_others_hold").await else {
        return;
    };
    let h = Harness::open(&url).await;
    let q = h.store.queue();
    let best = q
        .push(&NewItem {
            priority: 9,
            ..item("skip", "best")
        })
        .await
        .unwrap()
        .id;
    let next = q.push(&item("skip", "next")).await.unwrap().id;
    let last = q.push(&item("skip", "last")).await.unwrap().id;
    // A claim that runs out, so the next claim has one to end.
    let c = claim(&h.store, &short("skip", "w", 100)).await;
    assert_eq!(c.id, best);
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Another session holds the run-out claim's row and the next ready item's row.
    let arbiter_store::StoreUrl::Postgres {
        url: server, schema, ..
    } = &h.url
    else {
        unreachable!("a PostgreSQL store")
    };
    let (mut client, connection) = tokio_postgres::connect(server, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    let tx = client.transaction().await.unwrap();
    tx.batch_execute(&format!(
        "SET LOCAL search_path = {}; SELECT id FROM queue_items WHERE id IN ({best}, {next}) FOR UPDATE",
        schema.as_deref().unwrap()
    ))
    .await
    .unwrap();
    // The claim skips both: it neither ends the held run-out claim nor takes the held item.
    let taken = tokio::time::timeout(Duration::from_secs(30), q.claim(&request("skip", "w2", &[])))
        .await
        .expect("a claim does not wait for rows others hold")
        .unwrap();
    let ClaimOutcome::Claimed(taken) = taken.outcome else {
        panic!("the unheld item is claimable")
    };
    assert_eq!(taken.id, last);
    assert_eq!(
        get(&h.store, best).await.state,
        ItemState::Claimed,
        "left to its holder"
    );
    tx.rollback().await.unwrap();
    // Released: the next claim ends the run-out claim and takes the best item again.
    let again = claim(&h.store, &request("skip", "w3", &[])).await;
    assert_eq!((again.id, again.attempt), (best, 2));
    assert_eq!(claim(&h.store, &request("skip", "w3", &[])).await.id, next);
}

conformance!(each_death_is_alerted_once, |h: Harness| async move {
    let q = h.store.queue();
    let new = NewItem {
        max_attempts: 1,
        ..item("alerts", "fragile")
    };
    let id = q.push(&new).await.unwrap().id;
    // Marking an item that is not dead (yet) records nothing: its death is still owed.
    q.mark_alerted(&ns(), &[id]).await.unwrap();
    let c = claim(&h.store, &request("alerts", "w", &[])).await;
    assert_eq!(
        q.fail(&failure(id, c.token, "one", None)).await.unwrap().state,
        ItemState::Dead
    );
    let owed: Vec<i64> = q
        .unalerted_dead(&ns(), 10)
        .await
        .unwrap()
        .iter()
        .map(|i| i.id)
        .collect();
    assert_eq!(owed, [id]);
    q.mark_alerted(&ns(), &[id]).await.unwrap();
    assert!(q.unalerted_dead(&ns(), 10).await.unwrap().is_empty());
    // Retried and dead again: a new death, owed again.
    q.retry(&ns(), id).await.unwrap();
    let c = claim(&h.store, &request("alerts", "w", &[])).await;
    q.fail(&failure(id, c.token, "two", None)).await.unwrap();
    let owed = q.unalerted_dead(&ns(), 10).await.unwrap();
    assert_eq!(owed.len(), 1);
    assert_eq!(owed[0].last_error.as_deref(), Some("two"));
    // Oldest first, at most the limit.
    let other = q.push(&new).await.unwrap().id;
    let c = claim(&h.store, &request("alerts", "w", &[])).await;
    assert_eq!(c.id, other);
    q.fail(&failure(other, c.token, "three", None)).await.unwrap();
    let ids: Vec<i64> = q
        .unalerted_dead(&ns(), 10)
        .await
        .unwrap()
        .iter()
        .map(|i| i.id)
        .collect();
    assert_eq!(ids, [id, other]);
    assert_eq!(q.unalerted_dead(&ns(), 1).await.unwrap()[0].id, id);
});
