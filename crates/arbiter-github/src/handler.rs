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
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use serde_json::json;

use crate::Shared;
use crate::budget::Denied;
use crate::cache::{self, CacheKey, Entry};
use crate::counters::{Counts, InFlight};
use crate::flight::{self, Role};
use crate::graphql;
use crate::identity::{Credential, Identity};
use crate::upstream::{self, Limits, Stored};

/// The largest GraphQL request body the proxy reads (it must read a GraphQL request to
/// know what it is; GitHub's own limits are lower). Other request bodies are not read:
/// they are streamed to the upstream.
const MAX_GRAPHQL_BODY: usize = 8 << 20;
/// The header a client may shorten its wait for budget with (`10s`, `0s`); never forwarded.
pub const MAX_WAIT_HEADER: &str = "x-arbiter-max-wait";
/// The header a client may set its priority with (`interactive`, `normal` — the default —,
/// `background`): interactive calls may spend the reserve others leave; never forwarded.
pub const PRIORITY_HEADER: &str = "x-arbiter-priority";
/// The header every answer the proxy forwarded or served carries: how it was answered —
/// `hit` (a GraphQL answer from the freshness window, the upstream not asked), `revalidated`
/// (a cached answer the upstream confirmed with a free 304: a REST GET, or a GraphQL query
/// whose repository's probe said nothing changed), `coalesced` (the answer of an identical
/// request in flight) or `miss` (the upstream's answer to this request).
pub const CACHE_HEADER: &str = "x-arbiter-cache";

/// How an answer was had (the [`CACHE_HEADER`] values).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Hit,
    Coalesced,
    Revalidated,
    Miss,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Hit => "hit",
            Outcome::Coalesced => "coalesced",
            Outcome::Revalidated => "revalidated",
            Outcome::Miss => "miss",
        }
    }
}

/// The path of the probe of `repo` (`owner/name`): its most recently updated issue or pull
/// request (GitHub lists pull requests among issues), one per page. `None` for a name the
/// path could not carry as it is.
fn probe_path(repo: &str) -> Option<String> {
    let (owner, name) = repo.split_once('/')?;
    let plain = |s: &str| {
        !s.is_empty()
            && s != "."
            && s != ".."
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    };
    (plain(owner) && plain(name))
        .then(|| format!("/repos/{owner}/{name}/issues?state=all&sort=updated&direction=desc&per_page=1"))
}

/// The path a probe would ask for `path_q`, when `path_q` is one a probe asks
/// ([`probe_path`], [`item_paths`], [`pull_paths`], [`check_paths`]; those name the
/// repository in lowercase, as GitHub reads it whatever its case): only a client's GET of
/// such a path is kept as the latest ETag a probe starts from (any other is not worth a
/// place among them, nor its body's reading).
fn probe_shaped(path_q: &str) -> Option<String> {
    let (path, query) = path_q.split_once('?').unwrap_or((path_q, ""));
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let number = |s: &str| s.parse::<u64>().is_ok();
    let shaped = match (segments.as_slice(), query) {
        (["repos", _, _, "issues"], "state=all&sort=updated&direction=desc&per_page=1") => true,
        (["repos", _, _, "issues" | "pulls", n], "") => number(n),
        (["repos", _, _, "issues", n, "comments"], "per_page=100") => number(n),
        (["repos", _, _, "commits", _, "status"], "") => true,
        (["repos", _, _, "commits", _, "check-runs"], "per_page=100") => true,
        _ => false,
    };
    let [_, owner, name, ..] = segments.as_slice() else {
        return None;
    };
    let prefix = format!("/repos/{owner}/{name}/");
    let rest = path_q.strip_prefix(&prefix).filter(|_| shaped)?;
    Some(format!("{}{rest}", prefix.to_ascii_lowercase()))
}

/// What a probe said, with what its answer told of the resource when it was last seen
/// whole ([`fact`]).
enum Probe {
    /// 304: nothing changed since the ETag asked with.
    Same(Option<String>),
    /// Something changed (or nothing was asked with): the probe's ETag now.
    Changed(HeaderValue, Option<String>),
    /// No answer to go by.
    Unknown,
}

/// What the proxy needs to know of a probe's answer to choose the next probes: of an
/// issue, whether it is a pull request (`pull`); of a pull request, its head commit's SHA.
fn fact(body: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    if let Some(sha) = value["head"]["sha"].as_str() {
        return Some(sha.to_string());
    }
    Some(
        if value.get("pull_request").is_some() {
            "pull"
        } else {
            "issue"
        }
        .to_string(),
    )
}

/// The probes of one issue or pull request ([`graphql::Probes::Item`]) of `repo` that
/// come first: the issue (its reactions, labels, milestone, whether it is a pull
/// request) and its comments (edits, reactions).
fn item_paths(repo: &str, number: u64) -> Option<[String; 2]> {
    let base = probe_path(repo)?;
    let base = base.split_once("/issues?").map(|(base, _)| base)?;
    Some([
        format!("{base}/issues/{number}"),
        format!("{base}/issues/{number}/comments?per_page=100"),
    ])
}

