//! Where notifications go: the [`PushSink`] trait and its implementations.
//!
//! - [`LogPushSink`] (default) writes each notification to the log.
//! - [`WebhookPushSink`] POSTs it as JSON to a URL over plain HTTP/1.1 (a push gateway of the
//!   operator's, or a test's listener).
//! - [`FcmPushSink`] and [`ApnsPushSink`] build the exact requests Firebase Cloud Messaging (HTTP
//!   v1) and APNs would take, then fail with [`PushError::Unreachable`]: neither service can be
//!   reached from here, and neither has credentials configured.
//! - [`MemoryPushSink`] keeps them, for tests.

use std::time::Duration;

use parking_lot::Mutex;
use serde::Serialize;

use super::webhook::{WebhookUrl, post_json};
use crate::accounts::PushTarget;
use crate::shutdown::BoxFuture;
use crate::ws::WireId;

/// One notification for one user: "N new messages", or "Incoming call" (then with `call_id`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Notification {
    /// The recipient.
    pub user_id: WireId,
    /// New messages in the window (1 for a call).
    pub count: u32,
    /// "1 new message" / "N new messages" / "Incoming call" (content never leaves the server
    /// in a push).
    pub text: String,
    /// The chats concerned (at most `BATCH_CHATS_MAX`; a call's 1:1 chat).
    pub chat_ids: Vec<String>,
    /// The user's registered devices.
    pub targets: Vec<Target>,
    /// Set for an incoming call: its id (such notifications are sent at once, not batched).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub call_id: Option<String>,
}

/// A device's push registration, as sent to sinks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Target {
    /// The device.
    pub device_id: u32,
    /// `fcm`, `apns` or `webhook`.
    pub platform: String,
    /// The platform's token.
    pub token: String,
}

impl From<PushTarget> for Target {
    fn from(t: PushTarget) -> Self {
        Self {
            device_id: t.device_id,
            platform: t.platform,
            token: t.token,
        }
    }
}

/// Why a notification was not delivered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PushError {
    /// The service cannot be reached from this environment.
    #[error("{service} cannot be reached from here: {detail}")]
    Unreachable {
        /// "FCM" or "APNs".
        service: &'static str,
        /// What would have been sent.
        detail: String,
    },
    /// The webhook answered with a non-2xx status.
    #[error("webhook answered HTTP {status}")]
    Status {
        /// The status.
        status: u16,
    },
    /// Connecting, writing or reading failed, or timed out.
    #[error("webhook request failed: {0}")]
    Io(String),
}

/// Delivers notifications.
pub trait PushSink: Send + Sync + 'static {
    /// Delivers `notification`.
    fn deliver<'a>(
        &'a self,
        notification: &'a Notification,
    ) -> BoxFuture<'a, Result<(), PushError>>;
}

/// Logs notifications (target `missive_server::push`).
#[derive(Debug, Default, Clone, Copy)]
pub struct LogPushSink;

impl PushSink for LogPushSink {
    fn deliver<'a>(&'a self, n: &'a Notification) -> BoxFuture<'a, Result<(), PushError>> {
        tracing::info!(
            target: "missive_server::push",
            user_id = n.user_id.0,
            count = n.count,
            devices = n.targets.len(),
            text = %n.text,
            "push notification"
        );
        Box::pin(async { Ok(()) })
    }
}

/// Keeps notifications: for tests.
#[derive(Debug, Default)]
pub struct MemoryPushSink {
    delivered: Mutex<Vec<Notification>>,
}

impl MemoryPushSink {
    /// Every notification so far.
    pub fn delivered(&self) -> Vec<Notification> {
        self.delivered.lock().clone()
    }
}

impl PushSink for MemoryPushSink {
    fn deliver<'a>(&'a self, n: &'a Notification) -> BoxFuture<'a, Result<(), PushError>> {
        self.delivered.lock().push(n.clone());
        Box::pin(async { Ok(()) })
    }
}

/// POSTs notifications as JSON to a URL.
#[derive(Debug, Clone)]
pub struct WebhookPushSink {
    url: WebhookUrl,
    timeout: Duration,
}

impl WebhookPushSink {
    /// A sink for `url`, giving up on a request after `timeout`.
    pub fn new(url: WebhookUrl, timeout: Duration) -> Self {
        Self { url, timeout }
    }
}

impl PushSink for WebhookPushSink {
    fn deliver<'a>(&'a self, n: &'a Notification) -> BoxFuture<'a, Result<(), PushError>> {
        Box::pin(async move {
            let body = serde_json::to_vec(n).map_err(|e| PushError::Io(e.to_string()))?;
            let status = post_json(&self.url, &body, self.timeout).await?;
            if (200..300).contains(&status) {
                Ok(())
            } else {
                Err(PushError::Status { status })
            }
        })
    }
}

