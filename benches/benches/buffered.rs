//! Criterion suite: buffered appends and sequential reads.
//!
//! Missive under `Durability::Os` from one thread (4096 tickets in flight, and blocking), SQLite
//! (WAL, `synchronous=OFF`) in transactions of the batch size Missive produced; then reading
//! 200,000 records back in order from each. 256-byte incompressible payloads.
//!
//! `cargo bench -p missive-benches --bench buffered`; files go to `$MISSIVE_BENCH_DIR` or the
//! system temp directory.

use std::time::{Duration, Instant};

use criterion::{
    BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group, criterion_main,
};
use missive_benches::sqlite::{SqlitePeer, SqliteSync};
use missive_benches::workload::{
    BatchTally, Workload, fill_log, log_config, now_timestamp, read_all, run_appends,
};
use missive_benches::{PAYLOAD_POOL, bench_dir, payloads};
use missive_log::{Durability, Log};

const SAMPLES: usize = 10;
/// Tickets in flight for the pipelined buffered producer.
const OS_WINDOW: usize = 4096;
/// Records read back per pass.
const READ_RECORDS: u64 = 200_000;

fn buffered(c: &mut Criterion) {
    let root = tempfile::tempdir_in(bench_dir()).expect("bench dir");
    let payloads = payloads(PAYLOAD_POOL, 42);
    let timestamp = now_timestamp();
    let mut group = c.benchmark_group("buffered");
    group
        .throughput(Throughput::Elements(1))
        .sampling_mode(SamplingMode::Flat);
    let mut tx_size = 1;
    for (window, name) in [
        (OS_WINDOW, "missive_os_pipelined"),
        (1, "missive_os_blocking"),
    ] {
        let dir = tempfile::tempdir_in(root.path()).expect("log dir");
        let log = Log::open(dir.path(), log_config(Durability::Os, 1)).expect("open log");
        let mut tally = BatchTally::new(SAMPLES);
        group.bench_function(BenchmarkId::new(name, 1), |b| {
            b.iter_custom(|iters| {
                let workload = Workload::counted(1, window, iters);
                let outcome = run_appends(&log, &workload, &payloads, timestamp).expect("append");
                tally.record(&outcome);
                outcome.elapsed
            })
        });
        log.close().expect("close log");
        eprintln!("buffered/{name}/1: mean batch {:.1}", tally.mean_batch());
        if window > 1 {
            tx_size = (tally.mean_batch().round() as usize).max(1);
        }
    }
    let db = tempfile::tempdir_in(root.path()).expect("db dir");
    let mut peer = SqlitePeer::open(&db.path().join("off.db"), SqliteSync::Off).expect("open db");
    eprintln!("buffered/sqlite_off: transactions of {tx_size}");
    group.bench_function(BenchmarkId::new("sqlite_off", 1), |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            peer.insert_transactions(iters, tx_size, 1, &payloads, None)
                .expect("insert");
            start.elapsed()
        })
    });
    group.finish();
    drop(peer);

    let mut group = c.benchmark_group("read_seq");
    group
        .throughput(Throughput::Elements(READ_RECORDS))
        .sampling_mode(SamplingMode::Flat);
    let dir = tempfile::tempdir_in(root.path()).expect("log dir");
    fill_log(dir.path(), 1, READ_RECORDS, &payloads).expect("fill log");
    let log = Log::open(dir.path(), log_config(Durability::Os, 1)).expect("open log");
    group.bench_function("missive", |b| {
        b.iter(|| {
            let read = read_all(&log).expect("read");
            assert_eq!(read.records, READ_RECORDS);
            read
        })
    });
    log.close().expect("close log");
    let mut peer = SqlitePeer::open(&db.path().join("read.db"), SqliteSync::Off).expect("open db");
    peer.insert_transactions(READ_RECORDS, 10_000, 64, &payloads, None)
        .expect("fill db");
    group.bench_function("sqlite", |b| {
        b.iter(|| {
            let read = peer.read_all().expect("read");
            assert_eq!(read.records, READ_RECORDS);
            read
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(SAMPLES)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = buffered
}
criterion_main!(benches);
