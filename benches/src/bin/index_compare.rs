//! The index harness: `missive-index` against its targets (issue 3) and SQLite, in one process
//! and one run, printed as Markdown tables.
//!
//! ```text
//! cargo run --release -p missive-benches --bin index_compare -- [--messages 10000000] [--quick]
//! ```
//!
//! The dataset is built once per process and reused by every measurement:
//!
//! - **Chats.** `--chats` 1:1 chats; chat `c` is between sender `1 + c` (device 0, who sends
//!   every message of it) and recipient `2^32 + c / 2` (so each recipient is in two chats and has
//!   everything in both undelivered on every device).
//! - **Messages.** `--messages` messages of 256 incompressible body bytes ([`Message`] payloads
//!   of 314 bytes, 346 bytes per record), appended in this order from one thread with 4096 in
//!   flight under `Durability::Os`, default segments (256 MiB, 1 hour), `--shards` shards.
//!   Message `i` goes to the hot chat (chat 0) when `i % hot_every == 0`, else round-robin to
//!   the other chats; so the hot chat receives 1 in `--hot-every` messages and every other chat
//!   ~`messages / chats` messages, each in a different batch.
//! - **SQLite.** The same messages, in the same order, into `messages(id INTEGER PRIMARY KEY,
//!   chat_id, seq, kind, ts, payload BLOB)` (the payload is the same 314 bytes), WAL,
//!   `synchronous=OFF`, transactions of 10,000 rows; the unique `(chat_id, seq)` index is created
//!   after the bulk load.
//!
//! Options (all optional):
//!
//! | option | default | meaning |
//! |---|---|---|
//! | `--messages N` | 10000000 | messages in the dataset |
//! | `--chats N` | 100000 | chats in the dataset |
//! | `--hot-every N` | 100 | the hot chat receives message `i` when `i % N == 0` |
//! | `--shards N` | 1 | shards of the log |
//! | `--secs S` | 3 | time budget of each latency measurement |
//! | `--receipts N` | 1000000 | receipt records appended and applied |
//! | `--idle-chats N` | 100000 | chats of the resident-memory scenarios |
//! | `--dir PATH` | `$MISSIVE_BENCH_DIR`, else the system temp dir | where the files go |
//! | `--no-sqlite` | | skip the SQLite peer |
//! | `--no-compression` | | build the log with lz4 off (`LogConfig::compression = false`), a diagnostic |
//! | `--small-pages` | | keep sealed segments in 4 KiB pages (`LogConfig::huge_pages = false`, the log's default) |
//! | `--profile WHAT` | | after building, only loop `latest`, `typical`, `pending` (a different device each call), `pending-same` (one device over and over), `pending-cold` (caches and TLB emptied before each call; prints its latency), `receipts` (100,000 appended and applied) or `reopen` (from the checkpoint) for `--secs` (for `perf`) |
//! | `--quick` | | a smoke run: 200,000 messages, 2,000 chats, 0.3 s budgets |
//!
//! The benchmark suite `benches/index.rs` includes this file as a module to build the same
//! dataset; everything it uses is `pub(crate)`.
#![forbid(unsafe_code)]

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use missive_benches::stats::{Latency, fmt_ns, fmt_rate, nanos};
use missive_benches::workload::log_config;
use missive_index::Index;
use missive_index::codec::{ContentKind, Message, Receipt, ReceiptKind};
use missive_log::batch::{BatchPlace, decode_batch, parse_header};
use missive_log::{
    AppendTicket, BatchPos, ChatId, DecodedBatch, DeviceId, Durability, Log, LogConfig, Lsn,
    Record, RecordKind, Seq, ShardId, Timestamp, UserId,
};
use rusqlite::{Connection, params};

pub(crate) type AnyResult<T> = Result<T, Box<dyn std::error::Error>>;

/// The first timestamp: an hour boundary, so the whole dataset falls in one segment window and
/// segments are cut by size alone.
pub(crate) const BASE_MS: u64 = 1_767_225_600_000;
/// Tickets in flight while building (the buffered producer of the log benchmarks).
pub(crate) const WINDOW: usize = 4096;
/// Recipients' user ids start here.
pub(crate) const RECIPIENT_BASE: u64 = 1 << 32;
/// Messages one query fetches (`latest`, `pending`).
pub(crate) const FETCH: usize = 50;
/// The typical chat whose batches [`build_log`] records.
pub(crate) const TRACKED: u64 = 2;
/// Messages one inbox fetch returns.
pub(crate) const INBOX_FETCH: usize = 100;

/// The dataset's shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Spec {
    /// Messages.
    pub(crate) messages: u64,
    /// Chats (at least 3).
    pub(crate) chats: u64,
    /// The hot chat receives one message in this many.
    pub(crate) hot_every: u64,
    /// Shards of the log.
    pub(crate) shards: u32,
    /// Whether the log lz4-compresses batches (its default, on).
    pub(crate) compression: bool,
    /// Whether sealed segments are held in 2 MiB pages (`LogConfig::huge_pages`; off by
    /// default in the log, on here: the dataset fits in memory, the case it is for).
    pub(crate) huge_pages: bool,
}

impl Spec {
    /// The benchmark's dataset: 10 M messages in 100 k chats, 1 in 100 to the hot chat.
    pub(crate) const FULL: Spec = Spec {
        messages: 10_000_000,
        chats: 100_000,
        hot_every: 100,
        shards: 1,
        compression: true,
        huge_pages: true,
    };

    /// The log's configuration: the defaults with `Durability::Os`, as specified.
    pub(crate) fn log_config(&self) -> LogConfig {
        LogConfig {
            compression: self.compression,
            huge_pages: self.huge_pages,
            ..log_config(Durability::Os, self.shards)
        }
    }

    /// The chat numbered `c` (0 is the hot chat).
    pub(crate) fn chat(&self, c: u64) -> ChatId {
        ChatId::direct(self.sender(c), self.recipient(c))
    }

    /// Who sends every message of chat `c`.
    pub(crate) fn sender(&self, c: u64) -> UserId {
        UserId(1 + c)
    }

    /// Who receives chat `c`'s messages (shared by chats `2k` and `2k + 1`).
    pub(crate) fn recipient(&self, c: u64) -> UserId {
        UserId(RECIPIENT_BASE + c / 2)
    }

    /// The chat of message `i`.
    pub(crate) fn chat_of_message(&self, i: u64) -> u64 {
        if i.is_multiple_of(self.hot_every) {
            0
        } else {
            // Messages before `i` that went to the other chats.
            let k = i - i / self.hot_every - 1;
            1 + k % (self.chats - 1)
        }
    }

    /// The timestamp of message `i`: 4096 messages per millisecond.
    pub(crate) fn timestamp(&self, i: u64) -> Timestamp {
        Timestamp(BASE_MS + i / 4096)
    }

    /// "Now" for queries: nothing has expired (no TTLs anyway).
    pub(crate) fn now(&self) -> Timestamp {
        Timestamp(BASE_MS + 3_600_000)
    }

    /// Messages `latest` returns for chat `c`: [`FETCH`], or all of a short chat.
    pub(crate) fn typical_fetch(&self, c: u64) -> usize {
        (self.head(c) as usize).min(FETCH)
    }

    /// Messages `pending` returns for the recipient of chat `c` (nothing delivered):
    /// [`INBOX_FETCH`], or all of its two chats'.
    pub(crate) fn inbox_fetch(&self, c: u64) -> usize {
        let first = c & !1;
        let both = self.head(first)
            + if first + 1 < self.chats {
                self.head(first + 1)
            } else {
                0
            };
        (both as usize).min(INBOX_FETCH)
    }

    /// Messages of chat `c` once the dataset is built.
    pub(crate) fn head(&self, c: u64) -> u64 {
        let hot = self.messages.div_ceil(self.hot_every);
        if c == 0 {
            return hot;
        }
        let others = self.messages - hot;
        let k = c - 1;
        others / (self.chats - 1) + u64::from(k < others % (self.chats - 1))
    }
}

/// One generated message.
#[derive(Clone, Debug)]
pub(crate) struct Generated {
    /// Its chat's number.
    pub(crate) chat: u64,
    /// Its seq in the chat.
    pub(crate) seq: u64,
    /// The record to append (its payload is what SQLite stores too).
    pub(crate) record: Record,
}

/// The dataset's messages in order, with their chats' seqs.
pub(crate) struct Generator<'a> {
    spec: Spec,
    next: u64,
    seqs: Vec<u64>,
    bodies: &'a [Bytes],
}

