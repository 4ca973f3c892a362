//! `arbiter queue …`: work items end to end through real `arbiter` processes — the
//! push/claim/done round trip, exit codes (3 nothing to claim, 4 stale token, 2 bad input
//! with nothing written), a waiting claim woken by another process's push, `queue work`
//! (each item run once, failures retried then dead, `retry`, SIGTERM gives items back),
//! `[host] capabilities`, and `status` listing queues and hosts.

use std::collections::BTreeSet;
use std::path::PathBuf;

use nix::sys::signal::Signal;
use serde_json::Value;

use crate::support::{Background, SOON, Store};
use arbiter_testkit::{each_backend, eventually};

each_backend!(
    Store;
    push_claim_done_round_trip,
    nothing_to_claim_exits_3,
    stale_tokens_exit_4_and_change_nothing,
    bad_input_exits_2_and_writes_nothing,
    a_waiting_claim_is_woken_by_a_push,
    work_drain_runs_each_item_once,
    failing_items_retry_then_die_and_retry_revives,
    sigterm_gives_items_back,
    host_capabilities_are_respected,
    status_lists_queues_and_hosts,
);

/// `queue list --json` with these extra arguments.
fn list(store: &Store, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["queue", "list", "--json"];
    all.extend_from_slice(args);
    store.ok(&all).json().as_array().expect("a list").clone()
}

/// `queue show ID --json`.
fn show(store: &Store, id: i64) -> Value {
    store.ok(&["queue", "show", &id.to_string(), "--json"]).json()
}

/// Pushes `body` into `queue` with extra flags; returns the id.
fn push(store: &Store, queue: &str, body: &str, flags: &[&str]) -> i64 {
    let mut args = vec!["queue", "push", queue, body];
    args.extend_from_slice(flags);
    let out = store.ok(&args);
    out.stdout.trim().parse().expect("push prints the id")
}

/// A config file in the test's scratch directory with `[host] capabilities`.
fn host_config(store: &Store, name: &str, caps: &[&str]) -> PathBuf {
    let path = store.scratch.path().join(name);
    let list: Vec<String> = caps.iter().map(|c| format!("{c:?}")).collect();
    std::fs::write(&path, format!("[host]\ncapabilities = [{}]\n", list.join(", "))).expect("config written");
    path
}

/// An empty config file, so a test never reads the config of whoever runs it.
fn no_config(store: &Store) -> String {
    let path = store.scratch.path().join("empty.toml");
    std::fs::write(&path, "").expect("config written");
    path.display().to_string()
}

fn push_claim_done_round_trip(store: &Store) {
    let config = no_config(store);
    let pushed = store
        .ok(&["queue", "push", "jobs", "first body", "--key", "k-1", "--json"])
        .json();
    assert_eq!(pushed["created"], true, "{pushed}");
    assert_eq!(pushed["state"], "ready", "{pushed}");
    let id = pushed["id"].as_i64().expect("an id");
    // The same key again: the first item, not a new one.
    let again = store
        .ok(&["queue", "push", "jobs", "other body", "--key", "k-1", "--json"])
        .json();
    assert_eq!(again["id"].as_i64(), Some(id), "{again}");
    assert_eq!(again["created"], false, "{again}");

    let claim = store
        .ok(&[
            "queue", "claim", "jobs", "--lease", "30s", "--json", "--config", &config,
        ])
        .json();
    assert_eq!(claim["id"].as_i64(), Some(id), "{claim}");
    assert_eq!(claim["body"], "first body", "{claim}");
    assert_eq!(claim["attempt"], 1, "{claim}");
    let token = claim["token"].as_i64().expect("a token");
    assert!(token > 0, "{claim}");
    assert_eq!(list(store, &["--state", "claimed"]).len(), 1);

    store.ok(&[
        "queue",
        "heartbeat",
        &id.to_string(),
        "--token",
        &token.to_string(),
        "--lease",
        "30s",
    ]);
    let done = store
        .ok(&[
            "queue",
            "done",
            &id.to_string(),
            "--token",
            &token.to_string(),
            "--result",
            "ok",
            "--json",
        ])
        .json();
    assert_eq!(done["state"], "done", "{done}");
    assert_eq!(done["result"], "ok", "{done}");
    let info = show(store, id);
    assert_eq!(info["item"]["state"], "done", "{info}");
    let attempts = info["attempts"].as_array().expect("attempts");
    assert_eq!(attempts.len(), 1, "{info}");
    assert_eq!(attempts[0]["outcome"], "done", "{info}");
    assert_eq!(attempts[0]["token"].as_i64(), Some(token), "{info}");
    // The text forms: the id alone, then id, token and attempt over the body.
    let text_id: i64 = store
        .ok(&["queue", "push", "jobs", "second"])
        .stdout
        .trim()
        .parse()
        .expect("an id");
    let text = store.ok(&["queue", "claim", "jobs", "--config", &config]).stdout;
    let mut lines = text.lines();
    let head: Vec<&str> = lines.next().expect("a first line").split('\t').collect();
    assert_eq!(head[0], text_id.to_string(), "{text}");
    assert_eq!(head[2], "1", "{text}");
    assert_eq!(lines.next(), Some("second"), "{text}");
}

