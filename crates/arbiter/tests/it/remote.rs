//! `--server`: the CLI through a real `arbiter serve` child prints what it prints against
//! the store, byte for byte, and exits with the same code — for success and for each
//! error kind (held, conflict, lost, not found, bad input, limited). The same command list
//! runs directly on one store and through a server on a twin store of the same backend
//! (both fresh, so tokens, versions, offsets and ids agree); times and durations, which
//! differ by when each ran, are masked in both before comparing.
//!
//! Beside it: a token's refusals (unknown: 401, another namespace or a read scope
//! writing: 403) exit 8 with the server's message and never show the secret; a server
//! that is down exits 6 naming its URL; `--server` on a command that works on the store
//! itself exits 2 naming `--server`.
//!
//! `lock` through a server (with a token): CMD's exit code, the lease released after it,
//! a held lease, `--json`, and a lease lost while CMD runs (CMD stopped, exit 4) — each as
//! against the store.

use std::path::{Path, PathBuf};
use std::process::Command;

use arbiter_testkit::{each_backend, eventually};

use crate::support::{Background, Out, SOON, Store, arbiter, run, token_of};

each_backend!(Store;
    remote_output_and_exit_codes_match_the_store,
    remote_token_refusals_exit_8_without_showing_the_secret,
    remote_server_down_and_local_commands_are_refused,
    remote_lock_runs_the_command_as_against_the_store,
    remote_lock_stops_the_command_when_the_lease_is_lost,
    remote_queue_commands_print_as_against_the_store
);

/// An `arbiter serve` child on a store, on a port the OS chose.
struct Serve {
    /// Killed (with its group) when dropped.
    _process: Background,
    url: String,
}

impl Serve {
    /// `arbiter serve --listen 127.0.0.1:0 EXTRA…` on `store`; waits for its address.
    fn start(store: &Store, extra: &[&str]) -> Serve {
        let mut cmd = store.cmd(&["serve", "--listen", "127.0.0.1:0"]);
        cmd.args(extra);
        let mut process = Background::start(cmd, store.scratch.path(), "serve");
        let url = eventually(SOON, "the server's address on its stderr", || {
            assert!(process.running(), "arbiter serve exited: {}", process.stderr());
            let stderr = process.stderr();
            let at = stderr.find("serving on ")?;
            // Only a whole line: stderr is read while the server writes it, and a line
            // cut short ("http://") is not its address.
            let (line, _) = stderr[at + "serving on ".len()..].split_once('\n')?;
            let line = line.trim().to_string();
            Some(line)
        });
        Serve { _process: process, url }
    }

    /// `arbiter ARGS` through this server, with `token` (if any) in ARBITER_TOKEN.
    fn cmd(&self, args: &[&str], token: Option<&str>) -> Command {
        remote(&self.url, args, token)
    }

    fn run(&self, args: &[&str]) -> Out {
        run(&mut self.cmd(args, None))
    }
}

/// `arbiter ARGS` with ARBITER_SERVER=`url` and no store.
fn remote(url: &str, args: &[&str], token: Option<&str>) -> Command {
    let mut cmd = arbiter();
    cmd.env("ARBITER_SERVER", url).env_remove("ARBITER_TOKEN").args(args);
    if let Some(token) = token {
        cmd.env("ARBITER_TOKEN", token);
    }
    cmd
}

/// A fresh store of the same backend as `store`.
fn twin(store: &Store, test: &str) -> Store {
    if store.is_postgres() {
        Store::postgres(&format!("{test}_srv")).expect("PostgreSQL runs: the first store is there")
    } else {
        Store::sqlite()
    }
}

