//! The MCP tools over streamable HTTP: `http_service` mounted on a loopback axum server
//! behind a layer that does what `arbiter serve`'s auth layer does — put the bearer
//! token's `Principal` into the request's extensions — driven by rmcp's own HTTP client.
//! A token reaches only its namespaces and scopes; a request with no principal is
//! refused, never served as the local user; a lease's holder is the token.

use std::sync::Arc;

use arbiter_core::token::Principal;
use arbiter_mcp::Hosts;
use arbiter_store::{Store, StoreUrl};
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use rmcp::model::{CallToolRequestParams, CallToolResult, ClientConfig};
use rmcp::service::RunningService;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::{RoleClient, ServiceExt};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

type Client = RunningService<RoleClient, ClientConfig>;

/// The test's tokens: `agent-a` reaches namespace `a` with lease:write and kv:read;
/// `agent-b` everything in `a`. Anything else gets no principal.
fn principal(secret: &str) -> Option<Principal> {
    let (namespaces, scopes) = match secret {
        "agent-a" => ("a", "lease:write,kv:read"),
        "agent-b" => ("a", "*"),
        _ => return None,
    };
    Some(Principal {
        name: secret.to_string(),
        namespaces: namespaces.parse().unwrap(),
        scopes: scopes.parse().unwrap(),
    })
}

async fn auth(mut request: Request, next: Next) -> Response {
    let found = request
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .and_then(principal);
    if let Some(principal) = found {
        request.extensions_mut().insert(principal);
    }
    next.run(request).await
}

/// A loopback server with the MCP service at `/mcp`; its address.
async fn serve(store: Store, cancel: CancellationToken) -> std::net::SocketAddr {
    let service = arbiter_mcp::http_service(store, Arc::default(), cancel.clone().cancelled_owned(), Hosts::Loopback);
    let router = axum::Router::new()
        .nest_service("/mcp", service)
        .layer(axum::middleware::from_fn(auth));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, router)
            .with_graceful_shutdown(cancel.cancelled_owned())
            .await;
    });
    addr
}

async fn connect(addr: std::net::SocketAddr, token: Option<&str>) -> Client {
    // rmcp's client is reqwest, built without a default TLS provider here.
    arbiter_notify::init_tls();
    let mut config = StreamableHttpClientTransportConfig::with_uri(format!("http://{addr}/mcp"));
    if let Some(token) = token {
        config = config.auth_header(token);
    }
    let transport = StreamableHttpClientTransport::from_config(config);
    ClientConfig::default()
        .serve(transport)
        .await
        .expect("the MCP handshake over HTTP succeeds")
}

async fn call(client: &Client, tool: &str, args: Value) -> CallToolResult {
    let Value::Object(args) = args else {
        panic!("tool arguments are an object")
    };
    client
        .call_tool(CallToolRequestParams::new(tool.to_string()).with_arguments(args))
        .await
        .expect("the call is answered")
}

#[track_caller]
fn ok(result: CallToolResult) -> Value {
    assert_eq!(result.is_error, Some(false), "{result:?}");
    result.structured_content.expect("a structured result")
}

#[track_caller]
fn failed(result: CallToolResult, code: &str) -> Value {
    assert_eq!(result.is_error, Some(true), "{result:?}");
    let body = result.structured_content.expect("a structured error");
    assert_eq!(body["error"], code, "{body}");
    body
}

