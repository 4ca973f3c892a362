//! `POST /graphql`: parses the document, computes its cost by GitHub's documented rule, and
//! answers it from the seeded data.
//!
//! The schema is a slice of GitHub's: `repository(owner, name)` with `issues`,
//! `pullRequests`, `issue`, `pullRequest`, `issueOrPullRequest`, `labels`; `viewer`;
//! `rateLimit`; `node(id)`; mutations `addComment` and `createIssue`. Issues and pull
//! requests carry the fields `gh issue list|view` and `gh pr list|view` (gh 2.23) ask for.
//! Any list is a connection when its selection asks for `nodes`, `edges`, `totalCount` or
//! `pageInfo` (`first`, `last`, `after`, `before` apply). A field the slice does not know
//! answers `null` rather than a validation error.
//!
//! **Cost** (GitHub's rule for the primary budget): add up the requests each connection
//! needs, assuming every one returns its full `first`/`last`: a connection costs the product
//! of the `first`/`last` of the connections it is nested in (1 at the top); divide the sum by
//! 100 and round to the nearest whole number, at least 1. Every query `gh` sends for one list
//! or view comes to 1. Secondary points: a query 1, a mutation 5, and a mutation counts as
//! content creation.

pub mod parse;

use serde_json::{Map, Value, json};

use crate::seed::{Data, Item, REACTIONS, Reaction, Repo, iso, label_color, label_id, node_id};
use parse::{Document, Field, Kind, Selection, Val};

/// The data a request runs on: shared for a query (many run at once), exclusive for a
/// mutation.
pub enum Access<'d> {
    Read(&'d Data),
    Write(&'d mut Data),
}

impl Access<'_> {
    fn get(&self) -> &Data {
        match self {
            Access::Read(data) => data,
            Access::Write(data) => data,
        }
    }

    fn get_mut(&mut self) -> Option<&mut Data> {
        match self {
            Access::Read(_) => None,
            Access::Write(data) => Some(data),
        }
    }
}

/// A parsed request, ready to charge and run.
#[derive(Debug)]
pub struct Request {
    document: Document,
    operation: usize,
    variables: Map<String, Value>,
    pub mutation: bool,
    pub cost: u64,
}

/// What `rateLimit` answers: the budget after this request was charged.
#[derive(Debug, Clone, Copy)]
pub struct RateInfo {
    pub limit: u64,
    pub remaining: u64,
    pub used: u64,
    pub cost: u64,
    /// Unix seconds.
    pub reset: u64,
}

/// The caller.
#[derive(Debug, Clone)]
pub struct Viewer {
    pub login: String,
    pub id: u64,
}

/// An error body GitHub answers with HTTP 200.
pub fn error_body(message: &str) -> Value {
    json!({"errors": [{"message": message}]})
}

/// Parses a request body (`{"query", "variables", "operationName"}`); `Err` is the body of
/// the answer (a 400 for a body that is not JSON is the caller's).
pub fn prepare(body: &Value) -> Result<Request, Value> {
    let Some(query) = body.get("query").and_then(Value::as_str) else {
        return Err(json!({
            "message": "A query attribute must be specified and must be a string.",
            "documentation_url": "https://docs.github.com/graphql",
        }));
    };
    let document = parse::parse(query).map_err(|e| error_body(&e))?;
    let name = body.get("operationName").and_then(Value::as_str);
    let operation = document.operation(name).map_err(|e| error_body(&e))?;
    let operation = document
        .operations
        .iter()
        .position(|o| std::ptr::eq(o, operation))
        .expect("found above");
    let mut variables = match body.get("variables") {
        Some(Value::Object(vars)) => vars.clone(),
        _ => Map::new(),
    };
    let op = &document.operations[operation];
    for (name, default) in &op.variables {
        if !variables.contains_key(name)
            && let Some(default) = default
        {
            let value = literal(default, &Map::new());
            variables.insert(name.clone(), value);
        }
    }
    let mutation = op.kind == Kind::Mutation;
    let mut request = Request {
        document,
        operation,
        variables,
        mutation,
        cost: 0,
    };
    let requests = request.requests(&request.operation().selection, 1, 0);
    request.cost = ((requests + 50) / 100).max(1);
    Ok(request)
}

