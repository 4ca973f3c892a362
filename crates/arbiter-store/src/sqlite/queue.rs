//! Work items on SQLite. Every change is one `BEGIN IMMEDIATE` transaction (the write lock
//! is the database's, so claims of every process take turns and none can take an item
//! another has), reading the store's clock inside it. A claim that would find nothing is
//! decided from a read snapshot first (linearizable: nothing was claimable at that instant),
//! so waiting workers woken by a change do not queue for the write lock. Waiters are woken
//! by the change feed, which sees every commit.

use std::time::Duration;

use arbiter_core::name::{Capability, Namespace, QueueName};
use arbiter_core::queue::{
    ClaimOutcome, ClaimRequest, Claimed, FailRequest, HostRecord, Item, ItemInfo, ItemState, NewItem, NotBefore,
    Pushed, QueueStats,
};
use arbiter_core::{Millis, Result};
use async_trait::async_trait;
use rusqlite::{OptionalExtension, Row, Transaction, params};

use super::{Outcome, SqliteStore, internal, now_ms};
use crate::QueueStore;
use crate::queue::{
    ATTEMPT_COLUMNS, AttemptRow, EXPIRE_BATCH, EXPIRED, Expired, ItemRow, StoredCaps, after_failure, caps_json,
    check_claim, claim_of, item_columns, not_found, not_retryable,
};
use crate::schema::Migration;
use crate::sql::{encode_holder, ms};

fn item_row(r: &Row<'_>) -> rusqlite::Result<ItemRow> {
    Ok(ItemRow {
        queue: r.get(0)?,
        id: r.get(1)?,
        state: r.get(2)?,
        priority: r.get(3)?,
        requires: StoredCaps::Json(r.get(4)?),
        key: r.get(5)?,
        body: r.get(6)?,
        attempt: r.get(7)?,
        max_attempts: r.get(8)?,
        last_token: r.get(9)?,
        holder: r.get(10)?,
        expires_at: r.get(11)?,
        not_before: r.get(12)?,
        created_at: r.get(13)?,
        updated_at: r.get(14)?,
        result: r.get(15)?,
        last_error: r.get(16)?,
    })
}

/// Runs a query of [`item_columns!`] and decodes its rows (outside rusqlite's callback).
fn select_items(
    tx: &Transaction<'_>,
    namespace: &Namespace,
    sql: &str,
    args: impl rusqlite::Params,
) -> Result<Vec<Item>> {
    let mut stmt = tx.prepare_cached(sql).map_err(internal)?;
    let rows = stmt
        .query_map(args, item_row)
        .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
        .map_err(internal)?;
    rows.into_iter().map(|row| row.decode(namespace)).collect()
}

/// The item `id` of the namespace, or `NotFound`.
fn load(tx: &Transaction<'_>, namespace: &Namespace, id: i64) -> Result<Item> {
    select_items(
        tx,
        namespace,
        concat!(
            "SELECT ",
            item_columns!(),
            " FROM queue_items WHERE namespace = ?1 AND id = ?2"
        ),
        params![namespace.as_str(), id],
    )?
    .pop()
    .ok_or_else(|| not_found(namespace, id))
}

/// `requires` of the item `i` within the capabilities `?3` (a JSON array).
macro_rules! takes {
    () => {
        "(i.requires = '[]' OR NOT EXISTS (SELECT 1 FROM json_each(i.requires) r
           WHERE r.value NOT IN (SELECT c.value FROM json_each(?3) c)))"
    };
}

/// The best ready item of the queue that the capabilities `caps` allow at `now`.
fn pick(tx: &Transaction<'_>, request: &ClaimRequest, caps: &str, now: Millis) -> Result<Option<Item>> {
    Ok(select_items(
        tx,
        &request.namespace,
        concat!(
            "SELECT ",
            item_columns!(),
            " FROM queue_items i INDEXED BY queue_items_ready
             WHERE i.namespace = ?1 AND i.queue = ?2 AND i.state = 'ready' AND i.not_before <= ?4 AND ",
            takes!(),
            " ORDER BY i.priority DESC, i.id LIMIT 1"
        ),
        params![request.namespace.as_str(), request.queue.as_str(), caps, now],
    )?
    .pop())
}

