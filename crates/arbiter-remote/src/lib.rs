//! A client of arbiter's HTTP server (`arbiter serve`): the operations of `arbiter_ops`
//! over HTTP, one typed method per operation, each returning the very view type the
//! operation returns — so the CLI renders an answer from a server exactly as one from the
//! store (`arbiter --server URL`).
//!
//! Requests are built from the server's own wire types (`arbiter_server::wire`), so client
//! and server cannot drift; path parameters go as one percent-encoded segment each (a key
//! `a/b` is sent as `a%2Fb`). A failure comes back as the `arbiter_core::Error` the server
//! had — kind, message and detail — (see [`error`](crate::error)); a server that cannot be
//! reached is `Unavailable`, naming its URL (redacted as every URL arbiter shows), never
//! the token.
//!
//! Layout: this file ([`Client`] and its methods, grouped by primitive), `error` (answers
//! and transport failures into errors), [`sse`] (the event streams of watches, follows and
//! the fleet's status).

mod error;
pub mod sse;

use std::time::Duration;

use arbiter_client::lease::{Granted, LeaseKeeper};
use arbiter_core::kv::{IfVersion, KeyValue, KvEvent};
use arbiter_core::lease::{AcquireRequest, Holder, Lease, RenewRequest};
use arbiter_core::limit::{BucketSpec, Observation, TakeRequest};
use arbiter_core::log::{ConsumerInfo, ContentType, NewRecord, StreamInfo};
use arbiter_core::name::{BucketName, ConsumerName, Key, LeaseName, Namespace, Prefix, QueueName, StreamName};
use arbiter_core::queue::{ClaimRequest, FailRequest, ItemState, NewItem, NotBefore, Pushed};
use arbiter_core::{Error, ErrorKind, Result};
use arbiter_ops::decisions::{Decided, Rendered};
use arbiter_ops::fleet::FleetView;
use arbiter_ops::kv::{Deleted, Put, Value};
use arbiter_ops::lease::{LeaseShow, Released};
use arbiter_ops::limit::{BucketView, CounterView, TakeView};
use arbiter_ops::log::{AppendedView, RecordView};
use arbiter_ops::notify::ChannelView;
use arbiter_ops::queue::{ClaimView, HostView, ItemInfoView, ItemView, QueueStatsView};
use arbiter_ops::view::LeaseView;
use arbiter_server::routes::lease::MAX_WAIT;
use arbiter_server::wire;
use arbiter_store::{Accepted, DeliveryState, OutboxEntry, Resolved, StoreInfo};
use reqwest::header::{AUTHORIZATION, HeaderValue};
use reqwest::{Method, RequestBuilder, Url};
use serde::Serialize;
use serde::de::DeserializeOwned;

pub use sse::Typed as Stream;

