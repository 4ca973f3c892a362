//! `arbiter log …`: append-only streams.

use std::collections::BTreeMap;
use std::io::{BufRead, Read};
use std::path::PathBuf;

use arbiter_core::log::{ContentType, NewRecord, RecordFields, parse_tag};
use arbiter_core::name::{ConsumerName, StreamName};
use arbiter_core::{Error, Result};
use arbiter_ops::log::{AppendedView, RecordView, Start};
use clap::{Args, Subcommand};
use serde::Deserialize;

use super::output::{Output, timestamp};
use super::{Global, typed};
use crate::exit;

#[derive(Debug, Subcommand)]
pub enum LogCommand {
    /// Append a record and print its offset. With --key, appending the same key again
    /// writes nothing and prints the first offset.
    Append(AppendArgs),
    /// Print records from an offset on; with --follow, keep printing new ones.
    Read {
        #[arg(value_parser = typed::<StreamName>)]
        stream: StreamName,
        /// The first offset to print (default 0, or the consumer's committed offset).
        #[arg(long, value_name = "OFFSET", value_parser = clap::value_parser!(i64).range(0..), allow_hyphen_values = true)]
        from: Option<i64>,
        /// Print at most this many records.
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..), allow_hyphen_values = true)]
        limit: Option<u64>,
        /// Wait for new records and print them as they arrive, until interrupted.
        #[arg(long)]
        follow: bool,
        /// Start at this consumer's committed offset.
        #[arg(long, value_name = "NAME", value_parser = typed::<ConsumerName>, conflicts_with = "from")]
        consumer: Option<ConsumerName>,
    },
    /// Consumers: named positions in a stream.
    #[command(subcommand)]
    Consumer(ConsumerCommand),
    /// List the streams and their lengths.
    Streams,
}

#[derive(Debug, Subcommand)]
pub enum ConsumerCommand {
    /// Record that CONSUMER has processed everything before OFFSET.
    Commit {
        #[arg(value_parser = typed::<StreamName>)]
        stream: StreamName,
        #[arg(value_parser = typed::<ConsumerName>)]
        consumer: ConsumerName,
        #[arg(value_parser = clap::value_parser!(i64).range(0..), allow_negative_numbers = true)]
        offset: i64,
    },
    /// List a stream's consumers and their offsets.
    List {
        #[arg(value_parser = typed::<StreamName>)]
        stream: StreamName,
    },
}

#[derive(Debug, Args)]
pub struct AppendArgs {
    #[arg(value_parser = typed::<StreamName>)]
    stream: StreamName,
    /// The record's body (or --body-file, or --jsonl).
    #[arg(required_unless_present_any = ["body_file", "jsonl"], conflicts_with_all = ["body_file", "jsonl"])]
    text: Option<String>,
    /// Read the body from this file ("-" for standard input).
    #[arg(long, value_name = "FILE", conflicts_with = "jsonl")]
    body_file: Option<PathBuf>,
    /// Idempotency key: an append with a key already used on this stream writes nothing.
    #[arg(long, value_name = "KEY")]
    key: Option<String>,
    /// The record's kind.
    #[arg(long, default_value = "note")]
    kind: String,
    /// Who appends it (an agent name).
    #[arg(long, value_name = "AGENT", default_value = "")]
    by: String,
    /// A tag, KEY=VALUE (repeatable).
    #[arg(long = "tag", value_name = "KEY=VALUE", value_parser = parse_tag)]
    tags: Vec<(String, String)>,
    /// The body is JSON (checked, stored as given).
    #[arg(long)]
    json_body: bool,
    /// A trace id to store with the record.
    #[arg(long, value_name = "ID")]
    trace_id: Option<String>,
    /// Append one record per line of standard input, each a JSON object
    /// {"body": …, "key": …, "kind": …, "by": …, "tags": {…}} (only body is required; a
    /// non-string body is stored as JSON). Each offset is printed once durable.
    #[arg(long)]
    jsonl: bool,
}

