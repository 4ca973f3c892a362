//! The proxy's promises under attack: keys that take every header that changes an answer,
//! paths that cannot be rewritten into others, answers too large to hold streamed, bad
//! tokens that make no buckets, a stalled upstream or store that does not hang clients,
//! HTTP details (HEAD lengths).

use std::time::Duration;

use arbiter_testkit::eventually_async;
use arbiter_testkit::net::StallProxy;

use crate::support::{self, BIG_PART, Harness, Peer, fake_config, proxy_to, raw};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_that_differ_in_any_header_are_not_coalesced() {
    let peer = Peer::start().await;
    let link = StallProxy::start(peer.addr);
    let (proxy, addr, _store, _sqlite) = proxy_to(&format!("http://{}", link.addr()), |_| {}).await;
    let client = support::client();
    let get = |extra: &'static [(&'static str, &'static str)]| {
        let mut request = client
            .get(format!("http://{addr}/echo"))
            .header("authorization", "token alice-1");
        for (name, value) in extra {
            request = request.header(*name, *value);
        }
        support::send(request)
    };
    assert_eq!(get(&[]).await.status, 200, "alice is known");
    link.freeze();
    // One credential, one path: only a header differs (a second Accept value, a Range,
    // a time zone): each is its own request, answered as asked.
    let variants: [&'static [(&'static str, &'static str)]; 4] = [
        &[("accept", "application/json")],
        &[
            ("accept", "application/json"),
            ("accept", "application/vnd.github.v3.raw"),
        ],
        &[("accept", "application/json"), ("range", "bytes=0-1")],
        &[("accept", "application/json"), ("time-zone", "Europe/Paris")],
    ];
    let answers: Vec<_> = variants.iter().map(|v| tokio::spawn(get(v))).collect();
    eventually_async(Duration::from_secs(20), "four requests in the proxy", || async {
        (proxy.counters(None).in_flight == 4).then_some(())
    })
    .await;
    link.resume();
    let mut echoed = Vec::new();
    for answer in answers {
        let answer = answer.await.unwrap();
        assert_eq!(answer.status, 200, "{}", answer.body);
        echoed.push(answer.json());
    }
    assert_eq!(echoed[0]["accept"], serde_json::json!(["application/json"]));
    assert_eq!(
        echoed[1]["accept"],
        serde_json::json!(["application/json", "application/vnd.github.v3.raw"])
    );
    assert_eq!(echoed[2]["range"], serde_json::json!(["bytes=0-1"]));
    assert_eq!(echoed[3]["time-zone"], serde_json::json!(["Europe/Paris"]));
    assert_eq!(proxy.counters(None).coalesced, 0);
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paths_url_parsing_would_rewrite_and_second_credentials_are_refused() {
    let h = Harness::start(fake_config(), |_| {}).await;
    assert_eq!(h.get("alice-token-1", "/user").await.status, 200);
    let before = h.upstream_requests();
    for target in [
        "/repos/x/y/../../octo/hello/issues/1",
        "/repos/octo/hello/issues/1/..",
        "/repos/x/%2e%2E/octo/hello",
        "/repos/x/.%2e/octo/hello",
        "/./user",
    ] {
        let request = format!(
            "GET {target} HTTP/1.1\r\nHost: api.github.com\r\nAuthorization: token alice-token-1\r\nConnection: close\r\n\r\n"
        );
        let (status, answer) = raw(tokio::net::TcpStream::connect(h.addr).await.unwrap(), &request).await;
        assert_eq!(status, 400, "{target}: {answer}");
        assert!(answer.contains("dot segments"), "{answer}");
    }
    // Two credentials: which one GitHub would use is not the proxy's guess to make.
    let request = "GET /user HTTP/1.1\r\nHost: api.github.com\r\nAuthorization: token alice-token-1\r\n\
                   Authorization: token bob-token-1\r\nConnection: close\r\n\r\n";
    let (status, answer) = raw(tokio::net::TcpStream::connect(h.addr).await.unwrap(), request).await;
    assert_eq!(status, 400, "{answer}");
    assert!(answer.contains("one Authorization header"), "{answer}");
    assert_eq!(h.upstream_requests(), before, "nothing was forwarded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_larger_than_the_proxy_holds_is_streamed_and_not_kept() {
    let peer = Peer::start().await;
    // Answers over 128 KiB are not held.
    let (proxy, addr, _store, _sqlite) = proxy_to(&peer.url(), |c| c.cache_bytes = 1 << 20).await;
    let client = support::client();
    let get = || {
        client
            .get(format!("http://{addr}/big"))
            .header("authorization", "token alice-1")
    };
    let mut response = get().send().await.unwrap();
    assert_eq!(response.status(), 200);
    // The first part reaches the client while the upstream still holds back the second:
    // the proxy does not wait for the whole answer.
    let mut body = Vec::new();
    while body.len() < BIG_PART {
        let chunk = response.chunk().await.unwrap().expect("the first part");
        body.extend_from_slice(&chunk);
    }
    peer.release();
    while let Some(chunk) = response.chunk().await.unwrap() {
        body.extend_from_slice(&chunk);
    }
    assert_eq!(body.len(), 2 * BIG_PART);
    assert!(body[..BIG_PART].iter().all(|b| *b == b'a') && body[BIG_PART..].iter().all(|b| *b == b'b'));
    // Not kept: the next read is a full one, without a validator.
    peer.release();
    let again = get().send().await.unwrap();
    assert_eq!(again.bytes().await.unwrap().len(), 2 * BIG_PART);
    let asked = peer.requests("GET /big");
    assert_eq!(asked.len(), 2);
    assert!(asked.iter().all(|h| h.get("if-none-match").is_none()));
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_body_is_streamed_to_the_upstream_not_held() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let peer = Peer::start().await;
    let (proxy, addr, _store, _sqlite) = proxy_to(&peer.url(), |_| {}).await;
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /upload HTTP/1.1\r\nHost: api.github.com\r\nAuthorization: token alice-1\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        2 * BIG_PART
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&vec![b'a'; BIG_PART]).await.unwrap();
    // The upstream has the first half while the client still holds back the second.
    // (Bounded: a proxy that waited for the whole body would wait forever.)
    tokio::time::timeout(Duration::from_secs(30), peer.uploaded.notified())
        .await
        .expect("the first half reached the upstream before the second was sent");
    stream.write_all(&vec![b'b'; BIG_PART]).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        answer.contains(&format!("{{\"received\":{}}}", 2 * BIG_PART)),
        "{answer}"
    );
    let sent = peer.requests("POST /upload");
    assert_eq!(
        sent[0].get("content-length").and_then(|v| v.to_str().ok()),
        Some((2 * BIG_PART).to_string().as_str()),
        "the client's length, not chunks"
    );
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_answer_keeps_the_upstreams_length() {
    let peer = Peer::start().await;
    let (proxy, addr, _store, _sqlite) = proxy_to(&peer.url(), |_| {}).await;
    let client = support::client();
    let get = support::send(
        client
            .get(format!("http://{addr}/echo"))
            .header("authorization", "token alice-1"),
    )
    .await;
    let head = support::send(
        client
            .head(format!("http://{addr}/echo"))
            .header("authorization", "token alice-1"),
    )
    .await;
    assert_eq!(head.status, 200);
    assert_eq!(
        head.header("content-length"),
        Some(get.body.len().to_string().as_str()),
        "a HEAD says how long the GET's answer is"
    );
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_github_refuses_is_answered_and_makes_no_buckets() {
    let peer = Peer::start().await;
    let (proxy, addr, store, _sqlite) = proxy_to(&peer.url(), |_| {}).await;
    let client = support::client();
    for n in 0..3 {
        let answer = support::send(
            client
                .get(format!("http://{addr}/echo"))
                .header("authorization", format!("token bad-{n}")),
        )
        .await;
        assert_eq!(answer.status, 401, "GitHub's own refusal: {}", answer.body);
        assert!(answer.body.contains("Bad credentials"));
    }
    assert_eq!(peer.requests("GET /user").len(), 3, "each bad token asked once");
    assert!(peer.requests("GET /echo").is_empty(), "nothing forwarded");
    let ns = arbiter_core::name::Namespace::parse("proxy").unwrap();
    let buckets = store.limits().list(&ns).await.unwrap();
    assert!(buckets.is_empty(), "no bucket for bad tokens: {buckets:?}");
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_whose_user_is_out_of_budget_is_not_looked_up_again_and_again() {
    let peer = Peer::start().await;
    let (proxy, addr, _store, _sqlite) = proxy_to(&peer.url(), |_| {}).await;
    let client = support::client();
    for n in 0..3 {
        let answer = support::send(
            client
                .get(format!("http://{addr}/echo?n={n}"))
                .header("authorization", "token spent-1")
                .header("x-arbiter-max-wait", "0s"),
        )
        .await;
        assert_eq!(answer.status, 429, "arbiter's own, until the reset: {}", answer.body);
        assert!(answer.header("retry-after").is_some());
    }
    assert_eq!(
        peer.requests("GET /user").len(),
        1,
        "GitHub refused to say who the token is once; it is not asked again before the reset"
    );
    assert!(peer.requests("GET /echo").is_empty(), "nothing forwarded");
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_upstream_is_asked_once_who_a_token_is_and_answers_time_out() {
    let peer = Peer::start().await;
    let link = StallProxy::start(peer.addr);
    let (proxy, addr, _store, _sqlite) = proxy_to(&format!("http://{}", link.addr()), |c| {
        c.upstream_timeout = Duration::from_millis(300);
    })
    .await;
    link.freeze();
    let client = support::client();
    let answers: Vec<_> = (0..3)
        .map(|_| {
            tokio::spawn(support::send(
                client
                    .get(format!("http://{addr}/echo"))
                    .header("authorization", "token carol-1"),
            ))
        })
        .collect();
    for answer in answers {
        let answer = answer.await.unwrap();
        assert_eq!(answer.status, 504, "{}", answer.body);
        assert_eq!(answer.json()["error"], "unavailable");
    }
    // One `GET /user` for the three (not one after another), then each request's own.
    assert_eq!(proxy.counters(None).upstream_calls, 1 + 3);
    link.resume();
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_store_does_not_hang_requests_or_shutdown() {
    let Some(url) = arbiter_testkit::postgres_url("github_stalled_store").await else {
        return;
    };
    let link = StallProxy::start(arbiter_testkit::net::postgres_server_addr(&url));
    // The store's own statement deadline is long: the proxy's must not wait for it.
    let store_url = format!("{}&statement_timeout=300s", link.postgres_url(&url));
    let h = Harness::start_on(&store_url, fake_config(), |c| {
        c.store_timeout = Duration::from_millis(300);
    })
    .await;
    assert_eq!(h.get("alice-token-1", "/repos/octo/hello/issues/1").await.status, 200);
    link.freeze();
    // The store does not answer: the request is forwarded anyway (GitHub still enforces
    // its limits), and its answer is not held back by recording the limits it reported.
    for n in 0..2 {
        let answer = support::send(
            h.client
                .get(h.url(&format!("/repos/octo/hello/issues/2?n={n}")))
                .header("authorization", "token alice-token-1")
                .header("x-arbiter-max-wait", "0s"),
        )
        .await;
        assert_eq!(answer.status, 200, "{}", answer.body);
    }
    let mut h = h;
    h.proxy.take().unwrap().shutdown().await;
    link.resume();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pagination_links_lead_back_to_the_proxy_and_redirects_are_not_followed() {
    let h = Harness::start(fake_config(), |_| {}).await;
    let first = h.get("alice-token-1", "/repos/octo/hello/issues?per_page=2").await;
    let link = first.header("link").expect("a Link header").to_string();
    let here = format!("http://{}/", h.addr);
    let next = link
        .split(',')
        .find(|l| l.contains("rel=\"next\""))
        .and_then(|l| l.split(['<', '>']).nth(1))
        .expect("a next page")
        .to_string();
    assert!(next.starts_with(&here), "the next page is the proxy's: {link}");
    assert!(!link.contains(&h.fake.url()), "no way around the proxy: {link}");
    let calls = h.proxy().counters(None).upstream_calls;
    let second = support::send(h.client.get(&next).header("authorization", "token alice-token-1")).await;
    assert_eq!(second.status, 200, "{}", second.body);
    assert_ne!(second.body, first.body);
    assert_eq!(h.proxy().counters(None).upstream_calls, calls + 1, "through the proxy");

    // A redirect is the client's to follow (or not), with its own judgement of where.
    let peer = Peer::start().await;
    let (proxy, addr, _store, _sqlite) = proxy_to(&peer.url(), |_| {}).await;
    let answer = support::send(
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap()
            .get(format!("http://{addr}/moved"))
            .header("authorization", "token alice-1"),
    )
    .await;
    assert_eq!(answer.status, 302);
    assert_eq!(answer.header("location"), Some("http://elsewhere.example/steal"));
    assert_eq!(peer.requests("GET /moved").len(), 1);
    proxy.shutdown().await;
}
