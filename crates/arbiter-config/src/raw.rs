//! The file as written: serde types with spans, before validation.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub notifications: Option<Spanned<RawNotifications>>,
    #[serde(default)]
    pub channels: BTreeMap<String, Spanned<RawChannel>>,
    #[serde(default)]
    pub routes: Vec<Spanned<RawRoute>>,
    #[serde(default)]
    pub loops: BTreeMap<String, Spanned<RawLoop>>,
    #[serde(default)]
    pub profiles: BTreeMap<String, Spanned<RawProfile>>,
    #[serde(default)]
    pub profile_rules: Vec<Spanned<RawProfileRule>>,
    pub github: Option<Spanned<RawGithub>>,
    pub host: Option<Spanned<RawHost>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawHost {
    #[serde(default)]
    pub capabilities: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawGithub {
    pub upstream: Option<Spanned<String>>,
    pub listen: Option<Spanned<String>>,
    pub graphql_fresh: Option<Spanned<String>>,
    pub graphql_max_age: Option<Spanned<String>>,
    pub graphql_view_max_age: Option<Spanned<String>>,
    pub max_wait: Option<Spanned<String>>,
    pub concurrency: Option<Spanned<i64>>,
    /// `"10%"` or `10`.
    pub reserve: Option<Spanned<toml::Value>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLoop {
    pub repo: Spanned<String>,
    pub every: Spanned<String>,
    pub jitter: Option<Spanned<String>>,
    /// An argv array; a string is refused with its own message.
    pub command: Spanned<toml::Value>,
    pub prompt: Option<Spanned<String>>,
    #[serde(default)]
    pub prompt_stdin: bool,
    pub timeout: Option<Spanned<String>>,
    pub grace: Option<Spanned<String>>,
    pub backoff_max: Option<Spanned<String>>,
    #[serde(default)]
    pub env: BTreeMap<String, Spanned<String>>,
    pub profile: Option<Spanned<String>>,
    #[serde(default)]
    pub priority: i64,
    pub max_rounds_per_hour: Option<Spanned<i64>>,
    pub kind: Option<Spanned<String>>,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    pub enabled: Option<bool>,
    pub before_round: Option<Spanned<toml::Value>>,
    pub keep_logs: Option<Spanned<i64>>,
    pub on_stop: Option<Spanned<String>>,
    pub github_proxy: Option<bool>,
    pub issues: Option<Spanned<RawIssues>>,
}

/// `[loops.X.issues]`: the loop takes its rounds from a repository's open issues.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIssues {
    pub repo: Spanned<String>,
    #[serde(default)]
    pub labels: Vec<Spanned<String>>,
    pub needs_prefix: Option<Spanned<String>>,
    pub parallel: Option<Spanned<i64>>,
    #[serde(default)]
    pub mark: bool,
    pub max_attempts: Option<Spanned<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProfile {
    pub gh_config_dir: Spanned<String>,
    pub gh_host: Option<Spanned<String>>,
    pub token_command: Option<Spanned<toml::Value>>,
    pub token_file: Option<Spanned<String>>,
    pub token_env: Option<Spanned<String>>,
    pub token_timeout: Option<Spanned<String>>,
    #[serde(default)]
    pub env: BTreeMap<String, Spanned<String>>,
    pub github_proxy: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProfileRule {
    pub remote: Spanned<String>,
    pub profile: Spanned<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawNotifications {
    pub thresholds: Option<Spanned<Vec<u64>>>,
    pub max_age: Option<Spanned<String>>,
    pub timeout: Option<Spanned<String>>,
    pub backoff: Option<Spanned<String>>,
    pub backoff_max: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawChannel {
    #[serde(rename = "type")]
    pub kind: Spanned<String>,
    pub url: Option<Spanned<String>>,
    pub url_env: Option<Spanned<String>>,
    pub url_file: Option<Spanned<String>>,
    pub path: Option<Spanned<String>>,
    pub name: Option<Spanned<String>>,
    pub secret: Option<Spanned<String>>,
    pub secret_env: Option<Spanned<String>>,
    pub rate: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    pub kinds: Option<Spanned<Vec<Spanned<String>>>>,
    pub min_severity: Option<Spanned<String>>,
    pub tags: Option<BTreeMap<String, Spanned<String>>>,
    pub source: Option<Spanned<String>>,
    pub channels: Spanned<Vec<Spanned<String>>>,
    #[serde(rename = "continue", default)]
    pub continue_: bool,
    pub digest: Option<Spanned<String>>,
}
