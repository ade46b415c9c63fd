//! The engine harness: `missive` (the whole engine: log, index, hub) against its issue-4
//! targets, and SQLite storing the same group messages the usual way, in one process and run.
//!
//! ```text
//! cargo run --release -p missive-benches --bin engine_compare -- [--quick] [--secs 3] [--rate 50000] [--one-to-one] [--per-second]
//! ```
//!
//! 1. **1:1 send → subscriber.** On a tokio runtime with a worker per core: 64 recipients, each
//!    with a subscribed device drained by its own task; 256-byte messages (`send_async`) from 64
//!    senders to random recipients under `Durability::Os` (buffered), offered three ways: 64
//!    tasks each pacing itself to its share of `--rate` (default 50,000/s) with tokio's 1 ms
//!    timer, as connection tasks send what the network brings; a thread releasing message `n`
//!    at `n / rate` as a task of its own (even arrivals, but a cross-thread spawn each); and 64
//!    tasks back to back (the most the machine does). Each body carries its send time; the
//!    receiving task records the end-to-end latency (send call → event in hand).
//! 2. **Groups of 256.** 16 groups of 256 members each (no one subscribed: storage, sequencing
//!    and fan-out planning); 64 producer threads send as random members to random groups, for
//!    `--secs`, under `Durability::Os` and then `Always`. Bytes stored per message: the growth
//!    of the log and index folders over the messages sent, against payload + header + 16 B per
//!    recipient.
//! 3. **SQLite, the usual way.** The same group messages as one `messages` row plus one `inbox`
//!    row per recipient (255), WAL, `synchronous=OFF` / `FULL` for the two durabilities, in
//!    transactions of the mean batch Missive's group commit formed in the same run (SQLite has
//!    one writer: a single thread feeds it, its most favourable case).
#![forbid(unsafe_code)]

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use missive::log::{ChatId, DeviceId, UserId};
use missive::{Config, ContentKind, Durability, Engine, Event, Outgoing, To};
use missive_benches::stats::{Latency, fmt_ns, fmt_rate, nanos};
use missive_benches::{PAYLOAD_BYTES, bench_dir, payloads, splitmix64};
use rusqlite::{Connection, params};

type AnyResult<T> = Result<T, Box<dyn std::error::Error>>;

const RECIPIENTS: u64 = 64;
const GROUPS: u64 = 16;
const GROUP_SIZE: u64 = 256;
const PRODUCERS_GROUP: usize = 64;

struct Args {
    secs: f64,
    rate: f64,
    quick: bool,
    /// Only section 1 (for quick comparisons and `perf`).
    one_to_one_only: bool,
    /// Section 1's latency per second of sending, on stderr.
    per_second: bool,
}

fn args() -> AnyResult<Args> {
    let mut args = Args {
        secs: 3.0,
        rate: 50_000.0,
        quick: false,
        one_to_one_only: false,
        per_second: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--secs" => args.secs = it.next().ok_or("--secs S")?.parse()?,
            "--rate" => args.rate = it.next().ok_or("--rate N")?.parse()?,
            "--one-to-one" => args.one_to_one_only = true,
            "--per-second" => args.per_second = true,
            "--quick" => {
                args.quick = true;
                args.secs = 0.5;
            }
            other => return Err(format!("unknown option {other}").into()),
        }
    }
    Ok(args)
}

fn config(durability: Durability) -> Config {
    Config {
        durability,
        checkpoint_interval: None,
        retention_interval: None,
        queue_capacity: 65_536,
        ..Config::default()
    }
}

fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.metadata() {
            Ok(meta) if meta.is_dir() => dir_bytes(&entry.path()),
            Ok(meta) => meta.len(),
            Err(_) => 0,
        })
        .sum()
}

/// A body of `PAYLOAD_BYTES` whose first 8 bytes are `sent_ns`.
fn stamped(base: &Bytes, sent_ns: u64) -> Bytes {
    let mut body = base.to_vec();
    body[..8].copy_from_slice(&sent_ns.to_le_bytes());
    Bytes::from(body)
}

