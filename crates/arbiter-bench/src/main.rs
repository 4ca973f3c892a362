//! `arbiter-bench`: arbiter's primitives side by side with what a user would pick instead —
//! Redis `SET NX PX`, PostgreSQL advisory/row locks and CAS, etcd leases and txns, a
//! PostgreSQL `INSERT`, Redis `XADD` or a shared file for the log, `governor` or a Redis
//! GCRA script for rate-limit decisions, a PostgreSQL `SKIP LOCKED` jobs table or a Redis
//! list (`LMOVE` + `LREM`) for work items — and a GitHub fleet replayed direct and through
//! arbiter's proxy, in one run on one machine, printed as one table with arbiter/peer ratios.
//!
//! Layout:
//! - `main` (this file): options, setup and cleanup of every system, the list of runs, the
//!   table.
//! - `driver`: one measured run — worker processes started together, reports merged.
//! - `worker`: the worker process (`arbiter-bench __worker SPEC`): clients, warm-up, loop.
//! - `systems`: one client per system and its operations (try-lock + release, CAS, append,
//!   limiter decision, work-item push and claim + done).
//! - `cli`: CLI call latency, one process at a time.
//! - `fleet`: the GitHub fleet replay (issue 14), in this process: the fake GitHub, arbiter's
//!   proxy in front of it, and every simulated client's loops.
//! - `stats`, `report`: percentiles; the table as text and Markdown.
//!
//! Every loop is bounded by an operation count and a wall-clock cap, and every address is
//! checked to be loopback before anything is sent.

mod cli;
mod driver;
mod fleet;
mod report;
mod server;
mod spec;
mod stats;
mod systems;
mod worker;

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use arbiter_store::{Store, StoreUrl};
use clap::Parser;

use crate::driver::Plan;
use crate::report::{Outcome, Role, Row};
use crate::spec::{System, Targets, Workload};
use crate::stats::Measurement;
use crate::systems::Client;

/// The hidden first argument that makes this binary a worker process.
pub const WORKER_ARG: &str = "__worker";

/// What the `--server` CLI rows say when the arbiter binary has no `--server` yet.
pub const NO_REMOTE_CLI: &str = "n/a — --server not built yet";

/// Benchmark arbiter against Redis, PostgreSQL and etcd; print one table with ratios.
///
/// Every address must be loopback. The peers must be running (`scripts/bench` starts them).
#[derive(Debug, Parser)]
#[command(name = "arbiter-bench")]
struct Args {
    /// Fewer operations and shorter caps: the same table in under a minute (a smoke check).
    #[arg(long)]
    quick: bool,
    /// Also write the table, with the machine it ran on, as Markdown to PATH.
    #[arg(long, value_name = "PATH")]
    markdown: Option<PathBuf>,
    /// Redis to compare with.
    #[arg(long, value_name = "URL", default_value = "redis://127.0.0.1:6379/")]
    redis: String,
    /// PostgreSQL to compare with, and to run arbiter's PostgreSQL store on (in a fresh
    /// schema `bench_…`, dropped at the end).
    #[arg(long, value_name = "URL", default_value = "postgres://postgres@127.0.0.1:5432/test")]
    postgres: String,
    /// etcd to compare with (used only when built with `--features etcd`).
    #[arg(long, value_name = "URL", default_value = "http://127.0.0.1:2379")]
    etcd: String,
    /// The arbiter binary for CLI latency (default: `arbiter` next to this binary, i.e.
    /// target/release/arbiter).
    #[arg(long, value_name = "PATH")]
    arbiter_bin: Option<PathBuf>,
    /// Where the SQLite files go (default: the temp directory). Use a real disk: the point
    /// is to measure fsync.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Clients of the contended workloads.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(2..=64))]
    clients: u32,
    /// Worker processes the clients of a run are spread over (default: one per client, as
    /// in a fleet of agent processes).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=64))]
    processes: Option<u32>,
    /// Run only the workloads whose name contains TEXT; repeat it for several
    /// (`--only "over HTTP" --only CLI`).
    #[arg(long, value_name = "TEXT")]
    only: Vec<String>,
    /// Simulated clients of the GitHub fleet replay, one run per number (each client its
    /// own GitHub user running 8 loops).
    #[arg(long, value_name = "N,N…", value_delimiter = ',', default_value = "1,100")]
    fleet_clients: Vec<u32>,
    /// How long GitHub's hour lasts in the fleet replay (default: 60s, or 2.4s per client
    /// when that is longer — 240s for 100 clients —, so one machine keeps up; with --quick
    /// 20s, or 1.2s per client): every GitHub duration — rate-limit windows, the rounds'
    /// interval, the proxy's buckets and GraphQL freshness window — is compressed alike.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    fleet_hour: Option<Duration>,
    /// Rounds per loop in the fleet replay (default 12, an hour; 2 with --quick).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1000))]
    fleet_rounds: Option<u32>,
    /// The stores the fleet replay's proxy keeps its buckets in, one replay each.
    #[arg(long, value_name = "STORE,…", value_delimiter = ',', default_value = "sqlite")]
    fleet_store: Vec<FleetStore>,
    /// Latency the fake GitHub adds to each answer in the fleet replay (not compressed).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration, default_value = "20ms")]
    fleet_latency: Duration,
    /// The proxy's `graphql_max_age` in the fleet replay, in GitHub time (compressed like
    /// the rest): how long a probed GraphQL answer may be served (the proxy's default).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration, default_value = "5m")]
    fleet_graphql_max_age: Duration,
    /// The proxy's `graphql_view_max_age` in the fleet replay (GitHub time): how long a
    /// probed answer about one issue or pull request may be served (the proxy's default).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration, default_value = "1h")]
    fleet_graphql_view_max_age: Duration,
    /// Rounds each loop runs through the proxy before the measured ones (default: as many
    /// as are measured, an hour — the proxy as it is after running a while; 0 with --quick):
    /// the proxy's row counts the hour after them, and its notes what the first hour
    /// spent. 0: measure the first hour, from an empty cache.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(0..=1000))]
    fleet_warmup_rounds: Option<u32>,
}

impl Args {
    /// Whether `--only` lets `workload` run.
    fn selects(&self, workload: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|only| workload.contains(only.as_str()))
    }
}

/// How much each run does.
#[derive(Debug, Clone, Copy)]
struct Budget {
    lease_ops_single: u64,
    lease_ops_contended: u64,
    cas_ops: u64,
    append_ops_single: u64,
    append_ops_contended: u64,
    limit_ops_single: u64,
    limit_ops_contended: u64,
    /// Items the push run pushes, and the claim + done run takes, at most.
    queue_ops: u64,
    max: Duration,
    warmup: u32,
    cli: cli::Budget,
}

impl Budget {
    fn new(quick: bool) -> Budget {
        if quick {
            Budget {
                lease_ops_single: 400,
                lease_ops_contended: 1_600,
                cas_ops: 320,
                append_ops_single: 400,
                append_ops_contended: 1_600,
                limit_ops_single: 400,
                limit_ops_contended: 1_600,
                queue_ops: 1_600,
                max: Duration::from_millis(600),
                warmup: 2,
                cli: cli::Budget {
                    iterations: 15,
                    max: Duration::from_millis(1_500),
                },
            }
        } else {
            Budget {
                lease_ops_single: 10_000,
                lease_ops_contended: 32_000,
                cas_ops: 8_000,
                append_ops_single: 10_000,
                append_ops_contended: 32_000,
                limit_ops_single: 20_000,
                limit_ops_contended: 64_000,
                queue_ops: 32_000,
                max: Duration::from_secs(5),
                warmup: 5,
                cli: cli::Budget {
                    iterations: 200,
                    max: Duration::from_secs(10),
                },
            }
        }
    }
}

