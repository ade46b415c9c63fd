//! SQLite (bundled, through rusqlite) storing messages the usual way: the `messages` table and
//! its `(chat_id, seq)` index of `missive_benches::sqlite`, an `inbox` row per recipient, a read
//! watermark per (user, chat), group members. WAL journal; `synchronous=FULL` (every commit
//! fsyncs the WAL) or `OFF` (written to the OS only); other settings are SQLite's defaults.

use std::collections::HashMap;
use std::path::Path;

use anyhow::Result;
use rusqlite::{Connection, OptionalExtension, params};

use crate::kv::group_chat;
use crate::spec::{Op, chat_users, group_members};
use crate::store::Backend;

const TABLES: &str = "
    CREATE TABLE IF NOT EXISTS inbox (
        user_id INTEGER NOT NULL, chat_id INTEGER NOT NULL, seq INTEGER NOT NULL,
        ts INTEGER NOT NULL,
        PRIMARY KEY (user_id, chat_id, seq)
    ) WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS receipts (
        user_id INTEGER NOT NULL, chat_id INTEGER NOT NULL, up_to INTEGER NOT NULL,
        PRIMARY KEY (user_id, chat_id)
    ) WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS members (
        chat_id INTEGER NOT NULL, user_id INTEGER NOT NULL,
        PRIMARY KEY (chat_id, user_id)
    ) WITHOUT ROWID;
";

const INSERT_MESSAGE: &str =
    "INSERT INTO messages (chat_id, seq, kind, ts, payload) VALUES (?1, ?2, 1, ?3, ?4)";
const INSERT_INBOX: &str = "INSERT INTO inbox (user_id, chat_id, seq, ts) VALUES (?1, ?2, ?3, ?4)";

/// An open SQLite store.
pub struct SqliteBackend {
    conn: Connection,
    durable: Option<bool>,
    heads: HashMap<u64, u64>,
}

/// SQLite stores integers signed: chat keys with the top bit set wrap to negative, which keeps
/// them distinct and ordered within a chat.
fn int(v: u64) -> i64 {
    v as i64
}

impl SqliteBackend {
    /// Opens (or creates, or recovers) `dir/peer.db` in WAL mode.
    pub fn open(dir: &Path) -> Result<SqliteBackend> {
        let conn = Connection::open(dir.join("peer.db"))?;
        let mode: String =
            conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
        anyhow::ensure!(mode.eq_ignore_ascii_case("wal"), "SQLite refused WAL mode");
        conn.execute_batch(missive_benches::sqlite::TABLE)?;
        conn.execute_batch(missive_benches::sqlite::INDEX)?;
        conn.execute_batch(TABLES)?;
        Ok(SqliteBackend {
            conn,
            durable: None,
            heads: HashMap::new(),
        })
    }

    fn set_durable(&mut self, durable: bool) -> Result<()> {
        if self.durable != Some(durable) {
            let value = if durable { "FULL" } else { "OFF" };
            self.conn.pragma_update(None, "synchronous", value)?;
            self.durable = Some(durable);
        }
        Ok(())
    }

    fn next_seq(&mut self, chat: u64) -> u64 {
        let head = self.heads.entry(chat).or_insert(0);
        *head += 1;
        *head
    }
}

