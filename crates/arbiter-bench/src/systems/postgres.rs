//! The three ways people lock with PostgreSQL alone, and its CAS:
//! - session advisory locks (`pg_try_advisory_lock` / `pg_advisory_unlock`): no table, no
//!   WAL, held by the connection; no TTL, no fencing token;
//! - a row lock held by a transaction (`SELECT … FOR UPDATE NOWAIT`, then `COMMIT`);
//! - a hand-rolled lease table: a conditional `UPDATE` that takes a free or expired row and
//!   bumps its token (TTL and fencing token, like arbiter), released by another `UPDATE`;
//! - CAS: `SELECT value, version`, then `UPDATE … WHERE version = $old`;
//! - a log: `INSERT` of one row into a table keyed by a `bigserial`, committed on its own
//!   (`synchronous_commit` as the server has it);
//! - a work queue as graphile-worker and River keep one: a plain jobs table, an `INSERT`
//!   per push, a claim by one `UPDATE … WHERE id = (SELECT … ORDER BY priority DESC, id
//!   LIMIT 1 FOR UPDATE SKIP LOCKED) RETURNING id, payload` (concurrent claimers skip each
//!   other's rows instead of waiting), and a `DELETE` of the row on completion — two
//!   statements, two commits per item, no lease expiry and no fencing token.
//!
//! Every statement is prepared once per connection. Tables live in the run's own schema.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, NoTls, Statement};

use super::{MAX_CAS_TRIES, QueueCounts};
use crate::spec::{System, Targets};

