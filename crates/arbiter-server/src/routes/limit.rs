//! Rate-limit buckets over HTTP: define, list, show, take (429 when not granted), observe,
//! and the shared counters.

use std::time::Duration;

use arbiter_core::duration::from_millis;
use arbiter_core::limit::DEFAULT_RESERVE_PERCENT;
use arbiter_core::name::{BucketName, Prefix};
use arbiter_core::token::{Access, Primitive};
use arbiter_ops::limit::{self, BucketSpec, BucketView, CounterView, Priority, Rate, TakeRequest, TakeView};
use axum::Json;
use axum::extract::State;

use crate::auth::Caller;
use crate::extract::{Body, Params, Query, check_field, parse_field};
use crate::openapi::{Refusals, path};
use crate::routes::lease::MAX_WAIT;
use crate::state::AppState;
use crate::status::ApiResult;
use crate::wire::ErrorBody;
use crate::wire::{DefineBody, ObserveBody, PrefixQuery, TakeBody};

/// `PUT /v1/ns/{ns}/limits/{name}`
#[utoipa::path(operation_id = "limit_define", put, path = "/v1/ns/{ns}/limits/{name}", tag = "limits", params(path::Named), request_body = DefineBody, responses((status = 200, description = "The bucket.", body = BucketView), Refusals))]
pub async fn define(
    State(state): State<AppState>,
    caller: Caller,
    params: Params,
    body: Body<DefineBody>,
) -> ApiResult<Json<BucketView>> {
    let ns = params.ns()?;
    caller.check(&ns, Primitive::Limit, Access::Write)?;
    let name: BucketName = params.get("name")?;
    let body = body.parse()?;
    let rate: Rate = parse_field("rate", &body.rate)?;
    let spec = BucketSpec {
        rate,
        burst: body.burst.unwrap_or(rate.amount),
        reserve_percent: body.reserve_percent.unwrap_or(DEFAULT_RESERVE_PERCENT),
        fair: body.fair,
    };
    spec.check()?;
    Ok(Json(
        limit::define(&state.store, &ns, &name, &spec, body.if_absent).await?,
    ))
}

/// `GET /v1/ns/{ns}/limits`
#[utoipa::path(operation_id = "limit_list", get, path = "/v1/ns/{ns}/limits", tag = "limits", params(path::Ns), responses((status = 200, description = "Every bucket, by name.", body = Vec<BucketView>), Refusals))]
pub async fn list(State(state): State<AppState>, caller: Caller, params: Params) -> ApiResult<Json<Vec<BucketView>>> {
    let ns = params.ns()?;
    caller.check(&ns, Primitive::Limit, Access::Read)?;
    Ok(Json(limit::list(&state.store, &ns).await?))
}

/// `GET /v1/ns/{ns}/limits/{name}`
#[utoipa::path(operation_id = "limit_show", get, path = "/v1/ns/{ns}/limits/{name}", tag = "limits", params(path::Named), responses((status = 200, description = "The bucket.", body = BucketView), (status = 404, description = "No such bucket.", body = ErrorBody), Refusals))]
pub async fn show(State(state): State<AppState>, caller: Caller, params: Params) -> ApiResult<Json<BucketView>> {
    let ns = params.ns()?;
    caller.check(&ns, Primitive::Limit, Access::Read)?;
    let name: BucketName = params.get("name")?;
    Ok(Json(limit::show(&state.store, &ns, &name).await?))
}

/// `POST /v1/ns/{ns}/limits/take`
#[utoipa::path(operation_id = "limit_take", post, path = "/v1/ns/{ns}/limits/take", tag = "limits", params(path::Ns), request_body = TakeBody, responses((status = 200, description = "Granted: the buckets after the take.", body = TakeView), (status = 404, description = "A bucket was never defined.", body = ErrorBody), (status = 429, description = "`limited`: not granted within `wait_ms`; `wait_ms` and `Retry-After` say how long it needed.", body = ErrorBody, headers(("Retry-After" = u64, description = "Seconds, rounded up."))), Refusals))]
pub async fn take(
    State(state): State<AppState>,
    caller: Caller,
    params: Params,
    body: Body<TakeBody>,
) -> ApiResult<Json<TakeView>> {
    let ns = params.ns()?;
    caller.check(&ns, Primitive::Limit, Access::Write)?;
    let body = body.parse()?;
    let buckets = body
        .buckets
        .iter()
        .map(|name| parse_field::<BucketName>("buckets", name))
        .collect::<ApiResult<Vec<_>>>()?;
    let priority = match &body.priority {
        Some(text) => parse_field::<Priority>("priority", text)?,
        None => Priority::Normal,
    };
    let wait = body
        .wait_ms
        .map(|ms| check_field("wait_ms", from_millis(ms)).map(|wait| wait.min(MAX_WAIT)))
        .transpose()?
        .unwrap_or(Duration::ZERO);
    let request = TakeRequest {
        namespace: ns,
        buckets,
        cost: body.cost.unwrap_or(1),
        priority,
        party: body.party,
    };
    request.check()?;
    let namespace = request.namespace.clone();
    let taken = tokio::select! {
        taken = limit::take(&state.store, request, wait) => taken,
        () = state.shutting_down() => return Err(crate::status::shutting_down()),
    };
    match &taken {
        Ok(_) => state.metrics.take(&namespace, true),
        Err(e) if e.kind == arbiter_core::ErrorKind::Limited => state.metrics.take(&namespace, false),
        Err(_) => {}
    }
    Ok(Json(taken?))
}

/// `POST /v1/ns/{ns}/limits/{name}/observe`
#[utoipa::path(operation_id = "limit_observe", post, path = "/v1/ns/{ns}/limits/{name}/observe", tag = "limits", params(path::Named), request_body = ObserveBody, responses((status = 200, description = "The bucket after the observation.", body = BucketView), (status = 404, description = "No such bucket.", body = ErrorBody), Refusals))]
pub async fn observe(
    State(state): State<AppState>,
    caller: Caller,
    params: Params,
    body: Body<ObserveBody>,
) -> ApiResult<Json<BucketView>> {
    let ns = params.ns()?;
    caller.check(&ns, Primitive::Limit, Access::Write)?;
    let name: BucketName = params.get("name")?;
    let body = body.parse()?;
    let observation = limit::observation(body.limit, body.remaining, body.reset, body.retry_after, body.hit)?;
    Ok(Json(limit::observe(&state.store, &ns, &name, &observation).await?))
}

/// `GET /v1/ns/{ns}/counters?prefix=`: the counters of scopes starting with `prefix`.
#[utoipa::path(operation_id = "limit_counters", get, path = "/v1/ns/{ns}/counters", tag = "limits", params(path::Ns, PrefixQuery), responses((status = 200, description = "Counters of scopes starting with `prefix`, summed over hosts.", body = Vec<CounterView>), Refusals))]
pub async fn counters(
    State(state): State<AppState>,
    caller: Caller,
    params: Params,
    Query(query): Query<PrefixQuery>,
) -> ApiResult<Json<Vec<CounterView>>> {
    let ns = params.ns()?;
    caller.check(&ns, Primitive::Limit, Access::Read)?;
    // Counter scopes are names: a prefix of one is checked as any prefix is.
    let prefix: Prefix = parse_field("prefix", query.prefix.as_deref().unwrap_or(""))?;
    Ok(Json(limit::counters(&state.store, &ns, prefix.as_str()).await?))
}
