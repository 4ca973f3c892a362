//! API tokens and the audit of refusals.

use std::time::Duration;

use arbiter_core::ErrorKind;
use arbiter_store::token::{AUDIT_KEEP, NewToken, Refusal};

use crate::{Harness, conformance};

fn new_token(name: &str, hash: &str, expires_in: Option<Duration>, replace: bool) -> NewToken {
    NewToken {
        name: name.into(),
        secret_sha256: hash.into(),
        namespaces: "a,b".into(),
        scopes: "kv:read,lease:write".into(),
        expires_in,
        replace,
    }
}

fn refusal(path: &str) -> Refusal {
    Refusal {
        token: "agent".into(),
        method: "GET".into(),
        path: path.into(),
        namespace: "b".into(),
        missing: "scope kv:write".into(),
        status: 403,
    }
}

conformance!(create_look_up_by_hash_and_list, |h: Harness| async move {
    let tokens = h.store.tokens();
    assert!(!tokens.any_live().await.unwrap(), "a new store has no token");
    let created = tokens
        .create(&new_token("agent", "hash-1", Some(Duration::from_secs(3600)), false))
        .await
        .unwrap();
    assert_eq!(
        (
            created.name.as_str(),
            created.namespaces.as_str(),
            created.scopes.as_str()
        ),
        ("agent", "a,b", "kv:read,lease:write")
    );
    let expires_at = created.expires_at.expect("an expiry");
    assert!((expires_at - created.created_at - 3_600_000).abs() <= 1, "{created:?}");
    assert_eq!(created.revoked_at, None);
    assert_eq!(tokens.live("hash-1").await.unwrap(), Some(created.clone()));
    assert_eq!(tokens.live("hash-2").await.unwrap(), None, "an unknown hash");
    assert!(tokens.any_live().await.unwrap());

    // One name, once: a second create is a conflict and changes nothing.
    let err = tokens
        .create(&new_token("agent", "hash-2", None, false))
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Conflict, "{err}");
    assert!(err.message.contains("\"agent\""), "{err}");
    assert_eq!(tokens.live("hash-2").await.unwrap(), None);
    assert_eq!(tokens.live("hash-1").await.unwrap(), Some(created));

    tokens.create(&new_token("b-bot", "hash-3", None, false)).await.unwrap();
    let (now, list) = tokens.list().await.unwrap();
    assert_eq!(
        list.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(),
        ["agent", "b-bot"]
    );
    assert!(list.iter().all(|t| t.live(now)));
    // A second handle sees the same tokens.
    assert!(h.reopen().await.tokens().live("hash-3").await.unwrap().is_some());
});

conformance!(replace_swaps_the_secret_and_revives, |h: Harness| async move {
    let tokens = h.store.tokens();
    tokens.create(&new_token("agent", "old", None, false)).await.unwrap();
    tokens.revoke("agent").await.unwrap();
    let replaced = tokens
        .create(&NewToken {
            scopes: "*".into(),
            ..new_token("agent", "new", None, true)
        })
        .await
        .unwrap();
    assert_eq!((replaced.scopes.as_str(), replaced.revoked_at), ("*", None));
    assert_eq!(tokens.live("old").await.unwrap(), None, "the old secret stops working");
    assert_eq!(tokens.live("new").await.unwrap(), Some(replaced));
    // Replacing a name that does not exist creates it.
    tokens.create(&new_token("fresh", "f", None, true)).await.unwrap();
    assert!(tokens.live("f").await.unwrap().is_some());
});

conformance!(revoke_works_at_once_and_unknown_is_not_found, |h: Harness| async move {
    let tokens = h.store.tokens();
    tokens.create(&new_token("agent", "hash-1", None, false)).await.unwrap();
    let other = h.reopen().await;
    assert!(other.tokens().live("hash-1").await.unwrap().is_some());
    let revoked = tokens.revoke("agent").await.unwrap();
    let at = revoked.revoked_at.expect("a revocation time");
    assert_eq!(
        other.tokens().live("hash-1").await.unwrap(),
        None,
        "another handle sees it at once"
    );
    assert!(!tokens.any_live().await.unwrap());
    // Again: the first revocation time stays.
    assert_eq!(tokens.revoke("agent").await.unwrap().revoked_at, Some(at));
    let (now, list) = tokens.list().await.unwrap();
    assert!(!list[0].live(now));

    let err = tokens.revoke("nobody").await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::NotFound, "{err}");
    assert!(err.message.contains("\"nobody\""), "{err}");
});

conformance!(an_expired_token_no_longer_authenticates, |h: Harness| async move {
    let tokens = h.store.tokens();
    tokens
        .create(&new_token("short", "hash-s", Some(Duration::from_millis(50)), false))
        .await
        .unwrap();
    tokens.create(&new_token("long", "hash-l", None, false)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(120)).await;
    assert_eq!(tokens.live("hash-s").await.unwrap(), None);
    assert!(tokens.live("hash-l").await.unwrap().is_some());
    let (now, list) = tokens.list().await.unwrap();
    let short = list.iter().find(|t| t.name == "short").unwrap();
    assert!(!short.live(now) && short.revoked_at.is_none(), "expired, not revoked");
    tokens.revoke("long").await.unwrap();
    assert!(
        !tokens.any_live().await.unwrap(),
        "expired and revoked tokens are not live"
    );
});

conformance!(the_audit_keeps_the_newest_refusals, |h: Harness| async move {
    let tokens = h.store.tokens();
    assert!(tokens.audit_list(10).await.unwrap().is_empty());
    for i in 0..5 {
        tokens.audit(&refusal(&format!("/v1/ns/b/kv/{i}")), 3).await.unwrap();
    }
    let list = tokens.audit_list(10).await.unwrap();
    assert_eq!(
        list.iter().map(|r| r.refusal.path.as_str()).collect::<Vec<_>>(),
        ["/v1/ns/b/kv/4", "/v1/ns/b/kv/3", "/v1/ns/b/kv/2"],
        "newest first, only the newest 3 kept"
    );
    assert_eq!(list[0].refusal, refusal("/v1/ns/b/kv/4"));
    assert!(list[0].id > list[1].id && list[0].at >= list[1].at);
    assert_eq!(tokens.audit_list(1).await.unwrap().len(), 1);
    // The default bound keeps these too.
    tokens
        .audit(
            &Refusal {
                token: String::new(),
                status: 401,
                ..refusal("/v1/store")
            },
            AUDIT_KEEP,
        )
        .await
        .unwrap();
    let newest = &tokens.audit_list(1).await.unwrap()[0];
    assert_eq!((newest.refusal.token.as_str(), newest.refusal.status), ("", 401));
    assert_eq!(tokens.audit_list(100).await.unwrap().len(), 4);
});
