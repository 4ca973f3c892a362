use std::time::Duration;

use arbiter_core::ErrorKind;
use arbiter_core::lease::RenewRequest;
use arbiter_store::Topic;

use crate::{Harness, attempt, busy, conformance, granted, n, ns};

conformance!(tokens_increase_and_stale_tokens_are_lost, |h: Harness| async move {
    let leases = h.store.leases();
    let first = granted(leases.acquire(attempt("a", "one")).await.unwrap());
    assert_eq!(first.token, 1);
    assert_eq!(first.holder.agent, "one");
    assert_eq!(first.expires_at - first.acquired_at, 30_000);
    let blocked = busy(leases.acquire(attempt("a", "two")).await.unwrap());
    assert_eq!(blocked.holders, vec![first.clone()]);
    assert_eq!(blocked.ticket, None, "a request that does not wait is not queued");
    leases.release(&ns(), &n("a"), first.token).await.unwrap();
    let second = granted(leases.acquire(attempt("a", "two")).await.unwrap());
    assert_eq!(second.token, 2);
    // The first holder's token is stale now: renew and release report the loss.
    let renew = RenewRequest {
        namespace: ns(),
        name: n("a"),
        token: 1,
        ttl: None,
        pgid: None,
    };
    assert_eq!(leases.renew(renew).await.unwrap_err().kind, ErrorKind::Lost);
    let err = leases.release(&ns(), &n("a"), 1).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Lost);
    assert!(err.message.contains("no longer held with token 1"), "{}", err.message);
    // Names are independent, and namespaces too.
    assert_eq!(granted(leases.acquire(attempt("b", "x")).await.unwrap()).token, 1);
    let mut other_ns = attempt("a", "x");
    other_ns.request.namespace = n("team-b");
    assert_eq!(granted(leases.acquire(other_ns).await.unwrap()).token, 1);
});

conformance!(expiry_uses_the_store_clock, |h: Harness| async move {
    let leases = h.store.leases();
    let mut short = attempt("e", "one");
    short.request.ttl = Duration::from_millis(300);
    let first = granted(leases.acquire(short).await.unwrap());
    busy(leases.acquire(attempt("e", "two")).await.unwrap());
    tokio::time::sleep(Duration::from_millis(400)).await;
    let second = granted(leases.acquire(attempt("e", "two")).await.unwrap());
    assert!(second.token > first.token);
    let renew = RenewRequest {
        namespace: ns(),
        name: n("e"),
        token: first.token,
        ttl: None,
        pgid: None,
    };
    assert_eq!(leases.renew(renew).await.unwrap_err().kind, ErrorKind::Lost);
    // An expired lease that nobody took is lost too: renew after the TTL fails.
    let mut short = attempt("f", "one");
    short.request.ttl = Duration::from_millis(200);
    let lone = granted(leases.acquire(short).await.unwrap());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let renew = RenewRequest {
        namespace: ns(),
        name: n("f"),
        token: lone.token,
        ttl: None,
        pgid: None,
    };
    assert_eq!(leases.renew(renew).await.unwrap_err().kind, ErrorKind::Lost);
    assert_eq!(
        leases.release(&ns(), &n("f"), lone.token).await.unwrap_err().kind,
        ErrorKind::Lost
    );
    assert!(leases.list(&ns(), &n("f")).await.unwrap().is_empty());
});

conformance!(renew_extends_and_records_the_process_group, |h: Harness| async move {
    let leases = h.store.leases();
    let mut short = attempt("r", "one");
    short.request.ttl = Duration::from_millis(500);
    let lease = granted(leases.acquire(short).await.unwrap());
    let renewed = leases
        .renew(RenewRequest {
            namespace: ns(),
            name: n("r"),
            token: lease.token,
            ttl: Some(Duration::from_secs(60)),
            pgid: Some(777),
        })
        .await
        .unwrap();
    assert_eq!(renewed.ttl_ms, 60_000);
    assert!(renewed.expires_at >= lease.expires_at + 59_000);
    assert_eq!(renewed.holder.pgid, Some(777));
    tokio::time::sleep(Duration::from_millis(600)).await;
    // Still held well past the original TTL, with the group recorded.
    let info = leases.show(&ns(), &n("r")).await.unwrap();
    assert_eq!(info.holders.len(), 1);
    assert_eq!(info.holders[0].holder.pgid, Some(777));
    busy(leases.acquire(attempt("r", "two")).await.unwrap());
    // Renew without a TTL keeps the lease's own TTL.
    let again = leases
        .renew(RenewRequest {
            namespace: ns(),
            name: n("r"),
            token: lease.token,
            ttl: None,
            pgid: None,
        })
        .await
        .unwrap();
    assert_eq!(again.ttl_ms, 60_000);
    assert_eq!(
        again.holder.pgid,
        Some(777),
        "a renew without pgid keeps the recorded one"
    );
});

