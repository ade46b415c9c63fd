//! `missive`: an embeddable messaging engine — the storage and delivery core of a
//! WhatsApp-class service, as a library.
//!
//! One [`Engine`] handle wires three layers together:
//!
//! - **the log** ([`missive_log`]): every state change (message, receipt watermark, delete for
//!   everyone, group change, disappearing-messages setting) is a record in a durable,
//!   checksummed, append-only log sharded by chat, written with group commit: a send returns
//!   once its record is as durable as [`Config::durability`] says (`Always` by default: on
//!   disk, fsynced);
//! - **the index** ([`missive_index`]): a cache of the log, checkpointed, that answers history
//!   reads, inboxes, unread counts and receipt states in a handful of record reads, and
//!   remembers recent `client_msg_id`s so retried sends store nothing twice;
//! - **the hub** ([`missive_fanout`]): live delivery to connected devices through bounded
//!   queues that never block a sender; a device that falls behind catches up from the index.
//!
//! A group message is stored once; its recipients are the group's members at its position in
//! the log, so someone added later does not receive earlier messages and someone removed stops
//! receiving. Receipts are watermarks: "read up to 57" is one record however many messages it
//! covers, and "delivered to 12 of 40, read by 9" compares watermarks with the message's seq.
//!
//! Payloads are opaque bytes: with end-to-end encryption the engine never sees plaintext. Time
//! comes from a [`Clock`] the engine is given, so tests can jump a day back or ten years on;
//! timestamps never go backwards in a chat whatever the clock does.
//!
//! # Quick start
//!
//! ```
//! use missive::{Config, Engine, Event, History, Outgoing, To};
//! use missive::log::{DeviceId, UserId};
//!
//! let dir = tempfile::tempdir()?;
//! let engine = Engine::open(dir.path(), Config::default())?;
//! let (alice, bob) = (UserId(1), UserId(2));
//!
//! // Bob's phone is connected.
//! let mut phone = engine.subscribe(bob, DeviceId(0))?;
//!
//! // Alice sends; the call returns once the message is on disk.
//! let sent = engine.send(alice, DeviceId(0), Outgoing::text(To::User(bob), [1; 16], "hi Bob"))?;
//! assert_eq!(sent.seq.0, 1);
//! // A retry of the same send stores nothing and returns the original.
//! let again = engine.send(alice, DeviceId(0), Outgoing::text(To::User(bob), [1; 16], "hi Bob"))?;
//! assert_eq!((again.seq, again.duplicate), (sent.seq, true));
//!
//! // Bob's phone receives it live.
//! match phone.next_timeout(std::time::Duration::from_secs(5))? {
//!     Some(Event::Message { message, .. }) => assert_eq!(&message.message.body[..], b"hi Bob"),
//!     other => panic!("expected the message, got {other:?}"),
//! }
//!
//! // History, unread counts, receipts.
//! let history = engine.history(bob, sent.chat, History::Latest(50))?;
//! assert_eq!(history.len(), 1);
//! assert_eq!(engine.unread(bob, sent.chat)?, 1);
//! engine.mark(bob, DeviceId(0), sent.chat, missive::ReceiptKind::Read, sent.seq)?;
//! assert_eq!(engine.unread(bob, sent.chat)?, 0);
//!
//! engine.close()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The `examples/` folder has a small chat between three users and a group
//! (`cargo run -p missive --example chat`).
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod config;
mod engine;
mod error;
mod event;
mod stats;
mod subscription;

pub use config::{Clock, Config, ManualClock, SystemClock};
pub use engine::{Engine, ExpireReport, SYSTEM_DEVICE};
pub use error::{Error, Result};
pub use event::{ChatSummary, Event, History, MessageStatus, Outgoing, Sent, To};
pub use stats::Stats;
pub use subscription::Subscription;

pub use missive_fanout::Presence;
pub use missive_index::codec::{
    ContentKind, GROUP_CHANGE_USERS_MAX, GroupOp, MEDIA_REF_BYTES_MAX, ReceiptKind,
};
pub use missive_index::{MessageView, ReceiptCounts, Role, Status};
pub use missive_log::Durability;

/// The log crate: ids ([`log::UserId`], [`log::ChatId`], …) and the storage layer.
pub use missive_log as log;
