//! `missive-ffi`: the C ABI over the Missive engine, so that servers written in C, C++, Go,
//! Python, Java or Erlang can embed it.
//!
//! It builds `libmissive.so` and `libmissive.a` (cargo names the files `libmissive_ffi.*`;
//! `ffi/install.sh` installs them under the C name, with `missive.h` and `missive.pc`). The
//! header `ffi/include/missive.h` is generated from this crate by cbindgen
//! (`ffi/gen-header.sh`) and committed; `ffi/run.sh` fails when it is stale.
//!
//! # The rules every function follows (after rustls-ffi)
//!
//! - It returns a [`missive_result`]: `MISSIVE_OK` (0), one code per engine error kind, or one of
//!   the C API's own (`NULL_ARGUMENT`, `INVALID_UTF8`, `BUFFER_TOO_SMALL`, `PANIC`, `TIMEOUT`,
//!   `INVALID_HANDLE`, `BUSY`, `OTHER`). The three exceptions, `missive_version`,
//!   `missive_result_name` and `missive_last_error_message`, cannot fail.
//! - Out-parameters are written only on success. On failure nothing changed, and
//!   `missive_last_error_message()` (per thread) says what went wrong.
//! - It runs inside a panic boundary: a panic becomes `MISSIVE_ERR_PANIC`, never an unwind into
//!   C.
//! - Every pointer is checked for NULL, every length against a limit *before* memory is read,
//!   every string for UTF-8.
//! - Objects come in pairs: `missive_engine_open` / `missive_engine_free`, `missive_subscribe` /
//!   `missive_subscription_free`, `missive_history` / `missive_message_list_free`, ... Each
//!   handle is registered by address (see `handle.rs`), so a double free, a use after free or a
//!   handle of the wrong type returns `MISSIVE_ERR_INVALID_HANDLE` without touching freed
//!   memory.
//! - Ownership and threading are written on each function in the header.
//!
//! # Example (C)
//!
//! ```text
//! missive_engine *engine;
//! if (missive_engine_open("/var/lib/missive", NULL, &engine) != MISSIVE_OK) {
//!     fprintf(stderr, "%s\n", missive_last_error_message());
//!     return 1;
//! }
//! uint8_t id[16] = {1};
//! missive_sent sent;
//! missive_send_direct(engine, 1, 0, 2, id, (const uint8_t *)"hi", 2, NULL, &sent);
//! missive_message_list *history;
//! missive_history(engine, 2, sent.chat, MISSIVE_HISTORY_LATEST, 0, 50, &history);
//! /* history->messages[0].body ... */
//! missive_message_list_free(history);
//! missive_engine_free(engine);
//! ```
//!
//! The same calls from Rust, as the fuzz target and the tests below make them:
//!
//! ```
//! use missive_ffi::*;
//! let dir = tempfile::tempdir()?;
//! let path = std::ffi::CString::new(dir.path().to_str().unwrap())?;
//! let mut engine = std::ptr::null_mut();
//! // SAFETY: valid pointers to locals; the engine handle is used before it is freed.
//! unsafe {
//!     assert_eq!(missive_engine_open(path.as_ptr(), std::ptr::null(), &mut engine),
//!                missive_result::MISSIVE_OK);
//!     let mut sent = missive_sent::default();
//!     let code = missive_send_direct(engine, 1, 0, 2, [7u8; 16].as_ptr(), b"hi".as_ptr(), 2,
//!                                    std::ptr::null(), &mut sent);
//!     assert_eq!((code, sent.seq), (missive_result::MISSIVE_OK, 1));
//!     assert_eq!(missive_engine_free(engine), missive_result::MISSIVE_OK);
//!     assert_eq!(missive_engine_free(engine), missive_result::MISSIVE_ERR_INVALID_HANDLE);
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]
// The one crate besides the log's mmap module that needs `unsafe`: every block says why it is
// sound (`clippy::undocumented_unsafe_blocks` is on for the workspace).
#![allow(unsafe_code)]
// C names: `missive_engine`, `MISSIVE_ERR_CLOSED`.
#![allow(non_camel_case_types)]

// Helpers behind every function.
mod args;
mod handle;
mod list;

// The order of these is the order of the header: results and errors, ids, settings, the engine,
// sending, reading, receipts, groups, live events.
mod result;

mod ids;

mod config;

mod engine;

mod send;

mod message;

mod chats;

mod receipts;

mod group;

mod event;

mod subscription;

pub use chats::*;
pub use config::*;
pub use engine::{
    missive_engine, missive_engine_checkpoint, missive_engine_close, missive_engine_free,
    missive_engine_now, missive_engine_open, missive_engine_set_time, missive_engine_stats,
    missive_expire, missive_expire_report, missive_stats,
};
pub use event::*;
pub use group::*;
pub use ids::*;
pub use message::*;
pub use receipts::*;
pub use result::{
    missive_last_error, missive_last_error_length, missive_last_error_message, missive_result,
    missive_result_name, missive_version,
};
pub use send::*;
pub use subscription::*;

/// Live objects per handle type, for tests that check nothing leaked: (engines, subscriptions).
#[doc(hidden)]
pub fn live_handles() -> (usize, usize) {
    (engine::live_engines(), subscription::live_subscriptions())
}

#[cfg(test)]
mod tests;
