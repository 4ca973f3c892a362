//! The store interface: one trait per primitive, so a later primitive adds a trait instead
//! of editing a shared one. Both backends implement each trait and pass the same
//! conformance suite.

use std::time::Duration;

use arbiter_core::Millis;
use arbiter_core::Result;
use arbiter_core::kv::{IfVersion, KeyValue, KvEvent};
use arbiter_core::lease::Holder;
use arbiter_core::lease::{AcquireOutcome, Attempt, Lease, LeaseInfo, RenewRequest};
use arbiter_core::limit::{BucketInfo, BucketSpec, Counter, Observation, TakeDecision, TakeRequest};
use arbiter_core::log::{Appended, ConsumerInfo, NewRecord, Record, StreamInfo};
use arbiter_core::loops::LoopStatus;
use arbiter_core::name::{
    BucketName, Capability, ConsumerName, Key, LeaseName, LoopName, Namespace, Prefix, QueueName, StreamName,
};
use arbiter_core::queue::{
    ClaimRequest, Claimed, FailRequest, HostRecord, Item, ItemInfo, ItemState, NewItem, Pushed, QueueStats,
};
use async_trait::async_trait;

use crate::loops::{LoopState, RoundEnd, RoundInfo, RoundLogPath};
use crate::notify::{AcceptRequest, Accepted, DeliveryState, Due, Failure, OutboxEntry, Resolved};
use crate::token::{NewToken, Refusal, RefusalRecord, TokenRecord};

#[async_trait]
pub trait LeaseStore: Send + Sync {
    /// One try of an acquire request, in one transaction: drops expired holders and
    /// waiters and those the attempt names to reclaim, then applies
    /// `arbiter_core::lease::plan_acquire` — grants a place (with the next fencing token)
    /// or reports what is in the way, queueing the request when it waits.
    async fn acquire(&self, attempt: Attempt) -> Result<AcquireOutcome>;
    /// Extends a held lease (`arbiter_core::lease::plan_renew`). A token that no longer
    /// holds it is `Lost`.
    async fn renew(&self, request: RenewRequest) -> Result<Lease>;
    /// Releases a held lease. A token that no longer holds it is `Lost`.
    async fn release(&self, namespace: &Namespace, name: &LeaseName, token: i64) -> Result<()>;
    /// Leaves the queue (a waiting request that gave up). Unknown tickets are ignored.
    async fn cancel_wait(&self, namespace: &Namespace, name: &LeaseName, ticket: i64) -> Result<()>;
    /// The live holders whose names start with `prefix`, by name then token.
    async fn list(&self, namespace: &Namespace, prefix: &Prefix) -> Result<Vec<Lease>>;
    /// Everything about one name; `NotFound` if it was never acquired.
    async fn show(&self, namespace: &Namespace, name: &LeaseName) -> Result<LeaseInfo>;
}

#[async_trait]
pub trait KvStore: Send + Sync {
    async fn get(&self, namespace: &Namespace, key: &Key) -> Result<Option<KeyValue>>;
    /// Writes `value`; with `if_version`, only if the key's version is that (`0`: absent),
    /// else `Conflict` with the current version as its detail
    /// (`arbiter_core::kv::check_version`). Returns the new version.
    async fn put(&self, namespace: &Namespace, key: &Key, value: &str, if_version: IfVersion) -> Result<i64>;
    /// Deletes the key (`NotFound` if absent; `Conflict` if `if_version` differs:
    /// `arbiter_core::kv::check_delete`). Returns the revision of the deletion.
    async fn delete(&self, namespace: &Namespace, key: &Key, if_version: IfVersion) -> Result<i64>;
    /// The keys starting with `prefix`, in key order.
    async fn list(&self, namespace: &Namespace, prefix: &Prefix) -> Result<Vec<KeyValue>>;
    /// Changes of keys starting with `prefix` at revisions `>= from`, oldest first.
    async fn events(&self, namespace: &Namespace, prefix: &Prefix, from: i64, limit: usize) -> Result<Vec<KvEvent>>;
    /// The namespace's revision: the revision of its last change (0 before any). Each
    /// namespace counts its own revisions.
    async fn revision(&self, namespace: &Namespace) -> Result<i64>;
}

