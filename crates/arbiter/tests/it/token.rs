//! `arbiter token …`: the secret printed once and alone, only its hash in the store,
//! revocation and expiry seen by the same check the server makes
//! (`arbiter_ops::token::authenticate`), the audit, and bad input that changes nothing.

use std::time::Duration;

use arbiter_core::ErrorKind;
use arbiter_core::token::secret_hash;
use arbiter_store::StoreUrl;
use arbiter_testkit::each_backend;

use crate::support::{Store, block_on};

each_backend!(Store;
    token_secret_is_printed_once_and_only_its_hash_is_stored,
    token_revoke_and_expiry_refuse_at_once,
    token_audit_lists_refusals_newest_first,
    token_bad_input_is_refused_and_changes_nothing
);

/// What the server would answer for `secret`: the principal's name, or the error kind.
fn authenticate(store: &Store, secret: &str) -> Result<String, ErrorKind> {
    block_on(async {
        let opened = arbiter_store::Store::open(&StoreUrl::parse(&store.url).unwrap())
            .await
            .unwrap();
        arbiter_ops::token::authenticate(&opened, secret)
            .await
            .map(|p| p.name)
            .map_err(|e| e.kind)
    })
}

/// Every text column of the stored tokens, one row per token.
fn stored_rows(store: &Store) -> Vec<String> {
    store.sql_texts(
        "SELECT name || '|' || secret_sha256 || '|' || namespaces || '|' || scopes FROM api_tokens ORDER BY name",
    )
}

fn token_secret_is_printed_once_and_only_its_hash_is_stored(store: &Store) {
    let out = store.ok(&["-n", "team-a", "token", "create", "--name", "agent"]);
    // stdout is the secret alone: a script takes it with $(…).
    let secret = out.stdout.strip_suffix('\n').expect("one line").to_string();
    assert!(!secret.contains('\n'), "{:?}", out.stdout);
    assert!(secret.starts_with("arb_") && secret.len() == 4 + 43, "{secret:?}");
    assert!(out.stderr.contains("shown only this once"), "{}", out.stderr);
    assert!(!out.stderr.contains(&secret), "the hint does not repeat the secret");

    let json = store
        .ok(&[
            "token",
            "create",
            "--name",
            "reader",
            "--namespaces",
            "b,a",
            "--scope",
            "kv:read,lease:write",
            "--expires",
            "30d",
            "--json",
        ])
        .json();
    let mut keys: Vec<&String> = json.as_object().unwrap().keys().collect();
    keys.sort();
    assert_eq!(keys, ["expires_at", "name", "namespaces", "scopes", "secret"], "{json}");
    assert_eq!(
        (&json["name"], &json["namespaces"], &json["scopes"]),
        (&"reader".into(), &"a,b".into(), &"lease:write,kv:read".into())
    );
    assert!(json["expires_at"].as_str().unwrap().ends_with('Z'), "{json}");
    let reader_secret = json["secret"].as_str().unwrap().to_string();
    assert_ne!(secret, reader_secret);

    // The store holds the hashes, never the secrets: its rows, and for SQLite every byte
    // of the database and its WAL.
    let rows = stored_rows(store);
    assert_eq!(rows.len(), 2, "{rows:?}");
    for (row, secret) in rows.iter().zip([&secret, &reader_secret]) {
        assert!(row.contains(&secret_hash(secret)), "{row}");
        assert!(!row.contains(secret.as_str()), "{row}");
    }
    if let Some(path) = store.sqlite_path() {
        let dir = path.parent().unwrap();
        for entry in std::fs::read_dir(dir).unwrap() {
            let bytes = std::fs::read(entry.unwrap().path()).unwrap();
            for secret in [&secret, &reader_secret] {
                assert!(
                    !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                    "a secret in the store's files"
                );
            }
        }
    }

    // Listed without secrets or hashes.
    let listed = store.ok(&["token", "list", "--json"]);
    for secret in [&secret, &reader_secret] {
        assert!(!listed.stdout.contains(secret.as_str()) && !listed.stdout.contains(&secret_hash(secret)));
    }
    let listed = listed.json();
    assert_eq!(listed[0]["name"], "agent");
    assert_eq!(listed[0]["namespaces"], "team-a");
    assert_eq!(
        listed[0]["scopes"],
        "lease:write,kv:write,log:write,decisions:write,notify:write,limit:write,status:write,queue:write",
        "the default: every write, not admin"
    );
    assert_eq!(
        (&listed[0]["state"], &listed[1]["state"]),
        (&"live".into(), &"live".into())
    );
    let plain = store.ok(&["token", "list"]).stdout;
    assert!(plain.starts_with("agent\tlive\tteam-a\t"), "{plain}");

    assert_eq!(authenticate(store, &secret), Ok("agent".to_string()));
    assert_eq!(authenticate(store, &reader_secret), Ok("reader".to_string()));

    // A name once; --replace issues a new secret and the old one stops working.
    let again = store.run(&["token", "create", "--name", "agent"]);
    again.expect_code(3, "a second token of one name");
    assert_eq!(again.stdout, "");
    assert!(again.stderr.contains("\"agent\" exists"), "{}", again.stderr);
    assert_eq!(authenticate(store, &secret), Ok("agent".to_string()), "unchanged");
    let replaced = store.ok(&["token", "create", "--name", "agent", "--replace"]).stdout;
    assert_eq!(authenticate(store, &secret), Err(ErrorKind::Unauthorized));
    assert_eq!(authenticate(store, replaced.trim()), Ok("agent".to_string()));
}

