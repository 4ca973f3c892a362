//! `arbiter queue …`: work items — push, claim, heartbeat, done, fail, list, show, stats,
//! retry — and `queue work`, which claims items and runs a command for each.
//!
//! Every command but `work` goes through [`Target`](super::target::Target) (the store's
//! `arbiter_ops::queue` function, or through `--server` the server's route). A
//! worker's capabilities are its `--capability` flags plus `[host] capabilities` of
//! arbiter.toml.

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arbiter_client::lease::{check_grace, default_grace, describe};
use arbiter_client::lock::LockCommand;
use arbiter_client::queue::{ItemOutcome, run_item};
use arbiter_config::Config;
use arbiter_core::lease::Holder;
use arbiter_core::name::{Capability, QueueName};
use arbiter_core::queue::{
    ClaimRequest, DEFAULT_MAX_ATTEMPTS, FailRequest, ItemState, MAX_BODY_BYTES, NewItem, NotBefore, capability_set,
};
use arbiter_core::{Error, ErrorKind, Result};
use arbiter_ops::queue::{self as ops, ItemView};
use arbiter_store::Store;
use clap::{Args, Subcommand};
use tokio::sync::watch;

use super::output::Output;
use super::{Global, parse_duration, shutdown_signal, typed};
use crate::exit;

/// How often `queue work` records its host's capabilities again (`arbiter status` shows
/// when each host was last seen).
const REGISTER_EVERY: Duration = Duration::from_secs(30);
/// The longest one wait for work lasts before a worker looks again (a wait wakes at every
/// change of the queues anyway; this only bounds one call).
const WAIT_CHUNK: Duration = Duration::from_secs(600);
/// How long a worker slot waits after a store error before it tries again.
const ERROR_PAUSE: Duration = Duration::from_secs(1);

/// The long help of `arbiter queue work`.
pub const WORK_ABOUT: &str = "\
Claim items of QUEUE and run CMD for each: exit 0 marks the item done, any other exit
fails it (ready again after --retry-in or its backoff, dead after its last attempt).

--parallel N slots each claim one item at a time (waiting on the store's change feed, never
polling) and run CMD with the item's body on standard input and ARBITER_ITEM_ID,
ARBITER_ITEM_TOKEN, ARBITER_ITEM_ATTEMPT, ARBITER_QUEUE, ARBITER_NAMESPACE and ARBITER_STORE
in its environment. The claim is kept alive while CMD runs, by the same rule as `arbiter
lock`: CMD runs in its own process group that dies with this process; if the claim is
lost, CMD's whole tree gets TERM, then KILL after --grace, and nothing is reported (the
token is stale). On SIGINT or SIGTERM the commands are stopped, their items given back
(ready again at once, the attempt counted) and arbiter exits 130.

--drain: exit 0 once nothing is left that this worker could claim: no item ready or
delayed for its capabilities, no claim outstanding that could come back, none of its own
slots busy (with --wait D: after D more without new work). Without --drain it runs until
stopped. The host's capabilities (--capability and [host] capabilities of arbiter.toml)
are recorded at start and every 30 s (`arbiter status` lists hosts).

Local only: `queue work` needs the store (not --server).";

