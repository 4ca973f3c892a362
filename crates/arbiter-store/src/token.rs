//! What both backends share for API tokens beyond SQL text: the rows the token slice
//! ([`crate::TokenStore`]) takes and returns. The rules (names, scopes, what a secret looks
//! like) are `arbiter_core::token`'s; the store keeps text it is handed, already checked.

use std::time::Duration;

use arbiter_core::Millis;

/// How many refusals the audit keeps by default: the newest; older ones are dropped as new
/// ones come, so a flood of refused requests cannot grow the store without bound.
pub const AUDIT_KEEP: u32 = 10_000;

/// A token to store. Only the secret's hash is handed over; the secret never reaches the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewToken {
    pub name: String,
    /// SHA-256 of the secret, lowercase hex (`arbiter_core::token::secret_hash`).
    pub secret_sha256: String,
    /// `arbiter_core::token::Namespaces` as text.
    pub namespaces: String,
    /// `arbiter_core::token::Scopes` as text.
    pub scopes: String,
    /// How long it lives from now (the store's clock); `None`: until revoked.
    pub expires_in: Option<Duration>,
    /// Replace a token of the same name (its old secret stops working) instead of refusing.
    pub replace: bool,
}

/// A stored token, without its hash: nothing outside the lookup needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    pub name: String,
    pub namespaces: String,
    pub scopes: String,
    pub created_at: Millis,
    pub expires_at: Option<Millis>,
    pub revoked_at: Option<Millis>,
}

impl TokenRecord {
    /// Whether it authenticates at `now` (the store's clock): neither revoked nor expired.
    pub fn live(&self, now: Millis) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|at| at > now)
    }
}

/// A refused request, as the audit records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The token's name; empty when no token was recognised.
    pub token: String,
    pub method: String,
    pub path: String,
    /// The namespace asked for; empty when none (admin routes, unknown tokens).
    pub namespace: String,
    /// What was missing (a scope, the namespace, a valid token), for a person.
    pub missing: String,
    /// The HTTP status answered (401 or 403).
    pub status: u16,
}

/// A recorded refusal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusalRecord {
    /// Increasing with time; newest is largest.
    pub id: i64,
    /// When, by the store's clock.
    pub at: Millis,
    pub refusal: Refusal,
}

/// The error for a second token of one name (without `replace`).
pub(crate) fn exists(name: &str) -> arbiter_core::Error {
    arbiter_core::Error::new(
        arbiter_core::ErrorKind::Conflict,
        format!("a token named {name:?} exists: choose another name, or replace it (`arbiter token create --replace`)"),
    )
}

/// The error for revoking a token that was never created.
pub(crate) fn unknown(name: &str) -> arbiter_core::Error {
    arbiter_core::Error::new(arbiter_core::ErrorKind::NotFound, format!("no token named {name:?}"))
}

/// The columns [`TokenRecord`] is read from, in this order, on both backends.
pub(crate) const TOKEN_COLUMNS: &str = "name, namespaces, scopes, created_at, expires_at, revoked_at";

/// The columns of a refusal row, in this order, on both backends.
pub(crate) const REFUSAL_COLUMNS: &str = "id, at, token, method, path, namespace, missing, status";
