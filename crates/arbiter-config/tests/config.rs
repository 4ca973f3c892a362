//! arbiter.toml: what loads, and the precise error for each thing that does not.

use std::path::Path;

use arbiter_config::{ChannelType, Config, Target};
use arbiter_core::notify::{Notification, Severity};

fn parse(text: &str) -> Result<Config, String> {
    Config::parse(text, Path::new("arbiter.toml")).map_err(|e| e.message)
}

/// Checks that `text` fails with an error containing `expected`.
fn check_error(text: &str, expected: &str) {
    match parse(text) {
        Ok(_) => panic!("expected an error containing {expected:?}, but it loaded:\n{text}"),
        Err(message) => assert!(message.contains(expected), "expected {expected:?} in:\n{message}"),
    }
}

const GOOD: &str = r#"
[notifications]
thresholds = [1, 2, 5]
timeout = "2s"

[channels.ops]
type = "teams"
url = "https://example.invalid/webhook/abc"
name = "Ops"
rate = "2/s"

[channels.dev]
type = "slack"
url = "http://127.0.0.1:9/hook"

[channels.hooks]
type = "webhook"
url = "http://127.0.0.1:9/hook"
secret = "s3cret"

[channels.log]
type = "file"
path = "/tmp/alerts.jsonl"

[channels.console]
type = "stdout"

[[routes]]
kinds = ["security.*"]
channels = ["ops", "hooks"]
continue = true

[[routes]]
kinds = ["loop.*"]
min_severity = "warning"
tags = { repo = "web" }
channels = ["dev"]

[[routes]]
kinds = ["news"]
channels = ["log"]
digest = "1h"

[[routes]]
channels = ["console"]
"#;

fn notification(kind: &str, severity: Severity, tags: &[(&str, &str)]) -> Notification {
    Notification {
        kind: kind.into(),
        severity,
        source: "test".into(),
        title: "t".into(),
        body: String::new(),
        tags: tags.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        dedupe_key: None,
    }
}

#[test]
fn a_good_config_loads() {
    let config = parse(GOOD).unwrap();
    assert_eq!(config.notifications.thresholds, [1, 2, 5]);
    assert_eq!(config.notifications.timeout, std::time::Duration::from_secs(2));
    assert_eq!(config.channels.len(), 5);
    let ops = config.channel_by_id("ops").unwrap();
    assert_eq!((ops.kind, ops.name.as_deref()), (ChannelType::Teams, Some("Ops")));
    assert_eq!(ops.rate.unwrap().interval(), std::time::Duration::from_millis(500));
    assert_eq!(
        config.channel_by_id("log").unwrap().target,
        Target::File("/tmp/alerts.jsonl".into())
    );
    assert_eq!(config.channel_by_id("hooks").unwrap().secret.as_deref(), Some("s3cret"));
}

#[test]
fn routing_table() {
    let config = parse(GOOD).unwrap();
    let route = |kind: &str, severity: Severity, tags: &[(&str, &str)]| -> Vec<String> {
        config
            .route(&notification(kind, severity, tags))
            .into_iter()
            .map(|(c, _)| c)
            .collect()
    };
    // continue = true: the security route and then the next matching one (the default).
    assert_eq!(
        route("security.finding", Severity::Info, &[]),
        ["ops", "hooks", "console"]
    );
    // min_severity and tags must all match; otherwise the default route.
    assert_eq!(route("loop.failure", Severity::Warning, &[("repo", "web")]), ["dev"]);
    assert_eq!(
        route("loop.failure", Severity::Critical, &[("repo", "web"), ("x", "y")]),
        ["dev"]
    );
    assert_eq!(route("loop.failure", Severity::Info, &[("repo", "web")]), ["console"]);
    assert_eq!(
        route("loop.failure", Severity::Critical, &[("repo", "api")]),
        ["console"]
    );
    assert_eq!(route("news", Severity::Info, &[]), ["log"]);
    assert_eq!(
        config.route(&notification("news", Severity::Info, &[]))[0].1,
        Some(std::time::Duration::from_secs(3600))
    );
    assert_eq!(route("other", Severity::Info, &[]), ["console"]);
    // No routes at all: nowhere.
    assert!(
        parse("")
            .unwrap()
            .route(&notification("x", Severity::Critical, &[]))
            .is_empty()
    );
}

