//! Criterion suite: `missive-index` against the targets of issue 3, and SQLite.
//!
//! Builds the dataset of `src/bin/index_compare.rs` once (by default 10,000,000 messages of
//! 256-byte bodies in 100,000 chats, the hot chat receiving 1 in 100, one shard, `Os`,
//! default segments; the same messages in SQLite with a `(chat_id, seq)` index), then measures:
//!
//! - `latest_50`: `Index::latest(chat, 50)` of the hot chat and of a typical chat (a different
//!   one per call), against SQLite's `… WHERE chat_id = ? ORDER BY seq DESC LIMIT 50`;
//! - `pending_100`: `Index::pending(user, device, 100)` for a device that was offline a long time
//!   (two chats of ~99 undelivered messages, each in its own batch) against SQLite's two range
//!   scans, and for one offline briefly (the hot chat's newest 100);
//! - `receipts`: `Index::apply_batch` of 262,144 receipt records already read from the log (the
//!   index's cost alone), per receipt;
//! - `reopen`: `Index::open` from a fresh checkpoint. The full rebuild (minutes at 10 M for the
//!   10 samples Criterion needs) is timed once while the dataset is built and printed.
//!
//! Percentiles (p50 / p99) and resident memory are in the one-process harness
//! (`cargo run --release -p missive-benches --bin index_compare`), which prints Markdown.
//!
//! ```text
//! cargo bench -p missive-benches --bench index
//! MISSIVE_INDEX_MESSAGES=1000000 cargo bench -p missive-benches --bench index -- latest_50
//! ```
//!
//! `MISSIVE_INDEX_MESSAGES` and `MISSIVE_INDEX_CHATS` size the dataset; files go to
//! `$MISSIVE_BENCH_DIR` or the system temp directory.

use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use missive_benches::{PAYLOAD_POOL, bench_dir, payloads};
use missive_index::Index;
use missive_index::codec::{Receipt, ReceiptKind};
use missive_log::{DeviceId, Log, Record, RecordKind, Seq};

// The harness's dataset and queries, shared so that both measure the same thing.
#[path = "../src/bin/index_compare.rs"]
#[allow(dead_code)]
mod harness;

use harness::{
    FETCH, INBOX_FETCH, Spec, append_pipelined, build_log, build_sqlite, missive_latest,
    missive_pending, receipts, sqlite_inbox, sqlite_latest, typical_chat, unapplied_batches,
};

