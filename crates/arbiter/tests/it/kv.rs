//! `arbiter kv …`: versioned keys, compare-and-swap under contention, watches.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{Background, SOON, Store};
use arbiter_testkit::each_backend;
use arbiter_testkit::wait::POLL;

each_backend!(
    Store;
    put_get_list_delete,
    compare_and_swap_under_contention,
    watch_sees_later_puts_by_other_processes,
    watch_from_a_revision_replays_history,
);

fn version(out: &crate::support::Out) -> i64 {
    out.stdout
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("a version: {out:?}"))
}

fn put_get_list_delete(store: &Store) {
    let v1 = version(&store.ok(&["kv", "put", "cfg/a", "one"]));
    assert_eq!(store.ok(&["kv", "get", "cfg/a"]).stdout, "one\n");
    let got = store.ok(&["kv", "get", "cfg/a", "--json"]).json();
    assert_eq!(
        (got["key"].clone(), got["value"].clone(), got["version"].clone()),
        (json!("cfg/a"), json!("one"), json!(v1))
    );

    // Compare-and-swap: the right version wins, a stale one is a conflict (3).
    let put = store
        .ok(&["kv", "put", "cfg/a", "two", "--if-version", &v1.to_string(), "--json"])
        .json();
    assert_eq!(
        (put["key"].clone(), put["value"].clone()),
        (json!("cfg/a"), json!("two"))
    );
    let v2 = put["version"].as_i64().expect("a version");
    assert!(v2 > v1);
    let out = store.run(&["kv", "put", "cfg/a", "three", "--if-version", &v1.to_string()]);
    out.expect_code(3, "a put with a stale version");
    assert!(out.stderr.contains("cfg/a"), "{out:?}");
    assert_eq!(
        store.ok(&["kv", "get", "cfg/a"]).stdout,
        "two\n",
        "a failed CAS changes nothing"
    );
    // --if-version 0: create only.
    let vb = version(&store.ok(&["kv", "put", "cfg/b", "bee", "--if-version", "0"]));
    store
        .run(&["kv", "put", "cfg/b", "again", "--if-version", "0"])
        .expect_code(3, "a create-only put of an existing key");
    store.ok(&["kv", "put", "other", "x"]);
    // A value may start with a hyphen (a negative counter).
    store.ok(&["kv", "put", "neg", "-5"]);
    assert_eq!(store.ok(&["kv", "get", "neg"]).stdout, "-5\n");

    let list = store.ok(&["kv", "list", "cfg/", "--json"]).json();
    let keys: Vec<(&str, &str, i64)> = list
        .as_array()
        .expect("a list")
        .iter()
        .map(|kv| {
            (
                kv["key"].as_str().unwrap(),
                kv["value"].as_str().unwrap(),
                kv["version"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(keys, [("cfg/a", "two", v2), ("cfg/b", "bee", vb)]);
    assert_eq!(
        store.ok(&["kv", "list", "cfg/"]).stdout,
        format!("cfg/a\t{v2}\ttwo\ncfg/b\t{vb}\tbee\n")
    );
    assert_eq!(
        store.ok(&["kv", "list", "--json"]).json().as_array().map(Vec::len),
        Some(4)
    );

    // Delete: with a stale version it is a conflict; then it is gone (5).
    store
        .run(&["kv", "delete", "cfg/a", "--if-version", &v1.to_string()])
        .expect_code(3, "a delete with a stale version");
    let deleted = store
        .ok(&["kv", "delete", "cfg/a", "--if-version", &v2.to_string(), "--json"])
        .json();
    assert_eq!(deleted["key"], "cfg/a");
    assert_eq!(deleted["deleted"], true);
    assert!(
        deleted["version"].as_i64() > Some(vb),
        "a delete takes the next revision: {deleted}"
    );
    store
        .run(&["kv", "get", "cfg/a"])
        .expect_code(5, "a get of a deleted key");
    store
        .run(&["kv", "delete", "cfg/a"])
        .expect_code(5, "a delete of a deleted key");
    let list = store.ok(&["kv", "list", "cfg/", "--json"]).json();
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");
}

const CONTENDERS: usize = 8;
const INCREMENTS: usize = 100;

/// 8 contenders each increment one counter 100 times with `kv get` + `kv put --if-version`,
/// retrying on a conflict (exit 3): the final value is exactly 800.
fn compare_and_swap_under_contention(store: &Store) {
    let start = Instant::now();
    let conflicts: usize = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..CONTENDERS)
            .map(|_| {
                scope.spawn(|| {
                    let mut conflicts = 0;
                    for _ in 0..INCREMENTS {
                        loop {
                            let got = store.run(&["kv", "get", "counter", "--json"]);
                            let (value, version) = match got.code {
                                0 => {
                                    let kv = got.json();
                                    let value: i64 = kv["value"].as_str().unwrap().parse().unwrap();
                                    (value, kv["version"].as_i64().unwrap())
                                }
                                5 => (0, 0),
                                _ => panic!("kv get failed: {got:?}"),
                            };
                            let next = (value + 1).to_string();
                            let put = store.run(&["kv", "put", "counter", &next, "--if-version", &version.to_string()]);
                            match put.code {
                                0 => break,
                                3 => conflicts += 1,
                                _ => panic!("kv put failed: {put:?}"),
                            }
                        }
                    }
                    conflicts
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a contender panicked"))
            .sum()
    });
    let got = store.ok(&["kv", "get", "counter", "--json"]).json();
    assert_eq!(
        got["value"],
        (CONTENDERS * INCREMENTS).to_string(),
        "no increment lost or doubled"
    );
    eprintln!(
        "{CONTENDERS} x {INCREMENTS} increments with {conflicts} conflicts retried on {} in {:.1?}",
        if store.is_postgres() { "postgres" } else { "sqlite" },
        start.elapsed()
    );
}

fn events(text: &str) -> Vec<Value> {
    text.lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("an event per line ({e}): {line:?}")))
        .collect()
}

/// A watch started in the background sees the next two changes under its prefix, made by
/// other processes, and nothing outside it.
fn watch_sees_later_puts_by_other_processes(store: &Store) {
    store.ok(&["kv", "put", "jobs/old", "before"]);
    let mut watch = Background::start(
        store.cmd(&["kv", "watch", "jobs/", "--limit", "2", "--json"]),
        store.scratch.path(),
        "watch",
    );
    // The watch starts at the revision after the last one when it opened: keep writing (a key
    // outside the prefix, then one inside) until it has seen two changes.
    let mut puts = Vec::new();
    let start = Instant::now();
    while watch.running() {
        assert!(start.elapsed() < SOON, "the watch saw nothing: {}", watch.stderr());
        let i = puts.len();
        store.ok(&["kv", "put", "elsewhere/x", &i.to_string()]);
        let v = version(&store.ok(&["kv", "put", "jobs/a", &format!("job {i}")]));
        puts.push((format!("job {i}"), v));
        std::thread::sleep(POLL);
    }
    assert_eq!(watch.wait(SOON), 0, "{}", watch.stderr());
    let seen = events(&watch.stdout());
    assert_eq!(seen.len(), 2, "--limit 2: {seen:?}");
    let first = puts
        .iter()
        .position(|(_, v)| Some(*v) == seen[0]["version"].as_i64())
        .unwrap_or_else(|| panic!("the watch saw a put made after it started: {seen:?} {puts:?}"));
    for (event, (value, version)) in seen.iter().zip(&puts[first..]) {
        assert_eq!(
            event,
            &json!({"type": "put", "key": "jobs/a", "value": value, "version": version})
        );
    }
}

/// `--from REVISION` replays the changes from that revision on, deletes included, in order.
fn watch_from_a_revision_replays_history(store: &Store) {
    let v1 = version(&store.ok(&["kv", "put", "h/a", "1"]));
    let v2 = version(&store.ok(&["kv", "put", "h/b", "2"]));
    store.ok(&["kv", "put", "not-h", "x"]);
    let v3 = version(&store.ok(&["kv", "put", "h/a", "3"]));
    let v4 = version(&store.ok(&["kv", "delete", "h/b"]));
    let mut watch = Background::start(
        store.cmd(&["kv", "watch", "h/", "--from", "1", "--limit", "4", "--json"]),
        store.scratch.path(),
        "replay",
    );
    assert_eq!(watch.wait(SOON), 0, "{}", watch.stderr());
    assert_eq!(
        events(&watch.stdout()),
        [
            json!({"type": "put", "key": "h/a", "value": "1", "version": v1}),
            json!({"type": "put", "key": "h/b", "value": "2", "version": v2}),
            json!({"type": "put", "key": "h/a", "value": "3", "version": v3}),
            json!({"type": "delete", "key": "h/b", "value": null, "version": v4}),
        ]
    );
    // From the middle, in plain text.
    let mut watch = Background::start(
        store.cmd(&["kv", "watch", "h/", "--from", &v3.to_string(), "--limit", "2"]),
        store.scratch.path(),
        "replay-text",
    );
    assert_eq!(watch.wait(Duration::from_secs(10)), 0, "{}", watch.stderr());
    assert_eq!(watch.stdout(), format!("PUT\th/a\t{v3}\t3\nDELETE\th/b\t{v4}\n"));
}

/// `kv list` and `kv watch` print one row per key with control characters escaped: a
/// stored escape sequence never reaches the terminal; `kv get` and `--json` stay exact.
#[test]
fn human_output_escapes_control_characters() {
    let store = Store::sqlite();
    let value = "red\u{1b}[31m\r\nsecond line\u{7}";
    store.ok(&["kv", "put", "k", value]);
    let list = store.ok(&["kv", "list"]).stdout;
    assert_eq!(list, "k\t1\tred\\u{1b}[31m\\r\\nsecond line\\u{7}\n");
    let watch = store.ok(&["kv", "watch", "k", "--from", "1", "--limit", "1"]).stdout;
    assert_eq!(watch, "PUT\tk\t1\tred\\u{1b}[31m\\r\\nsecond line\\u{7}\n");
    assert_eq!(store.ok(&["kv", "get", "k"]).stdout, format!("{value}\n"));
    assert_eq!(store.ok(&["kv", "list", "--json"]).json()[0]["value"], value);
}