#[test]
fn errors_name_file_line_and_key() {
    check_error(
        "[channels.a]\ntype = \"pager\"\nurl = \"https://x\"\n",
        "arbiter.toml:2: channels.a.type: unknown channel type \"pager\"",
    );
    check_error(
        "[channels.a]\ntype = \"stdout\"\n\n[[routes]]\nchannels = [\"b\"]\n",
        "arbiter.toml:5: routes[0].channels: unknown channel id \"b\" (known: a)",
    );
    // Duplicate ids: TOML itself refuses the second table, at its line.
    check_error(
        "[channels.a]\ntype = \"stdout\"\n[channels.a]\ntype = \"stdout\"\n",
        "arbiter.toml:3:",
    );
    // A display name is never taken for an id; a shared one is called ambiguous.
    check_error(
        "[channels.a]\ntype = \"stdout\"\nname = \"Squad\"\n[channels.b]\ntype = \"stdout\"\nname = \"Squad\"\n\n[[routes]]\nchannels = [\"Squad\"]\n",
        "arbiter.toml:9: routes[0].channels: \"Squad\" is ambiguous: it is the display name of channels \"a\" and \"b\"",
    );
    check_error(
        "[channels.a]\ntype = \"stdout\"\nname = \"Ops\"\n\n[[routes]]\nchannels = [\"Ops\"]\n",
        "\"Ops\" is the display name of channel \"a\", not an id",
    );
    check_error(
        "[channels.a]\ntype = \"slack\"\nurl = \"ftp://x/y\"\n",
        "arbiter.toml:3: channels.a.url: invalid URL \"ftp://x/…\": expected http:// or https://",
    );
    check_error(
        "[channels.a]\ntype = \"slack\"\nurl = \"https://\"\n",
        "channels.a.url: invalid URL",
    );
    check_error(
        "[channels.a]\ntype = \"slack\"\n",
        "arbiter.toml:1: channels.a.url: a slack channel needs one of url, url_env or url_file",
    );
    check_error(
        "[channels.a]\ntype = \"slack\"\nurl_env = \"ARBITER_TEST_SURELY_UNSET\"\n",
        "channels.a.url_env: environment variable \"ARBITER_TEST_SURELY_UNSET\" is not set",
    );
    check_error(
        "[channels.a]\ntype = \"file\"\n",
        "channels.a.path: a file channel needs path",
    );
    check_error(
        "[channels.a]\ntype = \"slack\"\nurl = \"https://x/y\"\nrate = \"fast\"\n",
        "arbiter.toml:4: channels.a.rate: invalid rate \"fast\"",
    );
    check_error(
        "[channels.a]\ntype = \"slack\"\nurl = \"https://x/y\"\nsecret = \"k\"\n",
        "channels.a.secret: only webhook channels sign",
    );
    check_error(
        "[channels.a]\ntype = \"stdout\"\ncolour = 1\n",
        "arbiter.toml:3: channels.a.colour: unknown field `colour`",
    );
    check_error(
        "[channels.a]\ntype = \"stdout\"\n[[routes]]\nchannels = [\"a\"]\nmin_severity = \"fatal\"\n",
        "arbiter.toml:5: routes[0].min_severity: invalid severity \"fatal\"",
    );
    check_error(
        "[channels.a]\ntype = \"stdout\"\n[[routes]]\nchannels = [\"a\"]\ndigest = \"soon\"\n",
        "arbiter.toml:5: routes[0].digest: invalid duration \"soon\"",
    );
    check_error(
        "[channels.a]\ntype = \"stdout\"\n[[routes]]\nkinds = [\"Loop.*\"]\nchannels = [\"a\"]\n",
        "arbiter.toml:4: routes[0].kinds: invalid kind pattern \"Loop.*\"",
    );
    check_error(
        "[[routes]]\nchannels = []\n",
        "arbiter.toml:2: routes[0].channels: a route needs at least one channel id",
    );
    check_error(
        "[notifications]\nthresholds = [3, 1]\n",
        "arbiter.toml:2: notifications.thresholds: expected increasing counts starting at 1",
    );
    check_error(
        "[notifications]\ntimeout = \"5x\"\n",
        "arbiter.toml:2: notifications.timeout: invalid duration \"5x\"",
    );
    check_error("[channels.a\n", "arbiter.toml:1:");
    check_error("[watch]\n", "unknown field `watch`");
}

