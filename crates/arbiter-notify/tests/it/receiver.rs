//! The test peer: a real HTTP server on 127.0.0.1 (axum) that records every request it
//! gets — path, headers, raw body, arrival time, in arrival order — and answers as told,
//! switchable while a test runs: 200, any other status, 429 with `Retry-After`, hanging
//! past the client's timeout, or not listening at all (connections refused).
//!
//! Every answer carries `Connection: close`, so no pooled connection outlives a switch to
//! "refuse": each delivery attempt is a fresh connection to whatever listens then.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// How the receiver answers the next requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// 200 OK: taken.
    Ok,
    /// This status (503, 500 …) with a short body.
    Status(u16),
    /// This status with a body that echoes the request's path and query, as some proxies'
    /// error pages do.
    Echo(u16),
    /// 429 with `Retry-After: SECONDS`.
    TooMany { retry_after: u32 },
    /// Takes the request (as a slow receiver that processes on arrival would), then sleeps
    /// this long before answering 200: past the sender's timeout.
    Hang(Duration),
}

/// What the receiver did with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Status(u16),
    /// Taken, answered (200) only after the hang.
    Hung,
}

/// One request as it arrived.
#[derive(Debug, Clone)]
pub struct Request {
    /// Arrival order, from 0.
    pub seq: usize,
    pub path: String,
    /// Lower-case names.
    pub headers: BTreeMap<String, String>,
    /// The raw body, byte for byte.
    pub body: Vec<u8>,
    /// When it arrived (the receiver's clock).
    pub at: Instant,
    pub answer: Answer,
}

impl Request {
    /// Whether the receiver took it: answered 2xx, or processed it and answered late.
    pub fn taken(&self) -> bool {
        matches!(self.answer, Answer::Status(200) | Answer::Hung)
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("request {} to {} is not JSON ({e})", self.seq, self.path))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }

    /// The stable message id the sender puts in `X-Arbiter-Id`.
    pub fn id(&self) -> &str {
        self.header("x-arbiter-id")
            .unwrap_or_else(|| panic!("request {} to {} has no X-Arbiter-Id", self.seq, self.path))
    }
}

struct Shared {
    behaviour: Mutex<Behaviour>,
    requests: Mutex<Vec<Request>>,
    arrived: tokio::sync::Notify,
}

pub struct Receiver {
    addr: SocketAddr,
    shared: Arc<Shared>,
    server: Mutex<Option<JoinHandle<()>>>,
}

impl Receiver {
    /// Listens on a free port of 127.0.0.1, answering 200.
    pub async fn start() -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("the receiver binds a loopback port");
        let receiver = Receiver {
            addr: listener.local_addr().expect("a bound address"),
            shared: Arc::new(Shared {
                behaviour: Mutex::new(Behaviour::Ok),
                requests: Mutex::new(Vec::new()),
                arrived: tokio::sync::Notify::new(),
            }),
            server: Mutex::new(None),
        };
        receiver.serve(listener);
        receiver
    }

    fn serve(&self, listener: tokio::net::TcpListener) {
        let app = Router::new().fallback(handle).with_state(self.shared.clone());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("the receiver serves");
        });
        *self.server.lock().unwrap() = Some(task);
    }

    /// `http://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn set(&self, behaviour: Behaviour) {
        *self.shared.behaviour.lock().unwrap() = behaviour;
    }

    /// Stops listening: the listening socket is closed, so connections are refused until
    /// [`Receiver::listen`]. (Requests already in progress finish.)
    pub async fn refuse(&self) {
        let task = self.server.lock().unwrap().take();
        if let Some(task) = task {
            task.abort();
            let _ = task.await;
        }
    }

    /// Listens again on the same port.
    pub async fn listen(&self) {
        if self.server.lock().unwrap().is_some() {
            return;
        }
        // The port was ours a moment ago; binding it again can only race with a stray
        // client socket, so retry briefly (bounded).
        let deadline = Instant::now() + Duration::from_secs(5);
        let listener = loop {
            match tokio::net::TcpListener::bind(self.addr).await {
                Ok(listener) => break listener,
                Err(e) if Instant::now() < deadline => {
                    eprintln!("receiver: re-binding {} failed ({e}); retrying", self.addr);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => panic!("cannot listen on {} again: {e}", self.addr),
            }
        };
        self.serve(listener);
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<Request> {
        self.shared.requests.lock().unwrap().clone()
    }

    /// The requests to `path` the receiver took, in arrival order.
    pub fn taken(&self, path: &str) -> Vec<Request> {
        self.requests()
            .into_iter()
            .filter(|r| r.path == path && r.taken())
            .collect()
    }

    /// How many requests arrived so far.
    pub fn count(&self) -> usize {
        self.shared.requests.lock().unwrap().len()
    }

    /// Waits (at most `limit`) until `check` holds for the requests so far; panics naming
    /// `what` otherwise.
    pub async fn wait_for(&self, limit: Duration, what: &str, check: impl Fn(&[Request]) -> bool) {
        let deadline = Instant::now() + limit;
        loop {
            let arrived = self.shared.arrived.notified();
            if check(&self.shared.requests.lock().unwrap()) {
                return;
            }
            // Re-checks at least every 100 ms: some conditions depend on more than arrivals.
            let wake = deadline.min(Instant::now() + Duration::from_millis(100));
            if tokio::time::timeout_at(wake, arrived).await.is_err() && Instant::now() >= deadline {
                let requests = self.requests();
                let summary: Vec<String> = requests
                    .iter()
                    .map(|r| format!("{} {:?} {}", r.path, r.answer, r.header("x-arbiter-id").unwrap_or("-")))
                    .collect();
                panic!(
                    "timed out after {limit:?} waiting for {what}; {} request(s): {summary:#?}",
                    requests.len()
                );
            }
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if let Some(task) = self.server.lock().unwrap().take() {
            task.abort();
        }
    }
}

async fn handle(State(shared): State<Arc<Shared>>, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let behaviour = *shared.behaviour.lock().unwrap();
    let answer = match behaviour {
        Behaviour::Ok => Answer::Status(200),
        Behaviour::Status(code) | Behaviour::Echo(code) => Answer::Status(code),
        Behaviour::TooMany { .. } => Answer::Status(429),
        Behaviour::Hang(_) => Answer::Hung,
    };
    {
        let mut requests = shared.requests.lock().unwrap();
        let seq = requests.len();
        requests.push(Request {
            seq,
            path: uri.path().to_string(),
            headers: headers
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_str().to_string(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect(),
            body: body.to_vec(),
            at: Instant::now(),
            answer,
        });
    }
    shared.arrived.notify_waiters();
    let close = (header::CONNECTION, "close".to_string());
    match behaviour {
        Behaviour::Ok => (StatusCode::OK, [close], "ok").into_response(),
        Behaviour::Status(code) => {
            let status = StatusCode::from_u16(code).expect("a valid status");
            (status, [close], format!("receiver says {code}")).into_response()
        }
        Behaviour::Echo(code) => {
            let status = StatusCode::from_u16(code).expect("a valid status");
            (status, [close], format!("no hook at {uri} (http://127.0.0.1{uri})")).into_response()
        }
        Behaviour::TooMany { retry_after } => (
            StatusCode::TOO_MANY_REQUESTS,
            [close, (header::RETRY_AFTER, retry_after.to_string())],
            "slow down",
        )
            .into_response(),
        Behaviour::Hang(duration) => {
            tokio::time::sleep(duration).await;
            (StatusCode::OK, [close], "ok, late").into_response()
        }
    }
}
