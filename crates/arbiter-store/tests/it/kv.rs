use std::time::Duration;

use arbiter_core::kv::EventType;
use arbiter_core::name::Namespace;
use arbiter_core::{Detail, ErrorKind};
use arbiter_store::Topic;

use crate::{Harness, conformance, n, ns};

conformance!(put_get_and_versions, |h: Harness| async move {
    let kv = h.store.kv();
    assert_eq!(kv.revision(&ns()).await.unwrap(), 0);
    assert_eq!(kv.get(&ns(), &n("a")).await.unwrap(), None);
    let v1 = kv.put(&ns(), &n("a"), "one", None).await.unwrap();
    let v2 = kv.put(&ns(), &n("b"), "two", None).await.unwrap();
    assert!(v2 > v1, "one revision counter per namespace");
    let v3 = kv.put(&ns(), &n("a"), "uno", None).await.unwrap();
    let a = kv.get(&ns(), &n("a")).await.unwrap().unwrap();
    assert_eq!((a.value.as_str(), a.version, a.create_revision), ("uno", v3, v1));
    assert_eq!(kv.revision(&ns()).await.unwrap(), v3);
    // Namespaces do not see each other's keys, and count their own revisions.
    let team_b = Namespace::parse("team-b").unwrap();
    assert_eq!(kv.get(&team_b, &n("a")).await.unwrap(), None);
    assert_eq!(kv.revision(&team_b).await.unwrap(), 0);
    assert_eq!(kv.put(&team_b, &n("a"), "b's", None).await.unwrap(), 1);
    assert_eq!(kv.revision(&team_b).await.unwrap(), 1);
    assert_eq!(kv.revision(&ns()).await.unwrap(), v3);
    let events = kv.events(&team_b, &"".parse().unwrap(), 1, 10).await.unwrap();
    assert_eq!(events.iter().map(|e| e.version).collect::<Vec<_>>(), [1]);
});

conformance!(compare_and_swap, |h: Harness| async move {
    let kv = h.store.kv();
    let v1 = kv.put(&ns(), &n("k"), "1", Some(0)).await.unwrap();
    let err = kv.put(&ns(), &n("k"), "again", Some(0)).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Conflict);
    assert!(
        err.message.contains(&format!("at version {v1}, not 0")),
        "{}",
        err.message
    );
    // The version the key has now comes as data, for a front end to return.
    assert_eq!(err.detail.as_deref(), Some(&Detail::Conflict { current_version: v1 }));
    let v2 = kv.put(&ns(), &n("k"), "2", Some(v1)).await.unwrap();
    let err = kv.put(&ns(), &n("k"), "stale", Some(v1)).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Conflict);
    assert_eq!(err.detail.as_deref(), Some(&Detail::Conflict { current_version: v2 }));
    assert_eq!(kv.get(&ns(), &n("k")).await.unwrap().unwrap().value, "2");
    let err = kv.put(&ns(), &n("missing"), "x", Some(5)).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Conflict);
    assert!(err.message.contains("does not exist"), "{}", err.message);
    assert_eq!(err.detail.as_deref(), Some(&Detail::Conflict { current_version: 0 }));
    // Failed writes consume no revision.
    assert_eq!(kv.revision(&ns()).await.unwrap(), v2);
    let err = kv.delete(&ns(), &n("k"), Some(v1)).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Conflict);
    assert_eq!(err.detail.as_deref(), Some(&Detail::Conflict { current_version: v2 }));
    let d = kv.delete(&ns(), &n("k"), Some(v2)).await.unwrap();
    assert!(d > v2);
    assert_eq!(
        kv.delete(&ns(), &n("k"), None).await.unwrap_err().kind,
        ErrorKind::NotFound
    );
    assert_eq!(kv.get(&ns(), &n("k")).await.unwrap(), None);
});

