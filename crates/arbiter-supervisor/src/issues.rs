//! Loops whose rounds are GitHub issues (`[loops.<name>.issues]`): one round per claimed
//! issue, on every host that runs the loop.
//!
//! An issues loop does not run under the exclusive loop lease: the work queue
//! `loop/<name>` makes each issue exclusive instead. Per host:
//! - a **lister**, every `every`: the repository's open issues with the loop's labels,
//!   read through the supervisor's GitHub proxy with the loop's token (paginated by `Link`,
//!   pull requests skipped), each pushed into the queue keyed by its `html_url` (every host
//!   pushing one issue makes one item) with `requires` from its `needs:` labels; after a
//!   complete listing, the queue's ready items whose issue is no longer open are cancelled;
//! - `parallel` **claimers**: each claims an item this host's `[host] capabilities` allow
//!   (waiting on the queue's change feed), keeps the claim by the lease deadline rule
//!   (`arbiter_client::queue::hold`), and runs one round for it with the round machinery
//!   (the issue's fields in the prompt), fenced in the store by the claim
//!   (`LoopStore::begin_item_round`). Exit 0 marks the item done; anything else fails it
//!   (retried after a backoff, dead after `max_attempts`, with one folded `queue.dead`
//!   alert); a lost claim stops the round's process tree and changes nothing;
//! - a **presence** lease `loop/<name>` with [`PRESENCE_SLOTS`] places, one per host, so
//!   `arbiter status` shows the loop run (not `lost`) while any host works it.
//!
//! With `mark = true` a claim is recorded on the issue: the label [`WORKING_LABEL`] and a
//! comment naming the host, the loop and the claim token; the label is removed when the
//! round ends (best effort, logged on failure).

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::time::Duration;

use arbiter_client::lease::{AcquireRequest, HeldLease};
use arbiter_client::queue::ClaimGrant;
use arbiter_config::{Config, IssuesSpec, LoopSpec};
use arbiter_core::lease::Holder;
use arbiter_core::loops::{LoopStatus, RoundStatus};
use arbiter_core::name::{Capability, LoopName, QueueName};
use arbiter_core::queue::{ClaimRequest, FailRequest, ItemState, NewItem};
use arbiter_core::{Error, ErrorKind, Result};
use arbiter_store::RoundEnd;
use serde::{Deserialize, Serialize};
use tokio::task::JoinSet;

use crate::{LoopStop, Shared, git, logs, round, told_to_stop};

/// The label a claimed issue carries with `mark = true`.
pub const WORKING_LABEL: &str = "arbiter:working";
/// The places of an issues loop's presence lease (one per host running it).
pub const PRESENCE_SLOTS: u32 = arbiter_core::lease::MAX_SLOTS;
/// The most pages of 100 issues one listing reads.
const MAX_PAGES: usize = 50;
/// How long a claimer waits on the change feed before it looks at its stop and the config
/// again.
const CLAIM_WAIT: Duration = Duration::from_secs(10);
/// How long one GitHub request may take (the proxy may hold one for budget first).
const GITHUB_TIMEOUT: Duration = Duration::from_secs(120);

/// The work queue of an issues loop: `loop/<name>`.
pub fn queue_name(name: &LoopName) -> Result<QueueName> {
    Ok(QueueName::parse(&format!("loop/{name}"))?)
}

/// What an item of an issues loop carries: the issue as it was listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssueBody {
    pub number: u64,
    pub title: String,
    pub url: String,
    pub body: String,
    pub labels: Vec<String>,
}

/// The capabilities an issue's labels require: each label starting with `prefix` (compared
/// without case, as GitHub compares labels), lowercased, without the prefix. An invalid one
/// is returned as the error, naming the label.
pub fn requires(labels: &[String], prefix: &str) -> std::result::Result<Vec<Capability>, String> {
    let prefix = prefix.to_lowercase();
    let mut caps = Vec::new();
    for label in labels {
        let lower = label.to_lowercase();
        if let Some(cap) = lower.strip_prefix(&prefix) {
            let cap = Capability::parse(cap).map_err(|e| format!("label {label:?}: {}", e.message))?;
            caps.push(cap);
        }
    }
    arbiter_core::queue::capability_set(caps).map_err(|e| e.message)
}

