//! GitHub's rate limits as its documentation states them, per user (every token of one user
//! spends the same budgets), in time compressed by the configured scale.
//!
//! - Primary limits: a fixed window per user and resource (`core` 5,000 an hour, `graphql`
//!   5,000 points an hour, `search` 30 a minute) that starts with the first request after
//!   the last window ended and resets whole at its end (`x-ratelimit-reset`).
//! - Secondary limits: at most 100 requests in flight; at most 900 points a minute for REST
//!   (GET, HEAD and OPTIONS 1, other methods 5) and 2,000 for GraphQL (queries 1, mutations
//!   5); at most 80 content-creating requests a minute and 500 an hour. A request over one
//!   of them is refused with `retry-after`, and so is every request of that user until then.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;

/// GitHub's documented limits; every duration is in GitHub's time (divided by the scale).
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// `core` requests per `primary_window`.
    pub core: u64,
    /// `graphql` points per `primary_window`.
    pub graphql: u64,
    pub primary_window: Duration,
    /// `search` requests per `search_window`.
    pub search: u64,
    pub search_window: Duration,
    /// Requests in flight at once, per user (secondary).
    pub concurrency: u64,
    /// REST points per `points_window` (secondary).
    pub rest_points: u64,
    /// GraphQL points per `points_window` (secondary).
    pub graphql_points: u64,
    pub points_window: Duration,
    /// Content-creating requests per minute and per hour (secondary).
    pub content_per_minute: u64,
    pub content_per_hour: u64,
    /// How long a user is refused after a concurrency hit (GitHub: "at least one minute").
    pub secondary_wait: Duration,
    /// The HTTP status of a refusal: 403 (what GitHub mostly sends) or 429.
    pub status: u16,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            core: 5000,
            graphql: 5000,
            primary_window: Duration::from_secs(3600),
            search: 30,
            search_window: Duration::from_secs(60),
            concurrency: 100,
            rest_points: 900,
            graphql_points: 2000,
            points_window: Duration::from_secs(60),
            content_per_minute: 80,
            content_per_hour: 500,
            secondary_wait: Duration::from_secs(60),
            status: 403,
        }
    }
}

/// The budgets `x-ratelimit-resource` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    Core,
    Graphql,
    Search,
}

impl Resource {
    pub const ALL: [Resource; 3] = [Resource::Core, Resource::Graphql, Resource::Search];

    pub fn as_str(self) -> &'static str {
        match self {
            Resource::Core => "core",
            Resource::Graphql => "graphql",
            Resource::Search => "search",
        }
    }

    fn index(self) -> usize {
        self as usize
    }

    fn limit(self, limits: &Limits) -> u64 {
        match self {
            Resource::Core => limits.core,
            Resource::Graphql => limits.graphql,
            Resource::Search => limits.search,
        }
    }

    fn window(self, limits: &Limits) -> Duration {
        match self {
            Resource::Search => limits.search_window,
            _ => limits.primary_window,
        }
    }
}

/// Real time and GitHub's time: GitHub's durations divided by `scale` are real durations.
#[derive(Debug, Clone)]
pub struct Clock {
    scale: f64,
    start: Instant,
    start_wall: SystemTime,
}

impl Clock {
    pub fn new(scale: f64) -> Clock {
        Clock {
            scale,
            start: Instant::now(),
            start_wall: SystemTime::now(),
        }
    }

    /// The real length of GitHub's `duration`.
    pub fn real(&self, duration: Duration) -> Duration {
        duration.div_f64(self.scale)
    }

    /// Unix seconds at `at`, rounded up (a reset is never announced early).
    pub fn unix_ceil(&self, at: Instant) -> u64 {
        let wall = self.start_wall + at.saturating_duration_since(self.start);
        let since = wall.duration_since(UNIX_EPOCH).unwrap_or_default();
        since.as_secs() + u64::from(since.subsec_nanos() > 0)
    }
}

/// Whole seconds to wait for `wait`, rounded up, at least 1: what `retry-after` says.
pub fn retry_after_secs(wait: Duration) -> u64 {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    secs.max(1)
}

/// A fixed window: counts from its start until `start + length`, then starts again at the
/// next use.
#[derive(Debug, Clone, Default)]
struct Window {
    start: Option<Instant>,
    used: u64,
}

impl Window {
    fn roll(&mut self, now: Instant, length: Duration) {
        if self.start.is_some_and(|start| now >= start + length) {
            *self = Window::default();
        }
    }

    /// When this window resets (a window not started yet would reset `length` from now).
    fn reset(&self, now: Instant, length: Duration) -> Instant {
        self.start.unwrap_or(now) + length
    }

    fn add(&mut self, now: Instant, amount: u64) {
        self.start.get_or_insert(now);
        self.used += amount;
    }
}

