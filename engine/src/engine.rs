//! The engine: sequencing, authorization, applying and publishing.
//!
//! # How a send flows
//!
//! 1. Under the chat's shard *sequencer* lock (short: no I/O waits): authorize the sender, look
//!    up the `client_msg_id` (the index's memory of applied sends, then the sequencer's of sends
//!    still on their way), take the next seq of the chat and a timestamp that never goes back in
//!    the shard, and hand the record to the log's shard writer. Records of one shard reach the
//!    writer in sequencer order, so seqs rise with LSNs.
//! 2. Outside any lock: wait for the configured durability (group commit batches everyone who
//!    waits together).
//! 3. Apply: under the index's write lock, apply every batch of the shard up to the record
//!    (others' too: whoever comes first applies for everyone), and after each record publish its
//!    live event to the hub with the recipients *at that record's log position* (the members
//!    right after it was applied). Publishing under the lock keeps events in log order.
//!
//! Group changes hold the sequencer lock until they are applied, so every later send of the
//! shard is authorized against the new membership. They are rare; sends never wait for I/O
//! under the lock.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::{Mutex, RwLock};

use missive_fanout::{Hub, HubConfig, Presence};
use missive_index::codec::{
    ContentKind, Expiry, GroupChange, GroupOp, Message, Payload, Receipt, ReceiptKind, Tombstone,
};
use missive_index::{Index, IndexConfig, MessageView, Role, Status};
use missive_log::{
    AppendTicket, Appended, BatchReader, ChatId, DeviceId, Entry, FsStorage, Log, LogConfig, Lsn,
    Record, Seq, ShardId, Storage, Timestamp, UserId,
};

use crate::config::Config;
use crate::error::{Error, Result};
use crate::event::{ChatSummary, Event, History, MessageStatus, Outgoing, Sent, To};
use crate::stats::{Counters, OpenStats, Stats};
use crate::subscription::Subscription;

/// The device id the engine's own system messages are stored under.
pub const SYSTEM_DEVICE: DeviceId = DeviceId(u32::MAX);

/// How often the scrub thread, its first pass done, looks for newly sealed segments.
const SCRUB_FOLLOW_EVERY: Duration = Duration::from_secs(1);

/// A handle to an open engine. Cheap to clone; every clone is the same engine. See the
/// [crate documentation](crate).
#[derive(Clone)]
pub struct Engine {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("dir", &self.inner.dir)
            .finish_non_exhaustive()
    }
}

pub(crate) struct Inner {
    pub(crate) config: Config,
    dir: PathBuf,
    pub(crate) log: Log,
    pub(crate) index: RwLock<Index>,
    sequencers: Vec<Mutex<Sequencer>>,
    /// Per shard, the reader that follows the log for the index (used under the index's write
    /// lock): it continues where it stopped instead of finding its place again.
    appliers: Vec<Mutex<Option<BatchReader>>>,
    /// Held while publishing what an apply decided, taken before the index's write lock is
    /// released: live events go out in apply order, and the next apply waits for the hub only
    /// once it has applied (see [`Inner::publish_after`]).
    publishing: Mutex<()>,
    /// Held while segment index files are written (see [`Inner::write_segment_files`]), and by
    /// retention, so a file is never written for a segment retention just removed.
    segment_files: Arc<Mutex<()>>,
    /// Whether a thread is writing segment index files (see
    /// [`Inner::write_segment_files_behind`]).
    segment_files_writer: AtomicBool,
    /// Such threads not yet seen to end, all joined by `close`: one that has cleared the flag
    /// may still hold the engine for a moment while the next one starts, and a close that
    /// waited only for the newest could return with the engine (and its folder lock) still
    /// held by it.
    segment_files_threads: Mutex<Vec<JoinHandle<()>>>,
    /// The scrub thread, if [`Config::scrub_on_open`].
    scrub: Mutex<Option<ScrubThread>>,
    /// Held from encoding a checkpoint to having written it (see [`Engine::checkpoint`]), and
    /// by retention and `close`, which checkpoint too. Taken before `segment_files` and the
    /// index.
    checkpointing: Mutex<()>,
    pub(crate) hub: Hub<Event>,
    /// Shared with the scrub thread, which holds no reference to the engine itself.
    pub(crate) counters: Arc<Counters>,
    opened: OpenStats,
    /// Shared with the scrub thread, as `counters`.
    closed: Arc<AtomicBool>,
    /// The latest time [`Engine::now`] returned (ms): reads never see time go back, so a message
    /// that disappeared stays gone when the clock steps back.
    now_max: AtomicU64,
    background: Mutex<Option<Background>>,
}

struct Background {
    stop: std::sync::mpsc::Sender<()>,
    thread: JoinHandle<()>,
}

/// What the scrub thread is doing, shared with whoever stops it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ScrubPhase {
    /// Verifying a segment (or about to).
    Stepping,
    /// Waiting for segments to seal.
    Waiting,
    /// Told to stop.
    Stopped,
}

/// The scrub thread, stopped by `close` or the engine's drop: joined if it was waiting (it
/// ends at once), left to end after its current segment if it was verifying one (a close
/// never waits for a segment's checksum).
struct ScrubThread {
    phase: Arc<(Mutex<ScrubPhase>, parking_lot::Condvar)>,
    thread: JoinHandle<()>,
}

impl ScrubThread {
    fn stop(self) {
        let (phase, wake) = &*self.phase;
        let was = std::mem::replace(&mut *phase.lock(), ScrubPhase::Stopped);
        wake.notify_all();
        if was == ScrubPhase::Waiting {
            let _ = self.thread.join();
        }
    }
}

/// One shard's sends on their way: appended, not yet applied to the index.
#[derive(Default)]
struct Sequencer {
    /// Per chat, the last seq handed out (only while above the index's head).
    heads: HashMap<ChatId, u64>,
    /// Sends by `(chat, sender, client_msg_id)`, until applied.
    sent: HashMap<(ChatId, UserId, [u8; 16]), (u64, u64)>,
    /// The newest timestamp handed out in the shard: timestamps never go back.
    newest: u64,
}

impl Sequencer {
    fn next_seq(&mut self, index: &Index, chat: ChatId) -> u64 {
        let applied = index.head(chat).0;
        let head = match self.heads.get(&chat) {
            Some(&pending) if pending > applied => pending,
            _ => applied,
        };
        self.heads.insert(chat, head + 1);
        head + 1
    }

    fn next_time(&mut self, now: Timestamp) -> Timestamp {
        self.newest = self.newest.max(now.0);
        Timestamp(self.newest)
    }

    /// Forgets what the index has applied (called now and then, under the lock).
    fn prune(&mut self, index: &Index) {
        self.heads.retain(|chat, head| *head > index.head(*chat).0);
        self.sent
            .retain(|(chat, ..), (seq, _)| *seq > index.head(*chat).0);
    }

    /// Takes back a send whose append failed, if nothing later was sequenced in its chat.
    fn take_back(&mut self, chat: ChatId, seq: u64, key: (ChatId, UserId, [u8; 16])) {
        if self.heads.get(&chat) == Some(&seq) {
            self.heads.insert(chat, seq - 1);
        }
        self.sent.remove(&key);
    }
}

