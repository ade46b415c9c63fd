//! One WebSocket connection as the rest of the server sees it: [`Connection`] (who, from where,
//! and a [`FrameSink`] to push frames to it) and the registry of open ones, [`Connections`].
//!
//! A sink is a bounded queue ([`OUTBOX_FRAMES_MAX`] frames) drained by the connection's task;
//! [`FrameSink::send`] never blocks. When it is full the connection is lagging: the sender gets
//! [`SinkError::Full`] and should close the connection with [`CLOSE_LAGGING`] (the client
//! reconnects and catches up from its inbox) rather than wait for it.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::ws::Utf8Bytes;
use parking_lot::Mutex;
use tokio::sync::Notify;

use super::frames::ServerFrame;
use crate::auth::Auth;

/// Frames queued for one connection before it counts as lagging.
pub const OUTBOX_FRAMES_MAX: usize = 64;

/// Close code: the client sent nothing within the heartbeat timeout.
pub const CLOSE_HEARTBEAT_TIMEOUT: u16 = 4000;
/// Close code: the client sent only heartbeats for the idle timeout.
pub const CLOSE_IDLE_TIMEOUT: u16 = 4001;
/// Close code: the connection's token was revoked.
pub const CLOSE_TOKEN_REVOKED: u16 = 4003;
/// Close code: the connection fell too far behind; reconnect to catch up.
pub const CLOSE_LAGGING: u16 = 4008;
/// Close code (standard): the server is shutting down.
pub const CLOSE_GOING_AWAY: u16 = 1001;
/// Close code (standard): a message was larger than the frame limit.
pub const CLOSE_TOO_BIG: u16 = 1009;

/// Why a sink refused a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SinkError {
    /// The connection is lagging: its outbox is full.
    #[error("the connection's outbox is full")]
    Full,
    /// The connection is gone.
    #[error("the connection is closed")]
    Closed,
}

/// What a connection's task takes from its sink next.
#[derive(Debug)]
pub(crate) enum Taken {
    /// Close with this code and reason (takes priority over queued frames).
    Close(u16, &'static str),
    /// Write this frame.
    Frame(Utf8Bytes),
    /// Nothing queued.
    Empty,
}

#[derive(Debug, Default)]
struct Outbox {
    /// Allocated only while frames are queued; released when drained.
    frames: VecDeque<Utf8Bytes>,
    close: Option<(u16, &'static str)>,
    /// The connection's task has ended.
    finished: bool,
}

#[derive(Debug, Default)]
struct Shared {
    outbox: Mutex<Outbox>,
    /// Wakes the connection's task.
    readable: Notify,
    /// Wakes [`FrameSink::send_wait`] callers.
    writable: Notify,
}

/// Pushes frames to one connection; cheap to clone and keep.
///
/// A plain mutex-protected queue rather than a channel: an idle connection's sink is one
/// ~200-byte allocation (a bounded tokio channel preallocates ~1.5 KiB).
#[derive(Debug, Clone, Default)]
pub struct FrameSink {
    shared: Arc<Shared>,
}

impl FrameSink {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Queues `frame` without waiting.
    pub fn send(&self, frame: &ServerFrame) -> Result<(), SinkError> {
        self.send_text(frame.to_text())
    }

    /// Queues already-serialized frame text (serialize once with [`ServerFrame::to_text`], send
    /// the clone to many connections).
    pub fn send_text(&self, text: Utf8Bytes) -> Result<(), SinkError> {
        self.try_push(text).map_err(|(e, _)| e)
    }

    fn try_push(&self, text: Utf8Bytes) -> Result<(), (SinkError, Utf8Bytes)> {
        let mut outbox = self.shared.outbox.lock();
        if outbox.finished || outbox.close.is_some() {
            return Err((SinkError::Closed, text));
        }
        if outbox.frames.len() >= OUTBOX_FRAMES_MAX {
            return Err((SinkError::Full, text));
        }
        outbox.frames.push_back(text);
        drop(outbox);
        self.shared.readable.notify_one();
        Ok(())
    }

    /// Queues `text`, waiting for room. Never call this for a connection from within its own
    /// `Messaging::on_connect` or `on_frame`: that task is the one that drains the queue.
    pub async fn send_wait(&self, mut text: Utf8Bytes) -> Result<(), SinkError> {
        loop {
            let writable = self.shared.writable.notified();
            tokio::pin!(writable);
            // Register before trying, so that a slot freed in between is not missed.
            writable.as_mut().enable();
            match self.try_push(text) {
                Ok(()) => return Ok(()),
                Err((SinkError::Closed, _)) => return Err(SinkError::Closed),
                Err((SinkError::Full, back)) => text = back,
            }
            writable.await;
        }
    }

