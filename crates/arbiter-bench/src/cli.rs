//! CLI calls: one process from start to exit, the way a shell script or an agent's tool
//! call uses a lock — one call at a time (latency), or many callers at once on a few names
//! (a fleet of scripts fighting over one login). arbiter's calls open the store each time
//! (connect, check the schema) — that is part of what a CLI call costs.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tokio::process::Command;
use tokio::time::{Instant, timeout};

use crate::stats::Measurement;
use crate::systems::NAMESPACE;

/// One process may take this long before it counts as hung (and is killed).
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Untimed rounds first: the binary into the page cache, the store file created.
const WARMUP: u32 = 2;

/// How many calls, for how long at most.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    pub iterations: u32,
    pub max: Duration,
}

/// Acquire-only and acquire+release measurements of one system.
pub struct CliResult {
    pub acquire: Option<Measurement>,
    pub pair: Measurement,
}

/// Runs `program args…`, returns how long it took and what it printed; a non-zero exit is
/// an error.
async fn call(program: &Path, args: &[&str], envs: &[(&str, &str)]) -> Result<(Duration, String)> {
    let (took, code, stdout) = call_status(program, args, envs).await?;
    if code != Some(0) {
        bail!("{} {} failed ({code:?}): {stdout}", program.display(), args.join(" "));
    }
    Ok((took, stdout))
}

/// Runs `program args…`, returns how long it took, its exit code and what it printed (or,
/// when it failed, its stderr).
async fn call_status(program: &Path, args: &[&str], envs: &[(&str, &str)]) -> Result<(Duration, Option<i32>, String)> {
    let mut command = Command::new(program);
    // Where arbiter goes is what the caller says, never what this shell happens to export.
    for inherited in ["ARBITER_STORE", "ARBITER_SERVER", "ARBITER_TOKEN"] {
        command.env_remove(inherited);
    }
    command
        .args(args)
        .envs(envs.iter().copied())
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let started = Instant::now();
    let output = timeout(CALL_TIMEOUT, command.output())
        .await
        .with_context(|| format!("{} did not exit within {}s", program.display(), CALL_TIMEOUT.as_secs()))?
        .with_context(|| format!("cannot run {}", program.display()))?;
    let took = started.elapsed();
    let text = if output.status.success() {
        &output.stdout
    } else {
        &output.stderr
    };
    Ok((
        took,
        output.status.code(),
        String::from_utf8_lossy(text).trim().to_string(),
    ))
}

/// Repeats `round` (which returns the acquire latency, if separate, and the whole round's)
/// `WARMUP` times untimed, then up to `budget` times.
async fn repeat<F, Fut>(budget: Budget, mut round: F) -> Result<CliResult>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(Option<Duration>, Duration)>>,
{
    for _ in 0..WARMUP {
        round().await?;
    }
    let started = Instant::now();
    let (mut acquires, mut pairs, mut capped) = (Vec::new(), Vec::new(), false);
    for _ in 0..budget.iterations {
        if started.elapsed() >= budget.max {
            capped = true;
            break;
        }
        let (acquire, pair) = round().await?;
        acquires.extend(acquire);
        pairs.push(pair);
    }
    // Throughput is one call after another: calls per second of summed call time.
    let acquire = (!acquires.is_empty()).then(|| {
        let total: Duration = acquires.iter().sum();
        Measurement::sequential(acquires, total, capped)
    });
    let total: Duration = pairs.iter().sum();
    Ok(CliResult {
        acquire,
        pair: Measurement::sequential(pairs, total, capped),
    })
}

/// One caller, one try after another on a free name: acquire (timed on its own) and
/// release. The name is never held by anyone else, so a refused try is an error.
pub async fn sequential(tryer: &Tryer, name: &str, budget: Budget) -> Result<CliResult> {
    let mut seq = 0u64;
    repeat(budget, || {
        seq += 1;
        let token = format!("cli:{seq}");
        async move {
            let done = tryer.try_once(name, &token).await?;
            let Some(release) = done.release else {
                bail!("{name} was held: nothing else should hold it");
            };
            Ok((Some(done.acquire), done.acquire + release))
        }
    })
    .await
}

const REDIS_RELEASE: &str =
    r#"if redis.call("get", KEYS[1]) == ARGV[1] then return redis.call("del", KEYS[1]) else return 0 end"#;

/// How one try went: how long its acquire process took, and its release process's time when
/// the name was granted (`None`: it was held).
pub struct Tried {
    pub acquire: Duration,
    pub release: Option<Duration>,
}

/// How a caller takes and frees a lease through a CLI.
#[derive(Debug, Clone)]
pub enum Tryer {
    /// `arbiter lease acquire NAME --ttl 1m` (exit 3 = held), then `lease release`, with
    /// `envs` saying where: `ARBITER_STORE` (the store, opened by each call) or
    /// `ARBITER_SERVER` + `ARBITER_TOKEN` (a server, one HTTP request per call).
    Arbiter { bin: PathBuf, envs: Vec<(String, String)> },
    /// `redis-cli SET NAME TOKEN NX PX 60000` (nil = held), then the compare-and-delete.
    RedisCli { bin: PathBuf, host: String, port: u16 },
}

impl Tryer {
    /// arbiter's CLI on the store at `store_url`.
    pub fn arbiter_store(bin: PathBuf, store_url: &str) -> Tryer {
        Tryer::arbiter(bin, &[("ARBITER_STORE", store_url)])
    }

