//! What goes over the wire besides the operations' views: request bodies, query strings and
//! the error body. `pub`, Serialize and Deserialize, so a remote client (`--server`)
//! builds its requests from these very types and cannot drift from the server.
//!
//! Bodies refuse unknown fields: a misspelt `ttl_msec` is a 400 naming it, not a default
//! silently used. Durations are whole milliseconds (`ttl_ms`, `wait_ms`), checked by the
//! same rule as the CLI's durations (more than zero, at most 10 years).

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// The body of every non-2xx answer under `/v1`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// The stable code of the failure: `bad_input`, `unauthorized`, `forbidden`,
    /// `not_found`, `held`, `conflict`, `lost`, `limited`, `failed`, `unavailable`,
    /// `internal` (the CLI's `--json` codes).
    pub error: String,
    /// What happened, for a person.
    pub message: String,
    /// The state behind the failure, as data: `{"held": {"holders": […], "waiters_ahead": N}}`,
    /// `{"conflict": {"current_version": N}}`, `{"limited": {"wait_ms": N}}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<serde_json::Value>,
    /// For `limited`: the wait (milliseconds) the request would have needed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_ms: Option<u64>,
    /// For `bad_input`: the body field, query or path parameter that was wrong.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

// ---------------------------------------------------------------------------------------
// Leases

/// Who holds a lease, as the client says: on the server's own host, a holder whose process
/// is gone is taken over at once (as the CLI does locally). Absent fields are empty or 0;
/// `agent` defaults to the token's name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HolderBody {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<u64>,
    /// The holder's process group (it counts as dead only when this group is empty too).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pgid: Option<u32>,
}

/// `POST /v1/ns/{ns}/leases/{name}/acquire`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AcquireBody {
    /// How long the lease lasts unless renewed (milliseconds).
    pub ttl_ms: u64,
    /// Places of the lease: 1 is a lock (default), N a semaphore.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slots: Option<u32>,
    /// Wait up to this long for a place, in arrival order (milliseconds; at most 10
    /// minutes, a longer wait is cut to that). Absent: fail at once with 409 `held`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holder: Option<HolderBody>,
}

/// `POST /v1/ns/{ns}/leases/{name}/renew`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RenewBody {
    /// The fencing token `acquire` returned.
    pub token: i64,
    /// New time to live from now (milliseconds; default: the lease's own TTL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_ms: Option<u64>,
}

/// `POST /v1/ns/{ns}/leases/{name}/release`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReleaseBody {
    /// The fencing token `acquire` returned.
    pub token: i64,
}

/// `?prefix=`: only names starting with this (default: all).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PrefixQuery {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
}

// ---------------------------------------------------------------------------------------
// Keys

/// `PUT /v1/ns/{ns}/kv/{key}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutBody {
    /// UTF-8 text, at most 1 MiB.
    pub value: String,
    /// Compare-and-swap: the version the key must have (0: must not exist).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub if_version: Option<i64>,
}

/// `DELETE /v1/ns/{ns}/kv/{key}?if_version=`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeleteQuery {
    /// Compare-and-swap: the version the key must have.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub if_version: Option<i64>,
}

/// `GET /v1/ns/{ns}/watch/kv?prefix=&from=`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct WatchQuery {
    /// Only keys starting with this (default: all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// Start at this revision (inclusive), replaying earlier changes; default: the next
    /// change. A `Last-Event-ID` header (an EventSource reconnecting) wins: the stream
    /// resumes after that revision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<i64>,
}
