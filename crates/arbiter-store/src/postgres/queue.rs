//! Work items on PostgreSQL. Every change of an item locks its row (`FOR UPDATE`) and reads
//! the clock after the lock, in one transaction whose statements go in [`pipeline`]s (one
//! round trip each). Claims never wait for each other: the expiry step and the pick both
//! skip rows another transaction holds (`FOR UPDATE SKIP LOCKED`), so concurrent claimers
//! take different items. A claim is `BEGIN`, three round trips and `COMMIT`; one that finds
//! nothing and ends nothing rolls back (and wakes nobody).

use std::time::Duration;

use arbiter_core::name::{Capability, Namespace, QueueName};
use arbiter_core::queue::{
    ClaimOutcome, ClaimRequest, Claimed, FailRequest, HostRecord, Item, ItemInfo, ItemState, NewItem, NotBefore,
    Pushed, QueueStats,
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
    check_claim, claim_of, item_columns, not_found, not_retryable, stats_of,
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
    ItemRow {
        queue: col(row, 0)?,
        id: col(row, 1)?,
        state: col(row, 2)?,
        priority: col(row, 3)?,
        requires: StoredCaps::List(col(row, 4)?),
        key: col(row, 5)?,
        body: col(row, 6)?,
        attempt: col(row, 7)?,
        max_attempts: col(row, 8)?,
        last_token: col(row, 9)?,
        holder: col(row, 10)?,
        expires_at: col(row, 11)?,
        not_before: col(row, 12)?,
        created_at: col(row, 13)?,
        updated_at: col(row, 14)?,
        result: col(row, 15)?,
        last_error: col(row, 16)?,
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

/// The best ready item of a queue (`$1`, `$2`) that capabilities `$3` allow at `$4`, locked;
/// items other claimers hold are skipped.
const PICK: &str = concat!(
    "SELECT ",
    item_columns!(),
    " FROM queue_items
     WHERE namespace = $1 AND queue = $2 AND state = 'ready' AND not_before <= $4 AND requires <@ $3::text[]
     ORDER BY priority DESC, id LIMIT 1 FOR UPDATE SKIP LOCKED"
);

/// The earliest delayed item the capabilities `$3` allow (after `$4`).
const NEXT_DELAYED: &str = "SELECT not_before FROM queue_items
     WHERE namespace = $1 AND queue = $2 AND state = 'ready' AND not_before > $4 AND requires <@ $3::text[]
     ORDER BY not_before LIMIT 1";

/// The earliest claim of the queue to run out.
const NEXT_EXPIRY: &str = "SELECT expires_at FROM queue_items
     WHERE namespace = $1 AND queue = $2 AND state = 'claimed' ORDER BY expires_at LIMIT 1";

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

fn expired_from_row(row: &Row) -> Result<Expired> {
    Ok(Expired {
        id: col(row, 0)?,
        attempt: col(row, 1)?,
        max_attempts: col(row, 2)?,
        last_token: col(row, 3)?,
    })
}

fn first_time(rows: &[Row]) -> Result<Option<Millis>> {
    rows.first().map(|row| col(row, 0)).transpose()
}

/// The queue's NOTIFY channel, as a statement parameter.
static CHANNEL: std::sync::LazyLock<&'static str> = std::sync::LazyLock::new(|| Topic::Queue.channel());

impl PgStore {
    /// The parameters of [`NOTIFY`] for the queue's topic.
    fn notify_args(&self) -> [&(dyn ToSql + Sync); 2] {
        [&*CHANNEL, &self.schema]
    }

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
        let caps = caps_list(&request.capabilities);
        // End them (and say so), then pick, and when the queue may change without a push:
        // one round trip.
        let end_attempts: [&(dyn ToSql + Sync); 4] = [&now, &ids, &tokens, &EXPIRED];
        let (ready_state, dead_state) = (ItemState::Ready.as_str(), ItemState::Dead.as_str());
        let end_ready: [&(dyn ToSql + Sync); 4] = [&ready, &now, &ready_state, &EXPIRED];
        let end_dead: [&(dyn ToSql + Sync); 4] = [&dead, &now, &dead_state, &EXPIRED];
        let notify = self.notify_args();
        let pick: [&(dyn ToSql + Sync); 4] = [&ns, &queue, &caps, &now];
        let mut steps: Vec<(&str, &[&(dyn ToSql + Sync)])> = vec![];
        if !expired.is_empty() {
            steps.push((END_EXPIRED_ATTEMPTS, &end_attempts));
            steps.push((END_EXPIRED_ITEMS, &end_ready));
            steps.push((END_EXPIRED_ITEMS, &end_dead));
            steps.push((NOTIFY, &notify));
        }
        let first = steps.len();
        steps.push((PICK, &pick));
        steps.push((NEXT_DELAYED, &pick));
        steps.push((NEXT_EXPIRY, &pick[..2]));
        let rows = pipeline(tx, &steps).await?;
        let ended = !expired.is_empty();
        let Some(item) = rows[first]
            .first()
            .map(|row| item_from_row(&request.namespace, row))
            .transpose()?
        else {
            let next_at = first_time(&rows[first + 1])?
                .into_iter()
                .chain(first_time(&rows[first + 2])?)
                .min();
            let outcome = ClaimOutcome::Empty { now, next_at };
            return Ok((Claimed { outcome, newly_dead }, ended));
        };
        let claim = claim_of(item, request, now);
        let holder = encode_holder(&claim.holder);
        let attempt = i64::from(claim.attempt);
        pipeline(
            tx,
            &[
                (
                    "UPDATE queue_items SET state = 'claimed', attempt = $2, last_token = $3, holder = $4,
                            expires_at = $5, updated_at = $6
                     WHERE id = $1",
                    &[&claim.id, &attempt, &claim.token, &holder, &claim.expires_at, &now],
                ),
                (
                    "INSERT INTO queue_attempts (item_id, token, namespace, queue, attempt, holder, claimed_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                    &[&claim.id, &claim.token, &ns, &queue, &attempt, &holder, &now],
                ),
            ],
        )
        .await?;
        let outcome = ClaimOutcome::Claimed(claim);
        Ok((Claimed { outcome, newly_dead }, true))
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
        self.end_claim(namespace, id, token, |item, now| {
            item.state = ItemState::Done;
            item.result = result.map(String::from);
            item.holder = None;
            item.expires_at = None;
            item.updated_at = now;
            Ending {
                outcome: Some("done"),
                error: None,
            }
        })
        .await
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
        let tx = client.transaction().await.map_err(pg_error)?;
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