struct LiveResult {
    sent: u64,
    received: u64,
    elapsed: Duration,
    latency: Latency,
    p999_ns: u64,
    /// Latency per second of sending.
    seconds: Vec<Latency>,
}

impl LiveResult {
    /// The worst p99 of any whole second (a partial last second aside).
    fn worst_second_p99(&self) -> u64 {
        let whole = self.seconds.len().saturating_sub(1).max(1);
        self.seconds
            .iter()
            .take(whole)
            .map(|s| s.p99_ns)
            .max()
            .unwrap_or(0)
    }
}

/// Producer tasks of section 1 (unpaced), and senders of its paced arrivals.
const PRODUCER_TASKS: usize = 64;

/// How section 1 offers its sends.
#[derive(Clone, Copy, Debug)]
enum Load {
    /// [`PRODUCER_TASKS`] tasks, each pacing itself to its share of the rate with tokio's
    /// timer (as connection tasks of a server send what arrives).
    Tasks(f64),
    /// A thread releasing message `n` at `n / rate`, each as a task ([`paced_arrivals`]).
    Arrivals(f64),
    /// [`PRODUCER_TASKS`] tasks sending back to back.
    Unpaced,
}

impl Load {
    fn label(self) -> String {
        match self {
            Load::Tasks(rate) => {
                format!("{} from {PRODUCER_TASKS} self-pacing tasks", fmt_rate(rate))
            }
            Load::Arrivals(rate) => format!("{} released evenly by a thread", fmt_rate(rate)),
            Load::Unpaced => "unpaced".to_owned(),
        }
    }
}

fn message_id(n: u64, producer: usize) -> [u8; 16] {
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&n.to_le_bytes());
    id[8..12].copy_from_slice(&(producer as u32).to_le_bytes());
    id
}