impl<'a> Generator<'a> {
    pub(crate) fn new(spec: Spec, bodies: &'a [Bytes]) -> Generator<'a> {
        assert!(spec.chats >= 3 && spec.hot_every >= 2 && !bodies.is_empty());
        Generator {
            spec,
            next: 0,
            seqs: vec![0; spec.chats as usize],
            bodies,
        }
    }
}

/// A message payload as the engine would write it.
pub(crate) fn message_payload(seq: u64, sender: UserId, n: u64, body: Bytes) -> Bytes {
    let mut client_msg_id = [0u8; 16];
    client_msg_id[..8].copy_from_slice(&n.to_le_bytes());
    Message {
        seq: Seq(seq),
        sender,
        sender_device: DeviceId(0),
        client_msg_id,
        content: ContentKind::Text,
        ttl_ms: 0,
        reply_to: None,
        media: Bytes::new(),
        body,
    }
    .encode()
}

impl Iterator for Generator<'_> {
    type Item = Generated;

    fn next(&mut self) -> Option<Generated> {
        if self.next >= self.spec.messages {
            return None;
        }
        let i = self.next;
        self.next += 1;
        let chat = self.spec.chat_of_message(i);
        let seq = {
            let s = &mut self.seqs[chat as usize];
            *s += 1;
            *s
        };
        let body = self.bodies[(i % self.bodies.len() as u64) as usize].clone();
        let payload = message_payload(seq, self.spec.sender(chat), i, body);
        Some(Generated {
            chat,
            seq,
            record: Record {
                kind: RecordKind::Message,
                chat: self.spec.chat(chat),
                timestamp: self.spec.timestamp(i),
                payload,
            },
        })
    }
}

/// Appends records from one thread with [`WINDOW`] tickets in flight; calls `acked` with each
/// acknowledgement, in append order.
pub(crate) fn append_pipelined<T>(
    log: &Log,
    records: impl Iterator<Item = (T, Record)>,
    mut acked: impl FnMut(T, BatchPos),
) -> missive_log::Result<u64> {
    let mut in_flight: VecDeque<(T, AppendTicket)> = VecDeque::with_capacity(WINDOW);
    let mut count = 0;
    for (tag, record) in records {
        if in_flight.len() >= WINDOW {
            let (tag, ticket) = in_flight.pop_front().expect("window is full");
            acked(tag, ticket.wait()?.batch);
        }
        in_flight.push_back((tag, log.append(record)?));
        count += 1;
    }
    for (tag, ticket) in in_flight {
        acked(tag, ticket.wait()?.batch);
    }
    Ok(count)
}

/// What building the log produced.
#[derive(Clone, Debug, Default)]
pub(crate) struct Built {
    /// Wall time of the appends (and the closing sync).
    pub(crate) elapsed: Duration,
    /// Distinct batches written.
    pub(crate) batches: u64,
    /// The batch of each hot-chat message, in seq order.
    pub(crate) hot_batches: Vec<BatchPos>,
    /// The batch of each message of chat [`TRACKED`] (a typical chat), in seq order.
    pub(crate) tracked_batches: Vec<BatchPos>,
    /// Bytes of the log's segment files.
    pub(crate) log_bytes: u64,
}

/// Builds the dataset's log in `dir` and closes it.
pub(crate) fn build_log(dir: &Path, spec: Spec, bodies: &[Bytes]) -> AnyResult<Built> {
    let start = Instant::now();
    let log = Log::open(dir, spec.log_config())?;
    let mut built = Built::default();
    let mut last: Vec<Option<BatchPos>> = vec![None; spec.shards as usize];
    let records = Generator::new(spec, bodies).map(|g| (g.chat, g.record));
    append_pipelined(&log, records, |chat, pos| {
        // One producer: each shard's acknowledgements come in batch order.
        let last = &mut last[pos.shard.0 as usize];
        if *last != Some(pos) {
            built.batches += 1;
            *last = Some(pos);
        }
        match chat {
            0 => built.hot_batches.push(pos),
            TRACKED => built.tracked_batches.push(pos),
            _ => {}
        }
    })?;
    log.close()?;
    built.elapsed = start.elapsed();
    built.log_bytes = dir_bytes(dir);
    Ok(built)
}

/// Bytes of the files under `dir`, recursively.
pub(crate) fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_bytes(&e.path()),
            _ => e.metadata().map_or(0, |m| m.len()),
        })
        .sum()
}

/// The SQLite peer's query: the newest `n` messages of a chat.
pub(crate) const SQLITE_LATEST: &str =
    "SELECT seq, ts, payload FROM messages WHERE chat_id = ?1 ORDER BY seq DESC LIMIT ?2";
/// The SQLite peer's inbox query: messages of a chat after a delivered watermark.
pub(crate) const SQLITE_AFTER: &str = "SELECT seq, ts, payload FROM messages \
     WHERE chat_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3";

/// Builds the dataset's SQLite peer at `path`; returns the connection and the build time.
pub(crate) fn build_sqlite(
    path: &Path,
    spec: Spec,
    bodies: &[Bytes],
) -> AnyResult<(Connection, Duration)> {
    let start = Instant::now();
    let mut conn = Connection::open(path)?;
    let mode: String =
        conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
    assert_eq!(mode.to_ascii_lowercase(), "wal", "SQLite refused WAL mode");
    conn.pragma_update(None, "synchronous", "OFF")?;
    conn.execute_batch(missive_benches::sqlite::TABLE)?;
    let mut messages = Generator::new(spec, bodies).peekable();
    while messages.peek().is_some() {
        let tx = conn.transaction()?;
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO messages (chat_id, seq, kind, ts, payload) VALUES (?1, ?2, 1, ?3, ?4)",
            )?;
            for g in messages.by_ref().take(10_000) {
                insert.execute(params![
                    g.chat as i64,
                    g.seq as i64,
                    g.record.timestamp.0 as i64,
                    g.record.payload.as_ref()
                ])?;
            }
        }
        tx.commit()?;
    }
    // The index after the bulk load, as one would load SQLite for a benchmark.
    conn.execute_batch(missive_benches::sqlite::INDEX)?;
    conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")?;
    Ok((conn, start.elapsed()))
}

/// One row of the SQLite peer, owned (as an application would keep it).
pub(crate) type SqliteRow = (i64, i64, Vec<u8>);

/// The newest `n` messages of chat `c` from SQLite, newest first.
pub(crate) fn sqlite_latest(
    conn: &Connection,
    c: u64,
    n: usize,
) -> rusqlite::Result<Vec<SqliteRow>> {
    let mut select = conn.prepare_cached(SQLITE_LATEST)?;
    let rows = select.query_map(params![c as i64, n as i64], |row| {
        Ok((row.get(0)?, row.get(1)?, row.get(2)?))
    })?;
    rows.collect()
}

/// Up to `limit` messages of chat `c` after `delivered` from SQLite, oldest first.
pub(crate) fn sqlite_after(
    conn: &Connection,
    c: u64,
    delivered: u64,
    limit: usize,
) -> rusqlite::Result<Vec<SqliteRow>> {
    let mut select = conn.prepare_cached(SQLITE_AFTER)?;
    let rows = select.query_map(params![c as i64, delivered as i64, limit as i64], |row| {
        Ok((row.get(0)?, row.get(1)?, row.get(2)?))
    })?;
    rows.collect()
}

/// SQLite's equivalent of `Index::pending` for the recipient of chat `c` (whose two chats are
/// `c & !1` and `c | 1`, in chat id order, nothing delivered): [`INBOX_FETCH`] rows, checked and
/// discarded.
pub(crate) fn sqlite_inbox(conn: &Connection, spec: Spec, c: u64) -> AnyResult<()> {
    let first = c & !1;
    let mut rows = sqlite_after(conn, first, 0, INBOX_FETCH)?;
    if rows.len() < INBOX_FETCH {
        rows.extend(sqlite_after(conn, first + 1, 0, INBOX_FETCH - rows.len())?);
    }
    assert_eq!(rows.len(), spec.inbox_fetch(c));
    std::hint::black_box(rows);
    Ok(())
}

