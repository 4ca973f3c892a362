//! Versioned keys over HTTP: get, put (compare-and-swap), delete, list, and the watch as
//! Server-Sent Events.

use arbiter_core::kv::KeyValue;
use arbiter_core::name::{Key, Prefix};
use arbiter_core::token::{Access, Primitive};
use arbiter_ops::kv::{self, Deleted, Put, Value};
use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;

use crate::auth::Caller;
use crate::extract::{Body, Params, Query, check_field, parse_field};
use crate::sse;
use crate::state::AppState;
use crate::status::{ApiError, ApiResult};
use crate::wire::{DeleteQuery, PrefixQuery, PutBody, WatchQuery};

/// `GET /v1/ns/{ns}/kv/{key}`
pub async fn get(State(state): State<AppState>, caller: Caller, params: Params) -> ApiResult<Json<KeyValue>> {
    let ns = params.ns()?;
    caller.check(&ns, Primitive::Kv, Access::Read)?;
    let key: Key = params.get("key")?;
    Ok(Json(kv::get(&state.store, &ns, &key).await?))
}

/// `PUT /v1/ns/{ns}/kv/{key}`
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
    let from = match sse::last_event_id(&headers)? {
        Some(last) => Some(last + 1),
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