fn nothing_to_claim_exits_3(store: &Store) {
    let config = no_config(store);
    let out = store.run(&["queue", "claim", "empty", "--config", &config]);
    out.expect_code(3, "claim on an empty queue");
    assert!(out.stderr.contains("nothing to claim"), "{}", out.stderr);
    let out = store.run(&["queue", "claim", "empty", "--config", &config, "--json"]);
    out.expect_code(3, "claim --json on an empty queue");
    assert_eq!(out.json()["error"], "held", "{}", out.stdout);
    // An item the caller cannot take is not claimable for it either.
    push(store, "empty", "x", &["--requires", "gpu"]);
    store
        .run(&["queue", "claim", "empty", "--config", &config])
        .expect_code(3, "claim of an item requiring gpu without it");
}

fn stale_tokens_exit_4_and_change_nothing(store: &Store) {
    let config = no_config(store);
    let id = push(store, "st", "body", &[]);
    let first = store
        .ok(&[
            "queue", "claim", "st", "--lease", "300ms", "--json", "--config", &config,
        ])
        .json();
    let old = first["token"].as_i64().expect("a token");
    let wrong = (old + 1).to_string();
    let ids = id.to_string();
    for args in [
        vec!["queue", "done", &ids, "--token", &wrong],
        vec!["queue", "heartbeat", &ids, "--token", &wrong],
        vec!["queue", "fail", &ids, "--token", &wrong, "--reason", "no"],
    ] {
        let out = store.run(&args);
        out.expect_code(4, &format!("{args:?} with a token never given"));
        assert!(out.stderr.contains("stale"), "{}", out.stderr);
    }
    // The claim runs out; the next claim takes the item with a larger token.
    let second = eventually(SOON, "the expired claim to be taken again", || {
        let out = store.run(&["queue", "claim", "st", "--lease", "30s", "--json", "--config", &config]);
        (out.code == 0).then(|| out.json())
    });
    let new = second["token"].as_i64().expect("a token");
    assert!(new > old, "{new} > {old}");
    assert_eq!(second["attempt"], 2, "{second}");
    let before = show(store, id);
    let olds = old.to_string();
    for args in [
        vec!["queue", "done", &ids, "--token", &olds],
        vec!["queue", "heartbeat", &ids, "--token", &olds],
        vec!["queue", "fail", &ids, "--token", &olds, "--reason", "late"],
    ] {
        store
            .run(&args)
            .expect_code(4, &format!("{args:?} after the claim moved on"));
    }
    let after = show(store, id);
    assert_eq!(before["item"], after["item"], "a stale token changed nothing");
    assert_eq!(after["item"]["state"], "claimed");
    assert_eq!(after["item"]["last_token"].as_i64(), Some(new));
    store.ok(&["queue", "done", &ids, "--token", &new.to_string()]);
}

