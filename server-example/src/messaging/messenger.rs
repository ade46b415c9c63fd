//! [`Messenger`]: the messaging product over the engine, shared by the REST routes and the
//! WebSocket connections (it is the server's [`Messaging`] implementation).
//!
//! Every operation takes the caller's [`Auth`] — the sender, reader or admin is always the
//! token's user, never a field of a body — checks what the engine does not know about (users
//! that exist, blocks, display metadata), and lets the engine authorize the rest (membership,
//! admin rights, the sender of a message). Engine refusals become the protocol's errors through
//! [`api_error`]; a refused call changes nothing.
//!
//! Decisions the protocol leaves open (see the README):
//!
//! - **Blocking** is a 1:1 matter. A blocked user's sends to the blocker's 1:1 chat are
//!   refused with `403 forbidden`; their typing never reaches the blocker in any chat; presence
//!   is hidden both ways. In a group they share, the blocked user's messages are still
//!   delivered (the group is shared space; an admin can remove them).
//! - **Presence** goes to contacts only: the users who have the user in their contact list,
//!   unless either blocked the other. The engine's own presence events (which go to 1:1
//!   partners) are not forwarded; this server sends its own from [`PresenceTracker`].
//! - **Push**: after a new message is stored, each recipient without an open WebSocket
//!   connection gets a push notice (batched, muted chats and do-not-disturb honoured by
//!   [`crate::push::PushService`]); opening a connection cancels the pending batch.
//! - **Media in messages**: an `image`, `video`, `document` or `voice` message names its
//!   `media_id`, which the sender must be able to read (its uploader, or someone it was already
//!   granted to); other kinds carry none ([`MediaRefError`]). The stored message then grants
//!   the media to itself — the grant "chat" is the `message_id`, so every message is its own
//!   reference — until the message expires (its TTL, else the retention horizon). Readers are
//!   the members who can see that message; deleting it for everyone revokes its grant, and the
//!   media retention sweep removes media no live grant references.
//! - **Calls**: `call` frames go through [`CallRegistry`] (see [`crate::calls`] for the rules)
//!   and its frames to the parties' connected devices. An offer to a user with no connection
//!   is also pushed at once ("Incoming call"); a device that connects while a call rings for
//!   its user gets the offer. [`Messenger::run_call_timer`] ends calls past the ringing
//!   timeout ([`Config::call_ring_timeout`]).

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use missive::log::{ChatId, DeviceId, Seq, Timestamp, UserId};
use missive::{ContentKind, Engine, History, Outgoing, ReceiptKind, Role, Status, To};
use parking_lot::Mutex;
use serde::Serialize;
use tokio::sync::Notify;
use tokio::task::AbortHandle;

use super::Messaging;
use super::groups::{GroupInfo, GroupStore, GroupUpdate};
use super::ids::{chat_id_text, client_msg_key, message_id_text, parse_message_id};
use super::presence::{PresenceTracker, Transition};
use super::pump;
use super::wire::{api_error, content_kind, message_object};
use crate::accounts::{Accounts, StoreError};
use crate::auth::Auth;
use crate::calls::{CallAction, CallConfig, CallEvent, CallRegistry, MissedCall, Outcome, Signal};
use crate::config::{Config, Durability};
use crate::error::ApiError;
use crate::media::Media;
use crate::metrics::{Counter, Metrics, write_metric};
use crate::push::PushService;
use crate::shutdown::{BoxFuture, Shutdown};
use crate::time::{Clock, rfc3339};
use crate::ws::{
    AckFrame, CallFrame, ClientFrame, Connection, Connections, ErrorFrame, GroupEvent,
    MessageObject, MessageType, PresenceEvent, PresenceStatus, ReceiptStatus, SendMessage,
    ServerFrame, TTL_S_MAX, WireId,
};

/// Folder of the engine inside the data directory.
pub const ENGINE_DIR: &str = "engine";
/// File of the group metadata inside the data directory.
pub const GROUPS_FILE: &str = "messaging.sqlite3";

/// Messages a history page holds by default.
pub const HISTORY_LIMIT_DEFAULT: usize = 50;
/// Most messages in one history page.
pub const HISTORY_LIMIT_MAX: usize = 200;
/// Longest group name, in characters.
pub const GROUP_NAME_CHARS_MAX: usize = 64;
/// Longest group description, in characters.
pub const GROUP_DESCRIPTION_CHARS_MAX: usize = 512;
/// Longest media id of a group picture, in bytes.
const MEDIA_ID_BYTES_MAX: usize = crate::ws::ID_BYTES_MAX;

/// The engine reads the server's clock, so tests that move it move both.
struct EngineClock(Arc<dyn Clock>);

impl missive::Clock for EngineClock {
    fn now(&self) -> Timestamp {
        Timestamp(self.0.now_ms())
    }
}

/// The engine settings for `config`.
pub fn engine_config(config: &Config, clock: Arc<dyn Clock>) -> missive::Config {
    missive::Config {
        durability: match config.durability {
            Durability::Always => missive::Durability::Always,
            Durability::IntervalMs(ms) => missive::Durability::Interval { ms },
            Durability::Os => missive::Durability::Os,
        },
        retention: config.retention,
        retention_interval: config.retention_interval,
        checkpoint_interval: config.checkpoint_interval,
        group_cap: config.group_members_max as usize,
        body_bytes_max: config.content_bytes_max,
        dedup_window: config.dedup_window,
        queue_capacity: config.live_queue_events,
        clock: Arc::new(EngineClock(clock)),
        ..missive::Config::default()
    }
}

/// Counters of the messaging layer.
#[derive(Debug, Clone)]
pub(crate) struct MessagingMetrics {
    pub(crate) sent: Counter,
    pub(crate) duplicates: Counter,
    pub(crate) delivered: Counter,
    pub(crate) lagging: Counter,
    pub(crate) replaced: Counter,
    pub(crate) calls: Counter,
    pub(crate) calls_missed: Counter,
    pub(crate) calls_busy: Counter,
}

impl MessagingMetrics {
    fn register(m: &Metrics) -> Self {
        Self {
            sent: m.counter("missive_messages_sent_total", "Messages stored."),
            duplicates: m.counter(
                "missive_messages_duplicate_total",
                "Sends answered from the idempotency memory (nothing stored).",
            ),
            delivered: m.counter(
                "missive_ws_messages_delivered_total",
                "Message frames queued to WebSocket connections.",
            ),
            lagging: m.counter(
                "missive_ws_closed_lagging_total",
                "Connections closed with 4008 because their outbox stayed full.",
            ),
            replaced: m.counter(
                "missive_ws_closed_replaced_total",
                "Connections closed with 4009 because the same device connected again.",
            ),
            calls: m.counter("missive_calls_total", "Calls that started ringing."),
            calls_missed: m.counter(
                "missive_calls_missed_total",
                "Calls that ended unanswered (ringing timeout, or the caller gave up).",
            ),
            calls_busy: m.counter(
                "missive_calls_busy_total",
                "Offers answered `busy` because a party was in another call.",
            ),
        }
    }
}

