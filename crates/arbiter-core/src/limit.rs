//! Rate-limit buckets: the rules, as plans the store applies.
//!
//! A bucket is a **token bucket** per (namespace, name): it holds at most `burst` tokens and
//! refills at `rate` (`amount` tokens per `per`), continuously. A take of `cost` tokens
//! names one or more buckets and is atomic: it is granted only when every bucket allows it,
//! and then charges every one; otherwise it charges none and answers the wait after which
//! all of them would allow it (the largest of their waits). The state of a bucket is its
//! tokens (a real number) at `updated_at` (the store's clock), plus `frozen_until` and
//! `reset_at` learned from the upstream.
//!
//! **Priority reserve.** `reserve_percent` (default 20) of `burst` is kept for
//! [`Priority::Interactive`] takes: a [`Priority::Normal`] take may not leave fewer than
//! that many tokens, a [`Priority::Background`] take not fewer than twice that (at most the
//! whole burst). The reserve a take must leave is capped at `burst - cost`, so every take
//! that fits in the burst is granted once the bucket is full. An interactive take may
//! spend the bucket to zero.
//!
//! **Fair share** (`fair: true`). Takers are *parties* (the request's `party`, e.g. the
//! namespace a caller acts for; none is the party `""`). A party that took within the last
//! window (`burst / rate`, at least 1 s, at most 1 h) is active; with `n` active parties
//! (the caller counted), each has a sub-bucket of rate `rate / n` and burst `burst / n`,
//! charged by its takes. While the bucket is **contended** (fewer than half its burst
//! left) a party may take only what its sub-bucket holds; while it is not, any party takes
//! freely (borrowing the share others leave idle) and its sub-bucket just empties. So a
//! greedy party cannot starve another: under contention each gets its share of the rate.
//!
//! **Learning from the upstream** ([`plan_observe`]): a `remaining` count corrects the
//! tokens down at once, never up — unless `reset_at` moved forward (a new window), when
//! the tokens become `min(burst, remaining)`; a `limit` that differs from the burst
//! replaces the burst and the rate's amount; a `hit` (the upstream refused) empties the
//! bucket and freezes it: until `now + retry_after` when a non-zero one is given, else
//! until `reset_at` when nothing is `remaining`, else for 60 s (GitHub: a blank or zero
//! retry-after on a secondary limit means wait at least a minute). A frozen bucket grants
//! nothing; it keeps refilling, so it is full again after a long freeze. Times are believed
//! up to [`MAX_AHEAD`] (a day) past the store's clock: a freeze lasts at most that long, and
//! a reset further ahead is ignored, so a bogus header cannot freeze a bucket for years.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::duration::{format_duration, parse_duration};
use crate::name::{BucketName, Namespace};
use crate::{Detail, Error, ErrorKind, Millis, ParseError, Result};

/// The most tokens a bucket may hold, or a rate may count (keeps `f64` arithmetic exact).
pub const MAX_AMOUNT: u64 = 1_000_000_000_000;
/// The default priority reserve, in percent of the burst.
pub const DEFAULT_RESERVE_PERCENT: u8 = 20;
/// How long a hit freezes a bucket when the upstream does not say.
pub const DEFAULT_FREEZE: Duration = Duration::from_secs(60);
/// How far ahead of the store's clock an upstream's times are believed: a freeze lasts at
/// most this long, and a reset further ahead is ignored (a bogus header, or a host whose
/// clock is far off, must not freeze a bucket for years).
pub const MAX_AHEAD: Duration = Duration::from_secs(86_400);
/// The longest a party's fair-share window lasts; parties idle longer are forgotten.
pub const MAX_FAIR_WINDOW_MS: Millis = 3_600_000;
const MIN_FAIR_WINDOW_MS: Millis = 1_000;
/// The longest party name.
pub const MAX_PARTY_LEN: usize = 200;
/// Tolerance when comparing token counts (refill arithmetic is in `f64`).
const EPSILON: f64 = 1e-9;

const RATE_EXPECTED: &str =
    "expected AMOUNT/PERIOD like 5000/h, 900/m, 80/min, 10/s or 500/1h (periods: s, m, min, h, d, or a duration)";

/// A refill rate: `amount` tokens per `per`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub amount: u64,
    pub per: Duration,
}

impl Rate {
    /// Parses `N/s`, `N/m`, `N/min`, `N/h`, `N/d` (also `sec`, `second`, `minute`,
    /// `hour`, `day`) or `N/<duration>` (`500/1h`, `10/250ms`).
    pub fn parse(text: &str) -> Result<Rate, ParseError> {
        let bad = |why: &str| ParseError::new(format!("invalid rate {text:?}: {why}; {RATE_EXPECTED}"));
        let Some((amount, period)) = text.split_once('/') else {
            return Err(bad("there is no '/'"));
        };
        if amount.is_empty() || !amount.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad("the amount must be a whole number"));
        }
        let amount: u64 = amount.parse().map_err(|_| bad("the amount is too large"))?;
        if amount == 0 {
            return Err(bad("the amount must be at least 1"));
        }
        if amount > MAX_AMOUNT {
            return Err(bad(&format!("the amount is larger than {MAX_AMOUNT}")));
        }
        let per = match period {
            "s" | "sec" | "second" | "seconds" => Duration::from_secs(1),
            "m" | "min" | "minute" | "minutes" => Duration::from_secs(60),
            "h" | "hour" | "hours" => Duration::from_secs(3600),
            "d" | "day" | "days" => Duration::from_secs(86_400),
            "" => return Err(bad("the period is missing")),
            other => parse_duration(other).map_err(|e| bad(&format!("bad period: {}", e.message)))?,
        };
        Ok(Rate { amount, per })
    }

    /// Tokens per millisecond.
    pub fn per_ms(&self) -> f64 {
        self.amount as f64 / (self.per.as_millis().max(1) as f64)
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = match self.per.as_millis() {
            1_000 => "s".to_string(),
            60_000 => "m".to_string(),
            3_600_000 => "h".to_string(),
            86_400_000 => "d".to_string(),
            _ => format_duration(self.per),
        };
        write!(f, "{}/{unit}", self.amount)
    }
}

