//! The tools' arguments: what an agent sends, with the JSON schema `tools/list` shows
//! (generated from these types and their doc comments), and [`Parameters`], the
//! extractor that reads them and names the field that is wrong.

use std::collections::BTreeMap;
use std::str::FromStr;

use arbiter_core::ParseError;
use arbiter_core::name::Namespace;
use rmcp::ErrorData;
use rmcp::handler::server::common::FromContextPart;
use rmcp::handler::server::tool::ToolCallContext;
use schemars::JsonSchema;
use serde::Deserialize;
use serde::de::DeserializeOwned;

/// A tool's arguments, deserialized so that a malformed one is a JSON-RPC invalid params
/// error naming the field (`ttl: invalid type: integer `30`, expected a string`), where
/// rmcp's own `Parameters` says only what was wrong, not where. Named `Parameters` so
/// that rmcp's `#[tool]` macro takes the input schema from `P`.
pub struct Parameters<P>(pub P);

impl<P: JsonSchema> JsonSchema for Parameters<P> {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        P::schema_name()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        P::json_schema(generator)
    }
}

impl<S, P: DeserializeOwned> FromContextPart<ToolCallContext<'_, S>> for Parameters<P> {
    fn from_context_part(context: &mut ToolCallContext<'_, S>) -> Result<Self, ErrorData> {
        let arguments = serde_json::Value::Object(context.arguments.take().unwrap_or_default());
        serde_path_to_error::deserialize(arguments)
            .map(Parameters)
            .map_err(|e| {
                let path = e.path().to_string();
                let message = e.into_inner().to_string();
                // A missing or unknown field is an error of the object around it: its
                // name is in serde's message (`unknown field `holder`, expected …`).
                let named = ["missing field `", "unknown field `"]
                    .iter()
                    .find_map(|start| message.strip_prefix(start))
                    .and_then(|rest| rest.split('`').next());
                let field = match (path.as_str(), named) {
                    (".", Some(name)) => Some(name.to_string()),
                    (".", None) => None,
                    (_, _) => Some(path),
                };
                invalid(field.as_deref(), &message)
            })
    }
}

/// A JSON-RPC invalid params error: `FIELD: MESSAGE`, and the field as data
/// (`{"error": "bad_input", "field": FIELD}`) for a client that shows it.
pub fn invalid(field: Option<&str>, message: &str) -> ErrorData {
    match field {
        Some(field) => ErrorData::invalid_params(
            format!("{field}: {message}"),
            Some(serde_json::json!({ "error": "bad_input", "field": field })),
        ),
        None => ErrorData::invalid_params(message.to_string(), Some(serde_json::json!({ "error": "bad_input" }))),
    }
}

/// Parses `text` with a core parser (a name type, a priority), or names `field`.
pub fn parse<T: FromStr<Err = ParseError>>(field: &str, text: &str) -> Result<T, ErrorData> {
    text.parse().map_err(|e: ParseError| invalid(Some(field), &e.message))
}

/// The namespace argument, `default` when absent.
pub fn namespace(text: Option<&str>) -> Result<Namespace, ErrorData> {
    match text {
        Some(text) => parse("namespace", text),
        None => Ok(Namespace::default()),
    }
}

/// A duration in the CLI's syntax (`250ms`, `30s`, `1h30m`), or names `field`.
pub fn duration(field: &str, text: &str) -> Result<std::time::Duration, ErrorData> {
    arbiter_core::duration::parse_duration(text).map_err(|e| invalid(Some(field), &e.message))
}

/// The longest wait a tool call may ask for (a lease, a take): as the HTTP API's.
pub const MAX_WAIT: std::time::Duration = std::time::Duration::from_secs(600);

/// An optional wait: a duration of at most [`MAX_WAIT`].
pub fn wait(text: Option<&str>) -> Result<Option<std::time::Duration>, ErrorData> {
    let Some(text) = text else { return Ok(None) };
    let wait = duration("wait", text)?;
    if wait > MAX_WAIT {
        return Err(invalid(
            Some("wait"),
            &format!("{text:?} is longer than the longest wait a tool call may ask for, 10m"),
        ));
    }
    Ok(Some(wait))
}

/// `lease_acquire`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LeaseAcquire {
    /// The namespace (default: `default`).
    pub namespace: Option<String>,
    /// The lease name, e.g. the path of a file you are editing (`src/main.rs`): 1-255
    /// characters of ASCII letters, digits and . _ - / : @
    pub name: String,
    /// How long the lease lasts unless renewed: 250ms, 30s, 5m, 1h30m (default 30s).
    pub ttl: Option<String>,
    /// Wait up to this long for a place, in arrival order (default: fail at once with
    /// error `held` if it is taken; at most 10m).
    pub wait: Option<String>,
    /// Places of the lease: 1 (default) is a lock, N a semaphore. Every holder must agree on N.
    pub slots: Option<u32>,
    /// Who holds it, shown to others (an agent name, at most 200 characters).
    pub agent: Option<String>,
}

