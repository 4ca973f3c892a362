use arbiter_fake_github::Limits;
use serde_json::json;

use crate::{client, config, graphql, send, start};

const LIST: &str = "query { repository(owner: \"o\", name: \"r\") { issues(first: 30, states: [OPEN]) { totalCount nodes { number labels(first: 100) { nodes { name } } } } } rateLimit { cost remaining } }";

#[tokio::test]
async fn a_small_query_costs_one_point_of_the_graphql_budget() {
    let fake = start(config(Limits::default())).await;
    let client = client();
    let first = graphql(&client, &fake, "a1", LIST).await;
    assert_eq!(first.status, 200);
    assert_eq!(first.header("x-ratelimit-resource"), "graphql");
    assert_eq!(first.header("x-ratelimit-used"), "1");
    assert_eq!(first.body["data"]["repository"]["issues"]["totalCount"], 10);
    assert_eq!(first.body["data"]["rateLimit"]["cost"], 1);
    assert_eq!(first.body["data"]["rateLimit"]["remaining"], 4999);
    let second = graphql(&client, &fake, "a2", LIST).await;
    assert_eq!(second.header("x-ratelimit-used"), "2", "one budget per user");
    let stats = fake.stats().user("alice");
    assert_eq!((stats.graphql_used, stats.core_used), (2, 0));
}

#[tokio::test]
async fn a_costly_query_over_the_limit_is_answered_200_with_rate_limited() {
    let fake = start(config(Limits {
        graphql: 50,
        ..Limits::default()
    }))
    .await;
    let client = client();
    // 1 + 100 + 100×100 requests: cost 101, over a budget of 50.
    let costly = "{ repository(owner: \"o\", name: \"r\") { issues(first: 100) { nodes { labels(first: 100) { nodes { assignees(first: 100) { totalCount } } } } } } }";
    let refused = graphql(&client, &fake, "a1", costly).await;
    assert_eq!(refused.status, 200);
    assert_eq!(refused.body["errors"][0]["type"], "RATE_LIMITED");
    assert!(refused.body.get("data").is_none());
    assert_eq!(refused.header("x-ratelimit-remaining"), "0");
    assert_eq!(refused.header("x-ratelimit-resource"), "graphql");
    // Small queries still fit; REST's core budget is untouched.
    let small = graphql(&client, &fake, "a1", LIST).await;
    assert!(small.body.get("errors").is_none(), "{:?}", small.body);
    let rest = crate::get(&client, &fake, "/user", "a1").await;
    assert_eq!(rest.header("x-ratelimit-remaining"), "4999");
    assert_eq!(fake.stats().user("alice").primary_hits, 1);
}

#[tokio::test]
async fn a_mutation_costs_five_secondary_points_and_creates_content() {
    let fake = start(config(Limits {
        graphql_points: 7,
        ..Limits::default()
    }))
    .await;
    let client = client();
    let id = graphql(
        &client,
        &fake,
        "a1",
        "{ repository(owner: \"o\", name: \"r\") { issue(number: 2) { id } } }",
    )
    .await;
    let id = id.body["data"]["repository"]["issue"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let mutation = json!({
        "query": "mutation($id: ID!) { addComment(input: {subjectId: $id, body: \"hello\"}) { commentEdge { node { body } } subject { ... on Issue { comments { totalCount } } } } }",
        "variables": {"id": id},
    });
    let added = send(&client, &fake, "POST", "/graphql", "a1", &[], Some(mutation.clone())).await;
    assert_eq!(added.status, 200);
    let payload = &added.body["data"]["addComment"];
    assert_eq!(payload["commentEdge"]["node"]["body"], "hello");
    assert_eq!(payload["subject"]["comments"]["totalCount"], 3);
    // 1 + 5 points spent of 7: another mutation is over the secondary limit.
    let refused = send(&client, &fake, "POST", "/graphql", "a2", &[], Some(mutation)).await;
    assert_eq!(refused.status, 403);
    assert!(refused.number("retry-after") >= 1);
    let stats = fake.stats().user("alice");
    assert_eq!(stats.content_created, 1);
    assert_eq!(stats.secondary_hits, 1);
}

#[tokio::test]
async fn bad_documents_are_answered_as_github_does() {
    let fake = start(config(Limits::default())).await;
    let client = client();
    let syntax = graphql(&client, &fake, "a1", "query { repository(").await;
    assert_eq!(syntax.status, 200);
    assert!(
        syntax.body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("Syntax error")
    );
    let not_json = client
        .post(format!("{}/graphql", fake.url()))
        .header("authorization", "token a1")
        .body("{")
        .send()
        .await
        .unwrap();
    assert_eq!(not_json.status().as_u16(), 400);
}
