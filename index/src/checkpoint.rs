//! Checkpoints: the whole index with the log position it reflects, in one file.
//!
//! `INDEX` in the index folder, written as `INDEX.tmp`, fsynced, renamed, and the folder fsynced,
//! through the log's storage. Little-endian:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | magic `MSVINDEX` |
//! | 8 | 2 | checkpoint version ([`CHECKPOINT_VERSION`]) |
//! | 10 | 2 | reserved (0) |
//! | 12 | 4 | CRC-32 of the body |
//! | 16 | 8 | body length |
//! | 24 | n | body |
//!
//! Body: log id (8), shard count (4), then per shard: the next LSN to apply (8), the active
//! segment (8), and its chats with runs in it: count (8) and per chat its id (16), run count (4)
//! and runs (first seq, last seq, first timestamp, segment, offset, first LSN: 8 each; offset in
//! the decoded body and end of the run's bytes: 4 each). Then the chats: count (8) and per chat
//! its id (16), head (8), the two 1:1 read watermarks (8 each), the two 1:1 inline delivered
//! watermarks (per side: device 4, seq 8; zeros when none), TTL (8), sealed-span count (4)
//! and spans (segment, first seq, last seq, first timestamp: 8 each; the chat's slot in the
//! segment index file's directory and the index of its first run there: 4 each), deleted
//! count (4) and seqs
//! (8 each), a member flag (1) and, for a group, member count (4) and members (user 8, role 1,
//! join seq 8). Then group memberships: count (8) and (user 8, chat 16); group read watermarks:
//! count (8) and (user 8, chat 16, seq 8); per shard the dedup memory: newest timestamp (8),
//! count (8) and, oldest first, (timestamp 8, key hash 8, seq 8); the delivered watermarks not
//! kept inline (groups' and the other devices of a 1:1 chat's users): count (8) and (user 8,
//! chat 16, device 4, seq 8). Maps are written in key order, so equal indexes give equal files.
//!
//! Version 9 keeps each span's first run (segment index files of version 2 put a chat's table
//! where slot and first run say); version 8 keeps each span's directory slot (version 7 had
//! none); version 7 keeps each 1:1
//! chat's users' lowest devices' delivered watermarks with the chat (version 6 had them all in
//! the delivered list; version 5 stored the dedup memory as whole keys rather than hashes); any
//! other version is rejected and the index rebuilt from the log.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use missive_log::{ChatId, DeviceId, Log, Lsn, ShardId, Storage, UserId};

use crate::chat::{ActiveRuns, Chat, Extra, Role, Run, SealedSpan, Spans, direct_side};
use crate::chunked::ChunkedMap;
use crate::dedup::Dedup;
use crate::error::{Error, Result};
use crate::index::Index;
use crate::receipts::{Receipts, delivered_chat, delivered_key};
use crate::wire::{Framed, RUN_BYTES, Reader, Writer, read_framed, write_framed};

/// An encoded checkpoint, from [`Index::encode_checkpoint`].
pub struct Checkpoint {
    storage: Arc<dyn Storage>,
    path: PathBuf,
    body: Vec<u8>,
}

impl std::fmt::Debug for Checkpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checkpoint")
            .field("path", &self.path)
            .field("body_bytes", &self.body.len())
            .finish()
    }
}

impl Checkpoint {
    /// Writes it atomically: temp file, fsync, rename, fsync the folder.
    pub fn write(self) -> Result<()> {
        write_framed(
            &*self.storage,
            &self.path,
            MAGIC,
            CHECKPOINT_VERSION,
            &self.body,
        )
    }

    /// The encoded body's length in bytes.
    pub fn len(&self) -> usize {
        self.body.len()
    }

    /// Whether the body is empty (never: it names at least the log).
    pub fn is_empty(&self) -> bool {
        self.body.is_empty()
    }
}

/// The checkpoint format version this build writes and reads.
pub const CHECKPOINT_VERSION: u16 = 9;

const MAGIC: [u8; 8] = *b"MSVINDEX";
const FILE: &str = "INDEX";

/// What [`Index::open`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OpenReport {
    /// Whether a checkpoint was loaded (else the index was rebuilt from the whole log).
    pub from_checkpoint: bool,
    /// Why a checkpoint that exists was not used.
    pub rejected: Option<String>,
    /// Records applied from the log after the checkpoint (or in the rebuild).
    pub replayed: u64,
}

