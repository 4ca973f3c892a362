//! The server over real HTTP on loopback, on both backends: every route, its success and
//! each error it can answer. `dashboard`: the dashboard's page and stream. `queue`: work
//! items (claims, their waits, stale tokens, scopes).

mod auth;
mod dashboard;
mod kv;
mod lease;
mod openapi;
mod queue;
mod routes;
mod unavailable;

use std::net::SocketAddr;

use arbiter_server::{Auth, ServeConfig, Server};
use arbiter_store::{Store, StoreUrl};
use serde_json::Value;

/// A running server on a fresh store, and a client for it.
pub struct Api {
    pub server: Server,
    pub store: Store,
    pub base: String,
    pub http: reqwest::Client,
    /// The bearer token sent with every request, if any.
    pub token: Option<String>,
}

/// The server's configuration in tests: one webhook channel (never called: no dispatcher
/// runs) that takes every `test.*` notification, and the queues' `queue.dead` alerts.
pub fn test_config() -> arbiter_config::Config {
    let text = "[channels.hook]\ntype = \"webhook\"\nurl = \"http://127.0.0.1:9/hook\"\n\n\
                [[routes]]\nkinds = [\"test.*\", \"queue.dead\"]\nchannels = [\"hook\"]\n";
    arbiter_config::Config::parse(text, std::path::Path::new("arbiter.toml")).unwrap()
}

/// An answer: its status and JSON body (`Value::Null` when it has none, a string when it
/// is not JSON).
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Answer {
    /// Asserts the status, and for an error its code; returns the body.
    #[track_caller]
    pub fn expect(self, status: u16) -> Value {
        assert_eq!(self.status, status, "unexpected answer: {:?}", self.body);
        self.body
    }

    /// Asserts an error answer: its status, code, and (if given) the field it names.
    #[track_caller]
    pub fn error(self, status: u16, code: &str, field: Option<&str>) -> Value {
        assert_eq!(self.status, status, "unexpected answer: {:?}", self.body);
        assert_eq!(self.body["error"], code, "{:?}", self.body);
        assert!(
            self.body["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{:?}",
            self.body
        );
        if let Some(field) = field {
            assert_eq!(self.body["field"], field, "{:?}", self.body);
        }
        self.body
    }
}

impl Api {
    /// A server with `--insecure-no-auth` on the store at `url`.
    pub async fn start(url: &str) -> Api {
        Api::start_with(url, Auth::Insecure).await
    }

    pub async fn start_with(url: &str, auth: Auth) -> Api {
        // reqwest is built without a TLS provider of its own (the workspace picks ring).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let store = Store::open(&StoreUrl::parse(url).unwrap()).await.unwrap();
        let listen: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let mut config = ServeConfig::new(listen, auth);
        config.config = std::sync::Arc::new(test_config());
        let server = Server::start(store.clone(), config).await.unwrap();
        Api {
            base: format!("http://{}", server.addr()),
            server,
            store,
            http: reqwest::Client::new(),
            token: None,
        }
    }

    /// A server that requires tokens.
    pub async fn start_tokens(url: &str) -> Api {
        Api::start_with(url, Auth::Tokens).await
    }

    /// Creates a token and returns its secret.
    pub async fn token(&self, name: &str, namespaces: &str, scopes: &str) -> String {
        let created = arbiter_ops::token::create(
            &self.store,
            arbiter_ops::token::CreateToken {
                name: name.to_string(),
                namespaces: namespaces.parse().unwrap(),
                scopes: scopes.parse().unwrap(),
                expires: None,
                replace: false,
            },
        )
        .await
        .unwrap();
        created.secret
    }

    /// The same server and client, sending `token`.
    pub fn with_token(&self, token: &str) -> Caller<'_> {
        Caller {
            api: self,
            token: token.to_string(),
        }
    }

    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let request = self.http.request(method, format!("{}{path}", self.base));
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    pub async fn send(&self, request: reqwest::RequestBuilder) -> Answer {
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap();
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        Answer { status, headers, body }
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.send(self.request(reqwest::Method::GET, path)).await
    }

    pub async fn delete(&self, path: &str) -> Answer {
        self.send(self.request(reqwest::Method::DELETE, path)).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Answer {
        self.send(self.request(reqwest::Method::POST, path).json(&body)).await
    }

    pub async fn put(&self, path: &str, body: Value) -> Answer {
        self.send(self.request(reqwest::Method::PUT, path).json(&body)).await
    }

    /// Sends a raw body (not JSON-encoded by the client).
    pub async fn post_raw(&self, path: &str, body: &'static str) -> Answer {
        self.send(
            self.request(reqwest::Method::POST, path)
                .header("content-type", "application/json")
                .body(body),
        )
        .await
    }

    /// Opens an event stream.
    pub async fn events(&self, path: &str, headers: &[(&str, &str)]) -> Events {
        let mut request = self.request(reqwest::Method::GET, path);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200, "{:?}", response.text().await);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        Events {
            response,
            buffer: String::new(),
        }
    }
}

