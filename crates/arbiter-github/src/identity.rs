//! Who is behind a request: budgets are GitHub's per user, so they are keyed by the login
//! a token belongs to (two tokens of one user share one budget), found once with
//! `GET /user` and remembered by the token's SHA-256 — never the token itself.
//!
//! - A token whose login cannot be found (`GET /user` refused it: an app installation
//!   token) is its own identity, `@token:<first 16 hex digits of its hash>`. A slow,
//!   failing or unreachable upstream is not remembered: the next request asks again. A
//!   limit GitHub refused the lookup for is, until it passes: the token is its own
//!   identity meanwhile, its buckets frozen, and GitHub is not asked again and again.
//! - A token GitHub refuses (401) is answered with that refusal: nothing is forwarded and no
//!   bucket is made for it (a stream of bad tokens does not grow the store).
//! - A request without `Authorization` is anonymous: GitHub counts those per IP address,
//!   so its identity is this host's, `@anonymous:<source>`; anonymous answers are cached
//!   under no credential and shared by anonymous callers only.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::{HeaderMap, HeaderValue, header};
use sha2::{Digest, Sha256};
use tokio::sync::OnceCell;

use crate::Shared;
use crate::upstream::Stored;

/// A request's credential: its `Authorization` header (forwarded as it came) and the
/// SHA-256 of what GitHub authenticates in it ([`secret_of`]).
#[derive(Clone)]
pub struct Credential {
    pub hash: [u8; 32],
    pub header: HeaderValue,
}

impl Credential {
    pub fn from_headers(headers: &HeaderMap) -> Option<Credential> {
        let header = headers.get(header::AUTHORIZATION)?.clone();
        let hash = Sha256::digest(secret_of(header.as_bytes())).into();
        Some(Credential { hash, header })
    }
}

/// What identifies a credential in an `Authorization` value: for GitHub's two schemes for
/// a token, `token T` and `Bearer T` (either case), the token — one token either way, so
/// one cache, one `GET /user` —; any other value whole (`Basic …` is another credential).
/// Read as bytes (a header may hold any byte past ASCII): two different tokens never
/// become one.
fn secret_of(value: &[u8]) -> Vec<u8> {
    let value = value.trim_ascii();
    if let Some(space) = value.iter().position(|b| b.is_ascii_whitespace()) {
        let (scheme, token) = (&value[..space], value[space..].trim_ascii());
        if (scheme.eq_ignore_ascii_case(b"token") || scheme.eq_ignore_ascii_case(b"bearer")) && !token.is_empty() {
            return [b"token ", token].concat();
        }
    }
    value.to_vec()
}

/// The identity budgets are kept for: a segment of the bucket names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub login: String,
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

/// How many tokens' identities are remembered (past it, one is forgotten for each new one:
/// it is asked again when it comes back).
const REMEMBERED: usize = 10_000;

#[derive(Default)]
pub struct Identities {
    known: Mutex<HashMap<[u8; 32], Arc<OnceCell<Known>>>>,
}

/// What one lookup of a token learnt, shared by every request that waited for it.
#[derive(Clone)]
enum Known {
    Identity(Identity),
    /// Not now (the upstream unreachable, slow or failing): the token's own identity for
    /// the requests that waited; the next request asks again.
    NotNow,
    /// GitHub refused to say for a limit: the token's own identity (its buckets frozen
    /// until then) without asking again until `until`.
    Limited(Instant),
    /// GitHub refused the token (401): its answer, given to the request as it is.
    Refused(Arc<Stored>),
}

/// A request's identity, as [`Identities::resolve`] found it.
pub struct Resolved {
    pub identity: Identity,
    /// The upstream was asked (`GET /user`) for this request.
    pub asked: bool,
    /// GitHub refused the token (401): the answer to give instead of forwarding anything.
    pub refused: Option<Arc<Stored>>,
}

enum Lookup {
    Found(Identity),
    /// GitHub will never say (remembered as the token's own identity).
    Never,
    /// Not now (the upstream unreachable or failing): ask again next time.
    NotNow,
    /// GitHub refused to say, for a limit: the token is its own identity until it passes.
    Limited(Duration),
    /// The token is not valid (401): not forwarded, not given buckets; asked again next time.
    Refused(Stored),
}

