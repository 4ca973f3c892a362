//! The GitHub proxy (`arbiter proxy github`): a reverse proxy for GitHub's REST and GraphQL
//! API that every agent loop of a host reaches on loopback (TCP or a unix socket), so a
//! fleet spends one budget per GitHub user, learns of the limits before GitHub refuses, and
//! does not pay twice for what it already read.
//!
//! - [`identity`]: who is behind a token (`GET /user` once, keyed by the token's SHA-256).
//! - [`cache`]: GET responses and GraphQL query answers, per credential, LRU-bounded.
//! - [`flight`]: identical in-flight requests share one upstream call.
//! - [`graphql`]: query or mutation, and which repository it is about.
//! - [`budget`]: spending from and correcting the fleet-wide buckets in the store.
//! - [`upstream`]: what is forwarded (hop-by-hop headers, the allowed hosts) and what a
//!   response says about the limits.
//! - [`handler`]: one request, end to end.
//! - [`counters`]: what this process did, per identity and loop; flushed to the store.
//! - `unix`: the unix socket listener (0600, in a private directory).

mod budget;
mod cache;
mod counters;
mod flight;
mod graphql;
mod handler;
mod identity;
#[cfg(unix)]
mod unix;
mod upstream;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arbiter_core::name::{LoopName, Namespace};
use arbiter_core::{Error, Result};
use arbiter_store::Store;
use tokio::task::JoinHandle;

pub use counters::CounterSnapshot;

/// GitHub's API, the default upstream.
pub const DEFAULT_UPSTREAM: &str = "https://api.github.com";
/// How often counters are added to the store (and at shutdown).
pub const FLUSH_EVERY: Duration = Duration::from_secs(5);

/// What a proxy does; `Default` is GitHub with GitHub's limits.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// The API's base URL (`https://api.github.com`; a GitHub Enterprise `https://host/api/v3`).
    pub upstream: String,
    /// The namespace of the buckets and counters.
    pub namespace: Namespace,
    /// How long an identical GraphQL query is answered from the cache (0: never).
    pub graphql_fresh: Duration,
    /// How long, past `graphql_fresh`, a cached GraphQL query answer about one repository
    /// may still be served after a free conditional probe of the repository's most recently
    /// updated issue or pull request says nothing changed (0: never; see `graphql::probe_covers`).
    /// Counted from when the answer was fetched.
    pub graphql_max_age: Duration,
    /// The same for a query about one issue or pull request (`gh issue view`, `gh pr
    /// view`: `graphql::Probes::Item`), revalidated by free probes of that item, which see
    /// nearly all it shows (0: never). Longer than `graphql_max_age` by default: what those
    /// probes miss is rarer than what the repository's one probe misses for a list.
    pub graphql_view_max_age: Duration,
    /// How long a request may queue for budget before arbiter answers 429 itself.
    pub max_wait: Duration,
    /// Upstream requests in flight at once from this host (GitHub allows 100 per user; the
    /// fleet-wide limit is approximated per host).
    pub concurrency: usize,
    /// This host's name, for the counters it adds to the store.
    pub source: String,
    /// The cache's bounds: entries, and bytes of bodies. An answer larger than an eighth
    /// of `cache_bytes` (at least 64 KiB) is not held: it is streamed to its client, not
    /// cached, not shared.
    pub cache_entries: usize,
    pub cache_bytes: usize,
    /// How long the store may take to answer one call (a take's wait for budget aside):
    /// past it the proxy goes on without it (forwarding; GitHub still enforces its limits).
    pub store_timeout: Duration,
    /// How long the upstream may take to answer a request (its status, headers and a body
    /// the proxy holds; a streamed body's reads may each pause up to this long), and to say
    /// who a token is. Past it: 504.
    pub upstream_timeout: Duration,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            upstream: DEFAULT_UPSTREAM.to_string(),
            namespace: Namespace::default(),
            graphql_fresh: Duration::from_secs(30),
            graphql_max_age: Duration::from_secs(300),
            graphql_view_max_age: Duration::from_secs(3600),
            max_wait: Duration::from_secs(60),
            concurrency: 100,
            source: arbiter_process::host_name(),
            cache_entries: 10_000,
            cache_bytes: 64 << 20,
            store_timeout: Duration::from_secs(5),
            upstream_timeout: Duration::from_secs(120),
        }
    }
}

