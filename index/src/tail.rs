//! The tail cache: the newest messages of recently read chats, in memory, so that "the latest
//! 50" of a busy chat is a few clones instead of a few batch reads.
//!
//! A chat gets a tail when a query reads its newest messages; from then on every message the
//! index applies to it is appended (copied out of its batch, so the cache never pins batch
//! buffers), and the oldest are dropped past [`TAIL_MESSAGES_MAX`]. The cache as a whole holds
//! at most [`TAIL_CACHE_BYTES_MAX`]; past that the least recently used tails go. Deletions and
//! TTLs are applied when a query reads the tail, as they are for messages read from the log.

use std::collections::{HashMap, VecDeque};

use bytes::Bytes;
use missive_log::ChatId;
use parking_lot::Mutex;

use crate::codec::Message;
use crate::index::MessageView;

/// Messages kept per chat.
pub const TAIL_MESSAGES_MAX: usize = 64;

/// Bytes all tails may hold together (payloads plus a fixed overhead per message).
pub const TAIL_CACHE_BYTES_MAX: usize = 64 << 20;

/// Bookkeeping bytes counted per cached message besides its body and media.
const MESSAGE_OVERHEAD_BYTES: usize = 160;

#[derive(Debug, Default)]
struct Tail {
    /// Consecutive messages, oldest first, as stored (not filtered by TTL or deletion).
    messages: VecDeque<MessageView>,
    bytes: usize,
    last_used: u64,
}

impl Tail {
    fn last_seq(&self) -> Option<u64> {
        self.messages.back().map(|m| m.message.seq.0)
    }

    fn first_seq(&self) -> Option<u64> {
        self.messages.front().map(|m| m.message.seq.0)
    }
}

#[derive(Debug, Default)]
struct Inner {
    tails: HashMap<ChatId, Tail>,
    bytes: usize,
    clock: u64,
}

/// See the module documentation. A cache: cloning starts empty, and it never counts in equality.
#[derive(Debug, Default)]
pub(crate) struct TailCache {
    inner: Mutex<Inner>,
}

impl Clone for TailCache {
    fn clone(&self) -> TailCache {
        TailCache::default()
    }
}

impl PartialEq for TailCache {
    fn eq(&self, _: &TailCache) -> bool {
        true
    }
}

impl Eq for TailCache {}

fn cost(view: &MessageView) -> usize {
    view.message.body.len() + view.message.media.len() + MESSAGE_OVERHEAD_BYTES
}

/// A copy of `view` that owns its bytes.
fn detached(view: &MessageView) -> MessageView {
    let mut copy = view.clone();
    copy.message.body = Bytes::copy_from_slice(&view.message.body);
    copy.message.media = Bytes::copy_from_slice(&view.message.media);
    copy
}

impl Inner {
    fn push(&mut self, chat: ChatId, view: &MessageView) {
        let Some(tail) = self.tails.get_mut(&chat) else {
            return;
        };
        if tail
            .last_seq()
            .is_some_and(|last| last + 1 != view.message.seq.0)
        {
            // Not contiguous (cannot happen for a live chat): drop the tail rather than lie.
            self.bytes -= tail.bytes;
            self.tails.remove(&chat);
            return;
        }
        let added = cost(view);
        tail.messages.push_back(detached(view));
        tail.bytes += added;
        self.bytes += added;
        while tail.messages.len() > TAIL_MESSAGES_MAX {
            let dropped = tail.messages.pop_front().expect("longer than the maximum");
            tail.bytes -= cost(&dropped);
            self.bytes -= cost(&dropped);
        }
        self.evict();
    }

    /// Drops least recently used tails until the cache fits its budget.
    fn evict(&mut self) {
        while self.bytes > TAIL_CACHE_BYTES_MAX {
            let Some((&oldest, _)) = self.tails.iter().min_by_key(|(_, tail)| tail.last_used)
            else {
                break;
            };
            let tail = self.tails.remove(&oldest).expect("just found");
            self.bytes -= tail.bytes;
        }
    }
}

impl TailCache {
    /// Appends a message the index applied, if its chat has a tail (`view` is only called then).
    pub(crate) fn push(&self, chat: ChatId, view: impl FnOnce() -> MessageView) {
        let mut inner = self.inner.lock();
        if inner.tails.contains_key(&chat) {
            inner.push(chat, &view());
        }
    }

    /// Gives `chat` a tail holding `newest`: the chat's newest messages, consecutive, oldest first,
    /// as stored (read with no TTL filter). Ignored if they are not consecutive up to `head`.
    pub(crate) fn fill(&self, chat: ChatId, head: u64, newest: &[MessageView]) {
        let consecutive = newest
            .windows(2)
            .all(|w| w[0].message.seq.0 + 1 == w[1].message.seq.0);
        let ends_at_head = newest.last().is_some_and(|m| m.message.seq.0 == head);
        if !consecutive || !ends_at_head {
            return;
        }
        let mut inner = self.inner.lock();
        inner.clock += 1;
        let last_used = inner.clock;
        let messages: VecDeque<MessageView> = newest
            [newest.len().saturating_sub(TAIL_MESSAGES_MAX)..]
            .iter()
            .map(detached)
            .collect();
        let bytes = messages.iter().map(cost).sum();
        if let Some(old) = inner.tails.insert(
            chat,
            Tail {
                messages,
                bytes,
                last_used,
            },
        ) {
            inner.bytes -= old.bytes;
        }
        inner.bytes += bytes;
        inner.evict();
    }

