//! `arbiter watch`: the supervisor of agent loops.
//!
//! Every loop of `arbiter.toml` gets a task. The task competes for the loop's lease
//! `loop/<name>` — so the same config started on several machines runs each loop once, and
//! a standby takes over within the lease's TTL when the runner dies — and, while it holds
//! it, runs rounds on the loop's schedule. A round is started in the store *fenced by the
//! lease token* (a supervisor that lost its lease cannot start one), runs the command in
//! its own process group with the loop's isolated environment (see [`round`]), and is
//! recorded with its outcome. Consecutive failures back off exponentially (capped) and
//! raise a folded `loop.failure` notification (dedupe key `loop/<name>`); the first
//! success after them resolves it. The notification dispatcher runs inside the supervisor,
//! and an edited `arbiter.toml` is validated and applied between rounds (a broken edit is
//! reported and the old config keeps running).

pub mod round;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use arbiter_client::lease::{Acquire, HeldLease};
use arbiter_config::{Config, LoopSpec};
use arbiter_core::notify::{Notification, Severity};
use arbiter_core::{Error, ErrorKind, Result};
use arbiter_store::{RoundEnd, Store};
use tokio::sync::watch;

/// How the supervisor runs.
#[derive(Debug, Clone)]
pub struct Options {
    pub config_path: PathBuf,
    pub namespace: arbiter_core::name::Namespace,
    /// Only these loops (empty: all).
    pub loops: Vec<String>,
    /// Run one round of each loop now, then stop.
    pub once: bool,
    /// Stop each loop after this many rounds (counted in the store from when this
    /// supervisor started, so a standby stops too).
    pub rounds: Option<u64>,
    /// Round logs go to `<log_dir>/<namespace>/<loop>/<round>.log`.
    pub log_dir: PathBuf,
    /// Where loops without a profile keep their own `GH_CONFIG_DIR`.
    pub gh_dir: PathBuf,
    /// The executable of the process guard (the arbiter binary).
    pub guard_exe: PathBuf,
    /// `ARBITER_STORE` for the commands.
    pub store_url: String,
    /// The lease TTL of a loop (a dead supervisor's loops move elsewhere after it).
    pub lease_ttl: Duration,
}

struct Shared {
    store: Store,
    options: Options,
    config: RwLock<Arc<Config>>,
}

