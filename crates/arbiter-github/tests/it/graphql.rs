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
    // Every answer says how long the proxy took: on a hit, all it added.
    let hit = h.graphql("alice-token-1", ISSUES, hello()).await;
    assert_eq!(hit.header("x-arbiter-cache"), Some("hit"));
    let timing = hit.header("server-timing").expect("Server-Timing");
    let ms: f64 = timing
        .strip_prefix("arbiter;dur=")
        .and_then(|ms| ms.parse().ok())
        .unwrap_or_else(|| panic!("{timing}"));
    assert!((0.0..10_000.0).contains(&ms), "{timing}");
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

/// A change made straight to GitHub (around the proxy), as another client would.
async fn around(h: &Harness, method: reqwest::Method, path: &str, body: serde_json::Value) -> serde_json::Value {
    let answer = crate::support::send(
        h.client
            .request(method, format!("{}{path}", h.fake.url()))
            .header("authorization", "token alice-token-2")
            .json(&body),
    )
    .await;
    assert!(answer.status < 300, "{path}: {} {}", answer.status, answer.body);
    serde_json::from_str(&answer.body).unwrap_or_default()
}

/// How many reacted with `content` to an issue, a pull request or a comment, as GraphQL's
/// `reactionGroups` say.
fn reactions(item: &serde_json::Value, content: &str) -> u64 {
    item["reactionGroups"]
        .as_array()
        .and_then(|groups| groups.iter().find(|g| g["content"] == content))
        .and_then(|g| g["users"]["totalCount"].as_u64())
        .unwrap_or(0)
}

/// `gh pr view 6` and `gh issue view 2` as `gh` asks them, for alice's first token.
async fn pr_view(h: &Harness) -> crate::support::Answer {
    let vars = serde_json::json!({"owner": "octo", "repo": "hello", "pr_number": 6});
    h.graphql("alice-token-1", arbiter_fake_github::gh::PR_VIEW, vars).await
}

async fn issue_view(h: &Harness) -> crate::support::Answer {
    let vars = serde_json::json!({"owner": "octo", "repo": "hello", "number": 2});
    h.graphql("alice-token-1", arbiter_fake_github::gh::ISSUE_VIEW, vars)
        .await
}

