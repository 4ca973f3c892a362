//! Loops and credential profiles, validated.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use arbiter_core::Result;
use arbiter_core::duration::parse_duration;
use toml::Spanned;

use crate::raw::{RawConfig, RawIssues, RawLoop, RawProfile};
use crate::{Config, Source};

/// One agent loop, as `[loops.<name>]` declares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoopSpec {
    pub name: String,
    /// The repository (absolute, resolved against the config file's directory).
    pub repo: PathBuf,
    pub every: Duration,
    pub jitter: Duration,
    /// argv; `{prompt_file}` in any argument is replaced by the prompt file's path.
    pub command: Vec<String>,
    /// The prompt template (absolute).
    pub prompt: Option<PathBuf>,
    pub prompt_stdin: bool,
    pub timeout: Duration,
    pub grace: Duration,
    pub backoff_max: Duration,
    pub env: BTreeMap<String, String>,
    pub profile: Option<String>,
    pub priority: i64,
    pub max_rounds_per_hour: Option<u32>,
    pub kind: String,
    pub tags: BTreeMap<String, String>,
    pub enabled: bool,
    pub before_round: Vec<Vec<String>>,
    pub keep_logs: usize,
    /// On SIGINT/SIGTERM of the supervisor: let a running round finish (bounded by its
    /// timeout) instead of stopping its process tree at once.
    pub finish_on_stop: bool,
    /// `github_proxy`: its GitHub calls go through the supervisor's proxy (`None`: as its
    /// profile says; see [`Config::github_proxy`]).
    pub github_proxy: Option<bool>,
    /// `[loops.<name>.issues]`: rounds come from a repository's open issues, one round per
    /// claimed issue, on every host (not under the loop's exclusive lease).
    pub issues: Option<IssuesSpec>,
}

/// `[loops.<name>.issues]`: which GitHub issues are a loop's work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuesSpec {
    /// `owner/name`.
    pub repo: String,
    /// Every one of these labels must be on an issue for it to be work.
    pub labels: Vec<String>,
    /// A label `<needs_prefix>gpu` makes the issue require the capability `gpu`.
    pub needs_prefix: String,
    /// Rounds of this loop at once on one host (1 to [`MAX_PARALLEL`]).
    pub parallel: u32,
    /// Record the claim on the issue: a label and a comment.
    pub mark: bool,
    /// Claims of one issue before it is dead.
    pub max_attempts: u32,
}

impl IssuesSpec {
    /// The repository's owner and name.
    pub fn owner_and_name(&self) -> (&str, &str) {
        self.repo.split_once('/').unwrap_or((&self.repo, ""))
    }
}

/// The most rounds one issues loop runs at once on one host.
pub const MAX_PARALLEL: u32 = 32;

/// Where a profile's token comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    Command(Vec<String>),
    File(PathBuf),
    Env(String),
}

/// A credential profile: an isolated `gh` config directory and a token for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    pub name: String,
    pub gh_config_dir: PathBuf,
    /// Set for GitHub Enterprise: the loop also gets `GH_HOST` and `GH_ENTERPRISE_TOKEN`.
    pub gh_host: Option<String>,
    pub token: Option<TokenSource>,
    /// How long `token_command` may run (at most the loop's `timeout`); default 60s.
    pub token_timeout: Duration,
    pub env: BTreeMap<String, String>,
    /// `github_proxy` for the loops using this profile that do not say it themselves.
    pub github_proxy: Option<bool>,
}

/// Chooses a profile by the repository's `origin` remote (`host/owner/repo`, a glob).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileRule {
    pub remote: String,
    pub profile: String,
}

const COMMAND_SHAPE: &str = "an argv array like [\"claude\", \"-p\", \"{prompt_file}\"]";

