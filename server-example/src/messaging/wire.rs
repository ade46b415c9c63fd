//! Between the engine's types and the wire's: message objects, kinds, group operations and
//! the mapping of engine errors to the protocol's error codes.

use missive::log::{ChatId, UserId};
use missive::{ContentKind, GroupOp, MessageView, SYSTEM_DEVICE};

use super::ids::{chat_id_text, message_id_text};
use crate::error::ApiError;
use crate::time::rfc3339;
use crate::ws::{MessageObject, MessageType, WireId};

/// The wire kind of an engine content kind.
pub fn message_type(kind: ContentKind) -> MessageType {
    match kind {
        ContentKind::Text => MessageType::Text,
        ContentKind::Image => MessageType::Image,
        ContentKind::Video => MessageType::Video,
        ContentKind::Document => MessageType::Document,
        ContentKind::Voice => MessageType::Voice,
        ContentKind::System => MessageType::System,
    }
}

/// The engine kind of a wire kind.
pub fn content_kind(kind: MessageType) -> ContentKind {
    match kind {
        MessageType::Text => ContentKind::Text,
        MessageType::Image => ContentKind::Image,
        MessageType::Video => ContentKind::Video,
        MessageType::Document => ContentKind::Document,
        MessageType::Voice => ContentKind::Voice,
        MessageType::System => ContentKind::System,
    }
}

/// The wire device id of a sender's device: the engine's system device shows as 0 (real
/// devices are numbered from 1).
pub fn wire_device(device: missive::log::DeviceId) -> u32 {
    if device == SYSTEM_DEVICE { 0 } else { device.0 }
}

/// The message object of `view` in `chat`.
pub fn message_object(chat: ChatId, view: &MessageView) -> MessageObject {
    let m = &view.message;
    let timestamp_ms = view.timestamp.as_millis();
    MessageObject {
        message_id: message_id_text(chat, m.seq),
        chat_id: chat_id_text(chat),
        seq: m.seq.0,
        sender_id: WireId(m.sender.0),
        sender_device_id: wire_device(m.sender_device),
        message_type: message_type(m.content),
        content: if view.deleted {
            String::new()
        } else {
            String::from_utf8_lossy(&m.body).into_owned()
        },
        media_id: (!view.deleted && !m.media.is_empty())
            .then(|| String::from_utf8_lossy(&m.media).into_owned()),
        reply_to: m.reply_to.map(|seq| message_id_text(chat, seq)),
        timestamp: rfc3339(timestamp_ms),
        expires_at: (m.ttl_ms > 0).then(|| rfc3339(timestamp_ms.saturating_add(m.ttl_ms))),
        deleted: view.deleted,
    }
}

/// The wire name of a group change (`leave` for someone removing themselves).
pub fn group_op(op: GroupOp, by: UserId, users: &[UserId]) -> &'static str {
    match op {
        GroupOp::Create => "create",
        GroupOp::Add => "add",
        GroupOp::Remove if users == [by] => "leave",
        GroupOp::Remove => "remove",
        GroupOp::Promote => "promote",
        GroupOp::Demote => "demote",
    }
}

/// The protocol's answer to an engine refusal or failure.
///
/// An unknown group and a chat one is not in get the same `forbidden`, so that probing ids
/// tells a non-member nothing about which groups exist.
pub fn api_error(error: missive::Error) -> ApiError {
    use missive::Error as E;
    match error {
        E::NotAMember { .. } | E::NoSuchChat { .. } => {
            ApiError::Forbidden("you are not a member of this chat".into())
        }
        E::NotAdmin { .. } => ApiError::Forbidden("only the group's admins may do this".into()),
        E::NotSender { .. } => ApiError::Forbidden("only the message's sender may do this".into()),
        E::GroupFull { cap, .. } => ApiError::GroupFull {
            members_max: cap as u32,
        },
        E::NoSuchMessage { .. } => ApiError::NotFound("no such message".into()),
        E::PayloadTooLarge { what, max, .. } => ApiError::too_large(what, max as u64),
        E::InvalidArgument(message) => ApiError::InvalidRequest(message),
        E::Closed => ApiError::Unavailable("the server is shutting down".into()),
        E::StorageFull(e) => {
            tracing::error!(error = %e, "engine storage full");
            ApiError::Unavailable("storage is full; try again later".into())
        }
        other => ApiError::internal(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip() {
        for kind in [
            ContentKind::Text,
            ContentKind::Image,
            ContentKind::Video,
            ContentKind::Document,
            ContentKind::Voice,
            ContentKind::System,
        ] {
            assert_eq!(content_kind(message_type(kind)), kind);
        }
    }

    #[test]
    fn engine_errors_map_to_protocol_codes() {
        let chat = ChatId::group(1);
        let cases = [
            (
                missive::Error::NotAMember {
                    user: UserId(1),
                    chat,
                },
                "forbidden",
            ),
            (missive::Error::NoSuchChat { chat }, "forbidden"),
            (
                missive::Error::NotAdmin {
                    user: UserId(1),
                    chat,
                },
                "forbidden",
            ),
            (
                missive::Error::GroupFull {
                    chat,
                    members: 300,
                    cap: 256,
                },
                "group_full",
            ),
            (
                missive::Error::NoSuchMessage {
                    chat,
                    seq: missive::log::Seq(3),
                },
                "not_found",
            ),
            (
                missive::Error::InvalidArgument("x".into()),
                "invalid_request",
            ),
            (missive::Error::Closed, "unavailable"),
        ];
        for (error, code) in cases {
            assert_eq!(api_error(error).code(), code);
        }
    }
}
