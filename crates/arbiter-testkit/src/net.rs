//! Network test peers: a TCP proxy that can stall, and a listener that never speaks.
//!
//! Both run on a thread of their own with their own runtime, so sync tests (which drive
//! real `arbiter` processes) and async tests use them alike; dropping one stops it and
//! closes every connection it holds.

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch};

/// A TCP proxy on `127.0.0.1:<port>` to one upstream. [`StallProxy::freeze`] stops it
/// forwarding bytes in both directions while every connection stays open (a stalled network
/// link, a frozen load balancer); [`StallProxy::resume`] lets the held bytes through.
/// Connections accepted while frozen are held unanswered until it resumes.
pub struct StallProxy {
    addr: SocketAddr,
    frozen: Arc<watch::Sender<bool>>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl StallProxy {
    /// Starts forwarding to `upstream` (e.g. `127.0.0.1:5432`).
    pub fn start(upstream: SocketAddr) -> StallProxy {
        let frozen = Arc::new(watch::Sender::new(false));
        let (stop, stopped) = oneshot::channel();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let gate = frozen.clone();
        let thread = std::thread::spawn(move || {
            let runtime = runtime();
            runtime.block_on(async move {
                let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the proxy");
                ready_tx
                    .send(listener.local_addr().expect("an address"))
                    .expect("report the address");
                let accept = async {
                    loop {
                        let Ok((client, _)) = listener.accept().await else {
                            continue;
                        };
                        let gate = gate.clone();
                        tokio::spawn(async move {
                            let _ = client.set_nodelay(true);
                            wait_unfrozen(&gate).await;
                            let Ok(server) = TcpStream::connect(upstream).await else {
                                return;
                            };
                            let _ = server.set_nodelay(true);
                            let (client_read, client_write) = client.into_split();
                            let (server_read, server_write) = server.into_split();
                            tokio::join!(
                                pump(client_read, server_write, gate.clone()),
                                pump(server_read, client_write, gate),
                            );
                        });
                    }
                };
                tokio::select! {
                    _ = accept => {}
                    _ = stopped => {}
                }
            });
        });
        let addr = ready_rx.recv().expect("the proxy starts");
        StallProxy {
            addr,
            frozen,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// The proxy's listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops forwarding: no byte passes in either direction until [`StallProxy::resume`].
    pub fn freeze(&self) {
        self.frozen.send_replace(true);
    }

    /// Forwards again, starting with the bytes held while frozen.
    pub fn resume(&self) {
        self.frozen.send_replace(false);
    }

    /// `url` (a `postgres://` URL) with its host and port replaced by the proxy's.
    pub fn postgres_url(&self, url: &str) -> String {
        let (scheme, rest) = url.split_once("://").expect("a URL with a scheme");
        let (authority, tail) = match rest.find(['/', '?']) {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        let userinfo = authority
            .rsplit_once('@')
            .map(|(u, _)| format!("{u}@"))
            .unwrap_or_default();
        format!("{scheme}://{userinfo}{}{tail}", self.addr)
    }
}

impl Drop for StallProxy {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.resume();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Copies `from` to `to`, never reading or writing while the gate says frozen.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    gate: Arc<watch::Sender<bool>>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        wait_unfrozen(&gate).await;
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        wait_unfrozen(&gate).await;
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

async fn wait_unfrozen(gate: &watch::Sender<bool>) {
    let mut rx = gate.subscribe();
    let _ = rx.wait_for(|frozen| !*frozen).await;
}

/// A TCP listener on `127.0.0.1:<port>` that accepts connections and never sends a byte
/// (a wedged server, or a port that some other service holds). Connections stay open until
/// it is dropped.
pub struct SilentListener {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl SilentListener {
    pub fn start() -> SilentListener {
        let (stop, stopped) = oneshot::channel();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            runtime().block_on(async move {
                let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the listener");
                ready_tx
                    .send(listener.local_addr().expect("an address"))
                    .expect("report the address");
                let mut held = Vec::new();
                let accept = async {
                    loop {
                        if let Ok((socket, _)) = listener.accept().await {
                            held.push(socket);
                        }
                    }
                };
                tokio::select! {
                    _ = accept => {}
                    _ = stopped => {}
                }
            });
        });
        let addr = ready_rx.recv().expect("the listener starts");
        SilentListener {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for SilentListener {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime starts")
}

/// The address of the server a PostgreSQL URL names (its first TCP host), for a
/// [`StallProxy`] to forward to.
pub fn postgres_server_addr(url: &str) -> SocketAddr {
    let config: tokio_postgres::Config = url.split('?').next().unwrap_or(url).parse().expect("a PostgreSQL URL");
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
        other => panic!("a TCP host, not {other:?}"),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    std::net::ToSocketAddrs::to_socket_addrs(&(host.as_str(), port))
        .expect("the host resolves")
        .next()
        .expect("an address")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::time::Duration;

    /// An upstream that echoes what it reads.
    fn echo() -> SocketAddr {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { break };
                std::thread::spawn(move || {
                    let mut buf = [0u8; 1024];
                    while let Ok(n) = stream.read(&mut buf) {
                        if n == 0 || stream.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                });
            }
        });
        addr
    }

    #[test]
    fn forwards_stalls_and_resumes() {
        let proxy = StallProxy::start(echo());
        let mut conn = std::net::TcpStream::connect(proxy.addr()).unwrap();
        conn.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
        conn.write_all(b"one").unwrap();
        let mut buf = [0u8; 3];
        conn.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"one");

        proxy.freeze();
        conn.write_all(b"two").unwrap();
        let err = conn.read(&mut buf).expect_err("nothing passes while frozen");
        assert!(matches!(
            err.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ));

        proxy.resume();
        conn.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        conn.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"two");
    }

    #[test]
    fn silent_listener_accepts_and_never_speaks() {
        let silent = SilentListener::start();
        let mut conn = std::net::TcpStream::connect(silent.addr()).unwrap();
        conn.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
        conn.write_all(b"hello?").unwrap();
        let mut buf = [0u8; 8];
        assert!(conn.read(&mut buf).is_err(), "a silent listener sends nothing");
    }

    #[test]
    fn postgres_url_points_at_the_proxy() {
        let proxy = StallProxy::start(echo());
        let url = proxy.postgres_url("postgres://postgres@127.0.0.1:5432/test?schema=s");
        assert_eq!(url, format!("postgres://postgres@{}/test?schema=s", proxy.addr()));
    }
}
