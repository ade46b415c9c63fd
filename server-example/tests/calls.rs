//! Call signalling over real WebSockets: an offer rings every device of the callee, the first
//! answer wins and the other devices are told, ICE and hangup go between the two active
//! devices only, busy, a blocked caller is refused, the ringing timeout ends the call, a
//! callee without a connection gets a push and is rung when a device connects, and a dropped
//! device ends its call.

mod common;

use std::time::Duration;

use common::{Client, TestServer, bounded_test, phone};
use serde_json::{Value, json};

/// How long "nothing more arrives" is watched for.
const QUIET: Duration = Duration::from_millis(150);

/// Call helpers on the shared test client.
impl Client {
    /// Sends a `call` frame.
    async fn call(&mut self, call_id: &str, to: &str, action: &str, extra: Value) {
        let mut data = json!({"call_id": call_id, "to_user_id": to, "action": action});
        if let (Some(data), Some(extra)) = (data.as_object_mut(), extra.as_object()) {
            data.extend(extra.clone());
        }
        self.frame("call", data).await;
    }

    /// The next `call` frame's data, skipping other frames (an `error` fails the test).
    async fn next_call(&mut self) -> Value {
        loop {
            let frame = self.next().await;
            match frame["type"].as_str() {
                Some("call") => return frame["data"].clone(),
                Some("error") => panic!("unexpected error frame: {frame}"),
                _ => continue,
            }
        }
    }

    /// Asserts that no `call` frame is queued for this connection (nor arrives soon).
    async fn no_call_frames(&mut self) {
        let frames = self.settle(QUIET).await;
        let calls: Vec<&Value> = frames.iter().filter(|f| f["type"] == "call").collect();
        assert!(calls.is_empty(), "unexpected call frames: {calls:?}");
    }
}

fn sdp(text: &str) -> Value {
    json!({ "sdp": text })
}

/// The next frame of this connection, which must be an `error` about `call_id`.
async fn next_error(client: &mut Client) -> Value {
    loop {
        let frame = client.next().await;
        if frame["type"] == "error" {
            return frame["data"].clone();
        }
        assert_ne!(frame["type"], "call", "expected an error, got {frame}");
    }
}

async fn block(server: &TestServer, blocker: &Client, blocked: &Client) {
    let r = server
        .put(
            &format!("/api/v1/contacts/{}/block", blocked.id()),
            blocker.token(),
            "",
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.body);
}

async fn metric(server: &TestServer, name: &str) -> f64 {
    let body = server.request("GET", "/metrics", None, None).await.body;
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no metric {name} in:\n{body}"))
}

