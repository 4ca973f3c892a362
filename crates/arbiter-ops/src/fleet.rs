//! The fleet as `arbiter status` shows it: every loop, where it runs, its last round,
//! failures, next run — what its supervisor last reported, joined with the loop's lease.
//!
//! A loop whose lease nobody holds although its supervisor never said it stopped is
//! **lost**: that supervisor died (or lost its store) without releasing it. The inference
//! is made here, once, for every front end.
//!
//! Beside the loops, each GitHub identity the proxy spends for: the budget left per
//! resource, its reset, how long it is frozen, and when it runs out at the rate the
//! loops' last rounds spent it (`arbiter_core::github`); and per loop its mean spend per
//! round. Then the work queues (depth, oldest ready age, claimed, dead: `crate::queue`'s
//! stats view) and the hosts that declared capabilities, with when each was last seen.

use std::collections::BTreeMap;

use arbiter_core::github::{self, Budget};
use arbiter_core::loops::{self, LoopStatus};
use arbiter_core::name::{Namespace, Prefix};
use arbiter_core::{Millis, Result};
use arbiter_store::{RoundInfo, Store};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::queue::{self, HostView, QueueStatsView};
use crate::view::timestamp;

/// What a loop is doing, as far as the fleet can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FleetState {
    /// What its supervisor last reported, still true: the lease is held, or the loop was
    /// stopped or disabled (no lease is expected).
    Reported(LoopStatus),
    /// Reported running, idle or backing off, but nobody holds its lease.
    Lost,
}

impl FleetState {
    /// The word `status` shows.
    pub fn as_str(self) -> &'static str {
        match self {
            FleetState::Reported(status) => status.as_str(),
            FleetState::Lost => "lost",
        }
    }

    /// What a loop whose supervisor reported `reported` is doing, given whether anyone
    /// holds its lease.
    pub fn infer(reported: LoopStatus, leased: bool) -> FleetState {
        match (leased, reported) {
            (true, _) | (false, LoopStatus::Stopped | LoopStatus::Disabled) => FleetState::Reported(reported),
            (false, _) => FleetState::Lost,
        }
    }
}

impl Serialize for FleetState {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// The word back (a remote client reads the views a server sends).
impl<'de> Deserialize<'de> for FleetState {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        match text.as_str() {
            "lost" => Ok(FleetState::Lost),
            other => LoopStatus::parse(other)
                .map(FleetState::Reported)
                .map_err(serde::de::Error::custom),
        }
    }
}

/// A string in JSON schemas: what `as_str` says.
#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for FleetState {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        <String as utoipa::PartialSchema>::schema()
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for FleetState {}

/// One loop of the fleet. Times are RFC 3339 from the store's clock.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoopView {
    #[serde(rename = "loop")]
    pub name: String,
    pub state: FleetState,
    pub host: String,
    pub pid: i64,
    /// The last round started (0: none yet).
    pub round: i64,
    pub last_status: Option<String>,
    pub last_reason: Option<String>,
    pub last_exit: Option<i64>,
    pub consecutive_failures: i64,
    pub next_run_at: String,
    /// How long until the next run, by the store's clock (0: due).
    pub next_run_in_ms: i64,
    /// When the loop's lease expires, while someone holds it.
    pub lease_expires_at: Option<String>,
    pub heartbeat_at: String,
    /// GitHub API calls per round: the mean of its last measured rounds (`None`: it does
    /// not go through the proxy, or no round was measured yet).
    pub api_calls_per_round: Option<f64>,
    /// The GitHub logins its last measured round called as.
    pub github_logins: Vec<String>,
}

/// The whole fleet: its loops, and the GitHub identities they spend.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FleetView {
    pub loops: Vec<LoopView>,
    pub github: Vec<IdentityView>,
    /// Every work queue with items: depth, oldest ready age, claimed, dead (absent from a
    /// server older than work items: empty).
    #[serde(default)]
    pub queues: Vec<QueueStatsView>,
    /// The hosts that declared capabilities (`queue work`), with when each was last seen.
    #[serde(default)]
    pub hosts: Vec<HostView>,
}

/// One GitHub identity (a login, whatever tokens it has): its budgets.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IdentityView {
    pub login: String,
    /// Frozen until then (the upstream said wait): its loops are paused.
    pub paused_until: Option<String>,
    /// Calls per hour its loops' rounds spent over the last hour (`None`: none ended).
    pub spend_per_hour: Option<f64>,
    pub resources: Vec<ResourceView>,
}

