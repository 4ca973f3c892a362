//! The GitHub guard inside `watch`: one proxy (`arbiter_github::Proxy`) while any loop
//! opts in (`github_proxy = true` on the loop or its profile), stopped when a reload
//! leaves none and restarted when `[github]` changes.
//!
//! The proxy listens on loopback TCP (`ARBITER_GITHUB_API`, for agents' own HTTP
//! clients) and, on Unix, on one socket per opted-in loop in the supervisor's private
//! runtime directory, tagged with the loop's name so the calls of each loop are counted
//! apart: what a round spent is the difference of its loop's count before and after it.
//! Before each round, [`gate`] reads the buckets of the loop's identities from the store:
//! a frozen identity pauses the loop, a budget that would not cover the round defers it.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use arbiter_config::{Config, GithubSettings, LoopSpec};
use arbiter_core::github::{self, Budget, Gate, Round};
use arbiter_core::loops::LoopStatus;
use arbiter_core::name::{LoopName, Namespace};
use arbiter_core::{Millis, Result};
use arbiter_github::{Proxy, ProxyConfig};
use arbiter_store::Store;

use crate::{Shared, alert};

/// A running proxy and the sockets it serves loops on.
pub(crate) struct Guard {
    proxy: Proxy,
    /// `http://127.0.0.1:PORT`: `ARBITER_GITHUB_API`.
    api_url: String,
    settings: GithubSettings,
    /// This guard's own private directory of sockets (removed when it stops).
    #[cfg_attr(not(unix), allow(dead_code))]
    dir: PathBuf,
    #[cfg_attr(not(unix), allow(dead_code))]
    sockets: tokio::sync::Mutex<HashMap<LoopName, PathBuf>>,
    /// The `GH_CONFIG_DIR`s whose `config.yml` was given one of its sockets: when it
    /// stops, the key goes from those still naming it (no `gh` left pointing at a socket
    /// that is gone — a profile's directory may be the user's own).
    gh_dirs: std::sync::Mutex<std::collections::HashSet<PathBuf>>,
}

impl Guard {
    /// Starts the proxy with `settings`, listening on its loopback address; its sockets
    /// will live in `dir` (created 0700 by the first one).
    pub(crate) async fn start(
        store: Store,
        namespace: Namespace,
        settings: &GithubSettings,
        dir: PathBuf,
    ) -> Result<Guard> {
        #[cfg(unix)]
        {
            check_socket_room(&dir)?;
            if let Some(base) = dir.parent() {
                arbiter_process::private::private_dir(base)?;
                #[cfg(target_os = "linux")]
                sweep_dead(base);
            }
            arbiter_process::private::private_dir(&dir)?;
        }
        let started = Guard::listen(store, namespace, settings).await;
        let (proxy, addr) = match started {
            Ok(started) => started,
            Err(e) => {
                // Nothing of a proxy that did not start stays behind.
                let _ = std::fs::remove_dir(&dir);
                return Err(e);
            }
        };
        tracing::info!(api = %addr, "the GitHub proxy is running");
        Ok(Guard {
            proxy,
            api_url: format!("http://{addr}"),
            settings: settings.clone(),
            dir,
            sockets: tokio::sync::Mutex::new(HashMap::new()),
            gh_dirs: std::sync::Mutex::new(Default::default()),
        })
    }

    /// The proxy, started and listening on `[github] listen`.
    async fn listen(
        store: Store,
        namespace: Namespace,
        settings: &GithubSettings,
    ) -> Result<(Proxy, std::net::SocketAddr)> {
        let proxy = Proxy::start(
            store,
            ProxyConfig {
                upstream: settings.upstream.clone(),
                namespace,
                graphql_fresh: settings.graphql_fresh,
                graphql_max_age: settings.graphql_max_age,
                graphql_view_max_age: settings.graphql_view_max_age,
                max_wait: settings.max_wait,
                concurrency: settings.concurrency,
                source: arbiter_process::host_name(),
                ..ProxyConfig::default()
            },
        )
        .await?;
        let addr = match proxy.listen_tcp(settings.listen).await {
            Ok(addr) => addr,
            Err(mut e) => {
                proxy.shutdown().await;
                e.message = format!("[github] listen: {}", e.message);
                return Err(e);
            }
        };
        Ok((proxy, addr))
    }

