//! Rate-limit buckets on SQLite. Every change runs in a `BEGIN IMMEDIATE` transaction
//! (the write lock is the database's, so a multi-bucket take locks all it decides on at
//! once), reads the store's clock, loads the buckets, applies the core's plan.

use arbiter_core::limit::{
    Bucket, BucketInfo, BucketSpec, BucketState, Counter, MAX_FAIR_WINDOW_MS, Observation, PartyState, TakeDecision,
    TakeRequest, check_buckets_and_cost, check_counters, not_found, plan_define, plan_observe, plan_refund, plan_take,
};
use arbiter_core::name::{BucketName, Namespace};
use arbiter_core::{Millis, Result};
use async_trait::async_trait;
use rusqlite::{OptionalExtension, Row, Transaction, params};

use super::{Outcome, SqliteStore, internal, now_ms};
use crate::api::LimitStore;
use crate::limit::{BUCKET_COLUMNS, BucketRow, attach_parties, in_order, merged, sorted_names, spec_columns};
use crate::schema::Migration;

fn bucket_row(r: &Row<'_>) -> rusqlite::Result<BucketRow> {
    Ok(BucketRow {
        name: r.get(0)?,
        rate_amount: r.get(1)?,
        rate_per_ms: r.get(2)?,
        burst: r.get(3)?,
        reserve_percent: r.get(4)?,
        fair: r.get(5)?,
        tokens: r.get(6)?,
        updated_at: r.get(7)?,
        frozen_until: r.get(8)?,
        reset_at: r.get(9)?,
    })
}

fn load(tx: &Transaction<'_>, ns: &str, name: &str) -> Result<Option<Bucket>> {
    tx.query_row(
        &format!("SELECT {BUCKET_COLUMNS} FROM limit_buckets WHERE namespace = ?1 AND name = ?2"),
        params![ns, name],
        bucket_row,
    )
    .optional()
    .map_err(internal)?
    .map(BucketRow::decode)
    .transpose()
}

fn load_existing(tx: &Transaction<'_>, ns: &Namespace, name: &BucketName) -> Result<Bucket> {
    load(tx, ns, name)?.ok_or_else(|| not_found(ns, name))
}

fn write_spec(tx: &Transaction<'_>, ns: &str, name: &str, spec: &BucketSpec, state: &BucketState) -> Result<()> {
    let (amount, per_ms, burst, reserve) = spec_columns(spec);
    tx.execute(
        "INSERT INTO limit_buckets (namespace, name, rate_amount, rate_per_ms, burst, reserve_percent, fair,
                                    tokens, updated_at, frozen_until, reset_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
         ON CONFLICT (namespace, name) DO UPDATE SET
            rate_amount = excluded.rate_amount, rate_per_ms = excluded.rate_per_ms, burst = excluded.burst,
            reserve_percent = excluded.reserve_percent, fair = excluded.fair, tokens = excluded.tokens,
            updated_at = excluded.updated_at, frozen_until = excluded.frozen_until, reset_at = excluded.reset_at",
        params![
            ns,
            name,
            amount,
            per_ms,
            burst,
            reserve,
            spec.fair,
            state.tokens,
            state.updated_at,
            state.frozen_until,
            state.reset_at
        ],
    )
    .map(drop)
    .map_err(internal)
}

fn write_state(tx: &Transaction<'_>, ns: &str, name: &str, state: &BucketState) -> Result<()> {
    tx.execute(
        "UPDATE limit_buckets SET tokens = ?3, updated_at = ?4, frozen_until = ?5, reset_at = ?6
         WHERE namespace = ?1 AND name = ?2",
        params![
            ns,
            name,
            state.tokens,
            state.updated_at,
            state.frozen_until,
            state.reset_at
        ],
    )
    .map(drop)
    .map_err(internal)
}

#[async_trait]
impl LimitStore for SqliteStore {
    async fn define(
        &self,
        ns: &Namespace,
        name: &BucketName,
        spec: &BucketSpec,
        if_absent: bool,
    ) -> Result<BucketInfo> {
        spec.check()?;
        let (ns, name, spec) = (ns.clone(), name.clone(), *spec);
        self.write(move |tx| {
            let now = now_ms(tx)?;
            let existing = load(tx, &ns, &name)?;
            let Some(state) = plan_define(now, existing.as_ref(), &spec, if_absent) else {
                return Ok(Outcome::Rollback(
                    existing.expect("if_absent leaves an existing bucket").info(now),
                ));
            };
            write_spec(tx, &ns, &name, &spec, &state)?;
            Ok(Outcome::Commit(load_existing(tx, &ns, &name)?.info(now)))
        })
        .await
    }

