//! Bad input gets a precise message (naming the flag or value and what was expected), the
//! documented exit code, and changes nothing: not even the store's file or schema is
//! created. Other failures get their own exit codes: 3 held or conflict, 4 lost, 5 not
//! found, 6 unavailable. Under `--json`, every error is `{"error": CODE, "message": TEXT}`.

use std::time::{Duration, Instant};

use crate::support::{Out, Store, arbiter, run};
use arbiter_testkit::each_backend;

each_backend!(Store; bad_input_is_refused_and_writes_nothing, failures_have_their_exit_codes);

/// Asserts a failure in both output modes: `plain` (message on stderr, nothing on stdout)
/// and `json` (one object with `error` and `message` on stdout); returns the JSON message.
#[track_caller]
fn assert_failure(plain: &Out, json: &Out, code: i32, error: &str, fragments: &[&str]) -> String {
    assert_eq!(plain.code, code, "exit code: {plain:?}");
    assert_eq!(plain.stdout, "", "nothing on stdout: {plain:?}");
    assert_eq!(json.code, code, "exit code with --json: {json:?}");
    let object = json.json();
    let keys: Vec<&String> = object.as_object().expect("an object").keys().collect();
    assert_eq!(keys, ["error", "message"], "exactly `error` and `message`: {object}");
    assert_eq!(object["error"], error, "{object}");
    let message = object["message"].as_str().expect("a message").to_string();
    for fragment in fragments {
        assert!(
            plain.stderr.contains(fragment),
            "{fragment:?} in the message: {}",
            plain.stderr
        );
        assert!(
            message.contains(fragment),
            "{fragment:?} in the JSON message: {message}"
        );
    }
    message
}

fn with_json(args: &[&str]) -> Vec<String> {
    args.iter()
        .map(|a| a.to_string())
        .chain(["--json".to_string()])
        .collect()
}

fn bad_input_is_refused_and_writes_nothing(store: &Store) {
    let long_name = "n".repeat(300);
    let cases: &[(&[&str], &[&str])] = &[
        // Durations.
        (
            &["lease", "acquire", "x", "--ttl", "5x"],
            &["--ttl", "\"5x\"", "unknown unit", "expected a duration like 30s"],
        ),
        (
            &["lease", "acquire", "x", "--ttl", "0s"],
            &["--ttl", "\"0s\"", "greater than zero"],
        ),
        (
            &["lease", "acquire", "x", "--wait", "-1s"],
            &["--wait", "\"-1s\"", "expected a duration like 30s"],
        ),
        (
            &["lock", "x", "--ttl", "1h30", "--", "true"],
            &["--ttl", "\"1h30\"", "expected a duration like 30s"],
        ),
        (
            &["lock", "x", "--grace", "soon", "--", "true"],
            &["--grace", "\"soon\"", "expected a duration"],
        ),
        (
            &["lease", "renew", "x", "--token", "1", "--ttl", "-5m"],
            &["--ttl", "\"-5m\"", "expected a duration"],
        ),
        // Names.
        (
            &["lease", "acquire", "bad name"],
            &["\"bad name\"", "character ' ' is not allowed", "1-255 characters"],
        ),
        (&["kv", "put", "a//b", "v"], &["\"a//b\"", "empty, '.' or '..' segment"]),
        (
            &["lock", &long_name, "--", "true"],
            &["300 characters long", "1-255 characters"],
        ),
        (&["kv", "get", "über"], &["\"über\"", "is not allowed"]),
        (&["-n", "Bad", "lease", "list"], &["--namespace", "\"Bad\"", "a-z, 0-9"]),
        // Tokens, versions, numbers.
        (
            &["lease", "release", "x", "--token", "abc"],
            &["--token", "\"abc\"", "positive integer"],
        ),
        (
            &["lease", "release", "x", "--token", "0"],
            &["--token", "\"0\"", "positive integer"],
        ),
        (
            &["lease", "renew", "x", "--token", "-3"],
            &["--token", "\"-3\"", "positive integer"],
        ),
        (
            &["kv", "put", "k", "v", "--if-version", "seven"],
            &["--if-version", "seven"],
        ),
        (&["kv", "put", "k", "v", "--if-version", "-1"], &["--if-version", "-1"]),
        (&["lease", "acquire", "x", "--slots", "0"], &["--slots", "1..=10000"]),
        (&["kv", "watch", "p/", "--from", "0"], &["--from", "0"]),
        // Shapes of the command line.
        (&["lock", "x"], &["required", "<CMD>"]),
        (&["lease", "grab", "x"], &["grab"]),
        (&["lease", "acquire", "x", "--colour"], &["--colour"]),
    ];
    for (args, fragments) in cases {
        let plain = store.run(args);
        let json = store.run(&with_json(args));
        assert_failure(&plain, &json, 2, "bad_input", fragments);
    }
    assert!(!store.exists(), "bad input created the store");
}