/// The probes of a pull request's head and checks: the pull (head commit, mergeability,
/// reviews asked for) and its head commit's combined status and check runs.
fn pull_paths(repo: &str, number: u64) -> Option<String> {
    let [issue, _] = item_paths(repo, number)?;
    Some(issue.replace("/issues/", "/pulls/"))
}

fn check_paths(pull: &str, sha: &str) -> Option<[String; 2]> {
    if sha.len() != 40 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let base = pull.split_once("/pulls/").map(|(base, _)| base)?;
    Some([
        format!("{base}/commits/{sha}/status"),
        format!("{base}/commits/{sha}/check-runs?per_page=100"),
    ])
}

/// The current ETag of each probe of `set` for `repo`, each asked with the credential's
/// latest (free when nothing changed): what an answer asked for now is revalidated with.
/// `None` when a probe gave nothing to go by (the answer is then not revalidated).
/// `known`: probes just answered (path, ETag, fact), not asked again.
async fn current_tags(
    ctx: &Ctx<'_>,
    repo: &str,
    set: graphql::Probes,
    known: &[(String, HeaderValue, Option<String>)],
) -> Option<Vec<(String, HeaderValue)>> {
    let current = |path: String| async move {
        if let Some(known) = known.iter().find(|(p, _, _)| *p == path) {
            return Some(known.clone());
        }
        let latest = latest_tag(ctx, &path);
        let said = probe(ctx, &path, latest.as_ref().map(|(tag, _)| tag)).await;
        match (said, latest) {
            (Probe::Same(fact), Some((tag, _))) => Some((path, tag, fact)),
            (Probe::Changed(tag, fact), _) => Some((path, tag, fact)),
            _ => None,
        }
    };
    match set {
        graphql::Probes::None => None,
        graphql::Probes::Repository => {
            let (path, tag, _) = current(probe_path(repo)?).await?;
            Some(vec![(path, tag)])
        }
        graphql::Probes::Item(number) => {
            let [issue, comments] = item_paths(repo, number)?;
            let (issue, comments) = futures_util::future::join(current(issue), current(comments)).await;
            let (issue, comments) = (issue?, comments?);
            let mut tags = vec![(issue.0, issue.1), (comments.0, comments.1)];
            if issue.2.as_deref() == Some("pull") {
                let (pull, tag, sha) = current(pull_paths(repo, number)?).await?;
                let [status, runs] = check_paths(&pull, sha.as_deref()?)?;
                tags.push((pull, tag));
                let (status, runs) = futures_util::future::join(current(status), current(runs)).await;
                for (path, tag, _) in [status?, runs?] {
                    tags.push((path, tag));
                }
            }
            Some(tags)
        }
    }
}

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
    outcome: std::sync::Mutex<Outcome>,
    /// The client's request headers (its credential, for a probe).
    request_headers: &'a HeaderMap,
}

impl Ctx<'_> {
    fn answered(&self, outcome: Outcome) {
        *self.outcome.lock().expect("outcome") = outcome;
    }
}

/// A request's body: read (GraphQL), or still to come (streamed to the upstream).
enum Payload {
    Read(Bytes),
    Stream(Body),
}

