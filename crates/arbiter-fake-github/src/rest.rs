//! The REST endpoints: which route a request names, what it costs, and the JSON GitHub
//! answers (the fields clients read, in GitHub's shapes).

use serde_json::{Value, json};

use crate::limits::{Points, Resource};
use crate::seed::{
    CheckRun, Comment, Data, Item, Millis, REACTIONS, Reaction, Repo, Status, iso, label_color, label_id, node_id,
};

/// A REST path, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    User,
    RateLimit,
    Graphql,
    SearchIssues,
    Repo(String, String),
    Issues(String, String),
    Issue(String, String, u64),
    Comments(String, String, u64),
    Labels(String, String, u64),
    /// `/repos/{o}/{r}/issues/{n}/labels/{name}` (DELETE: remove one label).
    Label(String, String, u64, String),
    Pulls(String, String),
    Pull(String, String, u64),
    /// `/repos/{o}/{r}/issues/{n}/reactions` (POST).
    IssueReactions(String, String, u64),
    /// `/repos/{o}/{r}/issues/comments/{id}/reactions` (POST).
    CommentReactions(String, String, u64),
    /// `/repos/{o}/{r}/statuses/{sha}` (POST).
    Statuses(String, String, String),
    /// `/repos/{o}/{r}/check-runs` (POST).
    CheckRuns(String, String),
    /// `/repos/{o}/{r}/commits/{ref}/status`: the combined status (GET).
    CommitStatus(String, String, String),
    /// `/repos/{o}/{r}/commits/{ref}/check-runs` (GET).
    CommitCheckRuns(String, String, String),
    Unknown,
}

impl Route {
    pub fn parse(path: &str) -> Route {
        let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
        let number = |s: &str| s.parse::<u64>().ok().filter(|n| *n > 0);
        let repo = |o: &&str, r: &&str| (o.to_string(), r.to_string());
        match parts.as_slice() {
            ["user"] => Route::User,
            ["rate_limit"] => Route::RateLimit,
            ["graphql"] => Route::Graphql,
            ["search", "issues"] => Route::SearchIssues,
            ["repos", o, r] => {
                let (o, r) = repo(o, r);
                Route::Repo(o, r)
            }
            ["repos", o, r, "issues"] => {
                let (o, r) = repo(o, r);
                Route::Issues(o, r)
            }
            ["repos", o, r, "pulls"] => {
                let (o, r) = repo(o, r);
                Route::Pulls(o, r)
            }
            ["repos", o, r, "statuses", sha] => Route::Statuses(o.to_string(), r.to_string(), sha.to_string()),
            ["repos", o, r, kind, n] => match (number(n), *kind) {
                (Some(n), "issues") => Route::Issue(o.to_string(), r.to_string(), n),
                (Some(n), "pulls") => Route::Pull(o.to_string(), r.to_string(), n),
                _ => Route::Unknown,
            },
            ["repos", o, r, "check-runs"] => Route::CheckRuns(o.to_string(), r.to_string()),
            ["repos", o, r, "issues", "comments", id, "reactions"] => match number(id) {
                Some(id) => Route::CommentReactions(o.to_string(), r.to_string(), id),
                None => Route::Unknown,
            },
            ["repos", o, r, "commits", sha, "status"] => {
                Route::CommitStatus(o.to_string(), r.to_string(), sha.to_string())
            }
            ["repos", o, r, "commits", sha, "check-runs"] => {
                Route::CommitCheckRuns(o.to_string(), r.to_string(), sha.to_string())
            }
            ["repos", o, r, "issues", n, sub] => match (number(n), *sub) {
                (Some(n), "reactions") => Route::IssueReactions(o.to_string(), r.to_string(), n),
                (Some(n), "comments") => Route::Comments(o.to_string(), r.to_string(), n),
                (Some(n), "labels") => Route::Labels(o.to_string(), r.to_string(), n),
                _ => Route::Unknown,
            },
            ["repos", o, r, "issues", n, "labels", label] => match number(n) {
                Some(n) => Route::Label(o.to_string(), r.to_string(), n, decode(label)),
                None => Route::Unknown,
            },
            _ => Route::Unknown,
        }
    }

