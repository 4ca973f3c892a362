//! Nothing acknowledged is lost: `arbiter log append STREAM --jsonl` prints each record's
//! offset only once the record is durable, so every offset a writer printed before it was
//! `kill -9`-ed — or before the PostgreSQL server crashed under it — must be there
//! afterwards, with its record, exactly once.
//!
//! Several writers append to one stream at once (each record has a unique body and an
//! idempotency key), a few records ahead of their acknowledgements, so a writer is almost
//! always inside an append transaction (on SQLite: `BEGIN IMMEDIATE` … `COMMIT`, or
//! waiting for the write lock) when it is killed. After each round of kills the store must
//! open (`arbiter store info`), read back whole (`arbiter log read --json`: offsets dense
//! from 0, no body twice, every acknowledged body at its acknowledged offset), and, on
//! SQLite, pass `PRAGMA integrity_check`.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{ChildStdin, ChildStdout, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use super::common::{Group, Rng, long_runs, report};
use super::postgres::PrivatePostgres;
use crate::support::{Store, exit_code, wait_bounded};
use arbiter_testkit::eventually;

const STREAM: &str = "durable";
/// Lines a writer is given ahead of its acknowledgements.
const AHEAD: usize = 6;
const EXIT_LIMIT: Duration = Duration::from_secs(60);

/// One `arbiter log append --jsonl` process, fed by one thread and read by another.
struct Writer {
    prefix: String,
    group: Option<Group>,
    /// Offsets printed, in input order: the `i`-th is record `PREFIX-i`'s.
    acks: Arc<Mutex<Vec<i64>>>,
    /// Lines written to its standard input.
    sent: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Writer {
    fn start(store: &Store, prefix: String) -> Writer {
        let mut cmd = store.cmd(&["log", "append", STREAM, "--jsonl"]);
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::null());
        let mut group = Group::spawn(&mut cmd);
        let acks = Arc::new(Mutex::new(Vec::new()));
        let sent = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let ended = Arc::new(AtomicBool::new(false));
        let stdin = group.child.stdin.take().expect("a stdin pipe");
        let stdout = group.child.stdout.take().expect("a stdout pipe");
        let reader = {
            let (acks, ended) = (acks.clone(), ended.clone());
            std::thread::spawn(move || read_acks(stdout, &acks, &ended))
        };
        let feeder = {
            let (acks, sent, stop, prefix) = (acks.clone(), sent.clone(), stop.clone(), prefix.clone());
            std::thread::spawn(move || feed(stdin, &prefix, &acks, &sent, &stop, &ended))
        };
        Writer {
            prefix,
            group: Some(group),
            acks,
            sent,
            stop,
            threads: vec![reader, feeder],
        }
    }

    fn acked(&self) -> usize {
        self.acks.lock().expect("acks").len()
    }

    /// `kill -9` (its whole group); returns whether an append was in flight: a line had
    /// been sent that was not acknowledged yet.
    fn kill(&mut self) -> bool {
        let in_flight = self.sent.load(Ordering::SeqCst) > self.acked();
        let group = self.group.as_mut().expect("a running writer");
        group.signal(Signal::SIGKILL);
        let status = wait_bounded(&mut group.child, EXIT_LIMIT).expect("a killed writer exits");
        assert_eq!(exit_code(status), 137, "the writer was killed");
        self.group = None;
        in_flight
    }

    /// Stops feeding it (end of input) and waits for it to exit; returns its exit code.
    fn finish(&mut self) -> i32 {
        self.stop.store(true, Ordering::SeqCst);
        let group = self.group.as_mut().expect("a running writer");
        let status = wait_bounded(&mut group.child, EXIT_LIMIT).expect("a writer ends at the end of its input");
        self.group = None;
        exit_code(status)
    }

    /// The acknowledged records: (body, offset).
    fn into_acked(mut self) -> Vec<(String, i64)> {
        assert!(self.group.is_none(), "the writer has ended");
        for thread in self.threads.drain(..) {
            thread.join().expect("a writer thread");
        }
        let acks = self.acks.lock().expect("acks");
        acks.iter()
            .enumerate()
            .map(|(i, &offset)| (format!("{}-{i}", self.prefix), offset))
            .collect()
    }
}

