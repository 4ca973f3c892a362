//! What one measured run is: a workload, a system, how many clients and for how long.
//! The parent serialises a [`WorkerSpec`] for each worker process; the worker answers with
//! a [`WorkerReport`].

use serde::{Deserialize, Serialize};

/// What each client does, over and over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Workload {
    /// One try-lock attempt on a name; when it is granted, release it at once. A refused
    /// attempt is an operation too (it is what a contended try-lock costs).
    Lease,
    /// One increment of a shared counter by read + compare-and-swap, retried until it
    /// lands. An operation is one increment that landed.
    Cas,
    /// One record (about 200 bytes) appended to a stream shared by all clients (or, with
    /// `names` > 1, client `c` appends to stream `c % names`), acknowledged only once
    /// it is as durable as the system is configured to make it. After the run the streams
    /// must hold exactly the acknowledged records.
    Append,
    /// One rate-limiter decision: take 1 token from a bucket shared by all clients, whose
    /// rate is so high that every decision is a grant (what is timed is the decision, not a
    /// wait).
    Limit,
    /// One work item (about 200 bytes) pushed into a queue shared by all clients, one push
    /// per operation. It also fills the queue the `QueueWork` run of the same system and
    /// tag takes from.
    QueuePush,
    /// One work item taken and finished: a claim without waiting (a lease of 30 s on the
    /// item, no capabilities) and, when it got one, its completion. A claim that finds the
    /// queue empty ends its client (the run drained the queue; it is not an operation).
    /// After the run the queue must hold exactly the items pushed and not finished, none
    /// of them claimed.
    QueueWork,
}

/// The system under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum System {
    /// arbiter on SQLite, `synchronous=full` (the default: every commit is fsynced).
    ArbiterSqliteFull,
    /// arbiter on SQLite, `synchronous=normal` (WAL fsynced at checkpoints only).
    ArbiterSqliteNormal,
    /// arbiter on PostgreSQL (a fresh schema).
    ArbiterPostgres,
    /// Redis: `SET key token NX PX ttl`, release by a Lua compare-and-delete; CAS by
    /// WATCH/GET/MULTI/SET/EXEC; work items by the reliable-queue pattern (`LPUSH`,
    /// `LMOVE queue processing`, ack by `LREM processing`).
    Redis,
    /// PostgreSQL session advisory locks: `pg_try_advisory_lock` / `pg_advisory_unlock`.
    PgAdvisory,
    /// PostgreSQL row lock held by a transaction: `SELECT … FOR UPDATE NOWAIT`, `COMMIT`.
    PgRowLock,
    /// PostgreSQL hand-rolled lease table: conditional `UPDATE … WHERE holder IS NULL OR
    /// expired RETURNING token` (TTL and fencing token like arbiter's); release by a
    /// conditional `UPDATE`. For CAS: `UPDATE … WHERE version = $1`. For work items: a
    /// plain jobs table claimed by `UPDATE … WHERE id = (SELECT … FOR UPDATE SKIP LOCKED)`
    /// and finished by `DELETE`, as graphile-worker and River do it.
    PgTable,
    /// etcd: a lease per acquire (grant), txn put-if-absent on the key with that lease,
    /// release by revoking the lease. For CAS: txn comparing `mod_revision`.
    Etcd,
    /// etcd the way `concurrency.Mutex` does it: one lease per client session, granted
    /// once; acquire = txn put-if-absent with it, release = delete.
    EtcdSession,
    /// A plain file every client appends lines to: opened with `O_APPEND`, one `write` per
    /// line, `fdatasync` before acknowledging — what a careful script does with a shared
    /// file. Only for the append workload.
    File,
    /// arbiter's fast path, `arbiter_client::limit::Permits`, on the SQLite store
    /// (sync=full): batches taken from the store, handed out in the process. Only for the
    /// limiter workload.
    PermitsSqlite,
    /// `Permits` on the PostgreSQL store.
    PermitsPostgres,
    /// The `governor` crate's GCRA limiter in process memory: one per process, shared by
    /// its clients, seen by no other process. Only for the limiter workload.
    Governor,
    /// arbiter's HTTP API: an `arbiter serve` child process over a SQLite store
    /// (sync=full), one keep-alive connection per client, a bearer token.
    HttpSqlite,
    /// The same over the PostgreSQL store.
    HttpPostgres,
}

