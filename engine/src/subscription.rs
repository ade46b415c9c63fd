//! A device's stream: its backlog from the inbox, then live events, with no gaps and no
//! duplicates per chat.
//!
//! The hub's queue is registered *before* the backlog is read, so every message is either in the
//! backlog (applied before the read) or published after registration (applied after), and
//! perhaps both: a per-chat cursor (the last seq yielded) drops what was already yielded. A live
//! message above `cursor + 1` means something was missed (the queue lagged, or the device sent
//! in the chat itself): the chat is caught up from the index, which always has every applied
//! message. A `Lagged` signal from the hub does the same for every chat of the user. So a
//! slow device never stalls a sender and never loses a message; it only loses ephemeral events
//! (typing, presence, receipts) that were published while it lagged — receipts are watermarks
//! it can read again.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use missive_fanout::{Delivery, Subscription as Live};
use missive_index::MessageView;
use missive_log::{ChatId, DeviceId, Seq, UserId};

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::event::Event;

/// Messages read from the index per chat and step while catching up.
const PAGE: usize = 64;

/// The stream of one device of one user: first everything after the device's delivered
/// watermark, chat by chat in seq order, then live events; per chat no gaps and no duplicates.
/// A device whose queue overflowed catches up from the index by itself: it never loses a
/// message, only ephemeral events (typing, presence, receipts) published while it lagged.
pub struct Subscription {
    engine: Engine,
    live: Live<Event>,
    user: UserId,
    device: DeviceId,
    /// Per chat, the last seq yielded; at first the device's delivered watermark when it
    /// subscribed. Never the watermark since: the device's own sends raise it, and must not
    /// hide from it what was already on its way (absent: a chat new since, read from the
    /// user's join point).
    cursors: HashMap<ChatId, u64>,
    /// Chats to catch up from the index, in order.
    behind: VecDeque<ChatId>,
    /// Events ready to yield.
    ready: VecDeque<Event>,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("user", &self.user)
            .field("device", &self.device)
            .field("behind", &self.behind.len())
            .finish_non_exhaustive()
    }
}

impl Subscription {
    pub(crate) fn new(engine: Engine, user: UserId, device: DeviceId) -> Subscription {
        // Live first, then the backlog: nothing falls between them.
        let live = engine.inner.hub.subscribe(user, device);
        let (behind, cursors) = {
            let index = engine.inner.index.read();
            let behind = index
                .inbox(user, device)
                .into_iter()
                .map(|entry| entry.chat)
                .collect();
            let cursors = index
                .chats_of(user)
                .map(|chat| {
                    let delivered = index.delivered_up_to(user, device, chat);
                    (chat, delivered.max(index.joined_at(chat, user)).0)
                })
                .collect();
            (behind, cursors)
        };
        Subscription {
            engine,
            live,
            user,
            device,
            cursors,
            behind,
            ready: VecDeque::new(),
        }
    }

    /// The user.
    pub fn user(&self) -> UserId {
        self.user
    }

    /// The device.
    pub fn device(&self) -> DeviceId {
        self.device
    }

    /// The next event if one is ready now. `Err(Closed)` once the engine closed or the device
    /// subscribed again elsewhere.
    pub fn try_next(&mut self) -> Result<Option<Event>> {
        loop {
            if let Some(event) = self.take_ready()? {
                return Ok(Some(event));
            }
            match self.live.try_next() {
                None => return Ok(None),
                Some(delivery) => {
                    if let Some(event) = self.on_delivery(delivery)? {
                        return Ok(Some(event));
                    }
                }
            }
        }
    }

