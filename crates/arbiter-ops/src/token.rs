//! API tokens of `arbiter serve`: create (the secret is shown once, here, and never again),
//! list, revoke, authenticate a bearer secret, and the audit of refused requests.
//!
//! A secret is `arb_` and 32 random bytes from the operating system, base64url without
//! padding (43 characters). The store keeps only its SHA-256 (`arbiter_core::token::secret_hash`)
//! and finds a token by that hash, so a stolen store gives no working secret. Authentication
//! reads the store on every call: a revoke or an expiry takes effect at the next request.

use std::time::Duration;

use arbiter_core::token::{Namespaces, Principal, SECRET_PREFIX, Scopes, secret_hash, validate_token_name};
use arbiter_core::{Error, ErrorKind, Result};
use arbiter_store::Store;
use arbiter_store::token::{AUDIT_KEEP, NewToken, Refusal, TokenRecord};
use base64::Engine;
use serde::Serialize;

use crate::view::timestamp;

/// How many base64url characters follow [`SECRET_PREFIX`]: 32 bytes, unpadded.
const SECRET_CHARS: usize = 43;

/// The one answer for a secret that is unknown, expired or revoked, so a caller cannot
/// tell which (and so probe for names or for which secrets once worked).
const UNAUTHORIZED: &str = "unknown, expired or revoked token";

/// The longest text of a refusal kept in the audit (a path, a reason): the audit is bounded
/// in rows, and this bounds each row.
const AUDIT_TEXT_MAX: usize = 512;

/// What `arbiter token create` asks for; the name is checked here
/// ([`validate_token_name`]), the rest is valid by type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateToken {
    pub name: String,
    pub namespaces: Namespaces,
    pub scopes: Scopes,
    /// How long it lives; `None`: until revoked.
    pub expires: Option<Duration>,
    /// Replace a token of the same name (its old secret stops working) instead of `Conflict`.
    pub replace: bool,
}

/// A created token, with its secret: the only time the secret exists outside its owner.
/// Field names are stable (`arbiter token create --json`).
#[derive(Clone, PartialEq, Eq, Serialize)]
pub struct Created {
    pub name: String,
    pub secret: String,
    pub namespaces: String,
    pub scopes: String,
    pub expires_at: Option<String>,
}

impl std::fmt::Debug for Created {
    /// Without the secret: a `Debug` print may end up in a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Created")
            .field("name", &self.name)
            .field("secret", &arbiter_core::redact::HIDDEN)
            .field("namespaces", &self.namespaces)
            .field("scopes", &self.scopes)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// A token as `arbiter token list` shows it: never its secret or hash. Field names are stable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TokenView {
    pub name: String,
    pub namespaces: String,
    pub scopes: String,
    /// `live`, `expired` or `revoked`.
    pub state: &'static str,
    pub created_at: String,
    pub expires_at: Option<String>,
    pub revoked_at: Option<String>,
}

impl TokenView {
    fn new(now: arbiter_core::Millis, record: TokenRecord) -> TokenView {
        let state = if record.revoked_at.is_some() {
            "revoked"
        } else if record.live(now) {
            "live"
        } else {
            "expired"
        };
        TokenView {
            state,
            created_at: timestamp(record.created_at),
            expires_at: record.expires_at.map(timestamp),
            revoked_at: record.revoked_at.map(timestamp),
            name: record.name,
            namespaces: record.namespaces,
            scopes: record.scopes,
        }
    }
}

/// A revoked token. Field names are stable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Revoked {
    pub name: String,
    pub revoked_at: String,
}

/// A refused request, as a front end reports it (the server's auth layer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    /// The token's name, when one was recognised (a 403); `None` for a 401.
    pub token: Option<String>,
    pub method: String,
    pub path: String,
    /// The namespace asked for, if the route has one.
    pub namespace: Option<String>,
    /// What was missing, for a person (the refusal's message). Never the secret.
    pub missing: String,
    /// The status answered (401 or 403).
    pub status: u16,
}

/// A recorded refusal. Field names are stable (`arbiter token audit --json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditView {
    pub at: String,
    /// The token's name; empty when none was recognised.
    pub token: String,
    pub method: String,
    pub path: String,
    /// Empty when the route has none.
    pub namespace: String,
    pub missing: String,
    pub status: u16,
}

