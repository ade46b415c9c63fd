//! The index: applies log records in LSN order and answers queries by reading a handful of
//! batches back from the log.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use missive_log::{
    BatchPos, ChatId, DecodedBatch, DeviceId, Entry, Log, Lsn, Record, RecordKind, RecordRef,
    SegmentInfo, Seq, ShardId, Storage, Timestamp, UserId,
};

use crate::chat::{ActiveRuns, Chat, Chats, Role, Run, SealedSpan, direct_side};
use crate::codec::{
    ChatState, GroupChange, GroupOp, Message, Payload, ReceiptKind, SnapshotMember,
};
use crate::dedup::{DEDUP_WINDOW_MS, Dedup, Sent, key_hash};
use crate::error::{Error, Result};
use crate::receipts::Receipts;
use crate::segment_index::{self, RunTable, SegmentCache, SegmentIndex, UnwrittenSegmentIndex};
use crate::tail::{TAIL_MESSAGES_MAX, TailCache, stored_view};

/// A message as a query returns it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessageView {
    /// Its log position.
    pub lsn: Lsn,
    /// Server time it was stored.
    pub timestamp: Timestamp,
    /// Deleted for everyone: media and body are empty.
    pub deleted: bool,
    /// The message (its `seq` names it within the chat).
    pub message: Message,
}

/// A chat holding messages a device has not received yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InboxEntry {
    /// The chat.
    pub chat: ChatId,
    /// Everything up to here was delivered to the device.
    pub delivered: Seq,
    /// The chat's newest message.
    pub head: Seq,
}

/// The state of one message for one recipient.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Status {
    /// Stored, not yet on any of the recipient's devices.
    Sent,
    /// On at least one of the recipient's devices.
    Delivered,
    /// Read by the recipient.
    Read,
}

/// How far a message got among a chat's recipients (everyone but its sender).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReceiptCounts {
    /// Recipients.
    pub recipients: u32,
    /// Of them, with the message on a device.
    pub delivered: u32,
    /// Of them, who read it.
    pub read: u32,
}

/// Where the index keeps its files: the log's storage and a folder. Not part of the index's
/// state (two indexes of one log are equal whatever folder they live in).
#[derive(Clone, Debug)]
pub(crate) struct Home {
    pub(crate) storage: Arc<dyn Storage>,
    pub(crate) dir: PathBuf,
}

impl PartialEq for Home {
    fn eq(&self, _: &Home) -> bool {
        true
    }
}

impl Eq for Home {}

/// The indexes over one log. See the [crate documentation](crate).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Index {
    pub(crate) log_id: u64,
    /// Per shard, the next LSN to apply.
    pub(crate) applied: Vec<Lsn>,
    /// Per shard, the segment of the last batch applied and the runs of chats in it.
    pub(crate) active: Vec<ActiveRuns>,
    pub(crate) chats: Chats,
    pub(crate) receipts: Receipts,
    /// Per shard, the recent `client_msg_id`s.
    pub(crate) dedup: Vec<Dedup>,
    /// How long the dedup memory reaches back (ms of server time), and how many sends it holds
    /// per shard at most.
    pub(crate) dedup_window_ms: u64,
    pub(crate) dedup_capacity: usize,
    pub(crate) home: Home,
    pub(crate) cache: SegmentCache,
    pub(crate) tails: TailCache,
}

/// A chat's runs in one segment: in memory (the active segment) or in a segment index file.
enum Runs<'a> {
    Memory(&'a [Run]),
    Table(Arc<SegmentIndex>, RunTable),
}

impl Runs<'_> {
    fn len(&self) -> usize {
        match self {
            Runs::Memory(runs) => runs.len(),
            Runs::Table(_, table) => table.len(),
        }
    }

    fn get(&self, at: usize) -> Option<Run> {
        match self {
            Runs::Memory(runs) => runs.get(at).copied(),
            Runs::Table(file, table) => file.run(*table, at),
        }
    }

    /// The first run for which `before` is false (runs are in seq order). A malformed run
    /// counts as "not before".
    fn partition_point(&self, before: impl Fn(&Run) -> bool) -> usize {
        let (mut low, mut high) = (0, self.len());
        while low < high {
            let middle = (low + high) / 2;
            if self.get(middle).is_some_and(|run| before(&run)) {
                low = middle + 1;
            } else {
                high = middle;
            }
        }
        low
    }
}

/// Runs a scan reads per group at most (the group's positions are kept in a vector).
const SCAN_GROUP_MAX: usize = 128;

/// What a scan reads: up to `limit` live messages of `chat` with seqs in `[low, high]`, walking
/// in `direction`, as visible at `now`.
#[derive(Clone, Copy, Debug)]
struct Scan {
    chat: ChatId,
    low: u64,
    high: u64,
    limit: usize,
    direction: Direction,
    now: Timestamp,
}

impl Scan {
    /// As visible at `now` (messages past their TTL are left out).
    fn new(
        direction: Direction,
        chat: ChatId,
        (low, high): (u64, u64),
        limit: usize,
        now: Timestamp,
    ) -> Scan {
        Scan {
            chat,
            low,
            high,
            limit,
            direction,
            now,
        }
    }
}

/// Which way a scan walks a chat.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Direction {
    Forward,
    Backward,
}

