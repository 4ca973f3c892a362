//! GraphQL: identical queries within the freshness window cost one call; mutations are
//! always forwarded and drop what was cached of their repository.

use std::time::Duration;

use crate::support::{Harness, ISSUES, fake_config, hello};

const ADD_COMMENT: &str = "mutation AddComment($input: AddCommentInput!) { \
    addComment(input: $input) { commentEdge { node { body } } } }";
const ISSUE_ID: &str = "query Issue($owner: String!, $repo: String!) { \
    repository(owner: $owner, name: $repo) { issue(number: 1) { id comments(first: 20) { totalCount } } } }";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identical_queries_within_the_window_cost_one_call() {
    let h = Harness::start(fake_config(), |_| {}).await;
    let before = h.upstream_requests();
    let first = h.graphql("alice-token-1", ISSUES, hello()).await;
    assert_eq!(first.status, 200, "{}", first.body);
    assert!(
        first.json()["data"]["repository"]["issues"]["totalCount"]
            .as_u64()
            .is_some()
    );
    let graphql_used = h.fake.stats().user("alice").graphql_used;
    for _ in 0..5 {
        assert_eq!(h.graphql("alice-token-1", ISSUES, hello()).await.body, first.body);
    }
    // (The first request of a token also asked GET /user, once.)
    assert_eq!(h.upstream_requests(), before + 2);
    assert_eq!(h.fake.stats().user("alice").graphql_used, graphql_used);
    assert_eq!(h.proxy().counters(None).cache_hits, 5);
    // Other variables are another query; another token of the same user has its own cache.
    h.graphql(
        "alice-token-1",
        ISSUES,
        serde_json::json!({"owner": "octo", "repo": "nothing"}),
    )
    .await;
    h.graphql("alice-token-2", ISSUES, hello()).await;
    assert_eq!(
        h.upstream_requests(),
        before + 5,
        "a new variables set, and the second token (+ its /user)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zero_window_caches_nothing() {
    let h = Harness::start(fake_config(), |c| c.graphql_fresh = Duration::ZERO).await;
    h.graphql("alice-token-1", ISSUES, hello()).await;
    let before = h.upstream_requests();
    h.graphql("alice-token-1", ISSUES, hello()).await;
    assert_eq!(h.upstream_requests(), before + 1);
    assert_eq!(h.proxy().counters(None).cache_hits, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutations_are_never_cached_and_invalidate_queries() {
    let h = Harness::start(fake_config(), |_| {}).await;
    let issue = h.graphql("alice-token-1", ISSUE_ID, hello()).await;
    let issue = issue.json();
    let id = issue["data"]["repository"]["issue"]["id"]
        .as_str()
        .expect("an issue id")
        .to_string();
    let comments = issue["data"]["repository"]["issue"]["comments"]["totalCount"]
        .as_u64()
        .unwrap();
    let input = serde_json::json!({ "input": { "subjectId": id, "body": "same words" } });
    let before = h.upstream_requests();
    for _ in 0..2 {
        let answer = h.graphql("alice-token-1", ADD_COMMENT, input.clone()).await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        assert_eq!(
            answer.json()["data"]["addComment"]["commentEdge"]["node"]["body"],
            "same words"
        );
    }
    assert_eq!(h.upstream_requests(), before + 2, "each mutation reached GitHub");
    assert_eq!(h.fake.stats().user("alice").content_created, 2);
    // The query cached before the mutations is asked again (the mutation's repository is not
    // in its variables: every GraphQL answer was dropped).
    let after = h.graphql("alice-token-1", ISSUE_ID, hello()).await;
    assert_eq!(h.upstream_requests(), before + 3);
    assert_eq!(
        after.json()["data"]["repository"]["issue"]["comments"]["totalCount"].as_u64(),
        Some(comments + 2)
    );
}
