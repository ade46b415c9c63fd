//! The whole engine against a plain in-memory model, driven by proptest.
//!
//! Random steps run against an engine on a simulated disk (`SimStorage`, `Durability::Always`,
//! a hand-driven clock) and against a model made of vectors and maps:
//!
//! - 1:1 and group sends, with retries of earlier `client_msg_id`s that return the original
//!   `(chat, seq, timestamp)` while it is remembered (the dedup window, in server time), bad
//!   reply-tos, oversized bodies and media, per-message TTLs;
//! - group create / add / remove / leave / promote / demote, with `NotAMember`, `NotAdmin`,
//!   `GroupFull` (cap 4) and "the last admin cannot be demoted" checked, the successor admin
//!   when the last one leaves, and a system message per change;
//! - delivered and read receipts (clamped to the head, never backwards, the value returned),
//!   deletes for everyone (sender only), per-chat TTLs, typing;
//! - clock steps forward and back (expired messages are never returned; the engine's time does
//!   not go back);
//! - reads: history (latest / before / after / around / one message), the chat list with last
//!   message and unread count, per-message status with "delivered to k of n, read by j of n";
//! - subscriptions of any device, dropped and renewed, drained now and then through a queue of
//!   4 events (so they lag and catch up): each yields every message of the device's chats that
//!   it must (its user was a recipient at the message's position and still is a member, the
//!   message is above the device's delivered watermark when it subscribed — whatever the device
//!   sent or acknowledged since — and after the user joined, not its own, not expired), at most
//!   once, in seq order per chat;
//! - checkpoints, reopens (close + open) and power cuts (the process dies, unsynced bytes are
//!   dropped, torn or scrambled): afterwards every acknowledged call is there, to the byte.
//!
//! After every reopen and power cut, at `Check` steps and at the end, everything every user can
//! see is compared with the model.
//!
//! `PROPTEST_CASES` sets the number of cases (default 500), each up to 100 steps.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::T0;
use missive::log::storage::Damage;
use missive::log::{ChatId, DeviceId, Seq, SimStorage, Timestamp, UserId};
use missive::{
    Clock, Config, ContentKind, Durability, Engine, Error, Event, History, ManualClock,
    MessageView, Outgoing, ReceiptKind, Role, SYSTEM_DEVICE, Status, Subscription, To,
};
use proptest::prelude::*;

const USERS: u64 = 6;
const DEVICES: u32 = 2;
const GROUP_CAP: usize = 4;
const BODY_BYTES_MAX: usize = 24;
const MEDIA_BYTES_MAX: usize = 16;
const DEDUP_WINDOW_MS: u64 = 20_000;
const QUEUE_CAPACITY: usize = 4;
const DIR: &str = "/model";

// ---- steps --------------------------------------------------------------------------------

/// A chat as a step names it, resolved against the acting user and the model.
#[derive(Clone, Copy, Debug)]
enum Target {
    /// The 1:1 chat with this user.
    Direct(u64),
    /// The model's groups, by index (modulo their number).
    Group(u8),
    /// The 1:1 chat of two users (perhaps without the actor).
    Foreign(u64, u64),
}

#[derive(Clone, Debug)]
enum Op {
    Send {
        from: u64,
        device: u32,
        to: Target,
        /// Reuse one of the sender's earlier ids in the chat.
        retry: Option<u8>,
        ttl: u8,
        /// 0: reply to seq 0; k: reply to head + 2 - k.
        reply: Option<u8>,
        body: u8,
        media: Option<u8>,
    },
    CreateGroup {
        by: u64,
        members: Vec<u64>,
    },
    Add {
        group: u8,
        by: u64,
        users: Vec<u64>,
    },
    Remove {
        group: u8,
        by: u64,
        user: u64,
    },
    Leave {
        group: u8,
        user: u64,
    },
    SetRole {
        group: u8,
        by: u64,
        user: u64,
        promote: bool,
    },
    Mark {
        user: u64,
        device: u32,
        to: Target,
        read: bool,
        back: u8,
    },
    /// A subscribed device acknowledges what it received.
    Ack {
        user: u64,
        device: u32,
    },
    Delete {
        user: u64,
        to: Target,
        back: u8,
    },
    ChatTtl {
        user: u64,
        to: Target,
        ttl: u8,
    },
    Typing {
        user: u64,
        device: u32,
        to: Target,
    },
    Advance {
        ms: i64,
    },
    Subscribe {
        user: u64,
        device: u32,
    },
    Unsubscribe {
        user: u64,
        device: u32,
    },
    Drain,
    Read {
        user: u64,
        to: Target,
        which: u8,
        n: u8,
        at: u8,
    },
    Chats {
        user: u64,
    },
    Status {
        user: u64,
        to: Target,
        back: u8,
    },
    Check,
    Checkpoint,
    Reopen,
    PowerCut {
        damage: u8,
        seed: u64,
    },
}

fn user() -> impl Strategy<Value = u64> {
    1..=USERS
}

fn device() -> impl Strategy<Value = u32> {
    0..DEVICES
}