fn literal(val: &Val, vars: &Map<String, Value>) -> Value {
    match val {
        Val::Var(name) => vars.get(name).cloned().unwrap_or(Value::Null),
        Val::Int(i) => json!(i),
        Val::Float(f) => json!(f),
        Val::Str(s) | Val::Enum(s) => json!(s),
        Val::Bool(b) => json!(b),
        Val::Null => Value::Null,
        Val::List(items) => items.iter().map(|v| literal(v, vars)).collect(),
        Val::Object(fields) => Value::Object(fields.iter().map(|(k, v)| (k.clone(), literal(v, vars))).collect()),
    }
}

/// Type conditions a type satisfies besides its own name (the interfaces gh spreads on).
fn satisfies(typename: &str, condition: &str) -> bool {
    typename == condition
        || matches!(
            (typename, condition),
            ("User" | "Bot" | "Organization", "Actor" | "Node" | "RepositoryOwner")
                | (
                    "Issue" | "PullRequest",
                    "Node"
                        | "Comment"
                        | "Closable"
                        | "Labelable"
                        | "Assignable"
                        | "UniformResourceLocatable"
                        | "Reactable"
                )
                | ("IssueComment", "Node" | "Comment")
                | ("Repository", "Node" | "RepositoryInfo")
        )
}

const MAX_DEPTH: usize = 32;

impl Request {
    fn operation(&self) -> &parse::Operation {
        &self.document.operations[self.operation]
    }

    fn int_arg(&self, field: &Field, name: &str) -> Option<u64> {
        field
            .arg(name)
            .map(|v| literal(v, &self.variables))
            .and_then(|v| v.as_u64())
    }

    /// GitHub's request count for the cost rule (see the module's documentation).
    fn requests(&self, selection: &[Selection], multiplier: u64, depth: usize) -> u64 {
        if depth > MAX_DEPTH {
            return 0;
        }
        let mut total = 0u64;
        for item in selection {
            match item {
                Selection::Field(field) => {
                    let size = self.int_arg(field, "first").or_else(|| self.int_arg(field, "last"));
                    let inner = match size {
                        Some(n) => {
                            total = total.saturating_add(multiplier);
                            multiplier.saturating_mul(n.max(1))
                        }
                        None => multiplier,
                    };
                    total = total.saturating_add(self.requests(&field.selection, inner, depth + 1));
                }
                Selection::Inline { selection, .. } => {
                    total = total.saturating_add(self.requests(selection, multiplier, depth + 1));
                }
                Selection::Spread(name) => {
                    if let Some(fragment) = self.document.fragments.get(name) {
                        total = total.saturating_add(self.requests(&fragment.selection, multiplier, depth + 1));
                    }
                }
            }
        }
        total
    }

    /// The fields of `selection` that apply to `typename`, grouped by response key (a key
    /// asked twice, as fragments do, merges its sub-selections).
    fn collect<'s>(
        &'s self,
        selection: &'s [Selection],
        typename: &str,
        out: &mut Vec<(&'s str, Vec<&'s Field>)>,
        depth: usize,
    ) {
        if depth > MAX_DEPTH {
            return;
        }
        for item in selection {
            match item {
                Selection::Field(field) => match out.iter_mut().find(|(k, _)| *k == field.key()) {
                    Some((_, fields)) => fields.push(field),
                    None => out.push((field.key(), vec![field])),
                },
                Selection::Inline { on, selection } => {
                    if on.as_deref().is_none_or(|on| satisfies(typename, on)) {
                        self.collect(selection, typename, out, depth + 1);
                    }
                }
                Selection::Spread(name) => {
                    if let Some(fragment) = self.document.fragments.get(name)
                        && satisfies(typename, &fragment.on)
                    {
                        self.collect(&fragment.selection, typename, out, depth + 1);
                    }
                }
            }
        }
    }

    /// Runs the request on `data` (mutations change it) and returns the response body.
    pub fn execute(&self, mut data: Access<'_>, viewer: &Viewer, rate: RateInfo) -> Value {
        let mut exec = Exec {
            request: self,
            viewer,
            rate,
            errors: Vec::new(),
        };
        let root = match self.mutation {
            true => json!({"__typename": "Mutation"}),
            false => json!({"__typename": "Query"}),
        };
        let data_out = exec.object(&mut data, &root, &self.operation().selection, &[], 0);
        let mut body = json!({"data": data_out});
        if !exec.errors.is_empty() {
            body["errors"] = Value::Array(exec.errors);
        }
        body
    }
}

