//! Rate-limit buckets on PostgreSQL. A take locks the rows of the buckets it names with
//! `SELECT … ORDER BY name FOR UPDATE` — rows are locked in that (byte) order, so two
//! multi-bucket takes never deadlock — then reads the clock and the parties, applies the
//! core's plan and writes every bucket in one statement: `BEGIN`, two round trips,
//! `COMMIT` (a refused take writes nothing).

use arbiter_core::limit::{
    Bucket, BucketInfo, BucketSpec, BucketState, Counter, MAX_FAIR_WINDOW_MS, Observation, PartyState, TakeDecision,
    TakeRequest, check_buckets_and_cost, check_counters, not_found, plan_define, plan_observe, plan_refund, plan_take,
};
use arbiter_core::name::{BucketName, Namespace};
use arbiter_core::{Millis, Result};
use async_trait::async_trait;
use deadpool_postgres::Transaction;
use tokio_postgres::Row;

use super::{NOW_MS, PgStore, execute, now_ms_sql, pg_error, pipeline, query};
use crate::api::LimitStore;
use crate::limit::{BUCKET_COLUMNS, BucketRow, attach_parties, in_order, merged, sorted_names, spec_columns};
use crate::schema::Migration;

fn bucket_row(r: &Row) -> BucketRow {
    BucketRow {
        name: r.get(0),
        rate_amount: r.get(1),
        rate_per_ms: r.get(2),
        burst: r.get(3),
        reserve_percent: r.get(4),
        fair: r.get(5),
        tokens: r.get(6),
        updated_at: r.get(7),
        frozen_until: r.get(8),
        reset_at: r.get(9),
    }
}

/// Locks the rows of `$2` (names, sorted) in namespace `$1`, in name order.
fn lock_sql() -> String {
    format!(
        "SELECT {BUCKET_COLUMNS} FROM limit_buckets WHERE namespace = $1 AND name = ANY($2)
         ORDER BY name COLLATE \"C\" FOR UPDATE"
    )
}

/// Locks the named buckets and reads the clock (after the locks): one round trip. With
/// `parties`, also reads the parties of those buckets.
async fn lock(
    tx: &Transaction<'_>,
    ns: &Namespace,
    names: &[BucketName],
    parties: bool,
) -> Result<(Millis, Vec<Bucket>)> {
    let sorted = sorted_names(names);
    let ns_str = ns.as_str();
    let lock = lock_sql();
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 2] = [&ns_str, &sorted];
    let mut steps: Vec<super::Step<'_>> = vec![(lock.as_str(), &params), (NOW_MS, &[])];
    if parties {
        steps.push((
            "SELECT bucket, party, tokens, updated_at FROM limit_parties WHERE namespace = $1 AND bucket = ANY($2)",
            &params,
        ));
    }
    let rows = pipeline(tx, &steps).await?;
    let now: Millis = rows[1][0].get(0);
    let loaded = rows[0]
        .iter()
        .map(|r| bucket_row(r).decode())
        .collect::<Result<Vec<_>>>()?;
    let mut buckets = in_order(ns, names, loaded)?;
    if parties {
        let found = rows[2]
            .iter()
            .map(|r| {
                (
                    r.get::<_, String>(0),
                    PartyState {
                        party: r.get(1),
                        tokens: r.get(2),
                        updated_at: r.get(3),
                    },
                )
            })
            .collect();
        attach_parties(&mut buckets, found);
    }
    Ok((now, buckets))
}

/// An insert of a bucket's spec and state: `$1`–`$11`.
macro_rules! insert_bucket {
    () => {
        "INSERT INTO limit_buckets (namespace, name, rate_amount, rate_per_ms, burst, reserve_percent, fair,
                                    tokens, updated_at, frozen_until, reset_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
    };
}

/// Writes a bucket's spec and state (creating it).
const UPSERT: &str = concat!(
    insert_bucket!(),
    " ON CONFLICT (namespace, name) DO UPDATE SET
        rate_amount = excluded.rate_amount, rate_per_ms = excluded.rate_per_ms, burst = excluded.burst,
        reserve_percent = excluded.reserve_percent, fair = excluded.fair, tokens = excluded.tokens,
        updated_at = excluded.updated_at, frozen_until = excluded.frozen_until, reset_at = excluded.reset_at"
);

