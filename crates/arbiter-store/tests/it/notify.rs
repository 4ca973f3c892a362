use std::time::Duration;

use arbiter_core::ErrorKind;
use arbiter_core::notify::{DEFAULT_THRESHOLDS, MessageType, Notification, Severity};
use arbiter_store::{AcceptRequest, DeliveryState, Failure};

use crate::{Harness, conformance, ns};

fn notification(kind: &str, dedupe: Option<&str>) -> Notification {
    Notification {
        kind: kind.into(),
        severity: Severity::Warning,
        source: "loop/web".into(),
        title: "round failed".into(),
        body: "exit 1".into(),
        tags: [("repo".to_string(), "web".to_string())].into(),
        dedupe_key: dedupe.map(str::to_string),
    }
}

fn request(n: Notification, channels: &[&str]) -> AcceptRequest {
    AcceptRequest {
        namespace: ns(),
        notification: n,
        targets: channels.iter().map(|c| (c.to_string(), None)).collect(),
        thresholds: DEFAULT_THRESHOLDS.to_vec(),
    }
}

conformance!(
    a_storm_folds_into_escalations_and_one_recovery,
    |h: Harness| async move {
        let notify = h.store.notify();
        let mut sent_at = vec![];
        for i in 1..=37u64 {
            let accepted = notify
                .accept(request(notification("loop.failure", Some("loop/web")), &["ops"]))
                .await
                .unwrap();
            assert_eq!(accepted.count, i);
            if accepted.sent {
                sent_at.push(i);
                assert_eq!(accepted.deliveries.len(), 1);
            } else {
                assert!(accepted.deliveries.is_empty());
            }
        }
        assert_eq!(sent_at, [1, 3, 10, 30]);
        let resolved = notify.resolve(&ns(), "loop/web", Some("green again")).await.unwrap();
        assert_eq!((resolved.count, resolved.deliveries.len()), (37, 1));
        let all = notify.list(&ns(), None, 100).await.unwrap();
        assert_eq!(all.len(), 5, "1, 3, 10, 30 and the recovery");
        let counts: Vec<u64> = all
            .iter()
            .rev()
            .map(|e| e.message.fold.as_ref().unwrap().count)
            .collect();
        assert_eq!(counts, [1, 3, 10, 30, 37]);
        let recovery = &all[0];
        assert_eq!(recovery.message.message_type, MessageType::Recovery);
        assert_eq!(recovery.message.notification.body, "green again");
        assert!(recovery.message.resolved_at.is_some());
        // Resolved: the next failure starts a new condition at 1; resolving twice is not found.
        assert_eq!(
            notify.resolve(&ns(), "loop/web", None).await.unwrap_err().kind,
            ErrorKind::NotFound
        );
        let again = notify
            .accept(request(notification("loop.failure", Some("loop/web")), &["ops"]))
            .await
            .unwrap();
        assert_eq!((again.count, again.sent), (1, true));
    }
);