/// When an empty claim may find something without a push: the earliest delayed item the
/// caller could take, or the earliest claim to run out.
fn next_at(tx: &Transaction<'_>, request: &ClaimRequest, caps: &str, now: Millis) -> Result<Option<Millis>> {
    let (ns, queue) = (request.namespace.as_str(), request.queue.as_str());
    let delayed: Option<Millis> = tx
        .query_row(
            concat!(
                "SELECT i.not_before FROM queue_items i INDEXED BY queue_items_delayed
                 WHERE i.namespace = ?1 AND i.queue = ?2 AND i.state = 'ready' AND i.not_before > ?4 AND ",
                takes!(),
                " ORDER BY i.not_before LIMIT 1"
            ),
            params![ns, queue, caps, now],
            |r| r.get(0),
        )
        .optional()
        .map_err(internal)?;
    let expiring: Option<Millis> = tx
        .query_row(
            "SELECT expires_at FROM queue_items INDEXED BY queue_items_claimed
             WHERE namespace = ?1 AND queue = ?2 AND state = 'claimed' ORDER BY expires_at LIMIT 1",
            params![ns, queue],
            |r| r.get(0),
        )
        .optional()
        .map_err(internal)?;
    Ok(delayed.into_iter().chain(expiring).min())
}

/// The queue's claims that ran out by `now`, oldest first, at most [`EXPIRE_BATCH`].
fn expired(tx: &Transaction<'_>, namespace: &str, queue: &str, now: Millis) -> Result<Vec<Expired>> {
    let mut stmt = tx
        .prepare_cached(
            "SELECT id, attempt, max_attempts, last_token FROM queue_items INDEXED BY queue_items_claimed
             WHERE namespace = ?1 AND queue = ?2 AND state = 'claimed' AND expires_at <= ?3
             ORDER BY expires_at LIMIT ?4",
        )
        .map_err(internal)?;
    stmt.query_map(params![namespace, queue, now, EXPIRE_BATCH], |r| {
        Ok(Expired {
            id: r.get(0)?,
            attempt: r.get(1)?,
            max_attempts: r.get(2)?,
            last_token: r.get(3)?,
        })
    })
    .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
    .map_err(internal)
}

/// Ends the queue's run-out claims: each attempt `expired`, each item ready again at once or
/// dead on its last attempt. Returns how many ended and how many of them died.
fn expire(tx: &Transaction<'_>, namespace: &str, queue: &str, now: Millis) -> Result<(usize, u32)> {
    let ended = expired(tx, namespace, queue, now)?;
    let mut dead = 0;
    for item in &ended {
        let state = if item.dies()? {
            dead += 1;
            ItemState::Dead
        } else {
            ItemState::Ready
        };
        end_attempt(tx, item.id, item.last_token, now, "expired", Some(EXPIRED))?;
        tx.execute(
            "UPDATE queue_items SET state = ?2, not_before = ?3, holder = NULL, expires_at = NULL,
                    last_error = ?4, updated_at = ?3
             WHERE id = ?1",
            params![item.id, state.as_str(), now, EXPIRED],
        )
        .map_err(internal)?;
    }
    Ok((ended.len(), dead))
}

fn end_attempt(
    tx: &Transaction<'_>,
    id: i64,
    token: i64,
    now: Millis,
    outcome: &str,
    error: Option<&str>,
) -> Result<()> {
    tx.execute(
        "UPDATE queue_attempts SET ended_at = ?3, outcome = ?4, error = ?5 WHERE item_id = ?1 AND token = ?2",
        params![id, token, now, outcome, error],
    )
    .map(drop)
    .map_err(internal)
}

