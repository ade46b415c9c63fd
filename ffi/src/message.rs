//! Stored messages as C structs, message arrays, and the history reads that fill them.

use missive::log::{ChatId, Seq, Timestamp, UserId};
use missive::{ContentKind, History, MessageView};

use crate::args::Out;
use crate::engine::missive_engine;
use crate::ids::missive_chat_id;
use crate::list::{Header, Owned, owned_handle};
use crate::result::{Failure, FfiResult, guard, missive_result};

/// `missive_message.kind`, `missive_send_options.kind`: text.
pub const MISSIVE_CONTENT_TEXT: u32 = 1;
/// A photo.
pub const MISSIVE_CONTENT_IMAGE: u32 = 2;
/// A video.
pub const MISSIVE_CONTENT_VIDEO: u32 = 3;
/// A document.
pub const MISSIVE_CONTENT_DOCUMENT: u32 = 4;
/// A voice note.
pub const MISSIVE_CONTENT_VOICE: u32 = 5;
/// A notice the engine wrote itself (a group change: its body is a small JSON object such as
/// `{"op":"add","by":"1","users":["2","3"]}`). Never sent by a client.
pub const MISSIVE_CONTENT_SYSTEM: u32 = 6;

/// `missive_history`'s `which`: the newest `limit` messages (`anchor` ignored).
pub const MISSIVE_HISTORY_LATEST: u32 = 1;
/// Up to `limit` messages before seq `anchor`.
pub const MISSIVE_HISTORY_BEFORE: u32 = 2;
/// Up to `limit` messages after seq `anchor`.
pub const MISSIVE_HISTORY_AFTER: u32 = 3;
/// Up to `limit` messages around time `anchor` (ms since the Unix epoch).
pub const MISSIVE_HISTORY_AROUND: u32 = 4;

/// The most messages one history read returns.
pub const MISSIVE_HISTORY_LIMIT_MAX: usize = 1000;

/// A stored message. Its `body` and `media` point into memory owned by the array (or event) it
/// came in: valid until that is freed (or, for an event, replaced).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct missive_message {
    /// Its chat.
    pub chat: missive_chat_id,
    /// Its position in the chat: dense and increasing from 1.
    pub seq: u64,
    /// Who sent it.
    pub sender: u64,
    /// From which device (`UINT32_MAX`: written by the engine).
    pub sender_device: u32,
    /// `MISSIVE_CONTENT_*`.
    pub kind: u32,
    /// The sender's id for it.
    pub client_msg_id: [u8; 16],
    /// Server time it was stored, ms since the Unix epoch.
    pub timestamp_ms: u64,
    /// It disappears this long after `timestamp_ms` (0: kept).
    pub ttl_ms: u64,
    /// The seq of the message it answers (0: none).
    pub reply_to: u64,
    /// Deleted for everyone: `body` and `media` are empty.
    pub deleted: bool,
    /// The body (opaque bytes; NULL when `body_len` is 0).
    pub body: *const u8,
    /// Bytes at `body`.
    pub body_len: usize,
    /// The media reference (opaque bytes; NULL when `media_len` is 0).
    pub media: *const u8,
    /// Bytes at `media`.
    pub media_len: usize,
}

impl Default for missive_message {
    fn default() -> missive_message {
        missive_message {
            chat: missive_chat_id::default(),
            seq: 0,
            sender: 0,
            sender_device: 0,
            kind: 0,
            client_msg_id: [0; 16],
            timestamp_ms: 0,
            ttl_ms: 0,
            reply_to: 0,
            deleted: false,
            body: std::ptr::null(),
            body_len: 0,
            media: std::ptr::null(),
            media_len: 0,
        }
    }
}

fn bytes_ptr(bytes: &[u8]) -> *const u8 {
    if bytes.is_empty() {
        std::ptr::null()
    } else {
        bytes.as_ptr()
    }
}

/// The C value of a content kind.
pub(crate) fn content_code(kind: ContentKind) -> u32 {
    u32::from(kind as u8)
}

/// The content kind a client may send, from its C value.
pub(crate) fn content_kind(code: u32) -> FfiResult<ContentKind> {
    match code {
        MISSIVE_CONTENT_TEXT => Ok(ContentKind::Text),
        MISSIVE_CONTENT_IMAGE => Ok(ContentKind::Image),
        MISSIVE_CONTENT_VIDEO => Ok(ContentKind::Video),
        MISSIVE_CONTENT_DOCUMENT => Ok(ContentKind::Document),
        MISSIVE_CONTENT_VOICE => Ok(ContentKind::Voice),
        MISSIVE_CONTENT_SYSTEM => Err(Failure::invalid(
            "MISSIVE_CONTENT_SYSTEM messages are written by the engine",
        )),
        other => Err(Failure::invalid(format!(
            "content kind {other} is not a MISSIVE_CONTENT_* value"
        ))),
    }
}

impl missive_message {
    /// The C view of `view`; its pointers point into `view`, which must outlive it.
    pub(crate) fn of(chat: ChatId, view: &MessageView) -> missive_message {
        let message = &view.message;
        missive_message {
            chat: chat.into(),
            seq: message.seq.0,
            sender: message.sender.0,
            sender_device: message.sender_device.0,
            kind: content_code(message.content),
            client_msg_id: message.client_msg_id,
            timestamp_ms: view.timestamp.0,
            ttl_ms: message.ttl_ms,
            reply_to: message.reply_to.map_or(0, |seq| seq.0),
            deleted: view.deleted,
            body: bytes_ptr(&message.body),
            body_len: message.body.len(),
            media: bytes_ptr(&message.media),
            media_len: message.media.len(),
        }
    }
}

