//! The notification dispatcher inside the supervisor (standing by if another runs), while
//! the configuration has channels. A reload starts, stops or restarts it.

use std::sync::Arc;
use std::time::Duration;

use arbiter_config::Config;
use arbiter_notify::dispatch::Dispatcher;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::{STORE_RETRY_MAX, STORE_RETRY_MIN, Shared, stopped};

/// A running dispatcher: told to stop, it delivers what is queued (bounded) and releases
/// its lease.
pub(crate) struct Running {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Running {
    /// Starts a dispatcher with `config`'s channels.
    pub(crate) fn start(shared: Arc<Shared>, config: Arc<Config>) -> Running {
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(retrying(shared, config, stopped));
        Running { stop, task }
    }

    /// Tells it to stop; the handle resolves once it has drained and released its lease.
    pub(crate) fn stop(self) -> JoinHandle<()> {
        let _ = self.stop.send(true);
        self.task
    }
}

/// Whether a dispatcher started with `old` must be replaced for `new`: what it sends with
/// (the channels and the delivery settings) changed.
pub(crate) fn needs_restart(old: &Config, new: &Config) -> bool {
    old.channels != new.channels || old.notifications != new.notifications
}

/// [`run`], started again (after a pause that backs off like a loop's) when it stopped
/// before it was told to: the store was unavailable, or its lease was lost.
async fn retrying(shared: Arc<Shared>, config: Arc<Config>, mut stop: watch::Receiver<bool>) {
    let mut pause = STORE_RETRY_MIN;
    loop {
        let started = tokio::time::Instant::now();
        run(&shared, config.clone(), stop.clone()).await;
        if *stop.borrow() {
            return;
        }
        if started.elapsed() > 2 * STORE_RETRY_MAX {
            pause = STORE_RETRY_MIN;
        }
        tracing::warn!(retry_in = ?pause, "starting the notification dispatcher again");
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            () = stopped(&mut stop) => return,
        }
        pause = (pause * 2).min(STORE_RETRY_MAX);
    }
}

/// One run of the dispatcher: its lease, deliveries until `stop`, then a bounded drain.
async fn run(shared: &Shared, config: Arc<Config>, mut stop: watch::Receiver<bool>) {
    let dispatcher = Dispatcher::new(shared.store.clone(), config, &shared.namespace);
    let held = tokio::select! {
        held = dispatcher.lease(Some(Duration::from_secs(365 * 86_400))) => held,
        () = stopped(&mut stop) => return,
    };
    let Ok(mut held) = held else { return };
    let until_stopped = async move { stopped(&mut stop).await };
    if let Err(e) = dispatcher.run(&mut held, false, until_stopped).await {
        tracing::warn!(error = %e, "the notification dispatcher stopped");
    }
    // Deliver what the last rounds queued before leaving (bounded).
    let drain = dispatcher.run(&mut held, true, std::future::pending());
    if tokio::time::timeout(Duration::from_secs(10), drain).await.is_err() {
        tracing::warn!("notifications still pending at exit; the next dispatcher delivers them");
    }
    let _ = held.release().await;
}