/// The receipts of the receipt benchmark: `count` receipts of random chats' recipients, devices
/// 0–1, alternately delivered and read, each up to a random seq at most the chat's head.
pub(crate) fn receipts(spec: Spec, count: u64, seed: u64) -> impl Iterator<Item = Record> {
    let mut state = seed;
    (0..count).map(move |j| {
        let c = missive_benches::splitmix64(&mut state) % spec.chats;
        let head = spec.head(c).max(1);
        let up_to = 1 + missive_benches::splitmix64(&mut state) % head;
        let receipt = Receipt {
            user: spec.recipient(c),
            device: DeviceId((j / 2 % 2) as u32),
            kind: if j.is_multiple_of(2) {
                ReceiptKind::Delivered
            } else {
                ReceiptKind::Read
            },
            up_to: Seq(up_to),
        };
        Record {
            kind: RecordKind::Receipt,
            chat: spec.chat(c),
            timestamp: spec.timestamp(spec.messages),
            payload: receipt.encode(),
        }
    })
}

/// Reads every batch the index has not applied yet (verified), with its position.
pub(crate) fn unapplied_batches(
    log: &Log,
    index: &Index,
) -> missive_log::Result<Vec<(BatchPos, DecodedBatch)>> {
    let mut out = Vec::new();
    for shard in 0..log.shard_count() {
        let from = index.applied()[shard as usize];
        for batch in log.batches_from(ShardId(shard), from)? {
            out.push(batch?);
        }
    }
    Ok(out)
}

/// Resident anonymous memory of this process (`RssAnon`: heap and stacks, not mapped files), in
/// bytes.
pub(crate) fn rss_anon_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("RssAnon:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// How the idle chats of the memory scenario pick their users.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum IdleUsers {
    /// Two users of its own per chat: every chat brings two users' state.
    Own,
    /// This many users; each is in `2 × chats / users` chats.
    Shared(u64),
}

impl IdleUsers {
    /// (sender, recipient) of idle chat `c`.
    pub(crate) fn users(self, c: u64) -> (UserId, UserId) {
        match self {
            IdleUsers::Own => (UserId(2 * c + 1), UserId(2 * c + 2)),
            IdleUsers::Shared(users) => {
                let a = c % users;
                let b = (a + c / users + 1) % users;
                (UserId(a + 1), UserId(b + 1))
            }
        }
    }

    fn describe(self, chats: u64) -> String {
        match self {
            IdleUsers::Own => format!("{} users, 2 per chat, each in 1 chat", 2 * chats),
            IdleUsers::Shared(users) => {
                format!("{users} users, each in {} chats", 2 * chats / users)
            }
        }
    }
}

/// Messages idle chat `c` holds: 1 to 3.
pub(crate) fn idle_messages(c: u64) -> u64 {
    1 + c % 3
}

/// The chat of the record that seals the idle chats' segment (not an idle chat).
pub(crate) const TICK_CHAT: ChatId = ChatId::direct(UserId(u64::MAX - 1), UserId(u64::MAX));

/// Builds the idle-chat log in `dir` (one shard): every chat's 1–3 messages, interleaved over
/// the chats (so each message is in its own batch, like a chat that is rarely written), then one
/// delivered receipt per chat from the recipient's device 1 (a new inbox entry each), then one
/// message of [`TICK_CHAT`] an hour later, which seals the segment holding all of that. Returns
/// the LSNs where the receipts and the tick start.
pub(crate) fn build_idle_log(
    dir: &Path,
    chats: u64,
    users: IdleUsers,
    bodies: &[Bytes],
) -> AnyResult<(Lsn, Lsn)> {
    if let IdleUsers::Shared(n) = users {
        assert!(n > 0 && chats / n < n / 2, "pairs would repeat");
    }
    let log = Log::open(dir, log_config(Durability::Os, 1))?;
    let ts = Timestamp(BASE_MS);
    let messages = (0..3u64).flat_map(|pass| {
        (0..chats)
            .filter(move |&c| idle_messages(c) > pass)
            .map(move |c| (pass, c))
    });
    let records = messages.enumerate().map(|(n, (pass, c))| {
        let (sender, recipient) = users.users(c);
        let body = bodies[n % bodies.len()].clone();
        let record = Record {
            kind: RecordKind::Message,
            chat: ChatId::direct(sender, recipient),
            timestamp: ts,
            payload: message_payload(pass + 1, sender, n as u64, body),
        };
        ((), record)
    });
    let appended = append_pipelined(&log, records, |(), _| {})?;
    let receipts = (0..chats).map(|c| {
        let (sender, recipient) = users.users(c);
        let receipt = Receipt {
            user: recipient,
            device: DeviceId(1),
            kind: ReceiptKind::Delivered,
            up_to: Seq(idle_messages(c)),
        };
        let record = Record {
            kind: RecordKind::Receipt,
            chat: ChatId::direct(sender, recipient),
            timestamp: ts,
            payload: receipt.encode(),
        };
        ((), record)
    });
    let receipted = append_pipelined(&log, receipts, |(), _| {})?;
    let (sender, recipient) = TICK_CHAT.direct_users().expect("a direct chat");
    let tick = Record {
        kind: RecordKind::Message,
        chat: TICK_CHAT,
        timestamp: Timestamp(BASE_MS + 3_600_000),
        payload: message_payload(1, sender, 0, bodies[0].clone()),
    };
    std::hint::black_box(recipient);
    log.append(tick)?.wait()?;
    log.close()?;
    Ok((Lsn(appended + 1), Lsn(appended + receipted + 1)))
}

/// What the resident-memory child measured.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct IdleMemory {
    /// `RssAnon` with the log open and nothing applied.
    pub(crate) before: u64,
    /// After applying every message (the idle chats).
    pub(crate) chats: u64,
    /// After also applying the receipts (one new inbox entry each).
    pub(crate) entries: u64,
    /// Bytes of a checkpoint of the final index (the idle chats' segment sealed).
    pub(crate) checkpoint: u64,
    /// In a second fresh process: `RssAnon` with the log open.
    pub(crate) reopen_before: u64,
    /// After `Index::open` from that checkpoint: the idle chats' runs are in the segment's index
    /// file, each chat keeps one sealed span.
    pub(crate) reopened: u64,
}

/// The child process of the memory scenario: opens the log in `dir`, applies its messages, then
/// its receipts (from `receipts_from` on), and reports `RssAnon` at each step. A fresh process,
/// so that nothing freed earlier is reused by the index and hidden from the count.
fn rss_child(dir: &Path, receipts_from: Lsn, tick_from: Lsn) -> AnyResult<[u64; 4]> {
    let log = Log::open(dir.join("log"), log_config(Durability::Os, 1))?;
    let before = rss_anon_bytes();
    let (mut chats, mut entries) = (0, 0);
    let checkpoint = dir.join("index");
    let mut index = Index::empty(&log, &checkpoint);
    for batch in log.batches_from(ShardId(0), Lsn::FIRST)? {
        let (pos, batch) = batch?;
        if batch.header.first_lsn >= receipts_from && chats == 0 {
            chats = rss_anon_bytes();
        }
        if batch.header.first_lsn >= tick_from && entries == 0 {
            entries = rss_anon_bytes();
        }
        index.apply_batch(pos, &batch)?;
    }
    index.checkpoint()?;
    std::hint::black_box(&index);
    Ok([before, chats, entries, dir_bytes(&checkpoint)])
}

/// The second child: `RssAnon` before and after opening the index from its checkpoint.
fn rss_reopen_child(dir: &Path) -> AnyResult<[u64; 2]> {
    let log = Log::open(dir.join("log"), log_config(Durability::Os, 1))?;
    let before = rss_anon_bytes();
    let (index, report) = Index::open(&log, &dir.join("index"))?;
    assert!(report.from_checkpoint, "the checkpoint loads");
    let after = rss_anon_bytes();
    std::hint::black_box(&index);
    Ok([before, after])
}

/// Runs this binary with `args` and parses the numbers it prints after a word.
fn child(args: &[&std::ffi::OsStr]) -> AnyResult<Vec<u64>> {
    let output = std::process::Command::new(std::env::current_exe()?)
        .args(args)
        .output()?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(format!("memory child failed: {stderr}").into());
    }
    let text = String::from_utf8(output.stdout)?;
    Ok(text
        .split_whitespace()
        .skip(1)
        .map(str::parse)
        .collect::<Result<_, _>>()?)
}

