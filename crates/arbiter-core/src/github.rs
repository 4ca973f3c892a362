//! GitHub's budgets as the supervisor and `arbiter status` read them: the buckets' names,
//! whether an identity is paused, whether a loop's round fits in what is left, and when
//! the budget runs out at the rate it is spent. Pure rules over data read elsewhere.
//!
//! The GitHub proxy keeps one bucket per identity and resource in the store:
//! `github/<login>/<resource>` (`core`, `graphql`, `search`, … as `x-ratelimit-resource`
//! names them; `points`, `graphql-points`, `content-minute`, `content-hour` for the
//! secondary limits). A bucket the upstream said "wait" for is frozen until then.

use std::time::Duration;

use serde::Serialize;

use crate::Millis;

/// The start of every GitHub bucket's name.
pub const BUCKET_PREFIX: &str = "github/";

/// The primary budgets a round spends from (REST and GraphQL): what a deferral checks.
pub const PRIMARY: &[&str] = &["core", "graphql"];

/// How many of a loop's last measured rounds its cost per round is the mean of.
pub const COST_ROUNDS: usize = 5;

/// `github/<login>/<resource>`.
pub fn bucket_name(login: &str, resource: &str) -> String {
    format!("{BUCKET_PREFIX}{login}/{resource}")
}

/// The login and resource of a GitHub bucket's name (`None`: not one).
pub fn split_bucket(name: &str) -> Option<(&str, &str)> {
    let rest = name.strip_prefix(BUCKET_PREFIX)?;
    let (login, resource) = rest.split_once('/')?;
    (!login.is_empty() && !resource.is_empty()).then_some((login, resource))
}

/// One bucket of one identity, as read from the store.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Budget {
    pub login: String,
    pub resource: String,
    /// What may be spent now.
    pub tokens: f64,
    /// The most it holds.
    pub burst: u64,
    /// How fast it refills, per hour.
    pub per_hour: f64,
    /// Until when the upstream said to wait (a primary or secondary limit hit).
    pub frozen_until: Option<Millis>,
    /// When the upstream resets it, as last observed.
    pub reset_at: Option<Millis>,
}

impl Budget {
    /// A GitHub bucket of the store as a budget (`None`: not a GitHub bucket).
    pub fn from_bucket(info: &crate::limit::BucketInfo) -> Option<Budget> {
        let (login, resource) = split_bucket(info.name.as_str())?;
        Some(Budget {
            login: login.to_string(),
            resource: resource.to_string(),
            tokens: info.tokens,
            burst: info.spec.burst,
            per_hour: info.spec.rate.per_ms() * 3_600_000.0,
            frozen_until: info.frozen_until,
            reset_at: info.reset_at,
        })
    }

    fn frozen_at(&self, now: Millis) -> Option<Millis> {
        self.frozen_until.filter(|until| *until > now)
    }

    /// How long until it holds `amount` (capped by its reset, when one is known).
    fn time_to_hold(&self, amount: f64, now: Millis) -> Duration {
        let amount = amount.min(self.burst as f64);
        let missing = (amount - self.tokens).max(0.0);
        if missing == 0.0 {
            return Duration::ZERO;
        }
        let by_rate = if self.per_hour > 0.0 {
            Duration::from_secs_f64((missing / self.per_hour * 3600.0).min(86_400.0))
        } else {
            Duration::from_secs(86_400)
        };
        match self.reset_at.filter(|at| *at > now) {
            Some(at) => by_rate.min(Duration::from_millis((at - now) as u64)),
            None => by_rate,
        }
    }
}

/// What a loop's round may do now.
#[derive(Debug, Clone, PartialEq)]
pub enum Gate {
    Run,
    /// The identity is frozen (the upstream said wait) until then: not a failure.
    Pause {
        login: String,
        until: Millis,
    },
    /// What is left of a primary budget, less the loop's share of the reserve, would not
    /// cover the round: run it once the bucket would hold it.
    Defer {
        login: String,
        resource: String,
        /// The round's expected cost plus the reserve the loop must leave.
        need: f64,
        left: f64,
        until: Millis,
    },
}

/// A round about to start, as the gate sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Round {
    /// The loop's cost per round (`None`: not measured yet — it runs).
    pub cost: Option<f64>,
    /// The loop's `priority` (higher runs first).
    pub priority: i64,
    /// The priorities of every loop that goes through the proxy (this one's included).
    pub fleet_priorities: Vec<i64>,
    /// `[github] reserve`: the share of a bucket rounds leave.
    pub reserve_percent: u8,
}

impl Round {
    /// The share of the reserve this loop must leave: all of it for the lowest priority,
    /// none for the highest (when there are several), in steps between; a single class
    /// keeps all of it. So lower priorities are deferred first, and higher ones may still
    /// run on what the lower ones left.
    pub fn reserve_share(&self) -> f64 {
        let mut levels: Vec<i64> = self.fleet_priorities.clone();
        levels.push(self.priority);
        levels.sort_unstable();
        levels.dedup();
        let reserve = f64::from(self.reserve_percent) / 100.0;
        if levels.len() < 2 {
            return reserve;
        }
        let above = levels.iter().filter(|p| **p > self.priority).count();
        reserve * above as f64 / (levels.len() - 1) as f64
    }
}

