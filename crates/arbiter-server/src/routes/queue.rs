//! Work items over HTTP: push, claim (a long poll while it waits), heartbeat, done, fail,
//! retry, list, show, the queues' counts and the hosts.
//!
//! Nothing to claim is not an error: the claim answers 200 with `{"claimed": null}` (the
//! CLI exits 3 without printing an error). A stale claim token is 409 `lost` (the CLI's
//! exit 4), and changes nothing.

use std::time::Duration;

use arbiter_core::ParseError;
use arbiter_core::duration::from_millis;
use arbiter_core::name::{Capability, QueueName};
use arbiter_core::queue::{
    ClaimRequest, DEFAULT_LEASE, DEFAULT_MAX_ATTEMPTS, FailRequest, ItemState, NewItem, NotBefore, Pushed,
    capability_set, check_delay, check_lease, check_note,
};
use arbiter_core::token::{Access, Primitive};
use arbiter_ops::queue::{self, HostView, ItemInfoView, ItemView, MAX_LIST, QueueStatsView};
use arbiter_ops::view::parse_timestamp;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;

use crate::auth::Caller;
use crate::extract::{Body, Params, Query, check_field, parse_field};
use crate::openapi::{Refusals, path};
use crate::routes::lease::{MAX_WAIT, holder};
use crate::state::AppState;
use crate::status::{ApiError, ApiResult};
use crate::wire::{ClaimAnswer, ClaimBody, DoneBody, ErrorBody, FailBody, HeartbeatBody, ItemsQuery, PushBody};

/// Items a listing returns unless `limit` says otherwise.
const DEFAULT_LIST: u64 = 100;

/// `POST /v1/ns/{ns}/queues/{queue}/items`
#[utoipa::path(operation_id = "queue_push", post, path = "/v1/ns/{ns}/queues/{queue}/items", tag = "queues", params(path::Queue), request_body = PushBody, responses((status = 201, description = "Created: the new item's id.", body = Pushed), (status = 200, description = "The key was already in the queue: the first push's item (`created: false`), whatever its state.", body = Pushed), Refusals))]
pub async fn push(
    State(state): State<AppState>,
    caller: Caller,
    params: Params,
    body: Body<PushBody>,
) -> ApiResult<(StatusCode, Json<Pushed>)> {
    let ns = params.ns()?;
    caller.check(&ns, Primitive::Queue, Access::Write)?;
    let queue: QueueName = params.get("queue")?;
    let body = body.parse()?;
    check_field("body", arbiter_core::queue::check_body(&body.body))?;
    if let Some(key) = &body.key {
        check_field("key", arbiter_core::queue::check_key(key))?;
    }
    let requires = capabilities("requires", &body.requires)?;
    let not_before = match (body.delay_ms, &body.not_before) {
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_field(
                "not_before",
                "give `delay_ms` or `not_before`, not both",
            ));
        }
        (Some(ms), None) => Some(NotBefore::After(check_field(
            "delay_ms",
            check_delay("delay_ms", Duration::from_millis(ms)),
        )?)),
        (None, Some(text)) => Some(NotBefore::At(check_field(
            "not_before",
            parse_timestamp("not_before", text),
        )?)),
        (None, None) => None,
    };
    let item = check_field(
        "max_attempts",
        NewItem::new(
            ns,
            queue,
            body.body,
            body.key,
            body.priority.unwrap_or(0),
            requires,
            not_before,
            body.max_attempts.unwrap_or(DEFAULT_MAX_ATTEMPTS),
        ),
    )?;
    let pushed = queue::push(&state.store, &item).await?;
    let status = if pushed.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(pushed)))
}

/// `POST /v1/ns/{ns}/queues/{queue}/claim`
#[utoipa::path(operation_id = "queue_claim", post, path = "/v1/ns/{ns}/queues/{queue}/claim", tag = "queues", params(path::Queue), request_body = ClaimBody, responses((status = 200, description = "`claimed`: the claim with its token (pass it to heartbeat, done, fail), or `null` when there was nothing this worker may take (within `wait_ms`).", body = ClaimAnswer), Refusals))]
pub async fn claim(
    State(state): State<AppState>,
    caller: Caller,
    params: Params,
    body: Body<ClaimBody>,
) -> ApiResult<Json<ClaimAnswer>> {
    let ns = params.ns()?;
    caller.check(&ns, Primitive::Queue, Access::Write)?;
    let queue: QueueName = params.get("queue")?;
    let body = body.parse()?;
    let capabilities = capabilities("capabilities", &body.capabilities)?;
    let lease = match body.lease_ms {
        Some(ms) => check_field("lease_ms", check_lease(Duration::from_millis(ms)))?,
        None => DEFAULT_LEASE,
    };
    let wait = body
        .wait_ms
        .map(|ms| check_field("wait_ms", from_millis(ms)).map(|wait| wait.min(MAX_WAIT)))
        .transpose()?;
    let request = ClaimRequest {
        namespace: ns,
        queue,
        holder: holder(body.holder.unwrap_or_default(), &caller.0.name)?,
        capabilities,
        lease,
    };
    // A client that goes away drops this future, which ends the wait before it claims
    // anything; a server shutting down ends it too.
    tokio::select! {
        claimed = queue::claim(&state.store, &state.config, &request, wait) => Ok(Json(ClaimAnswer { claimed: claimed? })),
        () = state.shutting_down() => Err(crate::status::shutting_down()),
    }
}

