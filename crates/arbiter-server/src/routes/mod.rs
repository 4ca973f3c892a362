//! The routes: one module per primitive, each handler a thin adapter over one
//! `arbiter_ops` function (parse the path, query and body with the core's parsers, check
//! the caller's scope, call, answer the view as JSON).

pub mod kv;
pub mod lease;
pub mod ops;

use axum::Router;
use axum::routing::{get, post};

use crate::state::AppState;

/// Every route under `/v1`: they all need a token (the caller's scope is checked in each
/// handler, against the namespace of its path).
pub fn v1() -> Router<AppState> {
    Router::new()
        .route("/v1/ns/{ns}/leases", get(lease::list))
        .route("/v1/ns/{ns}/leases/{name}", get(lease::show))
        .route("/v1/ns/{ns}/leases/{name}/acquire", post(lease::acquire))
        .route("/v1/ns/{ns}/leases/{name}/renew", post(lease::renew))
        .route("/v1/ns/{ns}/leases/{name}/release", post(lease::release))
        .route("/v1/ns/{ns}/kv", get(kv::list))
        .route("/v1/ns/{ns}/kv/{key}", get(kv::get).put(kv::put).delete(kv::delete))
        .route("/v1/ns/{ns}/watch/kv", get(kv::watch))
}

/// The public routes: no token needed.
pub fn public() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
}
