//! Naming a store.
//!
//! - `sqlite:///abs/path.db`, `sqlite://relative/path.db`, or a bare file path: SQLite.
//!   `?synchronous=normal` trades durability on power loss for speed (default `full`:
//!   every acknowledged write is on disk). `?busy_timeout=15s` is how long a writer waits
//!   for SQLite's single write lock before the store counts as unavailable (exit 6).
//! - `postgres://user@host:port/db` or `postgresql://…`: PostgreSQL. `?schema=NAME` keeps
//!   arbiter's tables in that schema (created if missing), so several fleets or test runs
//!   share one database without meeting. libpq's TLS options `sslmode` (`disable`,
//!   `prefer` (the default), `require`, `verify-ca`, `verify-full`), `sslrootcert` (a PEM
//!   file, or `system`), `sslcert` and `sslkey` are understood, and so are libpq's
//!   `connect_timeout` (seconds), `keepalives`, `keepalives_idle`, `keepalives_interval`
//!   and `keepalives_count`; `?statement_timeout=10s` bounds every statement (see
//!   `postgres/connect.rs` for the defaults).
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
        /// The URL without the options arbiter handles itself (schema, TLS, keepalive,
        /// statement timeout): what the driver parses.
        url: String,
        schema: Option<String>,
        options: PgOptions,
    },
}

/// The connection options of a PostgreSQL store that arbiter applies itself.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PgOptions {
    pub sslmode: SslMode,
    /// The roots to verify the server against: a PEM file, or `system` (the default).
    pub sslrootcert: Option<String>,
    /// A client certificate (PEM) and its key, sent when the server asks for one.
    pub sslcert: Option<PathBuf>,
    pub sslkey: Option<PathBuf>,
    /// The deadline of every statement (client side, and the server's `statement_timeout`).
    pub statement_timeout: Option<std::time::Duration>,
    /// TCP keepalive: off with `keepalives=0`; the idle time, interval and probe count.
    pub keepalives: Option<bool>,
    pub keepalives_idle: Option<std::time::Duration>,
    pub keepalives_interval: Option<std::time::Duration>,
    pub keepalives_count: Option<u32>,
}

/// libpq's `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SslMode {
    /// Plain TCP only.
    Disable,
    /// TLS if the server offers it (without verifying it), else plain.
    #[default]
    Prefer,
    /// TLS, without verifying the server's certificate (unless `sslrootcert` is given,
    /// then as `verify-ca`, like libpq).
    Require,
    /// TLS, the certificate chain verified against the roots; any host name.
    VerifyCa,
    /// TLS, the chain verified and the certificate valid for the host name.
    VerifyFull,
}

impl SslMode {
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }

    fn parse(text: &str) -> Option<SslMode> {
        [
            SslMode::Disable,
            SslMode::Prefer,
            SslMode::Require,
            SslMode::VerifyCa,
            SslMode::VerifyFull,
        ]
        .into_iter()
        .find(|mode| mode.as_str() == text)
    }
}

impl PgOptions {
    /// The options as URL query pairs, in a fixed order (defaults left out).
    fn to_pairs(&self) -> Vec<String> {
        let seconds = |d: &std::time::Duration| d.as_secs().max(1).to_string();
        let mut pairs = Vec::new();
        if self.sslmode != SslMode::Prefer {
            pairs.push(format!("sslmode={}", self.sslmode.as_str()));
        }
        if let Some(root) = &self.sslrootcert {
            pairs.push(format!("sslrootcert={}", percent_encode(root)));
        }
        if let Some(cert) = &self.sslcert {
            pairs.push(format!("sslcert={}", percent_encode(&cert.display().to_string())));
        }
        if let Some(key) = &self.sslkey {
            pairs.push(format!("sslkey={}", percent_encode(&key.display().to_string())));
        }
        if let Some(timeout) = &self.statement_timeout {
            pairs.push(format!(
                "statement_timeout={}",
                arbiter_core::duration::format_duration(*timeout)
            ));
        }
        if let Some(on) = self.keepalives {
            pairs.push(format!("keepalives={}", u8::from(on)));
        }
        if let Some(idle) = &self.keepalives_idle {
            pairs.push(format!("keepalives_idle={}", seconds(idle)));
        }
        if let Some(interval) = &self.keepalives_interval {
            pairs.push(format!("keepalives_interval={}", seconds(interval)));
        }
        if let Some(count) = self.keepalives_count {
            pairs.push(format!("keepalives_count={count}"));
        }
        pairs
    }

