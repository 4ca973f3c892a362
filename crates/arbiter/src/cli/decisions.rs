//! Decisions: `arbiter decide`, `arbiter decisions render`, the git-native drop-box
//! (`arbiter inbox drop|sweep`) and `arbiter init`.

use std::path::PathBuf;

use arbiter_client::inbox::{self, DEFAULT_INBOX, SQUAD_APPEND_ONLY};
use arbiter_core::decisions::Decision;
use arbiter_core::log::parse_tag;
use arbiter_core::{Error, Result};
use arbiter_ops::decisions::{self, DecisionInput, Sweep};
use clap::{Args, Subcommand};

use super::Global;
use super::log::read_body;
use super::output::Output;
use crate::exit;

/// The text of a decision: TEXT or --body-file, and an optional title.
#[derive(Debug, Args)]
pub struct DecisionText {
    /// The decision, in Markdown. Without --title its first line is the title.
    #[arg(required_unless_present = "body_file", conflicts_with = "body_file")]
    text: Option<String>,
    /// Read the decision from this file ("-" for standard input).
    #[arg(long, value_name = "FILE")]
    body_file: Option<PathBuf>,
    /// The decision's title.
    #[arg(long, value_name = "TITLE")]
    title: Option<String>,
    /// Who decided (an agent name: letters, digits, '.', '_', '-').
    #[arg(long, value_name = "AGENT")]
    by: String,
    /// A tag, KEY=VALUE (repeatable).
    #[arg(long = "tag", value_name = "KEY=VALUE", value_parser = parse_tag)]
    tags: Vec<(String, String)>,
}

impl DecisionText {
    fn decision(&self) -> Result<Decision> {
        Ok(self.read()?.1)
    }

    /// The text as given (TEXT or the file's) and the decision made of it.
    fn read(&self) -> Result<(String, Decision)> {
        let text = match (&self.text, &self.body_file) {
            (Some(text), _) => text.clone(),
            (None, Some(path)) => read_body(path)?,
            (None, None) => unreachable!("clap requires one"),
        };
        let decision =
            decisions::decision(&text, self.title.as_deref(), &self.by).map_err(|(input, e)| match input {
                DecisionInput::By => e.context("--by"),
                DecisionInput::Title => e.context("--title"),
                DecisionInput::Text => Error::bad_input(format!("{}: give TEXT or a non-empty --body-file", e.message)),
            })?;
        Ok((text, decision))
    }
}

/// `arbiter decide`: append a decision to the `decisions` stream.
#[derive(Debug, Args)]
pub struct DecideArgs {
    #[command(flatten)]
    text: DecisionText,
    /// Idempotency key: deciding again with the same key writes nothing.
    #[arg(long, value_name = "KEY")]
    key: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum DecisionsCommand {
    /// Write decisions.md from the decisions log: the same log always gives the same bytes.
    Render {
        /// Write here (atomically) instead of standard output.
        #[arg(long, value_name = "PATH")]
        out: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum InboxCommand {
    /// Write a decision as a new, uniquely named file in the inbox.
    Drop {
        #[command(flatten)]
        text: DecisionText,
        /// The inbox folder.
        #[arg(long, value_name = "DIR", default_value = DEFAULT_INBOX)]
        inbox: PathBuf,
    },
    /// Check and repair the canonical file, then merge the inbox into it.
    ///
    /// Restores what a union merge interleaved and drops exact second copies (changing
    /// nothing, exit 3, when something cannot be restored), then merges every inbox file
    /// (in file-name order) and removes what was merged; with --commit, in one git commit.
    /// Safe to re-run after a crash.
    Sweep {
        /// The inbox folder.
        #[arg(long, value_name = "DIR", default_value = DEFAULT_INBOX)]
        inbox: PathBuf,
        /// The canonical decisions file [default: .squad/decisions.md or
        /// .squad/decisions/decisions.md, whichever exists].
        #[arg(long, value_name = "FILE")]
        into: Option<PathBuf>,
        /// Commit the merged file and the removed inbox files (only those) with git.
        #[arg(long)]
        commit: bool,
        /// Move the oldest entries to decisions-archive.md (beside the canonical file) while
        /// the canonical file is larger than SIZE (bytes, or with KB, KiB, MB, MiB).
        #[arg(long, value_name = "SIZE", value_parser = parse_size)]
        archive_over: Option<u64>,
    },
    /// Check the canonical file as a sweep would, changing nothing (for CI and hooks).
    ///
    /// Every entry whole, matching its hash, once, in the canonical file and its archive.
    /// Exits 3 when a sweep has something to restore or drop, or finds something it cannot
    /// restore; each finding is printed as FILE:LINES: what.
    Check {
        /// The inbox folder (where removed inbox files were, to find entries' bytes in git).
        #[arg(long, value_name = "DIR", default_value = DEFAULT_INBOX)]
        inbox: PathBuf,
        /// The canonical decisions file [default: as for sweep].
        #[arg(long, value_name = "FILE")]
        into: Option<PathBuf>,
    },
}

/// A size: bytes, or a number with KB, KiB, MB or MiB (case-insensitive).
fn parse_size(text: &str) -> std::result::Result<u64, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let unit_size: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" | "k" => 1_000,
        "kib" => 1_024,
        "mb" | "m" => 1_000_000,
        "mib" => 1_048_576,
        _ => {
            return Err(format!(
                "invalid size {text:?}: expected bytes, or a number with KB, KiB, MB or MiB"
            ));
        }
    };
    number
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(unit_size))
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("invalid size {text:?}: expected a positive number, like 20KB"))
}

