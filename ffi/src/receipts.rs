//! Receipts (delivered and read watermarks), unread counts and a message's status.

use missive::log::{ChatId, DeviceId, Seq, UserId};
use missive::{ReceiptKind, Status};

use crate::args::Out;
use crate::engine::missive_engine;
use crate::ids::missive_chat_id;
use crate::list::{Header, Owned, owned_handle};
use crate::result::{FfiResult, guard, missive_result};

/// `missive_event.receipt_kind`: the device received the messages.
pub const MISSIVE_RECEIPT_DELIVERED: u32 = 1;
/// `missive_event.receipt_kind`: the user read them.
pub const MISSIVE_RECEIPT_READ: u32 = 2;

/// `missive_recipient.status`: stored, on none of the recipient's devices yet.
pub const MISSIVE_STATUS_SENT: u32 = 1;
/// `missive_recipient.status`: on at least one of the recipient's devices.
pub const MISSIVE_STATUS_DELIVERED: u32 = 2;
/// `missive_recipient.status`: read by the recipient.
pub const MISSIVE_STATUS_READ: u32 = 3;

/// The C value of a receipt kind.
pub(crate) fn receipt_code(kind: ReceiptKind) -> u32 {
    match kind {
        ReceiptKind::Delivered => MISSIVE_RECEIPT_DELIVERED,
        ReceiptKind::Read => MISSIVE_RECEIPT_READ,
    }
}

/// The shared body of the two marks.
///
/// # Safety
/// `out_up_to` NULL or a writable `uint64_t`.
unsafe fn mark(
    engine: *mut missive_engine,
    user: u64,
    device: u32,
    chat: missive_chat_id,
    kind: ReceiptKind,
    up_to: u64,
    out_up_to: *mut u64,
) -> FfiResult {
    // SAFETY: the caller promises `out_up_to` is NULL or writable.
    let out = unsafe { Out::optional(out_up_to) };
    let engine = missive_engine::get(engine)?;
    let now = engine.engine.mark(
        UserId(user),
        DeviceId(device),
        ChatId::from(chat),
        kind,
        Seq(up_to),
    )?;
    if let Some(out) = out {
        out.write(now.0);
    }
    Ok(())
}

/// Marks every message of `chat` up to seq `up_to` (clamped to the chat's newest) as delivered
/// to `device` of `user`, and tells the chat's other members' devices (`MISSIVE_EVENT_RECEIPT`).
/// Watermarks never go back: a lower `up_to` changes nothing and stores nothing. Writes the
/// watermark now in force to `*out_up_to` unless it is NULL.
///
/// Errors: `MISSIVE_ERR_NULL_ARGUMENT` (`engine`), `_INVALID_HANDLE`, `_NOT_A_MEMBER`,
/// `_NO_SUCH_CHAT`, `_CLOSED`, storage errors. Threads: any.
///
/// # Safety
/// `engine` NULL or from `missive_engine_open`; `out_up_to` NULL or a writable `uint64_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn missive_mark_delivered(
    engine: *mut missive_engine,
    user: u64,
    device: u32,
    chat: missive_chat_id,
    up_to: u64,
    out_up_to: *mut u64,
) -> missive_result {
    guard("missive_mark_delivered", || {
        // SAFETY: this function's own contract, passed on.
        unsafe {
            mark(
                engine,
                user,
                device,
                chat,
                ReceiptKind::Delivered,
                up_to,
                out_up_to,
            )
        }
    })
}

/// Marks every message of `chat` up to seq `up_to` as read by `user` (which implies delivered to
/// `device`), like `missive_mark_delivered`. The unread count drops accordingly.
///
/// Errors, threads: as `missive_mark_delivered`.
///
/// # Safety
/// As `missive_mark_delivered`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn missive_mark_read(
    engine: *mut missive_engine,
    user: u64,
    device: u32,
    chat: missive_chat_id,
    up_to: u64,
    out_up_to: *mut u64,
) -> missive_result {
    guard("missive_mark_read", || {
        // SAFETY: this function's own contract, passed on.
        unsafe {
            mark(
                engine,
                user,
                device,
                chat,
                ReceiptKind::Read,
                up_to,
                out_up_to,
            )
        }
    })
}

/// Writes `device` of `user`'s delivered watermark in `chat` (0: nothing yet) to `*out_seq`.
///
/// Errors: `MISSIVE_ERR_NULL_ARGUMENT`, `_INVALID_HANDLE`, `_CLOSED`. Threads: any.
///
/// # Safety
/// `engine` NULL or from `missive_engine_open`; `out_seq` NULL or a writable `uint64_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn missive_delivered_up_to(
    engine: *mut missive_engine,
    user: u64,
    device: u32,
    chat: missive_chat_id,
    out_seq: *mut u64,
) -> missive_result {
    guard("missive_delivered_up_to", || {
        // SAFETY: the caller promises `out_seq` is NULL or writable.
        let out = unsafe { Out::new(out_seq, "out_seq") }?;
        let engine = missive_engine::get(engine)?;
        let seq =
            engine
                .engine
                .delivered_up_to(UserId(user), DeviceId(device), ChatId::from(chat))?;
        out.write(seq.0);
        Ok(())
    })
}

