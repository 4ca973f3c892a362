//! The unix guard (see the parent module's docs for the design).

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::process::ExitStatus;
use std::time::Duration;

use arbiter_core::{Error, Result};
use nix::errno::Errno;
use nix::fcntl::{FcntlArg, FdFlag, fcntl};
use nix::libc;
use nix::sys::signal::{self, SigHandler, Signal};
use nix::unistd::{self, Pid};
use tokio::time::Instant;

use super::{GUARD_SUBCOMMAND, GuardedChild, exit_code};
use crate::liveness::group_alive;

/// How long SIGKILL is repeated, at most, until a process group is empty.
const KILL_BOUND: Duration = Duration::from_secs(5);
/// How often a process group is checked while waiting for it to empty.
const POLL: Duration = Duration::from_millis(10);

/// `pgid` as a process group that may be signalled: 0 would mean the caller's own group and
/// 1 (through `kill(-1)`) every process, so both are refused.
pub(crate) fn valid_pgid(pgid: u32) -> Option<i32> {
    i32::try_from(pgid).ok().filter(|&g| g > 1)
}

/// Sends `sig` to process group `pgid`; an empty group is not an error.
fn signal_group(pgid: u32, sig: Signal) {
    let Some(g) = valid_pgid(pgid) else { return };
    match signal::killpg(Pid::from_raw(g), sig) {
        Ok(()) | Err(Errno::ESRCH) => {}
        Err(e) => tracing::warn!(pgid, signal = ?sig, "cannot signal process group: {e}"),
    }
}

/// A pipe whose both ends are close-on-exec.
fn lifeline_pipe() -> Result<(OwnedFd, OwnedFd)> {
    let cannot = |e: Errno| Error::internal(format!("cannot create a pipe: {e}"));
    #[cfg(target_os = "linux")]
    {
        unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(cannot)
    }
    #[cfg(not(target_os = "linux"))]
    {
        // No pipe2 on macOS: a process spawned by another thread in between may inherit
        // the ends until its exec, which closes them.
        let (r, w) = unistd::pipe().map_err(cannot)?;
        for fd in [&r, &w] {
            fcntl(fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC)).map_err(cannot)?;
        }
        Ok((r, w))
    }
}

