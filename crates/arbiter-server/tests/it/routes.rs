//! The routes of limits, logs, decisions, notifications, status and the admin routes:
//! success and the errors each can answer.

use arbiter_core::loops::LoopStatus;
use serde_json::json;

use crate::{Api, api_test};

api_test!(limit_routes, |api: Api| async move {
    let bucket = "/v1/ns/default/limits/github%2Focto%2Fcore";
    api.get(bucket).await.error(404, "not_found", None);
    let defined = api.put(bucket, json!({"rate": "10/h", "burst": 2})).await.expect(200);
    assert_eq!(
        (defined["name"].as_str(), defined["burst"].as_u64()),
        (Some("github/octo/core"), Some(2))
    );
    assert_eq!(defined["reserve_percent"], 20);
    let kept = api
        .put(bucket, json!({"rate": "99/h", "if_absent": true}))
        .await
        .expect(200);
    assert_eq!(kept["rate"], "10/h");
    assert_eq!(api.get(bucket).await.expect(200)["tokens"], 2.0);
    assert_eq!(
        api.get("/v1/ns/default/limits")
            .await
            .expect(200)
            .as_array()
            .unwrap()
            .len(),
        1
    );

    let take = "/v1/ns/default/limits/take";
    let taken = api
        .post(
            take,
            json!({"buckets": ["github/octo/core"], "cost": 2, "priority": "interactive"}),
        )
        .await
        .expect(200);
    assert_eq!(taken["granted"], true);
    let limited = api.post(take, json!({"buckets": ["github/octo/core"]})).await;
    let retry_after: u64 = limited.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(retry_after >= 1);
    let body = limited.error(429, "limited", None);
    assert!(body["wait_ms"].as_u64().unwrap() > 0);
    assert_eq!(body["detail"]["limited"]["wait_ms"], body["wait_ms"]);
    api.post(take, json!({"buckets": ["nothing"]}))
        .await
        .error(404, "not_found", None);

    let observed = api
        .post(&format!("{bucket}/observe"), json!({"hit": true, "retry_after": 30}))
        .await
        .expect(200);
    assert!(observed["frozen_until"].is_string());
    api.post("/v1/ns/default/limits/nothing/observe", json!({"remaining": 1}))
        .await
        .error(404, "not_found", None);
    assert_eq!(
        api.get("/v1/ns/default/counters?prefix=github").await.expect(200),
        json!([])
    );
});

api_test!(limit_bad_input_names_the_field, |api: Api| async move {
    let bucket = "/v1/ns/default/limits/b";
    api.put(bucket, json!({"rate": "fast"}))
        .await
        .error(400, "bad_input", Some("rate"));
    api.put(bucket, json!({"rate": "1/s", "burst": 0}))
        .await
        .error(400, "bad_input", None);
    api.put(bucket, json!({"rate": "1/s", "reserve_percent": 101}))
        .await
        .error(400, "bad_input", None);
    let take = "/v1/ns/default/limits/take";
    api.post(take, json!({"buckets": []}))
        .await
        .error(400, "bad_input", None);
    api.post(take, json!({"buckets": ["a b"]}))
        .await
        .error(400, "bad_input", Some("buckets"));
    api.post(take, json!({"buckets": ["b"], "priority": "urgent"}))
        .await
        .error(400, "bad_input", Some("priority"));
    api.post(take, json!({"buckets": ["b"], "wait_ms": 0}))
        .await
        .error(400, "bad_input", Some("wait_ms"));
    for body in [
        json!({"limit": 0}),
        json!({"reset": 4_102_444_801_i64}),
        json!({"retry_after": 86_401}),
    ] {
        api.post("/v1/ns/default/limits/b/observe", body)
            .await
            .error(400, "bad_input", None);
    }
    api.get("/v1/ns/default/counters?prefix=%C2%84")
        .await
        .error(400, "bad_input", Some("prefix"));
    assert_eq!(api.get("/v1/ns/default/limits").await.expect(200), json!([]));
});

