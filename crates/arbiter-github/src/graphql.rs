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
    /// What makes two queries the same: the document, the variables (keys sorted) and the
    /// operation name.
    pub identity: String,
}

pub fn parse(body: &[u8]) -> Operation {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) else {
        return Operation {
            query: false,
            repo: None,
            identity: String::new(),
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
        identity: serde_json::json!([document, variables, value["operationName"]]).to_string(),
    }
}

/// Whether every operation the document defines is a query: no `mutation` or
/// `subscription` keyword at the top level (outside braces, strings and comments).
/// Fragments alone, or nothing at all, are not a query.
pub fn is_query(document: &str) -> bool {
    let bytes = document.as_bytes();
    let mut depth = 0usize;
    let mut i = 0;
    let mut operations = 0;
    let mut fragment = false;
    while i < bytes.len() {
        let c = bytes[i];
        match c {
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
            b'{' => {
                if depth == 0 && !std::mem::take(&mut fragment) {
                    operations += 1; // a shorthand query, or the body of one named before
                }
                depth += 1;
            }
            b'}' => depth = depth.saturating_sub(1),
            c if depth == 0 && (c.is_ascii_alphabetic() || c == b'_') => {
                let start = i;
                while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                    i += 1;
                }
                match &document[start..i] {
                    "mutation" | "subscription" => return false,
                    "fragment" => fragment = true,
                    _ => {}
                }
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    operations > 0
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!(!parse(b"not json").query);
    }
}
