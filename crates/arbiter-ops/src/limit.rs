//! Rate-limit buckets: define, take (waiting up to a bound), show, list, observe what an
//! upstream said, and the counters the GitHub proxy shares.
//!
//! A take not granted within its wait is `ErrorKind::Limited` with `Detail::Limited {
//! wait_ms }` (the wait it would have needed); its message names the bucket that refused:
//! `not granted: bucket "x" has 0.4 of 1 tokens; wait 2.5s`.

use std::time::Duration;

use arbiter_core::limit::MAX_AHEAD;
pub use arbiter_core::limit::{BucketInfo, BucketSpec, Counter, Observation, Priority, Rate, TakeRequest};
use arbiter_core::name::{BucketName, Namespace};
use arbiter_core::{Error, Millis, Result};
use arbiter_store::Store;
use serde::{Deserialize, Serialize};

use crate::view::timestamp;

/// A bucket. Field names are stable.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BucketView {
    pub namespace: String,
    pub name: String,
    /// `5000/h`.
    pub rate: String,
    pub burst: u64,
    pub reserve_percent: u8,
    pub fair: bool,
    /// Tokens available now (a real number: the refill is continuous), rounded down to
    /// three decimals.
    pub tokens: f64,
    /// Until when it grants nothing (the upstream refused), if it is frozen.
    pub frozen_until: Option<String>,
    /// When the upstream's window ends, as it last said.
    pub reset_at: Option<String>,
    /// The store's clock when this was read.
    pub now: String,
}

impl BucketView {
    pub fn new(namespace: &Namespace, info: &BucketInfo) -> BucketView {
        BucketView {
            namespace: namespace.to_string(),
            name: info.name.to_string(),
            rate: info.spec.rate.to_string(),
            burst: info.spec.burst,
            reserve_percent: info.spec.reserve_percent,
            fair: info.spec.fair,
            tokens: arbiter_core::limit::shown_tokens(info.tokens, 3),
            frozen_until: info.frozen_until.map(timestamp),
            reset_at: info.reset_at.map(timestamp),
            now: timestamp(info.now),
        }
    }
}

/// A granted take: the buckets after it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TakeView {
    pub granted: bool,
    pub cost: u64,
    pub buckets: Vec<BucketView>,
}

/// A counter summed over the hosts that count it. Field names are stable.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CounterView {
    pub scope: String,
    pub name: String,
    pub value: i64,
    pub updated_at: String,
}

/// Creates a bucket (full) or changes its spec (keeping its tokens); with `if_absent`, an
/// existing one is left as it is.
pub async fn define(
    store: &Store,
    namespace: &Namespace,
    name: &BucketName,
    spec: &BucketSpec,
    if_absent: bool,
) -> Result<BucketView> {
    let info = store.limits().define(namespace, name, spec, if_absent).await?;
    Ok(BucketView::new(namespace, &info))
}

/// Takes `request.cost` from every named bucket, waiting up to `max_wait` (zero: one try);
/// `Limited` when not granted within it.
pub async fn take(store: &Store, request: TakeRequest, max_wait: Duration) -> Result<TakeView> {
    let namespace = request.namespace.clone();
    let cost = request.cost;
    let decision = arbiter_client::limit::take(store, request, max_wait).await?;
    Ok(TakeView {
        granted: decision.granted,
        cost,
        buckets: decision
            .buckets
            .iter()
            .map(|b| BucketView::new(&namespace, b))
            .collect(),
    })
}

/// One bucket; `NotFound` if it was never defined.
pub async fn show(store: &Store, namespace: &Namespace, name: &BucketName) -> Result<BucketView> {
    let info = store.limits().show(namespace, name).await?;
    Ok(BucketView::new(namespace, &info))
}

/// Every bucket of the namespace, by name.
pub async fn list(store: &Store, namespace: &Namespace) -> Result<Vec<BucketView>> {
    let buckets = store.limits().list(namespace).await?;
    Ok(buckets.iter().map(|b| BucketView::new(namespace, b)).collect())
}

/// Applies what an upstream said (see `arbiter_core::limit::plan_observe`).
pub async fn observe(
    store: &Store,
    namespace: &Namespace,
    name: &BucketName,
    observation: &Observation,
) -> Result<BucketView> {
    let info = store.limits().observe(namespace, name, observation).await?;
    Ok(BucketView::new(namespace, &info))
}

