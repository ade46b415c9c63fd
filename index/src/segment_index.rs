//! Per-segment index files: when a log segment seals, the runs of every chat in it are written
//! to one immutable file (like Kafka's `.index`) and leave memory. A chat keeps one small span
//! per sealed segment; queries load a segment's file on demand, through a bounded cache, and
//! rebuild it from the log if it is missing or damaged. Files go with their segments.
//!
//! A file is never changed in place: it is written under a temporary name and renamed, and a
//! rebuilt one replaces it the same way, so it can be read through a read-only map (the log's
//! `Storage::read_sealed`) whose bytes stay valid for as long as a query holds them.
//!
//! `seg-{shard:04}-{segment:020}.idx`, little-endian:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | magic `MSVSEGIX` |
//! | 8 | 2 | version (2) |
//! | 10 | 2 | reserved (0) |
//! | 12 | 4 | CRC-32 of the body |
//! | 16 | 8 | body length |
//! | 24 | n | body |
//!
//! Body: log id (8), shard (4), segment (8), chat count c (4), run count r (4); a directory of c
//! entries sorted by chat: id (16), index of its first run (4), run count (4); then, in the
//! directory's order, each chat's run table: its id again (16), its run count (4) and its runs
//! (52 bytes each, as in checkpoints). The table of the chat at directory slot `k` whose first
//! run is run `f` starts at `28 + 24c + 20k + 52f` in the body.
//!
//! A query that knows where its chat's table is (a chat's span keeps its slot and first run)
//! reads the table directly, checked by the id and count at its head: one cache line and one
//! page for a chat with a few runs in the segment, where a directory entry in a page of its
//! own came first before (version 1 had no table heads). Without that, or if the head does not
//! match, it binary-searches the directory in place.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use missive_log::{ChatId, Log, Lsn, RecordKind, ShardId, Storage};
use parking_lot::Mutex;

use crate::chat::{Run, extends};
use crate::codec::Message;
use crate::error::Result;
use crate::wire::{FRAME_HEADER_LEN, RUN_BYTES, Reader, Writer, check_frame, write_framed};

const MAGIC: [u8; 8] = *b"MSVSEGIX";
const VERSION: u16 = 2;

/// Segment index files kept in memory at once.
pub const SEGMENT_INDEX_CACHE_MAX: usize = 1024;

/// The runs of every chat in one sealed segment, read in place from the file's bytes (a
/// read-only map on the real file system): opening one costs a checksum, not a decode, and a
/// query decodes only its chat's runs.
#[derive(Debug)]
pub(crate) struct SegmentIndex {
    /// The file's body (see the module documentation).
    body: Bytes,
    chats: usize,
}

/// Bytes of the body before the chat directory.
const BODY_FIXED: usize = 8 + 4 + 8 + 4 + 4;
/// Bytes of one chat directory entry: chat id, index of its first run, run count.
const DIRECTORY_ENTRY: usize = 16 + 4 + 4;
/// Bytes of the head of a chat's run table: chat id, run count.
const TABLE_HEAD: usize = 16 + 4;

impl SegmentIndex {
    /// Checks a body's shape and place; the runs themselves are checked as they are decoded.
    fn parse(body: Bytes, log_id: u64, shard: u32, segment: u64) -> Option<SegmentIndex> {
        let mut r = Reader(&body);
        if (r.u64()?, r.u32()?, r.u64()?) != (log_id, shard, segment) {
            return None;
        }
        let chats = r.u32()? as usize;
        let runs = r.u32()? as usize;
        let expected = BODY_FIXED
            .checked_add(chats.checked_mul(DIRECTORY_ENTRY + TABLE_HEAD)?)?
            .checked_add(runs.checked_mul(RUN_BYTES)?)?;
        if body.len() != expected {
            return None;
        }
        let index = SegmentIndex { body, chats };
        // The directory is sorted by chat and its run ranges tile the run table.
        let mut next_run = 0usize;
        let mut previous = None;
        for at in 0..chats {
            let (chat, first, count) = index.entry(at)?;
            if previous.is_some_and(|p| p >= chat) || first != next_run {
                return None;
            }
            previous = Some(chat);
            next_run = first.checked_add(count)?;
        }
        (next_run == runs).then_some(index)
    }