impl Shared {
    fn config(&self) -> Arc<Config> {
        self.config.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// Runs the supervisor until every loop is done (`once`, `rounds`) or `shutdown` fires.
pub async fn watch(store: Store, config: Config, options: Options, shutdown: watch::Receiver<bool>) -> Result<()> {
    let selected: Vec<LoopSpec> = config
        .loops
        .iter()
        .filter(|l| options.loops.is_empty() || options.loops.contains(&l.name))
        .cloned()
        .collect();
    for name in &options.loops {
        if !config.loops.iter().any(|l| &l.name == name) {
            let known: Vec<&str> = config.loops.iter().map(|l| l.name.as_str()).collect();
            return Err(Error::bad_input(format!(
                "--loop {name:?}: no such loop (configured: {})",
                known.join(", ")
            )));
        }
    }
    if selected.is_empty() {
        return Err(Error::bad_input(format!(
            "{} declares no [loops.<name>]: nothing to watch",
            options.config_path.display()
        )));
    }
    let shared = Arc::new(Shared {
        store,
        options,
        config: RwLock::new(Arc::new(config)),
    });
    let mut tasks = tokio::task::JoinSet::new();
    // The dispatcher stops with the loops (then drains what they queued) or on shutdown.
    let (loops_done, dispatcher_stop) = watch::channel(false);
    let mut forward = shutdown.clone();
    let forward_stop = loops_done.clone();
    tokio::spawn(async move {
        stopped(&mut forward).await;
        let _ = forward_stop.send(true);
    });
    let dispatcher = (!shared.config().channels.is_empty())
        .then(|| tokio::spawn(dispatcher_retrying(shared.clone(), dispatcher_stop)));
    tokio::spawn(reload(shared.clone(), shutdown.clone()));
    for spec in selected {
        tasks.spawn(run_loop_retrying(shared.clone(), spec.name.clone(), shutdown.clone()));
    }
    let mut first_error = None;
    while let Some(result) = tasks.join_next().await {
        match result {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::error!(error = %e, "a loop stopped");
                first_error.get_or_insert(e);
            }
            Err(e) => {
                first_error.get_or_insert(Error::internal(format!("a loop task failed: {e}")));
            }
        }
    }
    let _ = loops_done.send(true);
    if let Some(dispatcher) = dispatcher {
        let _ = dispatcher.await;
    }
    first_error.map_or(Ok(()), Err)
}

/// The first pause before a loop that met an unavailable store starts over; it doubles up
/// to [`STORE_RETRY_MAX`].
const STORE_RETRY_MIN: Duration = Duration::from_secs(1);
const STORE_RETRY_MAX: Duration = Duration::from_secs(30);

/// [`run_loop`], started over (after a pause that backs off) when the store is unavailable
/// (unreachable, silent, past a statement deadline), so an outage does not end `watch`.
/// With `--rounds` (a bounded run, counted from the start) the error ends it instead.
async fn run_loop_retrying(shared: Arc<Shared>, name: String, mut shutdown: watch::Receiver<bool>) -> Result<()> {
    let mut pause = STORE_RETRY_MIN;
    loop {
        let started = tokio::time::Instant::now();
        match run_loop(shared.clone(), name.clone(), shutdown.clone()).await {
            Err(e) if e.kind == ErrorKind::Unavailable && shared.options.rounds.is_none() => {
                if started.elapsed() > 2 * STORE_RETRY_MAX {
                    pause = STORE_RETRY_MIN;
                }
                tracing::warn!(loop_name = %name, error = %e, retry_in = ?pause, "the store is unavailable; retrying");
                tokio::select! {
                    () = tokio::time::sleep(pause) => {}
                    () = stopped(&mut shutdown) => return Ok(()),
                }
                pause = (pause * 2).min(STORE_RETRY_MAX);
            }
            other => return other,
        }
    }
}

/// One loop: standby until its lease is ours, then rounds on schedule.
async fn run_loop(shared: Arc<Shared>, name: String, mut shutdown: watch::Receiver<bool>) -> Result<()> {
    let store = &shared.store;
    let options = &shared.options;
    let ns = &options.namespace;
    let holder = arbiter_process::holder_for(arbiter_process::current_pid(), &format!("watch:{name}"))?;
    let start = store.loops().heartbeat(ns, &name, "idle", None, &holder).await?;
    let target = options.rounds.map(|n| start.round + n as i64);
    let done = |round: i64| target.is_some_and(|t| round >= t);
    let mut rounds_here = 0u64;
    loop {
        if *shutdown.borrow() {
            return Ok(());
        }
        // Standby: wait for the lease a few seconds at a time, watching for the end.
        let request = Acquire {
            namespace: ns.clone(),
            name: arbiter_core::name::LeaseName::parse(&format!("loop/{name}"))?,
            holder: holder.clone(),
            ttl: options.lease_ttl,
            slots: 1,
            wait: Some(Duration::from_secs(2)),
        };
        // On a loss the round's command gets at most a third of the TTL between TERM and
        // KILL (see `arbiter_client::lease::Deadlines`), whatever the loop's `grace`.
        let grace = shared
            .config()
            .loops
            .iter()
            .find(|l| l.name == name)
            .map_or(Duration::ZERO, |l| l.grace);
        let held = tokio::select! {
            held = HeldLease::acquire(store, request, grace) => held,
            () = crate::stopped(&mut shutdown) => return Ok(()),
        };
        let mut held = match held {
            Ok(held) => held,
            Err(e) if e.kind == ErrorKind::Held => {
                let (_, loops) = store.loops().status(ns).await?;
                if loops.iter().any(|l| l.name == name && done(l.round)) {
                    return Ok(());
                }
                continue;
            }
            Err(e) => return Err(e),
        };
        tracing::info!(loop_name = %name, token = held.token(), "running the loop here");
        let result = hold_loop(&shared, &name, &mut held, &mut shutdown, done, &mut rounds_here).await;
        let _ = held.release().await;
        match result {
            Ok(Continue::Stop) => {
                let _ = store.loops().heartbeat(ns, &name, "stopped", None, &holder).await;
                return Ok(());
            }
            Ok(Continue::Standby) => continue,
            Err(e) if e.kind == ErrorKind::Lost => {
                tracing::warn!(loop_name = %name, error = %e, "lost the loop's lease; standing by");
                continue;
            }
            Err(e) => return Err(e),
        }
    }
}

enum Continue {
    Stop,
    Standby,
}

/// Runs rounds while the lease is held.
async fn hold_loop(
    shared: &Shared,
    name: &str,
    held: &mut HeldLease,
    shutdown: &mut watch::Receiver<bool>,
    done: impl Fn(i64) -> bool,
    rounds_here: &mut u64,
) -> Result<Continue> {
    let store = &shared.store;
    let options = &shared.options;
    let ns = &options.namespace;
    let holder = &held.lease().holder.clone();
    // The waiting label last written ("idle" or "backing off", by a heartbeat or a round's
    // end): an idle wake writes one heartbeat that keeps it, and a second only when it is
    // wrong (a new supervisor took over a failing loop).
    let mut shown = "idle";
    loop {
        if *shutdown.borrow() {
            return Ok(Continue::Stop);
        }
        let config = shared.config();
        let Some(spec) = config.loops.iter().find(|l| l.name == name).cloned() else {
            tracing::warn!(loop_name = %name, "the loop is no longer configured; stopping it");
            return Ok(Continue::Stop);
        };
        if !spec.enabled {
            store.loops().heartbeat(ns, name, "disabled", None, holder).await?;
            if options.once || options.rounds.is_some() {
                return Ok(Continue::Stop);
            }
            tokio::select! {
                () = tokio::time::sleep(Duration::from_secs(2)) => continue,
                err = held.lost() => return Err(err),
                () = crate::stopped(shutdown) => return Ok(Continue::Stop),
            }
        }
        let state = store.loops().heartbeat(ns, name, shown, None, holder).await?;
        if done(state.round) || (options.once && *rounds_here > 0) {
            return Ok(Continue::Stop);
        }
        let wait_ms = if options.once {
            0
        } else {
            (state.next_run_at - state.heartbeat_at).max(0)
        };
        if wait_ms > 0 {
            let label = if state.consecutive_failures > 0 {
                "backing off"
            } else {
                "idle"
            };
            if label != shown {
                store.loops().heartbeat(ns, name, label, None, holder).await?;
                shown = label;
            }
            // Wake at least every 10 s to heartbeat and to pick up config changes.
            let nap = Duration::from_millis(wait_ms as u64).min(Duration::from_secs(10));
            tokio::select! {
                () = tokio::time::sleep(nap) => continue,
                err = held.lost() => return Err(err),
                () = crate::stopped(shutdown) => return Ok(Continue::Stop),
            }
        }
        let log_dir = options.log_dir.join(ns.as_str()).join(name);
        // 0700, and never through a planted link (round logs hold agent output and errors).
        arbiter_process::private::private_dir(&options.log_dir.join(ns.as_str()))?;
        arbiter_process::private::private_dir(&log_dir)?;
        let template = log_dir.join("{round}.log").to_string_lossy().into_owned();
        // Never a round without a confirmed lease: the store checks the token, and the
        // holder's own deadline rule may have counted it lost already.
        if let Some(err) = held.is_lost() {
            return Err(err);
        }
        let round = store.loops().begin_round(ns, held.lease(), &template).await?;
        let log_path = PathBuf::from(template.replace("{round}", &round.to_string()));
        *rounds_here += 1;
        let remote = origin_remote(&spec.repo).await;
        let profile = config.profile_for(&spec, remote.as_deref());
        let ctx = round::RoundContext {
            spec: &spec,
            profile,
            round,
            last_status: state.last_status.as_deref().unwrap_or("none"),
            log_path: &log_path,
            guard_exe: &options.guard_exe,
            arbiter_env: vec![
                ("ARBITER_LOOP".into(), name.to_string()),
                ("ARBITER_ROUND".into(), round.to_string()),
                ("ARBITER_LEASE_NAME".into(), held.name().to_string()),
                ("ARBITER_LEASE_TOKEN".into(), held.token().to_string()),
                ("ARBITER_NAMESPACE".into(), ns.to_string()),
                ("ARBITER_STORE".into(), options.store_url.clone()),
            ],
            default_gh_dir: options.gh_dir.join(ns.as_str()).join(name),
            prompt_dir: log_dir.join("prompts"),
        };
        let outcome = round::run(&ctx, held, shutdown).await;
        let outcome = match outcome {
            Ok(outcome) => outcome,
            Err(e) => round::Outcome {
                status: "failed",
                exit_code: None,
                reason: e.message,
            },
        };
        let failures = if outcome.succeeded() {
            0
        } else {
            state.consecutive_failures + 1
        };
        let next_in = next_delay(&spec, failures);
        let label = if failures > 0 { "backing off" } else { "idle" };
        store
            .loops()
            .end_round(
                ns,
                name,
                RoundEnd {
                    round,
                    status: outcome.status.to_string(),
                    exit_code: outcome.exit_code,
                    reason: outcome.reason.clone(),
                    consecutive_failures: failures,
                    next_in_ms: next_in.as_millis() as i64,
                    state: label.into(),
                },
            )
            .await?;
        shown = label;
        prune_logs(&log_dir, spec.keep_logs);
        alert(
            shared,
            &config,
            &spec,
            round,
            &outcome,
            state.consecutive_failures,
            failures,
        )
        .await;
        match outcome.status {
            "lost" => return Ok(Continue::Standby),
            "interrupted" => return Ok(Continue::Stop),
            _ => {}
        }
    }
}

/// When the loop runs next: its interval plus jitter after a success; after failures,
/// the interval doubled per consecutive failure, capped; never sooner than
/// `max_rounds_per_hour` allows.
pub fn next_delay(spec: &LoopSpec, failures: i64) -> Duration {
    let base = if failures == 0 {
        spec.every + spec.jitter.mul_f64(fastrand::f64())
    } else {
        let factor = 1u32.checked_shl(failures.clamp(0, 20) as u32).unwrap_or(u32::MAX);
        spec.every.saturating_mul(factor).min(spec.backoff_max.max(spec.every))
    };
    match spec.max_rounds_per_hour {
        Some(max) => base.max(Duration::from_secs(3600) / max),
        None => base,
    }
}

/// Resolves when `shutdown` says stop (the guard of the channel is not held across awaits).
pub(crate) async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// Raises (folded) or resolves the loop's failure notification.
async fn alert(
    shared: &Shared,
    config: &Config,
    spec: &LoopSpec,
    round: i64,
    outcome: &round::Outcome,
    failures_before: i64,
    failures: i64,
) {
    if config.routes.is_empty() {
        return;
    }
    let store = &shared.store;
    let ns = &shared.options.namespace;
    let key = format!("loop/{}", spec.name);
    let result = if outcome.succeeded() {
        if failures_before == 0 {
            return;
        }
        store
            .notify()
            .resolve(ns, &key, Some(&format!("round {round} succeeded")))
            .await
            .map(drop)
    } else {
        let mut tags = spec.tags.clone();
        tags.insert("loop".into(), spec.name.clone());
        let notification = Notification {
            kind: spec.kind.clone(),
            severity: if failures >= 3 {
                Severity::Critical
            } else {
                Severity::Warning
            },
            source: format!("arbiter watch on {}", arbiter_process::host_name()),
            title: format!("loop {} is failing", spec.name),
            body: format!(
                "round {round} {} ({failures} in a row): {}",
                outcome.status, outcome.reason
            ),
            tags,
            dedupe_key: Some(key),
        };
        arbiter_notify::accept(store, config, ns, notification, None)
            .await
            .map(drop)
    };
    if let Err(e) = result
        && e.kind != ErrorKind::NotFound
    {
        tracing::warn!(loop_name = %spec.name, error = %e, "could not queue the loop's notification");
    }
}

/// Keeps the newest `keep` round logs of a loop.
fn prune_logs(dir: &std::path::Path, keep: usize) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    let mut logs: Vec<(i64, PathBuf)> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.strip_suffix(".log")
                .and_then(|n| n.parse().ok())
                .map(|n| (n, e.path()))
        })
        .collect();
    logs.sort();
    let excess = logs.len().saturating_sub(keep);
    for (_, path) in logs.into_iter().take(excess) {
        let _ = std::fs::remove_file(path);
    }
}

