//! `/metrics`: Prometheus metrics (OpenMetrics text), with `prometheus-client`.
//!
//! Two kinds:
//! - **Counted by this process**: requests by method, matched route and status, with
//!   their latency (`arbiter_http_requests_total`, `arbiter_http_request_duration_seconds`);
//!   rate-limit takes by outcome (`arbiter_limit_takes_total`, `outcome` `granted` or
//!   `limited`).
//! - **Read from the store at scrape time**, for the namespaces of `serve
//!   --metrics-namespace` (default `default`), so every server of a fleet reports the same
//!   state: leases held, the notification outbox (pending entries, age of the oldest),
//!   loops by state, each bucket's tokens, the store's shared counters (the GitHub
//!   proxy's), and each work queue's depth, oldest ready age, claimed and dead items. The
//!   store is the truth; the process keeps none of it.
//!
//! `/metrics` is public, like a Prometheus exporter: it shows counts and names of
//! namespaces, loops and buckets, never a value of a key, a record or a secret. Bind the
//! server to loopback, or put it behind a proxy, where that matters.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arbiter_config::Config;
use arbiter_core::name::{Namespace, Prefix};
use arbiter_core::{Error, Result};
use arbiter_ops::notify::MAX_LIST;
use arbiter_store::{DeliveryState, Store};
use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;
use tokio::sync::Mutex;

