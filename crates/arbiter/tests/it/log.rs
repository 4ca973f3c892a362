//! Streams through the CLI: idempotent appends from crashing writers, follow, consumers.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::support::Store;
use arbiter_process::procfs;
use arbiter_testkit::each_backend;

/// `arbiter` on `store`, arguments to follow.
fn cli(store: &Store) -> std::process::Command {
    store.cmd::<&str>(&[])
}

/// The JSON lines a writer appends: 200 keyed records.
fn writer_input(writer: usize) -> String {
    (0..200)
        .map(|i| format!("{{\"body\":\"w{writer} r{i}\",\"key\":\"w{writer}-{i}\"}}\n"))
        .collect()
}

/// Runs `log append --jsonl` for one writer; with `kill_after`, SIGKILLs it once it has
/// acknowledged that many records. Returns the acknowledged (key, offset) pairs.
fn run_writer(store: &Store, writer: usize, kill_after: Option<usize>) -> Vec<(String, i64)> {
    let mut child = cli(store)
        .args([
            "log",
            "append",
            "crashy",
            "--jsonl",
            "--by",
            &format!("writer-{writer}"),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let input = writer_input(writer);
    let mut stdin = child.stdin.take().unwrap();
    let feeder = std::thread::spawn(move || {
        // The writer may be killed while we feed it: a broken pipe is expected then.
        let _ = stdin.write_all(input.as_bytes());
    });
    let mut acked = Vec::new();
    for (i, line) in BufReader::new(child.stdout.take().unwrap()).lines().enumerate() {
        let Ok(line) = line else { break };
        acked.push((format!("w{writer}-{i}"), line.trim().parse::<i64>().unwrap()));
        if kill_after == Some(acked.len()) {
            child.kill().unwrap(); // SIGKILL
            break;
        }
    }
    let status = child.wait().unwrap();
    let _ = feeder.join();
    if kill_after.is_none() {
        assert!(status.success(), "writer {writer}: {status:?}");
        assert_eq!(acked.len(), 200);
    }
    acked
}

fn appends_survive_killed_writers(store: &Store) {
    // 16 writers at once; every fourth is killed after some acknowledged appends and then
    // re-run from the start with the same keys.
    let results: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..16)
            .map(|w| {
                scope.spawn(move || {
                    let kill_after = (w % 4 == 0).then_some(20 + w * 5);
                    let first = run_writer(store, w, kill_after);
                    let rerun = if kill_after.is_some() {
                        run_writer(store, w, None)
                    } else {
                        Vec::new()
                    };
                    (first, rerun)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut acked: BTreeMap<String, i64> = BTreeMap::new();
    let mut kills = 0;
    for (first, rerun) in results {
        if !rerun.is_empty() {
            kills += 1;
            // The re-run gets the same offsets back for what the killed run acknowledged.
            for (key, offset) in &first {
                assert_eq!(
                    rerun.iter().find(|(k, _)| k == key).map(|(_, o)| *o),
                    Some(*offset),
                    "{key}"
                );
            }
        }
        acked.extend(first);
        acked.extend(rerun);
    }
    assert_eq!(kills, 4);
    let output = cli(store).args(["log", "read", "crashy", "--json"]).output().unwrap();
    assert!(output.status.success());
    let records: Vec<serde_json::Value> = output
        .stdout
        .lines()
        .map(|l| serde_json::from_str(&l.unwrap()).unwrap())
        .collect();
    assert_eq!(records.len(), 3200, "exactly 16 x 200 records");
    let keys: BTreeSet<&str> = records.iter().map(|r| r["idempotency_key"].as_str().unwrap()).collect();
    assert_eq!(keys.len(), 3200, "each key once");
    for (i, record) in records.iter().enumerate() {
        assert_eq!(record["offset"].as_i64(), Some(i as i64), "dense offsets");
    }
    // Nothing acknowledged was lost: every acknowledged key is at its acknowledged offset.
    for (key, offset) in &acked {
        assert_eq!(
            records[*offset as usize]["idempotency_key"].as_str(),
            Some(key.as_str())
        );
    }
    println!("log crash test: 16 writers x 200 appends, {kills} killed mid-run and re-run, 3200 records");
}

/// CPU time (user + system) a process has used, from /proc.
fn cpu_time(pid: u32) -> Duration {
    let stat = procfs::stat(pid).expect("the process runs");
    Duration::from_millis((stat.utime + stat.stime) * 10) // USER_HZ is 100 on Linux
}

fn follow_delivers_records_from_other_processes(store: &Store) {
    let mut follower = cli(store)
        .args(["log", "read", "live", "--follow", "--json", "--limit", "2"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(follower.stdout.take().unwrap()).lines();
    let append = |text: &str| {
        let out = cli(store).args(["log", "append", "live", text]).output().unwrap();
        assert!(out.status.success(), "{out:?}");
    };
    append("first");
    let first: serde_json::Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(first["body"], "first");
    // Idle for a second: a follower that is not busy-looping uses little CPU meanwhile.
    let before = cpu_time(follower.id());
    std::thread::sleep(Duration::from_secs(1));
    let idle_cpu = cpu_time(follower.id()) - before;
    assert!(
        idle_cpu < Duration::from_millis(300),
        "follower burned {idle_cpu:?} of CPU while idle"
    );
    let sent = Instant::now();
    append("second");
    let second: serde_json::Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(
        (second["body"].as_str(), second["offset"].as_i64()),
        (Some("second"), Some(1))
    );
    println!(
        "follow delivered a record from another process in {:?} (idle CPU {idle_cpu:?})",
        sent.elapsed()
    );
    assert!(follower.wait().unwrap().success(), "--limit 2 ends the follower");
}

fn consumers_resume_where_they_stopped(store: &Store) {
    for text in ["a", "b", "c"] {
        assert!(
            cli(store)
                .args(["log", "append", "s", text])
                .status()
                .unwrap()
                .success()
        );
    }
    let commit = cli(store)
        .args(["log", "consumer", "commit", "s", "render", "2"])
        .status()
        .unwrap();
    assert!(commit.success());
    let out = cli(store)
        .args(["log", "read", "s", "--consumer", "render", "--json"])
        .output()
        .unwrap();
    let bodies: Vec<String> = out
        .stdout
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(&l.unwrap()).unwrap()["body"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(bodies, ["c"]);
    let out = cli(store)
        .args(["log", "consumer", "commit", "s", "render", "9"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("0 to 3"));
    let out = cli(store).args(["log", "streams", "--json"]).output().unwrap();
    let streams: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(streams, serde_json::json!([{"stream": "s", "next_offset": 3}]));
}

each_backend!(
    Store;
    appends_survive_killed_writers,
    follow_delivers_records_from_other_processes,
    consumers_resume_where_they_stopped
);

#[test]
fn bad_log_input_is_refused_and_writes_nothing() {
    let store = Store::sqlite();
    let cases: [(&[&str], &str); 6] = [
        (&["log", "append", "bad stream", "x"], "invalid name \"bad stream\""),
        (&["log", "append", "s", ""], "the record body is empty"),
        (
            &["log", "append", "s", "--body-file", "/nonexistent/file"],
            "cannot read --body-file /nonexistent/file",
        ),
        (&["log", "append", "s", "{x", "--json-body"], "not valid JSON"),
        (&["log", "append", "s", "x", "--tag", "novalue"], "expected KEY=VALUE"),
        (&["log", "read", "s", "--from", "-1"], "--from"),
    ];
    for (args, expected) in cases {
        let out = cli(&store).args(args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert!(!store.exists(), "{args:?} wrote the store");
    }
    // A malformed --jsonl line stops with its line number; lines before it stay appended.
    let mut child = cli(&store)
        .args(["log", "append", "s", "--jsonl"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"{\"body\":\"ok\"}\n{\"body\":\"x\",\"color\":1}\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("standard input line 2: unknown field `color`"));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "0\n");
}
