//! The engine's settings as a C struct, their limits, and their checks.

use std::sync::Arc;
use std::time::Duration;

use missive::log::{
    Durability, SEGMENT_BYTES_MAX, SEGMENT_BYTES_MIN, SEGMENT_WINDOW_MS_MAX, SEGMENT_WINDOW_MS_MIN,
    SHARD_COUNT_MAX, SYNC_INTERVAL_MS_MAX, Timestamp,
};
use missive::{Config, ManualClock};
use missive_index::codec::{GROUP_CHANGE_USERS_MAX, MEDIA_REF_BYTES_MAX};

use crate::args::Out;
use crate::result::{Failure, FfiResult, guard, missive_result};

/// `missive_config.durability`: a send returns once its batch is fsynced (survives a power cut).
pub const MISSIVE_DURABILITY_ALWAYS: u32 = 1;
/// `missive_config.durability`: a send returns once written to the OS; fsync at most
/// `durability_interval_ms` later.
pub const MISSIVE_DURABILITY_INTERVAL: u32 = 2;
/// `missive_config.durability`: a send returns once written to the OS; fsync only when a segment
/// is sealed or the engine closes (survives a process crash, not a power cut).
pub const MISSIVE_DURABILITY_OS: u32 = 3;

/// `missive_config.clock`: the system's wall clock.
pub const MISSIVE_CLOCK_SYSTEM: u32 = 1;
/// `missive_config.clock`: a clock that starts at `clock_start_ms` and moves only by
/// `missive_engine_set_time` (for tests).
pub const MISSIVE_CLOCK_MANUAL: u32 = 2;

/// The largest `missive_config.body_bytes_max`: 1 MiB less 8 KiB (a message record must fit the
/// log's 1 MiB record limit with its media reference and fixed fields).
pub const MISSIVE_BODY_BYTES_MAX: u32 = 1_040_384;
/// The largest `missive_config.media_ref_bytes_max` (the record format's limit).
pub const MISSIVE_MEDIA_REF_BYTES_MAX: u32 = 1024;
/// The largest `missive_config.group_members_max`, and the most user ids one call takes.
pub const MISSIVE_GROUP_MEMBERS_MAX: u32 = 1024;
/// The largest `missive_config.queue_capacity`.
pub const MISSIVE_QUEUE_CAPACITY_MAX: u32 = 1 << 20;
/// The longest path `missive_engine_open` takes, in bytes.
pub const MISSIVE_PATH_BYTES_MAX: usize = 4096;

// The C limits keep the engine inside the record format's bounds.
const _: () = assert!(
    MISSIVE_BODY_BYTES_MAX as usize + MEDIA_REF_BYTES_MAX + 1024
        <= missive::log::RECORD_PAYLOAD_BYTES_MAX
);
const _: () = assert!(MISSIVE_MEDIA_REF_BYTES_MAX as usize == MEDIA_REF_BYTES_MAX);
// A group change names at most `members - 1` users (never its author).
const _: () = assert!(MISSIVE_GROUP_MEMBERS_MAX as usize <= GROUP_CHANGE_USERS_MAX + 1);