/// Requests with a given token.
pub struct Caller<'a> {
    pub api: &'a Api,
    pub token: String,
}

impl Caller<'_> {
    /// Sends `method path` with an empty JSON object as its body (for the methods that take
    /// one) and returns the status alone: an event stream's body is not read.
    pub async fn status(&self, method: &reqwest::Method, path: &str) -> (u16, reqwest::Response) {
        let mut request = self
            .api
            .http
            .request(method.clone(), format!("{}{path}", self.api.base))
            .bearer_auth(&self.token);
        if matches!(*method, reqwest::Method::POST | reqwest::Method::PUT) {
            request = request.json(&serde_json::json!({}));
        }
        let response = request.send().await.unwrap();
        (response.status().as_u16(), response)
    }

    pub async fn send(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Answer {
        let mut request = self
            .api
            .http
            .request(method, format!("{}{path}", self.api.base))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        self.api.send(request).await
    }
}

/// Every route of the OpenAPI document: method and path template.
pub fn documented_routes() -> Vec<(reqwest::Method, String)> {
    let document: Value = serde_json::from_str(&arbiter_server::openapi::document_json()).unwrap();
    let mut routes = Vec::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            if let Ok(method) = method.to_uppercase().parse::<reqwest::Method>()
                && ["GET", "POST", "PUT", "DELETE", "PATCH"].contains(&method.as_str())
            {
                routes.push((method, path.clone()));
            }
        }
    }
    assert!(routes.len() > 30, "the document lists the routes: {routes:?}");
    routes
}

/// A route template with sample values for its parameters, in namespace `ns`.
pub fn sample_path(template: &str, ns: &str) -> String {
    template
        .replace("{ns}", ns)
        .replace("{name}", "some%2Fname")
        .replace("{key}", "some%2Fkey")
        .replace("{stream}", "events")
        .replace("{consumer}", "reader")
        .replace("{queue}", "work%2Fq")
        .replace("{id}", "1")
}

/// An open Server-Sent Events stream.
pub struct Events {
    response: reqwest::Response,
    buffer: String,
}

/// One event: its name, id and JSON data.
#[derive(Debug)]
pub struct Event {
    pub name: String,
    pub id: Option<String>,
    pub data: Value,
}

impl Events {
    /// The next event (comments skipped), or `None` when the stream ends; at most 10 s.
    pub async fn next(&mut self) -> Option<Event> {
        tokio::time::timeout(std::time::Duration::from_secs(10), self.next_inner())
            .await
            .expect("an event within 10 s")
    }

    async fn next_inner(&mut self) -> Option<Event> {
        loop {
            while let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut event = Event {
                    name: "message".to_string(),
                    id: None,
                    data: Value::Null,
                };
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(name) = line.strip_prefix("event: ") {
                        event.name = name.to_string();
                    } else if let Some(id) = line.strip_prefix("id: ") {
                        event.id = Some(id.to_string());
                    } else if let Some(line) = line.strip_prefix("data: ") {
                        data.push_str(line);
                    }
                }
                if !data.is_empty() {
                    event.data = serde_json::from_str(&data).unwrap();
                    return Some(event);
                }
            }
            let chunk = self.response.chunk().await.ok()??;
            self.buffer.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }
}

/// A test per backend with a running server: `api_test!(name, |api: Api| async move { … })`.
macro_rules! api_test {
    ($name:ident, $body:expr) => {
        arbiter_testkit::each_backend!($name, |url: String| async move {
            let api = crate::Api::start(&url).await;
            ($body)(api).await
        });
    };
}
pub(crate) use api_test;
