//! The pump: one task per WebSocket connection that moves the device's engine
//! [`Subscription`] into the connection's outbox ([`FrameSink`]).
//!
//! The subscription yields the device's backlog first (every message after its delivered
//! watermark, chat by chat in seq order), then live events; so every (re)connect redelivers
//! what the device has not acknowledged with a `delivered` receipt, and within one connection
//! each message comes once, in order.
//!
//! The pump waits for room in its own connection's outbox ([`FrameSink::send_wait`]), so a slow
//! reader only slows its own pump. Meanwhile the engine's hub never blocks a sender: it marks
//! the subscription lagging, and the subscription later catches up from the index, losing no
//! message (only ephemeral typing events). A connection whose outbox stays full for
//! [`OUTBOX_STALL_MAX`] is closed with 4008; the client reconnects and resumes from its
//! watermark. When the same device connects again, the engine ends this subscription and the
//! older connection is closed with [`CLOSE_REPLACED`].

use std::sync::Arc;

use missive::log::ChatId;
use missive::{Event, ReceiptKind, Subscription};

use super::ids::{chat_id_text, message_id_text};
use super::messenger::{Messenger, OUTBOX_STALL_MAX};
use super::wire::{group_op, message_object};
use crate::accounts::AccountStore;
use crate::ws::{
    CLOSE_LAGGING, ChatSettingsEvent, DeletedEvent, FrameSink, GroupEvent, ReceiptEvent,
    ReceiptStatus, ServerFrame, SinkError, TypingEvent, WireId,
};

/// Close code: the same device opened another connection, which now receives its messages.
pub const CLOSE_REPLACED: u16 = 4009;

/// Moves `subscription` into `sink` until either ends.
pub(crate) async fn run(
    messenger: Arc<Messenger>,
    sink: FrameSink,
    mut subscription: Subscription,
) {
    let user = subscription.user().0;
    loop {
        let event = match subscription.next().await {
            Ok(event) => event,
            Err(_) => {
                // Replaced by a newer connection of the device, or the engine closed (shutdown,
                // where the shell closes every connection with 1001 itself).
                if !messenger.shutdown_started() && !sink.is_closed() {
                    messenger.metrics.replaced.inc();
                    sink.close(CLOSE_REPLACED, "this device connected again");
                }
                return;
            }
        };
        let is_message = matches!(event, Event::Message { .. });
        let Some(frame) = messenger.frame_for(user, event) else {
            continue;
        };
        let queued = match sink.send_text(frame.to_text()) {
            Ok(()) => Ok(()),
            Err(SinkError::Closed) => return,
            // Lagging: wait for room, boxed so that the idle task stays small.
            Err(SinkError::Full) => Box::pin(wait_for_room(&sink, frame)).await,
        };
        match queued {
            Ok(()) => {
                if is_message {
                    messenger.metrics.delivered.inc();
                }
            }
            Err(SinkError::Closed) => return,
            Err(SinkError::Full) => {
                messenger.metrics.lagging.inc();
                sink.close(CLOSE_LAGGING, "too far behind; reconnect to catch up");
                return;
            }
        }
    }
}

/// Queues `frame` once the outbox has room; `Full` if it stays full for [`OUTBOX_STALL_MAX`].
async fn wait_for_room(sink: &FrameSink, frame: ServerFrame) -> Result<(), SinkError> {
    match tokio::time::timeout(OUTBOX_STALL_MAX, sink.send_wait(frame.to_text())).await {
        Ok(result) => result,
        Err(_) => Err(SinkError::Full),
    }
}

/// The frame for `event` on a connection of `user`, or `None` if it gets none: typing from
/// someone `user` blocked, and presence (which the server sends to contacts itself).
pub(crate) fn frame_for(store: &AccountStore, user: u64, event: Event) -> Option<ServerFrame> {
    let chat_text = |chat: ChatId| chat_id_text(chat);
    Some(match event {
        Event::Message { chat, message } => ServerFrame::Message(message_object(chat, &message)),
        Event::Receipt {
            chat,
            user: by,
            kind,
            up_to,
            timestamp,
            ..
        } => ServerFrame::Receipt(ReceiptEvent {
            chat_id: chat_text(chat),
            seq: up_to.0,
            user_id: WireId(by.0),
            status: match kind {
                ReceiptKind::Delivered => ReceiptStatus::Delivered,
                ReceiptKind::Read => ReceiptStatus::Read,
            },
            timestamp: crate::time::rfc3339(timestamp.as_millis()),
        }),
        Event::Deleted { chat, seq, by } => ServerFrame::Deleted(DeletedEvent {
            chat_id: chat_text(chat),
            message_id: message_id_text(chat, seq),
            seq: seq.0,
            by: WireId(by.0),
        }),
        Event::Group {
            chat,
            op,
            by,
            users,
            ..
        } => ServerFrame::Group(GroupEvent {
            chat_id: chat_text(chat),
            group_id: chat_text(chat),
            op: group_op(op, by, &users),
            by: WireId(by.0),
            user_ids: users.iter().map(|u| WireId(u.0)).collect(),
        }),
        Event::ChatTtl { chat, ttl_ms, by } => ServerFrame::ChatSettings(ChatSettingsEvent {
            chat_id: chat_text(chat),
            ttl_s: ttl_ms / 1000,
            by: WireId(by.0),
        }),
        Event::Typing {
            chat,
            user: typer,
            typing,
        } => {
            if store.is_blocked(user, typer.0) {
                return None;
            }
            ServerFrame::Typing(TypingEvent {
                chat_id: chat_text(chat),
                user_id: WireId(typer.0),
                is_typing: typing,
            })
        }
        // The server tells contacts itself (see `Messenger`); the engine's go to 1:1 partners.
        Event::Presence { .. } => return None,
        _ => return None,
    })
}