    /// arbiter's CLI through the server at `url` (`ARBITER_SERVER`, `ARBITER_TOKEN`).
    pub fn arbiter_server(bin: PathBuf, url: &str, token: &str) -> Tryer {
        Tryer::arbiter(bin, &[("ARBITER_SERVER", url), ("ARBITER_TOKEN", token)])
    }

    /// arbiter's CLI with `envs` and the benchmark's namespace.
    fn arbiter(bin: PathBuf, envs: &[(&str, &str)]) -> Tryer {
        let envs = envs.iter().chain(&[("ARBITER_NAMESPACE", NAMESPACE)]);
        Tryer::Arbiter {
            bin,
            envs: envs.map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        }
    }

    /// One try on `name` (`token`: the value a Redis lock holds): acquire, and release when
    /// granted.
    async fn try_once(&self, name: &str, token: &str) -> Result<Tried> {
        match self {
            Tryer::Arbiter { bin, envs } => {
                let envs: Vec<(&str, &str)> = envs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                let (acquire, code, said) = call_status(bin, &["lease", "acquire", name, "--ttl", "1m"], &envs).await?;
                match code {
                    Some(0) if said.parse::<i64>().is_ok() => {
                        let (release, _) = call(bin, &["lease", "release", name, "--token", &said], &envs).await?;
                        Ok(Tried {
                            acquire,
                            release: Some(release),
                        })
                    }
                    Some(0) => bail!("arbiter lease acquire printed {said:?}, not a fencing token"),
                    Some(3) => Ok(Tried { acquire, release: None }),
                    _ => bail!("arbiter lease acquire exited {code:?}: {said}"),
                }
            }
            Tryer::RedisCli { bin, host, port } => {
                let port = port.to_string();
                let base = ["-h", host.as_str(), "-p", port.as_str()];
                let mut set = base.to_vec();
                set.extend(["SET", name, token, "NX", "PX", "60000"]);
                let (acquire, said) = call(bin, &set, &[]).await?;
                if said != "OK" {
                    return Ok(Tried { acquire, release: None });
                }
                let mut release = base.to_vec();
                release.extend(["EVAL", REDIS_RELEASE, "1", name, token]);
                let (released, said) = call(bin, &release, &[]).await?;
                if said.trim_start_matches("(integer) ") != "1" {
                    bail!("redis-cli EVAL (release) said {said:?}");
                }
                Ok(Tried {
                    acquire,
                    release: Some(released),
                })
            }
        }
    }
}

/// `callers` concurrent loops, each trying names in turn (caller `c` starts at name `c`) as
/// fast as its processes finish, `per_caller` tries each or until `budget.max`. A try is
/// one acquire process, plus a release process when granted; ops/s is tries over the wall
/// clock.
pub async fn contended(
    tryer: &Tryer,
    names: &[String],
    callers: u32,
    per_caller: u32,
    budget: Budget,
) -> Result<Measurement> {
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for caller in 0..callers {
        let (tryer, names, max) = (tryer.clone(), names.to_vec(), budget.max);
        tasks.spawn(async move {
            let (mut latencies, mut granted, mut capped) = (Vec::new(), 0u64, false);
            for i in 0..per_caller {
                if started.elapsed() >= max {
                    capped = true;
                    break;
                }
                let name = &names[(caller + i) as usize % names.len()];
                let began = Instant::now();
                let tried = tryer.try_once(name, &format!("cli:{caller}:{i}")).await?;
                granted += u64::from(tried.release.is_some());
                latencies.push(began.elapsed());
            }
            anyhow::Ok((latencies, granted, capped))
        });
    }
    let (mut latencies, mut granted, mut capped) = (Vec::new(), 0, false);
    while let Some(joined) = tasks.join_next().await {
        let (l, g, c) = joined??;
        latencies.extend(l);
        granted += g;
        capped |= c;
    }
    let mut m = Measurement::sequential(latencies, started.elapsed(), capped);
    m.ok = granted;
    Ok(m)
}

/// `etcdctl lock NAME true`: acquire, run `true`, release, in one process.
pub async fn etcdctl(bin: &Path, endpoint: &str, name: &str, budget: Budget) -> Result<CliResult> {
    let endpoints = format!("--endpoints={endpoint}");
    // `etcdctl lock` waits for a server it cannot reach: ask first, briefly.
    let health = [endpoints.as_str(), "--command-timeout=2s", "endpoint", "health"];
    if call(bin, &health, &[("ETCDCTL_API", "3")]).await.is_err() {
        anyhow::bail!("unavailable: etcd does not answer at {endpoint}");
    }
    repeat(budget, || async {
        let (took, _) = call(bin, &[&endpoints, "lock", name, "true"], &[("ETCDCTL_API", "3")]).await?;
        Ok((None, took))
    })
    .await
}

/// `program args…` that does nothing but start and exit (`--version`): what starting the
/// process costs, the floor under every CLI call.
pub async fn start_only(bin: &Path, args: &[&str], budget: Budget) -> Result<Measurement> {
    let result = repeat(budget, || async {
        let (took, _) = call(bin, args, &[]).await?;
        Ok((None, took))
    })
    .await?;
    Ok(result.pair)
}

/// Whether the arbiter at `bin` has `--server` (the CLI through a server); if not, why.
pub async fn supports_server(bin: &Path) -> std::result::Result<(), String> {
    match call(bin, &["--help"], &[]).await {
        Ok((_, help)) if help.contains("--server") => Ok(()),
        Ok(_) => Err(crate::NO_REMOTE_CLI.to_string()),
        Err(e) => Err(format!("skipped: {e:#}")),
    }
}

/// The program `name` on PATH, if there.
pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}
