//! The key-value peers (fjall, redb, RocksDB) storing messages the usual way, through one small
//! trait: four tables with big-endian keys, so a prefix scan walks a chat in seq order.
//!
//! | table | key | value |
//! |---|---|---|
//! | messages | chat (8) ‖ seq (8) | ts (8) ‖ sender (8) ‖ body |
//! | inbox | user (8) ‖ chat (8) ‖ seq (8) | ts (8) |
//! | receipts | user (8) ‖ chat (8) | read up to (8) |
//! | members | chat (8) ‖ user (8) | empty |
//!
//! A 1:1 message writes a message and one inbox entry; a group message a message and an inbox
//! entry per other member (255); a receipt raises a watermark and deletes the inbox entries it
//! covers. Expiry scans the messages and the inbox and deletes what is older than the cutoff:
//! there is no time index (a time-partitioned layout, one table per day dropped whole, would make
//! it as cheap as Missive's segment deletion, at the price of a second copy of every key or of
//! reads that visit every partition).

use std::collections::HashMap;

use anyhow::Result;

use crate::spec::{GROUP_MEMBERS, Op, chat_users, group_members};
use crate::store::Backend;

/// One of the four tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Table {
    /// Messages by (chat, seq).
    Messages,
    /// Undelivered messages by (user, chat, seq).
    Inbox,
    /// Read watermarks by (user, chat).
    Receipts,
    /// Group members by (chat, user).
    Members,
}

impl Table {
    /// All of them.
    pub const ALL: [Table; 4] = [
        Table::Messages,
        Table::Inbox,
        Table::Receipts,
        Table::Members,
    ];

    /// A name usable as a keyspace or table name.
    pub fn name(self) -> &'static str {
        match self {
            Table::Messages => "messages",
            Table::Inbox => "inbox",
            Table::Receipts => "receipts",
            Table::Members => "members",
        }
    }
}

/// One write of a batch: a put, or a delete (`None`).
pub type Write = (Table, Vec<u8>, Option<Vec<u8>>);

/// A key-value store with tables, atomic batches and ordered scans.
pub trait Kv: Send {
    /// Applies `writes` atomically; fsynced before returning if `durable`.
    fn apply(&mut self, writes: Vec<Write>, durable: bool) -> Result<()>;
    /// Calls `each(key, value)` for the keys starting with `prefix`, ascending (or descending if
    /// `reverse`), until it returns `false`.
    fn scan(
        &self,
        table: Table,
        prefix: &[u8],
        reverse: bool,
        each: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<()>;
    /// The value of `key`.
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>>;
    /// See [`crate::store::Store::crash_safe`].
    fn crash_safe(&mut self) -> Result<()>;
    /// Closes cleanly.
    fn close(self: Box<Self>) -> Result<()>;
}

/// The key of group `g`'s chat (1:1 chats use their number).
pub fn group_chat(g: u64) -> u64 {
    (1 << 63) | g
}

fn key2(a: u64, b: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(16);
    key.extend_from_slice(&a.to_be_bytes());
    key.extend_from_slice(&b.to_be_bytes());
    key
}

fn key3(a: u64, b: u64, c: u64) -> Vec<u8> {
    let mut key = key2(a, b);
    key.extend_from_slice(&c.to_be_bytes());
    key
}

fn be(bytes: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
}

/// The first key after every key that starts with `prefix` (`None`: there is none).
pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

fn le(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
}

/// A [`Backend`] over any [`Kv`].
pub struct KvBackend {
    kv: Box<dyn Kv>,
    /// Per chat key, the last seq given out (this writer is the only one).
    heads: HashMap<u64, u64>,
}

impl KvBackend {
    /// Wraps `kv` (a new store: heads start at 0).
    pub fn new(kv: Box<dyn Kv>) -> KvBackend {
        KvBackend {
            kv,
            heads: HashMap::new(),
        }
    }

    fn next_seq(&mut self, chat: u64) -> u64 {
        let head = self.heads.entry(chat).or_insert(0);
        *head += 1;
        *head
    }