/// Runs [`rss_child`] and then [`rss_reopen_child`], each in a fresh process of this binary.
fn idle_memory(
    dir: &Path,
    chats: u64,
    users: IdleUsers,
    bodies: &[Bytes],
) -> AnyResult<IdleMemory> {
    let (receipts_from, tick_from) = build_idle_log(&dir.join("log"), chats, users, bodies)?;
    let (receipts_from, tick_from) = (receipts_from.0.to_string(), tick_from.0.to_string());
    let first = child(&[
        "--rss-child".as_ref(),
        dir.as_os_str(),
        receipts_from.as_ref(),
        tick_from.as_ref(),
    ])?;
    let second = child(&["--rss-reopen".as_ref(), dir.as_os_str()])?;
    match (&first[..], &second[..]) {
        (&[before, chats, entries, checkpoint], &[reopen_before, reopened]) => Ok(IdleMemory {
            before,
            chats,
            entries,
            checkpoint,
            reopen_before,
            reopened,
        }),
        _ => Err(format!("memory children printed {first:?} and {second:?}").into()),
    }
}

/// Call numbers of warm-up calls start here, so that they pick other chats and devices than
/// the measured calls (which would otherwise find theirs warmed).
const WARM_UP_CALLS: usize = 1 << 40;

/// How long calls run before they are measured: a tenth of the budget, at least 10 calls (the
/// first ones after another measurement pay for what it left in the caches and allocator).
fn warm_up(budget: Duration, mut round: impl FnMut(usize) -> AnyResult<usize>) -> AnyResult<()> {
    let deadline = Instant::now() + budget / 10;
    let mut calls = 0;
    while calls < 10 || Instant::now() < deadline {
        calls += round(WARM_UP_CALLS + calls)?;
    }
    Ok(())
}

/// Latency samples of `f`, called until `calls` samples or `budget` is spent (after a
/// [`warm_up`]). `f` gets the call number.
pub(crate) fn sample(
    calls: usize,
    budget: Duration,
    mut f: impl FnMut(usize) -> AnyResult<()>,
) -> AnyResult<Vec<u64>> {
    warm_up(budget, |n| f(n).map(|()| 1))?;
    let deadline = Instant::now() + budget;
    let mut samples = Vec::with_capacity(calls.min(1 << 20));
    while samples.len() < calls && Instant::now() < deadline {
        let n = samples.len();
        let start = Instant::now();
        f(n)?;
        samples.push(nanos(start.elapsed()));
    }
    Ok(samples)
}

/// Calls of each function in one round of [`sample_interleaved`].
pub(crate) const ROUND: usize = 20;

/// Like [`sample`] for two functions in alternating rounds of [`ROUND`] calls each, so that
/// both see the same machine (other load drifts).
pub(crate) fn sample_interleaved(
    calls: usize,
    budget: Duration,
    mut a: impl FnMut(usize) -> AnyResult<()>,
    mut b: impl FnMut(usize) -> AnyResult<()>,
) -> AnyResult<(Vec<u64>, Vec<u64>)> {
    warm_up(budget, |n| {
        for k in n..n + ROUND {
            a(k)?;
        }
        for k in n..n + ROUND {
            b(k)?;
        }
        Ok(ROUND)
    })?;
    let deadline = Instant::now() + budget;
    let (mut sa, mut sb) = (Vec::new(), Vec::new());
    while sa.len() < calls && Instant::now() < deadline {
        for _ in 0..ROUND {
            let start = Instant::now();
            a(sa.len())?;
            sa.push(nanos(start.elapsed()));
        }
        for _ in 0..ROUND {
            let start = Instant::now();
            b(sb.len())?;
            sb.push(nanos(start.elapsed()));
        }
    }
    Ok((sa, sb))
}

/// One `Index::latest` of [`FETCH`] messages, checked (`expect` of them) and discarded.
pub(crate) fn missive_latest(
    index: &Index,
    log: &Log,
    chat: ChatId,
    expect: usize,
    now: Timestamp,
) -> AnyResult<()> {
    let views = index.latest(log, chat, FETCH, now)?;
    assert_eq!(views.len(), expect);
    std::hint::black_box(views);
    Ok(())
}

/// One `Index::pending` of [`INBOX_FETCH`] messages, checked (`expect` of them) and discarded.
pub(crate) fn missive_pending(
    index: &Index,
    log: &Log,
    user: UserId,
    device: DeviceId,
    expect: usize,
    now: Timestamp,
) -> AnyResult<()> {
    let got = index.pending(log, user, device, INBOX_FETCH, now)?;
    assert_eq!(got.len(), expect);
    std::hint::black_box(got);
    Ok(())
}

/// A deterministic chat for call `n` among chats `2..chats` (never the hot chat nor the one
/// sharing its recipient).
pub(crate) fn typical_chat(spec: Spec, n: usize) -> u64 {
    let mut state = n as u64 ^ 0x5EED;
    2 + missive_benches::splitmix64(&mut state) % (spec.chats - 2)
}

/// Command-line settings.
#[derive(Clone, Debug)]
struct Args {
    spec: Spec,
    secs: f64,
    receipts: u64,
    idle_chats: u64,
    dir: PathBuf,
    sqlite: bool,
    profile: Option<String>,
}

impl Args {
    fn parse() -> AnyResult<Args> {
        let mut args = Args {
            spec: Spec::FULL,
            secs: 3.0,
            receipts: 1_000_000,
            idle_chats: 100_000,
            dir: missive_benches::bench_dir(),
            sqlite: true,
            profile: None,
        };
        let mut it = std::env::args().skip(1);
        while let Some(flag) = it.next() {
            let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
            match flag.as_str() {
                "--messages" => args.spec.messages = value()?.parse()?,
                "--chats" => args.spec.chats = value()?.parse()?,
                "--hot-every" => args.spec.hot_every = value()?.parse()?,
                "--shards" => args.spec.shards = value()?.parse()?,
                "--secs" => args.secs = value()?.parse()?,
                "--receipts" => args.receipts = value()?.parse()?,
                "--idle-chats" => args.idle_chats = value()?.parse()?,
                "--dir" => args.dir = PathBuf::from(value()?),
                "--no-sqlite" => args.sqlite = false,
                "--no-compression" => args.spec.compression = false,
                "--small-pages" => args.spec.huge_pages = false,
                "--profile" => args.profile = Some(value()?),
                "--quick" => {
                    args.spec.messages = 200_000;
                    args.spec.chats = 2_000;
                    args.secs = 0.3;
                    args.receipts = 100_000;
                    args.idle_chats = 10_000;
                }
                "-h" | "--help" => {
                    println!("see the doc comment of benches/src/bin/index_compare.rs");
                    std::process::exit(0);
                }
                other => return Err(format!("unknown argument {other}").into()),
            }
        }
        if args.spec.chats < 3 || args.spec.hot_every < 2 {
            return Err("--chats must be at least 3 and --hot-every at least 2".into());
        }
        Ok(args)
    }

    fn budget(&self) -> Duration {
        Duration::from_secs_f64(self.secs)
    }
}

fn verdict(ok: bool) -> &'static str {
    if ok { "MET" } else { "MISSED" }
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1 << 20) as f64)
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

fn latency_row(name: &str, l: &Latency) -> String {
    format!(
        "| {name} | {} | {} | {} | {} | {} |",
        l.count,
        fmt_ns(l.p50_ns),
        fmt_ns(l.p99_ns),
        fmt_ns(l.mean_ns as u64),
        fmt_ns(l.max_ns)
    )
}

/// The time of one call of `f`, the best of `tries`.
fn best_of<T>(tries: usize, mut f: impl FnMut() -> AnyResult<T>) -> AnyResult<(Duration, T)> {
    let mut best: Option<(Duration, T)> = None;
    for _ in 0..tries.max(1) {
        let start = Instant::now();
        let value = f()?;
        let elapsed = start.elapsed();
        if best.as_ref().is_none_or(|(b, _)| elapsed < *b) {
            best = Some((elapsed, value));
        }
    }
    Ok(best.expect("at least one try"))
}

/// Where the time of one `read_batch` + scan goes, for the batches a query touched.
#[derive(Clone, Copy, Debug, Default)]
struct Breakdown {
    batches: usize,
    records: u64,
    bytes: u64,
    read_batch_ns: u64,
    pread_ns: u64,
    verify_ns: u64,
    scan_ns: u64,
    decode_ns: u64,
    found: u64,
    compressed: usize,
    raw_bytes: u64,
    sealed: usize,
}

