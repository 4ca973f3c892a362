//! Notifications: `arbiter notify`, `dispatch`, `notifications`, `channels`.

use std::path::PathBuf;
use std::sync::Arc;

use arbiter_config::Config;
use arbiter_core::log::parse_tag;
use arbiter_core::notify::{Notification, Severity};
use arbiter_core::redact::printable;
use arbiter_core::{ErrorKind, Result};
use arbiter_notify::dispatch::Dispatcher;
use arbiter_ops::notify;
use arbiter_store::DeliveryState;
use clap::{Args, Subcommand};

use super::log::read_body_at_most;
use super::output::{Output, timestamp};
use super::{Global, shutdown_signal};
use crate::exit;

/// `arbiter notify`: accept a notification into the durable outbox.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct NotifyArgs {
    #[command(subcommand)]
    command: Option<NotifyCommand>,
    /// What happened, dotted (loop.failure, news, security.finding).
    #[arg(long, required = true)]
    kind: Option<String>,
    /// info, warning or critical.
    #[arg(long, required = true, value_parser = Severity::parse)]
    severity: Option<Severity>,
    /// One line.
    #[arg(long, required = true)]
    title: Option<String>,
    /// The details (Markdown).
    #[arg(long, conflicts_with = "body_file")]
    body: Option<String>,
    /// Read the details from this file ("-" for standard input).
    #[arg(long, value_name = "FILE")]
    body_file: Option<PathBuf>,
    /// Repeats with one dedupe key fold into one alert, sent at the 1st, 3rd, 10th … time.
    #[arg(long, value_name = "KEY")]
    dedupe: Option<String>,
    /// A tag, KEY=VALUE (repeatable); routes can match on tags.
    #[arg(long = "tag", value_name = "KEY=VALUE", value_parser = parse_tag)]
    tags: Vec<(String, String)>,
    /// Who sends it (default: this host's name).
    #[arg(long)]
    source: Option<String>,
    /// Send to this channel id only, instead of routing.
    #[arg(long, value_name = "ID")]
    channel: Option<String>,
}

#[derive(Debug, Subcommand)]
enum NotifyCommand {
    /// The condition behind a dedupe key cleared: one recovery message to every channel
    /// it alerted, saying how long it lasted and how often it happened.
    Resolve {
        #[arg(long, value_name = "KEY")]
        dedupe: String,
        /// Details for the recovery message.
        #[arg(long)]
        body: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum NotificationsCommand {
    /// List the outbox, newest first.
    List {
        /// Only pending, delivered or dead ones.
        #[arg(long, value_parser = DeliveryState::parse)]
        state: Option<DeliveryState>,
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..=notify::MAX_LIST))]
        limit: u64,
    },
    /// Put a dead notification back in the queue.
    Retry {
        #[arg(value_parser = clap::value_parser!(i64).range(1..))]
        id: i64,
    },
}

#[derive(Debug, Subcommand)]
pub enum ChannelsCommand {
    /// List the configured channels.
    List,
    /// Send a test message to a channel now and print the receiver's answer.
    Test { id: String },
}

/// `arbiter dispatch`.
#[derive(Debug, Args)]
pub struct DispatchArgs {
    /// Deliver what is due now, then exit (fails with exit code 3 if another dispatcher
    /// runs). Without it, stand by until no other dispatcher runs, then deliver until
    /// interrupted.
    #[arg(long)]
    once: bool,
}

pub(super) fn load_config(global: &Global) -> Result<Arc<Config>> {
    Ok(Arc::new(Config::load(global.config.as_deref())?))
}

pub async fn notify(args: NotifyArgs, global: &Global, out: Output) -> Result<i32> {
    // Through a server, the server's configuration routes.
    let config = global.local_config()?;
    if let Some(NotifyCommand::Resolve { dedupe, body }) = args.command {
        arbiter_core::name::validate_name("dedupe key", &dedupe)?;
        let target = global.target().await?;
        let resolved = target
            .notify_resolve(&global.namespace, &dedupe, body.as_deref())
            .await?;
        if out.json {
            out.print_json(&resolved);
        } else {
            println!("resolved {dedupe:?} after {} occurrence(s)", resolved.count);
        }
        return Ok(exit::SUCCESS);
    }
    let body = match (&args.body, &args.body_file) {
        (Some(body), _) => body.clone(),
        (None, Some(path)) => read_body_at_most(path, arbiter_core::notify::MAX_BODY_LEN)?,
        (None, None) => String::new(),
    };
    let notification = Notification {
        kind: args.kind.unwrap_or_default(),
        severity: args.severity.unwrap_or(Severity::Info),
        source: args.source.unwrap_or_else(arbiter_process::host_name),
        title: args.title.unwrap_or_default(),
        body,
        tags: args.tags.into_iter().collect(),
        dedupe_key: args.dedupe,
    };
    // Routed before the store is opened, so a bad route changes nothing.
    if let Some(config) = &config {
        notify::route(config, &global.namespace, notification.clone(), args.channel.as_deref())?;
    }
    let target = global.target().await?;
    let accepted = target
        .notify(
            config.as_deref(),
            &global.namespace,
            notification,
            args.channel.as_deref(),
        )
        .await?;
    if out.json {
        out.print_json(&accepted);
    } else if accepted.sent {
        println!(
            "queued for {} channel(s) (occurrence {})",
            accepted.deliveries.len(),
            accepted.count
        );
    } else {
        println!("counted (occurrence {}; folded, not sent)", accepted.count);
    }
    Ok(exit::SUCCESS)
}