#[async_trait]
pub trait LogStore: Send + Sync {
    /// Appends a record (valid by construction) in one transaction. A known idempotency
    /// key writes nothing and returns the first append's offset.
    async fn append(&self, record: NewRecord) -> Result<Appended>;
    /// Records at offsets `>= from`, oldest first, at most `limit`.
    async fn read(&self, namespace: &Namespace, stream: &StreamName, from: i64, limit: usize) -> Result<Vec<Record>>;
    /// The streams of a namespace, by name.
    async fn streams(&self, namespace: &Namespace) -> Result<Vec<StreamInfo>>;
    /// Sets a consumer's committed offset (the next offset it will read). An offset past
    /// the end of the stream is bad input (`arbiter_core::log::check_commit`).
    async fn commit(
        &self,
        namespace: &Namespace,
        stream: &StreamName,
        consumer: &ConsumerName,
        offset: i64,
    ) -> Result<ConsumerInfo>;
    /// The consumers of a stream, by name.
    async fn consumers(&self, namespace: &Namespace, stream: &StreamName) -> Result<Vec<ConsumerInfo>>;
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
    async fn resolve(&self, namespace: &Namespace, dedupe_key: &str, body: Option<&str>) -> Result<Resolved>;
    /// What a dispatcher should send now: the first pending message of each channel (per
    /// channel order), the digests whose window has closed, and when more will be due.
    async fn due(&self, namespace: &Namespace) -> Result<Due>;
    /// Marks messages delivered.
    async fn delivered(&self, namespace: &Namespace, ids: &[i64]) -> Result<()>;
    /// Records a failed attempt: retried after `failure.retry_in`, or dead once older than
    /// `failure.max_age`. Returns `Dead` if any of them died.
    async fn failed(&self, namespace: &Namespace, ids: &[i64], failure: &Failure) -> Result<DeliveryState>;
    /// Outbox entries, newest first, optionally in one state.
    async fn list(&self, ns: &Namespace, state: Option<DeliveryState>, limit: usize) -> Result<Vec<OutboxEntry>>;
    /// Puts a dead message back in the queue (its max age counts from now).
    async fn retry(&self, namespace: &Namespace, id: i64) -> Result<OutboxEntry>;
}

#[async_trait]
pub trait LoopStore: Send + Sync {
    /// Starts the next round of `loop_name`, fenced by `lease` (the loop's lease, whatever
    /// the caller names it): only its current holder with its token can start one (else
    /// `Lost`), checked in the same transaction. A round an earlier holder left `running`
    /// (it died mid-round) is marked `abandoned` first. `log_path` names the round's log
    /// from its number, in that transaction. Returns the round number. Announced on
    /// [`Topic::Loops`].
    async fn begin_round(
        &self,
        namespace: &Namespace,
        loop_name: &LoopName,
        lease: &Lease,
        log_path: RoundLogPath,
    ) -> Result<i64>;
    /// Starts the next round of `loop_name` for one work item, fenced by the item's claim
    /// instead of the loop's lease: `claim` is the claim held as a lease (its token is the
    /// claim token, its holder the round's), and item `item` must be `claimed` with that
    /// token and live by the store's clock (else `Lost`), checked in the same transaction.
    /// Unlike [`begin_round`](Self::begin_round), running rounds of the loop are left
    /// alone: an issues loop runs several at once, on several hosts. Returns the round
    /// number. Announced on [`Topic::Loops`].
    async fn begin_item_round(
        &self,
        namespace: &Namespace,
        loop_name: &LoopName,
        item: i64,
        claim: &Lease,
        log_path: RoundLogPath,
    ) -> Result<i64>;
    /// Records how a round ended and when the loop runs next. A round that the next holder
    /// marked `abandoned` meanwhile keeps that, unless this end is `lost`: the supervisor
    /// that ran it lost its lease (and stopped it) rather than crashed. A `lost` end leaves
    /// the loop's own row to its new holder. Announced on [`Topic::Loops`].
    async fn end_round(&self, namespace: &Namespace, loop_name: &LoopName, end: RoundEnd) -> Result<()>;
    /// Records that `holder` runs the loop, in `state`, next at `next_run_at` (a
    /// heartbeat); creates the loop's row when new.
    async fn heartbeat(
        &self,
        namespace: &Namespace,
        loop_name: &LoopName,
        state: LoopStatus,
        next_run_at: Option<Millis>,
        holder: &Holder,
    ) -> Result<LoopState>;
    /// Every loop of the namespace, by name, with the store's clock.
    async fn status(&self, namespace: &Namespace) -> Result<(Millis, Vec<LoopState>)>;
    /// A loop's rounds, newest first, at most `limit`.
    async fn rounds(&self, namespace: &Namespace, loop_name: &LoopName, limit: usize) -> Result<Vec<RoundInfo>>;
    /// One round of a loop, if it was started.
    async fn round(&self, namespace: &Namespace, loop_name: &LoopName, round: i64) -> Result<Option<RoundInfo>>;
}

