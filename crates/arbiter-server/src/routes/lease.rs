//! Leases over HTTP: acquire (a long poll while it waits), renew, release, list, show.

use std::time::Duration;

use arbiter_core::duration::from_millis;
use arbiter_core::lease::{Holder, check_agent, check_slots, check_token};
use arbiter_core::name::{LeaseName, Prefix};
use arbiter_core::token::{Access, Primitive};
use arbiter_ops::lease::{self, AcquireRequest, LeaseShow, Released};
use arbiter_ops::view::LeaseView;
use axum::Json;
use axum::extract::State;

use crate::auth::Caller;
use crate::extract::{Body, Params, Query, check_field, parse_field};
use crate::openapi::{Refusals, path};
use crate::state::AppState;
use crate::status::ApiResult;
use crate::wire::ErrorBody;
use crate::wire::{AcquireBody, HolderBody, PrefixQuery, ReleaseBody, RenewBody};

/// The longest an acquire waits in the server: a longer `wait_ms` is cut to this, so a
/// forgotten client does not hold a connection for hours.
pub const MAX_WAIT: Duration = Duration::from_secs(600);

/// `POST /v1/ns/{ns}/leases/{name}/acquire`
#[utoipa::path(operation_id = "lease_acquire", post, path = "/v1/ns/{ns}/leases/{name}/acquire", tag = "leases", params(path::Named), request_body = AcquireBody, responses((status = 200, description = "Granted: the lease and its fencing token.", body = LeaseView), (status = 409, description = "`held` (after any wait), with `detail.held`.", body = ErrorBody), Refusals))]
pub async fn acquire(
    State(state): State<AppState>,
    caller: Caller,
    params: Params,
    body: Body<AcquireBody>,
) -> ApiResult<Json<LeaseView>> {
    let ns = params.ns()?;
    caller.check(&ns, Primitive::Lease, Access::Write)?;
    let name: LeaseName = params.get("name")?;
    let body = body.parse()?;
    let ttl = check_field("ttl_ms", from_millis(body.ttl_ms))?;
    let slots = check_field("slots", check_slots(body.slots.unwrap_or(1)))?;
    let wait = body
        .wait_ms
        .map(|ms| check_field("wait_ms", from_millis(ms)).map(|wait| wait.min(MAX_WAIT)))
        .transpose()?;
    let holder = holder(body.holder.unwrap_or_default(), &caller.0.name)?;
    let request = AcquireRequest {
        namespace: ns,
        name,
        holder,
        ttl,
        slots,
        wait,
    };
    // A client that goes away drops this future, which cancels the wait; a server shutting
    // down ends it too.
    tokio::select! {
        lease = lease::acquire(&state.store, request) => Ok(Json(lease?)),
        () = state.shutting_down() => Err(crate::status::shutting_down()),
    }
}

/// The holder a client names, with the token's name as the default agent (a lease's, a
/// work item claim's).
pub(crate) fn holder(body: HolderBody, token_name: &str) -> ApiResult<Holder> {
    let agent = body.agent.unwrap_or_else(|| token_name.to_string());
    check_field("holder.agent", check_agent(&agent))?;
    for (field, text) in [("holder.host", &body.host), ("holder.boot_id", &body.boot_id)] {
        if let Some(text) = text {
            check_field(field, check_agent(text))?;
        }
    }
    Ok(Holder {
        host: body.host.unwrap_or_default(),
        boot_id: body.boot_id.unwrap_or_default(),
        pid: body.pid.unwrap_or(0),
        start_time: body.start_time.unwrap_or(0),
        agent,
        pgid: body.pgid,
    })
}

/// `POST /v1/ns/{ns}/leases/{name}/renew`
#[utoipa::path(operation_id = "lease_renew", post, path = "/v1/ns/{ns}/leases/{name}/renew", tag = "leases", params(path::Named), request_body = RenewBody, responses((status = 200, description = "Renewed.", body = LeaseView), (status = 409, description = "`lost`: the token no longer holds the lease.", body = ErrorBody), Refusals))]
pub async fn renew(
    State(state): State<AppState>,
    caller: Caller,
    params: Params,
    body: Body<RenewBody>,
) -> ApiResult<Json<LeaseView>> {
    let ns = params.ns()?;
    caller.check(&ns, Primitive::Lease, Access::Write)?;
    let name: LeaseName = params.get("name")?;
    let body = body.parse()?;
    let token = check_field("token", check_token(body.token))?;
    let ttl = body
        .ttl_ms
        .map(|ms| check_field("ttl_ms", from_millis(ms)))
        .transpose()?;
    Ok(Json(
        lease::renew(&state.store, &ns, &name, token, ttl, body.pgid).await?,
    ))
}

/// `POST /v1/ns/{ns}/leases/{name}/release`
#[utoipa::path(operation_id = "lease_release", post, path = "/v1/ns/{ns}/leases/{name}/release", tag = "leases", params(path::Named), request_body = ReleaseBody, responses((status = 200, description = "Released.", body = Released), (status = 409, description = "`lost`: the token no longer holds the lease.", body = ErrorBody), Refusals))]
pub async fn release(
    State(state): State<AppState>,
    caller: Caller,
    params: Params,
    body: Body<ReleaseBody>,
) -> ApiResult<Json<Released>> {
    let ns = params.ns()?;
    caller.check(&ns, Primitive::Lease, Access::Write)?;
    let name: LeaseName = params.get("name")?;
    let body = body.parse()?;
    let token = check_field("token", check_token(body.token))?;
    Ok(Json(lease::release(&state.store, &ns, &name, token).await?))
}

/// `GET /v1/ns/{ns}/leases?prefix=`
#[utoipa::path(operation_id = "lease_list", get, path = "/v1/ns/{ns}/leases", tag = "leases", params(path::Ns, PrefixQuery), responses((status = 200, description = "The live holders of leases whose names start with `prefix`.", body = Vec<LeaseView>), Refusals))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    params: Params,
    Query(query): Query<PrefixQuery>,
) -> ApiResult<Json<Vec<LeaseView>>> {
    let ns = params.ns()?;
    caller.check(&ns, Primitive::Lease, Access::Read)?;
    let prefix: Prefix = parse_field("prefix", query.prefix.as_deref().unwrap_or(""))?;
    Ok(Json(lease::list(&state.store, &ns, &prefix).await?))
}

/// `GET /v1/ns/{ns}/leases/{name}`
#[utoipa::path(operation_id = "lease_show", get, path = "/v1/ns/{ns}/leases/{name}", tag = "leases", params(path::Named), responses((status = 200, description = "The lease: slots, last token, holders, waiters.", body = LeaseShow), (status = 404, description = "`not_found`: the name was never acquired.", body = ErrorBody), Refusals))]
pub async fn show(State(state): State<AppState>, caller: Caller, params: Params) -> ApiResult<Json<LeaseShow>> {
    let ns = params.ns()?;
    caller.check(&ns, Primitive::Lease, Access::Read)?;
    let name: LeaseName = params.get("name")?;
    Ok(Json(lease::show(&state.store, &ns, &name).await?))
}
