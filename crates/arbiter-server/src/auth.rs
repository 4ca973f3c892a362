//! Who a request comes from: the bearer token of every request under `/v1` (and `/mcp`),
//! checked against the store on every request (so a revoked token fails at once), turned
//! into a [`Principal`] that handlers ask before calling an operation.
//!
//! The middleware [`authenticate`] puts the `Principal` into the request's extensions;
//! the extractor [`Caller`] takes it out, and its `check` refuses with 403. Every refusal,
//! 401 here or 403 in a handler, is audited here (`arbiter token audit`) and logged with
//! `tracing::warn!` — the method, path, namespace, token name and what was missing, never
//! the secret. Refusals without a recognised token are recorded up to 20 a second; the
//! ones over that are counted and the next one recorded says how many were not (a flood
//! from anyone who can reach the port must not become store writes). With `--insecure-no-auth` every request is [`Principal::local`].

use arbiter_core::name::Namespace;
use arbiter_core::token::{Access, Primitive, Principal};
use arbiter_core::{Error, ErrorKind};
use arbiter_ops::token::AuditEntry;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::state::AppState;
use crate::status::{ApiError, Refused};

/// How requests are authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    /// Every request needs a live bearer token.
    Tokens,
    /// `--insecure-no-auth`: every request is [`Principal::local`].
    Insecure,
}

/// Middleware: authenticates the request and records its [`Principal`]; a request without
/// a valid token is answered 401 here, before any handler runs. Audits every refusal.
pub async fn authenticate(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let method = request.method().to_string();
    let path = request.uri().path().to_string();
    let principal = match state.auth {
        Auth::Insecure => Principal::local(),
        Auth::Tokens => match bearer(&request) {
            Ok(secret) => match arbiter_ops::token::authenticate(&state.store, secret).await {
                Ok(principal) => principal,
                Err(error) => return refuse(&state, None, &method, &path, ApiError::from(error)).await,
            },
            Err(error) => return refuse(&state, None, &method, &path, error).await,
        },
    };
    let name = principal.name.clone();
    request.extensions_mut().insert(principal);
    let response = next.run(request).await;
    if let Some(Refused(message)) = response.extensions().get::<Refused>() {
        audit(
            &state,
            Some(name),
            &method,
            &path,
            message.clone(),
            response.status().as_u16(),
        )
        .await;
    }
    response
}

/// The secret of `Authorization: Bearer <secret>`.
fn bearer(request: &Request) -> Result<&str, ApiError> {
    let unauthorized = |message: &str| ApiError::from(Error::new(ErrorKind::Unauthorized, message));
    let header = request
        .headers()
        .get(AUTHORIZATION)
        .ok_or_else(|| unauthorized("no token: send `Authorization: Bearer <token>` (see `arbiter token create`)"))?;
    let text = header
        .to_str()
        .map_err(|_| unauthorized("the Authorization header is not text: expected `Bearer <token>`"))?;
    let (scheme, secret) = text
        .split_once(' ')
        .ok_or_else(|| unauthorized("the Authorization header is not `Bearer <token>`"))?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(unauthorized("the Authorization header is not `Bearer <token>`"));
    }
    Ok(secret.trim())
}

async fn refuse(state: &AppState, token: Option<String>, method: &str, path: &str, error: ApiError) -> Response {
    let status = crate::status::status(error.error.kind).as_u16();
    // A store that cannot be read is not a refusal: 503, not audited.
    if matches!(error.error.kind, ErrorKind::Unauthorized | ErrorKind::Forbidden) {
        audit(state, token, method, path, error.error.message.clone(), status).await;
    }
    error.into_response()
}

/// Refusals without a recognised token written to the audit per second, at most. Anyone
/// who can reach the port can be refused without a token, and each refusal recorded is a store write: above this rate
/// a flood of bad requests would queue behind it the writes of the callers who hold
/// tokens. The refusals over it are counted, and the next one recorded says how many.
const AUDITED_PER_SECOND: u32 = 20;

/// The gate in front of the audit: [`AUDITED_PER_SECOND`], and the refusals it let by.
pub struct AuditGate {
    limiter: governor::DefaultDirectRateLimiter,
    unrecorded: std::sync::atomic::AtomicU64,
}

impl AuditGate {
    pub fn new() -> AuditGate {
        let rate = std::num::NonZeroU32::new(AUDITED_PER_SECOND).expect("the audit rate is positive");
        AuditGate {
            limiter: governor::RateLimiter::direct(governor::Quota::per_second(rate)),
            unrecorded: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Whether this refusal is recorded; if it is, how many before it were not.
    fn admit(&self) -> Option<u64> {
        use std::sync::atomic::Ordering;
        if self.limiter.check().is_ok() {
            Some(self.unrecorded.swap(0, Ordering::Relaxed))
        } else {
            self.unrecorded.fetch_add(1, Ordering::Relaxed);
            None
        }
    }
}

impl Default for AuditGate {
    fn default() -> Self {
        Self::new()
    }
}

/// Records a refusal in the store's audit and the log, within [`AUDITED_PER_SECOND`]. A
/// failure to record is logged; the refusal stands either way.
async fn audit(state: &AppState, token: Option<String>, method: &str, path: &str, missing: String, status: u16) {
    // Only refusals without a recognised token go through the gate: a token's holder can
    // write to the store anyway, so its refusals cost nothing an attacker lacks.
    let unrecorded = match token {
        Some(_) => 0,
        None => match state.audit_gate.admit() {
            Some(unrecorded) => unrecorded,
            None => return,
        },
    };
    let missing = if unrecorded > 0 {
        format!("{missing} (and {unrecorded} earlier refusals over {AUDITED_PER_SECOND}/s not recorded)")
    } else {
        missing
    };
    let namespace = path
        .strip_prefix("/v1/ns/")
        .and_then(|rest| rest.split('/').next())
        .map(|ns| ns.to_string());
    tracing::warn!(
        token = token.as_deref().unwrap_or(""),
        method,
        path,
        namespace = namespace.as_deref().unwrap_or(""),
        status,
        reason = %missing,
        "request refused"
    );
    let entry = AuditEntry {
        token,
        method: method.to_string(),
        path: path.to_string(),
        namespace,
        missing,
        status,
    };
    if let Err(e) = arbiter_ops::token::audit(&state.store, entry).await {
        tracing::warn!(error = %e, "cannot record a refusal in the audit");
    }
}

/// The authenticated caller of a request.
pub struct Caller(pub Principal);

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        parts
            .extensions
            .get::<Principal>()
            .cloned()
            .map(Caller)
            .ok_or_else(|| Error::internal("a route outside the authentication layer asked for its caller").into())
    }
}

impl Caller {
    /// Allows `access` to `primitive` in `namespace`, or refuses with 403.
    pub fn check(&self, namespace: &Namespace, primitive: Primitive, access: Access) -> Result<(), ApiError> {
        Ok(self.0.check(namespace, primitive, access)?)
    }

    /// Allows an `admin` route, or refuses with 403.
    pub fn check_admin(&self) -> Result<(), ApiError> {
        Ok(self.0.check_admin()?)
    }
}
