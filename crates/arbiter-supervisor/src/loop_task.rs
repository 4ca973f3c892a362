//! One loop: standby until its lease is ours, then rounds on its schedule, recorded in the
//! store; consecutive failures back off.

use std::sync::Arc;
use std::time::Duration;

use arbiter_client::lease::{AcquireRequest, HeldLease};
use arbiter_config::{Config, LoopSpec};
use arbiter_core::loops::{LoopStatus, RoundStatus};
use arbiter_core::name::{LeaseName, LoopName};
use arbiter_core::{ErrorKind, Result};
use arbiter_store::RoundEnd;

use crate::{LoopStop, STORE_RETRY_MAX, STORE_RETRY_MIN, Shared, alert, git, github, logs, round, told_to_stop};

/// The loop's lease: `loop/<name>` (what a fleet view joins a loop's row with). A loop
/// name longer than 250 characters makes no valid lease name: bad input.
pub fn lease_name(name: &LoopName) -> Result<LeaseName> {
    Ok(arbiter_core::loops::lease_name(name)?)
}

/// [`run_loop`], started over (after a pause that backs off) when the store is unavailable
/// (unreachable, silent, past a statement deadline), so an outage does not end `watch`.
/// With `--rounds` (a bounded run, counted from the start) the error ends it instead.
/// `stop` ends the loop: the supervisor's shutdown, or the loop's removal from the config.
pub(crate) async fn run(shared: Arc<Shared>, name: LoopName, mut stop: LoopStop) -> Result<()> {
    let mut pause = STORE_RETRY_MIN;
    loop {
        let started = tokio::time::Instant::now();
        // An issues loop runs on every host, its issues made exclusive by its queue.
        let issues = spec(&shared.config(), &name).is_some_and(|s| s.issues.is_some());
        let result = if issues {
            crate::issues::run(shared.clone(), &name, stop.clone()).await
        } else {
            run_loop(&shared, &name, stop.clone()).await
        };
        match result {
            Err(e) if e.kind == ErrorKind::Unavailable && shared.options.rounds.is_none() => {
                if started.elapsed() > 2 * STORE_RETRY_MAX {
                    pause = STORE_RETRY_MIN;
                }
                tracing::warn!(loop_name = %name, error = %e, retry_in = ?pause, "the store is unavailable; retrying");
                tokio::select! {
                    () = tokio::time::sleep(pause) => {}
                    _ = told_to_stop(&mut stop) => return Ok(()),
                }
                pause = (pause * 2).min(STORE_RETRY_MAX);
            }
            other => return other,
        }
    }
}

