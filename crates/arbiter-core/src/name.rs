//! What names may look like.
//!
//! - A **namespace** is 1–63 characters of `a-z`, `0-9`, `-` and `_`, starting with a letter
//!   or digit (it ends up in URLs, file names and token scopes).
//! - A **name** (a lease name, a key, later a stream or queue name) is 1–255 characters of
//!   ASCII letters, digits and `. _ - / : @`. `/` separates segments: a name may not start
//!   or end with `/` or contain `//`, and `.`/`..` are not segments.
//!
//! Anything else is rejected with a message that says what is allowed.

use crate::ParseError;

pub const DEFAULT_NAMESPACE: &str = "default";
pub const MAX_NAME_LEN: usize = 255;
pub const MAX_NAMESPACE_LEN: usize = 63;

const NAME_RULE: &str = "1-255 characters of ASCII letters, digits and . _ - / : @, \
     with no empty, '.' or '..' segment between slashes";
const NAMESPACE_RULE: &str = "1-63 characters of a-z, 0-9, - and _, starting with a letter or digit";

/// Checks a lease name, key or other object name. `what` names it in the error ("lease name").
pub fn validate_name(what: &str, name: &str) -> Result<(), ParseError> {
    let bad = |why: String| ParseError::new(format!("invalid {what} {name:?}: {why}; allowed: {NAME_RULE}"));
    if name.is_empty() {
        return Err(bad("it is empty".into()));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(bad(format!("it is {} characters long", name.len())));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/' | ':' | '@')))
    {
        return Err(bad(format!("character {c:?} is not allowed")));
    }
    if name.split('/').any(|segment| matches!(segment, "" | "." | "..")) {
        return Err(bad("it has an empty, '.' or '..' segment".into()));
    }
    Ok(())
}

/// Checks a key prefix for list and watch: empty (everything) or the start of a valid name.
pub fn validate_prefix(what: &str, prefix: &str) -> Result<(), ParseError> {
    if prefix.is_empty() {
        return Ok(());
    }
    // A prefix may end in '/' ("loop/"); check it as the name it starts.
    validate_name(what, prefix.strip_suffix('/').unwrap_or(prefix))
}

/// Checks a namespace.
pub fn validate_namespace(namespace: &str) -> Result<(), ParseError> {
    let ok = !namespace.is_empty()
        && namespace.len() <= MAX_NAMESPACE_LEN
        && namespace
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        && namespace.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(ParseError::new(format!(
            "invalid namespace {namespace:?}: allowed: {NAMESPACE_RULE}"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in [
            "a",
            "loop/repo-1",
            "deploy:prod",
            "agent@host",
            "a.b_c-d",
            &"x".repeat(255),
        ] {
            assert_eq!(validate_name("name", ok), Ok(()), "{ok}");
        }
        for (bad, why) in [
            ("", "it is empty"),
            (&"x".repeat(256) as &str, "256 characters"),
            ("a b", "' ' is not allowed"),
            ("é", "'é' is not allowed"),
            ("/a", "empty"),
            ("a/", "empty"),
            ("a//b", "empty"),
            ("a/../b", "'..'"),
            ("a\nb", "'\\n' is not allowed"),
        ] {
            let err = validate_name("lease name", bad).unwrap_err();
            assert!(err.message.contains(why), "{bad:?}: {}", err.message);
            assert!(err.message.contains("allowed:"), "{}", err.message);
        }
        assert_eq!(validate_prefix("prefix", "loop/"), Ok(()));
        assert_eq!(validate_prefix("prefix", ""), Ok(()));
    }

    #[test]
    fn namespaces() {
        for ok in ["default", "team-a", "client_7", "0x"] {
            assert_eq!(validate_namespace(ok), Ok(()), "{ok}");
        }
        for bad in ["", "Team", "-a", "a/b", &"a".repeat(64) as &str] {
            assert!(validate_namespace(bad).is_err(), "{bad}");
        }
    }
}
