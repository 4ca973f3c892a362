//! Reading `/proc` (Linux only): the one parser of `/proc/<pid>/stat`, used by arbiter and
//! by the tests that look at processes.

use std::fs;

/// The fields of `/proc/<pid>/stat` that arbiter and its tests use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcStat {
    /// Field 1: the process id.
    pub pid: u32,
    /// Field 2: the command name (at most 15 bytes), without its parentheses.
    pub comm: String,
    /// Field 3: `R`, `S`, `D`, `Z` (zombie), `X` (dead), …
    pub state: char,
    /// Field 4: the parent's pid.
    pub ppid: u32,
    /// Field 5: the process group id.
    pub pgrp: u32,
    /// Fields 14 and 15: CPU time in user and in kernel mode, in clock ticks.
    pub utime: u64,
    pub stime: u64,
    /// Field 22: start time, in clock ticks since boot.
    pub start_time: u64,
}

impl ProcStat {
    /// A zombie (exited, not yet reaped) or dead process: it runs no more code.
    pub fn is_gone(&self) -> bool {
        matches!(self.state, 'Z' | 'X' | 'x')
    }
}

/// Parses one `/proc/<pid>/stat` line.
///
/// Field 2 (`comm`, the command name) is in parentheses and may itself contain spaces and
/// parentheses, so the fields after it are found after the **last** `)` of the line.
pub fn parse_stat(line: &str) -> Option<ProcStat> {
    let (head, rest) = line.rsplit_once(')')?;
    let (pid, comm) = head.split_once(" (")?;
    let pid = pid.trim().parse().ok()?;
    let mut fields = rest.split_ascii_whitespace();
    // `rest` starts at field 3.
    let state = fields.next()?;
    let mut state_chars = state.chars();
    let state_char = state_chars.next()?;
    if state_chars.next().is_some() {
        return None;
    }
    let ppid = fields.next()?.parse().ok()?; // field 4
    let pgrp = fields.next()?.parse().ok()?; // field 5
    // Fields 6..=13 are 8 fields; fields 14 and 15 come after them.
    let utime = fields.nth(8)?.parse().ok()?;
    let stime = fields.next()?.parse().ok()?;
    // Fields 16..=21 are 6 fields; field 22 comes after them.
    let start_time = fields.nth(6)?.parse().ok()?;
    Some(ProcStat {
        pid,
        comm: comm.to_string(),
        state: state_char,
        ppid,
        pgrp,
        utime,
        stime,
        start_time,
    })
}

/// Reads and parses `/proc/<pid>/stat`; `None` if there is no such process.
pub fn stat(pid: u32) -> Option<ProcStat> {
    let line = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&line)
}

/// Whether every process of group `pgid` that `/proc` shows is a zombie, and it shows at
/// least one. `kill(-pgid, 0)` counts zombies as members, and orphaned zombies are reaped
/// only when init gets to it (a second or more in some containers and VMs): a group of
/// zombies runs no code, so for arbiter it is empty.
pub(crate) fn group_has_only_zombies(pgid: u32) -> bool {
    let Ok(entries) = fs::read_dir("/proc") else {
        return false;
    };
    let mut zombies = false;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        // A process that vanished meanwhile is simply not a member any more.
        let Some(st) = stat(pid) else { continue };
        if st.pgrp != pgid {
            continue;
        }
        if st.is_gone() {
            zombies = true;
        } else {
            return false;
        }
    }
    zombies
}

/// Every process `/proc` shows (zombies too: see [`ProcStat::is_gone`]).
pub fn all() -> Vec<ProcStat> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(stat)
        .collect()
}

/// The live (non-zombie) members of process group `pgid`.
pub fn group_members(pgid: u32) -> Vec<ProcStat> {
    all()
        .into_iter()
        .filter(|st| st.pgrp == pgid && !st.is_gone())
        .collect()
}

/// The live descendants of `root` (not `root` itself), with their process groups: its
/// children, their children, and so on. A child subreaper's descendants include the
/// orphans of its descendants, whatever session or group they moved to.
pub(crate) fn descendants(root: u32) -> Vec<(u32, i64)> {
    let procs = all();
    let mut found: Vec<(u32, i64)> = Vec::new();
    let mut frontier = vec![root];
    while let Some(parent) = frontier.pop() {
        for st in &procs {
            let pid = st.pid;
            if st.ppid == parent && pid != root && !found.iter().any(|&(p, _)| p == pid) {
                frontier.push(pid);
                if !st.is_gone() {
                    found.push((pid, i64::from(st.pgrp)));
                }
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    const PLAIN: &str = "1234 (bash) S 1200 1234 1234 34816 5678 4194304 2961 31477 0 6 \
                         4 3 37 22 20 0 1 0 987654 9437184 1312 18446744073709551615 1 1 0 0 \
                         0 0 65536 3686404 1266761467 0 0 0 17 1 0 0 0 0 0 0 0 0 0 0 0 0 0";

    #[test]
    fn parses_a_plain_line() {
        let st = parse_stat(PLAIN).unwrap();
        assert_eq!(
            st,
            ProcStat {
                pid: 1234,
                comm: "bash".into(),
                state: 'S',
                ppid: 1200,
                pgrp: 1234,
                utime: 4,
                stime: 3,
                start_time: 987654
            }
        );
    }

    #[test]
    fn comm_with_spaces_and_parens() {
        let line = "42 (a) b ) (c)) Z 1 77 77 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 \
                    5555 0 0 18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0";
        let st = parse_stat(line).unwrap();
        assert_eq!(
            st,
            ProcStat {
                pid: 42,
                comm: "a) b ) (c)".into(),
                state: 'Z',
                ppid: 1,
                pgrp: 77,
                utime: 0,
                stime: 0,
                start_time: 5555
            }
        );
        assert!(st.is_gone());
    }

    #[test]
    fn rejects_garbage() {
        assert_eq!(parse_stat(""), None);
        assert_eq!(parse_stat("12 (x"), None);
        assert_eq!(parse_stat("12 (x) S 1 2 3"), None);
        assert_eq!(
            parse_stat("12 (x) SS 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20"),
            None
        );
    }

    #[test]
    fn reads_this_process() {
        let st = stat(std::process::id()).unwrap();
        assert!(!st.is_gone());
        assert!(st.start_time > 0);
    }
}
