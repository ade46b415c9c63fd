//! Push notifications for users without a live connection.
//!
//! Messaging code calls [`PushService::notice`] when a message for an offline user is stored.
//! The service drops notices for muted chats and users in do-not-disturb (settings from
//! `PUT /api/v1/settings/notifications`), batches the rest per user over the push window
//! ([`PushBatcher`]), and when a window ends hands one [`Notification`] — "N new messages", never
//! the content — with the user's device tokens (`PUT /api/v1/push/token`) to the configured
//! [`PushSink`]. When the user comes online before the window ends, [`PushService::cancel`]
//! drops the batch.
//!
//! Time comes from an injected [`Clock`]; tests use a [`crate::time::ManualClock`] and call
//! [`PushService::flush_due`] themselves, the server runs [`PushService::run`].

pub mod batcher;
pub mod sink;
pub mod webhook;

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::Notify;

pub use batcher::{Batch, PushBatcher};
pub use sink::{
    ApnsPushSink, FcmPushSink, LogPushSink, MemoryPushSink, Notification, PushError, PushSink,
    ServiceRequest, Target, WebhookPushSink,
};
pub use webhook::WebhookUrl;

use crate::accounts::Accounts;
use crate::metrics::ServerMetrics;
use crate::shutdown::Shutdown;
use crate::time::Clock;
use crate::ws::WireId;

/// How long one delivery may take before it counts as failed.
pub const DELIVERY_TIMEOUT: Duration = Duration::from_secs(5);

/// What became of a notice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoticeOutcome {
    /// Added to the user's batch.
    Queued,
    /// The user muted the chat.
    Muted,
    /// The user is in do-not-disturb.
    DoNotDisturb,
}

/// The push pipeline: settings check, batcher, sink.
pub struct PushService {
    batcher: Mutex<PushBatcher>,
    sink: Arc<dyn PushSink>,
    accounts: Arc<Accounts>,
    clock: Arc<dyn Clock>,
    metrics: ServerMetrics,
    wake: Notify,
}

impl std::fmt::Debug for PushService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PushService")
            .field("pending_users", &self.pending_users())
            .finish_non_exhaustive()
    }
}

/// The notification text for `count` messages.
pub fn notification_text(count: u32) -> String {
    if count == 1 {
        "1 new message".into()
    } else {
        format!("{count} new messages")
    }
}

impl PushService {
    /// A service batching over `window`, delivering to `sink`.
    pub fn new(
        window: Duration,
        sink: Arc<dyn PushSink>,
        accounts: Arc<Accounts>,
        clock: Arc<dyn Clock>,
        metrics: ServerMetrics,
    ) -> Self {
        Self {
            batcher: Mutex::new(PushBatcher::new(window)),
            sink,
            accounts,
            clock,
            metrics,
            wake: Notify::new(),
        }
    }

    /// A new message for (offline) `user_id` in `chat_id`.
    pub fn notice(&self, user_id: u64, chat_id: &str) -> NoticeOutcome {
        let settings = self.accounts.store();
        if !settings.notifications_allowed(user_id, chat_id) {
            self.metrics.push_suppressed.inc();
            return if settings.notification_settings(user_id).do_not_disturb {
                NoticeOutcome::DoNotDisturb
            } else {
                NoticeOutcome::Muted
            };
        }
        self.metrics.push_notices.inc();
        let opened = self
            .batcher
            .lock()
            .add(self.clock.now_ms(), user_id, chat_id);
        if opened {
            self.wake.notify_one();
        }
        NoticeOutcome::Queued
    }

    /// Drops `user_id`'s pending batch (they are online again).
    pub fn cancel(&self, user_id: u64) -> bool {
        self.batcher.lock().discard(user_id)
    }

    /// Users with a pending batch.
    pub fn pending_users(&self) -> usize {
        self.batcher.lock().len()
    }

    /// Delivers every batch whose window has ended; returns how many notifications were
    /// delivered.
    pub async fn flush_due(&self) -> usize {
        let due = self.batcher.lock().take_due(self.clock.now_ms());
        self.deliver(due).await
    }

