//! Where a command's operations go: the store itself, or a server (`--server URL` /
//! `ARBITER_SERVER`). **The one place that decides local or remote**: a command asks
//! [`Global::target`] once and calls one method per operation on it; each method calls
//! the `arbiter_ops` function or the `arbiter_remote` method of the same name, which
//! return the same view, so rendering is the same code either way and the output (and an
//! error's message and exit code) is the same byte for byte.
//!
//! Commands that work on this machine or the store itself (`watch`, `dispatch`, `inbox`,
//! `init`, `logs`, `proxy`, `doctor`, `channels test`, `token`, `serve`, `store migrate`,
//! `queue work`)
//! refuse `--server` with bad input naming it ([`local_only`]). `lock` keeps its lease
//! through [`Global::server_client`] or the store itself (its keep-alive is
//! `arbiter_client::lease::HeldLease` over either).

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use arbiter_config::Config;
use arbiter_core::decisions::Decision;
use arbiter_core::kv::{IfVersion, KeyValue, KvEvent};
use arbiter_core::limit::{BucketSpec, Observation, TakeRequest};
use arbiter_core::log::{ConsumerInfo, NewRecord, StreamInfo};
use arbiter_core::name::{BucketName, ConsumerName, Key, LeaseName, Namespace, Prefix, QueueName, StreamName};
use arbiter_core::notify::Notification;
use arbiter_core::queue::{ClaimRequest, FailRequest, ItemState, NewItem, Pushed};
use arbiter_core::{Error, Result};
use arbiter_ops::decisions::{self, Decided, Rendered};
use arbiter_ops::fleet::{self, FleetView};
use arbiter_ops::kv::{self, Deleted, Put, Value};
use arbiter_ops::lease::{self, AcquireRequest, LeaseShow, Released};
use arbiter_ops::limit::{self, BucketView, CounterView, TakeView};
use arbiter_ops::log::{self, AppendedView, RecordView, Start};
use arbiter_ops::notify::{self, ChannelView};
use arbiter_ops::queue::{self, ClaimView, ItemInfoView, ItemView, QueueStatsView};
use arbiter_ops::view::LeaseView;
use arbiter_remote::Client;
use arbiter_server::wire::{DecideBody, NotifyBody};
use arbiter_store::{Accepted, DeliveryState, OutboxEntry, Resolved, Store, StoreInfo};

use super::{Command, Global};

/// The environment variable holding the bearer token for `--server` (or `--token-file`).
pub const TOKEN_ENV: &str = "ARBITER_TOKEN";

/// The longest token file read: a secret is 47 bytes.
const MAX_TOKEN_FILE: u64 = 4096;

/// The store, or a server in front of one.
pub enum Target {
    Store(Store),
    Server(Client),
}

/// The name of a command that works on this machine or the store itself, not through a
/// server; `None` for one that can go through `--server`.
pub fn local_only(command: &Command) -> Option<&'static str> {
    use super::notify::ChannelsCommand;
    use super::queue::QueueCommand;
    use super::store::StoreCommand;
    Some(match command {
        Command::Inbox(_) => "inbox",
        Command::Init(_) => "init",
        Command::Dispatch(_) => "dispatch",
        Command::Channels(ChannelsCommand::Test { .. }) => "channels test",
        Command::Watch(_) => "watch",
        Command::Logs(_) => "logs",
        Command::Proxy(_) => "proxy",
        Command::Serve(_) => "serve",
        Command::Store(StoreCommand::Migrate) => "store migrate",
        Command::Token(_) => "token",
        Command::Doctor(_) => "doctor",
        Command::Queue(QueueCommand::Work(_)) => "queue work",
        _ => return None,
    })
}

/// The refusal of `--server` for a local command.
pub fn refuse_server(command: &str) -> Error {
    Error::bad_input(format!(
        "--server: `arbiter {command}` works on this machine and the store itself, not through a server: \
         run it without --server (and without ARBITER_SERVER) where the store is reachable"
    ))
}

impl Global {
    /// Where this command's operations go: the server of `--server` (with the token of
    /// `--token-file` or `ARBITER_TOKEN`), else the store (opened and migrated).
    pub async fn target(&self) -> Result<Target> {
        match self.server_client()? {
            Some(client) => Ok(Target::Server(client)),
            None => Ok(Target::Store(self.open_store().await?.0)),
        }
    }

    /// The client of `--server`, if given.
    pub(super) fn server_client(&self) -> Result<Option<Client>> {
        let Some(url) = &self.server else { return Ok(None) };
        let token = self.token()?;
        let client = Client::new(url, token.as_deref()).map_err(|e| e.context("--server"))?;
        Ok(Some(client))
    }

