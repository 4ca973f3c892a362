//! One request, end to end: the host check, the identity, then one of three paths —
//! a REST GET (cached per credential, revalidated, coalesced), a GraphQL request (a query
//! answered from the freshness window or coalesced; a mutation forwarded and invalidating),
//! or any other request (forwarded; a successful write invalidates) — each spending from
//! the identity's buckets before it is forwarded and correcting them from the answer.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arbiter_core::limit::Priority;
use arbiter_core::name::LoopName;
use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use bytes::Bytes;
use http::request::Parts;
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use serde_json::json;

use crate::Shared;
use crate::budget::Denied;
use crate::cache::{self, CacheKey, Entry};
use crate::counters::{Counts, InFlight};
use crate::flight::{self, Role};
use crate::graphql;
use crate::identity::{Credential, Identity};
use crate::upstream::{self, Limits, Stored};

/// The largest request body the proxy reads (GitHub's own limit is lower).
const MAX_BODY: usize = 64 << 20;
/// The header a client may shorten its wait for budget with (`10s`, `0s`); never forwarded.
pub const MAX_WAIT_HEADER: &str = "x-arbiter-max-wait";
/// The header a client may set its priority with (`interactive`, `normal` — the default —,
/// `background`): interactive calls may spend the reserve others leave; never forwarded.
pub const PRIORITY_HEADER: &str = "x-arbiter-priority";

pub fn router(shared: Arc<Shared>, tag: Option<LoopName>) -> axum::Router {
    axum::Router::new().fallback(move |request: Request| {
        let shared = shared.clone();
        let tag = tag.clone();
        async move { handle(shared, tag, request).await }
    })
}

struct Ctx<'a> {
    shared: &'a Shared,
    credential: Option<Credential>,
    identity: Identity,
    counts: Arc<Counts>,
    max_wait: Duration,
    priority: Priority,
}

async fn handle(shared: Arc<Shared>, tag: Option<LoopName>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    if !target_allowed(&shared, &parts) {
        return respond(&Stored::local(
            StatusCode::FORBIDDEN,
            &format!(
                "arbiter's GitHub proxy serves only the GitHub API ({}, {}); it forwards nowhere else",
                upstream::API_HOST,
                shared.upstream.host
            ),
            json!({ "error": "host_refused" }),
        ));
    }
    if parts.method == Method::CONNECT {
        return respond(&Stored::local(
            StatusCode::METHOD_NOT_ALLOWED,
            "arbiter's GitHub proxy does not tunnel (CONNECT); send API requests to it directly",
            json!({ "error": "bad_input" }),
        ));
    }
    let priority = match parts.headers.get(PRIORITY_HEADER) {
        None => Priority::Normal,
        Some(value) => match Priority::parse(value.to_str().unwrap_or_default().trim()) {
            Ok(priority) => priority,
            Err(e) => {
                return respond(&Stored::local(
                    StatusCode::BAD_REQUEST,
                    &format!("header {PRIORITY_HEADER}: {}", e.message),
                    json!({ "error": "bad_input" }),
                ));
            }
        },
    };
    let max_wait = match request_max_wait(&shared, &parts.headers) {
        Ok(wait) => wait,
        Err(message) => {
            return respond(&Stored::local(
                StatusCode::BAD_REQUEST,
                &message,
                json!({ "error": "bad_input" }),
            ));
        }
    };
    let Ok(body) = axum::body::to_bytes(body, MAX_BODY).await else {
        return respond(&Stored::local(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!(
                "arbiter's GitHub proxy reads request bodies up to {} MiB",
                MAX_BODY >> 20
            ),
            json!({ "error": "bad_input" }),
        ));
    };
    let credential = Credential::from_headers(&parts.headers);
    let (identity, asked) = shared.identities.resolve(&shared, credential.as_ref()).await;
    let counts = shared.counters.scope(&identity.login, tag.as_ref());
    if asked {
        Counts::add(&counts.upstream_calls, 1); // GET /user, once per token
    }
    let _in_flight = InFlight::new(counts.clone());
    let ctx = Ctx {
        shared: &shared,
        credential,
        identity,
        counts,
        max_wait,
        priority,
    };
    if parts.uri.path() == "/graphql" && parts.method == Method::POST {
        respond(&*graphql(&ctx, &parts, body).await)
    } else if parts.method == Method::GET {
        let stored = rest_get(&ctx, &parts).await;
        match not_modified_for_client(&stored, &parts.headers) {
            Some(answer) => answer,
            None => respond(&stored),
        }
    } else {
        respond(&*other(&ctx, &parts, body).await)
    }
}