/// The loop's spec in force, if it is still configured as an issues loop.
fn issues_spec(config: &Config, name: &LoopName) -> Option<(LoopSpec, IssuesSpec)> {
    let spec = config.loops.iter().find(|l| l.name == name.as_str())?.clone();
    let issues = spec.issues.clone()?;
    Some((spec, issues))
}

/// Runs an issues loop on this host until it is told to stop (or, with `--once` or
/// `--rounds`, until its queue holds nothing this host may claim).
pub(crate) async fn run(shared: Arc<Shared>, name: &LoopName, stop: LoopStop) -> Result<()> {
    let store = &shared.store;
    let ns = &shared.namespace;
    let holder = arbiter_process::holder_for(arbiter_process::current_pid(), &format!("watch:{name}"))?;
    let queue = queue_name(name)?;
    store
        .loops()
        .heartbeat(ns, name, LoopStatus::Idle, None, &holder)
        .await?;
    register(&shared).await;
    let bounded = shared.options.once || shared.options.rounds.is_some();
    let mut tasks: JoinSet<Result<()>> = JoinSet::new();
    if bounded {
        // One listing, then the claimers drain what this host may take.
        if let Err(e) = list(&shared, name, &queue, &mut HashSet::new()).await {
            tracing::warn!(loop_name = %name, error = %e, "listing the loop's issues failed");
        }
    } else {
        tasks.spawn(lister(shared.clone(), name.clone(), queue.clone(), stop.clone()));
        tasks.spawn(presence(shared.clone(), name.clone(), holder.clone(), stop.clone()));
    }
    let parallel = issues_spec(&shared.config(), name).map_or(1, |(_, i)| i.parallel);
    let claimers = parallel as usize;
    for _ in 0..claimers {
        tasks.spawn(claimer(
            shared.clone(),
            name.clone(),
            queue.clone(),
            holder.clone(),
            stop.clone(),
        ));
    }
    let mut first_error = None;
    let mut claimers_left = claimers;
    while let Some(result) = tasks.join_next().await {
        match result {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                first_error.get_or_insert(e);
            }
            Err(e) => {
                first_error.get_or_insert(Error::internal(format!("an issues task failed: {e}")));
            }
        }
        claimers_left = claimers_left.saturating_sub(1);
        // Bounded: the claimers are the only tasks. Unbounded: any task ending ends the
        // others too, since they all end on the stop (or an unavailable store, retried by
        // the caller).
        if first_error.is_some() || (bounded && claimers_left == 0) {
            break;
        }
    }
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
    let _ = store
        .loops()
        .heartbeat(ns, name, LoopStatus::Stopped, None, &holder)
        .await;
    first_error.map_or(Ok(()), Err)
}

/// Records this host's capabilities (a failure is logged: claims do not depend on it).
pub(crate) async fn register(shared: &Shared) {
    let config = shared.config();
    let host = arbiter_process::host_name();
    if let Err(e) =
        arbiter_ops::queue::register_host(&shared.store, &shared.namespace, &host, &config.host.capabilities).await
    {
        tracing::warn!(error = %e, "could not record this host's capabilities");
    }
}

/// The lister: every `every`, the open issues into the queue.
async fn lister(shared: Arc<Shared>, name: LoopName, queue: QueueName, mut stop: LoopStop) -> Result<()> {
    let mut warned = HashSet::new();
    loop {
        if stop.borrow().is_some() {
            return Ok(());
        }
        let Some((spec, _)) = issues_spec(&shared.config(), &name) else {
            return Ok(());
        };
        if spec.enabled {
            // A stop (a reload that removed the loop) ends a listing in progress: what it
            // pushed is pushed (each push is whole), nothing more is.
            let listed = tokio::select! {
                listed = async {
                    register(&shared).await;
                    list(&shared, &name, &queue, &mut warned).await
                } => listed,
                _ = told_to_stop(&mut stop) => return Ok(()),
            };
            match listed {
                Ok(()) => {}
                Err(e) if e.kind == ErrorKind::Unavailable => return Err(e),
                Err(e) => tracing::warn!(loop_name = %name, error = %e, "listing the loop's issues failed"),
            }
        }
        let every = spec.every.max(Duration::from_millis(100));
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            _ = told_to_stop(&mut stop) => return Ok(()),
        }
    }
}