/// A claim decided from a read snapshot when it finds nothing and there is nothing to end;
/// `None` when the write path must run.
fn empty_by_snapshot(tx: &Transaction<'_>, request: &ClaimRequest) -> Result<Option<ClaimOutcome>> {
    let now = now_ms(tx)?;
    let (ns, queue) = (request.namespace.as_str(), request.queue.as_str());
    let any_expired: bool = tx
        .query_row(
            "SELECT EXISTS (SELECT 1 FROM queue_items INDEXED BY queue_items_claimed
             WHERE namespace = ?1 AND queue = ?2 AND state = 'claimed' AND expires_at <= ?3)",
            params![ns, queue, now],
            |r| r.get(0),
        )
        .map_err(internal)?;
    let caps = caps_json(&request.capabilities);
    if any_expired || pick(tx, request, &caps, now)?.is_some() {
        return Ok(None);
    }
    Ok(Some(ClaimOutcome::Empty {
        now,
        next_at: next_at(tx, request, &caps, now)?,
    }))
}

fn claim_tx(tx: &Transaction<'_>, request: &ClaimRequest) -> Result<Outcome<Claimed>> {
    let now = now_ms(tx)?;
    let (ns, queue) = (request.namespace.as_str(), request.queue.as_str());
    let (ended, newly_dead) = expire(tx, ns, queue, now)?;
    let caps = caps_json(&request.capabilities);
    let Some(item) = pick(tx, request, &caps, now)? else {
        let outcome = ClaimOutcome::Empty {
            now,
            next_at: next_at(tx, request, &caps, now)?,
        };
        let claimed = Claimed { outcome, newly_dead };
        return Ok(if ended > 0 {
            Outcome::Commit(claimed)
        } else {
            Outcome::Rollback(claimed)
        });
    };
    let claim = claim_of(item, request, now);
    let holder = encode_holder(&claim.holder);
    tx.execute(
        "UPDATE queue_items SET state = 'claimed', attempt = ?2, last_token = ?3, holder = ?4, expires_at = ?5,
                updated_at = ?6
         WHERE id = ?1",
        params![claim.id, claim.attempt, claim.token, holder, claim.expires_at, now],
    )
    .map_err(internal)?;
    tx.execute(
        "INSERT INTO queue_attempts (item_id, token, namespace, queue, attempt, holder, claimed_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![claim.id, claim.token, ns, queue, claim.attempt, holder, now],
    )
    .map_err(internal)?;
    Ok(Outcome::Commit(Claimed {
        outcome: ClaimOutcome::Claimed(claim),
        newly_dead,
    }))
}

/// Loads the item, checks that `token` holds its live claim, and hands both to `end`.
fn with_live_claim<T>(
    tx: &Transaction<'_>,
    namespace: &Namespace,
    id: i64,
    token: i64,
    end: impl FnOnce(Item, Millis) -> Result<T>,
) -> Result<Outcome<T>> {
    let now = now_ms(tx)?;
    let item = load(tx, namespace, id)?;
    check_claim(&item, token, now)?;
    end(item, now).map(Outcome::Commit)
}

