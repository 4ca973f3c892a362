//! `arbiter limit …`: buckets shared by real processes. Eight processes taking from two
//! buckets at once never spend more than the buckets allow; a take that is not granted
//! within `--wait` exits 3 naming the wait needed; bad flags exit 2 and write nothing.

use std::process::Stdio;
use std::time::Instant;

use serde_json::json;

use crate::support::{COMMAND_LIMIT, Store, exit_code, wait_bounded};
use arbiter_testkit::each_backend;

each_backend!(
    Store;
    concurrent_processes_never_over_spend,
    exit_codes_and_messages,
    a_take_waits_then_is_granted,
    an_observed_hit_freezes_the_bucket_for_every_process,
);

/// 8 processes, each looping takes of `a,b` or `b,a` (8 × 15 tries): the grants never exceed
/// what the tighter bucket allows over the run, burst plus refill. The bound uses the
/// elapsed time the test measured around the whole run: it is a correctness check, never
/// a timing assertion.
fn concurrent_processes_never_over_spend(store: &Store) {
    store.ok(&[
        "limit",
        "define",
        "a",
        "--rate",
        "10/s",
        "--burst",
        "5",
        "--reserve",
        "0%",
    ]);
    store.ok(&[
        "limit",
        "define",
        "b",
        "--rate",
        "40/s",
        "--burst",
        "20",
        "--reserve",
        "0%",
    ]);
    let started = Instant::now();
    let mut children = Vec::new();
    for i in 0..8 {
        let out = store.scratch.path().join(format!("grants-{i}"));
        // Half name the buckets the other way round: takes lock in name order, whatever
        // the order given, so none deadlocks.
        let names = if i % 2 == 0 { "a,b" } else { "b,a" };
        let script = format!(
            r#"i=0; while [ $i -lt 15 ]; do i=$((i+1)); "$ARBITER" limit take {names} && echo granted >> '{}'; done; exit 0"#,
            out.display()
        );
        let child = store
            .sh(&script)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("sh starts");
        children.push((child, out));
    }
    let mut granted = 0;
    for (mut child, out) in children {
        let status = wait_bounded(&mut child, COMMAND_LIMIT).expect("the take loop ends");
        assert_eq!(exit_code(status), 0);
        granted += std::fs::read_to_string(&out).unwrap_or_default().lines().count();
    }
    let elapsed = started.elapsed().as_secs_f64();
    let bound = 5.0 + 10.0 * elapsed;
    assert!(granted > 0, "some takes were granted");
    assert!(
        granted as f64 <= bound + 1e-6,
        "{granted} grants in {elapsed:.2}s: more than bucket a's 5 + 10/s allow ({bound:.1})"
    );
    // Both buckets were charged alike: b never lost more than a.
    let a = store.ok(&["limit", "show", "a", "--json"]).json();
    let b = store.ok(&["limit", "show", "b", "--json"]).json();
    assert!(a["tokens"].as_f64().unwrap() >= 0.0 && b["tokens"].as_f64().unwrap() >= 0.0);
}

