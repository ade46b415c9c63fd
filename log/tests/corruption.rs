//! Damage in sealed segments, on real files read through memory maps.
//!
//! Proves that a flipped bit anywhere in a sealed segment is reported as `Corrupt` with the
//! segment's file and the damaged batch's offset, by reads and by `verify`, and is never trimmed
//! or skipped; and that a reader holding a mapped segment keeps reading correct bytes while
//! retention deletes the file under it.

mod common;

use std::os::unix::fs::FileExt;

use common::*;
use missive_log::{Appended, Durability, Error, Log, LogConfig, Lsn, ShardId, Timestamp};

fn config() -> LogConfig {
    common::config(1, Durability::Os)
}

/// Fills a one-shard log with enough records for several sealed segments.
fn fill(dir: &std::path::Path, count: u64, timestamp: impl Fn(u64) -> u64) -> Vec<Appended> {
    let log = Log::open(dir, config()).unwrap();
    let appended = (0..count)
        .map(|n| {
            log.append(message(chat(1), n, timestamp(n), 100))
                .unwrap()
                .wait()
                .unwrap()
        })
        .collect();
    log.close().unwrap();
    appended
}

#[test]
fn a_flipped_bit_in_a_sealed_segment_is_reported_with_file_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    let appended = fill(dir.path(), 200, |_| 10_000);
    let seed = seed("sealed flip");
    let mut rng = Rng::new(seed);
    for _ in 0..20 {
        let log = Log::open(dir.path(), config()).unwrap();
        let segments = log.segments(ShardId(0)).unwrap();
        assert!(segments.len() >= 3, "the fixture needs sealed segments");
        drop(log);
        // Pick a batch in a sealed segment and a bit inside it.
        let sealed: Vec<&Appended> = appended
            .iter()
            .filter(|a| a.batch.segment != segments.last().unwrap().first_lsn)
            .collect();
        let victim = sealed[rng.below(sealed.len() as u64) as usize];
        let segment = segments
            .iter()
            .find(|s| s.first_lsn == victim.batch.segment)
            .unwrap();
        let next = appended
            .iter()
            .map(|a| a.batch)
            .find(|b| b.segment == victim.batch.segment && b.offset > victim.batch.offset)
            .map_or(std::fs::metadata(&segment.path).unwrap().len(), |b| {
                b.offset
            });
        let byte = victim.batch.offset + rng.below(next - victim.batch.offset);
        let bit = 1u8 << rng.below(8);
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&segment.path)
            .unwrap();
        let flip = |file: &std::fs::File| {
            let mut b = [0u8];
            file.read_exact_at(&mut b, byte).unwrap();
            file.write_all_at(&[b[0] ^ bit], byte).unwrap();
        };
        flip(&file);

        let log = Log::open(dir.path(), config()).unwrap();
        let expected = (segment.path.clone(), victim.batch.offset);
        let read_error = log
            .read_from(ShardId(0), Lsn::FIRST)
            .unwrap()
            .find_map(Result::err)
            .expect("the damage is found");
        match read_error {
            Error::Corrupt { file, offset, .. } => assert_eq!((file, offset), expected),
            other => panic!("expected Corrupt, got {other}"),
        }
        match log.verify() {
            Err(Error::Corrupt { file, offset, .. }) => assert_eq!((file, offset), expected),
            other => panic!("expected Corrupt, got {other:?}"),
        }
        // Reading from after the damaged batch still works: the damage is reported, not spread.
        let after = Lsn(victim.lsn.0 + 100);
        if after.0 <= 200 {
            let first = log.read_from(ShardId(0), after).unwrap().next().unwrap();
            if let Ok(entry) = first {
                assert!(entry.lsn >= after);
            }
        }
        log.close().unwrap();
        flip(&file); // repair for the next round
    }
    Log::open(dir.path(), config()).unwrap().verify().unwrap();
}

#[test]
fn a_reader_keeps_its_mapped_segment_while_retention_deletes_it() {
    let dir = tempfile::tempdir().unwrap();
    // Timestamps step a window every 10 records, so segments seal by time and by size.
    fill(dir.path(), 300, |n| 1_000 * (n / 10));
    for round in 0..50u64 {
        let log = Log::open(dir.path(), config()).unwrap();
        let before = log.segments(ShardId(0)).unwrap();
        let mut reader = log.read_from(ShardId(0), Lsn::FIRST).unwrap();
        let first = reader.next().unwrap().unwrap();
        let removed = log
            .retain(Timestamp(1_000 * (round + 2)))
            .unwrap()
            .segments_removed;
        // The reader goes on through the deleted (still mapped) segment, verified batch by batch.
        let mut previous = first.lsn;
        for entry in reader {
            let entry = entry.unwrap();
            assert!(entry.lsn > previous);
            let n = entry.record.payload.split(|&b| b == b':').nth(1).unwrap();
            let n: u64 = std::str::from_utf8(n).unwrap().parse().unwrap();
            assert_eq!(entry.lsn, Lsn(n + 1), "payload matches its LSN");
            previous = entry.lsn;
        }
        let after = log.segments(ShardId(0)).unwrap();
        assert_eq!(after.len(), before.len() - removed);
        log.close().unwrap();
        if after.len() <= 1 {
            break;
        }
    }
}
