//! Tokens: 401 without or with a bad token, 403 outside a token's namespaces or scopes on
//! every route (driven from the OpenAPI document, so a new route cannot be forgotten), a
//! revoked token refused at its next request, and every refusal audited.

use std::net::SocketAddr;

use arbiter_core::ErrorKind;
use arbiter_server::{Auth, ServeConfig, Server};
use reqwest::Method;
use serde_json::json;

use crate::{Api, documented_routes, sample_path};

/// The routes that need no token.
const PUBLIC: &[&str] = &[
    "/healthz",
    "/readyz",
    "/openapi.json",
    "/metrics",
    "/",
    "/dashboard.js",
    "/dashboard.css",
];

/// Whether a route changes something (and so needs a write scope).
fn writes(method: &Method) -> bool {
    method != Method::GET
}

arbiter_testkit::each_backend!(no_token_or_a_bad_one_is_401_and_audited, |url: String| async move {
    let api = Api::start_tokens(&url).await;
    let answer = api.get("/v1/ns/default/kv").await;
    assert_eq!(answer.headers["www-authenticate"], "Bearer");
    answer.error(401, "unauthorized", None);
    let bad = api.with_token("arb_not-a-real-token");
    bad.send(Method::GET, "/v1/ns/default/kv", None)
        .await
        .error(401, "unauthorized", None);
    let unknown = api.with_token(&format!("arb_{}", "A".repeat(43)));
    let answer = unknown.send(Method::GET, "/v1/ns/default/kv", None).await;
    assert!(
        !answer.body["message"].as_str().unwrap().contains("AAAA"),
        "no secret echoed"
    );
    answer.error(401, "unauthorized", None);
    // Public routes need none.
    api.get("/healthz").await.expect(200);
    api.get("/readyz").await.expect(200);

    let audit = arbiter_ops::token::audit_list(&api.store, 10).await.unwrap();
    assert_eq!(audit.len(), 3, "{audit:?}");
    assert!(
        audit
            .iter()
            .all(|a| a.status == 401 && a.path == "/v1/ns/default/kv" && a.namespace == "default")
    );
    assert!(audit.iter().all(|a| !a.missing.contains("AAAA")));
});

// A flood of requests without a token is refused in full, but only a bounded number of the
// refusals a second become store writes; the next one recorded says how many were not.
arbiter_testkit::each_backend!(
    a_flood_of_refusals_is_audited_at_a_bounded_rate,
    |url: String| async move {
        let api = Api::start_tokens(&url).await;
        const SENT: usize = 300;
        let answers = futures_util::future::join_all((0..SENT).map(|_| api.get("/v1/ns/default/kv"))).await;
        for answer in answers {
            answer.error(401, "unauthorized", None);
        }
        let recorded = arbiter_ops::token::audit_list(&api.store, 10_000).await.unwrap().len();
        assert!((1..SENT).contains(&recorded), "{recorded} of {SENT} refusals recorded");
        // The gate refills within a second; the refusals not recorded are counted by the ones
        // recorded after them, so every refusal is accounted for, once.
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
        api.get("/v1/ns/default/kv").await.error(401, "unauthorized", None);
        let audit = arbiter_ops::token::audit_list(&api.store, 10_000).await.unwrap();
        let counted: usize = audit
            .iter()
            .filter_map(|entry| {
                let note = entry.missing.split("(and ").nth(1)?;
                let n = note.strip_suffix(" earlier refusals over 20/s not recorded)")?;
                Some(n.parse::<usize>().expect("the count is a number"))
            })
            .sum();
        assert_eq!(audit.len(), recorded + 1);
        assert_eq!(
            audit.len() + counted,
            SENT + 1,
            "recorded {} and counted {counted}",
            audit.len()
        );
    }
);

arbiter_testkit::each_backend!(
    a_token_reaches_only_its_namespaces_on_every_route,
    |url: String| async move {
        let api = Api::start_tokens(&url).await;
        let team_a = api.token("team-a", "team-a", "*").await;
        let caller = api.with_token(&team_a);
        let mut refused = 0;
        for (method, template) in documented_routes() {
            if !template.contains("{ns}") {
                continue;
            }
            let (status, response) = caller.status(&method, &sample_path(&template, "team-b")).await;
            let body = response.text().await.unwrap();
            assert_eq!(status, 403, "{method} {template} in another namespace: {body}");
            assert!(body.contains("\"forbidden\""), "{body}");
            refused += 1;
            // In its own namespace it is not refused (whatever else the sample request gets).
            let (status, _) = caller.status(&method, &sample_path(&template, "team-a")).await;
            assert!(
                status != 403 && status != 401,
                "{method} {template} in its namespace: {status}"
            );
        }
        let audit = arbiter_ops::token::audit_list(&api.store, 1000).await.unwrap();
        assert_eq!(audit.len(), refused);
        assert!(
            audit
                .iter()
                .all(|a| a.status == 403 && a.token == "team-a" && a.namespace == "team-b")
        );
    }
);