    /// Delivers every pending batch now (at shutdown).
    pub async fn flush_all(&self) -> usize {
        let all = self.batcher.lock().take_all();
        self.deliver(all).await
    }

    async fn deliver(&self, batches: Vec<Batch>) -> usize {
        let mut delivered = 0;
        for batch in batches {
            // Do-not-disturb may have started during the window.
            if self
                .accounts
                .store()
                .notification_settings(batch.user_id)
                .do_not_disturb
            {
                self.metrics.push_suppressed.inc();
                continue;
            }
            let targets = match self.accounts.store().push_targets(batch.user_id) {
                Ok(t) => t.into_iter().map(Target::from).collect(),
                Err(e) => {
                    tracing::warn!(user_id = batch.user_id, error = %e, "push targets unavailable");
                    Vec::new()
                }
            };
            let notification = Notification {
                user_id: WireId(batch.user_id),
                count: batch.count,
                text: notification_text(batch.count),
                chat_ids: batch.chat_ids,
                targets,
                call_id: None,
            };
            if self.send(&notification).await {
                delivered += 1;
            }
        }
        delivered
    }

    /// Hands `notification` to the sink (bounded by [`DELIVERY_TIMEOUT`]); whether it took it.
    async fn send(&self, notification: &Notification) -> bool {
        let result = tokio::time::timeout(DELIVERY_TIMEOUT, self.sink.deliver(notification))
            .await
            .unwrap_or_else(|_| Err(PushError::Io("delivery timed out".into())));
        match result {
            Ok(()) => {
                self.metrics.push_delivered.inc();
                true
            }
            Err(e) => {
                self.metrics.push_failed.inc();
                tracing::warn!(user_id = notification.user_id.0, error = %e, "push delivery failed");
                false
            }
        }
    }

    /// An incoming call `call_id` in `chat_id` for `user_id`, who has no live connection:
    /// one "Incoming call" notification, delivered at once (a call cannot wait for a batch
    /// window). Muted chats and do-not-disturb are honoured as for messages. Returns whether
    /// the sink took it.
    pub async fn call(&self, user_id: u64, chat_id: &str, call_id: &str) -> bool {
        if !self
            .accounts
            .store()
            .notifications_allowed(user_id, chat_id)
        {
            self.metrics.push_suppressed.inc();
            return false;
        }
        self.metrics.push_notices.inc();
        let targets = match self.accounts.store().push_targets(user_id) {
            Ok(t) => t.into_iter().map(Target::from).collect(),
            Err(e) => {
                tracing::warn!(user_id, error = %e, "push targets unavailable");
                Vec::new()
            }
        };
        let notification = Notification {
            user_id: WireId(user_id),
            count: 1,
            text: "Incoming call".into(),
            chat_ids: vec![chat_id.to_owned()],
            targets,
            call_id: Some(call_id.to_owned()),
        };
        self.send(&notification).await
    }

