//! Work items under `kill -9`: two simulated hosts — host A offers `gpu`, host B
//! `windows` — each with 4 `arbiter queue work --parallel 1 --lease 1s --drain` worker
//! processes, work through 500 items (a fifth require `gpu`, a fifth `windows`, the rest
//! nothing) while the test `kill -9`s random workers and starts them again.
//!
//! Each item's command is this test binary itself, re-executed as the test
//! [`fence_append`] (no shell: the same would run on Windows): under a file lock it appends
//! `start ID TOKEN HOST` to a shared log, pauses a few milliseconds, then — under the lock
//! again — reads the highest token accepted for its item and appends `refused …` if its own
//! is smaller, else `accept …`, and exits 0. A killed worker's command dies with it (its
//! process guard), possibly between the two writes.
//!
//! Asserted afterwards: every item is done in the store, with exactly one attempt ended
//! done, whose token is the highest the log accepted for it; per item the log's tokens
//! never go down (a command of an older claim writing after a newer claim's command
//! started would be two commands of one item at once) — so no refusal either; and every
//! accepted run of an item requiring `gpu` ran on host A, `windows` on host B.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use arbiter_core::name::{Capability, Namespace, QueueName};
use arbiter_core::queue::{AttemptOutcome, ItemState, MAX_ATTEMPTS, NewItem};
use nix::sys::signal::Signal;

use super::common::{Rng, long_runs, report};
use crate::support::{Background, Store, block_on};
use arbiter_testkit::each_backend;

each_backend!(Store; five_hundred_items_two_hosts_kill_9);

const QUEUE: &str = "faults";
/// The bound on the whole run (it takes well under a minute normally).
const RUN_LIMIT: Duration = Duration::from_secs(240);

/// The item command: see the module documentation. Run by the fault test (with
/// `FENCE_DIR` set) as `IT_BINARY faults::queue::fence_append --exact`; run by the suite
/// itself (without it), it checks the fence on a log of its own: a run with a smaller
/// token than one already accepted for the item is refused.
#[test]
fn fence_append() {
    if let Some(dir) = std::env::var_os("FENCE_DIR").map(PathBuf::from) {
        let var = |name: &str| std::env::var(name).unwrap_or_else(|_| panic!("{name} is set"));
        let (id, token, host) = (var("ARBITER_ITEM_ID"), var("ARBITER_ITEM_TOKEN"), var("FENCE_HOST"));
        fence_run(&dir, &id, token.parse().expect("a numeric token"), &host);
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    fence_run(dir.path(), "7", 2, "a");
    fence_run(dir.path(), "7", 1, "b");
    fence_run(dir.path(), "8", 1, "b");
    fence_run(dir.path(), "7", 3, "a");
    let log = std::fs::read_to_string(dir.path().join("log")).unwrap();
    let verdicts: Vec<&str> = log.lines().filter(|line| !line.starts_with("start ")).collect();
    assert_eq!(
        verdicts,
        ["accept 7 2 a", "refused 7 1 b", "accept 8 1 b", "accept 7 3 a"]
    );
}

/// One item's run: `start ID TOKEN HOST`, a pause, then under the lock again `accept …` —
/// or `refused …` when a larger token was already accepted for the item.
fn fence_run(dir: &Path, id: &str, token: i64, host: &str) {
    locked(dir, |log| append(log, &format!("start {id} {token} {host}\n")));
    // A few milliseconds between the two writes, so that an overlap would show.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    std::thread::sleep(Duration::from_millis(u64::from(nanos % 20)));
    locked(dir, |log| {
        let mut text = String::new();
        log.read_to_string(&mut text).expect("the log reads");
        let highest = text
            .lines()
            .filter_map(|line| {
                let f: Vec<&str> = line.split(' ').collect();
                (f[0] == "accept" && f[1] == id).then(|| f[2].parse::<i64>().expect("a token"))
            })
            .max()
            .unwrap_or(0);
        let verdict = if token < highest { "refused" } else { "accept" };
        append(log, &format!("{verdict} {id} {token} {host}\n"));
    });
}

/// Runs `f` on the shared log while holding the exclusive lock of `DIR/lock`.
fn locked(dir: &Path, f: impl FnOnce(&mut std::fs::File)) {
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join("lock"))
        .expect("the lock file opens");
    lock.lock().expect("the file lock is taken");
    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .read(true)
        .append(true)
        .open(dir.join("log"))
        .expect("the log opens");
    f(&mut log);
    log.sync_data().expect("the log is flushed");
    lock.unlock().expect("the file lock is given back");
}

fn append(log: &mut std::fs::File, line: &str) {
    log.write_all(line.as_bytes()).expect("the log is written");
}

/// What item `i` requires.
fn requires(i: usize) -> Option<&'static str> {
    match i % 5 {
        0 => Some("gpu"),
        1 => Some("windows"),
        _ => None,
    }
}

/// One worker process of a host.
fn worker(store: &Store, dir: &Path, config: &str, host: &str, cap: &str, n: usize) -> Background {
    let it = std::env::current_exe().expect("the test binary");
    let mut cmd = store.cmd(&[
        "queue",
        "work",
        QUEUE,
        "--parallel",
        "1",
        "--lease",
        "1s",
        "--drain",
        "--retry-in",
        "0s",
        "--capability",
        cap,
        "--config",
        config,
        "--",
    ]);
    cmd.arg(it)
        .args(["faults::queue::fence_append", "--exact", "--nocapture", "-q"])
        .arg("--test-threads=1")
        .env("FENCE_DIR", dir)
        .env("FENCE_HOST", host);
    Background::start(cmd, store.scratch.path(), &format!("worker-{host}-{n}"))
}

