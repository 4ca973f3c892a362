//! The OpenAPI 3.1 document, generated from the handlers' own annotations and types
//! (`utoipa`), served at `/openapi.json` and committed as `docs/openapi.json`.
//!
//! Routes are registered through `utoipa_axum::routes!`, which takes the path and methods
//! from each handler's `#[utoipa::path]`: a route cannot be served without being
//! documented, nor documented at a path it is not served at. The test
//! `openapi::committed_document_is_current` keeps the committed file equal to this.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{IntoParams, IntoResponses, Modify, OpenApi, ToSchema};

use crate::wire::ErrorBody;

/// The document's fixed parts; the paths come from the routers.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "arbiter",
        version = "1",
        description = "Coordination for fleets of AI agent loops: leases with fencing tokens, versioned keys, \
            rate limits, logs, decisions, notifications and the fleet's status, over one store. Every `/v1` \
            route needs `Authorization: Bearer <token>` (`arbiter token create`); errors are an `ErrorBody`. \
            Path parameters are one percent-encoded segment each: a `/` in a name is sent as `%2F`."
    ),
    modifiers(&Bearer),
    security(("bearer" = [])),
    components(schemas(ErrorBody))
)]
pub struct ApiDoc;

/// The `bearer` security scheme every `/v1` route requires.
struct Bearer;

impl Modify for Bearer {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("A token of `arbiter token create` (`arb_…`)."))
                    .build(),
            ),
        );
    }
}

/// The failures every `/v1` route can answer, besides its own.
#[derive(IntoResponses)]
#[allow(dead_code)]
pub enum Refusals {
    /// Bad input: `field` names the body field, query or path parameter.
    #[response(status = 400)]
    BadInput(ErrorBody),
    /// No token, or one that is unknown, expired or revoked.
    #[response(status = 401)]
    Unauthorized(ErrorBody),
    /// The token does not reach this namespace or scope.
    #[response(status = 403)]
    Forbidden(ErrorBody),
    /// A bug, a corrupted store.
    #[response(status = 500)]
    Internal(ErrorBody),
    /// The store cannot be reached, or the server is shutting down.
    #[response(status = 503)]
    Unavailable(ErrorBody),
}

// The patterns below are the core's name rules (`arbiter_core::name`) as regular
// expressions; `tests/it/openapi.rs` checks them against the core's parsers.

/// Path parameters, for the document (handlers read them with [`crate::extract::Params`]).
pub mod path {
    use super::*;

    /// `{ns}`.
    #[derive(IntoParams, ToSchema)]
    #[into_params(parameter_in = Path)]
    #[allow(dead_code)]
    pub struct Ns {
        /// The namespace (1-63 of a-z, 0-9, -, _).
        #[param(pattern = "^[a-z0-9][a-z0-9_-]{0,62}$")]
        pub ns: String,
    }

