//! The worker process: connects its clients, warms them up, says `ready`, waits for `go`
//! on stdin, runs the workload until each client has done its operations or the wall-clock
//! cap is reached, then prints one JSON [`WorkerReport`] line and exits.
//!
//! Running clients in their own processes is what a fleet of agent loops does; it also keeps
//! one system's client-side work (a blocking SQLite call, a runtime) from favouring another.

use std::io::Write;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tokio::time::Instant;

use crate::spec::{WorkerReport, WorkerSpec, Workload};
use crate::systems::Client;

/// The names a lease workload spreads over, or the streams an append workload writes to
/// (client `c` appends to stream `c % n`).
pub fn names_of(prefix: &str, tag: &str, n: u32) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{tag}-{i}")).collect()
}

fn names(spec: &WorkerSpec) -> Vec<String> {
    names_of(&spec.targets.prefix, &spec.tag, spec.names)
}

pub fn counter_key(prefix: &str, tag: &str) -> String {
    format!("{prefix}{tag}-counter")
}

/// The queue every client of a work-item run pushes to and takes from (the push run and
/// the claim + done run of one system share it).
pub fn queue_name(prefix: &str, tag: &str) -> String {
    format!("{prefix}{tag}-queue")
}

/// The bucket every client of a limiter run takes from.
pub fn bucket_name(prefix: &str, tag: &str) -> String {
    format!("{prefix}{tag}-bucket")
}

/// What an append workload appends: one line of about 200 bytes, like an agent's log entry
/// ("what I did, on which repo, with what result").
fn record_body(client: u32, seq: u64) -> String {
    format!(
        "client {client:>3} record {seq:>8}: round finished on repo example/service, 3 files changed, \
         tests passed, PR #1234 opened for review; next wake in 300s (filler to ~200 bytes)"
    )
}

/// What a work-item push carries: about 200 bytes, unique in the run (the Redis queue's ack
/// removes an item by its value), like an agent's task ("work on this issue").
fn item_body(client: u32, seq: u64) -> String {
    format!(
        "client {client:>3} item {seq:>8}: triage issue example/service#1234 \"build fails on main\", \
         label needs:linux, open a PR with the fix and link it from the issue (filler to ~200 b)"
    )
}

/// The entry point of `arbiter-bench __worker SPEC_JSON`.
pub fn main(spec_json: &str) -> std::process::ExitCode {
    let result = serde_json::from_str::<WorkerSpec>(spec_json)
        .context("bad worker spec")
        .and_then(|spec| {
            let mut builder = if spec.clients <= 1 {
                tokio::runtime::Builder::new_current_thread()
            } else {
                tokio::runtime::Builder::new_multi_thread()
            };
            let runtime = builder.enable_all().build()?;
            runtime.block_on(run(spec))
        });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            let report = WorkerReport {
                error: Some(format!("{e:#}")),
                ..WorkerReport::default()
            };
            say(&serde_json::to_string(&report).unwrap_or_default());
            std::process::ExitCode::FAILURE
        }
    }
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// A small deterministic generator: each client picks names in its own fixed sequence, the
/// same for every system.
pub(crate) struct XorShift(u64);