/// `POST /v1/ns/{ns}/items/{id}/heartbeat`
#[utoipa::path(operation_id = "queue_heartbeat", post, path = "/v1/ns/{ns}/items/{id}/heartbeat", tag = "queues", params(path::Item), request_body = HeartbeatBody, responses((status = 200, description = "Extended: the item.", body = ItemView), (status = 409, description = "`lost`: the token does not hold the item's live claim; nothing was changed.", body = ErrorBody), (status = 404, description = "No such item.", body = ErrorBody), Refusals))]
pub async fn heartbeat(
    State(state): State<AppState>,
    caller: Caller,
    params: Params,
    body: Body<HeartbeatBody>,
) -> ApiResult<Json<ItemView>> {
    let ns = params.ns()?;
    caller.check(&ns, Primitive::Queue, Access::Write)?;
    let ItemId(id) = params.get("id")?;
    let body = body.parse()?;
    let token = check_field("token", claim_token(body.token))?;
    let lease = check_field("lease_ms", check_lease(Duration::from_millis(body.lease_ms)))?;
    Ok(Json(
        queue::heartbeat(&state.store, &ns, id, token, lease, body.pgid).await?,
    ))
}

/// `POST /v1/ns/{ns}/items/{id}/done`
#[utoipa::path(operation_id = "queue_done", post, path = "/v1/ns/{ns}/items/{id}/done", tag = "queues", params(path::Item), request_body = DoneBody, responses((status = 200, description = "Done: the item.", body = ItemView), (status = 409, description = "`lost`: the token does not hold the item's live claim; nothing was changed.", body = ErrorBody), (status = 404, description = "No such item.", body = ErrorBody), Refusals))]
pub async fn done(
    State(state): State<AppState>,
    caller: Caller,
    params: Params,
    body: Body<DoneBody>,
) -> ApiResult<Json<ItemView>> {
    let ns = params.ns()?;
    caller.check(&ns, Primitive::Queue, Access::Write)?;
    let ItemId(id) = params.get("id")?;
    let body = body.parse()?;
    let token = check_field("token", claim_token(body.token))?;
    if let Some(result) = &body.result {
        check_field("result", check_note("result", result))?;
    }
    Ok(Json(
        queue::done(&state.store, &ns, id, token, body.result.as_deref()).await?,
    ))
}

/// `POST /v1/ns/{ns}/items/{id}/fail`
#[utoipa::path(operation_id = "queue_fail", post, path = "/v1/ns/{ns}/items/{id}/fail", tag = "queues", params(path::Item), request_body = FailBody, responses((status = 200, description = "Failed: the item, ready again later or dead after its last attempt.", body = ItemView), (status = 409, description = "`lost`: the token does not hold the item's live claim; nothing was changed.", body = ErrorBody), (status = 404, description = "No such item.", body = ErrorBody), Refusals))]
pub async fn fail(
    State(state): State<AppState>,
    caller: Caller,
    params: Params,
    body: Body<FailBody>,
) -> ApiResult<Json<ItemView>> {
    let ns = params.ns()?;
    caller.check(&ns, Primitive::Queue, Access::Write)?;
    let ItemId(id) = params.get("id")?;
    let body = body.parse()?;
    let token = check_field("token", claim_token(body.token))?;
    check_field("reason", check_note("reason", &body.reason))?;
    let retry_in = body
        .retry_in_ms
        .map(|ms| check_field("retry_in_ms", check_delay("retry_in_ms", Duration::from_millis(ms))))
        .transpose()?;
    let request = FailRequest {
        namespace: ns,
        id,
        token,
        reason: body.reason,
        retry_in,
    };
    Ok(Json(queue::fail(&state.store, &state.config, &request).await?))
}

/// `POST /v1/ns/{ns}/items/{id}/retry`
#[utoipa::path(operation_id = "queue_retry", post, path = "/v1/ns/{ns}/items/{id}/retry", tag = "queues", params(path::Item), responses((status = 200, description = "Ready again, with a fresh set of attempts.", body = ItemView), (status = 404, description = "No such item.", body = ErrorBody), (status = 409, description = "`conflict`: the item is neither dead nor cancelled.", body = ErrorBody), Refusals))]
pub async fn retry(State(state): State<AppState>, caller: Caller, params: Params) -> ApiResult<Json<ItemView>> {
    let ns = params.ns()?;
    caller.check(&ns, Primitive::Queue, Access::Write)?;
    let ItemId(id) = params.get("id")?;
    Ok(Json(queue::retry(&state.store, &ns, id).await?))
}