/// `text` with what depends on when it ran masked: RFC 3339 times, durations (`59s`,
/// `23h59m59s`), 13-digit epoch milliseconds, and the number after `"wait_ms":`.
fn masked(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        if is_timestamp(&chars[i..]) {
            out.push_str("<time>");
            i += 24;
            continue;
        }
        let starts_word = i == 0 || !chars[i - 1].is_ascii_alphanumeric();
        if chars[i].is_ascii_digit() && starts_word {
            let mut j = i;
            while j < chars.len() && (chars[j].is_ascii_digit() || "mshd".contains(chars[j])) {
                j += 1;
            }
            let ends_word = j == chars.len() || !chars[j].is_ascii_alphanumeric();
            let token: String = chars[i..j].iter().collect();
            let digits = token.chars().all(|c| c.is_ascii_digit());
            if ends_word && !digits && token.ends_with(['m', 's', 'h', 'd']) {
                out.push_str("<duration>");
                i = j;
                continue;
            }
            if ends_word && digits && (token.len() == 13 || out.ends_with("\"wait_ms\":")) {
                out.push_str("<number>");
                i = j;
                continue;
            }
        }
        out.push(chars[i]);
        i += 1;
    }
    out
}

/// Whether `chars` starts with `YYYY-MM-DDTHH:MM:SS.mmmZ`.
fn is_timestamp(chars: &[char]) -> bool {
    const SHAPE: &str = "dddd-dd-ddTdd:dd:dd.dddZ";
    chars.len() >= SHAPE.len()
        && SHAPE
            .chars()
            .zip(chars)
            .all(|(shape, c)| if shape == 'd' { c.is_ascii_digit() } else { shape == *c })
}

/// A configuration with one webhook channel (never delivered to: no dispatcher runs) and a
/// route for kind `deploy`.
fn write_config(dir: &Path) -> PathBuf {
    let path = dir.join("arbiter.toml");
    std::fs::write(
        &path,
        "[channels.ops]\ntype = \"webhook\"\nurl = \"http://127.0.0.1:9/hook\"\n\n[[routes]]\nkinds = [\"deploy\"]\nchannels = [\"ops\"]\n",
    )
    .unwrap();
    path
}

