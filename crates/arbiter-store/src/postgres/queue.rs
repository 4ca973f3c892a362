//! Work items on PostgreSQL. Every change of an item locks its row and reads the clock after
//! the lock, in one transaction whose statements go in [`pipeline`]s (one round trip each).
//! Claims never wait for each other: they lock with `FOR UPDATE SKIP LOCKED`, so concurrent
//! claimers take different items. A claim is usually one statement ([`CLAIM`], as
//! graphile-worker and River take jobs); when the queue has run-out claims it is a
//! transaction that ends them first (their rules — ready again or dead — are the core's),
//! skipping rows another claimer is ending. `done` is one statement too (the token checked
//! against the row as it is when locked, like a lease release); the other changes lock the
//! row (`FOR UPDATE`), decide in Rust and write. A claim that finds nothing and ends
//! nothing commits nothing and wakes nobody.

use std::time::Duration;

use arbiter_core::name::{Capability, Namespace, QueueName};
use arbiter_core::queue::{
    Claim, ClaimOutcome, ClaimRequest, Claimed, FailRequest, HostRecord, Item, ItemInfo, ItemState, NewItem, NotBefore,
    Pushed, QueueStats, stale_token,
};
use arbiter_core::{Error, Millis, Result};
use async_trait::async_trait;
use deadpool_postgres::Transaction;
use tokio_postgres::Row;
use tokio_postgres::types::{FromSql, ToSql};

use super::{NOTIFY, NOW_MS, PgStore, now_ms_sql, pg_error, pipeline};
use crate::QueueStore;
use crate::api::Topic;
use crate::queue::{
    ATTEMPT_COLUMNS, AttemptRow, EXPIRE_BATCH, EXPIRED, Expired, ItemRow, StoredCaps, after_failure, caps_list,
    check_claim, claimed_by, item_columns, not_found, not_retryable, stats_of,
};
use crate::schema::Migration;
use crate::sql::{encode_holder, ms};

/// Column `i` of `row`; a value of another type (or a NULL where none may be) is a
/// corrupted store, never a panic.
fn col<'a, T: FromSql<'a>>(row: &'a Row, i: usize) -> Result<T> {
    row.try_get(i)
        .map_err(|e| Error::internal(format!("corrupted store: column {i} of a queue row: {e}")))
}

fn item_from_row(namespace: &Namespace, row: &Row) -> Result<Item> {
    item_at(namespace, row, 0)
}

/// The item whose [`item_columns!`] start at column `at` of `row`.
fn item_at(namespace: &Namespace, row: &Row, at: usize) -> Result<Item> {
    ItemRow {
        queue: col(row, at)?,
        id: col(row, at + 1)?,
        state: col(row, at + 2)?,
        priority: col(row, at + 3)?,
        requires: StoredCaps::List(col(row, at + 4)?),
        key: col(row, at + 5)?,
        body: col(row, at + 6)?,
        attempt: col(row, at + 7)?,
        max_attempts: col(row, at + 8)?,
        last_token: col(row, at + 9)?,
        holder: col(row, at + 10)?,
        expires_at: col(row, at + 11)?,
        not_before: col(row, at + 12)?,
        created_at: col(row, at + 13)?,
        updated_at: col(row, at + 14)?,
        result: col(row, at + 15)?,
        last_error: col(row, at + 16)?,
    }
    .decode(namespace)
}

fn items(namespace: &Namespace, rows: &[Row]) -> Result<Vec<Item>> {
    rows.iter().map(|row| item_from_row(namespace, row)).collect()
}

/// The item `id` of the namespace (`$1`, `$2`), locked.
const LOCK_ITEM: &str = concat!(
    "SELECT ",
    item_columns!(),
    " FROM queue_items WHERE namespace = $1 AND id = $2 FOR UPDATE"
);

/// The queue's run-out claims (`$1`, `$2`), oldest first, at most `$3`; rows another
/// transaction holds are skipped (it is ending or renewing them).
const EXPIRED_CLAIMS: &str = concat!(
    "SELECT id, attempt, max_attempts, last_token FROM queue_items
     WHERE namespace = $1 AND queue = $2 AND state = 'claimed' AND expires_at <= ",
    now_ms_sql!(),
    " ORDER BY expires_at LIMIT $3 FOR UPDATE SKIP LOCKED"
);

