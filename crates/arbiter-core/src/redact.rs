//! Hiding secrets in what arbiter shows, logs, stores or puts in an error.
//!
//! - [`url`]: the one redaction of a URL — userinfo, query and fragment hidden; the path
//!   hidden too (the path of a chat webhook is its secret), except a PostgreSQL URL's
//!   (the database name).
//! - [`text`]: free text from a command (a token command's stderr): the given secrets,
//!   anything token-shaped, and every URL in it redacted.
//! - [`printable`]: text for a terminal, its control characters escaped (no escape
//!   sequence from a stored value ever reaches a person's terminal).

/// What stands for a hidden part.
pub const HIDDEN: &str = "…";

/// `url` with its secrets hidden: `https://user:pw@host/path?q#f` → `https://***@host/…?…#…`,
/// `postgres://u:pw@host:5432/db?sslmode=require` → `postgres://***@host:5432/db?…`.
///
/// Anything that is not `SCHEME://…` is hidden whole when it could carry a secret (an
/// `@`, `?` or `#`), else shown: it is a file path.
pub fn url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return if url.contains(['@', '?', '#']) {
            HIDDEN.to_string()
        } else {
            url.to_string()
        };
    };
    if scheme.is_empty() || !scheme.chars().all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c)) {
        return HIDDEN.to_string();
    }
    // The query and fragment start at the first `?` or `#`; userinfo ends at the last `@`
    // before them (a password with a `/` in it is still userinfo, not path).
    let end = rest.find(['?', '#']).unwrap_or(rest.len());
    let (before, after) = rest.split_at(end);
    let (userinfo, host_and_path) = match before.rfind('@') {
        Some(at) => (true, &before[at + 1..]),
        None => (false, before),
    };
    let host_len = host_and_path.find('/').unwrap_or(host_and_path.len());
    let (host, path) = host_and_path.split_at(host_len);
    let mut shown = format!("{scheme}://");
    if userinfo {
        shown.push_str("***@");
    }
    shown.push_str(host);
    let database = scheme.eq_ignore_ascii_case("postgres") || scheme.eq_ignore_ascii_case("postgresql");
    if !database && path.len() > 1 {
        shown.push('/');
        shown.push_str(HIDDEN);
    } else {
        shown.push_str(path);
    }
    if let Some(query) = after.strip_prefix('?') {
        shown.push('?');
        if !query.split('#').next().unwrap_or_default().is_empty() {
            shown.push_str(HIDDEN);
        }
    }
    if after.contains('#') {
        shown.push('#');
        shown.push_str(HIDDEN);
    }
    shown
}

/// `text` with every `secret` (non-empty), every token-shaped word and every URL's secrets
/// replaced. A word is token-shaped when it is at least 20 characters of letters, digits,
/// `_`, `-`, `.`, `+`, `/` or `=` with both letters and digits (GitHub tokens, JWTs, API
/// keys), or starts with a known token prefix (`ghp_`, `gho_`, `ghu_`, `ghs_`, `ghr_`,
/// `github_pat_`).
pub fn text(text: &str, secrets: &[&str]) -> String {
    let mut text = text.to_string();
    for secret in secrets.iter().map(|s| s.trim()).filter(|s| !s.is_empty()) {
        text = text.replace(secret, "***");
    }
    let mut out = String::with_capacity(text.len());
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        if word.contains("://") {
            out.push_str(&url(word));
        } else if token_shaped(word) {
            out.push_str("***");
        } else {
            out.push_str(word);
        }
        word.clear();
    };
    for c in text.chars() {
        if c.is_whitespace() || "\"'`<>()[]{},;".contains(c) {
            flush(&mut word, &mut out);
            out.push(c);
        } else {
            word.push(c);
        }
    }
    flush(&mut word, &mut out);
    out
}

/// `text` with every control character (escape sequences, carriage returns, newlines,
/// tabs, NUL …) written as a Rust escape (`\u{1b}`, `\n`, `\t`), so that one value is one
/// line and a terminal interprets nothing in it.
pub fn printable(text: &str) -> String {
    if !text.contains(char::is_control) {
        return text.to_string();
    }
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

fn token_shaped(word: &str) -> bool {
    let word = word.trim_end_matches(['.', ':', '!']);
    if ["ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"]
        .iter()
        .any(|p| word.starts_with(p) && word.len() > p.len())
    {
        return true;
    }
    word.len() >= 20
        && word.chars().all(|c| c.is_ascii_alphanumeric() || "_-.+/=".contains(c))
        && word.chars().any(|c| c.is_ascii_alphabetic())
        && word.chars().any(|c| c.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        for (input, shown) in [
            ("http://127.0.0.1:9?token=SECRET789", "http://127.0.0.1:9?…"),
            ("http://bot:PW@host/hooks/x", "http://***@host/…"),
            ("https://hooks.slack.com/services/T/B/X", "https://hooks.slack.com/…"),
            ("https://host", "https://host"),
            ("https://host/", "https://host/"),
            ("https://host#frag", "https://host#…"),
            (
                "postgres://postgres:PW@h:5432/test?schema=Bad",
                "postgres://***@h:5432/test?…",
            ),
            ("postgres://u@h/db", "postgres://***@h/db"),
            ("postgres://h/db", "postgres://h/db"),
            ("postgres://u:p/w@h/db", "postgres://***@h/db"),
            ("htps://hooks.slack.com/services/T/B/X", "htps://hooks.slack.com/…"),
            ("/tmp/a.db", "/tmp/a.db"),
            ("bot:PW@host", "…"),
            ("://x", "…"),
        ] {
            assert_eq!(url(input), shown, "{input}");
        }
    }

    #[test]
    fn printables() {
        assert_eq!(printable("plain ünï"), "plain ünï");
        assert_eq!(printable("a\u{1b}[31mred\r\n\t\0"), "a\\u{1b}[31mred\\r\\n\\t\\u{0}");
    }

    #[test]
    fn texts() {
        let shown = text(
            "gh: bad token ghp_abcdefghijklmnopqrstuvwxyz0123 for https://u:pw@api.github.com/x?y=1 (mine)",
            &["mine"],
        );
        assert_eq!(shown, "gh: bad token *** for https://***@api.github.com/…?… (***)");
        assert_eq!(text("error: no such file", &[]), "error: no such file");
        assert_eq!(text("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOjF9.abc", &[]), "***");
    }
}