/// Every command group on the store's primitives, each ending in success or in one error
/// kind; the comment says which.
const COMMANDS: &[&[&str]] = &[
    // Keys: success, conflict, not found, watch.
    &["kv", "put", "cfg/a", "one"],
    &["kv", "put", "cfg/a", "two", "--if-version", "5"], // conflict
    &["--json", "kv", "put", "cfg/a", "two", "--if-version", "5"], // conflict
    &["kv", "put", "cfg/b", "-5", "--if-version", "0"],
    &["kv", "get", "cfg/a"],
    &["--json", "kv", "get", "cfg/a"],
    &["kv", "get", "cfg/missing"],           // not found
    &["--json", "kv", "get", "cfg/missing"], // not found
    &["kv", "list", "cfg/"],
    &["--json", "kv", "list"],
    &["kv", "delete", "cfg/b", "--if-version", "1"],
    &["--json", "kv", "delete", "cfg/b"], // not found
    &["kv", "watch", "cfg/", "--from", "1", "--limit", "3"],
    &["--json", "kv", "watch", "cfg/", "--from", "2", "--limit", "2"],
    // Leases: success, held, lost.
    &["lease", "acquire", "repo/main", "--ttl", "1m", "--holder", "agent-1"],
    &["lease", "acquire", "repo/main", "--ttl", "1m"],           // held
    &["--json", "lease", "acquire", "repo/main", "--ttl", "1m"], // held
    &["lease", "renew", "repo/main", "--token", "1", "--ttl", "2m"],
    &["--json", "lease", "renew", "repo/main", "--token", "1"],
    &["lease", "renew", "repo/main", "--token", "7"], // lost
    &["lease", "show", "repo/main"],
    &["--json", "lease", "show", "repo/main"],
    &["lease", "list"],
    &["--json", "lease", "list", "repo/"],
    &["--json", "lease", "release", "repo/main", "--token", "1"],
    &["lease", "release", "repo/main", "--token", "1"], // lost
    &["lease", "show", "repo/main"],
    // Limits: success, limited, not found.
    &["limit", "define", "api", "--rate", "1/d", "--burst", "2"],
    &["limit", "take", "api"],
    &["--json", "limit", "take", "api"],
    &["limit", "take", "api"],           // limited
    &["--json", "limit", "take", "api"], // limited
    &["limit", "show", "api"],
    &["--json", "limit", "list"],
    &["limit", "show", "nope"], // not found
    &["limit", "observe", "api", "--remaining", "1", "--limit", "5"],
    &["limit", "counters"],
    // Logs: success, duplicates, bad input from the store (a commit past the end).
    &["log", "append", "events", "hello", "--key", "k1", "--tag", "a=b"],
    &["--json", "log", "append", "events", "again", "--key", "k1"],
    &[
        "log",
        "append",
        "events",
        "{\"n\":1}",
        "--json-body",
        "--by",
        "bot",
        "--kind",
        "metric",
    ],
    &["log", "read", "events"],
    &["--json", "log", "read", "events", "--from", "1"],
    &["log", "consumer", "commit", "events", "c1", "1"],
    &["log", "consumer", "commit", "events", "c1", "99"], // bad input
    &["log", "read", "events", "--consumer", "c1"],
    &["log", "read", "events", "--consumer", "c2", "--limit", "1"],
    &["--json", "log", "consumer", "list", "events"],
    &["log", "streams"],
    &["log", "read", "events", "--follow", "--limit", "2"],
    // Decisions.
    &["decide", "Use SQLite\n\nIt is enough.", "--by", "alice", "--key", "d1"],
    &["--json", "decide", "Use SQLite", "--by", "alice", "--key", "d1"],
    &["decide", "Go", "--by", "bob", "--title", "Ship it", "--tag", "area=ops"],
    &["decisions", "render"],
    // Notifications: success, bad input from routing (no route takes the kind), not found.
    &[
        "notify",
        "--kind",
        "deploy",
        "--severity",
        "info",
        "--title",
        "shipped",
        "--source",
        "ci",
    ],
    &[
        "--json",
        "notify",
        "--kind",
        "deploy",
        "--severity",
        "warning",
        "--title",
        "slow",
        "--dedupe",
        "slow",
        "--source",
        "ci",
    ],
    &[
        "notify",
        "--kind",
        "other",
        "--severity",
        "info",
        "--title",
        "x",
        "--source",
        "ci",
    ], // bad input
    &["notify", "resolve", "--dedupe", "slow"],
    &["notify", "resolve", "--dedupe", "never"], // not found
    &["notifications", "list"],
    &["--json", "notifications", "list", "--state", "pending", "--limit", "5"],
    &["notifications", "retry", "999"], // not found
    &["channels", "list"],
    &["--json", "channels", "list"],
    // The fleet.
    &["status"],
    &["--json", "status"],
];

fn remote_output_and_exit_codes_match_the_store(direct: &Store) {
    let served = twin(direct, "remote_matches");
    let config = write_config(direct.scratch.path());
    let server = Serve::start(&served, &["--insecure-no-auth", "--config", config.to_str().unwrap()]);
    let mut codes = std::collections::BTreeSet::new();
    for args in COMMANDS {
        let mut cmd = direct.cmd(args);
        cmd.arg("--config").arg(&config);
        let local = run(&mut cmd);
        let through = server.run(args);
        assert_eq!(
            (local.code, masked(&local.stdout), masked(&local.stderr)),
            (through.code, masked(&through.stdout), masked(&through.stderr)),
            "arbiter {args:?}: directly (left) and through the server (right) differ\ndirect: {local:?}\nserver: {through:?}"
        );
        codes.insert(local.code);
    }
    // The list covers success and every error kind's code: bad input 2, held/conflict/
    // limited 3, lost 4, not found 5.
    assert_eq!(codes.into_iter().collect::<Vec<_>>(), [0, 2, 3, 4, 5]);

    // Streams are live: a watch and `status --watch` through the server print what
    // happens after they start.
    let watch = Background::start(
        server.cmd(&["kv", "watch", "live/", "--limit", "1"], None),
        direct.scratch.path(),
        "watch",
    );
    let mut status = Background::start(
        server.cmd(&["--json", "status", "--watch"], None),
        direct.scratch.path(),
        "status",
    );
    eventually(SOON, "the fleet from status --watch", || {
        assert!(status.running(), "status --watch exited: {}", status.stderr());
        status
            .stdout()
            .contains("{\"github\":[],\"hosts\":[],\"loops\":[],\"queues\":[]}")
            .then_some(())
    });
    let mut watch = watch;
    eventually(SOON, "the watch to print the put", || {
        // Put until the watch (subscribed at some point after it started) has seen one.
        served.ok(&["kv", "put", "live/x", "1"]);
        (!watch.running()).then_some(())
    });
    assert_eq!(watch.wait(SOON), 0, "{}", watch.stderr());
    assert!(watch.stdout().starts_with("PUT\tlive/x\t"), "{}", watch.stdout());

    // `store info` through a server describes the server's store.
    let info = server.run(&["--json", "store", "info"]);
    let info = info.expect_code(0, "store info").json();
    let expected = served.ok(&["--json", "store", "info"]).json();
    assert_eq!(info, expected);
    drop(server);
}

