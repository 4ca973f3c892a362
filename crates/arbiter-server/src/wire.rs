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
    #[schema(max_length = 200, pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$")]
    pub agent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 200, pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$")]
    pub host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 200, pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$")]
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
    #[schema(minimum = 1, maximum = 315360000000.0)]
    pub ttl_ms: u64,
    /// Places of the lease: 1 is a lock (default), N a semaphore.
    #[schema(minimum = 1, maximum = 10000)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slots: Option<u32>,
    /// Wait up to this long for a place, in arrival order (milliseconds; at most 10
    /// minutes, a longer wait is cut to that). Absent: fail at once with 409 `held`.
    #[schema(minimum = 1, maximum = 315360000000.0)]
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
    #[schema(minimum = 1)]
    pub token: i64,
    /// New time to live from now (milliseconds; default: the lease's own TTL).
    #[schema(minimum = 1, maximum = 315360000000.0)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_ms: Option<u64>,
    /// The holder's process group, recorded with the renew (the holder then counts as dead
    /// on its host only when this group is empty too): `arbiter lock` sends its command's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pgid: Option<u32>,
}

/// `POST /v1/ns/{ns}/leases/{name}/release`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReleaseBody {
    /// The fencing token `acquire` returned.
    #[schema(minimum = 1)]
    pub token: i64,
}

/// `?prefix=`: only names starting with this (default: all).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PrefixQuery {
    #[param(
        pattern = "^(?:(?:[A-Za-z0-9_:@-][A-Za-z0-9._:@-]*|\\.[A-Za-z0-9_:@-][A-Za-z0-9._:@-]*|\\.\\.[A-Za-z0-9._:@-]+)(?:/(?:[A-Za-z0-9_:@-][A-Za-z0-9._:@-]*|\\.[A-Za-z0-9_:@-][A-Za-z0-9._:@-]*|\\.\\.[A-Za-z0-9._:@-]+))*/?)?$",
        max_length = 256
    )]
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
    #[schema(minimum = 0)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub if_version: Option<i64>,
}

/// `DELETE /v1/ns/{ns}/kv/{key}?if_version=`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeleteQuery {
    /// Compare-and-swap: the version the key must have.
    #[param(minimum = 1)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub if_version: Option<i64>,
}

/// `GET /v1/ns/{ns}/watch/kv?prefix=&from=`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct WatchQuery {
    /// Only keys starting with this (default: all).
    #[param(
        pattern = "^(?:(?:[A-Za-z0-9_:@-][A-Za-z0-9._:@-]*|\\.[A-Za-z0-9_:@-][A-Za-z0-9._:@-]*|\\.\\.[A-Za-z0-9._:@-]+)(?:/(?:[A-Za-z0-9_:@-][A-Za-z0-9._:@-]*|\\.[A-Za-z0-9_:@-][A-Za-z0-9._:@-]*|\\.\\.[A-Za-z0-9._:@-]+))*/?)?$",
        max_length = 256
    )]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// Start at this revision (inclusive), replaying earlier changes; default: the next
    /// change. A `Last-Event-ID` header (an EventSource reconnecting) wins: the stream
    /// resumes after that revision.
    #[param(minimum = 1)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<i64>,
}

// ---------------------------------------------------------------------------------------
// Limits

/// `PUT /v1/ns/{ns}/limits/{name}`: create a bucket (full) or change its spec (as
/// `arbiter limit define`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DefineBody {
    /// How fast it refills: AMOUNT/PERIOD, e.g. `5000/h`, `900/m`, `10/s`, `500/1h`.
    #[schema(pattern = "^[0-9]+/.+$")]
    pub rate: String,
    /// The most tokens it holds (default: the rate's amount).
    #[schema(minimum = 1, maximum = 1000000000000.0)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<u64>,
    /// The share of the burst kept for interactive takes, in percent (default 20).
    #[schema(maximum = 100)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reserve_percent: Option<u8>,
    /// Share the bucket fairly between parties.
    #[serde(default)]
    pub fair: bool,
    /// Leave an existing bucket as it is.
    #[serde(default)]
    pub if_absent: bool,
}

