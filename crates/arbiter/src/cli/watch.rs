//! The supervisor: `arbiter watch`, `arbiter status`, `arbiter logs`.

use std::path::PathBuf;
use std::time::Duration;

use arbiter_config::Config;
use arbiter_core::loops::RoundStatus;
use arbiter_core::name::LoopName;
use arbiter_core::{Error, ErrorKind, Result};
use arbiter_ops::fleet;
use arbiter_store::Topic;
use arbiter_supervisor::Options;
use clap::Args;

use super::output::Output;
use super::{Global, parse_duration, shutdown_signal, typed};
use crate::exit;

/// `arbiter watch`: run the loops of arbiter.toml.
#[derive(Debug, Args)]
pub struct WatchArgs {
    /// Only this loop (repeatable; default: every loop).
    #[arg(long = "loop", value_name = "NAME")]
    loops: Vec<String>,
    /// Run one round of each loop now, then exit.
    #[arg(long, conflicts_with = "rounds")]
    once: bool,
    /// Run each loop this many rounds (counted in the store), then exit.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    rounds: Option<u64>,
    /// Where round logs go (default: arbiter/logs under your data directory).
    #[arg(long, value_name = "DIR")]
    log_dir: Option<PathBuf>,
    /// A loop's lease TTL: a supervisor that dies hands its loops over after this.
    #[arg(long, value_parser = parse_duration, default_value = "30s", value_name = "DURATION")]
    lease_ttl: Duration,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Redraw every 2 seconds until interrupted.
    #[arg(long)]
    watch: bool,
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// The loop.
    #[arg(value_name = "LOOP", value_parser = typed::<LoopName>)]
    loop_name: LoopName,
    /// This round (default: the latest).
    #[arg(long, value_parser = clap::value_parser!(i64).range(1..))]
    round: Option<i64>,
    /// Keep printing while the round runs.
    #[arg(long)]
    follow: bool,
}

/// A loop name as `arbiter.toml` allows it: a name without `/`.
fn data_dir(what: &str) -> Result<PathBuf> {
    dirs::data_dir()
        .map(|d| d.join("arbiter").join(what))
        .ok_or_else(|| Error::bad_input(format!("no data directory is known for this user; pass --{what}-dir")))
}

/// This user's private runtime directory (where the GitHub proxy's sockets go):
/// `$XDG_RUNTIME_DIR/arbiter`, else `arbiter-<user>` in the temp directory (created 0700;
/// one someone else planted there is refused when a socket is made).
fn runtime_dir() -> PathBuf {
    match dirs::runtime_dir() {
        Some(dir) => dir.join("arbiter"),
        None => {
            let user = std::env::var("USER")
                .or_else(|_| std::env::var("USERNAME"))
                .unwrap_or_else(|_| "user".into());
            std::env::temp_dir().join(format!("arbiter-{user}"))
        }
    }
}

