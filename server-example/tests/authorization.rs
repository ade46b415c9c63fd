//! The authorization matrix: over REST and WebSocket, reading, sending to, acknowledging,
//! deleting in and managing chats and groups one is not in (or no longer in, or not an admin
//! of, or did not send to), sends from a blocked user, forged / garbage / revoked tokens and
//! spoofed sender fields. Each case is refused with the protocol's status and code; afterwards
//! nothing changed (the same chat lists, histories, receipts and groups as before, for
//! everyone) and nothing leaked (no refused answer carries message content, and no connection
//! received anything but its own error frames).

mod common;

use std::time::Duration;

use common::{Client, TestServer, bounded_test, direct_chat, phone, raw_request};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// Content that must never appear in a refused answer.
const SECRET: &str = "U0VDUkVU";

struct Case {
    name: String,
    token: Option<String>,
    /// A raw `Authorization` header instead of `Bearer <token>`.
    header: Option<String>,
    method: &'static str,
    path: String,
    body: Option<Value>,
    status: u16,
    code: &'static str,
}

fn case(
    name: impl Into<String>,
    token: &str,
    method: &'static str,
    path: impl Into<String>,
    body: Option<Value>,
    status: u16,
    code: &'static str,
) -> Case {
    Case {
        name: name.into(),
        token: Some(token.to_owned()),
        header: None,
        method,
        path: path.into(),
        body,
        status,
        code,
    }
}

async fn run(server: &TestServer, c: &Case) {
    let mut headers = Vec::new();
    if let Some(h) = &c.header {
        headers.push(("authorization".to_owned(), h.clone()));
    } else if let Some(t) = &c.token {
        headers.push(("authorization".to_owned(), format!("Bearer {t}")));
    }
    let body = c.body.as_ref().map(|b| b.to_string());
    if body.is_some() {
        headers.push(("content-type".to_owned(), "application/json".to_owned()));
    }
    let r = raw_request(
        server.addr,
        c.method,
        &c.path,
        &headers,
        body.as_deref().map(str::as_bytes),
    )
    .await;
    assert_eq!(r.status, c.status, "{}: {}", c.name, r.body);
    assert_eq!(r.json()["error"]["code"], c.code, "{}: {}", c.name, r.body);
    assert!(
        !r.body.contains(SECRET),
        "{} leaked content: {}",
        c.name,
        r.body
    );
}

/// Everything the refused cases could have changed, as each user sees it.
async fn snapshot(server: &TestServer, views: &[(&str, String)]) -> Vec<String> {
    let mut out = Vec::new();
    for (token, path) in views {
        let r = server.get(path, token).await;
        out.push(format!("{path} {} {}", r.status, r.body));
    }
    out
}

/// A WebSocket case: a frame from `client` answered by an `error` frame with `code`.
async fn ws_case(client: &mut Client, kind: &str, data: Value, code: &str) {
    client.frame(kind, data.clone()).await;
    let frame = client.next().await;
    assert_eq!(frame["type"], "error", "{kind} {data}: {frame}");
    assert_eq!(frame["data"]["code"], code, "{kind} {data}: {frame}");
    if let Some(cmid) = data.get("client_msg_id") {
        assert_eq!(&frame["data"]["client_msg_id"], cmid);
    }
    assert!(!frame.to_string().contains(SECRET));
}