    /// The configuration, for the commands that route or list channels against the store;
    /// `None` through a server, which uses its own.
    pub fn local_config(&self) -> Result<Option<Arc<Config>>> {
        match &self.server {
            Some(_) => Ok(None),
            None => super::notify::load_config(self).map(Some),
        }
    }

    /// The bearer token: `--token-file`'s first line, else `ARBITER_TOKEN`; none if
    /// neither is given (a server without `--insecure-no-auth` then answers 401).
    fn token(&self) -> Result<Option<String>> {
        if let Some(path) = &self.token_file {
            return read_token_file(path).map(Some);
        }
        Ok(std::env::var(TOKEN_ENV)
            .ok()
            .filter(|t| !t.trim().is_empty())
            .map(|t| t.trim().to_string()))
    }
}

/// A token file: the secret on one line (a trailing newline is fine), readable by its
/// owner only (as a loop's `token_file`). Its content is never shown in an error.
fn read_token_file(path: &Path) -> Result<String> {
    let shown = format!("--token-file {}", path.display());
    arbiter_process::private::check_secret_file(path).map_err(|why| Error::bad_input(format!("--token-file {why}")))?;
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|file| file.take(MAX_TOKEN_FILE + 1).read_to_end(&mut bytes))
        .map_err(|e| Error::bad_input(format!("cannot read {shown}: {e}")))?;
    let text = String::from_utf8(bytes).ok().ok_or_else(|| {
        Error::bad_input(format!(
            "{shown} is not UTF-8 text: expected the secret `arbiter token create` printed"
        ))
    })?;
    let token = text.trim();
    if token.is_empty() || token.len() as u64 > MAX_TOKEN_FILE || token.contains(['\n', '\r']) {
        return Err(Error::bad_input(format!(
            "{shown}: expected one line, the secret `arbiter token create` printed"
        )));
    }
    Ok(token.to_string())
}

/// A `kv watch` on either target.
pub enum KvWatch {
    Store(kv::Watch),
    Server(arbiter_remote::Stream<KvEvent>),
}

impl KvWatch {
    /// The next changes (waiting for them).
    pub async fn next(&mut self) -> Result<Vec<KvEvent>> {
        match self {
            KvWatch::Store(watch) => watch.next().await,
            KvWatch::Server(stream) => Ok(vec![stream.next().await?]),
        }
    }
}

/// A `log read --follow` on either target.
pub enum Follow {
    Store(log::Follow),
    Server(arbiter_remote::Stream<RecordView>),
}

impl Follow {
    /// The next records (waiting for them).
    pub async fn next(&mut self) -> Result<Vec<RecordView>> {
        match self {
            Follow::Store(follow) => Ok(follow.next().await?.into_iter().map(RecordView::from).collect()),
            Follow::Server(stream) => Ok(vec![stream.next().await?]),
        }
    }
}

/// One operation per method: the store's `arbiter_ops` function, or the server's route.
impl Target {
    pub async fn lease_acquire(&self, request: AcquireRequest) -> Result<LeaseView> {
        match self {
            Target::Store(store) => lease::acquire(store, request).await,
            Target::Server(client) => client.lease_acquire(&request).await,
        }
    }

    pub async fn lease_renew(
        &self,
        ns: &Namespace,
        name: &LeaseName,
        token: i64,
        ttl: Option<Duration>,
    ) -> Result<LeaseView> {
        match self {
            Target::Store(store) => lease::renew(store, ns, name, token, ttl, None).await,
            Target::Server(client) => client.lease_renew(ns, name, token, ttl, None).await,
        }
    }

    pub async fn lease_release(&self, ns: &Namespace, name: &LeaseName, token: i64) -> Result<Released> {
        match self {
            Target::Store(store) => lease::release(store, ns, name, token).await,
            Target::Server(client) => client.lease_release(ns, name, token).await,
        }
    }

    pub async fn lease_list(&self, ns: &Namespace, prefix: &Prefix) -> Result<Vec<LeaseView>> {
        match self {
            Target::Store(store) => lease::list(store, ns, prefix).await,
            Target::Server(client) => client.lease_list(ns, prefix).await,
        }
    }

    pub async fn lease_show(&self, ns: &Namespace, name: &LeaseName) -> Result<LeaseShow> {
        match self {
            Target::Store(store) => lease::show(store, ns, name).await,
            Target::Server(client) => client.lease_show(ns, name).await,
        }
    }

