//! Naming a store.
//!
//! - `sqlite:///abs/path.db`, `sqlite://relative/path.db`, or a bare file path: SQLite.
//!   `?synchronous=normal` trades durability on power loss for speed (default `full`:
//!   every acknowledged write is on disk). `?busy_timeout=15s` is how long a writer waits
//!   for SQLite's single write lock before the store counts as unavailable (exit 6).
//! - `postgres://user@host:port/db` or `postgresql://…`: PostgreSQL. `?schema=NAME` keeps
//!   arbiter's tables in that schema (created if missing), so several fleets or test runs
//!   share one database without meeting.
//!
//! Without `--store` or `ARBITER_STORE`, the store is `arbiter/arbiter.db` under the user's
//! data directory (XDG on Linux, Application Support on macOS, %APPDATA% on Windows).

use std::path::PathBuf;

use arbiter_core::{Error, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreUrl {
    Sqlite {
        path: PathBuf,
        synchronous: Synchronous,
        busy_timeout: std::time::Duration,
    },
    Postgres {
        url: String,
        schema: Option<String>,
    },
}

/// How long a SQLite writer waits for the write lock by default.
pub const DEFAULT_BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);

/// SQLite's `synchronous` setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Synchronous {
    Full,
    Normal,
}

const EXPECTED: &str = "expected sqlite:///path/to/file.db, a file path, or postgres://user@host/db";

impl StoreUrl {
    /// Parses a store URL; see the module documentation.
    pub fn parse(text: &str) -> Result<StoreUrl> {
        // A URL that is not a file path may carry a password or secret options: never shown.
        let shown = if text.contains("://") && !text.starts_with("sqlite://") {
            redact(text)
        } else {
            text.to_string()
        };
        let bad = |why: String| Error::bad_input(format!("invalid store URL {shown:?}: {why}; {EXPECTED}"));
        if text.trim().is_empty() {
            return Err(bad("it is empty".into()));
        }
        if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            return parse_postgres(text).map_err(bad);
        }
        let (path, query) = if let Some(rest) = text.strip_prefix("sqlite://") {
            match rest.split_once('?') {
                Some((path, query)) => (path, Some(query)),
                None => (rest, None),
            }
        } else if let Some((scheme, _)) = text.split_once("://") {
            return Err(bad(format!("unknown scheme {scheme:?}")));
        } else if ["sqlite:", "postgres:", "postgresql:"]
            .iter()
            .any(|s| text.starts_with(s))
        {
            return Err(bad("a scheme needs \"://\" after it".into()));
        } else {
            (text, None)
        };
        if path.is_empty() {
            return Err(bad("the SQLite file path is empty".into()));
        }
        let mut synchronous = Synchronous::Full;
        let mut busy_timeout = DEFAULT_BUSY_TIMEOUT;
        for pair in query.into_iter().flat_map(|q| q.split('&')) {
            match pair.split_once('=') {
                Some(("busy_timeout", value)) => {
                    busy_timeout = arbiter_core::duration::parse_duration(value)
                        .map_err(|e| bad(format!("busy_timeout: {}", e.message)))?;
                }
                Some(("synchronous", "full")) => synchronous = Synchronous::Full,
                Some(("synchronous", "normal")) => synchronous = Synchronous::Normal,
                Some(("synchronous", other)) => {
                    return Err(bad(format!("synchronous={other:?}: expected full or normal")));
                }
                _ => {
                    return Err(bad(format!(
                        "unknown SQLite option {pair:?} (known: synchronous, busy_timeout)"
                    )));
                }
            }
        }
        Ok(StoreUrl::Sqlite {
            path: PathBuf::from(path),
            synchronous,
            busy_timeout,
        })
    }

    /// The default store: `arbiter/arbiter.db` under the user's data directory.
    pub fn default_sqlite() -> Result<StoreUrl> {
        let dir = dirs::data_dir().ok_or_else(|| {
            Error::bad_input("no data directory is known for this user; pass --store or set ARBITER_STORE")
        })?;
        Ok(StoreUrl::Sqlite {
            path: dir.join("arbiter").join("arbiter.db"),
            synchronous: Synchronous::Full,
            busy_timeout: DEFAULT_BUSY_TIMEOUT,
        })
    }

    /// The URL to give child processes (`ARBITER_STORE`) so they open the same store.
    pub fn to_url(&self) -> String {
        match self {
            StoreUrl::Sqlite {
                path,
                synchronous,
                busy_timeout,
            } => {
                let mut options = Vec::new();
                if *synchronous == Synchronous::Normal {
                    options.push("synchronous=normal".to_string());
                }
                if *busy_timeout != DEFAULT_BUSY_TIMEOUT {
                    options.push(format!(
                        "busy_timeout={}",
                        arbiter_core::duration::format_duration(*busy_timeout)
                    ));
                }
                let query = if options.is_empty() {
                    String::new()
                } else {
                    format!("?{}", options.join("&"))
                };
                format!("sqlite://{}{query}", path.display())
            }
            StoreUrl::Postgres { url, schema: None } => url.clone(),
            StoreUrl::Postgres {
                url,
                schema: Some(schema),
            } => {
                let sep = if url.contains('?') { '&' } else { '?' };
                format!("{url}{sep}schema={schema}")
            }
        }
    }
}