    pub(crate) fn api_url(&self) -> &str {
        &self.api_url
    }

    pub(crate) fn settings(&self) -> &GithubSettings {
        &self.settings
    }

    /// The loop's socket, served from its first use on (`None` where there are no unix
    /// sockets: agents use `ARBITER_GITHUB_API` there).
    pub(crate) async fn socket(&self, name: &LoopName) -> Result<Option<PathBuf>> {
        #[cfg(unix)]
        {
            let mut sockets = self.sockets.lock().await;
            if let Some(path) = sockets.get(name) {
                return Ok(Some(path.clone()));
            }
            let path = self.dir.join(socket_file(name));
            self.proxy.listen_unix(&path, Some(name.clone())).await?;
            sockets.insert(name.clone(), path.clone());
            Ok(Some(path))
        }
        #[cfg(not(unix))]
        {
            let _ = name;
            Ok(None)
        }
    }

    /// The sockets it serves the loops other than `name` on.
    pub(crate) async fn live_sockets(&self, name: &LoopName) -> Vec<PathBuf> {
        let sockets = self.sockets.lock().await;
        sockets
            .iter()
            .filter(|(n, _)| *n != name)
            .map(|(_, p)| p.clone())
            .collect()
    }

    /// The upstream calls the proxy made for the loop's socket since it started, and the
    /// logins they were made as.
    pub(crate) fn spend(&self, name: &LoopName) -> (u64, Vec<String>) {
        let counters = self.proxy.counters(Some(name));
        (counters.upstream_calls, counters.identities)
    }

    /// Remembers that a round writes one of its sockets into `gh_dir`'s `config.yml`.
    pub(crate) fn wrote(&self, gh_dir: PathBuf) {
        self.gh_dirs.lock().unwrap_or_else(|p| p.into_inner()).insert(gh_dir);
    }

    /// Stops the proxy (its sockets removed, its last counts added to the store) and
    /// takes its sockets out of the gh configs it wrote them into.
    pub(crate) async fn stop(self) {
        self.proxy.shutdown().await;
        let _ = std::fs::remove_dir(&self.dir);
        let dirs = std::mem::take(&mut *self.gh_dirs.lock().unwrap_or_else(|p| p.into_inner()));
        let mine = |value: &str| std::path::Path::new(value).parent() == Some(self.dir.as_path());
        for gh_dir in dirs {
            if let Err(e) = crate::gh_config::unset_socket(&gh_dir, &mine) {
                tracing::warn!(dir = %gh_dir.display(), error = %e, "could not remove the proxy's socket from gh's config");
            }
        }
    }
}

/// Stops a guard once no round uses it any more (rounds hold it while they run).
pub(crate) async fn stop_when_unused(mut guard: Arc<Guard>) {
    loop {
        match Arc::try_unwrap(guard) {
            Ok(guard) => return guard.stop().await,
            Err(still_used) => {
                guard = still_used;
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
        }
    }
}

/// Removes what supervisors that died without stopping (`kill -9`, a crash) left in the
/// private runtime directory `base`: each `watch-<pid>-<n>` directory whose process runs
/// no more, with the sockets in it (nothing else: a directory holding anything but
/// sockets stays). Linux only (it reads `/proc`); elsewhere they stay until the temp
/// directory is cleaned. `base` is private (0700, ours), so nobody else put them there.
#[cfg(target_os = "linux")]
fn sweep_dead(base: &std::path::Path) {
    use std::os::unix::fs::FileTypeExt;
    let Ok(entries) = std::fs::read_dir(base) else { return };
    for entry in entries.filter_map(|e| e.ok()) {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("watch-"))
            .and_then(|rest| rest.split_once('-'))
            .and_then(|(pid, _)| pid.parse::<u32>().ok())
        else {
            continue;
        };
        // A link is not followed (file_type does not follow it); a live one is kept.
        let running = arbiter_process::procfs::stat(pid).is_some_and(|s| !s.is_gone());
        if running || pid == std::process::id() || !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let dir = entry.path();
        if let Ok(inside) = std::fs::read_dir(&dir) {
            for socket in inside.filter_map(|e| e.ok()) {
                if socket.file_type().is_ok_and(|t| t.is_socket()) {
                    let _ = std::fs::remove_file(socket.path());
                }
            }
        }
        if std::fs::remove_dir(&dir).is_ok() {
            tracing::info!(dir = %dir.display(), "removed the sockets of a supervisor that is gone");
        }
    }
}

