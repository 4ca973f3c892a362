//! Append-only streams over HTTP: append, read (a page from an offset or a consumer's
//! committed offset), follow as Server-Sent Events, consumers and their commits, streams.

use arbiter_core::log::{ConsumerInfo, ContentType, NewRecord, RecordFields, StreamInfo, check_offset};
use arbiter_core::name::{ConsumerName, StreamName};
use arbiter_core::token::{Access, Primitive};
use arbiter_ops::log::{self, AppendedView, RecordView, Start};
use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;

use crate::auth::Caller;
use crate::extract::{Body, Params, Query, check_field, parse_field};
use crate::openapi::{Refusals, path};
use crate::sse;
use crate::state::AppState;
use crate::status::{ApiError, ApiResult};
use crate::wire::{AppendBody, CommitBody, FollowQuery, ReadQuery};

/// The most records one read returns (and the default): a client pages with `from`.
pub const MAX_READ: u64 = 1000;

/// `POST /v1/ns/{ns}/logs/{stream}/records`
#[utoipa::path(operation_id = "log_append", post, path = "/v1/ns/{ns}/logs/{stream}/records", tag = "logs", params(path::Stream), request_body = AppendBody, responses((status = 200, description = "Appended (or, for a key already used, the first offset with `duplicate: true`).", body = AppendedView), Refusals))]
pub async fn append(
    State(state): State<AppState>,
    caller: Caller,
    params: Params,
    body: Body<AppendBody>,
) -> ApiResult<Json<AppendedView>> {
    let ns = params.ns()?;
    caller.check(&ns, Primitive::Log, Access::Write)?;
    let stream: StreamName = params.get("stream")?;
    let body = body.parse()?;
    let (text, content_type) = match body.body {
        serde_json::Value::String(text) if body.json_body => (text, ContentType::Json),
        serde_json::Value::String(text) => (text, ContentType::Text),
        other => (other.to_string(), ContentType::Json),
    };
    let record = NewRecord::new(
        ns,
        stream,
        RecordFields {
            kind: body.kind.unwrap_or_else(|| "note".to_string()),
            author: body.by.unwrap_or_else(|| caller.0.name.clone()),
            body: text,
            content_type,
            tags: body.tags,
            trace_id: body.trace_id,
            idempotency_key: body.key,
        },
    )?;
    Ok(Json(log::append(&state.store, record).await?))
}

/// `GET /v1/ns/{ns}/logs/{stream}/records?from=&limit=&consumer=`
#[utoipa::path(operation_id = "log_read", get, path = "/v1/ns/{ns}/logs/{stream}/records", tag = "logs", params(path::Stream, ReadQuery), responses((status = 200, description = "Up to `limit` records from the start, in offset order.", body = Vec<RecordView>), Refusals))]
pub async fn read(
    State(state): State<AppState>,
    caller: Caller,
    params: Params,
    Query(query): Query<ReadQuery>,
) -> ApiResult<Json<Vec<RecordView>>> {
    let ns = params.ns()?;
    caller.check(&ns, Primitive::Log, Access::Read)?;
    let stream: StreamName = params.get("stream")?;
    let start = match (query.consumer, query.from) {
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_field(
                "from",
                "give `from` or `consumer`, not both: a consumer's reads start at its committed offset",
            ));
        }
        (Some(consumer), None) => Start::Consumer(parse_field::<ConsumerName>("consumer", &consumer)?),
        (None, from) => Start::Offset(check_field("from", check_offset(from.unwrap_or(0)))?),
    };
    let limit = match query.limit {
        Some(limit) if !(1..=MAX_READ).contains(&limit) => {
            return Err(ApiError::bad_field(
                "limit",
                format!("invalid limit {limit}: expected 1 to {MAX_READ}"),
            ));
        }
        limit => limit.unwrap_or(MAX_READ) as usize,
    };
    let from = log::start_offset(&state.store, &ns, &stream, &start).await?;
    Ok(Json(log::read(&state.store, &ns, &stream, from, limit).await?))
}

