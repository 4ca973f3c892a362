//! A fake GitHub, a store and a proxy in front of them; a client that speaks to the proxy.

use std::net::SocketAddr;
use std::time::Duration;

use arbiter_core::name::Namespace;
use arbiter_fake_github::{Config, FakeGitHub, RepoSeed, Seed, User};
use arbiter_github::{Proxy, ProxyConfig};
use arbiter_store::{Store, StoreUrl};
use arbiter_testkit::TempSqlite;

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
