//! What a GraphQL request is: a query (cacheable within `graphql_fresh`, coalesced) or
//! anything else (a mutation, a subscription, a body that does not parse: never cached,
//! never coalesced), and which repository it is about, from its variables (`owner` with
//! `repo` or `name`, as `gh` sends them).

/// One GraphQL request, as the proxy sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation {
    pub query: bool,
    /// `owner/name`, lowercase.
    pub repo: Option<String>,
    /// What makes two queries the same: the whole body (the document, the variables, the
    /// operation name, any extension), keys sorted.
    pub identity: String,
    /// The free probes that can tell whether the answer is still current ([`probes`]).
    pub probes: Probes,
}

/// Which free conditional REST probes cover what a query asks for (see
/// docs/github-proxy.md, "Older GraphQL answers are revalidated by a free probe").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probes {
    /// None: the answer is served only within `graphql_fresh`.
    None,
    /// The repository's most recently updated issue or pull request ([`probe_covers`]):
    /// for lists of issues and pull requests.
    Repository,
    /// One issue or pull request, by number, and what its `updated_at` does not move
    /// with: the issue (reactions, labels, milestone), its comments (edits, reactions)
    /// and, for a pull request, the pull (head commit, mergeability) and its head
    /// commit's combined status and check runs ([`item_probe`]).
    Item(u64),
}

pub fn parse(body: &[u8]) -> Operation {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) else {
        return Operation {
            query: false,
            repo: None,
            identity: String::new(),
            probes: Probes::None,
        };
    };
    let document = value["query"].as_str().unwrap_or_default();
    let variables = &value["variables"];
    let owner = variables["owner"].as_str();
    let name = variables["repo"].as_str().or(variables["name"].as_str());
    let repo = match (owner, name) {
        (Some(owner), Some(name)) if !owner.is_empty() && !name.is_empty() => {
            Some(format!("{owner}/{name}").to_ascii_lowercase())
        }
        _ => None,
    };
    // One pass of the lexer for every question asked of the document.
    let tokens = tokens(document);
    let probes = if covers(&tokens) {
        Probes::Repository
    } else if let Some(number) = item_in(&tokens, variables) {
        Probes::Item(number)
    } else {
        Probes::None
    };
    Operation {
        query: !document.is_empty() && query_in(&tokens),
        repo,
        identity: value.to_string(),
        probes,
    }
}

/// Whether every operation the document defines is a query: no `mutation` or
/// `subscription` keyword at the top level (outside braces, strings and comments).
/// Fragments alone, or nothing at all, are not a query.
#[cfg(test)]
pub fn is_query(document: &str) -> bool {
    query_in(&tokens(document))
}

fn query_in(tokens: &[Token<'_>]) -> bool {
    let mut depth = 0usize;
    let mut operations = 0;
    let mut fragment = false;
    for token in tokens.iter().copied() {
        match token {
            Token::Open => {
                if depth == 0 && !std::mem::take(&mut fragment) {
                    operations += 1; // a shorthand query, or the body of one named before
                }
                depth += 1;
            }
            Token::Close => depth = depth.saturating_sub(1),
            Token::Name("mutation" | "subscription") if depth == 0 => return false,
            Token::Name("fragment") if depth == 0 => fragment = true,
            Token::Name(_) | Token::Variable(_) | Token::Int(_) | Token::Paren => {}
        }
    }
    operations > 0
}

/// What the document's text is made of, as far as the proxy needs to tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token<'a> {
    Open,
    Close,
    Name(&'a str),
    /// `$name`, without the `$`.
    Variable(&'a str),
    /// An integer literal.
    Int(u64),
    /// `(` or `)`.
    Paren,
}

/// The document's braces, parentheses, names, variables and integers, outside comments and
/// strings: the one lexer behind [`is_query`], [`probe_covers`] and [`item_probe`].
fn tokens(document: &str) -> Vec<Token<'_>> {
    let bytes = document.as_bytes();
    let name_end = |mut i: usize| {
        while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
            i += 1;
        }
        i
    };
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'#' => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b'"' => {
                if bytes[i..].starts_with(b"\"\"\"") {
                    i += 3;
                    while i < bytes.len() && !bytes[i..].starts_with(b"\"\"\"") {
                        i += if bytes[i] == b'\\' { 2 } else { 1 };
                    }
                    i += 2;
                } else {
                    i += 1;
                    while i < bytes.len() && bytes[i] != b'"' {
                        i += if bytes[i] == b'\\' { 2 } else { 1 };
                    }
                }
            }
            b'$' => {
                let start = i + 1;
                i = name_end(start);
                tokens.push(Token::Variable(&document[start..i]));
                continue;
            }
            b'{' => tokens.push(Token::Open),
            b'}' => tokens.push(Token::Close),
            b'(' | b')' => tokens.push(Token::Paren),
            b'-' | b'0'..=b'9' => {
                // A number (a float's parts, or a negative, are no item number).
                let start = i;
                i += 1;
                while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'.') {
                    i += 1;
                }
                if let Ok(n) = document[start..i].parse::<u64>() {
                    tokens.push(Token::Int(n));
                } else {
                    tokens.push(Token::Name("-number-"));
                }
                continue;
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let start = i;
                i = name_end(i);
                tokens.push(Token::Name(&document[start..i]));
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    tokens
}

