//! Notifications over HTTP: accept one (routed by the server's configuration), resolve a
//! dedupe key, list the outbox, retry a dead one.

use arbiter_core::notify::{Notification, Severity};
use arbiter_core::token::{Access, Primitive};
use arbiter_ops::notify::{self, MAX_LIST};
use arbiter_store::{Accepted, DeliveryState, OutboxEntry, Resolved};
use axum::Json;
use axum::extract::State;

use crate::auth::Caller;
use crate::extract::{Body, Params, Query};
use crate::openapi::{Refusals, path};
use crate::state::AppState;
use crate::status::{ApiError, ApiResult};
use crate::wire::ErrorBody;
use crate::wire::{NotificationsQuery, NotifyBody, ResolveBody};

/// `POST /v1/ns/{ns}/notifications`
#[utoipa::path(operation_id = "notify_notify", post, path = "/v1/ns/{ns}/notifications", tag = "notifications", params(path::Ns), request_body = NotifyBody, responses((status = 200, description = "Accepted into the outbox (or folded into an earlier alert).", body = Accepted), Refusals))]
pub async fn notify(
    State(state): State<AppState>,
    caller: Caller,
    params: Params,
    body: Body<NotifyBody>,
) -> ApiResult<Json<Accepted>> {
    let ns = params.ns()?;
    caller.check(&ns, Primitive::Notify, Access::Write)?;
    let body = body.parse()?;
    let severity = Severity::parse(&body.severity).map_err(|e| ApiError::bad_field("severity", e))?;
    let notification = Notification {
        kind: body.kind,
        severity,
        source: body.source.unwrap_or_else(|| caller.0.name.clone()),
        title: body.title,
        body: body.body.unwrap_or_default(),
        tags: body.tags,
        dedupe_key: body.dedupe,
    };
    let routed = notify::route(&state.config, &ns, notification, body.channel.as_deref())?;
    Ok(Json(notify::notify(&state.store, routed).await?))
}

/// `POST /v1/ns/{ns}/notifications/resolve`
#[utoipa::path(operation_id = "notify_resolve", post, path = "/v1/ns/{ns}/notifications/resolve", tag = "notifications", params(path::Ns), request_body = ResolveBody, responses((status = 200, description = "Resolved: a recovery message queued for every channel it alerted.", body = Resolved), (status = 404, description = "No open alert with this dedupe key.", body = ErrorBody), Refusals))]
pub async fn resolve(
    State(state): State<AppState>,
    caller: Caller,
    params: Params,
    body: Body<ResolveBody>,
) -> ApiResult<Json<Resolved>> {
    let ns = params.ns()?;
    caller.check(&ns, Primitive::Notify, Access::Write)?;
    let body = body.parse()?;
    arbiter_core::name::validate_name("dedupe key", &body.dedupe_key).map_err(|e| ApiError {
        error: e.into(),
        field: Some("dedupe_key".to_string()),
    })?;
    Ok(Json(
        notify::resolve(&state.store, &ns, &body.dedupe_key, body.body.as_deref()).await?,
    ))
}

/// `GET /v1/ns/{ns}/notifications?state=&limit=`
#[utoipa::path(operation_id = "notify_list", get, path = "/v1/ns/{ns}/notifications", tag = "notifications", params(path::Ns, NotificationsQuery), responses((status = 200, description = "The outbox, newest first.", body = Vec<OutboxEntry>), Refusals))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    params: Params,
    Query(query): Query<NotificationsQuery>,
) -> ApiResult<Json<Vec<OutboxEntry>>> {
    let ns = params.ns()?;
    caller.check(&ns, Primitive::Notify, Access::Read)?;
    let delivery = query
        .state
        .as_deref()
        .map(|text| DeliveryState::parse(text).map_err(|e| ApiError::bad_field("state", e)))
        .transpose()?;
    let limit = query.limit.unwrap_or(50);
    if !(1..=MAX_LIST).contains(&limit) {
        return Err(ApiError::bad_field(
            "limit",
            format!("invalid limit {limit}: expected 1 to {MAX_LIST}"),
        ));
    }
    Ok(Json(notify::list(&state.store, &ns, delivery, limit as usize).await?))
}

/// `POST /v1/ns/{ns}/notifications/{id}/retry`
#[utoipa::path(operation_id = "notify_retry", post, path = "/v1/ns/{ns}/notifications/{id}/retry", tag = "notifications", params(path::Outbox), responses((status = 200, description = "Pending again.", body = OutboxEntry), (status = 404, description = "No such entry.", body = ErrorBody), (status = 409, description = "`conflict`: the entry is not dead.", body = ErrorBody), Refusals))]
pub async fn retry(State(state): State<AppState>, caller: Caller, params: Params) -> ApiResult<Json<OutboxEntry>> {
    let ns = params.ns()?;
    caller.check(&ns, Primitive::Notify, Access::Write)?;
    let id: NotificationId = params.get("id")?;
    Ok(Json(notify::retry(&state.store, &ns, id.0).await?))
}

/// An outbox entry's id in a path: a positive integer.
struct NotificationId(i64);

impl std::str::FromStr for NotificationId {
    type Err = arbiter_core::ParseError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.parse::<i64>() {
            Ok(id) if id > 0 => Ok(NotificationId(id)),
            _ => Err(arbiter_core::ParseError::new(format!(
                "invalid id {text:?}: expected the positive integer `notifications list` shows"
            ))),
        }
    }
}
