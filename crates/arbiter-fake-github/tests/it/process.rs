//! `arbiter-fake-github` as a process: prints its URL, serves, refuses bad flags by name.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_arbiter-fake-github");

#[tokio::test]
async fn the_binary_prints_its_url_and_serves_the_users_it_was_given() {
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users.json");
    std::fs::write(&users, r#"[{"login": "carol", "id": 7, "tokens": ["c1"]}]"#).unwrap();
    let mut child = Command::new(BIN)
        .args(["--user", "dave:d1,d2", "--users"])
        .arg(&users)
        .args(["--repo", "x/y", "--issues", "4", "--scale", "60"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line.trim().to_string();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    let client = crate::client();
    let answer = |token: &'static str, path: &'static str| {
        let client = client.clone();
        let url = url.clone();
        async move {
            client
                .get(format!("{url}{path}"))
                .header("authorization", format!("token {token}"))
                .send()
                .await
                .unwrap()
                .json::<serde_json::Value>()
                .await
                .unwrap()
        }
    };
    assert_eq!(answer("c1", "/user").await["id"], 7);
    assert_eq!(answer("d2", "/user").await["login"], "dave");
    let issues = answer("d1", "/repos/x/y/issues").await;
    assert_eq!(issues.as_array().unwrap().len(), 7); // 4 issues, 3 pull requests
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn bad_flags_are_refused_by_name() {
    for (args, expected) in [
        (vec!["--user", "dave"], "--user dave: expected LOGIN:TOKEN"),
        (
            vec!["--user", "a:t", "--scale", "0"],
            "--scale: scale: expected a positive number",
        ),
        (
            vec!["--user", "a:t", "--user", "b:t"],
            "--user/--users: users[1].tokens",
        ),
        (
            vec!["--user", "a:t", "--repo", "nope"],
            "--repo nope: expected OWNER/NAME",
        ),
        (vec!["--user", "a:t", "--limit-status", "500"], "--limit-status"),
        (vec![], "no user"),
    ] {
        let out = Command::new(BIN).args(&args).output().unwrap();
        assert!(!out.status.success(), "{args:?} was accepted");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{args:?} printed a URL");
    }
}
