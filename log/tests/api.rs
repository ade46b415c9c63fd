//! The public API's contract: bad input gets a distinct typed error and changes nothing;
//! concurrent appenders get dense, unique LSNs in their own order; tickets work as futures.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use bytes::Bytes;
use common::*;
use missive_log::storage::Storage;
use missive_log::{
    BatchPos, ChatId, CorruptKind, Durability, Error, Log, LogConfig, Lsn,
    RECORD_PAYLOAD_BYTES_MAX, Record, RecordKind, ShardId, SimStorage, Timestamp,
};

fn config() -> LogConfig {
    common::config(2, Durability::Always)
}

#[test]
fn invalid_configurations_are_refused() {
    let disk = SimStorage::new();
    let bad = [
        LogConfig {
            shard_count: Some(0),
            ..config()
        },
        LogConfig {
            shard_count: Some(100_000),
            ..config()
        },
        LogConfig {
            segment_window_ms: 0,
            ..config()
        },
        LogConfig {
            segment_bytes_max: 10,
            ..config()
        },
        LogConfig {
            segment_bytes_max: u64::MAX,
            ..config()
        },
        LogConfig {
            durability: Durability::Interval { ms: 0 },
            ..config()
        },
    ];
    for config in bad {
        let result = open_sim(&disk, &config);
        assert!(
            matches!(result, Err(Error::InvalidConfig { .. })),
            "{config:?}"
        );
    }
    assert!(
        !disk.exists(Path::new("/log/LOG")).unwrap(),
        "a refused open creates nothing"
    );
}

#[test]
fn a_second_open_of_the_same_directory_is_locked_out() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), config()).unwrap();
    assert!(matches!(
        Log::open(dir.path(), config()),
        Err(Error::Locked { .. })
    ));
    drop(log);
    Log::open(dir.path(), config()).unwrap();
}

#[test]
fn the_shard_count_is_pinned_at_creation() {
    let disk = SimStorage::new();
    open_sim(&disk, &config()).unwrap().close().unwrap();
    let other = LogConfig {
        shard_count: Some(3),
        ..config()
    };
    match open_sim(&disk, &other) {
        Err(Error::ConfigMismatch {
            field: "shard_count",
            stored: 2,
            requested: 3,
        }) => {}
        other => panic!("{other:?}"),
    }
    // `None` adopts what is stored.
    let log = open_sim(
        &disk,
        &LogConfig {
            shard_count: None,
            ..config()
        },
    )
    .unwrap();
    assert_eq!(log.shard_count(), 2);
}

#[test]
fn a_damaged_or_foreign_metadata_file_is_refused() {
    let disk = SimStorage::new();
    open_sim(&disk, &config()).unwrap().close().unwrap();
    let path = Path::new("/log/LOG");
    let original = disk.file_content(path).unwrap();
    let mut flipped = original.clone();
    flipped[13] ^= 1;
    disk.set_file_content(path, flipped);
    assert!(matches!(
        open_sim(&disk, &config()),
        Err(Error::Corrupt {
            kind: CorruptKind::BadFile,
            ..
        })
    ));
    // A newer format version, correctly checksummed.
    let mut newer = original.clone();
    newer[8] = 9;
    let crc = crc32fast::hash(&newer[..24]);
    newer[24..].copy_from_slice(&crc.to_le_bytes());
    disk.set_file_content(path, newer);
    assert!(matches!(
        open_sim(&disk, &config()),
        Err(Error::UnsupportedVersion { found: 9, .. })
    ));
    // Segments without their metadata file.
    disk.set_file_content(path, original);
    disk.remove_file(path).unwrap();
    assert!(matches!(
        open_sim(&disk, &config()),
        Err(Error::Corrupt { .. })
    ));
}