    fn message(
        &mut self,
        writes: &mut Vec<Write>,
        chat: u64,
        sender: u64,
        ts: u64,
        body: &[u8],
    ) -> u64 {
        let seq = self.next_seq(chat);
        let mut value = Vec::with_capacity(16 + body.len());
        value.extend_from_slice(&ts.to_le_bytes());
        value.extend_from_slice(&sender.to_le_bytes());
        value.extend_from_slice(body);
        writes.push((Table::Messages, key2(chat, seq), Some(value)));
        seq
    }
}

impl Backend for KvBackend {
    fn commit(&mut self, ops: &[Op], durable: bool) -> Result<()> {
        let mut writes = Vec::with_capacity(ops.len() * 2);
        for op in ops {
            match op {
                Op::Direct {
                    chat,
                    sender,
                    ts,
                    body,
                    ..
                } => {
                    let seq = self.message(&mut writes, *chat, *sender, *ts, body);
                    let (a, b) = chat_users(*chat);
                    let recipient = if *sender == a { b } else { a };
                    let entry = Some(ts.to_le_bytes().to_vec());
                    writes.push((Table::Inbox, key3(recipient, *chat, seq), entry));
                }
                Op::Group {
                    group,
                    sender,
                    ts,
                    body,
                    ..
                } => {
                    let chat = group_chat(*group);
                    let seq = self.message(&mut writes, chat, *sender, *ts, body);
                    for member in group_members(*group) {
                        if member != *sender {
                            let entry = Some(ts.to_le_bytes().to_vec());
                            writes.push((Table::Inbox, key3(member, chat, seq), entry));
                        }
                    }
                }
                Op::Receipt { user, chat, up_to } => {
                    let current = self
                        .kv
                        .get(Table::Receipts, &key2(*user, *chat))?
                        .map_or(0, |v| le(&v, 0));
                    if *up_to <= current {
                        continue;
                    }
                    let up = up_to.to_le_bytes().to_vec();
                    writes.push((Table::Receipts, key2(*user, *chat), Some(up)));
                    let mut covered = Vec::new();
                    self.kv
                        .scan(Table::Inbox, &key2(*user, *chat), false, &mut |key, _| {
                            if be(key, 16) > *up_to {
                                return false;
                            }
                            covered.push(key.to_vec());
                            true
                        })?;
                    writes.extend(covered.into_iter().map(|k| (Table::Inbox, k, None)));
                }
            }
        }
        self.kv.apply(writes, durable)
    }

    fn create_groups(&mut self, count: u64) -> Result<()> {
        let mut writes = Vec::new();
        for g in 0..count {
            for member in group_members(g) {
                writes.push((
                    Table::Members,
                    key2(group_chat(g), member),
                    Some(Vec::new()),
                ));
            }
        }
        debug_assert_eq!(writes.len() as u64, count * GROUP_MEMBERS);
        self.kv.apply(writes, true)
    }

    fn latest(&mut self, chat: u64, n: usize) -> Result<usize> {
        let mut found = 0;
        self.kv.scan(
            Table::Messages,
            &chat.to_be_bytes(),
            true,
            &mut |_, value| {
                std::hint::black_box(value.last());
                found += 1;
                found < n
            },
        )?;
        Ok(found)
    }

    fn inbox(&mut self, user: u64, n: usize) -> Result<usize> {
        let mut entries = Vec::with_capacity(n);
        self.kv
            .scan(Table::Inbox, &user.to_be_bytes(), false, &mut |key, _| {
                entries.push((be(key, 8), be(key, 16)));
                entries.len() < n
            })?;
        let mut found = 0;
        for (chat, seq) in entries {
            if let Some(message) = self.kv.get(Table::Messages, &key2(chat, seq))? {
                std::hint::black_box(message.last());
                found += 1;
            }
        }
        Ok(found)
    }

    fn expire(&mut self, cutoff_ms: u64) -> Result<()> {
        for table in [Table::Messages, Table::Inbox] {
            let mut old = Vec::new();
            self.kv.scan(table, &[], false, &mut |key, value| {
                if le(value, 0) < cutoff_ms {
                    old.push(key.to_vec());
                }
                true
            })?;
            let chunks = old.len().div_ceil(10_000);
            for (i, chunk) in old.chunks(10_000).enumerate() {
                let writes = chunk.iter().map(|k| (table, k.clone(), None)).collect();
                self.kv.apply(writes, i + 1 == chunks)?;
            }
        }
        Ok(())
    }

    fn crash_safe(&mut self) -> Result<()> {
        self.kv.crash_safe()
    }

