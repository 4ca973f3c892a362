//! arbiter's MCP server: the primitives as tools an agent calls (`lease_acquire` on the
//! file it is editing, `kv_cas`, `decide`, `notify`, `limit_take`, `status`, …).
//!
//! Each tool is a thin adapter over one `arbiter_ops` function, as a CLI command is: it
//! reads its arguments ([`args`]), checks them with the parsers the CLI uses, asks the
//! caller's [`Principal`] whether it may, calls the operation, and returns its view as
//! JSON. Two transports serve the same tools:
//!
//! - **stdio** ([`serve_stdio`], `arbiter mcp`): the caller is whoever started the process
//!   ([`Principal::local`]), and a lease is held by the `arbiter mcp` process itself, so on
//!   its host a lease is free again as soon as the agent's MCP process is gone.
//! - **streamable HTTP** ([`http_service`], `/mcp` of `arbiter serve`): the server's auth
//!   layer puts the bearer token's `Principal` into the HTTP request's extensions; rmcp
//!   hands the request's `http::request::Parts` to the tool, which reads it from there. No
//!   principal there is `forbidden`, never the local caller. A lease's holder is the token
//!   (agent = its name, `/agent` when given; no host), so it expires by its TTL only.
//!
//! Failures (see docs/mcp.md): an operation's failure is a tool result with
//! `isError: true` and the JSON `{"error": CODE, "message": TEXT, "detail"?: …}`, CODE being
//! `ErrorKind::code()` as in the CLI and the HTTP API; a malformed argument is a JSON-RPC
//! invalid params error naming the field.

pub mod args;

use std::future::Future;
use std::sync::Arc;

use arbiter_config::Config;
use arbiter_core::lease::Holder;
use arbiter_core::log::{ContentType, NewRecord, RecordFields};
use arbiter_core::name::{
    BucketName, Capability, ConsumerName, Key, LeaseName, Namespace, Prefix, QueueName, StreamName,
};
use arbiter_core::notify::{Notification, Severity};
use arbiter_core::queue::{ClaimRequest, DEFAULT_MAX_ATTEMPTS, FailRequest, ItemState, NewItem};
use arbiter_core::token::{Access, Primitive, Principal};
use arbiter_core::{Detail, Error, ErrorKind};
use arbiter_ops::decisions::DecisionInput;
use arbiter_ops::lease::AcquireRequest;
use arbiter_ops::limit::{Priority, TakeRequest};
use arbiter_ops::log::Start;
use arbiter_ops::{decisions, fleet, kv, lease, limit, log, notify, queue};
use arbiter_store::Store;
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::model::{CallToolResult, Implementation, ServerCapabilities, ServerConfig};
use rmcp::service::RequestContext;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData, RoleServer, ServerHandler, ServiceExt, tool, tool_handler, tool_router};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use args::{Parameters, invalid, namespace, parse};

/// The most records `log_read` returns at once.
const MAX_READ: usize = 1000;
/// Items `queue_list` returns unless `limit` says otherwise.
const DEFAULT_ITEMS: usize = 100;

/// Who the tools act for, by transport.
#[derive(Debug, Clone)]
enum Transport {
    /// `arbiter mcp`: the local user; leases are held by this process (`holder`, its agent
    /// label filled in per call).
    Stdio { holder: Holder },
    /// `/mcp`: the principal the server's auth layer put into the request's extensions.
    Http,
}

/// The caller of one tool call.
struct Caller {
    principal: Principal,
    /// The holder of a lease it takes (agent label not yet added).
    holder: Holder,
    /// The default `source` of a notification.
    source: String,
}

/// The MCP server: the tools over one store and one configuration (notifications are
/// routed by it).
#[derive(Clone)]
pub struct Arbiter {
    store: Store,
    config: Arc<Config>,
    transport: Transport,
    tool_router: ToolRouter<Arbiter>,
}

impl Arbiter {
    fn new(store: Store, config: Arc<Config>, transport: Transport) -> Arbiter {
        Arbiter {
            store,
            config,
            transport,
            tool_router: Self::tool_router(),
        }
    }

