//! `arbiter serve` as a process: `--admin-token` prints the secret alone on stdout's first
//! line, tokens are required, and SIGTERM/SIGINT shut it down gracefully — an event stream
//! ends, a waiting acquire is answered (503, not a reset connection), the process exits 0,
//! and no new connection is taken.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use arbiter_testkit::{each_backend, eventually};
use nix::sys::signal::Signal;

use crate::support::{AT_ONCE, Background, SOON, Store};

each_backend!(Store;
    serve_prints_the_admin_token_and_requires_tokens,
    serve_shuts_down_gracefully_on_sigterm,
    serve_shuts_down_gracefully_on_sigint,
    serve_refuses_bad_flags
);

/// A running `arbiter serve --admin-token` on an OS-chosen loopback port.
struct Served {
    process: Background,
    addr: SocketAddr,
    token: String,
}

fn serve(store: &Store, extra: &[&str]) -> Served {
    let mut args = vec!["serve", "--listen", "127.0.0.1:0", "--admin-token"];
    args.extend_from_slice(extra);
    let mut process = Background::start(store.cmd(&args), store.scratch.path(), "serve");
    let addr: SocketAddr = eventually(SOON, "the server says where it listens", || {
        assert!(process.running(), "serve exited: {}", process.stderr());
        // Whole lines only (`split_inclusive` keeps the newline of each finished one): a
        // port cut short by a read mid-write parses too.
        process
            .stderr()
            .split_inclusive('\n')
            .filter_map(|line| line.strip_suffix('\n'))
            .find_map(|line| line.strip_prefix("arbiter: serving on http://")?.trim().parse().ok())
    });
    let token = process
        .stdout()
        .lines()
        .next()
        .expect("the secret on the first line")
        .to_string();
    Served { process, addr, token }
}

/// One HTTP/1.1 request over a fresh connection (`Connection: close`): the whole answer,
/// read until the server closes it.
fn http(addr: SocketAddr, method: &str, path: &str, token: Option<&str>, body: Option<&str>) -> String {
    let mut stream = TcpStream::connect(addr).expect("the server accepts");
    stream.set_read_timeout(Some(SOON)).unwrap();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let body = body.unwrap_or("");
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: arbiter\r\nConnection: close\r\n{auth}\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("the answer ends");
    answer
}

fn serve_prints_the_admin_token_and_requires_tokens(store: &Store) {
    let served = serve(store, &[]);
    assert!(
        served.token.starts_with("arb_") && served.token.len() == 47,
        "{:?}",
        served.token
    );
    let answer = http(served.addr, "GET", "/v1/store", Some(&served.token), None);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let answer = http(served.addr, "GET", "/v1/store", None, None);
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("www-authenticate: bearer"),
        "{answer}"
    );
    // A request id is made for every request and answered back.
    assert!(answer.to_ascii_lowercase().contains("x-request-id: "), "{answer}");
    // The refusal is in the audit, without the secret.
    let audit = store.ok(&["token", "audit", "--json"]);
    assert!(audit.stdout.contains("/v1/store"), "{}", audit.stdout);
    // The token is the admin one: a second start replaces it, the old secret stops working.
    drop(served);
    let again = serve(store, &[]);
    assert!(http(again.addr, "GET", "/v1/store", Some(&again.token), None).starts_with("HTTP/1.1 200"));
    let listed = store.ok(&["token", "list", "--json"]);
    assert_eq!(listed.json().as_array().unwrap().len(), 1, "{}", listed.stdout);
}

fn serve_shuts_down_gracefully_on_sigterm(store: &Store) {
    shuts_down_gracefully(store, Signal::SIGTERM);
}

fn serve_shuts_down_gracefully_on_sigint(store: &Store) {
    shuts_down_gracefully(store, Signal::SIGINT);
}

fn shuts_down_gracefully(store: &Store, signal: Signal) {
    let mut served = serve(store, &[]);
    let (addr, token) = (served.addr, served.token.clone());
    let acquire = r#"{"ttl_ms": 60000}"#;
    let held = http(
        addr,
        "POST",
        "/v1/ns/default/leases/l/acquire",
        Some(&token),
        Some(acquire),
    );
    assert!(held.starts_with("HTTP/1.1 200"), "{held}");
    // In flight when the signal comes: an event stream and an acquire waiting in the server.
    let stream = std::thread::spawn(move || http(addr, "GET", "/v1/ns/default/watch/kv", Some(&token), None));
    let token = served.token.clone();
    let waiting = std::thread::spawn(move || {
        http(
            addr,
            "POST",
            "/v1/ns/default/leases/l/acquire",
            Some(&token),
            Some(r#"{"ttl_ms": 60000, "wait_ms": 120000}"#),
        )
    });
    eventually(SOON, "the acquire waits in the queue", || {
        let shown = store.show("l");
        (shown["waiters"].as_array().map_or(0, Vec::len) == 1).then_some(())
    });
    served.process.signal(signal);
    // Everything in flight ends well before the 10 s bound.
    let code = served.process.wait(AT_ONCE);
    assert_eq!(code, 0, "stderr: {}", served.process.stderr());
    let streamed = stream.join().unwrap();
    assert!(streamed.starts_with("HTTP/1.1 200"), "{streamed}");
    assert!(streamed.contains("text/event-stream"), "{streamed}");
    let answered = waiting.join().unwrap();
    assert!(answered.starts_with("HTTP/1.1 503"), "{answered}");
    assert!(answered.contains("shutting down"), "{answered}");
    // Gone: no new connection is taken.
    assert!(
        TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err(),
        "the listener is closed"
    );
}

fn serve_refuses_bad_flags(store: &Store) {
    let out = store.run(&["serve", "--listen", "nowhere"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("--listen"), "{}", out.stderr);
    let out = store.run(&["serve", "--listen", "0.0.0.0:0"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("no live token"), "{}", out.stderr);
    let out = store.run(&["serve", "--metrics-namespace", "Bad"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    let out = store.run(&["serve", "--insecure-no-auth", "--admin-token"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert_eq!(store.ok(&["token", "list", "--json"]).json(), serde_json::json!([]));
}