impl std::str::FromStr for Rate {
    type Err = ParseError;
    fn from_str(text: &str) -> Result<Rate, ParseError> {
        Rate::parse(text)
    }
}

impl Serialize for Rate {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Rate {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Rate, D::Error> {
        let text = String::deserialize(d)?;
        Rate::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// Who a take is for, which decides how much of the bucket it may spend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    /// A person waits: may spend the whole bucket, including the reserve.
    Interactive,
    /// Ordinary work: leaves the reserve.
    #[default]
    Normal,
    /// Work that can wait: leaves twice the reserve.
    Background,
}

impl Priority {
    pub fn parse(text: &str) -> Result<Priority, ParseError> {
        match text {
            "interactive" => Ok(Priority::Interactive),
            "normal" => Ok(Priority::Normal),
            "background" => Ok(Priority::Background),
            other => Err(ParseError::new(format!(
                "invalid priority {other:?}: expected interactive, normal or background"
            ))),
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Interactive => "interactive",
            Priority::Normal => "normal",
            Priority::Background => "background",
        }
    }
}

impl std::str::FromStr for Priority {
    type Err = ParseError;
    fn from_str(text: &str) -> Result<Priority, ParseError> {
        Priority::parse(text)
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a bucket is: its rate, its capacity, its reserve and whether it shares fairly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketSpec {
    pub rate: Rate,
    /// The most tokens the bucket holds (and a new bucket starts with).
    pub burst: u64,
    /// The share of the burst kept for interactive takes (see the module docs).
    pub reserve_percent: u8,
    /// Whether parties share the bucket fairly (see the module docs).
    pub fair: bool,
}

impl BucketSpec {
    /// A bucket of `rate` whose burst is one period's amount, with the default reserve.
    pub fn new(rate: Rate) -> BucketSpec {
        BucketSpec {
            rate,
            burst: rate.amount,
            reserve_percent: DEFAULT_RESERVE_PERCENT,
            fair: false,
        }
    }

    /// Checks the fields a caller may set freely (the parsers check the rate).
    pub fn check(&self) -> Result<()> {
        if self.rate.amount == 0 || self.rate.amount > MAX_AMOUNT || self.rate.per.is_zero() {
            return Err(Error::bad_input(format!("invalid rate {}: {RATE_EXPECTED}", self.rate)));
        }
        if self.burst == 0 || self.burst > MAX_AMOUNT {
            return Err(Error::bad_input(format!(
                "invalid burst {}: expected a whole number from 1 to {MAX_AMOUNT}",
                self.burst
            )));
        }
        if self.reserve_percent > 100 {
            return Err(Error::bad_input(format!(
                "invalid reserve {}%: expected a percentage from 0% to 100%",
                self.reserve_percent
            )));
        }
        Ok(())
    }

    /// The fair-share window: `burst / rate`, at least 1 s, at most 1 h.
    pub fn fair_window_ms(&self) -> Millis {
        ((self.burst as f64 / self.rate.per_ms()).ceil() as Millis).clamp(MIN_FAIR_WINDOW_MS, MAX_FAIR_WINDOW_MS)
    }

    /// The tokens a take of `cost` at `priority` must leave in the bucket.
    pub fn floor(&self, priority: Priority, cost: u64) -> f64 {
        let burst = self.burst as f64;
        let reserve = burst * f64::from(self.reserve_percent) / 100.0;
        let floor = match priority {
            Priority::Interactive => 0.0,
            Priority::Normal => reserve,
            Priority::Background => (2.0 * reserve).min(burst),
        };
        floor.min(burst - cost as f64).max(0.0)
    }
}

/// Parses a reserve: `20%` or `20`, from 0 to 100.
pub fn parse_reserve(text: &str) -> Result<u8, ParseError> {
    let digits = text.strip_suffix('%').unwrap_or(text);
    match digits.parse::<u8>() {
        Ok(percent) if percent <= 100 && !digits.starts_with('+') => Ok(percent),
        _ => Err(ParseError::new(format!(
            "invalid reserve {text:?}: expected a percentage from 0% to 100%, like 20%"
        ))),
    }
}

/// A bucket's stored state.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BucketState {
    /// Tokens at `updated_at` (before refill since then).
    pub tokens: f64,
    pub updated_at: Millis,
    /// No take is granted before this time (the upstream refused).
    pub frozen_until: Option<Millis>,
    /// When the upstream's current window ends, as it last said.
    pub reset_at: Option<Millis>,
}

impl BucketState {
    /// A new bucket: full.
    pub fn full(spec: &BucketSpec, now: Millis) -> BucketState {
        BucketState {
            tokens: spec.burst as f64,
            updated_at: now,
            frozen_until: None,
            reset_at: None,
        }
    }

    /// The tokens available at `now`: refilled since `updated_at`, at most the burst.
    pub fn available(&self, spec: &BucketSpec, now: Millis) -> f64 {
        let elapsed = (now - self.updated_at).max(0) as f64;
        (self.tokens + elapsed * spec.rate.per_ms()).min(spec.burst as f64)
    }