/// A new secret: [`SECRET_PREFIX`] and 32 bytes from the operating system's CSPRNG.
fn new_secret() -> Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)
        .map_err(|e| Error::internal(format!("no randomness from the operating system: {e}")))?;
    let encoded = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    Ok(format!("{SECRET_PREFIX}{encoded}"))
}

/// Creates a token and returns its secret (shown once; only its hash is stored). A name
/// that exists is `Conflict` unless `replace`.
pub async fn create(store: &Store, request: CreateToken) -> Result<Created> {
    validate_token_name(&request.name)?;
    let secret = new_secret()?;
    let record = store
        .tokens()
        .create(&NewToken {
            name: request.name,
            secret_sha256: secret_hash(&secret),
            namespaces: request.namespaces.to_string(),
            scopes: request.scopes.to_string(),
            expires_in: request.expires,
            replace: request.replace,
        })
        .await?;
    Ok(Created {
        name: record.name,
        secret,
        namespaces: record.namespaces,
        scopes: record.scopes,
        expires_at: record.expires_at.map(timestamp),
    })
}

/// Every token, by name, with its state; never a secret or a hash.
pub async fn list(store: &Store) -> Result<Vec<TokenView>> {
    let (now, records) = store.tokens().list().await?;
    Ok(records.into_iter().map(|r| TokenView::new(now, r)).collect())
}

/// Revokes a token: its next request is refused. `NotFound` if the name is unknown.
pub async fn revoke(store: &Store, name: &str) -> Result<Revoked> {
    validate_token_name(name)?;
    let record = store.tokens().revoke(name).await?;
    Ok(Revoked {
        revoked_at: record.revoked_at.map(timestamp).unwrap_or_default(),
        name: record.name,
    })
}

/// Whether a text has the shape of a secret (so a malformed one is refused without a
/// store read).
fn well_formed(secret: &str) -> bool {
    secret.strip_prefix(SECRET_PREFIX).is_some_and(|rest| {
        rest.len() == SECRET_CHARS
            && rest
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    })
}

/// Who a bearer secret belongs to. Unknown, expired and revoked secrets get one and the
/// same `Unauthorized` (so a caller cannot probe); a malformed one is `Unauthorized` too,
/// saying what a secret looks like. No message ever contains the secret.
///
/// The lookup is by the secret's SHA-256, an indexed equality in the store, not by
/// comparing secrets: timing can at most reveal something about a hash an attacker
/// cannot invert, so no constant-time comparison is needed.
pub async fn authenticate(store: &Store, secret: &str) -> Result<Principal> {
    if !well_formed(secret) {
        return Err(Error::new(
            ErrorKind::Unauthorized,
            format!("malformed token: expected {SECRET_PREFIX:?} followed by {SECRET_CHARS} base64url characters"),
        ));
    }
    let record = store
        .tokens()
        .live(&secret_hash(secret))
        .await?
        .ok_or_else(|| Error::new(ErrorKind::Unauthorized, UNAUTHORIZED))?;
    // What the store holds was written from these types; text that no longer parses
    // (a store written by a newer arbiter) reaches nothing rather than something else.
    let stored = |what: &str, e: arbiter_core::ParseError| {
        Error::internal(format!(
            "token {:?} has unreadable {what} in the store: {}",
            record.name, e.message
        ))
    };
    let namespaces = record.namespaces.parse().map_err(|e| stored("namespaces", e))?;
    let scopes = record.scopes.parse().map_err(|e| stored("scopes", e))?;
    Ok(Principal {
        name: record.name,
        namespaces,
        scopes,
    })
}

/// Whether any token is live (`arbiter serve` refuses a non-loopback address without one).
pub async fn any_live(store: &Store) -> Result<bool> {
    store.tokens().any_live().await
}