#[async_trait]
impl QueueStore for SqliteStore {
    async fn push(&self, item: &NewItem) -> Result<Pushed> {
        let item = item.clone();
        self.write(move |tx| {
            let now = now_ms(tx)?;
            let not_before = match item.not_before {
                None => now,
                Some(NotBefore::After(delay)) => now.saturating_add(ms(delay)),
                Some(NotBefore::At(at)) => at,
            };
            let inserted = tx
                .execute(
                    "INSERT INTO queue_items (namespace, queue, state, priority, requires, key, body, attempt,
                                              max_attempts, last_token, not_before, created_at, updated_at, alerted)
                     VALUES (?1, ?2, 'ready', ?3, ?4, ?5, ?6, 0, ?7, 0, ?8, ?9, ?9, 0)
                     ON CONFLICT (namespace, queue, key) DO NOTHING",
                    params![
                        item.namespace.as_str(),
                        item.queue.as_str(),
                        item.priority,
                        caps_json(&item.requires),
                        item.key,
                        item.body,
                        item.max_attempts,
                        not_before,
                        now
                    ],
                )
                .map_err(internal)?;
            if inserted > 0 {
                return Ok(Outcome::Commit(Pushed {
                    id: tx.last_insert_rowid(),
                    created: true,
                    state: ItemState::Ready,
                }));
            }
            // Only a key conflicts: the first push's item.
            let (id, state): (i64, String) = tx
                .query_row(
                    "SELECT id, state FROM queue_items WHERE namespace = ?1 AND queue = ?2 AND key = ?3",
                    params![item.namespace.as_str(), item.queue.as_str(), item.key],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .map_err(internal)?;
            let state = state
                .parse()
                .map_err(|_| arbiter_core::Error::internal(format!("corrupted store: unknown item state {state:?}")))?;
            Ok(Outcome::Rollback(Pushed {
                id,
                created: false,
                state,
            }))
        })
        .await
    }

    async fn claim(&self, request: &ClaimRequest) -> Result<Claimed> {
        let probe = request.clone();
        if let Some(outcome) = self.read(move |tx| empty_by_snapshot(tx, &probe)).await? {
            return Ok(Claimed { outcome, newly_dead: 0 });
        }
        let request = request.clone();
        self.write(move |tx| claim_tx(tx, &request)).await
    }

    async fn heartbeat(
        &self,
        namespace: &Namespace,
        id: i64,
        token: i64,
        lease: Duration,
        pgid: Option<u32>,
    ) -> Result<Item> {
        let ns = namespace.clone();
        self.write(move |tx| {
            with_live_claim(tx, &ns, id, token, |mut item, now| {
                item.expires_at = Some(now.saturating_add(ms(lease)));
                item.updated_at = now;
                if let (Some(pgid), Some(holder)) = (pgid, item.holder.as_mut()) {
                    holder.pgid = Some(pgid);
                }
                tx.execute(
                    "UPDATE queue_items SET expires_at = ?2, holder = ?3, updated_at = ?4 WHERE id = ?1",
                    params![id, item.expires_at, item.holder.as_ref().map(encode_holder), now],
                )
                .map_err(internal)?;
                Ok(item)
            })
        })
        .await
    }

    async fn done(&self, namespace: &Namespace, id: i64, token: i64, result: Option<&str>) -> Result<Item> {
        let (ns, result) = (namespace.clone(), result.map(String::from));
        self.write(move |tx| {
            with_live_claim(tx, &ns, id, token, |mut item, now| {
                item.state = ItemState::Done;
                item.result = result;
                item.holder = None;
                item.expires_at = None;
                item.updated_at = now;
                end_attempt(tx, id, token, now, "done", None)?;
                tx.execute(
                    "UPDATE queue_items SET state = 'done', result = ?2, holder = NULL, expires_at = NULL,
                            updated_at = ?3
                     WHERE id = ?1",
                    params![id, item.result, now],
                )
                .map_err(internal)?;
                Ok(item)
            })
        })
        .await
    }

    async fn fail(&self, request: &FailRequest) -> Result<Item> {
        let request = request.clone();
        self.write(move |tx| {
            let (id, token) = (request.id, request.token);
            with_live_claim(tx, &request.namespace, id, token, |mut item, now| {
                let (state, not_before) = after_failure(&item, request.retry_in, now);
                item.state = state;
                item.not_before = not_before;
                item.holder = None;
                item.expires_at = None;
                item.updated_at = now;
                item.last_error = Some(request.reason.clone());
                end_attempt(tx, id, token, now, "failed", Some(&request.reason))?;
                tx.execute(
                    "UPDATE queue_items SET state = ?2, not_before = ?3, holder = NULL, expires_at = NULL,
                            last_error = ?4, updated_at = ?5
                     WHERE id = ?1",
                    params![id, state.as_str(), not_before, request.reason, now],
                )
                .map_err(internal)?;
                Ok(item)
            })
        })
        .await
    }

