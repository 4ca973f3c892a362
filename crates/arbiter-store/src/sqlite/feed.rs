//! The SQLite change feed: one thread per store handle watches for commits and wakes every
//! subscription, so waiting never queries or locks on the async runtime.
//!
//! `PRAGMA data_version` on the feed's own connection changes whenever another connection
//! (this handle's, or another process's) commits. The thread reads it — a read of the WAL
//! index in shared memory, not of the database — while any subscription lives: every
//! millisecond after a change or when a waiter starts waiting, backing off to every 50 ms
//! while nothing changes (the cheap wait SQLite allows: it has no LISTEN/NOTIFY). With no
//! subscription it sleeps until one comes. It ends when the handle and every subscription
//! are gone. SQLite has one feed for every [`crate::api::Topic`]: a wake-up may be another
//! primitive's change, which the caller's re-read shows.

use std::path::PathBuf;
use std::sync::mpsc;
use std::time::Duration;

use arbiter_core::{Error, Result};
use async_trait::async_trait;
use rusqlite::Connection;
use tokio::sync::{oneshot, watch};

use super::{connect, internal};
use crate::api::Subscription;
use crate::url::Synchronous;

/// How often the feed looks at `data_version`: soon after a change (a busy lease hands over
/// quickly), backing off while nothing happens (an idle watcher costs little).
const POLL_FIRST: Duration = Duration::from_millis(1);
const POLL_MAX: Duration = Duration::from_millis(50);

/// What subscriptions ask of the feed's thread.
enum Request {
    /// Look now, then answer (a new subscription, so it starts from a fresh look).
    Look(oneshot::Sender<Result<()>>),
    /// A subscription started waiting: look now and soon again.
    Waiting,
}

/// A store handle's feed: the way to its thread, and the count of changes it has seen.
pub(super) struct Feed {
    requests: mpsc::Sender<Request>,
    changes: watch::Receiver<u64>,
}

impl Feed {
    /// Starts the feed's thread, which opens its own connection.
    pub(super) fn start(path: PathBuf, synchronous: Synchronous, busy_timeout: Duration) -> Feed {
        let (requests, inbox) = mpsc::channel();
        let (sender, changes) = watch::channel(0u64);
        let spawned = std::thread::Builder::new()
            .name("arbiter-sqlite-feed".into())
            .spawn(move || {
                let conn = connect(&path, synchronous, busy_timeout);
                run(conn, &inbox, &sender);
            });
        if let Err(e) = spawned {
            // No thread: requests fail, and subscribing reports it.
            tracing::warn!("cannot start the SQLite change feed thread: {e}");
        }
        Feed { requests, changes }
    }

    /// A subscription that has seen every change committed before it returns.
    pub(super) async fn subscribe(&self) -> Result<FeedSubscription> {
        let mut changes = self.changes.clone();
        let (reply, answer) = oneshot::channel();
        let ended = || Error::unavailable("the SQLite change feed has stopped");
        self.requests.send(Request::Look(reply)).map_err(|_| ended())?;
        answer.await.map_err(|_| ended())??;
        // Whatever the feed counted so far was committed before this look: seen.
        changes.mark_unchanged();
        Ok(FeedSubscription {
            requests: self.requests.clone(),
            changes,
        })
    }
}

/// The thread: looks at `data_version` when asked and on its schedule while subscriptions
/// live, and counts each change it sees (or a failure to look, so that waiters re-read and
/// meet the error themselves).
fn run(conn: Result<Connection>, inbox: &mpsc::Receiver<Request>, changes: &watch::Sender<u64>) {
    let mut last: Option<i64> = None;
    let mut failing = false;
    let mut interval = POLL_FIRST;
    loop {
        // `changes` keeps one receiver in the store handle; more are subscriptions.
        let request = if changes.receiver_count() > 1 {
            match inbox.recv_timeout(interval) {
                Ok(request) => Some(request),
                Err(mpsc::RecvTimeoutError::Timeout) => None,
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            }
        } else {
            match inbox.recv() {
                Ok(request) => Some(request),
                Err(mpsc::RecvError) => return,
            }
        };
        // Every request waiting now is answered by one look.
        let mut replies = vec![];
        let mut asked = false;
        for request in request.into_iter().chain(inbox.try_iter()) {
            asked = true;
            if let Request::Look(reply) = request {
                replies.push(reply);
            }
        }
        let looked = conn.as_ref().map_err(Clone::clone).and_then(|conn| {
            conn.query_row("PRAGMA data_version", [], |r| r.get::<_, i64>(0))
                .map_err(internal)
        });
        // A failure wakes waiters once (when it starts), not on every look.
        let changed = match &looked {
            Ok(version) => {
                let moved = last.replace(*version).is_some_and(|before| before != *version);
                std::mem::replace(&mut failing, false) || moved
            }
            Err(e) => {
                tracing::debug!("SQLite change feed: {e}");
                !std::mem::replace(&mut failing, true)
            }
        };
        if changed {
            changes.send_modify(|count| *count += 1);
        }
        interval = if (changed && !failing) || asked {
            POLL_FIRST
        } else {
            (interval * 2).min(POLL_MAX)
        };
        for reply in replies {
            let _ = reply.send(looked.as_ref().map(drop).map_err(Clone::clone));
        }
    }
}

pub(super) struct FeedSubscription {
    requests: mpsc::Sender<Request>,
    changes: watch::Receiver<u64>,
}

#[async_trait]
impl Subscription for FeedSubscription {
    async fn wait(&mut self, timeout: Duration) -> Result<()> {
        let until = tokio::time::Instant::now() + timeout;
        if self.changes.has_changed().unwrap_or(false) {
            self.changes.mark_unchanged();
            return Ok(());
        }
        if self.requests.send(Request::Waiting).is_err() {
            // The feed stopped: wait out the timeout rather than spin; the caller re-reads.
            tokio::time::sleep_until(until).await;
            return Ok(());
        }
        if let Ok(Err(_)) = tokio::time::timeout_at(until, self.changes.changed()).await {
            tokio::time::sleep_until(until).await;
        }
        Ok(())
    }
}