#[test]
fn files_and_the_default_location() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("arbiter.toml");
    std::fs::write(&path, "[channels.c]\ntype = \"stdout\"\n").unwrap();
    let config = Config::load(Some(&path)).unwrap();
    assert_eq!(config.path.as_deref(), Some(path.as_path()));
    let missing = Config::load(Some(&dir.path().join("nope.toml"))).unwrap_err();
    assert!(
        missing.message.contains("cannot read config file"),
        "{}",
        missing.message
    );
    // A channel secret given by file is read and trimmed; a URL by file likewise.
    let url_file = dir.path().join("url");
    std::fs::write(&url_file, "https://hooks.example.invalid/x\n").unwrap();
    let text = format!(
        "[channels.c]\ntype = \"discord\"\nurl_file = {:?}\n",
        url_file.display().to_string()
    );
    let config = parse(&text).unwrap();
    assert_eq!(
        config.channels[0].target,
        Target::Url("https://hooks.example.invalid/x".into())
    );
}

#[test]
fn loop_errors_name_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let prompt = dir.path().join("p.md");
    std::fs::write(&prompt, "hi {{loop}}").unwrap();
    let path = dir.path().join("arbiter.toml");
    let check = |text: &str, expected: &str| {
        std::fs::write(&path, text).unwrap();
        let err = Config::load(Some(&path)).unwrap_err().message;
        assert!(err.contains(expected), "expected {expected:?} in {err}");
        assert!(err.starts_with(&path.display().to_string()), "{err}");
    };
    let good = "[loops.x]\nrepo = \".\"\nevery = \"1m\"\ncommand = [\"agent\", \"{prompt_file}\"]\nprompt = \"p.md\"\n";
    std::fs::write(&path, good).unwrap();
    let config = Config::load(Some(&path)).unwrap();
    assert_eq!(config.loops[0].command, ["agent", "{prompt_file}"]);
    assert!(!config.loops[0].finish_on_stop);
    check(
        &format!("{good}on_stop = \"later\"\n"),
        ":6: loops.x.on_stop: invalid value \"later\"",
    );
    check(
        &good.replace(
            "command = [\"agent\", \"{prompt_file}\"]",
            "command = \"agent {prompt_file}\"",
        ),
        ":4: loops.x.command: a shell string is not allowed",
    );
    check(
        &format!("{good}profile = \"work\"\n"),
        ":6: loops.x.profile: unknown profile \"work\" (none are configured)",
    );
    check(
        &good.replace("\"1m\"", "\"1 minute\""),
        ":3: loops.x.every: invalid duration",
    );
    check(
        &good.replace("p.md", "missing.md"),
        ":5: loops.x.prompt: prompt template",
    );
    check(
        &good.replace("[\"agent\", \"{prompt_file}\"]", "[\"agent\"]"),
        "loops.x.command: the prompt reaches the command through a {prompt_file}",
    );
    std::fs::create_dir(dir.path().join("prompts")).unwrap();
    check(
        &good.replace("p.md", "prompts"),
        "prompts is a directory: expected a file",
    );
    // A wrong type names the key, not only its table.
    check(
        &good.replace("\"1m\"", "5"),
        ":3: loops.x.every: invalid type: integer `5`, expected a string",
    );
    check(
        &format!("{good}env = {{ A = 1 }}\n"),
        ":6: loops.x.env: invalid type: integer `1`",
    );
    // env: names a process environment can hold, values without NUL, checked at load.
    check(
        &format!("{good}env = {{ \"\" = \"x\" }}\n"),
        ":6: loops.x.env.\"\": invalid variable name \"\": expected a non-empty name without '=' or NUL",
    );
    check(
        &format!("{good}env = {{ \"A=B\" = \"x\" }}\n"),
        ":6: loops.x.env.\"A=B\": invalid variable name",
    );
    check(
        &format!("{good}\nenv = {{ OK = \"a\\u0000b\" }}\n"),
        ":7: loops.x.env.\"OK\": the value contains a NUL character",
    );
    check(
        &format!("{good}\n[profiles.p]\ngh_config_dir = \"gh\"\nenv = {{ \"\" = \"x\" }}\n"),
        ":9: profiles.p.env.\"\": invalid variable name",
    );
    check(
        &format!("{good}\n[profiles.p]\ngh_config_dir = \"gh\"\ntoken_timeout = \"soon\"\n"),
        ":9: profiles.p.token_timeout: invalid duration",
    );
}

