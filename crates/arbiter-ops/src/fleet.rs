//! The fleet as `arbiter status` shows it: every loop, where it runs, its last round,
//! failures, next run — what its supervisor last reported, joined with the loop's lease.
//!
//! A loop whose lease nobody holds although its supervisor never said it stopped is
//! **lost**: that supervisor died (or lost its store) without releasing it. The inference
//! is made here, once, for every front end.

use arbiter_core::loops::{self, LoopStatus};
use arbiter_core::name::{Namespace, Prefix};
use arbiter_core::{Millis, Result};
use arbiter_store::Store;
use serde::{Serialize, Serializer};

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

/// One loop of the fleet. Times are RFC 3339 from the store's clock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
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
}

/// Every loop of `namespace`, in name order.
pub async fn fleet_status(store: &Store, namespace: &Namespace) -> Result<Vec<LoopView>> {
    let (now, loops) = store.loops().status(namespace).await?;
    let prefix = Prefix::parse(loops::LEASE_PREFIX).expect("the loop lease prefix is valid");
    let leases = store.leases().list(namespace, &prefix).await?;
    Ok(loops
        .into_iter()
        .map(|l| {
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
            }
        })
        .collect())
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
        let fleet = fleet_status(&store, &ns).await.unwrap();
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
}
