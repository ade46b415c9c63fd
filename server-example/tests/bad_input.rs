//! Bad input to the messaging endpoints and frames: malformed JSON, wrong field types, unknown
//! types, values out of range, oversized content and frames, huge group adds. Each is answered
//! with a clear error (the protocol's code and a message naming the problem), changes nothing,
//! and the server keeps serving everyone else.

mod common;

use common::{TestServer, bounded_test, close_code, direct_chat, phone, raw_request, send_text};
use futures_util::SinkExt;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn bad_rest_input_gets_clear_errors() {
    bounded_test(async {
        let server = TestServer::default().await;
        let mut alice = server.client(&phone(1)).await;
        let mut bob = server.client(&phone(2)).await;
        let (a, b) = (alice.id().to_owned(), bob.id().to_owned());
        let ta = alice.token().to_owned();
        let chat = direct_chat(&a, &b);
        alice.text_to_user(&b, "m1", "eA==").await;
        bob.next_of("message").await;
        let group = server.create_group(&alice.session, "G", &[&b]).await;
        let other_chat = direct_chat(&a, "999");

        let text = |extra: serde_json::Value| {
            let mut m = json!({"client_msg_id": "c", "to_user_id": b, "message_type": "text", "content": "eA=="});
            for (k, v) in extra.as_object().unwrap() {
                if v.is_null() {
                    m.as_object_mut().unwrap().remove(k);
                } else {
                    m[k] = v.clone();
                }
            }
            m.to_string()
        };
        let big = "A".repeat(65 * 1024);
        let huge = "A".repeat(200 * 1024);
        let cases: Vec<(&str, String, u16, &str, &str)> = vec![
            ("malformed", r#"{"client_msg_id":"#.into(), 400, "invalid_request", "EOF"),
            ("not an object", "[1,2]".into(), 400, "invalid_request", "invalid type"),
            ("numeric user id", text(json!({"to_user_id": 2})), 400, "invalid_request", "user id"),
            ("string ttl", text(json!({"ttl_s": "10"})), 400, "invalid_request", "ttl_s"),
            ("numeric content", text(json!({"content": 5})), 400, "invalid_request", "content"),
            ("unknown type", text(json!({"message_type": "gif"})), 400, "invalid_request", "gif"),
            ("no type", text(json!({"message_type": null})), 400, "invalid_request", "message_type"),
            ("system type", text(json!({"message_type": "system"})), 400, "invalid_request", "system"),
            ("both targets", text(json!({"chat_id": chat})), 400, "invalid_request", "exactly one"),
            ("no target", text(json!({"to_user_id": null})), 400, "invalid_request", "exactly one"),
            ("bad chat id", text(json!({"to_user_id": null, "chat_id": "zz"})), 400, "invalid_request", "chat_id"),
            ("bad reply", text(json!({"reply_to": "x"})), 400, "invalid_request", "message_id"),
            ("reply elsewhere", text(json!({"reply_to": format!("{other_chat}:1")})), 400, "invalid_request", "same chat"),
            ("reply ahead", text(json!({"reply_to": format!("{chat}:50")})), 400, "invalid_request", "reply_to"),
            ("zero ttl", text(json!({"ttl_s": 0})), 400, "invalid_request", "ttl_s"),
            ("huge ttl", text(json!({"ttl_s": 1u64 << 40})), 400, "invalid_request", "ttl_s"),
            ("empty id", text(json!({"client_msg_id": ""})), 400, "invalid_request", "client_msg_id"),
            ("long id", text(json!({"client_msg_id": "i".repeat(65)})), 400, "invalid_request", "client_msg_id"),
            ("empty message", text(json!({"content": ""})), 400, "invalid_request", "content"),
            ("content too large", text(json!({"content": big})), 413, "payload_too_large", "content"),
            ("body too large", text(json!({"content": huge})), 413, "payload_too_large", "larger"),
            ("unknown user", text(json!({"to_user_id": "999"})), 404, "not_found", "user"),
        ];
        for (name, body, status, code, needle) in &cases {
            let r = server.post("/api/v1/messages", Some(&ta), body).await;
            r.assert_error(*status, code);
            let message = r.json()["error"]["message"].as_str().unwrap().to_owned();
            assert!(message.contains(needle), "{name}: {message}");
        }
        // No content type.
        let r = raw_request(
            server.addr,
            "POST",
            "/api/v1/messages",
            &[("authorization".into(), format!("Bearer {ta}"))],
            Some(text(json!({})).as_bytes()),
        )
        .await;
        r.assert_error(400, "invalid_request");

        let gets: Vec<(String, u16, &str)> = vec![
            ("/api/v1/messages/notachat".into(), 400, "invalid_request"),
            (format!("/api/v1/messages/{chat}?limit=0"), 400, "invalid_request"),
            (format!("/api/v1/messages/{chat}?limit=1000"), 400, "invalid_request"),
            (format!("/api/v1/messages/{chat}?limit=abc"), 400, "invalid_request"),
            (format!("/api/v1/messages/{chat}?before_seq=-1"), 400, "invalid_request"),
            (format!("/api/v1/messages/{chat}?before_seq=2&after_seq=1"), 400, "invalid_request"),
            (format!("/api/v1/messages/{chat}?sender=1"), 400, "invalid_request"),
            (format!("/api/v1/messages/{chat}:0/status"), 400, "invalid_request"),
            (format!("/api/v1/messages/{chat}:x/status"), 400, "invalid_request"),
            (format!("/api/v1/messages/{chat}:9/status"), 404, "not_found"),
            ("/api/v1/groups/nope".into(), 400, "invalid_request"),
            (format!("/api/v1/groups/{chat}"), 404, "not_found"),
            ("/api/v1/presence/abc".into(), 400, "invalid_request"),
            ("/api/v1/presence/999".into(), 404, "not_found"),
        ];
        for (path, status, code) in &gets {
            let r = server.get(path, &ta).await;
            assert_eq!(r.status, *status, "{path}: {}", r.body);
            r.assert_error(*status, code);
        }
        let puts: Vec<(String, &str, u16, &str)> = vec![
            (format!("/api/v1/messages/{chat}:1/status"), r#"{"status":"seen"}"#, 400, "invalid_request"),
            (format!("/api/v1/messages/{chat}:1/status"), r#"{}"#, 400, "invalid_request"),
            (format!("/api/v1/messages/{chat}:1/status"), r#"{"status":1}"#, 400, "invalid_request"),
            (format!("/api/v1/chats/{chat}/settings"), r#"{"ttl_s":-1}"#, 400, "invalid_request"),
            (format!("/api/v1/chats/{chat}/settings"), r#"{"ttl_s":99999999999}"#, 400, "invalid_request"),
            (format!("/api/v1/chats/{chat}/settings"), r#"{}"#, 400, "invalid_request"),
            (format!("/api/v1/groups/{group}"), r#"{"name":""}"#, 400, "invalid_request"),
            (format!("/api/v1/groups/{group}"), r#"{"name":5}"#, 400, "invalid_request"),
        ];
        for (path, body, status, code) in &puts {
            let r = server.put(path, &ta, body).await;
            assert_eq!(r.status, *status, "{path} {body}: {}", r.body);
            r.assert_error(*status, code);
        }
        let long_name = "n".repeat(65);
        let many: Vec<String> = (1000..1300).map(|i| i.to_string()).collect();
        let huge_add: Vec<String> = (1000..11000).map(|i| i.to_string()).collect();
        let groups: Vec<(String, serde_json::Value, u16, &str)> = vec![
            ("/api/v1/groups".into(), json!({"name": "", "member_ids": [b]}), 400, "invalid_request"),
            ("/api/v1/groups".into(), json!({"name": long_name, "member_ids": [b]}), 400, "invalid_request"),
            ("/api/v1/groups".into(), json!({"name": "x", "member_ids": [2]}), 400, "invalid_request"),
            ("/api/v1/groups".into(), json!({"name": "x", "member_ids": ["999"]}), 404, "not_found"),
            ("/api/v1/groups".into(), json!({"name": "x", "member_ids": many}), 409, "group_full"),
            ("/api/v1/groups".into(), json!({"member_ids": [b]}), 400, "invalid_request"),
            (format!("/api/v1/groups/{group}/members"), json!({"user_ids": huge_add}), 409, "group_full"),
            (format!("/api/v1/groups/{group}/members"), json!({"user_ids": many}), 409, "group_full"),
            (format!("/api/v1/groups/{group}/members"), json!({"user_ids": ["999"]}), 404, "not_found"),
            (format!("/api/v1/groups/{group}/members"), json!({"user_ids": "2"}), 400, "invalid_request"),
        ];
        for (path, body, status, code) in &groups {
            let r = server.post_json(path, &ta, body).await;
            assert_eq!(r.status, *status, "{path}: {}", r.body);
            r.assert_error(*status, code);
        }
        // Nothing was stored: still one message in the 1:1 chat, two members in the group.
        let page = server
            .get(&format!("/api/v1/messages/{chat}"), &ta)
            .await
            .json();
        assert_eq!(page["messages"].as_array().unwrap().len(), 1);
        let view = server
            .get(&format!("/api/v1/groups/{group}"), &ta)
            .await
            .json();
        assert_eq!(view["members"].as_array().unwrap().len(), 2);
        let chats = server.get("/api/v1/chats", &ta).await.json();
        assert_eq!(chats["chats"].as_array().unwrap().len(), 2);

        // And the server still serves.
        alice.text_to_user(&b, "m2", "eQ==").await;
        loop {
            let m = bob.next_of("message").await;
            if m["chat_id"] == chat {
                assert_eq!(m["seq"], 2);
                break;
            }
        }
    })
    .await;
}

#[tokio::test]
async fn bad_frames_get_clear_errors_and_others_keep_chatting() {
    bounded_test(async {
        let server = TestServer::default().await;
        let mut alice = server.client(&phone(1)).await;
        let mut bob = server.client(&phone(2)).await;
        let mut mallory = server.client(&phone(3)).await;
        let b = bob.id().to_owned();
        let big = "A".repeat(65 * 1024);
        let frames: Vec<(String, &str, &str)> = vec![
            ("{".into(), "invalid_request", "a frame is"),
            ("42".into(), "invalid_request", "a frame is"),
            (r#"{"type":"shout","data":{}}"#.into(), "invalid_request", "unknown frame type"),
            (r#"{"type":"message"}"#.into(), "invalid_request", "needs `data`"),
            (r#"{"type":"message","data":{"client_msg_id":"c"}}"#.into(), "invalid_request", "message_type"),
            (json!({"type":"message","data":{"client_msg_id":"c","to_user_id":b,"message_type":"text","content":7}}).to_string(), "invalid_request", "content"),
            (json!({"type":"message","data":{"client_msg_id":"c","chat_id":"0","message_type":"text","content":"x"}}).to_string(), "invalid_request", "chat_id"),
            (json!({"type":"message","data":{"client_msg_id":"c","to_user_id":b,"message_type":"text","content":big}}).to_string(), "payload_too_large", "content"),
            (r#"{"type":"receipt","data":{"chat_id":"x","seq":1,"status":"read"}}"#.into(), "invalid_request", "chat_id"),
            (r#"{"type":"receipt","data":{"chat_id":"x","seq":-1,"status":"read"}}"#.into(), "invalid_request", "seq"),
            (r#"{"type":"receipt","data":{"chat_id":"x","seq":1,"status":"seen"}}"#.into(), "invalid_request", "seen"),
            (r#"{"type":"typing","data":{"chat_id":"x","is_typing":"yes"}}"#.into(), "invalid_request", "boolean"),
            (r#"{"type":"typing","data":{"chat_id":"x","is_typing":true}}"#.into(), "invalid_request", "chat_id"),
        ];
        for (i, (text, code, needle)) in frames.iter().enumerate() {
            send_text(&mut mallory.ws, text).await;
            let f = mallory.next().await;
            assert_eq!(f["type"], "error", "{text:.80}: {f}");
            assert_eq!(f["data"]["code"], *code, "{text:.80}: {f}");
            let message = f["data"]["message"].as_str().unwrap();
            assert!(message.contains(needle), "{text:.80}: {message}");
            // Meanwhile, others chat.
            let ack = alice.text_to_user(&b, &format!("k{i}"), "eA==").await;
            assert_eq!(bob.next_of("message").await["seq"], ack["seq"]);
        }
        // Binary frames are refused; oversized frames close just that connection with 1009.
        futures_util::SinkExt::send(&mut mallory.ws, Message::binary(vec![0u8; 10]))
            .await
            .unwrap();
        assert_eq!(mallory.next().await["data"]["code"], "invalid_request");
        let _ = mallory
            .ws
            .send(Message::text("x".repeat(200 * 1024)))
            .await;
        assert_eq!(close_code(&mut mallory.ws).await, Some(1009));
        let ack = alice.text_to_user(&b, "after", "eA==").await;
        assert_eq!(bob.next_of("message").await["seq"], ack["seq"]);
        // Mallory reconnects and is served normally.
        let mut mallory = server.connect(&mallory.session).await;
        send_text(&mut mallory.ws, r#"{"type":"ping"}"#).await;
        assert_eq!(mallory.next().await["type"], "pong");
    })
    .await;
}