#[derive(Debug, Subcommand)]
pub enum QueueCommand {
    /// Add an item to QUEUE and print its id (the same --key again prints the first id).
    Push(PushArgs),
    /// Claim one item: print its id, claim token and attempt, then its body (exit 3 if there
    /// is nothing to claim within --wait).
    Claim(ClaimArgs),
    /// Extend a held claim; a stale token fails with exit code 4 (lost), changing nothing.
    Heartbeat {
        /// The item id.
        #[arg(value_parser = parse_id)]
        id: i64,
        /// The claim token `queue claim` printed.
        #[arg(long, value_parser = parse_claim_token, allow_hyphen_values = true)]
        token: i64,
        /// How long the claim lasts from now.
        #[arg(long, value_parser = parse_lease, default_value = "5m", value_name = "DURATION", allow_hyphen_values = true)]
        lease: Duration,
    },
    /// Mark a claimed item done; a stale token fails with exit code 4 (lost), changing nothing.
    Done {
        /// The item id.
        #[arg(value_parser = parse_id)]
        id: i64,
        /// The claim token `queue claim` printed.
        #[arg(long, value_parser = parse_claim_token, allow_hyphen_values = true)]
        token: i64,
        /// A result to keep with the item (at most 64 KiB).
        #[arg(long, value_name = "TEXT", value_parser = parse_result)]
        result: Option<String>,
    },
    /// Report a claimed item failed: ready again after --retry-in (default: a backoff
    /// doubling from 10 s), or dead after its last attempt. A stale token exits 4.
    Fail {
        /// The item id.
        #[arg(value_parser = parse_id)]
        id: i64,
        /// The claim token `queue claim` printed.
        #[arg(long, value_parser = parse_claim_token, allow_hyphen_values = true)]
        token: i64,
        /// Why it failed (kept as the item's last error; at most 64 KiB).
        #[arg(long, value_name = "TEXT", value_parser = parse_reason)]
        reason: String,
        /// When to make it ready again (at most 30 days).
        #[arg(long, value_parser = parse_retry_in, value_name = "DURATION", allow_hyphen_values = true)]
        retry_in: Option<Duration>,
    },
    /// List items, newest first.
    List {
        /// Only this queue's items (default: every queue's).
        #[arg(value_parser = typed::<QueueName>)]
        queue: Option<QueueName>,
        /// Only items in this state: ready, claimed, done, dead or cancelled.
        #[arg(long, value_parser = typed::<ItemState>)]
        state: Option<ItemState>,
        /// At most this many (1 to 1000).
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=ops::MAX_LIST as i64), allow_hyphen_values = true)]
        limit: u32,
    },
    /// Show one item: its state, body, every claim of it (holders, outcomes) and last error.
    Show {
        /// The item id.
        #[arg(value_parser = parse_id)]
        id: i64,
    },
    /// Per queue: depth, delayed, claimed, dead, the oldest ready item's age, claims per minute.
    Stats,
    /// Bring a dead or cancelled item back to ready with a fresh set of attempts.
    Retry {
        /// The item id.
        #[arg(value_parser = parse_id)]
        id: i64,
    },
    /// Claim items and run a command for each; see `arbiter queue work --help`.
    #[command(long_about = WORK_ABOUT)]
    Work(WorkArgs),
}

#[derive(Debug, Args)]
pub struct PushArgs {
    /// The queue (a name: letters, digits and . _ - / : @).
    #[arg(value_parser = typed::<QueueName>)]
    queue: QueueName,
    /// The item's body (at most 1 MiB); or --body-file.
    #[arg(conflicts_with = "body_file", required_unless_present = "body_file")]
    body: Option<String>,
    /// Read the body from this file ("-" for standard input).
    #[arg(long, value_name = "FILE")]
    body_file: Option<PathBuf>,
    /// An idempotency key: pushing the same key into the queue again returns the first
    /// item, whatever its state.
    #[arg(long, value_name = "KEY", value_parser = parse_key)]
    key: Option<String>,
    /// Higher is claimed first (then oldest first).
    #[arg(long, default_value_t = 0, allow_hyphen_values = true)]
    priority: i32,
    /// Capabilities a worker must have to claim it (comma-separated or repeated).
    #[arg(long, value_name = "CAP,…", value_delimiter = ',', value_parser = typed::<Capability>)]
    requires: Vec<Capability>,
    /// Not claimable before: a duration from now (10m) or an RFC 3339 time.
    #[arg(long, value_name = "TIME", value_parser = parse_not_before, allow_hyphen_values = true)]
    not_before: Option<NotBefore>,
    /// Claims it gets before it is dead (1 to 1000).
    #[arg(long, default_value_t = DEFAULT_MAX_ATTEMPTS, value_parser = parse_max_attempts, allow_hyphen_values = true)]
    max_attempts: u32,
}