struct Exec<'a> {
    request: &'a Request,
    viewer: &'a Viewer,
    rate: RateInfo,
    errors: Vec<Value>,
}

impl<'a> Exec<'a> {
    fn arg(&self, field: &Field, name: &str) -> Value {
        field
            .arg(name)
            .map(|v| literal(v, &self.request.variables))
            .unwrap_or(Value::Null)
    }

    fn object(
        &mut self,
        data: &mut Access<'_>,
        value: &Value,
        selection: &[Selection],
        path: &[&str],
        depth: usize,
    ) -> Value {
        let typename = value["__typename"].as_str().unwrap_or("").to_string();
        let request: &'a Request = self.request;
        let mut fields = Vec::new();
        request.collect(selection, &typename, &mut fields, 0);
        let mut out = Map::new();
        for (key, group) in fields {
            let field = group[0];
            let merged;
            let selection: &[Selection] = match group.len() {
                1 => &field.selection,
                _ => {
                    merged = group
                        .iter()
                        .flat_map(|f| f.selection.iter().cloned())
                        .collect::<Vec<_>>();
                    &merged
                }
            };
            let mut path = path.to_vec();
            path.push(key);
            let special = match field.name.as_str() {
                "__typename" => Some(json!(typename)),
                _ => self.special(data, value, &typename, field, &path),
            };
            let raw = match &special {
                Some(raw) => raw,
                None => value.get(&field.name).unwrap_or(&Value::Null),
            };
            let answer = self.shape(data, raw, field, selection, &path, depth + 1);
            out.insert(key.to_string(), answer);
        }
        Value::Object(out)
    }

    fn shape(
        &mut self,
        data: &mut Access<'_>,
        raw: &Value,
        field: &Field,
        selection: &[Selection],
        path: &[&str],
        depth: usize,
    ) -> Value {
        if depth > MAX_DEPTH || selection.is_empty() {
            return raw.clone();
        }
        match raw {
            Value::Array(items) if is_connection(selection) => {
                self.connection(data, items, field, selection, path, depth)
            }
            Value::Array(items) => items
                .iter()
                .map(|item| self.shape(data, item, field, selection, path, depth + 1))
                .collect(),
            Value::Object(_) => self.object(data, raw, selection, path, depth),
            other => other.clone(),
        }
    }