    pub async fn kv_get(&self, ns: &Namespace, key: &Key) -> Result<KeyValue> {
        match self {
            Target::Store(store) => kv::get(store, ns, key).await,
            Target::Server(client) => client.kv_get(ns, key).await,
        }
    }

    pub async fn kv_put(&self, ns: &Namespace, key: &Key, value: Value, if_version: IfVersion) -> Result<Put> {
        match self {
            Target::Store(store) => kv::put(store, ns, key, value, if_version).await,
            Target::Server(client) => client.kv_put(ns, key, &value, if_version).await,
        }
    }

    pub async fn kv_delete(&self, ns: &Namespace, key: &Key, if_version: IfVersion) -> Result<Deleted> {
        match self {
            Target::Store(store) => kv::delete(store, ns, key, if_version).await,
            Target::Server(client) => client.kv_delete(ns, key, if_version).await,
        }
    }

    pub async fn kv_list(&self, ns: &Namespace, prefix: &Prefix) -> Result<Vec<KeyValue>> {
        match self {
            Target::Store(store) => kv::list(store, ns, prefix).await,
            Target::Server(client) => client.kv_list(ns, prefix).await,
        }
    }

    pub async fn kv_watch(&self, ns: &Namespace, prefix: &Prefix, from: Option<i64>) -> Result<KvWatch> {
        match self {
            Target::Store(store) => Ok(KvWatch::Store(kv::watch(store, ns, prefix, from).await?)),
            Target::Server(client) => Ok(KvWatch::Server(client.kv_watch(ns, prefix, from).await?)),
        }
    }

    pub async fn limit_define(
        &self,
        ns: &Namespace,
        name: &BucketName,
        spec: &BucketSpec,
        if_absent: bool,
    ) -> Result<BucketView> {
        match self {
            Target::Store(store) => limit::define(store, ns, name, spec, if_absent).await,
            Target::Server(client) => client.limit_define(ns, name, spec, if_absent).await,
        }
    }

    pub async fn limit_take(&self, request: TakeRequest, wait: Duration) -> Result<TakeView> {
        match self {
            Target::Store(store) => limit::take(store, request, wait).await,
            Target::Server(client) => client.limit_take(&request, wait).await,
        }
    }

    pub async fn limit_show(&self, ns: &Namespace, name: &BucketName) -> Result<BucketView> {
        match self {
            Target::Store(store) => limit::show(store, ns, name).await,
            Target::Server(client) => client.limit_show(ns, name).await,
        }
    }

    pub async fn limit_list(&self, ns: &Namespace) -> Result<Vec<BucketView>> {
        match self {
            Target::Store(store) => limit::list(store, ns).await,
            Target::Server(client) => client.limit_list(ns).await,
        }
    }

    pub async fn limit_observe(
        &self,
        ns: &Namespace,
        name: &BucketName,
        observation: &Observation,
    ) -> Result<BucketView> {
        match self {
            Target::Store(store) => limit::observe(store, ns, name, observation).await,
            Target::Server(client) => client.limit_observe(ns, name, observation).await,
        }
    }

    pub async fn limit_counters(&self, ns: &Namespace, prefix: &str) -> Result<Vec<CounterView>> {
        match self {
            Target::Store(store) => limit::counters(store, ns, prefix).await,
            Target::Server(client) => client.limit_counters(ns, prefix).await,
        }
    }

    pub async fn log_append(&self, record: NewRecord) -> Result<AppendedView> {
        match self {
            Target::Store(store) => log::append(store, record).await,
            Target::Server(client) => client.log_append(&record).await,
        }
    }

    pub async fn log_start_offset(&self, ns: &Namespace, stream: &StreamName, start: &Start) -> Result<i64> {
        match (self, start) {
            (Target::Store(store), start) => log::start_offset(store, ns, stream, start).await,
            (Target::Server(_), Start::Offset(offset)) => Ok(*offset),
            (Target::Server(client), Start::Consumer(consumer)) => {
                client.log_consumer_offset(ns, stream, consumer).await
            }
        }
    }

    pub async fn log_read(
        &self,
        ns: &Namespace,
        stream: &StreamName,
        from: i64,
        limit: usize,
    ) -> Result<Vec<RecordView>> {
        match self {
            Target::Store(store) => log::read(store, ns, stream, from, limit).await,
            Target::Server(client) => client.log_read(ns, stream, from, limit).await,
        }
    }

