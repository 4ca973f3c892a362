//! The live fleet dashboard: `GET /` (a static page) and the one stream it reads,
//! `GET /v1/ns/{ns}/dashboard/stream`.
//!
//! The page is three files compiled into the binary (`static/`: HTML, plain JavaScript,
//! CSS): no build step, nothing fetched from elsewhere, so it works offline and under a
//! strict Content-Security-Policy (scripts and styles from this origin only, no inline
//! code, no frames). It is public, like `/healthz`; the data is not: the page sends the
//! token it was given (in the URL fragment, which browsers never send, or a form) as
//! `Authorization: Bearer` on a `fetch()` of the stream (an `EventSource` cannot send
//! headers), and everything it shows is inserted as text, never as HTML.
//!
//! The stream sends `event: snapshot` with a [`Snapshot`] at start and whenever it differs
//! from the last one sent: it is looked at again on every change of loops, leases or the
//! outbox (the store's change topics) and at least every [`RECHECK`] (limits have no
//! topic, and times such as "next run in" move on by themselves).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arbiter_core::name::{Namespace, Prefix};
use arbiter_core::token::{Access, Primitive, Principal};
use arbiter_core::{Millis, Result};
use arbiter_ops::fleet::{self, FleetView};
use arbiter_ops::limit::BucketView;
use arbiter_ops::view::LeaseView;
use arbiter_store::{DeliveryState, OutboxEntry, Store, Subscription, Topic};
use axum::extract::State;
use axum::http::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, HeaderName, REFERRER_POLICY};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Caller;
use crate::extract::Params;
use crate::openapi::{Refusals, path};
use crate::sse;
use crate::state::AppState;
use crate::status::ApiResult;

/// How often the stream looks again without a change announced.
pub const RECHECK: Duration = Duration::from_secs(1);

/// How many of the outbox's newest entries a snapshot carries.
pub const RECENT_OUTBOX: usize = 10;

/// How many outbox entries of one state are counted at most: a snapshot is read every
/// second, so a dead letter pile is not read whole each time; past it the page shows "N+".
pub const OUTBOX_COUNT_LIMIT: usize = 1000;

/// Scripts, styles and connections from this origin only; no inline code, images,
/// plugins, frames or form posts. Data inserted by mistake as HTML could not run.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
                   base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The page's routes (public: the page holds no data).
pub fn pages() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(index))
        .routes(routes!(script))
        .routes(routes!(style))
}

#[utoipa::path(operation_id = "dashboard_page", get, path = "/", tag = "dashboard", security(()), responses((status = 200, description = "The dashboard: a static page that reads `/v1/ns/{ns}/dashboard/stream` with the token given in its URL fragment (`/#token=arb_…&ns=NS`) or its form.", content_type = "text/html", body = String)))]
async fn index() -> Response {
    asset("text/html; charset=utf-8", include_str!("static/index.html"))
}

#[utoipa::path(operation_id = "dashboard_script", get, path = "/dashboard.js", tag = "dashboard", security(()), responses((status = 200, description = "The dashboard's script.", content_type = "text/javascript", body = String)))]
async fn script() -> Response {
    asset("text/javascript; charset=utf-8", include_str!("static/dashboard.js"))
}

#[utoipa::path(operation_id = "dashboard_style", get, path = "/dashboard.css", tag = "dashboard", security(()), responses((status = 200, description = "The dashboard's style sheet.", content_type = "text/css", body = String)))]
async fn style() -> Response {
    asset("text/css; charset=utf-8", include_str!("static/dashboard.css"))
}

/// A static file with the headers that keep it from being framed, sniffed as something
/// else, cached stale after an upgrade, or leaking its URL as a referrer.
fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        StatusCode::OK,
        [
            (CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP)),
            (REFERRER_POLICY, HeaderValue::from_static("no-referrer")),
            (CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (
                HeaderName::from_static("x-content-type-options"),
                HeaderValue::from_static("nosniff"),
            ),
        ],
        body,
    )
        .into_response()
}

/// What the dashboard shows of one namespace. A section the caller's token may not read
/// (`lease:read`, `notify:read`, `limit:read`) is `null`: the stream needs `status:read`
/// only, and must not show more than the token could read route by route.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Snapshot {
    pub namespace: String,
    /// As `GET /v1/ns/{ns}/status` (and `arbiter status --json`).
    pub loops: FleetView,
    pub leases: Option<Vec<LeaseView>>,
    pub outbox: Option<OutboxView>,
    pub limits: Option<Vec<BucketView>>,
}

/// The notification outbox in brief.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct OutboxView {
    /// Entries waiting to be delivered (at most [`OUTBOX_COUNT_LIMIT`]: see `counted_up_to`).
    pub pending: u64,
    /// Entries given up on (`arbiter notifications retry` puts one back).
    pub dead: u64,
    /// How long the oldest pending entry (of those counted) has waited, by the server's
    /// clock; `None` when nothing is pending.
    pub oldest_pending_age_ms: Option<i64>,
    /// The most either count goes to: a count equal to it means "at least".
    pub counted_up_to: u64,
    /// The newest entries, any state, newest first.
    pub recent: Vec<OutboxEntry>,
}

