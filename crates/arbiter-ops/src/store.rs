//! The store itself.

use arbiter_store::Store;
pub use arbiter_store::StoreInfo;

/// Which backend, where, and its schema version.
pub fn info(store: &Store) -> StoreInfo {
    store.info()
}