/// One line of `--jsonl` input.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    body: serde_json::Value,
    key: Option<String>,
    kind: Option<String>,
    by: Option<String>,
    #[serde(default)]
    tags: BTreeMap<String, String>,
    trace_id: Option<String>,
}

/// `--body-file` with the log's limit on a record body (see [`read_body_at_most`]).
pub(super) fn read_body(path: &std::path::Path) -> Result<String> {
    read_body_at_most(path, arbiter_core::log::MAX_BODY_LEN)
}

/// Reads `--body-file PATH` ("-": standard input) as UTF-8 text of at most `limit` bytes.
/// At most `limit + 1` bytes are ever read: a larger input is bad input naming the flag
/// and the limit, whatever its size (`/dev/zero` included).
pub(super) fn read_body_at_most(path: &std::path::Path, limit: usize) -> Result<String> {
    let shown = if path.as_os_str() == "-" {
        "--body-file - (standard input)".to_string()
    } else {
        format!("--body-file {}", path.display())
    };
    let mut bytes = Vec::new();
    let read = if path.as_os_str() == "-" {
        std::io::stdin().lock().take(limit as u64 + 1).read_to_end(&mut bytes)
    } else {
        std::fs::File::open(path).and_then(|f| f.take(limit as u64 + 1).read_to_end(&mut bytes))
    };
    read.map_err(|e| Error::bad_input(format!("cannot read {shown}: {e}")))?;
    if bytes.len() > limit {
        return Err(Error::bad_input(format!(
            "{shown} is larger than {limit} bytes, the limit: shorten it"
        )));
    }
    String::from_utf8(bytes).map_err(|_| Error::bad_input(format!("{shown} is not UTF-8 text")))
}

/// The longest line `log append --jsonl` reads: a record body at its limit, escaped.
pub const MAX_JSONL_LINE: usize = 4 * arbiter_core::log::MAX_BODY_LEN;

pub async fn run(command: LogCommand, global: &Global, out: Output) -> Result<i32> {
    let ns = &global.namespace;
    match command {
        LogCommand::Append(args) if args.jsonl => append_lines(args, global, out).await?,
        LogCommand::Append(args) => {
            let body = match (&args.text, &args.body_file) {
                (Some(text), _) => text.clone(),
                (None, Some(path)) => read_body(path)?,
                (None, None) => unreachable!("clap requires one"),
            };
            let record = NewRecord::new(
                ns.clone(),
                args.stream.clone(),
                RecordFields {
                    kind: args.kind.clone(),
                    author: args.by.clone(),
                    body,
                    content_type: if args.json_body {
                        ContentType::Json
                    } else {
                        ContentType::Text
                    },
                    tags: args.tags.iter().cloned().collect(),
                    trace_id: args.trace_id.clone(),
                    idempotency_key: args.key.clone(),
                },
            )?;
            let target = global.target().await?;
            out.appended(&target.log_append(record).await?);
        }
        LogCommand::Read {
            stream,
            from,
            limit,
            follow,
            consumer,
        } => {
            let target = global.target().await?;
            let start = match consumer {
                Some(consumer) => Start::Consumer(consumer),
                None => Start::Offset(from.unwrap_or(0)),
            };
            let mut next = target.log_start_offset(ns, &stream, &start).await?;
            let mut follower = match follow {
                true => Some(target.log_follow(ns, &stream, next).await?),
                false => None,
            };
            let mut left = limit.unwrap_or(u64::MAX);
            // Bounded by --limit, the end of the stream, or (with --follow) interruption.
            while left > 0 {
                let batch: Vec<RecordView> = match follower.as_mut() {
                    Some(follower) => follower.next().await?,
                    None => {
                        let batch = target.log_read(ns, &stream, next, left.min(1000) as usize).await?;
                        if batch.is_empty() {
                            break;
                        }
                        batch
                    }
                };
                for record in batch.iter().take(left.min(batch.len() as u64) as usize) {
                    print_record(out, record);
                    left -= 1;
                    next = record.offset + 1;
                }
            }
        }
        LogCommand::Consumer(ConsumerCommand::Commit {
            stream,
            consumer,
            offset,
        }) => {
            let target = global.target().await?;
            let info = target.log_commit(ns, &stream, &consumer, offset).await?;
            if out.json {
                out.print_json(&info);
            }
        }
        LogCommand::Consumer(ConsumerCommand::List { stream }) => {
            let target = global.target().await?;
            let consumers = target.log_consumers(ns, &stream).await?;
            if out.json {
                out.print_json(&consumers);
            } else {
                for c in consumers {
                    println!("{}\t{}\t{}", c.consumer, c.offset, timestamp(c.updated_at));
                }
            }
        }
        LogCommand::Streams => {
            let target = global.target().await?;
            let streams = target.log_streams(ns).await?;
            if out.json {
                out.print_json(&streams);
            } else {
                for s in streams {
                    println!("{}\t{}", s.stream, s.next_offset);
                }
            }
        }
    }
    Ok(exit::SUCCESS)
}

