//! The response cache: REST GET answers (kept for revalidation with their ETag or
//! Last-Modified, never served without it — so they outlive writes) and GraphQL query
//! answers (served for `graphql_fresh`, then up to `graphql_max_age` after a free probe of
//! their repository says nothing changed; dropped by a write through the proxy). In memory,
//! bounded by entries and bytes, least recently used first out.
//!
//! Every key includes the credential's hash: one credential's answer is never served to
//! another (GitHub scopes ETags to the token), even of the same user.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

use sha2::{Digest, Sha256};

use crate::upstream::Stored;

pub type CacheKey = [u8; 32];

/// A key from its parts: the kind (`rest`, `graphql`), the credential's hash and what makes
/// two requests the same (path and query, the headers that change the answer; the query).
pub fn key(kind: &str, credential: Option<&[u8; 32]>, parts: &[&[u8]]) -> CacheKey {
    let mut hash = Sha256::new();
    hash.update(kind.as_bytes());
    hash.update([0]);
    // Whether there is a credential, then its hash: no credential's key is ever another's.
    hash.update([u8::from(credential.is_some())]);
    hash.update(credential.map(|c| &c[..]).unwrap_or(&[]));
    for part in parts {
        hash.update((part.len() as u64).to_be_bytes());
        hash.update(part);
    }
    hash.finalize().into()
}

#[derive(Clone)]
pub struct Entry {
    pub stored: Arc<Stored>,
    pub at: Instant,
    /// The repository (`owner/name`, lowercase) the answer is about, when it can be told.
    pub repo: Option<String>,
    pub graphql: bool,
    pub credential: Option<[u8; 32]>,
    /// A GraphQL answer: the path and ETag of each probe before the answer was asked for
    /// (it may be revalidated with them: every one answered 304), and when it was last
    /// known current (asked for, or the probes said nothing changed). `at` stays when it
    /// was asked for: its max age. No probes: served only while fresh.
    pub probes: Vec<(String, http::HeaderValue)>,
    pub checked: Instant,
    /// A write through the proxy may have changed what it shows: not served before its
    /// probes say otherwise (see [`Cache::invalidate`]).
    pub stale: bool,
}

impl Entry {
    fn size(&self) -> usize {
        self.stored.body.len()
            + self
                .stored
                .headers
                .iter()
                .map(|(k, v)| k.as_str().len() + v.len())
                .sum::<usize>()
            + 256
    }
}

pub struct Cache {
    entries: HashMap<CacheKey, (Entry, u64)>,
    order: BTreeMap<u64, CacheKey>,
    tick: u64,
    /// How many invalidations there were ([`Cache::remove_where`]): in all, of no one
    /// repository, and of each repository (see [`Cache::generation`]).
    generation: u64,
    wide: u64,
    repos: HashMap<String, u64>,
    bytes: usize,
    max_entries: usize,
    max_bytes: usize,
    /// When each GraphQL query revalidated by its item's probes was last asked upstream
    /// (see [`Cache::asked_again`]); at most `max_entries`, forgotten all at once past it.
    asked: HashMap<CacheKey, Instant>,
}

impl Cache {
    pub fn new(max_entries: usize, max_bytes: usize) -> Cache {
        Cache {
            entries: HashMap::new(),
            asked: HashMap::new(),
            order: BTreeMap::new(),
            tick: 0,
            generation: 0,
            wide: 0,
            repos: HashMap::new(),
            bytes: 0,
            max_entries,
            max_bytes,
        }
    }

    pub fn get(&mut self, key: &CacheKey) -> Option<Entry> {
        self.tick += 1;
        let tick = self.tick;
        let (entry, used) = self.entries.get_mut(key)?;
        self.order.remove(used);
        *used = tick;
        self.order.insert(tick, *key);
        Some(entry.clone())
    }

    /// Keeps `entry` (replacing one of the same key), then drops the least recently used
    /// until within bounds. An entry larger than an eighth of the byte bound is not kept.
    pub fn insert(&mut self, key: CacheKey, entry: Entry) {
        self.remove(&key);
        let size = entry.size();
        if self.max_entries == 0 || size > self.max_bytes / 8 {
            return;
        }
        self.tick += 1;
        self.bytes += size;
        self.order.insert(self.tick, key);
        self.entries.insert(key, (entry, self.tick));
        while self.entries.len() > self.max_entries || self.bytes > self.max_bytes {
            let Some((_, oldest)) = self.order.pop_first() else {
                break;
            };
            if let Some((entry, _)) = self.entries.remove(&oldest) {
                self.bytes -= entry.size();
            }
        }
    }

    /// Records that `key` is asked upstream now, and says whether it was asked within
    /// `within` before: an answer asked again so soon is worth its item's probes (their
    /// first answers cost a point each; a revalidation later is free), one asked once or
    /// rarely is not.
    pub fn asked_again(&mut self, key: &CacheKey, within: std::time::Duration) -> bool {
        if self.asked.len() >= self.max_entries.max(1) && !self.asked.contains_key(key) {
            self.asked.clear();
        }
        let before = self.asked.insert(*key, Instant::now());
        before.is_some_and(|at| at.elapsed() < within)
    }

