//! The public operational routes: is the process up, can it reach its store.

use arbiter_core::name::Namespace;
use axum::extract::State;

use crate::state::AppState;
use crate::status::ApiResult;

/// `GET /healthz`: the process is up and serving.
pub async fn healthz() -> &'static str {
    "ok"
}

/// `GET /readyz`: the store answers a read (else 503 `unavailable`).
pub async fn readyz(State(state): State<AppState>) -> ApiResult<&'static str> {
    state.store.kv().revision(&Namespace::default()).await?;
    Ok("ok")
}