#[derive(Debug, Args)]
pub struct ClaimArgs {
    /// The queue.
    #[arg(value_parser = typed::<QueueName>)]
    queue: QueueName,
    /// Wait up to this long for an item (default: fail at once with exit 3).
    #[arg(long, value_parser = parse_duration, value_name = "DURATION", allow_hyphen_values = true)]
    wait: Option<Duration>,
    #[command(flatten)]
    worker: WorkerArgs,
}

/// What a worker offers: its claim lease and capabilities.
#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// How long a claim lasts without a heartbeat (100ms to 24h).
    #[arg(long, value_parser = parse_lease, default_value = "5m", value_name = "DURATION", allow_hyphen_values = true)]
    lease: Duration,
    /// A capability of this worker (repeatable), besides [host] capabilities of arbiter.toml.
    #[arg(long = "capability", value_name = "CAP", value_parser = typed::<Capability>)]
    capabilities: Vec<Capability>,
}

#[derive(Debug, Args)]
pub struct WorkArgs {
    /// The queue.
    #[arg(value_parser = typed::<QueueName>)]
    queue: QueueName,
    /// Items worked at once.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=256), allow_hyphen_values = true)]
    parallel: u32,
    #[command(flatten)]
    worker: WorkerArgs,
    /// Time CMD gets to exit after TERM before it is killed: at most a third of --lease
    /// (default: 10s, or a third of --lease if that is less).
    #[arg(long, value_parser = parse_duration, value_name = "DURATION", allow_hyphen_values = true)]
    grace: Option<Duration>,
    /// When a failed item is ready again (default: a backoff doubling from 10 s).
    #[arg(long, value_parser = parse_retry_in, value_name = "DURATION", allow_hyphen_values = true)]
    retry_in: Option<Duration>,
    /// Exit 0 once nothing is left to claim.
    #[arg(long)]
    drain: bool,
    /// With --drain: wait this long for new work before exiting.
    #[arg(long, requires = "drain", value_parser = parse_duration, value_name = "DURATION", allow_hyphen_values = true)]
    wait: Option<Duration>,
    /// The command and its arguments (after --).
    #[arg(last = true, required = true, value_name = "CMD")]
    command: Vec<OsString>,
}

fn parse_id(text: &str) -> std::result::Result<i64, String> {
    match text.parse::<i64>() {
        Ok(id) if id > 0 => Ok(id),
        _ => Err(format!(
            "invalid item id {text:?}: expected the positive integer `queue push` printed"
        )),
    }
}

fn parse_claim_token(text: &str) -> std::result::Result<i64, String> {
    match text.parse::<i64>() {
        Ok(token) if token > 0 => Ok(token),
        _ => Err(format!(
            "invalid claim token {text:?}: expected the positive integer `queue claim` printed"
        )),
    }
}

fn parse_key(text: &str) -> std::result::Result<String, String> {
    arbiter_core::queue::check_key(text).map_err(|e| e.message)?;
    Ok(text.to_string())
}

fn parse_result(text: &str) -> std::result::Result<String, String> {
    arbiter_core::queue::check_note("the result", text).map_err(|e| e.message)?;
    Ok(text.to_string())
}

fn parse_reason(text: &str) -> std::result::Result<String, String> {
    arbiter_core::queue::check_note("the reason", text).map_err(|e| e.message)?;
    Ok(text.to_string())
}

fn parse_lease(text: &str) -> std::result::Result<Duration, String> {
    arbiter_core::queue::check_lease(parse_duration(text)?).map_err(|e| e.message)
}

/// `--retry-in`: a delay, `0s` for at once.
fn parse_retry_in(text: &str) -> std::result::Result<Duration, String> {
    let delay = arbiter_core::duration::parse_duration_or_zero(text).map_err(|e| e.message)?;
    arbiter_core::queue::check_delay("retry delay", delay).map_err(|e| e.message)
}

fn parse_max_attempts(text: &str) -> std::result::Result<u32, String> {
    let n = text
        .parse::<u32>()
        .map_err(|_| format!("invalid max attempts {text:?}: expected a whole number from 1 to 1000"))?;
    arbiter_core::queue::check_max_attempts(n).map_err(|e| e.message)
}

