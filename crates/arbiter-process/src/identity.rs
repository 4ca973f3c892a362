//! Who a process is: host, boot, pid, start time.

use arbiter_core::lease::Holder;
use arbiter_core::{Error, Result};

/// This machine's host name (lossily converted to UTF-8).
pub fn host_name() -> String {
    gethostname::gethostname().to_string_lossy().into_owned()
}

/// Identifies the current boot of this machine; `""` if the platform gives nothing.
///
/// Linux: `/proc/sys/kernel/random/boot_id`. Elsewhere: the boot time, in seconds since the
/// epoch, as a decimal string (on Windows it is computed from the uptime and may differ by
/// a second between calls: [`liveness`](crate::liveness) allows for that).
pub fn boot_id() -> String {
    #[cfg(target_os = "linux")]
    {
        std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
            .map(|s| s.trim().to_owned())
            .unwrap_or_default()
    }
    #[cfg(not(target_os = "linux"))]
    {
        sysinfo::System::boot_time().map(|t| t.to_string()).unwrap_or_default()
    }
}

/// The pid of this process.
pub fn current_pid() -> u32 {
    std::process::id()
}

/// The pid of this process's parent, if known.
pub fn parent_pid() -> Option<u32> {
    #[cfg(unix)]
    {
        u32::try_from(nix::unistd::getppid().as_raw()).ok().filter(|&p| p != 0)
    }
    #[cfg(windows)]
    {
        let me = sysinfo::Pid::from_u32(current_pid());
        let mut sys = sysinfo::System::new().ok()?;
        sys.refresh_processes_specifics(
            sysinfo::ProcessesToUpdate::Some(&[me]),
            true,
            sysinfo::ProcessRefreshKind::nothing(),
        );
        sys.process(me)?.parent().map(|p| p.as_u32())
    }
}

/// The start time of process `pid`, in a platform unit (compare only for equality); `None`
/// if there is no such process.
///
/// Linux: field 22 of `/proc/<pid>/stat` (clock ticks since boot). Elsewhere: seconds since
/// the epoch, from `sysinfo`.
pub fn process_start_time(pid: u32) -> Option<u64> {
    #[cfg(target_os = "linux")]
    {
        crate::procfs::stat(pid).map(|st| st.start_time)
    }
    #[cfg(not(target_os = "linux"))]
    {
        sysinfo_start_time(pid)
    }
}

#[cfg(not(target_os = "linux"))]
fn sysinfo_start_time(pid: u32) -> Option<u64> {
    let p = sysinfo::Pid::from_u32(pid);
    let mut sys = sysinfo::System::new().ok()?;
    sys.refresh_processes_specifics(
        sysinfo::ProcessesToUpdate::Some(&[p]),
        true,
        sysinfo::ProcessRefreshKind::nothing(),
    );
    sys.process(p).map(|proc_| proc_.start_time())
}

/// The holder identity of process `pid` on this host, for agent `agent` (no process group).
///
/// Fails ([`Internal`](arbiter_core::ErrorKind::Internal)) if there is no such process.
pub fn holder_for(pid: u32, agent: &str) -> Result<Holder> {
    let start_time = process_start_time(pid)
        .ok_or_else(|| Error::internal(format!("cannot identify process {pid}: no such process")))?;
    Ok(Holder {
        host: host_name(),
        boot_id: boot_id(),
        pid,
        start_time,
        agent: agent.to_owned(),
        pgid: None,
    })
}

/// Programs that run a command and exit with it: a lease taken under one of them belongs
/// to whoever ran the wrapper.
const WRAPPERS: &[&str] = &[
    "timeout", "xargs", "env", "nice", "nohup", "stdbuf", "ionice", "chrt", "taskset", "time", "setsid", "flock",
    "sudo", "doas",
];

/// The holder for a one-shot command run by a script (`arbiter lease acquire`): the
/// process that called it, walking past short-lived wrappers — known ones (`timeout`,
/// `xargs`, `env`, `nice`, `nohup`, …) and forked subshells (`$(…)`, a pipeline's
/// members: same executable and command line as their parent) — with that process's
/// group recorded too, so the holder counts as alive while any process of the script's
/// group lives (a `sh -c` wrapper, a pipeline, the script itself). Linux walks `/proc`;
/// elsewhere the parent is the holder, with its group.
pub fn caller_holder(agent: &str) -> Result<Holder> {
    let parent = parent_pid().ok_or_else(|| Error::internal("cannot tell which process ran this command"))?;
    let pid = past_wrappers(parent);
    let mut holder = holder_for(pid, agent)?;
    holder.pgid = process_group(pid).filter(|&g| g > 1);
    Ok(holder)
}

/// Walks from `pid` up past wrappers and forked subshells (at most 16 steps).
fn past_wrappers(pid: u32) -> u32 {
    #[cfg(target_os = "linux")]
    {
        let mut pid = pid;
        for _ in 0..16 {
            let Some(parent) = crate::procfs::stat(pid).map(|st| st.ppid).filter(|&p| p > 1) else {
                break;
            };
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            let wrapper = WRAPPERS.contains(&comm.trim());
            let cmdline = |p: u32| std::fs::read(format!("/proc/{p}/cmdline")).ok();
            let exe = |p: u32| std::fs::read_link(format!("/proc/{p}/exe")).ok();
            let subshell = cmdline(pid).is_some() && cmdline(pid) == cmdline(parent) && exe(pid) == exe(parent);
            if !wrapper && !subshell {
                break;
            }
            pid = parent;
        }
        pid
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = WRAPPERS;
        pid
    }
}

/// The process group of process `pid`, if it exists (Windows: none).
fn process_group(pid: u32) -> Option<u32> {
    #[cfg(target_os = "linux")]
    {
        crate::procfs::stat(pid).map(|st| st.pgrp)
    }
    #[cfg(all(unix, not(target_os = "linux")))]
    {
        let raw = i32::try_from(pid).ok()?;
        nix::unistd::getpgid(Some(nix::unistd::Pid::from_raw(raw)))
            .ok()
            .and_then(|g| u32::try_from(g.as_raw()).ok())
    }
    #[cfg(windows)]
    {
        let _ = pid;
        None
    }
}