fn remote_token_refusals_exit_8_without_showing_the_secret(store: &Store) {
    let reader = store
        .ok(&[
            "-n", "team-a", "token", "create", "--name", "reader", "--scope", "kv:read",
        ])
        .stdout
        .trim()
        .to_string();
    let server = Serve::start(store, &[]);
    store.ok(&["-n", "team-a", "kv", "put", "k", "v"]);

    // The token reaches team-a's keys for reading.
    let out = run(&mut server.cmd(&["-n", "team-a", "kv", "get", "k"], Some(&reader)));
    out.expect_code(0, "a read in the token's namespace");
    assert_eq!(out.stdout, "v\n");

    // Refusals: another namespace, a write with a read scope, an unknown token, no token.
    let refusals: [(&[&str], Option<&str>, &str); 4] = [
        (&["-n", "team-b", "kv", "get", "k"], Some(&reader), "forbidden"),
        (&["-n", "team-a", "kv", "put", "k", "w"], Some(&reader), "forbidden"),
        (
            &["-n", "team-a", "kv", "get", "k"],
            Some("arb_not-a-token"),
            "unauthorized",
        ),
        (&["-n", "team-a", "kv", "get", "k"], None, "unauthorized"),
    ];
    for (args, token, code) in refusals {
        let out = run(&mut server.cmd(args, token));
        out.expect_code(8, &format!("{args:?} with {code}"));
        assert!(out.stderr.starts_with("arbiter: ") && out.stdout.is_empty(), "{out:?}");
        assert!(
            !out.stderr.contains(&reader) && !out.stderr.contains("arb_not-a-token"),
            "{out:?}"
        );
        let mut json_args = vec!["--json"];
        json_args.extend_from_slice(args);
        let out = run(&mut server.cmd(&json_args, token));
        out.expect_code(8, &format!("{args:?} --json with {code}"));
        assert_eq!(out.json()["error"], code, "{out:?}");
    }
    assert_eq!(
        store.ok(&["-n", "team-a", "kv", "get", "k"]).stdout,
        "v\n",
        "nothing written"
    );

    // --token-file: the secret on one line, read instead of ARBITER_TOKEN.
    let file = store.scratch.path().join("token");
    std::fs::write(&file, format!("{reader}\n")).unwrap();
    let chmod = |mode| std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(mode)).unwrap();
    chmod(0o644);
    let mut cmd = server.cmd(&["-n", "team-a", "kv", "get", "k"], None);
    cmd.arg("--token-file").arg(&file);
    let out = run(&mut cmd);
    out.expect_code(2, "a token file others can read");
    assert!(
        out.stderr.contains("chmod 600") && !out.stderr.contains(&reader),
        "{out:?}"
    );
    chmod(0o600);
    let mut cmd = server.cmd(&["-n", "team-a", "kv", "get", "k"], Some("arb_not-a-token"));
    cmd.arg("--token-file").arg(&file);
    run(&mut cmd).expect_code(0, "the token file wins over ARBITER_TOKEN");
    std::fs::write(&file, "").unwrap();
    let mut cmd = server.cmd(&["kv", "get", "k"], None);
    cmd.arg("--token-file").arg(&file);
    let out = run(&mut cmd);
    out.expect_code(2, "an empty token file");
    assert!(out.stderr.contains("--token-file"), "{out:?}");
    drop(server);
}