/// Times, for each batch in `positions` (best of 20 runs each, dropping what each run returns):
/// `Log::read_batch`; a plain `pread` of its bytes into a fresh buffer; `decode_batch` on them
/// (checksum, decompression, record validation); the scan of its entries for `chat`; and
/// decoding the chat's messages.
fn breakdown(log: &Log, chat: ChatId, positions: &[BatchPos]) -> AnyResult<Breakdown> {
    use std::os::unix::fs::FileExt;
    let mut out = Breakdown {
        batches: positions.len(),
        ..Breakdown::default()
    };
    let best = |f: &mut dyn FnMut() -> AnyResult<()>| -> AnyResult<u64> {
        let mut best = u64::MAX;
        for _ in 0..20 {
            let start = Instant::now();
            f()?;
            best = best.min(nanos(start.elapsed()));
        }
        Ok(best)
    };
    for pos in positions {
        let segments = log.segments(pos.shard)?;
        let segment = segments
            .iter()
            .find(|s| s.first_lsn == pos.segment)
            .ok_or("segment gone")?;
        let file = std::fs::File::open(&segment.path)?;
        let mut header = [0u8; missive_log::batch::BATCH_HEADER_LEN];
        file.read_exact_at(&mut header, pos.offset)?;
        let total = parse_header(&header)
            .map_err(|k| format!("{k:?}"))?
            .total_len();
        let place = BatchPlace {
            log_id: log.id(),
            shard: pos.shard.0,
            segment: pos.segment,
        };
        out.read_batch_ns += best(&mut || {
            std::hint::black_box(log.read_batch(*pos)?);
            Ok(())
        })?;
        let mut bytes = Bytes::new();
        out.pread_ns += best(&mut || {
            let mut buffer = vec![0u8; total as usize];
            file.read_exact_at(&mut buffer, pos.offset)?;
            bytes = Bytes::from(buffer);
            Ok(())
        })?;
        out.verify_ns += best(&mut || {
            std::hint::black_box(decode_batch(&bytes, place).map_err(|k| format!("{k:?}"))?);
            Ok(())
        })?;
        let batch = decode_batch(&bytes, place).map_err(|k| format!("{k:?}"))?;
        out.records += u64::from(batch.header.count);
        out.bytes += total;
        out.raw_bytes += u64::from(batch.header.raw_len);
        out.compressed += usize::from(batch.header.codec == missive_log::batch::Codec::Lz4);
        out.sealed += usize::from(segment.sealed);
        let mut found = Vec::new();
        out.scan_ns += best(&mut || {
            found = batch
                .entries()
                .filter(|e| e.record.chat == chat && e.record.kind == RecordKind::Message)
                .collect();
            Ok(())
        })?;
        out.found += found.len() as u64;
        out.decode_ns += best(&mut || {
            for e in &found {
                std::hint::black_box(Message::decode(&e.record.payload));
            }
            Ok(())
        })?;
    }
    Ok(out)
}

/// The distinct batches, newest first, holding the last `n` of `batches` (one per message).
fn last_batches(batches: &[BatchPos], n: usize) -> Vec<BatchPos> {
    let mut out: Vec<BatchPos> = Vec::new();
    for pos in batches.iter().rev().take(n) {
        if out.last() != Some(pos) {
            out.push(*pos);
        }
    }
    out
}

