//! The engine's settings and its clock.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use missive_index::codec::{GROUP_CHANGE_USERS_MAX, MEDIA_REF_BYTES_MAX};
use missive_log::{
    Durability, RECORD_PAYLOAD_BYTES_MAX, SEGMENT_BYTES_MIN, SHARD_COUNT_MAX, Timestamp,
};

/// Where the engine's logic gets "now": server milliseconds since the Unix epoch. Tests replace
/// it with a [`ManualClock`] to jump a day back or ten years forward.
pub trait Clock: Send + Sync + 'static {
    /// The current time.
    fn now(&self) -> Timestamp;
}

/// The system's wall clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        let since_epoch = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Timestamp(since_epoch.as_millis() as u64)
    }
}

/// A clock that only moves when told to. Cheap to clone; clones share the time.
#[derive(Clone, Debug, Default)]
pub struct ManualClock(Arc<AtomicU64>);

impl ManualClock {
    /// A clock showing `now`.
    pub fn new(now: Timestamp) -> ManualClock {
        ManualClock(Arc::new(AtomicU64::new(now.0)))
    }

    /// Sets the time (backwards too).
    pub fn set(&self, now: Timestamp) {
        self.0.store(now.0, Ordering::SeqCst);
    }

    /// Moves the time by `ms` (negative: backwards).
    pub fn advance(&self, ms: i64) {
        let now = self.0.load(Ordering::SeqCst);
        self.0
            .store(now.saturating_add_signed(ms), Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp(self.0.load(Ordering::SeqCst))
    }
}

/// The engine's settings. `Config::default()` is what the documentation of each field says.
#[derive(Clone)]
pub struct Config {
    /// When a send returns: [`Durability::Always`] (default: on disk, fsynced, before the call
    /// returns), `Interval { ms }` or `Os`.
    pub durability: Durability,
    /// Log shards (default: one per core). Fixed once the engine's folder exists.
    pub shards: Option<u32>,
    /// Time window of a log segment (default 1 hour).
    pub segment_window: Duration,
    /// Size cap of a log segment (default 256 MiB).
    pub segment_bytes_max: u64,
    /// How long messages are kept (default 30 days): segments whose window ended longer ago are
    /// deleted by [`Engine::expire`](crate::Engine::expire) and the background task.
    pub retention: Duration,
    /// Members a group may have (default 256).
    pub group_cap: usize,
    /// Largest message body, in bytes (default 64 KiB).
    pub body_bytes_max: usize,
    /// Largest media reference, in bytes (default 1 KiB).
    pub media_ref_bytes_max: usize,
    /// Live events queued per subscription before it is marked lagging (default 1024).
    pub queue_capacity: usize,
    /// How often the background task checkpoints the index (default 60 s; `None`: never,
    /// only at close).
    pub checkpoint_interval: Option<Duration>,
    /// How often the background task applies retention (default 60 s; `None`: never).
    pub retention_interval: Option<Duration>,
    /// How long a `client_msg_id` is remembered for idempotent sends (default 5 minutes of
    /// server time; it survives restarts).
    pub dedup_window: Duration,
    /// Whether a background thread verifies every stored batch's checksum after opening, and
    /// then each segment as it seals (default `true`): it finds damage early, and reads of
    /// verified batches skip their checksum, so the first read of an old chat does not pay for
    /// checking a whole batch.
    pub scrub_on_open: bool,
    /// Whether sealed segments are held in 2 MiB pages (default `false`; see
    /// [`LogConfig::huge_pages`](missive_log::LogConfig::huge_pages)): for a log that fits in
    /// memory, random reads (inbox fetches of devices offline a long time) walk far fewer page
    /// tables. The scrub after opening ([`Config::scrub_on_open`]) puts them there.
    pub huge_pages: bool,
    /// Where "now" comes from (default the system clock).
    pub clock: Arc<dyn Clock>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            durability: Durability::Always,
            shards: None,
            segment_window: Duration::from_secs(3600),
            segment_bytes_max: 256 << 20,
            retention: Duration::from_secs(30 * 24 * 3600),
            group_cap: 256,
            body_bytes_max: 64 << 10,
            media_ref_bytes_max: 1024,
            queue_capacity: 1024,
            checkpoint_interval: Some(Duration::from_secs(60)),
            retention_interval: Some(Duration::from_secs(60)),
            dedup_window: Duration::from_secs(300),
            scrub_on_open: true,
            huge_pages: false,
            clock: Arc::new(SystemClock),
        }
    }
}

/// Bytes of a message record besides its body and media reference (its fixed fields), so that
/// the largest body and media together stay within a log record.
const MESSAGE_FIXED_BYTES: usize = 128;

impl Config {
    /// Checks the settings the engine relies on; [`Engine::open`](crate::Engine::open) calls it.
    pub fn validate(&self) -> crate::Result<()> {
        let invalid = |what: String| Err(crate::Error::InvalidArgument(what));
        if self.group_cap == 0 || self.group_cap > GROUP_CHANGE_USERS_MAX {
            return invalid(format!(
                "group_cap {} must be 1..={GROUP_CHANGE_USERS_MAX}",
                self.group_cap
            ));
        }
        if self.queue_capacity == 0 || self.queue_capacity > missive_fanout::QUEUE_CAPACITY_MAX {
            return invalid(format!(
                "queue_capacity {} must be 1..={}",
                self.queue_capacity,
                missive_fanout::QUEUE_CAPACITY_MAX
            ));
        }
        if self.media_ref_bytes_max > MEDIA_REF_BYTES_MAX {
            return invalid(format!(
                "media_ref_bytes_max {} is above {MEDIA_REF_BYTES_MAX}",
                self.media_ref_bytes_max
            ));
        }
        let room = RECORD_PAYLOAD_BYTES_MAX - MEDIA_REF_BYTES_MAX - MESSAGE_FIXED_BYTES;
        if self.body_bytes_max > room {
            return invalid(format!(
                "body_bytes_max {} is above {room} (a log record holds {RECORD_PAYLOAD_BYTES_MAX})",
                self.body_bytes_max
            ));
        }
        if self.shards == Some(0) || self.shards.is_some_and(|n| n > SHARD_COUNT_MAX) {
            return invalid(format!("shards must be 1..={SHARD_COUNT_MAX}"));
        }
        if (self.segment_bytes_max) < SEGMENT_BYTES_MIN {
            return invalid(format!(
                "segment_bytes_max must be at least {SEGMENT_BYTES_MIN}"
            ));
        }
        if self.segment_window.as_millis() == 0 {
            return invalid("segment_window must be positive".into());
        }
        if let Durability::Interval { ms: 0 } = self.durability {
            return invalid("an Interval durability needs a positive interval".into());
        }
        Ok(())
    }
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("durability", &self.durability)
            .field("shards", &self.shards)
            .field("segment_window", &self.segment_window)
            .field("segment_bytes_max", &self.segment_bytes_max)
            .field("retention", &self.retention)
            .field("group_cap", &self.group_cap)
            .field("body_bytes_max", &self.body_bytes_max)
            .field("media_ref_bytes_max", &self.media_ref_bytes_max)
            .field("queue_capacity", &self.queue_capacity)
            .field("checkpoint_interval", &self.checkpoint_interval)
            .field("retention_interval", &self.retention_interval)
            .field("dedup_window", &self.dedup_window)
            .finish_non_exhaustive()
    }
}
