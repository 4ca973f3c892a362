//! Whether a lease holder is still alive.

use arbiter_core::lease::Holder;

use crate::identity::{boot_id, host_name};

/// What this host can tell about a holder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    /// Its process, or a member of its command's process group, still runs.
    Alive,
    /// It is gone: its process exited (or its pid now names another process) and its
    /// process group is empty, or this machine rebooted since it started.
    Dead,
    /// It runs on another host: only its TTL can tell.
    Unknown,
}

/// Whether `holder` is alive, as far as this host can tell.
///
/// - Another host: [`Liveness::Unknown`].
/// - Same host, another boot (both boot ids known and different): [`Liveness::Dead`] — the
///   machine rebooted, so every process of that boot is gone.
/// - Same host and boot: [`Liveness::Alive`] if process `pid` exists (and is not a zombie)
///   **and** its start time equals `holder.start_time` (a reused pid is not the holder), or
///   if `holder.pgid` names a process group that still has a member (unix; see
///   [`group_alive`]). Otherwise [`Liveness::Dead`].
pub fn liveness(holder: &Holder) -> Liveness {
    if !holder.host.eq_ignore_ascii_case(&host_name()) {
        return Liveness::Unknown;
    }
    let here = boot_id();
    if !holder.boot_id.is_empty() && !here.is_empty() && !same_boot(&holder.boot_id, &here) {
        return Liveness::Dead;
    }
    if process_is(holder.pid, holder.start_time) {
        return Liveness::Alive;
    }
    #[cfg(unix)]
    if let Some(pgid) = holder.pgid
        && group_alive(pgid)
    {
        return Liveness::Alive;
    }
    Liveness::Dead
}

/// Whether `holder` is on its way out: on this host and boot, its process is gone, but its
/// command's process group still has members (being killed by its guard, usually). It
/// counts as alive; a waiter looks again soon rather than waiting for a change.
pub fn exiting(holder: &Holder) -> bool {
    #[cfg(unix)]
    {
        holder.host.eq_ignore_ascii_case(&host_name())
            && (holder.boot_id.is_empty() || same_boot(&holder.boot_id, &boot_id()))
            && !process_is(holder.pid, holder.start_time)
            && holder.pgid.is_some_and(group_alive)
    }
    #[cfg(not(unix))]
    {
        let _ = holder;
        false
    }
}

/// Whether two boot ids name the same boot. Numeric ids are boot times in seconds, which
/// Windows computes from the uptime: they may be a second or two apart for one boot.
fn same_boot(a: &str, b: &str) -> bool {
    if a == b {
        return true;
    }
    match (a.parse::<u64>(), b.parse::<u64>()) {
        (Ok(x), Ok(y)) => x.abs_diff(y) <= 2,
        _ => false,
    }
}

/// Whether process `pid` runs and started at `start_time`.
fn process_is(pid: u32, start_time: u64) -> bool {
    #[cfg(target_os = "linux")]
    {
        crate::procfs::stat(pid).is_some_and(|st| !st.is_gone() && st.start_time == start_time)
    }
    #[cfg(not(target_os = "linux"))]
    {
        crate::identity::process_start_time(pid) == Some(start_time)
    }
}

/// Whether process group `pgid` still has a member.
///
/// Unix: `kill(-pgid, 0)` succeeds, or fails with `EPERM` (a member exists that this user
/// may not signal); `ESRCH` means empty. On Linux a group whose only members are zombies
/// (exited, waiting to be reaped by init) counts as empty. Group ids 0 and 1 are never
/// alive: signalling them would mean "my own group" and "every process".
///
/// Windows: always `false` (process groups there are not used for liveness).
pub fn group_alive(pgid: u32) -> bool {
    #[cfg(unix)]
    {
        use nix::errno::Errno;
        use nix::sys::signal::kill;
        use nix::unistd::Pid;

        let Some(raw) = crate::guarded::valid_pgid(pgid) else {
            return false;
        };
        match kill(Pid::from_raw(-raw), None) {
            Ok(()) | Err(Errno::EPERM) => {}
            Err(_) => return false,
        }
        #[cfg(target_os = "linux")]
        if crate::procfs::group_has_only_zombies(pgid) {
            return false;
        }
        true
    }
    #[cfg(windows)]
    {
        let _ = pgid;
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boots() {
        assert!(same_boot("abc", "abc"));
        assert!(!same_boot("abc", "abd"));
        assert!(same_boot("1700000000", "1700000001"));
        assert!(!same_boot("1700000000", "1700000100"));
    }

    #[test]
    fn special_groups_are_never_alive() {
        assert!(!group_alive(0));
        assert!(!group_alive(1));
        assert!(!group_alive(u32::MAX));
    }
}