conformance!(due_keeps_per_channel_order_and_retries, |h: Harness| async move {
    let notify = h.store.notify();
    let a1 = notify
        .accept(request(notification("x", None), &["a", "b"]))
        .await
        .unwrap()
        .deliveries;
    let a2 = notify
        .accept(request(notification("x", None), &["a"]))
        .await
        .unwrap()
        .deliveries;
    let due = notify.due(&ns()).await.unwrap();
    let heads: Vec<(String, i64)> = due.heads.iter().map(|e| (e.channel.clone(), e.id)).collect();
    assert_eq!(
        heads,
        [("a".to_string(), a1[0]), ("b".to_string(), a1[1])],
        "one head per channel, oldest first"
    );
    assert_eq!(
        due.heads[0].message.id,
        format!("default-{}", a1[0]),
        "a stable id for receivers"
    );
    // The head of `a` fails: it stays the head (order kept), retried later.
    let state = notify
        .failed(
            &ns(),
            &[a1[0]],
            &Failure {
                error: "HTTP 503".into(),
                retry_in: Duration::from_secs(60),
                max_age: Duration::from_secs(3600),
            },
        )
        .await
        .unwrap();
    assert_eq!(state, DeliveryState::Pending);
    notify.delivered(&ns(), &[a1[1]]).await.unwrap();
    let due = notify.due(&ns()).await.unwrap();
    assert!(
        due.heads.is_empty(),
        "a's head waits for its retry time; a2 waits behind it"
    );
    assert!(due.next_at.unwrap() > due.now + 50_000);
    let entry = notify.list(&ns(), Some(DeliveryState::Pending), 10).await.unwrap();
    let head = entry.iter().find(|e| e.id == a1[0]).unwrap();
    assert_eq!((head.attempts, head.last_error.as_deref()), (1, Some("HTTP 503")));
    // Past its max age a failure is dead; the next message becomes the head.
    let state = notify
        .failed(
            &ns(),
            &[a1[0]],
            &Failure {
                error: "HTTP 503 again".into(),
                retry_in: Duration::ZERO,
                max_age: Duration::ZERO,
            },
        )
        .await
        .unwrap();
    assert_eq!(state, DeliveryState::Dead);
    let due = notify.due(&ns()).await.unwrap();
    assert_eq!(due.heads.iter().map(|e| e.id).collect::<Vec<_>>(), a2);
    let dead = notify.list(&ns(), Some(DeliveryState::Dead), 10).await.unwrap();
    assert_eq!((dead.len(), dead[0].last_error.as_deref()), (1, Some("HTTP 503 again")));
    // Retry puts it back; retrying what is not dead is a conflict, unknown ids not found.
    let retried = notify.retry(&ns(), a1[0]).await.unwrap();
    assert_eq!((retried.state, retried.attempts), (DeliveryState::Pending, 0));
    assert_eq!(notify.retry(&ns(), a1[1]).await.unwrap_err().kind, ErrorKind::Conflict);
    assert_eq!(
        notify.retry(&ns(), 999_999).await.unwrap_err().kind,
        ErrorKind::NotFound
    );
    assert_eq!(
        notify.due(&ns()).await.unwrap().heads[0].id,
        a1[0],
        "back at the head, in order"
    );
});

conformance!(digests_wait_for_their_window, |h: Harness| async move {
    let notify = h.store.notify();
    let mut digest = request(notification("news", None), &[]);
    digest.targets = vec![("log".into(), Some(Duration::from_millis(400)))];
    let first = notify.accept(digest.clone()).await.unwrap().deliveries;
    let second = notify.accept(digest.clone()).await.unwrap().deliveries;
    let mut due = notify.due(&ns()).await.unwrap();
    due.next_at.expect("a window is open");
    // The window closes by the store's clock; look again until it has (bounded).
    for _ in 0..100 {
        if !due.digests.is_empty() {
            break;
        }
        let window_closes = due.next_at.expect("a window is open");
        tokio::time::sleep(Duration::from_millis((window_closes - due.now).max(0) as u64 + 20)).await;
        due = notify.due(&ns()).await.unwrap();
    }
    let ids: Vec<i64> = due.digests.iter().flatten().map(|e| e.id).collect();
    assert!(ids.contains(&first[0]) && ids.contains(&second[0]), "{ids:?}");
    let group = due.digests.iter().find(|g| g.iter().any(|e| e.id == first[0])).unwrap();
    assert!(
        group[0].message.id.starts_with("default-digest-log-"),
        "{}",
        group[0].message.id
    );
    notify.delivered(&ns(), &ids).await.unwrap();
    assert!(notify.due(&ns()).await.unwrap().digests.is_empty());
});

conformance!(concurrent_repeats_count_exactly, |h: Harness| async move {
    let mut tasks = vec![];
    for _ in 0..4 {
        let store = h.reopen().await;
        tasks.push(tokio::spawn(async move {
            for _ in 0..10 {
                store
                    .notify()
                    .accept(request(notification("loop.failure", Some("k")), &["ops"]))
                    .await
                    .unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let resolved = h.store.notify().resolve(&ns(), "k", None).await.unwrap();
    assert_eq!(resolved.count, 40);
    // 1, 3, 10, 30 were sent, and the recovery: each exactly once.
    assert_eq!(h.store.notify().list(&ns(), None, 100).await.unwrap().len(), 5);
});
