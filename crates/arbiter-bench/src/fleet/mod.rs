//! The replayed fleet workload of issue 14: per simulated client (each its own GitHub user,
//! with its own repository that all its loops work on), `loops` agent loops run `rounds`
//! rounds each of [`CALLS_PER_ROUND`] API calls as `gh` and a caching client make them,
//! scheduled as `arbiter watch` schedules them with the README's settings (`every = "5m"`,
//! `jitter = "30s"`): every loop of a client starts together, and each next round starts
//! `every` plus a random part of `jitter` after the previous one ended. Clients start spread
//! over the first interval (they are separate hosts). The same replay runs against the fake GitHub directly and through arbiter's
//! proxy, each on a fresh fake (fresh budgets), and the fake counts what was spent.
//!
//! One round, in this order (see [`round`]): 16 GraphQL calls exactly as `gh` 2.23 sends
//! them (6 × `gh issue list`, 6 × `gh pr list`, 2 × `gh pr view N`, 2 × `gh issue view N`),
//! 13 REST GETs of the same issues, pulls and comments, unconditional as `gh` sends them
//! (it has no cache: no `If-None-Match`), and — in every [`COMMENT_EVERY`]th round of a
//! loop — 1 comment (`POST …/comments`). Calls follow each other one GitHub second apart
//! (scaled).
//!
//! Time is compressed: the fake's hour lasts `hour` (its windows, resets and `retry-after`
//! scaled alike), and so do the proxy's GraphQL freshness window and its wait for budget.
//! Everything runs in this process on loopback.

pub use arbiter_fake_github::gh;
mod proxy;

use std::time::Duration;

use anyhow::{Context, Result};
use arbiter_fake_github::{Config, FakeGitHub, RepoSeed, Seed, User};
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::report::{format_latency, thousands};
use crate::spec::{System, Targets};
use crate::stats::{Measurement, percentile};
use crate::worker::XorShift;

/// API calls per round of one loop (one fewer in a round without a comment).
pub const CALLS_PER_ROUND: usize = 30;
/// A loop comments in one round of this many (its 4th, 8th, 12th …).
pub const COMMENT_EVERY: u32 = 4;
/// Rounds per hour of one loop (one every 5 minutes).
pub const ROUNDS_PER_HOUR: u32 = 12;
/// The loops' jitter (GitHub time, compressed like the rest).
const JITTER: Duration = Duration::from_secs(30);
/// Issues and pull requests in each client's repository.
const ISSUES: u64 = 30;
const PULLS: u64 = 10;

/// One replay.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    pub clients: u32,
    pub loops: u32,
    pub rounds: u32,
    /// The real duration of GitHub's hour.
    pub hour: Duration,
    /// Latency the fake adds to every answer (GitHub's own is 50 ms and more).
    pub upstream_latency: Duration,
    /// The proxy's `graphql_max_age`, GitHub time (compressed when applied).
    pub graphql_max_age: Duration,
    /// The proxy's `graphql_view_max_age`, GitHub time (compressed when applied).
    pub graphql_view_max_age: Duration,
    /// Rounds each loop runs through the proxy before the measured ones (an hour: the
    /// proxy as it is after running for a while, not just started), 0 for none. Direct
    /// replays have none: every call spends, whatever came before.
    pub warmup: u32,
}

impl Plan {
    /// How many times faster than real time.
    pub fn scale(&self) -> f64 {
        3600.0 / self.hour.as_secs_f64()
    }

    /// GitHub's `duration`, compressed.
    pub fn scaled(&self, duration: Duration) -> Duration {
        duration.div_f64(self.scale())
    }
}

/// What one call is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    IssueList,
    PrList,
    PrView(u64),
    IssueView(u64),
    /// A REST GET of this path, conditional when the loop has its ETag.
    Get(String),
    /// A comment on this issue.
    Comment(u64),
}

impl Call {
    #[cfg(test)]
    fn graphql(&self) -> bool {
        matches!(
            self,
            Call::IssueList | Call::PrList | Call::PrView(_) | Call::IssueView(_)
        )
    }
}