#[test]
fn oversized_records_and_unknown_shards_are_refused() {
    let disk = SimStorage::new();
    let log = open_sim(&disk, &config()).unwrap();
    let record = Record {
        kind: RecordKind::Message,
        chat: chat(1),
        timestamp: Timestamp(1),
        payload: Bytes::from(vec![0u8; RECORD_PAYLOAD_BYTES_MAX + 1]),
    };
    match log.append(record) {
        Err(Error::RecordTooLarge { bytes, bytes_max }) => {
            assert_eq!(
                (bytes, bytes_max),
                (RECORD_PAYLOAD_BYTES_MAX + 1, RECORD_PAYLOAD_BYTES_MAX)
            );
        }
        other => panic!("{other:?}"),
    }
    // The largest record is fine.
    let largest = Record {
        kind: RecordKind::Message,
        chat: chat(1),
        timestamp: Timestamp(1),
        payload: Bytes::from(vec![7u8; RECORD_PAYLOAD_BYTES_MAX]),
    };
    log.append(largest.clone()).unwrap().wait().unwrap();
    let shard = log.shard_of(chat(1));
    assert_eq!(
        log.read_from(shard, Lsn::FIRST)
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .record,
        largest
    );
    assert!(matches!(
        log.read_from(ShardId(2), Lsn::FIRST),
        Err(Error::NoSuchShard { .. })
    ));
    assert!(matches!(
        log.head(ShardId(7)),
        Err(Error::NoSuchShard {
            shard: 7,
            shard_count: 2
        })
    ));
}

#[test]
fn reading_a_batch_at_a_position_that_is_not_one_is_not_found() {
    let disk = SimStorage::new();
    let log = open_sim(&disk, &config()).unwrap();
    let a = log
        .append(message(chat(1), 0, 5, 10))
        .unwrap()
        .wait()
        .unwrap();
    let b = log
        .append(message(chat(1), 1, 5, 10))
        .unwrap()
        .wait()
        .unwrap();
    let batch = log.read_batch(b.batch).unwrap();
    assert_eq!(batch.entries().next().unwrap().lsn, b.lsn);
    assert_eq!(
        log.read_batch(a.batch)
            .unwrap()
            .entries()
            .next()
            .unwrap()
            .lsn,
        a.lsn
    );
    let bad = [
        BatchPos {
            offset: b.batch.offset + 1,
            ..b.batch
        },
        BatchPos {
            offset: 1 << 40,
            ..b.batch
        },
        BatchPos {
            segment: 999,
            ..b.batch
        },
    ];
    for pos in bad {
        assert!(
            matches!(log.read_batch(pos), Err(Error::NotFound { .. })),
            "{pos:?}"
        );
    }
    // A read beyond the head returns nothing, not an error.
    assert!(
        log.read_from(a.batch.shard, Lsn(1000))
            .unwrap()
            .next()
            .is_none()
    );
}

#[test]
fn concurrent_appenders_get_dense_unique_lsns_in_their_own_order() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(
        dir.path(),
        LogConfig {
            shard_count: Some(1),
            ..config()
        },
    )
    .unwrap();
    const THREADS: u64 = 8;
    const EACH: u64 = 300;
    let results: Vec<Vec<Lsn>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let log = &log;
                scope.spawn(move || {
                    // Pipelined: a window of tickets in flight per thread.
                    let tickets: Vec<_> = (0..EACH)
                        .map(|n| log.append(message(chat(t), n, 1_000 + n, 20)).unwrap())
                        .collect();
                    tickets.into_iter().map(|t| t.wait().unwrap().lsn).collect()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut all: Vec<u64> = results.iter().flatten().map(|l| l.0).collect();
    for lsns in &results {
        assert!(
            lsns.windows(2).all(|w| w[0] < w[1]),
            "a thread's appends keep their order"
        );
    }
    all.sort_unstable();
    assert_eq!(all, (1..=THREADS * EACH).collect::<Vec<_>>());
    let entries = read_all(&log).remove(0);
    for (thread, lsns) in results.iter().enumerate() {
        for (n, lsn) in lsns.iter().enumerate() {
            let entry = &entries[lsn.0 as usize - 1];
            assert_eq!(
                entry.record,
                message(chat(thread as u64), n as u64, 1_000 + n as u64, 20)
            );
        }
    }
}

struct Flag(std::sync::atomic::AtomicBool, std::thread::Thread);

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.0.store(true, std::sync::atomic::Ordering::Release);
        self.1.unpark();
    }
}