/// Settings of an index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IndexConfig {
    /// How long a sender's `client_msg_id` is remembered, in ms of server time (default
    /// [`DEDUP_WINDOW_MS`](crate::DEDUP_WINDOW_MS)).
    pub dedup_window_ms: u64,
    /// At most this many sends are remembered per shard, the oldest forgotten first (default
    /// [`DEDUP_CAPACITY`](crate::DEDUP_CAPACITY)).
    pub dedup_capacity: usize,
}

impl Default for IndexConfig {
    fn default() -> IndexConfig {
        IndexConfig {
            dedup_window_ms: crate::DEDUP_WINDOW_MS,
            dedup_capacity: crate::DEDUP_CAPACITY,
        }
    }
}

impl Index {
    /// Opens the index of `log` kept in `dir`: loads the checkpoint if it is valid and belongs to
    /// this log, else starts empty, then applies everything the log holds after it.
    pub fn open(log: &Log, dir: &Path) -> Result<(Index, OpenReport)> {
        Index::open_with(log, dir, IndexConfig::default())
    }

    /// [`Index::open`] with settings.
    pub fn open_with(log: &Log, dir: &Path, config: IndexConfig) -> Result<(Index, OpenReport)> {
        let storage = log.storage();
        storage
            .create_dir_all(dir)
            .map_err(|e| io("create directory", dir, e))?;
        let mut report = OpenReport::default();
        let mut index = match load(log, dir) {
            Ok(Some(index)) => {
                report.from_checkpoint = true;
                index
            }
            Ok(None) => Index::empty(log, dir),
            Err(Error::BadCheckpoint { reason, .. }) => {
                report.rejected = Some(reason.to_owned());
                Index::empty(log, dir)
            }
            Err(error) => return Err(error),
        };
        index.dedup_window_ms = config.dedup_window_ms;
        index.dedup_capacity = config.dedup_capacity;
        report.replayed = index.catch_up(log)?;
        index.prune_removed(log)?;
        Ok((index, report))
    }

    /// Writes the index to its folder atomically: temp file, fsync, rename, fsync the folder.
    /// The same as [`Index::encode_checkpoint`] then [`Checkpoint::write`].
    pub fn checkpoint(&self) -> Result<()> {
        self.encode_checkpoint().write()
    }

    /// The checkpoint of the index as it is now, encoded but not written: an embedder that
    /// guards the index with a lock encodes under it and writes after releasing it (writing
    /// and fsyncing a 100 MiB checkpoint takes far longer than encoding it). Write the newest
    /// last: a later [`Checkpoint::write`] replaces an earlier one.
    pub fn encode_checkpoint(&self) -> Checkpoint {
        Checkpoint {
            storage: Arc::clone(&self.home.storage),
            path: self.home.dir.join(FILE),
            body: self.encode_body(),
        }
    }

    fn encode_body(&self) -> Vec<u8> {
        let mut w = Writer(Vec::new());
        w.u64(self.log_id);
        w.u32(self.applied.len() as u32);
        for (lsn, active) in self.applied.iter().zip(&self.active) {
            w.u64(lsn.0);
            w.u64(active.segment);
            let runs: BTreeMap<&ChatId, &Vec<Run>> = active.runs.iter().collect();
            w.u64(runs.len() as u64);
            for (id, runs) in runs {
                w.u128(id.to_u128());
                w.u32(runs.len() as u32);
                for run in runs {
                    w.run(run);
                    w.u32(run.body_end);
                }
            }
        }
        let chats: BTreeMap<ChatId, &Chat> = self.chats.iter().collect();
        w.u64(chats.len() as u64);
        for (id, chat) in chats {
            w.u128(id.to_u128());
            w.u64(chat.head);
            w.u64(chat.read[0]);
            w.u64(chat.read[1]);
            for side in 0..2 {
                w.u32(chat.delivered_device[side]);
                w.u64(chat.delivered[side]);
            }
            w.u64(chat.ttl_ms());
            let spans = chat.sealed.as_slice();
            w.u32(spans.len() as u32);
            for span in spans {
                for value in [span.segment, span.first_seq, span.last_seq, span.first_ts] {
                    w.u64(value);
                }
                w.u32(span.slot);
                w.u32(span.first_run);
            }
            w.u32(chat.deleted().len() as u32);
            for seq in chat.deleted() {
                w.u64(*seq);
            }
            match chat.members() {
                None => w.u8(0),
                Some(members) => {
                    w.u8(1);
                    w.u32(members.len() as u32);
                    for (user, role) in members {
                        w.u64(user.0);
                        w.u8(matches!(role, Role::Admin) as u8);
                        w.u64(chat.joined(*user));
                    }
                }
            }
        }
        // 1:1 memberships are not written: they follow from the chats with messages.
        let receipts = &self.receipts;
        w.u64(receipts.groups.len() as u64);
        for (user, chat) in receipts.groups() {
            w.u64(user.0);
            w.u128(chat.to_u128());
        }
        let read: BTreeMap<&(UserId, ChatId), &u64> = receipts.group_read.iter().collect();
        w.u64(read.len() as u64);
        for ((user, chat), seq) in read {
            w.u64(user.0);
            w.u128(chat.to_u128());
            w.u64(*seq);
        }
        // The dedup memory, per shard, oldest first.
        for dedup in &self.dedup {
            w.u64(dedup.newest);
            w.u64(dedup.order.len() as u64);
            for &(timestamp, hash, seq) in &dedup.order {
                w.u64(timestamp);
                w.u64(hash);
                w.u64(seq);
            }
        }
        w.u64(receipts.delivered.len() as u64);
        for (key, seq) in receipts.delivered.iter() {
            w.u64(key.0.0);
            w.u128(delivered_chat(&key).to_u128());
            w.u32(key.3.0);
            w.u64(seq);
        }
        w.0
    }
}

