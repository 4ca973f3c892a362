//! The store interface: one trait per primitive, so a later primitive adds a trait instead
//! of editing a shared one. Both backends implement each trait and pass the same
//! conformance suite.

use std::time::Duration;

use arbiter_core::Result;
use arbiter_core::kv::{IfVersion, KeyValue, KvEvent};
use arbiter_core::lease::{AcquireOutcome, AcquireRequest, Lease, LeaseInfo, RenewRequest};
use arbiter_core::log::{Appended, ConsumerInfo, NewRecord, Record, StreamInfo};
use arbiter_core::name::{ConsumerName, Namespace, StreamName};
use async_trait::async_trait;

use crate::loops::{LoopState, RoundEnd, RoundInfo};
use crate::notify::{AcceptRequest, Accepted, DeliveryState, Due, OutboxEntry, Resolved};

#[async_trait]
pub trait LeaseStore: Send + Sync {
    /// One acquire attempt, decided in one transaction: drops expired and reclaimed
    /// holders and waiters, then grants a place (with the next fencing token) or reports
    /// what is in the way — queueing the request when it asks to.
    async fn acquire(&self, request: AcquireRequest) -> Result<AcquireOutcome>;
    /// Extends a held lease. A token that no longer holds it is `Lost`.
    async fn renew(&self, request: RenewRequest) -> Result<Lease>;
    /// Releases a held lease. A token that no longer holds it is `Lost`.
    async fn release(&self, namespace: &str, name: &str, token: i64) -> Result<()>;
    /// Leaves the queue (a waiting request that gave up). Unknown tickets are ignored.
    async fn cancel_wait(&self, namespace: &str, name: &str, ticket: i64) -> Result<()>;
    /// The live holders whose names start with `prefix`, by name then token.
    async fn list(&self, namespace: &str, prefix: &str) -> Result<Vec<Lease>>;
    /// Everything about one name; `NotFound` if it was never acquired.
    async fn show(&self, namespace: &str, name: &str) -> Result<LeaseInfo>;
}

#[async_trait]
pub trait KvStore: Send + Sync {
    async fn get(&self, namespace: &str, key: &str) -> Result<Option<KeyValue>>;
    /// Writes `value`; with `if_version`, only if the key's version is that (`0`: absent),
    /// else `Conflict`. Returns the new version.
    async fn put(&self, namespace: &str, key: &str, value: &str, if_version: IfVersion) -> Result<i64>;
    /// Deletes the key (`NotFound` if absent; `Conflict` if `if_version` differs). Returns
    /// the revision of the deletion.
    async fn delete(&self, namespace: &str, key: &str, if_version: IfVersion) -> Result<i64>;
    /// The keys starting with `prefix`, in key order.
    async fn list(&self, namespace: &str, prefix: &str) -> Result<Vec<KeyValue>>;
    /// Changes of keys starting with `prefix` at revisions `>= from`, oldest first.
    async fn events(&self, namespace: &str, prefix: &str, from: i64, limit: usize) -> Result<Vec<KvEvent>>;
    /// The store-wide revision: the revision of the last change (0 before any).
    async fn revision(&self) -> Result<i64>;
}

#[async_trait]
pub trait LogStore: Send + Sync {
    /// Appends a record (validated by the caller) in one transaction. A known idempotency
    /// key writes nothing and returns the first append's offset.
    async fn append(&self, record: NewRecord) -> Result<Appended>;
    /// Records at offsets `>= from`, oldest first, at most `limit`.
    async fn read(&self, namespace: &str, stream: &str, from: i64, limit: usize) -> Result<Vec<Record>>;
    /// The streams of a namespace, by name.
    async fn streams(&self, namespace: &str) -> Result<Vec<StreamInfo>>;
    /// Sets a consumer's committed offset (the next offset it will read). An offset past
    /// the end of the stream is bad input.
    async fn commit(&self, namespace: &str, stream: &str, consumer: &str, offset: i64) -> Result<ConsumerInfo>;
    /// The consumers of a stream, by name.
    async fn consumers(&self, namespace: &str, stream: &str) -> Result<Vec<ConsumerInfo>>;
    /// One consumer's position in a stream; `None` if it never committed.
    async fn consumer(
        &self,
        namespace: &Namespace,
        stream: &StreamName,
        consumer: &ConsumerName,
    ) -> Result<Option<ConsumerInfo>>;
}

