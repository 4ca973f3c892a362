//! The git-native decisions drop-box, for teams that keep their state in the repository
//! (Squad's layout by default: `.squad/decisions/inbox/` and `.squad/decisions.md`).
//!
//! - [`drop_entry`] writes one uniquely named file into the inbox (sortable time, a random
//!   part, the agent, a slug), atomically: agents on different branches never touch the
//!   same path, so their drops never conflict.
//! - [`sweep`] first checks the whole canonical file and restores what a `merge=union`
//!   interleaved (each entry's exact bytes are found whole elsewhere in the file or in git:
//!   the canonical file as any commit had it, or the inbox file a commit removed), drops
//!   exact second copies, and refuses — changing nothing — when a damaged part cannot be
//!   restored. Then it merges every inbox file into the canonical file, in file-name order,
//!   verbatim and fenced with its length and hash (`arbiter_core::decisions`), removes
//!   exactly the files whose bytes are now there and, asked to, commits all of it in one
//!   git commit. It holds a lease so two sweepers never run at once; the file IO and
//!   `git` run on the blocking pool while the lease is kept, and a lost lease ends the
//!   sweep with `Lost` (the abandoned work stops before its next step). Each step is
//!   idempotent: a sweep killed anywhere and run again neither loses nor duplicates an entry
//!   (files are replaced atomically; a file is removed only once its bytes are in the
//!   canonical file; the commit picks up what an earlier, interrupted sweep left
//!   uncommitted). [`check`] runs only the check.
//! - [`init_gitattributes`] adds `merge=union` lines for append-only files, keeping what
//!   `.gitattributes` already has.

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arbiter_core::decisions::{
    Decision, Entry, Index, Marker, Repaired, archive, body, entries, entry_markdown, merge, repair, slug, wanted,
};
use arbiter_core::lease::Holder;
use arbiter_core::{Error, ErrorKind, Result};
use arbiter_store::Store;

use crate::lease::{AcquireRequest, HeldLease};

pub const DEFAULT_INBOX: &str = ".squad/decisions/inbox";
pub const DEFAULT_INTO: &str = ".squad/decisions.md";
/// Where Squad repositories keep the canonical file: [`find_canonical`] looks for both.
pub const SQUAD_CANONICAL: [&str; 2] = [DEFAULT_INTO, ".squad/decisions/decisions.md"];

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
    /// The canonical file.
    pub into: PathBuf,
    /// Ids merged into the canonical file by this sweep, in order.
    pub merged: Vec<String>,
    /// Inbox files removed (merged now or by an earlier, interrupted sweep).
    pub removed: Vec<PathBuf>,
    /// Entries a union merge had interleaved, rewritten whole from their exact bytes.
    pub restored: Vec<String>,
    /// Exact second copies of entries dropped from the canonical file.
    pub duplicates_removed: usize,
    /// Ids moved to the archive file (`--archive-over`).
    pub archived: Vec<String>,
    /// Inbox entries left where they are, each with why (not `.md`, empty, changed while
    /// being swept): a warning.
    pub skipped: Vec<String>,
    /// The commit made, with `commit`.
    pub commit: Option<String>,
}

impl SweepReport {
    /// What the sweep restored and dropped, as `, N what` for each that is not 0.
    pub fn repairs(&self) -> String {
        [
            (self.restored.len(), "interleaved entries restored"),
            (self.duplicates_removed, "second copies dropped"),
        ]
        .iter()
        .filter(|(count, _)| *count > 0)
        .map(|(count, what)| format!(", {count} {what}"))
        .collect()
    }
}