impl System {
    pub fn label(self) -> &'static str {
        match self {
            System::ArbiterSqliteFull => "arbiter · SQLite sync=full",
            System::ArbiterSqliteNormal => "arbiter · SQLite sync=normal",
            System::ArbiterPostgres => "arbiter · PostgreSQL",
            System::Redis => "Redis SET NX PX + Lua del",
            System::PgAdvisory => "PG advisory lock (session)",
            System::PgRowLock => "PG row lock FOR UPDATE NOWAIT",
            System::PgTable => "PG lease table, cond. UPDATE",
            System::Etcd => "etcd grant + txn + revoke",
            System::EtcdSession => "etcd session lease, txn + delete",
            System::File => "file O_APPEND + fdatasync",
            System::PermitsSqlite => "arbiter Permits · SQLite sync=full",
            System::PermitsPostgres => "arbiter Permits · PostgreSQL",
            System::Governor => "governor (in-process, per process)",
            System::HttpSqlite => "arbiter server, HTTP · SQLite sync=full",
            System::HttpPostgres => "arbiter server, HTTP · PostgreSQL",
        }
    }

    /// How many more operations a run of this system does than the workload's count: the
    /// systems that decide in process memory finish the count in milliseconds otherwise.
    pub fn in_process_factor(self) -> u64 {
        match self {
            System::Governor | System::PermitsSqlite | System::PermitsPostgres => 50,
            _ => 1,
        }
    }

    /// The label for the limiter workload.
    fn limit_label(self) -> &'static str {
        match self {
            System::ArbiterSqliteFull => "arbiter take · SQLite sync=full",
            System::ArbiterSqliteNormal => "arbiter take · SQLite sync=normal",
            System::ArbiterPostgres => "arbiter take · PostgreSQL",
            System::Redis => "Redis GCRA Lua (EVALSHA)",
            System::HttpSqlite => "arbiter server, HTTP take · SQLite sync=full",
            System::HttpPostgres => "arbiter server, HTTP take · PostgreSQL",
            other => other.label(),
        }
    }

    /// The label for the CAS workload, where the peers do something else than for leases.
    fn cas_label(self) -> &'static str {
        match self {
            System::Redis => "Redis WATCH/MULTI/EXEC",
            System::PgTable => "PG UPDATE … WHERE version=$1",
            System::Etcd => "etcd txn on mod_revision",
            other => other.label(),
        }
    }

    /// The label for the append workload.
    fn append_label(self) -> &'static str {
        match self {
            System::Redis => "Redis XADD",
            System::PgTable => "PG INSERT (bigserial)",
            other => other.label(),
        }
    }

    /// The label for the queue workloads (push, and claim + done).
    fn queue_label(self, workload: Workload) -> &'static str {
        match (self, workload) {
            (System::Redis, Workload::QueuePush) => "Redis LPUSH",
            (System::Redis, _) => "Redis LMOVE + LREM ack",
            (System::PgTable, Workload::QueuePush) => "PG INSERT jobs row",
            (System::PgTable, _) => "PG SKIP LOCKED jobs table",
            (other, _) => other.label(),
        }
    }

    /// The label of this system in `workload`.
    pub fn label_for(self, workload: Workload) -> &'static str {
        match workload {
            Workload::Lease => self.label(),
            Workload::Cas => self.cas_label(),
            Workload::Append => self.append_label(),
            Workload::Limit => self.limit_label(),
            Workload::QueuePush | Workload::QueueWork => self.queue_label(workload),
        }
    }
}

