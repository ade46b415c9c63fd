//! The engine handle: open, close, free, and the calls about the engine as a whole (checkpoint,
//! time, retention, stats).

use std::ffi::c_char;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use missive::log::Timestamp;
use missive::{Engine, ManualClock};

use crate::args::{Out, text};
use crate::config::{MISSIVE_PATH_BYTES_MAX, missive_config};
use crate::handle::{self, Handle, Registry};
use crate::result::{Failure, FfiResult, guard, missive_result};

/// An open engine: one folder of storage, shared by every thread of the process.
///
/// Opaque. Made by `missive_engine_open`, released by `missive_engine_free`. Every function
/// taking a `missive_engine *` may run concurrently with any other on the same engine, from any
/// thread.
pub struct missive_engine {
    magic: AtomicU64,
    pub(crate) engine: Engine,
    clock: Option<ManualClock>,
}

static ENGINES: Registry = Registry::new("missive_engine");

impl Handle for missive_engine {
    const MAGIC: u64 = u64::from_le_bytes(*b"MSVENGIN");
    fn registry() -> &'static Registry {
        &ENGINES
    }
    fn magic(&self) -> &AtomicU64 {
        &self.magic
    }
}

impl missive_engine {
    /// The engine behind a C handle.
    pub(crate) fn get(ptr: *const missive_engine) -> FfiResult<Arc<missive_engine>> {
        handle::shared(ptr, "engine")
    }

    /// The body and media limits it was opened with.
    pub(crate) fn limits(&self) -> (usize, usize) {
        let config = self.engine.config();
        (config.body_bytes_max, config.media_ref_bytes_max)
    }
}

/// Live engine handles (for tests).
pub(crate) fn live_engines() -> usize {
    ENGINES.len()
}

/// Opens (or creates) the engine stored in the folder `path` and writes its handle to `*out`.
/// Recovers what a crash left (cutting a torn tail of the log) and starts the engine's threads.
///
/// `path`: a NUL-terminated UTF-8 path, at most `MISSIVE_PATH_BYTES_MAX` bytes; the folder is
/// created if missing. `config`: the settings, or NULL for `missive_config_default`'s.
///
/// Errors: `MISSIVE_ERR_NULL_ARGUMENT` (`path`, `out`), `MISSIVE_ERR_INVALID_UTF8` (`path`),
/// `MISSIVE_ERR_INVALID_ARGUMENT` (empty or too long path, a config field out of range),
/// `MISSIVE_ERR_STORAGE`, `_CORRUPT`, `_INDEX` (the folder cannot be used).
///
/// Ownership: the caller owns the handle and must pass it to `missive_engine_free` exactly once.
/// Two engines must not share a folder. Threads: any.
///
/// # Safety
/// `path` must be NULL or a NUL-terminated string; `config` NULL or a readable `missive_config`;
/// `out` NULL or a writable `missive_engine *`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn missive_engine_open(
    path: *const c_char,
    config: *const missive_config,
    out: *mut *mut missive_engine,
) -> missive_result {
    guard("missive_engine_open", || {
        // SAFETY: the caller promises `out` is NULL or writable.
        let out = unsafe { Out::new(out, "out") }?;
        // SAFETY: the caller promises `path` is NULL or NUL-terminated.
        let path = unsafe { text(path, "path", MISSIVE_PATH_BYTES_MAX) }?;
        if path.is_empty() {
            return Err(Failure::invalid("`path` is empty"));
        }
        let config = if config.is_null() {
            missive_config::default()
        } else {
            // SAFETY: non-NULL and readable (the caller's promise); every field is an integer,
            // so any bytes are a valid value.
            unsafe { config.read() }
        };
        let (config, clock) = config.to_engine()?;
        let engine = Engine::open(path, config)?;
        out.write(handle::share(missive_engine {
            magic: handle::magic::<missive_engine>(),
            engine,
            clock,
        }));
        Ok(())
    })
}

/// Closes the engine: flushes the log, checkpoints the index, ends every subscription (their
/// next call returns `MISSIVE_ERR_CLOSED`) and stops the engine's threads. Afterwards every call
/// on it returns `MISSIVE_ERR_CLOSED`; closing twice is fine. The handle stays valid: it must
/// still be freed.
///
/// Errors: `MISSIVE_ERR_NULL_ARGUMENT`, `_INVALID_HANDLE`, storage errors from the final flush
/// (the engine is closed anyway). Threads: any; calls running on other threads finish first or
/// return `MISSIVE_ERR_CLOSED`.
///
/// # Safety
/// `engine` must be NULL or a pointer returned by `missive_engine_open` (a freed one is caught).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn missive_engine_close(engine: *mut missive_engine) -> missive_result {
    guard("missive_engine_close", || {
        let engine = missive_engine::get(engine)?;
        engine.engine.close()?;
        Ok(())
    })
}