    /// Takes `key=value` if it is one of these options; `Ok(false)` if it is not.
    fn take(&mut self, key: &str, value: &str) -> std::result::Result<bool, String> {
        let seconds = |what: &str| -> std::result::Result<std::time::Duration, String> {
            match value.parse::<u64>() {
                Ok(n) if n > 0 => Ok(std::time::Duration::from_secs(n)),
                _ => Err(format!("{what}={value:?}: expected a whole number of seconds above 0")),
            }
        };
        match key {
            "sslmode" => {
                self.sslmode = SslMode::parse(value).ok_or_else(|| {
                    format!("sslmode={value:?}: expected disable, prefer, require, verify-ca or verify-full")
                })?;
            }
            "sslrootcert" | "sslcert" | "sslkey" => {
                let value = percent_decode(value).ok_or_else(|| format!("{key}: bad %-escape in {value:?}"))?;
                if value.is_empty() {
                    return Err(format!("{key} is empty: expected the path of a PEM file"));
                }
                match key {
                    "sslrootcert" => self.sslrootcert = Some(value),
                    "sslcert" => self.sslcert = Some(PathBuf::from(value)),
                    _ => self.sslkey = Some(PathBuf::from(value)),
                }
            }
            "statement_timeout" => {
                let timeout = arbiter_core::duration::parse_duration(value)
                    .map_err(|e| format!("statement_timeout: {}", e.message))?;
                if timeout.is_zero() {
                    return Err("statement_timeout=0: expected a duration above 0, like 10s".into());
                }
                self.statement_timeout = Some(timeout);
            }
            "keepalives" => {
                self.keepalives = Some(match value {
                    "1" => true,
                    "0" => false,
                    _ => return Err(format!("keepalives={value:?}: expected 1 (on) or 0 (off)")),
                });
            }
            "keepalives_idle" => self.keepalives_idle = Some(seconds(key)?),
            "keepalives_interval" => self.keepalives_interval = Some(seconds(key)?),
            "keepalives_count" => {
                self.keepalives_count = Some(
                    value
                        .parse::<u32>()
                        .ok()
                        .filter(|n| *n > 0)
                        .ok_or_else(|| format!("keepalives_count={value:?}: expected a whole number above 0"))?,
                );
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    fn check(&self) -> std::result::Result<(), String> {
        if self.sslcert.is_some() != self.sslkey.is_some() {
            return Err("sslcert and sslkey go together: give both, or neither".into());
        }
        if self.sslmode == SslMode::Disable && (self.sslrootcert.is_some() || self.sslcert.is_some()) {
            return Err("sslmode=disable with sslrootcert/sslcert: TLS options need TLS".into());
        }
        Ok(())
    }
}

/// Decodes `%XX` escapes (a file path in a query value); `None` on a bad escape.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Escapes what would end or split a query value.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '%' | '&' | '#' | '=' | '+' | ' ' | '?' => out.push_str(&format!("%{:02X}", c as u32)),
            c => out.push(c),
        }
    }
    out
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
            StoreUrl::Postgres { url, schema, options } => {
                let mut pairs: Vec<String> = schema.iter().map(|s| format!("schema={s}")).collect();
                pairs.extend(options.to_pairs());
                if pairs.is_empty() {
                    return url.clone();
                }
                let sep = if url.contains('?') { '&' } else { '?' };
                format!("{url}{sep}{}", pairs.join("&"))
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
    let mut options = PgOptions::default();
    let mut rest = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        if let Some((key, value)) = pair.split_once('=')
            && options.take(key, value)?
        {
            continue;
        }
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
    options.check()?;
    Ok(StoreUrl::Postgres { url, schema, options })
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
                schema: Some("t1".into()),
                options: PgOptions::default(),
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
            "postgres://u@h/db?sslmode=verify-full&sslrootcert=/a%20b/ca.pem&sslcert=c.pem&sslkey=k.pem",
            "postgres://u@h/db?statement_timeout=3s&keepalives=1&keepalives_idle=7&keepalives_count=2",
            "postgres://u@h/db?sslrootcert=system&sslmode=verify-ca&connect_timeout=2",
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
            (
                "postgres://h/db?sslmode=verify",
                "sslmode=\"verify\": expected disable, prefer",
            ),
            ("postgres://h/db?sslmode=", "sslmode=\"\""),
            ("postgres://h/db?sslrootcert=", "sslrootcert is empty"),
            ("postgres://h/db?sslcert=c.pem", "sslcert and sslkey go together"),
            (
                "postgres://h/db?sslmode=disable&sslrootcert=ca.pem",
                "sslmode=disable with sslrootcert",
            ),
            (
                "postgres://h/db?statement_timeout=soon",
                "statement_timeout: invalid duration",
            ),
            (
                "postgres://h/db?statement_timeout=0s",
                "statement_timeout: invalid duration \"0s\": it must be greater than zero",
            ),
            ("postgres://h/db?keepalives=yes", "keepalives=\"yes\": expected 1"),
            ("postgres://h/db?keepalives_idle=-1", "keepalives_idle=\"-1\""),
            ("postgres://h/db?keepalives_count=0", "keepalives_count=\"0\""),
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
