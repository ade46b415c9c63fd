//! The WebSocket endpoint `/ws`: the connection shell around [`Messaging`].
//!
//! The upgrade is refused, before any WebSocket exists, for a browser Origin not on the
//! allowlist (403), a missing or bad token (401; header or `?token=`), and during shutdown
//! (503). An accepted connection is one task that owns the socket and a small bounded outbox
//! ([`FrameSink`]); it costs a 4 KiB read buffer, no standing write buffer, and a few hundred
//! bytes of state. The task:
//!
//! - reads frames, charging each to the user's frame quota (over it: an `error` frame
//!   `rate_limited`, the frame is dropped);
//! - parses them ([`ClientFrame::parse`]); a malformed frame, an unknown type or a binary
//!   message gets an `error` frame `invalid_request` and the connection keeps serving;
//! - answers `ping` with `pong`, hands every other frame to [`Messaging::on_frame`] and writes
//!   its reply;
//! - writes what others queue in its outbox;
//! - closes with 1009 when a message exceeds the frame limit, [`CLOSE_HEARTBEAT_TIMEOUT`] when
//!   the client is silent past the heartbeat timeout, [`CLOSE_IDLE_TIMEOUT`] when it only sends
//!   heartbeats past the idle timeout, 1001 at shutdown, or whatever code a
//!   [`FrameSink::close`] asked for (e.g. [`CLOSE_TOKEN_REVOKED`]).

mod connection;
mod frames;

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Extension;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use tokio::time::Instant;

pub use connection::{
    CLOSE_GOING_AWAY, CLOSE_HEARTBEAT_TIMEOUT, CLOSE_IDLE_TIMEOUT, CLOSE_LAGGING,
    CLOSE_TOKEN_REVOKED, CLOSE_TOO_BIG, Connection, Connections, FrameSink, OUTBOX_FRAMES_MAX,
    SinkError,
};
pub use frames::{
    AckFrame, CLIENT_MSG_ID_BYTES_MAX, CallAction, CallEvent, CallFrame, ChatSettingsEvent,
    ClientFrame, DeletedEvent, Empty, ErrorFrame, GroupEvent, ID_BYTES_MAX, MessageObject,
    MessageType, PresenceEvent, PresenceStatus, ReceiptEvent, ReceiptFrame, ReceiptStatus,
    SDP_BYTES_MAX, SendMessage, ServerFrame, TTL_S_MAX, TypingEvent, TypingFrame, WireId,
};

use crate::auth::Auth;
use crate::error::ApiError;
use crate::messaging::Messaging;
use crate::server::ConnectionPermit;
use crate::shutdown::BoxFuture;
use crate::state::AppState;
use connection::Taken;
use tokio_util::task::task_tracker::TaskTrackerToken;

/// Read buffer per connection. tungstenite's default is 128 KiB, which made an idle connection
/// cost ~134 KiB; with 4 KiB it costs ~6 KiB (measured, see `CRATES.md`).
pub const READ_BUFFER_BYTES: usize = 4 * 1024;

/// How long the server waits for the client's answer to its close frame.
const CLOSE_LINGER: Duration = Duration::from_millis(500);