impl Identities {
    /// The identity of `credential` (`None`: anonymous). One lookup per token at a time,
    /// bounded by the upstream timeout; the requests waiting for it share its outcome (a
    /// failed lookup is not retried by each waiter in turn).
    pub async fn resolve(&self, shared: &Shared, credential: Option<&Credential>) -> Resolved {
        let anonymous = || Identity {
            login: format!("@anonymous:{}", segment(&shared.config.source)),
        };
        let Some(credential) = credential else {
            return Resolved {
                identity: anonymous(),
                asked: false,
                refused: None,
            };
        };
        let asked = std::sync::atomic::AtomicBool::new(false);
        let cell = {
            let mut known = self.known.lock().expect("identities");
            if known.len() >= REMEMBERED && !known.contains_key(&credential.hash) {
                let forget = known.keys().next().copied();
                if let Some(forget) = forget {
                    known.remove(&forget);
                }
            }
            known.entry(credential.hash).or_default().clone()
        };
        let known = cell
            .get_or_init(|| async {
                asked.store(true, std::sync::atomic::Ordering::Relaxed);
                let timeout = shared.config.upstream_timeout;
                let found = tokio::time::timeout(timeout, lookup(shared, credential))
                    .await
                    .unwrap_or_else(|_| {
                        tracing::warn!("GitHub proxy: the upstream did not say who a token is within {timeout:?}");
                        Lookup::NotNow
                    });
                match found {
                    Lookup::Found(identity) => Known::Identity(identity),
                    Lookup::Never => Known::Identity(token_identity(&credential.hash)),
                    Lookup::NotNow => Known::NotNow,
                    Lookup::Limited(wait) => Known::Limited(Instant::now() + wait),
                    Lookup::Refused(stored) => Known::Refused(Arc::new(stored)),
                }
            })
            .await
            .clone();
        let passed = matches!(known, Known::Limited(until) if until <= Instant::now());
        if passed || matches!(known, Known::NotNow | Known::Refused(_)) {
            // Asked again by the next request (this lookup's waiters have their answer).
            let mut map = self.known.lock().expect("identities");
            if map.get(&credential.hash).is_some_and(|c| Arc::ptr_eq(c, &cell)) {
                map.remove(&credential.hash);
            }
        }
        let asked = asked.into_inner();
        match known {
            Known::Identity(identity) => Resolved {
                identity,
                asked,
                refused: None,
            },
            Known::NotNow | Known::Limited(_) => Resolved {
                identity: token_identity(&credential.hash),
                asked,
                refused: None,
            },
            Known::Refused(stored) => Resolved {
                identity: anonymous(),
                asked,
                refused: Some(stored),
            },
        }
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
    // `/user` is small; a body larger than the proxy holds is not a user.
    let body = crate::upstream::read_whole(response, shared.buffer_limit())
        .await
        .unwrap_or_default();
    let stored = Stored {
        status,
        headers,
        body,
        upstream: true,
        rest: None,
    };
    if status == http::StatusCode::UNAUTHORIZED {
        // A token GitHub does not know: no identity, no buckets; the next request asks again.
        return Lookup::Refused(stored);
    }
    let limits = crate::upstream::limits(&stored, false);
    let hit = limits.primary.hit || limits.secondary.is_some();
    let identity = if status.is_success() {
        serde_json::from_slice::<serde_json::Value>(&stored.body)
            .ok()
            .and_then(|user| user["login"].as_str().map(str::to_string))
            .filter(|login| valid_login(login))
            .map(|login| Lookup::Found(Identity { login }))
            .unwrap_or(Lookup::Never)
    } else if hit {
        // Until the limit passes, the token is its own identity, whose buckets `learn`
        // freezes below: its requests wait or get arbiter's 429 — they do not each ask
        // GitHub again while it refuses.
        let reset = limits
            .primary
            .reset_at
            .filter(|_| limits.primary.hit)
            .map(|at| Duration::from_millis(at.saturating_sub(crate::upstream::now_millis()).max(0) as u64));
        let retry = limits.secondary.as_ref().and_then(|s| s.retry_after);
        Lookup::Limited(
            reset
                .into_iter()
                .chain(retry)
                .max()
                .unwrap_or(crate::upstream::SECONDARY_DEFAULT),
        )
    } else if status.is_server_error() {
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
    fn a_token_is_one_credential_whatever_its_scheme() {
        let hash = |value: &'static str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::AUTHORIZATION, HeaderValue::from_static(value));
            Credential::from_headers(&headers).unwrap().hash
        };
        assert_eq!(hash("token ghp_abc"), hash("Bearer ghp_abc"));
        assert_eq!(hash("token ghp_abc"), hash("bearer  ghp_abc"));
        assert_ne!(hash("token ghp_abc"), hash("token ghp_abd"));
        assert_ne!(hash("token ghp_abc"), hash("Basic ghp_abc"), "another scheme");
        assert_ne!(hash("Basic ghp_abc"), hash("basic ghp_abc"), "kept whole");
        let bytes = |value: &[u8]| {
            let mut headers = HeaderMap::new();
            headers.insert(header::AUTHORIZATION, HeaderValue::from_bytes(value).unwrap());
            Credential::from_headers(&headers).unwrap().hash
        };
        assert_ne!(
            bytes(b"token \xfe\xff"),
            bytes(b"token \xff\xfe"),
            "bytes past ASCII are the token's own"
        );
    }

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