    fn entry(&self, at: usize) -> Option<(ChatId, usize, usize)> {
        if at >= self.chats {
            return None;
        }
        let start = BODY_FIXED + at * DIRECTORY_ENTRY;
        let mut r = Reader(self.body.get(start..start + DIRECTORY_ENTRY)?);
        Some((
            ChatId::from_u128(r.u128()?),
            r.u32()? as usize,
            r.u32()? as usize,
        ))
    }

    /// The chat's runs in this segment, in seq order (empty if it has none here): a view of
    /// the file's run table, decoded one run at a time as a query binary-searches and walks it.
    /// `hint` is where the chat's table should be (its [`SealedSpan`]'s directory slot and
    /// first run): one read if it is there, a binary search of the directory if not.
    ///
    /// [`SealedSpan`]: crate::chat::SealedSpan
    pub(crate) fn runs_of(&self, chat: ChatId, hint: (usize, usize)) -> RunTable {
        let found = self
            .table(chat, hint)
            .or_else(|| self.search(chat).and_then(|at| self.table(chat, at)));
        found.unwrap_or(RunTable { start: 0, count: 0 })
    }

    /// Run `at` of `table` (found by [`SegmentIndex::runs_of`] in this file); `None` past its
    /// end or if its bytes are malformed.
    pub(crate) fn run(&self, table: RunTable, at: usize) -> Option<Run> {
        if at >= table.count {
            return None;
        }
        let start = table.start.checked_add(at.checked_mul(RUN_BYTES)?)?;
        Reader(self.body.get(start..start.checked_add(RUN_BYTES)?)?).run()
    }

    /// Starts loading the first bytes of the table at `hint` (slot, first run), for a walk
    /// that reads several segments' tables: their cache and TLB misses then overlap instead of
    /// coming one after another. Only a hint: nothing is checked or read.
    pub(crate) fn prefetch_table(&self, hint: (usize, usize)) {
        /// The head and the first runs: four cache lines.
        const BYTES: usize = 256;
        if let Some(start) = self.table_start(hint) {
            for offset in (start..start + BYTES).step_by(64) {
                missive_log::storage::prefetch(&self.body, offset);
            }
        }
    }

    /// Where the table of the chat at directory slot `slot` whose first run is `first` starts
    /// in the body (the module documentation's formula), if that is inside the body.
    fn table_start(&self, (slot, first): (usize, usize)) -> Option<usize> {
        let start = BODY_FIXED
            .checked_add(self.chats * DIRECTORY_ENTRY)?
            .checked_add(slot.checked_mul(TABLE_HEAD)?)?
            .checked_add(first.checked_mul(RUN_BYTES)?)?;
        (start < self.body.len()).then_some(start)
    }

    /// The chat's table if it is the one at `at` (slot, first run): its head names the chat
    /// and a count of runs that fits in the body.
    fn table(&self, chat: ChatId, at: (usize, usize)) -> Option<RunTable> {
        let start = self.table_start(at)?;
        let mut head = Reader(self.body.get(start..start.checked_add(TABLE_HEAD)?)?);
        if ChatId::from_u128(head.u128()?) != chat {
            return None;
        }
        let count = head.u32()? as usize;
        let runs = start + TABLE_HEAD;
        let end = runs.checked_add(count.checked_mul(RUN_BYTES)?)?;
        (count > 0 && end <= self.body.len()).then_some(RunTable { start: runs, count })
    }

    /// The chat's slot in the directory and the index of its first run, by binary search.
    fn search(&self, chat: ChatId) -> Option<(usize, usize)> {
        let (mut low, mut high) = (0, self.chats);
        while low < high {
            let middle = (low + high) / 2;
            let (id, first, _) = self.entry(middle)?;
            match id.cmp(&chat) {
                std::cmp::Ordering::Less => low = middle + 1,
                std::cmp::Ordering::Greater => high = middle,
                std::cmp::Ordering::Equal => return Some((middle, first)),
            }
        }
        None
    }
}

/// Where one chat's runs lie in a segment index file's body, read in place through
/// [`SegmentIndex::run`]. A place, not a slice of the bytes: a query walking many segments
/// takes no reference count per table (each a locked instruction on a line of its own, which
/// would wait for every load before it).
#[derive(Clone, Copy, Debug)]
pub(crate) struct RunTable {
    /// Where the first run starts in the body.
    start: usize,
    count: usize,
}

