//! `arbiter serve`: the HTTP server (`arbiter_server`) over the store, until SIGINT/SIGTERM.

use std::net::SocketAddr;

use std::io::Write;

use arbiter_core::name::Namespace;
use arbiter_core::token::{Namespaces, Scopes};
use arbiter_core::{Error, Result};
use arbiter_ops::token::CreateToken;
use arbiter_server::{Auth, DEFAULT_LISTEN, ServeConfig, Server};
use clap::Args;

use super::output::Output;
use super::{Global, shutdown_signal, typed};
use crate::exit;

pub const LONG_ABOUT: &str = "\
Serve the store's primitives over HTTP: a JSON API under /v1/ns/{ns}/… (leases, keys,
limits, logs, decisions, notifications, status), with Server-Sent Events for watches,
follows and the fleet's status; /openapi.json, /metrics, /healthz, /readyz.

Every /v1 request needs `Authorization: Bearer <token>` (see `arbiter token create`), unless
--insecure-no-auth. It listens on loopback by default. SIGINT or SIGTERM stops it gracefully:
no new connections, event streams end, requests in flight finish (at most 10 s).";

/// The name of the token `--admin-token` creates.
const ADMIN: &str = "admin";

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The address to listen on (a port of 0 lets the OS choose; the address is printed
    /// on stderr).
    #[arg(long, value_name = "ADDR", default_value = DEFAULT_LISTEN)]
    listen: SocketAddr,
    /// Serve without tokens: every request may do anything. For a loopback address on a
    /// machine of your own.
    #[arg(long, conflicts_with = "admin_token")]
    insecure_no_auth: bool,
    /// Create (or replace) the token `admin`, reaching every namespace with every scope,
    /// and print its secret alone on stdout's first line before serving.
    #[arg(long)]
    admin_token: bool,
    /// A namespace whose state (leases held, outbox, loops, buckets, counters) /metrics
    /// reads from the store at each scrape (repeatable).
    #[arg(long = "metrics-namespace", value_name = "NS", default_value = arbiter_core::name::DEFAULT_NAMESPACE, value_parser = typed::<Namespace>)]
    metrics_namespaces: Vec<Namespace>,
}

pub async fn run(args: ServeArgs, global: &Global, _out: Output) -> Result<i32> {
    let config = super::notify::load_config(global)?;
    let (store, _) = global.open().await?;
    if args.admin_token {
        let created = arbiter_ops::token::create(
            &store,
            CreateToken {
                name: ADMIN.to_string(),
                namespaces: Namespaces::Any,
                scopes: Scopes::all(),
                expires: None,
                replace: true,
            },
        )
        .await?;
        // The secret alone, first, so `arbiter serve --admin-token | head -1` captures it.
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "{}", created.secret)
            .and_then(|()| stdout.flush())
            .map_err(|e| Error::internal(format!("cannot print the admin token: {e}")))?;
    }
    let auth = if args.insecure_no_auth {
        Auth::Insecure
    } else {
        Auth::Tokens
    };
    let mut serve = ServeConfig::new(args.listen, auth);
    serve.config = config;
    serve.metrics_namespaces = args.metrics_namespaces;
    let server = Server::start(store, serve).await?;
    eprintln!("arbiter: serving on http://{}", server.addr());
    server.run_until(shutdown_signal()).await?;
    Ok(exit::SUCCESS)
}