/// The engine's settings. Start from `missive_config_default` and change what you need; every
/// field is checked by `missive_engine_open` (`MISSIVE_ERR_INVALID_ARGUMENT` names the field).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct missive_config {
    /// `MISSIVE_DURABILITY_ALWAYS` (default), `_INTERVAL` or `_OS`.
    pub durability: u32,
    /// With `MISSIVE_DURABILITY_INTERVAL`: the longest time written data stays unsynced,
    /// 1 to 60000 ms (default 100).
    pub durability_interval_ms: u64,
    /// Log shards, 1 to 1024; 0 (default): one per core. Fixed once the engine's folder exists.
    pub shards: u32,
    /// Time window of a log segment, 1 s to 30 days (default 1 hour).
    pub segment_window_ms: u64,
    /// Size cap of a log segment, 4 KiB to 1 GiB (default 256 MiB).
    pub segment_bytes_max: u64,
    /// How long messages are kept (default 30 days).
    pub retention_ms: u64,
    /// Members a group may have, 1 to `MISSIVE_GROUP_MEMBERS_MAX` (default 256).
    pub group_members_max: u32,
    /// Largest message body in bytes, up to `MISSIVE_BODY_BYTES_MAX` (default 64 KiB).
    pub body_bytes_max: u32,
    /// Largest media reference in bytes, up to `MISSIVE_MEDIA_REF_BYTES_MAX` (default 1 KiB).
    pub media_ref_bytes_max: u32,
    /// Live events queued per subscription before it lags and catches up from storage,
    /// 1 to `MISSIVE_QUEUE_CAPACITY_MAX` (default 1024).
    pub queue_capacity: u32,
    /// How often a background thread checkpoints the index (default 60000); 0: only at close.
    pub checkpoint_interval_ms: u64,
    /// How often a background thread applies retention (default 60000); 0: never (call
    /// `missive_expire`).
    pub retention_interval_ms: u64,
    /// How long a `client_msg_id` is remembered for idempotent sends (default 300000).
    pub dedup_window_ms: u64,
    /// `MISSIVE_CLOCK_SYSTEM` (default) or `MISSIVE_CLOCK_MANUAL`.
    pub clock: u32,
    /// With `MISSIVE_CLOCK_MANUAL`: the starting time, ms since the Unix epoch.
    pub clock_start_ms: u64,
}

impl Default for missive_config {
    fn default() -> missive_config {
        let config = Config::default();
        missive_config {
            durability: MISSIVE_DURABILITY_ALWAYS,
            durability_interval_ms: 100,
            shards: 0,
            segment_window_ms: config.segment_window.as_millis() as u64,
            segment_bytes_max: config.segment_bytes_max,
            retention_ms: config.retention.as_millis() as u64,
            group_members_max: config.group_cap as u32,
            body_bytes_max: config.body_bytes_max as u32,
            media_ref_bytes_max: config.media_ref_bytes_max as u32,
            queue_capacity: config.queue_capacity as u32,
            checkpoint_interval_ms: millis(config.checkpoint_interval),
            retention_interval_ms: millis(config.retention_interval),
            dedup_window_ms: config.dedup_window.as_millis() as u64,
            clock: MISSIVE_CLOCK_SYSTEM,
            clock_start_ms: 0,
        }
    }
}

fn millis(every: Option<Duration>) -> u64 {
    every.map_or(0, |every| every.as_millis() as u64)
}

fn within<T: PartialOrd + std::fmt::Display>(name: &str, value: T, min: T, max: T) -> FfiResult {
    if value < min || value > max {
        return Err(Failure::invalid(format!(
            "config.{name} is {value}; it must be between {min} and {max}"
        )));
    }
    Ok(())
}