    /// The state at `now` with the refill folded in (same availability, `updated_at = now`);
    /// a freeze that has passed is dropped.
    fn at(&self, spec: &BucketSpec, now: Millis) -> BucketState {
        BucketState {
            tokens: self.available(spec, now),
            updated_at: now.max(self.updated_at),
            frozen_until: self.frozen_until.filter(|until| *until > now),
            reset_at: self.reset_at,
        }
    }
}

/// A party's sub-bucket in a fair bucket, as stored (one row per bucket and party).
#[derive(Debug, Clone, PartialEq)]
pub struct PartyState {
    pub party: String,
    /// Its tokens at `updated_at`, the time of its last take.
    pub tokens: f64,
    pub updated_at: Millis,
}

/// A bucket as the store loads it for a take.
#[derive(Debug, Clone, PartialEq)]
pub struct Bucket {
    pub name: BucketName,
    pub spec: BucketSpec,
    pub state: BucketState,
    /// Its parties (fair buckets only; those idle longer than the window are ignored).
    pub parties: Vec<PartyState>,
}

impl Bucket {
    pub fn info(&self, now: Millis) -> BucketInfo {
        BucketInfo {
            name: self.name.clone(),
            spec: self.spec,
            tokens: self.state.available(&self.spec, now),
            frozen_until: self.state.frozen_until.filter(|until| *until > now),
            reset_at: self.state.reset_at,
            now,
        }
    }
}

/// What the upstream said about a bucket (from `x-ratelimit-*` and `retry-after`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Observation {
    pub limit: Option<u64>,
    pub remaining: Option<u64>,
    pub reset_at: Option<Millis>,
    pub retry_after: Option<Duration>,
    /// The upstream refused (a primary or secondary limit).
    pub hit: bool,
}

/// A take: `cost` tokens from every one of `buckets`, all or none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TakeRequest {
    pub namespace: Namespace,
    pub buckets: Vec<BucketName>,
    pub cost: u64,
    pub priority: Priority,
    /// Who the take is for, in fair buckets (none: the party `""`).
    pub party: Option<String>,
}

impl TakeRequest {
    /// Checks what the types do not: at least one bucket, each once; a cost of at least 1;
    /// a party of at most [`MAX_PARTY_LEN`] printable characters.
    pub fn check(&self) -> Result<()> {
        check_buckets_and_cost("take", &self.buckets, self.cost)?;
        if let Some(party) = &self.party
            && (party.is_empty() || party.len() > MAX_PARTY_LEN || party.chars().any(char::is_control))
        {
            return Err(Error::bad_input(format!(
                "invalid party {party:?}: expected 1-{MAX_PARTY_LEN} characters, no control characters"
            )));
        }
        Ok(())
    }

    /// The party name as stored.
    pub fn party_key(&self) -> &str {
        self.party.as_deref().unwrap_or("")
    }
}

/// Checks the buckets and cost of a take or a refund (`what`): at least one bucket, each
/// once, and a cost from 1 to [`MAX_AMOUNT`].
pub fn check_buckets_and_cost(what: &str, buckets: &[BucketName], cost: u64) -> Result<()> {
    if buckets.is_empty() {
        return Err(Error::bad_input(format!(
            "a {what} names no bucket: expected at least one"
        )));
    }
    let mut seen = std::collections::BTreeSet::new();
    if let Some(twice) = buckets.iter().find(|name| !seen.insert(name.as_str())) {
        return Err(Error::bad_input(format!(
            "bucket {twice:?} is named twice in one {what}: expected each bucket once"
        )));
    }
    if cost == 0 || cost > MAX_AMOUNT {
        return Err(Error::bad_input(format!(
            "invalid cost {cost}: expected a whole number from 1 to {MAX_AMOUNT}"
        )));
    }
    Ok(())
}

/// A bucket as a caller sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct BucketInfo {
    pub name: BucketName,
    pub spec: BucketSpec,
    /// Tokens available now.
    pub tokens: f64,
    pub frozen_until: Option<Millis>,
    pub reset_at: Option<Millis>,
    /// The store's clock when this was read.
    pub now: Millis,
}

/// The answer to a take.
#[derive(Debug, Clone, PartialEq)]
pub struct TakeDecision {
    pub granted: bool,
    /// Zero when granted; else how long until every bucket would allow the take.
    pub wait: Duration,
    /// The buckets after the take (as they are, when refused), in the request's order.
    pub buckets: Vec<BucketInfo>,
    /// The bucket that needs the longest wait (refused takes).
    pub limiting: Option<BucketName>,
}

impl TakeDecision {
    /// What a refused take says: `bucket "x" has 0.4 of 1 tokens; wait 2.5s`.
    pub fn refusal(&self) -> String {
        let wait = format_wait(self.wait);
        let Some(bucket) = self
            .limiting
            .as_ref()
            .and_then(|name| self.buckets.iter().find(|b| &b.name == name))
        else {
            return format!("wait {wait}");
        };
        if bucket.frozen_until.is_some() {
            return format!("bucket {:?} is frozen (the upstream refused); wait {wait}", bucket.name);
        }
        format!(
            "bucket {:?} has {} of {} tokens; wait {wait}",
            bucket.name,
            format_tokens(bucket.tokens),
            bucket.spec.burst
        )
    }

    /// The error of a take not granted within the caller's wait.
    pub fn limited(&self) -> Error {
        Error::new(ErrorKind::Limited, format!("not granted: {}", self.refusal())).with_detail(Detail::Limited {
            wait_ms: u64::try_from(self.wait.as_millis()).unwrap_or(u64::MAX),
        })
    }
}

/// Tokens as messages show them: one decimal, rounded down (see [`shown_tokens`]).
pub fn format_tokens(tokens: f64) -> String {
    let text = format!("{:.1}", shown_tokens(tokens, 1));
    text.strip_suffix(".0").map(str::to_string).unwrap_or(text)
}

/// Tokens rounded *down* to `places` decimals, so a bucket never looks fuller than it is: a
/// refused take of 1 used to say `has 1 of 20 tokens` when 0.97 were there. A value within
/// a millionth of a step below it (refill arithmetic in `f64`) counts as the step.
pub fn shown_tokens(tokens: f64, places: i32) -> f64 {
    let scale = 10f64.powi(places);
    ((tokens * scale) + 1e-6).floor() / scale
}

/// A wait as messages show it: `250ms`, `2.5s`, `1h30m`.
pub fn format_wait(wait: Duration) -> String {
    let ms = wait.as_millis();
    if ms < 1_000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{:.1}s", ms as f64 / 1000.0)
    } else {
        format_duration(Duration::from_secs(wait.as_secs()))
    }
}

/// What the store writes for a granted take: each bucket's new state and, in fair
/// buckets, the caller's party.
#[derive(Debug, Clone, PartialEq)]
pub struct BucketWrite {
    pub name: BucketName,
    pub state: BucketState,
    pub party: Option<PartyState>,
}

/// A take's plan: the answer, and what to write (nothing when refused).
#[derive(Debug, Clone, PartialEq)]
pub struct TakePlan {
    pub decision: TakeDecision,
    pub writes: Vec<BucketWrite>,
}