fn five_hundred_items_two_hosts_kill_9(store: &Store) {
    let items = if long_runs() { 2000 } else { 500 };
    let kills = if long_runs() { 40 } else { 10 };
    let (mut rng, seed) = Rng::from_env();
    let dir = store.scratch.path().join("fence");
    std::fs::create_dir(&dir).expect("the fence dir");
    let config = store.scratch.path().join("empty.toml");
    std::fs::write(&config, "").expect("config written");
    let config = config.display().to_string();

    // The items, pushed through the library (500 `queue push` processes would only be slow).
    let url = arbiter_store::StoreUrl::parse(&store.url).expect("the store URL");
    let lib = block_on(arbiter_store::Store::open(&url)).expect("the store opens");
    let queue = QueueName::parse(QUEUE).expect("a queue name");
    block_on(async {
        for i in 0..items {
            let caps: Vec<Capability> = requires(i).into_iter().map(|c| Capability::parse(c).unwrap()).collect();
            let item = NewItem::new(
                Namespace::default(),
                queue.clone(),
                format!("item {i}"),
                Some(format!("k{i}")),
                0,
                caps,
                None,
                MAX_ATTEMPTS,
            )
            .expect("a valid item");
            lib.queue().push(&item).await.expect("pushed");
        }
    });

    let hosts = [("a", "gpu"), ("b", "windows")];
    let mut workers: Vec<(usize, Background)> = Vec::new();
    let mut started = 0;
    for (h, (host, cap)) in hosts.iter().enumerate() {
        for _ in 0..4 {
            workers.push((h, worker(store, &dir, &config, host, cap, started)));
            started += 1;
        }
    }
    let done = || {
        block_on(lib.queue().stats(&Namespace::default()))
            .expect("stats")
            .1
            .iter()
            .map(|s| s.done)
            .sum::<u64>()
    };
    // Kill -9 random workers while work is left, starting a new one for each.
    let mut killed = 0;
    while killed < kills && done() < items as u64 {
        std::thread::sleep(Duration::from_millis(rng.between(200, 1200)));
        let victim = rng.below(workers.len() as u64) as usize;
        let (h, mut gone) = workers.swap_remove(victim);
        if !gone.running() {
            // It drained and exited by itself already.
            assert_eq!(gone.wait(Duration::ZERO), 0, "a worker exited badly: {}", gone.stderr());
            continue;
        }
        gone.signal(Signal::SIGKILL);
        gone.wait(crate::support::SOON);
        killed += 1;
        let (host, cap) = hosts[h];
        workers.push((h, worker(store, &dir, &config, host, cap, started)));
        started += 1;
    }
    for (_, w) in &mut workers {
        let code = w.wait(RUN_LIMIT);
        assert_eq!(code, 0, "a worker drained and exited 0: {}", w.stderr());
    }

    // The store: every item done, with exactly one attempt ended done.
    let all = block_on(lib.queue().list(&Namespace::default(), Some(&queue), None, items + 1)).expect("the items");
    assert_eq!(all.len(), items);
    let mut by_id = BTreeMap::new();
    for item in &all {
        assert_eq!(item.state, ItemState::Done, "every item done: {item:?}");
        let info = block_on(lib.queue().show(&Namespace::default(), item.id)).expect("its attempts");
        let dones = info
            .attempts
            .iter()
            .filter(|a| a.outcome == Some(AttemptOutcome::Done))
            .count();
        assert_eq!(dones, 1, "done exactly once: {info:?}");
        let index: usize = item.key.as_deref().and_then(|k| k[1..].parse().ok()).expect("its key");
        by_id.insert(item.id.to_string(), (index, item.last_token, info.attempts.len()));
    }

    // The log: tokens never go down per item, no refusal, `requires` respected, and the
    // store's done token is the log's highest accepted one.
    let log = std::fs::read_to_string(dir.join("log")).expect("the log");
    let mut last: BTreeMap<&str, i64> = BTreeMap::new();
    let mut accepted: BTreeMap<&str, i64> = BTreeMap::new();
    let (mut starts, mut accepts, mut refusals) = (0, 0, 0);
    for line in log.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        let (kind, id, token, host) = (f[0], f[1], f[2].parse::<i64>().expect("a token"), f[3]);
        let before = last.insert(id, token).unwrap_or(0);
        assert!(
            token >= before,
            "item {id}: token {token} wrote after token {before} had started: two commands of one item at once\n{line}"
        );
        match kind {
            "start" => starts += 1,
            "accept" => {
                accepts += 1;
                accepted.insert(id, token);
                let (index, _, _) = by_id[id];
                match requires(index) {
                    Some("gpu") => assert_eq!(host, "a", "a gpu item ran on host {host}: {line}"),
                    Some("windows") => assert_eq!(host, "b", "a windows item ran on host {host}: {line}"),
                    _ => {}
                }
            }
            _ => refusals += 1,
        }
    }
    assert_eq!(refusals, 0, "no stale token reached the resource");
    for (id, (_, last_token, _)) in &by_id {
        assert_eq!(
            accepted.get(id.as_str()),
            Some(last_token),
            "item {id}: the store's done token is the last one the log accepted"
        );
    }
    let retried = by_id.values().filter(|(_, _, attempts)| *attempts > 1).count();
    report(&format!(
        "queue faults ({}): {items} items, {started} workers started, {killed} kill -9, {starts} runs started, \
         {accepts} accepted, {refusals} refused, {retried} items claimed more than once, seed {seed}",
        if store.is_postgres() { "postgres" } else { "sqlite" },
    ));
}