fn io(op: &'static str, path: &Path, source: std::io::Error) -> Error {
    Error::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// Loads the checkpoint in `dir`: `None` if there is none, `BadCheckpoint` if it fails any check.
fn load(log: &Log, dir: &Path) -> Result<Option<Index>> {
    let path = dir.join(FILE);
    let bad = |reason| Error::BadCheckpoint {
        file: path.clone(),
        reason,
    };
    let body = match read_framed(&**log.storage(), &path, MAGIC, CHECKPOINT_VERSION)? {
        Framed::Missing => return Ok(None),
        Framed::Bad(reason) => return Err(bad(reason)),
        Framed::Body(body) => body,
    };
    let mut index = Index::empty(log, dir);
    decode_body(&body, &mut index).ok_or_else(|| bad("body does not decode"))?;
    if index.log_id != log.id() {
        return Err(bad("written for another log"));
    }
    if index.applied.len() != log.shard_count() as usize {
        return Err(bad("shard count differs from the log's"));
    }
    for (shard, applied) in index.applied.iter().enumerate() {
        // A checkpoint ahead of the log reflects records the log no longer holds (a power cut
        // under a lax durability level): trusting it would show messages that do not exist.
        if *applied > log.head(ShardId(shard as u32))? {
            return Err(bad("ahead of the log"));
        }
    }
    Ok(Some(index))
}

/// Decodes a checkpoint body into `index` (whose folder and cache are already set).
fn decode_body(body: &[u8], index: &mut Index) -> Option<()> {
    let mut r = Reader(body);
    index.log_id = r.u64()?;
    let shards = r.count(16)?;
    if shards == 0 {
        return None;
    }
    index.applied.clear();
    index.dedup = vec![Dedup::default(); shards];
    index.active.clear();
    for shard in 0..shards {
        index.applied.push(Lsn(r.u64()?));
        let mut active = ActiveRuns {
            segment: r.u64()?,
            runs: HashMap::new(),
        };
        for _ in 0..r.count64(20)? {
            let id = ChatId::from_u128(r.u128()?);
            let runs = (0..r.count(RUN_BYTES + 4)?)
                .map(|_| {
                    let mut run = r.run()?;
                    run.body_end = r.u32()?;
                    (run.body_end == 0 || run.body_end > run.body_offset).then_some(run)
                })
                .collect::<Option<Vec<Run>>>()?;
            let misplaced = id.shard(shards as u32).0 as usize != shard
                || runs.iter().any(|run| run.segment != active.segment)
                || runs.is_empty();
            if misplaced || active.runs.insert(id, runs).is_some() {
                return None;
            }
        }
        index.active.push(active);
    }
    index.chats.clear();
    let receipts = &mut index.receipts;
    *receipts = Receipts::default();
    let chats = r.count64(16)?;
    index.chats.reserve(chats);
    // Both sides of every 1:1 chat with messages, sorted at the end and loaded at once.
    let mut direct = Vec::with_capacity(2 * chats);
    for _ in 0..chats {
        let id = ChatId::from_u128(r.u128()?);
        let head = r.u64()?;
        let read = [r.u64()?, r.u64()?];
        let (mut delivered, mut delivered_device) = ([0; 2], [0; 2]);
        for side in 0..2 {
            delivered_device[side] = r.u32()?;
            delivered[side] = r.u64()?;
        }
        // Inline delivered watermarks: only a 1:1 chat's users', a self-chat's on side 0, and an
        // empty slot names no device.
        let sides = match id.direct_users() {
            Some((a, b)) if a == b => 1,
            Some(_) => 2,
            None => 0,
        };
        if (0..2).any(|side| {
            (side >= sides && delivered[side] != 0)
                || (delivered[side] == 0 && delivered_device[side] != 0)
        }) {
            return None;
        }
        let ttl_ms = r.u64()?;
        let mut sealed = Vec::new();
        for _ in 0..r.count(40)? {
            let [segment, first_seq, last_seq, first_ts] = [r.u64()?, r.u64()?, r.u64()?, r.u64()?];
            let (slot, first_run) = (r.u32()?, r.u32()?);
            if first_seq > last_seq || last_seq > head {
                return None;
            }
            sealed.push(SealedSpan {
                segment,
                first_seq,
                last_seq,
                first_ts,
                slot,
                first_run,
            });
        }
        let deleted = (0..r.count(8)?)
            .map(|_| r.u64())
            .collect::<Option<Vec<_>>>()?;
        let mut joined = BTreeMap::new();
        let members = match r.u8()? {
            0 => None,
            1 => {
                let mut members = BTreeMap::new();
                for _ in 0..r.count(17)? {
                    let user = UserId(r.u64()?);
                    let role = match r.u8()? {
                        0 => Role::Member,
                        1 => Role::Admin,
                        _ => return None,
                    };
                    members.insert(user, role);
                    joined.insert(user, r.u64()?);
                }
                Some(members)
            }
            _ => return None,
        };
        let shard = id.shard(shards as u32).0 as usize;
        if index.active[shard]
            .of(id)
            .iter()
            .any(|run| run.last_seq > head)
        {
            return None;
        }
        if head > 0
            && let Some((a, b)) = id.direct_users()
        {
            direct.extend([(a, b), (b, a)]);
        }
        let extra = (ttl_ms != 0 || !deleted.is_empty() || members.is_some()).then(|| {
            Box::new(Extra {
                joined,
                deleted,
                ttl_ms,
                members,
            })
        });
        let chat = Chat {
            head,
            read,
            delivered,
            delivered_device,
            sealed: Spans::from(sealed),
            extra,
        };
        if !index.chats.insert_new(id, chat) {
            return None;
        }
    }
    direct.sort_unstable();
    // A chat of a user with themselves lists them once.
    direct.dedup();
    receipts.direct = ChunkedMap::from_sorted(direct.into_iter().map(|pair| (pair, ())))?;
    for _ in 0..r.count64(24)? {
        let (user, chat) = (UserId(r.u64()?), ChatId::from_u128(r.u128()?));
        if chat.is_direct() {
            return None;
        }
        receipts.join_group(user, chat);
    }
    for _ in 0..r.count64(32)? {
        let key = (UserId(r.u64()?), ChatId::from_u128(r.u128()?));
        receipts.group_read.insert(key, r.u64()?);
    }
    for dedup in &mut index.dedup {
        *dedup = Dedup {
            newest: r.u64()?,
            ..Dedup::default()
        };
        let count = r.count64(24)?;
        dedup.sent.reserve(count);
        dedup.order.reserve_exact(count);
        for _ in 0..count {
            let (timestamp, hash, seq) = (r.u64()?, r.u64()?, r.u64()?);
            if timestamp > dedup.newest {
                return None;
            }
            // In arrival order, so a later entry with the same hash wins, as when applied.
            dedup.sent.insert(hash, seq);
            dedup.order.push_back((timestamp, hash, seq));
        }
    }
    // Written in key order: loaded at once (`None` if not sorted: a damaged file). Sized up
    // front: grown step by step, the vector left freed blocks in the heap that stayed resident.
    let count = r.count64(36)?;
    let mut delivered = Vec::with_capacity(count);
    for _ in 0..count {
        let (user, chat, device) = (
            UserId(r.u64()?),
            ChatId::from_u128(r.u128()?),
            DeviceId(r.u32()?),
        );
        let seq = r.u64()?;
        // A 1:1 chat's user has their lowest device inline, the others here.
        if let Some(side) = direct_side(chat, user) {
            let state = index.chats.get(chat)?;
            if seq == 0 || state.inline_delivered(side, device).is_some() {
                return None;
            }
        }
        delivered.push((delivered_key(user, chat, device), seq));
    }
    receipts.delivered = ChunkedMap::from_sorted(delivered)?;
    r.0.is_empty().then_some(())
}
