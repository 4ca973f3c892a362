//! Versioned keys, like etcd's: every change takes the next value of one store-wide
//! revision counter, and a key's `version` is the revision of its last change.

use serde::{Deserialize, Serialize};

/// The largest value a key may hold, in bytes.
pub const MAX_VALUE_LEN: usize = 1 << 20;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyValue {
    pub key: String,
    pub value: String,
    /// The revision of the key's last change; the `--if-version` a compare-and-swap names.
    pub version: i64,
    /// The revision at which the key was created.
    pub create_revision: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventType {
    Put,
    Delete,
}

/// One change of a key, as a watch delivers it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvEvent {
    #[serde(rename = "type")]
    pub kind: EventType,
    pub key: String,
    /// The value after a put; `None` for a delete.
    pub value: Option<String>,
    /// The revision of this change.
    pub version: i64,
}

/// A compare-and-swap precondition: `Some(0)` means "the key must not exist".
pub type IfVersion = Option<i64>;