pub async fn watch(args: WatchArgs, global: &Global, out: Output) -> Result<i32> {
    let path = match &global.config {
        Some(path) => path.clone(),
        None => arbiter_config::default_path()
            .filter(|p| p.exists())
            .ok_or_else(|| Error::bad_input("no arbiter.toml: pass --config FILE (or set ARBITER_CONFIG)"))?,
    };
    let config = Config::from_file(&path)?;
    let (store, url) = global.open().await?;
    let options = Options {
        config_path: path,
        namespace: global.namespace.clone(),
        loops: args.loops,
        once: args.once,
        rounds: args.rounds,
        log_dir: match args.log_dir {
            Some(dir) => dir,
            None => data_dir("logs")?,
        },
        gh_dir: data_dir("gh")?,
        guard_exe: std::env::current_exe()
            .map_err(|e| Error::internal(format!("cannot find the arbiter executable: {e}")))?,
        store_url: url.to_url(),
        lease_ttl: args.lease_ttl,
        runtime_dir: runtime_dir(),
    };
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop.send(true);
    });
    let bounded = args.once || args.rounds.is_some();
    let selected: Vec<String> = config
        .loops
        .iter()
        .filter(|l| l.enabled)
        .map(|l| l.name.clone())
        .filter(|name| options.loops.is_empty() || options.loops.contains(name))
        .collect();
    arbiter_supervisor::watch(store.clone(), config, options, shutdown).await?;
    let (_, loops) = store.loops().status(&global.namespace).await?;
    // `--once`/`--rounds N` is a job: it fails (exit 7) when a loop's last round failed.
    let failed: Vec<String> = loops
        .iter()
        .filter(|l| bounded && selected.iter().any(|s| l.name == s.as_str()))
        .filter(|l| l.last_status.is_some_and(|s| s != RoundStatus::Succeeded))
        .map(|l| {
            format!(
                "loop {}: round {} {}: {}",
                l.name,
                l.round,
                l.last_status.map(RoundStatus::as_str).unwrap_or_default(),
                l.last_reason.as_deref().unwrap_or_default()
            )
        })
        .collect();
    if out.json {
        out.print_json(&loops);
    } else if !failed.is_empty() {
        return Err(Error::new(ErrorKind::Failed, failed.join("; ")));
    }
    Ok(if failed.is_empty() { exit::SUCCESS } else { exit::FAILED })
}

pub async fn status(args: StatusArgs, global: &Global, out: Output) -> Result<i32> {
    let target = global.target().await?;
    let print = |fleet: &fleet::FleetView| {
        if out.json {
            out.print_sorted(fleet);
        } else {
            if args.watch {
                print!("\x1b[2J\x1b[H");
            }
            print_fleet(fleet);
        }
    };
    if !args.watch {
        print(&target.fleet_status(&global.namespace).await?);
        return Ok(exit::SUCCESS);
    }
    let mut watch = target.fleet_watch(&global.namespace).await?;
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    // Bounded by interruption.
    loop {
        tokio::select! {
            fleet = watch.next() => print(&fleet?),
            () = &mut shutdown => return Ok(exit::SUCCESS),
        }
    }
}

/// The loops, then (when the proxy spends for any) each GitHub identity's budgets.
fn print_fleet(fleet: &fleet::FleetView) {
    print!("{}", fleet_text(fleet));
}

/// [`print_fleet`]'s text: tab-separated rows, one per line. Text that came from outside
/// (a round's reason is the tail of its log, a host's name, a login) has its control
/// characters escaped, so a row stays one line and the terminal interprets nothing.
fn fleet_text(fleet: &fleet::FleetView) -> String {
    use std::fmt::Write;
    let p = arbiter_core::redact::printable;
    let format = |ms: i64| arbiter_core::duration::format_duration(Duration::from_secs((ms.max(0) / 1000) as u64));
    let mut out = String::new();
    let _ = writeln!(
        out,
        "LOOP\tSTATE\tHOST\tPID\tROUND\tLAST\tFAILURES\tNEXT\tAPI/ROUND\tREASON"
    );
    for l in &fleet.loops {
        let _ = writeln!(
            out,
            "{}\t{}\t{}\t{}\t{}\t{}\t{}\tin {}\t{}\t{}",
            p(&l.name),
            l.state.as_str(),
            p(&l.host),
            l.pid,
            l.round,
            p(l.last_status.as_deref().unwrap_or("-")),
            l.consecutive_failures,
            format(l.next_run_in_ms),
            l.api_calls_per_round.map_or("-".to_string(), |c| format!("{c:.0}")),
            p(l.last_reason.as_deref().unwrap_or_default()),
        );
    }
    github_text(&mut out, fleet);
    queues_text(&mut out, fleet);
    out
}