/// The longest path a unix socket may have on every Unix arbiter runs on (`sun_path` is
/// 108 bytes on Linux, 104 on macOS, with its NUL).
#[cfg(unix)]
const MAX_SOCKET_PATH: usize = 103;

/// The longest socket file name [`socket_file`] makes.
#[cfg(unix)]
const MAX_SOCKET_FILE: usize = 16 + 1 + 16 + ".sock".len();

/// Refuses a socket directory so deep that a loop's socket could not be made in it: said
/// once when the proxy starts, rather than as the failure of every round.
#[cfg(unix)]
fn check_socket_room(dir: &std::path::Path) -> Result<()> {
    let longest = dir.as_os_str().len() + 1 + MAX_SOCKET_FILE;
    if longest <= MAX_SOCKET_PATH {
        return Ok(());
    }
    Err(arbiter_core::Error::bad_input(format!(
        "the GitHub proxy's socket directory {} is too long for a unix socket ({longest} bytes with a socket's name, at most {MAX_SOCKET_PATH}): set XDG_RUNTIME_DIR (or TMPDIR) to a shorter directory",
        dir.display()
    )))
}

/// A socket's file name: the loop's name, shortened with a hash when long (a socket's
/// path is limited to about 100 bytes).
#[cfg(unix)]
fn socket_file(name: &LoopName) -> String {
    let name = name.as_str();
    if name.len() <= 32 {
        return format!("{name}.sock");
    }
    let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    let head: String = name.chars().take(16).collect();
    format!("{head}-{hash:016x}.sock")
}

/// Every GitHub bucket of `namespace` of these logins, and the store's time.
pub(crate) async fn budgets(
    store: &Store,
    namespace: &Namespace,
    logins: &[String],
) -> Result<(Vec<Budget>, Option<Millis>)> {
    if logins.is_empty() {
        return Ok((Vec::new(), None));
    }
    let infos = store.limits().list(namespace).await?;
    let now = infos.first().map(|i| i.now);
    let budgets = infos
        .iter()
        .filter_map(Budget::from_bucket)
        .filter(|b| logins.contains(&b.login))
        .collect();
    Ok((budgets, now))
}

/// Whether the loop's next round may start: the rules of `arbiter_core::github::gate`
/// over its identities' buckets, its measured cost and the priorities of the loops that
/// go through the proxy. Its identities: the logins the proxy saw on its socket (`seen`),
/// and those its last measured round recorded (a new supervisor has seen none yet).
/// Also returns the store's time the buckets were read at (`None`: no bucket), and the
/// identities.
pub(crate) async fn gate(
    store: &Store,
    namespace: &Namespace,
    config: &Config,
    spec: &LoopSpec,
    name: &LoopName,
    mut logins: Vec<String>,
) -> Result<(Gate, Option<Millis>, Vec<String>)> {
    let rounds = store.loops().rounds(namespace, name, github::COST_ROUNDS * 2).await?;
    if let Some(last) = rounds.iter().find(|r| r.api_calls.is_some()) {
        logins.extend(last.github_logins.iter().cloned());
    }
    let logins = dedup(logins);
    let (budgets, now) = budgets(store, namespace, &logins).await?;
    let Some(now) = now else {
        return Ok((Gate::Run, None, logins));
    };
    let round = Round {
        cost: github::mean_cost(rounds.iter().map(|r| r.api_calls)),
        priority: spec.priority,
        fleet_priorities: config
            .loops
            .iter()
            .filter(|l| l.enabled && Config::github_proxy(l, config.profile_for(l, None)))
            .map(|l| l.priority)
            .collect(),
        reserve_percent: config.github.reserve_percent,
    };
    Ok((github::gate(&budgets, &round, now), Some(now), logins))
}

/// What a loop's holder knows of the pause notices of its identities.
#[derive(Debug, Default)]
pub(crate) struct PauseNotice {
    /// The identity this holder last paused the loop for (its notice was sent).
    sent: Option<String>,
    /// Whether the gate has been asked since this holder took the loop. Until then a
    /// notice may be open that an earlier holder sent (a supervisor restarted, or the
    /// lease moved to another host during the pause): the first run resolves those too.
    asked: bool,
}

