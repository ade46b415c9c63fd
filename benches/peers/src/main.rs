//! `peers`: the same messaging workloads against Missive, SQLite, fjall, redb and (with
//! `--features rocksdb`) RocksDB, each at the same durability, in one run on one machine, with
//! the device's fsync latency and write bandwidth measured alongside. See `benches/README.md`.
//!
//! ```text
//! cargo run --release --manifest-path benches/peers/Cargo.toml            # full run (~15 min)
//! cargo run --release --manifest-path benches/peers/Cargo.toml -- --quick # smoke run (< 2 min)
//! ```
//!
//! Per store, in a fresh directory: 64 producers append a fixed number of 1:1 messages without
//! fsync (Zipf-popular chats out of 100 k); the latest 50 of a chat and inbox fetches are read;
//! then, with an fsync per commit, read receipts, 1:1 appends and group messages run for
//! `--secs` each. Then a child process bulk-loads `--fill-gib` of messages spread over 8 days and
//! is killed (SIGKILL: a crash); the store is reopened and its oldest day expired.
//!
//! Results go to stdout as Markdown; a full run also writes them between the markers of
//! `benches/RESULTS.md` and plots them to `benches/results/peers.svg`.

mod device;
mod kv;
mod missive_store;
mod report;
mod spec;
mod sqlite_peer;
mod store;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use missive::ManualClock;
use missive::log::Timestamp;
use missive_benches::stats::percentile;

use crate::device::{Device, allocated_bytes, write_bytes};
use crate::report::StoreResult;
use crate::spec::{
    CHATS, DAY_MS, FILL_DAYS, FILL_START_MS, INBOX_N, LATEST_N, Op, PAYLOAD_BYTES_F64, PRODUCERS,
    ZIPF_EXPONENT, Zipf,
};
use crate::store::{Outcome, Peer, Store, run_producers};

/// The stores.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, serde::Serialize, serde::Deserialize)]
enum Kind {
    Missive,
    Sqlite,
    Fjall,
    Redb,
    Rocksdb,
}

impl Kind {
    fn all() -> Vec<Kind> {
        let mut kinds = vec![Kind::Missive, Kind::Sqlite, Kind::Fjall, Kind::Redb];
        if cfg!(feature = "rocksdb") {
            kinds.push(Kind::Rocksdb);
        }
        kinds
    }

    fn arg(self) -> &'static str {
        match self {
            Kind::Missive => "missive",
            Kind::Sqlite => "sqlite",
            Kind::Fjall => "fjall",
            Kind::Redb => "redb",
            Kind::Rocksdb => "rocksdb",
        }
    }

    /// Opens (or creates, or recovers) the store in `dir`, buffered.
    fn open(self, dir: &Path, clock: Option<ManualClock>) -> Result<Box<dyn Store>> {
        use crate::kv::KvBackend;
        std::fs::create_dir_all(dir)?;
        Ok(match self {
            Kind::Missive => Box::new(missive_store::MissiveStore::open(dir, clock)?),
            Kind::Sqlite => Box::new(Peer::new(
                "SQLite",
                Box::new(sqlite_peer::SqliteBackend::open(dir)?),
            )),
            Kind::Fjall => Box::new(Peer::new(
                "fjall",
                Box::new(KvBackend::new(Box::new(kv::fjall_kv::FjallKv::open(dir)?))),
            )),
            Kind::Redb => Box::new(Peer::new(
                "redb",
                Box::new(KvBackend::new(Box::new(kv::redb_kv::RedbKv::open(dir)?))),
            )),
            #[cfg(feature = "rocksdb")]
            Kind::Rocksdb => Box::new(Peer::new(
                "RocksDB",
                Box::new(KvBackend::new(Box::new(kv::rocks_kv::RocksKv::open(dir)?))),
            )),
            #[cfg(not(feature = "rocksdb"))]
            Kind::Rocksdb => bail!("built without `--features rocksdb`"),
        })
    }
}

