//! The index against a plain in-memory model, driven by proptest.
//!
//! Random 1:1 and group sends (with per-message TTLs), group membership changes, delivered and
//! read receipts, deletes for everyone, clock steps, checkpoints, reopens (from the checkpoint),
//! power cuts and retention run against an index kept up to date with the log. After every step
//! each query — latest N, N before / after a seq, the message at a seq, around a time, inboxes,
//! unread counts, per-member status and group receipt counts — answers exactly as the model does.
//! At reopens the index loaded from its checkpoint plus replay must equal the live one, and so
//! must a full rebuild from the log until retention has removed records; after that the rebuild
//! (what a lost checkpoint leaves: the log's remaining records and the snapshots retention wrote)
//! must still answer every query as the model does.
//!
//! `PROPTEST_CASES` sets the number of cases (default 500), each up to 100 steps.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use missive_index::codec::{
    ContentKind, GroupChange, GroupOp, Message, Payload, Receipt, ReceiptKind, Tombstone,
};
use missive_index::{DEDUP_WINDOW_MS, Index, Role, Status};
use missive_log::storage::Damage;
use missive_log::{
    ChatId, DeviceId, Durability, Log, LogConfig, Record, Seq, ShardId, SimStorage, Timestamp,
    UserId,
};
use proptest::prelude::*;

const USERS: u64 = 5;
const DEVICES: u32 = 2;
const GROUPS: u64 = 2;
const SHARDS: u32 = 2;

#[derive(Clone, Debug)]
enum Op {
    SendDirect {
        from: u64,
        to: u64,
        device: u32,
        ttl: bool,
    },
    SendGroup {
        group: u64,
        from: u64,
        device: u32,
    },
    CreateGroup {
        group: u64,
        by: u64,
        members: Vec<u64>,
    },
    ChangeMembers {
        group: u64,
        op: u8,
        user: u64,
    },
    Receipt {
        user: u64,
        device: u32,
        chat: u8,
        read: bool,
        back: u64,
    },
    Delete {
        chat: u8,
        back: u64,
    },
    Advance {
        ms: u64,
    },
    Checkpoint,
    Reopen,
    PowerCut {
        seed: u64,
    },
    Retain,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        12 => (0..USERS, 0..USERS, 0..DEVICES, proptest::bool::weighted(0.2))
            .prop_map(|(from, to, device, ttl)| Op::SendDirect { from, to, device, ttl }),
        8 => (0..GROUPS, 0..USERS, 0..DEVICES).prop_map(|(group, from, device)| Op::SendGroup { group, from, device }),
        2 => (0..GROUPS, 0..USERS, proptest::collection::vec(0..USERS, 0..4))
            .prop_map(|(group, by, members)| Op::CreateGroup { group, by, members }),
        2 => (0..GROUPS, 0..4u8, 0..USERS).prop_map(|(group, op, user)| Op::ChangeMembers { group, op, user }),
        8 => (0..USERS, 0..DEVICES, any::<u8>(), any::<bool>(), 0..4u64)
            .prop_map(|(user, device, chat, read, back)| Op::Receipt { user, device, chat, read, back }),
        1 => (any::<u8>(), 0..5u64).prop_map(|(chat, back)| Op::Delete { chat, back }),
        3 => (0..4_000u64).prop_map(|ms| Op::Advance { ms }),
        2 => Just(Op::Checkpoint),
        2 => Just(Op::Reopen),
        1 => any::<u64>().prop_map(|seed| Op::PowerCut { seed }),
        1 => Just(Op::Retain),
    ]
}

#[derive(Clone, Debug)]
struct ModelMessage {
    seq: u64,
    lsn: u64,
    ts: u64,
    sender: u64,
    ttl_ms: u64,
    body: Bytes,
}

