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

/// The dedupe key of an identity's pause notice: one per GitHub login, whichever loops
/// meet the pause (they fold into it).
fn pause_key(login: &str) -> String {
    format!("github/{login}/paused")
}

/// Sends the folded notice that the loops using `login` are paused until `until` (store
/// time): a rate limit said wait. Not a failure: no failure alert, no backoff.
pub(crate) async fn paused(
    shared: &Shared,
    config: &Config,
    spec: &LoopSpec,
    login: &str,
    until: arbiter_core::Millis,
) {
    if config.routes.is_empty() {
        return;
    }
    let mut tags = spec.tags.clone();
    tags.insert("loop".into(), spec.name.clone());
    tags.insert("github_login".into(), login.to_string());
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(until.max(0) as u64);
    let notification = Notification {
        kind: "github.paused".into(),
        severity: Severity::Info,
        source: format!("arbiter watch on {}", arbiter_process::host_name()),
        title: format!("GitHub identity {login} is paused"),
        body: format!(
            "loops calling GitHub as {login} are paused until {} (GitHub said to wait; this is not a failure), first loop {}",
            humantime::format_rfc3339_seconds(at),
            spec.name
        ),
        tags,
        dedupe_key: Some(pause_key(login)),
    };
    if let Err(e) = arbiter_notify::accept(&shared.store, config, &shared.namespace, notification, None).await {
        tracing::warn!(loop_name = %spec.name, error = %e, "could not queue the pause notice");
    }
}

/// Resolves the pause notice of `login`: its loops run again.
pub(crate) async fn resumed(shared: &Shared, config: &Config, login: &str) {
    if config.routes.is_empty() {
        return;
    }
    let result = shared
        .store
        .notify()
        .resolve(&shared.namespace, &pause_key(login), Some("its loops run again"))
        .await;
    if let Err(e) = result
        && e.kind != ErrorKind::NotFound
    {
        tracing::warn!(error = %e, "could not resolve the pause notice");
    }
}