/// Exports the engine's counters at every scrape, as `missive_engine_*`.
fn export_engine_stats(metrics: &Metrics, engine: &Engine) {
    let engine = engine.clone();
    metrics.add_collector(move |out| {
        let s = engine.stats();
        let counters: [(&str, &str, u64); 20] = [
            ("sends", "Messages stored.", s.sends),
            (
                "duplicate_sends",
                "Sends answered from the idempotency memory.",
                s.duplicate_sends,
            ),
            ("receipts", "Receipt records stored.", s.receipts),
            ("deletes", "Deletes for everyone.", s.deletes),
            ("group_changes", "Group changes.", s.group_changes),
            (
                "bytes_appended",
                "Payload bytes handed to the log.",
                s.bytes_appended,
            ),
            (
                "records_applied",
                "Log records applied to the index.",
                s.records_applied,
            ),
            (
                "batches_applied",
                "Log batches applied to the index.",
                s.batches_applied,
            ),
            ("checkpoints", "Index checkpoints written.", s.checkpoints),
            (
                "segments_expired",
                "Log segments removed by retention.",
                s.segments_expired,
            ),
            (
                "background_errors",
                "Failed background checkpoints or retention runs.",
                s.background_errors,
            ),
            (
                "log_batches",
                "Log batches written (group commits).",
                s.log_batches,
            ),
            (
                "log_records",
                "Records in them (divide by log_batches for the mean batch).",
                s.log_records,
            ),
            (
                "log_bytes_written",
                "Bytes written to log segments.",
                s.log_bytes_written,
            ),
            ("fsyncs", "Data fsyncs of log segments.", s.fsyncs),
            (
                "scrubbed_bytes",
                "Bytes of stored batches the scrub after opening verified.",
                s.scrubbed_bytes,
            ),
            (
                "scrub_errors",
                "Damaged batches the scrub after opening found.",
                s.scrub_errors,
            ),
            (
                "catch_ups",
                "Subscriptions caught up from the index after lagging or a gap.",
                s.catch_ups,
            ),
            (
                "events_published",
                "Live events published.",
                s.events_published,
            ),
            (
                "events_missed",
                "Live events a full queue missed (caught up from the index).",
                s.events_missed,
            ),
        ];
        for (name, help, value) in counters {
            let name = format!("missive_engine_{name}_total");
            write_metric(out, &name, help, "counter", &[], value as f64);
        }
        let gauges: [(&str, &str, u64); 8] = [
            ("subscriptions", "Live subscriptions.", s.subscriptions),
            (
                "users_online",
                "Users with a live subscription.",
                s.users_online,
            ),
            (
                "subscriptions_lagging",
                "Subscriptions lagging now.",
                s.subscriptions_lagging,
            ),
            ("lags", "Times a subscription started lagging.", s.lags),
            (
                "queue_depth_max",
                "The deepest subscription queue now.",
                s.queue_depth_max,
            ),
            (
                "open_log_ms",
                "Opening: the log's recovery, ms.",
                s.open_log_ms,
            ),
            (
                "open_index_ms",
                "Opening: loading and replaying the index, ms.",
                s.open_index_ms,
            ),
            (
                "opened_replayed",
                "Opening: records replayed into the index.",
                s.opened_replayed,
            ),
        ];
        for (name, help, value) in gauges {
            let name = format!("missive_engine_{name}");
            write_metric(out, &name, help, "gauge", &[], value as f64);
        }
        write_metric(
            out,
            "missive_engine_scrub_done",
            "1 once the scrub after opening verified every segment.",
            "gauge",
            &[],
            f64::from(u8::from(s.scrub_done)),
        );
        write_metric(
            out,
            "missive_engine_opened_from_checkpoint",
            "Opening: 1 if the index came from a checkpoint, 0 after a full rebuild.",
            "gauge",
            &[],
            f64::from(u8::from(s.opened_from_checkpoint)),
        );
    });
}

/// What the messenger is built from.
pub(crate) struct Parts {
    pub(crate) config: Arc<Config>,
    pub(crate) accounts: Arc<Accounts>,
    pub(crate) push: Arc<PushService>,
    pub(crate) connections: Arc<Connections>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) shutdown: Shutdown,
    pub(crate) metrics: Metrics,
    pub(crate) media: Media,
}

/// Why the messaging layer could not open.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The engine refused to open.
    #[error("engine: {0}")]
    Engine(#[from] missive::Error),
    /// The group metadata database could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The messaging product. See the module docs.
pub struct Messenger {
    me: Weak<Messenger>,
    engine: Engine,
    groups: GroupStore,
    presence: PresenceTracker,
    accounts: Arc<Accounts>,
    push: Arc<PushService>,
    connections: Arc<Connections>,
    config: Arc<Config>,
    clock: Arc<dyn Clock>,
    shutdown: Shutdown,
    /// The pump task of each open connection, by connection id.
    pumps: Mutex<HashMap<u64, AbortHandle>>,
    pub(crate) metrics: MessagingMetrics,
    media: Media,
    calls: Mutex<Calls>,
    /// Wakes [`Messenger::run_call_timer`] when a call starts ringing.
    call_timer: Notify,
}

/// The call registry, and the offer of each ringing call (for devices that connect while it
/// rings).
struct Calls {
    registry: CallRegistry,
    offers: HashMap<String, CallEvent>,
}

impl Calls {
    /// Forgets the offers of calls that no longer ring.
    fn prune(&mut self) {
        let registry = &self.registry;
        self.offers
            .retain(|call_id, _| registry.is_ringing(call_id));
    }
}

/// Whether `user` may read media granted to `grant`: for a `message_id` (`<chat_id>:<seq>`,
/// what message sends grant to), whether `user` can see that message now (a member who was in
/// the chat when it was sent; not expired, not deleted); for a `chat_id`, whether `user` is a
/// member of the chat. The server's [`crate::media::MediaAccess`].
pub fn can_see_grant(engine: &Engine, user: u64, grant: &str) -> bool {
    if let Ok((chat, seq)) = parse_message_id(grant) {
        return matches!(engine.message(UserId(user), chat, seq), Ok(Some(view)) if !view.deleted);
    }
    super::ids::parse_chat_id(grant).is_ok_and(|chat| engine.members(UserId(user), chat).is_ok())
}

/// How often the call timer looks at the clock at least while a call rings (so that a clock
/// moved by hand is noticed).
const CALL_TIMER_POLL: Duration = Duration::from_secs(1);

/// Why a message's media reference was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MediaRefError {
    /// An `image`, `video`, `document` or `voice` message without a `media_id`
    /// (`400 invalid_request`).
    #[error("a {0} message names its media_id")]
    Missing(&'static str),
    /// A `media_id` on a `text` message (`400 invalid_request`).
    #[error("only image, video, document and voice messages carry a media_id")]
    NotMediaKind,
    /// No media has this id (`404 not_found`).
    #[error("no such media")]
    NoSuchMedia,
    /// The sender may not read this media: neither its uploader nor granted it
    /// (`403 forbidden`).
    #[error("you may only send media you uploaded or were sent")]
    NotReadable,
}

impl From<MediaRefError> for ApiError {
    fn from(error: MediaRefError) -> Self {
        let message = error.to_string();
        match error {
            MediaRefError::Missing(_) | MediaRefError::NotMediaKind => {
                ApiError::InvalidRequest(message)
            }
            MediaRefError::NoSuchMedia => ApiError::NotFound(message),
            MediaRefError::NotReadable => ApiError::Forbidden(message),
        }
    }
}

fn media_kind_name(kind: MessageType) -> Option<&'static str> {
    match kind {
        MessageType::Image => Some("image"),
        MessageType::Video => Some("video"),
        MessageType::Document => Some("document"),
        MessageType::Voice => Some("voice"),
        MessageType::Text | MessageType::System => None,
    }
}

