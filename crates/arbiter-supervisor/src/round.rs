//! One round of one loop: credentials, prompt file, environment, the command's process
//! tree with a timeout, and what came of it.

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use arbiter_client::lease::{HeldLease, LeaseKeeper};
use arbiter_config::{LoopSpec, Profile, TokenSource};
use arbiter_core::loops::RoundStatus;
use arbiter_core::{Error, Result};
use arbiter_process::Spawn;
use arbiter_process::private::{append_private, private_dir};

/// How a round ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Succeeded, failed, timed out, lost or interrupted.
    pub status: RoundStatus,
    pub exit_code: Option<i64>,
    /// In plain words, for people: why it failed (empty on success).
    pub reason: String,
}

impl Outcome {
    pub fn succeeded(&self) -> bool {
        self.status == RoundStatus::Succeeded
    }
    pub(crate) fn failed(reason: impl Into<String>) -> Outcome {
        Outcome {
            status: RoundStatus::Failed,
            exit_code: None,
            reason: reason.into(),
        }
    }
}

/// What a round needs besides its spec.
pub struct RoundContext<'a> {
    pub spec: &'a LoopSpec,
    pub profile: Option<&'a Profile>,
    pub round: i64,
    pub last_status: &'a str,
    pub log_path: &'a Path,
    pub guard_exe: &'a Path,
    /// `ARBITER_*` variables for the command (loop, round, lease, store, namespace).
    pub arbiter_env: Vec<(String, String)>,
    /// Where a loop without a profile keeps its own `GH_CONFIG_DIR`.
    pub default_gh_dir: PathBuf,
    /// The loop's private directory (0700) of prompt files on this host, next to its round
    /// logs: what a round left there is removed by the next one (see [`run`]).
    pub prompt_dir: PathBuf,
    /// The GitHub proxy, when the loop opts in (`None`: it does not, and its `gh` config
    /// loses the proxy's socket if an earlier round had set it).
    pub github: Option<RoundGithub>,
    /// The sockets the running proxy serves other loops on. A loop that does not opt in
    /// leaves one of them in its `gh` config: a loop sharing its `GH_CONFIG_DIR` (a
    /// profile's) that opts in may be in a round using it, and taking it away would send
    /// that round's `gh` calls to GitHub directly.
    pub live_sockets: Vec<PathBuf>,
    /// Template variables beside the loop's own (an issue round's `issue.number`, …).
    pub vars: Vec<(String, String)>,
    /// Whether this round is the only one of its loop on this host (a timer loop under its
    /// lease): then prompt files a killed round left are swept first. An issues loop runs
    /// several at once, and none may remove another's prompt.
    pub exclusive: bool,
}

impl RoundContext<'_> {
    /// The loop's `GH_CONFIG_DIR`: its profile's, else its own default one.
    pub fn gh_dir(&self) -> PathBuf {
        self.profile
            .map(|p| p.gh_config_dir.clone())
            .unwrap_or_else(|| self.default_gh_dir.clone())
    }
}

/// The GitHub proxy as a round of a loop that opts in reaches it.
pub struct RoundGithub {
    /// `ARBITER_GITHUB_API`: the proxy's loopback URL.
    pub api_url: String,
    /// The loop's own socket, for `gh`'s `http_unix_socket` (`Ok(None)`: no unix sockets
    /// here; an error fails the round, naming it).
    pub socket: Result<Option<PathBuf>>,
}

/// The prompt files' name: `arbiter-prompt-<loop>-<random>.md`.
const PROMPT_PREFIX: &str = "arbiter-prompt-";