#[derive(Default)]
struct Model {
    chats: BTreeMap<ChatId, Vec<ModelMessage>>,
    deleted: BTreeSet<(ChatId, u64)>,
    members: BTreeMap<ChatId, BTreeMap<u64, Role>>,
    read: BTreeMap<(u64, ChatId), u64>,
    delivered: BTreeMap<(u64, u32, ChatId), u64>,
    user_chats: BTreeMap<u64, BTreeSet<ChatId>>,
    /// Per (member, group), the group's head when they joined.
    joined: BTreeMap<(u64, ChatId), u64>,
    /// Per shard, the first LSN still in the log after retention.
    live_from: Vec<u64>,
}

struct Harness {
    disk: SimStorage,
    log: Option<Log>,
    index: Index,
    model: Model,
    now: u64,
    retained: bool,
}

fn config() -> LogConfig {
    LogConfig {
        shard_count: Some(SHARDS),
        segment_window_ms: 1000,
        segment_bytes_max: 4096,
        durability: Durability::Always,
        compression: true,
        huge_pages: false,
    }
}

const INDEX_DIR: &str = "/index";

impl Harness {
    fn new() -> Harness {
        let disk = SimStorage::new();
        let log = Log::open_with(Arc::new(disk.clone()), Path::new("/log"), config()).unwrap();
        let (index, _) = Index::open(&log, Path::new(INDEX_DIR)).unwrap();
        let model = Model {
            live_from: vec![1; SHARDS as usize],
            ..Model::default()
        };
        Harness {
            disk,
            log: Some(log),
            index,
            model,
            now: 1_000_000,
            retained: false,
        }
    }

    fn log(&self) -> &Log {
        self.log.as_ref().unwrap()
    }

    fn append(&mut self, chat: ChatId, payload: Payload) -> u64 {
        self.now += 1;
        let record = Record {
            kind: payload.kind(),
            chat,
            timestamp: Timestamp(self.now),
            payload: payload.encode(),
        };
        let lsn = self.log().append(record).unwrap().wait().unwrap().lsn.0;
        let log = self.log.take().unwrap();
        self.index.catch_up(&log).unwrap();
        self.log = Some(log);
        lsn
    }

    fn known_chats(&self) -> Vec<ChatId> {
        let mut chats: BTreeSet<ChatId> = self.model.chats.keys().copied().collect();
        chats.extend(self.model.members.keys().copied());
        chats.into_iter().collect()
    }

    fn send(&mut self, chat: ChatId, from: u64, device: u32, ttl_ms: u64) {
        let seq = self
            .model
            .chats
            .get(&chat)
            .map_or(0, |m| m.last().map_or(0, |m| m.seq))
            + 1;
        let body = Bytes::from(format!("{chat:?}#{seq} from {from}"));
        let message = Message {
            seq: Seq(seq),
            sender: UserId(from),
            sender_device: DeviceId(device),
            client_msg_id: [seq as u8; 16],
            content: ContentKind::Text,
            ttl_ms,
            reply_to: None,
            media: Bytes::new(),
            body: body.clone(),
        };
        let lsn = self.append(chat, Payload::Message(message));
        let model = &mut self.model;
        model.chats.entry(chat).or_default().push(ModelMessage {
            seq,
            lsn,
            ts: self.now,
            sender: from,
            ttl_ms,
            body,
        });
        if let Some((a, b)) = chat.direct_users() {
            model.user_chats.entry(a.0).or_default().insert(chat);
            model.user_chats.entry(b.0).or_default().insert(chat);
        }
        let read = model.read.entry((from, chat)).or_default();
        *read = (*read).max(seq);
        // The sending device had everything up to its message only if it was caught up.
        let delivered = model.delivered.entry((from, device, chat)).or_default();
        if *delivered + 1 >= seq {
            *delivered = seq;
        }
    }

