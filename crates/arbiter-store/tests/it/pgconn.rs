//! PostgreSQL only: a link to the server that goes silent after the store was opened (a
//! real server behind `StallProxy`, frozen and resumed).

use std::time::Duration;

use arbiter_core::ErrorKind;
use arbiter_store::{Store, StoreUrl, Topic};
use arbiter_testkit::net::{StallProxy, postgres_server_addr};

use crate::{n, ns};

async fn open(url: &str) -> Store {
    Store::open(&StoreUrl::parse(url).expect("a store URL"))
        .await
        .expect("the store opens")
}

/// A bound for waits that should end much sooner; never asserted as a duration.
const BOUND: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_link_fails_statements_and_the_change_feed_reconnects() {
    let Some(url) =
        arbiter_testkit::postgres_url("a_silent_link_fails_statements_and_the_change_feed_reconnects").await
    else {
        return;
    };
    let direct = open(&url).await;
    let proxy = StallProxy::start(postgres_server_addr(&url));
    let store = open(&format!(
        "{}&statement_timeout=1s&connect_timeout=1",
        proxy.postgres_url(&url)
    ))
    .await;
    let at = proxy.addr().to_string();
    let mut subscription = store.changes().subscribe(Topic::Kv).await.expect("subscribed");

    proxy.freeze();
    // A statement on a pooled connection: its deadline passes and the store is
    // unavailable.
    let err = tokio::time::timeout(BOUND, store.kv().put(&ns(), &n("k"), "0", None))
        .await
        .expect("the put returns")
        .expect_err("the put fails");
    assert_eq!(err.kind, ErrorKind::Unavailable, "{err:?}");
    assert!(err.message.contains("did not answer within 1s"), "{}", err.message);
    // The next statement needs a new connection, which cannot be made: unavailable too,
    // and the message names the server.
    let err = tokio::time::timeout(BOUND, store.kv().put(&ns(), &n("k"), "1", None))
        .await
        .expect("the put returns")
        .expect_err("the put fails");
    assert_eq!(err.kind, ErrorKind::Unavailable, "{err:?}");
    assert!(err.message.contains(&at), "it names {at}: {}", err.message);
    // The LISTEN connection's probe meets the same deadline; its end wakes the waiter
    // (well before the wait's own 60 s).
    tokio::time::timeout(BOUND, subscription.wait(Duration::from_secs(60)))
        .await
        .expect("a silent change feed ends and wakes its waiter")
        .expect("a wait does not fail");

    proxy.resume();
    // The next wait starts a new LISTEN connection and returns, so the caller re-reads.
    tokio::time::timeout(BOUND, subscription.wait(Duration::from_secs(60)))
        .await
        .expect("the wait reconnects")
        .expect("a wait does not fail");
    // On the new connection a change wakes it again.
    let waiter = tokio::spawn(async move { subscription.wait(Duration::from_secs(60)).await });
    direct
        .kv()
        .put(&ns(), &n("k"), "2", None)
        .await
        .expect("a put on the direct link");
    tokio::time::timeout(BOUND, waiter)
        .await
        .expect("woken by the put")
        .expect("the waiter task")
        .expect("a wait does not fail");
    // And statements work again through the proxy (the dead connection was dropped).
    let value = store
        .kv()
        .get(&ns(), &n("k"))
        .await
        .expect("a get once the link is back");
    assert_eq!(value.map(|kv| kv.value).as_deref(), Some("2"));
}

/// Options arbiter cannot honour, and TLS files it cannot use, are bad input naming the
/// option — found before any connection is tried (port 1 would refuse it).
#[tokio::test]
async fn unusable_connection_options_are_bad_input_naming_the_option() {
    for (query, named) in [
        ("target_session_attrs=read-write", "target_session_attrs"),
        ("load_balance_hosts=random", "load_balance_hosts=random"),
        ("channel_binding=require", "channel_binding=require"),
        ("sslnegotiation=direct", "sslnegotiation=direct"),
        (
            "sslmode=verify-full&sslrootcert=/nonexistent/root.pem",
            "sslrootcert=/nonexistent/root.pem",
        ),
        (
            "sslcert=/nonexistent/c.pem&sslkey=/nonexistent/k.pem",
            "sslcert=/nonexistent/c.pem",
        ),
    ] {
        let url = StoreUrl::parse(&format!("postgres://postgres@127.0.0.1:1/test?{query}")).expect("it parses");
        let err = match Store::open(&url).await {
            Ok(_) => panic!("{query}: opened"),
            Err(err) => err,
        };
        assert_eq!(err.kind, ErrorKind::BadInput, "{query}: {err:?}");
        assert!(err.message.contains(named), "{query}: {}", err.message);
    }
}
