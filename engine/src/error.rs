//! The engine's one error type. A call that fails changed nothing.

use missive_log::{ChatId, Seq, UserId};

/// Everything an engine call can refuse or fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The user is not in the chat (not one of a 1:1 chat's two users, not a group member).
    #[error("user {user:?} is not a member of chat {chat:?}")]
    NotAMember {
        /// The user.
        user: UserId,
        /// The chat.
        chat: ChatId,
    },
    /// Only a group's admins may do this.
    #[error("user {user:?} is not an admin of group {chat:?}")]
    NotAdmin {
        /// The user.
        user: UserId,
        /// The group.
        chat: ChatId,
    },
    /// Only the message's sender may do this.
    #[error("user {user:?} did not send message {seq:?} of chat {chat:?}")]
    NotSender {
        /// The user.
        user: UserId,
        /// The chat.
        chat: ChatId,
        /// The message.
        seq: Seq,
    },
    /// The group would have more members than the cap.
    #[error("group {chat:?} would have {members} members; the cap is {cap}")]
    GroupFull {
        /// The group.
        chat: ChatId,
        /// Members it would have.
        members: usize,
        /// The cap.
        cap: usize,
    },
    /// No such chat (or group).
    #[error("no chat {chat:?}")]
    NoSuchChat {
        /// The chat.
        chat: ChatId,
    },
    /// No such message: never stored, expired, deleted by retention.
    #[error("no message {seq:?} in chat {chat:?}")]
    NoSuchMessage {
        /// The chat.
        chat: ChatId,
        /// The message.
        seq: Seq,
    },
    /// A body or media reference is larger than the configured limit.
    #[error("{what} is {len} bytes; the limit is {max}")]
    PayloadTooLarge {
        /// Which field.
        what: &'static str,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// An argument is invalid (the message says which and why).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The engine was closed.
    #[error("the engine is closed")]
    Closed,
    /// A failed write or fsync poisoned a shard: nothing more is acknowledged until the engine
    /// is reopened (and has recovered).
    #[error("storage poisoned: {0}")]
    Poisoned(#[source] missive_log::Error),
    /// The disk is full; nothing already acknowledged was damaged.
    #[error("storage full: {0}")]
    StorageFull(#[source] missive_log::Error),
    /// Stored data failed its checksum or structure checks.
    #[error("corrupt data: {0}")]
    Corrupt(#[source] missive_log::Error),
    /// Another storage error.
    #[error("storage: {0}")]
    Storage(#[source] missive_log::Error),
    /// The index failed (its files, or a record it could not apply).
    #[error("index: {0}")]
    Index(#[source] missive_index::Error),
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<missive_log::Error> for Error {
    fn from(error: missive_log::Error) -> Error {
        use missive_log::Error as Log;
        match error {
            Log::Poisoned { .. } | Log::SyncFailed { .. } => Error::Poisoned(error),
            Log::StorageFull { .. } => Error::StorageFull(error),
            Log::Corrupt { .. } => Error::Corrupt(error),
            Log::Closed => Error::Closed,
            Log::InvalidConfig { .. } => Error::InvalidArgument(error.to_string()),
            other => Error::Storage(other),
        }
    }
}

impl From<missive_index::Error> for Error {
    fn from(error: missive_index::Error) -> Error {
        match error {
            missive_index::Error::Log(log) => Error::from(log),
            other => Error::Index(other),
        }
    }
}
