//! The dashboard's routes over HTTP, on both backends: the page and its assets (public,
//! self-contained, under a strict Content-Security-Policy), and its stream: a snapshot at
//! start and one for each change of leases, the outbox and buckets; what a token may not
//! read is `null`; 401, 403 and 400 as for every route. The page itself runs in a real
//! browser in `crates/arbiter/tests/it/dashboard.rs`.

use serde_json::{Value, json};

use crate::{Api, Events, api_test};

/// The next event whose snapshot satisfies `wanted` (snapshots in between, sent as times
/// move on, are skipped); at most 20 of them.
async fn until(events: &mut Events, what: &str, wanted: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..20 {
        let event = events.next().await.expect("the stream goes on");
        assert_eq!(event.name, "snapshot", "{event:?}");
        if wanted(&event.data) {
            return event.data;
        }
    }
    panic!("no snapshot with {what} in 20 events");
}

api_test!(
    the_page_is_static_self_contained_and_locked_down,
    |api: Api| async move {
        // The whole `api`: the block would capture only the fields it uses, and dropping
        // the rest (the server) would stop the server at once.
        let api = api;
        for (path, content_type) in [
            ("/", "text/html; charset=utf-8"),
            ("/dashboard.js", "text/javascript; charset=utf-8"),
            ("/dashboard.css", "text/css; charset=utf-8"),
        ] {
            let response = api.http.get(format!("{}{path}", api.base)).send().await.unwrap();
            assert_eq!(response.status(), 200, "{path}");
            let headers = response.headers().clone();
            assert_eq!(headers["content-type"], content_type, "{path}");
            let csp = headers["content-security-policy"].to_str().unwrap();
            assert!(
                csp.contains("default-src 'none'") && csp.contains("script-src 'self'") && !csp.contains("unsafe"),
                "{path}: {csp}"
            );
            assert_eq!(headers["x-content-type-options"], "nosniff", "{path}");
            assert_eq!(headers["referrer-policy"], "no-referrer", "{path}");
            let body = response.text().await.unwrap();
            // Nothing loaded from elsewhere: it works offline.
            assert!(
                !body.contains("http://") && !body.contains("https://"),
                "{path} names another origin"
            );
            // Data is inserted as text only (the browser test shows it; this keeps the ways
            // to insert markup out of the script altogether).
            for sink in [
                "innerHTML",
                "outerHTML",
                "insertAdjacentHTML",
                "document.write",
                "eval(",
            ] {
                assert!(!body.contains(sink), "{path} uses {sink}");
            }
        }
        let page = api
            .http
            .get(format!("{}/", api.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            page.contains(r#"<script src="/dashboard.js" defer></script>"#),
            "{page}"
        );
        assert!(
            !page.contains("<script>") && !page.contains("style="),
            "inline code in the page"
        );
    }
);

api_test!(the_stream_sends_a_snapshot_and_each_change, |api: Api| async move {
    let path = "/v1/ns/default/dashboard/stream";
    let mut events = api.events(path, &[]).await;
    let first = events.next().await.unwrap();
    assert_eq!(first.name, "snapshot");
    assert_eq!(
        first.data,
        json!({
            "namespace": "default",
            "loops": {"loops": [], "github": [], "queues": [], "hosts": []},
            "leases": [],
            "outbox": {"pending": 0, "dead": 0, "oldest_pending_age_ms": null, "counted_up_to": 1000, "recent": []},
            "limits": [],
        })
    );

    // A lease, its holder as given.
    api.post(
        "/v1/ns/default/leases/repo%2Fmain/acquire",
        json!({"ttl_ms": 60_000, "holder": {"agent": "<b>builder</b>", "host": "h1"}}),
    )
    .await
    .expect(200);
    let snapshot = until(&mut events, "the lease", |s| {
        s["leases"].as_array().is_some_and(|l| !l.is_empty())
    })
    .await;
    let lease = &snapshot["leases"][0];
    assert_eq!(
        (&lease["name"], &lease["holder"]["agent"], &lease["holder"]["host"]),
        (&json!("repo/main"), &json!("<b>builder</b>"), &json!("h1"))
    );

    // A notification: pending, the newest entry.
    api.post(
        "/v1/ns/default/notifications",
        json!({"kind": "test.x", "severity": "warning", "title": "disk full"}),
    )
    .await
    .expect(200);
    let snapshot = until(&mut events, "the pending notification", |s| s["outbox"]["pending"] == 1).await;
    let outbox = &snapshot["outbox"];
    assert_eq!(outbox["dead"], 0);
    assert!(
        outbox["oldest_pending_age_ms"].as_i64().is_some_and(|age| age >= 0),
        "{outbox}"
    );
    assert_eq!(outbox["recent"][0]["channel"], "hook");
    assert_eq!(outbox["recent"][0]["state"], "pending");
    assert_eq!(outbox["recent"][0]["message"]["notification"]["title"], "disk full");

    // A bucket (no change topic: found by the stream's look every second).
    api.put("/v1/ns/default/limits/github%2Focto%2Fcore", json!({"rate": "5000/h"}))
        .await
        .expect(200);
    let snapshot = until(&mut events, "the bucket", |s| {
        s["limits"].as_array().is_some_and(|l| !l.is_empty())
    })
    .await;
    assert_eq!(snapshot["limits"][0]["name"], "github/octo/core");
    assert_eq!(snapshot["limits"][0]["rate"], "5000/h");
    // What the other routes answer is what the snapshot holds.
    let leases = api.get("/v1/ns/default/leases").await.expect(200);
    assert_eq!(snapshot["leases"], leases);

    // The lease released: gone from the next snapshot that shows leases.
    let token = lease["token"].clone();
    api.post("/v1/ns/default/leases/repo%2Fmain/release", json!({"token": token}))
        .await
        .expect(200);
    until(&mut events, "no lease", |s| s["leases"] == json!([])).await;

    api.get("/v1/ns/Not_A_Namespace/dashboard/stream")
        .await
        .error(400, "bad_input", Some("ns"));
});

arbiter_testkit::each_backend!(
    the_stream_shows_only_what_the_token_may_read,
    |url: String| async move {
        let mut api = Api::start_tokens(&url).await;
        let path = "/v1/ns/default/dashboard/stream";
        api.get(path).await.error(401, "unauthorized", None);
        let leases_only = api.token("leases", "default", "lease:read").await;
        api.with_token(&leases_only)
            .send(reqwest::Method::GET, path, None)
            .await
            .error(403, "forbidden", None);
        let elsewhere = api.token("elsewhere", "other", "*").await;
        api.with_token(&elsewhere)
            .send(reqwest::Method::GET, path, None)
            .await
            .error(403, "forbidden", None);

        // status:read alone: the fleet, and no leases, outbox or buckets.
        api.token = Some(api.token("status", "default", "status:read").await);
        let mut events = api.events(path, &[]).await;
        let snapshot = events.next().await.unwrap().data;
        assert_eq!(
            snapshot,
            json!({"namespace": "default", "loops": {"loops": [], "github": [], "queues": [], "hosts": []}, "leases": null, "outbox": null, "limits": null})
        );
        // Every read scope: every section.
        api.token = Some(
            api.token("reader", "default", "status:read,lease:read,notify:read,limit:read")
                .await,
        );
        let mut events = api.events(path, &[]).await;
        let snapshot = events.next().await.unwrap().data;
        assert_eq!((&snapshot["leases"], &snapshot["limits"]), (&json!([]), &json!([])));
        assert_eq!(snapshot["outbox"]["pending"], 0);
    }
);
