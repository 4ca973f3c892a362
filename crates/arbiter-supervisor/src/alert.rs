//! A loop's failure notification: raised (folded, dedupe key `loop/<name>`) while rounds
//! fail, resolved by the first success after them.

use arbiter_config::{Config, LoopSpec};
use arbiter_core::ErrorKind;
use arbiter_core::notify::{Notification, Severity};

use crate::{Shared, round};

/// Raises (folded) or resolves the loop's failure notification after a round.
pub(crate) async fn round_ended(
    shared: &Shared,
    config: &Config,
    spec: &LoopSpec,
    round: i64,
    outcome: &round::Outcome,
    failures_before: i64,
    failures: i64,
) {
    if config.routes.is_empty() {
        return;
    }
    let store = &shared.store;
    let ns = &shared.namespace;
    let key = format!("loop/{}", spec.name);
    let result = if outcome.succeeded() {
        if failures_before == 0 {
            return;
        }
        store
            .notify()
            .resolve(ns, &key, Some(&format!("round {round} succeeded")))
            .await
            .map(drop)
    } else {
        let mut tags = spec.tags.clone();
        tags.insert("loop".into(), spec.name.clone());
        let notification = Notification {
            kind: spec.kind.clone(),
            severity: if failures >= 3 {
                Severity::Critical
            } else {
                Severity::Warning
            },
            source: format!("arbiter watch on {}", arbiter_process::host_name()),
            title: format!("loop {} is failing", spec.name),
            body: format!(
                "round {round} {} ({failures} in a row): {}",
                outcome.status, outcome.reason
            ),
            tags,
            dedupe_key: Some(key),
        };
        arbiter_notify::accept(store, config, ns, notification, None)
            .await
            .map(drop)
    };
    if let Err(e) = result
        && e.kind != ErrorKind::NotFound
    {
        tracing::warn!(loop_name = %spec.name, error = %e, "could not queue the loop's notification");
    }
}
