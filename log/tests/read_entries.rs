//! Record-level reads: `Log::read_entries` from any record position the log reported returns
//! exactly what reading the whole batch and skipping to that record returns, in sealed segments
//! (verified before or not) and the active one, compressed or not, and cut short at `body_end`
//! it ends with the last whole record before it. A position that names no record is `NotFound`,
//! never a panic or garbage; a damaged sealed batch is `Corrupt` on its first read and on every
//! read after, never returned.

mod common;

use std::ops::ControlFlow;
use std::os::unix::fs::FileExt;
use std::path::Path;

use common::*;
use missive_log::batch::{COMPRESS_BACKOFF_MAX, Codec};
use missive_log::{
    Appended, BatchPos, DecodedBatch, Durability, Entry, Error, Log, LogConfig, Lsn, Record,
    RecordPos, Records, ShardId,
};

fn config(compression: bool) -> LogConfig {
    LogConfig {
        shard_count: Some(1),
        segment_window_ms: 1000,
        segment_bytes_max: 64 << 10,
        durability: Durability::Always,
        compression,
        huge_pages: false,
    }
}

/// Appends `count` records with timestamp `ts` in bursts of 1 to 40 (so group commit makes
/// batches of many records) with payloads of 0 to 300 padding bytes; every other burst is noise,
/// which does not compress.
fn fill(log: &Log, count: u64, ts: u64, rng: &mut Rng) {
    let mut n = 0;
    while n < count {
        let burst = (1 + rng.below(40)).min(count - n);
        let noise = rng.below(2) == 0;
        let records = (n..n + burst).map(|n| record(n, ts, rng.below(300) as usize, noise, rng));
        append_all(log, records.collect());
        n += burst;
    }
}

/// A message of `pad` bytes of padding, or of as much noise.
fn record(n: u64, ts: u64, pad: usize, noise: bool, rng: &mut Rng) -> Record {
    let mut record = message(chat(1), n, ts, pad);
    if noise {
        let noise: Vec<u8> = (0..record.payload.len())
            .map(|_| rng.next() as u8)
            .collect();
        record.payload = noise.into();
    }
    record
}

fn append_all(log: &Log, records: Vec<Record>) -> Vec<Appended> {
    let tickets: Vec<_> = records
        .into_iter()
        .map(|r| log.append(r).unwrap())
        .collect();
    tickets.into_iter().map(|t| t.wait().unwrap()).collect()
}

/// Starts a new segment (`ts` opens a new time window) and fills it with batches of several
/// records stored as they are and, if compression is on, compressed.
fn tail(log: &Log, ts: u64, rng: &mut Rng) {
    if log.config().compression {
        // After failures the encoder stops trying to compress for a while: append single
        // records until one is compressed again.
        let compressed = (0..=COMPRESS_BACKOFF_MAX).any(|n| {
            let appended = append_all(log, vec![record(u64::from(n), ts, 300, false, rng)]);
            log.read_batch(appended[0].batch).unwrap().header.codec == Codec::Lz4
        });
        assert!(compressed);
    }
    for noise in [false, true] {
        let records = (0..30).map(|n| record(n, ts, 200, noise, rng)).collect();
        append_all(log, records);
    }
}

/// A batch of the log with the body offset of each of its records, as a reader of whole batches
/// (an index being built) sees them.
struct Seen {
    pos: BatchPos,
    batch: DecodedBatch,
    records: Vec<(u32, Entry)>,
}

impl Seen {
    fn at(&self, i: usize) -> RecordPos {
        RecordPos {
            batch: self.pos,
            body_offset: self.records[i].0,
            lsn: self.records[i].1.lsn,
        }
    }

    /// Where record `i` ends in the body.
    fn end(&self, i: usize) -> u32 {
        self.records
            .get(i + 1)
            .map_or(self.batch.header.raw_len, |(offset, _)| *offset)
    }
}

fn seen(log: &Log) -> Vec<Seen> {
    log.batches_from(ShardId(0), Lsn::FIRST)
        .unwrap()
        .map(|batch| {
            let (pos, batch) = batch.unwrap();
            let mut entries = batch.entries();
            let mut records = Vec::new();
            loop {
                let offset = entries.body_offset() as u32;
                let Some(entry) = entries.next() else { break };
                records.push((offset, entry));
            }
            Seen {
                pos,
                batch,
                records,
            }
        })
        .collect()
}