/// A chat's runs that meet `[low, high]`, in `direction`: the sealed spans' runs (from segment
/// index files, each opened only when the walk reaches it), then the active segment's.
struct RunWalk<'a> {
    index: &'a Index,
    chat: ChatId,
    shard: ShardId,
    low: u64,
    high: u64,
    direction: Direction,
    /// Sources not yet opened, in walk order: a sealed span, or `None` for the active runs.
    sources: std::vec::IntoIter<Option<&'a SealedSpan>>,
    /// The source being walked and the positions of its runs still to come, in walk order.
    runs: Option<(Runs<'a>, std::ops::Range<usize>)>,
    /// Sealed spans taken from `sources` ahead of the walk, with their segments' index files,
    /// whose tables are being loaded ([`RunWalk::open_ahead`]).
    ahead: VecDeque<(&'a SealedSpan, Arc<SegmentIndex>)>,
}

impl<'a> RunWalk<'a> {
    fn new(
        index: &'a Index,
        state: &'a Chat,
        chat: ChatId,
        shard: ShardId,
        low: u64,
        high: u64,
        direction: Direction,
    ) -> RunWalk<'a> {
        let sealed = state.sealed.as_slice();
        let spans = &sealed[sealed.partition_point(|s| s.last_seq < low)
            ..sealed.partition_point(|s| s.first_seq <= high)];
        let mut sources: Vec<Option<&SealedSpan>> = spans.iter().map(Some).collect();
        sources.push(None);
        if direction == Direction::Backward {
            sources.reverse();
        }
        RunWalk {
            index,
            chat,
            shard,
            low,
            high,
            direction,
            sources: sources.into_iter(),
            runs: None,
            ahead: VecDeque::new(),
        }
    }

    /// Opens, ahead of the walk, the next sealed spans that may hold `wanted` messages in
    /// `[low, high]` (at most [`AHEAD_MAX`]; never past the active runs), and starts loading
    /// their run tables together: a chat whose messages are spread over many segments then
    /// waits for about one memory round trip per group of segments, not a few per segment.
    fn open_ahead(&mut self, log: &Log, wanted: u64) -> Result<()> {
        /// Spans opened ahead at most.
        const AHEAD_MAX: usize = 32;
        let (low, high) = (self.low, self.high);
        let held = |span: &SealedSpan| {
            (span.last_seq.min(high)).saturating_sub(span.first_seq.max(low)) + 1
        };
        let mut covered: u64 = self.ahead.iter().map(|(span, _)| held(span)).sum();
        while covered < wanted && self.ahead.len() < AHEAD_MAX {
            let Some(&Some(span)) = self.sources.as_slice().first() else {
                break;
            };
            self.sources.next();
            let index = self.index;
            let file = index
                .cache
                .get(log, &index.home.dir, self.shard.0, span.segment)?;
            file.prefetch_table(span.table_hint());
            covered = covered.saturating_add(held(span));
            self.ahead.push_back((span, file));
        }
        Ok(())
    }

    /// The next run, or `None` when the walk is over.
    fn next(&mut self, log: &Log) -> Result<Option<Run>> {
        loop {
            if let Some((runs, left)) = &mut self.runs {
                let at = match self.direction {
                    Direction::Forward => left.next(),
                    Direction::Backward => left.next_back(),
                };
                match at.map(|at| runs.get(at)) {
                    Some(Some(run)) => return Ok(Some(run)),
                    // A malformed run in a file: skipped, as the read of its batch would be.
                    Some(None) => continue,
                    None => self.runs = None,
                }
            }
            let index = self.index;
            let runs = if let Some((span, segment)) = self.ahead.pop_front() {
                let table = segment.runs_of(self.chat, span.table_hint());
                Runs::Table(segment, table)
            } else {
                match self.sources.next() {
                    None => return Ok(None),
                    Some(Some(span)) => {
                        let segment =
                            index
                                .cache
                                .get(log, &index.home.dir, self.shard.0, span.segment)?;
                        let table = segment.runs_of(self.chat, span.table_hint());
                        Runs::Table(segment, table)
                    }
                    Some(None) => Runs::Memory(index.active[self.shard.0 as usize].of(self.chat)),
                }
            };
            let from = runs.partition_point(|run| run.last_seq < self.low);
            let to = runs.partition_point(|run| run.first_seq <= self.high);
            self.runs = Some((runs, from..to.max(from)));
        }
    }
}

impl Index {
    /// An empty index for `log` keeping its files in `dir`, with nothing applied.
    pub fn empty(log: &Log, dir: &Path) -> Index {
        Index {
            log_id: log.id(),
            applied: vec![Lsn::FIRST; log.shard_count() as usize],
            active: vec![ActiveRuns::default(); log.shard_count() as usize],
            chats: Chats::default(),
            receipts: Receipts::default(),
            dedup: vec![Dedup::default(); log.shard_count() as usize],
            dedup_window_ms: DEDUP_WINDOW_MS,
            dedup_capacity: crate::dedup::DEDUP_CAPACITY,
            home: Home {
                storage: Arc::clone(log.storage()),
                dir: dir.to_path_buf(),
            },
            cache: SegmentCache::default(),
            tails: TailCache::default(),
        }
    }

    /// The index's folder.
    pub fn dir(&self) -> &Path {
        &self.home.dir
    }

    /// Per shard, the next LSN the index will apply: it reflects everything before.
    pub fn applied(&self) -> &[Lsn] {
        &self.applied
    }

    /// Applies every record of `log` after what the index reflects. Returns the records applied.
    pub fn catch_up(&mut self, log: &Log) -> Result<u64> {
        let mut applied = 0;
        for shard in 0..log.shard_count() {
            let from = self.applied[shard as usize];
            for batch in log.batches_from(ShardId(shard), from)? {
                let (pos, batch) = batch?;
                applied += self.apply_batch(pos, &batch)?;
            }
        }
        Ok(applied)
    }

    /// Applies one batch read from the log; records already applied are skipped. Returns the
    /// records applied.
    pub fn apply_batch(&mut self, pos: BatchPos, batch: &DecodedBatch) -> Result<u64> {
        self.apply_batch_observed(pos, batch, |_, _| {})
    }

    /// [`apply_batch`](Index::apply_batch), calling `observe` after each record is applied with
    /// the index as it stands right after that record: for a message, the group's members then
    /// are its recipients.
    pub fn apply_batch_observed(
        &mut self,
        pos: BatchPos,
        batch: &DecodedBatch,
        mut observe: impl FnMut(&Index, &Entry),
    ) -> Result<u64> {
        let shard = pos.shard.0 as usize;
        if pos.segment > self.active[shard].segment {
            // The log moved to a new segment, so the previous one is sealed.
            if self.active[shard].segment != 0 {
                self.seal(pos.shard.0)?;
            }
            self.active[shard].segment = pos.segment;
        }
        let mut applied = 0;
        let mut entries = batch.entries();
        loop {
            let body_offset = entries.body_offset();
            let Some(entry) = entries.next() else { break };
            if entry.lsn < self.applied[shard] {
                continue;
            }
            self.apply(pos, body_offset..entries.body_offset(), &entry)?;
            self.applied[shard] = Lsn(entry.lsn.0 + 1);
            applied += 1;
            observe(self, &entry);
        }
        Ok(applied)
    }

