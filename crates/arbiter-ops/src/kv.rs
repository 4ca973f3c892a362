//! Versioned keys: get, put (compare-and-swap), delete, list, watch.
//!
//! A failed compare-and-swap is `ErrorKind::Conflict` with `Detail::Conflict`.

pub use arbiter_client::kv::Watch;
use arbiter_core::kv::{IfVersion, KeyValue, MAX_VALUE_LEN};
use arbiter_core::name::{Key, Namespace, Prefix};
use arbiter_core::{Error, ErrorKind, Result};
use arbiter_store::Store;
use serde::{Deserialize, Serialize};

/// A key's value: UTF-8 text of at most [`MAX_VALUE_LEN`] bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Value(String);

impl Value {
    /// Checks the value's size; the error says the limit.
    pub fn parse(text: String) -> Result<Value> {
        if text.len() > MAX_VALUE_LEN {
            return Err(Error::bad_input(format!(
                "the value is {} bytes; at most {MAX_VALUE_LEN} are allowed",
                text.len()
            )));
        }
        Ok(Value(text))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A key's value and version; `NotFound` if it does not exist.
pub async fn get(store: &Store, namespace: &Namespace, key: &Key) -> Result<KeyValue> {
    store.kv().get(namespace, key).await?.ok_or_else(|| {
        Error::new(
            ErrorKind::NotFound,
            format!("no key {:?} in namespace {:?}", key.as_str(), namespace.as_str()),
        )
    })
}

/// What a put wrote.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Put {
    pub key: Key,
    pub value: String,
    pub version: i64,
}

/// Sets a key (with `if_version`: only at that version, 0 meaning absent).
pub async fn put(store: &Store, namespace: &Namespace, key: &Key, value: Value, if_version: IfVersion) -> Result<Put> {
    let version = store.kv().put(namespace, key, value.as_str(), if_version).await?;
    Ok(Put {
        key: key.clone(),
        value: value.0,
        version,
    })
}

/// What a delete did: `version` is the revision of the deletion.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deleted {
    pub key: Key,
    pub deleted: bool,
    pub version: i64,
}

/// Deletes a key (with `if_version`: only at that version).
pub async fn delete(store: &Store, namespace: &Namespace, key: &Key, if_version: IfVersion) -> Result<Deleted> {
    let version = store.kv().delete(namespace, key, if_version).await?;
    Ok(Deleted {
        key: key.clone(),
        deleted: true,
        version,
    })
}

/// The keys starting with `prefix`, in name order.
pub async fn list(store: &Store, namespace: &Namespace, prefix: &Prefix) -> Result<Vec<KeyValue>> {
    store.kv().list(namespace, prefix).await
}

/// The changes of keys starting with `prefix`, from revision `from` (inclusive) or from
/// the next change; `Watch::next` waits for them.
pub async fn watch(store: &Store, namespace: &Namespace, prefix: &Prefix, from: Option<i64>) -> Result<Watch> {
    Watch::start(store, namespace, prefix, from).await
}
