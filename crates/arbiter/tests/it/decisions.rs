//! Decisions: the store-backed render and the git-native drop-box, with real git.

use std::path::{Path, PathBuf};
use std::process::Command;

use arbiter_core::decisions::{block_with_id, body, entries};
use proptest::strategy::Strategy;

use crate::support::Store;

/// `arbiter` on `store`, arguments to follow.
fn cli(store: &Store) -> Command {
    store.cmd::<&str>(&[])
}

fn git(repo: &Path, args: &[&str]) -> String {
    let out = Command::new("git").arg("-C").arg(repo).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn new_repo() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    git(dir.path(), &["init", "-q", "-b", "main"]);
    git(dir.path(), &["config", "user.email", "test@example.com"]);
    git(dir.path(), &["config", "user.name", "test"]);
    git(dir.path(), &["config", "commit.gpgsign", "false"]);
    dir
}

/// Runs arbiter in `repo` against `store`, asserting success; returns stdout.
fn run_in(repo: &Path, store: &Store, args: &[&str]) -> String {
    let out = cli(store).current_dir(repo).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "arbiter {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn inbox_files(repo: &Path) -> Vec<String> {
    let dir = repo.join(".squad/decisions/inbox");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

fn count(haystack: &str, needle: &str) -> usize {
    haystack.matches(needle).count()
}

fn decide_all(store: &Store) {
    let dir = tempfile::tempdir().unwrap();
    let body = dir.path().join("body.md");
    std::fs::write(
        &body,
        "## Use PostgreSQL across machines\n\nSQLite for one host.\n`code` & \"quotes\" — ünïcode\n",
    )
    .unwrap();
    for args in [
        vec![
            "decide",
            "Use SQLite by default\n\nIt is embedded.",
            "--by",
            "ada",
            "--tag",
            "area=store",
        ],
        vec![
            "decide",
            "--body-file",
            body.to_str().unwrap(),
            "--by",
            "bo",
            "--key",
            "pg-1",
        ],
        vec![
            "decide",
            "--body-file",
            body.to_str().unwrap(),
            "--by",
            "bo",
            "--key",
            "pg-1",
        ],
        vec![
            "decide",
            "Ship it",
            "--title",
            "Release 0.1",
            "--by",
            "cy",
            "--tag",
            "b=2",
            "--tag",
            "a=1",
        ],
    ] {
        let out = cli(store).args(&args).output().unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn render(store: &Store) -> String {
    let out = cli(store).args(["decisions", "render"]).output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn render_is_byte_identical_across_runs_and_backends() {
    let sqlite = Store::sqlite();
    decide_all(&sqlite);
    let first = render(&sqlite);
    assert_eq!(first, render(&sqlite), "two renders of one log");
    assert_eq!(
        count(&first, "<!-- arbiter:entry id="),
        3,
        "the retried decision (same key) is there once"
    );
    assert!(first.contains("**Tags:** a=1, b=2"), "{first}");
    assert!(first.contains("`code` & \"quotes\" — ünïcode"), "{first}");
    // --out writes the same bytes.
    let out_path = sqlite.scratch.path().join("decisions.md");
    run_in(
        sqlite.scratch.path(),
        &sqlite,
        &["decisions", "render", "--out", out_path.to_str().unwrap()],
    );
    assert_eq!(std::fs::read_to_string(&out_path).unwrap(), first);
    let Some(pg) = Store::postgres("render_identical") else {
        return;
    };
    decide_all(&pg);
    let other = render(&pg);
    let dates = |text: &str| {
        text.lines()
            .filter(|l| l.starts_with("### "))
            .map(|l| l[4..14].to_string())
            .collect::<Vec<_>>()
    };
    if dates(&first) != dates(&other) {
        // The two logs were written on either side of midnight (UTC): only dates differ.
        println!("render_is_byte_identical: logs straddle midnight; comparing without dates");
        assert_eq!(
            first.replace(&dates(&first)[0], "D"),
            other.replace(&dates(&other)[0], "D")
        );
    } else {
        assert_eq!(
            first, other,
            "SQLite and PostgreSQL render the same log to the same bytes"
        );
    }
}

#[test]
fn two_branches_drop_and_merge_without_conflict() {
    let repo = new_repo();
    let r = repo.path();
    let s = Store::sqlite();
    run_in(r, &s, &["init", "--squad"]);
    std::fs::create_dir_all(r.join(".squad/log")).unwrap();
    std::fs::write(r.join(".squad/log/session.md"), "# Session log\n").unwrap();
    git(r, &["add", "-A"]);
    git(r, &["commit", "-qm", "init"]);
    for (branch, agent) in [("a", "ada"), ("b", "bo")] {
        git(r, &["checkout", "-q", "-b", branch, "main"]);
        for n in 1..=2 {
            run_in(
                r,
                &s,
                &[
                    "inbox",
                    "drop",
                    &format!("Decision {n} of {agent}\n\nDetails."),
                    "--by",
                    agent,
                ],
            );
        }
        let log = r.join(".squad/log/session.md");
        let mut text = std::fs::read_to_string(&log).unwrap();
        text.push_str(&format!("- {agent} was here\n"));
        std::fs::write(&log, text).unwrap();
        git(r, &["add", "-A"]);
        git(r, &["commit", "-qm", &format!("work on {branch}")]);
    }
    git(r, &["checkout", "-q", "main"]);
    git(r, &["merge", "-q", "--no-edit", "a"]);
    git(r, &["merge", "-q", "--no-edit", "b"]); // asserts: no conflict
    let log = std::fs::read_to_string(r.join(".squad/log/session.md")).unwrap();
    assert!(log.contains("- ada was here") && log.contains("- bo was here"), "{log}");
    assert_eq!(inbox_files(r).len(), 4);
    let report = run_in(r, &s, &["inbox", "sweep", "--commit", "--json"]);
    let report: serde_json::Value = serde_json::from_str(&report).unwrap();
    assert_eq!(report["merged"].as_array().unwrap().len(), 4);
    assert!(report["commit"].is_string());
    let canonical = std::fs::read_to_string(r.join(".squad/decisions.md")).unwrap();
    for agent in ["ada", "bo"] {
        for n in 1..=2 {
            assert_eq!(count(&canonical, &format!("Decision {n} of {agent}")), 1, "{canonical}");
        }
    }
    assert!(inbox_files(r).is_empty());
    assert_eq!(
        git(r, &["status", "--porcelain"]),
        "",
        "the sweep committed everything it changed"
    );
    let commits = git(r, &["log", "--oneline"]);
    // Sweeping again: nothing to merge, no commit.
    run_in(r, &s, &["inbox", "sweep", "--commit"]);
    assert_eq!(git(r, &["log", "--oneline"]), commits);
    assert_eq!(
        std::fs::read_to_string(r.join(".squad/decisions.md")).unwrap(),
        canonical
    );

    // Two branches that each sweep their own drops merge the canonical file by union.
    for (branch, agent) in [("c", "cy"), ("d", "di")] {
        git(r, &["checkout", "-q", "-b", branch, "main"]);
        run_in(r, &s, &["inbox", "drop", &format!("Only on {branch}"), "--by", agent]);
        git(r, &["add", "-A"]);
        git(r, &["commit", "-qm", &format!("drop on {branch}")]);
        run_in(r, &s, &["inbox", "sweep", "--commit"]);
    }
    git(r, &["checkout", "-q", "main"]);
    git(r, &["merge", "-q", "--no-edit", "c"]);
    git(r, &["merge", "-q", "--no-edit", "d"]);
    let canonical = std::fs::read_to_string(r.join(".squad/decisions.md")).unwrap();
    assert_eq!(count(&canonical, "Only on c"), 1, "{canonical}");
    assert_eq!(count(&canonical, "Only on d"), 1, "{canonical}");
    assert_eq!(count(&canonical, "<!-- arbiter:entry id="), 6);
}

fn sweep_killed_at(fault: &str) {
    let repo = new_repo();
    let r = repo.path();
    let s = Store::sqlite();
    for n in 1..=3 {
        run_in(r, &s, &["inbox", "drop", &format!("Entry {n}"), "--by", "ada"]);
    }
    git(r, &["add", "-A"]);
    git(r, &["commit", "-qm", "drops"]);
    let out = cli(&s)
        .current_dir(r)
        .env("ARBITER_FAULT", fault)
        .args(["inbox", "sweep", "--commit"])
        .output()
        .unwrap();
    assert!(!out.status.success(), "the fault point {fault} crashed the sweep");
    assert!(String::from_utf8_lossy(&out.stderr).contains(fault));
    // Half-done: the canonical file has the entries; some inbox files are still there.
    let half = std::fs::read_to_string(r.join(".squad/decisions.md")).unwrap();
    assert_eq!(count(&half, "<!-- arbiter:entry id="), 3);
    assert!(!inbox_files(r).is_empty());
    // Run again (the crashed sweep's lease is taken over at once: its process is gone).
    run_in(r, &s, &["inbox", "sweep", "--commit"]);
    let canonical = std::fs::read_to_string(r.join(".squad/decisions.md")).unwrap();
    for n in 1..=3 {
        assert_eq!(count(&canonical, &format!("Entry {n}")), 1, "{canonical}");
    }
    assert!(inbox_files(r).is_empty());
    assert_eq!(git(r, &["status", "--porcelain"]), "");
    assert_eq!(git(r, &["log", "--oneline"]).lines().count(), 2, "one sweep commit");
    assert_eq!(
        git(r, &["log", "-1", "--format=%s"]).trim(),
        "arbiter inbox sweep: 3 decision(s) merged into decisions.md, 3 inbox file(s) removed",
        "the recovery commit counts what it commits"
    );
}

#[test]
fn a_sweep_killed_after_writing_and_rerun_loses_and_duplicates_nothing() {
    sweep_killed_at("sweep.after_write");
}

#[test]
fn a_sweep_killed_after_removing_one_file_and_rerun_loses_and_duplicates_nothing() {
    sweep_killed_at("sweep.after_remove");
}

/// The Squad samples on the project's own machines (`../shared`, beside the checkout):
/// `None`, said loudly, where they are absent — also under `CI`: a user's clone never has
/// them, and the project's own fixture (`the_projects_squad_fixture`) covers the same layout.
fn shared_fixture() -> Option<PathBuf> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures/squad");
    if path.join(".squad/decisions.md").exists() {
        return Some(path);
    }
    eprintln!(
        "SKIPPED a_squad_repository_as_it_is: the shared Squad samples are not at {} (they exist only on the \
         project's machines; the project's own fixture is tested by the_projects_squad_fixture)",
        path.display()
    );
    None
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::write(&target, std::fs::read(entry.path()).unwrap()).unwrap();
        }
    }
}

#[test]
fn a_squad_repository_as_it_is() {
    let Some(fixture) = shared_fixture() else {
        return;
    };
    let repo = new_repo();
    let r = repo.path();
    copy_dir(&fixture, r);
    git(r, &["add", "-A"]);
    git(r, &["commit", "-qm", "squad as it is"]);
    let s = Store::sqlite();
    // init --squad keeps every existing line and adds only what is missing (here: nothing).
    let attributes = std::fs::read_to_string(r.join(".gitattributes")).unwrap();
    run_in(r, &s, &["init", "--squad"]);
    assert_eq!(std::fs::read_to_string(r.join(".gitattributes")).unwrap(), attributes);
    run_in(r, &s, &["init", "--squad", "--into", ".squad/decisions/decisions.md"]);
    let grown = std::fs::read_to_string(r.join(".gitattributes")).unwrap();
    assert!(grown.starts_with(&attributes), "existing lines kept in place");
    assert!(
        grown.ends_with(".squad/decisions/decisions.md merge=union\n"),
        "{grown}"
    );
    assert_eq!(count(&grown, "merge=union"), 5);
    git(r, &["checkout", "--", ".gitattributes"]);

    // The sweep merges files it did not write, verbatim, in file-name order.
    let canonical_before = std::fs::read_to_string(r.join(".squad/decisions.md")).unwrap();
    let inbox = fixture.join(".squad/decisions/inbox");
    let fenster = std::fs::read_to_string(inbox.join("fenster-cli-wiring.md")).unwrap();
    let procedures = std::fs::read_to_string(inbox.join("procedures-spawn-name.md")).unwrap();
    run_in(r, &s, &["inbox", "sweep", "--commit"]);
    let canonical = std::fs::read_to_string(r.join(".squad/decisions.md")).unwrap();
    let expected = format!(
        "{canonical_before}\n{}\n{}",
        block_with_id("fenster-cli-wiring", &fenster),
        block_with_id("procedures-spawn-name", &procedures)
    );
    assert_eq!(canonical, expected);
    assert!(
        canonical.contains("**By:** Fenster (Core Dev)  \n"),
        "trailing spaces kept"
    );
    assert!(inbox_files(r).is_empty());
    assert_eq!(git(r, &["status", "--porcelain"]), "");
    // Twice: nothing duplicated, nothing committed.
    let head = git(r, &["rev-parse", "HEAD"]);
    run_in(r, &s, &["inbox", "sweep", "--commit"]);
    assert_eq!(
        std::fs::read_to_string(r.join(".squad/decisions.md")).unwrap(),
        canonical
    );
    assert_eq!(git(r, &["rev-parse", "HEAD"]), head);
}

const FIXTURE_INBOX: &str = ".squad/decisions/inbox";
const FIXTURE_CANONICAL: &str = ".squad/decisions/decisions.md";

/// The inbox files of a repository and their text, by name.
fn inbox_texts(repo: &Path) -> Vec<(String, String)> {
    inbox_files(repo)
        .into_iter()
        .map(|name| {
            let text = std::fs::read_to_string(repo.join(FIXTURE_INBOX).join(&name)).unwrap();
            (name, text)
        })
        .collect()
}

/// How many whole entries of `text` hold exactly `content` (as an inbox file's entry).
fn copies(text: &str, content: &str) -> usize {
    entries(text)
        .iter()
        .filter(|f| text[f.body.clone()] == *body(content))
        .count()
}

/// Asserts `arbiter inbox check` in `repo` exits `code`; returns its stdout.
fn check_in(repo: &Path, store: &Store, code: i32) -> String {
    let out = crate::support::run(cli(store).current_dir(repo).args(["inbox", "check"]));
    out.expect_code(code, "inbox check");
    out.stdout
}

#[test]
fn the_projects_squad_fixture() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/squad");
    let repo = new_repo();
    let r = repo.path();
    copy_dir(&fixture, r);
    git(r, &["add", "-A"]);
    git(r, &["commit", "-qm", "a squad repository"]);
    let s = Store::sqlite();
    // init --squad finds the canonical file where it is: nothing to add.
    run_in(r, &s, &["init", "--squad"]);
    assert_eq!(git(r, &["status", "--porcelain"]), "");
    check_in(r, &s, 0);

    let before = std::fs::read_to_string(r.join(FIXTURE_CANONICAL)).unwrap();
    let inbox = inbox_texts(r);
    let out = crate::support::run(cli(&s).current_dir(r).args(["inbox", "sweep", "--commit", "--json"]));
    out.expect_code(0, "sweep");
    let report = out.json();
    assert!(
        !r.join(".squad/decisions.md").exists(),
        "no second canonical file beside the real one"
    );
    let canonical = std::fs::read_to_string(r.join(FIXTURE_CANONICAL)).unwrap();
    assert!(canonical.starts_with(&before), "the existing file is kept verbatim");
    for warned in ["notes.txt: not a .md file", "scribe-empty.md: empty"] {
        assert!(out.stderr.contains(warned), "{warned}: {}", out.stderr);
    }
    // Every .md file with text is in the file once, byte for byte; the first-format entry
    // its file still had is not added again.
    let mut merged = 0;
    for (name, text) in &inbox {
        if name == "notes.txt" || text.is_empty() {
            continue;
        }
        if name == "fenster-first-format.md" {
            assert_eq!(count(&canonical, "# Decision: Review before merge"), 1, "{canonical}");
            continue;
        }
        assert_eq!(copies(&canonical, text), 1, "{name}:\n{canonical}");
        merged += 1;
    }
    assert_eq!(report["merged"].as_array().unwrap().len(), merged, "{report}");
    let crlf = &inbox.iter().find(|(n, _)| n == "mcmanus-line-endings.md").unwrap().1;
    assert!(
        canonical.contains(&format!("{crlf}\n<!-- arbiter:end id=mcmanus-line-endings -->\n")),
        "CRLF and trailing blank lines kept, only a final newline added"
    );
    assert!(canonical.contains("<!-- arbiter:entry id=hockney%20d%C3%A9cision%20caf%C3%A9 len="));
    assert!(canonical.contains("<!-- arbiter:entry id=redfoot%20my%20decision len="));
    assert!(canonical.contains("<!-- arbiter:entry id=redfoot_my_decision len="));
    assert!(canonical.contains("<!-- arbiter:entry id=verbal-upper len="));
    assert_eq!(inbox_files(r), ["notes.txt", "scribe-empty.md"]);
    assert_eq!(
        git(r, &["status", "--porcelain"]),
        "",
        "every removal committed, non-ASCII names too"
    );
    let message = git(r, &["log", "-1", "--format=%s"]);
    assert_eq!(
        message.trim(),
        format!(
            "arbiter inbox sweep: {merged} decision(s) merged into decisions.md, {} inbox file(s) removed",
            merged + 1
        )
    );
    check_in(r, &s, 0);
    // Twice: nothing changes, nothing is committed.
    let head = git(r, &["rev-parse", "HEAD"]);
    run_in(r, &s, &["inbox", "sweep", "--commit"]);
    assert_eq!(std::fs::read_to_string(r.join(FIXTURE_CANONICAL)).unwrap(), canonical);
    assert_eq!(git(r, &["rev-parse", "HEAD"]), head);
    // The file the forged markers named arrives: it is merged, not taken as merged.
    let future = "# Decision: the real one\n\n**By:** Keaton\n";
    std::fs::write(r.join(FIXTURE_INBOX).join("zz-future-decision.md"), future).unwrap();
    let report = run_in(r, &s, &["inbox", "sweep", "--commit", "--json"]);
    let report: serde_json::Value = serde_json::from_str(&report).unwrap();
    assert_eq!(report["merged"], serde_json::json!(["zz-future-decision"]));
    let canonical = std::fs::read_to_string(r.join(FIXTURE_CANONICAL)).unwrap();
    assert_eq!(copies(&canonical, future), 1);
    assert_eq!(git(r, &["status", "--porcelain"]), "");
}

