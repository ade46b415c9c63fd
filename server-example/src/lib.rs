//! `missive-server`: Missive's example messaging server, over HTTP (`/api/v1`) and WebSocket
//! (`/ws`), following the wire contract in `PROTOCOL.md`.
//!
//! This crate is the product around the `missive` engine: configuration, the HTTP stack,
//! accounts and tokens, rate limits, the WebSocket connection shell, push notifications,
//! metrics and graceful shutdown, and [`messaging::Messenger`], which opens the engine in
//! `<data-dir>/engine` and serves messages, chats, receipts, groups and presence over REST and
//! WebSocket. Two seams stay open:
//!
//! - [`messaging::Messaging`]: what the WebSocket shell calls for `message`, `receipt`,
//!   `typing` and `call` frames (and on connect / disconnect). The messenger is the default;
//!   [`App::set_messaging`] replaces it.
//! - [`App::add_routes`]: more REST routes, as an `axum::Router<AppState>` whose handlers take
//!   the [`auth::Auth`] extractor and answer [`error::ApiError`]s.
//!
//! Both see [`AppState`]: the account store (`is_blocked`, `contacts_of`, `contacted_by`), open
//! connections, the push service, the messenger, the metrics registry and the shutdown hooks.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use missive_server::{App, config::Config};
//! let app = App::open(Config::for_tests("/tmp/missive-example"))?;
//! app.state().shutdown.register("goodbye", || async { println!("bye") });
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! app.serve(listener, async { let _ = tokio::signal::ctrl_c().await; }).await;
//! # Ok(()) }
//! ```
//!
//! Modules: [`config`] (flags, env, TOML), [`error`] and [`extract`] (the JSON error shape),
//! [`auth`] (tokens, the `Auth` extractor), [`accounts`] (verification, users, devices,
//! contacts, blocks; SQLite), [`ratelimit`], [`ws`] (the WebSocket shell and frames),
//! [`messaging`] (the engine wiring and the plug-in trait), [`calls`] (call signalling),
//! [`media`], [`stories`], [`keys`], [`push`] (batcher and sinks), [`metrics`], [`shutdown`],
//! [`time`]. While serving, background tasks sweep media, stories and rate-limiter keys and end
//! unanswered calls at their ringing timeout; each stops when shutdown begins (intervals in
//! [`config::Config`]).

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod accounts;
pub mod auth;
mod background;
pub mod calls;
pub mod config;
pub mod error;
pub mod extract;
pub mod keys;
pub mod media;
pub mod messaging;
pub mod metrics;
pub mod push;
pub mod ratelimit;
mod routes;
mod server;
pub mod shutdown;
mod state;
pub mod stories;
pub mod time;
pub mod ws;

use std::future::Future;
use std::sync::{Arc, OnceLock};

use axum::Router;
use tokio::net::TcpListener;

pub use state::{AppState, Services};

use crate::accounts::{AccountStore, Accounts, LogSmsSink, SmsSink, StoreError};
use crate::config::{Config, PushSinkKind};
use crate::messaging::{Messaging, Messenger};
use crate::metrics::{Metrics, ServerMetrics, write_metric};
use crate::push::{
    ApnsPushSink, FcmPushSink, LogPushSink, PushService, PushSink, WebhookPushSink, WebhookUrl,
};
use crate::ratelimit::RateLimiters;
use crate::shutdown::Shutdown;
use crate::time::{Clock, SystemClock};
use crate::ws::Connections;

/// File name of the account database inside the data directory.
pub const ACCOUNTS_FILE: &str = "accounts.sqlite3";

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The data directory could not be created.
    #[error("cannot create data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The account database could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A configured value cannot be used.
    #[error("configuration: {0}")]
    Config(String),
    /// The engine or the group metadata could not be opened.
    #[error(transparent)]
    Messaging(#[from] messaging::OpenError),
}

/// Builds an [`App`] with non-default sinks or clock.
pub struct AppBuilder {
    config: Config,
    sms: Arc<dyn SmsSink>,
    push_sink: Option<Arc<dyn PushSink>>,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for AppBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppBuilder")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl AppBuilder {
    /// Where verification codes go (default: the log).
    pub fn sms_sink(mut self, sms: Arc<dyn SmsSink>) -> Self {
        self.sms = sms;
        self
    }

