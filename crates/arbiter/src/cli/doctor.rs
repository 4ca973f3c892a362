//! `arbiter doctor`: is this machine set up to run arbiter? One line per check — the
//! store (reachable, schema, a SQLite store on a local disk), file modes, the config, each
//! channel (reachable; a test message only with `--send`), each profile's `gh` setup — and
//! exit 7 when any check failed. It sends nothing and runs no token command by default.

use std::path::{Path, PathBuf};

use arbiter_config::{Config, Profile, Target, TokenSource};
use arbiter_core::Result;
use arbiter_notify::send::Attempt;
use arbiter_process::private::mode;
use arbiter_store::StoreUrl;
use clap::Args;
use serde::Serialize;

use super::Global;
use super::output::Output;
use crate::exit;

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Send a test message to each channel (default: only connect, send nothing).
    #[arg(long)]
    send: bool,
    /// The round-log directory to check (default: arbiter/logs under your data directory).
    #[arg(long, value_name = "DIR")]
    log_dir: Option<PathBuf>,
}

/// One check's result.
#[derive(Debug, Serialize)]
struct Check {
    check: String,
    ok: bool,
    detail: String,
}

#[derive(Default)]
struct Report(Vec<Check>);

impl Report {
    fn add(&mut self, check: impl Into<String>, result: std::result::Result<String, String>) {
        let (ok, detail) = match result {
            Ok(detail) => (true, detail),
            Err(detail) => (false, detail),
        };
        self.0.push(Check {
            check: check.into(),
            ok,
            detail,
        });
    }
}

pub async fn run(args: DoctorArgs, global: &Global, out: Output) -> Result<i32> {
    let mut report = Report::default();
    store(&mut report, global).await;
    let log_dir = args
        .log_dir
        .or_else(|| dirs::data_dir().map(|d| d.join("arbiter").join("logs")));
    if let Some(dir) = log_dir {
        report.add("log directory", private_dir(&dir));
    }
    match Config::load(global.config.as_deref()) {
        Ok(config) => {
            report.add(
                "config",
                Ok(match &config.path {
                    Some(path) => format!(
                        "{}: {} channel(s), {} route(s), {} loop(s), {} profile(s)",
                        path.display(),
                        config.channels.len(),
                        config.routes.len(),
                        config.loops.len(),
                        config.profiles.len()
                    ),
                    None => "no arbiter.toml (pass --config or set ARBITER_CONFIG to check one)".into(),
                }),
            );
            channels(&mut report, &config, args.send).await;
            for profile in &config.profiles {
                report.add(format!("profile {}", profile.name), gh_setup(profile));
            }
        }
        Err(e) => report.add("config", Err(e.message)),
    }
    let failed = report.0.iter().filter(|c| !c.ok).count();
    if out.json {
        out.print_json(&report.0);
    } else {
        for check in &report.0 {
            let mark = if check.ok { "ok  " } else { "FAIL" };
            println!(
                "{mark}  {}: {}",
                check.check,
                arbiter_core::redact::printable(&check.detail)
            );
        }
    }
    Ok(if failed == 0 { exit::SUCCESS } else { exit::FAILED })
}

async fn store(report: &mut Report, global: &Global) {
    let url = match global.store_url() {
        Ok(url) => url,
        Err(e) => return report.add("store", Err(e.message)),
    };
    if let StoreUrl::Sqlite { path, .. } = &url {
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let disk = match arbiter_process::disk::filesystem(dir) {
            Some(fs) if fs.network => Err(format!(
                "{} is on a network filesystem ({}), where SQLite's WAL is unsafe: put the store on a local disk or use PostgreSQL",
                path.display(),
                fs.name
            )),
            Some(fs) => Ok(format!(
                "{} is on a local disk ({}): WAL is safe",
                path.display(),
                fs.name
            )),
            None if !dir.exists() => Ok(format!("{} does not exist yet", dir.display())),
            None => Ok(format!("{}: the filesystem could not be told", path.display())),
        };
        report.add("store disk", disk);
        if !path.exists() {
            report.add(
                "store",
                Ok(format!(
                    "sqlite {} does not exist yet: the first command creates it (0600)",
                    path.display()
                )),
            );
            return;
        }
        let mut modes = Vec::new();
        for suffix in ["", "-wal", "-shm"] {
            let mut name = path.clone().into_os_string();
            name.push(suffix);
            let file = PathBuf::from(name);
            if let Some(m) = mode(&file) {
                if m & 0o077 != 0 {
                    modes.push(Err(format!(
                        "{} is mode {m:04o}, readable by others: run chmod 600 {}",
                        file.display(),
                        file.display()
                    )));
                } else {
                    modes.push(Ok(format!("{} {m:04o}", file.display())));
                }
            }
        }
        let bad: Vec<String> = modes.iter().filter_map(|m| m.clone().err()).collect();
        report.add(
            "store file modes",
            if bad.is_empty() {
                Ok(modes.into_iter().filter_map(|m| m.ok()).collect::<Vec<_>>().join(", "))
            } else {
                Err(bad.join("; "))
            },
        );
    }
    match global.open().await {
        Ok((store, _)) => {
            let info = store.info();
            report.add(
                "store",
                Ok(format!(
                    "{} {} reachable, schema version {}",
                    info.backend, info.location, info.schema_version
                )),
            );
        }
        Err(e) => report.add("store", Err(e.message)),
    }
}

