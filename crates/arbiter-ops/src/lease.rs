//! Leases: acquire (waiting in arrival order), renew, release, list, show.
//!
//! A busy lease fails with `ErrorKind::Held` and `Detail::Held` (who holds it, how many
//! wait ahead); a stale token with `ErrorKind::Lost`.

use std::time::Duration;

pub use arbiter_client::lease::AcquireRequest;
use arbiter_core::Result;
use arbiter_core::lease::{Holder, RenewRequest};
use arbiter_core::name::{LeaseName, Namespace, Prefix};
use arbiter_store::Store;
use serde::{Deserialize, Serialize};

use crate::view::{LeaseView, timestamp};

/// Takes a place of a lease (waiting up to `request.wait` for one). The holder is the
/// front end's caller: the process to watch on this host.
pub async fn acquire(store: &Store, request: AcquireRequest) -> Result<LeaseView> {
    let granted = arbiter_client::lease::acquire(store, request).await?;
    Ok(LeaseView::from(&granted.lease))
}

/// Extends a held lease by `ttl` (default: its own TTL) from now, recording `pgid` as the
/// holder's process group if given (`arbiter lock` through a server does, for the
/// command it runs: see `HeldLease::record_pgid`).
pub async fn renew(
    store: &Store,
    namespace: &Namespace,
    name: &LeaseName,
    token: i64,
    ttl: Option<Duration>,
    pgid: Option<u32>,
) -> Result<LeaseView> {
    let request = RenewRequest {
        namespace: namespace.clone(),
        name: name.clone(),
        token,
        ttl,
        pgid,
    };
    let lease = store.leases().renew(request).await?;
    Ok(LeaseView::from(&lease))
}

/// What a release did.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Released {
    pub name: LeaseName,
    pub token: i64,
    pub released: bool,
}

/// Gives a held place back.
pub async fn release(store: &Store, namespace: &Namespace, name: &LeaseName, token: i64) -> Result<Released> {
    store.leases().release(namespace, name, token).await?;
    Ok(Released {
        name: name.clone(),
        token,
        released: true,
    })
}

/// The live holders of leases whose names start with `prefix`.
pub async fn list(store: &Store, namespace: &Namespace, prefix: &Prefix) -> Result<Vec<LeaseView>> {
    let leases = store.leases().list(namespace, prefix).await?;
    Ok(leases.iter().map(LeaseView::from).collect())
}

/// One lease: its slots, last fencing token, holders and waiters.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseShow {
    pub namespace: String,
    pub name: String,
    pub slots: u32,
    pub last_token: i64,
    pub holders: Vec<LeaseView>,
    pub waiters: Vec<WaiterView>,
}

/// A request waiting for a place, in arrival order.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WaiterView {
    pub ticket: i64,
    pub holder: Holder,
    pub enqueued_at: String,
}

/// Shows one lease (a name never used shows as free, with last token 0).
pub async fn show(store: &Store, namespace: &Namespace, name: &LeaseName) -> Result<LeaseShow> {
    let info = store.leases().show(namespace, name).await?;
    Ok(LeaseShow {
        namespace: info.namespace.to_string(),
        name: info.name.to_string(),
        slots: info.slots,
        last_token: info.last_token,
        holders: info.holders.iter().map(LeaseView::from).collect(),
        waiters: info
            .waiters
            .iter()
            .map(|w| WaiterView {
                ticket: w.ticket,
                holder: w.holder.clone(),
                enqueued_at: timestamp(w.enqueued_at),
            })
            .collect(),
    })
}