/// `--not-before`: a duration from now by the store's clock (`10m`), or an RFC 3339 time.
fn parse_not_before(text: &str) -> std::result::Result<NotBefore, String> {
    ops::parse_not_before("--not-before", text).map_err(|e| e.message)
}

/// The capabilities a worker offers: `--capability` flags and `[host] capabilities`.
fn capabilities(flags: &[Capability], config: &Config) -> Result<Vec<Capability>> {
    capability_set(flags.iter().chain(&config.host.capabilities).cloned())
        .map_err(|e| Error::bad_input(format!("--capability: {}", e.message)))
}

pub async fn run(command: QueueCommand, global: &Global, out: Output) -> Result<i32> {
    let ns = &global.namespace;
    match command {
        QueueCommand::Push(args) => {
            let body = match (args.body, &args.body_file) {
                (Some(body), _) => {
                    arbiter_core::queue::check_body(&body)
                        .map_err(|e| Error::bad_input(format!("BODY: {}", e.message)))?;
                    body
                }
                (None, Some(path)) => super::log::read_body_at_most(path, MAX_BODY_BYTES)?,
                (None, None) => unreachable!("clap requires BODY or --body-file"),
            };
            let item = NewItem::new(
                ns.clone(),
                args.queue,
                body,
                args.key,
                args.priority,
                args.requires,
                args.not_before,
                args.max_attempts,
            )
            .map_err(|e| Error::bad_input(format!("--requires: {}", e.message)))?;
            let pushed = global.target().await?.queue_push(&item).await?;
            if out.json {
                out.print_json(&pushed);
            } else {
                println!("{}", pushed.id);
            }
        }
        QueueCommand::Claim(args) => {
            let config = super::notify::load_config(global)?;
            let request = ClaimRequest {
                namespace: ns.clone(),
                queue: args.queue.clone(),
                holder: arbiter_process::caller_holder("")?,
                capabilities: capabilities(&args.worker.capabilities, &config)?,
                lease: args.worker.lease,
            };
            let target = global.target().await?;
            let Some(claim) = target.queue_claim(&config, &request, args.wait).await? else {
                return Err(Error::new(
                    ErrorKind::Held,
                    format!(
                        "nothing to claim in queue {:?}{}",
                        args.queue.as_str(),
                        match args.wait {
                            Some(wait) => format!(" within {}", arbiter_core::duration::format_duration(wait)),
                            None => String::new(),
                        }
                    ),
                ));
            };
            if out.json {
                out.print_json(&claim);
            } else {
                println!("{}\t{}\t{}", claim.id, claim.token, claim.attempt);
                print!("{}", claim.body);
                if !claim.body.is_empty() && !claim.body.ends_with('\n') {
                    println!();
                }
            }
        }
        QueueCommand::Heartbeat { id, token, lease } => {
            let item = global.target().await?.queue_heartbeat(ns, id, token, lease).await?;
            if out.json {
                out.print_json(&item);
            } else {
                println!("{}", item.expires_at.as_deref().unwrap_or_default());
            }
        }
        QueueCommand::Done { id, token, result } => {
            let item = global
                .target()
                .await?
                .queue_done(ns, id, token, result.as_deref())
                .await?;
            if out.json {
                out.print_json(&item);
            }
        }
        QueueCommand::Fail {
            id,
            token,
            reason,
            retry_in,
        } => {
            let config = super::notify::load_config(global)?;
            let request = FailRequest {
                namespace: ns.clone(),
                id,
                token,
                reason,
                retry_in,
            };
            let item = global.target().await?.queue_fail(&config, &request).await?;
            if out.json {
                out.print_json(&item);
            } else {
                println!("{}", item.state);
            }
        }
        QueueCommand::List { queue, state, limit } => {
            let items = global
                .target()
                .await?
                .queue_list(ns, queue.as_ref(), state, limit as usize)
                .await?;
            if out.json {
                out.print_json(&items);
            } else {
                print_items(&items);
            }
        }
        QueueCommand::Show { id } => {
            let info = global.target().await?.queue_show(ns, id).await?;
            if out.json {
                out.print_json(&info);
            } else {
                print_item(&info);
            }
        }
        QueueCommand::Stats => {
            let config = super::notify::load_config(global)?;
            let stats = global.target().await?.queue_stats(&config, ns).await?;
            if out.json {
                out.print_json(&stats);
            } else {
                print_stats(&stats);
            }
        }
        QueueCommand::Retry { id } => {
            let item = global.target().await?.queue_retry(ns, id).await?;
            if out.json {
                out.print_json(&item);
            } else {
                println!("{}", item.state);
            }
        }
        QueueCommand::Work(args) => return work(args, global).await,
    }
    Ok(exit::SUCCESS)
}

