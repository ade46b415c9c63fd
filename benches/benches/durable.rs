//! Criterion suite: durable appends.
//!
//! In one process, in this order: the device's fsync latency (4 KiB append + `fdatasync`, and an
//! in-place overwrite for contrast); then, for 1, 8 and 64 producers, both *blocking* (one ticket
//! in flight each) and *pipelined* (64 in flight each): Missive under `Durability::Always`, SQLite
//! (WAL, `synchronous=FULL`) committing transactions of the mean batch size Missive's group
//! commit just produced, and SQLite fed by the same producers through a group-commit writer
//! thread. 256-byte incompressible payloads; throughput in messages per second.
//!
//! `cargo bench -p missive-benches --bench durable`; files go to `$MISSIVE_BENCH_DIR` or the
//! system temp directory.

use std::path::Path;
use std::time::{Duration, Instant};

use criterion::{
    BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group, criterion_main,
};
use missive_benches::fsync::{FsyncMode, FsyncProbe};
use missive_benches::sqlite::{SqlitePeer, SqliteSync, run_group_commit};
use missive_benches::workload::{BatchTally, Workload, log_config, now_timestamp, run_appends};
use missive_benches::{PAYLOAD_POOL, bench_dir, payloads};
use missive_log::{BATCH_RECORDS_MAX, Durability, Log};

/// Samples per benchmark; each is one timed run of all producers.
const SAMPLES: usize = 10;
/// Tickets in flight per pipelined producer.
const WINDOW: usize = 64;

fn fsync(c: &mut Criterion, dir: &Path) {
    let mut group = c.benchmark_group("fsync_4k");
    group
        .throughput(Throughput::Elements(1))
        .sampling_mode(SamplingMode::Flat);
    for (name, mode) in [
        ("append", FsyncMode::Append),
        ("overwrite", FsyncMode::Overwrite),
    ] {
        let mut probe = FsyncProbe::create(dir, name, mode).expect("create fsync file");
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                (0..iters)
                    .map(|_| probe.step().expect("write + fdatasync"))
                    .sum()
            })
        });
        probe.remove().expect("remove fsync file");
    }
    group.finish();
}

fn durable(c: &mut Criterion) {
    let root = tempfile::tempdir_in(bench_dir()).expect("bench dir");
    fsync(c, root.path());
    let payloads = payloads(PAYLOAD_POOL, 42);
    let timestamp = now_timestamp();
    let mut group = c.benchmark_group("durable");
    group
        .throughput(Throughput::Elements(1))
        .sampling_mode(SamplingMode::Flat);
    for (window, mode) in [(1, "blocking"), (WINDOW, "pipelined")] {
        for producers in [1usize, 8, 64] {
            let dir = tempfile::tempdir_in(root.path()).expect("log dir");
            let log = Log::open(dir.path(), log_config(Durability::Always, 1)).expect("open log");
            let mut tally = BatchTally::new(SAMPLES);
            group.bench_function(
                BenchmarkId::new(format!("missive_{mode}"), producers),
                |b| {
                    b.iter_custom(|iters| {
                        let workload = Workload::counted(producers, window, iters);
                        let outcome =
                            run_appends(&log, &workload, &payloads, timestamp).expect("append");
                        tally.record(&outcome);
                        outcome.elapsed
                    })
                },
            );
            log.close().expect("close log");
            let tx_size = (tally.mean_batch().round() as usize).max(1);
            let (messages, batches) = tally.totals();
            eprintln!(
                "durable/missive_{mode}/{producers}: mean group-commit batch {:.1} \
                 ({messages} records in {batches} batches); SQLite transactions of {tx_size}",
                tally.mean_batch()
            );

            let db = tempfile::tempdir_in(root.path()).expect("db dir");
            let mut peer =
                SqlitePeer::open(&db.path().join("tx.db"), SqliteSync::Full).expect("open db");
            let id = BenchmarkId::new(format!("sqlite_tx_{mode}"), producers);
            group.bench_function(id, |b| {
                b.iter_custom(|iters| {
                    let start = Instant::now();
                    peer.insert_transactions(iters, tx_size, producers, &payloads, None)
                        .expect("insert");
                    start.elapsed()
                })
            });
            drop(peer);

            let path = db.path().join("gc.db");
            let mut tally = BatchTally::new(SAMPLES);
            let id = BenchmarkId::new(format!("sqlite_gc_{mode}"), producers);
            group.bench_function(id, |b| {
                b.iter_custom(|iters| {
                    let workload = Workload::counted(producers, window, iters);
                    let outcome = run_group_commit(
                        &path,
                        SqliteSync::Full,
                        &workload,
                        &payloads,
                        BATCH_RECORDS_MAX,
                    )
                    .expect("group commit");
                    tally.record(&outcome);
                    outcome.elapsed
                })
            });
            eprintln!(
                "durable/sqlite_gc_{mode}/{producers}: mean transaction {:.1} messages",
                tally.mean_batch()
            );
        }
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(SAMPLES)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = durable
}
criterion_main!(benches);