fn main() -> AnyResult<()> {
    let mut raw = std::env::args().skip(1);
    match raw.next().as_deref() {
        Some("--rss-child") => {
            let dir = PathBuf::from(raw.next().ok_or("--rss-child needs a directory")?);
            let receipts = Lsn(raw.next().ok_or("--rss-child needs two LSNs")?.parse()?);
            let tick = Lsn(raw.next().ok_or("--rss-child needs two LSNs")?.parse()?);
            let [a, b, c, d] = rss_child(&dir, receipts, tick)?;
            println!("rss {a} {b} {c} {d}");
            return Ok(());
        }
        Some("--rss-reopen") => {
            let dir = PathBuf::from(raw.next().ok_or("--rss-reopen needs a directory")?);
            let [a, b] = rss_reopen_child(&dir)?;
            println!("rss {a} {b}");
            return Ok(());
        }
        _ => {}
    }
    let args = Args::parse()?;
    let spec = args.spec;
    let started = Instant::now();
    let bodies = missive_benches::payloads(missive_benches::PAYLOAD_POOL, 42);
    std::fs::create_dir_all(&args.dir)?;
    let root = tempfile::tempdir_in(&args.dir)?;

    println!("# Missive index run\n");
    println!(
        "- dataset: {} messages ({}-byte bodies, {}-byte records) in {} chats, hot chat 1 in {}; \
         {} shard(s), `Durability::Os`, default segments, lz4 {}, sealed segments in {} pages; \
         dir {}",
        spec.messages,
        missive_benches::PAYLOAD_BYTES,
        missive_log::RECORD_HEADER_LEN + 58 + missive_benches::PAYLOAD_BYTES,
        spec.chats,
        spec.hot_every,
        spec.shards,
        if spec.compression { "on" } else { "off" },
        if spec.huge_pages { "2 MiB" } else { "4 KiB" },
        args.dir.display(),
    );

    // 1. Resident memory first, in child processes with fresh heaps.
    let mut idle = Vec::new();
    if args.profile.is_none() {
        let shared = IdleUsers::Shared(10_000.min(args.idle_chats / 4).max(16));
        for users in [IdleUsers::Own, shared] {
            let dir = tempfile::tempdir_in(root.path())?;
            let m = idle_memory(dir.path(), args.idle_chats, users, &bodies)?;
            eprintln!("idle memory ({users:?}): {m:?}");
            idle.push((users, m));
        }
    }

    // 2. The log.
    eprintln!("building the log ({} messages)…", spec.messages);
    let log_dir = root.path().join("log");
    let built = build_log(&log_dir, spec, &bodies)?;
    eprintln!("log built in {}", secs(built.elapsed));
    let (sqlite, sqlite_build) = if args.sqlite && args.profile.is_none() {
        eprintln!("building SQLite…");
        let (conn, took) = build_sqlite(&root.path().join("peer.db"), spec, &bodies)?;
        eprintln!("SQLite built in {}", secs(took));
        (Some(conn), took)
    } else {
        (None, Duration::ZERO)
    };
    let sqlite_bytes = dir_bytes(root.path()) - dir_bytes(&log_dir);

    // 3. Reopen: log, full rebuild, checkpoint, reopen from it.
    let (log_open, log) = best_of(1, || Ok(Log::open(&log_dir, spec.log_config())?))?;
    let anon_before = rss_anon_bytes();
    let index_dir = root.path().join("index");
    let (rebuild, (mut index, report)) = best_of(1, || Ok(Index::open(&log, &index_dir)?))?;
    let anon_index = rss_anon_bytes().saturating_sub(anon_before);
    assert!(!report.from_checkpoint);
    assert_eq!(report.replayed, spec.messages);
    let segment_index_bytes = dir_bytes(&index_dir);
    // Encoding is what an embedder does under its lock (the engine does); writing is after.
    let (checkpoint_encode, encoded) = best_of(1, || Ok(index.encode_checkpoint()))?;
    let writing = Instant::now();
    encoded.write()?;
    let checkpoint_write = writing.elapsed();
    let checkpoint_write = checkpoint_encode + checkpoint_write;
    let checkpoint_bytes = dir_bytes(&index_dir) - segment_index_bytes;
    let mut reopen_times = Vec::new();
    if args.profile.is_none() {
        for _ in 0..3 {
            let start = Instant::now();
            let (reopened, report) = Index::open(&log, &index_dir)?;
            reopen_times.push(start.elapsed());
            assert!(report.from_checkpoint && report.replayed == 0);
            assert!(reopened == index, "checkpoint + replay equals the rebuild");
            index = reopened;
        }
    }
    let reopen_best = reopen_times.iter().min().copied().unwrap_or_default();
    // What the engine's background scrub does after opening (`Config::scrub_on_open`): verify
    // every batch once, so that reads of old batches skip their checksum. The reads below are
    // measured after it, as a server sees them once it has been up for this long.
    let (scrub_time, scrubbed) = best_of(1, || Ok(log.verify_until(&|| false)?))?;
    let pages = mapped_pages(&log_dir);
    eprintln!(
        "scrub {} ({} batches, {})",
        secs(scrub_time),
        scrubbed.batches,
        mib(scrubbed.bytes)
    );
    eprintln!(
        "rebuild {}, checkpoint write {}, reopen {:?}",
        secs(rebuild),
        secs(checkpoint_write),
        reopen_times
    );

    let now = spec.now();
    let hot = spec.chat(0);
    let budget = args.budget();

    if let Some(what) = &args.profile {
        let deadline = Instant::now() + budget;
        let mut calls = 0usize;
        let mut eviction = Vec::new();
        let mut timed = Vec::new();
        while Instant::now() < deadline {
            match what.as_str() {
                "latest" => drop(index.latest(&log, hot, FETCH, now)?),
                "reopen" => drop(Index::open(&log, &index_dir)?),
                "typical" => {
                    drop(index.latest(&log, spec.chat(typical_chat(spec, calls)), FETCH, now)?)
                }
                "pending" => {
                    let user = spec.recipient(typical_chat(spec, calls));
                    drop(index.pending(&log, user, DeviceId(0), INBOX_FETCH, now)?)
                }
                "pending-same" => {
                    let user = spec.recipient(typical_chat(spec, 0));
                    drop(index.pending(&log, user, DeviceId(0), INBOX_FETCH, now)?)
                }
                "pending-cold" => {
                    // As the interleaved measurement runs it (a SQLite query between two
                    // calls), without SQLite: caches and TLB are emptied before each call.
                    evict(&mut eviction, calls as u64);
                    let user = spec.recipient(typical_chat(spec, calls));
                    let started = Instant::now();
                    drop(index.pending(&log, user, DeviceId(0), INBOX_FETCH, now)?);
                    timed.push(nanos(started.elapsed()));
                }
                "receipts" => {
                    let records = receipts(spec, 100_000, calls as u64).map(|r| ((), r));
                    append_pipelined(&log, records, |(), _| {})?;
                    for (pos, batch) in unapplied_batches(&log, &index)? {
                        index.apply_batch(pos, &batch)?;
                    }
                }
                other => {
                    let expected =
                        "latest, typical, pending, pending-same, pending-cold, receipts or reopen";
                    return Err(format!("--profile {other}: {expected}").into());
                }
            }
            calls += 1;
        }
        eprintln!("{calls} calls");
        if !timed.is_empty() {
            let l = Latency::from_samples(&mut timed);
            eprintln!(
                "{what}: p50 {}, p99 {}, mean {}, max {}",
                fmt_ns(l.p50_ns),
                fmt_ns(l.p99_ns),
                fmt_ns(l.mean_ns as u64),
                fmt_ns(l.max_ns)
            );
        }
        return Ok(());
    }

    // 4. Latest 50 of the hot chat, and of typical chats; SQLite interleaved.
    let expect: Vec<u64> = (spec.head(0) + 1 - FETCH as u64..=spec.head(0)).collect();
    let got: Vec<u64> = index
        .latest(&log, hot, FETCH, now)?
        .iter()
        .map(|m| m.message.seq.0)
        .collect();
    assert_eq!(got, expect, "latest 50 of the hot chat");
    let (hot_missive, hot_sqlite, typical_missive, typical_sqlite);
    if let Some(conn) = &sqlite {
        let rows = sqlite_latest(conn, 0, FETCH)?;
        let seqs: Vec<u64> = rows.iter().rev().map(|r| r.0 as u64).collect();
        assert_eq!(seqs, expect, "SQLite's latest 50 of the hot chat");
        let (a, b) = sample_interleaved(
            200_000,
            budget,
            |_| missive_latest(&index, &log, hot, FETCH, now),
            |_| {
                let rows = sqlite_latest(conn, 0, FETCH)?;
                assert_eq!(rows.len(), FETCH);
                std::hint::black_box(rows);
                Ok(())
            },
        )?;
        (hot_missive, hot_sqlite) = (a, b);
        let (a, b) = sample_interleaved(
            200_000,
            budget,
            |n| {
                let c = typical_chat(spec, n);
                missive_latest(&index, &log, spec.chat(c), spec.typical_fetch(c), now)
            },
            |n| {
                let c = typical_chat(spec, n);
                let rows = sqlite_latest(conn, c, FETCH)?;
                assert_eq!(rows.len(), spec.typical_fetch(c));
                std::hint::black_box(rows);
                Ok(())
            },
        )?;
        (typical_missive, typical_sqlite) = (a, b);
    } else {
        hot_missive = sample(200_000, budget, |_| {
            missive_latest(&index, &log, hot, FETCH, now)
        })?;
        typical_missive = sample(200_000, budget, |n| {
            let c = typical_chat(spec, n);
            missive_latest(&index, &log, spec.chat(c), spec.typical_fetch(c), now)
        })?;
        (hot_sqlite, typical_sqlite) = (Vec::new(), Vec::new());
    }
    let [hot_missive, hot_sqlite, typical_missive, typical_sqlite] =
        [hot_missive, hot_sqlite, typical_missive, typical_sqlite]
            .map(|mut s| Latency::from_samples(&mut s));

    // Where a hot `latest` spends its time.
    let hot_touched = last_batches(&built.hot_batches, FETCH);
    let hot_breakdown = breakdown(&log, hot, &hot_touched)?;
    let typical_touched = last_batches(&built.tracked_batches, FETCH);
    let typical_breakdown = breakdown(&log, spec.chat(TRACKED), &typical_touched)?;

    // 5. Inbox fetch of 100 undelivered messages.
    let (scattered, scattered_sqlite, scattered_by_place) = {
        let mut sqlite_pending = |n: usize| -> AnyResult<()> {
            match &sqlite {
                Some(conn) => sqlite_inbox(conn, spec, typical_chat(spec, n)),
                None => Ok(()),
            }
        };
        let (a, b) = sample_interleaved(
            200_000,
            budget,
            |n| {
                let c = typical_chat(spec, n);
                let expect = spec.inbox_fetch(c);
                missive_pending(&index, &log, spec.recipient(c), DeviceId(0), expect, now)
            },
            &mut sqlite_pending,
        )?;
        // The first call of each round follows the other side's round (with SQLite: its
        // queries have evicted what the previous calls left in the caches); the others follow
        // a call of their own kind.
        let (mut first, mut others) = (Vec::new(), Vec::new());
        for (k, &t) in a.iter().enumerate() {
            if k % ROUND == 0 {
                first.push(t)
            } else {
                others.push(t)
            }
        }
        (
            Latency::from_samples(&mut a.clone()),
            Latency::from_samples(&mut b.clone()),
            [first, others].map(|mut s| Latency::from_samples(&mut s)),
        )
    };
    // A device that was offline briefly: its 100 undelivered messages are the hot chat's newest.
    let head0 = spec.head(0);
    let recent_receipts =
        [(0, head0 - INBOX_FETCH as u64), (1, spec.head(1))].map(|(c, up_to)| Record {
            kind: RecordKind::Receipt,
            chat: spec.chat(c),
            timestamp: spec.timestamp(spec.messages),
            payload: Receipt {
                user: spec.recipient(c),
                device: DeviceId(7),
                kind: ReceiptKind::Delivered,
                up_to: Seq(up_to),
            }
            .encode(),
        });
    for record in recent_receipts {
        log.append(record)?.wait()?;
    }
    index.catch_up(&log)?;
    let recent = {
        let user = spec.recipient(0);
        let samples = sample(200_000, budget, |_| {
            missive_pending(&index, &log, user, DeviceId(7), INBOX_FETCH, now)
        })?;
        Latency::from_samples(&mut samples.clone())
    };

    // 6. Receipts: append, read back, apply.
    let seed = 0xC0FFEE;
    let (append_time, appended) = best_of(1, || {
        let records = receipts(spec, args.receipts, seed).map(|r| ((), r));
        Ok(append_pipelined(&log, records, |(), _| {})?)
    })?;
    let (read_time, pending_batches) = best_of(1, || Ok(unapplied_batches(&log, &index)?))?;
    let records: u64 = pending_batches
        .iter()
        .map(|(_, b)| u64::from(b.header.count))
        .sum();
    assert_eq!(records, appended);
    let (apply_time, applied) = best_of(1, || {
        let mut applied = 0;
        for (pos, batch) in &pending_batches {
            applied += index.apply_batch(*pos, batch)?;
        }
        Ok(applied)
    })?;
    assert_eq!(applied, appended);
    let receipt_batches = pending_batches.len();
    drop(pending_batches);
    let per_sec = |n: u64, d: Duration| n as f64 / d.as_secs_f64().max(1e-9);
    let apply_rate = per_sec(applied, apply_time);
    let pipeline_rate = per_sec(applied, append_time + read_time + apply_time);

    // Report.
    println!(
        "- built in {} ({} batches, {:.0} records per batch, {} of segments); SQLite peer built \
         in {} ({} on disk, SQLite {})",
        secs(built.elapsed),
        built.batches,
        spec.messages as f64 / built.batches.max(1) as f64,
        mib(built.log_bytes),
        secs(sqlite_build),
        mib(sqlite_bytes),
        rusqlite::version(),
    );
    println!(
        "- scrub after reopening: {} ({} segments' cached pages dropped and read back); the log's \
         maps then {} resident, {} of it mapped by 2 MiB pages",
        secs(scrub_time),
        scrubbed.repaged,
        mib(pages.resident),
        mib(pages.huge),
    );
    let hot_messages = built.hot_batches.len();
    println!(
        "- hot chat: {hot_messages} messages in {} runs (batches); its newest {FETCH} are in {} \
         batches of {:.0} records on average ({:.1} found per batch)",
        {
            let mut runs = built.hot_batches.clone();
            runs.dedup();
            runs.len()
        },
        hot_touched.len(),
        hot_breakdown.records as f64 / hot_touched.len().max(1) as f64,
        hot_breakdown.found as f64 / hot_touched.len().max(1) as f64,
    );
    println!(
        "- typical chat: ~{} messages, each in its own batch, so its newest {FETCH} are in {} \
         batches",
        spec.head(TRACKED),
        last_batches(&built.tracked_batches, FETCH).len()
    );
    println!("- total run time {}", secs(started.elapsed()));

    println!(
        "\n## Latest {FETCH} messages (`Index::latest`) vs SQLite `ORDER BY seq DESC LIMIT {FETCH}`\n"
    );
    println!("| query | calls | p50 | p99 | mean | max |");
    println!("|---|---|---|---|---|---|");
    println!("{}", latency_row("Missive, hot chat", &hot_missive));
    println!("{}", latency_row("SQLite, hot chat", &hot_sqlite));
    println!(
        "{}",
        latency_row("Missive, typical chat (random per call)", &typical_missive)
    );
    println!(
        "{}",
        latency_row("SQLite, typical chat (random per call)", &typical_sqlite)
    );
    let ratio = |a: &Latency, b: &Latency| {
        if a.p50_ns > 0 && b.p50_ns > 0 {
            format!("{:.2}", b.p50_ns as f64 / a.p50_ns as f64)
        } else {
            "–".into()
        }
    };
    println!(
        "\nSQLite p50 / Missive p50: hot {}, typical {} (above 1: Missive is faster).",
        ratio(&hot_missive, &hot_sqlite),
        ratio(&typical_missive, &typical_sqlite)
    );

    println!(
        "\n### Where `latest` goes: the batches it reads (best of 20 runs of each step, per batch)\n"
    );
    println!(
        "| step | hot chat, per batch | hot chat, all | typical chat, per batch | typical chat, all |"
    );
    println!("|---|---|---|---|---|");
    let (h, t) = (&hot_breakdown, &typical_breakdown);
    for (name, get) in [
        (
            "`Log::read_batch` (the log verifies a batch once, then skips it)",
            (|b: &Breakdown| b.read_batch_ns) as fn(&Breakdown) -> u64,
        ),
        (
            "– a plain `pread` of the batch into a fresh buffer",
            |b| b.pread_ns,
        ),
        (
            "– `decode_batch`: CRC-32 of the batch, lz4 decompression into a fresh zeroed buffer, record validation",
            |b| b.verify_ns,
        ),
        (
            "scan of all the batch's entries for the chat (`Entries`: a `Bytes` per record)",
            |b| b.scan_ns,
        ),
        ("`Message::decode` of the chat's messages", |b| b.decode_ns),
    ] {
        println!(
            "| {name} | {} | {} | {} | {} |",
            fmt_ns(get(h) / h.batches.max(1) as u64),
            fmt_ns(get(h)),
            fmt_ns(get(t) / t.batches.max(1) as u64),
            fmt_ns(get(t)),
        );
    }
    for (name, b) in [("hot", h), ("typical", t)] {
        let n = b.batches.max(1) as u64;
        println!(
            "\n{name} chat: {} batches ({} in sealed, mapped segments; {} lz4-compressed), {} \
             records and {} on disk ({} raw) per batch on average, {:.1} of them the chat's.",
            b.batches,
            b.sealed,
            b.compressed,
            b.records / n,
            mib(b.bytes / n),
            mib(b.raw_bytes / n),
            b.found as f64 / n as f64
        );
    }

    println!("\n## Inbox fetch of {INBOX_FETCH} undelivered messages (`Index::pending`)\n");
    println!("| device | calls | p50 | p99 | mean | max |");
    println!("|---|---|---|---|---|---|");
    println!(
        "{}",
        latency_row(
            "offline a long time: 2 chats × ~99 undelivered, one per batch (random device per call)",
            &scattered
        )
    );
    let after = if sqlite.is_some() {
        format!("after {ROUND} SQLite queries")
    } else {
        "after the previous round".to_string()
    };
    for (name, l) in [
        (
            format!("… of which the first of each round ({after})"),
            &scattered_by_place[0],
        ),
        (
            format!("… the other {} of each round", ROUND - 1),
            &scattered_by_place[1],
        ),
    ] {
        println!("{}", latency_row(&name, l));
    }
    println!(
        "{}",
        latency_row(
            "SQLite, the same fetch (two `seq > ?` range scans)",
            &scattered_sqlite
        )
    );
    println!(
        "{}",
        latency_row("offline briefly: the hot chat's newest 100", &recent)
    );

    println!("\n## Receipt watermarks\n");
    println!(
        "{} receipts (random chats' recipients, devices 0–1, alternately delivered and read) in \
         {} batches:\n",
        applied, receipt_batches
    );
    println!("| step | time | receipts/s |");
    println!("|---|---|---|");
    for (name, d) in [
        ("append to the log (`Os`, 4096 in flight)", append_time),
        (
            "read the batches back (`batches_from`: read + verify)",
            read_time,
        ),
        ("`apply_batch` (index only)", apply_time),
        ("all three", append_time + read_time + apply_time),
    ] {
        println!(
            "| {name} | {} | {} |",
            secs(d),
            fmt_rate(per_sec(applied, d))
        );
    }

    println!("\n## Reopen with {} messages\n", spec.messages);
    println!("| step | time |");
    println!("|---|---|");
    println!(
        "| `Log::open` (verifies the newest segment) | {} |",
        secs(log_open)
    );
    println!(
        "| `Index::open`, no checkpoint: full rebuild | {} |",
        secs(rebuild)
    );
    println!(
        "| `Index::checkpoint` (encode + write + fsync) | {} |",
        secs(checkpoint_write)
    );
    println!(
        "| – of which `Index::encode_checkpoint` (what the engine does under its index lock) | {} |",
        secs(checkpoint_encode)
    );
    println!(
        "| `Index::open` from a fresh checkpoint (best of {}; all: {}) | {} |",
        reopen_times.len(),
        reopen_times
            .iter()
            .map(|d| secs(*d))
            .collect::<Vec<_>>()
            .join(", "),
        secs(reopen_best)
    );
    println!(
        "| scrub: `Log::verify_until` over {} batches, {} (the engine runs it in the background \
         after opening; reads above were measured after it) | {} |",
        scrubbed.batches,
        mib(scrubbed.bytes),
        secs(scrub_time)
    );
    println!(
        "\nCheckpoint file: {} ({:.1} bytes per message); segment index files written while \
         rebuilding: {} ({:.1} bytes per message). The index's anonymous memory (RssAnon growth \
         over the rebuild): {} ({:.1} bytes per message).",
        mib(checkpoint_bytes),
        checkpoint_bytes as f64 / spec.messages as f64,
        mib(segment_index_bytes),
        segment_index_bytes as f64 / spec.messages as f64,
        mib(anon_index),
        anon_index as f64 / spec.messages as f64,
    );

    println!(
        "\n## Resident memory per idle chat ({} chats, 1–3 messages each, each message in its own batch)\n",
        args.idle_chats
    );
    println!(
        "| users | RssAnon per chat, built (runs in memory) | per inbox entry (device 1 delivered \
         watermark) | RssAnon per chat, reopened from a checkpoint after the segment sealed (chats + \
         inbox entries) | checkpoint per chat |"
    );
    println!("|---|---|---|---|---|");
    for (users, m) in &idle {
        let chats = args.idle_chats as f64;
        println!(
            "| {} | {:.0} B | {:.0} B | {:.0} B | {:.0} B |",
            users.describe(args.idle_chats),
            m.chats.saturating_sub(m.before) as f64 / chats,
            m.entries.saturating_sub(m.chats) as f64 / chats,
            m.reopened.saturating_sub(m.reopen_before) as f64 / chats,
            m.checkpoint as f64 / chats,
        );
    }

    println!("\n## Targets\n");
    println!("| target | measured | verdict |");
    println!("|---|---|---|");
    println!(
        "| latest 50, hot chat: p50 ≤ 5 µs | {} | {} |",
        fmt_ns(hot_missive.p50_ns),
        verdict(hot_missive.p50_ns <= 5_000)
    );
    println!(
        "| latest 50, hot chat: p99 ≤ 50 µs | {} | {} |",
        fmt_ns(hot_missive.p99_ns),
        verdict(hot_missive.p99_ns <= 50_000)
    );
    if sqlite.is_some() {
        let x = hot_sqlite.p50_ns as f64 / hot_missive.p50_ns.max(1) as f64;
        println!(
            "| latest 50, hot chat: ≥ 4× faster than SQLite (p50) | {x:.2}× | {} |",
            verdict(x >= 4.0)
        );
    }
    println!(
        "| inbox fetch of 100: p99 ≤ 100 µs | offline long: {}; offline briefly: {} | {} / {} |",
        fmt_ns(scattered.p99_ns),
        fmt_ns(recent.p99_ns),
        verdict(scattered.p99_ns <= 100_000),
        verdict(recent.p99_ns <= 100_000)
    );
    println!(
        "| receipts ≥ 1 M watermark updates/s buffered | apply {}/s; append + read + apply {}/s | {} / {} |",
        fmt_rate(apply_rate),
        fmt_rate(pipeline_rate),
        verdict(apply_rate >= 1e6),
        verdict(pipeline_rate >= 1e6)
    );
    println!(
        "| reopen with a fresh checkpoint ≤ 1 s | {} (+ `Log::open` {}) | {} |",
        secs(reopen_best),
        secs(log_open),
        verdict(reopen_best <= Duration::from_secs(1))
    );
    println!("| full rebuild (report) | {} | |", secs(rebuild));
    for (users, m) in &idle {
        let per = m.chats.saturating_sub(m.before) as f64 / args.idle_chats as f64;
        let reopened = m.reopened.saturating_sub(m.reopen_before) as f64 / args.idle_chats as f64;
        println!(
            "| resident memory per idle chat ≤ 256 B ({}) | built {per:.0} B; reopened, sealed \
             (with inbox entries) {reopened:.0} B | {} |",
            users.describe(args.idle_chats),
            verdict(per <= 256.0 || reopened <= 256.0)
        );
    }
    log.close()?;
    Ok(())
}