/// One loop: standby until its lease is ours, then rounds on schedule.
async fn run_loop(shared: &Shared, name: &LoopName, mut stop: LoopStop) -> Result<()> {
    let store = &shared.store;
    let options = &shared.options;
    let ns = &shared.namespace;
    let holder = arbiter_process::holder_for(arbiter_process::current_pid(), &format!("watch:{name}"))?;
    let start = store
        .loops()
        .heartbeat(ns, name, LoopStatus::Idle, None, &holder)
        .await?;
    let target = options.rounds.map(|n| start.round + n as i64);
    let done = |round: i64| target.is_some_and(|t| round >= t);
    let mut rounds_here = 0u64;
    loop {
        if stop.borrow().is_some() {
            return Ok(());
        }
        // Standby: wait for the lease a few seconds at a time, watching for the end.
        let request = AcquireRequest {
            namespace: ns.clone(),
            name: lease_name(name)?,
            holder: holder.clone(),
            ttl: options.lease_ttl,
            slots: 1,
            wait: Some(Duration::from_secs(2)),
        };
        // On a loss the round's command gets at most a third of the TTL between TERM and
        // KILL (see `arbiter_client::lease::Deadlines`), whatever the loop's `grace`.
        let grace = spec(&shared.config(), name).map_or(Duration::ZERO, |l| l.grace);
        let held = tokio::select! {
            held = HeldLease::acquire(store, request, grace) => held,
            _ = told_to_stop(&mut stop) => return Ok(()),
        };
        let mut held = match held {
            Ok(held) => held,
            Err(e) if e.kind == ErrorKind::Held => {
                let (_, loops) = store.loops().status(ns).await?;
                if loops.iter().any(|l| l.name == *name && done(l.round)) {
                    return Ok(());
                }
                continue;
            }
            Err(e) => return Err(e),
        };
        tracing::info!(loop_name = %name, token = held.token(), "running the loop here");
        let result = hold_loop(shared, name, &mut held, &mut stop, done, &mut rounds_here).await;
        let _ = held.release().await;
        match result {
            Ok(Continue::Stop) => {
                let _ = store
                    .loops()
                    .heartbeat(ns, name, LoopStatus::Stopped, None, &holder)
                    .await;
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

/// The loop's spec in `config`, if it is configured there.
fn spec(config: &Config, name: &LoopName) -> Option<LoopSpec> {
    config.loops.iter().find(|l| l.name == name.as_str()).cloned()
}

enum Continue {
    Stop,
    Standby,
}

/// What the loop shows while it waits for its next round.
fn waiting(consecutive_failures: i64) -> LoopStatus {
    if consecutive_failures > 0 {
        LoopStatus::BackingOff
    } else {
        LoopStatus::Idle
    }
}

/// Runs rounds while the lease is held.
async fn hold_loop(
    shared: &Shared,
    name: &LoopName,
    held: &mut HeldLease,
    stop: &mut LoopStop,
    done: impl Fn(i64) -> bool,
    rounds_here: &mut u64,
) -> Result<Continue> {
    let store = &shared.store;
    let options = &shared.options;
    let ns = &shared.namespace;
    let holder = &held.lease().holder.clone();
    // The waiting state last written (idle or backing off, by a heartbeat or a round's
    // end): an idle wake writes one heartbeat that keeps it, and a second only when it is
    // wrong (a new supervisor took over a failing loop).
    let mut shown = LoopStatus::Idle;
    // The pause notices of the loop's identities (a run resolves them).
    let mut notice = github::PauseNotice::default();
    loop {
        if stop.borrow().is_some() {
            return Ok(Continue::Stop);
        }
        let config = shared.config();
        let Some(spec) = spec(&config, name) else {
            // A reload that removed it stops it too, and says so in its own line.
            tracing::info!(loop_name = %name, "the loop is no longer configured; stopping it");
            return Ok(Continue::Stop);
        };
        if !spec.enabled {
            store
                .loops()
                .heartbeat(ns, name, LoopStatus::Disabled, None, holder)
                .await?;
            if options.once || options.rounds.is_some() {
                return Ok(Continue::Stop);
            }
            tokio::select! {
                () = tokio::time::sleep(Duration::from_secs(2)) => continue,
                err = held.lost() => return Err(err),
                _ = told_to_stop(stop) => return Ok(Continue::Stop),
            }
        }
        let state = store.loops().heartbeat(ns, name, shown, None, holder).await?;
        if done(state.round) || (options.once && *rounds_here > 0) {
            return Ok(Continue::Stop);
        }
        // A paused or deferred loop is due: the gate below decides again (and waits), so a
        // reload that opts it out of the proxy runs it at once.
        let held_back = matches!(shown, LoopStatus::Paused | LoopStatus::Deferred);
        let wait_ms = if options.once || held_back {
            0
        } else {
            (state.next_run_at - state.heartbeat_at).max(0)
        };
        if wait_ms > 0 {
            let label = waiting(state.consecutive_failures);
            if label != shown {
                store.loops().heartbeat(ns, name, label, None, holder).await?;
                shown = label;
            }
            // Wake at least every 10 s to heartbeat and to pick up config changes.
            let nap = Duration::from_millis(wait_ms as u64).min(Duration::from_secs(10));
            tokio::select! {
                () = tokio::time::sleep(nap) => continue,
                err = held.lost() => return Err(err),
                _ = told_to_stop(stop) => return Ok(Continue::Stop),
            }
        }
        let remote = git::origin_remote(&spec.repo).await;
        let profile = config.profile_for(&spec, remote.as_deref());
        // Through the GitHub proxy: first ask whether its identity may spend now.
        let opted_in = Config::github_proxy(&spec, profile);
        let guard = opted_in.then(|| shared.github()).flatten();
        if opted_in && guard.is_none() {
            // A reload asked for a proxy that could not start (reported then): the loops
            // still run, without it, rather than wait for an edit nobody may make.
            tracing::warn!(loop_name = %name, "no GitHub proxy runs (it could not start): this round calls GitHub directly, unguarded");
        }
        if let Some(guard) = &guard {
            let held_back = github::held_back(shared, &config, &spec, name, guard, &mut notice, shown).await?;
            if let Some((label, until, now)) = held_back {
                store.loops().heartbeat(ns, name, label, Some(until), holder).await?;
                shown = label;
                let nap = Duration::from_millis((until - now).max(1) as u64).min(Duration::from_secs(10));
                tokio::select! {
                    () = tokio::time::sleep(nap) => continue,
                    err = held.lost() => return Err(err),
                    _ = told_to_stop(stop) => return Ok(Continue::Stop),
                }
            }
        }
        let log_dir = logs::loop_dir(&options.log_dir, ns, name)?;
        // Never a round without a confirmed lease: the store checks the token, and the
        // holder's own deadline rule may have counted it lost already.
        if let Some(err) = held.is_lost() {
            return Err(err);
        }
        let round = store
            .loops()
            .begin_round(ns, name, held.lease(), logs::round_log_namer(&log_dir))
            .await?;
        let log_path = logs::round_log(&log_dir, round);
        *rounds_here += 1;
        let github = match &guard {
            Some(guard) => Some(round::RoundGithub {
                api_url: guard.api_url().to_string(),
                socket: guard.socket(name).await,
            }),
            None => None,
        };
        let spent_before = guard.as_ref().map(|g| g.spend(name).0);
        let ctx = round::RoundContext {
            spec: &spec,
            profile,
            round,
            last_status: state.last_status.map_or("none", RoundStatus::as_str),
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
            default_gh_dir: options.gh_dir.join(ns.as_str()).join(name.as_str()),
            prompt_dir: log_dir.join("prompts"),
            github,
            live_sockets: match shared.github() {
                Some(running) => running.live_sockets(name).await,
                None => Vec::new(),
            },
            vars: Vec::new(),
            exclusive: true,
        };
        if let Some(guard) = &guard {
            guard.wrote(ctx.gh_dir());
        }
        let outcome = round::run(&ctx, held, stop)
            .await
            .unwrap_or_else(|e| round::Outcome::failed(e.message));
        // What the round spent: the proxy's count of its loop's socket, after less before.
        let (api_calls, github_logins) = match (&guard, spent_before) {
            (Some(guard), Some(before)) => {
                let (after, logins) = guard.spend(name);
                (Some(after.saturating_sub(before) as i64), logins)
            }
            _ => (None, Vec::new()),
        };
        drop(guard);
        let failures = if outcome.succeeded() {
            0
        } else {
            state.consecutive_failures + 1
        };
        let next_in = next_delay(&spec, failures);
        let label = waiting(failures);
        store
            .loops()
            .end_round(
                ns,
                name,
                RoundEnd {
                    round,
                    status: outcome.status,
                    exit_code: outcome.exit_code,
                    reason: outcome.reason.clone(),
                    consecutive_failures: failures,
                    next_in_ms: next_in.as_millis() as i64,
                    state: label,
                    api_calls,
                    github_logins,
                },
            )
            .await?;
        shown = label;
        logs::prune(&log_dir, spec.keep_logs);
        alert::round_ended(
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
            RoundStatus::Lost => return Ok(Continue::Standby),
            RoundStatus::Interrupted => return Ok(Continue::Stop),
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
