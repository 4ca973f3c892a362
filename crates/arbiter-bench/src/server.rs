//! The `arbiter serve` processes the HTTP rows and the `--server` CLI rows talk to: the
//! release binary as a child process (what a deployment runs, and its CPU is its own, not
//! the benchmark's), one per store, on a port of loopback the OS picks.
//!
//! Each server gets a real token first — `arbiter token create --name bench-http
//! --namespace bench` on its store, every primitive's write scope, no admin — so every
//! request pays what a deployed server's requests pay: the bearer check against the store.
//! The secret stays in this process and reaches clients through the environment only.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;
use tokio::time::timeout;

use crate::systems::NAMESPACE;

/// The name of the token each server's clients use.
const TOKEN_NAME: &str = "bench-http";
/// How long a server may take to open its store and listen.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a server may take to stop after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);
/// What `arbiter serve` prints on stderr once it listens.
const SERVING: &str = "arbiter: serving on ";

/// A running `arbiter serve`.
pub struct ServerProcess {
    child: Child,
    /// `http://ADDR/`.
    pub url: String,
    pub token: String,
    /// The server's stderr after its first line, kept (the last lines) for a failure.
    stderr: JoinHandle<Vec<String>>,
}

impl ServerProcess {
    /// Creates a token on `store_url` and starts `bin serve` on it.
    pub async fn start(bin: &Path, store_url: &str) -> Result<ServerProcess> {
        if !bin.is_file() {
            bail!("skipped: {} is not built", bin.display());
        }
        let envs = [("ARBITER_STORE", store_url), ("ARBITER_NAMESPACE", NAMESPACE)];
        let created = timeout(
            START_TIMEOUT,
            Command::new(bin)
                .args(["token", "create", "--name", TOKEN_NAME])
                .envs(envs)
                .stdin(Stdio::null())
                .kill_on_drop(true)
                .output(),
        )
        .await
        .context("arbiter token create did not finish")?
        .context("cannot run arbiter token create")?;
        if !created.status.success() {
            bail!(
                "arbiter token create failed ({}): {}",
                created.status,
                String::from_utf8_lossy(&created.stderr).trim()
            );
        }
        let token = String::from_utf8(created.stdout)
            .context("the token is not UTF-8")?
            .trim()
            .to_string();

        let mut child = Command::new(bin)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .envs(envs)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("cannot start arbiter serve")?;
        let mut lines = BufReader::new(child.stderr.take().context("server stderr")?).lines();
        let mut said = Vec::new();
        let url = loop {
            match timeout(START_TIMEOUT, lines.next_line()).await {
                Ok(Ok(Some(line))) => match line.strip_prefix(SERVING) {
                    Some(url) => break format!("{}/", url.trim().trim_end_matches('/')),
                    None => said.push(line),
                },
                Ok(Ok(None)) => bail!("arbiter serve exited: {}", said.join(" / ")),
                Ok(Err(e)) => return Err(e).context("reading arbiter serve's stderr"),
                Err(_) => bail!("arbiter serve did not listen within {}s", START_TIMEOUT.as_secs()),
            }
        };
        // Keep reading, so a chatty server never blocks on a full pipe.
        let stderr = tokio::spawn(async move {
            let mut last = Vec::new();
            while let Ok(Some(line)) = lines.next_line().await {
                if last.len() == 20 {
                    last.remove(0);
                }
                last.push(line);
            }
            last
        });
        Ok(ServerProcess {
            child,
            url,
            token,
            stderr,
        })
    }

    /// Stops the server as its service manager would (SIGTERM: a graceful shutdown) and
    /// waits; kills it if it does not stop in time. Returns a problem, if any.
    pub async fn stop(mut self) -> Option<String> {
        terminate(&mut self.child);
        let problem = match timeout(STOP_TIMEOUT, self.child.wait()).await {
            Ok(Ok(status)) if status.success() => None,
            Ok(Ok(status)) => Some(format!("arbiter serve exited {status}")),
            Ok(Err(e)) => Some(format!("waiting for arbiter serve: {e}")),
            Err(_) => {
                // Ours, started above: end it rather than leave it behind.
                let _ = self.child.kill().await;
                Some(format!(
                    "arbiter serve did not stop within {}s: killed",
                    STOP_TIMEOUT.as_secs()
                ))
            }
        };
        let said = timeout(Duration::from_secs(2), self.stderr).await;
        match (problem, said) {
            (Some(problem), Ok(Ok(lines))) if !lines.is_empty() => Some(format!("{problem}: {}", lines.join(" / "))),
            (problem, _) => problem,
        }
    }
}

#[cfg(unix)]
fn terminate(child: &mut Child) {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    if let Some(pid) = child.id().and_then(|pid| i32::try_from(pid).ok()) {
        let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
    }
}

/// No SIGTERM off Unix: the server is ended at once.
#[cfg(not(unix))]
fn terminate(child: &mut Child) {
    let _ = child.start_kill();
}
