//! The parent side of a measured run: start the worker processes, wait until every one has
//! connected and warmed up, start them together, collect and merge their reports.
//!
//! Every wait is bounded: a worker that does not get ready, report or exit in time is
//! killed and the run reports the failure.

use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::time::timeout;

use crate::spec::{System, TOKEN_ENV, Targets, WorkerReport, WorkerSpec, Workload};
use crate::stats::Measurement;

/// How long a worker may take to connect and warm up.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long past its cap a worker may take to report (one slow operation in flight).
const REPORT_GRACE: Duration = Duration::from_secs(60);

/// One measured run.
#[derive(Debug, Clone)]
pub struct Plan {
    pub workload: Workload,
    pub system: System,
    pub tag: String,
    pub names: u32,
    pub clients: u32,
    /// Worker processes the clients are spread over.
    pub processes: u32,
    /// Operations of the whole run (split evenly over the clients).
    pub total_ops: u64,
    pub max: Duration,
    pub warmup: u32,
    pub ttl_ms: u64,
}

struct Worker {
    child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
}

impl Worker {
    fn spawn(spec: &WorkerSpec, token: Option<&str>) -> Result<Worker> {
        let exe = std::env::current_exe().context("cannot find this executable to start workers")?;
        let mut command = Command::new(exe);
        if let Some(token) = token {
            command.env(TOKEN_ENV, token);
        }
        let mut child = command
            .arg(crate::WORKER_ARG)
            .arg(serde_json::to_string(spec)?)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("cannot start a worker process")?;
        let stdin = child.stdin.take().context("worker stdin")?;
        let stdout = BufReader::new(child.stdout.take().context("worker stdout")?).lines();
        Ok(Worker { child, stdin, stdout })
    }

    /// The next line the worker prints, within `limit`.
    async fn line(&mut self, limit: Duration, what: &str) -> Result<String> {
        match timeout(limit, self.stdout.next_line()).await {
            Ok(Ok(Some(line))) => Ok(line),
            Ok(Ok(None)) => bail!("worker exited before {what}{}", self.stderr().await),
            Ok(Err(e)) => Err(e).context(format!("reading worker output ({what})")),
            Err(_) => bail!("worker did not {what} within {}s", limit.as_secs()),
        }
    }

    /// What the worker wrote on stderr (a panic message), for an error.
    async fn stderr(&mut self) -> String {
        let Some(mut stderr) = self.child.stderr.take() else {
            return String::new();
        };
        let mut text = String::new();
        let _ = timeout(Duration::from_secs(2), stderr.read_to_string(&mut text)).await;
        let text = text.trim();
        if text.is_empty() {
            String::new()
        } else {
            format!(": {}", text.lines().last().unwrap_or(text))
        }
    }
}

/// A worker line that is a report with an error, or not the expected word.
fn fail_line(line: &str, expected: &str) -> anyhow::Error {
    match serde_json::from_str::<WorkerReport>(line) {
        Ok(WorkerReport { error: Some(e), .. }) => anyhow::anyhow!("{e}"),
        _ => anyhow::anyhow!("worker said {line:?}, expected {expected}"),
    }
}

/// Runs `plan` on `targets` and merges what its workers measured.
pub async fn run(plan: &Plan, targets: &Targets) -> Result<Measurement> {
    let processes = plan.processes.clamp(1, plan.clients.max(1));
    let ops_per_client = plan.total_ops.div_ceil(u64::from(plan.clients.max(1)));
    let mut workers = Vec::new();
    let mut first_client = 0;
    for p in 0..processes {
        let clients = plan.clients / processes + u32::from(p < plan.clients % processes);
        let spec = WorkerSpec {
            workload: plan.workload,
            system: plan.system,
            targets: targets.clone(),
            tag: plan.tag.clone(),
            names: plan.names,
            first_client,
            clients,
            ops_per_client,
            max_ms: u64::try_from(plan.max.as_millis()).unwrap_or(u64::MAX),
            warmup: plan.warmup,
            ttl_ms: plan.ttl_ms,
        };
        first_client += clients;
        let token = targets.server(plan.system).and_then(|(_, token)| token);
        workers.push(Worker::spawn(&spec, token)?);
    }
    // Wait until every worker is connected and warm, then start them together.
    for worker in &mut workers {
        let line = worker.line(READY_TIMEOUT, "get ready").await?;
        if line != "ready" {
            return Err(fail_line(&line, "ready"));
        }
    }
    for worker in &mut workers {
        worker.stdin.write_all(b"go\n").await?;
        worker.stdin.flush().await?;
    }
    let mut reports = Vec::new();
    for worker in &mut workers {
        let line = worker.line(plan.max + REPORT_GRACE, "report").await?;
        let report: WorkerReport = serde_json::from_str(&line).map_err(|_| fail_line(&line, "a report"))?;
        reports.push(report);
    }
    for worker in &mut workers {
        if timeout(Duration::from_secs(10), worker.child.wait()).await.is_err() {
            // Ours, started above: end it rather than leave it behind.
            let _ = worker.child.kill().await;
        }
    }
    Ok(Measurement::merge(reports))
}