/// The failure of naming a bucket that was never defined.
pub fn not_found(namespace: &Namespace, name: &BucketName) -> Error {
    Error::new(
        ErrorKind::NotFound,
        format!("no bucket {name:?} in namespace {namespace:?}: define it first (arbiter limit define)"),
    )
}

/// Decides a take at `now` over `buckets` (each named by the request, in its order).
/// Granted: every bucket charged `cost`. Refused: nothing written, and the wait until all
/// would allow it. A cost above a bucket's burst could never be granted: bad input.
pub fn plan_take(now: Millis, buckets: &[Bucket], request: &TakeRequest) -> Result<TakePlan> {
    request.check()?;
    let cost = request.cost as f64;
    let party = request.party_key();
    let mut writes = Vec::with_capacity(buckets.len());
    let mut wait_ms: f64 = 0.0;
    let mut limiting: Option<(f64, &BucketName)> = None;
    for bucket in buckets {
        let spec = &bucket.spec;
        if request.cost > spec.burst {
            return Err(Error::bad_input(format!(
                "cost {} is more than bucket {:?} can ever hold (burst {}): expected at most {}",
                request.cost, bucket.name, spec.burst, spec.burst
            )));
        }
        let state = bucket.state.at(spec, now);
        let rate = spec.rate.per_ms();
        let need = cost + spec.floor(request.priority, request.cost);
        let mut wait = if state.tokens + EPSILON >= need {
            0.0
        } else {
            (need - state.tokens) / rate
        };
        if let Some(until) = state.frozen_until {
            wait = wait.max((until - now) as f64);
        }
        let party_write = if spec.fair {
            let share = fair_share(now, bucket, party);
            let contended = state.tokens < spec.burst as f64 / 2.0;
            let sub_need = cost.min(share.burst);
            if contended && share.tokens + EPSILON < sub_need {
                wait = wait.max((sub_need - share.tokens) / share.rate);
            }
            Some(PartyState {
                party: party.to_string(),
                tokens: (share.tokens - cost).max(0.0),
                updated_at: now,
            })
        } else {
            None
        };
        if wait > 0.0 && limiting.is_none_or(|(longest, _)| wait > longest) {
            limiting = Some((wait, &bucket.name));
        }
        wait_ms = wait_ms.max(wait);
        writes.push(BucketWrite {
            name: bucket.name.clone(),
            state: BucketState {
                tokens: (state.tokens - cost).max(0.0),
                ..state
            },
            party: party_write,
        });
    }
    if wait_ms > 0.0 {
        let wait = Duration::from_millis((wait_ms.ceil() as u64).max(1));
        return Ok(TakePlan {
            decision: TakeDecision {
                granted: false,
                wait,
                buckets: buckets.iter().map(|b| b.info(now)).collect(),
                limiting: limiting.map(|(_, name)| name.clone()),
            },
            writes: Vec::new(),
        });
    }
    let infos = buckets
        .iter()
        .zip(&writes)
        .map(|(bucket, write)| BucketInfo {
            name: bucket.name.clone(),
            spec: bucket.spec,
            tokens: write.state.tokens,
            frozen_until: None,
            reset_at: write.state.reset_at,
            now,
        })
        .collect();
    Ok(TakePlan {
        decision: TakeDecision {
            granted: true,
            wait: Duration::ZERO,
            buckets: infos,
            limiting: None,
        },
        writes,
    })
}

/// A party's sub-bucket at `now`.
struct Share {
    tokens: f64,
    rate: f64,
    burst: f64,
}

fn fair_share(now: Millis, bucket: &Bucket, party: &str) -> Share {
    let spec = &bucket.spec;
    let window = spec.fair_window_ms();
    let others = bucket
        .parties
        .iter()
        .filter(|p| p.party != party && now - p.updated_at < window)
        .count();
    let n = (others + 1) as f64;
    let rate = spec.rate.per_ms() / n;
    let burst = spec.burst as f64 / n;
    let tokens = match bucket.parties.iter().find(|p| p.party == party) {
        Some(own) => (own.tokens + (now - own.updated_at).max(0) as f64 * rate).min(burst),
        None => burst,
    };
    Share { tokens, rate, burst }
}

/// What a define writes: the state of a new bucket (full), or an existing one's under its
/// new spec (the refill so far counted at the old rate, the tokens kept up to the new
/// burst); `None` with `if_absent` when it exists (nothing is written).
pub fn plan_define(now: Millis, existing: Option<&Bucket>, spec: &BucketSpec, if_absent: bool) -> Option<BucketState> {
    match existing {
        Some(_) if if_absent => None,
        Some(existing) => {
            let state = existing.state.at(&existing.spec, now);
            Some(BucketState {
                tokens: state.tokens.min(spec.burst as f64),
                ..state
            })
        }
        None => Some(BucketState::full(spec, now)),
    }
}

/// Gives `cost` tokens back to a bucket (a take that was not used), up to its burst.
pub fn plan_refund(now: Millis, spec: &BucketSpec, state: &BucketState, cost: u64) -> BucketState {
    let state = state.at(spec, now);
    BucketState {
        tokens: (state.tokens + cost as f64).min(spec.burst as f64),
        ..state
    }
}