/// One listing: push every open issue with the labels; cancel the ready items of issues no
/// longer listed (only after a complete listing).
async fn list(shared: &Shared, name: &LoopName, queue: &QueueName, warned: &mut HashSet<String>) -> Result<()> {
    let config = shared.config();
    let Some((spec, issues)) = issues_spec(&config, name) else {
        return Ok(());
    };
    let github = GithubClient::for_loop(shared, &config, &spec).await?;
    let (owner, repo) = issues.owner_and_name();
    let mut url = reqwest::Url::parse_with_params(
        &format!("{}/repos/{owner}/{repo}/issues", github.api),
        &[
            ("state", "open".to_string()),
            ("labels", issues.labels.join(",")),
            ("per_page", "100".to_string()),
        ],
    )
    .map_err(|e| Error::internal(format!("the issues URL: {e}")))?;
    let mut open = BTreeSet::new();
    let mut pages = 0;
    loop {
        pages += 1;
        let (listed, next) = github.get_page(&url).await?;
        for issue in listed {
            if issue.pull_request.is_some() {
                continue;
            }
            let labels: Vec<String> = issue.labels.into_iter().map(|l| l.name).collect();
            open.insert(issue.html_url.clone());
            let requires = match requires(&labels, &issues.needs_prefix) {
                Ok(requires) => requires,
                Err(why) => {
                    if warned.insert(issue.html_url.clone()) {
                        tracing::warn!(loop_name = %name, issue = %issue.html_url, "skipping the issue: {why}");
                    }
                    continue;
                }
            };
            let body = IssueBody {
                number: issue.number,
                title: issue.title,
                url: issue.html_url.clone(),
                body: issue.body.unwrap_or_default(),
                labels,
            };
            let body = serde_json::to_string(&body).map_err(|e| Error::internal(e.to_string()))?;
            let item = NewItem::new(
                shared.namespace.clone(),
                queue.clone(),
                body,
                Some(issue.html_url.clone()),
                0,
                requires,
                None,
                issues.max_attempts,
            );
            match item {
                Ok(item) => {
                    arbiter_ops::queue::push(&shared.store, &item).await?;
                }
                Err(e) => {
                    if warned.insert(issue.html_url.clone()) {
                        tracing::warn!(loop_name = %name, issue = %issue.html_url, "skipping the issue: {}", e.message);
                    }
                }
            }
        }
        match next {
            Some(next) if pages < MAX_PAGES => url = next,
            Some(_) => {
                tracing::warn!(loop_name = %name, "more than {MAX_PAGES} pages of issues: the rest waits for the next listing, and nothing is cancelled");
                return Ok(());
            }
            None => break,
        }
    }
    // Complete: the ready items whose issue is no longer open (closed, or unlabelled) go.
    let ready = shared
        .store
        .queue()
        .list(
            &shared.namespace,
            Some(queue),
            Some(ItemState::Ready),
            arbiter_ops::queue::MAX_LIST,
        )
        .await?;
    for item in ready {
        let Some(key) = item.key.as_deref() else { continue };
        if !open.contains(key)
            && let Some(cancelled) = shared.store.queue().cancel(&shared.namespace, queue, key).await?
        {
            tracing::info!(loop_name = %name, issue = key, item = cancelled.id, "the issue is no longer open with the loop's labels: its item is cancelled");
        }
    }
    Ok(())
}

