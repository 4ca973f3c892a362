//! `LoopStore`: rounds fenced by the loop's lease, abandoned and lost rounds, heartbeats,
//! the fleet's rows and a loop's rounds, and the change feed that announces rounds.

use std::time::Duration;

use arbiter_core::ErrorKind;
use arbiter_core::lease::Lease;
use arbiter_core::loops::{LoopStatus, RoundStatus};
use arbiter_core::name::{LoopName, Namespace};
use arbiter_store::{RoundEnd, RoundLogPath, Store, Topic};

use crate::{Harness, attempt, conformance, granted, holder, n};

fn ns() -> Namespace {
    Namespace::default()
}

fn name(text: &str) -> LoopName {
    LoopName::parse(text).unwrap()
}

/// The supervisor's naming, as a test writes it: the store only calls it.
fn log_path(dir: &str) -> RoundLogPath {
    let dir = dir.to_string();
    Box::new(move |round| format!("{dir}/{round}.log"))
}

async fn lease(store: &Store, lease_name: &str) -> Lease {
    granted(store.leases().acquire(attempt(lease_name, "sup")).await.unwrap())
}

/// The recorded status of round `n` of `loop_name`.
async fn status_of(store: &Store, loop_name: &LoopName, n: i64) -> RoundStatus {
    store
        .loops()
        .round(&ns(), loop_name, n)
        .await
        .unwrap()
        .expect("the round")
        .status
}

fn end(round: i64, status: RoundStatus, state: LoopStatus, failures: i64) -> RoundEnd {
    RoundEnd {
        round,
        status,
        exit_code: (status == RoundStatus::Failed).then_some(3),
        reason: format!("round {round} {status}"),
        consecutive_failures: failures,
        next_in_ms: 5_000,
        state,
        api_calls: None,
        github_logins: Vec::new(),
    }
}

conformance!(rounds_are_fenced_by_the_lease_token, |h: Harness| async move {
    let loops = h.store.loops();
    let a = name("a");
    // The lease's name is the caller's business: the store is told which loop it fences.
    let first = lease(&h.store, "sup/a").await;
    assert_eq!(
        loops.begin_round(&ns(), &a, &first, log_path("/logs/a")).await.unwrap(),
        1
    );
    let round = loops.round(&ns(), &a, 1).await.unwrap().expect("round 1");
    assert_eq!(round.status, RoundStatus::Running);
    assert_eq!(round.log_path, "/logs/a/1.log");
    assert_eq!((round.host.as_str(), round.pid), ("test-host", 4242));
    assert_eq!(round.ended_at, None);

    // Another holder takes the lease: the first one's token no longer starts rounds.
    h.store
        .leases()
        .release(&n("default"), &n("sup/a"), first.token)
        .await
        .unwrap();
    let second = lease(&h.store, "sup/a").await;
    let err = loops
        .begin_round(&ns(), &a, &first, log_path("/logs/a"))
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Lost);
    assert!(
        err.message
            .contains(&format!("no longer held with token {}", first.token)),
        "{}",
        err.message
    );
    assert_eq!(loops.rounds(&ns(), &a, 10).await.unwrap().len(), 1, "nothing recorded");

    // The new holder's round: the one left running is abandoned first.
    assert_eq!(
        loops
            .begin_round(&ns(), &a, &second, log_path("/logs/a"))
            .await
            .unwrap(),
        2
    );
    let abandoned = loops.round(&ns(), &a, 1).await.unwrap().unwrap();
    assert_eq!(abandoned.status, RoundStatus::Abandoned);
    assert!(abandoned.ended_at.is_some());
    assert!(abandoned.reason.unwrap().contains("stopped mid-round"));

    // An expired lease fences too, even when nobody took it over.
    let mut short = attempt("sup/b", "sup");
    short.request.ttl = Duration::from_millis(200);
    let short = granted(h.store.leases().acquire(short).await.unwrap());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let err = loops
        .begin_round(&ns(), &name("b"), &short, log_path("/logs/b"))
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Lost);
});