async fn handle(shared: Arc<Shared>, tag: Option<LoopName>, request: Request) -> Response {
    let began = Instant::now();
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
    if parts.headers.get_all(header::AUTHORIZATION).iter().count() > 1 {
        // The cache is keyed by the credential GitHub authenticates: exactly one.
        return local(
            StatusCode::BAD_REQUEST,
            "arbiter's GitHub proxy takes one Authorization header per request",
        );
    }
    if shared.upstream.url(path_and_query(&parts)).is_none() {
        return local(
            StatusCode::BAD_REQUEST,
            "arbiter's GitHub proxy refuses paths with dot segments (/./, /../, %2e) or backslashes: \
             they would name another resource than the one asked",
        );
    }
    let priority = match parts.headers.get(PRIORITY_HEADER) {
        None => Priority::Normal,
        Some(value) => match Priority::parse(value.to_str().unwrap_or_default().trim()) {
            Ok(priority) => priority,
            Err(e) => {
                return local(
                    StatusCode::BAD_REQUEST,
                    &format!("header {PRIORITY_HEADER}: {}", e.message),
                );
            }
        },
    };
    let max_wait = match request_max_wait(&shared, &parts.headers) {
        Ok(wait) => wait,
        Err(message) => {
            return local(StatusCode::BAD_REQUEST, &message);
        }
    };
    // A GraphQL body is read (a query or not?); any other is streamed when forwarded.
    let is_graphql = parts.uri.path() == "/graphql" && parts.method == Method::POST;
    let body = if is_graphql {
        let Ok(body) = axum::body::to_bytes(body, MAX_GRAPHQL_BODY).await else {
            return respond(&Stored::local(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!(
                    "arbiter's GitHub proxy reads GraphQL request bodies up to {} MiB",
                    MAX_GRAPHQL_BODY >> 20
                ),
                json!({ "error": "bad_input" }),
            ));
        };
        Payload::Read(body)
    } else {
        Payload::Stream(body)
    };
    let credential = Credential::from_headers(&parts.headers);
    let resolved = shared.identities.resolve(&shared, credential.as_ref()).await;
    let identity = resolved.identity;
    let counts = shared.counters.scope(&identity.login, tag.as_ref());
    if resolved.asked {
        Counts::add(&counts.upstream_calls, 1); // GET /user, once per token
    }
    if let Some(refused) = resolved.refused {
        // GitHub does not know the token: its answer, nothing forwarded, no buckets made.
        return respond(&refused);
    }
    let _in_flight = InFlight::new(counts.clone());
    let ctx = Ctx {
        shared: &shared,
        credential,
        identity,
        counts,
        max_wait,
        priority,
        outcome: std::sync::Mutex::new(Outcome::Miss),
        request_headers: &parts.headers,
    };
    let body = match body {
        Payload::Read(body) => {
            let mut response = respond(&*graphql(&ctx, &parts, body).await);
            tell_outcome(&ctx, &mut response, began);
            return response;
        }
        Payload::Stream(body) => body,
    };
    let mut response = if parts.method == Method::GET {
        let stored = rest_get(&ctx, &parts).await;
        match not_modified_for_client(&stored, &parts.headers) {
            Some(answer) => answer,
            None => respond(&stored),
        }
    } else {
        let stored = other(&ctx, &parts, body).await;
        let mut response = respond(&stored);
        if parts.method == Method::HEAD
            && let Some(length) = stored.headers.get(header::CONTENT_LENGTH)
        {
            // The length of what a GET would answer, as the upstream said.
            response.headers_mut().insert(header::CONTENT_LENGTH, length.clone());
        }
        response
    };
    keep_links_here(&shared, &parts, response.headers_mut());
    tell_outcome(&ctx, &mut response, began);
    response
}

/// Says how the request was answered (`x-arbiter-cache`) and how long the proxy took, from
/// the request's head to the answer's (`Server-Timing: arbiter;dur=MS`, the standard
/// header browsers' tools and `curl -v` show; the upstream's time and any wait for budget
/// included, a streamed body's transfer not).
fn tell_outcome(ctx: &Ctx<'_>, response: &mut Response, began: Instant) {
    let outcome = *ctx.outcome.lock().expect("outcome");
    let headers = response.headers_mut();
    headers.insert(CACHE_HEADER, HeaderValue::from_static(outcome.as_str()));
    let took = format!("arbiter;dur={:.3}", began.elapsed().as_secs_f64() * 1000.0);
    if let Ok(value) = HeaderValue::from_str(&took) {
        headers.append(SERVER_TIMING, value);
    }
}

/// `Server-Timing` (W3C Server Timing); `http` has no constant for it.
const SERVER_TIMING: HeaderName = HeaderName::from_static("server-timing");

/// A client that reached the proxy by its loopback address (`ARBITER_GITHUB_API`) follows
/// `Link` (the next page) and `Location` to the proxy, not around it to the upstream: the
/// upstream's base in them becomes `http://<the Host it asked>`. (`gh` on the unix socket
/// says `Host: api.github.com` and sends every request to the socket anyway.)
fn keep_links_here(shared: &Shared, parts: &Parts, headers: &mut HeaderMap) {
    let Some(host) = parts.headers.get(header::HOST).and_then(|h| h.to_str().ok()) else {
        return;
    };
    if !upstream::is_loopback(host) {
        return;
    }
    let here = format!("http://{host}");
    for name in [header::LINK, header::LOCATION] {
        let values: Vec<HeaderValue> = headers.get_all(&name).iter().cloned().collect();
        if values.is_empty() {
            continue;
        }
        headers.remove(&name);
        for value in values {
            let rewritten = value
                .to_str()
                .ok()
                .map(|text| shared.upstream.rebase(text, &here))
                .and_then(|text| HeaderValue::from_str(&text).ok())
                .unwrap_or(value);
            headers.append(&name, rewritten);
        }
    }
}

/// An answer of arbiter's own (`error: bad_input`).
fn local(status: StatusCode, message: &str) -> Response {
    respond(&Stored::local(status, message, json!({ "error": "bad_input" })))
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
    let body = match stored.rest.as_ref().and_then(|rest| rest.take()) {
        Some(rest) => streamed(stored.body.clone(), rest),
        None => Body::from(stored.body.clone()),
    };
    let mut response = Response::new(body);
    *response.status_mut() = stored.status;
    let headers = response.headers_mut();
    for (name, value) in upstream::end_to_end(&stored.headers).iter() {
        if name != header::CONTENT_LENGTH {
            headers.append(name.clone(), value.clone());
        }
    }
    response
}