/// What a send prepared: a retry answered from memory, or a record on its way.
enum Prepared {
    Duplicate(Sent),
    Queued {
        ticket: AppendTicket,
        sent: Sent,
        key: (ChatId, UserId, [u8; 16]),
    },
}

/// What [`Engine::expire`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExpireReport {
    /// Log segments deleted (with everything in them).
    pub segments_removed: usize,
    /// The cutoff used: segments whose window ended by then went.
    pub cutoff: Timestamp,
}

impl Engine {
    /// Opens (or creates) the engine in `path`: the log in `path/log`, the index in
    /// `path/index`. Recovers the log (cutting a torn tail), loads the index checkpoint and
    /// replays the log after it, and starts the background task (checkpoints, retention).
    pub fn open(path: impl AsRef<Path>, config: Config) -> Result<Engine> {
        Engine::open_with(Arc::new(FsStorage), path, config)
    }

    /// [`Engine::open`] on another storage: tests use [`SimStorage`](missive_log::SimStorage) to
    /// cut the power, fill the disk or fail an fsync.
    pub fn open_with(
        storage: Arc<dyn Storage>,
        path: impl AsRef<Path>,
        config: Config,
    ) -> Result<Engine> {
        let dir = path.as_ref().to_path_buf();
        config.validate()?;
        let started = Instant::now();
        let log = Log::open_with(
            storage,
            dir.join("log"),
            LogConfig {
                shard_count: config.shards,
                segment_window_ms: config.segment_window.as_millis() as u64,
                segment_bytes_max: config.segment_bytes_max,
                durability: config.durability,
                compression: true,
                huge_pages: config.huge_pages,
            },
        )?;
        let log_open = started.elapsed();
        let started = Instant::now();
        let (mut index, report) = Index::open_with(
            &log,
            &dir.join("index"),
            IndexConfig {
                dedup_window_ms: config.dedup_window.as_millis() as u64,
                ..IndexConfig::default()
            },
        )?;
        // Segment index files are written after the lock is released (see
        // `Inner::write_segment_files`).
        index.defer_segment_files(true);
        let opened = OpenStats {
            log_open,
            index_open: started.elapsed(),
            from_checkpoint: report.from_checkpoint,
            checkpoint_rejected: report.rejected.clone(),
            replayed: report.replayed,
            torn_bytes: log.recovery().torn_bytes.iter().sum(),
        };
        let newest = (0..log.shard_count())
            .map(|shard| index.newest_message_time(ShardId(shard)).0)
            .max()
            .unwrap_or(0);
        let sequencers = (0..log.shard_count())
            .map(|shard| {
                Mutex::new(Sequencer {
                    newest: index.newest_message_time(ShardId(shard)).0,
                    ..Sequencer::default()
                })
            })
            .collect();
        let appliers = (0..log.shard_count()).map(|_| Mutex::new(None)).collect();
        let inner = Arc::new_cyclic(|weak: &Weak<Inner>| {
            let clock = Arc::clone(&config.clock);
            let listener = weak.clone();
            let hub = Hub::builder(HubConfig {
                queue_capacity: config.queue_capacity,
                ..HubConfig::default()
            })
            .clock(Arc::new(move || clock.now()))
            .presence_listener(Arc::new(move |user, presence| {
                if let Some(inner) = listener.upgrade() {
                    inner.publish_presence(user, presence);
                }
            }))
            .build();
            Inner {
                config,
                dir,
                log,
                appliers,
                publishing: Mutex::new(()),
                segment_files: Arc::new(Mutex::new(())),
                segment_files_writer: AtomicBool::new(false),
                segment_files_threads: Mutex::new(Vec::new()),
                scrub: Mutex::new(None),
                checkpointing: Mutex::new(()),
                index: RwLock::new(index),
                sequencers,
                hub,
                counters: Arc::default(),
                opened,
                closed: Arc::new(AtomicBool::new(false)),
                now_max: AtomicU64::new(newest),
                background: Mutex::new(None),
            }
        });
        let engine = Engine { inner };
        engine.start_background();
        if engine.inner.config.scrub_on_open {
            engine.start_scrub();
        }
        Ok(engine)
    }

    /// The engine's folder.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// The settings it was opened with.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// "Now" by the engine's clock, but never earlier than a time it returned before or than its
    /// newest stored message: a clock stepped back neither brings expired messages back nor
    /// moves timestamps back.
    pub fn now(&self) -> Timestamp {
        let now = self.inner.config.clock.now().0;
        let before = self.inner.now_max.fetch_max(now, Ordering::AcqRel);
        Timestamp(before.max(now))
    }

    fn start_background(&self) {
        let config = &self.inner.config;
        let intervals = [config.checkpoint_interval, config.retention_interval];
        let Some(tick) = intervals.iter().flatten().min().copied() else {
            return;
        };
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let weak = Arc::downgrade(&self.inner);
        let thread = std::thread::Builder::new()
            .name("missive-background".into())
            .spawn(move || {
                let (mut last_checkpoint, mut last_retention) = (Instant::now(), Instant::now());
                while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                    stopped.recv_timeout(tick)
                {
                    let Some(inner) = weak.upgrade() else { break };
                    let engine = Engine { inner };
                    let config = &engine.inner.config;
                    if config
                        .checkpoint_interval
                        .is_some_and(|every| last_checkpoint.elapsed() >= every)
                    {
                        last_checkpoint = Instant::now();
                        if engine.checkpoint().is_err() {
                            engine.inner.counters.background_errors.add(1);
                        }
                    }
                    if config
                        .retention_interval
                        .is_some_and(|every| last_retention.elapsed() >= every)
                    {
                        last_retention = Instant::now();
                        if engine.expire(engine.now()).is_err() {
                            engine.inner.counters.background_errors.add(1);
                        }
                    }
                }
            })
            .expect("spawning the background thread");
        *self.inner.background.lock() = Some(Background { stop, thread });
    }

