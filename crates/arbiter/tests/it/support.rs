//! What every end-to-end test needs: the `arbiter` binary, a store of its own (a SQLite
//! file in a temp dir, or a fresh PostgreSQL schema), direct SQL on that store to fake
//! states the CLI cannot produce, background processes that are cleaned up, bounded waits,
//! and a look at processes through `/proc`.

use std::ffi::OsStr;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use arbiter_process::procfs;
use arbiter_testkit::{TempSqlite, eventually, poll_for};
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use serde_json::Value;

/// The bound of waits for things that should happen "at once" (a process exiting after a
/// signal, a record appearing): generous for a loaded CI machine, never reached normally.
/// Where "at once" is part of what is tested, the test asserts a tighter bound itself.
pub const SOON: Duration = Duration::from_secs(30);
/// "At once", as opposed to "after the TTL": the scenarios that assert it use TTLs of 30 s
/// and more, so this bound tells the two apart even on a slow, loaded machine.
pub const AT_ONCE: Duration = Duration::from_secs(10);
/// How long a command run to its end ([`run`], [`Store::run`]) may take before the test
/// gives up on it: far more than any of them needs (SQLite's busy timeout is 15 s by
/// default), never reached normally.
pub const COMMAND_LIMIT: Duration = Duration::from_secs(90);

/// The binary under test: `CARGO_BIN_EXE_arbiter`, through a hard link of this test run's
/// own (in cargo's target tmp dir), so that a `cargo build` replacing `target/debug/arbiter`
/// while the tests run — another checkout step, another engineer — cannot make a test exec
/// a missing or different file half-way. Falls back to the path itself if linking fails.
pub fn bin() -> &'static Path {
    static BIN: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        let original = Path::new(env!("CARGO_BIN_EXE_arbiter"));
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"));
        // Links of earlier runs whose test process is gone.
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let name = entry.file_name();
            let pid = name
                .to_str()
                .and_then(|n| n.strip_prefix("arbiter-it-"))
                .and_then(|p| p.parse().ok());
            if pid.is_some_and(|pid: u32| procfs::stat(pid).is_none()) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        let link = dir.join(format!("arbiter-it-{}", std::process::id()));
        let _ = std::fs::remove_file(&link);
        match std::fs::hard_link(original, &link) {
            Ok(()) => link,
            Err(_) => original.to_path_buf(),
        }
    })
}

/// A fresh `arbiter` command with no store, namespace, log level or fault point inherited
/// from the environment of whoever runs the tests.
pub fn arbiter() -> Command {
    let mut cmd = Command::new(bin());
    clean_env(&mut cmd).env_remove("ARBITER_STORE").stdin(Stdio::null());
    cmd
}

/// Removes arbiter's variables, but the store, from a command's environment.
fn clean_env(cmd: &mut Command) -> &mut Command {
    cmd.env_remove("ARBITER_NAMESPACE")
        .env_remove("ARBITER_SERVER")
        .env_remove("ARBITER_TOKEN")
        .env_remove("ARBITER_LOG")
        .env_remove("ARBITER_FAULT")
}

/// What a finished process printed and how it ended.
#[derive(Debug)]
pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    /// Stdout parsed as one JSON value.
    pub fn json(&self) -> Value {
        serde_json::from_str(self.stdout.trim())
            .unwrap_or_else(|e| panic!("stdout is not one JSON value ({e}): {self:?}"))
    }

    /// Asserts the exit code of `what` (the step, for the failure message, which has the
    /// whole output too).
    #[track_caller]
    pub fn expect_code(&self, code: i32, what: &str) -> &Out {
        assert_eq!(
            self.code, code,
            "{what}: exit code {} instead of {code}\nstdout: {}\nstderr: {}",
            self.code, self.stdout, self.stderr
        );
        self
    }
}

/// Runs a command to its end, for at most [`COMMAND_LIMIT`], and collects its output.
#[track_caller]
pub fn run(cmd: &mut Command) -> Out {
    run_bounded(cmd, COMMAND_LIMIT)
}

/// Runs a command to its end and collects its output; past `limit` the process is killed
/// and the test fails.
#[track_caller]
pub fn run_bounded(cmd: &mut Command, limit: Duration) -> Out {
    let mut running = Running::start(cmd.stdin(Stdio::null()));
    let Some(status) = wait_bounded(&mut running.child, limit) else {
        running.kill(cmd, limit)
    };
    running.finish(status)
}

/// A child whose stdout and stderr are being read on threads of their own.
struct Running {
    child: Child,
    stdout: std::thread::JoinHandle<String>,
    stderr: std::thread::JoinHandle<String>,
}

impl Running {
    #[track_caller]
    fn start(cmd: &mut Command) -> Running {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
        let stdout = drain(child.stdout.take());
        let stderr = drain(child.stderr.take());
        Running { child, stdout, stderr }
    }

