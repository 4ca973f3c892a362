//! Coalescing: identical requests in flight at once (same credential, same key) share one
//! upstream call. The first is the leader; the others follow and get its answer. A leader
//! that goes away without answering (its client hung up) lets a follower lead instead.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use crate::cache::CacheKey;
use crate::upstream::Stored;

type Answer = Option<Arc<Stored>>;

#[derive(Default)]
pub struct Flights {
    map: Arc<Mutex<HashMap<CacheKey, watch::Receiver<Answer>>>>,
}

pub enum Role {
    Leader(Leader),
    Follower(watch::Receiver<Answer>),
}

/// The leader's duty: answer its followers ([`Leader::answer`]); dropped without
/// answering, it only takes the flight off the map.
pub struct Leader {
    map: Arc<Mutex<HashMap<CacheKey, watch::Receiver<Answer>>>>,
    key: CacheKey,
    sender: watch::Sender<Answer>,
}

impl Leader {
    pub fn answer(self, answer: Arc<Stored>) {
        self.map.lock().expect("flights").remove(&self.key);
        self.sender.send_replace(Some(answer));
    }
}

impl Drop for Leader {
    fn drop(&mut self) {
        let mut map = self.map.lock().expect("flights");
        if map
            .get(&self.key)
            .is_some_and(|rx| rx.same_channel(&self.sender.subscribe()))
        {
            map.remove(&self.key);
        }
    }
}

impl Flights {
    /// Leads the flight of `key`, or follows the one in the air.
    pub fn join(&self, key: CacheKey) -> Role {
        let mut map = self.map.lock().expect("flights");
        if let Some(rx) = map.get(&key) {
            return Role::Follower(rx.clone());
        }
        let (sender, rx) = watch::channel(None);
        map.insert(key, rx);
        Role::Leader(Leader {
            map: self.map.clone(),
            key,
            sender,
        })
    }
}

/// The leader's answer, or `None` when it went away without one.
pub async fn follow(mut rx: watch::Receiver<Answer>) -> Option<Arc<Stored>> {
    match rx.wait_for(|answer| answer.is_some()).await {
        Ok(answer) => answer.clone(),
        Err(_) => None,
    }
}