    /// Verifies the stored batches on a thread of its own, a segment at a time, giving up as
    /// soon as the engine closes or is dropped; then, every [`SCRUB_FOLLOW_EVERY`], the
    /// segments sealed since ([`Scrub::follow`](missive_log::Scrub::follow)), so that they too
    /// are read without checksums or headers (and with [`Config::huge_pages`] from 2 MiB
    /// pages). The thread never holds the engine, only its counters and closed flag and a weak
    /// reference it counts but never upgrades (nor does the scrub keep the log or its folder
    /// lock): were it to hold the engine for a moment when the last handle is dropped, the
    /// engine would be dropped on this thread a little later, and a reopen of the folder at
    /// once would find it still locked. `close` and the engine's drop wake it from its wait and
    /// join it ([`ScrubThread::stop`]), so that it does not outlive the engine while idle.
    fn start_scrub(&self) {
        let mut scrub = self.inner.log.scrub();
        let weak = Arc::downgrade(&self.inner);
        let (counters, closed) = (
            Arc::clone(&self.inner.counters),
            Arc::clone(&self.inner.closed),
        );
        let phase = Arc::new((
            Mutex::new(ScrubPhase::Stepping),
            parking_lot::Condvar::new(),
        ));
        let shared = Arc::clone(&phase);
        let spawned = std::thread::Builder::new()
            .name("missive-scrub".into())
            .spawn(move || {
                let (phase, wake) = &*shared;
                let open = || weak.strong_count() > 0 && !closed.load(Ordering::Acquire);
                let (mut verified, mut first_pass) = (0, true);
                while open() {
                    let step = scrub.step();
                    if !open() {
                        return;
                    }
                    let bytes = scrub.report().bytes;
                    counters.scrubbed_bytes.add(bytes - verified);
                    verified = bytes;
                    match step {
                        Ok(true) => {}
                        Ok(false) => {
                            if std::mem::take(&mut first_pass) {
                                counters.scrub_done.add(1);
                            }
                            // Wait for segments to seal; a close or drop wakes it.
                            let mut current = phase.lock();
                            if *current == ScrubPhase::Stopped {
                                return;
                            }
                            *current = ScrubPhase::Waiting;
                            let _ = wake.wait_for(&mut current, SCRUB_FOLLOW_EVERY);
                            if *current == ScrubPhase::Stopped {
                                return;
                            }
                            *current = ScrubPhase::Stepping;
                            drop(current);
                            scrub.follow();
                        }
                        Err(_) => return counters.scrub_errors.add(1),
                    }
                }
            });
        match spawned {
            Ok(thread) => *self.inner.scrub.lock() = Some(ScrubThread { phase, thread }),
            // Without the thread, reads verify each batch themselves: nothing is lost.
            Err(_) => self.inner.counters.background_errors.add(1),
        }
    }

    fn check_open(&self) -> Result<()> {
        if self.inner.closed.load(Ordering::Acquire) {
            Err(Error::Closed)
        } else {
            Ok(())
        }
    }

    /// Flushes the log, checkpoints the index, ends every subscription and stops the background
    /// task. Every call on any clone afterwards is [`Error::Closed`]; closing twice is fine.
    pub fn close(&self) -> Result<()> {
        if self.inner.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        if let Some(background) = self.inner.background.lock().take() {
            drop(background.stop);
            let _ = background.thread.join();
        }
        if let Some(scrub) = self.inner.scrub.lock().take() {
            scrub.stop();
        }
        self.inner.hub.close();
        self.inner.log.sync()?;
        let _checkpointing = self.inner.checkpointing.lock();
        let mut index = self.inner.index.write();
        // The hub is closed: nothing is published.
        self.inner.apply_all(&mut index, &mut Vec::new())?;
        index.checkpoint()?;
        drop(index);
        self.inner.write_segment_files(true)?;
        let writers = std::mem::take(&mut *self.inner.segment_files_threads.lock());
        for writer in writers {
            let _ = writer.join();
        }
        Ok(())
    }

    /// Writes an index checkpoint now (the background task does it every
    /// [`Config::checkpoint_interval`]).
    pub fn checkpoint(&self) -> Result<()> {
        self.check_open()?;
        // One checkpoint at a time, each written whole before the next is encoded: a later
        // one never loses to an earlier one.
        let _checkpointing = self.inner.checkpointing.lock();
        let mut index = self.inner.index.write();
        let mut publications = Vec::new();
        let applied = self.inner.apply_all(&mut index, &mut publications);
        // Encoded under the lock, written after it: writing and fsyncing the file (~1 s for
        // 10 M messages) does not hold up senders.
        let encoded = applied.map(|()| index.encode_checkpoint());
        self.inner.publish_after(index, publications);
        encoded?.write()?;
        self.inner.write_segment_files(true)?;
        self.inner.counters.checkpoints.add(1);
        Ok(())
    }

    // ---- sending ---------------------------------------------------------------------------

    /// Stores a message from `device` of `sender` and returns once the configured durability
    /// holds. A retry with the same `client_msg_id` (in the same chat, within
    /// [`Config::dedup_window`]) returns the original and stores nothing.
    pub fn send(&self, sender: UserId, device: DeviceId, message: Outgoing) -> Result<Sent> {
        match self.prepare_send(sender, device, &message, false)? {
            Prepared::Duplicate(sent) => Ok(sent),
            Prepared::Queued { ticket, sent, key } => {
                let appended = ticket.wait();
                self.finish(appended, sent, key)
            }
        }
    }

    /// [`Engine::send`] as a future: waiting for durability does not block a thread. Works on
    /// any executor (the wait is the log's own future); applying takes the index lock briefly.
    pub async fn send_async(
        &self,
        sender: UserId,
        device: DeviceId,
        message: Outgoing,
    ) -> Result<Sent> {
        match self.prepare_send(sender, device, &message, false)? {
            Prepared::Duplicate(sent) => Ok(sent),
            Prepared::Queued { ticket, sent, key } => {
                let appended = ticket.await;
                self.finish(appended, sent, key)
            }
        }
    }

    /// Stores a system message of the application's in a chat `by` is a member of: something
    /// that happened rather than something a person wrote, such as a missed call.
    /// `message.kind` must be [`ContentKind::System`]; it is stored from [`SYSTEM_DEVICE`] with
    /// `by` as its sender, delivered and counted like any message, and idempotent by
    /// `client_msg_id` like [`Engine::send`] (derive the id from the event, e.g. the call's id,
    /// so a retry stores it once).
    pub fn send_system(&self, by: UserId, message: Outgoing) -> Result<Sent> {
        match self.prepare_send(by, SYSTEM_DEVICE, &message, true)? {
            Prepared::Duplicate(sent) => Ok(sent),
            Prepared::Queued { ticket, sent, key } => {
                let appended = ticket.wait();
                self.finish(appended, sent, key)
            }
        }
    }

    fn chat_of(sender: UserId, to: To) -> ChatId {
        match to {
            To::User(user) => ChatId::direct(sender, user),
            To::Chat(chat) => chat,
        }
    }

