//! Graceful shutdown: a signal every long-lived task watches, a tracker of open WebSocket
//! connections, and hooks that run once the connections are gone.
//!
//! Order on SIGINT/SIGTERM (or when the future given to [`crate::serve`] completes): stop
//! accepting; tell every connection to finish (HTTP requests in flight complete, WebSockets close
//! with 1001 "going away"); wait up to the grace period; then run the hooks, last registered
//! first (like destructors: what was built on top closes first). The engine registers its
//! `close()` here; the push batcher registers a final flush.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};
use tokio_util::task::TaskTracker;
use tokio_util::task::task_tracker::TaskTrackerToken;

/// A boxed, sendable future (what hooks and the messaging trait return).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

type Hook = Box<dyn FnOnce() -> BoxFuture<'static, ()> + Send>;

/// The server's shutdown state; clones share it.
#[derive(Clone, Default)]
pub struct Shutdown {
    token: CancellationToken,
    connections: TaskTracker,
    hooks: Arc<Mutex<Vec<(String, Hook)>>>,
}

impl std::fmt::Debug for Shutdown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shutdown")
            .field("started", &self.token.is_cancelled())
            .field("connections", &self.connections.len())
            .finish_non_exhaustive()
    }
}

impl Shutdown {
    /// A fresh state: not shutting down, no hooks.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `hook` to run at shutdown after connections have closed. Hooks run one at a
    /// time, last registered first; each gets the grace period and is abandoned past it.
    pub fn register<F, Fut>(&self, name: impl Into<String>, hook: F)
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.hooks
            .lock()
            .push((name.into(), Box::new(move || Box::pin(hook()))));
    }

    /// Whether shutdown has begun.
    pub fn is_started(&self) -> bool {
        self.token.is_cancelled()
    }

    /// Completes when shutdown begins.
    pub fn started(&self) -> WaitForCancellationFuture<'_> {
        self.token.cancelled()
    }

    /// Begins shutdown (idempotent).
    pub fn begin(&self) {
        self.token.cancel();
    }

    /// A token to hold while a connection is open; shutdown waits for every token to drop.
    pub fn track_connection(&self) -> TaskTrackerToken {
        self.connections.token()
    }

    /// Open tracked connections.
    pub fn open_connections(&self) -> usize {
        self.connections.len()
    }

    /// Waits (up to `grace`) for tracked connections to close; `false` if some were still open.
    pub(crate) async fn wait_for_connections(&self, grace: Duration) -> bool {
        self.connections.close();
        tokio::time::timeout(grace, self.connections.wait())
            .await
            .is_ok()
    }

    /// Runs every hook, last registered first, each bounded by `grace`.
    pub(crate) async fn run_hooks(&self, grace: Duration) {
        let hooks: Vec<(String, Hook)> = std::mem::take(&mut *self.hooks.lock());
        for (name, hook) in hooks.into_iter().rev() {
            tracing::info!(hook = %name, "running shutdown hook");
            if tokio::time::timeout(grace, hook()).await.is_err() {
                tracing::warn!(hook = %name, ?grace, "shutdown hook did not finish in time");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hooks_run_last_first_and_once() {
        let shutdown = Shutdown::new();
        let order = Arc::new(Mutex::new(Vec::new()));
        for name in ["a", "b", "c"] {
            let order = order.clone();
            shutdown.register(name, move || async move { order.lock().push(name) });
        }
        shutdown.run_hooks(Duration::from_secs(1)).await;
        shutdown.run_hooks(Duration::from_secs(1)).await;
        assert_eq!(*order.lock(), vec!["c", "b", "a"]);
    }

    #[tokio::test]
    async fn waits_for_tracked_connections() {
        let shutdown = Shutdown::new();
        let token = shutdown.track_connection();
        assert_eq!(shutdown.open_connections(), 1);
        assert!(
            !shutdown
                .wait_for_connections(Duration::from_millis(20))
                .await
        );
        drop(token);
        assert!(
            shutdown
                .wait_for_connections(Duration::from_millis(20))
                .await
        );
    }
}