/// Rate-limit buckets (`arbiter_core::limit`): token buckets shared through the store, and
/// the counters the GitHub proxy shares. Times come from the store's clock; nothing here
/// sleeps — a refused take answers how long to wait, and the caller waits
/// (`arbiter_client::limit`).
#[async_trait]
pub trait LimitStore: Send + Sync {
    /// Creates a bucket (full), or changes an existing one's spec (its tokens are kept, up
    /// to the new burst). With `if_absent`, an existing bucket is left as it is. Returns
    /// the bucket as it now is.
    async fn define(&self, ns: &Namespace, name: &BucketName, spec: &BucketSpec, if_absent: bool)
    -> Result<BucketInfo>;
    /// One take, in one transaction that locks the named buckets (in name order):
    /// `arbiter_core::limit::plan_take` over them, written only when granted. An unknown
    /// bucket is `NotFound`, naming it.
    async fn take(&self, request: &TakeRequest) -> Result<TakeDecision>;
    /// Gives `cost` tokens back to each bucket (up to its burst): a take not used.
    async fn refund(&self, ns: &Namespace, names: &[BucketName], cost: u64) -> Result<()>;
    /// Applies what the upstream said (`arbiter_core::limit::plan_observe`).
    async fn observe(&self, ns: &Namespace, name: &BucketName, observation: &Observation) -> Result<BucketInfo>;
    /// One bucket now; `NotFound` if it was never defined.
    async fn show(&self, ns: &Namespace, name: &BucketName) -> Result<BucketInfo>;
    /// Every bucket of the namespace, by name.
    async fn list(&self, ns: &Namespace) -> Result<Vec<BucketInfo>>;
    /// Adds `deltas` (name, amount) to the counters of (`scope`, `source`): each source (a
    /// host) counts on its own rows, so hosts never contend.
    async fn add_counters(&self, ns: &Namespace, scope: &str, source: &str, deltas: &[(String, i64)]) -> Result<()>;
    /// The counters of every scope starting with `scope_prefix`, summed over sources, by
    /// scope then name.
    async fn counters(&self, ns: &Namespace, scope_prefix: &str) -> Result<Vec<Counter>>;
}

/// API tokens of `arbiter serve` and the audit of refused requests. Tokens belong to the
/// store, not to a namespace. The store keeps only a secret's hash and looks tokens up by
/// it; whether one is live is decided by the store's clock.
#[async_trait]
pub trait TokenStore: Send + Sync {
    /// Stores a token. A name that exists is `Conflict`, unless `replace`: then the row is
    /// replaced as a whole (new hash, scopes, times; no longer revoked).
    async fn create(&self, token: &NewToken) -> Result<TokenRecord>;
    /// The live (unrevoked, unexpired) token whose secret has this hash, if any.
    async fn live(&self, secret_sha256: &str) -> Result<Option<TokenRecord>>;
    /// Every token, by name, with the store's clock (to tell live from expired).
    async fn list(&self) -> Result<(Millis, Vec<TokenRecord>)>;
    /// Revokes a token (at once: the next lookup fails). Revoking a revoked one keeps its
    /// first revocation time. `NotFound` if the name is unknown.
    async fn revoke(&self, name: &str) -> Result<TokenRecord>;
    /// Whether any token is live.
    async fn any_live(&self) -> Result<bool>;
    /// Records a refusal, keeping only the newest `keep` (`crate::token::AUDIT_KEEP`).
    async fn audit(&self, refusal: &Refusal, keep: u32) -> Result<()>;
    /// The newest refusals, newest first, at most `limit`.
    async fn audit_list(&self, limit: usize) -> Result<Vec<RefusalRecord>>;
}