/// Writes `user`'s read watermark in `chat` (0: nothing read) to `*out_seq`.
///
/// Errors: `MISSIVE_ERR_NULL_ARGUMENT`, `_INVALID_HANDLE`, `_CLOSED`. Threads: any.
///
/// # Safety
/// `engine` NULL or from `missive_engine_open`; `out_seq` NULL or a writable `uint64_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn missive_read_up_to(
    engine: *mut missive_engine,
    user: u64,
    chat: missive_chat_id,
    out_seq: *mut u64,
) -> missive_result {
    guard("missive_read_up_to", || {
        // SAFETY: the caller promises `out_seq` is NULL or writable.
        let out = unsafe { Out::new(out_seq, "out_seq") }?;
        let engine = missive_engine::get(engine)?;
        let seq = engine.engine.read_up_to(UserId(user), ChatId::from(chat))?;
        out.write(seq.0);
        Ok(())
    })
}

/// Writes how many messages of `chat` `user` has not read to `*out_count`.
///
/// Errors: `MISSIVE_ERR_NULL_ARGUMENT`, `_INVALID_HANDLE`, `_NOT_A_MEMBER`, `_NO_SUCH_CHAT`,
/// `_CLOSED`. Threads: any.
///
/// # Safety
/// `engine` NULL or from `missive_engine_open`; `out_count` NULL or a writable `uint64_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn missive_unread(
    engine: *mut missive_engine,
    user: u64,
    chat: missive_chat_id,
    out_count: *mut u64,
) -> missive_result {
    guard("missive_unread", || {
        // SAFETY: the caller promises `out_count` is NULL or writable.
        let out = unsafe { Out::new(out_count, "out_count") }?;
        let engine = missive_engine::get(engine)?;
        let unread = engine.engine.unread(UserId(user), ChatId::from(chat))?;
        out.write(unread);
        Ok(())
    })
}

/// How far a message got: "delivered to `delivered` of `recipients`, read by `read`".
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct missive_receipt_counts {
    /// Recipients (the chat's users but the sender).
    pub recipients: u32,
    /// Of them, with the message on a device.
    pub delivered: u32,
    /// Of them, who read it.
    pub read: u32,
}

/// One recipient's state for a message.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct missive_recipient {
    /// The recipient.
    pub user: u64,
    /// `MISSIVE_STATUS_SENT`, `_DELIVERED` or `_READ`.
    pub status: u32,
}

/// An array of recipients, allocated by Missive.
///
/// Ownership: free it with `missive_recipient_list_free` exactly once.
#[repr(C)]
#[derive(Debug)]
pub struct missive_recipient_list {
    /// The recipients (NULL when `len` is 0).
    pub recipients: *const missive_recipient,
    /// How many.
    pub len: usize,
}

impl Header for missive_recipient_list {
    type Item = missive_recipient;
    fn new(recipients: *const missive_recipient, len: usize) -> missive_recipient_list {
        missive_recipient_list { recipients, len }
    }
}

/// cbindgen:ignore
type RecipientList = Owned<missive_recipient_list, missive_recipient, ()>;
owned_handle!(RecipientList, "missive_recipient_list", b"MSVRLIST");

fn status_code(status: Status) -> u32 {
    match status {
        Status::Sent => MISSIVE_STATUS_SENT,
        Status::Delivered => MISSIVE_STATUS_DELIVERED,
        Status::Read => MISSIVE_STATUS_READ,
    }
}

/// Where message `seq` of `chat` got among its recipients, for its sender (or a group admin):
/// writes the counts to `*out_counts` and, unless `out_recipients` is NULL, a new array of each
/// recipient's state to `*out_recipients`.
///
/// Errors: `MISSIVE_ERR_NULL_ARGUMENT` (`engine`, `out_counts`), `_INVALID_HANDLE`,
/// `_NOT_A_MEMBER`, `_NOT_SENDER` (`user` neither sent it nor is a group admin),
/// `_NO_SUCH_MESSAGE`, `_NO_SUCH_CHAT`, `_CLOSED`, storage errors.
///
/// Ownership: free `*out_recipients` with `missive_recipient_list_free`. Threads: any.
///
/// # Safety
/// `engine` NULL or from `missive_engine_open`; `out_counts` NULL or writable; `out_recipients`
/// NULL or a writable `missive_recipient_list *`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn missive_message_status(
    engine: *mut missive_engine,
    user: u64,
    chat: missive_chat_id,
    seq: u64,
    out_counts: *mut missive_receipt_counts,
    out_recipients: *mut *mut missive_recipient_list,
) -> missive_result {
    guard("missive_message_status", || {
        // SAFETY: the caller promises both are NULL or writable.
        let (counts_out, recipients_out) = unsafe {
            (
                Out::new(out_counts, "out_counts")?,
                Out::optional(out_recipients),
            )
        };
        let engine = missive_engine::get(engine)?;
        let status = engine
            .engine
            .status(UserId(user), ChatId::from(chat), Seq(seq))?;
        counts_out.write(missive_receipt_counts {
            recipients: status.counts.recipients,
            delivered: status.counts.delivered,
            read: status.counts.read,
        });
        if let Some(out) = recipients_out {
            let items = status
                .members
                .iter()
                .map(|(user, status)| missive_recipient {
                    user: user.0,
                    status: status_code(*status),
                })
                .collect();
            out.write(RecipientList::give(items, ()));
        }
        Ok(())
    })
}

/// Frees an array from `missive_message_status`.
///
/// Errors: `MISSIVE_ERR_NULL_ARGUMENT`, `_INVALID_HANDLE` (a double free is caught).
///
/// # Safety
/// `list` must be NULL or a pointer from `missive_message_status`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn missive_recipient_list_free(
    list: *mut missive_recipient_list,
) -> missive_result {
    guard("missive_recipient_list_free", || {
        RecipientList::free(list, "list")
    })
}