/// The calls of round `round` of loop `lp` (on the repository `owner/app`): the same shape
/// every round, the issues and pulls it looks at moving with the loop and the round.
pub fn round(owner: &str, lp: u32, round: u32) -> Vec<Call> {
    let base = u64::from(lp) * 3 + u64::from(round);
    let issue = |i: u64| (base + i) % ISSUES + 1;
    let pull = |i: u64| ISSUES + (base + i) % PULLS + 1;
    let repo = format!("/repos/{owner}/app");
    let mut calls = Vec::with_capacity(CALLS_PER_ROUND);
    for i in 0..6 {
        calls.push(Call::IssueList);
        calls.push(Call::PrList);
        calls.push(Call::Get(format!("{repo}/issues/{}", issue(i))));
        if i < 2 {
            calls.push(Call::PrView(pull(i)));
            calls.push(Call::IssueView(issue(i)));
        }
    }
    for i in 0..3 {
        calls.push(Call::Get(format!("{repo}/pulls/{}", pull(i))));
        calls.push(Call::Get(format!("{repo}/issues/{}/comments", issue(i))));
    }
    calls.push(Call::Get(repo));
    // The loop's own issue gets its comment, in one round of [`COMMENT_EVERY`].
    if round % COMMENT_EVERY == COMMENT_EVERY - 1 {
        calls.push(Call::Comment(u64::from(lp) % ISSUES + 1));
    }
    debug_assert!(calls.len() <= CALLS_PER_ROUND);
    calls
}

fn login(client: u32) -> String {
    format!("client-{client}")
}

fn token(client: u32) -> String {
    format!("ghp_bench{client:06}")
}

/// The fake for a replay: one user and one repository (`client-N/app`) per client.
pub fn fake_config(plan: &Plan) -> Config {
    let mut seed = Seed::new();
    let mut users = Vec::new();
    for c in 0..plan.clients {
        users.push(User {
            login: login(c),
            id: u64::from(c) + 1,
            tokens: vec![token(c)],
        });
        seed = seed.repo(
            RepoSeed::new(&login(c), "app")
                .issues(ISSUES)
                .closed(0)
                .pulls(PULLS)
                .comments(3),
        );
    }
    Config {
        users,
        scale: plan.scale(),
        latency: plan.upstream_latency,
        seed,
        ..Config::default()
    }
}

/// What one replay saw, from the clients' side and the fake's.
#[derive(Debug, Default)]
pub struct Outcome {
    pub calls: u64,
    /// Every call's latency, microseconds, sorted.
    pub latencies_us: Vec<u32>,
    /// Calls answered by the proxy itself (`x-arbiter-cache: hit`), microseconds, sorted.
    pub cache_hit_us: Vec<u32>,
    /// The proxy's own time on those calls, as its `Server-Timing` says, microseconds, sorted.
    pub cache_hit_proxy_us: Vec<u32>,
    /// Answers the proxy said were revalidated (a free 304 upstream) or coalesced.
    pub revalidated: u64,
    pub coalesced: u64,
    /// The calls made: GraphQL, REST GETs, comments (writes).
    pub graphql_calls: u64,
    pub get_calls: u64,
    pub comments: u64,
    /// Answers that were a rate limit: 403/429 saying so, or GraphQL's `RATE_LIMITED`.
    pub limit_errors: u64,
    /// Any other failure (transport, 5xx, an unexpected status).
    pub other_errors: u64,
    /// The first of those, to show.
    pub first_error: Option<String>,
    /// Primary budget spent at the fake: core, GraphQL points.
    pub core_used: u64,
    pub graphql_used: u64,
    /// Requests that reached the fake, and of those 304s.
    pub upstream_requests: u64,
    pub not_modified: u64,
    /// What the primary budget was spent on, as the fake tells it (`GET issue`,
    /// `graphql IssueByNumber`, …).
    pub spent: std::collections::BTreeMap<String, u64>,
    /// What the warm-up rounds before the measured ones spent ([`Plan::warmup`]): core,
    /// GraphQL points; `None` without warm-up.
    pub warmup_used: Option<(u64, u64)>,
    pub elapsed: Duration,
}