fn token_revoke_and_expiry_refuse_at_once(store: &Store) {
    let secret = store
        .ok(&["token", "create", "--name", "agent"])
        .stdout
        .trim()
        .to_string();
    let short = store
        .ok(&["token", "create", "--name", "short", "--expires", "300ms"])
        .stdout
        .trim()
        .to_string();
    assert_eq!(authenticate(store, &secret), Ok("agent".to_string()));

    let revoked = store.ok(&["token", "revoke", "agent", "--json"]).json();
    assert_eq!(revoked["name"], "agent");
    assert!(revoked["revoked_at"].as_str().unwrap().ends_with('Z'), "{revoked}");
    assert_eq!(
        authenticate(store, &secret),
        Err(ErrorKind::Unauthorized),
        "refused at once"
    );
    let plain = store.ok(&["token", "revoke", "agent"]).stdout;
    assert!(
        plain.starts_with("revoked agent at "),
        "revoking again is fine: {plain}"
    );

    let missing = store.run(&["token", "revoke", "nobody", "--json"]);
    missing.expect_code(5, "revoking an unknown token");
    assert_eq!(missing.json()["error"], "not_found");

    // Expiry: a short one, waited out.
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(authenticate(store, &short), Err(ErrorKind::Unauthorized));
    let listed = store.ok(&["token", "list", "--json"]).json();
    let states: Vec<(&str, &str)> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["name"].as_str().unwrap(), t["state"].as_str().unwrap()))
        .collect();
    assert_eq!(states, [("agent", "revoked"), ("short", "expired")]);
    let plain = store.ok(&["token", "list"]).stdout;
    assert!(
        plain.contains("agent\trevoked\t") && plain.contains("short\texpired\t"),
        "{plain}"
    );
}

fn token_audit_lists_refusals_newest_first(store: &Store) {
    assert_eq!(store.ok(&["token", "audit", "--json"]).json(), serde_json::json!([]));
    block_on(async {
        let opened = arbiter_store::Store::open(&StoreUrl::parse(&store.url).unwrap())
            .await
            .unwrap();
        for (token, status, path) in [
            (None, 401, "/v1/store"),
            (Some("agent"), 403, "/v1/ns/b/kv/x\u{1b}[31m"),
        ] {
            arbiter_ops::token::audit(
                &opened,
                arbiter_ops::token::AuditEntry {
                    token: token.map(str::to_string),
                    method: "GET".into(),
                    path: path.into(),
                    namespace: token.map(|_| "b".to_string()),
                    missing: "namespace b".into(),
                    status,
                },
            )
            .await
            .unwrap();
        }
    });
    let audit = store.ok(&["token", "audit", "--json"]).json();
    assert_eq!(audit[0]["token"], "agent");
    assert_eq!(audit[0]["status"], 403);
    assert_eq!(audit[0]["namespace"], "b");
    assert_eq!((&audit[1]["token"], &audit[1]["status"]), (&"".into(), &401.into()));
    assert_eq!(
        store
            .ok(&["token", "audit", "--limit", "1", "--json"])
            .json()
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let plain = store.ok(&["token", "audit"]).stdout;
    let lines: Vec<&str> = plain.lines().collect();
    assert_eq!(lines.len(), 2, "{plain}");
    assert!(lines[0].contains("\t403\tagent\tGET /v1/ns/b/kv/x"), "{plain}");
    assert!(
        !plain.contains('\u{1b}'),
        "no escape sequence reaches the terminal: {plain:?}"
    );
    assert!(lines[1].contains("\t401\t-\tGET /v1/store\t-\t"), "{plain}");
}

fn token_bad_input_is_refused_and_changes_nothing(store: &Store) {
    let cases: &[(&[&str], &str)] = &[
        (&["token", "create"], "--name"),
        (&["token", "create", "--name", "Agent"], "invalid token name \"Agent\""),
        (&["token", "create", "--name", "a", "--scope", "lease:admin"], "--scope"),
        (&["token", "create", "--name", "a", "--scope", ""], "invalid scopes"),
        (
            &["token", "create", "--name", "a", "--namespaces", "a,B"],
            "--namespaces",
        ),
        (&["token", "create", "--name", "a", "--expires", "soon"], "--expires"),
        (
            &["token", "create", "--name", "a", "--expires", "0s"],
            "greater than zero",
        ),
        (
            &["-n", "x", "token", "create", "--name", "a", "--namespaces", "*"],
            "--namespaces and -n",
        ),
        (&["token", "revoke", "A/B"], "invalid token name"),
        (&["token", "audit", "--limit", "0"], "--limit"),
        (&["token", "audit", "--limit", "-3"], "--limit"),
    ];
    for (args, fragment) in cases {
        for json in [false, true] {
            let mut args = args.to_vec();
            if json {
                args.push("--json");
            }
            let out = store.run(&args);
            out.expect_code(2, &format!("{args:?}"));
            if json {
                let error = out.json();
                assert_eq!(error["error"], "bad_input", "{args:?}: {error}");
                assert!(
                    error["message"].as_str().unwrap().contains(fragment),
                    "{args:?}: {error}"
                );
            } else {
                assert_eq!(out.stdout, "", "{args:?}");
                assert!(out.stderr.contains(fragment), "{args:?}: {}", out.stderr);
            }
        }
    }
    // -n given through the environment conflicts too.
    let out = crate::support::run(
        store
            .cmd(&["token", "create", "--name", "a", "--namespaces", "a"])
            .env("ARBITER_NAMESPACE", "x"),
    );
    out.expect_code(2, "ARBITER_NAMESPACE with --namespaces");
    assert!(!store.exists(), "bad input creates not even the store");
    assert_eq!(store.ok(&["token", "list", "--json"]).json(), serde_json::json!([]));
}