fn bad_input_exits_2_and_writes_nothing(store: &Store) {
    let config = no_config(store);
    let big = store.scratch.path().join("big");
    std::fs::write(&big, vec![b'x'; (1 << 20) + 1]).expect("a big body");
    let big = big.display().to_string();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["queue", "push", "q", "x", "--key", ""], "--key"),
        (vec!["queue", "push", "q", "x", "--requires", "GPU"], "--requires"),
        (vec!["queue", "push", "q", "--body-file", &big], "--body-file"),
        (vec!["queue", "push", "q", "x", "--max-attempts", "0"], "--max-attempts"),
        (
            vec!["queue", "push", "q", "x", "--not-before", "tomorrowish"],
            "--not-before",
        ),
        (vec!["queue", "push", "q", "x", "--not-before", "31d"], "--not-before"),
        (vec!["queue", "push", "q", "x", "--priority", "high"], "--priority"),
        (vec!["queue", "push", "bad name!", "x"], "<QUEUE>"),
        (vec!["queue", "claim", "q", "--lease", "10ms"], "--lease"),
        (vec!["queue", "claim", "q", "--capability", "GPU"], "--capability"),
        (
            vec![
                "queue",
                "fail",
                "1",
                "--token",
                "1",
                "--reason",
                "r",
                "--retry-in",
                "31d",
            ],
            "--retry-in",
        ),
        (vec!["queue", "heartbeat", "1", "--token", "0"], "--token"),
        (vec!["queue", "done", "x", "--token", "1"], "<ID>"),
        (vec!["queue", "list", "--state", "pending"], "--state"),
        (
            vec!["queue", "work", "q", "--lease", "3s", "--grace", "2s", "--", "true"],
            "--grace",
        ),
        (vec!["queue", "work", "q", "--wait", "1s", "--", "true"], "--drain"),
    ];
    for (args, flag) in cases {
        let mut args = args.clone();
        args.splice(1..1, ["--config", config.as_str()]);
        let out = store.run(&args);
        out.expect_code(2, &format!("{args:?}"));
        assert!(out.stderr.contains(flag), "{args:?} names {flag}: {}", out.stderr);
    }
    let through = store.run(&["queue", "work", "q", "--server", "http://127.0.0.1:9", "--", "true"]);
    through.expect_code(2, "queue work --server");
    assert!(through.stderr.contains("--server"), "{}", through.stderr);
    assert!(list(store, &[]).is_empty(), "nothing was written");
}

fn a_waiting_claim_is_woken_by_a_push(store: &Store) {
    let config = no_config(store);
    let mut waiter = Background::start(
        store.cmd(&["queue", "claim", "wake", "--wait", "60s", "--json", "--config", &config]),
        store.scratch.path(),
        "waiter",
    );
    assert!(waiter.running(), "the claim waits: {}", waiter.stderr());
    let id = push(store, "wake", "wake up", &[]);
    assert_eq!(waiter.wait(SOON), 0, "the waiter got an item: {}", waiter.stderr());
    let claim: Value = serde_json::from_str(waiter.stdout().trim()).expect("the claim as JSON");
    assert_eq!(claim["id"].as_i64(), Some(id), "{claim}");
    assert_eq!(claim["body"], "wake up", "{claim}");
}