/// The work queues and the hosts that declared capabilities, each table only when it has
/// rows (a fleet without queues prints what it always printed).
fn queues_text(out: &mut String, fleet: &fleet::FleetView) {
    use std::fmt::Write;
    let p = arbiter_core::redact::printable;
    let format = |ms: i64| arbiter_core::duration::format_duration(Duration::from_secs((ms.max(0) / 1000) as u64));
    if !fleet.queues.is_empty() {
        let _ = writeln!(out);
        let _ = writeln!(out, "QUEUE\tDEPTH\tOLDEST\tDELAYED\tCLAIMED\tDEAD\tDONE\tCLAIMS/MIN");
        for q in &fleet.queues {
            let _ = writeln!(
                out,
                "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
                p(&q.queue),
                q.depth,
                q.oldest_ready_age_ms.map_or("-".to_string(), format),
                q.delayed,
                q.claimed,
                q.dead,
                q.done,
                q.claims_last_minute,
            );
        }
    }
    if !fleet.hosts.is_empty() {
        let _ = writeln!(out);
        let _ = writeln!(out, "HOST\tCAPABILITIES\tLAST SEEN");
        for h in &fleet.hosts {
            let caps: Vec<&str> = h.capabilities.iter().map(|c| c.as_str()).collect();
            let caps = if caps.is_empty() {
                "-".to_string()
            } else {
                caps.join(",")
            };
            let _ = writeln!(out, "{}\t{}\t{} ago", p(&h.host), caps, format(h.last_seen_ago_ms));
        }
    }
}

/// Each GitHub identity's budgets, when the proxy spends for any.
fn github_text(out: &mut String, fleet: &fleet::FleetView) {
    use std::fmt::Write;
    let p = arbiter_core::redact::printable;
    let format = |ms: i64| arbiter_core::duration::format_duration(Duration::from_secs((ms.max(0) / 1000) as u64));
    if fleet.github.is_empty() {
        return;
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "GITHUB\tRESOURCE\tLEFT\tLIMIT\tRESETS\tFROZEN UNTIL\tRUNS OUT");
    for identity in &fleet.github {
        for r in &identity.resources {
            let runs_out = match (r.exhausted_in_ms, identity.spend_per_hour) {
                _ if r.frozen_until.is_some() => "now (frozen)".to_string(),
                (Some(ms), Some(rate)) => format!("in {} (at {rate:.0}/h)", format(ms)),
                (None, Some(rate)) if arbiter_core::github::PRIMARY.contains(&r.resource.as_str()) => {
                    format!("not at {rate:.0}/h")
                }
                _ => "-".to_string(),
            };
            let _ = writeln!(
                out,
                "{}\t{}\t{}\t{}\t{}\t{}\t{}",
                p(&identity.login),
                p(&r.resource),
                r.left,
                r.limit,
                r.reset_at.as_deref().unwrap_or("-"),
                r.frozen_until.as_deref().unwrap_or("-"),
                runs_out,
            );
        }
    }
}

