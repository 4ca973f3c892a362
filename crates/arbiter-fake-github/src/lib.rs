//! A fake GitHub API, modelled on GitHub's documentation of its REST and GraphQL rate limits
//! and of conditional requests — not on any proxy — for tests and benchmarks of clients that
//! must live within those limits.
//!
//! # Layout
//! - [`limits`]: primary budgets per user and resource, secondary limits (concurrency,
//!   points per minute, content creation), time compressed by the scale.
//! - [`seed`]: the repositories, issues, pull requests and comments it serves.
//! - [`rest`]: the REST routes and GitHub's JSON shapes.
//! - [`graphql`]: `POST /graphql`, a parser and an executor over a slice of GitHub's schema,
//!   and the query cost rule.
//! - `server`: the one handler: authentication, limits, ETags and 304s, headers.
//!
//! Every answer carries `x-ratelimit-limit`, `-remaining`, `-used`, `-reset` (Unix seconds)
//! and `-resource`, and `x-github-request-id`. Budgets are per user, shared by all of that
//! user's tokens; ETags are per token. `GET /_fake/stats` (no authentication) answers
//! [`Stats`] as JSON.

pub mod gh;
pub mod graphql;
pub mod limits;
pub mod rest;
pub mod seed;
mod server;
#[cfg(unix)]
mod unix;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub use limits::{Limits, UserStats};
pub use seed::{RepoSeed, Seed};

/// A GitHub account: its login, numeric id and the tokens that act as it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct User {
    pub login: String,
    #[serde(default)]
    pub id: u64,
    pub tokens: Vec<String>,
}

impl User {
    pub fn new(login: &str, id: u64, tokens: &[&str]) -> User {
        User {
            login: login.to_string(),
            id,
            tokens: tokens.iter().map(|t| t.to_string()).collect(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub users: Vec<User>,
    /// Time compression: 3600.0 makes GitHub's hour last one real second (windows, resets
    /// and `retry-after` alike). 1.0 is real time.
    pub scale: f64,
    pub limits: Limits,
    /// Added to every authenticated request, while it counts as in flight.
    pub latency: Duration,
    pub seed: Seed,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            users: Vec::new(),
            scale: 1.0,
            limits: Limits::default(),
            latency: Duration::ZERO,
            seed: Seed::default(),
        }
    }
}

impl Config {
    /// What is wrong with it, naming the setting; ids of 0 become their position from 1.
    pub fn validate(&mut self) -> Result<(), String> {
        if !(self.scale.is_finite() && self.scale > 0.0) {
            return Err(format!("scale: expected a positive number, got {}", self.scale));
        }
        if self.limits.status != 403 && self.limits.status != 429 {
            return Err(format!(
                "limits.status: expected 403 or 429, got {}",
                self.limits.status
            ));
        }
        let mut tokens = std::collections::HashSet::new();
        for (i, user) in self.users.iter_mut().enumerate() {
            let valid = !user.login.is_empty() && user.login.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
            if !valid {
                return Err(format!(
                    "users[{i}].login: expected letters, digits and '-', got {:?}",
                    user.login
                ));
            }
            if user.tokens.is_empty() {
                return Err(format!("users[{i}].tokens: {} has no token", user.login));
            }
            for token in &user.tokens {
                if token.is_empty() || token.chars().any(|c| c.is_whitespace() || c.is_control()) {
                    return Err(format!(
                        "users[{i}].tokens: a token of {} is empty or holds whitespace",
                        user.login
                    ));
                }
                if !tokens.insert(token.clone()) {
                    return Err(format!(
                        "users[{i}].tokens: a token of {} is also another user's",
                        user.login
                    ));
                }
            }
            if user.id == 0 {
                user.id = i as u64 + 1;
            }
        }
        Ok(())
    }
}

/// Counts since the fake started.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Stats {
    /// Every request but `/_fake/stats`, authenticated or not.
    pub requests: u64,
    /// Per login.
    pub users: BTreeMap<String, UserStats>,
}

impl Stats {
    /// The counts of `login` (zero when it made no request).
    pub fn user(&self, login: &str) -> UserStats {
        self.users.get(login).cloned().unwrap_or_default()
    }
}

/// A running fake: a loopback TCP listener, and a unix socket when asked.
pub struct FakeGitHub {
    shared: Arc<server::Shared>,
    addr: SocketAddr,
    socket: Option<PathBuf>,
    shutdown: tokio::sync::watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

fn invalid(e: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidInput, e)
}