const LEASE_TTL_MS: u64 = 30_000;

const LEASE_SYSTEMS: [System; 9] = [
    System::ArbiterSqliteFull,
    System::ArbiterSqliteNormal,
    System::ArbiterPostgres,
    System::Redis,
    System::PgAdvisory,
    System::PgRowLock,
    System::PgTable,
    System::Etcd,
    System::EtcdSession,
];

const CAS_SYSTEMS: [System; 6] = [
    System::ArbiterSqliteFull,
    System::ArbiterSqliteNormal,
    System::ArbiterPostgres,
    System::Redis,
    System::PgTable,
    System::Etcd,
];

const APPEND_SYSTEMS: [System; 6] = [
    System::ArbiterSqliteFull,
    System::ArbiterSqliteNormal,
    System::ArbiterPostgres,
    System::PgTable,
    System::Redis,
    System::File,
];

const LIMIT_SYSTEMS: [System; 7] = [
    System::ArbiterSqliteFull,
    System::ArbiterSqliteNormal,
    System::ArbiterPostgres,
    System::PermitsSqlite,
    System::PermitsPostgres,
    System::Governor,
    System::Redis,
];

/// The lease workload through arbiter's server: its two stores, beside etcd's gRPC and
/// Redis (network peers too) and the library on the same stores.
const HTTP_LEASE_SYSTEMS: [System; 7] = [
    System::HttpSqlite,
    System::HttpPostgres,
    System::ArbiterSqliteFull,
    System::ArbiterPostgres,
    System::Etcd,
    System::EtcdSession,
    System::Redis,
];

/// The limiter workload through arbiter's server, beside the library's take, `governor`
/// and the Redis GCRA script.
const HTTP_LIMIT_SYSTEMS: [System; 6] = [
    System::HttpSqlite,
    System::HttpPostgres,
    System::ArbiterSqliteFull,
    System::ArbiterPostgres,
    System::Governor,
    System::Redis,
];

/// Work items, beside PostgreSQL `SKIP LOCKED` on a plain jobs table (graphile-worker,
/// River) and the Redis reliable-queue pattern.
const QUEUE_SYSTEMS: [System; 5] = [
    System::ArbiterSqliteFull,
    System::ArbiterSqliteNormal,
    System::ArbiterPostgres,
    System::PgTable,
    System::Redis,
];

/// Work items through arbiter's server, beside the library on the same stores and the
/// peers of the direct rows.
const HTTP_QUEUE_SYSTEMS: [System; 6] = [
    System::HttpSqlite,
    System::HttpPostgres,
    System::ArbiterSqliteFull,
    System::ArbiterPostgres,
    System::PgTable,
    System::Redis,
];

/// The work-item workloads' names: the push run, and the claim + done run (`over_http`:
/// through arbiter's server).
fn queue_workload_names(clients: u32, over_http: bool) -> (String, String) {
    let via = if over_http { " · over HTTP" } else { "" };
    (
        format!("queue push{via} · {clients} clients, 1 queue"),
        format!("queue claim + done{via} · {clients} clients, 1 queue"),
    )
}

fn http_lease_workload(clients: u32, names: u32) -> String {
    let s = if names == 1 { "" } else { "s" };
    format!("lease · over HTTP · {clients} clients, {names} name{s}")
}

/// The row label of the CLI through the server of `system`.
fn server_cli_label(system: System) -> String {
    let store = system.label().rsplit(" · ").next().unwrap_or_default();
    format!("arbiter CLI --server · {store}")
}

fn http_limit_workload(clients: u32) -> String {
    format!("limiter decision · over HTTP · {clients} clients, 1 bucket")
}

