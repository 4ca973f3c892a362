use arbiter_fake_github::Limits;
use serde_json::json;

use crate::{client, config, get, graphql, send, start};

#[tokio::test]
async fn every_answer_carries_the_rate_limit_headers_and_a_request_id() {
    let fake = start(config(Limits::default())).await;
    let client = client();
    let first = get(&client, &fake, "/repos/o/r/issues", "a1").await;
    assert_eq!(first.status, 200);
    assert_eq!(first.header("x-ratelimit-limit"), "5000");
    assert_eq!(first.header("x-ratelimit-remaining"), "4999");
    assert_eq!(first.header("x-ratelimit-used"), "1");
    assert_eq!(first.header("x-ratelimit-resource"), "core");
    let reset = first.number("x-ratelimit-reset");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(
        reset > now && reset <= now + 3601,
        "reset {reset} is not within the hour after {now}"
    );
    let second = get(&client, &fake, "/repos/o/r/pulls/11", "a1").await;
    assert_eq!(second.header("x-ratelimit-used"), "2");
    assert_ne!(
        first.header("x-github-request-id"),
        second.header("x-github-request-id")
    );
    let search = get(&client, &fake, "/search/issues?q=repo:o/r+is:pr", "a1").await;
    assert_eq!(search.header("x-ratelimit-resource"), "search");
    assert_eq!(search.header("x-ratelimit-limit"), "30");
    assert_eq!(search.body["total_count"], 3);
    // /rate_limit is free and tells the same.
    let rate = get(&client, &fake, "/rate_limit", "a1").await;
    assert_eq!(rate.body["resources"]["core"]["used"], 2);
    assert_eq!(rate.body["resources"]["search"]["used"], 1);
    assert_eq!(rate.body["resources"]["graphql"]["remaining"], 5000);
    // Even a 404 and a 401 carry them.
    let missing = get(&client, &fake, "/repos/o/nope", "a1").await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.body["message"], "Not Found");
    assert_eq!(missing.header("x-ratelimit-used"), "3");
    let unknown = get(&client, &fake, "/user", "nobody").await;
    assert_eq!(unknown.status, 401);
    assert_eq!(unknown.body["message"], "Bad credentials");
    assert_eq!(unknown.header("x-ratelimit-limit"), "60");
    assert!(!unknown.header("x-github-request-id").is_empty());
}

#[tokio::test]
async fn lists_page_as_github_does() {
    let fake = start(config(Limits::default())).await;
    let client = client();
    let page = get(&client, &fake, "/repos/o/r/issues?per_page=5&page=2", "a1").await;
    let numbers: Vec<u64> = page
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["number"].as_u64().unwrap())
        .collect();
    assert_eq!(numbers, vec![8, 7, 6, 5, 4]); // 13 items newest first, pull requests included
    assert!(
        page.header("link").contains("page=3>; rel=\"next\""),
        "{}",
        page.header("link")
    );
    let pulls = get(&client, &fake, "/repos/o/r/pulls", "a1").await;
    assert_eq!(pulls.body.as_array().unwrap().len(), 3);
    assert_eq!(pulls.body[0]["head"]["ref"], "feature-13");
    let user = get(&client, &fake, "/user", "a2").await;
    assert_eq!(user.body["login"], "alice");
    assert_eq!(user.body["id"], 1);
}

