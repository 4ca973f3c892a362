//! arbiter's GitHub proxy in front of the fake, as one host of a fleet runs it: its buckets
//! and counters in an arbiter store, its GraphQL freshness window and its wait for budget
//! compressed like the fake's hour.

use anyhow::{Result, bail};

use super::Plan;

/// A running proxy: its URL, and what stops it.
pub struct Running {
    pub url: String,
}

impl Running {
    pub async fn stop(self) {}
}

pub async fn start(_upstream: &str, _plan: &Plan, _store_url: &str) -> Result<Running> {
    bail!("n/a — waiting for arbiter-github (the proxy) to land on main")
}
