//! The test peer for notifications: a small HTTP/1.1 server on 127.0.0.1 (its own threads,
//! so sync and async tests use it alike) that records every request it gets — path,
//! headers, raw body, arrival time, in arrival order — and answers as told, switchable while
//! a test runs: 200, any other status, 429 with `Retry-After`, hanging past the client's
//! timeout, or not listening at all (connections refused).
//!
//! Every answer carries `Connection: close`, so no pooled connection outlives a switch to
//! "refuse": each delivery attempt is a fresh connection to whatever listens then.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

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
    /// The path, without the query.
    pub path: String,
    /// Lower-case names.
    pub headers: BTreeMap<String, String>,
    /// The raw body, byte for byte.
    pub body: Vec<u8>,
    /// When it arrived.
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
    /// Wakes blocking waiters on each arrival.
    arrived: Condvar,
    /// Wakes async waiters on each arrival.
    arrived_async: tokio::sync::Notify,
}

/// The accepting thread of the listening socket, and how to stop it.
struct Accepting {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

pub struct Receiver {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accepting: Mutex<Option<Accepting>>,
}

/// How often a wait looks again even without an arrival: some conditions depend on more
/// than arrivals.
const RECHECK: Duration = Duration::from_millis(100);

impl Receiver {
    /// Listens on a free port of 127.0.0.1, answering 200.
    pub fn start() -> Receiver {
        Receiver::start_on(TcpListener::bind("127.0.0.1:0").expect("the receiver binds a loopback port"))
    }

    /// Serves on `listener` (a port the test bound itself), answering 200.
    pub fn start_on(listener: TcpListener) -> Receiver {
        let receiver = Receiver {
            addr: listener.local_addr().expect("a bound address"),
            shared: Arc::new(Shared {
                behaviour: Mutex::new(Behaviour::Ok),
                requests: Mutex::new(Vec::new()),
                arrived: Condvar::new(),
                arrived_async: tokio::sync::Notify::new(),
            }),
            accepting: Mutex::new(None),
        };
        receiver.serve(listener);
        receiver
    }

    fn serve(&self, listener: TcpListener) {
        listener.set_nonblocking(true).expect("a non-blocking listener");
        let stop = Arc::new(AtomicBool::new(false));
        let (shared, stopped) = (self.shared.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            // Until told to stop (then the listener is dropped: connections are refused).
            while !stopped.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let shared = shared.clone();
                        std::thread::spawn(move || handle(stream, &shared));
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(2))
                    }
                    Err(e) => panic!("the receiver's accept failed: {e}"),
                }
            }
        });
        *self.accepting.lock().unwrap() = Some(Accepting { stop, thread });
    }

    /// The address it listens on (`127.0.0.1:PORT`).
    pub fn addr(&self) -> SocketAddr {
        self.addr
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
    pub fn refuse(&self) {
        if let Some(accepting) = self.accepting.lock().unwrap().take() {
            accepting.stop.store(true, Ordering::SeqCst);
            accepting.thread.join().expect("the accept thread ends");
        }
    }

    /// Listens again on the same port.
    pub fn listen(&self) {
        if self.accepting.lock().unwrap().is_some() {
            return;
        }
        // The port was ours a moment ago; binding it again can only race with a stray
        // client socket, so retry briefly (bounded).
        let listener = crate::eventually(Duration::from_secs(5), "the receiver's port to bind again", || {
            TcpListener::bind(self.addr).ok()
        });
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

    /// Waits (at most `limit`, blocking the thread) until `check` holds for the requests so
    /// far; panics naming `what` otherwise.
    #[track_caller]
    pub fn wait_for(&self, limit: Duration, what: &str, check: impl Fn(&[Request]) -> bool) {
        let deadline = Instant::now() + limit;
        let mut requests = self.shared.requests.lock().unwrap();
        while !check(&requests) {
            let now = Instant::now();
            if now >= deadline {
                timed_out(limit, what, requests);
            }
            let wake = (deadline - now).min(RECHECK);
            requests = self.shared.arrived.wait_timeout(requests, wake).unwrap().0;
        }
    }

    /// [`Receiver::wait_for`] for async tests: the wait does not block the runtime.
    pub async fn wait_for_async(&self, limit: Duration, what: &str, check: impl Fn(&[Request]) -> bool) {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let arrived = self.shared.arrived_async.notified();
            {
                let requests = self.shared.requests.lock().unwrap();
                if check(&requests) {
                    return;
                }
                if tokio::time::Instant::now() >= deadline {
                    timed_out(limit, what, requests);
                }
            }
            let wake = deadline.min(tokio::time::Instant::now() + RECHECK);
            let _ = tokio::time::timeout_at(wake, arrived).await;
        }
    }
}

/// The panic of a wait that ran out, with what had arrived.
#[track_caller]
fn timed_out(limit: Duration, what: &str, requests: MutexGuard<'_, Vec<Request>>) -> ! {
    let summary: Vec<String> = requests
        .iter()
        .map(|r| format!("{} {:?} {}", r.path, r.answer, r.header("x-arbiter-id").unwrap_or("-")))
        .collect();
    let count = requests.len();
    drop(requests);
    panic!("timed out after {limit:?} waiting for {what}; {count} request(s): {summary:#?}");
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.refuse();
    }
}

/// Reads one request (head, then a `Content-Length` body), records it, and answers.
fn handle(mut stream: TcpStream, shared: &Shared) {
    stream.set_nonblocking(false).expect("a blocking stream");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("a read timeout");
    let mut data = Vec::new();
    let mut buf = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => data.extend_from_slice(&buf[..n]),
        }
    };
    let head = String::from_utf8_lossy(&data[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let target = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .unwrap_or("/")
        .to_string();
    let headers: BTreeMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let length: usize = headers.get("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
    while data.len() < head_end + length {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => data.extend_from_slice(&buf[..n]),
        }
    }
    let body = data[head_end..head_end + length].to_vec();
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
            path: target.split('?').next().unwrap_or("/").to_string(),
            headers,
            body,
            at: Instant::now(),
            answer,
        });
    }
    shared.arrived.notify_all();
    shared.arrived_async.notify_waiters();
    let (status, extra, text) = match behaviour {
        Behaviour::Ok => (200, String::new(), "ok".to_string()),
        Behaviour::Status(code) => (code, String::new(), format!("receiver says {code}")),
        Behaviour::Echo(code) => (
            code,
            String::new(),
            format!("no hook at {target} (http://127.0.0.1{target})"),
        ),
        Behaviour::TooMany { retry_after } => (429, format!("Retry-After: {retry_after}\r\n"), "slow down".to_string()),
        Behaviour::Hang(duration) => {
            std::thread::sleep(duration);
            (200, String::new(), "ok, late".to_string())
        }
    };
    let response = format!(
        "HTTP/1.1 {status} X\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n{extra}\r\n{text}",
        text.len()
    );
    let _ = stream.write_all(response.as_bytes());
    let _ = stream.flush();
}
