//! A fake GitHub, a store and a proxy in front of them; a client that speaks to the proxy.

use std::net::SocketAddr;
use std::time::Duration;

use arbiter_core::name::Namespace;
use arbiter_fake_github::{Config, FakeGitHub, RepoSeed, Seed, User};
use arbiter_github::{Proxy, ProxyConfig};
use arbiter_store::{Store, StoreUrl};
use arbiter_testkit::TempSqlite;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// alice has two tokens (one budget, two caches); bob has one.
pub fn fake_config() -> Config {
    Config {
        users: vec![
            User::new("alice", 1, &["alice-token-1", "alice-token-2"]),
            User::new("bob", 2, &["bob-token-1"]),
        ],
        seed: Seed::new().repo(RepoSeed::new("octo", "hello").issues(5).pulls(2).comments(1)),
        ..Config::default()
    }
}

pub struct Harness {
    pub fake: FakeGitHub,
    pub store: Store,
    pub proxy: Option<Proxy>,
    pub addr: SocketAddr,
    pub client: reqwest::Client,
    _sqlite: Option<TempSqlite>,
}

pub async fn open_store(url: &str) -> Store {
    Store::open(&StoreUrl::parse(url).expect("a store URL"))
        .await
        .expect("the store opens")
}

impl Harness {
    /// A fake from `fake`, a new SQLite store, a proxy on loopback TCP.
    pub async fn start(fake: Config, tune: impl FnOnce(&mut ProxyConfig)) -> Harness {
        let sqlite = TempSqlite::new();
        let mut harness = Harness::start_on(&sqlite.url(), fake, tune).await;
        harness._sqlite = Some(sqlite);
        harness
    }

    pub async fn start_on(store_url: &str, fake: Config, tune: impl FnOnce(&mut ProxyConfig)) -> Harness {
        let fake = FakeGitHub::start(fake).await.expect("the fake starts");
        let store = open_store(store_url).await;
        let mut config = proxy_config(&fake.url(), "host-a");
        tune(&mut config);
        let proxy = Proxy::start(store.clone(), config).await.expect("the proxy starts");
        let addr = proxy
            .listen_tcp("127.0.0.1:0".parse().unwrap())
            .await
            .expect("the proxy listens");
        Harness {
            fake,
            store,
            proxy: Some(proxy),
            addr,
            client: client(),
            _sqlite: None,
        }
    }