impl RunTable {
    pub(crate) fn len(&self) -> usize {
        self.count
    }
}

/// The body of a segment index file for these runs.
fn encode(log_id: u64, shard: u32, segment: u64, chats: &BTreeMap<ChatId, Vec<Run>>) -> Vec<u8> {
    let runs: usize = chats.values().map(Vec::len).sum();
    let mut body = Writer(Vec::with_capacity(
        BODY_FIXED + chats.len() * (DIRECTORY_ENTRY + TABLE_HEAD) + runs * RUN_BYTES,
    ));
    body.u64(log_id);
    body.u32(shard);
    body.u64(segment);
    body.u32(chats.len() as u32);
    body.u32(runs as u32);
    let mut first = 0u32;
    for (chat, runs) in chats {
        body.u128(chat.to_u128());
        body.u32(first);
        body.u32(runs.len() as u32);
        first += runs.len() as u32;
    }
    for (chat, runs) in chats {
        body.u128(chat.to_u128());
        body.u32(runs.len() as u32);
        for run in runs {
            body.run(run);
        }
    }
    body.0
}

pub(crate) fn file_name(shard: u32, segment: u64) -> String {
    format!("seg-{shard:04}-{segment:020}.idx")
}

/// The shard and segment a segment index file (or its temporary, `.tmp`) is named for.
pub(crate) fn parse_file_name(name: &str) -> Option<(u32, u64)> {
    let stem = name
        .strip_suffix(".idx")
        .or_else(|| name.strip_suffix(".tmp"))?;
    let (shard, segment) = stem.strip_prefix("seg-")?.split_once('-')?;
    let digits = |s: &str, len| s.len() == len && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(shard, 4) || !digits(segment, 20) {
        return None;
    }
    Some((shard.parse().ok()?, segment.parse().ok()?))
}

/// Writes a segment's encoded index atomically (temp file, fsync, rename, fsync the folder).
fn write(storage: &dyn Storage, dir: &Path, shard: u32, segment: u64, body: &[u8]) -> Result<()> {
    let path = dir.join(file_name(shard, segment));
    write_framed(storage, &path, MAGIC, VERSION, body)
}

/// Opens a segment's index file in place: `None` if it is missing or fails any check. The file
/// never changes once renamed into place, so the real storage maps it.
fn load(
    storage: &dyn Storage,
    path: &Path,
    log_id: u64,
    shard: u32,
    segment: u64,
) -> Option<SegmentIndex> {
    let bytes = storage.read_sealed(path).ok()?;
    check_frame(&bytes, MAGIC, VERSION).ok()?;
    SegmentIndex::parse(bytes.slice(FRAME_HEADER_LEN..), log_id, shard, segment)
}

/// Rebuilds a segment's index by reading the segment from the log (empty if retention removed
/// it).
fn rebuild(log: &Log, shard: u32, segment: u64) -> Result<BTreeMap<ChatId, Vec<Run>>> {
    // Each chat's runs, and where its last record ends.
    let mut chats: BTreeMap<ChatId, (Vec<Run>, usize)> = BTreeMap::new();
    for batch in log.batches_from(ShardId(shard), Lsn(segment))? {
        let (pos, batch) = batch?;
        if pos.segment != segment {
            break;
        }
        let mut entries = batch.entries();
        loop {
            let body_offset = entries.body_offset();
            let Some(entry) = entries.next() else { break };
            if entry.record.kind != RecordKind::Message {
                continue;
            }
            let Some(seq) = Message::peek_seq(&entry.record.payload) else {
                continue;
            };
            let body_end = entries.body_offset();
            let (runs, previous_end) = chats.entry(entry.record.chat).or_default();
            let previous = std::mem::replace(previous_end, body_end);
            match runs.last_mut() {
                Some(last) if extends(last, pos.offset, body_offset, previous) => {
                    last.last_seq = seq.0;
                }
                _ => runs.push(Run {
                    first_seq: seq.0,
                    last_seq: seq.0,
                    first_ts: entry.record.timestamp.0,
                    segment,
                    offset: pos.offset,
                    first_lsn: entry.lsn.0,
                    body_offset: body_offset as u32,
                    // Sealed runs are sliced out of a map: no end needed (nor stored).
                    body_end: 0,
                }),
            }
        }
    }
    Ok(chats
        .into_iter()
        .map(|(chat, (runs, _))| (chat, runs))
        .collect())
}