/// Holds one place of the loop's presence lease while the loop runs here.
async fn presence(shared: Arc<Shared>, name: LoopName, holder: Holder, mut stop: LoopStop) -> Result<()> {
    let lease_name = crate::lease_name(&name)?;
    loop {
        if stop.borrow().is_some() {
            return Ok(());
        }
        let request = AcquireRequest {
            namespace: shared.namespace.clone(),
            name: lease_name.clone(),
            holder: holder.clone(),
            ttl: shared.options.lease_ttl,
            slots: PRESENCE_SLOTS,
            wait: Some(Duration::from_secs(2)),
        };
        let held = tokio::select! {
            held = HeldLease::acquire(&shared.store, request, Duration::ZERO) => held,
            _ = told_to_stop(&mut stop) => return Ok(()),
        };
        let mut held = match held {
            Ok(held) => held,
            Err(e) if e.kind == ErrorKind::Unavailable => return Err(e),
            Err(e) => {
                // Held with other slots (a timer loop of that name elsewhere): keep trying.
                tracing::debug!(loop_name = %name, error = %e, "the presence lease is not ours yet");
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(5)) => continue,
                    _ = told_to_stop(&mut stop) => return Ok(()),
                }
            }
        };
        tokio::select! {
            _ = held.lost() => continue,
            _ = told_to_stop(&mut stop) => {
                let _ = held.release().await;
                return Ok(());
            }
        }
    }
}

/// One claimer: claim, run the issue's round, end the claim; again.
async fn claimer(
    shared: Arc<Shared>,
    name: LoopName,
    queue: QueueName,
    holder: Holder,
    mut stop: LoopStop,
) -> Result<()> {
    let bounded = shared.options.once || shared.options.rounds.is_some();
    loop {
        if stop.borrow().is_some() {
            return Ok(());
        }
        let config = shared.config();
        let Some((spec, _)) = issues_spec(&config, &name) else {
            return Ok(());
        };
        if !spec.enabled {
            if bounded {
                return Ok(());
            }
            tokio::select! {
                () = tokio::time::sleep(Duration::from_secs(2)) => continue,
                _ = told_to_stop(&mut stop) => return Ok(()),
            }
        }
        // The claim is kept under the same TTL as a loop's lease: a host that dies hands
        // its issues over after it.
        let request = ClaimRequest {
            namespace: shared.namespace.clone(),
            queue: queue.clone(),
            holder: holder.clone(),
            capabilities: config.host.capabilities.clone(),
            lease: arbiter_core::queue::check_lease(shared.options.lease_ttl)?,
        };
        let wait = (!bounded).then_some(CLAIM_WAIT);
        let claimed = tokio::select! {
            claimed = arbiter_client::queue::claim(&shared.store, &request, wait) => claimed?,
            _ = told_to_stop(&mut stop) => return Ok(()),
        };
        if claimed.newly_dead > 0 {
            arbiter_ops::queue::raise_dead_alerts(&shared.store, &config, &shared.namespace).await?;
        }
        let Some(grant) = claimed.grant else {
            if bounded {
                return Ok(());
            }
            continue;
        };
        work(&shared, &config, &spec, &name, grant, &mut stop).await?;
    }
}

