//! Sending, deleting, the disappearing-messages setting and typing.

use bytes::Bytes;
use missive::log::{ChatId, DeviceId, Seq, UserId};
use missive::{Outgoing, To};

use crate::args::{self, Out};
use crate::engine::missive_engine;
use crate::ids::missive_chat_id;
use crate::message::{MISSIVE_CONTENT_TEXT, content_kind};
use crate::result::{Failure, FfiResult, guard, missive_result};

/// `missive_send_options.ttl_ms`: the message follows the chat's disappearing-messages setting.
pub const MISSIVE_TTL_CHAT: u64 = u64::MAX;

/// The bytes in a `client_msg_id`.
pub const MISSIVE_CLIENT_MSG_ID_BYTES: usize = 16;

/// What a message is besides its body. Start from `missive_send_options_default`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct missive_send_options {
    /// `MISSIVE_CONTENT_TEXT` (default), `_IMAGE`, `_VIDEO`, `_DOCUMENT` or `_VOICE`.
    pub kind: u32,
    /// A media reference, opaque to Missive (NULL when `media_len` is 0). Copied: the caller
    /// keeps ownership.
    pub media: *const u8,
    /// Bytes at `media`, at most the engine's `media_ref_bytes_max`.
    pub media_len: usize,
    /// The seq of an earlier message of the chat it answers (0, default: none).
    pub reply_to: u64,
    /// It disappears this long after it is stored; 0: kept whatever the chat's setting;
    /// `MISSIVE_TTL_CHAT` (default): the chat's setting.
    pub ttl_ms: u64,
}

impl Default for missive_send_options {
    fn default() -> missive_send_options {
        missive_send_options {
            kind: MISSIVE_CONTENT_TEXT,
            media: std::ptr::null(),
            media_len: 0,
            reply_to: 0,
            ttl_ms: MISSIVE_TTL_CHAT,
        }
    }
}

/// What a send stored.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct missive_sent {
    /// The chat.
    pub chat: missive_chat_id,
    /// The message's seq in it.
    pub seq: u64,
    /// Server time it was stored, ms since the Unix epoch.
    pub timestamp_ms: u64,
    /// A retry: this is what the first send with the same `client_msg_id` stored, and nothing
    /// new was stored.
    pub duplicate: bool,
}

/// Writes the default send options to `*out`.
///
/// Errors: `MISSIVE_ERR_NULL_ARGUMENT`. Threads: any.
///
/// # Safety
/// `out` must be NULL or a writable `missive_send_options`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn missive_send_options_default(
    out: *mut missive_send_options,
) -> missive_result {
    guard("missive_send_options_default", || {
        // SAFETY: the caller promises `out` is NULL or writable.
        let out = unsafe { Out::new(out, "out") }?;
        out.write(missive_send_options::default());
        Ok(())
    })
}

fn too_large(what: &str, len: usize, max: usize) -> Failure {
    Failure::new(
        missive_result::MISSIVE_ERR_PAYLOAD_TOO_LARGE,
        format!("{what} is {len} bytes; the limit is {max}"),
    )
}

/// The shared body of the two sends: checks everything, then sends.
///
/// # Safety
/// The pointer contracts of `missive_send`.
#[allow(clippy::too_many_arguments)]
unsafe fn send(
    engine: *mut missive_engine,
    sender: u64,
    device: u32,
    to: To,
    client_msg_id: *const u8,
    body: *const u8,
    body_len: usize,
    options: *const missive_send_options,
    out: *mut missive_sent,
) -> FfiResult {
    // SAFETY: the caller promises `out` is NULL or writable.
    let out = unsafe { Out::new(out, "out") }?;
    let engine = missive_engine::get(engine)?;
    // SAFETY: the caller promises `client_msg_id` is NULL or 16 readable bytes.
    let client_msg_id = unsafe { args::client_msg_id(client_msg_id) }?;
    let options = if options.is_null() {
        missive_send_options::default()
    } else {
        // SAFETY: non-NULL and readable (the caller's promise); integers and a pointer, so any
        // bytes are a valid value.
        unsafe { options.read() }
    };
    let kind = content_kind(options.kind)?;
    let (body_max, media_max) = engine.limits();
    // SAFETY: the caller promises `body` is readable for `body_len` bytes when non-NULL; the
    // length is checked against the engine's limit before anything is read.
    let body = unsafe {
        args::array(body, body_len, body_max, "body", || {
            too_large("body", body_len, body_max)
        })
    }?;
    // SAFETY: as for `body`, the options' promise for `media`.
    let media = unsafe {
        args::array(
            options.media,
            options.media_len,
            media_max,
            "options.media",
            || too_large("media reference", options.media_len, media_max),
        )
    }?;
    let message = Outgoing {
        to,
        client_msg_id,
        kind,
        body: Bytes::copy_from_slice(body),
        media: Bytes::copy_from_slice(media),
        reply_to: (options.reply_to != 0).then_some(Seq(options.reply_to)),
        ttl_ms: (options.ttl_ms != MISSIVE_TTL_CHAT).then_some(options.ttl_ms),
    };
    let sent = engine
        .engine
        .send(UserId(sender), DeviceId(device), message)?;
    out.write(missive_sent {
        chat: sent.chat.into(),
        seq: sent.seq.0,
        timestamp_ms: sent.timestamp.0,
        duplicate: sent.duplicate,
    });
    Ok(())
}