conformance!(list_by_prefix, |h: Harness| async move {
    let kv = h.store.kv();
    for key in ["cfg/b", "cfg/a", "cfg_x", "other"] {
        kv.put(&ns(), &n(key), key, None).await.unwrap();
    }
    let keys = |prefix: &'static str| {
        let kv = h.store.kv();
        async move {
            kv.list(&ns(), &n(prefix))
                .await
                .unwrap()
                .into_iter()
                .map(|k| k.key)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(keys("cfg/").await, ["cfg/a", "cfg/b"]);
    assert_eq!(keys("cfg").await, ["cfg/a", "cfg/b", "cfg_x"]);
    assert_eq!(keys("").await.len(), 4);
    // `_` is no wildcard ("cfg_x" is not under "cfg/"), and `%` cannot reach the store:
    // a prefix is a `Prefix`, which refuses it.
    assert_eq!(keys("cfg_").await, ["cfg_x"]);
    assert!(arbiter_core::name::Prefix::parse("cfg%").is_err());
});

conformance!(events_replay_changes_in_order, |h: Harness| async move {
    let kv = h.store.kv();
    let v1 = kv.put(&ns(), &n("w/a"), "1", None).await.unwrap();
    kv.put(&ns(), &n("elsewhere"), "x", None).await.unwrap();
    let v3 = kv.put(&ns(), &n("w/a"), "2", None).await.unwrap();
    let v4 = kv.delete(&ns(), &n("w/a"), None).await.unwrap();
    let events = kv.events(&ns(), &n("w/"), 1, 100).await.unwrap();
    let seen: Vec<_> = events.iter().map(|e| (e.kind, e.version, e.value.clone())).collect();
    assert_eq!(
        seen,
        [
            (EventType::Put, v1, Some("1".to_string())),
            (EventType::Put, v3, Some("2".to_string())),
            (EventType::Delete, v4, None)
        ]
    );
    assert_eq!(kv.events(&ns(), &n("w/"), v3, 100).await.unwrap().len(), 2);
    assert_eq!(kv.events(&ns(), &n("w/"), 1, 1).await.unwrap().len(), 1);
    assert!(kv.events(&ns(), &n("w/"), v4 + 1, 100).await.unwrap().is_empty());
});

conformance!(puts_wake_subscribers, |h: Harness| async move {
    let other = h.reopen().await;
    let mut subscription = other.changes().subscribe(Topic::Kv).await.unwrap();
    let waiter = tokio::spawn(async move {
        let started = std::time::Instant::now();
        subscription.wait(Duration::from_secs(60)).await.unwrap();
        started.elapsed()
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    h.store.kv().put(&ns(), &n("x"), "1", None).await.unwrap();
    let waited = tokio::time::timeout(Duration::from_secs(30), waiter)
        .await
        .expect("woken")
        .unwrap();
    assert!(waited < Duration::from_secs(60), "{waited:?}");
});

conformance!(
    concurrent_compare_and_swap_never_loses_an_increment,
    |h: Harness| async move {
        // Eight independent handles each add 25 with get + put-if-version retries.
        let mut tasks = vec![];
        for _ in 0..8 {
            let store = h.reopen().await;
            tasks.push(tokio::spawn(async move {
                let mut done = 0;
                let mut attempts = 0;
                while done < 25 {
                    attempts += 1;
                    assert!(attempts < 10_000, "bounded retries");
                    let current = store.kv().get(&ns(), &n("n")).await.unwrap();
                    let (value, version) = current
                        .map(|kv| (kv.value.parse::<u64>().unwrap(), kv.version))
                        .unwrap_or((0, 0));
                    match store
                        .kv()
                        .put(&ns(), &n("n"), &(value + 1).to_string(), Some(version))
                        .await
                    {
                        Ok(_) => done += 1,
                        Err(err) => assert_eq!(err.kind, ErrorKind::Conflict),
                    }
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        assert_eq!(h.store.kv().get(&ns(), &n("n")).await.unwrap().unwrap().value, "200");
    }
);