    /// The server of `arbiter mcp`: the local caller; this process holds its leases.
    pub fn stdio(store: Store, config: Arc<Config>) -> arbiter_core::Result<Arbiter> {
        let holder = arbiter_process::holder_for(std::process::id(), "")?;
        Ok(Arbiter::new(store, config, Transport::Stdio { holder }))
    }

    /// The server behind `/mcp`: each call's principal comes from its HTTP request.
    pub fn http(store: Store, config: Arc<Config>) -> Arbiter {
        Arbiter::new(store, config, Transport::Http)
    }

    fn caller(&self, context: &RequestContext<RoleServer>) -> arbiter_core::Result<Caller> {
        match &self.transport {
            Transport::Stdio { holder } => Ok(Caller {
                principal: Principal::local(),
                holder: holder.clone(),
                source: arbiter_process::host_name(),
            }),
            Transport::Http => {
                let principal = context
                    .extensions
                    .get::<http::request::Parts>()
                    .and_then(|parts| parts.extensions.get::<Principal>())
                    .cloned()
                    .ok_or_else(|| {
                        Error::new(
                            ErrorKind::Forbidden,
                            "this MCP request carries no authenticated token: the server's auth layer must \
                             run before /mcp",
                        )
                    })?;
                Ok(Caller {
                    holder: Holder {
                        host: String::new(),
                        boot_id: String::new(),
                        pid: 0,
                        start_time: 0,
                        agent: principal.name.clone(),
                        pgid: None,
                    },
                    source: principal.name.clone(),
                    principal,
                })
            }
        }
    }

    /// Runs `op` for the caller if its principal may `access` `primitive` in `namespace`:
    /// the view as the tool's result, or the failure as an error result.
    async fn call<T, F, Fut>(
        &self,
        context: &RequestContext<RoleServer>,
        namespace: &Namespace,
        primitive: Primitive,
        access: Access,
        op: F,
    ) -> CallToolResult
    where
        T: Serialize,
        F: FnOnce(Caller) -> Fut,
        Fut: Future<Output = arbiter_core::Result<T>>,
    {
        let caller = match self.caller(context) {
            Ok(caller) => caller,
            Err(err) => return failure(&err),
        };
        if let Err(err) = caller.principal.check(namespace, primitive, access) {
            tracing::warn!(token = %caller.principal.name, %namespace, "MCP call refused: {}", err.message);
            return failure(&err);
        }
        match op(caller).await {
            Ok(view) => success(&view),
            Err(err) => failure(&err),
        }
    }
}

/// A view as a tool's result: the JSON as text and as structured content.
fn success<T: Serialize>(view: &T) -> CallToolResult {
    CallToolResult::structured(serde_json::to_value(view).expect("views always serialize"))
}

/// An operation's failure as a tool's result: `isError` with
/// `{"error": CODE, "message": TEXT, "detail"?: …, "wait_ms"?: N}` (the HTTP API's body).
fn failure(err: &Error) -> CallToolResult {
    let mut body = serde_json::json!({ "error": err.kind.code(), "message": err.message });
    if let Some(detail) = err.detail.as_deref() {
        body["detail"] = serde_json::to_value(detail).expect("details always serialize");
        if let Detail::Limited { wait_ms } = detail {
            body["wait_ms"] = (*wait_ms).into();
        }
    }
    CallToolResult::structured_error(body)
}

/// A bad-input failure of a check made before the operation, naming `field`.
fn checked<T>(field: &str, result: arbiter_core::Result<T>) -> Result<T, ErrorData> {
    result.map_err(|e| invalid(Some(field), &e.message))
}

/// A list of capabilities from `field`: each valid, at most 64.
fn capabilities(field: &str, list: &[String]) -> Result<Vec<Capability>, ErrorData> {
    let parsed = list
        .iter()
        .map(|text| parse::<Capability>(field, text))
        .collect::<Result<Vec<_>, _>>()?;
    arbiter_core::queue::capability_set(parsed).map_err(|e| invalid(Some(field), &e.message))
}