fn print_items(items: &[ItemView]) {
    let p = arbiter_core::redact::printable;
    println!("ID\tQUEUE\tSTATE\tATTEMPT\tPRIORITY\tREQUIRES\tKEY\tUPDATED");
    for item in items {
        let requires: Vec<&str> = item.requires.iter().map(|c| c.as_str()).collect();
        println!(
            "{}\t{}\t{}\t{}/{}\t{}\t{}\t{}\t{}",
            item.id,
            p(&item.queue),
            item.state,
            item.attempt,
            item.max_attempts,
            item.priority,
            if requires.is_empty() {
                "-".to_string()
            } else {
                requires.join(",")
            },
            p(item.key.as_deref().unwrap_or("-")),
            item.updated_at,
        );
    }
}

fn print_item(info: &ops::ItemInfoView) {
    let p = arbiter_core::redact::printable;
    let item = &info.item;
    println!("id: {}", item.id);
    println!("queue: {}", p(&item.queue));
    println!("namespace: {}", item.namespace);
    println!("state: {}", item.state);
    println!("attempt: {} of {}", item.attempt, item.max_attempts);
    println!("priority: {}", item.priority);
    let requires: Vec<&str> = item.requires.iter().map(|c| c.as_str()).collect();
    println!(
        "requires: {}",
        if requires.is_empty() {
            "-".to_string()
        } else {
            requires.join(",")
        }
    );
    println!("key: {}", p(item.key.as_deref().unwrap_or("-")));
    println!("last token: {}", item.last_token);
    if let Some(holder) = &item.holder {
        println!(
            "held by: {} until {}",
            describe(holder),
            item.expires_at.as_deref().unwrap_or("-")
        );
    }
    println!("not before: {}", item.not_before);
    println!("created: {}", item.created_at);
    println!("updated: {}", item.updated_at);
    if let Some(result) = &item.result {
        println!("result: {}", p(result));
    }
    println!("last error: {}", p(item.last_error.as_deref().unwrap_or("-")));
    for a in &info.attempts {
        println!(
            "attempt {}: token {} {} from {} to {}: {}{}",
            a.attempt,
            a.token,
            describe(&a.holder),
            a.claimed_at,
            a.ended_at.as_deref().unwrap_or("(claimed)"),
            a.outcome.map_or("running", |o| o.as_str()),
            a.error.as_deref().map(|e| format!(" ({})", p(e))).unwrap_or_default(),
        );
    }
    println!("body:");
    print!("{}", item.body);
    if !item.body.is_empty() && !item.body.ends_with('\n') {
        println!();
    }
}

fn print_stats(stats: &[ops::QueueStatsView]) {
    let p = arbiter_core::redact::printable;
    let age = |ms: i64| arbiter_core::duration::format_duration(Duration::from_secs((ms.max(0) / 1000) as u64));
    println!("QUEUE\tDEPTH\tDELAYED\tCLAIMED\tEXPIRED\tDONE\tDEAD\tCANCELLED\tOLDEST\tCLAIMS/MIN");
    for s in stats {
        println!(
            "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
            p(&s.queue),
            s.depth,
            s.delayed,
            s.claimed,
            s.expired,
            s.done,
            s.dead,
            s.cancelled,
            s.oldest_ready_age_ms.map_or("-".to_string(), age),
            s.claims_last_minute,
        );
    }
}