/// A segment: its shard and first LSN.
type SegmentKey = (u32, u64);

/// Loaded segment indexes, at most [`SEGMENT_INDEX_CACHE_MAX`], oldest loaded evicted first.
/// It is a cache: cloning an index starts it empty, and it never counts in equality.
#[derive(Debug, Default)]
pub(crate) struct SegmentCache {
    loaded: Mutex<Loaded>,
    /// Whether sealing leaves writing the file to the owner ([`Index::defer_segment_files`]).
    ///
    /// [`Index::defer_segment_files`]: crate::Index::defer_segment_files
    defer_writes: bool,
    /// How many indexes wait to be written (a lock-free look for the owner's hot path).
    unwritten_count: AtomicUsize,
}

/// The cache's indexes by segment, and the order they were loaded in.
#[derive(Debug, Default)]
struct Loaded {
    by_segment: HashMap<SegmentKey, Arc<SegmentIndex>>,
    order: VecDeque<SegmentKey>,
    /// Indexes of segments sealed since, whose files are not written yet: never evicted (a
    /// query would otherwise rebuild them from the log), until written.
    unwritten: HashMap<SegmentKey, Arc<SegmentIndex>>,
}

impl Loaded {
    fn insert(&mut self, key: SegmentKey, index: Arc<SegmentIndex>) {
        if self.by_segment.contains_key(&key) {
            return;
        }
        if self.order.len() == SEGMENT_INDEX_CACHE_MAX
            && let Some(oldest) = self.order.pop_front()
        {
            self.by_segment.remove(&oldest);
        }
        self.order.push_back(key);
        self.by_segment.insert(key, index);
    }
}

/// A segment's index file the index has not written yet (see
/// [`Index::defer_segment_files`](crate::Index::defer_segment_files)): write it with
/// [`UnwrittenSegmentIndex::write`], outside any lock on the index, then tell the index with
/// [`Index::segment_file_written`](crate::Index::segment_file_written).
#[derive(Clone)]
pub struct UnwrittenSegmentIndex {
    storage: Arc<dyn Storage>,
    dir: PathBuf,
    shard: u32,
    segment: u64,
    index: Arc<SegmentIndex>,
}

impl std::fmt::Debug for UnwrittenSegmentIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UnwrittenSegmentIndex")
            .field("shard", &self.shard)
            .field("segment", &self.segment)
            .field("bytes", &self.index.body.len())
            .finish()
    }
}

impl UnwrittenSegmentIndex {
    /// The shard and segment (first LSN) it indexes.
    pub fn segment(&self) -> (u32, u64) {
        (self.shard, self.segment)
    }

    /// Writes the file (temporary name, fsync, rename, fsync of the folder).
    pub fn write(&self) -> Result<()> {
        write(
            &*self.storage,
            &self.dir,
            self.shard,
            self.segment,
            &self.index.body,
        )
    }
}

impl Clone for SegmentCache {
    /// An empty cache with the same setting (a clone rebuilds from the log what it has not
    /// written: nothing is lost, only time).
    fn clone(&self) -> SegmentCache {
        SegmentCache {
            defer_writes: self.defer_writes,
            ..SegmentCache::default()
        }
    }
}

impl PartialEq for SegmentCache {
    fn eq(&self, _: &SegmentCache) -> bool {
        true
    }
}

impl Eq for SegmentCache {}