/// `POST /v1/ns/{ns}/limits/take`: take `cost` tokens from every bucket, all or none (as
/// `arbiter limit take`). Not granted within `wait_ms`: 429 `limited` with `Retry-After`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TakeBody {
    /// The buckets, each once.
    #[schema(min_items = 1)]
    pub buckets: Vec<String>,
    /// Tokens to take from each bucket (default 1).
    #[schema(minimum = 1, maximum = 1000000000000.0)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<u64>,
    /// `interactive` (may spend the reserve), `normal` (default) or `background`.
    #[schema(pattern = "^(interactive|normal|background)$")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<String>,
    /// Who the take is for, in fair buckets.
    #[schema(min_length = 1, max_length = 200, pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub party: Option<String>,
    /// Wait up to this long for the tokens (milliseconds; at most 10 minutes; absent: one
    /// try).
    #[schema(minimum = 1, maximum = 315360000000.0)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_ms: Option<u64>,
}

/// `POST /v1/ns/{ns}/limits/{name}/observe`: what an upstream said (as `arbiter limit
/// observe`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ObserveBody {
    /// The upstream's limit per window (`x-ratelimit-limit`).
    #[schema(minimum = 1)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
    /// What the upstream says is left (`x-ratelimit-remaining`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remaining: Option<u64>,
    /// When the upstream's window ends, in seconds since the Unix epoch (at most 2100).
    #[schema(minimum = 1, maximum = 4102444800.0)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reset: Option<i64>,
    /// The upstream's retry-after, in seconds (at most a day).
    #[schema(maximum = 86400)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
    /// The upstream refused: freeze the bucket.
    #[serde(default)]
    pub hit: bool,
}

// ---------------------------------------------------------------------------------------
// Logs

/// `POST /v1/ns/{ns}/logs/{stream}/records`: append a record (as `arbiter log append`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AppendBody {
    /// The record's body: a string is stored as text (as JSON with `json_body`), any other
    /// JSON value as JSON.
    pub body: serde_json::Value,
    /// Idempotency key: an append with a key already used on this stream writes nothing
    /// and answers the first offset with `duplicate: true`.
    #[schema(min_length = 1, max_length = 200, pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// The record's kind (default `note`).
    #[schema(min_length = 1, max_length = 200, pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Who appends it (default: the token's name).
    #[schema(max_length = 200, pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub tags: std::collections::BTreeMap<String, String>,
    /// A string body is JSON (checked, stored as given).
    #[serde(default)]
    pub json_body: bool,
    #[schema(min_length = 1, max_length = 200, pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
}

/// `GET /v1/ns/{ns}/logs/{stream}/records?from=&limit=&consumer=`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ReadQuery {
    /// The first offset (default 0); not with `consumer`.
    #[param(minimum = 0)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<i64>,
    /// At most this many records (default and most: 1000); page with `from`.
    #[param(minimum = 1, maximum = 1000)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
    /// Start at this consumer's committed offset.
    #[param(
        pattern = "^(?:[A-Za-z0-9_:@-][A-Za-z0-9._:@-]*|\\.[A-Za-z0-9_:@-][A-Za-z0-9._:@-]*|\\.\\.[A-Za-z0-9._:@-]+)(?:/(?:[A-Za-z0-9_:@-][A-Za-z0-9._:@-]*|\\.[A-Za-z0-9_:@-][A-Za-z0-9._:@-]*|\\.\\.[A-Za-z0-9._:@-]+))*$",
        max_length = 255
    )]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumer: Option<String>,
}