arbiter_testkit::each_backend!(a_read_scope_cannot_write, |url: String| async move {
    let api = Api::start_tokens(&url).await;
    let reader = api
        .token(
            "reader",
            "*",
            "lease:read,kv:read,log:read,decisions:read,notify:read,limit:read,status:read,queue:read",
        )
        .await;
    let caller = api.with_token(&reader);
    for (method, template) in documented_routes() {
        if !template.starts_with("/v1/ns/") {
            continue;
        }
        let (status, _) = caller.status(&method, &sample_path(&template, "default")).await;
        if writes(&method) {
            assert_eq!(status, 403, "{method} {template} with read scopes");
        } else {
            assert!(
                status != 403 && status != 401,
                "{method} {template} with read scopes: {status}"
            );
        }
    }
    // A scope of one primitive reaches no other.
    let leases = api.token("leases", "*", "lease:write").await;
    let caller = api.with_token(&leases);
    caller
        .send(Method::GET, "/v1/ns/default/kv", None)
        .await
        .error(403, "forbidden", None);
    caller
        .send(
            Method::POST,
            "/v1/ns/default/leases/x/acquire",
            Some(json!({"ttl_ms": 1000})),
        )
        .await
        .expect(200);
});

arbiter_testkit::each_backend!(admin_routes_need_the_admin_scope, |url: String| async move {
    let api = Api::start_tokens(&url).await;
    let everything_but_admin = api
        .token(
            "worker",
            "*",
            "lease:write,kv:write,log:write,decisions:write,notify:write,limit:write,status:write,queue:write",
        )
        .await;
    let admin = api.token("ops", "default", "admin").await;
    let mut admin_routes = 0;
    for (method, template) in documented_routes() {
        if template.starts_with("/v1/ns/") || PUBLIC.contains(&template.as_str()) {
            continue;
        }
        admin_routes += 1;
        let (status, _) = api.with_token(&everything_but_admin).status(&method, &template).await;
        assert_eq!(status, 403, "{method} {template} without admin");
        let (status, _) = api.with_token(&admin).status(&method, &template).await;
        assert_eq!(status, 200, "{method} {template} with admin");
    }
    assert_eq!(admin_routes, 2);
    let info = api
        .with_token(&admin)
        .send(Method::GET, "/v1/store", None)
        .await
        .expect(200);
    assert!(info["schema_version"].as_i64().unwrap() > 0);
});

arbiter_testkit::each_backend!(a_revoked_token_fails_at_its_next_request, |url: String| async move {
    let api = Api::start_tokens(&url).await;
    let secret = api.token("agent", "default", "kv:write").await;
    let caller = api.with_token(&secret);
    caller
        .send(Method::PUT, "/v1/ns/default/kv/k", Some(json!({"value": "v"})))
        .await
        .expect(200);
    arbiter_ops::token::revoke(&api.store, "agent").await.unwrap();
    caller
        .send(Method::GET, "/v1/ns/default/kv/k", None)
        .await
        .error(401, "unauthorized", None);
});

arbiter_testkit::each_backend!(holder_and_author_default_to_the_token_name, |url: String| async move {
    let api = Api::start_tokens(&url).await;
    let secret = api.token("builder-7", "default", "*").await;
    let caller = api.with_token(&secret);
    let lease = caller
        .send(
            Method::POST,
            "/v1/ns/default/leases/x/acquire",
            Some(json!({"ttl_ms": 1000})),
        )
        .await
        .expect(200);
    assert_eq!(lease["holder"]["agent"], "builder-7");
    caller
        .send(
            Method::POST,
            "/v1/ns/default/logs/events/records",
            Some(json!({"body": "hi"})),
        )
        .await
        .expect(200);
    let records = caller
        .send(Method::GET, "/v1/ns/default/logs/events/records", None)
        .await
        .expect(200);
    assert_eq!(records[0]["author"], "builder-7");
});

arbiter_testkit::each_backend!(a_public_address_needs_a_live_token, |url: String| async move {
    let store = arbiter_store::Store::open(&arbiter_store::StoreUrl::parse(&url).unwrap())
        .await
        .unwrap();
    let anywhere: SocketAddr = "0.0.0.0:0".parse().unwrap();
    let refused = Server::start(store.clone(), ServeConfig::new(anywhere, Auth::Tokens))
        .await
        .err()
        .expect("refused without a token");
    assert_eq!(refused.kind, ErrorKind::BadInput);
    assert!(refused.message.contains("--listen 0.0.0.0:0"), "{}", refused.message);
    // Loopback needs none.
    let loopback: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let server = Server::start(store.clone(), ServeConfig::new(loopback, Auth::Tokens))
        .await
        .unwrap();
    server.shutdown().await.unwrap();
});