    /// Moves the runs of the shard's active segment to that segment's index file, leaving one
    /// span per chat in memory. The file is durable before anything refers to it.
    fn seal(&mut self, shard: u32) -> Result<()> {
        let active = &mut self.active[shard as usize];
        let segment = active.segment;
        let shard_count = self.applied.len() as u32;
        // Only the chats the segment touched: walking every chat cost rebuilds an eighth.
        let file: BTreeMap<ChatId, Vec<Run>> = std::mem::take(&mut active.runs)
            .into_iter()
            .filter(|(_, runs)| !runs.is_empty())
            .collect();
        let mut first_run = 0u32;
        for (slot, (id, runs)) in file.iter().enumerate() {
            let runs_before = first_run;
            first_run = first_run.saturating_add(runs.len() as u32);
            debug_assert_eq!(id.shard(shard_count).0, shard);
            debug_assert!(runs.iter().all(|run| run.segment == segment));
            let Some(chat) = self.chats.get_mut(*id) else {
                continue;
            };
            let (first, last) = (runs[0], runs[runs.len() - 1]);
            chat.sealed.push(SealedSpan {
                segment,
                first_seq: first.first_seq,
                last_seq: last.last_seq,
                first_ts: first.first_ts,
                // The file's directory and tables list the chats in key order, as `file`
                // holds them.
                slot: slot as u32,
                first_run: runs_before,
            });
        }
        let home = &self.home;
        self.cache.sealed(
            (&home.storage, &home.dir),
            self.log_id,
            shard,
            segment,
            &file,
        )
    }

    /// Whether sealing a segment leaves its index file to the caller (default: no, the file
    /// is written when the segment seals, inside whatever call applied the batch that sealed
    /// it). An embedder that applies under a lock sets it: the file of a 256 MiB segment takes
    /// hundreds of milliseconds to encode, write and fsync, and every reader and writer of the
    /// index would wait. Until written, the segment's index is kept in memory (queries read
    /// it there); a crash before it is written only means rebuilding it from the log.
    pub fn defer_segment_files(&mut self, defer: bool) {
        self.cache.set_defer_writes(defer);
    }

    /// Whether segment index files wait to be written (one relaxed load).
    pub fn has_unwritten_segment_files(&self) -> bool {
        self.cache.has_unwritten()
    }

    /// The segment index files waiting to be written, oldest first: write each with
    /// [`UnwrittenSegmentIndex::write`] (no lock on the index needed), then call
    /// [`Index::segment_file_written`].
    pub fn unwritten_segment_files(&self) -> Vec<UnwrittenSegmentIndex> {
        self.cache.unwritten((&self.home.storage, &self.home.dir))
    }

    /// Records that `file` was written: its in-memory index is let go (queries map the file).
    pub fn segment_file_written(&self, file: &UnwrittenSegmentIndex) {
        let (shard, segment) = file.segment();
        self.cache.written(shard, segment);
    }

    fn apply(&mut self, pos: BatchPos, body: std::ops::Range<usize>, entry: &Entry) -> Result<()> {
        let record = &entry.record;
        let bad = |reason| Error::BadRecord {
            shard: pos.shard.0,
            lsn: entry.lsn.0,
            reason,
        };
        let payload =
            Payload::decode(record.kind, &record.payload).ok_or(bad("malformed payload"))?;
        let chat_id = record.chat;
        match payload {
            Payload::Message(message) => {
                let chat = self.chats.entry(chat_id);
                let seq = message.seq.0;
                // Seqs only rise. They are dense, with two exceptions: after retention a rebuild
                // first sees a later seq, and an append that failed (a full disk) leaves a hole
                // when later sends of the chat were already on their way.
                if seq <= chat.head {
                    return Err(Error::SeqOutOfOrder {
                        chat: chat_id.to_u128(),
                        seq,
                        head: chat.head,
                    });
                }
                let first_seen = chat.head == 0;
                chat.head = seq;
                self.active[pos.shard.0 as usize].push(
                    chat_id,
                    seq,
                    record.timestamp.0,
                    pos,
                    entry.lsn.0,
                    body,
                );
                let hash = key_hash(
                    self.dedup_secret(),
                    chat_id,
                    message.sender,
                    message.client_msg_id,
                );
                self.dedup[pos.shard.0 as usize].remember(
                    hash,
                    seq,
                    record.timestamp.0,
                    self.dedup_window_ms,
                    self.dedup_capacity,
                );
                self.tails.push(chat_id, || {
                    stored_view(entry.lsn, record.timestamp, message.clone())
                });
                // A 1:1 chat joins its users' lists with its first message (once: rebuilds
                // spent a tenth of their time re-inserting it on every message).
                if first_seen && let Some((a, b)) = chat_id.direct_users() {
                    self.receipts.join_direct(a, b);
                }
                // Sending implies having read (and, on the sending device, received) the chat
                // up to one's own message: for its users (a group's members at this point; a
                // system message is sent by whoever changed the group, maybe not a member).
                // Delivered only if the device had everything before it: a device that sends
                // while behind must still receive what came before its message.
                if self.is_member(chat_id, message.sender) {
                    self.raise_read(message.sender, chat_id, seq);
                    let (user, device) = (message.sender, message.sender_device);
                    if self.delivered_in_chat(user, device, chat_id) + 1 >= seq {
                        self.raise_delivered(user, device, chat_id, seq);
                    }
                }
            }
            Payload::Receipt(receipt) => {
                // Only the chat's users have watermarks in it: a receipt from anyone else (the
                // engine refuses to write one) changes nothing.
                let Some(head) = self.chats.get(chat_id).map(|chat| chat.head) else {
                    return Ok(());
                };
                if !self.is_member(chat_id, receipt.user) {
                    return Ok(());
                }
                let up_to = receipt.up_to.0.min(head);
                self.raise_delivered(receipt.user, receipt.device, chat_id, up_to);
                if receipt.kind == ReceiptKind::Read {
                    self.raise_read(receipt.user, chat_id, up_to);
                }
            }
            Payload::Tombstone(tombstone) => {
                self.chats.entry(chat_id).mark_deleted(tombstone.seq.0);
            }
            Payload::Expiry(expiry) => {
                let chat = self.chats.entry(chat_id);
                if expiry.ttl_ms != chat.ttl_ms() {
                    chat.extra_mut().ttl_ms = expiry.ttl_ms;
                }
            }
            Payload::GroupChange(change) => self.apply_group_change(chat_id, &change),
            Payload::Snapshot(state) => self.apply_snapshot(chat_id, pos.shard, &state),
        }
        Ok(())
    }