api_test!(log_routes, |api: Api| async move {
    let records = "/v1/ns/default/logs/build%2Fevents/records";
    let first = api
        .post(records, json!({"body": "started", "key": "k1", "tags": {"a": "b"}}))
        .await
        .expect(200);
    assert_eq!(
        (first["offset"].as_i64(), first["duplicate"].as_bool()),
        (Some(0), Some(false))
    );
    let again = api
        .post(records, json!({"body": "started", "key": "k1"}))
        .await
        .expect(200);
    assert_eq!(
        (again["offset"].as_i64(), again["duplicate"].as_bool()),
        (Some(0), Some(true))
    );
    let json_record = api.post(records, json!({"body": {"step": 2}})).await.expect(200);
    assert_eq!(json_record["offset"], 1);

    let read = api.get(records).await.expect(200);
    assert_eq!(read.as_array().unwrap().len(), 2);
    assert_eq!(
        (read[0]["body"].as_str(), read[0]["tags"]["a"].as_str()),
        (Some("started"), Some("b"))
    );
    assert_eq!(
        (read[1]["content_type"].as_str(), read[1]["body"].as_str()),
        (Some("json"), Some("{\"step\":2}"))
    );
    let page = api.get(&format!("{records}?from=1&limit=1")).await.expect(200);
    assert_eq!(page[0]["offset"], 1);

    let consumer = "/v1/ns/default/logs/build%2Fevents/consumers/reader";
    let committed = api.put(consumer, json!({"offset": 1})).await.expect(200);
    assert_eq!(committed["offset"], 1);
    let unread = api.get(&format!("{records}?consumer=reader")).await.expect(200);
    assert_eq!(unread[0]["offset"], 1);
    let consumers = api
        .get("/v1/ns/default/logs/build%2Fevents/consumers")
        .await
        .expect(200);
    assert_eq!(consumers[0]["consumer"], "reader");
    let streams = api.get("/v1/ns/default/logs").await.expect(200);
    assert_eq!(
        (streams[0]["stream"].as_str(), streams[0]["next_offset"].as_i64()),
        (Some("build/events"), Some(2))
    );
});

api_test!(log_follow_streams_records_and_resumes, |api: Api| async move {
    let records = "/v1/ns/default/logs/s/records";
    api.post(records, json!({"body": "one"})).await.expect(200);
    let mut events = api.events("/v1/ns/default/logs/s/follow", &[]).await;
    let event = events.next().await.unwrap();
    assert_eq!((event.name.as_str(), event.id.as_deref()), ("record", Some("0")));
    assert_eq!(event.data["body"], "one");
    api.post(records, json!({"body": "two"})).await.expect(200);
    assert_eq!(events.next().await.unwrap().data["body"], "two");
    let mut resumed = api
        .events("/v1/ns/default/logs/s/follow", &[("last-event-id", "0")])
        .await;
    assert_eq!(resumed.next().await.unwrap().data["offset"], 1);
});

api_test!(log_bad_input_names_the_field, |api: Api| async move {
    let records = "/v1/ns/default/logs/s/records";
    api.post(records, json!({"body": "  "}))
        .await
        .error(400, "bad_input", None);
    api.post(records, json!({"body": "{", "json_body": true}))
        .await
        .error(400, "bad_input", None);
    api.post(records, json!({})).await.error(400, "bad_input", Some("body"));
    api.get(&format!("{records}?from=-1"))
        .await
        .error(400, "bad_input", Some("from"));
    api.get(&format!("{records}?limit=0"))
        .await
        .error(400, "bad_input", Some("limit"));
    api.get(&format!("{records}?limit=1001"))
        .await
        .error(400, "bad_input", Some("limit"));
    api.get(&format!("{records}?from=1&consumer=c"))
        .await
        .error(400, "bad_input", Some("from"));
    api.get(&format!("{records}?consumer=bad%20name"))
        .await
        .error(400, "bad_input", Some("consumer"));
    api.put("/v1/ns/default/logs/s/consumers/c", json!({"offset": -1}))
        .await
        .error(400, "bad_input", Some("offset"));
    api.get("/v1/ns/default/logs/s/follow?from=-2")
        .await
        .error(400, "bad_input", Some("from"));
    api.get("/v1/ns/default/logs/bad%20stream/records")
        .await
        .error(400, "bad_input", Some("stream"));
    assert_eq!(api.get("/v1/ns/default/logs").await.expect(200), json!([]));
});