/// An argv array of non-empty strings; a string is refused with a precise message.
fn argv(source: &Source<'_>, key: &str, value: &Spanned<toml::Value>) -> Result<Vec<String>> {
    let bad = |why: &str| source.error(value.span(), key, why.to_string());
    match value.get_ref() {
        toml::Value::String(_) => Err(bad(&format!(
            "a shell string is not allowed (its quoting would be guessed): write {COMMAND_SHAPE}"
        ))),
        toml::Value::Array(items) => {
            let args: Option<Vec<String>> = items.iter().map(|i| i.as_str().map(str::to_string)).collect();
            match args {
                Some(args) if !args.is_empty() && !args[0].is_empty() => Ok(args),
                Some(_) => Err(bad(&format!("the command is empty: expected {COMMAND_SHAPE}"))),
                None => Err(bad(&format!(
                    "every element must be a string: expected {COMMAND_SHAPE}"
                ))),
            }
        }
        _ => Err(bad(&format!("expected {COMMAND_SHAPE}"))),
    }
}

fn duration(source: &Source<'_>, key: &str, value: Option<&Spanned<String>>, default: Duration) -> Result<Duration> {
    match value {
        Some(v) => parse_duration(v.get_ref()).map_err(|e| source.error(v.span(), key, e.message)),
        None => Ok(default),
    }
}

/// `~/x` → the home directory; relative paths → against `base`.
fn path(base: &Path, text: &str) -> PathBuf {
    if let Some(rest) = text.strip_prefix("~/")
        && let Some(home) = dirs::home_dir()
    {
        return home.join(rest);
    }
    let path = PathBuf::from(text);
    if path.is_absolute() { path } else { base.join(path) }
}

pub(crate) fn validate(raw: &RawConfig, source: &Source<'_>, config: &mut Config) -> Result<()> {
    let base = source
        .path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let base = std::fs::canonicalize(base).unwrap_or_else(|_| base.to_path_buf());
    for (name, profile) in &raw.profiles {
        config.profiles.push(validate_profile(name, profile, source, &base)?);
    }
    for (index, rule) in raw.profile_rules.iter().enumerate() {
        let rule = rule.get_ref();
        let key = format!("profile_rules[{index}].profile");
        if !config.profiles.iter().any(|p| &p.name == rule.profile.get_ref()) {
            return Err(source.error(
                rule.profile.span(),
                &key,
                unknown_profile(rule.profile.get_ref(), config),
            ));
        }
        config.profile_rules.push(ProfileRule {
            remote: rule.remote.get_ref().clone(),
            profile: rule.profile.get_ref().clone(),
        });
    }
    for (name, spanned) in &raw.loops {
        config.loops.push(validate_loop(name, spanned, source, &base, config)?);
    }
    Ok(())
}

fn unknown_profile(name: &str, config: &Config) -> String {
    let known: Vec<&str> = config.profiles.iter().map(|p| p.name.as_str()).collect();
    let known = if known.is_empty() {
        "none are configured".into()
    } else {
        format!("known: {}", known.join(", "))
    };
    format!("unknown profile {name:?} ({known})")
}

fn validate_profile(name: &str, spanned: &Spanned<RawProfile>, source: &Source<'_>, base: &Path) -> Result<Profile> {
    let raw = spanned.get_ref();
    let key = |field: &str| format!("profiles.{name}.{field}");
    let sources = [
        raw.token_command.is_some(),
        raw.token_file.is_some(),
        raw.token_env.is_some(),
    ];
    if sources.iter().filter(|s| **s).count() > 1 {
        return Err(source.error(
            spanned.span(),
            &key("token_command"),
            "give one of token_command, token_file and token_env",
        ));
    }
    let token = if let Some(cmd) = &raw.token_command {
        Some(TokenSource::Command(argv(source, &key("token_command"), cmd)?))
    } else if let Some(file) = &raw.token_file {
        Some(TokenSource::File(path(base, file.get_ref())))
    } else {
        raw.token_env.as_ref().map(|v| TokenSource::Env(v.get_ref().clone()))
    };
    if raw.gh_config_dir.get_ref().is_empty() {
        return Err(source.error(
            raw.gh_config_dir.span(),
            &key("gh_config_dir"),
            "expected a directory path",
        ));
    }
    Ok(Profile {
        name: name.to_string(),
        gh_config_dir: path(base, raw.gh_config_dir.get_ref()),
        gh_host: raw.gh_host.as_ref().map(|h| h.get_ref().clone()),
        token,
        token_timeout: duration(
            source,
            &key("token_timeout"),
            raw.token_timeout.as_ref(),
            Duration::from_secs(60),
        )?,
        env: env(source, &key("env"), &raw.env)?,
        github_proxy: raw.github_proxy,
    })
}

