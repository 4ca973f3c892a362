//! `arbiter.toml`: one file for a fleet's channels, routes and (later) loops.
//!
//! The file is found by `--config`, then `ARBITER_CONFIG`, then `arbiter/arbiter.toml`
//! under the user's config directory; a missing default file is an empty config, a missing
//! named one an error. Every error names the file, the line and the key, and says what was
//! expected: `arbiter.toml:12: routes[1].channels: unknown channel id "ops" (known: …)`.
//!
//! ```toml
//! [notifications]
//! thresholds = [1, 3, 10, 30, 100]   # storm folding: which repeats are sent
//! max_age = "24h"                    # then a notification that could not be delivered is dead
//! timeout = "10s"                    # per HTTP request
//! backoff = "1s"                     # first retry delay, doubling up to backoff_max
//! backoff_max = "5m"
//!
//! [channels.ops]                     # the id: what routes and --channel name
//! type = "teams"                     # teams | slack | discord | webhook | file | stdout
//! url_env = "OPS_TEAMS_WEBHOOK"      # or url = "https://…", or url_file = "/path"
//! name = "Ops alerts"                # display only; never used to find a channel
//! secret_env = "OPS_HMAC"            # webhook: sign bodies (or secret = "…")
//! rate = "1/s"                       # at most this many messages per second|minute|hour
//!
//! [[routes]]                         # in order; the first match wins unless continue = true
//! kinds = ["loop.*"]                 # globs; absent: every kind
//! min_severity = "warning"
//! tags = { repo = "web" }            # every tag must match
//! source = "watch/*"                 # glob
//! channels = ["ops"]
//! continue = true
//! digest = "1h"                      # batch what this route matches into one message per hour
//!
//! [[routes]]                         # no matcher: the default route
//! channels = ["log"]
//!
//! [loops.web]                        # `arbiter watch` runs each loop under lease loop/web
//! repo = "../web"                    # relative to this file
//! every = "5m"
//! jitter = "30s"
//! command = ["claude", "-p", "--prompt-file", "{prompt_file}"]   # argv, never a shell string
//! prompt = "prompts/web.md"          # {{loop}} {{repo}} {{round}} {{last_status}} {{host}}
//! prompt_stdin = false               # true: the prompt goes to stdin instead
//! timeout = "30m"                    # for the whole process tree
//! grace = "10s"                      # between TERM and KILL
//! backoff_max = "1h"                 # consecutive failures back off up to this
//! env = { RUST_LOG = "info" }
//! profile = "work"                   # else chosen by [[profile_rules]] from the origin remote
//! max_rounds_per_hour = 12
//! priority = 0                       # higher runs first when GitHub's budget is short
//! kind = "loop.failure"              # the kind of its failure notifications
//! tags = { team = "web" }
//! enabled = true
//! before_round = [["git", "pull", "--ff-only"]]
//! keep_logs = 50                     # round logs kept per loop
//! on_stop = "stop"                   # on SIGINT/SIGTERM: "stop" the round, or let it "finish"
//! github_proxy = true                # its gh and ARBITER_GITHUB_API calls go through the proxy
//!
//! [loops.web.issues]                 # optional: rounds from GitHub issues, one per claimed issue,
//! repo = "acme/web"                  # on every host (the queue `loop/web` makes each exclusive)
//! labels = ["squad"]                 # which open issues are work (all of them on the issue)
//! needs_prefix = "needs:"            # label needs:gpu -> the issue requires capability gpu
//! parallel = 2                       # rounds at once on this host (1 to 32)
//! mark = false                       # true: label arbiter:working and a comment on the issue
//! max_attempts = 3                   # claims of one issue before it is dead
//!                                    # (implies github_proxy = true; `every`: how often it lists)
//!
//! [profiles.work]
//! gh_config_dir = "~/.config/arbiter/gh/work"   # created 0700; the loop's own GH_CONFIG_DIR
//! token_command = ["gh", "auth", "token", "--hostname", "github.com"]  # or token_file (0600), token_env
//! token_timeout = "60s"              # for token_command (at most the loop's timeout)
//! env = { GIT_AUTHOR_NAME = "Work Bot" }
//! github_proxy = true                # for its loops that do not say (the loop's own wins)
//!
//! [[profile_rules]]
//! remote = "github.com/acme/*"       # glob on host/owner/repo of the origin remote
//! profile = "work"
//!
//! [github]                           # the proxy `watch` starts when a loop opts in
//! upstream = "https://api.github.com"
//! listen = "127.0.0.1:0"             # loopback only: ARBITER_GITHUB_API
//! graphql_fresh = "30s"              # identical GraphQL queries served from cache ("0s": off)
//! graphql_max_age = "5m"             # then served while a free probe of the repo says unchanged ("0s": off)
//! graphql_view_max_age = "1h"        # the same for one issue or pull request (gh issue/pr view), by its own probes
//! max_wait = "60s"                   # a request queues this long for budget, then 429
//! concurrency = 100                  # requests in flight upstream at once
//! reserve = "10%"                    # defer a round that would leave less of the budget
//!
//! [host]                             # this machine, as the fleet sees it
//! capabilities = ["gpu", "repo:web"] # what work items may require (`queue push --requires`)
//! ```

