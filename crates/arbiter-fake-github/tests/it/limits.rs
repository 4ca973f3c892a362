use std::time::Duration;

use arbiter_fake_github::Limits;
use arbiter_testkit::eventually_async;
use serde_json::json;

use crate::{client, config, get, send, start};

#[tokio::test]
async fn two_tokens_of_one_user_spend_one_budget_and_a_primary_hit_says_so() {
    let fake = start(config(Limits {
        core: 4,
        ..Limits::default()
    }))
    .await;
    let client = client();
    for token in ["a1", "a2", "a1", "a2"] {
        assert_eq!(get(&client, &fake, "/user", token).await.status, 200);
    }
    for token in ["a1", "a2"] {
        let refused = get(&client, &fake, "/repos/o/r", token).await;
        assert_eq!(refused.status, 403);
        assert_eq!(refused.header("x-ratelimit-remaining"), "0");
        assert_eq!(refused.header("x-ratelimit-used"), "4");
        assert!(
            refused.body["message"]
                .as_str()
                .unwrap()
                .starts_with("API rate limit exceeded"),
            "{:?}",
            refused.body
        );
        assert!(refused.headers.get("retry-after").is_none());
    }
    // A write is refused too, and changes nothing.
    let write = send(
        &client,
        &fake,
        "POST",
        "/repos/o/r/issues",
        "a1",
        &[],
        Some(json!({"title": "t"})),
    )
    .await;
    assert_eq!(write.status, 403);
    // Another user has a budget of their own.
    assert_eq!(get(&client, &fake, "/user", "b1").await.status, 200);
    let stats = fake.stats();
    assert_eq!(stats.user("alice").core_used, 4);
    assert_eq!(stats.user("alice").primary_hits, 3);
    assert_eq!(stats.user("bob").core_used, 1);
    let issues = get(&client, &fake, "/repos/o/r/issues?state=all&per_page=100", "b1").await;
    assert_eq!(
        issues.body.as_array().unwrap().len(),
        13,
        "the refused write created nothing"
    );
}

#[tokio::test]
async fn a_primary_window_resets_whole_in_scaled_time_and_429_can_be_chosen() {
    let mut config = config(Limits {
        core: 2,
        status: 429,
        ..Limits::default()
    });
    config.scale = 36_000.0; // an hour lasts 100 ms
    let fake = start(config).await;
    let client = client();
    get(&client, &fake, "/user", "a1").await;
    get(&client, &fake, "/user", "a1").await;
    // Either the window is still open and refuses with 429, or it has reset already.
    let third = get(&client, &fake, "/user", "a1").await;
    assert!(matches!(third.status, 429 | 200), "{third:?}");
    let fresh = eventually_async(Duration::from_secs(10), "the window to reset", || async {
        let got = get(&client, &fake, "/user", "a1").await;
        (got.status == 200 && got.header("x-ratelimit-used") == "1").then_some(got)
    })
    .await;
    assert_eq!(fresh.header("x-ratelimit-remaining"), "1");
}

#[tokio::test]
async fn too_many_requests_in_flight_is_a_secondary_hit_with_retry_after() {
    let mut config = config(Limits {
        concurrency: 2,
        ..Limits::default()
    });
    config.latency = Duration::from_secs(1); // holds each request in flight
    config.scale = 60.0; // the minute of backoff lasts a second
    let fake = start(config).await;
    let client = client();
    let answers = futures_join(&client, &fake, 6).await;
    let refused: Vec<_> = answers.iter().filter(|a| a.status == 403).collect();
    assert!(!refused.is_empty(), "6 at once over a limit of 2: {answers:?}");
    for answer in &refused {
        assert_eq!(answer.header("retry-after"), "1");
        assert!(
            answer.body["message"]
                .as_str()
                .unwrap()
                .contains("secondary rate limit")
        );
        assert_ne!(answer.header("x-ratelimit-remaining"), "0", "not a primary limit");
    }
    let stats = fake.stats().user("alice");
    assert!(stats.max_concurrency >= 3, "{stats:?}");
    assert_eq!(stats.secondary_hits, refused.len() as u64);
    assert_eq!(
        stats.core_used,
        6 - refused.len() as u64,
        "a refused request costs nothing"
    );
}

async fn futures_join(client: &reqwest::Client, fake: &arbiter_fake_github::FakeGitHub, n: usize) -> Vec<crate::Got> {
    let mut tasks = Vec::new();
    for i in 0..n {
        let client = client.clone();
        let url = fake.url();
        let token = if i % 2 == 0 { "a1" } else { "a2" };
        tasks.push(tokio::spawn(async move {
            let response = client
                .get(format!("{url}/user"))
                .header("authorization", format!("Bearer {token}"))
                .send()
                .await
                .unwrap();
            crate::Got {
                status: response.status().as_u16(),
                headers: response.headers().clone(),
                body: response.json().await.unwrap(),
            }
        }));
    }
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.unwrap());
    }
    answers
}

#[tokio::test]
async fn points_per_minute_refuse_and_block_the_user_until_retry_after() {
    let mut config = config(Limits {
        rest_points: 11,
        ..Limits::default()
    });
    config.scale = 20.0; // a minute lasts 3 s: far longer than these four requests
    let fake = start(config).await;
    let client = client();
    // Two writes (5 points each) and a read (1): 11 points.
    for _ in 0..2 {
        let edit = send(
            &client,
            &fake,
            "PATCH",
            "/repos/o/r/issues/1",
            "a1",
            &[],
            Some(json!({"title": "t"})),
        )
        .await;
        assert_eq!(edit.status, 200);
    }
    assert_eq!(get(&client, &fake, "/user", "a2").await.status, 200);
    let refused = get(&client, &fake, "/user", "a1").await;
    assert_eq!(refused.status, 403);
    assert!(refused.number("retry-after") >= 1);
    assert!(
        refused.body["message"]
            .as_str()
            .unwrap()
            .contains("secondary rate limit")
    );
    // Every token of the user waits; another user does not.
    assert_eq!(get(&client, &fake, "/user", "b1").await.status, 200);
    eventually_async(Duration::from_secs(10), "the user to be admitted again", || async {
        (get(&client, &fake, "/user", "a2").await.status == 200).then_some(())
    })
    .await;
    assert!(fake.stats().user("alice").secondary_hits >= 1);
}

#[tokio::test]
async fn content_creation_is_limited_per_minute_with_retry_after() {
    let fake = start(config(Limits {
        content_per_minute: 2,
        ..Limits::default()
    }))
    .await;
    let client = client();
    for n in 1..=2 {
        let path = format!("/repos/o/r/issues/{n}/comments");
        let created = send(&client, &fake, "POST", &path, "a1", &[], Some(json!({"body": "x"}))).await;
        assert_eq!(created.status, 201);
    }
    let third = send(
        &client,
        &fake,
        "POST",
        "/repos/o/r/issues",
        "a2",
        &[],
        Some(json!({"title": "x"})),
    )
    .await;
    assert_eq!(third.status, 403);
    let wait = third.number("retry-after");
    assert!((1..=60).contains(&wait), "retry-after {wait}");
    // Reads are refused too until then: the user is blocked.
    let read = get(&client, &fake, "/user", "a1").await;
    assert_eq!(read.status, 403);
    assert!(read.headers.get("retry-after").is_some());
    let stats = fake.stats().user("alice");
    assert_eq!(stats.content_created, 2);
    assert_eq!(stats.secondary_hits, 2);
}
