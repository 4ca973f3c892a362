//! The git-native decisions drop-box, for teams that keep their state in the repository
//! (Squad's layout by default: `.squad/decisions/inbox/` and `.squad/decisions.md`).
//!
//! - [`drop_entry`] writes one uniquely named file into the inbox (sortable time, a random
//!   part, the agent, a slug), atomically: agents on different branches never touch the
//!   same path, so their drops never conflict.
//! - [`sweep`] merges every inbox file into the canonical file, in file-name order, fenced
//!   with its id (`arbiter_core::decisions`), then removes exactly the files it merged and,
//!   asked to, commits both in one git commit. It holds a lease so two sweepers never run
//!   at once. Each step is idempotent: a sweep killed anywhere and run again neither loses
//!   nor duplicates an entry (the canonical file is replaced atomically; a file is removed
//!   only once its id is in the canonical file; the commit picks up what an earlier,
//!   interrupted sweep left uncommitted).
//! - [`init_gitattributes`] adds `merge=union` lines for append-only files, keeping what
//!   `.gitattributes` already has.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arbiter_core::decisions::{Decision, Entry, entry_ids, entry_markdown, merge, slug};
use arbiter_core::lease::Holder;
use arbiter_core::{Error, Result};
use arbiter_store::Store;

use crate::lease::{Acquire, HeldLease};

pub const DEFAULT_INBOX: &str = ".squad/decisions/inbox";
pub const DEFAULT_INTO: &str = ".squad/decisions.md";

/// The `.gitattributes` attribute of append-only files.
pub const UNION_ATTRIBUTE: &str = "merge=union";
/// Squad's other append-only files.
pub const SQUAD_APPEND_ONLY: [&str; 3] = [
    ".squad/agents/*/history.md",
    ".squad/log/**",
    ".squad/orchestration-log/**",
];

/// Checks an agent name as used in file names: 1-64 of letters, digits, `.`, `_`, `-`.
pub fn validate_agent(agent: &str) -> Result<()> {
    let ok = !agent.is_empty()
        && agent.len() <= 64
        && agent
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(Error::bad_input(format!(
            "invalid agent {agent:?}: expected 1-64 characters of letters, digits, '.', '_' and '-'"
        )))
    }
}

/// Writes `decision` by `agent` into `inbox` as a new file; returns its path.
pub fn drop_entry(inbox: &Path, decision: &Decision, agent: &str, tags: &[(String, String)]) -> Result<PathBuf> {
    validate_agent(agent)?;
    if decision.title.is_empty() {
        return Err(Error::bad_input("the decision is empty: give its text"));
    }
    std::fs::create_dir_all(inbox)
        .map_err(|e| Error::bad_input(format!("cannot create the inbox {}: {e}", inbox.display())))?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    let ms = now.as_millis() as i64;
    let date = arbiter_core::decisions::date(ms);
    let content = entry_markdown(&date, decision, agent, tags);
    let name = format!(
        "{}-{:04x}-{}-{}.md",
        sortable_time(ms),
        random16(),
        agent.to_ascii_lowercase(),
        slug(&decision.title)
    );
    let path = inbox.join(name);
    write_atomic(&path, content.as_bytes())?;
    Ok(path)
}

/// `YYYYMMDD-HHMMSS-mmm` (UTC): file names that sort in time order.
fn sortable_time(ms: i64) -> String {
    let date = arbiter_core::decisions::date(ms).replace('-', "");
    let of_day = ms.rem_euclid(86_400_000);
    let (h, m, s, milli) = (
        of_day / 3_600_000,
        of_day / 60_000 % 60,
        of_day / 1_000 % 60,
        of_day % 1_000,
    );
    format!("{date}-{h:02}{m:02}{s:02}-{milli:03}")
}

/// 16 bits that differ between processes and calls (not for secrets).
fn random16() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    hasher.write_u32(std::process::id());
    hasher.finish() as u16
}