/// A repository with `.squad/decisions.md` = `# Decisions\n` and `arbiter init --squad`
/// committed on `main`.
fn squad_repo(s: &Store) -> tempfile::TempDir {
    let repo = new_repo();
    let r = repo.path();
    std::fs::create_dir_all(r.join(".squad/decisions/inbox")).unwrap();
    std::fs::write(r.join(".squad/decisions.md"), "# Decisions\n").unwrap();
    run_in(r, s, &["init", "--squad"]);
    git(r, &["add", "-A"]);
    git(r, &["commit", "-qm", "base"]);
    repo
}

fn drop_file(repo: &Path, name: &str, text: &str) {
    std::fs::write(repo.join(".squad/decisions/inbox").join(name), text).unwrap();
}

#[test]
fn union_merged_entries_are_restored_byte_exact() {
    let s = Store::sqlite();
    let repo = squad_repo(&s);
    let r = repo.path();
    // Reproducer of issue 12: two branches sweep entries that share lines.
    let a = "# A\n\n**Status:** Done\n\n## Context\n\nalpha\n";
    let b = "# B\n\n**Status:** Done\n\n## Context\n\nbeta\n";
    // A file both branches sweep: a second copy after the merge, or a shared one.
    let shared = "# Shared\n\n**Status:** Done\n";
    drop_file(r, "z-shared.md", shared);
    git(r, &["add", "-A"]);
    git(r, &["commit", "-qm", "shared drop"]);
    for (branch, text) in [("a", a), ("b", b)] {
        git(r, &["checkout", "-q", "-b", branch, "main"]);
        drop_file(r, &format!("{branch}.md"), text);
        git(r, &["add", "-A"]);
        git(r, &["commit", "-qm", &format!("drop {branch}")]);
        run_in(r, &s, &["inbox", "sweep", "--commit"]);
    }
    git(r, &["checkout", "-q", "a"]);
    git(r, &["merge", "-q", "--no-edit", "b"]);
    let merged = std::fs::read_to_string(r.join(".squad/decisions.md")).unwrap();
    assert!(
        copies(&merged, b) < 1,
        "the union merge interleaved the entries:\n{merged}"
    );
    let report = check_in(r, &s, 3);
    assert!(report.contains("a sweep restores it"), "{report}");
    assert_eq!(
        std::fs::read_to_string(r.join(".squad/decisions.md")).unwrap(),
        merged,
        "check changes nothing"
    );
    let out = run_in(r, &s, &["inbox", "sweep", "--commit", "--json"]);
    let out: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(!out["restored"].as_array().unwrap().is_empty(), "{out}");
    let canonical = std::fs::read_to_string(r.join(".squad/decisions.md")).unwrap();
    for text in [a, b, shared] {
        assert_eq!(copies(&canonical, text), 1, "{canonical}");
    }
    assert_eq!(entries(&canonical).len(), 3, "{canonical}");
    assert!(canonical.starts_with("# Decisions\n"));
    assert_eq!(git(r, &["status", "--porcelain"]), "");
    assert_eq!(
        git(r, &["log", "-1", "--format=%s"]).trim(),
        "arbiter inbox sweep: 0 decision(s) merged into decisions.md, 0 inbox file(s) removed, \
         2 interleaved entries restored"
    );
    check_in(r, &s, 0);
}