/// Past the window, `gh pr view` and `gh issue view` — which ask for checks, commits,
/// reactions and mergeability, none of which move `updated_at` — are revalidated by
/// free probes of their own item: the issue, its comments and, for a pull request, the
/// pull and its head commit's status and check runs. Each change made around the proxy
/// to what they show (a check run, a status, a commit pushed, a reaction to the pull
/// request or to a comment, a label) makes the next answer fresh.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn views_are_revalidated_by_their_items_probes_and_every_change_shows() {
    let h = Harness::start(fake_config(), |c| {
        c.graphql_fresh = Duration::from_millis(50);
        c.graphql_max_age = Duration::from_secs(3600);
    })
    .await;
    let past_the_window = || tokio::time::sleep(Duration::from_millis(100));
    // Asked once: not worth its probes yet (their first answers cost a point each).
    let once = pr_view(&h).await;
    assert_eq!(once.status, 200, "{}", once.body);
    past_the_window().await;
    let before = h.fake.stats().user("alice");
    let first = pr_view(&h).await;
    assert_eq!(
        first.header("x-arbiter-cache"),
        Some("miss"),
        "asked again: with its probes now"
    );
    let after = h.fake.stats().user("alice");
    assert_eq!(after.graphql_used, before.graphql_used + 1);
    assert_eq!(after.core_used, before.core_used + 5, "the five probes' first answers");
    past_the_window().await;
    let before = h.fake.stats().user("alice");
    let again = pr_view(&h).await;
    assert_eq!(again.header("x-arbiter-cache"), Some("revalidated"));
    assert_eq!(again.body, first.body);
    let after = h.fake.stats().user("alice");
    assert_eq!(after.graphql_used, before.graphql_used, "no GraphQL point spent");
    assert_eq!(after.core_used, before.core_used, "the probes were free");
    assert_eq!(
        after.not_modified,
        before.not_modified + 5,
        "five 304s: issue, comments, pull, status, check runs"
    );

    let pull = around(
        &h,
        reqwest::Method::GET,
        "/repos/octo/hello/pulls/6",
        serde_json::Value::Null,
    )
    .await;
    let sha = pull["head"]["sha"].as_str().expect("the head's SHA").to_string();
    let comments = around(
        &h,
        reqwest::Method::GET,
        "/repos/octo/hello/issues/6/comments",
        serde_json::Value::Null,
    )
    .await;
    let comment = comments[0]["id"].as_u64().expect("a comment");
    let mut last = again.body;
    // Each change, then the view: asked again (a GraphQL point), showing it.
    type Shows = fn(&serde_json::Value) -> bool;
    let pr = |v: &serde_json::Value| v["data"]["repository"]["pullRequest"].clone();
    let changes: Vec<(&str, reqwest::Method, String, serde_json::Value, Shows)> = vec![
        (
            "a check run",
            reqwest::Method::POST,
            "/repos/octo/hello/check-runs".into(),
            serde_json::json!({"name": "unit-tests", "head_sha": sha, "status": "completed", "conclusion": "failure"}),
            |v| v.to_string().contains("unit-tests"),
        ),
        (
            "a commit status",
            reqwest::Method::POST,
            format!("/repos/octo/hello/statuses/{sha}"),
            serde_json::json!({"state": "pending", "context": "lint"}),
            |v| v.to_string().contains("\"context\":\"lint\""),
        ),
        (
            "a reaction to the pull request",
            reqwest::Method::POST,
            "/repos/octo/hello/issues/6/reactions".into(),
            serde_json::json!({"content": "rocket"}),
            |v| reactions(&v["data"]["repository"]["pullRequest"], "ROCKET") == 1,
        ),
        (
            "a reaction to a comment",
            reqwest::Method::POST,
            format!("/repos/octo/hello/issues/comments/{comment}/reactions"),
            serde_json::json!({"content": "eyes"}),
            |v| reactions(&v["data"]["repository"]["pullRequest"]["comments"]["nodes"][0], "EYES") == 1,
        ),
        (
            "a label",
            reqwest::Method::POST,
            "/repos/octo/hello/issues/6/labels".into(),
            serde_json::json!({"labels": ["needs-review"]}),
            |v| v.to_string().contains("needs-review"),
        ),
    ];
    for (what, method, path, body, shows) in changes {
        around(&h, method, &path, body).await;
        past_the_window().await;
        let before = h.fake.stats().user("alice").graphql_used;
        let view = pr_view(&h).await;
        assert_eq!(view.header("x-arbiter-cache"), Some("miss"), "after {what}");
        assert_eq!(h.fake.stats().user("alice").graphql_used, before + 1, "after {what}");
        assert_ne!(view.body, last, "after {what}");
        let json: serde_json::Value = serde_json::from_str(&view.body).expect("JSON");
        assert!(shows(&json), "after {what}: {}", view.body);
        last = view.body;
        past_the_window().await;
        let same = pr_view(&h).await;
        assert_eq!(
            same.header("x-arbiter-cache"),
            Some("revalidated"),
            "after {what}, unchanged"
        );
        assert_eq!(same.body, last);
    }
    // A push moves the head: the checks asked for are the new commit's (none yet).
    let new_head = h.fake.push("octo", "hello", 6).expect("a pull request");
    past_the_window().await;
    let pushed = pr_view(&h).await;
    assert_eq!(pushed.header("x-arbiter-cache"), Some("miss"), "after a push");
    assert!(
        !pushed.body.contains("unit-tests"),
        "the new head has no check run: {}",
        pushed.body
    );
    let json: serde_json::Value = serde_json::from_str(&pushed.body).expect("JSON");
    assert_eq!(pr(&json)["commits"]["totalCount"], 2, "two commits: {}", pushed.body);
    around(
        &h,
        reqwest::Method::POST,
        "/repos/octo/hello/check-runs",
        serde_json::json!({"name": "on-the-new-head", "head_sha": new_head}),
    )
    .await;
    past_the_window().await;
    let checked = pr_view(&h).await;
    assert_eq!(
        checked.header("x-arbiter-cache"),
        Some("miss"),
        "a check run on the new head"
    );
    assert!(checked.body.contains("on-the-new-head"), "{}", checked.body);

    // `gh issue view`: a reaction to the issue shows.
    issue_view(&h).await;
    past_the_window().await;
    let first = issue_view(&h).await;
    assert_eq!(first.header("x-arbiter-cache"), Some("miss"));
    past_the_window().await;
    assert_eq!(issue_view(&h).await.header("x-arbiter-cache"), Some("revalidated"));
    around(
        &h,
        reqwest::Method::POST,
        "/repos/octo/hello/issues/2/reactions",
        serde_json::json!({"content": "heart"}),
    )
    .await;
    past_the_window().await;
    let reacted = issue_view(&h).await;
    assert_eq!(reacted.header("x-arbiter-cache"), Some("miss"));
    let json: serde_json::Value = serde_json::from_str(&reacted.body).expect("JSON");
    assert_eq!(
        reactions(&json["data"]["repository"]["issue"], "HEART"),
        1,
        "{}",
        reacted.body
    );
}