fn remote_server_down_and_local_commands_are_refused(store: &Store) {
    // A port nobody listens on: one the OS just gave and took back.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let out = run(&mut remote(&url, &["kv", "get", "k"], Some("arb_secret-value")));
    out.expect_code(6, "a server that is down");
    assert!(out.stderr.contains(&url), "names the URL: {out:?}");
    assert!(!out.stderr.contains("arb_secret-value"), "never the token: {out:?}");

    let server = Serve::start(store, &["--insecure-no-auth"]);
    let local_only: &[&[&str]] = &[
        &["watch", "--once"],
        &["dispatch", "--once"],
        &["inbox", "check"],
        &["init"],
        &["logs", "some-loop"],
        &["doctor"],
        &["channels", "test", "ops"],
        &["token", "list"],
        &["store", "migrate"],
        &["serve", "--insecure-no-auth"],
        &["proxy", "github"],
    ];
    for args in local_only {
        let out = server.run(args);
        out.expect_code(2, &format!("{args:?} through a server"));
        assert!(out.stderr.contains("--server"), "{args:?}: {out:?}");
    }
    // --store beside --server is two answers to "where".
    let mut cmd = server.cmd(&["kv", "get", "k"], None);
    cmd.arg("--store").arg(&store.url);
    let out = run(&mut cmd);
    out.expect_code(2, "--store and --server");
    assert!(out.stderr.contains("--store and --server"), "{out:?}");
    // --token-file is for a server.
    let out = store.run(&["kv", "get", "k", "--token-file", "/nonexistent"]);
    out.expect_code(2, "--token-file without --server");
    assert!(out.stderr.contains("--token-file"), "{out:?}");
    drop(server);
}

/// A served twin of `direct` behind a server that needs a token, and that token.
fn served_with_token(direct: &Store, test: &str) -> (Store, Serve, String) {
    let served = twin(direct, test);
    let secret = served
        .ok(&["token", "create", "--name", "locker"])
        .stdout
        .trim()
        .to_string();
    let server = Serve::start(&served, &[]);
    (served, server, secret)
}

/// A `--json` lease as `lock` prints it on stderr, with what depends on the process that
/// held it (its pid and start time) and on when it ran left out.
fn lease_line(stderr: &str) -> serde_json::Value {
    let line = stderr.lines().next().unwrap_or_default();
    let mut lease: serde_json::Value =
        serde_json::from_str(line).unwrap_or_else(|e| panic!("a lease on stderr's first line: {e}: {stderr}"));
    for field in ["pid", "start_time"] {
        assert!(lease["holder"][field].as_u64().is_some_and(|n| n > 0), "{lease}");
        lease["holder"][field] = 0.into();
    }
    serde_json::from_str(&masked(&lease.to_string())).unwrap()
}