    fn prepare_send(
        &self,
        sender: UserId,
        device: DeviceId,
        out: &Outgoing,
        system: bool,
    ) -> Result<Prepared> {
        self.check_open()?;
        let config = &self.inner.config;
        if out.body.len() > config.body_bytes_max {
            return Err(Error::PayloadTooLarge {
                what: "body",
                len: out.body.len(),
                max: config.body_bytes_max,
            });
        }
        if out.media.len() > config.media_ref_bytes_max {
            return Err(Error::PayloadTooLarge {
                what: "media reference",
                len: out.media.len(),
                max: config.media_ref_bytes_max,
            });
        }
        if system {
            if out.kind != ContentKind::System {
                return Err(Error::InvalidArgument(
                    "send_system stores messages of kind System only".into(),
                ));
            }
        } else if out.kind == ContentKind::System {
            return Err(Error::InvalidArgument(
                "system messages are written by the engine or send_system".into(),
            ));
        } else if device == SYSTEM_DEVICE {
            return Err(Error::InvalidArgument("device id reserved".into()));
        }
        let chat = Engine::chat_of(sender, out.to);
        let key = (chat, sender, out.client_msg_id);
        let shard = self.inner.log.shard_of(chat);
        let mut sequencer = self.inner.sequencers[shard.0 as usize].lock();
        let index = self.inner.index.read();
        check_member(&index, chat, sender)?;
        if let Some(found) = index.find_sent(&self.inner.log, chat, sender, out.client_msg_id)? {
            self.inner.counters.duplicates.add(1);
            return Ok(Prepared::Duplicate(Sent {
                chat,
                seq: Seq(found.seq),
                timestamp: Timestamp(found.timestamp),
                duplicate: true,
            }));
        }
        if let Some(&(seq, timestamp)) = sequencer.sent.get(&key) {
            self.inner.counters.duplicates.add(1);
            return Ok(Prepared::Duplicate(Sent {
                chat,
                seq: Seq(seq),
                timestamp: Timestamp(timestamp),
                duplicate: true,
            }));
        }
        if sequencer.heads.len() + sequencer.sent.len() > 4096 {
            sequencer.prune(&index);
        }
        let seq = sequencer.next_seq(&index, chat);
        if let Some(reply_to) = out.reply_to
            && (reply_to.0 == 0 || reply_to.0 >= seq)
        {
            sequencer.heads.insert(chat, seq - 1);
            return Err(Error::InvalidArgument(format!(
                "reply_to {} is not an earlier message of the chat",
                reply_to.0
            )));
        }
        let ttl_ms = out.ttl_ms.unwrap_or_else(|| index.chat_ttl_ms(chat));
        drop(index);
        let timestamp = sequencer.next_time(self.now());
        let message = Message {
            seq: Seq(seq),
            sender,
            sender_device: device,
            client_msg_id: out.client_msg_id,
            content: out.kind,
            ttl_ms,
            reply_to: out.reply_to,
            media: out.media.clone(),
            body: out.body.clone(),
        };
        let payload = Payload::Message(message);
        let ticket = match self.append_unwoken(chat, timestamp, &payload) {
            Ok(ticket) => ticket,
            Err(error) => {
                sequencer.take_back(chat, seq, key);
                return Err(error);
            }
        };
        sequencer.sent.insert(key, (seq, timestamp.0));
        // The writer's wake-up (a system call when it sleeps) outside the sequencer lock: the
        // next sender of the shard need not wait for it.
        drop(sequencer);
        self.inner.log.wake(shard);
        self.inner.counters.sends.add(1);
        Ok(Prepared::Queued {
            ticket,
            sent: Sent {
                chat,
                seq: Seq(seq),
                timestamp,
                duplicate: false,
            },
            key,
        })
    }

    fn finish(
        &self,
        appended: missive_log::Result<Appended>,
        sent: Sent,
        key: (ChatId, UserId, [u8; 16]),
    ) -> Result<Sent> {
        let shard = self.inner.log.shard_of(sent.chat);
        match appended {
            Ok(appended) => {
                self.apply_through(shard, appended.lsn)?;
                Ok(sent)
            }
            Err(error) => {
                self.inner.sequencers[shard.0 as usize]
                    .lock()
                    .take_back(sent.chat, sent.seq.0, key);
                Err(error.into())
            }
        }
    }

    fn append(
        &self,
        chat: ChatId,
        timestamp: Timestamp,
        payload: &Payload,
    ) -> Result<AppendTicket> {
        let ticket = self.append_unwoken(chat, timestamp, payload)?;
        self.inner.log.wake(self.inner.log.shard_of(chat));
        Ok(ticket)
    }

    /// [`append`](Engine::append) without waking the log's writer: the caller calls
    /// `log.wake` (see [`Log::append_unwoken`](missive_log::Log::append_unwoken)).
    fn append_unwoken(
        &self,
        chat: ChatId,
        timestamp: Timestamp,
        payload: &Payload,
    ) -> Result<AppendTicket> {
        let record = Record {
            kind: payload.kind(),
            chat,
            timestamp,
            payload: payload.encode(),
        };
        self.inner
            .counters
            .bytes_appended
            .add(record.payload.len() as u64);
        Ok(self.inner.log.append_unwoken(record)?)
    }

    /// Appends and waits for a record that carries no seq (receipts, tombstones, settings),
    /// then applies it.
    fn append_and_apply(&self, chat: ChatId, payload: &Payload) -> Result<()> {
        let shard = self.inner.log.shard_of(chat);
        let timestamp = self.inner.sequencers[shard.0 as usize]
            .lock()
            .next_time(self.now());
        let appended = self.append(chat, timestamp, payload)?.wait()?;
        self.apply_through(shard, appended.lsn)
    }

    /// Applies the shard's log to the index up to and including `lsn`, publishing each record's
    /// live event. Whoever gets the lock first applies for everyone waiting.
    fn apply_through(&self, shard: ShardId, lsn: Lsn) -> Result<()> {
        let applied = |index: &Index| index.applied()[shard.0 as usize] > lsn;
        if applied(&self.inner.index.read()) {
            // Another sender applied it, and may be publishing it still: once this returns, the
            // record's live event is in its subscribers' queues.
            drop(self.inner.publishing.lock());
            return Ok(());
        }
        let mut index = self.inner.index.write();
        let mut publications = Vec::new();
        let result = self
            .inner
            .apply(&mut index, shard, Some(lsn), &mut publications);
        let done = applied(&index);
        let sealed = index.has_unwritten_segment_files();
        self.inner.publish_after(index, publications);
        if sealed {
            Inner::write_segment_files_behind(&self.inner);
        }
        result?;
        if done {
            Ok(())
        } else {
            // Acknowledged records are readable; not finding it is a bug or damage.
            Err(Error::Storage(missive_log::Error::NotFound {
                shard: shard.0,
                segment: 0,
                offset: lsn.0,
            }))
        }
    }

    // ---- receipts, deletes, settings -------------------------------------------------------

    /// Raises `device` of `user`'s delivered (or read, which implies delivered) watermark in
    /// `chat` to `up_to` (clamped to the chat's head) and tells the chat's other members.
    /// Watermarks never go back: a lower `up_to` changes nothing and stores nothing. Returns the
    /// watermark now in force.
    pub fn mark(
        &self,
        user: UserId,
        device: DeviceId,
        chat: ChatId,
        kind: ReceiptKind,
        up_to: Seq,
    ) -> Result<Seq> {
        self.check_open()?;
        let (current, head) = {
            let index = self.inner.index.read();
            check_member(&index, chat, user)?;
            let current = match kind {
                ReceiptKind::Delivered => index.delivered_up_to(user, device, chat),
                ReceiptKind::Read => index
                    .read_up_to(user, chat)
                    .min(index.delivered_up_to(user, device, chat)),
            };
            (current, index.head(chat))
        };
        let up_to = Seq(up_to.0.min(head.0));
        if up_to <= current {
            return Ok(current);
        }
        let receipt = Receipt {
            user,
            device,
            kind,
            up_to,
        };
        self.append_and_apply(chat, &Payload::Receipt(receipt))?;
        self.inner.counters.receipts.add(1);
        Ok(up_to)
    }

