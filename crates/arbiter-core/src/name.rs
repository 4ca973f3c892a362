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

/// Declares a validated name type: built only by `parse` (and serde, which parses), so a
/// value of it is always valid; it reads as a `&str` everywhere else.
macro_rules! name_type {
    ($(#[$doc:meta])* $name:ident, $check:expr) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Checks `text` and wraps it; the error says what is allowed.
            pub fn parse(text: &str) -> Result<Self, ParseError> {
                Self::try_from(text.to_string())
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl std::ops::Deref for $name {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        /// Shown as the string it is (`"repo/main"`), so messages that quote a name with
        /// `{:?}` read the same whether it is typed or not.
        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                std::fmt::Debug::fmt(&self.0, f)
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl std::str::FromStr for $name {
            type Err = ParseError;
            fn from_str(text: &str) -> Result<Self, ParseError> {
                Self::parse(text)
            }
        }

        impl TryFrom<String> for $name {
            type Error = ParseError;
            fn try_from(text: String) -> Result<Self, ParseError> {
                let check: fn(&str) -> Result<(), ParseError> = $check;
                check(&text)?;
                Ok(Self(text))
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> String {
                value.0
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }

        /// A string in JSON schemas (the HTTP API's OpenAPI document).
        #[cfg(feature = "openapi")]
        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                <String as utoipa::PartialSchema>::schema()
            }
        }

        #[cfg(feature = "openapi")]
        impl utoipa::ToSchema for $name {}
    };
}

// The object names all say "name" in their errors: the CLI's wording since the first release.
name_type!(
    /// A namespace (see the module docs). `Namespace::default()` is `default`.
    Namespace,
    validate_namespace
);
name_type!(
    /// A lease name.
    LeaseName,
    |text| validate_name("name", text)
);
name_type!(
    /// A key of the key-value store.
    Key,
    |text| validate_name("name", text)
);
name_type!(
    /// A log stream's name.
    StreamName,
    |text| validate_name("name", text)
);
name_type!(
    /// A log consumer's name.
    ConsumerName,
    |text| validate_name("name", text)
);
name_type!(
    /// A loop's name, as `arbiter.toml` allows it: a name without `/`.
    LoopName,
    validate_loop_name
);
name_type!(
    /// A rate-limit bucket's name (`github/octocat/core`).
    BucketName,
    |text| validate_name("bucket name", text)
);
name_type!(
    /// A work queue's name (`loop/triage`).
    QueueName,
    |text| validate_name("queue name", text)
);
name_type!(
    /// What a host can do and a work item may require (`gpu`, `windows`, `repo:web`):
    /// see [`validate_capability`].
    Capability,
    validate_capability
);
name_type!(
    /// A prefix for list and watch: empty (everything) or the start of a valid name (it may
    /// end in `/`).
    Prefix,
    |text| validate_prefix("prefix", text)
);

impl Default for Namespace {
    fn default() -> Self {
        Namespace(DEFAULT_NAMESPACE.to_string())
    }
}

#[allow(clippy::derivable_impls)] // the macro's types derive nothing a name cannot be
impl Default for Prefix {
    fn default() -> Self {
        Prefix(String::new())
    }
}

const CAPABILITY_RULE: &str = "1-64 characters of a-z, 0-9 and . _ - : /, starting with a letter or digit";

/// Checks a capability: 1–64 characters of lowercase ASCII letters, digits and
/// `. _ - : /`, starting with a letter or digit. Lowercase only, so `needs:GPU` on an
/// issue (GitHub's labels ignore case) and `gpu` on a host are the same capability once
/// the label is lowercased, and two spellings never silently differ.
pub fn validate_capability(text: &str) -> Result<(), ParseError> {
    let ok = !text.is_empty()
        && text.len() <= 64
        && text
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && text
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-' | b':' | b'/'));
    if ok {
        Ok(())
    } else {
        Err(ParseError::new(format!(
            "invalid capability {text:?}: allowed: {CAPABILITY_RULE}"
        )))
    }
}

/// Checks a loop name: a name without `/` (a loop's lease is `loop/NAME`).
pub fn validate_loop_name(text: &str) -> Result<(), ParseError> {
    validate_name("loop name", text)?;
    if text.contains('/') {
        return Err(ParseError::new(format!("invalid loop name {text:?}: expected no '/'")));
    }
    Ok(())
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

    #[test]
    fn newtypes_are_built_only_by_their_parsers() {
        assert_eq!(Namespace::default().as_str(), "default");
        assert!(Namespace::parse("Team").is_err());
        let name = LeaseName::parse("repo/main").unwrap();
        assert_eq!(&*name, "repo/main");
        assert_eq!(serde_json::to_string(&name).unwrap(), "\"repo/main\"");
        assert_eq!(serde_json::from_str::<LeaseName>("\"repo/main\"").unwrap(), name);
        // Deserializing parses: an invalid name never becomes a value.
        let err = serde_json::from_str::<Key>("\"a//b\"").unwrap_err();
        assert!(err.to_string().contains("invalid name"), "{err}");
        assert!(LoopName::parse("a/b").unwrap_err().message.contains("expected no '/'"));
        assert_eq!(Prefix::parse("loop/").unwrap().as_str(), "loop/");
        assert_eq!(Prefix::default().as_str(), "");
        assert_eq!("x".parse::<StreamName>().unwrap(), "x");
        // Quoted in messages exactly like the string.
        assert_eq!(format!("{:?}", LeaseName::parse("a/b").unwrap()), "\"a/b\"");
    }
}