    /// Restores what a snapshot summarises. Over a live index it changes nothing (it was
    /// written from this state, and state only moves forward); over a rebuild from a log whose
    /// older records retention removed, it brings back the head, members, setting, deletions
    /// and watermarks those records carried.
    fn apply_snapshot(&mut self, chat_id: ChatId, shard: ShardId, state: &ChatState) {
        let chat = self.chats.entry(chat_id);
        let first_seen = chat.head == 0 && state.head.0 > 0;
        chat.head = chat.head.max(state.head.0);
        if state.ttl_ms != chat.ttl_ms() {
            chat.extra_mut().ttl_ms = state.ttl_ms;
        }
        for seq in &state.deleted {
            chat.mark_deleted(seq.0);
        }
        if let Some(members) = &state.members {
            let now: BTreeMap<UserId, Role> = members
                .iter()
                .map(|m| (m.user, if m.admin { Role::Admin } else { Role::Member }))
                .collect();
            let extra = chat.extra_mut();
            extra.joined = members.iter().map(|m| (m.user, m.joined.0)).collect();
            let before = extra.members.replace(now.clone()).unwrap_or_default();
            for user in before.keys().filter(|u| !now.contains_key(u)) {
                self.receipts.leave_group(*user, chat_id);
                self.forget(*user, chat_id);
            }
            for user in now.keys() {
                self.receipts.join_group(*user, chat_id);
            }
        }
        if first_seen && let Some((a, b)) = chat_id.direct_users() {
            self.receipts.join_direct(a, b);
        }
        for (user, seq) in &state.read {
            self.raise_read(*user, chat_id, seq.0);
        }
        for (user, device, seq) in &state.delivered {
            self.raise_delivered(*user, *device, chat_id, seq.0);
        }
        let _ = shard;
    }

    /// The snapshot of a chat's state, as applying a snapshot record restores it.
    pub fn chat_state(&self, chat_id: ChatId) -> Option<ChatState> {
        let chat = self.chats.get(chat_id)?;
        let members = chat.members().map(|members| {
            members
                .iter()
                .map(|(user, role)| SnapshotMember {
                    user: *user,
                    admin: *role == Role::Admin,
                    joined: Seq(chat.joined(*user)),
                })
                .collect()
        });
        let users: Vec<UserId> = match (chat_id.direct_users(), chat.members()) {
            (Some((a, b)), _) if a == b => vec![a],
            (Some((a, b)), _) => vec![a, b],
            (None, Some(members)) => members.keys().copied().collect(),
            (None, None) => Vec::new(),
        };
        let read = users
            .iter()
            .map(|user| (*user, self.read_up_to(*user, chat_id)))
            .filter(|(_, seq)| seq.0 > 0)
            .collect();
        // Per user, the inline watermark (the lowest device) first, then the map's.
        let mut delivered = Vec::new();
        for user in &users {
            if let Some(side) = direct_side(chat_id, *user)
                && let Some((device, seq)) = chat.inline_delivered_entry(side)
            {
                delivered.push((*user, device, Seq(seq)));
            }
            delivered.extend(
                self.receipts
                    .delivered_in(chat_id, std::slice::from_ref(user)),
            );
        }
        Some(ChatState {
            head: Seq(chat.head),
            ttl_ms: chat.ttl_ms(),
            members,
            read,
            delivered,
            deleted: chat.deleted().iter().map(|seq| Seq(*seq)).collect(),
        })
    }

    /// Whether `user` is in the chat now: one of a 1:1 chat's two users, a group's member.
    pub fn is_member(&self, chat: ChatId, user: UserId) -> bool {
        match chat.direct_users() {
            Some(_) => direct_side(chat, user).is_some(),
            None => self
                .chats
                .get(chat)
                .and_then(Chat::members)
                .is_some_and(|members| members.contains_key(&user)),
        }
    }

    /// Raises `user`'s read watermark in the chat: inline in a 1:1 chat (ignored for anyone but
    /// its two users), in the receipts' map for a group.
    fn raise_read(&mut self, user: UserId, chat_id: ChatId, to: u64) {
        if chat_id.is_direct() {
            if let (Some(side), Some(chat)) =
                (direct_side(chat_id, user), self.chats.get_mut(chat_id))
            {
                chat.read[side] = chat.read[side].max(to);
            }
        } else {
            self.receipts.raise_group_read(user, chat_id, to);
        }
    }

    /// Raises the device's delivered watermark in the chat: inline in a 1:1 chat for each
    /// user's lowest device (see [`Chat::delivered`]), in the receipts' map otherwise.
    fn raise_delivered(&mut self, user: UserId, device: DeviceId, chat_id: ChatId, to: u64) {
        if to == 0 {
            return;
        }
        if let Some(side) = direct_side(chat_id, user)
            && let Some(chat) = self.chats.get_mut(chat_id)
        {
            if let Some((device, to)) = chat.raise_inline_delivered(side, device, to) {
                self.receipts.raise_delivered(user, device, chat_id, to);
            }
            return;
        }
        self.receipts.raise_delivered(user, device, chat_id, to);
    }

    /// The device's delivered watermark in the chat.
    fn delivered_in_chat(&self, user: UserId, device: DeviceId, chat_id: ChatId) -> u64 {
        self.delivered_with(self.chats.get(chat_id), user, device, chat_id)
    }

    /// [`delivered_in_chat`](Index::delivered_in_chat) with the chat already looked up.
    fn delivered_with(
        &self,
        state: Option<&Chat>,
        user: UserId,
        device: DeviceId,
        chat_id: ChatId,
    ) -> u64 {
        if let (Some(side), Some(chat)) = (direct_side(chat_id, user), state)
            && let Some(seq) = chat.inline_delivered(side, device)
        {
            return seq;
        }
        self.receipts.delivered(user, device, chat_id)
    }

    /// Forgets the user's delivered watermarks in the chat (see [`Receipts::forget`]).
    fn forget(&mut self, user: UserId, chat_id: ChatId) {
        self.receipts.forget(user, chat_id);
        if let Some(side) = direct_side(chat_id, user)
            && let Some(chat) = self.chats.get_mut(chat_id)
        {
            chat.clear_inline_delivered(side);
        }
    }

