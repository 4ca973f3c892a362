//! `arbiter lease …`: acquire, renew, release, list, show.

use std::time::Duration;

use arbiter_client::lease::describe;
use arbiter_core::lease::{Holder, MAX_SLOTS};
use arbiter_core::name::{LeaseName, Namespace, Prefix};
use arbiter_core::{Error, Result};
use arbiter_ops::lease::AcquireRequest;
use clap::{Args, Subcommand};

use super::output::Output;
use super::{Global, parse_duration, typed};
use crate::exit;

#[derive(Debug, Subcommand)]
pub enum LeaseCommand {
    /// Take a place of a lease and print its fencing token.
    ///
    /// The holder recorded is the process that ran this command (your shell or script,
    /// past wrappers such as `timeout`, `xargs` or a `$(…)` subshell) and its process
    /// group: on this host, once that process is gone and its group is empty, the lease is
    /// free for the next acquirer at once; elsewhere, after its TTL. --holder-pid names the
    /// process explicitly. Renew before the TTL runs out, release when done.
    Acquire {
        #[command(flatten)]
        args: AcquireArgs,
        /// The process that holds the lease (default: the caller, past wrappers): on this
        /// host, the lease is free for others once it is gone.
        #[arg(long, value_name = "PID", value_parser = clap::value_parser!(u32).range(1..), allow_hyphen_values = true)]
        holder_pid: Option<u32>,
    },
    /// Extend a held lease; a stale token fails with exit code 4 (lost).
    Renew {
        /// The lease name.
        #[arg(value_parser = typed::<LeaseName>)]
        name: LeaseName,
        /// The fencing token `acquire` printed.
        #[arg(long, value_parser = parse_token, allow_hyphen_values = true)]
        token: i64,
        /// New time to live from now (default: the lease's own TTL).
        #[arg(long, value_parser = parse_duration, value_name = "DURATION", allow_hyphen_values = true)]
        ttl: Option<Duration>,
    },
    /// Release a held lease; a stale token fails with exit code 4 (lost).
    Release {
        /// The lease name.
        #[arg(value_parser = typed::<LeaseName>)]
        name: LeaseName,
        /// The fencing token `acquire` printed.
        #[arg(long, value_parser = parse_token, allow_hyphen_values = true)]
        token: i64,
    },
    /// List the live holders of leases whose names start with PREFIX.
    List {
        /// Only names starting with this (default: all).
        #[arg(value_parser = typed::<Prefix>, default_value = "")]
        prefix: Prefix,
    },
    /// Show one lease: slots, last fencing token, holders and waiters.
    Show {
        /// The lease name.
        #[arg(value_parser = typed::<LeaseName>)]
        name: LeaseName,
    },
}

#[derive(Debug, Args)]
pub struct AcquireArgs {
    /// The lease name.
    #[arg(value_parser = typed::<LeaseName>)]
    pub name: LeaseName,
    /// How long the lease lasts unless renewed.
    #[arg(long, value_parser = parse_duration, default_value = "30s", value_name = "DURATION", allow_hyphen_values = true)]
    pub ttl: Duration,
    /// Wait up to this long for a place, in arrival order (default: fail at once if held).
    #[arg(long, value_parser = parse_duration, value_name = "DURATION", allow_hyphen_values = true)]
    pub wait: Option<Duration>,
    /// Places of the lease: 1 is a lock, N a semaphore. Every holder must agree on N.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=MAX_SLOTS as i64), allow_hyphen_values = true)]
    pub slots: u32,
    /// Who is holding it, for people reading `lease show` (an agent name).
    #[arg(long, value_name = "TEXT", default_value = "", value_parser = parse_agent)]
    pub holder: String,
}

pub(super) fn parse_token(text: &str) -> std::result::Result<i64, String> {
    let token = text
        .parse::<i64>()
        .map_err(|_| format!("invalid token {text:?}: expected the positive integer `lease acquire` printed"))?;
    arbiter_core::lease::check_token(token).map_err(|e| e.message)
}

pub(super) fn parse_agent(text: &str) -> std::result::Result<String, String> {
    arbiter_core::lease::check_agent(text).map_err(|e| e.message)?;
    Ok(text.to_string())
}

impl AcquireArgs {
    /// The one acquire request, for `holder` (the process whose life the lease follows).
    pub fn request(self, namespace: &Namespace, holder: Holder) -> AcquireRequest {
        AcquireRequest {
            namespace: namespace.clone(),
            name: self.name,
            holder,
            ttl: self.ttl,
            slots: self.slots,
            wait: self.wait,
        }
    }
}

pub async fn run(command: LeaseCommand, global: &Global, out: Output) -> Result<i32> {
    let ns = &global.namespace;
    match command {
        LeaseCommand::Acquire { args, holder_pid } => {
            // The holder is whoever asked (this process ends right after printing the
            // token): the named process, or the caller past wrappers, with its group.
            let holder = match holder_pid {
                Some(pid) => arbiter_process::holder_for(pid, &args.holder).map_err(|_| {
                    Error::bad_input(format!(
                        "--holder-pid {pid}: no such process on this host; expected the pid of a running process"
                    ))
                })?,
                None => arbiter_process::caller_holder(&args.holder)?,
            };
            let target = global.target().await?;
            let lease = target.lease_acquire(args.request(ns, holder)).await?;
            if out.json {
                out.print_json(&lease);
            } else {
                println!("{}", lease.token);
            }
        }
        LeaseCommand::Renew { name, token, ttl } => {
            let target = global.target().await?;
            let lease = target.lease_renew(ns, &name, token, ttl).await?;
            if out.json {
                out.print_json(&lease);
            } else {
                println!("{}", lease.expires_at);
            }
        }
        LeaseCommand::Release { name, token } => {
            let target = global.target().await?;
            let released = target.lease_release(ns, &name, token).await?;
            if out.json {
                out.print_sorted(&released);
            }
        }
        LeaseCommand::List { prefix } => {
            let target = global.target().await?;
            let leases = target.lease_list(ns, &prefix).await?;
            if out.json {
                out.print_json(&leases);
            } else {
                for lease in &leases {
                    println!(
                        "{}\t{}\t{}\t{}",
                        lease.name,
                        lease.token,
                        describe(&lease.holder),
                        lease.expires_at
                    );
                }
            }
        }
        LeaseCommand::Show { name } => {
            let target = global.target().await?;
            let info = target.lease_show(ns, &name).await?;
            if out.json {
                out.print_sorted(&info);
            } else {
                println!("name: {}", info.name);
                println!("namespace: {}", info.namespace);
                println!("slots: {}", info.slots);
                println!("last token: {}", info.last_token);
                if info.holders.is_empty() {
                    println!("holders: none (free)");
                }
                for lease in &info.holders {
                    println!(
                        "holder: token {} {} since {} until {}",
                        lease.token,
                        describe(&lease.holder),
                        lease.acquired_at,
                        lease.expires_at
                    );
                }
                for waiter in &info.waiters {
                    println!("waiter: {} since {}", describe(&waiter.holder), waiter.enqueued_at);
                }
            }
        }
    }
    Ok(exit::SUCCESS)
}
