//! The client's operations against real stores (both backends) and real processes.
#![cfg(unix)] // Real processes stand in for holders (`sleep`, process groups).

use std::process::{Child, Command};
use std::time::Duration;

use arbiter_client::lease::{HeldLease, acquire};
use arbiter_core::lease::{AcquireOutcome, AcquireRequest, Attempt, Holder};
use arbiter_core::name::Namespace;
use arbiter_core::{Detail, ErrorKind, ParseError};
use arbiter_store::{Store, StoreUrl};
use arbiter_testkit::each_backend;

mod limit;
mod queue;

async fn open(url: &str) -> Store {
    Store::open(&StoreUrl::parse(url).unwrap()).await.unwrap()
}

fn ns() -> Namespace {
    Namespace::default()
}

/// A name of the type the call takes; the tests' names are valid.
fn n<T: std::str::FromStr<Err = ParseError>>(text: &str) -> T {
    text.parse().unwrap()
}

fn me(agent: &str) -> Holder {
    arbiter_process::holder_for(arbiter_process::current_pid(), agent).unwrap()
}

fn request(name: &str, holder: Holder, ttl: Duration, wait: Option<Duration>) -> AcquireRequest {
    AcquireRequest {
        namespace: ns(),
        name: n(name),
        holder,
        ttl,
        slots: 1,
        wait,
    }
}

/// A real process to stand for a holder; killed and reaped on drop.
struct Sleeper(Child);

impl Sleeper {
    fn start() -> Sleeper {
        Sleeper(Command::new("sleep").arg("300").spawn().unwrap())
    }
    fn holder(&self, agent: &str) -> Holder {
        arbiter_process::holder_for(self.0.id(), agent).unwrap()
    }
    fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Sleeper {
    fn drop(&mut self) {
        self.kill();
    }
}

each_backend!(a_waiter_gets_the_lease_when_it_is_released, |url: String| async move {
    let store = open(&url).await;
    let first = acquire(&store, request("w", me("first"), Duration::from_secs(60), None))
        .await
        .unwrap();
    let other = open(&url).await;
    let waiter = tokio::spawn(async move {
        acquire(
            &other,
            request(
                "w",
                me("second"),
                Duration::from_secs(60),
                Some(Duration::from_secs(30)),
            ),
        )
        .await
    });
    // The waiter is queued (visible in `show`) before the release.
    for _ in 0..500 {
        if !store.leases().show(&ns(), &n("w")).await.unwrap().waiters.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(store.leases().show(&ns(), &n("w")).await.unwrap().waiters.len(), 1);
    store.leases().release(&ns(), &n("w"), first.lease.token).await.unwrap();
    let second = waiter.await.unwrap().unwrap();
    assert!(second.lease.token > first.lease.token);
    assert_eq!(second.lease.holder.agent, "second");
});

each_backend!(
    a_wait_that_runs_out_is_held_and_leaves_the_queue,
    |url: String| async move {
        let store = open(&url).await;
        acquire(&store, request("o", me("holder"), Duration::from_secs(60), None))
            .await
            .unwrap();
        let err = acquire(
            &store,
            request(
                "o",
                me("late"),
                Duration::from_secs(60),
                Some(Duration::from_millis(300)),
            ),
        )
        .await
        .unwrap_err();
        assert_eq!(err.kind, ErrorKind::Held);
        assert!(err.message.contains("gave up after waiting 300ms"), "{}", err.message);
        assert!(err.message.contains("is held by holder (pid"), "{}", err.message);
        assert!(store.leases().show(&ns(), &n("o")).await.unwrap().waiters.is_empty());
    }
);

each_backend!(
    a_busy_lease_says_who_holds_it_and_how_many_wait_as_data,
    |url: String| async move {
        let store = open(&url).await;
        let holder = acquire(&store, request("h", me("holder"), Duration::from_secs(60), None))
            .await
            .unwrap();
        let err = acquire(&store, request("h", me("late"), Duration::from_secs(60), None))
            .await
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::Held);
        assert_eq!(
            err.detail.as_deref(),
            Some(&Detail::Held {
                holders: vec![holder.lease.clone()],
                waiters_ahead: 0
            })
        );
        // A request queued elsewhere (another host): a try counts it ahead.
        let mut remote = me("queued");
        remote.host = "another-host".into();
        let queued = store
            .leases()
            .acquire(Attempt::from(request(
                "h",
                remote,
                Duration::from_secs(60),
                Some(Duration::from_secs(60)),
            )))
            .await
            .unwrap();
        assert!(matches!(queued, AcquireOutcome::Busy(ref busy) if busy.ticket.is_some()));
        let err = acquire(&store, request("h", me("late"), Duration::from_secs(60), None))
            .await
            .unwrap_err();
        assert!(err.message.ends_with("; 1 waiting"), "{}", err.message);
        match err.detail.as_deref() {
            Some(Detail::Held { holders, waiters_ahead }) => {
                assert_eq!(
                    holders.iter().map(|l| l.token).collect::<Vec<_>>(),
                    [holder.lease.token]
                );
                assert_eq!(*waiters_ahead, 1);
            }
            other => panic!("expected a Held detail, got {other:?}"),
        }
    }
);

each_backend!(
    an_expiring_holder_lets_a_waiter_in_after_its_ttl,
    |url: String| async move {
        let store = open(&url).await;
        // Recorded on another host: nobody here can prove it dead, so only its TTL frees it.
        let mut elsewhere = me("remote");
        elsewhere.host = "another-host".into();
        let first = acquire(&store, request("x", elsewhere, Duration::from_millis(500), None))
            .await
            .unwrap();
        let err = acquire(&store, request("x", me("local"), Duration::from_secs(60), None))
            .await
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::Held);
        let second = acquire(
            &store,
            request("x", me("local"), Duration::from_secs(60), Some(Duration::from_secs(20))),
        )
        .await
        .unwrap();
        assert!(second.lease.token > first.lease.token);
    }
);