fn remote_lock_runs_the_command_as_against_the_store(direct: &Store) {
    let (_served, server, secret) = served_with_token(direct, "remote_lock");
    let both = |args: &[&str]| (direct.run(args), run(&mut server.cmd(args, Some(&secret))));
    let same = |args: &[&str], code: i32| {
        let (local, through) = both(args);
        assert_eq!(local.code, code, "arbiter {args:?} directly: {local:?}");
        assert_eq!(
            (local.code, masked(&local.stdout), masked(&local.stderr)),
            (through.code, masked(&through.stdout), masked(&through.stderr)),
            "arbiter {args:?}: directly (left) and through the server (right) differ"
        );
        (local, through)
    };

    // CMD runs with the lease in its environment; arbiter exits with CMD's code.
    let script = "echo \"$ARBITER_NAMESPACE $ARBITER_LEASE_NAME $ARBITER_LEASE_TOKEN\"; exit 7";
    let (local, _) = same(&["lock", "job", "--ttl", "30s", "--", "sh", "-c", script], 7);
    assert_eq!(local.stdout, "default job 1\n");
    // Released when CMD exited: a second acquirer gets it at once (and holds it on).
    same(&["lease", "acquire", "job", "--ttl", "1m", "--holder", "other"], 0);

    // A held lease and no --wait: exit 3, the same message (and JSON error).
    let (local, _) = same(&["lock", "job", "--ttl", "30s", "--", "true"], 3);
    assert!(local.stderr.contains("is held by other"), "{local:?}");
    let (local, _) = same(&["--json", "lock", "job", "--ttl", "30s", "--", "true"], 3);
    assert_eq!(local.json()["error"], "held", "{local:?}");
    same(&["lease", "release", "job", "--token", "2"], 0);

    // --json: the lease on stderr as against the store (the holder is each run's own
    // `arbiter lock` process), CMD's output on stdout.
    let args = ["--json", "lock", "job", "--ttl", "30s", "--", "echo", "hi"];
    let (local, through) = both(&args);
    assert_eq!((local.code, local.stdout.as_str()), (0, "hi\n"), "{local:?}");
    assert_eq!((through.code, through.stdout.as_str()), (0, "hi\n"), "{through:?}");
    assert_eq!(lease_line(&local.stderr), lease_line(&through.stderr));
    assert_eq!(lease_line(&through.stderr)["token"], 3);

    // A wait longer than the stop point of its own TTL: the keep-alive starts from the
    // grant, not from when the wait began (here: `other` holds for 2 s, by its TTL).
    same(&["lease", "acquire", "job", "--ttl", "2s", "--holder", "other"], 0);
    same(&["lock", "job", "--ttl", "1s", "--wait", "20s", "--", "true"], 0);

    // CMD learns where the lease is kept: the server, not a store.
    let script = "echo \"${ARBITER_SERVER:-none} ${ARBITER_STORE:-none}\"";
    let out = run(&mut server.cmd(&["lock", "job", "--", "sh", "-c", script], Some(&secret)));
    assert_eq!((out.code, out.stdout), (0, format!("{} none\n", server.url)));
}

fn remote_lock_stops_the_command_when_the_lease_is_lost(direct: &Store) {
    let (served, server, secret) = served_with_token(direct, "remote_lock_lost");
    let args = ["lock", "lost", "--ttl", "3s", "--", "sleep", "30"];
    let mut ends = Vec::new();
    for through in [false, true] {
        let (store, cmd) = match through {
            false => (direct, direct.cmd(&args)),
            true => (&served, server.cmd(&args, Some(&secret))),
        };
        let mut lock = Background::start(cmd, direct.scratch.path(), "lock");
        // The command's process group is recorded (through a server: with a renew).
        let lease = store.wait_for_lock_holder("lost", &mut lock);
        let pgid = lease["holder"]["pgid"].as_u64().expect("a pgid") as u32;
        lock.also_kill_group(pgid);
        // Revoked behind its back: released with the token `lease show` tells.
        let shown = match through {
            false => direct.show("lost"),
            true => run(&mut server.cmd(&["lease", "show", "lost", "--json"], Some(&secret)))
                .expect_code(0, "lease show")
                .json(),
        };
        let token = token_of(&shown["holders"][0]);
        let release = ["lease", "release", "lost", "--token", &token.to_string()];
        let released = match through {
            false => direct.run(&release),
            true => run(&mut server.cmd(&release, Some(&secret))),
        };
        released.expect_code(0, "the release behind lock's back");
        // The next renew says lost: the command is stopped, arbiter exits 4.
        assert_eq!(lock.wait(SOON), 4, "through a server: {through}; {}", lock.stderr());
        assert!(
            arbiter_process::procfs::group_members(pgid).is_empty(),
            "the command's group is gone"
        );
        let stderr = lock.stderr();
        ends.push(masked(stderr.lines().last().unwrap_or_default()));
    }
    assert!(ends[0].contains("no longer held"), "{ends:?}");
    assert_eq!(ends[0], ends[1], "directly, then through the server");
}