impl Backend for SqliteBackend {
    fn commit(&mut self, ops: &[Op], durable: bool) -> Result<()> {
        self.set_durable(durable)?;
        let seqs: Vec<u64> = ops
            .iter()
            .map(|op| match op {
                Op::Direct { chat, .. } => self.next_seq(*chat),
                Op::Group { group, .. } => self.next_seq(group_chat(*group)),
                Op::Receipt { .. } => 0,
            })
            .collect();
        let tx = self.conn.transaction()?;
        {
            let mut message = tx.prepare_cached(INSERT_MESSAGE)?;
            let mut inbox = tx.prepare_cached(INSERT_INBOX)?;
            for (op, seq) in ops.iter().zip(seqs) {
                match op {
                    Op::Direct {
                        chat,
                        sender,
                        ts,
                        body,
                        ..
                    } => {
                        message.execute(params![int(*chat), int(seq), int(*ts), &body[..]])?;
                        let (a, b) = chat_users(*chat);
                        let recipient = if *sender == a { b } else { a };
                        inbox.execute(params![int(recipient), int(*chat), int(seq), int(*ts)])?;
                    }
                    Op::Group {
                        group,
                        sender,
                        ts,
                        body,
                        ..
                    } => {
                        let chat = int(group_chat(*group));
                        message.execute(params![chat, int(seq), int(*ts), &body[..]])?;
                        for member in group_members(*group) {
                            if member != *sender {
                                inbox.execute(params![int(member), chat, int(seq), int(*ts)])?;
                            }
                        }
                    }
                    Op::Receipt { user, chat, up_to } => {
                        let current: Option<i64> = tx
                            .prepare_cached(
                                "SELECT up_to FROM receipts WHERE user_id = ?1 AND chat_id = ?2",
                            )?
                            .query_row(params![int(*user), int(*chat)], |r| r.get(0))
                            .optional()?;
                        if current.is_some_and(|c| c >= int(*up_to)) {
                            continue;
                        }
                        tx.prepare_cached(
                            "INSERT INTO receipts (user_id, chat_id, up_to) VALUES (?1, ?2, ?3) \
                             ON CONFLICT (user_id, chat_id) DO UPDATE SET up_to = excluded.up_to",
                        )?
                        .execute(params![
                            int(*user),
                            int(*chat),
                            int(*up_to)
                        ])?;
                        tx.prepare_cached(
                            "DELETE FROM inbox WHERE user_id = ?1 AND chat_id = ?2 AND seq <= ?3",
                        )?
                        .execute(params![
                            int(*user),
                            int(*chat),
                            int(*up_to)
                        ])?;
                    }
                }
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn create_groups(&mut self, count: u64) -> Result<()> {
        self.set_durable(true)?;
        let tx = self.conn.transaction()?;
        {
            let mut insert =
                tx.prepare_cached("INSERT INTO members (chat_id, user_id) VALUES (?1, ?2)")?;
            for g in 0..count {
                for member in group_members(g) {
                    insert.execute(params![int(group_chat(g)), int(member)])?;
                }
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn latest(&mut self, chat: u64, n: usize) -> Result<usize> {
        let mut select = self.conn.prepare_cached(
            "SELECT seq, ts, payload FROM messages WHERE chat_id = ?1 ORDER BY seq DESC LIMIT ?2",
        )?;
        let mut rows = select.query(params![int(chat), n as i64])?;
        let mut found = 0;
        while let Some(row) = rows.next()? {
            std::hint::black_box(row.get_ref(2)?.as_blob()?.last());
            found += 1;
        }
        Ok(found)
    }

    fn inbox(&mut self, user: u64, n: usize) -> Result<usize> {
        let mut select = self.conn.prepare_cached(
            "SELECT m.chat_id, m.seq, m.payload FROM inbox i \
             JOIN messages m ON m.chat_id = i.chat_id AND m.seq = i.seq \
             WHERE i.user_id = ?1 ORDER BY i.chat_id, i.seq LIMIT ?2",
        )?;
        let mut rows = select.query(params![int(user), n as i64])?;
        let mut found = 0;
        while let Some(row) = rows.next()? {
            std::hint::black_box(row.get_ref(2)?.as_blob()?.last());
            found += 1;
        }
        Ok(found)
    }

    fn expire(&mut self, cutoff_ms: u64) -> Result<()> {
        self.set_durable(true)?;
        let tx = self.conn.transaction()?;
        tx.execute(
            "DELETE FROM messages WHERE ts < ?1",
            params![int(cutoff_ms)],
        )?;
        tx.execute("DELETE FROM inbox WHERE ts < ?1", params![int(cutoff_ms)])?;
        tx.commit()?;
        Ok(())
    }

    fn crash_safe(&mut self) -> Result<()> {
        Ok(())
    }

    fn close(self: Box<Self>) -> Result<()> {
        self.conn.close().map_err(|(_, e)| e)?;
        Ok(())
    }
}
