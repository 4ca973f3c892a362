//! The public operational routes: is the process up, can it reach its store.

use std::sync::OnceLock;

use arbiter_core::name::Namespace;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;

use crate::state::AppState;
use crate::status::ApiResult;
use crate::wire::ErrorBody;

/// `GET /healthz`: the process is up and serving.
#[utoipa::path(operation_id = "ops_healthz", get, path = "/healthz", tag = "ops", security(()), responses((status = 200, description = "The process is up: `ok`.", content_type = "text/plain", body = String)))]
pub async fn healthz() -> &'static str {
    "ok"
}

/// `GET /readyz`: the store answers a read (else 503 `unavailable`).
#[utoipa::path(operation_id = "ops_readyz", get, path = "/readyz", tag = "ops", security(()), responses((status = 200, description = "The store answers: `ok`.", content_type = "text/plain", body = String), (status = 503, description = "The store cannot be reached.", body = ErrorBody)))]
pub async fn readyz(State(state): State<AppState>) -> ApiResult<&'static str> {
    state.store.kv().revision(&Namespace::default()).await?;
    Ok("ok")
}

/// `GET /openapi.json`: this API's OpenAPI 3.1 document.
#[utoipa::path(operation_id = "ops_openapi", get, path = "/openapi.json", tag = "ops", security(()), responses((status = 200, description = "The OpenAPI 3.1 document.", content_type = "application/json", body = Object)))]
pub async fn openapi() -> impl IntoResponse {
    static DOCUMENT: OnceLock<String> = OnceLock::new();
    let text = DOCUMENT.get_or_init(crate::openapi::document_json);
    ([(CONTENT_TYPE, "application/json")], text.as_str())
}

/// `GET /metrics`: Prometheus metrics (OpenMetrics text); the store's gauges are read now.
#[utoipa::path(operation_id = "ops_metrics", get, path = "/metrics", tag = "ops", security(()), responses((status = 200, description = "The metrics, in OpenMetrics text.", content_type = "application/openmetrics-text", body = String), (status = 503, description = "The store cannot be reached.", body = ErrorBody)))]
pub async fn metrics(State(state): State<AppState>) -> ApiResult<impl IntoResponse> {
    let text = state.metrics.scrape(&state.store, &state.config).await?;
    Ok(([(CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], text))
}
