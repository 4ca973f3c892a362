//! GitHub issues as a work source for `arbiter watch` (`[loops.X.issues]`), through real
//! processes: two `arbiter watch` supervisors on one store — two "hosts" with different
//! `[host] capabilities`, told apart by a marker in their loops' environment — each running
//! the same loops against the fake GitHub (`arbiter-fake-github`) through their own GitHub
//! proxy. The agents are `sh` scripts that append `<loop> <issue> <host>` to a shared file.
//!
//! What is asserted is read from records (that file, the queue's rows, the outbox, the fake's
//! issues), never from how long anything took; every wait is bounded.
//!
//! - each of 10 labelled issues over 3 loops is worked exactly once, the `needs:gpu` one
//!   only by the host that has `gpu`; every item ends `done`; the prompt carries the issue;
//! - `mark = true` puts the `arbiter:working` label on the issue while its round runs,
//!   comments the claim (host, loop, claim token), and takes the label off after;
//! - an issue nobody can work (it needs a capability no host has) waits ready, and is
//!   cancelled once it is closed;
//! - a failing agent's issue is retried, then dead after `max_attempts`, with one folded
//!   `queue.dead` notification;
//! - `kill -9` of the supervisor working an issue: its claim runs out and the other takes
//!   the issue, with the next claim token (in its mark's comment), and finishes it;
//! - `watch --once`: one listing, what this host may claim worked, then exit 0.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use crate::support::{Background, SOON, Store, run};
use crate::watch::FakeHub;
use arbiter_testkit::{each_backend, eventually};

each_backend!(
    Store;
    issues_are_worked_once_across_two_supervisors,
    a_dead_host_s_issue_goes_to_another_with_a_larger_token,
    once_lists_once_and_works_what_it_may_claim,
);

/// Appends what it worked on, keeps the rendered prompt, and the issue's labels as GitHub
/// has them while the round runs (through the loop's own proxy); fails for loop `flaky`.
const AGENT: &str = r#"
cp "$1" "$OUT/prompt-$ARBITER_LOOP-$ARBITER_ISSUE_NUMBER"
curl -sS -H "Authorization: Bearer $GH_TOKEN" \
  "$ARBITER_GITHUB_API/repos/octo/hello/issues/$ARBITER_ISSUE_NUMBER/labels" \
  > "$OUT/labels-$ARBITER_ISSUE_NUMBER-$ARBITER_ITEM_TOKEN.json"
echo "$ARBITER_LOOP $ARBITER_ISSUE_NUMBER $MARKER" >> "$OUT/records"
if [ "$ARBITER_LOOP" = flaky ]; then exit 1; fi
exit 0
"#;

const PROMPT: &str = "Work on #{{issue.number}} ({{issue.url}}): {{issue.title}}\n\n{{issue.body}}\n";

/// One supervisor's configuration: the same loops, its own capabilities and marker.
/// `edited`: without loop `bugs`, and `docs` with one claimer (a reload's test).
fn config(upstream: &str, dir: &Path, marker: &str, capabilities: &str, edited: bool) -> String {
    let out = dir.join("out");
    let mut text = format!(
        r#"
[github]
upstream = "{upstream}"

[host]
capabilities = [{capabilities}]

[channels.alerts]
type = "file"
path = "{alerts}"

[[routes]]
kinds = ["queue.dead"]
channels = ["alerts"]
"#,
        alerts = dir.join(format!("alerts-{marker}.jsonl")).display(),
    );
    let loops = [
        ("squad", "squad", "parallel = 2\n"),
        (
            "docs",
            "docs",
            if edited {
                "mark = true\n"
            } else {
                "mark = true\nparallel = 2\n"
            },
        ),
        ("bugs", "bugs", "parallel = 2\n"),
        ("flaky", "flaky", "max_attempts = 2\n"),
    ];
    for (name, label, extra) in loops.into_iter().filter(|(name, _, _)| !(edited && *name == "bugs")) {
        text.push_str(&format!(
            r#"
[loops.{name}]
repo = "repo"
every = "1s"
command = ["sh", "../agent.sh", "{{prompt_file}}"]
prompt = "prompt.md"
timeout = "1m"
env = {{ OUT = "{out}", MARKER = "{marker}", GH_TOKEN = "ghp_bot" }}

[loops.{name}.issues]
repo = "octo/hello"
labels = ["{label}"]
{extra}"#,
            out = out.display(),
        ));
    }
    text
}

