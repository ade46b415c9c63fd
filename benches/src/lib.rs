//! Shared helpers for Missive's benchmarks (see `benches/RESULTS.md`).
//!
//! ```
//! assert!(missive_log::RECORD_PAYLOAD_BYTES_MAX >= 256);
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]
