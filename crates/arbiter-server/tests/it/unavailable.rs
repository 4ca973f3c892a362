//! PostgreSQL only (SQLite has no link to lose): a store that stops answering makes the
//! server answer 503 `unavailable` — `/readyz`, the API, `/metrics` — and it recovers
//! with the store, without a restart.

use arbiter_testkit::net::{StallProxy, postgres_server_addr};
use serde_json::json;

use crate::Api;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_store_is_503_until_it_answers_again() {
    let Some(url) = arbiter_testkit::postgres_url("a_silent_store_is_503_until_it_answers_again").await else {
        return;
    };
    // Migrate the schema directly, so the server's own open is quick.
    arbiter_store::Store::open(&arbiter_store::StoreUrl::parse(&url).unwrap())
        .await
        .unwrap();
    let proxy = StallProxy::start(postgres_server_addr(&url));
    let api = Api::start(&format!(
        "{}&statement_timeout=1s&connect_timeout=1",
        proxy.postgres_url(&url)
    ))
    .await;
    api.get("/readyz").await.expect(200);

    proxy.freeze();
    let answer = api.get("/readyz").await.error(503, "unavailable", None);
    assert!(answer["message"].as_str().unwrap().contains("1s"), "{answer}");
    api.put("/v1/ns/default/kv/k", json!({"value": "v"}))
        .await
        .error(503, "unavailable", None);
    api.get("/metrics").await.error(503, "unavailable", None);
    api.get("/healthz").await.expect(200);

    proxy.resume();
    arbiter_testkit::eventually_async(
        std::time::Duration::from_secs(30),
        "the store answers again",
        || async { (api.get("/readyz").await.status == 200).then_some(()) },
    )
    .await;
    api.put("/v1/ns/default/kv/k", json!({"value": "v"})).await.expect(200);
}
