//! Missive workloads: producers appending to a log, and reading it back.

use std::collections::{HashSet, VecDeque};
use std::path::Path;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use bytes::Bytes;
use missive_log::{
    AppendTicket, BatchPos, ChatId, Durability, Log, LogConfig, Lsn, Record, RecordKind, ShardId,
    Timestamp, UserId,
};

use crate::stats::nanos;

/// The log configuration every benchmark uses: the defaults (1-hour, 256 MiB segments, lz4 on)
/// with the given durability and shard count.
pub fn log_config(durability: Durability, shards: u32) -> LogConfig {
    LogConfig {
        shard_count: Some(shards),
        durability,
        ..LogConfig::default()
    }
}

/// The chat producer `producer` writes to: one 1:1 chat each.
pub fn chat_of(producer: usize) -> ChatId {
    ChatId::direct(
        UserId(producer as u64 + 1),
        UserId(1_000_000 + producer as u64),
    )
}

/// The current time as a log timestamp (the log never reads a clock itself).
pub fn now_timestamp() -> Timestamp {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    Timestamp(ms)
}

/// What the producers of one run do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Workload {
    /// Producer threads.
    pub producers: usize,
    /// Tickets each producer keeps in flight: 1 is a *blocking* producer (append, wait, repeat);
    /// more is a *pipelined* one that waits for its oldest ticket only when the window is full.
    pub window: usize,
    /// Appends all producers make together at most, spread evenly (the first
    /// `messages % producers` producers make one more).
    pub messages: u64,
    /// Wall time after which producers stop appending (then wait for what is in flight).
    pub duration: Option<Duration>,
    /// Whether to record every append's ack latency (append call to acknowledgement seen).
    pub record_latency: bool,
}

impl Workload {
    /// `producers` producers with `window` tickets each, appending `total` messages between them,
    /// without a time limit.
    pub fn counted(producers: usize, window: usize, total: u64) -> Workload {
        Workload {
            producers,
            window,
            messages: total,
            duration: None,
            record_latency: false,
        }
    }

    /// `producers` producers with `window` tickets each, appending for `duration`.
    pub fn timed(producers: usize, window: usize, duration: Duration) -> Workload {
        Workload {
            producers,
            window,
            messages: u64::MAX,
            duration: Some(duration),
            record_latency: true,
        }
    }
}

/// What one run measured.
#[derive(Clone, Debug, Default)]
pub struct AppendOutcome {
    /// Acknowledged appends.
    pub messages: u64,
    /// Wall time from the start signal until the last acknowledgement.
    pub elapsed: Duration,
    /// Distinct batches (group commits) the acknowledged appends landed in.
    pub batches: u64,
    /// Every append's ack latency in nanoseconds, if recorded.
    pub latencies_ns: Vec<u64>,
}

