//! The peer: SQLite (bundled, through rusqlite) storing the same messages.
//!
//! One table, `messages(id INTEGER PRIMARY KEY, chat_id, seq, kind, ts, payload BLOB)`, with a
//! unique index on `(chat_id, seq)`: what a message store on SQLite would have. WAL journal, and
//! `synchronous=FULL` (every commit fsyncs the WAL: the durability of [`Durability::Always`]) or
//! `OFF` (no fsync: the durability of [`Durability::Os`]). Other settings are SQLite's defaults,
//! including the automatic checkpoint every 1000 WAL pages, whose cost is part of the result.
//!
//! SQLite has one writer at a time, so two ways of feeding it are measured:
//!
//! - [`SqlitePeer::insert_transactions`]: one thread inserts in transactions of a given size (the
//!   mean batch size Missive's group commit produced in the same run). Nothing hands messages
//!   between threads: the most favourable case for SQLite.
//! - [`run_group_commit`]: the same producers as Missive's run send their messages to one writer
//!   thread, which commits whatever is queued (up to a cap) in one transaction and then
//!   acknowledges each message: group commit built in front of SQLite, as an application would.
//!
//! [`Durability::Always`]: missive_log::Durability::Always
//! [`Durability::Os`]: missive_log::Durability::Os

use std::collections::VecDeque;
use std::path::Path;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use bytes::Bytes;
use crossbeam::channel;
use rusqlite::{Connection, params};

use crate::stats::nanos;
use crate::workload::{AppendOutcome, ReadOutcome, Workload};

/// The peer's message table, without its index (bulk loads add the index afterwards).
pub const TABLE: &str = "
    CREATE TABLE IF NOT EXISTS messages (
        id INTEGER PRIMARY KEY,
        chat_id INTEGER NOT NULL,
        seq INTEGER NOT NULL,
        kind INTEGER NOT NULL,
        ts INTEGER NOT NULL,
        payload BLOB NOT NULL
    );
";

/// The index the peer's queries use: `(chat_id, seq)`, as Missive's chat index keys.
pub const INDEX: &str =
    "CREATE UNIQUE INDEX IF NOT EXISTS messages_chat_seq ON messages (chat_id, seq);";

const INSERT: &str =
    "INSERT INTO messages (chat_id, seq, kind, ts, payload) VALUES (?1, ?2, 1, ?3, ?4)";

/// SQLite's `synchronous` setting, in WAL mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SqliteSync {
    /// `synchronous=FULL`: each commit fsyncs the WAL before returning.
    Full,
    /// `synchronous=OFF`: never fsync; a process crash loses nothing committed, a power cut may.
    Off,
}

/// A SQLite message store, one connection.
#[derive(Debug)]
pub struct SqlitePeer {
    conn: Connection,
    /// The next `seq` of each chat (chats are numbered from 0).
    next_seq: Vec<i64>,
    next_payload: usize,
}

impl SqlitePeer {
    /// Opens (or creates) the store at `path` in WAL mode with the given `synchronous` setting,
    /// and checks that SQLite took both settings.
    pub fn open(path: &Path, sync: SqliteSync) -> rusqlite::Result<SqlitePeer> {
        let conn = Connection::open(path)?;
        let mode: String =
            conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
        assert_eq!(mode.to_ascii_lowercase(), "wal", "SQLite refused WAL mode");
        let (name, value) = match sync {
            SqliteSync::Full => ("FULL", 2),
            SqliteSync::Off => ("OFF", 0),
        };
        conn.pragma_update(None, "synchronous", name)?;
        let actual: i64 = conn.pragma_query_value(None, "synchronous", |row| row.get(0))?;
        assert_eq!(actual, value, "SQLite refused synchronous={name}");
        conn.execute_batch(TABLE)?;
        conn.execute_batch(INDEX)?;
        let mut next_seq = Vec::new();
        {
            let mut last =
                conn.prepare("SELECT chat_id, MAX(seq) FROM messages GROUP BY chat_id")?;
            let mut rows = last.query([])?;
            while let Some(row) = rows.next()? {
                let (chat, seq): (i64, i64) = (row.get(0)?, row.get(1)?);
                let chat = chat as usize;
                if chat >= next_seq.len() {
                    next_seq.resize(chat + 1, 1);
                }
                next_seq[chat] = seq + 1;
            }
        }
        Ok(SqlitePeer {
            conn,
            next_seq,
            next_payload: 0,
        })
    }

    /// The settings in force, for reports: journal mode, synchronous, page size, autocheckpoint.
    pub fn settings(&self) -> rusqlite::Result<String> {
        let get = |pragma| -> rusqlite::Result<String> {
            self.conn.pragma_query_value(None, pragma, |row| {
                Ok(match row.get_ref(0)? {
                    rusqlite::types::ValueRef::Integer(i) => i.to_string(),
                    rusqlite::types::ValueRef::Text(t) => String::from_utf8_lossy(t).into_owned(),
                    other => format!("{other:?}"),
                })
            })
        };
        Ok(format!(
            "journal_mode={} synchronous={} page_size={} wal_autocheckpoint={} (SQLite {})",
            get("journal_mode")?,
            get("synchronous")?,
            get("page_size")?,
            get("wal_autocheckpoint")?,
            rusqlite::version(),
        ))
    }

