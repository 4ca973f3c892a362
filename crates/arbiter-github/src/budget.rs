//! Spending from the budgets of a GitHub identity, and correcting them from what GitHub
//! says: the one place the proxy talks to the limit primitive (bucket naming, GitHub's
//! default specs, takes through [`Permits`], refunds, observations, counters).
//!
//! Buckets (in the proxy's namespace, defined `if_absent` with GitHub's defaults on first
//! use): `github/<login>/<resource>` for each primary budget as `x-ratelimit-resource`
//! names it (`core`, `graphql`, `search`, …), and the secondary ones: `points` (REST,
//! 900/min), `graphql-points` (2,000/min), `content-minute` (80/min) and `content-hour`
//! (500/h). Every proxy on the store spends from the same buckets, so a fleet spends one
//! budget per GitHub user.
//!
//! Takes go through [`Permits`] (the fast path: batches taken from the store, handed out
//! here), one per set of buckets and priority. When GitHub refuses a call, the bucket is
//! frozen in the store for everyone and this process's permits of that identity are given
//! back, so none of them is spent while the freeze lasts.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arbiter_client::limit::Permits;
use arbiter_core::limit::{BucketSpec, Priority, Rate};
use arbiter_core::name::{BucketName, Namespace};
use arbiter_core::{Detail, ErrorKind, Result};
use arbiter_store::Store;

pub use arbiter_core::limit::Observation;

/// Why a request was not given budget: the bucket that had no room, how long it would take,
/// and the limit primitive's words for it.
#[derive(Debug, Clone)]
pub struct Denied {
    pub bucket: String,
    pub wait: Duration,
    pub reason: String,
}

/// The name of an identity's bucket (the one naming rule, which the supervisor and
/// `status` read by: `arbiter_core::github`).
pub fn bucket(login: &str, suffix: &str) -> String {
    arbiter_core::github::bucket_name(login, suffix)
}

/// GitHub's default for a bucket: its rate (the burst is one period's amount).
pub fn default_rate(suffix: &str) -> Rate {
    const MINUTE: Duration = Duration::from_secs(60);
    const HOUR: Duration = Duration::from_secs(3600);
    let (amount, per) = match suffix {
        "points" => (900, MINUTE),
        "graphql-points" => (2000, MINUTE),
        "content-minute" => (80, MINUTE),
        "content-hour" => (500, HOUR),
        "search" => (30, MINUTE),
        "code_search" => (10, MINUTE),
        // core, graphql and any other primary resource GitHub names.
        _ => (5000, HOUR),
    };
    Rate { amount, per }
}

/// GitHub's default for a bucket. The primary budgets keep the default reserve for
/// interactive calls; the secondary ones (per minute, refilled fast) keep none, so a call
/// waits only for the limit itself after a freeze.
pub fn default_spec(suffix: &str) -> BucketSpec {
    let mut spec = BucketSpec::new(default_rate(suffix));
    if SECONDARY.contains(&suffix) {
        spec.reserve_percent = 0;
    }
    spec
}

/// The secondary limits' buckets.
pub const SECONDARY: [&str; 4] = ["points", "graphql-points", "content-minute", "content-hour"];

type PermitKey = (Vec<String>, Priority);

pub struct Budget {
    store: Store,
    namespace: Namespace,
    defined: Mutex<HashSet<String>>,
    permits: Mutex<HashMap<PermitKey, Arc<Permits>>>,
}

impl Budget {
    pub fn new(store: Store, namespace: Namespace) -> Budget {
        Budget {
            store,
            namespace,
            defined: Mutex::new(HashSet::new()),
            permits: Mutex::new(HashMap::new()),
        }
    }

    /// The bucket `suffix` of `login`, defined with GitHub's default unless it exists.
    async fn ensure(&self, login: &str, suffix: &str) -> Result<BucketName> {
        let text = bucket(login, suffix);
        let name = BucketName::parse(&text).map_err(|e| arbiter_core::Error::internal(e.message))?;
        if self.defined.lock().expect("budget").contains(&text) {
            return Ok(name);
        }
        let spec = default_spec(suffix);
        self.store.limits().define(&self.namespace, &name, &spec, true).await?;
        self.defined.lock().expect("budget").insert(text);
        Ok(name)
    }

    fn permits(&self, names: &[BucketName], priority: Priority) -> Arc<Permits> {
        let key = (names.iter().map(|n| n.to_string()).collect(), priority);
        self.permits
            .lock()
            .expect("budget")
            .entry(key)
            .or_insert_with(|| {
                Arc::new(Permits::new(
                    self.store.clone(),
                    self.namespace.clone(),
                    names.to_vec(),
                    priority,
                ))
            })
            .clone()
    }

