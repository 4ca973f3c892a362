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
    // No probe (max age 0): the counts below are the queries' alone.
    let h = Harness::start(fake_config(), |c| c.graphql_max_age = Duration::ZERO).await;
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
    // No probe (max age 0): the counts below are the queries' alone.
    let h = Harness::start(fake_config(), |c| c.graphql_max_age = Duration::ZERO).await;
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

/// Past the window but within its max age, a query of a repository is answered again when
/// a free conditional probe of the repository's most recently updated issue or pull
/// request says nothing changed; a change made around the proxy (straight to GitHub) makes
/// the probe answer 200 and the query is asked again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_past_the_window_is_revalidated_by_a_free_probe() {
    let h = Harness::start(fake_config(), |c| {
        c.graphql_fresh = Duration::from_millis(50);
        c.graphql_max_age = Duration::from_secs(3600);
    })
    .await;
    let first = h.graphql("alice-token-1", ISSUES, hello()).await;
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(first.header("x-arbiter-cache"), Some("miss"));
    let within = h.graphql("alice-token-1", ISSUES, hello()).await;
    assert_eq!(within.header("x-arbiter-cache"), Some("hit"));
    tokio::time::sleep(Duration::from_millis(100)).await; // past the window
    let before = h.fake.stats().user("alice");
    let again = h.graphql("alice-token-1", ISSUES, hello()).await;
    assert_eq!(again.body, first.body);
    assert_eq!(again.header("x-arbiter-cache"), Some("revalidated"));
    let after = h.fake.stats().user("alice");
    assert_eq!(after.graphql_used, before.graphql_used, "no GraphQL point spent");
    assert_eq!(after.core_used, before.core_used, "the probe was free");
    assert_eq!(after.not_modified, before.not_modified + 1, "one 304: the probe");

    // Another client writes straight to GitHub, not through the proxy.
    let created = crate::support::send(
        h.client
            .post(format!("{}/repos/octo/hello/issues", h.fake.url()))
            .header("authorization", "token alice-token-2")
            .json(&serde_json::json!({ "title": "Written around the proxy" })),
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.body);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let before = h.fake.stats().user("alice");
    let changed = h.graphql("alice-token-1", ISSUES, hello()).await;
    assert_eq!(changed.header("x-arbiter-cache"), Some("miss"));
    assert!(changed.body.contains("Written around the proxy"), "{}", changed.body);
    let after = h.fake.stats().user("alice");
    assert_eq!(after.graphql_used, before.graphql_used + 1, "asked again");
    assert_eq!(after.not_modified, before.not_modified, "the probe saw the change");
}

/// A query naming what the probe does not cover (here the viewer) is not revalidated by
/// it; nor is any query past its max age.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_the_probe_does_not_cover_are_asked_again() {
    const WITH_VIEWER: &str = "query IssueList($owner: String!, $repo: String!) { viewer { login } \
        repository(owner: $owner, name: $repo) { issues(first: 50) { totalCount } } }";
    let h = Harness::start(fake_config(), |c| {
        c.graphql_fresh = Duration::from_millis(50);
        c.graphql_max_age = Duration::from_millis(400);
    })
    .await;
    h.graphql("alice-token-1", WITH_VIEWER, hello()).await;
    h.graphql("alice-token-1", ISSUES, hello()).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let before = h.fake.stats().user("alice").graphql_used;
    let viewer = h.graphql("alice-token-1", WITH_VIEWER, hello()).await;
    assert_eq!(viewer.header("x-arbiter-cache"), Some("miss"));
    assert_eq!(h.fake.stats().user("alice").graphql_used, before + 1);
    tokio::time::sleep(Duration::from_millis(400)).await; // past the max age
    let before = h.fake.stats().user("alice").graphql_used;
    let old = h.graphql("alice-token-1", ISSUES, hello()).await;
    assert_eq!(old.header("x-arbiter-cache"), Some("miss"));
    assert_eq!(h.fake.stats().user("alice").graphql_used, before + 1);
}
