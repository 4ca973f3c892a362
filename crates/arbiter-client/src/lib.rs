//! The operations a caller runs, built from the store's single-transaction steps and what
//! only the caller's host can know (whether a process is alive).
//!
//! Layout:
//! - [`lease`]: acquire with fair waiting and same-host takeover; keep-alive.
//! - [`lock`]: run a command under a lease, stopping its whole process tree if the lease is
//!   lost.
//! - [`kv`]: watching keys.

pub mod kv;
pub mod lease;
pub mod lock;