/// Closes the engine (if `missive_engine_close` was not called) and frees the handle. Returns
/// the result of closing; the handle is freed whatever it is. Subscriptions opened on the engine
/// end but must still be freed with `missive_subscription_free`.
///
/// Errors: `MISSIVE_ERR_NULL_ARGUMENT`, `MISSIVE_ERR_INVALID_HANDLE` (already freed: a double
/// free is caught and changes nothing), storage errors from closing.
///
/// Threads: call it once, when no other thread will start a call on the engine; calls already
/// running on other threads finish safely.
///
/// # Safety
/// `engine` must be NULL or a pointer returned by `missive_engine_open`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn missive_engine_free(engine: *mut missive_engine) -> missive_result {
    guard("missive_engine_free", || {
        let engine = handle::release(engine.cast_const(), "engine")?;
        engine.engine.close()?;
        Ok(())
    })
}

/// Writes an index checkpoint now, so the next open replays less of the log (a background
/// thread does it every `checkpoint_interval_ms`).
///
/// Errors: `MISSIVE_ERR_NULL_ARGUMENT`, `_INVALID_HANDLE`, `_CLOSED`, storage and index errors.
/// Threads: any, concurrently with anything.
///
/// # Safety
/// `engine` must be NULL or a pointer returned by `missive_engine_open`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn missive_engine_checkpoint(engine: *mut missive_engine) -> missive_result {
    guard("missive_engine_checkpoint", || {
        missive_engine::get(engine)?.engine.checkpoint()?;
        Ok(())
    })
}

/// Writes "now" by the engine's clock (ms since the Unix epoch) to `*out_ms`.
///
/// Errors: `MISSIVE_ERR_NULL_ARGUMENT`, `_INVALID_HANDLE`. Threads: any.
///
/// # Safety
/// `engine` as for `missive_engine_checkpoint`; `out_ms` NULL or a writable `uint64_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn missive_engine_now(
    engine: *mut missive_engine,
    out_ms: *mut u64,
) -> missive_result {
    guard("missive_engine_now", || {
        // SAFETY: the caller promises `out_ms` is NULL or writable.
        let out = unsafe { Out::new(out_ms, "out_ms") }?;
        let engine = missive_engine::get(engine)?;
        out.write(engine.engine.now().0);
        Ok(())
    })
}

/// Sets the time of an engine opened with `MISSIVE_CLOCK_MANUAL` (backwards too: timestamps
/// still never go back within a chat).
///
/// Errors: `MISSIVE_ERR_NULL_ARGUMENT`, `_INVALID_HANDLE`, `_INVALID_ARGUMENT` (the engine uses
/// the system clock). Threads: any.
///
/// # Safety
/// `engine` must be NULL or a pointer returned by `missive_engine_open`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn missive_engine_set_time(
    engine: *mut missive_engine,
    now_ms: u64,
) -> missive_result {
    guard("missive_engine_set_time", || {
        let engine = missive_engine::get(engine)?;
        let clock = engine.clock.as_ref().ok_or_else(|| {
            Failure::invalid("the engine uses the system clock (open it with MISSIVE_CLOCK_MANUAL)")
        })?;
        clock.set(Timestamp(now_ms));
        Ok(())
    })
}

/// What `missive_expire` did.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct missive_expire_report {
    /// Log segments deleted, with every message in them.
    pub segments_removed: u64,
    /// The cutoff used (`now_ms - retention_ms`): segments whose window ended by then went.
    pub cutoff_ms: u64,
}

/// Applies retention as of `now_ms`: deletes the log segments whose time window ended more than
/// `retention_ms` before it. Messages whose own or chat TTL passed are already hidden from every
/// read. Writes what it did to `*out_report` unless it is NULL.
///
/// Errors: `MISSIVE_ERR_NULL_ARGUMENT` (`engine`), `_INVALID_HANDLE`, `_CLOSED`, storage and
/// index errors. Threads: any.
///
/// # Safety
/// `engine` as for `missive_engine_checkpoint`; `out_report` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn missive_expire(
    engine: *mut missive_engine,
    now_ms: u64,
    out_report: *mut missive_expire_report,
) -> missive_result {
    guard("missive_expire", || {
        // SAFETY: the caller promises `out_report` is NULL or writable.
        let out = unsafe { Out::optional(out_report) };
        let engine = missive_engine::get(engine)?;
        let report = engine.engine.expire(Timestamp(now_ms))?;
        if let Some(out) = out {
            out.write(missive_expire_report {
                segments_removed: report.segments_removed as u64,
                cutoff_ms: report.cutoff.0,
            });
        }
        Ok(())
    })
}

