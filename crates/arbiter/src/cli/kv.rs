//! `arbiter kv …`: versioned keys.

use arbiter_core::Result;
use arbiter_core::kv::EventType;
use arbiter_core::name::{Key, Prefix};
use arbiter_core::redact::printable;
use arbiter_ops::kv::Value;
use clap::Subcommand;

use super::output::Output;
use super::{Global, typed};
use crate::exit;

#[derive(Debug, Subcommand)]
pub enum KvCommand {
    /// Print a key's value (exit code 5 if it does not exist).
    Get {
        #[arg(value_parser = typed::<Key>)]
        key: Key,
    },
    /// Set a key and print its new version. With --if-version, only if the key is at that
    /// version (0: only if it does not exist); otherwise exit code 3 (conflict).
    Put {
        #[arg(value_parser = typed::<Key>)]
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
        #[arg(value_parser = typed::<Key>)]
        key: Key,
        /// Compare-and-swap: the version the key must have.
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(i64).range(1..), allow_hyphen_values = true)]
        if_version: Option<i64>,
    },
    /// List keys starting with PREFIX: key, version and value, tab-separated.
    List {
        #[arg(value_parser = typed::<Prefix>, default_value = "")]
        prefix: Prefix,
    },
    /// Print every change of keys starting with PREFIX, as it happens, until interrupted.
    Watch {
        #[arg(value_parser = typed::<Prefix>)]
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
            let target = global.target().await?;
            let kv = target.kv_get(ns, &key).await?;
            if out.json {
                out.print_json(&kv);
            } else {
                println!("{}", kv.value);
            }
        }
        KvCommand::Put { key, value, if_version } => {
            let value = Value::parse(value)?;
            let target = global.target().await?;
            let put = target.kv_put(ns, &key, value, if_version).await?;
            if out.json {
                out.print_sorted(&put);
            } else {
                println!("{}", put.version);
            }
        }
        KvCommand::Delete { key, if_version } => {
            let target = global.target().await?;
            let deleted = target.kv_delete(ns, &key, if_version).await?;
            if out.json {
                out.print_sorted(&deleted);
            } else {
                println!("{}", deleted.version);
            }
        }
        KvCommand::List { prefix } => {
            let target = global.target().await?;
            let items = target.kv_list(ns, &prefix).await?;
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
            let target = global.target().await?;
            let mut watch = target.kv_watch(ns, &prefix, from).await?;
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