    fn apply_group_change(&mut self, chat_id: ChatId, change: &GroupChange) {
        let chat = self.chats.entry(chat_id);
        let head = chat.head;
        let extra = chat.extra_mut();
        let members = extra.members.get_or_insert_with(BTreeMap::new);
        let mut joined = Vec::new();
        let mut left = Vec::new();
        let mut join = |user: UserId, role: Role| {
            if let std::collections::btree_map::Entry::Vacant(slot) = members.entry(user) {
                slot.insert(role);
                joined.push(user);
            }
        };
        match change.op {
            GroupOp::Create => {
                join(change.by, Role::Admin);
                for user in &change.users {
                    join(*user, Role::Member);
                }
            }
            GroupOp::Add => {
                for user in &change.users {
                    join(*user, Role::Member);
                }
            }
            GroupOp::Remove => {
                for user in &change.users {
                    if members.remove(user).is_some() {
                        left.push(*user);
                    }
                }
            }
            GroupOp::Promote | GroupOp::Demote => {
                let role = if change.op == GroupOp::Promote {
                    Role::Admin
                } else {
                    Role::Member
                };
                for user in &change.users {
                    if let Some(current) = members.get_mut(user) {
                        *current = role;
                    }
                }
            }
        }
        for user in &joined {
            extra.joined.insert(*user, head);
            self.receipts.join_group(*user, chat_id);
        }
        for user in &left {
            extra.joined.remove(user);
        }
        for user in &left {
            self.receipts.leave_group(*user, chat_id);
            self.forget(*user, chat_id);
        }
    }

    /// Applies retention to the log and the index together. Before any segment goes, writes a
    /// snapshot record of every chat with records in it (heads, members, settings, deletions and
    /// watermarks live on in the log, so a rebuild without the checkpoint restores them, and
    /// seqs are never reused), then checkpoints, then deletes exactly the segments prepared for
    /// (sealed, window ended by `cutoff`), then drops the runs that pointed into them. Returns
    /// the segments removed.
    ///
    /// Always retain through here rather than [`Log::retain`] directly.
    pub fn retain(&mut self, log: &Log, cutoff: Timestamp) -> Result<usize> {
        self.catch_up(log)?;
        let at = (0..log.shard_count())
            .map(|shard| self.newest_message_time(ShardId(shard)))
            .max()
            .unwrap_or(cutoff)
            .max(cutoff);
        self.retain_with(log, cutoff, at, |index, records| -> Result<()> {
            let tickets = records
                .into_iter()
                .map(|record| log.append(record))
                .collect::<missive_log::Result<Vec<_>>>()?;
            for ticket in tickets {
                ticket.wait()?;
            }
            index.catch_up(log)?;
            Ok(())
        })
    }

    /// [`retain`](Index::retain) for a caller that writes to and applies the log itself (the
    /// engine, which publishes each record as it applies it): `write` must append the snapshot
    /// records it is given, wait until they are durable and apply everything up to them.
    /// Writing them may seal the active segment and make it due too; that one is prepared for in
    /// a second round.
    pub fn retain_with<E: From<Error>>(
        &mut self,
        log: &Log,
        cutoff: Timestamp,
        at: Timestamp,
        mut write: impl FnMut(&mut Index, Vec<Record>) -> std::result::Result<(), E>,
    ) -> std::result::Result<usize, E> {
        let mut prepared: Vec<(ShardId, u64)> = Vec::new();
        loop {
            let due: Vec<(ShardId, SegmentInfo, u64)> = self
                .due_segments(log, cutoff)?
                .into_iter()
                .filter(|(shard, segment, _)| !prepared.contains(&(*shard, segment.first_lsn)))
                .collect();
            if due.is_empty() {
                break;
            }
            let records = self.snapshots_of(log, &due, at)?;
            prepared.extend(
                due.iter()
                    .map(|(shard, segment, _)| (*shard, segment.first_lsn)),
            );
            write(self, records)?;
        }
        if prepared.is_empty() {
            return Ok(0);
        }
        self.checkpoint()?;
        let removed = log
            .retain_segments(&prepared)
            .map_err(Error::from)?
            .segments_removed;
        self.prune_removed(log)?;
        Ok(removed)
    }

    /// The sealed segments whose window ended by `cutoff`, with the first LSN after each.
    fn due_segments(
        &self,
        log: &Log,
        cutoff: Timestamp,
    ) -> Result<Vec<(ShardId, SegmentInfo, u64)>> {
        let mut due = Vec::new();
        for shard in 0..log.shard_count() {
            let segments = log.segments(ShardId(shard))?;
            for (i, segment) in segments.iter().enumerate() {
                if segment.sealed
                    && segment.window_start_ms.saturating_add(segment.window_ms) <= cutoff.0
                {
                    let end = segments.get(i + 1).map_or(u64::MAX, |next| next.first_lsn);
                    due.push((ShardId(shard), segment.clone(), end));
                }
            }
        }
        Ok(due)
    }

    /// One snapshot record, stamped `at`, per chat with any record in these segments (read for
    /// the last time: they are about to go).
    fn snapshots_of(
        &self,
        log: &Log,
        segments: &[(ShardId, SegmentInfo, u64)],
        at: Timestamp,
    ) -> Result<Vec<Record>> {
        let mut chats = BTreeSet::new();
        for (shard, segment, end) in segments {
            for batch in log.batches_from(*shard, Lsn(segment.first_lsn))? {
                let (_, batch) = batch?;
                if batch.header.first_lsn.0 >= *end {
                    break;
                }
                chats.extend(batch.entries().map(|entry| entry.record.chat));
            }
        }
        Ok(chats
            .into_iter()
            .filter_map(|chat| {
                let payload = Payload::Snapshot(self.chat_state(chat)?);
                Some(Record {
                    kind: payload.kind(),
                    chat,
                    timestamp: at,
                    payload: payload.encode(),
                })
            })
            .collect())
    }