/// Ends the attempts (`$2` item ids, `$3` tokens) of run-out claims at `$1`.
const END_EXPIRED_ATTEMPTS: &str = "UPDATE queue_attempts a SET ended_at = $1, outcome = 'expired', error = $4
     FROM unnest($2::bigint[], $3::bigint[]) AS e(item_id, token)
     WHERE a.item_id = e.item_id AND a.token = e.token";

/// Items `$1` whose claim ran out become `$3` (ready or dead) at `$2`.
const END_EXPIRED_ITEMS: &str = "UPDATE queue_items SET state = $3, not_before = $2, holder = NULL, expires_at = NULL,
            last_error = $4, updated_at = $2
     WHERE id = ANY($1)";

/// One claim in one statement (the way graphile-worker and River take jobs): the best ready
/// item of a queue (`$1`, `$2`) that capabilities `$3` allow, locked skipping rows other
/// claimers hold, becomes claimed by holder `$4` for `$5` ms with its next attempt and token,
/// and its attempt row is added. With `$6`, nothing is taken while the queue has run-out
/// claims (they are ended first, in a transaction: see `claim_tx`). One row: the clock,
/// whether run-out claims stopped it, and when nothing was taken the earliest delayed item
/// the caller could take and the earliest claim to run out; then the claimed item's
/// [`item_columns!`] (NULL when none).
const CLAIM: &str = concat!(
    "WITH clock AS MATERIALIZED (SELECT ",
    now_ms_sql!(),
    " AS now),
     run_out AS MATERIALIZED (
       SELECT $6::bool AND EXISTS (
         SELECT 1 FROM queue_items
         WHERE namespace = $1 AND queue = $2 AND state = 'claimed' AND expires_at <= (SELECT now FROM clock)
       ) AS stop),
     picked AS (
       SELECT id AS picked_id FROM queue_items
       WHERE NOT (SELECT stop FROM run_out) AND namespace = $1 AND queue = $2 AND state = 'ready'
         AND not_before <= (SELECT now FROM clock) AND requires <@ $3::text[]
       ORDER BY priority DESC, id LIMIT 1 FOR UPDATE SKIP LOCKED),
     claimed AS (
       UPDATE queue_items SET state = 'claimed', attempt = attempt + 1, last_token = last_token + 1, holder = $4,
              expires_at = clock.now + $5::bigint, updated_at = clock.now
       FROM picked, clock WHERE id = picked_id
       RETURNING ",
    item_columns!(),
    "),
     attempt AS (
       INSERT INTO queue_attempts (item_id, token, namespace, queue, attempt, holder, claimed_at)
       SELECT id, last_token, $1, queue, attempt, holder, updated_at FROM claimed)
     SELECT clock.now, run_out.stop,
       CASE WHEN claimed.id IS NULL THEN (
         SELECT not_before FROM queue_items
         WHERE namespace = $1 AND queue = $2 AND state = 'ready' AND not_before > clock.now
           AND requires <@ $3::text[]
         ORDER BY not_before LIMIT 1) END,
       CASE WHEN claimed.id IS NULL THEN (
         SELECT expires_at FROM queue_items
         WHERE namespace = $1 AND queue = $2 AND state = 'claimed' ORDER BY expires_at LIMIT 1) END,
       claimed.*
     FROM clock CROSS JOIN run_out LEFT JOIN claimed ON true"
);

/// Where [`CLAIM`]'s item columns start.
const CLAIMED_AT: usize = 4;

/// What one [`CLAIM`] did: the clock, whether run-out claims stopped it, and the claim or
/// when to look again.
struct ClaimRow {
    now: Millis,
    run_out: bool,
    claim: Option<Claim>,
    next_at: Option<Millis>,
}

fn claim_row(request: &ClaimRequest, row: &Row) -> Result<ClaimRow> {
    let claimed: Option<i64> = col(row, CLAIMED_AT + 1)?;
    let claim = match claimed {
        Some(_) => Some(claimed_by(item_at(&request.namespace, row, CLAIMED_AT)?, request)?),
        None => None,
    };
    let (delayed, expiring): (Option<Millis>, Option<Millis>) = (col(row, 2)?, col(row, 3)?);
    Ok(ClaimRow {
        now: col(row, 0)?,
        run_out: col(row, 1)?,
        claim,
        next_at: delayed.into_iter().chain(expiring).min(),
    })
}

/// Adds an item (`$1` namespace, `$2` queue, `$3` priority, `$4` requires, `$5` key, `$6`
/// body, `$7` max attempts, ready at `$8`, or `$9` ms from now) unless its key is in the
/// queue, and wakes waiters (`$10`, `$11`: [`NOTIFY`]'s) if it did.
const PUSH: &str = concat!(
    "WITH clock AS (SELECT ",
    now_ms_sql!(),
    " AS now),
     inserted AS (
       INSERT INTO queue_items (namespace, queue, state, priority, requires, key, body, attempt, max_attempts,
                                last_token, not_before, created_at, updated_at, alerted)
       SELECT $1, $2, 'ready', $3, $4, $5, $6, 0, $7, 0, coalesce($8::bigint, clock.now + $9::bigint),
              clock.now, clock.now, false
       FROM clock
       ON CONFLICT (namespace, queue, key) DO NOTHING
       RETURNING id)
     SELECT id, pg_notify($10, $11) FROM inserted"
);

/// Ends the live claim of item `$2` (namespace `$1`) whose token is `$3` with success
/// (result `$4`). The token is checked against the row as it is when locked, with the
/// clock read then (a concurrent change is waited for and the condition checked again on
/// what it left). No row: the token does not hold a live claim. It wakes nobody itself
/// (see [`PgStore::wake_after`]).
const DONE: &str = concat!(
    "WITH done AS (
       UPDATE queue_items SET state = 'done', result = $4, holder = NULL, expires_at = NULL, updated_at = ",
    now_ms_sql!(),
    " WHERE namespace = $1 AND id = $2 AND state = 'claimed' AND last_token = $3 AND expires_at > ",
    now_ms_sql!(),
    " RETURNING ",
    item_columns!(),
    "),
     ended AS (
       UPDATE queue_attempts SET ended_at = done.updated_at, outcome = 'done'
       FROM done WHERE item_id = done.id AND token = $3)
     SELECT done.* FROM done"
);

/// The item `$2` of namespace `$1`, then the clock (column [`ITEM_END`]).
const ITEM_NOW: &str = concat!(
    "SELECT ",
    item_columns!(),
    ", ",
    now_ms_sql!(),
    " FROM queue_items WHERE namespace = $1 AND id = $2"
);

/// Where the clock is in [`ITEM_NOW`]'s row.
const ITEM_END: usize = 17;

fn expired_from_row(row: &Row) -> Result<Expired> {
    Ok(Expired {
        id: col(row, 0)?,
        attempt: col(row, 1)?,
        max_attempts: col(row, 2)?,
        last_token: col(row, 3)?,
    })
}

/// [`CLAIM`]'s parameters from a request: the capabilities, the holder, the lease in ms.
fn claim_args(request: &ClaimRequest) -> (Vec<String>, String, i64) {
    (
        caps_list(&request.capabilities),
        encode_holder(&request.holder),
        ms(request.lease),
    )
}

/// The queue's NOTIFY channel, as a statement parameter.
static CHANNEL: std::sync::LazyLock<&'static str> = std::sync::LazyLock::new(|| Topic::Queue.channel());

impl PgStore {
    /// The parameters of [`NOTIFY`] for the queue's topic.
    fn notify_args(&self) -> [&(dyn ToSql + Sync); 2] {
        [&*CHANNEL, &self.schema]
    }

    /// A claim when the queue has run-out claims: end them (skipping rows another claimer
    /// is ending), then [`CLAIM`], in one transaction. Returns what to answer and whether to
    /// commit.
    async fn claim_tx(&self, tx: &Transaction<'_>, request: &ClaimRequest) -> Result<(Claimed, bool)> {
        let (ns, queue) = (request.namespace.as_str(), request.queue.as_str());
        // The run-out claims, locked; then the clock (after those locks, so every one of
        // them ran out by it).
        let rows = pipeline(tx, &[(EXPIRED_CLAIMS, &[&ns, &queue, &EXPIRE_BATCH]), (NOW_MS, &[])]).await?;
        let now: Millis = col(&rows[1][0], 0)?;
        let expired = rows[0].iter().map(expired_from_row).collect::<Result<Vec<_>>>()?;
        let (mut ready, mut dead) = (vec![], vec![]);
        for item in &expired {
            if item.dies()? { &mut dead } else { &mut ready }.push(item.id);
        }
        let newly_dead = u32::try_from(dead.len()).unwrap_or(u32::MAX);
        let ids: Vec<i64> = expired.iter().map(|item| item.id).collect();
        let tokens: Vec<i64> = expired.iter().map(|item| item.last_token).collect();
        // End them (and say so), then claim: one round trip.
        let end_attempts: [&(dyn ToSql + Sync); 4] = [&now, &ids, &tokens, &EXPIRED];
        let (ready_state, dead_state) = (ItemState::Ready.as_str(), ItemState::Dead.as_str());
        let end_ready: [&(dyn ToSql + Sync); 4] = [&ready, &now, &ready_state, &EXPIRED];
        let end_dead: [&(dyn ToSql + Sync); 4] = [&dead, &now, &dead_state, &EXPIRED];
        let notify = self.notify_args();
        let (caps, holder, lease_ms) = claim_args(request);
        let claim: [&(dyn ToSql + Sync); 6] = [&ns, &queue, &caps, &holder, &lease_ms, &false];
        let mut steps: Vec<(&str, &[&(dyn ToSql + Sync)])> = vec![];
        if !expired.is_empty() {
            steps.push((END_EXPIRED_ATTEMPTS, &end_attempts));
            steps.push((END_EXPIRED_ITEMS, &end_ready));
            steps.push((END_EXPIRED_ITEMS, &end_dead));
            steps.push((NOTIFY, &notify));
        }
        steps.push((CLAIM, &claim));
        let rows = pipeline(tx, &steps).await?;
        let row = claim_row(request, &rows[steps.len() - 1][0])?;
        let commit = !expired.is_empty() || row.claim.is_some();
        let outcome = match row.claim {
            Some(claim) => ClaimOutcome::Claimed(claim),
            None => ClaimOutcome::Empty {
                now: row.now,
                next_at: row.next_at,
            },
        };
        Ok((Claimed { outcome, newly_dead }, commit))
    }

    /// Locks the item, checks that `token` holds its live claim, applies `end` (which
    /// changes the item and names the statements that write it), writes and wakes waiters.
    async fn end_claim(
        &self,
        namespace: &Namespace,
        id: i64,
        token: i64,
        end: impl FnOnce(&mut Item, Millis) -> Ending,
    ) -> Result<Item> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_error)?;
        let (mut item, now) = lock(&tx, namespace, id).await?;
        check_claim(&item, token, now)?;
        let ending = end(&mut item, now);
        let holder = item.holder.as_ref().map(encode_holder);
        let state = item.state.as_str();
        let update: [&(dyn ToSql + Sync); 8] = [
            &id,
            &state,
            &item.expires_at,
            &holder,
            &item.not_before,
            &item.result,
            &item.last_error,
            &now,
        ];
        let attempt: [&(dyn ToSql + Sync); 5] = [&id, &token, &now, &ending.outcome, &ending.error];
        let notify = self.notify_args();
        let mut steps: Vec<(&str, &[&(dyn ToSql + Sync)])> = vec![(
            "UPDATE queue_items SET state = $2, expires_at = $3, holder = $4, not_before = $5, result = $6,
                    last_error = $7, updated_at = $8
             WHERE id = $1",
            &update,
        )];
        if ending.outcome.is_some() {
            steps.push((
                "UPDATE queue_attempts SET ended_at = $3, outcome = $4, error = $5 WHERE item_id = $1 AND token = $2",
                &attempt,
            ));
            steps.push((NOTIFY, &notify));
        }
        pipeline(&tx, &steps).await?;
        tx.commit().await.map_err(pg_error)?;
        Ok(item)
    }

    /// Locks the item, lets `change` decide (`None`: nothing to write), writes it and wakes
    /// waiters.
    async fn change_item(
        &self,
        namespace: &Namespace,
        lock_sql: &str,
        args: &[&(dyn ToSql + Sync)],
        change: impl FnOnce(&mut Item, Millis) -> Result<bool>,
    ) -> Result<Option<Item>> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_error)?;
        let rows = pipeline(&tx, &[(lock_sql, args), (NOW_MS, &[])]).await?;
        let now: Millis = col(&rows[1][0], 0)?;
        let Some(mut item) = rows[0].first().map(|row| item_from_row(namespace, row)).transpose()? else {
            return Ok(None);
        };
        if !change(&mut item, now)? {
            tx.rollback().await.map_err(pg_error)?;
            return Ok(Some(item));
        }
        let state = item.state.as_str();
        let attempt = i64::from(item.attempt);
        let notify = self.notify_args();
        pipeline(
            &tx,
            &[
                (
                    "UPDATE queue_items SET state = $2, attempt = $3, not_before = $4, holder = NULL,
                            expires_at = NULL, alerted = alerted AND $2 = 'dead', updated_at = $5
                     WHERE id = $1",
                    &[&item.id, &state, &attempt, &item.not_before, &now],
                ),
                (NOTIFY, &notify),
            ],
        )
        .await?;
        tx.commit().await.map_err(pg_error)?;
        Ok(Some(item))
    }
}

