//! Push through a running server: notices for a user are batched over the window and POSTed
//! once to a webhook listener on 127.0.0.1 as "N new messages"; muted chats send nothing; and
//! pending batches are delivered at shutdown. (Window arithmetic with a fake clock is unit-tested
//! in `src/push`.)

mod common;

use std::time::Duration;

use common::{TestServer, bounded};
use missive_server::App;
use missive_server::config::{Config, PushSinkKind};
use missive_server::push::NoticeOutcome;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// A webhook receiver: every POST body, as JSON, on the channel.
async fn webhook() -> (String, mpsc::UnboundedReceiver<Value>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/push", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut data = Vec::new();
                let mut buf = [0u8; 4096];
                loop {
                    let n = stream.read(&mut buf).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    data.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&data).to_string();
                    if let Some((head, body)) = text.split_once("\r\n\r\n") {
                        let len: usize = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length: "))
                            .and_then(|v| v.trim().parse().ok())
                            .unwrap_or(0);
                        if body.len() >= len {
                            let _ = stream
                                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                                .await;
                            let _ = tx.send(serde_json::from_str(&body[..len]).unwrap());
                            return;
                        }
                    }
                }
            });
        }
    });
    (url, rx)
}

#[tokio::test]
async fn batched_webhook_notification_for_an_offline_user() {
    bounded(async {
        let (url, mut posts) = webhook().await;
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::for_tests(dir.path());
        config.push_window = Duration::from_millis(700);
        config.push_sink = PushSinkKind::Webhook { url };
        let app = App::open(config).unwrap();
        let state = app.state().clone();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(app.serve(listener, async {
            let _ = stopped.await;
        }));
        for phone in ["+15550000001", "+15550000002"] {
            let code = state
                .accounts
                .request_code(phone, 0)
                .unwrap()
                .dev_code
                .unwrap();
            state.accounts.verify_code(phone, &code, "", 1).unwrap();
        }
        state
            .accounts
            .store()
            .set_push_token(1, 1, "webhook", "device-token", 0)
            .unwrap();
        state
            .accounts
            .store()
            .set_notification_settings(2, Some(&["muted".to_string()]), None)
            .unwrap();

        for chat in ["c1", "c1", "c2"] {
            assert_eq!(state.push.notice(1, chat), NoticeOutcome::Queued);
        }
        assert_eq!(state.push.notice(2, "muted"), NoticeOutcome::Muted);
        let started = std::time::Instant::now();
        let post = posts.recv().await.unwrap();
        assert!(
            started.elapsed() >= Duration::from_millis(500),
            "sent at the window's end"
        );
        assert_eq!(post["user_id"], "1");
        assert_eq!(post["count"], 3);
        assert_eq!(post["text"], "3 new messages");
        assert_eq!(post["chat_ids"], serde_json::json!(["c1", "c2"]));
        assert_eq!(post["targets"][0]["token"], "device-token");
        // Nothing for the muted chat, and one notification per window.
        assert!(
            tokio::time::timeout(Duration::from_millis(1200), posts.recv())
                .await
                .is_err()
        );

        // A batch still open at shutdown is delivered by the shutdown hook.
        state.push.notice(2, "unmuted");
        let _ = stop.send(());
        server.await.unwrap();
        let post = posts.recv().await.unwrap();
        assert_eq!(
            (post["user_id"].as_str(), post["count"].as_u64()),
            (Some("2"), Some(1))
        );
    })
    .await;
}

#[tokio::test]
async fn memory_sink_via_the_test_server() {
    bounded(async {
        let server = TestServer::start(|c| c.push_window = Duration::from_millis(200)).await;
        server.login("+15550000001").await;
        server.state.push.notice(1, "c");
        for _ in 0..100 {
            if !server.push.delivered().is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let got = server.push.delivered();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].text, "1 new message");
        let metrics = server.request("GET", "/metrics", None, None).await.body;
        assert!(
            metrics.contains("missive_push_total{result=\"delivered\"} 1"),
            "{metrics}"
        );
    })
    .await;
}
