//! How results and errors are printed: plain text for people and scripts, or JSON with
//! stable field names under `--json`.

use std::time::{Duration, UNIX_EPOCH};

use arbiter_core::lease::{Holder, Lease};
use arbiter_core::{Error, Millis};
use serde::Serialize;

#[derive(Debug, Clone, Copy)]
pub struct Output {
    pub json: bool,
}

impl Output {
    /// Prints a failure: `arbiter: MESSAGE` on stderr, or a JSON object on stdout.
    pub fn error(&self, err: &Error) {
        if self.json {
            self.print_json(&serde_json::json!({ "error": err.kind.code(), "message": err.message }));
        } else {
            eprintln!("arbiter: {}", err.message);
        }
    }

    /// Prints a JSON value on one line.
    pub fn print_json(&self, value: &impl Serialize) {
        println!(
            "{}",
            serde_json::to_string(value).expect("output values always serialize")
        );
    }
}

/// A time of the store's clock, as RFC 3339 with milliseconds (UTC).
pub fn timestamp(ms: Millis) -> String {
    let time = UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_millis(time).to_string()
}

/// A lease as `--json` prints it. Field names are stable.
#[derive(Debug, Serialize)]
pub struct LeaseView<'a> {
    pub namespace: &'a str,
    pub name: &'a str,
    pub token: i64,
    pub holder: &'a Holder,
    pub slots: u32,
    pub ttl_ms: i64,
    pub acquired_at: String,
    pub expires_at: String,
}

impl<'a> From<&'a Lease> for LeaseView<'a> {
    fn from(lease: &'a Lease) -> Self {
        LeaseView {
            namespace: &lease.namespace,
            name: &lease.name,
            token: lease.token,
            holder: &lease.holder,
            slots: lease.slots,
            ttl_ms: lease.ttl_ms,
            acquired_at: timestamp(lease.acquired_at),
            expires_at: timestamp(lease.expires_at),
        }
    }
}
