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