fn work_drain_runs_each_item_once(store: &Store) {
    let config = no_config(store);
    let seen = store.scratch.path().join("seen");
    let mut ids = BTreeSet::new();
    for i in 0..12 {
        ids.insert(push(store, "drain", &format!("body {i}"), &[]));
    }
    let script = format!(
        "read line; echo \"$ARBITER_ITEM_ID $ARBITER_ITEM_TOKEN $ARBITER_ITEM_ATTEMPT $ARBITER_QUEUE $line\" >> {}",
        seen.display()
    );
    let out = store.run(&[
        "queue",
        "work",
        "drain",
        "--parallel",
        "3",
        "--drain",
        "--lease",
        "10s",
        "--config",
        &config,
        "--",
        "sh",
        "-c",
        &script,
    ]);
    out.expect_code(0, "queue work --drain");
    let text = std::fs::read_to_string(&seen).expect("the commands wrote");
    let mut ran = BTreeSet::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.splitn(5, ' ').collect();
        assert_eq!(fields.len(), 5, "{line}");
        assert!(
            ran.insert(fields[0].parse::<i64>().expect("an id")),
            "ran twice: {text}"
        );
        assert_eq!(fields[2], "1", "first attempt: {line}");
        assert_eq!(fields[3], "drain", "{line}");
        assert!(fields[4].starts_with("body "), "the body on stdin: {line}");
    }
    assert_eq!(ran, ids, "every item ran once");
    assert_eq!(list(store, &["drain", "--state", "done"]).len(), 12);
    assert!(out.stderr.contains(": done"), "{}", out.stderr);
}

fn failing_items_retry_then_die_and_retry_revives(store: &Store) {
    let config = no_config(store);
    let id = push(store, "fails", "x", &["--max-attempts", "2"]);
    let work = [
        "queue",
        "work",
        "fails",
        "--drain",
        "--retry-in",
        "0s",
        "--lease",
        "10s",
        "--config",
        &config,
        "--",
        "sh",
        "-c",
        "exit 3",
    ];
    let out = store.run(&work);
    out.expect_code(0, "queue work --drain over a failing command");
    assert!(out.stderr.contains("dead after 2 attempts"), "{}", out.stderr);
    let dead = list(store, &["fails", "--state", "dead"]);
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0]["id"].as_i64(), Some(id));
    assert_eq!(dead[0]["last_error"], "exit 3", "{:?}", dead[0]);
    let info = show(store, id);
    let attempts = info["attempts"].as_array().expect("attempts");
    assert_eq!(attempts.len(), 2, "{info}");
    assert!(attempts.iter().all(|a| a["outcome"] == "failed"), "{info}");
    // The text of list --state dead shows it too.
    let text = store.ok(&["queue", "list", "--state", "dead"]).stdout;
    assert!(text.lines().any(|l| l.starts_with(&format!("{id}\t"))), "{text}");

    assert_eq!(store.ok(&["queue", "retry", &id.to_string()]).stdout.trim(), "ready");
    let revived = show(store, id);
    assert_eq!(revived["item"]["state"], "ready", "{revived}");
    assert_eq!(revived["item"]["attempt"], 0, "{revived}");
    // Retrying an item that is not dead is a conflict.
    store
        .run(&["queue", "retry", &id.to_string()])
        .expect_code(3, "retry of a ready item");
    store
        .run(&["queue", "retry", "999999"])
        .expect_code(5, "retry of an unknown item");
    // Revived, it runs again (and succeeds this time), with a larger token.
    store.ok(&[
        "queue", "work", "fails", "--drain", "--lease", "10s", "--config", &config, "--", "true",
    ]);
    let done = show(store, id);
    assert_eq!(done["item"]["state"], "done", "{done}");
    assert_eq!(done["item"]["last_token"], 3, "{done}");
}

fn sigterm_gives_items_back(store: &Store) {
    let config = no_config(store);
    let id = push(store, "term", "x", &[]);
    let pids = store.scratch.path().join("pid");
    let script = format!("echo $$ > {}; exec sleep 60", pids.display());
    let mut worker = Background::start(
        store.cmd(&[
            "queue", "work", "term", "--lease", "30s", "--config", &config, "--", "sh", "-c", &script,
        ]),
        store.scratch.path(),
        "worker",
    );
    let pid: u32 = eventually(SOON, "the command to start", || {
        std::fs::read_to_string(&pids).ok()?.trim().parse().ok()
    });
    let claimed = show(store, id);
    assert_eq!(claimed["item"]["state"], "claimed", "{claimed}");
    worker.signal(Signal::SIGTERM);
    assert_eq!(worker.wait(SOON), 130, "stopped by SIGTERM: {}", worker.stderr());
    assert!(!crate::support::alive(pid), "the command was stopped");
    let back = show(store, id);
    assert_eq!(back["item"]["state"], "ready", "given back: {back}");
    assert_eq!(back["item"]["attempt"], 1, "the attempt counted: {back}");
    assert!(worker.stderr().contains("given back"), "{}", worker.stderr());
}