/// Clears close-on-exec on `fd`. Async-signal-safe: called between fork and exec.
fn clear_cloexec(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl on a descriptor number touches no memory of ours.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: as above.
    if unsafe { libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

pub(super) fn spawn(spawn: &super::Spawn, guard_exe: &Path) -> Result<GuardedChild> {
    let (read_end, write_end) = lifeline_pipe()?;
    let read_fd = read_end.as_raw_fd();
    let mut cmd = tokio::process::Command::new(guard_exe);
    cmd.arg(GUARD_SUBCOMMAND)
        .arg(read_fd.to_string())
        .arg("--")
        .args(&spawn.argv)
        .process_group(0)
        .kill_on_drop(false);
    // The guard passes its environment, directory and streams on to the command.
    spawn.configure(&mut cmd)?;
    // SAFETY: the closure runs in the forked child before exec; it only calls fcntl, which
    // is async-signal-safe, on a descriptor number copied in, and allocates nothing.
    unsafe {
        cmd.pre_exec(move || clear_cloexec(read_fd));
    }
    let child = cmd
        .spawn()
        .map_err(|e| Error::internal(format!("cannot start the guard {}: {e}", guard_exe.display())))?;
    // Only the guard keeps the read end: were it kept here too, the guard would never see
    // the end of file that tells it this process is gone.
    drop(read_end);
    let pid = child
        .id()
        .ok_or_else(|| Error::internal("the guard exited before its pid was known"))?;
    Ok(GuardedChild {
        child,
        pid,
        _lifeline: write_end,
    })
}

pub(super) async fn terminate(child: &mut GuardedChild, grace: Duration) -> Result<ExitStatus> {
    let pgid = child.pid;
    if let Ok(Some(status)) = child.child.try_wait() {
        // Exited already: only its leftovers may remain.
        kill_group_leftovers(pgid, grace).await;
        return Ok(status);
    }
    let deadline = Instant::now() + grace;
    signal_group(pgid, Signal::SIGTERM);
    for pid in escapees(pgid) {
        signal_pid(pid, Signal::SIGTERM);
    }
    let status = match tokio::time::timeout(grace, child.wait()).await {
        Ok(status) => status?,
        Err(_) => {
            kill_tree(pgid).await;
            tokio::time::timeout(KILL_BOUND, child.wait())
                .await
                .map_err(|_| Error::internal(format!("process {pgid} did not exit after SIGKILL")))??
        }
    };
    // The guard is gone; descendants that handle SIGTERM get the rest of the grace period.
    wait_group_empty(pgid, deadline).await;
    kill_group(pgid).await;
    Ok(status)
}

pub(super) async fn kill_group_leftovers(pgid: u32, grace: Duration) {
    if !group_alive(pgid) {
        return;
    }
    tracing::debug!(pgid, "stopping what the command left in its process group");
    signal_group(pgid, Signal::SIGTERM);
    wait_group_empty(pgid, Instant::now() + grace).await;
    kill_group(pgid).await;
}

/// Waits until group `pgid` is empty or `deadline` passes; true if it is empty.
async fn wait_group_empty(pgid: u32, deadline: Instant) -> bool {
    loop {
        if !group_alive(pgid) {
            return true;
        }
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        tokio::time::sleep(POLL.min(deadline - now)).await;
    }
}

/// Sends `sig` to process `pid`; a process already gone is not an error.
fn signal_pid(pid: u32, sig: Signal) {
    let Ok(raw) = i32::try_from(pid) else { return };
    if raw > 1 {
        let _ = signal::kill(Pid::from_raw(raw), sig);
    }
}

/// The live descendants of the guard `guard` that left its process group (`setsid`,
/// `setpgid`). Linux: the guard is a child subreaper, so orphans that left the group are
/// still its descendants. Elsewhere: none can be found.
fn escapees(guard: u32) -> Vec<u32> {
    #[cfg(target_os = "linux")]
    {
        crate::procfs::descendants(guard)
            .into_iter()
            .filter(|&(_, pgrp)| pgrp != i64::from(guard))
            .map(|(pid, _)| pid)
            .collect()
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = guard;
        Vec::new()
    }
}

/// Kills the guard `pgid`'s whole tree while the guard still lives (so that every
/// descendant can be found through it): stops the group (no member forks any more), kills
/// the descendants outside the group until none is left (for at most [`KILL_BOUND`]), then
/// the group.
async fn kill_tree(pgid: u32) {
    if cfg!(target_os = "linux") {
        signal_group(pgid, Signal::SIGSTOP);
        let deadline = Instant::now() + KILL_BOUND;
        loop {
            let found = escapees(pgid);
            if found.is_empty() || Instant::now() >= deadline {
                break;
            }
            for pid in found {
                signal_pid(pid, Signal::SIGKILL);
            }
            tokio::time::sleep(POLL).await;
        }
    }
    signal_group(pgid, Signal::SIGKILL);
}

/// SIGKILLs group `pgid` until it is empty, for at most [`KILL_BOUND`].
async fn kill_group(pgid: u32) {
    let deadline = Instant::now() + KILL_BOUND;
    loop {
        if !group_alive(pgid) {
            return;
        }
        signal_group(pgid, Signal::SIGKILL);
        if Instant::now() >= deadline {
            tracing::warn!(pgid, "process group still has members after SIGKILL");
            return;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Runs the guard if `args` (the whole command line, program name first) ask for it —
/// `EXE __guard <fd> -- CMD…` — and returns its exit code (the caller exits with it);
/// `None` if they do not. Malformed guard arguments give 126.
pub fn guard_main(args: &[OsString]) -> Option<i32> {
    if args.get(1).map(OsString::as_os_str) != Some(OsStr::new(GUARD_SUBCOMMAND)) {
        return None;
    }
    let fd = args.get(2).and_then(|a| a.to_str()).and_then(|s| s.parse::<i32>().ok());
    let separated = args.get(3).is_some_and(|a| a == OsStr::new("--"));
    match fd {
        Some(fd) if separated => Some(run_guard(fd, &args[4..])),
        _ => {
            eprintln!("arbiter: usage: arbiter {GUARD_SUBCOMMAND} <fd> -- COMMAND [ARG]...");
            Some(126)
        }
    }
}

/// The guard: runs `argv` in this process's group, kills the whole group when the lifeline
/// `lifeline_fd` reaches end of file, and returns the command's [`exit_code`] (127 if it
/// was not found, 126 if it could not be started otherwise, 137 if the lifeline broke).
///
/// Expects to be the leader of its own process group, as [`spawn_guarded`](crate::spawn_guarded)
/// arranges; if it is not, only the command is killed when the lifeline breaks.
pub fn run_guard(lifeline_fd: i32, argv: &[OsString]) -> i32 {
    let Some(program) = argv.first() else {
        eprintln!("arbiter: no command to run");
        return 126;
    };
    // SAFETY: fcntl on a descriptor number touches no memory of ours.
    if lifeline_fd <= 2 || unsafe { libc::fcntl(lifeline_fd, libc::F_GETFD) } < 0 {
        eprintln!("arbiter: {GUARD_SUBCOMMAND}: {lifeline_fd} is not an open lifeline descriptor");
        return 126;
    }
    // SAFETY: the descriptor is open (checked above) and was handed to this process for it
    // alone; nothing else here uses it.
    let lifeline = unsafe { OwnedFd::from_raw_fd(lifeline_fd) };
    if let Err(e) = fcntl(&lifeline, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC)) {
        eprintln!("arbiter: {GUARD_SUBCOMMAND}: cannot set close-on-exec on the lifeline: {e}");
        return 126;
    }

    let mut cmd = std::process::Command::new(program);
    cmd.args(&argv[1..]);
    // Linux: a child subreaper adopts the orphans of its descendants, so descendants that
    // leave the process group (`setsid`) can still be found and killed through it.
    #[cfg(target_os = "linux")]
    if let Err(e) = nix::sys::prctl::set_child_subreaper(true) {
        eprintln!("arbiter: {GUARD_SUBCOMMAND}: cannot become a child subreaper: {e}");
    }
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::process::CommandExt;
        let guard = unistd::getpid();
        // SAFETY: runs between fork and exec; prctl and getppid are async-signal-safe and
        // nothing allocates (an io::Error from an errno does not).
        unsafe {
            cmd.pre_exec(move || {
                nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(io::Error::from)?;
                // The guard may have died before the death signal was armed.
                if unistd::getppid() != guard {
                    return Err(io::Error::from_raw_os_error(libc::ESRCH));
                }
                Ok(())
            });
        }
    }
    // Spawned from this (the main) thread: the death signal follows the thread that forked.
    let mut child = match cmd.spawn() {
        Ok(child) => child,
        Err(e) => {
            eprintln!("arbiter: cannot run {}: {e}", program.to_string_lossy());
            return if e.kind() == io::ErrorKind::NotFound { 127 } else { 126 };
        }
    };
    // Only now, so that the command does not inherit the ignored dispositions.
    for sig in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        // SAFETY: SIG_IGN installs no handler code.
        let _ = unsafe { signal::signal(sig, SigHandler::SigIgn) };
    }
    let command = child.id();
    if let Err(e) = std::thread::Builder::new()
        .name("lifeline".into())
        .spawn(move || watch_lifeline(&lifeline, command))
    {
        eprintln!("arbiter: {GUARD_SUBCOMMAND}: cannot watch the lifeline: {e}");
        kill_own_group(command);
        return 137;
    }
    match child.wait() {
        Ok(status) => {
            // What left the group dies with the command; the rest of the group is the
            // owner's to stop (TERM, its grace, KILL).
            kill_escapees();
            exit_code(&status)
        }
        Err(e) => {
            eprintln!(
                "arbiter: {GUARD_SUBCOMMAND}: cannot wait for {}: {e}",
                program.to_string_lossy()
            );
            kill_own_group(command);
            137
        }
    }
}

/// Blocks until the lifeline breaks, then kills the whole group and exits.
fn watch_lifeline(lifeline: &OwnedFd, command: u32) -> ! {
    let mut buf = [0u8; 64];
    loop {
        match unistd::read(lifeline, &mut buf) {
            Ok(0) => break,
            Ok(_) | Err(Errno::EINTR) => {}
            Err(_) => break,
        }
    }
    kill_escapees();
    kill_own_group(command);
    std::process::exit(137)
}

/// In the guard: SIGKILLs every descendant that left its process group, until none is left
/// (bounded). Linux only (the guard is a child subreaper there).
fn kill_escapees() {
    let me = std::process::id();
    for _ in 0..500 {
        let found = escapees(me);
        if found.is_empty() {
            return;
        }
        for pid in found {
            signal_pid(pid, Signal::SIGKILL);
        }
        std::thread::sleep(POLL);
    }
}

/// SIGKILLs this process's group (this process included) if it leads it, else only the
/// command.
fn kill_own_group(command: u32) {
    let me = unistd::getpid();
    if unistd::getpgrp() == me {
        let _ = signal::killpg(me, Signal::SIGKILL);
    } else if let Ok(pid) = i32::try_from(command) {
        let _ = signal::kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
}
