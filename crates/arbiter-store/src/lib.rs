//! The store: where all of arbiter's state lives.
//!
//! Layout:
//! - [`url`]: how a store is named (`sqlite:///path.db`, a bare path, `postgres://…`).
//! - [`api`]: the interface, one trait per primitive ([`LeaseStore`], [`KvStore`], [`LogStore`], [`NotifyStore`], [`LoopStore`], [`LimitStore`], [`TokenStore`], [`QueueStore`]) plus
//!   [`Changes`], the way a caller waits for the store to change without polling it hard.
//! - [`token`]: the rows of API tokens and refusals (public: the operations build them).
//! - `lease`, `notify`, `loops`, `limit`, `queue`: what both backends share for a primitive beyond SQL text.
//! - `sqlite`: the embedded default backend (one file, WAL, many processes at once).
//! - `postgres`: the backend for fleets that span machines.
//!
//! Both backends pass one conformance suite (`tests/it`).
//!
//! **Architecture invariant:** only this crate knows SQL. Every state change reads and
//! writes in one transaction, and every time it decides with comes from the store's clock.

pub mod api;
mod lease;
mod limit;
mod loops;
mod notify;
mod postgres;
mod queue;
mod schema;
mod sql;
mod sqlite;
pub mod token;
pub mod url;

use std::sync::Arc;

pub use api::{
    Changes, KvStore, LeaseStore, LimitStore, LogStore, LoopStore, NotifyStore, QueueStore, Subscription, TokenStore,
    Topic,
};
use arbiter_core::Result;
pub use loops::{LoopState, RoundEnd, RoundInfo, RoundLogPath};
pub use notify::{AcceptRequest, Accepted, DeliveryState, Due, Failure, OutboxEntry, Resolved};
pub use url::StoreUrl;

/// The schema version this build writes. Opening a store migrates it up to this version; a
/// store with a newer version is refused.
pub const SCHEMA_VERSION: i64 = 8;

/// What `arbiter store info` prints.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StoreInfo {
    /// `sqlite` or `postgres`.
    pub backend: std::borrow::Cow<'static, str>,
    /// The file path, or the Postgres URL without its password.
    pub location: String,
    pub schema_version: i64,
}

/// One backend: the sum of every primitive's trait, so a backend implements each primitive
/// once (in its own module) and [`Store`] hands out each trait by upcasting; nothing
/// forwards. A new primitive adds its trait here and an accessor on [`Store`].
pub trait Backend:
    LeaseStore
    + KvStore
    + LogStore
    + NotifyStore
    + LoopStore
    + LimitStore
    + TokenStore
    + QueueStore
    + Changes
    + Send
    + Sync
    + 'static
{
    fn info(&self) -> StoreInfo;
}

/// A handle on an open, migrated store. Cheap to clone; every clone shares connections.
#[derive(Clone)]
pub struct Store {
    backend: Arc<dyn Backend>,
}

impl Store {
    /// Opens (creating if needed) and migrates the store named by `url`.
    pub async fn open(url: &StoreUrl) -> Result<Store> {
        let backend: Arc<dyn Backend> = match url {
            StoreUrl::Sqlite {
                path,
                synchronous,
                busy_timeout,
            } => Arc::new(sqlite::SqliteStore::open(path.clone(), *synchronous, *busy_timeout).await?),
            StoreUrl::Postgres { url, schema, options } => {
                Arc::new(postgres::PgStore::open(url, schema.as_deref(), options).await?)
            }
        };
        Ok(Store { backend })
    }

    pub fn info(&self) -> StoreInfo {
        self.backend.info()
    }
    pub fn leases(&self) -> &dyn LeaseStore {
        &*self.backend
    }
    pub fn kv(&self) -> &dyn KvStore {
        &*self.backend
    }
    pub fn log(&self) -> &dyn LogStore {
        &*self.backend
    }
    pub fn notify(&self) -> &dyn NotifyStore {
        &*self.backend
    }
    pub fn loops(&self) -> &dyn LoopStore {
        &*self.backend
    }
    pub fn limits(&self) -> &dyn LimitStore {
        &*self.backend
    }
    pub fn tokens(&self) -> &dyn TokenStore {
        &*self.backend
    }
    pub fn queue(&self) -> &dyn QueueStore {
        &*self.backend
    }
    pub fn changes(&self) -> &dyn Changes {
        &*self.backend
    }
}