/// A claim's lease in the CLI's duration syntax: 100ms to 24h.
fn claim_lease(field: &str, text: &str) -> Result<std::time::Duration, ErrorData> {
    arbiter_core::queue::check_lease(args::duration(field, text)?).map_err(|e| invalid(Some(field), &e.message))
}

/// A work item's id: a positive integer.
fn item_id(id: i64) -> Result<i64, ErrorData> {
    if id > 0 {
        Ok(id)
    } else {
        Err(invalid(
            Some("id"),
            &format!("{id}: expected the positive id queue_push returned"),
        ))
    }
}

/// A claim token: a positive integer.
fn claim_token(token: i64) -> Result<i64, ErrorData> {
    if token > 0 {
        Ok(token)
    } else {
        Err(invalid(
            Some("token"),
            &format!("{token}: expected the positive token queue_claim returned"),
        ))
    }
}

/// A label of who holds a lease: the transport's own agent, with the caller's `agent`.
fn agent_label(base: &str, agent: Option<&str>) -> String {
    match (base.is_empty(), agent) {
        (_, None) => base.to_string(),
        (true, Some(agent)) => agent.to_string(),
        (false, Some(agent)) => format!("{base}/{agent}"),
    }
}

/// A list under one key, since a tool's structured content is an object.
#[derive(Serialize)]
struct Listed<'a, T: Serialize> {
    #[serde(flatten)]
    items: std::collections::BTreeMap<&'a str, T>,
}

fn listed<T: Serialize>(key: &str, items: T) -> Listed<'_, T> {
    Listed {
        items: [(key, items)].into_iter().collect(),
    }
}