    /// The newest `n` messages visible under `visible`, oldest first, if the tail can tell:
    /// it must end at `head` and either hold `n` visible messages or start at the chat's first.
    pub(crate) fn latest(
        &self,
        chat: ChatId,
        head: u64,
        n: usize,
        visible: impl Fn(&MessageView) -> Option<MessageView>,
    ) -> Option<Vec<MessageView>> {
        let mut inner = self.inner.lock();
        inner.clock += 1;
        let now = inner.clock;
        let tail = inner.tails.get_mut(&chat)?;
        if tail.last_seq() != Some(head) {
            return None;
        }
        tail.last_used = now;
        let mut out: Vec<MessageView> = tail
            .messages
            .iter()
            .rev()
            .filter_map(&visible)
            .take(n)
            .collect();
        if out.len() < n && tail.first_seq() != Some(1) {
            return None;
        }
        out.reverse();
        Some(out)
    }

    /// Forgets everything (retention removed segments; their messages must not be served).
    pub(crate) fn clear(&self) {
        let mut inner = self.inner.lock();
        inner.tails.clear();
        inner.bytes = 0;
    }

    /// Whether `chat` has a tail (for tests of the index's own behaviour).
    #[cfg(test)]
    pub(crate) fn holds(&self, chat: ChatId) -> bool {
        self.inner.lock().tails.contains_key(&chat)
    }
}

/// Decodes a stored message into the view a tail keeps (no TTL filter, not marked deleted).
pub(crate) fn stored_view(
    lsn: missive_log::Lsn,
    timestamp: missive_log::Timestamp,
    message: Message,
) -> MessageView {
    MessageView {
        lsn,
        timestamp,
        deleted: false,
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::ContentKind;
    use missive_log::{DeviceId, Lsn, Seq, Timestamp, UserId};

    fn view(seq: u64, body_bytes: usize) -> MessageView {
        stored_view(
            Lsn(seq),
            Timestamp(seq),
            Message {
                seq: Seq(seq),
                sender: UserId(1),
                sender_device: DeviceId(0),
                client_msg_id: [0; 16],
                content: ContentKind::Text,
                ttl_ms: 0,
                reply_to: None,
                media: Bytes::new(),
                body: Bytes::from(vec![7; body_bytes]),
            },
        )
    }

    #[test]
    fn a_tail_follows_its_chat_and_answers_only_what_it_holds() {
        let cache = TailCache::default();
        let chat = ChatId::group(1);
        cache.push(chat, || unreachable!("no tail yet: nothing is built"));
        let stored: Vec<MessageView> = (1..=10).map(|seq| view(seq, 8)).collect();
        cache.fill(chat, 10, &stored);
        assert!(cache.holds(chat));
        for seq in 11..=100 {
            cache.push(chat, || view(seq, 8));
        }
        let all = |m: &MessageView| Some(m.clone());
        let latest = cache.latest(chat, 100, 50, all).unwrap();
        assert_eq!(
            latest.iter().map(|m| m.message.seq.0).collect::<Vec<_>>(),
            (51..=100).collect::<Vec<_>>()
        );
        // Only 64 are kept and the first is gone: asking for more than it holds falls back.
        assert!(cache.latest(chat, 100, 65, all).is_none());
        // A head it has not seen means the tail is behind: no answer.
        assert!(cache.latest(chat, 101, 5, all).is_none());
        // A gap drops the tail instead of serving around it.
        cache.push(chat, || view(102, 8));
        assert!(!cache.holds(chat));
    }

    #[test]
    fn tails_past_the_budget_are_evicted_least_recently_used_first() {
        let cache = TailCache::default();
        let big = TAIL_CACHE_BYTES_MAX / 5; // four fit, a fifth does not
        for group in 0..4u64 {
            cache.fill(ChatId::group(group), 1, &[view(1, big)]);
        }
        // Touch group 0, then add a fifth: group 1, the least recently used, goes.
        assert!(
            cache
                .latest(ChatId::group(0), 1, 1, |m| Some(m.clone()))
                .is_some()
        );
        cache.fill(ChatId::group(4), 1, &[view(1, big)]);
        assert!(cache.holds(ChatId::group(0)) && cache.holds(ChatId::group(4)));
        assert!(!cache.holds(ChatId::group(1)));
        assert!(cache.inner.lock().bytes <= TAIL_CACHE_BYTES_MAX);
    }
}