    async fn retry(&self, namespace: &Namespace, id: i64) -> Result<Item> {
        let ns = namespace.clone();
        self.write(move |tx| {
            let now = now_ms(tx)?;
            let mut item = load(tx, &ns, id)?;
            if !matches!(item.state, ItemState::Dead | ItemState::Cancelled) {
                return Err(not_retryable(&item));
            }
            item.state = ItemState::Ready;
            item.attempt = 0;
            item.not_before = now;
            item.updated_at = now;
            tx.execute(
                "UPDATE queue_items SET state = 'ready', attempt = 0, not_before = ?2, holder = NULL,
                        expires_at = NULL, alerted = 0, updated_at = ?2
                 WHERE id = ?1",
                params![id, now],
            )
            .map_err(internal)?;
            Ok(Outcome::Commit(item))
        })
        .await
    }

    async fn cancel(&self, namespace: &Namespace, queue: &QueueName, key: &str) -> Result<Option<Item>> {
        let (ns, queue, key) = (namespace.clone(), queue.clone(), key.to_string());
        self.write(move |tx| {
            let now = now_ms(tx)?;
            let Some(mut item) = select_items(
                tx,
                &ns,
                concat!(
                    "SELECT ",
                    item_columns!(),
                    " FROM queue_items WHERE namespace = ?1 AND queue = ?2 AND key = ?3"
                ),
                params![ns.as_str(), queue.as_str(), key],
            )?
            .pop() else {
                return Ok(Outcome::Rollback(None));
            };
            if item.state != ItemState::Ready {
                return Ok(Outcome::Rollback(Some(item)));
            }
            item.state = ItemState::Cancelled;
            item.updated_at = now;
            tx.execute(
                "UPDATE queue_items SET state = 'cancelled', updated_at = ?2 WHERE id = ?1",
                params![item.id, now],
            )
            .map_err(internal)?;
            Ok(Outcome::Commit(Some(item)))
        })
        .await
    }

    async fn list(
        &self,
        namespace: &Namespace,
        queue: Option<&QueueName>,
        state: Option<ItemState>,
        limit: usize,
    ) -> Result<Vec<Item>> {
        let (ns, queue) = (namespace.clone(), queue.map(|q| q.as_str().to_string()));
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        // Newest first by walking the ids down, stopping at `limit` matches (an index on
        // the namespace would read and sort every item of it).
        self.read(move |tx| {
            select_items(
                tx,
                &ns,
                concat!(
                    "SELECT ",
                    item_columns!(),
                    " FROM queue_items NOT INDEXED
                     WHERE namespace = ?1 AND (?2 IS NULL OR queue = ?2) AND (?3 IS NULL OR state = ?3)
                     ORDER BY id DESC LIMIT ?4"
                ),
                params![ns.as_str(), queue, state.map(ItemState::as_str), limit],
            )
        })
        .await
    }

    async fn show(&self, namespace: &Namespace, id: i64) -> Result<ItemInfo> {
        let ns = namespace.clone();
        self.read(move |tx| {
            let now = now_ms(tx)?;
            let item = load(tx, &ns, id)?;
            let mut stmt = tx
                .prepare_cached(&format!(
                    "SELECT {ATTEMPT_COLUMNS} FROM queue_attempts WHERE item_id = ?1 ORDER BY token"
                ))
                .map_err(internal)?;
            let rows = stmt
                .query_map(params![id], |r| {
                    Ok(AttemptRow {
                        attempt: r.get(0)?,
                        token: r.get(1)?,
                        holder: r.get(2)?,
                        claimed_at: r.get(3)?,
                        ended_at: r.get(4)?,
                        outcome: r.get(5)?,
                        error: r.get(6)?,
                    })
                })
                .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
                .map_err(internal)?;
            Ok(ItemInfo {
                item,
                attempts: rows.into_iter().map(AttemptRow::decode).collect::<Result<_>>()?,
                now,
            })
        })
        .await
    }