    /// Asks the connection to close with `code` and `reason` (the first request wins; frames
    /// still queued are dropped).
    ///
    /// # Panics
    /// If `code` is not a WebSocket close code (below 1000).
    pub fn close(&self, code: u16, reason: &'static str) {
        assert!(code >= 1000, "a WebSocket close code");
        let mut outbox = self.shared.outbox.lock();
        if outbox.close.is_none() && !outbox.finished {
            outbox.close = Some((code, reason));
        }
        drop(outbox);
        self.shared.readable.notify_one();
    }

    /// Whether the connection is gone or closing.
    pub fn is_closed(&self) -> bool {
        let outbox = self.shared.outbox.lock();
        outbox.finished || outbox.close.is_some()
    }

    /// Free room in the outbox.
    pub fn capacity(&self) -> usize {
        OUTBOX_FRAMES_MAX.saturating_sub(self.shared.outbox.lock().frames.len())
    }

    /// Whether two sinks feed the same connection.
    pub fn same_connection(&self, other: &FrameSink) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }

    /// Completes when something may have been queued (or a close requested).
    pub(crate) async fn ready(&self) {
        self.shared.readable.notified().await;
    }

    /// The next thing for the connection's task to do.
    pub(crate) fn take(&self) -> Taken {
        let mut outbox = self.shared.outbox.lock();
        if let Some((code, reason)) = outbox.close {
            return Taken::Close(code, reason);
        }
        match outbox.frames.pop_front() {
            Some(frame) => {
                if outbox.frames.is_empty() {
                    // Idle connections keep no queue memory.
                    outbox.frames = VecDeque::new();
                }
                drop(outbox);
                self.shared.writable.notify_one();
                Taken::Frame(frame)
            }
            None => Taken::Empty,
        }
    }

    /// The connection's task has ended: refuse further frames, release queued ones.
    pub(crate) fn finish(&self) {
        let mut outbox = self.shared.outbox.lock();
        outbox.finished = true;
        outbox.frames = VecDeque::new();
        drop(outbox);
        self.shared.writable.notify_waiters();
    }
}

/// An open WebSocket connection.
#[derive(Debug, Clone)]
pub struct Connection {
    /// Unique for the server's lifetime.
    pub id: u64,
    /// Whose connection (from the token).
    pub auth: Auth,
    /// The peer's address.
    pub peer: SocketAddr,
    /// Where to push frames.
    pub sink: FrameSink,
}

struct Entry {
    device_id: u32,
    connection_id: u64,
    sink: FrameSink,
}

/// The open connections, by user.
#[derive(Default)]
pub struct Connections {
    by_user: Mutex<HashMap<u64, Vec<Entry>>>,
    next_id: AtomicU64,
    count: AtomicU64,
}

impl std::fmt::Debug for Connections {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connections")
            .field("count", &self.len())
            .finish_non_exhaustive()
    }
}

impl Connections {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    pub(crate) fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed) + 1
    }

    pub(crate) fn insert(&self, connection: &Connection) {
        self.by_user
            .lock()
            .entry(connection.auth.user_id)
            .or_default()
            .push(Entry {
                device_id: connection.auth.device_id,
                connection_id: connection.id,
                sink: connection.sink.clone(),
            });
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn remove(&self, connection: &Connection) {
        let mut by_user = self.by_user.lock();
        if let Some(entries) = by_user.get_mut(&connection.auth.user_id) {
            let before = entries.len();
            entries.retain(|e| e.connection_id != connection.id);
            if entries.len() < before {
                self.count.fetch_sub(1, Ordering::Relaxed);
            }
            if entries.is_empty() {
                by_user.remove(&connection.auth.user_id);
            }
        }
    }

    /// Open connections.
    pub fn len(&self) -> usize {
        self.count.load(Ordering::Relaxed) as usize
    }

    /// Whether no connection is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether `user_id` has at least one open connection.
    pub fn is_online(&self, user_id: u64) -> bool {
        self.by_user.lock().contains_key(&user_id)
    }

    /// The sinks of `user_id`'s open connections, with their device ids.
    pub fn sinks_of(&self, user_id: u64) -> Vec<(u32, FrameSink)> {
        self.by_user
            .lock()
            .get(&user_id)
            .map(|entries| {
                entries
                    .iter()
                    .map(|e| (e.device_id, e.sink.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Closes every connection of one device; returns how many there were.
    pub fn close_device(
        &self,
        user_id: u64,
        device_id: u32,
        code: u16,
        reason: &'static str,
    ) -> usize {
        let sinks: Vec<FrameSink> = self
            .by_user
            .lock()
            .get(&user_id)
            .map(|entries| {
                entries
                    .iter()
                    .filter(|e| e.device_id == device_id)
                    .map(|e| e.sink.clone())
                    .collect()
            })
            .unwrap_or_default();
        for sink in &sinks {
            sink.close(code, reason);
        }
        sinks.len()
    }
}
