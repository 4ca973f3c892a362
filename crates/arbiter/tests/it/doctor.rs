//! `arbiter doctor`: one line per check against real parts — a SQLite store, a loopback
//! listener as a channel, a fake `gh` on PATH — sending nothing unless `--send`, and exit 7
//! with the fix named when a check fails.

use std::io::Read;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Command;

use arbiter_testkit::receiver::Receiver;

use crate::support::{Out, Store, run};

struct Setup {
    store: Store,
    config: PathBuf,
    path: String,
}

/// A store (created), a config with a webhook channel at `url`, a file channel and one
/// profile whose token comes from `$WORK_TOKEN`; a fake `gh` on PATH.
fn setup(url: &str, profile_extra: &str) -> Setup {
    let store = Store::sqlite();
    store.ok(&["kv", "put", "k", "v"]);
    let dir = store.scratch.path();
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::write(bin.join("gh"), "#!/bin/sh\nexit 0\n").unwrap();
    std::fs::set_permissions(bin.join("gh"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let config = dir.join("arbiter.toml");
    std::fs::write(
        &config,
        format!(
            "[channels.hook]\ntype = \"webhook\"\nurl = \"{url}\"\n\n[channels.log]\ntype = \"file\"\npath = \"alerts.jsonl\"\n\n\
             [profiles.work]\ngh_config_dir = \"gh/work\"\n{profile_extra}\n"
        ),
    )
    .unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    Setup { store, config, path }
}

fn doctor(setup: &Setup, args: &[&str]) -> Command {
    let mut cmd = setup.store.cmd(&["doctor"]);
    cmd.arg("--config")
        .arg(&setup.config)
        .arg("--log-dir")
        .arg(setup.store.scratch.path().join("logs"))
        .args(args)
        .env("PATH", &setup.path)
        .env("WORK_TOKEN", "tok-doctor");
    cmd
}

/// The check names of `out`, each line `ok|FAIL  NAME: DETAIL`.
fn checks(out: &Out) -> Vec<(String, String)> {
    out.stdout
        .lines()
        .map(|line| {
            let (mark, rest) = line
                .split_once("  ")
                .unwrap_or_else(|| panic!("a check line: {line:?}"));
            let name = rest.trim_start().split(':').next().unwrap().to_string();
            (mark.trim().to_string(), name)
        })
        .collect()
}

#[track_caller]
fn secret_free(out: &Out) {
    let all = format!("{}{}", out.stdout, out.stderr);
    for secret in ["PW4567", "SECRET789", "tok-doctor"] {
        assert!(!all.contains(secret), "{secret} shown: {all}");
    }
}

/// Every check passes on a good setup; the channel's listener is connected to but gets no
/// byte; with `--send`, it gets one test message.
#[test]
fn a_good_setup_passes_every_check_and_nothing_is_sent() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let setup = setup(
        &format!("http://bot:PW4567@{addr}/hook?token=SECRET789"),
        "token_env = \"WORK_TOKEN\"",
    );
    let out = run(&mut doctor(&setup, &[]));
    assert_eq!(out.code, 0, "{out:?}");
    secret_free(&out);
    let got = checks(&out);
    let names: Vec<&str> = got.iter().map(|(_, n)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "store disk",
            "store file modes",
            "store",
            "log directory",
            "config",
            "channel hook",
            "channel log",
            "profile work"
        ],
        "{}",
        out.stdout
    );
    assert!(got.iter().all(|(mark, _)| mark == "ok"), "{}", out.stdout);
    assert!(out.stdout.contains("schema version"), "{}", out.stdout);
    assert!(out.stdout.contains("WAL is safe"), "{}", out.stdout);
    assert!(out.stdout.contains("token from $WORK_TOKEN (set)"), "{}", out.stdout);
    // The doctor connected, then closed without a byte.
    let (mut conn, _) = listener.accept().expect("the doctor connected");
    let mut bytes = Vec::new();
    conn.read_to_end(&mut bytes).unwrap();
    assert!(
        bytes.is_empty(),
        "sent without --send: {}",
        String::from_utf8_lossy(&bytes)
    );

    // --send: one test message, answered 200.
    let receiver = Receiver::start_on(listener);
    let out = run(&mut doctor(&setup, &["--send", "--json"]));
    assert_eq!(out.code, 0, "{out:?}");
    secret_free(&out);
    let requests = receiver.requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    let request = String::from_utf8_lossy(&requests[0].body);
    assert!(request.contains("\"type\":\"test\""), "{request}");
    let rows = out.json();
    let hook = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == "channel hook")
        .unwrap();
    assert_eq!(hook["ok"], true);
    assert_eq!(hook["detail"], "took a test message (HTTP 200)");
}

/// Each problem is its own failed line naming the fix, and the exit code is 7: a store
/// file others can read, a channel nobody listens on, a token file others can read, no
/// `gh` on PATH — and a config that does not load.
#[test]
fn each_problem_fails_its_check_and_names_the_fix() {
    let closed = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let setup = setup(
        &format!("https://{closed}/hook?token=SECRET789"),
        "token_file = \"token\"",
    );
    let dir = setup.store.scratch.path();
    std::fs::write(dir.join("token"), "tok-doctor\n").unwrap();
    std::fs::set_permissions(dir.join("token"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let db = setup.store.sqlite_path().unwrap();
    std::fs::set_permissions(db, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = run(&mut doctor(&setup, &[]));
    assert_eq!(out.code, 7, "{out:?}");
    secret_free(&out);
    let failed: Vec<String> = checks(&out)
        .into_iter()
        .filter(|(mark, _)| mark == "FAIL")
        .map(|(_, name)| name)
        .collect();
    assert_eq!(
        failed,
        ["store file modes", "channel hook", "profile work"],
        "{}",
        out.stdout
    );
    for fragment in [
        format!("is mode 0644, readable by others: run chmod 600 {}", db.display()),
        format!("https://{closed}/…?…: cannot connect"),
        format!("run: chmod 600 {}", dir.join("token").display()),
    ] {
        assert!(out.stdout.contains(&fragment), "{fragment:?} in {}", out.stdout);
    }
    // A PATH without gh (an empty directory: whatever this machine has installed).
    std::fs::create_dir(dir.join("empty")).unwrap();
    let no_gh = run(doctor(&setup, &[]).env("PATH", dir.join("empty")));
    assert_eq!(no_gh.code, 7);
    assert!(
        no_gh.stdout.contains("FAIL  profile work: gh is not on PATH"),
        "{}",
        no_gh.stdout
    );

    std::fs::write(&setup.config, "[channels.x]\ntype = 5\n").unwrap();
    let out = run(&mut doctor(&setup, &[]));
    assert_eq!(out.code, 7);
    assert!(
        out.stdout.contains("FAIL  config: ") && out.stdout.contains("arbiter.toml:2: channels.x.type: invalid type"),
        "{}",
        out.stdout
    );
}
