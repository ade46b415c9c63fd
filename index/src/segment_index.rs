//! Per-segment index files: when a log segment seals, the runs of every chat in it are written
//! to one immutable file (like Kafka's `.index`) and leave memory. A chat keeps one small span
//! per sealed segment; queries load a segment's file on demand, through a bounded cache, and
//! rebuild it from the log if it is missing or damaged. Files go with their segments.
//!
//! `seg-{shard:04}-{segment:020}.idx`, little-endian:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | magic `MSVSEGIX` |
//! | 8 | 2 | version (1) |
//! | 10 | 2 | reserved (0) |
//! | 12 | 4 | CRC-32 of the body |
//! | 16 | 8 | body length |
//! | 24 | n | body: log id (8), shard (4), segment (8), chat count (4), then per chat in id order: id (16), run count (4), runs (52 each, as in checkpoints) |

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use missive_log::{ChatId, Log, Lsn, RecordKind, ShardId, Storage};
use parking_lot::Mutex;

use crate::chat::Run;
use crate::codec::Message;
use crate::error::Result;
use crate::wire::{Framed, RUN_BYTES, Reader, Writer, read_framed, write_framed};

const MAGIC: [u8; 8] = *b"MSVSEGIX";
const VERSION: u16 = 1;

/// Segment index files kept in memory at once.
pub const SEGMENT_INDEX_CACHE_MAX: usize = 64;

/// The runs of every chat in one sealed segment.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct SegmentIndex {
    /// Sorted by chat.
    chats: Vec<(ChatId, Vec<Run>)>,
}

impl SegmentIndex {
    pub(crate) fn runs_of(&self, chat: ChatId) -> &[Run] {
        match self.chats.binary_search_by_key(&chat, |(id, _)| *id) {
            Ok(at) => &self.chats[at].1,
            Err(_) => &[],
        }
    }
}

pub(crate) fn file_name(shard: u32, segment: u64) -> String {
    format!("seg-{shard:04}-{segment:020}.idx")
}

/// Writes a segment's index atomically (temp file, fsync, rename, fsync the folder).
pub(crate) fn write(
    storage: &dyn Storage,
    dir: &Path,
    log_id: u64,
    shard: u32,
    segment: u64,
    chats: &BTreeMap<ChatId, Vec<Run>>,
) -> Result<()> {
    let mut body = Writer(Vec::new());
    body.u64(log_id);
    body.u32(shard);
    body.u64(segment);
    body.u32(chats.len() as u32);
    for (chat, runs) in chats {
        body.u128(chat.to_u128());
        body.u32(runs.len() as u32);
        for run in runs {
            body.run(run);
        }
    }
    let path = dir.join(file_name(shard, segment));
    write_framed(storage, &path, MAGIC, VERSION, &body.0)
}

/// Reads a segment's index: `None` if the file is missing or fails any check.
fn load(
    storage: &dyn Storage,
    path: &Path,
    log_id: u64,
    shard: u32,
    segment: u64,
) -> Option<SegmentIndex> {
    let Ok(Framed::Body(bytes)) = read_framed(storage, path, MAGIC, VERSION) else {
        return None;
    };
    let mut r = Reader(&bytes);
    if (r.u64()?, r.u32()?, r.u64()?) != (log_id, shard, segment) {
        return None;
    }
    let mut chats = Vec::with_capacity(r.count(20)?);
    for _ in 0..chats.capacity() {
        let chat = ChatId::from_u128(r.u128()?);
        let runs = (0..r.count(RUN_BYTES)?)
            .map(|_| r.run())
            .collect::<Option<Vec<_>>>()?;
        chats.push((chat, runs));
    }
    let sorted = chats.windows(2).all(|pair| pair[0].0 < pair[1].0);
    (r.0.is_empty() && sorted).then_some(SegmentIndex { chats })
}

/// Rebuilds a segment's index by reading the segment from the log (empty if retention removed
/// it).
fn rebuild(log: &Log, shard: u32, segment: u64) -> Result<BTreeMap<ChatId, Vec<Run>>> {
    let mut chats: BTreeMap<ChatId, Vec<Run>> = BTreeMap::new();
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
            let runs = chats.entry(entry.record.chat).or_default();
            match runs.last_mut() {
                Some(last) if last.offset == pos.offset => last.last_seq = seq.0,
                _ => runs.push(Run {
                    first_seq: seq.0,
                    last_seq: seq.0,
                    first_ts: entry.record.timestamp.0,
                    segment,
                    offset: pos.offset,
                    first_lsn: entry.lsn.0,
                    body_offset: body_offset as u32,
                }),
            }
        }
    }
    Ok(chats)
}

/// A segment: its shard and first LSN.
type SegmentKey = (u32, u64);

/// Loaded segment indexes, at most [`SEGMENT_INDEX_CACHE_MAX`], oldest loaded evicted first.
/// It is a cache: cloning an index starts it empty, and it never counts in equality.
#[derive(Debug, Default)]
pub(crate) struct SegmentCache {
    loaded: Mutex<VecDeque<(SegmentKey, Arc<SegmentIndex>)>>,
}

impl Clone for SegmentCache {
    fn clone(&self) -> SegmentCache {
        SegmentCache::default()
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
        if let Some((_, index)) = self.loaded.lock().iter().find(|(k, _)| *k == key) {
            return Ok(Arc::clone(index));
        }
        let path: PathBuf = dir.join(file_name(shard, segment));
        let storage = log.storage();
        let index = match load(&**storage, &path, log.id(), shard, segment) {
            Some(index) => index,
            None => {
                let chats = rebuild(log, shard, segment)?;
                let _ = write(&**storage, dir, log.id(), shard, segment, &chats);
                SegmentIndex {
                    chats: chats.into_iter().collect(),
                }
            }
        };
        let index = Arc::new(index);
        let mut loaded = self.loaded.lock();
        if loaded.len() == SEGMENT_INDEX_CACHE_MAX {
            loaded.pop_front();
        }
        loaded.push_back((key, Arc::clone(&index)));
        Ok(index)
    }

    /// Forgets a segment (retention removed it).
    pub(crate) fn forget(&self, shard: u32, segment: u64) {
        self.loaded
            .lock()
            .retain(|(key, _)| *key != (shard, segment));
    }
}
