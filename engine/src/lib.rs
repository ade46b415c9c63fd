//! `missive`: an embeddable messaging engine.
//!
//! This crate will be the public library: one `Engine` handle that wires the durable log
//! ([`missive_log`]), the indexes (`missive-index`) and fan-out (`missive-fanout`), owns the
//! background work (flushing, checkpoints, retention) and offers a sync API plus an async one
//! under a `tokio` feature. See issue 4.
//!
//! Today it re-exports the log so that embedders can already write and read records durably:
//!
//! ```
//! use missive::log::{Durability, Log, LogConfig};
//! let dir = std::env::temp_dir().join(format!("missive-engine-doc-{}", std::process::id()));
//! # let _ = std::fs::remove_dir_all(&dir);
//! let config = LogConfig { shard_count: Some(2), durability: Durability::Os, ..LogConfig::default() };
//! let log = Log::open(&dir, config)?;
//! assert_eq!(log.shard_count(), 2);
//! # drop(log);
//! # std::fs::remove_dir_all(&dir).unwrap();
//! # Ok::<(), missive::log::Error>(())
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub use missive_log as log;
