//! The admin routes: the store itself, the configured channels. They need the `admin`
//! scope (no namespace: they are the server's, not a namespace's).

use arbiter_ops::notify::ChannelView;
use arbiter_store::StoreInfo;
use axum::Json;
use axum::extract::State;

use crate::auth::Caller;
use crate::state::AppState;
use crate::status::ApiResult;

/// `GET /v1/store`: which store, and its schema.
pub async fn store(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<StoreInfo>> {
    caller.check_admin()?;
    Ok(Json(arbiter_ops::store::info(&state.store)))
}

/// `GET /v1/channels`: the configured notification channels, secrets hidden.
pub async fn channels(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<Vec<ChannelView>>> {
    caller.check_admin()?;
    Ok(Json(arbiter_ops::notify::channels(&state.config)))
}