/// Checks an upstream URL as [`Proxy::start`] does (`BadInput` naming `--upstream`).
pub fn check_upstream(url: &str) -> Result<()> {
    upstream::Upstream::parse(url).map(|_| ())
}

/// Checks a TCP address as [`Proxy::listen_tcp`] does: loopback only, since whoever reaches
/// the proxy spends its users' budget (`BadInput` naming `--listen`).
pub fn check_listen(addr: SocketAddr) -> Result<()> {
    if addr.ip().is_loopback() {
        return Ok(());
    }
    Err(Error::bad_input(format!(
        "--listen {addr}: the GitHub proxy listens on loopback only (127.0.0.1, [::1]); \
         agents on other hosts run their own proxy on the same store"
    )))
}

/// Checks a unix socket path as [`Proxy::listen_unix`] does, changing nothing (`BadInput`
/// naming `--socket`): a missing directory is fine (it will be created 0700); an existing
/// one must be this user's and private; nothing but a stale socket may be at the path.
pub fn check_socket(path: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        unix::check(path)
    }
    #[cfg(not(unix))]
    {
        Err(Error::bad_input(format!(
            "--socket {}: unix sockets are not available on this system; use --listen",
            path.display()
        )))
    }
}

/// What every request handler shares.
pub(crate) struct Shared {
    pub config: ProxyConfig,
    pub upstream: upstream::Upstream,
    pub client: reqwest::Client,
    pub budget: budget::Budget,
    pub identities: identity::Identities,
    pub cache: Mutex<cache::Cache>,
    pub flights: flight::Flights,
    /// Each credential's latest ETag of each probe (see `handler::probe`), with what its
    /// answer told (`handler::fact`).
    pub probes: Mutex<std::collections::HashMap<cache::CacheKey, (http::HeaderValue, Option<String>)>>,
    pub counters: counters::Counters,
    pub concurrency: tokio::sync::Semaphore,
}

impl Shared {
    /// The largest answer held in memory whole (larger ones are streamed).
    pub fn buffer_limit(&self) -> usize {
        (self.config.cache_bytes / 8).max(64 << 10)
    }
}

/// A running proxy: listeners added with [`Proxy::listen_tcp`] and [`Proxy::listen_unix`].
pub struct Proxy {
    shared: Arc<Shared>,
    stop: tokio::sync::watch::Sender<bool>,
    servers: Mutex<Vec<JoinHandle<()>>>,
    sockets: Mutex<Vec<PathBuf>>,
    flusher: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Proxy {
    /// A proxy dropped without [`Proxy::shutdown`] stops listening (its counts since the
    /// last flush are not added to the store).
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        for path in self.sockets.lock().expect("sockets").drain(..) {
            let _ = std::fs::remove_file(&path);
        }
    }
}