/// `GET /ws`: checks Origin, token and state, then upgrades.
pub(crate) async fn upgrade(
    State(state): State<AppState>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    permit: Option<Extension<ConnectionPermit>>,
    headers: HeaderMap,
    auth: Result<Auth, ApiError>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    if let Some(origin) = headers.get(header::ORIGIN) {
        let port = state.local_addr().map_or(0, |a| a.port());
        let allowed = origin
            .to_str()
            .is_ok_and(|o| state.config.origin_allowed(o, port));
        if !allowed {
            return ApiError::Forbidden("this Origin may not open WebSockets here".into())
                .into_response();
        }
    }
    let auth = match auth {
        Ok(auth) => auth,
        Err(e) => return e.into_response(),
    };
    let upgrade = match upgrade {
        Ok(u) => u,
        Err(rejection) => return ApiError::InvalidRequest(rejection.body_text()).into_response(),
    };
    if state.shutdown.is_started() {
        return ApiError::Unavailable("the server is shutting down".into()).into_response();
    }
    let peer = peer.map_or(
        SocketAddr::from(([0, 0, 0, 0], 0)),
        |Extension(ConnectInfo(p))| p,
    );
    let frame_bytes_max = state.config.frame_bytes_max;
    let tracked = state.shutdown.track_connection();
    upgrade
        .read_buffer_size(READ_BUFFER_BYTES)
        // Write each frame as it is sent: no buffer grows per connection...
        .write_buffer_size(0)
        // ...and a stuck writer cannot grow one without bound.
        .max_write_buffer_size(2 * frame_bytes_max)
        .max_message_size(frame_bytes_max)
        .max_frame_size(frame_bytes_max)
        .on_failed_upgrade(|e| tracing::debug!(error = %e, "WebSocket upgrade failed"))
        .on_upgrade(move |socket| {
            // Boxed here, the connection's state is one allocation of the size of `run`'s
            // future; an `async` block would also keep a copy of the socket's slot in axum's task.
            let task: BoxFuture<'static, ()> =
                Box::pin(run(socket, state, auth, peer, (tracked, permit)));
            task
        })
}

/// The close code for a read error, if the peer should get one.
fn close_for_error(error: axum::Error) -> Option<(u16, &'static str)> {
    use tokio_tungstenite::tungstenite::Error as WsError;
    let inner = error.into_inner();
    match inner.downcast_ref::<WsError>() {
        Some(WsError::Capacity(_)) => Some((CLOSE_TOO_BIG, "message too big")),
        Some(WsError::Utf8(_)) => Some((1007, "invalid UTF-8")),
        Some(WsError::Protocol(_)) => Some((1002, "protocol error")),
        _ => None,
    }
}

/// Longest a single frame write may take. A client that stops reading while its TCP window is
/// full would otherwise hold the connection's task (and its reads, timers and close requests)
/// forever; past this the connection is dropped.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(20);

async fn send(
    socket: &mut WebSocket,
    state: &AppState,
    text: axum::extract::ws::Utf8Bytes,
) -> bool {
    let ok = matches!(
        tokio::time::timeout(WRITE_TIMEOUT, socket.send(Message::Text(text))).await,
        Ok(Ok(()))
    );
    if ok {
        state.server_metrics.ws_frames_sent.inc();
    }
    ok
}

/// What a connection holds on to until it ends: its place in the shutdown tracker and its
/// connection slot.
type Held = (TaskTrackerToken, Option<Extension<ConnectionPermit>>);

