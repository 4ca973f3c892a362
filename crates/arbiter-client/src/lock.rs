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
    let spawn = arbiter_process::Spawn {
        argv: command.argv,
        env: command.env,
        ..Default::default()
    };
    let outcome = match run_held(&mut held, &spawn, &command.guard_exe, shutdown).await {
        Ok(Ran::Exited(status)) => LockOutcome::Exited(status),
        Ok(Ran::Interrupted(status)) => LockOutcome::Interrupted(status),
        Ok(Ran::Lost(err)) => return Ok(LockOutcome::Lost(err)),
        Err(err) => {
            if let Err(e) = held.release().await {
                tracing::warn!(error = %e, "could not release the lease");
            }
            return Err(err);
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

/// How a command run under a held lease ended (the lease is neither released nor
/// reported yet: that is the caller's, which differs between `lock` and `queue work`).
#[derive(Debug)]
pub(crate) enum Ran {
    /// The command exited by itself; whatever it left in its group was stopped.
    Exited(ExitStatus),
    /// The lease was lost; the command's whole tree was stopped (TERM, KILL after grace).
    Lost(Error),
    /// `shutdown` fired; the command's whole tree was stopped.
    Interrupted(ExitStatus),
}

/// The part `lock` and `queue work` share: starts `spawn` guarded (its tree dies with this
/// process), records its process group in the lease, and waits for the first of: the
/// command's exit, the lease's loss, `shutdown`. An error means the command could not be
/// started (the lease is still held) or could not be waited for.
pub(crate) async fn run_held<K: LeaseKeeper>(
    held: &mut HeldLease<K>,
    spawn: &arbiter_process::Spawn,
    guard_exe: &std::path::Path,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<Ran> {
    let grace = held.deadlines().grace;
    let mut child = arbiter_process::spawn_guarded(spawn, guard_exe)?;
    if let Some(pgid) = child.pgid()
        && let Err(err) = held.record_pgid(pgid).await
    {
        child.terminate(grace).await?;
        return Ok(Ran::Lost(err));
    }
    tokio::pin!(shutdown);
    Ok(tokio::select! {
        status = child.wait() => {
            let status = status?;
            child.kill_group_leftovers(grace).await;
            Ran::Exited(status)
        }
        err = held.lost() => {
            tracing::error!(name = %held.name(), error = %err, "lease lost; stopping the command");
            child.terminate(grace).await?;
            Ran::Lost(err)
        }
        () = &mut shutdown => {
            let status = child.terminate(grace).await?;
            Ran::Interrupted(status)
        }
    })
}