impl XorShift {
    pub(crate) fn new(seed: u32) -> XorShift {
        XorShift(u64::from(seed).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u32) -> usize {
        (self.next() % u64::from(n.max(1))) as usize
    }

    /// In [0, 1).
    pub(crate) fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// What one client works on and with.
struct Picks {
    /// Lease names.
    names: Vec<String>,
    /// The CAS counter, the limiter's bucket, or the work queue.
    key: String,
    rng: XorShift,
    /// This client's number in the run, and how many records it has appended.
    client: u32,
    seq: u64,
}

/// One operation of the workload; returns (succeeded, tries), or `None` when there is
/// nothing left to do (the work queue is empty): the client stops.
async fn operation(workload: Workload, client: &mut Client, picks: &mut Picks) -> Result<Option<(bool, u64)>> {
    Ok(Some(match workload {
        Workload::Lease => {
            let name = &picks.names[picks.rng.below(picks.names.len() as u32)];
            (client.lease_once(name).await?, 1)
        }
        Workload::Cas => (true, client.cas_increment(&picks.key).await?),
        Workload::Limit => (client.limit_take(&picks.key).await?, 1),
        Workload::Append => {
            picks.seq += 1;
            let stream = &picks.names[picks.client as usize % picks.names.len()];
            client.append(stream, &record_body(picks.client, picks.seq)).await?;
            (true, 1)
        }
        Workload::QueuePush => {
            picks.seq += 1;
            client
                .queue_push(&picks.key, &item_body(picks.client, picks.seq))
                .await?;
            (true, 1)
        }
        Workload::QueueWork => {
            if !client.queue_take(&picks.key).await? {
                return Ok(None);
            }
            (true, 1)
        }
    }))
}

struct ClientResult {
    latencies_us: Vec<u32>,
    ok: u64,
    attempts: u64,
    warmup_ok: u64,
    capped: bool,
    drained: bool,
    error: Option<String>,
    ended: Instant,
}

async fn run(spec: WorkerSpec) -> Result<()> {
    let names = names(&spec);
    let key = match spec.workload {
        Workload::Limit => bucket_name(&spec.targets.prefix, &spec.tag),
        Workload::QueuePush | Workload::QueueWork => queue_name(&spec.targets.prefix, &spec.tag),
        _ => counter_key(&spec.targets.prefix, &spec.tag),
    };

    let mut connecting = tokio::task::JoinSet::new();
    for i in 0..spec.clients {
        let (system, targets, id, ttl) = (spec.system, spec.targets.clone(), spec.first_client + i, spec.ttl_ms);
        connecting.spawn(async move { (i, Client::connect(system, &targets, id, ttl).await) });
    }
    let mut clients: Vec<(u32, Client)> = Vec::new();
    while let Some(joined) = connecting.join_next().await {
        let (i, client) = joined?;
        clients.push((i, client?));
    }
    clients.sort_by_key(|(i, _)| *i);
    let Some((_, first)) = clients.first_mut() else {
        bail!("a worker with no clients");
    };
    match spec.workload {
        Workload::Lease => first.prepare_names(&names).await?,
        Workload::Cas => first.init_counter(&key).await?,
        Workload::Append | Workload::QueuePush | Workload::QueueWork => {}
        Workload::Limit => first.prepare_bucket(&key).await?,
    }

    // Warm-up, all clients at once: connections, prepared statements, caches. Untimed.
    let mut warming = tokio::task::JoinSet::new();
    for (i, mut client) in clients {
        let (workload, warmup) = (spec.workload, spec.warmup);
        let mut picks = Picks {
            names: names.clone(),
            key: key.clone(),
            rng: XorShift::new(spec.first_client + i),
            client: spec.first_client + i,
            seq: 0,
        };
        warming.spawn(async move {
            let mut warmup_ok = 0;
            for _ in 0..warmup {
                let Some((ok, _)) = operation(workload, &mut client, &mut picks).await? else {
                    break;
                };
                warmup_ok += u64::from(ok);
            }
            anyhow::Ok((client, picks, warmup_ok))
        });
    }
    let mut warm = Vec::new();
    while let Some(joined) = warming.join_next().await {
        warm.push(joined??);
    }

    say("ready");
    // A blocking read on the blocking pool (tokio's stdin needs a feature the workspace
    // does not enable). The parent's timeouts bound the wait.
    let line = tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).map(|_| line)
    })
    .await??;
    if line.trim() != "go" {
        bail!("expected `go` on stdin, got {line:?}");
    }
    let start = Instant::now();
    let deadline = start + Duration::from_millis(spec.max_ms);

    let mut running = tokio::task::JoinSet::new();
    for (mut client, mut picks, warmup_ok) in warm {
        let (workload, ops) = (spec.workload, spec.ops_per_client);
        running.spawn(async move {
            let mut result = ClientResult {
                latencies_us: Vec::with_capacity(ops.min(100_000) as usize),
                ok: 0,
                attempts: 0,
                warmup_ok,
                capped: false,
                drained: false,
                error: None,
                ended: Instant::now(),
            };
            for _ in 0..ops {
                if Instant::now() >= deadline {
                    result.capped = true;
                    break;
                }
                let began = Instant::now();
                match operation(workload, &mut client, &mut picks).await {
                    Ok(Some((ok, tries))) => {
                        let took = began.elapsed().as_micros();
                        result.latencies_us.push(u32::try_from(took).unwrap_or(u32::MAX));
                        result.ok += u64::from(ok);
                        result.attempts += tries;
                    }
                    Ok(None) => {
                        result.drained = true;
                        break;
                    }
                    Err(e) => {
                        result.error = Some(format!("{e:#}"));
                        break;
                    }
                }
            }
            result.ended = Instant::now();
            if let Err(e) = client.close().await
                && result.error.is_none()
            {
                result.error = Some(format!("closing: {e:#}"));
            }
            result
        });
    }

    let mut report = WorkerReport::default();
    let mut last_end = start;
    while let Some(joined) = running.join_next().await {
        let result = joined?;
        last_end = last_end.max(result.ended);
        report.latencies_us.extend(result.latencies_us);
        report.ok += result.ok;
        report.attempts += result.attempts;
        report.warmup_ok += result.warmup_ok;
        report.capped |= result.capped;
        report.drained |= result.drained;
        if report.error.is_none() {
            report.error = result.error;
        }
    }
    report.elapsed_us = u64::try_from(last_end.saturating_duration_since(start).as_micros()).unwrap_or(u64::MAX);
    say(&serde_json::to_string(&report)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::XorShift;

    #[test]
    fn picks_spread_over_all_names() {
        let mut rng = XorShift::new(3);
        let mut seen = [false; 64];
        for _ in 0..10_000 {
            seen[rng.below(64)] = true;
        }
        assert!(seen.iter().all(|s| *s));
        assert_eq!(XorShift::new(0).below(1), 0);
    }
}