/// `GET /v1/ns/{ns}/logs/{stream}/follow?from=`: `event: record`, `id: <offset>`, data a
/// record. A `Last-Event-ID` resumes after that offset.
#[utoipa::path(operation_id = "log_follow", get, path = "/v1/ns/{ns}/logs/{stream}/follow", tag = "logs", params(path::Stream, FollowQuery, ("Last-Event-ID" = Option<i64>, Header, description = "Resume after this offset (an EventSource reconnecting).")), responses((status = 200, description = "Server-Sent Events: `event: record`, `id: <offset>`, data a record; a failure ends the stream with `event: error`.", content_type = "text/event-stream", body = RecordView), Refusals))]
pub async fn follow(
    State(state): State<AppState>,
    caller: Caller,
    params: Params,
    headers: HeaderMap,
    Query(query): Query<FollowQuery>,
) -> ApiResult<Response> {
    let ns = params.ns()?;
    caller.check(&ns, Primitive::Log, Access::Read)?;
    let stream: StreamName = params.get("stream")?;
    let from = match sse::resume_after(&headers)? {
        Some(next) => next,
        None => check_field("from", check_offset(query.from.unwrap_or(0)))?,
    };
    let follow = log::follow(&state.store, &ns, &stream, from).await?;
    let batches = futures_util::stream::unfold(follow, |mut follow| async move {
        let batch = follow
            .next()
            .await
            .map(|records| records.into_iter().map(RecordView::from).collect::<Vec<_>>());
        Some((batch, follow))
    });
    Ok(sse::batches(&state, "record", batches, |record| record.offset))
}

/// `PUT /v1/ns/{ns}/logs/{stream}/consumers/{consumer}`
#[utoipa::path(operation_id = "log_commit", put, path = "/v1/ns/{ns}/logs/{stream}/consumers/{consumer}", tag = "logs", params(path::Consumer), request_body = CommitBody, responses((status = 200, description = "Committed.", body = ConsumerInfo), Refusals))]
pub async fn commit(
    State(state): State<AppState>,
    caller: Caller,
    params: Params,
    body: Body<CommitBody>,
) -> ApiResult<Json<ConsumerInfo>> {
    let ns = params.ns()?;
    caller.check(&ns, Primitive::Log, Access::Write)?;
    let stream: StreamName = params.get("stream")?;
    let consumer: ConsumerName = params.get("consumer")?;
    let body = body.parse()?;
    let offset = check_field("offset", check_offset(body.offset))?;
    Ok(Json(log::commit(&state.store, &ns, &stream, &consumer, offset).await?))
}

/// `GET /v1/ns/{ns}/logs/{stream}/consumers`
#[utoipa::path(operation_id = "log_consumers", get, path = "/v1/ns/{ns}/logs/{stream}/consumers", tag = "logs", params(path::Stream), responses((status = 200, description = "The stream's consumers, by name.", body = Vec<ConsumerInfo>), Refusals))]
pub async fn consumers(
    State(state): State<AppState>,
    caller: Caller,
    params: Params,
) -> ApiResult<Json<Vec<ConsumerInfo>>> {
    let ns = params.ns()?;
    caller.check(&ns, Primitive::Log, Access::Read)?;
    let stream: StreamName = params.get("stream")?;
    Ok(Json(log::consumers(&state.store, &ns, &stream).await?))
}

/// `GET /v1/ns/{ns}/logs`
#[utoipa::path(operation_id = "log_streams", get, path = "/v1/ns/{ns}/logs", tag = "logs", params(path::Ns), responses((status = 200, description = "The streams and their lengths, by name.", body = Vec<StreamInfo>), Refusals))]
pub async fn streams(
    State(state): State<AppState>,
    caller: Caller,
    params: Params,
) -> ApiResult<Json<Vec<StreamInfo>>> {
    let ns = params.ns()?;
    caller.check(&ns, Primitive::Log, Access::Read)?;
    Ok(Json(log::streams(&state.store, &ns).await?))
}