#[derive(Parser, Debug)]
#[command(
    name = "peers",
    about = "Missive against SQLite, fjall, redb and RocksDB"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Cmd>,
    /// Smoke run: tiny sizes, 0.5 s phases; writes no results file unless asked to.
    #[arg(long)]
    quick: bool,
    /// Stores to run, comma-separated [default: all built in].
    #[arg(long, value_delimiter = ',')]
    stores: Option<Vec<Kind>>,
    /// Length of each timed (fsync) phase, seconds [default: 5; quick 0.5].
    #[arg(long)]
    secs: Option<f64>,
    /// 1:1 messages of the buffered phase, which the reads then query [default: 400000; quick 20000].
    #[arg(long)]
    buffered_messages: Option<u64>,
    /// Groups of 256 for the group phase [default: 100; quick 8].
    #[arg(long)]
    groups: Option<u64>,
    /// GiB of payload in the crash/TTL dataset [default: 2; quick 0.01].
    #[arg(long)]
    fill_gib: Option<f64>,
    /// Reads of each kind [default: 2000; quick 200].
    #[arg(long)]
    read_samples: Option<usize>,
    /// fsync probe samples [default: 1000; quick 100].
    #[arg(long)]
    fsync_samples: Option<usize>,
    /// MiB written by the bandwidth probe [default: 1024; quick 64].
    #[arg(long)]
    bandwidth_mib: Option<u64>,
    /// Where the stores live [default: $MISSIVE_BENCH_DIR, else the temp dir].
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Markdown file whose `<!-- peers:begin -->`…`<!-- peers:end -->` section is replaced
    /// [default: benches/RESULTS.md for a full run; none for --quick].
    #[arg(long)]
    results: Option<PathBuf>,
    /// SVG plot [default: benches/results/peers.svg for a full run; none for --quick].
    #[arg(long)]
    svg: Option<PathBuf>,
    /// Write no files, only print.
    #[arg(long)]
    no_write: bool,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// (internal) Bulk-loads a store, prints what it wrote, and waits to be killed.
    #[command(hide = true)]
    Fill {
        #[arg(long)]
        store: Kind,
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        messages: u64,
    },
}

/// The settings in force.
#[derive(Clone, Debug)]
struct Settings {
    quick: bool,
    stores: Vec<Kind>,
    secs: f64,
    buffered_messages: u64,
    groups: u64,
    fill_messages: u64,
    read_samples: usize,
    fsync_samples: usize,
    bandwidth_bytes: u64,
    dir: PathBuf,
    results: Option<PathBuf>,
    svg: Option<PathBuf>,
}