    async fn stats(&self, namespace: &Namespace) -> Result<(Millis, Vec<QueueStats>)> {
        let ns = namespace.clone();
        self.read(move |tx| {
            let now = now_ms(tx)?;
            let mut stmt = tx
                .prepare_cached(
                    "SELECT queue,
                            count(*) FILTER (WHERE state = 'ready' AND not_before <= ?2),
                            count(*) FILTER (WHERE state = 'ready' AND not_before > ?2),
                            count(*) FILTER (WHERE state = 'claimed' AND expires_at > ?2),
                            count(*) FILTER (WHERE state = 'claimed' AND (expires_at IS NULL OR expires_at <= ?2)),
                            count(*) FILTER (WHERE state = 'done'),
                            count(*) FILTER (WHERE state = 'dead'),
                            count(*) FILTER (WHERE state = 'cancelled'),
                            min(max(not_before, created_at)) FILTER (WHERE state = 'ready' AND not_before <= ?2)
                     FROM queue_items WHERE namespace = ?1 GROUP BY queue ORDER BY queue",
                )
                .map_err(internal)?;
            let rows = stmt
                .query_map(params![ns.as_str(), now], |r| {
                    let counts: [i64; 7] = [
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                        r.get(6)?,
                        r.get(7)?,
                    ];
                    Ok((r.get::<_, String>(0)?, counts, r.get::<_, Option<Millis>>(8)?))
                })
                .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
                .map_err(internal)?;
            let mut stmt = tx
                .prepare_cached(
                    "SELECT queue, count(*) FROM queue_attempts INDEXED BY queue_attempts_recent
                     WHERE namespace = ?1 AND claimed_at > ?2 GROUP BY queue",
                )
                .map_err(internal)?;
            let recent = stmt
                .query_map(params![ns.as_str(), now - 60_000], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
                })
                .and_then(|rows| rows.collect::<rusqlite::Result<std::collections::HashMap<_, _>>>())
                .map_err(internal)?;
            let stats = rows
                .into_iter()
                .map(|(queue, counts, oldest)| {
                    let claims = recent.get(&queue).copied().unwrap_or(0);
                    crate::queue::stats_of(queue, counts, oldest, claims)
                })
                .collect::<Result<_>>()?;
            Ok((now, stats))
        })
        .await
    }

    async fn unalerted_dead(&self, namespace: &Namespace, limit: usize) -> Result<Vec<Item>> {
        let ns = namespace.clone();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(move |tx| {
            select_items(
                tx,
                &ns,
                concat!(
                    "SELECT ",
                    item_columns!(),
                    " FROM queue_items INDEXED BY queue_items_unalerted
                     WHERE namespace = ?1 AND state = 'dead' AND alerted = 0 ORDER BY id LIMIT ?2"
                ),
                params![ns.as_str(), limit],
            )
        })
        .await
    }

    async fn mark_alerted(&self, namespace: &Namespace, ids: &[i64]) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let ns = namespace.clone();
        let ids = serde_json::to_string(ids).expect("numbers always serialize");
        self.write(move |tx| {
            // Dead items only: one retried since it was read keeps its next death's alert.
            tx.execute(
                "UPDATE queue_items SET alerted = 1
                 WHERE namespace = ?1 AND state = 'dead' AND id IN (SELECT value FROM json_each(?2))",
                params![ns.as_str(), ids],
            )
            .map_err(internal)?;
            Ok(Outcome::Commit(()))
        })
        .await
    }

    async fn register_host(&self, namespace: &Namespace, host: &str, capabilities: &[Capability]) -> Result<()> {
        let (ns, host, caps) = (namespace.clone(), host.to_string(), caps_json(capabilities));
        self.write(move |tx| {
            let now = now_ms(tx)?;
            tx.execute(
                "INSERT INTO queue_hosts (namespace, host, capabilities, last_seen) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (namespace, host) DO UPDATE SET
                    capabilities = excluded.capabilities, last_seen = excluded.last_seen",
                params![ns.as_str(), host, caps, now],
            )
            .map_err(internal)?;
            Ok(Outcome::Commit(()))
        })
        .await
    }

    async fn hosts(&self, namespace: &Namespace) -> Result<(Millis, Vec<HostRecord>)> {
        let ns = namespace.clone();
        self.read(move |tx| {
            let now = now_ms(tx)?;
            let mut stmt = tx
                .prepare_cached(
                    "SELECT host, capabilities, last_seen FROM queue_hosts WHERE namespace = ?1 ORDER BY host",
                )
                .map_err(internal)?;
            let rows = stmt
                .query_map(params![ns.as_str()], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, Millis>(2)?))
                })
                .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
                .map_err(internal)?;
            let hosts = rows
                .into_iter()
                .map(|(host, caps, last_seen)| {
                    Ok(HostRecord {
                        host,
                        capabilities: StoredCaps::Json(caps).decode()?,
                        last_seen,
                    })
                })
                .collect::<Result<_>>()?;
            Ok((now, hosts))
        })
        .await
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
        id           INTEGER PRIMARY KEY AUTOINCREMENT,
        namespace    TEXT NOT NULL,
        queue        TEXT NOT NULL,
        state        TEXT NOT NULL,
        priority     INTEGER NOT NULL,
        requires     TEXT NOT NULL,
        key          TEXT,
        body         TEXT NOT NULL,
        attempt      INTEGER NOT NULL,
        max_attempts INTEGER NOT NULL,
        last_token   INTEGER NOT NULL,
        holder       TEXT,
        expires_at   INTEGER,
        not_before   INTEGER NOT NULL,
        created_at   INTEGER NOT NULL,
        updated_at   INTEGER NOT NULL,
        result       TEXT,
        last_error   TEXT,
        alerted      INTEGER NOT NULL
    );
    CREATE UNIQUE INDEX queue_items_by_key ON queue_items (namespace, queue, key);
    CREATE INDEX queue_items_ready ON queue_items (namespace, queue, priority DESC, id) WHERE state = 'ready';
    CREATE INDEX queue_items_delayed ON queue_items (namespace, queue, not_before) WHERE state = 'ready';
    CREATE INDEX queue_items_claimed ON queue_items (namespace, queue, expires_at) WHERE state = 'claimed';
    CREATE INDEX queue_items_unalerted ON queue_items (namespace, id) WHERE state = 'dead' AND alerted = 0;
    CREATE TABLE queue_attempts (
        item_id    INTEGER NOT NULL,
        token      INTEGER NOT NULL,
        namespace  TEXT NOT NULL,
        queue      TEXT NOT NULL,
        attempt    INTEGER NOT NULL,
        holder     TEXT NOT NULL,
        claimed_at INTEGER NOT NULL,
        ended_at   INTEGER,
        outcome    TEXT,
        error      TEXT,
        PRIMARY KEY (item_id, token)
    ) WITHOUT ROWID;
    CREATE INDEX queue_attempts_recent ON queue_attempts (namespace, claimed_at);
    CREATE TABLE queue_hosts (
        namespace    TEXT NOT NULL,
        host         TEXT NOT NULL,
        capabilities TEXT NOT NULL,
        last_seen    INTEGER NOT NULL,
        PRIMARY KEY (namespace, host)
    ) WITHOUT ROWID;
    "#,
    },
];
