use serde_json::json;

use crate::{Api, api_test};

api_test!(kv_routes, |api: Api| async move {
    let path = "/v1/ns/default/kv/config%2Fmode";
    api.get(path).await.error(404, "not_found", None);
    let put = api
        .put(path, json!({"value": "fast", "if_version": 0}))
        .await
        .expect(200);
    assert_eq!(put["key"], "config/mode");
    let version = put["version"].as_i64().unwrap();
    let conflict = api
        .put(path, json!({"value": "slow", "if_version": 0}))
        .await
        .error(409, "conflict", None);
    assert_eq!(conflict["detail"]["conflict"]["current_version"], version);

    let got = api.get(path).await.expect(200);
    assert_eq!(
        (got["value"].as_str(), got["version"].as_i64()),
        (Some("fast"), Some(version))
    );
    let listed = api.get("/v1/ns/default/kv?prefix=config%2F").await.expect(200);
    assert_eq!(listed.as_array().unwrap().len(), 1);

    api.delete(&format!("{path}?if_version={}", version + 1))
        .await
        .error(409, "conflict", None);
    let deleted = api.delete(&format!("{path}?if_version={version}")).await.expect(200);
    assert_eq!(deleted["deleted"], true);
    api.delete(path).await.error(404, "not_found", None);
    assert_eq!(api.get("/v1/ns/default/kv").await.expect(200), json!([]));
});

api_test!(kv_bad_input_names_the_field, |api: Api| async move {
    let path = "/v1/ns/default/kv/k";
    api.put(path, json!({})).await.error(400, "bad_input", Some("value"));
    api.put(path, json!({"value": "v", "if_version": -1}))
        .await
        .error(400, "bad_input", Some("if_version"));
    api.put(path, json!({"value": "x".repeat((1 << 20) + 1)}))
        .await
        .error(400, "bad_input", Some("value"));
    api.delete(&format!("{path}?if_version=0"))
        .await
        .error(400, "bad_input", Some("if_version"));
    api.delete(&format!("{path}?if_version=x"))
        .await
        .error(400, "bad_input", Some("if_version"));
    api.get("/v1/ns/default/kv/bad%20key")
        .await
        .error(400, "bad_input", Some("key"));
    api.get("/v1/ns/default/watch/kv?from=0")
        .await
        .error(400, "bad_input", Some("from"));
    api.send(
        api.request(reqwest::Method::GET, "/v1/ns/default/watch/kv")
            .header("last-event-id", "x"),
    )
    .await
    .error(400, "bad_input", Some("Last-Event-ID"));
    api.send(
        api.request(reqwest::Method::GET, "/v1/ns/default/watch/kv")
            .header("last-event-id", i64::MAX.to_string()),
    )
    .await
    .error(400, "bad_input", Some("Last-Event-ID"));
    assert_eq!(api.get("/v1/ns/default/kv").await.expect(200), json!([]));
});

api_test!(kv_watch_streams_changes_and_resumes, |api: Api| async move {
    let first = api
        .put("/v1/ns/default/kv/w%2Fa", json!({"value": "1"}))
        .await
        .expect(200);
    api.put("/v1/ns/default/kv/other", json!({"value": "x"}))
        .await
        .expect(200);
    let from = first["version"].as_i64().unwrap();
    let mut events = api
        .events(&format!("/v1/ns/default/watch/kv?prefix=w%2F&from={from}"), &[])
        .await;
    let event = events.next().await.unwrap();
    assert_eq!(event.name, "kv");
    assert_eq!(event.id.as_deref(), Some(from.to_string().as_str()));
    assert_eq!(
        (event.data["type"].as_str(), event.data["key"].as_str()),
        (Some("put"), Some("w/a"))
    );
    // A change after the stream opened arrives too.
    let deleted = api.delete("/v1/ns/default/kv/w%2Fa").await.expect(200);
    let event = events.next().await.unwrap();
    assert_eq!(event.data["type"], "delete");
    assert_eq!(event.data["version"], deleted["version"]);

    // Reconnecting with Last-Event-ID resumes after that revision.
    let mut resumed = api
        .events(
            "/v1/ns/default/watch/kv?prefix=w%2F&from=1",
            &[("last-event-id", &from.to_string())],
        )
        .await;
    let event = resumed.next().await.unwrap();
    assert_eq!(event.data["version"], deleted["version"]);

    // Shutdown ends the streams.
    api.server.shutdown().await.unwrap();
    assert!(events.next().await.is_none());
    assert!(resumed.next().await.is_none());
});

api_test!(kv_takes_a_value_at_its_limit_escaped, |api: Api| async move {
    // 1 MiB of control characters: six bytes each once JSON-escaped.
    let value = "\u{1}".repeat(1 << 20);
    let put = api
        .put("/v1/ns/default/kv/big", json!({"value": value}))
        .await
        .expect(200);
    assert_eq!(put["version"].as_i64().map(|v| v > 0), Some(true));
});