impl Settings {
    fn from(cli: &Cli) -> Settings {
        let q = cli.quick;
        let benches = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let write = !cli.no_write;
        let fill_gib = cli.fill_gib.unwrap_or(if q { 0.01 } else { 2.0 });
        Settings {
            quick: q,
            stores: cli.stores.clone().unwrap_or_else(Kind::all),
            secs: cli.secs.unwrap_or(if q { 0.5 } else { 5.0 }),
            buffered_messages: cli
                .buffered_messages
                .unwrap_or(if q { 20_000 } else { 400_000 }),
            groups: cli.groups.unwrap_or(if q { 8 } else { 100 }).max(1),
            fill_messages: ((fill_gib * (1u64 << 30) as f64) / PAYLOAD_BYTES_F64) as u64,
            read_samples: cli
                .read_samples
                .unwrap_or(if q { 200 } else { 2000 })
                .max(1),
            fsync_samples: cli.fsync_samples.unwrap_or(if q { 100 } else { 1000 }),
            bandwidth_bytes: cli.bandwidth_mib.unwrap_or(if q { 64 } else { 1024 }) << 20,
            dir: cli.dir.clone().unwrap_or_else(missive_benches::bench_dir),
            results: cli
                .results
                .clone()
                .or_else(|| (!q).then(|| benches.join("RESULTS.md")))
                .filter(|_| write),
            svg: cli
                .svg
                .clone()
                .or_else(|| (!q).then(|| benches.join("results/peers.svg")))
                .filter(|_| write),
        }
    }
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Some(Cmd::Fill {
            store,
            dir,
            messages,
        }) => fill_child(*store, dir, *messages),
        None => run(&Settings::from(&cli)),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("peers: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Phases per store (for the progress bar).
const PHASES: u64 = 8;

fn run(settings: &Settings) -> Result<()> {
    let root = tempfile::Builder::new()
        .prefix("missive-peers-")
        .tempdir_in(&settings.dir)
        .with_context(|| format!("a directory in {}", settings.dir.display()))?;
    let progress = ProgressBar::new(2 + PHASES * settings.stores.len() as u64);
    progress.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} {msg}")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    progress.enable_steady_tick(Duration::from_millis(250));
    progress.set_message("device: fsync latency and write bandwidth");
    let device = device::measure(
        root.path(),
        settings.fsync_samples,
        settings.bandwidth_bytes,
    )?;
    progress.inc(2);

    let zipf = Zipf::new(CHATS, ZIPF_EXPONENT);
    let mut results = Vec::new();
    for &kind in &settings.stores {
        let dir = root.path().join(kind.arg());
        std::fs::create_dir_all(&dir)?;
        let started = progress.position();
        let mut result = StoreResult {
            name: name_of(kind),
            ..StoreResult::default()
        };
        if let Err(e) = measure_store(kind, &dir, settings, &zipf, &progress, &mut result) {
            result.errors.push(format!("{e:#}"));
        }
        progress.set_position(started + PHASES);
        let _ = std::fs::remove_dir_all(&dir);
        let line = format!(
            "{}: done{}",
            result.name,
            if result.errors.is_empty() {
                String::new()
            } else {
                format!(" with errors: {}", result.errors.join("; "))
            }
        );
        if progress.is_hidden() {
            eprintln!("peers: {line}");
        } else {
            progress.println(line);
        }
        results.push(result);
    }
    progress.finish_and_clear();

    let section = section(settings, &device, &results);
    println!("{section}");
    if let Some(svg) = &settings.svg {
        if let Some(parent) = svg.parent() {
            std::fs::create_dir_all(parent)?;
        }
        report::plot(
            svg,
            &results,
            "Missive and its peers: speed relative to SQLite",
        )?;
        eprintln!("plot: {}", svg.display());
    }
    if let Some(path) = &settings.results {
        report::write_section(path, &section)?;
        eprintln!(
            "results: {} (between {} and {})",
            path.display(),
            report::BEGIN,
            report::END
        );
    }
    if results.iter().any(|r| !r.errors.is_empty()) {
        bail!("some phases failed (see the notes above)");
    }
    Ok(())
}

fn name_of(kind: Kind) -> &'static str {
    match kind {
        Kind::Missive => "Missive",
        Kind::Sqlite => "SQLite",
        Kind::Fjall => "fjall",
        Kind::Redb => "redb",
        Kind::Rocksdb => "RocksDB",
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn check(outcome: &Outcome, what: &str) -> Result<()> {
    if let Some(e) = &outcome.first_error {
        bail!("{what}: {} errors, the first: {e}", outcome.errors);
    }
    Ok(())
}

/// Times `samples` calls of `read` (stopping after `budget`), returns (p50, p99) in ns.
fn time_reads(
    samples: usize,
    budget: Duration,
    mut read: impl FnMut(usize) -> Result<usize>,
) -> Result<(f64, f64)> {
    let deadline = Instant::now() + budget;
    let mut latencies = Vec::with_capacity(samples);
    for i in 0..samples {
        let started = Instant::now();
        std::hint::black_box(read(i)?);
        latencies.push(missive_benches::stats::nanos(started.elapsed()));
        if i >= 10 && Instant::now() >= deadline {
            break;
        }
    }
    latencies.sort_unstable();
    Ok((
        percentile(&latencies, 0.50) as f64,
        percentile(&latencies, 0.99) as f64,
    ))
}

fn measure_store(
    kind: Kind,
    dir: &Path,
    settings: &Settings,
    zipf: &Zipf,
    progress: &ProgressBar,
    result: &mut StoreResult,
) -> Result<()> {
    let mut store = kind.open(&dir.join("main"), None)?;
    let name = store.name();
    result.name = name;
    let phase = |what: &str| {
        if progress.is_hidden() {
            // Not a terminal (CI, a pipe): plain lines instead of the bar.
            eprintln!("peers: {name}: {what}");
        }
        progress.set_message(format!("{name}: {what}"));
    };
    let bodies = missive_benches::payloads(missive_benches::PAYLOAD_POOL, 8);
    let secs = Duration::from_secs_f64(settings.secs);

    // 1. Buffered 1:1 appends, counted: every store ends up holding the same messages.
    phase("buffered 1:1 appends");
    let quotas = spec::quotas(settings.buffered_messages, PRODUCERS);
    let ts = now_ms();
    let outcome = store.drive(&mut |sink| {
        run_producers(sink, PRODUCERS, None, |p| {
            let mut rng = spec::seed(1, p);
            let bodies = bodies.clone();
            (0..quotas[p]).map(move |n| spec::direct_op(zipf, &mut rng, p, n, ts, &bodies))
        })
    })?;
    check(&outcome, "buffered appends")?;
    result.values.insert("buffered", outcome.rate());
    progress.inc(1);

    // 2. Reads on that dataset: Zipf-popular chats, and their users' inboxes.
    phase("latest 50 and inbox fetch");
    let budget = secs.max(Duration::from_millis(500));
    let mut rng = spec::seed(4, 0);
    let chats: Vec<u64> = (0..settings.read_samples)
        .map(|_| zipf.sample(&mut rng))
        .collect();
    let (p50, p99) = time_reads(chats.len(), budget, |i| store.latest(chats[i], LATEST_N))?;
    result.values.insert("latest", p50);
    result.values.insert("latest_p99", p99);
    let (p50, p99) = time_reads(chats.len(), budget, |i| {
        store.inbox(spec::chat_users(chats[i]).1, INBOX_N)
    })?;
    result.values.insert("inbox", p50);
    result.values.insert("inbox_p99", p99);
    progress.inc(1);

    // 3. Receipts, fsync per commit, on the same dataset.
    phase("read receipts (fsync)");
    store.set_durable(true)?;
    let heads = spec::direct_heads(zipf, 1, settings.buffered_messages);
    let receipts: Vec<Vec<Op>> = (0..PRODUCERS)
        .map(|p| spec::receipt_ops(&heads, p))
        .collect();
    let deadline = Instant::now() + secs;
    let outcome = store.drive(&mut |sink| {
        run_producers(sink, PRODUCERS, Some(deadline), |p| {
            receipts[p].clone().into_iter()
        })
    })?;
    check(&outcome, "receipts")?;
    result.values.insert("receipts", outcome.rate());
    progress.inc(1);

    // 4. Durable 1:1 appends, timed, with the bytes written.
    phase("durable 1:1 appends (fsync)");
    let written = write_bytes();
    let deadline = Instant::now() + secs;
    let ts = now_ms();
    let outcome = store.drive(&mut |sink| {
        run_producers(sink, PRODUCERS, Some(deadline), |p| {
            let mut rng = spec::seed(2, p);
            let bodies = bodies.clone();
            (0..).map(move |n| spec::direct_op(zipf, &mut rng, p, n, ts, &bodies))
        })
    })?;
    check(&outcome, "durable appends")?;
    let written = write_bytes().saturating_sub(written);
    result.values.insert("durable", outcome.rate());
    let mut latencies = outcome.latencies_ns.clone();
    latencies.sort_unstable();
    result
        .values
        .insert("durable_p99", percentile(&latencies, 0.99) as f64);
    result.values.insert(
        "wa_durable",
        written as f64 / (outcome.ops.max(1) as f64 * PAYLOAD_BYTES_F64),
    );
    progress.inc(1);

    // 5. Group messages, fsync per commit, timed.
    phase("groups of 256 (fsync)");
    store.create_groups(settings.groups)?;
    let group_zipf = Zipf::new(settings.groups, ZIPF_EXPONENT);
    let deadline = Instant::now() + secs;
    let outcome = store.drive(&mut |sink| {
        run_producers(sink, PRODUCERS, Some(deadline), |p| {
            let mut rng = spec::seed(3, p);
            let (bodies, zipf) = (bodies.clone(), group_zipf.clone());
            (0..).map(move |n| spec::group_op(&zipf, &mut rng, p, n, &bodies))
        })
    })?;
    check(&outcome, "group messages")?;
    result.values.insert("group", outcome.rate());
    store.close()?;
    progress.inc(1);

    // 6. The crash dataset, bulk-loaded by a child process that is then killed.
    phase(&format!(
        "bulk load of {} MiB in a child process",
        (settings.fill_messages * 256) >> 20
    ));
    let crash_dir = dir.join("crash");
    std::fs::create_dir_all(&crash_dir)?;
    let report = fill_in_child(kind, &crash_dir, settings.fill_messages)?;
    let payload = report.messages as f64 * PAYLOAD_BYTES_F64;
    result
        .values
        .insert("fill", report.messages as f64 / report.elapsed_s.max(1e-9));
    result
        .values
        .insert("wa_fill", report.write_bytes as f64 / payload);
    result
        .values
        .insert("size", allocated_bytes(&crash_dir) as f64 / payload);
    progress.inc(1);

    // 7. Reopen after the crash, until the hottest chat's latest 50 are read.
    phase("reopen after the crash");
    let end = FILL_START_MS + FILL_DAYS * DAY_MS;
    let started = Instant::now();
    let mut store = kind.open(&crash_dir, Some(ManualClock::new(Timestamp(end))))?;
    let found = store.latest(0, LATEST_N)?;
    result
        .values
        .insert("reopen", started.elapsed().as_secs_f64());
    anyhow::ensure!(
        found == LATEST_N.min(report.hottest as usize),
        "after reopening, the hottest chat shows {found} of its last {LATEST_N} messages"
    );
    progress.inc(1);

    // 8. Expire the oldest day.
    phase("TTL expiry of the oldest day");
    let started = Instant::now();
    store.expire(FILL_START_MS + DAY_MS)?;
    result.values.insert("ttl", started.elapsed().as_secs_f64());
    store.close()?;
    progress.inc(1);
    Ok(())
}

/// What the fill child reports.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct FillReport {
    messages: u64,
    elapsed_s: f64,
    write_bytes: u64,
    /// Messages in the hottest chat (0).
    hottest: u64,
}

/// Streams of the crash dataset.
const FILL_STREAMS: usize = 16;
/// Operations generated (and stored) at a time.
const FILL_CHUNK: u64 = 16_384;

fn fill_in_child(kind: Kind, dir: &Path, messages: u64) -> Result<FillReport> {
    let exe = std::env::current_exe()?;
    let mut child = Command::new(exe)
        .args([
            "fill",
            "--store",
            kind.arg(),
            "--messages",
            &messages.to_string(),
            "--dir",
        ])
        .arg(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let mut line = String::new();
    let stdout = child.stdout.take().context("the child's stdout")?;
    BufReader::new(stdout).read_line(&mut line)?;
    // The crash: SIGKILL, with the store open and nothing closed.
    let _ = child.kill();
    let status = child.wait()?;
    if line.trim().is_empty() {
        bail!("the fill child ended ({status}) without a report");
    }
    Ok(serde_json::from_str(line.trim())?)
}

fn fill_child(kind: Kind, dir: &Path, messages: u64) -> Result<()> {
    let zipf = Zipf::new(CHATS, ZIPF_EXPONENT);
    let bodies = missive_benches::payloads(missive_benches::PAYLOAD_POOL, 9);
    let step = (FILL_DAYS * DAY_MS) as f64 / messages.max(1) as f64;
    let mut rngs: Vec<u64> = (0..FILL_STREAMS).map(|p| spec::seed(5, p)).collect();
    let before = write_bytes();
    let started = Instant::now();
    let mut store = kind.open(dir, Some(ManualClock::new(Timestamp(FILL_START_MS))))?;
    let rounds = messages.div_ceil(FILL_STREAMS as u64);
    let mut hottest = 0;
    let mut round = 0;
    let mut stored = 0u64;
    while round < rounds {
        let mut ops = Vec::with_capacity(FILL_CHUNK as usize);
        while round < rounds && (ops.len() as u64) < FILL_CHUNK {
            for (p, rng) in rngs.iter_mut().enumerate() {
                let i = round * FILL_STREAMS as u64 + p as u64;
                if i >= messages {
                    break;
                }
                let ts = FILL_START_MS + (i as f64 * step) as u64;
                let op = spec::direct_op(&zipf, rng, p, round, ts, &bodies);
                if matches!(op, Op::Direct { chat: 0, .. }) {
                    hottest += 1;
                }
                ops.push(op);
            }
            round += 1;
        }
        store.bulk(&ops)?;
        stored += ops.len() as u64;
    }
    store.crash_safe()?;
    let report = FillReport {
        messages: stored,
        elapsed_s: started.elapsed().as_secs_f64(),
        write_bytes: write_bytes().saturating_sub(before),
        hottest,
    };
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{}", serde_json::to_string(&report)?)?;
    stdout.flush()?;
    drop(stdout);
    // Wait for the parent's SIGKILL. If the parent is gone (stdin closes), leave without closing
    // the store either way: `exit` runs no destructors.
    let mut buf = String::new();
    let _ = std::io::stdin().read_line(&mut buf);
    std::mem::forget(store);
    std::process::exit(0);
}

/// `YYYY-MM-DD HH:MM UTC` of a Unix time (Howard Hinnant's civil-from-days).
fn utc_minute(unix_s: u64) -> String {
    let days = (unix_s / 86_400) as i64 + 719_468;
    let era = days.div_euclid(146_097);
    let doe = days - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let minute = unix_s % 86_400 / 60;
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02} UTC",
        minute / 60,
        minute % 60
    )
}