    #[track_caller]
    fn kill(mut self, cmd: &Command, limit: Duration) -> ! {
        let _ = self.child.kill();
        let _ = self.child.wait();
        panic!("{cmd:?} did not finish within {limit:?}");
    }

    fn finish(self, status: ExitStatus) -> Out {
        Out {
            code: exit_code(status),
            stdout: self.stdout.join().expect("the stdout reader"),
            stderr: self.stderr.join().expect("the stderr reader"),
        }
    }
}

/// Runs a command to its end (bounded by [`COMMAND_LIMIT`]) and returns its output and
/// its peak resident memory in KiB (`ru_maxrss` from `wait4`: that child's own peak, not
/// that of the test's other children).
#[track_caller]
pub fn run_peak_memory(cmd: &mut Command) -> (Out, u64) {
    let running = Running::start(cmd);
    let pid = running.child.id() as nix::libc::pid_t;
    let reaped = poll_for(COMMAND_LIMIT, || {
        let mut status = 0;
        // SAFETY: plain out-parameters; `rusage` is plain data, zero is a valid value.
        let mut usage: nix::libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: `pid` is our own unreaped child; both pointers are valid for writes.
        let got = unsafe { nix::libc::wait4(pid, &mut status, nix::libc::WNOHANG, &mut usage) };
        assert!(got >= 0, "wait4: {}", std::io::Error::last_os_error());
        (got == pid).then_some((status, usage.ru_maxrss))
    });
    let Some((status, peak)) = reaped else {
        running.kill(cmd, COMMAND_LIMIT)
    };
    use std::os::unix::process::ExitStatusExt;
    (running.finish(ExitStatus::from_raw(status)), peak as u64)
}

/// Reads a pipe to its end on a thread of its own (so a full pipe never blocks the child).
fn drain<R: Read + Send + 'static>(pipe: Option<R>) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut bytes);
        }
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// Waits for `child` to exit, for at most `limit`; `None` if it is still running.
pub fn wait_bounded(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    poll_for(limit, || child.try_wait().expect("waitpid works"))
}

/// The code a shell would report: the exit code, or 128 + the signal.
pub fn exit_code(status: ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .expect("a finished process has a code or a signal")
}

enum Backend {
    Sqlite { path: PathBuf, _dir: TempSqlite },
    Postgres { server: String, schema: String },
}

/// A store of one test's own: a SQLite file in a fresh temp dir, or a fresh PostgreSQL
/// schema (dropped at the end unless the test failed, to leave it for a post-mortem).
pub struct Store {
    pub url: String,
    backend: Backend,
    /// A scratch directory for the test's files (logs, outputs).
    pub scratch: tempfile::TempDir,
}

impl Store {
    pub fn sqlite() -> Store {
        let dir = TempSqlite::new();
        Store {
            url: dir.url(),
            backend: Backend::Sqlite {
                path: dir.path(),
                _dir: dir,
            },
            scratch: tempfile::tempdir().expect("a temp dir"),
        }
    }

    /// A fresh schema, or `None` (the skip was printed) when no server runs outside CI.
    pub fn postgres(test: &str) -> Option<Store> {
        arbiter_testkit::postgres_url_blocking(test).map(Store::postgres_at)
    }

    /// The PostgreSQL schema `url` (`SERVER?schema=NAME`) names, on any server (a private
    /// one, say); dropped at the end like [`Store::postgres`]'s.
    pub fn postgres_at(url: String) -> Store {
        let (server, schema) = url.split_once("?schema=").expect("a store URL naming a schema");
        Store {
            backend: Backend::Postgres {
                server: server.to_string(),
                schema: schema.to_string(),
            },
            url,
            scratch: tempfile::tempdir().expect("a temp dir"),
        }
    }

    pub fn is_postgres(&self) -> bool {
        matches!(self.backend, Backend::Postgres { .. })
    }

    /// The SQLite database file; `None` for a PostgreSQL store.
    pub fn sqlite_path(&self) -> Option<&Path> {
        match &self.backend {
            Backend::Sqlite { path, .. } => Some(path),
            Backend::Postgres { .. } => None,
        }
    }

    /// `arbiter` on this store (through `ARBITER_STORE`, as a fleet would set it).
    pub fn cmd<S: AsRef<OsStr>>(&self, args: &[S]) -> Command {
        let mut cmd = arbiter();
        cmd.env("ARBITER_STORE", &self.url).args(args);
        cmd
    }

    /// Runs `arbiter ARGS` on this store.
    pub fn run<S: AsRef<OsStr>>(&self, args: &[S]) -> Out {
        run(&mut self.cmd(args))
    }

