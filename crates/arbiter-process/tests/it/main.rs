//! Integration tests of arbiter-process, with real processes (Linux only).
//!
//! # How the tests find the guard binary
//!
//! This test binary is its own guard. It is built with `harness = false` (see the
//! `[[test]]` section of Cargo.toml), and its `main` first hands a `__guard <fd> -- CMD…`
//! command line to `arbiter_process::guard_main`, exactly as the arbiter binary does; so the
//! tests pass `std::env::current_exe()` as `guard_exe`. Nothing else has to be built (no
//! extra bin target in the workspace, no example that `cargo test --test it` would skip).
//! The same binary also has an `__owner` mode: a process that spawns a guarded command,
//! prints its process group id, and waits, so that a test can `kill -9` a real owner.
//!
//! Otherwise `main` runs the tests below one after another with a minimal runner:
//! arguments not starting with `-` filter test names by substring, `--list` lists them,
//! other flags are ignored. Every wait is bounded.

#[cfg(target_os = "linux")]
mod linux;

#[cfg(target_os = "linux")]
fn main() -> std::process::ExitCode {
    linux::main()
}

#[cfg(not(target_os = "linux"))]
fn main() {}