/// An HTTP request a push service would take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceRequest {
    /// Absolute URL.
    pub url: String,
    /// Headers besides `content-type: application/json`.
    pub headers: Vec<(String, String)>,
    /// JSON body.
    pub body: String,
}

/// Firebase Cloud Messaging (HTTP v1), shaped but unreachable.
#[derive(Debug, Clone)]
pub struct FcmPushSink {
    /// The Firebase project.
    pub project_id: String,
}

impl FcmPushSink {
    /// One request per `fcm` target of `n`.
    pub fn requests(&self, n: &Notification) -> Vec<ServiceRequest> {
        n.targets
            .iter()
            .filter(|t| t.platform == "fcm")
            .map(|t| ServiceRequest {
                url: format!(
                    "https://fcm.googleapis.com/v1/projects/{}/messages:send",
                    self.project_id
                ),
                headers: vec![(
                    "authorization".into(),
                    "Bearer <OAuth 2.0 access token of a service account>".into(),
                )],
                body: serde_json::json!({
                    "message": {
                        "token": t.token,
                        "notification": { "title": "Missive", "body": n.text },
                        "data": { "count": n.count.to_string(), "user_id": n.user_id.0.to_string() },
                        "android": { "collapse_key": "missive-new-messages" }
                    }
                })
                .to_string(),
            })
            .collect()
    }
}

impl PushSink for FcmPushSink {
    fn deliver<'a>(&'a self, n: &'a Notification) -> BoxFuture<'a, Result<(), PushError>> {
        let requests = self.requests(n);
        Box::pin(async move {
            Err(PushError::Unreachable {
                service: "FCM",
                detail: format!(
                    "{} request(s) to fcm.googleapis.com built; no network route or credentials",
                    requests.len()
                ),
            })
        })
    }
}

/// Apple Push Notification service (HTTP/2 provider API), shaped but unreachable.
#[derive(Debug, Clone)]
pub struct ApnsPushSink {
    /// The app's bundle id (`apns-topic`).
    pub topic: String,
}

impl ApnsPushSink {
    /// One request per `apns` target of `n`.
    pub fn requests(&self, n: &Notification) -> Vec<ServiceRequest> {
        n.targets
            .iter()
            .filter(|t| t.platform == "apns")
            .map(|t| ServiceRequest {
                url: format!("https://api.push.apple.com/3/device/{}", t.token),
                headers: vec![
                    ("apns-topic".into(), self.topic.clone()),
                    ("apns-push-type".into(), "alert".into()),
                    ("apns-collapse-id".into(), "missive-new-messages".into()),
                    ("authorization".into(), "bearer <ES256 provider JWT>".into()),
                ],
                body: serde_json::json!({
                    "aps": { "alert": { "title": "Missive", "body": n.text }, "badge": n.count }
                })
                .to_string(),
            })
            .collect()
    }
}

impl PushSink for ApnsPushSink {
    fn deliver<'a>(&'a self, n: &'a Notification) -> BoxFuture<'a, Result<(), PushError>> {
        let requests = self.requests(n);
        Box::pin(async move {
            Err(PushError::Unreachable {
                service: "APNs",
                detail: format!(
                    "{} request(s) to api.push.apple.com built; no network route or credentials",
                    requests.len()
                ),
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notification() -> Notification {
        Notification {
            user_id: WireId(3),
            count: 2,
            text: "2 new messages".into(),
            chat_ids: vec!["c".into()],
            targets: vec![
                Target {
                    device_id: 1,
                    platform: "fcm".into(),
                    token: "f1".into(),
                },
                Target {
                    device_id: 2,
                    platform: "apns".into(),
                    token: "a2".into(),
                },
            ],
            call_id: None,
        }
    }

    #[tokio::test]
    async fn fcm_and_apns_are_shaped_but_unreachable() {
        let n = notification();
        let fcm = FcmPushSink {
            project_id: "p".into(),
        };
        let reqs = fcm.requests(&n);
        assert_eq!(reqs.len(), 1);
        assert!(reqs[0].url.ends_with("/projects/p/messages:send"));
        assert!(reqs[0].body.contains("\"token\":\"f1\""));
        let err = fcm.deliver(&n).await.unwrap_err();
        assert!(matches!(err, PushError::Unreachable { service: "FCM", .. }));

        let apns = ApnsPushSink {
            topic: "com.example.missive".into(),
        };
        let reqs = apns.requests(&n);
        assert_eq!(reqs.len(), 1);
        assert!(reqs[0].url.ends_with("/3/device/a2"));
        assert!(reqs[0].body.contains("\"badge\":2"));
        assert!(apns.deliver(&n).await.is_err());
    }

    #[test]
    fn notifications_serialize_with_string_user_ids() {
        let json = serde_json::to_string(&notification()).unwrap();
        assert!(json.starts_with(r#"{"user_id":"3","count":2,"text":"2 new messages""#));
    }
}