    /// Inserts `rows` (chat, payload) in one transaction, numbering each chat's messages.
    fn insert_rows<'a>(
        &mut self,
        rows: impl Iterator<Item = (usize, &'a Bytes)>,
        timestamp: i64,
    ) -> rusqlite::Result<()> {
        let tx = self.conn.transaction()?;
        {
            let mut insert = tx.prepare_cached(INSERT)?;
            for (chat, payload) in rows {
                if chat >= self.next_seq.len() {
                    self.next_seq.resize(chat + 1, 1);
                }
                let seq = self.next_seq[chat];
                self.next_seq[chat] += 1;
                insert.execute(params![chat as i64, seq, timestamp, payload.as_ref()])?;
            }
        }
        tx.commit()
    }

    /// From one thread, inserts up to `messages` messages (payloads cycled, chats round-robin
    /// over `chats`) in transactions of `tx_size` rows, stopping early at `deadline`. Returns how
    /// many were committed.
    pub fn insert_transactions(
        &mut self,
        messages: u64,
        tx_size: usize,
        chats: usize,
        payloads: &[Bytes],
        deadline: Option<Instant>,
    ) -> rusqlite::Result<u64> {
        let timestamp = crate::workload::now_timestamp().0 as i64;
        let tx_size = tx_size.max(1) as u64;
        let chats = chats.max(1);
        let mut done = 0;
        while done < messages && deadline.is_none_or(|d| Instant::now() < d) {
            let rows = tx_size.min(messages - done);
            let first = self.next_payload;
            self.next_payload = (first + rows as usize) % payloads.len();
            let batch = (0..rows as usize).map(|i| {
                let n = done as usize + i;
                (n % chats, &payloads[(first + i) % payloads.len()])
            });
            self.insert_rows(batch, timestamp)?;
            done += rows;
        }
        Ok(done)
    }

    /// Rows in the table.
    pub fn count(&self) -> rusqlite::Result<u64> {
        self.conn
            .query_row("SELECT COUNT(*) FROM messages", [], |r| r.get::<_, i64>(0))
            .map(|n| n as u64)
    }

    /// Reads every message in insertion order (`ORDER BY id`), touching each payload.
    pub fn read_all(&self) -> rusqlite::Result<ReadOutcome> {
        let mut outcome = ReadOutcome::default();
        let mut select = self
            .conn
            .prepare_cached("SELECT chat_id, seq, payload FROM messages ORDER BY id")?;
        let mut rows = select.query([])?;
        while let Some(row) = rows.next()? {
            let payload = row.get_ref(2)?.as_blob()?;
            std::hint::black_box((row.get_ref(0)?, row.get_ref(1)?, payload.first()));
            outcome.records += 1;
            outcome.payload_bytes += payload.len() as u64;
        }
        Ok(outcome)
    }
}

/// One message on its way to the group-commit writer.
struct Request {
    producer: usize,
    payload: Bytes,
}

