//! The WebSocket frames of `PROTOCOL.md`, typed: every frame is `{"type": "...", "data": {...}}`.
//!
//! [`ClientFrame::parse`] turns a text message into one of the five client frames or an
//! `invalid_request` [`ApiError`] that names what was wrong (unknown type, missing field, wrong
//! type). Unknown *fields* are ignored, except `sender_id` and `sender_device_id` in a message,
//! which are refused (`400`): the sender always comes from the token, and a client that sends
//! them expects otherwise. [`ServerFrame`] is everything the server sends;
//! [`ServerFrame::to_text`] serializes one so it can be shared by many connections.

use axum::extract::ws::Utf8Bytes;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;

use crate::error::{ApiError, ErrorBody};

/// Longest `client_msg_id`, in bytes.
pub const CLIENT_MSG_ID_BYTES_MAX: usize = 64;
/// Longest `chat_id`, `media_id`, `reply_to` or `call_id`, in bytes.
pub const ID_BYTES_MAX: usize = 128;
/// Longest SDP blob in a `call` frame, in bytes.
pub const SDP_BYTES_MAX: usize = 16 * 1024;

/// A user id: a `u64` that travels as a decimal string (`"42"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WireId(pub u64);

impl Serialize for WireId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for WireId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = WireId;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a user id as a string of digits, like \"42\"")
            }

            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<WireId, E> {
                if s.is_empty() || s.len() > 20 || !s.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(E::invalid_value(serde::de::Unexpected::Str(s), &self));
                }
                s.parse()
                    .map(WireId)
                    .map_err(|_| E::invalid_value(serde::de::Unexpected::Str(s), &self))
            }
        }
        deserializer.deserialize_str(Visitor)
    }
}

/// The kinds of message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageType {
    /// Text.
    Text,
    /// An image (with `media_id`).
    Image,
    /// A video.
    Video,
    /// A document.
    Document,
    /// A voice note.
    Voice,
    /// Written by the server (membership changes); clients may not send these.
    System,
}

/// A message to send: the body of `POST /api/v1/messages` and the `data` of a `message` frame.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct SendMessage {
    /// The client's id for this message: re-sending it returns the original result.
    pub client_msg_id: String,
    /// The recipient of a 1:1 message (exactly one of this and `chat_id`).
    #[serde(default)]
    pub to_user_id: Option<WireId>,
    /// The chat of a group message (or an existing 1:1 chat).
    #[serde(default)]
    pub chat_id: Option<String>,
    /// The kind.
    pub message_type: MessageType,
    /// Opaque (clients put base64 ciphertext here).
    #[serde(default)]
    pub content: String,
    /// Attached media.
    #[serde(default)]
    pub media_id: Option<String>,
    /// The `message_id` this replies to.
    #[serde(default)]
    pub reply_to: Option<String>,
    /// Disappearing messages: seconds after which the message expires.
    #[serde(default)]
    pub ttl_s: Option<u64>,
    /// Never accepted: the sender comes from the token. Present only to refuse it loudly.
    #[serde(default)]
    pub sender_id: Option<serde_json::Value>,
    /// Never accepted, like `sender_id`.
    #[serde(default)]
    pub sender_device_id: Option<serde_json::Value>,
}

/// Longest disappearing-message lifetime: one year.
pub const TTL_S_MAX: u64 = 365 * 24 * 3600;

fn check_id(field: &str, value: &str, bytes_max: usize) -> Result<(), ApiError> {
    if value.is_empty() || value.len() > bytes_max {
        return Err(ApiError::InvalidRequest(format!(
            "{field} must have 1 to {bytes_max} bytes"
        )));
    }
    Ok(())
}