    /// What it is, in a word or two (for [`crate::UserStats::spent`]).
    pub fn kind(&self) -> &'static str {
        match self {
            Route::User => "user",
            Route::RateLimit => "rate_limit",
            Route::Graphql => "graphql",
            Route::SearchIssues => "search",
            Route::Repo(..) => "repo",
            Route::Issues(..) => "issues",
            Route::Issue(..) => "issue",
            Route::Comments(..) => "comments",
            Route::Labels(..) | Route::Label(..) => "labels",
            Route::Pulls(..) => "pulls",
            Route::Pull(..) => "pull",
            Route::IssueReactions(..) | Route::CommentReactions(..) => "reactions",
            Route::Statuses(..) => "statuses",
            Route::CheckRuns(..) => "check-runs",
            Route::CommitStatus(..) => "commit status",
            Route::CommitCheckRuns(..) => "commit check-runs",
            Route::Unknown => "unknown",
        }
    }

    /// The primary budget it spends, `None` for `/rate_limit` (free, as GitHub documents).
    pub fn resource(&self) -> Option<Resource> {
        match self {
            Route::RateLimit => None,
            Route::Graphql => Some(Resource::Graphql),
            Route::SearchIssues => Some(Resource::Search),
            _ => Some(Resource::Core),
        }
    }

    /// Secondary points of a REST request: GET, HEAD and OPTIONS 1, other methods 5.
    pub fn points(method: &str) -> Points {
        match method {
            "GET" | "HEAD" | "OPTIONS" => Points::Rest(1),
            _ => Points::Rest(5),
        }
    }

    /// Whether the request creates content (an issue, a comment).
    pub fn creates_content(&self, method: &str) -> bool {
        method == "POST" && matches!(self, Route::Issues(..) | Route::Comments(..))
    }
}

/// An answer before headers: status, JSON body, and what conditional requests compare.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub body: Value,
    pub last_modified: Option<Millis>,
    pub link: Option<String>,
}

impl Reply {
    pub fn ok(body: Value) -> Reply {
        Reply::status(200, body)
    }

    pub fn status(status: u16, body: Value) -> Reply {
        Reply {
            status,
            body,
            last_modified: None,
            link: None,
        }
    }

    fn modified(mut self, at: Millis) -> Reply {
        self.last_modified = Some(at);
        self
    }
}

pub const DOCS: &str = "https://docs.github.com/rest";

pub fn not_found() -> Reply {
    Reply::status(
        404,
        json!({"message": "Not Found", "documentation_url": DOCS, "status": "404"}),
    )
}

fn invalid(field: &str, why: &str) -> Reply {
    Reply::status(
        422,
        json!({
            "message": "Validation Failed",
            "errors": [{"resource": "Issue", "code": "missing_field", "field": field, "message": why}],
            "documentation_url": DOCS,
            "status": "422",
        }),
    )
}

/// A request body as `T`, or GitHub's 400 for a body it cannot read.
fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Reply> {
    serde_json::from_slice(body).map_err(|e| {
        Reply::status(
            400,
            json!({"message": format!("Problems parsing JSON: {e}"), "documentation_url": DOCS, "status": "400"}),
        )
    })
}

/// The query string's `key=value` pairs, percent-decoded.
pub fn query_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = match bytes.get(i..i + 3) {
            Some([b'%', hi, lo]) => hex(*hi).zip(hex(*lo)).map(|(hi, lo)| hi * 16 + lo),
            _ => None,
        };
        match (escaped, bytes[i]) {
            (Some(b), _) => {
                out.push(b);
                i += 3;
            }
            (None, b'+') => {
                out.push(b' ');
                i += 1;
            }
            (None, b) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn param<'a>(query: &'a [(String, String)], key: &str) -> Option<&'a str> {
    query.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

pub fn user_json(login: &str, id: u64, base: &str) -> Value {
    json!({
        "login": login,
        "id": id,
        "node_id": format!("U_{id}"),
        "type": "User",
        "site_admin": false,
        "name": login,
        "url": format!("{base}/users/{login}"),
        "html_url": format!("https://github.com/{login}"),
    })
}

