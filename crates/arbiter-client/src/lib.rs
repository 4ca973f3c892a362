//! The operations a caller runs, built from the store's single-transaction steps and what
//! only the caller's host can know (whether a process is alive).
//!
//! Layout:
//! - [`lease`]: acquire with fair waiting and same-host takeover; keep-alive.
//! - [`limit`]: taking from rate-limit buckets: waiting for a grant, and `Permits`, the
//!   batched fast path.
//! - [`lock`]: run a command under a lease, stopping its whole process tree if the lease is
//!   lost.
//! - [`kv`]: watching keys.
//! - [`log`]: following a stream.
//! - [`inbox`]: the git-native decisions drop-box (drop, sweep, `.gitattributes`).
//! - [`queue`]: work items: waiting for a claim, keeping it as a lease ([`queue::ItemKeeper`]).
//! - [`fault`]: fault points for crash tests.

pub mod fault;
pub mod inbox;
pub mod kv;
pub mod lease;
pub mod limit;
pub mod lock;
pub mod log;
pub mod queue;
