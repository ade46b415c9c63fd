//! [`AppState`]: what every handler, the WebSocket shell and the messaging code share.

use std::net::SocketAddr;
use std::ops::Deref;
use std::sync::{Arc, OnceLock};

use crate::accounts::Accounts;
use crate::config::Config;
use crate::media::Media;
use crate::messaging::{Messaging, Messenger};
use crate::metrics::{Metrics, ServerMetrics};
use crate::push::PushService;
use crate::ratelimit::RateLimiters;
use crate::shutdown::Shutdown;
use crate::stories::Stories;
use crate::time::Clock;
use crate::ws::Connections;

/// The server's shared state: one pointer, cheap to clone; its fields are [`Services`]'s
/// (`state.accounts`, `state.push`, ...). Kept to one word because every WebSocket
/// connection holds a clone.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Services>,
}

/// The parts of [`AppState`].
#[derive(Clone)]
pub struct Services {
    /// The resolved configuration.
    pub config: Arc<Config>,
    /// Accounts, devices, contacts, blocks, push tokens, notification settings.
    pub accounts: Arc<Accounts>,
    /// Rate limiters.
    pub limits: Arc<RateLimiters>,
    /// The metrics registry (add your own counters and collectors here).
    pub metrics: Metrics,
    /// The server's own metric handles.
    pub server_metrics: ServerMetrics,
    /// Open WebSocket connections.
    pub connections: Arc<Connections>,
    /// Push notifications for offline users.
    pub push: Arc<PushService>,
    /// What WebSocket frames are handed to (the messenger, unless replaced).
    pub messaging: Arc<dyn Messaging>,
    /// The messaging product over the engine (REST routes use it directly).
    pub messenger: Arc<Messenger>,
    /// The media service (the built-in media routes and message sends use it).
    pub media: Media,
    /// The story service (the built-in story routes use it).
    pub stories: Stories,
    /// Shutdown signal, connection tracking and hooks.
    pub shutdown: Shutdown,
    /// The wall clock.
    pub clock: Arc<dyn Clock>,
    pub(crate) local_addr: Arc<OnceLock<SocketAddr>>,
}

impl Deref for AppState {
    type Target = Services;

    fn deref(&self) -> &Services {
        &self.inner
    }
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("local_addr", &self.local_addr())
            .field("connections", &self.connections)
            .finish_non_exhaustive()
    }
}

impl AppState {
    pub(crate) fn new(services: Services) -> Self {
        Self {
            inner: Arc::new(services),
        }
    }

    /// Replaces the messaging implementation in this handle (clones taken earlier keep the
    /// old one; set it before serving).
    pub(crate) fn set_messaging(&mut self, messaging: Arc<dyn Messaging>) {
        Arc::make_mut(&mut self.inner).messaging = messaging;
    }

    /// The address the server listens on, once serving.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.local_addr.get().copied()
    }

    /// Milliseconds since the Unix epoch, by the server's clock.
    pub fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }
}