fn private_dir(dir: &Path) -> std::result::Result<String, String> {
    match mode(dir) {
        None => Ok(format!("{} does not exist yet (created 0700)", dir.display())),
        Some(m) if m & 0o077 != 0 => Err(format!(
            "{} is mode {m:04o}: round logs hold agent output; run chmod 700 {}",
            dir.display(),
            dir.display()
        )),
        Some(m) => Ok(format!("{} {m:04o}", dir.display())),
    }
}

async fn channels(report: &mut Report, config: &Config, send: bool) {
    for channel in &config.channels {
        let check = format!("channel {}", channel.id);
        let result = if send && !matches!(channel.target, Target::Stdout) {
            match arbiter_notify::dispatch::test_channel(config, channel).await {
                Attempt::Delivered { status } => Ok(format!(
                    "took a test message{}",
                    status.map(|s| format!(" (HTTP {s})")).unwrap_or_default()
                )),
                Attempt::Failed { error, .. } => Err(format!("did not take a test message: {error}")),
            }
        } else {
            arbiter_notify::send::reachable(channel, config.notifications.timeout).await
        };
        report.add(check, result);
    }
}

/// A profile's `gh` setup: `gh` on PATH, its config directory private, its token source
/// present (never run, never read out).
fn gh_setup(profile: &Profile) -> std::result::Result<String, String> {
    let gh = which("gh").ok_or("gh is not on PATH")?;
    let dir = &profile.gh_config_dir;
    let dir_state = match mode(dir) {
        None => "does not exist yet (created 0700)".to_string(),
        Some(_) if std::fs::symlink_metadata(dir).is_ok_and(|m| m.file_type().is_symlink()) => {
            return Err(format!(
                "gh_config_dir {} is a symbolic link; arbiter refuses it",
                dir.display()
            ));
        }
        Some(m) if m & 0o077 != 0 => {
            return Err(format!(
                "gh_config_dir {} is mode {m:04o}: run chmod 700 {}",
                dir.display(),
                dir.display()
            ));
        }
        Some(m) => format!("{m:04o}"),
    };
    let token = match &profile.token {
        None => "no token (gh's own login in that directory)".to_string(),
        Some(TokenSource::Env(var)) => match std::env::var_os(var) {
            Some(_) => format!("token from ${var} (set)"),
            None => return Err(format!("token_env {var} is not set")),
        },
        Some(TokenSource::File(path)) => {
            arbiter_process::private::check_secret_file(path).map_err(|why| format!("token_file {why}"))?;
            format!("token from {}", path.display())
        }
        Some(TokenSource::Command(argv)) => {
            let program = Path::new(&argv[0]);
            if program.components().count() == 1 && which(&argv[0]).is_none() {
                return Err(format!("token_command {} is not on PATH", argv[0]));
            }
            format!("token from command {} (not run)", argv[0])
        }
    };
    Ok(format!(
        "gh {}, GH_CONFIG_DIR {} {dir_state}, {token}",
        gh.display(),
        dir.display()
    ))
}

/// The first executable file `name` on PATH.
fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|file| is_executable(file))
}

#[cfg(unix)]
fn is_executable(file: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(file).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(not(unix))]
fn is_executable(file: &Path) -> bool {
    file.is_file() || file.with_extension("exe").is_file()
}
