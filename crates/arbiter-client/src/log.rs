//! Reading a stream as it grows.

use std::time::Duration;

use arbiter_core::Result;
use arbiter_core::log::Record;
use arbiter_core::name::{Namespace, StreamName};
use arbiter_store::{Store, Subscription, Topic};

/// Reads a stream from an offset on; [`Follow::next`] waits on the store's change feed
/// (not a busy loop) while there is nothing new.
pub struct Follow {
    store: Store,
    namespace: Namespace,
    stream: StreamName,
    next_offset: i64,
    subscription: Box<dyn Subscription>,
}

const BATCH: usize = 500;
/// A wake-up at least this often guards against a missed notification; it costs one read.
const RECHECK: Duration = Duration::from_secs(5);

impl Follow {
    pub async fn start(store: &Store, namespace: &Namespace, stream: &StreamName, from: i64) -> Result<Follow> {
        let subscription = store.changes().subscribe(Topic::Log).await?;
        Ok(Follow {
            store: store.clone(),
            namespace: namespace.clone(),
            stream: stream.clone(),
            next_offset: from,
            subscription,
        })
    }

    /// The next non-empty batch of records, in offset order.
    pub async fn next(&mut self) -> Result<Vec<Record>> {
        loop {
            let records = self
                .store
                .log()
                .read(&self.namespace, &self.stream, self.next_offset, BATCH)
                .await?;
            if let Some(last) = records.last() {
                self.next_offset = last.offset + 1;
                return Ok(records);
            }
            self.subscription.wait(RECHECK).await?;
        }
    }
}