/// The host a request names (absolute URI and `Host`) must be one the proxy serves.
fn target_allowed(shared: &Shared, parts: &Parts) -> bool {
    let by_uri = parts.uri.host().is_none_or(|host| shared.upstream.allows(host));
    let by_header = parts
        .headers
        .get_all(header::HOST)
        .iter()
        .all(|host| host.to_str().is_ok_and(|host| shared.upstream.allows(host)));
    by_uri && by_header
}

fn request_max_wait(shared: &Shared, headers: &HeaderMap) -> Result<Duration, String> {
    let Some(value) = headers.get(MAX_WAIT_HEADER) else {
        return Ok(shared.config.max_wait);
    };
    let text = value.to_str().unwrap_or_default().trim();
    let wait = arbiter_core::duration::parse_duration_or_zero(text)
        .map_err(|e| format!("header {MAX_WAIT_HEADER}: {}", e.message))?;
    Ok(wait.min(shared.config.max_wait))
}

fn respond(stored: &Stored) -> Response {
    let mut response = Response::new(Body::from(stored.body.clone()));
    *response.status_mut() = stored.status;
    let headers = response.headers_mut();
    for (name, value) in upstream::end_to_end(&stored.headers).iter() {
        if name != header::CONTENT_LENGTH {
            headers.append(name.clone(), value.clone());
        }
    }
    response
}

/// A client's own conditional request whose validator matches the answer gets a 304.
fn not_modified_for_client(stored: &Stored, client: &HeaderMap) -> Option<Response> {
    if stored.status != StatusCode::OK {
        return None;
    }
    let matches = if let Some(tags) = client.get(header::IF_NONE_MATCH) {
        let etag = stored.header(header::ETAG)?;
        let tags = tags.to_str().ok()?;
        tags.split(',')
            .map(|t| t.trim())
            .any(|t| t == "*" || weak(t) == weak(etag))
    } else if let Some(since) = client.get(header::IF_MODIFIED_SINCE) {
        stored.headers.get(header::LAST_MODIFIED) == Some(since)
    } else {
        false
    };
    if !matches {
        return None;
    }
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::NOT_MODIFIED;
    for (name, value) in upstream::end_to_end(&stored.headers).iter() {
        if name != header::CONTENT_LENGTH && name != header::CONTENT_TYPE {
            response.headers_mut().append(name.clone(), value.clone());
        }
    }
    Some(response)
}

fn weak(tag: &str) -> &str {
    tag.strip_prefix("W/").unwrap_or(tag)
}

/// The primary budget a REST path is counted in (the answer's `x-ratelimit-resource`
/// corrects a wrong guess).
fn primary_resource(path: &str) -> &'static str {
    if path == "/graphql" {
        "graphql"
    } else if path.starts_with("/search/code") {
        "code_search"
    } else if path.starts_with("/search/") {
        "search"
    } else {
        "core"
    }
}

/// The repository (`owner/name`, lowercase) a REST path is under.
fn repo_of(path: &str) -> Option<String> {
    let mut segments = path.trim_start_matches('/').split('/');
    match (segments.next(), segments.next(), segments.next()) {
        (Some("repos"), Some(owner), Some(name)) if !owner.is_empty() && !name.is_empty() => {
            Some(format!("{owner}/{name}").to_ascii_lowercase())
        }
        _ => None,
    }
}

fn path_and_query(parts: &Parts) -> &str {
    parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/")
}

fn header_bytes<'a>(headers: &'a HeaderMap, name: &str) -> &'a [u8] {
    headers.get(name).map(|v| v.as_bytes()).unwrap_or_default()
}

async fn rest_get(ctx: &Ctx<'_>, parts: &Parts) -> Arc<Stored> {
    let path_q = path_and_query(parts);
    let key = cache::key(
        "rest",
        ctx.credential.as_ref().map(|c| &c.hash),
        &[
            path_q.as_bytes(),
            header_bytes(&parts.headers, "accept"),
            header_bytes(&parts.headers, "x-github-api-version"),
        ],
    );
    let mut headers = upstream::request_headers(&parts.headers);
    // The proxy revalidates with its own validators and answers the client's itself.
    headers.remove(header::IF_NONE_MATCH);
    headers.remove(header::IF_MODIFIED_SINCE);
    coalesced(ctx, key, || {
        revalidate(ctx, key, parts.uri.path(), path_q, headers.clone())
    })
    .await
}

