//! Channels, routes and notification settings: validated.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use arbiter_core::Result;
use arbiter_core::duration::parse_duration;
use arbiter_core::notify::{DEFAULT_THRESHOLDS, Notification, Severity, glob_match, validate_kind};
use toml::Spanned;

use crate::raw::{RawChannel, RawConfig, RawRoute};
use crate::{Config, Source};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifySettings {
    /// Which occurrences of a folded condition are sent (then 10^k and 3·10^k).
    pub thresholds: Vec<u64>,
    /// A notification not delivered within this becomes dead.
    pub max_age: Duration,
    /// Per HTTP request.
    pub timeout: Duration,
    /// The first retry delay; it doubles per attempt up to `backoff_max` (with jitter).
    pub backoff: Duration,
    pub backoff_max: Duration,
}

impl Default for NotifySettings {
    fn default() -> Self {
        NotifySettings {
            thresholds: DEFAULT_THRESHOLDS.to_vec(),
            max_age: Duration::from_secs(24 * 3600),
            timeout: Duration::from_secs(10),
            backoff: Duration::from_secs(1),
            backoff_max: Duration::from_secs(300),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelType {
    Teams,
    Slack,
    Discord,
    Webhook,
    File,
    Stdout,
}

impl ChannelType {
    pub fn as_str(self) -> &'static str {
        match self {
            ChannelType::Teams => "teams",
            ChannelType::Slack => "slack",
            ChannelType::Discord => "discord",
            ChannelType::Webhook => "webhook",
            ChannelType::File => "file",
            ChannelType::Stdout => "stdout",
        }
    }
}

/// Where a channel's messages go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Url(String),
    File(PathBuf),
    Stdout,
}

/// At most `count` messages per `per`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub count: u32,
    pub per: Duration,
}

