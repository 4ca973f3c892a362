//! Where the proxy listens, and what it refuses: other hosts (never an open proxy),
//! non-loopback addresses, unsafe socket paths.

use std::path::Path;

use arbiter_core::ErrorKind;
use arbiter_core::name::LoopName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{Harness, fake_config};

/// One raw HTTP/1.1 exchange; returns the status and the whole answer.
async fn raw<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(mut stream: S, request: &str) -> (u16, String) {
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

fn request(target: &str, host: &str) -> String {
    format!("GET {target} HTTP/1.1\r\nHost: {host}\r\nAuthorization: token alice-token-1\r\nConnection: close\r\n\r\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_for_other_hosts_are_refused() {
    let h = Harness::start(fake_config(), |_| {}).await;
    let connect = || tokio::net::TcpStream::connect(h.addr);
    let before = h.upstream_requests();
    for (target, host) in [
        ("/user", "example.com"),
        ("http://example.com/user", "example.com"),
        ("http://example.com/user", "api.github.com"),
        ("/user", "api.github.com.example.com"),
    ] {
        let (status, answer) = raw(connect().await.unwrap(), &request(target, host)).await;
        assert_eq!(status, 403, "{target} for {host}: {answer}");
        assert!(answer.contains("host_refused"));
    }
    assert_eq!(h.upstream_requests(), before, "nothing was forwarded");
    for host in ["api.github.com", "localhost", &h.addr.to_string()] {
        let (status, answer) = raw(connect().await.unwrap(), &request("/user", host)).await;
        assert_eq!(status, 200, "{host}: {answer}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_loopback_addresses_are_listened_on() {
    let h = Harness::start(fake_config(), |_| {}).await;
    let err = h.proxy().listen_tcp("0.0.0.0:0".parse().unwrap()).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::BadInput);
    assert!(err.message.starts_with("--listen 0.0.0.0:0: "), "{}", err.message);
    let bad = arbiter_github::Proxy::start(h.store.clone(), crate::support::proxy_config("ftp://x", "x")).await;
    assert_eq!(bad.err().map(|e| e.kind), Some(ErrorKind::BadInput));
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::symlink_metadata(path).unwrap().permissions().mode() & 0o777
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_unix_socket_is_private_and_attributed_to_its_loop() {
    let h = Harness::start(fake_config(), |_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("run").join("github.sock");
    let tag = LoopName::parse("triage").unwrap();
    h.proxy().listen_unix(&socket, Some(tag.clone())).await.unwrap();
    assert_eq!(mode(&socket), 0o600);
    assert_eq!(mode(socket.parent().unwrap()), 0o700);
    let stream = tokio::net::UnixStream::connect(&socket).await.unwrap();
    let (status, answer) = raw(stream, &request("/repos/octo/hello/issues", "api.github.com")).await;
    assert_eq!(status, 200, "{answer}");
    let tagged = h.proxy().counters(Some(&tag));
    // GET /user (the token's identity, once) and the request.
    assert_eq!(
        (tagged.upstream_calls, tagged.identities.clone()),
        (2, vec!["alice".to_string()])
    );
    assert_eq!(
        h.proxy()
            .counters(Some(&LoopName::parse("other").unwrap()))
            .upstream_calls,
        0
    );
    // A live proxy's socket is not taken over.
    let err = h.proxy().listen_unix(&socket, None).await.unwrap_err();
    assert!(err.message.contains("already listening"), "{}", err.message);
    // At shutdown the counts are added to the store, per identity and per loop, and the
    // socket is removed.
    let mut h = h;
    h.proxy.take().unwrap().shutdown().await;
    assert!(!socket.exists());
    let ns = arbiter_core::name::Namespace::parse("proxy").unwrap();
    let counters = h.store.limits().counters(&ns, "github/alice").await.unwrap();
    let value = |scope: &str, name: &str| {
        counters
            .iter()
            .find(|c| c.scope == scope && c.name == name)
            .map(|c| c.value)
    };
    assert_eq!(value("github/alice", "upstream_calls"), Some(2));
    assert_eq!(value("github/alice/loop/triage", "upstream_calls"), Some(2));
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsafe_socket_paths_are_refused_and_stale_sockets_replaced() {
    use std::os::unix::fs::PermissionsExt;
    let h = Harness::start(fake_config(), |_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    // A planted symlink.
    let link = dir.path().join("link.sock");
    std::os::unix::fs::symlink(dir.path().join("elsewhere"), &link).unwrap();
    let err = h.proxy().listen_unix(&link, None).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::BadInput);
    assert!(err.message.contains("symbolic link"), "{}", err.message);
    assert!(!dir.path().join("elsewhere").exists());
    // A directory others can enter.
    let open = dir.path().join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o755)).unwrap();
    let err = h.proxy().listen_unix(&open.join("x.sock"), None).await.unwrap_err();
    assert!(err.message.contains("private"), "{}", err.message);
    assert_eq!(mode(&open), 0o755, "left as it was");
    // A stale socket of a dead proxy is replaced.
    let stale = dir.path().join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    h.proxy().listen_unix(&stale, None).await.unwrap();
    let (status, _) = raw(
        tokio::net::UnixStream::connect(&stale).await.unwrap(),
        &request("/user", "api.github.com"),
    )
    .await;
    assert_eq!(status, 200);
    // A regular file is not removed.
    let file = dir.path().join("file.sock");
    std::fs::write(&file, "keep").unwrap();
    assert!(h.proxy().listen_unix(&file, None).await.is_err());
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep");
}