impl SegmentCache {
    /// The index of `segment`: from the cache, its file, or rebuilt from the log (and written
    /// back, best effort: a failure to write only means rebuilding again next time).
    pub(crate) fn get(
        &self,
        log: &Log,
        dir: &Path,
        shard: u32,
        segment: u64,
    ) -> Result<Arc<SegmentIndex>> {
        let key = (shard, segment);
        {
            let loaded = self.loaded.lock();
            if let Some(index) = loaded.by_segment.get(&key).or(loaded.unwritten.get(&key)) {
                return Ok(Arc::clone(index));
            }
        }
        let path: PathBuf = dir.join(file_name(shard, segment));
        let storage = log.storage();
        let index = match load(&**storage, &path, log.id(), shard, segment) {
            Some(index) => index,
            None => {
                let chats = rebuild(log, shard, segment)?;
                let body = Bytes::from(encode(log.id(), shard, segment, &chats));
                let _ = write(&**storage, dir, shard, segment, &body);
                SegmentIndex::parse(body, log.id(), shard, segment)
                    .expect("a freshly encoded segment index parses")
            }
        };
        let index = Arc::new(index);
        let mut loaded = self.loaded.lock();
        // Two readers may have loaded it at once: the first one kept is the one used.
        if let Some(kept) = loaded.by_segment.get(&key) {
            return Ok(Arc::clone(kept));
        }
        loaded.insert(key, Arc::clone(&index));
        Ok(index)
    }