    /// Deletes message `seq` of `chat` for everyone: only its sender may. The message's content
    /// is gone from every read from now on (a tombstone record; the bytes go with their
    /// segment). Deleting it again changes nothing.
    pub fn delete(&self, user: UserId, chat: ChatId, seq: Seq) -> Result<()> {
        self.check_open()?;
        {
            let index = self.inner.index.read();
            check_member(&index, chat, user)?;
            let message = index
                .message(&self.inner.log, chat, seq, self.now())?
                .ok_or(Error::NoSuchMessage { chat, seq })?;
            if message.message.sender != user {
                return Err(Error::NotSender { user, chat, seq });
            }
            if message.deleted {
                return Ok(());
            }
        }
        let tombstone = Tombstone { seq, by: user };
        self.append_and_apply(chat, &Payload::Tombstone(tombstone))?;
        self.inner.counters.deletes.add(1);
        Ok(())
    }

    /// Sets the chat's disappearing-messages timer (`0`: off): messages sent afterwards
    /// without their own TTL disappear `ttl_ms` after they are stored. Any member may.
    pub fn set_chat_ttl(&self, user: UserId, chat: ChatId, ttl_ms: u64) -> Result<()> {
        self.check_open()?;
        check_member(&self.inner.index.read(), chat, user)?;
        let expiry = Expiry { ttl_ms, by: user };
        self.append_and_apply(chat, &Payload::Expiry(expiry))
    }

    /// Shows `user` typing (or not) in `chat` to its other members' connected devices. Not
    /// stored.
    pub fn typing(&self, user: UserId, device: DeviceId, chat: ChatId, typing: bool) -> Result<()> {
        self.check_open()?;
        let index = self.inner.index.read();
        check_member(&index, chat, user)?;
        let event = Event::Typing { chat, user, typing };
        let users = chat_users(&index, chat);
        drop(index);
        self.inner
            .hub
            .publish(users.into_iter().filter(|u| *u != user), None, &event);
        let _ = device;
        Ok(())
    }

    /// Whether `user` has a live subscription, or when they were last seen.
    pub fn presence(&self, user: UserId) -> Presence {
        self.inner.hub.presence(user)
    }

    // ---- groups ------------------------------------------------------------------------------

    /// Creates a group with `creator` (its admin) and `members`; returns its chat. Every
    /// change to a group is a log record and a system message in its chat.
    pub fn create_group(&self, creator: UserId, members: &[UserId]) -> Result<ChatId> {
        self.check_open()?;
        let mut users: Vec<UserId> = members.iter().copied().filter(|u| *u != creator).collect();
        users.sort_unstable();
        users.dedup();
        let cap = self.inner.config.group_cap;
        if users.len() + 1 > cap {
            return Err(Error::GroupFull {
                chat: ChatId::group(0),
                members: users.len() + 1,
                cap,
            });
        }
        loop {
            let chat = ChatId::group(random_group_number());
            let change = GroupChange {
                op: GroupOp::Create,
                by: creator,
                users: users.clone(),
            };
            let created = self.group_change(chat, change, |index| {
                // A number already taken (1 in 2^62) is drawn again.
                Ok(index.members(chat).is_none() && index.head(chat).0 == 0)
            })?;
            if created {
                return Ok(chat);
            }
        }
    }

    /// Adds `users` to the group (admins only); those already in it are skipped. Refused with
    /// [`Error::GroupFull`] if the group would pass the cap.
    pub fn add_members(&self, by: UserId, chat: ChatId, users: &[UserId]) -> Result<()> {
        self.check_open()?;
        let cap = self.inner.config.group_cap;
        let (new, _) = {
            let index = self.inner.index.read();
            let members = check_admin(&index, chat, by)?;
            let mut new: Vec<UserId> = users
                .iter()
                .copied()
                .filter(|u| !members.contains_key(u))
                .collect();
            new.sort_unstable();
            new.dedup();
            if members.len() + new.len() > cap {
                return Err(Error::GroupFull {
                    chat,
                    members: members.len() + new.len(),
                    cap,
                });
            }
            (new, members.len())
        };
        if new.is_empty() {
            return Ok(());
        }
        let change = GroupChange {
            op: GroupOp::Add,
            by,
            users: new.clone(),
        };
        self.group_change(chat, change, |index| {
            let members = check_admin(index, chat, by)?;
            let after = members.len() + new.iter().filter(|u| !members.contains_key(u)).count();
            if after > cap {
                return Err(Error::GroupFull {
                    chat,
                    members: after,
                    cap,
                });
            }
            Ok(true)
        })?;
        Ok(())
    }

    /// Removes `user` from the group: an admin may remove anyone, anyone may remove themselves
    /// (leave). When the last admin leaves, the member with the lowest id becomes admin.
    pub fn remove_member(&self, by: UserId, chat: ChatId, user: UserId) -> Result<()> {
        self.check_open()?;
        let validate = |index: &Index| -> Result<bool> {
            let members = group_members(index, chat)?;
            if !members.contains_key(&by) {
                return Err(Error::NotAMember { user: by, chat });
            }
            if by != user && members.get(&by) != Some(&Role::Admin) {
                return Err(Error::NotAdmin { user: by, chat });
            }
            if !members.contains_key(&user) {
                return Err(Error::NotAMember { user, chat });
            }
            Ok(true)
        };
        validate(&self.inner.index.read())?;
        let change = GroupChange {
            op: GroupOp::Remove,
            by,
            users: vec![user],
        };
        self.group_change(chat, change, validate)?;
        // Someone must be able to manage the group.
        let successor = {
            let index = self.inner.index.read();
            let members = group_members(&index, chat)?;
            let has_admin = members.values().any(|role| *role == Role::Admin);
            (!has_admin)
                .then(|| members.keys().next().copied())
                .flatten()
        };
        if let Some(successor) = successor {
            let change = GroupChange {
                op: GroupOp::Promote,
                by: user,
                users: vec![successor],
            };
            self.group_change(chat, change, |_| Ok(true))?;
        }
        Ok(())
    }

    /// `user` leaves the group.
    pub fn leave(&self, user: UserId, chat: ChatId) -> Result<()> {
        self.remove_member(user, chat, user)
    }

    /// Makes `user` an admin (admins only).
    pub fn promote(&self, by: UserId, chat: ChatId, user: UserId) -> Result<()> {
        self.set_role(by, chat, user, GroupOp::Promote)
    }

    /// Makes `user` a plain member (admins only). The group's last admin cannot be demoted
    /// ([`Error::InvalidArgument`]): promote someone first, or leave.
    pub fn demote(&self, by: UserId, chat: ChatId, user: UserId) -> Result<()> {
        self.set_role(by, chat, user, GroupOp::Demote)
    }

    fn set_role(&self, by: UserId, chat: ChatId, user: UserId, op: GroupOp) -> Result<()> {
        self.check_open()?;
        let validate = |index: &Index| -> Result<bool> {
            let members = check_admin(index, chat, by)?;
            if !members.contains_key(&user) {
                return Err(Error::NotAMember { user, chat });
            }
            // Someone must be able to manage the group (as `remove_member` ensures).
            let admins = members
                .values()
                .filter(|role| **role == Role::Admin)
                .count();
            if op == GroupOp::Demote && members.get(&user) == Some(&Role::Admin) && admins == 1 {
                return Err(Error::InvalidArgument(format!(
                    "{user:?} is the last admin of {chat:?}"
                )));
            }
            Ok(true)
        };
        validate(&self.inner.index.read())?;
        let change = GroupChange {
            op,
            by,
            users: vec![user],
        };
        self.group_change(chat, change, validate)?;
        Ok(())
    }