#[tokio::test]
async fn a_304_costs_nothing_and_etags_belong_to_one_token() {
    let fake = start(config(Limits::default())).await;
    let client = client();
    let path = "/repos/o/r/issues/3";
    let first = get(&client, &fake, path, "a1").await;
    let etag = first.header("etag").to_string();
    assert!(
        etag.starts_with('"') && !etag.starts_with("W/"),
        "a strong ETag: {etag}"
    );
    let used = first.number("x-ratelimit-used");

    let again = send(&client, &fake, "GET", path, "a1", &[("if-none-match", &etag)], None).await;
    assert_eq!(again.status, 304);
    assert_eq!(again.header("etag"), etag);
    assert_eq!(again.number("x-ratelimit-used"), used, "a 304 is free");

    let last_modified = first.header("last-modified").to_string();
    let since = send(
        &client,
        &fake,
        "GET",
        path,
        "a1",
        &[("if-modified-since", &last_modified)],
        None,
    )
    .await;
    assert_eq!(since.status, 304);
    assert_eq!(since.number("x-ratelimit-used"), used);

    // The other token of the same user gets its own ETag: a's does not match for it.
    let other = send(&client, &fake, "GET", path, "a2", &[("if-none-match", &etag)], None).await;
    assert_eq!(other.status, 200);
    assert_ne!(other.header("etag"), etag);
    assert_eq!(other.number("x-ratelimit-used"), used + 1, "a2 spends alice's budget");

    // A write changes the resource's ETag and its Last-Modified.
    let comment = send(
        &client,
        &fake,
        "POST",
        "/repos/o/r/issues/3/comments",
        "a1",
        &[],
        Some(json!({"body": "hi"})),
    )
    .await;
    assert_eq!(comment.status, 201);
    let after = send(&client, &fake, "GET", path, "a1", &[("if-none-match", &etag)], None).await;
    assert_eq!(after.status, 200);
    assert_ne!(after.header("etag"), etag);
    assert_eq!(after.body["comments"], 3);
    let since = send(
        &client,
        &fake,
        "GET",
        path,
        "a1",
        &[("if-modified-since", &last_modified)],
        None,
    )
    .await;
    assert_eq!(since.status, 200, "changed since {last_modified}");

    let stats = fake.stats();
    assert_eq!(stats.user("alice").not_modified, 2);
    assert_eq!(stats.user("alice").core_used, used + 4);
}

#[tokio::test]
async fn writes_create_and_change_issues() {
    let fake = start(config(Limits::default())).await;
    let client = client();
    let created = send(
        &client,
        &fake,
        "POST",
        "/repos/o/r/issues",
        "b1",
        &[],
        Some(json!({"title": "New", "labels": ["x"]})),
    )
    .await;
    assert_eq!(created.status, 201);
    assert_eq!(created.body["number"], 14);
    assert_eq!(created.body["user"]["login"], "bob");
    let closed = send(
        &client,
        &fake,
        "PATCH",
        "/repos/o/r/issues/14",
        "b1",
        &[],
        Some(json!({"state": "closed"})),
    )
    .await;
    assert_eq!(closed.body["state"], "closed");
    let labels = send(
        &client,
        &fake,
        "POST",
        "/repos/o/r/issues/14/labels",
        "b1",
        &[],
        Some(json!({"labels": ["y"]})),
    )
    .await;
    assert_eq!(labels.body.as_array().unwrap().len(), 2);
    let missing = send(
        &client,
        &fake,
        "POST",
        "/repos/o/r/issues",
        "b1",
        &[],
        Some(json!({"body": "no title"})),
    )
    .await;
    assert_eq!(missing.status, 422);
    assert_eq!(missing.body["message"], "Validation Failed");
    let open = get(&client, &fake, "/repos/o/r/issues?state=closed", "b1").await;
    assert_eq!(open.body[0]["number"], 14);
    assert_eq!(
        fake.stats().user("bob").content_created,
        1,
        "an issue; not the edit nor the labels"
    );
}