/// Whether an opted-in loop's round must wait: `None` to run it, or what the loop shows
/// (`paused`, `deferred`), until when, and the store's time now. A pause sends the
/// identity's folded notice once per loop (`notice` remembers the login); the first run
/// after it resolves the notice — also one an earlier holder of the loop sent.
pub(crate) async fn held_back(
    shared: &Shared,
    config: &Config,
    spec: &LoopSpec,
    name: &LoopName,
    guard: &Guard,
    notice: &mut PauseNotice,
    shown: LoopStatus,
) -> Result<Option<(LoopStatus, Millis, Millis)>> {
    let (_, seen) = guard.spend(name);
    let (gate, now, logins) = gate(&shared.store, &shared.namespace, config, spec, name, seen).await?;
    let now = now.unwrap_or_default();
    let first = !std::mem::replace(&mut notice.asked, true);
    Ok(match gate {
        Gate::Run => {
            let sent = notice.sent.take();
            let open = match (first, sent) {
                (true, sent) => logins.into_iter().chain(sent).collect(),
                (false, sent) => sent.into_iter().collect::<Vec<_>>(),
            };
            for login in dedup(open) {
                alert::resumed(shared, config, &login).await;
            }
            None
        }
        Gate::Pause { login, until } => {
            if shown != LoopStatus::Paused {
                tracing::info!(loop_name = %name, %login, until, "paused: GitHub said to wait");
            }
            if notice.sent.as_deref() != Some(login.as_str()) {
                alert::paused(shared, config, spec, &login, until).await;
                notice.sent = Some(login);
            }
            Some((LoopStatus::Paused, until, now))
        }
        Gate::Defer {
            login,
            resource,
            need,
            left,
            until,
        } => {
            if shown != LoopStatus::Deferred {
                tracing::info!(
                    loop_name = %name, %login, %resource, need, left, until,
                    "deferred: the budget left would not cover a round"
                );
            }
            Some((LoopStatus::Deferred, until, now))
        }
    })
}

/// `logins` sorted, each once.
fn dedup(mut logins: Vec<String>) -> Vec<String> {
    logins.sort();
    logins.dedup();
    logins
}

#[cfg(all(test, unix))]
mod tests {
    #[test]
    fn a_socket_directory_too_deep_for_a_socket_is_refused_at_the_start() {
        let short = std::path::Path::new("/run/user/1000/arbiter/watch-4194304-1");
        super::check_socket_room(short).unwrap();
        let long =
            std::path::Path::new("/var/folders/zz/zyxvpxvq6csfxvn_n0000000000000/T/arbiter-someone/watch-12345-1");
        let err = super::check_socket_room(long).unwrap_err();
        assert!(
            err.message.contains("XDG_RUNTIME_DIR") && err.message.contains(&long.display().to_string()),
            "{}",
            err.message
        );
        // The longest name a loop's socket gets.
        let name = arbiter_core::name::LoopName::parse(&"x".repeat(200)).unwrap();
        assert_eq!(super::socket_file(&name).len(), super::MAX_SOCKET_FILE);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn the_sockets_of_a_dead_supervisor_are_swept_and_nothing_else() {
        use super::sweep_dead;
        let base = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        let make = |name: &str, socket: bool| {
            let dir = base.path().join(name);
            std::fs::create_dir(&dir).unwrap();
            if socket {
                std::os::unix::net::UnixListener::bind(dir.join("a.sock")).unwrap();
            }
            dir
        };
        let gone = make(&format!("watch-{dead}-1"), true);
        let live = make(&format!("watch-{}-1", std::process::id()), true);
        let init = make("watch-1-2", true);
        let other = make(&format!("watch-{dead}-2"), true);
        std::fs::write(other.join("notes.txt"), "mine").unwrap();
        let unrelated = make(&format!("keep-{dead}-1"), true);
        let target = make("target", true);
        std::os::unix::fs::symlink(&target, base.path().join(format!("watch-{dead}-3"))).unwrap();
        sweep_dead(base.path());
        assert!(!gone.exists(), "a dead supervisor's directory stayed");
        assert!(live.join("a.sock").exists() && init.join("a.sock").exists());
        // Its sockets went, what else it held stayed (and so did the directory).
        assert!(!other.join("a.sock").exists() && other.join("notes.txt").exists());
        assert!(unrelated.join("a.sock").exists() && target.join("a.sock").exists());
    }
}
