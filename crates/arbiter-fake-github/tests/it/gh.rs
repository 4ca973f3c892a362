//! The real `gh` (Debian's 2.23) against the fake over a unix socket, as `http_unix_socket`
//! makes it talk: plain HTTP/1.1, `Host: api.github.com`, the API at the root.

use std::path::Path;

use arbiter_fake_github::{FakeGitHub, Limits};

use crate::config;

/// Whether `gh` can run here; without it the test is skipped loudly, except under `CI`.
fn gh_present(test: &str) -> bool {
    match std::process::Command::new("gh").arg("--version").output() {
        Ok(out) if out.status.success() => true,
        other => {
            let why = match other {
                Ok(out) => format!("`gh --version` failed: {}", String::from_utf8_lossy(&out.stderr)),
                Err(e) => format!("no `gh` on PATH ({e})"),
            };
            if std::env::var_os("CI").is_some() {
                panic!("{test}: {why}; CI must run it (.ci/run installs gh)");
            }
            eprintln!("SKIPPED {test}: {why}; install Debian's gh to run it");
            false
        }
    }
}

async fn gh(config_dir: &Path, token: &str, args: &[&str]) -> String {
    let out = tokio::process::Command::new("gh")
        .args(args)
        .env("GH_CONFIG_DIR", config_dir)
        .env("GH_TOKEN", token)
        .env("GH_NO_UPDATE_NOTIFIER", "1")
        .env("GH_PROMPT_DISABLED", "1")
        .env("NO_COLOR", "1")
        .env_remove("GITHUB_TOKEN")
        .env_remove("GH_HOST")
        .env_remove("GH_REPO")
        .env_remove("GH_ENTERPRISE_TOKEN")
        .output()
        .await
        .expect("gh runs");
    assert!(
        out.status.success(),
        "gh {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8")
}

async fn fake_with_gh_config() -> (tempfile::TempDir, FakeGitHub) {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("github.sock");
    let fake = FakeGitHub::start_unix(config(Limits::default()), &socket)
        .await
        .unwrap();
    std::fs::write(
        dir.path().join("config.yml"),
        format!("http_unix_socket: {}\n", socket.display()),
    )
    .unwrap();
    (dir, fake)
}

#[tokio::test]
async fn gh_issue_list_is_served_over_the_unix_socket() {
    if !gh_present("gh_issue_list_is_served_over_the_unix_socket") {
        return;
    }
    let (dir, fake) = fake_with_gh_config().await;
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(fake.socket().unwrap()).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    let out = gh(dir.path(), "a1", &["issue", "list", "-R", "o/r"]).await;
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 10, "{out}");
    assert!(lines[0].starts_with("10\tOPEN\tIssue 10\t"), "{out}");
    let json = gh(
        dir.path(),
        "a2",
        &["issue", "view", "3", "-R", "o/r", "--json", "title,comments"],
    )
    .await;
    let view: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(view["title"], "Issue 3");
    assert_eq!(view["comments"].as_array().unwrap().len(), 2);
    // gh sent one query for the list, two for the view (the issue, then its comments by
    // node id): each costs one point of the GraphQL budget and nothing of REST's.
    let stats = fake.stats().user("alice");
    assert_eq!(stats.requests, 3, "{stats:?}");
    assert_eq!(stats.graphql_used, 3, "{stats:?}");
    assert_eq!(stats.core_used, 0);
}

#[tokio::test]
async fn gh_pr_list_and_view_are_served_over_the_unix_socket() {
    if !gh_present("gh_pr_list_and_view_are_served_over_the_unix_socket") {
        return;
    }
    let (dir, fake) = fake_with_gh_config().await;
    let out = gh(dir.path(), "b1", &["pr", "list", "-R", "o/r"]).await;
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(lines[0].starts_with("13\tPull request 13\tfeature-13\tOPEN"), "{out}");
    let view = gh(dir.path(), "b1", &["pr", "view", "12", "-R", "o/r"]).await;
    assert!(view.contains("title:\tPull request 12"), "{view}");
    assert_eq!(fake.stats().user("bob").graphql_used, 2);
}