conformance!(
    end_round_records_the_outcome_and_the_schedule,
    |h: Harness| async move {
        let loops = h.store.loops();
        let a = name("a");
        let held = lease(&h.store, "loop/a").await;
        let round = loops.begin_round(&ns(), &a, &held, log_path("/l")).await.unwrap();
        loops
            .end_round(&ns(), &a, end(round, RoundStatus::Failed, LoopStatus::BackingOff, 1))
            .await
            .unwrap();
        let info = loops.round(&ns(), &a, round).await.unwrap().unwrap();
        assert_eq!(info.status, RoundStatus::Failed);
        assert_eq!(info.exit_code, Some(3));
        assert_eq!(info.reason.as_deref(), Some("round 1 failed"));
        assert!(info.ended_at.is_some_and(|t| t >= info.started_at));
        let (_, states) = loops.status(&ns()).await.unwrap();
        let state = &states[0];
        assert_eq!(state.name, a);
        assert_eq!(state.round, 1);
        assert_eq!(state.state, LoopStatus::BackingOff);
        assert_eq!(state.last_status, Some(RoundStatus::Failed));
        assert_eq!(state.last_exit, Some(3));
        assert_eq!(state.consecutive_failures, 1);
        assert_eq!(
            state.next_run_at - state.heartbeat_at,
            5_000,
            "next_in_ms after the store's now"
        );

        // An end cannot rewrite an ended round.
        loops
            .end_round(&ns(), &a, end(round, RoundStatus::Succeeded, LoopStatus::Idle, 0))
            .await
            .unwrap();
        assert_eq!(status_of(&h.store, &a, round).await, RoundStatus::Failed);
    }
);

conformance!(
    abandoned_rounds_are_kept_unless_the_runner_lost_them,
    |h: Harness| async move {
        let loops = h.store.loops();
        let a = name("a");
        let first = lease(&h.store, "loop/a").await;
        loops.begin_round(&ns(), &a, &first, log_path("/l")).await.unwrap();
        h.store
            .leases()
            .release(&n("default"), &n("loop/a"), first.token)
            .await
            .unwrap();
        let second = lease(&h.store, "loop/a").await;
        loops.begin_round(&ns(), &a, &second, log_path("/l")).await.unwrap();
        loops.begin_round(&ns(), &a, &second, log_path("/l")).await.unwrap();
        // Rounds 1 and 2 are abandoned (each by the next begin). A supervisor that comes back
        // saying it succeeded does not rewrite that; one that says it lost the round does.
        loops
            .end_round(&ns(), &a, end(1, RoundStatus::Succeeded, LoopStatus::Idle, 0))
            .await
            .unwrap();
        assert_eq!(status_of(&h.store, &a, 1).await, RoundStatus::Abandoned);
        loops
            .end_round(&ns(), &a, end(2, RoundStatus::Lost, LoopStatus::BackingOff, 1))
            .await
            .unwrap();
        assert_eq!(status_of(&h.store, &a, 2).await, RoundStatus::Lost);
        // The loop's row belongs to whoever runs round 3.
        let (_, states) = loops.status(&ns()).await.unwrap();
        assert_eq!((states[0].round, states[0].state), (3, LoopStatus::Running));
    }
);

conformance!(
    a_lost_round_leaves_the_loop_to_its_new_holder,
    |h: Harness| async move {
        let loops = h.store.loops();
        let a = name("a");
        let held = lease(&h.store, "loop/a").await;
        loops.begin_round(&ns(), &a, &held, log_path("/l")).await.unwrap();
        loops
            .end_round(&ns(), &a, end(1, RoundStatus::Succeeded, LoopStatus::Idle, 0))
            .await
            .unwrap();
        loops.begin_round(&ns(), &a, &held, log_path("/l")).await.unwrap();
        // The new holder said it is idle before the old one's late end arrives.
        let newcomer = holder("newcomer");
        loops
            .heartbeat(&ns(), &a, LoopStatus::Idle, None, &newcomer)
            .await
            .unwrap();
        loops
            .end_round(&ns(), &a, end(2, RoundStatus::Lost, LoopStatus::BackingOff, 1))
            .await
            .unwrap();
        assert_eq!(status_of(&h.store, &a, 2).await, RoundStatus::Lost);
        let (_, states) = loops.status(&ns()).await.unwrap();
        let state = &states[0];
        assert_eq!(
            state.state,
            LoopStatus::Idle,
            "the loss did not overwrite the loop's state"
        );
        assert_eq!(state.last_status, Some(RoundStatus::Succeeded));
        assert_eq!(state.consecutive_failures, 0);
    }
);

conformance!(heartbeats_create_and_update_the_loop, |h: Harness| async move {
    let loops = h.store.loops();
    let a = name("a");
    let sup = holder("sup");
    let state = loops.heartbeat(&ns(), &a, LoopStatus::Idle, None, &sup).await.unwrap();
    assert_eq!(state.name, a);
    assert_eq!(
        (state.round, state.state, state.consecutive_failures),
        (0, LoopStatus::Idle, 0)
    );
    assert_eq!(
        (state.last_status, state.last_reason, state.last_exit),
        (None, None, None)
    );
    assert_eq!((state.host.as_str(), state.pid), ("test-host", 4242));
    assert_eq!(state.next_run_at, state.heartbeat_at, "a new loop runs now");

    let at = state.heartbeat_at + 60_000;
    let mut other = holder("other");
    other.host = "elsewhere".into();
    other.pid = 7;
    let state = loops
        .heartbeat(&ns(), &a, LoopStatus::Disabled, Some(at), &other)
        .await
        .unwrap();
    assert_eq!((state.state, state.next_run_at), (LoopStatus::Disabled, at));
    assert_eq!((state.host.as_str(), state.pid), ("elsewhere", 7));
    // No next time: the schedule is kept.
    let state = loops
        .heartbeat(&ns(), &a, LoopStatus::Stopped, None, &other)
        .await
        .unwrap();
    assert_eq!((state.state, state.next_run_at), (LoopStatus::Stopped, at));
});

