//! One handler for every request: authentication, secondary then primary limits,
//! conditional requests, the endpoint, and the headers GitHub puts on every answer.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Instant, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::Response;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::graphql::{self, Access, RateInfo, Viewer};
use crate::limits::{Budget, Clock, Points, RateHeaders, Refusal, Resource, retry_after_secs};
use crate::rest::{self, Reply, Route};
use crate::seed::Data;
use crate::{Config, Stats};

pub struct Shared {
    pub config: Config,
    pub clock: Clock,
    /// Token → index of its user in `config.users`.
    tokens: HashMap<String, usize>,
    /// One per user, same order as `config.users`.
    budgets: Mutex<Vec<Budget>>,
    /// Unauthenticated requests (GitHub: 60 an hour per address; here one budget).
    anonymous: Mutex<Budget>,
    /// Read by many requests at once; written by one.
    pub data: RwLock<Data>,
    requests: AtomicU64,
    next_request_id: AtomicU64,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

const RATE_DOCS: &str = "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api";

impl Shared {
    pub fn new(config: Config) -> Shared {
        let tokens = config
            .users
            .iter()
            .enumerate()
            .flat_map(|(i, user)| user.tokens.iter().map(move |t| (t.clone(), i)))
            .collect();
        let budgets = config.users.iter().map(|_| Budget::default()).collect();
        Shared {
            clock: Clock::new(config.scale),
            tokens,
            budgets: Mutex::new(budgets),
            anonymous: Mutex::new(Budget::default()),
            data: RwLock::new(Data::new(&config.seed)),
            requests: AtomicU64::new(0),
            next_request_id: AtomicU64::new(1),
            config,
        }
    }

    pub fn stats(&self) -> Stats {
        let budgets = lock(&self.budgets);
        Stats {
            requests: self.requests.load(Ordering::Relaxed),
            users: self
                .config
                .users
                .iter()
                .zip(budgets.iter())
                .map(|(user, budget)| (user.login.clone(), budget.stats.clone()))
                .collect(),
        }
    }
}

/// Decrements the user's in-flight count when the request ends, however it ends.
struct InFlight<'a> {
    shared: &'a Shared,
    user: usize,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        lock(&self.shared.budgets)[self.user].leave();
    }
}

/// An answer being built: status, body, headers.
struct Answer {
    status: u16,
    body: Option<Vec<u8>>,
    headers: Vec<(header::HeaderName, String)>,
}

impl Answer {
    fn json(status: u16, body: &Value) -> Answer {
        Answer {
            status,
            body: Some(serde_json::to_vec(body).expect("JSON")),
            headers: Vec::new(),
        }
    }

    fn header(mut self, name: &'static str, value: impl ToString) -> Answer {
        self.headers
            .push((header::HeaderName::from_static(name), value.to_string()));
        self
    }

    fn rate(self, rate: &RateHeaders) -> Answer {
        self.header("x-ratelimit-limit", rate.limit)
            .header("x-ratelimit-remaining", rate.remaining)
            .header("x-ratelimit-used", rate.used)
            .header("x-ratelimit-reset", rate.reset)
            .header("x-ratelimit-resource", rate.resource.as_str())
    }

    fn into_response(self, request_id: &str) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::OK);
        let mut response = Response::new(match self.body {
            Some(body) => Body::from(body),
            None => Body::empty(),
        });
        *response.status_mut() = status;
        let headers = response.headers_mut();
        if status != StatusCode::NOT_MODIFIED {
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json; charset=utf-8"),
            );
        }
        headers.insert("x-github-media-type", HeaderValue::from_static("github.v3"));
        if let Ok(id) = HeaderValue::from_str(request_id) {
            headers.insert("x-github-request-id", id);
        }
        for (name, value) in self.headers {
            if let Ok(value) = HeaderValue::from_str(&value) {
                headers.insert(name, value);
            }
        }
        response
    }
}

/// The credential of `Authorization: token T` or `Bearer T`.
fn credential(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    match scheme.to_ascii_lowercase().as_str() {
        "token" | "bearer" => Some(token.trim()),
        _ => None,
    }
}

