//! Processes, portably.
//!
//! Three things arbiter needs from the operating system, behind one small API:
//!
//! - **Identity** ([`host_name`], [`boot_id`], [`current_pid`], [`process_start_time`],
//!   [`holder_for`]): enough to name a process unambiguously. A pid alone is not: pids are
//!   reused, and they restart at every boot. Host, boot id, pid and the process's start time
//!   together are.
//! - **Liveness** ([`liveness`], [`group_alive`]): whether the holder of a lease is still
//!   there, so that a lease whose holder is gone from this host can be taken over at once
//!   instead of after its TTL. A holder on another host is [`Liveness::Unknown`]: only its
//!   TTL can tell.
//! - **Guarded commands** ([`spawn_guarded`], [`GuardedChild`]): a command whose whole
//!   process tree dies with its owner, and that the owner can stop as a whole (TERM, then
//!   KILL) — what `arbiter lock -- CMD…` needs when the lease is lost or arbiter dies. The
//!   design, per platform, is written at the top of `src/guarded/mod.rs`.
//!
//! - **Filesystems** ([`disk`]): whether a path is on a network filesystem.
//! - **Private files** ([`private`]): 0600 files and 0700 directories, never through a
//!   planted symlink.
//!
//! Linux is fully supported and tested. macOS and Windows code paths are kept small, behind
//! `#[cfg]`, and are not compiled in this repository's CI.

#[cfg(not(any(unix, windows)))]
compile_error!("arbiter-process supports unix and windows only");

pub mod disk;
mod guarded;
mod identity;
mod liveness;
pub mod private;
#[cfg(target_os = "linux")]
pub mod procfs;

pub use guarded::{GUARD_SUBCOMMAND, GuardedChild, Spawn, exit_code, spawn_guarded};
#[cfg(unix)]
pub use guarded::{guard_main, run_guard};
pub use identity::{boot_id, caller_holder, current_pid, holder_for, host_name, parent_pid, process_start_time};
pub use liveness::{Liveness, exiting, group_alive, liveness};