    /// Appends a group change and its system message under the chat's sequencer lock, held
    /// until both are applied, after `validate` passes against the index under that lock.
    /// Returns `validate`'s `false` (nothing stored) or `true`.
    fn group_change(
        &self,
        chat: ChatId,
        change: GroupChange,
        validate: impl FnOnce(&Index) -> Result<bool>,
    ) -> Result<bool> {
        let shard = self.inner.log.shard_of(chat);
        let mut sequencer = self.inner.sequencers[shard.0 as usize].lock();
        let seq = {
            let index = self.inner.index.read();
            if !validate(&index)? {
                return Ok(false);
            }
            // The system message follows the change, so its recipients are the members after.
            sequencer.next_seq(&index, chat)
        };
        let timestamp = sequencer.next_time(self.now());
        let system = Message {
            seq: Seq(seq),
            sender: change.by,
            sender_device: SYSTEM_DEVICE,
            client_msg_id: system_message_id(chat, seq),
            content: ContentKind::System,
            ttl_ms: 0,
            reply_to: None,
            media: Bytes::new(),
            body: Bytes::from(describe(&change)),
        };
        let first = self.append(chat, timestamp, &Payload::GroupChange(change));
        let second = first
            .as_ref()
            .ok()
            .map(|_| self.append(chat, timestamp, &Payload::Message(system)));
        let waited = match (first, second) {
            (Ok(first), Some(Ok(second))) => first.wait().and(second.wait()),
            (Err(error), _) | (_, Some(Err(error))) => Err(match error {
                Error::Storage(e)
                | Error::Poisoned(e)
                | Error::StorageFull(e)
                | Error::Corrupt(e) => e,
                other => return Err(other),
            }),
            (Ok(_), None) => unreachable!("the second append follows a successful first"),
        };
        match waited {
            Ok(appended) => {
                self.apply_through(shard, appended.lsn)?;
                sequencer.prune(&self.inner.index.read());
                self.inner.counters.group_changes.add(1);
                Ok(true)
            }
            Err(error) => {
                if sequencer.heads.get(&chat) == Some(&seq) {
                    sequencer.heads.insert(chat, seq - 1);
                }
                Err(error.into())
            }
        }
    }

    /// The group's members and roles (for its members).
    pub fn members(&self, user: UserId, chat: ChatId) -> Result<Vec<(UserId, Role)>> {
        self.check_open()?;
        let index = self.inner.index.read();
        check_member(&index, chat, user)?;
        Ok(match index.members(chat) {
            Some(members) => members.iter().map(|(u, r)| (*u, *r)).collect(),
            None => chat_users(&index, chat)
                .into_iter()
                .map(|u| (u, Role::Member))
                .collect(),
        })
    }

    // ---- reads -------------------------------------------------------------------------------

    /// Part of a chat's history, oldest first, as `user` may see it (a member; expired messages
    /// never appear; deleted ones appear as tombstones without content).
    pub fn history(&self, user: UserId, chat: ChatId, which: History) -> Result<Vec<MessageView>> {
        self.check_open()?;
        let index = self.inner.index.read();
        check_member(&index, chat, user)?;
        let (log, now) = (&self.inner.log, self.now());
        // A group member sees nothing from before they joined.
        let joined = index.joined_at(chat, user);
        let mut messages = match which {
            History::Latest(n) => index.latest(log, chat, n, now)?,
            History::Before(seq, n) => index.before(log, chat, seq, n, now)?,
            History::After(seq, n) => index.after(log, chat, seq.max(joined), n, now)?,
            History::Around(t, n) => index.around(log, chat, t, n, now)?,
        };
        messages.retain(|m| m.message.seq > joined);
        Ok(messages)
    }

    /// One message, if `user` may see it and it has not expired.
    pub fn message(&self, user: UserId, chat: ChatId, seq: Seq) -> Result<Option<MessageView>> {
        self.check_open()?;
        let index = self.inner.index.read();
        check_member(&index, chat, user)?;
        if seq <= index.joined_at(chat, user) {
            return Ok(None);
        }
        Ok(index.message(&self.inner.log, chat, seq, self.now())?)
    }

    /// The user's chats with their newest visible message and unread count, most recent
    /// first.
    pub fn chats(&self, user: UserId) -> Result<Vec<ChatSummary>> {
        self.check_open()?;
        let index = self.inner.index.read();
        let now = self.now();
        let mut chats = Vec::new();
        for chat in index.chats_of(user) {
            let joined = index.joined_at(chat, user);
            let last = index
                .latest(&self.inner.log, chat, 1, now)?
                .pop()
                .filter(|m| m.message.seq > joined);
            chats.push(ChatSummary {
                chat,
                last,
                unread: index.unread(user, chat),
                head: index.head(chat),
            });
        }
        chats.sort_by_key(|c| std::cmp::Reverse(c.last.as_ref().map_or(0, |m| m.timestamp.0)));
        Ok(chats)
    }

    /// Messages in the chat `user` has not read.
    pub fn unread(&self, user: UserId, chat: ChatId) -> Result<u64> {
        self.check_open()?;
        let index = self.inner.index.read();
        check_member(&index, chat, user)?;
        Ok(index.unread(user, chat))
    }

    /// Where message `seq` got among its recipients: for its sender (and a group's admins).
    pub fn status(&self, user: UserId, chat: ChatId, seq: Seq) -> Result<MessageStatus> {
        self.check_open()?;
        let index = self.inner.index.read();
        check_member(&index, chat, user)?;
        let message = index
            .message(&self.inner.log, chat, seq, self.now())?
            .ok_or(Error::NoSuchMessage { chat, seq })?;
        let sender = message.message.sender;
        let admin = index
            .members(chat)
            .is_some_and(|m| m.get(&user) == Some(&Role::Admin));
        if sender != user && !admin {
            return Err(Error::NotSender { user, chat, seq });
        }
        let members = chat_users(&index, chat)
            .into_iter()
            .filter(|u| *u != sender)
            .map(|u| (u, index.status(u, chat, seq)))
            .collect::<Vec<(UserId, Status)>>();
        Ok(MessageStatus {
            counts: index.receipt_counts(chat, seq, sender),
            members,
        })
    }

    /// The device's delivered watermark in a chat (for its members).
    pub fn delivered_up_to(&self, user: UserId, device: DeviceId, chat: ChatId) -> Result<Seq> {
        self.check_open()?;
        let index = self.inner.index.read();
        check_member(&index, chat, user)?;
        Ok(index.delivered_up_to(user, device, chat))
    }

    /// The user's read watermark in a chat (for its members).
    pub fn read_up_to(&self, user: UserId, chat: ChatId) -> Result<Seq> {
        self.check_open()?;
        let index = self.inner.index.read();
        check_member(&index, chat, user)?;
        Ok(index.read_up_to(user, chat))
    }

    // ---- live delivery -----------------------------------------------------------------------

