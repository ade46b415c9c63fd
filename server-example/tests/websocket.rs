//! The WebSocket shell with real tokio-tungstenite clients on 127.0.0.1: authentication by
//! header and `?token=`, Origin allowlist, ping/pong, malformed and unknown frames answered with
//! `error` frames while the connection keeps serving, oversized messages closed with 1009, the
//! messenger's refusals of well-formed frames, revocation closing live sockets, heartbeat timeout,
//! per-user frame limits, and a custom `Messaging` plugged in.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{TestServer, bounded, close_code, next_json, send_text};
use futures_util::{SinkExt, StreamExt};
use missive_server::messaging::Messaging;
use missive_server::shutdown::BoxFuture;
use missive_server::ws::{
    AckFrame, CLOSE_HEARTBEAT_TIMEOUT, CLOSE_TOKEN_REVOKED, ClientFrame, Connection, ServerFrame,
};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

async fn refused_status(
    request: tokio_tungstenite::tungstenite::handshake::client::Request,
) -> u16 {
    match bounded(tokio_tungstenite::connect_async(request)).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("the upgrade should be refused"),
    }
}

#[tokio::test]
async fn authentication_by_header_or_query_and_ping_pong() {
    bounded(async {
        let server = TestServer::default().await;
        let s = server.login("+15550000001").await;

        // No token, forged token: 401 before any WebSocket exists.
        assert_eq!(
            refused_status(server.ws_url().into_client_request().unwrap()).await,
            401
        );
        let forged = format!("{}?token={}", server.ws_url(), "0".repeat(64));
        assert_eq!(
            refused_status(forged.into_client_request().unwrap()).await,
            401
        );

        let mut ws = server.ws(&s.token).await;
        send_text(&mut ws, r#"{"type":"ping"}"#).await;
        assert_eq!(
            next_json(&mut ws).await,
            json!({"type": "pong", "data": {}})
        );

        // A second device of the same user (one connection per device: a device that connects
        // again replaces its older connection).
        let s2 = server.login("+15550000001").await;
        let url = format!("{}?token={}", server.ws_url(), s2.token);
        let (mut ws2, _) = bounded(tokio_tungstenite::connect_async(url))
            .await
            .unwrap();
        send_text(&mut ws2, r#"{"type":"ping","data":{}}"#).await;
        assert_eq!(next_json(&mut ws2).await["type"], "pong");

        assert!(server.state.connections.is_online(1));
        assert_eq!(server.state.connections.len(), 2);
        ws.close(None).await.unwrap();
        ws2.close(None).await.unwrap();
        // Both unregister.
        for _ in 0..100 {
            if server.state.connections.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(!server.state.connections.is_online(1));
    })
    .await;
}

#[tokio::test]
async fn origins_outside_the_allowlist_are_refused() {
    bounded(async {
        let server = TestServer::start(|c| {
            c.dev = false;
            c.allowed_origins = vec!["https://chat.example.com".into()];
        })
        .await;
        // dev is off, so log in through the store directly.
        let token = {
            let accounts = &server.state.accounts;
            accounts.request_code("+15550000001", 0).unwrap();
            let (_, text) = server.sms.sent().pop().unwrap();
            let code: String = text.chars().filter(char::is_ascii_digit).collect();
            accounts
                .verify_code("+15550000001", &code, "", 1)
                .unwrap()
                .token
        };
        let with_origin = |origin: &str| {
            let mut r = format!("{}?token={token}", server.ws_url())
                .into_client_request()
                .unwrap();
            r.headers_mut().insert("origin", origin.parse().unwrap());
            r
        };
        assert_eq!(
            refused_status(with_origin("https://evil.example")).await,
            403
        );
        assert_eq!(refused_status(with_origin("null")).await, 403);
        let (mut ws, _) = bounded(tokio_tungstenite::connect_async(with_origin(
            "https://chat.example.com",
        )))
        .await
        .unwrap();
        send_text(&mut ws, r#"{"type":"ping"}"#).await;
        assert_eq!(next_json(&mut ws).await["type"], "pong");
        // No Origin at all: a non-browser client, allowed.
        let mut plain = server.ws(&token).await;
        send_text(&mut plain, r#"{"type":"ping"}"#).await;
        assert_eq!(next_json(&mut plain).await["type"], "pong");
    })
    .await;
}

#[tokio::test]
async fn bad_frames_get_error_frames_and_the_connection_keeps_working() {
    bounded(async {
        let server = TestServer::default().await;
        let s = server.login("+15550000001").await;
        let mut ws = server.ws(&s.token).await;
        for bad in [
            "not json",
            r#"{"type":"shout","data":{}}"#,
            r#"{"data":{}}"#,
            r#"{"type":"receipt","data":{"chat_id":"c","seq":"x","status":"read"}}"#,
            r#"{"type":"typing","data":{"chat_id":"c","is_typing":1}}"#,
            r#"{"type":"message","data":{"client_msg_id":"c1","to_user_id":2,"message_type":"text","content":"x"}}"#,
        ] {
            send_text(&mut ws, bad).await;
            let frame = next_json(&mut ws).await;
            assert_eq!(frame["type"], "error", "{bad}");
            assert_eq!(frame["data"]["code"], "invalid_request", "{bad}");
        }
        bounded(ws.send(Message::binary(vec![1, 2, 3]))).await.unwrap();
        let frame = next_json(&mut ws).await;
        assert_eq!(frame["data"]["code"], "invalid_request");

        // Well-formed frames reach the messenger, which refuses what it cannot do.
        send_text(
            &mut ws,
            r#"{"type":"message","data":{"client_msg_id":"c1","to_user_id":"2","message_type":"text","content":"aGk="}}"#,
        )
        .await;
        let frame = next_json(&mut ws).await;
        assert_eq!(frame["type"], "error");
        assert_eq!(frame["data"]["code"], "not_found", "{frame}");
        assert_eq!(frame["data"]["client_msg_id"], "c1");
        for (ok, code) in [
            (
                r#"{"type":"receipt","data":{"chat_id":"c","seq":1,"status":"delivered"}}"#,
                "invalid_request",
            ),
            (
                r#"{"type":"typing","data":{"chat_id":"c","is_typing":true}}"#,
                "invalid_request",
            ),
            // No user 2: nobody to call.
            (
                r#"{"type":"call","data":{"call_id":"k","to_user_id":"2","action":"offer","sdp":"v=0"}}"#,
                "not_found",
            ),
            // An answer to a call that does not exist.
            (
                r#"{"type":"call","data":{"call_id":"k","to_user_id":"2","action":"answer","sdp":"v=0"}}"#,
                "not_found",
            ),
        ] {
            send_text(&mut ws, ok).await;
            assert_eq!(next_json(&mut ws).await["data"]["code"], code, "{ok}");
        }
        send_text(&mut ws, r#"{"type":"ping"}"#).await;
        assert_eq!(next_json(&mut ws).await["type"], "pong");
    })
    .await;
}

#[tokio::test]
async fn oversized_messages_close_with_1009_and_others_keep_going() {
    bounded(async {
        let server = TestServer::default().await;
        let s = server.login("+15550000001").await;
        let other_device = server.login("+15550000001").await;
        let mut bystander = server.ws(&other_device.token).await;
        let mut ws = server.ws(&s.token).await;
        // Just under the limit is fine (an error frame, as it is not a valid frame).
        send_text(&mut ws, &"x".repeat(128 * 1024 - 1)).await;
        assert_eq!(next_json(&mut ws).await["data"]["code"], "invalid_request");
        let big = format!(
            r#"{{"type":"message","data":{{"content":"{}"}}}}"#,
            "A".repeat(200 * 1024)
        );
        let _ = bounded(ws.send(Message::text(big))).await;
        assert_eq!(close_code(&mut ws).await, Some(1009));
        send_text(&mut bystander, r#"{"type":"ping"}"#).await;
        assert_eq!(next_json(&mut bystander).await["type"], "pong");
        let metrics = server.request("GET", "/metrics", None, None).await.body;
        assert!(
            metrics.contains("missive_ws_closed_too_big_total 1"),
            "{metrics}"
        );
    })
    .await;
}

#[tokio::test]
async fn revoking_a_token_closes_its_live_connections() {
    bounded(async {
        let server = TestServer::default().await;
        let phone = server.login("+15550000001").await;
        let laptop = server.login("+15550000001").await;
        let mut phone_ws = server.ws(&phone.token).await;
        let mut laptop_ws = server.ws(&laptop.token).await;
        assert_eq!(
            server
                .delete(
                    &format!("/api/v1/devices/{}", laptop.device_id),
                    &phone.token
                )
                .await
                .status,
            204
        );
        assert_eq!(close_code(&mut laptop_ws).await, Some(CLOSE_TOKEN_REVOKED));
        send_text(&mut phone_ws, r#"{"type":"ping"}"#).await;
        assert_eq!(next_json(&mut phone_ws).await["type"], "pong");
    })
    .await;
}

#[tokio::test]
async fn silent_connections_hit_the_heartbeat_timeout() {
    bounded(async {
        let server = TestServer::start(|c| c.heartbeat_timeout = Duration::from_millis(600)).await;
        let s = server.login("+15550000001").await;
        let mut ws = server.ws(&s.token).await;
        // Heartbeats keep it open past the timeout...
        for _ in 0..4 {
            tokio::time::sleep(Duration::from_millis(250)).await;
            send_text(&mut ws, r#"{"type":"ping"}"#).await;
            assert_eq!(next_json(&mut ws).await["type"], "pong");
        }
        // ...silence closes it.
        let started = std::time::Instant::now();
        assert_eq!(close_code(&mut ws).await, Some(CLOSE_HEARTBEAT_TIMEOUT));
        assert!(started.elapsed() < Duration::from_secs(3));
    })
    .await;
}

#[tokio::test]
async fn frames_over_the_user_quota_are_refused() {
    bounded(async {
        let server = TestServer::start(|c| {
            c.ws_frames_per_s = 1;
            c.ws_frames_burst = 3;
        })
        .await;
        let s = server.login("+15550000001").await;
        let mut ws = server.ws(&s.token).await;
        let mut codes = Vec::new();
        for _ in 0..5 {
            send_text(&mut ws, r#"{"type":"ping"}"#).await;
            let f = next_json(&mut ws).await;
            codes.push(if f["type"] == "pong" {
                "pong".to_string()
            } else {
                f["data"]["code"].as_str().unwrap().to_owned()
            });
        }
        assert_eq!(
            codes,
            ["pong", "pong", "pong", "rate_limited", "rate_limited"]
        );
    })
    .await;
}

/// A stand-in for the messaging integration: acknowledges messages and echoes typing to every
/// connection of the user through the registry.
struct Echo {
    frames: AtomicUsize,
    connected: AtomicUsize,
    state: std::sync::OnceLock<missive_server::AppState>,
}

impl Messaging for Echo {
    fn on_connect<'a>(&'a self, _connection: &'a Connection) -> BoxFuture<'a, ()> {
        self.connected.fetch_add(1, Ordering::SeqCst);
        Box::pin(async {})
    }

    fn on_frame<'a>(
        &'a self,
        connection: &'a Connection,
        frame: ClientFrame,
    ) -> BoxFuture<'a, Option<ServerFrame>> {
        self.frames.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move {
            match frame {
                ClientFrame::Message(m) => Some(ServerFrame::Ack(AckFrame {
                    client_msg_id: m.client_msg_id,
                    message_id: "c:1".into(),
                    chat_id: "c".into(),
                    seq: 1,
                    timestamp: missive_server::time::rfc3339(0),
                })),
                ClientFrame::Typing(t) => {
                    let state = self.state.get().unwrap();
                    let text = ServerFrame::Typing(missive_server::ws::TypingEvent {
                        chat_id: t.chat_id,
                        user_id: missive_server::ws::WireId(connection.auth.user_id),
                        is_typing: t.is_typing,
                    })
                    .to_text();
                    for (_, sink) in state.connections.sinks_of(connection.auth.user_id) {
                        let _ = sink.send_text(text.clone());
                    }
                    None
                }
                _ => None,
            }
        })
    }

    fn on_disconnect(&self, _connection: &Connection) {
        self.connected.fetch_sub(1, Ordering::SeqCst);
    }
}

#[tokio::test]
async fn a_messaging_implementation_plugs_in() {
    bounded(async {
        let echo = Arc::new(Echo {
            frames: AtomicUsize::new(0),
            connected: AtomicUsize::new(0),
            state: std::sync::OnceLock::new(),
        });
        let plugged = echo.clone();
        let server = TestServer::start_with(
            |_| {},
            move |mut app| {
                let _ = plugged.state.set(app.state().clone());
                app.set_messaging(plugged);
                app
            },
        )
        .await;
        let s = server.login("+15550000001").await;
        let mut a = server.ws(&s.token).await;
        let mut b = server.ws(&s.token).await;
        send_text(
            &mut a,
            r#"{"type":"message","data":{"client_msg_id":"m1","to_user_id":"2","message_type":"text","content":"aGk="}}"#,
        )
        .await;
        let ack = next_json(&mut a).await;
        assert_eq!(ack["type"], "ack");
        assert_eq!(ack["data"]["client_msg_id"], "m1");
        send_text(&mut a, r#"{"type":"typing","data":{"chat_id":"c","is_typing":true}}"#).await;
        for ws in [&mut a, &mut b] {
            let t = next_json(ws).await;
            assert_eq!(t, json!({"type":"typing","data":{"chat_id":"c","user_id":"1","is_typing":true}}));
        }
        assert_eq!(echo.frames.load(Ordering::SeqCst), 2);
        assert_eq!(echo.connected.load(Ordering::SeqCst), 2);
        a.close(None).await.unwrap();
        let _ = bounded(a.next()).await;
        for _ in 0..100 {
            if echo.connected.load(Ordering::SeqCst) == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(echo.connected.load(Ordering::SeqCst), 1);
    })
    .await;
}