impl SendMessage {
    /// Checks what can be checked without the engine: one destination, sizes, no `system`.
    pub fn validate(&self, content_bytes_max: usize) -> Result<(), ApiError> {
        if self.sender_id.is_some() || self.sender_device_id.is_some() {
            return Err(ApiError::InvalidRequest(
                "sender_id and sender_device_id come from the bearer token; do not send them"
                    .into(),
            ));
        }
        check_id(
            "client_msg_id",
            &self.client_msg_id,
            CLIENT_MSG_ID_BYTES_MAX,
        )?;
        match (&self.to_user_id, &self.chat_id) {
            (Some(_), None) => {}
            (None, Some(chat)) => check_id("chat_id", chat, ID_BYTES_MAX)?,
            _ => {
                return Err(ApiError::InvalidRequest(
                    "give exactly one of to_user_id and chat_id".into(),
                ));
            }
        }
        if self.message_type == MessageType::System {
            return Err(ApiError::InvalidRequest(
                "system messages are written by the server".into(),
            ));
        }
        if self.content.len() > content_bytes_max {
            return Err(ApiError::too_large("content", content_bytes_max as u64));
        }
        if self.content.is_empty() && self.media_id.is_none() {
            return Err(ApiError::InvalidRequest(
                "a message needs content or a media_id".into(),
            ));
        }
        if let Some(media) = &self.media_id {
            check_id("media_id", media, ID_BYTES_MAX)?;
        }
        if let Some(reply) = &self.reply_to {
            check_id("reply_to", reply, ID_BYTES_MAX)?;
        }
        if let Some(ttl) = self.ttl_s
            && !(1..=TTL_S_MAX).contains(&ttl)
        {
            return Err(ApiError::InvalidRequest(format!(
                "ttl_s must be between 1 and {TTL_S_MAX}"
            )));
        }
        Ok(())
    }
}

/// Delivered or read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReceiptStatus {
    /// Reached a device.
    Delivered,
    /// Seen by the user.
    Read,
}

/// A client's receipt: everything up to `seq` in `chat_id` is delivered (or read).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ReceiptFrame {
    /// The chat.
    pub chat_id: String,
    /// The watermark.
    pub seq: u64,
    /// Which watermark.
    pub status: ReceiptStatus,
}

/// A client's typing indicator.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct TypingFrame {
    /// The chat.
    pub chat_id: String,
    /// Started or stopped.
    pub is_typing: bool,
}

/// Call signalling actions and the `data` of a relayed `call` frame are the call registry's
/// (one definition for what clients send and what the server relays).
pub use crate::calls::{CallAction, CallEvent};

/// A client's call signalling frame, relayed to `to_user_id`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct CallFrame {
    /// The call.
    pub call_id: String,
    /// The other party.
    pub to_user_id: WireId,
    /// What happens.
    pub action: CallAction,
    /// SDP for offer/answer.
    #[serde(default)]
    pub sdp: Option<String>,
    /// ICE candidate for `ice` (opaque JSON).
    #[serde(default)]
    pub candidate: Option<serde_json::Value>,
}

/// A frame from a client.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientFrame {
    /// Send a message; answered by `ack`.
    Message(SendMessage),
    /// A delivered/read watermark.
    Receipt(ReceiptFrame),
    /// Typing started/stopped.
    Typing(TypingFrame),
    /// Heartbeat; answered by `pong`.
    Ping,
    /// Call signalling.
    Call(CallFrame),
}

#[derive(Deserialize)]
struct RawFrame<'a> {
    #[serde(rename = "type", borrow)]
    kind: std::borrow::Cow<'a, str>,
    #[serde(default, borrow)]
    data: Option<&'a RawValue>,
}

fn data<'a, T: Deserialize<'a>>(kind: &str, data: Option<&'a RawValue>) -> Result<T, ApiError> {
    let data = data.ok_or_else(|| ApiError::InvalidRequest(format!("`{kind}` needs `data`")))?;
    // The path names the field at fault: "content: invalid type: integer `7`, ...".
    let mut deserializer = serde_json::Deserializer::from_str(data.get());
    serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." {
            ApiError::InvalidRequest(format!("bad `{kind}` data: {inner}"))
        } else {
            ApiError::InvalidRequest(format!("bad `{kind}` data: {path}: {inner}"))
        }
    })
}