/// Whether a round of a loop whose calls are made as the identities of `budgets` may
/// start at `now`: paused while any of those buckets is frozen (until the last freeze
/// ends), deferred while a primary budget less the loop's reserve share would not cover
/// its cost, else run.
pub fn gate(budgets: &[Budget], round: &Round, now: Millis) -> Gate {
    if let Some((login, until)) = budgets
        .iter()
        .filter_map(|b| b.frozen_at(now).map(|until| (&b.login, until)))
        .max_by_key(|(_, until)| *until)
    {
        return Gate::Pause {
            login: login.clone(),
            until,
        };
    }
    let Some(cost) = round.cost.filter(|c| *c > 0.0) else {
        return Gate::Run;
    };
    let share = round.reserve_share();
    let short = budgets
        .iter()
        .filter(|b| PRIMARY.contains(&b.resource.as_str()))
        .map(|b| {
            let need = (cost + share * b.burst as f64).min(b.burst as f64);
            (b, need)
        })
        .filter(|(b, need)| b.tokens < *need)
        .max_by_key(|(b, need)| b.time_to_hold(*need, now));
    match short {
        None => Gate::Run,
        Some((b, need)) => Gate::Defer {
            login: b.login.clone(),
            resource: b.resource.clone(),
            need,
            left: b.tokens,
            until: now + b.time_to_hold(need, now).as_millis().max(1) as Millis,
        },
    }
}

/// A loop's cost per round: the mean of its last [`COST_ROUNDS`] measured rounds'
/// upstream calls (newest first; unmeasured rounds skipped). `None`: none measured.
pub fn mean_cost(spends: impl IntoIterator<Item = Option<i64>>) -> Option<f64> {
    let measured: Vec<i64> = spends.into_iter().flatten().take(COST_ROUNDS).collect();
    (!measured.is_empty()).then(|| measured.iter().sum::<i64>() as f64 / measured.len() as f64)
}

/// One hour, the window the spend rate is measured over.
pub const SPEND_WINDOW_MS: Millis = 3_600_000;

/// Calls per hour spent by rounds `(started_at, ended_at, calls)` that ended in the last
/// hour before `now`, over the time they span (at least a minute). `None`: none did.
pub fn spend_per_hour(rounds: &[(Millis, Millis, i64)], now: Millis) -> Option<f64> {
    let recent: Vec<_> = rounds
        .iter()
        .filter(|(_, ended, _)| *ended > now - SPEND_WINDOW_MS && *ended <= now)
        .collect();
    let first = recent.iter().map(|(started, _, _)| *started).min()?;
    let calls: i64 = recent.iter().map(|(_, _, calls)| *calls).sum();
    let span = (now - first).max(60_000) as f64;
    Some(calls as f64 * 3_600_000.0 / span)
}

