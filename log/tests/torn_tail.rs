//! Torn tails and damaged batches in the newest segment.
//!
//! Proves that truncating the newest segment at every byte offset inside its last three batches
//! recovers exactly the whole batches before the cut (and the log keeps working), and that
//! flipping any bit of those batches ends either as a cut torn tail (the damaged batch is the
//! last one) or as `Corrupt` naming the file and the damaged batch's offset (valid batches follow
//! it) — never as a panic or a silently shortened log.

mod common;

use common::*;
use missive_log::{Appended, CorruptKind, Durability, Error, Lsn, ShardId, SimStorage};
use std::path::PathBuf;

const BATCHES: u64 = 6;

/// A one-shard log holding `BATCHES` batches of one record each, in one segment. Returns the
/// disk, the segment's path and each batch's append result.
fn fixture() -> (SimStorage, PathBuf, Vec<Appended>) {
    let disk = SimStorage::new();
    let mut config = config(1, Durability::Always);
    config.segment_bytes_max = 1 << 20;
    config.compression = false;
    let log = open_sim(&disk, &config).unwrap();
    let appended: Vec<Appended> = (0..BATCHES)
        .map(|n| {
            log.append(message(chat(1), n, 5_000, 10 * n as usize))
                .unwrap()
                .wait()
                .unwrap()
        })
        .collect();
    let path = log.segments(ShardId(0)).unwrap()[0].path.clone();
    log.close().unwrap();
    (disk, path, appended)
}

fn test_config() -> missive_log::LogConfig {
    let mut config = config(1, Durability::Always);
    config.segment_bytes_max = 1 << 20;
    config
}

#[test]
fn truncation_at_every_offset_keeps_exactly_the_whole_batches_before_it() {
    let (disk, path, appended) = fixture();
    let original = disk.file_content(&path).unwrap();
    let starts: Vec<u64> = appended.iter().map(|a| a.batch.offset).collect();
    let first_cut = starts[starts.len() - 3];
    let mut cases = 0;
    for cut in first_cut..=original.len() as u64 {
        disk.set_file_content(&path, original[..cut as usize].to_vec());
        let log = open_sim(&disk, &test_config()).unwrap();
        let whole = starts
            .iter()
            .skip(1)
            .chain([&(original.len() as u64)])
            .filter(|&&end| end <= cut)
            .count();
        let boundary = if whole == 0 {
            0
        } else {
            starts.get(whole).copied().unwrap_or(original.len() as u64)
        };
        assert_eq!(
            log.recovery().torn_bytes,
            vec![cut - boundary],
            "cut at {cut}"
        );
        let entries = read_all(&log).remove(0);
        assert_eq!(entries.len(), whole, "cut at {cut}");
        for (n, entry) in entries.iter().enumerate() {
            assert_eq!(entry.lsn, Lsn(n as u64 + 1));
            assert_eq!(entry.record, message(chat(1), n as u64, 5_000, 10 * n));
        }
        // The repaired log takes new appends right after the kept batches.
        if cut % 7 == 0 {
            let next = log
                .append(message(chat(1), 99, 5_000, 0))
                .unwrap()
                .wait()
                .unwrap();
            assert_eq!(next.lsn, Lsn(whole as u64 + 1));
            assert_eq!(next.batch.offset, boundary);
        }
        log.close().unwrap();
        cases += 1;
    }
    eprintln!("{cases} truncation offsets checked");
    assert!(cases > 3 * 64);
}

#[test]
fn every_bit_flip_in_the_last_batches_is_cut_or_reported() {
    let (disk, path, appended) = fixture();
    let original = disk.file_content(&path).unwrap();
    let starts: Vec<u64> = appended.iter().map(|a| a.batch.offset).collect();
    let (mut cut, mut corrupt) = (0, 0);
    for (index, &start) in starts.iter().enumerate().skip(starts.len() - 3) {
        let end = starts
            .get(index + 1)
            .copied()
            .unwrap_or(original.len() as u64);
        let is_last = index == starts.len() - 1;
        for bit in start * 8..end * 8 {
            let mut damaged = original.clone();
            damaged[(bit / 8) as usize] ^= 1 << (bit % 8);
            disk.set_file_content(&path, damaged);
            match open_sim(&disk, &test_config()) {
                Ok(log) => {
                    assert!(
                        is_last,
                        "a bad batch followed by valid ones was cut (bit {bit})"
                    );
                    assert_eq!(log.recovery().torn_bytes, vec![end - start]);
                    assert_eq!(read_all(&log)[0].len(), index);
                    cut += 1;
                }
                Err(Error::Corrupt { file, offset, kind }) => {
                    assert!(
                        !is_last,
                        "the last batch is a torn tail, not corruption (bit {bit})"
                    );
                    assert_eq!((file, offset), (path.clone(), start), "bit {bit}");
                    assert_ne!(kind, CorruptKind::Truncated);
                    corrupt += 1;
                }
                Err(other) => panic!("bit {bit}: unexpected {other}"),
            }
        }
    }
    eprintln!("{cut} flips cut as torn tails, {corrupt} reported as corrupt");
    assert!(cut > 0 && corrupt > 0);
}

#[test]
fn an_emptied_newest_segment_is_renamed_to_the_next_window_not_duplicated() {
    let disk = SimStorage::new();
    let config = test_config();
    let log = open_sim(&disk, &config).unwrap();
    log.append(message(chat(1), 0, 5_000, 0))
        .unwrap()
        .wait()
        .unwrap();
    let path = log.segments(ShardId(0)).unwrap()[0].path.clone();
    log.close().unwrap();
    // Torn inside the first batch: recovery leaves an empty newest segment for window 5 s.
    disk.set_file_content(&path, disk.file_content(&path).unwrap()[..10].to_vec());
    let log = open_sim(&disk, &config).unwrap();
    assert_eq!(log.head(ShardId(0)).unwrap(), Lsn(1));
    let appended = log
        .append(message(chat(1), 1, 9_000, 0))
        .unwrap()
        .wait()
        .unwrap();
    assert_eq!(appended.lsn, Lsn(1));
    let segments = log.segments(ShardId(0)).unwrap();
    assert_eq!(segments.len(), 1, "{segments:?}");
    assert_eq!(
        (segments[0].first_lsn, segments[0].window_start_ms),
        (1, 9_000)
    );
    log.close().unwrap();
    assert!(disk.file_content(&path).is_none(), "the old name is gone");
    let log = open_sim(&disk, &config).unwrap();
    assert_eq!(read_all(&log)[0][0].record, message(chat(1), 1, 9_000, 0));
}
