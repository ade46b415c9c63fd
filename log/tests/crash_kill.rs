//! Real-process kill -9 crash cycles under load (RELIABILITY.md row 1).
//!
//! What it proves: with `Durability::Always`, every acknowledged append (its ticket resolved and
//! its `ACK` line was printed) survives a SIGKILL of the writing process at any moment (during
//! process start, inside `Log::open` and its torn-tail repair, during the start-up read-back, and
//! under load with 64 KiB segments rolling and sealed segments memory-mapped by a concurrent
//! reader), and opening whatever the kill left behind never fails. After every kill the log
//! holds, per shard, dense LSNs that extend everything verified before, and per chat, counters
//! 0, 1, 2, ... with no gap, duplicate or reorder; every acknowledged `(shard, lsn)` holds exactly
//! the payload that was acknowledged. An append that was never acknowledged may or may not be
//! there, but if it is, it has the right content and place. Every torn tail is cut from the
//! newest segment only, by exactly the bytes reported, identically by the parent and by the
//! child that reopens the same bytes.
//!
//! How: this test binary re-executes itself (`current_exe() child_writer --exact --nocapture
//! --test-threads=1`) with `MISSIVE_CRASH_CHILD_DIR` set; without that variable `child_writer`
//! returns at once. The child opens the log, reads it back to resume each chat's counter, then
//! runs 4 writer threads × 8 chats and 1 reader thread, printing `ACK <shard> <lsn> <chat-hex>
//! <counter>` on stdout after each acknowledged append, one locked and flushed write per line.
//! The parent kills it 1–200 ms after spawning it (about 10% of kills aimed at the start-up
//! window instead), ignores a partial last line, and opens the log in-process to check it:
//! about half the time in place, otherwise on an image of it (sealed segments hard-linked, the
//! newest copied) so that the next child has to repair any torn tail itself.
//!
//! Knobs: `CRASH_CYCLES` (default 50), `SEED` (replays the kill schedule and the children's load
//! pattern; thread interleavings still differ), `CRASH_TIME_CAP_SECS` (default 600 s per 1000
//! cycles, at least 60 s; the test fails if fewer than 80% of the cycles finish within it).
//!
//! Kill -9 keeps the page cache: this tests recovery logic and the ack protocol, not fsync
//! discipline (the simulated power cut of row 2 does that).

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ChildStdout, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use missive_log::{
    ChatId, Durability, Entry, Log, LogConfig, Lsn, Record, RecordKind, SEGMENT_WINDOW_MS_MIN,
    ShardId, Timestamp,
};

/// Set in the child's environment: the log directory. Its presence makes `child_writer` act.
const CHILD_DIR_ENV: &str = "MISSIVE_CRASH_CHILD_DIR";
/// Set in the child's environment: the seed of its load pattern.
const CHILD_SEED_ENV: &str = "MISSIVE_CRASH_CHILD_SEED";

const SHARDS: u32 = 4;
const WRITERS: usize = 4;
const CHATS_PER_WRITER: usize = 8;
const CHATS: usize = WRITERS * CHATS_PER_WRITER;
/// Small segments, so that they roll (and get sealed and mapped) several times per cycle.
const SEGMENT_BYTES: u64 = 64 << 10;
/// Group numbers of the test's chats start here.
const CHAT_BASE: u64 = 0xC4A5_0000;

const KILL_MS_MIN: u64 = 1;
const KILL_MS_MAX: u64 = 200;
const EARLY_KILL_PERCENT: u64 = 10;
const IMAGE_CHECK_PERCENT: u64 = 50;
/// Every this many cycles the check also runs `Log::verify` over every segment.
const FULL_VERIFY_EVERY: usize = 100;
const CYCLES_DEFAULT: usize = 50;

/// A child that was never killed stops by itself after this long (the parent is gone).
const CHILD_LIFETIME: Duration = Duration::from_secs(30);
const CHILD_EXIT_PANIC: i32 = 86;
const CHILD_EXIT_UNKILLED: i32 = 87;

/// Payload layout: magic, chat index (u32 LE), counter (u64 LE), filler length (u32 LE), filler.
const PAYLOAD_MAGIC: [u8; 4] = *b"CRSH";
const PAYLOAD_HEADER: usize = 4 + 4 + 8 + 4;
const FILLER_MAX: u64 = 2000;

// ---------------------------------------------------------------------------------------------
// Shared helpers.

/// xorshift64, seeded through splitmix64 so that any seed (0 included) works.
#[derive(Clone, Debug)]
struct XorShift(u64);

