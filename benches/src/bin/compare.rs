//! The comparison harness: Missive's log against the device's fsync latency and SQLite, in one
//! process and one run, printed as Markdown tables.
//!
//! ```text
//! cargo run --release -p missive-benches --bin compare -- [--trials 3] [--secs 1] [--dir /tmp]
//! ```
//!
//! Options (all optional):
//!
//! | option | default | meaning |
//! |---|---|---|
//! | `--trials N` | 3 | timed trials per scenario; tables show the median and the range |
//! | `--secs S` | 1.0 | length of one trial (after a 0.3 s warm-up per scenario) |
//! | `--fsync-samples N` | 2000 | 4 KiB append + fdatasync samples (capped at 20 s) |
//! | `--shards N` | 1 | shards of every Missive log (1 = one file, one writer, like SQLite) |
//! | `--window N` | 64 | tickets in flight per pipelined producer |
//! | `--os-window N` | 4096 | tickets in flight for the buffered (`Durability::Os`) producer |
//! | `--read-messages N` | 1000000 | records written, then read back sequentially |
//! | `--dir PATH` | `$MISSIVE_BENCH_DIR`, else the system temp dir | where the logs, databases and fsync file live |
//! | `--quick` | | a smoke run: 1 trial of 0.2 s, 100 fsync samples, 20000 reads |
#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use missive_benches::fsync::{FsyncMode, FsyncProbe, fsync_latencies};
use missive_benches::sqlite::{SqlitePeer, SqliteSync, run_group_commit};
use missive_benches::stats::{Latency, fmt_ns, fmt_rate, median, nanos};
use missive_benches::workload::{
    AppendOutcome, Workload, chat_of, fill_log, log_config, now_timestamp, read_all, run_appends,
};
use missive_log::{BATCH_RECORDS_MAX, Durability, Log, Record, RecordKind};

type AnyResult<T> = Result<T, Box<dyn std::error::Error>>;

/// Command-line settings.
#[derive(Clone, Debug)]
struct Args {
    trials: usize,
    secs: f64,
    fsync_samples: usize,
    shards: u32,
    window: usize,
    os_window: usize,
    read_messages: u64,
    dir: PathBuf,
}

impl Args {
    fn parse() -> AnyResult<Args> {
        let mut args = Args {
            trials: 3,
            secs: 1.0,
            fsync_samples: 2000,
            shards: 1,
            window: 64,
            os_window: 4096,
            read_messages: 1_000_000,
            dir: missive_benches::bench_dir(),
        };
        let mut it = std::env::args().skip(1);
        while let Some(flag) = it.next() {
            let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
            match flag.as_str() {
                "--trials" => args.trials = value()?.parse()?,
                "--secs" => args.secs = value()?.parse()?,
                "--fsync-samples" => args.fsync_samples = value()?.parse()?,
                "--shards" => args.shards = value()?.parse()?,
                "--window" => args.window = value()?.parse()?,
                "--os-window" => args.os_window = value()?.parse()?,
                "--read-messages" => args.read_messages = value()?.parse()?,
                "--dir" => args.dir = PathBuf::from(value()?),
                "--quick" => {
                    args.trials = 1;
                    args.secs = 0.2;
                    args.fsync_samples = 100;
                    args.read_messages = 20_000;
                }
                "-h" | "--help" => {
                    println!("see the doc comment of benches/src/bin/compare.rs");
                    std::process::exit(0);
                }
                other => return Err(format!("unknown argument {other}").into()),
            }
        }
        args.trials = args.trials.max(1);
        Ok(args)
    }

    fn trial(&self) -> Duration {
        Duration::from_secs_f64(self.secs)
    }
}

const WARM_UP: Duration = Duration::from_millis(300);

/// Per-trial throughputs plus everything pooled over the trials.
#[derive(Debug, Default)]
struct Measured {
    rates: Vec<f64>,
    pooled: AppendOutcome,
}

impl Measured {
    fn median(&self) -> f64 {
        median(&self.rates)
    }

    fn range(&self) -> String {
        let min = self.rates.iter().copied().fold(f64::INFINITY, f64::min);
        let max = self.rates.iter().copied().fold(0.0, f64::max);
        format!("{}–{}", fmt_rate(min), fmt_rate(max))
    }

