//! Decisions over HTTP: record one, render the log as Markdown.

use arbiter_core::token::{Access, Primitive};
use arbiter_ops::decisions::{self, Decided, DecisionInput, Rendered};
use axum::Json;
use axum::extract::State;

use crate::auth::Caller;
use crate::extract::{Body, Params};
use crate::openapi::{Refusals, path};
use crate::state::AppState;
use crate::status::{ApiError, ApiResult};
use crate::wire::DecideBody;

/// `POST /v1/ns/{ns}/decisions`
#[utoipa::path(operation_id = "decisions_decide", post, path = "/v1/ns/{ns}/decisions", tag = "decisions", params(path::Ns), request_body = DecideBody, responses((status = 200, description = "Recorded.", body = Decided), Refusals))]
pub async fn decide(
    State(state): State<AppState>,
    caller: Caller,
    params: Params,
    body: Body<DecideBody>,
) -> ApiResult<Json<Decided>> {
    let ns = params.ns()?;
    caller.check(&ns, Primitive::Decisions, Access::Write)?;
    let body = body.parse()?;
    let by = body.by.unwrap_or_else(|| caller.0.name.clone());
    let decision = decisions::decision(&body.text, body.title.as_deref(), &by).map_err(|(input, error)| {
        let field = match input {
            DecisionInput::Text => "text",
            DecisionInput::Title => "title",
            DecisionInput::By => "by",
        };
        ApiError {
            error,
            field: Some(field.to_string()),
        }
    })?;
    let record = decisions::record(&ns, &decision, &by, body.tags, body.key)?;
    Ok(Json(decisions::decide(&state.store, record).await?))
}

/// `GET /v1/ns/{ns}/decisions`: the log as Markdown (`text`) and how many it holds.
#[utoipa::path(operation_id = "decisions_render", get, path = "/v1/ns/{ns}/decisions", tag = "decisions", params(path::Ns), responses((status = 200, description = "The decisions log as Markdown: the same log always gives the same text.", body = Rendered), Refusals))]
pub async fn render(State(state): State<AppState>, caller: Caller, params: Params) -> ApiResult<Json<Rendered>> {
    let ns = params.ns()?;
    caller.check(&ns, Primitive::Decisions, Access::Read)?;
    Ok(Json(decisions::render(&state.store, &ns).await?))
}