impl Outcome {
    pub fn quota(&self) -> u64 {
        self.core_used + self.graphql_used
    }
}

/// One loop's record of its calls.
#[derive(Default)]
struct Recorder {
    latencies_us: Vec<u32>,
    cache_hit_us: Vec<u32>,
    cache_hit_proxy_us: Vec<u32>,
    revalidated: u64,
    coalesced: u64,
    graphql_calls: u64,
    get_calls: u64,
    comments: u64,
    limit_errors: u64,
    other_errors: u64,
    first_error: Option<String>,
}

/// How the proxy says it answered (`x-arbiter-cache`: `hit` — without the upstream —,
/// `revalidated`, `coalesced`, `miss`); nothing when the answer is GitHub's own.
fn cache_outcome(headers: &reqwest::header::HeaderMap) -> Option<&str> {
    headers.get("x-arbiter-cache").and_then(|v| v.to_str().ok())
}

/// The proxy's own time on an answer, microseconds: its `Server-Timing: arbiter;dur=MS`.
fn proxy_time_us(headers: &reqwest::header::HeaderMap) -> Option<u32> {
    headers.get_all("server-timing").iter().find_map(|value| {
        let ms = value.to_str().ok()?.strip_prefix("arbiter;dur=")?;
        let ms: f64 = ms.parse().ok()?;
        Some((ms * 1000.0).round() as u32)
    })
}

/// Whether an answer is a rate limit, primary or secondary, GitHub's or arbiter's.
fn is_limit(status: u16, headers: &reqwest::header::HeaderMap, body: &[u8]) -> bool {
    if status == 403 || status == 429 {
        let remaining_zero = headers
            .get("x-ratelimit-remaining")
            .is_some_and(|v| v.as_bytes() == b"0");
        let text = String::from_utf8_lossy(body).to_ascii_lowercase();
        return remaining_zero || headers.contains_key("retry-after") || text.contains("rate limit");
    }
    status == 200
        && serde_json::from_slice::<Value>(body).is_ok_and(|v| {
            v["errors"]
                .as_array()
                .is_some_and(|errors| errors.iter().any(|e| e["type"] == "RATE_LIMITED"))
        })
}

struct Loop {
    client: u32,
    lp: u32,
    base: String,
    http: reqwest::Client,
    record: Recorder,
}

impl Loop {
    async fn call(&mut self, call: &Call) {
        let owner = login(self.client);
        let (method, path, body) = match call {
            Call::IssueList => (
                "POST",
                "/graphql".to_string(),
                json!({"query": gh::ISSUE_LIST, "variables": {"limit": 30, "owner": owner, "repo": "app", "states": ["OPEN"]}}),
            ),
            Call::PrList => (
                "POST",
                "/graphql".to_string(),
                json!({"query": gh::PR_LIST, "variables": {"limit": 30, "owner": owner, "repo": "app", "state": ["OPEN"]}}),
            ),
            Call::PrView(n) => (
                "POST",
                "/graphql".to_string(),
                json!({"query": gh::PR_VIEW, "variables": {"owner": owner, "pr_number": n, "repo": "app"}}),
            ),
            Call::IssueView(n) => (
                "POST",
                "/graphql".to_string(),
                json!({"query": gh::ISSUE_VIEW, "variables": {"number": n, "owner": owner, "repo": "app"}}),
            ),
            Call::Get(path) => ("GET", path.clone(), Value::Null),
            Call::Comment(n) => (
                "POST",
                format!("/repos/{owner}/app/issues/{n}/comments"),
                json!({"body": format!("Loop {} was here.", self.lp)}),
            ),
        };
        let mut request = match method {
            "GET" => self.http.get(format!("{}{path}", self.base)),
            _ => self.http.post(format!("{}{path}", self.base)).json(&body),
        };
        request = request.header("authorization", format!("token {}", token(self.client)));
        for (name, value) in gh::HEADERS {
            request = request.header(name, value);
        }
        match call {
            Call::Get(_) => self.record.get_calls += 1,
            Call::Comment(_) => self.record.comments += 1,
            _ => self.record.graphql_calls += 1,
        }
        let began = Instant::now();
        let answer = async {
            let response = request.send().await?;
            let status = response.status().as_u16();
            let headers = response.headers().clone();
            let body = response.bytes().await?;
            reqwest::Result::Ok((status, headers, body))
        }
        .await;
        let received = Instant::now();
        let took = u32::try_from((received - began).as_micros()).unwrap_or(u32::MAX);
        self.record.latencies_us.push(took);
        let (status, headers, body) = match answer {
            Ok(answer) => answer,
            Err(e) => return self.fail(format!("{method} {path}: {e}")),
        };
        if is_limit(status, &headers, &body) {
            self.record.limit_errors += 1;
            return;
        }
        match status {
            200 | 201 | 304 => {}
            other => return self.fail(format!("{method} {path}: HTTP {other}")),
        }
        match cache_outcome(&headers) {
            Some("hit") => {
                self.record.cache_hit_us.push(took);
                if let Some(us) = proxy_time_us(&headers) {
                    self.record.cache_hit_proxy_us.push(us);
                }
            }
            Some("revalidated") => self.record.revalidated += 1,
            Some("coalesced") => self.record.coalesced += 1,
            _ => {}
        }
    }