    /// Half the range relative to the median, in percent: the noise figure of the tables.
    fn spread_pct(&self) -> f64 {
        let min = self.rates.iter().copied().fold(f64::INFINITY, f64::min);
        let max = self.rates.iter().copied().fold(0.0, f64::max);
        50.0 * (max - min) / self.median().max(1e-9)
    }

    fn latency(&self) -> Latency {
        Latency::from_samples(&mut self.pooled.latencies_ns.clone())
    }

    fn add(&mut self, outcome: AppendOutcome) {
        self.rates.push(outcome.throughput());
        self.pooled.absorb(outcome);
    }
}

/// Missive: a fresh log, a warm-up, then `trials` timed runs of the same workload.
fn missive(
    args: &Args,
    payloads: &[Bytes],
    durability: Durability,
    producers: usize,
    window: usize,
) -> AnyResult<Measured> {
    missive_with(args, payloads, durability, producers, window, true)
}

/// [`missive()`] with the log's batch compression on or off.
fn missive_with(
    args: &Args,
    payloads: &[Bytes],
    durability: Durability,
    producers: usize,
    window: usize,
    compression: bool,
) -> AnyResult<Measured> {
    let dir = tempfile::tempdir_in(&args.dir)?;
    let mut config = log_config(durability, args.shards);
    config.compression = compression;
    let log = Log::open(dir.path(), config)?;
    let timestamp = now_timestamp();
    run_appends(
        &log,
        &Workload::timed(producers, window, WARM_UP),
        payloads,
        timestamp,
    )?;
    let mut measured = Measured::default();
    for _ in 0..args.trials {
        let workload = Workload::timed(producers, window, args.trial());
        measured.add(run_appends(&log, &workload, payloads, timestamp)?);
    }
    log.close()?;
    Ok(measured)
}

/// Ack latency of one blocking producer under `Durability::Always`, interleaved with the fsync
/// probe in rounds of 10 + 10 so that both see the same device (its latency drifts with other
/// load). Returns (fsync, ack) latencies.
fn interleaved(args: &Args, payloads: &[Bytes]) -> AnyResult<(Latency, Latency)> {
    let dir = tempfile::tempdir_in(&args.dir)?;
    let log = Log::open(
        dir.path().join("log"),
        log_config(Durability::Always, args.shards),
    )?;
    let mut probe = FsyncProbe::create(dir.path(), "probe.bin", FsyncMode::Append)?;
    let timestamp = now_timestamp();
    let mut next = 0;
    let mut append = || -> AnyResult<u64> {
        next = (next + 1) % payloads.len();
        let start = Instant::now();
        log.append(Record {
            kind: RecordKind::Message,
            chat: chat_of(0),
            timestamp,
            payload: payloads[next].clone(),
        })?
        .wait()?;
        Ok(nanos(start.elapsed()))
    };
    for _ in 0..10 {
        probe.step()?;
        append()?;
    }
    let rounds = (args.fsync_samples / 20).max(2);
    let (mut syncs, mut acks) = (Vec::new(), Vec::new());
    let deadline = Instant::now() + Duration::from_secs(20);
    for _ in 0..rounds {
        for _ in 0..10 {
            syncs.push(nanos(probe.step()?));
        }
        for _ in 0..10 {
            acks.push(append()?);
        }
        if Instant::now() >= deadline {
            break;
        }
    }
    probe.remove()?;
    log.close()?;
    Ok((
        Latency::from_samples(&mut syncs),
        Latency::from_samples(&mut acks),
    ))
}

/// SQLite from one thread in transactions of `tx_size`, over `chats` chats.
fn sqlite_tx(
    args: &Args,
    payloads: &[Bytes],
    sync: SqliteSync,
    tx_size: usize,
    chats: usize,
) -> AnyResult<Measured> {
    let dir = tempfile::tempdir_in(&args.dir)?;
    let mut peer = SqlitePeer::open(&dir.path().join("peer.db"), sync)?;
    let warm_up = Some(Instant::now() + WARM_UP);
    peer.insert_transactions(u64::MAX, tx_size, chats, payloads, warm_up)?;
    let mut measured = Measured::default();
    for _ in 0..args.trials {
        let start = Instant::now();
        let deadline = Some(start + args.trial());
        let messages = peer.insert_transactions(u64::MAX, tx_size, chats, payloads, deadline)?;
        let elapsed = start.elapsed();
        measured.add(AppendOutcome {
            messages,
            elapsed,
            batches: messages.div_ceil(tx_size as u64),
            latencies_ns: Vec::new(),
        });
    }
    Ok(measured)
}