/// Reads with `read_entries` from every record of every batch, whole and cut at every record
/// end and inside every record, and compares with the whole batch. Returns for each batch whether
/// it is sealed, its codec, and whether it holds several records.
fn check_every_position(log: &Log) -> Vec<(bool, Codec, bool)> {
    let active = log.segments(ShardId(0)).unwrap().last().unwrap().first_lsn;
    let mut kinds = Vec::new();
    for seen in seen(log) {
        let several = seen.records.len() > 1;
        kinds.push((seen.pos.segment != active, seen.batch.header.codec, several));
        let count = seen.records.len();
        for i in 0..count {
            let at = seen.at(i);
            let whole: Vec<Entry> = seen
                .batch
                .entries_from(at.body_offset as usize, at.lsn)
                .collect();
            let mut entries = log.read_entries(at, None).unwrap();
            assert_eq!(entries.len(), count - i);
            // The offsets reported while reading are the batch's, so they can be remembered.
            let mut got = Vec::new();
            loop {
                let offset = entries.body_offset() as u32;
                let Some(entry) = entries.next() else { break };
                assert_eq!(offset, seen.records[i + got.len()].0);
                got.push(entry);
            }
            assert_eq!(got, whole, "{at:?}");
            // The same records in place: fields, payloads, offsets, and shared payload parts.
            let in_place = log
                .read_records(at, None, |mut records| {
                    let mut read = Vec::new();
                    assert_eq!(records.len(), count - i);
                    loop {
                        let offset = records.body_offset() as u32;
                        let Some(record) = records.next() else { break };
                        assert_eq!(offset, seen.records[i + read.len()].0);
                        let payload = record.payload;
                        assert_eq!(record.share(0..payload.len()), payload);
                        if payload.len() > 2 {
                            assert_eq!(
                                record.share(1..payload.len() - 1),
                                payload[1..payload.len() - 1]
                            );
                        }
                        assert!(record.share(0..0).is_empty());
                        read.push(record.to_entry());
                    }
                    read
                })
                .unwrap();
            assert_eq!(in_place, whole, "{at:?} in place");
            for k in i..count {
                let cut = log.read_records(at, Some(seen.end(k)), |records| {
                    records.map(|record| record.to_entry()).collect::<Vec<_>>()
                });
                assert_eq!(
                    cut.unwrap(),
                    whole[..=k - i],
                    "{at:?} in place to record {k}"
                );
                let up_to_k: Vec<Entry> = whole[..=k - i].to_vec();
                let cut = log.read_entries(at, Some(seen.end(k))).unwrap();
                assert_eq!(cut.len(), k - i + 1);
                assert_eq!(cut.collect::<Vec<_>>(), up_to_k, "{at:?} to record {k}");
                // An end inside record k stops before it.
                let inside = log.read_entries(at, Some(seen.end(k) - 1)).unwrap();
                assert_eq!(
                    inside.collect::<Vec<_>>(),
                    whole[..k - i],
                    "{at:?} inside {k}"
                );
            }
            // Ends at or before the record, or past the body.
            assert_eq!(
                log.read_entries(at, Some(at.body_offset)).unwrap().count(),
                0
            );
            assert_eq!(log.read_entries(at, Some(0)).unwrap().count(), 0);
            let past = log.read_entries(at, Some(u32::MAX)).unwrap();
            assert_eq!(past.collect::<Vec<_>>(), whole);
        }
    }
    kinds
}

#[test]
fn reads_from_any_record_equal_the_whole_batch_read() {
    let mut rng = Rng::new(seed("read_entries equal"));
    for compression in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::open(dir.path(), config(compression)).unwrap();
        fill(&log, 400, 10_000, &mut rng);
        tail(&log, 20_000, &mut rng);
        // Segments sealed by this process (mapped, verified on first read) and the active one.
        check_every_position(&log);
        // Again: every batch is verified now, so sealed reads are slices of the map.
        check_every_position(&log);
        log.close().unwrap();
        // Reopened and scrubbed: every sealed segment is known whole, so reads check a position
        // against its list of batch starts.
        let log = Log::open(dir.path(), config(compression)).unwrap();
        log.verify().unwrap();
        check_every_position(&log);
        log.close().unwrap();
        // Reopened: sealed segments are mapped and verified as they are read; the active one was
        // verified by recovery, and is then sealed when a later window starts.
        let log = Log::open(dir.path(), config(compression)).unwrap();
        check_every_position(&log);
        fill(&log, 100, 30_000, &mut rng);
        tail(&log, 40_000, &mut rng);
        let kinds = check_every_position(&log);
        let codecs: &[Codec] = if compression {
            &[Codec::None, Codec::Lz4]
        } else {
            &[Codec::None]
        };
        for sealed in [true, false] {
            for codec in codecs {
                assert!(
                    kinds.contains(&(sealed, *codec, true)),
                    "{codec:?} batches of several records, sealed: {sealed}"
                );
            }
        }
        log.close().unwrap();
    }
}