/// Runs the round of one claimed issue and ends the claim as the round ended.
async fn work(
    shared: &Shared,
    config: &Config,
    spec: &LoopSpec,
    name: &LoopName,
    grant: ClaimGrant,
    stop: &mut LoopStop,
) -> Result<()> {
    let store = &shared.store;
    let ns = &shared.namespace;
    let options = &shared.options;
    let claim = grant.claim.clone();
    let mut held = arbiter_client::queue::hold(store, grant, spec.grace);
    let issues = spec.issues.clone().unwrap_or_else(|| unreachable!("an issues loop"));
    let issue: IssueBody = match serde_json::from_str(&claim.body) {
        Ok(issue) => issue,
        Err(e) => {
            drop(held);
            let request = FailRequest {
                namespace: ns.clone(),
                id: claim.id,
                token: claim.token,
                reason: format!("the item is not an issue of this loop: {e}"),
                retry_in: None,
            };
            return end_claim(arbiter_ops::queue::fail(store, config, &request).await);
        }
    };
    let host = arbiter_process::host_name();
    let log_dir = logs::loop_dir(&options.log_dir, ns, name)?;
    if let Some(err) = held.is_lost() {
        tracing::warn!(loop_name = %name, issue = %issue.url, error = %err, "the claim was lost before its round");
        return Ok(());
    }
    let round = match store
        .loops()
        .begin_item_round(ns, name, claim.id, held.lease(), logs::round_log_namer(&log_dir))
        .await
    {
        Ok(round) => round,
        Err(e) if e.kind == ErrorKind::Lost => {
            tracing::warn!(loop_name = %name, issue = %issue.url, error = %e, "the claim was lost before its round");
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    // The claim is recorded as a round: now it is worth showing on the issue.
    let github = if issues.mark {
        match GithubClient::for_loop(shared, config, spec).await {
            Ok(github) => {
                github
                    .mark(
                        &issues,
                        &issue,
                        &format!("claimed by {host} loop {name} (claim token {})", claim.token),
                    )
                    .await;
                Some(github)
            }
            Err(e) => {
                tracing::warn!(loop_name = %name, issue = %issue.url, error = %e, "could not mark the issue as claimed");
                None
            }
        }
    } else {
        None
    };
    let log_path = logs::round_log(&log_dir, round);
    let remote = git::origin_remote(&spec.repo).await;
    let profile = config.profile_for(spec, remote.as_deref());
    let guard = shared.github();
    let round_github = match &guard {
        Some(guard) => Some(round::RoundGithub {
            api_url: guard.api_url().to_string(),
            socket: guard.socket(name).await,
        }),
        None => {
            tracing::warn!(loop_name = %name, "no GitHub proxy runs (it could not start): this round calls GitHub directly, unguarded");
            None
        }
    };
    let number = issue.number.to_string();
    let ctx = round::RoundContext {
        spec,
        profile,
        round,
        last_status: "none",
        log_path: &log_path,
        guard_exe: &options.guard_exe,
        arbiter_env: vec![
            ("ARBITER_LOOP".into(), name.to_string()),
            ("ARBITER_ROUND".into(), round.to_string()),
            ("ARBITER_LEASE_NAME".into(), held.name().to_string()),
            ("ARBITER_LEASE_TOKEN".into(), held.token().to_string()),
            ("ARBITER_QUEUE".into(), claim.queue.to_string()),
            ("ARBITER_ITEM_ID".into(), claim.id.to_string()),
            ("ARBITER_ITEM_TOKEN".into(), claim.token.to_string()),
            ("ARBITER_ISSUE_NUMBER".into(), number.clone()),
            ("ARBITER_ISSUE_URL".into(), issue.url.clone()),
            ("ARBITER_NAMESPACE".into(), ns.to_string()),
            ("ARBITER_STORE".into(), options.store_url.clone()),
        ],
        default_gh_dir: options.gh_dir.join(ns.as_str()).join(name.as_str()),
        prompt_dir: log_dir.join("prompts"),
        github: round_github,
        live_sockets: match &guard {
            Some(running) => running.live_sockets(name).await,
            None => Vec::new(),
        },
        vars: vec![
            ("issue.number".into(), number),
            ("issue.title".into(), issue.title.clone()),
            ("issue.url".into(), issue.url.clone()),
            ("issue.body".into(), issue.body.clone()),
        ],
        // Several rounds of the loop run at once here: none may sweep another's prompt.
        exclusive: false,
    };
    if let Some(guard) = &guard {
        guard.wrote(ctx.gh_dir());
    }
    let outcome = round::run(&ctx, &mut held, stop)
        .await
        .unwrap_or_else(|e| round::Outcome::failed(e.message));
    drop(guard);
    let failed = !outcome.succeeded();
    store
        .loops()
        .end_round(
            ns,
            name,
            RoundEnd {
                round,
                status: outcome.status,
                exit_code: outcome.exit_code,
                reason: outcome.reason.clone(),
                consecutive_failures: i64::from(failed),
                next_in_ms: 0,
                state: LoopStatus::Idle,
                api_calls: None,
                github_logins: Vec::new(),
            },
        )
        .await?;
    logs::prune(&log_dir, spec.keep_logs);
    // The label comes off while the claim is still ours (and kept alive): once it is given
    // back, another host may claim the issue and put its own label on. A lost claim's
    // label may already be the new holder's: it stays.
    if let Some(github) = &github
        && outcome.status != RoundStatus::Lost
    {
        github.unmark(&issues, &issue).await;
    }
    match outcome.status {
        RoundStatus::Succeeded => {
            drop(held);
            let result = format!("round {round} on {host}");
            end_claim(arbiter_ops::queue::done(store, ns, claim.id, claim.token, Some(&result)).await)
        }
        // The claim went elsewhere (or ran out): nothing of it is ours to end.
        RoundStatus::Lost => Ok(()),
        // The supervisor stops: the issue goes back at once (the attempt counts).
        RoundStatus::Interrupted => end_claim(held.release().await.map(|_| ())),
        _ => {
            drop(held);
            let request = FailRequest {
                namespace: ns.clone(),
                id: claim.id,
                token: claim.token,
                reason: format!("round {round} on {host}: {}", outcome.reason),
                retry_in: None,
            };
            end_claim(arbiter_ops::queue::fail(store, config, &request).await.map(|_| ()))
        }
    }
}

/// An ended claim: a stale token (the claim ran out meanwhile) is logged, not an error.
fn end_claim<T>(result: Result<T>) -> Result<()> {
    match result {
        Ok(_) => Ok(()),
        Err(e) if matches!(e.kind, ErrorKind::Lost | ErrorKind::NotFound) => {
            tracing::warn!(error = %e, "the claim could not be ended");
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// The loop's GitHub token, as its rounds get it: the profile's token, else `GH_TOKEN` of
/// the loop's (or its profile's) environment; `None`: anonymous.
async fn loop_token(config: &Config, spec: &LoopSpec) -> Result<Option<String>> {
    let remote = git::origin_remote(&spec.repo).await;
    let profile = config.profile_for(spec, remote.as_deref());
    if let Some(profile) = profile
        && let Some(token) = round::token(profile, &spec.repo, profile.token_timeout.min(spec.timeout))
            .await
            .map_err(Error::bad_input)?
    {
        return Ok(Some(token));
    }
    Ok(spec
        .env
        .get("GH_TOKEN")
        .or_else(|| profile.and_then(|p| p.env.get("GH_TOKEN")))
        .cloned())
}

/// GitHub's REST API through the supervisor's proxy, as one loop (its token).
struct GithubClient {
    http: reqwest::Client,
    /// The proxy's loopback URL.
    api: String,
    /// Never logged.
    token: Option<String>,
}

/// An issue as GitHub lists it (what the loop needs of it).
#[derive(Debug, Deserialize)]
struct ListedIssue {
    number: u64,
    title: String,
    html_url: String,
    body: Option<String>,
    #[serde(default)]
    labels: Vec<ListedLabel>,
    pull_request: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
struct ListedLabel {
    name: String,
}

impl GithubClient {
    async fn for_loop(shared: &Shared, config: &Config, spec: &LoopSpec) -> Result<GithubClient> {
        let Some(guard) = shared.github() else {
            return Err(Error::new(
                ErrorKind::Unavailable,
                "no GitHub proxy runs (it could not start): the issues are not listed",
            ));
        };
        Ok(GithubClient {
            http: arbiter_notify::send::client(GITHUB_TIMEOUT),
            api: guard.api_url().to_string(),
            token: loop_token(config, spec).await?,
        })
    }

    fn request(&self, method: reqwest::Method, url: reqwest::Url) -> reqwest::RequestBuilder {
        let request = self
            .http
            .request(method, url)
            .header("accept", "application/vnd.github+json")
            .header("x-github-api-version", "2022-11-28");
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    /// One page of issues and the next page's URL (`Link: rel="next"`).
    async fn get_page(&self, url: &reqwest::Url) -> Result<(Vec<ListedIssue>, Option<reqwest::Url>)> {
        let what = format!("GET {}", url.path());
        let answer = self
            .request(reqwest::Method::GET, url.clone())
            .send()
            .await
            .map_err(|e| Error::internal(format!("{what}: {}", e.without_url())))?;
        let status = answer.status();
        if !status.is_success() {
            let text = answer.text().await.unwrap_or_default();
            let text: String = text.chars().take(300).collect();
            return Err(Error::internal(format!("{what}: GitHub answered {status}: {text}")));
        }
        let next = answer
            .headers()
            .get_all("link")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(next_link)
            .and_then(|next| reqwest::Url::parse(&next).ok());
        let issues = answer
            .json::<Vec<ListedIssue>>()
            .await
            .map_err(|e| Error::internal(format!("{what}: {}", e.without_url())))?;
        Ok((issues, next))
    }

    /// The issue's URL of the API: `/repos/{o}/{r}/issues/{n}/<rest…>`.
    fn issue_url(&self, issues: &IssuesSpec, number: u64, rest: &[&str]) -> Option<reqwest::Url> {
        let (owner, repo) = issues.owner_and_name();
        let mut url = reqwest::Url::parse(&self.api).ok()?;
        {
            let mut segments = url.path_segments_mut().ok()?;
            segments.pop_if_empty();
            segments.extend(["repos", owner, repo, "issues", &number.to_string()]);
            segments.extend(rest);
        }
        Some(url)
    }

    /// Sends a write; a failure is logged (marks are best effort).
    async fn write(&self, method: reqwest::Method, url: Option<reqwest::Url>, body: Option<serde_json::Value>) {
        let Some(url) = url else { return };
        let what = format!("{method} {}", url.path());
        let mut request = self.request(method, url);
        if let Some(body) = body {
            request = request.json(&body);
        }
        match request.send().await {
            Ok(answer) if answer.status().is_success() => {}
            Ok(answer) => tracing::warn!("{what}: GitHub answered {}", answer.status()),
            Err(e) => tracing::warn!("{what}: {}", e.without_url()),
        }
    }

    /// The claim on the issue: the label and a comment.
    async fn mark(&self, issues: &IssuesSpec, issue: &IssueBody, comment: &str) {
        let labels = self.issue_url(issues, issue.number, &["labels"]);
        self.write(
            reqwest::Method::POST,
            labels,
            Some(serde_json::json!({ "labels": [WORKING_LABEL] })),
        )
        .await;
        let comments = self.issue_url(issues, issue.number, &["comments"]);
        self.write(
            reqwest::Method::POST,
            comments,
            Some(serde_json::json!({ "body": comment })),
        )
        .await;
    }

    /// The label off again.
    async fn unmark(&self, issues: &IssuesSpec, issue: &IssueBody) {
        let label = self.issue_url(issues, issue.number, &["labels", WORKING_LABEL]);
        self.write(reqwest::Method::DELETE, label, None).await;
    }
}

/// The `rel="next"` URL of one `Link` header value.
fn next_link(header: &str) -> Option<String> {
    header.split(',').find_map(|part| {
        let (url, params) = part.split_once(';')?;
        let next = params.split(';').any(|p| p.trim().replace(' ', "") == "rel=\"next\"");
        next.then(|| url.trim().trim_start_matches('<').trim_end_matches('>').to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn needs_labels_become_lowercase_capabilities() {
        let labels = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let caps = requires(
            &labels(&["squad", "needs:GPU", "Needs:repo:web", "needs:gpu"]),
            "needs:",
        )
        .unwrap();
        let caps: Vec<&str> = caps.iter().map(|c| c.as_str()).collect();
        assert_eq!(caps, ["gpu", "repo:web"]);
        assert!(requires(&labels(&["squad"]), "needs:").unwrap().is_empty());
        let err = requires(&labels(&["needs:two words"]), "needs:").unwrap_err();
        assert!(err.contains("\"needs:two words\""), "{err}");
    }

    #[test]
    fn the_next_page_comes_from_link() {
        let header = r#"<http://127.0.0.1:1/repos/a/b/issues?page=2>; rel="next", <http://127.0.0.1:1/repos/a/b/issues?page=5>; rel="last""#;
        assert_eq!(
            next_link(header).as_deref(),
            Some("http://127.0.0.1:1/repos/a/b/issues?page=2")
        );
        assert_eq!(next_link(r#"<http://x/?page=1>; rel="prev""#), None);
    }
}
