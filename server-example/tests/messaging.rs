//! End-to-end messaging on a real server on 127.0.0.1 with real WebSocket clients: 1:1 chats
//! over WebSocket and REST (acks, idempotent retries, receipts relayed to the sender, history
//! pages, chat list, delete for everyone, replies, disappearing messages), three users in 1:1
//! chats and a group, a group of 256 members, an offline device that reconnects and receives
//! everything after its watermark in order exactly once per connection (and again until it
//! acknowledges), presence and typing reaching contacts only, push notices for offline users
//! but not for muted chats, group management with system messages, and the engine's metrics.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::{Client, TestServer, bounded_test, direct_chat, phone};
use serde_json::{Value, json};

fn texts(frames: &[Value]) -> Vec<String> {
    frames
        .iter()
        .filter(|f| f["type"] == "message")
        .map(|f| f["data"]["content"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn one_to_one_over_websocket_and_rest() {
    bounded_test(async {
        let server = TestServer::default().await;
        let mut alice = server.client(&phone(1)).await;
        let mut bob = server.client(&phone(2)).await;
        let chat = direct_chat(alice.id(), bob.id());

        // Sent tick: the ack names the stored message.
        let ack = alice.text_to_user(bob.id(), "a1", "aGVsbG8=").await;
        assert_eq!(ack["chat_id"], chat);
        assert_eq!(ack["seq"], 1);
        assert_eq!(ack["message_id"], format!("{chat}:1"));
        assert!(ack["timestamp"].as_str().unwrap().ends_with('Z'));

        let m = bob.next_of("message").await;
        assert_eq!(m["message_id"], ack["message_id"]);
        assert_eq!(m["sender_id"], alice.id());
        assert_eq!(m["sender_device_id"], alice.session.device_id);
        assert_eq!(m["content"], "aGVsbG8=");
        assert_eq!(m["message_type"], "text");
        assert_eq!(m["timestamp"], ack["timestamp"]);

        // Receipts are relayed to the sender.
        bob.receipt(&chat, 1, "delivered").await;
        let r = alice.next_of("receipt").await;
        assert_eq!(
            (&r["chat_id"], &r["seq"], &r["user_id"], &r["status"]),
            (
                &json!(chat),
                &json!(1),
                &json!(bob.id()),
                &json!("delivered")
            )
        );
        bob.receipt(&chat, 1, "read").await;
        assert_eq!(alice.next_of("receipt").await["status"], "read");

        // A retry stores nothing and answers the original.
        let again = alice.text_to_user(bob.id(), "a1", "aGVsbG8=").await;
        assert_eq!(again, ack);

        // REST sends reach the WebSocket too; a REST retry answers the original.
        let body = json!({"client_msg_id": "b1", "to_user_id": alice.id(),
                          "message_type": "text", "content": "aGk="});
        let r = server
            .post_json("/api/v1/messages", bob.token(), &body)
            .await;
        assert_eq!(r.status, 201, "{}", r.body);
        let created = r.json();
        assert_eq!(created["seq"], 2);
        let retry = server
            .post_json("/api/v1/messages", bob.token(), &body)
            .await;
        assert_eq!((retry.status, retry.json()), (201, created.clone()));
        let m = alice.next_of("message").await;
        assert_eq!((&m["seq"], &m["content"]), (&json!(2), &json!("aGk=")));
        // Bob's retry of a1 is a different message: ids are per device.
        assert_eq!(
            bob.text_to_user(alice.id(), "a1", "b3RoZXI=").await["seq"],
            3
        );
        assert_eq!(alice.next_of("message").await["seq"], 3);

        // History: oldest first, paged.
        let page = server
            .get(&format!("/api/v1/messages/{chat}"), alice.token())
            .await
            .json();
        let seqs: Vec<u64> = page["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["seq"].as_u64().unwrap())
            .collect();
        assert_eq!((seqs, &page["has_more"]), (vec![1, 2, 3], &json!(false)));
        let page = server
            .get(&format!("/api/v1/messages/{chat}?limit=2"), alice.token())
            .await
            .json();
        assert_eq!(page["messages"][0]["seq"], 2);
        assert_eq!(page["has_more"], true);
        let page = server
            .get(
                &format!("/api/v1/messages/{chat}?before_seq=2&limit=5"),
                alice.token(),
            )
            .await
            .json();
        assert_eq!(page["messages"].as_array().unwrap().len(), 1);
        assert_eq!(page["has_more"], false);
        let page = server
            .get(
                &format!("/api/v1/messages/{chat}?after_seq=1&limit=1"),
                alice.token(),
            )
            .await
            .json();
        assert_eq!(page["messages"][0]["seq"], 2);
        assert_eq!(page["has_more"], true);

        // Chat list with unread counts and members.
        let chats = server.get("/api/v1/chats", alice.token()).await.json();
        let c = &chats["chats"][0];
        assert_eq!(c["chat_id"], chat);
        assert_eq!(c["type"], "direct");
        assert_eq!(c["last_message"]["seq"], 3);
        assert_eq!(c["unread"], 2);
        assert_eq!(c["last_seq"], 3);
        assert_eq!(c["members"].as_array().unwrap().len(), 2);

        // Status for the sender; read receipts by REST move the watermark.
        let status = server
            .get(&format!("/api/v1/messages/{chat}:1/status"), alice.token())
            .await
            .json();
        assert_eq!(status["status"], "read");
        assert_eq!(
            (&status["recipients"], &status["read_by"]),
            (&json!(1), &json!(1))
        );
        assert_eq!(status["members"][0]["user_id"], bob.id());
        let r = server
            .put(
                &format!("/api/v1/messages/{chat}:3/status"),
                alice.token(),
                r#"{"status":"read"}"#,
            )
            .await;
        assert_eq!(r.status, 204, "{}", r.body);
        let r = bob.next_of("receipt").await;
        assert_eq!((&r["seq"], &r["status"]), (&json!(3), &json!("read")));
        let chats = server.get("/api/v1/chats", alice.token()).await.json();
        assert_eq!(chats["chats"][0]["unread"], 0);

        // Delete for everyone: a tombstone for every member.
        let r = server
            .delete(&format!("/api/v1/messages/{chat}:1"), alice.token())
            .await;
        assert_eq!(r.status, 204, "{}", r.body);
        let d = bob.next_of("deleted").await;
        assert_eq!(
            (&d["message_id"], &d["by"]),
            (&json!(format!("{chat}:1")), &json!(alice.id()))
        );
        let page = server
            .get(&format!("/api/v1/messages/{chat}"), bob.token())
            .await
            .json();
        assert_eq!(page["messages"][0]["deleted"], true);
        assert_eq!(page["messages"][0]["content"], "");

        // Replies and disappearing messages.
        let (ack, _) = alice
            .send_ws(
                json!({"client_msg_id": "a2", "chat_id": chat, "message_type": "text",
                            "content": "cmU=", "reply_to": format!("{chat}:2"), "ttl_s": 3600}),
            )
            .await;
        let m = bob.next_of("message").await;
        assert_eq!(m["seq"], ack["seq"]);
        assert_eq!(m["reply_to"], format!("{chat}:2"));
        assert!(m["expires_at"].as_str().unwrap() > m["timestamp"].as_str().unwrap());
        let r = server
            .put(
                &format!("/api/v1/chats/{chat}/settings"),
                bob.token(),
                r#"{"ttl_s":60}"#,
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        let s = alice.next_of("chat_settings").await;
        assert_eq!((&s["ttl_s"], &s["by"]), (&json!(60), &json!(bob.id())));
        alice.text_to_chat(&chat, "a3", "dHRs").await;
        assert!(bob.next_of("message").await["expires_at"].is_string());
        let chats = server.get("/api/v1/chats", bob.token()).await.json();
        assert_eq!(chats["chats"][0]["ttl_s"], 60);
    })
    .await;
}

#[tokio::test]
async fn three_users_in_one_to_one_chats_and_a_group() {
    bounded_test(async {
        let server = TestServer::default().await;
        let mut users: Vec<Client> = Vec::new();
        for n in 1..=3 {
            users.push(server.client(&phone(n)).await);
        }
        let ids: Vec<String> = users.iter().map(|c| c.id().to_owned()).collect();
        // Everyone writes to everyone else.
        for (from, client) in users.iter_mut().enumerate() {
            for (to, id) in ids.iter().enumerate() {
                if from != to {
                    let text = format!("{from}->{to}");
                    client.text_to_user(id, &text, &text).await;
                }
            }
        }
        for (me, client) in users.iter_mut().enumerate() {
            let mut got = Vec::new();
            while got.len() < 2 {
                let m = client.next_of("message").await;
                assert_eq!(
                    m["chat_id"],
                    direct_chat(&ids[me], m["sender_id"].as_str().unwrap())
                );
                got.push(m["content"].as_str().unwrap().to_owned());
            }
            got.sort();
            let mut want: Vec<String> = (0..3)
                .filter(|from| *from != me)
                .map(|from| format!("{from}->{me}"))
                .collect();
            want.sort();
            assert_eq!(got, want);
            assert!(texts(&client.drain().await).is_empty(), "nothing more");
        }

        // A group of the three: a group frame and a system message for everyone.
        let group = server
            .create_group(&users[0].session, "Three", &[&ids[1], &ids[2]])
            .await;
        for client in users.iter_mut() {
            let g = client.next_of("group").await;
            assert_eq!(
                (&g["op"], &g["group_id"]),
                (&json!("create"), &json!(group))
            );
            let m = client.next_of("message").await;
            assert_eq!(m["message_type"], "system");
            assert_eq!(m["seq"], 1);
        }
        for (n, client) in users.iter_mut().enumerate() {
            client
                .text_to_chat(&group, &format!("g{n}"), &format!("g{n}"))
                .await;
        }
        for (me, client) in users.iter_mut().enumerate() {
            let mut seqs = Vec::new();
            for _ in 0..2 {
                let m = client.next_of("message").await;
                assert_ne!(m["sender_id"], ids[me].as_str());
                seqs.push(m["seq"].as_u64().unwrap());
            }
            assert!(seqs[0] < seqs[1], "in order: {seqs:?}");
        }
        let chats = server.get("/api/v1/chats", users[1].token()).await.json();
        assert_eq!(chats["chats"].as_array().unwrap().len(), 3);
        let g = chats["chats"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["chat_id"] == group)
            .unwrap();
        assert_eq!((&g["type"], &g["name"]), (&json!("group"), &json!("Three")));
        assert_eq!(g["admins"], json!([ids[0]]));
    })
    .await;
}

#[tokio::test]
async fn a_group_of_256_members() {
    bounded_test(async {
        let server = TestServer::default().await;
        let mut members: Vec<Client> = Vec::new();
        for n in 1..=256 {
            members.push(server.client(&phone(n)).await);
        }
        let ids: Vec<&str> = members.iter().map(|c| c.id()).collect();
        let group = server
            .create_group(&members[0].session, "Everyone", &ids[1..])
            .await;
        let view = server
            .get(&format!("/api/v1/groups/{group}"), members[7].token())
            .await
            .json();
        assert_eq!(view["members"].as_array().unwrap().len(), 256);
        // The cap: one more is refused and changes nothing.
        let extra = server.login(&phone(999)).await;
        let r = server
            .post_json(
                &format!("/api/v1/groups/{group}/members"),
                members[0].token(),
                &json!({"user_ids": [extra.user_id]}),
            )
            .await;
        r.assert_error(409, "group_full");

        let mut admin = members.remove(0);
        for n in 0..3 {
            admin
                .text_to_chat(&group, &format!("m{n}"), &format!("m{n}"))
                .await;
        }
        for member in members.iter_mut() {
            let mut seqs = Vec::new();
            while seqs.len() < 4 {
                let m = member.next_of("message").await;
                seqs.push(m["seq"].as_u64().unwrap());
            }
            assert_eq!(
                seqs,
                [1, 2, 3, 4],
                "the system message, then m0..m2 in order"
            );
            member.receipt(&group, 4, "delivered").await;
        }
        // Every member's receipt reaches the sender.
        let mut from = std::collections::HashSet::new();
        while from.len() < 255 {
            let r = admin.next_of("receipt").await;
            if r["status"] == "delivered" && r["seq"] == 4 {
                from.insert(r["user_id"].as_str().unwrap().to_owned());
            }
        }
        let status = server
            .get(&format!("/api/v1/messages/{group}:4/status"), admin.token())
            .await
            .json();
        assert_eq!(
            (
                &status["status"],
                &status["recipients"],
                &status["delivered_to"]
            ),
            (&json!("delivered"), &json!(255), &json!(255))
        );
    })
    .await;
}

#[tokio::test]
async fn an_offline_device_gets_everything_in_order_once_per_connection_until_it_acks() {
    bounded_test(async {
        let server = TestServer::default().await;
        let mut alice = server.client(&phone(1)).await;
        let carol = server.client(&phone(3)).await;
        let bob = server.login(&phone(2)).await;
        let group = server
            .create_group(&alice.session, "G", &[&bob.user_id, carol.id()])
            .await;
        let chat = direct_chat(alice.id(), &bob.user_id);
        for n in 0..30 {
            alice
                .text_to_user(&bob.user_id, &format!("d{n}"), &format!("d{n}"))
                .await;
            if n % 3 == 0 {
                alice
                    .text_to_chat(&group, &format!("g{n}"), &format!("g{n}"))
                    .await;
            }
        }
        let expect = |frames: &[Value]| {
            let mut per_chat: HashMap<String, Vec<u64>> = HashMap::new();
            for f in frames.iter().filter(|f| f["type"] == "message") {
                per_chat
                    .entry(f["data"]["chat_id"].as_str().unwrap().to_owned())
                    .or_default()
                    .push(f["data"]["seq"].as_u64().unwrap());
            }
            // Exactly once each, in order: 30 direct messages, the group's system message and
            // 10 group messages.
            assert_eq!(per_chat[&chat], (1..=30).collect::<Vec<_>>());
            assert_eq!(per_chat[&group], (1..=11).collect::<Vec<_>>());
        };
        // Three connections without acknowledging: the backlog every time, once each.
        for _ in 0..3 {
            let mut phone_ws = server.connect(&bob).await;
            let mut frames = Vec::new();
            while frames
                .iter()
                .filter(|f: &&Value| f["type"] == "message")
                .count()
                < 41
            {
                frames.push(phone_ws.next().await);
            }
            frames.extend(phone_ws.drain().await);
            expect(&frames);
            phone_ws.ws.close(None).await.unwrap();
        }
        // Once per connection: after the backlog, the next message is a live one.
        let mut phone_ws = server.connect(&bob).await;
        let mut count = 0;
        while count < 41 {
            if phone_ws.next().await["type"] == "message" {
                count += 1;
            }
        }
        alice.text_to_user(&bob.user_id, "live1", "live1").await;
        assert_eq!(phone_ws.next_of("message").await["content"], "live1");
        // Acknowledge the direct chat up to 20 and the group entirely (the pong after them
        // means the receipts are stored): only 21..31 come again.
        phone_ws.receipt(&chat, 20, "delivered").await;
        phone_ws.receipt(&group, 11, "delivered").await;
        phone_ws.drain().await;
        phone_ws.ws.close(None).await.unwrap();
        let mut phone_ws = server.connect(&bob).await;
        let mut seqs = Vec::new();
        while seqs.len() < 11 {
            let m = phone_ws.next_of("message").await;
            assert_eq!(m["chat_id"], chat);
            seqs.push(m["seq"].as_u64().unwrap());
        }
        assert_eq!(seqs, (21..=31).collect::<Vec<_>>());
        // Live messages follow the backlog, with nothing repeated in between.
        alice.text_to_user(&bob.user_id, "live2", "live2").await;
        let m = phone_ws.next_of("message").await;
        assert_eq!((&m["seq"], &m["content"]), (&json!(32), &json!("live2")));
    })
    .await;
}

#[tokio::test]
async fn presence_and_typing_reach_contacts_only() {
    bounded_test(async {
        let server = TestServer::default().await;
        let mut alice = server.client(&phone(1)).await;
        let mut carol = server.client(&phone(3)).await;
        let bob = server.login(&phone(2)).await;
        let mut dave = server.client(&phone(4)).await;
        // Alice has Bob in her contacts; Carol does not. Dave has him but Bob blocked Dave.
        server.add_contacts(&alice.session, &[&phone(2)]).await;
        server.add_contacts(&dave.session, &[&phone(2)]).await;
        let r = server
            .put(
                &format!("/api/v1/contacts/{}/block", dave.id()),
                &bob.token,
                "",
            )
            .await;
        assert_eq!(r.status, 204);

        let mut bob = server.connect(&bob).await;
        let p = alice.next_of("presence").await;
        assert_eq!((&p["user_id"], &p["status"]), (&json!(bob.id()), &json!("online")));
        // Carol and Dave got nothing: the first frame each now sees is a message sent after.
        alice.text_to_user(carol.id(), "c1", "barrier").await;
        assert_eq!(carol.next().await["type"], "message");
        alice.text_to_user(dave.id(), "d1", "barrier").await;
        assert_eq!(dave.next().await["type"], "message");

        let r = server
            .get(&format!("/api/v1/presence/{}", bob.id()), alice.token())
            .await;
        assert_eq!(r.json()["status"], "online", "{}", r.body);
        server
            .get(&format!("/api/v1/presence/{}", bob.id()), carol.token())
            .await
            .assert_error(403, "forbidden");
        server
            .get(&format!("/api/v1/presence/{}", bob.id()), dave.token())
            .await
            .assert_error(403, "forbidden");

        // Typing goes to the chat's members, except those who blocked the typer.
        let group = server
            .create_group(&alice.session, "G", &[bob.id(), carol.id()])
            .await;
        let r = server
            .put(
                &format!("/api/v1/contacts/{}/block", bob.id()),
                carol.token(),
                "",
            )
            .await;
        assert_eq!(r.status, 204);
        bob.frame("typing", json!({"chat_id": group, "is_typing": true}))
            .await;
        let t = alice.next_of("typing").await;
        assert_eq!(
            (&t["chat_id"], &t["user_id"], &t["is_typing"]),
            (&json!(group), &json!(bob.id()), &json!(true))
        );
        alice.text_to_chat(&group, "g1", "barrier").await;
        loop {
            let f = carol.next().await;
            assert_ne!(f["type"], "typing", "Carol blocked Bob");
            if f["type"] == "message" && f["data"]["content"] == "barrier" {
                break;
            }
        }
        // A blocked user's 1:1 messages are refused.
        bob.frame(
            "message",
            json!({"client_msg_id": "x", "to_user_id": carol.id(), "message_type": "text", "content": "eA=="}),
        )
        .await;
        let e = bob.next_of("error").await;
        assert_eq!((&e["code"], &e["client_msg_id"]), (&json!("forbidden"), &json!("x")));

        // Going offline reaches contacts with last_seen.
        bob.ws.close(None).await.unwrap();
        let p = alice.next_of("presence").await;
        assert_eq!(p["status"], "offline");
        assert!(p["last_seen"].is_string());
        let r = server
            .get(&format!("/api/v1/presence/{}", bob.id()), alice.token())
            .await
            .json();
        assert_eq!(r["status"], "offline");

        // REST presence: online for a heartbeat timeout, offline on request.
        let r = server
            .request("PUT", "/api/v1/presence/online", Some(&bob.session.token), None)
            .await;
        assert_eq!(r.status, 204);
        assert_eq!(alice.next_of("presence").await["status"], "online");
        let r = server
            .request("PUT", "/api/v1/presence/offline", Some(&bob.session.token), None)
            .await;
        assert_eq!(r.status, 204);
        assert_eq!(alice.next_of("presence").await["status"], "offline");
    })
    .await;
}

#[tokio::test]
async fn push_notices_for_offline_users_but_not_muted_chats() {
    bounded_test(async {
        let server = TestServer::start(|c| c.push_window = Duration::from_millis(300)).await;
        let mut alice = server.client(&phone(1)).await;
        let bob = server.login(&phone(2)).await;
        let carol = server.login(&phone(3)).await;
        let mut dave = server.client(&phone(4)).await;
        let muted = direct_chat(alice.id(), &carol.user_id);
        let r = server
            .put(
                "/api/v1/settings/notifications",
                &carol.token,
                &json!({"muted_chats": [muted]}).to_string(),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.body);

        alice.text_to_user(&bob.user_id, "b1", "eA==").await;
        alice.text_to_user(&bob.user_id, "b2", "eA==").await;
        alice.text_to_user(&carol.user_id, "c1", "eA==").await;
        alice.text_to_user(dave.id(), "d1", "eA==").await;
        dave.next_of("message").await;
        let mut delivered = Vec::new();
        for _ in 0..200 {
            delivered = server.push.delivered();
            if !delivered.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Let any other window close too.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let delivered_now = server.push.delivered();
        assert_eq!(delivered_now.len(), 1, "{delivered:?}");
        let n = &delivered_now[0];
        assert_eq!(n.user_id.0.to_string(), bob.user_id);
        assert_eq!(n.count, 2);
        assert_eq!(n.text, "2 new messages");
    })
    .await;
}

#[tokio::test]
async fn group_management_with_system_messages() {
    bounded_test(async {
        let server = TestServer::default().await;
        let mut alice = server.client(&phone(1)).await;
        let mut bob = server.client(&phone(2)).await;
        let carol = server.login(&phone(3)).await;
        let group = server.create_group(&alice.session, "G", &[bob.id()]).await;
        let path = format!("/api/v1/groups/{group}");
        let view = server.get(&path, bob.token()).await.json();
        assert_eq!(view["name"], "G");
        assert_eq!(view["created_by"], alice.id());
        assert_eq!(view["members_max"], 256);

        // Metadata: admins only; live members hear of it.
        let r = server
            .put(
                &path,
                alice.token(),
                r#"{"name":"Lunch","description":"Fridays"}"#,
            )
            .await;
        assert_eq!(r.json()["name"], "Lunch", "{}", r.body);
        let g = bob.next_of("group").await;
        if g["op"] == "create" {
            assert_eq!(bob.next_of("group").await["op"], "update");
        } else {
            assert_eq!(g["op"], "update");
        }

        // Add, promote, demote, remove, leave: each a system message in the chat.
        let r = server
            .post_json(
                &format!("{path}/members"),
                alice.token(),
                &json!({"user_ids": [carol.user_id]}),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        let r = server
            .request(
                "PUT",
                &format!("{path}/admins/{}", bob.id()),
                Some(alice.token()),
                None,
            )
            .await;
        assert_eq!(r.status, 204, "{}", r.body);
        let r = server
            .request(
                "DELETE",
                &format!("{path}/admins/{}", alice.id()),
                Some(alice.token()),
                None,
            )
            .await;
        assert_eq!(r.status, 204, "{}", r.body);
        // Bob is now the only admin and cannot be demoted.
        server
            .request(
                "DELETE",
                &format!("{path}/admins/{}", bob.id()),
                Some(bob.token()),
                None,
            )
            .await
            .assert_error(409, "conflict");
        let r = server
            .delete(&format!("{path}/members/{}", carol.user_id), bob.token())
            .await;
        assert_eq!(r.status, 204, "{}", r.body);
        let r = server
            .delete(&format!("{path}/members/{}", alice.id()), alice.token())
            .await;
        assert_eq!(r.status, 204, "{}", r.body);
        let page = server
            .get(&format!("/api/v1/messages/{group}"), bob.token())
            .await
            .json();
        let ops: Vec<String> = page["messages"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["message_type"] == "system")
            .map(|m| {
                let body: Value = serde_json::from_str(m["content"].as_str().unwrap()).unwrap();
                body["op"].as_str().unwrap().to_owned()
            })
            .collect();
        assert_eq!(
            ops,
            ["create", "add", "promote", "demote", "remove", "remove"]
        );
        // Alice left: she reads no more, and her group frames said so.
        server
            .get(&format!("/api/v1/messages/{group}"), alice.token())
            .await
            .assert_error(403, "forbidden");
        let mut seen = Vec::new();
        loop {
            let g = alice.next_of("group").await;
            seen.push(g["op"].as_str().unwrap().to_owned());
            if g["op"] == "leave" {
                break;
            }
        }
        assert!(seen.contains(&"add".to_owned()), "{seen:?}");
        let metrics = server.request("GET", "/metrics", None, None).await.body;
        assert!(
            metrics.contains("missive_engine_group_changes_total 6"),
            "{metrics}"
        );
        assert!(
            metrics.contains("missive_engine_subscriptions 2"),
            "{metrics}"
        );
        // The scrub after opening is exported (an empty log at start: done, nothing damaged).
        for line in [
            "missive_engine_scrub_errors_total 0",
            "missive_engine_scrub_done 1",
        ] {
            assert!(metrics.contains(line), "{line} in {metrics}");
        }
        for name in [
            "missive_engine_scrubbed_bytes_total ",
            "missive_engine_log_batches_total ",
            "missive_engine_log_records_total ",
            "missive_engine_fsyncs_total ",
        ] {
            assert!(metrics.contains(name), "{name} in {metrics}");
        }
    })
    .await;
}

#[tokio::test]
async fn a_reader_that_stops_reading_stalls_nobody_and_catches_up() {
    bounded_test(async {
        let server = TestServer::start(|c| c.live_queue_events = 16).await;
        let mut alice = server.client(&phone(1)).await;
        let mut slow = server.client(&phone(2)).await;
        let mut carol = server.client(&phone(3)).await;
        let mut dave = server.client(&phone(4)).await;
        // Far more than the socket buffers, the 64-frame outbox and the engine's queue (16
        // events here) hold, while the slow client reads nothing.
        let body = "A".repeat(48 * 1024);
        let sends = 400;
        for n in 0..sends {
            alice.text_to_user(slow.id(), &format!("f{n}"), &body).await;
            if n % 50 == 0 {
                // Others chat meanwhile, promptly.
                let started = std::time::Instant::now();
                carol
                    .text_to_user(dave.id(), &format!("c{n}"), "eA==")
                    .await;
                assert_eq!(dave.next_of("message").await["content"], "eA==");
                assert!(
                    started.elapsed() < Duration::from_secs(3),
                    "{:?}",
                    started.elapsed()
                );
            }
        }
        // The slow client now reads: every message, in order, once.
        let mut seqs = Vec::new();
        while seqs.len() < sends {
            let m = slow.next_of("message").await;
            seqs.push(m["seq"].as_u64().unwrap());
        }
        assert_eq!(seqs, (1..=sends as u64).collect::<Vec<_>>());
        let metrics = server.request("GET", "/metrics", None, None).await.body;
        let lags: u64 = metrics
            .lines()
            .find_map(|l| l.strip_prefix("missive_engine_lags "))
            .unwrap()
            .parse()
            .unwrap();
        assert!(lags >= 1, "the engine queue overflowed: {metrics}");
    })
    .await;
}
