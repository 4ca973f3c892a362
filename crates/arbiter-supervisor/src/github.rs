//! The GitHub guard inside `watch`: one proxy (`arbiter_github::Proxy`) while any loop
//! opts in (`github_proxy = true` on the loop or its profile), stopped when a reload
//! leaves none and restarted when `[github]` changes.
//!
//! The proxy listens on loopback TCP (`ARBITER_GITHUB_API`, for agents' own HTTP
//! clients) and, on Unix, on one socket per opted-in loop in the supervisor's private
//! runtime directory, tagged with the loop's name so the calls of each loop are counted
//! apart: what a round spent is the difference of its loop's count before and after it.
//! Before each round, [`gate`] reads the buckets of the loop's identities from the store:
//! a frozen identity pauses the loop, a budget that would not cover the round defers it.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use arbiter_config::{Config, GithubSettings, LoopSpec};
use arbiter_core::github::{self, Budget, Gate, Round};
use arbiter_core::loops::LoopStatus;
use arbiter_core::name::{LoopName, Namespace};
use arbiter_core::{Millis, Result};
use arbiter_github::{Proxy, ProxyConfig};
use arbiter_store::Store;

use crate::{Shared, alert};

/// A running proxy and the sockets it serves loops on.
pub(crate) struct Guard {
    proxy: Proxy,
    /// `http://127.0.0.1:PORT`: `ARBITER_GITHUB_API`.
    api_url: String,
    settings: GithubSettings,
    /// This guard's own private directory of sockets (removed when it stops).
    #[cfg_attr(not(unix), allow(dead_code))]
    dir: PathBuf,
    #[cfg_attr(not(unix), allow(dead_code))]
    sockets: tokio::sync::Mutex<HashMap<LoopName, PathBuf>>,
}

impl Guard {
    /// Starts the proxy with `settings`, listening on its loopback address; its sockets
    /// will live in `dir` (created 0700 by the first one).
    pub(crate) async fn start(
        store: Store,
        namespace: Namespace,
        settings: &GithubSettings,
        dir: PathBuf,
    ) -> Result<Guard> {
        #[cfg(unix)]
        {
            if let Some(base) = dir.parent() {
                arbiter_process::private::private_dir(base)?;
            }
            arbiter_process::private::private_dir(&dir)?;
        }
        let proxy = Proxy::start(
            store,
            ProxyConfig {
                upstream: settings.upstream.clone(),
                namespace,
                graphql_fresh: settings.graphql_fresh,
                max_wait: settings.max_wait,
                concurrency: settings.concurrency,
                source: arbiter_process::host_name(),
                ..ProxyConfig::default()
            },
        )
        .await?;
        let addr = match proxy.listen_tcp(settings.listen).await {
            Ok(addr) => addr,
            Err(mut e) => {
                proxy.shutdown().await;
                e.message = format!("[github] listen: {}", e.message);
                return Err(e);
            }
        };
        tracing::info!(api = %addr, "the GitHub proxy is running");
        Ok(Guard {
            proxy,
            api_url: format!("http://{addr}"),
            settings: settings.clone(),
            dir,
            sockets: tokio::sync::Mutex::new(HashMap::new()),
        })
    }

    pub(crate) fn api_url(&self) -> &str {
        &self.api_url
    }

    pub(crate) fn settings(&self) -> &GithubSettings {
        &self.settings
    }

    /// The loop's socket, served from its first use on (`None` where there are no unix
    /// sockets: agents use `ARBITER_GITHUB_API` there).
    pub(crate) async fn socket(&self, name: &LoopName) -> Result<Option<PathBuf>> {
        #[cfg(unix)]
        {
            let mut sockets = self.sockets.lock().await;
            if let Some(path) = sockets.get(name) {
                return Ok(Some(path.clone()));
            }
            let path = self.dir.join(socket_file(name));
            self.proxy.listen_unix(&path, Some(name.clone())).await?;
            sockets.insert(name.clone(), path.clone());
            Ok(Some(path))
        }
        #[cfg(not(unix))]
        {
            let _ = name;
            Ok(None)
        }
    }

    /// The upstream calls the proxy made for the loop's socket since it started, and the
    /// logins they were made as.
    pub(crate) fn spend(&self, name: &LoopName) -> (u64, Vec<String>) {
        let counters = self.proxy.counters(Some(name));
        (counters.upstream_calls, counters.identities)
    }