#[test]
fn masking_hides_times_and_durations_only() {
    assert_eq!(
        masked("held (token 1, expires in 59s) at 2026-12-01T10:26:27.290Z; wait 23h59m59s"),
        "held (token 1, expires in <duration>) at <time>; wait <duration>"
    );
    assert_eq!(
        masked("{\"created_at\":1764584787290,\"wait_ms\":2500,\"version\":3} 1/d 20% v2"),
        "{\"created_at\":<number>,\"wait_ms\":<number>,\"version\":3} 1/d 20% v2"
    );
}

/// `queue` commands through the server print what they print against the store (a
/// claim's holder aside: through a server it is the server's record of the caller) and
/// exit with the same codes; `queue work` is local only.
fn remote_queue_commands_print_as_against_the_store(direct: &Store) {
    let (_served, server, secret) = served_with_token(direct, "remote_queue");
    let config = direct.scratch.path().join("empty.toml");
    std::fs::write(&config, "").unwrap();
    let config = config.display().to_string();
    let same = |args: &[&str], code: i32| {
        let mut args = args.to_vec();
        args.splice(0..0, ["--config", config.as_str()]);
        let local = direct.run(&args);
        let through = run(&mut server.cmd(&args, Some(&secret)));
        assert_eq!(local.code, code, "arbiter {args:?} directly: {local:?}");
        assert_eq!(
            (local.code, masked(&local.stdout), masked(&local.stderr)),
            (through.code, masked(&through.stdout), masked(&through.stderr)),
            "arbiter {args:?}: directly (left) and through the server (right) differ"
        );
        (local, through)
    };
    same(&["queue", "push", "jobs", "one", "--key", "k1", "--priority", "2"], 0);
    same(&["--json", "queue", "push", "jobs", "again", "--key", "k1"], 0);
    same(&["queue", "push", "jobs", "two", "--requires", "gpu"], 0);
    let claim = |args: &[&str]| {
        let mut all = vec![
            "--config",
            config.as_str(),
            "--json",
            "queue",
            "claim",
            "jobs",
            "--lease",
            "30s",
        ];
        all.extend_from_slice(args);
        let local = direct.ok(&all).json();
        let through = run(&mut server.cmd(&all, Some(&secret)));
        through.expect_code(0, "queue claim through the server");
        (local, through.json())
    };
    let (local, through) = claim(&[]);
    for field in ["id", "token", "attempt", "body", "key", "requires", "max_attempts"] {
        assert_eq!(local[field], through[field], "{field}: {local} vs {through}");
    }
    // Nothing else this caller may take: exit 3 both ways.
    same(&["queue", "claim", "jobs"], 3);
    // Stale tokens: exit 4, the same message, nothing changed.
    same(&["queue", "done", "1", "--token", "9"], 4);
    same(&["queue", "fail", "1", "--token", "9", "--reason", "late"], 4);
    same(&["queue", "heartbeat", "1", "--token", "9"], 4);
    same(&["queue", "done", "1", "--token", "1", "--result", "fine"], 0);
    same(&["queue", "list"], 0);
    same(&["queue", "list", "jobs", "--state", "done", "--json"], 0);
    same(&["queue", "stats"], 0);
    same(&["queue", "show", "99"], 5);
    same(&["queue", "retry", "1"], 3);
    let work = run(&mut server.cmd(&["queue", "work", "jobs", "--", "true"], Some(&secret)));
    work.expect_code(2, "queue work through a server");
    assert!(work.stderr.contains("queue work"), "{work:?}");
}