/// What a response tells of a budget: the `x-ratelimit-*` headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct RateHeaders {
    pub limit: u64,
    pub remaining: u64,
    pub used: u64,
    /// Unix seconds.
    pub reset: u64,
    #[serde(skip)]
    pub resource: Resource,
}

/// Per login, since the fake started.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct UserStats {
    /// Requests answered (every status).
    pub requests: u64,
    pub core_used: u64,
    pub graphql_used: u64,
    pub search_used: u64,
    /// Conditional requests answered 304 (free).
    pub not_modified: u64,
    /// Requests refused by a primary limit (GraphQL's `RATE_LIMITED` included).
    pub primary_hits: u64,
    /// Requests refused by a secondary limit.
    pub secondary_hits: u64,
    /// The most requests of this user in flight at once.
    pub max_concurrency: u64,
    /// Content-creating requests served.
    pub content_created: u64,
    /// Primary budget spent, by what it was spent on: a REST request's method and route
    /// (`GET issue`, `POST comments`), or a GraphQL operation's name (`graphql IssueList`).
    #[serde(default)]
    pub spent: std::collections::BTreeMap<String, u64>,
}

/// How a request spends secondary points.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Points {
    Rest(u64),
    Graphql(u64),
}

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The primary budget of this resource is spent until its reset.
    Primary,
    /// A secondary limit: retry after this long (real time).
    Secondary(Duration),
}

/// One user's budgets.
#[derive(Debug, Default)]
pub struct Budget {
    primary: [Window; 3],
    rest_points: Window,
    graphql_points: Window,
    content_minute: Window,
    content_hour: Window,
    blocked_until: Option<Instant>,
    in_flight: u64,
    pub stats: UserStats,
}

impl Budget {
    /// A request starts: counts it in flight. `Err` when that makes more than the
    /// concurrency limit (it still counts until [`Budget::leave`]).
    pub fn enter(&mut self, limits: &Limits) -> bool {
        self.stats.requests += 1;
        self.in_flight += 1;
        self.stats.max_concurrency = self.stats.max_concurrency.max(self.in_flight);
        self.in_flight <= limits.concurrency
    }

    pub fn leave(&mut self) {
        self.in_flight = self.in_flight.saturating_sub(1);
    }

    /// Refuses the user for a secondary limit until `now + wait` (real time).
    pub fn secondary_hit(&mut self, now: Instant, wait: Duration) -> Refusal {
        let until = now + wait;
        self.blocked_until = Some(self.blocked_until.map_or(until, |b| b.max(until)));
        self.stats.secondary_hits += 1;
        Refusal::Secondary(wait)
    }

    /// Checks and spends the secondary limits of one request: a user still blocked by an
    /// earlier hit, points per minute, content creation per minute and hour. Nothing is
    /// spent when it is refused.
    pub fn admit_secondary(
        &mut self,
        now: Instant,
        limits: &Limits,
        clock: &Clock,
        points: Points,
        content: bool,
    ) -> Result<(), Refusal> {
        if let Some(until) = self.blocked_until {
            if now < until {
                self.stats.secondary_hits += 1;
                return Err(Refusal::Secondary(until - now));
            }
            self.blocked_until = None;
        }
        let points_window = clock.real(limits.points_window);
        let (window, amount, limit) = match points {
            Points::Rest(n) => (&mut self.rest_points, n, limits.rest_points),
            Points::Graphql(n) => (&mut self.graphql_points, n, limits.graphql_points),
        };
        window.roll(now, points_window);
        if window.used + amount > limit {
            let wait = window.reset(now, points_window) - now;
            return Err(self.secondary_hit(now, wait));
        }
        if content {
            let minute = clock.real(Duration::from_secs(60));
            let hour = clock.real(Duration::from_secs(3600));
            self.content_minute.roll(now, minute);
            self.content_hour.roll(now, hour);
            if self.content_minute.used >= limits.content_per_minute {
                let wait = self.content_minute.reset(now, minute) - now;
                return Err(self.secondary_hit(now, wait));
            }
            if self.content_hour.used >= limits.content_per_hour {
                let wait = self.content_hour.reset(now, hour) - now;
                return Err(self.secondary_hit(now, wait));
            }
        }
        let window = match points {
            Points::Rest(_) => &mut self.rest_points,
            Points::Graphql(_) => &mut self.graphql_points,
        };
        window.add(now, amount);
        if content {
            self.content_minute.add(now, 1);
            self.content_hour.add(now, 1);
            self.stats.content_created += 1;
        }
        Ok(())
    }