/// How long a request may take beyond the wait it asks the server for.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// How long connecting may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A server, and the token requests carry.
#[derive(Clone)]
pub struct Client {
    base: Url,
    /// The URL as errors show it (redacted).
    shown: String,
    /// `Bearer <secret>`, marked sensitive (never in a debug print).
    authorization: Option<HeaderValue>,
    http: reqwest::Client,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("server", &self.shown)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client of the server at `url` (`http://HOST:PORT`, or `https://…`, perhaps with a
    /// path prefix a reverse proxy serves it under), sending `token` as a bearer token.
    pub fn new(url: &str, token: Option<&str>) -> Result<Client> {
        let shown = arbiter_core::redact::url(url);
        let bad = |what: &str| Error::bad_input(format!("invalid server URL {shown}: {what}"));
        let mut base = Url::parse(url).map_err(|e| bad(&format!("{e}; expected http://HOST:PORT")))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(bad("expected http://HOST:PORT or https://HOST[:PORT]"));
        }
        if base.cannot_be_a_base() || base.host_str().is_none() {
            return Err(bad("expected http://HOST:PORT"));
        }
        if !base.username().is_empty() || base.password().is_some() {
            return Err(bad(
                "a user or password in the URL is not used: give the token in ARBITER_TOKEN or --token-file",
            ));
        }
        if base.query().is_some() || base.fragment().is_some() {
            return Err(bad("expected no query or fragment"));
        }
        // A path prefix ends with `/`, so pushing segments extends it.
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        let authorization = token
            .map(|token| {
                let mut value = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
                    Error::bad_input("the token has characters a header cannot carry: expected the secret `arbiter token create` printed")
                })?;
                value.set_sensitive(true);
                Ok::<_, Error>(value)
            })
            .transpose()?;
        arbiter_notify::init_tls();
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("arbiter/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::internal(format!("cannot build the HTTP client: {e}")))?;
        Ok(Client {
            base,
            shown,
            authorization,
            http,
        })
    }

    /// The server's URL as arbiter shows it.
    pub fn shown(&self) -> &str {
        &self.shown
    }

    // -----------------------------------------------------------------------------------
    // Plumbing

    /// `BASE/v1/SEGMENTS…`, each segment percent-encoded whole (`/` as `%2F`).
    fn endpoint(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .expect("checked in new: the URL can be a base")
            .pop_if_empty()
            .push("v1")
            .extend(segments);
        url
    }

    /// `BASE/v1/ns/NS/SEGMENTS…`.
    fn ns(&self, namespace: &Namespace, segments: &[&str]) -> Url {
        let mut all = vec!["ns", namespace.as_str()];
        all.extend_from_slice(segments);
        self.endpoint(&all)
    }

    fn request(&self, method: Method, url: Url) -> RequestBuilder {
        let request = self.http.request(method, url);
        match &self.authorization {
            Some(value) => request.header(AUTHORIZATION, value.clone()),
            None => request,
        }
    }

    /// Sends a request whose server side may wait up to `wait`, and reads its answer.
    async fn send<T: DeserializeOwned>(&self, request: RequestBuilder, wait: Duration) -> Result<T> {
        let response = request
            .timeout(REQUEST_TIMEOUT + wait)
            .send()
            .await
            .map_err(|e| error::transport(&e, &self.shown))?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(|e| error::transport(&e, &self.shown))?;
        if !status.is_success() {
            return Err(error::from_answer(status, &bytes, &self.shown));
        }
        serde_json::from_slice(&bytes).map_err(|e| {
            Error::internal(format!(
                "the server at {} answered {status} with a body this client cannot read: {e}",
                self.shown
            ))
        })
    }

    async fn get<T: DeserializeOwned>(&self, url: Url) -> Result<T> {
        self.send(self.request(Method::GET, url), Duration::ZERO).await
    }

    async fn with_body<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        url: Url,
        body: &B,
        wait: Duration,
    ) -> Result<T> {
        self.send(self.request(method, url).json(body), wait).await
    }

    /// Opens an event stream of events named `name`.
    async fn stream<T: DeserializeOwned>(&self, url: Url, name: &'static str) -> Result<Stream<T>> {
        let response = self
            .request(Method::GET, url)
            .header(reqwest::header::ACCEPT, "text/event-stream")
            .send()
            .await
            .map_err(|e| error::transport(&e, &self.shown))?;
        let status = response.status();
        if !status.is_success() {
            let bytes = response.bytes().await.map_err(|e| error::transport(&e, &self.shown))?;
            return Err(error::from_answer(status, &bytes, &self.shown));
        }
        Ok(Stream::new(sse::Events::new(response, self.shown.clone()), name))
    }

    // -----------------------------------------------------------------------------------
    // Leases

    /// `arbiter_ops::lease::acquire`. A wait longer than the server's longest long poll
    /// ([`MAX_WAIT`], 10 minutes) is asked for in turns of at most that.
    pub async fn lease_acquire(&self, request: &AcquireRequest) -> Result<LeaseView> {
        let url = self.ns(&request.namespace, &["leases", request.name.as_str(), "acquire"]);
        // The wait still to ask for: the server measures each turn as the store would.
        let mut left = request.wait;
        // Bounded: every turn but the last waits MAX_WAIT in the server.
        loop {
            let wait = left.map(|left| left.min(MAX_WAIT)).filter(|wait| millis(*wait) > 0);
            let body = wire::AcquireBody {
                ttl_ms: millis(request.ttl),
                slots: Some(request.slots),
                wait_ms: wait.map(millis),
                holder: Some(holder_body(&request.holder)),
            };
            let answer = self
                .with_body(Method::POST, url.clone(), &body, wait.unwrap_or_default())
                .await;
            match answer {
                Err(e) if e.kind == ErrorKind::Held && wait == Some(MAX_WAIT) => {
                    left = left.map(|left| left.saturating_sub(MAX_WAIT));
                }
                answer => return answer,
            }
        }
    }

    /// `arbiter_ops::lease::acquire`, as the keep-alive of a held lease starts from it
    /// (`arbiter lock` through a server): the lease granted, and when a request that the
    /// store counted its TTL from later than was sent. Without a wait that is the acquire;
    /// after one (a long poll: the grant came at some unknown point of it) it is a renew
    /// sent right after the grant, so the holder's deadline rule starts from a known time.
    pub async fn lease_grant(&self, request: &AcquireRequest) -> Result<Granted> {
        let mut sent = tokio::time::Instant::now();
        let view = self.lease_acquire(request).await?;
        if request.wait.is_some() {
            sent = tokio::time::Instant::now();
            self.lease_renew(&request.namespace, &request.name, view.token, None, None)
                .await?;
        }
        Ok(Granted {
            lease: lease_from_view(&view, &self.shown)?,
            sent,
        })
    }

    /// `arbiter_ops::lease::renew`.
    pub async fn lease_renew(
        &self,
        namespace: &Namespace,
        name: &LeaseName,
        token: i64,
        ttl: Option<Duration>,
        pgid: Option<u32>,
    ) -> Result<LeaseView> {
        let url = self.ns(namespace, &["leases", name.as_str(), "renew"]);
        let body = wire::RenewBody {
            token,
            ttl_ms: ttl.map(millis),
            pgid,
        };
        self.with_body(Method::POST, url, &body, Duration::ZERO).await
    }

    /// `arbiter_ops::lease::release`.
    pub async fn lease_release(&self, namespace: &Namespace, name: &LeaseName, token: i64) -> Result<Released> {
        let url = self.ns(namespace, &["leases", name.as_str(), "release"]);
        self.with_body(Method::POST, url, &wire::ReleaseBody { token }, Duration::ZERO)
            .await
    }

    /// `arbiter_ops::lease::list`.
    pub async fn lease_list(&self, namespace: &Namespace, prefix: &Prefix) -> Result<Vec<LeaseView>> {
        let mut url = self.ns(namespace, &["leases"]);
        query(&mut url, &[("prefix", Some(prefix.as_str()).filter(|p| !p.is_empty()))]);
        self.get(url).await
    }

    /// `arbiter_ops::lease::show`.
    pub async fn lease_show(&self, namespace: &Namespace, name: &LeaseName) -> Result<LeaseShow> {
        self.get(self.ns(namespace, &["leases", name.as_str()])).await
    }

    // -----------------------------------------------------------------------------------
    // Keys

    /// `arbiter_ops::kv::get`.
    pub async fn kv_get(&self, namespace: &Namespace, key: &Key) -> Result<KeyValue> {
        self.get(self.ns(namespace, &["kv", key.as_str()])).await
    }

    /// `arbiter_ops::kv::put`.
    pub async fn kv_put(&self, namespace: &Namespace, key: &Key, value: &Value, if_version: IfVersion) -> Result<Put> {
        let body = wire::PutBody {
            value: value.as_str().to_string(),
            if_version,
        };
        self.with_body(
            Method::PUT,
            self.ns(namespace, &["kv", key.as_str()]),
            &body,
            Duration::ZERO,
        )
        .await
    }

    /// `arbiter_ops::kv::delete`.
    pub async fn kv_delete(&self, namespace: &Namespace, key: &Key, if_version: IfVersion) -> Result<Deleted> {
        let mut url = self.ns(namespace, &["kv", key.as_str()]);
        let version = if_version.map(|v| v.to_string());
        query(&mut url, &[("if_version", version.as_deref())]);
        self.send(self.request(Method::DELETE, url), Duration::ZERO).await
    }

    /// `arbiter_ops::kv::list`.
    pub async fn kv_list(&self, namespace: &Namespace, prefix: &Prefix) -> Result<Vec<KeyValue>> {
        let mut url = self.ns(namespace, &["kv"]);
        query(&mut url, &[("prefix", Some(prefix.as_str()).filter(|p| !p.is_empty()))]);
        self.get(url).await
    }

    /// `arbiter_ops::kv::watch`: the changes, one event each.
    pub async fn kv_watch(&self, namespace: &Namespace, prefix: &Prefix, from: Option<i64>) -> Result<Stream<KvEvent>> {
        let mut url = self.ns(namespace, &["watch", "kv"]);
        let from = from.map(|f| f.to_string());
        query(
            &mut url,
            &[
                ("prefix", Some(prefix.as_str()).filter(|p| !p.is_empty())),
                ("from", from.as_deref()),
            ],
        );
        self.stream(url, "kv").await
    }

    // -----------------------------------------------------------------------------------
    // Limits

    /// `arbiter_ops::limit::define`.
    pub async fn limit_define(
        &self,
        namespace: &Namespace,
        name: &BucketName,
        spec: &BucketSpec,
        if_absent: bool,
    ) -> Result<BucketView> {
        let body = wire::DefineBody {
            rate: spec.rate.to_string(),
            burst: Some(spec.burst),
            reserve_percent: Some(spec.reserve_percent),
            fair: spec.fair,
            if_absent,
        };
        let url = self.ns(namespace, &["limits", name.as_str()]);
        self.with_body(Method::PUT, url, &body, Duration::ZERO).await
    }

    /// `arbiter_ops::limit::take`. The server waits at most [`MAX_WAIT`] (10 minutes): a
    /// longer `max_wait` is cut to that.
    pub async fn limit_take(&self, request: &TakeRequest, max_wait: Duration) -> Result<TakeView> {
        let wait = Some(max_wait.min(MAX_WAIT)).filter(|wait| millis(*wait) > 0);
        let body = wire::TakeBody {
            buckets: request.buckets.iter().map(|b| b.as_str().to_string()).collect(),
            cost: Some(request.cost),
            priority: Some(request.priority.as_str().to_string()),
            party: request.party.clone(),
            wait_ms: wait.map(millis),
        };
        let url = self.ns(&request.namespace, &["limits", "take"]);
        self.with_body(Method::POST, url, &body, wait.unwrap_or_default()).await
    }

    /// `arbiter_ops::limit::show`.
    pub async fn limit_show(&self, namespace: &Namespace, name: &BucketName) -> Result<BucketView> {
        self.get(self.ns(namespace, &["limits", name.as_str()])).await
    }

    /// `arbiter_ops::limit::list`.
    pub async fn limit_list(&self, namespace: &Namespace) -> Result<Vec<BucketView>> {
        self.get(self.ns(namespace, &["limits"])).await
    }

    /// `arbiter_ops::limit::observe`.
    pub async fn limit_observe(
        &self,
        namespace: &Namespace,
        name: &BucketName,
        observation: &Observation,
    ) -> Result<BucketView> {
        let body = wire::ObserveBody {
            limit: observation.limit,
            remaining: observation.remaining,
            reset: observation.reset_at.map(|ms| ms / 1000),
            retry_after: observation.retry_after.map(|d| d.as_secs()),
            hit: observation.hit,
        };
        let url = self.ns(namespace, &["limits", name.as_str(), "observe"]);
        self.with_body(Method::POST, url, &body, Duration::ZERO).await
    }

    /// `arbiter_ops::limit::counters`.
    pub async fn limit_counters(&self, namespace: &Namespace, prefix: &str) -> Result<Vec<CounterView>> {
        let mut url = self.ns(namespace, &["counters"]);
        query(&mut url, &[("prefix", Some(prefix).filter(|p| !p.is_empty()))]);
        self.get(url).await
    }

    // -----------------------------------------------------------------------------------
    // Logs

    /// `arbiter_ops::log::append`.
    pub async fn log_append(&self, record: &NewRecord) -> Result<AppendedView> {
        let fields = record.fields();
        let body = wire::AppendBody {
            body: serde_json::Value::String(fields.body.clone()),
            key: fields.idempotency_key.clone(),
            kind: Some(fields.kind.clone()),
            by: Some(fields.author.clone()),
            tags: fields.tags.clone(),
            json_body: fields.content_type == ContentType::Json,
            trace_id: fields.trace_id.clone(),
        };
        let url = self.ns(record.namespace(), &["logs", record.stream().as_str(), "records"]);
        self.with_body(Method::POST, url, &body, Duration::ZERO).await
    }

    /// `arbiter_ops::log::read`: up to `limit` records (at most 1000) from `from` on.
    pub async fn log_read(
        &self,
        namespace: &Namespace,
        stream: &StreamName,
        from: i64,
        limit: usize,
    ) -> Result<Vec<RecordView>> {
        let mut url = self.ns(namespace, &["logs", stream.as_str(), "records"]);
        let (from, limit) = (from.to_string(), limit.to_string());
        query(&mut url, &[("from", Some(&from)), ("limit", Some(&limit))]);
        self.get(url).await
    }

    /// `arbiter_ops::log::consumer_offset`: the consumer's committed offset, 0 for one that
    /// never committed.
    pub async fn log_consumer_offset(
        &self,
        namespace: &Namespace,
        stream: &StreamName,
        consumer: &ConsumerName,
    ) -> Result<i64> {
        let consumers = self.log_consumers(namespace, stream).await?;
        Ok(consumers
            .iter()
            .find(|c| &c.consumer == consumer)
            .map_or(0, |c| c.offset))
    }

    /// `arbiter_ops::log::follow`: the records from `from` on, as they are appended.
    pub async fn log_follow(
        &self,
        namespace: &Namespace,
        stream: &StreamName,
        from: i64,
    ) -> Result<Stream<RecordView>> {
        let mut url = self.ns(namespace, &["logs", stream.as_str(), "follow"]);
        let from = from.to_string();
        query(&mut url, &[("from", Some(&from))]);
        self.stream(url, "record").await
    }

    /// `arbiter_ops::log::commit`.
    pub async fn log_commit(
        &self,
        namespace: &Namespace,
        stream: &StreamName,
        consumer: &ConsumerName,
        offset: i64,
    ) -> Result<ConsumerInfo> {
        let url = self.ns(namespace, &["logs", stream.as_str(), "consumers", consumer.as_str()]);
        self.with_body(Method::PUT, url, &wire::CommitBody { offset }, Duration::ZERO)
            .await
    }

    /// `arbiter_ops::log::consumers`.
    pub async fn log_consumers(&self, namespace: &Namespace, stream: &StreamName) -> Result<Vec<ConsumerInfo>> {
        self.get(self.ns(namespace, &["logs", stream.as_str(), "consumers"]))
            .await
    }

    /// `arbiter_ops::log::streams`.
    pub async fn log_streams(&self, namespace: &Namespace) -> Result<Vec<StreamInfo>> {
        self.get(self.ns(namespace, &["logs"])).await
    }

    // -----------------------------------------------------------------------------------
    // Decisions

    /// `arbiter_ops::decisions::decide`, from the decision's text as the CLI reads it (the
    /// server makes the record with the same `arbiter_ops::decisions` functions).
    pub async fn decide(&self, namespace: &Namespace, body: &wire::DecideBody) -> Result<Decided> {
        self.with_body(Method::POST, self.ns(namespace, &["decisions"]), body, Duration::ZERO)
            .await
    }

    /// `arbiter_ops::decisions::render`.
    pub async fn decisions_render(&self, namespace: &Namespace) -> Result<Rendered> {
        self.get(self.ns(namespace, &["decisions"])).await
    }

    // -----------------------------------------------------------------------------------
    // Notifications

    /// `arbiter_ops::notify::route` and `notify`, routed by the server's configuration.
    pub async fn notify(&self, namespace: &Namespace, body: &wire::NotifyBody) -> Result<Accepted> {
        self.with_body(
            Method::POST,
            self.ns(namespace, &["notifications"]),
            body,
            Duration::ZERO,
        )
        .await
    }

    /// `arbiter_ops::notify::resolve`.
    pub async fn notify_resolve(
        &self,
        namespace: &Namespace,
        dedupe_key: &str,
        body: Option<&str>,
    ) -> Result<Resolved> {
        let body = wire::ResolveBody {
            dedupe_key: dedupe_key.to_string(),
            body: body.map(str::to_string),
        };
        let url = self.ns(namespace, &["notifications", "resolve"]);
        self.with_body(Method::POST, url, &body, Duration::ZERO).await
    }

    /// `arbiter_ops::notify::list`.
    pub async fn notifications_list(
        &self,
        namespace: &Namespace,
        state: Option<DeliveryState>,
        limit: usize,
    ) -> Result<Vec<OutboxEntry>> {
        let mut url = self.ns(namespace, &["notifications"]);
        let limit = limit.to_string();
        query(
            &mut url,
            &[("state", state.map(DeliveryState::as_str)), ("limit", Some(&limit))],
        );
        self.get(url).await
    }

    /// `arbiter_ops::notify::retry`.
    pub async fn notifications_retry(&self, namespace: &Namespace, id: i64) -> Result<OutboxEntry> {
        let url = self.ns(namespace, &["notifications", &id.to_string(), "retry"]);
        self.send(self.request(Method::POST, url), Duration::ZERO).await
    }

    /// `arbiter_ops::notify::channels`: the server's configured channels (an `admin` route).
    pub async fn channels(&self) -> Result<Vec<ChannelView>> {
        self.get(self.endpoint(&["channels"])).await
    }

    // -----------------------------------------------------------------------------------
    // Work items

    /// `arbiter_ops::queue::push`: 201 for a new item, 200 for a key already in the queue
    /// (`created: false`), both the same `Pushed`.
    pub async fn queue_push(&self, item: &NewItem) -> Result<Pushed> {
        let (delay_ms, not_before) = match item.not_before {
            Some(NotBefore::After(delay)) => (Some(millis(delay)), None),
            Some(NotBefore::At(at)) => (None, Some(arbiter_ops::view::timestamp(at))),
            None => (None, None),
        };
        let body = wire::PushBody {
            body: item.body.clone(),
            key: item.key.clone(),
            priority: Some(item.priority),
            requires: item.requires.iter().map(|c| c.as_str().to_string()).collect(),
            delay_ms,
            not_before,
            max_attempts: Some(item.max_attempts),
        };
        let url = self.ns(&item.namespace, &["queues", item.queue.as_str(), "items"]);
        self.with_body(Method::POST, url, &body, Duration::ZERO).await
    }

    /// `arbiter_ops::queue::claim`: `None` when there was nothing to claim within `wait`.
    /// A wait longer than the server's longest long poll ([`MAX_WAIT`]) is asked for in
    /// turns of at most that. The claim's holder is the request's (the server records it).
    pub async fn queue_claim(&self, request: &ClaimRequest, wait: Option<Duration>) -> Result<Option<ClaimView>> {
        let url = self.ns(&request.namespace, &["queues", request.queue.as_str(), "claim"]);
        let mut left = wait;
        // Bounded: every turn but the last waits MAX_WAIT in the server.
        loop {
            let wait = left.map(|left| left.min(MAX_WAIT)).filter(|wait| millis(*wait) > 0);
            let body = wire::ClaimBody {
                capabilities: request.capabilities.iter().map(|c| c.as_str().to_string()).collect(),
                lease_ms: Some(millis(request.lease)),
                wait_ms: wait.map(millis),
                holder: Some(holder_body(&request.holder)),
            };
            let answer: wire::ClaimAnswer = self
                .with_body(Method::POST, url.clone(), &body, wait.unwrap_or_default())
                .await?;
            match answer.claimed {
                None if wait == Some(MAX_WAIT) => left = left.map(|left| left.saturating_sub(MAX_WAIT)),
                claimed => return Ok(claimed),
            }
        }
    }

    /// `arbiter_ops::queue::heartbeat`.
    pub async fn queue_heartbeat(
        &self,
        namespace: &Namespace,
        id: i64,
        token: i64,
        lease: Duration,
        pgid: Option<u32>,
    ) -> Result<ItemView> {
        let body = wire::HeartbeatBody {
            token,
            lease_ms: millis(lease),
            pgid,
        };
        self.with_body(
            Method::POST,
            self.item(namespace, id, "heartbeat"),
            &body,
            Duration::ZERO,
        )
        .await
    }

    /// `arbiter_ops::queue::done`.
    pub async fn queue_done(
        &self,
        namespace: &Namespace,
        id: i64,
        token: i64,
        result: Option<&str>,
    ) -> Result<ItemView> {
        let body = wire::DoneBody {
            token,
            result: result.map(str::to_string),
        };
        self.with_body(Method::POST, self.item(namespace, id, "done"), &body, Duration::ZERO)
            .await
    }

    /// `arbiter_ops::queue::fail`.
    pub async fn queue_fail(&self, request: &FailRequest) -> Result<ItemView> {
        let body = wire::FailBody {
            token: request.token,
            reason: request.reason.clone(),
            retry_in_ms: request.retry_in.map(millis),
        };
        let url = self.item(&request.namespace, request.id, "fail");
        self.with_body(Method::POST, url, &body, Duration::ZERO).await
    }

    /// `arbiter_ops::queue::retry`.
    pub async fn queue_retry(&self, namespace: &Namespace, id: i64) -> Result<ItemView> {
        let url = self.item(namespace, id, "retry");
        self.send(self.request(Method::POST, url), Duration::ZERO).await
    }

    /// `arbiter_ops::queue::list`: at most `limit` items (capped at
    /// `arbiter_ops::queue::MAX_LIST`), newest first.
    pub async fn queue_list(
        &self,
        namespace: &Namespace,
        queue: Option<&QueueName>,
        state: Option<ItemState>,
        limit: usize,
    ) -> Result<Vec<ItemView>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut url = self.ns(namespace, &["items"]);
        let limit = limit.min(arbiter_ops::queue::MAX_LIST).to_string();
        query(
            &mut url,
            &[
                ("queue", queue.map(QueueName::as_str)),
                ("state", state.map(ItemState::as_str)),
                ("limit", Some(&limit)),
            ],
        );
        self.get(url).await
    }

    /// `arbiter_ops::queue::show`.
    pub async fn queue_show(&self, namespace: &Namespace, id: i64) -> Result<ItemInfoView> {
        self.get(self.ns(namespace, &["items", &id.to_string()])).await
    }

    /// `arbiter_ops::queue::stats`.
    pub async fn queue_stats(&self, namespace: &Namespace) -> Result<Vec<QueueStatsView>> {
        self.get(self.ns(namespace, &["queues"])).await
    }

    /// `arbiter_ops::queue::hosts`.
    pub async fn queue_hosts(&self, namespace: &Namespace) -> Result<Vec<HostView>> {
        self.get(self.ns(namespace, &["hosts"])).await
    }

    /// `BASE/v1/ns/NS/items/ID/ACTION`.
    fn item(&self, namespace: &Namespace, id: i64, action: &str) -> Url {
        self.ns(namespace, &["items", &id.to_string(), action])
    }

    // -----------------------------------------------------------------------------------
    // The fleet, the store

    /// `arbiter_ops::fleet::fleet_status`.
    pub async fn fleet_status(&self, namespace: &Namespace) -> Result<FleetView> {
        self.get(self.ns(namespace, &["status"])).await
    }

    /// The fleet at start and whenever it changes.
    pub async fn fleet_stream(&self, namespace: &Namespace) -> Result<Stream<FleetView>> {
        self.stream(self.ns(namespace, &["status", "stream"]), "status").await
    }

    /// `arbiter_ops::store::info`: the server's store (an `admin` route).
    pub async fn store_info(&self) -> Result<StoreInfo> {
        self.get(self.endpoint(&["store"])).await
    }
}