/// Every record of every batch, alternately whole to the batch's end and cut after the record,
/// with a place that names nothing after every seventh: an LSN past its batch, a segment that
/// does not exist, a shard that does not exist.
fn places(seen: &[Seen]) -> Vec<(RecordPos, Option<u32>)> {
    let mut places = Vec::new();
    for seen in seen {
        for i in 0..seen.records.len() {
            let at = seen.at(i);
            let end = (places.len() % 2 == 1).then(|| seen.end(i));
            places.push((at, end));
            if places.len() % 7 == 0 {
                let bad = match places.len() % 3 {
                    0 => RecordPos {
                        lsn: Lsn(seen.batch.header.end_lsn().0 + 5),
                        ..at
                    },
                    1 => RecordPos {
                        batch: BatchPos {
                            segment: u64::MAX / 2,
                            ..at.batch
                        },
                        ..at
                    },
                    _ => RecordPos {
                        batch: BatchPos {
                            shard: ShardId(9),
                            ..at.batch
                        },
                        ..at
                    },
                };
                places.push((bad, end));
            }
        }
    }
    places
}

/// What a read of records gave: the records, or the error's text.
fn outcome(records: Result<Records<'_>, Error>) -> Result<Vec<Entry>, String> {
    records
        .map(|records| records.map(|record| record.to_entry()).collect())
        .map_err(|error| error.to_string())
}

#[test]
fn reading_many_places_at_once_equals_reading_each() {
    let mut rng = Rng::new(seed("read_each"));
    for compression in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::open(dir.path(), config(compression)).unwrap();
        fill(&log, 400, 10_000, &mut rng);
        tail(&log, 20_000, &mut rng);
        let places = places(&seen(&log));
        log.close().unwrap();
        // Reopened: the first reads of sealed batches verify them (the general path, out of
        // the lock), then once scrubbed, every read takes the common path.
        for scrubbed in [false, true] {
            let log = Log::open(dir.path(), config(compression)).unwrap();
            if scrubbed {
                log.verify().unwrap();
            }
            let mut got = Vec::new();
            log.read_each(&places, |k, records| {
                got.push((k, outcome(records)));
                ControlFlow::Continue(())
            });
            let one_by_one: Vec<_> = places
                .iter()
                .enumerate()
                .map(|(k, &(at, end))| {
                    let read = log.read_records(at, end, |records| outcome(Ok(records)));
                    (k, read.unwrap_or_else(|error| Err(error.to_string())))
                })
                .collect();
            assert!(one_by_one.iter().filter(|(_, read)| read.is_err()).count() >= 3);
            assert_eq!(got, one_by_one);
            // `read` stops the reads when it says so.
            for stop in [0, places.len() / 2, places.len() - 1] {
                let mut visited = Vec::new();
                log.read_each(&places, |k, _| {
                    visited.push(k);
                    if k == stop {
                        ControlFlow::Break(())
                    } else {
                        ControlFlow::Continue(())
                    }
                });
                assert_eq!(visited, (0..=stop).collect::<Vec<_>>());
            }
            log.close().unwrap();
        }
    }
}