    /// The next event, waiting up to `timeout` for one (`Ok(None)`: none came).
    pub fn next_timeout(&mut self, timeout: Duration) -> Result<Option<Event>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(event) = self.take_ready()? {
                return Ok(Some(event));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.live.next_timeout(left) {
                None => return Ok(None),
                Some(delivery) => {
                    if let Some(event) = self.on_delivery(delivery)? {
                        return Ok(Some(event));
                    }
                }
            }
        }
    }

    /// The next event, as a future (any executor; cancel-safe: an event is only taken when the
    /// future completes with it).
    pub async fn next(&mut self) -> Result<Event> {
        loop {
            if let Some(event) = self.take_ready()? {
                return Ok(event);
            }
            let delivery = self.live.next().await;
            if let Some(event) = self.on_delivery(delivery)? {
                return Ok(event);
            }
        }
    }

    /// Yields a ready event, reading the next page of a chat that is behind if none is ready.
    fn take_ready(&mut self) -> Result<Option<Event>> {
        while self.ready.is_empty() {
            let Some(&chat) = self.behind.front() else {
                return Ok(None);
            };
            let (page, more) = self.read_after(chat)?;
            if !more {
                self.behind.pop_front();
            }
            self.ready
                .extend(page.into_iter().map(|message| Event::Message {
                    chat,
                    message: Arc::new(message),
                }));
        }
        let event = self.ready.pop_front().expect("not empty");
        if let Event::Message { chat, message } = &event {
            let cursor = self.cursors.entry(*chat).or_insert(0);
            *cursor = (*cursor).max(message.message.seq.0);
        }
        Ok(Some(event))
    }

    /// The next page of the chat after its cursor, without the device's own messages, and
    /// whether more may follow. The cursor moves past the whole page read (own messages
    /// included): a page of nothing but the device's own sends must not be read again.
    fn read_after(&mut self, chat: ChatId) -> Result<(Vec<MessageView>, bool)> {
        let inner = &self.engine.inner;
        let index = inner.index.read();
        // Nothing from before the device's user joined a group.
        let joined = index.joined_at(chat, self.user).0;
        let cursor = self.cursors.get(&chat).copied().unwrap_or(0).max(joined);
        self.cursors.insert(chat, cursor);
        // The device may have left the group: only a member reads it.
        if crate::engine::check_member(&index, chat, self.user).is_err() {
            return Ok((Vec::new(), false));
        }
        let now = self.engine.now();
        let page = index.after(&inner.log, chat, Seq(cursor), PAGE, now)?;
        let more = page.len() == PAGE;
        if let Some(last) = page.last() {
            self.cursors.insert(chat, last.message.seq.0.max(cursor));
        }
        let page = page
            .into_iter()
            // The device's own messages (the sender's device is never sent its own).
            .filter(|m| !(m.message.sender == self.user && m.message.sender_device == self.device))
            .collect();
        Ok((page, more))
    }

    /// Handles one delivery from the hub: an event to yield now, or `None` (dropped as already
    /// yielded, or its chat scheduled for catching up).
    fn on_delivery(&mut self, delivery: Delivery<Event>) -> Result<Option<Event>> {
        match delivery {
            Delivery::Closed(_) => Err(Error::Closed),
            Delivery::Lagged { .. } => {
                // Catch every chat up from the index.
                self.engine.inner.counters.catch_ups.add(1);
                let chats: Vec<ChatId> =
                    self.engine.inner.index.read().chats_of(self.user).collect();
                for chat in chats {
                    if !self.behind.contains(&chat) {
                        self.behind.push_back(chat);
                    }
                }
                Ok(None)
            }
            Delivery::Event(Event::Message { chat, message }) => {
                let seq = message.message.seq.0;
                if self.behind.contains(&chat) {
                    // The catch-up will read it in order.
                    return Ok(None);
                }
                let cursor = match self.cursors.get(&chat) {
                    Some(&cursor) => cursor,
                    None => {
                        // A chat new since the device subscribed: all of it after the user
                        // joined comes through this queue.
                        let index = self.engine.inner.index.read();
                        let joined = index.joined_at(chat, self.user).0;
                        drop(index);
                        self.cursors.insert(chat, joined);
                        joined
                    }
                };
                if seq <= cursor {
                    return Ok(None);
                }
                if seq > cursor + 1 {
                    // A gap: read the chat from the index (read_after skips the device's own
                    // sends, which are not sent to it live).
                    self.engine.inner.counters.catch_ups.add(1);
                    self.behind.push_back(chat);
                    return Ok(None);
                }
                self.cursors.insert(chat, seq);
                Ok(Some(Event::Message { chat, message }))
            }
            Delivery::Event(other) => Ok(Some(other)),
        }
    }
}