/// `host/owner/repo` of the repository's `origin`, if it has one.
async fn origin_remote(repo: &std::path::Path) -> Option<String> {
    let output = tokio::process::Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(["remote", "get-url", "origin"])
        .output()
        .await
        .ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_string())
        .and_then(|url| arbiter_config::remote_path(&url))
}

/// [`dispatcher`], started again (after a pause that backs off like a loop's) when it
/// stopped before it was told to: the store was unavailable, or its lease was lost.
async fn dispatcher_retrying(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let mut pause = STORE_RETRY_MIN;
    loop {
        let started = tokio::time::Instant::now();
        dispatcher(shared.clone(), stop.clone()).await;
        if *stop.borrow() {
            return;
        }
        if started.elapsed() > 2 * STORE_RETRY_MAX {
            pause = STORE_RETRY_MIN;
        }
        tracing::warn!(retry_in = ?pause, "starting the notification dispatcher again");
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            () = stopped(&mut stop) => return,
        }
        pause = (pause * 2).min(STORE_RETRY_MAX);
    }
}

/// The notification dispatcher, inside the supervisor (standing by if another runs).
async fn dispatcher(shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    let dispatcher =
        arbiter_notify::dispatch::Dispatcher::new(shared.store.clone(), shared.config(), &shared.options.namespace);
    let held = tokio::select! {
        held = dispatcher.lease(Some(Duration::from_secs(365 * 86_400))) => held,
        () = crate::stopped(&mut shutdown) => return,
    };
    let Ok(mut held) = held else { return };
    let stop = async move { stopped(&mut shutdown).await };
    if let Err(e) = dispatcher.run(&mut held, false, stop).await {
        tracing::warn!(error = %e, "the notification dispatcher stopped");
    }
    // Deliver what the last rounds queued before leaving (bounded).
    let drain = dispatcher.run(&mut held, true, std::future::pending());
    if tokio::time::timeout(Duration::from_secs(10), drain).await.is_err() {
        tracing::warn!("notifications still pending at exit; the next dispatcher delivers them");
    }
    let _ = held.release().await;
}

/// Applies an edited `arbiter.toml` between rounds; a broken edit is reported and the old
/// configuration keeps running.
async fn reload(shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    let path = shared.options.config_path.clone();
    let modified = |p: &std::path::Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let mut seen = modified(&path);
    let mut reported: BTreeSet<String> = BTreeSet::new();
    loop {
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
            () = crate::stopped(&mut shutdown) => return,
        }
        let now = modified(&path);
        if now == seen {
            continue;
        }
        seen = now;
        match Config::from_file(&path) {
            Ok(config) => {
                tracing::info!(path = %path.display(), "configuration changed; applying it between rounds");
                *shared.config.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(config);
                reported.clear();
            }
            Err(e) => {
                if reported.insert(e.message.clone()) {
                    tracing::error!(error = %e, "the edited configuration is invalid; the old one keeps running");
                    eprintln!(
                        "arbiter: {}: the edited configuration is invalid; the old one keeps running",
                        e.message
                    );
                }
            }
        }
    }
}
