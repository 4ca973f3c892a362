//! The supervisor, `arbiter watch`, through real processes: real `arbiter watch`
//! supervisors on a real store, agents that are small `sh` scripts written into each test's
//! temp dir, real signals. What is asserted is read from records — the round records in the
//! store, what the agents wrote, `arbiter status --json`, `arbiter logs`, the alerts file —
//! never from how long the test took; every wait is bounded.
//!
//! - prompts: a 7 KB template arrives byte-exact through `{prompt_file}` and through stdin,
//!   never in any argv; its file is 0600 while the round runs and gone after.
//! - profiles: two loops, two credential profiles, at the same time: each agent sees only its
//!   own `GH_CONFIG_DIR` and `GH_TOKEN`, nothing else of the supervisor's environment, and
//!   the user's own gh config is never created.
//! - timeout: the whole process tree stops, a grandchild ignoring SIGTERM included.
//! - failures: backoff as configured (from the recorded schedule), folded alerts, one recovery.
//! - two supervisors: each round of each loop runs once; `kill -9` of one hands its loops to
//!   the other, and no two rounds of a loop ever overlap.
//! - crashes: an agent killed mid-round, a supervisor killed mid-round.
//! - config: broken files start nothing; a live edit is validated and applied between rounds;
//!   a reload starts added loops, stops removed ones (their lease released), starts and
//!   stops the dispatcher, and says so in one line.
//! - fleet view: `arbiter status --json`, a dead supervisor's loop shown as lost, `arbiter logs`,
//!   `arbiter logs --follow` to the round's end.
//! - GitHub: an opted-in loop's real `gh` and `curl` reach the fake GitHub through the
//!   supervisor's proxy, its round records its spend, its gh config keeps its other keys;
//!   a frozen identity pauses the loop without a failure; a tiny budget defers the
//!   lower-priority loop while the higher one runs; a reload starts and stops the proxy.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::str::FromStr;
use std::time::UNIX_EPOCH;

use nix::sys::signal::Signal;
use serde_json::Value;

use crate::support::{Background, SOON, Store, alive, bin};
use arbiter_process::procfs;
use arbiter_testkit::{each_backend, eventually};

each_backend!(
    Store;
    a_7kb_prompt_arrives_byte_exact_and_never_in_argv,
    each_loop_sees_only_its_own_profile,
    a_timeout_stops_the_whole_tree,
    failures_back_off_fold_and_recover,
    two_supervisors_run_each_round_once,
    kill_9_of_a_supervisor_hands_its_loops_over,
    crashes_mid_round_are_recorded_and_cleaned_up,
    a_broken_config_starts_nothing,
    a_live_edit_is_applied_between_rounds,
    status_shows_the_fleet_and_a_dead_supervisor_as_lost,
    a_failing_loop_shows_backing_off_until_it_recovers,
    sigterm_stops_or_finishes_the_round_as_configured,
    a_reload_starts_and_stops_loops_and_the_dispatcher,
    logs_follow_prints_a_running_round_to_its_end,
    an_opted_in_loop_reaches_github_through_the_proxy,
    a_frozen_identity_pauses_the_loop_without_a_failure,
    a_tiny_budget_defers_the_lower_priority_loop,
    a_reload_starts_and_stops_the_github_proxy,
    a_pause_outlasting_its_supervisor_is_resolved_by_the_next,
    a_loop_opting_out_leaves_a_sibling_s_socket_in_their_shared_gh_config,
    a_proxy_that_cannot_start_on_a_reload_leaves_the_loops_running,
    a_loop_opted_out_by_a_reload_loses_its_key_while_the_proxy_runs_on,
);

// ---------------------------------------------------------------------------------------
// The fleet: a directory with `arbiter.toml`, a repo, the agents' scripts, an output
// directory the agents write to (`$OUT`), a HOME of its own for the supervisor, round logs.

struct Fleet<'a> {
    store: &'a Store,
    /// The scratch directory, canonical (the config resolves paths against it).
    dir: PathBuf,
    /// The supervisor's HOME.
    home: PathBuf,
    /// Where the agents write (`$OUT` in their environment, through the loop's `env`).
    out: PathBuf,
    logs: PathBuf,
    config: PathBuf,
}

impl<'a> Fleet<'a> {
    fn new(store: &'a Store) -> Fleet<'a> {
        let dir = std::fs::canonicalize(store.scratch.path()).expect("the scratch dir exists");
        let fleet = Fleet {
            store,
            home: dir.join("home"),
            out: dir.join("out"),
            logs: dir.join("logs"),
            config: dir.join("arbiter.toml"),
            dir,
        };
        for d in [&fleet.home, &fleet.out, &fleet.dir.join("repo")] {
            std::fs::create_dir_all(d).expect("a fleet directory");
        }
        fleet
    }

    /// `@OUT@`, `@DIR@`, `@HOME@` and `@ARBITER@` replaced by their paths.
    fn expand(&self, text: &str) -> String {
        text.replace("@OUT@", &self.out.to_string_lossy())
            .replace("@DIR@", &self.dir.to_string_lossy())
            .replace("@HOME@", &self.home.to_string_lossy())
            .replace("@ARBITER@", &bin().to_string_lossy())
    }

    /// Writes a file of the fleet (placeholders expanded).
    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.join(name);
        std::fs::create_dir_all(path.parent().expect("a parent")).expect("a directory");
        std::fs::write(&path, self.expand(text)).expect("a fleet file");
        path
    }

    /// Replaces `arbiter.toml` at once (a sibling renamed over it, as editors save); returns
    /// the text written.
    fn configure(&self, toml: &str) -> String {
        let text = self.expand(toml);
        let new = self.dir.join(".arbiter.toml.new");
        std::fs::write(&new, &text).expect("the new config is written");
        std::fs::rename(&new, &self.config).expect("the config is replaced");
        text
    }

    /// `arbiter watch --config … --log-dir … ARGS` on the store, with the fleet's HOME.
    fn watch(&self, args: &[&str]) -> Command {
        let mut cmd = self.store.cmd(&["watch"]);
        cmd.arg("--config")
            .arg(&self.config)
            .arg("--log-dir")
            .arg(&self.logs)
            .args(args)
            .env("HOME", &self.home)
            .env_remove("XDG_DATA_HOME")
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("ARBITER_CONFIG");
        cmd
    }

    fn start(&self, label: &str, args: &[&str]) -> Background {
        Background::start(self.watch(args), &self.dir, label)
    }

    /// Runs `arbiter watch ARGS` to its end (bounded); returns the exit code and stderr.
    fn run_watch(&self, label: &str, args: &[&str]) -> (i32, String) {
        let mut watch = self.start(label, args);
        let code = watch.wait(SOON);
        (code, watch.stderr())
    }

    fn out_file(&self, name: &str) -> PathBuf {
        self.out.join(name)
    }

    /// `arbiter status --json`, its loops as a map by loop name.
    fn status(&self) -> BTreeMap<String, Value> {
        let fleet = self.store.ok(&["status", "--json"]).json();
        fleet["loops"]
            .as_array()
            .expect("status --json has an array of loops")
            .iter()
            .map(|row| (row["loop"].as_str().expect("a loop name").to_string(), row.clone()))
            .collect()
    }

    /// The round records of loop `name`, by round.
    fn rounds(&self, name: &str) -> Vec<Round> {
        let query = format!(
            "SELECT CAST(round AS TEXT) || '|' || CAST(pid AS TEXT) || '|' || CAST(started_at AS TEXT) || '|' \
             || COALESCE(CAST(ended_at AS TEXT), '') || '|' || status || '|' || COALESCE(CAST(exit_code AS TEXT), '') \
             || '|' || log_path || '|' || COALESCE(reason, '') FROM loop_rounds WHERE loop = '{name}' ORDER BY round"
        );
        self.store
            .sql_texts(&query)
            .iter()
            .map(|row| Round::parse(row))
            .collect()
    }

    /// Waits for round `n` of loop `name` to have ended; panics if `watch` exits first
    /// without recording it.
    #[track_caller]
    fn ended(&self, name: &str, n: i64, watch: &mut Background) -> Round {
        // The store (its tables) exists before it is queried directly.
        self.store.ok(&["status"]);
        eventually(SOON, &format!("round {n} of loop {name} to end"), || {
            let round = self
                .rounds(name)
                .into_iter()
                .find(|r| r.round == n && r.status != "running");
            if round.is_none() && !watch.running() {
                let round = self
                    .rounds(name)
                    .into_iter()
                    .find(|r| r.round == n && r.status != "running");
                return Some(round.unwrap_or_else(|| panic!("arbiter watch exited first: {}", watch.stderr())));
            }
            round
        })
    }
}

/// One round record, as stored.
#[derive(Debug, Clone)]
struct Round {
    round: i64,
    pid: u32,
    started_at: i64,
    ended_at: Option<i64>,
    status: String,
    exit_code: Option<i64>,
    log_path: String,
    reason: String,
}

impl Round {
    fn parse(row: &str) -> Round {
        let f: Vec<&str> = row.splitn(8, '|').collect();
        assert_eq!(f.len(), 8, "a round record: {row}");
        Round {
            round: f[0].parse().expect("a round number"),
            pid: f[1].parse().expect("a pid"),
            started_at: f[2].parse().expect("started_at"),
            ended_at: (!f[3].is_empty()).then(|| f[3].parse().expect("ended_at")),
            status: f[4].to_string(),
            exit_code: (!f[5].is_empty()).then(|| f[5].parse().expect("exit_code")),
            log_path: f[6].to_string(),
            reason: f[7].to_string(),
        }
    }
}

fn read_parsed<T: FromStr>(path: &Path) -> Option<T> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