#[tokio::test]
async fn an_offer_rings_every_device_and_the_first_answer_wins() {
    bounded_test(async {
        let server = TestServer::default().await;
        let mut alice = server.client(&phone(1)).await;
        let mut bob_phone = server.client(&phone(2)).await;
        let mut bob_laptop = server.client(&phone(2)).await;
        let bob = bob_phone.id().to_owned();
        let alice_id = alice.id().to_owned();
        assert_ne!(bob_phone.session.device_id, bob_laptop.session.device_id);

        alice.call("k1", &bob, "offer", sdp("v=0 offer")).await;
        for device in [&mut bob_phone, &mut bob_laptop] {
            let offer = device.next_call().await;
            assert_eq!(offer["call_id"], "k1");
            assert_eq!(offer["action"], "offer");
            assert_eq!(offer["from_user_id"], alice_id.as_str());
            assert_eq!(offer["sdp"], "v=0 offer");
            assert!(offer.get("reason").is_none(), "{offer}");
        }

        // Both devices ring; the caller hears it.
        bob_phone.call("k1", &alice_id, "ringing", json!({})).await;
        let ringing = alice.next_call().await;
        assert_eq!(
            (&ringing["action"], &ringing["from_user_id"]),
            (&json!("ringing"), &json!(bob))
        );

        // The laptop answers first: the caller gets its SDP, the phone stops ringing.
        bob_laptop
            .call("k1", &alice_id, "answer", sdp("v=0 answer"))
            .await;
        let answer = alice.next_call().await;
        assert_eq!(answer["action"], "answer");
        assert_eq!(answer["sdp"], "v=0 answer");
        let elsewhere = bob_phone.next_call().await;
        assert_eq!(elsewhere["action"], "hangup");
        assert_eq!(elsewhere["reason"], "answered_elsewhere");
        assert_eq!(elsewhere["call_id"], "k1");

        // ICE goes between the caller and the answering device only, both ways.
        let candidate = json!({"candidate": "candidate:1 1 UDP 2122252543 10.0.0.2 50000 typ host", "sdpMid": "0"});
        alice
            .call("k1", &bob, "ice", json!({ "candidate": candidate }))
            .await;
        let ice = bob_laptop.next_call().await;
        assert_eq!(ice["action"], "ice");
        assert_eq!(ice["candidate"], candidate);
        bob_laptop
            .call("k1", &alice_id, "ice", json!({"candidate": {"c": 2}}))
            .await;
        let ice = alice.next_call().await;
        assert_eq!((&ice["action"], &ice["candidate"]), (&json!("ice"), &json!({"c": 2})));
        bob_phone.no_call_frames().await;

        // A late answer from the phone is told the call was answered elsewhere.
        bob_phone
            .call("k1", &alice_id, "answer", sdp("v=0 late"))
            .await;
        let late = bob_phone.next_call().await;
        assert_eq!(late["reason"], "answered_elsewhere");
        alice.no_call_frames().await;

        // Hangup reaches the active device only and frees both users.
        alice.call("k1", &bob, "hangup", json!({})).await;
        let hangup = bob_laptop.next_call().await;
        assert_eq!(hangup["action"], "hangup");
        assert_eq!(hangup["from_user_id"], alice_id.as_str());
        bob_phone.no_call_frames().await;
        assert_eq!(server.state.messenger.calls_in_progress(), 0);

        // A frame for the ended call is refused with the call's id.
        alice.call("k1", &bob, "ice", json!({"candidate": {}})).await;
        let error = next_error(&mut alice).await;
        assert_eq!(error["code"], "not_found");
        assert_eq!(error["call_id"], "k1");
        assert_eq!(metric(&server, "missive_calls_total").await, 1.0);
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_user_in_a_call_is_busy() {
    bounded_test(async {
        let server = TestServer::default().await;
        let mut alice = server.client(&phone(1)).await;
        let mut bob = server.client(&phone(2)).await;
        let mut carol = server.client(&phone(3)).await;
        let (alice_id, bob_id) = (alice.id().to_owned(), bob.id().to_owned());

        alice.call("k1", &bob_id, "offer", sdp("o")).await;
        assert_eq!(bob.next_call().await["action"], "offer");
        bob.call("k1", &alice_id, "answer", sdp("a")).await;
        assert_eq!(alice.next_call().await["action"], "answer");

        // Carol calls Bob, then Alice: both are in a call.
        for (call_id, callee) in [("k2", &bob_id), ("k3", &alice_id)] {
            carol.call(call_id, callee, "offer", sdp("o2")).await;
            let busy = carol.next_call().await;
            assert_eq!(busy["call_id"], call_id);
            assert_eq!(busy["action"], "hangup");
            assert_eq!(busy["reason"], "busy");
            assert_eq!(busy["from_user_id"], callee.as_str());
        }
        bob.no_call_frames().await;
        alice.no_call_frames().await;
        assert_eq!(server.state.messenger.calls_in_progress(), 1);
        assert_eq!(metric(&server, "missive_calls_busy_total").await, 2.0);

        // Once the call ends, Bob can be called again.
        bob.call("k1", &alice_id, "hangup", json!({})).await;
        assert_eq!(alice.next_call().await["action"], "hangup");
        carol.call("k4", &bob_id, "offer", sdp("o3")).await;
        let offer = bob.next_call().await;
        assert_eq!(
            (&offer["call_id"], &offer["action"]),
            (&json!("k4"), &json!("offer"))
        );
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn blocked_users_cannot_call() {
    bounded_test(async {
        let server = TestServer::default().await;
        let mut alice = server.client(&phone(1)).await;
        let mut bob = server.client(&phone(2)).await;
        let (alice_id, bob_id) = (alice.id().to_owned(), bob.id().to_owned());
        block(&server, &bob, &alice).await;

        alice.call("k1", &bob_id, "offer", sdp("o")).await;
        let error = next_error(&mut alice).await;
        assert_eq!(error["code"], "forbidden", "{error}");
        assert_eq!(error["call_id"], "k1");
        bob.no_call_frames().await;
        // Nor the other way round: the blocker cannot ring the blocked user either.
        bob.call("k2", &alice_id, "offer", sdp("o")).await;
        assert_eq!(next_error(&mut bob).await["code"], "forbidden");
        alice.no_call_frames().await;
        assert_eq!(server.state.messenger.calls_in_progress(), 0);

        // Unblocked, the call goes through.
        let r = server
            .delete(&format!("/api/v1/contacts/{alice_id}/block"), bob.token())
            .await;
        assert_eq!(r.status, 204, "{}", r.body);
        alice.call("k3", &bob_id, "offer", sdp("o")).await;
        assert_eq!(bob.next_call().await["call_id"], "k3");
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn an_unanswered_call_times_out_for_both_sides() {
    bounded_test(async {
        let server = TestServer::start(|c| c.call_ring_timeout = Duration::from_millis(400)).await;
        let mut alice = server.client(&phone(1)).await;
        let mut bob_phone = server.client(&phone(2)).await;
        let mut bob_laptop = server.client(&phone(2)).await;
        let (alice_id, bob_id) = (alice.id().to_owned(), bob_phone.id().to_owned());

        let started = std::time::Instant::now();
        alice.call("k1", &bob_id, "offer", sdp("o")).await;
        assert_eq!(bob_phone.next_call().await["action"], "offer");
        assert_eq!(bob_laptop.next_call().await["action"], "offer");
        bob_phone.call("k1", &alice_id, "ringing", json!({})).await;
        assert_eq!(alice.next_call().await["action"], "ringing");

        // Nobody answers: everyone gets a hangup with reason `timeout`.
        for (who, peer) in [
            (&mut alice, &bob_id),
            (&mut bob_phone, &alice_id),
            (&mut bob_laptop, &alice_id),
        ] {
            let hangup = who.next_call().await;
            assert_eq!(hangup["call_id"], "k1");
            assert_eq!(hangup["action"], "hangup");
            assert_eq!(hangup["reason"], "timeout");
            assert_eq!(hangup["from_user_id"], peer.as_str());
        }
        let rang = started.elapsed();
        assert!(rang >= Duration::from_millis(400), "ended after {rang:?}");
        assert_eq!(server.state.messenger.calls_in_progress(), 0);
        assert_eq!(metric(&server, "missive_calls_missed_total").await, 1.0);

        // The missed call is a `system` message in their chat: delivered live to every
        // device of both, and in the history of both.
        let chat = common::direct_chat(&alice_id, &bob_id);
        for client in [&mut alice, &mut bob_phone, &mut bob_laptop] {
            let message = client.next_of("message").await;
            assert_eq!(message["message_type"], "system", "{message}");
            assert_eq!(message["chat_id"], chat.as_str());
        }
        for token in [alice.token().to_owned(), bob_phone.token().to_owned()] {
            let page = server
                .get(&format!("/api/v1/messages/{chat}"), &token)
                .await
                .json();
            let messages = page["messages"].as_array().unwrap();
            assert_eq!(messages.len(), 1, "{page}");
            assert_eq!(messages[0]["message_type"], "system");
            assert_eq!(messages[0]["sender_id"], alice_id.as_str());
            let body: Value =
                serde_json::from_str(messages[0]["content"].as_str().unwrap()).unwrap();
            assert_eq!(body["op"], "missed_call");
            assert_eq!(body["call_id"], "k1");
            assert_eq!(body["callee"], bob_id.as_str());
            assert_eq!(body["reason"], "timeout");
            assert!(body["rang_ms"].as_u64().unwrap() >= 400);
        }

        // An answer after the timeout finds no call.
        bob_phone.call("k1", &alice_id, "answer", sdp("a")).await;
        assert_eq!(next_error(&mut bob_phone).await["code"], "not_found");
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_callee_without_a_connection_is_pushed_and_rung_on_connect() {
    bounded_test(async {
        let server = TestServer::default().await;
        let mut alice = server.client(&phone(1)).await;
        let bob = server.login(&phone(2)).await;
        let alice_id = alice.id().to_owned();

        alice.call("k1", &bob.user_id, "offer", sdp("v=0 o")).await;
        // The push is sent at once, not after the batching window.
        let pushed = common::bounded(async {
            loop {
                if let Some(n) = server.push.delivered().into_iter().next() {
                    return n;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        assert_eq!(pushed.user_id.0.to_string(), bob.user_id);
        assert_eq!(pushed.text, "Incoming call");
        assert_eq!(pushed.call_id.as_deref(), Some("k1"));
        assert_eq!(
            pushed.chat_ids,
            vec![common::direct_chat(&alice_id, &bob.user_id)]
        );

        // Bob opens the app while it still rings: the device gets the offer.
        let mut bob = server.connect(&bob).await;
        let offer = bob.next_call().await;
        assert_eq!(
            (&offer["action"], &offer["sdp"]),
            (&json!("offer"), &json!("v=0 o"))
        );
        bob.call("k1", &alice_id, "answer", sdp("v=0 a")).await;
        assert_eq!(alice.next_call().await["action"], "answer");

        // Bob's device goes away mid-call: Alice is told, and both are free again.
        bob.ws.close(None).await.unwrap();
        let gone = alice.next_call().await;
        assert_eq!(gone["action"], "hangup");
        assert_eq!(gone["reason"], "disconnected");
        assert_eq!(server.state.messenger.calls_in_progress(), 0);
        server.shutdown().await;
    })
    .await;
}
