//! `arbiter mcp`: real `arbiter mcp` processes driven by rmcp's own client over stdio —
//! the handshake, the tool list with its schemas, every tool's success and its errors (a
//! held lease, a stale token, a failed compare-and-swap, a refused take, bad arguments as
//! JSON-RPC invalid params naming the field), and a lease freed as soon as the MCP process
//! that held it is gone — and `/mcp` of a real `arbiter serve` with bearer tokens: a
//! token reaches only its namespaces and scopes, a revoked one fails at once.

use rmcp::model::{CallToolRequestParams, CallToolResult, ClientConfig, ErrorCode};
use rmcp::service::{RunningService, ServiceError};
use rmcp::transport::{ConfigureCommandExt, TokioChildProcess};
use rmcp::{RoleClient, ServiceExt};
use serde_json::{Value, json};

use crate::support::{SOON, Store, bin};

type Client = RunningService<RoleClient, ClientConfig>;

/// Every tool `arbiter mcp` lists.
const TOOLS: [&str; 22] = [
    "decide",
    "kv_cas",
    "kv_get",
    "kv_list",
    "kv_put",
    "lease_acquire",
    "lease_release",
    "lease_renew",
    "lease_show",
    "limit_take",
    "log_append",
    "log_read",
    "notify",
    "queue_claim",
    "queue_done",
    "queue_fail",
    "queue_heartbeat",
    "queue_list",
    "queue_push",
    "queue_show",
    "queue_stats",
    "status",
];

/// An `arbiter mcp` process on `store`, with `config`, handshaken.
async fn connect(store: &Store, config: &std::path::Path) -> Client {
    let command = tokio::process::Command::new(bin()).configure(|cmd| {
        cmd.arg("mcp")
            .env("ARBITER_STORE", &store.url)
            .env("ARBITER_CONFIG", config)
            .env_remove("ARBITER_NAMESPACE")
            .env_remove("ARBITER_LOG");
    });
    let transport = TokioChildProcess::new(command).expect("arbiter mcp starts");
    tokio::time::timeout(SOON, ClientConfig::default().serve(transport))
        .await
        .expect("the handshake ends in time")
        .expect("the MCP handshake succeeds")
}

async fn call(client: &Client, tool: &str, args: Value) -> Result<CallToolResult, ServiceError> {
    let Value::Object(args) = args else {
        panic!("tool arguments are an object")
    };
    let params = CallToolRequestParams::new(tool.to_string()).with_arguments(args);
    tokio::time::timeout(SOON, client.call_tool(params))
        .await
        .expect("the tool call ends in time")
}

/// A successful call's structured result.
#[track_caller]
fn ok(result: Result<CallToolResult, ServiceError>) -> Value {
    let result = result.expect("the call is answered");
    assert_eq!(result.is_error, Some(false), "{result:?}");
    let value = result.structured_content.expect("a structured result");
    // The text content is the same JSON, for clients that show only text.
    let text = result.content[0].as_text().expect("a text block").text.clone();
    assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), value);
    value
}

/// A failed operation's error body (`isError`), checked to carry `code`.
#[track_caller]
fn failed(result: Result<CallToolResult, ServiceError>, code: &str) -> Value {
    let result = result.expect("the call is answered");
    assert_eq!(result.is_error, Some(true), "{result:?}");
    let body = result.structured_content.expect("a structured error");
    assert_eq!(body["error"], code, "{body}");
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
    body
}

/// A JSON-RPC invalid params error naming `field`.
#[track_caller]
fn invalid(result: Result<CallToolResult, ServiceError>, field: &str) -> String {
    match result {
        Err(ServiceError::McpError(e)) => {
            assert_eq!(e.code, ErrorCode::INVALID_PARAMS, "{e:?}");
            assert!(e.message.starts_with(&format!("{field}: ")), "{e:?}");
            assert_eq!(e.data.as_ref().unwrap()["field"], field, "{e:?}");
            e.message.to_string()
        }
        other => panic!("expected invalid params naming {field:?}, got {other:?}"),
    }
}