#[tokio::test]
async fn the_authorization_matrix() {
    bounded_test(async {
        let server = TestServer::default().await;
        let mut alice = server.client(&phone(1)).await;
        let mut bob = server.client(&phone(2)).await;
        let mut carol = server.client(&phone(3)).await;
        let mut dave = server.client(&phone(4)).await;
        let mut eve = server.client(&phone(5)).await;
        let (a, b, c, d, e) = (
            alice.id().to_owned(),
            bob.id().to_owned(),
            carol.id().to_owned(),
            dave.id().to_owned(),
            eve.id().to_owned(),
        );
        let (ta, tb, tc, td, te) = (
            alice.token().to_owned(),
            bob.token().to_owned(),
            carol.token().to_owned(),
            dave.token().to_owned(),
            eve.token().to_owned(),
        );

        // The world: a 1:1 chat A-B, a group G (admin A; B; D removed), Carol's group H,
        // Eve blocked by Alice, and a revoked token of Alice's.
        let ab = direct_chat(&a, &b);
        let ae = direct_chat(&a, &e);
        alice.text_to_user(&b, "ab1", SECRET).await;
        bob.text_to_user(&a, "ab2", SECRET).await;
        let g = server.create_group(&alice.session, "G", &[&b, &d]).await;
        alice.text_to_chat(&g, "g2", SECRET).await;
        bob.text_to_chat(&g, "g3", SECRET).await;
        let r = server
            .delete(&format!("/api/v1/groups/{g}/members/{d}"), &ta)
            .await;
        assert_eq!(r.status, 204);
        let h = server.create_group(&carol.session, "H", &[]).await;
        carol.text_to_chat(&h, "h2", SECRET).await;
        let r = server
            .put(&format!("/api/v1/contacts/{e}/block"), &ta, "")
            .await;
        assert_eq!(r.status, 204);
        let revoked = server.login(&phone(1)).await.token;
        let r = server
            .request("DELETE", "/api/v1/auth/token", Some(&revoked), None)
            .await;
        assert_eq!(r.status, 204);
        let unknown_group = format!("{:032x}", (u128::from(u64::MAX) << 64) | 12345);
        // Settle: everyone consumes what the setup sent them.
        for client in [&mut alice, &mut bob, &mut carol, &mut dave, &mut eve] {
            client.settle(Duration::from_millis(250)).await;
        }

        let views: Vec<(&str, String)> = vec![
            (&ta, "/api/v1/chats".into()),
            (&tb, "/api/v1/chats".into()),
            (&tc, "/api/v1/chats".into()),
            (&td, "/api/v1/chats".into()),
            (&te, "/api/v1/chats".into()),
            (&ta, format!("/api/v1/messages/{ab}")),
            (&ta, format!("/api/v1/messages/{g}")),
            (&tc, format!("/api/v1/messages/{h}")),
            (&ta, format!("/api/v1/groups/{g}")),
            (&tc, format!("/api/v1/groups/{h}")),
            (&ta, format!("/api/v1/messages/{ab}:1/status")),
            (&tb, format!("/api/v1/messages/{ab}:2/status")),
            (&ta, format!("/api/v1/messages/{g}:2/status")),
        ];
        let before = snapshot(&server, &views).await;

        let text = |to: Value| {
            let mut m = json!({"client_msg_id": "x1", "message_type": "text", "content": "eA=="});
            m.as_object_mut()
                .unwrap()
                .extend(to.as_object().unwrap().clone());
            m
        };
        let read = Some(json!({"status": "read"}));
        let delivered = Some(json!({"status": "delivered"}));
        let (f, n) = (403, "forbidden");
        let mut cases = vec![
            // An outsider reads, sends, acknowledges, deletes and manages.
            case(
                "C reads A-B",
                &tc,
                "GET",
                format!("/api/v1/messages/{ab}"),
                None,
                f,
                n,
            ),
            case(
                "C reads A-B before",
                &tc,
                "GET",
                format!("/api/v1/messages/{ab}?before_seq=2"),
                None,
                f,
                n,
            ),
            case(
                "C reads A-B after",
                &tc,
                "GET",
                format!("/api/v1/messages/{ab}?after_seq=0"),
                None,
                f,
                n,
            ),
            case(
                "C reads G",
                &tc,
                "GET",
                format!("/api/v1/messages/{g}"),
                None,
                f,
                n,
            ),
            case(
                "C reads G after",
                &tc,
                "GET",
                format!("/api/v1/messages/{g}?after_seq=1"),
                None,
                f,
                n,
            ),
            case(
                "C sends to A-B",
                &tc,
                "POST",
                "/api/v1/messages",
                Some(text(json!({"chat_id": ab}))),
                f,
                n,
            ),
            case(
                "C sends to G",
                &tc,
                "POST",
                "/api/v1/messages",
                Some(text(json!({"chat_id": g}))),
                f,
                n,
            ),
            case(
                "C delivers in A-B",
                &tc,
                "PUT",
                format!("/api/v1/messages/{ab}:1/status"),
                delivered.clone(),
                f,
                n,
            ),
            case(
                "C reads-receipts A-B",
                &tc,
                "PUT",
                format!("/api/v1/messages/{ab}:2/status"),
                read.clone(),
                f,
                n,
            ),
            case(
                "C reads-receipts G",
                &tc,
                "PUT",
                format!("/api/v1/messages/{g}:2/status"),
                read.clone(),
                f,
                n,
            ),
            case(
                "C status in A-B",
                &tc,
                "GET",
                format!("/api/v1/messages/{ab}:1/status"),
                None,
                f,
                n,
            ),
            case(
                "C status in G",
                &tc,
                "GET",
                format!("/api/v1/messages/{g}:2/status"),
                None,
                f,
                n,
            ),
            case(
                "C deletes in A-B",
                &tc,
                "DELETE",
                format!("/api/v1/messages/{ab}:1"),
                None,
                f,
                n,
            ),
            case(
                "C deletes in G",
                &tc,
                "DELETE",
                format!("/api/v1/messages/{g}:2"),
                None,
                f,
                n,
            ),
            case(
                "C views G",
                &tc,
                "GET",
                format!("/api/v1/groups/{g}"),
                None,
                f,
                n,
            ),
            case(
                "C renames G",
                &tc,
                "PUT",
                format!("/api/v1/groups/{g}"),
                Some(json!({"name": "mine"})),
                f,
                n,
            ),
            case(
                "C joins G",
                &tc,
                "POST",
                format!("/api/v1/groups/{g}/members"),
                Some(json!({"user_ids": [c]})),
                f,
                n,
            ),
            case(
                "C removes B from G",
                &tc,
                "DELETE",
                format!("/api/v1/groups/{g}/members/{b}"),
                None,
                f,
                n,
            ),
            case(
                "C removes A from G",
                &tc,
                "DELETE",
                format!("/api/v1/groups/{g}/members/{a}"),
                None,
                f,
                n,
            ),
            case(
                "C promotes C in G",
                &tc,
                "PUT",
                format!("/api/v1/groups/{g}/admins/{c}"),
                None,
                f,
                n,
            ),
            case(
                "C promotes B in G",
                &tc,
                "PUT",
                format!("/api/v1/groups/{g}/admins/{b}"),
                None,
                f,
                n,
            ),
            case(
                "C demotes A in G",
                &tc,
                "DELETE",
                format!("/api/v1/groups/{g}/admins/{a}"),
                None,
                f,
                n,
            ),
            case(
                "C sets A-B timer",
                &tc,
                "PUT",
                format!("/api/v1/chats/{ab}/settings"),
                Some(json!({"ttl_s": 5})),
                f,
                n,
            ),
            case(
                "C sets G timer",
                &tc,
                "PUT",
                format!("/api/v1/chats/{g}/settings"),
                Some(json!({"ttl_s": 5})),
                f,
                n,
            ),
            case(
                "C sees A's presence",
                &tc,
                "GET",
                format!("/api/v1/presence/{a}"),
                None,
                f,
                n,
            ),
            // A removed member.
            case(
                "D reads G",
                &td,
                "GET",
                format!("/api/v1/messages/{g}"),
                None,
                f,
                n,
            ),
            case(
                "D sends to G",
                &td,
                "POST",
                "/api/v1/messages",
                Some(text(json!({"chat_id": g}))),
                f,
                n,
            ),
            case(
                "D reads-receipts G",
                &td,
                "PUT",
                format!("/api/v1/messages/{g}:3/status"),
                read.clone(),
                f,
                n,
            ),
            case(
                "D views G",
                &td,
                "GET",
                format!("/api/v1/groups/{g}"),
                None,
                f,
                n,
            ),
            case(
                "D leaves G again",
                &td,
                "DELETE",
                format!("/api/v1/groups/{g}/members/{d}"),
                None,
                f,
                n,
            ),
            case(
                "D sets G timer",
                &td,
                "PUT",
                format!("/api/v1/chats/{g}/settings"),
                Some(json!({"ttl_s": 5})),
                f,
                n,
            ),
            // A member who is not an admin.
            case(
                "B renames G",
                &tb,
                "PUT",
                format!("/api/v1/groups/{g}"),
                Some(json!({"name": "b"})),
                f,
                n,
            ),
            case(
                "B adds C to G",
                &tb,
                "POST",
                format!("/api/v1/groups/{g}/members"),
                Some(json!({"user_ids": [c]})),
                f,
                n,
            ),
            case(
                "B removes A from G",
                &tb,
                "DELETE",
                format!("/api/v1/groups/{g}/members/{a}"),
                None,
                f,
                n,
            ),
            case(
                "B promotes B in G",
                &tb,
                "PUT",
                format!("/api/v1/groups/{g}/admins/{b}"),
                None,
                f,
                n,
            ),
            case(
                "B demotes A in G",
                &tb,
                "DELETE",
                format!("/api/v1/groups/{g}/admins/{a}"),
                None,
                f,
                n,
            ),
            // Not the sender.
            case(
                "B deletes A's 1:1 message",
                &tb,
                "DELETE",
                format!("/api/v1/messages/{ab}:1"),
                None,
                f,
                n,
            ),
            case(
                "B deletes A's group message",
                &tb,
                "DELETE",
                format!("/api/v1/messages/{g}:2"),
                None,
                f,
                n,
            ),
            case(
                "B reads the status of A's message",
                &tb,
                "GET",
                format!("/api/v1/messages/{ab}:1/status"),
                None,
                f,
                n,
            ),
            case(
                "B reads the status of A's group message",
                &tb,
                "GET",
                format!("/api/v1/messages/{g}:2/status"),
                None,
                f,
                n,
            ),
            case(
                "A deletes a system message",
                &ta,
                "DELETE",
                format!("/api/v1/messages/{g}:1"),
                None,
                f,
                n,
            ),
            // Alice in Carol's group.
            case(
                "A reads H",
                &ta,
                "GET",
                format!("/api/v1/messages/{h}"),
                None,
                f,
                n,
            ),
            case(
                "A joins H",
                &ta,
                "POST",
                format!("/api/v1/groups/{h}/members"),
                Some(json!({"user_ids": [a]})),
                f,
                n,
            ),
            case(
                "A removes C from H",
                &ta,
                "DELETE",
                format!("/api/v1/groups/{h}/members/{c}"),
                None,
                f,
                n,
            ),
            case(
                "A sends to H",
                &ta,
                "POST",
                "/api/v1/messages",
                Some(text(json!({"chat_id": h}))),
                f,
                n,
            ),
            case(
                "A renames H",
                &ta,
                "PUT",
                format!("/api/v1/groups/{h}"),
                Some(json!({"name": "a"})),
                f,
                n,
            ),
            // A group that does not exist looks like one you are not in.
            case(
                "A views an unknown group",
                &ta,
                "GET",
                format!("/api/v1/groups/{unknown_group}"),
                None,
                f,
                n,
            ),
            case(
                "A sends to an unknown group",
                &ta,
                "POST",
                "/api/v1/messages",
                Some(text(json!({"chat_id": unknown_group}))),
                f,
                n,
            ),
            // Blocked: Eve's 1:1 messages to Alice.
            case(
                "E sends to A",
                &te,
                "POST",
                "/api/v1/messages",
                Some(text(json!({"to_user_id": a}))),
                f,
                n,
            ),
            case(
                "E sends to A-E",
                &te,
                "POST",
                "/api/v1/messages",
                Some(text(json!({"chat_id": ae}))),
                f,
                n,
            ),
            // Spoofed senders and watermarks.
            case(
                "C spoofs A into A-B",
                &tc,
                "POST",
                "/api/v1/messages",
                Some(text(json!({"chat_id": ab, "sender_id": a}))),
                400,
                "invalid_request",
            ),
            case(
                "B spoofs A's id",
                &tb,
                "POST",
                "/api/v1/messages",
                Some(text(json!({"to_user_id": a, "sender_id": a}))),
                400,
                "invalid_request",
            ),
            case(
                "B spoofs a device",
                &tb,
                "POST",
                "/api/v1/messages",
                Some(text(json!({"to_user_id": a, "sender_device_id": 1}))),
                400,
                "invalid_request",
            ),
            case(
                "C spoofs A's receipt",
                &tc,
                "PUT",
                format!("/api/v1/messages/{ab}:2/status"),
                Some(json!({"status": "read", "user_id": a})),
                400,
                "invalid_request",
            ),
            case(
                "B adds as A",
                &tb,
                "POST",
                format!("/api/v1/groups/{g}/members"),
                Some(json!({"user_ids": [c], "by": a})),
                400,
                "invalid_request",
            ),
        ];
        // Tokens: absent, unknown, garbage, revoked, or not a bearer token, on every kind of call.
        let endpoints: Vec<(&'static str, String, Option<Value>)> = vec![
            ("GET", "/api/v1/chats".into(), None),
            (
                "POST",
                "/api/v1/messages".into(),
                Some(text(json!({"to_user_id": b}))),
            ),
            ("GET", format!("/api/v1/messages/{ab}"), None),
            (
                "PUT",
                format!("/api/v1/messages/{ab}:2/status"),
                read.clone(),
            ),
            ("DELETE", format!("/api/v1/messages/{ab}:1"), None),
            (
                "POST",
                "/api/v1/groups".into(),
                Some(json!({"name": "x", "member_ids": [b]})),
            ),
            ("GET", format!("/api/v1/groups/{g}"), None),
            ("PUT", "/api/v1/presence/online".into(), None),
        ];
        let forged = "ab".repeat(32);
        let tokens: Vec<(&str, Option<String>, Option<String>)> = vec![
            ("no token", None, None),
            ("unknown token", Some(forged.clone()), None),
            ("garbage token", Some("not-a-token".into()), None),
            ("revoked token", Some(revoked.clone()), None),
            ("basic auth", None, Some(format!("Basic {ta}"))),
        ];
        for (what, token, header) in &tokens {
            for (method, path, body) in &endpoints {
                cases.push(Case {
                    name: format!("{what}: {method} {path}"),
                    token: token.clone(),
                    header: header.clone(),
                    method,
                    path: path.clone(),
                    body: body.clone(),
                    status: 401,
                    code: "unauthorized",
                });
            }
        }
        for c in &cases {
            run(&server, c).await;
        }
        let rest_cases = cases.len();

        // The same over WebSocket frames.
        let msg = |cmid: &str, to: Value| {
            let mut m = text(to);
            m["client_msg_id"] = json!(cmid);
            m
        };
        let (ia, ib, ic, id, ie) = (0, 1, 2, 3, 4);
        let frames: Vec<(usize, &str, Value, &str)> = vec![
            (ic, "message", msg("w1", json!({"chat_id": ab})), n),
            (ic, "message", msg("w2", json!({"chat_id": g})), n),
            (
                ic,
                "receipt",
                json!({"chat_id": ab, "seq": 2, "status": "delivered"}),
                n,
            ),
            (
                ic,
                "receipt",
                json!({"chat_id": g, "seq": 3, "status": "read"}),
                n,
            ),
            (ic, "typing", json!({"chat_id": ab, "is_typing": true}), n),
            (ic, "typing", json!({"chat_id": g, "is_typing": true}), n),
            (
                ic,
                "message",
                msg("w3", json!({"chat_id": ab, "sender_id": a})),
                "invalid_request",
            ),
            (
                ic,
                "message",
                msg("w4", json!({"to_user_id": b, "sender_id": a})),
                "invalid_request",
            ),
            (id, "message", msg("w5", json!({"chat_id": g})), n),
            (
                id,
                "receipt",
                json!({"chat_id": g, "seq": 3, "status": "read"}),
                n,
            ),
            (id, "typing", json!({"chat_id": g, "is_typing": true}), n),
            (ie, "message", msg("w6", json!({"to_user_id": a})), n),
            (ie, "message", msg("w7", json!({"chat_id": ae})), n),
            (ia, "message", msg("w8", json!({"chat_id": h})), n),
            (
                ia,
                "receipt",
                json!({"chat_id": h, "seq": 2, "status": "read"}),
                n,
            ),
            (ia, "typing", json!({"chat_id": h, "is_typing": true}), n),
            (
                ib,
                "message",
                msg("w9", json!({"chat_id": unknown_group})),
                n,
            ),
        ];
        let mut clients = [alice, bob, carol, dave, eve];
        for (who, kind, data, code) in &frames {
            ws_case(&mut clients[*who], kind, data.clone(), code).await;
        }
        let ws_cases = frames.len();

        // Upgrades with bad credentials never become WebSockets.
        let url = server.ws_url();
        let upgrades: Vec<(String, Option<String>, u16)> = vec![
            (url.clone(), None, 401),
            (url.clone(), Some(format!("Bearer {forged}")), 401),
            (url.clone(), Some(format!("Bearer {revoked}")), 401),
            (url.clone(), Some("Bearer".into()), 401),
            (format!("{url}?token={forged}"), None, 401),
            (format!("{url}?token={revoked}"), None, 401),
        ];
        for (u, auth, status) in &upgrades {
            let mut request = u.as_str().into_client_request().unwrap();
            if let Some(auth) = auth {
                request
                    .headers_mut()
                    .insert("authorization", auth.parse().unwrap());
            }
            match tokio_tungstenite::connect_async(request).await {
                Err(tokio_tungstenite::tungstenite::Error::Http(r)) => {
                    assert_eq!(r.status().as_u16(), *status, "{u} {auth:?}");
                }
                other => panic!("{u} {auth:?}: the upgrade should be refused, got {other:?}"),
            }
        }
        let ws_total = ws_cases + upgrades.len();

        // Nothing changed, and no connection received anything.
        assert_eq!(snapshot(&server, &views).await, before);
        for client in clients.iter_mut() {
            let frames = client.settle(Duration::from_millis(250)).await;
            assert!(frames.is_empty(), "{}: {frames:?}", client.id());
        }
        let total = rest_cases + ws_total;
        println!("authorization matrix: {rest_cases} REST + {ws_total} WebSocket = {total} cases");
        assert!(total >= 60, "{total}");
    })
    .await;
}