impl AppendOutcome {
    /// Acknowledged appends per second.
    pub fn throughput(&self) -> f64 {
        self.messages as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Mean records per batch: appends / distinct [`BatchPos`] values of their acknowledgements.
    pub fn mean_batch(&self) -> f64 {
        self.messages as f64 / self.batches.max(1) as f64
    }

    /// Adds another run's figures to this one (for pooling trials).
    pub fn absorb(&mut self, other: AppendOutcome) {
        self.messages += other.messages;
        self.elapsed += other.elapsed;
        self.batches += other.batches;
        self.latencies_ns.extend(other.latencies_ns);
    }
}

/// What one producer saw.
#[derive(Default)]
struct ProducerOutcome {
    messages: u64,
    batches: Vec<BatchPos>,
    latencies_ns: Vec<u64>,
}

impl ProducerOutcome {
    fn acknowledged(&mut self, started: Option<Instant>, ticket: AppendTicket) -> Result<()> {
        let appended = ticket.wait()?;
        if let Some(started) = started {
            self.latencies_ns.push(nanos(started.elapsed()));
        }
        // A producer's appends land in batches in order, so consecutive duplicates suffice.
        if self.batches.last() != Some(&appended.batch) {
            self.batches.push(appended.batch);
        }
        self.messages += 1;
        Ok(())
    }
}

type Result<T> = std::result::Result<T, missive_log::Error>;

fn produce(
    log: &Log,
    workload: &Workload,
    producer: usize,
    quota: u64,
    payloads: &[Bytes],
    timestamp: Timestamp,
    deadline: Option<Instant>,
) -> Result<ProducerOutcome> {
    let chat = chat_of(producer);
    let mut outcome = ProducerOutcome::default();
    let mut in_flight: VecDeque<(Option<Instant>, AppendTicket)> =
        VecDeque::with_capacity(workload.window);
    let mut next_payload = producer.wrapping_mul(7919);
    for _ in 0..quota {
        if in_flight.len() >= workload.window.max(1) {
            let (started, ticket) = in_flight.pop_front().expect("window is not empty");
            outcome.acknowledged(started, ticket)?;
        }
        let now = (workload.record_latency || deadline.is_some()).then(Instant::now);
        if let (Some(deadline), Some(now)) = (deadline, now)
            && now >= deadline
        {
            break;
        }
        next_payload = (next_payload + 1) % payloads.len();
        let ticket = log.append(Record {
            kind: RecordKind::Message,
            chat,
            timestamp,
            payload: payloads[next_payload].clone(),
        })?;
        in_flight.push_back((now.filter(|_| workload.record_latency), ticket));
    }
    for (started, ticket) in in_flight {
        outcome.acknowledged(started, ticket)?;
    }
    Ok(outcome)
}

/// Runs `workload` against `log`: starts the producers together, appends records of `payloads`
/// (cycled) with `timestamp`, and returns what was acknowledged, how fast and in how many batches.
pub fn run_appends(
    log: &Log,
    workload: &Workload,
    payloads: &[Bytes],
    timestamp: Timestamp,
) -> Result<AppendOutcome> {
    assert!(workload.producers >= 1 && !payloads.is_empty());
    let producers = workload.producers;
    let total = workload.messages;
    let barrier = Barrier::new(producers + 1);
    let (elapsed, results) = std::thread::scope(|scope| {
        let barrier = &barrier;
        let handles: Vec<_> = (0..producers)
            .map(|producer| {
                scope.spawn(move || {
                    barrier.wait();
                    let deadline = workload.duration.map(|d| Instant::now() + d);
                    let per = total / producers as u64;
                    let quota = per + u64::from((producer as u64) < total % producers as u64);
                    produce(
                        log, workload, producer, quota, payloads, timestamp, deadline,
                    )
                })
            })
            .collect();
        barrier.wait();
        let start = Instant::now();
        let results: Vec<_> = handles
            .into_iter()
            .map(|h| h.join().expect("producer panicked"))
            .collect();
        (start.elapsed(), results)
    });
    let mut outcome = AppendOutcome {
        elapsed,
        ..AppendOutcome::default()
    };
    let mut batches = HashSet::new();
    for result in results {
        let producer = result?;
        outcome.messages += producer.messages;
        batches.extend(producer.batches);
        outcome.latencies_ns.extend(producer.latencies_ns);
    }
    outcome.batches = batches.len() as u64;
    Ok(outcome)
}

/// Keeps the (messages, batches) of the most recent runs, to tell the group-commit batch size of
/// a Criterion benchmark's measured samples apart from its warm-up calls (which come first).
#[derive(Clone, Debug, Default)]
pub struct BatchTally {
    runs: VecDeque<(u64, u64)>,
    keep: usize,
}

impl BatchTally {
    /// Remembers the last `keep` runs (use the benchmark's sample size).
    pub fn new(keep: usize) -> BatchTally {
        BatchTally {
            runs: VecDeque::with_capacity(keep),
            keep: keep.max(1),
        }
    }