/// Which sections a caller may see.
#[derive(Debug, Clone, Copy)]
struct Sections {
    leases: bool,
    outbox: bool,
    limits: bool,
}

impl Sections {
    fn of(principal: &Principal, ns: &Namespace) -> Sections {
        let may = |primitive| principal.check(ns, primitive, Access::Read).is_ok();
        Sections {
            leases: may(Primitive::Lease),
            outbox: may(Primitive::Notify),
            limits: may(Primitive::Limit),
        }
    }

    /// The change topics of what is shown.
    fn topics(self) -> Vec<Topic> {
        let mut topics = vec![Topic::Loops];
        if self.leases {
            topics.push(Topic::Leases);
        }
        if self.outbox {
            topics.push(Topic::Notify);
        }
        topics
    }
}

/// Reads one snapshot.
async fn snapshot(store: &Store, ns: &Namespace, sections: Sections) -> Result<Snapshot> {
    let loops = fleet::fleet_status(store, ns).await?;
    let leases = if sections.leases {
        Some(arbiter_ops::lease::list(store, ns, &Prefix::default()).await?)
    } else {
        None
    };
    let outbox = if sections.outbox {
        Some(outbox(store, ns).await?)
    } else {
        None
    };
    let limits = if sections.limits {
        Some(arbiter_ops::limit::list(store, ns).await?)
    } else {
        None
    };
    Ok(Snapshot {
        namespace: ns.to_string(),
        loops,
        leases,
        outbox,
        limits,
    })
}

async fn outbox(store: &Store, ns: &Namespace) -> Result<OutboxView> {
    use arbiter_ops::notify::list;
    let pending = list(store, ns, Some(DeliveryState::Pending), OUTBOX_COUNT_LIMIT).await?;
    let dead = list(store, ns, Some(DeliveryState::Dead), OUTBOX_COUNT_LIMIT).await?;
    let recent = list(store, ns, None, RECENT_OUTBOX).await?;
    let now: Millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as Millis)
        .unwrap_or_default();
    Ok(OutboxView {
        pending: pending.len() as u64,
        dead: dead.len() as u64,
        oldest_pending_age_ms: pending
            .iter()
            .map(|entry| entry.created_at)
            .min()
            .map(|created| (now - created).max(0)),
        counted_up_to: OUTBOX_COUNT_LIMIT as u64,
        recent,
    })
}

/// `GET /v1/ns/{ns}/dashboard/stream` (`status:read`): `event: snapshot` with a
/// [`Snapshot`] at start and whenever it changes.
#[utoipa::path(operation_id = "dashboard_stream", get, path = "/v1/ns/{ns}/dashboard/stream", tag = "status", params(path::Ns), responses((status = 200, description = "Server-Sent Events: `event: snapshot` with what the dashboard shows (loops, leases, outbox, limits) at start and whenever it changes. Needs `status:read`; a section the token cannot read (`lease:read`, `notify:read`, `limit:read`) is null.", content_type = "text/event-stream", body = Snapshot), Refusals))]
pub async fn stream(State(state): State<AppState>, caller: Caller, params: Params) -> ApiResult<Response> {
    let ns = params.ns()?;
    caller.check(&ns, Primitive::Status, Access::Read)?;
    let sections = Sections::of(&caller.0, &ns);
    // Subscribed before the first read, so no change between the two is missed.
    let mut subscriptions = Vec::new();
    for topic in sections.topics() {
        subscriptions.push(state.store.changes().subscribe(topic).await?);
    }
    let first = snapshot(&state.store, &ns, sections).await?;
    let store = state.store.clone();
    let snapshots = futures_util::stream::unfold(
        (subscriptions, None::<Snapshot>, Some(first)),
        move |(mut subscriptions, last, next)| {
            let store = store.clone();
            let ns = ns.clone();
            async move {
                if let Some(first) = next {
                    return Some((Ok(first.clone()), (subscriptions, Some(first), None)));
                }
                // Bounded by the stream: it ends when the client goes or the server stops.
                loop {
                    if let Err(e) = changed(&mut subscriptions).await {
                        return Some((Err(e), (subscriptions, last, None)));
                    }
                    match snapshot(&store, &ns, sections).await {
                        Ok(view) if last.as_ref() == Some(&view) => continue,
                        Ok(view) => return Some((Ok(view.clone()), (subscriptions, Some(view), None))),
                        Err(e) => return Some((Err(e), (subscriptions, last, None))),
                    }
                }
            }
        },
    );
    Ok(sse::items(&state, "snapshot", snapshots))
}

/// Returns when any topic may have changed, or after [`RECHECK`].
async fn changed(subscriptions: &mut [Box<dyn Subscription>]) -> Result<()> {
    let waits = subscriptions.iter_mut().map(|s| s.wait(RECHECK));
    futures_util::future::select_all(waits).await.0
}