/// `arbiter init`: set up a repository for append-only files.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// The repository (default: the current directory).
    #[arg(long, value_name = "DIR", default_value = ".")]
    repo: PathBuf,
    /// The canonical decisions file, relative to the repository [default:
    /// .squad/decisions.md or .squad/decisions/decisions.md, whichever exists].
    #[arg(long, value_name = "FILE")]
    into: Option<String>,
    /// Also Squad's other append-only files (agent histories, logs).
    #[arg(long)]
    squad: bool,
}

pub async fn decide(args: DecideArgs, global: &Global, out: Output) -> Result<i32> {
    let (text, decision) = args.text.read()?;
    let tags: std::collections::BTreeMap<String, String> = args.text.tags.iter().cloned().collect();
    // The record is checked before anything is opened or sent (the target makes it again).
    decisions::record(
        &global.namespace,
        &decision,
        &args.text.by,
        tags.clone(),
        args.key.clone(),
    )?;
    let target = global.target().await?;
    let decided = target
        .decide(
            &global.namespace,
            &decision,
            &text,
            args.text.title.as_deref(),
            &args.text.by,
            tags,
            args.key,
        )
        .await?;
    if out.json {
        out.print_sorted(&decided);
    } else {
        println!("{}", decided.id);
    }
    Ok(exit::SUCCESS)
}

pub async fn decisions(command: DecisionsCommand, global: &Global, out: Output) -> Result<i32> {
    let DecisionsCommand::Render { out: path } = command;
    if let Some(dir) = path.as_ref().filter(|p| p.is_dir()) {
        return Err(Error::bad_input(format!(
            "--out {} is a directory: expected a file path such as {}",
            dir.display(),
            dir.join("decisions.md").display()
        )));
    }
    let rendered = global.target().await?.decisions_render(&global.namespace).await?;
    match path {
        Some(path) => {
            inbox::write_atomic(&path, rendered.text.as_bytes())?;
            if out.json {
                out.print_sorted(&serde_json::json!({ "path": path, "decisions": rendered.decisions }));
            }
        }
        None => print!("{}", rendered.text),
    }
    Ok(exit::SUCCESS)
}

pub async fn inbox(command: InboxCommand, global: &Global, out: Output) -> Result<i32> {
    match command {
        InboxCommand::Drop { text, inbox } => {
            let decision = text.decision()?;
            let path = decisions::inbox_drop(&inbox, &decision, &text.by, &text.tags)?;
            if out.json {
                out.print_sorted(&serde_json::json!({ "path": path }));
            } else {
                println!("{}", path.display());
            }
        }
        InboxCommand::Sweep {
            inbox,
            into,
            commit,
            archive_over,
        } => {
            let into = decisions::canonical(into)?;
            let holder = arbiter_process::holder_for(arbiter_process::current_pid(), "inbox-sweep")?;
            if commit {
                // Refuse before anything is written.
                let dir = into
                    .parent()
                    .filter(|d| !d.as_os_str().is_empty())
                    .unwrap_or(std::path::Path::new("."));
                inbox::git_toplevel(dir)?;
            }
            let (store, _) = global.open().await?;
            let sweep = Sweep {
                namespace: global.namespace.clone(),
                inbox,
                into,
                commit,
                holder,
                archive_over,
            };
            let report = decisions::inbox_sweep(&store, sweep).await?;
            for skipped in &report.skipped {
                eprintln!("arbiter: warning: {skipped}");
            }
            if out.json {
                out.print_json(&report);
            } else {
                let mut line = format!(
                    "merged {} decision(s), removed {} inbox file(s){}",
                    report.merged.len(),
                    report.removed.len(),
                    report.repairs()
                );
                if !report.archived.is_empty() {
                    line.push_str(&format!(", {} entries archived", report.archived.len()));
                }
                if let Some(commit) = &report.commit {
                    line.push_str(&format!(", commit {commit}"));
                }
                println!("{line}");
            }
        }
        InboxCommand::Check { inbox, into } => {
            let into = decisions::canonical(into)?;
            let checked = decisions::inbox_check(&inbox, &into)?;
            if out.json {
                out.print_sorted(&checked);
            } else {
                for line in checked.files.iter().flat_map(|r| &r.findings) {
                    println!("{line}");
                }
                if checked.clean {
                    println!("{}: every entry whole, once", into.display());
                }
            }
            if let Some(problem) = checked.problem(&into) {
                return Err(problem);
            }
        }
    }
    Ok(exit::SUCCESS)
}

pub fn init(args: InitArgs, out: Output) -> Result<i32> {
    if !args.repo.is_dir() {
        return Err(Error::bad_input(format!(
            "--repo {} is not a directory",
            args.repo.display()
        )));
    }
    let into = match args.into {
        Some(into) => into,
        None => inbox::find_canonical(&args.repo)?
            .strip_prefix(&args.repo)
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_else(|_| inbox::DEFAULT_INTO.to_string()),
    };
    let mut patterns = vec![into];
    if args.squad {
        patterns.extend(SQUAD_APPEND_ONLY.iter().map(|p| p.to_string()));
    }
    let added = inbox::init_gitattributes(&args.repo, &patterns)?;
    if out.json {
        out.print_json(&serde_json::json!({ "added": added }));
    } else if added.is_empty() {
        println!(".gitattributes already has every line");
    } else {
        for line in added {
            println!("added: {line}");
        }
    }
    Ok(exit::SUCCESS)
}
