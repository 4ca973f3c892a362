//! The routes: one module per primitive, each handler a thin adapter over one
//! `arbiter_ops` function (parse the path, query and body with the core's parsers, check
//! the caller's scope, call, answer the view as JSON).

pub mod admin;
pub mod decisions;
pub mod kv;
pub mod lease;
pub mod limit;
pub mod log;
pub mod notify;
pub mod ops;
pub mod status;

use axum::Router;
use axum::routing::{get, post, put};

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
        .route("/v1/ns/{ns}/limits", get(limit::list))
        .route("/v1/ns/{ns}/limits/take", post(limit::take))
        .route("/v1/ns/{ns}/limits/{name}", get(limit::show).put(limit::define))
        .route("/v1/ns/{ns}/limits/{name}/observe", post(limit::observe))
        .route("/v1/ns/{ns}/counters", get(limit::counters))
        .route("/v1/ns/{ns}/logs", get(log::streams))
        .route("/v1/ns/{ns}/logs/{stream}/records", get(log::read).post(log::append))
        .route("/v1/ns/{ns}/logs/{stream}/follow", get(log::follow))
        .route("/v1/ns/{ns}/logs/{stream}/consumers", get(log::consumers))
        .route("/v1/ns/{ns}/logs/{stream}/consumers/{consumer}", put(log::commit))
        .route("/v1/ns/{ns}/decisions", get(decisions::render).post(decisions::decide))
        .route("/v1/ns/{ns}/notifications", get(notify::list).post(notify::notify))
        .route("/v1/ns/{ns}/notifications/resolve", post(notify::resolve))
        .route("/v1/ns/{ns}/notifications/{id}/retry", post(notify::retry))
        .route("/v1/ns/{ns}/status", get(status::status))
        .route("/v1/ns/{ns}/status/stream", get(status::stream))
        .route("/v1/ns/{ns}/dashboard/stream", get(crate::dashboard::stream))
        .route("/v1/store", get(admin::store))
        .route("/v1/channels", get(admin::channels))
}

/// The public routes: no token needed.
pub fn public() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
}