    fn close(self: Box<Self>) -> Result<()> {
        self.kv.close()
    }
}

/// fjall 3: one keyspace per table; a batch's durability is `SyncData` (fdatasync, as Missive)
/// or none (fjall's default: each batch is flushed to the OS, so a process crash loses nothing).
pub mod fjall_kv {
    use super::*;
    use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};

    /// An open fjall database.
    pub struct FjallKv {
        db: Database,
        tables: HashMap<Table, Keyspace>,
    }

    impl FjallKv {
        /// Opens (or creates, or recovers) the database in `dir`, with defaults.
        pub fn open(dir: &std::path::Path) -> Result<FjallKv> {
            let db = Database::builder(dir).open()?;
            let mut tables = HashMap::new();
            for table in Table::ALL {
                tables.insert(
                    table,
                    db.keyspace(table.name(), KeyspaceCreateOptions::default)?,
                );
            }
            Ok(FjallKv { db, tables })
        }
    }

    impl Kv for FjallKv {
        fn apply(&mut self, writes: Vec<Write>, durable: bool) -> Result<()> {
            let mut batch = self
                .db
                .batch()
                .durability(durable.then_some(PersistMode::SyncData));
            for (table, key, value) in writes {
                let keyspace = &self.tables[&table];
                match value {
                    Some(value) => batch.insert(keyspace, key, value),
                    None => batch.remove(keyspace, key),
                }
            }
            batch.commit()?;
            Ok(())
        }

        fn scan(
            &self,
            table: Table,
            prefix: &[u8],
            reverse: bool,
            each: &mut dyn FnMut(&[u8], &[u8]) -> bool,
        ) -> Result<()> {
            let keyspace = &self.tables[&table];
            let iter = keyspace.prefix(prefix);
            let mut visit = |guard: fjall::Guard| -> Result<bool> {
                let (key, value) = guard.into_inner()?;
                Ok(each(&key, &value))
            };
            if reverse {
                for guard in iter.rev() {
                    if !visit(guard)? {
                        break;
                    }
                }
            } else {
                for guard in iter {
                    if !visit(guard)? {
                        break;
                    }
                }
            }
            Ok(())
        }

        fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>> {
            Ok(self.tables[&table].get(key)?.map(|v| v.to_vec()))
        }

        fn crash_safe(&mut self) -> Result<()> {
            self.db.persist(PersistMode::Buffer)?;
            Ok(())
        }

        fn close(self: Box<Self>) -> Result<()> {
            self.db.persist(PersistMode::SyncAll)?;
            Ok(())
        }
    }
}

/// redb 4: one table per table; `Durability::Immediate` (fsync per commit) or `None` (redb has
/// no level that only reaches the OS: a non-durable commit survives nothing until a durable one
/// follows, which [`Kv::crash_safe`] makes).
pub mod redb_kv {
    use super::*;
    use redb::{Database, Durability, ReadableDatabase, TableDefinition};

    fn definition(table: Table) -> TableDefinition<'static, &'static [u8], &'static [u8]> {
        TableDefinition::new(table.name())
    }

    /// An open redb database.
    pub struct RedbKv {
        db: Database,
    }

    impl RedbKv {
        /// Opens (or creates; after a crash, repairs) the database file `dir/peer.redb`.
        pub fn open(dir: &std::path::Path) -> Result<RedbKv> {
            let db = Database::create(dir.join("peer.redb"))?;
            let txn = db.begin_write()?;
            for table in Table::ALL {
                txn.open_table(definition(table))?;
            }
            txn.commit()?;
            Ok(RedbKv { db })
        }
    }

    impl Kv for RedbKv {
        fn apply(&mut self, writes: Vec<Write>, durable: bool) -> Result<()> {
            let mut txn = self.db.begin_write()?;
            txn.set_durability(if durable {
                Durability::Immediate
            } else {
                Durability::None
            })?;
            {
                let mut tables = HashMap::new();
                for table in Table::ALL {
                    tables.insert(table, txn.open_table(definition(table))?);
                }
                for (table, key, value) in &writes {
                    let t = tables.get_mut(table).expect("every table is open");
                    match value {
                        Some(value) => {
                            t.insert(key.as_slice(), value.as_slice())?;
                        }
                        None => {
                            t.remove(key.as_slice())?;
                        }
                    }
                }
            }
            txn.commit()?;
            Ok(())
        }

        fn scan(
            &self,
            table: Table,
            prefix: &[u8],
            reverse: bool,
            each: &mut dyn FnMut(&[u8], &[u8]) -> bool,
        ) -> Result<()> {
            let txn = self.db.begin_read()?;
            let t = txn.open_table(definition(table))?;
            let end = prefix_end(prefix);
            let range = match &end {
                _ if prefix.is_empty() => t.range::<&[u8]>(..)?,
                Some(end) => t.range::<&[u8]>(prefix..end.as_slice())?,
                None => t.range::<&[u8]>(prefix..)?,
            };
            let mut visit =
                |entry: (redb::AccessGuard<'_, &[u8]>, redb::AccessGuard<'_, &[u8]>)| {
                    each(entry.0.value(), entry.1.value())
                };
            if reverse {
                for entry in range.rev() {
                    if !visit(entry?) {
                        break;
                    }
                }
            } else {
                for entry in range {
                    if !visit(entry?) {
                        break;
                    }
                }
            }
            Ok(())
        }

        fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>> {
            let txn = self.db.begin_read()?;
            let t = txn.open_table(definition(table))?;
            Ok(t.get(key)?.map(|v| v.value().to_vec()))
        }

        fn crash_safe(&mut self) -> Result<()> {
            self.apply(Vec::new(), true)
        }

        fn close(self: Box<Self>) -> Result<()> {
            let mut this = *self;
            this.apply(Vec::new(), true)?;
            drop(this.db);
            Ok(())
        }
    }
}

