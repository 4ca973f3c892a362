//! `arbiter-fake-github`: the fake GitHub API as a process, for trying clients by hand and
//! for benchmarks. Prints its URL (and `unix:PATH` with `--socket`) on stdout, one a line,
//! then serves until interrupted.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use arbiter_fake_github::{Config, FakeGitHub, RepoSeed, Seed, User};
use clap::Parser;

/// A fake GitHub API (REST and GraphQL) with GitHub's rate limits, per user, in compressed
/// time. Tokens are never printed.
#[derive(Parser, Debug)]
#[command(name = "arbiter-fake-github", version)]
struct Args {
    /// Address to listen on (loopback unless told otherwise).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Also serve on this unix socket (0600), as `gh`'s `http_unix_socket` expects.
    #[arg(long, value_name = "PATH")]
    socket: Option<PathBuf>,
    /// Time compression: 3600 makes an hour of GitHub's limits last one second.
    #[arg(long, value_name = "F", default_value_t = 1.0)]
    scale: f64,
    /// Latency added to every authenticated request (e.g. 20ms).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    latency: Option<Duration>,
    /// A JSON file of users: [{"login": "a", "id": 1, "tokens": ["t1", "t2"]}].
    #[arg(long, value_name = "FILE.json")]
    users: Option<PathBuf>,
    /// A user and its tokens (repeatable).
    #[arg(long = "user", value_name = "LOGIN:TOKEN[,TOKEN]")]
    user: Vec<String>,
    /// A repository to seed (repeatable); default octo/hello.
    #[arg(long = "repo", value_name = "OWNER/NAME")]
    repo: Vec<String>,
    /// Issues per seeded repository.
    #[arg(long, value_name = "N", default_value_t = 10)]
    issues: u64,
    /// Pull requests per seeded repository.
    #[arg(long, value_name = "N", default_value_t = 3)]
    pulls: u64,
    /// Comments per issue and pull request.
    #[arg(long, value_name = "N", default_value_t = 2)]
    comments: u64,
    /// The status of a rate-limit refusal: 403 (GitHub's usual) or 429.
    #[arg(long, value_name = "STATUS", default_value_t = 403)]
    limit_status: u16,
}

fn parse_user(text: &str, id: u64) -> Result<User> {
    let Some((login, tokens)) = text.split_once(':') else {
        bail!(
            "--user {login}: expected LOGIN:TOKEN[,TOKEN]",
            login = text.split(':').next().unwrap_or("")
        );
    };
    Ok(User {
        login: login.to_string(),
        id,
        tokens: tokens.split(',').map(str::to_string).collect(),
    })
}

fn config(args: &Args) -> Result<Config> {
    let mut users = Vec::new();
    if let Some(path) = &args.users {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("--users {}: cannot read it", path.display()))?;
        users = serde_json::from_str::<Vec<User>>(&text).with_context(|| {
            format!(
                "--users {}: expected [{{\"login\": …, \"tokens\": […]}}]",
                path.display()
            )
        })?;
    }
    for text in &args.user {
        let id = users.len() as u64 + 1;
        users.push(parse_user(text, id)?);
    }
    if users.is_empty() {
        bail!("no user: give --user LOGIN:TOKEN or --users FILE.json");
    }
    let mut seed = Seed::new();
    let repos = match args.repo.is_empty() {
        true => vec!["octo/hello".to_string()],
        false => args.repo.clone(),
    };
    for repo in repos {
        let Some((owner, name)) = repo
            .split_once('/')
            .filter(|(o, n)| !o.is_empty() && !n.is_empty() && !n.contains('/'))
        else {
            bail!("--repo {repo}: expected OWNER/NAME");
        };
        seed = seed.repo(
            RepoSeed::new(owner, name)
                .issues(args.issues)
                .closed(0)
                .pulls(args.pulls)
                .comments(args.comments),
        );
    }
    let mut config = Config {
        users,
        scale: args.scale,
        latency: args.latency.unwrap_or_default(),
        seed,
        ..Config::default()
    };
    config.limits.status = args.limit_status;
    config.validate().map_err(|e| {
        let flag = match e.split(':').next().unwrap_or("") {
            "scale" => "--scale",
            "limits.status" => "--limit-status",
            _ => "--user/--users",
        };
        anyhow::anyhow!("{flag}: {e}")
    })?;
    Ok(config)
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let config = config(&args)?;
    #[cfg_attr(not(unix), allow(unused_mut))]
    let mut fake = FakeGitHub::start_on(config, args.listen)
        .await
        .with_context(|| format!("--listen {}", args.listen))?;
    if let Some(path) = &args.socket {
        #[cfg(unix)]
        fake.listen_unix(path)
            .with_context(|| format!("--socket {}", path.display()))?;
        #[cfg(not(unix))]
        bail!("--socket {}: unix sockets need a unix system", path.display());
    }
    println!("{}", fake.url());
    if let Some(path) = fake.socket() {
        println!("unix:{}", path.display());
    }
    shutdown_signal().await;
    fake.shutdown().await;
    Ok(())
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
