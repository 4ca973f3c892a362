//! End-to-end tests of the `arbiter` binary: real `arbiter` processes on a real SQLite file
//! and a real PostgreSQL schema, real signals, real process groups. Every scenario that
//! touches a store runs on both backends (`MODULE::sqlite::NAME`, `MODULE::postgres::NAME`);
//! the PostgreSQL half is skipped, loudly, when no server runs outside CI (see
//! `arbiter-testkit`).
//!
//! - `lock`: mutual exclusion and semaphores across processes; what `arbiter lock` does
//!   with its command (exit code, environment, release, loss, signals).
//! - `crash`: `kill -9` of holders, same-host takeover, holders on other hosts.
//! - `dashboard`: the page of `arbiter serve` in a headless Chromium, following a running
//!   loop live; hostile names shown as text.
//! - `lease`: waiting in arrival order, pid reuse, `--json` fields.
//! - `limit`: rate-limit buckets taken by 8 processes at once never over-spend; exit codes.
//! - `kv`: versioned keys, compare-and-swap under contention, watches.
//! - `bad_input`: precise errors, documented exit codes, nothing written.
//! - `store`: `store info`, and a new store opened by many processes at once.
//! - `token`: API tokens: the secret printed once and only its hash stored, revoke, expiry,
//!   the audit of refusals, bad flags.
//! - `queue`: work items: the push/claim/done round trip, exit codes 2/3/4 (nothing
//!   written, nothing changed), a waiting claim woken by a push, `queue work` (each item
//!   once, retries then dead, `retry`, SIGTERM gives items back), `[host] capabilities`,
//!   and `status` listing queues and hosts.
//! - `log`: idempotent appends from writers killed mid-run, `--follow`, consumers.
//! - `doctor`: one line per check of a machine's setup; nothing sent without `--send`.
//! - `decisions`: the render projection and the git-native drop-box, with real git.
//! - `notify`: notifications end to end through a loopback HTTP receiver.
//! - `remote`: `--server`: the same commands directly and through an `arbiter serve` child
//!   print the same bytes and exit with the same codes; token refusals exit 8; a server
//!   that is down exits 6; commands on the store itself refuse `--server`.
//! - `secrets`: passwords in store URLs never shown.
//! - `serve`: `arbiter serve` as a process: the admin token, graceful shutdown on SIGTERM
//!   and SIGINT (streams end, a waiting acquire is answered), bad flags.
//! - `pgconn`: the PostgreSQL connection: a silent server and a hung link exit 6 naming
//!   host:port; TLS `sslmode`s and client certificates against a private ssl-only server.
//! - `proxy`: `arbiter proxy github` as a process: where it listens, what it forwards, bad
//!   flags.
//! - `watch`: the supervisor: prompts, credentials, timeouts, backoff, failover, status.
//! - `issues`: `watch` taking its rounds from GitHub issues on two supervisors: each issue
//!   worked once, `needs:` labels routed by capabilities, marks, cancels, dead letters.
//! - `stall`: a holder whose store link stalls is stopped before the lease goes elsewhere.
//! - `trees`: descendants that call `setsid` die with the command (Linux).
//! - `wrappers`: a lease taken from a wrapped call in a script stays held while it lives.
//! - `faults`: linearizability of random multi-process histories with kills and server
//!   restarts, durability of acknowledged appends, fencing of frozen holders.

#![cfg(target_os = "linux")]

mod support;

mod bad_input;
mod crash;
mod dashboard;
mod decisions;
mod doctor;
mod faults;
mod issues;
mod kv;
mod lease;
mod limit;
mod lock;
mod log;
mod mcp;
mod notify;
mod pgconn;
mod proxy;
mod queue;
mod remote;
mod secrets;
mod serve;
mod stall;
mod store;
mod token;
mod trees;
mod watch;
mod wrappers;
