//! Per-chat state: the head, the batches holding the chat's messages, deletions, the
//! disappearing-messages setting and, for groups, the members.

use std::collections::BTreeMap;

use missive_log::{BatchPos, ShardId, UserId};

/// A run of a chat's consecutive messages stored in one batch: where to read them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Run {
    pub(crate) first_seq: u64,
    pub(crate) last_seq: u64,
    /// Timestamp of the run's first message: the sparse time index.
    pub(crate) first_ts: u64,
    pub(crate) segment: u64,
    pub(crate) offset: u64,
    /// The LSN of the run's first message and where it starts in the batch's decoded body: a
    /// read starts there instead of walking the records of other chats before it.
    pub(crate) first_lsn: u64,
    pub(crate) body_offset: u32,
}

impl Run {
    pub(crate) fn pos(&self, shard: ShardId) -> BatchPos {
        BatchPos {
            shard,
            segment: self.segment,
            offset: self.offset,
        }
    }
}

/// A chat's messages in one sealed segment: their runs are in the segment's index file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SealedSpan {
    pub(crate) segment: u64,
    pub(crate) first_seq: u64,
    pub(crate) last_seq: u64,
    pub(crate) first_ts: u64,
}

/// A member's standing in a group.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// May send and read.
    Member,
    /// May also add, remove, promote and demote.
    Admin,
}

/// One chat as the index knows it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Chat {
    /// The last message's seq (0: none yet).
    pub(crate) head: u64,
    /// Its messages in sealed segments, in seq order: one span per segment, the runs on disk.
    pub(crate) sealed: Vec<SealedSpan>,
    /// Where its messages in the shard's active segment are, in seq order.
    pub(crate) runs: Vec<Run>,
    /// Seqs deleted for everyone, sorted.
    pub(crate) deleted: Vec<u64>,
    /// The disappearing-messages setting (0: off).
    pub(crate) ttl_ms: u64,
    /// Members, for a group chat.
    pub(crate) members: Option<BTreeMap<UserId, Role>>,
}

impl Chat {
    /// Records that message `seq` (timestamp `ts`) is in the batch at `pos`.
    pub(crate) fn push(&mut self, seq: u64, ts: u64, pos: BatchPos, lsn: u64, body_offset: usize) {
        debug_assert!(seq > self.head);
        self.head = seq;
        if let Some(last) = self.runs.last_mut()
            && (last.segment, last.offset) == (pos.segment, pos.offset)
        {
            last.last_seq = seq;
            return;
        }
        self.runs.push(Run {
            first_seq: seq,
            last_seq: seq,
            first_ts: ts,
            segment: pos.segment,
            offset: pos.offset,
            first_lsn: lsn,
            body_offset: body_offset as u32,
        });
    }

    pub(crate) fn mark_deleted(&mut self, seq: u64) {
        if let Err(at) = self.deleted.binary_search(&seq) {
            self.deleted.insert(at, seq);
        }
    }

    pub(crate) fn is_deleted(&self, seq: u64) -> bool {
        self.deleted.binary_search(&seq).is_ok()
    }
}