fn main() -> ExitCode {
    let mut raw = std::env::args_os();
    if raw.nth(1).is_some_and(|a| a == WORKER_ARG) {
        let spec = raw.next().and_then(|s| s.into_string().ok()).unwrap_or_default();
        return worker::main(&spec);
    }
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("arbiter-bench: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("arbiter-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The arbiter binary the CLI rows run and the servers are (default: `arbiter` next to
/// this binary).
fn arbiter_bin(args: &Args) -> PathBuf {
    args.arbiter_bin.clone().unwrap_or_else(|| {
        std::env::current_exe()
            .ok()
            .and_then(|exe| exe.parent().map(|dir| dir.join("arbiter")))
            .unwrap_or_else(|| PathBuf::from("target/release/arbiter"))
    })
}

/// The host of `scheme://[user@]host[:port]/…`.
fn url_host(url: &str) -> Option<String> {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?']).next().unwrap_or("");
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
    if let Some(v6) = host_port.strip_prefix('[') {
        return v6.split_once(']').map(|(host, _)| host.to_string());
    }
    Some(host_port.split(':').next().unwrap_or("").to_string())
}

/// The port of `scheme://host:port/…`, or `default`.
fn url_port(url: &str, default: u16) -> u16 {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?']).next().unwrap_or("");
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
    let port = match host_port.rsplit_once(']') {
        Some((_, after)) => after.strip_prefix(':'),
        None => host_port.split_once(':').map(|(_, port)| port),
    };
    port.and_then(|p| p.parse().ok()).unwrap_or(default)
}

fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost") || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Refuses any address that is not on this machine's loopback.
fn check_loopback(args: &Args) -> Result<()> {
    for (what, url) in [("--redis", &args.redis), ("--etcd", &args.etcd)] {
        match url_host(url) {
            Some(host) if is_loopback(&host) => {}
            _ => bail!("{what} {url}: only loopback addresses (127.0.0.0/8, ::1, localhost) are benchmarked"),
        }
    }
    let config: tokio_postgres::Config = args.postgres.parse().context("--postgres")?;
    for host in config.get_hosts() {
        if let tokio_postgres::config::Host::Tcp(host) = host
            && !is_loopback(host)
        {
            bail!("--postgres: host {host} is not loopback; only loopback addresses are benchmarked");
        }
    }
    for addr in config.get_hostaddrs() {
        if !addr.is_loopback() {
            bail!("--postgres: hostaddr {addr} is not loopback");
        }
    }
    Ok(())
}

fn read_proc(path: &str, key: &str) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines()
        .find(|line| line.starts_with(key))
        .and_then(|line| line.split_once(':'))
        .map(|(_, value)| value.trim().to_string())
}

/// `/proc/loadavg`'s first three fields.
fn load_average() -> String {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    text.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}

/// The machine and versions, for the table's header.
fn machine(load_at_start: &str) -> Vec<String> {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let cpu = read_proc("/proc/cpuinfo", "model name").unwrap_or_else(|| "unknown CPU".into());
    let memory = read_proc("/proc/meminfo", "MemTotal")
        .and_then(|kb| kb.trim_end_matches(" kB").trim().parse::<u64>().ok())
        .map_or_else(|| "? GiB".to_string(), |kb| format!("{} GiB", kb / (1024 * 1024)));
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    vec![
        format!(
            "date: {}",
            humantime::format_rfc3339_seconds(SystemTime::now())
                .to_string()
                .replace('T', " ")
                .replace('Z', " UTC")
        ),
        format!(
            "machine: {cores} cores (nproc), {cpu}, {memory} RAM, Linux {}",
            kernel.trim()
        ),
        format!(
            "load average (1, 5, 15 min): {load_at_start} at the start, {} at the end (other work on the machine skews the numbers)",
            load_average()
        ),
    ]
}

/// Everything a run needs and what must be removed afterwards.
struct Setup {
    targets: Targets,
    /// Why a system cannot be measured, if it cannot.
    unavailable: HashMap<System, String>,
    _dir: tempfile::TempDir,
    versions: Vec<String>,
    /// The `arbiter serve` processes, stopped by `cleanup`.
    servers: Vec<server::ServerProcess>,
}

async fn open_store(url: &str) -> Result<Store> {
    Ok(Store::open(&StoreUrl::parse(url)?).await?)
}

async fn setup(args: &Args, prefix: &str, schema: &str) -> Result<Setup> {
    let base = args.dir.clone().unwrap_or_else(std::env::temp_dir);
    let dir = tempfile::Builder::new()
        .prefix("arbiter-bench-")
        .tempdir_in(&base)
        .with_context(|| format!("cannot make a directory in {}", base.display()))?;
    let sep = if args.postgres.contains('?') { '&' } else { '?' };
    let targets = Targets {
        sqlite_full: format!("sqlite://{}", dir.path().join("full.db").display()),
        sqlite_normal: format!("sqlite://{}?synchronous=normal", dir.path().join("normal.db").display()),
        arbiter_postgres: format!("{}{sep}schema={schema}", args.postgres),
        redis: args.redis.clone(),
        postgres: args.postgres.clone(),
        pg_schema: schema.to_string(),
        etcd: args.etcd.clone(),
        file_dir: dir.path().display().to_string(),
        prefix: prefix.to_string(),
        http_sqlite: None,
        http_postgres: None,
        http_token_sqlite: None,
        http_token_postgres: None,
    };
    let mut unavailable = HashMap::new();
    let mut versions = vec![format!(
        "SQLite {} (WAL; files in {})",
        rusqlite::version(),
        dir.path().display()
    )];

    // arbiter's stores: created and migrated here, once, before any worker opens them.
    for (system, url) in [
        (System::ArbiterSqliteFull, &targets.sqlite_full),
        (System::ArbiterSqliteNormal, &targets.sqlite_normal),
        (System::ArbiterPostgres, &targets.arbiter_postgres),
    ] {
        if let Err(e) = open_store(url).await {
            unavailable.insert(system, format!("unavailable: {e:#}"));
        }
    }
    for (permits, store) in [
        (System::PermitsSqlite, System::ArbiterSqliteFull),
        (System::PermitsPostgres, System::ArbiterPostgres),
    ] {
        if let Some(why) = unavailable.get(&store).cloned() {
            unavailable.insert(permits, why);
        }
    }

    // PostgreSQL peers: their tables in the same fresh schema.
    let pg = async {
        let client = systems::pg_connect(&targets.postgres, None).await?;
        client
            .batch_execute(&format!(
                "CREATE SCHEMA IF NOT EXISTS {schema}; SET search_path = {schema}; {}",
                systems::PG_SCHEMA_SQL
            ))
            .await?;
        systems::pg_describe(&targets.postgres).await
    };
    match pg.await {
        Ok(version) => versions.push(version),
        Err(e) => {
            for system in [System::PgAdvisory, System::PgRowLock, System::PgTable] {
                unavailable.insert(system, format!("unavailable: {e:#}"));
            }
        }
    }

    match systems::redis_version(&targets.redis).await {
        Ok(version) => versions.push(format!("Redis {version}")),
        Err(e) => {
            unavailable.insert(System::Redis, format!("unavailable: {e:#}"));
        }
    }

    if systems::ETCD_BUILT {
        match systems::etcd_version(&targets.etcd).await {
            Ok(version) => versions.push(format!("etcd {version}")),
            Err(e) => {
                for system in [System::Etcd, System::EtcdSession] {
                    unavailable.insert(system, format!("unavailable: {e:#}"));
                }
            }
        }
    } else {
        for system in [System::Etcd, System::EtcdSession] {
            unavailable.insert(system, systems::ETCD_SKIPPED.to_string());
        }
    }
    Ok(Setup {
        targets,
        unavailable,
        _dir: dir,
        versions,
        servers: Vec::new(),
    })
}

/// Starts an `arbiter serve` on each store for the HTTP and `--server` rows: SQLite
/// (sync=full) in a file of its own, so the direct rows' file is not shared with a
/// server's connections, and PostgreSQL in the run's schema.
async fn start_servers(setup: &mut Setup, bin: &Path) {
    let sqlite = format!("sqlite://{}", setup._dir.path().join("server.db").display());
    let postgres = setup.targets.arbiter_postgres.clone();
    for (system, store, url) in [
        (System::HttpSqlite, System::ArbiterSqliteFull, sqlite),
        (System::HttpPostgres, System::ArbiterPostgres, postgres),
    ] {
        if let Some(why) = setup.unavailable.get(&store).cloned() {
            setup.unavailable.insert(system, why);
            continue;
        }
        match server::ServerProcess::start(bin, &url).await {
            Ok(running) => {
                let (address, token) = (Some(running.url.clone()), Some(running.token.clone()));
                if system == System::HttpSqlite {
                    (setup.targets.http_sqlite, setup.targets.http_token_sqlite) = (address, token);
                } else {
                    (setup.targets.http_postgres, setup.targets.http_token_postgres) = (address, token);
                }
                setup.servers.push(running);
            }
            Err(e) => {
                setup.unavailable.insert(system, format!("unavailable: {e:#}"));
            }
        }
    }
    if !setup.servers.is_empty() {
        setup.versions.push(format!(
            "arbiter serve: {} as child processes on 127.0.0.1, each with its own store (SQLite file server.db, sync=full; the PostgreSQL schema above), clients sending a bearer token (namespace {}, write scopes)",
            bin.display(),
            systems::NAMESPACE
        ));
    }
}

async fn cleanup(setup: &mut Setup) -> Vec<String> {
    let mut problems = Vec::new();
    // The servers first: they hold connections to the schema dropped next.
    for running in std::mem::take(&mut setup.servers) {
        problems.extend(running.stop().await);
    }
    let targets = &setup.targets;
    let pg = async {
        let client = systems::pg_connect(&targets.postgres, None).await?;
        client
            .batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", targets.pg_schema))
            .await?;
        anyhow::Ok(())
    };
    if let Err(e) = pg.await {
        problems.push(format!("dropping schema {}: {e:#}", targets.pg_schema));
    }
    if !setup.unavailable.contains_key(&System::Redis)
        && let Err(e) = systems::redis_cleanup(&targets.redis, &targets.prefix).await
    {
        problems.push(format!("deleting Redis keys: {e:#}"));
    }
    if !setup.unavailable.contains_key(&System::Etcd)
        && let Err(e) = systems::etcd_cleanup(&targets.etcd, &targets.prefix).await
    {
        problems.push(format!("deleting etcd keys: {e:#}"));
    }
    problems
}

fn role(system: System) -> Role {
    match system {
        System::ArbiterSqliteFull => Role::ArbiterSqlite,
        System::ArbiterPostgres => Role::ArbiterPostgres,
        _ => Role::Other,
    }
}

/// Which rows a workload's ratio columns divide by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reference {
    /// arbiter through its library, on each store: every workload but the ones below.
    Library,
    /// arbiter's server on each store: the `over HTTP` workloads, whose question is what a
    /// client that is not Rust gets — beside etcd's gRPC and Redis, and beside the library
    /// (the ratio there is what HTTP costs).
    Server,
}

impl Reference {
    fn role(self, system: System) -> Role {
        match (self, system) {
            (Reference::Library, system) => role(system),
            (Reference::Server, System::HttpSqlite) => Role::ArbiterSqlite,
            (Reference::Server, System::HttpPostgres) => Role::ArbiterPostgres,
            (Reference::Server, _) => Role::Other,
        }
    }

    /// The row label of `system` in `workload`: beside the server, the library's rows say
    /// they are the library.
    fn label(self, system: System, workload: Workload) -> String {
        let label = system.label_for(workload);
        match (self, system) {
            (Reference::Server, System::ArbiterSqliteFull | System::ArbiterPostgres) => {
                format!("{label} (library, no server)")
            }
            _ => label.to_string(),
        }
    }
}

fn percent(part: u64, whole: u64) -> String {
    if whole == 0 {
        "0%".into()
    } else {
        format!("{:.0}%", part as f64 * 100.0 / whole as f64)
    }
}

/// Reads back what a CAS or append run left: the counter must equal the increments
/// acknowledged, the stream must hold exactly the records acknowledged.
async fn check_acknowledged(system: System, targets: &Targets, plan: &Plan, m: &Measurement) -> String {
    let expected = i64::try_from(m.ok + m.warmup_ok).unwrap_or(i64::MAX);
    let what = match plan.workload {
        Workload::Append => "records",
        _ => "counter",
    };
    let read = async {
        let mut client = Client::connect(system, targets, u32::MAX, LEASE_TTL_MS).await?;
        let found = match plan.workload {
            Workload::Append => {
                let mut records = 0;
                for stream in worker::names_of(&targets.prefix, &plan.tag, plan.names) {
                    records += client.count_records(&stream).await?;
                }
                i64::try_from(records)?
            }
            _ => {
                client
                    .read_counter(&worker::counter_key(&targets.prefix, &plan.tag))
                    .await?
            }
        };
        client.close().await?;
        anyhow::Ok(found)
    };
    match read.await {
        Ok(found) if found == expected => format!("{what} = {} as expected", report::thousands(m.ok + m.warmup_ok)),
        Ok(found) => format!("{} WRONG: {found}, expected {expected}", what.to_uppercase()),
        Err(e) => format!("{what} not checked: {e:#}"),
    }
}

/// Reads back what a work-item run left in its queue: `ready` items waiting and none
/// claimed, and (where the system keeps finished items) `done` finished.
async fn check_queue(system: System, targets: &Targets, plan: &Plan, ready: u64, done: u64) -> String {
    let read = async {
        let mut client = Client::connect(system, targets, u32::MAX, LEASE_TTL_MS).await?;
        let counts = client
            .queue_counts(&worker::queue_name(&targets.prefix, &plan.tag))
            .await?;
        client.close().await?;
        anyhow::Ok(counts)
    };
    let counts = match read.await {
        Ok(counts) => counts,
        Err(e) => return format!("queue not checked: {e:#}"),
    };
    let mut wrong = Vec::new();
    if counts.ready != ready {
        wrong.push(format!("{} ready, expected {ready}", counts.ready));
    }
    if counts.claimed != 0 {
        wrong.push(format!("{} still claimed, expected 0", counts.claimed));
    }
    if let Some(found) = counts.done
        && found != done
    {
        wrong.push(format!("{found} done, expected {done}"));
    }
    if !wrong.is_empty() {
        return format!("QUEUE WRONG: {}", wrong.join(", "));
    }
    let done = match counts.done {
        Some(found) => format!(", {} done", report::thousands(found)),
        None => String::new(),
    };
    format!(
        "queue holds {} ready, 0 claimed{done} as expected",
        report::thousands(ready)
    )
}

struct Runner<'a> {
    args: &'a Args,
    budget: Budget,
    setup: &'a Setup,
    rows: Vec<Row>,
    /// The fleet replays, for the goals printed under the table.
    fleet: Vec<(fleet::Plan, fleet::Via, fleet::Summary)>,
    /// Whether the arbiter binary has `--server`, or why not.
    server_cli: std::result::Result<(), String>,
    /// Items each system's push run left in its queue (pushed and not yet taken): what
    /// its claim + done run takes from.
    queued: HashMap<(System, String), u64>,
    done: usize,
    total: usize,
}