fn target() -> impl Strategy<Value = Target> {
    prop_oneof![
        4 => user().prop_map(Target::Direct),
        4 => any::<u8>().prop_map(Target::Group),
        1 => (user(), user()).prop_map(|(a, b)| Target::Foreign(a, b)),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let send = (
        (user(), device(), target()),
        (
            proptest::option::weighted(0.25, any::<u8>()),
            0..5u8,
            proptest::option::weighted(0.15, 0..4u8),
            0..=(BODY_BYTES_MAX as u8 + 2),
            proptest::option::weighted(0.2, 0..=(MEDIA_BYTES_MAX as u8 + 1)),
        ),
    )
        .prop_map(
            |((from, device, to), (retry, ttl, reply, body, media))| Op::Send {
                from,
                device,
                to,
                retry,
                ttl,
                reply,
                body,
                media,
            },
        );
    let users = || proptest::collection::vec(user(), 0..5);
    prop_oneof![
        24 => send,
        3 => (user(), users()).prop_map(|(by, members)| Op::CreateGroup { by, members }),
        3 => (any::<u8>(), user(), users()).prop_map(|(group, by, users)| Op::Add { group, by, users }),
        2 => (any::<u8>(), user(), user()).prop_map(|(group, by, user)| Op::Remove { group, by, user }),
        1 => (any::<u8>(), user()).prop_map(|(group, user)| Op::Leave { group, user }),
        2 => (any::<u8>(), user(), user(), any::<bool>())
            .prop_map(|(group, by, user, promote)| Op::SetRole { group, by, user, promote }),
        6 => (user(), device(), target(), any::<bool>(), 0..4u8)
            .prop_map(|(user, device, to, read, back)| Op::Mark { user, device, to, read, back }),
        3 => (user(), device()).prop_map(|(user, device)| Op::Ack { user, device }),
        2 => (user(), target(), 0..4u8).prop_map(|(user, to, back)| Op::Delete { user, to, back }),
        1 => (user(), target(), 0..3u8).prop_map(|(user, to, ttl)| Op::ChatTtl { user, to, ttl }),
        1 => (user(), device(), target()).prop_map(|(user, device, to)| Op::Typing { user, device, to }),
        6 => prop_oneof![8 => 0..4_000i64, 2 => 15_000..40_000i64, 2 => -8_000..0i64]
            .prop_map(|ms| Op::Advance { ms }),
        5 => (user(), device()).prop_map(|(user, device)| Op::Subscribe { user, device }),
        2 => (user(), device()).prop_map(|(user, device)| Op::Unsubscribe { user, device }),
        5 => Just(Op::Drain),
        5 => (user(), target(), 0..5u8, 0..6u8, any::<u8>())
            .prop_map(|(user, to, which, n, at)| Op::Read { user, to, which, n, at }),
        2 => user().prop_map(|user| Op::Chats { user }),
        3 => (user(), target(), 0..4u8).prop_map(|(user, to, back)| Op::Status { user, to, back }),
        1 => Just(Op::Check),
        1 => Just(Op::Checkpoint),
        1 => Just(Op::Reopen),
        1 => (0..3u8, any::<u64>()).prop_map(|(damage, seed)| Op::PowerCut { damage, seed }),
    ]
}

// ---- the model ----------------------------------------------------------------------------

#[derive(Clone, Debug)]
struct ModelMessage {
    seq: u64,
    timestamp: u64,
    sender: u64,
    device: u32,
    client_msg_id: [u8; 16],
    kind: ContentKind,
    ttl_ms: u64,
    reply_to: Option<u64>,
    media: Bytes,
    body: Bytes,
    /// The chat's users at the message's position.
    recipients: BTreeSet<u64>,
    deleted: bool,
}

impl ModelMessage {
    fn expired(&self, now: u64) -> bool {
        self.ttl_ms > 0 && self.timestamp.saturating_add(self.ttl_ms) <= now
    }
}

#[derive(Clone, Debug, Default)]
struct ModelChat {
    messages: Vec<ModelMessage>,
    ttl_ms: u64,
    /// A group's members (`None`: a 1:1 chat).
    members: Option<BTreeMap<u64, Role>>,
    /// Per group member, the head when they joined: they see and get nothing up to it.
    joined: BTreeMap<u64, u64>,
}

/// What an engine call must fail with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Want {
    NotAMember(u64),
    NotAdmin(u64),
    NotSender,
    GroupFull,
    NoSuchMessage,
    Invalid,
    TooLarge,
}

fn check_error(got: &Error, want: Want, context: &str) {
    let ok = match (got, want) {
        (Error::NotAMember { user, .. }, Want::NotAMember(u)) => user.0 == u,
        (Error::NotAdmin { user, .. }, Want::NotAdmin(u)) => user.0 == u,
        (Error::NotSender { .. }, Want::NotSender) => true,
        (Error::GroupFull { cap, .. }, Want::GroupFull) => *cap == GROUP_CAP,
        (Error::NoSuchMessage { .. }, Want::NoSuchMessage) => true,
        (Error::InvalidArgument(_), Want::Invalid) => true,
        (Error::PayloadTooLarge { .. }, Want::TooLarge) => true,
        _ => false,
    };
    assert!(ok, "{context}: got {got:?}, want {want:?}");
}

/// A message as compared: everything a view shows but its log position.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Shown {
    seq: u64,
    timestamp: u64,
    deleted: bool,
    sender: u64,
    device: u32,
    client_msg_id: [u8; 16],
    kind: ContentKind,
    ttl_ms: u64,
    reply_to: Option<u64>,
    media: Bytes,
    body: Bytes,
}

fn shown(view: &MessageView) -> Shown {
    let m = &view.message;
    Shown {
        seq: m.seq.0,
        timestamp: view.timestamp.0,
        deleted: view.deleted,
        sender: m.sender.0,
        device: m.sender_device.0,
        client_msg_id: m.client_msg_id,
        kind: m.content,
        ttl_ms: m.ttl_ms,
        reply_to: m.reply_to.map(|s| s.0),
        media: m.media.clone(),
        body: m.body.clone(),
    }
}

fn model_shown(m: &ModelMessage) -> Shown {
    Shown {
        seq: m.seq,
        timestamp: m.timestamp,
        deleted: m.deleted,
        sender: m.sender,
        device: m.device,
        client_msg_id: m.client_msg_id,
        kind: m.kind,
        ttl_ms: m.ttl_ms,
        reply_to: m.reply_to,
        media: if m.deleted {
            Bytes::new()
        } else {
            m.media.clone()
        },
        body: if m.deleted {
            Bytes::new()
        } else {
            m.body.clone()
        },
    }
}

fn system_message_id(chat: ChatId, seq: u64) -> [u8; 16] {
    let mut id = [0xff; 16];
    id[..8].copy_from_slice(&seq.to_le_bytes());
    id[8..].copy_from_slice(&(chat.to_u128() as u64).to_le_bytes());
    id
}

fn describe(op: &str, by: u64, users: &[u64]) -> String {
    let users: Vec<String> = users.iter().map(|u| format!("\"{u}\"")).collect();
    format!(
        "{{\"op\":\"{op}\",\"by\":\"{by}\",\"users\":[{}]}}",
        users.join(",")
    )
}

struct Model {
    shards: u32,
    chats: BTreeMap<ChatId, ModelChat>,
    /// Groups in creation order.
    groups: Vec<ChatId>,
    /// 1:1 chats with at least one message (they are in their users' chat lists).
    listed: BTreeSet<ChatId>,
    read: HashMap<(u64, ChatId), u64>,
    delivered: HashMap<(u64, u32, ChatId), u64>,
    /// The newest send per `(chat, sender, client_msg_id)`: `(seq, timestamp)`.
    dedup: HashMap<(ChatId, u64, [u8; 16]), (u64, u64)>,
    /// The ids each sender used in each chat, for retries.
    ids: HashMap<(ChatId, u64), Vec<[u8; 16]>>,
    /// Per shard, the newest message timestamp.
    shard_newest: Vec<u64>,
    /// The engine's time: the latest clock reading it has seen.
    now: u64,
    next_id: u64,
}