#[tool_router]
impl Arbiter {
    #[tool(
        description = "Take a lease (a lock, or a semaphore with slots > 1), e.g. on a file path you are about \
                       to edit, so other agents wait or skip it. Returns the lease with its fencing token: pass \
                       the token to lease_renew before the TTL runs out, and to lease_release when done. Fails \
                       with error `held` (who holds it in detail.held) unless you give `wait`."
    )]
    async fn lease_acquire(
        &self,
        Parameters(a): Parameters<args::LeaseAcquire>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let ns = namespace(a.namespace.as_deref())?;
        let name: LeaseName = parse("name", &a.name)?;
        let ttl = args::duration("ttl", a.ttl.as_deref().unwrap_or("30s"))?;
        let wait = args::wait(a.wait.as_deref())?;
        let slots =
            arbiter_core::lease::check_slots(a.slots.unwrap_or(1)).map_err(|e| invalid(Some("slots"), &e.message))?;
        if let Some(agent) = &a.agent {
            arbiter_core::lease::check_agent(agent).map_err(|e| invalid(Some("agent"), &e.message))?;
        }
        Ok(self
            .call(&context, &ns, Primitive::Lease, Access::Write, |caller| {
                let mut holder = caller.holder;
                holder.agent = agent_label(&holder.agent, a.agent.as_deref());
                let request = AcquireRequest {
                    namespace: ns.clone(),
                    name,
                    holder,
                    ttl,
                    slots,
                    wait,
                };
                lease::acquire(&self.store, request)
            })
            .await)
    }

    #[tool(
        description = "Extend a lease you hold by its TTL (or `ttl`) from now. Error `lost` means the token is \
                       stale: someone else may hold the lease now, so stop what the lease protected."
    )]
    async fn lease_renew(
        &self,
        Parameters(a): Parameters<args::LeaseRenew>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let ns = namespace(a.namespace.as_deref())?;
        let name: LeaseName = parse("name", &a.name)?;
        arbiter_core::lease::check_token(a.token).map_err(|e| invalid(Some("token"), &e.message))?;
        let ttl = a.ttl.as_deref().map(|t| args::duration("ttl", t)).transpose()?;
        Ok(self
            .call(&context, &ns, Primitive::Lease, Access::Write, |_| {
                lease::renew(&self.store, &ns, &name, a.token, ttl, None)
            })
            .await)
    }

    #[tool(
        description = "Give back a lease you hold (its fencing token from lease_acquire). Error `lost`: \
                          the token is stale."
    )]
    async fn lease_release(
        &self,
        Parameters(a): Parameters<args::LeaseRelease>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let ns = namespace(a.namespace.as_deref())?;
        let name: LeaseName = parse("name", &a.name)?;
        arbiter_core::lease::check_token(a.token).map_err(|e| invalid(Some("token"), &e.message))?;
        Ok(self
            .call(&context, &ns, Primitive::Lease, Access::Write, |_| {
                lease::release(&self.store, &ns, &name, a.token)
            })
            .await)
    }

    #[tool(
        description = "Show one lease: its slots, last fencing token, holders (who, until when) and \
                          waiters. Error `not_found` for a name never taken."
    )]
    async fn lease_show(
        &self,
        Parameters(a): Parameters<args::LeaseShow>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let ns = namespace(a.namespace.as_deref())?;
        let name: LeaseName = parse("name", &a.name)?;
        Ok(self
            .call(&context, &ns, Primitive::Lease, Access::Read, |_| {
                lease::show(&self.store, &ns, &name)
            })
            .await)
    }

    #[tool(
        description = "Read a key: its value and version (pass the version to kv_cas). Error `not_found` \
                          if it does not exist."
    )]
    async fn kv_get(
        &self,
        Parameters(a): Parameters<args::KvGet>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let ns = namespace(a.namespace.as_deref())?;
        let key: Key = parse("key", &a.key)?;
        Ok(self
            .call(&context, &ns, Primitive::Kv, Access::Read, |_| {
                kv::get(&self.store, &ns, &key)
            })
            .await)
    }

    #[tool(
        description = "Set a key and return its new version. With `if_version`, a compare-and-swap (as \
                          kv_cas)."
    )]
    async fn kv_put(
        &self,
        Parameters(a): Parameters<args::KvPut>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let ns = namespace(a.namespace.as_deref())?;
        self.put(context, ns, &a.key, a.value, a.if_version).await
    }

    #[tool(
        description = "Compare-and-swap a key: set it only if it is at version `if_version` (0: only if it does \
                       not exist yet). Error `conflict` (current version in detail.conflict) if someone wrote \
                       it since you read it: read it again and retry."
    )]
    async fn kv_cas(
        &self,
        Parameters(a): Parameters<args::KvCas>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let ns = namespace(a.namespace.as_deref())?;
        self.put(context, ns, &a.key, a.value, Some(a.if_version)).await
    }

    #[tool(description = "List the keys starting with `prefix`, in name order, with their values and versions.")]
    async fn kv_list(
        &self,
        Parameters(a): Parameters<args::KvList>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let ns = namespace(a.namespace.as_deref())?;
        let prefix: Prefix = parse("prefix", a.prefix.as_deref().unwrap_or(""))?;
        Ok(self
            .call(&context, &ns, Primitive::Kv, Access::Read, |_| async {
                kv::list(&self.store, &ns, &prefix)
                    .await
                    .map(|items| listed("keys", items))
            })
            .await)
    }

    #[tool(
        description = "Record a decision in the team's decisions log (rendered as decisions.md). Returns \
                          its id."
    )]
    async fn decide(
        &self,
        Parameters(a): Parameters<args::Decide>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let ns = namespace(a.namespace.as_deref())?;
        let decision = decisions::decision(&a.text, a.title.as_deref(), &a.by).map_err(|(input, e)| {
            let field = match input {
                DecisionInput::Text => "text",
                DecisionInput::Title => "title",
                DecisionInput::By => "by",
            };
            invalid(Some(field), &e.message)
        })?;
        let record = checked("decision", decisions::record(&ns, &decision, &a.by, a.tags, a.key))?;
        Ok(self
            .call(&context, &ns, Primitive::Decisions, Access::Write, |_| {
                decisions::decide(&self.store, record)
            })
            .await)
    }

    #[tool(
        description = "Tell the people running the fleet something: routed to chat/webhook channels by the \
                       configuration, delivered through a durable outbox. Repeats with one dedupe_key fold \
                       into one alert."
    )]
    async fn notify(
        &self,
        Parameters(a): Parameters<args::Notify>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let ns = namespace(a.namespace.as_deref())?;
        let severity = Severity::parse(&a.severity).map_err(|e| invalid(Some("severity"), &e))?;
        let ns = &ns;
        Ok(self
            .call(&context, ns, Primitive::Notify, Access::Write, |caller| async move {
                let notification = Notification {
                    kind: a.kind,
                    severity,
                    source: a.source.unwrap_or(caller.source),
                    title: a.title,
                    body: a.body.unwrap_or_default(),
                    tags: a.tags,
                    dedupe_key: a.dedupe_key,
                };
                let routed = notify::route(&self.config, ns, notification, a.channel.as_deref())?;
                notify::notify(&self.store, routed).await
            })
            .await)
    }

    #[tool(
        description = "Take `cost` tokens from every named rate-limit bucket, all or none, before calling a \
                       rate-limited service. Error `limited` with wait_ms when not granted (within `wait`)."
    )]
    async fn limit_take(
        &self,
        Parameters(a): Parameters<args::LimitTake>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let ns = namespace(a.namespace.as_deref())?;
        let buckets = a
            .buckets
            .iter()
            .map(|b| parse::<BucketName>("buckets", b))
            .collect::<Result<Vec<_>, _>>()?;
        let priority: Priority = parse("priority", a.priority.as_deref().unwrap_or("normal"))?;
        let wait = args::wait(a.wait.as_deref())?;
        let request = TakeRequest {
            namespace: ns.clone(),
            buckets,
            cost: a.cost.unwrap_or(1),
            priority,
            party: a.party,
        };
        checked("buckets", request.check())?;
        Ok(self
            .call(&context, &ns, Primitive::Limit, Access::Write, |_| {
                limit::take(&self.store, request, wait.unwrap_or_default())
            })
            .await)
    }

    #[tool(
        description = "Append a record to a log stream; returns its offset. With `key`, appending the same \
                          key again writes nothing and returns the first offset."
    )]
    async fn log_append(
        &self,
        Parameters(a): Parameters<args::LogAppend>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let ns = namespace(a.namespace.as_deref())?;
        let stream: StreamName = parse("stream", &a.stream)?;
        let fields = RecordFields {
            kind: a.kind.unwrap_or_else(|| "note".to_string()),
            author: a.by.unwrap_or_default(),
            body: a.body,
            content_type: if a.json_body {
                ContentType::Json
            } else {
                ContentType::Text
            },
            tags: a.tags,
            trace_id: a.trace_id,
            idempotency_key: a.key,
        };
        let record = checked("record", NewRecord::new(ns.clone(), stream, fields))?;
        Ok(self
            .call(&context, &ns, Primitive::Log, Access::Write, |_| {
                log::append(&self.store, record)
            })
            .await)
    }

    #[tool(
        description = "Read up to `limit` records of a log stream from offset `from` (or from a consumer's \
                          committed offset)."
    )]
    async fn log_read(
        &self,
        Parameters(a): Parameters<args::LogRead>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let ns = namespace(a.namespace.as_deref())?;
        let stream: StreamName = parse("stream", &a.stream)?;
        let start = match (a.from, &a.consumer) {
            (Some(_), Some(_)) => {
                return Err(invalid(Some("consumer"), "give `from` or `consumer`, not both"));
            }
            (_, Some(consumer)) => Start::Consumer(parse::<ConsumerName>("consumer", consumer)?),
            (Some(from), None) if from < 0 => {
                return Err(invalid(
                    Some("from"),
                    &format!("{from}: expected an offset of 0 or more"),
                ));
            }
            (from, None) => Start::Offset(from.unwrap_or(0)),
        };
        let limit = a.limit.unwrap_or(100);
        if !(1..=MAX_READ).contains(&limit) {
            return Err(invalid(Some("limit"), &format!("{limit}: expected 1 to {MAX_READ}")));
        }
        Ok(self
            .call(&context, &ns, Primitive::Log, Access::Read, |_| async {
                let from = log::start_offset(&self.store, &ns, &stream, &start).await?;
                let records = log::read(&self.store, &ns, &stream, from, limit).await?;
                Ok(listed("records", records))
            })
            .await)
    }

    #[tool(
        description = "Add a work item to a queue for some agent to claim. With `key` (e.g. an issue URL), \
                       pushing the same key again creates nothing and returns the first item (created: \
                       false). `requires`: capabilities a worker must have (e.g. [\"gpu\"])."
    )]
    async fn queue_push(
        &self,
        Parameters(a): Parameters<args::QueuePush>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let ns = namespace(a.namespace.as_deref())?;
        let queue_name: QueueName = parse("queue", &a.queue)?;
        checked("body", arbiter_core::queue::check_body(&a.body).map_err(Error::from))?;
        if let Some(key) = &a.key {
            checked("key", arbiter_core::queue::check_key(key).map_err(Error::from))?;
        }
        let requires = capabilities("requires", &a.requires)?;
        let not_before = a
            .not_before
            .as_deref()
            .map(|text| args::not_before("not_before", text))
            .transpose()?;
        let item = checked(
            "max_attempts",
            NewItem::new(
                ns.clone(),
                queue_name,
                a.body,
                a.key,
                a.priority.unwrap_or(0),
                requires,
                not_before,
                a.max_attempts.unwrap_or(DEFAULT_MAX_ATTEMPTS),
            )
            .map_err(Error::from),
        )?;
        Ok(self
            .call(&context, &ns, Primitive::Queue, Access::Write, |_| {
                queue::push(&self.store, &item)
            })
            .await)
    }

    #[tool(
        description = "Claim one work item of a queue: the highest priority, then oldest, ready item whose \
                       requirements are among your `capabilities`. Returns {\"claimed\": {id, token, body, \
                       attempt, …}}, or {\"claimed\": null} when there is nothing to claim (within `wait`). \
                       Nobody else gets the item while your claim lasts: call queue_heartbeat before `lease` \
                       runs out, then queue_done or queue_fail with the token."
    )]
    async fn queue_claim(
        &self,
        Parameters(a): Parameters<args::QueueClaim>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let ns = namespace(a.namespace.as_deref())?;
        let queue_name: QueueName = parse("queue", &a.queue)?;
        let capabilities = capabilities("capabilities", &a.capabilities)?;
        let lease = match a.lease.as_deref() {
            Some(text) => claim_lease("lease", text)?,
            None => arbiter_core::queue::DEFAULT_LEASE,
        };
        let wait = args::wait(a.wait.as_deref())?;
        if let Some(agent) = &a.agent {
            arbiter_core::lease::check_agent(agent).map_err(|e| invalid(Some("agent"), &e.message))?;
        }
        let ns = &ns;
        Ok(self
            .call(&context, ns, Primitive::Queue, Access::Write, |caller| async move {
                let mut holder = caller.holder;
                holder.agent = agent_label(&holder.agent, a.agent.as_deref());
                let request = ClaimRequest {
                    namespace: ns.clone(),
                    queue: queue_name,
                    holder,
                    capabilities,
                    lease,
                };
                let claimed = queue::claim(&self.store, &self.config, &request, wait).await?;
                Ok(listed("claimed", claimed))
            })
            .await)
    }

    #[tool(
        description = "Extend your claim of a work item to `lease` from now. Error `lost`: the token is stale \
                       (the claim ran out and the item may be someone else's now): stop working on it."
    )]
    async fn queue_heartbeat(
        &self,
        Parameters(a): Parameters<args::QueueHeartbeat>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let ns = namespace(a.namespace.as_deref())?;
        let id = item_id(a.id)?;
        let token = claim_token(a.token)?;
        let lease = claim_lease("lease", &a.lease)?;
        Ok(self
            .call(&context, &ns, Primitive::Queue, Access::Write, |_| {
                queue::heartbeat(&self.store, &ns, id, token, lease, None)
            })
            .await)
    }

    #[tool(
        description = "Finish a work item you claimed, with success (and an optional `result`). Error \
                       `lost`: the token is stale and nothing was changed."
    )]
    async fn queue_done(
        &self,
        Parameters(a): Parameters<args::QueueDone>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let ns = namespace(a.namespace.as_deref())?;
        let id = item_id(a.id)?;
        let token = claim_token(a.token)?;
        if let Some(result) = &a.result {
            checked(
                "result",
                arbiter_core::queue::check_note("result", result).map_err(Error::from),
            )?;
        }
        Ok(self
            .call(&context, &ns, Primitive::Queue, Access::Write, |_| {
                queue::done(&self.store, &ns, id, token, a.result.as_deref())
            })
            .await)
    }

    #[tool(
        description = "Give up a work item you claimed, with a `reason`: it is ready again after `retry_in` \
                       (default: a backoff), or dead after its last attempt. Error `lost`: the token is stale \
                       and nothing was changed."
    )]
    async fn queue_fail(
        &self,
        Parameters(a): Parameters<args::QueueFail>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let ns = namespace(a.namespace.as_deref())?;
        let id = item_id(a.id)?;
        let token = claim_token(a.token)?;
        checked(
            "reason",
            arbiter_core::queue::check_note("reason", &a.reason).map_err(Error::from),
        )?;
        let retry_in = a
            .retry_in
            .as_deref()
            .map(|text| {
                arbiter_core::duration::parse_duration_or_zero(text)
                    .and_then(|delay| arbiter_core::queue::check_delay("retry_in", delay))
                    .map_err(|e| invalid(Some("retry_in"), &e.message))
            })
            .transpose()?;
        let request = FailRequest {
            namespace: ns.clone(),
            id,
            token,
            reason: a.reason,
            retry_in,
        };
        Ok(self
            .call(&context, &ns, Primitive::Queue, Access::Write, |_| {
                queue::fail(&self.store, &self.config, &request)
            })
            .await)
    }

    #[tool(
        description = "List work items, newest first: of one `queue`, in one `state` (ready, claimed, done, \
                          dead, cancelled)."
    )]
    async fn queue_list(
        &self,
        Parameters(a): Parameters<args::QueueList>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let ns = namespace(a.namespace.as_deref())?;
        let queue_name = a
            .queue
            .as_deref()
            .map(|text| parse::<QueueName>("queue", text))
            .transpose()?;
        let state = a
            .state
            .as_deref()
            .map(|text| parse::<ItemState>("state", text))
            .transpose()?;
        let limit = a.limit.unwrap_or(DEFAULT_ITEMS);
        if !(1..=queue::MAX_LIST).contains(&limit) {
            return Err(invalid(
                Some("limit"),
                &format!("{limit}: expected 1 to {}", queue::MAX_LIST),
            ));
        }
        Ok(self
            .call(&context, &ns, Primitive::Queue, Access::Read, |_| async {
                queue::list(&self.store, &ns, queue_name.as_ref(), state, limit)
                    .await
                    .map(|items| listed("items", items))
            })
            .await)
    }

    #[tool(
        description = "Show one work item: its state, body, result or last error, and every claim of it \
                          (who, token, outcome)."
    )]
    async fn queue_show(
        &self,
        Parameters(a): Parameters<args::QueueShow>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let ns = namespace(a.namespace.as_deref())?;
        let id = item_id(a.id)?;
        Ok(self
            .call(&context, &ns, Primitive::Queue, Access::Read, |_| {
                queue::show(&self.store, &ns, id)
            })
            .await)
    }

    #[tool(
        description = "Every work queue's counts: depth (ready now), age of the oldest ready item, delayed, \
                          claimed, done, dead, claims in the last minute."
    )]
    async fn queue_stats(
        &self,
        Parameters(a): Parameters<args::QueueStats>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let ns = namespace(a.namespace.as_deref())?;
        Ok(self
            .call(&context, &ns, Primitive::Queue, Access::Read, |_| async {
                queue::stats(&self.store, &self.config, &ns)
                    .await
                    .map(|queues| listed("queues", queues))
            })
            .await)
    }

    #[tool(
        description = "The fleet: every agent loop (state, host, last rounds, failures, next run) and each \
                       GitHub identity's budget, as `arbiter status --json` shows it."
    )]
    async fn status(
        &self,
        Parameters(a): Parameters<args::Status>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let ns = namespace(a.namespace.as_deref())?;
        Ok(self
            .call(&context, &ns, Primitive::Status, Access::Read, |_| {
                fleet::fleet_status(&self.store, &ns)
            })
            .await)
    }
}

