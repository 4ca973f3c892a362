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
//! success after them resolves it. The notification dispatcher runs inside the supervisor
//! while the config has channels, and an edited `arbiter.toml` is reloaded: added loops
//! start, removed ones stop (their round finishes or stops as `on_stop` says, their lease
//! is released), changed ones run their new spec from their next round, the dispatcher
//! starts, stops or restarts with the channels, and one line on stderr says what changed
//! (a broken edit is reported and the old config keeps running).
//!
//! Loops with `github_proxy = true` (or their profile's) call GitHub through one proxy
//! the supervisor runs (`arbiter-github`): `gh` through its `http_unix_socket` setting,
//! other clients through `ARBITER_GITHUB_API`. Each round records the upstream calls it
//! made; a round waits without failing while its identity is frozen by a rate limit
//! (`paused`, one folded notice) or while its budget would not cover it (`deferred`,
//! lower priorities first).
//!
//! Modules, one concern each:
//! - `watch`: the top level — the loop tasks, the dispatcher, applying a reload.
//! - `loop_task`: one loop — its lease, schedule, backoff, the rounds it records.
//! - [`round`]: one round — environment, credentials, prompt, process tree, timeout.
//! - `alert`: a loop's failure notification, raised and resolved.
//! - `logs`: where round logs go, and their retention.
//! - `git`: the repository's `origin`, for profile rules.
//! - `github`: the GitHub proxy while a loop opts in, its per-loop sockets and counts, and
//!   the gate before a round (paused while an identity is frozen, deferred while its
//!   budget would not cover the round).
//! - `gh_config`: the `http_unix_socket` key of a loop's own `gh` config.
//! - [`issues`]: loops whose rounds are GitHub issues — the lister, the claimers, a round
//!   per claimed issue fenced by its claim.
//! - `dispatcher`: the notification dispatcher inside the supervisor.
//! - `reload`: noticing an edited `arbiter.toml` and saying what changed.

mod alert;
mod dispatcher;
mod gh_config;
mod git;
mod github;
pub mod issues;
mod logs;
mod loop_task;
mod reload;
pub mod round;
mod watch;

use std::sync::{Arc, RwLock};
use std::time::Duration;

use arbiter_config::Config;
use arbiter_core::name::Namespace;
use arbiter_store::Store;
pub use loop_task::{lease_name, next_delay};
use tokio::sync::watch::Receiver;
pub use watch::{Options, watch};

/// What every task of one supervisor shares.
pub(crate) struct Shared {
    store: Store,
    options: Options,
    namespace: Namespace,
    config: RwLock<Arc<Config>>,
    /// The GitHub proxy, while a loop opts in.
    github: RwLock<Option<Arc<github::Guard>>>,
}

impl Shared {
    /// The configuration in force (replaced by a reload).
    fn config(&self) -> Arc<Config> {
        self.config.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn set_config(&self, config: Arc<Config>) {
        *self.config.write().unwrap_or_else(|p| p.into_inner()) = config;
    }

    /// The GitHub proxy in force, if one runs.
    fn github(&self) -> Option<Arc<github::Guard>> {
        self.github.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn set_github(&self, guard: Option<Arc<github::Guard>>) -> Option<Arc<github::Guard>> {
        std::mem::replace(&mut *self.github.write().unwrap_or_else(|p| p.into_inner()), guard)
    }
}

/// The first pause before a loop (or the dispatcher) that met an unavailable store starts
/// over; it doubles up to [`STORE_RETRY_MAX`].
const STORE_RETRY_MIN: Duration = Duration::from_secs(1);
const STORE_RETRY_MAX: Duration = Duration::from_secs(30);

/// Why a loop stops: what its stop channel says once it must.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// The supervisor was signalled (SIGINT, SIGTERM).
    Signalled,
    /// A reload removed the loop from the configuration.
    Removed,
}

impl StopReason {
    /// The reason an interrupted round records.
    pub fn says(self) -> &'static str {
        match self {
            StopReason::Signalled => "the supervisor was stopped",
            StopReason::Removed => "the loop was removed from the configuration",
        }
    }
}

/// A loop's stop channel: `None` while it runs.
pub type LoopStop = Receiver<Option<StopReason>>;

/// Resolves when the loop must stop, with why.
pub(crate) async fn told_to_stop(stop: &mut LoopStop) -> StopReason {
    // The guard is dropped before anything else is awaited.
    let reason = stop.wait_for(Option::is_some).await.map(|reason| *reason);
    match reason {
        Ok(reason) => reason.unwrap_or(StopReason::Signalled),
        // The sender is gone: nothing could stop the loop any more, so it stops now.
        Err(_) => StopReason::Signalled,
    }
}

/// Resolves when `shutdown` says stop (the guard of the channel is not held across awaits).
pub(crate) async fn stopped(shutdown: &mut Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}