    fn apply(&mut self, op: Op) {
        match op {
            Op::SendDirect {
                from,
                to,
                device,
                ttl,
            } => {
                let chat = ChatId::direct(UserId(from), UserId(to));
                self.send(chat, from, device, if ttl { 5_000 } else { 0 });
            }
            Op::SendGroup {
                group,
                from,
                device,
            } => {
                let chat = ChatId::group(group);
                // The engine authorizes; the model only sends as members.
                if self
                    .model
                    .members
                    .get(&chat)
                    .is_some_and(|m| m.contains_key(&from))
                {
                    self.send(chat, from, device, 0);
                }
            }
            Op::CreateGroup { group, by, members } => {
                let chat = ChatId::group(group);
                if self.model.members.contains_key(&chat) {
                    return;
                }
                let users = members.iter().map(|u| UserId(*u)).collect();
                self.append(
                    chat,
                    Payload::GroupChange(GroupChange {
                        op: GroupOp::Create,
                        by: UserId(by),
                        users,
                    }),
                );
                let head = self
                    .model
                    .chats
                    .get(&chat)
                    .map_or(0, |m| m.last().map_or(0, |m| m.seq));
                let entry = self.model.members.entry(chat).or_default();
                entry.insert(by, Role::Admin);
                for user in &members {
                    entry.entry(*user).or_insert(Role::Member);
                }
                for user in entry.keys() {
                    self.model.user_chats.entry(*user).or_default().insert(chat);
                    self.model.joined.insert((*user, chat), head);
                }
            }
            Op::ChangeMembers { group, op, user } => {
                let chat = ChatId::group(group);
                if !self.model.members.contains_key(&chat) {
                    return;
                }
                let op = [
                    GroupOp::Add,
                    GroupOp::Remove,
                    GroupOp::Promote,
                    GroupOp::Demote,
                ][op as usize];
                self.append(
                    chat,
                    Payload::GroupChange(GroupChange {
                        op,
                        by: UserId(0),
                        users: vec![UserId(user)],
                    }),
                );
                let head = self
                    .model
                    .chats
                    .get(&chat)
                    .map_or(0, |m| m.last().map_or(0, |m| m.seq));
                let members = self.model.members.get_mut(&chat).unwrap();
                match op {
                    GroupOp::Add => {
                        if let std::collections::btree_map::Entry::Vacant(slot) =
                            members.entry(user)
                        {
                            slot.insert(Role::Member);
                            self.model.user_chats.entry(user).or_default().insert(chat);
                            self.model.joined.insert((user, chat), head);
                        }
                    }
                    GroupOp::Remove => {
                        if members.remove(&user).is_some() {
                            // A member who leaves takes nothing along: no watermarks, no floor.
                            self.model.user_chats.entry(user).or_default().remove(&chat);
                            self.model.joined.remove(&(user, chat));
                            self.model.read.remove(&(user, chat));
                            self.model
                                .delivered
                                .retain(|(u, _, c), _| !(*u == user && *c == chat));
                        }
                    }
                    GroupOp::Promote | GroupOp::Demote => {
                        if let Some(role) = members.get_mut(&user) {
                            *role = if op == GroupOp::Promote {
                                Role::Admin
                            } else {
                                Role::Member
                            };
                        }
                    }
                    GroupOp::Create => unreachable!(),
                }
            }
            Op::Receipt {
                user,
                device,
                chat,
                read,
                back,
            } => {
                let chats = self.known_chats();
                if chats.is_empty() {
                    return;
                }
                let chat = chats[chat as usize % chats.len()];
                let head = self
                    .model
                    .chats
                    .get(&chat)
                    .map_or(0, |m| m.last().map_or(0, |m| m.seq));
                let up_to = head.saturating_sub(back);
                let kind = if read {
                    ReceiptKind::Read
                } else {
                    ReceiptKind::Delivered
                };
                let receipt = Receipt {
                    user: UserId(user),
                    device: DeviceId(device),
                    kind,
                    up_to: Seq(up_to),
                };
                self.append(chat, Payload::Receipt(receipt));
                // Receipts from users outside the chat change nothing.
                let member = match chat.direct_users() {
                    Some((a, b)) => user == a.0 || user == b.0,
                    None => self
                        .model
                        .members
                        .get(&chat)
                        .is_some_and(|m| m.contains_key(&user)),
                };
                if !member || !self.model.chats.contains_key(&chat) {
                    return;
                }
                let delivered = self
                    .model
                    .delivered
                    .entry((user, device, chat))
                    .or_default();
                *delivered = (*delivered).max(up_to);
                if read {
                    let watermark = self.model.read.entry((user, chat)).or_default();
                    *watermark = (*watermark).max(up_to);
                }
            }
            Op::Delete { chat, back } => {
                let chats: Vec<ChatId> = self.model.chats.keys().copied().collect();
                if chats.is_empty() {
                    return;
                }
                let chat = chats[chat as usize % chats.len()];
                let head = self.model.chats[&chat].last().unwrap().seq;
                let seq = head.saturating_sub(back).max(1);
                self.append(
                    chat,
                    Payload::Tombstone(Tombstone {
                        seq: Seq(seq),
                        by: UserId(0),
                    }),
                );
                self.model.deleted.insert((chat, seq));
            }
            Op::Advance { ms } => self.now += ms,
            Op::Checkpoint => self.index.checkpoint().unwrap(),
            Op::Reopen => {
                self.log.take().unwrap().close().unwrap();
                self.reopen(true);
            }
            Op::PowerCut { seed } => {
                drop(self.log.take());
                self.disk.power_cut(Damage::TornGarbage { seed });
                self.reopen(false);
            }
            Op::Retain => {
                let cutoff = self.now.saturating_sub(3_000);
                let log = self.log.take().unwrap();
                self.index.retain(&log, Timestamp(cutoff)).unwrap();
                for shard in 0..SHARDS {
                    let segments = log.segments(ShardId(shard)).unwrap();
                    self.model.live_from[shard as usize] =
                        segments.first().map_or(1, |s| s.first_lsn);
                }
                self.log = Some(log);
                for messages in self.model.chats.values() {
                    for m in messages {
                        let shard = self.shard_of_lsn_owner(m);
                        let gone = m.lsn < self.model.live_from[shard];
                        assert!(!gone || m.ts < cutoff, "retention removed a young message");
                    }
                }
                self.retained = true;
            }
        }
        self.check();
    }