/// An array of messages, oldest first, allocated by Missive.
///
/// Ownership: the caller owns it and must pass it to `missive_message_list_free` exactly once;
/// `messages` and every `body`/`media` pointer inside stay valid until then. Read it from any
/// thread; do not write to it.
#[repr(C)]
#[derive(Debug)]
pub struct missive_message_list {
    /// The messages (NULL when `len` is 0).
    pub messages: *const missive_message,
    /// How many.
    pub len: usize,
}

impl Header for missive_message_list {
    type Item = missive_message;
    fn new(messages: *const missive_message, len: usize) -> missive_message_list {
        missive_message_list { messages, len }
    }
}

/// cbindgen:ignore
type MessageList = Owned<missive_message_list, missive_message, Vec<MessageView>>;
owned_handle!(MessageList, "missive_message_list", b"MSVMLIST");

/// Hands `views` of `chat` to C as a message list.
fn give_messages(chat: ChatId, views: Vec<MessageView>) -> *mut missive_message_list {
    let items = views
        .iter()
        .map(|view| missive_message::of(chat, view))
        .collect();
    MessageList::give(items, views)
}

/// Reads part of a chat's history as `user` may see it (a member: expired messages never
/// appear; deleted ones appear with `deleted` set and no content) into a new array written to
/// `*out`, oldest first.
///
/// `which`: `MISSIVE_HISTORY_LATEST` (the newest `limit`), `_BEFORE` / `_AFTER` (up to `limit`
/// before / after seq `anchor`), `_AROUND` (up to `limit` around time `anchor`, ms). `limit`: 1
/// to `MISSIVE_HISTORY_LIMIT_MAX`.
///
/// Errors: `MISSIVE_ERR_NULL_ARGUMENT` (`engine`, `out`), `_INVALID_HANDLE`,
/// `_INVALID_ARGUMENT` (`which`, `limit`), `_NOT_A_MEMBER`, `_NO_SUCH_CHAT` (a group that does
/// not exist), `_CLOSED`, storage errors.
///
/// Ownership: free `*out` with `missive_message_list_free`. Threads: any, concurrently.
///
/// # Safety
/// `engine` must be NULL or a pointer from `missive_engine_open`; `out` NULL or a writable
/// `missive_message_list *`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn missive_history(
    engine: *mut missive_engine,
    user: u64,
    chat: missive_chat_id,
    which: u32,
    anchor: u64,
    limit: usize,
    out: *mut *mut missive_message_list,
) -> missive_result {
    guard("missive_history", || {
        // SAFETY: the caller promises `out` is NULL or writable.
        let out = unsafe { Out::new(out, "out") }?;
        let engine = missive_engine::get(engine)?;
        if !(1..=MISSIVE_HISTORY_LIMIT_MAX).contains(&limit) {
            return Err(Failure::invalid(format!(
                "limit is {limit}; it must be between 1 and {MISSIVE_HISTORY_LIMIT_MAX}"
            )));
        }
        let which = match which {
            MISSIVE_HISTORY_LATEST => History::Latest(limit),
            MISSIVE_HISTORY_BEFORE => History::Before(Seq(anchor), limit),
            MISSIVE_HISTORY_AFTER => History::After(Seq(anchor), limit),
            MISSIVE_HISTORY_AROUND => History::Around(Timestamp(anchor), limit),
            other => {
                return Err(Failure::invalid(format!(
                    "which is {other}; it must be a MISSIVE_HISTORY_* value"
                )));
            }
        };
        let chat = ChatId::from(chat);
        let views = engine.engine.history(UserId(user), chat, which)?;
        out.write(give_messages(chat, views));
        Ok(())
    })
}

/// Reads message `seq` of `chat` as `user` may see it into a new one-message array written to
/// `*out`.
///
/// Errors: as `missive_history`, and `MISSIVE_ERR_NO_SUCH_MESSAGE` (never stored, expired, or
/// removed by retention).
///
/// Ownership: free `*out` with `missive_message_list_free`. Threads: any, concurrently.
///
/// # Safety
/// As `missive_history`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn missive_message_get(
    engine: *mut missive_engine,
    user: u64,
    chat: missive_chat_id,
    seq: u64,
    out: *mut *mut missive_message_list,
) -> missive_result {
    guard("missive_message_get", || {
        // SAFETY: the caller promises `out` is NULL or writable.
        let out = unsafe { Out::new(out, "out") }?;
        let engine = missive_engine::get(engine)?;
        let chat = ChatId::from(chat);
        let view = engine
            .engine
            .message(UserId(user), chat, Seq(seq))?
            .ok_or_else(|| {
                Failure::from(missive::Error::NoSuchMessage {
                    chat,
                    seq: Seq(seq),
                })
            })?;
        out.write(give_messages(chat, vec![view]));
        Ok(())
    })
}

/// Frees an array from `missive_history` or `missive_message_get`, with the bytes its messages
/// point to.
///
/// Errors: `MISSIVE_ERR_NULL_ARGUMENT`, `MISSIVE_ERR_INVALID_HANDLE` (not a live array: a double
/// free is caught and changes nothing). Threads: any, once no thread reads the array.
///
/// # Safety
/// `list` must be NULL or a pointer from `missive_history` / `missive_message_get`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn missive_message_list_free(
    list: *mut missive_message_list,
) -> missive_result {
    guard("missive_message_list_free", || {
        MessageList::free(list, "list")
    })
}