conformance!(status_lists_a_namespace_by_name, |h: Harness| async move {
    let loops = h.store.loops();
    let sup = holder("sup");
    for loop_name in ["b", "a", "c"] {
        loops
            .heartbeat(&ns(), &name(loop_name), LoopStatus::Idle, None, &sup)
            .await
            .unwrap();
    }
    let team = Namespace::parse("team-b").unwrap();
    loops
        .heartbeat(&team, &name("z"), LoopStatus::Idle, None, &sup)
        .await
        .unwrap();
    let (now, states) = loops.status(&ns()).await.unwrap();
    let names: Vec<&str> = states.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["a", "b", "c"]);
    assert!(states.iter().all(|s| s.heartbeat_at <= now));
    let (_, states) = loops.status(&team).await.unwrap();
    assert_eq!(states.len(), 1);
    let (_, none) = loops.status(&Namespace::parse("empty").unwrap()).await.unwrap();
    assert!(none.is_empty());
});

conformance!(rounds_come_newest_first_up_to_the_limit, |h: Harness| async move {
    let loops = h.store.loops();
    let (a, b) = (name("a"), name("b"));
    let held = lease(&h.store, "loop/a").await;
    for n in 1..=4 {
        assert_eq!(loops.begin_round(&ns(), &a, &held, log_path("/a")).await.unwrap(), n);
        loops
            .end_round(&ns(), &a, end(n, RoundStatus::Succeeded, LoopStatus::Idle, 0))
            .await
            .unwrap();
    }
    // One lease may fence several loops' rounds: numbers are per loop.
    assert_eq!(loops.begin_round(&ns(), &b, &held, log_path("/b")).await.unwrap(), 1);
    let rounds: Vec<i64> = loops
        .rounds(&ns(), &a, 3)
        .await
        .unwrap()
        .iter()
        .map(|r| r.round)
        .collect();
    assert_eq!(rounds, [4, 3, 2]);
    let all = loops.rounds(&ns(), &a, 100).await.unwrap();
    assert_eq!(all.len(), 4);
    assert!(all.iter().all(|r| r.status == RoundStatus::Succeeded));
    assert_eq!(all[0].log_path, "/a/4.log");
    assert!(loops.rounds(&ns(), &name("none"), 10).await.unwrap().is_empty());
    assert_eq!(loops.round(&ns(), &a, 5).await.unwrap(), None);
    assert_eq!(loops.round(&ns(), &b, 1).await.unwrap().unwrap().log_path, "/b/1.log");
});

