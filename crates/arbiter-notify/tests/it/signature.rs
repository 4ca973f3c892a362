//! Signed webhooks, verified the way a receiver should.
//!
//! # How a receiver verifies a signed arbiter webhook
//!
//! A `webhook` channel with a `secret` sends `X-Arbiter-Signature-256: sha256=<hex>`, the
//! lower-case hex HMAC-SHA256 of the **raw request body** keyed with the secret (its UTF-8
//! bytes). To verify:
//! 1. read the body as bytes, before any JSON parsing (re-serialized JSON differs);
//! 2. compute HMAC-SHA256(secret, body);
//! 3. compare it with the header's hex, decoded, in constant time (`Mac::verify_slice`);
//!    reject the request when the header is missing or malformed, or they differ.
//!
//! Then dedupe on the `X-Arbiter-Id` header (equal to the body's `id`): delivery is at
//! least once, and a retried message keeps its id.
//!
//! [`verify`] below is that, written with the `hmac` and `sha2` crates — independent of
//! `arbiter_notify::format::signature`, which produces the header.

use std::time::Duration;

use arbiter_notify::format;
use hmac::{KeyInit, Mac};

use crate::support::{accept, config, dispatch_once, note, open_store};
use arbiter_testkit::receiver::{Receiver, Request};

/// Whether `request` carries a valid signature of its raw body under `secret`.
pub fn verify(secret: &str, request: &Request) -> bool {
    let Some(hex) = request
        .header("x-arbiter-signature-256")
        .and_then(|h| h.strip_prefix("sha256="))
    else {
        return false;
    };
    let Some(claimed) = decode_hex(hex) else {
        return false;
    };
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(&request.body);
    mac.verify_slice(&claimed).is_ok()
}

fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).ok())
        .collect()
}

const SECRET: &str = "whsec-3f9a1c-not-a-real-key";

arbiter_testkit::each_backend!(signed_webhooks_verify_at_the_receiver, |url: String| async move {
    let receiver = Receiver::start();
    let config = config(&format!(
        r#"
[channels.signed]
type = "webhook"
url = "{signed}"
secret = "{SECRET}"

[channels.plain]
type = "webhook"
url = "{plain}"

[[routes]]
channels = ["signed", "plain"]
"#,
        signed = receiver.url("/signed"),
        plain = receiver.url("/plain"),
    ));
    let store = open_store(&url).await;
    accept(
        &store,
        &config,
        note("security.finding", "a secret was committed", None),
    )
    .await;
    accept(
        &store,
        &config,
        note("security.finding", "body with ünïcödé — and \"quotes\"", None),
    )
    .await;
    let report = dispatch_once(&store, &config).await;
    assert_eq!(report.delivered, 4, "{report:?}");
    receiver
        .wait_for_async(Duration::from_secs(5), "4 requests", |r| r.len() == 4)
        .await;

    let signed = receiver.taken("/signed");
    assert_eq!(signed.len(), 2);
    for request in &signed {
        assert!(verify(SECRET, request), "the signature verifies: {:?}", request.headers);
        assert_eq!(
            request.header("x-arbiter-signature-256"),
            Some(format::signature(SECRET, &request.body).as_str())
        );
        assert_eq!(request.json()["id"], request.id(), "X-Arbiter-Id is the body's id");
        assert_eq!(request.header("content-type"), Some("application/json"));
        // A wrong key, or a body changed by one byte, does not verify.
        assert!(!verify("whsec-wrong", request), "a wrong secret fails verification");
        let mut tampered = request.clone();
        let last = tampered.body.len() - 2;
        tampered.body[last] ^= 1;
        assert!(!verify(SECRET, &tampered), "a tampered body fails verification");
        let mut forged = request.clone();
        forged.headers.insert(
            "x-arbiter-signature-256".into(),
            format::signature("whsec-wrong", &request.body),
        );
        assert!(!verify(SECRET, &forged), "a signature made with another key fails");
    }
    let plain = receiver.taken("/plain");
    assert_eq!(plain.len(), 2);
    for request in &plain {
        assert_eq!(
            request.header("x-arbiter-signature-256"),
            None,
            "no secret, no signature"
        );
        assert!(!verify(SECRET, request));
    }
});

#[test]
fn the_signature_is_hmac_sha256_of_the_raw_body() {
    // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
    assert_eq!(
        format::signature("Jefe", b"what do ya want for nothing?"),
        "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
}