    /// Runs `arbiter ARGS` on this store and asserts it succeeded.
    #[track_caller]
    pub fn ok<S: AsRef<OsStr>>(&self, args: &[S]) -> Out {
        let out = self.run(args);
        let args: Vec<&OsStr> = args.iter().map(|a| a.as_ref()).collect();
        out.expect_code(0, &format!("arbiter {args:?}"));
        out
    }

    /// `lease show NAME --json`.
    #[track_caller]
    pub fn show(&self, name: &str) -> Value {
        self.ok(&["lease", "show", name, "--json"]).json()
    }

    /// Waits until lease `name` has a holder whose command's process group is recorded
    /// (`arbiter lock`, running as `lock`, records it right after starting the command);
    /// returns that lease. Fails at once, with its stderr, if `lock` exits first.
    #[track_caller]
    pub fn wait_for_lock_holder(&self, name: &str, lock: &mut Background) -> Value {
        eventually(SOON, &format!("a holder of {name:?} with a process group"), || {
            if !lock.running() {
                panic!("arbiter lock exited early: {}", lock.stderr());
            }
            let out = self.run(&["lease", "show", name, "--json"]);
            if out.code != 0 {
                return None;
            }
            let lease = out.json()["holders"].get(0)?.clone();
            lease["holder"]["pgid"].as_u64().map(|_| lease)
        })
    }

    /// A shell command line that runs this binary on this store, for `sh -c` scripts: the
    /// scripts call `"$ARBITER" …` with `ARBITER_STORE` already in their environment.
    pub fn sh(&self, script: &str) -> Command {
        let mut cmd = Command::new("sh");
        cmd.arg("-c").arg(script).stdin(Stdio::null());
        self.env(&mut cmd);
        cmd
    }

    /// Points a script (any command that calls `"$ARBITER" …`) at this binary on this store,
    /// with none of arbiter's other variables inherited.
    pub fn env<'c>(&self, cmd: &'c mut Command) -> &'c mut Command {
        clean_env(cmd).env("ARBITER", bin()).env("ARBITER_STORE", &self.url)
    }

    /// Whether anything of the store exists: any file in the SQLite store's directory (the
    /// database, its WAL or journal), or the PostgreSQL schema.
    pub fn exists(&self) -> bool {
        match &self.backend {
            Backend::Sqlite { path, .. } => {
                let dir = path.parent().expect("the database is in a directory");
                std::fs::read_dir(dir).expect("the temp dir exists").next().is_some()
            }
            Backend::Postgres { schema, .. } => {
                let query =
                    format!("SELECT schema_name FROM information_schema.schemata WHERE schema_name = '{schema}'");
                !self.postgres_query(&query, false).is_empty()
            }
        }
    }

    /// Runs one SQL statement on the store directly; returns the rows it changed.
    pub fn sql(&self, statement: &str) -> u64 {
        match &self.backend {
            Backend::Sqlite { path, .. } => {
                let conn = sqlite(path);
                conn.execute(statement, [])
                    .unwrap_or_else(|e| panic!("{statement}: {e}")) as u64
            }
            Backend::Postgres { .. } => block_on(async {
                let client = self.postgres_client(true).await;
                client
                    .execute(statement, &[])
                    .await
                    .unwrap_or_else(|e| panic!("{statement}: {e}"))
            }),
        }
    }

    /// Runs a query whose first column is text; returns that column.
    pub fn sql_texts(&self, query: &str) -> Vec<String> {
        match &self.backend {
            Backend::Sqlite { path, .. } => {
                let conn = sqlite(path);
                let mut stmt = conn.prepare(query).unwrap_or_else(|e| panic!("{query}: {e}"));
                stmt.query_map([], |row| row.get::<_, String>(0))
                    .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
                    .unwrap_or_else(|e| panic!("{query}: {e}"))
            }
            Backend::Postgres { .. } => self.postgres_query(query, true),
        }
    }

    /// The holder record (JSON) of the one holder of lease `name`, as stored.
    pub fn stored_holder(&self, name: &str) -> Value {
        let rows = self.sql_texts(&format!("SELECT holder FROM lease_holders WHERE name = '{name}'"));
        assert_eq!(rows.len(), 1, "one holder of {name:?} expected in the store: {rows:?}");
        serde_json::from_str(&rows[0]).expect("the holder is stored as JSON")
    }

    /// Rewrites the holder record of the one holder of lease `name` in the store.
    pub fn rewrite_holder(&self, name: &str, edit: impl FnOnce(&mut Value)) {
        let mut holder = self.stored_holder(name);
        edit(&mut holder);
        let text = holder.to_string().replace('\'', "''");
        let changed = self.sql(&format!(
            "UPDATE lease_holders SET holder = '{text}' WHERE name = '{name}'"
        ));
        assert_eq!(changed, 1, "the holder of {name:?} was rewritten");
    }

    fn postgres_query(&self, query: &str, in_schema: bool) -> Vec<String> {
        block_on(async {
            let client = self.postgres_client(in_schema).await;
            client
                .query(query, &[])
                .await
                .unwrap_or_else(|e| panic!("{query}: {e}"))
                .iter()
                .map(|row| row.get::<_, String>(0))
                .collect()
        })
    }

    /// A connection to the PostgreSQL server, in this store's schema if `in_schema`; its
    /// connection runs on the calling runtime.
    pub async fn postgres_client(&self, in_schema: bool) -> tokio_postgres::Client {
        let Backend::Postgres { server, schema } = &self.backend else {
            unreachable!("a PostgreSQL store")
        };
        let (client, connection) = tokio_postgres::connect(server, tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to {server}: {e}"));
        tokio::spawn(connection);
        if in_schema {
            client
                .batch_execute(&format!("SET search_path TO {schema}"))
                .await
                .expect("search_path is set");
        }
        client
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        if let Backend::Postgres { schema, .. } = &self.backend
            && !std::thread::panicking()
        {
            let _ = self.sql(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"));
        }
    }
}

fn sqlite(path: &Path) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open(path).unwrap_or_else(|e| panic!("cannot open {}: {e}", path.display()));
    conn.busy_timeout(Duration::from_secs(30)).expect("busy timeout is set");
    conn
}

pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime starts")
        .block_on(future)
}

/// A process started in the background, in a process group of its own, with stdout and
/// stderr going to files. Dropping it SIGKILLs its group and the extra groups named with
/// [`Background::also_kill_group`], so a failed test leaves nothing running.
pub struct Background {
    child: Child,
    stdout: PathBuf,
    stderr: PathBuf,
    groups: Vec<u32>,
    status: Option<ExitStatus>,
}

impl Background {
    /// Starts `cmd`, logging to files named after `label` in `dir`.
    pub fn start(mut cmd: Command, dir: &Path, label: &str) -> Background {
        use std::os::unix::process::CommandExt;
        let stdout = dir.join(format!("{label}.stdout"));
        let stderr = dir.join(format!("{label}.stderr"));
        let child = cmd
            .stdout(File::create(&stdout).expect("stdout file"))
            .stderr(File::create(&stderr).expect("stderr file"))
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
        Background {
            child,
            stdout,
            stderr,
            groups: Vec::new(),
            status: None,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kill this process group too when dropped.
    pub fn also_kill_group(&mut self, pgid: u32) {
        self.groups.push(pgid);
    }

    /// Sends `signal` to the process itself (not its group).
    pub fn signal(&self, signal: Signal) {
        kill(pid(self.pid()), signal).expect("the process can be signalled");
    }

    /// Whether it is still running (not yet reaped).
    pub fn running(&mut self) -> bool {
        self.try_status().is_none()
    }

    fn try_status(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().expect("try_wait works");
        }
        self.status
    }

    /// Waits up to `limit` for the process to exit; returns its exit code (see
    /// [`exit_code`]); panics when it is still running after `limit`.
    #[track_caller]
    pub fn wait(&mut self, limit: Duration) -> i32 {
        let what = format!("process {} to exit (stderr: {})", self.pid(), self.stderr());
        let status = eventually(limit, &what, || self.try_status());
        exit_code(status)
    }

    pub fn stdout(&self) -> String {
        std::fs::read_to_string(&self.stdout).unwrap_or_default()
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        for group in self.groups.iter().copied().chain([self.child.id()]) {
            if let Ok(raw) = i32::try_from(group)
                && raw > 1
            {
                let _ = killpg(Pid::from_raw(raw), Signal::SIGKILL);
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn pid(pid: u32) -> Pid {
    Pid::from_raw(i32::try_from(pid).expect("a pid fits in i32"))
}

/// Whether process `pid` exists and is not a zombie (in a container whose init does not
/// reap orphans, killed processes stay zombies: they are gone all the same).
pub fn alive(pid: u32) -> bool {
    procfs::stat(pid).is_some_and(|p| !p.is_gone())
}

/// `host:port` of a `postgres://` URL (for a [`arbiter_testkit::net::StallProxy`] in front
/// of it).
pub fn postgres_addr(url: &str) -> std::net::SocketAddr {
    use std::net::ToSocketAddrs;
    let rest = url.split_once("://").expect("a URL with a scheme").1;
    let authority = rest.split(['/', '?']).next().expect("an authority");
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host_port = if host_port.contains(':') {
        host_port.to_string()
    } else {
        format!("{host_port}:5432")
    };
    host_port
        .to_socket_addrs()
        .expect("a resolvable PostgreSQL address")
        .next()
        .expect("an address")
}

/// The fencing token of `lease` (a lease as `--json` prints it).
#[track_caller]
pub fn token_of(lease: &Value) -> i64 {
    lease["token"]
        .as_i64()
        .unwrap_or_else(|| panic!("a lease with a token: {lease}"))
}