    /// Where push notifications go (default: as configured by `push_sink`).
    pub fn push_sink(mut self, sink: Arc<dyn PushSink>) -> Self {
        self.push_sink = Some(sink);
        self
    }

    /// The wall clock (default: the system's).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Opens the data directory and the account database and assembles the state.
    pub fn build(self) -> Result<App, StartError> {
        let config = self.config;
        std::fs::create_dir_all(&config.data_dir).map_err(|source| StartError::DataDir {
            path: config.data_dir.clone(),
            source,
        })?;
        let store = AccountStore::open(&config.data_dir.join(ACCOUNTS_FILE))?;
        let accounts = Arc::new(Accounts::new(
            store,
            self.sms,
            config.dev,
            config.verify_code_ttl,
            config.verify_attempts_max,
        ));
        let metrics = Metrics::new();
        let server_metrics = ServerMetrics::register(&metrics);
        let push_sink: Arc<dyn PushSink> = match (self.push_sink, &config.push_sink) {
            (Some(sink), _) => sink,
            (None, PushSinkKind::Log) => Arc::new(LogPushSink),
            (None, PushSinkKind::Webhook { url }) => Arc::new(WebhookPushSink::new(
                WebhookUrl::parse(url).map_err(StartError::Config)?,
                push::DELIVERY_TIMEOUT,
            )),
            (None, PushSinkKind::Fcm) => Arc::new(FcmPushSink {
                project_id: "missive-example".into(),
            }),
            (None, PushSinkKind::Apns) => Arc::new(ApnsPushSink {
                topic: "com.example.missive".into(),
            }),
        };
        let push = Arc::new(PushService::new(
            config.push_window,
            push_sink,
            accounts.clone(),
            self.clock.clone(),
            server_metrics.clone(),
        ));
        let shutdown = Shutdown::new();
        {
            let push = push.clone();
            shutdown.register("push: deliver pending notifications", move || async move {
                push.flush_all().await;
            });
        }
        {
            let accounts = accounts.clone();
            let started_ms = self.clock.now_ms();
            let clock = self.clock.clone();
            metrics.add_collector(move |out| {
                if let Ok(users) = accounts.store().user_count() {
                    write_metric(
                        out,
                        "missive_users_registered",
                        "Registered users.",
                        "gauge",
                        &[],
                        users as f64,
                    );
                }
                let uptime_s = clock.now_ms().saturating_sub(started_ms) as f64 / 1000.0;
                write_metric(
                    out,
                    "missive_uptime_seconds",
                    "Seconds since the server started.",
                    "gauge",
                    &[],
                    uptime_s,
                );
            });
        }
        let config = Arc::new(config);
        let connections = Arc::new(Connections::new());
        // Media is readable by those who can see a message it was sent in (grants name the
        // message, `<chat_id>:<seq>`) or, for a grant naming a chat, by its members; checked
        // against the engine, which opens with the messenger below.
        let engine_slot: Arc<OnceLock<missive::Engine>> = Arc::new(OnceLock::new());
        let access = {
            let engine_slot = engine_slot.clone();
            move |user: u64, grant: &str| -> bool {
                engine_slot
                    .get()
                    .is_some_and(|engine| messaging::can_see_grant(engine, user, grant))
            }
        };
        let media = media::Media::open(
            &config.data_dir,
            media::MediaConfig::from_config(&config),
            Arc::new(access),
            self.clock.clone(),
        )
        .map_err(|error| StartError::Config(format!("media store: {error}")))?;
        let messenger = Messenger::open(messaging::Parts {
            config: config.clone(),
            accounts: accounts.clone(),
            push: push.clone(),
            connections: connections.clone(),
            clock: self.clock.clone(),
            shutdown: shutdown.clone(),
            metrics: metrics.clone(),
            media: media.clone(),
        })?;
        let _ = engine_slot.set(messenger.engine().clone());
        let stories_store = stories::StoryStore::open(&config.data_dir.join("stories.sqlite3"))
            .map_err(|error| StartError::Config(format!("stories store: {error}")))?;
        let stories = stories::Stories::new(
            stories_store,
            self.clock.clone(),
            stories::StoriesConfig::default(),
            Some(media.clone()),
        );
        let state = AppState::new(Services {
            limits: Arc::new(RateLimiters::new(&config)),
            config,
            accounts,
            metrics,
            server_metrics,
            connections,
            push,
            messaging: messenger.clone(),
            messenger,
            media: media.clone(),
            stories: stories.clone(),
            shutdown,
            clock: self.clock,
            local_addr: Arc::new(OnceLock::new()),
        });
        // Media, stories and the key server: their own stores beside the accounts.
        let keys_store = keys::KeyStore::open(&state.config.data_dir.join("keys.sqlite3"))
            .map_err(|error| StartError::Config(format!("key store: {error}")))?;
        let routes = Router::new()
            .merge(media::router(media))
            .merge(stories::router(stories))
            .merge(keys::router(keys::Keys::new(keys_store)));
        Ok(App { state, routes })
    }
}

