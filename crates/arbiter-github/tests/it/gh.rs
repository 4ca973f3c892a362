//! The real `gh` through the proxy's unix socket (its `http_unix_socket` setting), as the
//! supervisor sets it up for a loop. Skipped loudly without `/usr/bin/gh` outside CI.

use std::path::Path;

use crate::support::{Harness, fake_config};

const GH: &str = "/usr/bin/gh";

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gh_issue_list_is_served_through_the_socket() {
    if !Path::new(GH).exists() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI is set but {GH} is missing: .ci/run installs gh"
        );
        eprintln!("SKIPPED gh_issue_list_is_served_through_the_socket: no {GH} (apt-get install gh)");
        return;
    }
    let h = Harness::start(fake_config(), |_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("run").join("github.sock");
    let tag = arbiter_core::name::LoopName::parse("triage").unwrap();
    h.proxy().listen_unix(&socket, Some(tag.clone())).await.unwrap();
    let config = dir.path().join("gh");
    std::fs::create_dir(&config).unwrap();
    std::fs::write(
        config.join("config.yml"),
        format!("http_unix_socket: {}\n", socket.display()),
    )
    .unwrap();
    let list = || {
        tokio::process::Command::new(GH)
            .args(["issue", "list", "-R", "octo/hello"])
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("HOME", dir.path())
            .env("GH_CONFIG_DIR", &config)
            .env("GH_TOKEN", "alice-token-1")
            .env("GH_NO_UPDATE_NOTIFIER", "1")
            .env("GH_PROMPT_DISABLED", "1")
            .output()
    };
    let output = list().await.expect("gh runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "gh failed: {}\n{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("Issue 5"), "{stdout}");
    let counters = h.proxy().counters(Some(&tag));
    assert!(counters.upstream_calls >= 1);
    assert_eq!(counters.identities, ["alice"]);
    // The same list again is answered from the GraphQL window.
    let upstream = h.upstream_requests();
    let again = list().await.expect("gh runs");
    assert!(again.status.success());
    assert_eq!(String::from_utf8_lossy(&again.stdout), stdout);
    assert_eq!(h.upstream_requests(), upstream, "served by the proxy alone");
}