#[test]
fn what_cannot_be_restored_is_reported_and_left_untouched() {
    let s = Store::sqlite();
    let repo = squad_repo(&s);
    let r = repo.path();
    // Interleaved entries whose bytes are nowhere in git (written by hand, uncommitted).
    let a = block_with_id("a", "# A\n\nalpha\n");
    let b = block_with_id("b", "# B\n\nbeta\n");
    let (sa, sb) = (a.lines().next().unwrap(), b.lines().next().unwrap());
    let damaged = format!(
        "# Decisions\n\n{sa}\n{sb}\n# A\n# B\n\nalpha\n<!-- arbiter:end id=a -->\nbeta\n<!-- arbiter:end id=b -->\n"
    );
    std::fs::write(r.join(".squad/decisions.md"), &damaged).unwrap();
    drop_file(r, "c.md", "# C\n");
    let report = check_in(r, &s, 3);
    assert!(report.contains(".squad/decisions.md:3-11: "), "{report}");
    assert!(report.contains("line 3: the start of entry a"), "{report}");
    let out = crate::support::run(cli(&s).current_dir(r).args(["inbox", "sweep", "--commit"]));
    out.expect_code(3, "a sweep of a file it cannot restore");
    assert!(
        out.stderr.contains(".squad/decisions.md:3: lines 3-11"),
        "{}",
        out.stderr
    );
    assert_eq!(std::fs::read_to_string(r.join(".squad/decisions.md")).unwrap(), damaged);
    assert_eq!(inbox_files(r), ["c.md"], "nothing swept");
}