#[tokio::test]
async fn stats_are_served_as_json() {
    let fake = start(config(Limits::default())).await;
    let client = client();
    get(&client, &fake, "/user", "a1").await;
    get(&client, &fake, "/user", "b1").await;
    let served: arbiter_fake_github::Stats = client
        .get(format!("{}/_fake/stats", fake.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(served, fake.stats());
    assert_eq!(served.requests, 2);
    assert_eq!(served.user("bob").core_used, 1);
}

/// The probe arbiter's proxy revalidates GraphQL answers with: the issues list (pull
/// requests included) sorted by `updated_at`, one item; its ETag (per token) moves with any
/// change to an issue, a pull request or a comment of the repository.
#[tokio::test]
async fn the_issues_list_sorts_by_update_and_its_etag_moves_with_any_change() {
    let fake = start(config(Limits::default())).await;
    let client = client();
    let probe = "/repos/o/r/issues?state=all&sort=updated&direction=desc&per_page=1";
    let numbers = |got: &crate::Got| -> Vec<u64> {
        got.body
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["number"].as_u64().unwrap())
            .collect()
    };
    let oldest = get(
        &client,
        &fake,
        "/repos/o/r/issues?state=all&sort=updated&direction=asc",
        "a1",
    )
    .await;
    let newest = get(&client, &fake, "/repos/o/r/issues?state=all&sort=updated", "a1").await;
    let mut reversed = numbers(&newest);
    reversed.reverse();
    assert_eq!(numbers(&oldest), reversed, "asc is desc reversed");
    let first = get(&client, &fake, probe, "a1").await;
    assert_eq!(numbers(&first).len(), 1);
    let etag = first.header("etag").to_string();
    let same = send(&client, &fake, "GET", probe, "a1", &[("if-none-match", &etag)], None).await;
    assert_eq!(same.status, 304, "nothing changed");
    let other_token = send(&client, &fake, "GET", probe, "a2", &[("if-none-match", &etag)], None).await;
    assert_eq!(other_token.status, 200, "ETags belong to one token");

    // A comment on an issue that was not the most recently updated one moves it to the top.
    let target = if numbers(&first)[0] == 3 { 4 } else { 3 };
    let comment = send(
        &client,
        &fake,
        "POST",
        &format!("/repos/o/r/issues/{target}/comments"),
        "a1",
        &[],
        Some(json!({"body": "hi"})),
    )
    .await;
    assert_eq!(comment.status, 201);
    let after = send(&client, &fake, "GET", probe, "a1", &[("if-none-match", &etag)], None).await;
    assert_eq!(after.status, 200);
    assert_eq!(numbers(&after), vec![target]);
    let etag = after.header("etag").to_string();
    // So does an edit of a pull request (pull requests are in the issues list).
    let pull = send(
        &client,
        &fake,
        "PATCH",
        "/repos/o/r/issues/12",
        "a1",
        &[],
        Some(json!({"title": "renamed"})),
    )
    .await;
    assert_eq!(pull.status, 200);
    let edited = send(&client, &fake, "GET", probe, "a1", &[("if-none-match", &etag)], None).await;
    assert_eq!(edited.status, 200);
    assert_eq!(numbers(&edited), vec![12]);
    assert!(edited.body[0]["pull_request"].is_object());
}

#[tokio::test]
async fn the_repository_changes_with_its_own_object_not_with_comments_on_its_issues() {
    let fake = start(config(Limits::default())).await;
    let client = client();
    let post =
        async |path: &str, body: serde_json::Value| send(&client, &fake, "POST", path, "a1", &[], Some(body)).await;
    let repo = get(&client, &fake, "/repos/o/r", "a1").await;
    let etag = repo.header("etag").to_string();
    let repo_again = async || {
        send(
            &client,
            &fake,
            "GET",
            "/repos/o/r",
            "a1",
            &[("if-none-match", &etag)],
            None,
        )
        .await
    };
    assert_eq!(
        post("/repos/o/r/issues/3/comments", json!({"body": "hi"})).await.status,
        201
    );
    // GitHub's repository `updated_at` is the repository object's: a comment on one of its
    // issues changes the issue, and the repository's answer stays the same (a free 304).
    assert_eq!(
        repo_again().await.status,
        304,
        "a comment does not change the repository"
    );
    // An issue opened changes its `open_issues_count`, so its answer.
    assert_eq!(post("/repos/o/r/issues", json!({"title": "new"})).await.status, 201);
    let after = repo_again().await;
    assert_eq!(after.status, 200);
    assert_eq!(
        after.body["open_issues_count"],
        repo.body["open_issues_count"].as_u64().unwrap() + 1
    );
    assert_ne!(after.body["updated_at"], repo.body["updated_at"]);

    // What the budget was spent on, per user: the 304 is not there.
    let spent = fake.stats().user("alice").spent;
    assert_eq!(spent.get("GET repo"), Some(&2), "{spent:?}");
    assert_eq!(spent.get("POST comments"), Some(&1), "{spent:?}");
    assert_eq!(spent.get("POST issues"), Some(&1), "{spent:?}");
    let list = graphql(&client, &fake, "a1", "query Mine { viewer { login } }").await;
    assert_eq!(list.status, 200);
    assert_eq!(fake.stats().user("alice").spent.get("graphql Mine"), Some(&1));
}
