//! Work items over HTTP on both backends: push (201, then 200 for the same key), claim,
//! heartbeat, done, fail, retry, list, show, stats, hosts; a stale claim token refused as
//! the CLI refuses it (`lost`, its exit 4); the `queue.dead` alert of a last failure; a
//! `queue:read` token cannot claim; a waiting
//! claim woken by a push, ended by the server's shutdown, and gone with its client.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::{Api, api_test};

const PUSH: &str = "/v1/ns/default/queues/build%2Fweb/items";
const CLAIM: &str = "/v1/ns/default/queues/build%2Fweb/claim";

fn item(id: &Value, action: &str) -> String {
    format!("/v1/ns/default/items/{id}/{action}")
}

api_test!(push_claim_done_and_the_rest, |api: Api| async move {
    // Idempotent push: 201 for the new item, 200 with the same id for its key again.
    let first = api
        .post(
            PUSH,
            json!({"body": "build #7", "key": "https://example.com/issues/7", "priority": 1}),
        )
        .await
        .expect(201);
    assert_eq!(first["created"], true, "{first}");
    assert_eq!(first["state"], "ready");
    let again = api
        .post(PUSH, json!({"body": "other", "key": "https://example.com/issues/7"}))
        .await
        .expect(200);
    assert_eq!(again["id"], first["id"]);
    assert_eq!(again["created"], false);
    // A lower priority item, and one needing a GPU.
    let low = api.post(PUSH, json!({"body": "low"})).await.expect(201);
    let gpu = api
        .post(PUSH, json!({"body": "train", "requires": ["gpu"], "priority": 9}))
        .await
        .expect(201);

    // Without the capability the GPU item is not offered; the highest priority of the
    // others is. The holder is the token's name (`local` without auth), with no host.
    let claim = api.post(CLAIM, json!({"lease_ms": 30_000})).await.expect(200)["claimed"].clone();
    assert_eq!(claim["id"], first["id"], "{claim}");
    assert_eq!(claim["body"], "build #7");
    assert_eq!(claim["attempt"], 1);
    assert_eq!(claim["queue"], "build/web");
    assert_eq!(claim["holder"]["agent"], "local");
    assert_eq!(claim["holder"]["host"], "");
    let token = claim["token"].as_i64().unwrap();
    assert!(token > 0);

    // A stale token: 409 `lost` (the CLI's exit 4), and nothing changes.
    let stale = token + 1;
    for (action, body) in [
        ("heartbeat", json!({"token": stale, "lease_ms": 1000})),
        ("done", json!({"token": stale})),
        ("fail", json!({"token": stale, "reason": "x"})),
    ] {
        api.post(&item(&claim["id"], action), body)
            .await
            .error(409, "lost", None);
    }
    let shown = api
        .get(&format!("/v1/ns/default/items/{}", claim["id"]))
        .await
        .expect(200);
    assert_eq!(shown["item"]["state"], "claimed", "{shown}");

    let beat = api
        .post(
            &item(&claim["id"], "heartbeat"),
            json!({"token": token, "lease_ms": 60_000}),
        )
        .await
        .expect(200);
    assert_eq!(beat["state"], "claimed");
    let done = api
        .post(&item(&claim["id"], "done"), json!({"token": token, "result": "green"}))
        .await
        .expect(200);
    assert_eq!(done["state"], "done");
    assert_eq!(done["result"], "green");
    // Done is final: the token no longer holds anything.
    api.post(&item(&claim["id"], "done"), json!({"token": token}))
        .await
        .error(409, "lost", None);

    // The next claim, with the capability, takes the GPU item (priority 9); a failure on
    // its last attempt makes it dead, and `retry` revives it.
    let claim = api
        .post(
            CLAIM,
            json!({"capabilities": ["gpu"], "holder": {"agent": "trainer", "host": "box-1"}}),
        )
        .await
        .expect(200)["claimed"]
        .clone();
    assert_eq!(claim["id"], gpu["id"], "{claim}");
    assert_eq!(claim["holder"]["agent"], "trainer");
    assert_eq!(claim["holder"]["host"], "box-1");
    let failed = api
        .post(
            &item(&claim["id"], "fail"),
            json!({"token": claim["token"], "reason": "out of memory", "retry_in_ms": 0}),
        )
        .await
        .expect(200);
    assert_eq!(failed["state"], "ready", "{failed}");
    assert_eq!(failed["last_error"], "out of memory");

    let listed = api
        .get("/v1/ns/default/items?queue=build%2Fweb&state=done")
        .await
        .expect(200);
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed[0]["id"], first["id"]);
    let all = api.get("/v1/ns/default/items?limit=2").await.expect(200);
    assert_eq!(all.as_array().unwrap().len(), 2, "newest first, at most 2: {all}");
    assert_eq!(all[0]["id"], gpu["id"]);

    let shown = api
        .get(&format!("/v1/ns/default/items/{}", gpu["id"]))
        .await
        .expect(200);
    assert_eq!(shown["attempts"][0]["outcome"], "failed", "{shown}");
    assert_eq!(shown["attempts"][0]["holder"]["agent"], "trainer");

    let stats = api.get("/v1/ns/default/queues").await.expect(200);
    assert_eq!(stats[0]["queue"], "build/web", "{stats}");
    assert_eq!(stats[0]["done"], 1, "{stats}");
    assert_eq!(stats[0]["depth"], 2, "the low item and the failed one: {stats}");
    let ready = api.get("/v1/ns/default/items?state=ready").await.expect(200);
    assert!(
        ready.as_array().unwrap().iter().any(|i| i["id"] == low["id"]),
        "{ready}"
    );

    // Retry: only a dead or cancelled item; an unknown id is 404.
    api.post(&item(&first["id"], "retry"), json!({}))
        .await
        .error(409, "conflict", None);
    api.post("/v1/ns/default/items/999999/retry", json!({}))
        .await
        .error(404, "not_found", None);
    api.get("/v1/ns/default/items/999999")
        .await
        .error(404, "not_found", None);

    // Hosts: the ones that declared capabilities.
    assert_eq!(api.get("/v1/ns/default/hosts").await.expect(200), json!([]));
    let gpu_cap = arbiter_core::name::Capability::parse("gpu").unwrap();
    arbiter_ops::queue::register_host(&api.store, &Default::default(), "box-1", &[gpu_cap])
        .await
        .unwrap();
    let hosts = api.get("/v1/ns/default/hosts").await.expect(200);
    assert_eq!(hosts[0]["host"], "box-1", "{hosts}");
    assert_eq!(hosts[0]["capabilities"], json!(["gpu"]));

    // Nothing this worker may take: 200 with `claimed: null`, at once without a wait.
    let empty = api
        .post("/v1/ns/default/queues/empty/claim", json!({}))
        .await
        .expect(200);
    assert_eq!(empty, json!({"claimed": null}));

    // The store's gauges in /metrics.
    let metrics = api.get("/metrics").await.expect(200);
    let text = metrics.as_str().unwrap();
    assert!(
        text.contains(r#"arbiter_queue_depth{namespace="default",queue="build/web"} 2"#),
        "{text}"
    );
    assert!(text.contains("arbiter_queue_dead{"), "{text}");
    assert!(text.contains("arbiter_queue_oldest_ready_age_seconds{"), "{text}");
});

