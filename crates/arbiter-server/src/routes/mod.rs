//! The routes: one module per primitive, each handler a thin adapter over one
//! `arbiter_ops` function (parse the path, query and body with the core's parsers, check
//! the caller's scope, call, answer the view as JSON).
//!
//! Every route is registered with `routes!`, which reads its path and methods from the
//! handler's `#[utoipa::path]`: what is served is what `/openapi.json` documents.

pub mod admin;
pub mod decisions;
pub mod kv;
pub mod lease;
pub mod limit;
pub mod log;
pub mod notify;
pub mod ops;
pub mod queue;
pub mod status;

use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::openapi::ApiDoc;
use crate::state::AppState;

/// Every route under `/v1`: they all need a token (the caller's scope is checked in each
/// handler, against the namespace of its path).
pub fn v1() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(lease::list))
        .routes(routes!(lease::show))
        .routes(routes!(lease::acquire))
        .routes(routes!(lease::renew))
        .routes(routes!(lease::release))
        .routes(routes!(kv::list))
        .routes(routes!(kv::get, kv::put, kv::delete))
        .routes(routes!(kv::watch))
        .routes(routes!(limit::list))
        .routes(routes!(limit::take))
        .routes(routes!(limit::show, limit::define))
        .routes(routes!(limit::observe))
        .routes(routes!(limit::counters))
        .routes(routes!(log::streams))
        .routes(routes!(log::read, log::append))
        .routes(routes!(log::follow))
        .routes(routes!(log::consumers))
        .routes(routes!(log::commit))
        .routes(routes!(decisions::render, decisions::decide))
        .routes(routes!(notify::list, notify::notify))
        .routes(routes!(notify::resolve))
        .routes(routes!(notify::retry))
        .routes(routes!(queue::push))
        .routes(routes!(queue::claim))
        .routes(routes!(queue::heartbeat))
        .routes(routes!(queue::done))
        .routes(routes!(queue::fail))
        .routes(routes!(queue::retry))
        .routes(routes!(queue::show))
        .routes(routes!(queue::list))
        .routes(routes!(queue::stats))
        .routes(routes!(queue::hosts))
        .routes(routes!(status::status))
        .routes(routes!(status::stream))
        .routes(routes!(crate::dashboard::stream))
        .routes(routes!(admin::store))
        .routes(routes!(admin::channels))
}

/// The public routes: no token needed.
pub fn public() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(ops::healthz))
        .routes(routes!(ops::readyz))
        .routes(routes!(ops::openapi))
        .routes(routes!(ops::metrics))
        .merge(crate::dashboard::pages())
}

/// Every route, with the document's fixed parts: what `/openapi.json` is made from.
pub fn api() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(v1())
        .merge(public())
}
