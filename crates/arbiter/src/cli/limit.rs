//! `arbiter limit …`: rate-limit buckets shared by every process through the store.

use std::time::Duration;

use arbiter_core::Result;
use arbiter_core::limit::{MAX_PARTY_LEN, parse_reserve};
use arbiter_core::name::BucketName;
use arbiter_ops::limit::{self, BucketSpec, BucketView, Priority, Rate, TakeRequest};
use clap::Subcommand;

use super::output::Output;
use super::{Global, parse_duration, typed};
use crate::exit;

pub const LONG_ABOUT: &str = "\
Rate-limit buckets shared by every process on every host through the store.

A bucket holds at most BURST tokens and refills at RATE. `take` spends COST tokens from
every bucket it names, all or none (e.g. a loop's bucket and its account's), waiting up to
--wait; exit 3 when not granted in time, printing the wait needed. A reserve (20% of the
burst by default) is kept for --priority interactive: normal takes leave it, background
takes leave twice it. With --fair, parties (--party) that take within the bucket's window
share it evenly while it is short (under half full), and borrow idle shares while it is not.
`observe` feeds in what an upstream said (x-ratelimit-* headers, retry-after): remaining
counts correct the bucket down, a new window up; --hit freezes it for everyone until the
reset, the retry-after, or 60 s (at most a day: a reset more than a day ahead is ignored).";

#[derive(Debug, Subcommand)]
pub enum LimitCommand {
    /// Create a bucket (full), or change an existing one's rate, burst, reserve or fairness
    /// (its tokens are kept, up to the new burst). Prints the bucket.
    Define {
        /// The bucket name (e.g. github/octocat/core).
        #[arg(value_parser = typed::<BucketName>)]
        name: BucketName,
        /// How fast it refills: AMOUNT/PERIOD, e.g. 5000/h, 900/m, 80/min, 10/s, 500/1h.
        #[arg(long, value_parser = typed::<Rate>, allow_hyphen_values = true)]
        rate: Rate,
        /// The most tokens it holds (default: the rate's amount).
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=arbiter_core::limit::MAX_AMOUNT), allow_hyphen_values = true)]
        burst: Option<u64>,
        /// The share of the burst kept for interactive takes (0%-100%).
        #[arg(long, value_name = "PERCENT", default_value = "20%", value_parser = parse_reserve_flag, allow_hyphen_values = true)]
        reserve: u8,
        /// Share the bucket fairly between parties (see `take --party`).
        #[arg(long)]
        fair: bool,
        /// Leave an existing bucket as it is.
        #[arg(long)]
        if_absent: bool,
    },
    /// Take tokens from one or more buckets at once (all or none). Exit 0 when granted,
    /// printing nothing (--json: the buckets after the take); exit 3 when not granted within
    /// --wait, printing the wait needed (--json: wait_ms).
    Take {
        /// The buckets, comma-separated: a,b,c.
        #[arg(value_name = "NAME[,NAME…]", value_parser = parse_names)]
        names: Names,
        /// Tokens to take from each bucket.
        #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=arbiter_core::limit::MAX_AMOUNT), allow_hyphen_values = true)]
        cost: u64,
        /// Wait up to this long for the tokens (default: fail at once).
        #[arg(long, value_name = "DURATION", value_parser = parse_duration, allow_hyphen_values = true)]
        wait: Option<Duration>,
        /// interactive (may spend the reserve), normal, or background (leaves twice the reserve).
        #[arg(long, default_value = "normal", value_parser = typed::<Priority>)]
        priority: Priority,
        /// Who the take is for, in fair buckets (e.g. a team or a loop).
        #[arg(long, value_parser = parse_party, allow_hyphen_values = true)]
        party: Option<String>,
    },
    /// Show one bucket, or every bucket: name, tokens, burst, rate, reserve, fair, and
    /// the time it is frozen until.
    Show {
        #[arg(value_parser = typed::<BucketName>)]
        name: Option<BucketName>,
    },
    /// List every bucket of the namespace (as `show`).
    List,
    /// Feed in what an upstream said about a bucket: its x-ratelimit-limit, -remaining,
    /// -reset and retry-after, and --hit when it refused. Prints the bucket.
    Observe {
        #[arg(value_parser = typed::<BucketName>)]
        name: BucketName,
        /// The upstream's limit per window (x-ratelimit-limit): becomes burst and rate amount.
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=arbiter_core::limit::MAX_AMOUNT), allow_hyphen_values = true)]
        limit: Option<u64>,
        /// What the upstream says is left (x-ratelimit-remaining).
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64), allow_hyphen_values = true)]
        remaining: Option<u64>,
        /// When the upstream's window ends, in seconds since the Unix epoch (x-ratelimit-reset).
        /// A reset more than a day after the store's clock is ignored.
        #[arg(long, value_name = "UNIX_SECONDS", value_parser = clap::value_parser!(i64).range(1..=limit::MAX_RESET_SECONDS), allow_hyphen_values = true)]
        reset: Option<i64>,
        /// The upstream's retry-after, in seconds (0: none given; at most a day).
        #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(0..=arbiter_core::limit::MAX_AHEAD.as_secs()), allow_hyphen_values = true)]
        retry_after: Option<u64>,
        /// The upstream refused (a primary or secondary limit): freeze the bucket.
        #[arg(long)]
        hit: bool,
    },
    /// Counters shared through the store (the GitHub proxy's), summed over hosts: scope,
    /// name and value, for scopes starting with PREFIX.
    Counters {
        #[arg(default_value = "")]
        prefix: String,
    },
}

