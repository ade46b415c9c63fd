//! `missive-ffi`: the C ABI over the Missive engine.
//!
//! This crate will export `extern "C"` functions (each inside a panic boundary, checking every
//! pointer, writing out-parameters only on success) and a committed cbindgen header, so that C,
//! C++, Go and Python servers can embed Missive. See issue 5. It exports nothing yet.
//!
//! ```
//! // The C API will wrap the engine; today the engine re-exports the log.
//! assert!(missive::log::RECORD_PAYLOAD_BYTES_MAX > 0);
//! ```
#![deny(missing_docs)]