pub struct Sweep {
    pub namespace: arbiter_core::name::Namespace,
    pub inbox: PathBuf,
    pub into: PathBuf,
    pub commit: bool,
    pub holder: Holder,
    /// Move the oldest entries to the archive file while the canonical file is larger.
    pub archive_over: Option<u64>,
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
    let mut held = HeldLease::acquire(
        store,
        AcquireRequest {
            namespace: sweep.namespace.clone(),
            name: arbiter_core::name::LeaseName::parse(&format!(
                "inbox-sweep/{:016x}",
                fnv1a(canonical.to_string_lossy().as_bytes())
            ))
            .expect("a hex digest makes a valid lease name"),
            holder: sweep.holder.clone(),
            ttl: Duration::from_secs(120),
            slots: 1,
            wait: Some(Duration::from_secs(120)),
        },
        Duration::ZERO,
    )
    .await
    .map_err(|e| e.context("another sweep of this file is running"))?;
    // The sweep is file IO and `git`: it runs on the blocking pool while this task keeps
    // the lease, and a loss ends the wait at once. The abandoned sweep is told to stop
    // before its next step; every step it may still be in is whole on its own (a file
    // replaced by rename, one file removed, one commit), so what it leaves is a state a
    // killed sweep could leave, which the next sweep completes.
    let abandon = Arc::new(AtomicBool::new(false));
    let work = {
        let abandon = abandon.clone();
        tokio::task::spawn_blocking(move || sweep_locked(&sweep, &canonical, repo.as_deref(), &abandon))
    };
    let result = tokio::select! {
        joined = work => joined.map_err(|e| Error::internal(format!("the sweep failed: {e}"))),
        err = held.lost() => {
            abandon.store(true, Ordering::SeqCst);
            return Err(err);
        }
    };
    held.release().await?;
    result?
}

/// Between the steps of a sweep: stop once its lease is lost (see [`sweep`]).
fn go_on(abandon: &AtomicBool) -> Result<()> {
    if abandon.load(Ordering::SeqCst) {
        return Err(Error::new(
            ErrorKind::Lost,
            "the sweep's lease was lost; the sweep stopped",
        ));
    }
    Ok(())
}

fn sweep_locked(sweep: &Sweep, canonical: &Path, repo: Option<&Path>, abandon: &AtomicBool) -> Result<SweepReport> {
    if let Some(repo) = repo {
        refuse_locked_index(repo)?;
    }
    let mut report = SweepReport {
        into: canonical.to_path_buf(),
        ..Default::default()
    };
    let files = inbox_files(&sweep.inbox, &mut report.skipped)?;
    let current = read_text(canonical)?;
    let archive_path = archive_path(canonical);
    let archive_current = read_text(&archive_path)?;
    let lookup = repo
        .map(Path::to_path_buf)
        .or_else(|| git_toplevel(parent_dir(canonical)).ok());
    let checked = check_text(canonical, &current, lookup.as_deref(), &sweep.inbox)?;
    refuse_problems(canonical, &checked)?;
    let archive_checked = check_text(&archive_path, &archive_current, lookup.as_deref(), &sweep.inbox)?;
    refuse_problems(&archive_path, &archive_checked)?;
    for checked in [&checked, &archive_checked] {
        report
            .restored
            .extend(checked.restored.iter().map(|(id, _)| id.clone()));
        report.duplicates_removed += checked.duplicates.len();
    }
    // An entry an earlier sweep merged and archived is merged already.
    let archived = Index::of(&archive_checked.text);
    let entries: Vec<Entry> = files
        .iter()
        .map(|f| f.entry.clone())
        .filter(|e| !archived.contains(e))
        .collect();
    let merged = merge(&checked.text, &entries);
    report.merged = merged.added;
    let (text, archive_text) = match sweep.archive_over {
        Some(over) => {
            let archived = archive(
                &merged.text,
                &archive_checked.text,
                usize::try_from(over).unwrap_or(usize::MAX),
            );
            report.archived = archived.moved;
            (archived.canonical, archived.archive)
        }
        None => (merged.text, archive_checked.text),
    };
    // The archive first: an entry is then in one file or both, never in neither.
    go_on(abandon)?;
    if archive_text != archive_current {
        write_atomic(&archive_path, archive_text.as_bytes())?;
    }
    go_on(abandon)?;
    if text != current {
        write_atomic(canonical, text.as_bytes())?;
    }
    crate::fault::point("sweep.after_write");
    // Remove exactly the files whose bytes the canonical file (or the archive) now holds.
    let (in_canonical, in_archive) = (Index::of(&text), Index::of(&archive_text));
    for file in &files {
        go_on(abandon)?;
        if in_canonical.contains(&file.entry) || in_archive.contains(&file.entry) {
            if std::fs::read(&file.path).ok().as_deref() != Some(file.entry.content.as_bytes()) {
                report.skipped.push(format!(
                    "{}: changed while being swept; left for the next sweep",
                    file.path.display()
                ));
                continue;
            }
            std::fs::remove_file(&file.path)
                .map_err(|e| Error::internal(format!("cannot remove {}: {e}", file.path.display())))?;
            report.removed.push(file.path.clone());
        }
        crate::fault::point("sweep.after_remove");
    }
    if let Some(repo) = repo {
        go_on(abandon)?;
        report.commit = commit_sweep(repo, canonical, &sweep.inbox, &report)?;
    }
    Ok(report)
}

