//! Versioned keys over HTTP: get, put (compare-and-swap), delete, list, and the watch as
//! Server-Sent Events.

use arbiter_core::kv::{KeyValue, KvEvent};
use arbiter_core::name::{Key, Prefix};
use arbiter_core::token::{Access, Primitive};
use arbiter_ops::kv::{self, Deleted, Put, Value};
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
use crate::wire::ErrorBody;
use crate::wire::{DeleteQuery, PrefixQuery, PutBody, WatchQuery};

/// `GET /v1/ns/{ns}/kv/{key}`
#[utoipa::path(operation_id = "kv_get", get, path = "/v1/ns/{ns}/kv/{key}", tag = "keys", params(path::Keyed), responses((status = 200, description = "The value and its version.", body = KeyValue), (status = 404, description = "No such key.", body = ErrorBody), Refusals))]
pub async fn get(State(state): State<AppState>, caller: Caller, params: Params) -> ApiResult<Json<KeyValue>> {
    let ns = params.ns()?;
    caller.check(&ns, Primitive::Kv, Access::Read)?;
    let key: Key = params.get("key")?;
    Ok(Json(kv::get(&state.store, &ns, &key).await?))
}

/// `PUT /v1/ns/{ns}/kv/{key}`
#[utoipa::path(operation_id = "kv_put", put, path = "/v1/ns/{ns}/kv/{key}", tag = "keys", params(path::Keyed), request_body = PutBody, responses((status = 200, description = "Written: the new version.", body = Put), (status = 409, description = "`conflict`: `if_version` did not hold; `detail.conflict.current_version`.", body = ErrorBody), Refusals))]
pub async fn put(
    State(state): State<AppState>,
    caller: Caller,
    params: Params,
    body: Body<PutBody>,
) -> ApiResult<Json<Put>> {
    let ns = params.ns()?;
    caller.check(&ns, Primitive::Kv, Access::Write)?;
    let key: Key = params.get("key")?;
    let body = body.parse()?;
    let if_version = body
        .if_version
        .map(|v| check_field("if_version", arbiter_core::kv::check_revision(v, 0)))
        .transpose()?;
    let value = Value::parse(body.value).map_err(|e| ApiError {
        error: e,
        field: Some("value".to_string()),
    })?;
    Ok(Json(kv::put(&state.store, &ns, &key, value, if_version).await?))
}

/// `DELETE /v1/ns/{ns}/kv/{key}?if_version=`
#[utoipa::path(operation_id = "kv_delete", delete, path = "/v1/ns/{ns}/kv/{key}", tag = "keys", params(path::Keyed, DeleteQuery), responses((status = 200, description = "Deleted: the revision of the deletion.", body = Deleted), (status = 404, description = "No such key.", body = ErrorBody), (status = 409, description = "`conflict`: `if_version` did not hold.", body = ErrorBody), Refusals))]
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    params: Params,
    Query(query): Query<DeleteQuery>,
) -> ApiResult<Json<Deleted>> {
    let ns = params.ns()?;
    caller.check(&ns, Primitive::Kv, Access::Write)?;
    let key: Key = params.get("key")?;
    let if_version = query
        .if_version
        .map(|v| check_field("if_version", arbiter_core::kv::check_revision(v, 1)))
        .transpose()?;
    Ok(Json(kv::delete(&state.store, &ns, &key, if_version).await?))
}

/// `GET /v1/ns/{ns}/kv?prefix=`
#[utoipa::path(operation_id = "kv_list", get, path = "/v1/ns/{ns}/kv", tag = "keys", params(path::Ns, PrefixQuery), responses((status = 200, description = "The keys starting with `prefix`, in name order.", body = Vec<KeyValue>), Refusals))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    params: Params,
    Query(query): Query<PrefixQuery>,
) -> ApiResult<Json<Vec<KeyValue>>> {
    let ns = params.ns()?;
    caller.check(&ns, Primitive::Kv, Access::Read)?;
    let prefix: Prefix = parse_field("prefix", query.prefix.as_deref().unwrap_or(""))?;
    Ok(Json(kv::list(&state.store, &ns, &prefix).await?))
}

/// `GET /v1/ns/{ns}/watch/kv?prefix=&from=`: `event: kv`, `id: <revision>`, data a
/// `KvEvent`. A `Last-Event-ID` (an EventSource reconnecting) resumes after that revision.
#[utoipa::path(operation_id = "kv_watch", get, path = "/v1/ns/{ns}/watch/kv", tag = "keys", params(path::Ns, WatchQuery, ("Last-Event-ID" = Option<i64>, Header, description = "Resume after this revision (an EventSource reconnecting).")), responses((status = 200, description = "Server-Sent Events: `event: kv`, `id: <revision>`, data a `KvEvent`; a failure ends the stream with `event: error` (data an `ErrorBody`).", content_type = "text/event-stream", body = KvEvent), Refusals))]
pub async fn watch(
    State(state): State<AppState>,
    caller: Caller,
    params: Params,
    headers: HeaderMap,
    Query(query): Query<WatchQuery>,
) -> ApiResult<Response> {
    let ns = params.ns()?;
    caller.check(&ns, Primitive::Kv, Access::Read)?;
    let prefix: Prefix = parse_field("prefix", query.prefix.as_deref().unwrap_or(""))?;
    let from = match sse::resume_after(&headers)? {
        Some(next) => Some(next),
        None => query
            .from
            .map(|from| check_field("from", arbiter_core::kv::check_revision(from, 1)))
            .transpose()?,
    };
    let watch = kv::watch(&state.store, &ns, &prefix, from).await?;
    let batches = futures_util::stream::unfold(watch, |mut watch| async move {
        let batch = watch.next().await;
        Some((batch, watch))
    });
    Ok(sse::batches(&state, "kv", batches, |event| event.version))
}
