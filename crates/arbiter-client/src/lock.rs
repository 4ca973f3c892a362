//! Running a command under a lease (`arbiter lock`).
//!
//! The command runs in its own process group that dies with its owner (see
//! `arbiter_process::spawn_guarded`). Right after it starts, its process group is recorded
//! in the lease, so a same-host acquirer counts the holder as dead only when both this
//! process and that group are gone. The lease is kept by a [`HeldLease`]; if it is lost —
//! by the store's answer or by the holder's own deadline rule (see
//! [`Deadlines`](crate::lease::Deadlines)) — the whole process tree is stopped (TERM, then
//! KILL after the grace period) before this returns, early enough that it is gone before
//! the store could grant the lease to anyone else. When the command exits on its own,
//! whatever it left behind is stopped too, and only then is the lease released: nothing
//! outlives the lease.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitStatus;

use arbiter_core::{Error, ErrorKind, Result};

use crate::lease::{HeldLease, LeaseKeeper};

/// How a command run under a lease ended.
#[derive(Debug)]
pub enum LockOutcome {
    /// The command exited by itself; the lease was released.
    Exited(ExitStatus),
    /// The lease was lost; the command was stopped.
    Lost(Error),
    /// `shutdown` fired (a signal to the owner); the command was stopped, the lease released.
    Interrupted(ExitStatus),
}

pub struct LockCommand {
    pub argv: Vec<OsString>,
    pub env: Vec<(OsString, OsString)>,
    /// The executable that implements the process guard (the `arbiter` binary itself).
    pub guard_exe: PathBuf,
}

/// Runs `command` while holding `held` (whose grace, `held.deadlines().grace`, is the time
/// the command gets between TERM and KILL); see the module documentation.
pub async fn run_locked<K: LeaseKeeper>(
    mut held: HeldLease<K>,
    command: LockCommand,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<LockOutcome> {
    let grace = held.deadlines().grace;
    let spawn = arbiter_process::Spawn {
        argv: command.argv,
        env: command.env,
        ..Default::default()
    };
    let mut child = match arbiter_process::spawn_guarded(&spawn, &command.guard_exe) {
        Ok(child) => child,
        Err(err) => {
            if let Err(e) = held.release().await {
                tracing::warn!(error = %e, "could not release the lease");
            }
            return Err(err);
        }
    };
    if let Some(pgid) = child.pgid()
        && let Err(err) = held.record_pgid(pgid).await
    {
        child.terminate(grace).await?;
        return Ok(LockOutcome::Lost(err));
    }
    tokio::pin!(shutdown);
    let outcome = tokio::select! {
        status = child.wait() => {
            let status = status?;
            child.kill_group_leftovers(grace).await;
            LockOutcome::Exited(status)
        }
        err = held.lost() => {
            tracing::error!(name = %held.name(), error = %err, "lease lost; stopping the command");
            child.terminate(grace).await?;
            return Ok(LockOutcome::Lost(err));
        }
        () = &mut shutdown => {
            let status = child.terminate(grace).await?;
            LockOutcome::Interrupted(status)
        }
    };
    match held.release().await {
        Ok(()) => Ok(outcome),
        // The command finished, but the lease ran out first: the protected work may have
        // overlapped another holder, so this is reported as a loss.
        Err(err) if err.kind == ErrorKind::Lost => Ok(LockOutcome::Lost(err)),
        Err(err) => Err(err),
    }
}