    fn shard_of_lsn_owner(&self, message: &ModelMessage) -> usize {
        let chat = self
            .model
            .chats
            .iter()
            .find(|(_, ms)| {
                ms.iter()
                    .any(|m| m.lsn == message.lsn && m.seq == message.seq && m.ts == message.ts)
            })
            .unwrap()
            .0;
        self.log().shard_of(*chat).0 as usize
    }

    /// Reopens the log and the index from its checkpoint, and checks it against the live index
    /// and (until retention removed records) a full rebuild.
    fn reopen(&mut self, clean: bool) {
        let log = Log::open_with(Arc::new(self.disk.clone()), Path::new("/log"), config()).unwrap();
        let (reopened, _) = Index::open(&log, Path::new(INDEX_DIR)).unwrap();
        assert_eq!(
            reopened, self.index,
            "checkpoint + replay equals the live index (clean: {clean})"
        );
        let mut rebuilt = Index::empty(&log, Path::new(INDEX_DIR));
        rebuilt.catch_up(&log).unwrap();
        if !self.retained {
            assert_eq!(rebuilt, self.index, "a full rebuild equals the live index");
        }
        self.log = Some(log);
        if self.retained {
            // Retention removed records: the rebuild (as if the checkpoint were lost) has only
            // what the log still holds, snapshots included, and must answer as the model does.
            self.index = rebuilt;
            self.check();
        }
        self.index = reopened;
    }