/// One budget of an identity (`core`, `graphql`, `search`, `points`, …).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResourceView {
    pub resource: String,
    /// What may be spent now (whole calls): 0 while frozen, the whole limit once its
    /// reset has passed.
    pub left: u64,
    pub limit: u64,
    pub per_hour: f64,
    /// When GitHub resets it, as last observed (`None`: unknown, or passed).
    pub reset_at: Option<String>,
    pub frozen_until: Option<String>,
    /// When it runs out at the identity's spend rate, net of refill (primary budgets
    /// only; `None`: not at this rate).
    pub exhausted_in_ms: Option<i64>,
}

/// How many recent rounds of each loop the view reads (for its cost and the spend rate).
const RECENT_ROUNDS: usize = 20;

/// Every loop of `namespace` (in name order) and every GitHub identity of its buckets.
pub async fn fleet_status(store: &Store, namespace: &Namespace) -> Result<FleetView> {
    let (now, loops) = store.loops().status(namespace).await?;
    let prefix = Prefix::parse(loops::LEASE_PREFIX).expect("the loop lease prefix is valid");
    let leases = store.leases().list(namespace, &prefix).await?;
    let mut recent = Vec::with_capacity(loops.len());
    for l in &loops {
        recent.push(store.loops().rounds(namespace, &l.name, RECENT_ROUNDS).await?);
    }
    let budgets = github_budgets(store, namespace).await?;
    let github = identities(&budgets, recent.iter().flatten(), now);
    let loops = loops
        .into_iter()
        .zip(&recent)
        .map(|(l, rounds)| {
            let lease_name = loops::lease_name(&l.name).ok();
            let lease = leases.iter().find(|x| Some(&x.name) == lease_name.as_ref());
            LoopView {
                name: l.name.to_string(),
                state: FleetState::infer(l.state, lease.is_some()),
                host: l.host,
                pid: l.pid,
                round: l.round,
                last_status: l.last_status.as_ref().map(ToString::to_string),
                last_reason: l.last_reason,
                last_exit: l.last_exit,
                consecutive_failures: l.consecutive_failures,
                next_run_at: timestamp(l.next_run_at),
                next_run_in_ms: next_in(now, l.next_run_at),
                lease_expires_at: lease.map(|x| timestamp(x.expires_at)),
                heartbeat_at: timestamp(l.heartbeat_at),
                api_calls_per_round: github::mean_cost(rounds.iter().map(|r| r.api_calls)),
                github_logins: rounds
                    .iter()
                    .find(|r| r.api_calls.is_some())
                    .map(|r| r.github_logins.clone())
                    .unwrap_or_default(),
            }
        })
        .collect();
    let (queue_now, queue_stats) = store.queue().stats(namespace).await?;
    let queues = queue_stats.iter().map(|s| queue::stats_view(queue_now, s)).collect();
    let hosts = queue::hosts(store, namespace).await?;
    Ok(FleetView {
        loops,
        github,
        queues,
        hosts,
    })
}

/// The GitHub buckets of `namespace` (`github/<login>/<resource>`), as budgets.
async fn github_budgets(store: &Store, namespace: &Namespace) -> Result<Vec<Budget>> {
    let buckets = store.limits().list(namespace).await?;
    Ok(buckets.iter().filter_map(Budget::from_bucket).collect())
}

/// Each identity of `budgets`, with its spend rate from the `rounds` that called as it.
fn identities<'a>(budgets: &[Budget], rounds: impl Iterator<Item = &'a RoundInfo>, now: Millis) -> Vec<IdentityView> {
    let mut spent: BTreeMap<&str, Vec<(Millis, Millis, i64)>> = BTreeMap::new();
    for r in rounds {
        if let (Some(calls), Some(ended)) = (r.api_calls, r.ended_at) {
            for login in &r.github_logins {
                spent.entry(login).or_default().push((r.started_at, ended, calls));
            }
        }
    }
    let mut by_login: BTreeMap<&str, Vec<&Budget>> = BTreeMap::new();
    for b in budgets {
        by_login.entry(&b.login).or_default().push(b);
    }
    by_login
        .into_iter()
        .map(|(login, budgets)| {
            let rate = spent.get(login).and_then(|r| github::spend_per_hour(r, now));
            let paused = budgets.iter().filter_map(|b| b.frozen_until).filter(|u| *u > now).max();
            let mut resources: Vec<ResourceView> = budgets
                .iter()
                .map(|b| ResourceView {
                    resource: b.resource.clone(),
                    left: b.tokens.max(0.0).floor() as u64,
                    limit: b.burst,
                    per_hour: b.per_hour,
                    // A reset that has passed is history: the window it ended is over.
                    reset_at: b.reset_at.filter(|at| *at > now).map(timestamp),
                    frozen_until: b.frozen_until.filter(|u| *u > now).map(timestamp),
                    exhausted_in_ms: rate
                        .filter(|_| github::PRIMARY.contains(&b.resource.as_str()))
                        .and_then(|rate| github::time_to_exhaustion(b.tokens, b.per_hour, rate))
                        .map(|d| d.as_millis() as i64),
                })
                .collect();
            resources.sort_by(|a, b| a.resource.cmp(&b.resource));
            IdentityView {
                login: login.to_string(),
                paused_until: paused.map(timestamp),
                spend_per_hour: rate,
                resources,
            }
        })
        .collect()
}