pub async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path();
    if path == "/_fake/stats" {
        let stats = serde_json::to_value(shared.stats()).expect("JSON");
        return Answer::json(200, &stats).into_response("");
    }
    shared.requests.fetch_add(1, Ordering::Relaxed);
    let request_id = format!("FAKE:{:08X}", shared.next_request_id.fetch_add(1, Ordering::Relaxed));
    let answer = answer(&shared, &method, &uri, &headers, &body, &request_id).await;
    answer.into_response(&request_id)
}

async fn answer(
    shared: &Shared,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
    request_id: &str,
) -> Answer {
    let config = &shared.config;
    let limits = &config.limits;
    let clock = &shared.clock;
    let route = Route::parse(uri.path());
    let resource = route.resource().unwrap_or(Resource::Core);

    let token = credential(headers);
    let user = token.and_then(|t| shared.tokens.get(t).copied());
    let Some(user) = user else {
        let now = Instant::now();
        let mut anonymous = lock(&shared.anonymous);
        let anonymous_limits = crate::Limits {
            core: 60,
            ..limits.clone()
        };
        let _ = anonymous.charge_primary(now, &anonymous_limits, clock, Resource::Core, 1);
        let rate = anonymous.headers(now, &anonymous_limits, clock, Resource::Core);
        let message = match token {
            Some(_) => "Bad credentials",
            None => "Requires authentication",
        };
        return Answer::json(
            401,
            &json!({"message": message, "documentation_url": rest::DOCS, "status": "401"}),
        )
        .rate(&rate);
    };

    // Concurrency first: the request is in flight from here until its answer is sent.
    let admitted = lock(&shared.budgets)[user].enter(limits);
    let _in_flight = InFlight { shared, user };
    if !config.latency.is_zero() {
        tokio::time::sleep(config.latency).await;
    }
    let now = Instant::now();
    if !admitted {
        let wait = clock.real(limits.secondary_wait);
        let mut budgets = lock(&shared.budgets);
        let refusal = budgets[user].secondary_hit(now, wait);
        let rate = budgets[user].headers(now, limits, clock, resource);
        return refused(limits.status, refusal, &rate, request_id);
    }

    if route == Route::Graphql {
        return graphql(shared, user, method, body, request_id, now);
    }
    if route == Route::RateLimit && method == Method::GET {
        let mut budgets = lock(&shared.budgets);
        let budget = &mut budgets[user];
        if let Err(refusal) = budget.admit_secondary(now, limits, clock, Route::points(method.as_str()), false) {
            let rate = budget.headers(now, limits, clock, Resource::Core);
            return refused(limits.status, refusal, &rate, request_id);
        }
        let rates: Vec<RateHeaders> = Resource::ALL
            .iter()
            .map(|r| budget.headers(now, limits, clock, *r))
            .collect();
        let entry =
            |r: &RateHeaders| json!({"limit": r.limit, "used": r.used, "remaining": r.remaining, "reset": r.reset});
        let body = json!({
            "resources": {
                "core": entry(&rates[0]),
                "graphql": entry(&rates[1]),
                "search": entry(&rates[2]),
            },
            "rate": entry(&rates[0]),
        });
        return Answer::json(200, &body).rate(&rates[0]);
    }

    let login = &config.users[user].login;
    let base = format!(
        "http://{}",
        headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("api.github.com")
    );
    let reading = matches!(*method, Method::GET | Method::HEAD);
    let content = route.creates_content(method.as_str());

    {
        let mut budgets = lock(&shared.budgets);
        let budget = &mut budgets[user];
        if let Err(refusal) = budget.admit_secondary(now, limits, clock, Route::points(method.as_str()), content) {
            let rate = budget.headers(now, limits, clock, resource);
            return refused(limits.status, refusal, &rate, request_id);
        }
    }

    let write = *method == Method::POST || *method == Method::PATCH || *method == Method::DELETE;
    let reply = if write {
        // A write is charged before it runs: one refused by the primary limit changes
        // nothing.
        let mut budgets = lock(&shared.budgets);
        if budgets[user].charge_primary(now, limits, clock, resource, 1).is_err() {
            let rate = budgets[user].headers(now, limits, clock, resource);
            return refused(limits.status, Refusal::Primary, &rate, request_id);
        }
        budgets[user].spent_on(format!("{method} {}", route.kind()), 1);
        drop(budgets);
        let mut data = shared.data.write().unwrap_or_else(|e| e.into_inner());
        rest::write(&mut data, method.as_str(), &route, body, login, &base)
    } else if reading && route == Route::User {
        Reply::ok(rest::user_json(login, config.users[user].id, &base))
    } else if reading {
        let data = shared.data.read().unwrap_or_else(|e| e.into_inner());
        rest::get(&data, &route, uri.query().unwrap_or(""), &base, uri.path())
    } else {
        rest::not_found()
    };

    // Conditional requests: a strong ETag per credential and representation; a match
    // (or no change since `If-Modified-Since`) is a 304 that costs no primary budget.
    let cacheable = reading && reply.status == 200;
    let body = serde_json::to_vec(&reply.body).expect("JSON");
    let etag = cacheable.then(|| etag(token.unwrap_or(""), &body));
    let unchanged = etag
        .as_ref()
        .is_some_and(|etag| not_modified(headers, etag, reply.last_modified));

    let mut budgets = lock(&shared.budgets);
    let budget = &mut budgets[user];
    if content && reply.status != 201 {
        budget.created_nothing();
    }
    if let Some(etag) = etag.as_ref().filter(|_| unchanged) {
        budget.stats.not_modified += 1;
        let rate = budget.headers(now, limits, clock, resource);
        let mut answer = Answer {
            status: 304,
            body: None,
            headers: Vec::new(),
        }
        .rate(&rate)
        .header("etag", etag);
        if let Some(at) = reply.last_modified {
            answer = answer.header("last-modified", http_date(at));
        }
        return answer;
    }
    if !write && budget.charge_primary(now, limits, clock, resource, 1).is_err() {
        let rate = budget.headers(now, limits, clock, resource);
        return refused(limits.status, Refusal::Primary, &rate, request_id);
    }
    if !write {
        budget.spent_on(format!("{method} {}", route.kind()), 1);
    }
    let rate = budget.headers(now, limits, clock, resource);
    drop(budgets);
    let mut answer = Answer {
        status: reply.status,
        body: (*method != Method::HEAD).then_some(body),
        headers: Vec::new(),
    }
    .rate(&rate);
    if let Some(etag) = etag {
        answer = answer
            .header("etag", etag)
            .header("cache-control", "private, max-age=60, s-maxage=60")
            .header("vary", "Accept, Authorization, Cookie, X-GitHub-OTP");
        if let Some(at) = reply.last_modified {
            answer = answer.header("last-modified", http_date(at));
        }
    }
    if let Some(link) = reply.link {
        answer = answer.header("link", link);
    }
    answer
}

