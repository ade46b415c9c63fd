//! `missive-log`: the storage core of Missive.
//!
//! A durable, checksummed, time-partitioned, append-only log keyed by chat. Everything that
//! changes state in Missive (a message, a delete-for-everyone tombstone, a receipt watermark, a
//! group change, an expiry) is a [`Record`] appended here; every index above is a cache of it.
//!
//! - **Shards.** Chats map to shards by a fixed mix of their [`ChatId`]. Each shard is a folder
//!   with one writer thread, so records of one chat are totally ordered by their [`Lsn`].
//! - **Segments.** A shard is a sequence of segment files, each covering one time window (1 hour
//!   by default) and at most a size (256 MiB by default). The file name carries the first LSN and
//!   the window, so [`Log::retain`] deletes whole files by name and recovery needs no catalogue.
//! - **Batches.** Appenders hand records to the writer, which writes them as one batch with a
//!   checksummed, versioned header ([`batch`]), lz4-compressed when that pays, then applies the
//!   [`Durability`] level and acknowledges everyone in the batch at once (group commit).
//! - **Reads.** Sealed segments are read through read-only memory maps, the active one through
//!   positioned reads; every batch is verified before its records are returned. An index that
//!   remembers a [`RecordPos`] reads from that record on with [`Log::read_entries`], touching
//!   only the bytes it needs once the batch is known good; [`Log::read_records`] and
//!   [`Log::read_each`] lend the records in place instead (one or many places per call), and
//!   [`Log::prefetch`] starts loading many places' bytes at once.
//! - **Crashes.** Opening the log verifies the newest segment of each shard and cuts a torn tail;
//!   any other bad batch is an [`Error::Corrupt`] naming the file and offset. A failed fsync
//!   poisons the shard; a full disk is [`Error::StorageFull`] and damages nothing written.
//! - **Storage.** All I/O goes through the [`Storage`] trait: [`FsStorage`] for real files,
//!   [`SimStorage`] for tests that cut the power or fail any write or fsync.
//!
//! ```
//! use bytes::Bytes;
//! use missive_log::{ChatId, Durability, Log, LogConfig, Lsn, Record, RecordKind, Timestamp, UserId};
//!
//! let dir = tempfile::tempdir()?;
//! let config = LogConfig { shard_count: Some(2), durability: Durability::Always, ..LogConfig::default() };
//! let log = Log::open(dir.path(), config.clone())?;
//! let chat = ChatId::direct(UserId(1), UserId(2));
//! let ticket = log.append(Record {
//!     kind: RecordKind::Message,
//!     chat,
//!     timestamp: Timestamp(1_700_000_000_000),
//!     payload: Bytes::from_static(b"hello"),
//! })?;
//! let appended = ticket.wait()?; // on disk: fsynced
//! assert_eq!(appended.lsn, Lsn(1));
//! log.close()?;
//!
//! let log = Log::open(dir.path(), config)?;
//! let entry = log.read_from(log.shard_of(chat), Lsn(1))?.next().unwrap()?;
//! assert_eq!(entry.record.payload, Bytes::from_static(b"hello"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]

pub mod batch;
mod error;
mod ids;
mod limits;
mod log;
mod record;
mod segment;
mod shard;
pub mod storage;
mod sync;
mod ticket;

pub use batch::{DecodedBatch, Entries, FORMAT_VERSION, RecordRef, Records};
pub use error::{CorruptKind, Error, Result};
pub use ids::{ChatId, DeviceId, Lsn, Seq, ShardId, Timestamp, UserId};
pub use limits::*;
pub use log::{
    BatchReader, Durability, Log, LogConfig, LogStats, RecoveryReport, RetainReport, Scrub,
    ShardReader, VerifyReport,
};
pub use record::{Entry, RECORD_HEADER_LEN, Record, RecordKind};
pub use segment::SegmentInfo;
pub use storage::{FsStorage, SimStorage, Storage, StorageFile};
#[cfg(loom)]
#[doc(hidden)]
pub use ticket::loom_hooks;
pub use ticket::{AppendTicket, Appended, BatchPos, RecordPos};
