//! `missive-index`: the indexes that make Missive's reads fast.
//!
//! This crate will hold the per-chat history index (head `Seq` and batch positions per segment),
//! the per-recipient inbox index, receipt watermarks (delivered / read up to a `Seq`) and the
//! checkpoints that snapshot them with the log position they reflect. Every structure here is a
//! cache of [`missive_log`]: it can always be rebuilt by replaying the log.
//!
//! Nothing is implemented yet; see issue 3. The crate exists so the workspace shows the design's
//! dependency direction (`log` ← `index` ← `engine`).
//!
//! ```
//! // The index is built on the log's shared id types.
//! use missive_log::ChatId;
//! let chat = ChatId::direct(missive_log::UserId(1), missive_log::UserId(2));
//! assert!(chat.is_direct());
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]