/// Bytes of files under a folder mapped by this process: resident, and of those mapped by
/// 2 MiB pages (from `/proc/self/smaps`; zeros where there is none).
#[derive(Clone, Copy, Debug, Default)]
struct MappedPages {
    resident: u64,
    huge: u64,
}

fn mapped_pages(dir: &Path) -> MappedPages {
    let mut pages = MappedPages::default();
    let Ok(smaps) = std::fs::read_to_string("/proc/self/smaps") else {
        return pages;
    };
    let dir = dir.to_string_lossy();
    let mut inside = false;
    for line in smaps.lines() {
        let mut fields = line.split_whitespace();
        let first = fields.next().unwrap_or_default();
        if first.contains('-') && !first.ends_with(':') {
            // A mapping's first line: range, permissions, offset, device, inode, path.
            inside = line
                .split_whitespace()
                .nth(5)
                .is_some_and(|path| path.starts_with(&*dir));
            continue;
        }
        let mut kib = || {
            fields
                .next()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
                << 10
        };
        match first {
            "Rss:" if inside => pages.resident += kib(),
            "FilePmdMapped:" if inside => pages.huge += kib(),
            _ => {}
        }
    }
    pages
}

/// Empties the processor's caches and TLB of what a measured call touched, as other work
/// between two requests does: reads a line in each of 16,384 random pages of a 64 MiB buffer
/// (allocated on the first call).
fn evict(buffer: &mut Vec<u8>, seed: u64) {
    const BYTES: usize = 64 << 20;
    if buffer.is_empty() {
        *buffer = vec![1u8; BYTES];
    }
    let mut state = seed ^ 0x9e37_79b9_7f4a_7c15;
    let mut sum = 0u8;
    for _ in 0..BYTES / 4096 {
        let at = (missive_benches::splitmix64(&mut state) as usize) % BYTES;
        sum = sum.wrapping_add(buffer[at]);
    }
    std::hint::black_box(sum);
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMALL: Spec = Spec {
        messages: 2_000,
        chats: 20,
        hot_every: 10,
        shards: 1,
        compression: true,
        huge_pages: true,
    };

    #[test]
    fn the_generator_numbers_each_chat_densely() {
        let bodies = missive_benches::payloads(8, 1);
        let mut seqs = vec![0u64; SMALL.chats as usize];
        for g in Generator::new(SMALL, &bodies) {
            seqs[g.chat as usize] += 1;
            assert_eq!(g.seq, seqs[g.chat as usize]);
        }
        for c in 0..SMALL.chats {
            assert_eq!(seqs[c as usize], SMALL.head(c), "chat {c}");
        }
        assert_eq!(SMALL.head(0), 200);
    }

    #[test]
    fn missive_and_sqlite_answer_alike() -> AnyResult<()> {
        let dir = tempfile::tempdir()?;
        let bodies = missive_benches::payloads(8, 2);
        let built = build_log(&dir.path().join("log"), SMALL, &bodies)?;
        assert_eq!(built.hot_batches.len() as u64, SMALL.head(0));
        let (conn, _) = build_sqlite(&dir.path().join("peer.db"), SMALL, &bodies)?;
        let log = Log::open(dir.path().join("log"), log_config(Durability::Os, 1))?;
        let (mut index, _) = Index::open(&log, &dir.path().join("index"))?;
        let now = SMALL.now();
        for c in [0, 1, 7] {
            let missive: Vec<(u64, Bytes)> = index
                .latest(&log, SMALL.chat(c), FETCH, now)?
                .into_iter()
                .map(|m| (m.message.seq.0, Message::encode(&m.message)))
                .collect();
            let sqlite: Vec<(u64, Bytes)> = sqlite_latest(&conn, c, FETCH)?
                .into_iter()
                .rev()
                .map(|(seq, _, payload)| (seq as u64, Bytes::from(payload)))
                .collect();
            assert_eq!(missive, sqlite, "chat {c}");
        }
        let user = SMALL.recipient(4);
        let pending = index.pending(&log, user, DeviceId(0), INBOX_FETCH, now)?;
        let mut rows = sqlite_after(&conn, 4, 0, INBOX_FETCH)?;
        rows.extend(sqlite_after(&conn, 5, 0, INBOX_FETCH - rows.len())?);
        assert_eq!(pending.len(), rows.len());
        let records = receipts(SMALL, 300, 9).map(|r| ((), r));
        assert_eq!(append_pipelined(&log, records, |(), _| {})?, 300);
        let batches = unapplied_batches(&log, &index)?;
        let applied: u64 = batches
            .iter()
            .map(|(pos, b)| index.apply_batch(*pos, b))
            .sum::<Result<u64, _>>()?;
        assert_eq!(applied, 300);
        assert!(index.delivered_up_to(user, DeviceId(0), SMALL.chat(4)).0 <= SMALL.head(4));
        log.close()?;
        Ok(())
    }

    #[test]
    fn idle_logs_hold_their_chats_and_receipts() -> AnyResult<()> {
        let dir = tempfile::tempdir()?;
        let bodies = missive_benches::payloads(8, 3);
        for users in [IdleUsers::Own, IdleUsers::Shared(40)] {
            let sub = tempfile::tempdir_in(dir.path())?;
            let (from, tick) = build_idle_log(sub.path(), 300, users, &bodies)?;
            assert_eq!(from.0, 1 + (0..300).map(idle_messages).sum::<u64>());
            assert_eq!(tick.0, from.0 + 300);
            let log = Log::open(sub.path(), log_config(Durability::Os, 1))?;
            assert_eq!(
                log.segments(ShardId(0))?.len(),
                2,
                "the tick sealed a segment"
            );
            let (index, report) = Index::open(&log, &sub.path().join("index"))?;
            assert_eq!(report.replayed, tick.0);
            for c in [0, 1, 299] {
                let (_, recipient) = users.users(c);
                let chat = ChatId::direct(users.users(c).0, recipient);
                assert_eq!(index.head(chat).0, idle_messages(c));
                assert_eq!(
                    index.delivered_up_to(recipient, DeviceId(1), chat).0,
                    idle_messages(c)
                );
            }
            log.close()?;
        }
        assert!(rss_anon_bytes() > 0);
        Ok(())
    }
}
