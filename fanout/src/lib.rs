//! `missive-fanout`: group membership, recipient planning and live delivery.
//!
//! This crate will hold group membership (with the configurable member cap and admin rules), the
//! recipient plan of a group message at its log position, and the live delivery hub: bounded
//! per-device queues that never block the writer (a full queue marks the device lagging and it
//! catches up from its inbox), presence and typing events.
//!
//! Nothing is implemented yet; see issue 4. The crate exists so the workspace shows the design's
//! dependency direction (`log` ← `fanout` ← `engine`).
//!
//! ```
//! use missive_log::{ChatId, UserId};
//! let group = ChatId::group(7);
//! assert!(!group.is_direct());
//! assert_ne!(group, ChatId::direct(UserId(7), UserId(7)));
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]