/// Not bad input, each with its own code: lost (4), not found (5), held and conflict (3).
fn failures_have_their_exit_codes(store: &Store) {
    let token = store.ok(&["lease", "acquire", "gone"]).stdout.trim().to_string();
    store.ok(&["lease", "release", "gone", "--token", &token]);
    for verb in ["release", "renew"] {
        let args = ["lease", verb, "gone", "--token", &token];
        let message = assert_failure(
            &store.run(&args),
            &store.run(&with_json(&args)),
            4,
            "lost",
            &["\"gone\""],
        );
        assert!(message.contains(&format!("token {token}")), "{message}");
    }
    // A wrong token for a held lease is lost too, and changes nothing.
    let held = store
        .ok(&["lease", "acquire", "held"])
        .stdout
        .trim()
        .parse::<i64>()
        .expect("a token");
    let wrong = (held + 1).to_string();
    let args = ["lease", "release", "held", "--token", &wrong];
    assert_failure(
        &store.run(&args),
        &store.run(&with_json(&args)),
        4,
        "lost",
        &["\"held\""],
    );
    assert_eq!(store.show("held")["holders"][0]["token"], held, "still held");
    // Held: 3, naming the holder.
    let args = ["lease", "acquire", "held"];
    let pid = std::process::id().to_string();
    assert_failure(
        &store.run(&args),
        &store.run(&with_json(&args)),
        3,
        "held",
        &["\"held\"", &pid],
    );
    // A waiter that runs out of time: 3 as well, saying how long it waited.
    let args = ["lease", "acquire", "held", "--wait", "200ms"];
    assert_failure(
        &store.run(&args),
        &store.run(&with_json(&args)),
        3,
        "held",
        &["waiting 200ms"],
    );
    // Conflict: 3.
    store.ok(&["kv", "put", "k", "v"]);
    let args = ["kv", "put", "k", "w", "--if-version", "0"];
    assert_failure(
        &store.run(&args),
        &store.run(&with_json(&args)),
        3,
        "conflict",
        &["\"k\""],
    );
    // Not found: 5.
    for args in [
        &["kv", "get", "missing"][..],
        &["lease", "show", "never"],
        &["kv", "delete", "missing"],
    ] {
        assert_failure(
            &store.run(args),
            &store.run(&with_json(args)),
            5,
            "not_found",
            &[args[2]],
        );
    }
}

/// Store URLs that are not store URLs: bad input (2), naming `--store` and what a store URL
/// looks like; nothing is created anywhere (they run in an empty directory).
#[test]
fn malformed_store_urls() {
    for url in [
        "mysql://x",
        "sqlite://",
        "",
        "postgres://h:notaport/db",
        "sqlite:///tmp/x.db?mode=ro",
    ] {
        let dir = tempfile::tempdir().expect("a temp dir");
        let go = |json: bool| {
            let mut cmd = arbiter();
            cmd.current_dir(dir.path())
                .args(["--store", url, "kv", "put", "k", "v"]);
            if json {
                cmd.arg("--json");
            }
            run(&mut cmd)
        };
        let message = assert_failure(&go(false), &go(true), 2, "bad_input", &["--store", "invalid store URL"]);
        assert!(message.contains(&format!("{url:?}")), "the URL is named: {message}");
        assert!(message.contains("expected sqlite:///path/to/file.db"), "{message}");
        let left: Vec<_> = std::fs::read_dir(dir.path()).expect("the dir").collect();
        assert!(left.is_empty(), "{url}: nothing written: {left:?}");
    }
    // The same through the environment.
    let out = run(arbiter().env("ARBITER_STORE", "mysql://x").args(["lease", "list"]));
    out.expect_code(2, "an unknown scheme in ARBITER_STORE");
    assert!(out.stderr.contains("unknown scheme \"mysql\""), "{out:?}");
}

/// A PostgreSQL server that does not answer: unavailable (6), promptly, saying so.
#[test]
fn unreachable_postgres_is_unavailable() {
    let url = "postgres://postgres@127.0.0.1:1/test";
    let start = Instant::now();
    let go = |json: bool| {
        let mut cmd = arbiter();
        cmd.args(["--store", url, "lease", "acquire", "x"]);
        if json {
            cmd.arg("--json");
        }
        run(&mut cmd)
    };
    let message = assert_failure(&go(false), &go(true), 6, "unavailable", &["127.0.0.1:1"]);
    assert!(
        message.to_lowercase().contains("connect"),
        "the message says it could not connect: {message}"
    );
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "refused promptly: {:?}",
        start.elapsed()
    );
}

/// `--help` and `--version` are not errors.
#[test]
fn help_is_not_an_error() {
    let out = run(arbiter().args(["lock", "--help"]));
    out.expect_code(0, "lock --help");
    for text in ["ARBITER_LEASE_TOKEN", "--ttl", "--wait", "--slots"] {
        assert!(out.stdout.contains(text), "{text} in the help: {}", out.stdout);
    }
    let out = run(arbiter().arg("--help"));
    out.expect_code(0, "--help");
    assert!(out.stdout.contains("Exit codes"), "{}", out.stdout);
    let out = run(arbiter().arg("--version"));
    out.expect_code(0, "--version");
    assert!(out.stdout.starts_with("arbiter "), "{}", out.stdout);
}