/// The one upstream call of `key` at a time: the first caller leads, the others wait for
/// its answer (and lead themselves if it went away without one, or answered itself).
async fn coalesced<F, Fut>(ctx: &Ctx<'_>, key: CacheKey, lead: F) -> Arc<Stored>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<Stored>>,
{
    for _ in 0..3 {
        match ctx.shared.flights.join(key) {
            Role::Leader(leader) => {
                let answer = lead().await;
                leader.answer(answer.clone());
                return answer;
            }
            Role::Follower(rx) => {
                // An answer of arbiter's own (the leader's wait for budget ran out, the
                // upstream was unreachable) is the leader's: a follower tries itself.
                if let Some(answer) = flight::follow(rx).await.filter(|a| a.upstream) {
                    Counts::add(&ctx.counts.coalesced, 1);
                    return answer;
                }
            }
        }
    }
    lead().await
}

/// A GET through the cache: with a cached answer, asks with its validator (a 304 is free
/// and answered from the cache); keeps a 200 that can be revalidated.
async fn revalidate(ctx: &Ctx<'_>, key: CacheKey, path: &str, path_q: &str, mut headers: HeaderMap) -> Arc<Stored> {
    let entry = ctx.shared.cache.lock().expect("cache").get(&key);
    let validator = entry.as_ref().and_then(|entry| {
        let headers = &entry.stored.headers;
        headers
            .get(header::ETAG)
            .map(|v| (header::IF_NONE_MATCH, v.clone()))
            .or_else(|| {
                headers
                    .get(header::LAST_MODIFIED)
                    .map(|v| (header::IF_MODIFIED_SINCE, v.clone()))
            })
    });
    let revalidating = validator.is_some();
    if let Some((name, value)) = validator {
        headers.insert(name, value);
    }
    let primary = primary_resource(path);
    // A revalidation is charged its primary cost only if it is not answered 304.
    let spend = [(primary, u64::from(!revalidating)), ("points", 1)];
    let stored = forward(ctx, Method::GET, path_q, headers, Bytes::new(), &spend, false).await;
    if !stored.upstream {
        return stored;
    }
    if let (StatusCode::NOT_MODIFIED, Some(entry)) = (stored.status, &entry) {
        Counts::add(&ctx.counts.not_modified, 1);
        let mut fresh = (*entry.stored).clone();
        for (name, value) in stored.headers.iter() {
            if name.as_str().starts_with("x-ratelimit-") || name == header::DATE {
                fresh.headers.insert(name.clone(), value.clone());
            }
        }
        let fresh = Arc::new(fresh);
        let entry = Entry {
            stored: fresh.clone(),
            at: Instant::now(),
            ..entry.clone()
        };
        ctx.shared.cache.lock().expect("cache").insert(key, entry);
        return fresh;
    }
    if revalidating {
        // Not a 304: it did cost the primary budget after all.
        let _ = ctx
            .shared
            .budget
            .spend(&ctx.identity.login, &[(primary, 1)], ctx.priority, Duration::ZERO)
            .await;
    }
    let mut cache = ctx.shared.cache.lock().expect("cache");
    if stored.status == StatusCode::OK && revalidatable(&stored) {
        cache.insert(
            key,
            Entry {
                stored: stored.clone(),
                at: Instant::now(),
                path: Some(path.to_string()),
                repo: repo_of(path),
                graphql: false,
                credential: ctx.credential.as_ref().map(|c| c.hash),
            },
        );
    } else {
        cache.remove(&key);
    }
    stored
}

/// An answer worth keeping: it has a validator and does not forbid storing.
fn revalidatable(stored: &Stored) -> bool {
    let no_store = stored
        .headers
        .get_all(header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.to_ascii_lowercase().contains("no-store"));
    !no_store && (stored.headers.contains_key(header::ETAG) || stored.headers.contains_key(header::LAST_MODIFIED))
}

async fn graphql(ctx: &Ctx<'_>, parts: &Parts, body: Bytes) -> Arc<Stored> {
    let operation = graphql::parse(&body);
    let headers = upstream::request_headers(&parts.headers);
    let path_q = path_and_query(parts);
    if operation.query {
        let key = cache::key(
            "graphql",
            ctx.credential.as_ref().map(|c| &c.hash),
            &[
                operation.identity.as_bytes(),
                header_bytes(&parts.headers, "accept"),
                header_bytes(&parts.headers, "graphql-features"),
            ],
        );
        let fresh = ctx.shared.config.graphql_fresh;
        if !fresh.is_zero() {
            let entry = ctx.shared.cache.lock().expect("cache").get(&key);
            if let Some(entry) = entry.filter(|e| e.at.elapsed() < fresh) {
                Counts::add(&ctx.counts.cache_hits, 1);
                return entry.stored;
            }
        }
        return coalesced(ctx, key, || async {
            let spend = [("graphql", 1), ("graphql-points", 1)];
            let stored = forward(ctx, Method::POST, path_q, headers.clone(), body.clone(), &spend, true).await;
            if !fresh.is_zero() && stored.upstream && stored.status == StatusCode::OK && !has_errors(&stored.body) {
                let entry = Entry {
                    stored: stored.clone(),
                    at: Instant::now(),
                    path: None,
                    repo: operation.repo.clone(),
                    graphql: true,
                    credential: ctx.credential.as_ref().map(|c| c.hash),
                };
                ctx.shared.cache.lock().expect("cache").insert(key, entry);
            }
            stored
        })
        .await;
    }
    let spend = [
        ("graphql", 1),
        ("graphql-points", 5),
        ("content-minute", 1),
        ("content-hour", 1),
    ];
    let stored = forward(ctx, Method::POST, path_q, headers, body, &spend, true).await;
    if stored.upstream && stored.status.is_success() {
        // A mutation of a known repository drops what is cached about it (and the GraphQL
        // answers whose repository is unknown); of an unknown one, every GraphQL answer.
        let repo = operation.repo;
        ctx.shared.cache.lock().expect("cache").remove_where(|e| match &repo {
            Some(repo) => e.repo.as_ref() == Some(repo) || (e.graphql && e.repo.is_none()),
            None => e.graphql,
        });
    }
    stored
}

fn has_errors(body: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(body).map_or(true, |v| v.get("errors").is_some())
}

/// Any other request (writes, HEAD, OPTIONS): forwarded; a successful write invalidates.
async fn other(ctx: &Ctx<'_>, parts: &Parts, body: Bytes) -> Arc<Stored> {
    let path = parts.uri.path();
    let method = parts.method.clone();
    let read_only = matches!(method, Method::HEAD | Method::OPTIONS);
    let mut spend = vec![(primary_resource(path), 1), ("points", if read_only { 1 } else { 5 })];
    if method == Method::POST {
        spend.extend([("content-minute", 1), ("content-hour", 1)]);
    }
    let headers = upstream::request_headers(&parts.headers);
    let stored = forward(ctx, method, path_and_query(parts), headers, body, &spend, false).await;
    if !read_only && stored.upstream && stored.status.is_success() {
        invalidate_after_write(ctx, path);
    }
    stored
}

/// A write to `/repos/{owner}/{repo}/…` drops every cached answer about that repository —
/// all its REST reads and GraphQL queries, of every credential — and the GraphQL answers
/// whose repository is unknown. A write elsewhere drops the REST reads of that path and
/// below, and the writer's GraphQL answers.
fn invalidate_after_write(ctx: &Ctx<'_>, path: &str) {
    let mut cache = ctx.shared.cache.lock().expect("cache");
    match repo_of(path) {
        Some(repo) => cache.remove_where(|e| e.repo.as_ref() == Some(&repo) || (e.graphql && e.repo.is_none())),
        None => {
            let resource = path.trim_end_matches('/');
            let writer = ctx.credential.as_ref().map(|c| c.hash);
            cache.remove_where(|e| {
                e.path.as_deref().is_some_and(|p| p.starts_with(resource)) || (e.graphql && e.credential == writer)
            })
        }
    };
}

/// Spends the budget, then forwards within the host's concurrency; learns from the answer.
/// No budget within the wait: arbiter's own 429, nothing forwarded.
async fn forward(
    ctx: &Ctx<'_>,
    method: Method,
    path_q: &str,
    headers: HeaderMap,
    body: Bytes,
    spend: &[(&str, u64)],
    graphql: bool,
) -> Arc<Stored> {
    let started = Instant::now();
    let login = &ctx.identity.login;
    if let Err(denied) = ctx.shared.budget.spend(login, spend, ctx.priority, ctx.max_wait).await {
        Counts::add(&ctx.counts.limited, 1);
        Counts::add(&ctx.counts.queued_ms, started.elapsed().as_millis() as u64);
        return Arc::new(limited(&denied, ctx.max_wait));
    }
    let permit = ctx.shared.concurrency.acquire().await;
    Counts::add(&ctx.counts.queued_ms, started.elapsed().as_millis() as u64);
    Counts::add(&ctx.counts.upstream_calls, 1);
    let url = format!("{}{}", ctx.shared.upstream.base, path_q);
    let sent = ctx
        .shared
        .client
        .request(method, &url)
        .headers(headers)
        .body(body)
        .send()
        .await;
    let stored = match sent {
        Ok(response) => {
            let status = response.status();
            let headers = response.headers().clone();
            match response.bytes().await {
                Ok(body) => Stored {
                    status,
                    headers,
                    body,
                    upstream: true,
                },
                Err(e) => bad_gateway(&e),
            }
        }
        Err(e) => bad_gateway(&e),
    };
    drop(permit);
    if !stored.upstream {
        ctx.shared.budget.refund(login, spend).await;
        return Arc::new(stored);
    }
    let limits = upstream::limits(&stored, graphql);
    let resource = limits.resource.clone().filter(|r| valid_resource(r));
    let resource = resource.as_deref().unwrap_or(spend[0].0);
    learn(ctx.shared, login, resource, &limits).await;
    Arc::new(stored)
}

fn valid_resource(resource: &str) -> bool {
    !resource.is_empty()
        && resource.len() <= 64
        && resource
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// Corrects `login`'s buckets from an answer: the primary budget `resource` from the
/// rate-limit headers (frozen on a hit), and on a secondary limit the points buckets every
/// request takes from, so every caller of that identity waits.
pub async fn learn(shared: &Shared, login: &str, resource: &str, limits: &Limits) {
    let primary = &limits.primary;
    if primary.hit || primary.remaining.is_some() || primary.limit.is_some() {
        shared.budget.observe(login, resource, primary).await;
    }
    if let Some(secondary) = &limits.secondary {
        for suffix in ["points", "graphql-points"] {
            shared.budget.observe(login, suffix, secondary).await;
        }
    }
}

fn bad_gateway(e: &reqwest::Error) -> Stored {
    // Without the URL: it is the upstream's, and a query may carry anything.
    let e = arbiter_core::redact::text(&e.to_string(), &[]);
    Stored::local(
        StatusCode::BAD_GATEWAY,
        &format!("arbiter's GitHub proxy could not reach the upstream: {e}"),
        json!({ "error": "unavailable" }),
    )
}

/// arbiter's own 429: which bucket had no room, and when to come back.
fn limited(denied: &Denied, max_wait: Duration) -> Stored {
    let seconds = denied.wait.as_secs_f64().ceil().max(1.0) as u64;
    let mut stored = Stored::local(
        StatusCode::TOO_MANY_REQUESTS,
        &format!(
            "arbiter: no GitHub budget within this request's wait ({:.1}s): {}. Not forwarded to GitHub.",
            max_wait.as_secs_f64(),
            denied.reason
        ),
        json!({
            "error": "limited",
            "bucket": denied.bucket,
            "retry_after_ms": denied.wait.as_millis() as u64,
        }),
    );
    stored.headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    stored
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(repo_of("/repos/Octo/Hello/issues/1").as_deref(), Some("octo/hello"));
        assert_eq!(repo_of("/repos/octo"), None);
        assert_eq!(repo_of("/user/repos"), None);
        assert_eq!(primary_resource("/search/issues"), "search");
        assert_eq!(primary_resource("/search/code"), "code_search");
        assert_eq!(primary_resource("/repos/a/b"), "core");
    }

    #[test]
    fn a_client_conditional_matching_the_answer_gets_304() {
        let mut stored = Stored::local(StatusCode::OK, "x", json!({}));
        stored.headers.insert(header::ETAG, HeaderValue::from_static("\"abc\""));
        let mut client = HeaderMap::new();
        client.insert(header::IF_NONE_MATCH, HeaderValue::from_static("W/\"abc\""));
        let answer = not_modified_for_client(&stored, &client).expect("a 304");
        assert_eq!(answer.status(), StatusCode::NOT_MODIFIED);
        client.insert(header::IF_NONE_MATCH, HeaderValue::from_static("\"other\""));
        assert!(not_modified_for_client(&stored, &client).is_none());
    }

    #[test]
    fn limited_answers_say_when() {
        let denied = Denied {
            bucket: "github/octo/core".into(),
            wait: Duration::from_millis(2500),
            reason: "bucket \"github/octo/core\" has 0.0 of 5000 tokens; wait 2.5s".into(),
        };
        let stored = limited(&denied, Duration::from_secs(1));
        assert_eq!(stored.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(stored.header(header::RETRY_AFTER), Some("3"));
        let body: serde_json::Value = serde_json::from_slice(&stored.body).unwrap();
        assert_eq!(body["bucket"], "github/octo/core");
        assert_eq!(body["retry_after_ms"], 2500);
    }
}