/// Reads the printed offsets; a last line without its newline (cut by the kill) is not an
/// acknowledgement.
fn read_acks(stdout: ChildStdout, acks: &Mutex<Vec<i64>>, ended: &AtomicBool) {
    let mut lines = BufReader::new(stdout);
    let mut line = String::new();
    loop {
        line.clear();
        match lines.read_line(&mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) if !line.ends_with('\n') => break,
            Ok(_) => {
                let offset = line
                    .trim()
                    .parse()
                    .unwrap_or_else(|_| panic!("an offset, not {line:?}"));
                acks.lock().expect("acks").push(offset);
            }
        }
    }
    ended.store(true, Ordering::SeqCst);
}

/// Writes records `PREFIX-0`, `PREFIX-1`, … at most [`AHEAD`] ahead of the
/// acknowledgements, until told to stop or the writer is gone; then closes its input.
fn feed(
    mut stdin: ChildStdin,
    prefix: &str,
    acks: &Mutex<Vec<i64>>,
    sent: &AtomicUsize,
    stop: &AtomicBool,
    ended: &AtomicBool,
) {
    let mut i = 0usize;
    // Bounded by the writer: it ends (killed, failed or at end of input) and `ended` is set.
    while !stop.load(Ordering::SeqCst) && !ended.load(Ordering::SeqCst) {
        if i >= acks.lock().expect("acks").len() + AHEAD {
            std::thread::sleep(Duration::from_micros(500));
            continue;
        }
        let line = format!("{{\"body\":\"{prefix}-{i}\",\"key\":\"{prefix}-{i}\"}}\n");
        if stdin.write_all(line.as_bytes()).and_then(|()| stdin.flush()).is_err() {
            break;
        }
        i += 1;
        sent.store(i, Ordering::SeqCst);
    }
}

/// Checks the stream against what was acknowledged; returns its length.
fn verify(store: &Store, acked: &BTreeMap<String, i64>, label: &str) -> usize {
    let info = store.ok(&["store", "info", "--json"]).json();
    assert!(info["schema_version"].as_i64().is_some(), "{label}: store info: {info}");
    let out = store.ok(&["log", "read", STREAM, "--json"]);
    let mut at: BTreeMap<String, i64> = BTreeMap::new();
    for (expected, line) in out.stdout.lines().enumerate() {
        let record: serde_json::Value = serde_json::from_str(line).expect("a record as JSON");
        let offset = record["offset"].as_i64().expect("an offset");
        let body = record["body"].as_str().expect("a body").to_string();
        assert_eq!(offset, expected as i64, "{label}: offsets are dense from 0");
        assert_eq!(
            record["idempotency_key"].as_str(),
            Some(body.as_str()),
            "{label}: the record is the one sent"
        );
        if let Some(first) = at.insert(body.clone(), offset) {
            panic!("{label}: {body:?} appended twice, at {first} and {offset}");
        }
    }
    let lost: Vec<_> = acked
        .iter()
        .filter(|(body, offset)| at.get(*body) != Some(offset))
        .map(|(body, offset)| format!("{body} (acknowledged at {offset}, found at {:?})", at.get(body)))
        .collect();
    assert!(
        lost.is_empty(),
        "{label}: {} acknowledged records lost or moved: {lost:?}",
        lost.len()
    );
    at.len()
}

fn integrity_check(store: &Store) {
    let path = store.sqlite_path().expect("a SQLite store");
    let conn = rusqlite::Connection::open(path).expect("open the SQLite file");
    let result: Vec<String> = conn
        .prepare("PRAGMA integrity_check")
        .and_then(|mut stmt| stmt.query_map([], |r| r.get(0))?.collect())
        .expect("run PRAGMA integrity_check");
    assert_eq!(result, ["ok"], "PRAGMA integrity_check");
}