    /// Takes each `(bucket suffix, cost)` of `login` (buckets of one cost in one atomic
    /// take), waiting up to `max_wait` for room; what was taken is given back when a later
    /// part is refused. A store that cannot be reached does not stop requests: GitHub still
    /// enforces its limits (logged).
    pub async fn spend(
        &self,
        login: &str,
        items: &[(&str, u64)],
        priority: Priority,
        max_wait: Duration,
    ) -> std::result::Result<(), Denied> {
        let deadline = Instant::now() + max_wait;
        let mut groups: BTreeMap<u64, Vec<&str>> = BTreeMap::new();
        for (suffix, cost) in items.iter().filter(|(_, cost)| *cost > 0) {
            groups.entry(*cost).or_default().push(suffix);
        }
        let mut taken: Vec<(Vec<BucketName>, u64)> = Vec::new();
        for (cost, suffixes) in groups {
            let outcome = self.take(login, &suffixes, cost, priority, deadline).await;
            match outcome {
                Ok(names) => taken.push((names, cost)),
                Err(Some(denied)) => {
                    for (names, cost) in taken {
                        self.give_back(&names, cost).await;
                    }
                    return Err(denied);
                }
                Err(None) => {} // the store did not answer: forwarded anyway
            }
        }
        Ok(())
    }

    async fn take(
        &self,
        login: &str,
        suffixes: &[&str],
        cost: u64,
        priority: Priority,
        deadline: Instant,
    ) -> std::result::Result<Vec<BucketName>, Option<Denied>> {
        let mut names = Vec::with_capacity(suffixes.len());
        for suffix in suffixes {
            match self.ensure(login, suffix).await {
                Ok(name) => names.push(name),
                Err(e) => {
                    tracing::warn!("GitHub budget of {login}: the store did not answer ({e}); forwarding");
                    return Err(None);
                }
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match self.permits(&names, priority).take(cost, left).await {
            Ok(()) => Ok(names),
            Err(e) if e.kind == ErrorKind::Limited => {
                let wait = match e.detail.as_deref() {
                    Some(Detail::Limited { wait_ms }) => Duration::from_millis(*wait_ms),
                    _ => Duration::from_secs(1),
                };
                // The refusal names the bucket: `bucket "github/x/core" has …`.
                let bucket = e
                    .message
                    .split_once("bucket \"")
                    .and_then(|(_, rest)| rest.split('"').next())
                    .map(str::to_string)
                    .unwrap_or_else(|| names[0].to_string());
                Err(Some(Denied {
                    bucket,
                    wait,
                    reason: e.message,
                }))
            }
            Err(e) => {
                tracing::warn!("GitHub budget of {login}: the store did not answer ({e}); forwarding");
                Err(None)
            }
        }
    }

    async fn give_back(&self, names: &[BucketName], cost: u64) {
        if let Err(e) = self.store.limits().refund(&self.namespace, names, cost).await {
            tracing::warn!("GitHub budget: cannot give back {cost} to {names:?}: {e}");
        }
    }

    /// Gives back what a call did not use (a request that never reached GitHub).
    pub async fn refund(&self, login: &str, items: &[(&str, u64)]) {
        for (suffix, cost) in items.iter().filter(|(_, cost)| *cost > 0) {
            if let Ok(name) = self.ensure(login, suffix).await {
                self.give_back(&[name], *cost).await;
            }
        }
    }

    /// Corrects `login`'s bucket `suffix` from what GitHub said; a hit freezes it for every
    /// proxy on the store (until the reset, the `retry-after`, or a minute) and gives back
    /// the permits this process holds for that identity.
    pub async fn observe(&self, login: &str, suffix: &str, observation: &Observation) {
        let name = match self.ensure(login, suffix).await {
            Ok(name) => name,
            Err(e) => {
                tracing::warn!("GitHub budget of {login}: cannot record what GitHub said ({e})");
                return;
            }
        };
        if observation.hit {
            self.drop_permits(login).await;
        }
        if let Err(e) = self.store.limits().observe(&self.namespace, &name, observation).await {
            tracing::warn!("GitHub budget of {login}: cannot record what GitHub said ({e})");
        }
    }

    /// Closes (giving back what is unused) every [`Permits`] of `login`'s buckets.
    async fn drop_permits(&self, login: &str) {
        let prefix = bucket(login, "");
        let dropped: Vec<Arc<Permits>> = {
            let mut permits = self.permits.lock().expect("budget");
            let keys: Vec<PermitKey> = permits
                .keys()
                .filter(|(names, _)| names.iter().any(|n| n.starts_with(&prefix)))
                .cloned()
                .collect();
            keys.iter().filter_map(|k| permits.remove(k)).collect()
        };
        for permits in dropped {
            // Held elsewhere only by a take in progress, which finishes with what it has.
            if let Ok(permits) = Arc::try_unwrap(permits)
                && let Err(e) = permits.close().await
            {
                tracing::warn!("GitHub budget of {login}: cannot give back permits ({e})");
            }
        }
    }

    /// Adds this source's `deltas` to the counters of `scope`.
    pub async fn add_counters(&self, scope: &str, source: &str, deltas: &[(String, i64)]) -> Result<()> {
        self.store
            .limits()
            .add_counters(&self.namespace, scope, source, deltas)
            .await
    }

    /// Gives back every permit held (at shutdown).
    pub async fn close(&self) {
        let all: Vec<Arc<Permits>> = self.permits.lock().expect("budget").drain().map(|(_, p)| p).collect();
        for permits in all {
            if let Ok(permits) = Arc::try_unwrap(permits) {
                let _ = permits.close().await;
            }
        }
    }
}