/// A command's `env` table: keys a process environment can hold (non-empty, no `=`, no
/// NUL) and values without NUL — checked now, not when a round starts.
fn env(source: &Source<'_>, key: &str, table: &BTreeMap<String, Spanned<String>>) -> Result<BTreeMap<String, String>> {
    let mut env = BTreeMap::new();
    for (name, value) in table {
        let at = |why: String| source.error(value.span(), &format!("{key}.{name:?}"), why);
        if name.is_empty() || name.contains(['=', '\0']) {
            return Err(at(format!(
                "invalid variable name {name:?}: expected a non-empty name without '=' or NUL"
            )));
        }
        if value.get_ref().contains('\0') {
            return Err(at(
                "the value contains a NUL character, which no environment can hold".into()
            ));
        }
        env.insert(name.clone(), value.get_ref().clone());
    }
    Ok(env)
}

fn validate_loop(
    name: &str,
    spanned: &Spanned<RawLoop>,
    source: &Source<'_>,
    base: &Path,
    config: &Config,
) -> Result<LoopSpec> {
    let raw = spanned.get_ref();
    let key = |field: &str| format!("loops.{name}.{field}");
    if arbiter_core::name::LoopName::parse(name).is_err() {
        return Err(source.error(
            spanned.span(),
            &format!("loops.{name}"),
            "invalid loop name: expected letters, digits, '.', '_', '-', ':' or '@'",
        ));
    }
    let every = duration(source, &key("every"), Some(&raw.every), Duration::ZERO)?;
    let command = argv(source, &key("command"), &raw.command)?;
    let prompt = raw.prompt.as_ref().map(|p| (p, path(base, p.get_ref())));
    if let Some((spanned_prompt, file)) = &prompt
        && !file.is_file()
    {
        return Err(source.error(
            spanned_prompt.span(),
            &key("prompt"),
            if file.is_dir() {
                format!("prompt template {} is a directory: expected a file", file.display())
            } else {
                format!("prompt template {} does not exist", file.display())
            },
        ));
    }
    let has_placeholder = command.iter().any(|a| a.contains("{prompt_file}"));
    match (&prompt, raw.prompt_stdin, has_placeholder) {
        (Some(_), false, false) => {
            return Err(source.error(
                raw.command.span(),
                &key("command"),
                "the prompt reaches the command through a {prompt_file} argument or prompt_stdin = true; neither is set",
            ));
        }
        (None, _, true) | (None, true, _) => {
            return Err(source.error(
                raw.command.span(),
                &key("prompt"),
                "{prompt_file} or prompt_stdin needs a prompt template",
            ));
        }
        _ => {}
    }
    if let Some(profile) = &raw.profile
        && !config.profiles.iter().any(|p| &p.name == profile.get_ref())
    {
        return Err(source.error(
            profile.span(),
            &key("profile"),
            unknown_profile(profile.get_ref(), config),
        ));
    }
    let before_round = match &raw.before_round {
        None => Vec::new(),
        Some(value) => match value.get_ref() {
            toml::Value::Array(items) => items
                .iter()
                .map(|item| argv(source, &key("before_round"), &Spanned::new(value.span(), item.clone())))
                .collect::<Result<Vec<_>>>()?,
            _ => {
                return Err(source.error(
                    value.span(),
                    &key("before_round"),
                    "expected a list of argv arrays like [[\"git\", \"pull\", \"--ff-only\"]]",
                ));
            }
        },
    };
    let max_rounds_per_hour = match &raw.max_rounds_per_hour {
        Some(v) if *v.get_ref() < 1 || *v.get_ref() > 3600 => {
            return Err(source.error(v.span(), &key("max_rounds_per_hour"), "expected 1 to 3600"));
        }
        Some(v) => Some(*v.get_ref() as u32),
        None => None,
    };
    let keep_logs = match &raw.keep_logs {
        Some(v) if *v.get_ref() < 1 => return Err(source.error(v.span(), &key("keep_logs"), "expected at least 1")),
        Some(v) => *v.get_ref() as usize,
        None => 50,
    };
    let finish_on_stop = match &raw.on_stop {
        None => false,
        Some(v) => match v.get_ref().as_str() {
            "stop" => false,
            "finish" => true,
            other => {
                return Err(source.error(
                    v.span(),
                    &key("on_stop"),
                    format!("invalid value {other:?}: expected \"stop\" (stop the round's process tree) or \"finish\" (let it finish)"),
                ));
            }
        },
    };
    let issues = match &raw.issues {
        Some(issues) => Some(validate_issues(name, issues, source)?),
        None => None,
    };
    // The issues are listed and marked through the supervisor's GitHub proxy: an issues
    // loop opts in unless it says otherwise, which is refused.
    let github_proxy = match (&issues, raw.github_proxy) {
        (Some(_), Some(false)) => {
            return Err(source.error(
                raw.issues.as_ref().map_or(0..0, |i| i.span()),
                &key("github_proxy"),
                "an issues loop lists and marks its issues through the GitHub proxy: remove github_proxy = false (or set it to true)",
            ));
        }
        (Some(_), _) => Some(true),
        (None, setting) => setting,
    };
    let kind = match &raw.kind {
        Some(k) => {
            arbiter_core::notify::validate_kind(k.get_ref())
                .map_err(|e| source.error(k.span(), &key("kind"), e.message))?;
            k.get_ref().clone()
        }
        None => "loop.failure".to_string(),
    };
    Ok(LoopSpec {
        name: name.to_string(),
        repo: path(base, raw.repo.get_ref()),
        every,
        jitter: duration(source, &key("jitter"), raw.jitter.as_ref(), Duration::ZERO)?,
        command,
        prompt: prompt.map(|(_, file)| file),
        prompt_stdin: raw.prompt_stdin,
        timeout: duration(source, &key("timeout"), raw.timeout.as_ref(), Duration::from_secs(3600))?,
        grace: duration(source, &key("grace"), raw.grace.as_ref(), Duration::from_secs(10))?,
        backoff_max: duration(
            source,
            &key("backoff_max"),
            raw.backoff_max.as_ref(),
            Duration::from_secs(3600),
        )?,
        env: env(source, &key("env"), &raw.env)?,
        profile: raw.profile.as_ref().map(|p| p.get_ref().clone()),
        priority: raw.priority,
        max_rounds_per_hour,
        kind,
        tags: raw.tags.clone(),
        enabled: raw.enabled.unwrap_or(true),
        before_round,
        keep_logs,
        finish_on_stop,
        github_proxy,
        issues,
    })
}

