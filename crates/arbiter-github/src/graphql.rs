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
    /// Whether the repository's probe covers what the query asks ([`probe_covers`]).
    pub covered: bool,
}

pub fn parse(body: &[u8]) -> Operation {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) else {
        return Operation {
            query: false,
            repo: None,
            identity: String::new(),
            covered: false,
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
    Operation {
        query: !document.is_empty() && is_query(document),
        repo,
        identity: value.to_string(),
        covered: probe_covers(document),
    }
}

/// Whether every operation the document defines is a query: no `mutation` or
/// `subscription` keyword at the top level (outside braces, strings and comments).
/// Fragments alone, or nothing at all, are not a query.
pub fn is_query(document: &str) -> bool {
    let mut depth = 0usize;
    let mut operations = 0;
    let mut fragment = false;
    for token in tokens(document) {
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
            Token::Name(_) => {}
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
}

/// The document's braces and names, outside comments and strings (`$variables` left out):
/// the one lexer behind [`is_query`] and [`probe_covers`].
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
                i = name_end(i + 1);
                continue;
            }
            b'{' => tokens.push(Token::Open),
            b'}' => tokens.push(Token::Close),
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
pub fn probe_covers(document: &str) -> bool {
    let names = names(document);
    names.contains(&"repository") && !names.iter().any(|n| PROBE_DENIES.contains(n))
}

/// Every name in `document` outside comments and strings (`$variables` left out).
fn names(document: &str) -> Vec<&str> {
    tokens(document)
        .into_iter()
        .filter_map(|token| match token {
            Token::Name(name) => Some(name),
            _ => None,
        })
        .collect()
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
