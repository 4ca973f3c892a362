//! Who a request comes from: the bearer token of every request under `/v1` (and `/mcp`),
//! checked against the store on every request (so a revoked token fails at once), turned
//! into a [`Principal`] that handlers ask before calling an operation.
//!
//! The middleware [`authenticate`] puts the `Principal` into the request's extensions;
//! the extractor [`Caller`] takes it out. With `--insecure-no-auth` every request is
//! [`Principal::local`].

use arbiter_core::name::Namespace;
use arbiter_core::token::{Access, Primitive, Principal};
use arbiter_core::{Error, ErrorKind};
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::state::AppState;
use crate::status::ApiError;

/// How requests are authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    /// Every request needs a live bearer token.
    Tokens,
    /// `--insecure-no-auth`: every request is [`Principal::local`].
    Insecure,
}

/// Middleware: authenticates the request and records its [`Principal`]; a request without
/// a valid token is answered 401 here, before any handler runs.
pub async fn authenticate(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let principal = match state.auth {
        Auth::Insecure => Principal::local(),
        Auth::Tokens => {
            return ApiError::from(Error::new(
                ErrorKind::Unauthorized,
                "this server has no token store yet: start it with --insecure-no-auth",
            ))
            .into_response();
        }
    };
    request.extensions_mut().insert(principal);
    next.run(request).await
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