impl ClientFrame {
    /// Parses a text message.
    pub fn parse(text: &str) -> Result<Self, ApiError> {
        let raw: RawFrame<'_> = serde_json::from_str(text).map_err(|e| {
            ApiError::InvalidRequest(format!("a frame is {{\"type\", \"data\"}}: {e}"))
        })?;
        match &*raw.kind {
            "message" => data("message", raw.data).map(Self::Message),
            "receipt" => data("receipt", raw.data).map(Self::Receipt),
            "typing" => data("typing", raw.data).map(Self::Typing),
            "call" => {
                let call: CallFrame = data("call", raw.data)?;
                check_id("call_id", &call.call_id, ID_BYTES_MAX)?;
                if call.sdp.as_ref().is_some_and(|s| s.len() > SDP_BYTES_MAX) {
                    return Err(ApiError::too_large("sdp", SDP_BYTES_MAX as u64));
                }
                Ok(Self::Call(call))
            }
            "ping" => Ok(Self::Ping),
            other => Err(ApiError::InvalidRequest(format!(
                "unknown frame type `{other}` (expected message, receipt, typing, ping or call)"
            ))),
        }
    }

    /// The frame's `type`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Message(_) => "message",
            Self::Receipt(_) => "receipt",
            Self::Typing(_) => "typing",
            Self::Ping => "ping",
            Self::Call(_) => "call",
        }
    }
}

/// `data` of an `ack`: the message is stored (the "sent" tick).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AckFrame {
    /// As the client sent it.
    pub client_msg_id: String,
    /// `"<chat_id>:<seq>"`.
    pub message_id: String,
    /// The chat.
    pub chat_id: String,
    /// Position in the chat.
    pub seq: u64,
    /// RFC 3339.
    pub timestamp: String,
}

/// A message object, as delivered and as listed in history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MessageObject {
    /// `"<chat_id>:<seq>"`.
    pub message_id: String,
    /// The chat.
    pub chat_id: String,
    /// Position in the chat.
    pub seq: u64,
    /// Who sent it.
    pub sender_id: WireId,
    /// From which device.
    pub sender_device_id: u32,
    /// The kind.
    pub message_type: MessageType,
    /// Opaque content ("" once deleted).
    pub content: String,
    /// Attached media.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub media_id: Option<String>,
    /// The message this replies to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<String>,
    /// RFC 3339.
    pub timestamp: String,
    /// RFC 3339, for disappearing messages.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// Deleted for everyone.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub deleted: bool,
}

/// `data` of a server `receipt`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReceiptEvent {
    /// The chat.
    pub chat_id: String,
    /// The watermark.
    pub seq: u64,
    /// Whose receipt.
    pub user_id: WireId,
    /// Which watermark.
    pub status: ReceiptStatus,
    /// RFC 3339.
    pub timestamp: String,
}

/// `data` of a server `typing`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TypingEvent {
    /// The chat.
    pub chat_id: String,
    /// Who types.
    pub user_id: WireId,
    /// Started or stopped.
    pub is_typing: bool,
}

/// Online or offline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PresenceStatus {
    /// Has a live connection.
    Online,
    /// Has none.
    Offline,
}

/// `data` of a `presence` frame.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PresenceEvent {
    /// Whose presence.
    pub user_id: WireId,
    /// Online or offline.
    pub status: PresenceStatus,
    /// RFC 3339, when last online.
    pub last_seen: Option<String>,
}

/// `data` of a `group` frame: a group's membership or roles changed, or its name, description
/// or picture (`op` = `update`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupEvent {
    /// The group's chat.
    pub chat_id: String,
    /// The same id (groups are named by their chat).
    pub group_id: String,
    /// `create`, `add`, `remove`, `leave`, `promote`, `demote` or `update`.
    pub op: &'static str,
    /// Who did it.
    pub by: WireId,
    /// Whom it concerns (empty for `update`).
    pub user_ids: Vec<WireId>,
}

