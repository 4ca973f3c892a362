//! The command line: global options, one module per command group, and the output
//! conventions (`output`).

mod decisions;
mod doctor;
mod kv;
mod lease;
mod limit;
mod lock;
mod log;
mod mcp;
mod notify;
mod output;
mod proxy;
mod queue;
mod serve;
mod store;
mod target;
mod token;
mod watch;

use std::ffi::OsString;
use std::time::Duration;

use arbiter_core::name::Namespace;
use arbiter_core::{Error, ParseError, Result};
use arbiter_store::{Store, StoreUrl};
use clap::{Args, Parser, Subcommand};

use crate::exit;
use output::Output;

const AFTER_HELP: &str = "\
Exit codes: 0 success, 1 internal error, 2 bad input, 3 held, conflict, limited or nothing
to claim, 4 lost (a stale lease or claim token),
5 not found, 6 store (or --server) unavailable, 7 failed, 8 refused by the server (token,
namespace or scope). `arbiter lock` exits with its command's code.

Names (leases, keys): 1-255 characters of ASCII letters, digits and . _ - / : @
Durations: 250ms, 30s, 5m, 1h30m, 2d.";

#[derive(Debug, Parser)]
#[command(
    name = "arbiter",
    version,
    about = "Coordination for fleets of AI agent loops: leases with fencing, versioned keys, logs, notifications and a supervisor, over one store.",
    after_help = AFTER_HELP
)]
pub struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Args)]
pub struct Global {
    /// The store: sqlite:///path.db, a file path, or postgres://user@host/db[?schema=NAME].
    /// Default: arbiter/arbiter.db under your data directory.
    #[arg(
        long,
        global = true,
        env = "ARBITER_STORE",
        hide_env_values = true,
        value_name = "URL"
    )]
    store: Option<String>,
    /// The namespace every object lives in (1-63 of a-z, 0-9, -, _).
    #[arg(
        long,
        short = 'n',
        global = true,
        env = "ARBITER_NAMESPACE",
        default_value = arbiter_core::name::DEFAULT_NAMESPACE,
        value_parser = typed::<Namespace>
    )]
    namespace: Namespace,
    /// Print machine-readable JSON (errors too: {"error": CODE, "message": TEXT}).
    #[arg(long, global = true)]
    json: bool,
    /// The configuration file (channels, routes, loops). Default: arbiter/arbiter.toml under your
    /// config directory, if it exists.
    #[arg(long, global = true, env = "ARBITER_CONFIG", value_name = "FILE")]
    config: Option<std::path::PathBuf>,
    /// Go through the arbiter server at URL (`arbiter serve`) instead of opening the store:
    /// same output and exit codes; a refusal of the token is exit 8. The bearer token comes
    /// from ARBITER_TOKEN or --token-file.
    #[arg(
        long,
        global = true,
        env = "ARBITER_SERVER",
        hide_env_values = true,
        value_name = "URL"
    )]
    server: Option<String>,
    /// With --server: read the bearer token from this file (its one line) instead of
    /// ARBITER_TOKEN. There is no flag taking the token itself: it would show in `ps`.
    #[arg(long, global = true, value_name = "FILE")]
    token_file: Option<std::path::PathBuf>,
    /// Whether --store was given on the command line (not from ARBITER_STORE): with
    /// --server too, that is two answers to "where", refused.
    #[arg(skip)]
    store_given: bool,
    /// Whether the namespace was given (flag or environment) rather than defaulted: where
    /// another flag also names namespaces (`token create --namespaces`), both is an error.
    #[arg(skip)]
    namespace_given: bool,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Leases: locks and semaphores with TTLs and fencing tokens.
    #[command(subcommand)]
    Lease(lease::LeaseCommand),
    /// Run a command while holding a lease; stop it if the lease is lost.
    #[command(long_about = lock::LONG_ABOUT)]
    Lock(lock::LockArgs),
    /// Versioned keys with compare-and-swap and watches.
    #[command(subcommand)]
    Kv(kv::KvCommand),
    /// Rate-limit buckets shared through the store: define, take (all or none), show,
    /// observe an upstream's limits.
    #[command(subcommand, long_about = limit::LONG_ABOUT)]
    Limit(limit::LimitCommand),
    /// Work items: a durable queue whose claims are leases with fencing tokens; `queue work`
    /// runs a command per item.
    #[command(subcommand)]
    Queue(queue::QueueCommand),
    /// Append-only streams with idempotency keys, and their consumers.
    #[command(subcommand)]
    Log(log::LogCommand),
    /// Record a decision in the decisions log.
    Decide(decisions::DecideArgs),
    /// The decisions log as Markdown.
    #[command(subcommand)]
    Decisions(decisions::DecisionsCommand),
    /// The git-native decisions drop-box: drop files into an inbox, sweep them into one file.
    #[command(subcommand)]
    Inbox(decisions::InboxCommand),
    /// Set up a repository: merge=union in .gitattributes for append-only files.
    Init(decisions::InitArgs),
    /// Send a notification: routed by arbiter.toml, folded when it repeats, delivered by
    /// the dispatcher through a durable outbox.
    Notify(notify::NotifyArgs),
    /// Deliver pending notifications (one dispatcher per namespace runs at a time).
    Dispatch(notify::DispatchArgs),
    /// The notification outbox: list, retry dead ones.
    #[command(subcommand)]
    Notifications(notify::NotificationsCommand),
    /// The configured notification channels.
    #[command(subcommand)]
    Channels(notify::ChannelsCommand),
    /// Run the agent loops of arbiter.toml: one instance per loop across every host.
    Watch(watch::WatchArgs),
    /// The fleet: every loop, where it runs, its last rounds, failures, next run, GitHub
    /// calls per round; and each GitHub identity's budget left, reset, freeze and forecast.
    Status(watch::StatusArgs),
    /// Print a loop's round log.
    Logs(watch::LogsArgs),
    /// Proxies: `proxy github`, GitHub's API with a per-credential cache and fleet-wide budgets.
    #[command(subcommand)]
    Proxy(proxy::ProxyCommand),
    /// Serve the store's primitives over HTTP: a JSON API with bearer tokens, event streams,
    /// OpenAPI, metrics.
    #[command(long_about = serve::LONG_ABOUT)]
    Serve(serve::ServeArgs),
    /// The store itself: which one, and its schema.
    #[command(subcommand)]
    Store(store::StoreCommand),
    /// Serve the primitives as MCP tools over stdio, for an agent's MCP client.
    #[command(long_about = mcp::LONG_ABOUT)]
    Mcp(mcp::McpArgs),
    /// API tokens for `arbiter serve`: create (the secret printed once), list, revoke, and
    /// the audit of refused requests.
    #[command(subcommand, long_about = token::LONG_ABOUT)]
    Token(token::TokenCommand),
    /// Check this machine's setup: the store, file modes, the config, each channel, each
    /// profile's gh setup. One line per check; exit 7 if one failed.
    Doctor(doctor::DoctorArgs),
}

