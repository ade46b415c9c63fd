//! The index's error type.

use std::path::PathBuf;

/// Everything that can go wrong in the index.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The log failed.
    #[error(transparent)]
    Log(#[from] missive_log::Error),
    /// A record payload in the log does not decode as its kind says. The log verified its
    /// checksum, so this is a writer bug or a record from a newer version.
    #[error("record at shard {shard} lsn {lsn} does not decode: {reason}")]
    BadRecord {
        /// The shard.
        shard: u32,
        /// The record's LSN.
        lsn: u64,
        /// What was wrong.
        reason: &'static str,
    },
    /// A message record's sequence number does not follow its chat's head.
    #[error("chat {chat:032x}: message seq {seq} after head {head}")]
    SeqOutOfOrder {
        /// The chat.
        chat: u128,
        /// The record's sequence number.
        seq: u64,
        /// The chat's head before it.
        head: u64,
    },
    /// A checkpoint file failed verification; the index rebuilds from the log instead.
    #[error("checkpoint {file:?} rejected: {reason}")]
    BadCheckpoint {
        /// The file.
        file: PathBuf,
        /// Why.
        reason: &'static str,
    },
    /// Writing or reading a checkpoint failed.
    #[error("{op} {path:?}: {source}")]
    Io {
        /// What the index was doing.
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
}

/// `Result` with the index's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