/// The content type of `/metrics`.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    /// The matched route template (`/v1/ns/{ns}/kv/{key}`), never the path itself (whose
    /// names would make a series per key); `unmatched` for a path no route serves.
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TakeLabels {
    namespace: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NsLabels {
    namespace: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LoopLabels {
    namespace: String,
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BucketLabels {
    namespace: String,
    bucket: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueueLabels {
    namespace: String,
    queue: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CounterLabels {
    namespace: String,
    scope: String,
    name: String,
}

type FloatGauge = Gauge<f64, AtomicU64>;

/// The server's metrics.
pub struct Metrics {
    /// The registry, locked for a whole scrape: the store-read gauges are cleared and
    /// refilled, and two scrapes must not interleave.
    registry: Mutex<Registry>,
    namespaces: Vec<Namespace>,
    requests: Family<RequestLabels, Counter>,
    latency: Family<RequestLabels, Histogram, fn() -> Histogram>,
    takes: Family<TakeLabels, Counter>,
    leases_held: Family<NsLabels, Gauge>,
    outbox_pending: Family<NsLabels, Gauge>,
    outbox_oldest: Family<NsLabels, FloatGauge>,
    loops: Family<LoopLabels, Gauge>,
    bucket_tokens: Family<BucketLabels, FloatGauge>,
    counters: Family<CounterLabels, Gauge>,
    queue_depth: Family<QueueLabels, Gauge>,
    queue_oldest: Family<QueueLabels, FloatGauge>,
    queue_claimed: Family<QueueLabels, Gauge>,
    queue_dead: Family<QueueLabels, Gauge>,
}

fn latency_histogram() -> Histogram {
    // 1 ms to ~16 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

impl Metrics {
    /// Metrics whose store-read gauges cover `namespaces`.
    pub fn new(namespaces: Vec<Namespace>) -> Metrics {
        let metrics = Metrics {
            registry: Mutex::new(Registry::default()),
            namespaces,
            requests: Family::default(),
            latency: Family::new_with_constructor(latency_histogram),
            takes: Family::default(),
            leases_held: Family::default(),
            outbox_pending: Family::default(),
            outbox_oldest: Family::default(),
            loops: Family::default(),
            bucket_tokens: Family::default(),
            counters: Family::default(),
            queue_depth: Family::default(),
            queue_oldest: Family::default(),
            queue_claimed: Family::default(),
            queue_dead: Family::default(),
        };
        {
            let mut registry = metrics.registry.try_lock().expect("a new registry is not locked");
            let r = &mut *registry;
            r.register(
                "arbiter_http_requests",
                "HTTP requests answered, by method, matched route and status",
                metrics.requests.clone(),
            );
            r.register(
                "arbiter_http_request_duration_seconds",
                "How long HTTP requests took until the answer's head (an event stream: until it opened)",
                metrics.latency.clone(),
            );
            r.register(
                "arbiter_limit_takes",
                "Rate-limit takes through this server, by outcome (granted, limited)",
                metrics.takes.clone(),
            );
            r.register(
                "arbiter_leases_held",
                "Live lease holders (read from the store at scrape time)",
                metrics.leases_held.clone(),
            );
            r.register(
                "arbiter_outbox_pending",
                "Notifications waiting for delivery (read from the store at scrape time)",
                metrics.outbox_pending.clone(),
            );
            r.register(
                "arbiter_outbox_oldest_pending_age_seconds",
                "Age of the oldest notification waiting for delivery (0: none)",
                metrics.outbox_oldest.clone(),
            );
            r.register(
                "arbiter_loops",
                "Loops by state, as `arbiter status` infers it (read from the store at scrape time)",
                metrics.loops.clone(),
            );
            r.register(
                "arbiter_limit_bucket_tokens",
                "Tokens available in each rate-limit bucket (read from the store at scrape time)",
                metrics.bucket_tokens.clone(),
            );
            r.register(
                "arbiter_store_counter",
                "The store's shared counters (the GitHub proxy's: requests, cache hits, …), summed over hosts",
                metrics.counters.clone(),
            );
            r.register(
                "arbiter_queue_depth",
                "Work items ready to be claimed now, per queue (read from the store at scrape time)",
                metrics.queue_depth.clone(),
            );
            r.register(
                "arbiter_queue_oldest_ready_age_seconds",
                "How long the oldest item ready now has waited, per queue (0: none)",
                metrics.queue_oldest.clone(),
            );
            r.register(
                "arbiter_queue_claimed",
                "Work items under a live claim, per queue",
                metrics.queue_claimed.clone(),
            );
            r.register(
                "arbiter_queue_dead",
                "Work items dead after their last attempt, per queue (`queue retry` revives one)",
                metrics.queue_dead.clone(),
            );
        }
        metrics
    }

    /// Counts one answered request.
    pub fn request(&self, method: &str, route: &str, status: u16, took: Duration) {
        let labels = RequestLabels {
            method: method.to_string(),
            route: route.to_string(),
            status,
        };
        self.requests.get_or_create(&labels).inc();
        self.latency.get_or_create(&labels).observe(took.as_secs_f64());
    }

    /// Counts one rate-limit take.
    pub fn take(&self, namespace: &Namespace, granted: bool) {
        let outcome = if granted { "granted" } else { "limited" };
        self.takes
            .get_or_create(&TakeLabels {
                namespace: namespace.to_string(),
                outcome,
            })
            .inc();
    }

    /// Reads the store's gauges afresh and encodes every metric. `config` routes the
    /// `queue.dead` alerts a crash left unraised, which reading the queues' counts raises
    /// (as `arbiter queue stats` does).
    pub async fn scrape(&self, store: &Store, config: &Config) -> Result<String> {
        let registry = self.registry.lock().await;
        for family in [&self.leases_held, &self.outbox_pending] {
            family.clear();
        }
        self.outbox_oldest.clear();
        self.loops.clear();
        self.bucket_tokens.clear();
        self.counters.clear();
        for family in [&self.queue_depth, &self.queue_claimed, &self.queue_dead] {
            family.clear();
        }
        self.queue_oldest.clear();
        for ns in &self.namespaces {
            self.read_namespace(store, config, ns).await?;
        }
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry)
            .map_err(|e| Error::internal(format!("cannot encode the metrics: {e}")))?;
        Ok(text)
    }

    async fn read_namespace(&self, store: &Store, config: &Config, ns: &Namespace) -> Result<()> {
        let labels = NsLabels {
            namespace: ns.to_string(),
        };
        let leases = arbiter_ops::lease::list(store, ns, &Prefix::default()).await?;
        self.leases_held.get_or_create(&labels).set(leases.len() as i64);

        let pending = arbiter_ops::notify::list(store, ns, Some(DeliveryState::Pending), MAX_LIST as usize).await?;
        self.outbox_pending.get_or_create(&labels).set(pending.len() as i64);
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let oldest = pending
            .iter()
            .map(|entry| entry.created_at)
            .min()
            .map_or(0.0, |created| (now_ms - created).max(0) as f64 / 1000.0);
        self.outbox_oldest.get_or_create(&labels).set(oldest);

        let fleet = arbiter_ops::fleet::fleet_status(store, ns).await?;
        for view in &fleet.loops {
            self.loops
                .get_or_create(&LoopLabels {
                    namespace: ns.to_string(),
                    state: view.state.as_str().to_string(),
                })
                .inc();
        }

        for bucket in arbiter_ops::limit::list(store, ns).await? {
            self.bucket_tokens
                .get_or_create(&BucketLabels {
                    namespace: ns.to_string(),
                    bucket: bucket.name,
                })
                .set(bucket.tokens);
        }

        for counter in arbiter_ops::limit::counters(store, ns, "").await? {
            self.counters
                .get_or_create(&CounterLabels {
                    namespace: ns.to_string(),
                    scope: counter.scope,
                    name: counter.name,
                })
                .set(counter.value);
        }

        for stats in arbiter_ops::queue::stats(store, config, ns).await? {
            let labels = QueueLabels {
                namespace: ns.to_string(),
                queue: stats.queue,
            };
            self.queue_depth.get_or_create(&labels).set(stats.depth as i64);
            self.queue_claimed.get_or_create(&labels).set(stats.claimed as i64);
            self.queue_dead.get_or_create(&labels).set(stats.dead as i64);
            let oldest = stats.oldest_ready_age_ms.map_or(0.0, |ms| ms as f64 / 1000.0);
            self.queue_oldest.get_or_create(&labels).set(oldest);
        }
        Ok(())
    }
}

/// Middleware (a route layer, so the route is matched): counts the request and its
/// latency by its route template.
pub async fn count(
    axum::extract::State(state): axum::extract::State<crate::AppState>,
    request: Request,
    next: Next,
) -> Response {
    let method = request.method().to_string();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |path| path.as_str().to_string());
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    state
        .metrics
        .request(&method, &route, response.status().as_u16(), started.elapsed());
    response
}