/// Work items (`arbiter_core::queue`): every change of an item is one transaction that
/// locks the item (or, for a claim, skips items others have locked) and checks the claim
/// token there; a stale token is `Lost` and changes nothing.
#[async_trait]
pub trait QueueStore: Send + Sync {
    /// Adds an item, or — when its key is already in the queue, in any state — returns the
    /// first push's item (`created: false`), in the same transaction.
    async fn push(&self, item: &NewItem) -> Result<Pushed>;
    /// One try: first ends the queue's claims that have run out (back to ready with the
    /// attempt counted, or dead on the last attempt), then claims the best ready item the
    /// caller may take (highest priority, then oldest id; `requires` within the caller's
    /// capabilities; `not_before` passed), with the item's next claim token. On
    /// PostgreSQL concurrent claims skip each other's locked rows (`FOR UPDATE SKIP
    /// LOCKED`) instead of waiting.
    async fn claim(&self, request: &ClaimRequest) -> Result<Claimed>;
    /// Extends a live claim to `lease` from now (recording `pgid` as the holder's process
    /// group when given). A token that does not hold a live claim of the item is `Lost`.
    async fn heartbeat(
        &self,
        namespace: &Namespace,
        id: i64,
        token: i64,
        lease: Duration,
        pgid: Option<u32>,
    ) -> Result<Item>;
    /// Ends a live claim with success. A stale token is `Lost`.
    async fn done(&self, namespace: &Namespace, id: i64, token: i64, result: Option<&str>) -> Result<Item>;
    /// Ends a live claim with a failure: ready again after `retry_in` (default
    /// `arbiter_core::queue::backoff`), or dead when that was the last attempt. A stale
    /// token is `Lost`.
    async fn fail(&self, request: &FailRequest) -> Result<Item>;
    /// Brings a dead or cancelled item back to ready with its attempt count reset (its
    /// tokens keep increasing); any other state is `Conflict`, an unknown id `NotFound`.
    async fn retry(&self, namespace: &Namespace, id: i64) -> Result<Item>;
    /// Withdraws the item of `key` in `queue` if it is ready (it becomes cancelled; a
    /// claimed item is left to its worker). `None` when the key is unknown.
    async fn cancel(&self, namespace: &Namespace, queue: &QueueName, key: &str) -> Result<Option<Item>>;
    /// Items, newest first, at most `limit`; `queue` and `state` filter.
    async fn list(
        &self,
        namespace: &Namespace,
        queue: Option<&QueueName>,
        state: Option<ItemState>,
        limit: usize,
    ) -> Result<Vec<Item>>;
    /// One item with its attempts; `NotFound` for an unknown id.
    async fn show(&self, namespace: &Namespace, id: i64) -> Result<ItemInfo>;
    /// Every queue of the namespace with items, by name, and the store's clock.
    async fn stats(&self, namespace: &Namespace) -> Result<(Millis, Vec<QueueStats>)>;
    /// Dead items whose `queue.dead` alert was not raised yet, oldest first, at most `limit`.
    async fn unalerted_dead(&self, namespace: &Namespace, limit: usize) -> Result<Vec<Item>>;
    /// Records that the alerts of these dead items were raised.
    async fn mark_alerted(&self, namespace: &Namespace, ids: &[i64]) -> Result<()>;
    /// Records (or refreshes) a host's capabilities, seen now by the store's clock.
    async fn register_host(&self, namespace: &Namespace, host: &str, capabilities: &[Capability]) -> Result<()>;
    /// The hosts that declared capabilities, by name, and the store's clock.
    async fn hosts(&self, namespace: &Namespace) -> Result<(Millis, Vec<HostRecord>)>;
}

/// Declares [`Topic`]: one variant per primitive, with the name its change channel is
/// derived from. A new primitive adds one line to the invocation below.
macro_rules! topics {
    ($($(#[$doc:meta])* $variant:ident => $name:literal,)*) => {
        /// What a waiter waits on: the changes of one primitive.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Topic {
            $($(#[$doc])* $variant,)*
        }

        impl Topic {
            /// Every topic.
            pub const ALL: &[Topic] = &[$(Topic::$variant),*];

            /// The topic's name: lowercase letters and `_`.
            pub fn name(self) -> &'static str {
                match self {
                    $(Topic::$variant => $name,)*
                }
            }

            /// The notification channel of the topic (a PostgreSQL `LISTEN`/`NOTIFY`
            /// channel): `arbiter_` and its name.
            pub fn channel(self) -> &'static str {
                match self {
                    $(Topic::$variant => concat!("arbiter_", $name),)*
                }
            }
        }
    };
}

topics! {
    Leases => "leases",
    Kv => "kv",
    Log => "log",
    Notify => "notify",
    /// Rounds starting and ending.
    Loops => "loops",
    /// Work items pushed, claimed, ended.
    Queue => "queue",
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