conformance!(semaphores_admit_n_holders, |h: Harness| async move {
    let leases = h.store.leases();
    let mut tokens = vec![];
    for agent in ["a", "b", "c"] {
        let mut r = attempt("sem", agent);
        r.request.slots = 3;
        tokens.push(granted(leases.acquire(r).await.unwrap()).token);
    }
    assert_eq!(tokens, vec![1, 2, 3]);
    let mut fourth = attempt("sem", "d");
    fourth.request.slots = 3;
    assert_eq!(busy(leases.acquire(fourth.clone()).await.unwrap()).holders.len(), 3);
    // A request that disagrees on the size while it is held is bad input.
    let err = leases.acquire(attempt("sem", "e")).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::BadInput);
    assert!(
        err.message.contains("held with 3 slot(s); this request asks for 1"),
        "{}",
        err.message
    );
    leases.release(&ns(), &n("sem"), 2).await.unwrap();
    assert_eq!(granted(leases.acquire(fourth).await.unwrap()).token, 4);
    // Once free, the name takes the next request's size.
    for token in [1, 3, 4] {
        leases.release(&ns(), &n("sem"), token).await.unwrap();
    }
    let lock = granted(leases.acquire(attempt("sem", "f")).await.unwrap());
    assert_eq!((lock.slots, lock.token), (1, 5));
});

conformance!(waiters_are_served_in_arrival_order, |h: Harness| async move {
    let leases = h.store.leases();
    let holder = granted(leases.acquire(attempt("q", "holder")).await.unwrap());
    let mut first = attempt("q", "first");
    first.request.wait = Some(Duration::from_secs(30));
    let first_ticket = busy(leases.acquire(first.clone()).await.unwrap())
        .ticket
        .expect("queued");
    let mut second = attempt("q", "second");
    second.request.wait = Some(Duration::from_secs(30));
    let second_busy = busy(leases.acquire(second.clone()).await.unwrap());
    let second_ticket = second_busy.ticket.expect("queued");
    assert!(second_ticket > first_ticket);
    assert_eq!(second_busy.ahead.len(), 1);
    assert_eq!(second_busy.ahead[0].holder.agent, "first");
    // A newcomer that does not wait sees both waiters ahead.
    assert_eq!(busy(leases.acquire(attempt("q", "rude")).await.unwrap()).ahead.len(), 2);
    leases.release(&ns(), &n("q"), holder.token).await.unwrap();
    // The lock is free, but the second in line may not jump the queue...
    second.ticket = Some(second_ticket);
    let still = busy(leases.acquire(second.clone()).await.unwrap());
    assert_eq!(still.ticket, Some(second_ticket), "keeps its place");
    assert!(still.holders.is_empty());
    // ...nor may a newcomer.
    busy(leases.acquire(attempt("q", "rude")).await.unwrap());
    // The first in line gets it, then the second.
    first.ticket = Some(first_ticket);
    let first_lease = granted(leases.acquire(first).await.unwrap());
    leases.release(&ns(), &n("q"), first_lease.token).await.unwrap();
    let second_lease = granted(leases.acquire(second).await.unwrap());
    assert!(second_lease.token > first_lease.token);
    assert!(leases.show(&ns(), &n("q")).await.unwrap().waiters.is_empty());
});

conformance!(
    cancelled_and_reclaimed_waiters_leave_the_queue,
    |h: Harness| async move {
        let leases = h.store.leases();
        let holder = granted(leases.acquire(attempt("w", "holder")).await.unwrap());
        let mut a = attempt("w", "a");
        a.request.wait = Some(Duration::from_secs(30));
        let a_ticket = busy(leases.acquire(a).await.unwrap()).ticket.unwrap();
        let mut b = attempt("w", "b");
        b.request.wait = Some(Duration::from_secs(30));
        let b_ticket = busy(leases.acquire(b).await.unwrap()).ticket.unwrap();
        let mut c = attempt("w", "c");
        c.request.wait = Some(Duration::from_secs(30));
        let c_ticket = busy(leases.acquire(c.clone()).await.unwrap()).ticket.unwrap();
        assert_eq!(leases.show(&ns(), &n("w")).await.unwrap().waiters.len(), 3);
        leases.cancel_wait(&ns(), &n("w"), a_ticket).await.unwrap();
        leases.cancel_wait(&ns(), &n("w"), a_ticket).await.unwrap(); // unknown tickets are ignored
        leases.release(&ns(), &n("w"), holder.token).await.unwrap();
        // c names b as dead (as a same-host caller would) and is served at once.
        c.ticket = Some(c_ticket);
        c.reclaim_tickets = vec![b_ticket];
        granted(leases.acquire(c).await.unwrap());
        assert!(leases.show(&ns(), &n("w")).await.unwrap().waiters.is_empty());
    }
);