/// The name of a GraphQL request's operation (`operationName`, or the first named
/// `query`/`mutation` of its document), `-` when it has none.
fn operation_name(body: &[u8]) -> String {
    let value: Value = serde_json::from_slice(body).unwrap_or_default();
    if let Some(name) = value["operationName"].as_str().filter(|n| !n.is_empty()) {
        return name.to_string();
    }
    let document = value["query"].as_str().unwrap_or_default();
    let mut words = document.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'));
    while let Some(word) = words.next() {
        if (word == "query" || word == "mutation")
            && let Some(name) = words.find(|w| !w.is_empty())
        {
            return name.to_string();
        }
    }
    "-".to_string()
}

fn graphql(shared: &Shared, user: usize, method: &Method, body: &[u8], request_id: &str, now: Instant) -> Answer {
    let config = &shared.config;
    let limits = &config.limits;
    let clock = &shared.clock;
    if method != Method::POST {
        let rate = lock(&shared.budgets)[user].headers(now, limits, clock, Resource::Graphql);
        return Answer::json(404, &rest::not_found().body).rate(&rate);
    }
    let parsed: Result<Value, _> = serde_json::from_slice(body);
    let request = match parsed {
        Ok(value) => graphql::prepare(&value),
        Err(e) => Err(json!({
            "message": format!("Problems parsing JSON: {e}"),
            "documentation_url": "https://docs.github.com/graphql",
        })),
    };
    let (points, content, cost) = match &request {
        Ok(r) if r.mutation => (Points::Graphql(5), true, r.cost),
        Ok(r) => (Points::Graphql(1), false, r.cost),
        Err(_) => (Points::Graphql(1), false, 1),
    };
    let mut budgets = lock(&shared.budgets);
    let budget = &mut budgets[user];
    if let Err(refusal) = budget.admit_secondary(now, limits, clock, points, content) {
        let rate = budget.headers(now, limits, clock, Resource::Graphql);
        return refused(limits.status, refusal, &rate, request_id);
    }
    if budget
        .charge_primary(now, limits, clock, Resource::Graphql, cost)
        .is_err()
    {
        let rate = budget.headers(now, limits, clock, Resource::Graphql);
        let rate = RateHeaders { remaining: 0, ..rate };
        let user_id = config.users[user].id;
        // GitHub answers a GraphQL primary limit with HTTP 200 and an error body.
        return Answer::json(
            200,
            &json!({"errors": [{
                "type": "RATE_LIMITED",
                "code": "graphql_rate_limit",
                "message": format!("API rate limit already exceeded for user ID {user_id}."),
            }]}),
        )
        .rate(&rate);
    }
    budget.spent_on(format!("graphql {}", operation_name(body)), cost);
    let rate = budget.headers(now, limits, clock, Resource::Graphql);
    drop(budgets);
    let answer = match request {
        Ok(request) => {
            let viewer = Viewer {
                login: config.users[user].login.clone(),
                id: config.users[user].id,
            };
            let info = RateInfo {
                limit: rate.limit,
                remaining: rate.remaining,
                used: rate.used,
                cost,
                reset: rate.reset,
            };
            let body = match request.mutation {
                true => {
                    let mut data = shared.data.write().unwrap_or_else(|e| e.into_inner());
                    request.execute(Access::Write(&mut data), &viewer, info)
                }
                false => {
                    let data = shared.data.read().unwrap_or_else(|e| e.into_inner());
                    request.execute(Access::Read(&data), &viewer, info)
                }
            };
            Answer::json(200, &body)
        }
        Err(body) if body.get("errors").is_some() => Answer::json(200, &body),
        Err(body) => Answer::json(400, &body),
    };
    answer.rate(&rate)
}