/// Applies what the upstream said (see the module docs): the bucket's new spec and state.
pub fn plan_observe(
    now: Millis,
    spec: &BucketSpec,
    state: &BucketState,
    observation: &Observation,
) -> (BucketSpec, BucketState) {
    let mut new_spec = *spec;
    if let Some(limit) = observation
        .limit
        .filter(|l| *l > 0 && *l <= MAX_AMOUNT && *l != spec.burst)
    {
        new_spec.burst = limit;
        new_spec.rate.amount = limit;
    }
    let mut state = state.at(spec, now);
    state.tokens = state.tokens.min(new_spec.burst as f64);
    let horizon = now.saturating_add(MAX_AHEAD.as_millis() as Millis);
    let reset_at = observation.reset_at.filter(|reset| *reset <= horizon);
    let new_window = match (reset_at, state.reset_at) {
        (Some(new), Some(old)) => new > old,
        (Some(_), None) => true,
        (None, _) => false,
    };
    if let Some(remaining) = observation.remaining {
        let remaining = remaining as f64;
        state.tokens = if new_window {
            remaining.min(new_spec.burst as f64)
        } else {
            state.tokens.min(remaining)
        };
    }
    if reset_at.is_some() {
        state.reset_at = reset_at;
    }
    if observation.hit {
        let until = match observation.retry_after.filter(|d| !d.is_zero()) {
            Some(after) => now.saturating_add(i64::try_from(after.as_millis()).unwrap_or(i64::MAX)),
            None => match reset_at {
                Some(reset) if reset > now && observation.remaining.unwrap_or(0) == 0 => reset,
                _ => now + DEFAULT_FREEZE.as_millis() as Millis,
            },
        }
        .min(horizon);
        state.tokens = 0.0;
        state.frozen_until = Some(state.frozen_until.map_or(until, |old| old.max(until)));
    }
    (new_spec, state)
}

/// A counter the proxy shares through the store, summed over the hosts that count it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counter {
    pub scope: String,
    pub name: String,
    pub value: i64,
    pub updated_at: Millis,
}

