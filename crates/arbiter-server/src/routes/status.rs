//! The fleet over HTTP: `arbiter status` once, or as a stream of changes.

use std::time::Duration;

use arbiter_core::token::{Access, Primitive};
use arbiter_ops::fleet::{self, FleetView};
use arbiter_store::Topic;
use axum::Json;
use axum::extract::State;
use axum::response::Response;

use crate::auth::Caller;
use crate::extract::Params;
use crate::openapi::{Refusals, path};
use crate::sse;
use crate::state::AppState;
use crate::status::ApiResult;

/// How often the status stream looks again without a change of loops or leases: times
/// such as "next run in" move on, and budgets refill, without one.
const RECHECK: Duration = Duration::from_secs(2);

/// `GET /v1/ns/{ns}/status`: the same JSON as `arbiter status --json`.
#[utoipa::path(operation_id = "status_status", get, path = "/v1/ns/{ns}/status", tag = "status", params(path::Ns), responses((status = 200, description = "The fleet, as `arbiter status --json` prints it.", body = FleetView), Refusals))]
pub async fn status(State(state): State<AppState>, caller: Caller, params: Params) -> ApiResult<Json<FleetView>> {
    let ns = params.ns()?;
    caller.check(&ns, Primitive::Status, Access::Read)?;
    Ok(Json(fleet::fleet_status(&state.store, &ns).await?))
}

/// `GET /v1/ns/{ns}/status/stream`: `event: status` with the fleet at start and whenever
/// it changes (looked at on every change of loops, and at least every 2 s).
#[utoipa::path(operation_id = "status_stream", get, path = "/v1/ns/{ns}/status/stream", tag = "status", params(path::Ns), responses((status = 200, description = "Server-Sent Events: `event: status` with the fleet at start and whenever it changes.", content_type = "text/event-stream", body = FleetView), Refusals))]
pub async fn stream(State(state): State<AppState>, caller: Caller, params: Params) -> ApiResult<Response> {
    let ns = params.ns()?;
    caller.check(&ns, Primitive::Status, Access::Read)?;
    // Subscribed before the first read, so no change between the two is missed.
    let subscription = state.store.changes().subscribe(Topic::Loops).await?;
    let first = fleet::fleet_status(&state.store, &ns).await?;
    let store = state.store.clone();
    let views = futures_util::stream::unfold(
        (subscription, None::<FleetView>, Some(first)),
        move |(mut subscription, last, next)| {
            let store = store.clone();
            let ns = ns.clone();
            async move {
                if let Some(first) = next {
                    return Some((Ok(first.clone()), (subscription, Some(first), None)));
                }
                // Bounded by the stream: it ends when the client goes or the server stops.
                loop {
                    if let Err(e) = subscription.wait(RECHECK).await {
                        return Some((Err(e), (subscription, last, None)));
                    }
                    match fleet::fleet_status(&store, &ns).await {
                        Ok(view) if last.as_ref() == Some(&view) => continue,
                        Ok(view) => return Some((Ok(view.clone()), (subscription, Some(view), None))),
                        Err(e) => return Some((Err(e), (subscription, last, None))),
                    }
                }
            }
        },
    );
    Ok(sse::items(&state, "status", views))
}