impl Arbiter {
    /// `kv_put` and `kv_cas`: one operation, `kv::put`.
    async fn put(
        &self,
        context: RequestContext<RoleServer>,
        ns: Namespace,
        key: &str,
        value: String,
        if_version: Option<i64>,
    ) -> Result<CallToolResult, ErrorData> {
        let key: Key = parse("key", key)?;
        let value = checked("value", kv::Value::parse(value))?;
        if let Some(version) = if_version
            && version < 0
        {
            return Err(invalid(
                Some("if_version"),
                &format!("{version}: expected a version of 0 (absent) or more"),
            ));
        }
        Ok(self
            .call(&context, &ns, Primitive::Kv, Access::Write, |_| {
                kv::put(&self.store, &ns, &key, value, if_version)
            })
            .await)
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for Arbiter {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("arbiter", env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "arbiter coordinates a fleet of agents through one store: take a lease on what you are about \
                 to change (lease_acquire; renew it, release it), share state with compare-and-swap \
                 (kv_get, kv_cas), record decisions (decide), alert people (notify), respect shared rate \
                 limits (limit_take), share work through queues (queue_push; queue_claim, then \
                 queue_heartbeat and queue_done or queue_fail with the claim's token), and see the fleet \
                 (status). Every tool takes an optional `namespace` \
                 (default `default`). A failed call returns {\"error\": CODE, \"message\": TEXT}.",
            )
    }
}

/// Serves the tools over standard input and output until the client closes them
/// (`arbiter mcp`).
pub async fn serve_stdio(store: Store, config: Arc<Config>) -> arbiter_core::Result<()> {
    let server = Arbiter::stdio(store, config)?;
    let running = server
        .serve(rmcp::transport::stdio())
        .await
        .map_err(|e| Error::internal(format!("MCP handshake over stdio failed: {e}")))?;
    running
        .waiting()
        .await
        .map_err(|e| Error::internal(format!("MCP over stdio: {e}")))?;
    Ok(())
}

/// Which `Host` headers `/mcp` answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hosts {
    /// `localhost`, `127.0.0.1` and `::1` only (rmcp's guard against DNS rebinding): for a
    /// server that trusts every request (`--insecure-no-auth`), which a web page could
    /// otherwise reach through a name of its own resolving to 127.0.0.1.
    Loopback,
    /// Any: every request carries a bearer token, which no rebinding page has.
    Any,
}

/// The streamable HTTP service the server mounts at `/mcp` (`nest_service`), behind its
/// auth layer (which puts the request's [`Principal`] into its extensions). Sessions live
/// in memory; they end when `shutdown` resolves (the server's shutdown), so open event
/// streams do not hold it up. Spawns the task that waits for it: call it in a runtime.
pub fn http_service(
    store: Store,
    config: Arc<Config>,
    shutdown: impl Future<Output = ()> + Send + 'static,
    hosts: Hosts,
) -> StreamableHttpService<Arbiter, LocalSessionManager> {
    let cancel = CancellationToken::new();
    let ended = cancel.clone();
    tokio::spawn(async move {
        shutdown.await;
        ended.cancel();
    });
    let mut http = StreamableHttpServerConfig::default().with_cancellation_token(cancel);
    if hosts == Hosts::Any {
        http = http.disable_allowed_hosts();
    }
    StreamableHttpService::new(
        move || Ok(Arbiter::http(store.clone(), config.clone())),
        Arc::default(),
        http,
    )
}