impl Model {
    fn head(&self, chat: ChatId) -> u64 {
        self.chats.get(&chat).map_or(0, |c| c.messages.len() as u64)
    }

    fn members(&self, chat: ChatId) -> Option<&BTreeMap<u64, Role>> {
        self.chats.get(&chat)?.members.as_ref()
    }

    fn users_of(&self, chat: ChatId) -> Vec<u64> {
        match chat.direct_users() {
            Some((a, b)) => vec![a.0, b.0],
            None => self
                .members(chat)
                .map(|m| m.keys().copied().collect())
                .unwrap_or_default(),
        }
    }

    fn is_member(&self, chat: ChatId, user: u64) -> bool {
        self.users_of(chat).contains(&user)
    }

    fn member_or(&self, chat: ChatId, user: u64) -> Result<(), Want> {
        if self.is_member(chat, user) {
            Ok(())
        } else {
            Err(Want::NotAMember(user))
        }
    }

    fn read_of(&self, user: u64, chat: ChatId) -> u64 {
        self.read.get(&(user, chat)).copied().unwrap_or(0)
    }

    fn delivered_of(&self, user: u64, device: u32, chat: ChatId) -> u64 {
        self.delivered
            .get(&(user, device, chat))
            .copied()
            .unwrap_or(0)
    }

    fn raise(map_value: &mut u64, to: u64) {
        *map_value = (*map_value).max(to);
    }

    fn joined(&self, chat: ChatId, user: u64) -> u64 {
        self.chats
            .get(&chat)
            .and_then(|c| c.joined.get(&user).copied())
            .unwrap_or(0)
    }

    /// What `user` sees of the chat: nothing from before they joined.
    fn visible_to(&self, chat: ChatId, user: u64) -> Vec<&ModelMessage> {
        let joined = self.joined(chat, user);
        let mut visible = self.visible(chat);
        visible.retain(|m| m.seq > joined);
        visible
    }

    fn unread(&self, user: u64, chat: ChatId) -> u64 {
        let head = self.head(chat);
        head.saturating_sub(self.read_of(user, chat).max(self.joined(chat, user)))
    }

    /// A member leaves: their join point and watermarks in the group go.
    fn leave(&mut self, chat: ChatId, user: u64) {
        let state = self.chats.get_mut(&chat).unwrap();
        state.members.as_mut().unwrap().remove(&user);
        state.joined.remove(&user);
        self.read.remove(&(user, chat));
        self.delivered
            .retain(|&(u, _, c), _| !(u == user && c == chat));
    }

    fn visible(&self, chat: ChatId) -> Vec<&ModelMessage> {
        self.chats.get(&chat).map_or_else(Vec::new, |c| {
            c.messages.iter().filter(|m| !m.expired(self.now)).collect()
        })
    }

    fn message_visible(&self, chat: ChatId, seq: u64) -> Option<&ModelMessage> {
        let chat = self.chats.get(&chat)?;
        let message = chat.messages.get(seq.checked_sub(1)? as usize)?;
        (!message.expired(self.now)).then_some(message)
    }

    fn shard(&self, chat: ChatId) -> usize {
        chat.shard(self.shards).0 as usize
    }

    /// Whether a retry of `key` must be answered from memory.
    fn remembered(&self, key: &(ChatId, u64, [u8; 16])) -> Option<(u64, u64, bool)> {
        let &(seq, timestamp) = self.dedup.get(key)?;
        let newest = self.shard_newest[self.shard(key.0)];
        Some((
            seq,
            timestamp,
            timestamp >= newest.saturating_sub(DEDUP_WINDOW_MS),
        ))
    }

    /// Stores a message: the effects of applying its record.
    fn store(&mut self, chat: ChatId, mut message: ModelMessage) -> u64 {
        let seq = self.head(chat) + 1;
        message.seq = seq;
        message.timestamp = self.now;
        message.recipients = self.users_of(chat).into_iter().collect();
        let (sender, device) = (message.sender, message.device);
        let key = (chat, sender, message.client_msg_id);
        self.dedup.insert(key, (seq, self.now));
        let shard = self.shard(chat);
        self.shard_newest[shard] = self.shard_newest[shard].max(self.now);
        if chat.is_direct() {
            self.listed.insert(chat);
        }
        // Sending reads the chat up to the message, and delivers it to the sending device if
        // that device had everything before it: for members only (a system message may be sent
        // by someone who just left).
        if self.is_member(chat, sender) {
            Model::raise(self.read.entry((sender, chat)).or_default(), seq);
            let delivered = self.delivered.entry((sender, device, chat)).or_default();
            if *delivered + 1 >= seq {
                *delivered = seq;
            }
        }
        self.chats.entry(chat).or_default().messages.push(message);
        seq
    }

    fn system_message(&mut self, chat: ChatId, op: &str, by: u64, users: &[u64]) {
        let seq = self.head(chat) + 1;
        let message = ModelMessage {
            seq,
            timestamp: 0,
            sender: by,
            device: SYSTEM_DEVICE.0,
            client_msg_id: system_message_id(chat, seq),
            kind: ContentKind::System,
            ttl_ms: 0,
            reply_to: None,
            media: Bytes::new(),
            body: Bytes::from(describe(op, by, users)),
            recipients: BTreeSet::new(),
            deleted: false,
        };
        self.store(chat, message);
    }

    fn status(&self, user: u64, chat: ChatId, seq: u64) -> Status {
        if self.read_of(user, chat) >= seq {
            Status::Read
        } else if self
            .delivered
            .iter()
            .any(|(&(u, _, c), &w)| u == user && c == chat && w >= seq)
        {
            Status::Delivered
        } else {
            Status::Sent
        }
    }
}

// ---- the harness --------------------------------------------------------------------------

/// A live subscription and what it yielded.
struct Sub {
    live: Subscription,
    /// The device's delivered watermark per chat when it subscribed.
    start: HashMap<ChatId, u64>,
    /// The message seqs it yielded, per chat, in order.
    received: HashMap<ChatId, Vec<u64>>,
}

struct Harness {
    sim: SimStorage,
    clock: ManualClock,
    engine: Option<Engine>,
    subs: BTreeMap<(u64, u32), Sub>,
    model: Model,
    step: usize,
}

impl Harness {
    fn new(shards: u32) -> Harness {
        let clock = ManualClock::new(T0);
        let sim = SimStorage::new();
        let model = Model {
            shards,
            chats: BTreeMap::new(),
            groups: Vec::new(),
            listed: BTreeSet::new(),
            read: HashMap::new(),
            delivered: HashMap::new(),
            dedup: HashMap::new(),
            ids: HashMap::new(),
            shard_newest: vec![0; shards as usize],
            now: T0.0,
            next_id: 0,
        };
        let mut harness = Harness {
            sim,
            clock,
            engine: None,
            subs: BTreeMap::new(),
            model,
            step: 0,
        };
        harness.open();
        harness
    }