    async fn take(&self, request: &TakeRequest) -> Result<TakeDecision> {
        request.check()?;
        let request = request.clone();
        self.write(move |tx| {
            let now = now_ms(tx)?;
            let ns = request.namespace.as_str();
            let mut loaded = Vec::with_capacity(request.buckets.len());
            for name in sorted_names(&request.buckets) {
                if let Some(bucket) = load(tx, ns, &name)? {
                    loaded.push(bucket);
                }
            }
            let mut buckets = in_order(&request.namespace, &request.buckets, loaded)?;
            let fair: Vec<String> = buckets.iter().filter(|b| b.spec.fair).map(|b| b.name.to_string()).collect();
            let mut parties = Vec::new();
            for bucket in fair {
                let mut stmt = tx
                    .prepare_cached(
                        "SELECT party, tokens, updated_at FROM limit_parties WHERE namespace = ?1 AND bucket = ?2",
                    )
                    .map_err(internal)?;
                let rows = stmt
                    .query_map(params![ns, bucket], |r| {
                        Ok(PartyState {
                            party: r.get(0)?,
                            tokens: r.get(1)?,
                            updated_at: r.get(2)?,
                        })
                    })
                    .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
                    .map_err(internal)?;
                parties.extend(rows.into_iter().map(|party| (bucket.clone(), party)));
            }
            attach_parties(&mut buckets, parties);
            let plan = plan_take(now, &buckets, &request)?;
            if !plan.decision.granted {
                return Ok(Outcome::Rollback(plan.decision));
            }
            for write in &plan.writes {
                write_state(tx, ns, &write.name, &write.state)?;
                if let Some(party) = &write.party {
                    tx.execute(
                        "INSERT INTO limit_parties (namespace, bucket, party, tokens, updated_at) VALUES (?1, ?2, ?3, ?4, ?5)
                         ON CONFLICT (namespace, bucket, party) DO UPDATE SET
                            tokens = excluded.tokens, updated_at = excluded.updated_at",
                        params![ns, write.name.as_str(), party.party, party.tokens, party.updated_at],
                    )
                    .map_err(internal)?;
                    // Parties idle longer than any window are forgotten.
                    tx.execute(
                        "DELETE FROM limit_parties WHERE namespace = ?1 AND bucket = ?2 AND updated_at < ?3",
                        params![ns, write.name.as_str(), now - MAX_FAIR_WINDOW_MS],
                    )
                    .map_err(internal)?;
                }
            }
            Ok(Outcome::Commit(plan.decision))
        })
        .await
    }

    async fn refund(&self, ns: &Namespace, names: &[BucketName], cost: u64) -> Result<()> {
        check_buckets_and_cost("refund", names, cost)?;
        let (ns, names) = (ns.clone(), names.to_vec());
        self.write(move |tx| {
            let now = now_ms(tx)?;
            for name in &names {
                let bucket = load_existing(tx, &ns, name)?;
                let state = plan_refund(now, &bucket.spec, &bucket.state, cost);
                write_state(tx, &ns, name, &state)?;
            }
            Ok(Outcome::Commit(()))
        })
        .await
    }

    async fn observe(&self, ns: &Namespace, name: &BucketName, observation: &Observation) -> Result<BucketInfo> {
        let (ns, name, observation) = (ns.clone(), name.clone(), *observation);
        self.write(move |tx| {
            let now = now_ms(tx)?;
            let bucket = load_existing(tx, &ns, &name)?;
            let (spec, state) = plan_observe(now, &bucket.spec, &bucket.state, &observation);
            write_spec(tx, &ns, &name, &spec, &state)?;
            Ok(Outcome::Commit(Bucket { spec, state, ..bucket }.info(now)))
        })
        .await
    }