arbiter_testkit::each_backend!(
    tokens_reach_only_their_namespaces_and_scopes,
    |url: String| async move {
        let store = Store::open(&StoreUrl::parse(&url).unwrap()).await.unwrap();
        let cancel = CancellationToken::new();
        let addr = serve(store, cancel.clone()).await;
        let a = connect(addr, Some("agent-a")).await;

        let tools = a.list_all_tools().await.unwrap();
        assert_eq!(tools.len(), 22, "{tools:?}");

        // The token's own namespace and scope: the lease is the token's, with no host (it
        // expires by its TTL only).
        let lease = ok(call(
            &a,
            "lease_acquire",
            json!({"namespace": "a", "name": "docs/mcp.md", "agent": "bot"}),
        )
        .await);
        assert_eq!(lease["holder"]["agent"], "agent-a/bot", "{lease}");
        assert_eq!(lease["holder"]["host"], "", "{lease}");
        assert_eq!(lease["holder"]["pid"], 0, "{lease}");
        let token = lease["token"].as_i64().unwrap();

        // Namespace b: refused, whatever the tool.
        for (tool, args) in [
            ("lease_acquire", json!({"namespace": "b", "name": "docs/mcp.md"})),
            ("lease_show", json!({"namespace": "b", "name": "docs/mcp.md"})),
            ("kv_get", json!({"namespace": "b", "key": "k"})),
            ("status", json!({"namespace": "b"})),
        ] {
            let refused = failed(call(&a, tool, args).await, "forbidden");
            assert!(
                refused["message"].as_str().unwrap().contains("namespace \"b\""),
                "{tool}: {refused}"
            );
        }
        // The default namespace is not a's either.
        failed(
            call(&a, "lease_show", json!({"name": "docs/mcp.md"})).await,
            "forbidden",
        );
        // A read scope cannot write; a primitive without a scope is refused.
        let refused = failed(
            call(&a, "kv_put", json!({"namespace": "a", "key": "k", "value": "v"})).await,
            "forbidden",
        );
        assert!(refused["message"].as_str().unwrap().contains("kv:write"), "{refused}");
        failed(
            call(&a, "kv_get", json!({"namespace": "a", "key": "k"})).await,
            "not_found",
        );
        failed(call(&a, "status", json!({"namespace": "a"})).await, "forbidden");
        failed(
            call(&a, "decide", json!({"namespace": "a", "text": "t", "by": "ada"})).await,
            "forbidden",
        );

        // Another token meets the first one's lease as held, and its renewals as lost.
        let b = connect(addr, Some("agent-b")).await;
        let held = failed(
            call(&b, "lease_acquire", json!({"namespace": "a", "name": "docs/mcp.md"})).await,
            "held",
        );
        assert_eq!(held["detail"]["held"]["holders"][0]["holder"]["agent"], "agent-a/bot");
        failed(
            call(
                &b,
                "lease_renew",
                json!({"namespace": "a", "name": "docs/mcp.md", "token": token + 1}),
            )
            .await,
            "lost",
        );
        ok(call(&b, "kv_put", json!({"namespace": "a", "key": "k", "value": "v"})).await);
        assert_eq!(
            ok(call(&a, "kv_get", json!({"namespace": "a", "key": "k"})).await)["value"],
            "v"
        );
        ok(call(
            &a,
            "lease_release",
            json!({"namespace": "a", "name": "docs/mcp.md", "token": token}),
        )
        .await);

        // No principal in the request: refused, never the local user.
        let anonymous = connect(addr, None).await;
        let refused = failed(
            call(&anonymous, "kv_get", json!({"namespace": "a", "key": "k"})).await,
            "forbidden",
        );
        assert!(
            refused["message"].as_str().unwrap().contains("no authenticated token"),
            "{refused}"
        );

        for client in [a, b, anonymous] {
            client.cancel().await.unwrap();
        }
        cancel.cancel();
    }
);