/// Every input read with a limit: `--body-file /dev/zero` (notify, decide, log append),
/// `--body-file -` and `--jsonl` fed from `/dev/zero` read at most one byte past the limit,
/// then exit 2 naming the flag and the limit — with the child's peak memory (from `wait4`)
/// far below what reading the input whole would take — and write nothing.
#[test]
fn unbounded_input_is_refused_with_flat_memory() {
    const PEAK_LIMIT_KIB: u64 = 96 * 1024;
    let store = Store::sqlite();
    let zero = || std::fs::File::open("/dev/zero").expect("/dev/zero");
    let cases: &[(&[&str], bool, &str)] = &[
        (
            &[
                "notify",
                "--kind",
                "news",
                "--severity",
                "info",
                "--title",
                "t",
                "--body-file",
                "/dev/zero",
            ],
            false,
            "--body-file /dev/zero is larger than 65536 bytes, the limit",
        ),
        (
            &["decide", "--by", "agent", "--body-file", "/dev/zero"],
            false,
            "--body-file /dev/zero is larger than 1048576 bytes, the limit",
        ),
        (
            &["log", "append", "s", "--body-file", "/dev/zero"],
            false,
            "--body-file /dev/zero is larger than 1048576 bytes, the limit",
        ),
        (
            &["log", "append", "s", "--body-file", "-"],
            true,
            "--body-file - (standard input) is larger than 1048576 bytes, the limit",
        ),
        (
            &["log", "append", "s", "--jsonl"],
            true,
            "--jsonl: standard input line 1 is longer than 4194304 bytes, the limit",
        ),
    ];
    for (args, stdin, message) in cases {
        let mut cmd = store.cmd(args);
        cmd.stdin(if *stdin {
            zero().into()
        } else {
            std::process::Stdio::null()
        });
        let (out, peak) = crate::support::run_peak_memory(&mut cmd);
        assert_eq!(out.code, 2, "{args:?}: {out:?}");
        assert!(out.stderr.contains(message), "{args:?}: {}", out.stderr);
        assert!(peak < PEAK_LIMIT_KIB, "{args:?} peaked at {peak} KiB");
    }
    let streams = store.ok(&["log", "streams", "--json"]).json();
    assert_eq!(streams, serde_json::json!([]), "nothing was appended");
}

/// Exit codes and messages that used to mislead, each now saying what happened:
/// `--store sqlite:` is a malformed URL (not a file named `sqlite:`), `logs ..` a bad loop
/// name (not "not found"), `decisions render --out DIR` a directory where a file belongs
/// (not an internal error), and SQLite's lock timeout names the lock and what to do.
#[test]
fn misleading_exit_codes_and_messages_tell_the_truth() {
    let store = Store::sqlite();
    let cwd = store.scratch.path();
    for url in ["sqlite:", "sqlite:a.db", "postgres:"] {
        let out = run(arbiter().current_dir(cwd).args(["kv", "get", "k", "--store", url]));
        assert_eq!(out.code, 2, "{url}: {out:?}");
        assert!(out.stderr.contains("--store: invalid store URL"), "{}", out.stderr);
        assert!(out.stderr.contains("a scheme needs \"://\""), "{}", out.stderr);
    }
    assert_eq!(std::fs::read_dir(cwd).unwrap().count(), 0, "no file was created");

    for name in ["..", "a/b", "."] {
        let out = store.run(&["logs", name]);
        assert_eq!(out.code, 2, "{name}: {out:?}");
        assert!(out.stderr.contains("invalid value"), "{}", out.stderr);
    }
    let out = store.run(&["logs", "nothing-here"]);
    assert_eq!(out.code, 5, "a valid name without rounds is not found: {out:?}");

    let out = store.run(&[
        "decisions".as_ref(),
        "render".as_ref(),
        "--out".as_ref(),
        cwd.as_os_str(),
    ]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains("is a directory: expected a file path such as"),
        "{}",
        out.stderr
    );

    // Another process holds SQLite's write lock past the busy timeout.
    store.ok(&["kv", "put", "k", "v"]);
    let db = store.sqlite_path().unwrap();
    let holder = rusqlite::Connection::open(db).unwrap();
    holder.execute_batch("BEGIN IMMEDIATE").unwrap();
    let url = format!("sqlite://{}?busy_timeout=100ms", db.display());
    let out = run(arbiter().args(["kv", "put", "k", "w", "--store", &url]));
    assert_eq!(out.code, 6, "{out:?}");
    assert!(
        out.stderr
            .contains("stayed locked by another process's write for longer than its busy timeout"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("raise ?busy_timeout="), "{}", out.stderr);
    holder.execute_batch("ROLLBACK").unwrap();
}