    /// A segment just sealed (`chats` is what its file holds): the file is written now, or,
    /// when writes are deferred, its index is kept in memory until the owner writes it.
    pub(crate) fn sealed(
        &self,
        home: (&Arc<dyn Storage>, &Path),
        log_id: u64,
        shard: u32,
        segment: u64,
        chats: &BTreeMap<ChatId, Vec<Run>>,
    ) -> Result<()> {
        let body = encode(log_id, shard, segment, chats);
        if !self.defer_writes {
            // Not cached: a query maps the file (page cache, shared), not a heap copy.
            return write(&**home.0, home.1, shard, segment, &body);
        }
        let index = SegmentIndex::parse(Bytes::from(body), log_id, shard, segment)
            .expect("a freshly encoded segment index parses");
        let mut loaded = self.loaded.lock();
        if loaded
            .unwritten
            .insert((shard, segment), Arc::new(index))
            .is_none()
        {
            self.unwritten_count.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    pub(crate) fn set_defer_writes(&mut self, defer: bool) {
        self.defer_writes = defer;
    }

    pub(crate) fn has_unwritten(&self) -> bool {
        self.unwritten_count.load(Ordering::Relaxed) > 0
    }

    /// The segment indexes waiting to be written, oldest segment first.
    pub(crate) fn unwritten(&self, home: (&Arc<dyn Storage>, &Path)) -> Vec<UnwrittenSegmentIndex> {
        let loaded = self.loaded.lock();
        let mut files: Vec<UnwrittenSegmentIndex> = loaded
            .unwritten
            .iter()
            .map(|(&(shard, segment), index)| UnwrittenSegmentIndex {
                storage: Arc::clone(home.0),
                dir: home.1.to_path_buf(),
                shard,
                segment,
                index: Arc::clone(index),
            })
            .collect();
        files.sort_by_key(|file| (file.segment, file.shard));
        files
    }

    /// A deferred file was written: its in-memory index is let go.
    pub(crate) fn written(&self, shard: u32, segment: u64) {
        // Dropped rather than cached: the in-memory copy is heap, and a query maps the file
        // now (page cache, shared with the OS).
        if self
            .loaded
            .lock()
            .unwritten
            .remove(&(shard, segment))
            .is_some()
        {
            self.unwritten_count.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Forgets a segment (retention removed it).
    pub(crate) fn forget(&self, shard: u32, segment: u64) {
        let mut loaded = self.loaded.lock();
        if loaded.by_segment.remove(&(shard, segment)).is_some() {
            loaded.order.retain(|key| *key != (shard, segment));
        }
        if loaded.unwritten.remove(&(shard, segment)).is_some() {
            self.unwritten_count.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(seq: u64) -> Run {
        Run {
            first_seq: seq,
            last_seq: seq,
            first_ts: seq * 10,
            segment: 7,
            offset: seq * 100,
            first_lsn: seq,
            body_offset: 0,
            body_end: 0,
        }
    }

    /// A directory of chats 10, 20, …, 100 with 1, 2, … runs each.
    fn file() -> (SegmentIndex, BTreeMap<ChatId, Vec<Run>>) {
        let chats: BTreeMap<ChatId, Vec<Run>> = (1..=10u64)
            .map(|n| {
                let chat = ChatId::from_u128(u128::from(n * 10));
                (chat, (0..n).map(|i| run(n * 100 + i)).collect())
            })
            .collect();
        let body = Bytes::from(encode(1, 2, 7, &chats));
        (SegmentIndex::parse(body, 1, 2, 7).unwrap(), chats)
    }

    fn runs(index: &SegmentIndex, table: RunTable) -> Vec<Run> {
        assert_eq!(index.run(table, table.len()), None);
        (0..table.len())
            .map(|at| index.run(table, at).unwrap())
            .collect()
    }

    #[test]
    fn file_names_round_trip() {
        for (shard, segment) in [(0, 0), (3, 1_000_000), (9999, u64::MAX)] {
            assert_eq!(
                parse_file_name(&file_name(shard, segment)),
                Some((shard, segment))
            );
            let temp = file_name(shard, segment).replace(".idx", ".tmp");
            assert_eq!(parse_file_name(&temp), Some((shard, segment)));
        }
        for bad in [
            "INDEX",
            "seg-1-2.idx",
            "seg-0000-1234.idx",
            "seg-000a-00000000000000000001.idx",
            "seg-0000-00000000000000000001.txt",
        ] {
            assert_eq!(parse_file_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_table_place_is_only_a_hint() {
        let (index, chats) = file();
        // Chat 10k has k runs: its slot is k - 1, its first run k(k - 1)/2.
        let hints: Vec<(usize, usize)> = (0..10).map(|k| (k, k * (k + 1) / 2)).collect();
        for (slot, (chat, expected)) in chats.iter().enumerate() {
            assert_eq!(index.search(*chat), Some(hints[slot]));
            assert_eq!(&runs(&index, index.runs_of(*chat, hints[slot])), expected);
            // Every other chat's place, places inside tables and past the body's end, and
            // places whose arithmetic overflows.
            let wrong = hints
                .iter()
                .copied()
                .chain([(0, 1), (slot, hints[slot].1 + 1), (slot + 1, hints[slot].1)])
                .chain([
                    (10, 55),
                    (1_000, 0),
                    (usize::MAX / 2, 3),
                    (2, usize::MAX / 2),
                ]);
            for hint in wrong {
                assert_eq!(
                    &runs(&index, index.runs_of(*chat, hint)),
                    expected,
                    "{chat:?} at {hint:?}"
                );
            }
        }
        // A chat with no runs here: none, whatever the hint says.
        for absent in [5u128, 15, 105] {
            for hint in hints.iter().copied().chain([(10, 55), (0, 1)]) {
                assert_eq!(index.runs_of(ChatId::from_u128(absent), hint).len(), 0);
            }
        }
    }

    #[test]
    fn a_table_whose_head_names_another_chat_is_not_read() {
        let (_, chats) = file();
        let mut body = encode(1, 2, 7, &chats);
        // The head of chat 30's table (slot 2, first run 3) renamed to chat 31: a file that
        // passed its checksum but disagrees with its directory answers nothing for chat 30
        // (the head is what a read trusts; the directory is not read when the head names the
        // chat asked for).
        let head = BODY_FIXED + 10 * DIRECTORY_ENTRY + 2 * TABLE_HEAD + 3 * RUN_BYTES;
        assert_eq!(body[head..head + 16], 30u128.to_le_bytes());
        body[head..head + 16].copy_from_slice(&31u128.to_le_bytes());
        let index = SegmentIndex::parse(Bytes::from(body), 1, 2, 7).unwrap();
        let thirty = ChatId::from_u128(30);
        assert_eq!(index.runs_of(thirty, (2, 3)).len(), 0);
        assert_eq!(index.runs_of(thirty, (0, 0)).len(), 0);
        assert_eq!(
            runs(&index, index.runs_of(ChatId::from_u128(40), (3, 6))).len(),
            4
        );
    }

    #[test]
    fn a_file_for_another_place_or_of_another_length_is_rejected() {
        let (_, chats) = file();
        let body = encode(1, 2, 7, &chats);
        assert!(SegmentIndex::parse(Bytes::from(body.clone()), 1, 2, 8).is_none());
        assert!(SegmentIndex::parse(Bytes::from(body.clone()), 1, 3, 7).is_none());
        assert!(SegmentIndex::parse(Bytes::from(body.clone()), 2, 2, 7).is_none());
        let short = Bytes::from(body[..body.len() - 1].to_vec());
        assert!(SegmentIndex::parse(short, 1, 2, 7).is_none());
    }
}