impl Proxy {
    /// Checks the configuration and starts the proxy (no listener yet). Bad settings are
    /// `BadInput` naming the setting.
    pub async fn start(store: Store, config: ProxyConfig) -> Result<Proxy> {
        let upstream = upstream::Upstream::parse(&config.upstream)?;
        if config.concurrency == 0 {
            return Err(Error::bad_input("concurrency: expected at least 1"));
        }
        if config.store_timeout.is_zero() || config.upstream_timeout.is_zero() {
            return Err(Error::bad_input(
                "store_timeout, upstream_timeout: expected more than 0s",
            ));
        }
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(config.upstream_timeout.min(Duration::from_secs(10)))
            // Each read of a body; a whole exchange is bounded by the handler (a streamed
            // body may take longer than `upstream_timeout` as long as it keeps coming).
            .read_timeout(config.upstream_timeout)
            .user_agent(concat!("arbiter/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::internal(format!("cannot build the HTTP client: {e}")))?;
        let shared = Arc::new(Shared {
            budget: budget::Budget::new(store, config.namespace.clone(), config.store_timeout),
            identities: identity::Identities::default(),
            cache: Mutex::new(cache::Cache::new(config.cache_entries, config.cache_bytes)),
            flights: flight::Flights::default(),
            probes: Mutex::default(),
            counters: counters::Counters::default(),
            concurrency: tokio::sync::Semaphore::new(config.concurrency),
            upstream,
            client,
            config,
        });
        let (stop, _) = tokio::sync::watch::channel(false);
        let flusher = tokio::spawn(counters::flush_every(shared.clone(), stop.subscribe()));
        Ok(Proxy {
            shared,
            stop,
            servers: Mutex::new(Vec::new()),
            sockets: Mutex::new(Vec::new()),
            flusher: Mutex::new(Some(flusher)),
        })
    }

    /// Serves on `addr` (a loopback address; port 0 picks one) and returns the bound address.
    /// A non-loopback address is refused: whoever reaches the proxy spends its users' budget.
    pub async fn listen_tcp(&self, addr: SocketAddr) -> Result<SocketAddr> {
        check_listen(addr)?;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| Error::unavailable(format!("--listen {addr}: cannot listen: {e}")))?;
        let bound = listener
            .local_addr()
            .map_err(|e| Error::internal(format!("--listen {addr}: {e}")))?;
        let router = handler::router(self.shared.clone(), None);
        let mut stop = self.stop.subscribe();
        let server = tokio::spawn(async move {
            let shutdown = async move {
                let _ = stop.wait_for(|stopped| *stopped).await;
            };
            if let Err(e) = axum::serve(listener, router).with_graceful_shutdown(shutdown).await {
                tracing::warn!("the GitHub proxy on {bound} stopped: {e}");
            }
        });
        self.servers.lock().expect("servers").push(server);
        Ok(bound)
    }

    /// Serves on a unix socket at `path` (0600, its directory private: created 0700, or
    /// an existing one of this user that only this user can enter). A symlink there is
    /// refused, a live proxy's socket too; a dead proxy's stale socket file is replaced.
    /// `tag` attributes this socket's calls to a loop in the counters.
    pub async fn listen_unix(&self, path: &Path, tag: Option<LoopName>) -> Result<()> {
        #[cfg(unix)]
        {
            let listener = unix::bind(path)?;
            let router = handler::router(self.shared.clone(), tag);
            let mut stop = self.stop.subscribe();
            let shown = path.display().to_string();
            let server = tokio::spawn(async move {
                let shutdown = async move {
                    let _ = stop.wait_for(|stopped| *stopped).await;
                };
                if let Err(e) = axum::serve(listener, router).with_graceful_shutdown(shutdown).await {
                    tracing::warn!("the GitHub proxy on {shown} stopped: {e}");
                }
            });
            self.servers.lock().expect("servers").push(server);
            self.sockets.lock().expect("sockets").push(path.to_path_buf());
            Ok(())
        }
        #[cfg(not(unix))]
        {
            let _ = tag;
            Err(Error::bad_input(format!(
                "--socket {}: unix sockets are not available on this system; use --listen",
                path.display()
            )))
        }
    }

    /// This process's counts since it started: every identity's (`None`), or those of the
    /// calls that came through `tag`'s socket.
    pub fn counters(&self, tag: Option<&LoopName>) -> CounterSnapshot {
        self.shared.counters.snapshot(tag)
    }

    /// Stops listening (requests in progress get a few seconds to finish), removes the unix
    /// sockets, and adds the last counts to the store.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let servers = std::mem::take(&mut *self.servers.lock().expect("servers"));
        for mut server in servers {
            if tokio::time::timeout(Duration::from_secs(5), &mut server).await.is_err() {
                server.abort();
            }
        }
        for path in self.sockets.lock().expect("sockets").drain(..) {
            let _ = std::fs::remove_file(&path);
        }
        let flusher = self.flusher.lock().expect("flusher").take();
        if let Some(flusher) = flusher {
            let _ = flusher.await;
        }
        counters::flush(&self.shared).await; // each store call bounded by store_timeout
        self.shared.budget.close().await;
    }
}
