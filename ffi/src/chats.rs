//! A user's chat list.

use missive::MessageView;
use missive::log::UserId;

use crate::args::Out;
use crate::engine::missive_engine;
use crate::ids::missive_chat_id;
use crate::list::{Header, Owned, owned_handle};
use crate::message::missive_message;
use crate::result::{guard, missive_result};

/// One chat of a chat list.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct missive_chat_summary {
    /// The chat.
    pub chat: missive_chat_id,
    /// Messages the user has not read.
    pub unread: u64,
    /// The chat's newest seq.
    pub head: u64,
    /// Whether `last` holds its newest visible message.
    pub has_last: bool,
    /// Its newest visible message (all zero when `has_last` is false); its pointers are owned by
    /// the list.
    pub last: missive_message,
}

/// A user's chats, most recent first, allocated by Missive.
///
/// Ownership: free it with `missive_chat_list_free` exactly once; every pointer inside is valid
/// until then.
#[repr(C)]
#[derive(Debug)]
pub struct missive_chat_list {
    /// The chats (NULL when `len` is 0).
    pub chats: *const missive_chat_summary,
    /// How many.
    pub len: usize,
}

impl Header for missive_chat_list {
    type Item = missive_chat_summary;
    fn new(chats: *const missive_chat_summary, len: usize) -> missive_chat_list {
        missive_chat_list { chats, len }
    }
}

/// cbindgen:ignore
type ChatList = Owned<missive_chat_list, missive_chat_summary, Vec<MessageView>>;
owned_handle!(ChatList, "missive_chat_list", b"MSVCLIST");

/// Writes a new array of `user`'s chats (1:1 chats with a message, groups they are in), most
/// recent first, each with its newest visible message and unread count, to `*out`.
///
/// Errors: `MISSIVE_ERR_NULL_ARGUMENT`, `_INVALID_HANDLE`, `_CLOSED`, storage errors.
///
/// Ownership: free `*out` with `missive_chat_list_free`. Threads: any.
///
/// # Safety
/// `engine` NULL or from `missive_engine_open`; `out` NULL or a writable `missive_chat_list *`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn missive_chats(
    engine: *mut missive_engine,
    user: u64,
    out: *mut *mut missive_chat_list,
) -> missive_result {
    guard("missive_chats", || {
        // SAFETY: the caller promises `out` is NULL or writable.
        let out = unsafe { Out::new(out, "out") }?;
        let engine = missive_engine::get(engine)?;
        let summaries = engine.engine.chats(UserId(user))?;
        let mut lasts = Vec::with_capacity(summaries.len());
        let mut items = Vec::with_capacity(summaries.len());
        for summary in summaries {
            let last = summary
                .last
                .as_ref()
                .map(|view| missive_message::of(summary.chat, view));
            items.push(missive_chat_summary {
                chat: summary.chat.into(),
                unread: summary.unread,
                head: summary.head.0,
                has_last: last.is_some(),
                last: last.unwrap_or_default(),
            });
            // The items point into the views' bytes, which moving the view does not move.
            lasts.extend(summary.last);
        }
        out.write(ChatList::give(items, lasts));
        Ok(())
    })
}

/// Frees an array from `missive_chats`.
///
/// Errors: `MISSIVE_ERR_NULL_ARGUMENT`, `_INVALID_HANDLE` (a double free is caught).
///
/// # Safety
/// `list` must be NULL or a pointer from `missive_chats`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn missive_chat_list_free(list: *mut missive_chat_list) -> missive_result {
    guard("missive_chat_list_free", || ChatList::free(list, "list"))
}