/// A syntax error names its line and what is written there, never the table before it.
#[test]
fn syntax_errors_name_the_line_and_what_is_there() {
    check_error(
        "[loops.two]\nrepo = \".\"\nevery = \"1s\"\ncommand = [\"x\"]\n\n[loops.three\nrepo = \".\"\n",
        "arbiter.toml:6: `[loops.three`: unclosed table, expected `]`",
    );
    let err = parse("[loops.two]\nrepo = \".\"\n\n[loops.three\n").unwrap_err();
    assert!(!err.contains("loops.two"), "{err}");
    check_error(
        "[channels.a]\ntype = \"stdout\"\nname = \n",
        "arbiter.toml:3: `name =`: string values must be quoted",
    );
    check_error(
        "[channels.a]\ntype = \"stdout\"\n[channels.a]\ntype = \"stdout\"\n",
        "arbiter.toml:3: `[channels.a]`: duplicate key",
    );
}

/// `[github]` and `github_proxy`: defaults, the loop's setting over its profile's, and an
/// error naming file, line and key for each bad value.
#[test]
fn github_settings_and_their_errors() {
    use std::time::Duration;

    let defaults = parse("").unwrap().github;
    assert_eq!(defaults.upstream, "https://api.github.com");
    assert_eq!(defaults.listen.to_string(), "127.0.0.1:0");
    assert_eq!(defaults.graphql_fresh, Duration::from_secs(30));
    assert_eq!(defaults.graphql_max_age, Duration::from_secs(300));
    assert_eq!(defaults.graphql_view_max_age, Duration::from_secs(3600));
    assert_eq!(defaults.max_wait, Duration::from_secs(60));
    assert_eq!((defaults.concurrency, defaults.reserve_percent), (100, 10));

    let set = parse(
        "[github]\nupstream = \"http://127.0.0.1:8080/api/v3/\"\nlisten = \"[::1]:7000\"\n\
         graphql_fresh = \"0s\"\ngraphql_max_age = \"0\"\ngraphql_view_max_age = \"0s\"\nmax_wait = \"5s\"\nconcurrency = 4\nreserve = \"25%\"\n",
    )
    .unwrap()
    .github;
    assert_eq!(set.upstream, "http://127.0.0.1:8080/api/v3");
    assert_eq!(set.listen.to_string(), "[::1]:7000");
    assert_eq!(set.graphql_fresh, Duration::ZERO);
    assert_eq!(set.graphql_max_age, Duration::ZERO);
    assert_eq!(set.graphql_view_max_age, Duration::ZERO);
    assert_eq!(
        parse("[github]\ngraphql_max_age = \"10m\"\n")
            .unwrap()
            .github
            .graphql_max_age,
        Duration::from_secs(600)
    );
    assert_eq!(set.max_wait, Duration::from_secs(5));
    assert_eq!((set.concurrency, set.reserve_percent), (4, 25));
    assert_eq!(parse("[github]\nreserve = 0\n").unwrap().github.reserve_percent, 0);

    for (text, expected) in [
        (
            "[github]\nupstream = \"api.github.com\"\n",
            "arbiter.toml:2: github.upstream: invalid URL",
        ),
        (
            "[github]\nupstream = \"https://x/?a=1\"\n",
            "arbiter.toml:2: github.upstream: expected the API's base URL",
        ),
        (
            "[github]\nupstream = \"http://api.github.com:99999\"\n",
            "arbiter.toml:2: github.upstream: invalid URL \"http://api.github.com:99999\": invalid port number",
        ),
        (
            "[github]\nupstream = \"http://[::1\"\n",
            "arbiter.toml:2: github.upstream: invalid URL",
        ),
        (
            "[github]\n\nlisten = \"localhost\"\n",
            "arbiter.toml:3: github.listen: invalid address \"localhost\": expected IP:PORT",
        ),
        (
            "[github]\nlisten = \"0.0.0.0:80\"\n",
            "arbiter.toml:2: github.listen: 0.0.0.0:80 is not a loopback address",
        ),
        (
            "[github]\ngraphql_fresh = \"soon\"\n",
            "arbiter.toml:2: github.graphql_fresh: invalid duration",
        ),
        (
            "[github]\n\ngraphql_max_age = \"a while\"\n",
            "arbiter.toml:3: github.graphql_max_age: invalid duration",
        ),
        (
            "[github]\ngraphql_view_max_age = \"-1h\"\n",
            "arbiter.toml:2: github.graphql_view_max_age: invalid duration",
        ),
        (
            "[github]\nmax_wait = \"1 minute\"\n",
            "arbiter.toml:2: github.max_wait: invalid duration",
        ),
        (
            "[github]\nconcurrency = 0\n",
            "arbiter.toml:2: github.concurrency: expected 1 to 10000",
        ),
        (
            "[github]\nreserve = \"95%\"\n",
            "arbiter.toml:2: github.reserve: invalid share \"95%\": expected a percentage from 0% to 90%",
        ),
        (
            "[github]\nreserve = -1\n",
            "arbiter.toml:2: github.reserve: invalid share -1",
        ),
        (
            "[github]\nreserve = true\n",
            "arbiter.toml:2: github.reserve: invalid share true",
        ),
        (
            "[github]\nlimit = 1\n",
            "arbiter.toml:2: github.limit: unknown field `limit`, expected one of `upstream`",
        ),
        (
            "[github]\nconcurrency = \"4\"\n",
            "arbiter.toml:2: github.concurrency: invalid type: string",
        ),
    ] {
        check_error(text, expected);
    }

    // github_proxy: the loop's own setting wins over its profile's; unset is off.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("arbiter.toml");
    let text = "[profiles.bot]\ngh_config_dir = \"gh\"\ngithub_proxy = true\n\
                [loops.own]\nrepo = \".\"\nevery = \"1m\"\ncommand = [\"a\"]\nprofile = \"bot\"\ngithub_proxy = false\n\
                [loops.inherits]\nrepo = \".\"\nevery = \"1m\"\ncommand = [\"a\"]\nprofile = \"bot\"\n\
                [loops.plain]\nrepo = \".\"\nevery = \"1m\"\ncommand = [\"a\"]\n";
    std::fs::write(&path, text).unwrap();
    let config = Config::load(Some(&path)).unwrap();
    let proxied = |name: &str| {
        let spec = config.loops.iter().find(|l| l.name == name).unwrap();
        Config::github_proxy(spec, config.profile_for(spec, None))
    };
    assert_eq!(
        (proxied("own"), proxied("inherits"), proxied("plain")),
        (false, true, false)
    );
    assert!(config.may_use_github_proxy(&config.loops));
    let plain: Vec<_> = config.loops.iter().filter(|l| l.name == "own").collect();
    assert!(!config.may_use_github_proxy(plain));
    std::fs::write(&path, format!("{text}github_proxy = \"yes\"\n")).unwrap();
    let err = Config::load(Some(&path)).unwrap_err().message;
    assert!(
        err.contains(":19: loops.plain.github_proxy: invalid type: string"),
        "{err}"
    );
}