    fn fail(&mut self, what: String) {
        self.record.other_errors += 1;
        self.record.first_error.get_or_insert(what);
    }
}

/// When a loop's rounds are due.
struct Schedule<'a> {
    /// Its client's start after the others' (clients are hosts, started apart).
    spread: Duration,
    interval: Duration,
    jitter: Duration,
    /// Between one call and the next.
    gap: Duration,
    random: &'a mut XorShift,
}

impl Schedule<'_> {
    /// Runs `rounds` of `one`, the first due at `from` plus the client's spread, each next
    /// one the interval plus jitter after the previous one ended, as `arbiter watch` does;
    /// bounded by twice their planned length: past it no more rounds start.
    async fn rounds(&mut self, one: &mut Loop, from: Instant, rounds: std::ops::Range<u32>) {
        let count = rounds.end.saturating_sub(rounds.start);
        let stop = from + self.interval * count * 2 + self.interval;
        let mut due = from + self.spread;
        for r in rounds {
            if Instant::now() >= stop {
                break;
            }
            tokio::time::sleep_until(due).await;
            for call in round(&login(one.client), one.lp, r) {
                let next = Instant::now() + self.gap;
                one.call(&call).await;
                tokio::time::sleep_until(next).await;
            }
            due = Instant::now() + self.interval + self.jitter.mul_f64(self.random.unit());
        }
    }
}