/// Parses the command line, runs the command, and returns the exit code.
pub fn main(args: Vec<OsString>) -> i32 {
    let json = args.iter().any(|a| a == "--json");
    let cli = match parse(&args) {
        Ok(cli) => cli,
        Err(err) => {
            use clap::error::ErrorKind as K;
            if matches!(
                err.kind(),
                K::DisplayHelp | K::DisplayVersion | K::DisplayHelpOnMissingArgumentOrSubcommand
            ) || !json
            {
                let _ = err.print();
                return if err.use_stderr() {
                    exit::BAD_INPUT
                } else {
                    exit::SUCCESS
                };
            }
            // The first paragraph: the error and what it names (e.g. the missing arguments),
            // without clap's usage and tips.
            let message = err.render().to_string();
            let first: Vec<&str> = message
                .lines()
                .take_while(|line| !line.trim().is_empty())
                .map(|line| line.trim().trim_start_matches("error: "))
                .collect();
            Output { json }.error(&Error::bad_input(first.join(" ")));
            return exit::BAD_INPUT;
        }
    };
    init_tracing();
    let out = Output { json: cli.global.json };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            let err = Error::internal(format!("cannot start the async runtime: {e}"));
            out.error(&err);
            return exit::code(err.kind);
        }
    };
    let code = match runtime.block_on(run(cli, out)) {
        Ok(code) => code,
        Err(err) => {
            out.error(&err);
            exit::code(err.kind)
        }
    };
    // A store call abandoned at its deadline may still be stuck on the blocking pool (a
    // SQLite write waiting for the file lock): do not wait for it to exit.
    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
    code
}

/// Parses the command line, noting whether `-n/--namespace` was given or defaulted (which
/// the derived struct alone cannot tell).
fn parse(args: &[OsString]) -> std::result::Result<Cli, clap::Error> {
    use clap::parser::ValueSource;
    use clap::{CommandFactory, FromArgMatches};
    let matches = Cli::command().try_get_matches_from(args)?;
    let mut cli = Cli::from_arg_matches(&matches)?;
    cli.global.namespace_given = matches!(
        matches.value_source("namespace"),
        Some(ValueSource::CommandLine | ValueSource::EnvVariable)
    );
    cli.global.store_given = matches!(matches.value_source("store"), Some(ValueSource::CommandLine));
    // An empty ARBITER_SERVER (a variable cleared with `ARBITER_SERVER=`) means no server.
    if cli.global.server.as_deref().is_some_and(|url| url.trim().is_empty()) {
        cli.global.server = None;
    }
    Ok(cli)
}