/// Paced sends of section 1: a thread of its own releases message `n` at `started + n / rate`
/// (as evenly as the OS's sleep allows, a few tens of µs: arrivals from many clients are not
/// synchronised to tokio's 1 ms timer) as a task on the runtime, from one of
/// [`PRODUCER_TASKS`] senders in turn to a random recipient. Returns once every send finished.
async fn paced_arrivals(
    engine: &Engine,
    bodies: &Arc<[Bytes]>,
    base: Instant,
    started: Instant,
    deadline: Instant,
    rate: f64,
) -> AnyResult<u64> {
    let runtime = tokio::runtime::Handle::current();
    let finished = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let arrivals = {
        let (engine, bodies) = (engine.clone(), Arc::clone(bodies));
        let (finished, failed) = (Arc::clone(&finished), Arc::clone(&failed));
        std::thread::spawn(move || {
            let mut state = 7u64;
            let mut n = 0u64;
            loop {
                let due = started + Duration::from_secs_f64(n as f64 / rate);
                if due >= deadline {
                    break n;
                }
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
                let producer = (n % PRODUCER_TASKS as u64) as usize;
                let sender = UserId(1 + producer as u64);
                let to = UserId(1_000_000 + splitmix64(&mut state) % RECIPIENTS);
                let body = stamped(&bodies[n as usize % bodies.len()], nanos(base.elapsed()));
                let message = Outgoing::text(To::User(to), message_id(n, producer), body);
                let (engine, finished, failed) =
                    (engine.clone(), Arc::clone(&finished), Arc::clone(&failed));
                runtime.spawn(async move {
                    let counter = match engine.send_async(sender, DeviceId(0), message).await {
                        Ok(_) => finished,
                        Err(_) => failed,
                    };
                    counter.fetch_add(1, Ordering::Relaxed);
                });
                n += 1;
            }
        })
    };
    let total = tokio::task::spawn_blocking(move || arrivals.join())
        .await?
        .map_err(|_| "the arrivals thread panicked")?;
    while finished.load(Ordering::Relaxed) + failed.load(Ordering::Relaxed) < total {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    match failed.load(Ordering::Relaxed) {
        0 => Ok(total),
        n => Err(format!("{n} of {total} paced sends failed").into()),
    }
}

/// Section 1: 1:1 sends to subscribed recipients, paced at `rate` (or unpaced if `None`), as a
/// server runs them: tasks on a tokio runtime with one worker per core (two here), not a thread
/// per producer and reader (96 threads on 2 cores measured the scheduler, not the engine).
/// Producers use `Engine::send_async`, readers `Subscription::next`.
fn one_to_one(secs: f64, load: Load) -> AnyResult<LiveResult> {
    let dir = tempfile::tempdir_in(bench_dir())?;
    let engine = Engine::open(dir.path(), config(Durability::Os))?;
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_time()
        .build()?;
    let base = Instant::now();
    let result = runtime.block_on(async {
        let stop = Arc::new(AtomicBool::new(false));
        let received = Arc::new(AtomicU64::new(0));
        let mut readers = Vec::new();
        for r in 0..RECIPIENTS {
            let mut subscription = engine.subscribe(UserId(1_000_000 + r), DeviceId(0))?;
            let (stop, received) = (Arc::clone(&stop), Arc::clone(&received));
            readers.push(tokio::spawn(async move {
                let mut samples = Vec::new();
                loop {
                    let next = subscription.next();
                    match tokio::time::timeout(Duration::from_millis(20), next).await {
                        Ok(Ok(Event::Message { message, .. })) => {
                            let body = &message.message.body;
                            let sent = u64::from_le_bytes(body[..8].try_into().expect("8 bytes"));
                            samples.push((sent, nanos(base.elapsed()).saturating_sub(sent)));
                            received.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(Ok(_)) => {}
                        Ok(Err(_)) => break,
                        Err(_) if stop.load(Ordering::Relaxed) => break,
                        Err(_) => {}
                    }
                }
                samples
            }));
        }
        let bodies = payloads(256, 11);
        let started = Instant::now();
        let deadline = started + Duration::from_secs_f64(secs);
        let total = match load {
            Load::Arrivals(rate) => {
                paced_arrivals(&engine, &bodies, base, started, deadline, rate).await?
            }
            Load::Tasks(_) | Load::Unpaced => {
                let mut producers = Vec::new();
                for p in 0..PRODUCER_TASKS {
                    let (engine, bodies) = (engine.clone(), Arc::clone(&bodies));
                    let per_producer = match load {
                        Load::Tasks(rate) => Some(rate / PRODUCER_TASKS as f64),
                        _ => None,
                    };
                    producers.push(tokio::spawn(async move {
                        let mut state = p as u64 + 1;
                        let sender = UserId(1 + p as u64);
                        let mut n = 0u64;
                        while Instant::now() < deadline {
                            if let Some(per_second) = per_producer {
                                // tokio's timer has 1 ms ticks: sends due within a tick go
                                // out together, as from connections woken by the network.
                                let due = started + Duration::from_secs_f64(n as f64 / per_second);
                                if due > Instant::now() {
                                    tokio::time::sleep_until(due.into()).await;
                                }
                            } else if n.is_multiple_of(64) {
                                // Let the readers run now and then.
                                tokio::task::yield_now().await;
                            }
                            let to = UserId(1_000_000 + splitmix64(&mut state) % RECIPIENTS);
                            let body =
                                stamped(&bodies[n as usize % bodies.len()], nanos(base.elapsed()));
                            let message = Outgoing::text(To::User(to), message_id(n, p), body);
                            engine.send_async(sender, DeviceId(0), message).await?;
                            n += 1;
                        }
                        Ok::<u64, missive::Error>(n)
                    }));
                }
                let mut total = 0;
                for producer in producers {
                    total += producer.await??;
                }
                total
            }
        };
        let elapsed = started.elapsed();
        // Let the readers drain, then stop them.
        let drain_until = Instant::now() + Duration::from_secs(10);
        while received.load(Ordering::Relaxed) < total && Instant::now() < drain_until {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        stop.store(true, Ordering::Relaxed);
        let mut timed = Vec::new();
        for reader in readers {
            timed.extend(reader.await?);
        }
        // Per second of sending (by when each message was sent): a stall shows as one bad
        // second among good ones.
        timed.sort_unstable();
        let mut seconds = Vec::new();
        for second in timed.chunk_by(|a, b| a.0 / 1_000_000_000 == b.0 / 1_000_000_000) {
            let mut latencies: Vec<u64> = second.iter().map(|&(_, latency)| latency).collect();
            seconds.push(Latency::from_samples(&mut latencies));
        }
        let mut samples: Vec<u64> = timed.iter().map(|&(_, latency)| latency).collect();
        let latency = Latency::from_samples(&mut samples);
        let p999_ns = missive_benches::stats::percentile(&samples, 0.999);
        Ok::<LiveResult, Box<dyn std::error::Error>>(LiveResult {
            sent: total,
            received: received.load(Ordering::Relaxed),
            elapsed,
            latency,
            p999_ns,
            seconds,
        })
    })?;
    let stats = engine.stats();
    eprintln!(
        "1:1 ({}): {} catch-ups, {} lags, {} events missed, {} log batches for {} records, deepest queue {}",
        load.label(),
        stats.catch_ups,
        stats.lags,
        stats.events_missed,
        stats.log_batches,
        stats.log_records,
        stats.queue_depth_max
    );
    engine.close()?;
    Ok(result)
}

struct GroupResult {
    messages: u64,
    elapsed: Duration,
    bytes_per_message: f64,
    mean_batch: f64,
}

fn group_messages(secs: f64, durability: Durability) -> AnyResult<GroupResult> {
    let dir = tempfile::tempdir_in(bench_dir())?;
    let engine = Engine::open(dir.path(), config(durability))?;
    let mut groups = Vec::new();
    for g in 0..GROUPS {
        let members: Vec<UserId> = (0..GROUP_SIZE)
            .map(|m| UserId(10_000 * (g + 1) + m))
            .collect();
        let chat = engine.create_group(members[0], &members[1..])?;
        groups.push((chat, members));
    }
    let groups: Arc<Vec<(ChatId, Vec<UserId>)>> = Arc::new(groups);
    let before = engine.stats();
    engine.checkpoint()?;
    let bytes_before = dir_bytes(dir.path());
    let bodies = payloads(256, 12);
    let sent = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(secs);
    let mut producers = Vec::new();
    for p in 0..PRODUCERS_GROUP {
        let (engine, groups, bodies, sent) = (
            engine.clone(),
            Arc::clone(&groups),
            Arc::clone(&bodies),
            Arc::clone(&sent),
        );
        producers.push(std::thread::spawn(move || -> Result<(), missive::Error> {
            let mut state = 1000 + p as u64;
            let mut n = 0u64;
            while Instant::now() < deadline {
                let (chat, members) = &groups[(splitmix64(&mut state) % GROUPS) as usize];
                let sender = members[(splitmix64(&mut state) % GROUP_SIZE) as usize];
                let mut id = [0u8; 16];
                id[..8].copy_from_slice(&n.to_le_bytes());
                id[8] = p as u8;
                let message = Outgoing {
                    kind: ContentKind::Text,
                    ..Outgoing::text(
                        To::Chat(*chat),
                        id,
                        bodies[n as usize % bodies.len()].clone(),
                    )
                };
                engine.send(sender, DeviceId(0), message)?;
                n += 1;
            }
            sent.fetch_add(n, Ordering::Relaxed);
            Ok(())
        }));
    }
    for producer in producers {
        producer.join().expect("producer")?;
    }
    let elapsed = started.elapsed();
    let messages = sent.load(Ordering::Relaxed);
    engine.checkpoint()?;
    let after = engine.stats();
    let bytes = dir_bytes(dir.path()).saturating_sub(bytes_before);
    engine.close()?;
    let records = after.records_applied - before.records_applied;
    let batches = (after.batches_applied - before.batches_applied).max(1);
    Ok(GroupResult {
        messages,
        elapsed,
        bytes_per_message: bytes as f64 / messages.max(1) as f64,
        mean_batch: records as f64 / batches as f64,
    })
}

/// SQLite: `messages` row + one `inbox` row per recipient, transactions of `batch` messages.
fn sqlite_groups(secs: f64, full: bool, batch: usize) -> AnyResult<(u64, Duration, f64)> {
    let dir = tempfile::tempdir_in(bench_dir())?;
    let path = dir.path().join("peer.db");
    let mut conn = Connection::open(&path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", if full { "FULL" } else { "OFF" })?;
    conn.execute_batch(missive_benches::sqlite::TABLE)?;
    conn.execute_batch(missive_benches::sqlite::INDEX)?;
    conn.execute_batch(
        "CREATE TABLE inbox (user_id INTEGER NOT NULL, chat_id INTEGER NOT NULL, \
         seq INTEGER NOT NULL, PRIMARY KEY (user_id, chat_id, seq)) WITHOUT ROWID;",
    )?;
    let bodies = payloads(256, 12);
    let mut heads = vec![0u64; GROUPS as usize];
    let mut state = 77u64;
    let (mut n, started) = (0u64, Instant::now());
    let deadline = started + Duration::from_secs_f64(secs);
    while Instant::now() < deadline {
        let tx = conn.transaction()?;
        {
            let mut message = tx.prepare_cached(
                "INSERT INTO messages (chat_id, seq, kind, ts, payload) VALUES (?1, ?2, 1, ?3, ?4)",
            )?;
            let mut inbox =
                tx.prepare_cached("INSERT INTO inbox (user_id, chat_id, seq) VALUES (?1, ?2, ?3)")?;
            for _ in 0..batch.max(1) {
                let g = splitmix64(&mut state) % GROUPS;
                let sender = splitmix64(&mut state) % GROUP_SIZE;
                heads[g as usize] += 1;
                let seq = heads[g as usize];
                let body = &bodies[n as usize % bodies.len()];
                message.execute(params![g as i64, seq as i64, n as i64, &body[..]])?;
                for m in (0..GROUP_SIZE).filter(|m| *m != sender) {
                    inbox.execute(params![(10_000 * (g + 1) + m) as i64, g as i64, seq as i64])?;
                }
                n += 1;
            }
        }
        tx.commit()?;
    }
    let elapsed = started.elapsed();
    drop(conn);
    let bytes = dir_bytes(dir.path()) as f64 / n.max(1) as f64;
    Ok((n, elapsed, bytes))
}

fn rate(n: u64, elapsed: Duration) -> f64 {
    n as f64 / elapsed.as_secs_f64()
}

fn main() -> AnyResult<()> {
    let args = args()?;
    println!("# Engine harness (issue 4)\n");
    println!(
        "- {} s per measurement{}; 256-byte bodies; files in {}",
        args.secs,
        if args.quick { " (--quick)" } else { "" },
        bench_dir().display()
    );

    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    println!(
        "\n## 1:1 send → subscriber ({RECIPIENTS} subscribed recipients, {PRODUCER_TASKS} \
         producer tasks on {workers} tokio workers, `Os`)\n"
    );
    println!(
        "| load | sent | received | throughput | p50 | p99 | p99.9 | max | worst second's p99 |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    let paced = one_to_one(args.secs, Load::Tasks(args.rate))?;
    let even = one_to_one(args.secs, Load::Arrivals(args.rate))?;
    let unpaced = one_to_one(args.secs, Load::Unpaced)?;
    for (load, r) in [
        (Load::Tasks(args.rate), &paced),
        (Load::Arrivals(args.rate), &even),
        (Load::Unpaced, &unpaced),
    ] {
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            load.label(),
            r.sent,
            r.received,
            fmt_rate(rate(r.sent, r.elapsed)),
            fmt_ns(r.latency.p50_ns),
            fmt_ns(r.latency.p99_ns),
            fmt_ns(r.p999_ns),
            fmt_ns(r.latency.max_ns),
            fmt_ns(r.worst_second_p99()),
        );
        if args.per_second {
            for (second, l) in r.seconds.iter().enumerate() {
                eprintln!(
                    "{} second {second}: {} messages, p50 {}, p99 {}, max {}",
                    load.label(),
                    l.count,
                    fmt_ns(l.p50_ns),
                    fmt_ns(l.p99_ns),
                    fmt_ns(l.max_ns)
                );
            }
        }
    }

    if args.one_to_one_only {
        return Ok(());
    }
    println!(
        "\n## Group messages, {GROUPS} groups of {GROUP_SIZE} ({PRODUCERS_GROUP} producers)\n"
    );
    println!(
        "| durability | Missive msgs/s | mean batch | bytes stored / message | SQLite msgs/s (batch) | SQLite bytes / message | Missive ÷ SQLite |"
    );
    println!("|---|---|---|---|---|---|---|");
    let mut group_rates = Vec::new();
    for (label, durability, full) in [
        ("`Os` (buffered)", Durability::Os, false),
        ("`Always` (fsync per batch)", Durability::Always, true),
    ] {
        let ours = group_messages(args.secs, durability)?;
        let batch = ours.mean_batch.round().max(1.0) as usize;
        let (n, elapsed, sqlite_bytes) = sqlite_groups(args.secs, full, batch)?;
        let (ours_rate, peer_rate) = (rate(ours.messages, ours.elapsed), rate(n, elapsed));
        println!(
            "| {label} | {} | {:.1} | {:.0} B | {} ({batch}) | {:.0} B | {:.1}× |",
            fmt_rate(ours_rate),
            ours.mean_batch,
            ours.bytes_per_message,
            fmt_rate(peer_rate),
            sqlite_bytes,
            ours_rate / peer_rate.max(f64::MIN_POSITIVE),
        );
        group_rates.push((ours_rate, ours.bytes_per_message));
    }
    let budget = PAYLOAD_BYTES as f64 + 64.0 + 16.0 * (GROUP_SIZE - 1) as f64;

    println!("\n## Targets\n");
    println!("| target | measured | verdict |");
    println!("|---|---|---|");
    let verdict = |ok: bool| if ok { "MET" } else { "MISSED" };
    for (load, r) in [
        (Load::Tasks(args.rate), &paced),
        (Load::Arrivals(args.rate), &even),
    ] {
        println!(
            "| 1:1, {}: p99 ≤ 1 ms (buffered) | p99 {} ({} delivered of {}, {}/s) | {} |",
            load.label(),
            fmt_ns(r.latency.p99_ns),
            r.received,
            r.sent,
            fmt_rate(rate(r.sent, r.elapsed)),
            verdict(r.latency.p99_ns <= 1_000_000 && r.received == r.sent)
        );
    }
    println!(
        "| groups of 256: ≥ 20 k msgs/s buffered | {} | {} |",
        fmt_rate(group_rates[0].0),
        verdict(group_rates[0].0 >= 20_000.0)
    );
    println!(
        "| groups of 256: ≥ 5 k msgs/s durable | {} | {} |",
        fmt_rate(group_rates[1].0),
        verdict(group_rates[1].0 >= 5_000.0)
    );
    println!(
        "| bytes per group message ≤ payload + header + 16 B × recipients ({budget:.0} B) | {:.0} B | {} |",
        group_rates[0].1,
        verdict(group_rates[0].1 <= budget)
    );
    Ok(())
}