/// Stores a message from `device` of `sender` in `chat` (a group, or a 1:1 chat by id) and
/// writes what was stored to `*out`. Returns once the engine's durability holds (with
/// `MISSIVE_DURABILITY_ALWAYS`: on disk, fsynced). Connected devices of the chat's other members
/// receive it live; the others find it in their backlog when they subscribe.
///
/// `client_msg_id`: 16 bytes the sender picks per message; a retry with the same id in the same
/// chat within `dedup_window_ms` stores nothing and returns the original (`duplicate` set).
/// `body`: `body_len` opaque bytes (NULL if 0), at most the engine's `body_bytes_max`, copied.
/// `options`: NULL for the defaults (text, no media, no reply, the chat's TTL).
///
/// Errors: `MISSIVE_ERR_NULL_ARGUMENT` (`engine`, `client_msg_id`, `out`, `body` with a nonzero
/// length, `options->media` with a nonzero length), `_INVALID_HANDLE`,
/// `_PAYLOAD_TOO_LARGE` (checked before the bytes are read, so a huge length is safe),
/// `_INVALID_ARGUMENT` (kind, a `reply_to` that is not an earlier message, `device` UINT32_MAX
/// which is reserved), `_NOT_A_MEMBER`, `_NO_SUCH_CHAT`, `_CLOSED`, `_POISONED`,
/// `_STORAGE_FULL`, storage errors. On any error nothing was stored.
///
/// Ownership: nothing is kept; the caller's buffers may be reused when it returns. Threads: any,
/// concurrently (concurrent sends share fsyncs).
///
/// # Safety
/// `engine` NULL or from `missive_engine_open`; `client_msg_id` NULL or 16 readable bytes; `body`
/// NULL or `body_len` readable bytes; `options` NULL or a readable `missive_send_options` whose
/// `media` is NULL or `media_len` readable bytes; `out` NULL or a writable `missive_sent`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn missive_send(
    engine: *mut missive_engine,
    sender: u64,
    device: u32,
    chat: missive_chat_id,
    client_msg_id: *const u8,
    body: *const u8,
    body_len: usize,
    options: *const missive_send_options,
    out: *mut missive_sent,
) -> missive_result {
    guard("missive_send", || {
        let to = To::Chat(ChatId::from(chat));
        // SAFETY: this function's own contract, passed on.
        unsafe {
            send(
                engine,
                sender,
                device,
                to,
                client_msg_id,
                body,
                body_len,
                options,
                out,
            )
        }
    })
}

/// `missive_send` to the 1:1 chat between `sender` and user `to` (its id is derived from the two
/// users; no setup needed).
///
/// Errors, ownership, threads: as `missive_send`.
///
/// # Safety
/// As `missive_send`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn missive_send_direct(
    engine: *mut missive_engine,
    sender: u64,
    device: u32,
    to: u64,
    client_msg_id: *const u8,
    body: *const u8,
    body_len: usize,
    options: *const missive_send_options,
    out: *mut missive_sent,
) -> missive_result {
    guard("missive_send_direct", || {
        // SAFETY: this function's own contract, passed on.
        unsafe {
            send(
                engine,
                sender,
                device,
                To::User(UserId(to)),
                client_msg_id,
                body,
                body_len,
                options,
                out,
            )
        }
    })
}

/// Deletes message `seq` of `chat` for everyone: only its sender may. Its content is gone from
/// every read from now on; subscribers get a `MISSIVE_EVENT_DELETED`. Deleting it again changes
/// nothing.
///
/// Errors: `MISSIVE_ERR_NULL_ARGUMENT`, `_INVALID_HANDLE`, `_NOT_A_MEMBER`, `_NOT_SENDER`,
/// `_NO_SUCH_MESSAGE`, `_NO_SUCH_CHAT`, `_CLOSED`, storage errors. Threads: any.
///
/// # Safety
/// `engine` must be NULL or a pointer from `missive_engine_open`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn missive_delete(
    engine: *mut missive_engine,
    user: u64,
    chat: missive_chat_id,
    seq: u64,
) -> missive_result {
    guard("missive_delete", || {
        let engine = missive_engine::get(engine)?;
        engine
            .engine
            .delete(UserId(user), ChatId::from(chat), Seq(seq))?;
        Ok(())
    })
}

/// Sets the chat's disappearing-messages timer (0: off): messages sent afterwards without their
/// own TTL disappear `ttl_ms` after they are stored. Any member may.
///
/// Errors: `MISSIVE_ERR_NULL_ARGUMENT`, `_INVALID_HANDLE`, `_NOT_A_MEMBER`, `_NO_SUCH_CHAT`,
/// `_CLOSED`, storage errors. Threads: any.
///
/// # Safety
/// `engine` must be NULL or a pointer from `missive_engine_open`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn missive_set_chat_ttl(
    engine: *mut missive_engine,
    user: u64,
    chat: missive_chat_id,
    ttl_ms: u64,
) -> missive_result {
    guard("missive_set_chat_ttl", || {
        let engine = missive_engine::get(engine)?;
        engine
            .engine
            .set_chat_ttl(UserId(user), ChatId::from(chat), ttl_ms)?;
        Ok(())
    })
}

/// Shows `user` typing (or not) in `chat` to the connected devices of its other members
/// (`MISSIVE_EVENT_TYPING`). Not stored.
///
/// Errors: `MISSIVE_ERR_NULL_ARGUMENT`, `_INVALID_HANDLE`, `_NOT_A_MEMBER`, `_NO_SUCH_CHAT`,
/// `_CLOSED`. Threads: any.
///
/// # Safety
/// `engine` must be NULL or a pointer from `missive_engine_open`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn missive_typing(
    engine: *mut missive_engine,
    user: u64,
    device: u32,
    chat: missive_chat_id,
    typing: bool,
) -> missive_result {
    guard("missive_typing", || {
        let engine = missive_engine::get(engine)?;
        engine
            .engine
            .typing(UserId(user), DeviceId(device), ChatId::from(chat), typing)?;
        Ok(())
    })
}