impl XorShift {
    fn new(seed: u64) -> XorShift {
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        XorShift((z ^ (z >> 31)) | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// Uniform in `0..n` (n > 0; the modulo bias is irrelevant here).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// Uniform in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn config() -> LogConfig {
    LogConfig {
        shard_count: Some(SHARDS),
        durability: Durability::Always,
        segment_bytes_max: SEGMENT_BYTES,
        // One-second windows: segments also roll by time, a few times per cycle.
        segment_window_ms: SEGMENT_WINDOW_MS_MIN,
        ..LogConfig::default()
    }
}

fn chat(index: usize) -> ChatId {
    ChatId::group(CHAT_BASE + index as u64)
}

fn chat_index(chat: ChatId) -> Option<usize> {
    let index = chat.group_number()?.checked_sub(CHAT_BASE)?;
    (index < CHATS as u64).then_some(index as usize)
}

/// The one payload the test ever writes for `(chat, counter)`: checkable byte for byte. Even
/// counters carry compressible filler, odd ones random bytes, so batches take both codec paths.
fn payload(chat: usize, counter: u64) -> Bytes {
    let mut rng = XorShift::new(((chat as u64) << 48) ^ counter ^ 0x00C0_FFEE);
    let filler = rng.below(FILLER_MAX + 1) as usize;
    let mut out = Vec::with_capacity(PAYLOAD_HEADER + filler);
    out.extend_from_slice(&PAYLOAD_MAGIC);
    out.extend_from_slice(&(chat as u32).to_le_bytes());
    out.extend_from_slice(&counter.to_le_bytes());
    out.extend_from_slice(&(filler as u32).to_le_bytes());
    if counter.is_multiple_of(2) {
        out.extend(b"missive crash filler ".iter().cycle().take(filler));
    } else {
        out.extend((0..filler).map(|_| rng.next() as u8));
    }
    Bytes::from(out)
}

/// `(chat index, counter)` from a payload's header, if it looks like one of ours.
fn decode_payload(payload: &[u8]) -> Option<(usize, u64)> {
    if payload.len() < PAYLOAD_HEADER || payload[..4] != PAYLOAD_MAGIC {
        return None;
    }
    let chat = u32::from_le_bytes(payload[4..8].try_into().ok()?) as usize;
    let counter = u64::from_le_bytes(payload[8..16].try_into().ok()?);
    (chat < CHATS).then_some((chat, counter))
}

/// Checks that `entry`, read from `shard`, is exactly a record this test writes; returns its
/// `(chat index, counter)`.
fn check_entry(log: &Log, shard: u32, entry: &Entry) -> Result<(usize, u64), String> {
    let lsn = entry.lsn.0;
    let record = &entry.record;
    let (index, counter) = decode_payload(&record.payload)
        .ok_or_else(|| format!("shard {shard} LSN {lsn}: payload not written by this test"))?;
    if record.kind != RecordKind::Message
        || record.chat != chat(index)
        || record.payload != payload(index, counter)
    {
        return Err(format!(
            "shard {shard} LSN {lsn}: record for chat {index} counter {counter} has wrong \
             content (kind {:?}, chat {:?}, {} payload bytes)",
            record.kind,
            record.chat,
            record.payload.len()
        ));
    }
    let home = log.shard_of(record.chat).0;
    if home != shard {
        return Err(format!(
            "shard {shard} LSN {lsn}: chat {index} belongs to shard {home}"
        ));
    }
    Ok((index, counter))
}

// ---------------------------------------------------------------------------------------------
// The child: a writer process that the parent kills.

/// The child's entry point. Without `MISSIVE_CRASH_CHILD_DIR` it is a no-op that passes.
#[test]
fn child_writer() {
    let Some(dir) = std::env::var_os(CHILD_DIR_ENV) else {
        return;
    };
    let seed = std::env::var(CHILD_SEED_ENV)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    child_main(PathBuf::from(dir), seed);
}

/// One line to stdout: one write under the stdout lock, flushed, so lines never interleave and
/// the parent sees each as soon as it is written.
fn emit(line: &str) {
    let mut out = std::io::stdout().lock();
    // A lost line only makes the parent treat the append as unacknowledged: never a false alarm.
    let _ = out.write_all(line.as_bytes()).and_then(|()| out.flush());
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn child_main(dir: PathBuf, seed: u64) -> ! {
    // Any failure in any thread ends the process at once with a code the parent reports.
    std::panic::set_hook(Box::new(|info| {
        eprintln!("child_writer: {info}");
        std::process::exit(CHILD_EXIT_PANIC);
    }));
    // The leading newline ends whatever libtest printed on the current line.
    emit("\nOPENING\n");
    let log = Log::open(&dir, config()).unwrap_or_else(|e| panic!("recovery failed: {e}"));
    let torn: Vec<String> = log
        .recovery()
        .torn_bytes
        .iter()
        .map(u64::to_string)
        .collect();
    emit(&format!("OPENED torn={}\n", torn.join(",")));
    let next = resume_counters(&log);
    let heads: Vec<u64> = (0..SHARDS)
        .map(|s| log.head(ShardId(s)).expect("head").0)
        .collect();
    emit("READY\n");

    let log = Arc::new(log);
    for writer in 0..WRITERS {
        let log = Arc::clone(&log);
        let chats = writer * CHATS_PER_WRITER..(writer + 1) * CHATS_PER_WRITER;
        let next = next[chats.clone()].to_vec();
        let seed = seed ^ (writer as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        std::thread::spawn(move || write_forever(&log, chats.start, next, seed));
    }
    {
        let log = Arc::clone(&log);
        std::thread::spawn(move || read_forever(&log, heads, next));
    }
    std::thread::sleep(CHILD_LIFETIME);
    eprintln!("child_writer: not killed within {CHILD_LIFETIME:?}");
    std::process::exit(CHILD_EXIT_UNKILLED);
}

/// Each chat's next counter, from the log: reads each shard back from its newest segment, going
/// one segment further back until every chat of the shard was seen (or the log's start). Checks
/// what it reads on the way.
fn resume_counters(log: &Log) -> Vec<u64> {
    let mut next = vec![0u64; CHATS];
    for shard in 0..SHARDS {
        let id = ShardId(shard);
        let head = log.head(id).expect("head").0;
        let homed: Vec<usize> = (0..CHATS)
            .filter(|&c| log.shard_of(chat(c)) == id)
            .collect();
        let segments = log.segments(id).expect("segments");
        let mut back = segments.len();
        let mut last: HashMap<usize, u64> = HashMap::new();
        while back > 0 {
            back -= 1;
            let from = segments[back].first_lsn;
            last.clear();
            let mut lsn = from;
            let reader = log.read_from(id, Lsn(from)).expect("read_from");
            for entry in reader {
                let entry = entry.unwrap_or_else(|e| panic!("read-back of shard {shard}: {e}"));
                assert_eq!(entry.lsn.0, lsn, "read-back of shard {shard}: LSN gap");
                lsn += 1;
                let (c, n) = check_entry(log, shard, &entry).unwrap_or_else(|e| panic!("{e}"));
                if let Some(previous) = last.insert(c, n) {
                    assert_eq!(n, previous + 1, "read-back: chat {c} counter out of order");
                }
            }
            assert_eq!(
                lsn, head,
                "read-back of shard {shard} stopped before the head"
            );
            if homed.iter().all(|c| last.contains_key(c)) {
                break;
            }
        }
        for (c, n) in last {
            next[c] = n + 1;
        }
    }
    next
}

/// A writer thread: bursts of appends to a random run of its chats, 1–6 per chat, then waits
/// for each ticket in order and prints its `ACK` line.
fn write_forever(log: &Log, first_chat: usize, mut next: Vec<u64>, seed: u64) {
    let mut rng = XorShift::new(seed);
    let mut pending = Vec::new();
    loop {
        let chats = 1 + rng.below(CHATS_PER_WRITER as u64) as usize;
        let start = rng.below(CHATS_PER_WRITER as u64) as usize;
        for step in 0..chats {
            let local = (start + step) % CHATS_PER_WRITER;
            for _ in 0..=rng.below(6) {
                let index = first_chat + local;
                let counter = next[local];
                next[local] += 1;
                let record = Record {
                    kind: RecordKind::Message,
                    chat: chat(index),
                    timestamp: Timestamp(now_ms()),
                    payload: payload(index, counter),
                };
                let ticket = log
                    .append(record)
                    .unwrap_or_else(|e| panic!("append failed: {e}"));
                pending.push((index, counter, ticket));
            }
        }
        for (index, counter, ticket) in pending.drain(..) {
            let appended = ticket
                .wait()
                .unwrap_or_else(|e| panic!("append of chat {index} #{counter} failed: {e}"));
            emit(&format!(
                "ACK {} {} {:032x} {}\n",
                appended.batch.shard.0,
                appended.lsn.0,
                chat(index).to_u128(),
                counter
            ));
        }
    }
}

/// The reader thread: follows every shard from its head at start-up, checking each
/// acknowledged record as it becomes readable (active segments by positioned reads, sealed ones
/// through their maps).
fn read_forever(log: &Log, mut position: Vec<u64>, mut next: Vec<u64>) {
    loop {
        let mut progressed = false;
        for shard in 0..SHARDS {
            let at = &mut position[shard as usize];
            let reader = log.read_from(ShardId(shard), Lsn(*at)).expect("read_from");
            for entry in reader {
                let entry = entry.unwrap_or_else(|e| panic!("reader, shard {shard}: {e}"));
                assert_eq!(entry.lsn.0, *at, "reader: LSN gap in shard {shard}");
                let (c, n) = check_entry(log, shard, &entry).unwrap_or_else(|e| panic!("{e}"));
                assert_eq!(n, next[c], "reader: chat {c} out of order");
                next[c] += 1;
                *at += 1;
                progressed = true;
            }
        }
        if !progressed {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The parent: spawns, kills and checks.

/// One acknowledgement line.
#[derive(Clone, Copy, Debug)]
struct Ack {
    shard: u32,
    lsn: u64,
    chat: usize,
    counter: u64,
}

/// What the child printed, with the parent's arrival times of its start-up lines.
#[derive(Debug, Default)]
struct Output {
    bytes: Vec<u8>,
    opening: Option<Duration>,
    opened: Option<Duration>,
    ready: Option<Duration>,
}

fn collect_output(stdout: ChildStdout, spawned: Instant) -> std::io::Result<Output> {
    let mut reader = BufReader::new(stdout);
    let mut output = Output::default();
    let mut line = Vec::new();
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            return Ok(output);
        }
        let at = Some(spawned.elapsed());
        if line.starts_with(b"OPENING\n") {
            output.opening = at;
        } else if line.starts_with(b"OPENED ") && line.ends_with(b"\n") {
            output.opened = at;
        } else if line.starts_with(b"READY\n") {
            output.ready = at;
        }
        output.bytes.extend_from_slice(&line);
    }
}

/// The parsed complete lines of a child's output.
#[derive(Debug, Default)]
struct Observed {
    acks: Vec<Ack>,
    opening: bool,
    opened_torn: Option<Vec<u64>>,
    ready: bool,
    partial_line: bool,
}

fn parse_output(bytes: &[u8]) -> Result<Observed, String> {
    let complete = bytes
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(&bytes[..0], |end| &bytes[..end]);
    let mut observed = Observed {
        // A kill in the middle of a write leaves a partial last line: it acknowledges nothing.
        partial_line: !bytes.is_empty() && bytes.last() != Some(&b'\n'),
        ..Observed::default()
    };
    for line in complete.split(|&b| b == b'\n') {
        let line = String::from_utf8_lossy(line);
        if let Some(rest) = line.strip_prefix("ACK ") {
            let bad = || format!("malformed complete line {line:?}");
            let fields: Vec<&str> = rest.split(' ').collect();
            let [shard, lsn, hex, counter] = fields[..] else {
                return Err(bad());
            };
            let raw = u128::from_str_radix(hex, 16).map_err(|_| bad())?;
            observed.acks.push(Ack {
                shard: shard.parse().map_err(|_| bad())?,
                lsn: lsn.parse().map_err(|_| bad())?,
                chat: chat_index(ChatId::from_u128(raw)).ok_or_else(bad)?,
                counter: counter.parse().map_err(|_| bad())?,
            });
        } else if line == "OPENING" {
            observed.opening = true;
        } else if let Some(torn) = line.strip_prefix("OPENED torn=") {
            let torn: Result<Vec<u64>, _> = torn.split(',').map(str::parse).collect();
            observed.opened_torn = Some(torn.map_err(|_| format!("malformed line {line:?}"))?);
        } else if line == "READY" {
            observed.ready = true;
        }
    }
    Ok(observed)
}

/// What the parent has verified so far: the log must keep extending it.
#[derive(Clone, Debug)]
struct Model {
    /// Per shard, the next LSN (everything below was verified).
    next_lsn: Vec<u64>,
    /// Per shard, the last verified record as `(chat, counter)`.
    last: Vec<Option<(usize, u64)>>,
    /// Per chat, the next counter.
    next_counter: Vec<u64>,
}

impl Model {
    fn new() -> Model {
        Model {
            next_lsn: vec![1; SHARDS as usize],
            last: vec![None; SHARDS as usize],
            next_counter: vec![0; CHATS],
        }
    }
}

/// What one check found.
#[derive(Debug)]
struct Checked {
    model: Model,
    torn: Vec<u64>,
    records: usize,
}

/// Opens the log in `dir` and checks it against `model` and the acknowledgements of the last
/// cycle. Returns the extended model.
fn check_log(dir: &Path, model: &Model, acks: &[Ack], full: bool) -> Result<Checked, String> {
    let log = Log::open(dir, config()).map_err(|e| format!("recovery failed: {e}"))?;
    let torn = log.recovery().torn_bytes.clone();
    let mut next = model.clone();
    let mut found: HashMap<(u32, u64), (usize, u64)> = HashMap::new();
    for shard in 0..SHARDS {
        let s = shard as usize;
        let id = ShardId(shard);
        let start = model.next_lsn[s];
        let mut reader = log
            .read_from(id, Lsn(start.saturating_sub(1).max(1)))
            .map_err(|e| format!("read_from shard {shard}: {e}"))?;
        if let Some(expected) = model.last[s] {
            // The last record verified before must still be there, unchanged.
            let entry = reader
                .next()
                .ok_or_else(|| format!("shard {shard}: verified LSN {} vanished", start - 1))?
                .map_err(|e| format!("shard {shard}: reading verified LSN {}: {e}", start - 1))?;
            let got = check_entry(&log, shard, &entry)?;
            if entry.lsn.0 != start - 1 || got != expected {
                return Err(format!(
                    "shard {shard}: verified LSN {} changed: now LSN {} = {got:?}, was {expected:?}",
                    start - 1,
                    entry.lsn.0
                ));
            }
        }
        for entry in reader {
            let entry = entry.map_err(|e| format!("shard {shard}: read failed: {e}"))?;
            let lsn = entry.lsn.0;
            if lsn != next.next_lsn[s] {
                return Err(format!(
                    "shard {shard}: LSN {lsn} where {} was due (gap or reorder)",
                    next.next_lsn[s]
                ));
            }
            let (c, n) = check_entry(&log, shard, &entry)?;
            if n != next.next_counter[c] {
                return Err(format!(
                    "shard {shard} LSN {lsn}: chat {c} counter {n} where {} was due \
                     (gap, duplicate or reorder)",
                    next.next_counter[c]
                ));
            }
            next.next_counter[c] += 1;
            next.next_lsn[s] += 1;
            next.last[s] = Some((c, n));
            found.insert((shard, lsn), (c, n));
        }
        let head = log.head(id).map_err(|e| e.to_string())?.0;
        if head != next.next_lsn[s] {
            return Err(format!(
                "shard {shard}: head {head}, but records end before LSN {}",
                next.next_lsn[s]
            ));
        }
    }
    let mut seen = HashSet::new();
    let mut last_ack: Vec<Option<Ack>> = vec![None; CHATS];
    for &ack in acks {
        let home = log.shard_of(chat(ack.chat)).0;
        if ack.shard != home {
            return Err(format!(
                "{ack:?}: acknowledged in shard {}, chat lives in {home}",
                ack.shard
            ));
        }
        if !seen.insert((ack.shard, ack.lsn)) {
            return Err(format!("{ack:?}: LSN acknowledged twice"));
        }
        match found.get(&(ack.shard, ack.lsn)) {
            Some(&stored) if stored == (ack.chat, ack.counter) => {}
            Some(stored) => {
                return Err(format!("{ack:?}: the LSN holds (chat, counter) {stored:?}"));
            }
            None => {
                let s = ack.shard as usize;
                return Err(format!(
                    "ACKNOWLEDGED APPEND LOST: {ack:?}; shard {} now ends at LSN {} \
                     (this cycle's records start at LSN {})",
                    ack.shard,
                    next.next_lsn[s] - 1,
                    model.next_lsn[s]
                ));
            }
        }
        if let Some(previous) = last_ack[ack.chat]
            && (ack.counter <= previous.counter || ack.lsn <= previous.lsn)
        {
            return Err(format!("{ack:?} acknowledged after {previous:?}"));
        }
        last_ack[ack.chat] = Some(ack);
    }
    if full {
        log.verify().map_err(|e| format!("verify: {e}"))?;
    }
    log.close().map_err(|e| format!("close: {e}"))?;
    Ok(Checked {
        model: next,
        torn,
        records: found.len(),
    })
}

/// Builds an image of the log in `image`: top-level files copied, sealed segments hard-linked
/// (nothing ever writes them again), the newest segment of each shard copied (recovery may cut
/// it). Opening the image repairs the image only, so the next child repairs the original.
fn make_image(dir: &Path, image: &Path) -> std::io::Result<()> {
    if image.exists() {
        std::fs::remove_dir_all(image)?;
    }
    std::fs::create_dir_all(image)?;
    if !dir.exists() {
        return Ok(());
    }
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let (from, to) = (entry.path(), image.join(&name));
        if entry.file_type()?.is_dir() {
            std::fs::create_dir(&to)?;
            let mut names: Vec<_> = std::fs::read_dir(&from)?
                .map(|e| e.map(|e| e.file_name()))
                .collect::<Result<_, _>>()?;
            names.sort();
            let newest = names
                .iter()
                .rfind(|n| n.to_string_lossy().ends_with(".seg"))
                .cloned();
            for name in names {
                if Some(&name) == newest.as_ref() || !name.to_string_lossy().ends_with(".seg") {
                    std::fs::copy(from.join(&name), to.join(&name))?;
                } else {
                    std::fs::hard_link(from.join(&name), to.join(&name))?;
                }
            }
        } else if name != "LOCK" {
            std::fs::copy(&from, &to)?;
        }
    }
    Ok(())
}

/// The names and sizes of the two newest segment files of each shard, newest first.
fn tail_sizes(dir: &Path) -> std::io::Result<Vec<Vec<(String, u64)>>> {
    let mut tails = Vec::new();
    for shard in 0..SHARDS {
        let folder = dir.join(format!("shard-{shard:04}"));
        let mut names = Vec::new();
        if folder.exists() {
            for entry in std::fs::read_dir(&folder)? {
                if let Ok(name) = entry?.file_name().into_string()
                    && name.ends_with(".seg")
                {
                    names.push(name);
                }
            }
        }
        names.sort_unstable();
        let newest = names.iter().rev().take(2);
        let sizes =
            newest.map(|name| Ok((name.clone(), std::fs::metadata(folder.join(name))?.len())));
        tails.push(sizes.collect::<std::io::Result<_>>()?);
    }
    Ok(tails)
}

/// Checks that opening the log cut each shard's torn tail from its newest segment only, by
/// exactly the bytes it reported, and touched no other segment.
fn check_cuts(
    before: &[Vec<(String, u64)>],
    after: &[Vec<(String, u64)>],
    torn: &[u64],
) -> Result<(), String> {
    for (shard, ((before, after), &torn)) in before.iter().zip(after).zip(torn).enumerate() {
        let expected: Vec<(String, u64)> = before
            .iter()
            .enumerate()
            .map(|(i, (name, len))| {
                (
                    name.clone(),
                    if i == 0 { len - torn.min(*len) } else { *len },
                )
            })
            .collect();
        if *after != expected || (torn > 0 && before.first().is_none_or(|(_, len)| *len < torn)) {
            return Err(format!(
                "shard {shard}: recovery reported cutting {torn} bytes, but the newest segments \
                 went from {before:?} to {after:?}"
            ));
        }
    }
    Ok(())
}

/// One cycle's random choices. Every cycle draws the same number of values, so `SEED` replays
/// the schedule whatever the timing.
#[derive(Debug)]
struct Plan {
    delay: Duration,
    early: bool,
    image: bool,
    child_seed: u64,
}

/// Moving averages of when the child's start-up lines arrive, to aim early kills.
#[derive(Debug)]
struct StartupTiming {
    opening_ms: f64,
    ready_ms: f64,
}

impl StartupTiming {
    fn observe(&mut self, output: &Output) {
        const WEIGHT: f64 = 0.2;
        if let Some(at) = output.opening {
            self.opening_ms += WEIGHT * (at.as_secs_f64() * 1e3 - self.opening_ms);
        }
        if let Some(at) = output.ready {
            self.ready_ms += WEIGHT * (at.as_secs_f64() * 1e3 - self.ready_ms);
        }
    }
}

impl Plan {
    fn draw(rng: &mut XorShift, timing: &StartupTiming) -> Plan {
        let early = rng.below(100) < EARLY_KILL_PERCENT;
        let uniform_ms = KILL_MS_MIN + rng.below(KILL_MS_MAX - KILL_MS_MIN + 1);
        let fraction = rng.unit();
        let image = rng.below(100) < IMAGE_CHECK_PERCENT;
        let child_seed = rng.next();
        let delay_ms = if early {
            // Somewhere from just before `Log::open` starts to just after the read-back ends.
            let from = timing.opening_ms * 0.9;
            let to = timing.ready_ms * 1.1;
            (from + fraction * (to - from)).clamp(KILL_MS_MIN as f64, KILL_MS_MAX as f64)
        } else {
            uniform_ms as f64
        };
        Plan {
            delay: Duration::from_secs_f64(delay_ms / 1e3),
            early,
            image,
            child_seed,
        }
    }
}

#[derive(Debug, Default)]
struct Stats {
    cycles: usize,
    acks_checked: usize,
    records_checked: usize,
    unacked_present: usize,
    max_acks_in_cycle: usize,
    torn_tails: usize,
    torn_bytes: u64,
    child_torn_repairs: usize,
    partial_lines: usize,
    early_kills: usize,
    image_checks: usize,
    full_verifies: usize,
    killed_before_open: usize,
    killed_in_open: usize,
    killed_in_read_back: usize,
    killed_under_load: usize,
}

/// The parent's environment and state across cycles.
struct Harness {
    exe: PathBuf,
    dir: PathBuf,
    scratch: PathBuf,
    model: Model,
    stats: Stats,
    timing: StartupTiming,
    /// What the next child's `Log::open` must report cutting.
    expected_child_torn: Vec<u64>,
}

impl Harness {
    fn run_cycle(&mut self, cycle: usize, plan: &Plan) -> Result<(), String> {
        let stderr_path = self.scratch.join("child-stderr");
        let stderr = File::create(&stderr_path).map_err(|e| format!("stderr file: {e}"))?;
        let child_stderr = || std::fs::read_to_string(&stderr_path).unwrap_or_default();
        let spawned = Instant::now();
        let mut child = Command::new(&self.exe)
            .args(["child_writer", "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD_DIR_ENV, &self.dir)
            .env(CHILD_SEED_ENV, plan.child_seed.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .map_err(|e| format!("spawn child: {e}"))?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let collector = std::thread::spawn(move || collect_output(stdout, spawned));
        std::thread::sleep((spawned + plan.delay).saturating_duration_since(Instant::now()));
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            let _ = collector.join();
            return Err(format!(
                "the child ended by itself ({status}) before its kill at {:?}; its stderr:\n{}",
                plan.delay,
                child_stderr()
            ));
        }
        child.kill().map_err(|e| format!("kill: {e}"))?;
        let status = child.wait().map_err(|e| format!("wait: {e}"))?;
        let output = collector
            .join()
            .map_err(|_| "output collector panicked".to_string())?
            .map_err(|e| format!("reading the child's stdout: {e}"))?;
        if status.signal() != Some(libc::SIGKILL) {
            return Err(format!(
                "the child ended with {status}, not by the kill; its stderr:\n{}",
                child_stderr()
            ));
        }
        self.timing.observe(&output);
        let observed = parse_output(&output.bytes)?;

        let stats = &mut self.stats;
        stats.partial_lines += usize::from(observed.partial_line);
        stats.early_kills += usize::from(plan.early);
        match (observed.opening, &observed.opened_torn, observed.ready) {
            (false, ..) => stats.killed_before_open += 1,
            (true, None, _) => stats.killed_in_open += 1,
            (true, Some(_), false) => stats.killed_in_read_back += 1,
            (true, Some(_), true) => stats.killed_under_load += 1,
        }
        if let Some(torn) = &observed.opened_torn {
            if *torn != self.expected_child_torn {
                return Err(format!(
                    "the child's recovery cut {torn:?} bytes per shard; the same bytes opened \
                     by the parent had {:?} to cut",
                    self.expected_child_torn
                ));
            }
            stats.child_torn_repairs += torn.iter().filter(|&&t| t > 0).count();
        }

        let image = self.scratch.join("image");
        let check_dir = if plan.image {
            make_image(&self.dir, &image).map_err(|e| format!("imaging the log: {e}"))?;
            stats.image_checks += 1;
            &image
        } else {
            &self.dir
        };
        let full = (cycle + 1).is_multiple_of(FULL_VERIFY_EVERY);
        let tails = tail_sizes(check_dir).map_err(|e| format!("listing segments: {e}"))?;
        let checked = check_log(check_dir, &self.model, &observed.acks, full)?;
        let tails_after = tail_sizes(check_dir).map_err(|e| format!("listing segments: {e}"))?;
        check_cuts(&tails, &tails_after, &checked.torn)?;
        if plan.image {
            std::fs::remove_dir_all(&image).map_err(|e| format!("removing the image: {e}"))?;
            self.expected_child_torn = checked.torn.clone();
        } else {
            self.expected_child_torn = vec![0; SHARDS as usize];
        }
        stats.full_verifies += usize::from(full);
        stats.torn_tails += checked.torn.iter().filter(|&&t| t > 0).count();
        stats.torn_bytes += checked.torn.iter().sum::<u64>();
        stats.acks_checked += observed.acks.len();
        stats.records_checked += checked.records;
        stats.unacked_present += checked.records - observed.acks.len();
        stats.max_acks_in_cycle = stats.max_acks_in_cycle.max(observed.acks.len());
        stats.cycles += 1;
        self.model = checked.model;
        Ok(())
    }

    /// After the last cycle: reads the whole log from LSN 1 and verifies every segment.
    fn final_check(&self) -> Result<(usize, usize), String> {
        let log = Log::open(&self.dir, config()).map_err(|e| format!("recovery failed: {e}"))?;
        let mut counters = vec![0u64; CHATS];
        let (mut segments, mut sealed) = (0, 0);
        for shard in 0..SHARDS {
            let id = ShardId(shard);
            let mut lsn = 1;
            for entry in log.read_from(id, Lsn(1)).map_err(|e| e.to_string())? {
                let entry = entry.map_err(|e| format!("shard {shard}: {e}"))?;
                if entry.lsn.0 != lsn {
                    return Err(format!(
                        "shard {shard}: LSN {} where {lsn} was due",
                        entry.lsn.0
                    ));
                }
                let (c, n) = check_entry(&log, shard, &entry)?;
                if n != counters[c] {
                    return Err(format!(
                        "chat {c}: counter {n} where {} was due",
                        counters[c]
                    ));
                }
                counters[c] += 1;
                lsn += 1;
            }
            if lsn != self.model.next_lsn[shard as usize] {
                return Err(format!(
                    "shard {shard}: ends before LSN {lsn}, verified up to {}",
                    self.model.next_lsn[shard as usize]
                ));
            }
            let infos = log.segments(id).map_err(|e| e.to_string())?;
            segments += infos.len();
            sealed += infos.iter().filter(|s| s.sealed).count();
        }
        if counters != self.model.next_counter {
            return Err("per-chat counters differ from the verified model".to_string());
        }
        log.verify().map_err(|e| format!("verify: {e}"))?;
        log.close().map_err(|e| format!("close: {e}"))?;
        Ok((segments, sealed))
    }
}

fn env_number(name: &str) -> Option<u64> {
    let value = std::env::var(name).ok()?;
    let value = value.trim();
    let parsed = match value.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => value.parse(),
    };
    Some(parsed.unwrap_or_else(|_| panic!("{name}={value:?} is not a number")))
}

/// The crash cycles: spawn the child, kill it, check the log; `CRASH_CYCLES` times.
#[test]
fn kill_9_crash_cycles() {
    if std::env::var_os(CHILD_DIR_ENV).is_some() {
        return;
    }
    let seed = env_number("SEED").unwrap_or_else(|| {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        nanos ^ u64::from(std::process::id()).rotate_left(32)
    });
    let cycles = env_number("CRASH_CYCLES").map_or(CYCLES_DEFAULT, |n| n as usize);
    let cap = Duration::from_secs(
        env_number("CRASH_TIME_CAP_SECS").unwrap_or((cycles as u64 * 600 / 1000).max(60)),
    );
    let replay = format!("SEED={seed} CRASH_CYCLES={cycles}");
    eprintln!("crash_kill: {replay} (time cap {cap:?})");

    let temp = tempfile::tempdir().expect("tempdir");
    let mut harness = Harness {
        exe: std::env::current_exe().expect("current_exe"),
        dir: temp.path().join("log"),
        scratch: temp.path().to_path_buf(),
        model: Model::new(),
        stats: Stats::default(),
        timing: StartupTiming {
            opening_ms: 5.0,
            ready_ms: 20.0,
        },
        expected_child_torn: vec![0; SHARDS as usize],
    };
    let mut rng = XorShift::new(seed);
    let started = Instant::now();
    for cycle in 0..cycles {
        if started.elapsed() >= cap {
            eprintln!("crash_kill: time cap {cap:?} reached after {cycle} cycles");
            break;
        }
        let plan = Plan::draw(&mut rng, &harness.timing);
        if let Err(error) = harness.run_cycle(cycle, &plan) {
            panic!(
                "crash_kill: cycle {cycle} ({plan:?}) failed: {error}\n  replay: {replay} \
                 (the failure was after {} acknowledged appends, {} torn tails; log kept at {})",
                harness.stats.acks_checked,
                harness.stats.torn_tails,
                temp.keep().display()
            );
        }
    }
    let (segments, sealed) = harness.final_check().unwrap_or_else(|error| {
        panic!(
            "crash_kill: final check failed: {error}\n  replay: {replay} (log kept at {})",
            temp.keep().display()
        )
    });
    let elapsed = started.elapsed();
    let s = &harness.stats;
    eprintln!(
        "crash_kill: {replay}: {} of {cycles} cycles in {elapsed:.1?}; {} acknowledged appends \
         checked ({} records, {} present without an ack, at most {} acks in one cycle); {} torn \
         tails cut ({} bytes) by the parent, {} by a child; kills: {} early-aimed, {} before \
         open, {} in open, {} in read-back, {} under load; {} partial last lines; {} image \
         checks, {} full verifies; {} segments ({} sealed) at the end; child start-up: \
         `Log::open` begins at ~{:.1} ms, the read-back ends at ~{:.1} ms",
        s.cycles,
        s.acks_checked,
        s.records_checked,
        s.unacked_present,
        s.max_acks_in_cycle,
        s.torn_tails,
        s.torn_bytes,
        s.child_torn_repairs,
        s.early_kills,
        s.killed_before_open,
        s.killed_in_open,
        s.killed_in_read_back,
        s.killed_under_load,
        s.partial_lines,
        s.image_checks,
        s.full_verifies,
        segments,
        sealed,
        harness.timing.opening_ms,
        harness.timing.ready_ms,
    );
    assert!(
        s.cycles * 5 >= cycles * 4,
        "crash_kill: only {} of {cycles} cycles finished within {cap:?} (80% needed); {replay}",
        s.cycles
    );
    assert!(
        s.acks_checked > 0,
        "no append was ever acknowledged; {replay}"
    );
}