    async fn show(&self, ns: &Namespace, name: &BucketName) -> Result<BucketInfo> {
        let (ns, name) = (ns.clone(), name.clone());
        self.read(move |tx| {
            let now = now_ms(tx)?;
            Ok(load_existing(tx, &ns, &name)?.info(now))
        })
        .await
    }

    async fn list(&self, ns: &Namespace) -> Result<Vec<BucketInfo>> {
        let ns = ns.to_string();
        self.read(move |tx| {
            let now = now_ms(tx)?;
            let mut stmt = tx
                .prepare_cached(&format!(
                    "SELECT {BUCKET_COLUMNS} FROM limit_buckets WHERE namespace = ?1 ORDER BY name"
                ))
                .map_err(internal)?;
            let rows = stmt
                .query_map(params![ns], bucket_row)
                .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
                .map_err(internal)?;
            rows.into_iter().map(|row| Ok(row.decode()?.info(now))).collect()
        })
        .await
    }

    async fn add_counters(&self, ns: &Namespace, scope: &str, source: &str, deltas: &[(String, i64)]) -> Result<()> {
        check_counters(scope, source, deltas)?;
        if deltas.is_empty() {
            return Ok(());
        }
        let (ns, scope, source, deltas) = (ns.to_string(), scope.to_string(), source.to_string(), merged(deltas));
        self.write(move |tx| {
            let now: Millis = now_ms(tx)?;
            let mut stmt = tx
                .prepare_cached(
                    "INSERT INTO limit_counters (namespace, scope, source, name, value, updated_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                     ON CONFLICT (namespace, scope, source, name) DO UPDATE SET
                        value = value + excluded.value, updated_at = excluded.updated_at",
                )
                .map_err(internal)?;
            for (name, delta) in &deltas {
                stmt.execute(params![ns, scope, source, name, delta, now])
                    .map_err(internal)?;
            }
            Ok(Outcome::Commit(()))
        })
        .await
    }

    async fn counters(&self, ns: &Namespace, scope_prefix: &str) -> Result<Vec<Counter>> {
        let (ns, prefix) = (ns.to_string(), scope_prefix.to_string());
        self.read(move |tx| {
            let mut stmt = tx
                .prepare_cached(
                    "SELECT scope, name, sum(value), max(updated_at) FROM limit_counters
                     WHERE namespace = ?1 AND substr(scope, 1, length(?2)) = ?2
                     GROUP BY scope, name ORDER BY scope, name",
                )
                .map_err(internal)?;
            stmt.query_map(params![ns, prefix], |r| {
                Ok(Counter {
                    scope: r.get(0)?,
                    name: r.get(1)?,
                    value: r.get(2)?,
                    updated_at: r.get(3)?,
                })
            })
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(internal)
        })
        .await
    }
}

/// This primitive's schema steps (see `crate::schema`). Never edit a shipped step; add one.
pub(super) const MIGRATIONS: &[Migration] = &[
    // 6: rate-limit buckets, their parties' fair-share sub-buckets, and shared counters.
    Migration {
        version: 6,
        sql: r#"
    CREATE TABLE limit_buckets (
        namespace       TEXT NOT NULL,
        name            TEXT NOT NULL,
        rate_amount     INTEGER NOT NULL,
        rate_per_ms     INTEGER NOT NULL,
        burst           INTEGER NOT NULL,
        reserve_percent INTEGER NOT NULL,
        fair            INTEGER NOT NULL,
        tokens          REAL NOT NULL,
        updated_at      INTEGER NOT NULL,
        frozen_until    INTEGER,
        reset_at        INTEGER,
        PRIMARY KEY (namespace, name)
    ) WITHOUT ROWID;
    CREATE TABLE limit_parties (
        namespace  TEXT NOT NULL,
        bucket     TEXT NOT NULL,
        party      TEXT NOT NULL,
        tokens     REAL NOT NULL,
        updated_at INTEGER NOT NULL,
        PRIMARY KEY (namespace, bucket, party)
    ) WITHOUT ROWID;
    CREATE TABLE limit_counters (
        namespace  TEXT NOT NULL,
        scope      TEXT NOT NULL,
        source     TEXT NOT NULL,
        name       TEXT NOT NULL,
        value      INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        PRIMARY KEY (namespace, scope, source, name)
    ) WITHOUT ROWID;
    "#,
    },
];