/// Runs one replay against `base` (the fake's URL, or a proxy in front of it), while the
/// fake `fake` counts. Every loop stops after its rounds; the whole replay is bounded by
/// twice its planned length: a loop past that starts no more rounds.
pub async fn replay(plan: &Plan, base: &str, fake: &FakeGitHub) -> Result<Outcome> {
    // reqwest is built without a TLS provider of its own (the workspace picks ring); the
    // replay is plain HTTP on loopback, but the client wants one installed.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let interval = plan.hour / ROUNDS_PER_HOUR;
    let jitter = plan.scaled(JITTER);
    let gap = plan.scaled(Duration::from_secs(1));
    let start = Instant::now() + Duration::from_millis(50);
    let warmup = plan.warmup;
    let loops = (plan.clients * plan.loops) as usize;
    // Between the warm-up and the measured rounds every loop waits at `reached`, the fake's
    // counts are read, and `go` lets them on, with their clients spread again as at the start.
    let reached = std::sync::Arc::new(tokio::sync::Barrier::new(loops + 1));
    let go = std::sync::Arc::new(tokio::sync::Barrier::new(loops + 1));
    let mut tasks = tokio::task::JoinSet::new();
    for client in 0..plan.clients {
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(plan.loops as usize)
            .timeout(Duration::from_secs(120))
            .build()
            .context("HTTP client")?;
        // Clients (hosts) start spread over the first interval (a golden-ratio sequence).
        let spread = interval.mul_f64((f64::from(client) * 0.618_034).fract());
        for lp in 0..plan.loops {
            let mut one = Loop {
                client,
                lp,
                base: base.to_string(),
                http: http.clone(),
                record: Recorder::default(),
            };
            let rounds = plan.rounds;
            let (reached, go) = (reached.clone(), go.clone());
            // Each loop its own deterministic sequence, for its jitter.
            let mut random = XorShift::new(client.wrapping_mul(64).wrapping_add(lp));
            tasks.spawn(async move {
                let mut schedule = Schedule {
                    spread,
                    interval,
                    jitter,
                    gap,
                    random: &mut random,
                };
                let mut from = start;
                if warmup > 0 {
                    schedule.rounds(&mut one, from, 0..warmup).await;
                    // What the clients saw during the warm-up is not measured.
                    one.record = Recorder::default();
                    reached.wait().await;
                    go.wait().await;
                    from = Instant::now();
                }
                schedule.rounds(&mut one, from, warmup..warmup + rounds).await;
                one.record
            });
        }
    }
    let mut outcome = Outcome::default();
    let (mut before, mut measured_from) = (None, start);
    if warmup > 0 {
        reached.wait().await;
        before = Some(fake.stats());
        go.wait().await;
        measured_from = Instant::now();
    }
    while let Some(joined) = tasks.join_next().await {
        let record = joined.context("a loop panicked")?;
        outcome.latencies_us.extend(record.latencies_us);
        outcome.cache_hit_us.extend(record.cache_hit_us);
        outcome.cache_hit_proxy_us.extend(record.cache_hit_proxy_us);
        outcome.revalidated += record.revalidated;
        outcome.coalesced += record.coalesced;
        outcome.graphql_calls += record.graphql_calls;
        outcome.get_calls += record.get_calls;
        outcome.comments += record.comments;
        outcome.limit_errors += record.limit_errors;
        outcome.other_errors += record.other_errors;
        if outcome.first_error.is_none() {
            outcome.first_error = record.first_error;
        }
    }
    outcome.elapsed = measured_from.elapsed();
    outcome.calls = outcome.latencies_us.len() as u64;
    outcome.latencies_us.sort_unstable();
    outcome.cache_hit_us.sort_unstable();
    outcome.cache_hit_proxy_us.sort_unstable();
    // What the measured rounds spent: the fake's counts at the end, less those at the
    // end of the warm-up.
    let mut spent = Counted::of(&fake.stats());
    if let Some(before) = before.as_ref().map(Counted::of) {
        spent = spent.since(&before);
        outcome.warmup_used = Some((before.core, before.graphql));
    }
    outcome.upstream_requests = spent.requests;
    outcome.core_used = spent.core;
    outcome.graphql_used = spent.graphql;
    outcome.not_modified = spent.not_modified;
    outcome.spent = spent.on;
    Ok(outcome)
}

/// The fake's counts, all users together.
#[derive(Default)]
struct Counted {
    requests: u64,
    core: u64,
    graphql: u64,
    not_modified: u64,
    on: std::collections::BTreeMap<String, u64>,
}

impl Counted {
    fn of(stats: &arbiter_fake_github::Stats) -> Counted {
        let mut counted = Counted {
            requests: stats.requests,
            ..Counted::default()
        };
        for user in stats.users.values() {
            counted.core += user.core_used;
            counted.graphql += user.graphql_used;
            counted.not_modified += user.not_modified;
            for (what, cost) in &user.spent {
                *counted.on.entry(what.clone()).or_default() += cost;
            }
        }
        counted
    }

    /// What was counted after `before`.
    fn since(mut self, before: &Counted) -> Counted {
        self.requests -= before.requests;
        self.core -= before.core;
        self.graphql -= before.graphql;
        self.not_modified -= before.not_modified;
        for (what, cost) in &before.on {
            if let Some(now) = self.on.get_mut(what) {
                *now -= cost;
            }
        }
        self.on.retain(|_, cost| *cost > 0);
        self
    }
}