fn config(store: &Store) -> std::path::PathBuf {
    let path = store.scratch.path().join("arbiter.toml");
    std::fs::write(
        &path,
        "[channels.ops]\ntype = \"webhook\"\nurl = \"http://127.0.0.1:9/hook\"\n\n[[routes]]\nchannels = [\"ops\"]\n",
    )
    .unwrap();
    path
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// The handshake and the tool list: every tool, each with a description and an object
/// schema for its input.
fn lists_tools(store: &Store) {
    runtime().block_on(async {
        let client = connect(store, &config(store)).await;
        let info = client.peer_info().expect("the server introduced itself");
        assert_eq!(info.server_info.as_ref().map(|s| s.name.as_str()), Some("arbiter"));
        let tools = client.list_all_tools().await.unwrap();
        let names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
        assert_eq!(names, TOOLS);
        for tool in &tools {
            assert!(tool.description.as_deref().is_some_and(|d| d.len() > 20), "{tool:?}");
            assert_eq!(tool.input_schema["type"], "object", "{tool:?}");
            let properties = tool.input_schema["properties"].as_object().unwrap();
            assert!(properties.contains_key("namespace"), "{tool:?}");
        }
        let acquire = tools.iter().find(|t| t.name == "lease_acquire").unwrap();
        let required = acquire.input_schema["required"].as_array().unwrap();
        assert_eq!(required, &[json!("name")]);
        client.cancel().await.unwrap();
    });
}

/// Leases through two MCP processes: held, renewed, released, a stale token lost, and a
/// holder's lease free at once when its MCP process is gone.
fn leases(store: &Store) {
    runtime().block_on(async {
        let config = config(store);
        let a = connect(store, &config).await;
        let b = connect(store, &config).await;
        let lease = ok(call(&a, "lease_acquire", json!({"name": "src/main.rs", "ttl": "30s", "agent": "ada"})).await);
        let token = lease["token"].as_i64().unwrap();
        assert!(token > 0);
        assert_eq!(lease["holder"]["agent"], "ada");
        assert_ne!(lease["holder"]["pid"], 0, "the arbiter mcp process holds it");

        let held = failed(call(&b, "lease_acquire", json!({"name": "src/main.rs"})).await, "held");
        assert_eq!(held["detail"]["held"]["holders"][0]["token"], token, "{held}");
        // Waiting a little, then still held.
        failed(call(&b, "lease_acquire", json!({"name": "src/main.rs", "wait": "200ms"})).await, "held");

        let renewed = ok(call(&a, "lease_renew", json!({"name": "src/main.rs", "token": token, "ttl": "1m"})).await);
        assert_eq!(renewed["token"], token);
        failed(call(&a, "lease_renew", json!({"name": "src/main.rs", "token": token + 7})).await, "lost");

        let shown = ok(call(&b, "lease_show", json!({"name": "src/main.rs"})).await);
        assert_eq!(shown["holders"][0]["token"], token);
        assert_eq!(shown["last_token"], token);

        let released = ok(call(&a, "lease_release", json!({"name": "src/main.rs", "token": token})).await);
        assert_eq!(released["released"], true);
        failed(call(&a, "lease_release", json!({"name": "src/main.rs", "token": token})).await, "lost");
        let shown = ok(call(&b, "lease_show", json!({"name": "src/main.rs"})).await);
        assert_eq!(shown["holders"], json!([]));

        // Namespaces are apart: the same name in another namespace is another lease.
        let other = ok(call(&b, "lease_acquire", json!({"name": "src/main.rs", "namespace": "team-b"})).await);
        assert_eq!(other["namespace"], "team-b");

        // A's MCP process ends: its lease is free for B at once, long before its TTL.
        ok(call(&a, "lease_acquire", json!({"name": "build", "ttl": "10m"})).await);
        failed(call(&b, "lease_acquire", json!({"name": "build"})).await, "held");
        a.cancel().await.unwrap();
        let mut taken = None;
        for _ in 0..100 {
            match call(&b, "lease_acquire", json!({"name": "build"})).await {
                Ok(result) if result.is_error == Some(false) => {
                    taken = result.structured_content;
                    break;
                }
                _ => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
            }
        }
        let taken = taken.expect("the lease of a gone MCP process is free at once");
        assert!(taken["token"].as_i64().unwrap() > 0);

        // Bad arguments: invalid params naming the field; nothing taken.
        invalid(call(&b, "lease_acquire", json!({"name": "bad name!"})).await, "name");
        invalid(call(&b, "lease_acquire", json!({"name": "x", "ttl": 30})).await, "ttl");
        invalid(call(&b, "lease_acquire", json!({"name": "x", "ttl": "soon"})).await, "ttl");
        invalid(call(&b, "lease_acquire", json!({"name": "x", "wait": "1h"})).await, "wait");
        invalid(call(&b, "lease_acquire", json!({"name": "x", "slots": 0})).await, "slots");
        invalid(call(&b, "lease_acquire", json!({"name": "x", "namespace": "Bad NS"})).await, "namespace");
        invalid(call(&b, "lease_acquire", json!({"name": "x", "holder": "me"})).await, "holder");
        invalid(call(&b, "lease_renew", json!({"name": "x", "token": 0})).await, "token");
        let missing = call(&b, "lease_release", json!({"token": 1})).await;
        assert!(matches!(&missing, Err(ServiceError::McpError(e)) if e.code == ErrorCode::INVALID_PARAMS && e.message.contains("name")), "{missing:?}");
        // Bad input took nothing: the name was never taken.
        failed(call(&b, "lease_show", json!({"name": "x"})).await, "not_found");
        b.cancel().await.unwrap();
    });
}

/// Keys, decisions, notifications, limits, logs and the fleet, each tool's success and
/// its error.
fn the_other_tools(store: &Store) {
    store.ok(&["limit", "define", "openai", "--rate", "1/h", "--burst", "1"]);
    runtime().block_on(async {
        let c = connect(store, &config(store)).await;

        let put = ok(call(&c, "kv_put", json!({"key": "plan/owner", "value": "ada"})).await);
        assert_eq!(put["version"], 1);
        let got = ok(call(&c, "kv_get", json!({"key": "plan/owner"})).await);
        assert_eq!((got["value"].as_str(), got["version"].as_i64()), (Some("ada"), Some(1)));
        let swapped = ok(call(&c, "kv_cas", json!({"key": "plan/owner", "value": "bob", "if_version": 1})).await);
        assert_eq!(swapped["version"], 2);
        let conflict = failed(
            call(&c, "kv_cas", json!({"key": "plan/owner", "value": "eve", "if_version": 1})).await,
            "conflict",
        );
        assert_eq!(conflict["detail"]["conflict"]["current_version"], 2, "{conflict}");
        failed(call(&c, "kv_put", json!({"key": "plan/owner", "value": "eve", "if_version": 0})).await, "conflict");
        failed(call(&c, "kv_get", json!({"key": "plan/none"})).await, "not_found");
        let listed = ok(call(&c, "kv_list", json!({"prefix": "plan/"})).await);
        assert_eq!(listed["keys"][0]["value"], "bob");
        invalid(call(&c, "kv_cas", json!({"key": "plan/owner", "value": "x"})).await, "if_version");
        invalid(call(&c, "kv_put", json!({"key": "", "value": "x"})).await, "key");
        let big = "x".repeat(1024 * 1024 + 1);
        invalid(call(&c, "kv_put", json!({"key": "big", "value": big})).await, "value");

        let decided = ok(call(&c, "decide", json!({"text": "Use PostgreSQL in production", "by": "ada"})).await);
        assert_eq!(decided["id"], format!("decision-{}", decided["offset"]));
        invalid(call(&c, "decide", json!({"text": "x", "by": "not an agent"})).await, "by");
        invalid(call(&c, "decide", json!({"text": "  ", "by": "ada"})).await, "text");
        invalid(call(&c, "decide", json!({"text": "x", "title": "two\nlines", "by": "ada"})).await, "title");

        let accepted = ok(call(
            &c,
            "notify",
            json!({"kind": "loop.failure", "severity": "critical", "title": "tests fail on main", "dedupe_key": "main-red"}),
        )
        .await);
        assert_eq!(accepted["sent"], true, "{accepted}");
        invalid(call(&c, "notify", json!({"kind": "x", "severity": "loud", "title": "t"})).await, "severity");
        failed(
            call(&c, "notify", json!({"kind": "x", "severity": "info", "title": "t", "channel": "nope"})).await,
            "bad_input",
        );

        let taken = ok(call(&c, "limit_take", json!({"buckets": ["openai"]})).await);
        assert_eq!(taken["granted"], true);
        let limited = failed(call(&c, "limit_take", json!({"buckets": ["openai"]})).await, "limited");
        assert!(limited["wait_ms"].as_u64().unwrap() > 0, "{limited}");
        failed(call(&c, "limit_take", json!({"buckets": ["undefined"]})).await, "not_found");
        invalid(call(&c, "limit_take", json!({"buckets": ["openai", "openai"]})).await, "buckets");
        invalid(call(&c, "limit_take", json!({"buckets": ["openai"], "priority": "urgent"})).await, "priority");

        let first = ok(call(&c, "log_append", json!({"stream": "events", "body": "one", "key": "k1"})).await);
        assert_eq!((first["offset"].as_i64(), first["duplicate"].as_bool()), (Some(0), Some(false)));
        let again = ok(call(&c, "log_append", json!({"stream": "events", "body": "one", "key": "k1"})).await);
        assert_eq!((again["offset"].as_i64(), again["duplicate"].as_bool()), (Some(0), Some(true)));
        ok(call(&c, "log_append", json!({"stream": "events", "body": "{\"n\":2}", "json_body": true})).await);
        invalid(call(&c, "log_append", json!({"stream": "events", "body": "{", "json_body": true})).await, "record");
        let read = ok(call(&c, "log_read", json!({"stream": "events", "from": 1})).await);
        assert_eq!(read["records"].as_array().unwrap().len(), 1);
        assert_eq!(read["records"][0]["body"], "{\"n\":2}");
        let read = ok(call(&c, "log_read", json!({"stream": "events", "consumer": "indexer", "limit": 1})).await);
        assert_eq!(read["records"][0]["body"], "one");
        invalid(call(&c, "log_read", json!({"stream": "events", "from": -1})).await, "from");
        invalid(call(&c, "log_read", json!({"stream": "events", "limit": 5000})).await, "limit");

        let fleet = ok(call(&c, "status", json!({})).await);
        assert_eq!(fleet["loops"], json!([]));
        invalid(call(&c, "status", json!({"namespace": ""})).await, "namespace");
        c.cancel().await.unwrap();
    });
}

/// `arbiter serve` on a port the OS chose; its address, once it listens.
async fn serve(store: &Store) -> (tokio::process::Child, String) {
    use tokio::io::AsyncBufReadExt;
    let mut server = tokio::process::Command::new(bin())
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("ARBITER_STORE", &store.url)
        .env_remove("ARBITER_LOG")
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("arbiter serve starts");
    let mut lines = tokio::io::BufReader::new(server.stderr.take().unwrap()).lines();
    let addr = tokio::time::timeout(SOON, async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(addr) = line.strip_prefix("arbiter: serving on ") {
                return addr.to_string();
            }
        }
        panic!("arbiter serve ended before listening");
    })
    .await
    .expect("arbiter serve listens in time");
    // Its stderr is closed from here on, as `arbiter serve 2>&1 | head -1` leaves it: the
    // refusals it logs must not keep their answers from the client.
    drop(lines);
    (server, addr)
}