    /// A list as a connection: `first`/`last`/`after`/`before` applied, with `totalCount`,
    /// `nodes`, `edges` and `pageInfo` (cursors are positions); only what the selection asks
    /// for is built.
    fn connection(
        &mut self,
        data: &mut Access<'_>,
        items: &[Value],
        field: &Field,
        selection: &[Selection],
        path: &[&str],
        depth: usize,
    ) -> Value {
        let cursor = |name: &str| {
            self.arg(field, name)
                .as_str()
                .and_then(|c| c.strip_prefix("cursor:"))
                .and_then(|c| c.parse::<usize>().ok())
        };
        let total = items.len();
        let mut start = cursor("after").map_or(0, |i| i + 1).min(total);
        let mut end = cursor("before").unwrap_or(total).min(total).max(start);
        if let Some(first) = self.arg(field, "first").as_u64() {
            end = end.min(start + first as usize);
        }
        if let Some(last) = self.arg(field, "last").as_u64() {
            start = start.max(end.saturating_sub(last as usize));
        }
        let page = &items[start..end];
        let cursor_at = |i: usize| match start < end {
            true => json!(format!("cursor:{i}")),
            false => Value::Null,
        };
        let request: &'a Request = self.request;
        let mut fields = Vec::new();
        request.collect(selection, "Connection", &mut fields, 0);
        let mut out = Map::new();
        for (key, group) in fields {
            let inner: Vec<Selection> = group.iter().flat_map(|f| f.selection.iter().cloned()).collect();
            let mut path = path.to_vec();
            path.push(key);
            let answer = match group[0].name.as_str() {
                "__typename" => json!("Connection"),
                "totalCount" => json!(total),
                "nodes" => page
                    .iter()
                    .map(|node| self.shape(data, node, group[0], &inner, &path, depth + 1))
                    .collect(),
                "edges" => {
                    let mut edges = Vec::with_capacity(page.len());
                    for (i, node) in page.iter().enumerate() {
                        let mut edge = Map::new();
                        let mut edge_fields = Vec::new();
                        request.collect(&inner, "Edge", &mut edge_fields, 0);
                        for (edge_key, edge_group) in edge_fields {
                            let value = match edge_group[0].name.as_str() {
                                "cursor" => json!(format!("cursor:{}", start + i)),
                                "node" => {
                                    let node_selection: Vec<Selection> =
                                        edge_group.iter().flat_map(|f| f.selection.iter().cloned()).collect();
                                    self.shape(data, node, edge_group[0], &node_selection, &path, depth + 2)
                                }
                                "__typename" => json!("Edge"),
                                _ => Value::Null,
                            };
                            edge.insert(edge_key.to_string(), value);
                        }
                        edges.push(Value::Object(edge));
                    }
                    Value::Array(edges)
                }
                "pageInfo" => {
                    let info = json!({
                        "__typename": "PageInfo",
                        "hasNextPage": end < total,
                        "hasPreviousPage": start > 0,
                        "startCursor": cursor_at(start),
                        "endCursor": cursor_at(end.saturating_sub(1)),
                    });
                    self.object(data, &info, &inner, &path, depth + 1)
                }
                _ => Value::Null,
            };
            out.insert(key.to_string(), answer);
        }
        Value::Object(out)
    }

    fn not_found(&mut self, path: &[&str], message: String) -> Value {
        self.errors.push(json!({
            "type": "NOT_FOUND",
            "path": path,
            "locations": [],
            "message": message,
        }));
        Value::Null
    }