/// Writes a file atomically: a temp file in the same directory, flushed to disk, then
/// renamed over the target (and the directory flushed, on Unix).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let file_name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(format!(".{file_name}.tmp-{}-{:04x}", std::process::id(), random16()));
    let io = |e: std::io::Error| Error::internal(format!("cannot write {}: {e}", path.display()));
    let result = (|| {
        let mut file = std::fs::File::create(&tmp).map_err(io)?;
        file.write_all(bytes).map_err(io)?;
        file.sync_all().map_err(io)?;
        std::fs::rename(&tmp, path).map_err(io)?;
        #[cfg(unix)]
        if let Ok(dir) = std::fs::File::open(dir) {
            let _ = dir.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// What a sweep did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct SweepReport {
    /// Ids merged into the canonical file by this sweep, in order.
    pub merged: Vec<String>,
    /// Inbox files removed (merged now or by an earlier, interrupted sweep).
    pub removed: Vec<PathBuf>,
    /// Second copies of entries dropped from the canonical file.
    pub duplicates_removed: usize,
    /// The commit made, with `commit`.
    pub commit: Option<String>,
}

pub struct Sweep {
    pub namespace: String,
    pub inbox: PathBuf,
    pub into: PathBuf,
    pub commit: bool,
    pub holder: Holder,
}

/// Merges the inbox into the canonical file; see the module documentation.
pub async fn sweep(store: &Store, sweep: Sweep) -> Result<SweepReport> {
    let into_dir = sweep
        .into
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if !into_dir.is_dir() {
        return Err(Error::bad_input(format!(
            "cannot merge into {}: directory {} does not exist",
            sweep.into.display(),
            into_dir.display()
        )));
    }
    let repo = if sweep.commit {
        Some(git_toplevel(into_dir)?)
    } else {
        None
    };
    let canonical = std::fs::canonicalize(into_dir)
        .map_err(|e| Error::bad_input(format!("cannot resolve {}: {e}", into_dir.display())))?
        .join(sweep.into.file_name().unwrap_or_default());
    let held = HeldLease::acquire(
        store,
        Acquire {
            namespace: sweep.namespace.clone(),
            name: format!("inbox-sweep/{:016x}", fnv1a(canonical.to_string_lossy().as_bytes())),
            holder: sweep.holder.clone(),
            ttl: Duration::from_secs(120),
            slots: 1,
            wait: Some(Duration::from_secs(120)),
        },
        Duration::ZERO,
    )
    .await
    .map_err(|e| e.context("another sweep of this file is running"))?;
    let result = sweep_locked(&sweep, &canonical, repo.as_deref());
    held.release().await?;
    result
}

fn sweep_locked(sweep: &Sweep, canonical: &Path, repo: Option<&Path>) -> Result<SweepReport> {
    let files = inbox_files(&sweep.inbox)?;
    let mut entries = Vec::with_capacity(files.len());
    for (id, path) in &files {
        let content =
            std::fs::read(path).map_err(|e| Error::internal(format!("cannot read {}: {e}", path.display())))?;
        let content = String::from_utf8(content)
            .map_err(|_| Error::bad_input(format!("inbox file {} is not UTF-8 text", path.display())))?;
        entries.push(Entry {
            id: id.clone(),
            content,
        });
    }
    let current = match std::fs::read_to_string(canonical) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(Error::internal(format!("cannot read {}: {e}", canonical.display()))),
    };
    let merged = merge(&current, &entries);
    if merged.text != current {
        write_atomic(canonical, merged.text.as_bytes())?;
    }
    crate::fault::point("sweep.after_write");
    // Remove exactly what the canonical file now holds.
    let present = entry_ids(&merged.text);
    let mut report = SweepReport {
        merged: merged.added,
        duplicates_removed: merged.duplicates_removed,
        ..Default::default()
    };
    for (id, path) in &files {
        if present.contains(id) {
            std::fs::remove_file(path)
                .map_err(|e| Error::internal(format!("cannot remove {}: {e}", path.display())))?;
            report.removed.push(path.clone());
        }
        crate::fault::point("sweep.after_remove");
    }
    if let Some(repo) = repo {
        report.commit = commit_sweep(repo, canonical, &sweep.inbox, &present, &report)?;
    }
    Ok(report)
}

/// The inbox's entries: `*.md` files not starting with `.`, by file name. The id is the
/// file name without `.md` (white space replaced by `_`).
fn inbox_files(inbox: &Path) -> Result<Vec<(String, PathBuf)>> {
    let dir = match std::fs::read_dir(inbox) {
        Ok(dir) => dir,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(Error::bad_input(format!(
                "cannot read the inbox {}: {e}",
                inbox.display()
            )));
        }
    };
    let mut files = Vec::new();
    for item in dir {
        let item = item.map_err(|e| Error::internal(format!("cannot read the inbox {}: {e}", inbox.display())))?;
        let name = item.file_name().to_string_lossy().into_owned();
        let is_file = item.file_type().is_ok_and(|t| t.is_file());
        if let (true, false, Some(stem)) = (is_file, name.starts_with('.'), name.strip_suffix(".md")) {
            files.push((id_of(stem), item.path()));
        }
    }
    files.sort();
    Ok(files)
}