fn host_capabilities_are_respected(store: &Store) {
    let gpu = host_config(store, "gpu.toml", &["gpu"]).display().to_string();
    let none = no_config(store);
    let id = push(store, "caps", "needs both", &["--requires", "gpu,windows"]);
    store
        .run(&["queue", "claim", "caps", "--config", &none, "--capability", "windows"])
        .expect_code(3, "windows alone");
    store
        .run(&["queue", "claim", "caps", "--config", &gpu])
        .expect_code(3, "gpu alone (from [host])");
    let claim = store
        .ok(&[
            "queue",
            "claim",
            "caps",
            "--json",
            "--config",
            &gpu,
            "--capability",
            "windows",
        ])
        .json();
    assert_eq!(
        claim["id"].as_i64(),
        Some(id),
        "[host] gpu plus --capability windows: {claim}"
    );
    assert_eq!(claim["requires"], serde_json::json!(["gpu", "windows"]), "{claim}");
    // A bad [host] line is bad input naming the file and line.
    let bad = store.scratch.path().join("bad.toml");
    std::fs::write(&bad, "[host]\ncapabilities = [\"GPU\"]\n").expect("config written");
    let out = store.run(&["queue", "claim", "caps", "--config", &bad.display().to_string()]);
    out.expect_code(2, "a bad [host] capability");
    assert!(out.stderr.contains("bad.toml:2: host.capabilities"), "{}", out.stderr);
}

fn status_lists_queues_and_hosts(store: &Store) {
    let gpu = host_config(store, "gpu.toml", &["gpu"]).display().to_string();
    push(store, "st-a", "one", &[]);
    push(store, "st-a", "two", &[]);
    let id = push(store, "st-b", "dies", &["--max-attempts", "1"]);
    store.ok(&[
        "queue",
        "work",
        "st-b",
        "--drain",
        "--lease",
        "10s",
        "--config",
        &gpu,
        "--capability",
        "repo:web",
        "--",
        "false",
    ]);
    assert_eq!(show(store, id)["item"]["state"], "dead");
    let status = store.ok(&["status", "--json"]).json();
    let queues = status["queues"].as_array().expect("queues");
    let a = queues.iter().find(|q| q["queue"] == "st-a").expect("st-a listed");
    assert_eq!(a["depth"], 2, "{a}");
    assert!(a["oldest_ready_age_ms"].as_i64().is_some(), "{a}");
    let b = queues.iter().find(|q| q["queue"] == "st-b").expect("st-b listed");
    assert_eq!(b["dead"], 1, "{b}");
    let hosts = status["hosts"].as_array().expect("hosts");
    assert_eq!(hosts.len(), 1, "{status}");
    assert_eq!(
        hosts[0]["capabilities"],
        serde_json::json!(["gpu", "repo:web"]),
        "{status}"
    );
    assert!(hosts[0]["last_seen"].is_string(), "{status}");
    let text = store.ok(&["status"]).stdout;
    assert!(text.contains("QUEUE\tDEPTH\tOLDEST"), "{text}");
    assert!(text.lines().any(|l| l.starts_with("st-a\t2\t")), "{text}");
    assert!(text.contains("HOST\tCAPABILITIES\tLAST SEEN"), "{text}");
    assert!(text.contains("\tgpu,repo:web\t"), "{text}");
    // The loops table is still first, as it always was.
    assert!(text.starts_with("LOOP\tSTATE"), "{text}");
}