/// SQLite fed by the same producers through a group-commit writer thread.
fn sqlite_group_commit(
    args: &Args,
    payloads: &[Bytes],
    producers: usize,
    window: usize,
) -> AnyResult<Measured> {
    let dir = tempfile::tempdir_in(&args.dir)?;
    let path = dir.path().join("peer.db");
    let run = |duration| {
        let workload = Workload::timed(producers, window, duration);
        run_group_commit(
            &path,
            SqliteSync::Full,
            &workload,
            payloads,
            BATCH_RECORDS_MAX,
        )
    };
    run(WARM_UP)?;
    let mut measured = Measured::default();
    for _ in 0..args.trials {
        measured.add(run(args.trial())?);
    }
    Ok(measured)
}

/// Sequential reads: `trials` full passes, as records per second.
fn reads(args: &Args, mut pass: impl FnMut() -> AnyResult<u64>) -> AnyResult<Measured> {
    let mut measured = Measured::default();
    for _ in 0..args.trials {
        let start = Instant::now();
        let records = pass()?;
        measured.add(AppendOutcome {
            messages: records,
            elapsed: start.elapsed(),
            ..AppendOutcome::default()
        });
    }
    Ok(measured)
}

/// `nproc`, the CPU model and the file system holding `dir`.
fn machine(dir: &Path) -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map_or("unknown", |l| l.trim_start_matches([' ', '\t', ':']));
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let mount = mounts
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 3 && dir.starts_with(f[1])).then(|| (f[1].len(), f[0], f[1], f[2]))
        })
        .max_by_key(|m| m.0)
        .map_or("unknown".to_string(), |(_, dev, at, fs)| {
            format!("{dev} mounted at {at} ({fs})")
        });
    format!(
        "nproc={cpus}, CPU: {model}, dir: {} on {mount}",
        dir.display()
    )
}

fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 {
        format!("{:.1}×", a / b)
    } else {
        "–".into()
    }
}

fn verdict(ok: bool) -> &'static str {
    if ok { "MET" } else { "MISSED" }
}

/// One durable scenario's results.
struct Durable {
    producers: usize,
    window: usize,
    missive: Measured,
    /// fsync p50 measured right before this scenario (the device drifts during a run).
    fsync_adjacent: Latency,
    tx_size: usize,
    sqlite_tx: f64,
    sqlite_gc: Measured,
}