/// What ending a claim writes to its attempt row: `None` writes none (a heartbeat).
struct Ending {
    outcome: Option<&'static str>,
    error: Option<String>,
}

/// The item `id`, locked, and the clock read after the lock; `NotFound` when there is none.
async fn lock(tx: &Transaction<'_>, namespace: &Namespace, id: i64) -> Result<(Item, Millis)> {
    let ns = namespace.as_str();
    let rows = pipeline(tx, &[(LOCK_ITEM, &[&ns, &id]), (NOW_MS, &[])]).await?;
    let now: Millis = col(&rows[1][0], 0)?;
    let item = rows[0]
        .first()
        .map(|row| item_from_row(namespace, row))
        .transpose()?
        .ok_or_else(|| not_found(namespace, id))?;
    Ok((item, now))
}

#[async_trait]
impl QueueStore for PgStore {
    async fn push(&self, item: &NewItem) -> Result<Pushed> {
        let (ns, queue) = (item.namespace.as_str(), item.queue.as_str());
        let (at, after): (Option<Millis>, Millis) = match item.not_before {
            None => (None, 0),
            Some(NotBefore::After(delay)) => (None, ms(delay)),
            Some(NotBefore::At(at)) => (Some(at), 0),
        };
        let (priority, max_attempts) = (i64::from(item.priority), i64::from(item.max_attempts));
        let requires = caps_list(&item.requires);
        let [channel, schema] = self.notify_args();
        let insert: [&(dyn ToSql + Sync); 11] = [
            &ns,
            &queue,
            &priority,
            &requires,
            &item.key,
            &item.body,
            &max_attempts,
            &at,
            &after,
            channel,
            schema,
        ];
        // Without a key nothing conflicts: one statement, committed on its own.
        if item.key.is_none() {
            let rows = self.single(PUSH, &insert).await?;
            let row = rows
                .first()
                .ok_or_else(|| Error::internal("a push without a key inserted nothing"))?;
            return Ok(Pushed {
                id: col(row, 0)?,
                created: true,
                state: ItemState::Ready,
            });
        }
        // Inserted, or (only a key conflicts) not: then the first push's item, read after
        // the insert waited for any concurrent push of the key to end.
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_error)?;
        let rows = pipeline(
            &tx,
            &[
                (PUSH, &insert),
                (
                    "SELECT id, state FROM queue_items WHERE namespace = $1 AND queue = $2 AND key = $3",
                    &[&ns, &queue, &item.key],
                ),
            ],
        )
        .await?;
        let pushed = match (rows[0].first(), rows[1].first()) {
            (Some(row), _) => Pushed {
                id: col(row, 0)?,
                created: true,
                state: ItemState::Ready,
            },
            (None, Some(row)) => {
                let state: String = col(row, 1)?;
                Pushed {
                    id: col(row, 0)?,
                    created: false,
                    state: state
                        .parse()
                        .map_err(|_| Error::internal(format!("corrupted store: unknown item state {state:?}")))?,
                }
            }
            (None, None) => return Err(Error::internal("a push neither inserted its item nor found its key")),
        };
        tx.commit().await.map_err(pg_error)?;
        Ok(pushed)
    }

    async fn claim(&self, request: &ClaimRequest) -> Result<Claimed> {
        // Usually one statement, committed on its own; a queue with run-out claims takes
        // the transaction that ends them first.
        let (ns, queue) = (request.namespace.as_str(), request.queue.as_str());
        let (caps, holder, lease_ms) = claim_args(request);
        let rows = self
            .single(CLAIM, &[&ns, &queue, &caps, &holder, &lease_ms, &true])
            .await?;
        let row = rows
            .first()
            .ok_or_else(|| Error::internal("a claim statement returned no row"))
            .and_then(|row| claim_row(request, row))?;
        if !row.run_out {
            let outcome = match row.claim {
                Some(claim) => ClaimOutcome::Claimed(claim),
                None => ClaimOutcome::Empty {
                    now: row.now,
                    next_at: row.next_at,
                },
            };
            return Ok(Claimed { outcome, newly_dead: 0 });
        }
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_error)?;
        let (claimed, commit) = self.claim_tx(&tx, request).await?;
        if commit {
            tx.commit().await.map_err(pg_error)?;
        } else {
            tx.rollback().await.map_err(pg_error)?;
        }
        Ok(claimed)
    }

    async fn heartbeat(
        &self,
        namespace: &Namespace,
        id: i64,
        token: i64,
        lease: Duration,
        pgid: Option<u32>,
    ) -> Result<Item> {
        self.end_claim(namespace, id, token, |item, now| {
            item.expires_at = Some(now.saturating_add(ms(lease)));
            item.updated_at = now;
            if let (Some(pgid), Some(holder)) = (pgid, item.holder.as_mut()) {
                holder.pgid = Some(pgid);
            }
            Ending {
                outcome: None,
                error: None,
            }
        })
        .await
    }

    async fn done(&self, namespace: &Namespace, id: i64, token: i64, result: Option<&str>) -> Result<Item> {
        // One statement, committed on its own. Nothing changed: say why.
        let ns = namespace.as_str();
        let rows = self.single(DONE, &[&ns, &id, &token, &result]).await?;
        if let Some(row) = rows.first() {
            // Who waits for a done: a drain (`claim_or_idle`), to see the queue idle —
            // nothing was made ready. Woken after the commit, so that dones do not commit
            // one at a time behind PostgreSQL's notify lock; a wake lost to a crash (or the call dropped) right
            // here delays a drain until the next claim runs out, never an item.
            self.wake_after(Topic::Queue).await;
            return item_from_row(namespace, row);
        }
        let rows = self.single(ITEM_NOW, &[&ns, &id]).await?;
        let row = rows.first().ok_or_else(|| not_found(namespace, id))?;
        let (item, now) = (item_from_row(namespace, row)?, col(row, ITEM_END)?);
        check_claim(&item, token, now)?;
        // Live now, so it was not when the statement looked: it ran out, and was claimed
        // again with this very token — which cannot be, tokens only grow.
        Err(stale_token(id, token, "the claim changed while it was checked"))
    }

    async fn fail(&self, request: &FailRequest) -> Result<Item> {
        self.end_claim(&request.namespace, request.id, request.token, |item, now| {
            let (state, not_before) = after_failure(item, request.retry_in, now);
            item.state = state;
            item.not_before = not_before;
            item.holder = None;
            item.expires_at = None;
            item.updated_at = now;
            item.last_error = Some(request.reason.clone());
            Ending {
                outcome: Some("failed"),
                error: Some(request.reason.clone()),
            }
        })
        .await
    }

    async fn retry(&self, namespace: &Namespace, id: i64) -> Result<Item> {
        let ns = namespace.as_str();
        let item = self
            .change_item(namespace, LOCK_ITEM, &[&ns, &id], |item, now| {
                if !matches!(item.state, ItemState::Dead | ItemState::Cancelled) {
                    return Err(not_retryable(item));
                }
                item.state = ItemState::Ready;
                item.attempt = 0;
                item.not_before = now;
                item.holder = None;
                item.expires_at = None;
                item.updated_at = now;
                Ok(true)
            })
            .await?;
        item.ok_or_else(|| not_found(namespace, id))
    }

    async fn cancel(&self, namespace: &Namespace, queue: &QueueName, key: &str) -> Result<Option<Item>> {
        let (ns, queue) = (namespace.as_str(), queue.as_str());
        self.change_item(
            namespace,
            concat!(
                "SELECT ",
                item_columns!(),
                " FROM queue_items WHERE namespace = $1 AND queue = $2 AND key = $3 FOR UPDATE"
            ),
            &[&ns, &queue, &key],
            |item, now| {
                if item.state != ItemState::Ready {
                    return Ok(false);
                }
                item.state = ItemState::Cancelled;
                item.updated_at = now;
                Ok(true)
            },
        )
        .await
    }

    async fn list(
        &self,
        namespace: &Namespace,
        queue: Option<&QueueName>,
        state: Option<ItemState>,
        limit: usize,
    ) -> Result<Vec<Item>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self
            .single(
                concat!(
                    "SELECT ",
                    item_columns!(),
                    " FROM queue_items
                     WHERE namespace = $1 AND ($2::text IS NULL OR queue = $2) AND ($3::text IS NULL OR state = $3)
                     ORDER BY id DESC LIMIT $4"
                ),
                &[
                    &namespace.as_str(),
                    &queue.map(QueueName::as_str),
                    &state.map(ItemState::as_str),
                    &limit,
                ],
            )
            .await?;
        items(namespace, &rows)
    }

    async fn show(&self, namespace: &Namespace, id: i64) -> Result<ItemInfo> {
        let mut client = self.client().await?;
        // One snapshot: the item and its attempts as one commit left them.
        let tx = client
            .build_transaction()
            .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await
            .map_err(pg_error)?;
        let ns = namespace.as_str();
        let attempts_sql = format!("SELECT {ATTEMPT_COLUMNS} FROM queue_attempts WHERE item_id = $1 ORDER BY token");
        let rows = pipeline(
            &tx,
            &[
                (NOW_MS, &[]),
                (
                    concat!(
                        "SELECT ",
                        item_columns!(),
                        " FROM queue_items WHERE namespace = $1 AND id = $2"
                    ),
                    &[&ns, &id],
                ),
                (&attempts_sql, &[&id]),
            ],
        )
        .await?;
        tx.commit().await.map_err(pg_error)?;
        let now: Millis = col(&rows[0][0], 0)?;
        let item = items(namespace, &rows[1])?
            .pop()
            .ok_or_else(|| not_found(namespace, id))?;
        let attempts = rows[2]
            .iter()
            .map(|row| {
                AttemptRow {
                    attempt: col(row, 0)?,
                    token: col(row, 1)?,
                    holder: col(row, 2)?,
                    claimed_at: col(row, 3)?,
                    ended_at: col(row, 4)?,
                    outcome: col(row, 5)?,
                    error: col(row, 6)?,
                }
                .decode()
            })
            .collect::<Result<_>>()?;
        Ok(ItemInfo { item, attempts, now })
    }

    async fn stats(&self, namespace: &Namespace) -> Result<(Millis, Vec<QueueStats>)> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_error)?;
        let ns = namespace.as_str();
        let now = super::now_ms(&tx).await?;
        let minute_ago = now - 60_000;
        let rows = pipeline(
            &tx,
            &[
                (
                    "SELECT queue,
                            count(*) FILTER (WHERE state = 'ready' AND not_before <= $2),
                            count(*) FILTER (WHERE state = 'ready' AND not_before > $2),
                            count(*) FILTER (WHERE state = 'claimed' AND expires_at > $2),
                            count(*) FILTER (WHERE state = 'claimed' AND (expires_at IS NULL OR expires_at <= $2)),
                            count(*) FILTER (WHERE state = 'done'),
                            count(*) FILTER (WHERE state = 'dead'),
                            count(*) FILTER (WHERE state = 'cancelled'),
                            min(greatest(not_before, created_at)) FILTER (WHERE state = 'ready' AND not_before <= $2)
                     FROM queue_items WHERE namespace = $1 GROUP BY queue ORDER BY queue COLLATE \"C\"",
                    &[&ns, &now],
                ),
                (
                    "SELECT queue, count(*) FROM queue_attempts WHERE namespace = $1 AND claimed_at > $2 GROUP BY queue",
                    &[&ns, &minute_ago],
                ),
            ],
        )
        .await?;
        tx.commit().await.map_err(pg_error)?;
        let recent = rows[1]
            .iter()
            .map(|row| Ok((col::<String>(row, 0)?, col::<i64>(row, 1)?)))
            .collect::<Result<std::collections::HashMap<_, _>>>()?;
        let stats = rows[0]
            .iter()
            .map(|row| {
                let queue: String = col(row, 0)?;
                let mut counts = [0i64; 7];
                for (i, count) in counts.iter_mut().enumerate() {
                    *count = col(row, i + 1)?;
                }
                let claims = recent.get(&queue).copied().unwrap_or(0);
                stats_of(queue, counts, col(row, 8)?, claims)
            })
            .collect::<Result<_>>()?;
        Ok((now, stats))
    }

    async fn unalerted_dead(&self, namespace: &Namespace, limit: usize) -> Result<Vec<Item>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self
            .single(
                concat!(
                    "SELECT ",
                    item_columns!(),
                    " FROM queue_items WHERE namespace = $1 AND state = 'dead' AND NOT alerted ORDER BY id LIMIT $2"
                ),
                &[&namespace.as_str(), &limit],
            )
            .await?;
        items(namespace, &rows)
    }

    async fn mark_alerted(&self, namespace: &Namespace, ids: &[i64]) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        // Dead items only: one retried since it was read keeps its next death's alert.
        self.single(
            "UPDATE queue_items SET alerted = true WHERE namespace = $1 AND state = 'dead' AND id = ANY($2)",
            &[&namespace.as_str(), &ids],
        )
        .await
        .map(drop)
    }

    async fn register_host(&self, namespace: &Namespace, host: &str, capabilities: &[Capability]) -> Result<()> {
        self.single(
            concat!(
                "INSERT INTO queue_hosts (namespace, host, capabilities, last_seen) VALUES ($1, $2, $3, ",
                now_ms_sql!(),
                ") ON CONFLICT (namespace, host) DO UPDATE SET
                    capabilities = excluded.capabilities, last_seen = excluded.last_seen"
            ),
            &[&namespace.as_str(), &host, &caps_list(capabilities)],
        )
        .await
        .map(drop)
    }

    async fn hosts(&self, namespace: &Namespace) -> Result<(Millis, Vec<HostRecord>)> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_error)?;
        let ns = namespace.as_str();
        let rows = pipeline(
            &tx,
            &[
                (NOW_MS, &[]),
                (
                    "SELECT host, capabilities, last_seen FROM queue_hosts WHERE namespace = $1
                     ORDER BY host COLLATE \"C\"",
                    &[&ns],
                ),
            ],
        )
        .await?;
        tx.commit().await.map_err(pg_error)?;
        let now: Millis = col(&rows[0][0], 0)?;
        let hosts = rows[1]
            .iter()
            .map(|row| {
                Ok(HostRecord {
                    host: col(row, 0)?,
                    capabilities: StoredCaps::List(col(row, 1)?).decode()?,
                    last_seen: col(row, 2)?,
                })
            })
            .collect::<Result<_>>()?;
        Ok((now, hosts))
    }
}

