//! Work items on the worker's side, against real stores: a waiting claim wakes on a push
//! and on a delayed item's time without polling, and a held claim outlives its lease by
//! heartbeats.

use std::time::Duration;

use arbiter_client::queue::{claim, hold};
use arbiter_core::queue::{ClaimOutcome, ClaimRequest, ItemState, NewItem, NotBefore};
use arbiter_testkit::each_backend;

use crate::{me, n, ns, open};

/// A bound for waits that end much sooner (a missed wake-up would sleep 30 s); never a
/// timing assertion.
const BOUND: Duration = Duration::from_secs(20);

fn item(queue: &str, body: &str) -> NewItem {
    NewItem::new(ns(), n(queue), body.into(), None, 0, vec![], None, 5).unwrap()
}

fn request(queue: &str, lease: Duration) -> ClaimRequest {
    ClaimRequest {
        namespace: ns(),
        queue: n(queue),
        holder: me("worker"),
        capabilities: vec![],
        lease,
    }
}

each_backend!(a_waiting_claim_wakes_at_a_push, |url: String| async move {
    let store = open(&url).await;
    let other = open(&url).await;
    let req = request("jobs", Duration::from_secs(30));
    // Nothing yet: a try returns at once with nothing.
    assert!(claim(&store, &req, None).await.unwrap().grant.is_none());
    let waiter = tokio::spawn(async move { claim(&store, &req, Some(Duration::from_secs(60))).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let pushed = other.queue().push(&item("jobs", "work")).await.unwrap();
    let result = tokio::time::timeout(BOUND, waiter)
        .await
        .expect("woken by the push")
        .unwrap()
        .unwrap();
    let grant = result.grant.expect("the pushed item");
    assert_eq!((grant.claim.id, grant.claim.body.as_str()), (pushed.id, "work"));
});

each_backend!(
    a_waiting_claim_takes_a_delayed_item_when_it_is_due,
    |url: String| async move {
        let store = open(&url).await;
        let delayed = store
            .queue()
            .push(&NewItem {
                not_before: Some(NotBefore::After(Duration::from_millis(300))),
                ..item("later", "due soon")
            })
            .await
            .unwrap();
        let req = request("later", Duration::from_secs(30));
        // No push comes: the store's next_at is what wakes the wait.
        let result = tokio::time::timeout(BOUND, claim(&store, &req, Some(Duration::from_secs(60))))
            .await
            .expect("taken when due, not after a long nap")
            .unwrap();
        assert_eq!(result.grant.expect("the delayed item").claim.id, delayed.id);
    }
);

each_backend!(
    a_held_claim_outlives_its_lease_by_heartbeats,
    |url: String| async move {
        let store = open(&url).await;
        let id = store.queue().push(&item("held", "long work")).await.unwrap().id;
        let grant = claim(&store, &request("held", Duration::from_secs(2)), None)
            .await
            .unwrap()
            .grant
            .expect("claimed");
        let token = grant.claim.token;
        let held = hold(&store, grant, Duration::from_millis(20));
        tokio::time::sleep(Duration::from_millis(5000)).await;
        assert!(held.is_lost().is_none(), "{:?}", held.is_lost());
        // Past two leases the item is still this worker's.
        let other = store
            .queue()
            .claim(&request("held", Duration::from_secs(30)))
            .await
            .unwrap();
        assert!(matches!(other.outcome, ClaimOutcome::Empty { .. }), "{other:?}");
        drop(held);
        let done = store.queue().done(&ns(), id, token, Some("ok")).await.unwrap();
        assert_eq!(done.state, ItemState::Done);
        assert_eq!(store.queue().show(&ns(), id).await.unwrap().attempts.len(), 1);
    }
);
