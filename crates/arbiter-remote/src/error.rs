//! A server's answer back into an [`Error`]: the error body's code is the kind the server
//! had, its message and detail are the operation's own, so the CLI prints (and exits with)
//! exactly what it would have against the store. A server that cannot be reached, or that
//! answers something that is not arbiter's error body (a proxy's page), is `Unavailable`
//! naming the server's URL — never the token, which travels in a header only.

use arbiter_core::{Detail, Error, ErrorKind};
use arbiter_server::wire::ErrorBody;
use reqwest::StatusCode;

/// The error an answer with a non-2xx `status` and `body` stands for.
pub(crate) fn from_answer(status: StatusCode, body: &[u8], shown: &str) -> Error {
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(body) => from_body(body),
        Err(_) => Error::new(
            kind_of_status(status),
            format!("the server at {shown} answered {status} without arbiter's error body"),
        ),
    }
}

/// An error body (an answer's, or an event stream's `event: error`) as the error it reports.
pub(crate) fn from_body(body: ErrorBody) -> Error {
    let mut error = match ErrorKind::from_code(&body.error) {
        Some(kind) => Error::new(kind, body.message),
        None => Error::internal(format!(
            "{} (the server's error code {:?} is unknown to this client)",
            body.message, body.error
        )),
    };
    let detail = body
        .detail
        .and_then(|detail| serde_json::from_value::<Detail>(detail).ok())
        .or(body.wait_ms.map(|wait_ms| Detail::Limited { wait_ms }));
    if let Some(detail) = detail {
        error = error.with_detail(detail);
    }
    error
}

/// What an answer without arbiter's body (from something between client and server) most
/// likely means: a gateway's 502/503/504 is a server that cannot be reached.
fn kind_of_status(status: StatusCode) -> ErrorKind {
    match status.as_u16() {
        400 => ErrorKind::BadInput,
        401 => ErrorKind::Unauthorized,
        403 => ErrorKind::Forbidden,
        404 => ErrorKind::NotFound,
        409 => ErrorKind::Conflict,
        429 => ErrorKind::Limited,
        502..=504 => ErrorKind::Unavailable,
        _ => ErrorKind::Internal,
    }
}

/// A request that got no answer: the server is down, unreachable, or too slow.
pub(crate) fn transport(error: &reqwest::Error, shown: &str) -> Error {
    if error.is_timeout() {
        return Error::unavailable(format!("the server at {shown} did not answer in time"));
    }
    // reqwest's own text names the request's URL; the innermost cause says what went wrong
    // (`Connection refused (os error 111)`) without it.
    let mut cause: &dyn std::error::Error = error;
    while let Some(source) = cause.source() {
        cause = source;
    }
    Error::unavailable(format!("cannot reach the server at {shown}: {cause}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_body_keeps_kind_message_and_detail() {
        let body =
            br#"{"error":"conflict","message":"version is 3, not 2","detail":{"conflict":{"current_version":3}}}"#;
        let error = from_answer(StatusCode::CONFLICT, body, "http://h:1");
        assert_eq!(error.kind, ErrorKind::Conflict);
        assert_eq!(error.message, "version is 3, not 2");
        assert_eq!(error.detail.as_deref(), Some(&Detail::Conflict { current_version: 3 }));
    }

    #[test]
    fn a_limited_body_keeps_its_wait() {
        let body = br#"{"error":"limited","message":"not granted","wait_ms":2500}"#;
        let error = from_answer(StatusCode::TOO_MANY_REQUESTS, body, "http://h:1");
        assert_eq!(error.kind, ErrorKind::Limited);
        assert_eq!(error.detail.as_deref(), Some(&Detail::Limited { wait_ms: 2500 }));
    }

    #[test]
    fn a_foreign_answer_is_named_by_its_status() {
        let error = from_answer(StatusCode::BAD_GATEWAY, b"<html>bad gateway</html>", "http://h:1");
        assert_eq!(error.kind, ErrorKind::Unavailable);
        assert!(error.message.contains("http://h:1"), "{}", error.message);
        let error = from_answer(StatusCode::IM_A_TEAPOT, b"", "http://h:1");
        assert_eq!(error.kind, ErrorKind::Internal);
    }

    #[test]
    fn an_unknown_code_is_internal_and_says_so() {
        let error = from_body(ErrorBody {
            error: "teapot".into(),
            message: "short and stout".into(),
            detail: None,
            wait_ms: None,
            field: None,
        });
        assert_eq!(error.kind, ErrorKind::Internal);
        assert!(error.message.contains("teapot"), "{}", error.message);
    }
}