api_test!(decision_routes, |api: Api| async move {
    let decided = api
        .post(
            "/v1/ns/default/decisions",
            json!({"text": "Use SQLite by default\nIt needs no server.", "by": "ada", "key": "d1"}),
        )
        .await
        .expect(200);
    assert_eq!(decided["id"], "decision-0");
    let again = api
        .post(
            "/v1/ns/default/decisions",
            json!({"text": "Use SQLite by default", "by": "ada", "key": "d1"}),
        )
        .await
        .expect(200);
    assert_eq!(again["duplicate"], true);
    let rendered = api.get("/v1/ns/default/decisions").await.expect(200);
    assert_eq!(rendered["decisions"], 1);
    assert!(rendered["text"].as_str().unwrap().contains("Use SQLite by default"));

    api.post("/v1/ns/default/decisions", json!({"text": " ", "by": "ada"}))
        .await
        .error(400, "bad_input", Some("text"));
    api.post(
        "/v1/ns/default/decisions",
        json!({"text": "x", "title": "a\nb", "by": "ada"}),
    )
    .await
    .error(400, "bad_input", Some("title"));
    api.post("/v1/ns/default/decisions", json!({"text": "x", "by": "a b"}))
        .await
        .error(400, "bad_input", Some("by"));
    assert_eq!(api.get("/v1/ns/default/decisions").await.expect(200)["decisions"], 1);
});

api_test!(notification_routes, |api: Api| async move {
    let path = "/v1/ns/default/notifications";
    let accepted = api
        .post(
            path,
            json!({"kind": "test.failure", "severity": "critical", "title": "it broke", "dedupe": "broke"}),
        )
        .await
        .expect(200);
    assert_eq!(
        (accepted["sent"].as_bool(), accepted["count"].as_u64()),
        (Some(true), Some(1))
    );
    let id = accepted["deliveries"][0].as_i64().unwrap();
    let listed = api.get(&format!("{path}?state=pending&limit=5")).await.expect(200);
    assert_eq!(listed[0]["id"], id);
    assert_eq!(listed[0]["message"]["notification"]["source"], "local");
    // Only a dead one can be retried.
    api.post(&format!("{path}/{id}/retry"), json!({}))
        .await
        .error(409, "conflict", None);
    api.post(&format!("{path}/999/retry"), json!({}))
        .await
        .error(404, "not_found", None);
    let resolved = api
        .post(&format!("{path}/resolve"), json!({"dedupe_key": "broke"}))
        .await
        .expect(200);
    assert_eq!(resolved["count"], 1);
    api.post(&format!("{path}/resolve"), json!({"dedupe_key": "unknown"}))
        .await
        .error(404, "not_found", None);

    api.post(path, json!({"kind": "test.x", "severity": "dire", "title": "t"}))
        .await
        .error(400, "bad_input", Some("severity"));
    api.post(path, json!({"kind": "other", "severity": "info", "title": "t"}))
        .await
        .error(400, "bad_input", None);
    api.post(
        path,
        json!({"kind": "test.x", "severity": "info", "title": "t", "channel": "nope"}),
    )
    .await
    .error(400, "bad_input", None);
    api.get(&format!("{path}?state=lost"))
        .await
        .error(400, "bad_input", Some("state"));
    api.get(&format!("{path}?limit=0"))
        .await
        .error(400, "bad_input", Some("limit"));
    api.post(&format!("{path}/0/retry"), json!({}))
        .await
        .error(400, "bad_input", Some("id"));
    api.post(&format!("{path}/resolve"), json!({"dedupe_key": "a b"}))
        .await
        .error(400, "bad_input", Some("dedupe_key"));
});

api_test!(status_routes, |api: Api| async move {
    let fleet = api.get("/v1/ns/default/status").await.expect(200);
    assert_eq!(fleet, json!({"loops": [], "github": [], "queues": [], "hosts": []}));
    let mut events = api.events("/v1/ns/default/status/stream", &[]).await;
    let event = events.next().await.unwrap();
    assert_eq!((event.name.as_str(), &event.data), ("status", &fleet));

    // A loop appears, then stops: the stream sends each change.
    let ns = arbiter_core::name::Namespace::default();
    let name: arbiter_core::name::LoopName = "triage".parse().unwrap();
    let holder = arbiter_core::lease::Holder {
        host: "elsewhere".to_string(),
        agent: "watch".to_string(),
        ..Default::default()
    };
    api.store
        .loops()
        .heartbeat(&ns, &name, LoopStatus::Disabled, None, &holder)
        .await
        .unwrap();
    let event = events.next().await.unwrap();
    assert_eq!(
        (
            event.data["loops"][0]["loop"].as_str(),
            event.data["loops"][0]["state"].as_str()
        ),
        (Some("triage"), Some("disabled"))
    );
    let fleet = api.get("/v1/ns/default/status").await.expect(200);
    assert_eq!(fleet["loops"][0]["host"], "elsewhere");
    api.store
        .loops()
        .heartbeat(&ns, &name, LoopStatus::Stopped, None, &holder)
        .await
        .unwrap();
    let event = events.next().await.unwrap();
    assert_eq!(event.data["loops"][0]["state"], "stopped");
    let metrics = api.get("/metrics").await.expect(200);
    let line = r#"arbiter_loops{namespace="default",state="stopped"} 1"#;
    assert!(metrics.as_str().unwrap().lines().any(|l| l == line), "{metrics}");

    api.get("/v1/ns/BAD/status").await.error(400, "bad_input", Some("ns"));
});