/// How the clients reach GitHub.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// Straight to the fake, as `gh` does without a proxy.
    Direct,
    /// Through arbiter's proxy, its buckets in this arbiter store.
    Arbiter(System),
}

impl Via {
    pub fn label(self) -> String {
        match self {
            Via::Direct => "direct to GitHub (the fake)".to_string(),
            Via::Arbiter(store) => format!(
                "through arbiter's proxy · {}",
                store.label().trim_start_matches("arbiter · ")
            ),
        }
    }
}

/// One replay on a fresh fake, direct or through a proxy started for it.
///
/// The fake and the proxy each run on a [`Host`] of their own (their own runtime and
/// threads), as GitHub and `arbiter watch` are processes of their own: in the replay's
/// runtime, an answer the proxy has at hand would wait its turn behind the hundreds of
/// simulated loops' tasks, which is the harness's cost, not the proxy's. The cores are
/// still shared, as on a host that runs its loops beside its proxy.
pub async fn run(plan: &Plan, via: Via, targets: &Targets) -> Result<Outcome> {
    let github = Host::new("fake-github")?;
    let config = fake_config(plan);
    let fake = github
        .run(FakeGitHub::start(config))
        .await?
        .context("starting the fake GitHub")?;
    let outcome = match via {
        Via::Direct => replay(&Plan { warmup: 0, ..*plan }, &fake.url(), &fake).await,
        Via::Arbiter(store) => {
            let url = match store {
                System::ArbiterSqliteNormal => &targets.sqlite_normal,
                System::ArbiterPostgres => &targets.arbiter_postgres,
                _ => &targets.sqlite_full,
            }
            .clone();
            let host = Host::new("arbiter-proxy")?;
            let (upstream, plan_here) = (fake.url(), *plan);
            let proxy = host
                .run(async move { proxy::start(&upstream, &plan_here, &url).await })
                .await??;
            let outcome = replay(plan, &proxy.url, &fake).await;
            host.run(proxy.stop()).await?;
            outcome
        }
    };
    github.run(fake.shutdown()).await?;
    outcome
}

/// A server's own runtime, on threads of its own (2, as `arbiter watch` on this machine's
/// 2 cores): what a process of its own would have.
struct Host {
    name: &'static str,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Host {
    fn new(name: &'static str) -> Result<Host> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name(name)
            .enable_all()
            .build()
            .with_context(|| format!("the {name} runtime"))?;
        Ok(Host {
            name,
            runtime: Some(runtime),
        })
    }

    /// Runs `work` on this host, and waits for it from the caller's runtime.
    async fn run<F>(&self, work: F) -> Result<F::Output>
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let runtime = self.runtime.as_ref().expect("a running host");
        runtime
            .spawn(work)
            .await
            .with_context(|| format!("the {} host's task failed", self.name))
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        // Dropped from the replay's runtime: a runtime may not block there.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// What the goals are checked on.
#[derive(Debug, Clone, Copy)]
pub struct Summary {
    pub quota: u64,
    /// What the warm-up before the measured rounds spent, if there was one.
    pub warmup_quota: Option<u64>,
    pub limit_errors: u64,
    pub cache_hits: u64,
    /// Whole calls as the clients saw them.
    pub cache_hit_p50: Duration,
    pub cache_hit_p99: Duration,
    /// The proxy's own time on them (`Server-Timing`): the latency it adds.
    pub cache_hit_added_p50: Duration,
    pub cache_hit_added_p99: Duration,
}

impl Outcome {
    pub fn measurement(&self) -> Measurement {
        Measurement {
            ops: self.calls,
            ok: self.calls - self.limit_errors - self.other_errors,
            attempts: self.calls,
            warmup_ok: 0,
            elapsed: self.elapsed,
            sorted_us: self.latencies_us.clone(),
            capped: false,
            error: self.first_error.clone(),
            drained: false,
        }
    }