/// Cuts `text` to at most [`AUDIT_TEXT_MAX`] bytes, on a character boundary.
fn bounded(mut text: String) -> String {
    if text.len() > AUDIT_TEXT_MAX {
        let mut end = AUDIT_TEXT_MAX;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

/// Records a refused request (the newest [`AUDIT_KEEP`] are kept).
pub async fn audit(store: &Store, entry: AuditEntry) -> Result<()> {
    let refusal = Refusal {
        token: bounded(entry.token.unwrap_or_default()),
        method: bounded(entry.method),
        path: bounded(entry.path),
        namespace: bounded(entry.namespace.unwrap_or_default()),
        missing: bounded(entry.missing),
        status: entry.status,
    };
    store.tokens().audit(&refusal, AUDIT_KEEP).await
}

/// The newest refusals, newest first, at most `limit`.
pub async fn audit_list(store: &Store, limit: usize) -> Result<Vec<AuditView>> {
    let records = store.tokens().audit_list(limit).await?;
    Ok(records
        .into_iter()
        .map(|r| AuditView {
            at: timestamp(r.at),
            token: r.refusal.token,
            method: r.refusal.method,
            path: r.refusal.path,
            namespace: r.refusal.namespace,
            missing: r.refusal.missing,
            status: r.refusal.status,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::temp_store;

    fn request(name: &str) -> CreateToken {
        CreateToken {
            name: name.into(),
            namespaces: "team-a".parse().unwrap(),
            scopes: "kv:read".parse().unwrap(),
            expires: None,
            replace: false,
        }
    }

    #[tokio::test]
    async fn a_created_secret_authenticates_until_revoked() {
        let (_dir, store) = temp_store().await;
        let created = create(&store, request("agent")).await.unwrap();
        assert!(well_formed(&created.secret), "{}", created.secret.len());
        assert!(
            !format!("{created:?}").contains(&created.secret),
            "Debug hides the secret"
        );
        let principal = authenticate(&store, &created.secret).await.unwrap();
        assert_eq!(principal.name, "agent");
        assert_eq!(principal.scopes.to_string(), "kv:read");
        assert!(principal.namespaces.contains(&"team-a".parse().unwrap()));
        let err = create(&store, request("agent")).await.unwrap_err();
        assert_eq!(err.kind, ErrorKind::Conflict);
        revoke(&store, "agent").await.unwrap();
        let err = authenticate(&store, &created.secret).await.unwrap_err();
        assert_eq!(
            (err.kind, err.message.as_str()),
            (ErrorKind::Unauthorized, UNAUTHORIZED)
        );
        let listed = list(&store).await.unwrap();
        assert_eq!((listed[0].name.as_str(), listed[0].state), ("agent", "revoked"));
        assert!(!any_live(&store).await.unwrap());
    }

    #[tokio::test]
    async fn unknown_and_malformed_secrets_are_unauthorized_without_echo() {
        let (_dir, store) = temp_store().await;
        let unknown = format!("{SECRET_PREFIX}{}", "A".repeat(SECRET_CHARS));
        let err = authenticate(&store, &unknown).await.unwrap_err();
        assert_eq!(
            (err.kind, err.message.as_str()),
            (ErrorKind::Unauthorized, UNAUTHORIZED)
        );
        for bad in [
            "",
            "Bearer x",
            "arb_short",
            "arb_ with spaces and more than forty three characters",
        ] {
            let err = authenticate(&store, bad).await.unwrap_err();
            assert_eq!(err.kind, ErrorKind::Unauthorized, "{bad:?}");
            assert!(bad.is_empty() || !err.message.contains(bad), "{}", err.message);
        }
        let err = create(&store, request("Bad Name")).await.unwrap_err();
        assert_eq!(err.kind, ErrorKind::BadInput);
        assert!(list(&store).await.unwrap().is_empty(), "bad input changes nothing");
    }

    #[tokio::test]
    async fn audit_entries_are_kept_bounded_and_newest_first() {
        let (_dir, store) = temp_store().await;
        for (i, token) in [None, Some("agent".to_string())].into_iter().enumerate() {
            audit(
                &store,
                AuditEntry {
                    token,
                    method: "POST".into(),
                    path: format!("/v1/ns/b/kv/{i}{}", "x".repeat(2000)),
                    namespace: Some("b".into()),
                    missing: "namespace b".into(),
                    status: 401 + i as u16 * 2,
                },
            )
            .await
            .unwrap();
        }
        let views = audit_list(&store, 10).await.unwrap();
        assert_eq!(views.len(), 2);
        assert_eq!((views[0].token.as_str(), views[0].status), ("agent", 403));
        assert_eq!((views[1].token.as_str(), views[1].status), ("", 401));
        assert_eq!(views[0].path.len(), AUDIT_TEXT_MAX);
    }
}