    /// Records one run.
    pub fn record(&mut self, outcome: &AppendOutcome) {
        if self.runs.len() == self.keep {
            self.runs.pop_front();
        }
        self.runs.push_back((outcome.messages, outcome.batches));
    }

    /// Messages and batches of the remembered runs.
    pub fn totals(&self) -> (u64, u64) {
        self.runs
            .iter()
            .fold((0, 0), |(m, b), &(rm, rb)| (m + rm, b + rb))
    }

    /// Mean records per batch over the remembered runs (1 if none).
    pub fn mean_batch(&self) -> f64 {
        let (messages, batches) = self.totals();
        if batches == 0 {
            1.0
        } else {
            messages as f64 / batches as f64
        }
    }
}

/// What a sequential read returned.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReadOutcome {
    /// Records read.
    pub records: u64,
    /// Payload bytes read.
    pub payload_bytes: u64,
}

/// Reads every record of every shard from the first LSN on, touching each payload.
pub fn read_all(log: &Log) -> Result<ReadOutcome> {
    let mut outcome = ReadOutcome::default();
    for shard in 0..log.shard_count() {
        for entry in log.read_from(ShardId(shard), Lsn::FIRST)? {
            let entry = entry?;
            outcome.records += 1;
            outcome.payload_bytes += entry.record.payload.len() as u64;
            std::hint::black_box(entry.record.payload.first());
        }
    }
    Ok(outcome)
}

/// Fills a new log in `dir` with `messages` records from one pipelined producer under
/// [`Durability::Os`], closes it (syncing) and returns how many batches it took.
pub fn fill_log(dir: &Path, shards: u32, messages: u64, payloads: &[Bytes]) -> Result<u64> {
    let log = Log::open(dir, log_config(Durability::Os, shards))?;
    let outcome = run_appends(
        &log,
        &Workload::counted(1, 4096, messages),
        payloads,
        now_timestamp(),
    )?;
    log.close()?;
    Ok(outcome.batches)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counted_runs_append_exactly_and_read_back() -> Result<()> {
        let dir = tempfile::tempdir().expect("tempdir");
        let payloads = crate::payloads(64, 1);
        let log = Log::open(dir.path(), log_config(Durability::Always, 2))?;
        let mut workload = Workload::counted(3, 4, 100);
        workload.record_latency = true;
        let outcome = run_appends(&log, &workload, &payloads, now_timestamp())?;
        assert_eq!(outcome.messages, 100);
        assert_eq!(outcome.latencies_ns.len(), 100);
        assert!((1..=100).contains(&outcome.batches));
        assert!(outcome.mean_batch() >= 1.0);
        let mut tally = BatchTally::new(1);
        tally.record(&AppendOutcome::default());
        tally.record(&outcome);
        assert_eq!(tally.totals(), (100, outcome.batches));
        let read = read_all(&log)?;
        assert_eq!(read.records, 100);
        assert_eq!(read.payload_bytes, 100 * crate::PAYLOAD_BYTES as u64);
        log.close()
    }

    #[test]
    fn timed_runs_stop_and_fill_reads_back() -> Result<()> {
        let dir = tempfile::tempdir().expect("tempdir");
        let payloads = crate::payloads(64, 2);
        let log = Log::open(dir.path(), log_config(Durability::Os, 1))?;
        let workload = Workload::timed(2, 16, Duration::from_millis(50));
        let outcome = run_appends(&log, &workload, &payloads, now_timestamp())?;
        assert!(outcome.messages > 0);
        assert_eq!(outcome.latencies_ns.len() as u64, outcome.messages);
        assert!(outcome.elapsed < Duration::from_secs(10));
        log.close()?;

        let dir = tempfile::tempdir().expect("tempdir");
        let batches = fill_log(dir.path(), 1, 1000, &payloads)?;
        assert!((1..=1000).contains(&batches));
        let log = Log::open(dir.path(), log_config(Durability::Os, 1))?;
        assert_eq!(read_all(&log)?.records, 1000);
        log.close()
    }
}
