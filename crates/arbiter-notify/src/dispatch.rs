//! The dispatcher: drains a namespace's outbox.
//!
//! Exactly one runs per namespace at a time: it holds the lease `notify/dispatcher`
//! (others stand by, and take over when it dies). The first pending message of every
//! channel, and every closed digest window (as one message), is sent by a task of its own:
//! one at a time per channel, so per-channel order holds, and channels are independent — a
//! slow, hanging or rate-limited one never holds back the others. A failure is retried
//! after an exponential backoff with jitter (or the receiver's `Retry-After`), and becomes
//! dead, with its last error, once older than the configured max age. Delivery is at
//! least once: a crash between a receiver's 2xx and the store's record of it sends the
//! message again, with the same id.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use arbiter_client::lease::{AcquireRequest, HeldLease};
use arbiter_config::{Channel, Config};
use arbiter_core::name::{LeaseName, Namespace};
use arbiter_core::notify::{Message, MessageType};
use arbiter_core::{Error, ErrorKind, Result};
use arbiter_store::{DeliveryState, Failure, OutboxEntry, Store, Topic};
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::send::{Attempt, client, send};

/// What a dispatcher run did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Report {
    pub delivered: u64,
    pub failed_attempts: u64,
    pub dead: u64,
}

impl Report {
    /// Adds the outcome of a finished delivery task; returns its key.
    fn add(&mut self, done: std::result::Result<(String, Result<Report>), tokio::task::JoinError>) -> Result<String> {
        let (key, outcome) = done.map_err(|e| Error::internal(format!("delivery task failed: {e}")))?;
        let outcome = outcome?;
        self.delivered += outcome.delivered;
        self.failed_attempts += outcome.failed_attempts;
        self.dead += outcome.dead;
        Ok(key)
    }
}

pub struct Dispatcher {
    store: Store,
    config: Arc<Config>,
    namespace: Namespace,
    client: reqwest::Client,
    /// When each channel may send next (its rate limit).
    next_send: Arc<Mutex<HashMap<String, Instant>>>,
}

/// The lease every dispatcher of a namespace competes for.
pub const LEASE: &str = "notify/dispatcher";
/// The longest a dispatcher sleeps without looking at the outbox again.
const RECHECK: Duration = Duration::from_secs(5);

impl Dispatcher {
    pub fn new(store: Store, config: Arc<Config>, namespace: &Namespace) -> Dispatcher {
        let client = client(config.notifications.timeout);
        Dispatcher {
            store,
            config,
            namespace: namespace.clone(),
            client,
            next_send: Default::default(),
        }
    }

    /// Takes the dispatcher lease: at once (`wait = None`: `Held` if another runs) or
    /// standing by until the other one stops.
    /// The caller releases it ([`HeldLease::release`]) when done.
    pub async fn lease(&self, wait: Option<Duration>) -> Result<HeldLease> {
        let holder = arbiter_process::holder_for(arbiter_process::current_pid(), "dispatcher")?;
        HeldLease::acquire(
            &self.store,
            AcquireRequest {
                namespace: self.namespace.clone(),
                name: LeaseName::parse(LEASE).expect("the dispatcher's lease name is valid"),
                holder,
                ttl: Duration::from_secs(15),
                slots: 1,
                wait,
            },
            Duration::ZERO,
        )
        .await
        .map_err(|e| {
            if e.kind == ErrorKind::Held {
                e.context("another dispatcher is running")
            } else {
                e
            }
        })
    }

    /// Delivers until `once` finds nothing more due now, or until `shutdown` (or the loss
    /// of the lease).
    pub async fn run(
        &self,
        held: &mut HeldLease,
        once: bool,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> Result<Report> {
        let mut report = Report::default();
        // One task per channel head (and per digest window) in flight, keyed so that a
        // channel never has two: per-channel order holds, and a slow, hanging or
        // rate-limited channel never holds back the others.
        let mut tasks = tokio::task::JoinSet::new();
        let mut busy: HashSet<String> = HashSet::new();
        tokio::pin!(shutdown);
        // Bounded by `once` (nothing due, nothing in flight), or runs until shutdown or
        // loss: a daemon.
        loop {
            let mut subscription = self.store.changes().subscribe(Topic::Notify).await?;
            let due = self.store.notify().due(&self.namespace).await?;
            let work = due
                .heads
                .into_iter()
                .map(|head| (head.channel.clone(), vec![head]))
                .chain(due.digests.into_iter().map(|window| {
                    let key = format!(
                        "{}\0digest\0{}",
                        window[0].channel,
                        window[0].digest_at.unwrap_or_default()
                    );
                    (key, window)
                }));
            for (key, entries) in work {
                if busy.insert(key.clone()) {
                    let delivery = self.deliver(entries);
                    tasks.spawn(async move { (key, delivery.await) });
                }
            }
            if tasks.is_empty() && once {
                break;
            }
            let sleep = due
                .next_at
                .map(|at| Duration::from_millis((at - due.now).max(0) as u64 + 1))
                .unwrap_or(RECHECK)
                .min(RECHECK);
            tokio::select! {
                Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                    let key = report.add(done)?;
                    busy.remove(&key);
                }
                waited = subscription.wait(sleep) => waited?,
                err = held.lost() => return Err(err),
                () = &mut shutdown => break,
            }
        }
        // Stopped: count what finished meanwhile; what is still in flight is dropped (and
        // sent again, with the same id, by the next dispatcher).
        while let Some(done) = tasks.try_join_next() {
            report.add(done)?;
        }
        Ok(report)
    }

