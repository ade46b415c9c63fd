//! Counters a server exports as metrics.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use missive_fanout::HubStats;

/// A relaxed counter.
#[derive(Debug, Default)]
pub(crate) struct Counter(AtomicU64);

impl Counter {
    pub(crate) fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) sends: Counter,
    pub(crate) duplicates: Counter,
    pub(crate) receipts: Counter,
    pub(crate) deletes: Counter,
    pub(crate) group_changes: Counter,
    pub(crate) bytes_appended: Counter,
    pub(crate) records_applied: Counter,
    pub(crate) batches_applied: Counter,
    pub(crate) checkpoints: Counter,
    pub(crate) segments_expired: Counter,
    pub(crate) background_errors: Counter,
    pub(crate) catch_ups: Counter,
    pub(crate) scrubbed_bytes: Counter,
    pub(crate) scrub_errors: Counter,
    pub(crate) scrub_done: Counter,
}

/// How opening went.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct OpenStats {
    pub(crate) log_open: Duration,
    pub(crate) index_open: Duration,
    pub(crate) from_checkpoint: bool,
    pub(crate) checkpoint_rejected: Option<String>,
    pub(crate) replayed: u64,
    pub(crate) torn_bytes: u64,
}

/// A snapshot of the engine's counters (totals since it opened, unless said otherwise).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
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
    /// Log batches applied to the index (records / batches: the mean group-commit batch).
    pub batches_applied: u64,
    /// Index checkpoints written.
    pub checkpoints: u64,
    /// Log segments removed by retention.
    pub segments_expired: u64,
    /// Failed background checkpoints, retention runs or segment index file writes.
    pub background_errors: u64,
    /// Times a subscription caught up from the index after lagging or a gap.
    pub catch_ups: u64,
    /// Live subscriptions now.
    pub subscriptions: u64,
    /// Users with a live subscription now.
    pub users_online: u64,
    /// Live events published.
    pub events_published: u64,
    /// Live events a full queue missed (their subscriptions caught up from the index).
    pub events_missed: u64,
    /// Subscriptions lagging now.
    pub subscriptions_lagging: u64,
    /// Times a subscription started lagging.
    pub lags: u64,
    /// The deepest subscription queue now.
    pub queue_depth_max: u64,
    /// Opening: the log's recovery.
    pub open_log_ms: u64,
    /// Opening: loading the index and replaying the log after its checkpoint.
    pub open_index_ms: u64,
    /// Opening: whether the index came from a checkpoint (else a full rebuild).
    pub opened_from_checkpoint: bool,
    /// Opening: records replayed into the index.
    pub opened_replayed: u64,
    /// Opening: bytes of torn tails cut from the log.
    pub opened_torn_bytes: u64,
    /// Log batches written (group commits), over all shards.
    pub log_batches: u64,
    /// Records in them: `log_records / log_batches` is the mean group-commit batch.
    pub log_records: u64,
    /// Bytes written to log segments (headers included, after compression).
    pub log_bytes_written: u64,
    /// Data fsyncs of log segments.
    pub fsyncs: u64,
    /// Bytes of stored batches the scrub verified ([`Config::scrub_on_open`](crate::Config::scrub_on_open)):
    /// every segment stored at opening, then each segment as it seals (the one active at
    /// opening counts twice: its prefix then, all of it once sealed).
    pub scrubbed_bytes: u64,
    /// Whether the scrub's first pass went through every segment stored at opening (false
    /// while it runs, if it found damage, or if it is off).
    pub scrub_done: bool,
    /// Damage the scrub found (it stops at the first; reads of the damaged batch fail with
    /// `Corrupt`, and nothing else is affected).
    pub scrub_errors: u64,
}

impl Stats {
    pub(crate) fn collect(
        counters: &Counters,
        hub: &HubStats,
        opened: &OpenStats,
        log: &missive_log::LogStats,
    ) -> Stats {
        Stats {
            sends: counters.sends.get(),
            duplicate_sends: counters.duplicates.get(),
            receipts: counters.receipts.get(),
            deletes: counters.deletes.get(),
            group_changes: counters.group_changes.get(),
            bytes_appended: counters.bytes_appended.get(),
            records_applied: counters.records_applied.get(),
            batches_applied: counters.batches_applied.get(),
            checkpoints: counters.checkpoints.get(),
            segments_expired: counters.segments_expired.get(),
            background_errors: counters.background_errors.get(),
            catch_ups: counters.catch_ups.get(),
            subscriptions: hub.subscriptions as u64,
            users_online: hub.users_online as u64,
            events_published: hub.events_published,
            events_missed: hub.events_missed,
            subscriptions_lagging: hub.subscriptions_lagged as u64,
            lags: hub.lags_total,
            queue_depth_max: hub.queue_depth_max as u64,
            open_log_ms: opened.log_open.as_millis() as u64,
            open_index_ms: opened.index_open.as_millis() as u64,
            opened_from_checkpoint: opened.from_checkpoint,
            opened_replayed: opened.replayed,
            opened_torn_bytes: opened.torn_bytes,
            log_batches: log.batches_written,
            log_records: log.records_written,
            log_bytes_written: log.bytes_written,
            fsyncs: log.fsyncs,
            scrubbed_bytes: counters.scrubbed_bytes.get(),
            scrub_done: counters.scrub_done.get() > 0,
            scrub_errors: counters.scrub_errors.get(),
        }
    }
}