fn main() -> AnyResult<()> {
    let args = Args::parse()?;
    let started = Instant::now();
    let payloads = missive_benches::payloads(missive_benches::PAYLOAD_POOL, 42);
    std::fs::create_dir_all(&args.dir)?;

    println!("# Missive compare run\n");
    println!("- machine: {}", machine(&args.dir));
    {
        let dir = tempfile::tempdir_in(&args.dir)?;
        let peer = SqlitePeer::open(&dir.path().join("settings.db"), SqliteSync::Full)?;
        println!("- SQLite peer: {}", peer.settings()?);
    }
    println!(
        "- {} trial(s) of {:.1} s per scenario after a {:.1} s warm-up; {}-byte incompressible \
         payloads; Missive: {} shard(s), lz4 on (finds nothing), pipelined window {}",
        args.trials,
        args.secs,
        WARM_UP.as_secs_f64(),
        missive_benches::PAYLOAD_BYTES,
        args.shards,
        args.window,
    );

    // 1. The device.
    let budget = Duration::from_secs(20);
    let mut appends = fsync_latencies(&args.dir, FsyncMode::Append, args.fsync_samples, budget)?;
    let fsync = Latency::from_samples(&mut appends);
    let overwrite_samples = (args.fsync_samples / 4).max(10);
    let mut overwrites =
        fsync_latencies(&args.dir, FsyncMode::Overwrite, overwrite_samples, budget)?;
    let overwrite = Latency::from_samples(&mut overwrites);
    println!("\n## fsync latency (4 KiB write + fdatasync)\n");
    println!("| write | samples | p50 | p99 | mean | max | ceiling for 1 in-flight writer |");
    println!("|---|---|---|---|---|---|---|");
    for (name, l) in [
        ("append (file grows)", fsync),
        ("overwrite in place", overwrite),
    ] {
        println!(
            "| {name} | {} | {} | {} | {} | {} | {} syncs/s |",
            l.count,
            fmt_ns(l.p50_ns),
            fmt_ns(l.p99_ns),
            fmt_ns(l.mean_ns as u64),
            fmt_ns(l.max_ns),
            fmt_rate(1e9 / l.mean_ns.max(1.0)),
        );
    }

    eprintln!("… ack latency interleaved with fsync");
    let (i_fsync, i_ack) = interleaved(&args, &payloads)?;
    println!("\n## Ack latency of one blocking producer, interleaved with the fsync probe\n");
    println!(
        "Rounds of 10 fsync-probe samples then 10 appends (append + `wait()`, `Durability::Always`).\n"
    );
    println!("| what | samples | p50 | p99 | mean |");
    println!("|---|---|---|---|---|");
    for (name, l) in [
        ("fsync probe (4 KiB append + fdatasync)", i_fsync),
        ("Missive ack", i_ack),
    ] {
        println!(
            "| {name} | {} | {} | {} | {} |",
            l.count,
            fmt_ns(l.p50_ns),
            fmt_ns(l.p99_ns),
            fmt_ns(l.mean_ns as u64)
        );
    }
    let i_ratio = i_ack.p50_ns as f64 / i_fsync.p50_ns.max(1) as f64;
    println!("\nack p50 / fsync p50 = {i_ratio:.2}");

    // 2. Durable appends: Missive Always, SQLite FULL at the same batch size and producers.
    let mut durable = Vec::new();
    let mut tx_cache: HashMap<(usize, usize), f64> = HashMap::new();
    for (window, label) in [(1, "blocking"), (args.window, "pipelined")] {
        for producers in [1usize, 8, 64] {
            eprintln!("… fsync probe, then Missive Always, {producers} {label} producer(s)");
            let mut probe = fsync_latencies(
                &args.dir,
                FsyncMode::Append,
                (args.fsync_samples / 10).max(10),
                Duration::from_secs(2),
            )?;
            let fsync_adjacent = Latency::from_samples(&mut probe);
            let missive = missive(&args, &payloads, Durability::Always, producers, window)?;
            let tx_size = (missive.pooled.mean_batch().round() as usize).max(1);
            let sqlite_tx = match tx_cache.get(&(tx_size, producers)) {
                Some(&rate) => rate,
                None => {
                    eprintln!("… SQLite FULL, transactions of {tx_size}");
                    let m = sqlite_tx(&args, &payloads, SqliteSync::Full, tx_size, producers)?;
                    tx_cache.insert((tx_size, producers), m.median());
                    m.median()
                }
            };
            eprintln!("… SQLite FULL, group commit, {producers} {label} producer(s)");
            let sqlite_gc = sqlite_group_commit(&args, &payloads, producers, window)?;
            durable.push(Durable {
                producers,
                window,
                missive,
                fsync_adjacent,
                tx_size,
                sqlite_tx,
                sqlite_gc,
            });
        }
    }
    println!(
        "\n## Durable appends (Missive `Durability::Always` vs SQLite WAL `synchronous=FULL`)\n"
    );
    println!(
        "Throughput in acknowledged messages/s, median of the trials (range in brackets). \
         `batch` is Missive's mean group-commit batch (records / distinct `Appended.batch`); \
         SQLite tx=B commits transactions of that size from one thread; SQLite gc is the same \
         producers feeding one SQLite writer thread that commits whatever is queued.\n"
    );
    println!(
        "| producers | in flight each | Missive msg/s | spread | batch | ack p50 | ack p99 | \
         ack p50 / fsync p50 | fsync p50 adjacent | ack p50 / adjacent | SQLite tx=B msg/s | Missive / SQLite tx=B | SQLite gc msg/s (its batch) \
         | gc ack p50 | Missive / SQLite gc |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for d in &durable {
        let l = d.missive.latency();
        let gl = d.sqlite_gc.latency();
        println!(
            "| {} | {} | {} [{}] | ±{:.0}% | {:.1} | {} | {} | {:.2} | {} | {:.2} | {} (B={}) | {} | {} [{}] ({:.1}) | {} | {} |",
            d.producers,
            d.window,
            fmt_rate(d.missive.median()),
            d.missive.range(),
            d.missive.spread_pct(),
            d.missive.pooled.mean_batch(),
            fmt_ns(l.p50_ns),
            fmt_ns(l.p99_ns),
            l.p50_ns as f64 / fsync.p50_ns.max(1) as f64,
            fmt_ns(d.fsync_adjacent.p50_ns),
            l.p50_ns as f64 / d.fsync_adjacent.p50_ns.max(1) as f64,
            fmt_rate(d.sqlite_tx),
            d.tx_size,
            ratio(d.missive.median(), d.sqlite_tx),
            fmt_rate(d.sqlite_gc.median()),
            d.sqlite_gc.range(),
            d.sqlite_gc.pooled.mean_batch(),
            fmt_ns(gl.p50_ns),
            ratio(d.missive.median(), d.sqlite_gc.median()),
        );
    }

    // 3. Buffered appends from one thread.
    eprintln!("… Missive Os, 1 producer");
    let os_pipelined = missive(&args, &payloads, Durability::Os, 1, args.os_window)?;
    let os_blocking = missive(&args, &payloads, Durability::Os, 1, 1)?;
    eprintln!("… Missive Os, 1 producer, compression off (diagnostic)");
    let os_plain = missive_with(&args, &payloads, Durability::Os, 1, args.os_window, false)?;
    let os_tx = (os_pipelined.pooled.mean_batch().round() as usize).max(1);
    eprintln!("… SQLite OFF, transactions of {os_tx}");
    let sqlite_off = sqlite_tx(&args, &payloads, SqliteSync::Off, os_tx, 1)?;
    println!(
        "\n## Buffered appends, one thread (Missive `Durability::Os` vs SQLite WAL `synchronous=OFF`)\n"
    );
    println!(
        "| producer | Missive msg/s | spread | batch | ack p50 | ack p99 | SQLite tx=B msg/s | Missive / SQLite |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for (name, m) in [
        (
            format!("1 thread, {} in flight", args.os_window),
            &os_pipelined,
        ),
        ("1 thread, blocking".to_string(), &os_blocking),
        (
            format!(
                "1 thread, {} in flight, lz4 off (diagnostic)",
                args.os_window
            ),
            &os_plain,
        ),
    ] {
        let l = m.latency();
        println!(
            "| {name} | {} [{}] | ±{:.0}% | {:.1} | {} | {} | {} (B={os_tx}) | {} |",
            fmt_rate(m.median()),
            m.range(),
            m.spread_pct(),
            m.pooled.mean_batch(),
            fmt_ns(l.p50_ns),
            fmt_ns(l.p99_ns),
            fmt_rate(sqlite_off.median()),
            ratio(m.median(), sqlite_off.median()),
        );
    }

    // 4. Sequential read back.
    eprintln!("… reads ({} records)", args.read_messages);
    let log_dir = tempfile::tempdir_in(&args.dir)?;
    let fill_batches = fill_log(log_dir.path(), args.shards, args.read_messages, &payloads)?;
    let log = Log::open(log_dir.path(), log_config(Durability::Os, args.shards))?;
    let missive_reads = reads(&args, || {
        let read = read_all(&log)?;
        assert_eq!(read.records, args.read_messages);
        Ok(read.records)
    })?;
    log.close()?;
    drop(log_dir);
    let db_dir = tempfile::tempdir_in(&args.dir)?;
    let mut peer = SqlitePeer::open(&db_dir.path().join("peer.db"), SqliteSync::Off)?;
    peer.insert_transactions(args.read_messages, 10_000, 64, &payloads, None)?;
    let sqlite_reads = reads(&args, || {
        let read = peer.read_all()?;
        assert_eq!(read.records, args.read_messages);
        Ok(read.records)
    })?;
    drop(peer);
    let mb = |rate: f64| rate * missive_benches::PAYLOAD_BYTES as f64 / 1e6;
    println!(
        "\n## Sequential read back ({} records, page cache warm)\n",
        args.read_messages
    );
    println!("| reader | records/s | spread | payload MB/s | note |");
    println!("|---|---|---|---|---|");
    println!(
        "| Missive `read_from` | {} [{}] | ±{:.0}% | {:.0} | written by one thread under Os: {} batches, mean {:.0} records; checksums verified |",
        fmt_rate(missive_reads.median()),
        missive_reads.range(),
        missive_reads.spread_pct(),
        mb(missive_reads.median()),
        fill_batches,
        args.read_messages as f64 / fill_batches.max(1) as f64,
    );
    println!(
        "| SQLite `SELECT … ORDER BY id` | {} [{}] | ±{:.0}% | {:.0} | Missive / SQLite = {} |",
        fmt_rate(sqlite_reads.median()),
        sqlite_reads.range(),
        sqlite_reads.spread_pct(),
        mb(sqlite_reads.median()),
        ratio(missive_reads.median(), sqlite_reads.median()),
    );

    // 5. Targets.
    // SQLite committing every message on its own (autocommit): one transaction per message from
    // one thread, the upper bound of many producers each committing through its own connection.
    let autocommit = match durable.iter().find(|d| d.tx_size == 1) {
        Some(d) => d.sqlite_tx,
        None => sqlite_tx(&args, &payloads, SqliteSync::Full, 1, 64)?.median(),
    };
    println!("\n## Targets\n");
    println!(
        "SQLite autocommit (one transaction per message, FULL): {} msg/s.\n",
        fmt_rate(autocommit)
    );
    for d in durable.iter().filter(|d| d.producers == 64) {
        let rate = d.missive.median();
        let vs_tx = rate / d.sqlite_tx.max(1e-9);
        let vs_gc = rate / d.sqlite_gc.median().max(1e-9);
        println!(
            "- durable, 64 producers, {} in flight each: {} msg/s vs ≥ 200k: {}; {vs_tx:.1}× SQLite tx=B \
             and {vs_gc:.1}× SQLite gc vs ≥ 10×: {}",
            d.window,
            fmt_rate(rate),
            verdict(rate >= 200_000.0),
            verdict(vs_tx >= 10.0 && vs_gc >= 10.0),
        );
        println!(
            "  (against SQLite autocommit, one fsync per message: {:.0}×)",
            rate / autocommit.max(1e-9)
        );
        if d.window == 1 {
            println!(
                "  (64 blocking producers can never exceed 64 / fsync latency = {} msg/s here)",
                fmt_rate(64.0 * 1e9 / fsync.mean_ns.max(1.0)),
            );
        }
    }
    println!(
        "- ack p50 / fsync p50, 1 blocking producer, interleaved: {i_ratio:.2} vs ≤ 1.5: {}",
        verdict(i_ratio <= 1.5)
    );
    for d in &durable {
        let p50 = d.missive.latency().p50_ns as f64;
        let r = p50 / fsync.p50_ns.max(1) as f64;
        let adjacent = p50 / d.fsync_adjacent.p50_ns.max(1) as f64;
        println!(
            "- ack p50 / fsync p50, {} producer(s) × {} in flight: {r:.2} (run's fsync), \
             {adjacent:.2} (adjacent probe) vs ≤ 1.5: {}",
            d.producers,
            d.window,
            verdict(r <= 1.5 && adjacent <= 1.5),
        );
    }
    println!(
        "- buffered, one thread, {} in flight: {} msg/s vs ≥ 1M: {}",
        args.os_window,
        fmt_rate(os_pipelined.median()),
        verdict(os_pipelined.median() >= 1e6),
    );
    println!(
        "\nfsync p50 {} (mean {}). Whole run: {:.0} s.",
        fmt_ns(fsync.p50_ns),
        fmt_ns(fsync.mean_ns as u64),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