/// `<loop> <issue> <host>` lines the agents wrote.
fn records(out: &Path) -> Vec<(String, u64, String)> {
    std::fs::read_to_string(out.join("records"))
        .unwrap_or_default()
        .lines()
        .map(|line| {
            let f: Vec<&str> = line.split(' ').collect();
            assert_eq!(f.len(), 3, "a record: {line:?}");
            (
                f[0].to_string(),
                f[1].parse().expect("an issue number"),
                f[2].to_string(),
            )
        })
        .collect()
}

/// The queue's items as `key → state`, read from the store's rows.
fn items(store: &Store, queue: &str) -> BTreeMap<String, String> {
    store
        .sql_texts(&format!(
            "SELECT key || ' ' || state FROM queue_items WHERE queue = 'loop/{queue}' ORDER BY id"
        ))
        .iter()
        .map(|row| {
            let (key, state) = row.rsplit_once(' ').expect("key and state");
            (key.to_string(), state.to_string())
        })
        .collect()
}

fn url(number: u64) -> String {
    format!("https://github.com/octo/hello/issues/{number}")
}

/// Ten labelled issues over three loops (one `needs:gpu`), worked on two supervisors, only
/// A having `gpu`: each exactly once, the gpu one by A, all items done; plus `mark`, a
/// closed issue's item cancelled, and a failing agent's issue dead with one alert.
fn issues_are_worked_once_across_two_supervisors(store: &Store) {
    let hub = FakeHub::start(arbiter_fake_github::Limits::default());
    let fake = hub.fake();
    let dir = std::fs::canonicalize(store.scratch.path()).expect("the scratch dir");
    let out = dir.join("out");
    for d in [&out, &dir.join("repo"), &dir.join("home")] {
        std::fs::create_dir_all(d).expect("a directory");
    }
    std::fs::write(dir.join("agent.sh"), AGENT).expect("the agent");
    std::fs::write(dir.join("prompt.md"), PROMPT).expect("the prompt");
    let open = |title: &str, labels: &[&str]| {
        fake.create_issue("octo", "hello", "bot", title, &format!("The body of {title}."), labels)
            .expect("octo/hello exists")
    };
    let mut work: BTreeMap<u64, &str> = BTreeMap::new();
    for i in 0..4 {
        work.insert(open(&format!("squad {i}"), &["squad"]), "squad");
    }
    let gpu = open("squad on a gpu", &["squad", "needs:GPU"]);
    work.insert(gpu, "squad");
    for i in 0..3 {
        work.insert(open(&format!("docs {i}"), &["docs"]), "docs");
    }
    for i in 0..2 {
        work.insert(open(&format!("bugs {i}"), &["bugs", "p1"]), "bugs");
    }
    assert_eq!(work.len(), 10);
    // Nobody has a tpu: it waits ready until it is closed.
    let tpu = open("squad on a tpu", &["squad", "needs:tpu"]);
    let flaky = open("flaky", &["flaky"]);
    // Labelled for no loop: never pushed.
    let other = open("someone else's", &["docs-later"]);

    let configure = |marker: &str, capabilities: &str, edited: bool| {
        let path = dir.join(format!("arbiter-{marker}.toml"));
        let new = dir.join(format!(".arbiter-{marker}.toml.new"));
        std::fs::write(&new, config(&hub.url(), &dir, marker, capabilities, edited)).expect("the config");
        std::fs::rename(&new, &path).expect("the config is replaced");
        path
    };
    let start = |marker: &str, capabilities: &str| {
        let path = configure(marker, capabilities, false);
        let mut cmd = store.cmd(&["watch"]);
        cmd.arg("--config")
            .arg(&path)
            .arg("--log-dir")
            .arg(dir.join(format!("logs-{marker}")))
            .env("HOME", dir.join("home"))
            .env_remove("XDG_DATA_HOME")
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("ARBITER_CONFIG");
        Background::start(cmd, &dir, &format!("watch-{marker}"))
    };
    let mut a = start("A", r#""gpu", "linux""#);
    let mut b = start("B", r#""linux""#);

    let expected_runs = work.len();
    eventually(Duration::from_secs(90), "every issue to be worked", || {
        assert!(a.running(), "supervisor A exited: {}", a.stderr());
        assert!(b.running(), "supervisor B exited: {}", b.stderr());
        let done = records(&out).iter().filter(|(l, _, _)| l != "flaky").count();
        (done >= expected_runs).then_some(())
    });
    // Every issue's item is done (the round ended and reported it): `queue list --state done`.
    let done_keys = || -> Vec<String> {
        ["squad", "docs", "bugs"]
            .iter()
            .flat_map(|q| {
                let queue = format!("loop/{q}");
                let out = store.ok(&["queue", "list", &queue, "--state", "done", "--json"]).json();
                out.as_array()
                    .expect("a JSON array")
                    .iter()
                    .map(|item| item["key"].as_str().expect("a keyed item").to_string())
                    .collect::<Vec<_>>()
            })
            .collect()
    };
    eventually(SOON, "every item done", || {
        (done_keys().len() == work.len()).then_some(())
    });
    let mut done = done_keys();
    done.sort();
    let mut expected: Vec<String> = work.keys().map(|n| url(*n)).collect();
    expected.sort();
    assert_eq!(done, expected);

    // The failing agent: attempt 1 fails, the retry (after the backoff) fails, dead.
    eventually(Duration::from_secs(90), "the flaky issue to be dead", || {
        (items(store, "flaky").get(&url(flaky)).map(String::as_str) == Some("dead")).then_some(())
    });
    // Its alert: one folded queue.dead notification, whichever supervisor raised it.
    let config_a = dir.join("arbiter-A.toml");
    let dead: Vec<serde_json::Value> = eventually(SOON, "the queue.dead notification", || {
        let mut cmd = store.cmd(&["notifications", "list", "--json", "--limit", "1000"]);
        let out = run(cmd.arg("--config").arg(&config_a));
        out.expect_code(0, "notifications list");
        let rows: Vec<serde_json::Value> = out
            .json()
            .as_array()
            .expect("a JSON array")
            .iter()
            .filter(|row| row.to_string().contains("queue.dead"))
            .cloned()
            .collect();
        (!rows.is_empty()).then_some(rows)
    });
    assert_eq!(dead.len(), 1, "one folded queue.dead notification: {dead:?}");
    assert!(dead[0].to_string().contains("loop/flaky"), "{:?}", dead[0]);

    // The tpu issue waited ready; closed on GitHub, its item is cancelled by a listing.
    assert_eq!(items(store, "squad").get(&url(tpu)).map(String::as_str), Some("ready"));
    assert!(fake.set_open("octo", "hello", tpu, false));
    eventually(SOON, "the closed issue's item to be cancelled", || {
        (items(store, "squad").get(&url(tpu)).map(String::as_str) == Some("cancelled")).then_some(())
    });

    let records = records(&out);
    // Each issue worked exactly once, by its loop.
    let mut seen: BTreeMap<u64, Vec<(String, String)>> = BTreeMap::new();
    for (loop_name, number, host) in &records {
        if loop_name != "flaky" {
            seen.entry(*number).or_default().push((loop_name.clone(), host.clone()));
        }
    }
    assert_eq!(seen.len(), work.len(), "every issue worked: {records:?}");
    for (number, runs) in &seen {
        assert_eq!(runs.len(), 1, "issue {number} worked once: {runs:?}");
        assert_eq!(runs[0].0, work[number], "issue {number} by its loop");
    }
    // The gpu issue only where there is a gpu.
    assert_eq!(seen[&gpu][0].1, "A", "the needs:gpu issue ran on A");
    // The failing one ran twice (max_attempts = 2), never the tpu one nor the unlabelled one.
    assert_eq!(
        records.iter().filter(|(l, _, _)| l == "flaky").count(),
        2,
        "{records:?}"
    );
    assert!(!records.iter().any(|(_, n, _)| *n == tpu || *n == other), "{records:?}");
    assert!(!items(store, "docs").contains_key(&url(other)));

    // The prompt carries the issue.
    let first_docs = *work.iter().find(|(_, l)| **l == "docs").expect("a docs issue").0;
    let prompt = std::fs::read_to_string(out.join(format!("prompt-docs-{first_docs}"))).expect("the prompt");
    assert_eq!(
        prompt,
        format!(
            "Work on #{first_docs} ({}): docs 0\n\nThe body of docs 0.\n",
            url(first_docs)
        )
    );

    // mark = true (docs): the label while the round ran, a comment naming the claim, the
    // label gone after. Not for the other loops.
    for (number, loop_name) in &work {
        let issue = fake.item("octo", "hello", *number).expect("the issue");
        let comments: Vec<&str> = issue.comments.iter().map(|c| c.body.as_str()).collect();
        assert!(
            !issue.labels.iter().any(|l| l == "arbiter:working"),
            "#{number}: the label is removed after the round: {:?}",
            issue.labels
        );
        if *loop_name == "docs" {
            assert_eq!(comments.len(), 1, "#{number}: {comments:?}");
            let host = arbiter_process::host_name();
            assert_eq!(comments[0], format!("claimed by {host} loop docs (claim token 1)"));
            let labels = std::fs::read_to_string(out.join(format!("labels-{number}-1.json"))).expect("the labels seen");
            assert!(labels.contains("\"arbiter:working\""), "#{number}: {labels}");
        } else {
            assert!(comments.is_empty(), "#{number}: {comments:?}");
            let labels = std::fs::read_to_string(out.join(format!("labels-{number}-1.json"))).expect("the labels seen");
            assert!(!labels.contains("arbiter:working"), "#{number}: {labels}");
        }
    }

    // This host recorded its capabilities (both supervisors run on one machine: one row,
    // as the last one to list wrote it).
    let hosts = store.sql_texts("SELECT host || ' ' || CAST(capabilities AS TEXT) FROM queue_hosts");
    let host = arbiter_process::host_name();
    assert_eq!(hosts.len(), 1, "{hosts:?}");
    assert!(
        hosts[0].starts_with(&format!("{host} ")) && hosts[0].contains("linux"),
        "{hosts:?}"
    );

    // The fleet view shows the issues loops run (their presence lease), not lost.
    let status = store.ok(&["status", "--json"]).json();
    let rows = status["loops"].as_array().expect("status --json has loops");
    for name in ["squad", "docs", "bugs", "flaky"] {
        let row = rows
            .iter()
            .find(|r| r["loop"] == name)
            .unwrap_or_else(|| panic!("{name} in {rows:?}"));
        assert_ne!(row["state"], "lost", "{row}");
    }

    // A reload: `bugs` removed, `docs` changed (its claimers start over); both say so, a
    // new docs issue is worked once and a new bugs issue is not even pushed.
    configure("A", r#""gpu", "linux""#, true);
    configure("B", r#""linux""#, true);
    for watch in [&a, &b] {
        eventually(SOON, "the reload's line", || {
            watch.stderr().contains("loops -bugs ~docs").then_some(())
        });
    }
    let late_docs = open("docs late", &["docs"]);
    let late_bugs = open("bugs late", &["bugs"]);
    eventually(SOON, "the late docs issue to be done", || {
        (items(store, "docs").get(&url(late_docs)).map(String::as_str) == Some("done")).then_some(())
    });
    let late: Vec<_> = self::records(&out)
        .into_iter()
        .filter(|(_, n, _)| *n == late_docs || *n == late_bugs)
        .collect();
    assert_eq!(late.len(), 1, "{late:?}");
    assert_eq!(late[0].0, "docs");
    assert!(!items(store, "bugs").contains_key(&url(late_bugs)));

    // Both stop on SIGTERM.
    for watch in [&mut a, &mut b] {
        watch.signal(nix::sys::signal::Signal::SIGTERM);
        let code = watch.wait(SOON);
        assert_eq!(code, 0, "watch exits 0 on SIGTERM: {}", watch.stderr());
    }
}

/// Starts its round, then works forever on A (until killed), at once on B.
const SLOW_ON_A: &str = r#"
echo "start $ARBITER_ISSUE_NUMBER $MARKER $ARBITER_ITEM_TOKEN" >> "$OUT/starts"
if [ "$MARKER" = A ]; then sleep 600; fi
echo "done $ARBITER_ISSUE_NUMBER $MARKER $ARBITER_ITEM_TOKEN" >> "$OUT/records"
"#;

/// A works the one issue and is killed (`kill -9`) mid-round; B, started then, takes the
/// issue once A's claim ran out (the lease TTL), with claim token 2, and finishes it.
fn a_dead_host_s_issue_goes_to_another_with_a_larger_token(store: &Store) {
    let hub = FakeHub::start(arbiter_fake_github::Limits::default());
    let fake = hub.fake();
    let dir = std::fs::canonicalize(store.scratch.path()).expect("the scratch dir");
    let out = dir.join("out");
    for d in [&out, &dir.join("repo"), &dir.join("home")] {
        std::fs::create_dir_all(d).expect("a directory");
    }
    std::fs::write(dir.join("agent.sh"), SLOW_ON_A).expect("the agent");
    let issue = fake
        .create_issue("octo", "hello", "bot", "the one", "", &["squad"])
        .expect("octo/hello exists");
    let start = |marker: &str| {
        let path = dir.join(format!("arbiter-{marker}.toml"));
        let text = format!(
            r#"
[github]
upstream = "{upstream}"

[loops.squad]
repo = "repo"
every = "1s"
command = ["sh", "../agent.sh"]
timeout = "15m"
grace = "1s"
env = {{ OUT = "{out}", MARKER = "{marker}", GH_TOKEN = "ghp_bot" }}

[loops.squad.issues]
repo = "octo/hello"
labels = ["squad"]
mark = true
"#,
            upstream = hub.url(),
            out = out.display(),
        );
        std::fs::write(&path, text).expect("the config");
        let mut cmd = store.cmd(&["watch", "--lease-ttl", "3s"]);
        cmd.arg("--config")
            .arg(&path)
            .arg("--log-dir")
            .arg(dir.join(format!("logs-{marker}")))
            .env("HOME", dir.join("home"))
            .env_remove("XDG_DATA_HOME")
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("ARBITER_CONFIG");
        Background::start(cmd, &dir, &format!("watch-{marker}"))
    };
    let starts = || std::fs::read_to_string(out.join("starts")).unwrap_or_default();
    let mut a = start("A");
    eventually(SOON, "A to start the issue's round", || {
        assert!(a.running(), "supervisor A exited: {}", a.stderr());
        starts().contains(&format!("start {issue} A 1")).then_some(())
    });
    a.signal(nix::sys::signal::Signal::SIGKILL);
    a.wait(SOON);
    let mut b = start("B");
    eventually(SOON, "B to finish the issue", || {
        assert!(b.running(), "supervisor B exited: {}", b.stderr());
        (items(store, "squad").get(&url(issue)).map(String::as_str) == Some("done")).then_some(())
    });
    assert_eq!(
        starts().lines().collect::<Vec<_>>(),
        [format!("start {issue} A 1"), format!("start {issue} B 2")]
    );
    let records = std::fs::read_to_string(out.join("records")).unwrap_or_default();
    assert_eq!(
        records,
        format!("done {issue} B 2\n"),
        "A never finished: it was killed"
    );
    // The store counted A's attempt as expired, B's as done.
    let attempts = store.sql_texts("SELECT CAST(token AS TEXT) || ' ' || outcome FROM queue_attempts ORDER BY token");
    assert_eq!(attempts, ["1 expired", "2 done"]);
    // Both claims are on the issue, the second with the larger token; no label left.
    let item = fake.item("octo", "hello", issue).expect("the issue");
    let comments: Vec<&str> = item.comments.iter().map(|c| c.body.as_str()).collect();
    let host = arbiter_process::host_name();
    assert_eq!(
        comments,
        [
            format!("claimed by {host} loop squad (claim token 1)"),
            format!("claimed by {host} loop squad (claim token 2)")
        ]
    );
    assert!(!item.labels.iter().any(|l| l == "arbiter:working"), "{:?}", item.labels);
    b.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(b.wait(SOON), 0, "{}", b.stderr());
}

/// `watch --once`: one listing, every issue this host may claim worked, then exit 0; the
/// `needs:gpu` one (no gpu here) is left ready.
fn once_lists_once_and_works_what_it_may_claim(store: &Store) {
    let hub = FakeHub::start(arbiter_fake_github::Limits::default());
    let fake = hub.fake();
    let dir = std::fs::canonicalize(store.scratch.path()).expect("the scratch dir");
    let out = dir.join("out");
    for d in [&out, &dir.join("repo"), &dir.join("home")] {
        std::fs::create_dir_all(d).expect("a directory");
    }
    std::fs::write(dir.join("agent.sh"), AGENT).expect("the agent");
    std::fs::write(dir.join("prompt.md"), PROMPT).expect("the prompt");
    let open = |title: &str, labels: &[&str]| {
        fake.create_issue("octo", "hello", "bot", title, "", labels)
            .expect("octo/hello exists")
    };
    let plain = [
        open("one", &["squad"]),
        open("two", &["squad"]),
        open("three", &["squad"]),
    ];
    let gpu = open("gpu", &["squad", "needs:gpu"]);
    let path = dir.join("arbiter.toml");
    let text = config(&hub.url(), &dir, "A", r#""linux""#, false);
    std::fs::write(&path, text).expect("the config");
    let mut cmd = store.cmd(&["watch", "--once", "--loop", "squad"]);
    cmd.arg("--config")
        .arg(&path)
        .arg("--log-dir")
        .arg(dir.join("logs"))
        .env("HOME", dir.join("home"))
        .env_remove("XDG_DATA_HOME")
        .env_remove("XDG_CONFIG_HOME")
        .env_remove("ARBITER_CONFIG");
    let mut watch = Background::start(cmd, &dir, "watch");
    assert_eq!(watch.wait(SOON), 0, "{}", watch.stderr());
    let mut worked: Vec<u64> = records(&out).into_iter().map(|(_, n, _)| n).collect();
    worked.sort_unstable();
    assert_eq!(worked, plain);
    let items = items(store, "squad");
    for n in plain {
        assert_eq!(items[&url(n)], "done");
    }
    assert_eq!(items[&url(gpu)], "ready");
}
