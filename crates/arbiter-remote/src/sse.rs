//! Server-Sent Events as the server sends them (`arbiter_server::sse`): blocks of
//! `event:`, `id:` and `data:` lines ended by a blank line; `:` lines are keep-alive
//! comments. A block named `error` carries the API's error body and ends the stream.
//!
//! The server sends a comment every 15 s, so a stream silent for [`IDLE_LIMIT`] is a
//! server (or a link) that went away without closing: it fails `Unavailable` rather than
//! hanging a `kv watch` forever.

use std::marker::PhantomData;
use std::time::Duration;

use arbiter_core::{Error, Result};
use arbiter_server::wire::ErrorBody;
use serde::de::DeserializeOwned;

use crate::error;

/// How long a stream may send nothing, not even a keep-alive comment.
pub const IDLE_LIMIT: Duration = Duration::from_secs(60);

/// One event.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Event {
    pub name: String,
    pub id: Option<String>,
    pub data: String,
}

/// The events of one response, read as they arrive.
pub struct Events {
    response: reqwest::Response,
    buffer: Vec<u8>,
    shown: String,
}

impl Events {
    pub(crate) fn new(response: reqwest::Response, shown: String) -> Events {
        Events {
            response,
            buffer: Vec::new(),
            shown,
        }
    }

    /// The next event; `None` when the server ended the stream.
    pub async fn next(&mut self) -> Result<Option<Event>> {
        // Bounded: each pass reads a chunk, or ends the stream, or times out.
        loop {
            if let Some(block) = take_block(&mut self.buffer) {
                if let Some(event) = parse_block(&block) {
                    return Ok(Some(event));
                }
                continue;
            }
            let chunk = tokio::time::timeout(IDLE_LIMIT, self.response.chunk())
                .await
                .map_err(|_| {
                    Error::unavailable(format!(
                        "the server at {} sent nothing for {}s on an event stream",
                        self.shown,
                        IDLE_LIMIT.as_secs()
                    ))
                })?
                .map_err(|e| error::transport(&e, &self.shown))?;
            match chunk {
                Some(bytes) => self.buffer.extend_from_slice(&bytes),
                None => return Ok(None),
            }
        }
    }
}

/// A stream of events named `name`, each one's data a `T`.
pub struct Typed<T> {
    events: Events,
    name: &'static str,
    item: PhantomData<fn() -> T>,
}

impl<T: DeserializeOwned> Typed<T> {
    pub(crate) fn new(events: Events, name: &'static str) -> Typed<T> {
        Typed {
            events,
            name,
            item: PhantomData,
        }
    }

    /// The next item. The stream's end is an error (`Unavailable`): these streams end only
    /// when the server stops, as a store that goes away ends a local watch.
    pub async fn next(&mut self) -> Result<T> {
        // Bounded by the stream: every pass consumes an event.
        loop {
            let Some(event) = self.events.next().await? else {
                return Err(Error::unavailable(format!(
                    "the server at {} ended the event stream",
                    self.events.shown
                )));
            };
            if event.name == "error" {
                let body: ErrorBody = serde_json::from_str(&event.data).map_err(|e| {
                    Error::internal(format!("the server sent an error event this client cannot read: {e}"))
                })?;
                return Err(error::from_body(body));
            }
            if event.name == self.name {
                return serde_json::from_str(&event.data).map_err(|e| {
                    Error::internal(format!(
                        "the server sent a {:?} event this client cannot read: {e}",
                        self.name
                    ))
                });
            }
        }
    }
}

/// Removes the first complete block (up to a blank line) from `buffer`.
fn take_block(buffer: &mut Vec<u8>) -> Option<Vec<u8>> {
    let end = (0..buffer.len()).find_map(|i| {
        let rest = &buffer[i..];
        if rest.starts_with(b"\n\n") {
            Some((i, 2))
        } else if rest.starts_with(b"\r\n\r\n") {
            Some((i, 4))
        } else if rest.starts_with(b"\r\r") {
            Some((i, 2))
        } else {
            None
        }
    })?;
    let (at, len) = end;
    let block = buffer[..at].to_vec();
    buffer.drain(..at + len);
    Some(block)
}

/// A block's event; `None` for a block of comments only.
fn parse_block(block: &[u8]) -> Option<Event> {
    let text = String::from_utf8_lossy(block);
    let mut event = Event::default();
    let mut data: Vec<&str> = Vec::new();
    let mut any = false;
    for line in text.split(['\n', '\r']) {
        if line.is_empty() || line.starts_with(':') {
            continue;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "event" => event.name = value.to_string(),
            "id" => event.id = Some(value.to_string()),
            "data" => data.push(value),
            _ => continue,
        }
        any = true;
    }
    if !any {
        return None;
    }
    if event.name.is_empty() {
        event.name = "message".to_string();
    }
    event.data = data.join("\n");
    Some(event)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_are_split_at_blank_lines_and_comments_skipped() {
        let mut buffer = b": keep-alive\n\nevent: kv\nid: 7\ndata: {\"a\":1}\n\nevent: par".to_vec();
        let first = take_block(&mut buffer).unwrap();
        assert_eq!(parse_block(&first), None);
        let second = take_block(&mut buffer).unwrap();
        assert_eq!(
            parse_block(&second),
            Some(Event {
                name: "kv".into(),
                id: Some("7".into()),
                data: "{\"a\":1}".into()
            })
        );
        assert_eq!(take_block(&mut buffer), None, "an incomplete block waits for more");
        assert_eq!(buffer, b"event: par");
    }

    #[test]
    fn data_lines_join_and_crlf_is_read() {
        let mut buffer = b"data: one\r\ndata: two\r\n\r\n".to_vec();
        let block = take_block(&mut buffer).unwrap();
        let event = parse_block(&block).unwrap();
        assert_eq!((event.name.as_str(), event.data.as_str()), ("message", "one\ntwo"));
    }
}
