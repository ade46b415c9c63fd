//! Live events as one flat C struct, and the storage its pointers point into.

use std::sync::Arc;

use missive::{Event, GroupOp, MessageView, Presence};

use crate::ids::missive_chat_id;
use crate::message::missive_message;
use crate::receipts::receipt_code;
use crate::result::missive_result;

/// `missive_event.kind`: a message of one of the device's chats (`chat`, `message`). Per chat,
/// messages come in seq order with no gaps and no repeats, the backlog first.
pub const MISSIVE_EVENT_MESSAGE: u32 = 1;
/// Someone's watermark rose (`chat`, `user`, `device`, `receipt_kind`, `seq`: up to,
/// `timestamp_ms`).
pub const MISSIVE_EVENT_RECEIPT: u32 = 2;
/// A message was deleted for everyone (`chat`, `seq`, `user`: its sender).
pub const MISSIVE_EVENT_DELETED: u32 = 3;
/// A group changed (`chat`, `group_op`, `user`: who did it, `users` / `users_len`: whom it
/// concerns).
pub const MISSIVE_EVENT_GROUP: u32 = 4;
/// A chat's disappearing-messages setting changed (`chat`, `ttl_ms`, `user`: who).
pub const MISSIVE_EVENT_CHAT_TTL: u32 = 5;
/// Someone started or stopped typing (`chat`, `user`, `typing`). Not stored.
pub const MISSIVE_EVENT_TYPING: u32 = 6;
/// A 1:1 contact came online or went offline (`user`, `presence`). Not stored.
pub const MISSIVE_EVENT_PRESENCE: u32 = 7;
/// Callback subscriptions only: the stream ended (`code`: why, e.g. `MISSIVE_ERR_CLOSED` when the
/// engine closed or the device subscribed again). The last callback of the subscription.
pub const MISSIVE_EVENT_CLOSED: u32 = 8;

/// `missive_event.group_op`: the group was created.
pub const MISSIVE_GROUP_CREATE: u32 = 1;
/// Members were added.
pub const MISSIVE_GROUP_ADD: u32 = 2;
/// Members were removed (or left).
pub const MISSIVE_GROUP_REMOVE: u32 = 3;
/// Members became admins.
pub const MISSIVE_GROUP_PROMOTE: u32 = 4;
/// Admins became plain members.
pub const MISSIVE_GROUP_DEMOTE: u32 = 5;

/// Whether a user is online.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct missive_presence {
    /// At least one device of the user is subscribed.
    pub online: bool,
    /// Offline, and `last_seen_ms` says since when.
    pub has_last_seen: bool,
    /// When the user's last device left, ms since the Unix epoch.
    pub last_seen_ms: u64,
}

impl From<Presence> for missive_presence {
    fn from(presence: Presence) -> missive_presence {
        match presence {
            Presence::Online => missive_presence {
                online: true,
                has_last_seen: false,
                last_seen_ms: 0,
            },
            Presence::Offline { last_seen } => missive_presence {
                online: false,
                has_last_seen: last_seen.is_some(),
                last_seen_ms: last_seen.map_or(0, |t| t.0),
            },
        }
    }
}

/// One live event. `kind` says which fields mean something (see the `MISSIVE_EVENT_*`
/// constants); the others are zero. Pointers (`message.body`, `message.media`, `users`) point
/// into memory Missive owns: see `missive_subscription_next` and `missive_subscribe_callback`
/// for how long they stay valid.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct missive_event {
    /// `MISSIVE_EVENT_*`.
    pub kind: u32,
    /// The chat (all kinds but presence and closed).
    pub chat: missive_chat_id,
    /// The message (`MISSIVE_EVENT_MESSAGE`).
    pub message: missive_message,
    /// The user the event is about or by (see the kinds).
    pub user: u64,
    /// The device (receipts).
    pub device: u32,
    /// `MISSIVE_RECEIPT_DELIVERED` or `_READ` (receipts).
    pub receipt_kind: u32,
    /// A seq: up to where (receipts), which message (deleted).
    pub seq: u64,
    /// Server time of a receipt, ms.
    pub timestamp_ms: u64,
    /// `MISSIVE_GROUP_*` (group changes).
    pub group_op: u32,
    /// Whom a group change concerns (NULL when `users_len` is 0).
    pub users: *const u64,
    /// How many users.
    pub users_len: usize,
    /// The new disappearing-messages setting, ms (0: off).
    pub ttl_ms: u64,
    /// Typing or stopped (typing).
    pub typing: bool,
    /// Online or offline since when (presence).
    pub presence: missive_presence,
    /// `MISSIVE_EVENT_CLOSED`: why the stream ended (a `missive_result`).
    pub code: i32,
}

