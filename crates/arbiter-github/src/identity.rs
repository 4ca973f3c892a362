//! Who is behind a request: budgets are GitHub's per user, so they are keyed by the login
//! a token belongs to (two tokens of one user share one budget), found once with
//! `GET /user` and remembered by the token's SHA-256 — never the token itself.
//!
//! - A token whose login cannot be found (`GET /user` refused it: an app installation
//!   token) is its own identity, `@token:<first 16 hex digits of its hash>`. A 401 or an
//!   unreachable upstream is not remembered: the next request asks again.
//! - A request without `Authorization` is anonymous: GitHub counts those per IP address,
//!   so its identity is this host's, `@anonymous:<source>`; anonymous answers are cached
//!   under no credential and shared by anonymous callers only.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use http::{HeaderMap, HeaderValue, header};
use sha2::{Digest, Sha256};
use tokio::sync::OnceCell;

use crate::Shared;

/// A request's credential: its `Authorization` header and that header's SHA-256.
#[derive(Clone)]
pub struct Credential {
    pub hash: [u8; 32],
    pub header: HeaderValue,
}

impl Credential {
    pub fn from_headers(headers: &HeaderMap) -> Option<Credential> {
        let header = headers.get(header::AUTHORIZATION)?.clone();
        let hash = Sha256::digest(header.as_bytes()).into();
        Some(Credential { hash, header })
    }
}

/// The identity budgets are kept for: a segment of the bucket names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub login: String,
}

#[derive(Default)]
pub struct Identities {
    known: Mutex<HashMap<[u8; 32], Arc<OnceCell<Identity>>>>,
}

/// A GitHub login as a bucket-name segment: letters, digits and `-` (GitHub's rule).
fn valid_login(login: &str) -> bool {
    !login.is_empty() && login.len() <= 100 && login.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

fn token_identity(hash: &[u8; 32]) -> Identity {
    let hex: String = hash[..8].iter().map(|b| format!("{b:02x}")).collect();
    Identity {
        login: format!("@token:{hex}"),
    }
}

enum Lookup {
    Found(Identity),
    /// GitHub will never say (remembered as the token's own identity).
    Never,
    /// Not now (401, a limit, the upstream unreachable): ask again next time.
    NotNow,
}

impl Identities {
    /// The identity of `credential` (`None`: anonymous), and whether the upstream was asked
    /// for it (once per token at a time; what it learnt is remembered).
    pub async fn resolve(&self, shared: &Shared, credential: Option<&Credential>) -> (Identity, bool) {
        let Some(credential) = credential else {
            let login = format!("@anonymous:{}", segment(&shared.config.source));
            return (Identity { login }, false);
        };
        let asked = std::sync::atomic::AtomicBool::new(false);
        let cell = self
            .known
            .lock()
            .expect("identities")
            .entry(credential.hash)
            .or_default()
            .clone();
        let found = cell
            .get_or_try_init(|| async {
                asked.store(true, std::sync::atomic::Ordering::Relaxed);
                match lookup(shared, credential).await {
                    Lookup::Found(identity) => Ok(identity),
                    Lookup::Never => Ok(token_identity(&credential.hash)),
                    Lookup::NotNow => Err(()),
                }
            })
            .await;
        let identity = match found {
            Ok(identity) => identity.clone(),
            Err(()) => token_identity(&credential.hash),
        };
        (identity, asked.into_inner())
    }
}

/// A host name as a name segment (anything a name may not hold becomes `-`).
fn segment(text: &str) -> String {
    let clean: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .take(100)
        .collect();
    if clean.is_empty() || clean == "." || clean == ".." {
        "host".to_string()
    } else {
        clean
    }
}

async fn lookup(shared: &Shared, credential: &Credential) -> Lookup {
    let url = format!("{}/user", shared.upstream.base);
    let response = shared
        .client
        .get(&url)
        .header(header::AUTHORIZATION, credential.header.clone())
        .header(header::ACCEPT, "application/vnd.github+json")
        .header(header::ACCEPT_ENCODING, "identity")
        .send()
        .await;
    let response = match response {
        Ok(response) => response,
        Err(e) => {
            tracing::warn!(
                "GitHub proxy: cannot ask the upstream who a token is: {}",
                e.without_url()
            );
            return Lookup::NotNow;
        }
    };
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.bytes().await.unwrap_or_default();
    let stored = crate::upstream::Stored {
        status,
        headers,
        body,
        upstream: true,
    };
    let limits = crate::upstream::limits(&stored, false);
    let hit = limits.primary.hit || limits.secondary.is_some();
    let identity = if status.is_success() {
        serde_json::from_slice::<serde_json::Value>(&stored.body)
            .ok()
            .and_then(|user| user["login"].as_str().map(str::to_string))
            .filter(|login| valid_login(login))
            .map(|login| Lookup::Found(Identity { login }))
            .unwrap_or(Lookup::Never)
    } else if hit || status == http::StatusCode::UNAUTHORIZED || status.is_server_error() {
        Lookup::NotNow
    } else {
        Lookup::Never
    };
    let login = match &identity {
        Lookup::Found(found) => found.login.clone(),
        _ => token_identity(&credential.hash).login,
    };
    crate::handler::learn(shared, &login, "core", &limits).await;
    identity
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_are_name_segments() {
        assert!(valid_login("octo-cat1"));
        assert!(!valid_login("a/b"));
        assert!(token_identity(&[0xab; 32]).login.starts_with("@token:abababab"));
        assert_eq!(segment("my host/1"), "my-host-1");
        for login in ["@token:00ff", "@anonymous:my-host", "octocat"] {
            arbiter_core::name::Key::parse(&format!("github/{login}/core")).unwrap();
        }
    }
}