fn owner_json(login: &str, base: &str) -> Value {
    json!({"login": login, "type": "User", "url": format!("{base}/users/{login}")})
}

fn label_json(name: &str) -> Value {
    json!({
        "id": label_id(name),
        "node_id": format!("LA_{}", label_id(name)),
        "name": name,
        "color": label_color(name),
        "description": null,
        "default": false,
    })
}

pub fn repo_json(repo: &Repo, base: &str) -> Value {
    let open = repo.items.iter().filter(|i| i.open).count();
    json!({
        "id": repo.id,
        "node_id": format!("R_{}", repo.id),
        "name": repo.name,
        "full_name": repo.full_name(),
        "owner": owner_json(&repo.owner, base),
        "private": false,
        "html_url": format!("https://github.com/{}", repo.full_name()),
        "url": format!("{base}/repos/{}", repo.full_name()),
        "default_branch": "main",
        "has_issues": true,
        "open_issues_count": open,
        "updated_at": iso(repo.own_updated),
    })
}

pub fn issue_json(repo: &Repo, item: &Item, base: &str) -> Value {
    let full = repo.full_name();
    let mut issue = json!({
        "id": item.id,
        "node_id": node_id(item),
        "number": item.number,
        "title": item.title,
        "body": item.body,
        "state": if item.open { "open" } else { "closed" },
        "state_reason": if item.open { Value::Null } else { json!("completed") },
        "user": owner_json(&item.author, base),
        "labels": item.labels.iter().map(|l| label_json(l)).collect::<Vec<_>>(),
        "assignees": [],
        "comments": item.comments.len(),
        "reactions": reactions_json(&item.reactions, &format!("{base}/repos/{full}/issues/{}/reactions", item.number)),
        "created_at": iso(item.created),
        "updated_at": iso(item.updated),
        "closed_at": item.closed_at.map(iso),
        "url": format!("{base}/repos/{full}/issues/{}", item.number),
        "comments_url": format!("{base}/repos/{full}/issues/{}/comments", item.number),
        "html_url": format!("https://github.com/{full}/issues/{}", item.number),
    });
    if item.pull.is_some() {
        issue["pull_request"] = json!({
            "url": format!("{base}/repos/{full}/pulls/{}", item.number),
            "html_url": format!("https://github.com/{full}/pull/{}", item.number),
        });
    }
    issue
}

pub fn pull_json(repo: &Repo, item: &Item, base: &str) -> Value {
    let full = repo.full_name();
    let pull = item.pull.as_ref().expect("a pull request");
    json!({
        "id": item.id,
        "node_id": node_id(item),
        "number": item.number,
        "title": item.title,
        "body": item.body,
        "state": if item.open { "open" } else { "closed" },
        "draft": pull.draft,
        "merged": false,
        "user": owner_json(&item.author, base),
        "labels": item.labels.iter().map(|l| label_json(l)).collect::<Vec<_>>(),
        "head": {"ref": pull.head, "label": format!("{}:{}", repo.owner, pull.head), "sha": pull.head_sha()},
        "commits": pull.commits.len(),
        "additions": 1,
        "deletions": 0,
        "changed_files": 1,
        "mergeable": true,
        "mergeable_state": "clean",
        "maintainer_can_modify": false,
        "assignees": [],
        "requested_reviewers": [],
        "requested_teams": [],
        "milestone": null,
        "base": {"ref": pull.base, "label": format!("{}:{}", repo.owner, pull.base)},
        "created_at": iso(item.created),
        "updated_at": iso(item.updated),
        "closed_at": item.closed_at.map(iso),
        "url": format!("{base}/repos/{full}/pulls/{}", item.number),
        "html_url": format!("https://github.com/{full}/pull/{}", item.number),
    })
}