/// Fields (and root fields, arguments, aliases: any name in the document) whose changes do
/// not move the `updated_at` of an issue or pull request, so the free REST probe of the
/// repository's most recently updated one cannot see them: a query naming any of them is
/// not revalidated by the probe, only served within `graphql_fresh`. Conservative on
/// purpose (a name matches wherever it appears, `$variables` aside): checks and statuses,
/// commits (and their refs and objects), reactions, projects, mergeability, the viewer and
/// the rate limit, search and any root field other than `repository`, and repository data
/// that is not its issues and pull requests. See docs/github-proxy.md.
pub const PROBE_DENIES: &[&str] = &[
    "statusCheckRollup",
    "checkSuites",
    "checkSuite",
    "checkRuns",
    "checkRun",
    "commits",
    "commit",
    "status",
    "contexts",
    "reactions",
    "reactionGroups",
    "reactors",
    "viewerHasReacted",
    "projects",
    "projectsV2",
    "projectV2",
    "projectCards",
    "projectItems",
    "mergeable",
    "mergeStateStatus",
    "viewer",
    "rateLimit",
    "search",
    "node",
    "user",
    "organization",
    "repositoryOwner",
    "enterprise",
    "refs",
    "ref",
    "defaultBranchRef",
    "object",
    "releases",
    "latestRelease",
    "discussions",
    "discussion",
    "deployments",
    "environments",
    "collaborators",
    "stargazers",
    "stargazerCount",
    "watchers",
    "forks",
    "forkCount",
    "milestones",
    "vulnerabilityAlerts",
    "packages",
    "languages",
];

/// Whether the free REST probe covers everything `document` (a query) asks for: it names
/// `repository` and none of [`PROBE_DENIES`].
#[cfg(test)]
pub fn probe_covers(document: &str) -> bool {
    covers(&tokens(document))
}