/// `lease_renew`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LeaseRenew {
    /// The namespace (default: `default`).
    pub namespace: Option<String>,
    /// The lease name.
    pub name: String,
    /// The fencing token `lease_acquire` returned.
    pub token: i64,
    /// New time to live from now (default: the lease's own TTL).
    pub ttl: Option<String>,
}

/// `lease_release`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LeaseRelease {
    /// The namespace (default: `default`).
    pub namespace: Option<String>,
    /// The lease name.
    pub name: String,
    /// The fencing token `lease_acquire` returned.
    pub token: i64,
}

/// `lease_show`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LeaseShow {
    /// The namespace (default: `default`).
    pub namespace: Option<String>,
    /// The lease name.
    pub name: String,
}

/// `kv_get`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KvGet {
    /// The namespace (default: `default`).
    pub namespace: Option<String>,
    /// The key: 1-255 characters of ASCII letters, digits and . _ - / : @
    pub key: String,
}

/// `kv_put`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KvPut {
    /// The namespace (default: `default`).
    pub namespace: Option<String>,
    /// The key: 1-255 characters of ASCII letters, digits and . _ - / : @
    pub key: String,
    /// The value: UTF-8 text, at most 1 MiB.
    pub value: String,
    /// Compare-and-swap: write only if the key is at this version (0: only if it does
    /// not exist); otherwise error `conflict` with the current version.
    pub if_version: Option<i64>,
}

/// `kv_cas`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KvCas {
    /// The namespace (default: `default`).
    pub namespace: Option<String>,
    /// The key: 1-255 characters of ASCII letters, digits and . _ - / : @
    pub key: String,
    /// The new value: UTF-8 text, at most 1 MiB.
    pub value: String,
    /// The version the key must have now (0: it must not exist), as `kv_get` returned it.
    pub if_version: i64,
}

/// `kv_list`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KvList {
    /// The namespace (default: `default`).
    pub namespace: Option<String>,
    /// Only keys starting with this (default: all).
    pub prefix: Option<String>,
}

/// `decide`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Decide {
    /// The namespace (default: `default`).
    pub namespace: Option<String>,
    /// The decision, in Markdown. Without `title` its first line is the title.
    pub text: String,
    /// The decision's title (one line).
    pub title: Option<String>,
    /// Who decided: 1-64 letters, digits, '.', '_', '-'.
    pub by: String,
    /// Tags, e.g. {"area": "storage"}.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// Idempotency key: deciding again with the same key writes nothing.
    pub key: Option<String>,
}

/// `notify`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Notify {
    /// The namespace (default: `default`).
    pub namespace: Option<String>,
    /// What happened, dotted: loop.failure, news, security.finding.
    pub kind: String,
    /// info, warning or critical.
    pub severity: String,
    /// One line.
    pub title: String,
    /// The details (Markdown).
    pub body: Option<String>,
    /// Repeats with one dedupe key fold into one alert, sent at the 1st, 3rd, 10th … time.
    pub dedupe_key: Option<String>,
    /// Tags; routes can match on them.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// Who sends it (default: this host's name over stdio, the token's name over HTTP).
    pub source: Option<String>,
    /// Send to this channel id only, instead of routing by the configuration.
    pub channel: Option<String>,
}

/// `limit_take`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LimitTake {
    /// The namespace (default: `default`).
    pub namespace: Option<String>,
    /// The buckets to take from, all or none (each defined with `arbiter limit define`).
    pub buckets: Vec<String>,
    /// Tokens to take from each bucket (default 1).
    pub cost: Option<u64>,
    /// Wait up to this long for the tokens (default: fail at once with error `limited`
    /// and the wait needed; at most 10m).
    pub wait: Option<String>,
    /// interactive (may spend the reserve), normal (default) or background.
    pub priority: Option<String>,
    /// Who the take is for, in fair buckets (e.g. a team or a loop).
    pub party: Option<String>,
}