pub fn comment_json(repo: &Repo, item: &Item, comment: &Comment, base: &str) -> Value {
    let full = repo.full_name();
    json!({
        "id": comment.id,
        "node_id": format!("IC_{}", comment.id),
        "body": comment.body,
        "user": owner_json(&comment.author, base),
        "reactions": reactions_json(&comment.reactions, &format!("{base}/repos/{full}/issues/comments/{}/reactions", comment.id)),
        "created_at": iso(comment.created),
        "updated_at": iso(comment.updated),
        "url": format!("{base}/repos/{full}/issues/comments/{}", comment.id),
        "issue_url": format!("{base}/repos/{full}/issues/{}", item.number),
        "html_url": format!("https://github.com/{full}/issues/{}#issuecomment-{}", item.number, comment.id),
    })
}

/// The reactions summary GitHub puts in an issue or comment: the count of each.
fn reactions_json(reactions: &[Reaction], url: &str) -> Value {
    let mut summary = json!({"url": url, "total_count": reactions.len()});
    for (content, _) in REACTIONS {
        summary[content] = json!(reactions.iter().filter(|r| r.content == content).count());
    }
    summary
}

fn status_json(status: &Status, base: &str) -> Value {
    json!({
        "id": status.id,
        "node_id": format!("SC_{}", status.id),
        "state": status.state,
        "context": status.context,
        "description": null,
        "target_url": null,
        "created_at": iso(status.created),
        "updated_at": iso(status.created),
        "url": format!("{base}/statuses/{}", status.sha),
    })
}

fn check_run_json(run: &CheckRun, repo: &Repo, base: &str) -> Value {
    json!({
        "id": run.id,
        "node_id": format!("CR_{}", run.id),
        "head_sha": run.sha,
        "name": run.name,
        "status": run.status,
        "conclusion": run.conclusion,
        "started_at": iso(run.started),
        "completed_at": (run.status == "completed").then(|| iso(run.started)),
        "details_url": null,
        "url": format!("{base}/repos/{}/check-runs/{}", repo.full_name(), run.id),
    })
}

/// The combined state of the latest status of each context: failure over pending over
/// success, as GitHub combines them (`pending` when there is none).
fn combined_state(latest: &[&Status]) -> &'static str {
    if latest.iter().any(|s| s.state == "error" || s.state == "failure") {
        "failure"
    } else if latest.is_empty() || latest.iter().any(|s| s.state == "pending") {
        "pending"
    } else {
        "success"
    }
}

/// A commit ref as the commit endpoints take it: a SHA of the repository's, or a pull
/// request's head branch name.
fn resolve_ref(repo: &Repo, reference: &str) -> Option<String> {
    repo.items.iter().filter_map(|i| i.pull.as_ref()).find_map(|pull| {
        if pull.head == reference {
            return Some(pull.head_sha().to_string());
        }
        pull.commits.iter().find(|c| c.as_str() == reference).cloned()
    })
}

/// One page of `values` as GitHub pages lists: `per_page` (default 30, at most 100) and
/// `page` (from 1), with a `Link` header naming the next and last pages.
fn page(values: Vec<Value>, query: &[(String, String)], base: &str, path: &str) -> Reply {
    let per_page = param(query, "per_page")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(30)
        .clamp(1, 100);
    let page = param(query, "page")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(1)
        .max(1);
    let pages = values.len().div_ceil(per_page).max(1);
    let link = (page < pages).then(|| {
        let others: String = query
            .iter()
            .filter(|(k, _)| k != "page" && k != "per_page")
            .map(|(k, v)| format!("{k}={v}&"))
            .collect();
        let at = |p: usize| format!("<{base}{path}?{others}per_page={per_page}&page={p}>");
        format!("{}; rel=\"next\", {}; rel=\"last\"", at(page + 1), at(pages))
    });
    let body = values.into_iter().skip((page - 1) * per_page).take(per_page).collect();
    Reply {
        link,
        ..Reply::ok(Value::Array(body))
    }
}

fn state_matches(item: &Item, state: Option<&str>) -> bool {
    match state.unwrap_or("open") {
        "all" => true,
        "closed" => !item.open,
        _ => item.open,
    }
}

