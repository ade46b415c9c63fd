//! `LogConfig::huge_pages`: a scrub drops what the page cache holds of each sealed segment and
//! reads it back through a map that asks for 2 MiB pages. Dropping pages is only a change of
//! where the bytes are held: every read, before, during (from another thread, through the same
//! maps) and after, returns what was written, on the real file system.
//!
//! Whether the kernel then maps the segments by 2 MiB pages depends on it (transparent huge
//! pages for files, and a file system with large folios); the index benchmark reports how much
//! of the log it did (`index_compare`, "log maps: … in 2 MiB pages").

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use common::*;
use missive_log::{Durability, Entry, Log, LogConfig, Lsn, RecordPos, ShardId};

fn config(huge_pages: bool) -> LogConfig {
    LogConfig {
        shard_count: Some(1),
        segment_window_ms: 1000,
        // Several 2 MiB pages per segment, and a partial one at its end.
        segment_bytes_max: 5 << 20,
        durability: Durability::Os,
        // Records read in place through the maps (a compressed batch is decoded into a copy).
        compression: false,
        huge_pages,
    }
}

/// Every record of the log with its position.
fn positions(log: &Log) -> Vec<(RecordPos, Entry)> {
    let mut all = Vec::new();
    for batch in log.batches_from(ShardId(0), Lsn::FIRST).unwrap() {
        let (pos, batch) = batch.unwrap();
        let mut entries = batch.entries();
        loop {
            let body_offset = entries.body_offset() as u32;
            let Some(entry) = entries.next() else { break };
            let at = RecordPos {
                batch: pos,
                body_offset,
                lsn: entry.lsn,
            };
            all.push((at, entry));
        }
    }
    all
}

/// Reads the record at `at` alone and checks it.
fn check(log: &Log, at: RecordPos, expected: &Entry) {
    let mut entries = log.read_entries(at, None).unwrap();
    assert_eq!(entries.next().as_ref(), Some(expected), "at {at:?}");
}

#[test]
fn a_scrub_that_drops_cached_pages_keeps_every_byte() {
    let mut rng = Rng::new(seed("huge pages scrub"));
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), config(true)).unwrap();
    // ~18 MiB in 3 time windows: at least three sealed segments of several 2 MiB pages.
    for window in 0..3u64 {
        let tickets: Vec<_> = (0..3_000)
            .map(|n| {
                let pad = 1_000 + rng.below(3_000) as usize;
                log.append(message(chat(n % 7), n, 10_000 + window * 1_000, pad))
                    .unwrap()
            })
            .collect();
        for ticket in tickets {
            ticket.wait().unwrap();
        }
    }
    // A fourth window seals the third's segment.
    log.append(message(chat(0), 0, 13_000, 10))
        .unwrap()
        .wait()
        .unwrap();
    let written = positions(&log);
    log.close().unwrap();

    let log = Log::open(dir.path(), config(true)).unwrap();
    let segments = log.segments(ShardId(0)).unwrap();
    let sealed = segments.iter().filter(|s| s.sealed).count() as u64;
    assert!(sealed >= 3, "{sealed} sealed segments");
    // Every record read once: each sealed segment mapped, its pages in the map's page tables.
    for (at, entry) in &written {
        check(&log, *at, entry);
    }
    // While the scrub drops those pages and reads them back, another thread reads at random
    // through the same maps.
    let done = AtomicBool::new(false);
    let reads = AtomicU64::new(0);
    let report = std::thread::scope(|scope| {
        scope.spawn(|| {
            let mut rng = Rng::new(rng.next());
            while !done.load(Ordering::Relaxed) {
                let (at, entry) = &written[rng.below(written.len() as u64) as usize];
                check(&log, *at, entry);
                reads.fetch_add(1, Ordering::Relaxed);
            }
        });
        let report = log.verify_until(&|| false);
        // Some reads after the scrub too, before the reader stops.
        let until = reads.load(Ordering::Relaxed) + 1_000;
        while reads.load(Ordering::Relaxed) < until {
            std::thread::yield_now();
        }
        done.store(true, Ordering::Relaxed);
        report.unwrap()
    });
    assert_eq!(report.repaged, sealed, "{report:?}");
    assert_eq!(report.segments, segments.len() as u64);
    for (at, entry) in &written {
        check(&log, *at, entry);
    }
    assert_eq!(
        read_all(&log)[0],
        written.iter().map(|(_, e)| e.clone()).collect::<Vec<_>>()
    );
    log.close().unwrap();

    // Off (the default), a scrub leaves the cache alone.
    let log = Log::open(dir.path(), config(false)).unwrap();
    let report = log.verify_until(&|| false).unwrap();
    assert_eq!(report.repaged, 0);
    assert_eq!(report.segments, segments.len() as u64);
    for (at, entry) in &written {
        check(&log, *at, entry);
    }
}

#[test]
fn a_kept_scrub_follows_the_segments_that_seal_later() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), config(true)).unwrap();
    let fill = |window: u64, count: u64| {
        let tickets: Vec<_> = (0..count)
            .map(|n| {
                log.append(message(chat(n % 5), n, 10_000 + window * 1_000, 2_000))
                    .unwrap()
            })
            .collect();
        for ticket in tickets {
            ticket.wait().unwrap();
        }
    };
    fill(0, 500);
    fill(1, 500);
    let mut scrub = log.scrub();
    while scrub.step().unwrap() {}
    let first = scrub.report();
    // One sealed segment and the active one, read as it was.
    assert_eq!((first.segments, first.repaged), (2, 1), "{first:?}");
    assert_eq!(scrub.follow(), 0, "nothing sealed since");

    // The active segment seals, and two more after it.
    fill(2, 500);
    fill(3, 500);
    fill(4, 10);
    assert_eq!(scrub.follow(), 3);
    assert_eq!(scrub.follow(), 0, "each once");
    while scrub.step().unwrap() {}
    let report = scrub.report();
    assert_eq!(report.segments, first.segments + 3, "{report:?}");
    assert_eq!(report.repaged, first.repaged + 3);
    let sealed: u64 = (log.segments(ShardId(0)).unwrap().iter())
        .filter(|s| s.sealed)
        .map(|s| std::fs::metadata(&s.path).unwrap().len())
        .sum();
    // Every sealed byte verified once as sealed, plus the then-active segment's prefix before.
    assert!(
        report.bytes > sealed,
        "{report:?} against {sealed} sealed bytes"
    );
    for (at, entry) in positions(&log) {
        check(&log, at, &entry);
    }
}
