//! What every handler shares: the store, the configuration (notification routes,
//! channels), how requests are authenticated, and the shutdown signal streams watch.

use std::sync::Arc;

use arbiter_config::Config;
use arbiter_store::Store;
use tokio::sync::watch;

use crate::auth::Auth;
use crate::metrics::Metrics;

/// The state of a running server. Cheap to clone (everything is behind `Arc`s).
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub config: Arc<Config>,
    pub auth: Auth,
    pub metrics: Arc<Metrics>,
    /// Becomes `true` when the server shuts down: long polls and event streams end.
    pub shutdown: watch::Receiver<bool>,
}

impl AppState {
    /// Resolves once the server is shutting down.
    pub fn shutting_down(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut shutdown = self.shutdown.clone();
        async move {
            // An error means the sender is gone: the server is gone too.
            let _ = shutdown.wait_for(|down| *down).await;
        }
    }
}