    fn visible(&self, chat: ChatId) -> Vec<&ModelMessage> {
        let shard = self.log().shard_of(chat).0 as usize;
        self.model.chats.get(&chat).map_or(Vec::new(), |ms| {
            ms.iter()
                .filter(|m| m.lsn >= self.model.live_from[shard])
                .filter(|m| m.ttl_ms == 0 || m.ts + m.ttl_ms > self.now)
                .collect()
        })
    }

    fn check(&self) {
        let log = self.log();
        let now = Timestamp(self.now);
        let seqs = |views: Vec<missive_index::MessageView>| -> Vec<(u64, bool, Bytes)> {
            views
                .into_iter()
                .map(|v| (v.message.seq.0, v.deleted, v.message.body))
                .collect()
        };
        for chat in self.known_chats() {
            let visible = self.visible(chat);
            let expect = |ms: &[&ModelMessage]| -> Vec<(u64, bool, Bytes)> {
                ms.iter()
                    .map(|m| {
                        let deleted = self.model.deleted.contains(&(chat, m.seq));
                        (
                            m.seq,
                            deleted,
                            if deleted {
                                Bytes::new()
                            } else {
                                m.body.clone()
                            },
                        )
                    })
                    .collect()
            };
            let head = self
                .model
                .chats
                .get(&chat)
                .map_or(0, |m| m.last().map_or(0, |m| m.seq));
            assert_eq!(self.index.head(chat).0, head, "head of {chat:?}");
            // A retried send finds the original: the chat's newest message, unless newer
            // messages of its shard pushed it out of the dedup window.
            if let Some(last) = self.model.chats.get(&chat).and_then(|m| m.last()) {
                let shard = log.shard_of(chat);
                let newest = self
                    .model
                    .chats
                    .iter()
                    .filter(|(c, _)| log.shard_of(**c) == shard)
                    .flat_map(|(_, ms)| ms.iter().map(|m| m.ts))
                    .max()
                    .unwrap_or(0);
                let found = self
                    .index
                    .find_sent(log, chat, UserId(last.sender), [last.seq as u8; 16])
                    .unwrap();
                let retained = last.lsn >= self.model.live_from[shard.0 as usize];
                if last.ts + DEDUP_WINDOW_MS >= newest && retained {
                    assert_eq!(
                        found.map(|s| (s.seq, s.timestamp)),
                        Some((last.seq, last.ts))
                    );
                }
            }
            let latest = &visible[visible.len().saturating_sub(5)..];
            assert_eq!(
                seqs(self.index.latest(log, chat, 5, now).unwrap()),
                expect(latest),
                "latest"
            );
            let pivot = head.saturating_sub(2);
            let before: Vec<_> = visible.iter().copied().filter(|m| m.seq < pivot).collect();
            let before = &before[before.len().saturating_sub(3)..];
            assert_eq!(
                seqs(self.index.before(log, chat, Seq(pivot), 3, now).unwrap()),
                expect(before),
                "before"
            );
            let after: Vec<_> = visible
                .iter()
                .copied()
                .filter(|m| m.seq > pivot / 2)
                .take(4)
                .collect();
            assert_eq!(
                seqs(self.index.after(log, chat, Seq(pivot / 2), 4, now).unwrap()),
                expect(&after),
                "after"
            );
            let at = self
                .index
                .message(log, chat, Seq(pivot.max(1)), now)
                .unwrap()
                .map(|v| v.message.seq.0);
            assert_eq!(
                at,
                visible
                    .iter()
                    .find(|m| m.seq == pivot.max(1))
                    .map(|m| m.seq),
                "at"
            );
            if let Some(middle) = visible.get(visible.len() / 2) {
                let t = Timestamp(middle.ts);
                let start = visible.iter().position(|m| m.ts >= t.0).unwrap();
                let from = start.saturating_sub(2);
                let around: Vec<_> = visible[from..(from + 4).min(visible.len())].to_vec();
                let got = seqs(self.index.around(log, chat, t, 4, now).unwrap());
                // Expired messages before `t` shift nothing: both sides skip them.
                assert_eq!(got, expect(&around), "around");
            }
            for user in 0..USERS {
                let read = self.model.read.get(&(user, chat)).copied().unwrap_or(0);
                let joined = self.model.joined.get(&(user, chat)).copied().unwrap_or(0);
                assert_eq!(
                    self.index.unread(UserId(user), chat),
                    head - read.max(joined).min(head),
                    "unread of {user} in {chat:?}: head {head} read {read} joined {joined}"
                );
                for seq in [1, head].into_iter().filter(|&seq| seq >= 1 && seq <= head) {
                    let delivered = (0..DEVICES).any(|d| {
                        self.model
                            .delivered
                            .get(&(user, d, chat))
                            .is_some_and(|&w| w >= seq)
                    });
                    let status = if read >= seq {
                        Status::Read
                    } else if delivered {
                        Status::Delivered
                    } else {
                        Status::Sent
                    };
                    assert_eq!(
                        self.index.status(UserId(user), chat, Seq(seq)),
                        status,
                        "status"
                    );
                }
            }
            if let Some(members) = self.model.members.get(&chat) {
                let index_members: BTreeMap<u64, Role> = self
                    .index
                    .members(chat)
                    .unwrap()
                    .iter()
                    .map(|(u, r)| (u.0, *r))
                    .collect();
                assert_eq!(&index_members, members);
                if let Some(last) = self.model.chats.get(&chat).and_then(|m| m.last()) {
                    let sender = last.sender;
                    let counts = self.index.receipt_counts(chat, Seq(head), UserId(sender));
                    let others: Vec<u64> =
                        members.keys().copied().filter(|u| *u != sender).collect();
                    assert_eq!(counts.recipients as usize, others.len());
                    let read = others
                        .iter()
                        .filter(|u| {
                            self.model
                                .read
                                .get(&(**u, chat))
                                .is_some_and(|&r| r >= head)
                        })
                        .count();
                    assert_eq!(counts.read as usize, read);
                    let delivered = others
                        .iter()
                        .filter(|u| {
                            (0..DEVICES).any(|d| {
                                self.model
                                    .delivered
                                    .get(&(**u, d, chat))
                                    .is_some_and(|&w| w >= head)
                            }) || self
                                .model
                                .read
                                .get(&(**u, chat))
                                .is_some_and(|&r| r >= head)
                        })
                        .count();
                    assert_eq!(counts.delivered as usize, delivered);
                }
            }
        }
        for user in 0..USERS {
            let chats = self
                .model
                .user_chats
                .get(&user)
                .cloned()
                .unwrap_or_default();
            let index_chats: BTreeSet<ChatId> = self.index.chats_of(UserId(user)).collect();
            assert_eq!(index_chats, chats, "chats of {user}");
            for device in 0..DEVICES {
                let want: Vec<(ChatId, u64)> = chats
                    .iter()
                    .filter_map(|chat| {
                        let head = self
                            .model
                            .chats
                            .get(chat)
                            .map_or(0, |m| m.last().map_or(0, |m| m.seq));
                        let joined = self.model.joined.get(&(user, *chat)).copied().unwrap_or(0);
                        let done = self
                            .model
                            .delivered
                            .get(&(user, device, *chat))
                            .copied()
                            .unwrap_or(0)
                            .max(joined);
                        (head > done).then_some((*chat, done))
                    })
                    .collect();
                let got: Vec<(ChatId, u64)> = self
                    .index
                    .inbox(UserId(user), DeviceId(device))
                    .iter()
                    .map(|e| (e.chat, e.delivered.0))
                    .collect();
                assert_eq!(got, want, "inbox of {user}/{device}");
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(500),
        ..ProptestConfig::default()
    })]

    #[test]
    fn the_index_answers_like_the_model(ops in proptest::collection::vec(op(), 1..100)) {
        let mut harness = Harness::new();
        for op in ops {
            harness.apply(op);
        }
    }
}
