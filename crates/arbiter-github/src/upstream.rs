//! The upstream: where requests go, which hosts a request may name, which headers cross the
//! proxy, and what a response says about the limits.

use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arbiter_core::{Error, Result};
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};

use crate::budget::Observation;

/// GitHub's API host: always allowed as a request's `Host`, whatever the upstream is.
pub const API_HOST: &str = "api.github.com";

/// The upstream's base URL, split once.
#[derive(Debug, Clone)]
pub struct Upstream {
    /// `scheme://host[:port]` plus any path prefix, without a trailing `/`.
    pub base: String,
    /// The host name (lowercase, no port, no brackets).
    pub host: String,
}

impl Upstream {
    pub fn parse(text: &str) -> Result<Upstream> {
        let bad = |why: &str| {
            Error::bad_input(format!(
                "--upstream {}: {why}; expected an http or https URL like {}",
                arbiter_core::redact::url(text),
                crate::DEFAULT_UPSTREAM
            ))
        };
        let url = reqwest::Url::parse(text).map_err(|e| bad(&e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(bad("the scheme is not http or https"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(bad(
                "it carries a user name or password (tokens come from each request)",
            ));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(bad("it has a query or fragment"));
        }
        let host = url
            .host_str()
            .ok_or_else(|| bad("it names no host"))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase();
        let base = url.as_str().trim_end_matches('/').to_string();
        Ok(Upstream { base, host })
    }

    /// Whether a request naming `host` (from `Host` or an absolute URI; port ignored) is one
    /// this proxy serves: GitHub's API host, the upstream's host, or loopback. Anything else
    /// is refused, so the proxy is never an open proxy.
    pub fn allows(&self, host: &str) -> bool {
        let host = strip_port(host).to_ascii_lowercase();
        host == API_HOST
            || host == self.host
            || host == "localhost"
            || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
    }
}

/// `host:port`, `[::1]:port`, `[::1]` or `host` → the host alone.
fn strip_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.rsplit_once(':') {
        // One colon: host:port. More: a bare IPv6 address.
        Some((name, port)) if !name.contains(':') && port.chars().all(|c| c.is_ascii_digit()) => name,
        _ => host,
    }
}

const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// `headers` without hop-by-hop headers (the fixed list and those `Connection` names).
pub fn end_to_end(headers: &HeaderMap) -> HeaderMap {
    let listed: Vec<String> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|name| name.trim().to_ascii_lowercase())
        .filter(|name| !name.is_empty())
        .collect();
    let mut out = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        if HOP_BY_HOP.contains(name) || listed.iter().any(|l| l == name.as_str()) {
            continue;
        }
        out.append(name.clone(), value.clone());
    }
    out
}

/// The headers a client's request is forwarded with: end to end, without `Host` (the
/// upstream's), the body's length (recomputed), arbiter's own `x-arbiter-*` and the
/// client's encodings (the proxy reads bodies: it asks for them unencoded).
pub fn request_headers(client: &HeaderMap) -> HeaderMap {
    let mut headers = end_to_end(client);
    headers.remove(header::HOST);
    headers.remove(header::CONTENT_LENGTH);
    headers.remove(header::ACCEPT_ENCODING);
    let arbiter: Vec<HeaderName> = headers
        .keys()
        .filter(|name| name.as_str().starts_with("x-arbiter-"))
        .cloned()
        .collect();
    for name in arbiter {
        headers.remove(name);
    }
    headers.insert(header::ACCEPT_ENCODING, HeaderValue::from_static("identity"));
    headers
}

/// A response as the proxy keeps and answers it.
#[derive(Debug, Clone)]
pub struct Stored {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// It came from the upstream (not an answer arbiter made).
    pub upstream: bool,
}

impl Stored {
    /// An answer from arbiter itself: JSON `{"message": …}` plus `fields`.
    pub fn local(status: StatusCode, message: &str, fields: serde_json::Value) -> Stored {
        let mut body = serde_json::json!({ "message": message });
        if let (Some(body), serde_json::Value::Object(fields)) = (body.as_object_mut(), fields) {
            body.extend(fields);
        }
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert("x-arbiter", HeaderValue::from_static("proxy"));
        Stored {
            status,
            headers,
            body: Bytes::from(body.to_string()),
            upstream: false,
        }
    }

