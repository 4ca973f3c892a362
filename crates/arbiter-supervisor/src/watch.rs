//! The top level of `arbiter watch`: a task per selected loop, the dispatcher while there
//! are channels, and reloads of an edited `arbiter.toml` applied to both.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use arbiter_config::{Config, LoopSpec};
use arbiter_core::name::{LoopName, Namespace};
use arbiter_core::{Error, Result};
use arbiter_store::Store;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

use crate::reload::{Changes, ConfigFile};
use crate::{Shared, StopReason, dispatcher, github, loop_task, stopped};

/// How the supervisor runs.
#[derive(Debug, Clone)]
pub struct Options {
    pub config_path: PathBuf,
    pub namespace: Namespace,
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
    /// This user's private runtime directory (0700): the GitHub proxy's sockets go in a
    /// directory of this supervisor's below it.
    pub runtime_dir: PathBuf,
}

/// How often the configuration file is looked at.
const RELOAD_EVERY: Duration = Duration::from_secs(1);

/// Runs the supervisor until every loop is done (`once`, `rounds`) or `shutdown` fires.
/// Without a bound it runs until `shutdown`, even when a reload leaves no loop.
pub async fn watch(store: Store, config: Config, options: Options, mut shutdown: watch::Receiver<bool>) -> Result<()> {
    for name in &options.loops {
        if !config.loops.iter().any(|l| &l.name == name) {
            let known: Vec<&str> = config.loops.iter().map(|l| l.name.as_str()).collect();
            return Err(Error::bad_input(format!(
                "--loop {name:?}: no such loop (configured: {})",
                known.join(", ")
            )));
        }
    }
    if selected(&config, &options).next().is_none() {
        return Err(Error::bad_input(format!(
            "{} declares no [loops.<name>]: nothing to watch",
            options.config_path.display()
        )));
    }
    let namespace = options.namespace.clone();
    let bounded = options.once || options.rounds.is_some();
    let mut file = ConfigFile::new(options.config_path.clone());
    let shared = Arc::new(Shared {
        store,
        options,
        namespace,
        config: RwLock::new(Arc::new(config)),
        github: RwLock::new(None),
    });
    let mut fleet = Fleet {
        shared: shared.clone(),
        tasks: JoinSet::new(),
        stops: HashMap::new(),
        dispatcher: None,
        stopping: Vec::new(),
        guards_started: 0,
    };
    let config = shared.config();
    // This host's capabilities, for `arbiter status` and the fleet's routing (issues loops
    // record them again at each listing).
    if !config.host.capabilities.is_empty() || config.loops.iter().any(|l| l.issues.is_some()) {
        crate::issues::register(&shared).await;
    }
    fleet.sync_github(&config).await?;
    for spec in selected(&config, &shared.options) {
        fleet.start_loop(spec)?;
    }
    fleet.sync_dispatcher(None, &config);
    let mut first_error = None;
    let mut shutting_down = false;
    let mut tick = tokio::time::interval(RELOAD_EVERY);
    tick.tick().await;
    loop {
        if fleet.tasks.is_empty() && (bounded || shutting_down || first_error.is_some()) {
            break;
        }
        tokio::select! {
            Some(result) = fleet.tasks.join_next() => match result {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "a loop stopped");
                    first_error.get_or_insert(e);
                }
                Err(e) => {
                    first_error.get_or_insert(Error::internal(format!("a loop task failed: {e}")));
                }
            },
            _ = tick.tick(), if !shutting_down => {
                if let Some(config) = file.edited() {
                    let config = Arc::new(config);
                    // A proxy that cannot start (its address is taken) is reported; the
                    // loops still run, and those that opt in meet no proxy.
                    let github = fleet.sync_github(&config).await.unwrap_or_else(|e| {
                        eprintln!("arbiter: the GitHub proxy: {}", e.message);
                        None
                    });
                    let mut changes = fleet.apply(config)?;
                    changes.github = github;
                    eprintln!("{}", changes.line(file.path()));
                }
            }
            () = stopped(&mut shutdown), if !shutting_down => {
                shutting_down = true;
                fleet.stop_all();
            }
        }
    }
    // The dispatcher stops with the loops (then drains what they queued) or on shutdown.
    fleet.stop_dispatcher();
    fleet.stop_github();
    for task in fleet.stopping {
        let _ = task.await;
    }
    first_error.map_or(Ok(()), Err)
}

/// The loops of `config` this supervisor runs (`--loop` selects some).
fn selected<'a>(config: &'a Config, options: &'a Options) -> impl Iterator<Item = &'a LoopSpec> {
    config
        .loops
        .iter()
        .filter(|l| options.loops.is_empty() || options.loops.contains(&l.name))
}

/// What runs: a task per loop, the dispatcher.
struct Fleet {
    shared: Arc<Shared>,
    tasks: JoinSet<Result<()>>,
    /// Each running loop's own stop (its removal, or the supervisor's shutdown).
    stops: HashMap<String, watch::Sender<Option<StopReason>>>,
    dispatcher: Option<dispatcher::Running>,
    /// Dispatchers told to stop, draining; GitHub proxies stopping once unused.
    stopping: Vec<JoinHandle<()>>,
    /// How many GitHub proxies this supervisor started (each has its own socket directory).
    guards_started: u32,
}