each_backend!(
    a_dead_holder_on_this_host_is_taken_over_at_once,
    |url: String| async move {
        let store = open(&url).await;
        let mut sleeper = Sleeper::start();
        let dead = acquire(
            &store,
            request("d", sleeper.holder("doomed"), Duration::from_secs(3600), None),
        )
        .await
        .unwrap();
        // Alive: the lease is held.
        let err = acquire(&store, request("d", me("next"), Duration::from_secs(60), None))
            .await
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::Held);
        sleeper.kill();
        // Dead (and no process group recorded): taken over without waiting for the hour.
        let next = acquire(&store, request("d", me("next"), Duration::from_secs(60), None))
            .await
            .unwrap();
        assert!(next.lease.token > dead.lease.token);
    }
);

each_backend!(a_reused_pid_is_not_mistaken_for_the_holder, |url: String| async move {
    let store = open(&url).await;
    // Our own pid is alive; with a different start time it is another process.
    let mut impostor = me("old");
    impostor.start_time += 1;
    acquire(&store, request("p", impostor, Duration::from_secs(3600), None))
        .await
        .unwrap();
    let taken = acquire(&store, request("p", me("new"), Duration::from_secs(60), None))
        .await
        .unwrap();
    assert_eq!(taken.lease.holder.agent, "new");
    // With the matching start time it is the holder, alive.
    let err = acquire(&store, request("p", me("third"), Duration::from_secs(60), None))
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Held);
});

each_backend!(
    a_live_process_group_keeps_a_dead_holder_alive,
    |url: String| async move {
        let store = open(&url).await;
        let mut leader = Sleeper::start();
        let mut group_member = {
            use std::os::unix::process::CommandExt;
            Sleeper(Command::new("sleep").arg("300").process_group(0).spawn().unwrap())
        };
        let mut holder = leader.holder("dying");
        holder.pgid = Some(group_member.0.id());
        acquire(&store, request("g", holder, Duration::from_secs(3600), None))
            .await
            .unwrap();
        leader.kill();
        // The holder process is gone but its command's group is not: still held.
        let err = acquire(&store, request("g", me("next"), Duration::from_secs(60), None))
            .await
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::Held);
        group_member.kill();
        acquire(&store, request("g", me("next"), Duration::from_secs(60), None))
            .await
            .unwrap();
    }
);

each_backend!(
    keep_alive_holds_past_the_ttl_and_reports_a_loss,
    |url: String| async move {
        let store = open(&url).await;
        let mut held = HeldLease::acquire(
            &store,
            request("k", me("keeper"), Duration::from_millis(600), None),
            Duration::ZERO,
        )
        .await
        .unwrap();
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let mut remote = me("remote");
        remote.host = "another-host".into();
        let err = acquire(&store, request("k", remote.clone(), Duration::from_secs(60), None))
            .await
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::Held, "renewed past its 600ms TTL");
        // Someone removes it (as a same-host takeover would): the keeper hears of the loss.
        let taken = store
            .leases()
            .acquire(Attempt {
                reclaim_tokens: vec![held.token()],
                ..Attempt::from(request("k", remote, Duration::from_secs(60), None))
            })
            .await
            .unwrap();
        assert!(matches!(taken, AcquireOutcome::Acquired(_)));
        let lost = tokio::time::timeout(Duration::from_secs(10), held.lost())
            .await
            .expect("loss reported");
        assert_eq!(lost.kind, ErrorKind::Lost);
    }
);

each_backend!(watch_delivers_changes_in_order, |url: String| async move {
    let store = open(&url).await;
    store.kv().put(&ns(), &n("old/a"), "before", None).await.unwrap();
    let mut watch = arbiter_client::kv::Watch::start(&store, &ns(), &n("cfg/"), None)
        .await
        .unwrap();
    let writer = open(&url).await;
    let task = tokio::spawn(async move {
        for i in 0..3 {
            writer.kv().put(&ns(), &n("cfg/x"), &i.to_string(), None).await.unwrap();
            writer.kv().put(&ns(), &n("other"), "noise", None).await.unwrap();
        }
    });
    let mut values = vec![];
    while values.len() < 3 {
        let batch = tokio::time::timeout(Duration::from_secs(10), watch.next())
            .await
            .expect("events")
            .unwrap();
        values.extend(batch.into_iter().map(|e| e.value.unwrap()));
    }
    task.await.unwrap();
    assert_eq!(values, ["0", "1", "2"]);
    // Replaying from revision 1 starts with history.
    let mut replay = arbiter_client::kv::Watch::start(&store, &ns(), &n("old/"), Some(1))
        .await
        .unwrap();
    assert_eq!(replay.next().await.unwrap()[0].value.as_deref(), Some("before"));
});
