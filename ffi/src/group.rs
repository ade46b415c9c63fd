//! Groups: creating them, membership and roles.

use missive::Role;
use missive::log::{ChatId, UserId};

use crate::args::{self, Out};
use crate::config::MISSIVE_GROUP_MEMBERS_MAX;
use crate::engine::missive_engine;
use crate::ids::missive_chat_id;
use crate::list::{Header, Owned, owned_handle};
use crate::result::{Failure, FfiResult, guard, missive_result};

/// `missive_member.role`: may send and read.
pub const MISSIVE_ROLE_MEMBER: u32 = 1;
/// `missive_member.role`: may also add, remove, promote and demote.
pub const MISSIVE_ROLE_ADMIN: u32 = 2;

/// One member of a chat.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct missive_member {
    /// The user.
    pub user: u64,
    /// `MISSIVE_ROLE_MEMBER` or `MISSIVE_ROLE_ADMIN`.
    pub role: u32,
}

/// A chat's members in user-id order, allocated by Missive.
///
/// Ownership: free it with `missive_member_list_free` exactly once.
#[repr(C)]
#[derive(Debug)]
pub struct missive_member_list {
    /// The members (NULL when `len` is 0).
    pub members: *const missive_member,
    /// How many.
    pub len: usize,
}

impl Header for missive_member_list {
    type Item = missive_member;
    fn new(members: *const missive_member, len: usize) -> missive_member_list {
        missive_member_list { members, len }
    }
}

/// cbindgen:ignore
type MemberList = Owned<missive_member_list, missive_member, ()>;
owned_handle!(MemberList, "missive_member_list", b"MSVGLIST");

/// User ids from C: at most `MISSIVE_GROUP_MEMBERS_MAX`, NULL only when there are none.
///
/// # Safety
/// `users` NULL or readable for `len` ids.
unsafe fn user_ids(users: *const u64, len: usize) -> FfiResult<Vec<UserId>> {
    let max = MISSIVE_GROUP_MEMBERS_MAX as usize;
    // SAFETY: the caller's promise; the length is checked before anything is read.
    let ids = unsafe {
        args::array(users, len, max, "users", || {
            Failure::invalid(format!("{len} user ids; one call takes at most {max}"))
        })
    }?;
    Ok(ids.iter().map(|id| UserId(*id)).collect())
}

/// Creates a group with `creator` (its admin) and the `members_len` users at `members` (the
/// creator and repeats are skipped; NULL when `members_len` is 0), and writes its chat id to
/// `*out`. Every group change is stored and shows in the group's history as a
/// `MISSIVE_CONTENT_SYSTEM` message, and reaches connected members as `MISSIVE_EVENT_GROUP`.
///
/// Errors: `MISSIVE_ERR_NULL_ARGUMENT` (`engine`, `out`, `members` with a nonzero length),
/// `_INVALID_HANDLE`, `_INVALID_ARGUMENT` (more than `MISSIVE_GROUP_MEMBERS_MAX` ids),
/// `_GROUP_FULL` (more than `group_members_max` members), `_CLOSED`, storage errors.
///
/// Ownership: `members` is only read. Threads: any.
///
/// # Safety
/// `engine` NULL or from `missive_engine_open`; `members` NULL or `members_len` readable ids;
/// `out` NULL or a writable `missive_chat_id`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn missive_group_create(
    engine: *mut missive_engine,
    creator: u64,
    members: *const u64,
    members_len: usize,
    out: *mut missive_chat_id,
) -> missive_result {
    guard("missive_group_create", || {
        // SAFETY: the caller promises `out` is NULL or writable.
        let out = unsafe { Out::new(out, "out") }?;
        let engine = missive_engine::get(engine)?;
        // SAFETY: the caller promises `members` is NULL or readable for `members_len` ids.
        let members = unsafe { user_ids(members, members_len) }?;
        let chat = engine.engine.create_group(UserId(creator), &members)?;
        out.write(chat.into());
        Ok(())
    })
}

/// Adds the `users_len` users at `users` to the group `chat` (admins only); those already in it
/// are skipped. They receive the group's messages from now on, not earlier ones.
///
/// Errors: `MISSIVE_ERR_NULL_ARGUMENT` (`engine`, `users` with a nonzero length),
/// `_INVALID_HANDLE`, `_INVALID_ARGUMENT` (too many ids, `chat` is a 1:1 chat), `_NOT_A_MEMBER`,
/// `_NOT_ADMIN`, `_NO_SUCH_CHAT`, `_GROUP_FULL`, `_CLOSED`, storage errors. Threads: any.
///
/// # Safety
/// `engine` NULL or from `missive_engine_open`; `users` NULL or `users_len` readable ids.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn missive_group_add(
    engine: *mut missive_engine,
    by: u64,
    chat: missive_chat_id,
    users: *const u64,
    users_len: usize,
) -> missive_result {
    guard("missive_group_add", || {
        let engine = missive_engine::get(engine)?;
        // SAFETY: the caller promises `users` is NULL or readable for `users_len` ids.
        let users = unsafe { user_ids(users, users_len) }?;
        engine
            .engine
            .add_members(UserId(by), ChatId::from(chat), &users)?;
        Ok(())
    })
}

