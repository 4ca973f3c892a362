//! Request extractors whose failures are the API's own 400 `bad_input`, naming the field.
//!
//! axum's `Json`, `Query` and `Path` answer a bad request with a plain-text body of their
//! own; these answer with [`ErrorBody`](crate::wire::ErrorBody) like every other failure,
//! with `field` set to the body field, query parameter or path segment that was wrong.
//! Path parameters are parsed by the core's name parsers (the CLI's), so a name the CLI
//! refuses is refused here with the same message.

use std::collections::HashMap;
use std::marker::PhantomData;
use std::str::FromStr;

use arbiter_core::ParseError;
use arbiter_core::name::Namespace;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::status::ApiError;

/// A JSON body of type `T`, read but not yet parsed: a handler checks the caller's scope
/// first, so a token that may not call a route learns nothing from its body's errors.
pub struct Body<T>(Bytes, PhantomData<T>);

impl<S: Send + Sync, T> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|e| ApiError::bad_field("body", format!("cannot read the request body: {e}")))?;
        Ok(Body(bytes, PhantomData))
    }
}

impl<T: DeserializeOwned> Body<T> {
    /// The body as a `T`; a failure names the field.
    pub fn parse(self) -> Result<T, ApiError> {
        // serde's derived structs also take an array of their fields in order (`[null,
        // null]`); every body of this API is an object, and only an object is accepted.
        if self.0.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Err(ApiError::bad_field("body", "invalid JSON body: expected a JSON object"));
        }
        let mut deserializer = serde_json::Deserializer::from_slice(&self.0);
        let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
            let (field, message) = describe(e.path(), &e.inner().to_string());
            ApiError::bad_field(
                field.unwrap_or_else(|| "body".to_string()),
                format!("invalid JSON body: {message}"),
            )
        })?;
        deserializer
            .end()
            .map_err(|e| ApiError::bad_field("body", format!("invalid JSON body: {e}")))?;
        Ok(value)
    }
}

/// A query string of type `T` (absent: every parameter absent).
pub struct Query<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let query = parts.uri.query().unwrap_or_default();
        let deserializer = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        let value = serde_path_to_error::deserialize(deserializer).map_err(|e| {
            let (field, message) = describe(e.path(), &e.inner().to_string());
            ApiError::bad_field(
                field.unwrap_or_else(|| "query".to_string()),
                format!("invalid query: {message}"),
            )
        })?;
        Ok(Query(value))
    }
}

/// Which field a deserialisation error is about, and its message: the path where it
/// happened (an unknown field's path ends with it), and for a missing field the field the
/// message names, under that path.
fn describe(path: &serde_path_to_error::Path, message: &str) -> (Option<String>, String) {
    let missing = message
        .strip_prefix("missing field `")
        .and_then(|rest| Some(rest[..rest.find('`')?].to_string()));
    let at = path.to_string();
    let field = match (at.as_str(), missing) {
        // `?`: a syntax error, before any field was reached.
        (".", missing) => missing,
        (at, _) if at.contains('?') => None,
        (at, Some(missing)) => Some(format!("{at}.{missing}")),
        (at, None) => Some(at.to_string()),
    };
    (field, message.to_string())
}

/// The path parameters of a route (`{ns}`, `{name}`, …), percent-decoded: a lease name or
/// key holding `/` is sent as one segment with `%2F`.
pub struct Params(HashMap<String, String>);

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let axum::extract::Path(map) = axum::extract::Path::<HashMap<String, String>>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::bad_field("path", format!("invalid path: {}", e.body_text())))?;
        Ok(Params(map))
    }
}

impl Params {
    /// The parameter `field`, parsed by `T`'s own parser.
    pub fn get<T: FromStr<Err = ParseError>>(&self, field: &str) -> Result<T, ApiError> {
        let text = self
            .0
            .get(field)
            .ok_or_else(|| ApiError::from(arbiter_core::Error::internal(format!("route has no {{{field}}}"))))?;
        text.parse()
            .map_err(|e: ParseError| ApiError::bad_field(field, e.message))
    }

    /// The namespace of a `/v1/ns/{ns}/…` route.
    pub fn ns(&self) -> Result<Namespace, ApiError> {
        self.get("ns")
    }
}

/// Parses an optional text parameter with a core parser, naming `field` when it is bad.
pub fn parse_field<T: FromStr<Err = ParseError>>(field: &str, text: &str) -> Result<T, ApiError> {
    text.parse()
        .map_err(|e: ParseError| ApiError::bad_field(field, e.message))
}

/// Maps a core check's failure to a bad `field`.
pub fn check_field<T>(field: &str, result: Result<T, ParseError>) -> Result<T, ApiError> {
    result.map_err(|e| ApiError::bad_field(field, e.message))
}