/// A refusal as GitHub words it: the primary limit with `x-ratelimit-remaining: 0`, a
/// secondary one with `retry-after`.
fn refused(status: u16, refusal: Refusal, rate: &RateHeaders, request_id: &str) -> Answer {
    match refusal {
        Refusal::Primary => Answer::json(
            status,
            &json!({
                "message": "API rate limit exceeded for user. (But here's the good news: Authenticated requests get a higher rate limit. Check out the documentation for more details.)",
                "documentation_url": RATE_DOCS,
            }),
        )
        .rate(&RateHeaders {
            remaining: 0,
            ..*rate
        }),
        Refusal::Secondary(wait) => Answer::json(
            status,
            &json!({
                "message": format!("You have exceeded a secondary rate limit. Please wait a few minutes before you try again. If you reach out to GitHub Support for help, please include the request ID {request_id}."),
                "documentation_url": format!("{RATE_DOCS}#about-secondary-rate-limits"),
            }),
        )
        .rate(rate)
        .header("retry-after", retry_after_secs(wait)),
    }
}

/// A strong ETag for `body` as fetched with `token`: GitHub scopes ETags to the credential.
fn etag(token: &str, body: &[u8]) -> String {
    let mut hash = Sha256::new();
    hash.update(token.as_bytes());
    hash.update([0]);
    hash.update(body);
    let digest = hash.finalize();
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("\"{hex}\"")
}

fn http_date(ms: u64) -> String {
    httpdate::fmt_http_date(UNIX_EPOCH + std::time::Duration::from_millis(ms))
}

/// `If-None-Match` (any of its tags, or `*`; a weak `W/` prefix compares equal) decides
/// when present; otherwise `If-Modified-Since` against the resource's last change.
fn not_modified(headers: &HeaderMap, etag: &str, last_modified: Option<u64>) -> bool {
    if let Some(tags) = headers.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()) {
        return tags
            .split(',')
            .map(|t| t.trim().trim_start_matches("W/"))
            .any(|t| t == "*" || t == etag);
    }
    let since = headers
        .get(header::IF_MODIFIED_SINCE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| httpdate::parse_http_date(v).ok());
    match (since, last_modified) {
        (Some(since), Some(modified)) => {
            let since = since.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
            modified / 1000 <= since
        }
        _ => false,
    }
}