    fn config(&self) -> Config {
        Config {
            durability: Durability::Always,
            shards: Some(self.model.shards),
            segment_window: Duration::from_secs(1),
            segment_bytes_max: 4 << 10,
            group_cap: GROUP_CAP,
            body_bytes_max: BODY_BYTES_MAX,
            media_ref_bytes_max: MEDIA_BYTES_MAX,
            queue_capacity: QUEUE_CAPACITY,
            checkpoint_interval: None,
            retention_interval: None,
            dedup_window: Duration::from_millis(DEDUP_WINDOW_MS),
            clock: Arc::new(self.clock.clone()),
            ..Config::default()
        }
    }

    fn open(&mut self) {
        let engine = Engine::open_with(Arc::new(self.sim.clone()), DIR, self.config())
            .expect("open the engine");
        // A reopened engine's time resumes from its newest message or the clock.
        let newest = self.model.shard_newest.iter().copied().max().unwrap_or(0);
        self.model.now = newest.max(self.clock.now().0);
        assert_eq!(
            engine.now().0,
            self.model.now,
            "the engine's time after opening"
        );
        self.engine = Some(engine);
    }

    fn engine(&self) -> &Engine {
        self.engine.as_ref().expect("the engine is open")
    }

    fn context(&self, what: &str) -> String {
        format!("step {}: {what}", self.step)
    }

    fn resolve(&self, user: u64, to: Target) -> Option<ChatId> {
        match to {
            Target::Direct(other) => {
                let other = if other == user {
                    user % USERS + 1
                } else {
                    other
                };
                Some(ChatId::direct(UserId(user), UserId(other)))
            }
            Target::Group(i) => {
                let groups = &self.model.groups;
                (!groups.is_empty()).then(|| groups[i as usize % groups.len()])
            }
            Target::Foreign(a, b) => {
                let b = if a == b { a % USERS + 1 } else { b };
                Some(ChatId::direct(UserId(a), UserId(b)))
            }
        }
    }

    fn group(&self, i: u8) -> Option<ChatId> {
        self.resolve(0, Target::Group(i))
    }

    fn fresh_id(&mut self) -> [u8; 16] {
        self.model.next_id += 1;
        let mut id = [0; 16];
        id[..8].copy_from_slice(&self.model.next_id.to_le_bytes());
        id[15] = 1;
        id
    }

    /// Checks an outcome the model predicts exactly.
    fn expect<T: std::fmt::Debug + PartialEq>(
        &self,
        what: &str,
        got: Result<T, Error>,
        want: Result<T, Want>,
    ) {
        let context = self.context(what);
        match (got, want) {
            (Ok(got), Ok(want)) => assert_eq!(got, want, "{context}"),
            (Err(got), Err(want)) => check_error(&got, want, &context),
            (got, want) => panic!("{context}: got {got:?}, want {want:?}"),
        }
    }