    /// Whether `key` is held (not counted as a use).
    pub fn contains(&self, key: &CacheKey) -> bool {
        self.entries.contains_key(key)
    }

    pub fn remove(&mut self, key: &CacheKey) {
        if let Some((entry, used)) = self.entries.remove(key) {
            self.order.remove(&used);
            self.bytes -= entry.size();
        }
    }

    /// Changes at every invalidation that may touch answers about `repo` (one of that
    /// repository, or of none in particular; with `None`, at every invalidation): an
    /// answer asked for before one (it may predate the write) is not kept after it.
    /// Writes to other repositories (another client's, in a fleet) do not count.
    pub fn generation(&self, repo: Option<&str>) -> u64 {
        match repo {
            Some(repo) => self.wide + self.repos.get(repo).copied().unwrap_or(0),
            None => self.generation,
        }
    }

    /// An invalidation after a write to `repo` (`None`: to no one repository): of the
    /// entries `select` selects, those with probes of their own issue or pull request
    /// (more than the repository's one: their probes see what the write changed, and
    /// only that) are marked stale — probed before they are served again —, the others
    /// dropped. Returns how many were dropped.
    pub fn invalidate(&mut self, repo: Option<&str>, select: impl Fn(&Entry) -> bool) -> usize {
        for (entry, _) in self.entries.values_mut() {
            if entry.probes.len() > 1 && select(entry) {
                entry.stale = true;
            }
        }
        self.remove_where(repo, |e| select(e) && e.probes.len() <= 1)
    }

    /// Drops every entry `drop` selects (an invalidation, after a write to `repo` — `None`:
    /// to no one repository); returns how many.
    pub fn remove_where(&mut self, repo: Option<&str>, drop: impl Fn(&Entry) -> bool) -> usize {
        self.generation += 1;
        match repo {
            Some(repo) => *self.repos.entry(repo.to_string()).or_default() += 1,
            None => self.wide += 1,
        }
        let keys: Vec<CacheKey> = self
            .entries
            .iter()
            .filter(|(_, (entry, _))| drop(entry))
            .map(|(key, _)| *key)
            .collect();
        for key in &keys {
            self.remove(key);
        }
        keys.len()
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(body: &str) -> Entry {
        Entry {
            stored: Arc::new(Stored {
                status: http::StatusCode::OK,
                headers: http::HeaderMap::new(),
                body: bytes::Bytes::from(body.to_string()),
                upstream: true,
                rest: None,
            }),
            at: Instant::now(),
            repo: None,
            graphql: false,
            credential: None,
            probes: Vec::new(),
            checked: Instant::now(),
            stale: false,
        }
    }

    #[test]
    fn least_recently_used_goes_first() {
        let mut cache = Cache::new(2, 1 << 20);
        let (a, b, c) = (
            key("rest", None, &[b"a"]),
            key("rest", None, &[b"b"]),
            key("rest", None, &[b"c"]),
        );
        cache.insert(a, entry("a"));
        cache.insert(b, entry("b"));
        assert!(cache.get(&a).is_some());
        cache.insert(c, entry("c"));
        assert!(cache.get(&b).is_none(), "b was the least recently used");
        assert!(cache.get(&a).is_some() && cache.get(&c).is_some());
        assert_eq!(cache.remove_where(None, |e| &e.stored.body[..] == b"a"), 1);
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn a_write_to_another_repository_leaves_this_ones_generation() {
        let mut cache = Cache::new(10, 1 << 20);
        let (mine, all) = (cache.generation(Some("o/mine")), cache.generation(None));
        cache.remove_where(Some("o/other"), |_| false);
        assert_eq!(cache.generation(Some("o/mine")), mine, "another client's repository");
        assert_ne!(
            cache.generation(None),
            all,
            "unknown repository: every invalidation counts"
        );
        cache.remove_where(Some("o/mine"), |_| false);
        let after = cache.generation(Some("o/mine"));
        assert_ne!(after, mine);
        cache.remove_where(None, |_| false);
        assert_ne!(
            cache.generation(Some("o/mine")),
            after,
            "a write of no one repository counts"
        );
    }

    #[test]
    fn bounded_by_bytes() {
        let mut cache = Cache::new(100, 8 * 1024);
        for i in 0..20u8 {
            cache.insert(key("rest", None, &[&[i]]), entry(&"x".repeat(500)));
        }
        assert!(cache.bytes <= 8 * 1024);
        assert!(cache.len() < 20);
        cache.insert(key("rest", None, &[b"big"]), entry(&"x".repeat(2000)));
        assert!(
            cache.get(&key("rest", None, &[b"big"])).is_none(),
            "an entry over an eighth is not kept"
        );
    }

    #[test]
    fn credentials_make_different_keys() {
        assert_ne!(
            key("rest", Some(&[1; 32]), &[b"/user"]),
            key("rest", Some(&[2; 32]), &[b"/user"])
        );
        assert_ne!(key("rest", None, &[b"ab", b"c"]), key("rest", None, &[b"a", b"bc"]));
    }
}