#[test]
fn two_names_one_old_id_and_forged_markers_lose_nothing() {
    let s = Store::sqlite();
    let repo = squad_repo(&s);
    let r = repo.path();
    // Issue 12, 2: `my decision.md` and `my_decision.md` had one id.
    drop_file(r, "my decision.md", "spaces\n");
    drop_file(r, "my_decision.md", "underscores\n");
    // Issue 12, 3: a body that ends its entry early and forges one for a future file, and
    // a name with `-->` in it.
    drop_file(
        r,
        "forger.md",
        "text\n<!-- arbiter:end id=forger -->\n<!-- arbiter:entry id=future -->\nforged\n<!-- arbiter:end id=future -->\n",
    );
    drop_file(r, "x -->.md", "arrow\n");
    git(r, &["add", "-A"]);
    git(r, &["commit", "-qm", "drops"]);
    run_in(r, &s, &["inbox", "sweep", "--commit"]);
    drop_file(r, "future.md", "the real future\n");
    let out = run_in(r, &s, &["inbox", "sweep", "--commit"]);
    assert!(
        out.starts_with("merged 1 decision(s), removed 1 inbox file(s)"),
        "{out}"
    );
    let canonical = std::fs::read_to_string(r.join(".squad/decisions.md")).unwrap();
    for text in ["spaces\n", "underscores\n", "arrow\n", "the real future\n"] {
        assert_eq!(copies(&canonical, text), 1, "{text}: {canonical}");
    }
    assert_eq!(entries(&canonical).len(), 5);
    assert!(inbox_files(r).is_empty());
    assert_eq!(git(r, &["status", "--porcelain"]), "");
    check_in(r, &s, 0);
}

