//! What subscribers receive, and the shapes of requests and answers.

use std::sync::Arc;

use bytes::Bytes;
use missive_fanout::Presence;
use missive_index::codec::{ContentKind, GroupOp, ReceiptKind};
use missive_index::{MessageView, ReceiptCounts, Status};
use missive_log::{ChatId, DeviceId, Seq, Timestamp, UserId};

/// Who a message goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum To {
    /// The 1:1 chat with this user (its id is derived from the two users).
    User(UserId),
    /// A chat by id: a group, or a 1:1 chat.
    Chat(ChatId),
}

/// A message to send. The sender is an argument of [`Engine::send`](crate::Engine::send), never
/// a field a client fills.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outgoing {
    /// Where it goes.
    pub to: To,
    /// The sender's id for it: a retry with the same id returns the original and stores nothing.
    pub client_msg_id: [u8; 16],
    /// Text, image, video, document or voice (`System` is the engine's own).
    pub kind: ContentKind,
    /// The opaque body (ciphertext, with end-to-end encryption).
    pub body: Bytes,
    /// A media reference (opaque to the engine), or empty.
    pub media: Bytes,
    /// The message it answers.
    pub reply_to: Option<Seq>,
    /// Disappears this long after it is stored (`None`: the chat's setting).
    pub ttl_ms: Option<u64>,
}

impl Outgoing {
    /// A text message with no media, reply or TTL.
    pub fn text(to: To, client_msg_id: [u8; 16], body: impl Into<Bytes>) -> Outgoing {
        Outgoing {
            to,
            client_msg_id,
            kind: ContentKind::Text,
            body: body.into(),
            media: Bytes::new(),
            reply_to: None,
            ttl_ms: None,
        }
    }
}

/// What a send stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sent {
    /// The chat.
    pub chat: ChatId,
    /// The message's seq in it.
    pub seq: Seq,
    /// Server time it was stored.
    pub timestamp: Timestamp,
    /// A retry: this is what the first send with the same `client_msg_id` stored.
    pub duplicate: bool,
}

/// Which part of a chat's history to read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum History {
    /// The newest `n`.
    Latest(usize),
    /// Up to `n` before a seq.
    Before(Seq, usize),
    /// Up to `n` after a seq.
    After(Seq, usize),
    /// Up to `n` around a time.
    Around(Timestamp, usize),
}

/// One of the caller's chats, for a chat list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChatSummary {
    /// The chat.
    pub chat: ChatId,
    /// Its newest visible message.
    pub last: Option<MessageView>,
    /// Messages the caller has not read.
    pub unread: u64,
    /// Its newest seq.
    pub head: Seq,
}

/// A message's state among its recipients, for its sender.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessageStatus {
    /// "Delivered to k of n, read by j of n".
    pub counts: ReceiptCounts,
    /// Each recipient's state.
    pub members: Vec<(UserId, Status)>,
}

/// A live event a subscription yields.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A message of one of the device's chats (stored; in seq order per chat).
    Message {
        /// The chat.
        chat: ChatId,
        /// The message.
        message: Arc<MessageView>,
    },
    /// Someone's delivered or read watermark rose.
    Receipt {
        /// The chat.
        chat: ChatId,
        /// Whose.
        user: UserId,
        /// From which device.
        device: DeviceId,
        /// Delivered or read.
        kind: ReceiptKind,
        /// Everything up to here.
        up_to: Seq,
        /// Server time of the receipt.
        timestamp: Timestamp,
    },
    /// A message was deleted for everyone.
    Deleted {
        /// The chat.
        chat: ChatId,
        /// The message.
        seq: Seq,
        /// Its sender.
        by: UserId,
    },
    /// A group's membership or roles changed.
    Group {
        /// The group.
        chat: ChatId,
        /// What changed.
        op: GroupOp,
        /// Who did it.
        by: UserId,
        /// Whom it concerns.
        users: Vec<UserId>,
    },
    /// A chat's disappearing-messages setting changed.
    ChatTtl {
        /// The chat.
        chat: ChatId,
        /// The new setting (0: off).
        ttl_ms: u64,
        /// Who changed it.
        by: UserId,
    },
    /// Someone started or stopped typing (not stored).
    Typing {
        /// The chat.
        chat: ChatId,
        /// Who.
        user: UserId,
        /// Typing or stopped.
        typing: bool,
    },
    /// A contact came online or went offline (not stored).
    Presence {
        /// Who.
        user: UserId,
        /// Online, or offline since when.
        presence: Presence,
    },
}