    /// Stops the proxy (its sockets removed, its last counts added to the store).
    pub(crate) async fn stop(self) {
        self.proxy.shutdown().await;
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// Stops a guard once no round uses it any more (rounds hold it while they run).
pub(crate) async fn stop_when_unused(mut guard: Arc<Guard>) {
    loop {
        match Arc::try_unwrap(guard) {
            Ok(guard) => return guard.stop().await,
            Err(still_used) => {
                guard = still_used;
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
        }
    }
}

/// A socket's file name: the loop's name, shortened with a hash when long (a socket's
/// path is limited to about 100 bytes).
#[cfg(unix)]
fn socket_file(name: &LoopName) -> String {
    let name = name.as_str();
    if name.len() <= 32 {
        return format!("{name}.sock");
    }
    let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    let head: String = name.chars().take(16).collect();
    format!("{head}-{hash:016x}.sock")
}

/// Every GitHub bucket of `namespace` of these logins, and the store's time.
pub(crate) async fn budgets(
    store: &Store,
    namespace: &Namespace,
    logins: &[String],
) -> Result<(Vec<Budget>, Option<Millis>)> {
    if logins.is_empty() {
        return Ok((Vec::new(), None));
    }
    let infos = store.limits().list(namespace).await?;
    let now = infos.first().map(|i| i.now);
    let budgets = infos
        .iter()
        .filter_map(Budget::from_bucket)
        .filter(|b| logins.contains(&b.login))
        .collect();
    Ok((budgets, now))
}

/// Whether the loop's next round may start: the rules of `arbiter_core::github::gate`
/// over its identities' buckets, its measured cost and the priorities of the loops that
/// go through the proxy. Its identities: the logins the proxy saw on its socket (`seen`),
/// and those its last measured round recorded (a new supervisor has seen none yet).
/// Also returns the store's time the buckets were read at (`None`: no bucket).
pub(crate) async fn gate(
    store: &Store,
    namespace: &Namespace,
    config: &Config,
    spec: &LoopSpec,
    name: &LoopName,
    mut logins: Vec<String>,
) -> Result<(Gate, Option<Millis>)> {
    let rounds = store.loops().rounds(namespace, name, github::COST_ROUNDS * 2).await?;
    if let Some(last) = rounds.iter().find(|r| r.api_calls.is_some()) {
        logins.extend(last.github_logins.iter().cloned());
    }
    logins.sort();
    logins.dedup();
    let (budgets, now) = budgets(store, namespace, &logins).await?;
    let Some(now) = now else {
        return Ok((Gate::Run, None));
    };
    let round = Round {
        cost: github::mean_cost(rounds.iter().map(|r| r.api_calls)),
        priority: spec.priority,
        fleet_priorities: config
            .loops
            .iter()
            .filter(|l| l.enabled && Config::github_proxy(l, config.profile_for(l, None)))
            .map(|l| l.priority)
            .collect(),
        reserve_percent: config.github.reserve_percent,
    };
    Ok((github::gate(&budgets, &round, now), Some(now)))
}

/// Whether an opted-in loop's round must wait: `None` to run it, or what the loop shows
/// (`paused`, `deferred`), until when, and the store's time now. A pause sends the
/// identity's folded notice once per loop (`paused` remembers the login); the first run
/// after it resolves the notice.
pub(crate) async fn held_back(
    shared: &Shared,
    config: &Config,
    spec: &LoopSpec,
    name: &LoopName,
    guard: &Guard,
    paused: &mut Option<String>,
    shown: LoopStatus,
) -> Result<Option<(LoopStatus, Millis, Millis)>> {
    let (_, seen) = guard.spend(name);
    let (gate, now) = gate(&shared.store, &shared.namespace, config, spec, name, seen).await?;
    let now = now.unwrap_or_default();
    Ok(match gate {
        Gate::Run => {
            if let Some(login) = paused.take() {
                alert::resumed(shared, config, &login).await;
            }
            None
        }
        Gate::Pause { login, until } => {
            if shown != LoopStatus::Paused {
                tracing::info!(loop_name = %name, %login, until, "paused: GitHub said to wait");
            }
            if paused.as_deref() != Some(login.as_str()) {
                alert::paused(shared, config, spec, &login, until).await;
                *paused = Some(login);
            }
            Some((LoopStatus::Paused, until, now))
        }
        Gate::Defer {
            login,
            resource,
            need,
            left,
            until,
        } => {
            if shown != LoopStatus::Deferred {
                tracing::info!(
                    loop_name = %name, %login, %resource, need, left, until,
                    "deferred: the budget left would not cover a round"
                );
            }
            Some((LoopStatus::Deferred, until, now))
        }
    })
}