fn validate_issues(name: &str, spanned: &Spanned<RawIssues>, source: &Source<'_>) -> Result<IssuesSpec> {
    let raw = spanned.get_ref();
    let key = |field: &str| format!("loops.{name}.issues.{field}");
    let repo = raw.repo.get_ref();
    let valid_part = |part: &str| {
        !part.is_empty()
            && part != "."
            && part != ".."
            && part
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    };
    match repo.split_once('/') {
        Some((owner, name)) if valid_part(owner) && valid_part(name) => {}
        _ => {
            return Err(source.error(
                raw.repo.span(),
                &key("repo"),
                format!("invalid repository {repo:?}: expected \"owner/name\" (letters, digits, '-', '_', '.')"),
            ));
        }
    }
    let mut labels = Vec::new();
    for label in &raw.labels {
        let text = label.get_ref();
        if text.trim().is_empty() || text.contains(char::is_control) || text.contains(',') || text.len() > 100 {
            return Err(source.error(
                label.span(),
                &key("labels"),
                format!("invalid label {text:?}: expected 1-100 characters, no comma or control characters"),
            ));
        }
        labels.push(text.clone());
    }
    let needs_prefix = match &raw.needs_prefix {
        Some(p) if p.get_ref().is_empty() || p.get_ref().contains(char::is_control) => {
            return Err(source.error(
                p.span(),
                &key("needs_prefix"),
                "expected a non-empty label prefix like \"needs:\"",
            ));
        }
        Some(p) => p.get_ref().clone(),
        None => "needs:".to_string(),
    };
    let parallel = match &raw.parallel {
        Some(v) if !(1..=i64::from(MAX_PARALLEL)).contains(v.get_ref()) => {
            return Err(source.error(
                v.span(),
                &key("parallel"),
                format!("expected 1 to {MAX_PARALLEL}, got {}", v.get_ref()),
            ));
        }
        Some(v) => *v.get_ref() as u32,
        None => 1,
    };
    let max_attempts = match &raw.max_attempts {
        Some(v) => {
            let n = u32::try_from(*v.get_ref()).unwrap_or(0);
            arbiter_core::queue::check_max_attempts(n).map_err(|_| {
                source.error(
                    v.span(),
                    &key("max_attempts"),
                    format!(
                        "expected 1 to {}, got {}",
                        arbiter_core::queue::MAX_ATTEMPTS,
                        v.get_ref()
                    ),
                )
            })?
        }
        None => 3,
    };
    Ok(IssuesSpec {
        repo: repo.clone(),
        labels,
        needs_prefix,
        parallel,
        mark: raw.mark,
        max_attempts,
    })
}