/// Checks a counter scope (`github/octocat`), source (a host name) and names.
pub fn check_counters(scope: &str, source: &str, deltas: &[(String, i64)]) -> Result<()> {
    crate::name::validate_name("counter scope", scope)?;
    if source.is_empty() || source.len() > MAX_PARTY_LEN || source.chars().any(char::is_control) {
        return Err(Error::bad_input(format!(
            "invalid counter source {source:?}: expected 1-{MAX_PARTY_LEN} characters, no control characters"
        )));
    }
    for (name, _) in deltas {
        crate::name::validate_name("counter name", name)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn rate(text: &str) -> Rate {
        Rate::parse(text).unwrap()
    }

    fn bucket(name: &str, spec: BucketSpec, tokens: f64, at: Millis) -> Bucket {
        Bucket {
            name: BucketName::parse(name).unwrap(),
            spec,
            state: BucketState {
                tokens,
                updated_at: at,
                frozen_until: None,
                reset_at: None,
            },
            parties: Vec::new(),
        }
    }

    fn request(names: &[&str], cost: u64, priority: Priority) -> TakeRequest {
        TakeRequest {
            namespace: Namespace::default(),
            buckets: names.iter().map(|n| BucketName::parse(n).unwrap()).collect(),
            cost,
            priority,
            party: None,
        }
    }

    /// Applies a granted plan's writes to the buckets.
    fn apply(buckets: &mut [Bucket], plan: &TakePlan) {
        for write in &plan.writes {
            let bucket = buckets.iter_mut().find(|b| b.name == write.name).unwrap();
            bucket.state = write.state;
            if let Some(party) = &write.party {
                bucket.parties.retain(|p| p.party != party.party);
                bucket.parties.push(party.clone());
            }
        }
    }

    #[test]
    fn rates_parse_and_print() {
        for (text, amount, per_s, shown) in [
            ("5000/h", 5000, 3600, "5000/h"),
            ("900/m", 900, 60, "900/m"),
            ("80/min", 80, 60, "80/m"),
            ("10/s", 10, 1, "10/s"),
            ("500/1h", 500, 3600, "500/h"),
            ("5000/hour", 5000, 3600, "5000/h"),
            ("3/d", 3, 86_400, "3/d"),
            ("7/90s", 7, 90, "7/1m30s"),
        ] {
            let r = rate(text);
            assert_eq!((r.amount, r.per), (amount, Duration::from_secs(per_s)), "{text}");
            assert_eq!(r.to_string(), shown);
            assert_eq!(rate(shown), r);
        }
        for (bad, why) in [
            ("5000", "there is no '/'"),
            ("/h", "whole number"),
            ("-1/h", "whole number"),
            ("1.5/h", "whole number"),
            ("0/h", "at least 1"),
            ("5/", "period is missing"),
            ("5/fortnight", "bad period"),
            ("99999999999999999999/s", "too large"),
        ] {
            let err = Rate::parse(bad).unwrap_err();
            assert!(err.message.contains(why), "{bad}: {}", err.message);
            assert!(err.message.contains("expected AMOUNT/PERIOD"), "{}", err.message);
        }
        assert_eq!(serde_json::to_string(&rate("80/min")).unwrap(), "\"80/m\"");
    }

    #[test]
    fn priorities_and_reserves_parse() {
        for p in [Priority::Interactive, Priority::Normal, Priority::Background] {
            assert_eq!(Priority::parse(p.as_str()), Ok(p));
        }
        assert!(
            Priority::parse("urgent")
                .unwrap_err()
                .message
                .contains("expected interactive")
        );
        assert_eq!(Priority::default(), Priority::Normal);
        assert_eq!(parse_reserve("20%"), Ok(20));
        assert_eq!(parse_reserve("0"), Ok(0));
        for bad in ["101%", "-1%", "x", "", "+5"] {
            assert!(parse_reserve(bad).unwrap_err().message.contains("percentage"), "{bad}");
        }
    }

    #[test]
    fn a_take_is_granted_then_waits_for_the_refill() {
        let spec = BucketSpec {
            reserve_percent: 0,
            ..BucketSpec::new(rate("10/s"))
        };
        let mut buckets = vec![bucket("a", spec, 10.0, 0)];
        let req = request(&["a"], 4, Priority::Normal);
        let plan = plan_take(0, &buckets, &req).unwrap();
        assert!(plan.decision.granted);
        assert_eq!(plan.decision.buckets[0].tokens, 6.0);
        apply(&mut buckets, &plan);
        let plan = plan_take(0, &buckets, &req).unwrap();
        apply(&mut buckets, &plan);
        // 2 left; 4 needs 2 more: 200 ms at 10/s.
        let plan = plan_take(0, &buckets, &req).unwrap();
        assert!(!plan.decision.granted);
        assert!(plan.writes.is_empty());
        assert_eq!(plan.decision.wait, Duration::from_millis(200));
        assert_eq!(plan.decision.limiting.as_deref(), Some("a"));
        assert_eq!(plan.decision.refusal(), "bucket \"a\" has 2 of 10 tokens; wait 200ms");
        assert!(plan_take(200, &buckets, &req).unwrap().decision.granted);
        // A cost the bucket can never hold is bad input.
        let err = plan_take(0, &buckets, &request(&["a"], 11, Priority::Normal)).unwrap_err();
        assert_eq!(err.kind, ErrorKind::BadInput);
        assert!(err.message.contains("burst 10"), "{}", err.message);
    }

    #[test]
    fn tokens_are_shown_rounded_down() {
        assert_eq!(format_tokens(0.97), "0.9");
        assert_eq!(format_tokens(1.999_999_999_9), "2");
        assert_eq!(format_tokens(0.0), "0");
        assert_eq!(format_tokens(4999.25), "4999.2");
        assert_eq!(shown_tokens(0.9996, 3), 0.999);
        assert_eq!(shown_tokens(5000.0, 3), 5000.0);
    }

    #[test]
    fn a_multi_bucket_take_is_all_or_none() {
        let spec = BucketSpec {
            reserve_percent: 0,
            ..BucketSpec::new(rate("10/s"))
        };
        let buckets = vec![bucket("a", spec, 10.0, 0), bucket("b", spec, 1.0, 0)];
        let plan = plan_take(0, &buckets, &request(&["a", "b"], 3, Priority::Normal)).unwrap();
        assert!(!plan.decision.granted);
        assert!(plan.writes.is_empty(), "nothing charged");
        assert_eq!(plan.decision.limiting.as_deref(), Some("b"));
        assert_eq!(plan.decision.wait, Duration::from_millis(200));
        assert_eq!(plan.decision.buckets[0].tokens, 10.0);
        let plan = plan_take(0, &buckets, &request(&["a", "b"], 1, Priority::Normal)).unwrap();
        assert!(plan.decision.granted);
        assert_eq!(plan.writes.len(), 2);
        assert_eq!(
            plan.decision.buckets.iter().map(|b| b.tokens).collect::<Vec<_>>(),
            [9.0, 0.0]
        );
    }

    #[test]
    fn the_reserve_is_kept_for_interactive_takes() {
        // burst 10, reserve 20%: normal leaves 2, background 4, interactive 0.
        let spec = BucketSpec::new(rate("10/h"));
        let at = |tokens| vec![bucket("a", spec, tokens, 0)];
        let granted = |tokens, p| {
            plan_take(0, &at(tokens), &request(&["a"], 1, p))
                .unwrap()
                .decision
                .granted
        };
        assert!(granted(5.0, Priority::Background));
        assert!(!granted(4.5, Priority::Background));
        assert!(granted(4.5, Priority::Normal));
        assert!(granted(3.0, Priority::Normal));
        assert!(!granted(2.5, Priority::Normal));
        assert!(granted(2.5, Priority::Interactive));
        assert!(granted(1.0, Priority::Interactive));
        assert!(!granted(0.5, Priority::Interactive));
        // The reserve never makes a take impossible: capped at burst - cost.
        let small = BucketSpec::new(rate("1/s"));
        assert_eq!(small.floor(Priority::Background, 1), 0.0);
        let full = vec![bucket("a", small, 1.0, 0)];
        assert!(
            plan_take(0, &full, &request(&["a"], 1, Priority::Background))
                .unwrap()
                .decision
                .granted
        );
        let all = BucketSpec {
            reserve_percent: 100,
            ..spec
        };
        assert_eq!(all.floor(Priority::Normal, 3), 7.0);
    }

    #[test]
    fn a_frozen_bucket_waits_for_its_freeze() {
        let spec = BucketSpec::new(rate("100/s"));
        let mut buckets = vec![bucket("a", spec, 100.0, 0)];
        let (spec2, state) = plan_observe(
            0,
            &spec,
            &buckets[0].state,
            &Observation {
                hit: true,
                retry_after: Some(Duration::from_secs(5)),
                ..Observation::default()
            },
        );
        assert_eq!(spec2, spec);
        assert_eq!((state.tokens, state.frozen_until), (0.0, Some(5_000)));
        buckets[0].state = state;
        let plan = plan_take(1_000, &buckets, &request(&["a"], 1, Priority::Interactive)).unwrap();
        assert!(!plan.decision.granted);
        assert_eq!(plan.decision.wait, Duration::from_secs(4));
        assert!(
            plan.decision.refusal().contains("frozen"),
            "{}",
            plan.decision.refusal()
        );
        // It kept refilling: full when the freeze ends.
        let plan = plan_take(5_000, &buckets, &request(&["a"], 1, Priority::Interactive)).unwrap();
        assert!(plan.decision.granted);
        assert_eq!(plan.decision.buckets[0].tokens, 99.0);
    }

    #[test]
    fn observations_correct_down_and_up_only_in_a_new_window() {
        let spec = BucketSpec::new(rate("5000/h"));
        let state = BucketState::full(&spec, 0);
        let seen = |state: &BucketState, obs: Observation| plan_observe(0, &spec, state, &obs);
        // The first reset seen is a new window: tokens become what remains.
        let (_, s) = seen(
            &state,
            Observation {
                remaining: Some(4000),
                reset_at: Some(3_600_000),
                ..Observation::default()
            },
        );
        assert_eq!((s.tokens, s.reset_at), (4000.0, Some(3_600_000)));
        // Same window: down at once, never up.
        let (_, down) = seen(
            &s,
            Observation {
                remaining: Some(3000),
                reset_at: Some(3_600_000),
                ..Observation::default()
            },
        );
        assert_eq!(down.tokens, 3000.0);
        let (_, not_up) = seen(
            &down,
            Observation {
                remaining: Some(4500),
                reset_at: Some(3_600_000),
                ..Observation::default()
            },
        );
        assert_eq!(not_up.tokens, 3000.0);
        // A later reset: a new window, up.
        let (_, up) = seen(
            &not_up,
            Observation {
                remaining: Some(4999),
                reset_at: Some(7_200_000),
                ..Observation::default()
            },
        );
        assert_eq!(up.tokens, 4999.0);
        // A different limit replaces burst and amount.
        let (spec2, s2) = seen(
            &up,
            Observation {
                limit: Some(15000),
                ..Observation::default()
            },
        );
        assert_eq!(
            (spec2.burst, spec2.rate.amount, spec2.rate.per),
            (15000, 15000, spec.rate.per)
        );
        assert_eq!(s2.tokens, 4999.0);
        // A primary hit: frozen until the reset; a secondary one without retry-after: 60 s.
        let (_, hit) = seen(
            &up,
            Observation {
                remaining: Some(0),
                reset_at: Some(7_200_000),
                hit: true,
                ..Observation::default()
            },
        );
        assert_eq!((hit.tokens, hit.frozen_until), (0.0, Some(7_200_000)));
        let (_, secondary) = seen(
            &up,
            Observation {
                remaining: Some(100),
                reset_at: Some(7_200_000),
                retry_after: Some(Duration::ZERO),
                hit: true,
                ..Observation::default()
            },
        );
        assert_eq!(secondary.frozen_until, Some(60_000));
        // A freeze never moves back.
        let (_, longer) = seen(
            &hit,
            Observation {
                hit: true,
                ..Observation::default()
            },
        );
        assert_eq!(longer.frozen_until, Some(7_200_000));
    }

    /// A bogus reset (year 2100, or i64::MAX as a proxy's `saturating_mul` makes of a huge
    /// header) or retry-after froze the bucket for decades, with no way out, and a stored
    /// time past year 9999 could not even be shown. Now: at most a day.
    #[test]
    fn absurd_upstream_times_freeze_for_at_most_a_day() {
        let spec = BucketSpec::new(rate("5000/h"));
        let state = BucketState::full(&spec, 0);
        let day = MAX_AHEAD.as_millis() as Millis;
        for reset in [4_102_444_800_000, i64::MAX] {
            let (_, s) = plan_observe(
                0,
                &spec,
                &state,
                &Observation {
                    remaining: Some(0),
                    reset_at: Some(reset),
                    hit: true,
                    ..Observation::default()
                },
            );
            assert_eq!(s.reset_at, None, "a reset more than a day ahead is ignored");
            assert_eq!(s.frozen_until, Some(60_000), "a hit without a usable reset: 60 s");
            // Nor is it a new window: the tokens are not raised to what it says remains.
            let (_, s) = plan_observe(
                0,
                &spec,
                &BucketState { tokens: 10.0, ..state },
                &Observation {
                    remaining: Some(4000),
                    reset_at: Some(reset),
                    ..Observation::default()
                },
            );
            assert_eq!((s.tokens, s.reset_at), (10.0, None));
        }
        for after in [Duration::from_secs(315_360_000), Duration::MAX] {
            let (_, s) = plan_observe(
                0,
                &spec,
                &state,
                &Observation {
                    retry_after: Some(after),
                    hit: true,
                    ..Observation::default()
                },
            );
            assert_eq!(s.frozen_until, Some(day), "{after:?}");
        }
        // A reset within the day still freezes until it.
        let (_, s) = plan_observe(
            0,
            &spec,
            &state,
            &Observation {
                remaining: Some(0),
                reset_at: Some(day),
                hit: true,
                ..Observation::default()
            },
        );
        assert_eq!((s.reset_at, s.frozen_until), (Some(day), Some(day)));
    }

    /// Tokens are an `f64`: a long-lived 5000/h bucket taken from one token per refill
    /// period (720 ms) for 200,000 takes (40 hours) neither gains nor loses a token to
    /// rounding. The refill is computed from whole milliseconds since the last write, so
    /// rounding never accumulates in time.
    #[test]
    fn a_long_lived_bucket_does_not_drift() {
        let spec = BucketSpec {
            reserve_percent: 0,
            ..BucketSpec::new(rate("5000/h"))
        };
        let mut buckets = vec![bucket("a", spec, 100.0, 0)];
        let req = request(&["a"], 1, Priority::Normal);
        let mut now = 0;
        for _ in 0..200_000 {
            now += 720;
            let plan = plan_take(now, &buckets, &req).unwrap();
            assert!(plan.decision.granted);
            apply(&mut buckets, &plan);
        }
        let left = buckets[0].state.available(&spec, now);
        assert!((left - 100.0).abs() < 1e-6, "{left}");
    }

    #[test]
    fn a_define_keeps_the_tokens_up_to_the_new_burst() {
        let old = bucket("a", BucketSpec::new(rate("10/s")), 4.0, 0);
        let new = BucketSpec::new(rate("1/s"));
        assert_eq!(plan_define(100, Some(&old), &new, true), None);
        // 100 ms at the old 10/s refilled one token.
        assert_eq!(plan_define(100, Some(&old), &new, false).unwrap().tokens, 1.0);
        let wide = BucketSpec::new(rate("100/s"));
        assert_eq!(plan_define(100, Some(&old), &wide, false).unwrap().tokens, 5.0);
        assert_eq!(plan_define(100, None, &wide, true).unwrap().tokens, 100.0);
    }

    #[test]
    fn refunds_go_back_up_to_the_burst() {
        let spec = BucketSpec::new(rate("10/s"));
        let state = BucketState {
            tokens: 3.0,
            updated_at: 0,
            frozen_until: None,
            reset_at: None,
        };
        assert_eq!(plan_refund(0, &spec, &state, 4).tokens, 7.0);
        assert_eq!(plan_refund(0, &spec, &state, 40).tokens, 10.0);
    }

    #[test]
    fn requests_are_checked() {
        let mut req = request(&["a", "a"], 1, Priority::Normal);
        assert!(req.check().unwrap_err().message.contains("named twice"));
        req.buckets.pop();
        req.cost = 0;
        assert!(req.check().unwrap_err().message.contains("invalid cost 0"));
        req.cost = 1;
        req.party = Some("a\nb".into());
        assert!(req.check().unwrap_err().message.contains("invalid party"));
        req.buckets.clear();
        req.party = None;
        assert!(req.check().unwrap_err().message.contains("no bucket"));
        let a = BucketName::parse("a").unwrap();
        for (names, cost, why) in [
            (vec![a.clone(), a.clone()], 1, "named twice in one refund"),
            (vec![], 1, "a refund names no bucket"),
            (vec![a.clone()], 0, "invalid cost 0"),
            (vec![a], MAX_AMOUNT + 1, "invalid cost"),
        ] {
            let err = check_buckets_and_cost("refund", &names, cost).unwrap_err();
            assert!(err.message.contains(why), "{}", err.message);
        }
        assert!(check_counters("github/octo", "host-1", &[("upstream_calls".into(), 1)]).is_ok());
        assert!(check_counters("", "h", &[]).is_err());
        assert!(check_counters("s", "", &[]).is_err());
        assert!(check_counters("s", "h", &[("a b".into(), 1)]).is_err());
    }

    /// Two parties, one greedy (asks every 10 ms) and one modest (every 50 ms), on a
    /// contended fair bucket: the modest one is still served at its own pace.
    #[test]
    fn fair_share_keeps_a_greedy_party_from_starving_another() {
        let spec = BucketSpec {
            reserve_percent: 0,
            fair: true,
            ..BucketSpec::new(rate("10/s"))
        };
        let mut buckets = vec![bucket("a", spec, 10.0, 0)];
        let (mut greedy, mut modest) = (0, 0);
        for now in (0..20_000).step_by(10) {
            let mut req = request(&["a"], 1, Priority::Normal);
            req.party = Some("greedy".into());
            let plan = plan_take(now, &buckets, &req).unwrap();
            if plan.decision.granted {
                greedy += 1;
                apply(&mut buckets, &plan);
            }
            if now % 50 == 0 {
                req.party = Some("modest".into());
                let plan = plan_take(now, &buckets, &req).unwrap();
                if plan.decision.granted {
                    modest += 1;
                    apply(&mut buckets, &plan);
                }
            }
        }
        // 20 s at 10/s plus the burst: 210 tokens in all; the modest party gets about
        // half, though it asks five times less often.
        assert!(greedy + modest <= 210, "{greedy} + {modest}");
        assert!(modest >= 80, "modest got {modest}, greedy {greedy}");
        // Without fairness, the greedy one takes nearly everything.
        let mut unfair = vec![bucket("a", BucketSpec { fair: false, ..spec }, 10.0, 0)];
        let mut modest_unfair = 0;
        for now in (0..20_000).step_by(10) {
            let mut req = request(&["a"], 1, Priority::Normal);
            req.party = Some("greedy".into());
            let plan = plan_take(now, &unfair, &req).unwrap();
            apply(&mut unfair, &plan);
            if now % 50 == 0 {
                req.party = Some("modest".into());
                let plan = plan_take(now, &unfair, &req).unwrap();
                if plan.decision.granted {
                    modest_unfair += 1;
                    apply(&mut unfair, &plan);
                }
            }
        }
        assert!(modest_unfair < modest / 2, "{modest_unfair} vs {modest}");
    }

    #[test]
    fn an_idle_share_is_borrowed() {
        // One party alone, uncontended: takes the whole burst at once.
        let spec = BucketSpec {
            reserve_percent: 0,
            fair: true,
            ..BucketSpec::new(rate("10/s"))
        };
        let mut buckets = vec![bucket("a", spec, 10.0, 0)];
        buckets[0].parties.push(PartyState {
            party: "idle".into(),
            tokens: 0.0,
            updated_at: -60_000,
        });
        let mut req = request(&["a"], 1, Priority::Normal);
        req.party = Some("p".into());
        for _ in 0..10 {
            let plan = plan_take(0, &buckets, &req).unwrap();
            assert!(plan.decision.granted);
            apply(&mut buckets, &plan);
        }
    }

    proptest! {
        /// Whatever the takes, a bucket never grants more than its burst plus its refill.
        #[test]
        fn grants_never_exceed_burst_plus_refill(
            steps in proptest::collection::vec((0i64..200, 1u64..6, 0usize..3, 0usize..3, any::<bool>()), 1..200),
            fair in any::<bool>(),
        ) {
            let spec = BucketSpec { fair, ..BucketSpec::new(Rate { amount: 10, per: Duration::from_secs(1) }) };
            let mut buckets = vec![bucket("a", spec, 10.0, 0), bucket("b", BucketSpec { burst: 7, ..spec }, 7.0, 0)];
            let (mut now, mut spent_a, mut spent_b) = (0i64, 0u64, 0u64);
            for (advance, cost, priority, party, both) in steps {
                now += advance;
                let priority = [Priority::Interactive, Priority::Normal, Priority::Background][priority];
                let names: &[&str] = if both { &["a", "b"] } else { &["a"] };
                let mut req = request(names, cost, priority);
                req.party = Some(format!("p{party}"));
                let plan = plan_take(now, &buckets, &req).unwrap();
                if plan.decision.granted {
                    prop_assert!(plan.decision.wait.is_zero());
                    spent_a += cost;
                    if both { spent_b += cost; }
                    apply(&mut buckets, &plan);
                } else {
                    prop_assert!(plan.writes.is_empty());
                    prop_assert!(!plan.decision.wait.is_zero());
                    // The wait is enough: a take at now + wait is granted (fairness aside,
                    // whose contention may change).
                    if !fair {
                        let later = now + plan.decision.wait.as_millis() as i64;
                        prop_assert!(plan_take(later, &buckets, &req).unwrap().decision.granted);
                    }
                }
                for b in &buckets {
                    let t = b.state.available(&b.spec, now);
                    prop_assert!(t >= -EPSILON && t <= b.spec.burst as f64 + EPSILON);
                }
            }
            prop_assert!(spent_a as f64 <= 10.0 + now as f64 * 0.01 + EPSILON);
            prop_assert!(spent_b as f64 <= 7.0 + now as f64 * 0.01 + EPSILON);
        }

        #[test]
        fn rates_round_trip(amount in 1u64..1_000_000, per_ms in 1u64..100_000_000) {
            let r = Rate { amount, per: Duration::from_millis(per_ms) };
            prop_assert_eq!(Rate::parse(&r.to_string()).unwrap(), r);
        }
    }
}