    /// `{ns}` and a lease or bucket `{name}`.
    #[derive(IntoParams, ToSchema)]
    #[into_params(parameter_in = Path)]
    #[allow(dead_code)]
    pub struct Named {
        /// The namespace.
        #[param(pattern = "^[a-z0-9][a-z0-9_-]{0,62}$")]
        pub ns: String,
        /// The lease or bucket name; a `/` in it is sent as `%2F`.
        #[param(
            pattern = "^(?:[A-Za-z0-9_:@-][A-Za-z0-9._:@-]*|\\.[A-Za-z0-9_:@-][A-Za-z0-9._:@-]*|\\.\\.[A-Za-z0-9._:@-]+)(?:/(?:[A-Za-z0-9_:@-][A-Za-z0-9._:@-]*|\\.[A-Za-z0-9_:@-][A-Za-z0-9._:@-]*|\\.\\.[A-Za-z0-9._:@-]+))*$",
            max_length = 255
        )]
        pub name: String,
    }

    /// `{ns}` and a `{key}`.
    #[derive(IntoParams, ToSchema)]
    #[into_params(parameter_in = Path)]
    #[allow(dead_code)]
    pub struct Keyed {
        /// The namespace.
        #[param(pattern = "^[a-z0-9][a-z0-9_-]{0,62}$")]
        pub ns: String,
        /// The key; a `/` in it is sent as `%2F`.
        #[param(
            pattern = "^(?:[A-Za-z0-9_:@-][A-Za-z0-9._:@-]*|\\.[A-Za-z0-9_:@-][A-Za-z0-9._:@-]*|\\.\\.[A-Za-z0-9._:@-]+)(?:/(?:[A-Za-z0-9_:@-][A-Za-z0-9._:@-]*|\\.[A-Za-z0-9_:@-][A-Za-z0-9._:@-]*|\\.\\.[A-Za-z0-9._:@-]+))*$",
            max_length = 255
        )]
        pub key: String,
    }

    /// `{ns}` and a log `{stream}`.
    #[derive(IntoParams, ToSchema)]
    #[into_params(parameter_in = Path)]
    #[allow(dead_code)]
    pub struct Stream {
        /// The namespace.
        #[param(pattern = "^[a-z0-9][a-z0-9_-]{0,62}$")]
        pub ns: String,
        /// The stream; a `/` in it is sent as `%2F`.
        #[param(
            pattern = "^(?:[A-Za-z0-9_:@-][A-Za-z0-9._:@-]*|\\.[A-Za-z0-9_:@-][A-Za-z0-9._:@-]*|\\.\\.[A-Za-z0-9._:@-]+)(?:/(?:[A-Za-z0-9_:@-][A-Za-z0-9._:@-]*|\\.[A-Za-z0-9_:@-][A-Za-z0-9._:@-]*|\\.\\.[A-Za-z0-9._:@-]+))*$",
            max_length = 255
        )]
        pub stream: String,
    }

    /// `{ns}`, a log `{stream}` and a `{consumer}`.
    #[derive(IntoParams, ToSchema)]
    #[into_params(parameter_in = Path)]
    #[allow(dead_code)]
    pub struct Consumer {
        /// The namespace.
        #[param(pattern = "^[a-z0-9][a-z0-9_-]{0,62}$")]
        pub ns: String,
        /// The stream; a `/` in it is sent as `%2F`.
        #[param(
            pattern = "^(?:[A-Za-z0-9_:@-][A-Za-z0-9._:@-]*|\\.[A-Za-z0-9_:@-][A-Za-z0-9._:@-]*|\\.\\.[A-Za-z0-9._:@-]+)(?:/(?:[A-Za-z0-9_:@-][A-Za-z0-9._:@-]*|\\.[A-Za-z0-9_:@-][A-Za-z0-9._:@-]*|\\.\\.[A-Za-z0-9._:@-]+))*$",
            max_length = 255
        )]
        pub stream: String,
        /// The consumer.
        #[param(
            pattern = "^(?:[A-Za-z0-9_:@-][A-Za-z0-9._:@-]*|\\.[A-Za-z0-9_:@-][A-Za-z0-9._:@-]*|\\.\\.[A-Za-z0-9._:@-]+)(?:/(?:[A-Za-z0-9_:@-][A-Za-z0-9._:@-]*|\\.[A-Za-z0-9_:@-][A-Za-z0-9._:@-]*|\\.\\.[A-Za-z0-9._:@-]+))*$",
            max_length = 255
        )]
        pub consumer: String,
    }

    /// `{ns}` and a work `{queue}`.
    #[derive(IntoParams, ToSchema)]
    #[into_params(parameter_in = Path)]
    #[allow(dead_code)]
    pub struct Queue {
        /// The namespace.
        #[param(pattern = "^[a-z0-9][a-z0-9_-]{0,62}$")]
        pub ns: String,
        /// The queue; a `/` in it is sent as `%2F`.
        #[param(
            pattern = "^(?:[A-Za-z0-9_:@-][A-Za-z0-9._:@-]*|\\.[A-Za-z0-9_:@-][A-Za-z0-9._:@-]*|\\.\\.[A-Za-z0-9._:@-]+)(?:/(?:[A-Za-z0-9_:@-][A-Za-z0-9._:@-]*|\\.[A-Za-z0-9_:@-][A-Za-z0-9._:@-]*|\\.\\.[A-Za-z0-9._:@-]+))*$",
            max_length = 255
        )]
        pub queue: String,
    }

    /// `{ns}` and a work item's `{id}`.
    #[derive(IntoParams, ToSchema)]
    #[into_params(parameter_in = Path)]
    #[allow(dead_code)]
    pub struct Item {
        /// The namespace.
        #[param(pattern = "^[a-z0-9][a-z0-9_-]{0,62}$")]
        pub ns: String,
        /// The item's id (as `queue push` printed it).
        #[param(minimum = 1)]
        pub id: i64,
    }

    /// `{ns}` and an outbox entry's `{id}`.
    #[derive(IntoParams, ToSchema)]
    #[into_params(parameter_in = Path)]
    #[allow(dead_code)]
    pub struct Outbox {
        /// The namespace.
        #[param(pattern = "^[a-z0-9][a-z0-9_-]{0,62}$")]
        pub ns: String,
        /// The entry's id (as `notifications list` shows it).
        #[param(minimum = 1)]
        pub id: i64,
    }
}

/// The whole document, as the server serves it.
pub fn document() -> utoipa::openapi::OpenApi {
    crate::routes::api().into_openapi()
}

/// The document as `/openapi.json` serves it and `docs/openapi.json` holds it.
pub fn document_json() -> String {
    let mut text = document().to_pretty_json().expect("the OpenAPI document serializes");
    text.push('\n');
    text
}