impl Config {
    /// The profile of a loop: its own, else the first rule matching the repo's remote
    /// (`host/owner/repo`).
    pub fn profile_for(&self, spec: &LoopSpec, remote: Option<&str>) -> Option<&Profile> {
        let name = spec.profile.clone().or_else(|| {
            let remote = remote?;
            self.profile_rules
                .iter()
                .find(|r| arbiter_core::notify::glob_match(&r.remote, remote))
                .map(|r| r.profile.clone())
        })?;
        self.profiles.iter().find(|p| p.name == name)
    }

    /// Whether a loop's GitHub calls go through the supervisor's proxy: the loop's own
    /// `github_proxy`, else its profile's (`profile`: as [`Config::profile_for`] chose it),
    /// else not.
    pub fn github_proxy(spec: &LoopSpec, profile: Option<&Profile>) -> bool {
        spec.github_proxy
            .or_else(|| profile.and_then(|p| p.github_proxy))
            .unwrap_or(false)
    }

    /// Whether any loop may go through the proxy (its own setting, or a profile's that it
    /// could be given): what makes `watch` start one.
    pub fn may_use_github_proxy<'a>(&self, loops: impl IntoIterator<Item = &'a LoopSpec>) -> bool {
        let profiles_opt_in = self.profiles.iter().any(|p| p.github_proxy == Some(true));
        loops.into_iter().any(|l| match l.github_proxy {
            Some(on) => on,
            None => profiles_opt_in,
        })
    }
}

/// `host/owner/repo` of a git remote URL (https, ssh or scp-like), without `.git`.
pub fn remote_path(url: &str) -> Option<String> {
    let url = url.trim().trim_end_matches('/').trim_end_matches(".git");
    let rest = if let Some((_, rest)) = url.split_once("://") {
        rest.rsplit_once('@').map(|(_, r)| r).unwrap_or(rest).to_string()
    } else {
        // scp-like: git@github.com:owner/repo
        let (host, path) = url.split_once(':')?;
        let host = host.rsplit_once('@').map(|(_, h)| h).unwrap_or(host);
        format!("{host}/{path}")
    };
    let rest = rest
        .split_once('/')
        .map(|(host, path)| format!("{}/{path}", host.split(':').next().unwrap_or(host)))?;
    Some(rest)
}

