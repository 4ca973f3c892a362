//! `arbiter mcp`: the MCP tools (arbiter-mcp) over standard input and output, for an
//! agent's MCP client to start as a subprocess.

use std::sync::Arc;

use arbiter_config::Config;
use arbiter_core::Result;
use clap::Args;

use super::Global;
use crate::exit;

/// The help text of `arbiter mcp`.
pub const LONG_ABOUT: &str = "\
Serve arbiter's MCP tools (lease_acquire, lease_renew, lease_release, lease_show, kv_get,
kv_put, kv_cas, kv_list, decide, notify, limit_take, log_append, log_read, status) over
standard input and output, until the client closes them. Configure it in an MCP client as
the command `arbiter mcp` (with --store, or ARBITER_STORE, as every command).

Leases taken through it are held by this process: on this host they are free again as
soon as it exits. Notifications are routed by the configuration (--config). Standard
output carries only MCP messages; logs go to standard error (ARBITER_LOG).";

#[derive(Debug, Args)]
pub struct McpArgs {}

pub async fn run(_args: McpArgs, global: &Global) -> Result<i32> {
    let config = Arc::new(Config::load(global.config.as_deref())?);
    let (store, _) = global.open().await?;
    arbiter_mcp::serve_stdio(store, config).await?;
    Ok(exit::SUCCESS)
}