arbiter_testkit::each_backend!(
    a_work_item_is_claimed_and_completed_through_tools,
    |url: String| async move {
        let store = Store::open(&StoreUrl::parse(&url).unwrap()).await.unwrap();
        let cancel = CancellationToken::new();
        let addr = serve(store, cancel.clone()).await;
        let b = connect(addr, Some("agent-b")).await;

        let pushed = ok(call(
            &b,
            "queue_push",
            json!({"namespace": "a", "queue": "triage", "body": "issue 7", "key": "issue/7", "requires": ["gpu"]}),
        )
        .await);
        assert_eq!(pushed["created"], true, "{pushed}");
        let again = ok(call(
            &b,
            "queue_push",
            json!({"namespace": "a", "queue": "triage", "body": "issue 7", "key": "issue/7"}),
        )
        .await);
        assert_eq!(
            (again["id"].clone(), again["created"].clone()),
            (pushed["id"].clone(), json!(false))
        );

        // Without the capability: nothing to claim, as data (not an error).
        let none = ok(call(&b, "queue_claim", json!({"namespace": "a", "queue": "triage"})).await);
        assert_eq!(none, json!({"claimed": null}));
        let claimed = ok(call(
            &b,
            "queue_claim",
            json!({"namespace": "a", "queue": "triage", "capabilities": ["gpu"], "lease": "1m", "agent": "bot"}),
        )
        .await)["claimed"]
            .clone();
        assert_eq!(claimed["id"], pushed["id"], "{claimed}");
        assert_eq!(claimed["body"], "issue 7");
        assert_eq!(
            claimed["holder"]["agent"], "agent-b/bot",
            "the token holds it: {claimed}"
        );
        assert_eq!(claimed["holder"]["host"], "", "{claimed}");
        let (id, token) = (claimed["id"].as_i64().unwrap(), claimed["token"].as_i64().unwrap());

        ok(call(
            &b,
            "queue_heartbeat",
            json!({"namespace": "a", "id": id, "token": token, "lease": "2m"}),
        )
        .await);
        // A stale token is `lost`, and changes nothing.
        failed(
            call(
                &b,
                "queue_done",
                json!({"namespace": "a", "id": id, "token": token + 1}),
            )
            .await,
            "lost",
        );
        failed(
            call(
                &b,
                "queue_fail",
                json!({"namespace": "a", "id": id, "token": token + 1, "reason": "late"}),
            )
            .await,
            "lost",
        );
        let done = ok(call(
            &b,
            "queue_done",
            json!({"namespace": "a", "id": id, "token": token, "result": "fixed"}),
        )
        .await);
        assert_eq!(done["state"], "done", "{done}");

        let shown = ok(call(&b, "queue_show", json!({"namespace": "a", "id": id})).await);
        assert_eq!(shown["attempts"][0]["outcome"], "done", "{shown}");
        let listed = ok(call(&b, "queue_list", json!({"namespace": "a", "state": "done"})).await);
        assert_eq!(listed["items"][0]["id"], id, "{listed}");
        let stats = ok(call(&b, "queue_stats", json!({"namespace": "a"})).await);
        assert_eq!(stats["queues"][0]["queue"], "triage", "{stats}");
        assert_eq!(stats["queues"][0]["done"], 1, "{stats}");

        // A delayed item (a duration from now, or an RFC 3339 time) is not claimable yet.
        for not_before in ["1h", "2100-01-01T00:00:00Z"] {
            ok(call(
                &b,
                "queue_push",
                json!({"namespace": "a", "queue": "later", "body": "x", "not_before": not_before}),
            )
            .await);
        }
        let none = ok(call(&b, "queue_claim", json!({"namespace": "a", "queue": "later"})).await);
        assert_eq!(none, json!({"claimed": null}));
        let bad = call_raw(
            &b,
            "queue_push",
            json!({"namespace": "a", "queue": "later", "body": "x", "not_before": "soon"}),
        )
        .await;
        assert!(bad.contains("not_before"), "{bad}");

        // Bad arguments name the field; a token without a queue scope is refused.
        let bad = call_raw(
            &b,
            "queue_claim",
            json!({"namespace": "a", "queue": "triage", "lease": "1ms"}),
        )
        .await;
        assert!(bad.contains("lease"), "{bad}");
        let a = connect(addr, Some("agent-a")).await;
        let refused = failed(
            call(&a, "queue_claim", json!({"namespace": "a", "queue": "triage"})).await,
            "forbidden",
        );
        assert!(
            refused["message"].as_str().unwrap().contains("queue:write"),
            "{refused}"
        );

        for client in [a, b] {
            client.cancel().await.unwrap();
        }
        cancel.cancel();
    }
);

/// A call refused as invalid params: the error's text.
async fn call_raw(client: &Client, tool: &str, args: Value) -> String {
    let Value::Object(args) = args else {
        panic!("tool arguments are an object")
    };
    let error = client
        .call_tool(CallToolRequestParams::new(tool.to_string()).with_arguments(args))
        .await
        .expect_err("invalid params are a JSON-RPC error");
    error.to_string()
}
