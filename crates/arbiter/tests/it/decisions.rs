//! Decisions: the store-backed render and the git-native drop-box, with real git.

use std::path::{Path, PathBuf};
use std::process::Command;

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
}

#[test]
fn a_sweep_killed_after_writing_and_rerun_loses_and_duplicates_nothing() {
    sweep_killed_at("sweep.after_write");
}

#[test]
fn a_sweep_killed_after_removing_one_file_and_rerun_loses_and_duplicates_nothing() {
    sweep_killed_at("sweep.after_remove");
}

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures/squad")
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
    let fixture = fixture();
    assert!(
        fixture.join(".squad/decisions.md").exists(),
        "the Squad fixture is at {}",
        fixture.display()
    );
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
    assert!(
        canonical.starts_with(&canonical_before),
        "the existing file is kept verbatim"
    );
    let expected = format!(
        "{canonical_before}\n<!-- arbiter:entry id=fenster-cli-wiring -->\n{}\n<!-- arbiter:end id=fenster-cli-wiring -->\n\n\
         <!-- arbiter:entry id=procedures-spawn-name -->\n{}\n<!-- arbiter:end id=procedures-spawn-name -->\n",
        fenster.trim_end_matches('\n'),
        procedures.trim_end_matches('\n')
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