/// How long until a bucket holding `tokens`, refilled at `refill_per_hour`, is empty when
/// spent at `spend_per_hour`. `None`: it is not drained (refill keeps up, or no spend).
pub fn time_to_exhaustion(tokens: f64, refill_per_hour: f64, spend_per_hour: f64) -> Option<Duration> {
    let drain = spend_per_hour - refill_per_hour;
    (drain > 0.0).then(|| Duration::from_secs_f64((tokens.max(0.0) / drain * 3600.0).min(365.0 * 86_400.0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Millis = 1_000_000_000;

    fn budget(resource: &str, tokens: f64) -> Budget {
        Budget {
            login: "bot".into(),
            resource: resource.into(),
            tokens,
            burst: 5000,
            per_hour: 5000.0,
            frozen_until: None,
            reset_at: None,
        }
    }

    fn round(cost: Option<f64>, priority: i64, fleet: &[i64]) -> Round {
        Round {
            cost,
            priority,
            fleet_priorities: fleet.to_vec(),
            reserve_percent: 10,
        }
    }

    #[test]
    fn names() {
        assert_eq!(bucket_name("octo-cat", "graphql"), "github/octo-cat/graphql");
        assert_eq!(
            split_bucket("github/octo-cat/content-minute"),
            Some(("octo-cat", "content-minute"))
        );
        assert_eq!(split_bucket("github/x"), None);
        assert_eq!(split_bucket("github//core"), None);
        assert_eq!(split_bucket("other/x/core"), None);
    }

    #[test]
    fn a_frozen_bucket_pauses_until_its_last_freeze_ends() {
        let mut points = budget("points", 900.0);
        points.frozen_until = Some(NOW + 60_000);
        let mut core = budget("core", 0.0);
        core.frozen_until = Some(NOW + 600_000);
        let mut old = budget("graphql", 5000.0);
        old.frozen_until = Some(NOW - 1);
        let r = round(Some(30.0), 0, &[0]);
        assert_eq!(
            gate(&[points.clone(), core, old.clone()], &r, NOW),
            Gate::Pause {
                login: "bot".into(),
                until: NOW + 600_000
            }
        );
        // A freeze that has passed pauses nothing.
        assert_eq!(gate(&[old], &r, NOW), Gate::Run);
        // A pause does not wait for a measured cost.
        assert!(matches!(gate(&[points], &round(None, 0, &[]), NOW), Gate::Pause { .. }));
    }

    #[test]
    fn a_round_runs_when_the_budget_less_the_reserve_covers_it() {
        let r = round(Some(30.0), 0, &[0]);
        // 500 is the reserve (10% of 5000): 530 covers it, 529 does not.
        assert_eq!(
            gate(&[budget("core", 530.0), budget("graphql", 5000.0)], &r, NOW),
            Gate::Run
        );
        let Gate::Defer {
            resource,
            need,
            left,
            until,
            ..
        } = gate(&[budget("core", 5000.0), budget("graphql", 529.0)], &r, NOW)
        else {
            panic!("expected a deferral");
        };
        assert_eq!((resource.as_str(), need, left), ("graphql", 530.0, 529.0));
        // One token at 5000/h: 720 ms.
        assert_eq!(until, NOW + 720);
        // Unmeasured loops run; secondary buckets are not budgeted by rounds.
        assert_eq!(gate(&[budget("core", 0.0)], &round(None, 0, &[]), NOW), Gate::Run);
        assert_eq!(gate(&[budget("points", 0.0)], &r, NOW), Gate::Run);
    }

    #[test]
    fn lower_priorities_are_deferred_first() {
        let fleet = [0, 5, 10];
        let left = [budget("core", 300.0)];
        let low = round(Some(30.0), 0, &fleet);
        let mid = round(Some(30.0), 5, &fleet);
        let high = round(Some(30.0), 10, &fleet);
        assert_eq!(
            (low.reserve_share(), mid.reserve_share(), high.reserve_share()),
            (0.1, 0.05, 0.0)
        );
        assert!(matches!(gate(&left, &low, NOW), Gate::Defer { .. }));
        assert_eq!(gate(&left, &mid, NOW), Gate::Run); // 300 ≥ 30 + 250
        assert_eq!(gate(&left, &high, NOW), Gate::Run);
        let nearly_empty = [budget("core", 29.0)];
        assert!(matches!(gate(&nearly_empty, &high, NOW), Gate::Defer { .. }));
        // One class: every loop keeps the whole reserve.
        assert_eq!(round(Some(1.0), 3, &[3, 3]).reserve_share(), 0.1);
    }

    #[test]
    fn a_deferral_lasts_until_the_bucket_would_hold_the_round_or_its_reset() {
        let r = round(Some(100.0), 0, &[]);
        let mut core = budget("core", 0.0);
        // 600 needed at 5000/h: 432 s.
        let Gate::Defer { until, .. } = gate(&[core.clone()], &r, NOW) else {
            panic!()
        };
        assert_eq!(until, NOW + 432_000);
        core.reset_at = Some(NOW + 60_000);
        let Gate::Defer { until, .. } = gate(&[core.clone()], &r, NOW) else {
            panic!()
        };
        assert_eq!(until, NOW + 60_000);
        // A round dearer than the whole bucket runs on a full one.
        core.tokens = 5000.0;
        assert_eq!(gate(&[core], &round(Some(9000.0), 0, &[]), NOW), Gate::Run);
    }

    #[test]
    fn cost_is_the_mean_of_the_last_measured_rounds() {
        assert_eq!(mean_cost([None, None]), None);
        assert_eq!(mean_cost([Some(10), None, Some(20)]), Some(15.0));
        assert_eq!(
            mean_cost([Some(1), Some(1), Some(1), Some(1), Some(1), Some(100)]),
            Some(1.0)
        );
    }

    #[test]
    fn spend_rate_and_exhaustion() {
        let hour = 3_600_000;
        // Two rounds of 30 in the last half hour, one of 1000 long ago.
        let rounds = [
            (NOW - 2 * hour, NOW - 2 * hour + 1, 1000),
            (NOW - hour / 2, NOW - hour / 2 + 10, 30),
            (NOW - 60_000, NOW - 1, 30),
        ];
        assert_eq!(spend_per_hour(&rounds, NOW), Some(120.0));
        assert_eq!(spend_per_hour(&rounds[..1], NOW), None);
        // A single recent round counts over at least a minute.
        assert_eq!(spend_per_hour(&[(NOW - 10, NOW - 5, 10)], NOW), Some(600.0));
        assert_eq!(
            time_to_exhaustion(1000.0, 5000.0, 6000.0),
            Some(Duration::from_secs(3600))
        );
        assert_eq!(time_to_exhaustion(1000.0, 5000.0, 5000.0), None);
        assert_eq!(time_to_exhaustion(1000.0, 0.0, 0.0), None);
    }
}