/// `GET /v1/ns/{ns}/logs/{stream}/follow?from=`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct FollowQuery {
    /// The first offset (default 0). A `Last-Event-ID` header wins: the stream resumes
    /// after that offset.
    #[param(minimum = 0)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<i64>,
}

/// `PUT /v1/ns/{ns}/logs/{stream}/consumers/{consumer}`: the consumer has processed
/// everything before `offset`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CommitBody {
    #[schema(minimum = 0)]
    pub offset: i64,
}

// ---------------------------------------------------------------------------------------
// Decisions

/// `POST /v1/ns/{ns}/decisions`: record a decision (as `arbiter decide`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DecideBody {
    /// The decision, in Markdown. Without `title` its first line is the title.
    #[schema(pattern = "\\S")]
    pub text: String,
    #[schema(pattern = "^[^\\n]*\\S[^\\n]*$")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Who decided (letters, digits, '.', '_', '-'; default: the token's name).
    #[schema(pattern = "^[A-Za-z0-9._-]{1,64}$")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub tags: std::collections::BTreeMap<String, String>,
    /// Idempotency key: deciding again with the same key writes nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

// ---------------------------------------------------------------------------------------
// Notifications

/// `POST /v1/ns/{ns}/notifications`: accept a notification into the outbox, routed by the
/// server's configuration (as `arbiter notify`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NotifyBody {
    /// What happened, dotted (`loop.failure`, `news`).
    #[schema(max_length = 100, pattern = "^[a-z0-9_-]+(\\.[a-z0-9_-]+)*$")]
    pub kind: String,
    /// `info`, `warning` or `critical`.
    #[schema(pattern = "^(info|warning|critical)$")]
    pub severity: String,
    /// One line.
    #[schema(max_length = 300, pattern = "^[^\\n]*\\S[^\\n]*$")]
    pub title: String,
    /// The details (Markdown).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// Repeats with one dedupe key fold into one alert.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dedupe: Option<String>,
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub tags: std::collections::BTreeMap<String, String>,
    /// Who sends it (default: the token's name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Send to this channel id only, instead of routing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
}

/// `POST /v1/ns/{ns}/notifications/resolve`: the condition behind a dedupe key cleared.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResolveBody {
    #[schema(
        pattern = "^(?:[A-Za-z0-9_:@-][A-Za-z0-9._:@-]*|\\.[A-Za-z0-9_:@-][A-Za-z0-9._:@-]*|\\.\\.[A-Za-z0-9._:@-]+)(?:/(?:[A-Za-z0-9_:@-][A-Za-z0-9._:@-]*|\\.[A-Za-z0-9_:@-][A-Za-z0-9._:@-]*|\\.\\.[A-Za-z0-9._:@-]+))*$",
        max_length = 255
    )]
    pub dedupe_key: String,
    /// Details for the recovery message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
}

/// `GET /v1/ns/{ns}/notifications?state=&limit=`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct NotificationsQuery {
    /// Only `pending`, `delivered` or `dead` ones.
    #[param(pattern = "^(pending|delivered|dead)$")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// At most this many, newest first (default 50, at most 10000).
    #[param(minimum = 1, maximum = 10000)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
}

// ---------------------------------------------------------------------------------------
// Work items

/// `POST /v1/ns/{ns}/queues/{queue}/items`: push an item (as `arbiter queue push`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PushBody {
    /// The item's body: UTF-8 text, at most 1 MiB (it may be empty). A worker reads it on
    /// its standard input.
    pub body: String,
    /// Idempotency key: a push with a key already in the queue (in any state) creates
    /// nothing and answers the first item (200, `created: false`).
    #[schema(min_length = 1, max_length = 1024, pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Higher first (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i32>,
    /// Capabilities a worker must offer to claim it (`gpu`, `repo:web`): 1-64 characters of
    /// a-z, 0-9 and . _ - : /, starting with a letter or digit.
    #[schema(max_items = 64)]
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub requires: Vec<String>,
    /// Claimable only this long after the push (milliseconds, by the store's clock; at most
    /// 30 days). Not with `not_before`.
    #[schema(maximum = 2592000000.0)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_ms: Option<u64>,
    /// Claimable only from this time (RFC 3339, `2026-12-01T14:00:00Z`). Not with
    /// `delay_ms`.
    #[schema(format = DateTime)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before: Option<String>,
    /// Claims it gets before it is dead (default 5, at most 1000).
    #[schema(minimum = 1, maximum = 1000)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
}

