//! Every bound of the log, as a named constant with its unit, and the relations between them
//! checked at compile time.

/// The largest payload one record may carry: 1 MiB. Chat messages are far smaller (the server caps
/// content at 64 KiB); the headroom is for group-change and system records.
pub const RECORD_PAYLOAD_BYTES_MAX: usize = 1 << 20;

/// The most records one batch holds. Appenders wait for room when a shard's queue is full.
pub const BATCH_RECORDS_MAX: usize = 8192;

/// The largest uncompressed body of one batch: 8 MiB.
pub const BATCH_BODY_BYTES_MAX: usize = 8 << 20;

/// The most shards a log may have. Each shard owns one writer thread and one open segment.
pub const SHARD_COUNT_MAX: u32 = 1024;

/// The smallest segment size cap a log accepts: 4 KiB (small caps are for tests; a batch larger
/// than the cap gets a segment of its own).
pub const SEGMENT_BYTES_MIN: u64 = 4 << 10;

/// The default segment size cap: 256 MiB.
pub const SEGMENT_BYTES_DEFAULT: u64 = 256 << 20;

/// The largest segment size cap: 1 GiB. Offsets inside a segment then fit in `u32` with room.
pub const SEGMENT_BYTES_MAX: u64 = 1 << 30;

/// The default time window of a segment: one hour, in milliseconds.
pub const SEGMENT_WINDOW_MS_DEFAULT: u64 = 60 * 60 * 1000;

/// The shortest segment time window: one second.
pub const SEGMENT_WINDOW_MS_MIN: u64 = 1000;

/// The longest segment time window: 30 days.
pub const SEGMENT_WINDOW_MS_MAX: u64 = 30 * 24 * 60 * 60 * 1000;

/// The longest `Durability::Interval`: one minute.
pub const SYNC_INTERVAL_MS_MAX: u64 = 60 * 1000;

// Relations the code relies on.
const _: () =
    assert!(RECORD_PAYLOAD_BYTES_MAX + crate::record::RECORD_HEADER_LEN <= BATCH_BODY_BYTES_MAX);
const _: () = assert!(
    crate::batch::BATCH_HEADER_LEN as u64 + (BATCH_BODY_BYTES_MAX as u64) < SEGMENT_BYTES_MAX
);
const _: () = assert!(BATCH_BODY_BYTES_MAX <= u32::MAX as usize);
const _: () = assert!((BATCH_RECORDS_MAX as u64) < u32::MAX as u64);
const _: () = assert!(
    SEGMENT_BYTES_MIN <= SEGMENT_BYTES_DEFAULT && SEGMENT_BYTES_DEFAULT <= SEGMENT_BYTES_MAX
);
const _: () = assert!(SEGMENT_WINDOW_MS_MIN <= SEGMENT_WINDOW_MS_DEFAULT);
const _: () = assert!(SEGMENT_WINDOW_MS_DEFAULT <= SEGMENT_WINDOW_MS_MAX);