/// This primitive's schema steps (see `crate::schema`). Never edit a shipped step; add one.
pub(super) const MIGRATIONS: &[Migration] = &[
    // 8: items (ids global and never reused; a claim is `state = 'claimed'` with its token
    // and expiry on the row), every claim of an item, and the hosts' capabilities. The
    // partial indexes hold only what claims look at: ready items in claim order and by
    // `not_before`, claims by expiry, dead items not yet alerted.
    Migration {
        version: 8,
        sql: r#"
    CREATE TABLE queue_items (
        id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        namespace    TEXT NOT NULL,
        queue        TEXT NOT NULL,
        state        TEXT NOT NULL,
        priority     BIGINT NOT NULL,
        requires     TEXT[] NOT NULL,
        key          TEXT,
        body         TEXT NOT NULL,
        attempt      BIGINT NOT NULL,
        max_attempts BIGINT NOT NULL,
        last_token   BIGINT NOT NULL,
        holder       TEXT,
        expires_at   BIGINT,
        not_before   BIGINT NOT NULL,
        created_at   BIGINT NOT NULL,
        updated_at   BIGINT NOT NULL,
        result       TEXT,
        last_error   TEXT,
        alerted      BOOLEAN NOT NULL
    );
    CREATE UNIQUE INDEX queue_items_by_key ON queue_items (namespace, queue, key);
    CREATE INDEX queue_items_ready ON queue_items (namespace, queue, priority DESC, id) WHERE state = 'ready';
    CREATE INDEX queue_items_delayed ON queue_items (namespace, queue, not_before) WHERE state = 'ready';
    CREATE INDEX queue_items_claimed ON queue_items (namespace, queue, expires_at) WHERE state = 'claimed';
    CREATE INDEX queue_items_unalerted ON queue_items (namespace, id) WHERE state = 'dead' AND NOT alerted;
    CREATE TABLE queue_attempts (
        item_id    BIGINT NOT NULL,
        token      BIGINT NOT NULL,
        namespace  TEXT NOT NULL,
        queue      TEXT NOT NULL,
        attempt    BIGINT NOT NULL,
        holder     TEXT NOT NULL,
        claimed_at BIGINT NOT NULL,
        ended_at   BIGINT,
        outcome    TEXT,
        error      TEXT,
        PRIMARY KEY (item_id, token)
    );
    CREATE INDEX queue_attempts_recent ON queue_attempts (namespace, claimed_at);
    CREATE TABLE queue_hosts (
        namespace    TEXT NOT NULL,
        host         TEXT NOT NULL,
        capabilities TEXT[] NOT NULL,
        last_seen    BIGINT NOT NULL,
        PRIMARY KEY (namespace, host)
    );
    "#,
    },
];