    /// Fields computed from arguments or from the data; `None` for a plain field.
    fn special(
        &mut self,
        data: &mut Access<'_>,
        value: &Value,
        typename: &str,
        field: &Field,
        path: &[&str],
    ) -> Option<Value> {
        let number = |this: &Self| this.arg(field, "number").as_u64().unwrap_or(0);
        match (typename, field.name.as_str()) {
            ("Query", "repository") => {
                let owner = self.arg(field, "owner");
                let name = self.arg(field, "name");
                let (owner, name) = (owner.as_str().unwrap_or(""), name.as_str().unwrap_or(""));
                Some(match data.get().repo(owner, name) {
                    Some(index) => repo_value(data.get(), index),
                    None => self.not_found(
                        path,
                        format!("Could not resolve to a Repository with the name '{owner}/{name}'."),
                    ),
                })
            }
            ("Query", "viewer") => Some(user_value(&self.viewer.login, self.viewer.id)),
            ("IssueComment", "viewerDidAuthor") => Some(json!(value["author"]["login"] == self.viewer.login.as_str())),
            ("Query", "rateLimit") => Some(json!({
                "__typename": "RateLimit",
                "limit": self.rate.limit,
                "remaining": self.rate.remaining,
                "used": self.rate.used,
                "cost": self.rate.cost,
                "resetAt": iso(self.rate.reset * 1000),
                "nodeCount": 0,
            })),
            ("Query", "node") => {
                let id = self.arg(field, "id");
                let found = data.get().find_node(id.as_str().unwrap_or(""));
                Some(match found {
                    Some((repo, number)) => self.item_value(data.get(), repo, number),
                    None => Value::Null,
                })
            }
            ("Repository", "issues" | "pullRequests") => {
                let index = value["__index"].as_u64()? as usize;
                let pulls = field.name == "pullRequests";
                let states = self.arg(field, "states");
                let states: Vec<&str> = match &states {
                    Value::Array(s) => s.iter().filter_map(Value::as_str).collect(),
                    Value::String(s) => vec![s.as_str()],
                    _ => Vec::new(),
                };
                let head = self.arg(field, "headRefName");
                let base = self.arg(field, "baseRefName");
                let descending = self.arg(field, "orderBy")["direction"] == "DESC";
                let mut numbers: Vec<u64> = data.get().repos[index]
                    .items
                    .iter()
                    .filter(|item| item.pull.is_some() == pulls)
                    .filter(|item| states.is_empty() || states.contains(&if item.open { "OPEN" } else { "CLOSED" }))
                    .filter(|item| {
                        let pull = item.pull.as_ref();
                        head.as_str().is_none_or(|h| pull.is_some_and(|p| p.head == h))
                            && base.as_str().is_none_or(|b| pull.is_some_and(|p| p.base == b))
                    })
                    .map(|item| item.number)
                    .collect();
                if descending {
                    numbers.reverse();
                }
                Some(
                    numbers
                        .into_iter()
                        .map(|n| self.item_value(data.get(), index, n))
                        .collect(),
                )
            }
            ("Repository", "issue" | "pullRequest" | "issueOrPullRequest") => {
                let index = value["__index"].as_u64()? as usize;
                let n = number(self);
                let item = data.get().repos[index].item(n);
                let fits = match field.name.as_str() {
                    "issue" => item.is_some_and(|i| i.pull.is_none()),
                    "pullRequest" => item.is_some_and(|i| i.pull.is_some()),
                    _ => item.is_some(),
                };
                Some(match fits {
                    true => self.item_value(data.get(), index, n),
                    false => {
                        let what = match field.name.as_str() {
                            "issue" => "an Issue",
                            "pullRequest" => "a PullRequest",
                            _ => "an issue or pull request",
                        };
                        self.not_found(path, format!("Could not resolve to {what} with the number of {n}."))
                    }
                })
            }
            ("Repository", "labels") => {
                let index = value["__index"].as_u64()? as usize;
                let mut names: Vec<&String> = data.get().repos[index]
                    .items
                    .iter()
                    .flat_map(|i| i.labels.iter())
                    .collect();
                names.sort();
                names.dedup();
                Some(names.into_iter().map(|n| label_value(n)).collect())
            }
            ("Mutation", "addComment") => {
                let input = self.arg(field, "input");
                let subject = input["subjectId"].as_str().unwrap_or("");
                let body = input["body"].as_str().unwrap_or("").to_string();
                let Some(data) = data.get_mut() else {
                    return Some(Value::Null);
                };
                let Some((repo, number)) = data.find_node(subject) else {
                    return Some(self.not_found(
                        path,
                        format!("Could not resolve to a node with the global id of '{subject}'."),
                    ));
                };
                let id = data.add_comment(repo, number, &self.viewer.login, body);
                let subject = self.item_value(data, repo, number);
                let comment = subject["comments"]
                    .as_array()
                    .and_then(|c| c.iter().find(|c| c["databaseId"] == id).cloned())
                    .unwrap_or(Value::Null);
                Some(json!({
                    "__typename": "AddCommentPayload",
                    "clientMutationId": input.get("clientMutationId").cloned().unwrap_or(Value::Null),
                    "commentEdge": {"__typename": "IssueCommentEdge", "node": comment, "cursor": "cursor:0"},
                    "subject": subject,
                }))
            }
            ("Mutation", "createIssue") => {
                let input = self.arg(field, "input");
                let repository = input["repositoryId"].as_str().unwrap_or("");
                let Some(data) = data.get_mut() else {
                    return Some(Value::Null);
                };
                let Some(repo) = data.repos.iter().position(|r| format!("R_{}", r.id) == repository) else {
                    return Some(self.not_found(
                        path,
                        format!("Could not resolve to a node with the global id of '{repository}'."),
                    ));
                };
                let title = input["title"].as_str().unwrap_or("").to_string();
                let body = input["body"].as_str().unwrap_or("").to_string();
                let number = data.create_issue(repo, &self.viewer.login, title, body, Vec::new());
                Some(json!({
                    "__typename": "CreateIssuePayload",
                    "clientMutationId": input.get("clientMutationId").cloned().unwrap_or(Value::Null),
                    "issue": self.item_value(data, repo, number),
                }))
            }
            ("Mutation", other) => {
                self.errors.push(json!({
                    "path": path,
                    "extensions": {"code": "undefinedField", "typeName": "Mutation", "fieldName": other},
                    "message": format!("Field '{other}' doesn't exist on type 'Mutation'"),
                }));
                Some(Value::Null)
            }
            _ => None,
        }
    }

