//! The 128-bit chat id as a C struct.

use missive::log::{ChatId, UserId};

use crate::args::Out;
use crate::result::{guard, missive_result};

/// A chat: a 1:1 conversation or a group. 128 bits, as two halves: the id is `hi << 64 | lo`.
///
/// A 1:1 chat's id is derived from its two users (`missive_chat_direct`); a group's comes from
/// `missive_group_create`. Compare ids by both fields. Any value is a valid id (that names no
/// chat yet).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct missive_chat_id {
    /// The high 64 bits.
    pub hi: u64,
    /// The low 64 bits.
    pub lo: u64,
}

impl From<ChatId> for missive_chat_id {
    fn from(chat: ChatId) -> missive_chat_id {
        let raw = chat.to_u128();
        missive_chat_id {
            hi: (raw >> 64) as u64,
            lo: raw as u64,
        }
    }
}

impl From<missive_chat_id> for ChatId {
    fn from(chat: missive_chat_id) -> ChatId {
        ChatId::from_u128((u128::from(chat.hi) << 64) | u128::from(chat.lo))
    }
}

/// Writes the id of the 1:1 chat between users `a` and `b` to `*out` (the same for `(a, b)` and
/// `(b, a)`; `a == b` is a user's chat with themselves).
///
/// Errors: `MISSIVE_ERR_NULL_ARGUMENT` (`out`). Threads: any, concurrently.
///
/// # Safety
/// `out` must be NULL or point to a writable `missive_chat_id`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn missive_chat_direct(
    a: u64,
    b: u64,
    out: *mut missive_chat_id,
) -> missive_result {
    guard("missive_chat_direct", || {
        // SAFETY: the caller promises `out` is NULL or writable.
        let out = unsafe { Out::new(out, "out") }?;
        out.write(ChatId::direct(UserId(a), UserId(b)).into());
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn halves_round_trip() {
        let group = ChatId::group(42);
        let c: missive_chat_id = group.into();
        assert_eq!(c.hi, u64::MAX);
        assert_eq!(c.lo, 42);
        assert_eq!(ChatId::from(c), group);
        let mut out = missive_chat_id::default();
        // SAFETY: `out` is a writable local.
        let code = unsafe { missive_chat_direct(9, 3, &mut out) };
        assert_eq!(code, missive_result::MISSIVE_OK);
        assert_eq!((out.hi, out.lo), (3, 9));
    }
}