    /// Delivers batches as their windows end, until shutdown begins.
    pub async fn run(self: Arc<Self>, shutdown: Shutdown) {
        loop {
            let next = self.batcher.lock().next_deadline_ms();
            let wait = match next {
                Some(deadline) => {
                    Duration::from_millis(deadline.saturating_sub(self.clock.now_ms()))
                }
                None => Duration::from_secs(3600),
            };
            tokio::select! {
                _ = shutdown.started() => return,
                _ = self.wake.notified() => continue,
                _ = tokio::time::sleep(wait) => {}
            }
            self.flush_due().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accounts::{AccountStore, MemorySmsSink};
    use crate::metrics::Metrics;
    use crate::time::ManualClock;

    fn service(
        window_s: u64,
    ) -> (
        PushService,
        Arc<MemoryPushSink>,
        Arc<ManualClock>,
        Arc<Accounts>,
    ) {
        let accounts = Arc::new(Accounts::new(
            AccountStore::open_in_memory().unwrap(),
            Arc::new(MemorySmsSink::default()),
            true,
            Duration::from_secs(60),
            3,
        ));
        for phone in ["+15550000001", "+15550000002", "+15550000003"] {
            let code = accounts.request_code(phone, 0).unwrap().dev_code.unwrap();
            accounts.verify_code(phone, &code, "", 1).unwrap();
        }
        let sink = Arc::new(MemoryPushSink::default());
        let clock = Arc::new(ManualClock::new(1_000_000));
        let push = PushService::new(
            Duration::from_secs(window_s),
            sink.clone(),
            accounts.clone(),
            clock.clone(),
            ServerMetrics::register(&Metrics::new()),
        );
        (push, sink, clock, accounts)
    }

    #[tokio::test]
    async fn batches_per_user_per_window_with_a_fake_clock() {
        let (push, sink, clock, accounts) = service(30);
        accounts
            .store()
            .set_push_token(1, 1, "fcm", "tok-1", 0)
            .unwrap();
        for _ in 0..3 {
            assert_eq!(push.notice(1, "chat-a"), NoticeOutcome::Queued);
            clock.advance_ms(1_000);
        }
        push.notice(1, "chat-b");
        push.notice(2, "chat-a");
        assert_eq!(
            push.flush_due().await,
            0,
            "nothing is due inside the window"
        );
        clock.advance_ms(26_999);
        assert_eq!(push.flush_due().await, 0);
        clock.advance_ms(1);
        assert_eq!(push.flush_due().await, 1, "user 1's window ended");
        let got = sink.delivered();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].user_id, WireId(1));
        assert_eq!(got[0].count, 4);
        assert_eq!(got[0].text, "4 new messages");
        assert_eq!(got[0].chat_ids, vec!["chat-a", "chat-b"]);
        assert_eq!(got[0].targets[0].token, "tok-1");
        clock.advance_ms(3_000);
        assert_eq!(push.flush_due().await, 1, "user 2's window ended");
        assert_eq!(sink.delivered()[1].text, "1 new message");
        // A later message opens a new window: one notification per window.
        push.notice(1, "chat-a");
        clock.advance_ms(30_000);
        assert_eq!(push.flush_due().await, 1);
        assert_eq!(sink.delivered().len(), 3);
    }

    #[tokio::test]
    async fn muted_chats_and_do_not_disturb_are_honoured() {
        let (push, sink, clock, accounts) = service(30);
        let store = accounts.store();
        store
            .set_notification_settings(1, Some(&["muted".to_string()]), None)
            .unwrap();
        store
            .set_notification_settings(2, None, Some(true))
            .unwrap();
        assert_eq!(push.notice(1, "muted"), NoticeOutcome::Muted);
        assert_eq!(push.notice(2, "any"), NoticeOutcome::DoNotDisturb);
        assert_eq!(push.notice(1, "other"), NoticeOutcome::Queued);
        assert_eq!(push.notice(3, "any"), NoticeOutcome::Queued);
        // User 3 turns on do-not-disturb during the window: nothing is sent.
        store
            .set_notification_settings(3, None, Some(true))
            .unwrap();
        clock.advance_ms(30_000);
        assert_eq!(push.flush_due().await, 1);
        let got = sink.delivered();
        assert_eq!(got.len(), 1);
        assert_eq!((got[0].user_id, got[0].count), (WireId(1), 1));
    }

    #[tokio::test]
    async fn calls_are_pushed_at_once_unless_muted() {
        let (push, sink, _clock, accounts) = service(30);
        assert!(push.call(1, "chat-a", "k1").await);
        let got = sink.delivered();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].text, "Incoming call");
        assert_eq!(got[0].call_id.as_deref(), Some("k1"));
        assert_eq!(got[0].chat_ids, vec!["chat-a"]);
        assert_eq!(push.pending_users(), 0, "not batched");
        accounts
            .store()
            .set_notification_settings(1, None, Some(true))
            .unwrap();
        assert!(!push.call(1, "chat-a", "k2").await);
        assert_eq!(sink.delivered().len(), 1);
    }

    #[tokio::test]
    async fn coming_online_cancels_and_shutdown_flushes() {
        let (push, sink, _clock, _) = service(30);
        push.notice(1, "a");
        push.notice(2, "a");
        assert!(push.cancel(1));
        assert_eq!(push.flush_all().await, 1);
        assert_eq!(sink.delivered()[0].user_id, WireId(2));
        assert_eq!(push.pending_users(), 0);
    }
}
