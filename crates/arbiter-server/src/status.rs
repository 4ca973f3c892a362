//! The one place an [`ErrorKind`] becomes an HTTP status, and the error body every non-2xx
//! answer under `/v1` carries.
//!
//! A handler never picks a status: it returns an [`ApiError`] (an operation's
//! `arbiter_core::Error`, plus the name of the bad field or parameter when the server
//! knows it) and this module answers with the status of its kind and a body
//! [`ErrorBody`] with the kind's stable code — the same code the CLI prints with `--json`.

use arbiter_core::{Detail, Error, ErrorKind};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::wire::ErrorBody;

/// The HTTP status of each kind of failure.
pub fn status(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::BadInput => StatusCode::BAD_REQUEST,
        ErrorKind::Unauthorized => StatusCode::UNAUTHORIZED,
        ErrorKind::Forbidden => StatusCode::FORBIDDEN,
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::Held | ErrorKind::Conflict | ErrorKind::Lost => StatusCode::CONFLICT,
        ErrorKind::Limited => StatusCode::TOO_MANY_REQUESTS,
        ErrorKind::Failed => StatusCode::BAD_GATEWAY,
        ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        // Internal, and any kind added later until it is given its own status.
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// A failed request: the operation's error and, for bad input, which field or parameter
/// was wrong.
#[derive(Debug)]
pub struct ApiError {
    pub error: Error,
    pub field: Option<String>,
}

impl ApiError {
    /// Bad input in `field` (a body field, a query or path parameter).
    pub fn bad_field(field: impl Into<String>, message: impl Into<String>) -> ApiError {
        ApiError {
            error: Error::bad_input(message),
            field: Some(field.into()),
        }
    }

    /// The body this error is answered with.
    pub fn body(&self) -> ErrorBody {
        let detail = self
            .error
            .detail
            .as_deref()
            .and_then(|detail| serde_json::to_value(detail).ok());
        let wait_ms = match self.error.detail.as_deref() {
            Some(Detail::Limited { wait_ms }) => Some(*wait_ms),
            _ => None,
        };
        ErrorBody {
            error: self.error.kind.code().to_string(),
            message: self.error.message.clone(),
            detail,
            wait_ms,
            field: self.field.clone(),
        }
    }
}

impl From<Error> for ApiError {
    fn from(error: Error) -> Self {
        ApiError { error, field: None }
    }
}

/// Marks a 403 answer for the authentication layer, which audits it: why it was refused.
#[derive(Debug, Clone)]
pub struct Refused(pub String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let kind = self.error.kind;
        let body = self.body();
        if kind == ErrorKind::Internal {
            tracing::error!(message = %self.error.message, "internal error");
        }
        let mut response = (status(kind), axum::Json(&body)).into_response();
        if kind == ErrorKind::Forbidden {
            response.extensions_mut().insert(Refused(self.error.message.clone()));
        }
        let headers = response.headers_mut();
        match kind {
            ErrorKind::Unauthorized => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            ErrorKind::Limited => {
                // Whole seconds, rounded up: a client that waits this long is not early.
                let seconds = body.wait_ms.unwrap_or(0).div_ceil(1000).max(1);
                headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
            }
            _ => {}
        }
        response
    }
}

/// A long poll or stream cut short because the server is shutting down.
pub fn shutting_down() -> ApiError {
    Error::unavailable("the server is shutting down").into()
}

/// What a handler returns.
pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_its_status() {
        let cases = [
            (ErrorKind::BadInput, 400),
            (ErrorKind::Unauthorized, 401),
            (ErrorKind::Forbidden, 403),
            (ErrorKind::NotFound, 404),
            (ErrorKind::Held, 409),
            (ErrorKind::Conflict, 409),
            (ErrorKind::Lost, 409),
            (ErrorKind::Limited, 429),
            (ErrorKind::Failed, 502),
            (ErrorKind::Unavailable, 503),
            (ErrorKind::Internal, 500),
        ];
        for (kind, code) in cases {
            assert_eq!(status(kind).as_u16(), code, "{kind:?}");
        }
    }

    #[test]
    fn limited_answers_retry_after_in_whole_seconds_rounded_up() {
        let error = Error::new(ErrorKind::Limited, "slow down").with_detail(Detail::Limited { wait_ms: 1200 });
        let response = ApiError::from(error).into_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[header::RETRY_AFTER], "2");
    }

    #[test]
    fn unauthorized_asks_for_a_bearer_token() {
        let response = ApiError::from(Error::new(ErrorKind::Unauthorized, "no token")).into_response();
        assert_eq!(response.headers()[header::WWW_AUTHENTICATE], "Bearer");
    }
}