/// Where every system lives for this run. Only loopback addresses (checked in `main`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Targets {
    /// arbiter store URLs.
    pub sqlite_full: String,
    pub sqlite_normal: String,
    pub arbiter_postgres: String,
    /// The peers.
    pub redis: String,
    /// PostgreSQL connection URL (without schema); the peers' tables live in `pg_schema`.
    pub postgres: String,
    pub pg_schema: String,
    pub etcd: String,
    /// The directory the file peer's files go in (one file per stream).
    pub file_dir: String,
    /// Prefix of every key and name this run creates (unique per run).
    pub prefix: String,
    /// The `arbiter serve` processes of this run (`http://ADDR/`), when started.
    pub http_sqlite: Option<String>,
    pub http_postgres: Option<String>,
    /// The bearer tokens of those servers (each store has its own; `None`: it runs with
    /// `--insecure-no-auth`). Never serialised: a worker gets its token in the environment
    /// ([`TOKEN_ENV`]), not on its command line, where any user's `ps` would show it.
    #[serde(skip)]
    pub http_token_sqlite: Option<String>,
    #[serde(skip)]
    pub http_token_postgres: Option<String>,
}

#[cfg(test)]
impl Targets {
    /// Targets that point nowhere, for a test to fill in the one system it talks to.
    pub fn nowhere() -> Targets {
        Targets {
            sqlite_full: String::new(),
            sqlite_normal: String::new(),
            arbiter_postgres: String::new(),
            redis: String::new(),
            postgres: String::new(),
            pg_schema: String::new(),
            etcd: String::new(),
            file_dir: String::new(),
            prefix: String::new(),
            http_sqlite: None,
            http_postgres: None,
            http_token_sqlite: None,
            http_token_postgres: None,
        }
    }
}

/// The variable a worker of an HTTP system finds its bearer token in.
pub const TOKEN_ENV: &str = "ARBITER_BENCH_TOKEN";

impl Targets {
    /// The server `system` talks to, and its token.
    pub fn server(&self, system: System) -> Option<(&str, Option<&str>)> {
        match system {
            System::HttpSqlite => self
                .http_sqlite
                .as_deref()
                .map(|url| (url, self.http_token_sqlite.as_deref())),
            System::HttpPostgres => self
                .http_postgres
                .as_deref()
                .map(|url| (url, self.http_token_postgres.as_deref())),
            _ => None,
        }
    }
}

/// What one worker process runs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkerSpec {
    pub workload: Workload,
    pub system: System,
    pub targets: Targets,
    /// Tag of the workload variant, part of every name so variants do not meet.
    pub tag: String,
    /// Lease names the clients spread over, or streams they append to (1: all on one).
    pub names: u32,
    /// Index of this worker's first client among all clients of the run (seeds, tokens).
    pub first_client: u32,
    /// Clients (connections, store handles) in this process.
    pub clients: u32,
    /// Operations each client does at most.
    pub ops_per_client: u64,
    /// Wall-clock cap from the start signal, in milliseconds.
    pub max_ms: u64,
    /// Untimed operations per client before reporting ready.
    pub warmup: u32,
    /// Lease TTL.
    pub ttl_ms: u64,
}

/// What a worker measured.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct WorkerReport {
    /// Latency of every timed operation, in microseconds.
    pub latencies_us: Vec<u32>,
    /// Operations that succeeded (lease granted; for CAS and appends every operation).
    pub ok: u64,
    /// Attempts (CAS: reads + conditional writes tried, one per try).
    pub attempts: u64,
    /// Successful operations done during warm-up (CAS: they incremented the counter too).
    pub warmup_ok: u64,
    /// From the start signal to the last client's end.
    pub elapsed_us: u64,
    /// Whether a client stopped at the wall-clock cap rather than its operation count.
    pub capped: bool,
    /// The first error that stopped a client, if any.
    pub error: Option<String>,
    /// Whether a client stopped because the queue was empty (`QueueWork`).
    #[serde(default)]
    pub drained: bool,
}