/// `GET /v1/ns/{ns}/items/{id}`
#[utoipa::path(operation_id = "queue_show", get, path = "/v1/ns/{ns}/items/{id}", tag = "queues", params(path::Item), responses((status = 200, description = "The item with every claim of it (holders, outcomes, errors).", body = ItemInfoView), (status = 404, description = "No such item.", body = ErrorBody), Refusals))]
pub async fn show(State(state): State<AppState>, caller: Caller, params: Params) -> ApiResult<Json<ItemInfoView>> {
    let ns = params.ns()?;
    caller.check(&ns, Primitive::Queue, Access::Read)?;
    let ItemId(id) = params.get("id")?;
    Ok(Json(queue::show(&state.store, &ns, id).await?))
}

/// `GET /v1/ns/{ns}/items?queue=&state=&limit=`
#[utoipa::path(operation_id = "queue_list", get, path = "/v1/ns/{ns}/items", tag = "queues", params(path::Ns, ItemsQuery), responses((status = 200, description = "Items, newest first.", body = Vec<ItemView>), Refusals))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    params: Params,
    Query(query): Query<ItemsQuery>,
) -> ApiResult<Json<Vec<ItemView>>> {
    let ns = params.ns()?;
    caller.check(&ns, Primitive::Queue, Access::Read)?;
    let queue_name = query
        .queue
        .as_deref()
        .map(|text| parse_field::<QueueName>("queue", text))
        .transpose()?;
    let item_state = query
        .state
        .as_deref()
        .map(|text| parse_field::<ItemState>("state", text))
        .transpose()?;
    let limit = query.limit.unwrap_or(DEFAULT_LIST);
    if !(1..=MAX_LIST as u64).contains(&limit) {
        return Err(ApiError::bad_field(
            "limit",
            format!("invalid limit {limit}: expected 1 to {MAX_LIST}"),
        ));
    }
    Ok(Json(
        queue::list(&state.store, &ns, queue_name.as_ref(), item_state, limit as usize).await?,
    ))
}

/// `GET /v1/ns/{ns}/queues`
#[utoipa::path(operation_id = "queue_stats", get, path = "/v1/ns/{ns}/queues", tag = "queues", params(path::Ns), responses((status = 200, description = "Every queue with items, by name: depth, age of the oldest ready item, claimed, dead, claims in the last minute.", body = Vec<QueueStatsView>), Refusals))]
pub async fn stats(
    State(state): State<AppState>,
    caller: Caller,
    params: Params,
) -> ApiResult<Json<Vec<QueueStatsView>>> {
    let ns = params.ns()?;
    caller.check(&ns, Primitive::Queue, Access::Read)?;
    Ok(Json(queue::stats(&state.store, &state.config, &ns).await?))
}

/// `GET /v1/ns/{ns}/hosts`
#[utoipa::path(operation_id = "queue_hosts", get, path = "/v1/ns/{ns}/hosts", tag = "queues", params(path::Ns), responses((status = 200, description = "The hosts that declared capabilities, by name, with when they were last seen.", body = Vec<HostView>), Refusals))]
pub async fn hosts(State(state): State<AppState>, caller: Caller, params: Params) -> ApiResult<Json<Vec<HostView>>> {
    let ns = params.ns()?;
    caller.check(&ns, Primitive::Queue, Access::Read)?;
    Ok(Json(queue::hosts(&state.store, &ns).await?))
}

/// A list of capabilities from `field`: each a valid capability, at most 64.
fn capabilities(field: &str, list: &[String]) -> ApiResult<Vec<Capability>> {
    let parsed = list
        .iter()
        .map(|text| parse_field::<Capability>(field, text))
        .collect::<ApiResult<Vec<_>>>()?;
    check_field(field, capability_set(parsed))
}

/// A claim token: the positive integer `claim` answered.
fn claim_token(token: i64) -> Result<i64, ParseError> {
    if token > 0 {
        Ok(token)
    } else {
        Err(ParseError::new(format!(
            "invalid claim token {token}: expected the positive integer a claim answered"
        )))
    }
}

/// An item's id in a path: a positive integer.
struct ItemId(i64);

impl std::str::FromStr for ItemId {
    type Err = ParseError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.parse::<i64>() {
            Ok(id) if id > 0 => Ok(ItemId(id)),
            _ => Err(ParseError::new(format!(
                "invalid item id {text:?}: expected the positive integer `queue push` printed"
            ))),
        }
    }
}
