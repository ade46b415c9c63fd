//! Injected I/O failures: failed fsyncs, failed writes, a full disk.
//!
//! Proves that a failed fsync (of a batch, of the directory after creating a segment) poisons
//! the shard — the failing append gets `SyncFailed`, every later one `Poisoned`, and the writer
//! never retries the fsync to report success — that a failed write poisons likewise, that a full
//! disk is `StorageFull` without poisoning and without damaging anything written, that retention
//! still frees space on a full disk and appends resume after it, and that reopening recovers
//! every append acknowledged before the failure.

mod common;

use common::*;
use missive_log::storage::{Damage, Fault, FaultOp};
use missive_log::{Durability, Error, Log, Lsn, ShardId, SimStorage, Timestamp};

fn append(log: &Log, n: u64, timestamp: u64) -> missive_log::Result<Lsn> {
    log.append(message(chat(1), n, timestamp, 50))?
        .wait()
        .map(|a| a.lsn)
}

fn config() -> missive_log::LogConfig {
    common::config(1, Durability::Always)
}

/// Appends `count` records and returns the disk and the open log.
fn seeded(count: u64) -> (SimStorage, Log) {
    let disk = SimStorage::new();
    let log = open_sim(&disk, &config()).unwrap();
    for n in 0..count {
        append(&log, n, 10_000).unwrap();
    }
    (disk, log)
}

fn assert_recovers(disk: &SimStorage, acked: u64) {
    // The strictest reading: the power goes too, so only synced bytes count.
    disk.power_cut(Damage::DropUnsynced);
    let log = open_sim(disk, &config()).unwrap();
    let entries = read_all(&log).remove(0);
    assert!(
        entries.len() as u64 >= acked,
        "{} of {acked} acknowledged survived",
        entries.len()
    );
    for (n, entry) in entries.iter().enumerate() {
        assert_eq!(entry.record, message(chat(1), n as u64, 10_000, 50));
    }
    assert!(!log.is_poisoned(ShardId(0)).unwrap());
    append(&log, entries.len() as u64, 10_000).expect("a reopened log takes appends");
}

#[test]
fn a_failed_fsync_poisons_the_shard_until_reopen() {
    for nth in 0..4 {
        let (disk, log) = seeded(5);
        disk.inject(Fault::eio(FaultOp::Sync, nth));
        let mut acked = 5;
        let failed = loop {
            match append(&log, acked, 10_000) {
                Ok(_) => acked += 1,
                Err(error) => break error,
            }
        };
        assert!(
            matches!(failed, Error::SyncFailed { shard: 0, .. }),
            "{failed}"
        );
        // The fault was a single failure; a retried fsync would now succeed. It must not happen.
        for n in 0..3 {
            match append(&log, acked + n, 10_000) {
                Err(Error::Poisoned { shard: 0 }) => {}
                other => panic!("expected Poisoned, got {other:?}"),
            }
        }
        assert!(log.is_poisoned(ShardId(0)).unwrap());
        assert!(matches!(log.sync(), Err(Error::Poisoned { .. })));
        drop(log);
        assert_recovers(&disk, acked);
    }
}

#[test]
fn a_failed_directory_fsync_on_segment_roll_poisons() {
    let (disk, log) = seeded(1);
    disk.inject(Fault {
        persistent: true,
        ..Fault::eio(FaultOp::SyncDir, 0)
    });
    let mut acked = 1;
    let failed = loop {
        // Each append moves to a new time window, so the writer must create a segment.
        match append(&log, acked, 10_000 + 1_000 * acked) {
            Ok(_) => acked += 1,
            Err(error) => break error,
        }
    };
    assert!(matches!(failed, Error::SyncFailed { .. }), "{failed}");
    assert!(matches!(
        append(&log, 99, 99_000),
        Err(Error::Poisoned { .. })
    ));
    drop(log);
    disk.power_cut(Damage::DropUnsynced);
    let log = open_sim(&disk, &config()).unwrap();
    assert_eq!(read_all(&log)[0].len() as u64, acked);
}

#[test]
fn a_failed_write_poisons_and_loses_nothing_acknowledged() {
    for nth in 0..3 {
        let (disk, log) = seeded(3);
        disk.inject(Fault::eio(FaultOp::Write, nth));
        let mut acked = 3;
        let failed = loop {
            match append(&log, acked, 10_000) {
                Ok(_) => acked += 1,
                Err(error) => break error,
            }
        };
        assert!(matches!(failed, Error::Io { op: "write", .. }), "{failed}");
        assert!(matches!(
            append(&log, acked, 10_000),
            Err(Error::Poisoned { .. })
        ));
        drop(log);
        assert_recovers(&disk, acked);
    }
}

#[test]
fn a_full_disk_is_a_typed_error_and_damages_nothing() {
    let (disk, log) = seeded(10);
    let used: u64 = disk
        .file_content(&log.segments(ShardId(0)).unwrap()[0].path)
        .unwrap()
        .len() as u64;
    // Room for a few more batches, then full.
    disk.set_capacity(Some(used + 300 + 64));
    let mut acked = 10;
    let error = loop {
        match append(&log, acked, 10_000) {
            Ok(_) => acked += 1,
            Err(error) => break error,
        }
    };
    assert!(matches!(error, Error::StorageFull { shard: 0 }), "{error}");
    // Not poisoned: the partial batch was cut off, and the next append fails the same clean way.
    assert!(!log.is_poisoned(ShardId(0)).unwrap());
    assert!(matches!(
        append(&log, acked, 10_000),
        Err(Error::StorageFull { .. })
    ));
    assert_eq!(read_all(&log)[0].len() as u64, acked);
    log.verify().unwrap();
    // Space comes back: appends resume with the next LSN.
    disk.set_capacity(None);
    assert_eq!(append(&log, acked, 10_000).unwrap(), Lsn(acked + 1));
    drop(log);
    assert_recovers(&disk, acked + 1);
}

#[test]
fn retention_frees_a_full_disk_and_appends_resume() {
    let disk = SimStorage::new();
    let log = open_sim(&disk, &config()).unwrap();
    // Two old windows of records, then fill the disk in a new window.
    for n in 0..40 {
        append(&log, n, 1_000 * (1 + n / 20)).unwrap();
    }
    disk.set_capacity(Some(0)); // full from now on
    let mut n = 40;
    let error = loop {
        match append(&log, n, 5_000) {
            Ok(_) => n += 1,
            Err(error) => break error,
        }
    };
    assert!(matches!(error, Error::StorageFull { .. }), "{error}");
    let report = log.retain(Timestamp(3_000)).unwrap();
    assert!(report.segments_removed >= 2, "{report:?}");
    disk.set_capacity(None);
    let lsn = append(&log, n, 5_000).unwrap();
    assert_eq!(lsn, Lsn(n + 1));
    let entries = read_all(&log).remove(0);
    assert_eq!(entries.last().unwrap().lsn, lsn);
    assert!(entries.iter().all(|e| e.record.timestamp.0 >= 3_000));
}

#[test]
fn persistent_sync_failure_fails_close_too() {
    let (disk, log) = seeded(2);
    disk.inject(Fault {
        persistent: true,
        ..Fault::eio(FaultOp::Sync, 0)
    });
    assert!(append(&log, 2, 10_000).is_err());
    assert!(log.close().is_err(), "close reports the poisoned shard");
}