    fn apply(&mut self, op: Op) {
        self.step += 1;
        match op {
            Op::Send {
                from,
                device,
                to,
                retry,
                ttl,
                reply,
                body,
                media,
            } => {
                let Some(chat) = self.resolve(from, to) else {
                    return;
                };
                self.send(from, device, chat, retry, ttl, reply, body, media);
            }
            Op::CreateGroup { by, members } => self.create_group(by, members),
            Op::Add { group, by, users } => {
                if let Some(chat) = self.group(group) {
                    self.add(chat, by, users);
                }
            }
            Op::Remove { group, by, user } => {
                if let Some(chat) = self.group(group) {
                    self.remove(chat, by, user);
                }
            }
            Op::Leave { group, user } => {
                if let Some(chat) = self.group(group) {
                    self.remove(chat, user, user);
                }
            }
            Op::SetRole {
                group,
                by,
                user,
                promote,
            } => {
                if let Some(chat) = self.group(group) {
                    self.set_role(chat, by, user, promote);
                }
            }
            Op::Mark {
                user,
                device,
                to,
                read,
                back,
            } => {
                let Some(chat) = self.resolve(user, to) else {
                    return;
                };
                let up_to = (self.model.head(chat) + 1).saturating_sub(u64::from(back));
                let kind = if read {
                    ReceiptKind::Read
                } else {
                    ReceiptKind::Delivered
                };
                self.mark(user, device, chat, kind, up_to);
            }
            Op::Ack { user, device } => {
                let Some(sub) = self.subs.get(&(user, device)) else {
                    return;
                };
                let acks: Vec<(ChatId, u64)> = sub
                    .received
                    .iter()
                    .filter_map(|(chat, seqs)| Some((*chat, *seqs.last()?)))
                    .collect();
                for (chat, up_to) in acks {
                    self.mark(user, device, chat, ReceiptKind::Delivered, up_to);
                }
            }
            Op::Delete { user, to, back } => {
                let Some(chat) = self.resolve(user, to) else {
                    return;
                };
                let seq = self.model.head(chat).saturating_sub(u64::from(back));
                self.delete(user, chat, seq);
            }
            Op::ChatTtl { user, to, ttl } => {
                let Some(chat) = self.resolve(user, to) else {
                    return;
                };
                let ttl_ms = [0, 5_000, 60_000][ttl as usize % 3];
                let want = self.model.member_or(chat, user);
                let got = self.engine().set_chat_ttl(UserId(user), chat, ttl_ms);
                if want.is_ok() {
                    self.model.chats.entry(chat).or_default().ttl_ms = ttl_ms;
                }
                self.expect("set_chat_ttl", got, want);
            }
            Op::Typing { user, device, to } => {
                let Some(chat) = self.resolve(user, to) else {
                    return;
                };
                let want = self.model.member_or(chat, user);
                let got = self
                    .engine()
                    .typing(UserId(user), DeviceId(device), chat, true);
                self.expect("typing", got, want);
            }
            Op::Advance { ms } => {
                self.clock.advance(ms);
                self.model.now = self.model.now.max(self.clock.now().0);
                let now = self.engine().now();
                assert_eq!(now.0, self.model.now, "{}", self.context("engine time"));
            }
            Op::Subscribe { user, device } => self.subscribe(user, device),
            Op::Unsubscribe { user, device } => {
                self.subs.remove(&(user, device));
            }
            Op::Drain => self.drain(),
            Op::Read {
                user,
                to,
                which,
                n,
                at,
            } => {
                if let Some(chat) = self.resolve(user, to) {
                    self.read(user, chat, which, usize::from(n), at);
                }
            }
            Op::Chats { user } => self.check_chats(user),
            Op::Status { user, to, back } => {
                if let Some(chat) = self.resolve(user, to) {
                    let seq = (self.model.head(chat) + 1).saturating_sub(u64::from(back));
                    self.status(user, chat, seq);
                }
            }
            Op::Check => self.check_all(),
            Op::Checkpoint => self.engine().checkpoint().expect("checkpoint"),
            Op::Reopen => self.reopen(None),
            Op::PowerCut { damage, seed } => self.reopen(Some(match damage {
                0 => Damage::DropUnsynced,
                1 => Damage::TornPrefix { seed },
                _ => Damage::TornGarbage { seed },
            })),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn send(
        &mut self,
        from: u64,
        device: u32,
        chat: ChatId,
        retry: Option<u8>,
        ttl: u8,
        reply: Option<u8>,
        body_len: u8,
        media_len: Option<u8>,
    ) {
        let used = self
            .model
            .ids
            .get(&(chat, from))
            .filter(|ids| !ids.is_empty());
        let reused = retry.zip(used).map(|(k, ids)| ids[k as usize % ids.len()]);
        let client_msg_id = reused.unwrap_or_else(|| self.fresh_id());
        let head = self.model.head(chat);
        let reply_to = reply.map(|k| {
            if k == 0 {
                0
            } else {
                (head + 2).saturating_sub(u64::from(k))
            }
        });
        let ttl_ms = [None, Some(0), Some(3_000), Some(10_000), None][ttl as usize % 5];
        let fill = (self.model.next_id % 251) as u8;
        let body = Bytes::from(vec![fill; usize::from(body_len)]);
        let media = media_len.map_or_else(Bytes::new, |n| Bytes::from(vec![7; usize::from(n)]));
        let kind = if media.is_empty() {
            ContentKind::Text
        } else {
            ContentKind::Image
        };
        let out = Outgoing {
            to: To::Chat(chat),
            client_msg_id,
            kind,
            body: body.clone(),
            media: media.clone(),
            reply_to: reply_to.map(Seq),
            ttl_ms,
        };
        let got = self.engine().send(UserId(from), DeviceId(device), out);
        let context = self.context(&format!("send {from}/{device} to {chat:?}"));
        // The engine checks in this order: sizes, membership, memory, reply-to.
        let refused = if body.len() > BODY_BYTES_MAX || media.len() > MEDIA_BYTES_MAX {
            Some(Want::TooLarge)
        } else if !self.model.is_member(chat, from) {
            Some(Want::NotAMember(from))
        } else {
            None
        };
        if let Some(want) = refused {
            match got {
                Err(error) => return check_error(&error, want, &context),
                Ok(sent) => panic!("{context}: stored {sent:?}, want {want:?}"),
            }
        }
        let key = (chat, from, client_msg_id);
        match (self.model.remembered(&key), &got) {
            (Some((seq, timestamp, must)), Ok(sent)) if must || sent.duplicate => {
                // A retry: the original, nothing stored. (Past the window the engine may still
                // remember it: its sequencer keeps applied sends until it prunes them.)
                assert!(sent.duplicate, "{context}: a remembered retry stored again");
                assert_eq!(
                    (sent.chat, sent.seq.0, sent.timestamp.0),
                    (chat, seq, timestamp),
                    "{context}: a retry returns the original"
                );
                return;
            }
            (Some((_, _, true)), Err(error)) => panic!("{context}: retry failed: {error:?}"),
            _ => {}
        }
        if let Some(reply) = reply_to
            && (reply == 0 || reply > head)
        {
            match got {
                Err(error) => return check_error(&error, Want::Invalid, &context),
                Ok(sent) => panic!("{context}: stored {sent:?} with a bad reply-to"),
            }
        }
        let sent = got.unwrap_or_else(|error| panic!("{context}: {error:?}"));
        let ttl_ms = ttl_ms.unwrap_or_else(|| self.model.chats.get(&chat).map_or(0, |c| c.ttl_ms));
        let seq = self.model.store(
            chat,
            ModelMessage {
                seq: 0,
                timestamp: 0,
                sender: from,
                device,
                client_msg_id,
                kind,
                ttl_ms,
                reply_to,
                media,
                body,
                recipients: BTreeSet::new(),
                deleted: false,
            },
        );
        assert_eq!(
            (sent.chat, sent.seq.0, sent.timestamp.0, sent.duplicate),
            (chat, seq, self.model.now, false),
            "{context}"
        );
        self.model
            .ids
            .entry((chat, from))
            .or_default()
            .push(client_msg_id);
    }

    fn create_group(&mut self, by: u64, members: Vec<u64>) {
        let ids: Vec<UserId> = members.iter().copied().map(UserId).collect();
        let got = self.engine().create_group(UserId(by), &ids);
        let mut users: Vec<u64> = members.into_iter().filter(|u| *u != by).collect();
        users.sort_unstable();
        users.dedup();
        let context = self.context("create_group");
        if users.len() + 1 > GROUP_CAP {
            match got {
                Err(error) => return check_error(&error, Want::GroupFull, &context),
                Ok(chat) => panic!("{context}: created {chat:?} past the cap"),
            }
        }
        let chat = got.unwrap_or_else(|error| panic!("{context}: {error:?}"));
        assert!(!chat.is_direct() && !self.model.chats.contains_key(&chat));
        let mut roles: BTreeMap<u64, Role> = users.iter().map(|u| (*u, Role::Member)).collect();
        roles.insert(by, Role::Admin);
        let joined = roles.keys().map(|u| (*u, 0)).collect();
        self.model.chats.insert(
            chat,
            ModelChat {
                members: Some(roles),
                joined,
                ..ModelChat::default()
            },
        );
        self.model.groups.push(chat);
        self.model.system_message(chat, "create", by, &users);
    }

    /// `by` must be an admin of the group.
    fn admin_or(&self, chat: ChatId, by: u64) -> Result<&BTreeMap<u64, Role>, Want> {
        let members = self.model.members(chat).expect("a group");
        match members.get(&by) {
            Some(Role::Admin) => Ok(members),
            Some(Role::Member) => Err(Want::NotAdmin(by)),
            None => Err(Want::NotAMember(by)),
        }
    }

    fn add(&mut self, chat: ChatId, by: u64, users: Vec<u64>) {
        let ids: Vec<UserId> = users.iter().copied().map(UserId).collect();
        let got = self.engine().add_members(UserId(by), chat, &ids);
        let want = self.admin_or(chat, by).and_then(|members| {
            let mut new: Vec<u64> = users
                .iter()
                .copied()
                .filter(|u| !members.contains_key(u))
                .collect();
            new.sort_unstable();
            new.dedup();
            if members.len() + new.len() > GROUP_CAP {
                Err(Want::GroupFull)
            } else {
                Ok(new)
            }
        });
        if let Ok(new) = &want
            && !new.is_empty()
        {
            let head = self.model.head(chat);
            let state = self.model.chats.get_mut(&chat).unwrap();
            for user in new {
                state.members.as_mut().unwrap().insert(*user, Role::Member);
                state.joined.insert(*user, head);
            }
            self.model.system_message(chat, "add", by, new);
        }
        self.expect("add_members", got, want.map(drop));
    }

    fn remove(&mut self, chat: ChatId, by: u64, user: u64) {
        let got = self.engine().remove_member(UserId(by), chat, UserId(user));
        let members = self.model.members(chat).expect("a group");
        let want = if !members.contains_key(&by) {
            Err(Want::NotAMember(by))
        } else if by != user && members.get(&by) != Some(&Role::Admin) {
            Err(Want::NotAdmin(by))
        } else if !members.contains_key(&user) {
            Err(Want::NotAMember(user))
        } else {
            Ok(())
        };
        if want.is_ok() {
            self.model.leave(chat, user);
            let members = self.model.members(chat).unwrap();
            let successor = if members.values().any(|r| *r == Role::Admin) {
                None
            } else {
                members.keys().next().copied()
            };
            self.model.system_message(chat, "remove", by, &[user]);
            // When the last admin left, the member with the lowest id becomes admin: a change
            // recorded as done by the one who left.
            if let Some(successor) = successor {
                let members = self.model.chats.get_mut(&chat).unwrap().members.as_mut();
                members.unwrap().insert(successor, Role::Admin);
                self.model
                    .system_message(chat, "promote", user, &[successor]);
            }
        }
        self.expect("remove_member", got, want);
    }

    fn set_role(&mut self, chat: ChatId, by: u64, user: u64, promote: bool) {
        let got = if promote {
            self.engine().promote(UserId(by), chat, UserId(user))
        } else {
            self.engine().demote(UserId(by), chat, UserId(user))
        };
        let want = self.admin_or(chat, by).and_then(|members| {
            let admins = members.values().filter(|r| **r == Role::Admin).count();
            match members.get(&user) {
                None => Err(Want::NotAMember(user)),
                Some(Role::Admin) if !promote && admins == 1 => Err(Want::Invalid),
                Some(_) => Ok(()),
            }
        });
        if want.is_ok() {
            let role = if promote { Role::Admin } else { Role::Member };
            let members = self.model.chats.get_mut(&chat).unwrap().members.as_mut();
            members.unwrap().insert(user, role);
            let op = if promote { "promote" } else { "demote" };
            self.model.system_message(chat, op, by, &[user]);
        }
        self.expect("set_role", got, want);
    }

    fn mark(&mut self, user: u64, device: u32, chat: ChatId, kind: ReceiptKind, up_to: u64) {
        let engine = self.engine();
        // Watermarks are readable by members only (non-members: an error, compared as such).
        let watermarks = |engine: &Engine| {
            let read = engine.read_up_to(UserId(user), chat).map(|s| s.0).ok();
            let delivered = engine.delivered_up_to(UserId(user), DeviceId(device), chat);
            (read, delivered.map(|s| s.0).ok())
        };
        let before = watermarks(engine);
        let got = engine
            .mark(UserId(user), DeviceId(device), chat, kind, Seq(up_to))
            .map(|s| s.0);
        let after = watermarks(engine);
        assert!(
            after.0 >= before.0 && after.1 >= before.1,
            "watermarks went back"
        );
        let what = format!("mark {kind:?} {user}/{device} {chat:?} {up_to}");
        let context = self.context(&what);
        let want = self.model.member_or(chat, user).map(|()| {
            let model = &mut self.model;
            let delivered = model.delivered_of(user, device, chat);
            let current = match kind {
                ReceiptKind::Delivered => delivered,
                ReceiptKind::Read => model.read_of(user, chat).min(delivered),
            };
            let up_to = up_to.min(model.head(chat));
            if up_to <= current {
                return current;
            }
            Model::raise(
                model.delivered.entry((user, device, chat)).or_default(),
                up_to,
            );
            if kind == ReceiptKind::Read {
                Model::raise(model.read.entry((user, chat)).or_default(), up_to);
            }
            up_to
        });
        self.expect(&what, got, want);
        // Watermarks never go back, and are what the model says.
        // (For members: others may not read watermarks.)
        let engine = self.engine();
        if let Ok(read) = engine.read_up_to(UserId(user), chat) {
            assert_eq!(
                read.0,
                self.model.read_of(user, chat),
                "{context}: read watermark"
            );
            let delivered = engine.delivered_up_to(UserId(user), DeviceId(device), chat);
            assert_eq!(
                delivered.unwrap().0,
                self.model.delivered_of(user, device, chat),
                "{context}: delivered watermark"
            );
        }
    }

    fn delete(&mut self, user: u64, chat: ChatId, seq: u64) {
        let got = self.engine().delete(UserId(user), chat, Seq(seq));
        let want = self.model.member_or(chat, user).and_then(|()| {
            let message = self
                .model
                .message_visible(chat, seq)
                .ok_or(Want::NoSuchMessage)?;
            if message.sender != user {
                return Err(Want::NotSender);
            }
            Ok(())
        });
        if want.is_ok() {
            let chat = self.model.chats.get_mut(&chat).unwrap();
            chat.messages[seq as usize - 1].deleted = true;
        }
        self.expect("delete", got, want);
    }

    fn subscribe(&mut self, user: u64, device: u32) {
        // A second subscription of a device replaces the first: drop it first.
        self.subs.remove(&(user, device));
        let live = self
            .engine()
            .subscribe(UserId(user), DeviceId(device))
            .expect("subscribe");
        let start = self
            .model
            .chats
            .keys()
            .map(|chat| (*chat, self.model.delivered_of(user, device, *chat)))
            .collect();
        self.subs.insert(
            (user, device),
            Sub {
                live,
                start,
                received: HashMap::new(),
            },
        );
    }

    /// Drains every subscription and checks what each yielded against the model.
    fn drain(&mut self) {
        let step = self.step;
        let model = &self.model;
        for (&(user, device), sub) in &mut self.subs {
            let context = format!("step {step}: subscription {user}/{device}");
            for _ in 0..100_000 {
                let event = match sub.live.try_next() {
                    Ok(Some(event)) => event,
                    Ok(None) => break,
                    Err(error) => panic!("{context}: {error:?}"),
                };
                let Event::Message { chat, message } = event else {
                    continue;
                };
                let seq = message.message.seq.0;
                let stored = model
                    .chats
                    .get(&chat)
                    .and_then(|c| c.messages.get((seq as usize).wrapping_sub(1)))
                    .unwrap_or_else(|| panic!("{context}: no message {seq} in {chat:?}"));
                // Live events show the message as stored; a catch-up read after a delete shows
                // the tombstone.
                let mut want = model_shown(stored);
                if !message.deleted {
                    want.deleted = false;
                    want.media = stored.media.clone();
                    want.body = stored.body.clone();
                }
                assert_eq!(shown(&message), want, "{context}");
                assert!(
                    !(stored.sender == user && stored.device == device),
                    "{context}: got its own message {seq} of {chat:?}"
                );
                let start = sub.start.get(&chat).copied().unwrap_or(0);
                assert!(
                    seq > start,
                    "{context}: {seq} of {chat:?} was delivered before it subscribed ({start})"
                );
                let received = sub.received.entry(chat).or_default();
                assert!(
                    received.last().is_none_or(|last| *last < seq),
                    "{context}: {seq} of {chat:?} after {received:?} (duplicate or out of order)"
                );
                received.push(seq);
                assert!(
                    stored.recipients.contains(&user),
                    "{context}: {seq} of {chat:?} delivered to a non-recipient"
                );
            }
            // Everything it must have received by now, it has.
            for (&chat, state) in &model.chats {
                let start = sub.start.get(&chat).copied().unwrap_or(0);
                let received = sub.received.get(&chat);
                let joined = model.joined(chat, user);
                for message in &state.messages[start.min(state.messages.len() as u64) as usize..] {
                    let seq = message.seq;
                    let must = message.recipients.contains(&user)
                        && !(message.sender == user && message.device == device)
                        && !message.expired(model.now)
                        // Someone removed stops receiving, even what they had not yet received;
                        // someone who joined (again) gets nothing from before.
                        && model.is_member(chat, user)
                        && seq > joined;
                    if must {
                        assert!(
                            received.is_some_and(|r| r.contains(&seq)),
                            "{context}: missing {seq} of {chat:?} (received {received:?}, \
                             subscribed at {start})"
                        );
                    }
                }
            }
        }
    }

    fn read(&self, user: u64, chat: ChatId, which: u8, n: usize, at: u8) {
        let engine = self.engine();
        let model = &self.model;
        let what = format!("read {which} by {user} of {chat:?}");
        let head = model.head(chat);
        let joined = model.joined(chat, user);
        let visible = model.visible_to(chat, user);
        let member = model.member_or(chat, user);
        if which == 4 {
            let seq = u64::from(at) % (head + 2);
            let got = engine
                .message(UserId(user), chat, Seq(seq))
                .map(|m| m.map(|m| shown(&m)));
            let want = member.map(|()| {
                let message = model.message_visible(chat, seq);
                message.filter(|m| m.seq > joined).map(model_shown)
            });
            return self.expect(&what, got, want);
        }
        let seq = u64::from(at) % (head + 3);
        let (request, want): (History, Vec<&ModelMessage>) = match which {
            0 => (
                History::Latest(n),
                visible[visible.len().saturating_sub(n)..].to_vec(),
            ),
            1 => {
                let before: Vec<_> = visible.iter().copied().filter(|m| m.seq < seq).collect();
                (
                    History::Before(Seq(seq), n),
                    before[before.len().saturating_sub(n)..].to_vec(),
                )
            }
            2 => (
                History::After(Seq(seq), n),
                visible
                    .iter()
                    .copied()
                    .filter(|m| m.seq > seq)
                    .take(n)
                    .collect(),
            ),
            _ => {
                let all = model.chats.get(&chat).map_or(&[][..], |c| &c.messages[..]);
                let t = match all.get(usize::from(at) % (all.len() + 1)) {
                    Some(m) => m.timestamp + u64::from(at % 2),
                    None => model.now,
                };
                // The first message stored at or after t (expired or not) is the pivot: half
                // of the chat's visible messages before it, the rest from it on; then what is
                // from before the user joined is hidden.
                let pivot = all
                    .iter()
                    .find(|m| m.timestamp >= t)
                    .map_or(head + 1, |m| m.seq);
                let chat_visible = model.visible(chat);
                let before = chat_visible.iter().copied().filter(|m| m.seq < pivot);
                let before: Vec<_> = before.collect();
                let mut want = before[before.len().saturating_sub(n / 2)..].to_vec();
                let rest = n - want.len();
                let from_pivot = chat_visible.iter().copied().filter(|m| m.seq >= pivot);
                want.extend(from_pivot.take(rest));
                want.retain(|m| m.seq > joined);
                (History::Around(Timestamp(t), n), want)
            }
        };
        let got = engine
            .history(UserId(user), chat, request)
            .map(|views| views.iter().map(shown).collect::<Vec<_>>());
        let want = member.map(|()| want.into_iter().map(model_shown).collect());
        self.expect(&format!("{what} {request:?}"), got, want);
    }

    fn check_chats(&self, user: u64) {
        let model = &self.model;
        let mut chats: Vec<ChatId> = model
            .chats
            .keys()
            .copied()
            .filter(|chat| {
                model.is_member(*chat, user) && (!chat.is_direct() || model.listed.contains(chat))
            })
            .collect();
        // The newest visible message, unless it is from before the user joined.
        let last = |chat: &ChatId| {
            let joined = model.joined(*chat, user);
            let visible = model.visible(*chat);
            visible
                .last()
                .filter(|m| m.seq > joined)
                .map(|m| model_shown(m))
        };
        chats.sort_by_key(|chat| std::cmp::Reverse(last(chat).map_or(0, |m| m.timestamp)));
        let want: Vec<_> = chats
            .iter()
            .map(|chat| {
                let head = model.head(*chat);
                (*chat, last(chat), model.unread(user, *chat), head)
            })
            .collect();
        let got: Vec<_> = self
            .engine()
            .chats(UserId(user))
            .expect("chats")
            .into_iter()
            .map(|s| (s.chat, s.last.as_ref().map(shown), s.unread, s.head.0))
            .collect();
        assert_eq!(got, want, "{}", self.context(&format!("chats of {user}")));
    }

    fn status(&self, user: u64, chat: ChatId, seq: u64) {
        let model = &self.model;
        let want = model.member_or(chat, user).and_then(|()| {
            let message = model
                .message_visible(chat, seq)
                .ok_or(Want::NoSuchMessage)?;
            let sender = message.sender;
            let admin = model
                .members(chat)
                .is_some_and(|m| m.get(&user) == Some(&Role::Admin));
            if sender != user && !admin {
                return Err(Want::NotSender);
            }
            let members: Vec<(UserId, Status)> = model
                .users_of(chat)
                .into_iter()
                .filter(|u| *u != sender)
                .map(|u| (UserId(u), model.status(u, chat, seq)))
                .collect();
            let recipients: Vec<u64> = match chat.direct_users() {
                Some((a, b)) => vec![if a.0 == sender { b.0 } else { a.0 }],
                None => model
                    .users_of(chat)
                    .into_iter()
                    .filter(|u| *u != sender)
                    .collect(),
            };
            let statuses: Vec<Status> = recipients
                .iter()
                .map(|u| model.status(*u, chat, seq))
                .collect();
            let counts = (
                recipients.len() as u32,
                statuses.iter().filter(|s| **s >= Status::Delivered).count() as u32,
                statuses.iter().filter(|s| **s == Status::Read).count() as u32,
            );
            Ok((counts, members))
        });
        let got = self.engine().status(UserId(user), chat, Seq(seq)).map(|s| {
            let counts = (s.counts.recipients, s.counts.delivered, s.counts.read);
            (counts, s.members)
        });
        self.expect(&format!("status {user} {chat:?} {seq}"), got, want);
    }

    /// Everything every user can see, against the model.
    fn check_all(&self) {
        for user in 1..=USERS {
            self.check_chats(user);
            let chats: Vec<ChatId> = self.model.chats.keys().copied().collect();
            for chat in chats {
                let engine = self.engine();
                let model = &self.model;
                let context = self.context(&format!("check {user} {chat:?}"));
                if !model.is_member(chat, user) {
                    let got = engine.history(UserId(user), chat, History::Latest(1));
                    assert!(
                        matches!(got, Err(Error::NotAMember { .. })),
                        "{context}: {got:?}"
                    );
                    continue;
                }
                let history: Vec<Shown> = engine
                    .history(UserId(user), chat, History::Latest(10_000))
                    .expect("history")
                    .iter()
                    .map(shown)
                    .collect();
                let visible = model.visible_to(chat, user);
                let want: Vec<Shown> = visible.into_iter().map(model_shown).collect();
                assert_eq!(history, want, "{context}: history");
                let unread = engine.unread(UserId(user), chat).unwrap();
                assert_eq!(unread, model.unread(user, chat), "{context}: unread");
                let read = engine.read_up_to(UserId(user), chat).unwrap().0;
                assert_eq!(read, model.read_of(user, chat), "{context}: read");
                for device in 0..DEVICES {
                    let delivered = engine
                        .delivered_up_to(UserId(user), DeviceId(device), chat)
                        .unwrap()
                        .0;
                    let want = model.delivered_of(user, device, chat);
                    assert_eq!(delivered, want, "{context}: delivered {device}");
                }
                let members = engine.members(UserId(user), chat).unwrap();
                let want: Vec<(UserId, Role)> = match model.members(chat) {
                    Some(members) => members.iter().map(|(u, r)| (UserId(*u), *r)).collect(),
                    None => model
                        .users_of(chat)
                        .into_iter()
                        .map(|u| (UserId(u), Role::Member))
                        .collect(),
                };
                assert_eq!(members, want, "{context}: members");
            }
        }
    }

    /// Closes (or kills, cutting the power) and reopens the engine; every acknowledged call
    /// must still be there.
    fn reopen(&mut self, cut: Option<Damage>) {
        // Subscriptions hold the engine (and its folder's lock).
        self.subs.clear();
        let engine = self.engine.take().expect("open");
        match cut {
            None => engine.close().expect("close"),
            // The process dies: nothing it would still write reaches the disk.
            Some(_) => self.sim.power_off_after(0),
        }
        drop(engine);
        if let Some(damage) = cut {
            self.sim.power_cut(damage);
        }
        self.open();
        self.check_all();
    }
}

fn run(shards: u32, ops: Vec<Op>) {
    let mut harness = Harness::new(shards);
    for op in ops {
        harness.apply(op);
    }
    harness.drain();
    harness.check_all();
    harness.reopen(Some(Damage::TornGarbage { seed: 7 }));
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(500),
        ..ProptestConfig::default()
    })]

    #[test]
    fn the_engine_behaves_like_the_model(
        shards in 1..=2u32,
        ops in proptest::collection::vec(op(), 1..=100),
    ) {
        run(shards, ops);
    }
}