fn exit_codes_and_messages(store: &Store) {
    let defined = store
        .ok(&["limit", "define", "x", "--rate", "1/h", "--burst", "1", "--json"])
        .json();
    assert_eq!(
        (
            defined["name"].clone(),
            defined["rate"].clone(),
            defined["tokens"].clone()
        ),
        (json!("x"), json!("1/h"), json!(1.0))
    );
    let granted = store.ok(&["limit", "take", "x", "--priority", "interactive"]);
    assert_eq!(granted.stdout, "", "a granted take prints nothing");
    let refused = store.run(&["limit", "take", "x", "--priority", "interactive"]);
    refused.expect_code(3, "a take from an empty bucket");
    assert!(
        refused
            .stderr
            .starts_with("arbiter: not granted: bucket \"x\" has 0 of 1 tokens; wait "),
        "{refused:?}"
    );
    // --wait shorter than the wait needed: exit 3 at once, with the wait it needed.
    let refused = store.run(&["limit", "take", "x", "--wait", "1s", "--json"]);
    refused.expect_code(3, "a take whose wait is longer than --wait");
    assert_eq!(refused.json()["error"], "limited");
    // The wait it needed, as data: most of an hour.
    let wait_ms = refused.json()["wait_ms"].as_u64().expect("wait_ms");
    assert!(wait_ms > 3_000_000 && wait_ms <= 3_600_000, "{refused:?}");
    let out = store.run(&["limit", "take", "x,missing"]);
    out.expect_code(5, "a take naming an unknown bucket");
    assert!(out.stderr.contains("no bucket \"missing\""), "{out:?}");
    // Bad flags: exit 2, naming the flag; nothing is written.
    for (args, flag) in [
        (&["limit", "define", "y", "--rate", "5"][..], "--rate"),
        (
            &["limit", "define", "y", "--rate", "5/h", "--burst", "0"][..],
            "--burst",
        ),
        (
            &["limit", "define", "y", "--rate", "5/h", "--reserve", "150%"][..],
            "--reserve",
        ),
        (&["limit", "take", "x", "--cost", "0"][..], "--cost"),
        (&["limit", "take", "x", "--priority", "urgent"][..], "--priority"),
        (&["limit", "take", "x", "--wait", "soon"][..], "--wait"),
        (&["limit", "take", "x,x"][..], "named twice"),
        (&["limit", "observe", "x", "--remaining", "-1"][..], "--remaining"),
        (&["limit", "observe", "x", "--reset", "soon"][..], "--reset"),
        // Above what a bucket may hold: it was taken and silently ignored.
        (&["limit", "observe", "x", "--limit", "1000000000001"][..], "--limit"),
        // Longer than a freeze may last (a day).
        (
            &["limit", "observe", "x", "--hit", "--retry-after", "86401"][..],
            "--retry-after",
        ),
    ] {
        let out = store.run(args);
        out.expect_code(2, &format!("{args:?}"));
        assert!(out.stderr.contains(flag), "{flag} named: {out:?}");
    }
    let out = store.run(&["limit", "take", "x", "--cost", "2"]);
    out.expect_code(2, "a cost above the burst");
    assert!(out.stderr.contains("burst 1"), "{out:?}");
    let list = store.ok(&["limit", "list", "--json"]).json();
    assert_eq!(list.as_array().unwrap().len(), 1, "no bucket y: {list}");
    assert_eq!(
        list[0]["tokens"].as_f64().unwrap().round(),
        0.0,
        "x was not charged again"
    );
    store
        .run(&["limit", "show", "nope"])
        .expect_code(5, "show of an unknown bucket");
}

fn a_take_waits_then_is_granted(store: &Store) {
    store.ok(&[
        "limit",
        "define",
        "w",
        "--rate",
        "4/s",
        "--burst",
        "1",
        "--reserve",
        "0%",
    ]);
    store.ok(&["limit", "take", "w"]);
    // Empty: the next token comes within a quarter second; --wait covers it.
    let out = store.ok(&["limit", "take", "w", "--wait", "30s", "--json"]).json();
    assert_eq!(out["granted"], true);
    assert_eq!(out["buckets"][0]["name"], "w");
    let text = store.ok(&["limit", "show", "w"]).stdout;
    assert!(text.starts_with("w\t"), "{text}");
}

fn an_observed_hit_freezes_the_bucket_for_every_process(store: &Store) {
    store.ok(&["limit", "define", "github/octo/core", "--rate", "5000/h"]);
    let seen = store
        .ok(&[
            "limit",
            "observe",
            "github/octo/core",
            "--remaining",
            "4000",
            "--limit",
            "5000",
            "--json",
        ])
        .json();
    assert_eq!(seen["tokens"], 4000.0);
    let frozen = store
        .ok(&[
            "limit",
            "observe",
            "github/octo/core",
            "--hit",
            "--retry-after",
            "30",
            "--json",
        ])
        .json();
    assert!(frozen["frozen_until"].is_string(), "{frozen}");
    let out = store.run(&["limit", "take", "github/octo/core", "--priority", "interactive"]);
    out.expect_code(3, "a take from a frozen bucket");
    assert!(out.stderr.contains("is frozen"), "{out:?}");
    let counters = store.ok(&["limit", "counters", "--json"]).json();
    assert_eq!(counters, json!([]));
    // A reset in the year 2100 froze the bucket until then, with no way out: now it is not
    // believed (more than a day ahead), and the hit freezes for the default minute.
    let far = store
        .ok(&[
            "limit",
            "observe",
            "github/octo/core",
            "--hit",
            "--remaining",
            "0",
            "--reset",
            "4102444800",
            "--json",
        ])
        .json();
    assert_eq!(far["reset_at"], json!(null), "{far}");
    let time = |field: &str| humantime::parse_rfc3339(far[field].as_str().unwrap()).unwrap();
    let frozen_for = time("frozen_until").duration_since(time("now")).unwrap();
    assert_eq!(frozen_for, std::time::Duration::from_secs(60), "{far}");
}
