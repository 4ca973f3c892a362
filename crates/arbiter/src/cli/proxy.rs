//! `arbiter proxy github`: the GitHub proxy, until SIGINT or SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use arbiter_core::Result;
use arbiter_github::{Proxy, ProxyConfig};
use clap::{Args, Subcommand};

use super::{Global, Output};

pub const GITHUB_LONG_ABOUT: &str = "\
Run the GitHub proxy until SIGINT or SIGTERM: GitHub's REST and GraphQL API at the root path
(/user, /repos/…, /graphql), on loopback TCP and/or a unix socket, forwarded to --upstream.

It caches GET answers per credential (never serving one token's answer to another) and
revalidates them with If-None-Match (a 304 costs no budget), answers identical GraphQL queries
from a short window (--graphql-fresh), coalesces identical requests in flight, and spends from
budgets shared by every proxy on the store: one per GitHub user (tokens are resolved to their
login once) and GitHub resource, plus the secondary limits. When GitHub says wait, every
proxy on the store waits; a request that cannot get budget within --max-wait (or its header
x-arbiter-max-wait) gets a 429 with Retry-After from arbiter, not a ban from GitHub.

Agents: `gh` with `http_unix_socket: PATH` in its config.yml; anything else with
ARBITER_GITHUB_API=http://ADDR as its API base URL (docs/github-proxy.md).

Only loopback addresses are listened on, and only requests for api.github.com (or the
upstream's host, or loopback) are served: it is never an open proxy.";

#[derive(Debug, Subcommand)]
pub enum ProxyCommand {
    /// Run the GitHub API proxy: per-credential cache, coalescing, fleet-wide budgets.
    #[command(long_about = GITHUB_LONG_ABOUT)]
    Github(GithubArgs),
}

#[derive(Debug, Args)]
pub struct GithubArgs {
    /// Listen on this loopback address (127.0.0.1:0 picks a free port). Default:
    /// 127.0.0.1:0, unless --socket is given alone.
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// Listen on this unix socket (made 0600; its directory must be private, 0700, or is
    /// created so), for gh's `http_unix_socket`.
    #[arg(long, value_name = "PATH")]
    socket: Option<PathBuf>,
    /// The API to forward to (GitHub Enterprise: https://HOST/api/v3).
    #[arg(long, value_name = "URL", default_value = arbiter_github::DEFAULT_UPSTREAM)]
    upstream: String,
    /// How long an identical GraphQL query is answered from the cache (0: never).
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = duration_or_zero)]
    graphql_fresh: Duration,
    /// How long past --graphql-fresh a cached GraphQL query about one repository may still
    /// be served, when a free conditional probe of the repository's most recently updated
    /// issue or pull request says nothing changed (0: never; from when it was fetched).
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = duration_or_zero)]
    graphql_max_age: Duration,
    /// The same for a query about one issue or pull request (gh issue view, gh pr view),
    /// revalidated by free probes of that item: the issue, its comments and, for a pull
    /// request, the pull and its head commit's statuses and check runs (0: never).
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = duration_or_zero)]
    graphql_view_max_age: Duration,
    /// How long a request may wait for budget before arbiter answers 429 (0: not at all).
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = duration_or_zero)]
    max_wait: Duration,
    /// Upstream requests in flight at once from this host (GitHub allows 100 per user).
    #[arg(long, value_name = "N", default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    concurrency: u32,
}

fn duration_or_zero(text: &str) -> std::result::Result<Duration, String> {
    arbiter_core::duration::parse_duration_or_zero(text).map_err(|e| e.message)
}

pub async fn run(command: ProxyCommand, global: &Global, _out: Output) -> Result<i32> {
    let ProxyCommand::Github(args) = command;
    let listen = match (args.listen, &args.socket) {
        (Some(addr), _) => Some(addr),
        (None, Some(_)) => None,
        (None, None) => Some(SocketAddr::from(([127, 0, 0, 1], 0))),
    };
    // Bad input is refused before the store is opened: it changes nothing.
    if let Some(addr) = listen {
        arbiter_github::check_listen(addr)?;
    }
    if let Some(path) = &args.socket {
        arbiter_github::check_socket(path)?;
    }
    let config = ProxyConfig {
        upstream: args.upstream,
        namespace: global.namespace.clone(),
        graphql_fresh: args.graphql_fresh,
        graphql_max_age: args.graphql_max_age,
        graphql_view_max_age: args.graphql_view_max_age,
        max_wait: args.max_wait,
        concurrency: args.concurrency as usize,
        ..ProxyConfig::default()
    };
    arbiter_github::check_upstream(&config.upstream)?;
    let (store, _) = global.open().await?;
    let proxy = Proxy::start(store, config.clone()).await?;
    if let Some(path) = &args.socket {
        proxy.listen_unix(path, None).await?;
        eprintln!("arbiter: GitHub proxy on unix socket {}", path.display());
    }
    if let Some(addr) = listen {
        let bound = proxy.listen_tcp(addr).await?;
        eprintln!("arbiter: GitHub proxy on http://{bound} (ARBITER_GITHUB_API=http://{bound})");
    }
    eprintln!(
        "arbiter: forwarding to {} in namespace {}",
        arbiter_core::redact::url(&config.upstream),
        config.namespace
    );
    super::shutdown_signal().await;
    proxy.shutdown().await;
    Ok(crate::exit::SUCCESS)
}
