//! `arbiter lease …`: waiting in arrival order, pid reuse, and the `--json` shape.

use std::time::{Duration, Instant, SystemTime};

use serde_json::{Value, json};

use crate::support::{AT_ONCE, Background, SOON, Store, alive, token_of};
use arbiter_testkit::{each_backend, eventually};

each_backend!(
    Store;
    waiters_are_served_in_arrival_order,
    pid_reuse_and_dead_holders,
    json_fields,
);

/// The agents (`--holder`) of the waiters of lease `name`, in queue order.
fn waiter_agents(store: &Store, name: &str) -> Vec<String> {
    store.show(name)["waiters"]
        .as_array()
        .expect("waiters")
        .iter()
        .map(|w| w["holder"]["agent"].as_str().expect("an agent").to_string())
        .collect()
}

/// Waiters (`lease acquire --wait`) get the lease when its holder releases it, in the order
/// they arrived.
fn waiters_are_served_in_arrival_order(store: &Store) {
    let first = store.ok(&["lease", "acquire", "fifo", "--ttl", "30s"]);
    let mut token: i64 = first.stdout.trim().parse().expect("acquire prints the token");
    let mut waiters = Vec::new();
    for agent in ["A", "B", "C"] {
        let cmd = store.cmd(&[
            "lease", "acquire", "fifo", "--ttl", "30s", "--wait", "30s", "--holder", agent, "--json",
        ]);
        waiters.push((agent, Background::start(cmd, store.scratch.path(), agent)));
        // The next one starts only once this one is visibly queued: arrival order is known.
        let queued = waiters.len();
        eventually(SOON, &format!("waiter {agent} to be queued"), || {
            (waiter_agents(store, "fifo").len() == queued).then_some(())
        });
    }
    assert_eq!(waiter_agents(store, "fifo"), ["A", "B", "C"], "queued in arrival order");

    for i in 0..waiters.len() {
        let released = Instant::now();
        store.ok(&["lease", "release", "fifo", "--token", &token.to_string()]);
        let (agent, waiter) = &mut waiters[i];
        let code = waiter.wait(SOON);
        assert_eq!(code, 0, "waiter {agent} got the lease: {}", waiter.stderr());
        let took = released.elapsed();
        assert!(
            took < AT_ONCE,
            "{agent} got the lease soon after the release, not after the TTL: {took:?}"
        );
        let lease: Value = serde_json::from_str(waiter.stdout().trim()).expect("the lease as JSON");
        assert_eq!(lease["holder"]["agent"], *agent);
        let next = token_of(&lease);
        assert!(next > token, "{next} > {token}");
        token = next;
        let show = store.show("fifo");
        assert_eq!(
            show["holders"][0]["holder"]["agent"], *agent,
            "{agent} holds it now: {show}"
        );
        let rest: Vec<&str> = waiters[i + 1..].iter().map(|(a, _)| *a).collect();
        assert_eq!(
            waiter_agents(store, "fifo"),
            rest,
            "the later waiters still wait, in order"
        );
        for (later, process) in &mut waiters[i + 1..] {
            assert!(process.running(), "waiter {later} got nothing yet");
        }
    }
}