    /// Sends one message (or one digest of several entries) and records the outcome.
    fn deliver(&self, entries: Vec<OutboxEntry>) -> impl std::future::Future<Output = Result<Report>> + Send + 'static {
        let store = self.store.clone();
        let config = self.config.clone();
        let namespace = self.namespace.clone();
        let client = self.client.clone();
        let next_send = self.next_send.clone();
        async move {
            let first = &entries[0];
            let ids: Vec<i64> = entries.iter().map(|e| e.id).collect();
            let message = if entries.len() > 1 || first.digest_at.is_some() {
                digest(&entries)
            } else {
                first.message.clone()
            };
            let attempt = match config.channel(&first.channel) {
                None => Attempt::Failed {
                    error: format!("channel {:?} is not in the configuration", first.channel),
                    after: None,
                },
                Some(channel) => {
                    wait_for_rate(&next_send, channel).await;
                    send(&client, channel, &message).await
                }
            };
            let mut report = Report::default();
            match attempt {
                Attempt::Delivered { .. } => {
                    store.notify().delivered(&namespace, &ids).await?;
                    report.delivered = ids.len() as u64;
                }
                Attempt::Failed { error, after } => {
                    let settings = &config.notifications;
                    let retry_in =
                        after.unwrap_or_else(|| backoff(first.attempts, settings.backoff, settings.backoff_max));
                    tracing::warn!(channel = %first.channel, id = %message.id, %error, ?retry_in, "delivery failed");
                    let state = store
                        .notify()
                        .failed(
                            &namespace,
                            &ids,
                            &Failure {
                                error: error.clone(),
                                retry_in,
                                max_age: settings.max_age,
                            },
                        )
                        .await?;
                    report.failed_attempts = 1;
                    if state == DeliveryState::Dead {
                        tracing::error!(channel = %first.channel, id = %message.id, %error, "notification is dead");
                        report.dead = ids.len() as u64;
                    }
                }
            }
            Ok(report)
        }
    }
}

/// The digest message of a closed window's entries.
fn digest(entries: &[OutboxEntry]) -> Message {
    let first = &entries[0];
    let mut message = first.message.clone();
    message.message_type = MessageType::Digest;
    message.items = entries.iter().map(|e| e.message.notification.clone()).collect();
    message.notification.title = format!("{} notification(s)", entries.len());
    message.notification.body = String::new();
    message.fold = None;
    message
}

/// Exponential backoff with jitter: `base · 2^attempts`, capped, times 0.5–1.0.
pub fn backoff(attempts: u32, base: Duration, max: Duration) -> Duration {
    let exp = base.saturating_mul(1u32.checked_shl(attempts.min(20)).unwrap_or(u32::MAX));
    exp.min(max).mul_f64(0.5 + fastrand::f64() * 0.5)
}

async fn wait_for_rate(next_send: &Mutex<HashMap<String, Instant>>, channel: &Channel) {
    let Some(rate) = channel.rate else { return };
    let at = {
        let mut next = next_send.lock().await;
        let now = Instant::now();
        let at = next.get(&channel.id).copied().unwrap_or(now).max(now);
        next.insert(channel.id.clone(), at + rate.interval());
        at
    };
    tokio::time::sleep_until(at).await;
}

/// Sends a test message straight to a channel (not through the outbox) and reports the
/// receiver's answer.
pub async fn test_channel(config: &Config, channel: &Channel) -> Attempt {
    let message = Message {
        id: format!("test-{}", fastrand::u64(..)),
        message_type: MessageType::Test,
        notification: arbiter_core::notify::Notification {
            kind: "arbiter.test".into(),
            severity: arbiter_core::notify::Severity::Info,
            source: "arbiter channels test".into(),
            title: format!("arbiter can reach channel {}", channel.id),
            body: "If you can read this, notifications routed to this channel will arrive.".into(),
            tags: Default::default(),
            dedupe_key: None,
        },
        fold: None,
        resolved_at: None,
        items: Vec::new(),
        created_at: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0),
    };
    send(&client(config.notifications.timeout), channel, &message).await
}