async fn run(cli: Cli, out: Output) -> Result<i32> {
    let global = cli.global;
    global.check_server(&cli.command)?;
    match cli.command {
        Command::Lease(command) => lease::run(command, &global, out).await,
        Command::Lock(args) => lock::run(args, &global, out).await,
        Command::Kv(command) => kv::run(command, &global, out).await,
        Command::Limit(command) => limit::run(command, &global, out).await,
        Command::Log(command) => log::run(command, &global, out).await,
        Command::Queue(command) => queue::run(command, &global, out).await,
        Command::Decide(args) => decisions::decide(args, &global, out).await,
        Command::Decisions(command) => decisions::decisions(command, &global, out).await,
        Command::Inbox(command) => decisions::inbox(command, &global, out).await,
        Command::Init(args) => decisions::init(args, out),
        Command::Notify(args) => notify::notify(args, &global, out).await,
        Command::Dispatch(args) => notify::dispatch(args, &global, out).await,
        Command::Notifications(command) => notify::notifications(command, &global, out).await,
        Command::Channels(command) => notify::channels(command, &global, out).await,
        Command::Watch(args) => watch::watch(args, &global, out).await,
        Command::Status(args) => watch::status(args, &global, out).await,
        Command::Logs(args) => watch::logs(args, &global, out).await,
        Command::Proxy(command) => proxy::run(command, &global, out).await,
        Command::Serve(args) => serve::run(args, &global, out).await,
        Command::Store(command) => store::run(command, &global, out).await,
        Command::Token(command) => token::run(command, &global, out).await,
        Command::Doctor(args) => doctor::run(args, &global, out).await,
        Command::Mcp(args) => mcp::run(args, &global).await,
    }
}

/// Resolves on SIGINT (Ctrl-C) or, on Unix, SIGTERM.
pub(crate) async fn shutdown_signal() {
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

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("ARBITER_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    // No report of a failed write: it would be an `eprintln!` to the same closed stderr,
    // which panics — and a request of `serve` or `mcp` that logs would never be answered
    // once whoever read their stderr (`serve 2>&1 | head -1`, an MCP client) is gone.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .log_internal_errors(false)
        .with_writer(std::io::stderr)
        .try_init();
}

impl Global {
    /// The store URL given, or the default one.
    fn store_url(&self) -> Result<StoreUrl> {
        match &self.store {
            Some(text) => StoreUrl::parse(text).map_err(|e| e.context("--store")),
            None => StoreUrl::default_sqlite(),
        }
    }

    /// `--server` where it can be used: not beside an explicit `--store`, not for a command
    /// that works on the store itself; `--token-file` only with it.
    fn check_server(&self, command: &Command) -> Result<()> {
        if self.server.is_none() {
            if let Some(path) = &self.token_file {
                return Err(Error::bad_input(format!(
                    "--token-file {}: the token is for a server; give --server URL (or ARBITER_SERVER) too",
                    path.display()
                )));
            }
            return Ok(());
        }
        if self.store_given {
            return Err(Error::bad_input(
                "--store and --server: give one (the server reaches its own store)",
            ));
        }
        match target::local_only(command) {
            Some(name) => Err(target::refuse_server(name)),
            None => Ok(()),
        }
    }

    /// Opens (and migrates) the store, for a command that works on the store itself
    /// (refused with `--server`, which such a command cannot go through); the others ask
    /// [`Global::target`].
    async fn open(&self) -> Result<(Store, StoreUrl)> {
        if self.server.is_some() {
            return Err(Error::bad_input(
                "--server: this command works on the store itself, not through a server: run it without --server (and without ARBITER_SERVER)",
            ));
        }
        self.open_store().await
    }

    /// Opens (and migrates) the store.
    async fn open_store(&self) -> Result<(Store, StoreUrl)> {
        let url = self.store_url()?;
        // A new data directory is created 0700; an existing one (perhaps a link the user
        // made to another disk) is the user's and left as it is.
        if let (None, StoreUrl::Sqlite { path, .. }) = (&self.store, &url)
            && let Some(dir) = path.parent()
            && std::fs::symlink_metadata(dir).is_err()
        {
            arbiter_process::private::private_dir(dir)
                .map_err(|e| Error::unavailable(format!("cannot create the data directory: {}", e.message)))?;
        }
        Ok((Store::open(&url).await?, url))
    }
}

/// A value parser for clap from a core parser (a name newtype, a typed state): clap shows
/// the parser's message as it is.
pub(crate) fn typed<T: std::str::FromStr<Err = ParseError>>(text: &str) -> std::result::Result<T, String> {
    text.parse().map_err(|e: ParseError| e.message)
}

pub(crate) fn parse_duration(text: &str) -> std::result::Result<Duration, String> {
    arbiter_core::duration::parse_duration(text).map_err(|e| e.message)
}

#[cfg(test)]
mod tests {
    #[test]
    fn cli_is_well_formed() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