/// Answers a GET (no change to the data). `path` is the request's path, `base` the URL
/// the client used (`http://host`), for the URLs in bodies.
pub fn get(data: &Data, route: &Route, query: &str, base: &str, path: &str) -> Reply {
    let query = query_pairs(query);
    let find = |o: &str, r: &str| data.repo(o, r).map(|i| &data.repos[i]);
    match route {
        Route::Repo(o, r) => match find(o, r) {
            Some(repo) => Reply::ok(repo_json(repo, base)).modified(repo.own_updated),
            None => not_found(),
        },
        Route::Issues(o, r) | Route::Pulls(o, r) => {
            let Some(repo) = find(o, r) else {
                return not_found();
            };
            let pulls = matches!(route, Route::Pulls(..));
            let state = param(&query, "state");
            // `labels`: a comma-separated list, every one of them on the item (GitHub
            // compares label names without case).
            let labels: Vec<&str> = param(&query, "labels")
                .map(|l| l.split(',').map(str::trim).filter(|l| !l.is_empty()).collect())
                .unwrap_or_default();
            let labelled = |item: &&Item| {
                labels
                    .iter()
                    .all(|want| item.labels.iter().any(|have| have.eq_ignore_ascii_case(want)))
            };
            let mut items: Vec<&Item> = repo
                .items
                .iter()
                .filter(|item| !pulls || item.pull.is_some())
                .filter(|item| state_matches(item, state))
                .filter(labelled)
                .collect();
            // GitHub's `sort` (created — the default —, updated, comments; pulls also
            // popularity and long-running, read here as created) and `direction` (desc by
            // default). Ties keep the newest first.
            items.sort_by(|a, b| {
                let by = match param(&query, "sort") {
                    Some("updated") => a.updated.cmp(&b.updated),
                    Some("comments") if !pulls => a.comments.len().cmp(&b.comments.len()),
                    _ => std::cmp::Ordering::Equal,
                };
                by.then(a.number.cmp(&b.number))
            });
            if param(&query, "direction") != Some("asc") {
                items.reverse();
            }
            let values = items
                .into_iter()
                .map(|item| match pulls {
                    true => pull_json(repo, item, base),
                    false => issue_json(repo, item, base),
                })
                .collect();
            page(values, &query, base, path).modified(repo.updated)
        }
        Route::Issue(o, r, n) | Route::Pull(o, r, n) => {
            let Some(repo) = find(o, r) else {
                return not_found();
            };
            match (repo.item(*n), route) {
                (Some(item), Route::Issue(..)) => Reply::ok(issue_json(repo, item, base)).modified(item.updated),
                (Some(item), _) if item.pull.is_some() => Reply::ok(pull_json(repo, item, base)).modified(item.updated),
                _ => not_found(),
            }
        }
        Route::Comments(o, r, n) => {
            let Some((repo, item)) = find(o, r).and_then(|repo| Some((repo, repo.item(*n)?))) else {
                return not_found();
            };
            let values = item
                .comments
                .iter()
                .map(|c| comment_json(repo, item, c, base))
                .collect();
            page(values, &query, base, path).modified(item.updated)
        }
        Route::Labels(o, r, n) => match find(o, r).and_then(|repo| repo.item(*n)) {
            Some(item) => Reply::ok(item.labels.iter().map(|l| label_json(l)).collect()).modified(item.updated),
            None => not_found(),
        },
        Route::CommitStatus(o, r, reference) | Route::CommitCheckRuns(o, r, reference) => {
            let Some(repo) = find(o, r) else {
                return not_found();
            };
            let Some(sha) = resolve_ref(repo, reference) else {
                return Reply::status(
                    422,
                    json!({"message": format!("No commit found for SHA: {reference}"), "documentation_url": DOCS}),
                );
            };
            if matches!(route, Route::CommitCheckRuns(..)) {
                let runs: Vec<Value> = repo
                    .check_runs
                    .iter()
                    .rev()
                    .filter(|run| run.sha == sha)
                    .map(|run| check_run_json(run, repo, base))
                    .collect();
                let mut reply = page(runs.clone(), &query, base, path);
                reply.body = json!({"total_count": runs.len(), "check_runs": reply.body});
                return reply;
            }
            // The latest status of each context, newest first.
            let mut latest: Vec<&Status> = Vec::new();
            for status in repo.statuses.iter().rev().filter(|s| s.sha == sha) {
                if !latest.iter().any(|l| l.context == status.context) {
                    latest.push(status);
                }
            }
            Reply::ok(json!({
                "state": combined_state(&latest),
                "sha": sha,
                "total_count": latest.len(),
                "statuses": latest.iter().map(|s| status_json(s, base)).collect::<Vec<_>>(),
                "url": format!("{base}/repos/{}/commits/{sha}/status", repo.full_name()),
            }))
        }
        Route::SearchIssues => search(data, &query, base, path),
        _ => not_found(),
    }
}

