use std::collections::BTreeMap;

use arbiter_core::ErrorKind;
use arbiter_core::log::{ContentType, NewRecord, RecordFields};
use arbiter_store::Topic;

use crate::{Harness, conformance, n, ns};

fn fields(body: &str, key: Option<&str>) -> RecordFields {
    RecordFields {
        kind: "note".into(),
        author: "agent-1".into(),
        body: body.into(),
        content_type: ContentType::Text,
        tags: BTreeMap::from([("area".to_string(), "store".to_string())]),
        trace_id: None,
        idempotency_key: key.map(str::to_string),
    }
}

fn record(stream: &str, body: &str, key: Option<&str>) -> NewRecord {
    NewRecord::new(ns(), n(stream), fields(body, key)).unwrap()
}

conformance!(appends_get_dense_offsets_and_keys_dedupe, |h: Harness| async move {
    let log = h.store.log();
    let a = log.append(record("s", "first", Some("k1"))).await.unwrap();
    let b = log.append(record("s", "second", None)).await.unwrap();
    let again = log.append(record("s", "first, retried", Some("k1"))).await.unwrap();
    assert_eq!((a.offset, a.duplicate), (0, false));
    assert_eq!((b.offset, b.duplicate), (1, false));
    assert_eq!(
        (again.offset, again.duplicate),
        (0, true),
        "the first offset back, nothing written"
    );
    // Keys are per stream.
    assert_eq!(log.append(record("other", "x", Some("k1"))).await.unwrap().offset, 0);
    let records = log.read(&ns(), &n("s"), 0, 100).await.unwrap();
    assert_eq!(records.len(), 2);
    assert_eq!(records[0].body, "first");
    assert_eq!(records[0].idempotency_key.as_deref(), Some("k1"));
    assert_eq!(records[0].tags["area"], "store");
    assert_eq!((records[1].offset, records[1].author.as_str()), (1, "agent-1"));
    assert!(records[1].created_at >= records[0].created_at);
    assert_eq!(log.read(&ns(), &n("s"), 1, 100).await.unwrap().len(), 1);
    assert_eq!(log.read(&ns(), &n("s"), 0, 1).await.unwrap().len(), 1);
    assert!(log.read(&ns(), &n("s"), 2, 100).await.unwrap().is_empty());
    assert!(log.read(&n("team-b"), &n("s"), 0, 100).await.unwrap().is_empty());
    let streams = log.streams(&ns()).await.unwrap();
    let streams: Vec<_> = streams.iter().map(|s| (s.stream.as_str(), s.next_offset)).collect();
    assert_eq!(streams, [("other", 1), ("s", 2)]);
});

conformance!(json_bodies_and_trace_ids_round_trip, |h: Harness| async move {
    let mut r = fields("{\"a\":[1,2]}", None);
    r.content_type = ContentType::Json;
    r.trace_id = Some("4bf92f3577b34da6a3ce929d0e0e4736".into());
    h.store
        .log()
        .append(NewRecord::new(ns(), n("j"), r).unwrap())
        .await
        .unwrap();
    let back = &h.store.log().read(&ns(), &n("j"), 0, 10).await.unwrap()[0];
    assert_eq!(back.content_type, ContentType::Json);
    assert_eq!(back.body, "{\"a\":[1,2]}");
    assert_eq!(back.trace_id.as_deref(), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
});

conformance!(consumers_commit_offsets, |h: Harness| async move {
    let log = h.store.log();
    for i in 0..3 {
        log.append(record("c", &format!("r{i}"), None)).await.unwrap();
    }
    assert!(log.consumers(&ns(), &n("c")).await.unwrap().is_empty());
    let info = log.commit(&ns(), &n("c"), &n("render"), 2).await.unwrap();
    assert_eq!((info.offset, info.consumer.as_str()), (2, "render"));
    log.commit(&ns(), &n("c"), &n("audit"), 3).await.unwrap();
    log.commit(&ns(), &n("c"), &n("render"), 3).await.unwrap();
    let consumers: Vec<_> = log
        .consumers(&ns(), &n("c"))
        .await
        .unwrap()
        .into_iter()
        .map(|c| (c.consumer.into_string(), c.offset))
        .collect();
    assert_eq!(consumers, [("audit".to_string(), 3), ("render".to_string(), 3)]);
    let err = log.commit(&ns(), &n("c"), &n("render"), 4).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::BadInput);
    assert!(err.message.contains("0 to 3"), "{}", err.message);
    assert_eq!(
        log.commit(&ns(), &n("c"), &n("render"), -1).await.unwrap_err().kind,
        ErrorKind::BadInput
    );
    // Committing to an empty (unknown) stream allows only 0.
    log.commit(&ns(), &n("empty"), &n("x"), 0).await.unwrap();
    assert_eq!(
        log.commit(&ns(), &n("empty"), &n("x"), 1).await.unwrap_err().kind,
        ErrorKind::BadInput
    );
});

