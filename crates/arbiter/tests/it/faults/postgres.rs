//! A private PostgreSQL server for one test, so that test may crash and restart it without
//! disturbing the other tests that share the machine's server.
//!
//! The binaries come from `/usr/lib/postgresql/*/bin` (the newest version there). `initdb`
//! refuses to run as root, so as root every server command runs as the `postgres` user
//! (`runuser -u postgres --`), in a temp directory owned by it. The server listens on
//! 127.0.0.1 at a free port, its socket in that directory, with trust authentication. It is
//! stopped and its directory deleted when the handle is dropped — also when the test
//! panics. Without the binaries the test is skipped, loudly, except under `CI`.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use super::common::{report, skip_or_fail};
use crate::support::{Out, run_bounded};

const SERVER_LIMIT: Duration = Duration::from_secs(120);

pub struct PrivatePostgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    /// Run the server commands as the `postgres` user (we are root).
    as_postgres: bool,
    /// How many times it was crashed and restarted.
    pub restarts: u32,
}

/// The newest `/usr/lib/postgresql/VERSION/bin` that has `initdb` and `pg_ctl`.
fn find_bin() -> Option<PathBuf> {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .filter_map(|entry| {
            let version: u32 = entry.file_name().to_str()?.split('.').next()?.parse().ok()?;
            let bin = entry.path().join("bin");
            (bin.join("initdb").is_file() && bin.join("pg_ctl").is_file()).then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin)
}

/// This process's effective user id (`/proc/self/status`).
fn effective_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

/// The `postgres` user's uid (`-u`) or gid (`-g`).
fn id_of(flag: &str) -> Option<u32> {
    let out = Command::new("id").args([flag, "postgres"]).output().ok()?;
    String::from_utf8(out.stdout).ok()?.trim().parse().ok()
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("a bound address").port()
}

impl PrivatePostgres {
    /// Creates and starts a server for `test`; `None` (after saying why) when this machine
    /// has no PostgreSQL server binaries, outside CI.
    pub fn start(test: &str) -> Option<PrivatePostgres> {
        PrivatePostgres::start_configured(test, |_| {})
    }

    /// Like [`PrivatePostgres::start`], with `configure` run between `initdb` and the first
    /// start (to write files into the data directory with [`PrivatePostgres::write_data_file`]).
    pub fn start_configured(test: &str, configure: impl FnOnce(&PrivatePostgres)) -> Option<PrivatePostgres> {
        let Some(bin) = find_bin() else {
            skip_or_fail(
                test,
                "no PostgreSQL server binaries (initdb, pg_ctl) in /usr/lib/postgresql/*/bin",
            );
            return None;
        };
        let as_postgres = effective_uid() == Some(0);
        let dir = tempfile::Builder::new()
            .prefix("arbiter-faults-pg-")
            .tempdir()
            .expect("a temp dir");
        if as_postgres {
            let (Some(uid), Some(gid)) = (id_of("-u"), id_of("-g")) else {
                skip_or_fail(test, "running as root and there is no postgres user to run initdb as");
                return None;
            };
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).expect("chown the server directory");
        }
        let mut server = PrivatePostgres {
            dir,
            bin,
            port: 0,
            as_postgres,
            restarts: 0,
        };
        let data = server.data();
        server
            .run(
                "initdb",
                &[
                    "-D",
                    &data,
                    "-U",
                    "postgres",
                    "-A",
                    "trust",
                    "-E",
                    "UTF8",
                    "--locale=C",
                    "--no-sync",
                    "--no-instructions",
                ],
            )
            .expect_code(0, "initdb");
        configure(&server);
        // Another process may take the port between finding it and the server binding it.
        for attempt in 1..=5 {
            server.port = free_port();
            let out = server.start_server();
            if out.code == 0 {
                return Some(server);
            }
            assert!(
                attempt < 5,
                "the private PostgreSQL server does not start: {out:?}\n{}",
                server.log()
            );
        }
        unreachable!()
    }

    /// Writes (or, with `append`, appends to) a file in the data directory, owned by the
    /// server's user and private to it (the server refuses a key file others can read).
    pub fn write_data_file(&self, name: &str, contents: &[u8], append: bool) {
        use std::io::Write;
        use std::os::unix::fs::PermissionsExt;
        let path = self.dir.path().join("data").join(name);
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .append(append)
            .truncate(!append)
            .open(&path)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        file.write_all(contents).expect("write a server file");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod a server file");
        if self.as_postgres {
            let (uid, gid) = (id_of("-u"), id_of("-g"));
            std::os::unix::fs::chown(&path, uid, gid).expect("chown a server file");
        }
    }

    /// The server's TCP port (on 127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    /// The end of the server's log, for failure messages.
    pub fn log(&self) -> String {
        let text = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        let mut cmd = if self.as_postgres {
            let mut cmd = Command::new("runuser");
            cmd.args(["-u", "postgres", "--"]).arg(path);
            cmd
        } else {
            Command::new(path)
        };
        cmd.current_dir(self.dir.path());
        cmd
    }

    fn run(&self, program: &str, args: &[&str]) -> Out {
        run_bounded(self.command(program).args(args), SERVER_LIMIT)
    }

    fn start_server(&self) -> Out {
        let options = format!(
            "-c listen_addresses=127.0.0.1 -p {} -c unix_socket_directories={} -c max_connections=100 \
             -c shared_buffers=16MB",
            self.port,
            self.dir.path().display()
        );
        let log = self.log_path().display().to_string();
        self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data(),
                "-l",
                &log,
                "-w",
                "-t",
                "60",
                "-o",
                &options,
                "start",
            ],
        )
    }

    /// The URL of the server's `postgres` database, in `schema`.
    pub fn url(&self, schema: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres?schema={schema}", self.port)
    }

    /// Crashes the server (`pg_ctl stop -m immediate`: every server process is killed at
    /// once, no checkpoint; the next start runs crash recovery from the WAL) and starts it
    /// again on the same port.
    pub fn crash_restart(&mut self) {
        self.run("pg_ctl", &["-D", &self.data(), "-m", "immediate", "-w", "stop"])
            .expect_code(0, "pg_ctl stop -m immediate");
        let out = self.start_server();
        assert_eq!(out.code, 0, "the private server restarts: {out:?}\n{}", self.log());
        self.restarts += 1;
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let stopped = self
            .command("pg_ctl")
            .args(["-D", &self.data(), "-m", "immediate", "-w", "stop"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
        if !stopped.is_ok_and(|s| s.success()) {
            report(&format!(
                "warning: could not stop the private PostgreSQL server in {}",
                self.dir.path().display()
            ));
        }
    }
}