    pub async fn log_follow(&self, ns: &Namespace, stream: &StreamName, from: i64) -> Result<Follow> {
        match self {
            Target::Store(store) => Ok(Follow::Store(log::follow(store, ns, stream, from).await?)),
            Target::Server(client) => Ok(Follow::Server(client.log_follow(ns, stream, from).await?)),
        }
    }

    pub async fn log_commit(
        &self,
        ns: &Namespace,
        stream: &StreamName,
        consumer: &ConsumerName,
        offset: i64,
    ) -> Result<ConsumerInfo> {
        match self {
            Target::Store(store) => log::commit(store, ns, stream, consumer, offset).await,
            Target::Server(client) => client.log_commit(ns, stream, consumer, offset).await,
        }
    }

    pub async fn log_consumers(&self, ns: &Namespace, stream: &StreamName) -> Result<Vec<ConsumerInfo>> {
        match self {
            Target::Store(store) => log::consumers(store, ns, stream).await,
            Target::Server(client) => client.log_consumers(ns, stream).await,
        }
    }

    pub async fn log_streams(&self, ns: &Namespace) -> Result<Vec<StreamInfo>> {
        match self {
            Target::Store(store) => log::streams(store, ns).await,
            Target::Server(client) => client.log_streams(ns).await,
        }
    }

    /// Records `decision` (checked by the caller, from `text` and `title` by `by`): the
    /// server makes the same record from the same text.
    #[allow(clippy::too_many_arguments)]
    pub async fn decide(
        &self,
        ns: &Namespace,
        decision: &Decision,
        text: &str,
        title: Option<&str>,
        by: &str,
        tags: BTreeMap<String, String>,
        key: Option<String>,
    ) -> Result<Decided> {
        match self {
            Target::Store(store) => {
                let record = decisions::record(ns, decision, by, tags, key)?;
                decisions::decide(store, record).await
            }
            Target::Server(client) => {
                let body = DecideBody {
                    text: text.to_string(),
                    title: title.map(str::to_string),
                    by: Some(by.to_string()),
                    tags,
                    key,
                };
                client.decide(ns, &body).await
            }
        }
    }

    pub async fn decisions_render(&self, ns: &Namespace) -> Result<Rendered> {
        match self {
            Target::Store(store) => decisions::render(store, ns).await,
            Target::Server(client) => client.decisions_render(ns).await,
        }
    }

    /// Accepts a notification: routed by `config` against the store, by the server's own
    /// configuration through a server.
    pub async fn notify(
        &self,
        config: Option<&Config>,
        ns: &Namespace,
        notification: Notification,
        channel: Option<&str>,
    ) -> Result<Accepted> {
        match self {
            Target::Store(store) => {
                let config =
                    config.ok_or_else(|| Error::internal("notify against the store without its configuration"))?;
                let routed = notify::route(config, ns, notification, channel)?;
                notify::notify(store, routed).await
            }
            Target::Server(client) => {
                let body = NotifyBody {
                    kind: notification.kind,
                    severity: notification.severity.as_str().to_string(),
                    title: notification.title,
                    body: Some(notification.body).filter(|b| !b.is_empty()),
                    dedupe: notification.dedupe_key,
                    tags: notification.tags,
                    source: Some(notification.source),
                    channel: channel.map(str::to_string),
                };
                client.notify(ns, &body).await
            }
        }
    }

    pub async fn notify_resolve(&self, ns: &Namespace, dedupe: &str, body: Option<&str>) -> Result<Resolved> {
        match self {
            Target::Store(store) => notify::resolve(store, ns, dedupe, body).await,
            Target::Server(client) => client.notify_resolve(ns, dedupe, body).await,
        }
    }

    pub async fn notifications_list(
        &self,
        ns: &Namespace,
        state: Option<DeliveryState>,
        limit: usize,
    ) -> Result<Vec<OutboxEntry>> {
        match self {
            Target::Store(store) => notify::list(store, ns, state, limit).await,
            Target::Server(client) => client.notifications_list(ns, state, limit).await,
        }
    }

    pub async fn notifications_retry(&self, ns: &Namespace, id: i64) -> Result<OutboxEntry> {
        match self {
            Target::Store(store) => notify::retry(store, ns, id).await,
            Target::Server(client) => client.notifications_retry(ns, id).await,
        }
    }

    pub async fn fleet_status(&self, ns: &Namespace) -> Result<FleetView> {
        match self {
            Target::Store(store) => fleet::fleet_status(store, ns).await,
            Target::Server(client) => client.fleet_status(ns).await,
        }
    }

    pub async fn store_info(&self) -> Result<StoreInfo> {
        match self {
            Target::Store(store) => Ok(arbiter_ops::store::info(store)),
            Target::Server(client) => client.store_info().await,
        }
    }
}