    /// Subscribes `device` of `user`: the subscription first yields every message after the
    /// device's delivered watermark, chat by chat and in seq order, then live events. See
    /// [`Subscription`].
    pub fn subscribe(&self, user: UserId, device: DeviceId) -> Result<Subscription> {
        self.check_open()?;
        Ok(Subscription::new(self.clone(), user, device))
    }

    // ---- retention ---------------------------------------------------------------------------

    /// Applies retention at `now`: deletes the log segments whose window ended more than
    /// [`Config::retention`] before it (checkpointing the index first). Messages whose own or
    /// chat TTL passed are already hidden from every read; their bytes go with their segment.
    pub fn expire(&self, now: Timestamp) -> Result<ExpireReport> {
        self.check_open()?;
        let retention = self.inner.config.retention.as_millis() as u64;
        let cutoff = Timestamp(now.0.saturating_sub(retention));
        // Snapshots are stamped no earlier than anything sequenced so far (taken before the
        // index lock: senders take a sequencer, then the index).
        let at = self
            .inner
            .sequencers
            .iter()
            .map(|sequencer| sequencer.lock().newest)
            .fold(now.0, u64::max);
        let inner = &self.inner;
        // Retention checkpoints before it deletes segments: no checkpoint encoded earlier may
        // be written after that one (lock order: checkpointing, segment files, index).
        let _checkpointing = inner.checkpointing.lock();
        let files = inner.segment_files.lock();
        let mut index = inner.index.write();
        let mut publications = Vec::new();
        let removed = inner
            .apply_all(&mut index, &mut publications)
            .and_then(|()| {
                index.retain_with(&inner.log, cutoff, Timestamp(at), |index, records| {
                    let mut tickets = Vec::with_capacity(records.len());
                    for record in records {
                        tickets.push(inner.log.append(record)?);
                    }
                    for ticket in tickets {
                        ticket.wait()?;
                    }
                    inner.apply_all(index, &mut publications)
                })
            });
        inner.publish_after(index, publications);
        drop(files);
        let removed = removed?;
        inner.write_segment_files(true)?;
        self.inner.counters.segments_expired.add(removed as u64);
        Ok(ExpireReport {
            segments_removed: removed,
            cutoff,
        })
    }

    /// Counters for metrics.
    pub fn stats(&self) -> Stats {
        let hub = self.inner.hub.stats();
        let log = self.inner.log.stats();
        Stats::collect(&self.inner.counters, &hub, &self.inner.opened, &log)
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The background thread holds only a weak handle; it ends at its next tick.
        if let Some(background) = self.background.get_mut().take() {
            drop(background.stop);
        }
        // Nor does the scrub thread hold the engine: this never runs on it.
        if let Some(scrub) = self.scrub.get_mut().take() {
            scrub.stop();
        }
    }
}

impl Inner {
    /// Applies the shard's log to the index (up to and including `until`, or all that is
    /// readable), adding each record's live event to `publications` (for
    /// [`Inner::publish_after`]): the only way records reach the index while the engine is
    /// open, so no live event is ever skipped.
    fn apply(
        &self,
        index: &mut Index,
        shard: ShardId,
        until: Option<Lsn>,
        publications: &mut Vec<Publication>,
    ) -> Result<()> {
        let done = |index: &Index| until.is_some_and(|lsn| index.applied()[shard.0 as usize] > lsn);
        if done(index) {
            return Ok(());
        }
        let from = index.applied()[shard.0 as usize];
        let mut applier = self.appliers[shard.0 as usize].lock();
        let reader = match applier.take() {
            Some(reader) if reader.next_lsn() == from => reader,
            _ => self.log.batches_from(shard, from)?,
        };
        let reader = applier.insert(reader);
        for batch in reader {
            let (pos, batch) = match batch {
                Ok(batch) => batch,
                Err(error) => {
                    // A failed reader stays failed: start afresh next time.
                    *applier = None;
                    return Err(error.into());
                }
            };
            let records = index.apply_batch_observed(pos, &batch, |index, entry| {
                publications.extend(publication(index, entry));
            })?;
            self.counters.records_applied.add(records);
            self.counters.batches_applied.add(1);
            if done(index) {
                break;
            }
        }
        Ok(())
    }

    /// Applies everything readable in every shard (live events into `publications`).
    fn apply_all(&self, index: &mut Index, publications: &mut Vec<Publication>) -> Result<()> {
        for shard in 0..self.log.shard_count() {
            self.apply(index, ShardId(shard), None, publications)?;
        }
        Ok(())
    }

    /// Writes the segment index files that sealing left unwritten (the index keeps them in
    /// memory meanwhile), outside the index's lock: encoding, writing and fsyncing the file of
    /// a 256 MiB segment took ~0.3 s, which every sender waited out when it was done while
    /// applying. Without `wait`, returns at once if another thread is writing them.
    fn write_segment_files(&self, wait: bool) -> Result<()> {
        let _writing = if wait {
            self.segment_files.lock()
        } else {
            match self.segment_files.try_lock() {
                Some(guard) => guard,
                None => return Ok(()),
            }
        };
        let files = self.index.read().unwritten_segment_files();
        for file in files {
            file.write()?;
            self.index.read().segment_file_written(&file);
        }
        Ok(())
    }

    /// Writes the unwritten segment index files on a thread of its own (one at a time), so
    /// that the sender whose apply sealed a segment does not wait for them either (a tokio
    /// worker blocked for ~0.15 s stalls every task queued on it). A failure leaves them for
    /// the next seal or checkpoint (which reports it); until written, queries read them in
    /// memory. If no thread can be started, the caller writes them.
    fn write_segment_files_behind(inner: &Arc<Inner>) {
        if inner.segment_files_writer.swap(true, Ordering::AcqRel) {
            return;
        }
        // The engine is held only for moments, never while a file is written: dropping the
        // last handle releases the engine (and its folder) at once. A file this thread then
        // still writes is the same bytes a reopened engine would write, checksummed, and
        // pruned at the next open if its segment is gone meanwhile.
        let weak = Arc::downgrade(inner);
        let spawned = std::thread::Builder::new()
            .name("missive-segment-files".into())
            .spawn(move || {
                let live = || {
                    weak.upgrade()
                        .filter(|inner| !inner.closed.load(Ordering::Acquire))
                };
                while let Some(lock) = live().map(|inner| Arc::clone(&inner.segment_files)) {
                    let writing = lock.lock();
                    let Some(files) =
                        live().map(|inner| inner.index.read().unwritten_segment_files())
                    else {
                        break;
                    };
                    for file in &files {
                        let written = file.write();
                        let Some(inner) = weak.upgrade() else { break };
                        match written {
                            Ok(()) => inner.index.read().segment_file_written(file),
                            Err(_) => inner.counters.background_errors.add(1),
                        }
                    }
                    drop(writing);
                    let Some(inner) = weak.upgrade() else { break };
                    inner.segment_files_writer.store(false, Ordering::Release);
                    // A segment sealed while the flag was still up is this thread's to write.
                    let again = !inner.closed.load(Ordering::Acquire)
                        && inner.index.read().has_unwritten_segment_files()
                        && !inner.segment_files_writer.swap(true, Ordering::AcqRel);
                    if !again {
                        break;
                    }
                }
            });
        match spawned {
            Ok(thread) => {
                // The previous ones, if any, have cleared the flag: they are ending.
                let mut threads = inner.segment_files_threads.lock();
                threads.retain(|thread| !thread.is_finished());
                threads.push(thread);
            }
            Err(_) => {
                inner.segment_files_writer.store(false, Ordering::Release);
                let _ = inner.write_segment_files(false);
            }
        }
    }