conformance!(rounds_wake_loop_subscribers, |h: Harness| async move {
    let other = h.reopen().await;
    let a = name("a");
    let held = lease(&h.store, "loop/a").await;
    for step in 0..2 {
        let mut subscription = other.changes().subscribe(Topic::Loops).await.unwrap();
        let waiter = tokio::spawn(async move {
            let started = std::time::Instant::now();
            subscription.wait(Duration::from_secs(60)).await.unwrap();
            started.elapsed()
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        let loops = h.store.loops();
        if step == 0 {
            loops.begin_round(&ns(), &a, &held, log_path("/a")).await.unwrap();
        } else {
            loops
                .end_round(&ns(), &a, end(1, RoundStatus::Succeeded, LoopStatus::Idle, 0))
                .await
                .unwrap();
        }
        let waited = tokio::time::timeout(Duration::from_secs(30), waiter)
            .await
            .expect("woken")
            .unwrap();
        // Woken by the round's start or end, not by the 60 s timeout.
        assert!(waited < Duration::from_secs(60), "{waited:?}");
    }
});

conformance!(rounds_record_their_github_spend, |h: Harness| async move {
    let loops = h.store.loops();
    let a = name("a");
    let held = lease(&h.store, "loop/a").await;
    for round in 1..=3 {
        assert_eq!(
            loops.begin_round(&ns(), &a, &held, log_path("/a")).await.unwrap(),
            round
        );
        let running = loops.round(&ns(), &a, round).await.unwrap().expect("the round");
        assert_eq!((running.api_calls, running.github_logins.len()), (None, 0));
        let mut ended = end(round, RoundStatus::Succeeded, LoopStatus::Idle, 0);
        match round {
            1 => {}
            2 => {
                ended.api_calls = Some(0);
            }
            _ => {
                ended.api_calls = Some(31);
                ended.github_logins = vec!["octocat".into(), "hubot".into()];
            }
        }
        loops.end_round(&ns(), &a, ended).await.unwrap();
    }
    // Not measured, measured as nothing, and a spend with its logins, each as it was.
    let rounds = loops.rounds(&ns(), &a, 10).await.unwrap();
    let spend: Vec<(i64, Option<i64>, Vec<String>)> = rounds
        .into_iter()
        .map(|r| (r.round, r.api_calls, r.github_logins))
        .collect();
    assert_eq!(
        spend,
        [
            (3, Some(31), vec!["octocat".to_string(), "hubot".to_string()]),
            (2, Some(0), vec![]),
            (1, None, vec![]),
        ]
    );
});

/// A claim as the supervisor holds it: a lease named `item/<id>` with the claim's token.
fn claim_lease(claim: &arbiter_core::queue::Claim) -> Lease {
    Lease {
        namespace: claim.namespace.clone(),
        name: arbiter_core::name::LeaseName::parse(&format!("item/{}", claim.id)).unwrap(),
        token: claim.token,
        holder: claim.holder.clone(),
        slots: 1,
        ttl_ms: claim.lease_ms,
        acquired_at: claim.claimed_at,
        expires_at: claim.expires_at,
    }
}

async fn claim_one(store: &Store, queue: &str, lease: Duration) -> arbiter_core::queue::Claim {
    let request = arbiter_core::queue::ClaimRequest {
        namespace: ns(),
        queue: crate::n(queue),
        holder: holder("sup"),
        capabilities: Vec::new(),
        lease,
    };
    match store.queue().claim(&request).await.unwrap().outcome {
        arbiter_core::queue::ClaimOutcome::Claimed(claim) => claim,
        other => panic!("expected a claim, got {other:?}"),
    }
}

conformance!(
    item_rounds_are_fenced_by_the_claim_and_run_side_by_side,
    |h: Harness| async move {
        let loops = h.store.loops();
        let queue = h.store.queue();
        let a = name("a");
        for key in ["one", "two", "three"] {
            let item = arbiter_core::queue::NewItem::new(
                ns(),
                crate::n("loop/a"),
                key.into(),
                Some(key.into()),
                0,
                vec![],
                None,
                3,
            )
            .unwrap();
            queue.push(&item).await.unwrap();
        }
        let first = claim_one(&h.store, "loop/a", Duration::from_secs(30)).await;
        let second = claim_one(&h.store, "loop/a", Duration::from_secs(30)).await;
        let r1 = loops
            .begin_item_round(&ns(), &a, first.id, &claim_lease(&first), log_path("/l"))
            .await
            .unwrap();
        let r2 = loops
            .begin_item_round(&ns(), &a, second.id, &claim_lease(&second), log_path("/l"))
            .await
            .unwrap();
        assert_eq!((r1, r2), (1, 2));
        // Side by side: starting the second left the first running.
        assert_eq!(status_of(&h.store, &a, 1).await, RoundStatus::Running);
        assert_eq!(status_of(&h.store, &a, 2).await, RoundStatus::Running);
        let info = loops.round(&ns(), &a, 2).await.unwrap().unwrap();
        assert_eq!((info.log_path.as_str(), info.host.as_str()), ("/l/2.log", "test-host"));

        // A wrong token, an unknown item, an ended claim: Lost, and no round.
        let mut stale = claim_lease(&first);
        stale.token += 1;
        for (id, lease) in [(first.id, stale), (first.id + second.id + 100, claim_lease(&first))] {
            let err = loops
                .begin_item_round(&ns(), &a, id, &lease, log_path("/l"))
                .await
                .unwrap_err();
            assert_eq!(err.kind, ErrorKind::Lost, "{err:?}");
        }
        queue.done(&ns(), first.id, first.token, None).await.unwrap();
        let err = loops
            .begin_item_round(&ns(), &a, first.id, &claim_lease(&first), log_path("/l"))
            .await
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::Lost);
        // A claim that ran out fences nothing either.
        let third = claim_one(&h.store, "loop/a", Duration::from_millis(100)).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let err = loops
            .begin_item_round(&ns(), &a, third.id, &claim_lease(&third), log_path("/l"))
            .await
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::Lost);
        let (_, states) = loops.status(&ns()).await.unwrap();
        assert_eq!(
            states.iter().find(|s| s.name == a).unwrap().round,
            2,
            "no round was taken"
        );
    }
);