mod github;
mod host;
mod loops;
mod notify;
mod raw;

use std::path::{Path, PathBuf};

use arbiter_core::{Error, Result};
pub use github::{DEFAULT_UPSTREAM, GithubSettings};
pub use host::HostSettings;
pub use loops::{IssuesSpec, LoopSpec, MAX_PARALLEL, Profile, ProfileRule, TokenSource, remote_path};
pub use notify::{Channel, ChannelType, NotifySettings, Rate, Route, Target, redact as redact_url};

/// A loaded, validated configuration.
#[derive(Debug, Clone, Default)]
pub struct Config {
    /// Where it was read from (`None`: no file, the empty default).
    pub path: Option<PathBuf>,
    pub notifications: NotifySettings,
    pub channels: Vec<Channel>,
    pub routes: Vec<Route>,
    pub loops: Vec<LoopSpec>,
    pub profiles: Vec<Profile>,
    pub profile_rules: Vec<ProfileRule>,
    /// `[github]`: the proxy `watch` starts for loops with `github_proxy = true`.
    pub github: GithubSettings,
    /// `[host]`: this machine's capabilities (work items' `requires`).
    pub host: HostSettings,
}

impl Config {
    /// Finds and loads the configuration: `explicit` (a flag or `ARBITER_CONFIG`), else the
    /// default file if it exists, else the empty configuration.
    pub fn load(explicit: Option<&Path>) -> Result<Config> {
        match explicit {
            Some(path) => Config::from_file(path),
            None => match default_path() {
                Some(path) if path.exists() => Config::from_file(&path),
                _ => Ok(Config::default()),
            },
        }
    }