/// What every slot of `queue work` shares.
struct Worker {
    store: Store,
    config: Arc<Config>,
    request: ClaimRequest,
    grace: Duration,
    argv: Vec<OsString>,
    store_url: String,
    guard_exe: PathBuf,
    retry_in: Option<Duration>,
    drain: bool,
    drain_wait: Option<Duration>,
    /// How many slots are running an item now.
    busy: watch::Sender<usize>,
    /// Set once SIGINT or SIGTERM arrived.
    stopping: watch::Receiver<bool>,
}

/// `queue work`: see [`WORK_ABOUT`].
async fn work(args: WorkArgs, global: &Global) -> Result<i32> {
    let lease = args.worker.lease;
    let grace = match args.grace {
        Some(grace) => {
            check_grace(lease, grace, "--grace", "--lease")?;
            grace
        }
        None => default_grace(lease),
    };
    let config = super::notify::load_config(global)?;
    let capabilities = capabilities(&args.worker.capabilities, &config)?;
    let guard_exe =
        std::env::current_exe().map_err(|e| Error::internal(format!("cannot find the arbiter executable: {e}")))?;
    let (store, url) = global.open().await?;
    let ns = global.namespace.clone();
    // This process holds the claims: it keeps them alive while the commands run.
    let holder: Holder = arbiter_process::holder_for(arbiter_process::current_pid(), "")?;
    let host = arbiter_process::host_name();
    ops::register_host(&store, &ns, &host, &capabilities).await?;
    let register = {
        let (store, ns, capabilities) = (store.clone(), ns.clone(), capabilities.clone());
        tokio::spawn(async move {
            // Bounded by the worker's life: aborted when it exits.
            loop {
                tokio::time::sleep(REGISTER_EVERY).await;
                if let Err(e) = ops::register_host(&store, &ns, &host, &capabilities).await {
                    tracing::warn!(error = %e, "could not record this host's capabilities");
                }
            }
        })
    };
    let (stop, stopping) = watch::channel(false);
    let signals = tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop.send(true);
    });
    let worker = Arc::new(Worker {
        store,
        config,
        request: ClaimRequest {
            namespace: ns,
            queue: args.queue,
            holder,
            capabilities,
            lease,
        },
        grace,
        argv: args.command,
        store_url: url.to_url(),
        guard_exe,
        retry_in: args.retry_in,
        drain: args.drain,
        drain_wait: args.wait,
        busy: watch::channel(0).0,
        stopping,
    });
    let mut slots = tokio::task::JoinSet::new();
    for _ in 0..args.parallel {
        slots.spawn(slot(worker.clone()));
    }
    while slots.join_next().await.is_some() {}
    register.abort();
    signals.abort();
    Ok(if *worker.stopping.borrow() {
        exit::interrupted(exit::SUCCESS)
    } else {
        exit::SUCCESS
    })
}

/// Resolves once the worker is told to stop.
async fn stopped(mut stopping: watch::Receiver<bool>) {
    let _ = stopping.wait_for(|stop| *stop).await;
}

/// One claim slot: claim, run, report, until stopped (or, with --drain, until nothing is
/// left to claim).
async fn slot(worker: Arc<Worker>) {
    let mut busy = worker.busy.subscribe();
    loop {
        if *worker.stopping.borrow() {
            return;
        }
        // One try first: with --drain, an empty answer may end the slot.
        let tried = arbiter_client::queue::claim(&worker.store, &worker.request, None).await;
        let result = match tried {
            Ok(result) => result,
            Err(e) => {
                pause_after(&worker, &e).await;
                continue;
            }
        };
        alert_dead(&worker, result.newly_dead).await;
        if let Some(grant) = result.grant {
            run_one(&worker, grant).await;
            continue;
        }
        busy.borrow_and_update();
        let idle = result.next_at.is_none() && *worker.busy.borrow() == 0;
        let wait = match (worker.drain, idle) {
            (true, true) => match worker.drain_wait {
                Some(wait) => wait,
                None => return,
            },
            _ => WAIT_CHUNK,
        };
        let waited = tokio::select! {
            waited = wait_for_work(&worker, wait, idle) => waited,
            // Another slot finished: with --drain, look again whether anything is left.
            _ = busy.changed(), if worker.drain => continue,
            () = stopped(worker.stopping.clone()) => return,
        };
        match waited {
            Ok(result) => {
                alert_dead(&worker, result.newly_dead).await;
                match result.grant {
                    Some(grant) => run_one(&worker, grant).await,
                    // --drain --wait D ran out idle.
                    None if worker.drain && idle => return,
                    None => {}
                }
            }
            Err(e) => pause_after(&worker, &e).await,
        }
    }
}