    /// An issue or pull request as GraphQL sees it, built once per change of it (the data
    /// keeps it until the next write to its repository).
    fn item_value(&self, data: &Data, repo: usize, number: u64) -> Value {
        let mut cache = data.graphql_items.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(value) = cache.get(&(repo, number)) {
            return value.clone();
        }
        let repo_ref = &data.repos[repo];
        let item = repo_ref.item(number).expect("checked item");
        let value = item_value(repo_ref, item);
        cache.insert((repo, number), value.clone());
        value
    }
}

fn is_connection(selection: &[Selection]) -> bool {
    selection.iter().any(|s| {
        matches!(s, Selection::Field(f)
            if matches!(f.name.as_str(), "nodes" | "edges" | "totalCount" | "pageInfo"))
    })
}

fn user_value(login: &str, id: u64) -> Value {
    json!({
        "__typename": "User",
        "id": format!("U_{id}"),
        "databaseId": id,
        "login": login,
        "name": login,
        "url": format!("https://github.com/{login}"),
    })
}

fn author_value(login: &str) -> Value {
    json!({
        "__typename": "User",
        "id": format!("U_{login}"),
        "login": login,
        "name": login,
        "url": format!("https://github.com/{login}"),
    })
}

fn label_value(name: &str) -> Value {
    json!({
        "__typename": "Label",
        "id": format!("LA_{}", label_id(name)),
        "name": name,
        "description": "",
        "color": label_color(name),
    })
}

fn repo_value(data: &Data, index: usize) -> Value {
    let repo = &data.repos[index];
    json!({
        "__typename": "Repository",
        "__index": index,
        "id": format!("R_{}", repo.id),
        "databaseId": repo.id,
        "name": repo.name,
        "nameWithOwner": repo.full_name(),
        "owner": author_value(&repo.owner),
        "url": format!("https://github.com/{}", repo.full_name()),
        "hasIssuesEnabled": true,
        "isPrivate": false,
        "isArchived": false,
        "viewerPermission": "WRITE",
        "defaultBranchRef": {"__typename": "Ref", "name": "main"},
        "updatedAt": iso(repo.own_updated),
    })
}

/// GraphQL's `reactionGroups`: one group per reaction GitHub knows, with who reacted.
fn reaction_groups(reactions: &[Reaction]) -> Value {
    REACTIONS
        .iter()
        .map(|(rest, graphql)| {
            let users: Vec<Value> = reactions
                .iter()
                .filter(|r| r.content == *rest)
                .map(|r| author_value(&r.user))
                .collect();
            json!({
                "__typename": "ReactionGroup",
                "content": graphql,
                "users": users,
                "reactors": users,
                "viewerHasReacted": false,
            })
        })
        .collect()
}

