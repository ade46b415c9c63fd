//! The log's one error type.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

/// Why a batch on disk was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CorruptKind {
    /// The bytes end inside a batch header or body.
    Truncated,
    /// The header does not start with the batch magic.
    BadMagic,
    /// The header names a format version this build cannot read.
    UnsupportedVersion,
    /// The checksum over header and body does not match.
    BadChecksum,
    /// The header is internally inconsistent (codec, lengths, counts, timestamps).
    BadHeader,
    /// The batch is intact but belongs elsewhere: another shard, segment or LSN.
    Misplaced,
    /// The body does not decode into the records the header announces.
    BadRecords,
    /// A file the log keeps (its metadata file, a segment name) is malformed.
    BadFile,
}

/// Everything that can go wrong in the log.
///
/// The error is `Clone` because one failed group commit is reported to every appender in the
/// batch; I/O errors are therefore shared behind an `Arc`.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A record's payload exceeds [`RECORD_PAYLOAD_BYTES_MAX`](crate::RECORD_PAYLOAD_BYTES_MAX).
    #[error("record payload of {bytes} bytes exceeds the maximum of {bytes_max}")]
    RecordTooLarge {
        /// The payload's size.
        bytes: usize,
        /// The limit.
        bytes_max: usize,
    },
    /// A configuration value is out of range.
    #[error("invalid configuration: {reason}")]
    InvalidConfig {
        /// Which value and why.
        reason: &'static str,
    },
    /// The log directory was created with a different, incompatible configuration.
    #[error("the log was created with {field} = {stored}, but {requested} was requested")]
    ConfigMismatch {
        /// The setting.
        field: &'static str,
        /// The value stored in the log.
        stored: u64,
        /// The value asked for.
        requested: u64,
    },
    /// The log was written by a newer or unknown format version.
    #[error("{file:?} has format version {found}; this build reads version {supported}")]
    UnsupportedVersion {
        /// The file.
        file: PathBuf,
        /// The version found.
        found: u16,
        /// The version this build reads and writes.
        supported: u16,
    },
    /// Another process (or another `Log` in this one) holds the directory.
    #[error("the log directory {dir:?} is locked by another process")]
    Locked {
        /// The directory.
        dir: PathBuf,
    },
    /// A shard number is not below the shard count.
    #[error("shard {shard} does not exist (the log has {shard_count})")]
    NoSuchShard {
        /// The shard asked for.
        shard: u32,
        /// How many shards the log has.
        shard_count: u32,
    },
    /// A read names data the log no longer or never held (a segment removed by retention, an
    /// offset that is not a batch).
    #[error("shard {shard} has no batch at segment {segment}, offset {offset}")]
    NotFound {
        /// The shard.
        shard: u32,
        /// The segment (its first LSN).
        segment: u64,
        /// The offset in the segment.
        offset: u64,
    },
    /// Data on disk failed verification. Nothing was trimmed: only a torn tail of the newest
    /// segment is repaired silently; any other bad batch is reported here.
    #[error("corrupt data in {file:?} at offset {offset}: {kind:?}")]
    Corrupt {
        /// The file.
        file: PathBuf,
        /// The byte offset of the bad batch (or field) in the file.
        offset: u64,
        /// What was wrong.
        kind: CorruptKind,
    },
    /// The device is full. Nothing already written was damaged; appends succeed again once space
    /// is freed (for example by `retain`).
    #[error("no space left on the device while writing shard {shard}")]
    StorageFull {
        /// The shard whose write failed.
        shard: u32,
    },
    /// An fsync failed. The shard is poisoned: the kernel may have dropped the dirty pages, so a
    /// retried fsync could report success for data that is gone.
    #[error("fsync failed on shard {shard}; the shard is poisoned until the log is reopened")]
    SyncFailed {
        /// The shard.
        shard: u32,
        /// The operating system's error.
        #[source]
        source: Arc<io::Error>,
    },
    /// An earlier write or fsync failure poisoned the shard; reopen the log to recover.
    #[error("shard {shard} is poisoned by an earlier I/O failure; reopen the log to recover")]
    Poisoned {
        /// The shard.
        shard: u32,
    },
    /// The log is closed (or closing).
    #[error("the log is closed")]
    Closed,
    /// Any other I/O failure, with the operation and the path it concerned.
    #[error("{op} {path:?}: {source}")]
    Io {
        /// What the log was doing.
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: Arc<io::Error>,
    },
}

impl Error {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Error {
        Error::Io {
            op,
            path: path.into(),
            source: Arc::new(source),
        }
    }
}

/// `Result` with the log's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Whether an I/O error means the device is out of space.
pub(crate) fn is_storage_full(error: &io::Error) -> bool {
    error.kind() == io::ErrorKind::StorageFull || error.kind() == io::ErrorKind::QuotaExceeded
}