    /// Drops what points into segments retention removed, and their index files. Returns the
    /// spans and runs dropped.
    pub(crate) fn prune_removed(&mut self, log: &Log) -> Result<usize> {
        let mut live: Vec<BTreeSet<u64>> = Vec::with_capacity(log.shard_count() as usize);
        for shard in 0..log.shard_count() {
            live.push(
                log.segments(ShardId(shard))?
                    .iter()
                    .map(|s| s.first_lsn)
                    .collect(),
            );
        }
        let mut dropped = 0;
        let mut gone = BTreeSet::new();
        for (shard, active) in self.active.iter_mut().enumerate() {
            if !live[shard].contains(&active.segment) {
                dropped += active.runs.values().map(Vec::len).sum::<usize>();
                active.runs.clear();
            }
        }
        for (chat_id, chat) in self.chats.iter_mut() {
            let shard = log.shard_of(chat_id).0;
            let before = chat.sealed.len();
            chat.sealed.retain(|span| {
                let keep = live[shard as usize].contains(&span.segment);
                if !keep {
                    gone.insert((shard, span.segment));
                }
                keep
            });
            dropped += before - chat.sealed.len();
        }
        // Files of no live segment that no span names (written by a thread of a dropped engine
        // after its segment was removed, or the temporary of a write a crash cut short).
        let names = match self.home.storage.list_dir(&self.home.dir) {
            Ok(names) => names,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(error) => {
                return Err(Error::Io {
                    op: "list",
                    path: self.home.dir.clone(),
                    source: error,
                });
            }
        };
        for name in names {
            let Some((shard, segment)) = segment_index::parse_file_name(&name) else {
                continue;
            };
            let orphan = name.ends_with(".tmp")
                || live
                    .get(shard as usize)
                    .is_none_or(|segments| !segments.contains(&segment));
            if orphan {
                self.remove_file_if_present(&self.home.dir.join(&name))?;
            }
        }
        for (shard, segment) in gone {
            self.cache.forget(shard, segment);
            self.tails.clear();
            let path = self.home.dir.join(segment_index::file_name(shard, segment));
            self.remove_file_if_present(&path)?;
        }
        Ok(dropped)
    }

    /// Removes a file of the index's folder; one already gone is fine.
    fn remove_file_if_present(&self, path: &Path) -> Result<()> {
        match self.home.storage.remove_file(path) {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => Err(Error::Io {
                op: "remove",
                path: path.to_path_buf(),
                source: error,
            }),
            _ => Ok(()),
        }
    }

    // ---- queries -------------------------------------------------------------------------

    /// What `sender` stored in `chat` under `client_msg_id`, if it is still remembered (see
    /// [`DEDUP_WINDOW_MS`]). The memory holds a hash of the key; the stored message at the seq
    /// it names is read and must carry the same sender and client id (a message deleted for
    /// everyone or past its TTL still counts: the retry is answered, nothing is stored again).
    pub fn find_sent(
        &self,
        log: &Log,
        chat: ChatId,
        sender: UserId,
        client_msg_id: [u8; 16],
    ) -> Result<Option<Sent>> {
        let shard = log.shard_of(chat).0 as usize;
        let hash = key_hash(self.dedup_secret(), chat, sender, client_msg_id);
        let Some(seq) = self.dedup.get(shard).and_then(|dedup| dedup.get(hash)) else {
            return Ok(None);
        };
        // `now` 0: nothing has expired yet, so a message past its TTL is still found.
        let stored = self.scan(
            log,
            Scan::new(Direction::Forward, chat, (seq, seq), 1, Timestamp(0)),
        )?;
        Ok(stored
            .into_iter()
            .find(|view| {
                view.message.seq.0 == seq
                    && view.message.sender == sender
                    && view.message.client_msg_id == client_msg_id
            })
            .map(|view| Sent {
                seq,
                timestamp: view.timestamp.0,
            }))
    }

    /// The secret key of the dedup memory's hash: derived from the log's random id, which
    /// never leaves the server.
    fn dedup_secret(&self) -> u64 {
        key_hash(
            self.log_id,
            ChatId::from_u128(0),
            UserId(0),
            *b"missive-dedup-v1",
        )
    }

    /// The newest timestamp of a message applied in `shard` (0: none): where the engine's
    /// timestamps for the shard continue from, so they never go backwards.
    pub fn newest_message_time(&self, shard: ShardId) -> Timestamp {
        Timestamp(self.dedup.get(shard.0 as usize).map_or(0, |d| d.newest))
    }

    /// The chat's newest message's seq (0: none).
    pub fn head(&self, chat: ChatId) -> Seq {
        Seq(self.chats.get(chat).map_or(0, |c| c.head))
    }

    /// The chat's disappearing-messages setting (0: off).
    pub fn chat_ttl_ms(&self, chat: ChatId) -> u64 {
        self.chats.get(chat).map_or(0, Chat::ttl_ms)
    }

    /// A group's members and roles (`None` for a chat that is not a group).
    pub fn members(&self, chat: ChatId) -> Option<&BTreeMap<UserId, Role>> {
        self.chats.get(chat)?.members()
    }