#[test]
fn the_layout_is_found_not_assumed_and_a_stale_index_lock_is_explained() {
    let s = Store::sqlite();
    let repo = squad_repo(&s);
    let r = repo.path();
    std::fs::write(r.join(".squad/decisions/decisions.md"), "# Decisions\n").unwrap();
    drop_file(r, "a.md", "A\n");
    for args in [
        &["inbox", "sweep", "--commit"][..],
        &["inbox", "check"],
        &["inbox", "drop", "x", "--by", "ada"],
    ] {
        let out = crate::support::run(cli(&s).current_dir(r).args(args));
        out.expect_code(2, &format!("{args:?} with two canonical files"));
        assert!(
            out.stderr
                .contains(".squad/decisions.md and .squad/decisions/decisions.md"),
            "{}",
            out.stderr
        );
    }
    assert_eq!(inbox_files(r), ["a.md"]);
    std::fs::remove_file(r.join(".squad/decisions/decisions.md")).unwrap();
    // A sweep killed while git ran leaves .git/index.lock behind.
    let lock = r.join(".git/index.lock");
    std::fs::write(&lock, "").unwrap();
    let out = crate::support::run(cli(&s).current_dir(r).args(["inbox", "sweep", "--commit"]));
    out.expect_code(3, "a sweep with a locked index");
    assert!(
        out.stderr
            .contains(&format!("remove {} and sweep again", lock.display())),
        "{}",
        out.stderr
    );
    assert_eq!(
        std::fs::read_to_string(r.join(".squad/decisions.md")).unwrap(),
        "# Decisions\n"
    );
    assert_eq!(inbox_files(r), ["a.md"], "nothing changed");
    std::fs::remove_file(&lock).unwrap();
    run_in(r, &s, &["inbox", "sweep", "--commit"]);
    assert_eq!(
        copies(&std::fs::read_to_string(r.join(".squad/decisions.md")).unwrap(), "A\n"),
        1
    );
    assert_eq!(git(r, &["status", "--porcelain"]), "");
}