/// A commit of a pull request, with its `statusCheckRollup` (null when it has no status
/// and no check run): the latest status of each context, then its check runs.
fn commit_value(repo: &Repo, sha: &str) -> Value {
    let mut contexts: Vec<Value> = Vec::new();
    let mut seen: Vec<&str> = Vec::new();
    for status in repo.statuses.iter().rev().filter(|s| s.sha == sha) {
        if seen.contains(&status.context.as_str()) {
            continue;
        }
        seen.push(&status.context);
        contexts.push(json!({
            "__typename": "StatusContext",
            "context": status.context,
            "state": status.state.to_ascii_uppercase(),
            "targetUrl": null,
            "createdAt": iso(status.created),
        }));
    }
    for run in repo.check_runs.iter().rev().filter(|r| r.sha == sha) {
        contexts.push(json!({
            "__typename": "CheckRun",
            "name": run.name,
            "status": run.status.to_ascii_uppercase(),
            "conclusion": run.conclusion.as_ref().map(|c| c.to_ascii_uppercase()),
            "startedAt": iso(run.started),
            "completedAt": (run.status == "completed").then(|| iso(run.started)),
            "detailsUrl": null,
            "checkSuite": {"__typename": "CheckSuite", "workflowRun": null},
        }));
    }
    let rollup = (!contexts.is_empty()).then(|| json!({"__typename": "StatusCheckRollup", "contexts": contexts}));
    json!({
        "__typename": "PullRequestCommit",
        "commit": {"__typename": "Commit", "oid": sha, "statusCheckRollup": rollup},
    })
}

