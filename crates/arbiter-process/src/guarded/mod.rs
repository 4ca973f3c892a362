//! Commands whose whole process tree dies with their owner.
//!
//! `arbiter lock -- CMD…` runs CMD while it holds a lease. If the lease is lost, CMD must be
//! stopped — CMD and everything it started. If arbiter itself dies (even by `kill -9`),
//! nothing CMD started may keep running without the lease: the lease would be taken over
//! (its holder is dead) while the old work still runs.
//!
//! # Unix: a guard process
//!
//! `PR_SET_PDEATHSIG` kills only the direct child when its parent dies, not the child's
//! descendants, and macOS has no such thing. So the command runs under a small **guard**
//! process, which is the same binary re-executed: `GUARD_EXE __guard <fd> -- CMD…` (the
//! binary dispatches the hidden [`GUARD_SUBCOMMAND`] to [`run_guard`], e.g. through
//! [`guard_main`]).
//!
//! - The owner creates a pipe, the **lifeline**, both ends close-on-exec, and spawns the
//!   guard in a new process group (`process_group(0)`: the group id is the guard's pid),
//!   with stdio inherited, the extra environment added, and `kill_on_drop(false)`. Between
//!   fork and exec (async-signal-safe code only) it clears close-on-exec on the read end, so
//!   the guard — and only the guard — inherits it. The owner keeps the write end open in
//!   [`GuardedChild`] for the child's whole life: dropping the `GuardedChild`, or the owner
//!   dying in any way, closes it. The owner never writes to it.
//! - The guard sets close-on-exec on the lifeline again (the command must not inherit it),
//!   spawns the command **from its main thread** in the same process group, with (Linux)
//!   `PR_SET_PDEATHSIG = SIGKILL` so that the command dies if the guard is killed (the
//!   death signal follows the *thread* that forked, hence the main thread). Only after the
//!   spawn does the guard ignore SIGTERM, SIGINT and SIGHUP, so the command does not
//!   inherit those dispositions: a TERM sent to the group stops the command, and the guard
//!   stays to report the command's exit status.
//! - A guard thread blocks reading the lifeline. End of file (or an error) means the owner
//!   is gone or gave the child up: the guard SIGKILLs its whole process group — itself, the
//!   command and every descendant that stayed in the group — and exits with 137.
//! - The guard's main thread waits for the command and exits with its
//!   [`exit_code`] (128 + signal if it was killed by a signal, like shells).
//!
//! Descendants that leave the group on purpose (`setsid`, `setpgid`):
//! - **Linux**: the guard is a *child subreaper* (`PR_SET_CHILD_SUBREAPER`), so every
//!   orphan below it is re-parented to it, whatever session or group it moved to, and its
//!   descendants can be found by walking `/proc` from the guard. When the command exits,
//!   and when the lifeline breaks, the guard SIGKILLs every descendant outside its group
//!   (repeated until none is left). [`GuardedChild::terminate`] sends them TERM with the
//!   group, and at the end of the grace stops the group (SIGSTOP, so nothing forks), kills
//!   the descendants outside it until none is left, then kills the group — all while the
//!   guard still lives, so none is lost to init.
//! - **macOS** has no subreaper: such descendants escape, as under `kill -- -PGID`.
//! - **Windows**: the job object holds every process created by the command after the
//!   assignment, whatever it does.
//!
//! Stopping: [`GuardedChild::terminate`] sends SIGTERM to the group, waits for the guard up
//! to a grace period, then SIGKILLs the group and makes sure it is empty.
//! [`GuardedChild::kill_group_leftovers`] cleans the group after the command exited on its
//! own but left descendants behind.
//!
//! A caveat of a new process group: it is not the terminal's foreground group, so a command
//! that reads from the terminal is stopped (SIGTTIN), and Ctrl-C at the terminal reaches the
//! owner, not the command (the owner is expected to terminate the child then).
//!
//! # Windows: a job object
//!
//! No guard: the command is spawned directly with `CREATE_NEW_PROCESS_GROUP` and assigned,
//! right after the spawn, to a job object with `JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE`. The
//! [`GuardedChild`] keeps the job handle; when it is closed (drop, or the owner dies) the
//! system kills every process of the job. Terminating is `TerminateJobObject`. A process
//! the command starts before it is assigned to the job escapes it; the window is tiny.

use std::ffi::OsString;
use std::path::Path;
use std::process::ExitStatus;
use std::time::Duration;

use arbiter_core::{Error, Result};

#[cfg(unix)]
mod unix;
#[cfg(windows)]
mod windows;

#[cfg(unix)]
pub(crate) use unix::valid_pgid;
#[cfg(unix)]
pub use unix::{guard_main, run_guard};

/// The hidden subcommand of the arbiter binary that runs the guard:
/// `EXE __guard <lifeline fd> -- CMD…`.
pub const GUARD_SUBCOMMAND: &str = "__guard";

/// A command started by [`spawn_guarded`]. Dropping it lets the command's whole process tree
/// be killed (unix: the guard sees its lifeline close; Windows: the job handle closes).
#[derive(Debug)]
pub struct GuardedChild {
    child: tokio::process::Child,
    pid: u32,
    /// The write end of the lifeline: never written, closed when this is dropped.
    #[cfg(unix)]
    _lifeline: std::os::fd::OwnedFd,
    #[cfg(windows)]
    job: windows::Job,
}

