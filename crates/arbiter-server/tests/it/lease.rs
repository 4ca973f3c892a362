use std::time::Duration;

use serde_json::json;

use crate::{Api, api_test};

api_test!(lease_routes, |api: Api| async move {
    // A name with `/` travels as one segment.
    let path = "/v1/ns/default/leases/repo%2Fmain";
    let body = json!({"ttl_ms": 30_000, "holder": {"agent": "builder", "host": "elsewhere", "pid": 7}});
    let lease = api.post(&format!("{path}/acquire"), body.clone()).await.expect(200);
    assert_eq!(lease["name"], "repo/main");
    assert_eq!(lease["holder"]["agent"], "builder");
    let token = lease["token"].as_i64().unwrap();
    assert!(token > 0);

    // Busy: 409 held, with who holds it as data.
    let held = api
        .post(&format!("{path}/acquire"), body.clone())
        .await
        .error(409, "held", None);
    assert_eq!(held["detail"]["held"]["holders"][0]["token"], token);

    let shown = api.get(path).await.expect(200);
    assert_eq!(shown["holders"][0]["token"], token);
    let listed = api.get("/v1/ns/default/leases?prefix=repo%2F").await.expect(200);
    assert_eq!(listed.as_array().unwrap().len(), 1);
    let listed = api.get("/v1/ns/default/leases?prefix=other").await.expect(200);
    assert_eq!(listed, json!([]));

    let renewed = api
        .post(&format!("{path}/renew"), json!({"token": token, "ttl_ms": 60_000}))
        .await
        .expect(200);
    assert_eq!(renewed["ttl_ms"], 60_000);
    api.post(&format!("{path}/renew"), json!({"token": token + 1}))
        .await
        .error(409, "lost", None);
    api.post(&format!("{path}/release"), json!({"token": token + 1}))
        .await
        .error(409, "lost", None);
    let released = api
        .post(&format!("{path}/release"), json!({"token": token}))
        .await
        .expect(200);
    assert_eq!(released["released"], true);

    // The agent defaults to the token's name (`local` without auth).
    let lease = api
        .post(&format!("{path}/acquire"), json!({"ttl_ms": 1000}))
        .await
        .expect(200);
    assert_eq!(lease["holder"]["agent"], "local");
    assert!(lease["token"].as_i64().unwrap() > token);
});

api_test!(lease_waits_for_a_release, |api: Api| async move {
    let path = "/v1/ns/default/leases/queue";
    let first = api
        .post(&format!("{path}/acquire"), json!({"ttl_ms": 30_000}))
        .await
        .expect(200);
    let waiting = {
        let api_base = api.base.clone();
        tokio::spawn(async move {
            reqwest::Client::new()
                .post(format!("{api_base}{path}/acquire"))
                .json(&json!({"ttl_ms": 30_000, "wait_ms": 20_000}))
                .send()
                .await
                .unwrap()
                .json::<serde_json::Value>()
                .await
                .unwrap()
        })
    };
    // Released once the waiter is queued: the waiter gets the next token.
    arbiter_testkit::eventually_async(Duration::from_secs(10), "the waiter is queued", || async {
        let waiters = api.get(path).await.expect(200)["waiters"].as_array().unwrap().len();
        (waiters == 1).then_some(())
    })
    .await;
    api.post(&format!("{path}/release"), json!({"token": first["token"]}))
        .await
        .expect(200);
    let second = waiting.await.unwrap();
    assert_eq!(second["token"], first["token"].as_i64().unwrap() + 1);
});

api_test!(lease_bad_input_names_the_field, |api: Api| async move {
    let acquire = "/v1/ns/default/leases/x/acquire";
    api.post(acquire, json!({}))
        .await
        .error(400, "bad_input", Some("ttl_ms"));
    api.post(acquire, json!({"ttl_ms": 0}))
        .await
        .error(400, "bad_input", Some("ttl_ms"));
    api.post(acquire, json!({"ttl_ms": "1s"}))
        .await
        .error(400, "bad_input", Some("ttl_ms"));
    api.post(acquire, json!({"ttl_ms": 1000, "slots": 0}))
        .await
        .error(400, "bad_input", Some("slots"));
    api.post(acquire, json!({"ttl_ms": 1000, "wait_ms": 0}))
        .await
        .error(400, "bad_input", Some("wait_ms"));
    api.post(acquire, json!({"ttl_ms": 1000, "ttl": 5}))
        .await
        .error(400, "bad_input", Some("ttl"));
    api.post(acquire, json!({"ttl_ms": 1000, "holder": {"agent": "a\u{7}"}}))
        .await
        .error(400, "bad_input", Some("holder.agent"));
    api.post(acquire, json!({"ttl_ms": 1000, "holder": {"pid": -1}}))
        .await
        .error(400, "bad_input", Some("holder.pid"));
    api.post_raw(acquire, "{not json")
        .await
        .error(400, "bad_input", Some("body"));
    // An array of the fields in order is what serde would take for a struct: refused.
    api.post_raw(acquire, "[1000, null, null, null]")
        .await
        .error(400, "bad_input", Some("body"));
    api.post("/v1/ns/default/leases/bad%20name/acquire", json!({"ttl_ms": 1000}))
        .await
        .error(400, "bad_input", Some("name"));
    api.post("/v1/ns/Bad/leases/x/acquire", json!({"ttl_ms": 1000}))
        .await
        .error(400, "bad_input", Some("ns"));
    api.post("/v1/ns/default/leases/x/renew", json!({"token": 0}))
        .await
        .error(400, "bad_input", Some("token"));
    api.post("/v1/ns/default/leases/x/release", json!({}))
        .await
        .error(400, "bad_input", Some("token"));
    api.get("/v1/ns/default/leases?prefix=%20")
        .await
        .error(400, "bad_input", Some("prefix"));
    api.get("/v1/ns/default/leases?prefx=a")
        .await
        .error(400, "bad_input", Some("prefx"));
    // Nothing was written.
    assert_eq!(api.get("/v1/ns/default/leases").await.expect(200), json!([]));
    // An unknown route is a 404 with the error body.
    api.get("/v1/ns/default/nothing").await.error(404, "not_found", None);
    // A lease name never acquired is not found (documented as such in /openapi.json).
    api.get("/v1/ns/default/leases/never-used")
        .await
        .error(404, "not_found", None);
});