/// A minimal executor: the ticket must need no particular runtime.
fn block_on<F: std::future::Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    let flag = Arc::new(Flag(false.into(), std::thread::current()));
    let waker = Waker::from(Arc::clone(&flag));
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
        while !flag.0.swap(false, std::sync::atomic::Ordering::Acquire) {
            std::thread::park();
        }
    }
}

#[test]
fn tickets_are_futures() {
    let disk = SimStorage::new();
    let log = open_sim(&disk, &config()).unwrap();
    let ticket = log.append(message(chat(3), 0, 5, 0)).unwrap();
    let appended = block_on(ticket).unwrap();
    assert_eq!(appended.lsn, Lsn(1));
    let tickets: Vec<_> = (1..50)
        .map(|n| log.append(message(chat(3), n, 5, 0)).unwrap())
        .collect();
    let lsns: Vec<u64> = tickets
        .into_iter()
        .map(|t| block_on(t).unwrap().lsn.0)
        .collect();
    assert_eq!(lsns, (2..=50).collect::<Vec<_>>());
}

#[test]
fn appends_after_close_are_refused_and_ids_stay_distinct() {
    let disk = SimStorage::new();
    let log = open_sim(&disk, &config()).unwrap();
    log.append(message(ChatId::group(1), 0, 5, 0))
        .unwrap()
        .wait()
        .unwrap();
    log.close().unwrap();
    // Reopened, the log continues; the group's chat stays in the same shard.
    let log = open_sim(&disk, &config()).unwrap();
    let shard = log.shard_of(ChatId::group(1));
    assert_eq!(log.head(shard).unwrap(), Lsn(2));
}

#[test]
fn batch_readers_report_the_positions_appends_were_acknowledged_with() {
    let disk = SimStorage::new();
    let log = open_sim(
        &disk,
        &LogConfig {
            shard_count: Some(1),
            ..config()
        },
    )
    .unwrap();
    let appended: Vec<_> = (0..40)
        .map(|n| {
            log.append(message(chat(1), n, 1_000 * (n / 8), 90))
                .unwrap()
                .wait()
                .unwrap()
        })
        .collect();
    let batches: Vec<_> = log
        .batches_from(ShardId(0), Lsn(5))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    // One record per batch here: each batch is where its record's append said it was.
    assert_eq!(batches.len(), 36);
    for (pos, batch) in &batches {
        let lsn = batch.header.first_lsn;
        assert_eq!(*pos, appended[lsn.0 as usize - 1].batch);
        assert_eq!(log.read_batch(*pos).unwrap().header, batch.header);
    }
    assert!(
        log.segments(ShardId(0)).unwrap().len() > 3,
        "the read crossed segments"
    );
}

#[test]
fn unwoken_appends_are_written_once_woken_and_refused_alike() {
    let disk = SimStorage::new();
    let log = open_sim(&disk, &config()).unwrap();
    let shard = log.shard_of(chat(1));
    // Several records queued without waking the writer, then one wake: all are acknowledged,
    // in order, with dense LSNs.
    let tickets: Vec<_> = (0..5)
        .map(|n| log.append_unwoken(message(chat(1), n, 1 + n, 16)).unwrap())
        .collect();
    log.wake(shard);
    let lsns: Vec<u64> = tickets
        .into_iter()
        .map(|t| t.wait().unwrap().lsn.0)
        .collect();
    assert_eq!(lsns, vec![1, 2, 3, 4, 5]);
    // The same checks as `append`.
    let mut too_large = message(chat(1), 9, 9, 0);
    too_large.payload = Bytes::from(vec![0u8; RECORD_PAYLOAD_BYTES_MAX + 1]);
    assert!(matches!(
        log.append_unwoken(too_large),
        Err(Error::RecordTooLarge { .. })
    ));
    // Waking a shard that does not exist is harmless.
    log.wake(ShardId(99));
    assert_eq!(read_all(&log)[shard.0 as usize].len(), 5);
}
