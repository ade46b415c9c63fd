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

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use missive::log::{ChatId, DeviceId, Seq, Timestamp, UserId};
use missive::{ContentKind, Engine, History, Outgoing, ReceiptKind, Role, Status, To};
use parking_lot::Mutex;
use serde::Serialize;
use tokio::task::AbortHandle;

use super::groups::{GroupInfo, GroupStore, GroupUpdate};
use super::ids::{chat_id_text, client_msg_key, message_id_text, parse_message_id};
use super::presence::{PresenceTracker, Transition};
use super::pump;
use super::wire::{api_error, content_kind, message_object};
use super::{Messaging, NotImplemented};
use crate::accounts::{Accounts, StoreError};
use crate::auth::Auth;
use crate::config::{Config, Durability};
use crate::error::ApiError;
use crate::metrics::{Counter, Metrics, write_metric};
use crate::push::PushService;
use crate::shutdown::{BoxFuture, Shutdown};
use crate::time::{Clock, rfc3339};
use crate::ws::{
    AckFrame, ClientFrame, Connection, Connections, ErrorFrame, GroupEvent, MessageObject,
    PresenceEvent, PresenceStatus, ReceiptStatus, SendMessage, ServerFrame, TTL_S_MAX, WireId,
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
        }
    }
}

/// Exports the engine's counters at every scrape, as `missive_engine_*`.
fn export_engine_stats(metrics: &Metrics, engine: &Engine) {
    let engine = engine.clone();
    metrics.add_collector(move |out| {
        let s = engine.stats();
        let counters: [(&str, &str, u64); 14] = [
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
        }))
    }

    /// The engine (for tests and tools; clients go through the methods below).
    pub fn engine(&self) -> &Engine {
        &self.engine
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
        self.blocking(move |engine| engine.delete(me, chat, seq))
            .await
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
    }

    fn disconnected(&self, connection: &Connection) {
        if let Some(pump) = self.pumps.lock().remove(&connection.id) {
            pump.abort();
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
            other @ (ClientFrame::Call(_) | ClientFrame::Ping) => {
                return NotImplemented.on_frame(connection, other).await;
            }
        };
        result.err().map(|e| ServerFrame::error(&e))
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
