//! The cache: per credential, revalidated for free, coalesced, invalidated by writes.

use std::time::Duration;

use arbiter_testkit::eventually_async;
use arbiter_testkit::net::StallProxy;

use crate::support::{self, Harness, fake_config, hello};

const ISSUES_PATH: &str = "/repos/octo/hello/issues";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_credentials_answer_is_never_served_to_another() {
    let h = Harness::start(fake_config(), |_| {}).await;
    // Two users: each sees itself.
    let alice = h.get("alice-token-1", "/user").await;
    let bob = h.get("bob-token-1", "/user").await;
    assert_eq!(alice.json()["login"], "alice");
    assert_eq!(bob.json()["login"], "bob", "bob never gets alice's cached /user");
    // Two tokens of one user: the second token's read goes to GitHub, not to the first
    // token's cache entry (the fake's ETags are per token, as GitHub's).
    assert_eq!(h.get("alice-token-2", "/user").await.json()["login"], "alice");
    let first = h.get("alice-token-1", ISSUES_PATH).await;
    let before = h.fake.stats().user("alice");
    let second = h.get("alice-token-2", ISSUES_PATH).await;
    let after = h.fake.stats().user("alice");
    assert_eq!((first.status, second.status), (200, 200));
    assert_eq!(first.body, second.body);
    assert_ne!(
        first.header("etag"),
        second.header("etag"),
        "each token has its own entry"
    );
    assert_eq!(
        after.core_used,
        before.core_used + 1,
        "the second token's first read is a full call"
    );
    assert_eq!(after.not_modified, before.not_modified);
    // A request without a token never gets a token's answer: GitHub answers it.
    let anonymous = support::send(h.client.get(h.url(ISSUES_PATH))).await;
    assert_eq!(anonymous.status, 401, "{}", anonymous.body);
    // Both tokens are one identity: one budget.
    let identities = h.proxy().counters(None).identities;
    assert_eq!(identities, ["@anonymous:host-a", "alice", "bob"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_get_is_revalidated_and_costs_nothing() {
    let h = Harness::start(fake_config(), |_| {}).await;
    assert_eq!(h.get("alice-token-2", "/user").await.json()["login"], "alice");
    let first = h.get("alice-token-1", ISSUES_PATH).await;
    let before = h.fake.stats().user("alice");
    let second = h.get("alice-token-1", ISSUES_PATH).await;
    let after = h.fake.stats().user("alice");
    assert_eq!(second.status, 200);
    assert_eq!(second.body, first.body, "served from the cache");
    assert_eq!(after.not_modified, before.not_modified + 1, "GitHub answered 304");
    assert_eq!(after.core_used, before.core_used, "a 304 costs no budget");
    assert_eq!(h.proxy().counters(None).not_modified, 1);
    // A client's own conditional request that matches gets a 304 from the proxy.
    let etag = first.header("etag").expect("an ETag").to_string();
    let own = support::send(
        h.client
            .get(h.url(ISSUES_PATH))
            .header("authorization", "token alice-token-1")
            .header("if-none-match", &etag),
    )
    .await;
    assert_eq!(own.status, 304);
    assert!(own.body.is_empty());
    assert_eq!(h.fake.stats().user("alice").core_used, before.core_used);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_identical_concurrent_gets_make_one_upstream_call() {
    let fake = arbiter_fake_github::FakeGitHub::start(fake_config()).await.unwrap();
    // A link between the proxy and the fake that holds requests until all 50 are waiting.
    let link = StallProxy::start(fake.addr());
    let sqlite = arbiter_testkit::TempSqlite::new();
    let store = support::open_store(&sqlite.url()).await;
    let config = support::proxy_config(&format!("http://{}", link.addr()), "host-a");
    let proxy = arbiter_github::Proxy::start(store, config).await.unwrap();
    let addr = proxy.listen_tcp("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let client = support::client();
    let get = |path: &'static str| {
        support::send(
            client
                .get(format!("http://{addr}{path}"))
                .header("authorization", "token alice-token-1"),
        )
    };
    assert_eq!(get("/user").await.status, 200, "the token's identity is known");
    let before = fake.stats().requests;
    link.freeze();
    let requests: Vec<_> = (0..50)
        .map(|_| tokio::spawn(get("/repos/octo/hello/issues/1")))
        .collect();
    eventually_async(Duration::from_secs(20), "50 requests in the proxy", || async {
        (proxy.counters(None).in_flight == 50).then_some(())
    })
    .await;
    link.resume();
    let mut bodies = Vec::new();
    for request in requests {
        let answer = request.await.unwrap();
        assert_eq!(answer.status, 200, "{}", answer.body);
        bodies.push(answer.body);
    }
    assert!(bodies.windows(2).all(|w| w[0] == w[1]));
    assert_eq!(fake.stats().requests, before + 1, "one upstream call for 50 requests");
    let counters = proxy.counters(None);
    assert_eq!((counters.coalesced, counters.in_flight), (49, 0));
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_invalidates_what_was_read_of_its_repository() {
    // No probe (max age 0): the counts below are the query's alone.
    let h = Harness::start(fake_config(), |c| c.graphql_max_age = std::time::Duration::ZERO).await;
    let issues = |answer: &support::Answer| answer.json()["data"]["repository"]["issues"]["totalCount"].as_u64();
    let first = h.graphql("alice-token-1", support::ISSUES, hello()).await;
    let listed = h.get("alice-token-1", ISSUES_PATH).await;
    assert_eq!(
        h.graphql("alice-token-1", support::ISSUES, hello()).await.body,
        first.body
    );
    assert_eq!(
        h.proxy().counters(None).cache_hits,
        1,
        "the query was answered from the window"
    );
    let created = crate::support::send(
        h.client
            .post(h.url(ISSUES_PATH))
            .header("authorization", "token alice-token-2")
            .json(&serde_json::json!({ "title": "Written through the proxy" })),
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.body);
    // The GraphQL answer (another token's, of the same repository) is asked again…
    let upstream = h.upstream_requests();
    let again = h.graphql("alice-token-1", support::ISSUES, hello()).await;
    assert_eq!(
        h.upstream_requests(),
        upstream + 1,
        "not served from the window after the write"
    );
    assert_eq!(issues(&again), issues(&first).map(|n| n + 1));
    assert!(again.body.contains("Written through the proxy"));
    // …and the REST list shows the new issue.
    let relisted = h.get("alice-token-1", ISSUES_PATH).await;
    assert_ne!(relisted.body, listed.body);
    assert!(relisted.body.contains("Written through the proxy"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_through_a_percent_encoded_path_invalidates_its_repository() {
    // The peer reads paths as GitHub does: /repos/%6Fcto/hello is octo/hello.
    let peer = support::Peer::start().await;
    let (proxy, addr, _store, _sqlite) = support::proxy_to(&peer.url(), |_| {}).await;
    let client = support::client();
    let query = || {
        support::send(
            client
                .post(format!("http://{addr}/graphql"))
                .header("authorization", "bearer alice-1")
                .json(&serde_json::json!({ "query": support::ISSUES, "variables": hello() })),
        )
    };
    let first = query().await;
    assert_eq!(query().await.body, first.body, "answered from the window");
    let written = support::send(
        client
            .post(format!("http://{addr}/repos/%6Fcto/hello/issues"))
            .header("authorization", "token alice-1")
            .json(&serde_json::json!({ "title": "x" })),
    )
    .await;
    assert_eq!(written.status, 201);
    let again = query().await;
    assert_ne!(
        again.body, first.body,
        "the write dropped the window's answer: {}",
        again.body
    );
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clients_own_validator_is_used_when_the_proxy_holds_nothing() {
    let h = Harness::start(fake_config(), |_| {}).await;
    assert_eq!(h.get("alice-token-1", "/user").await.status, 200);
    // The client read GitHub itself before (or the proxy restarted since): it holds an ETag.
    let direct = support::send(
        h.client
            .get(format!("{}{ISSUES_PATH}", h.fake.url()))
            .header("authorization", "token alice-token-1"),
    )
    .await;
    let etag = direct.header("etag").expect("an ETag").to_string();
    let before = h.fake.stats().user("alice");
    let answer = support::send(
        h.client
            .get(h.url(ISSUES_PATH))
            .header("authorization", "token alice-token-1")
            .header("if-none-match", &etag),
    )
    .await;
    assert_eq!(answer.status, 304, "{}", answer.body);
    let after = h.fake.stats().user("alice");
    assert_eq!(
        after.core_used, before.core_used,
        "GitHub's 304 was free; a full read is not"
    );
    assert_eq!(after.not_modified, before.not_modified + 1);
    assert_eq!(h.proxy().counters(None).not_modified, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_answered_across_a_write_is_not_kept() {
    let peer = support::Peer::start().await;
    let (proxy, addr, _store, _sqlite) = support::proxy_to(&peer.url(), |_| {}).await;
    let client = support::client();
    let query = || {
        support::send(
            client
                .post(format!("http://{addr}/graphql"))
                .header("authorization", "bearer alice-1")
                .json(&serde_json::json!({ "query": support::ISSUES, "variables": hello() })),
        )
    };
    assert_eq!(
        support::send(
            client
                .get(format!("http://{addr}/user"))
                .header("authorization", "bearer alice-1")
        )
        .await
        .status,
        200
    );
    // A query in flight (the upstream holds it) while a write to its repository completes.
    peer.hold_graphql.store(true, std::sync::atomic::Ordering::SeqCst);
    let held = tokio::spawn(query());
    eventually_async(Duration::from_secs(20), "the query reached the upstream", || async {
        (!peer.requests("POST /graphql").is_empty()).then_some(())
    })
    .await;
    let written = support::send(
        client
            .post(format!("http://{addr}/repos/octo/hello/issues"))
            .header("authorization", "token alice-1")
            .json(&serde_json::json!({ "title": "x" })),
    )
    .await;
    assert_eq!(written.status, 201);
    peer.hold_graphql.store(false, std::sync::atomic::Ordering::SeqCst);
    peer.release();
    let before_write = held.await.unwrap();
    assert_eq!(before_write.status, 200);
    // Its answer may predate the write: the next query asks GitHub.
    let after_write = query().await;
    assert_ne!(after_write.body, before_write.body, "not served from the window");
    assert_eq!(peer.requests("POST /graphql").len(), 2);
    proxy.shutdown().await;
}

/// A write keeps the validators of the repository's REST answers: a repeated GET of what
/// it did not change is a free 304 upstream, of what it changed a 200 with the new body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_keeps_validators_and_every_get_after_it_is_revalidated() {
    let h = Harness::start(fake_config(), |_| {}).await;
    let (unrelated, changed) = ("/repos/octo/hello/issues/1", "/repos/octo/hello/issues/2");
    let first = h.get("alice-token-1", unrelated).await;
    let old = h.get("alice-token-1", changed).await;
    assert_eq!((first.status, old.status), (200, 200));
    let comment = crate::support::send(
        h.client
            .post(h.url("/repos/octo/hello/issues/2/comments"))
            .header("authorization", "token alice-token-1")
            .json(&serde_json::json!({ "body": "a change" })),
    )
    .await;
    assert_eq!(comment.status, 201, "{}", comment.body);
    let before = h.fake.stats().user("alice");
    let again = h.get("alice-token-1", unrelated).await;
    assert_eq!(again.status, 200);
    assert_eq!(again.body, first.body);
    assert_eq!(again.header("x-arbiter-cache"), Some("revalidated"));
    let after = h.fake.stats().user("alice");
    assert_eq!(after.not_modified, before.not_modified + 1, "a 304 upstream");
    assert_eq!(after.core_used, before.core_used, "free");
    let new = h.get("alice-token-1", changed).await;
    assert_eq!(new.status, 200);
    assert_eq!(new.header("x-arbiter-cache"), Some("miss"));
    assert_eq!(new.json()["comments"], old.json()["comments"].as_u64().unwrap() + 1);
    assert_eq!(h.fake.stats().user("alice").core_used, after.core_used + 1);
}
