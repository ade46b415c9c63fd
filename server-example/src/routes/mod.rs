//! The HTTP routes and the middleware around them.
//!
//! [`router`] assembles everything: `/healthz`, `/metrics`, the account routes under `/api/v1`
//! (see `PROTOCOL.md` and the README for the extras), `/ws`, plus any routes the messaging code
//! adds. Around them, outermost first: request logging and metrics, the per-IP rate limit
//! (not for `/healthz` and `/metrics`), and (under `/api` and `/ws`) the body size limit. Unknown paths and methods get
//! the JSON error shape too.

mod auth;
mod contacts;
mod devices;
mod groups;
mod messages;
mod ops;
mod presence;
mod push;
mod users;

use std::net::SocketAddr;
use std::time::Instant;

use axum::extract::{ConnectInfo, DefaultBodyLimit, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, delete, get, post, put};
use axum::{Extension, Router};
use serde::Serialize;

use crate::accounts::User;
use crate::error::ApiError;
use crate::state::AppState;
use crate::time::rfc3339;
use crate::ws::WireId;

/// Every route, with middleware and `extra` (the messaging routes) merged in.
pub(crate) fn router(state: AppState, extra: Router<AppState>) -> Router {
    let api = Router::new()
        .route("/api/v1/auth/verify-phone", post(auth::verify_phone))
        .route("/api/v1/auth/verify-code", post(auth::verify_code))
        .route("/api/v1/auth/token", delete(auth::revoke_token))
        .route("/api/v1/devices", get(devices::list))
        .route("/api/v1/devices/{device_id}", delete(devices::revoke))
        .route("/api/v1/users/me", get(users::me).put(users::update_me))
        .route("/api/v1/users/{user_id}", get(users::user))
        .route("/api/v1/contacts", post(contacts::add).get(contacts::list))
        .route("/api/v1/contacts/blocked", get(contacts::blocked))
        .route(
            "/api/v1/contacts/{user_id}/block",
            put(contacts::block).delete(contacts::unblock),
        )
        .route("/api/v1/push/token", put(push::set_token))
        .route(
            "/api/v1/settings/notifications",
            put(push::set_settings).get(push::settings),
        )
        .route("/api/v1/messages", post(messages::send))
        .route("/api/v1/chats", get(messages::chats))
        .route(
            "/api/v1/chats/{chat_id}/settings",
            put(messages::chat_settings),
        )
        .route(
            "/api/v1/messages/{id}",
            get(messages::history).delete(messages::delete),
        )
        .route(
            "/api/v1/messages/{message_id}/status",
            put(messages::mark).get(messages::status),
        )
        .route("/api/v1/groups", post(groups::create))
        .route(
            "/api/v1/groups/{group_id}",
            get(groups::get).put(groups::update),
        )
        .route(
            "/api/v1/groups/{group_id}/members",
            post(groups::add_members),
        )
        .route(
            "/api/v1/groups/{group_id}/members/{user_id}",
            delete(groups::remove_member),
        )
        .route(
            "/api/v1/groups/{group_id}/admins/{user_id}",
            put(groups::promote).delete(groups::demote),
        )
        .route("/api/v1/presence/online", put(presence::online))
        .route("/api/v1/presence/offline", put(presence::offline))
        .route("/api/v1/presence/{user_id}", get(presence::get))
        .route("/ws", any(crate::ws::upgrade))
        .merge(extra)
        .layer(DefaultBodyLimit::max(state.config.body_bytes_max));
    Router::new()
        .route("/healthz", get(ops::healthz))
        .route("/metrics", get(ops::metrics))
        .merge(api)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(state.clone(), limit_ip))
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::NotFound("no such endpoint".into())
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed("this endpoint does not take that method".into())
}

/// Logs each request (method, path without the query, status, latency) and counts it.
async fn observe(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let response = next.run(request).await;
    let elapsed = started.elapsed();
    let status = response.status().as_u16();
    state.server_metrics.count_response(status);
    state
        .server_metrics
        .http_duration
        .observe(elapsed.as_secs_f64());
    tracing::debug!(%method, %path, status, latency_us = elapsed.as_micros() as u64, "request");
    response
}

/// Paths that monitoring polls: never rate limited.
const UNLIMITED_PATHS: [&str; 2] = ["/healthz", "/metrics"];

/// The per-IP limit. Requests without a peer address (in-process tests) pass.
async fn limit_ip(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if UNLIMITED_PATHS.contains(&request.uri().path()) {
        return next.run(request).await;
    }
    if let Some(ConnectInfo(peer)) = request.extensions().get::<ConnectInfo<SocketAddr>>()
        && let Err(e) = state.limits.ip.check(&peer.ip())
    {
        state.server_metrics.rate_limited_ip.inc();
        return e.into_response();
    }
    next.run(request).await
}

/// A user as others see them.
#[derive(Debug, Serialize)]
pub(crate) struct UserView {
    user_id: WireId,
    /// Only for oneself and for users in one's contacts.
    #[serde(skip_serializing_if = "Option::is_none")]
    phone_number: Option<String>,
    name: String,
    status_message: String,
    profile_picture_media_id: Option<String>,
    created_at: String,
}

impl UserView {
    pub(crate) fn new(user: User, show_phone: bool) -> Self {
        Self {
            user_id: WireId(user.id),
            phone_number: show_phone.then_some(user.phone_number),
            name: user.name,
            status_message: user.status_message,
            profile_picture_media_id: user.profile_picture_media_id,
            created_at: rfc3339(user.created_at_ms),
        }
    }
}

/// The peer's IP, for per-IP limits.
pub(crate) fn peer_ip(peer: Option<Peer>) -> Option<std::net::IpAddr> {
    peer.map(|Extension(ConnectInfo(a))| a.ip())
}

/// The peer address extractor: absent for in-process requests.
pub(crate) type Peer = Extension<ConnectInfo<SocketAddr>>;