/// `lease acquire` records its parent process (here a shell) as the holder. While the
/// recorded pid runs with the recorded start time, the holder is alive: the lease is held.
/// The same pid with another start time (a reused pid) is a dead holder: taken over at once.
/// So is a holder whose process is gone.
fn pid_reuse_and_dead_holders(store: &Store) {
    for (name, how) in [("reused", "pid reused"), ("killed", "holder killed")] {
        // `exec` keeps the shell's pid and start time: the holder stays alive as `sleep`.
        let script = format!(r#""$ARBITER" lease acquire {name} --ttl 60s && exec sleep 300"#);
        let mut shell = Background::start(store.sh(&script), store.scratch.path(), name);
        let lease = eventually(SOON, "the shell to hold the lease", || {
            let out = store.run(&["lease", "show", name, "--json"]);
            (out.code == 0).then(|| out.json()["holders"].get(0).cloned()).flatten()
        });
        let old_token = token_of(&lease);
        assert_eq!(
            lease["holder"]["pid"].as_u64(),
            Some(u64::from(shell.pid())),
            "the holder is the shell that ran `lease acquire`: {lease}"
        );
        // Alive, with the right start time: held.
        let out = store.run(&["lease", "acquire", name]);
        out.expect_code(3, "an acquire next to a live holder");
        assert!(out.stderr.contains(&format!("pid {}", shell.pid())), "{out:?}");

        match how {
            "pid reused" => {
                // A reused pid: another start time, and a group that is not the holder's.
                store.rewrite_holder(name, |holder| {
                    let start = holder["start_time"].as_u64().expect("a start time");
                    holder["start_time"] = (start + 1).into();
                    if let Some(fields) = holder.as_object_mut() {
                        fields.remove("pgid");
                    }
                });
                assert!(alive(shell.pid()), "the pid still runs");
            }
            _ => {
                shell.signal(nix::sys::signal::Signal::SIGKILL);
                assert_eq!(shell.wait(SOON), 137);
            }
        }
        let taken = Instant::now();
        let out = store.ok(&["lease", "acquire", name, "--json"]);
        let new_token = token_of(&out.json());
        assert!(new_token > old_token, "{how}: {new_token} > {old_token}");
        assert!(taken.elapsed() < AT_ONCE, "{how}: taken over at once");
    }
}

/// `--json` uses stable field names: a lease has `name`, `token`, `holder`, `expires_at`.
fn json_fields(store: &Store) {
    let before = SystemTime::now();
    let lease = store
        .ok(&[
            "lease", "acquire", "fields", "--ttl", "1m", "--holder", "agent-7", "--json",
        ])
        .json();
    for field in [
        "namespace",
        "name",
        "token",
        "holder",
        "slots",
        "ttl_ms",
        "acquired_at",
        "expires_at",
    ] {
        assert!(lease.get(field).is_some(), "lease field {field:?} in {lease}");
    }
    assert_eq!(lease["name"], "fields");
    assert_eq!(lease["namespace"], "default");
    assert_eq!(lease["slots"], 1);
    assert_eq!(lease["ttl_ms"], 60_000);
    let holder = &lease["holder"];
    assert_eq!(holder["agent"], "agent-7");
    assert_eq!(
        holder["pid"].as_u64(),
        Some(u64::from(std::process::id())),
        "the holder is this test (the parent)"
    );
    for field in ["host", "boot_id", "pid", "start_time", "agent"] {
        assert!(holder.get(field).is_some(), "holder field {field:?} in {holder}");
    }
    let expires =
        humantime::parse_rfc3339(lease["expires_at"].as_str().expect("a timestamp")).expect("expires_at is RFC 3339");
    let lasts = expires.duration_since(before).expect("it expires in the future");
    assert!(
        lasts > Duration::from_secs(55) && lasts < Duration::from_secs(65),
        "{lasts:?}"
    );
    let token = token_of(&lease);

    let renewed = store
        .ok(&[
            "lease",
            "renew",
            "fields",
            "--token",
            &token.to_string(),
            "--ttl",
            "2m",
            "--json",
        ])
        .json();
    assert_eq!(
        (renewed["name"].clone(), renewed["token"].clone()),
        (json!("fields"), json!(token))
    );
    assert_eq!(renewed["ttl_ms"], 120_000);
    assert!(
        renewed["expires_at"].as_str() > lease["expires_at"].as_str(),
        "renewed: {renewed}"
    );

    let list = store.ok(&["lease", "list", "--json"]).json();
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");
    assert_eq!(list[0]["name"], "fields");
    assert_eq!(list[0]["token"], token);
    assert_eq!(list[0]["holder"]["agent"], "agent-7");
    assert!(list[0]["expires_at"].is_string());

    let show = store.show("fields");
    assert_eq!(show["name"], "fields");
    assert_eq!(show["last_token"], token);
    assert_eq!(show["holders"][0]["token"], token);
    assert!(show["waiters"].as_array().is_some_and(Vec::is_empty));

    // Plain output: the token alone on a line, so scripts can `T=$(arbiter lease acquire …)`.
    let plain = store.ok(&["lease", "acquire", "plain"]);
    let plain_token: i64 = plain.stdout.trim().parse().expect("a bare token");
    assert!(plain_token >= 1);
    let released = store
        .ok(&[
            "lease",
            "release",
            "plain",
            "--token",
            &plain_token.to_string(),
            "--json",
        ])
        .json();
    assert_eq!(
        released,
        json!({"name": "plain", "token": plain_token, "released": true})
    );
}