/// `/proc/PID/cmdline` (empty if the process is gone).
fn cmdline(pid: u32) -> Vec<u8> {
    std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The parent, grandparent, … of `pid`, up to (not including) pid 1.
fn ancestors(pid: u32) -> Vec<u32> {
    let mut chain = Vec::new();
    let mut current = pid;
    while let Some(p) = procfs::stat(current) {
        if p.ppid <= 1 || chain.contains(&p.ppid) {
            break;
        }
        chain.push(p.ppid);
        current = p.ppid;
    }
    chain
}

/// Milliseconds since the epoch of an RFC 3339 timestamp as `--json` prints them.
fn millis(value: &Value) -> i64 {
    let text = value.as_str().unwrap_or_else(|| panic!("a timestamp: {value}"));
    let time = humantime::parse_rfc3339(text).unwrap_or_else(|e| panic!("{text}: {e}"));
    time.duration_since(UNIX_EPOCH).expect("after the epoch").as_millis() as i64
}

// ---------------------------------------------------------------------------------------
// Prompts.

/// A marker on every line of the prompt but the first two (whose own text is checked too).
const MARKER: &str = "PROMPT-TEXT-7KB";

/// A 7 KB template: quotes, `$`, backticks, escapes, CR LF, non-ASCII, braces of every
/// kind, unknown placeholders (which pass through), and `{{loop}}`, `{{round}}`,
/// `{{last_status}}` (which are rendered). It ends without a newline.
fn big_prompt() -> String {
    let mut text = String::from("# Prompt for {{loop}}, round {{round}} (last: {{last_status}})\r\n--help\n");
    let line = r#"NNN PROMPT-TEXT-7KB "double" 'single' $HOME ${PATH} $(echo injected) `id` \n \\ %s %d	tab ünïcødé ✓ 日本語 — {braces} {"json": [1, {}]} {{unknown}} {{ loop }} {{loop}}"#;
    let mut n = 0;
    while text.len() < 7 * 1024 {
        n += 1;
        text.push_str(&line.replace("NNN", &n.to_string()));
        text.push('\n');
    }
    text.push_str("the end, no newline: {{round}}");
    text
}

const PROMPT_AGENT: &str = r#"
out="$OUT/$ARBITER_LOOP"
if [ "$1" = - ]; then
  readlink "/proc/$$/fd/0" > "$out.path"
  cat > "$out.prompt"
else
  printf '%s\n' "$1" > "$out.path"
  cat "$1" > "$out.prompt"
fi
echo $$ > "$out.pid"
# Wait (bounded) while the test looks at the processes.
i=0
while [ ! -e "$out.go" ] && [ $i -lt 600 ]; do sleep 0.05; i=$((i + 1)); done
"#;

/// A 7 KB prompt reaches one agent through `{prompt_file}` and another through stdin,
/// byte-exact with its placeholders rendered; while the agents run, no process of their
/// process groups nor any of their ancestors (guard, supervisor, …) has any of its text in
/// its argv; the prompt file is 0600 while the round runs and gone after.
fn a_7kb_prompt_arrives_byte_exact_and_never_in_argv(store: &Store) {
    let fleet = Fleet::new(store);
    let template = big_prompt();
    assert!(template.len() >= 7 * 1024);
    std::fs::write(fleet.dir.join("prompt.md"), &template).expect("the template is written");
    fleet.write("agent.sh", PROMPT_AGENT);
    fleet.configure(
        r#"
[loops.by-file]
repo = "repo"
every = "1h"
command = ["sh", "../agent.sh", "{prompt_file}"]
prompt = "prompt.md"
timeout = "2m"
env = { OUT = "@OUT@" }

[loops.by-stdin]
repo = "repo"
every = "1h"
command = ["sh", "../agent.sh", "-"]
prompt = "prompt.md"
prompt_stdin = true
timeout = "2m"
env = { OUT = "@OUT@" }
"#,
    );
    let mut watch = fleet.start("watch", &["--once"]);
    let needles: [&[u8]; 4] = [
        MARKER.as_bytes(),
        "Prompt for".as_bytes(),
        "ünïcødé".as_bytes(),
        "{{unknown}}".as_bytes(),
    ];
    let mut prompt_paths = BTreeMap::new();
    for name in ["by-file", "by-stdin"] {
        let agent: u32 = eventually(SOON, &format!("the agent of {name} to start"), || {
            assert!(watch.running(), "arbiter watch exited early: {}", watch.stderr());
            read_parsed(&fleet.out_file(&format!("{name}.pid")))
        });
        let path = PathBuf::from(
            std::fs::read_to_string(fleet.out_file(&format!("{name}.path")))
                .expect("the agent wrote its prompt's path")
                .trim(),
        );
        assert!(path.is_absolute(), "{name}: the prompt file {path:?}");
        assert_eq!(
            mode(&path),
            0o600,
            "{name}: the prompt file is private while the round runs"
        );

        let pgid = procfs::stat(agent).expect("the agent runs").pgrp;
        let members = procfs::group_members(pgid);
        assert!(members.iter().any(|p| p.pid == agent), "{members:?}");
        assert!(
            members.iter().any(|p| p.pid == pgid && p.pid != agent),
            "the agent runs under its guard, in a group of its own: {members:?}"
        );
        let mut pids: BTreeSet<u32> = members.iter().map(|p| p.pid).collect();
        let parents = ancestors(agent);
        assert!(
            parents.contains(&watch.pid()),
            "the supervisor {} is an ancestor of the agent: {parents:?}",
            watch.pid()
        );
        pids.extend(parents);
        for pid in &pids {
            let argv = cmdline(*pid);
            for needle in needles {
                assert!(
                    !contains(&argv, needle),
                    "{name}: process {pid}'s argv holds prompt text {:?}: {:?}",
                    String::from_utf8_lossy(needle),
                    String::from_utf8_lossy(&argv)
                );
            }
        }
        if name == "by-file" {
            // The check reads real argv: the file is passed by reference, its path is there.
            assert!(
                contains(&cmdline(agent), path.to_string_lossy().as_bytes()),
                "the agent got the prompt's path as an argument: {:?}",
                String::from_utf8_lossy(&cmdline(agent))
            );
        }
        prompt_paths.insert(name, path);
        std::fs::write(fleet.out_file(&format!("{name}.go")), "").expect("go");
    }
    assert_eq!(watch.wait(SOON), 0, "{}", watch.stderr());

    for (name, path) in prompt_paths {
        let round = fleet.ended(name, 1, &mut watch);
        assert_eq!(round.status, "succeeded", "{round:?}");
        let expected = template
            .replace("{{loop}}", name)
            .replace("{{round}}", "1")
            .replace("{{last_status}}", "none");
        let got = std::fs::read(fleet.out_file(&format!("{name}.prompt"))).expect("the agent copied its prompt");
        assert!(
            got == expected.as_bytes(),
            "{name}: the prompt arrived changed ({} bytes, expected {}); first difference at byte {:?}",
            got.len(),
            expected.len(),
            got.iter().zip(expected.as_bytes()).position(|(a, b)| a != b)
        );
        assert!(
            !path.exists(),
            "{name}: the prompt file {} is deleted after the round",
            path.display()
        );
    }
}

// ---------------------------------------------------------------------------------------
// Credential profiles.

const GH: &str = r#"#!/bin/sh
# A fake gh: records what it sees and writes to its config directory, as gh would.
printf '%s %s %s %s %s\n' "$ARBITER_LOOP" "$ARBITER_ROUND" "$GH_CONFIG_DIR" "${GH_TOKEN-<unset>}" "$HOME" >> "$OUT/gh.calls"
echo "$ARBITER_LOOP" >> "$GH_CONFIG_DIR/hosts.yml"
"#;

const PROFILE_AGENT: &str = r#"
env > "$OUT/$ARBITER_LOOP-$ARBITER_ROUND.env"
gh auth status
if [ "$ARBITER_ROUND" = 1 ] && [ "$ARBITER_LOOP" != c ]; then
  # Round 1 of a and of b meet: proof that the two loops run at the same time.
  touch "$OUT/$ARBITER_LOOP.started"
  other=a
  [ "$ARBITER_LOOP" = a ] && other=b
  i=0
  while [ ! -e "$OUT/$other.started" ] && [ $i -lt 600 ]; do sleep 0.05; i=$((i + 1)); done
  [ -e "$OUT/$other.started" ] && touch "$OUT/$ARBITER_LOOP.together"
fi
exit 0
"#;

/// What an agent may see of the supervisor's environment, besides its own variables.
const BASICS: &[&str] = &[
    "PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "LC_CTYPE", "TERM", "TMPDIR", "TZ", "SHELL",
];

/// Two loops with two profiles (a token from the supervisor's environment, a token from a
/// command) and one without, run at the same time for several rounds. Through a fake `gh`
/// first on PATH, each agent sees only its own `GH_CONFIG_DIR` and `GH_TOKEN`; the dirs are
/// 0700; the supervisor's own `GH_TOKEN`/`GH_CONFIG_DIR` (a "global login") and any other
/// variable of its environment never reach an agent; `$HOME/.config/gh` is never created;
/// no token is in a round log or the supervisor's output.
fn each_loop_sees_only_its_own_profile(store: &Store) {
    let fleet = Fleet::new(store);
    let gh = fleet.write("bin/gh", GH);
    std::fs::set_permissions(&gh, std::fs::Permissions::from_mode(0o755)).expect("gh is executable");
    fleet.write("agent.sh", PROFILE_AGENT);
    fleet.configure(
        r#"
[profiles.alpha]
gh_config_dir = "gh/alpha"
token_env = "ALPHA_TOKEN"

[profiles.beta]
gh_config_dir = "gh/beta"
token_command = ["sh", "-c", "echo tok-b"]

[loops.a]
repo = "repo"
every = "100ms"
command = ["sh", "../agent.sh"]
profile = "alpha"
timeout = "1m"
env = { OUT = "@OUT@" }

[loops.b]
repo = "repo"
every = "100ms"
command = ["sh", "../agent.sh"]
profile = "beta"
timeout = "1m"
env = { OUT = "@OUT@" }

[loops.c]
repo = "repo"
every = "100ms"
command = ["sh", "../agent.sh"]
timeout = "1m"
env = { OUT = "@OUT@" }
"#,
    );
    let path = format!(
        "{}:{}",
        fleet.dir.join("bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let user_gh = fleet.home.join(".config/gh");
    let mut cmd = fleet.watch(&["--rounds", "3"]);
    cmd.env("PATH", &path)
        .env("ALPHA_TOKEN", "tok-a")
        .env("SECRET_X", "do-not-leak")
        .env("GH_TOKEN", "global-token")
        .env("GH_CONFIG_DIR", &user_gh);
    let mut watch = Background::start(cmd, &fleet.dir, "watch");
    assert_eq!(watch.wait(SOON), 0, "{}", watch.stderr());

    let alpha = fleet.dir.join("gh/alpha");
    let beta = fleet.dir.join("gh/beta");
    let own = fleet.home.join(".local/share/arbiter/gh/default/c");
    let expected: BTreeMap<&str, (&Path, &str)> = [
        ("a", (alpha.as_path(), "tok-a")),
        ("b", (beta.as_path(), "tok-b")),
        ("c", (own.as_path(), "<unset>")),
    ]
    .into();
    let calls = lines(&fleet.out_file("gh.calls"));
    for (name, (dir, token)) in &expected {
        let mine: Vec<&String> = calls.iter().filter(|l| l.starts_with(&format!("{name} "))).collect();
        let rounds: Vec<String> = (1..=3)
            .map(|r| format!("{name} {r} {} {token} {}", dir.display(), fleet.home.display()))
            .collect();
        assert_eq!(mine, rounds.iter().collect::<Vec<_>>(), "what gh saw in loop {name}");
        assert_eq!(mode(dir), 0o700, "{} is private", dir.display());
        let hosts = lines(&dir.join("hosts.yml"));
        assert_eq!(
            hosts,
            vec![name.to_string(); 3],
            "only loop {name} used {}",
            dir.display()
        );
        for round in fleet.rounds(name) {
            assert_eq!(round.status, "succeeded", "{round:?}");
        }
    }
    for name in ["a", "b"] {
        assert!(
            fleet.out_file(&format!("{name}.together")).exists(),
            "round 1 of loop {name} ran while the other loop's round 1 ran"
        );
    }
    assert!(
        !user_gh.exists(),
        "the user's gh config {} was created",
        user_gh.display()
    );
    assert!(!fleet.home.join(".config").exists(), "nothing was written to ~/.config");

    // Each agent's whole environment.
    for (name, (dir, token)) in &expected {
        for round in 1..=3 {
            let dump = std::fs::read_to_string(fleet.out_file(&format!("{name}-{round}.env"))).expect("an env dump");
            let env: BTreeMap<&str, &str> = dump.lines().filter_map(|l| l.split_once('=')).collect();
            assert_eq!(env.get("ARBITER_LOOP"), Some(name), "{dump}");
            assert_eq!(
                env.get("GH_CONFIG_DIR").copied(),
                Some(&*dir.to_string_lossy()),
                "{dump}"
            );
            assert_eq!(env.get("GH_TOKEN").copied().unwrap_or("<unset>"), *token, "{dump}");
            assert_eq!(
                env.get("PATH").copied(),
                Some(path.as_str()),
                "PATH is inherited: {dump}"
            );
            for key in env.keys() {
                assert!(
                    BASICS.contains(key)
                        || key.starts_with("ARBITER_")
                        || ["GH_CONFIG_DIR", "GH_TOKEN", "OUT", "PWD", "OLDPWD", "SHLVL", "_"].contains(key),
                    "loop {name} got {key} from the supervisor's environment: {dump}"
                );
            }
            for secret in ["do-not-leak", "global-token", "tok-a", "tok-b"] {
                if secret != *token {
                    assert!(!dump.contains(secret), "loop {name} sees {secret:?}: {dump}");
                }
            }
        }
    }
    // Tokens never appear in round logs or in the supervisor's output.
    for name in expected.keys() {
        for round in fleet.rounds(name) {
            let log = std::fs::read_to_string(&round.log_path).expect("a round log");
            assert!(!log.contains("tok-"), "a token in {}: {log}", round.log_path);
        }
    }
    assert!(!watch.stderr().contains("tok-") && !watch.stdout().contains("tok-"));
}

// ---------------------------------------------------------------------------------------
// Timeout.

const TIMEOUT_AGENT: &str = r#"
sh -c 'trap "" TERM; grep SigIgn /proc/self/status > "$OUT/grandchild.sigign"; echo $$ > "$OUT/grandchild.pid"; exec sleep 300' &
echo $$ > "$OUT/agent.pid"
sleep 300
"#;

/// An agent that started a grandchild ignoring SIGTERM runs past its 1 s timeout: the round
/// is recorded `timed out` with a reason, and both the agent and the grandchild are gone by
/// the time it is recorded (TERM, the grace, then KILL for the whole group).
fn a_timeout_stops_the_whole_tree(store: &Store) {
    let fleet = Fleet::new(store);
    fleet.write("agent.sh", TIMEOUT_AGENT);
    fleet.configure(
        r#"
[loops.stuck]
repo = "repo"
every = "1h"
command = ["sh", "../agent.sh"]
timeout = "1s"
grace = "300ms"
env = { OUT = "@OUT@" }
"#,
    );
    let mut watch = fleet.start("watch", &["--once"]);
    let round = fleet.ended("stuck", 1, &mut watch);
    let agent: u32 = read_parsed(&fleet.out_file("agent.pid")).expect("the agent started");
    let grandchild: u32 = read_parsed(&fleet.out_file("grandchild.pid")).expect("the grandchild started");
    assert!(!alive(agent), "the agent {agent} is gone when the round is recorded");
    assert!(
        !alive(grandchild),
        "the grandchild {grandchild} is gone when the round is recorded"
    );
    assert_eq!(round.status, "timed out", "{round:?}");
    assert_eq!(round.exit_code, None, "{round:?}");
    assert!(round.reason.contains("timed out after 1s"), "{round:?}");
    // The grandchild did ignore SIGTERM: only SIGKILL could stop it.
    let sigign = std::fs::read_to_string(fleet.out_file("grandchild.sigign")).expect("the grandchild's SigIgn");
    let mask = u64::from_str_radix(sigign.split(':').nth(1).expect("SigIgn: MASK").trim(), 16).expect("a hex mask");
    assert_ne!(
        mask & (1 << (Signal::SIGTERM as u32 - 1)),
        0,
        "the grandchild ignores SIGTERM: {sigign}"
    );
    assert_eq!(watch.wait(SOON), 7, "its only round failed: {}", watch.stderr());
    let log = store.ok(&["logs", "stuck", "--round", "1"]).stdout;
    assert!(log.contains("timed out"), "the round's log says why it ended: {log}");
}

// ---------------------------------------------------------------------------------------
// Failures, backoff, folded alerts.

const FLAKY_AGENT: &str = r#"
# What the store says while this round runs (the schedule the last round left).
"$ARBITER_BIN" status --json > "$OUT/status-$ARBITER_ROUND.json"
echo "flaky round $ARBITER_ROUND"
[ "$ARBITER_ROUND" -gt 3 ]
"#;

/// An agent fails rounds 1–3, then succeeds (every 200 ms, backoff capped at 1 s). From the
/// records: each round after a failure was scheduled `every × 2^failures` (capped) after the
/// previous one ended, and did not start earlier; after the success, `every` again. The
/// alerts file (a `file` channel routed `loop.*`) has the folded alert at counts 1 and 3,
/// then exactly one recovery.
fn failures_back_off_fold_and_recover(store: &Store) {
    let fleet = Fleet::new(store);
    fleet.write("agent.sh", FLAKY_AGENT);
    fleet.configure(
        r#"
[notifications]
backoff = "200ms"

[channels.alerts]
type = "file"
path = "alerts.jsonl"

[[routes]]
kinds = ["loop.*"]
channels = ["alerts"]

[loops.flaky]
repo = "repo"
every = "200ms"
backoff_max = "1s"
command = ["sh", "../agent.sh"]
timeout = "1m"
env = { OUT = "@OUT@", ARBITER_BIN = "@ARBITER@" }
"#,
    );
    let (code, stderr) = fleet.run_watch("watch", &["--rounds", "5"]);
    assert_eq!(code, 0, "{stderr}");

    let rounds = fleet.rounds("flaky");
    let statuses: Vec<&str> = rounds.iter().map(|r| r.status.as_str()).collect();
    assert_eq!(
        statuses,
        ["failed", "failed", "failed", "succeeded", "succeeded"],
        "{rounds:?}"
    );
    for r in &rounds[..3] {
        assert_eq!(
            (r.exit_code, r.reason.as_str()),
            (Some(1), "exited with code 1"),
            "{r:?}"
        );
    }
    // The schedule each round left, as the next round's agent read it from the store.
    let expected_delays = [400, 800, 1000, 200];
    for (k, delay) in expected_delays.iter().enumerate() {
        let (previous, next) = (&rounds[k], &rounds[k + 1]);
        let seen = std::fs::read_to_string(fleet.out_file(&format!("status-{}.json", next.round))).expect("a status");
        let seen: Value = serde_json::from_str(&seen).unwrap_or_else(|e| panic!("{e}: {seen}"));
        let row = seen["loops"]
            .as_array()
            .and_then(|rows| rows.iter().find(|r| r["loop"] == "flaky"))
            .unwrap_or_else(|| panic!("the loop in {seen}"));
        let failures = if k < 3 { k as i64 + 1 } else { 0 };
        assert_eq!(
            row["consecutive_failures"], failures,
            "after round {}: {row}",
            previous.round
        );
        assert_eq!(row["last_status"], previous.status.as_str(), "{row}");
        let ended = previous.ended_at.expect("the round ended");
        let next_run = millis(&row["next_run_at"]);
        assert_eq!(
            next_run - ended,
            *delay,
            "round {} ({}) scheduled the next {} ms after its end",
            previous.round,
            previous.status,
            next_run - ended
        );
        assert!(
            next.started_at >= next_run,
            "round {} started {} ms before its time",
            next.round,
            next_run - next.started_at
        );
    }
    let gaps: Vec<i64> = rounds.windows(2).map(|w| w[1].started_at - w[0].started_at).collect();
    eprintln!("gaps between round starts: {gaps:?} ms");

    // Folded: count 1 and count 3 alert, then one recovery; nothing else.
    let alerts: Vec<Value> = lines(&fleet.dir.join("alerts.jsonl"))
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let summary: Vec<(String, i64)> = alerts
        .iter()
        .map(|a| {
            assert_eq!(a["notification"]["dedupe_key"], "loop/flaky", "{a}");
            (
                a["type"].as_str().expect("a type").to_string(),
                a["fold"]["count"].as_i64().expect("a fold count"),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [("alert".into(), 1), ("alert".into(), 3), ("recovery".into(), 3)],
        "{alerts:#?}"
    );
    assert_eq!(alerts[0]["notification"]["kind"], "loop.failure");
    assert_eq!(alerts[0]["notification"]["severity"], "warning");
    assert_eq!(alerts[1]["notification"]["severity"], "critical");
    let body = alerts[0]["notification"]["body"].as_str().unwrap_or_default();
    assert!(
        body.contains("round 1 failed") && body.contains("exited with code 1"),
        "{body}"
    );
}

// ---------------------------------------------------------------------------------------
// Two supervisors.

const COUNT_AGENT: &str = r#"
sup=$(cut -d' ' -f4 "/proc/$PPID/stat")
echo "$ARBITER_LOOP $ARBITER_ROUND $sup" >> "$OUT/rounds"
sleep 0.05
"#;

/// Two `arbiter watch --rounds 6` started together with the same config and store; then,
/// on the same store, one `--rounds 3` that holds both loops when a `--rounds 6` joins it,
/// so the loops are handed over when the first one is done. Every round of each loop runs
/// exactly once (the agents count them), rounds are numbered without gaps, each is run by
/// the supervisor its record names, and every supervisor ends by itself.
fn two_supervisors_run_each_round_once(store: &Store) {
    let fleet = Fleet::new(store);
    fleet.write("agent.sh", COUNT_AGENT);
    fleet.configure(
        r#"
[loops.x]
repo = "repo"
every = "100ms"
command = ["sh", "../agent.sh"]
timeout = "1m"
env = { OUT = "@OUT@" }

[loops.y]
repo = "repo"
every = "100ms"
command = ["sh", "../agent.sh"]
timeout = "1m"
env = { OUT = "@OUT@" }
"#,
    );
    // Together.
    let mut one = fleet.start("one", &["--rounds", "6"]);
    let mut two = fleet.start("two", &["--rounds", "6"]);
    assert_eq!(one.wait(SOON), 0, "{}", one.stderr());
    assert_eq!(two.wait(SOON), 0, "{}", two.stderr());
    let mut supervisors = vec![one.pid(), two.pid()];
    let status = fleet.status();
    let together: BTreeMap<&str, i64> = ["x", "y"]
        .into_iter()
        .map(|name| (name, status[name]["round"].as_i64().expect("a round")))
        .collect();
    for (name, last) in &together {
        // Each supervisor counts its 6 rounds from the round it found when it started.
        assert!((6..=12).contains(last), "loop {name} ran {last} rounds");
    }

    // A handover: `first` holds both loops when `second` joins.
    let mut first = fleet.start("first", &["--rounds", "3"]);
    eventually(SOON, "the first supervisor to run both loops", || {
        assert!(first.running(), "it exited early: {}", first.stderr());
        ["x", "y"]
            .iter()
            .all(|name| fleet.rounds(name).iter().any(|r| r.pid == first.pid()))
            .then_some(())
    });
    let mut second = fleet.start("second", &["--rounds", "6"]);
    assert_eq!(first.wait(SOON), 0, "{}", first.stderr());
    assert_eq!(second.wait(SOON), 0, "{}", second.stderr());
    supervisors.extend([first.pid(), second.pid()]);

    let mut seen: BTreeMap<(String, i64), u32> = BTreeMap::new();
    for line in lines(&fleet.out_file("rounds")) {
        let f: Vec<&str> = line.split(' ').collect();
        let key = (f[0].to_string(), f[1].parse::<i64>().expect("a round"));
        let pid: u32 = f[2].parse().expect("a pid");
        assert!(supervisors.contains(&pid), "{line}: run by one of {supervisors:?}");
        assert!(seen.insert(key, pid).is_none(), "a round ran twice: {line}");
    }
    let status = fleet.status();
    for name in ["x", "y"] {
        let records = fleet.rounds(name);
        let last = status[name]["round"].as_i64().expect("a round");
        assert_eq!(
            records.iter().map(|r| r.round).collect::<Vec<_>>(),
            (1..=last).collect::<Vec<_>>(),
            "loop {name}"
        );
        for r in &records {
            assert_eq!(r.status, "succeeded", "{r:?}");
            assert_eq!(
                seen.get(&(name.to_string(), r.round)),
                Some(&r.pid),
                "round {} of {name} ran once, by the supervisor of its record",
                r.round
            );
        }
        let ran = seen.keys().filter(|(l, _)| l == name).count() as i64;
        assert_eq!(ran, last, "the agents of loop {name} ran {ran} times for {last} rounds");
        // The handover: 3 rounds by `first`, then `second` until its own 6 are counted.
        let before = together[name];
        let runners: Vec<u32> = records[before as usize..].iter().map(|r| r.pid).collect();
        // `second` counts its 6 from the round it found: one to three rounds past `before`.
        assert!((7..=9).contains(&runners.len()), "loop {name}: {runners:?}");
        assert_eq!(runners[..3], [first.pid(); 3], "loop {name}: {runners:?}");
        assert!(
            runners[3..].iter().all(|pid| *pid == second.pid()),
            "loop {name}: {runners:?}"
        );
        eprintln!(
            "loop {name}: {before} rounds by {:?} together, then {runners:?}",
            records[..before as usize]
                .iter()
                .map(|r| r.pid)
                .collect::<BTreeSet<_>>()
        );
    }
}

const EVENTS_AGENT: &str = r#"
sup=$(cut -d' ' -f4 "/proc/$PPID/stat")
ev="$OUT/$ARBITER_LOOP.events"
echo "start $ARBITER_ROUND $sup $(date +%s%N) $$" >> "$ev"
n=4
# Round 2 of loop p is long: its supervisor is killed during it.
[ "$ARBITER_LOOP" = p ] && [ "$ARBITER_ROUND" = 2 ] && n=1200
i=0
while [ $i -lt $n ]; do
  sleep 0.05
  echo "tick $ARBITER_ROUND $sup $(date +%s%N) $$" >> "$ev"
  i=$((i + 1))
done
echo "end $ARBITER_ROUND $sup $(date +%s%N) $$" >> "$ev"
"#;

/// One line an agent of the failover scenario wrote.
#[derive(Debug, Clone)]
struct Event {
    what: String,
    round: i64,
    supervisor: u32,
    at_ns: u128,
    agent: u32,
}

fn events(path: &Path) -> Vec<Event> {
    lines(path)
        .iter()
        .map(|line| {
            let f: Vec<&str> = line.split(' ').collect();
            assert_eq!(f.len(), 5, "an event: {line}");
            Event {
                what: f[0].to_string(),
                round: f[1].parse().expect("a round"),
                supervisor: f[2].parse().expect("a pid"),
                at_ns: f[3].parse().expect("a time"),
                agent: f[4].parse().expect("a pid"),
            }
        })
        .collect()
}

/// Two supervisors, no round limit, a 2 s lease TTL, two loops. The holder of `loop/p` is
/// `kill -9`-ed while round 2 of p runs: that agent dies with it (its guard), the other
/// supervisor continues both loops (new rounds, recorded and run under its pid), round 2 is
/// recorded abandoned, and, from the agents' own timestamps, no two rounds of a loop ever
/// ran at once (sorted by time, the rounds of a loop never go back).
fn kill_9_of_a_supervisor_hands_its_loops_over(store: &Store) {
    let fleet = Fleet::new(store);
    fleet.write("agent.sh", EVENTS_AGENT);
    fleet.configure(
        r#"
[loops.p]
repo = "repo"
every = "100ms"
command = ["sh", "../agent.sh"]
timeout = "2m"
grace = "1s"
env = { OUT = "@OUT@" }

[loops.q]
repo = "repo"
every = "100ms"
command = ["sh", "../agent.sh"]
timeout = "2m"
grace = "1s"
env = { OUT = "@OUT@" }
"#,
    );
    let mut supervisors = vec![
        fleet.start("one", &["--lease-ttl", "2s"]),
        fleet.start("two", &["--lease-ttl", "2s"]),
    ];
    let p_events = fleet.out_file("p.events");
    let start = eventually(SOON, "round 2 of loop p to start", || {
        for s in supervisors.iter_mut() {
            assert!(s.running(), "a supervisor exited: {}", s.stderr());
        }
        events(&p_events)
            .into_iter()
            .find(|e| e.what == "start" && e.round == 2)
    });
    let lease = store.show("loop/p");
    let holder = lease["holders"][0]["holder"]["pid"].as_u64().expect("a holder pid") as u32;
    assert_eq!(holder, start.supervisor, "the lease holder runs the round: {lease}");
    let index = supervisors
        .iter()
        .position(|s| s.pid() == holder)
        .expect("the holder is ours");
    let mut victim = supervisors.remove(index);
    let mut survivor = supervisors.remove(0);
    let q_before = fleet.rounds("q").last().map_or(0, |r| r.round);

    victim.signal(Signal::SIGKILL);
    assert_eq!(victim.wait(SOON), 137);
    eventually(SOON, "the killed supervisor's agent to die with it", || {
        (!alive(start.agent)).then_some(())
    });

    // The survivor carries on with both loops.
    for (name, after) in [("p", 2), ("q", q_before)] {
        eventually(SOON, &format!("two rounds of loop {name} by the survivor"), || {
            assert!(survivor.running(), "the survivor exited: {}", survivor.stderr());
            let mine = fleet
                .rounds(name)
                .into_iter()
                .filter(|r| r.round > after && r.pid == survivor.pid() && r.status == "succeeded")
                .count();
            (mine >= 2).then_some(())
        });
    }
    survivor.signal(Signal::SIGTERM);
    assert_eq!(survivor.wait(SOON), 0, "a clean stop: {}", survivor.stderr());

    let p_rounds = fleet.rounds("p");
    let abandoned = &p_rounds[1];
    assert_eq!(
        (abandoned.round, abandoned.status.as_str()),
        (2, "abandoned"),
        "{p_rounds:?}"
    );
    assert!(abandoned.reason.contains("crashed or was killed"), "{abandoned:?}");
    assert!(abandoned.ended_at.is_some(), "{abandoned:?}");
    assert!(
        p_rounds[2..].iter().all(|r| r.pid == survivor.pid()),
        "every later round of p is the survivor's: {p_rounds:?}"
    );
    for name in ["p", "q"] {
        let mut all = events(&fleet.out_file(&format!("{name}.events")));
        assert!(
            all.iter()
                .all(|e| [victim.pid(), survivor.pid()].contains(&e.supervisor))
        );
        all.sort_by_key(|e| e.at_ns);
        for pair in all.windows(2) {
            assert!(
                pair[0].round <= pair[1].round,
                "loop {name}: round {} ran while round {} did: {:?} then {:?}",
                pair[0].round,
                pair[1].round,
                pair[0],
                pair[1]
            );
        }
        let starts: Vec<i64> = all.iter().filter(|e| e.what == "start").map(|e| e.round).collect();
        let unique: BTreeSet<i64> = starts.iter().copied().collect();
        assert_eq!(
            starts.len(),
            unique.len(),
            "loop {name}: a round started twice: {starts:?}"
        );
    }
    let last_tick = events(&p_events)
        .iter()
        .filter(|e| e.round == 2)
        .map(|e| e.at_ns)
        .max()
        .expect("round 2 ran");
    let takeover = events(&p_events)
        .iter()
        .find(|e| e.what == "start" && e.round == 3)
        .map(|e| e.at_ns)
        .expect("round 3 ran");
    eprintln!(
        "round 3 of p started {} ms after the last sign of life of round 2",
        (takeover - last_tick) / 1_000_000
    );
}

// ---------------------------------------------------------------------------------------
// Crashes.

const CRASH_AGENT: &str = r#"
case "$ARBITER_LOOP" in
  suicide)
    kill -9 $$
    ;;
  sleepy)
    if [ "$ARBITER_ROUND" = 1 ]; then
      printf '%s\n' "$1" > "$OUT/prompt.path"
      cut -d' ' -f5 /proc/$$/stat > "$OUT/agent.pgid"
      echo $$ > "$OUT/agent.pid"
      sleep 300
    fi
    echo "round $ARBITER_ROUND of sleepy"
    ;;
esac
"#;

/// An agent that kills itself with SIGKILL: the round is `failed`, "exited with code 137".
/// A supervisor `kill -9`-ed while its agent sleeps: the agent's process group is gone soon
/// after (its guard), and the next supervisor records the old round `abandoned` with a
/// reason, runs the next one, releases the lease at its end, and no prompt file of the
/// crashed round is left behind.
fn crashes_mid_round_are_recorded_and_cleaned_up(store: &Store) {
    let fleet = Fleet::new(store);
    fleet.write("agent.sh", CRASH_AGENT);
    fleet.write("prompt.md", "the prompt of {{loop}}, round {{round}}\n");
    fleet.configure(
        r#"
[loops.suicide]
repo = "repo"
every = "1h"
command = ["sh", "../agent.sh"]
timeout = "1m"
env = { OUT = "@OUT@" }

[loops.sleepy]
repo = "repo"
every = "100ms"
command = ["sh", "../agent.sh", "{prompt_file}"]
prompt = "prompt.md"
timeout = "2m"
env = { OUT = "@OUT@" }
"#,
    );
    // The agent crashes.
    let (code, stderr) = fleet.run_watch("suicide", &["--once", "--loop", "suicide"]);
    assert_eq!(code, 7, "its only round failed: {stderr}");
    let round = &fleet.rounds("suicide")[0];
    assert_eq!(
        (round.status.as_str(), round.exit_code, round.reason.as_str()),
        ("failed", Some(137), "exited with code 137"),
        "{round:?}"
    );

    // The supervisor crashes.
    let mut watch = fleet.start("sleepy", &["--loop", "sleepy", "--lease-ttl", "30s"]);
    let agent: u32 = eventually(SOON, "the agent to start", || {
        assert!(watch.running(), "arbiter watch exited early: {}", watch.stderr());
        read_parsed(&fleet.out_file("agent.pid"))
    });
    let pgid: u32 = read_parsed(&fleet.out_file("agent.pgid")).expect("the agent's group");
    watch.also_kill_group(pgid);
    let prompt = PathBuf::from(
        std::fs::read_to_string(fleet.out_file("prompt.path"))
            .expect("the prompt path")
            .trim(),
    );
    assert!(prompt.exists(), "the prompt file exists while the round runs");
    assert!(!procfs::group_members(pgid).is_empty(), "the agent's group runs");
    watch.signal(Signal::SIGKILL);
    assert_eq!(watch.wait(SOON), 137);
    eventually(SOON, "the agent's process group to be gone", || {
        procfs::group_members(pgid).is_empty().then_some(())
    });
    assert!(!alive(agent));
    assert_eq!(
        fleet.rounds("sleepy")[0].status,
        "running",
        "nobody could record its end yet"
    );
    assert!(
        prompt.exists(),
        "a supervisor killed with -9 could not delete its prompt file"
    );

    // A new supervisor: the lease's holder is dead on this host, so it is taken at once.
    let (code, stderr) = fleet.run_watch("restart", &["--once", "--loop", "sleepy"]);
    assert_eq!(code, 0, "{stderr}");
    let rounds = fleet.rounds("sleepy");
    assert_eq!(rounds.len(), 2, "{rounds:?}");
    assert_eq!(rounds[0].status, "abandoned", "{rounds:?}");
    assert!(rounds[0].reason.contains("crashed or was killed"), "{:?}", rounds[0]);
    assert!(rounds[0].ended_at.is_some());
    assert_eq!(rounds[1].status, "succeeded", "{rounds:?}");
    let lease = store.show("loop/sleepy");
    assert_eq!(lease["holders"].as_array().map(Vec::len), Some(0), "released: {lease}");
    assert!(
        !prompt.exists(),
        "the prompt file {} of the crashed round is still there after the next round",
        prompt.display()
    );
}

// ---------------------------------------------------------------------------------------
// Configuration.

const GOOD_LOOP: &str = r#"
[profiles.work]
gh_config_dir = "gh/work"

[loops.x]
repo = "repo"
every = "100ms"
command = ["sh", "../agent.sh"]
profile = "work"
timeout = "1m"
env = { OUT = "@OUT@" }
"#;

/// Broken configs — an unknown profile, a command given as a string, a bad duration, a
/// token command as a string, an unknown key — make `arbiter watch` exit 2 with
/// `FILE:LINE: KEY: why`, before anything starts: no agent ran, no store was created, no
/// log directory either.
fn a_broken_config_starts_nothing(store: &Store) {
    let fleet = Fleet::new(store);
    fleet.write("agent.sh", "touch \"$OUT/ran\"\n");
    let cases = [
        (
            r#"profile = "work""#,
            r#"profile = "nope""#,
            "loops.x.profile",
            r#"unknown profile "nope" (known: work)"#,
        ),
        (
            r#"command = ["sh", "../agent.sh"]"#,
            r#"command = "sh ../agent.sh""#,
            "loops.x.command",
            "a shell string is not allowed",
        ),
        (
            r#"every = "100ms""#,
            r#"every = "5 minutes""#,
            "loops.x.every",
            "invalid duration \"5 minutes\"",
        ),
        (
            r#"timeout = "1m""#,
            r#"timeout = "1m30""#,
            "loops.x.timeout",
            "invalid duration \"1m30\"",
        ),
        (
            r#"gh_config_dir = "gh/work""#,
            "gh_config_dir = \"gh/work\"\ntoken_command = \"gh auth token\"",
            "profiles.work.token_command",
            "a shell string is not allowed",
        ),
    ];
    for (good, bad, key, why) in cases {
        assert!(GOOD_LOOP.contains(good), "{good}");
        let text = fleet.configure(&GOOD_LOOP.replace(good, bad));
        let first = bad.lines().last().expect("a line");
        let line = text.lines().position(|l| l == first).expect("the bad line") + 1;
        let (code, stderr) = fleet.run_watch("watch", &[]);
        assert_eq!(code, 2, "{bad}: {stderr}");
        let expected = format!("{}:{line}: {key}: ", fleet.config.display());
        assert!(
            stderr.contains(&expected) && stderr.contains(why),
            "{bad}: expected {expected:?} and {why:?} in {stderr:?}"
        );
    }
    // An unknown key names its line too.
    let text = fleet.configure(&GOOD_LOOP.replace(r#"every = "100ms""#, r#"evry = "100ms""#));
    let line = text.lines().position(|l| l.starts_with("evry")).expect("the line") + 1;
    let (code, stderr) = fleet.run_watch("watch", &[]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains(&format!("{}:{line}", fleet.config.display())) && stderr.contains("evry"),
        "{stderr}"
    );

    assert!(!fleet.out_file("ran").exists(), "no agent ran");
    assert!(!store.exists(), "no store was created");
    assert!(!fleet.logs.exists(), "no log directory was created");
}

const LIVE_AGENT: &str = r#"echo "$1 $ARBITER_ROUND" >> "$OUT/live.out"
"#;

const LIVE_CONFIG: &str = r#"
[loops.live]
repo = "repo"
every = "200ms"
command = ["sh", "../agent.sh", "v1"]
timeout = "1m"
env = { OUT = "@OUT@" }
"#;

/// While `arbiter watch` runs, `arbiter.toml` is overwritten with a broken version: the
/// supervisor says so on stderr (file, line, key) and keeps running rounds on the old
/// config; then a valid edit (the command's argument) is applied between rounds: from one
/// round on, every round runs the new command, and never the old one again.
fn a_live_edit_is_applied_between_rounds(store: &Store) {
    let fleet = Fleet::new(store);
    fleet.write("agent.sh", LIVE_AGENT);
    fleet.configure(LIVE_CONFIG);
    let output = fleet.out_file("live.out");
    let mut watch = fleet.start("watch", &[]);
    let count = |watch: &mut Background, at_least: usize| {
        eventually(SOON, &format!("{at_least} rounds"), || {
            assert!(watch.running(), "arbiter watch exited: {}", watch.stderr());
            let all = lines(&output);
            (all.len() >= at_least).then_some(all)
        })
    };
    count(&mut watch, 2);

    let broken = fleet.configure(&LIVE_CONFIG.replace(r#"["sh", "../agent.sh", "v1"]"#, r#""sh ../agent.sh v2""#));
    let line = broken.lines().position(|l| l.starts_with("command")).expect("the line") + 1;
    let expected = format!("{}:{line}: loops.live.command: ", fleet.config.display());
    eventually(SOON, "the supervisor to report the broken edit", || {
        assert!(watch.running(), "arbiter watch exited: {}", watch.stderr());
        let stderr = watch.stderr();
        (stderr.contains(&expected) && stderr.contains("the old one keeps running")).then_some(())
    });
    let before = lines(&output).len();
    count(&mut watch, before + 2);

    fleet.configure(&LIVE_CONFIG.replace(r#""v1""#, r#""v2""#));
    eventually(SOON, "a round with the edited command", || {
        assert!(watch.running(), "arbiter watch exited: {}", watch.stderr());
        lines(&output).iter().any(|l| l.starts_with("v2 ")).then_some(())
    });
    let seen = lines(&output).len();
    let all = count(&mut watch, seen + 2);
    watch.signal(Signal::SIGTERM);
    assert_eq!(watch.wait(SOON), 0, "{}", watch.stderr());

    let versions: Vec<&str> = all.iter().map(|l| l.split(' ').next().unwrap_or_default()).collect();
    let switch = versions.iter().position(|v| *v == "v2").expect("v2 ran");
    assert!(switch >= before + 2, "the broken edit changed nothing: {versions:?}");
    assert!(versions[..switch].iter().all(|v| *v == "v1"), "{versions:?}");
    assert!(
        versions[switch..].iter().all(|v| *v == "v2"),
        "the old command never runs again: {versions:?}"
    );
    let rounds: Vec<i64> = all
        .iter()
        .map(|l| l.split(' ').nth(1).unwrap_or_default().parse().expect("a round"))
        .collect();
    assert_eq!(
        rounds,
        (1..=rounds.len() as i64).collect::<Vec<_>>(),
        "one supervisor, every round once"
    );
}

// ---------------------------------------------------------------------------------------
// The fleet view.

/// `arbiter status --json` shows a running loop with its fields; after the supervisor is
/// `kill -9`-ed, the loop shows as `lost` (no lease holder, its TTL over) with the dead
/// supervisor's host and pid; `arbiter logs LOOP --round N` prints that round's output.
fn status_shows_the_fleet_and_a_dead_supervisor_as_lost(store: &Store) {
    let fleet = Fleet::new(store);
    fleet.write("agent.sh", "echo \"hello from round $ARBITER_ROUND\"\n");
    fleet.configure(
        r#"
[loops.st]
repo = "repo"
every = "200ms"
command = ["sh", "../agent.sh"]
timeout = "1m"
"#,
    );
    let mut watch = fleet.start("watch", &["--lease-ttl", "2s"]);
    fleet.ended("st", 3, &mut watch);
    let row = fleet.status().remove("st").expect("the loop is listed");
    for field in [
        "loop",
        "state",
        "host",
        "pid",
        "round",
        "last_status",
        "last_reason",
        "consecutive_failures",
        "next_run_at",
        "lease_expires_at",
    ] {
        assert!(row.get(field).is_some(), "status --json has {field}: {row}");
    }
    assert_eq!(row["loop"], "st");
    assert!(
        ["idle", "running"].contains(&row["state"].as_str().unwrap_or_default()),
        "{row}"
    );
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").expect("the host name");
    assert_eq!(row["host"], host.trim(), "{row}");
    assert_eq!(row["pid"], watch.pid(), "{row}");
    assert!(row["round"].as_i64().is_some_and(|r| r >= 3), "{row}");
    assert_eq!(row["last_status"], "succeeded", "{row}");
    assert_eq!(row["consecutive_failures"], 0, "{row}");
    millis(&row["next_run_at"]);
    millis(&row["lease_expires_at"]);

    watch.signal(Signal::SIGKILL);
    assert_eq!(watch.wait(SOON), 137);
    let lost = eventually(SOON, "the loop to show as lost", || {
        fleet.status().remove("st").filter(|row| row["state"] == "lost")
    });
    assert_eq!(lost["lease_expires_at"], Value::Null, "{lost}");
    assert_eq!(lost["pid"], watch.pid(), "where it last ran: {lost}");
    assert_eq!(lost["host"], host.trim(), "{lost}");
    let text = store.ok(&["status"]).stdout;
    assert!(text.lines().any(|l| l.starts_with("st\tlost\t")), "{text}");

    let log = store.ok(&["logs", "st", "--round", "2"]).stdout;
    assert!(log.contains("hello from round 2"), "{log}");
    assert!(
        !log.contains("hello from round 1") && !log.contains("hello from round 3"),
        "{log}"
    );
    let out = store.run(&["logs", "st", "--round", "999"]);
    assert_eq!(out.code, 5, "{out:?}");
    assert!(out.stderr.contains("has no round 999"), "{out:?}");
}

/// A loop whose round failed shows `backing off` (with its failure count and the delayed
/// next run) while it waits, and `idle` again once a round succeeds: the state `status`
/// prints is the one the supervisor last wrote, after the round and on each wake.
fn a_failing_loop_shows_backing_off_until_it_recovers(store: &Store) {
    let fleet = Fleet::new(store);
    // Round 1 fails; later rounds succeed.
    fleet.write("agent.sh", "[ \"$ARBITER_ROUND\" -gt 1 ]\n");
    fleet.configure(
        r#"
[loops.bo]
repo = "repo"
every = "1s"
backoff_max = "10s"
command = ["sh", "../agent.sh"]
timeout = "1m"
"#,
    );
    let mut watch = fleet.start("watch", &["--lease-ttl", "5s"]);
    let backing_off = eventually(SOON, "the loop to show `backing off`", || {
        fleet.status().remove("bo").filter(|row| row["state"] == "backing off")
    });
    assert_eq!(backing_off["consecutive_failures"], 1, "{backing_off}");
    assert_eq!(backing_off["last_status"], "failed", "{backing_off}");
    assert_eq!(backing_off["round"], 1, "{backing_off}");
    fleet.ended("bo", 2, &mut watch);
    let recovered = eventually(SOON, "the loop to show `idle` after round 2", || {
        fleet
            .status()
            .remove("bo")
            .filter(|row| row["state"] == "idle" && row["round"].as_i64() >= Some(2))
    });
    assert_eq!(recovered["consecutive_failures"], 0, "{recovered}");
    assert_eq!(recovered["last_status"], "succeeded", "{recovered}");
    watch.signal(Signal::SIGTERM);
    assert_eq!(watch.wait(SOON), 0, "{}", watch.stderr());
}

/// SIGTERM to `arbiter watch` mid-round: `on_stop = "stop"` (the default) stops the round's
/// process tree and records it `interrupted`; `on_stop = "finish"` lets it finish.
fn sigterm_stops_or_finishes_the_round_as_configured(store: &Store) {
    let fleet = Fleet::new(store);
    fleet.write(
        "agent.sh",
        "echo started > \"$OUT/$ARBITER_LOOP.started\"\nsleep 1\necho done\n",
    );
    fleet.configure(
        r#"
[loops.stops]
repo = "repo"
every = "1h"
command = ["sh", "../agent.sh"]
timeout = "30s"
env = { OUT = "@OUT@" }

[loops.finishes]
repo = "repo"
every = "1h"
command = ["sh", "../agent.sh"]
timeout = "30s"
on_stop = "finish"
env = { OUT = "@OUT@" }
"#,
    );
    let mut watch = fleet.start("watch", &[]);
    for name in ["stops", "finishes"] {
        let started = fleet.out_file(&format!("{name}.started"));
        eventually(SOON, "both rounds to start", || started.exists().then_some(()));
    }
    watch.signal(Signal::SIGTERM);
    assert_eq!(watch.wait(SOON), 0, "{}", watch.stderr());
    let status = |name: &str| {
        let fleet = store.ok(&["status", "--json"]).json();
        let entry = fleet["loops"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["loop"] == name)
            .cloned()
            .unwrap();
        (
            entry["last_status"].as_str().unwrap_or_default().to_string(),
            entry["state"].as_str().unwrap_or_default().to_string(),
        )
    };
    assert_eq!(status("stops"), ("interrupted".to_string(), "stopped".to_string()));
    assert_eq!(status("finishes"), ("succeeded".to_string(), "stopped".to_string()));
    let log = store.ok(&["logs", "finishes", "--round", "1"]).stdout;
    assert!(log.contains("done"), "the finished round ran to its end: {log}");
}

// ---------------------------------------------------------------------------------------
// Reload: what an edit of arbiter.toml starts and stops.

const RELOAD_AGENT: &str = r#"echo "$1 $ARBITER_ROUND" >> "$OUT/$ARBITER_LOOP.out"
"#;

const SLOW_AGENT: &str = r#"echo "$ARBITER_ROUND" >> "$OUT/$ARBITER_LOOP.out"
exec sleep 60
"#;

/// A loop of the reload test: `COMMAND` every 200 ms.
fn reload_loop(name: &str, command: &str) -> String {
    format!(
        "[loops.{name}]\nrepo = \"repo\"\nevery = \"200ms\"\ncommand = {command}\ntimeout = \"2m\"\ngrace = \"1s\"\n\
         env = {{ OUT = \"@OUT@\" }}\n\n"
    )
}

const RELOAD_CHANNEL: &str = "[channels.alerts]\ntype = \"file\"\npath = \"@OUT@/alerts.jsonl\"\n";

/// `arbiter watch` runs loops `one` and `two` (whose round runs long). An edit removes
/// `two`, adds `three`, changes `one`'s command and adds a channel: `three` starts, `two`'s
/// round is stopped (`on_stop = "stop"`) and its lease released, `one` runs its new
/// command, the dispatcher takes its lease, and one line on stderr says all of it. A broken
/// edit (an unclosed table) is reported at its own line and changes nothing; removing the
/// channel stops the dispatcher.
fn a_reload_starts_and_stops_loops_and_the_dispatcher(store: &Store) {
    let fleet = Fleet::new(store);
    fleet.write("agent.sh", RELOAD_AGENT);
    fleet.write("slow.sh", SLOW_AGENT);
    let one = |arg: &str| reload_loop("one", &format!(r#"["sh", "../agent.sh", "{arg}"]"#));
    let two = reload_loop("two", r#"["sh", "../slow.sh"]"#);
    let three = reload_loop("three", r#"["sh", "../agent.sh", "v1"]"#);
    fleet.configure(&format!("{}{two}", one("v1")));
    let mut watch = fleet.start("watch", &[]);
    let lines_of = |name: &str| lines(&fleet.out_file(&format!("{name}.out")));
    let grows = |watch: &mut Background, name: &str, what: &str, check: &dyn Fn(&[String]) -> bool| {
        eventually(SOON, what, || {
            assert!(watch.running(), "arbiter watch exited: {}", watch.stderr());
            check(&lines_of(name)).then_some(())
        })
    };
    grows(&mut watch, "one", "loop one to run", &|l| !l.is_empty());
    grows(&mut watch, "two", "loop two's round to start", &|l| !l.is_empty());
    let reloads = |watch: &Background| -> Vec<String> {
        watch
            .stderr()
            .lines()
            .filter(|l| l.starts_with("arbiter: reloaded"))
            .map(str::to_string)
            .collect()
    };
    assert!(reloads(&watch).is_empty(), "{}", watch.stderr());

    let loops_v2 = format!("{}{three}", one("v2"));
    fleet.configure(&format!("{loops_v2}{RELOAD_CHANNEL}"));
    let config = fleet.config.display().to_string();
    eventually(SOON, "the reload to be reported", || {
        assert!(watch.running(), "arbiter watch exited: {}", watch.stderr());
        (!reloads(&watch).is_empty()).then_some(())
    });
    assert_eq!(
        reloads(&watch),
        [format!(
            "arbiter: reloaded {config}: loops +three -two ~one; dispatcher started"
        )],
        "{}",
        watch.stderr()
    );
    grows(&mut watch, "three", "the added loop to run", &|l| l.len() >= 2);
    grows(&mut watch, "one", "the changed loop to run its new command", &|l| {
        l.last().is_some_and(|l| l.starts_with("v2 "))
    });
    let two = eventually(SOON, "the removed loop to stop", || {
        assert!(watch.running(), "arbiter watch exited: {}", watch.stderr());
        fleet.status().remove("two").filter(|row| row["state"] == "stopped")
    });
    assert_eq!(two["last_status"], "interrupted", "{two}");
    assert_eq!(
        two["last_reason"], "the loop was removed from the configuration",
        "{two}"
    );
    assert_eq!(two["lease_expires_at"], Value::Null, "its lease is released: {two}");
    assert_eq!(lines_of("two"), ["1"], "the removed loop ran no other round");
    assert_eq!(fleet.rounds("two")[0].status, "interrupted");
    eventually(SOON, "the dispatcher to hold its lease", || {
        let holders = store.show("notify/dispatcher")["holders"].as_array().cloned();
        holders.is_some_and(|h| h.len() == 1).then_some(())
    });

    // A broken edit: reported at its line, and the running config stays.
    let broken = fleet.configure(&format!("{loops_v2}{RELOAD_CHANNEL}\n[loops.four\nrepo = \"repo\"\n"));
    let line = broken.lines().position(|l| l == "[loops.four").expect("the line") + 1;
    let expected = format!("{config}:{line}: `[loops.four`: unclosed table");
    eventually(SOON, "the broken edit to be reported", || {
        assert!(watch.running(), "arbiter watch exited: {}", watch.stderr());
        let stderr = watch.stderr();
        (stderr.contains(&expected) && stderr.contains("the old one keeps running")).then_some(())
    });
    let seen = lines_of("three").len();
    grows(&mut watch, "three", "the old config to keep running", &|l| {
        l.len() >= seen + 2
    });
    assert_eq!(
        reloads(&watch).len(),
        1,
        "a broken edit is no reload: {}",
        watch.stderr()
    );

    // Without channels, the dispatcher stops and releases its lease.
    fleet.configure(&loops_v2);
    eventually(SOON, "the second reload to be reported", || {
        assert!(watch.running(), "arbiter watch exited: {}", watch.stderr());
        (reloads(&watch).len() == 2).then_some(())
    });
    assert_eq!(
        reloads(&watch)[1],
        format!("arbiter: reloaded {config}: dispatcher stopped")
    );
    eventually(SOON, "the dispatcher to release its lease", || {
        let holders = store.show("notify/dispatcher")["holders"].as_array().cloned();
        holders.is_some_and(|h| h.is_empty()).then_some(())
    });
    watch.signal(Signal::SIGTERM);
    assert_eq!(watch.wait(SOON), 0, "{}", watch.stderr());
    assert_eq!(reloads(&watch).len(), 2, "{}", watch.stderr());
    let stderr = watch.stderr();
    let others: Vec<&str> = stderr
        .lines()
        .filter(|l| !l.starts_with("arbiter: reloaded") && !l.contains("the edited configuration is invalid"))
        .collect();
    assert!(others.is_empty(), "nothing else at the default level: {stderr}");
}

/// `arbiter logs LOOP --follow` started while a round runs prints its log as it grows and
/// ends when the round ends, with exactly the bytes `arbiter logs LOOP --round N` prints.
fn logs_follow_prints_a_running_round_to_its_end(store: &Store) {
    let fleet = Fleet::new(store);
    fleet.write(
        "agent.sh",
        r#"echo "start $ARBITER_ROUND"
i=0
while [ ! -e "$OUT/gate" ] && [ $i -lt 1200 ]; do sleep 0.05; i=$((i+1)); done
echo "end $ARBITER_ROUND"
"#,
    );
    fleet.configure(
        r#"
[loops.f]
repo = "repo"
every = "1h"
command = ["sh", "../agent.sh"]
timeout = "2m"
env = { OUT = "@OUT@" }
"#,
    );
    let mut watch = fleet.start("watch", &["--once"]);
    store.ok(&["status"]);
    let round = eventually(SOON, "round 1 to run", || {
        assert!(watch.running(), "arbiter watch exited: {}", watch.stderr());
        fleet
            .rounds("f")
            .into_iter()
            .find(|r| r.round == 1 && r.status == "running")
            .filter(|r| std::fs::read_to_string(&r.log_path).is_ok_and(|t| t.contains("start 1")))
    });
    let mut follow = Background::start(store.cmd(&["logs", "f", "--follow"]), &fleet.dir, "follow");
    eventually(SOON, "the running round's output", || {
        assert!(follow.running(), "logs --follow exited early: {}", follow.stderr());
        follow.stdout().contains("start 1").then_some(())
    });
    std::fs::write(fleet.out_file("gate"), "").expect("the gate");
    assert_eq!(follow.wait(SOON), 0, "{}", follow.stderr());
    assert_eq!(watch.wait(SOON), 0, "{}", watch.stderr());
    let whole = store.ok(&["logs", "f", "--round", "1"]).stdout;
    assert!(whole.contains("end 1"), "{whole}");
    assert_eq!(follow.stdout(), whole, "--follow printed the round's whole log");
    assert_eq!(std::fs::read_to_string(&round.log_path).expect("the log"), whole);
}

// ---------------------------------------------------------------------------------------
// Token sources that fail, and what their errors may carry.

/// Four profiles whose token cannot be had: a command that fails after printing the token
/// and a token-shaped string to stderr, a command that prints two lines, a command slower
/// than its `token_timeout`, and a `token_file` readable by others. Each round fails before
/// its agent starts with the reason in words; neither secret is in `status`, the round log,
/// the alert or the store file.
#[test]
fn token_errors_are_clear_and_never_carry_the_token() {
    let store = Store::sqlite();
    let fleet = Fleet::new(&store);
    let token_file = fleet.write("token.txt", "tok-FILE-CONTENT\n");
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let shaped = "ghp_abcdefghijklmnopqrstuvwxyz0123456789";
    let mut toml = format!(
        r#"
[channels.alerts]
type = "file"
path = "alerts.jsonl"

[[routes]]
kinds = ["loop.*"]
channels = ["alerts"]

[profiles.leaky]
gh_config_dir = "gh/leaky"
token_command = ["sh", "-c", "echo tok-XYZsecret; echo 'refused tok-XYZsecret and {shaped} at https://u:pw@example.com/x?k=v' >&2; exit 1"]

[profiles.lines]
gh_config_dir = "gh/lines"
token_command = ["sh", "-c", "printf 'tok-one\ntok-two\n'"]

[profiles.slow]
gh_config_dir = "gh/slow"
token_command = ["sleep", "30"]
token_timeout = "300ms"

[profiles.shared]
gh_config_dir = "gh/shared"
token_file = "token.txt"
"#
    );
    for name in ["leaky", "lines", "slow", "shared"] {
        toml.push_str(&format!(
            "\n[loops.{name}]\nrepo = \"repo\"\nevery = \"1m\"\ncommand = [\"sh\", \"-c\", \"echo ran > $OUT/{name}.ran\"]\n\
             profile = \"{name}\"\ntimeout = \"1m\"\nenv = {{ OUT = \"@OUT@\" }}\n"
        ));
    }
    fleet.configure(&toml);
    let (code, stderr) = fleet.run_watch("watch", &["--rounds", "1"]);
    assert_eq!(code, 7, "every round failed: {stderr}");
    let expected = [
        (
            "leaky",
            "profile leaky: token command exited 1: refused *** and *** at https://***@example.com/…?…",
        ),
        (
            "lines",
            "profile lines: the token must be one line without control characters; it has 2 line(s)",
        ),
        (
            "slow",
            "profile slow: token command timed out after 300ms (token_timeout)",
        ),
        (
            "shared",
            &format!(
                "profile shared: token_file {} is readable by its group or others (mode 0644); run: chmod 600 {}",
                token_file.display(),
                token_file.display()
            ),
        ),
    ];
    let status = fleet.status();
    for (name, reason) in expected {
        let rounds = fleet.rounds(name);
        assert_eq!(rounds.len(), 1, "{name}: {rounds:?} {stderr}");
        assert_eq!(
            (rounds[0].status.as_str(), rounds[0].reason.as_str()),
            ("failed", reason)
        );
        assert!(
            !fleet.out_file(&format!("{name}.ran")).exists(),
            "{name}'s agent never ran"
        );
        assert_eq!(status[name]["last_reason"].as_str(), Some(reason), "{}", status[name]);
        let log = std::fs::read_to_string(&rounds[0].log_path).expect("a round log");
        assert!(log.contains(reason), "{log}");
    }
    let alerts = std::fs::read_to_string(fleet.dir.join("alerts.jsonl")).expect("the alerts file");
    assert!(alerts.contains("token command exited 1"), "{alerts}");
    let mut everything = alerts.into_bytes();
    everything.extend(stderr.into_bytes());
    everything.extend(store.ok(&["status", "--json"]).stdout.into_bytes());
    for suffix in ["", "-wal"] {
        let mut name = store.sqlite_path().unwrap().as_os_str().to_owned();
        name.push(suffix);
        everything.extend(std::fs::read(&name).unwrap_or_default());
    }
    for round in ["leaky", "lines", "slow", "shared"]
        .iter()
        .flat_map(|n| fleet.rounds(n))
    {
        everything.extend(std::fs::read(&round.log_path).unwrap());
    }
    for secret in ["tok-XYZsecret", shaped, "tok-one", "tok-FILE-CONTENT", "u:pw"] {
        assert!(
            !contains(&everything, secret.as_bytes()),
            "{secret} was shown or stored"
        );
    }
}

/// Round logs are private: the loop's log directory and its `prompts` 0700, each log 0600.
/// Links planted where the supervisor writes are refused, and what they point to is left
/// alone: a round log linked to another file (never written), a `prompts` directory linked
/// to another directory (never chmod-ed, its files never deleted).
#[test]
fn round_logs_are_private_and_planted_links_are_refused() {
    let store = Store::sqlite();
    let fleet = Fleet::new(&store);
    let mut toml = String::new();
    for name in ["plain", "logged", "prompted"] {
        toml.push_str(&format!(
            "\n[loops.{name}]\nrepo = \"repo\"\nevery = \"1m\"\ncommand = [\"sh\", \"-c\", \"echo agent output\"]\n\
             prompt = \"prompt.md\"\nprompt_stdin = true\ntimeout = \"1m\"\n"
        ));
    }
    fleet.write("prompt.md", "hello {{loop}}");
    fleet.configure(&toml);
    let loop_dir = |name: &str| fleet.logs.join("default").join(name);
    // The victims: a file and a directory of someone else's, reachable through links.
    let victim = fleet.write("victim/file.txt", "untouched\n");
    let victim_dir = fleet.dir.join("victim");
    let planted_prompt = fleet.write("victim/arbiter-prompt-prompted-old.md", "keep me");
    std::fs::set_permissions(&victim_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::create_dir_all(loop_dir("logged")).unwrap();
    std::os::unix::fs::symlink(&victim, loop_dir("logged").join("1.log")).unwrap();
    std::fs::create_dir_all(loop_dir("prompted")).unwrap();
    std::os::unix::fs::symlink(&victim_dir, loop_dir("prompted").join("prompts")).unwrap();

    let (code, stderr) = fleet.run_watch("watch", &["--rounds", "1"]);
    assert_eq!(code, 7, "two loops' rounds failed: {stderr}");
    assert!(stderr.contains("loop logged: round 1 failed: refusing"), "{stderr}");
    let plain = fleet.rounds("plain");
    assert_eq!(plain.len(), 1, "{stderr}");
    assert_eq!(plain[0].status, "succeeded", "{plain:?}");
    assert_eq!(mode(&loop_dir("plain")), 0o700);
    assert_eq!(mode(&loop_dir("plain").join("prompts")), 0o700);
    assert_eq!(mode(&fleet.logs.join("default")), 0o700);
    assert_eq!(mode(Path::new(&plain[0].log_path)), 0o600);
    assert!(
        std::fs::read_to_string(&plain[0].log_path)
            .unwrap()
            .contains("agent output")
    );

    let logged = fleet.rounds("logged");
    assert_eq!(logged.len(), 1, "{stderr}");
    assert_eq!(logged[0].status, "failed", "{logged:?}");
    assert!(logged[0].reason.contains("it is a symbolic link"), "{logged:?}");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "untouched\n");

    let prompted = fleet.rounds("prompted");
    assert_eq!(prompted.len(), 1, "{stderr}");
    assert_eq!(prompted[0].status, "failed", "{prompted:?}");
    assert!(prompted[0].reason.contains("it is a symbolic link"), "{prompted:?}");
    assert_eq!(mode(&victim_dir), 0o755, "the linked directory was not chmod-ed");
    assert!(planted_prompt.exists(), "nothing was deleted through the link");
}

// ---------------------------------------------------------------------------------------
// GitHub through the supervisor's proxy, against the fake GitHub (`arbiter-fake-github`).

/// A fake GitHub on loopback, served by a runtime of the test's own; user `bot` has token
/// `ghp_bot`, and `octo/hello` has the seed's issues.
pub(crate) struct FakeHub {
    runtime: tokio::runtime::Runtime,
    fake: Option<arbiter_fake_github::FakeGitHub>,
}

impl FakeHub {
    pub(crate) fn start(limits: arbiter_fake_github::Limits) -> FakeHub {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a runtime for the fake GitHub");
        let config = arbiter_fake_github::Config {
            users: vec![arbiter_fake_github::User::new("bot", 1, &["ghp_bot"])],
            limits,
            ..arbiter_fake_github::Config::default()
        };
        let fake = runtime
            .block_on(arbiter_fake_github::FakeGitHub::start(config))
            .expect("the fake GitHub starts");
        FakeHub {
            runtime,
            fake: Some(fake),
        }
    }

    pub(crate) fn url(&self) -> String {
        self.fake.as_ref().expect("running").url()
    }

    /// The running fake, to play the people on github.com (open, close, read issues).
    pub(crate) fn fake(&self) -> &arbiter_fake_github::FakeGitHub {
        self.fake.as_ref().expect("running")
    }

    fn stats(&self) -> arbiter_fake_github::Stats {
        self.fake.as_ref().expect("running").stats()
    }

    /// Store work of the test's own (what no CLI command does, like a freeze).
    fn block_on<F: std::future::Future>(&self, future: F) -> F::Output {
        self.runtime.block_on(future)
    }
}

impl Drop for FakeHub {
    fn drop(&mut self) {
        if let Some(fake) = self.fake.take() {
            self.runtime.block_on(fake.shutdown());
        }
    }
}

/// `gh` where the tests can use it: Debian's, installed by `.ci/run`. Outside CI its
/// absence skips the test, loudly.
fn real_gh() -> Option<PathBuf> {
    let gh = PathBuf::from("/usr/bin/gh");
    if gh.exists() {
        return Some(gh);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "/usr/bin/gh is missing under CI: .ci/run installs Debian's gh"
    );
    eprintln!("SKIPPED: /usr/bin/gh is not installed (apt-get install gh); the test needs the real gh");
    None
}

/// A loop whose `gh` calls and `ARBITER_GITHUB_API` calls go through the proxy.
const GITHUB_AGENT: &str = r#"
cp "$GH_CONFIG_DIR/config.yml" "$OUT/config-$ARBITER_ROUND.yml" 2>/dev/null
gh issue list -R octo/hello -L "${ISSUES:-30}" > "$OUT/gh-$ARBITER_ROUND.txt" 2> "$OUT/gh-$ARBITER_ROUND.err"
echo $? > "$OUT/gh-$ARBITER_ROUND.code"
if [ -n "$ARBITER_GITHUB_API" ]; then
  curl -sS -H "Authorization: token $GH_TOKEN" "$ARBITER_GITHUB_API/repos/octo/hello/issues/1" > "$OUT/curl-$ARBITER_ROUND.json"
  echo "$ARBITER_GITHUB_API" > "$OUT/api-$ARBITER_ROUND"
fi
exit 0
"#;

fn github_config(upstream: &str, loop_extra: &str, github_extra: &str) -> String {
    format!(
        r#"
[github]
upstream = "{upstream}"
{github_extra}

[profiles.bot]
gh_config_dir = "gh/bot"
token_env = "TEST_BOT_TOKEN"
github_proxy = true

[loops.agent]
repo = "repo"
every = "1h"
command = ["sh", "../agent.sh"]
profile = "bot"
timeout = "1m"
env = {{ OUT = "@OUT@" }}
{loop_extra}
"#
    )
}

/// An opted-in loop's round runs the real `gh issue list` through its socket and `curl`
/// through `ARBITER_GITHUB_API`, both answered by the fake GitHub behind the proxy; the
/// round records the calls it made upstream and as whom; `gh`'s config keeps its other
/// keys, and loses the socket when the supervisor exits and when the loop opts out.
fn an_opted_in_loop_reaches_github_through_the_proxy(store: &Store) {
    let Some(_gh) = real_gh() else { return };
    let hub = FakeHub::start(arbiter_fake_github::Limits::default());
    let fleet = Fleet::new(store);
    fleet.write("agent.sh", GITHUB_AGENT);
    fleet.write(
        "gh/bot/config.yml",
        "# mine\ngit_protocol: ssh\naliases:\n    co: pr checkout\n",
    );
    fleet.configure(&github_config(&hub.url(), "", ""));
    let mut cmd = fleet.watch(&["--once"]);
    cmd.env("TEST_BOT_TOKEN", "ghp_bot");
    let mut watch = Background::start(cmd, &fleet.dir, "watch");
    assert_eq!(watch.wait(SOON), 0, "{}", watch.stderr());

    let read = |name: &str| std::fs::read_to_string(fleet.out_file(name)).unwrap_or_default();
    assert_eq!(read("gh-1.code").trim(), "0", "gh failed: {}", read("gh-1.err"));
    assert!(
        !read("gh-1.txt").trim().is_empty(),
        "gh listed no issue: {}",
        read("gh-1.err")
    );
    let issue: Value = serde_json::from_str(&read("curl-1.json")).unwrap_or(Value::Null);
    assert_eq!(issue["number"], 1, "{issue}");
    assert!(read("api-1").starts_with("http://127.0.0.1:"), "{}", read("api-1"));
    // During the round gh's config named the loop's socket, its other keys kept; once
    // the supervisor exited (its proxy and sockets gone) the key went with them.
    let during = read("config-1.yml");
    assert!(
        during.starts_with("# mine\ngit_protocol: ssh\naliases:\n    co: pr checkout\nhttp_unix_socket: '/"),
        "{during}"
    );
    let config = std::fs::read_to_string(fleet.dir.join("gh/bot/config.yml")).expect("gh's config");
    assert_eq!(config, "# mine\ngit_protocol: ssh\naliases:\n    co: pr checkout\n");
    assert_eq!(mode(&fleet.dir.join("gh/bot/config.yml")), 0o600);
    // The fake saw the calls, as bot; the round recorded what went through its socket.
    assert!(
        hub.stats().user("bot").core_used + hub.stats().user("bot").graphql_used > 0,
        "{:?}",
        hub.stats()
    );
    let status = fleet.status();
    let agent = &status["agent"];
    assert!(
        agent["api_calls_per_round"].as_f64().is_some_and(|c| c >= 1.0),
        "{agent}"
    );
    assert_eq!(agent["github_logins"], serde_json::json!(["bot"]), "{agent}");
    assert_eq!(agent["last_status"], "succeeded", "{agent}");

    // Opted out: the key goes at the next round, the rest stays; no proxy, no variable.
    fleet.configure(&github_config(&hub.url(), "github_proxy = false", ""));
    let mut cmd = fleet.watch(&["--once"]);
    cmd.env("TEST_BOT_TOKEN", "ghp_bot");
    let mut watch = Background::start(cmd, &fleet.dir, "watch-2");
    assert_eq!(watch.wait(SOON), 0, "{}", watch.stderr());
    let config = std::fs::read_to_string(fleet.dir.join("gh/bot/config.yml")).expect("gh's config");
    assert_eq!(config, "# mine\ngit_protocol: ssh\naliases:\n    co: pr checkout\n");
    assert!(
        !fleet.out_file("api-2").exists(),
        "ARBITER_GITHUB_API was set without the proxy"
    );
}

/// A frozen identity (GitHub said wait) pauses its loop: no round starts, no failure is
/// counted or alerted, the loop shows `paused` until the freeze ends, and one notice says
/// so.
fn a_frozen_identity_pauses_the_loop_without_a_failure(store: &Store) {
    let Some(_gh) = real_gh() else { return };
    let hub = FakeHub::start(arbiter_fake_github::Limits::default());
    let fleet = Fleet::new(store);
    fleet.write("agent.sh", GITHUB_AGENT);
    let channel =
        "[channels.alerts]\ntype = \"file\"\npath = \"@OUT@/alerts.jsonl\"\n\n[[routes]]\nchannels = [\"alerts\"]\n";
    fleet.configure(&format!(
        "{channel}{}",
        github_config(&hub.url(), "", "").replace("every = \"1h\"", "every = \"200ms\"")
    ));
    let mut cmd = fleet.watch(&[]);
    cmd.env("TEST_BOT_TOKEN", "ghp_bot");
    let mut watch = Background::start(cmd, &fleet.dir, "watch");
    // A first round learns the loop's identity.
    eventually(SOON, "a first round through the proxy", || {
        assert!(watch.running(), "watch exited: {}", watch.stderr());
        fleet
            .status()
            .get("agent")
            .filter(|a| a["github_logins"] == serde_json::json!(["bot"]))
            .cloned()
    });
    // GitHub says wait for ten minutes: the identity's core budget is frozen fleet-wide.
    observe(
        &hub,
        store,
        "bot",
        arbiter_core::limit::Observation {
            limit: Some(5000),
            remaining: Some(0),
            reset_at: None,
            retry_after: Some(std::time::Duration::from_secs(600)),
            hit: true,
        },
    );
    let paused = eventually(SOON, "the loop to show as paused", || {
        assert!(watch.running(), "watch exited: {}", watch.stderr());
        fleet.status().remove("agent").filter(|a| a["state"] == "paused")
    });
    let round = paused["round"].as_i64().expect("a round");
    assert_eq!(paused["consecutive_failures"], 0, "{paused}");
    // The next run is the freeze's end, ten minutes away, not a backoff.
    assert!(
        paused["next_run_in_ms"].as_i64().is_some_and(|ms| ms > 500_000),
        "{paused}"
    );
    let notice = eventually(SOON, "the pause notice", || {
        lines(&fleet.out_file("alerts.jsonl"))
            .iter()
            .map(|l| serde_json::from_str::<Value>(l).expect("an alert line"))
            .find(|a| a.to_string().contains("github.paused"))
    });
    assert!(notice.to_string().contains("paused until"), "{notice}");
    // Still paused a few wakes later: no round started, nothing failed.
    for _ in 0..3 {
        std::thread::sleep(std::time::Duration::from_millis(300));
        let agent = fleet.status().remove("agent").expect("the loop");
        assert_eq!(
            (agent["state"].as_str(), agent["round"].as_i64()),
            (Some("paused"), Some(round)),
            "{agent}"
        );
        assert_eq!(agent["consecutive_failures"], 0, "{agent}");
    }
    let alerts = std::fs::read_to_string(fleet.out_file("alerts.jsonl")).unwrap_or_default();
    assert!(!alerts.contains("loop.failure"), "a failure alert: {alerts}");
    let github = store.ok(&["status", "--json"]).json()["github"].clone();
    assert!(github.to_string().contains("\"frozen_until\":\""), "{github}");
    watch.signal(Signal::SIGTERM);
    assert_eq!(watch.wait(SOON), 0, "{}", watch.stderr());
}

/// What GitHub said about `github/<login>/core`, as the proxy tells the store (the bucket
/// defined as the proxy's first call through it would).
fn observe(hub: &FakeHub, store: &Store, login: &str, observation: arbiter_core::limit::Observation) {
    let ns = arbiter_core::name::Namespace::default();
    let bucket = arbiter_core::name::BucketName::parse(&format!("github/{login}/core")).expect("a bucket name");
    hub.block_on(async {
        let url = arbiter_store::StoreUrl::parse(&store.url).expect("the store URL");
        let opened = arbiter_store::Store::open(&url).await.expect("the store");
        let spec = arbiter_core::limit::BucketSpec::new(arbiter_core::limit::Rate::parse("5000/h").expect("a rate"));
        opened
            .limits()
            .define(&ns, &bucket, &spec, true)
            .await
            .expect("the bucket");
        opened
            .limits()
            .observe(&ns, &bucket, &observation)
            .await
            .expect("the observation");
    });
}

/// A primary limit hit on `github/<login>/core`: nothing remaining until GitHub's reset,
/// `for_secs` from now (the bucket is frozen until then).
fn primary_hit(hub: &FakeHub, store: &Store, login: &str, for_secs: u64) {
    let now = std::time::SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock");
    let observation = arbiter_core::limit::Observation {
        limit: Some(5000),
        remaining: Some(0),
        reset_at: Some((now.as_millis() + u128::from(for_secs) * 1000) as i64),
        retry_after: None,
        hit: true,
    };
    observe(hub, store, login, observation);
}

/// The messages the file channel wrote: (type, dedupe key, fold count), each once (a
/// message a stopped dispatcher had not recorded as delivered is sent again, with its id:
/// receivers drop the duplicate, and so does this).
fn alerts(path: &Path) -> Vec<(String, String, i64)> {
    let mut ids = BTreeSet::new();
    lines(path)
        .iter()
        .map(|l| serde_json::from_str::<Value>(l).expect("an alert line"))
        .filter(|a| ids.insert(a["id"].to_string()))
        .map(|a| {
            (
                a["type"].as_str().unwrap_or_default().to_string(),
                a["notification"]["dedupe_key"].as_str().unwrap_or_default().to_string(),
                a["fold"]["count"].as_i64().unwrap_or_default(),
            )
        })
        .collect()
}

/// A pause that outlasts its supervisor (stopped during the freeze) is resolved by the
/// next one when the loop runs again: the notice does not stay open forever because the
/// supervisor that sent it is gone. And the loop runs at GitHub's reset, not deferred
/// because the bucket still counts the old window as empty.
fn a_pause_outlasting_its_supervisor_is_resolved_by_the_next(store: &Store) {
    let hub = FakeHub::start(arbiter_fake_github::Limits::default());
    let fleet = Fleet::new(store);
    // No gh needed: the loop's identity is learnt from curl through its own socket.
    fleet.write(
        "agent.sh",
        "curl -sS --unix-socket \"$ARBITER_GITHUB_SOCKET\" -H \"Authorization: token $GH_TOKEN\" \
         http://api.github.com/user > \"$OUT/user-$ARBITER_ROUND.json\"\nexit 0\n",
    );
    let channel =
        "[channels.alerts]\ntype = \"file\"\npath = \"@OUT@/alerts.jsonl\"\n\n[[routes]]\nchannels = [\"alerts\"]\n";
    fleet.configure(&format!(
        "{channel}{}",
        github_config(&hub.url(), "", "").replace("every = \"1h\"", "every = \"200ms\"")
    ));
    let start = |label: &str| {
        let mut cmd = fleet.watch(&[]);
        cmd.env("TEST_BOT_TOKEN", "ghp_bot");
        Background::start(cmd, &fleet.dir, label)
    };
    let mut first = start("watch-1");
    eventually(SOON, "a first round through the proxy", || {
        assert!(first.running(), "watch exited: {}", first.stderr());
        fleet
            .status()
            .get("agent")
            .filter(|a| a["github_logins"] == serde_json::json!(["bot"]))
            .cloned()
    });
    primary_hit(&hub, store, "bot", 15);
    let file = fleet.out_file("alerts.jsonl");
    eventually(SOON, "the pause notice", || {
        alerts(&file)
            .iter()
            .any(|(kind, key, _)| kind == "alert" && key == "github/bot/paused")
            .then_some(())
    });
    // The supervisor that sent it stops during the freeze.
    first.signal(Signal::SIGTERM);
    assert_eq!(first.wait(SOON), 0, "{}", first.stderr());
    eventually(SOON, "the freeze to end", || {
        let github = store.ok(&["status", "--json"]).json()["github"].clone();
        github[0]["paused_until"].is_null().then_some(())
    });
    // The next supervisor's loop runs, and its run resolves the notice.
    let mut second = start("watch-2");
    eventually(SOON, "the pause notice resolved", || {
        assert!(second.running(), "watch exited: {}", second.stderr());
        alerts(&file)
            .iter()
            .any(|(kind, key, _)| kind == "recovery" && key == "github/bot/paused")
            .then_some(())
    });
    let seen = alerts(&file);
    assert_eq!(
        seen.iter().filter(|(_, key, _)| key == "github/bot/paused").count(),
        2,
        "one notice, one recovery: {seen:?}"
    );
    assert!(
        !seen.iter().any(|(_, key, _)| key.starts_with("loop/")),
        "a failure alert: {seen:?}"
    );
    second.signal(Signal::SIGTERM);
    assert_eq!(second.wait(SOON), 0, "{}", second.stderr());
}

/// Two loops share a profile's `GH_CONFIG_DIR`, one opting in and one out: a round of
/// the one that opts out, while the other's round runs, leaves the other's socket in
/// their `config.yml` (taking it away would send that round's `gh` to GitHub directly).
fn a_loop_opting_out_leaves_a_sibling_s_socket_in_their_shared_gh_config(store: &Store) {
    let hub = FakeHub::start(arbiter_fake_github::Limits::default());
    let fleet = Fleet::new(store);
    // `agent` (opted in): says its round runs, then waits (bounded) to be let go.
    fleet.write(
        "agent.sh",
        "cp \"$GH_CONFIG_DIR/config.yml\" \"$OUT/during.yml\"\ntouch \"$OUT/running\"\n\
         for i in $(seq 1 600); do [ -f \"$OUT/go\" ] && exit 0; sleep 0.1; done\nexit 1\n",
    );
    // `plain` (opted out): once `agent`'s round runs, copies the config its own round saw.
    fleet.write(
        "plain.sh",
        "[ -f \"$OUT/running\" ] && cp \"$GH_CONFIG_DIR/config.yml\" \"$OUT/plain.yml\"\nexit 0\n",
    );
    let mut toml = github_config(&hub.url(), "", "");
    toml.push_str(
        "\n[loops.plain]\nrepo = \"repo\"\nevery = \"100ms\"\ncommand = [\"sh\", \"../plain.sh\"]\nprofile = \"bot\"\n\
         timeout = \"1m\"\nenv = { OUT = \"@OUT@\" }\ngithub_proxy = false\n",
    );
    fleet.configure(&toml);
    let mut cmd = fleet.watch(&[]);
    cmd.env("TEST_BOT_TOKEN", "ghp_bot");
    let mut watch = Background::start(cmd, &fleet.dir, "watch");
    let seen = eventually(SOON, "a round of plain during agent's round", || {
        assert!(watch.running(), "watch exited: {}", watch.stderr());
        std::fs::read_to_string(fleet.out_file("plain.yml")).ok()
    });
    let during = std::fs::read_to_string(fleet.out_file("during.yml")).expect("agent's config");
    assert!(during.starts_with("http_unix_socket: '/"), "{during}");
    assert_eq!(seen, during, "plain's round took agent's socket away");
    let config = std::fs::read_to_string(fleet.dir.join("gh/bot/config.yml")).expect("the shared config");
    assert_eq!(config, during);
    std::fs::write(fleet.out_file("go"), "").expect("the go file");
    watch.signal(Signal::SIGTERM);
    assert_eq!(watch.wait(SOON), 0, "{}", watch.stderr());
}

/// Two loops on one identity with a tiny budget: once what is left, less the reserve,
/// would not cover a round, the lower-priority loop is deferred (not failed) while the
/// higher-priority one keeps running on the reserve the lower one leaves.
///
/// What is asserted is recorded, not caught in passing: the supervisor's own line saying it
/// deferred the loop (with until when), and the round records of both loops in the store.
/// A poll of `status` for the moment the low loop shows `deferred` could miss it under
/// load; the log line and the rounds cannot.
fn a_tiny_budget_defers_the_lower_priority_loop(store: &Store) {
    let Some(_gh) = real_gh() else { return };
    // GitHub gives bot 40 REST calls and 40 GraphQL points an hour: the proxy learns it
    // from the answers' headers.
    let hub = FakeHub::start(arbiter_fake_github::Limits {
        core: 40,
        graphql: 40,
        ..arbiter_fake_github::Limits::default()
    });
    let fleet = Fleet::new(store);
    fleet.write("agent.sh", GITHUB_AGENT);
    // Every round's `gh issue list` is a GraphQL call upstream (no freshness window).
    let mut toml = github_config(&hub.url(), "priority = 0", "reserve = \"50%\"\ngraphql_fresh = \"0s\"")
        .replace("every = \"1h\"", "every = \"200ms\"");
    toml.push_str(
        "\n[loops.urgent]\nrepo = \"repo\"\nevery = \"200ms\"\ncommand = [\"sh\", \"../agent.sh\"]\nprofile = \"bot\"\n\
         timeout = \"1m\"\nenv = { OUT = \"@OUT@/urgent\", ISSUES = \"5\" }\npriority = 10\n",
    );
    std::fs::create_dir_all(fleet.out.join("urgent")).expect("the urgent loop's output dir");
    fleet.configure(&toml);
    let mut cmd = fleet.watch(&[]);
    // The supervisor's deferral line (info) is the record this test reads.
    cmd.env("TEST_BOT_TOKEN", "ghp_bot")
        .env("ARBITER_LOG", "warn,arbiter_supervisor=info")
        .env("NO_COLOR", "1");
    let mut watch = Background::start(cmd, &fleet.dir, "watch");
    // Its own query (not coalesced with the other loop's): each round costs a call.
    let deferral = eventually(SOON, "the supervisor to defer the low loop", || {
        assert!(watch.running(), "watch exited: {}", watch.stderr());
        deferrals(&watch.stderr(), "agent").into_iter().next()
    });
    let low = fleet.rounds("agent");
    let last_low = low.last().expect("the low loop ran before its budget ran short");
    assert!(
        low.iter().all(|r| r.status == "succeeded"),
        "deferred, never failed: {low:?}"
    );
    // Deferred until the bucket would hold its round (at 40 an hour: a minute or more
    // past its last round).
    let ended = last_low.ended_at.expect("the low loop's last round ended");
    assert!(deferral.until > ended + 10_000, "{deferral:?} after {last_low:?}");
    // The urgent loop runs three more rounds after it; the low one none, and fails nothing.
    let urgent_then = fleet.rounds("urgent").len() as i64;
    for n in urgent_then + 1..=urgent_then + 3 {
        let round = fleet.ended("urgent", n, &mut watch);
        assert_eq!(round.status, "succeeded", "{round:?}");
    }
    let low_now = fleet.rounds("agent");
    assert_eq!(
        low_now.iter().map(|r| r.round).collect::<Vec<_>>(),
        low.iter().map(|r| r.round).collect::<Vec<_>>(),
        "no round of the deferred loop while the urgent one ran"
    );
    let status = fleet.status();
    let low_status = status.get("agent").expect("the low loop");
    assert_eq!(low_status["consecutive_failures"], 0, "{low_status}");
    assert_eq!(low_status["last_status"], "succeeded", "{low_status}");
    assert_eq!(status["urgent"]["consecutive_failures"], 0, "{}", status["urgent"]);
    watch.signal(Signal::SIGTERM);
    assert_eq!(watch.wait(SOON), 0, "{}", watch.stderr());
}

/// A "deferred" line of the supervisor's log.
#[derive(Debug)]
struct Deferral {
    until: i64,
}

/// The supervisor's "deferred: the budget left would not cover a round" lines about loop
/// `name`, in order.
fn deferrals(log: &str, name: &str) -> Vec<Deferral> {
    log.lines()
        .filter(|line| line.contains("deferred: the budget left would not cover a round"))
        .filter(|line| line.split_whitespace().any(|w| w == format!("loop_name={name}")))
        .map(|line| Deferral {
            until: line
                .split_whitespace()
                .find_map(|w| w.strip_prefix("until="))
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("a deferral says until when: {line}")),
        })
        .collect()
}

/// The proxy runs while a loop opts in: a reload that opts the loop in starts it (the next
/// round goes through it), one that opts it out stops it, removes the loop's socket and,
/// at the next round, its gh config key; each says so on stderr.
fn a_reload_starts_and_stops_the_github_proxy(store: &Store) {
    let hub = FakeHub::start(arbiter_fake_github::Limits::default());
    let fleet = Fleet::new(store);
    // No gh needed: what is checked is the key gh would read and the variable.
    fleet.write(
        "agent.sh",
        "printf '%s\\n' \"${ARBITER_GITHUB_API:-none}\" > \"$OUT/api-$ARBITER_ROUND\"\n\
         cp \"$GH_CONFIG_DIR/config.yml\" \"$OUT/config-$ARBITER_ROUND.yml\" 2>/dev/null\nexit 0\n",
    );
    let off = github_config(&hub.url(), "github_proxy = false", "").replace("every = \"1h\"", "every = \"100ms\"");
    fleet.configure(&off);
    let mut cmd = fleet.watch(&[]);
    cmd.env("TEST_BOT_TOKEN", "ghp_bot");
    let mut watch = Background::start(cmd, &fleet.dir, "watch");
    let plain = round_with(&fleet, &mut watch, "a round without the proxy", 0, &|api| api == "none");
    let on = off.replace("github_proxy = false", "github_proxy = true");
    fleet.configure(&on);
    let proxied = round_with(&fleet, &mut watch, "a round through the proxy", plain, &|api| {
        api.starts_with("http://127.0.0.1:")
    });
    let config = std::fs::read_to_string(fleet.out_file(&format!("config-{proxied}.yml"))).unwrap_or_default();
    let socket = config
        .strip_prefix("http_unix_socket: '")
        .and_then(|rest| rest.strip_suffix("'\n"))
        .map(PathBuf::from)
        .unwrap_or_else(|| panic!("the socket key in {config:?}"));
    assert!(socket.exists(), "{}", socket.display());
    fleet.configure(&off);
    round_with(&fleet, &mut watch, "a round after the proxy stopped", proxied, &|api| {
        api == "none"
    });
    let config = std::fs::read_to_string(fleet.dir.join("gh/bot/config.yml")).unwrap_or_default();
    assert!(!config.contains("http_unix_socket"), "{config}");
    eventually(SOON, "the loop's socket to go", || (!socket.exists()).then_some(()));
    let stderr = watch.stderr();
    assert!(stderr.contains("GitHub proxy started"), "{stderr}");
    assert!(stderr.contains("GitHub proxy stopped"), "{stderr}");
    watch.signal(Signal::SIGTERM);
    assert_eq!(watch.wait(SOON), 0, "{}", watch.stderr());
}

/// A reload that opts a loop in while the proxy's `listen` address is taken: the error
/// is printed, and the loop keeps running its rounds (without the proxy, each round
/// warning so) instead of waiting for an edit.
fn a_proxy_that_cannot_start_on_a_reload_leaves_the_loops_running(store: &Store) {
    let hub = FakeHub::start(arbiter_fake_github::Limits::default());
    let fleet = Fleet::new(store);
    fleet.write(
        "agent.sh",
        "printf '%s\\n' \"${ARBITER_GITHUB_API:-none}\" > \"$OUT/api-$ARBITER_ROUND\"\nexit 0\n",
    );
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    let port = taken.local_addr().expect("its address").port();
    let off = github_config(
        &hub.url(),
        "github_proxy = false",
        &format!("listen = \"127.0.0.1:{port}\""),
    )
    .replace("every = \"1h\"", "every = \"100ms\"");
    fleet.configure(&off);
    let mut cmd = fleet.watch(&[]);
    cmd.env("TEST_BOT_TOKEN", "ghp_bot");
    let mut watch = Background::start(cmd, &fleet.dir, "watch");
    let before = round_with(&fleet, &mut watch, "a round without the proxy", 0, &|api| api == "none");
    fleet.configure(&off.replace("github_proxy = false", "github_proxy = true"));
    eventually(SOON, "the proxy's error", || {
        watch
            .stderr()
            .contains("arbiter: the GitHub proxy: [github] listen")
            .then_some(())
    });
    // Rounds go on, without it.
    let after = round_with(
        &fleet,
        &mut watch,
        "a round after the failed start",
        before + 2,
        &|api| api == "none",
    );
    assert!(after > before + 2);
    eventually(SOON, "the warning of a round without the proxy", || {
        watch.stderr().contains("no GitHub proxy runs").then_some(())
    });
    let agent = fleet.status().remove("agent").expect("the loop");
    assert_eq!(agent["consecutive_failures"], 0, "{agent}");
    drop(taken);
    watch.signal(Signal::SIGTERM);
    assert_eq!(watch.wait(SOON), 0, "{}", watch.stderr());
}

/// A reload opts one of two loops out while the other keeps the proxy running: the next
/// round of the one opted out runs with no socket in its gh config (its own socket is
/// still served, but it is not a sibling's to keep).
fn a_loop_opted_out_by_a_reload_loses_its_key_while_the_proxy_runs_on(store: &Store) {
    let hub = FakeHub::start(arbiter_fake_github::Limits::default());
    let fleet = Fleet::new(store);
    fleet.write(
        "agent.sh",
        "printf '%s\\n' \"${ARBITER_GITHUB_API:-none}\" > \"$OUT/api-$ARBITER_ROUND\"\n\
         cp \"$GH_CONFIG_DIR/config.yml\" \"$OUT/config-$ARBITER_ROUND.yml\" 2>/dev/null\nexit 0\n",
    );
    let keeper = "\n[loops.keeper]\nrepo = \"repo\"\nevery = \"1h\"\ncommand = [\"true\"]\ngithub_proxy = true\n";
    let on = github_config(&hub.url(), "", "").replace("every = \"1h\"", "every = \"100ms\"") + keeper;
    fleet.configure(&on);
    let mut cmd = fleet.watch(&[]);
    cmd.env("TEST_BOT_TOKEN", "ghp_bot");
    let mut watch = Background::start(cmd, &fleet.dir, "watch");
    let proxied = round_with(&fleet, &mut watch, "a round through the proxy", 0, &|api| {
        api.starts_with("http://127.0.0.1:")
    });
    let during = std::fs::read_to_string(fleet.out_file(&format!("config-{proxied}.yml"))).unwrap_or_default();
    assert!(during.starts_with("http_unix_socket: '/"), "{during}");
    fleet.configure(&on.replacen("github_proxy = true", "github_proxy = false", 1));
    let plain = round_with(&fleet, &mut watch, "a round opted out", proxied, &|api| api == "none");
    let config = std::fs::read_to_string(fleet.out_file(&format!("config-{plain}.yml"))).unwrap_or_default();
    assert!(
        !config.contains("http_unix_socket"),
        "round {plain} still had the socket: {config}"
    );
    // The proxy still runs for the other loop.
    assert!(!watch.stderr().contains("GitHub proxy stopped"), "{}", watch.stderr());
    watch.signal(Signal::SIGTERM);
    assert_eq!(watch.wait(SOON), 0, "{}", watch.stderr());
}

/// An ended round of loop `agent` after round `after` whose `ARBITER_GITHUB_API` (as its
/// agent wrote it) is `wanted`.
fn round_with(fleet: &Fleet<'_>, watch: &mut Background, what: &str, after: i64, wanted: &dyn Fn(&str) -> bool) -> i64 {
    eventually(SOON, what, || {
        assert!(watch.running(), "arbiter watch exited: {}", watch.stderr());
        let status = fleet.status();
        let round = status.get("agent")?["round"].as_i64()?;
        // A round that has ended: any before the current one.
        (after + 1..round)
            .find(|r| std::fs::read_to_string(fleet.out_file(&format!("api-{r}"))).is_ok_and(|api| wanted(api.trim())))
    })
}