    /// Releases the index's write lock, then publishes `publications` (what the apply under it
    /// decided). The publishing lock is taken before the index lock is released, so the
    /// events of consecutive applies go out in apply order (per chat in seq order), while
    /// senders and readers need not wait for the hub's wake-ups to take the index again.
    fn publish_after(
        &self,
        index: parking_lot::RwLockWriteGuard<'_, Index>,
        publications: Vec<Publication>,
    ) {
        // Taken even with nothing to publish: whoever applied this caller's record before it
        // got the index may be publishing it still, and the caller returns only after that.
        let _turn = self.publishing.lock();
        drop(index);
        for publication in publications {
            self.hub
                .publish(publication.users, publication.except, &publication.event);
        }
    }
}

/// A record's live event and who receives it, decided while applying the record (the index as
/// it stands right after it: a group's members are the message's recipients), published once
/// the index lock is released.
pub(crate) struct Publication {
    users: Vec<UserId>,
    except: Option<(UserId, DeviceId)>,
    event: Event,
}

/// The live event of a record just applied, if it has one.
fn publication(index: &Index, entry: &Entry) -> Option<Publication> {
    let chat = entry.record.chat;
    let payload = Payload::decode(entry.record.kind, &entry.record.payload)?;
    let (event, except, extra) = match payload {
        Payload::Message(message) => {
            let except = Some((message.sender, message.sender_device));
            let view = MessageView {
                lsn: entry.lsn,
                timestamp: entry.record.timestamp,
                deleted: false,
                message,
            };
            let event = Event::Message {
                chat,
                message: Arc::new(view),
            };
            (event, except, Vec::new())
        }
        Payload::Receipt(receipt) => {
            let event = Event::Receipt {
                chat,
                user: receipt.user,
                device: receipt.device,
                kind: receipt.kind,
                up_to: Seq(receipt.up_to.0.min(index.head(chat).0)),
                timestamp: entry.record.timestamp,
            };
            (event, Some((receipt.user, receipt.device)), Vec::new())
        }
        Payload::Tombstone(tombstone) => {
            let event = Event::Deleted {
                chat,
                seq: tombstone.seq,
                by: tombstone.by,
            };
            (event, None, Vec::new())
        }
        Payload::Expiry(expiry) => {
            let event = Event::ChatTtl {
                chat,
                ttl_ms: expiry.ttl_ms,
                by: expiry.by,
            };
            (event, None, Vec::new())
        }
        // Snapshots restate what subscribers already know.
        Payload::Snapshot(_) => return None,
        Payload::GroupChange(change) => {
            // Removed users learn it too.
            let extra = if change.op == GroupOp::Remove {
                change.users.clone()
            } else {
                Vec::new()
            };
            let event = Event::Group {
                chat,
                op: change.op,
                by: change.by,
                users: change.users,
            };
            (event, None, extra)
        }
    };
    let mut users = chat_users(index, chat);
    users.extend(extra);
    Some(Publication {
        users,
        except,
        event,
    })
}

impl Inner {
    /// Tells the user's 1:1 partners that they came online or went offline.
    fn publish_presence(&self, user: UserId, presence: Presence) {
        let partners: Vec<UserId> = {
            let index = self.index.read();
            index
                .chats_of(user)
                .filter_map(|chat| chat.direct_users())
                .map(|(a, b)| if a == user { b } else { a })
                .filter(|other| *other != user)
                .collect()
        };
        let event = Event::Presence { user, presence };
        self.hub.publish(partners, None, &event);
    }
}

/// The users of a chat: a 1:1 chat's two, a group's members.
pub(crate) fn chat_users(index: &Index, chat: ChatId) -> Vec<UserId> {
    match chat.direct_users() {
        Some((a, b)) if a == b => vec![a],
        Some((a, b)) => vec![a, b],
        None => index
            .members(chat)
            .map(|m| m.keys().copied().collect())
            .unwrap_or_default(),
    }
}

fn group_members(index: &Index, chat: ChatId) -> Result<&std::collections::BTreeMap<UserId, Role>> {
    if chat.is_direct() {
        return Err(Error::InvalidArgument(format!("{chat:?} is not a group")));
    }
    index.members(chat).ok_or(Error::NoSuchChat { chat })
}

/// `user` may read and write in `chat`.
pub(crate) fn check_member(index: &Index, chat: ChatId, user: UserId) -> Result<()> {
    let member = match chat.direct_users() {
        Some((a, b)) => user == a || user == b,
        None => group_members(index, chat)?.contains_key(&user),
    };
    if member {
        Ok(())
    } else {
        Err(Error::NotAMember { user, chat })
    }
}

fn check_admin(
    index: &Index,
    chat: ChatId,
    user: UserId,
) -> Result<&std::collections::BTreeMap<UserId, Role>> {
    let members = group_members(index, chat)?;
    match members.get(&user) {
        Some(Role::Admin) => Ok(members),
        Some(Role::Member) => Err(Error::NotAdmin { user, chat }),
        None => Err(Error::NotAMember { user, chat }),
    }
}

/// A random group number (a 62-bit draw; collisions are checked anyway).
fn random_group_number() -> u64 {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).expect("the system's random source");
    u64::from_le_bytes(bytes) >> 2
}

/// The client message id of the engine's system message `seq` in `chat`: unique per message.
fn system_message_id(chat: ChatId, seq: u64) -> [u8; 16] {
    let mut id = [0xff; 16];
    id[..8].copy_from_slice(&seq.to_le_bytes());
    id[8..].copy_from_slice(&(chat.to_u128() as u64).to_le_bytes());
    id
}

/// The body of a group change's system message: a small JSON object, e.g.
/// `{"op":"add","by":"1","users":["2","3"]}` (ids as strings, as on the wire).
pub(crate) fn describe(change: &GroupChange) -> String {
    let op = match change.op {
        GroupOp::Create => "create",
        GroupOp::Add => "add",
        GroupOp::Remove => "remove",
        GroupOp::Promote => "promote",
        GroupOp::Demote => "demote",
    };
    let users: Vec<String> = change
        .users
        .iter()
        .map(|u| format!("\"{}\"", u.0))
        .collect();
    format!(
        "{{\"op\":\"{op}\",\"by\":\"{}\",\"users\":[{}]}}",
        change.by.0,
        users.join(",")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_messages_describe_the_change() {
        let change = GroupChange {
            op: GroupOp::Add,
            by: UserId(1),
            users: vec![UserId(2), UserId(3)],
        };
        assert_eq!(
            describe(&change),
            r#"{"op":"add","by":"1","users":["2","3"]}"#
        );
    }
}
