//! What only the fault tests share: process groups that die with the test, probes of the
//! store's locks, a seeded random source, long variants, reports past the harness's capture,
//! and where failures are saved. Running `arbiter` on a store, with a bound on every wait,
//! is `crate::support`'s.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nix::sys::signal::{Signal, killpg};

use crate::support::{Store, pid};

/// `ARBITER_FAULTS_LONG=1`: the long variants (more rounds, more operations, more faults).
pub fn long_runs() -> bool {
    std::env::var_os("ARBITER_FAULTS_LONG").is_some_and(|v| v == "1")
}

/// Whether this is CI, where nothing may be skipped.
pub fn on_ci() -> bool {
    std::env::var_os("CI").is_some()
}

/// Prints a line past the test harness's output capture, so the numbers a fault test ran
/// show up in a plain `cargo test` (CI's log) too.
pub fn report(line: &str) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{line}");
}

/// A test that cannot run here: loud outside CI, a failure under CI.
pub fn skip_or_fail(test: &str, why: &str) {
    if on_ci() {
        panic!("CI is set but {test} cannot run: {why}");
    }
    report(&format!("SKIPPED {test}: {why}"));
}

/// Wall-clock microseconds since the Unix epoch: the clock the driver scripts use
/// (`$EPOCHREALTIME`), on the same host.
pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_micros() as u64
}

/// splitmix64: a small, seeded, reproducible random source.
pub struct Rng(u64);

impl Rng {
    /// Seeded from `ARBITER_FAULTS_SEED` if set (to replay a failure), else from the clock.
    /// The seed is part of what a test prints.
    pub fn from_env() -> (Rng, u64) {
        let seed = std::env::var("ARBITER_FAULTS_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| now_us() ^ (u64::from(std::process::id()) << 32));
        (Rng(seed), seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
    /// Uniform in `lo..=hi`.
    pub fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }
}

/// A child that leads its own process group; the whole group is killed (and the child
/// reaped) when this is dropped, so a failing test leaves nothing running.
pub struct Group {
    pub child: Child,
}

impl Group {
    /// Starts `cmd` as the leader of a new process group.
    pub fn spawn(cmd: &mut Command) -> Group {
        use std::os::unix::process::CommandExt;
        let child = cmd
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
        Group { child }
    }
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
    /// Sends `signal` to the whole group.
    pub fn signal(&self, signal: Signal) {
        signal_group(self.pid(), signal);
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        let _ = killpg(pid(self.pid()), Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

/// A directory for what a failing run leaves behind (histories, logs); it is kept.
pub fn artifact_dir(test: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("faults").join(format!(
        "{test}-{}-{}",
        now_us(),
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    dir
}

/// Reads a small file the test's scripts write, trimmed; `None` until it exists.
pub fn read_file(path: &Path) -> Option<String> {
    std::fs::read_to_string(path).ok().map(|s| s.trim().to_string())
}

/// Sends `signal` to process group `pgid`.
pub fn signal_group(pgid: u32, signal: Signal) {
    killpg(pid(pgid), signal).unwrap_or_else(|e| panic!("killpg {pgid} {signal}: {e}"));
}

/// Kills a process group when dropped (a command group whose guard may be frozen, should
/// the test fail).
pub struct KillGroup(pub u32);

impl Drop for KillGroup {
    fn drop(&mut self) {
        let _ = killpg(pid(self.0), Signal::SIGKILL);
    }
}

/// Tells whether some process holds the store's locks a new lease holder would need:
/// SQLite's write lock, or (PostgreSQL) the rows of one lease name. Used to tell whether a
/// frozen process is inside a store transaction.
pub enum LockProbe {
    Sqlite(rusqlite::Connection),
    Postgres {
        runtime: tokio::runtime::Runtime,
        client: tokio_postgres::Client,
        name: String,
    },
}

impl LockProbe {
    /// A probe of `store`; `name`: the lease name (PostgreSQL locks rows per name).
    pub fn new(store: &Store, name: &str) -> LockProbe {
        if let Some(path) = store.sqlite_path() {
            let conn = rusqlite::Connection::open(path).expect("open the SQLite file");
            conn.busy_timeout(Duration::ZERO).expect("set the busy timeout");
            return LockProbe::Sqlite(conn);
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let client = runtime.block_on(store.postgres_client(true));
        LockProbe::Postgres {
            runtime,
            client,
            name: name.to_string(),
        }
    }

    /// Whether a writer could go ahead now (it takes the locks and lets go at once).
    pub fn store_is_free(&mut self) -> bool {
        match self {
            LockProbe::Sqlite(conn) => conn.execute_batch("BEGIN IMMEDIATE; ROLLBACK;").is_ok(),
            LockProbe::Postgres { runtime, client, name } => runtime.block_on(async {
                let tx = client.transaction().await.expect("begin");
                let mut free = true;
                for table in ["lease_names", "lease_holders"] {
                    // In the store's schema: the connection's search_path.
                    let sql = format!("SELECT 1 FROM {table} WHERE name = $1 FOR UPDATE NOWAIT");
                    if let Err(e) = tx.execute(&sql, &[&*name]).await {
                        assert_eq!(
                            e.code(),
                            Some(&tokio_postgres::error::SqlState::LOCK_NOT_AVAILABLE),
                            "probe {table}: {e}"
                        );
                        free = false;
                        break;
                    }
                }
                // Roll back here, not on drop: a dropped transaction's ROLLBACK would wait
                // for this runtime's next turn, holding the probe's locks meanwhile.
                tx.rollback().await.expect("roll the probe back");
                free
            }),
        }
    }
}