fn parse_postgres(text: &str) -> std::result::Result<StoreUrl, String> {
    let (base, query) = match text.split_once('?') {
        Some((base, query)) => (base, query),
        None => (text, ""),
    };
    let mut schema = None;
    let mut rest = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("schema", value)) => {
                let ok = !value.is_empty()
                    && value.len() <= 63
                    && value
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
                    && !value.as_bytes()[0].is_ascii_digit();
                if !ok {
                    return Err(format!(
                        "schema={value:?}: expected 1-63 characters of a-z, 0-9 and _, not starting with a digit"
                    ));
                }
                schema = Some(value.to_string());
            }
            _ => rest.push(pair),
        }
    }
    let url = if rest.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", rest.join("&"))
    };
    // Let the driver check the rest now, so a bad URL is bad input, not "unavailable" later.
    url.parse::<tokio_postgres::Config>().map_err(|e| format!("{e}"))?;
    Ok(StoreUrl::Postgres { url, schema })
}

/// The URL with its userinfo, query and fragment hidden, for printing.
pub use arbiter_core::redact::url as redact;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses() {
        assert_eq!(
            StoreUrl::parse("sqlite:///tmp/a.db").unwrap(),
            StoreUrl::Sqlite {
                path: "/tmp/a.db".into(),
                synchronous: Synchronous::Full,
                busy_timeout: DEFAULT_BUSY_TIMEOUT
            }
        );
        assert_eq!(
            StoreUrl::parse("rel/a.db").unwrap(),
            StoreUrl::Sqlite {
                path: "rel/a.db".into(),
                synchronous: Synchronous::Full,
                busy_timeout: DEFAULT_BUSY_TIMEOUT
            }
        );
        assert_eq!(
            StoreUrl::parse("C:\\data\\a.db").unwrap(),
            StoreUrl::Sqlite {
                path: "C:\\data\\a.db".into(),
                synchronous: Synchronous::Full,
                busy_timeout: DEFAULT_BUSY_TIMEOUT
            }
        );
        assert_eq!(
            StoreUrl::parse("sqlite:///tmp/a.db?synchronous=normal").unwrap(),
            StoreUrl::Sqlite {
                path: "/tmp/a.db".into(),
                synchronous: Synchronous::Normal,
                busy_timeout: DEFAULT_BUSY_TIMEOUT
            }
        );
        assert_eq!(
            StoreUrl::parse("postgres://postgres@127.0.0.1/test?schema=t1&connect_timeout=3").unwrap(),
            StoreUrl::Postgres {
                url: "postgres://postgres@127.0.0.1/test?connect_timeout=3".into(),
                schema: Some("t1".into())
            }
        );
        assert_eq!(
            StoreUrl::parse("sqlite:///tmp/a.db?busy_timeout=2s").unwrap(),
            StoreUrl::Sqlite {
                path: "/tmp/a.db".into(),
                synchronous: Synchronous::Full,
                busy_timeout: std::time::Duration::from_secs(2)
            }
        );
        for text in [
            "sqlite:///tmp/a.db?synchronous=normal&busy_timeout=2s",
            "postgres://u@h/db?schema=s",
        ] {
            assert_eq!(
                StoreUrl::parse(&StoreUrl::parse(text).unwrap().to_url()).unwrap(),
                StoreUrl::parse(text).unwrap()
            );
        }
    }

    #[test]
    fn rejects() {
        for (text, why) in [
            ("", "it is empty"),
            ("mysql://x", "unknown scheme \"mysql\""),
            ("sqlite://", "file path is empty"),
            ("sqlite:", "a scheme needs \"://\""),
            ("sqlite:a.db", "a scheme needs \"://\""),
            ("sqlite:///a.db?synchronous=off", "expected full or normal"),
            ("sqlite:///a.db?mode=ro", "unknown SQLite option"),
            ("sqlite:///a.db?busy_timeout=soon", "busy_timeout: invalid duration"),
            ("postgres://h/db?schema=Bad-Name", "schema=\"Bad-Name\""),
            ("postgres://h:notaport/db", "invalid store URL"),
        ] {
            let err = StoreUrl::parse(text).unwrap_err();
            assert_eq!(err.kind, arbiter_core::ErrorKind::BadInput);
            assert!(err.message.contains(why), "{text}: {}", err.message);
        }
    }

    #[test]
    fn redacts() {
        assert_eq!(redact("postgres://u:secret@h/db"), "postgres://***@h/db");
        assert_eq!(redact("postgres://h/db?password=secret"), "postgres://h/db?…");
    }
}