/// An answer too large to hold: what was read, then the rest as it comes.
fn streamed(first: Bytes, rest: reqwest::Response) -> Body {
    let chunks = futures_util::stream::unfold((Some(first), Some(rest)), |(first, rest)| async move {
        if let Some(first) = first.filter(|first| !first.is_empty()) {
            return Some((Ok(first), (None, rest)));
        }
        let mut rest = rest?;
        match rest.chunk().await {
            Ok(Some(chunk)) => Some((Ok(chunk), (None, Some(rest)))),
            Ok(None) => None,
            Err(e) => Some((Err(e.without_url()), (None, None))),
        }
    });
    Body::from_stream(chunks)
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
/// Segments are read as GitHub reads them: `/repos/%6Fcto/hello` is `octo/hello`.
fn repo_of(path: &str) -> Option<String> {
    let mut segments = path
        .trim_start_matches('/')
        .split('/')
        .map(|s| percent_encoding::percent_decode_str(s).decode_utf8_lossy());
    match (segments.next(), segments.next(), segments.next()) {
        (Some(repos), Some(owner), Some(name)) if repos == "repos" && !owner.is_empty() && !name.is_empty() => {
            Some(format!("{owner}/{name}").to_ascii_lowercase())
        }
        _ => None,
    }
}

fn path_and_query(parts: &Parts) -> &str {
    parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/")
}

/// The key of a request of `ctx`'s credential: `what` (the path and query; a GraphQL
/// body) and every header it is forwarded with, in order, but those that do not change
/// the answer (`User-Agent`; `Accept-Encoding` and `Content-Length`, which the proxy sets;
/// `Authorization`, the credential's part of the key). So `Accept` (every value: media
/// types, previews, `.raw`), `X-GitHub-Api-Version`, `Range`, `Time-Zone`,
/// `GraphQL-Features` and whatever else a client sends make different answers.
fn request_key(ctx: &Ctx<'_>, kind: &str, what: &[u8], forwarded: &HeaderMap) -> CacheKey {
    let mut names: Vec<&http::HeaderName> = forwarded.keys().collect();
    names.sort_by_key(|name| name.as_str());
    let mut varying = Vec::new();
    for name in names {
        if [
            header::USER_AGENT,
            header::ACCEPT_ENCODING,
            header::CONTENT_LENGTH,
            header::AUTHORIZATION,
        ]
        .contains(name)
        {
            continue;
        }
        for value in forwarded.get_all(name) {
            varying.extend_from_slice(name.as_str().as_bytes());
            varying.push(b':');
            varying.extend_from_slice(value.as_bytes());
            varying.push(b'\n');
        }
    }
    cache::key(kind, ctx.credential.as_ref().map(|c| &c.hash), &[what, &varying])
}

async fn rest_get(ctx: &Ctx<'_>, parts: &Parts) -> Arc<Stored> {
    let path_q = path_and_query(parts);
    let mut headers = upstream::request_headers(&parts.headers);
    // The proxy revalidates with its own validators and answers the client's itself.
    headers.remove(header::IF_NONE_MATCH);
    headers.remove(header::IF_MODIFIED_SINCE);
    let key = request_key(ctx, "rest", path_q.as_bytes(), &headers);
    let held = ctx.shared.cache.lock().expect("cache").contains(&key);
    let own: HeaderMap = [header::IF_NONE_MATCH, header::IF_MODIFIED_SINCE]
        .into_iter()
        .filter_map(|name| Some((name.clone(), parts.headers.get(name)?.clone())))
        .collect();
    if !held && !own.is_empty() {
        // Nothing held, but the client holds an answer (it asked GitHub itself before,
        // or the proxy restarted): its own validator, so GitHub may answer a free 304.
        // That answer is this client's alone: not shared with others in flight.
        headers.extend(own);
        return revalidate(ctx, key, parts.uri.path(), path_q, headers).await;
    }
    let repo = repo_of(parts.uri.path());
    coalesced(ctx, key, repo.as_deref(), || {
        revalidate(ctx, key, parts.uri.path(), path_q, headers.clone())
    })
    .await
}

/// The one upstream call of `key` at a time: the first caller leads, the others wait for
/// its answer (and lead themselves if it went away without one, or answered itself).
/// A request never follows a flight that began before the latest write through the proxy
/// (its answer may predate the write): flights are keyed by the cache's generation of
/// `repo` (what the request is about, when known) too.
async fn coalesced<F, Fut>(ctx: &Ctx<'_>, key: CacheKey, repo: Option<&str>, lead: F) -> Arc<Stored>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<Stored>>,
{
    let (answer, followed) = follow_or_lead(ctx, key, repo, lead).await;
    if followed {
        ctx.answered(Outcome::Coalesced);
    }
    answer
}

/// [`coalesced`], saying whether the answer was another request's.
async fn follow_or_lead<F, Fut>(ctx: &Ctx<'_>, key: CacheKey, repo: Option<&str>, lead: F) -> (Arc<Stored>, bool)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<Stored>>,
{
    let generation = ctx.shared.cache.lock().expect("cache").generation(repo);
    let flight = cache::key("flight", None, &[&key, &generation.to_be_bytes()]);
    for _ in 0..3 {
        match ctx.shared.flights.join(flight) {
            Role::Leader(leader) => {
                let answer = lead().await;
                leader.answer(answer.clone());
                return (answer, false);
            }
            Role::Follower(rx) => {
                // An answer of arbiter's own (the leader's wait for budget ran out, the
                // upstream was unreachable) is the leader's: a follower tries itself.
                // So is an answer too large to hold (streamed to the leader's client only).
                if let Some(answer) = flight::follow(rx).await.filter(|a| a.whole()) {
                    Counts::add(&ctx.counts.coalesced, 1);
                    return (answer, true);
                }
            }
        }
    }
    (lead().await, false)
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
    // The proxy's validator, or the client's own (already in `headers`).
    let revalidating = validator.is_some()
        || headers.contains_key(header::IF_NONE_MATCH)
        || headers.contains_key(header::IF_MODIFIED_SINCE);
    if let Some((name, value)) = validator {
        headers.insert(name, value);
    }
    let primary = primary_resource(path);
    // A revalidation is charged its primary cost only if it is not answered 304.
    let spend = [(primary, u64::from(!revalidating)), ("points", 1)];
    let stored = forward(
        ctx,
        Method::GET,
        path_q,
        headers,
        reqwest::Body::from(Bytes::new()),
        &spend,
        false,
    )
    .await;
    if !stored.upstream {
        return stored;
    }
    if let (StatusCode::NOT_MODIFIED, Some(entry)) = (stored.status, &entry) {
        Counts::add(&ctx.counts.not_modified, 1);
        ctx.answered(Outcome::Revalidated);
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
    if stored.status == StatusCode::NOT_MODIFIED {
        // The client's own validator matched: its 304, free.
        Counts::add(&ctx.counts.not_modified, 1);
    } else if revalidating {
        // Not a 304: it did cost the primary budget after all.
        let _ = ctx
            .shared
            .budget
            .spend(&ctx.identity.login, &[(primary, 1)], ctx.priority, Duration::ZERO)
            .await;
    }
    if stored.status == StatusCode::OK
        && stored.whole()
        && let Some(probed) = probe_shaped(path_q)
        && let Some(etag) = stored.headers.get(header::ETAG)
    {
        // A probe of a GraphQL answer asks this path too: it starts from this ETag (a
        // 304, free) rather than pay for a first answer of its own.
        keep_latest_tag(ctx, &probed, etag, &stored.body);
    }
    let mut cache = ctx.shared.cache.lock().expect("cache");
    if stored.status == StatusCode::OK && stored.whole() && revalidatable(&stored) {
        cache.insert(
            key,
            Entry {
                stored: stored.clone(),
                at: Instant::now(),
                repo: repo_of(path),
                graphql: false,
                credential: ctx.credential.as_ref().map(|c| c.hash),
                probes: Vec::new(),
                checked: Instant::now(),
                stale: false,
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
        let what = [path_q.as_bytes(), b"\n", operation.identity.as_bytes()].concat();
        let key = request_key(ctx, "graphql", &what, &headers);
        let fresh = ctx.shared.config.graphql_fresh;
        let max_age = match operation.probes {
            graphql::Probes::Item(_) => ctx.shared.config.graphql_view_max_age,
            _ => ctx.shared.config.graphql_max_age,
        };
        let repo = operation.repo.as_deref();
        // Free probes may revalidate this answer past its freshness (within its max age).
        let probed = !fresh.is_zero() && !max_age.is_zero() && operation.probes != graphql::Probes::None;
        // What the probes that said "changed" now say: not asked again below.
        let mut known = Vec::new();
        if !fresh.is_zero() {
            let entry = ctx.shared.cache.lock().expect("cache").get(&key);
            if let Some(entry) = entry {
                if !entry.stale && entry.checked.elapsed() < fresh {
                    Counts::add(&ctx.counts.cache_hits, 1);
                    ctx.answered(Outcome::Hit);
                    return entry.stored;
                }
                if probed && !entry.probes.is_empty() && entry.at.elapsed() < max_age {
                    let generation = ctx.shared.cache.lock().expect("cache").generation(repo);
                    let said = futures_util::future::join_all(entry.probes.iter().map(|(path, tag)| async move {
                        // A newer ETag seen since (a client's GET of the same path, another
                        // answer's probe): changed, known without asking with the old one —
                        // whose 200 would cost a point. The query is asked again below, its
                        // probes asked with that newer ETag (free when nothing changed since).
                        if latest_tag(ctx, path).is_some_and(|(latest, _)| latest != *tag) {
                            return Probe::Unknown;
                        }
                        probe(ctx, path, Some(tag)).await
                    }))
                    .await;
                    let same = said.iter().all(|p| matches!(p, Probe::Same(_)));
                    for ((path, _), said) in entry.probes.iter().zip(said) {
                        if let Probe::Changed(tag, fact) = said {
                            known.push((path.clone(), tag, fact));
                        }
                    }
                    if same {
                        let mut cache = ctx.shared.cache.lock().expect("cache");
                        // A write through the proxy meanwhile: not this answer.
                        if cache.generation(repo) == generation {
                            let stored = entry.stored.clone();
                            cache.insert(
                                key,
                                Entry {
                                    checked: Instant::now(),
                                    stale: false,
                                    ..entry
                                },
                            );
                            ctx.answered(Outcome::Revalidated);
                            return stored;
                        }
                    }
                }
            }
        }
        return coalesced(ctx, key, repo, || async {
            // An answer asked for before a write it may predate is not kept after it; its
            // freshness counts from when it was asked for.
            let (asked, generation) = (Instant::now(), ctx.shared.cache.lock().expect("cache").generation(repo));
            // The probes' ETags before the query is asked: a change after them shows at
            // the next probe, even one the answer already has.
            // An item's probes only for a query asked before, within twice the max age (one
            // asked again as its answer runs out counts): their first answers cost a point
            // each, worth it only if a revalidation is likely to come. (The repository's one
            // probe is shared by every list of the repository.)
            let worth_it = match operation.probes {
                graphql::Probes::Item(_) => ctx
                    .shared
                    .cache
                    .lock()
                    .expect("cache")
                    .asked_again(&key, max_age.saturating_mul(2)),
                _ => true,
            };
            let tags = match (probed && worth_it, repo) {
                (true, Some(repo)) => current_tags(ctx, repo, operation.probes, &known).await,
                _ => None,
            };
            let spend = [("graphql", 1), ("graphql-points", 1)];
            let stored = forward(
                ctx,
                Method::POST,
                path_q,
                headers.clone(),
                body.clone().into(),
                &spend,
                true,
            )
            .await;
            if !fresh.is_zero() && stored.whole() && stored.status == StatusCode::OK && !has_errors(&stored.body) {
                let entry = Entry {
                    stored: stored.clone(),
                    at: asked,
                    repo: operation.repo.clone(),
                    graphql: true,
                    credential: ctx.credential.as_ref().map(|c| c.hash),
                    probes: tags.unwrap_or_default(),
                    checked: asked,
                    stale: false,
                };
                let mut cache = ctx.shared.cache.lock().expect("cache");
                if cache.generation(repo) == generation {
                    cache.insert(key, entry);
                }
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
    let stored = forward(ctx, Method::POST, path_q, headers, body.into(), &spend, true).await;
    if stored.upstream && stored.status.is_success() {
        // A mutation of a known repository drops the GraphQL answers about it (and those
        // whose repository is unknown); of an unknown one, every GraphQL answer.
        // REST answers stay: they are never served without revalidation.
        let repo = operation.repo;
        ctx.shared
            .cache
            .lock()
            .expect("cache")
            .invalidate(repo.as_deref(), |e| {
                e.graphql
                    && match &repo {
                        Some(repo) => e.repo.as_ref() == Some(repo) || e.repo.is_none(),
                        None => true,
                    }
            });
    }
    stored
}

fn has_errors(body: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(body).map_or(true, |v| v.get("errors").is_some())
}

/// Any other request (writes, HEAD, OPTIONS): forwarded; a successful write invalidates.
async fn other(ctx: &Ctx<'_>, parts: &Parts, body: Body) -> Arc<Stored> {
    let path = parts.uri.path();
    let method = parts.method.clone();
    let read_only = matches!(method, Method::HEAD | Method::OPTIONS);
    let mut spend = vec![(primary_resource(path), 1), ("points", if read_only { 1 } else { 5 })];
    if method == Method::POST {
        spend.extend([("content-minute", 1), ("content-hour", 1)]);
    }
    let headers = upstream::request_headers(&parts.headers);
    let body = reqwest::Body::wrap(Upload(std::sync::Mutex::new(body)));
    let stored = forward(ctx, method, path_and_query(parts), headers, body, &spend, false).await;
    if !read_only && stored.upstream && stored.status.is_success() {
        invalidate_after_write(ctx, path);
    }
    stored
}

/// A client's request body, streamed to the upstream as it comes (never held whole; its
/// length, when the client said it, is the forwarded request's). reqwest wants a `Sync`
/// body; this one is only ever polled through `&mut`.
struct Upload(std::sync::Mutex<Body>);

impl http_body::Body for Upload {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        let body = self.get_mut().0.get_mut().unwrap_or_else(|e| e.into_inner());
        std::pin::Pin::new(body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.0.lock().map(|b| b.is_end_stream()).unwrap_or(true)
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.0.lock().map(|b| b.size_hint()).unwrap_or_default()
    }
}

/// A write to `/repos/{owner}/{repo}/…` drops the GraphQL answers about that repository,
/// of every credential, and those whose repository is unknown; a write elsewhere, the
/// writer's GraphQL answers. REST answers are kept with their validators: they are never
/// served without the upstream's 304, so what the write changed comes back as a 200 and
/// the rest as free 304s. Either way the cache's generation moves on, so no request
/// follows a flight that began before the write.
fn invalidate_after_write(ctx: &Ctx<'_>, path: &str) {
    let mut cache = ctx.shared.cache.lock().expect("cache");
    match repo_of(path) {
        Some(repo) => cache.invalidate(Some(&repo), |e| {
            e.graphql && (e.repo.as_ref() == Some(&repo) || e.repo.is_none())
        }),
        None => {
            let writer = ctx.credential.as_ref().map(|c| c.hash);
            cache.invalidate(None, |e| e.graphql && e.credential == writer)
        }
    };
}

/// The key of `ctx`'s credential's latest ETag of `probe_path` in the representation its
/// client asks for ([`probe_accept`]): an ETag is only compared with one of the same
/// representation (GitHub's answers `Vary: Accept`).
fn probe_key(ctx: &Ctx<'_>, probe_path: &str) -> CacheKey {
    cache::key(
        "probe",
        ctx.credential.as_ref().map(|c| &c.hash),
        &[probe_path.as_bytes(), probe_accept(ctx).as_bytes()],
    )
}

/// The `Accept` a probe sends: the client's own (so a probe of a path the client also
/// GETs asks for the same representation, and shares its ETag), or GitHub's JSON.
fn probe_accept(ctx: &Ctx<'_>) -> HeaderValue {
    ctx.request_headers
        .get(header::ACCEPT)
        .cloned()
        .unwrap_or(HeaderValue::from_static("application/vnd.github+json"))
}

/// A conditional GET of `probe_path` (see [`probe_path`]) with `tag`, `ctx`'s credential's
/// own: free when answered 304 (a primary point otherwise). Identical probes in flight
/// share one upstream call. The answer's ETag is kept as the credential's latest.
async fn probe(ctx: &Ctx<'_>, probe_path: &str, tag: Option<&HeaderValue>) -> Probe {
    let mut headers = HeaderMap::new();
    for name in [header::AUTHORIZATION, header::USER_AGENT] {
        if let Some(value) = ctx.request_headers.get(&name) {
            headers.insert(name, value.clone());
        }
    }
    let accept = probe_accept(ctx);
    headers.insert(header::ACCEPT, accept.clone());
    if let Some(tag) = tag {
        headers.insert(header::IF_NONE_MATCH, tag.clone());
    }
    let tag_bytes = tag.map(|t| t.as_bytes()).unwrap_or_default();
    let key = cache::key(
        "probe",
        ctx.credential.as_ref().map(|c| &c.hash),
        &[probe_path.as_bytes(), tag_bytes, accept.as_bytes()],
    );
    let repo = repo_of(probe_path);
    let (stored, _) = follow_or_lead(ctx, key, repo.as_deref(), || async {
        // Conditional: charged its primary point only if not answered 304.
        let spend = [("core", u64::from(tag.is_none())), ("points", 1)];
        let stored = forward(
            ctx,
            Method::GET,
            probe_path,
            headers.clone(),
            reqwest::Body::from(Bytes::new()),
            &spend,
            false,
        )
        .await;
        if stored.upstream && stored.status == StatusCode::NOT_MODIFIED {
            Counts::add(&ctx.counts.not_modified, 1);
        } else if stored.upstream && tag.is_some() {
            let _ = ctx
                .shared
                .budget
                .spend(&ctx.identity.login, &[("core", 1)], ctx.priority, Duration::ZERO)
                .await;
        }
        if stored.status == StatusCode::OK
            && let Some(etag) = stored.headers.get(header::ETAG)
        {
            keep_latest_tag(ctx, probe_path, etag, &stored.body);
        }
        stored
    })
    .await;
    match (stored.status, stored.headers.get(header::ETAG)) {
        (StatusCode::NOT_MODIFIED, _) if tag.is_some() => {
            // What the credential's latest answer of this probe told, if it was this one.
            let fact = latest_tag(ctx, probe_path)
                .filter(|(latest, _)| Some(latest) == tag)
                .and_then(|(_, fact)| fact);
            Probe::Same(fact)
        }
        (StatusCode::OK, Some(etag)) => Probe::Changed(etag.clone(), fact(&stored.body)),
        _ => Probe::Unknown,
    }
}

/// The credential's latest ETag of `path` (a probe's, or a client's GET of the same path)
/// with what its answer told ([`fact`]).
fn latest_tag(ctx: &Ctx<'_>, path: &str) -> Option<(HeaderValue, Option<String>)> {
    ctx.shared
        .probes
        .lock()
        .expect("probes")
        .get(&probe_key(ctx, path))
        .cloned()
}

/// Keeps `etag` as the credential's latest of `path`, with what `body` tells.
fn keep_latest_tag(ctx: &Ctx<'_>, path: &str, etag: &HeaderValue, body: &[u8]) {
    let fact = fact(body);
    let mut probes = ctx.shared.probes.lock().expect("probes");
    if probes.len() >= PROBES_HELD {
        probes.clear();
    }
    probes.insert(probe_key(ctx, path), (etag.clone(), fact));
}

/// How many credentials' latest ETags of the paths probes ask (from probes, and from
/// clients' GETs of those paths) are held; past it, they are forgotten all at once (the
/// next probe of each costs a point).
const PROBES_HELD: usize = 50_000;

/// Spends the budget, then forwards within the host's concurrency; learns from the answer.
/// No budget within the wait: arbiter's own 429, nothing forwarded.
async fn forward(
    ctx: &Ctx<'_>,
    method: Method,
    path_q: &str,
    headers: HeaderMap,
    body: reqwest::Body,
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
    // A slot among this host's upstream requests, within what is left of the wait.
    let left = ctx.max_wait.saturating_sub(started.elapsed());
    let Ok(permit) = tokio::time::timeout(left, ctx.shared.concurrency.acquire()).await else {
        ctx.shared.budget.refund(login, spend).await;
        Counts::add(&ctx.counts.limited, 1);
        Counts::add(&ctx.counts.queued_ms, started.elapsed().as_millis() as u64);
        let denied = Denied {
            bucket: "concurrency".to_string(),
            wait: Duration::from_secs(1),
            reason: format!(
                "all {} upstream slots of this proxy are busy",
                ctx.shared.config.concurrency
            ),
        };
        return Arc::new(limited(&denied, ctx.max_wait));
    };
    Counts::add(&ctx.counts.queued_ms, started.elapsed().as_millis() as u64);
    Counts::add(&ctx.counts.upstream_calls, 1);
    let Some(url) = ctx.shared.upstream.url(path_q) else {
        // Checked when the request came in; a path the upstream URL would rewrite.
        ctx.shared.budget.refund(login, spend).await;
        return Arc::new(Stored::local(
            StatusCode::BAD_REQUEST,
            "arbiter's GitHub proxy refuses this path",
            json!({ "error": "bad_input" }),
        ));
    };
    let limit = ctx.shared.buffer_limit();
    let exchange = async {
        let response = ctx
            .shared
            .client
            .request(method, url)
            .headers(headers)
            .body(body)
            .send()
            .await?;
        let status = response.status();
        let headers = response.headers().clone();
        let (body, rest) = upstream::read_up_to(response, limit).await?;
        Ok::<_, reqwest::Error>(Stored {
            status,
            headers,
            body,
            upstream: true,
            rest: rest.map(upstream::Rest::new),
        })
    };
    let timeout = ctx.shared.config.upstream_timeout;
    let stored = match tokio::time::timeout(timeout, exchange).await {
        Ok(Ok(stored)) => stored,
        Ok(Err(e)) => bad_gateway(e),
        Err(_) => Stored::local(
            StatusCode::GATEWAY_TIMEOUT,
            &format!(
                "arbiter's GitHub proxy: the upstream did not answer within {:.1}s",
                timeout.as_secs_f64()
            ),
            json!({ "error": "unavailable" }),
        ),
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

/// 502 (504 when the upstream was too slow), without the URL: it is the upstream's, and a
/// query may carry anything.
fn bad_gateway(e: reqwest::Error) -> Stored {
    let status = if e.is_timeout() {
        StatusCode::GATEWAY_TIMEOUT
    } else {
        StatusCode::BAD_GATEWAY
    };
    let e = arbiter_core::redact::text(&e.without_url().to_string(), &[]);
    Stored::local(
        status,
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
        assert_eq!(repo_of("/repos/%6Fcto/H%65llo/issues").as_deref(), Some("octo/hello"));
        assert_eq!(repo_of("/user/repos"), None);
        assert_eq!(primary_resource("/search/issues"), "search");
        assert_eq!(primary_resource("/search/code"), "code_search");
        assert_eq!(primary_resource("/repos/a/b"), "core");
        // The paths probes ask, and so the client GETs kept for them.
        let [issue, comments] = item_paths("octo/hello", 3).unwrap();
        let pull = pull_paths("octo/hello", 4).unwrap();
        let [status, runs] = check_paths(&pull, &"a".repeat(40)).unwrap();
        for path in [probe_path("octo/hello").unwrap(), issue, comments, pull, status, runs] {
            assert_eq!(probe_shaped(&path).as_deref(), Some(path.as_str()));
        }
        assert_eq!(
            probe_shaped("/repos/Octo/Hello/issues/3").as_deref(),
            Some("/repos/octo/hello/issues/3"),
            "as the probe names it"
        );
        for path in [
            "/repos/octo/hello/issues/3/comments",
            "/repos/octo/hello/issues?per_page=1",
            "/repos/octo/hello/git/trees/main",
            "/repos/octo/hello/issues/x",
            "//repos/é/hello/issues/3",
            "/user",
        ] {
            assert_eq!(probe_shaped(path), None, "{path}");
        }
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
