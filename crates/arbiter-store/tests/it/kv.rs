use std::time::Duration;

use arbiter_core::ErrorKind;
use arbiter_core::kv::EventType;
use arbiter_core::name::Namespace;
use arbiter_store::Topic;

use crate::{Harness, conformance};

conformance!(put_get_and_versions, |h: Harness| async move {
    let kv = h.store.kv();
    let default = Namespace::parse("default").unwrap();
    assert_eq!(kv.revision(&default).await.unwrap(), 0);
    assert_eq!(kv.get("default", "a").await.unwrap(), None);
    let v1 = kv.put("default", "a", "one", None).await.unwrap();
    let v2 = kv.put("default", "b", "two", None).await.unwrap();
    assert!(v2 > v1, "one revision counter per namespace");
    let v3 = kv.put("default", "a", "uno", None).await.unwrap();
    let a = kv.get("default", "a").await.unwrap().unwrap();
    assert_eq!((a.value.as_str(), a.version, a.create_revision), ("uno", v3, v1));
    assert_eq!(kv.revision(&default).await.unwrap(), v3);
    // Namespaces do not see each other's keys, and count their own revisions.
    assert_eq!(kv.get("team-b", "a").await.unwrap(), None);
    let team_b = Namespace::parse("team-b").unwrap();
    assert_eq!(kv.revision(&team_b).await.unwrap(), 0);
    assert_eq!(kv.put("team-b", "a", "b's", None).await.unwrap(), 1);
    assert_eq!(kv.revision(&team_b).await.unwrap(), 1);
    assert_eq!(kv.revision(&default).await.unwrap(), v3);
    let events = kv.events("team-b", "", 1, 10).await.unwrap();
    assert_eq!(events.iter().map(|e| e.version).collect::<Vec<_>>(), [1]);
});

conformance!(compare_and_swap, |h: Harness| async move {
    let kv = h.store.kv();
    let v1 = kv.put("default", "k", "1", Some(0)).await.unwrap();
    let err = kv.put("default", "k", "again", Some(0)).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Conflict);
    assert!(
        err.message.contains(&format!("at version {v1}, not 0")),
        "{}",
        err.message
    );
    let v2 = kv.put("default", "k", "2", Some(v1)).await.unwrap();
    assert_eq!(
        kv.put("default", "k", "stale", Some(v1)).await.unwrap_err().kind,
        ErrorKind::Conflict
    );
    assert_eq!(kv.get("default", "k").await.unwrap().unwrap().value, "2");
    let err = kv.put("default", "missing", "x", Some(5)).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Conflict);
    assert!(err.message.contains("does not exist"), "{}", err.message);
    // Failed writes consume no revision.
    assert_eq!(kv.revision(&Namespace::parse("default").unwrap()).await.unwrap(), v2);
    assert_eq!(
        kv.delete("default", "k", Some(v1)).await.unwrap_err().kind,
        ErrorKind::Conflict
    );
    let d = kv.delete("default", "k", Some(v2)).await.unwrap();
    assert!(d > v2);
    assert_eq!(
        kv.delete("default", "k", None).await.unwrap_err().kind,
        ErrorKind::NotFound
    );
    assert_eq!(kv.get("default", "k").await.unwrap(), None);
});

conformance!(list_by_prefix, |h: Harness| async move {
    let kv = h.store.kv();
    for key in ["cfg/b", "cfg/a", "cfg_x", "other"] {
        kv.put("default", key, key, None).await.unwrap();
    }
    let keys = |prefix: &'static str| {
        let kv = h.store.kv();
        async move {
            kv.list("default", prefix)
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
    assert!(keys("cfg%").await.is_empty());
});

conformance!(events_replay_changes_in_order, |h: Harness| async move {
    let kv = h.store.kv();
    let v1 = kv.put("default", "w/a", "1", None).await.unwrap();
    kv.put("default", "elsewhere", "x", None).await.unwrap();
    let v3 = kv.put("default", "w/a", "2", None).await.unwrap();
    let v4 = kv.delete("default", "w/a", None).await.unwrap();
    let events = kv.events("default", "w/", 1, 100).await.unwrap();
    let seen: Vec<_> = events.iter().map(|e| (e.kind, e.version, e.value.clone())).collect();
    assert_eq!(
        seen,
        [
            (EventType::Put, v1, Some("1".to_string())),
            (EventType::Put, v3, Some("2".to_string())),
            (EventType::Delete, v4, None)
        ]
    );
    assert_eq!(kv.events("default", "w/", v3, 100).await.unwrap().len(), 2);
    assert_eq!(kv.events("default", "w/", 1, 1).await.unwrap().len(), 1);
    assert!(kv.events("default", "w/", v4 + 1, 100).await.unwrap().is_empty());
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
    h.store.kv().put("default", "x", "1", None).await.unwrap();
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
                    let current = store.kv().get("default", "n").await.unwrap();
                    let (value, version) = current
                        .map(|kv| (kv.value.parse::<u64>().unwrap(), kv.version))
                        .unwrap_or((0, 0));
                    match store
                        .kv()
                        .put("default", "n", &(value + 1).to_string(), Some(version))
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
        assert_eq!(h.store.kv().get("default", "n").await.unwrap().unwrap().value, "200");
    }
);
