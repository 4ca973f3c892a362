//! The store interface: one trait per primitive, so a later primitive adds a trait instead
//! of editing a shared one. Both backends implement each trait and pass the same
//! conformance suite.

use std::time::Duration;

use arbiter_core::Result;
use arbiter_core::kv::{IfVersion, KeyValue, KvEvent};
use arbiter_core::lease::{AcquireOutcome, AcquireRequest, Lease, LeaseInfo, RenewRequest};
use arbiter_core::log::{Appended, ConsumerInfo, NewRecord, Record, StreamInfo};
use async_trait::async_trait;

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
}

/// What a waiter waits on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Topic {
    Leases,
    Kv,
    Log,
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