impl FakeGitHub {
    /// Starts on 127.0.0.1, on a port of the system's choosing.
    pub async fn start(config: Config) -> std::io::Result<FakeGitHub> {
        FakeGitHub::start_on(config, SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// Starts on `addr` (port 0: any).
    pub async fn start_on(mut config: Config, addr: SocketAddr) -> std::io::Result<FakeGitHub> {
        config.validate().map_err(invalid)?;
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(server::Shared::new(config));
        let (shutdown, watch) = tokio::sync::watch::channel(false);
        let router = router(shared.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router)
                .with_graceful_shutdown(stopped(watch))
                .await;
        });
        Ok(FakeGitHub {
            shared,
            addr,
            socket: None,
            shutdown,
            tasks: vec![task],
        })
    }

    /// Starts on 127.0.0.1 and also on the unix socket `path` (0600), for clients such as
    /// `gh` with `http_unix_socket`.
    #[cfg(unix)]
    pub async fn start_unix(config: Config, path: &Path) -> std::io::Result<FakeGitHub> {
        let mut fake = FakeGitHub::start(config).await?;
        fake.listen_unix(path)?;
        Ok(fake)
    }

    /// Serves the same fake on the unix socket `path` too (0600; a stale socket there is
    /// replaced, any other file refused).
    #[cfg(unix)]
    pub fn listen_unix(&mut self, path: &Path) -> std::io::Result<()> {
        if self.socket.is_some() {
            return Err(invalid("the fake already listens on a unix socket".into()));
        }
        let listener = unix::bind(path)?;
        let router = router(self.shared.clone());
        let watch = self.shutdown.subscribe();
        self.tasks.push(tokio::spawn(async move {
            let _ = axum::serve(listener, router)
                .with_graceful_shutdown(stopped(watch))
                .await;
        }));
        self.socket = Some(path.to_path_buf());
        Ok(())
    }

    /// `http://127.0.0.1:PORT`: the API at the root, as `https://api.github.com`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The unix socket, when started with one.
    pub fn socket(&self) -> Option<&Path> {
        self.socket.as_deref()
    }

    /// A push of one commit to pull request `number` of `owner/name` (git, which the API
    /// does not do): its head moves. Returns the new head SHA; `None` when there is no
    /// such pull request.
    pub fn push(&self, owner: &str, name: &str, number: u64) -> Option<String> {
        let mut data = self.shared.data.write().unwrap_or_else(|e| e.into_inner());
        let repo = data.repo(owner, name)?;
        data.push(repo, number)
    }

    /// Opens an issue in `owner/name` by `author` (as a person would on github.com);
    /// returns its number, `None` when there is no such repository.
    pub fn create_issue(
        &self,
        owner: &str,
        name: &str,
        author: &str,
        title: &str,
        body: &str,
        labels: &[&str],
    ) -> Option<u64> {
        let mut data = self.shared.data.write().unwrap_or_else(|e| e.into_inner());
        let repo = data.repo(owner, name)?;
        let labels = labels.iter().map(|l| l.to_string()).collect();
        Some(data.create_issue(repo, author, title.to_string(), body.to_string(), labels))
    }

    /// Closes (`open = false`) or reopens issue `number` of `owner/name`; false when there
    /// is no such issue.
    pub fn set_open(&self, owner: &str, name: &str, number: u64, open: bool) -> bool {
        let mut data = self.shared.data.write().unwrap_or_else(|e| e.into_inner());
        let Some(repo) = data.repo(owner, name) else {
            return false;
        };
        if data.repos[repo].item(number).is_none() {
            return false;
        }
        data.edit(repo, number, |item| item.open = open);
        true
    }

    /// Issue or pull request `number` of `owner/name` as it is now (labels, comments, …).
    pub fn item(&self, owner: &str, name: &str, number: u64) -> Option<seed::Item> {
        let data = self.shared.data.read().unwrap_or_else(|e| e.into_inner());
        let repo = data.repo(owner, name)?;
        data.repos[repo].item(number).cloned()
    }

    pub fn stats(&self) -> Stats {
        self.shared.stats()
    }

    /// The configuration in force (ids filled in).
    pub fn config(&self) -> &Config {
        &self.shared.config
    }

    /// Stops listening and waits for the open connections to finish.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        for task in self.tasks.drain(..) {
            let _ = task.await;
        }
        if let Some(path) = self.socket.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

impl Drop for FakeGitHub {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
        if let Some(path) = &self.socket {
            let _ = std::fs::remove_file(path);
        }
    }
}

fn router(shared: Arc<server::Shared>) -> axum::Router {
    axum::Router::new().fallback(server::handle).with_state(shared)
}

async fn stopped(mut watch: tokio::sync::watch::Receiver<bool>) {
    let _ = watch.wait_for(|stop| *stop).await;
}