/// Creates a bucket unless one of that name exists or is being created (the insert then
/// waits for that transaction's end).
const INSERT: &str = concat!(insert_bucket!(), " ON CONFLICT (namespace, name) DO NOTHING");

async fn upsert(tx: &Transaction<'_>, ns: &str, name: &str, spec: &BucketSpec, state: &BucketState) -> Result<()> {
    write_bucket(tx, UPSERT, ns, name, spec, state).await.map(drop)
}

/// [`INSERT`]: whether the bucket was created.
async fn insert(tx: &Transaction<'_>, ns: &str, name: &str, spec: &BucketSpec, state: &BucketState) -> Result<bool> {
    Ok(write_bucket(tx, INSERT, ns, name, spec, state).await? == 1)
}

/// Runs `sql` (an insert of a bucket, `$1`–`$11`); the rows it changed.
async fn write_bucket(
    tx: &Transaction<'_>,
    sql: &str,
    ns: &str,
    name: &str,
    spec: &BucketSpec,
    state: &BucketState,
) -> Result<u64> {
    let (amount, per_ms, burst, reserve) = spec_columns(spec);
    execute(
        tx,
        sql,
        &[
            &ns,
            &name,
            &amount,
            &per_ms,
            &burst,
            &reserve,
            &spec.fair,
            &state.tokens,
            &state.updated_at,
            &state.frozen_until,
            &state.reset_at,
        ],
    )
    .await
}

/// Writes the states of several buckets in one statement: `$1` namespace, then arrays of
/// names, tokens, updated_at, frozen_until, reset_at.
const WRITE_STATES: &str = "UPDATE limit_buckets AS b
     SET tokens = u.tokens, updated_at = u.updated_at, frozen_until = u.frozen_until, reset_at = u.reset_at
     FROM unnest($2::text[], $3::float8[], $4::int8[], $5::int8[], $6::int8[])
          AS u(name, tokens, updated_at, frozen_until, reset_at)
     WHERE b.namespace = $1 AND b.name = u.name";

/// The columns of [`WRITE_STATES`] as arrays.
struct States {
    names: Vec<String>,
    tokens: Vec<f64>,
    updated_at: Vec<i64>,
    frozen_until: Vec<Option<i64>>,
    reset_at: Vec<Option<i64>>,
}

impl States {
    fn new<'a>(states: impl Iterator<Item = (&'a BucketName, &'a BucketState)>) -> States {
        let mut out = States {
            names: Vec::new(),
            tokens: Vec::new(),
            updated_at: Vec::new(),
            frozen_until: Vec::new(),
            reset_at: Vec::new(),
        };
        for (name, state) in states {
            out.names.push(name.to_string());
            out.tokens.push(state.tokens);
            out.updated_at.push(state.updated_at);
            out.frozen_until.push(state.frozen_until);
            out.reset_at.push(state.reset_at);
        }
        out
    }
}

#[async_trait]
impl LimitStore for PgStore {
    async fn define(
        &self,
        ns: &Namespace,
        name: &BucketName,
        spec: &BucketSpec,
        if_absent: bool,
    ) -> Result<BucketInfo> {
        spec.check()?;
        let mut client = self.client().await?;
        // Twice at most: a bucket another host creates between our look and our insert is
        // there on the second look (its row is then locked like any existing one's).
        for _ in 0..2 {
            let tx = client.transaction().await.map_err(pg_error)?;
            let (now, existing) = match lock(&tx, ns, std::slice::from_ref(name), false).await {
                Ok((now, mut buckets)) => (now, buckets.pop()),
                Err(e) if e.kind == arbiter_core::ErrorKind::NotFound => (now(&tx).await?, None),
                Err(e) => return Err(e),
            };
            let Some(state) = plan_define(now, existing.as_ref(), spec, if_absent) else {
                return Ok(existing.expect("if_absent leaves an existing bucket").info(now));
            };
            if existing.is_some() {
                upsert(&tx, ns, name, spec, &state).await?;
            } else if !insert(&tx, ns, name, spec, &state).await? {
                // Created meanwhile: an upsert would overwrite it (and refill what was spent).
                tx.rollback().await.map_err(pg_error)?;
                continue;
            }
            tx.commit().await.map_err(pg_error)?;
            return Ok(Bucket {
                name: name.clone(),
                spec: *spec,
                state,
                parties: Vec::new(),
            }
            .info(now));
        }
        Err(arbiter_core::Error::internal(format!(
            "bucket {name:?} was created meanwhile but is not there: the store changed under the define"
        )))
    }