conformance!(one_consumer_is_read_directly, |h: Harness| async move {
    use arbiter_core::name::{ConsumerName, Namespace, StreamName};
    let log = h.store.log();
    let ns = Namespace::default();
    let (c, other) = (StreamName::parse("c").unwrap(), StreamName::parse("d").unwrap());
    let render = ConsumerName::parse("render").unwrap();
    log.append(record("c", "r0", None)).await.unwrap();
    assert_eq!(log.consumer(&ns, &c, &render).await.unwrap(), None);
    let committed = log.commit(&ns, &c, &render, 1).await.unwrap();
    log.commit(&ns, &c, &n("audit"), 0).await.unwrap();
    assert_eq!(log.consumer(&ns, &c, &render).await.unwrap(), Some(committed));
    // The same consumer name on another stream, or in another namespace, is another consumer.
    assert_eq!(log.consumer(&ns, &other, &render).await.unwrap(), None);
    let elsewhere = Namespace::parse("elsewhere").unwrap();
    assert_eq!(log.consumer(&elsewhere, &c, &render).await.unwrap(), None);
});

conformance!(
    concurrent_appends_with_retries_keep_each_key_once,
    |h: Harness| async move {
        // Eight handles append 50 keyed records each, every record twice (a retry after a
        // timeout): 400 records, offsets 0..400, each key once.
        let mut tasks = vec![];
        for writer in 0..8 {
            let store = h.reopen().await;
            tasks.push(tokio::spawn(async move {
                for i in 0..50 {
                    let key = format!("w{writer}-{i}");
                    let first = store.log().append(record("busy", &key, Some(&key))).await.unwrap();
                    let retry = store.log().append(record("busy", &key, Some(&key))).await.unwrap();
                    assert_eq!(first.offset, retry.offset);
                    assert!(retry.duplicate);
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        let records = h.store.log().read(&ns(), &n("busy"), 0, 10_000).await.unwrap();
        assert_eq!(records.len(), 400);
        assert!(
            records.iter().enumerate().all(|(i, r)| r.offset == i as i64),
            "dense offsets"
        );
        let keys: std::collections::BTreeSet<_> = records.iter().map(|r| r.idempotency_key.clone().unwrap()).collect();
        assert_eq!(keys.len(), 400);
    }
);

conformance!(appends_wake_subscribers, |h: Harness| async move {
    let other = h.reopen().await;
    let mut subscription = other.changes().subscribe(Topic::Log).await.unwrap();
    let waiter = tokio::spawn(async move {
        let started = std::time::Instant::now();
        subscription.wait(std::time::Duration::from_secs(60)).await.unwrap();
        started.elapsed()
    });
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    h.store.log().append(record("wake", "x", None)).await.unwrap();
    let waited = tokio::time::timeout(std::time::Duration::from_secs(30), waiter)
        .await
        .expect("woken")
        .unwrap();
    assert!(waited < std::time::Duration::from_secs(60), "{waited:?}");
});

conformance!(racing_appends_of_one_key_write_it_once, |h: Harness| async move {
    // Eight handles append the same 20 keys at the same time (eight retries racing, not
    // one after the other): each key is written once and every racer gets its offset.
    let mut tasks = vec![];
    for _ in 0..8 {
        let store = h.reopen().await;
        tasks.push(tokio::spawn(async move {
            let mut offsets = vec![];
            for i in 0..20 {
                let key = format!("k{i}");
                offsets.push(
                    store
                        .log()
                        .append(record("race", &key, Some(&key)))
                        .await
                        .unwrap()
                        .offset,
                );
            }
            offsets
        }));
    }
    let mut seen = vec![];
    for task in tasks {
        seen.push(task.await.unwrap());
    }
    let records = h.store.log().read(&ns(), &n("race"), 0, 1_000).await.unwrap();
    assert_eq!(records.len(), 20, "each key once");
    for (i, r) in records.iter().enumerate() {
        assert_eq!(r.offset, i as i64, "dense offsets");
    }
    for offsets in &seen {
        for (i, offset) in offsets.iter().enumerate() {
            let key = format!("k{i}");
            let stored = records
                .iter()
                .find(|r| r.idempotency_key.as_deref() == Some(&key))
                .unwrap();
            assert_eq!(*offset, stored.offset, "every racer is told the offset of {key}");
        }
    }
});
