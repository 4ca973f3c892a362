//! `arbiter kv …`: versioned keys.

use arbiter_client::kv::Watch;
use arbiter_core::kv::{EventType, MAX_VALUE_LEN};
use arbiter_core::name::{Key, Prefix};
use arbiter_core::redact::printable;
use arbiter_core::{Error, ErrorKind, Result};
use clap::Subcommand;

use super::output::Output;
use super::{Global, parse_name};
use crate::exit;

#[derive(Debug, Subcommand)]
pub enum KvCommand {
    /// Print a key's value (exit code 5 if it does not exist).
    Get {
        #[arg(value_parser = parse_name::<Key>)]
        key: Key,
    },
    /// Set a key and print its new version. With --if-version, only if the key is at that
    /// version (0: only if it does not exist); otherwise exit code 3 (conflict).
    Put {
        #[arg(value_parser = parse_name::<Key>)]
        key: Key,
        /// The value (UTF-8 text, at most 1 MiB; it may start with a hyphen, like -5).
        #[arg(allow_negative_numbers = true)]
        value: String,
        /// Compare-and-swap: the version the key must have (0: must not exist).
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(i64).range(0..), allow_hyphen_values = true)]
        if_version: Option<i64>,
    },
    /// Delete a key and print the revision of the deletion.
    Delete {
        #[arg(value_parser = parse_name::<Key>)]
        key: Key,
        /// Compare-and-swap: the version the key must have.
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(i64).range(1..), allow_hyphen_values = true)]
        if_version: Option<i64>,
    },
    /// List keys starting with PREFIX: key, version and value, tab-separated.
    List {
        #[arg(value_parser = parse_name::<Prefix>, default_value = "")]
        prefix: Prefix,
    },
    /// Print every change of keys starting with PREFIX, as it happens, until interrupted.
    Watch {
        #[arg(value_parser = parse_name::<Prefix>)]
        prefix: Prefix,
        /// Start at this revision (inclusive), replaying earlier changes; default: the next change.
        #[arg(long, value_name = "REVISION", value_parser = clap::value_parser!(i64).range(1..), allow_hyphen_values = true)]
        from: Option<i64>,
        /// Stop after this many changes.
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..), allow_hyphen_values = true)]
        limit: Option<u64>,
    },
}

pub async fn run(command: KvCommand, global: &Global, out: Output) -> Result<i32> {
    let ns = &global.namespace;
    match command {
        KvCommand::Get { key } => {
            let (store, _) = global.open().await?;
            let Some(kv) = store.kv().get(ns, &key).await? else {
                return Err(Error::new(
                    ErrorKind::NotFound,
                    format!("no key {key:?} in namespace {ns:?}"),
                ));
            };
            if out.json {
                out.print_json(&kv);
            } else {
                println!("{}", kv.value);
            }
        }
        KvCommand::Put { key, value, if_version } => {
            if value.len() > MAX_VALUE_LEN {
                return Err(Error::bad_input(format!(
                    "the value is {} bytes; at most {MAX_VALUE_LEN} are allowed",
                    value.len()
                )));
            }
            let (store, _) = global.open().await?;
            let version = store.kv().put(ns, &key, &value, if_version).await?;
            if out.json {
                out.print_json(&serde_json::json!({ "key": key, "value": value, "version": version }));
            } else {
                println!("{version}");
            }
        }
        KvCommand::Delete { key, if_version } => {
            let (store, _) = global.open().await?;
            let revision = store.kv().delete(ns, &key, if_version).await?;
            if out.json {
                out.print_json(&serde_json::json!({ "key": key, "deleted": true, "version": revision }));
            } else {
                println!("{revision}");
            }
        }
        KvCommand::List { prefix } => {
            let (store, _) = global.open().await?;
            let items = store.kv().list(ns, &prefix).await?;
            if out.json {
                out.print_json(&items);
            } else {
                // One row per key, and nothing a terminal would interpret.
                for kv in items {
                    println!("{}\t{}\t{}", kv.key, kv.version, printable(&kv.value));
                }
            }
        }
        KvCommand::Watch { prefix, from, limit } => {
            let (store, _) = global.open().await?;
            let mut watch = Watch::start(&store, ns, &prefix, from).await?;
            let mut seen = 0u64;
            // Bounded by --limit, or runs until interrupted: that is what a watch is for.
            loop {
                for event in watch.next().await? {
                    if out.json {
                        out.print_json(&event);
                    } else {
                        match event.kind {
                            EventType::Put => println!(
                                "PUT\t{}\t{}\t{}",
                                event.key,
                                event.version,
                                printable(event.value.as_deref().unwrap_or_default())
                            ),
                            EventType::Delete => println!("DELETE\t{}\t{}", event.key, event.version),
                        }
                    }
                    seen += 1;
                    if limit.is_some_and(|limit| seen >= limit) {
                        return Ok(exit::SUCCESS);
                    }
                }
            }
        }
    }
    Ok(exit::SUCCESS)
}
