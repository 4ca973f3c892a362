//! Spending from the budgets of a GitHub identity, and correcting them from what GitHub
//! says. The one place the proxy talks to the limit primitive: bucket naming, GitHub's
//! default specs, take-with-wait, refund, observe and counters.
//!
//! Buckets (in the proxy's namespace): `github/<login>/<resource>` for each primary budget
//! as `x-ratelimit-resource` names it (`core`, `graphql`, `search`, …), and the secondary
//! ones: `points` (REST, 900/min), `graphql-points` (2,000/min), `content-minute` (80/min)
//! and `content-hour` (500/h).
//!
//! INTERIM (until the limit primitive lands on main): buckets are counted in this process,
//! and a freeze (a primary or secondary hit) is shared through the store as the key
//! `github/<login>/frozen` (JSON: bucket → frozen until, Unix ms), so every proxy on the
//! store waits it out; counters are kept as keys `github-counters/<scope>/<source>`
//! (this source's totals).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use arbiter_core::Result;
use arbiter_core::name::{Key, Namespace};
use arbiter_store::Store;

use crate::upstream::{SECONDARY_DEFAULT, now_millis};

/// What a response said about one bucket (the limit primitive's `Observation`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observation {
    pub limit: Option<u64>,
    pub remaining: Option<u64>,
    /// Unix ms.
    pub reset_at: Option<i64>,
    pub retry_after: Option<Duration>,
    /// The upstream refused the call (primary or secondary limit).
    pub hit: bool,
}

/// Why a request was not given budget: the bucket that had no room, and how long it would
/// take.
#[derive(Debug, Clone)]
pub struct Denied {
    pub bucket: String,
    pub wait: Duration,
}

/// The name of an identity's bucket.
pub fn bucket(login: &str, suffix: &str) -> String {
    format!("github/{login}/{suffix}")
}

/// GitHub's default for a bucket: (amount, per, burst).
pub fn default_spec(suffix: &str) -> (u64, Duration) {
    const MINUTE: Duration = Duration::from_secs(60);
    const HOUR: Duration = Duration::from_secs(3600);
    match suffix {
        "points" => (900, MINUTE),
        "graphql-points" => (2000, MINUTE),
        "content-minute" => (80, MINUTE),
        "content-hour" => (500, HOUR),
        "search" => (30, MINUTE),
        "code_search" => (10, MINUTE),
        // core, graphql and any other primary resource GitHub names.
        _ => (5000, HOUR),
    }
}

struct Local {
    tokens: f64,
    burst: f64,
    per_second: f64,
    at: Instant,
}

impl Local {
    fn new(suffix: &str) -> Local {
        let (amount, per) = default_spec(suffix);
        Local {
            tokens: amount as f64,
            burst: amount as f64,
            per_second: amount as f64 / per.as_secs_f64(),
            at: Instant::now(),
        }
    }
    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.burst);
        self.at = now;
    }
    fn wait_for(&self, cost: u64) -> Duration {
        let missing = cost as f64 - self.tokens;
        if missing <= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(missing / self.per_second).max(Duration::from_millis(1))
        }
    }
}

pub struct Budget {
    store: Store,
    namespace: Namespace,
    local: Mutex<HashMap<String, Local>>,
}

impl Budget {
    pub fn new(store: Store, namespace: Namespace) -> Budget {
        Budget {
            store,
            namespace,
            local: Mutex::new(HashMap::new()),
        }
    }

    /// Takes `cost` from each `(bucket suffix, cost)` of `login`, all or none, waiting up to
    /// `max_wait` for room (a frozen bucket waits for its thaw). A store that cannot be
    /// reached does not stop requests: GitHub still enforces its limits (logged).
    pub async fn spend(&self, login: &str, items: &[(&str, u64)], max_wait: Duration) -> Result<(), Denied> {
        let items: Vec<(&str, u64)> = items.iter().copied().filter(|(_, cost)| *cost > 0).collect();
        if items.is_empty() {
            return Ok(());
        }
        let deadline = Instant::now() + max_wait;
        loop {
            let frozen = match self.frozen(login).await {
                Ok(frozen) => frozen,
                Err(e) => {
                    tracing::warn!("GitHub budget of {login}: the store did not answer ({e}); forwarding");
                    HashMap::new()
                }
            };
            let now_ms = now_millis();
            let thaw = items
                .iter()
                .filter_map(|(suffix, _)| {
                    let until = *frozen.get(*suffix)?;
                    (until > now_ms).then(|| (*suffix, Duration::from_millis((until - now_ms) as u64)))
                })
                .max_by_key(|(_, wait)| *wait);
            let (suffix, wait) = match thaw {
                Some(found) => found,
                None => match self.take_local(login, &items) {
                    None => return Ok(()),
                    Some(found) => found,
                },
            };
            let now = Instant::now();
            if now + wait > deadline {
                return Err(Denied {
                    bucket: bucket(login, suffix),
                    wait,
                });
            }
            tokio::time::sleep(wait).await;
        }
    }