    /// The chats a user is in: 1:1 chats, then groups, each in id order.
    pub fn chats_of(&self, user: UserId) -> impl Iterator<Item = ChatId> + '_ {
        self.receipts.chats_of(user)
    }

    /// The message at `seq`, unless it never existed, expired or its segment was removed.
    pub fn message(
        &self,
        log: &Log,
        chat: ChatId,
        seq: Seq,
        now: Timestamp,
    ) -> Result<Option<MessageView>> {
        Ok(self
            .scan(
                log,
                Scan::new(Direction::Forward, chat, (seq.0, seq.0), 1, now),
            )?
            .pop())
    }

    /// The newest `n` messages, oldest first.
    pub fn latest(
        &self,
        log: &Log,
        chat: ChatId,
        n: usize,
        now: Timestamp,
    ) -> Result<Vec<MessageView>> {
        let Some(state) = self.chats.get(chat) else {
            return Ok(Vec::new());
        };
        let visible = |stored: &MessageView| restyle(state, stored, now);
        if let Some(cached) = self.tails.latest(chat, state.head, n, visible) {
            return Ok(cached);
        }
        // Read the newest messages as stored (no TTL filter), keep them as the chat's tail,
        // and answer from them when they are enough.
        let want = n.max(TAIL_MESSAGES_MAX);
        let stored = self.scan(
            log,
            Scan::new(Direction::Backward, chat, (1, u64::MAX), want, Timestamp(0)),
        )?;
        self.tails.fill(chat, state.head, &stored);
        let answered = self
            .tails
            .latest(chat, state.head, n, |m| restyle(state, m, now));
        match answered {
            Some(answer) => Ok(answer),
            None => self.scan(
                log,
                Scan::new(Direction::Backward, chat, (1, u64::MAX), n, now),
            ),
        }
    }

    /// Up to `n` messages before `seq`, oldest first.
    pub fn before(
        &self,
        log: &Log,
        chat: ChatId,
        seq: Seq,
        n: usize,
        now: Timestamp,
    ) -> Result<Vec<MessageView>> {
        if seq.0 <= 1 {
            return Ok(Vec::new());
        }
        self.scan(
            log,
            Scan::new(Direction::Backward, chat, (1, seq.0 - 1), n, now),
        )
    }

    /// Up to `n` messages after `seq`, oldest first.
    pub fn after(
        &self,
        log: &Log,
        chat: ChatId,
        seq: Seq,
        n: usize,
        now: Timestamp,
    ) -> Result<Vec<MessageView>> {
        self.scan(
            log,
            Scan::new(
                Direction::Forward,
                chat,
                (seq.0.saturating_add(1), u64::MAX),
                n,
                now,
            ),
        )
    }

    /// Up to `n` messages around time `t`: half stored before it, the rest at or after it,
    /// oldest first. Finds its place through the runs' first timestamps (the sparse time index)
    /// and a batch or two.
    pub fn around(
        &self,
        log: &Log,
        chat: ChatId,
        t: Timestamp,
        n: usize,
        now: Timestamp,
    ) -> Result<Vec<MessageView>> {
        let pivot = self.first_at_or_after(log, chat, t)?;
        let mut out = self.before(log, chat, Seq(pivot), n / 2, now)?;
        let rest = n - out.len();
        out.extend(self.scan(
            log,
            Scan::new(Direction::Forward, chat, (pivot, u64::MAX), rest, now),
        )?);
        Ok(out)
    }

    /// The seq of the chat's first message stored at or after `t` (head + 1 if none).
    fn first_at_or_after(&self, log: &Log, chat: ChatId, t: Timestamp) -> Result<u64> {
        let Some(state) = self.chats.get(chat) else {
            return Ok(1);
        };
        // Timestamps never go backwards within a chat, so the first message at or after `t` is
        // in the last span (or active run) starting at or before `t`, or first in the next one.
        let mut starts: Vec<(u64, u64, u64)> = state
            .sealed
            .as_slice()
            .iter()
            .map(|s| (s.first_ts, s.first_seq, s.last_seq))
            .collect();
        let shard = log.shard_of(chat).0 as usize;
        starts.extend(
            self.active[shard]
                .of(chat)
                .iter()
                .map(|r| (r.first_ts, r.first_seq, r.last_seq)),
        );
        let from = starts
            // The last span starting *before* `t`: messages stored in the same millisecond as
            // `t` may begin in it (several batches can share a millisecond).
            .partition_point(|(ts, ..)| *ts < t.0)
            .saturating_sub(1);
        for &(_, first_seq, last_seq) in &starts[from.min(starts.len())..] {
            let found = self.scan(
                log,
                Scan::new(
                    Direction::Forward,
                    chat,
                    (first_seq, last_seq),
                    usize::MAX,
                    Timestamp(0),
                ),
            )?;
            if let Some(message) = found.iter().find(|m| m.timestamp >= t) {
                return Ok(message.message.seq.0);
            }
        }
        Ok(state.head + 1)
    }

    /// Walks the chat's runs that meet `[low, high]` in `direction`, reading one batch per run,
    /// until `limit` live messages are found. Returns them oldest first.
    ///
    /// Runs are taken a group at a time, enough for the messages still wanted, and the group's
    /// first bytes in the log are touched together ([`Log::prefetch`]) before any is read: a
    /// chat whose messages lie one per batch across the log costs about one memory round trip
    /// per group instead of a few per message.
    fn scan(&self, log: &Log, scan: Scan) -> Result<Vec<MessageView>> {
        let mut out = Vec::with_capacity(scan.limit.min(SCAN_GROUP_MAX));
        self.scan_into(log, &scan, &mut out, |m| m)?;
        Ok(out)
    }

    /// [`Index::scan`], appending each message as `wrap` makes it to `out` (which may hold
    /// others before): a caller gathering messages of several chats copies none of them.
    fn scan_into<T>(
        &self,
        log: &Log,
        scan: &Scan,
        out: &mut Vec<T>,
        wrap: impl Fn(MessageView) -> T,
    ) -> Result<()> {
        let (chat, low, high) = (scan.chat, scan.low, scan.high);
        let (limit, direction, now) = (scan.limit, scan.direction, scan.now);
        let Some(state) = self.chats.get(chat) else {
            return Ok(());
        };
        if limit == 0 || low > high {
            return Ok(());
        }
        // Messages found are `out[base..]`.
        let base = out.len();
        let limit = base.saturating_add(limit);
        let shard = log.shard_of(chat);
        let mut walk = RunWalk::new(self, state, chat, shard, low, high, direction);
        let mut group: Vec<Run> = Vec::with_capacity(limit.min(SCAN_GROUP_MAX));
        let mut places = Vec::with_capacity(group.capacity());
        loop {
            group.clear();
            let mut expected = 0u64;
            let wanted = (limit - out.len()) as u64;
            walk.open_ahead(log, wanted)?;
            while expected < wanted && group.len() < SCAN_GROUP_MAX {
                let Some(run) = walk.next(log)? else {
                    break;
                };
                expected += (run.last_seq.min(high)).saturating_sub(run.first_seq.max(low)) + 1;
                group.push(run);
            }
            if group.is_empty() {
                break;
            }
            places.clear();
            places.extend(group.iter().map(|run| run.place(shard)));
            log.prefetch(places.iter().map(|(at, _)| *at));
            let mut failed = None;
            log.read_each(&places, |k, records| {
                let records = match records {
                    Ok(records) => records,
                    // Retention removed the segment: its messages are gone.
                    Err(missive_log::Error::NotFound { .. }) => return ControlFlow::Continue(()),
                    Err(error) => {
                        failed = Some(error);
                        return ControlFlow::Break(());
                    }
                };
                let last_seq = group[k].last_seq;
                let start = out.len();
                for record in records {
                    if record.chat != chat || record.kind != RecordKind::Message {
                        continue;
                    }
                    let Some(seq) = Message::peek_seq(record.payload).map(|seq| seq.0) else {
                        continue;
                    };
                    if (low..=high).contains(&seq)
                        && let Some(message) = view(state, &record, now)
                    {
                        out.push(wrap(message));
                    }
                    if seq >= last_seq {
                        break;
                    }
                }
                // `out` is in walk order: a backward walk takes a run's messages newest first.
                if direction == Direction::Backward {
                    out[start..].reverse();
                }
                if out.len() >= limit {
                    out.truncate(limit);
                    return ControlFlow::Break(());
                }
                ControlFlow::Continue(())
            });
            if let Some(error) = failed {
                return Err(error.into());
            }
            if out.len() >= limit {
                break;
            }
        }
        if direction == Direction::Backward {
            out[base..].reverse();
        }
        Ok(())
    }

    /// The chats holding messages `device` of `user` has not received, in the order of
    /// [`chats_of`](Index::chats_of).
    pub fn inbox(&self, user: UserId, device: DeviceId) -> Vec<InboxEntry> {
        self.receipts
            .chats_of(user)
            .filter_map(|chat| {
                let state = self.chats.get(chat);
                let head = state.map_or(0, |c| c.head);
                let joined = state.map_or(0, |c| c.joined(user));
                let done = self.delivered_with(state, user, device, chat).max(joined);
                (head > done).then_some(InboxEntry {
                    chat,
                    delivered: Seq(done),
                    head: Seq(head),
                })
            })
            .collect()
    }

    /// Up to `limit` messages `device` of `user` has not received, chat by chat.
    pub fn pending(
        &self,
        log: &Log,
        user: UserId,
        device: DeviceId,
        limit: usize,
        now: Timestamp,
    ) -> Result<Vec<(ChatId, MessageView)>> {
        let mut out = Vec::with_capacity(limit.min(1024));
        for entry in self.inbox(user, device) {
            if out.len() >= limit {
                break;
            }
            let low = entry.delivered.0.saturating_add(1);
            let scan = Scan::new(
                Direction::Forward,
                entry.chat,
                (low, u64::MAX),
                limit - out.len(),
                now,
            );
            self.scan_into(log, &scan, &mut out, |m| (entry.chat, m))?;
        }
        Ok(out)
    }

    /// The user's read watermark in a chat.
    pub fn read_up_to(&self, user: UserId, chat: ChatId) -> Seq {
        if chat.is_direct() {
            let read = direct_side(chat, user)
                .zip(self.chats.get(chat))
                .map_or(0, |(side, state)| state.read[side]);
            Seq(read)
        } else {
            Seq(self.receipts.group_read(user, chat))
        }
    }

    /// The device's delivered watermark in a chat.
    pub fn delivered_up_to(&self, user: UserId, device: DeviceId, chat: ChatId) -> Seq {
        Seq(self.delivered_in_chat(user, device, chat))
    }

    /// Messages in the chat the user has not read: head − read watermark. The user's own
    /// messages never count: sending one moves the sender's read watermark to it.
    pub fn unread(&self, user: UserId, chat: ChatId) -> u64 {
        let joined = self.joined_at(chat, user).0;
        self.head(chat)
            .0
            .saturating_sub(self.read_up_to(user, chat).0.max(joined))
    }

    /// For a group, the head when `user` joined it: the member never receives, nor counts as
    /// unread, anything at or below it (0 for a 1:1 chat or a non-member).
    pub fn joined_at(&self, chat: ChatId, user: UserId) -> Seq {
        Seq(self.chats.get(chat).map_or(0, |c| c.joined(user)))
    }

    /// The state of message `seq` for `recipient`, by comparing watermarks with the seq.
    pub fn status(&self, recipient: UserId, chat: ChatId, seq: Seq) -> Status {
        if self.read_up_to(recipient, chat).0 >= seq.0 {
            Status::Read
        } else if self.delivered_anywhere(recipient, chat, seq.0) {
            Status::Delivered
        } else {
            Status::Sent
        }
    }

    /// Whether any of the user's devices has message `seq` of the chat.
    fn delivered_anywhere(&self, user: UserId, chat_id: ChatId, seq: u64) -> bool {
        let inline = direct_side(chat_id, user)
            .zip(self.chats.get(chat_id))
            .is_some_and(|(side, chat)| chat.delivered[side] >= seq);
        inline || self.receipts.delivered_anywhere(user, chat_id, seq)
    }

    /// How far message `seq` (sent by `sender`) got among the chat's other members: "delivered
    /// to k of n, read by j of n". For a group, the current members; for a 1:1 chat, the other user.
    pub fn receipt_counts(&self, chat: ChatId, seq: Seq, sender: UserId) -> ReceiptCounts {
        let recipients: Vec<UserId> = match (chat.direct_users(), self.members(chat)) {
            (Some((a, b)), _) => vec![if a == sender { b } else { a }],
            (None, Some(members)) => members.keys().copied().filter(|u| *u != sender).collect(),
            (None, None) => Vec::new(),
        };
        let mut counts = ReceiptCounts {
            recipients: recipients.len() as u32,
            ..ReceiptCounts::default()
        };
        for user in recipients {
            match self.status(user, chat, seq) {
                Status::Read => {
                    counts.read += 1;
                    counts.delivered += 1;
                }
                Status::Delivered => counts.delivered += 1,
                Status::Sent => {}
            }
        }
        counts
    }
}