fn next_in(now: Millis, at: Millis) -> i64 {
    (at - now).max(0)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use arbiter_core::name::LoopName;

    use super::*;
    use crate::lease::AcquireRequest;

    #[test]
    fn a_loop_without_its_lease_is_lost_unless_it_was_stopped() {
        use FleetState::{Lost, Reported};
        use LoopStatus::*;
        for status in LoopStatus::ALL {
            assert_eq!(FleetState::infer(*status, true), Reported(*status));
        }
        assert_eq!(FleetState::infer(Running, false), Lost);
        assert_eq!(FleetState::infer(Idle, false), Lost);
        assert_eq!(FleetState::infer(BackingOff, false), Lost);
        assert_eq!(FleetState::infer(Stopped, false), Reported(Stopped));
        assert_eq!(FleetState::infer(Disabled, false), Reported(Disabled));
        assert_eq!(Lost.as_str(), "lost");
        assert_eq!(Reported(BackingOff).as_str(), "backing off");
    }

    #[tokio::test]
    async fn the_fleet_joins_loops_and_their_leases() {
        let (_dir, store) = crate::testing::temp_store().await;
        let ns = Namespace::default();
        let holder = arbiter_process::holder_for(arbiter_process::current_pid(), "supervisor").unwrap();
        let reports = [
            ("held", LoopStatus::Running, true),
            ("idle", LoopStatus::Idle, true),
            ("orphan", LoopStatus::Running, false),
            ("stopped", LoopStatus::Stopped, false),
            ("off", LoopStatus::Disabled, false),
        ];
        let mut expiry = Vec::new();
        for (name, status, leased) in reports {
            store
                .loops()
                .heartbeat(&ns, &LoopName::parse(name).unwrap(), status, None, &holder)
                .await
                .unwrap();
            if leased {
                let lease = crate::lease::acquire(
                    &store,
                    AcquireRequest {
                        namespace: ns.clone(),
                        name: loops::lease_name(&LoopName::parse(name).unwrap()).unwrap(),
                        holder: holder.clone(),
                        ttl: Duration::from_secs(60),
                        slots: 1,
                        wait: None,
                    },
                )
                .await
                .unwrap();
                expiry.push((name, lease.expires_at));
            }
        }
        let fleet = fleet_status(&store, &ns).await.unwrap().loops;
        let states: Vec<(&str, &str)> = fleet.iter().map(|l| (l.name.as_str(), l.state.as_str())).collect();
        assert_eq!(
            states,
            [
                ("held", "running"),
                ("idle", "idle"),
                ("off", "disabled"),
                ("orphan", "lost"),
                ("stopped", "stopped"),
            ]
        );
        for view in &fleet {
            let expected = expiry.iter().find(|(n, _)| *n == view.name).map(|(_, at)| at.clone());
            assert_eq!(view.lease_expires_at, expected, "{}", view.name);
        }
        // The JSON names the loop `loop` and shows the inferred state as a word.
        let json = serde_json::to_value(&fleet[3]).unwrap();
        assert_eq!(json["loop"], "orphan");
        assert_eq!(json["state"], "lost");
    }

    #[test]
    fn identities_show_budgets_freezes_and_a_forecast() {
        let now: Millis = 10_000_000_000;
        let budget = |login: &str, resource: &str, tokens: f64| Budget {
            login: login.into(),
            resource: resource.into(),
            tokens,
            burst: 5000,
            per_hour: 5000.0,
            frozen_until: None,
            reset_at: Some(now + 1_800_000),
        };
        let mut points = budget("bot", "points", 12.5);
        points.frozen_until = Some(now + 60_000);
        let mut stale = budget("other", "core", 4999.9);
        stale.frozen_until = Some(now - 1);
        stale.reset_at = Some(now - 1);
        let budgets = [
            budget("bot", "graphql", 1000.0),
            budget("bot", "core", 4000.0),
            points,
            stale,
        ];
        let round = |login: &str, ended_ago: Millis, calls: i64| RoundInfo {
            round: 1,
            host: "h".into(),
            pid: 1,
            started_at: now - ended_ago - 1000,
            ended_at: Some(now - ended_ago),
            status: arbiter_core::loops::RoundStatus::Succeeded,
            exit_code: Some(0),
            reason: None,
            log_path: String::new(),
            api_calls: Some(calls),
            github_logins: vec![login.into()],
        };
        // 6000 calls over the last 30 minutes: 12,000/h against 5,000/h of refill.
        let rounds = [round("bot", 30 * 60_000 - 1000, 3000), round("bot", 0, 3000)];
        let views = identities(&budgets, rounds.iter(), now);
        assert_eq!(views.len(), 2);
        let bot = &views[0];
        assert_eq!(bot.login, "bot");
        assert_eq!(bot.spend_per_hour, Some(12_000.0));
        assert_eq!(bot.paused_until, Some(timestamp(now + 60_000)));
        let names: Vec<&str> = bot.resources.iter().map(|r| r.resource.as_str()).collect();
        assert_eq!(names, ["core", "graphql", "points"]);
        // graphql: 1000 left, drained at 7000/h net: 1000/7000 h.
        assert_eq!(bot.resources[1].exhausted_in_ms, Some(514_285));
        assert_eq!(bot.resources[0].exhausted_in_ms, Some(2_057_142));
        // Secondary budgets get no forecast; left is whole calls.
        assert_eq!((bot.resources[2].left, bot.resources[2].exhausted_in_ms), (12, None));
        assert_eq!(bot.resources[2].reset_at, Some(timestamp(now + 1_800_000)));
        // An identity nobody spent: no rate, no forecast; a past freeze is not shown.
        let other = &views[1];
        assert_eq!((other.spend_per_hour, other.paused_until.as_deref()), (None, None));
        assert_eq!(other.resources[0].frozen_until, None);
        assert_eq!(other.resources[0].reset_at, None);
        assert_eq!(other.resources[0].left, 4999);
    }

    #[tokio::test]
    async fn a_loop_shows_its_mean_spend_per_round() {
        let (_dir, store) = crate::testing::temp_store().await;
        let ns = Namespace::default();
        let name = LoopName::parse("web").unwrap();
        let holder = arbiter_process::holder_for(arbiter_process::current_pid(), "supervisor").unwrap();
        let lease = arbiter_client::lease::acquire(
            &store,
            AcquireRequest {
                namespace: ns.clone(),
                name: loops::lease_name(&name).unwrap(),
                holder,
                ttl: Duration::from_secs(60),
                slots: 1,
                wait: None,
            },
        )
        .await
        .unwrap()
        .lease;
        for (round, calls) in [(1, None), (2, Some(10)), (3, Some(31))] {
            let n = store
                .loops()
                .begin_round(&ns, &name, &lease, Box::new(|n| format!("/logs/{n}.log")))
                .await
                .unwrap();
            assert_eq!(n, round);
            store
                .loops()
                .end_round(
                    &ns,
                    &name,
                    arbiter_store::RoundEnd {
                        round,
                        status: arbiter_core::loops::RoundStatus::Succeeded,
                        exit_code: Some(0),
                        reason: String::new(),
                        consecutive_failures: 0,
                        next_in_ms: 60_000,
                        state: LoopStatus::Idle,
                        api_calls: calls,
                        github_logins: calls.map(|_| vec!["bot".to_string()]).unwrap_or_default(),
                    },
                )
                .await
                .unwrap();
        }
        // A GitHub bucket of the namespace is an identity's budget; others are not.
        for name in ["github/bot/core", "other/bucket"] {
            let spec = arbiter_core::limit::BucketSpec::new(arbiter_core::limit::Rate::parse("5000/h").unwrap());
            store
                .limits()
                .define(&ns, &arbiter_core::name::BucketName::parse(name).unwrap(), &spec, false)
                .await
                .unwrap();
        }
        let fleet = fleet_status(&store, &ns).await.unwrap();
        assert_eq!(fleet.github.len(), 1, "{:?}", fleet.github);
        assert_eq!(fleet.github[0].login, "bot");
        assert_eq!(
            (
                fleet.github[0].resources[0].resource.as_str(),
                fleet.github[0].resources[0].left
            ),
            ("core", 5000)
        );
        // Its spend: the two measured rounds, over the minute they count at least.
        assert_eq!(fleet.github[0].spend_per_hour, Some(41.0 * 60.0));
        let web = &fleet.loops[0];
        assert_eq!(web.api_calls_per_round, Some(20.5));
        assert_eq!(web.github_logins, ["bot"]);
        let json = serde_json::to_value(&fleet).unwrap();
        assert_eq!(json["loops"][0]["api_calls_per_round"], 20.5);
        assert!(json["github"].is_array());
    }
}