    /// Takes all or nothing; else the bucket that has no room and how long until it has.
    fn take_local<'a>(&self, login: &str, items: &[(&'a str, u64)]) -> Option<(&'a str, Duration)> {
        let mut local = self.local.lock().expect("budget");
        let now = Instant::now();
        let mut short = None;
        for (suffix, cost) in items {
            let bucket = local.entry(bucket(login, suffix)).or_insert_with(|| Local::new(suffix));
            bucket.refill(now);
            let wait = bucket.wait_for(*cost);
            if wait > Duration::ZERO && short.is_none_or(|(_, w)| wait > w) {
                short = Some((*suffix, wait));
            }
        }
        if short.is_some() {
            return short;
        }
        for (suffix, cost) in items {
            if let Some(bucket) = local.get_mut(&bucket(login, suffix)) {
                bucket.tokens -= *cost as f64;
            }
        }
        None
    }

    /// Gives back what a call did not use (a conditional GET answered 304 is free).
    pub async fn refund(&self, login: &str, items: &[(&str, u64)]) {
        let mut local = self.local.lock().expect("budget");
        for (suffix, cost) in items {
            if let Some(bucket) = local.get_mut(&bucket(login, suffix)) {
                bucket.tokens = (bucket.tokens + *cost as f64).min(bucket.burst);
            }
        }
    }

    /// Corrects `login`'s bucket `suffix` from what the upstream said: the remaining budget
    /// caps what is left; a hit freezes the bucket for every proxy on the store until the
    /// reset, the `retry-after`, or a minute.
    pub async fn observe(&self, login: &str, suffix: &str, observation: &Observation) {
        {
            let mut local = self.local.lock().expect("budget");
            let bucket = local.entry(bucket(login, suffix)).or_insert_with(|| Local::new(suffix));
            bucket.refill(Instant::now());
            if let Some(limit) = observation.limit.filter(|l| *l > 0) {
                let (_, per) = default_spec(suffix);
                bucket.burst = limit as f64;
                bucket.per_second = limit as f64 / per.as_secs_f64();
            }
            if let Some(remaining) = observation.remaining {
                bucket.tokens = bucket.tokens.min(remaining as f64);
            }
            if observation.hit {
                bucket.tokens = 0.0;
            }
        }
        if !observation.hit {
            return;
        }
        let now = now_millis();
        let until = match (observation.retry_after, observation.reset_at) {
            (Some(after), _) => now + after.as_millis() as i64,
            (None, Some(reset)) if reset > now => reset,
            _ => now + SECONDARY_DEFAULT.as_millis() as i64,
        };
        if let Err(e) = self.freeze(login, suffix, until).await {
            tracing::warn!("GitHub budget of {login}: cannot record the freeze of {suffix} ({e})");
        }
    }

    fn frozen_key(login: &str) -> Key {
        Key::parse(&format!("github/{login}/frozen")).expect("a login makes a valid key")
    }

    async fn frozen(&self, login: &str) -> Result<HashMap<String, i64>> {
        let value = self.store.kv().get(&self.namespace, &Self::frozen_key(login)).await?;
        Ok(value
            .and_then(|kv| serde_json::from_str(&kv.value).ok())
            .unwrap_or_default())
    }

    async fn freeze(&self, login: &str, suffix: &str, until: i64) -> Result<()> {
        let key = Self::frozen_key(login);
        let mut frozen = self.frozen(login).await?;
        let now = now_millis();
        frozen.retain(|_, until| *until > now);
        let entry = frozen.entry(suffix.to_string()).or_insert(until);
        *entry = (*entry).max(until);
        let text = serde_json::to_string(&frozen).expect("a map serializes");
        self.store.kv().put(&self.namespace, &key, &text, None).await?;
        Ok(())
    }

    /// Records this source's counters of `scope` (`totals`: since the process started;
    /// `deltas`: since the last flush).
    pub async fn add_counters(
        &self,
        scope: &str,
        source: &str,
        totals: &[(String, i64)],
        _deltas: &[(String, i64)],
    ) -> Result<()> {
        let key = Key::parse(&format!("github-counters/{scope}/{source}"))
            .map_err(|e| arbiter_core::Error::internal(e.message))?;
        let value: serde_json::Map<String, serde_json::Value> =
            totals.iter().map(|(k, v)| (k.clone(), (*v).into())).collect();
        self.store
            .kv()
            .put(
                &self.namespace,
                &key,
                &serde_json::Value::Object(value).to_string(),
                None,
            )
            .await?;
        Ok(())
    }
}