impl Rate {
    /// The least time between two messages.
    pub fn interval(&self) -> Duration {
        self.per / self.count.max(1)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Channel {
    pub id: String,
    pub kind: ChannelType,
    pub target: Target,
    pub name: Option<String>,
    /// HMAC-SHA256 key for `webhook` channels. Never printed.
    pub secret: Option<String>,
    pub rate: Option<Rate>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub kinds: Vec<String>,
    pub min_severity: Option<Severity>,
    pub tags: BTreeMap<String, String>,
    pub source: Option<String>,
    pub channels: Vec<String>,
    pub continue_: bool,
    pub digest: Option<Duration>,
}

impl Route {
    /// Whether this route takes the notification.
    pub fn matches(&self, notification: &Notification) -> bool {
        (self.kinds.is_empty() || self.kinds.iter().any(|k| glob_match(k, &notification.kind)))
            && self.min_severity.is_none_or(|min| notification.severity >= min)
            && self.tags.iter().all(|(k, v)| notification.tags.get(k) == Some(v))
            && self.source.as_ref().is_none_or(|s| glob_match(s, &notification.source))
    }
}

impl Config {
    /// The channels a notification goes to, in route order, each once, with the digest
    /// period of the route that chose it: the first matching route wins unless it says
    /// `continue = true`.
    pub fn route(&self, notification: &Notification) -> Vec<(String, Option<Duration>)> {
        let mut out: Vec<(String, Option<Duration>)> = Vec::new();
        for route in self.routes.iter().filter(|r| r.matches(notification)) {
            for channel in &route.channels {
                if !out.iter().any(|(c, _)| c == channel) {
                    out.push((channel.clone(), route.digest));
                }
            }
            if !route.continue_ {
                break;
            }
        }
        out
    }
}

pub(crate) fn unknown_channel_message(id: &str, channels: &[Channel]) -> String {
    let named: Vec<&str> = channels
        .iter()
        .filter(|c| c.name.as_deref() == Some(id))
        .map(|c| c.id.as_str())
        .collect();
    let known: Vec<&str> = channels.iter().map(|c| c.id.as_str()).collect();
    let known = if known.is_empty() {
        "none are configured".to_string()
    } else {
        format!("known: {}", known.join(", "))
    };
    match named.as_slice() {
        [] => format!("unknown channel id {id:?} ({known})"),
        [one] => format!("{id:?} is the display name of channel {one:?}, not an id: channels are named by id"),
        many => format!(
            "{id:?} is ambiguous: it is the display name of channels {} — channels are named by id",
            many.iter().map(|c| format!("{c:?}")).collect::<Vec<_>>().join(" and ")
        ),
    }
}

fn duration(source: &Source<'_>, key: &str, value: &Spanned<String>) -> Result<Duration> {
    parse_duration(value.get_ref()).map_err(|e| source.error(value.span(), key, e.message))
}

pub(crate) fn validate(raw: &RawConfig, source: &Source<'_>) -> Result<Config> {
    let mut settings = NotifySettings::default();
    if let Some(n) = &raw.notifications {
        let n = n.get_ref();
        if let Some(t) = &n.thresholds {
            let list = t.get_ref();
            if list.is_empty() || list[0] != 1 || list.windows(2).any(|w| w[0] >= w[1]) {
                return Err(source.error(
                    t.span(),
                    "notifications.thresholds",
                    "expected increasing counts starting at 1, like [1, 3, 10, 30, 100]",
                ));
            }
            settings.thresholds = list.clone();
        }
        for (key, value, slot) in [
            ("notifications.max_age", &n.max_age, &mut settings.max_age),
            ("notifications.timeout", &n.timeout, &mut settings.timeout),
            ("notifications.backoff", &n.backoff, &mut settings.backoff),
            ("notifications.backoff_max", &n.backoff_max, &mut settings.backoff_max),
        ] {
            if let Some(value) = value {
                *slot = duration(source, key, value)?;
            }
        }
    }
    let mut channels = Vec::new();
    for (id, channel) in &raw.channels {
        channels.push(validate_channel(id, channel, source)?);
    }
    let mut routes = Vec::new();
    for (index, route) in raw.routes.iter().enumerate() {
        routes.push(validate_route(index, route, &channels, source)?);
    }
    Ok(Config {
        notifications: settings,
        channels,
        routes,
        ..Config::default()
    })
}

fn validate_channel(id: &str, spanned: &Spanned<RawChannel>, source: &Source<'_>) -> Result<Channel> {
    let raw = spanned.get_ref();
    let key = |field: &str| format!("channels.{id}.{field}");
    let at = |span, field: &str, message: String| source.error(span, &key(field), message);
    if arbiter_core::name::validate_name("channel id", id).is_err() || id.contains('/') {
        return Err(source.error(
            spanned.span(),
            &format!("channels.{id}"),
            "invalid channel id: expected letters, digits, '.', '_', '-', ':' or '@'",
        ));
    }
    let kind = match raw.kind.get_ref().as_str() {
        "teams" => ChannelType::Teams,
        "slack" => ChannelType::Slack,
        "discord" => ChannelType::Discord,
        "webhook" => ChannelType::Webhook,
        "file" => ChannelType::File,
        "stdout" => ChannelType::Stdout,
        other => {
            return Err(at(
                raw.kind.span(),
                "type",
                format!("unknown channel type {other:?}: expected teams, slack, discord, webhook, file or stdout"),
            ));
        }
    };
    let url_fields = [
        ("url", &raw.url),
        ("url_env", &raw.url_env),
        ("url_file", &raw.url_file),
    ];
    let given: Vec<&(&str, &Option<Spanned<String>>)> = url_fields.iter().filter(|(_, v)| v.is_some()).collect();
    let target = match kind {
        ChannelType::Teams | ChannelType::Slack | ChannelType::Discord | ChannelType::Webhook => {
            if raw.path.is_some() {
                return Err(at(
                    spanned.span(),
                    "path",
                    format!("a {} channel takes url, not path", kind.as_str()),
                ));
            }
            let (field, value) = match given.as_slice() {
                [(field, Some(value))] => (*field, value),
                [] => {
                    return Err(at(
                        spanned.span(),
                        "url",
                        format!("a {} channel needs one of url, url_env or url_file", kind.as_str()),
                    ));
                }
                _ => {
                    return Err(at(
                        spanned.span(),
                        "url",
                        "give only one of url, url_env and url_file".into(),
                    ));
                }
            };
            let url = match field {
                "url" => value.get_ref().clone(),
                "url_env" => std::env::var(value.get_ref()).map_err(|_| {
                    at(
                        value.span(),
                        field,
                        format!("environment variable {:?} is not set", value.get_ref()),
                    )
                })?,
                _ => std::fs::read_to_string(value.get_ref())
                    .map(|text| text.trim().to_string())
                    .map_err(|e| at(value.span(), field, format!("cannot read {}: {e}", value.get_ref())))?,
            };
            check_url(&url).map_err(|why| at(value.span(), field, why))?;
            Target::Url(url)
        }
        ChannelType::File => {
            if !given.is_empty() {
                return Err(at(spanned.span(), "url", "a file channel takes path, not url".into()));
            }
            match &raw.path {
                Some(path) if !path.get_ref().is_empty() => {
                    // Relative to the config file, like every path in it.
                    let base = source.path.parent().unwrap_or(std::path::Path::new(""));
                    Target::File(base.join(path.get_ref()))
                }
                _ => {
                    return Err(at(
                        spanned.span(),
                        "path",
                        "a file channel needs path (a JSON-lines file)".into(),
                    ));
                }
            }
        }
        ChannelType::Stdout => {
            if !given.is_empty() || raw.path.is_some() {
                return Err(at(
                    spanned.span(),
                    "type",
                    "a stdout channel takes no url or path".into(),
                ));
            }
            Target::Stdout
        }
    };
    let secret = match (&raw.secret, &raw.secret_env) {
        (Some(_), Some(v)) => return Err(at(v.span(), "secret_env", "give secret or secret_env, not both".into())),
        (Some(s), None) => Some(s.get_ref().clone()),
        (None, Some(v)) => Some(std::env::var(v.get_ref()).map_err(|_| {
            at(
                v.span(),
                "secret_env",
                format!("environment variable {:?} is not set", v.get_ref()),
            )
        })?),
        (None, None) => None,
    };
    if let (Some(_), true) = (&secret, kind != ChannelType::Webhook) {
        let span = raw
            .secret
            .as_ref()
            .or(raw.secret_env.as_ref())
            .map(|s| s.span())
            .unwrap_or(spanned.span());
        return Err(at(span, "secret", "only webhook channels sign their bodies".into()));
    }
    let rate = raw
        .rate
        .as_ref()
        .map(|r| parse_rate(r.get_ref()).map_err(|why| at(r.span(), "rate", why)))
        .transpose()?;
    Ok(Channel {
        id: id.to_string(),
        kind,
        target,
        name: raw.name.as_ref().map(|n| n.get_ref().clone()),
        secret,
        rate,
    })
}

pub(crate) fn check_url(url: &str) -> std::result::Result<(), String> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| format!("invalid URL {:?}: expected http:// or https://", redact(url)))?;
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if host.is_empty() || host.contains(char::is_whitespace) || url.contains(char::is_whitespace) {
        return Err(format!(
            "invalid URL {:?}: expected a host after the scheme, no spaces",
            redact(url)
        ));
    }
    Ok(())
}

