//! `arbiter proxy github`: serves until SIGTERM, says where on stderr, forwards the
//! `Authorization` it is given and no header of its own; bad flags exit 2 and create nothing.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use arbiter_testkit::{eventually, receiver::Receiver};
use nix::sys::signal::Signal;

use crate::support::{Background, SOON, Store};

#[test]
fn proxy_github_serves_until_stopped() {
    let store = Store::sqlite();
    let upstream = Receiver::start();
    let mut cmd = store.cmd(&["proxy", "github", "--upstream", &upstream.url(""), "--max-wait", "0"]);
    // Everything the proxy and its HTTP stack log, none of it a token.
    cmd.env("ARBITER_LOG", "trace");
    let mut proxy = Background::start(cmd, store.scratch.path(), "proxy");
    let addr = eventually(SOON, "the proxy says where it listens", || {
        assert!(proxy.running(), "the proxy exited: {}", proxy.stderr());
        let stderr = proxy.stderr();
        let rest = stderr.split("GitHub proxy on http://").nth(1)?;
        Some(rest.split_whitespace().next()?.to_string())
    });
    let mut stream = TcpStream::connect(&addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        stream,
        "GET /repos/octo/hello?per_page=1 HTTP/1.1\r\nHost: api.github.com\r\nAuthorization: token secret-token-1\r\n\
         X-Arbiter-Max-Wait: 5s\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let forwarded = upstream.taken("/repos/octo/hello");
    assert_eq!(forwarded.len(), 1, "{:?}", upstream.requests());
    assert_eq!(forwarded[0].header("authorization"), Some("token secret-token-1"));
    assert_eq!(
        forwarded[0].header("x-arbiter-max-wait"),
        None,
        "arbiter's own header stays"
    );
    proxy.signal(Signal::SIGTERM);
    assert_eq!(proxy.wait(SOON), 0, "{}", proxy.stderr());
    let stderr = proxy.stderr();
    assert!(stderr.contains("TRACE"), "traced: {stderr}");
    assert!(!stderr.contains("secret-token-1"), "the token is never shown");
}

#[test]
fn proxy_github_refuses_bad_flags_and_creates_nothing() {
    let store = Store::sqlite();
    for (args, fragment) in [
        (&["--listen", "0.0.0.0:8080"][..], "--listen 0.0.0.0:8080: "),
        (
            &["--upstream", "ftp://example.com"][..],
            "--upstream ftp://example.com: ",
        ),
        (&["--graphql-fresh", "5x"][..], "--graphql-fresh"),
        (&["--graphql-view-max-age", "soon"][..], "--graphql-view-max-age"),
        (&["--concurrency", "0"][..], "--concurrency"),
        (
            &["--socket", "/tmp/arbiter-proxy-test.sock"][..],
            "--socket /tmp/arbiter-proxy-test.sock: ",
        ),
    ] {
        let mut all = vec!["proxy", "github"];
        all.extend_from_slice(args);
        let out = store.run(&all);
        assert_eq!(out.code, 2, "{args:?}: {out:?}");
        assert!(out.stderr.contains(fragment), "{fragment:?} in {}", out.stderr);
        assert!(!store.exists(), "{args:?} created the store");
    }
}
