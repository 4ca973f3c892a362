//! Limits: a secondary limit's `retry-after` stops every caller of that identity, on every
//! proxy of the store; a primary limit's reset too; a request queues while it can wait.

use arbiter_fake_github::{Config, Limits};
use arbiter_github::Proxy;
use arbiter_testkit::each_backend;

use crate::support::{self, Harness, fake_config};

fn create_issue(h: &Harness, token: &str, title: &str) -> reqwest::RequestBuilder {
    h.client
        .post(h.url("/repos/octo/hello/issues"))
        .header("authorization", format!("token {token}"))
        .json(&serde_json::json!({ "title": title }))
}

fn get_now(client: &reqwest::Client, addr: std::net::SocketAddr, token: &str) -> reqwest::RequestBuilder {
    // Never read before (the query differs), so not a free revalidation.
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    client
        .get(format!("http://{addr}/repos/octo/hello/issues/1?n={n}"))
        .header("authorization", format!("token {token}"))
        .header("x-arbiter-max-wait", "0s")
}

fn one_content_per_minute() -> Config {
    Config {
        limits: Limits {
            content_per_minute: 1,
            ..Limits::default()
        },
        ..fake_config()
    }
}

each_backend!(
    a_secondary_limit_stops_every_caller_of_the_identity,
    |url: String| async move {
        let h = Harness::start_on(&url, one_content_per_minute(), |_| {}).await;
        // A second proxy (another host) on the same store.
        let other = Proxy::start(h.store.clone(), support::proxy_config(&h.fake.url(), "host-b"))
            .await
            .unwrap();
        let other_addr = other.listen_tcp("127.0.0.1:0".parse().unwrap()).await.unwrap();
        assert_eq!(
            support::send(get_now(&h.client, other_addr, "alice-token-2"))
                .await
                .status,
            200
        );

        assert_eq!(
            support::send(create_issue(&h, "alice-token-1", "one")).await.status,
            201
        );
        let refused = support::send(create_issue(&h, "alice-token-1", "two")).await;
        assert_eq!(
            refused.status, 403,
            "GitHub's own refusal is passed on: {}",
            refused.body
        );
        assert!(refused.header("retry-after").is_some());
        assert_eq!(h.fake.stats().user("alice").secondary_hits, 1);

        let upstream = h.upstream_requests();
        // This proxy, and the other one with alice's other token: arbiter answers, GitHub sees nothing.
        for (addr, token) in [(h.addr, "alice-token-1"), (other_addr, "alice-token-2")] {
            let answer = support::send(get_now(&h.client, addr, token)).await;
            assert_eq!(answer.status, 429, "{}", answer.body);
            assert_eq!(answer.header("x-arbiter"), Some("proxy"));
            let seconds: u64 = answer.header("retry-after").expect("a Retry-After").parse().unwrap();
            assert!(seconds >= 1);
            assert_eq!(answer.json()["error"], "limited");
            assert!(answer.json()["bucket"].as_str().unwrap().starts_with("github/alice/"));
        }
        assert_eq!(h.upstream_requests(), upstream, "nothing reached GitHub while frozen");
        assert_eq!(h.fake.stats().user("alice").secondary_hits, 1);
        assert_eq!((h.proxy().counters(None).limited, other.counters(None).limited), (1, 1));
        // Another identity is not held back.
        assert_eq!(
            support::send(get_now(&h.client, h.addr, "bob-token-1")).await.status,
            200
        );
        other.shutdown().await;
    }
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_can_wait_is_queued_until_the_limit_passes() {
    // A minute lasts a second: the content limit's retry-after is about a second.
    let config = Config {
        scale: 60.0,
        ..one_content_per_minute()
    };
    let h = Harness::start(config, |_| {}).await;
    assert_eq!(
        support::send(create_issue(&h, "alice-token-1", "one")).await.status,
        201
    );
    assert_eq!(
        support::send(create_issue(&h, "alice-token-1", "two")).await.status,
        403
    );
    let upstream = h.upstream_requests();
    let answer = h.get("alice-token-1", "/repos/octo/hello/issues/1").await;
    assert_eq!(answer.status, 200, "queued, then forwarded: {}", answer.body);
    assert_eq!(h.upstream_requests(), upstream + 1);
    assert_eq!(
        h.fake.stats().user("alice").secondary_hits,
        1,
        "GitHub refused nothing more"
    );
    assert!(h.proxy().counters(None).queued_ms > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spent_primary_budget_is_answered_by_arbiter_not_github() {
    let config = Config {
        limits: Limits {
            core: 6,
            ..Limits::default()
        },
        ..fake_config()
    };
    let h = Harness::start(config, |_| {}).await;
    assert_eq!(
        h.get("alice-token-2", "/user").await.status,
        200,
        "token 2's identity is known"
    );
    // Read until the budget is gone: GitHub says `remaining: 0` (or, when permits this
    // process held were spent first, refuses once), then arbiter answers.
    let mut n = 0;
    let stopped = loop {
        n += 1;
        assert!(n <= 10, "the budget of 6 never ran out");
        let answer = h
            .get("alice-token-1", &format!("/repos/octo/hello/issues/1?n={n}"))
            .await;
        if answer.status != 200 {
            break answer;
        }
    };
    assert!(matches!(stopped.status, 403 | 429), "{}", stopped.body);
    let upstream = h.upstream_requests();
    for token in ["alice-token-1", "alice-token-2"] {
        let answer = support::send(get_now(&h.client, h.addr, token)).await;
        assert_eq!(answer.status, 429, "{}", answer.body);
        assert_eq!(answer.json()["bucket"], "github/alice/core");
    }
    assert_eq!(h.upstream_requests(), upstream, "nothing reached GitHub");
    assert!(
        h.fake.stats().user("alice").primary_hits <= 1,
        "GitHub refused once at most"
    );
}
