//! arbiter's GitHub proxy in front of the fake, as one host of a fleet runs it: its buckets
//! and counters in an arbiter store, and every GitHub duration it knows compressed like the
//! fake's hour — the buckets' rates (defined here, before the proxy would define GitHub's
//! real-time defaults), its GraphQL freshness window (30 s) and its wait for budget (60 s).

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use arbiter_core::limit::{BucketSpec, Rate};
use arbiter_core::name::{BucketName, Namespace};
use arbiter_fake_github::Limits;
use arbiter_github::{Proxy, ProxyConfig};
use arbiter_store::{Store, StoreUrl};

use super::{Plan, login};

/// A running proxy: its URL, and what stops it.
pub struct Running {
    pub url: String,
    proxy: Proxy,
}

impl Running {
    pub async fn stop(self) {
        self.proxy.shutdown().await;
    }
}

/// GitHub's documented limits as the proxy's buckets name them, compressed by the plan's
/// scale: (bucket suffix, amount, period, whether it keeps the primary reserve).
fn buckets(plan: &Plan) -> Vec<(&'static str, u64, Duration, bool)> {
    let l = Limits::default();
    let minute = Duration::from_secs(60);
    let hour = Duration::from_secs(3600);
    [
        ("core", l.core, l.primary_window, true),
        ("graphql", l.graphql, l.primary_window, true),
        ("search", l.search, l.search_window, true),
        ("points", l.rest_points, l.points_window, false),
        ("graphql-points", l.graphql_points, l.points_window, false),
        ("content-minute", l.content_per_minute, minute, false),
        ("content-hour", l.content_per_hour, hour, false),
    ]
    .into_iter()
    .map(|(suffix, amount, per, primary)| (suffix, amount, plan.scaled(per), primary))
    .collect()
}

pub async fn start(upstream: &str, plan: &Plan, store_url: &str) -> Result<Running> {
    static RUNS: AtomicU32 = AtomicU32::new(0);
    let store = Store::open(&StoreUrl::parse(store_url)?)
        .await
        .context("opening the proxy's store")?;
    // A namespace of its own per replay: no bucket or counter of an earlier replay counts.
    let namespace = Namespace::parse(&format!(
        "fleet-{}-{}",
        std::process::id(),
        RUNS.fetch_add(1, Ordering::Relaxed)
    ))?;
    for client in 0..plan.clients {
        for (suffix, amount, per, primary) in buckets(plan) {
            let mut spec = BucketSpec::new(Rate { amount, per });
            if !primary {
                spec.reserve_percent = 0;
            }
            let name = BucketName::parse(&format!("github/{}/{suffix}", login(client)))?;
            store.limits().define(&namespace, &name, &spec, false).await?;
        }
    }
    let config = ProxyConfig {
        upstream: upstream.to_string(),
        namespace,
        graphql_fresh: plan.scaled(Duration::from_secs(30)),
        graphql_max_age: plan.scaled(plan.graphql_max_age),
        graphql_view_max_age: plan.scaled(plan.graphql_view_max_age),
        max_wait: plan.scaled(Duration::from_secs(60)),
        source: "arbiter-bench".to_string(),
        // Each simulated client is a host, which runs its own proxy with the default cache
        // (`arbiter watch` does): one proxy for all of them holds what theirs would.
        cache_entries: ProxyConfig::default().cache_entries * plan.clients as usize,
        cache_bytes: ProxyConfig::default().cache_bytes * plan.clients as usize,
        ..ProxyConfig::default()
    };
    let proxy = Proxy::start(store, config).await.context("starting the proxy")?;
    let addr = proxy
        .listen_tcp(std::net::SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .context("the proxy's listener")?;
    Ok(Running {
        url: format!("http://{addr}"),
        proxy,
    })
}
