//! Fault points: places where a test can make this process crash on purpose.
//!
//! `ARBITER_FAULT=<name>` makes [`point`]`(<name>)` abort the process at once (like a
//! `kill -9` at that exact step: no destructors, no flushing). Unset, a point costs one
//! environment lookup. The fault suite uses them to prove that a crash at each step loses
//! nothing acknowledged and leaves nothing half-done.

/// Aborts the process if `ARBITER_FAULT` names this point.
pub fn point(name: &str) {
    if std::env::var_os("ARBITER_FAULT").is_some_and(|v| v == name) {
        eprintln!("arbiter: fault point {name}: aborting on purpose (ARBITER_FAULT)");
        std::process::abort();
    }
}