impl missive_config {
    /// The engine's `Config` (and its manual clock, if it has one), after checking every field.
    pub(crate) fn to_engine(self) -> FfiResult<(Config, Option<ManualClock>)> {
        let durability = match self.durability {
            MISSIVE_DURABILITY_ALWAYS => Durability::Always,
            MISSIVE_DURABILITY_INTERVAL => {
                within(
                    "durability_interval_ms",
                    self.durability_interval_ms,
                    1,
                    SYNC_INTERVAL_MS_MAX,
                )?;
                Durability::Interval {
                    ms: self.durability_interval_ms,
                }
            }
            MISSIVE_DURABILITY_OS => Durability::Os,
            other => {
                return Err(Failure::invalid(format!(
                    "config.durability is {other}; it must be a MISSIVE_DURABILITY_* value"
                )));
            }
        };
        if self.shards != 0 {
            within("shards", self.shards, 1, SHARD_COUNT_MAX)?;
        }
        within(
            "segment_window_ms",
            self.segment_window_ms,
            SEGMENT_WINDOW_MS_MIN,
            SEGMENT_WINDOW_MS_MAX,
        )?;
        within(
            "segment_bytes_max",
            self.segment_bytes_max,
            SEGMENT_BYTES_MIN,
            SEGMENT_BYTES_MAX,
        )?;
        within(
            "group_members_max",
            self.group_members_max,
            1,
            MISSIVE_GROUP_MEMBERS_MAX,
        )?;
        within(
            "body_bytes_max",
            self.body_bytes_max,
            0,
            MISSIVE_BODY_BYTES_MAX,
        )?;
        within(
            "media_ref_bytes_max",
            self.media_ref_bytes_max,
            0,
            MISSIVE_MEDIA_REF_BYTES_MAX,
        )?;
        within(
            "queue_capacity",
            self.queue_capacity,
            1,
            MISSIVE_QUEUE_CAPACITY_MAX,
        )?;
        let every = |ms: u64| (ms != 0).then(|| Duration::from_millis(ms));
        let mut config = Config {
            durability,
            shards: (self.shards != 0).then_some(self.shards),
            segment_window: Duration::from_millis(self.segment_window_ms),
            segment_bytes_max: self.segment_bytes_max,
            retention: Duration::from_millis(self.retention_ms),
            group_cap: self.group_members_max as usize,
            body_bytes_max: self.body_bytes_max as usize,
            media_ref_bytes_max: self.media_ref_bytes_max as usize,
            queue_capacity: self.queue_capacity as usize,
            checkpoint_interval: every(self.checkpoint_interval_ms),
            retention_interval: every(self.retention_interval_ms),
            dedup_window: Duration::from_millis(self.dedup_window_ms),
            ..Config::default()
        };
        let clock = match self.clock {
            MISSIVE_CLOCK_SYSTEM => None,
            MISSIVE_CLOCK_MANUAL => {
                let clock = ManualClock::new(Timestamp(self.clock_start_ms));
                config.clock = Arc::new(clock.clone());
                Some(clock)
            }
            other => {
                return Err(Failure::invalid(format!(
                    "config.clock is {other}; it must be MISSIVE_CLOCK_SYSTEM or _MANUAL"
                )));
            }
        };
        Ok((config, clock))
    }
}

/// Writes the default settings to `*out` (what each field's comment says).
///
/// Errors: `MISSIVE_ERR_NULL_ARGUMENT` (`out`). Threads: any, concurrently.
///
/// # Safety
/// `out` must be NULL or point to a writable `missive_config`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn missive_config_default(out: *mut missive_config) -> missive_result {
    guard("missive_config_default", || {
        // SAFETY: the caller promises `out` is NULL or writable.
        let out = unsafe { Out::new(out, "out") }?;
        out.write(missive_config::default());
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_the_engines() {
        let (config, clock) = missive_config::default().to_engine().unwrap();
        let engine = Config::default();
        assert!(clock.is_none());
        assert_eq!(config.durability, engine.durability);
        assert_eq!(config.group_cap, engine.group_cap);
        assert_eq!(config.queue_capacity, engine.queue_capacity);
        assert_eq!(config.retention, engine.retention);
        assert_eq!(config.checkpoint_interval, engine.checkpoint_interval);
        assert_eq!(config.dedup_window, engine.dedup_window);
    }

    #[test]
    fn out_of_range_fields_are_named() {
        type Break = fn(&mut missive_config);
        let cases: [(Break, &str); 9] = [
            (|c| c.durability = 0, "durability"),
            (
                |c| {
                    c.durability = MISSIVE_DURABILITY_INTERVAL;
                    c.durability_interval_ms = 0;
                },
                "durability_interval_ms",
            ),
            (|c| c.shards = 5000, "shards"),
            (|c| c.segment_window_ms = 1, "segment_window_ms"),
            (|c| c.segment_bytes_max = 1, "segment_bytes_max"),
            (|c| c.group_members_max = 0, "group_members_max"),
            (|c| c.body_bytes_max = u32::MAX, "body_bytes_max"),
            (|c| c.queue_capacity = 0, "queue_capacity"),
            (|c| c.clock = 9, "clock"),
        ];
        for (break_it, field) in cases {
            let mut config = missive_config::default();
            break_it(&mut config);
            let failure = config.to_engine().unwrap_err();
            assert_eq!(failure.code, missive_result::MISSIVE_ERR_INVALID_ARGUMENT);
            assert!(failure.message.contains(field), "{}", failure.message);
        }
    }
}
