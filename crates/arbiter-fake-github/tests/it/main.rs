//! The fake GitHub against real HTTP clients on loopback (reqwest, and the real `gh` over a
//! unix socket): headers, conditional requests, primary and secondary limits, GraphQL.

#[cfg(unix)]
mod gh;
mod graphql;
mod limits;
mod process;
mod rest;

use std::time::Duration;

use arbiter_fake_github::{Config, FakeGitHub, Limits, RepoSeed, Seed, User};
use reqwest::header::HeaderMap;
use serde_json::Value;

/// Two users: `alice` with tokens `a1` and `a2`, `bob` with `b1`; one repository `o/r`
/// (10 issues, 3 pull requests, 2 comments each).
pub fn config(limits: Limits) -> Config {
    Config {
        users: vec![User::new("alice", 1, &["a1", "a2"]), User::new("bob", 2, &["b1"])],
        limits,
        seed: Seed::new().repo(RepoSeed::new("o", "r").issues(10).closed(0).pulls(3)),
        ..Config::default()
    }
}

pub async fn start(config: Config) -> FakeGitHub {
    FakeGitHub::start(config).await.expect("fake starts")
}

pub fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

/// One answer: status, headers, body (JSON, or `Null` when empty).
#[derive(Debug)]
pub struct Got {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Got {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .unwrap_or_else(|| panic!("no {name} header in {self:?}"))
            .to_str()
            .expect("ASCII header")
    }

    pub fn number(&self, name: &str) -> u64 {
        self.header(name)
            .parse()
            .unwrap_or_else(|_| panic!("{name} is not a number in {self:?}"))
    }
}

pub async fn send(
    client: &reqwest::Client,
    fake: &FakeGitHub,
    method: &str,
    path: &str,
    token: &str,
    extra: &[(&str, &str)],
    body: Option<Value>,
) -> Got {
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let mut request = client
        .request(method, format!("{}{path}", fake.url()))
        .header("authorization", format!("token {token}"));
    for (name, value) in extra {
        request = request.header(*name, *value);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("the fake answers");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let bytes = response.bytes().await.expect("body");
    let body = match bytes.is_empty() {
        true => Value::Null,
        false => serde_json::from_slice(&bytes).expect("a JSON body"),
    };
    Got { status, headers, body }
}

pub async fn get(client: &reqwest::Client, fake: &FakeGitHub, path: &str, token: &str) -> Got {
    send(client, fake, "GET", path, token, &[], None).await
}

pub async fn graphql(client: &reqwest::Client, fake: &FakeGitHub, token: &str, query: &str) -> Got {
    let body = serde_json::json!({"query": query});
    send(client, fake, "POST", "/graphql", token, &[], Some(body)).await
}