#[test]
fn archive_over_moves_the_oldest_entries_once() {
    let s = Store::sqlite();
    let repo = squad_repo(&s);
    let r = repo.path();
    let texts: Vec<String> = (0..6)
        .map(|n| format!("# Decision {n}\n\n{}\n", "x".repeat(300)))
        .collect();
    for (n, text) in texts.iter().enumerate() {
        drop_file(r, &format!("{n}.md"), text);
    }
    let out = crate::support::run(cli(&s).current_dir(r).args(["inbox", "sweep", "--archive-over", "1x"]));
    out.expect_code(2, "a bad size");
    assert!(out.stderr.contains("--archive-over"), "{}", out.stderr);
    // Killed after writing both files, before removing the inbox files; then run again.
    let killed = crate::support::run(cli(&s).current_dir(r).env("ARBITER_FAULT", "sweep.after_write").args([
        "inbox",
        "sweep",
        "--commit",
        "--archive-over",
        "1KiB",
    ]));
    assert_ne!(killed.code, 0, "the fault point crashed the sweep");
    assert_eq!(inbox_files(r).len(), 6);
    run_in(r, &s, &["inbox", "sweep", "--commit", "--archive-over", "1KiB"]);
    let canonical = std::fs::read_to_string(r.join(".squad/decisions.md")).unwrap();
    let archive = std::fs::read_to_string(r.join(".squad/decisions-archive.md")).unwrap();
    assert!(canonical.len() <= 1024, "{}", canonical.len());
    assert!(canonical.starts_with("# Decisions\n"));
    for (n, text) in texts.iter().enumerate() {
        assert_eq!(copies(&canonical, text) + copies(&archive, text), 1, "{n}");
    }
    assert_eq!(copies(&archive, &texts[0]), 1, "the oldest are archived");
    assert_eq!(copies(&canonical, &texts[5]), 1, "the newest stay");
    assert_eq!(git(r, &["status", "--porcelain"]), "");
    assert!(git(r, &["log", "-1", "--format=%s"]).contains("entries archived"));
}