/// A snapshot of the engine's counters (totals since it opened unless said otherwise).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct missive_stats {
    /// Messages stored.
    pub sends: u64,
    /// Sends answered from the idempotency memory (nothing stored).
    pub duplicate_sends: u64,
    /// Receipt records stored.
    pub receipts: u64,
    /// Deletes for everyone.
    pub deletes: u64,
    /// Group changes.
    pub group_changes: u64,
    /// Payload bytes handed to the log.
    pub bytes_appended: u64,
    /// Log records applied to the index.
    pub records_applied: u64,
    /// Log batches applied to the index.
    pub batches_applied: u64,
    /// Index checkpoints written.
    pub checkpoints: u64,
    /// Log segments removed by retention.
    pub segments_expired: u64,
    /// Failed background checkpoints, retention runs or segment index file writes.
    pub background_errors: u64,
    /// Times a subscription caught up from the index.
    pub catch_ups: u64,
    /// Live subscriptions now.
    pub subscriptions: u64,
    /// Users with a live subscription now.
    pub users_online: u64,
    /// Live events published.
    pub events_published: u64,
    /// Live events a full queue missed (their subscriptions caught up).
    pub events_missed: u64,
    /// Subscriptions lagging now.
    pub subscriptions_lagging: u64,
    /// Times a subscription started lagging.
    pub lags: u64,
    /// The deepest subscription queue now.
    pub queue_depth_max: u64,
    /// Opening: the log's recovery, ms.
    pub open_log_ms: u64,
    /// Opening: loading the index and replaying the log, ms.
    pub open_index_ms: u64,
    /// Opening: records replayed into the index.
    pub opened_replayed: u64,
    /// Opening: bytes of torn tails cut from the log.
    pub opened_torn_bytes: u64,
    /// Log batches written (group commits).
    pub log_batches: u64,
    /// Records in them (`log_records / log_batches`: the mean group-commit batch).
    pub log_records: u64,
    /// Bytes written to log segments (headers included, after compression).
    pub log_bytes_written: u64,
    /// Data fsyncs of log segments.
    pub fsyncs: u64,
    /// Bytes the scrub after opening verified.
    pub scrubbed_bytes: u64,
    /// Damage the scrub after opening found.
    pub scrub_errors: u64,
    /// Opening: whether the index came from a checkpoint (else a full rebuild).
    pub opened_from_checkpoint: bool,
    /// Whether the scrub after opening went through every segment.
    pub scrub_done: bool,
}

impl From<missive::Stats> for missive_stats {
    fn from(s: missive::Stats) -> missive_stats {
        missive_stats {
            sends: s.sends,
            duplicate_sends: s.duplicate_sends,
            receipts: s.receipts,
            deletes: s.deletes,
            group_changes: s.group_changes,
            bytes_appended: s.bytes_appended,
            records_applied: s.records_applied,
            batches_applied: s.batches_applied,
            checkpoints: s.checkpoints,
            segments_expired: s.segments_expired,
            background_errors: s.background_errors,
            catch_ups: s.catch_ups,
            subscriptions: s.subscriptions,
            users_online: s.users_online,
            events_published: s.events_published,
            events_missed: s.events_missed,
            subscriptions_lagging: s.subscriptions_lagging,
            lags: s.lags,
            queue_depth_max: s.queue_depth_max,
            open_log_ms: s.open_log_ms,
            open_index_ms: s.open_index_ms,
            opened_replayed: s.opened_replayed,
            opened_torn_bytes: s.opened_torn_bytes,
            log_batches: s.log_batches,
            log_records: s.log_records,
            log_bytes_written: s.log_bytes_written,
            fsyncs: s.fsyncs,
            scrubbed_bytes: s.scrubbed_bytes,
            scrub_errors: s.scrub_errors,
            opened_from_checkpoint: s.opened_from_checkpoint,
            scrub_done: s.scrub_done,
        }
    }
}

/// Writes a snapshot of the engine's counters to `*out` (also after close).
///
/// Errors: `MISSIVE_ERR_NULL_ARGUMENT`, `_INVALID_HANDLE`. Threads: any.
///
/// # Safety
/// `engine` as for `missive_engine_checkpoint`; `out` NULL or a writable `missive_stats`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn missive_engine_stats(
    engine: *mut missive_engine,
    out: *mut missive_stats,
) -> missive_result {
    guard("missive_engine_stats", || {
        // SAFETY: the caller promises `out` is NULL or writable.
        let out = unsafe { Out::new(out, "out") }?;
        let engine = missive_engine::get(engine)?;
        out.write(engine.engine.stats().into());
        Ok(())
    })
}