pub async fn logs(args: LogsArgs, global: &Global, _out: Output) -> Result<i32> {
    let (store, _) = global.open().await?;
    let ns = global.namespace.clone();
    let name = &args.loop_name;
    // Subscribed before the round is read, so its end is never missed.
    let subscription = match args.follow {
        true => Some(store.changes().subscribe(Topic::Loops).await?),
        false => None,
    };
    let round = match args.round {
        Some(n) => store.loops().round(&ns, name, n).await?,
        None => store.loops().rounds(&ns, name, 1).await?.into_iter().next(),
    }
    .ok_or_else(|| {
        Error::new(
            ErrorKind::NotFound,
            match args.round {
                Some(n) => format!("loop {:?} has no round {n}", name.as_str()),
                None => format!("loop {:?} has no rounds", name.as_str()),
            },
        )
    })?;
    let log = std::path::Path::new(&round.log_path);
    let mut printed = 0usize;
    let mut print_new = || {
        let bytes = std::fs::read(log).unwrap_or_default();
        if bytes.len() > printed {
            use std::io::Write;
            let _ = std::io::stdout().write_all(&bytes[printed..]);
            printed = bytes.len();
        }
        bytes.is_empty()
    };
    let empty = print_new();
    let Some(mut subscription) = subscription else {
        if empty && !log.exists() {
            return Err(Error::new(
                ErrorKind::NotFound,
                format!("the log {} is gone (retention)", round.log_path),
            ));
        }
        return Ok(exit::SUCCESS);
    };
    // `--follow`: the log is a local file, read as it grows; the store is read again only
    // when a round starts or ends (the change feed) or a long wait passes. Bounded: ends
    // when the round has ended and its log is printed.
    loop {
        let current = store.loops().round(&ns, name, round.round).await?;
        if current.is_none_or(|r| r.status != RoundStatus::Running) {
            print_new();
            return Ok(exit::SUCCESS);
        }
        let changed = subscription.wait(Duration::from_secs(30));
        tokio::pin!(changed);
        loop {
            tokio::select! {
                changed = &mut changed => {
                    changed?;
                    break;
                }
                () = tokio::time::sleep(Duration::from_millis(200)) => {
                    print_new();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use arbiter_core::loops::LoopStatus;
    use arbiter_ops::fleet::{FleetState, FleetView, IdentityView, LoopView, ResourceView};

    use super::fleet_text;

    fn loop_view(reason: &str) -> LoopView {
        LoopView {
            name: "web".into(),
            state: FleetState::Reported(LoopStatus::BackingOff),
            host: "h\x1b]0;owned\x07".into(),
            pid: 1,
            round: 3,
            last_status: Some("failed".into()),
            last_reason: Some(reason.into()),
            last_exit: Some(1),
            consecutive_failures: 1,
            next_run_at: String::new(),
            next_run_in_ms: 61_000,
            lease_expires_at: None,
            heartbeat_at: String::new(),
            api_calls_per_round: Some(29.6),
            github_logins: vec!["bot".into()],
        }
    }

    fn resource(name: &str, frozen: bool, exhausted_in_ms: Option<i64>) -> ResourceView {
        ResourceView {
            resource: name.into(),
            left: 0,
            limit: 5000,
            per_hour: 5000.0,
            reset_at: None,
            frozen_until: frozen.then(|| "2026-12-01T07:00:00Z".to_string()),
            exhausted_in_ms,
        }
    }

    #[test]
    fn every_row_is_one_line_with_control_characters_escaped() {
        let fleet = FleetView {
            loops: vec![loop_view("before_round: \x1b[31mred\x1b[0m\nsecond line\r")],
            github: vec![IdentityView {
                login: "bot".into(),
                paused_until: None,
                spend_per_hour: Some(6000.0),
                resources: vec![
                    resource("core", false, Some(600_000)),
                    resource("graphql", false, None),
                    resource("points", true, None),
                ],
            }],
            queues: Vec::new(),
            hosts: Vec::new(),
        };
        let text = fleet_text(&fleet);
        assert!(
            !text.contains('\x1b') && !text.contains('\r') && !text.contains('\x07'),
            "{text:?}"
        );
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 1 + 1 + 1 + 1 + 3, "{text}");
        assert!(
            lines[1].ends_with("before_round: \\u{1b}[31mred\\u{1b}[0m\\nsecond line\\r"),
            "{}",
            lines[1]
        );
        assert!(lines[1].contains("\th\\u{1b}]0;owned\\u{7}\t"), "{}", lines[1]);
        assert!(
            lines[1].contains("\tin 1m 1s\t30\t") || lines[1].contains("\tin 1m1s\t30\t"),
            "{}",
            lines[1]
        );
        assert!(lines[4].ends_with("\tin 10m (at 6000/h)"), "{}", lines[4]);
        assert!(lines[5].ends_with("\tnot at 6000/h"), "{}", lines[5]);
        // A frozen budget runs out now, whatever the forecast.
        assert!(lines[6].ends_with("\tnow (frozen)"), "{}", lines[6]);
    }
}