/// Appends the parameters given (`Some`) to `url`'s query.
fn query(url: &mut Url, pairs: &[(&str, Option<&str>)]) {
    let given: Vec<_> = pairs.iter().filter_map(|(k, v)| v.map(|v| (*k, v))).collect();
    if !given.is_empty() {
        url.query_pairs_mut().extend_pairs(given);
    }
}

/// A duration in whole milliseconds, as the wire has them.
fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// The holder as the CLI found it: the server records exactly this one, so its same-host
/// takeover works for a server on the caller's host.
/// A held lease's renews and release through the server, under the holder's own deadline
/// rule (`arbiter_client::lease::HeldLease`): the server runs the store's renew, so its
/// `lost` answer (409) is the store's error, message and all.
impl LeaseKeeper for Client {
    async fn renew(&self, request: RenewRequest) -> Result<()> {
        self.lease_renew(
            &request.namespace,
            &request.name,
            request.token,
            request.ttl,
            request.pgid,
        )
        .await
        .map(|_| ())
    }

    async fn release(&self, namespace: &Namespace, name: &LeaseName, token: i64) -> Result<()> {
        self.lease_release(namespace, name, token).await.map(|_| ())
    }
}

/// The lease a server's view describes (its times are milliseconds, as the store's).
fn lease_from_view(view: &LeaseView, shown: &str) -> Result<Lease> {
    let millis_of = |field: &str, text: &str| {
        arbiter_ops::view::parse_timestamp(field, text).map_err(|_| {
            Error::internal(format!(
                "the server at {shown} answered a lease whose {field} {text:?} is not an RFC 3339 time"
            ))
        })
    };
    let invalid = |why: String| Error::internal(format!("the server at {shown} answered an invalid lease: {why}"));
    Ok(Lease {
        namespace: view.namespace.parse().map_err(|e| invalid(format!("{e}")))?,
        name: view.name.parse().map_err(|e| invalid(format!("{e}")))?,
        token: view.token,
        holder: view.holder.clone(),
        slots: view.slots,
        ttl_ms: view.ttl_ms,
        acquired_at: millis_of("acquired_at", &view.acquired_at)?,
        expires_at: millis_of("expires_at", &view.expires_at)?,
    })
}