    /// Gives back the content creation counted for a request that created nothing (a
    /// write refused as invalid).
    pub fn created_nothing(&mut self) {
        self.content_minute.used = self.content_minute.used.saturating_sub(1);
        self.content_hour.used = self.content_hour.used.saturating_sub(1);
        self.stats.content_created = self.stats.content_created.saturating_sub(1);
    }

    /// Records `cost` of primary budget spent on `what` ([`UserStats::spent`]).
    pub fn spent_on(&mut self, what: String, cost: u64) {
        *self.stats.spent.entry(what).or_default() += cost;
    }

    /// Spends `cost` from the primary budget of `resource`; refused (nothing spent) when
    /// it does not fit in what remains.
    pub fn charge_primary(
        &mut self,
        now: Instant,
        limits: &Limits,
        clock: &Clock,
        resource: Resource,
        cost: u64,
    ) -> Result<(), Refusal> {
        let length = clock.real(resource.window(limits));
        let window = &mut self.primary[resource.index()];
        window.roll(now, length);
        if window.used + cost > resource.limit(limits) {
            self.stats.primary_hits += 1;
            return Err(Refusal::Primary);
        }
        window.add(now, cost);
        match resource {
            Resource::Core => self.stats.core_used += cost,
            Resource::Graphql => self.stats.graphql_used += cost,
            Resource::Search => self.stats.search_used += cost,
        }
        Ok(())
    }

    /// The `x-ratelimit-*` values of `resource` now.
    pub fn headers(&mut self, now: Instant, limits: &Limits, clock: &Clock, resource: Resource) -> RateHeaders {
        let length = clock.real(resource.window(limits));
        let window = &mut self.primary[resource.index()];
        window.roll(now, length);
        let limit = resource.limit(limits);
        RateHeaders {
            limit,
            remaining: limit.saturating_sub(window.used),
            used: window.used,
            reset: clock.unix_ceil(window.reset(now, length)),
            resource,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            core: 3,
            rest_points: 10,
            content_per_minute: 2,
            ..Limits::default()
        }
    }

    #[test]
    fn a_primary_window_refuses_past_its_limit_and_resets_whole() {
        let clock = Clock::new(3600.0); // an hour is a second
        let limits = limits();
        let mut budget = Budget::default();
        let t0 = Instant::now();
        for _ in 0..3 {
            budget.charge_primary(t0, &limits, &clock, Resource::Core, 1).unwrap();
        }
        assert_eq!(
            budget.charge_primary(t0, &limits, &clock, Resource::Core, 1),
            Err(Refusal::Primary)
        );
        assert_eq!(budget.headers(t0, &limits, &clock, Resource::Core).remaining, 0);
        let later = t0 + Duration::from_millis(1001);
        assert_eq!(budget.headers(later, &limits, &clock, Resource::Core).remaining, 3);
        assert_eq!(budget.stats.core_used, 3);
        assert_eq!(budget.stats.primary_hits, 1);
    }

    #[test]
    fn a_secondary_hit_blocks_the_user_until_its_retry_after() {
        let clock = Clock::new(60.0); // a minute is a second
        let limits = limits();
        let mut budget = Budget::default();
        let t0 = Instant::now();
        budget
            .admit_secondary(t0, &limits, &clock, Points::Rest(5), false)
            .unwrap();
        budget
            .admit_secondary(t0, &limits, &clock, Points::Rest(5), false)
            .unwrap();
        let Err(Refusal::Secondary(wait)) = budget.admit_secondary(t0, &limits, &clock, Points::Rest(1), false) else {
            panic!("the 11th point of 10 was admitted");
        };
        assert_eq!(wait, Duration::from_secs(1));
        // Even a request that would fit is refused until then.
        let mid = t0 + Duration::from_millis(500);
        assert!(
            budget
                .admit_secondary(mid, &limits, &clock, Points::Graphql(1), false)
                .is_err()
        );
        let after = t0 + Duration::from_millis(1001);
        assert!(
            budget
                .admit_secondary(after, &limits, &clock, Points::Rest(1), false)
                .is_ok()
        );
        assert_eq!(budget.stats.secondary_hits, 2);
    }

    #[test]
    fn content_creation_counts_per_minute() {
        let clock = Clock::new(1.0);
        let limits = limits();
        let mut budget = Budget::default();
        let t0 = Instant::now();
        for _ in 0..2 {
            budget
                .admit_secondary(t0, &limits, &clock, Points::Rest(1), true)
                .unwrap();
        }
        assert!(matches!(
            budget.admit_secondary(t0, &limits, &clock, Points::Rest(1), true),
            Err(Refusal::Secondary(_))
        ));
        assert_eq!(budget.stats.content_created, 2);
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_after_secs(Duration::from_millis(10)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1500)), 2);
        assert_eq!(retry_after_secs(Duration::from_secs(60)), 60);
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
    }
}
