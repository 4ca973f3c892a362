//! Round logs: `<log_dir>/<namespace>/<loop>/<round>.log`, private, the newest kept.

use std::path::{Path, PathBuf};

use arbiter_core::Result;
use arbiter_core::name::{LoopName, Namespace};
use arbiter_store::RoundLogPath;

/// The loop's log directory, created 0700 (and its namespace's), never through a planted
/// link: round logs hold agent output and errors.
pub(crate) fn loop_dir(log_dir: &Path, ns: &Namespace, name: &LoopName) -> Result<PathBuf> {
    let ns_dir = log_dir.join(ns.as_str());
    let dir = ns_dir.join(name.as_str());
    arbiter_process::private::private_dir(&ns_dir)?;
    arbiter_process::private::private_dir(&dir)?;
    Ok(dir)
}

/// A round's log in the loop's directory.
pub(crate) fn round_log(dir: &Path, round: i64) -> PathBuf {
    dir.join(format!("{round}.log"))
}

/// How the store names a round's log while it takes the round's number (see
/// `LoopStore::begin_round`): [`round_log`].
pub(crate) fn round_log_namer(dir: &Path) -> RoundLogPath {
    let dir = dir.to_path_buf();
    Box::new(move |round| round_log(&dir, round).to_string_lossy().into_owned())
}

/// Keeps the newest `keep` round logs of a loop.
pub(crate) fn prune(dir: &Path, keep: usize) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    let mut logs: Vec<(i64, PathBuf)> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.strip_suffix(".log")
                .and_then(|n| n.parse().ok())
                .map(|n| (n, e.path()))
        })
        .collect();
    logs.sort();
    let excess = logs.len().saturating_sub(keep);
    for (_, path) in logs.into_iter().take(excess) {
        let _ = std::fs::remove_file(path);
    }
}