api_test!(the_last_failure_is_dead_and_retry_revives_it, |api: Api| async move {
    let pushed = api
        .post(PUSH, json!({"body": "flaky", "max_attempts": 1}))
        .await
        .expect(201);
    let claim = api.post(CLAIM, json!({})).await.expect(200)["claimed"].clone();
    let dead = api
        .post(
            &item(&pushed["id"], "fail"),
            json!({"token": claim["token"], "reason": "boom"}),
        )
        .await
        .expect(200);
    assert_eq!(dead["state"], "dead", "{dead}");
    // Its `queue.dead` alert is in the outbox, routed by the server's configuration,
    // folded per queue.
    let outbox = api.get("/v1/ns/default/notifications").await.expect(200);
    let alert = &outbox[0]["message"]["notification"];
    assert_eq!(alert["kind"], "queue.dead", "{outbox}");
    assert_eq!(alert["dedupe_key"], "queue/build/web/dead", "{outbox}");
    assert!(alert["body"].as_str().unwrap().contains("boom"), "{outbox}");
    let listed = api.get("/v1/ns/default/items?state=dead").await.expect(200);
    assert_eq!(listed[0]["id"], pushed["id"]);
    let revived = api.post(&item(&pushed["id"], "retry"), json!({})).await.expect(200);
    assert_eq!(revived["state"], "ready");
    assert_eq!(revived["attempt"], 0);
    // Its tokens keep increasing.
    let again = api.post(CLAIM, json!({})).await.expect(200)["claimed"].clone();
    assert!(again["token"].as_i64().unwrap() > claim["token"].as_i64().unwrap());
});