fn id_of(stem: &str) -> String {
    stem.chars().map(|c| if c.is_whitespace() { '_' } else { c }).collect()
}

/// 64-bit FNV-1a: a stable name for a path (the same across processes and builds).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, b| {
        (hash ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn git(repo: &Path, args: &[&str]) -> Result<String> {
    let output = Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(args)
        .output()
        .map_err(|e| Error::internal(format!("cannot run git: {e}")))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(Error::internal(format!(
            "git {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        )))
    }
}

/// The top of the git work tree holding `dir`; bad input when there is none.
pub fn git_toplevel(dir: &Path) -> Result<PathBuf> {
    let output = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["rev-parse", "--show-toplevel"])
        .output()
        .map_err(|e| Error::bad_input(format!("--commit needs git, which cannot be run: {e}")))?;
    if !output.status.success() {
        return Err(Error::bad_input(format!(
            "--commit needs a git work tree, and {} is not in one",
            dir.display()
        )));
    }
    let top = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
    std::fs::canonicalize(&top).map_err(|e| Error::internal(format!("cannot resolve {}: {e}", top.display())))
}

/// Commits the canonical file and the removal of merged inbox files (including removals
/// an interrupted sweep left uncommitted), and nothing else that may be staged.
fn commit_sweep(
    repo: &Path,
    canonical: &Path,
    inbox: &Path,
    present: &std::collections::BTreeSet<String>,
    report: &SweepReport,
) -> Result<Option<String>> {
    let canonical_arg = canonical.to_string_lossy().into_owned();
    git(repo, &["add", "--", &canonical_arg])?;
    let mut paths = vec![canonical_arg];
    // Inbox files in HEAD that are gone from the work tree and whose entries are merged.
    let inbox_abs = std::fs::canonicalize(inbox).unwrap_or_else(|_| inbox.to_path_buf());
    let tracked = git(
        repo,
        &[
            "ls-tree",
            "-r",
            "--name-only",
            "--full-name",
            "HEAD",
            "--",
            &inbox_abs.to_string_lossy(),
        ],
    )
    .unwrap_or_default();
    for relative in tracked.lines() {
        let path = repo.join(relative);
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        if !path.exists() && present.contains(&id_of(&stem)) {
            paths.push(path.to_string_lossy().into_owned());
        }
    }
    let mut diff = vec!["diff", "--quiet", "HEAD", "--"];
    diff.extend(paths.iter().map(String::as_str));
    let has_head = git(repo, &["rev-parse", "--verify", "--quiet", "HEAD"]).is_ok();
    if has_head && git(repo, &diff).is_ok() {
        return Ok(None);
    }
    let message = format!(
        "arbiter inbox sweep: {} decision(s) merged into {}",
        report.merged.len(),
        canonical.file_name().unwrap_or_default().to_string_lossy()
    );
    let mut commit = vec!["commit", "--quiet", "--no-verify", "-m", &message, "--"];
    commit.extend(paths.iter().map(String::as_str));
    git(repo, &commit)?;
    Ok(Some(git(repo, &["rev-parse", "HEAD"])?.trim().to_string()))
}

/// Adds `<pattern> merge=union` to `repo/.gitattributes` for each pattern that does not
/// have it yet, keeping every existing line; returns the lines added.
pub fn init_gitattributes(repo: &Path, patterns: &[String]) -> Result<Vec<String>> {
    let path = repo.join(".gitattributes");
    let current = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(Error::internal(format!("cannot read {}: {e}", path.display()))),
    };
    let has_union = |pattern: &str| {
        current.lines().any(|line| {
            let mut words = line.split_whitespace();
            words.next() == Some(pattern) && words.any(|w| w == UNION_ATTRIBUTE)
        })
    };
    let added: Vec<String> = patterns
        .iter()
        .filter(|p| !has_union(p))
        .map(|p| format!("{p} {UNION_ATTRIBUTE}"))
        .collect();
    if added.is_empty() {
        return Ok(added);
    }
    let mut text = current.clone();
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    if !text.is_empty() {
        text.push('\n');
    }
    text.push_str("# arbiter: union merge for append-only files\n");
    for line in &added {
        text.push_str(line);
        text.push('\n');
    }
    write_atomic(&path, text.as_bytes())?;
    Ok(added)
}