/// `GET /search/issues?q=…`: the qualifiers `repo:OWNER/NAME`, `is:issue`, `is:pr`,
/// `is:open`, `is:closed`, `state:open|closed`; other words must appear in the title.
fn search(data: &Data, query: &[(String, String)], base: &str, path: &str) -> Reply {
    let q = param(query, "q").unwrap_or("");
    let mut items = Vec::new();
    for repo in &data.repos {
        for item in repo.items.iter().rev() {
            let mut keep = true;
            for word in q.split_whitespace() {
                keep &= match word.split_once(':') {
                    Some(("repo", name)) => repo.full_name().eq_ignore_ascii_case(name),
                    Some(("is" | "type", "issue")) => item.pull.is_none(),
                    Some(("is" | "type", "pr")) => item.pull.is_some(),
                    Some(("is" | "state", "open")) => item.open,
                    Some(("is" | "state", "closed")) => !item.open,
                    Some(_) => true,
                    None => item.title.to_lowercase().contains(&word.to_lowercase()),
                };
            }
            if keep {
                items.push(issue_json(repo, item, base));
            }
        }
    }
    let total = items.len();
    let mut reply = page(items, query, base, path);
    reply.body = json!({"total_count": total, "incomplete_results": false, "items": reply.body});
    reply
}

#[derive(serde::Deserialize)]
struct NewIssue {
    title: Option<String>,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    labels: Vec<String>,
}

#[derive(serde::Deserialize)]
struct IssueChange {
    title: Option<String>,
    body: Option<String>,
    state: Option<String>,
    labels: Option<Vec<String>>,
}

#[derive(serde::Deserialize)]
struct NewComment {
    body: Option<String>,
}

#[derive(serde::Deserialize)]
struct NewReaction {
    content: String,
}

#[derive(serde::Deserialize)]
struct NewStatus {
    state: String,
    context: Option<String>,
}

#[derive(serde::Deserialize)]
struct NewCheckRun {
    name: String,
    head_sha: String,
    status: Option<String>,
    conclusion: Option<String>,
}

#[derive(serde::Deserialize)]
#[serde(untagged)]
enum NewLabels {
    Object { labels: Vec<String> },
    List(Vec<String>),
}

