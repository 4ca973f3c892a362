//! The admin routes: the store itself, the configured channels. They need the `admin`
//! scope (no namespace: they are the server's, not a namespace's).

use arbiter_ops::notify::ChannelView;
use arbiter_store::StoreInfo;
use axum::Json;
use axum::extract::State;

use crate::auth::Caller;
use crate::openapi::Refusals;
use crate::state::AppState;
use crate::status::ApiResult;

/// `GET /v1/store`: which store, and its schema.
#[utoipa::path(operation_id = "admin_store", get, path = "/v1/store", tag = "admin", responses((status = 200, description = "Which store, and its schema (scope `admin`).", body = StoreInfo), Refusals))]
pub async fn store(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<StoreInfo>> {
    caller.check_admin()?;
    Ok(Json(arbiter_ops::store::info(&state.store)))
}

/// `GET /v1/channels`: the configured notification channels, secrets hidden.
#[utoipa::path(operation_id = "admin_channels", get, path = "/v1/channels", tag = "admin", responses((status = 200, description = "The configured channels, secrets hidden (scope `admin`).", body = Vec<ChannelView>), Refusals))]
pub async fn channels(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<Vec<ChannelView>>> {
    caller.check_admin()?;
    Ok(Json(arbiter_ops::notify::channels(&state.config)))
}
