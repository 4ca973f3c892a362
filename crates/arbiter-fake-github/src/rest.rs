//! The REST endpoints: which route a request names, what it costs, and the JSON GitHub
//! answers (the fields clients read, in GitHub's shapes).

use serde_json::{Value, json};

use crate::limits::{Points, Resource};
use crate::seed::{Comment, Data, Item, Millis, Repo, iso, label_color, label_id, node_id};

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
    Pulls(String, String),
    Pull(String, String, u64),
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
            ["repos", o, r, kind, n] => match (number(n), *kind) {
                (Some(n), "issues") => Route::Issue(o.to_string(), r.to_string(), n),
                (Some(n), "pulls") => Route::Pull(o.to_string(), r.to_string(), n),
                _ => Route::Unknown,
            },
            ["repos", o, r, "issues", n, sub] => match (number(n), *sub) {
                (Some(n), "comments") => Route::Comments(o.to_string(), r.to_string(), n),
                (Some(n), "labels") => Route::Labels(o.to_string(), r.to_string(), n),
                _ => Route::Unknown,
            },
            _ => Route::Unknown,
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
        "updated_at": iso(repo.updated),
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
        "head": {"ref": pull.head, "label": format!("{}:{}", repo.owner, pull.head)},
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
        "created_at": iso(comment.created),
        "updated_at": iso(comment.updated),
        "url": format!("{base}/repos/{full}/issues/comments/{}", comment.id),
        "issue_url": format!("{base}/repos/{full}/issues/{}", item.number),
        "html_url": format!("https://github.com/{full}/issues/{}#issuecomment-{}", item.number, comment.id),
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
            Some(repo) => Reply::ok(repo_json(repo, base)).modified(repo.updated),
            None => not_found(),
        },
        Route::Issues(o, r) | Route::Pulls(o, r) => {
            let Some(repo) = find(o, r) else {
                return not_found();
            };
            let pulls = matches!(route, Route::Pulls(..));
            let state = param(&query, "state");
            let mut items: Vec<&Item> = repo
                .items
                .iter()
                .filter(|item| !pulls || item.pull.is_some())
                .filter(|item| state_matches(item, state))
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
#[serde(untagged)]
enum NewLabels {
    Object { labels: Vec<String> },
    List(Vec<String>),
}

/// Answers a write (POST, PATCH) by `login`.
pub fn write(data: &mut Data, method: &str, route: &Route, body: &[u8], login: &str, base: &str) -> Reply {
    let (o, r) = match route {
        Route::Issues(o, r) | Route::Issue(o, r, _) | Route::Comments(o, r, _) | Route::Labels(o, r, _) => (o, r),
        _ => return not_found(),
    };
    let Some(repo) = data.repo(o, r) else {
        return not_found();
    };
    let number = match route {
        Route::Issue(_, _, n) | Route::Comments(_, _, n) | Route::Labels(_, _, n) => {
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
}