#[async_trait]
pub trait NotifyStore: Send + Sync {
    /// Accepts a notification in one transaction: counts it against its dedupe key and,
    /// when the count crosses a threshold (or there is no key), queues one message per
    /// target channel. Returns once that is durable.
    async fn accept(&self, request: AcceptRequest) -> Result<Accepted>;
    /// Clears the condition behind a dedupe key: queues one recovery message to every
    /// channel that was alerted, and forgets the count. `NotFound` if none is open.
    async fn resolve(&self, namespace: &str, dedupe_key: &str, body: Option<&str>) -> Result<Resolved>;
    /// What a dispatcher should send now: the first pending message of each channel (per
    /// channel order), the digests whose window has closed, and when more will be due.
    async fn due(&self, namespace: &str) -> Result<Due>;
    /// Marks messages delivered.
    async fn delivered(&self, namespace: &str, ids: &[i64]) -> Result<()>;
    /// Records a failed attempt: retried after `retry_in`, or dead once older than `max_age`.
    async fn failed(
        &self,
        namespace: &str,
        ids: &[i64],
        error: &str,
        retry_in: Duration,
        max_age: Duration,
    ) -> Result<DeliveryState>;
    /// Outbox entries, newest first, optionally in one state.
    async fn list(&self, namespace: &str, state: Option<DeliveryState>, limit: usize) -> Result<Vec<OutboxEntry>>;
    /// Puts a dead message back in the queue (its max age counts from now).
    async fn retry(&self, namespace: &str, id: i64) -> Result<OutboxEntry>;
}

#[async_trait]
pub trait LoopStore: Send + Sync {
    /// Starts the next round of a loop, fenced by its lease: only the current holder of
    /// `lease_name` with `token` can start one (else `Lost`). A round an earlier holder left
    /// `running` (it died mid-round) is marked `abandoned` first. `{round}` in `log_path`
    /// is replaced by the round number. Returns the round number.
    async fn begin_round(&self, namespace: &str, lease: &arbiter_core::lease::Lease, log_path: &str) -> Result<i64>;
    /// Records how a round ended and when the loop runs next. A round that the next holder
    /// marked `abandoned` meanwhile keeps that, unless this end is `lost`: the supervisor
    /// that ran it lost its lease (and stopped it) rather than crashed.
    async fn end_round(&self, namespace: &str, loop_name: &str, end: RoundEnd) -> Result<()>;
    /// Records that `host`/`pid` runs the loop, in `state`, next at `next_run_at` (a
    /// heartbeat); creates the loop's row when new.
    async fn heartbeat(
        &self,
        namespace: &str,
        loop_name: &str,
        state: &str,
        next_run_at: Option<arbiter_core::Millis>,
        holder: &arbiter_core::lease::Holder,
    ) -> Result<LoopState>;
    /// Every loop of the namespace, by name, with the store's clock.
    async fn status(&self, namespace: &str) -> Result<(arbiter_core::Millis, Vec<LoopState>)>;
    /// A loop's rounds, newest first.
    async fn rounds(&self, namespace: &str, loop_name: &str, limit: usize) -> Result<Vec<RoundInfo>>;
}

/// What a waiter waits on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Topic {
    Leases,
    Kv,
    Log,
    Notify,
}

/// A way to wait until the store may have changed, without hammering it.
///
/// Subscribe *before* reading the state you will wait on; then no change between the read
/// and the wait is missed. Wake-ups may be spurious: read again after each.
#[async_trait]
pub trait Changes: Send + Sync {
    async fn subscribe(&self, topic: Topic) -> Result<Box<dyn Subscription>>;
}

#[async_trait]
pub trait Subscription: Send {
    /// Returns when the topic may have changed since subscribing (or the last wait), or
    /// after `timeout`.
    async fn wait(&mut self, timeout: Duration) -> Result<()>;
}
