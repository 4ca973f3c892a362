//! What the supervisor asks git: the repository's `origin`, for `[[profile_rules]]`.

use std::path::Path;

/// `host/owner/repo` of the repository's `origin`, if it has one.
pub(crate) async fn origin_remote(repo: &Path) -> Option<String> {
    let output = tokio::process::Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(["remote", "get-url", "origin"])
        .output()
        .await
        .ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_string())
        .and_then(|url| arbiter_config::remote_path(&url))
}
