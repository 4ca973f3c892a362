//! Server-Sent Events: the watch, follow and status streams.
//!
//! Each event has a name (`kv`, `record`, `status`), an `id` (the revision or offset, so
//! an EventSource that reconnects sends `Last-Event-ID` and resumes after it) and JSON data.
//! A failure of the operation under the stream ends it with one `event: error` whose data
//! is the API's error body. Every stream ends when the server shuts down, so shutdown is
//! not held up by a client that never disconnects; a comment every 15 s keeps proxies from
//! closing an idle stream.

use std::convert::Infallible;
use std::time::Duration;

use arbiter_core::{Error, Result};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::{Stream, StreamExt};
use serde::Serialize;

use crate::state::AppState;
use crate::status::{ApiError, ApiResult};

const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// Where a stream resumes after the `Last-Event-ID` header (a revision or offset), if sent:
/// the next id.
pub fn resume_after(headers: &HeaderMap) -> ApiResult<Option<i64>> {
    let Some(value) = headers.get("last-event-id") else {
        return Ok(None);
    };
    value
        .to_str()
        .ok()
        .and_then(|text| text.trim().parse::<i64>().ok())
        .filter(|id| *id >= 0)
        .and_then(|id| id.checked_add(1))
        .map(Some)
        .ok_or_else(|| {
            ApiError::bad_field(
                "Last-Event-ID",
                "invalid Last-Event-ID: expected the id of an event this stream sent (a non-negative integer)",
            )
        })
}

/// A stream of batches (a watch's, a follow's) as events named `name`, each with the id
/// `id(item)`.
pub fn batches<T, S>(state: &AppState, name: &'static str, batches: S, id: fn(&T) -> i64) -> Response
where
    T: Serialize + Send + 'static,
    S: Stream<Item = Result<Vec<T>>> + Send + 'static,
{
    let events = batches.flat_map(move |batch| {
        let events: Vec<Result<Event>> = match batch {
            Ok(items) => items
                .iter()
                .map(|item| Ok(event(name, item).id(id(item).to_string())))
                .collect(),
            Err(error) => vec![Err(error)],
        };
        futures_util::stream::iter(events)
    });
    respond(state, events)
}

/// A stream of single items as events named `name`, without ids.
pub fn items<T, S>(state: &AppState, name: &'static str, items: S) -> Response
where
    T: Serialize + Send + 'static,
    S: Stream<Item = Result<T>> + Send + 'static,
{
    respond(state, items.map(move |item| item.map(|item| event(name, &item))))
}

fn event<T: Serialize>(name: &str, item: &T) -> Event {
    // The views serialise infallibly (plain structs of strings and numbers).
    let data =
        serde_json::to_string(item).unwrap_or_else(|e| format!("{{\"error\":\"internal\",\"message\":\"{e}\"}}"));
    Event::default().event(name).data(data)
}

/// `event: error` with the error body as data.
fn error_event(error: Error) -> Event {
    let body = ApiError::from(error).body();
    let data = serde_json::to_string(&body).unwrap_or_default();
    Event::default().event("error").data(data)
}

/// Ends the stream after its first error (sent as `event: error`) or at shutdown.
fn respond<S>(state: &AppState, events: S) -> Response
where
    S: Stream<Item = Result<Event>> + Send + 'static,
{
    let events = events
        .scan(false, |failed, item| {
            if *failed {
                return std::future::ready(None);
            }
            let event = match item {
                Ok(event) => event,
                Err(error) => {
                    *failed = true;
                    error_event(error)
                }
            };
            std::future::ready(Some(Ok::<Event, Infallible>(event)))
        })
        .take_until(state.shutting_down());
    Sse::new(events)
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
        .into_response()
}