api_test!(admin_routes, |api: Api| async move {
    let info = api.get("/v1/store").await.expect(200);
    assert!(["sqlite", "postgres"].contains(&info["backend"].as_str().unwrap()));
    let channels = api.get("/v1/channels").await.expect(200);
    assert_eq!(
        (channels[0]["id"].as_str(), channels[0]["type"].as_str()),
        (Some("hook"), Some("webhook"))
    );
});

api_test!(health_routes, |api: Api| async move {
    assert_eq!(api.get("/healthz").await.expect(200), "ok");
    assert_eq!(api.get("/readyz").await.expect(200), "ok");
});

api_test!(metrics_count_requests_and_read_the_store, |api: Api| async move {
    api.post("/v1/ns/default/leases/m/acquire", json!({"ttl_ms": 30_000}))
        .await
        .expect(200);
    api.put("/v1/ns/default/limits/b", json!({"rate": "1/h"}))
        .await
        .expect(200);
    let take = json!({"buckets": ["b"]});
    api.post("/v1/ns/default/limits/take", take.clone()).await.expect(200);
    api.post("/v1/ns/default/limits/take", take)
        .await
        .error(429, "limited", None);
    api.post(
        "/v1/ns/default/notifications",
        json!({"kind": "test.x", "severity": "info", "title": "t"}),
    )
    .await
    .expect(200);
    api.get("/nowhere").await.error(404, "not_found", None);

    let response = api.http.get(format!("{}/metrics", api.base)).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    let text = response.text().await.unwrap();
    for line in [
        r#"arbiter_http_requests_total{method="POST",route="/v1/ns/{ns}/leases/{name}/acquire",status="200"} 1"#,
        r#"arbiter_http_requests_total{method="POST",route="/v1/ns/{ns}/limits/take",status="429"} 1"#,
        r#"arbiter_http_requests_total{method="GET",route="unmatched",status="404"} 1"#,
        r#"arbiter_http_request_duration_seconds_count{method="PUT",route="/v1/ns/{ns}/limits/{name}",status="200"} 1"#,
        r#"arbiter_limit_takes_total{namespace="default",outcome="granted"} 1"#,
        r#"arbiter_limit_takes_total{namespace="default",outcome="limited"} 1"#,
        r#"arbiter_leases_held{namespace="default"} 1"#,
        r#"arbiter_outbox_pending{namespace="default"} 1"#,
        r#"arbiter_limit_bucket_tokens{namespace="default",bucket="b"} 0.0"#,
    ] {
        assert!(text.lines().any(|l| l == line), "no line {line:?} in:\n{text}");
    }
    assert!(
        text.contains("arbiter_outbox_oldest_pending_age_seconds{namespace=\"default\"}"),
        "{text}"
    );
    assert!(text.trim_end().ends_with("# EOF"));

    // Released: the gauge is read afresh at the next scrape.
    let show = api.get("/v1/ns/default/leases/m").await.expect(200);
    let token = show["holders"][0]["token"].clone();
    api.post("/v1/ns/default/leases/m/release", json!({"token": token}))
        .await
        .expect(200);
    let text = api.get("/metrics").await.expect(200);
    assert!(
        text.as_str()
            .unwrap()
            .contains(r#"arbiter_leases_held{namespace="default"} 0"#),
        "{text}"
    );
});

api_test!(request_ids_are_made_or_kept, |api: Api| async move {
    let made = api.get("/healthz").await;
    let id = made.headers["x-request-id"].to_str().unwrap().to_string();
    assert_eq!(id.len(), 36, "a UUID: {id}");
    let kept = api
        .send(
            api.request(reqwest::Method::GET, "/healthz")
                .header("x-request-id", "abc-123"),
        )
        .await;
    assert_eq!(kept.headers["x-request-id"], "abc-123");
});