/// SQLite: rounds of three writers on one stream, each `kill -9`-ed at a random moment.
#[test]
fn sqlite_kill_9_mid_append() {
    let rounds = if long_runs() { 40 } else { 6 };
    let (mut rng, seed) = Rng::from_env();
    let store = &Store::sqlite();
    let started = Instant::now();
    let mut acked: BTreeMap<String, i64> = BTreeMap::new();
    let (mut kills, mut in_flight, mut length) = (0, 0, 0);
    for round in 0..rounds {
        let mut writers: Vec<Writer> = (0..3).map(|w| Writer::start(store, format!("r{round}w{w}"))).collect();
        eventually(EXIT_LIMIT, "every writer's first acknowledgement", || {
            writers.iter().all(|w| w.acked() > 0).then_some(())
        });
        for writer in &mut writers {
            std::thread::sleep(Duration::from_millis(rng.between(0, 100)));
            in_flight += usize::from(writer.kill());
            kills += 1;
        }
        for writer in writers {
            acked.extend(writer.into_acked());
        }
        length = verify(store, &acked, &format!("sqlite round {round}"));
        integrity_check(store);
    }
    report(&format!(
        "faults::durability sqlite: {} acknowledged appends all present after {kills} kill -9 of writers \
         ({in_flight} with an append in flight) in {rounds} rounds; stream length {length}; \
         integrity_check ok; {:.1}s, seed {seed}",
        acked.len(),
        started.elapsed().as_secs_f64()
    ));
}

/// PostgreSQL (a private server): writers `kill -9`-ed, and the server crashed
/// (`pg_ctl stop -m immediate`) and restarted under the others; then more appends.
#[test]
fn postgres_kill_9_and_server_crash() {
    let Some(mut server) = PrivatePostgres::start("faults::durability::postgres_kill_9_and_server_crash") else {
        return;
    };
    let rounds = if long_runs() { 4 } else { 1 };
    let (mut rng, seed) = Rng::from_env();
    let store = Store::postgres_at(server.url("durability"));
    store.ok(&["store", "migrate"]);
    let started = Instant::now();
    let mut acked: BTreeMap<String, i64> = BTreeMap::new();
    let (mut kills, mut in_flight, mut length) = (0, 0, 0);
    let mut before_crash = 0;
    let mut exits: BTreeMap<i32, usize> = BTreeMap::new();
    for round in 0..rounds {
        let mut writers: Vec<Writer> = (0..3).map(|w| Writer::start(&store, format!("r{round}w{w}"))).collect();
        eventually(EXIT_LIMIT, "every writer's first acknowledgement", || {
            writers.iter().all(|w| w.acked() > 0).then_some(())
        });
        std::thread::sleep(Duration::from_millis(rng.between(0, 100)));
        in_flight += usize::from(writers[0].kill());
        kills += 1;
        std::thread::sleep(Duration::from_millis(rng.between(20, 150)));
        before_crash += writers.iter().map(Writer::acked).sum::<usize>();
        server.crash_restart();
        // Writers whose connection died exit with an error; the others go on. New ones
        // append after the restart.
        writers.push(Writer::start(&store, format!("r{round}w3")));
        eventually(EXIT_LIMIT, "an acknowledgement after the restart", || {
            (writers[3].acked() > 0).then_some(())
        });
        for writer in &mut writers[1..] {
            let code = writer.finish();
            assert!(
                [0, 1, 6].contains(&code),
                "a writer ends at the end of its input or on the lost connection: {code}"
            );
            *exits.entry(code).or_default() += 1;
        }
        for writer in writers {
            acked.extend(writer.into_acked());
        }
        length = verify(&store, &acked, &format!("postgres round {round}"));
    }
    report(&format!(
        "faults::durability postgres: {} acknowledged appends all present ({before_crash} acknowledged \
         before a crash) after {kills} kill -9 of writers ({in_flight} with an append in flight) and {} \
         server crash-restarts; writer exit codes {exits:?}; stream length {length}; {:.1}s, seed {seed}",
        acked.len(),
        server.restarts,
        started.elapsed().as_secs_f64()
    ));
}
