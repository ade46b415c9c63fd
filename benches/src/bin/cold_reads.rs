//! Cold record reads in segments of one-record batches: what a reader remembering record
//! positions pays per record when each record is in a batch of its own (a server under light
//! load writes one message per group commit) and every cache is cold.
//!
//! ```text
//! cargo run --release -p missive-benches --bin cold_reads -- [--records 3000000] [--rounds 20000]
//! ```
//!
//! Appends `--records` records of 100 bytes, one per batch (each append waits for the one
//! before), under `Durability::Os` into default segments (256 MiB: ~1.4 M batches each), scrubs
//! the log (`Log::verify`, which leaves each sealed segment its table of batches), then
//! `--rounds` times: a 64 MiB random walk (caches and TLB emptied), then 100
//! `Log::read_entries` at random positions in the sealed segments, timed together. Prints the
//! p50 and p90 of a round. The files go to `$MISSIVE_BENCH_DIR` (else the system temp dir)
//! and are removed at the end.
#![forbid(unsafe_code)]

use std::time::Instant;

use bytes::Bytes;
use missive_log::{
    ChatId, Durability, Log, LogConfig, Record, RecordKind, RecordPos, ShardId, Timestamp,
};

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|at| args.get(at + 1))
        .map_or(default, |value| value.parse().expect("a number"))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (records, rounds) = (arg("--records", 3_000_000), arg("--rounds", 20_000));
    let base = std::env::var_os("MISSIVE_BENCH_DIR").map_or_else(std::env::temp_dir, Into::into);
    let dir = tempfile::tempdir_in(base)?;
    let config = LogConfig {
        shard_count: Some(1),
        durability: Durability::Os,
        ..LogConfig::default()
    };
    let log = Log::open(dir.path(), config)?;
    let started = Instant::now();
    let mut places = Vec::with_capacity(records as usize);
    for i in 0..records {
        let record = Record {
            kind: RecordKind::Message,
            chat: ChatId::from_u128(u128::from(i % 1000) + 1),
            timestamp: Timestamp(1_767_225_600_000),
            payload: Bytes::from(vec![7u8; 100]),
        };
        let appended = log.append(record)?.wait()?;
        places.push(RecordPos {
            batch: appended.batch,
            body_offset: 0,
            lsn: appended.lsn,
        });
    }
    let appended = started.elapsed();
    log.verify()?;
    let segments = log.segments(ShardId(0))?;
    let active = segments.last().map(|s| s.first_lsn);
    places.retain(|at| Some(at.batch.segment) != active);
    assert!(!places.is_empty(), "no sealed segment: raise --records");
    println!(
        "{records} records appended one per batch in {appended:.1?}; {} segments, {} records in sealed ones",
        segments.len(),
        places.len()
    );
    let mut walk = vec![1u8; 64 << 20];
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state as usize
    };
    let mut times = Vec::with_capacity(rounds as usize);
    for _ in 0..rounds {
        let mut sum = 0u8;
        for _ in 0..walk.len() / 4096 {
            sum = sum.wrapping_add(walk[next() % walk.len()]);
        }
        walk[0] = sum;
        let picked: Vec<RecordPos> = (0..100).map(|_| places[next() % places.len()]).collect();
        let started = Instant::now();
        for at in &picked {
            std::hint::black_box(log.read_entries(*at, None)?.len());
        }
        times.push(started.elapsed());
    }
    times.sort_unstable();
    let at = |q: f64| times[((times.len() as f64 * q) as usize).min(times.len() - 1)];
    println!(
        "100 cold reads, one record per batch: p50 {:.1?}, p90 {:.1?}",
        at(0.5),
        at(0.9)
    );
    log.close()?;
    Ok(())
}