/// "Up to n messages around a time" must pivot on the first message stored at or after it.
/// When several messages share that millisecond in different batches (common: every send is
/// its own batch), `Index::first_at_or_after` (index/src/index.rs) starts its search at the last
/// run whose first timestamp is `<= t` and so skips the earlier messages at `t`: it should
/// start at the last run whose first timestamp is `< t` (or at the first run). Outside the
/// engine crate, so reported, not fixed.
#[test]
fn around_a_time_shared_by_several_messages() {
    let mut h = Harness::new(1);
    let chat = ChatId::direct(UserId(1), UserId(2));
    for _ in 0..4 {
        h.send(1, 0, chat, None, 0, None, 4, None);
    }
    let got = h
        .engine()
        .history(UserId(2), chat, History::Around(T0, 2))
        .unwrap();
    let seqs: Vec<u64> = got.iter().map(|m| m.message.seq.0).collect();
    assert_eq!(
        seqs,
        [1, 2],
        "all four were stored at T0: the pivot is seq 1"
    );
}

/// The spec: "someone added later does not receive earlier messages" (nor sees them, nor counts
/// them as unread): only the system message of the add.
#[test]
fn a_member_added_later_receives_no_earlier_message() {
    let mut h = Harness::new(1);
    h.create_group(1, vec![2]);
    let group = h.model.groups[0];
    for _ in 0..3 {
        h.send(1, 0, group, None, 0, None, 4, None);
    }
    h.add(group, 1, vec![3]);
    h.subscribe(3, 0);
    let mut seqs = Vec::new();
    let sub = h.subs.get_mut(&(3, 0)).unwrap();
    while let Some(event) = sub.live.try_next().unwrap() {
        if let Event::Message { message, .. } = event {
            seqs.push(message.message.seq.0);
        }
    }
    assert_eq!(seqs, [5], "only the system message of the add");
    assert_eq!(h.engine().unread(UserId(3), group).unwrap(), 1);
    let history = h.engine().history(UserId(3), group, History::Latest(10));
    assert_eq!(history.unwrap().len(), 1);
}