pub async fn dispatch(args: DispatchArgs, global: &Global, out: Output) -> Result<i32> {
    let config = load_config(global)?;
    let (store, _) = global.open().await?;
    let dispatcher = Dispatcher::new(store.clone(), config, &global.namespace);
    let wait = if args.once {
        None
    } else {
        Some(std::time::Duration::from_secs(365 * 86_400))
    };
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    // A standing dispatcher outlives store outages: a store that stops answering (or a
    // lease lost to one) starts it over after a pause that backs off, as `watch` does.
    // `--once` reports the error instead.
    let mut pause = std::time::Duration::from_secs(1);
    let report = loop {
        let attempt = async {
            let mut held = dispatcher.lease(wait).await?;
            let report = dispatcher.run(&mut held, args.once, &mut shutdown).await;
            let _ = held.release().await;
            report
        }
        .await;
        match attempt {
            Err(e) if !args.once && matches!(e.kind, ErrorKind::Unavailable | ErrorKind::Lost) => {
                tracing::warn!(error = %e, retry_in = ?pause, "the dispatcher stopped; starting it again");
                tokio::select! {
                    () = tokio::time::sleep(pause) => {}
                    () = &mut shutdown => return Ok(exit::SUCCESS),
                }
                pause = (pause * 2).min(std::time::Duration::from_secs(30));
            }
            other => break other?,
        }
    };
    if out.json {
        out.print_json(&report);
    } else {
        println!(
            "delivered {}, failed attempts {}, dead {}",
            report.delivered, report.failed_attempts, report.dead
        );
    }
    Ok(exit::SUCCESS)
}

pub async fn notifications(command: NotificationsCommand, global: &Global, out: Output) -> Result<i32> {
    let target = global.target().await?;
    match command {
        NotificationsCommand::List { state, limit } => {
            let entries = target
                .notifications_list(&global.namespace, state, limit as usize)
                .await?;
            if out.json {
                out.print_json(&entries);
            } else {
                for e in entries {
                    let n = &e.message.notification;
                    let error = e
                        .last_error
                        .map(|err| format!("\t{}", printable(&err)))
                        .unwrap_or_default();
                    println!(
                        "{}\t{}\t{}\t{}\t{}\t{}\tattempts {}{error}",
                        e.id,
                        e.state.as_str(),
                        e.channel,
                        timestamp(e.created_at),
                        n.kind,
                        printable(&n.title),
                        e.attempts
                    );
                }
            }
        }
        NotificationsCommand::Retry { id } => {
            let entry = target.notifications_retry(&global.namespace, id).await?;
            if out.json {
                out.print_json(&entry);
            } else {
                println!("{id} is pending again");
            }
        }
    }
    Ok(exit::SUCCESS)
}

pub async fn channels(command: ChannelsCommand, global: &Global, out: Output) -> Result<i32> {
    match command {
        ChannelsCommand::List => {
            let channels = super::target::channels(global).await?;
            if out.json {
                out.print_sorted(&channels);
            } else {
                for c in channels {
                    println!("{}\t{}\t{}\t{}", c.id, c.kind, c.target, c.name.unwrap_or_default());
                }
            }
        }
        ChannelsCommand::Test { id } => {
            // A channel that does not take the message exits 7, not 6: the channel
            // failed, not the store.
            let config = load_config(global)?;
            let delivered = notify::test_channel(&config, &id).await?;
            if out.json {
                out.print_sorted(&delivered);
            } else {
                println!(
                    "delivered to {id}{}",
                    delivered.status.map(|s| format!(" (HTTP {s})")).unwrap_or_default()
                );
            }
        }
    }
    Ok(exit::SUCCESS)
}