/// Removes the prompt files left in `dir` by rounds whose supervisor was killed (a
/// `kill -9` leaves no chance to delete them). Only the holder of the loop's lease runs its
/// rounds, so none of them is in use.
fn remove_stale_prompts(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.filter_map(|e| e.ok()) {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with(PROMPT_PREFIX) && name.ends_with(".md") && entry.file_type().is_ok_and(|t| t.is_file()) {
            tracing::info!(path = %entry.path().display(), "removing a prompt file left by a killed round");
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Replaces `{{loop}}`, `{{repo}}`, `{{round}}`, `{{last_status}}`, `{{host}}` (and an issue
/// round's `{{issue.number}}`, `{{issue.title}}`, `{{issue.url}}`, `{{issue.body}}`): each
/// `{{name}}` of `vars`, in one pass, so a value is never rendered again; every other
/// character passes through as it is (prompts contain code and braces).
pub fn render_prompt(template: &str, vars: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        match vars
            .iter()
            .find(|(name, _)| after.starts_with(name) && after[name.len()..].starts_with("}}"))
        {
            Some((name, value)) => {
                out.push_str(value);
                rest = &after[name.len() + 2..];
            }
            None => {
                out.push('{');
                rest = &rest[start + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// The variables a command inherits from the supervisor; nothing else of its environment
/// leaks into a loop (no tokens, no `GH_*`).
const INHERITED: &[&str] = &[
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "TERM",
    "TMPDIR",
    "TZ",
    "SHELL",
    // Windows
    "SYSTEMROOT",
    "SystemRoot",
    "WINDIR",
    "COMSPEC",
    "PATHEXT",
    "TEMP",
    "TMP",
    "USERPROFILE",
    "APPDATA",
    "LOCALAPPDATA",
    "PROGRAMDATA",
];

fn base_env() -> Vec<(OsString, OsString)> {
    INHERITED
        .iter()
        .filter_map(|k| std::env::var_os(k).map(|v| (OsString::from(k), v)))
        .collect()
}

/// The profile's token, for this round only. Errors say which profile and why, and never
/// carry the token or anything token-shaped (`arbiter_core::redact::text`): they go to the
/// round log, `status`, the failure alert and the store. `limit` bounds a token command
/// (the profile's `token_timeout`, at most the loop's `timeout`).
pub(crate) async fn token(
    profile: &Profile,
    repo: &Path,
    limit: Duration,
) -> std::result::Result<Option<String>, String> {
    let name = &profile.name;
    let token = match &profile.token {
        None => return Ok(None),
        Some(TokenSource::Env(var)) => std::env::var(var)
            .map_err(|_| format!("profile {name}: token_env {var} is not set in the supervisor's environment"))?,
        Some(TokenSource::File(path)) => {
            arbiter_process::private::check_secret_file(path)
                .map_err(|why| format!("profile {name}: token_file {why}"))?;
            std::fs::read_to_string(path)
                .map_err(|e| format!("profile {name}: cannot read token_file {}: {e}", path.display()))?
        }
        Some(TokenSource::Command(argv)) => {
            let mut cmd = tokio::process::Command::new(&argv[0]);
            cmd.args(&argv[1..])
                .env_clear()
                .envs(base_env())
                .current_dir(repo)
                .stdin(std::process::Stdio::null())
                .kill_on_drop(true);
            let output = tokio::time::timeout(limit, cmd.output())
                .await
                .map_err(|_| {
                    format!(
                        "profile {name}: token command timed out after {} (token_timeout)",
                        arbiter_core::duration::format_duration(limit)
                    )
                })?
                .map_err(|e| format!("profile {name}: cannot run token command {}: {e}", argv[0]))?;
            if !output.status.success() {
                let stdout = String::from_utf8_lossy(&output.stdout);
                let stderr = String::from_utf8_lossy(&output.stderr);
                let stderr = arbiter_core::redact::text(stderr.trim(), &[stdout.trim()]);
                let stderr: String = stderr.chars().take(300).collect();
                return Err(format!(
                    "profile {name}: token command exited {}: {stderr}",
                    arbiter_process::exit_code(&output.status)
                ));
            }
            String::from_utf8(output.stdout).map_err(|_| format!("profile {name}: token command printed non-UTF-8"))?
        }
    };
    let token = token.trim().to_string();
    if token.is_empty() {
        return Err(format!("profile {name}: the token is empty"));
    }
    if token.contains(char::is_control) {
        let lines = token.lines().count();
        return Err(format!(
            "profile {name}: the token must be one line without control characters; it has {lines} line(s)"
        ));
    }
    Ok(Some(token))
}

/// Appends a line of arbiter's own to the round log (created 0600, never through a link).
fn log_line(log: &Path, line: &str) {
    if let Ok(mut file) = append_private(log) {
        let _ = writeln!(file, "arbiter: {line}");
    }
}

/// Runs a round; `held` reports the loss of the loop's lease, `shutdown` that the loop stops
/// (the supervisor was signalled, or a reload removed the loop).
pub async fn run<K: LeaseKeeper>(
    ctx: &RoundContext<'_>,
    held: &mut HeldLease<K>,
    shutdown: &mut crate::LoopStop,
) -> Result<Outcome> {
    let spec = ctx.spec;
    let host = arbiter_process::host_name();
    // The round log is created here, 0600, and a planted link refused, before anything
    // (the command's own output included) is written to it.
    let mut log = append_private(ctx.log_path)?;
    let _ = writeln!(log, "arbiter: round {} of loop {} on {host}", ctx.round, spec.name);
    drop(log);
    private_dir(&ctx.prompt_dir)?;
    if ctx.exclusive {
        remove_stale_prompts(&ctx.prompt_dir);
    }
    // Environment: a clean base, the profile's and loop's variables, isolated credentials.
    let gh_dir = ctx.gh_dir();
    private_dir(&gh_dir)?;
    // gh through the proxy (or no longer): the one key of the loop's own gh config.
    let socket = match &ctx.github {
        Some(github) => github
            .socket
            .clone()
            .and_then(|socket| crate::gh_config::set_socket(&gh_dir, socket.as_deref())),
        None => crate::gh_config::unset_socket(&gh_dir, &|value| {
            crate::gh_config::is_ours(value) && !ctx.live_sockets.iter().any(|s| s.as_os_str() == value)
        }),
    };
    if let Err(e) = socket {
        let reason = format!("the GitHub proxy: {}", e.message);
        log_line(ctx.log_path, &reason);
        return Ok(Outcome::failed(reason));
    }
    let mut env = base_env();
    let mut add = |k: &str, v: &str| env.push((OsString::from(k), OsString::from(v)));
    if let Some(profile) = ctx.profile {
        for (k, v) in &profile.env {
            add(k, v);
        }
    }
    for (k, v) in &spec.env {
        add(k, v);
    }
    add("GH_CONFIG_DIR", &gh_dir.to_string_lossy());
    for (k, v) in &ctx.arbiter_env {
        add(k, v);
    }
    if let Some(github) = &ctx.github {
        add("ARBITER_GITHUB_API", &github.api_url);
        // The loop's own socket: calls through it count as the loop's (curl --unix-socket).
        if let Ok(Some(socket)) = &github.socket {
            add("ARBITER_GITHUB_SOCKET", &socket.to_string_lossy());
        }
    }
    if let Some(profile) = ctx.profile {
        match token(profile, &spec.repo, profile.token_timeout.min(spec.timeout)).await {
            Ok(Some(token)) => {
                add("GH_TOKEN", &token);
                if let Some(host) = profile.gh_host.as_deref().filter(|h| *h != "github.com") {
                    add("GH_HOST", host);
                    add("GH_ENTERPRISE_TOKEN", &token);
                }
            }
            Ok(None) => {}
            Err(reason) => {
                log_line(ctx.log_path, &reason);
                return Ok(Outcome::failed(reason));
            }
        }
    }
    let deadline = tokio::time::Instant::now() + spec.timeout;
    // Before the round: each command in the repo with the loop's environment.
    for argv in &spec.before_round {
        let spawn = Spawn {
            argv: argv.iter().map(OsString::from).collect(),
            env: env.clone(),
            clear_env: true,
            cwd: Some(spec.repo.clone()),
            stdin: None,
            output: Some(ctx.log_path.to_path_buf()),
        };
        let outcome = supervise(ctx, &spawn, deadline, held, shutdown).await?;
        if !outcome.succeeded() {
            let tail = tail(ctx.log_path, 5);
            let reason = format!("before_round {:?} {}: {tail}", argv.join(" "), outcome.reason);
            return Ok(Outcome { reason, ..outcome });
        }
    }
    // The prompt: a fresh 0600 file in the loop's private prompt directory, never argv.
    let prompt_file = match &spec.prompt {
        Some(template) => {
            let text = std::fs::read_to_string(template)
                .map_err(|e| Error::internal(format!("cannot read prompt template {}: {e}", template.display())))?;
            let round = ctx.round.to_string();
            let repo = spec.repo.to_string_lossy();
            let mut vars = vec![
                ("loop", spec.name.as_str()),
                ("repo", &*repo),
                ("round", &round),
                ("last_status", ctx.last_status),
                ("host", &host),
            ];
            vars.extend(ctx.vars.iter().map(|(k, v)| (k.as_str(), v.as_str())));
            let rendered = render_prompt(&text, &vars);
            // tempfile creates it readable and writable by its owner only (0600 on Unix).
            let mut file = tempfile::Builder::new()
                .prefix(&format!("{PROMPT_PREFIX}{}-", spec.name))
                .suffix(".md")
                .tempfile_in(&ctx.prompt_dir)
                .map_err(|e| Error::internal(format!("cannot create the prompt file: {e}")))?;
            file.write_all(rendered.as_bytes())
                .and_then(|()| file.flush())
                .map_err(|e| Error::internal(format!("cannot write the prompt file: {e}")))?;
            Some(file)
        }
        None => None,
    };
    let prompt_path = prompt_file
        .as_ref()
        .map(|f| f.path().to_string_lossy().into_owned())
        .unwrap_or_default();
    let spawn = Spawn {
        argv: spec
            .command
            .iter()
            .map(|a| OsString::from(a.replace("{prompt_file}", &prompt_path)))
            .collect(),
        env,
        clear_env: true,
        cwd: Some(spec.repo.clone()),
        stdin: if spec.prompt_stdin {
            prompt_file.as_ref().map(|f| f.path().to_path_buf())
        } else {
            None
        },
        output: Some(ctx.log_path.to_path_buf()),
    };
    let outcome = supervise(ctx, &spawn, deadline, held, shutdown).await;
    drop(prompt_file); // deletes it
    let outcome = outcome?;
    log_line(
        ctx.log_path,
        &format!("round {} {} {}", ctx.round, outcome.status, outcome.reason),
    );
    Ok(outcome)
}

/// Runs one command to its end, its timeout, the loss of the lease, or shutdown.
async fn supervise<K: LeaseKeeper>(
    ctx: &RoundContext<'_>,
    spawn: &Spawn,
    deadline: tokio::time::Instant,
    held: &mut HeldLease<K>,
    shutdown: &mut crate::LoopStop,
) -> Result<Outcome> {
    if !ctx.spec.repo.is_dir() {
        return Ok(Outcome::failed(format!(
            "repo {} is not a directory",
            ctx.spec.repo.display()
        )));
    }
    let mut child = match arbiter_process::spawn_guarded(spawn, ctx.guard_exe) {
        Ok(child) => child,
        Err(e) => {
            return Ok(Outcome::failed(format!(
                "cannot start {:?}: {}",
                spawn.argv[0], e.message
            )));
        }
    };
    let grace = ctx.spec.grace;
    let outcome = tokio::select! {
        status = child.wait() => {
            let status = status?;
            child.kill_group_leftovers(grace).await;
            let code = arbiter_process::exit_code(&status);
            match code {
                0 => Outcome { status: RoundStatus::Succeeded, exit_code: Some(0), reason: String::new() },
                127 => Outcome { status: RoundStatus::Failed, exit_code: Some(127), reason: format!("command {:?} not found", spawn.argv[0]) },
                code => Outcome { status: RoundStatus::Failed, exit_code: Some(i64::from(code)), reason: format!("exited with code {code}") },
            }
        }
        () = tokio::time::sleep_until(deadline) => {
            child.terminate(grace).await?;
            Outcome {
                status: RoundStatus::TimedOut,
                exit_code: None,
                reason: format!("timed out after {}; its process tree was stopped", arbiter_core::duration::format_duration(ctx.spec.timeout)),
            }
        }
        err = held.lost() => {
            // The deadline rule leaves the command at most this long between TERM and KILL.
            child.terminate(grace.min(held.deadlines().grace)).await?;
            Outcome { status: RoundStatus::Lost, exit_code: None, reason: format!("the round's lease ({}) was lost: {}", held.name(), err.message) }
        }
        why = crate::told_to_stop(shutdown), if !ctx.spec.finish_on_stop => {
            child.terminate(grace).await?;
            Outcome { status: RoundStatus::Interrupted, exit_code: None, reason: why.says().into() }
        }
    };
    Ok(outcome)
}

/// The last `n` lines of a file, joined, for a reason.
fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().filter(|l| !l.starts_with("arbiter: ")).collect();
    lines[lines.len().saturating_sub(n)..].join(" / ")
}

#[cfg(test)]
mod tests {
    use super::render_prompt;

    #[test]
    fn prompts_pass_everything_but_placeholders_through() {
        let vars = [("loop", "web"), ("round", "7")];
        assert_eq!(render_prompt("{{loop}}#{{round}}", &vars), "web#7");
        assert_eq!(
            render_prompt("fn f() { {x} } {{unknown}} {{loop", &vars),
            "fn f() { {x} } {{unknown}} {{loop"
        );
        assert_eq!(
            render_prompt("$HOME `ls` \"q\" ünï {{{loop}}}", &vars),
            "$HOME `ls` \"q\" ünï {web}"
        );
        assert_eq!(render_prompt("", &vars), "");
        // An issue's fields: dotted names, values never rendered again.
        let vars = [
            ("issue.number", "7"),
            ("issue.body", "see {{issue.number}}"),
            ("loop", "web"),
        ];
        assert_eq!(
            render_prompt("#{{issue.number}} {{issue.body}} {{issue}} {{loop}}", &vars),
            "#7 see {{issue.number}} {{issue}} web"
        );
    }
}
