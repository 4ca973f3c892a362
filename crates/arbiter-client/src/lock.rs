//! Running a command under a lease (`arbiter lock`).
//!
//! The command runs in its own process group that dies with its owner (see
//! `arbiter_process::spawn_guarded`). Right after it starts, its process group is recorded
//! in the lease, so a same-host acquirer counts the holder as dead only when both this
//! process and that group are gone. The lease is renewed in the background; if it is lost,
//! the whole group is stopped (TERM, then KILL after the grace period) before this
//! returns. When the command exits on its own, whatever it left in its group is stopped
//! too, and only then is the lease released: nothing outlives the lease.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

use arbiter_core::lease::RenewRequest;
use arbiter_core::{Error, Result};
use arbiter_store::Store;

use crate::lease::{Granted, KeepAlive};

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
    /// How long the command gets between TERM and KILL.
    pub grace: Duration,
}

/// Runs `command` while holding `granted`; see the module documentation.
pub async fn run_locked(
    store: &Store,
    granted: &Granted,
    command: LockCommand,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<LockOutcome> {
    let lease = &granted.lease;
    let spawn = arbiter_process::Spawn {
        argv: command.argv,
        env: command.env,
        ..Default::default()
    };
    let mut child = match arbiter_process::spawn_guarded(&spawn, &command.guard_exe) {
        Ok(child) => child,
        Err(err) => {
            release_quietly(store, lease).await;
            return Err(err);
        }
    };
    let mut keep_alive = KeepAlive::start(store.clone(), granted);
    if let Some(pgid) = child.pgid() {
        let recorded = store
            .leases()
            .renew(RenewRequest {
                namespace: lease.namespace.clone(),
                name: lease.name.clone(),
                token: lease.token,
                ttl: None,
                pgid: Some(pgid),
            })
            .await;
        if let Err(err) = recorded {
            child.terminate(command.grace).await?;
            return Ok(LockOutcome::Lost(err));
        }
    }
    tokio::pin!(shutdown);
    let outcome = tokio::select! {
        status = child.wait() => {
            let status = status?;
            child.kill_group_leftovers(command.grace).await;
            LockOutcome::Exited(status)
        }
        err = keep_alive.lost() => {
            tracing::error!(name = %lease.name, error = %err, "lease lost; stopping the command");
            child.terminate(command.grace).await?;
            return Ok(LockOutcome::Lost(err));
        }
        () = &mut shutdown => {
            let status = child.terminate(command.grace).await?;
            LockOutcome::Interrupted(status)
        }
    };
    drop(keep_alive);
    match store.leases().release(&lease.namespace, &lease.name, lease.token).await {
        Ok(()) => Ok(outcome),
        // The command finished, but the lease ran out first: the protected work may have
        // overlapped another holder, so this is reported as a loss.
        Err(err) if err.kind == arbiter_core::ErrorKind::Lost => Ok(LockOutcome::Lost(err)),
        Err(err) => Err(err),
    }
}

async fn release_quietly(store: &Store, lease: &arbiter_core::lease::Lease) {
    if let Err(err) = store.leases().release(&lease.namespace, &lease.name, lease.token).await {
        tracing::warn!(name = %lease.name, error = %err, "could not release the lease");
    }
}