conformance!(reclaimed_holders_are_taken_over_at_once, |h: Harness| async move {
    let leases = h.store.leases();
    let dead = granted(leases.acquire(attempt("t", "dead")).await.unwrap());
    let mut next = attempt("t", "next");
    next.reclaim_tokens = vec![dead.token];
    let lease = granted(leases.acquire(next).await.unwrap());
    assert!(lease.token > dead.token);
    assert_eq!(
        leases.release(&ns(), &n("t"), dead.token).await.unwrap_err().kind,
        ErrorKind::Lost
    );
    // Reclaiming a token that is not held (already gone) changes nothing.
    let mut other = attempt("t", "other");
    other.reclaim_tokens = vec![dead.token];
    busy(leases.acquire(other).await.unwrap());
});

conformance!(list_and_show, |h: Harness| async move {
    let leases = h.store.leases();
    for name in ["loop/a_b", "loop/axb", "other"] {
        granted(leases.acquire(attempt(name, "x")).await.unwrap());
    }
    let names = |list: Vec<arbiter_core::lease::Lease>| list.into_iter().map(|l| l.name).collect::<Vec<_>>();
    assert_eq!(
        names(leases.list(&ns(), &n("")).await.unwrap()),
        ["loop/a_b", "loop/axb", "other"]
    );
    // `_` and `%` are not wildcards.
    assert_eq!(names(leases.list(&ns(), &n("loop/a_")).await.unwrap()), ["loop/a_b"]);
    // `%` cannot reach the store: a prefix is a `Prefix`, which refuses it.
    assert!(arbiter_core::name::Prefix::parse("loop/%").is_err());
    assert!(leases.list(&n("team-b"), &n("")).await.unwrap().is_empty());
    let info = leases.show(&ns(), &n("other")).await.unwrap();
    assert_eq!((info.slots, info.last_token, info.holders.len()), (1, 1, 1));
    let err = leases.show(&ns(), &n("never")).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::NotFound);
    assert!(err.message.contains("\"never\""), "{}", err.message);
});

conformance!(tokens_survive_reopening_the_store, |h: Harness| async move {
    let lease = granted(h.store.leases().acquire(attempt("p", "x")).await.unwrap());
    h.store.leases().release(&ns(), &n("p"), lease.token).await.unwrap();
    drop(h.store);
    let store = arbiter_store::Store::open(&h.url).await.unwrap();
    assert_eq!(store.info().schema_version, arbiter_store::SCHEMA_VERSION);
    let again = granted(store.leases().acquire(attempt("p", "x")).await.unwrap());
    assert!(again.token > lease.token, "fencing tokens never go back");
});

conformance!(one_winner_when_many_race, |h: Harness| async move {
    // Sixteen independent handles (their own connections) race for one free lock: exactly
    // one is granted. A claim is one conditional write, not check-then-act.
    let mut handles = vec![];
    for i in 0..16 {
        let store = h.reopen().await;
        handles.push(tokio::spawn(async move {
            let outcome = store
                .leases()
                .acquire(attempt("race", &format!("racer-{i}")))
                .await
                .unwrap();
            matches!(outcome, arbiter_core::lease::AcquireOutcome::Acquired(_))
        }));
    }
    let mut winners = 0;
    for handle in handles {
        winners += usize::from(handle.await.unwrap());
    }
    assert_eq!(winners, 1);
});

conformance!(releases_wake_subscribers, |h: Harness| async move {
    let other = h.reopen().await;
    let lease = granted(h.store.leases().acquire(attempt("n", "x")).await.unwrap());
    let mut subscription = other.changes().subscribe(Topic::Leases).await.unwrap();
    let waiter = tokio::spawn(async move {
        let started = std::time::Instant::now();
        subscription.wait(Duration::from_secs(60)).await.unwrap();
        started.elapsed()
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    h.store.leases().release(&ns(), &n("n"), lease.token).await.unwrap();
    let waited = tokio::time::timeout(Duration::from_secs(30), waiter)
        .await
        .expect("woken")
        .unwrap();
    // Woken by the release, not by the 60 s timeout.
    assert!(waited < Duration::from_secs(60), "{waited:?}");
});
