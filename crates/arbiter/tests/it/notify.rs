//! Notifications through real `arbiter` processes and a real HTTP receiver on loopback:
//! `notify` and `notify resolve` (storm folding), `dispatch` (an outage with the
//! dispatcher `kill -9`-ed in the middle and a new one taking over), dead letters with
//! `notifications list|retry`, `channels list|test`, and configuration errors.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use arbiter_testkit::receiver::{Answer, Behaviour, Receiver, Request};
use nix::sys::signal::Signal;
use serde_json::Value;

use crate::support::{Background, Out, SOON, Store, run};
use arbiter_testkit::{each_backend, eventually};

each_backend!(
    Store;
    a_storm_of_37_then_resolve_is_5_messages,
    an_outage_with_a_kill_9_of_the_dispatcher_loses_nothing,
    dead_notifications_are_listed_and_retried,
    config_errors_name_file_and_line_and_write_nothing,
);

/// Writes `text` as `arbiter.toml` in the test's scratch directory.
fn write_config(store: &Store, text: &str) -> PathBuf {
    let path = store.scratch.path().join("arbiter.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// `arbiter --config CONFIG ARGS` on the store.
fn cmd(store: &Store, config: &Path, args: &[&str]) -> Command {
    let mut cmd = store.cmd(args);
    cmd.arg("--config").arg(config);
    cmd
}

fn cli(store: &Store, config: &Path, args: &[&str]) -> Out {
    run(&mut cmd(store, config, args))
}

#[track_caller]
fn cli_ok(store: &Store, config: &Path, args: &[&str]) -> Out {
    let out = cli(store, config, args);
    assert_eq!(out.code, 0, "arbiter {args:?} failed: {out:?}");
    out
}

/// The distinct ids of `taken`, in the order they first arrived.
fn first_arrivals(taken: &[Request]) -> Vec<String> {
    let mut seen = BTreeSet::new();
    taken
        .iter()
        .map(|r| r.id().to_string())
        .filter(|id| seen.insert(id.clone()))
        .collect()
}

/// `notifications list --state STATE --json`.
fn list(store: &Store, config: &Path, state: &str) -> Vec<Value> {
    let out = cli_ok(
        store,
        config,
        &["notifications", "list", "--state", state, "--limit", "1000", "--json"],
    );
    out.json().as_array().expect("a JSON array").clone()
}

/// 37 `arbiter notify` with one dedupe key, `notify resolve`, `dispatch --once`: the
/// receiver gets the 1st, 3rd, 10th and 30th occurrence and one recovery.
fn a_storm_of_37_then_resolve_is_5_messages(store: &Store) {
    let receiver = Receiver::start();
    let config = write_config(
        store,
        &format!(
            "[channels.hook]\ntype = \"webhook\"\nurl = \"{}\"\n\n[[routes]]\nkinds = [\"loop.*\"]\nchannels = [\"hook\"]\n",
            receiver.url("/hook")
        ),
    );
    for i in 1..=37 {
        let body = format!("run {i}");
        let out = cli_ok(
            store,
            &config,
            &[
                "notify",
                "--kind",
                "loop.failure",
                "--severity",
                "critical",
                "--title",
                "web-deploy failed",
                "--body",
                &body,
                "--dedupe",
                "web-deploy/tests",
                "--source",
                "watch/web",
            ],
        );
        let expected = if [1, 3, 10, 30].contains(&i) {
            format!("queued for 1 channel(s) (occurrence {i})")
        } else {
            format!("counted (occurrence {i}; folded, not sent)")
        };
        assert_eq!(out.stdout.trim(), expected);
    }
    let out = cli_ok(
        store,
        &config,
        &[
            "notify",
            "resolve",
            "--dedupe",
            "web-deploy/tests",
            "--body",
            "green again",
        ],
    );
    assert_eq!(
        out.stdout.trim(),
        "resolved \"web-deploy/tests\" after 37 occurrence(s)"
    );
    assert_eq!(receiver.count(), 0, "nothing is sent before a dispatcher runs");

    let out = cli_ok(store, &config, &["dispatch", "--once"]);
    assert_eq!(out.stdout.trim(), "delivered 5, failed attempts 0, dead 0");
    assert_eq!(receiver.count(), 5, "dispatch --once returns after delivering");
    let out = cli_ok(store, &config, &["dispatch", "--once", "--json"]);
    assert_eq!(out.json()["delivered"], 0, "nothing more is due");
    assert_eq!(receiver.count(), 5);

    let bodies: Vec<Value> = receiver.taken("/hook").iter().map(Request::json).collect();
    let seen: Vec<(&str, u64, &str)> = bodies
        .iter()
        .map(|b| {
            (
                b["type"].as_str().unwrap(),
                b["fold"]["count"].as_u64().unwrap(),
                b["notification"]["body"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("alert", 1, "run 1"),
            ("alert", 3, "run 3"),
            ("alert", 10, "run 10"),
            ("alert", 30, "run 30"),
            ("recovery", 37, "green again")
        ]
    );
    assert!(bodies.iter().all(|b| b["notification"]["source"] == "watch/web"));
    assert_eq!(first_arrivals(&receiver.taken("/hook")).len(), 5, "5 distinct ids");
    let delivered = list(store, &config, "delivered");
    assert_eq!(delivered.len(), 5);
    assert!(list(store, &config, "pending").is_empty());
}

/// One stage of the outage, in the order the issue names them.
#[derive(Debug, Clone, Copy)]
enum Stage {
    Unavailable,
    TooMany,
    Refused,
    Hanging,
}

const CHANNELS: [&str; 2] = ["a", "b"];
/// Notifications accepted per stage (alternating channels): 48 in all.
const PER_STAGE: usize = 12;

/// `arbiter dispatch` (the daemon) in the background, logging at info level.
fn start_dispatch(store: &Store, config: &Path, label: &str) -> Background {
    let mut cmd = cmd(store, config, &["dispatch"]);
    cmd.env("ARBITER_LOG", "info");
    Background::start(cmd, store.scratch.path(), label)
}

/// `(id, attempts)` of every pending notification.
fn pending_attempts(store: &Store, config: &Path) -> BTreeMap<i64, u64> {
    list(store, config, "pending")
        .iter()
        .map(|e| (e["id"].as_i64().unwrap(), e["attempts"].as_u64().unwrap()))
        .collect()
}

/// Waits until the running dispatcher has met `stage` on every channel since `since` (the
/// receiver's count when the stage began).
fn met(stage: Stage, store: &Store, config: &Path, receiver: &Receiver, since: usize, before: &BTreeMap<i64, u64>) {
    let answer = match stage {
        Stage::Unavailable => Answer::Status(503),
        Stage::TooMany => Answer::Status(429),
        Stage::Hanging => Answer::Hung,
        Stage::Refused => {
            // Nothing arrives; the outbox shows the refused attempts.
            eventually(SOON, "a refused attempt on every channel", || {
                let pending = list(store, config, "pending");
                CHANNELS
                    .iter()
                    .all(|c| {
                        pending.iter().any(|e| {
                            e["channel"] == *c
                                && e["last_error"]
                                    .as_str()
                                    .is_some_and(|err| err.ends_with("connection failed"))
                                && e["attempts"].as_u64().unwrap()
                                    > before.get(&e["id"].as_i64().unwrap()).copied().unwrap_or(0)
                        })
                    })
                    .then_some(())
            });
            return;
        }
    };
    receiver.wait_for(SOON, &format!("{answer:?} on every channel"), |requests| {
        CHANNELS.iter().all(|c| {
            requests[since.min(requests.len())..]
                .iter()
                .any(|r| r.path == format!("/{c}") && r.answer == answer)
        })
    });
}

/// The receiver answers 503, then 429 with Retry-After, then refuses connections, then
/// hangs past the timeout, while notifications are accepted (`arbiter notify`) for two
/// channels and `arbiter dispatch` runs. While a request hangs, the dispatcher is
/// `kill -9`-ed; a new `arbiter dispatch` takes over the lease at once (same host, dead
/// process). After the receiver recovers every notification has arrived, in order per
/// channel; the one the killed dispatcher had in flight arrives again with the same id.
fn an_outage_with_a_kill_9_of_the_dispatcher_loses_nothing(store: &Store) {
    let receiver = Receiver::start();
    let config = write_config(
        store,
        &format!(
            r#"
[notifications]
timeout = "300ms"
backoff = "50ms"
backoff_max = "300ms"

[channels.a]
type = "webhook"
url = "{a}"

[channels.b]
type = "webhook"
url = "{b}"

[[routes]]
kinds = ["outage.a"]
channels = ["a"]

[[routes]]
kinds = ["outage.b"]
channels = ["b"]
"#,
            a = receiver.url("/a"),
            b = receiver.url("/b"),
        ),
    );
    receiver.set(Behaviour::Status(503));
    let mut first = start_dispatch(store, &config, "dispatch-1");
    let mut second = None;
    let mut expected: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    let mut n = 0;
    for stage in [Stage::Unavailable, Stage::TooMany, Stage::Refused, Stage::Hanging] {
        let since = receiver.count();
        let before = pending_attempts(store, &config);
        match stage {
            Stage::Unavailable => receiver.set(Behaviour::Status(503)),
            Stage::TooMany => receiver.set(Behaviour::TooMany { retry_after: 1 }),
            Stage::Refused => receiver.refuse(),
            Stage::Hanging => {
                receiver.set(Behaviour::Hang(Duration::from_millis(600)));
                receiver.listen();
            }
        }
        for _ in 0..PER_STAGE {
            let channel = CHANNELS[n % 2];
            let title = format!("message {n:03}");
            let kind = format!("outage.{channel}");
            let out = cli_ok(
                store,
                &config,
                &[
                    "notify",
                    "--kind",
                    &kind,
                    "--severity",
                    "warning",
                    "--title",
                    &title,
                    "--json",
                ],
            );
            let id = out.json()["deliveries"][0].as_i64().expect("one delivery");
            expected.entry(channel).or_default().push(format!("default-{id}"));
            n += 1;
        }
        if let Stage::Hanging = stage {
            // kill -9 while a request is in flight: the receiver has it, the store does not
            // know.
            receiver.wait_for(SOON, "a hanging request", |r| {
                r[since..].iter().any(|r| r.answer == Answer::Hung)
            });
            first.signal(Signal::SIGKILL);
            assert_eq!(first.wait(SOON), 128 + 9, "the dispatcher died by SIGKILL");
            let new = start_dispatch(store, &config, "dispatch-2");
            let pid = new.pid();
            let holder = eventually(SOON, "the new dispatcher to hold the lease", || {
                let out = store.run(&["lease", "show", "notify/dispatcher", "--json"]);
                let holder = out.json()["holders"].get(0)?.clone();
                (holder["holder"]["pid"].as_u64() == Some(u64::from(pid))).then_some(holder)
            });
            assert_eq!(holder["holder"]["agent"], "dispatcher");
            second = Some(new);
            // The new dispatcher meets the hanging receiver on both channels too.
            let since = receiver.count();
            met(stage, store, &config, &receiver, since, &BTreeMap::new());
        } else {
            met(stage, store, &config, &receiver, since, &before);
        }
    }
    let mut second = second.expect("a second dispatcher");
    assert!(
        second
            .stderr()
            .contains("took over from holders whose processes are gone"),
        "the new dispatcher took the lease from the dead one, not after its TTL: {}",
        second.stderr()
    );
    // A second dispatcher cannot run beside it.
    let out = cli(store, &config, &["dispatch", "--once"]);
    assert_eq!(out.code, 3, "{out:?}");
    assert!(out.stderr.contains("another dispatcher is running"), "{}", out.stderr);

    // Recovery.
    receiver.set(Behaviour::Ok);
    receiver.wait_for(Duration::from_secs(30), "every notification delivered", |requests| {
        CHANNELS.iter().all(|c| {
            let ids: BTreeSet<&str> = requests
                .iter()
                .filter(|r| r.path == format!("/{c}") && r.taken())
                .map(|r| r.id())
                .collect();
            ids.len() >= expected[c].len()
        })
    });
    eventually(SOON, "the outbox to record every delivery", || {
        list(store, &config, "pending").is_empty().then_some(())
    });
    second.signal(Signal::SIGTERM);
    assert_eq!(
        second.wait(SOON),
        0,
        "the dispatcher stops cleanly on SIGTERM: {}",
        second.stderr()
    );
    assert!(second.stdout().starts_with("delivered "), "{}", second.stdout());

    let requests = receiver.requests();
    let mut duplicates = 0;
    for c in CHANNELS {
        let path = format!("/{c}");
        let taken: Vec<Request> = requests
            .iter()
            .filter(|r| r.path == path && r.taken())
            .cloned()
            .collect();
        let firsts = first_arrivals(&taken);
        assert_eq!(
            firsts, expected[c],
            "channel {c}: every message, first arrivals in the order accepted"
        );
        duplicates += taken.len() - firsts.len();
        let mut bodies: BTreeMap<&str, &[u8]> = BTreeMap::new();
        for r in requests.iter().filter(|r| r.path == path) {
            assert_eq!(r.json()["id"], r.id(), "X-Arbiter-Id is the body's id");
            let first = bodies.entry(r.id()).or_insert(&r.body);
            assert_eq!(*first, &r.body[..], "every attempt of {} sends the same bytes", r.id());
        }
    }
    assert!(
        duplicates >= 1,
        "the request in flight at the kill -9 arrived again (at least once)"
    );
    eprintln!(
        "outage through the CLI: {} requests, {duplicates} duplicate(s) deduped by id",
        requests.len()
    );
    assert_eq!(list(store, &config, "delivered").len(), 2 * PER_STAGE * 2);
    assert!(list(store, &config, "dead").is_empty());
}

/// A receiver answering 500 forever: past `max_age` the notification is dead with its last
/// error, in `notifications list --state dead`; `notifications retry ID` queues it again and
/// a dispatcher delivers it once the receiver is back.
fn dead_notifications_are_listed_and_retried(store: &Store) {
    let receiver = Receiver::start();
    receiver.set(Behaviour::Status(500));
    let config = write_config(
        store,
        &format!(
            "[notifications]\nmax_age = \"1s\"\nbackoff = \"50ms\"\nbackoff_max = \"200ms\"\n\n\
             [channels.ops]\ntype = \"webhook\"\nurl = \"{}\"\n\n[[routes]]\nchannels = [\"ops\"]\n",
            receiver.url("/ops")
        ),
    );
    let out = cli_ok(
        store,
        &config,
        &[
            "notify",
            "--kind",
            "loop.failure",
            "--severity",
            "critical",
            "--title",
            "it broke",
            "--json",
        ],
    );
    let id = out.json()["deliveries"][0].as_i64().expect("an outbox id");
    let mut dispatch = start_dispatch(store, &config, "dispatch");
    let dead = eventually(SOON, "the notification to be dead", || {
        list(store, &config, "dead").into_iter().find(|e| e["id"] == id)
    });
    assert_eq!(dead["state"], "dead");
    assert_eq!(dead["channel"], "ops");
    assert_eq!(dead["last_error"], "HTTP 500: receiver says 500", "{dead}");
    assert!(
        dead["attempts"].as_u64().unwrap() >= 2,
        "retried before it died: {dead}"
    );
    dispatch.signal(Signal::SIGTERM);
    assert_eq!(dispatch.wait(SOON), 0, "{}", dispatch.stderr());
    assert!(dispatch.stdout().trim().ends_with("dead 1"), "{}", dispatch.stdout());
    let text = cli_ok(store, &config, &["notifications", "list", "--state", "dead"]).stdout;
    let line = text
        .lines()
        .find(|l| l.starts_with(&format!("{id}\t")))
        .expect("the dead one is listed");
    for part in [
        "\tdead\t",
        "\tops\t",
        "\tloop.failure\t",
        "\tit broke\t",
        "HTTP 500: receiver says 500",
    ] {
        assert!(line.contains(part), "{part:?} in {line:?}");
    }

    let out = cli(store, &config, &["notifications", "retry", "999999"]);
    assert_eq!(out.code, 5, "{out:?}");
    receiver.set(Behaviour::Ok);
    let out = cli_ok(store, &config, &["notifications", "retry", &id.to_string()]);
    assert_eq!(out.stdout.trim(), format!("{id} is pending again"));
    let out = cli(store, &config, &["notifications", "retry", &id.to_string()]);
    assert_eq!(out.code, 3, "{out:?}");
    assert!(out.stderr.contains("still pending"), "{}", out.stderr);
    let out = cli_ok(store, &config, &["dispatch", "--once"]);
    assert_eq!(out.stdout.trim(), "delivered 1, failed attempts 0, dead 0");
    let taken = receiver.taken("/ops");
    assert_eq!(taken.len(), 1);
    assert_eq!(
        taken[0].id(),
        format!("default-{id}"),
        "the same id as the failed attempts"
    );
    assert!(receiver.requests().iter().all(|r| r.id() == taken[0].id()));
    assert!(list(store, &config, "dead").is_empty());
    let out = cli(store, &config, &["notifications", "retry", &id.to_string()]);
    assert_eq!(out.code, 3, "{out:?}");
    assert!(out.stderr.contains("already delivered"), "{}", out.stderr);
}

/// Each invalid configuration: exit 2, the file and line and what was expected, and the
/// store untouched — for `notify`, `dispatch` and `channels`.
fn config_errors_name_file_and_line_and_write_nothing(store: &Store) {
    let ops = "[channels.ops]\ntype = \"webhook\"\nurl = \"http://127.0.0.1:9/hook\"\nname = \"Ops alerts\"\n";
    let cases: Vec<(String, usize, &str)> = vec![
        (
            format!("{ops}\n[[routes]]\nkinds = [\"loop.*\"]\nchannels = [\"opz\"]\n"),
            8,
            "routes[0].channels: unknown channel id \"opz\" (known: ops)",
        ),
        (
            format!("{ops}\n[[routes]]\nchannels = [\"Ops alerts\"]\n"),
            7,
            "routes[0].channels: \"Ops alerts\" is the display name of channel \"ops\", not an id",
        ),
        (
            format!(
                "{ops}\n[channels.ops2]\ntype = \"slack\"\nurl = \"http://127.0.0.1:9/x\"\nname = \"Ops alerts\"\n\n\
                 [[routes]]\nchannels = [\"ops\", \"Ops alerts\"]\n"
            ),
            12,
            "\"Ops alerts\" is ambiguous: it is the display name of channels \"ops\" and \"ops2\"",
        ),
        (
            "[channels.ops]\ntype = \"teams\"\nurl = \"hooks.example.com/x\"\n".to_string(),
            3,
            "channels.ops.url: invalid URL",
        ),
        (
            format!("{ops}\n[channels.ops]\ntype = \"stdout\"\n"),
            6,
            "duplicate key",
        ),
    ];
    for (text, line, expected) in &cases {
        let config = write_config(store, text);
        let at = format!("{}:{line}: ", config.display());
        for args in [
            &[
                "notify",
                "--kind",
                "loop.failure",
                "--severity",
                "critical",
                "--title",
                "x",
            ][..],
            &["dispatch", "--once"][..],
            &["channels", "list"][..],
        ] {
            let out = cli(store, &config, args);
            assert_eq!(out.code, 2, "{args:?} with\n{text}\n{out:?}");
            assert!(out.stderr.contains(&at), "{at:?} in {:?}", out.stderr);
            assert!(out.stderr.contains(expected), "{expected:?} in {:?}", out.stderr);
        }
        // The same through ARBITER_CONFIG, as JSON.
        let mut cmd = store.cmd(&[
            "notify",
            "--kind",
            "news",
            "--severity",
            "info",
            "--title",
            "x",
            "--json",
        ]);
        cmd.env("ARBITER_CONFIG", &config);
        let out = run(&mut cmd);
        assert_eq!(out.code, 2);
        let error = out.json();
        assert_eq!(error["error"], "bad_input", "{error}");
        assert!(error["message"].as_str().unwrap().starts_with(&at), "{error}");
    }
    // A display name where an id is expected, on the command line.
    let config = write_config(store, &format!("{ops}\n[[routes]]\nchannels = [\"ops\"]\n"));
    let out = cli(
        store,
        &config,
        &[
            "notify",
            "--kind",
            "news",
            "--severity",
            "info",
            "--title",
            "x",
            "--channel",
            "Ops alerts",
        ],
    );
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr
            .contains("--channel: \"Ops alerts\" is the display name of channel \"ops\""),
        "{}",
        out.stderr
    );
    // A named config file that does not exist.
    let out = cli(
        store,
        &store.scratch.path().join("missing.toml"),
        &["notify", "--kind", "news", "--severity", "info", "--title", "x"],
    );
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("cannot read config file"), "{}", out.stderr);
    assert!(!store.exists(), "nothing was written to the store");
}

/// `channels list` shows ids, types and targets with the webhook path (its secret) hidden;
/// `channels test ID` sends a test message and reports the receiver's answer — a refusal
/// or an error status is a non-zero exit naming it.
#[test]
fn channels_list_and_test_report_the_receivers_answer() {
    let store = Store::sqlite();
    let receiver = Receiver::start();
    let log = store.scratch.path().join("alerts.jsonl");
    let config = write_config(
        &store,
        &format!(
            r#"
[channels.hook]
type = "webhook"
url = "{hook}"
name = "Ops hook"
secret = "hmac-key"
rate = "2/s"

[channels.chat]
type = "slack"
url = "{chat}"

[channels.log]
type = "file"
path = "{log}"

[[routes]]
channels = ["hook"]
"#,
            hook = receiver.url("/services/T0KEN/SECRET-PATH"),
            chat = receiver.url("/chat/SECRET-PATH"),
            log = log.display(),
        ),
    );
    let out = cli_ok(&store, &config, &["channels", "list"]);
    assert!(
        !out.stdout.contains("SECRET-PATH") && !out.stdout.contains("T0KEN"),
        "{}",
        out.stdout
    );
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert!(
        lines.contains(&format!("hook\twebhook\thttp://127.0.0.1:{}/…\tOps hook", receiver.addr().port()).as_str()),
        "{lines:?}"
    );
    assert!(
        lines.contains(&format!("log\tfile\t{}\t", log.display()).as_str()),
        "{lines:?}"
    );
    let out = cli_ok(&store, &config, &["channels", "list", "--json"]);
    let rows = out.json();
    let hook = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == "hook")
        .expect("hook is listed");
    assert_eq!(hook["type"], "webhook");
    assert_eq!(hook["signed"], true);
    assert_eq!(hook["name"], "Ops hook");
    assert_eq!(hook["rate"], "2/1s");
    assert!(!out.stdout.contains("hmac-key"), "the secret is never printed");

    // A receiver that takes it.
    let out = cli_ok(&store, &config, &["channels", "test", "hook"]);
    assert_eq!(out.stdout.trim(), "delivered to hook (HTTP 200)");
    let got = receiver.taken("/services/T0KEN/SECRET-PATH");
    assert_eq!(got.len(), 1);
    let body = got[0].json();
    assert_eq!(body["type"], "test");
    assert_eq!(body["id"], got[0].id());
    assert!(
        got[0].headers["x-arbiter-signature-256"].starts_with("sha256="),
        "the test message is signed too"
    );
    let out = cli_ok(&store, &config, &["channels", "test", "chat", "--json"]);
    assert_eq!(
        out.json(),
        serde_json::json!({ "channel": "chat", "delivered": true, "status": 200 })
    );
    let slack = receiver.taken("/chat/SECRET-PATH")[0].json();
    assert!(
        slack["text"]
            .as_str()
            .unwrap()
            .starts_with("🧪 TEST: arbiter can reach channel chat"),
        "{slack}"
    );
    let out = cli_ok(&store, &config, &["channels", "test", "log"]);
    assert_eq!(out.stdout.trim(), "delivered to log");
    let line: Value = serde_json::from_str(std::fs::read_to_string(&log).unwrap().trim()).unwrap();
    assert_eq!(line["type"], "test");

    // A receiver that answers an error: the status and its text, never the URL's path.
    receiver.set(Behaviour::Status(503));
    let out = cli(&store, &config, &["channels", "test", "hook"]);
    assert_eq!(out.code, 7, "failed (the channel, not the store): {out:?}");
    assert!(
        out.stderr
            .contains("channel \"hook\" did not take the test message: HTTP 503: receiver says 503"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("SECRET-PATH"), "{}", out.stderr);
    receiver.set(Behaviour::TooMany { retry_after: 1 });
    let out = cli(&store, &config, &["channels", "test", "hook", "--json"]);
    assert_eq!(out.code, 7);
    assert_eq!(out.json()["error"], "failed", "{out:?}");
    assert!(out.json()["message"].as_str().unwrap().contains("HTTP 429"), "{out:?}");
    // Nobody listening.
    receiver.refuse();
    let out = cli(&store, &config, &["channels", "test", "chat"]);
    assert_eq!(out.code, 7, "{out:?}");
    assert!(
        out.stderr.contains(&format!(
            "http://127.0.0.1:{}/… connection failed",
            receiver.addr().port()
        )),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("SECRET-PATH"), "{}", out.stderr);
    // Unknown ids, and display names, are not channels.
    let out = cli(&store, &config, &["channels", "test", "nope"]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr
            .contains("unknown channel id \"nope\" (known: chat, hook, log)"),
        "{}",
        out.stderr
    );
    let out = cli(&store, &config, &["channels", "test", "Ops hook"]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr
            .contains("is the display name of channel \"hook\", not an id"),
        "{}",
        out.stderr
    );
    assert!(!store.exists(), "channels never touch the store");
}

/// A channel URL with a password and a query right after the host: `channels list`,
/// `channels test`, the dispatcher's warnings, `notifications list` and the store file
/// show its host only — userinfo and query hidden, never the secrets.
#[test]
fn secrets_in_a_channel_url_are_never_shown_or_stored() {
    let store = Store::sqlite();
    let receiver = Receiver::start();
    let url = format!("http://bot:PW4567@{}?token=SECRET789", receiver.addr());
    let config = write_config(
        &store,
        &format!(
            "[notifications]\nbackoff = \"50ms\"\n\n[channels.hook]\ntype = \"webhook\"\nurl = \"{url}\"\n\n\
             [[routes]]\nchannels = [\"hook\"]\n"
        ),
    );
    let shown = format!("http://***@{}?…", receiver.addr());
    let secret_free = |what: &str, text: &str| {
        assert!(
            !text.contains("PW4567") && !text.contains("SECRET789") && !text.contains("bot:"),
            "{what} leaks a secret: {text}"
        );
    };
    let out = cli_ok(&store, &config, &["channels", "list"]);
    secret_free("channels list", &out.stdout);
    assert!(
        out.stdout.contains(&format!("hook\twebhook\t{shown}\t")),
        "{}",
        out.stdout
    );
    let out = cli_ok(&store, &config, &["channels", "list", "--json"]);
    secret_free("channels list --json", &out.stdout);

    receiver.refuse();
    let out = cli(&store, &config, &["channels", "test", "hook"]);
    assert_eq!(out.code, 7, "{out:?}");
    secret_free("channels test", &format!("{}{}", out.stdout, out.stderr));
    assert!(
        out.stderr.contains(&format!("{shown} connection failed")),
        "{}",
        out.stderr
    );

    cli_ok(
        &store,
        &config,
        &["notify", "--kind", "news", "--severity", "info", "--title", "hello"],
    );
    let out = cli(&store, &config, &["dispatch", "--once"]);
    assert_eq!(out.code, 0, "{out:?}");
    secret_free("dispatch", &format!("{}{}", out.stdout, out.stderr));
    let out = cli_ok(&store, &config, &["notifications", "list"]);
    secret_free("notifications list", &out.stdout);
    assert!(
        out.stdout.contains(&format!("{shown} connection failed")),
        "{}",
        out.stdout
    );
    let out = cli_ok(&store, &config, &["notifications", "list", "--json"]);
    secret_free("notifications list --json", &out.stdout);

    let db = store.sqlite_path().unwrap().to_path_buf();
    let mut bytes = Vec::new();
    for suffix in ["", "-wal"] {
        let mut name = db.clone().into_os_string();
        name.push(suffix);
        bytes.extend(std::fs::read(&name).unwrap_or_default());
    }
    assert!(!bytes.is_empty(), "the store file was written");
    for secret in ["PW4567", "SECRET789"] {
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "the store file holds {secret}"
        );
    }
    assert!(bytes.windows(4).any(|w| w == b"hook"), "the store keeps the channel id");
}