impl Runner<'_> {
    fn selected(&self, workload: &str) -> bool {
        self.args.selects(workload)
    }

    fn progress(&mut self, workload: &str, system: &str, outcome: &Outcome, took: Duration) {
        self.done += 1;
        let what = match outcome {
            Outcome::Measured(m) => format!(
                "{} ops/s, p50 {}, p99 {}",
                report::format_rate(m.ops_per_sec()),
                report::format_latency(m.percentile(50.0)),
                report::format_latency(m.percentile(99.0))
            ),
            Outcome::Empty(why) => why.clone(),
        };
        eprintln!(
            "[{:>2}/{}] {workload} · {system}: {what} ({:.1}s)",
            self.done,
            self.total,
            took.as_secs_f64()
        );
    }

    async fn measure(&mut self, workload: &str, plan: Plan, reference: Reference) {
        self.measure_row(workload, plan, reference, true).await;
    }

    /// Measures `plan`, and adds its row to the table when `record` (otherwise it only
    /// prepares another run, and says so on stderr).
    async fn measure_row(&mut self, workload: &str, plan: Plan, reference: Reference, record: bool) {
        let system = plan.system;
        let label = reference.label(system, plan.workload);
        let started = Instant::now();
        let (outcome, note) = if let Some(why) = self.setup.unavailable.get(&system) {
            (Outcome::Empty(why.clone()), String::new())
        } else {
            match driver::run(&plan, &self.setup.targets).await {
                Ok(m) if m.error.is_some() => (
                    Outcome::Empty(format!("failed: {}", m.error.clone().unwrap_or_default())),
                    String::new(),
                ),
                Ok(m) => {
                    let mut note = match plan.workload {
                        Workload::Lease => format!(
                            "granted {} ({}/{})",
                            percent(m.ok, m.ops),
                            report::thousands(m.ok),
                            report::thousands(m.ops)
                        ),
                        Workload::Cas => {
                            let tries = m.attempts as f64 / m.ops.max(1) as f64;
                            let counter = check_acknowledged(system, &self.setup.targets, &plan, &m).await;
                            format!("{tries:.1} tries/increment; {counter}")
                        }
                        Workload::Append => check_acknowledged(system, &self.setup.targets, &plan, &m).await,
                        Workload::Limit => format!(
                            "granted {} ({}/{})",
                            percent(m.ok, m.ops),
                            report::thousands(m.ok),
                            report::thousands(m.ops)
                        ),
                        Workload::QueuePush => {
                            let key = (system, plan.tag.clone());
                            let queued = self.queued.get(&key).copied().unwrap_or(0) + m.ok + m.warmup_ok;
                            self.queued.insert(key, queued);
                            check_queue(system, &self.setup.targets, &plan, queued, 0).await
                        }
                        Workload::QueueWork => {
                            let taken = m.ok + m.warmup_ok;
                            let key = (system, plan.tag.clone());
                            let queued = self.queued.get(&key).copied().unwrap_or(0);
                            let left = queued.saturating_sub(taken);
                            self.queued.insert(key, left);
                            let mut note = check_queue(system, &self.setup.targets, &plan, left, taken).await;
                            if m.drained {
                                note.push_str("; drained the queue");
                            }
                            note
                        }
                    };
                    if m.capped {
                        note.push_str(&format!("; stopped at the {}s cap", plan.max.as_secs_f64()));
                    }
                    (Outcome::Measured(m), note)
                }
                Err(e) => (Outcome::Empty(format!("failed: {e:#}")), String::new()),
            }
        };
        let shown = if record {
            label.clone()
        } else {
            format!("{label} (fills the queue; not in the table)")
        };
        self.progress(workload, &shown, &outcome, started.elapsed());
        if record {
            self.rows.push(Row {
                workload: workload.to_string(),
                system: label,
                role: reference.role(system),
                outcome,
                note,
            });
        }
    }

    /// The GitHub fleet replay for each number of clients: direct to the fake, then through
    /// arbiter's proxy, each on a fresh fake.
    async fn fleet_workloads(&mut self) {
        let quick = self.args.quick;
        for &clients in &self.args.fleet_clients.clone() {
            let rounds = self.args.fleet_rounds.unwrap_or(if quick { 2 } else { 12 });
            let plan = fleet::Plan {
                clients,
                loops: 8,
                rounds,
                hour: self.args.fleet_hour.unwrap_or_else(|| fleet_hour(quick, clients)),
                upstream_latency: self.args.fleet_latency,
                graphql_max_age: self.args.fleet_graphql_max_age,
                graphql_view_max_age: self.args.fleet_graphql_view_max_age,
                warmup: self.args.fleet_warmup_rounds.unwrap_or(if quick { 0 } else { rounds }),
            };
            let workload = format!(
                "GitHub fleet · {clients} client{} × {} loops × {} rounds × {} calls",
                if clients == 1 { "" } else { "s" },
                plan.loops,
                plan.rounds,
                fleet::CALLS_PER_ROUND
            );
            if !self.selected(&workload) {
                continue;
            }
            let mut direct_quota = None;
            let mut ways = vec![fleet::Via::Direct];
            ways.extend(
                self.args
                    .fleet_store
                    .iter()
                    .map(|store| fleet::Via::Arbiter(store.system())),
            );
            for via in ways {
                let started = Instant::now();
                let result = match via {
                    fleet::Via::Arbiter(store) if self.setup.unavailable.contains_key(&store) => {
                        Err(anyhow::anyhow!("{}", self.setup.unavailable[&store]))
                    }
                    _ => fleet::run(&plan, via, &self.setup.targets).await,
                };
                let (outcome, note) = match result {
                    Ok(o) => {
                        let note = fleet::note(&o, via, direct_quota, &plan);
                        if via == fleet::Via::Direct {
                            direct_quota = Some(o.quota());
                        }
                        self.fleet.push((plan, via, o.summary()));
                        (Outcome::Measured(o.measurement()), note)
                    }
                    Err(e) => (Outcome::Empty(format!("failed: {e:#}")), String::new()),
                };
                let label = via.label();
                self.progress(&workload, &label, &outcome, started.elapsed());
                self.rows.push(Row {
                    workload: workload.clone(),
                    system: label,
                    role: Role::Other,
                    outcome,
                    note,
                });
            }
        }
    }

    fn cli_row(&mut self, workload: &str, system: &str, role: Role, result: Result<Measurement>, took: Duration) {
        let outcome = match result {
            Ok(m) => Outcome::Measured(m),
            Err(e) => Outcome::Empty(format!("failed: {e:#}")),
        };
        let note = match &outcome {
            Outcome::Measured(m) if m.capped => format!("stopped at the {}s cap", self.budget.cli.max.as_secs_f64()),
            _ => String::new(),
        };
        self.progress(workload, system, &outcome, took);
        self.rows.push(Row {
            workload: workload.to_string(),
            system: system.to_string(),
            role,
            outcome,
            note,
        });
    }

    /// Measures each variant (a row label, a tag, clients, names or streams, operations) of
    /// `workload` on every one of `systems`.
    async fn measure_variants(
        &mut self,
        workload: Workload,
        systems: &[System],
        variants: Vec<Variant>,
        reference: Reference,
    ) {
        for (label, tag, clients, names, ops) in variants {
            if !self.selected(&label) {
                continue;
            }
            for &system in systems {
                let plan = Plan {
                    workload,
                    system,
                    tag: tag.to_string(),
                    names,
                    clients,
                    processes: self.args.processes.unwrap_or(clients).min(clients),
                    total_ops: ops * system.in_process_factor(),
                    max: self.budget.max,
                    warmup: self.budget.warmup,
                    ttl_ms: LEASE_TTL_MS,
                };
                self.measure(&label, plan, reference).await;
            }
        }
    }

    async fn lease_workloads(&mut self) {
        let (n, budget) = (self.args.clients, self.budget);
        let variants = vec![
            ("lease · 1 client".to_string(), "u", 1, 1, budget.lease_ops_single),
            (
                format!("lease · {n} clients, 1 name"),
                "c1",
                n,
                1,
                budget.lease_ops_contended,
            ),
            (
                format!("lease · {n} clients, 64 names"),
                "c64",
                n,
                64,
                budget.lease_ops_contended,
            ),
        ];
        self.measure_variants(Workload::Lease, &LEASE_SYSTEMS, variants, Reference::Library)
            .await;
        let over_http = [1, 64].map(|names| {
            (
                http_lease_workload(n, names),
                if names == 1 { "h1" } else { "h64" },
                n,
                names,
                budget.lease_ops_contended,
            )
        });
        self.measure_variants(
            Workload::Lease,
            &HTTP_LEASE_SYSTEMS,
            over_http.to_vec(),
            Reference::Server,
        )
        .await;
    }

    async fn cas_workload(&mut self) {
        let (n, budget) = (self.args.clients, self.budget);
        let variants = vec![(
            format!("CAS increment · {n} clients, 1 key"),
            "cas",
            n,
            1,
            budget.cas_ops,
        )];
        self.measure_variants(Workload::Cas, &CAS_SYSTEMS, variants, Reference::Library)
            .await;
    }

    /// Work items directly and through the server.
    async fn queue_workloads(&mut self) {
        self.queue_pair(&QUEUE_SYSTEMS, Reference::Library, "q").await;
        self.queue_pair(&HTTP_QUEUE_SYSTEMS, Reference::Server, "hq").await;
    }

    /// Work items on `systems`: 16 clients push into one queue (that run's row is the push
    /// rate), then 16 clients claim and finish what was pushed. The push run fills the
    /// queue, so it runs whenever the claim + done run is selected; its row is shown only
    /// when selected.
    async fn queue_pair(&mut self, systems: &[System], reference: Reference, tag: &str) {
        let (n, budget) = (self.args.clients, self.budget);
        let (push, work) = queue_workload_names(n, reference == Reference::Server);
        let (push_selected, work_selected) = (self.selected(&push), self.selected(&work));
        if !push_selected && !work_selected {
            return;
        }
        // Beside a server, a library row of the same store (the server's PostgreSQL schema)
        // takes a queue of its own: one queue for both would make each one's count wrong.
        let tag_of = |system: System| match (reference, system) {
            (Reference::Server, System::HttpSqlite | System::HttpPostgres) | (Reference::Library, _) => tag.to_string(),
            (Reference::Server, _) => format!("{tag}-lib"),
        };
        let plan = |workload, system| Plan {
            workload,
            system,
            tag: tag_of(system),
            names: 1,
            clients: n,
            processes: self.args.processes.unwrap_or(n).min(n),
            total_ops: budget.queue_ops,
            max: budget.max,
            warmup: budget.warmup,
            ttl_ms: LEASE_TTL_MS,
        };
        let plans: Vec<(Plan, Plan)> = systems
            .iter()
            .map(|&system| (plan(Workload::QueuePush, system), plan(Workload::QueueWork, system)))
            .collect();
        for (push_plan, _) in &plans {
            self.measure_row(&push, push_plan.clone(), reference, push_selected)
                .await;
        }
        if !work_selected {
            return;
        }
        for (_, work_plan) in plans {
            let system = work_plan.system;
            let queued = self.queued.get(&(system, work_plan.tag.clone())).copied().unwrap_or(0);
            if queued == 0 && !self.setup.unavailable.contains_key(&system) {
                let label = reference.label(system, Workload::QueueWork);
                let outcome = Outcome::Empty("skipped: its push run did not fill the queue".to_string());
                self.progress(&work, &label, &outcome, Duration::ZERO);
                self.rows.push(Row {
                    workload: work.clone(),
                    system: label,
                    role: reference.role(system),
                    outcome,
                    note: String::new(),
                });
                continue;
            }
            self.measure(&work, work_plan, reference).await;
        }
    }

    async fn append_workloads(&mut self) {
        let (n, budget) = (self.args.clients, self.budget);
        let variants = vec![
            (
                "log append · 1 client".to_string(),
                "a1",
                1,
                1,
                budget.append_ops_single,
            ),
            (
                format!("log append · {n} clients, 1 stream"),
                "a16",
                n,
                1,
                budget.append_ops_contended,
            ),
            (
                format!("log append · {n} clients, {n} streams"),
                "a16x",
                n,
                n,
                budget.append_ops_contended,
            ),
        ];
        self.measure_variants(Workload::Append, &APPEND_SYSTEMS, variants, Reference::Library)
            .await;
    }

    fn arbiter_bin(&self) -> PathBuf {
        arbiter_bin(self.args)
    }

    /// The CLI through the server of `system` (`ARBITER_SERVER`), or why its rows are empty.
    fn server_tryer(&self, system: System) -> std::result::Result<cli::Tryer, String> {
        self.server_cli.clone()?;
        if let Some(why) = self.setup.unavailable.get(&system) {
            return Err(why.clone());
        }
        match self.setup.targets.server(system) {
            Some((url, Some(token))) => Ok(cli::Tryer::arbiter_server(self.arbiter_bin(), url, token)),
            _ => Err(format!("unavailable: no server was started for {}", system.label())),
        }
    }

    /// redis-cli, or why its rows are empty.
    fn redis_cli(&self) -> std::result::Result<PathBuf, String> {
        match (cli::which("redis-cli"), self.setup.unavailable.get(&System::Redis)) {
            (_, Some(why)) => Err(why.clone()),
            (None, _) => Err("skipped: redis-cli is not installed".to_string()),
            (Some(path), None) => Ok(path),
        }
    }

    /// redis-cli at `bin` against this run's Redis.
    fn redis_tryer(&self, bin: PathBuf) -> cli::Tryer {
        let redis = &self.setup.targets.redis;
        cli::Tryer::RedisCli {
            bin,
            host: url_host(redis).unwrap_or_else(|| "127.0.0.1".into()),
            port: url_port(redis, 6379),
        }
    }

    /// Many scripts at once on a few names: `clients` concurrent callers, each one try-lock
    /// process (and a release process when granted) after another.
    async fn cli_contended(&mut self) {
        let callers = self.args.clients;
        let budget = self.budget.cli;
        // Full: 25 tries per caller (400 in all); --quick: 2.
        let per_caller = (budget.iterations / 8).max(2);
        let targets = self.setup.targets.clone();
        let bin = self.arbiter_bin();
        let redis_cli = self.redis_cli();
        for (names, tag) in [(1, "cc1"), (64, "cc64")] {
            let workload = format!(
                "CLI · {callers} concurrent callers, {names} name{}",
                if names == 1 { "" } else { "s" }
            );
            if !self.selected(&workload) {
                continue;
            }
            let lease_names = worker::names_of(&targets.prefix, tag, names);
            let mut tryers: Vec<(String, Role, std::result::Result<cli::Tryer, String>)> = Vec::new();
            for (system, url) in [
                (System::ArbiterSqliteFull, &targets.sqlite_full),
                (System::ArbiterSqliteNormal, &targets.sqlite_normal),
                (System::ArbiterPostgres, &targets.arbiter_postgres),
            ] {
                let label = format!("arbiter CLI · {}", system.label().trim_start_matches("arbiter · "));
                let tryer = match self.setup.unavailable.get(&system) {
                    Some(why) => Err(why.clone()),
                    None if !bin.is_file() => Err(format!("skipped: {} is not built", bin.display())),
                    None => Ok(cli::Tryer::arbiter_store(bin.clone(), url)),
                };
                tryers.push((label, role(system), tryer));
            }
            for system in [System::HttpSqlite, System::HttpPostgres] {
                tryers.push((server_cli_label(system), Role::Other, self.server_tryer(system)));
            }
            let redis = redis_cli.clone().map(|bin| self.redis_tryer(bin));
            tryers.push(("redis-cli SET NX PX (+ EVAL del)".to_string(), Role::Other, redis));
            for (label, role, tryer) in tryers {
                let started = Instant::now();
                let result = match tryer {
                    Ok(tryer) => cli::contended(&tryer, &lease_names, callers, per_caller, budget).await,
                    Err(why) => Err(anyhow::anyhow!("{why}")),
                };
                let (outcome, mut note) = match result {
                    Ok(m) => {
                        let note = format!(
                            "granted {} ({}/{})",
                            percent(m.ok, m.ops),
                            report::thousands(m.ok),
                            report::thousands(m.ops)
                        );
                        (Outcome::Measured(m), note)
                    }
                    Err(e) => (Outcome::Empty(format!("failed: {e:#}")), String::new()),
                };
                if let Outcome::Measured(m) = &outcome
                    && m.capped
                {
                    note.push_str(&format!("; stopped at the {}s cap", budget.max.as_secs_f64()));
                }
                self.progress(&workload, &label, &outcome, started.elapsed());
                self.rows.push(Row {
                    workload: workload.clone(),
                    system: label,
                    role,
                    outcome,
                    note,
                });
            }
        }
    }

    async fn cli_workloads(&mut self) {
        let start = "CLI · process start only (--version)";
        let acquire = "CLI · lease acquire (1 process)";
        let pair = "CLI · acquire + release";
        let budget = self.budget.cli;
        let targets = self.setup.targets.clone();
        let name = format!("{}cli", targets.prefix);
        let bin = self.arbiter_bin();
        let built = || {
            if bin.is_file() {
                Ok(())
            } else {
                Err(anyhow::anyhow!("skipped: {} is not built", bin.display()))
            }
        };
        let redis_cli = self.redis_cli();
        let etcdctl = cli::which("etcdctl").ok_or("skipped: etcdctl is not installed");

        if self.selected(start) {
            let started = Instant::now();
            let result = match built() {
                Ok(()) => cli::start_only(&bin, &["--version"], budget).await,
                Err(e) => Err(e),
            };
            self.cli_row(
                start,
                "arbiter --version",
                Role::ArbiterSqlite,
                result,
                started.elapsed(),
            );
            let started = Instant::now();
            let result = match &redis_cli {
                Ok(path) => cli::start_only(path, &["--version"], budget).await,
                Err(why) => Err(anyhow::anyhow!("{why}")),
            };
            self.cli_row(start, "redis-cli --version", Role::Other, result, started.elapsed());
            let started = Instant::now();
            let result = match &etcdctl {
                Ok(path) => cli::start_only(path, &["version"], budget).await,
                Err(why) => Err(anyhow::anyhow!("{why}")),
            };
            self.cli_row(start, "etcdctl version", Role::Other, result, started.elapsed());
        }
        if !self.selected(acquire) && !self.selected(pair) {
            return;
        }

        let mut acquire_rows = Vec::new();
        let mut pair_rows = Vec::new();
        for (system, url) in [
            (System::ArbiterSqliteFull, &targets.sqlite_full),
            (System::ArbiterSqliteNormal, &targets.sqlite_normal),
            (System::ArbiterPostgres, &targets.arbiter_postgres),
        ] {
            let started = Instant::now();
            let label = format!("arbiter CLI · {}", system.label().trim_start_matches("arbiter · "));
            let result = if let Some(why) = self.setup.unavailable.get(&system) {
                Err(anyhow::anyhow!("{why}"))
            } else {
                match built() {
                    Ok(()) => cli::sequential(&cli::Tryer::arbiter_store(bin.clone(), url), &name, budget).await,
                    Err(e) => Err(e),
                }
            };
            push_cli(&mut acquire_rows, &mut pair_rows, label, role(system), result, started);
        }
        for system in [System::HttpSqlite, System::HttpPostgres] {
            let started = Instant::now();
            let result = match self.server_tryer(system) {
                Ok(tryer) => cli::sequential(&tryer, &name, budget).await,
                Err(why) => Err(anyhow::anyhow!("{why}")),
            };
            let label = server_cli_label(system);
            push_cli(&mut acquire_rows, &mut pair_rows, label, Role::Other, result, started);
        }
        let started = Instant::now();
        let result = match &redis_cli {
            Ok(path) => cli::sequential(&self.redis_tryer(path.clone()), &name, budget).await,
            Err(why) => Err(anyhow::anyhow!("{why}")),
        };
        let label = "redis-cli SET NX PX (+ EVAL del)".to_string();
        push_cli(&mut acquire_rows, &mut pair_rows, label, Role::Other, result, started);
        let started = Instant::now();
        let result = match &etcdctl {
            Ok(path) => cli::etcdctl(path, &targets.etcd, &name, budget).await,
            Err(why) => Err(anyhow::anyhow!("{why}")),
        };
        let label = "etcdctl lock NAME true (1 process)".to_string();
        push_cli(&mut acquire_rows, &mut pair_rows, label, Role::Other, result, started);
        for (workload, rows) in [(acquire, acquire_rows), (pair, pair_rows)] {
            if !self.selected(workload) {
                continue;
            }
            for (label, role, result, took) in rows {
                self.cli_row(workload, &label, role, result, took);
            }
        }
    }

    /// Rate-limiter decisions: arbiter's `take` on each store and its `Permits` fast path,
    /// beside `governor` in memory and a Redis GCRA script.
    async fn limit_workloads(&mut self) {
        let (n, budget) = (self.args.clients, self.budget);
        let variants = vec![
            (
                "limiter decision · 1 client".to_string(),
                "l1",
                1,
                1,
                budget.limit_ops_single,
            ),
            (
                format!("limiter decision · {n} clients, 1 bucket"),
                "l16",
                n,
                1,
                budget.limit_ops_contended,
            ),
        ];
        self.measure_variants(Workload::Limit, &LIMIT_SYSTEMS, variants, Reference::Library)
            .await;
        let over_http = vec![(http_limit_workload(n), "hl16", n, 1, budget.limit_ops_contended)];
        self.measure_variants(Workload::Limit, &HTTP_LIMIT_SYSTEMS, over_http, Reference::Server)
            .await;
    }
}