/// The connection's task. (A plain `fn` returning an `async move` block: the arguments then live
/// once in the future; an `async fn` would store the socket and state twice.)
#[expect(
    clippy::manual_async_fn,
    reason = "an async fn stores its arguments twice; see the doc comment"
)]
fn run(
    mut socket: WebSocket,
    state: AppState,
    auth: Auth,
    peer: SocketAddr,
    held: Held,
) -> impl Future<Output = ()> + Send {
    async move {
        let _held = &held;

        let connection = Connection {
            id: state.connections.next_id(),
            auth,
            peer,
            sink: FrameSink::new(),
        };
        let sink = &connection.sink;
        let messaging: Arc<dyn Messaging> = state.messaging.clone();
        let metrics = &state.server_metrics;
        state.connections.insert(&connection);
        metrics.ws_connections.inc();
        metrics.ws_connections_total.inc();
        tracing::debug!(
            connection = connection.id,
            user_id = auth.user_id,
            device_id = auth.device_id,
            %peer,
            "WebSocket open"
        );
        messaging.on_connect(&connection).await;

        let heartbeat = state.config.heartbeat_timeout;
        let idle = state.config.idle_timeout;
        let now = Instant::now();
        let mut heartbeat_deadline = now + heartbeat;
        let mut idle_deadline = idle.map(|d| now + d);
        let next_deadline = |hb: Instant, idle: Option<Instant>| idle.map_or(hb, |i| i.min(hb));
        let timer = tokio::time::sleep_until(next_deadline(heartbeat_deadline, idle_deadline));
        tokio::pin!(timer);

        let close: Option<(u16, Cow<'static, str>)> = 'connection: loop {
            tokio::select! {
                biased;
                _ = state.shutdown.started() => {
                    break Some((CLOSE_GOING_AWAY, "server shutting down".into()));
                }
                _ = &mut timer => {
                    metrics.ws_closed_timeout.inc();
                    if Instant::now() >= heartbeat_deadline {
                        break Some((CLOSE_HEARTBEAT_TIMEOUT, "heartbeat timeout".into()));
                    }
                    break Some((CLOSE_IDLE_TIMEOUT, "idle timeout".into()));
                }
                _ = sink.ready() => loop {
                    match sink.take() {
                        Taken::Close(code, reason) => break 'connection Some((code, reason.into())),
                        Taken::Frame(text) => {
                            if !send(&mut socket, &state, text).await {
                                break 'connection None;
                            }
                        }
                        Taken::Empty => break,
                    }
                },
                received = socket.recv() => {
                    let message = match received {
                        None => break None,
                        Some(Err(e)) => {
                            let close = close_for_error(e);
                            if close.is_some_and(|(code, _)| code == CLOSE_TOO_BIG) {
                                metrics.ws_closed_too_big.inc();
                            }
                            break close.map(|(code, reason)| (code, reason.into()));
                        }
                        Some(Ok(message)) => message,
                    };
                    let now = Instant::now();
                    heartbeat_deadline = now + heartbeat;
                    let text = match message {
                        Message::Text(text) => text,
                        Message::Binary(_) => {
                            metrics.ws_frame_errors.inc();
                            let e = ApiError::InvalidRequest("binary frames are not supported; send JSON text".into());
                            if !send(&mut socket, &state, ServerFrame::error(&e).to_text()).await {
                                break None;
                            }
                            timer.as_mut().reset(next_deadline(heartbeat_deadline, idle_deadline));
                            continue;
                        }
                        // tungstenite answers pings itself; both count as heartbeats.
                        Message::Ping(_) | Message::Pong(_) => {
                            timer.as_mut().reset(next_deadline(heartbeat_deadline, idle_deadline));
                            continue;
                        }
                        Message::Close(_) => break None,
                    };
                    metrics.ws_frames_received.inc();
                    let reply = if let Err(e) = state.limits.ws_frames.check(&auth.user_id) {
                        metrics.rate_limited_ws.inc();
                        Some(ServerFrame::error(&e))
                    } else {
                        match ClientFrame::parse(&text) {
                            Err(e) => {
                                metrics.ws_frame_errors.inc();
                                Some(ServerFrame::error(&e))
                            }
                            Ok(ClientFrame::Ping) => Some(ServerFrame::Pong(Empty {})),
                            Ok(frame) => {
                                idle_deadline = idle.map(|d| now + d);
                                messaging.on_frame(&connection, frame).await
                            }
                        }
                    };
                    if let Some(reply) = reply
                        && !send(&mut socket, &state, reply.to_text()).await
                    {
                        break None;
                    }
                    timer.as_mut().reset(next_deadline(heartbeat_deadline, idle_deadline));
                }
            }
        };

        state.connections.remove(&connection);
        connection.sink.finish();
        metrics.ws_connections.dec();
        messaging.on_disconnect(&connection);
        if let Some((code, reason)) = close {
            tracing::debug!(connection = connection.id, code, %reason, "closing WebSocket");
            let frame = CloseFrame {
                code,
                reason: reason.as_ref().into(),
            };
            // Send the close, then read until the client answers (or a moment passes), so that
            // the client sees the close frame rather than a reset.
            let _ = tokio::time::timeout(CLOSE_LINGER, async {
                if socket.send(Message::Close(Some(frame))).await.is_ok() {
                    while let Some(Ok(_)) = socket.recv().await {}
                }
            })
            .await;
        }
    }
}
