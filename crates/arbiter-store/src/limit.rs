//! What both backends share for rate-limit buckets beyond SQL text: the columns of a
//! bucket row and their decoding, and the lists a take loads and writes. The rules are
//! `arbiter_core::limit`'s plans.

use std::time::Duration;

use arbiter_core::limit::{Bucket, BucketSpec, BucketState, PartyState, Rate};
use arbiter_core::name::{BucketName, Namespace};
use arbiter_core::{Millis, Result};

use crate::sql::stored;

/// The columns [`BucketRow`] holds, in this order, as both backends select them.
pub(crate) const BUCKET_COLUMNS: &str =
    "name, rate_amount, rate_per_ms, burst, reserve_percent, fair, tokens, updated_at, frozen_until, reset_at";

/// A bucket row's columns.
pub(crate) struct BucketRow {
    pub name: String,
    pub rate_amount: i64,
    pub rate_per_ms: i64,
    pub burst: i64,
    pub reserve_percent: i64,
    pub fair: bool,
    pub tokens: f64,
    pub updated_at: Millis,
    pub frozen_until: Option<Millis>,
    pub reset_at: Option<Millis>,
}

impl BucketRow {
    pub fn decode(self) -> Result<Bucket> {
        Ok(Bucket {
            name: stored(self.name)?,
            spec: BucketSpec {
                rate: Rate {
                    amount: unsigned(self.rate_amount),
                    per: Duration::from_millis(unsigned(self.rate_per_ms)),
                },
                burst: unsigned(self.burst),
                reserve_percent: u8::try_from(self.reserve_percent).unwrap_or(100),
                fair: self.fair,
            },
            state: BucketState {
                tokens: self.tokens,
                updated_at: self.updated_at,
                frozen_until: self.frozen_until,
                reset_at: self.reset_at,
            },
            parties: Vec::new(),
        })
    }
}

/// The spec's columns as stored: rate amount, rate period (ms), burst, reserve.
pub(crate) fn spec_columns(spec: &BucketSpec) -> (i64, i64, i64, i64) {
    (
        signed(spec.rate.amount),
        crate::sql::ms(spec.rate.per),
        signed(spec.burst),
        i64::from(spec.reserve_percent),
    )
}

fn unsigned(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

pub(crate) fn signed(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// Puts loaded buckets in the request's order; a name not loaded is `NotFound`.
pub(crate) fn in_order(namespace: &Namespace, names: &[BucketName], mut loaded: Vec<Bucket>) -> Result<Vec<Bucket>> {
    names
        .iter()
        .map(|name| {
            let at = loaded
                .iter()
                .position(|b| &b.name == name)
                .ok_or_else(|| arbiter_core::limit::not_found(namespace, name))?;
            Ok(loaded.swap_remove(at))
        })
        .collect()
}

/// Hands each party row (bucket name, party) to its bucket.
pub(crate) fn attach_parties(buckets: &mut [Bucket], parties: Vec<(String, PartyState)>) {
    for (bucket, party) in parties {
        if let Some(b) = buckets.iter_mut().find(|b| b.name == bucket.as_str()) {
            b.parties.push(party);
        }
    }
}

/// The names of a request, sorted (the order rows are locked in) and as strings.
pub(crate) fn sorted_names(names: &[BucketName]) -> Vec<String> {
    let mut sorted: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    sorted.sort();
    sorted.dedup();
    sorted
}

/// Deltas with each name once (summed), by name: the order rows are written in.
pub(crate) fn merged(deltas: &[(String, i64)]) -> Vec<(String, i64)> {
    let mut merged = std::collections::BTreeMap::<String, i64>::new();
    for (name, delta) in deltas {
        let sum = merged.entry(name.clone()).or_default();
        *sum = sum.saturating_add(*delta);
    }
    merged.into_iter().collect()
}