impl missive_event {
    fn empty(kind: u32) -> missive_event {
        missive_event {
            kind,
            chat: missive_chat_id::default(),
            message: missive_message::default(),
            user: 0,
            device: 0,
            receipt_kind: 0,
            seq: 0,
            timestamp_ms: 0,
            group_op: 0,
            users: std::ptr::null(),
            users_len: 0,
            ttl_ms: 0,
            typing: false,
            presence: missive_presence::default(),
            code: 0,
        }
    }

    /// The event a callback subscription ends with.
    pub(crate) fn closed(code: missive_result) -> missive_event {
        missive_event {
            code: code as i32,
            ..missive_event::empty(MISSIVE_EVENT_CLOSED)
        }
    }
}

/// An event and what its pointers point into. Moving it does not move the pointed-to bytes (they
/// live on the heap, behind the `Arc` and the `Vec`).
pub(crate) struct EventStorage {
    pub(crate) event: missive_event,
    _message: Option<Arc<MessageView>>,
    _users: Vec<u64>,
}

// SAFETY: the raw pointers in `event` point only into `_message` and `_users`, which the storage
// owns and which are themselves `Send` and `Sync`; nothing else is reachable through them.
unsafe impl Send for EventStorage {}
// SAFETY: as above; shared access only reads.
unsafe impl Sync for EventStorage {}

fn op_code(op: GroupOp) -> u32 {
    match op {
        GroupOp::Create => MISSIVE_GROUP_CREATE,
        GroupOp::Add => MISSIVE_GROUP_ADD,
        GroupOp::Remove => MISSIVE_GROUP_REMOVE,
        GroupOp::Promote => MISSIVE_GROUP_PROMOTE,
        GroupOp::Demote => MISSIVE_GROUP_DEMOTE,
    }
}

impl EventStorage {
    /// The C form of an engine event; `None` for a kind this version of the C API does not
    /// describe (callers skip it).
    pub(crate) fn new(event: Event) -> Option<EventStorage> {
        let mut message = None;
        let mut users = Vec::new();
        let c = match event {
            Event::Message {
                chat,
                message: view,
            } => {
                let c = missive_event {
                    chat: chat.into(),
                    message: missive_message::of(chat, &view),
                    ..missive_event::empty(MISSIVE_EVENT_MESSAGE)
                };
                message = Some(view);
                c
            }
            Event::Receipt {
                chat,
                user,
                device,
                kind,
                up_to,
                timestamp,
            } => missive_event {
                chat: chat.into(),
                user: user.0,
                device: device.0,
                receipt_kind: receipt_code(kind),
                seq: up_to.0,
                timestamp_ms: timestamp.0,
                ..missive_event::empty(MISSIVE_EVENT_RECEIPT)
            },
            Event::Deleted { chat, seq, by } => missive_event {
                chat: chat.into(),
                seq: seq.0,
                user: by.0,
                ..missive_event::empty(MISSIVE_EVENT_DELETED)
            },
            Event::Group {
                chat,
                op,
                by,
                users: whom,
            } => {
                users = whom.iter().map(|u| u.0).collect();
                missive_event {
                    chat: chat.into(),
                    group_op: op_code(op),
                    user: by.0,
                    users: if users.is_empty() {
                        std::ptr::null()
                    } else {
                        users.as_ptr()
                    },
                    users_len: users.len(),
                    ..missive_event::empty(MISSIVE_EVENT_GROUP)
                }
            }
            Event::ChatTtl { chat, ttl_ms, by } => missive_event {
                chat: chat.into(),
                ttl_ms,
                user: by.0,
                ..missive_event::empty(MISSIVE_EVENT_CHAT_TTL)
            },
            Event::Typing { chat, user, typing } => missive_event {
                chat: chat.into(),
                user: user.0,
                typing,
                ..missive_event::empty(MISSIVE_EVENT_TYPING)
            },
            Event::Presence { user, presence } => missive_event {
                user: user.0,
                presence: presence.into(),
                ..missive_event::empty(MISSIVE_EVENT_PRESENCE)
            },
            _ => return None,
        };
        Some(EventStorage {
            event: c,
            _message: message,
            _users: users,
        })
    }
}