fn covers(tokens: &[Token<'_>]) -> bool {
    let mut names = names(tokens);
    names.clone().any(|n| n == "repository") && !names.any(|n| PROBE_DENIES.contains(&n))
}

/// The denied names the probes of one issue or pull request cover ([`Probes::Item`]):
/// checks and statuses (the head commit's combined status and check runs), commits (the
/// pull request's head), reactions (the issue's and its comments' reaction counts),
/// mergeability (the pull request's); and two no probe sees, so an answer naming them
/// is, like every probed answer, not served past `graphql_max_age`: `projectCards` (of
/// Projects (classic), which GitHub has retired) and `organization` (inside an item, a
/// team's organization, as a review request names it, not a root field: its rename).
pub const ITEM_COVERS: &[&str] = &[
    "statusCheckRollup",
    "checkSuite",
    "checkRuns",
    "checkRun",
    "commits",
    "commit",
    "status",
    "contexts",
    "reactions",
    "reactionGroups",
    "reactors",
    "viewerHasReacted",
    "mergeable",
    "mergeStateStatus",
    "projectCards",
    "organization",
];

/// The fields that name one issue or pull request of a repository by its number.
const ITEM_FIELDS: &[&str] = &["issue", "pullRequest", "issueOrPullRequest"];

/// The names a document may have outside the one item it asks for, and still be covered
/// by that item's probes: the operation's keyword and types, the repository's field and
/// arguments, `hasIssuesEnabled` (a repository without issues answers the issue's probe
/// 410), ids and type names.
const ITEM_FRAME: &[&str] = &[
    "query",
    "String",
    "Int",
    "ID",
    "repository",
    "owner",
    "name",
    "number",
    "hasIssuesEnabled",
    "id",
    "__typename",
];

/// The number of the one issue or pull request `document` asks for when that item's
/// probes ([`Probes::Item`]) cover the whole query: it names `repository`, exactly one
/// `issue`, `pullRequest` or `issueOrPullRequest` field with a `number` argument (an
/// integer, or a variable holding one), nothing outside that field's selection but
/// [`ITEM_FRAME`] names (its alias, the operation's name), and inside it none of
/// [`PROBE_DENIES`] but those in [`ITEM_COVERS`].
#[cfg(test)]
pub fn item_probe(document: &str, variables: &serde_json::Value) -> Option<u64> {
    item_in(&tokens(document), variables)
}

fn item_in(tokens: &[Token<'_>], variables: &serde_json::Value) -> Option<u64> {
    let mut found = None;
    for (at, window) in tokens.windows(4).enumerate() {
        let [Token::Name(field), Token::Paren, Token::Name("number"), value] = window else {
            continue;
        };
        if !ITEM_FIELDS.contains(field) {
            continue;
        }
        let number = match value {
            Token::Int(n) => *n,
            Token::Variable(v) => variables[*v].as_u64()?,
            _ => return None,
        };
        if found.is_some() {
            return None; // two items
        }
        found = Some((at, number));
    }
    let (at, number) = found?;
    // The item's arguments close, then its selection: from its `{` to the matching `}`.
    let open = at + tokens[at..].iter().position(|t| *t == Token::Open)?;
    let mut depth = 0usize;
    let mut close = None;
    for (i, token) in tokens.iter().enumerate().skip(open) {
        match token {
            Token::Open => depth += 1,
            Token::Close => {
                depth -= 1;
                if depth == 0 {
                    close = Some(i);
                    break;
                }
            }
            _ => {}
        }
    }
    let close = close?;
    let inside = names(&tokens[open..=close]);
    let outside = names(&tokens[..at]).chain(names(&tokens[close + 1..]));
    // The operation's own name (`query IssueByNumber(…)`) and the field's alias
    // (`issue: issueOrPullRequest(…)`) are the only other names allowed outside.
    let operation_name = match tokens {
        [Token::Name("query"), Token::Name(name), ..] => Some(*name),
        _ => None,
    };
    let alias = match at.checked_sub(1).map(|i| &tokens[i]) {
        Some(Token::Name(alias)) => Some(*alias),
        _ => None,
    };
    let framed = outside
        .clone()
        .all(|n| ITEM_FRAME.contains(&n) || Some(n) == operation_name || Some(n) == alias);
    let denied = inside
        .clone()
        .any(|n| PROBE_DENIES.contains(&n) && !ITEM_COVERS.contains(&n));
    // The repository is the variables' (`owner` with `repo` or `name`, which
    // [`parse`] reads): its arguments must be those variables, not literals.
    let repository = tokens.windows(7).any(|w| {
        matches!(
            w,
            [
                Token::Name("repository"),
                Token::Paren,
                Token::Name("owner"),
                Token::Variable("owner"),
                Token::Name("name"),
                Token::Variable("repo" | "name"),
                Token::Paren,
            ]
        )
    });
    (repository && framed && !denied).then_some(number)
}

/// Every name among `tokens` (`$variables` left out).
fn names<'a>(tokens: &[Token<'a>]) -> impl Iterator<Item = &'a str> + Clone {
    tokens.iter().filter_map(|token| match token {
        Token::Name(name) => Some(*name),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_the_probe_covers() {
        assert!(probe_covers(
            "query IssueList($owner: String!, $repo: String!, $status: String) { repository(owner: $owner, name: $repo) { issues(first: 30) { nodes { number title updatedAt } } } }"
        ));
        assert!(!probe_covers("{ viewer { login } }"), "no repository");
        assert!(!probe_covers(
            "query { repository(owner: \"a\", name: \"b\") { pullRequest(number: 1) { statusCheckRollup: commits(last: 1) { totalCount } } } }"
        ));
        assert!(!probe_covers(
            "query { repository(owner: \"a\", name: \"b\") { issue(number: 1) { reactionGroups { content } } } }"
        ));
        assert!(!probe_covers(
            "query { repository(owner: \"a\", name: \"b\") { id } viewer { login } }"
        ));
        assert!(probe_covers(
            "# viewer in a comment\nquery { repository(owner: \"a\", name: \"b\") { issue(number: 1) { title(x: \"rateLimit\") } } }"
        ));
    }

    #[test]
    fn gh_views_are_covered_by_their_items_probes() {
        use arbiter_fake_github::gh;
        let vars = serde_json::json!({"owner": "o", "repo": "r", "pr_number": 7, "number": 9});
        assert!(!probe_covers(gh::PR_VIEW) && !probe_covers(gh::ISSUE_VIEW));
        assert_eq!(item_probe(gh::PR_VIEW, &vars), Some(7));
        assert_eq!(item_probe(gh::ISSUE_VIEW, &vars), Some(9));
        assert!(probe_covers(gh::ISSUE_LIST) && probe_covers(gh::PR_LIST));
        let view = |doc: &str| {
            parse(
                serde_json::json!({"query": doc, "variables": vars})
                    .to_string()
                    .as_bytes(),
            )
            .probes
        };
        assert_eq!(view(gh::PR_VIEW), Probes::Item(7));
        assert_eq!(view(gh::ISSUE_LIST), Probes::Repository);
    }

    #[test]
    fn only_one_items_queries_are_covered_by_its_probes() {
        let vars = serde_json::json!({"owner": "o", "repo": "r", "n": 3, "s": "x"});
        let item = |doc: &str| item_probe(doc, &vars);
        let framed = "query Q($owner: String!, $repo: String!, $n: Int!) { repository(owner: $owner, name: $repo) { ";
        assert_eq!(
            item(&format!(
                "{framed} pullRequest(number: $n) {{ title reactionGroups {{ content }} }} }} }}"
            )),
            Some(3)
        );
        assert_eq!(item(&format!("{framed} issue(number: 12) {{ title }} }} }}")), Some(12));
        assert_eq!(
            item(&format!("{framed} issue(number: $s) {{ title }} }} }}")),
            None,
            "not a number"
        );
        assert_eq!(
            item(&format!(
                "{framed} issue(number: 1) {{ title }} pullRequest(number: 2) {{ title }} }} }}"
            )),
            None,
            "two items"
        );
        assert_eq!(
            item(&format!(
                "{framed} issues(first: 5) {{ nodes {{ title }} }} issue(number: 1) {{ title }} }} }}"
            )),
            None,
            "a list beside it"
        );
        assert_eq!(
            item(&format!(
                "{framed} issue(number: 1) {{ title }} }} viewer {{ login }} }}"
            )),
            None,
            "another root field"
        );
        assert_eq!(
            item(&format!(
                "{framed} issue(number: 1) {{ projectsV2(first: 1) {{ totalCount }} }} }} }}"
            )),
            None,
            "what no probe of the item sees"
        );
        assert_eq!(
            item("query { repository(owner: \"a\", name: \"b\") { issue(number: 1) { title } } }"),
            None,
            "the repository must be the variables' (the proxy reads it from them)"
        );
    }

    #[test]
    fn queries_and_mutations() {
        assert!(is_query("{ viewer { login } }"));
        assert!(is_query(
            "query IssueList($owner: String!) { repository(owner: $owner) { id } }"
        ));
        assert!(is_query("# mutation in a comment\nquery { a(text: \"mutation {\") }"));
        assert!(!is_query(
            "mutation CreateIssue($input: CreateIssueInput!) { createIssue(input: $input) { issue { id } } }"
        ));
        assert!(!is_query("query A { a } mutation B { b }"));
        assert!(!is_query("subscription { x }"));
        assert!(!is_query("fragment F on Issue { id }"));
        assert!(is_query("fragment F on Issue { id } query { issue { ...F } }"));
        assert!(!is_query(""));
    }

    #[test]
    fn repository_and_identity() {
        let op = parse(br#"{"query":"query { x }","variables":{"owner":"Octo","repo":"Hello"}}"#);
        assert!(op.query);
        assert_eq!(op.repo.as_deref(), Some("octo/hello"));
        let same = parse(br#"{"variables":{"repo":"Hello","owner":"Octo"},"query":"query { x }"}"#);
        assert_eq!(op.identity, same.identity, "key order does not matter");
        let other = parse(br#"{"query":"query { x }","variables":{"owner":"Octo","repo":"World"}}"#);
        assert_ne!(op.identity, other.identity);
        let named =
            parse(br#"{"query":"query { x }","variables":{"owner":"Octo","repo":"Hello"},"operationName":"A"}"#);
        assert_ne!(op.identity, named.identity, "the operation name counts");
        let extended =
            parse(br#"{"query":"query { x }","variables":{"owner":"Octo","repo":"Hello"},"extensions":{"a":1}}"#);
        assert_ne!(op.identity, extended.identity, "so does anything else in the body");
        assert!(!parse(b"not json").query);
    }
}