    async fn take(&self, request: &TakeRequest) -> Result<TakeDecision> {
        request.check()?;
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_error)?;
        // The parties are read in the same round trip (none, for buckets that are not fair).
        let (now, buckets) = lock(&tx, &request.namespace, &request.buckets, true).await?;
        let plan = plan_take(now, &buckets, request)?;
        if !plan.decision.granted {
            // Nothing changed: the transaction ends without a write.
            tx.rollback().await.map_err(pg_error)?;
            return Ok(plan.decision);
        }
        let ns = request.namespace.as_str();
        let states = States::new(plan.writes.iter().map(|w| (&w.name, &w.state)));
        let party = request.party_key();
        let (party_buckets, party_tokens): (Vec<String>, Vec<f64>) = plan
            .writes
            .iter()
            .filter_map(|w| w.party.as_ref().map(|p| (w.name.to_string(), p.tokens)))
            .unzip();
        let forget_before = now - MAX_FAIR_WINDOW_MS;
        let write_params: [&(dyn tokio_postgres::types::ToSql + Sync); 6] = [
            &ns,
            &states.names,
            &states.tokens,
            &states.updated_at,
            &states.frozen_until,
            &states.reset_at,
        ];
        let party_params: [&(dyn tokio_postgres::types::ToSql + Sync); 5] =
            [&ns, &party_buckets, &party, &now, &party_tokens];
        let forget_params: [&(dyn tokio_postgres::types::ToSql + Sync); 3] = [&ns, &party_buckets, &forget_before];
        let mut steps: Vec<super::Step<'_>> = vec![(WRITE_STATES, &write_params)];
        if !party_buckets.is_empty() {
            steps.push((
                "INSERT INTO limit_parties (namespace, bucket, party, tokens, updated_at)
                 SELECT $1, u.bucket, $3, u.tokens, $4 FROM unnest($2::text[], $5::float8[]) AS u(bucket, tokens)
                 ON CONFLICT (namespace, bucket, party) DO UPDATE SET
                    tokens = excluded.tokens, updated_at = excluded.updated_at",
                &party_params,
            ));
            // Parties idle longer than any window are forgotten.
            steps.push((
                "DELETE FROM limit_parties WHERE namespace = $1 AND bucket = ANY($2) AND updated_at < $3",
                &forget_params,
            ));
        }
        pipeline(&tx, &steps).await?;
        tx.commit().await.map_err(pg_error)?;
        Ok(plan.decision)
    }

    async fn refund(&self, ns: &Namespace, names: &[BucketName], cost: u64) -> Result<()> {
        check_buckets_and_cost("refund", names, cost)?;
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_error)?;
        let (now, buckets) = lock(&tx, ns, names, false).await?;
        let refunded: Vec<(BucketName, BucketState)> = buckets
            .iter()
            .map(|b| (b.name.clone(), plan_refund(now, &b.spec, &b.state, cost)))
            .collect();
        let states = States::new(refunded.iter().map(|(name, state)| (name, state)));
        query(
            &tx,
            WRITE_STATES,
            &[
                &ns.as_str(),
                &states.names,
                &states.tokens,
                &states.updated_at,
                &states.frozen_until,
                &states.reset_at,
            ],
        )
        .await?;
        tx.commit().await.map_err(pg_error)
    }

    async fn observe(&self, ns: &Namespace, name: &BucketName, observation: &Observation) -> Result<BucketInfo> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_error)?;
        let (now, mut buckets) = lock(&tx, ns, std::slice::from_ref(name), false).await?;
        let bucket = buckets.pop().ok_or_else(|| not_found(ns, name))?;
        let (spec, state) = plan_observe(now, &bucket.spec, &bucket.state, observation);
        upsert(&tx, ns, name, &spec, &state).await?;
        tx.commit().await.map_err(pg_error)?;
        Ok(Bucket { spec, state, ..bucket }.info(now))
    }

    async fn show(&self, ns: &Namespace, name: &BucketName) -> Result<BucketInfo> {
        let rows = self
            .single(
                &format!(
                    "SELECT {BUCKET_COLUMNS}, {} FROM limit_buckets WHERE namespace = $1 AND name = $2",
                    now_ms_sql!()
                ),
                &[&ns.as_str(), &name.as_str()],
            )
            .await?;
        let row = rows.first().ok_or_else(|| not_found(ns, name))?;
        Ok(bucket_row(row).decode()?.info(row.get(10)))
    }

    async fn list(&self, ns: &Namespace) -> Result<Vec<BucketInfo>> {
        let rows = self
            .single(
                &format!(
                    "SELECT {BUCKET_COLUMNS}, {} FROM limit_buckets WHERE namespace = $1 ORDER BY name COLLATE \"C\"",
                    now_ms_sql!()
                ),
                &[&ns.as_str()],
            )
            .await?;
        rows.iter()
            .map(|row| Ok(bucket_row(row).decode()?.info(row.get(10))))
            .collect()
    }

    async fn add_counters(&self, ns: &Namespace, scope: &str, source: &str, deltas: &[(String, i64)]) -> Result<()> {
        check_counters(scope, source, deltas)?;
        if deltas.is_empty() {
            return Ok(());
        }
        // Each name once, in name order: concurrent adds of one source lock rows in the
        // same order.
        let (names, values): (Vec<String>, Vec<i64>) = merged(deltas).into_iter().unzip();
        self.single(
            concat!(
                "INSERT INTO limit_counters (namespace, scope, source, name, value, updated_at)
                 SELECT $1, $2, $3, u.name, u.value, ",
                now_ms_sql!(),
                " FROM unnest($4::text[], $5::int8[]) WITH ORDINALITY AS u(name, value, i) ORDER BY u.i
                 ON CONFLICT (namespace, scope, source, name) DO UPDATE SET
                    value = limit_counters.value + excluded.value, updated_at = excluded.updated_at"
            ),
            &[&ns.as_str(), &scope, &source, &names, &values],
        )
        .await
        .map(drop)
    }

    async fn counters(&self, ns: &Namespace, scope_prefix: &str) -> Result<Vec<Counter>> {
        let rows = self
            .single(
                "SELECT scope, name, sum(value)::bigint, max(updated_at) FROM limit_counters
                 WHERE namespace = $1 AND starts_with(scope, $2)
                 GROUP BY scope, name ORDER BY scope COLLATE \"C\", name COLLATE \"C\"",
                &[&ns.as_str(), &scope_prefix],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| Counter {
                scope: r.get(0),
                name: r.get(1),
                value: r.get(2),
                updated_at: r.get(3),
            })
            .collect())
    }
}