/// Receipts applied per iteration of `receipts/apply_batch`.
const RECEIPTS: u64 = 1 << 18;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn index(c: &mut Criterion) {
    let spec = Spec {
        messages: env_u64("MISSIVE_INDEX_MESSAGES", Spec::FULL.messages),
        chats: env_u64("MISSIVE_INDEX_CHATS", Spec::FULL.chats).max(3),
        ..Spec::FULL
    };
    let root = tempfile::tempdir_in(bench_dir()).expect("bench dir");
    let bodies = payloads(PAYLOAD_POOL, 42);
    let log_dir = root.path().join("log");
    let built = build_log(&log_dir, spec, &bodies).expect("build the log");
    eprintln!(
        "index: {} messages in {} chats appended in {:.2} s ({} batches)",
        spec.messages,
        spec.chats,
        built.elapsed.as_secs_f64(),
        built.batches
    );
    let (conn, took) =
        build_sqlite(&root.path().join("peer.db"), spec, &bodies).expect("build SQLite");
    eprintln!("index: SQLite peer built in {:.2} s", took.as_secs_f64());
    let log = Log::open(&log_dir, spec.log_config()).expect("open log");
    let start = Instant::now();
    let index_dir = root.path().join("index");
    let (mut index, report) = Index::open(&log, &index_dir).expect("rebuild");
    eprintln!(
        "index: full rebuild of {} records in {:.2} s",
        report.replayed,
        start.elapsed().as_secs_f64()
    );
    index.checkpoint().expect("checkpoint");
    let now = spec.now();
    let hot = spec.chat(0);

    let mut group = c.benchmark_group("latest_50");
    group.throughput(Throughput::Elements(1));
    group.bench_function("hot/missive", |b| {
        b.iter(|| missive_latest(&index, &log, hot, FETCH, now).expect("latest"))
    });
    group.bench_function("hot/sqlite", |b| {
        b.iter(|| {
            let rows = sqlite_latest(&conn, 0, FETCH).expect("select");
            assert_eq!(rows.len(), FETCH);
            rows
        })
    });
    group.sampling_mode(SamplingMode::Flat);
    group.bench_function("typical/missive", |b| {
        let mut n = 0;
        b.iter(|| {
            n += 1;
            let chat = typical_chat(spec, n);
            let expect = spec.typical_fetch(chat);
            missive_latest(&index, &log, spec.chat(chat), expect, now).expect("latest")
        })
    });
    group.bench_function("typical/sqlite", |b| {
        let mut n = 0;
        b.iter(|| {
            n += 1;
            let chat = typical_chat(spec, n);
            let rows = sqlite_latest(&conn, chat, FETCH).expect("select");
            assert_eq!(rows.len(), spec.typical_fetch(chat));
            rows
        })
    });
    group.finish();

    let mut group = c.benchmark_group("pending_100");
    group
        .throughput(Throughput::Elements(1))
        .sampling_mode(SamplingMode::Flat);
    group.bench_function("offline_long/missive", |b| {
        let mut n = 0;
        b.iter(|| {
            n += 1;
            let chat = typical_chat(spec, n);
            let (user, expect) = (spec.recipient(chat), spec.inbox_fetch(chat));
            missive_pending(&index, &log, user, DeviceId(0), expect, now).expect("pending")
        })
    });
    group.bench_function("offline_long/sqlite", |b| {
        let mut n = 0;
        b.iter(|| {
            n += 1;
            sqlite_inbox(&conn, spec, typical_chat(spec, n)).expect("select")
        })
    });
    // Device 7 of the hot chat's recipient has everything but the hot chat's newest 100.
    let device = DeviceId(7);
    for (chat, up_to) in [(0, spec.head(0) - INBOX_FETCH as u64), (1, spec.head(1))] {
        let receipt = Receipt {
            user: spec.recipient(chat),
            device,
            kind: ReceiptKind::Delivered,
            up_to: Seq(up_to),
        };
        let record = Record {
            kind: RecordKind::Receipt,
            chat: spec.chat(chat),
            timestamp: spec.timestamp(spec.messages),
            payload: receipt.encode(),
        };
        log.append(record).expect("append").wait().expect("ack");
    }
    index.catch_up(&log).expect("catch up");
    group.sampling_mode(SamplingMode::Auto);
    group.bench_function("offline_briefly/missive", |b| {
        let user = spec.recipient(0);
        b.iter(|| missive_pending(&index, &log, user, device, INBOX_FETCH, now).expect("pending"))
    });
    group.finish();

    let records = receipts(spec, RECEIPTS, 0xC0FFEE).map(|r| ((), r));
    append_pipelined(&log, records, |(), _| {}).expect("append receipts");
    let batches = unapplied_batches(&log, &index).expect("read receipts");
    let mut group = c.benchmark_group("receipts");
    group
        .throughput(Throughput::Elements(RECEIPTS))
        .sampling_mode(SamplingMode::Flat);
    group.bench_function("apply_batch", |b| {
        b.iter_batched(
            || index.clone(),
            |mut index| {
                let mut applied = 0;
                for (pos, batch) in &batches {
                    applied += index.apply_batch(*pos, batch).expect("apply");
                }
                assert_eq!(applied, RECEIPTS);
                index
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
    drop(batches);
    index.catch_up(&log).expect("catch up");
    index.checkpoint().expect("checkpoint");
    drop(index);

    let mut group = c.benchmark_group("reopen");
    group.sampling_mode(SamplingMode::Flat);
    group.bench_function("from_checkpoint", |b| {
        b.iter_with_large_drop(|| {
            let (index, report) = Index::open(&log, &index_dir).expect("open");
            assert!(report.from_checkpoint && report.replayed == 0);
            index
        })
    });
    group.finish();
    log.close().expect("close log");
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = index
}
criterion_main!(benches);
