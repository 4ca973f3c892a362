//! How results and errors are printed: plain text for people and scripts, or JSON with
//! stable field names under `--json`. What is printed comes from `arbiter_ops` views.

use arbiter_core::Error;
pub use arbiter_ops::view::{LeaseView, timestamp};
use serde::Serialize;

#[derive(Debug, Clone, Copy)]
pub struct Output {
    pub json: bool,
}

impl Output {
    /// Prints a failure: `arbiter: MESSAGE` on stderr, or a JSON object on stdout.
    pub fn error(&self, err: &Error) {
        if self.json {
            let mut value = serde_json::json!({ "error": err.kind.code(), "message": err.message });
            // A refused take's wait as data (milliseconds), not only in the message.
            if let Some(arbiter_core::Detail::Limited { wait_ms }) = err.detail.as_deref() {
                value["wait_ms"] = (*wait_ms).into();
            }
            self.print_sorted(&value);
        } else {
            eprintln!("arbiter: {}", err.message);
        }
    }

    /// Prints a JSON value on one line, its fields in the order the type declares them.
    pub fn print_json(&self, value: &impl Serialize) {
        println!(
            "{}",
            serde_json::to_string(value).expect("output values always serialize")
        );
    }

    /// Prints a JSON value on one line with every object's keys in alphabetical order: the
    /// order these commands have always printed (they built `serde_json::Value`s), kept so
    /// that their output stays byte for byte what scripts saw before.
    pub fn print_sorted(&self, value: &impl Serialize) {
        self.print_json(&serde_json::to_value(value).expect("output values always serialize"));
    }
}