fn holder_body(holder: &Holder) -> wire::HolderBody {
    wire::HolderBody {
        agent: Some(holder.agent.clone()),
        host: Some(holder.host.clone()),
        boot_id: Some(holder.boot_id.clone()),
        pid: Some(holder.pid),
        start_time: Some(holder.start_time),
        pgid: holder.pgid,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_parameters_are_one_segment_each() {
        let client = Client::new("http://127.0.0.1:7420", None).unwrap();
        let ns = Namespace::parse("team-a").unwrap();
        let key = Key::parse("repo/main").unwrap();
        let url = client.ns(&ns, &["kv", key.as_str()]);
        assert_eq!(url.as_str(), "http://127.0.0.1:7420/v1/ns/team-a/kv/repo%2Fmain");
    }

    #[test]
    fn a_path_prefix_is_kept() {
        let client = Client::new("https://example.com/arbiter", None).unwrap();
        assert_eq!(
            client.endpoint(&["store"]).as_str(),
            "https://example.com/arbiter/v1/store"
        );
    }

    #[test]
    fn bad_urls_are_refused_without_showing_secrets() {
        for url in ["ftp://h/", "not a url", "http://user:pw@h:1", "http://h:1/?token=x"] {
            let error = Client::new(url, None).unwrap_err();
            assert_eq!(error.kind, ErrorKind::BadInput, "{url}");
            assert!(
                !error.message.contains("pw") && !error.message.contains("token=x"),
                "{}",
                error.message
            );
        }
    }

    #[test]
    fn the_token_is_not_in_debug_output() {
        let client = Client::new("http://127.0.0.1:7420", Some("arb_secret")).unwrap();
        assert!(!format!("{client:?}").contains("arb_secret"));
    }
}