/// Waits up to `wait` for an item. With --drain and work still pending somewhere (`idle`
/// false), the wait also ends once nothing is pending any more, so the slot can exit.
async fn wait_for_work(worker: &Worker, wait: Duration, idle: bool) -> Result<arbiter_client::queue::ClaimResult> {
    if worker.drain && !idle {
        arbiter_client::queue::claim_or_idle(&worker.store, &worker.request, Some(wait)).await
    } else {
        arbiter_client::queue::claim(&worker.store, &worker.request, Some(wait)).await
    }
}

/// A store error in a slot: reported, then the slot tries again after a pause (a worker
/// outlives a store restart).
async fn pause_after(worker: &Worker, err: &Error) {
    eprintln!("arbiter: queue work: {}", err.message);
    tokio::select! {
        () = tokio::time::sleep(ERROR_PAUSE) => {}
        () = stopped(worker.stopping.clone()) => {}
    }
}

async fn alert_dead(worker: &Worker, newly_dead: u32) {
    if newly_dead == 0 {
        return;
    }
    if let Err(e) = ops::raise_dead_alerts(&worker.store, &worker.config, &worker.request.namespace).await {
        tracing::warn!(error = %e, "could not raise the queue.dead alert (the next claim or stats raises it)");
    }
}

/// Runs the command for one claim and reports how it ended, on stderr.
async fn run_one(worker: &Worker, grant: arbiter_client::queue::ClaimGrant) {
    let claim = &grant.claim;
    let (id, token) = (claim.id, claim.token);
    let env = vec![
        ("ARBITER_ITEM_ID".into(), id.to_string().into()),
        ("ARBITER_ITEM_TOKEN".into(), token.to_string().into()),
        ("ARBITER_ITEM_ATTEMPT".into(), claim.attempt.to_string().into()),
        ("ARBITER_QUEUE".into(), claim.queue.as_str().into()),
        ("ARBITER_NAMESPACE".into(), claim.namespace.as_str().into()),
        ("ARBITER_STORE".into(), worker.store_url.clone().into()),
    ];
    let command = LockCommand {
        argv: worker.argv.clone(),
        env,
        guard_exe: worker.guard_exe.clone(),
    };
    worker.busy.send_modify(|n| *n += 1);
    let outcome = run_item(
        &worker.store,
        grant,
        worker.grace,
        command,
        worker.retry_in,
        stopped(worker.stopping.clone()),
    )
    .await;
    let what = format!("arbiter: queue work: item {id} (token {token})");
    match outcome {
        Ok(ItemOutcome::Done(_)) => eprintln!("{what}: done"),
        Ok(ItemOutcome::Failed { status, item }) => {
            let reason = arbiter_client::queue::failure_reason(&status);
            match item.state {
                ItemState::Dead => {
                    eprintln!("{what}: failed ({reason}), dead after {} attempts", item.attempt);
                    alert_dead(worker, 1).await;
                }
                state => eprintln!("{what}: failed ({reason}), {state} again"),
            }
        }
        Ok(ItemOutcome::Lost(err)) => eprintln!("{what}: claim lost, command stopped: {}", err.message),
        Ok(ItemOutcome::Interrupted(_)) => eprintln!("{what}: stopped, item given back"),
        Err(err) => {
            eprintln!("{what}: {}", err.message);
            // Not started, or not waited for: do not spin on a command that cannot run.
            pause_after(worker, &err).await;
        }
    }
    worker.busy.send_modify(|n| *n -= 1);
}
