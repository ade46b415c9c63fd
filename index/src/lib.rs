//! `missive-index`: the indexes that make Missive's reads fast.
//!
//! Every structure here is a cache of [`missive_log`]: it is built by applying log records in LSN
//! order, checkpointed with the log position it reflects, and can always be rebuilt from the log.
//!
//! - **Record payloads** ([`codec`]): the byte layouts of messages, receipt watermarks,
//!   delete-for-everyone tombstones, group changes and expiry settings.
//! - **Chat index**: per chat, the head [`Seq`](missive_log::Seq) and the runs of consecutive
//!   messages per batch with their [`BatchPos`](missive_log::BatchPos) and first timestamp. "The
//!   latest 50", "50 before seq N", "the message at N", "around time T" each read a handful of
//!   batches, never the chat.
//! - **Inbox and receipts**: per (user, device, chat) the delivered watermark and per (user, chat)
//!   the read watermark. A group message is stored once; each member's inbox is just "head >
//!   watermark". A message's status for a member, and "delivered to k of n, read by j of n", come
//!   from comparing watermarks with its seq: no per-message-per-member rows.
//! - **Groups**: members and roles, applied from group-change records in LSN order, so the
//!   members of a group at any message are those applied before it.
//! - **Groups' join points**: a member never receives, reads or counts as unread what the group
//!   held before they joined ([`Index::joined_at`]).
//! - **Idempotent sends** ([`Index::find_sent`]): the `(seq, timestamp)` each recent
//!   `client_msg_id` got, per shard, for a window of server time.
//! - **Checkpoints** ([`Index::checkpoint`], [`Index::open`]): the whole state with the LSNs it
//!   reflects, versioned and checksummed, written atomically; a missing, stale or damaged one
//!   falls back to a rebuild from the log with the same result.
//! - **Retention** ([`Index::retain`]): before whole segments go, a snapshot record of every chat
//!   they held is appended to the log, so the rebuild still has heads, members, settings and
//!   watermarks.
//! - **Memory**: an idle 1:1 chat costs ~225 bytes of heap with its users' delivered watermarks
//!   (each user's first device's is in the chat; a further device's costs ~47), see
//!   `tests/memory.rs`; sealed segments' runs live in per-segment index files read in place.
//!
//! ```
//! use bytes::Bytes;
//! use missive_index::codec::{ContentKind, Message};
//! use missive_index::Index;
//! use missive_log::{ChatId, DeviceId, Durability, Log, LogConfig, Record, RecordKind, Seq, Timestamp, UserId};
//!
//! let dir = tempfile::tempdir()?;
//! let log = Log::open(dir.path().join("log"), LogConfig { shard_count: Some(1), ..LogConfig::default() })?;
//! let chat = ChatId::direct(UserId(1), UserId(2));
//! for seq in 1..=3 {
//!     let message = Message {
//!         seq: Seq(seq),
//!         sender: UserId(1),
//!         sender_device: DeviceId(0),
//!         client_msg_id: [seq as u8; 16],
//!         content: ContentKind::Text,
//!         ttl_ms: 0,
//!         reply_to: None,
//!         media: Bytes::new(),
//!         body: Bytes::from(format!("hello {seq}")),
//!     };
//!     let record = Record { kind: RecordKind::Message, chat, timestamp: Timestamp(1000 + seq), payload: message.encode() };
//!     log.append(record)?.wait()?;
//! }
//! let (index, _) = Index::open(&log, &dir.path().join("index"))?;
//! let latest = index.latest(&log, chat, 2, Timestamp(2000))?;
//! assert_eq!(latest.iter().map(|m| m.message.seq.0).collect::<Vec<_>>(), [2, 3]);
//! assert_eq!(index.unread(UserId(2), chat), 3);
//! assert_eq!(index.inbox(UserId(2), DeviceId(0)).len(), 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod chat;
mod checkpoint;
mod chunked;
pub mod codec;
mod dedup;
mod error;
mod index;
mod receipts;
mod segment_index;
mod tail;
mod wire;

pub use chat::Role;
pub use checkpoint::{CHECKPOINT_VERSION, Checkpoint, IndexConfig, OpenReport};
pub use dedup::{DEDUP_CAPACITY, DEDUP_WINDOW_MS, Sent};
pub use error::{Error, Result};
pub use index::{InboxEntry, Index, MessageView, ReceiptCounts, Status};
pub use segment_index::{SEGMENT_INDEX_CACHE_MAX, UnwrittenSegmentIndex};
pub use tail::{TAIL_CACHE_BYTES_MAX, TAIL_MESSAGES_MAX};