/// RocksDB (opt-in feature `rocksdb`): one column family, keys prefixed by a table byte; a
/// write's durability is `sync = true` (the WAL fsynced) or the default (WAL written to the OS).
#[cfg(feature = "rocksdb")]
pub mod rocks_kv {
    use super::*;
    use rocksdb::{DB, Direction, IteratorMode, Options, WriteBatch, WriteOptions};

    fn tag(table: Table) -> u8 {
        match table {
            Table::Messages => b'm',
            Table::Inbox => b'i',
            Table::Receipts => b'r',
            Table::Members => b'g',
        }
    }

    fn full(table: Table, key: &[u8]) -> Vec<u8> {
        let mut k = Vec::with_capacity(1 + key.len());
        k.push(tag(table));
        k.extend_from_slice(key);
        k
    }

    /// An open RocksDB database.
    pub struct RocksKv {
        db: DB,
    }

    impl RocksKv {
        /// Opens (or creates, or recovers) the database in `dir`, with defaults.
        pub fn open(dir: &std::path::Path) -> Result<RocksKv> {
            let mut options = Options::default();
            options.create_if_missing(true);
            Ok(RocksKv {
                db: DB::open(&options, dir)?,
            })
        }
    }

    impl Kv for RocksKv {
        fn apply(&mut self, writes: Vec<Write>, durable: bool) -> Result<()> {
            let mut batch = WriteBatch::default();
            for (table, key, value) in writes {
                match value {
                    Some(value) => batch.put(full(table, &key), value),
                    None => batch.delete(full(table, &key)),
                }
            }
            let mut options = WriteOptions::default();
            options.set_sync(durable);
            self.db.write_opt(batch, &options)?;
            Ok(())
        }

        fn scan(
            &self,
            table: Table,
            prefix: &[u8],
            reverse: bool,
            each: &mut dyn FnMut(&[u8], &[u8]) -> bool,
        ) -> Result<()> {
            let start = full(table, prefix);
            // Tags are letters, so a successor always exists.
            let end = prefix_end(&start).expect("a table tag below 0xff");
            let mode = if reverse {
                IteratorMode::From(end.as_slice(), Direction::Reverse)
            } else {
                IteratorMode::From(start.as_slice(), Direction::Forward)
            };
            for entry in self.db.iterator(mode) {
                let (key, value) = entry?;
                if !key.starts_with(&start) {
                    if reverse && key.as_ref() >= end.as_slice() {
                        continue;
                    }
                    break;
                }
                if !each(&key[1..], &value) {
                    break;
                }
            }
            Ok(())
        }

        fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>> {
            Ok(self.db.get(full(table, key))?)
        }

        fn crash_safe(&mut self) -> Result<()> {
            Ok(())
        }

        fn close(self: Box<Self>) -> Result<()> {
            self.db.flush_wal(true)?;
            Ok(())
        }
    }
}