fn section(settings: &Settings, device: &Device, results: &[StoreResult]) -> String {
    let mut out = String::new();
    out.push_str("## Peers (issue 8): Missive against SQLite, fjall, redb, RocksDB\n\n");
    out.push_str(&format!(
        "Generated by `peers`{} (`benches/peers`, see `benches/README.md`) on {}; \
         stores in {}. Device, measured in the same run and directory: 4 KiB append + fdatasync \
         p50 {} / p99 {}, sequential write {:.0} MiB/s.\n\n",
        if settings.quick { " --quick" } else { "" },
        utc_minute(now_ms() / 1000),
        settings.dir.display(),
        report::format(report::Unit::Nanos, device.fsync_p50_ns as f64),
        report::format(report::Unit::Nanos, device.fsync_p99_ns as f64),
        device.write_bytes_per_s / (1u64 << 20) as f64,
    ));
    out.push_str(&format!(
        "256-byte incompressible bodies; 1:1 chats drawn from 100 k by Zipf (s = 1); {} buffered \
         1:1 messages then read; timed phases of {} s; {} groups of 256; crash dataset {:.2} GiB \
         of payload ({} messages over 8 days) bulk-loaded by a child process killed with SIGKILL. \
         Each peer cell shows how many times better Missive is (> 1×: Missive ahead). Durability \
         is the same for all: \"fsync per commit\" is Missive `Always` (fdatasync per group commit), \
         SQLite WAL `synchronous=FULL`, fjall `PersistMode::SyncData`, redb `Durability::Immediate`, \
         RocksDB `sync=true`; \"no fsync\" is Missive `Os`, SQLite `synchronous=OFF`, fjall and \
         RocksDB's defaults (written to the OS), redb `Durability::None` (weaker: survives no \
         crash until a durable commit). Peers are fed by a group-commit writer thread \
         (≤ 1024 operations per transaction), what an application would put in front of a \
         single-writer store.\n\n",
        settings.buffered_messages,
        settings.secs,
        settings.groups,
        settings.fill_messages as f64 * PAYLOAD_BYTES_F64 / (1u64 << 30) as f64,
        settings.fill_messages,
    ));
    out.push_str(&report::table(results, device));
    if let Some(svg) = &settings.svg {
        let name = svg
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        out.push_str(&format!(
            "\n![speed relative to SQLite, per workload](results/{name})\n"
        ));
    }
    let analysis = Path::new(env!("CARGO_MANIFEST_DIR")).join("../results/peers-analysis.md");
    if !settings.quick && analysis.exists() {
        out.push_str(
            "\nWhere Missive is behind and why, and the notes of the last full run: \
             [results/peers-analysis.md](results/peers-analysis.md).\n",
        );
    }
    let errors: Vec<String> = results
        .iter()
        .flat_map(|r| r.errors.iter().map(move |e| format!("- {}: {e}", r.name)))
        .collect();
    if !errors.is_empty() {
        out.push_str("\nFailed phases:\n\n");
        out.push_str(&errors.join("\n"));
        out.push('\n');
    }
    if !settings.stores.contains(&Kind::Rocksdb) {
        out.push_str(
            "\nRocksDB is not in this run: it is behind the `rocksdb` feature (needs Debian's \
             `libclang-dev`; ~11.5 min to build here).\n",
        );
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn dates_are_utc() {
        assert_eq!(super::utc_minute(0), "1970-01-01 00:00 UTC");
        assert_eq!(super::utc_minute(1_795_877_567), "2026-11-28 14:52 UTC");
        assert_eq!(super::utc_minute(951_782_400), "2000-02-29 00:00 UTC");
    }
}