impl std::fmt::Debug for Messenger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Messenger")
            .field("engine", &self.engine)
            .finish_non_exhaustive()
    }
}

/// One page of a chat's history.
#[derive(Debug, Clone, Serialize)]
pub struct HistoryPage {
    /// Oldest first.
    pub messages: Vec<MessageObject>,
    /// More messages lie beyond the page (older for `before_seq` and the latest page, newer
    /// for `after_seq`).
    pub has_more: bool,
}

/// Which page of history: at most one of `before_seq` and `after_seq`.
#[derive(Debug, Clone, Copy, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryQuery {
    /// Messages before this seq (newest of them).
    pub before_seq: Option<u64>,
    /// Messages after this seq (oldest of them).
    pub after_seq: Option<u64>,
    /// Page size, 1 to [`HISTORY_LIMIT_MAX`] (default [`HISTORY_LIMIT_DEFAULT`]).
    pub limit: Option<usize>,
}

/// A chat in the caller's chat list.
#[derive(Debug, Clone, Serialize)]
pub struct ChatView {
    /// The chat.
    pub chat_id: String,
    /// `direct` or `group`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The group's name, or the other user's profile name ("" if unset).
    pub name: String,
    /// Its users.
    pub members: Vec<WireId>,
    /// A group's admins (empty for a 1:1 chat).
    pub admins: Vec<WireId>,
    /// The newest visible message.
    pub last_message: Option<MessageObject>,
    /// Messages the caller has not read.
    pub unread: u64,
    /// The chat's newest seq.
    pub last_seq: u64,
    /// The disappearing-messages timer as last set through this server (0: off).
    pub ttl_s: u64,
}

/// A member of a group.
#[derive(Debug, Clone, Serialize)]
pub struct MemberView {
    /// Who.
    pub user_id: WireId,
    /// `admin` or `member`.
    pub role: &'static str,
}

/// A group, for its members.
#[derive(Debug, Clone, Serialize)]
pub struct GroupView {
    /// The group (the same string as its chat).
    pub group_id: String,
    /// Its chat.
    pub chat_id: String,
    /// Its name.
    pub name: String,
    /// Its description.
    pub description: String,
    /// Its picture.
    pub picture_media_id: Option<String>,
    /// Its creator (`null` if the metadata was lost).
    pub created_by: Option<WireId>,
    /// RFC 3339 (`null` if the metadata was lost).
    pub created_at: Option<String>,
    /// Members and roles, by user id.
    pub members: Vec<MemberView>,
    /// The group cap.
    pub members_max: u32,
}

/// A recipient's state of one message.
#[derive(Debug, Clone, Serialize)]
pub struct RecipientStatus {
    /// Who.
    pub user_id: WireId,
    /// `sent`, `delivered` or `read`.
    pub status: &'static str,
    /// When it got there: not tracked per message by the engine, always `null`.
    pub at: Option<String>,
}

/// `GET /messages/{id}/status`.
#[derive(Debug, Clone, Serialize)]
pub struct StatusView {
    /// The message.
    pub message_id: String,
    /// `read` once every recipient read it, `delivered` once it is on a device of every
    /// recipient, else `sent`.
    pub status: &'static str,
    /// Recipients (everyone in the chat but the sender).
    pub recipients: u32,
    /// Of them, with the message on a device.
    pub delivered_to: u32,
    /// Of them, who read it.
    pub read_by: u32,
    /// Each recipient.
    pub members: Vec<RecipientStatus>,
}

/// `GET /presence/{user_id}`.
#[derive(Debug, Clone, Serialize)]
pub struct PresenceView {
    /// Whose.
    pub user_id: WireId,
    /// `online` or `offline`.
    pub status: PresenceStatus,
    /// RFC 3339; `null` if not seen since the server started.
    pub last_seen: Option<String>,
}

/// `POST /groups`.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct CreateGroup {
    /// 1 to 64 characters.
    pub name: String,
    /// Up to 512 characters.
    #[serde(default)]
    pub description: String,
    /// The other members (the creator is added as admin).
    #[serde(default)]
    pub member_ids: Vec<WireId>,
}

fn status_name(status: Status) -> &'static str {
    match status {
        Status::Sent => "sent",
        Status::Delivered => "delivered",
        Status::Read => "read",
    }
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::Admin => "admin",
        Role::Member => "member",
    }
}

fn check_text(
    field: &str,
    value: &str,
    chars_min: usize,
    chars_max: usize,
) -> Result<(), ApiError> {
    let chars = value.chars().count();
    if chars < chars_min || chars > chars_max {
        return Err(ApiError::InvalidRequest(format!(
            "{field} must have {chars_min} to {chars_max} characters"
        )));
    }
    if value.chars().any(|c| c.is_control() && c != '\n') {
        return Err(ApiError::InvalidRequest(format!(
            "{field} contains control characters"
        )));
    }
    Ok(())
}

fn check_media_id(value: &str) -> Result<(), ApiError> {
    if value.len() > MEDIA_ID_BYTES_MAX || value.chars().any(char::is_control) {
        return Err(ApiError::InvalidRequest(
            "picture_media_id is not a media id".into(),
        ));
    }
    Ok(())
}

impl Messenger {
    /// Opens the engine in `<data_dir>/engine` and the group metadata next to it, registers
    /// the engine's `close()` as a shutdown hook and its stats as metrics.
    pub(crate) fn open(parts: Parts) -> Result<Arc<Messenger>, OpenError> {
        let Parts {
            config,
            accounts,
            push,
            connections,
            clock,
            shutdown,
            metrics,
            media,
        } = parts;
        let engine = Engine::open(
            config.data_dir.join(ENGINE_DIR),
            engine_config(&config, clock.clone()),
        )?;
        let groups = GroupStore::open(&config.data_dir.join(GROUPS_FILE))?;
        {
            let engine = engine.clone();
            shutdown.register("engine: close", move || async move {
                // Flushes the log and checkpoints the index: blocking file I/O.
                let closed = tokio::task::spawn_blocking(move || engine.close()).await;
                match closed {
                    Ok(Ok(())) => tracing::info!("engine closed"),
                    Ok(Err(e)) => tracing::error!(error = %e, "engine close failed"),
                    Err(e) => tracing::error!(error = %e, "engine close panicked"),
                }
            });
        }
        export_engine_stats(&metrics, &engine);
        let messaging_metrics = MessagingMetrics::register(&metrics);
        let call_config = CallConfig {
            ring_timeout_ms: config.call_ring_timeout.as_millis() as u64,
        };
        Ok(Arc::new_cyclic(|me| Messenger {
            me: me.clone(),
            engine,
            groups,
            presence: PresenceTracker::new(),
            accounts,
            push,
            connections,
            config,
            clock,
            shutdown,
            pumps: Mutex::new(HashMap::new()),
            metrics: messaging_metrics,
            media,
            calls: Mutex::new(Calls {
                registry: CallRegistry::new(call_config),
                offers: HashMap::new(),
            }),
            call_timer: Notify::new(),
        }))
    }