/// Removes `user` from the group `chat`: an admin may remove anyone, anyone may remove
/// themselves. When the last admin goes, the member with the lowest id becomes admin. The
/// removed user's devices get the `MISSIVE_EVENT_GROUP` too.
///
/// Errors: `MISSIVE_ERR_NULL_ARGUMENT`, `_INVALID_HANDLE`, `_INVALID_ARGUMENT` (a 1:1 chat),
/// `_NOT_A_MEMBER` (`by` or `user`), `_NOT_ADMIN`, `_NO_SUCH_CHAT`, `_CLOSED`, storage errors.
/// Threads: any.
///
/// # Safety
/// `engine` must be NULL or a pointer from `missive_engine_open`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn missive_group_remove(
    engine: *mut missive_engine,
    by: u64,
    chat: missive_chat_id,
    user: u64,
) -> missive_result {
    guard("missive_group_remove", || {
        let engine = missive_engine::get(engine)?;
        engine
            .engine
            .remove_member(UserId(by), ChatId::from(chat), UserId(user))?;
        Ok(())
    })
}

/// `user` leaves the group `chat` (`missive_group_remove` of themselves).
///
/// Errors, threads: as `missive_group_remove`.
///
/// # Safety
/// `engine` must be NULL or a pointer from `missive_engine_open`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn missive_group_leave(
    engine: *mut missive_engine,
    user: u64,
    chat: missive_chat_id,
) -> missive_result {
    guard("missive_group_leave", || {
        let engine = missive_engine::get(engine)?;
        engine.engine.leave(UserId(user), ChatId::from(chat))?;
        Ok(())
    })
}

/// Makes member `user` of the group `chat` an admin (admins only).
///
/// Errors: `MISSIVE_ERR_NULL_ARGUMENT`, `_INVALID_HANDLE`, `_INVALID_ARGUMENT` (a 1:1 chat),
/// `_NOT_A_MEMBER`, `_NOT_ADMIN`, `_NO_SUCH_CHAT`, `_CLOSED`, storage errors. Threads: any.
///
/// # Safety
/// `engine` must be NULL or a pointer from `missive_engine_open`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn missive_group_promote(
    engine: *mut missive_engine,
    by: u64,
    chat: missive_chat_id,
    user: u64,
) -> missive_result {
    guard("missive_group_promote", || {
        let engine = missive_engine::get(engine)?;
        engine
            .engine
            .promote(UserId(by), ChatId::from(chat), UserId(user))?;
        Ok(())
    })
}

/// Makes admin `user` of the group `chat` a plain member (admins only).
///
/// Errors, threads: as `missive_group_promote`.
///
/// # Safety
/// `engine` must be NULL or a pointer from `missive_engine_open`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn missive_group_demote(
    engine: *mut missive_engine,
    by: u64,
    chat: missive_chat_id,
    user: u64,
) -> missive_result {
    guard("missive_group_demote", || {
        let engine = missive_engine::get(engine)?;
        engine
            .engine
            .demote(UserId(by), ChatId::from(chat), UserId(user))?;
        Ok(())
    })
}

/// Writes a new array of the members of `chat` and their roles (for a 1:1 chat, its two users)
/// to `*out`, for a member.
///
/// Errors: `MISSIVE_ERR_NULL_ARGUMENT`, `_INVALID_HANDLE`, `_NOT_A_MEMBER`, `_NO_SUCH_CHAT`,
/// `_CLOSED`.
///
/// Ownership: free `*out` with `missive_member_list_free`. Threads: any.
///
/// # Safety
/// `engine` NULL or from `missive_engine_open`; `out` NULL or a writable `missive_member_list *`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn missive_group_members(
    engine: *mut missive_engine,
    user: u64,
    chat: missive_chat_id,
    out: *mut *mut missive_member_list,
) -> missive_result {
    guard("missive_group_members", || {
        // SAFETY: the caller promises `out` is NULL or writable.
        let out = unsafe { Out::new(out, "out") }?;
        let engine = missive_engine::get(engine)?;
        let members = engine.engine.members(UserId(user), ChatId::from(chat))?;
        let items = members
            .into_iter()
            .map(|(user, role)| missive_member {
                user: user.0,
                role: match role {
                    Role::Member => MISSIVE_ROLE_MEMBER,
                    Role::Admin => MISSIVE_ROLE_ADMIN,
                },
            })
            .collect();
        out.write(MemberList::give(items, ()));
        Ok(())
    })
}

/// Frees an array from `missive_group_members`.
///
/// Errors: `MISSIVE_ERR_NULL_ARGUMENT`, `_INVALID_HANDLE` (a double free is caught).
///
/// # Safety
/// `list` must be NULL or a pointer from `missive_group_members`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn missive_member_list_free(
    list: *mut missive_member_list,
) -> missive_result {
    guard("missive_member_list_free", || {
        MemberList::free(list, "list")
    })
}