fn item_value(repo: &Repo, item: &Item) -> Value {
    let full_name = repo.full_name();
    let is_pull = item.pull.is_some();
    let url = match is_pull {
        true => format!("https://github.com/{full_name}/pull/{}", item.number),
        false => format!("https://github.com/{full_name}/issues/{}", item.number),
    };
    let comments: Vec<Value> = item
        .comments
        .iter()
        .map(|c| {
            json!({
                "__typename": "IssueComment",
                "id": format!("IC_{}", c.id),
                "databaseId": c.id,
                "author": author_value(&c.author),
                "authorAssociation": "OWNER",
                "body": c.body,
                "createdAt": iso(c.created),
                "updatedAt": iso(c.updated),
                "includesCreatedEdit": false,
                "isMinimized": false,
                "minimizedReason": null,
                "reactionGroups": reaction_groups(&c.reactions),
                "url": format!("{url}#issuecomment-{}", c.id),
            })
        })
        .collect();
    let mut value = json!({
        "__typename": if is_pull { "PullRequest" } else { "Issue" },
        "id": node_id(item),
        "databaseId": item.id,
        "number": item.number,
        "title": item.title,
        "body": item.body,
        "url": url,
        "state": if item.open { "OPEN" } else { "CLOSED" },
        "stateReason": if item.open || is_pull { Value::Null } else { json!("COMPLETED") },
        "closed": !item.open,
        "createdAt": iso(item.created),
        "updatedAt": iso(item.updated),
        "closedAt": item.closed_at.map(iso),
        "author": author_value(&item.author),
        "labels": item.labels.iter().map(|l| label_value(l)).collect::<Vec<_>>(),
        "assignees": [],
        "comments": comments,
        "projectCards": [],
        "projectItems": [],
        "milestone": null,
        "reactionGroups": reaction_groups(&item.reactions),
        "locked": false,
    });
    if let Some(pull) = &item.pull {
        let extra = json!({
            "headRefName": pull.head,
            "baseRefName": pull.base,
            "headRepositoryOwner": author_value(full_name.split('/').next().unwrap_or("")),
            "headRepository": {"__typename": "Repository", "id": "R_head", "name": full_name.split('/').nth(1).unwrap_or("")},
            "isCrossRepository": false,
            "isDraft": pull.draft,
            "maintainerCanModify": false,
            "mergeable": "MERGEABLE",
            "merged": false,
            "mergedAt": null,
            "additions": 1,
            "deletions": 0,
            "changedFiles": 1,
            "reviewDecision": null,
            "commits": pull.commits.iter().map(|sha| commit_value(repo, sha)).collect::<Vec<_>>(),
            "reviewRequests": [],
            "reviews": [],
            "latestReviews": [],
            "files": [],
            "autoMergeRequest": null,
        });
        if let (Value::Object(value), Value::Object(extra)) = (&mut value, extra) {
            value.extend(extra);
        }
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seed::{RepoSeed, Seed};

    fn run(query: &str, variables: Value) -> (Value, u64) {
        let mut data = Data::new(&Seed::new().repo(RepoSeed::new("o", "r").issues(5).pulls(2)));
        let request = prepare(&json!({"query": query, "variables": variables})).unwrap();
        let viewer = Viewer {
            login: "me".into(),
            id: 1,
        };
        let rate = RateInfo {
            limit: 5000,
            remaining: 4999,
            used: 1,
            cost: request.cost,
            reset: 0,
        };
        (request.execute(Access::Write(&mut data), &viewer, rate), request.cost)
    }

    #[test]
    fn lists_open_issues_newest_first_as_a_connection() {
        let (body, cost) = run(
            "query($n: Int) { repository(owner: \"o\", name: \"r\") { issues(first: $n, states: [OPEN], orderBy: {field: CREATED_AT, direction: DESC}) { totalCount nodes { number labels(first: 100) { nodes { name } } } pageInfo { hasNextPage endCursor } } } }",
            json!({"n": 2}),
        );
        let issues = &body["data"]["repository"]["issues"];
        assert_eq!(issues["totalCount"], 3, "{body}"); // 5 issues, 2 closed
        assert_eq!(issues["nodes"][0]["number"], 5);
        assert_eq!(issues["nodes"][1]["number"], 4);
        assert_eq!(issues["nodes"][0]["labels"]["nodes"][0]["name"], "enhancement"); // odd numbers
        assert_eq!(issues["pageInfo"]["hasNextPage"], true);
        // 1 + 2 (labels under each of 2 issues) requests: 3 / 100 rounds to 0, at least 1.
        assert_eq!(cost, 1);
        assert!(body.get("errors").is_none());
    }

    #[test]
    fn the_cost_follows_githubs_rule_for_nested_connections() {
        // 1 (issues) + 100 (labels under each of 100 issues) + 100×100 (users of each label):
        // 10101 requests / 100 = 101.
        let (_, cost) = run(
            "{ repository(owner: \"o\", name: \"r\") { issues(first: 100) { nodes { labels(first: 100) { nodes { users: assignees(last: 100) { totalCount } } } } } } }",
            json!({}),
        );
        assert_eq!(cost, 101);
    }

    #[test]
    fn issue_or_pull_request_picks_the_fragment_of_its_type() {
        let (body, _) = run(
            "query($n: Int!) { repository(owner: \"o\", name: \"r\") { issue: issueOrPullRequest(number: $n) { __typename ...on Issue { title } ...on PullRequest { headRefName } } } }",
            json!({"n": 6}),
        );
        let issue = &body["data"]["repository"]["issue"];
        assert_eq!(issue["__typename"], "PullRequest");
        assert_eq!(issue["headRefName"], "feature-6");
        assert!(issue.get("title").is_none());
    }

    #[test]
    fn an_unknown_repository_is_null_with_a_not_found_error() {
        let (body, _) = run("{ repository(owner: \"o\", name: \"nope\") { id } }", json!({}));
        assert_eq!(body["data"]["repository"], Value::Null);
        assert_eq!(body["errors"][0]["type"], "NOT_FOUND");
    }
}