/// The store's clock, on its own.
async fn now(tx: &Transaction<'_>) -> Result<Millis> {
    super::now_ms(tx).await
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
        rate_amount     BIGINT NOT NULL,
        rate_per_ms     BIGINT NOT NULL,
        burst           BIGINT NOT NULL,
        reserve_percent BIGINT NOT NULL,
        fair            BOOLEAN NOT NULL,
        tokens          DOUBLE PRECISION NOT NULL,
        updated_at      BIGINT NOT NULL,
        frozen_until    BIGINT,
        reset_at        BIGINT,
        PRIMARY KEY (namespace, name)
    );
    CREATE TABLE limit_parties (
        namespace  TEXT NOT NULL,
        bucket     TEXT NOT NULL,
        party      TEXT NOT NULL,
        tokens     DOUBLE PRECISION NOT NULL,
        updated_at BIGINT NOT NULL,
        PRIMARY KEY (namespace, bucket, party)
    );
    CREATE TABLE limit_counters (
        namespace  TEXT NOT NULL,
        scope      TEXT NOT NULL,
        source     TEXT NOT NULL,
        name       TEXT NOT NULL,
        value      BIGINT NOT NULL,
        updated_at BIGINT NOT NULL,
        PRIMARY KEY (namespace, scope, source, name)
    );
    "#,
    },
];
