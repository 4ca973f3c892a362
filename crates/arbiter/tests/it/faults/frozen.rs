//! A lease holder frozen *inside* a store transaction (a SIGSTOP here; in life a VM pause,
//! a laptop lid, a stopped container) and the next holder.
//!
//! `arbiter lock fence --ttl 300ms -- sleep 600` renews every 100 ms. The test freezes it
//! (SIGSTOP) at random moments until a probe finds it holding the store's locks, then runs
//! `arbiter lease acquire fence --wait 2s`.
//!
//! - PostgreSQL: the server ends a session idle inside a transaction after 5 s
//!   (`idle_in_transaction_session_timeout`), which releases its row locks: the next holder
//!   gets the lease a few seconds later (not within its own 2 s wait, but it gets it).
//! - SQLite: one file lock serializes writers, and no process can take it from a frozen
//!   one. FIXME: a holder frozen while holding the write lock makes the next holder fail
//!   with exit 6 (store unavailable) after the busy timeout (`?busy_timeout=2s` here; 15 s
//!   by default) until it resumes; frozen holding only a read lock, it blocks nobody. Reads are not blocked (opening the store takes no
//!   write lock). This is SQLite's single-writer design; fleets that must survive frozen
//!   hosts use PostgreSQL.

use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::Signal;

use super::common::{Group, KillGroup, LockProbe, Rng, read_file, report};
use crate::support::{Store, exit_code, wait_bounded};
use arbiter_testkit::eventually;

/// How long the next holder is given: ten times its own `--wait`.
const PATIENCE: Duration = Duration::from_secs(20);

fn frozen_holder_and_the_next(store: &Store, backend: &str, expected: &[i32]) {
    store.ok(&["store", "migrate"]);
    let mut probe = LockProbe::new(store, "fence");
    let dir = tempfile::tempdir().expect("a temp dir");
    let log = dir.path().join("lock.stderr");
    // `sleep` dies on TERM: the shortest grace leaves the renewals the most room under the
    // holder-side deadline rule (lost at 5/6 of the TTL).
    let mut cmd = store.cmd(&[
        "lock", "fence", "--ttl", "300ms", "--grace", "1ms", "--", "sleep", "600",
    ]);
    cmd.stderr(std::fs::File::create(&log).expect("a log file"));
    let mut holder = Group::spawn(&mut cmd);
    let pgid = eventually(Duration::from_secs(60), "the lease to be held", || {
        // Not found (exit 5) until `arbiter lock` has acquired it.
        let show = store.run(&["lease", "show", "fence", "--json"]);
        (show.code == 0).then(|| show.json()["holders"][0]["holder"]["pgid"].as_u64())?
    }) as u32;
    let _command = KillGroup(pgid);

    // Freeze it at random moments until it is caught inside a transaction.
    let (mut rng, seed) = Rng::from_env();
    let mut attempts = 0;
    loop {
        attempts += 1;
        assert!(
            holder.child.try_wait().expect("waitpid").is_none(),
            "the holder ended (lost its lease to the probing?): {:?}",
            read_file(&log)
        );
        holder.signal(Signal::SIGSTOP);
        if !probe.store_is_free() {
            break;
        }
        holder.signal(Signal::SIGCONT);
        assert!(attempts < 20_000, "never caught the holder inside a transaction");
        std::thread::sleep(Duration::from_micros(rng.between(0, 3000)));
    }

    // The next holder, and (for the record) a read of an unrelated key.
    let start = |args: &[&str]| {
        let mut cmd = store.cmd(args);
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
        Group::spawn(&mut cmd)
    };
    let mut next = start(&["lease", "acquire", "fence", "--wait", "2s", "--json"]);
    let mut read = start(&["kv", "get", "unrelated"]);
    let outcome = wait_bounded(&mut next.child, PATIENCE).map(exit_code);
    let read_outcome = wait_bounded(&mut read.child, Duration::from_millis(100)).map(exit_code);
    holder.signal(Signal::SIGCONT);
    let describe = |outcome: Option<i32>| match outcome {
        Some(code) => format!("exited {code}"),
        None => format!("had not returned after {PATIENCE:?}"),
    };
    report(&format!(
        "faults::frozen {backend}: holder caught inside a transaction after {attempts} freezes (seed {seed}); \
         `lease acquire fence --wait 2s` {}; `kv get unrelated` (5 = not found) {}",
        describe(outcome),
        describe(read_outcome)
    ));
    assert!(
        outcome.is_some_and(|code| expected.contains(&code)),
        "{backend}: `lease acquire fence --wait 2s` next to a holder frozen inside a transaction: expected exit \
         {expected:?}; it {}",
        describe(outcome)
    );
}

#[test]
fn sqlite_holder_frozen_mid_transaction_blocks_writers_until_the_busy_timeout() {
    let mut store = Store::sqlite();
    store.url.push_str("?busy_timeout=2s");
    // FIXME: SQLite's single write lock cannot be taken from a frozen process. Frozen while
    // holding it, the next holder gets exit 6 after the busy timeout; frozen holding only a
    // read lock (the probe sees that too), the next holder gets the lease (exit 0). Either
    // way it returns within its bounds instead of hanging.
    frozen_holder_and_the_next(&store, "sqlite", &[0, 6]);
}

#[test]
fn postgres_holder_frozen_mid_transaction_is_cut_off_and_the_next_gets_the_lease() {
    if let Some(store) = Store::postgres("faults_frozen") {
        frozen_holder_and_the_next(&store, "postgres", &[0]);
    }
}