#[cfg(test)]
mod tests {
    #[test]
    fn remotes() {
        for (url, expected) in [
            ("https://github.com/acme/web.git", "github.com/acme/web"),
            ("git@github.com:acme/web.git", "github.com/acme/web"),
            ("ssh://git@ghe.example.com:22/acme/web", "ghe.example.com/acme/web"),
            ("https://user:tok@github.com/acme/web/", "github.com/acme/web"),
        ] {
            assert_eq!(super::remote_path(url).as_deref(), Some(expected), "{url}");
        }
    }
}

#[cfg(test)]
mod issues_tests {
    use std::path::Path;

    use crate::Config;

    fn parse(issues: &str) -> arbiter_core::Result<Config> {
        let dir = tempfile::tempdir().unwrap();
        let text = format!(
            "[loops.triage]\nrepo = \".\"\nevery = \"1m\"\ncommand = [\"true\"]\n\n[loops.triage.issues]\n{issues}"
        );
        let path = dir.path().join("arbiter.toml");
        Config::parse(&text, Path::new(&path))
    }

    #[test]
    fn issues_loops_are_read_with_defaults_and_opt_into_the_proxy() {
        let config = parse("repo = \"acme/web\"\nlabels = [\"squad\"]\n").unwrap();
        let spec = &config.loops[0];
        let issues = spec.issues.as_ref().unwrap();
        assert_eq!(issues.owner_and_name(), ("acme", "web"));
        assert_eq!(issues.labels, ["squad"]);
        assert_eq!(issues.needs_prefix, "needs:");
        assert_eq!((issues.parallel, issues.mark, issues.max_attempts), (1, false, 3));
        assert_eq!(spec.github_proxy, Some(true));
        let config =
            parse("repo = \"acme/web\"\nneeds_prefix = \"cap/\"\nparallel = 4\nmark = true\nmax_attempts = 7\n")
                .unwrap();
        let issues = config.loops[0].issues.clone().unwrap();
        assert_eq!(
            (
                issues.needs_prefix.as_str(),
                issues.parallel,
                issues.mark,
                issues.max_attempts
            ),
            ("cap/", 4, true, 7)
        );
    }

    #[test]
    fn bad_issues_settings_name_their_line_and_key() {
        for (body, line, key, what) in [
            ("repo = \"acme\"\n", 7, "loops.triage.issues.repo", "owner/name"),
            (
                "repo = \"a/b\"\nparallel = 0\n",
                8,
                "loops.triage.issues.parallel",
                "1 to 32",
            ),
            (
                "repo = \"a/b\"\nparallel = 33\n",
                8,
                "loops.triage.issues.parallel",
                "1 to 32",
            ),
            (
                "repo = \"a/b\"\nmax_attempts = 0\n",
                8,
                "loops.triage.issues.max_attempts",
                "1 to 1000",
            ),
            (
                "repo = \"a/b\"\nlabels = [\"a,b\"]\n",
                8,
                "loops.triage.issues.labels",
                "comma",
            ),
            (
                "repo = \"a/b\"\nneeds_prefix = \"\"\n",
                8,
                "loops.triage.issues.needs_prefix",
                "prefix",
            ),
        ] {
            let err = parse(body).unwrap_err();
            assert!(
                err.message.contains(&format!("arbiter.toml:{line}: {key}: ")),
                "{body}: {}",
                err.message
            );
            assert!(err.message.contains(what), "{body}: {}", err.message);
        }
        let err = parse("repo = \"a/b\"\nlabel = [\"x\"]\n").unwrap_err();
        assert!(err.message.contains("label"), "{}", err.message);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("arbiter.toml");
        let text = "[loops.t]\nrepo = \".\"\nevery = \"1m\"\ncommand = [\"true\"]\ngithub_proxy = false\n[loops.t.issues]\nrepo = \"a/b\"\n";
        let err = Config::parse(text, &path).unwrap_err();
        assert!(err.message.contains("loops.t.github_proxy: "), "{}", err.message);
    }
}
