//! Watching keys: every change under a prefix from a revision on, in revision order.

use std::time::Duration;

use arbiter_core::Result;
use arbiter_core::kv::KvEvent;
use arbiter_core::name::{Namespace, Prefix};
use arbiter_store::{Store, Subscription, Topic};

/// A watch of the keys under a prefix. [`Watch::next`] returns batches in revision order,
/// waiting on the store's change feed (not polling it) while there is nothing new.
pub struct Watch {
    store: Store,
    namespace: Namespace,
    prefix: Prefix,
    next_revision: i64,
    subscription: Box<dyn Subscription>,
}

const BATCH: usize = 1000;
/// A wake-up at least this often guards against a missed notification (a dropped
/// listener connection); it costs one read.
const RECHECK: Duration = Duration::from_secs(5);

impl Watch {
    /// Starts watching at revision `from` (inclusive), or at the next change when `None`.
    pub async fn start(store: &Store, namespace: &Namespace, prefix: &Prefix, from: Option<i64>) -> Result<Watch> {
        let subscription = store.changes().subscribe(Topic::Kv).await?;
        let next_revision = match from {
            Some(from) => from,
            None => store.kv().revision(&Namespace::parse(namespace)?).await? + 1,
        };
        Ok(Watch {
            store: store.clone(),
            namespace: namespace.clone(),
            prefix: prefix.clone(),
            next_revision,
            subscription,
        })
    }

    /// The next non-empty batch of events.
    pub async fn next(&mut self) -> Result<Vec<KvEvent>> {
        loop {
            let events = self
                .store
                .kv()
                .events(&self.namespace, &self.prefix, self.next_revision, BATCH)
                .await?;
            if let Some(last) = events.last() {
                self.next_revision = last.version + 1;
                return Ok(events);
            }
            self.subscription.wait(RECHECK).await?;
        }
    }
}