/// `data` of a `deleted` frame: a message was deleted for everyone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeletedEvent {
    /// The chat.
    pub chat_id: String,
    /// `"<chat_id>:<seq>"`.
    pub message_id: String,
    /// The message's seq.
    pub seq: u64,
    /// Its sender, who deleted it.
    pub by: WireId,
}

/// `data` of a `chat_settings` frame: a chat's disappearing-messages timer changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChatSettingsEvent {
    /// The chat.
    pub chat_id: String,
    /// Messages sent from now on without their own `ttl_s` disappear after this (0: off).
    pub ttl_s: u64,
    /// Who changed it.
    pub by: WireId,
}

/// `data` of an `error` frame.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ErrorFrame {
    /// As in HTTP error bodies.
    pub code: &'static str,
    /// For humans.
    pub message: String,
    /// The `client_msg_id` of the refused `message` frame, if it was one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_msg_id: Option<String>,
    /// The `call_id` of the refused `call` frame, if it was one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub call_id: Option<String>,
}

impl ErrorFrame {
    /// The frame for `error`.
    pub fn new(error: &ApiError) -> Self {
        let ErrorBody { code, message } = error.body();
        Self {
            code,
            message,
            client_msg_id: None,
            call_id: None,
        }
    }

    /// The frame for `error`, about the message `client_msg_id`.
    pub fn for_message(error: &ApiError, client_msg_id: &str) -> Self {
        Self {
            client_msg_id: Some(client_msg_id.to_owned()),
            ..Self::new(error)
        }
    }

    /// The frame for `error`, about the call `call_id`.
    pub fn for_call(error: &ApiError, call_id: &str) -> Self {
        Self {
            call_id: Some(call_id.to_owned()),
            ..Self::new(error)
        }
    }
}

/// An empty `data` object.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Empty {}

/// A frame from the server.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", content = "data", rename_all = "snake_case")]
pub enum ServerFrame {
    /// A message is stored.
    Ack(AckFrame),
    /// A message.
    Message(MessageObject),
    /// Someone's receipt.
    Receipt(ReceiptEvent),
    /// Someone types.
    Typing(TypingEvent),
    /// A contact's presence.
    Presence(PresenceEvent),
    /// Call signalling.
    Call(CallEvent),
    /// Group membership, roles or metadata changed.
    Group(GroupEvent),
    /// A message was deleted for everyone.
    Deleted(DeletedEvent),
    /// A chat's disappearing-messages timer changed.
    ChatSettings(ChatSettingsEvent),
    /// A refused frame.
    Error(ErrorFrame),
    /// Heartbeat answer.
    Pong(Empty),
}

impl ServerFrame {
    /// The JSON text of the frame.
    pub fn to_text(&self) -> Utf8Bytes {
        // Serializing these types cannot fail: no maps with non-string keys, no custom errors.
        serde_json::to_string(self)
            .expect("server frames serialize")
            .into()
    }