    pub fn proxy(&self) -> &Proxy {
        self.proxy.as_ref().expect("the proxy runs")
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub async fn get(&self, token: &str, path: &str) -> Answer {
        send(
            self.client
                .get(self.url(path))
                .header("authorization", format!("token {token}")),
        )
        .await
    }

    pub async fn graphql(&self, token: &str, query: &str, variables: serde_json::Value) -> Answer {
        let body = serde_json::json!({ "query": query, "variables": variables });
        send(
            self.client
                .post(self.url("/graphql"))
                .header("authorization", format!("bearer {token}"))
                .json(&body),
        )
        .await
    }

    /// Requests the fake has answered so far.
    pub fn upstream_requests(&self) -> u64 {
        self.fake.stats().requests
    }
}

pub fn proxy_config(upstream: &str, source: &str) -> ProxyConfig {
    ProxyConfig {
        upstream: upstream.to_string(),
        namespace: Namespace::parse("proxy").unwrap(),
        source: source.to_string(),
        max_wait: Duration::from_secs(10),
        ..ProxyConfig::default()
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("a client")
}

#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl Answer {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("JSON ({e}): {}", self.body))
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

pub async fn send(request: reqwest::RequestBuilder) -> Answer {
    let response = request.send().await.expect("the proxy answers");
    Answer {
        status: response.status().as_u16(),
        headers: response.headers().clone(),
        body: response.text().await.expect("a body"),
    }
}

/// The GraphQL query `gh issue list` sends, in short.
pub const ISSUES: &str = "query IssueList($owner: String!, $repo: String!) { \
    repository(owner: $owner, name: $repo) { id issues(first: 50) { totalCount nodes { number title } } } }";

pub fn hello() -> serde_json::Value {
    serde_json::json!({ "owner": "octo", "repo": "hello" })
}

/// A small upstream of the test's own, for what the fake GitHub does not do: answers
/// larger than the proxy holds, echoes of the headers it was sent, exact lengths on HEAD.
/// Every token `<login>-…` is that login's; `bad-…` tokens are refused (401); a
/// `spent-…` token's user is out of budget (`GET /user`: 403, `x-ratelimit-remaining: 0`).
///
/// - `GET /user`: `{"login": …}`.
/// - `GET|HEAD /echo`: the request's `accept` values, `range`, `time-zone` and
///   `if-none-match` as JSON, with an ETag of what it echoes (as GitHub's differ per
///   representation) and its exact `content-length`.
/// - `GET /big`: [`BIG_PART`] bytes of `a`, then — once [`Peer::release`] is called — as
///   many of `b`.
/// - `POST /graphql`: `{"data": {"calls": N}}`, N the GraphQL requests it had so far.
/// - `POST /repos/…`: 201 (a write under the path GitHub would read, percent-decoded).
/// - `GET /moved`: a 302 to `http://elsewhere.example/steal`.
/// - `POST /upload`: reads the body, says when [`BIG_PART`] bytes have come
///   ([`Peer::uploaded`]), answers `{"received": N}`.
pub struct Peer {
    pub addr: SocketAddr,
    pub seen: std::sync::Arc<std::sync::Mutex<Vec<(String, http::HeaderMap)>>>,
    pub uploaded: std::sync::Arc<tokio::sync::Notify>,
    /// While set, `POST /graphql` waits for [`Peer::release`] before it answers.
    pub hold_graphql: std::sync::Arc<std::sync::atomic::AtomicBool>,
    release: std::sync::Arc<tokio::sync::Notify>,
    server: tokio::task::JoinHandle<()>,
}

pub const BIG_PART: usize = 1 << 20;

impl Peer {
    pub async fn start() -> Peer {
        use axum::body::Body;
        use axum::extract::Request;
        use axum::response::Response;
        let seen: std::sync::Arc<std::sync::Mutex<Vec<(String, http::HeaderMap)>>> = Default::default();
        let release = std::sync::Arc::new(tokio::sync::Notify::new());
        let uploaded = std::sync::Arc::new(tokio::sync::Notify::new());
        let hold_graphql = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (log, gate, progress, hold) = (seen.clone(), release.clone(), uploaded.clone(), hold_graphql.clone());
        let router = axum::Router::new().fallback(move |request: Request| {
            let (log, gate, progress, hold) = (log.clone(), gate.clone(), progress.clone(), hold.clone());
            async move {
                let (parts, body) = request.into_parts();
                let headers = parts.headers.clone();
                log.lock()
                    .unwrap()
                    .push((format!("{} {}", parts.method, parts.uri.path()), headers.clone()));
                let token = headers
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.split_whitespace().nth(1))
                    .unwrap_or_default()
                    .to_string();
                let mut response = Response::new(Body::empty());
                if token.starts_with("spent-") && parts.uri.path() == "/user" {
                    // Its user is out of budget: GitHub's primary-limit refusal.
                    let reset = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .unwrap()
                        .as_secs()
                        + 3600;
                    *response.status_mut() = http::StatusCode::FORBIDDEN;
                    let h = response.headers_mut();
                    h.insert("x-ratelimit-remaining", 0.into());
                    h.insert("x-ratelimit-reset", reset.into());
                    *response.body_mut() = Body::from(r#"{"message":"API rate limit exceeded"}"#);
                    return response;
                }
                if token.starts_with("bad-") {
                    *response.status_mut() = http::StatusCode::UNAUTHORIZED;
                    *response.body_mut() = Body::from(r#"{"message":"Bad credentials"}"#);
                    return response;
                }
                match parts.uri.path() {
                    "/user" => {
                        let login = token.split('-').next().unwrap_or_default();
                        *response.body_mut() = Body::from(serde_json::json!({ "login": login }).to_string());
                    }
                    "/echo" => {
                        let all = |name: &str| -> Vec<String> {
                            headers
                                .get_all(name)
                                .iter()
                                .map(|v| v.to_str().unwrap_or_default().to_string())
                                .collect()
                        };
                        let echo = serde_json::json!({
                            "accept": all("accept"),
                            "range": all("range"),
                            "time-zone": all("time-zone"),
                            "if-none-match": all("if-none-match"),
                        })
                        .to_string();
                        let etag = format!(
                            "\"{:x}\"",
                            echo.len() * 31 + echo.bytes().map(u64::from).sum::<u64>() as usize
                        );
                        let h = response.headers_mut();
                        h.insert("etag", etag.parse().unwrap());
                        h.insert("content-length", echo.len().into());
                        if parts.method != http::Method::HEAD {
                            *response.body_mut() = Body::from(echo);
                        }
                    }
                    "/big" => {
                        response.headers_mut().insert("etag", "\"big\"".parse().unwrap());
                        let first = bytes::Bytes::from(vec![b'a'; BIG_PART]);
                        let stream = futures_util::stream::unfold(0, move |step| {
                            let (first, gate) = (first.clone(), gate.clone());
                            async move {
                                match step {
                                    0 => Some((Ok::<_, std::io::Error>(first), 1)),
                                    1 => {
                                        gate.notified().await;
                                        Some((Ok(bytes::Bytes::from(vec![b'b'; BIG_PART])), 2))
                                    }
                                    _ => None,
                                }
                            }
                        });
                        *response.body_mut() = Body::from_stream(stream);
                    }
                    "/graphql" => {
                        if hold.load(std::sync::atomic::Ordering::SeqCst) {
                            gate.notified().await;
                        }
                        let calls = log.lock().unwrap().iter().filter(|(l, _)| l == "POST /graphql").count();
                        *response.body_mut() =
                            Body::from(serde_json::json!({ "data": { "calls": calls } }).to_string());
                    }
                    path if path.starts_with("/repos/") && parts.method == http::Method::POST => {
                        *response.status_mut() = http::StatusCode::CREATED;
                    }
                    "/moved" => {
                        *response.status_mut() = http::StatusCode::FOUND;
                        let location = "http://elsewhere.example/steal";
                        response.headers_mut().insert("location", location.parse().unwrap());
                    }
                    "/upload" => {
                        use futures_util::StreamExt;
                        let mut frames = body.into_data_stream();
                        let (mut received, mut told) = (0, false);
                        while let Some(Ok(chunk)) = frames.next().await {
                            received += chunk.len();
                            if received >= BIG_PART && !told {
                                told = true;
                                progress.notify_one();
                            }
                        }
                        *response.body_mut() = Body::from(serde_json::json!({ "received": received }).to_string());
                    }
                    _ => *response.status_mut() = http::StatusCode::NOT_FOUND,
                }
                response
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Peer {
            addr,
            seen,
            uploaded,
            hold_graphql,
            release,
            server,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Lets `/big` send its second part.
    pub fn release(&self) {
        self.release.notify_one();
    }

    /// The requests it was sent (`METHOD /path`) and their headers.
    pub fn requests(&self, what: &str) -> Vec<http::HeaderMap> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|(line, _)| line == what)
            .map(|(_, h)| h.clone())
            .collect()
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// A store, and a proxy (tuned by `tune`) in front of `upstream`, on loopback TCP.
pub async fn proxy_to(upstream: &str, tune: impl FnOnce(&mut ProxyConfig)) -> (Proxy, SocketAddr, Store, TempSqlite) {
    let sqlite = TempSqlite::new();
    let store = open_store(&sqlite.url()).await;
    let mut config = proxy_config(upstream, "host-a");
    tune(&mut config);
    let proxy = Proxy::start(store.clone(), config).await.expect("the proxy starts");
    let addr = proxy.listen_tcp("127.0.0.1:0".parse().unwrap()).await.unwrap();
    (proxy, addr, store, sqlite)
}

/// One raw HTTP/1.1 exchange; returns the status and the whole answer.
pub async fn raw<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    mut stream: S,
    request: &str,
) -> (u16, String) {
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer).to_string();
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("an HTTP answer: {answer:?}"));
    (status, answer)
}