/// The server, assembled but not yet serving.
pub struct App {
    state: AppState,
    routes: Router<AppState>,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl App {
    /// A builder for `config`.
    pub fn builder(config: Config) -> AppBuilder {
        AppBuilder {
            config,
            sms: Arc::new(LogSmsSink),
            push_sink: None,
            clock: Arc::new(SystemClock),
        }
    }

    /// The server for `config`, with the default sinks and clock.
    pub fn open(config: Config) -> Result<App, StartError> {
        Self::builder(config).build()
    }

    /// The shared state (clone it into messaging code).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Replaces what WebSocket frames are handed to.
    pub fn set_messaging(&mut self, messaging: Arc<dyn Messaging>) {
        self.state.set_messaging(messaging);
    }

    /// Adds REST routes (merged next to the built-in ones, under the same middleware).
    ///
    /// # Panics
    /// If a route overlaps an existing one (axum's rule).
    pub fn add_routes(&mut self, routes: Router<AppState>) {
        let current = std::mem::take(&mut self.routes);
        self.routes = current.merge(routes);
    }

    /// Replaces the extra routes, the built-in media, stories and key services included (tests
    /// use it to serve those with their own stores and clocks).
    pub fn set_routes(&mut self, routes: Router<AppState>) {
        self.routes = routes;
    }

    /// The complete router, e.g. to call in-process with `tower::ServiceExt::oneshot`.
    pub fn router(&self) -> Router {
        routes::router(self.state.clone(), self.routes.clone())
    }

    /// Serves on `listener` until `signal` completes, then shuts down gracefully: stops
    /// accepting, lets connections finish (WebSockets get 1001) for up to the grace period,
    /// and runs the shutdown hooks.
    pub async fn serve(self, listener: TcpListener, signal: impl Future<Output = ()> + Send) {
        let state = self.state.clone();
        if let Ok(addr) = listener.local_addr() {
            let _ = state.local_addr.set(addr);
            tracing::info!("listening on http://{addr}");
        }
        let router = self.router();
        let push_task = tokio::spawn(state.push.clone().run(state.shutdown.clone()));
        let background = background::spawn(&state);

        server::accept_loop(listener, router, state.clone(), signal).await;

        let grace = state.config.shutdown_grace;
        tracing::info!(
            open_connections = state.shutdown.open_connections(),
            ?grace,
            "shutting down: draining connections"
        );
        if !state.shutdown.wait_for_connections(grace).await {
            tracing::warn!(
                open_connections = state.shutdown.open_connections(),
                "connections still open after the grace period"
            );
        }
        let _ = push_task.await;
        background.join().await;
        state.shutdown.run_hooks(grace).await;
        tracing::info!("shutdown complete");
    }
}

/// Opens the server for `config` and serves on `listener` until `signal` completes (see
/// [`App::serve`]).
pub async fn serve(
    config: Config,
    listener: TcpListener,
    signal: impl Future<Output = ()> + Send,
) -> Result<(), StartError> {
    App::open(config)?.serve(listener, signal).await;
    Ok(())
}