api_test!(
    queue_bad_input_names_the_field_and_changes_nothing,
    |api: Api| async move {
        let big = "x".repeat(arbiter_core::queue::MAX_BODY_BYTES + 1);
        api.post(PUSH, json!({"body": big}))
            .await
            .error(400, "bad_input", Some("body"));
        api.post(PUSH, json!({})).await.error(400, "bad_input", Some("body"));
        api.post(PUSH, json!({"body": "x", "requires": ["GPU"]}))
            .await
            .error(400, "bad_input", Some("requires"));
        api.post(PUSH, json!({"body": "x", "key": ""}))
            .await
            .error(400, "bad_input", Some("key"));
        api.post(PUSH, json!({"body": "x", "max_attempts": 0}))
            .await
            .error(400, "bad_input", Some("max_attempts"));
        api.post(PUSH, json!({"body": "x", "not_before": "tomorrow"}))
            .await
            .error(400, "bad_input", Some("not_before"));
        api.post(
            PUSH,
            json!({"body": "x", "delay_ms": 1000, "not_before": "2030-01-01T00:00:00Z"}),
        )
        .await
        .error(400, "bad_input", Some("not_before"));
        api.post(PUSH, json!({"body": "x", "delay_ms": 31u64 * 24 * 3600 * 1000}))
            .await
            .error(400, "bad_input", Some("delay_ms"));
        api.post(PUSH, json!({"body": "x", "priorty": 1}))
            .await
            .error(400, "bad_input", Some("priorty"));
        api.post("/v1/ns/default/queues/bad%20name/items", json!({"body": "x"}))
            .await
            .error(400, "bad_input", Some("queue"));
        api.post(CLAIM, json!({"lease_ms": 50}))
            .await
            .error(400, "bad_input", Some("lease_ms"));
        api.post(CLAIM, json!({"wait_ms": 0}))
            .await
            .error(400, "bad_input", Some("wait_ms"));
        api.post(CLAIM, json!({"capabilities": ["a b"]}))
            .await
            .error(400, "bad_input", Some("capabilities"));
        api.post("/v1/ns/default/items/0/done", json!({"token": 1}))
            .await
            .error(400, "bad_input", Some("id"));
        api.post("/v1/ns/default/items/1/done", json!({"token": 0}))
            .await
            .error(400, "bad_input", Some("token"));
        api.post("/v1/ns/default/items/1/heartbeat", json!({"token": 1}))
            .await
            .error(400, "bad_input", Some("lease_ms"));
        api.post("/v1/ns/default/items/1/fail", json!({"token": 1}))
            .await
            .error(400, "bad_input", Some("reason"));
        api.post(
            "/v1/ns/default/items/1/fail",
            json!({"token": 1, "reason": "x", "retry_in_ms": -1}),
        )
        .await
        .error(400, "bad_input", Some("retry_in_ms"));
        api.get("/v1/ns/default/items?state=pending")
            .await
            .error(400, "bad_input", Some("state"));
        api.get("/v1/ns/default/items?limit=0")
            .await
            .error(400, "bad_input", Some("limit"));
        api.get("/v1/ns/default/items?limit=1001")
            .await
            .error(400, "bad_input", Some("limit"));
        // Nothing was written.
        assert_eq!(api.get("/v1/ns/default/items").await.expect(200), json!([]));
        assert_eq!(api.get("/v1/ns/default/queues").await.expect(200), json!([]));
    }
);