/// Answers a write (POST, PATCH) by `login`.
pub fn write(data: &mut Data, method: &str, route: &Route, body: &[u8], login: &str, base: &str) -> Reply {
    let (o, r) = match route {
        Route::Issues(o, r)
        | Route::Issue(o, r, _)
        | Route::Comments(o, r, _)
        | Route::Labels(o, r, _)
        | Route::Label(o, r, _, _)
        | Route::IssueReactions(o, r, _)
        | Route::CommentReactions(o, r, _)
        | Route::Statuses(o, r, _)
        | Route::CheckRuns(o, r) => (o, r),
        _ => return not_found(),
    };
    let Some(repo) = data.repo(o, r) else {
        return not_found();
    };
    match (method, route) {
        ("POST", Route::IssueReactions(_, _, n) | Route::CommentReactions(_, _, n)) => {
            let new: NewReaction = match parse(body) {
                Ok(value) => value,
                Err(reply) => return reply,
            };
            if !REACTIONS.iter().any(|(content, _)| *content == new.content) {
                return invalid(
                    "content",
                    "content is one of +1, -1, laugh, confused, heart, hooray, rocket, eyes",
                );
            }
            let (number, comment) = match route {
                Route::IssueReactions(..) => (Some(*n).filter(|n| data.repos[repo].item(*n).is_some()), None),
                _ => (data.find_comment(repo, *n), Some(*n)),
            };
            let Some(number) = number else {
                return not_found();
            };
            data.react(repo, number, comment, &new.content, login);
            return Reply::status(
                201,
                json!({"content": new.content, "user": owner_json(login, base), "created_at": iso(crate::seed::now_ms())}),
            );
        }
        ("POST", Route::Statuses(_, _, sha)) => {
            let new: NewStatus = match parse(body) {
                Ok(value) => value,
                Err(reply) => return reply,
            };
            if !["error", "failure", "pending", "success"].contains(&new.state.as_str()) {
                return invalid("state", "state is error, failure, pending or success");
            }
            let Some(sha) = resolve_ref(&data.repos[repo], sha) else {
                return Reply::status(
                    422,
                    json!({"message": format!("No commit found for SHA: {sha}"), "documentation_url": DOCS}),
                );
            };
            let context = new.context.unwrap_or_else(|| "default".to_string());
            let status = data.add_status(repo, &sha, &context, &new.state);
            return Reply::status(201, status_json(&status, base));
        }
        ("POST", Route::CheckRuns(..)) => {
            let new: NewCheckRun = match parse(body) {
                Ok(value) => value,
                Err(reply) => return reply,
            };
            let Some(sha) = resolve_ref(&data.repos[repo], &new.head_sha) else {
                return invalid("head_sha", "head_sha names no commit of this repository");
            };
            let status = new.status.unwrap_or_else(|| "queued".to_string());
            let run = data.add_check_run(repo, &sha, &new.name, &status, new.conclusion.as_deref());
            let repo = &data.repos[repo];
            return Reply::status(201, check_run_json(&run, repo, base));
        }
        _ => {}
    }
    let number = match route {
        Route::Issue(_, _, n) | Route::Comments(_, _, n) | Route::Labels(_, _, n) | Route::Label(_, _, n, _) => {
            if data.repos[repo].item(*n).is_none() {
                return not_found();
            }
            *n
        }
        _ => 0,
    };
    match (method, route) {
        ("POST", Route::Issues(..)) => {
            let new: NewIssue = match parse(body) {
                Ok(value) => value,
                Err(reply) => return reply,
            };
            let Some(title) = new.title.filter(|t| !t.trim().is_empty()) else {
                return invalid("title", "title is missing");
            };
            let number = data.create_issue(repo, login, title, new.body.unwrap_or_default(), new.labels);
            let repo = &data.repos[repo];
            Reply::status(201, issue_json(repo, repo.item(number).unwrap(), base))
        }
        ("PATCH", Route::Issue(..)) => {
            let change: IssueChange = match parse(body) {
                Ok(value) => value,
                Err(reply) => return reply,
            };
            if let Some(state) = change.state.as_deref()
                && state != "open"
                && state != "closed"
            {
                return invalid("state", "state is open or closed");
            }
            data.edit(repo, number, |item| {
                if let Some(title) = change.title {
                    item.title = title;
                }
                if let Some(body) = change.body {
                    item.body = body;
                }
                if let Some(state) = change.state {
                    item.open = state == "open";
                }
                if let Some(labels) = change.labels {
                    item.labels = labels;
                }
            });
            let repo = &data.repos[repo];
            Reply::ok(issue_json(repo, repo.item(number).unwrap(), base))
        }
        ("POST", Route::Comments(..)) => {
            let new: NewComment = match parse(body) {
                Ok(value) => value,
                Err(reply) => return reply,
            };
            let Some(text) = new.body.filter(|b| !b.trim().is_empty()) else {
                return invalid("body", "body is missing");
            };
            let id = data.add_comment(repo, number, login, text);
            let repo = &data.repos[repo];
            let item = repo.item(number).unwrap();
            let comment = item.comments.iter().find(|c| c.id == id).unwrap();
            Reply::status(201, comment_json(repo, item, comment, base))
        }
        ("POST", Route::Labels(..)) => {
            let labels = match parse::<NewLabels>(body) {
                Ok(NewLabels::Object { labels } | NewLabels::List(labels)) => labels,
                Err(reply) => return reply,
            };
            data.edit(repo, number, |item| {
                for label in labels {
                    if !item.labels.contains(&label) {
                        item.labels.push(label);
                    }
                }
            });
            let item = data.repos[repo].item(number).unwrap();
            Reply::ok(item.labels.iter().map(|l| label_json(l)).collect())
        }
        ("DELETE", Route::Label(_, _, _, label)) => {
            let on = data.repos[repo].item(number).unwrap().labels.contains(label);
            if !on {
                return Reply::status(
                    404,
                    json!({"message": "Label does not exist", "documentation_url": DOCS}),
                );
            }
            data.edit(repo, number, |item| item.labels.retain(|l| l != label));
            let item = data.repos[repo].item(number).unwrap();
            Reply::ok(item.labels.iter().map(|l| label_json(l)).collect())
        }
        _ => not_found(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_parse_as_github_names_them() {
        assert_eq!(
            Route::parse("/repos/o/r/issues/3/comments"),
            Route::Comments("o".into(), "r".into(), 3)
        );
        assert_eq!(
            Route::parse("/repos/o/r/pulls/2"),
            Route::Pull("o".into(), "r".into(), 2)
        );
        assert_eq!(
            Route::parse("/repos/o/r/statuses/abc"),
            Route::Statuses("o".into(), "r".into(), "abc".into())
        );
        assert_eq!(
            Route::parse("/repos/o/r/issues/comments/9/reactions"),
            Route::CommentReactions("o".into(), "r".into(), 9)
        );
        assert_eq!(
            Route::parse("/repos/o/r/issues/3/reactions"),
            Route::IssueReactions("o".into(), "r".into(), 3)
        );
        assert_eq!(
            Route::parse("/repos/o/r/commits/abc/check-runs"),
            Route::CommitCheckRuns("o".into(), "r".into(), "abc".into())
        );
        assert_eq!(Route::parse("/repos/o/r/issues/0"), Route::Unknown);
        assert_eq!(Route::parse("/repos/o/r/issues/x"), Route::Unknown);
        assert_eq!(Route::parse("/nothing"), Route::Unknown);
    }

    #[test]
    fn query_strings_are_percent_decoded() {
        assert_eq!(
            query_pairs("q=repo%3Ao%2Fr+is%3Aopen&page=2"),
            vec![
                ("q".to_string(), "repo:o/r is:open".to_string()),
                ("page".to_string(), "2".to_string())
            ]
        );
        assert_eq!(query_pairs("a=%zz%"), vec![("a".to_string(), "%zz%".to_string())]);
    }

    #[test]
    fn issues_filter_by_every_label_and_one_label_comes_off() {
        let mut data = Data::new(&crate::Seed::default());
        let repo = data.repo("octo", "hello").unwrap();
        let a = data.create_issue(
            repo,
            "bot",
            "a".into(),
            String::new(),
            vec!["squad".into(), "needs:GPU".into()],
        );
        let b = data.create_issue(repo, "bot", "b".into(), String::new(), vec!["squad".into()]);
        let route = Route::parse("/repos/octo/hello/issues");
        let numbers = |data: &Data, query: &str| -> Vec<u64> {
            let reply = get(data, &route, query, "http://h", "/repos/octo/hello/issues");
            reply
                .body
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["number"].as_u64().unwrap())
                .collect()
        };
        assert_eq!(numbers(&data, "labels=squad"), [b, a]);
        assert_eq!(numbers(&data, "labels=SQUAD,needs%3Agpu"), [a]);
        assert!(numbers(&data, "labels=squad,nothing").is_empty());
        let label = Route::parse(&format!("/repos/octo/hello/issues/{a}/labels/needs%3AGPU"));
        assert_eq!(
            label,
            Route::Label("octo".into(), "hello".into(), a, "needs:GPU".into())
        );
        assert_eq!(write(&mut data, "DELETE", &label, b"", "bot", "http://h").status, 200);
        assert_eq!(data.repos[repo].item(a).unwrap().labels, ["squad"]);
        assert_eq!(write(&mut data, "DELETE", &label, b"", "bot", "http://h").status, 404);
    }
}