    /// Reads and validates one file.
    pub fn from_file(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::bad_input(format!("cannot read config file {}: {e}", path.display())))?;
        Config::parse(&text, path)
    }

    /// Parses and validates `text`, naming `path` in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Config> {
        let source = Source { path, text };
        // Syntax first: a file TOML cannot read has no tables to name yet (an unclosed
        // `[loops.three` is not inside `[loops.two]`), so the error names the line and
        // what is written there.
        if let Err(e) = toml::from_str::<toml::Table>(text) {
            return Err(source.syntax_error(&e));
        }
        let raw: raw::RawConfig = toml::from_str(text).map_err(|e| {
            let line = e.span().map(|span| source.line(span.start)).unwrap_or(1);
            // `table.key: ` when the error is on a `key = value` line (a wrong type), else
            // `table: ` (a missing field, a whole table wrong).
            let table = match (source.table_at(line), source.key_at(line)) {
                (Some(t), Some(k)) => format!("{t}.{k}: "),
                (Some(t), None) => format!("{t}: "),
                (None, Some(k)) => format!("{k}: "),
                (None, None) => String::new(),
            };
            Error::bad_input(format!("{}:{line}: {table}{}", path.display(), e.message().trim_end()))
        })?;
        let mut config = notify::validate(&raw, &source)?;
        loops::validate(&raw, &source, &mut config)?;
        config.github = github::validate(raw.github.as_ref(), &source)?;
        config.host = host::validate(raw.host.as_ref(), &source)?;
        config.path = Some(path.to_path_buf());
        Ok(config)
    }

    pub fn channel(&self, id: &str) -> Option<&Channel> {
        self.channels.iter().find(|c| c.id == id)
    }

    /// The channel with this id; an unknown id — and a display name used as an id — is
    /// bad input that names the known ids. A channel is never found by its display name.
    pub fn channel_by_id(&self, id: &str) -> Result<&Channel> {
        self.channel(id)
            .ok_or_else(|| Error::bad_input(notify::unknown_channel_message(id, &self.channels)))
    }
}

/// `arbiter/arbiter.toml` under the user's config directory.
pub fn default_path() -> Option<PathBuf> {
    dirs::config_dir().map(|dir| dir.join("arbiter").join("arbiter.toml"))
}

/// The text being validated, to turn byte offsets into line numbers.
pub(crate) struct Source<'a> {
    pub path: &'a Path,
    pub text: &'a str,
}

impl Source<'_> {
    pub fn line(&self, offset: usize) -> usize {
        self.text[..offset.min(self.text.len())]
            .bytes()
            .filter(|b| *b == b'\n')
            .count()
            + 1
    }

    /// The `[table]` (or `[[array]]`) whose keys line `line` is among, for errors the
    /// TOML parser reports by line only (`unknown field`, `missing field`).
    pub fn table_at(&self, line: usize) -> Option<String> {
        let header = |l: &str| {
            let l = l.trim();
            let name = l.strip_prefix("[[").and_then(|r| r.split_once("]]")).map(|(n, _)| n);
            name.or_else(|| l.strip_prefix('[').and_then(|r| r.split_once(']')).map(|(n, _)| n))
                .map(|n| n.trim().to_string())
        };
        let lines: Vec<&str> = self.text.lines().collect();
        // The error's own line may be the header (a whole table is wrong): name it then.
        lines[..line.min(lines.len())].iter().rev().find_map(|l| header(l))
    }

    /// The key that line `line` sets (`key = value`), if it sets one.
    pub fn key_at(&self, line: usize) -> Option<String> {
        let text = self.text.lines().nth(line.checked_sub(1)?)?.trim();
        if text.starts_with('[') || text.starts_with('#') {
            return None;
        }
        let (key, _) = text.split_once('=')?;
        let key = key.trim();
        (!key.is_empty()).then(|| key.to_string())
    }

    /// A TOML syntax error: `file:line: `what is written there`: what TOML expected`.
    pub fn syntax_error(&self, e: &toml::de::Error) -> Error {
        let line = e.span().map(|span| self.line(span.start)).unwrap_or(1);
        let text = self.text.lines().nth(line - 1).unwrap_or_default().trim();
        let shown: String = text.chars().take(60).collect();
        let ellipsis = if shown.len() < text.len() { "…" } else { "" };
        let there = if text.is_empty() {
            "an empty line".to_string()
        } else {
            format!("`{shown}{ellipsis}`")
        };
        Error::bad_input(format!(
            "{}:{line}: {there}: {}",
            self.path.display(),
            e.message().trim_end()
        ))
    }

    /// An error at `span` about `key`.
    pub fn error(&self, span: std::ops::Range<usize>, key: &str, message: impl std::fmt::Display) -> Error {
        Error::bad_input(format!(
            "{}:{}: {key}: {message}",
            self.path.display(),
            self.line(span.start)
        ))
    }
}