/// Runs `workload` against SQLite at `path`: its producers send messages to one writer thread,
/// which drains whatever is queued (at most `batch_max`) into one transaction, commits, and then
/// acknowledges every message of it. Producers block or pipeline exactly as Missive's do
/// ([`Workload::window`]); each producer writes its own chat. The outcome's `batches` counts
/// transactions.
pub fn run_group_commit(
    path: &Path,
    sync: SqliteSync,
    workload: &Workload,
    payloads: &[Bytes],
    batch_max: usize,
) -> rusqlite::Result<AppendOutcome> {
    let producers = workload.producers.max(1);
    let window = workload.window.max(1);
    let mut peer = SqlitePeer::open(path, sync)?;
    let (requests, queue) = channel::bounded::<Request>(producers * window);
    let (ack_senders, ack_receivers): (Vec<_>, Vec<_>) =
        (0..producers).map(|_| channel::unbounded::<()>()).unzip();
    let barrier = Barrier::new(producers + 1);
    let timestamp = crate::workload::now_timestamp().0 as i64;
    std::thread::scope(|scope| {
        let writer = scope.spawn(move || -> rusqlite::Result<u64> {
            let mut transactions = 0;
            let mut batch = Vec::with_capacity(batch_max);
            while let Ok(first) = queue.recv() {
                batch.push(first);
                batch.extend(queue.try_iter().take(batch_max.saturating_sub(1)));
                peer.insert_rows(batch.iter().map(|r| (r.producer, &r.payload)), timestamp)?;
                transactions += 1;
                for request in batch.drain(..) {
                    // A producer that gave up is not waiting: ignore it.
                    let _ = ack_senders[request.producer].send(());
                }
            }
            Ok(transactions)
        });
        let barrier = &barrier;
        let handles: Vec<_> = ack_receivers
            .into_iter()
            .enumerate()
            .map(|(producer, acks)| {
                let requests = requests.clone();
                scope.spawn(move || -> Option<(u64, Vec<u64>)> {
                    barrier.wait();
                    let deadline = workload.duration.map(|d| Instant::now() + d);
                    let total = workload.messages;
                    let per = total / producers as u64;
                    let quota = per + u64::from((producer as u64) < total % producers as u64);
                    let mut in_flight: VecDeque<Instant> = VecDeque::with_capacity(window);
                    let mut latencies = Vec::new();
                    let mut acked = 0;
                    let mut next_payload = producer.wrapping_mul(7919);
                    let mut ack = |in_flight: &mut VecDeque<Instant>| -> Option<()> {
                        acks.recv().ok()?;
                        let started = in_flight.pop_front().expect("a message in flight");
                        if workload.record_latency {
                            latencies.push(nanos(started.elapsed()));
                        }
                        acked += 1;
                        Some(())
                    };
                    for _ in 0..quota {
                        if in_flight.len() >= window {
                            ack(&mut in_flight)?;
                        }
                        let now = Instant::now();
                        if deadline.is_some_and(|d| now >= d) {
                            break;
                        }
                        next_payload = (next_payload + 1) % payloads.len();
                        let payload = payloads[next_payload].clone();
                        requests.send(Request { producer, payload }).ok()?;
                        in_flight.push_back(now);
                    }
                    drop(requests);
                    while !in_flight.is_empty() {
                        ack(&mut in_flight)?;
                    }
                    Some((acked, latencies))
                })
            })
            .collect();
        drop(requests);
        barrier.wait();
        let start = Instant::now();
        let results: Vec<_> = handles
            .into_iter()
            .map(|h| h.join().expect("producer panicked"))
            .collect();
        let elapsed = start.elapsed();
        let transactions = writer.join().expect("writer panicked")?;
        let mut outcome = AppendOutcome {
            elapsed,
            batches: transactions,
            ..AppendOutcome::default()
        };
        for (acked, latencies) in results.into_iter().flatten() {
            outcome.messages += acked;
            outcome.latencies_ns.extend(latencies);
        }
        Ok(outcome)
    })
}

/// Times [`SqlitePeer::insert_transactions`] on a fresh store at `path` for `duration`, and
/// returns messages committed and the time taken.
pub fn timed_transactions(
    path: &Path,
    sync: SqliteSync,
    tx_size: usize,
    chats: usize,
    payloads: &[Bytes],
    duration: Duration,
) -> rusqlite::Result<(u64, Duration)> {
    let mut peer = SqlitePeer::open(path, sync)?;
    let start = Instant::now();
    let done =
        peer.insert_transactions(u64::MAX, tx_size, chats, payloads, Some(start + duration))?;
    Ok((done, start.elapsed()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transactions_insert_numbered_rows_and_read_back() -> rusqlite::Result<()> {
        let dir = tempfile::tempdir().expect("tempdir");
        let payloads = crate::payloads(16, 3);
        let path = dir.path().join("peer.db");
        let mut peer = SqlitePeer::open(&path, SqliteSync::Full)?;
        assert!(peer.settings()?.contains("journal_mode=wal synchronous=2"));
        assert_eq!(peer.insert_transactions(50, 8, 4, &payloads, None)?, 50);
        assert_eq!(peer.count()?, 50);
        let read = peer.read_all()?;
        assert_eq!(read.records, 50);
        assert_eq!(read.payload_bytes, 50 * crate::PAYLOAD_BYTES as u64);
        let per_chat: i64 =
            peer.conn
                .query_row("SELECT MAX(seq) FROM messages WHERE chat_id = 3", [], |r| {
                    r.get(0)
                })?;
        assert_eq!(per_chat, 12);
        Ok(())
    }

    #[test]
    fn group_commit_acknowledges_every_message() -> rusqlite::Result<()> {
        let dir = tempfile::tempdir().expect("tempdir");
        let payloads = crate::payloads(16, 4);
        let mut workload = Workload::counted(4, 8, 200);
        workload.record_latency = true;
        let path = dir.path().join("peer.db");
        let outcome = run_group_commit(&path, SqliteSync::Off, &workload, &payloads, 64)?;
        assert_eq!(outcome.messages, 200);
        assert_eq!(outcome.latencies_ns.len(), 200);
        assert!((4..=200).contains(&outcome.batches));
        assert_eq!(SqlitePeer::open(&path, SqliteSync::Off)?.count()?, 200);
        let (done, _) = timed_transactions(
            &dir.path().join("timed.db"),
            SqliteSync::Full,
            4,
            2,
            &payloads,
            Duration::from_millis(30),
        )?;
        assert!(done >= 4);
        Ok(())
    }
}