async fn connect_http(base: &str, secret: Option<&str>) -> Result<Client, String> {
    use rmcp::transport::StreamableHttpClientTransport;
    use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
    // rmcp's client is reqwest, built without a default TLS provider here.
    arbiter_notify::init_tls();
    let mut config = StreamableHttpClientTransportConfig::with_uri(format!("{base}/mcp"));
    if let Some(secret) = secret {
        config = config.auth_header(secret);
    }
    let transport = StreamableHttpClientTransport::from_config(config);
    tokio::time::timeout(SOON, ClientConfig::default().serve(transport))
        .await
        .expect("the handshake ends in time")
        .map_err(|e| e.to_string())
}

/// `/mcp` of `arbiter serve`: the bearer tokens of `arbiter token create`, their
/// namespaces and scopes, and a revoked token refused at once.
fn through_the_server(store: &Store) {
    let secret = |args: &[&str]| store.ok(args).stdout.trim().to_string();
    let a = secret(&[
        "-n",
        "a",
        "token",
        "create",
        "--name",
        "agent-a",
        "--scope",
        "lease:write,kv:read",
    ]);
    let b = secret(&["-n", "b", "token", "create", "--name", "agent-b"]);
    runtime().block_on(async {
        let (mut server, base) = serve(store).await;
        let agent_a = connect_http(&base, Some(&a)).await.expect("token a connects");
        let names: Vec<String> = agent_a
            .list_all_tools()
            .await
            .unwrap()
            .into_iter()
            .map(|t| t.name.to_string())
            .collect();
        assert_eq!(names, TOOLS);

        // The token's own namespace and scope; the holder is the token.
        let lease = ok(call(
            &agent_a,
            "lease_acquire",
            json!({"namespace": "a", "name": "README.md", "agent": "bot"}),
        )
        .await);
        assert_eq!(lease["holder"]["agent"], "agent-a/bot", "{lease}");
        assert_eq!(lease["holder"]["host"], "", "{lease}");
        // Namespace b, a write with a read scope, a primitive without a scope: refused.
        let refused = failed(
            call(
                &agent_a,
                "lease_acquire",
                json!({"namespace": "b", "name": "README.md"}),
            )
            .await,
            "forbidden",
        );
        assert!(
            refused["message"].as_str().unwrap().contains("namespace \"b\""),
            "{refused}"
        );
        failed(
            call(&agent_a, "kv_put", json!({"namespace": "a", "key": "k", "value": "v"})).await,
            "forbidden",
        );
        failed(
            call(
                &agent_a,
                "log_append",
                json!({"namespace": "a", "stream": "s", "body": "x"}),
            )
            .await,
            "forbidden",
        );
        failed(
            call(&agent_a, "kv_get", json!({"namespace": "a", "key": "k"})).await,
            "not_found",
        );

        // Token b: its own namespace only.
        let agent_b = connect_http(&base, Some(&b)).await.expect("token b connects");
        ok(call(&agent_b, "kv_put", json!({"namespace": "b", "key": "k", "value": "v"})).await);
        failed(
            call(&agent_b, "lease_show", json!({"namespace": "a", "name": "README.md"})).await,
            "forbidden",
        );

        // No token, or a wrong one: the server refuses before MCP starts.
        let anonymous = connect_http(&base, None).await.expect_err("no token is refused");
        assert!(anonymous.contains("Auth required"), "{anonymous}");
        connect_http(&base, Some("arb_not-a-token"))
            .await
            .expect_err("a wrong token is refused");

        // Revoked: the next call fails at once.
        store.ok(&["token", "revoke", "agent-a"]);
        let after = call(&agent_a, "kv_get", json!({"namespace": "a", "key": "k"})).await;
        assert!(after.is_err(), "a revoked token is refused: {after:?}");

        agent_b.cancel().await.unwrap();
        server.start_kill().unwrap();
        server.wait().await.unwrap();
    });
}

arbiter_testkit::each_backend!(Store; lists_tools, leases, the_other_tools, through_the_server);