#[test]
fn positions_that_name_no_record_are_not_found() {
    let mut rng = Rng::new(seed("read_entries bad positions"));
    for compression in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::open(dir.path(), config(compression)).unwrap();
        fill(&log, 400, 10_000, &mut rng);
        tail(&log, 20_000, &mut rng);
        let batches = seen(&log);
        // Three times: before the sealed batches are verified, after they were read once, and
        // after a scrub.
        for pass in 0..3 {
            if pass == 2 {
                log.verify().unwrap();
            }
            for seen in batches.iter().filter(|s| s.records.len() > 1) {
                let at = seen.at(1);
                let header = seen.batch.header;
                let bad = [
                    RecordPos {
                        batch: BatchPos {
                            offset: at.batch.offset + 1,
                            ..at.batch
                        },
                        ..at
                    },
                    RecordPos {
                        batch: BatchPos {
                            offset: at.batch.offset + 64 + u64::from(at.body_offset),
                            ..at.batch
                        },
                        ..at
                    },
                    RecordPos {
                        batch: BatchPos {
                            offset: 1 << 40,
                            ..at.batch
                        },
                        ..at
                    },
                    RecordPos {
                        batch: BatchPos {
                            segment: 999_999,
                            ..at.batch
                        },
                        ..at
                    },
                    RecordPos {
                        lsn: Lsn(header.first_lsn.0 - 1),
                        ..at
                    },
                    RecordPos {
                        lsn: header.end_lsn(),
                        ..at
                    },
                    RecordPos {
                        lsn: Lsn(u64::MAX),
                        ..at
                    },
                    RecordPos {
                        body_offset: header.raw_len,
                        ..at
                    },
                    RecordPos {
                        body_offset: u32::MAX,
                        ..at
                    },
                    // Inside the record: its flags byte is no record kind.
                    RecordPos {
                        body_offset: at.body_offset + 1,
                        ..at
                    },
                    // No room for the record before it.
                    RecordPos {
                        body_offset: 0,
                        ..at
                    },
                ];
                // A hint only: positions that name nothing are skipped, never a panic.
                log.prefetch(bad.iter().copied().chain([at]));
                for pos in bad {
                    for body_end in [None, Some(header.raw_len), Some(seen.end(1))] {
                        match log.read_entries(pos, body_end) {
                            Err(Error::NotFound { .. }) => {}
                            Err(other) => panic!("{pos:?}: {other}"),
                            Ok(entries) => panic!("{pos:?}: {:?}", entries.collect::<Vec<_>>()),
                        }
                        // In place: the closure is never called for a position naming nothing.
                        let read = log.read_records(pos, body_end, |_| panic!("{pos:?} read"));
                        assert!(matches!(read, Err(Error::NotFound { .. })), "{pos:?}");
                    }
                }
                let shard = RecordPos {
                    batch: BatchPos {
                        shard: ShardId(9),
                        ..at.batch
                    },
                    ..at
                };
                assert!(matches!(
                    log.read_entries(shard, None),
                    Err(Error::NoSuchShard { shard: 9, .. })
                ));
                // The good position still reads.
                assert_eq!(
                    log.read_entries(at, None).unwrap().count(),
                    seen.records.len() - 1
                );
            }
            // Offsets in a sealed segment's last bytes, fewer than a batch header: no batch
            // starts there (a read once called them truncated damage).
            let segments = log.segments(ShardId(0)).unwrap();
            for segment in segments.iter().filter(|segment| segment.sealed) {
                let len = std::fs::metadata(&segment.path).unwrap().len();
                for back in [1, 2, 4, 31, 63] {
                    let pos = RecordPos {
                        batch: BatchPos {
                            shard: ShardId(0),
                            segment: segment.first_lsn,
                            offset: len - back,
                        },
                        body_offset: 0,
                        lsn: Lsn(segment.first_lsn),
                    };
                    match log.read_entries(pos, None) {
                        Err(Error::NotFound { .. }) => {}
                        other => panic!("{pos:?}: {:?}", other.map(|e| e.count())),
                    }
                }
            }
        }
    }
}

/// Flips one bit of the file at `offset`.
fn flip(path: &Path, offset: u64) {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut byte = [0u8];
    file.read_exact_at(&mut byte, offset).unwrap();
    file.write_all_at(&[byte[0] ^ 0x10], offset).unwrap();
}

#[test]
fn a_damaged_sealed_batch_is_corrupt_on_first_read_and_never_returned() {
    let mut rng = Rng::new(seed("read_entries corrupt"));
    for compression in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::open(dir.path(), config(compression)).unwrap();
        fill(&log, 400, 10_000, &mut rng);
        tail(&log, 20_000, &mut rng);
        let batches = seen(&log);
        let segments = log.segments(ShardId(0)).unwrap();
        log.close().unwrap();

        let log = Log::open(dir.path(), config(compression)).unwrap();
        let active = segments.last().unwrap().first_lsn;
        let sealed: Vec<&Seen> = batches
            .iter()
            .filter(|s| s.pos.segment != active && s.records.len() > 1)
            .collect();
        let victim = sealed[rng.below(sealed.len() as u64) as usize];
        let path = &segments
            .iter()
            .find(|s| s.first_lsn == victim.pos.segment)
            .unwrap()
            .path;
        // A bit in the body, flipped on disk after the log opened, before the segment is read.
        let body_len = u64::from(victim.batch.header.body_len);
        flip(path, victim.pos.offset + 64 + rng.below(body_len));
        let at = victim.at(victim.records.len() - 1);
        for body_end in [None, Some(victim.end(victim.records.len() - 1)), None] {
            match log.read_entries(at, body_end) {
                Err(Error::Corrupt { file, offset, .. }) => {
                    assert_eq!((&file, offset), (path, victim.pos.offset));
                }
                Err(other) => panic!("expected Corrupt, got {other}"),
                Ok(entries) => panic!("damage returned: {:?}", entries.collect::<Vec<_>>()),
            }
        }
        assert!(matches!(
            log.read_batch(victim.pos),
            Err(Error::Corrupt { .. })
        ));
        // The other batches of the segment still read.
        for seen in batches
            .iter()
            .filter(|s| s.pos.segment == victim.pos.segment)
        {
            if seen.pos != victim.pos {
                let entries: Vec<Entry> = log.read_entries(seen.at(0), None).unwrap().collect();
                let expected: Vec<Entry> = seen.records.iter().map(|(_, e)| e.clone()).collect();
                assert_eq!(entries, expected);
            }
        }
    }
}