/// The latest `--reset` believed: 2100-01-01, in seconds since the Unix epoch.
pub const MAX_RESET_SECONDS: i64 = 4_102_444_800;

/// An observation from header values as an upstream sends them: `x-ratelimit-limit`,
/// `-remaining`, `-reset` (Unix seconds) and `retry-after` (seconds; 0 or blank on a hit:
/// wait 60 s). Errors name the CLI flag of the bad value.
pub fn observation(
    limit: Option<u64>,
    remaining: Option<u64>,
    reset_unix_seconds: Option<i64>,
    retry_after_seconds: Option<u64>,
    hit: bool,
) -> Result<Observation> {
    let reset_at: Option<Millis> = reset_unix_seconds
        .map(|s| {
            s.checked_mul(1000).filter(|ms| *ms > 0 && s <= MAX_RESET_SECONDS).ok_or_else(|| {
                Error::bad_input(format!(
                    "invalid --reset {s}: expected a time in seconds since the Unix epoch, at most {MAX_RESET_SECONDS} (2100)"
                ))
            })
        })
        .transpose()?;
    if limit == Some(0) {
        return Err(Error::bad_input("invalid --limit 0: expected at least 1"));
    }
    if let Some(seconds) = retry_after_seconds.filter(|s| *s > MAX_AHEAD.as_secs()) {
        return Err(Error::bad_input(format!(
            "invalid --retry-after {seconds}: expected at most {} seconds (a day)",
            MAX_AHEAD.as_secs()
        )));
    }
    Ok(Observation {
        limit,
        remaining,
        reset_at,
        retry_after: retry_after_seconds.map(Duration::from_secs),
        hit,
    })
}

/// The counters of every scope starting with `scope_prefix`, summed over hosts.
pub async fn counters(store: &Store, namespace: &Namespace, scope_prefix: &str) -> Result<Vec<CounterView>> {
    let counters = store.limits().counters(namespace, scope_prefix).await?;
    Ok(counters
        .into_iter()
        .map(|c| CounterView {
            scope: c.scope,
            name: c.name,
            value: c.value,
            updated_at: timestamp(c.updated_at),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use arbiter_core::ErrorKind;

    use super::*;
    use crate::testing::temp_store;

    #[tokio::test]
    async fn views_serialize_with_stable_fields() {
        let (_dir, store) = temp_store().await;
        let ns = Namespace::default();
        let name = BucketName::parse("github/octo/core").unwrap();
        let spec = BucketSpec::new(Rate::parse("5000/h").unwrap());
        let view = define(&store, &ns, &name, &spec, false).await.unwrap();
        assert_eq!((view.rate.as_str(), view.burst, view.tokens), ("5000/h", 5000, 5000.0));
        let json = serde_json::to_value(&view).unwrap();
        let keys: Vec<&str> = json.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "burst",
                "fair",
                "frozen_until",
                "name",
                "namespace",
                "now",
                "rate",
                "reserve_percent",
                "reset_at",
                "tokens"
            ]
        );
        let seen = observe(
            &store,
            &ns,
            &name,
            &observation(None, Some(0), Some(4_000_000_000), None, true).unwrap(),
        )
        .await
        .unwrap();
        assert_eq!(seen.tokens, 0.0);
        // A reset in 2096 is not believed (more than a day ahead): frozen for the default
        // minute, not for seventy years.
        assert!(seen.frozen_until.is_some() && seen.reset_at.is_none(), "{seen:?}");
        let request = TakeRequest {
            namespace: ns.clone(),
            buckets: vec![name.clone()],
            cost: 1,
            priority: Priority::Interactive,
            party: None,
        };
        let err = take(&store, request, Duration::ZERO).await.unwrap_err();
        assert_eq!(err.kind, ErrorKind::Limited);
        assert!(err.message.contains("is frozen"), "{}", err.message);
        assert_eq!(list(&store, &ns).await.unwrap().len(), 1);
        assert_eq!(
            observation(None, None, Some(-1), None, false).unwrap_err().kind,
            ErrorKind::BadInput
        );
    }
}
