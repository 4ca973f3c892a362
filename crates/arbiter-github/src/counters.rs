//! What this process did, per identity and per loop socket: kept in memory (a snapshot
//! for the supervisor, [`crate::Proxy::counters`]) and added to the store every
//! [`crate::FLUSH_EVERY`] and at shutdown, under the scope `github/<login>` (every call of
//! that identity) and `github/<login>/loop/<loop>` (the calls through that loop's socket),
//! with this host's name as the source.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use arbiter_core::name::LoopName;

use crate::Shared;

/// Counts of one identity through one listener.
#[derive(Default)]
pub struct Counts {
    pub upstream_calls: AtomicU64,
    pub not_modified: AtomicU64,
    pub coalesced: AtomicU64,
    pub cache_hits: AtomicU64,
    pub queued_ms: AtomicU64,
    pub limited: AtomicU64,
    /// Requests being handled now (a gauge, not flushed).
    pub in_flight: AtomicU64,
}

/// Counts a request as in flight while it lives.
pub struct InFlight(Arc<Counts>);

impl InFlight {
    pub fn new(counts: Arc<Counts>) -> InFlight {
        counts.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(counts)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

pub const NAMES: [&str; 6] = [
    "upstream_calls",
    "not_modified",
    "coalesced",
    "cache_hits",
    "queued_ms",
    "limited",
];

impl Counts {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
    fn values(&self) -> [u64; 6] {
        [
            &self.upstream_calls,
            &self.not_modified,
            &self.coalesced,
            &self.cache_hits,
            &self.queued_ms,
            &self.limited,
        ]
        .map(|c| c.load(Ordering::Relaxed))
    }
}

/// This process's counts (since it started) of the calls asked for.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct CounterSnapshot {
    /// Requests sent to the upstream (a revalidation answered 304 included).
    pub upstream_calls: u64,
    /// Revalidations the upstream answered 304: served from the cache, free.
    pub not_modified: u64,
    /// Requests that shared another's upstream call.
    pub coalesced: u64,
    /// Requests answered from the cache without asking the upstream (fresh GraphQL answers).
    pub cache_hits: u64,
    /// Time requests waited for budget and for a free upstream slot, in ms.
    pub queued_ms: u64,
    /// Requests arbiter answered 429 itself (no budget within their wait).
    pub limited: u64,
    /// Requests being handled right now (waiting for budget, for another's call, or for
    /// the upstream).
    pub in_flight: u64,
    /// The identities (GitHub logins) seen.
    pub identities: Vec<String>,
}

/// Per login, the counts of each listener (`None`: TCP; a loop's socket) it came through.
type Live = HashMap<String, Vec<(Option<LoopName>, Arc<Counts>)>>;

#[derive(Default)]
pub struct Counters {
    /// Read on every request (found under a shared lock, without allocating), written
    /// only the first time a login comes through a listener; the counts themselves are
    /// atomics.
    live: RwLock<Live>,
    /// What the store already has, per store scope.
    flushed: tokio::sync::Mutex<HashMap<String, [u64; 6]>>,
}

impl Counters {
    pub fn scope(&self, login: &str, tag: Option<&LoopName>) -> Arc<Counts> {
        let find = |live: &Live| {
            live.get(login)?
                .iter()
                .find(|(t, _)| t.as_ref() == tag)
                .map(|(_, counts)| counts.clone())
        };
        if let Some(counts) = find(&self.live.read().expect("counters")) {
            return counts;
        }
        let mut live = self.live.write().expect("counters");
        if let Some(counts) = find(&live) {
            return counts;
        }
        let counts = Arc::new(Counts::default());
        live.entry(login.to_string())
            .or_default()
            .push((tag.cloned(), counts.clone()));
        counts
    }

    /// Every (login, listener, counts).
    fn each(live: &Live) -> impl Iterator<Item = (&String, &Option<LoopName>, &Arc<Counts>)> {
        live.iter()
            .flat_map(|(login, scopes)| scopes.iter().map(move |(tag, counts)| (login, tag, counts)))
    }

    pub fn snapshot(&self, tag: Option<&LoopName>) -> CounterSnapshot {
        let live = self.live.read().expect("counters");
        let mut sums = [0u64; 6];
        let mut in_flight = 0;
        let mut identities = BTreeSet::new();
        for (login, scope_tag, counts) in Self::each(&live) {
            if tag.is_some() && scope_tag.as_ref() != tag {
                continue;
            }
            for (sum, value) in sums.iter_mut().zip(counts.values()) {
                *sum += value;
            }
            in_flight += counts.in_flight.load(Ordering::Relaxed);
            identities.insert(login.clone());
        }
        let [upstream_calls, not_modified, coalesced, cache_hits, queued_ms, limited] = sums;
        CounterSnapshot {
            upstream_calls,
            not_modified,
            coalesced,
            cache_hits,
            queued_ms,
            limited,
            in_flight,
            identities: identities.into_iter().collect(),
        }
    }

    /// Totals per store scope: `github/<login>` and `github/<login>/loop/<loop>`.
    fn totals(&self) -> BTreeMap<String, [u64; 6]> {
        let live = self.live.read().expect("counters");
        let mut totals: BTreeMap<String, [u64; 6]> = BTreeMap::new();
        for (login, tag, counts) in Self::each(&live) {
            let values = counts.values();
            let mut scopes = vec![format!("github/{login}")];
            if let Some(tag) = tag {
                scopes.push(format!("github/{login}/loop/{tag}"));
            }
            for scope in scopes {
                let sum = totals.entry(scope).or_default();
                for (s, v) in sum.iter_mut().zip(values) {
                    *s += v;
                }
            }
        }
        totals
    }
}

/// Adds what changed since the last flush to the store.
pub async fn flush(shared: &Shared) {
    let mut flushed = shared.counters.flushed.lock().await;
    for (scope, values) in shared.counters.totals() {
        let before = flushed.get(&scope).copied().unwrap_or_default();
        if before == values {
            continue;
        }
        let deltas: Vec<(String, i64)> = NAMES
            .iter()
            .zip(values.iter().zip(before))
            .filter(|(_, (now, then))| **now != *then)
            .map(|(name, (now, then))| (name.to_string(), (now - then) as i64))
            .collect();
        match shared.budget.add_counters(&scope, &shared.config.source, &deltas).await {
            Ok(()) => {
                flushed.insert(scope, values);
            }
            Err(e) => tracing::warn!("GitHub proxy: cannot add the counters of {scope} to the store: {e}"),
        }
    }
}

/// Flushes every [`crate::FLUSH_EVERY`] until told to stop.
pub async fn flush_every(shared: Arc<Shared>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut interval = tokio::time::interval(crate::FLUSH_EVERY);
    interval.tick().await;
    loop {
        tokio::select! {
            _ = interval.tick() => flush(&shared).await,
            _ = stop.changed() => return,
        }
    }
}