/// Bucket names as `take` reads them: comma-separated, each once.
#[derive(Debug, Clone)]
pub struct Names(Vec<BucketName>);

fn parse_names(text: &str) -> std::result::Result<Names, String> {
    let mut names: Vec<BucketName> = Vec::new();
    for part in text.split(',') {
        let name = BucketName::parse(part).map_err(|e| e.message)?;
        if names.contains(&name) {
            return Err(format!("bucket {name:?} is named twice: expected each bucket once"));
        }
        names.push(name);
    }
    Ok(Names(names))
}

fn parse_reserve_flag(text: &str) -> std::result::Result<u8, String> {
    parse_reserve(text).map_err(|e| e.message)
}

fn parse_party(text: &str) -> std::result::Result<String, String> {
    if text.is_empty() || text.len() > MAX_PARTY_LEN || text.chars().any(char::is_control) {
        return Err(format!(
            "invalid party {text:?}: expected 1-{MAX_PARTY_LEN} characters, no control characters"
        ));
    }
    Ok(text.to_string())
}

/// One bucket as a row: name, tokens, burst, rate, reserve, fair, frozen until.
fn print_bucket(bucket: &BucketView) {
    println!(
        "{}\t{}\t{}\t{}\t{}%\t{}\t{}",
        bucket.name,
        arbiter_core::limit::format_tokens(bucket.tokens),
        bucket.burst,
        bucket.rate,
        bucket.reserve_percent,
        if bucket.fair { "fair" } else { "-" },
        bucket
            .frozen_until
            .as_deref()
            .map_or("-".to_string(), |t| format!("frozen until {t}")),
    );
}

pub async fn run(command: LimitCommand, global: &Global, out: Output) -> Result<i32> {
    let ns = &global.namespace;
    match command {
        LimitCommand::Define {
            name,
            rate,
            burst,
            reserve,
            fair,
            if_absent,
        } => {
            let spec = BucketSpec {
                rate,
                burst: burst.unwrap_or(rate.amount),
                reserve_percent: reserve,
                fair,
            };
            spec.check()?;
            let target = global.target().await?;
            let view = target.limit_define(ns, &name, &spec, if_absent).await?;
            if out.json {
                out.print_json(&view);
            } else {
                print_bucket(&view);
            }
        }
        LimitCommand::Take {
            names,
            cost,
            wait,
            priority,
            party,
        } => {
            let request = TakeRequest {
                namespace: ns.clone(),
                buckets: names.0,
                cost,
                priority,
                party,
            };
            request.check()?;
            let target = global.target().await?;
            let view = target.limit_take(request, wait.unwrap_or(Duration::ZERO)).await?;
            if out.json {
                out.print_json(&view);
            }
        }
        LimitCommand::Show { name: Some(name) } => {
            let target = global.target().await?;
            let view = target.limit_show(ns, &name).await?;
            if out.json {
                out.print_json(&view);
            } else {
                print_bucket(&view);
            }
        }
        LimitCommand::Show { name: None } | LimitCommand::List => {
            let target = global.target().await?;
            let views = target.limit_list(ns).await?;
            if out.json {
                out.print_json(&views);
            } else {
                views.iter().for_each(print_bucket);
            }
        }
        LimitCommand::Observe {
            name,
            limit: upstream_limit,
            remaining,
            reset,
            retry_after,
            hit,
        } => {
            let observation = limit::observation(upstream_limit, remaining, reset, retry_after, hit)?;
            let target = global.target().await?;
            let view = target.limit_observe(ns, &name, &observation).await?;
            if out.json {
                out.print_json(&view);
            } else {
                print_bucket(&view);
            }
        }
        LimitCommand::Counters { prefix } => {
            let target = global.target().await?;
            let counters = target.limit_counters(ns, &prefix).await?;
            if out.json {
                out.print_json(&counters);
            } else {
                for counter in counters {
                    println!("{}\t{}\t{}", counter.scope, counter.name, counter.value);
                }
            }
        }
    }
    Ok(exit::SUCCESS)
}