/// A webhook URL with its userinfo, path, query and fragment hidden: the path of a chat
/// webhook is its secret.
pub use arbiter_core::redact::url as redact;

/// `N/s`, `N/m`, `N/h` (also `N/second` …).
fn parse_rate(text: &str) -> std::result::Result<Rate, String> {
    let bad = || format!("invalid rate {text:?}: expected COUNT/UNIT like \"1/s\", \"30/m\" or \"100/h\"");
    let (count, unit) = text.split_once('/').ok_or_else(bad)?;
    let count: u32 = count.trim().parse().ok().filter(|c| *c > 0).ok_or_else(bad)?;
    let per = match unit.trim() {
        "s" | "sec" | "second" => Duration::from_secs(1),
        "m" | "min" | "minute" => Duration::from_secs(60),
        "h" | "hour" => Duration::from_secs(3600),
        _ => return Err(bad()),
    };
    Ok(Rate { count, per })
}

fn validate_route(
    index: usize,
    spanned: &Spanned<RawRoute>,
    channels: &[Channel],
    source: &Source<'_>,
) -> Result<Route> {
    let raw = spanned.get_ref();
    let key = |field: &str| format!("routes[{index}].{field}");
    let mut kinds = Vec::new();
    for kind in raw.kinds.as_ref().map(|k| k.get_ref().as_slice()).unwrap_or_default() {
        let pattern = kind.get_ref();
        // A glob: check it as a kind with each '*' standing for a word.
        let probe = pattern.replace('*', "x");
        validate_kind(&probe).map_err(|_| {
            source.error(
                kind.span(),
                &key("kinds"),
                format!("invalid kind pattern {pattern:?}: expected dotted words of a-z, 0-9, _, - and * globs"),
            )
        })?;
        kinds.push(pattern.clone());
    }
    let min_severity = raw
        .min_severity
        .as_ref()
        .map(|s| Severity::parse(s.get_ref()).map_err(|why| source.error(s.span(), &key("min_severity"), why)))
        .transpose()?;
    if raw.channels.get_ref().is_empty() {
        return Err(source.error(
            raw.channels.span(),
            &key("channels"),
            "a route needs at least one channel id",
        ));
    }
    let mut ids = Vec::new();
    for channel in raw.channels.get_ref() {
        let id = channel.get_ref();
        if !channels.iter().any(|c| &c.id == id) {
            return Err(source.error(channel.span(), &key("channels"), unknown_channel_message(id, channels)));
        }
        ids.push(id.clone());
    }
    let digest = raw
        .digest
        .as_ref()
        .map(|d| duration(source, &key("digest"), d))
        .transpose()?;
    Ok(Route {
        kinds,
        min_severity,
        tags: raw
            .tags
            .iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.get_ref().clone()))
            .collect(),
        source: raw.source.as_ref().map(|s| s.get_ref().clone()),
        channels: ids,
        continue_: raw.continue_,
        digest,
    })
}