impl Output {
    /// An append: its offset, or the whole answer as JSON.
    fn appended(self, appended: &AppendedView) {
        if self.json {
            self.print_sorted(appended);
        } else {
            println!("{}", appended.offset);
        }
    }
}

fn print_record(out: Output, record: &RecordView) {
    if out.json {
        out.print_sorted(record);
    } else {
        let by = if record.author.is_empty() {
            String::new()
        } else {
            format!(" by {}", record.author)
        };
        let tags: Vec<String> = record.tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let tags = if tags.is_empty() {
            String::new()
        } else {
            format!(" [{}]", tags.join(", "))
        };
        println!("#{} {} {}{by}{tags}", record.offset, record.created_at, record.kind);
        println!("{}", record.body.trim_end_matches('\n'));
    }
}

/// `log append --jsonl`: every line is validated and appended in its own transaction; its
/// offset is printed (and flushed) only once the append is durable. A malformed line
/// stops the run with its line number; lines before it stay appended.
async fn append_lines(args: AppendArgs, global: &Global, out: Output) -> Result<()> {
    let target = global.target().await?;
    let mut stdin = std::io::stdin().lock();
    let mut buffer = Vec::new();
    for number in 1.. {
        // At most one byte past the limit is read, so memory stays flat whatever the input.
        buffer.clear();
        let read = (&mut stdin)
            .take(MAX_JSONL_LINE as u64 + 1)
            .read_until(b'\n', &mut buffer)
            .map_err(|e| Error::bad_input(format!("cannot read standard input: {e}")))?;
        if read == 0 {
            break;
        }
        if buffer.last() == Some(&b'\n') {
            buffer.pop();
        }
        if buffer.len() > MAX_JSONL_LINE {
            return Err(Error::bad_input(format!(
                "--jsonl: standard input line {number} is longer than {MAX_JSONL_LINE} bytes, the limit"
            )));
        }
        let line = std::str::from_utf8(&buffer)
            .map_err(|_| Error::bad_input(format!("--jsonl: standard input line {number} is not UTF-8 text")))?;
        if line.trim().is_empty() {
            continue;
        }
        let parsed: Line =
            serde_json::from_str(line).map_err(|e| Error::bad_input(format!("standard input line {number}: {e}")))?;
        let (body, content_type) = match parsed.body {
            serde_json::Value::String(text) => (text, ContentType::Text),
            other => (other.to_string(), ContentType::Json),
        };
        let mut tags: BTreeMap<String, String> = args.tags.iter().cloned().collect();
        tags.extend(parsed.tags);
        let record = NewRecord::new(
            global.namespace.clone(),
            args.stream.clone(),
            RecordFields {
                kind: parsed.kind.unwrap_or_else(|| args.kind.clone()),
                author: parsed.by.unwrap_or_else(|| args.by.clone()),
                body,
                content_type,
                tags,
                trace_id: parsed.trace_id.or_else(|| args.trace_id.clone()),
                idempotency_key: parsed.key,
            },
        )
        .map_err(|e| e.context(format!("standard input line {number}")))?;
        out.appended(&target.log_append(record).await?);
    }
    Ok(())
}
