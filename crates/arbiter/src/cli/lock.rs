//! `arbiter lock NAME -- CMD…`: hold a lease while a command runs.

use std::ffi::OsString;
use std::time::Duration;

use arbiter_client::lease::{HeldLease, LeaseKeeper, check_grace, default_grace};
use arbiter_client::lock::{LockCommand, LockOutcome, run_locked};
use arbiter_core::{Error, Result};
use clap::Args;

use super::lease::AcquireArgs;
use super::output::{LeaseView, Output};
use super::{Global, parse_duration, shutdown_signal};
use crate::exit;

/// The long help of `arbiter lock` (the short one is the doc comment of its `Command`
/// variant, which would otherwise replace this one).
pub const LONG_ABOUT: &str = "\
Run a command while holding a lease; stop it if the lease is lost.

Acquires NAME (waiting with --wait), runs CMD with ARBITER_LEASE_NAME,
ARBITER_LEASE_TOKEN, ARBITER_NAMESPACE and ARBITER_STORE (through --server:
ARBITER_SERVER) set, renews the lease while CMD runs, and releases it when CMD exits,
exiting with CMD's code.

CMD runs in its own process group, which dies with this process. If the lease is lost
(the store says so, or no renew was confirmed in time: the lease counts as lost at
5/6 of --ttl minus --grace after the last confirmed renew was sent), CMD's whole process
tree gets TERM, then KILL after --grace, and arbiter exits with code 4: CMD is gone
before the store could grant the lease to anyone else. --grace may be at most a third
of --ttl. On SIGINT or SIGTERM the
group is stopped the same way and the lease released. Because CMD is in its own
process group, it cannot read from the terminal.";

/// The arguments of `arbiter lock`; see [`LONG_ABOUT`].
#[derive(Debug, Args)]
pub struct LockArgs {
    #[command(flatten)]
    acquire: AcquireArgs,
    /// Time CMD gets to exit after TERM before it is killed: at most a third of --ttl
    /// (default: 10s, or a third of --ttl if that is less).
    #[arg(long, value_parser = parse_duration, value_name = "DURATION", allow_hyphen_values = true)]
    grace: Option<Duration>,
    /// The command and its arguments (after --).
    #[arg(last = true, required = true, value_name = "CMD")]
    command: Vec<OsString>,
}

pub async fn run(args: LockArgs, global: &Global, out: Output) -> Result<i32> {
    let ttl = args.acquire.ttl;
    let grace = match args.grace {
        Some(grace) => {
            check_grace(ttl, grace, "--grace", "--ttl")?;
            grace
        }
        None => default_grace(ttl),
    };
    // The holder is this process: it keeps the lease alive while CMD runs.
    let holder = arbiter_process::holder_for(arbiter_process::current_pid(), &args.acquire.holder)?;
    let request = args.acquire.request(&global.namespace, holder);
    let guard_exe =
        std::env::current_exe().map_err(|e| Error::internal(format!("cannot find the arbiter executable: {e}")))?;
    // The lease is kept by the same rule either way; only where the renews go differs.
    match global.server_client()? {
        Some(client) => {
            let place = (OsString::from("ARBITER_SERVER"), OsString::from(client_url(global)));
            let granted = client.lease_grant(&request).await?;
            let held = HeldLease::hold(client, granted, grace);
            locked(held, place, args.command, guard_exe, out).await
        }
        None => {
            let (store, url) = global.open().await?;
            let held = HeldLease::acquire(&store, request, grace).await?;
            let place = (OsString::from("ARBITER_STORE"), OsString::from(url.to_url()));
            locked(held, place, args.command, guard_exe, out).await
        }
    }
}

/// The URL of `--server`, for CMD's environment (it carries no secret: a client refuses
/// a URL with a user or password).
fn client_url(global: &Global) -> String {
    global.server.clone().unwrap_or_default()
}

/// Runs CMD under `held`, with the lease and `place` (where it is kept: `ARBITER_STORE`
/// or `ARBITER_SERVER`) in its environment.
async fn locked<K: LeaseKeeper>(
    held: HeldLease<K>,
    place: (OsString, OsString),
    argv: Vec<OsString>,
    guard_exe: std::path::PathBuf,
    out: Output,
) -> Result<i32> {
    if out.json {
        // stdout belongs to CMD; the lease goes to stderr so scripts can still read it.
        eprintln!(
            "{}",
            serde_json::to_string(&LeaseView::from(held.lease())).unwrap_or_default()
        );
    }
    let lease = held.lease();
    let env = vec![
        (
            OsString::from("ARBITER_LEASE_NAME"),
            OsString::from(lease.name.as_str()),
        ),
        (
            OsString::from("ARBITER_LEASE_TOKEN"),
            OsString::from(lease.token.to_string()),
        ),
        (
            OsString::from("ARBITER_NAMESPACE"),
            OsString::from(lease.namespace.as_str()),
        ),
        place,
    ];
    let command = LockCommand { argv, env, guard_exe };
    match run_locked(held, command, shutdown_signal()).await? {
        LockOutcome::Exited(status) => Ok(arbiter_process::exit_code(&status)),
        LockOutcome::Interrupted(status) => Ok(exit::interrupted(arbiter_process::exit_code(&status))),
        LockOutcome::Lost(err) => {
            out.error(&err);
            Ok(exit::code(err.kind))
        }
    }
}
