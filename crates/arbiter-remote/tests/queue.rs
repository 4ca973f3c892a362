//! The queue methods of `Client` against a real `arbiter serve` (in process, on loopback)
//! on both backends: each returns the view the `arbiter_ops::queue` function of the same
//! name returns, and a stale claim token comes back as the store's `Lost` error.

use std::time::Duration;

use arbiter_core::ErrorKind;
use arbiter_core::lease::Holder;
use arbiter_core::name::{Capability, Namespace, QueueName};
use arbiter_core::queue::{ClaimRequest, FailRequest, ItemState, NewItem, NotBefore};
use arbiter_remote::Client;
use arbiter_server::{Auth, ServeConfig, Server};
use arbiter_store::{Store, StoreUrl};

fn new_item(queue: &QueueName, body: &str, key: Option<&str>, requires: &[&str]) -> NewItem {
    NewItem::new(
        Namespace::default(),
        queue.clone(),
        body.to_string(),
        key.map(str::to_string),
        0,
        requires.iter().map(|c| Capability::parse(c).unwrap()).collect(),
        None,
        3,
    )
    .unwrap()
}

fn claim_request(queue: &QueueName, capabilities: &[&str]) -> ClaimRequest {
    ClaimRequest {
        namespace: Namespace::default(),
        queue: queue.clone(),
        holder: Holder {
            host: "worker-host".to_string(),
            boot_id: String::new(),
            pid: 42,
            start_time: 0,
            agent: "remote-worker".to_string(),
            pgid: None,
        },
        capabilities: capabilities.iter().map(|c| Capability::parse(c).unwrap()).collect(),
        lease: Duration::from_secs(60),
    }
}

arbiter_testkit::each_backend!(the_queue_through_a_server, |url: String| async move {
    let store = Store::open(&StoreUrl::parse(&url).unwrap()).await.unwrap();
    let server = Server::start(
        store.clone(),
        ServeConfig::new("127.0.0.1:0".parse().unwrap(), Auth::Tokens),
    )
    .await
    .unwrap();
    let created = arbiter_ops::token::create(
        &store,
        arbiter_ops::token::CreateToken {
            name: "remote".to_string(),
            namespaces: "*".parse().unwrap(),
            scopes: "queue:write".parse().unwrap(),
            expires: None,
            replace: false,
        },
    )
    .await
    .unwrap();
    let client = Client::new(&format!("http://{}", server.addr()), Some(&created.secret)).unwrap();
    let ns = Namespace::default();
    let queue = QueueName::parse("ci/builds").unwrap();

    let pushed = client
        .queue_push(&new_item(&queue, "build 1", Some("commit/abc"), &[]))
        .await
        .unwrap();
    assert!(pushed.created);
    let again = client
        .queue_push(&new_item(&queue, "build 1 again", Some("commit/abc"), &[]))
        .await
        .unwrap();
    assert_eq!((again.id, again.created), (pushed.id, false));
    // Delayed by a time of the store's clock far ahead: not claimable now.
    let mut later = new_item(&queue, "later", None, &[]);
    later.not_before = Some(NotBefore::At(4_102_444_800_000));
    let later = client.queue_push(&later).await.unwrap();
    let gpu = client
        .queue_push(&new_item(&queue, "train", None, &["gpu"]))
        .await
        .unwrap();

    // A claim through the server is the view the store's claim gives, with the holder sent.
    let claim = client
        .queue_claim(&claim_request(&queue, &[]), None)
        .await
        .unwrap()
        .expect("an item to claim");
    assert_eq!(claim.id, pushed.id);
    assert_eq!(claim.body, "build 1");
    assert_eq!(claim.holder.agent, "remote-worker");
    assert_eq!(claim.holder.host, "worker-host");
    assert_eq!(claim.lease_ms, 60_000);
    // Nothing else without the capability (the delayed item is not ready), even after a
    // short wait.
    let none = client
        .queue_claim(&claim_request(&queue, &[]), Some(Duration::from_millis(200)))
        .await
        .unwrap();
    assert_eq!(none, None);

    let beat = client
        .queue_heartbeat(&ns, claim.id, claim.token, Duration::from_secs(120), Some(4242))
        .await
        .unwrap();
    assert_eq!(beat.state, ItemState::Claimed);
    let stale = client
        .queue_done(&ns, claim.id, claim.token + 1, None)
        .await
        .unwrap_err();
    assert_eq!(stale.kind, ErrorKind::Lost, "{stale:?}");
    let done = client.queue_done(&ns, claim.id, claim.token, Some("ok")).await.unwrap();
    assert_eq!(done.state, ItemState::Done);
    assert_eq!(done.result.as_deref(), Some("ok"));

    let claim = client
        .queue_claim(&claim_request(&queue, &["gpu"]), Some(Duration::from_secs(5)))
        .await
        .unwrap()
        .expect("the GPU item");
    assert_eq!(claim.id, gpu.id);
    let failed = client
        .queue_fail(&FailRequest {
            namespace: ns.clone(),
            id: claim.id,
            token: claim.token,
            reason: "no driver".to_string(),
            retry_in: Some(Duration::from_secs(3600)),
        })
        .await
        .unwrap();
    assert_eq!(failed.state, ItemState::Ready);
    assert_eq!(failed.last_error.as_deref(), Some("no driver"));
    let retry = client.queue_retry(&ns, gpu.id).await.unwrap_err();
    assert_eq!(
        retry.kind,
        ErrorKind::Conflict,
        "only dead or cancelled items: {retry:?}"
    );

    let listed = client
        .queue_list(&ns, Some(&queue), Some(ItemState::Done), 10)
        .await
        .unwrap();
    assert_eq!(listed.iter().map(|i| i.id).collect::<Vec<_>>(), [pushed.id]);
    assert_eq!(
        client.queue_list(&ns, Some(&queue), None, 10).await.unwrap(),
        arbiter_ops::queue::list(&store, &ns, Some(&queue), None, 10)
            .await
            .unwrap(),
        "the same views as the store's"
    );
    let shown = client.queue_show(&ns, gpu.id).await.unwrap();
    assert_eq!(shown, arbiter_ops::queue::show(&store, &ns, gpu.id).await.unwrap());
    assert_eq!(shown.attempts.len(), 1);
    let shown_later = client.queue_show(&ns, later.id).await.unwrap();
    assert_eq!(shown_later.item.not_before, "2100-01-01T00:00:00.000Z");
    let missing = client.queue_show(&ns, 999_999).await.unwrap_err();
    assert_eq!(missing.kind, ErrorKind::NotFound);

    let stats = client.queue_stats(&ns).await.unwrap();
    assert_eq!(stats.len(), 1);
    assert_eq!((stats[0].done, stats[0].delayed), (1, 2), "{stats:?}");
    assert_eq!(client.queue_hosts(&ns).await.unwrap(), Vec::new());

    server.shutdown().await.unwrap();
});