/// `log_append`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LogAppend {
    /// The namespace (default: `default`).
    pub namespace: Option<String>,
    /// The stream.
    pub stream: String,
    /// The record's body.
    pub body: String,
    /// The record's kind (default `note`).
    pub kind: Option<String>,
    /// Who appends it (an agent name).
    pub by: Option<String>,
    /// Tags.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// The body is JSON (checked, stored as given).
    #[serde(default)]
    pub json_body: bool,
    /// A trace id to store with the record.
    pub trace_id: Option<String>,
    /// Idempotency key: an append with a key already used on this stream writes nothing
    /// and returns the first offset.
    pub key: Option<String>,
}

/// `log_read`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LogRead {
    /// The namespace (default: `default`).
    pub namespace: Option<String>,
    /// The stream.
    pub stream: String,
    /// The first offset to return (default 0).
    pub from: Option<i64>,
    /// Start at this consumer's committed offset instead of `from`.
    pub consumer: Option<String>,
    /// At most this many records (default 100, at most 1000).
    pub limit: Option<usize>,
}

/// `status`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Status {
    /// The namespace (default: `default`).
    pub namespace: Option<String>,
}

/// When a pushed item becomes claimable: a duration from now (`10m`) or an RFC 3339 time
/// (`2026-12-01T14:00:00Z`), or names `field`.
pub fn not_before(field: &str, text: &str) -> Result<arbiter_core::queue::NotBefore, ErrorData> {
    arbiter_ops::queue::parse_not_before(field, text).map_err(|e| invalid(Some(field), &e.message))
}

/// `queue_push`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct QueuePush {
    /// The namespace (default: `default`).
    pub namespace: Option<String>,
    /// The queue, e.g. `triage` or `loop/build`.
    pub queue: String,
    /// The work: text a worker reads (at most 1 MiB).
    pub body: String,
    /// Idempotency key (e.g. an issue's URL): pushing the same key again into the queue
    /// creates nothing and returns the first item (`created: false`).
    pub key: Option<String>,
    /// Higher is claimed first (default 0).
    pub priority: Option<i32>,
    /// Capabilities a worker must have to claim it, e.g. ["gpu"].
    #[serde(default)]
    pub requires: Vec<String>,
    /// Claimable only from then: a duration from now (10m) or an RFC 3339 time
    /// (2026-12-01T14:00:00Z).
    pub not_before: Option<String>,
    /// Claims it gets before it is dead (default 5).
    pub max_attempts: Option<u32>,
}

/// `queue_claim`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct QueueClaim {
    /// The namespace (default: `default`).
    pub namespace: Option<String>,
    /// The queue.
    pub queue: String,
    /// What you can do: only items whose requirements are all among these are claimed.
    #[serde(default)]
    pub capabilities: Vec<String>,
    /// How long the claim lasts without a heartbeat: 30s, 5m (default), at most 24h.
    pub lease: Option<String>,
    /// Wait up to this long for an item (default: one try; at most 10m).
    pub wait: Option<String>,
    /// Who claims, shown to others (an agent name, at most 200 characters).
    pub agent: Option<String>,
}

/// `queue_heartbeat`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct QueueHeartbeat {
    /// The namespace (default: `default`).
    pub namespace: Option<String>,
    /// The item's id.
    pub id: i64,
    /// The claim token `queue_claim` returned.
    pub token: i64,
    /// The claim lasts this long from now: 30s, 5m, at most 24h.
    pub lease: String,
}

/// `queue_done`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct QueueDone {
    /// The namespace (default: `default`).
    pub namespace: Option<String>,
    /// The item's id.
    pub id: i64,
    /// The claim token `queue_claim` returned.
    pub token: i64,
    /// What came of it (at most 64 KiB).
    pub result: Option<String>,
}

/// `queue_fail`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct QueueFail {
    /// The namespace (default: `default`).
    pub namespace: Option<String>,
    /// The item's id.
    pub id: i64,
    /// The claim token `queue_claim` returned.
    pub token: i64,
    /// Why it failed (at most 64 KiB).
    pub reason: String,
    /// Ready again after this long (0s: at once; default: a backoff, 10s doubling per
    /// attempt, at most 1h).
    pub retry_in: Option<String>,
}

/// `queue_list`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct QueueList {
    /// The namespace (default: `default`).
    pub namespace: Option<String>,
    /// Only this queue's items.
    pub queue: Option<String>,
    /// Only items in this state: ready, claimed, done, dead or cancelled.
    pub state: Option<String>,
    /// At most this many, newest first (default 100, at most 1000).
    pub limit: Option<usize>,
}

/// `queue_show`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct QueueShow {
    /// The namespace (default: `default`).
    pub namespace: Option<String>,
    /// The item's id.
    pub id: i64,
}

/// `queue_stats`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct QueueStats {
    /// The namespace (default: `default`).
    pub namespace: Option<String>,
}
