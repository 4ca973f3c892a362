//! arbiter's operations: one typed async function per operation, under every front end.
//!
//! The CLI calls these today; the HTTP server and its MCP endpoint will call the same
//! functions. A front end only turns its input into the validated types taken here (the
//! `arbiter_core::name` newtypes, `Duration`, the request structs), calls one function,
//! and renders what comes back:
//!
//! - **Inputs** are validated types, so an operation never re-checks a name or a duration.
//!   What can be checked without the store is checked by a function a front end calls
//!   before it opens the store (`kv::Value::parse`, `decisions::record`, `notify::route`),
//!   so bad input writes nothing.
//! - **Outputs** are views: `serde::Serialize` structs with stable field names, computed
//!   once here (the fleet's "lost" loops, a consumer's offset), never rebuilt by a front end.
//! - **Failures** are `arbiter_core::Error`: a kind, a message for a person, and for some
//!   kinds the state behind it as data (`Detail::Held { holders, waiters_ahead }`,
//!   `Detail::Conflict { current_version }`), attached where the failure is found and
//!   passed through here untouched.
//!
//! Each front end maps `ErrorKind` to its own codes in exactly one place: the CLI's exit
//! codes in `crates/arbiter/src/exit.rs`; the server's HTTP statuses will be one function
//! in its own `status.rs`, beside its routes, not here: this crate knows no transport.
//!
//! Layout: [`lease`], [`limit`] (rate-limit buckets and shared counters), [`kv`], [`log`], [`decisions`] (the decisions log and the git
//! drop-box), [`notify`] (notifications, the outbox, channels), [`queue`] (work items, hosts' capabilities), [`fleet`] (the loops as
//! `arbiter status` shows them), [`store`], [`token`] (API tokens and the audit of refusals), and [`view`] (the shared views and the one
//! way a store time is shown).
//!
//! Long-running runtimes are not operations: `watch` (the supervisor), `dispatch` (the
//! dispatcher) and `lock` (a command under a lease) are started by the front end itself.

pub mod decisions;
pub mod fleet;
pub mod kv;
pub mod lease;
pub mod limit;
pub mod log;
pub mod notify;
pub mod queue;
pub mod store;
pub mod token;
pub mod view;

#[cfg(test)]
mod testing {
    use arbiter_store::{Store, StoreUrl};
    use arbiter_testkit::TempSqlite;

    /// A fresh SQLite store; it lives as long as the returned directory.
    pub async fn temp_store() -> (TempSqlite, Store) {
        let dir = TempSqlite::new();
        let url = StoreUrl::parse(&dir.url()).expect("a temp store URL parses");
        let store = Store::open(&url).await.expect("a temp store opens");
        (dir, store)
    }
}