/// Work items: the store's `arbiter_ops::queue` function (which also raises the
/// `queue.dead` alerts, routed by the local `config`), or the server's route (routed by
/// the server's own configuration).
impl Target {
    pub async fn queue_push(&self, item: &NewItem) -> Result<Pushed> {
        match self {
            Target::Store(store) => queue::push(store, item).await,
            Target::Server(client) => client.queue_push(item).await,
        }
    }

    pub async fn queue_claim(
        &self,
        config: &Config,
        request: &ClaimRequest,
        wait: Option<Duration>,
    ) -> Result<Option<ClaimView>> {
        match self {
            Target::Store(store) => queue::claim(store, config, request, wait).await,
            Target::Server(client) => client.queue_claim(request, wait).await,
        }
    }

    pub async fn queue_heartbeat(&self, ns: &Namespace, id: i64, token: i64, lease: Duration) -> Result<ItemView> {
        match self {
            Target::Store(store) => queue::heartbeat(store, ns, id, token, lease, None).await,
            Target::Server(client) => client.queue_heartbeat(ns, id, token, lease, None).await,
        }
    }

    pub async fn queue_done(&self, ns: &Namespace, id: i64, token: i64, result: Option<&str>) -> Result<ItemView> {
        match self {
            Target::Store(store) => queue::done(store, ns, id, token, result).await,
            Target::Server(client) => client.queue_done(ns, id, token, result).await,
        }
    }

    pub async fn queue_fail(&self, config: &Config, request: &FailRequest) -> Result<ItemView> {
        match self {
            Target::Store(store) => queue::fail(store, config, request).await,
            Target::Server(client) => client.queue_fail(request).await,
        }
    }

    pub async fn queue_retry(&self, ns: &Namespace, id: i64) -> Result<ItemView> {
        match self {
            Target::Store(store) => queue::retry(store, ns, id).await,
            Target::Server(client) => client.queue_retry(ns, id).await,
        }
    }

    pub async fn queue_list(
        &self,
        ns: &Namespace,
        queue: Option<&QueueName>,
        state: Option<ItemState>,
        limit: usize,
    ) -> Result<Vec<ItemView>> {
        match self {
            Target::Store(store) => queue::list(store, ns, queue, state, limit).await,
            Target::Server(client) => client.queue_list(ns, queue, state, limit).await,
        }
    }

    pub async fn queue_show(&self, ns: &Namespace, id: i64) -> Result<ItemInfoView> {
        match self {
            Target::Store(store) => queue::show(store, ns, id).await,
            Target::Server(client) => client.queue_show(ns, id).await,
        }
    }

    pub async fn queue_stats(&self, config: &Config, ns: &Namespace) -> Result<Vec<QueueStatsView>> {
        match self {
            Target::Store(store) => queue::stats(store, config, ns).await,
            Target::Server(client) => client.queue_stats(ns).await,
        }
    }
}

/// The configured channels: the local configuration's against the store, the server's
/// through one (without opening the store: listing them never needed it).
pub async fn channels(global: &Global) -> Result<Vec<ChannelView>> {
    match global.server_client()? {
        Some(client) => client.channels().await,
        None => Ok(notify::channels(&*super::notify::load_config(global)?)),
    }
}

/// `status --watch` on either target: against the store, the fleet every 2 s; through a
/// server, its status stream (the fleet at start and whenever it changes, looked at every
/// 2 s).
pub enum FleetWatch {
    Store { store: Store, ns: Namespace, started: bool },
    Server(arbiter_remote::Stream<FleetView>),
}

/// How often `status --watch` looks at the store.
const FLEET_EVERY: Duration = Duration::from_secs(2);

impl FleetWatch {
    /// The fleet now, then after each change (or period).
    pub async fn next(&mut self) -> Result<FleetView> {
        match self {
            FleetWatch::Store { store, ns, started } => {
                if *started {
                    tokio::time::sleep(FLEET_EVERY).await;
                }
                *started = true;
                fleet::fleet_status(store, ns).await
            }
            FleetWatch::Server(stream) => stream.next().await,
        }
    }
}

impl Target {
    pub async fn fleet_watch(self, ns: &Namespace) -> Result<FleetWatch> {
        match self {
            Target::Store(store) => Ok(FleetWatch::Store {
                store,
                ns: ns.clone(),
                started: false,
            }),
            Target::Server(client) => Ok(FleetWatch::Server(client.fleet_stream(ns).await?)),
        }
    }
}