/// What to start, and with what environment, directory and standard streams.
#[derive(Debug, Clone, Default)]
pub struct Spawn {
    /// The program, then its arguments.
    pub argv: Vec<OsString>,
    /// Variables added to this process's environment (or, with `clear_env`, the whole
    /// environment).
    pub env: Vec<(OsString, OsString)>,
    pub clear_env: bool,
    /// The working directory (default: this process's).
    pub cwd: Option<std::path::PathBuf>,
    /// A file fed to standard input (default: inherited).
    pub stdin: Option<std::path::PathBuf>,
    /// A file that standard output and error are appended to (default: inherited).
    pub output: Option<std::path::PathBuf>,
}

impl Spawn {
    /// A command with this process's environment and streams.
    pub fn command(argv: Vec<OsString>) -> Spawn {
        Spawn {
            argv,
            ..Spawn::default()
        }
    }

    /// Applies environment, directory and streams to the process that will be started.
    pub(crate) fn configure(&self, cmd: &mut tokio::process::Command) -> Result<()> {
        use std::process::Stdio;
        if self.clear_env {
            cmd.env_clear();
        }
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        if let Some(dir) = &self.cwd {
            cmd.current_dir(dir);
        }
        let open = |path: &Path, write: bool| {
            let file = if write {
                std::fs::OpenOptions::new().create(true).append(true).open(path)
            } else {
                std::fs::File::open(path)
            };
            file.map_err(|e| Error::internal(format!("cannot open {}: {e}", path.display())))
        };
        match &self.stdin {
            Some(path) => cmd.stdin(Stdio::from(open(path, false)?)),
            None => cmd.stdin(Stdio::inherit()),
        };
        match &self.output {
            Some(path) => {
                let file = open(path, true)?;
                let copy = file
                    .try_clone()
                    .map_err(|e| Error::internal(format!("cannot share {}: {e}", path.display())))?;
                cmd.stdout(Stdio::from(file)).stderr(Stdio::from(copy))
            }
            None => cmd.stdout(Stdio::inherit()).stderr(Stdio::inherit()),
        };
        Ok(())
    }
}

/// Starts `spawn.argv` so that its whole process tree dies with the returned
/// [`GuardedChild`] or with this process. On unix the command runs under a guard: `guard_exe` must be a
/// binary that dispatches [`GUARD_SUBCOMMAND`] to [`run_guard`] (normally the current
/// executable); it is not used on Windows.
///
/// Unix: a command that cannot be started is reported by the guard (exit status 127 if
/// not found, 126 otherwise), not here; an error here means the guard itself could not be
/// started. Windows: it is an error here. Must be called within a tokio runtime.
pub fn spawn_guarded(spawn: &Spawn, guard_exe: &Path) -> Result<GuardedChild> {
    if spawn.argv.is_empty() {
        return Err(Error::bad_input("no command to run"));
    }
    #[cfg(unix)]
    {
        unix::spawn(spawn, guard_exe)
    }
    #[cfg(windows)]
    {
        let _ = guard_exe;
        windows::spawn(spawn)
    }
}

impl GuardedChild {
    /// The pid of the direct child: the guard on unix, the command on Windows.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Unix: the child's process group id (the guard's pid). Windows: `None`.
    pub fn pgid(&self) -> Option<u32> {
        if cfg!(unix) { Some(self.pid) } else { None }
    }

    /// Waits for the direct child to exit. Cancel-safe: dropping the future and calling
    /// again is fine, and once exited the same status is returned again.
    pub async fn wait(&mut self) -> Result<ExitStatus> {
        self.child
            .wait()
            .await
            .map_err(|e| Error::internal(format!("cannot wait for process {}: {e}", self.pid)))
    }

    /// Stops the command and its whole tree, and returns the direct child's exit status.
    ///
    /// Unix: SIGTERM to the process group; the guard is waited for up to `grace`, then the
    /// group is SIGKILLed. Descendants still in the group get what is left of `grace`, then
    /// SIGKILL, repeated every 10 ms for at most 5 s until the group is empty. Windows:
    /// `TerminateJobObject` (no grace).
    pub async fn terminate(&mut self, grace: Duration) -> Result<ExitStatus> {
        #[cfg(unix)]
        {
            unix::terminate(self, grace).await
        }
        #[cfg(windows)]
        {
            let _ = grace;
            self.job.terminate();
            self.wait().await
        }
    }

    /// After the child exited on its own: stops whatever it left in its process group —
    /// SIGTERM, up to `grace` for the group to empty, then SIGKILL until it is empty (for at
    /// most 5 s). Windows: terminates the job.
    pub async fn kill_group_leftovers(&self, grace: Duration) {
        #[cfg(unix)]
        {
            unix::kill_group_leftovers(self.pid, grace).await;
        }
        #[cfg(windows)]
        {
            let _ = grace;
            self.job.terminate();
        }
    }
}

/// The exit code a shell would report for `status`: the code, or on unix 128 + the signal
/// that killed the process.
pub fn exit_code(status: &ExitStatus) -> i32 {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(code) = status.code() {
            code
        } else if let Some(sig) = status.signal() {
            128 + sig
        } else {
            1
        }
    }
    #[cfg(windows)]
    {
        status.code().unwrap_or(1)
    }
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::process::ExitStatusExt;

    use super::*;

    #[test]
    fn exit_codes_like_a_shell() {
        assert_eq!(exit_code(&ExitStatus::from_raw(0)), 0);
        assert_eq!(exit_code(&ExitStatus::from_raw(7 << 8)), 7);
        assert_eq!(exit_code(&ExitStatus::from_raw(9)), 137);
        assert_eq!(exit_code(&ExitStatus::from_raw(15)), 143);
    }
}