/// A message as stored (from a tail) as queries show it at `now`: hidden once expired, emptied
/// if deleted since.
fn restyle(chat: &Chat, stored: &MessageView, now: Timestamp) -> Option<MessageView> {
    let message = &stored.message;
    if message.ttl_ms > 0 && stored.timestamp.0.saturating_add(message.ttl_ms) <= now.0 {
        return None;
    }
    let mut view = stored.clone();
    if chat.is_deleted(message.seq.0) {
        view.deleted = true;
        view.message.media = bytes::Bytes::new();
        view.message.body = bytes::Bytes::new();
    }
    Some(view)
}

impl MessageView {
    /// The message a log entry holds, as stored (no TTL or deletion applied); `None` if the
    /// entry is not a well-formed message.
    pub fn from_entry(entry: &Entry) -> Option<MessageView> {
        if entry.record.kind != RecordKind::Message {
            return None;
        }
        Some(MessageView {
            lsn: entry.lsn,
            timestamp: entry.record.timestamp,
            deleted: false,
            message: Message::decode(&entry.record.payload)?,
        })
    }
}

/// A stored message as queries show it, unless it has expired at `now`.
fn view(chat: &Chat, record: &RecordRef<'_>, now: Timestamp) -> Option<MessageView> {
    let mut message = Message::decode_record(record)?;
    let timestamp = record.timestamp;
    if message.ttl_ms > 0 && timestamp.0.saturating_add(message.ttl_ms) <= now.0 {
        return None;
    }
    let deleted = chat.is_deleted(message.seq.0);
    if deleted {
        message.media = bytes::Bytes::new();
        message.body = bytes::Bytes::new();
    }
    Some(MessageView {
        lsn: record.lsn,
        timestamp,
        deleted,
        message,
    })
}