    /// An `error` frame for `error`.
    pub fn error(error: &ApiError) -> Self {
        Self::Error(ErrorFrame::new(error))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_client_frame() {
        let m = ClientFrame::parse(
            r#"{"type":"message","data":{"client_msg_id":"c1","to_user_id":"2","message_type":"text","content":"aGk=","sender_id":"99"}}"#,
        )
        .unwrap();
        let ClientFrame::Message(m) = m else { panic!() };
        assert_eq!(m.to_user_id, Some(WireId(2)));
        // A sender field is refused: the sender comes from the token.
        assert_eq!(m.validate(10).unwrap_err().code(), "invalid_request");
        let m = SendMessage {
            sender_id: None,
            ..m
        };
        m.validate(10).unwrap();
        assert_eq!(
            ClientFrame::parse(
                r#"{"data":{"chat_id":"c","seq":3,"status":"read"},"type":"receipt"}"#
            )
            .unwrap(),
            ClientFrame::Receipt(ReceiptFrame {
                chat_id: "c".into(),
                seq: 3,
                status: ReceiptStatus::Read
            })
        );
        assert_eq!(
            ClientFrame::parse(r#"{"type":"typing","data":{"chat_id":"c","is_typing":true}}"#)
                .unwrap()
                .kind(),
            "typing"
        );
        assert_eq!(
            ClientFrame::parse(r#"{"type":"ping"}"#).unwrap(),
            ClientFrame::Ping
        );
        assert_eq!(
            ClientFrame::parse(r#"{"type":"ping","data":{}}"#).unwrap(),
            ClientFrame::Ping
        );
        let call = ClientFrame::parse(
            r#"{"type":"call","data":{"call_id":"k","to_user_id":"5","action":"ice","candidate":{"c":1}}}"#,
        )
        .unwrap();
        assert_eq!(call.kind(), "call");
    }

    #[test]
    fn bad_frames_say_what_is_wrong() {
        for (text, needle) in [
            ("not json", "a frame is"),
            (r#"{"data":{}}"#, "type"),
            (
                r#"{"type":"shout","data":{}}"#,
                "unknown frame type `shout`",
            ),
            (r#"{"type":"receipt"}"#, "needs `data`"),
            (
                r#"{"type":"receipt","data":{"chat_id":"c","seq":"3","status":"read"}}"#,
                "expected u64",
            ),
            (
                r#"{"type":"typing","data":{"chat_id":"c","is_typing":"yes"}}"#,
                "expected a boolean",
            ),
            (
                r#"{"type":"message","data":{"client_msg_id":"c","to_user_id":2,"message_type":"text","content":"x"}}"#,
                "user id",
            ),
            (
                r#"{"type":"message","data":{"client_msg_id":"c","to_user_id":"2","message_type":"gif","content":"x"}}"#,
                "gif",
            ),
        ] {
            let e = ClientFrame::parse(text).unwrap_err();
            assert_eq!(e.code(), "invalid_request");
            assert!(e.to_string().contains(needle), "{text}: {e}");
        }
    }

    #[test]
    fn message_validation() {
        let ok = SendMessage {
            client_msg_id: "c".into(),
            to_user_id: Some(WireId(2)),
            chat_id: None,
            message_type: MessageType::Text,
            content: "hello".into(),
            media_id: None,
            reply_to: None,
            ttl_s: None,
            sender_id: None,
            sender_device_id: None,
        };
        ok.validate(5).unwrap();
        assert_eq!(ok.validate(4).unwrap_err().code(), "payload_too_large");
        let both = SendMessage {
            chat_id: Some("x".into()),
            ..ok.clone()
        };
        assert_eq!(both.validate(5).unwrap_err().code(), "invalid_request");
        let system = SendMessage {
            message_type: MessageType::System,
            ..ok.clone()
        };
        assert!(system.validate(5).is_err());
        let ttl = SendMessage {
            ttl_s: Some(0),
            ..ok.clone()
        };
        assert!(ttl.validate(5).is_err());
        let empty = SendMessage {
            content: String::new(),
            ..ok
        };
        assert!(empty.validate(5).is_err());
    }

    #[test]
    fn server_frames_have_type_and_data() {
        assert_eq!(
            &*ServerFrame::Pong(Empty {}).to_text(),
            r#"{"type":"pong","data":{}}"#
        );
        let e = ServerFrame::error(&ApiError::NotImplemented("later".into())).to_text();
        assert_eq!(
            &*e,
            r#"{"type":"error","data":{"code":"not_implemented","message":"later"}}"#
        );
        let p = ServerFrame::Presence(PresenceEvent {
            user_id: WireId(7),
            status: PresenceStatus::Online,
            last_seen: None,
        })
        .to_text();
        assert_eq!(
            &*p,
            r#"{"type":"presence","data":{"user_id":"7","status":"online","last_seen":null}}"#
        );
    }
}