/// The archive beside a canonical file: `decisions-archive.md`.
pub fn archive_path(canonical: &Path) -> PathBuf {
    canonical.with_file_name("decisions-archive.md")
}

fn parent_dir(path: &Path) -> &Path {
    path.parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// A text file's content; empty when it does not exist.
fn read_text(path: &Path) -> Result<String> {
    match std::fs::read(path) {
        Ok(bytes) => {
            String::from_utf8(bytes).map_err(|_| Error::bad_input(format!("{} is not UTF-8 text", path.display())))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        Err(e) => Err(Error::internal(format!("cannot read {}: {e}", path.display()))),
    }
}

/// The canonical file a Squad layout has under `dir`: `.squad/decisions.md` or
/// `.squad/decisions/decisions.md`, whichever exists (the first when neither does). Both
/// existing is bad input: which one is meant cannot be guessed.
pub fn find_canonical(dir: &Path) -> Result<PathBuf> {
    let found: Vec<PathBuf> = SQUAD_CANONICAL
        .iter()
        .map(|c| dir.join(c))
        .filter(|p| p.exists())
        .collect();
    match &found[..] {
        [] => Ok(dir.join(DEFAULT_INTO)),
        [one] => Ok(one.clone()),
        _ => Err(Error::bad_input(format!(
            "two canonical decisions files: {} and {}; merge them into one, or name one with --into",
            found[0].display(),
            found[1].display()
        ))),
    }
}

/// What `inbox check` found in a canonical file: one line per finding, `FILE:LINES: what`.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct CheckReport {
    pub file: PathBuf,
    /// Damaged parts a sweep cannot restore (it refuses to run until they are fixed by hand),
    /// then entries it would restore and second copies it would drop.
    pub findings: Vec<String>,
    /// How many findings a sweep cannot restore.
    pub cannot_restore: usize,
}

/// Checks a canonical file (and its archive) as a sweep would before merging, changing
/// nothing.
pub fn check(inbox: &Path, canonical: &Path) -> Result<Vec<CheckReport>> {
    let lookup = git_toplevel(parent_dir(canonical)).ok();
    let mut reports = Vec::new();
    for file in [canonical.to_path_buf(), archive_path(canonical)] {
        let text = read_text(&file)?;
        let checked = check_text(&file, &text, lookup.as_deref(), inbox)?;
        let at = |(first, last): (usize, usize)| {
            if first == last {
                format!("{}:{first}", file.display())
            } else {
                format!("{}:{first}-{last}", file.display())
            }
        };
        let mut findings: Vec<String> = checked
            .problems
            .iter()
            .map(|p| format!("{}: {}", at((p.first_line, p.last_line)), p.message))
            .collect();
        findings.extend(checked.restored.iter().map(|(id, lines)| {
            format!(
                "{}: entry {id} is interleaved with other lines; a sweep restores it",
                at(*lines)
            )
        }));
        findings.extend(
            checked
                .duplicates
                .iter()
                .map(|(id, lines)| format!("{}: a second copy of entry {id}; a sweep drops it", at(*lines))),
        );
        reports.push(CheckReport {
            cannot_restore: checked.problems.len(),
            findings,
            file,
        });
    }
    Ok(reports)
}

/// Repairs a canonical file's text in memory, finding damaged entries' exact bytes in git.
fn check_text(path: &Path, text: &str, repo: Option<&Path>, inbox: &Path) -> Result<Repaired> {
    let wanted = wanted(text);
    let mut found = HashMap::new();
    if let (false, Some(repo)) = (wanted.is_empty(), repo) {
        found = find_in_git(repo, path, inbox, &wanted).unwrap_or_else(|e| {
            tracing::warn!("cannot look for damaged entries in git: {}", e.message);
            HashMap::new()
        });
    }
    Ok(repair(text, &|marker: &Marker| found.get(marker).cloned()))
}

fn refuse_problems(canonical: &Path, checked: &Repaired) -> Result<()> {
    if checked.problems.is_empty() {
        return Ok(());
    }
    let lines: Vec<String> = checked
        .problems
        .iter()
        .map(|p| format!("{}:{}: {}", canonical.display(), p.first_line, p.message))
        .collect();
    Err(Error::new(
        ErrorKind::Conflict,
        format!(
            "{} is damaged where it cannot be restored, so nothing was swept or changed; fix these lines by hand \
             (`arbiter inbox check` shows them again):\n{}",
            canonical.display(),
            lines.join("\n")
        ),
    ))
}

/// One inbox file to merge.
struct InboxFile {
    path: PathBuf,
    entry: Entry,
}

/// The inbox's entries: files named `*.md` (any case) not starting with `.`, by file name.
/// Other files, and empty ones (an agent may still be writing), are left and listed in
/// `skipped`.
fn inbox_files(inbox: &Path, skipped: &mut Vec<String>) -> Result<Vec<InboxFile>> {
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
    let mut names = Vec::new();
    for item in dir {
        let item = item.map_err(|e| Error::internal(format!("cannot read the inbox {}: {e}", inbox.display())))?;
        let name = item.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        let stem = name
            .rsplit_once('.')
            .filter(|(stem, ext)| !stem.is_empty() && ext.eq_ignore_ascii_case("md"))
            .map(|(stem, _)| stem.to_string());
        match (stem, item.file_type().is_ok_and(|t| t.is_file())) {
            (Some(stem), true) => names.push((name, stem, item.path())),
            _ => skipped.push(format!("{}: not a .md file; not merged", item.path().display())),
        }
    }
    names.sort();
    let mut files = Vec::with_capacity(names.len());
    for (_, stem, path) in names {
        let bytes =
            std::fs::read(&path).map_err(|e| Error::internal(format!("cannot read {}: {e}", path.display())))?;
        let content = String::from_utf8(bytes)
            .map_err(|_| Error::bad_input(format!("inbox file {} is not UTF-8 text", path.display())))?;
        if content.is_empty() {
            skipped.push(format!(
                "{}: empty (an agent may still be writing it); not merged",
                path.display()
            ));
            continue;
        }
        files.push(InboxFile {
            entry: Entry::from_file(&stem, content),
            path,
        });
    }
    skipped.sort();
    Ok(files)
}

/// 64-bit FNV-1a: a stable name for a path (the same across processes and builds).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, b| {
        (hash ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// `git -C repo` with pathspecs taken literally (a file named `[x].md` is that file).
fn git_command(repo: &Path) -> Command {
    let mut cmd = Command::new("git");
    cmd.arg("-C").arg(repo).arg("--literal-pathspecs");
    cmd
}

fn git<S: AsRef<OsStr>>(repo: &Path, args: &[S]) -> Result<Vec<u8>> {
    let output = git_command(repo)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| Error::internal(format!("cannot run git: {e}")))?;
    if output.status.success() {
        Ok(output.stdout)
    } else {
        let args: Vec<_> = args.iter().map(|a| a.as_ref().to_string_lossy()).collect();
        Err(Error::internal(format!(
            "git {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        )))
    }
}

/// `git ARGS -- PATH`.
fn git_on(repo: &Path, args: &[&str], path: &Path) -> Result<Vec<u8>> {
    let mut all: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
    all.extend([OsStr::new("--"), path.as_os_str()]);
    git(repo, &all)
}

/// `git cat-file --batch`: reads many objects through one process.
struct CatFile {
    child: std::process::Child,
    out: BufReader<std::process::ChildStdout>,
}

impl CatFile {
    fn start(repo: &Path) -> Result<CatFile> {
        let mut child = git_command(repo)
            .args(["cat-file", "--batch"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| Error::internal(format!("cannot run git: {e}")))?;
        let out = BufReader::new(child.stdout.take().expect("piped"));
        Ok(CatFile { child, out })
    }

    /// The bytes of `spec` (`REV:PATH` or a blob id); `None` when there is no such object.
    fn get(&mut self, spec: &[u8]) -> Result<Option<Vec<u8>>> {
        let io = |e: std::io::Error| Error::internal(format!("git cat-file: {e}"));
        let stdin = self.child.stdin.as_mut().expect("piped");
        stdin.write_all(spec).map_err(io)?;
        stdin.write_all(b"\n").map_err(io)?;
        stdin.flush().map_err(io)?;
        let mut header = String::new();
        self.out.read_line(&mut header).map_err(io)?;
        let words: Vec<&str> = header.split_whitespace().collect();
        let Some(size) = words.get(2).and_then(|s| s.parse::<usize>().ok()) else {
            return Ok(None); // "<spec> missing", or not a blob
        };
        let mut bytes = vec![0; size + 1];
        self.out.read_exact(&mut bytes).map_err(io)?;
        bytes.pop();
        Ok((words[1] == "blob").then_some(bytes))
    }
}

impl Drop for CatFile {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

/// A path relative to the top of the work tree, as git's `REV:PATH` wants it.
fn repo_relative(repo: &Path, path: &Path) -> Option<Vec<u8>> {
    let dir = std::fs::canonicalize(parent_dir(path)).ok()?;
    let full = dir.join(path.file_name()?);
    let relative = full.strip_prefix(repo).ok()?;
    let text = relative.to_str()?.replace(std::path::MAIN_SEPARATOR, "/");
    Some(text.into_bytes())
}

/// The exact bytes of the `wanted` entries, from git: the canonical file as committed in
/// any commit (newest first), then inbox files that commits removed.
fn find_in_git(repo: &Path, canonical: &Path, inbox: &Path, wanted: &[Marker]) -> Result<HashMap<Marker, String>> {
    let mut found = HashMap::new();
    let mut cat = CatFile::start(repo)?;
    let mut revs = vec!["rev-list", "--all", "--full-history"];
    if git(repo, &["rev-parse", "--quiet", "--verify", "MERGE_HEAD"]).is_ok() {
        revs.push("MERGE_HEAD");
    }
    if let Some(relative) = repo_relative(repo, canonical) {
        let commits = git_on(repo, &revs, canonical).unwrap_or_default();
        for commit in String::from_utf8_lossy(&commits).lines() {
            if found.len() == wanted.len() {
                return Ok(found);
            }
            let mut spec = format!("{commit}:").into_bytes();
            spec.extend_from_slice(&relative);
            let Some(blob) = cat.get(&spec)? else { continue };
            let Ok(text) = String::from_utf8(blob) else { continue };
            for entry in entries(&text) {
                if let Some(marker) = entry.marker.filter(|m| wanted.contains(m)) {
                    found.insert(marker, text[entry.body].to_string());
                }
            }
        }
    }
    if found.len() < wanted.len() {
        let inbox_dir = std::fs::canonicalize(inbox).unwrap_or_else(|_| inbox.to_path_buf());
        let removed = git_on(
            repo,
            &[
                "log",
                "--all",
                "--no-renames",
                "--diff-filter=D",
                "--raw",
                "--no-abbrev",
                "-z",
                "--format=",
            ],
            &inbox_dir,
        )
        .unwrap_or_default();
        // Records: ":100644 000000 OLD NEW D\0PATH\0".
        for record in removed.split(|b| *b == 0).filter(|r| r.starts_with(b":")) {
            let Some(blob) = record.split(|b| *b == b' ').nth(2) else {
                continue;
            };
            let Some(bytes) = cat.get(blob)? else { continue };
            let Ok(content) = String::from_utf8(bytes) else {
                continue;
            };
            let body = body(&content);
            for marker in wanted {
                if marker.matches(&body) {
                    found.insert(marker.clone(), body.to_string());
                }
            }
        }
    }
    Ok(found)
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
    let top = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim_end_matches(['\n', '\r']));
    std::fs::canonicalize(&top).map_err(|e| Error::internal(format!("cannot resolve {}: {e}", top.display())))
}

/// Refuses to start when git's index is locked: a git command is running, or one was
/// killed (a sweep killed while git ran leaves the lock behind), and every commit would
/// fail. Nothing is written before this check.
pub fn refuse_locked_index(repo: &Path) -> Result<()> {
    let path = git(repo, &["rev-parse", "--git-path", "index.lock"])?;
    let path = PathBuf::from(String::from_utf8_lossy(&path).trim_end_matches(['\n', '\r']));
    let path = if path.is_absolute() { path } else { repo.join(path) };
    if path.exists() {
        return Err(Error::new(
            ErrorKind::Held,
            format!(
                "git's index is locked: {} exists, so nothing was swept or changed. A git command is running in \
                 this repository, or one was killed (an interrupted sweep leaves this file): if no git process is \
                 running, remove {} and sweep again",
                path.display(),
                path.display()
            ),
        ));
    }
    Ok(())
}

/// Commits the canonical file, its archive and the removal of merged inbox files
/// (including removals an interrupted sweep left uncommitted), and nothing else that may
/// be staged. The message counts what the commit holds.
fn commit_sweep(repo: &Path, canonical: &Path, inbox: &Path, report: &SweepReport) -> Result<Option<String>> {
    let archive = archive_path(canonical);
    let mut files: Vec<PathBuf> = vec![canonical.to_path_buf()];
    if archive.exists() {
        files.push(archive.clone());
    }
    let mut add: Vec<&OsStr> = vec![OsStr::new("add"), OsStr::new("--")];
    add.extend(files.iter().map(|p| p.as_os_str()));
    git(repo, &add)?;
    let texts = [read_text(canonical)?, read_text(&archive)?];
    let (now, mut cat) = ([Index::of(&texts[0]), Index::of(&texts[1])], CatFile::start(repo)?);
    // Inbox files in HEAD that are gone from the work tree and whose bytes are merged.
    let inbox_abs = std::fs::canonicalize(inbox).unwrap_or_else(|_| inbox.to_path_buf());
    let tracked = git_on(
        repo,
        &["ls-tree", "-r", "-z", "--name-only", "--full-name", "HEAD"],
        &inbox_abs,
    )
    .unwrap_or_default();
    let mut removed = 0;
    for relative in tracked.split(|b| *b == 0).filter(|r| !r.is_empty()) {
        let Ok(relative_str) = std::str::from_utf8(relative) else {
            continue;
        };
        let path = repo.join(relative_str);
        if path.exists() {
            continue;
        }
        let stem = Path::new(relative_str)
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.rsplit_once('.'))
            .map(|(stem, _)| stem.to_string())
            .unwrap_or_default();
        let mut spec = b"HEAD:".to_vec();
        spec.extend_from_slice(relative);
        let Some(Ok(content)) = cat.get(&spec)?.map(String::from_utf8) else {
            continue;
        };
        let entry = Entry::from_file(&stem, content);
        if now.iter().any(|index| index.contains(&entry)) {
            files.push(path);
            removed += 1;
        }
    }
    // Entries the commit adds (not in HEAD's canonical file or archive), and entries it
    // moves into the archive.
    let mut before = [String::new(), String::new()];
    for (path, text) in [canonical, &archive].into_iter().zip(&mut before) {
        if let Some(relative) = repo_relative(repo, path) {
            let mut spec = b"HEAD:".to_vec();
            spec.extend_from_slice(&relative);
            if let Some(Ok(blob)) = cat.get(&spec)?.map(String::from_utf8) {
                *text = blob;
            }
        }
    }
    // Every start marker, whole or not: a restored entry was there before.
    let markers = |text: &str| -> HashSet<Marker> {
        let mut all: HashSet<Marker> = entries(text).into_iter().filter_map(|f| f.marker).collect();
        all.extend(wanted(text));
        all
    };
    let (was, was_archived) = (markers(&before[0]), markers(&before[1]));
    let (now_canonical, now_archived) = (markers(&texts[0]), markers(&texts[1]));
    let added = now_canonical
        .union(&now_archived)
        .filter(|m| !was.contains(*m) && !was_archived.contains(*m))
        .count();
    let archived = now_archived.difference(&was_archived).count();
    drop(cat);
    let mut diff: Vec<&OsStr> = ["diff", "--quiet", "HEAD", "--"].map(OsStr::new).to_vec();
    diff.extend(files.iter().map(|p| p.as_os_str()));
    let has_head = git(repo, &["rev-parse", "--verify", "--quiet", "HEAD"]).is_ok();
    if has_head && git(repo, &diff).is_ok() {
        return Ok(None);
    }
    let mut message = format!(
        "arbiter inbox sweep: {added} decision(s) merged into {}, {removed} inbox file(s) removed{}",
        canonical.file_name().unwrap_or_default().to_string_lossy(),
        report.repairs()
    );
    if archived > 0 {
        message.push_str(&format!(", {archived} entries archived"));
    }
    let mut commit: Vec<&OsStr> = ["commit", "--quiet", "--no-verify", "-m", &message, "--"]
        .map(OsStr::new)
        .to_vec();
    commit.extend(files.iter().map(|p| p.as_os_str()));
    git(repo, &commit)?;
    let head = git(repo, &["rev-parse", "HEAD"])?;
    Ok(Some(String::from_utf8_lossy(&head).trim().to_string()))
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
