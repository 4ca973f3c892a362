//! `[github]`: the GitHub proxy `arbiter watch` starts when a loop opts in
//! (`github_proxy = true` on the loop or its profile), and how rounds are budgeted.

use std::net::SocketAddr;
use std::time::Duration;

use arbiter_core::Result;
use arbiter_core::duration::parse_duration;
use toml::Spanned;

use crate::Source;
use crate::raw::RawGithub;

/// The validated `[github]` section (defaults when absent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GithubSettings {
    /// The API the proxy forwards to (`https://api.github.com`; GitHub Enterprise:
    /// `https://HOST/api/v3`).
    pub upstream: String,
    /// The loopback address the proxy listens on for `ARBITER_GITHUB_API` (port 0: any).
    pub listen: SocketAddr,
    /// How long an identical GraphQL query is served from the proxy's cache (0: never).
    pub graphql_fresh: Duration,
    /// How long past its freshness a cached GraphQL query may still be served when a free
    /// probe of its repository says nothing changed (0: never), counted from its fetch.
    pub graphql_max_age: Duration,
    /// The same for a query about one issue or pull request (`gh issue view`, `gh pr
    /// view`), revalidated by free probes of that item (0: never).
    pub graphql_view_max_age: Duration,
    /// How long a request may queue for budget before the proxy answers 429 itself.
    pub max_wait: Duration,
    /// Requests in flight upstream at once, per host.
    pub concurrency: usize,
    /// A round is deferred when the budget left after it would fall under this share of
    /// the bucket (percent).
    pub reserve_percent: u8,
}

pub const DEFAULT_UPSTREAM: &str = "https://api.github.com";

impl Default for GithubSettings {
    fn default() -> Self {
        GithubSettings {
            upstream: DEFAULT_UPSTREAM.to_string(),
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            graphql_fresh: Duration::from_secs(30),
            graphql_max_age: Duration::from_secs(300),
            graphql_view_max_age: Duration::from_secs(3600),
            max_wait: Duration::from_secs(60),
            concurrency: 100,
            reserve_percent: 10,
        }
    }
}

pub(crate) fn validate(raw: Option<&Spanned<RawGithub>>, source: &Source<'_>) -> Result<GithubSettings> {
    let mut settings = GithubSettings::default();
    let Some(raw) = raw.map(Spanned::get_ref) else {
        return Ok(settings);
    };
    let duration = |field: &str, value: &Spanned<String>| {
        parse_duration(value.get_ref()).map_err(|e| source.error(value.span(), &format!("github.{field}"), e.message))
    };
    if let Some(upstream) = &raw.upstream {
        let text = upstream.get_ref().trim_end_matches('/');
        crate::notify::check_url(text).map_err(|why| source.error(upstream.span(), "github.upstream", why))?;
        let authority = text
            .split_once("://")
            .map_or("", |(_, rest)| rest)
            .split('/')
            .next()
            .unwrap_or_default();
        if authority.contains('@') {
            return Err(source.error(
                upstream.span(),
                "github.upstream",
                "the URL carries a user name or password: tokens come from each request, never from the config",
            ));
        }
        if text.contains(['?', '#']) {
            return Err(source.error(
                upstream.span(),
                "github.upstream",
                "expected the API's base URL, without a query or fragment (like \"https://api.github.com\")",
            ));
        }
        // What the proxy's own parse (a WHATWG URL) refuses is refused here, naming the
        // key, rather than when `watch` starts the proxy.
        let url = url::Url::parse(text).map_err(|e| {
            source.error(
                upstream.span(),
                "github.upstream",
                format!(
                    "invalid URL {:?}: {e}; expected an http or https URL like \"{DEFAULT_UPSTREAM}\"",
                    crate::notify::redact(text)
                ),
            )
        })?;
        if url.host_str().is_none_or(str::is_empty) {
            return Err(source.error(upstream.span(), "github.upstream", "the URL names no host"));
        }
        settings.upstream = text.to_string();
    }
    if let Some(listen) = &raw.listen {
        let addr: SocketAddr = listen.get_ref().parse().map_err(|_| {
            source.error(
                listen.span(),
                "github.listen",
                format!(
                    "invalid address {:?}: expected IP:PORT like \"127.0.0.1:0\" (port 0: any free port)",
                    listen.get_ref()
                ),
            )
        })?;
        if !addr.ip().is_loopback() {
            return Err(source.error(
                listen.span(),
                "github.listen",
                format!(
                    "{addr} is not a loopback address: the proxy spends its callers' GitHub budget and serves only this host (use 127.0.0.1 or [::1])"
                ),
            ));
        }
        settings.listen = addr;
    }
    // "0", "0s": off.
    let duration_or_zero = |field: &str, value: &Spanned<String>| {
        let zero = value
            .get_ref()
            .trim()
            .trim_end_matches(|c: char| c.is_ascii_alphabetic())
            == "0";
        if zero {
            Ok(Duration::ZERO)
        } else {
            duration(field, value)
        }
    };
    if let Some(fresh) = &raw.graphql_fresh {
        settings.graphql_fresh = duration_or_zero("graphql_fresh", fresh)?;
    }
    if let Some(max_age) = &raw.graphql_max_age {
        settings.graphql_max_age = duration_or_zero("graphql_max_age", max_age)?;
    }
    if let Some(max_age) = &raw.graphql_view_max_age {
        settings.graphql_view_max_age = duration_or_zero("graphql_view_max_age", max_age)?;
    }
    if let Some(wait) = &raw.max_wait {
        settings.max_wait = duration("max_wait", wait)?;
    }
    if let Some(concurrency) = &raw.concurrency {
        let n = *concurrency.get_ref();
        if !(1..=10_000).contains(&n) {
            return Err(source.error(
                concurrency.span(),
                "github.concurrency",
                format!("expected 1 to 10000 requests in flight at once, got {n}"),
            ));
        }
        settings.concurrency = n as usize;
    }
    if let Some(reserve) = &raw.reserve {
        settings.reserve_percent = percent(reserve.get_ref()).ok_or_else(|| {
            source.error(
                reserve.span(),
                "github.reserve",
                format!(
                    "invalid share {}: expected a percentage from 0% to 90%, like \"10%\"",
                    reserve.get_ref()
                ),
            )
        })?;
    }
    Ok(settings)
}

/// `"10%"`, `"10"` or `10`, from 0 to 90.
fn percent(value: &toml::Value) -> Option<u8> {
    let n: i64 = match value {
        toml::Value::Integer(n) => *n,
        toml::Value::String(s) => s.trim().strip_suffix('%').unwrap_or(s.trim()).trim().parse().ok()?,
        _ => return None,
    };
    (0..=90).contains(&n).then_some(n as u8)
}
