//! The plug-in boundary between the WebSocket shell and the messaging product.
//!
//! The shell ([`crate::ws`]) authenticates, enforces limits, parses frames, answers `ping`, and
//! calls a [`Messaging`] implementation for everything else:
//!
//! - [`Messaging::on_connect`] once the connection is registered (deliver the backlog after the
//!   device's watermark, mark the user online);
//! - [`Messaging::on_frame`] for each `message`, `receipt`, `typing` and `call` frame, in
//!   order, one at a time per connection; the returned frame (an `ack` or an `error`) is written
//!   to this connection directly, ahead of anything queued in its sink;
//! - [`Messaging::on_disconnect`] once the connection is gone (mark offline).
//!
//! Frames for other connections go through their [`FrameSink`](crate::ws::FrameSink)s, which an
//! implementation keeps from `on_connect` (or finds in [`crate::ws::Connections`]).
//!
//! The server's implementation is [`Messenger`], the messaging product over the `missive`
//! engine: wire ids ([`ids`]), group metadata ([`groups`]), presence ([`presence`]), the
//! per-connection pump from the engine's subscription to the connection ([`pump`]) and the
//! conversions between engine and wire types ([`wire`]); `call` frames go through the call
//! registry ([`crate::calls`]). [`NotImplemented`] answers every frame with an `error` frame
//! whose code is `not_implemented` (a placeholder [`Messaging`] for embedders and tests).

pub mod groups;
pub mod ids;
mod messenger;
pub mod presence;
pub mod pump;
pub mod wire;

pub(crate) use messenger::Parts;
pub use messenger::{
    ChatView, CreateGroup, ENGINE_DIR, GROUP_DESCRIPTION_CHARS_MAX, GROUP_NAME_CHARS_MAX,
    GROUPS_FILE, GroupView, HISTORY_LIMIT_DEFAULT, HISTORY_LIMIT_MAX, HistoryPage, HistoryQuery,
    MediaRefError, MemberView, Messenger, OUTBOX_STALL_MAX, OpenError, PresenceView,
    RecipientStatus, StatusView, can_see_grant, engine_config,
};

use crate::error::ApiError;
use crate::shutdown::BoxFuture;
use crate::ws::{ClientFrame, Connection, ErrorFrame, ServerFrame};

/// What the server does with WebSocket frames. See the module docs for the call order.
pub trait Messaging: Send + Sync + 'static {
    /// A connection is open and registered.
    fn on_connect<'a>(&'a self, connection: &'a Connection) -> BoxFuture<'a, ()> {
        let _ = connection;
        Box::pin(async {})
    }

    /// A frame arrived (never `ping`, which the shell answers). Returns the direct reply, if
    /// any. The connection reads no further frame until this completes, so long work should be
    /// spawned; and it must not wait for room in this connection's own sink.
    fn on_frame<'a>(
        &'a self,
        connection: &'a Connection,
        frame: ClientFrame,
    ) -> BoxFuture<'a, Option<ServerFrame>>;

    /// The connection is closed and unregistered.
    fn on_disconnect(&self, connection: &Connection) {
        let _ = connection;
    }
}

/// Answers every frame with `not_implemented`.
#[derive(Debug, Default, Clone, Copy)]
pub struct NotImplemented;

impl Messaging for NotImplemented {
    fn on_frame<'a>(
        &'a self,
        _connection: &'a Connection,
        frame: ClientFrame,
    ) -> BoxFuture<'a, Option<ServerFrame>> {
        let error = ApiError::NotImplemented(format!(
            "`{}` frames are not served by this build yet",
            frame.kind()
        ));
        let reply = match &frame {
            ClientFrame::Message(m) => ErrorFrame::for_message(&error, &m.client_msg_id),
            _ => ErrorFrame::new(&error),
        };
        Box::pin(async move { Some(ServerFrame::Error(reply)) })
    }
}