/// A store for the fleet replay's proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum FleetStore {
    /// SQLite, sync=full (the default store).
    Sqlite,
    /// SQLite, sync=normal.
    SqliteNormal,
    /// PostgreSQL.
    Postgres,
}

impl FleetStore {
    fn system(self) -> System {
        match self {
            FleetStore::Sqlite => System::ArbiterSqliteFull,
            FleetStore::SqliteNormal => System::ArbiterSqliteNormal,
            FleetStore::Postgres => System::ArbiterPostgres,
        }
    }
}

/// The default length of GitHub's hour in the fleet replay: long enough for one machine to
/// run the fake, the proxy and every client's calls on schedule.
fn fleet_hour(quick: bool, clients: u32) -> Duration {
    let (least, per_client) = match quick {
        true => (Duration::from_secs(20), Duration::from_millis(1_200)),
        false => (Duration::from_secs(60), Duration::from_millis(2_400)),
    };
    least.max(per_client * clients)
}

type CliRows = Vec<(String, Role, Result<Measurement>, Duration)>;

/// One variant of a workload: its row label, its tag (part of every name it uses), clients,
/// names (lease names or streams) and operations in all.
type Variant = (String, &'static str, u32, u32, u64);

/// Files one system's CLI result under both CLI workloads (acquire alone only when the
/// system has a separate acquire call).
fn push_cli(
    acquire: &mut CliRows,
    pair: &mut CliRows,
    label: String,
    role: Role,
    result: Result<cli::CliResult>,
    started: Instant,
) {
    let took = started.elapsed();
    match result {
        Ok(r) => {
            if let Some(m) = r.acquire {
                acquire.push((label.clone(), role, Ok(m), took));
            }
            pair.push((label, role, Ok(r.pair), took));
        }
        Err(e) => {
            if !label.starts_with("etcdctl") {
                acquire.push((label.clone(), role, Err(anyhow::anyhow!("{e:#}")), took));
            }
            pair.push((label, role, Err(e), took));
        }
    }
}

async fn run(args: Args) -> Result<()> {
    check_loopback(&args)?;
    let started = Instant::now();
    let load_at_start = load_average();
    let budget = Budget::new(args.quick);
    let secs = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let pid = std::process::id();
    let prefix = format!("arbiter-bench/{pid}-{secs}/");
    let schema = format!("bench_{pid}_{secs}");

    let mut setup = setup(&args, &prefix, &schema).await?;
    let bin = arbiter_bin(&args);
    let server_cli = if bin.is_file() {
        cli::supports_server(&bin).await
    } else {
        Err(format!("skipped: {} is not built", bin.display()))
    };
    let n = args.clients;
    let selected = |workload: &str| args.selects(workload);
    let (http_push, http_work) = queue_workload_names(n, true);
    let over_http = [
        http_lease_workload(n, 1),
        http_lease_workload(n, 64),
        http_limit_workload(n),
        http_push,
        http_work,
    ];
    let cli_rows = [
        "CLI · lease acquire (1 process)".to_string(),
        "CLI · acquire + release".to_string(),
        format!("CLI · {n} concurrent callers, 1 name"),
        format!("CLI · {n} concurrent callers, 64 names"),
    ];
    if over_http.iter().any(|w| selected(w)) || (server_cli.is_ok() && cli_rows.iter().any(|w| selected(w))) {
        start_servers(&mut setup, &bin).await;
    }
    let mut runner = Runner {
        args: &args,
        budget,
        setup: &setup,
        rows: Vec::new(),
        fleet: Vec::new(),
        server_cli,
        queued: HashMap::new(),
        done: 0,
        total: LEASE_SYSTEMS.len() * 3
            + HTTP_LEASE_SYSTEMS.len() * 2
            + CAS_SYSTEMS.len()
            + APPEND_SYSTEMS.len() * 3
            + LIMIT_SYSTEMS.len() * 2
            + HTTP_LIMIT_SYSTEMS.len()
            + (QUEUE_SYSTEMS.len() + HTTP_QUEUE_SYSTEMS.len()) * 2
            + 16
            + 12,
    };
    let body = async {
        runner.lease_workloads().await;
        runner.cas_workload().await;
        runner.append_workloads().await;
        runner.cli_workloads().await;
        runner.cli_contended().await;
        runner.limit_workloads().await;
        runner.queue_workloads().await;
        runner.fleet_workloads().await;
    };
    let interrupted = tokio::select! {
        () = body => false,
        _ = tokio::signal::ctrl_c() => true,
    };
    let rows = std::mem::take(&mut runner.rows);
    let goals = fleet::goals(&runner.fleet);
    let problems = cleanup(&mut setup).await;
    for problem in &problems {
        eprintln!("cleanup: {problem}");
    }
    if interrupted {
        bail!("interrupted; cleaned up");
    }

    let mode = if args.quick { "--quick" } else { "full" };
    let processes = match args.processes {
        Some(p) => format!("{p} worker process(es) per contended run"),
        None => "one worker process per client".to_string(),
    };
    let mut header = machine(&load_at_start);
    header.push(format!(
        "mode: {mode} (runs capped at {}s each; {processes}; lease TTL {}s; took {:.0}s)",
        budget.max.as_secs_f64(),
        LEASE_TTL_MS / 1000,
        started.elapsed().as_secs_f64()
    ));
    header.extend(setup.versions.iter().cloned());

    println!();
    for line in &header {
        println!("{line}");
    }
    println!();
    print!("{}", report::text(&rows));
    println!();
    println!("{}", report::LEGEND);
    for line in &goals {
        println!("{line}");
    }
    if let Some(path) = &args.markdown {
        write_markdown(path, &header, &rows, &goals)?;
        println!("Markdown written to {}", path.display());
    }
    Ok(())
}

fn write_markdown(path: &Path, header: &[String], rows: &[Row], goals: &[String]) -> Result<()> {
    let mut text = String::new();
    for line in header {
        text.push_str(&format!("- {line}\n"));
    }
    text.push('\n');
    text.push_str(&report::markdown(rows));
    text.push('\n');
    text.push_str(report::LEGEND);
    text.push('\n');
    for line in goals {
        text.push_str(&format!("\n{line}\n"));
    }
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_and_ports_of_urls() {
        assert_eq!(url_host("redis://127.0.0.1:6379/").as_deref(), Some("127.0.0.1"));
        assert_eq!(url_host("http://[::1]:2379").as_deref(), Some("::1"));
        assert_eq!(url_host("redis://user:pw@localhost/0").as_deref(), Some("localhost"));
        assert_eq!(url_host("127.0.0.1:2379").as_deref(), Some("127.0.0.1"));
        assert_eq!(url_port("redis://127.0.0.1:6380/", 6379), 6380);
        assert_eq!(url_port("redis://127.0.0.1/", 6379), 6379);
        assert_eq!(url_port("http://[::1]:2379", 1), 2379);
    }

    #[test]
    fn over_http_the_server_rows_are_the_reference() {
        let server = Reference::Server;
        assert_eq!(server.role(System::HttpSqlite), Role::ArbiterSqlite);
        assert_eq!(server.role(System::HttpPostgres), Role::ArbiterPostgres);
        assert_eq!(server.role(System::ArbiterSqliteFull), Role::Other);
        assert_eq!(server.role(System::Etcd), Role::Other);
        assert_eq!(Reference::Library.role(System::ArbiterSqliteFull), Role::ArbiterSqlite);
        assert_eq!(Reference::Library.role(System::HttpSqlite), Role::Other);
        assert_eq!(
            server.label(System::ArbiterPostgres, Workload::Limit),
            "arbiter take · PostgreSQL (library, no server)"
        );
        assert_eq!(
            server.label(System::Redis, Workload::Lease),
            "Redis SET NX PX + Lua del"
        );
        assert_eq!(
            server_cli_label(System::HttpSqlite),
            "arbiter CLI --server · SQLite sync=full"
        );
        assert_eq!(
            server_cli_label(System::HttpPostgres),
            "arbiter CLI --server · PostgreSQL"
        );
    }

    #[test]
    fn only_selects_any_of_its_texts() {
        let all = Args::parse_from(["arbiter-bench"]);
        assert!(all.selects("CAS increment · 16 clients, 1 key"));
        let some = Args::parse_from(["arbiter-bench", "--only", "over HTTP", "--only", "CLI"]);
        assert!(some.selects("lease · over HTTP · 16 clients, 1 name"));
        assert!(some.selects("CLI · acquire + release"));
        assert!(!some.selects("lease · 16 clients, 1 name"));
    }

    #[test]
    fn only_queue_selects_both_work_item_runs() {
        let (push, work) = queue_workload_names(16, false);
        let (http_push, http_work) = queue_workload_names(16, true);
        let queue = Args::parse_from(["arbiter-bench", "--only", "queue"]);
        assert!(queue.selects(&push) && queue.selects(&work));
        assert!(queue.selects(&http_push) && queue.selects(&http_work));
        let http = Args::parse_from(["arbiter-bench", "--only", "over HTTP"]);
        assert!(http.selects(&http_work) && !http.selects(&work));
        let pairs = Args::parse_from(["arbiter-bench", "--only", "claim + done"]);
        assert!(pairs.selects(&work));
        assert!(!pairs.selects(&push), "the push run then fills the queue without a row");
        assert_eq!(
            Reference::Library.label(System::PgTable, Workload::QueueWork),
            "PG SKIP LOCKED jobs table"
        );
        assert_eq!(
            Reference::Library.label(System::Redis, Workload::QueueWork),
            "Redis LMOVE + LREM ack"
        );
        assert_eq!(Reference::Library.role(System::ArbiterPostgres), Role::ArbiterPostgres);
    }

    #[test]
    fn only_loopback() {
        assert!(is_loopback("127.0.0.1"));
        assert!(is_loopback("127.1.2.3"));
        assert!(is_loopback("::1"));
        assert!(is_loopback("localhost"));
        assert!(!is_loopback("10.0.0.1"));
        assert!(!is_loopback("example.com"));
        let mut args = Args::parse_from(["arbiter-bench"]);
        assert!(check_loopback(&args).is_ok());
        args.redis = "redis://192.168.1.5:6379/".into();
        assert!(check_loopback(&args).is_err());
        args.redis = "redis://127.0.0.1:6379/".into();
        args.postgres = "postgres://postgres@10.1.1.1/test".into();
        assert!(check_loopback(&args).is_err());
    }
}