/// The peers' tables, created by the parent in the run's schema before any worker starts.
pub const SCHEMA_SQL: &str = "
CREATE TABLE IF NOT EXISTS peer_rowlocks (name TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS peer_leases (
    name TEXT PRIMARY KEY,
    holder TEXT,
    token BIGINT NOT NULL DEFAULT 0,
    expires_at TIMESTAMPTZ
);
CREATE TABLE IF NOT EXISTS peer_counters (k TEXT PRIMARY KEY, value BIGINT NOT NULL, version BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS peer_log (
    id BIGSERIAL PRIMARY KEY,
    stream TEXT NOT NULL,
    author TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS peer_jobs (
    id BIGSERIAL PRIMARY KEY,
    queue TEXT NOT NULL,
    payload TEXT NOT NULL,
    priority INT NOT NULL DEFAULT 0,
    run_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    attempts INT NOT NULL DEFAULT 0,
    locked_by TEXT,
    locked_at TIMESTAMPTZ
);
CREATE INDEX IF NOT EXISTS peer_jobs_ready ON peer_jobs (queue, priority DESC, id) WHERE locked_at IS NULL;
";

pub struct PgClient {
    system: System,
    client: Client,
    id: u32,
    ttl_ms: i64,
    statements: Vec<Statement>,
}

/// Connects to `url`, with `search_path` set to `schema` when given.
pub async fn pg_connect(url: &str, schema: Option<&str>) -> Result<Client> {
    let mut config: tokio_postgres::Config = url.parse().with_context(|| format!("PostgreSQL URL {url}"))?;
    config.connect_timeout(Duration::from_secs(5));
    if let Some(schema) = schema {
        config.options(format!("-c search_path={schema}"));
    }
    let (client, connection) = config
        .connect(NoTls)
        .await
        .with_context(|| format!("cannot connect to PostgreSQL at {url}"))?;
    tokio::spawn(async move {
        // Ends when the client is dropped or the server goes away.
        let _ = connection.await;
    });
    Ok(client)
}

/// The server's version and durability settings, for the table's header.
pub async fn pg_describe(url: &str) -> Result<String> {
    let client = pg_connect(url, None).await?;
    let mut parts = Vec::new();
    for setting in ["server_version", "fsync", "synchronous_commit", "wal_sync_method"] {
        let row = client.query_one(&format!("SHOW {setting}"), &[]).await?;
        parts.push((setting, row.get::<_, String>(0)));
    }
    let version = parts[0].1.split_whitespace().next().unwrap_or("?").to_string();
    let settings: Vec<String> = parts[1..].iter().map(|(k, v)| format!("{k}={v}")).collect();
    Ok(format!("PostgreSQL {version} ({})", settings.join(", ")))
}

/// A stable 64-bit key for an advisory lock (FNV-1a of the name).
fn advisory_key(name: &str) -> i64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in name.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash as i64
}

impl PgClient {
    pub async fn connect(system: System, targets: &Targets, id: u32, ttl_ms: u64) -> Result<PgClient> {
        let client = pg_connect(&targets.postgres, Some(&targets.pg_schema)).await?;
        let sql: &[&str] = match system {
            System::PgAdvisory => &["SELECT pg_try_advisory_lock($1)", "SELECT pg_advisory_unlock($1)"],
            System::PgRowLock => &["SELECT 1 FROM peer_rowlocks WHERE name = $1 FOR UPDATE NOWAIT"],
            System::PgTable => &[
                "UPDATE peer_leases SET holder = $2, token = token + 1,
                        expires_at = clock_timestamp() + $3::BIGINT * INTERVAL '1 millisecond'
                 WHERE name = $1 AND (holder IS NULL OR expires_at <= clock_timestamp())
                 RETURNING token",
                "UPDATE peer_leases SET holder = NULL WHERE name = $1 AND token = $2",
                "SELECT value, version FROM peer_counters WHERE k = $1",
                "UPDATE peer_counters SET value = $2, version = version + 1 WHERE k = $1 AND version = $3",
                "INSERT INTO peer_log (stream, author, body) VALUES ($1, $2, $3)",
                "SELECT count(*) FROM peer_log WHERE stream = $1",
                "INSERT INTO peer_jobs (queue, payload) VALUES ($1, $2)",
                "UPDATE peer_jobs SET locked_by = $2, locked_at = now(), attempts = attempts + 1
                 WHERE id = (SELECT id FROM peer_jobs
                             WHERE queue = $1 AND locked_at IS NULL AND run_at <= now()
                             ORDER BY priority DESC, id LIMIT 1 FOR UPDATE SKIP LOCKED)
                 RETURNING id, payload",
                "DELETE FROM peer_jobs WHERE id = $1 AND locked_by = $2",
                "SELECT count(*) FILTER (WHERE locked_at IS NULL), count(*) FILTER (WHERE locked_at IS NOT NULL)
                 FROM peer_jobs WHERE queue = $1",
            ],
            other => bail!("{other:?} is not a PostgreSQL peer"),
        };
        let mut statements = Vec::new();
        for text in sql {
            statements.push(
                client
                    .prepare(text)
                    .await
                    .with_context(|| format!("preparing {text}"))?,
            );
        }
        Ok(PgClient {
            system,
            client,
            id,
            ttl_ms: i64::try_from(ttl_ms).unwrap_or(i64::MAX),
            statements,
        })
    }

    pub async fn prepare_names(&mut self, names: &[String]) -> Result<()> {
        let table = match self.system {
            System::PgRowLock => "peer_rowlocks",
            System::PgTable => "peer_leases",
            _ => return Ok(()),
        };
        self.client
            .execute(
                &format!("INSERT INTO {table} (name) SELECT unnest($1::TEXT[]) ON CONFLICT DO NOTHING"),
                &[&names],
            )
            .await?;
        Ok(())
    }

    pub async fn lease_once(&mut self, name: &str) -> Result<bool> {
        match self.system {
            System::PgAdvisory => {
                let key = advisory_key(name);
                let got: bool = self.client.query_one(&self.statements[0], &[&key]).await?.get(0);
                if got {
                    let released: bool = self.client.query_one(&self.statements[1], &[&key]).await?.get(0);
                    if !released {
                        bail!("advisory lock {name} was not held at release");
                    }
                }
                Ok(got)
            }
            System::PgRowLock => {
                let statement = self.statements[0].clone();
                let tx = self.client.transaction().await?;
                match tx.query_opt(&statement, &[&name]).await {
                    Ok(Some(_)) => {
                        tx.commit().await?;
                        Ok(true)
                    }
                    Ok(None) => bail!("no row for {name} in peer_rowlocks"),
                    Err(e) if e.code() == Some(&SqlState::LOCK_NOT_AVAILABLE) => {
                        tx.rollback().await?;
                        Ok(false)
                    }
                    Err(e) => Err(e.into()),
                }
            }
            System::PgTable => {
                let holder = format!("bench-{}", self.id);
                let row = self
                    .client
                    .query_opt(&self.statements[0], &[&name, &holder, &self.ttl_ms])
                    .await?;
                let Some(row) = row else {
                    return Ok(false);
                };
                let token: i64 = row.get(0);
                let released = self.client.execute(&self.statements[1], &[&name, &token]).await?;
                if released != 1 {
                    bail!("lost the lease-table row {name} before releasing it");
                }
                Ok(true)
            }
            other => bail!("{other:?} is not a PostgreSQL peer"),
        }
    }

    /// CAS, appends and work items are done by the table peer only.
    fn check_table(&self) -> Result<()> {
        if self.system != System::PgTable {
            bail!("{:?} has no CAS, append or work-item workload", self.system);
        }
        Ok(())
    }

    pub async fn init_counter(&mut self, key: &str) -> Result<()> {
        self.check_table()?;
        self.client
            .execute(
                "INSERT INTO peer_counters (k, value, version) VALUES ($1, 0, 0) ON CONFLICT DO NOTHING",
                &[&key],
            )
            .await?;
        Ok(())
    }

    pub async fn cas_increment(&mut self, key: &str) -> Result<u64> {
        self.check_table()?;
        let mut tries = 0;
        loop {
            tries += 1;
            if tries > MAX_CAS_TRIES {
                bail!("no increment landed in {MAX_CAS_TRIES} tries");
            }
            let row = self.client.query_one(&self.statements[2], &[&key]).await?;
            let (value, version): (i64, i64) = (row.get(0), row.get(1));
            let updated = self
                .client
                .execute(&self.statements[3], &[&key, &(value + 1), &version])
                .await?;
            if updated == 1 {
                return Ok(tries);
            }
        }
    }

    pub async fn read_counter(&mut self, key: &str) -> Result<i64> {
        self.check_table()?;
        let row = self.client.query_one(&self.statements[2], &[&key]).await?;
        Ok(row.get(0))
    }

    pub async fn append(&mut self, stream: &str, body: &str) -> Result<()> {
        self.check_table()?;
        let author = format!("bench-{}", self.id);
        self.client
            .execute(&self.statements[4], &[&stream, &author, &body])
            .await?;
        Ok(())
    }

    pub async fn count_records(&mut self, stream: &str) -> Result<u64> {
        self.check_table()?;
        let count: i64 = self.client.query_one(&self.statements[5], &[&stream]).await?.get(0);
        Ok(u64::try_from(count)?)
    }

    pub async fn queue_push(&mut self, queue: &str, body: &str) -> Result<()> {
        self.check_table()?;
        self.client.execute(&self.statements[6], &[&queue, &body]).await?;
        Ok(())
    }

    /// Claims the best ready job (`FOR UPDATE SKIP LOCKED`, autocommit) and deletes it.
    pub async fn queue_take(&mut self, queue: &str) -> Result<bool> {
        self.check_table()?;
        let worker = format!("bench-{}", self.id);
        let Some(row) = self.client.query_opt(&self.statements[7], &[&queue, &worker]).await? else {
            return Ok(false);
        };
        let id: i64 = row.get(0);
        let deleted = self.client.execute(&self.statements[8], &[&id, &worker]).await?;
        if deleted != 1 {
            bail!("job {id} was not locked by {worker} at completion");
        }
        Ok(true)
    }

    pub async fn queue_counts(&mut self, queue: &str) -> Result<QueueCounts> {
        self.check_table()?;
        let row = self.client.query_one(&self.statements[9], &[&queue]).await?;
        let (ready, claimed): (i64, i64) = (row.get(0), row.get(1));
        Ok(QueueCounts {
            ready: u64::try_from(ready)?,
            claimed: u64::try_from(claimed)?,
            done: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The jobs-table peer against a real PostgreSQL: every pushed job is taken exactly once
    /// by two clients taking at once, and a job another transaction holds locked is skipped,
    /// not waited for.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn skip_locked_jobs_are_taken_once() {
        let Some(url) = arbiter_testkit::postgres_url("bench_skip_locked").await else {
            return;
        };
        let (server, schema) = url.split_once("?schema=").expect("a schema in the test URL");
        let admin = pg_connect(server, None).await.unwrap();
        admin
            .batch_execute(&format!(
                "CREATE SCHEMA {schema}; SET search_path = {schema}; {SCHEMA_SQL}"
            ))
            .await
            .unwrap();
        let targets = Targets {
            postgres: server.to_string(),
            pg_schema: schema.to_string(),
            ..Targets::nowhere()
        };
        let mut a = PgClient::connect(System::PgTable, &targets, 1, 30_000).await.unwrap();
        let mut b = PgClient::connect(System::PgTable, &targets, 2, 30_000).await.unwrap();
        let queue = "arbiter-bench/1-2/q-queue";
        for i in 0..20 {
            a.queue_push(queue, &format!("job {i}")).await.unwrap();
        }
        a.queue_push("another-queue", "not ours").await.unwrap();

        // Job 1 locked by a transaction that stays open: the claims skip it.
        admin.batch_execute("BEGIN").await.unwrap();
        let locked: i64 = admin
            .query_one(
                "SELECT id FROM peer_jobs WHERE queue = $1 ORDER BY id LIMIT 1 FOR UPDATE",
                &[&queue],
            )
            .await
            .unwrap()
            .get(0);
        let (mut taken_a, mut taken_b) = (0, 0);
        // Bounded: 20 jobs, at most 19 takeable now, two clients.
        for _ in 0..40 {
            let (got_a, got_b) = tokio::join!(a.queue_take(queue), b.queue_take(queue));
            let (got_a, got_b) = (got_a.unwrap(), got_b.unwrap());
            taken_a += u32::from(got_a);
            taken_b += u32::from(got_b);
            if !got_a && !got_b {
                break;
            }
        }
        assert_eq!(taken_a + taken_b, 19, "every job but the locked one, once");
        let counts = a.queue_counts(queue).await.unwrap();
        assert_eq!((counts.ready, counts.claimed, counts.done), (1, 0, None));
        let left: i64 = admin
            .query_one("SELECT id FROM peer_jobs WHERE queue = $1", &[&queue])
            .await
            .unwrap()
            .get(0);
        assert_eq!(left, locked, "the one left is the one that was locked");
        admin.batch_execute("COMMIT").await.unwrap();
        assert!(a.queue_take(queue).await.unwrap(), "unlocked, it is taken");
        assert!(!b.queue_take(queue).await.unwrap(), "and the queue is empty");
        let other = a.queue_counts("another-queue").await.unwrap();
        assert_eq!(other.ready, 1, "another queue's job was not touched");
    }

    #[test]
    fn advisory_keys_are_stable_and_spread() {
        assert_eq!(super::advisory_key("a"), super::advisory_key("a"));
        assert_ne!(super::advisory_key("a-0"), super::advisory_key("a-1"));
    }
}