/// A write through the proxy to one issue does not cost the views of others (their own
/// probes still say 304), and the view of the issue written to is asked again at once,
/// even within the freshness window.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_through_the_proxy_keeps_other_items_views_and_refreshes_its_own() {
    let h = Harness::start(fake_config(), |c| {
        c.graphql_fresh = Duration::from_millis(300);
        c.graphql_max_age = Duration::from_secs(3600);
    })
    .await;
    // Each asked twice upstream, so their probes are kept.
    for _ in 0..2 {
        assert_eq!(pr_view(&h).await.header("x-arbiter-cache"), Some("miss"));
        assert_eq!(issue_view(&h).await.header("x-arbiter-cache"), Some("miss"));
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    assert_eq!(pr_view(&h).await.header("x-arbiter-cache"), Some("revalidated"));
    assert_eq!(issue_view(&h).await.header("x-arbiter-cache"), Some("revalidated"));
    assert_eq!(issue_view(&h).await.header("x-arbiter-cache"), Some("hit"));
    let commented = crate::support::send(
        h.client
            .post(h.url("/repos/octo/hello/issues/2/comments"))
            .header("authorization", "token alice-token-1")
            .json(&serde_json::json!({"body": "Written through the proxy"})),
    )
    .await;
    assert_eq!(commented.status, 201, "{}", commented.body);
    let before = h.fake.stats().user("alice");
    let other = pr_view(&h).await;
    assert_eq!(
        other.header("x-arbiter-cache"),
        Some("revalidated"),
        "another item's view"
    );
    let own = issue_view(&h).await;
    assert_eq!(
        own.header("x-arbiter-cache"),
        Some("miss"),
        "within the window, but written to"
    );
    assert!(own.body.contains("Written through the proxy"), "{}", own.body);
    let after = h.fake.stats().user("alice");
    assert_eq!(
        after.graphql_used,
        before.graphql_used + 1,
        "only the written-to view asked again"
    );
}

/// A view's probe of `GET /repos/…/issues/N` starts from the ETag of the client's own GET
/// of that path through the proxy (a free 304, not a second first answer); after a change
/// that GET sees first, the view is asked again without paying for the probe's old ETag.
/// Views keep their own max age: past the lists' (here 200 ms) they are still revalidated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_views_probes_start_from_the_clients_own_gets() {
    let h = Harness::start(fake_config(), |c| {
        c.graphql_fresh = Duration::from_millis(50);
        c.graphql_max_age = Duration::from_millis(200);
    })
    .await;
    let spent = |what: &str| h.fake.stats().user("alice").spent.get(what).copied().unwrap_or(0);
    // `gh`'s GET says `token …`, `Harness::graphql` `bearer …`: one token, one credential.
    let get_issue = async || h.get("alice-token-1", "/repos/octo/hello/issues/2").await;
    let got = get_issue().await;
    assert_eq!(got.status, 200, "{}", got.body);
    assert_eq!(spent("GET issue"), 1);
    issue_view(&h).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let first = issue_view(&h).await; // asked again: with its probes now
    assert_eq!(first.header("x-arbiter-cache"), Some("miss"));
    assert_eq!(
        spent("GET issue"),
        1,
        "the issue's probe was a 304 on the client's ETag"
    );
    assert_eq!(spent("GET comments"), 1, "the comments' probe's first answer");
    tokio::time::sleep(Duration::from_millis(300)).await; // past the lists' max age
    let again = issue_view(&h).await;
    assert_eq!(
        again.header("x-arbiter-cache"),
        Some("revalidated"),
        "a view's own max age"
    );

    // A comment around the proxy; the client's GET sees it first.
    around(
        &h,
        reqwest::Method::POST,
        "/repos/octo/hello/issues/2/comments",
        serde_json::json!({"body": "Around the proxy"}),
    )
    .await;
    let got = get_issue().await;
    assert_eq!(got.status, 200);
    assert_eq!(spent("GET issue"), 2);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let before = h.fake.stats().user("alice");
    let changed = issue_view(&h).await;
    assert_eq!(changed.header("x-arbiter-cache"), Some("miss"));
    assert!(changed.body.contains("Around the proxy"), "{}", changed.body);
    let after = h.fake.stats().user("alice");
    assert_eq!(
        spent("GET issue"),
        2,
        "the issue's change was known: no probe paid for it"
    );
    assert_eq!(
        after.core_used,
        before.core_used + 1,
        "the comments' probe saw the change (1); the issue's probe asked with the GET's ETag (304)"
    );
    assert_eq!(after.graphql_used, before.graphql_used + 1);
}
