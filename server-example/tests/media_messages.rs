//! Media in messages, through the real server: a message carrying a `media_id` grants the
//! media to the members who can see that message (REST and WebSocket sends), the sender must
//! be able to read the media, kinds and `media_id` go together, deleting a message for
//! everyone revokes its grant, and the scheduled retention sweep removes media that no live
//! message references while keeping the referenced ones.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Session, TestServer, bounded, bounded_test, phone, raw_request};
use missive_server::time::ManualClock;
use serde_json::{Value, json};

/// Uploads `bytes` (text, so that downloads are UTF-8) as `who`; returns the media id.
async fn upload(server: &TestServer, who: &Session, bytes: &str) -> String {
    let r = raw_request(
        server.addr,
        "POST",
        "/api/v1/media/upload",
        &[
            ("authorization".into(), format!("Bearer {}", who.token)),
            ("content-type".into(), "application/octet-stream".into()),
        ],
        Some(bytes.as_bytes()),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    r.json()["media_id"].as_str().unwrap().to_owned()
}

async fn send(server: &TestServer, who: &Session, body: Value) -> common::Response {
    server
        .post_json("/api/v1/messages", &who.token, &body)
        .await
}

fn image_to(to: &Session, cmid: &str, media_id: &str) -> Value {
    json!({"client_msg_id": cmid, "to_user_id": to.user_id, "message_type": "image",
           "content": "Y2FwdGlvbg==", "media_id": media_id})
}

/// The status of `GET /api/v1/media/{id}` for `who` (and the body when 200).
async fn download(server: &TestServer, who: &Session, media_id: &str) -> (u16, String) {
    let r = server
        .get(&format!("/api/v1/media/{media_id}"), &who.token)
        .await;
    (r.status, r.body)
}

#[tokio::test]
async fn media_sent_in_a_chat_is_readable_by_those_who_can_see_the_message() {
    bounded_test(async {
        let server = TestServer::default().await;
        let alice = server.login(&phone(1)).await;
        let bob = server.login(&phone(2)).await;
        let carol = server.login(&phone(3)).await;
        let photo = upload(&server, &alice, "the bytes of a photo").await;

        // Before it is sent, only the uploader reads it.
        assert_eq!(download(&server, &alice, &photo).await.0, 200);
        server
            .get(&format!("/api/v1/media/{photo}"), &bob.token)
            .await
            .assert_error(403, "forbidden");

        // Alice sends it to Bob over REST: Bob (a member) downloads it, Carol may not.
        let r = send(&server, &alice, image_to(&bob, "m1", &photo)).await;
        assert_eq!(r.status, 201, "{}", r.body);
        let chat_id = r.json()["chat_id"].as_str().unwrap().to_owned();
        assert_eq!(
            download(&server, &bob, &photo).await,
            (200, "the bytes of a photo".to_owned())
        );
        server
            .get(&format!("/api/v1/media/{photo}"), &carol.token)
            .await
            .assert_error(403, "forbidden");
        let history = server
            .get(&format!("/api/v1/messages/{chat_id}"), &bob.token)
            .await
            .json();
        assert_eq!(history["messages"][0]["media_id"], photo.as_str());
        assert_eq!(history["messages"][0]["message_type"], "image");

        // Carol cannot send media she may not read, and nothing is stored.
        send(&server, &carol, image_to(&bob, "c1", &photo))
            .await
            .assert_error(403, "forbidden");
        assert_eq!(
            server
                .get(&format!("/api/v1/messages/{}", common::direct_chat(&carol.user_id, &bob.user_id)), &bob.token)
                .await
                .json()["messages"],
            json!([])
        );
        server
            .get(&format!("/api/v1/media/{photo}"), &carol.token)
            .await
            .assert_error(403, "forbidden");
        // Unknown media, a media kind without media, a text with media.
        send(
            &server,
            &carol,
            image_to(&bob, "c2", "0123456789abcdef0123456789abcdef"),
        )
        .await
        .assert_error(404, "not_found");
        send(
            &server,
            &alice,
            json!({"client_msg_id": "m2", "to_user_id": bob.user_id, "message_type": "voice", "content": "eA=="}),
        )
        .await
        .assert_error(400, "invalid_request");
        send(
            &server,
            &alice,
            json!({"client_msg_id": "m3", "to_user_id": bob.user_id, "message_type": "text",
                   "content": "eA==", "media_id": photo}),
        )
        .await
        .assert_error(400, "invalid_request");

        // Bob, who was sent it, forwards it to Carol over the WebSocket: now Carol reads it.
        let mut bob_ws = server.connect(&bob).await;
        let (ack, _) = bob_ws
            .send_ws(json!({"client_msg_id": "b1", "to_user_id": carol.user_id,
                            "message_type": "document", "content": "", "media_id": photo}))
            .await;
        assert!(ack["message_id"].is_string(), "{ack}");
        assert_eq!(download(&server, &carol, &photo).await.0, 200);
        // Over the WebSocket, a refused media send is an error frame for that message.
        let stranger = upload(&server, &carol, "carol's own file").await;
        bob_ws
            .frame(
                "message",
                json!({"client_msg_id": "b2", "to_user_id": alice.user_id,
                       "message_type": "video", "content": "", "media_id": stranger}),
            )
            .await;
        let error = loop {
            let frame = bob_ws.next().await;
            if frame["type"] == "error" {
                break frame["data"].clone();
            }
        };
        assert_eq!(error["code"], "forbidden", "{error}");
        assert_eq!(error["client_msg_id"], "b2");

        // Deleting a message for everyone revokes what it granted (only that).
        let video = upload(&server, &alice, "the bytes of a video").await;
        let r = send(
            &server,
            &alice,
            json!({"client_msg_id": "m4", "to_user_id": bob.user_id, "message_type": "video",
                   "content": "", "media_id": video}),
        )
        .await;
        assert_eq!(r.status, 201, "{}", r.body);
        let message_id = r.json()["message_id"].as_str().unwrap().to_owned();
        assert_eq!(download(&server, &bob, &video).await.0, 200);
        let r = server
            .delete(&format!("/api/v1/messages/{message_id}"), &alice.token)
            .await;
        assert_eq!(r.status, 204, "{}", r.body);
        server
            .get(&format!("/api/v1/media/{video}"), &bob.token)
            .await
            .assert_error(403, "forbidden");
        assert_eq!(download(&server, &alice, &video).await.0, 200);
        assert_eq!(download(&server, &bob, &photo).await.0, 200);
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn group_media_follows_membership_and_joining_later_shows_nothing_earlier() {
    bounded_test(async {
        let server = TestServer::default().await;
        let alice = server.login(&phone(1)).await;
        let bob = server.login(&phone(2)).await;
        let carol = server.login(&phone(3)).await;
        let group = server
            .create_group(&alice, "trip", &[bob.user_id.as_str()])
            .await;
        let photo = upload(&server, &alice, "group photo").await;
        let r = send(
            &server,
            &alice,
            json!({"client_msg_id": "g1", "chat_id": group, "message_type": "image",
                   "content": "", "media_id": photo}),
        )
        .await;
        assert_eq!(r.status, 201, "{}", r.body);
        assert_eq!(download(&server, &bob, &photo).await.0, 200);

        // Carol joins after the message was sent: she does not see it, nor its media.
        let r = server
            .post_json(
                &format!("/api/v1/groups/{group}/members"),
                &alice.token,
                &json!({"user_ids": [carol.user_id]}),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        server
            .get(&format!("/api/v1/media/{photo}"), &carol.token)
            .await
            .assert_error(403, "forbidden");
        // Bob leaves: his access ends with his membership.
        let r = server
            .delete(
                &format!("/api/v1/groups/{group}/members/{}", bob.user_id),
                &bob.token,
            )
            .await;
        assert_eq!(r.status, 204, "{}", r.body);
        server
            .get(&format!("/api/v1/media/{photo}"), &bob.token)
            .await
            .assert_error(403, "forbidden");
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn the_scheduled_sweep_removes_unreferenced_media_and_keeps_referenced_media() {
    bounded_test(async {
        let clock = Arc::new(ManualClock::new(1_700_000_000_000));
        let server = TestServer::start_clocked(
            |c| c.media_sweep_interval = Some(Duration::from_millis(50)),
            clock.clone(),
        )
        .await;
        let alice = server.login(&phone(1)).await;
        let bob = server.login(&phone(2)).await;
        let kept = upload(&server, &alice, "kept: sent, live").await;
        let never_sent = upload(&server, &alice, "never sent").await;
        let deleted = upload(&server, &alice, "sent, then deleted for everyone").await;
        let expiring = upload(&server, &alice, "sent with a one-minute timer").await;

        let r = send(&server, &alice, image_to(&bob, "k", &kept)).await;
        assert_eq!(r.status, 201, "{}", r.body);
        let r = send(&server, &alice, image_to(&bob, "d", &deleted)).await;
        assert_eq!(r.status, 201, "{}", r.body);
        let deleted_message = r.json()["message_id"].as_str().unwrap().to_owned();
        let mut timed = image_to(&bob, "e", &expiring);
        timed["ttl_s"] = json!(60);
        let r = send(&server, &alice, timed).await;
        assert_eq!(r.status, 201, "{}", r.body);
        let r = server
            .delete(&format!("/api/v1/messages/{deleted_message}"), &alice.token)
            .await;
        assert_eq!(r.status, 204, "{}", r.body);

        // Sweeps have run since the start; within the grace period every upload survives.
        let sweeps_ran = |server: &TestServer| {
            let media = server.state.media.clone();
            media.store().blob_files().unwrap()
        };
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(sweeps_ran(&server), 4);
        for id in [&kept, &never_sent, &deleted, &expiring] {
            assert_eq!(download(&server, &alice, id).await.0, 200, "{id}");
        }

        // A day and a minute later: the unsent, deleted and expired media go; the live one
        // stays, for its uploader and the recipient.
        let grace = server.state.media.config().orphan_grace_ms;
        clock.advance_ms(grace + 61_000);
        bounded(async {
            while sweeps_ran(&server) != 1 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        for id in [&never_sent, &deleted, &expiring] {
            server
                .get(&format!("/api/v1/media/{id}/info"), &alice.token)
                .await
                .assert_error(404, "not_found");
        }
        assert_eq!(
            download(&server, &alice, &kept).await,
            (200, "kept: sent, live".to_owned())
        );
        assert_eq!(download(&server, &bob, &kept).await.0, 200);
        server.shutdown().await;
    })
    .await;
}