    pub fn header(&self, name: impl http::header::AsHeaderName) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

fn number<T: std::str::FromStr>(headers: &HeaderMap, name: &str) -> Option<T> {
    headers.get(name)?.to_str().ok()?.trim().parse().ok()
}

pub fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// How long a secondary limit without a usable `retry-after` is waited out (GitHub: at
/// least a minute).
pub const SECONDARY_DEFAULT: Duration = Duration::from_secs(60);

/// What a response tells about the limits.
#[derive(Debug, Clone, Default)]
pub struct Limits {
    /// The primary budget the call was counted in (`x-ratelimit-resource`), if said.
    pub resource: Option<String>,
    /// The primary budget's state, `hit` when it refused the call.
    pub primary: Observation,
    /// A secondary limit refused the call (waiting `retry_after`).
    pub secondary: Option<Observation>,
}

/// Reads the rate-limit headers, and whether the call was refused by a primary limit (a
/// 403/429 with `x-ratelimit-remaining: 0`, or a GraphQL `RATE_LIMITED` error) or a
/// secondary one (a 403/429 with `retry-after`, or saying "secondary rate limit" or, in
/// GitHub's older words, "abuse detection"; a blank
/// `retry-after` means at least a minute).
pub fn limits(stored: &Stored, graphql: bool) -> Limits {
    let headers = &stored.headers;
    let remaining: Option<u64> = number(headers, "x-ratelimit-remaining");
    let reset_at = number::<i64>(headers, "x-ratelimit-reset").map(|s| s.saturating_mul(1000));
    let retry_header = headers.get(header::RETRY_AFTER).and_then(|v| v.to_str().ok());
    let retry_after = retry_header
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let refused = matches!(stored.status.as_u16(), 403 | 429);
    let mut primary_hit = refused && remaining == Some(0);
    if graphql && stored.status == StatusCode::OK && !primary_hit {
        primary_hit = graphql_rate_limited(&stored.body);
    }
    let secondary_hit = refused
        && !primary_hit
        && (retry_header.is_some()
            || contains_ignore_case(&stored.body, b"secondary rate limit")
            || contains_ignore_case(&stored.body, b"abuse detection"));
    let primary = Observation {
        limit: number(headers, "x-ratelimit-limit"),
        remaining,
        reset_at: reset_at.or(if primary_hit {
            Some(now_millis() + SECONDARY_DEFAULT.as_millis() as i64)
        } else {
            None
        }),
        retry_after: None,
        hit: primary_hit,
    };
    let secondary = secondary_hit.then(|| Observation {
        retry_after: Some(retry_after.unwrap_or(SECONDARY_DEFAULT).max(Duration::from_secs(1))),
        hit: true,
        ..Observation::default()
    });
    Limits {
        resource: headers
            .get("x-ratelimit-resource")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
        primary,
        secondary,
    }
}

fn graphql_rate_limited(body: &[u8]) -> bool {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) else {
        return false;
    };
    value["errors"]
        .as_array()
        .is_some_and(|errors| errors.iter().any(|e| e["type"] == "RATE_LIMITED"))
}

fn contains_ignore_case(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w.eq_ignore_ascii_case(needle))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts() {
        let up = Upstream::parse("http://127.0.0.1:9999/api/v3/").unwrap();
        assert_eq!(up.base, "http://127.0.0.1:9999/api/v3");
        for ok in [
            "api.github.com",
            "API.GitHub.com:443",
            "localhost:80",
            "127.0.0.1:9999",
            "[::1]:1",
            "::1",
        ] {
            assert!(up.allows(ok), "{ok}");
        }
        for bad in ["example.com", "evil.api.github.com", "10.0.0.1:80", "github.com"] {
            assert!(!up.allows(bad), "{bad}");
        }
        assert!(
            Upstream::parse("ftp://x")
                .unwrap_err()
                .message
                .starts_with("--upstream")
        );
        assert!(Upstream::parse("https://u:p@x").is_err());
    }

    #[test]
    fn hop_by_hop_headers_stay() {
        let mut h = HeaderMap::new();
        h.insert("connection", HeaderValue::from_static("keep-alive, x-private"));
        h.insert("x-private", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("authorization", HeaderValue::from_static("token t"));
        h.insert("host", HeaderValue::from_static("api.github.com"));
        h.insert("x-arbiter-max-wait", HeaderValue::from_static("1s"));
        let out = request_headers(&h);
        let names: Vec<&str> = out.keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["authorization", "accept-encoding"]);
    }

    #[test]
    fn limits_from_headers() {
        let mut s = Stored::local(StatusCode::FORBIDDEN, "x", serde_json::json!({}));
        s.headers.insert("x-ratelimit-remaining", HeaderValue::from_static("0"));
        s.headers
            .insert("x-ratelimit-reset", HeaderValue::from_static("2000000000"));
        let l = limits(&s, false);
        assert!(l.primary.hit && l.secondary.is_none());
        assert_eq!(l.primary.reset_at, Some(2_000_000_000_000));
        let mut s = Stored::local(
            StatusCode::FORBIDDEN,
            "You have exceeded a secondary rate limit",
            serde_json::json!({}),
        );
        s.headers
            .insert("x-ratelimit-remaining", HeaderValue::from_static("10"));
        let l = limits(&s, false);
        assert!(!l.primary.hit);
        assert_eq!(l.secondary.unwrap().retry_after, Some(SECONDARY_DEFAULT));
        let mut s = Stored::local(
            StatusCode::OK,
            "",
            serde_json::json!({"errors": [{"type": "RATE_LIMITED"}]}),
        );
        s.headers.insert("x-ratelimit-remaining", HeaderValue::from_static("0"));
        assert!(limits(&s, true).primary.hit);
    }
}