arbiter_testkit::each_backend!(a_read_token_cannot_claim, |url: String| async move {
    let api = Api::start_tokens(&url).await;
    let reader = api.token("watcher", "default", "queue:read").await;
    let worker = api.token("worker-1", "default", "queue:write").await;
    let worker = api.with_token(&worker);
    let reader = api.with_token(&reader);
    worker
        .send(Method::POST, PUSH, Some(json!({"body": "job"})))
        .await
        .expect(201);
    let refused = reader
        .send(Method::POST, CLAIM, Some(json!({})))
        .await
        .error(403, "forbidden", None);
    assert!(
        refused["message"].as_str().unwrap().contains("queue:write"),
        "{refused}"
    );
    reader
        .send(Method::POST, PUSH, Some(json!({"body": "job"})))
        .await
        .error(403, "forbidden", None);
    // It may look: the item is still ready, never claimed.
    let items = reader.send(Method::GET, "/v1/ns/default/items", None).await.expect(200);
    assert_eq!(items[0]["state"], "ready", "{items}");
    assert_eq!(items[0]["last_token"], 0);
    // The writer claims it, as itself.
    let claim = worker.send(Method::POST, CLAIM, Some(json!({}))).await.expect(200)["claimed"].clone();
    assert_eq!(claim["holder"]["agent"], "worker-1", "{claim}");
    let audit = arbiter_ops::token::audit_list(&api.store, 10).await.unwrap();
    assert_eq!(audit.len(), 2, "both refusals audited: {audit:?}");
});

api_test!(a_waiting_claim_is_woken_by_a_push, |api: Api| async move {
    let waiting = {
        let base = api.base.clone();
        tokio::spawn(async move {
            reqwest::Client::new()
                .post(format!("{base}{CLAIM}"))
                .json(&json!({"wait_ms": 30_000}))
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        })
    };
    // Pushed while the claim waits (or just before it began: either way it gets it).
    tokio::time::sleep(Duration::from_millis(200)).await;
    let pushed = api.post(PUSH, json!({"body": "wake up"})).await.expect(201);
    let answer = tokio::time::timeout(Duration::from_secs(20), waiting)
        .await
        .expect("the waiting claim is answered well within its wait")
        .unwrap();
    assert_eq!(answer["claimed"]["id"], pushed["id"], "{answer}");
    assert_eq!(answer["claimed"]["body"], "wake up");
});

api_test!(a_waiting_claim_ends_with_its_client, |api: Api| async move {
    // A claim that waits, whose client gives up (its connection closes) after 300 ms.
    let gone = api
        .http
        .post(format!("{}{CLAIM}", api.base))
        .json(&json!({"wait_ms": 60_000}))
        .timeout(Duration::from_millis(300))
        .send()
        .await;
    assert!(gone.is_err_and(|e| e.is_timeout()), "the client gave up");
    // Give the server a moment to see the connection closed, then push: a wait still
    // running would be woken by the push and claim the item.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let pushed = api.post(PUSH, json!({"body": "for the living"})).await.expect(201);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let shown = api
        .get(&format!("/v1/ns/default/items/{}", pushed["id"]))
        .await
        .expect(200);
    assert_eq!(shown["item"]["state"], "ready", "nobody claimed it: {shown}");
    assert_eq!(shown["item"]["last_token"], 0, "{shown}");
    assert_eq!(shown["attempts"], json!([]));
    // A live client gets it, with the first token.
    let claim = api.post(CLAIM, json!({})).await.expect(200)["claimed"].clone();
    assert_eq!(claim["id"], pushed["id"]);
    assert_eq!(claim["attempt"], 1);
});

arbiter_testkit::each_backend!(a_waiting_claim_ends_at_shutdown, |url: String| async move {
    let api = Api::start(&url).await;
    let waiting = {
        let base = api.base.clone();
        tokio::spawn(async move {
            let response = reqwest::Client::new()
                .post(format!("{base}{CLAIM}"))
                .json(&json!({"wait_ms": 600_000}))
                .send()
                .await
                .unwrap();
            (response.status().as_u16(), response.json::<Value>().await.unwrap())
        })
    };
    // Shut down once the claim is in flight (a connection the server accepted: a graceful
    // shutdown waits for its answer).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let store = api.store.clone();
    api.server.shutdown().await.unwrap();
    let (status, body) = tokio::time::timeout(Duration::from_secs(15), waiting)
        .await
        .expect("the claim is answered when the server stops, not after its wait")
        .unwrap();
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"], "unavailable");
    // Nothing was claimed.
    let items = arbiter_ops::queue::list(&store, &Default::default(), None, None, 10)
        .await
        .unwrap();
    assert!(items.is_empty(), "{items:?}");
});
