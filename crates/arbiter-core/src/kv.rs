//! Versioned keys, like etcd's: every change takes the next value of one store-wide
//! revision counter, and a key's `version` is the revision of its last change.

use serde::{Deserialize, Serialize};

use crate::name::{Key, Namespace};
use crate::{Detail, Error, ErrorKind, Result};

/// The largest value a key may hold, in bytes.
pub const MAX_VALUE_LEN: usize = 1 << 20;

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyValue {
    pub key: Key,
    pub value: String,
    /// The revision of the key's last change; the `--if-version` a compare-and-swap names.
    pub version: i64,
    /// The revision at which the key was created.
    pub create_revision: i64,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventType {
    Put,
    Delete,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Put => "put",
            EventType::Delete => "delete",
        }
    }
    /// Reads a stored event kind; anything else is a corrupted store.
    pub fn parse(text: &str) -> Result<EventType> {
        match text {
            "put" => Ok(EventType::Put),
            "delete" => Ok(EventType::Delete),
            other => Err(Error::internal(format!("corrupt key event kind {other:?}"))),
        }
    }
}

/// One change of a key, as a watch delivers it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvEvent {
    #[serde(rename = "type")]
    pub kind: EventType,
    pub key: Key,
    /// The value after a put; `None` for a delete.
    pub value: Option<String>,
    /// The revision of this change.
    pub version: i64,
}

/// A version or revision a caller names (`if_version`, a watch's `from`): at least `min`
/// (0 for a put's "must not exist", 1 for anything that names an existing revision).
pub fn check_revision(revision: i64, min: i64) -> Result<i64, crate::ParseError> {
    if revision >= min {
        Ok(revision)
    } else {
        Err(crate::ParseError::new(format!(
            "invalid version {revision}: expected an integer of at least {min}"
        )))
    }
}

/// A compare-and-swap precondition: `Some(0)` means "the key must not exist".
pub type IfVersion = Option<i64>;

/// Checks a write's precondition against the key's current version (`None`: absent). A
/// failed one is `Conflict`, with the version the key has now (0: absent) as its detail.
pub fn check_version(key: &Key, current: Option<i64>, if_version: IfVersion) -> Result<()> {
    let Some(want) = if_version else { return Ok(()) };
    if current.unwrap_or(0) == want {
        return Ok(());
    }
    let message = match current {
        Some(have) => format!("key {key:?} is at version {have}, not {want}"),
        None => format!("key {key:?} does not exist (expected version {want})"),
    };
    Err(Error::new(ErrorKind::Conflict, message).with_detail(Detail::Conflict {
        current_version: current.unwrap_or(0),
    }))
}

/// Checks a delete: an absent key is `NotFound` (unless the caller asked for its absence
/// with version 0), then the precondition as [`check_version`].
pub fn check_delete(namespace: &Namespace, key: &Key, current: Option<i64>, if_version: IfVersion) -> Result<()> {
    if current.is_none() && if_version != Some(0) {
        return Err(not_found(namespace, key));
    }
    check_version(key, current, if_version)
}

/// The failure of reading or deleting a key that does not exist.
pub fn not_found(namespace: &Namespace, key: &Key) -> Error {
    Error::new(
        ErrorKind::NotFound,
        format!("no key {key:?} in namespace {namespace:?}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        let key = Key::parse("k").unwrap();
        assert_eq!(check_version(&key, None, None), Ok(()));
        assert_eq!(check_version(&key, Some(3), None), Ok(()));
        assert_eq!(check_version(&key, None, Some(0)), Ok(()));
        assert_eq!(check_version(&key, Some(3), Some(3)), Ok(()));
        let err = check_version(&key, Some(3), Some(2)).unwrap_err();
        assert_eq!(err.kind, ErrorKind::Conflict);
        assert_eq!(err.message, "key \"k\" is at version 3, not 2");
        assert_eq!(err.detail.as_deref(), Some(&Detail::Conflict { current_version: 3 }));
        let err = check_version(&key, Some(3), Some(0)).unwrap_err();
        assert_eq!(err.detail.as_deref(), Some(&Detail::Conflict { current_version: 3 }));
        let err = check_version(&key, None, Some(4)).unwrap_err();
        assert_eq!(err.message, "key \"k\" does not exist (expected version 4)");
        assert_eq!(err.detail.as_deref(), Some(&Detail::Conflict { current_version: 0 }));
        let ns = Namespace::default();
        assert_eq!(
            check_delete(&ns, &key, None, None).unwrap_err().kind,
            ErrorKind::NotFound
        );
        assert_eq!(
            check_delete(&ns, &key, None, Some(2)).unwrap_err().kind,
            ErrorKind::NotFound
        );
        assert_eq!(check_delete(&ns, &key, None, Some(0)), Ok(()));
        assert_eq!(
            check_delete(&ns, &key, Some(2), Some(1)).unwrap_err().kind,
            ErrorKind::Conflict
        );
        assert_eq!(EventType::parse(EventType::Delete.as_str()), Ok(EventType::Delete));
    }
}
