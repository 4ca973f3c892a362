//! Decisions: `arbiter decide`, `arbiter decisions render`, the git-native drop-box
//! (`arbiter inbox drop|sweep`) and `arbiter init`.

use std::path::PathBuf;

use arbiter_client::inbox::{self, DEFAULT_INBOX, DEFAULT_INTO, SQUAD_APPEND_ONLY, Sweep};
use arbiter_core::decisions::{Decision, KIND, STREAM, render};
use arbiter_core::log::{ContentType, NewRecord, parse_tag};
use arbiter_core::{Error, Result};
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
        inbox::validate_agent(&self.by).map_err(|e| e.context("--by"))?;
        let text = match (&self.text, &self.body_file) {
            (Some(text), _) => text.clone(),
            (None, Some(path)) => read_body(path)?,
            (None, None) => unreachable!("clap requires one"),
        };
        if text.trim().is_empty() {
            return Err(Error::bad_input(
                "the decision text is empty: give TEXT or a non-empty --body-file",
            ));
        }
        if self
            .title
            .as_deref()
            .is_some_and(|t| t.trim().is_empty() || t.contains('\n'))
        {
            return Err(Error::bad_input("--title must be one non-empty line"));
        }
        Ok(Decision::new(&text, self.title.as_deref()))
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
    /// Merge every inbox file into the canonical file (in file-name order) and remove what
    /// was merged; with --commit, in one git commit. Safe to re-run after a crash.
    Sweep {
        /// The inbox folder.
        #[arg(long, value_name = "DIR", default_value = DEFAULT_INBOX)]
        inbox: PathBuf,
        /// The canonical decisions file.
        #[arg(long, value_name = "FILE", default_value = DEFAULT_INTO)]
        into: PathBuf,
        /// Commit the merged file and the removed inbox files (only those) with git.
        #[arg(long)]
        commit: bool,
    },
}

/// `arbiter init`: set up a repository for append-only files.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// The repository (default: the current directory).
    #[arg(long, value_name = "DIR", default_value = ".")]
    repo: PathBuf,
    /// The canonical decisions file, relative to the repository.
    #[arg(long, value_name = "FILE", default_value = DEFAULT_INTO)]
    into: String,
    /// Also Squad's other append-only files (agent histories, logs).
    #[arg(long)]
    squad: bool,
}

pub async fn decide(args: DecideArgs, global: &Global, out: Output) -> Result<i32> {
    let decision = args.text.decision()?;
    let record = NewRecord {
        namespace: global.namespace.clone(),
        stream: STREAM.to_string(),
        kind: KIND.to_string(),
        author: args.text.by.clone(),
        body: serde_json::to_string(&decision).expect("a decision serializes"),
        content_type: ContentType::Json,
        tags: args.text.tags.iter().cloned().collect(),
        trace_id: None,
        idempotency_key: args.key,
    };
    record.validate()?;
    let (store, _) = global.open().await?;
    let appended = store.log().append(record).await?;
    if out.json {
        out.print_json(&serde_json::json!({
            "stream": STREAM,
            "offset": appended.offset,
            "duplicate": appended.duplicate,
            "id": format!("decision-{}", appended.offset),
        }));
    } else {
        println!("decision-{}", appended.offset);
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
    let (store, _) = global.open().await?;
    let mut records = Vec::new();
    let mut from = 0;
    loop {
        let batch = store.log().read(&global.namespace, STREAM, from, 1000).await?;
        let Some(last) = batch.last() else { break };
        from = last.offset + 1;
        records.extend(batch);
    }
    let text = render(&global.namespace, &records);
    match path {
        Some(path) => {
            inbox::write_atomic(&path, text.as_bytes())?;
            if out.json {
                out.print_json(&serde_json::json!({ "path": path, "decisions": records.len() }));
            }
        }
        None => print!("{text}"),
    }
    Ok(exit::SUCCESS)
}

pub async fn inbox(command: InboxCommand, global: &Global, out: Output) -> Result<i32> {
    match command {
        InboxCommand::Drop { text, inbox } => {
            let decision = text.decision()?;
            let path = inbox::drop_entry(&inbox, &decision, &text.by, &text.tags)?;
            if out.json {
                out.print_json(&serde_json::json!({ "path": path }));
            } else {
                println!("{}", path.display());
            }
        }
        InboxCommand::Sweep { inbox, into, commit } => {
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
            };
            let report = inbox::sweep(&store, sweep).await?;
            if out.json {
                out.print_json(&report);
            } else {
                println!(
                    "merged {} decision(s), removed {} inbox file(s){}{}",
                    report.merged.len(),
                    report.removed.len(),
                    if report.duplicates_removed > 0 {
                        format!(", dropped {} duplicate(s)", report.duplicates_removed)
                    } else {
                        String::new()
                    },
                    report
                        .commit
                        .as_deref()
                        .map(|c| format!(", commit {c}"))
                        .unwrap_or_default()
                );
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
    let mut patterns = vec![args.into.clone()];
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