    pub fn summary(&self) -> Summary {
        Summary {
            quota: self.quota(),
            warmup_quota: self.warmup_used.map(|(core, graphql)| core + graphql),
            limit_errors: self.limit_errors,
            cache_hits: self.cache_hit_us.len() as u64,
            cache_hit_p50: percentile(&self.cache_hit_us, 50.0),
            cache_hit_p99: percentile(&self.cache_hit_us, 99.0),
            cache_hit_added_p50: percentile(&self.cache_hit_proxy_us, 50.0),
            cache_hit_added_p99: percentile(&self.cache_hit_proxy_us, 99.0),
        }
    }
}

/// The notes of a replay's row: what it cost upstream and what the clients saw.
pub fn note(o: &Outcome, via: Via, direct_quota: Option<u64>, plan: &Plan) -> String {
    let mut note = format!(
        "calls {} (GraphQL {}, REST GET {}, comments {}: writes {:.1}%); \
         upstream quota {} (core {} + graphql {}); {} upstream requests ({} answered 304); limit errors {}",
        thousands(o.calls),
        thousands(o.graphql_calls),
        thousands(o.get_calls),
        thousands(o.comments),
        o.comments as f64 * 100.0 / o.calls.max(1) as f64,
        thousands(o.quota()),
        thousands(o.core_used),
        thousands(o.graphql_used),
        thousands(o.upstream_requests),
        thousands(o.not_modified),
        thousands(o.limit_errors),
    );
    if o.other_errors > 0 {
        note.push_str(&format!(
            "; other errors {} (first: {})",
            thousands(o.other_errors),
            o.first_error.as_deref().unwrap_or("?")
        ));
    }
    if via != Via::Direct {
        let share = |quota: u64| {
            direct_quota
                .filter(|d| *d > 0)
                .map(|direct| format!("{:.1}% of direct", quota as f64 * 100.0 / direct as f64))
        };
        if let Some(share) = share(o.quota()) {
            note.push_str(&format!("; quota {share}"));
        }
        if let Some((core, graphql)) = o.warmup_used {
            note.push_str(&format!(
                "; measured after {} warm-up rounds per loop, which spent {} (core {} + graphql {}){}",
                plan.warmup,
                thousands(core + graphql),
                thousands(core),
                thousands(graphql),
                share(core + graphql).map(|s| format!(" ({s})")).unwrap_or_default(),
            ));
        }
        let defaults = arbiter_github::ProxyConfig::default();
        if plan.graphql_max_age != defaults.graphql_max_age {
            note.push_str(&format!(
                "; GraphQL max age {}",
                humantime::format_duration(plan.graphql_max_age)
            ));
        }
        if plan.graphql_view_max_age != defaults.graphql_view_max_age {
            note.push_str(&format!(
                "; GraphQL view max age {}",
                humantime::format_duration(plan.graphql_view_max_age)
            ));
        }
        note.push_str(&format!(
            "; cache hits {}: the proxy's time (Server-Timing) p50 {}, p99 {}, the whole call p50 {}, p99 {}; \
             revalidated {}, coalesced {}",
            thousands(o.cache_hit_us.len() as u64),
            format_latency(percentile(&o.cache_hit_proxy_us, 50.0)),
            format_latency(percentile(&o.cache_hit_proxy_us, 99.0)),
            format_latency(percentile(&o.cache_hit_us, 50.0)),
            format_latency(percentile(&o.cache_hit_us, 99.0)),
            thousands(o.revalidated),
            thousands(o.coalesced),
        ));
        let mut spent: Vec<(&String, &u64)> = o.spent.iter().collect();
        spent.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        let spent: Vec<String> = spent
            .into_iter()
            .map(|(what, cost)| format!("{what} {}", thousands(*cost)))
            .collect();
        note.push_str(&format!("; quota spent on: {}", spent.join(", ")));
    }
    note
}

/// The issue's goals, one line per number of clients replayed both ways.
pub fn goals(runs: &[(Plan, Via, Summary)]) -> Vec<String> {
    let mut lines = Vec::new();
    for (plan, via, arbiter) in runs {
        if *via == Via::Direct {
            continue;
        }
        let Some((_, _, direct)) = runs
            .iter()
            .find(|(p, v, _)| *v == Via::Direct && p.clients == plan.clients)
        else {
            continue;
        };
        let met = |ok: bool| if ok { "met" } else { "NOT met" };
        let share = arbiter.quota as f64 * 100.0 / direct.quota.max(1) as f64;
        let measured = match arbiter.warmup_quota {
            Some(warmup) => format!(
                " in the hour after {} warm-up rounds per loop (the first hour, from an empty cache: {:.1}%)",
                plan.warmup,
                warmup as f64 * 100.0 / direct.quota.max(1) as f64
            ),
            None => String::new(),
        };
        lines.push(format!(
            "goals · fleet of {} client(s), {}: upstream quota through arbiter {share:.1}% of direct{measured} (goal ≤ 10%: {}); \
             limit errors through arbiter {} (goal 0: {}), direct {}; latency the proxy adds on a cache hit \
             (its Server-Timing) p50 {}, p99 {} over {} hits (goal p99 < 1 ms: {}); the whole call as the client saw it, \
             loopback and this machine's scheduling of the simulated loops included: p50 {}, p99 {}",
            plan.clients,
            via.label(),
            met(share <= 10.0),
            arbiter.limit_errors,
            met(arbiter.limit_errors == 0),
            direct.limit_errors,
            format_latency(arbiter.cache_hit_added_p50),
            format_latency(arbiter.cache_hit_added_p99),
            thousands(arbiter.cache_hits),
            met(arbiter.cache_hits > 0 && arbiter.cache_hit_added_p99 < Duration::from_millis(1)),
            format_latency(arbiter.cache_hit_p50),
            format_latency(arbiter.cache_hit_p99),
        ));
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_round_is_thirty_calls_mostly_graphql_with_a_comment_every_fourth_round() {
        let comments = |calls: &[Call]| calls.iter().filter(|c| matches!(c, Call::Comment(_))).count();
        let quiet = round("client-0", 3, 5);
        assert_eq!(quiet.len(), CALLS_PER_ROUND - 1);
        assert_eq!(comments(&quiet), 0);
        let calls = round("client-0", 3, 7);
        assert_eq!(calls.len(), CALLS_PER_ROUND);
        assert_eq!(calls.iter().filter(|c| c.graphql()).count(), 16);
        assert_eq!(calls.iter().filter(|c| matches!(c, Call::Get(_))).count(), 13);
        assert_eq!(comments(&calls), 1);
        let hour: usize = (0..ROUNDS_PER_HOUR).map(|r| comments(&round("client-0", 0, r))).sum();
        assert_eq!(hour, 3, "rounds 4, 8 and 12 of the hour");
        for call in &calls {
            match call {
                Call::PrView(n) => assert!((ISSUES + 1..=ISSUES + PULLS).contains(n)),
                Call::IssueView(n) | Call::Comment(n) => assert!((1..=ISSUES).contains(n)),
                _ => {}
            }
        }
    }

    #[test]
    fn limits_are_recognised_as_github_and_arbiter_say_them() {
        let mut headers = reqwest::header::HeaderMap::new();
        assert!(!is_limit(403, &headers, b"{\"message\":\"Resource not accessible\"}"));
        headers.insert("retry-after", "60".parse().unwrap());
        assert!(is_limit(403, &headers, b"{}"));
        assert!(is_limit(
            429,
            &reqwest::header::HeaderMap::new(),
            b"rate limit: wait 3s"
        ));
        assert!(is_limit(
            200,
            &reqwest::header::HeaderMap::new(),
            br#"{"errors":[{"type":"RATE_LIMITED"}]}"#
        ));
        assert!(!is_limit(200, &reqwest::header::HeaderMap::new(), br#"{"data":{}}"#));
    }

    #[test]
    fn the_proxy_says_how_it_answered() {
        let mut headers = reqwest::header::HeaderMap::new();
        assert_eq!(cache_outcome(&headers), None, "GitHub's own answer");
        headers.insert("x-arbiter-cache", "hit".parse().unwrap());
        assert_eq!(cache_outcome(&headers), Some("hit"));
    }
}
