//! What the fault tests share: running `arbiter` with a bound on every wait, process groups
//! that die with the test, a seeded random source, and where failures are saved.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

/// The binary under test.
pub fn arbiter_bin() -> &'static str {
    env!("CARGO_BIN_EXE_arbiter")
}

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

/// What a finished process left.
#[derive(Debug)]
pub struct Output {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn expect_code(self, code: i32, what: &str) -> Output {
        assert_eq!(
            self.code, code,
            "{what}: exit code {}\nstdout: {}\nstderr: {}",
            self.code, self.stdout, self.stderr
        );
        self
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(self.stdout.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {self:?}"))
    }
}

/// The exit code a shell would report: 128 + signal for a killed process.
pub fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status.code().or_else(|| status.signal().map(|s| 128 + s)).unwrap_or(-1)
}

fn drain<R: Read + Send + 'static>(pipe: Option<R>) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(mut pipe) = pipe {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            text = String::from_utf8_lossy(&bytes).into_owned();
        }
        text
    })
}

/// Runs `cmd` to the end, but no longer than `limit`: past it, the process (and its group,
/// when it leads one) is killed and the test fails.
pub fn run_bounded(cmd: &mut Command, limit: Duration) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    let out = drain(child.stdout.take());
    let err = drain(child.stderr.take());
    let status = wait_bounded(&mut child, limit).unwrap_or_else(|| {
        let _ = child.kill();
        let _ = child.wait();
        panic!("{cmd:?} did not finish within {limit:?}")
    });
    Output {
        code: exit_code(status),
        stdout: out.join().expect("the stdout reader"),
        stderr: err.join().expect("the stderr reader"),
    }
}

/// Waits for `child` to exit, at most `limit`; `None` if it is still running.
pub fn wait_bounded(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + limit;
    let mut pause = Duration::from_millis(1);
    loop {
        if let Some(status) = child.try_wait().expect("waitpid works") {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}

/// Polls `f` until it gives a value, at most `limit`; past it the test fails, naming `what`.
pub fn wait_for<T>(limit: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    let mut pause = Duration::from_millis(1);
    loop {
        if let Some(value) = f() {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}

/// How long one `arbiter` command may take before the test gives up on it (SQLite's busy
/// timeout is 60 s; nothing should come near it).
pub const COMMAND_LIMIT: Duration = Duration::from_secs(90);

/// One store, as the `arbiter` binary is pointed at it.
#[derive(Debug, Clone)]
pub struct Store {
    pub url: String,
}

impl Store {
    pub fn new(url: impl Into<String>) -> Store {
        Store { url: url.into() }
    }
    /// `arbiter ARGS` on this store, with a clean environment for arbiter's own variables.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(arbiter_bin());
        cmd.args(args);
        self.env(&mut cmd);
        cmd
    }
    /// Points a command (a script that runs `arbiter`) at this store.
    pub fn env(&self, cmd: &mut Command) {
        cmd.env("ARBITER_STORE", &self.url)
            .env("ARBITER_NAMESPACE", "default")
            .env("ARBITER_BIN", arbiter_bin())
            .env("LC_ALL", "C")
            .env_remove("ARBITER_FAULT")
            .env_remove("ARBITER_LOG");
    }
    pub fn run(&self, args: &[&str]) -> Output {
        run_bounded(&mut self.cmd(args), COMMAND_LIMIT)
    }
    pub fn ok(&self, args: &[&str]) -> Output {
        self.run(args).expect_code(0, &format!("arbiter {}", args.join(" ")))
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
        killpg(Pid::from_raw(self.pid() as i32), signal).unwrap_or_else(|e| panic!("killpg {signal}: {e}"));
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        let _ = killpg(Pid::from_raw(self.child.id() as i32), Signal::SIGKILL);
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

/// A fresh SQLite store in a temp directory.
pub struct TempStore {
    pub dir: tempfile::TempDir,
    pub store: Store,
}

impl TempStore {
    pub fn new() -> TempStore {
        let dir = tempfile::Builder::new()
            .prefix("arbiter-faults-")
            .tempdir()
            .expect("a temp dir");
        let store = Store::new(format!("sqlite://{}", dir.path().join("arbiter.db").display()));
        TempStore { dir, store }
    }
    pub fn db_path(&self) -> PathBuf {
        self.dir.path().join("arbiter.db")
    }
}

/// Reads a small file the test's scripts write, trimmed; `None` until it exists.
pub fn read_file(path: &std::path::Path) -> Option<String> {
    std::fs::read_to_string(path).ok().map(|s| s.trim().to_string())
}

/// Sends `signal` to process group `pgid`.
pub fn signal_group(pgid: u32, signal: Signal) {
    killpg(Pid::from_raw(pgid as i32), signal).unwrap_or_else(|e| panic!("killpg {pgid} {signal}: {e}"));
}

/// Kills a process group when dropped (a command group whose guard may be frozen, should
/// the test fail).
pub struct KillGroup(pub u32);

impl Drop for KillGroup {
    fn drop(&mut self) {
        let _ = killpg(Pid::from_raw(self.0 as i32), Signal::SIGKILL);
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
        schema: String,
        name: String,
    },
}

impl LockProbe {
    pub fn sqlite(path: &std::path::Path) -> LockProbe {
        let conn = rusqlite::Connection::open(path).expect("open the SQLite file");
        conn.busy_timeout(Duration::ZERO).expect("set the busy timeout");
        LockProbe::Sqlite(conn)
    }

    /// `url` as the tests give it (`…?schema=NAME`); `name`: the lease name.
    pub fn postgres(url: &str, name: &str) -> LockProbe {
        let (server, query) = url.split_once('?').expect("a schema in the URL");
        let schema = query.strip_prefix("schema=").expect("schema=NAME").to_string();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let client = runtime.block_on(async {
            let (client, connection) = tokio_postgres::connect(server, tokio_postgres::NoTls)
                .await
                .expect("connect to PostgreSQL");
            tokio::spawn(connection);
            client
        });
        LockProbe::Postgres {
            runtime,
            client,
            schema,
            name: name.to_string(),
        }
    }

    /// Whether a writer could go ahead now (it takes the locks and lets go at once).
    pub fn store_is_free(&mut self) -> bool {
        match self {
            LockProbe::Sqlite(conn) => conn.execute_batch("BEGIN IMMEDIATE; ROLLBACK;").is_ok(),
            LockProbe::Postgres {
                runtime,
                client,
                schema,
                name,
            } => runtime.block_on(async {
                let tx = client.transaction().await.expect("begin");
                let mut free = true;
                for table in ["lease_names", "lease_holders"] {
                    let sql = format!("SELECT 1 FROM {schema}.{table} WHERE name = $1 FOR UPDATE NOWAIT");
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