/// `POST /v1/ns/{ns}/queues/{queue}/claim`: claim one item (as `arbiter queue claim`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClaimBody {
    /// What the worker can do: only items whose `requires` are all among these are
    /// claimed (default: none, so only items that require nothing).
    #[schema(max_items = 64)]
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub capabilities: Vec<String>,
    /// How long the claim lasts without a heartbeat (milliseconds; 100 ms to 24 h; default
    /// 5 minutes).
    #[schema(minimum = 100, maximum = 86400000)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_ms: Option<u64>,
    /// Wait up to this long for an item (milliseconds; at most 10 minutes, a longer wait
    /// is cut to that). Absent: one try.
    #[schema(minimum = 1, maximum = 315360000000.0)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_ms: Option<u64>,
    /// Who claims, as for a lease (`agent` defaults to the token's name; no host unless
    /// given). Shown by `queue show`; an expired claim is ended by its expiry alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holder: Option<HolderBody>,
}

/// The answer of a claim: the claim, or `null` when there was nothing to claim (within
/// the wait) — not an error, as `arbiter queue claim` exits 3 without printing one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ClaimAnswer {
    pub claimed: Option<arbiter_ops::queue::ClaimView>,
}

/// `POST /v1/ns/{ns}/items/{id}/heartbeat`: extend a live claim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatBody {
    /// The claim token `claim` returned.
    #[schema(minimum = 1)]
    pub token: i64,
    /// The claim lasts this long from now (milliseconds; 100 ms to 24 h).
    #[schema(minimum = 100, maximum = 86400000)]
    pub lease_ms: u64,
    /// The worker's process group, recorded with the claim's holder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pgid: Option<u32>,
}

/// `POST /v1/ns/{ns}/items/{id}/done`: end a live claim with success.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DoneBody {
    /// The claim token `claim` returned.
    #[schema(minimum = 1)]
    pub token: i64,
    /// What came of it (at most 64 KiB), shown by `queue show`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,
}

/// `POST /v1/ns/{ns}/items/{id}/fail`: end a live claim with a failure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FailBody {
    /// The claim token `claim` returned.
    #[schema(minimum = 1)]
    pub token: i64,
    /// Why (at most 64 KiB).
    pub reason: String,
    /// Ready again this long from now (milliseconds, 0 for at once; at most 30 days).
    /// Default: the backoff of the attempt (10 s doubling, at most 1 h).
    #[schema(maximum = 2592000000.0)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_in_ms: Option<u64>,
}

/// `GET /v1/ns/{ns}/items?queue=&state=&limit=`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ItemsQuery {
    /// Only this queue's items.
    #[param(
        pattern = "^(?:[A-Za-z0-9_:@-][A-Za-z0-9._:@-]*|\\.[A-Za-z0-9_:@-][A-Za-z0-9._:@-]*|\\.\\.[A-Za-z0-9._:@-]+)(?:/(?:[A-Za-z0-9_:@-][A-Za-z0-9._:@-]*|\\.[A-Za-z0-9_:@-][A-Za-z0-9._:@-]*|\\.\\.[A-Za-z0-9._:@-]+))*$",
        max_length = 255
    )]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
    /// Only items in this state.
    #[param(pattern = "^(ready|claimed|done|dead|cancelled)$")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// At most this many, newest first (default 100, at most 1000).
    #[param(minimum = 1, maximum = 1000)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
}
