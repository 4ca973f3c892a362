//! arbiter's HTTP server: `arbiter serve`.
//!
//! The operations of `arbiter_ops` as a JSON API under `/v1/ns/{ns}/…`, each route a thin
//! adapter over one operation (the CLI's twin); bearer tokens scoped per namespace and
//! primitive; Server-Sent Events for watches, follows and the fleet's status; OpenAPI,
//! metrics, health. See `docs/server.md` for the API and its decisions.
//!
//! Layout: [`state`] (what handlers share), [`status`] (the one place an error kind
//! becomes an HTTP status, and the error body), [`wire`] (request bodies and queries, for
//! remote clients too), [`extract`] (extractors whose failures name the bad field),
//! [`auth`] (bearer token → `Principal`), [`routes`] (one module per primitive), [`sse`].
//!
//! The library serves; the binary decides when to stop: [`Server::start`] binds and
//! serves in the background, [`Server::shutdown`] stops accepting, ends every event
//! stream and long poll, and waits (at most [`SHUTDOWN_GRACE`]) for requests in flight.

pub mod auth;
pub mod extract;
pub mod metrics;
pub mod openapi;
pub mod routes;
pub mod sse;
pub mod state;
pub mod status;
pub mod wire;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arbiter_config::Config;
use arbiter_core::name::Namespace;
use arbiter_core::{Error, ErrorKind, Result};
use arbiter_store::Store;
use axum::Router;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

pub use auth::Auth;
pub use state::AppState;

/// The default address: loopback only, so nothing is exposed until asked for.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7420";

/// The largest request body: a key's value or a record's body at their limit (1 MiB),
/// JSON-escaped at worst (`\u0000` is six bytes for one).
pub const MAX_BODY: usize = 7 << 20;

/// How long a shutdown waits for requests in flight before dropping them.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// How a server is run.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub listen: SocketAddr,
    pub auth: Auth,
    /// The configuration notifications are routed by, and whose channels are listed.
    pub config: Arc<Config>,
    /// The namespaces whose state `/metrics` reads from the store (`--metrics-namespace`).
    pub metrics_namespaces: Vec<Namespace>,
}

impl ServeConfig {
    /// A server on `listen` with the empty configuration.
    pub fn new(listen: SocketAddr, auth: Auth) -> ServeConfig {
        ServeConfig {
            listen,
            auth,
            config: Arc::new(Config::default()),
            metrics_namespaces: vec![Namespace::default()],
        }
    }
}

/// The whole application: the API under `/v1` behind authentication, and the public
/// routes; every request gets an `x-request-id` (the client's, or a new UUID, answered
/// back), a tracing span (method, route, request id; never a header's value) and its
/// count in the metrics. The composition point: other parts (the dashboard, `/mcp`) are
/// merged here.
pub fn router(state: AppState) -> Router {
    let (v1, _) = routes::v1().split_for_parts();
    let v1 = v1.route_layer(axum::middleware::from_fn_with_state(state.clone(), auth::authenticate));
    let (public, _) = routes::public().split_for_parts();
    Router::new()
        .merge(public)
        .merge(v1)
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), metrics::count))
        .fallback(not_found)
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .layer(
            tower::ServiceBuilder::new()
                .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
                .layer(TraceLayer::new_for_http().make_span_with(request_span))
                .layer(PropagateRequestIdLayer::x_request_id()),
        )
        .with_state(state)
}

/// The span of one request: its method, path and request id. Not its headers (the
/// bearer token) nor its query.
fn request_span(request: &axum::http::Request<axum::body::Body>) -> tracing::Span {
    let id = request
        .headers()
        .get("x-request-id")
        .and_then(|id| id.to_str().ok())
        .unwrap_or("");
    tracing::info_span!(
        "request",
        method = %request.method(),
        path = request.uri().path(),
        request_id = id,
    )
}

/// Any unknown path: 404 with the API's error body.
async fn not_found(
    axum::extract::State(state): axum::extract::State<AppState>,
    method: axum::http::Method,
    uri: axum::http::Uri,
) -> status::ApiError {
    state.metrics.request(method.as_str(), "unmatched", 404, Duration::ZERO);
    Error::new(ErrorKind::NotFound, format!("no route {}", uri.path())).into()
}

/// A running server.
pub struct Server {
    addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<std::io::Result<()>>,
}

impl Server {
    /// Binds `config.listen` and serves in the background.
    /// Refuses a non-loopback address while tokens are required and none is live: such a
    /// server would refuse everyone, or be started by mistake in the open.
    pub async fn start(store: Store, config: ServeConfig) -> Result<Server> {
        if config.auth == Auth::Tokens
            && !config.listen.ip().is_loopback()
            && !arbiter_ops::token::any_live(&store).await?
        {
            return Err(Error::bad_input(format!(
                "--listen {}: not a loopback address, and the store has no live token: create one \
                 first (`arbiter token create --name NAME`), or start with --admin-token",
                config.listen
            )));
        }
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|e| Error::bad_input(format!("--listen {}: cannot listen there: {e}", config.listen)))?;
        let addr = listener
            .local_addr()
            .map_err(|e| Error::internal(format!("cannot read the listening address: {e}")))?;
        let (shutdown, receiver) = watch::channel(false);
        let state = AppState {
            store,
            config: config.config,
            auth: config.auth,
            metrics: Arc::new(metrics::Metrics::new(config.metrics_namespaces)),
            shutdown: receiver,
        };
        let stopping = state.shutting_down();
        let app = router(state);
        let task = tokio::spawn(async move { axum::serve(listener, app).with_graceful_shutdown(stopping).await });
        tracing::info!(%addr, "serving");
        Ok(Server { addr, shutdown, task })
    }

    /// The address it listens on (the port the OS chose for `:0`).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves until `signal` resolves (then shuts down) or the server fails.
    pub async fn run_until(mut self, signal: impl Future<Output = ()>) -> Result<()> {
        tokio::select! {
            () = signal => self.shutdown().await,
            result = &mut self.task => served(result),
        }
    }

    /// Stops accepting connections, ends event streams and long polls, and waits for the
    /// requests in flight (at most [`SHUTDOWN_GRACE`]; then they are dropped).
    pub async fn shutdown(mut self) -> Result<()> {
        let _ = self.shutdown.send(true);
        match tokio::time::timeout(SHUTDOWN_GRACE, &mut self.task).await {
            Ok(result) => served(result),
            Err(_) => {
                self.task.abort();
                tracing::warn!("requests still in flight after {SHUTDOWN_GRACE:?}: dropped");
                Ok(())
            }
        }
    }
}

fn served(result: std::result::Result<std::io::Result<()>, tokio::task::JoinError>) -> Result<()> {
    match result {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(Error::internal(format!("the server failed: {e}"))),
        Err(e) => Err(Error::internal(format!("the server task failed: {e}"))),
    }
}
