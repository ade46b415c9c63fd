//! The engine demo: opens a log in a temporary folder, appends messages from several threads
//! under `Durability::Always`, reopens it and reads everything back, printing what it did.
//!
//! Run it with `cargo run --release -p missive-log --example demo`.

use std::time::Instant;

use bytes::Bytes;
use missive_log::{
    ChatId, Durability, Log, LogConfig, Lsn, Record, RecordKind, ShardId, Timestamp, UserId,
};

const THREADS: u64 = 8;
const MESSAGES_PER_THREAD: u64 = 2_000;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::temp_dir().join(format!("missive-demo-{}", std::process::id()));
    let config = LogConfig {
        shard_count: Some(4),
        durability: Durability::Always,
        ..LogConfig::default()
    };
    println!(
        "opening a log in {} ({} shards, fsync per batch)",
        dir.display(),
        4
    );
    let log = Log::open(&dir, config.clone())?;

    let started = Instant::now();
    std::thread::scope(|scope| {
        for thread in 0..THREADS {
            let log = &log;
            scope.spawn(move || {
                let chat = ChatId::direct(UserId(thread), UserId(thread + 100));
                for n in 0..MESSAGES_PER_THREAD {
                    let record = Record {
                        kind: RecordKind::Message,
                        chat,
                        timestamp: Timestamp(1_700_000_000_000 + n),
                        payload: Bytes::from(format!("message {n} from user {thread}")),
                    };
                    log.append(record)
                        .and_then(|ticket| ticket.wait())
                        .expect("append");
                }
            });
        }
    });
    let elapsed = started.elapsed();
    let total = THREADS * MESSAGES_PER_THREAD;
    println!(
        "appended {total} messages from {THREADS} threads in {:.2?} ({:.0} durable appends/s)",
        elapsed,
        total as f64 / elapsed.as_secs_f64()
    );
    log.close()?;

    let log = Log::open(&dir, config)?;
    println!(
        "reopened: recovery cut {:?} torn bytes per shard",
        log.recovery().torn_bytes
    );
    let mut read = 0;
    for shard in 0..log.shard_count() {
        let shard = ShardId(shard);
        let mut count = 0;
        let mut last = None;
        for entry in log.read_from(shard, Lsn::FIRST)? {
            let entry = entry?;
            count += 1;
            last = Some(entry);
        }
        read += count;
        let segments = log.segments(shard)?.len();
        if let Some(last) = last {
            println!(
                "shard {}: {count} records in {segments} segment(s); last is lsn {} = {:?}",
                shard.0,
                last.lsn.0,
                String::from_utf8_lossy(&last.record.payload)
            );
        }
    }
    assert_eq!(read, total, "every acknowledged message reads back");
    log.verify()?;
    println!("read back all {read} messages; every batch checksum verified");
    drop(log);
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