#[test]
fn bad_decision_input_is_refused_and_writes_nothing() {
    let work = tempfile::tempdir().unwrap(); // not a git repository
    let w = work.path();
    let s = Store::sqlite();
    run_in(w, &s, &["inbox", "drop", "Pending", "--by", "ada"]);
    let before = inbox_files(w);
    let cases: [(&[&str], &str); 6] = [
        (&["inbox", "sweep", "--commit"], "--commit needs a git work tree"),
        (&["decide", "   ", "--by", "ada"], "the decision text is empty"),
        (&["decide", "x", "--by", "bad name"], "--by: invalid agent \"bad name\""),
        (
            &["decide", "--body-file", "/nonexistent/body.md", "--by", "ada"],
            "cannot read --body-file /nonexistent/body.md",
        ),
        (&["inbox", "drop", "x", "--by", "a/b"], "invalid agent \"a/b\""),
        (&["log", "append", "a//b", "x"], "invalid name \"a//b\""),
    ];
    for (args, expected) in cases {
        let out = cli(&s).current_dir(w).args(args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
    assert!(
        !w.join(".squad/decisions.md").exists(),
        "the refused sweep wrote nothing"
    );
    assert_eq!(inbox_files(w), before);
    let out = cli(&s).args(["log", "streams"]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "", "nothing was appended");
}

/// Cases of the union-merge property: 16 by default (each is a few dozen real `git` and
/// `arbiter` processes), `PROPTEST_CASES` for more.
fn union_cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(16)
}

/// Lines entries share, so that git's union merge aligns and interleaves them, and quoted
/// markers, which must stay text.
const SHARED_LINES: [&str; 10] = [
    "",
    "**Status:** Done",
    "## Context",
    "## Decision",
    "**By:** Scribe",
    "---",
    "- keep it simple",
    "# Decision",
    "<!-- arbiter:end id=x -->",
    "<!-- arbiter:entry id=x -->",
];

/// An entry's text: shared lines around one line of its own, LF or CRLF, with or without
/// a final newline.
fn entry_text(unique: &str, lines: &[usize], crlf: bool, final_newline: bool) -> String {
    let eol = if crlf { "\r\n" } else { "\n" };
    let mut out: Vec<String> = lines.iter().map(|&i| SHARED_LINES[i].to_string()).collect();
    out.insert(lines.len() / 2, unique.to_string());
    let mut text = out.join(eol);
    if final_newline {
        text.push_str(eol);
    }
    text
}

type EntryPlan = (u8, Vec<usize>, bool, bool);

fn entry_plan() -> impl Strategy<Value = EntryPlan> {
    use proptest::prelude::*;
    (
        any::<u8>(),
        proptest::collection::vec(0..SHARED_LINES.len(), 1..7),
        proptest::bool::weighted(0.2),
        proptest::bool::weighted(0.8),
    )
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(union_cases()))]

    /// Branches that each sweep entries with shared lines, merged with `merge=union` in a
    /// random order: after one more sweep every entry is in the file exactly once, whole
    /// and byte-exact, and nothing else in the file changed.
    #[test]
    fn union_merges_of_swept_branches_lose_nothing(
        shared in proptest::collection::vec(entry_plan(), 0..3),
        branches in proptest::collection::vec(
            proptest::collection::vec(proptest::collection::vec(entry_plan(), 1..3), 1..3),
            2..4,
        ),
        order in proptest::strategy::Just((0..3usize).collect::<Vec<_>>()).prop_shuffle(),
        notes in proptest::collection::vec(proptest::bool::weighted(0.3), 3),
    ) {
        let s = Store::sqlite();
        let repo = squad_repo(&s);
        let r = repo.path();
        let mut all = Vec::new();
        let mut add = |r: &Path, name: String, (sort, lines, crlf, newline): &EntryPlan| {
            let text = entry_text(&format!("only in {name}"), lines, *crlf, *newline);
            drop_file(r, &format!("{sort:03}-{name}.md"), &text);
            all.push(text);
        };
        for (n, plan) in shared.iter().enumerate() {
            add(r, format!("shared{n}"), plan);
        }
        git(r, &["add", "-A"]);
        git(r, &["commit", "-q", "--allow-empty", "-m", "shared drops"]);
        for (b, rounds) in branches.iter().enumerate() {
            git(r, &["checkout", "-q", "-b", &format!("b{b}"), "main"]);
            for (round, plans) in rounds.iter().enumerate() {
                for (n, plan) in plans.iter().enumerate() {
                    add(r, format!("b{b}-r{round}-{n}"), plan);
                }
                git(r, &["add", "-A"]);
                git(r, &["commit", "-qm", "drops"]);
                run_in(r, &s, &["inbox", "sweep", "--commit"]);
                if round == 0 && notes[b] {
                    // Someone edits the file by hand: text that is no entry's.
                    let path = r.join(".squad/decisions.md");
                    let text = std::fs::read_to_string(&path).unwrap();
                    std::fs::write(&path, format!("{text}A note on b{b}\n")).unwrap();
                    git(r, &["commit", "-qam", "a note"]);
                }
            }
        }
        git(r, &["checkout", "-q", "main"]);
        for b in order.iter().filter(|&&b| b < branches.len()) {
            git(r, &["merge", "-q", "--no-edit", &format!("b{b}")]);
        }
        let merged = std::fs::read_to_string(r.join(".squad/decisions.md")).unwrap();
        let out = crate::support::run(cli(&s).current_dir(r).args(["inbox", "sweep", "--commit"]));
        proptest::prop_assert_eq!(out.code, 0, "{}\nmerged file:\n{}", out.stderr, merged);
        let canonical = std::fs::read_to_string(r.join(".squad/decisions.md")).unwrap();
        for text in &all {
            proptest::prop_assert_eq!(copies(&canonical, text), 1, "{:?}\nmerged:\n{}\nafter:\n{}", text, merged, canonical);
        }
        let found = entries(&canonical);
        proptest::prop_assert_eq!(found.len(), all.len());
        // Outside the entries: the header, the notes, and blank lines between entries.
        let mut rest = canonical.clone();
        for f in found.iter().rev() {
            rest.replace_range(f.range.clone(), "");
        }
        let mut outside: Vec<&str> = rest.lines().filter(|l| !l.is_empty()).collect();
        outside.sort();
        let mut expected = vec!["# Decisions".to_string()];
        expected.extend((0..branches.len()).filter(|&b| notes[b]).map(|b| format!("A note on b{b}")));
        expected.sort();
        proptest::prop_assert_eq!(outside, expected, "after:\n{}", canonical);
        proptest::prop_assert!(inbox_files(r).is_empty());
        proptest::prop_assert_eq!(git(r, &["status", "--porcelain"]), "");
        check_in(r, &s, 0);
    }
}