    /// The engine (for tests and tools; clients go through the methods below).
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The media service that message sends check and grant media with.
    pub fn media(&self) -> &Media {
        &self.media
    }

    fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    /// Runs an engine call that may wait for the disk on the blocking pool.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Engine) -> missive::Result<T> + Send + 'static,
    ) -> Result<T, ApiError> {
        let engine = self.engine.clone();
        tokio::task::spawn_blocking(move || f(&engine))
            .await
            .map_err(ApiError::internal)?
            .map_err(api_error)
    }

    /// The other user of a 1:1 chat that `me` is in, checking that they exist. `Ok(None)` for
    /// a group (the engine checks membership).
    fn direct_peer(&self, me: u64, chat: ChatId) -> Result<Option<u64>, ApiError> {
        let Some((a, b)) = chat.direct_users() else {
            return Ok(None);
        };
        if a.0 != me && b.0 != me {
            return Err(ApiError::Forbidden(
                "you are not a member of this chat".into(),
            ));
        }
        let other = if a.0 == me { b.0 } else { a.0 };
        if other != me && !self.accounts.store().user_exists(other)? {
            return Err(ApiError::NotFound("no such user".into()));
        }
        Ok(Some(other))
    }

    // ---- messages ------------------------------------------------------------------------

    /// Stores a message from the caller (REST `POST /messages` and the `message` frame).
    /// Idempotent per device and `client_msg_id` within the dedup window.
    pub async fn send(&self, auth: Auth, message: SendMessage) -> Result<AckFrame, ApiError> {
        message.validate(self.config.content_bytes_max)?;
        let me = auth.user_id;
        self.check_media(me, &message)?;
        let media_id = message.media_id.clone();
        let store = self.accounts.store();
        let chat = match (&message.to_user_id, &message.chat_id) {
            (Some(to), _) => {
                if to.0 != me && !store.user_exists(to.0)? {
                    return Err(ApiError::NotFound("no such user".into()));
                }
                ChatId::direct(UserId(me), UserId(to.0))
            }
            (None, Some(chat)) => super::ids::parse_chat_id(chat)?,
            (None, None) => unreachable!("validate requires a destination"),
        };
        let peer = self.direct_peer(me, chat)?;
        if let Some(peer) = peer
            && peer != me
            && store.is_blocked(peer, me)
        {
            return Err(ApiError::Forbidden(
                "this user does not accept messages from you".into(),
            ));
        }
        let reply_to = match &message.reply_to {
            None => None,
            Some(id) => {
                let (reply_chat, seq) = parse_message_id(id)?;
                if reply_chat != chat {
                    return Err(ApiError::InvalidRequest(
                        "reply_to must be a message of the same chat".into(),
                    ));
                }
                Some(seq)
            }
        };
        let outgoing = Outgoing {
            to: To::Chat(chat),
            client_msg_id: client_msg_key(auth.device_id, &message.client_msg_id),
            kind: content_kind(message.message_type),
            body: Bytes::from(message.content.into_bytes()),
            media: message
                .media_id
                .map_or_else(Bytes::new, |m| Bytes::from(m.into_bytes())),
            reply_to,
            ttl_ms: message.ttl_s.map(|s| s * 1000),
        };
        let sent = self
            .engine
            .send_async(UserId(me), DeviceId(auth.device_id), outgoing)
            .await
            .map_err(api_error)?;
        let chat_id = chat_id_text(chat);
        if let Some(media_id) = &media_id {
            // Also for a retry: the first attempt may have failed right here.
            self.grant_media(me, chat, sent.seq, media_id)?;
        }
        if sent.duplicate {
            self.metrics.duplicates.inc();
        } else {
            self.metrics.sent.inc();
            self.notify_offline(me, chat, peer, &chat_id);
        }
        Ok(AckFrame {
            client_msg_id: message.client_msg_id,
            message_id: message_id_text(chat, sent.seq),
            chat_id,
            seq: sent.seq.0,
            timestamp: rfc3339(sent.timestamp.as_millis()),
        })
    }

    /// Checks a message's media reference (see [`MediaRefError`]).
    fn check_media(&self, me: u64, message: &SendMessage) -> Result<(), ApiError> {
        let kind = media_kind_name(message.message_type);
        let media_id = match (&message.media_id, kind) {
            (None, None) => return Ok(()),
            (None, Some(kind)) => return Err(MediaRefError::Missing(kind).into()),
            (Some(_), None) => return Err(MediaRefError::NotMediaKind.into()),
            (Some(media_id), Some(_)) => media_id,
        };
        // The MIME type is not matched against the kind: with end-to-end encryption clients
        // upload encrypted blobs, which sniff as application/octet-stream.
        let info = self
            .media
            .info(media_id)
            .map_err(ApiError::internal)?
            .ok_or(MediaRefError::NoSuchMedia)?;
        if !self
            .media
            .can_read(self.accounts.store(), me, &info)
            .map_err(ApiError::internal)?
        {
            return Err(MediaRefError::NotReadable.into());
        }
        Ok(())
    }

    /// Grants `media_id` to the stored message `seq` of `chat` until the message expires.
    fn grant_media(&self, me: u64, chat: ChatId, seq: Seq, media_id: &str) -> Result<(), ApiError> {
        let view = self
            .engine
            .message(UserId(me), chat, seq)
            .map_err(api_error)?
            .ok_or_else(|| ApiError::internal("a message just stored is not readable"))?;
        let stored = view.timestamp.as_millis();
        let expires_at_ms = if view.message.ttl_ms > 0 {
            stored.saturating_add(view.message.ttl_ms)
        } else {
            stored.saturating_add(self.config.retention.as_millis() as u64)
        };
        self.media
            .grant_until(media_id, &message_id_text(chat, seq), Some(expires_at_ms))
            .map_err(ApiError::internal)
    }

    /// Push notices for the recipients of a new message in `chat` without a live connection.
    fn notify_offline(&self, sender: u64, chat: ChatId, peer: Option<u64>, chat_id: &str) {
        let recipients: Vec<u64> = match peer {
            Some(peer) => vec![peer],
            None => match self.engine.members(UserId(sender), chat) {
                Ok(members) => members.into_iter().map(|(u, _)| u.0).collect(),
                Err(e) => {
                    tracing::warn!(error = %e, "members for push notices");
                    return;
                }
            },
        };
        for user in recipients {
            if user != sender && !self.connections.is_online(user) {
                self.push.notice(user, chat_id);
            }
        }
    }

    /// A page of a chat's history, oldest first.
    pub fn history(
        &self,
        auth: Auth,
        chat: ChatId,
        query: HistoryQuery,
    ) -> Result<HistoryPage, ApiError> {
        let limit = query.limit.unwrap_or(HISTORY_LIMIT_DEFAULT);
        if !(1..=HISTORY_LIMIT_MAX).contains(&limit) {
            return Err(ApiError::InvalidRequest(format!(
                "limit must be between 1 and {HISTORY_LIMIT_MAX}"
            )));
        }
        let which = match (query.before_seq, query.after_seq) {
            (Some(_), Some(_)) => {
                return Err(ApiError::InvalidRequest(
                    "give at most one of before_seq and after_seq".into(),
                ));
            }
            (Some(before), None) => History::Before(Seq(before), limit + 1),
            (None, Some(after)) => History::After(Seq(after), limit + 1),
            (None, None) => History::Latest(limit + 1),
        };
        let mut messages = self
            .engine
            .history(UserId(auth.user_id), chat, which)
            .map_err(api_error)?;
        let has_more = messages.len() > limit;
        if has_more {
            match which {
                // Newer pages keep their oldest messages; older pages their newest.
                History::After(..) => messages.truncate(limit),
                _ => {
                    messages.drain(..messages.len() - limit);
                }
            }
        }
        Ok(HistoryPage {
            messages: messages.iter().map(|m| message_object(chat, m)).collect(),
            has_more,
        })
    }

    /// The caller's chats, most recent first.
    pub fn chats(&self, auth: Auth) -> Result<Vec<ChatView>, ApiError> {
        let me = UserId(auth.user_id);
        let store = self.accounts.store();
        let summaries = self.engine.chats(me).map_err(api_error)?;
        let mut chats = Vec::with_capacity(summaries.len());
        for summary in summaries {
            let chat = summary.chat;
            let chat_id = chat_id_text(chat);
            let (kind, name, members, admins) = match chat.direct_users() {
                Some((a, b)) => {
                    let other = if a == me { b } else { a };
                    let name = store.user(other.0)?.map(|u| u.name).unwrap_or_default();
                    let members = if a == b {
                        vec![WireId(a.0)]
                    } else {
                        vec![WireId(a.0), WireId(b.0)]
                    };
                    ("direct", name, members, Vec::new())
                }
                None => {
                    let roles = self.engine.members(me, chat).map_err(api_error)?;
                    let name = self
                        .groups
                        .get(&chat_id)?
                        .map(|g| g.name)
                        .unwrap_or_default();
                    let admins = roles
                        .iter()
                        .filter(|(_, r)| *r == Role::Admin)
                        .map(|(u, _)| WireId(u.0))
                        .collect();
                    let members = roles.iter().map(|(u, _)| WireId(u.0)).collect();
                    ("group", name, members, admins)
                }
            };
            chats.push(ChatView {
                ttl_s: self.groups.chat_ttl_s(&chat_id)?,
                chat_id,
                kind,
                name,
                members,
                admins,
                last_message: summary.last.as_ref().map(|m| message_object(chat, m)),
                unread: summary.unread,
                last_seq: summary.head.0,
            });
        }
        Ok(chats)
    }

    /// Raises the caller's delivered (this device) or read watermark in `chat` to `seq`.
    pub async fn mark(
        &self,
        auth: Auth,
        chat: ChatId,
        seq: Seq,
        status: ReceiptStatus,
    ) -> Result<(), ApiError> {
        let kind = match status {
            ReceiptStatus::Delivered => ReceiptKind::Delivered,
            ReceiptStatus::Read => ReceiptKind::Read,
        };
        let (user, device) = (UserId(auth.user_id), DeviceId(auth.device_id));
        self.blocking(move |engine| engine.mark(user, device, chat, kind, seq))
            .await?;
        Ok(())
    }

    /// Where a message got among its recipients: for its sender and a group's admins.
    pub fn status(&self, auth: Auth, chat: ChatId, seq: Seq) -> Result<StatusView, ApiError> {
        let status = self
            .engine
            .status(UserId(auth.user_id), chat, seq)
            .map_err(api_error)?;
        let counts = status.counts;
        let overall = if counts.recipients > 0 && counts.read == counts.recipients {
            "read"
        } else if counts.recipients > 0 && counts.delivered == counts.recipients {
            "delivered"
        } else {
            "sent"
        };
        Ok(StatusView {
            message_id: message_id_text(chat, seq),
            status: overall,
            recipients: counts.recipients,
            delivered_to: counts.delivered,
            read_by: counts.read,
            members: status
                .members
                .into_iter()
                .map(|(user, status)| RecipientStatus {
                    user_id: WireId(user.0),
                    status: status_name(status),
                    at: None,
                })
                .collect(),
        })
    }

    /// Deletes a message for everyone (its sender only; system messages stay).
    pub async fn delete(&self, auth: Auth, chat: ChatId, seq: Seq) -> Result<(), ApiError> {
        let me = UserId(auth.user_id);
        let message = self
            .engine
            .message(me, chat, seq)
            .map_err(api_error)?
            .ok_or_else(|| ApiError::NotFound("no such message".into()))?;
        if message.message.content == ContentKind::System {
            return Err(ApiError::Forbidden(
                "system messages cannot be deleted".into(),
            ));
        }
        let media = message.message.media.clone();
        self.blocking(move |engine| engine.delete(me, chat, seq))
            .await?;
        if !media.is_empty() {
            // The message no longer references its media: the retention sweep may remove it
            // once nothing else does.
            let media_id = String::from_utf8_lossy(&media);
            if let Err(e) = self.media.revoke(&media_id, &message_id_text(chat, seq)) {
                tracing::error!(error = %e, "revoking the media of a deleted message");
            }
        }
        Ok(())
    }

    /// Sets a chat's disappearing-messages timer (any member; 0 turns it off).
    pub async fn set_chat_ttl(&self, auth: Auth, chat: ChatId, ttl_s: u64) -> Result<(), ApiError> {
        if ttl_s > TTL_S_MAX {
            return Err(ApiError::InvalidRequest(format!(
                "ttl_s must be between 0 and {TTL_S_MAX}"
            )));
        }
        self.direct_peer(auth.user_id, chat)?;
        let me = UserId(auth.user_id);
        self.blocking(move |engine| engine.set_chat_ttl(me, chat, ttl_s * 1000))
            .await?;
        self.groups
            .set_chat_ttl(&chat_id_text(chat), ttl_s, auth.user_id, self.now_ms())?;
        Ok(())
    }

    /// Shows the caller typing (or not) in `chat` to its other members.
    pub fn typing(&self, auth: Auth, chat: ChatId, is_typing: bool) -> Result<(), ApiError> {
        self.engine
            .typing(
                UserId(auth.user_id),
                DeviceId(auth.device_id),
                chat,
                is_typing,
            )
            .map_err(api_error)
    }

    // ---- groups --------------------------------------------------------------------------

    fn group_chat(chat: ChatId) -> Result<ChatId, ApiError> {
        if chat.is_direct() {
            return Err(ApiError::NotFound("no such group".into()));
        }
        Ok(chat)
    }

    /// The caller's role in a group and all its members; `forbidden` for non-members.
    fn roles(&self, me: u64, chat: ChatId) -> Result<(Role, Vec<(UserId, Role)>), ApiError> {
        let members = self
            .engine
            .members(UserId(me), Self::group_chat(chat)?)
            .map_err(api_error)?;
        let role = members
            .iter()
            .find(|(u, _)| u.0 == me)
            .map(|(_, r)| *r)
            .ok_or_else(|| ApiError::Forbidden("you are not a member of this chat".into()))?;
        Ok((role, members))
    }

    fn require_admin(&self, me: u64, chat: ChatId) -> Result<Vec<(UserId, Role)>, ApiError> {
        match self.roles(me, chat)? {
            (Role::Admin, members) => Ok(members),
            (Role::Member, _) => Err(ApiError::Forbidden(
                "only the group's admins may do this".into(),
            )),
        }
    }

    fn group_view(
        &self,
        chat: ChatId,
        members: Vec<(UserId, Role)>,
    ) -> Result<GroupView, ApiError> {
        let chat_id = chat_id_text(chat);
        let info = self.groups.get(&chat_id)?;
        Ok(GroupView {
            group_id: chat_id.clone(),
            chat_id,
            name: info.as_ref().map(|i| i.name.clone()).unwrap_or_default(),
            description: info
                .as_ref()
                .map(|i| i.description.clone())
                .unwrap_or_default(),
            picture_media_id: info.as_ref().and_then(|i| i.picture_media_id.clone()),
            created_by: info.as_ref().map(|i| WireId(i.created_by)),
            created_at: info.as_ref().map(|i| rfc3339(i.created_at_ms)),
            members: members
                .into_iter()
                .map(|(user, role)| MemberView {
                    user_id: WireId(user.0),
                    role: role_name(role),
                })
                .collect(),
            members_max: self.config.group_members_max,
        })
    }

    /// Checks that every id names a user, refusing lists past the group cap before looking.
    fn check_new_members(&self, ids: &[WireId], members_max: u32) -> Result<Vec<UserId>, ApiError> {
        if ids.len() > members_max as usize {
            return Err(ApiError::GroupFull { members_max });
        }
        let store = self.accounts.store();
        let mut users = Vec::with_capacity(ids.len());
        for id in ids {
            if !store.user_exists(id.0)? {
                return Err(ApiError::NotFound(format!("no user {}", id.0)));
            }
            users.push(UserId(id.0));
        }
        Ok(users)
    }

    /// Creates a group with the caller as its admin.
    pub async fn create_group(&self, auth: Auth, body: CreateGroup) -> Result<GroupView, ApiError> {
        check_text("name", &body.name, 1, GROUP_NAME_CHARS_MAX)?;
        check_text(
            "description",
            &body.description,
            0,
            GROUP_DESCRIPTION_CHARS_MAX,
        )?;
        let members_max = self.config.group_members_max;
        let mut ids = body.member_ids;
        ids.retain(|id| id.0 != auth.user_id);
        ids.sort_unstable();
        ids.dedup();
        if ids.len() + 1 > members_max as usize {
            return Err(ApiError::GroupFull { members_max });
        }
        let users = self.check_new_members(&ids, members_max)?;
        let me = UserId(auth.user_id);
        let chat = self
            .blocking(move |engine| engine.create_group(me, &users))
            .await?;
        let info = GroupInfo {
            name: body.name,
            description: body.description,
            picture_media_id: None,
            created_by: auth.user_id,
            created_at_ms: self.now_ms(),
        };
        self.groups.insert(&chat_id_text(chat), &info)?;
        let (_, members) = self.roles(auth.user_id, chat)?;
        self.group_view(chat, members)
    }

    /// A group, for its members.
    pub fn group(&self, auth: Auth, chat: ChatId) -> Result<GroupView, ApiError> {
        let (_, members) = self.roles(auth.user_id, chat)?;
        self.group_view(chat, members)
    }

    /// Changes a group's name, description or picture (admins).
    pub fn update_group(
        &self,
        auth: Auth,
        chat: ChatId,
        update: GroupUpdate,
    ) -> Result<GroupView, ApiError> {
        let members = self.require_admin(auth.user_id, chat)?;
        if let Some(name) = &update.name {
            check_text("name", name, 1, GROUP_NAME_CHARS_MAX)?;
        }
        if let Some(description) = &update.description {
            check_text("description", description, 0, GROUP_DESCRIPTION_CHARS_MAX)?;
        }
        if let Some(picture) = &update.picture_media_id {
            check_media_id(picture)?;
        }
        let chat_id = chat_id_text(chat);
        self.groups
            .update(&chat_id, &update, auth.user_id, self.now_ms())?;
        // Not a log record (the engine stores no metadata): live members learn it now, others
        // from GET /groups/{id}.
        let frame = ServerFrame::Group(GroupEvent {
            chat_id: chat_id.clone(),
            group_id: chat_id,
            op: "update",
            by: WireId(auth.user_id),
            user_ids: Vec::new(),
        })
        .to_text();
        for (user, _) in &members {
            for (_, sink) in self.connections.sinks_of(user.0) {
                let _ = sink.send_text(frame.clone());
            }
        }
        self.group_view(chat, members)
    }

    /// Adds members (admins); `group_full` past the cap.
    pub async fn add_members(
        &self,
        auth: Auth,
        chat: ChatId,
        ids: Vec<WireId>,
    ) -> Result<GroupView, ApiError> {
        let members = self.require_admin(auth.user_id, chat)?;
        let members_max = self.config.group_members_max;
        let mut ids = ids;
        ids.retain(|id| !members.iter().any(|(u, _)| u.0 == id.0));
        ids.sort_unstable();
        ids.dedup();
        if members.len() + ids.len() > members_max as usize {
            return Err(ApiError::GroupFull { members_max });
        }
        let users = self.check_new_members(&ids, members_max)?;
        let me = UserId(auth.user_id);
        self.blocking(move |engine| engine.add_members(me, chat, &users))
            .await?;
        self.group(auth, chat)
    }

    /// Removes a member (admins), or the caller themselves (leave).
    pub async fn remove_member(&self, auth: Auth, chat: ChatId, user: u64) -> Result<(), ApiError> {
        let (role, members) = self.roles(auth.user_id, chat)?;
        if user != auth.user_id && role != Role::Admin {
            return Err(ApiError::Forbidden(
                "only the group's admins may remove others".into(),
            ));
        }
        if !members.iter().any(|(u, _)| u.0 == user) {
            return Err(ApiError::NotFound("no such member".into()));
        }
        let (me, user) = (UserId(auth.user_id), UserId(user));
        self.blocking(move |engine| engine.remove_member(me, chat, user))
            .await
    }

    /// Makes a member an admin (`promote`) or a plain member (admins).
    pub async fn set_admin(
        &self,
        auth: Auth,
        chat: ChatId,
        user: u64,
        admin: bool,
    ) -> Result<(), ApiError> {
        let members = self.require_admin(auth.user_id, chat)?;
        let Some(role) = members.iter().find(|(u, _)| u.0 == user).map(|(_, r)| *r) else {
            return Err(ApiError::NotFound("no such member".into()));
        };
        let admins = members.iter().filter(|(_, r)| *r == Role::Admin).count();
        if !admin && role == Role::Admin && admins == 1 {
            return Err(ApiError::Conflict(
                "the group's last admin cannot be demoted: promote someone first".into(),
            ));
        }
        let (me, user) = (UserId(auth.user_id), UserId(user));
        self.blocking(move |engine| {
            if admin {
                engine.promote(me, chat, user)
            } else {
                engine.demote(me, chat, user)
            }
        })
        .await
    }

    // ---- presence ------------------------------------------------------------------------

    /// Tells `user`'s contacts about a transition (see the module docs for who counts).
    fn announce(&self, user: u64, transition: Transition) {
        let (status, last_seen_ms) = match transition {
            Transition::None => return,
            Transition::Online => (PresenceStatus::Online, self.now_ms()),
            Transition::Offline { last_seen_ms } => (PresenceStatus::Offline, last_seen_ms),
        };
        let store = self.accounts.store();
        let watchers = match store.contacted_by(user) {
            Ok(watchers) => watchers,
            Err(e) => {
                tracing::warn!(error = %e, "contacts for presence");
                return;
            }
        };
        let frame = ServerFrame::Presence(PresenceEvent {
            user_id: WireId(user),
            status,
            last_seen: Some(rfc3339(last_seen_ms)),
        })
        .to_text();
        for watcher in watchers {
            if watcher == user || store.is_blocked(watcher, user) || store.is_blocked(user, watcher)
            {
                continue;
            }
            for (_, sink) in self.connections.sinks_of(watcher) {
                // Presence is ephemeral: a full outbox drops it.
                let _ = sink.send_text(frame.clone());
            }
        }
    }

    /// `PUT /presence/online`: online for one heartbeat timeout.
    pub fn presence_online(&self, auth: Auth) {
        let now = self.now_ms();
        let timeout = self.config.heartbeat_timeout;
        let until = now + timeout.as_millis() as u64;
        let (transition, generation) = self.presence.rest_online(auth.user_id, now, until);
        self.announce(auth.user_id, transition);
        if let Some(me) = self.me.upgrade() {
            let user = auth.user_id;
            tokio::spawn(async move {
                tokio::select! {
                    _ = tokio::time::sleep(timeout) => {}
                    _ = me.shutdown.started() => return,
                }
                let transition = me.presence.rest_expire(user, generation, me.now_ms());
                me.announce(user, transition);
            });
        }
    }

    /// `PUT /presence/offline`: the REST presence ends now.
    pub fn presence_offline(&self, auth: Auth) {
        let transition = self.presence.rest_offline(auth.user_id, self.now_ms());
        self.announce(auth.user_id, transition);
    }

    /// `GET /presence/{user_id}`: for users who have them in their contacts (and oneself).
    pub fn presence_of(&self, auth: Auth, user: u64) -> Result<PresenceView, ApiError> {
        let store = self.accounts.store();
        if !store.user_exists(user)? {
            return Err(ApiError::NotFound("no such user".into()));
        }
        let me = auth.user_id;
        let visible = user == me
            || (store.is_contact(me, user)?
                && !store.is_blocked(me, user)
                && !store.is_blocked(user, me));
        if !visible {
            return Err(ApiError::Forbidden(
                "presence is shown only to users who have this user in their contacts".into(),
            ));
        }
        let state = self.presence.state(user, self.now_ms());
        Ok(PresenceView {
            user_id: WireId(user),
            status: if state.online {
                PresenceStatus::Online
            } else {
                PresenceStatus::Offline
            },
            last_seen: state.last_seen_ms.map(rfc3339),
        })
    }

    // ---- live delivery -------------------------------------------------------------------

    /// The frame `user`'s connection gets for `event`, if any.
    pub(crate) fn frame_for(&self, user: u64, event: missive::Event) -> Option<ServerFrame> {
        pump::frame_for(self.accounts.store(), user, event)
    }

    fn connected(&self, connection: &Connection) {
        let auth = connection.auth;
        self.push.cancel(auth.user_id);
        let transition = self.presence.connect(auth.user_id, self.now_ms());
        self.announce(auth.user_id, transition);
        let subscription = match self
            .engine
            .subscribe(UserId(auth.user_id), DeviceId(auth.device_id))
        {
            Ok(subscription) => subscription,
            Err(e) => {
                tracing::debug!(error = %e, "no subscription (engine closed)");
                return;
            }
        };
        let Some(me) = self.me.upgrade() else { return };
        let task = tokio::spawn(pump::run(me, connection.sink.clone(), subscription));
        self.pumps.lock().insert(connection.id, task.abort_handle());
        // A call ringing for this user rings this device too.
        let offer = {
            let calls = self.calls.lock();
            calls
                .registry
                .ringing_call_of(auth.user_id)
                .and_then(|call_id| calls.offers.get(call_id).cloned())
        };
        if let Some(offer) = offer {
            let _ = connection.sink.send(&ServerFrame::Call(offer));
        }
    }

    fn disconnected(&self, connection: &Connection) {
        if let Some(pump) = self.pumps.lock().remove(&connection.id) {
            pump.abort();
        }
        let Auth {
            user_id, device_id, ..
        } = connection.auth;
        // The device's call ends with its last connection (a reconnect replaces the old one).
        let device_still_here = self
            .connections
            .sinks_of(user_id)
            .iter()
            .any(|(d, _)| *d == device_id);
        if !device_still_here {
            let outcome = {
                let mut calls = self.calls.lock();
                let outcome = calls.registry.disconnect(user_id, device_id, self.now_ms());
                calls.prune();
                outcome
            };
            self.deliver_calls(outcome);
        }
        let transition = self
            .presence
            .disconnect(connection.auth.user_id, self.now_ms());
        self.announce(connection.auth.user_id, transition);
    }

    pub(crate) fn shutdown_started(&self) -> bool {
        self.shutdown.is_started()
    }

    async fn handle(&self, connection: &Connection, frame: ClientFrame) -> Option<ServerFrame> {
        let auth = connection.auth;
        let result = match frame {
            ClientFrame::Message(message) => {
                let client_msg_id = message.client_msg_id.clone();
                return Some(match self.send(auth, message).await {
                    Ok(ack) => ServerFrame::Ack(ack),
                    Err(e) => ServerFrame::Error(ErrorFrame::for_message(&e, &client_msg_id)),
                });
            }
            ClientFrame::Receipt(receipt) => match super::ids::parse_chat_id(&receipt.chat_id) {
                Ok(chat) => {
                    self.mark(auth, chat, Seq(receipt.seq), receipt.status)
                        .await
                }
                Err(e) => Err(e),
            },
            ClientFrame::Typing(typing) => super::ids::parse_chat_id(&typing.chat_id)
                .and_then(|chat| self.typing(auth, chat, typing.is_typing)),
            ClientFrame::Call(call) => {
                let call_id = call.call_id.clone();
                return self
                    .call(auth, call)
                    .err()
                    .map(|e| ServerFrame::Error(ErrorFrame::for_call(&e, &call_id)));
            }
            // The shell answers pings itself; answer one anyway if it gets here.
            ClientFrame::Ping => return Some(ServerFrame::Pong(crate::ws::Empty {})),
        };
        result.err().map(|e| ServerFrame::error(&e))
    }

    // ---- calls ---------------------------------------------------------------------------

    /// Applies a `call` frame from the caller's device and relays what it produces.
    fn call(&self, auth: Auth, frame: CallFrame) -> Result<(), ApiError> {
        let (me, to) = (auth.user_id, frame.to_user_id.0);
        let store = self.accounts.store();
        if frame.action == CallAction::Offer && to != me && !store.user_exists(to)? {
            return Err(ApiError::NotFound("no such user".into()));
        }
        let signal = Signal {
            call_id: frame.call_id,
            from_user_id: me,
            from_device_id: auth.device_id,
            to_user_id: to,
            action: frame.action,
            sdp: frame.sdp,
            candidate: frame.candidate,
        };
        let offer = (signal.action == CallAction::Offer).then(|| CallEvent {
            call_id: signal.call_id.clone(),
            from_user_id: me.to_string(),
            action: CallAction::Offer,
            sdp: signal.sdp.clone(),
            candidate: signal.candidate.clone(),
            reason: None,
        });
        let now = self.now_ms();
        let (outcome, rang) = {
            let mut calls = self.calls.lock();
            let was_ringing = calls.registry.is_ringing(&signal.call_id);
            let outcome = calls
                .registry
                .signal(signal, now, |blocker, blocked| {
                    store.is_blocked(blocker, blocked)
                })
                .map_err(ApiError::from)?;
            let rang = match offer {
                Some(offer) if !was_ringing && calls.registry.is_ringing(&offer.call_id) => {
                    calls.offers.insert(offer.call_id.clone(), offer.clone());
                    Some(offer)
                }
                _ => None,
            };
            calls.prune();
            (outcome, rang)
        };
        let busy = outcome
            .deliveries
            .iter()
            .any(|d| d.event.reason == Some(crate::calls::EndReason::Busy));
        if busy {
            self.metrics.calls_busy.inc();
        }
        let reached = self.deliver_calls(outcome);
        if let Some(offer) = rang {
            self.metrics.calls.inc();
            self.call_timer.notify_one();
            if !reached.contains(&to) {
                self.push_call(me, to, offer.call_id);
            }
        }
        Ok(())
    }

    /// Sends each delivery to the targeted connected devices; returns the users at least one
    /// frame reached. Frames for a device whose outbox is full are dropped (the client's call
    /// setup times out as it would on a lossy network).
    fn deliver_calls(&self, outcome: Outcome) -> Vec<u64> {
        let mut reached = Vec::new();
        for delivery in &outcome.deliveries {
            let text = ServerFrame::Call(delivery.event.clone()).to_text();
            for (device, sink) in self.connections.sinks_of(delivery.user_id) {
                if delivery.devices.includes(device) && sink.send_text(text.clone()).is_ok() {
                    reached.push(delivery.user_id);
                }
            }
        }
        self.missed_calls(outcome.missed);
        reached
    }

    /// Pushes an incoming call to `callee`, who has no live connection.
    fn push_call(&self, caller: u64, callee: u64, call_id: String) {
        let push = self.push.clone();
        let chat_id = chat_id_text(ChatId::direct(UserId(caller), UserId(callee)));
        tokio::spawn(async move {
            push.call(callee, &chat_id, &call_id).await;
        });
    }

    /// Calls that ended unanswered: each leaves a `system` message in the 1:1 chat, from the
    /// caller, with the body `{"op":"missed_call","call_id","by","callee","reason","rang_ms"}`
    /// (ids as strings, like the engine's group-change messages), delivered to both users like
    /// any message. Its `client_msg_id` derives from the call id, so it is stored once.
    fn missed_calls(&self, missed: Vec<MissedCall>) {
        for call in missed {
            self.metrics.calls_missed.inc();
            let rang_ms = call.ended_at_ms.saturating_sub(call.started_at_ms);
            tracing::info!(
                call_id = %call.call_id,
                caller = call.caller,
                callee = call.callee,
                reason = ?call.reason,
                rang_ms,
                "missed call"
            );
            let body = serde_json::json!({
                "op": "missed_call",
                "call_id": call.call_id,
                "by": call.caller.to_string(),
                "callee": call.callee.to_string(),
                "reason": call.reason,
                "rang_ms": rang_ms,
            });
            let mut message = Outgoing::text(
                To::User(UserId(call.callee)),
                client_msg_key(u32::MAX, &format!("missed-call\0{}", call.call_id)),
                Bytes::from(body.to_string()),
            );
            message.kind = ContentKind::System;
            let engine = self.engine.clone();
            let caller = UserId(call.caller);
            let stored = tokio::task::spawn_blocking(move || engine.send_system(caller, message));
            let call_id = call.call_id;
            tokio::spawn(async move {
                match stored.await {
                    Ok(Ok(_)) => {}
                    Ok(Err(error)) => {
                        tracing::warn!(%call_id, %error, "storing the missed-call message failed")
                    }
                    Err(error) => tracing::warn!(%call_id, %error, "missed-call task failed"),
                }
            });
        }
    }

    /// Ends the calls that rang past the ringing timeout by the server's clock; returns how
    /// many. [`Messenger::run_call_timer`] calls it; tests with a hand-driven clock may too.
    pub fn expire_calls(&self) -> usize {
        let outcome = {
            let mut calls = self.calls.lock();
            let outcome = calls.registry.expire(self.now_ms());
            calls.prune();
            outcome
        };
        let ended = outcome.missed.len();
        self.deliver_calls(outcome);
        ended
    }

    /// Calls in progress (ringing or answered).
    pub fn calls_in_progress(&self) -> usize {
        self.calls.lock().registry.len()
    }

    /// Ends ringing calls at their timeout until shutdown begins (the server spawns it).
    pub async fn run_call_timer(self: Arc<Self>, shutdown: Shutdown) {
        loop {
            let next = self.calls.lock().registry.next_deadline_ms();
            let wait = match next {
                Some(deadline) => Duration::from_millis(deadline.saturating_sub(self.now_ms()))
                    .min(CALL_TIMER_POLL),
                None => Duration::from_secs(3600),
            };
            tokio::select! {
                _ = shutdown.started() => return,
                _ = self.call_timer.notified() => continue,
                _ = tokio::time::sleep(wait) => {}
            }
            self.expire_calls();
        }
    }
}

/// How long a pump waits for room in a connection's outbox before closing it as lagging.
pub const OUTBOX_STALL_MAX: Duration = Duration::from_secs(10);

impl Messaging for Messenger {
    fn on_connect<'a>(&'a self, connection: &'a Connection) -> BoxFuture<'a, ()> {
        self.connected(connection);
        Box::pin(async {})
    }

    fn on_frame<'a>(
        &'a self,
        connection: &'a Connection,
        frame: ClientFrame,
    ) -> BoxFuture<'a, Option<ServerFrame>> {
        Box::pin(self.handle(connection, frame))
    }

    fn on_disconnect(&self, connection: &Connection) {
        self.disconnected(connection);
    }
}