impl Fleet {
    fn start_loop(&mut self, spec: &LoopSpec) -> Result<()> {
        let name = LoopName::parse(&spec.name).map_err(|e| Error::internal(e.message))?;
        let (stop, stopped) = watch::channel(None);
        self.stops.insert(spec.name.clone(), stop);
        self.tasks.spawn(loop_task::run(self.shared.clone(), name, stopped));
        Ok(())
    }

    /// Stops a loop: its round finishes or stops as its `on_stop` says, then it releases
    /// its lease and records itself stopped.
    fn stop_loop(&mut self, name: &str) {
        if let Some(stop) = self.stops.remove(name) {
            let _ = stop.send(Some(StopReason::Removed));
        }
    }

    fn stop_all(&mut self) {
        for (_, stop) in self.stops.drain() {
            let _ = stop.send(Some(StopReason::Signalled));
        }
        self.stop_dispatcher();
    }

    fn stop_dispatcher(&mut self) {
        if let Some(running) = self.dispatcher.take() {
            self.stopping.push(running.stop());
        }
    }

    /// Starts, stops or restarts the dispatcher for `new` (`old`: the config it runs with).
    fn sync_dispatcher(&mut self, old: Option<&Config>, new: &Arc<Config>) -> Option<&'static str> {
        let wanted = !new.channels.is_empty();
        let what = match (self.dispatcher.is_some(), wanted) {
            (false, true) => "started",
            (true, false) => "stopped",
            (true, true) if old.is_some_and(|old| dispatcher::needs_restart(old, new)) => "restarted",
            _ => return None,
        };
        self.stop_dispatcher();
        if wanted {
            self.dispatcher = Some(dispatcher::Running::start(self.shared.clone(), new.clone()));
        }
        Some(what)
    }

    /// Starts, stops or restarts the GitHub proxy for `config`: it runs while any selected
    /// loop may opt in, with `[github]`'s settings.
    async fn sync_github(&mut self, config: &Config) -> Result<Option<&'static str>> {
        let wanted = config.may_use_github_proxy(selected(config, &self.shared.options).filter(|l| l.enabled));
        let running = self.shared.github();
        let what = match (&running, wanted) {
            (None, true) => "started",
            (Some(_), false) => "stopped",
            (Some(guard), true) if *guard.settings() != config.github => "restarted",
            _ => return Ok(None),
        };
        if wanted {
            self.guards_started += 1;
            let dir =
                self.shared
                    .options
                    .runtime_dir
                    .join(format!("watch-{}-{}", std::process::id(), self.guards_started));
            let guard = github::Guard::start(
                self.shared.store.clone(),
                self.shared.namespace.clone(),
                &config.github,
                dir,
            )
            .await?;
            if let Some(old) = self.shared.set_github(Some(Arc::new(guard))) {
                self.stopping.push(tokio::spawn(github::stop_when_unused(old)));
            }
        } else {
            self.stop_github();
        }
        Ok(Some(what))
    }

    /// Stops the GitHub proxy once the rounds using it have ended.
    fn stop_github(&mut self) {
        if let Some(old) = self.shared.set_github(None) {
            self.stopping.push(tokio::spawn(github::stop_when_unused(old)));
        }
    }

    /// Puts `config` in force: loops it adds start, loops it removes stop, changed loops
    /// run their new spec from their next round; the dispatcher follows the channels.
    fn apply(&mut self, config: Arc<Config>) -> Result<Changes> {
        let old = self.shared.config();
        let shared = self.shared.clone();
        let options = &shared.options;
        let before: Vec<&LoopSpec> = selected(&old, options).collect();
        let after: Vec<&LoopSpec> = selected(&config, options).collect();
        let mut changes = Changes::default();
        // Removed loops are told first, so none of them meets the new config running.
        for spec in &before {
            if !after.iter().any(|a| a.name == spec.name) {
                self.stop_loop(&spec.name);
                changes.removed.push(spec.name.clone());
            }
        }
        self.shared.set_config(config.clone());
        for spec in &after {
            match before.iter().find(|b| b.name == spec.name) {
                None => {
                    self.start_loop(spec)?;
                    changes.added.push(spec.name.clone());
                }
                // An issues loop's tasks (its claimers, how it is run at all) are set when
                // it starts: a change of its `[loops.X.issues]` starts it over.
                Some(was) if was.issues != spec.issues => {
                    self.stop_loop(&spec.name);
                    self.start_loop(spec)?;
                    changes.changed.push(spec.name.clone());
                }
                Some(was) if *was != *spec => changes.changed.push(spec.name.clone()),
                Some(_) => {}
            }
        }
        changes.dispatcher = self.sync_dispatcher(Some(&old), &config);
        Ok(changes)
    }
}
