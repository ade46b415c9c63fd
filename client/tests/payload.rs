//! [`Payload`]: the per-device envelope a message's `content` carries. Round trips for 1:1
//! (with the sender's own other device) and groups, through the wire text; tampering,
//! another device, another sender, another conversation and another version are each refused
//! with their own error; a member removed from a group cannot read what follows the re-key.

mod common;

use common::{KeyServer, connect, device};
use missive_client::{
    CONTENT_BYTES_MAX, Conversation, Device, Error, PAYLOAD_VERSION, Payload, PayloadBody,
    PeerDevice,
};

/// A second device of `user_id`, published to `server`.
fn second_device(server: &mut KeyServer, user_id: &str) -> Device {
    let mut device = Device::new(PeerDevice::new(user_id, "2"));
    device.generate_one_time_keys(5);
    server.publish(&mut device);
    device
}

/// Sends `payload` through its wire text, as the server relays it.
fn relay(payload: &Payload) -> Payload {
    Payload::from_wire(&payload.to_wire()).unwrap()
}

/// Replaces one base64 character in the middle of `text` with another valid one.
fn flip(text: &str) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    let at = chars.len() / 2;
    chars[at] = if chars[at] == 'A' { 'B' } else { 'A' };
    chars.into_iter().collect()
}

#[test]
fn direct_round_trip_reaches_the_peer_and_the_senders_other_device() {
    let mut server = KeyServer::default();
    let mut alice = device(&mut server, "alice", 5);
    let mut alice2 = second_device(&mut server, "alice");
    let mut bob = device(&mut server, "bob", 5);
    let (alice_id, alice2_id, bob_id) = (alice.me().clone(), alice2.me().clone(), bob.me().clone());
    let devices = [alice_id.clone(), alice2_id.clone(), bob_id.clone()];
    assert_eq!(
        alice.missing_sessions(&devices),
        vec![alice2_id.clone(), bob_id.clone()],
        "the sender itself is never missing"
    );
    connect(&mut server, &mut alice, &devices);
    assert!(alice.missing_sessions(&devices).is_empty());

    let payload = alice
        .encrypt_for(&Conversation::Direct, &devices, "hello Bob ✓".as_bytes())
        .unwrap();
    assert_eq!(payload.v, PAYLOAD_VERSION);
    assert_eq!(payload.sender, alice_id);
    assert_eq!(
        payload.recipients(),
        vec![alice2_id.clone(), bob_id.clone()]
    );
    let wire = payload.to_wire();
    assert!(!wire.contains("hello"), "{wire}");
    assert!(wire.starts_with(r#"{"v":1,"#), "{wire}");

    let received = relay(&payload);
    assert_eq!(
        bob.decrypt(&Conversation::Direct, &alice_id, &received)
            .unwrap(),
        "hello Bob ✓".as_bytes()
    );
    assert_eq!(
        alice2
            .decrypt(&Conversation::Direct, &alice_id, &received)
            .unwrap(),
        "hello Bob ✓".as_bytes()
    );
    assert!(matches!(
        alice.decrypt(&Conversation::Direct, &alice_id, &received),
        Err(Error::NotForThisDevice { device }) if device == alice_id
    ));

    // Bob answers both of Alice's devices; he needs a session with the second one first.
    let to_alice = [alice_id.clone(), alice2_id.clone()];
    assert!(matches!(
        bob.encrypt_for(&Conversation::Direct, &to_alice, b"hi"),
        Err(Error::MissingSessions { peers }) if peers == vec![alice2_id.clone()]
    ));
    connect(&mut server, &mut bob, &to_alice);
    for round in 0..3 {
        let text = format!("reply {round}");
        let reply = relay(
            &bob.encrypt_for(&Conversation::Direct, &to_alice, text.as_bytes())
                .unwrap(),
        );
        for receiver in [&mut alice, &mut alice2] {
            assert_eq!(
                receiver
                    .decrypt(&Conversation::Direct, &bob_id, &reply)
                    .unwrap(),
                text.as_bytes()
            );
        }
    }
}

#[test]
fn group_round_trip_and_the_sender_reads_its_own_message() {
    let mut server = KeyServer::default();
    let mut devices: Vec<Device> = ["alice", "bob", "carol"]
        .into_iter()
        .map(|user| device(&mut server, user, 5))
        .collect();
    let ids: Vec<PeerDevice> = devices.iter().map(|d| d.me().clone()).collect();
    let group = Conversation::group("g1");
    for sender in 0..3 {
        connect(&mut server, &mut devices[sender], &ids);
        for n in 0..2 {
            let text = format!("from {sender}, {n}");
            let payload = relay(
                &devices[sender]
                    .encrypt_for(&group, &ids, text.as_bytes())
                    .unwrap(),
            );
            let PayloadBody::Group { key_shares, .. } = &payload.body else {
                panic!("a group payload: {payload:?}");
            };
            assert_eq!(
                key_shares.values().map(|d| d.len()).sum::<usize>(),
                if n == 0 { 2 } else { 0 },
                "the key is shared with the two others once"
            );
            for receiver in &mut devices {
                assert_eq!(
                    receiver.decrypt(&group, &ids[sender], &payload).unwrap(),
                    text.as_bytes()
                );
            }
        }
    }
}

#[test]
fn tampered_ciphertexts_are_refused_and_the_genuine_message_still_decrypts() {
    let mut server = KeyServer::default();
    let mut alice = device(&mut server, "alice", 5);
    let mut bob = device(&mut server, "bob", 5);
    let (alice_id, bob_id) = (alice.me().clone(), bob.me().clone());
    let both = [alice_id.clone(), bob_id.clone()];
    connect(&mut server, &mut alice, &both);

    // The first (prekey) message: tampering breaks session creation.
    let first = alice
        .encrypt_for(&Conversation::Direct, &both, b"first")
        .unwrap();
    let mut tampered = first.clone();
    let PayloadBody::Direct { olm } = &mut tampered.body else {
        panic!("direct")
    };
    let envelope = olm.get_mut("bob").unwrap().get_mut("1").unwrap();
    envelope.body = flip(&envelope.body);
    let error = bob
        .decrypt(&Conversation::Direct, &alice_id, &relay(&tampered))
        .unwrap_err();
    assert!(matches!(error, Error::SessionCreation { .. }), "{error}");
    assert_eq!(
        bob.decrypt(&Conversation::Direct, &alice_id, &first)
            .unwrap(),
        b"first"
    );

    // A normal message in the established session: the MAC fails.
    let reply = bob
        .encrypt_for(&Conversation::Direct, &both, b"second")
        .unwrap();
    let mut tampered = reply.clone();
    let PayloadBody::Direct { olm } = &mut tampered.body else {
        panic!("direct")
    };
    let envelope = olm.get_mut("alice").unwrap().get_mut("1").unwrap();
    envelope.body = flip(&envelope.body);
    let error = alice
        .decrypt(&Conversation::Direct, &bob_id, &relay(&tampered))
        .unwrap_err();
    assert!(matches!(error, Error::Decrypt { .. }), "{error}");
    assert_eq!(
        alice
            .decrypt(&Conversation::Direct, &bob_id, &reply)
            .unwrap(),
        b"second"
    );

    // A group message: the Megolm signature and MAC fail.
    let group = Conversation::group("g1");
    let message = alice.encrypt_for(&group, &both, b"group text").unwrap();
    let mut tampered = message.clone();
    let PayloadBody::Group { ciphertext, .. } = &mut tampered.body else {
        panic!("group")
    };
    *ciphertext = flip(ciphertext);
    let error = bob
        .decrypt(&group, &alice_id, &relay(&tampered))
        .unwrap_err();
    assert!(matches!(error, Error::GroupDecrypt { .. }), "{error}");
    assert_eq!(
        bob.decrypt(&group, &alice_id, &message).unwrap(),
        b"group text"
    );

    // A replayed Olm message is refused, not delivered twice.
    assert!(matches!(
        alice.decrypt(&Conversation::Direct, &bob_id, &reply),
        Err(Error::Replay { .. })
    ));
}

#[test]
fn another_device_sender_or_conversation_is_refused() {
    let mut server = KeyServer::default();
    let mut alice = device(&mut server, "alice", 5);
    let mut bob = device(&mut server, "bob", 5);
    let mut carol = device(&mut server, "carol", 5);
    let (alice_id, bob_id, carol_id) = (alice.me().clone(), bob.me().clone(), carol.me().clone());
    connect(&mut server, &mut alice, std::slice::from_ref(&bob_id));
    let payload = relay(
        &alice
            .encrypt_for(
                &Conversation::Direct,
                std::slice::from_ref(&bob_id),
                b"for Bob",
            )
            .unwrap(),
    );

    // Carol's device was not a recipient.
    assert!(matches!(
        carol.decrypt(&Conversation::Direct, &alice_id, &payload),
        Err(Error::NotForThisDevice { device }) if device == carol_id
    ));
    // The server names another sender than the payload does.
    assert!(matches!(
        bob.decrypt(&Conversation::Direct, &carol_id, &payload),
        Err(Error::SenderMismatch { claimed, sender }) if claimed == alice_id && sender == carol_id
    ));
    // A 1:1 payload delivered in a group.
    assert!(matches!(
        bob.decrypt(&Conversation::group("g1"), &alice_id, &payload),
        Err(Error::ConversationMismatch { .. })
    ));
    // None of that used Bob's message key.
    assert_eq!(
        bob.decrypt(&Conversation::Direct, &alice_id, &payload)
            .unwrap(),
        b"for Bob"
    );

    // A group payload moved into another group, or into a 1:1 chat.
    let members = [alice_id.clone(), bob_id.clone()];
    let message = relay(
        &alice
            .encrypt_for(&Conversation::group("g1"), &members, b"g1 only")
            .unwrap(),
    );
    for wrong in [Conversation::group("g2"), Conversation::Direct] {
        assert!(matches!(
            bob.decrypt(&wrong, &alice_id, &message),
            Err(Error::ConversationMismatch { .. })
        ));
    }
    assert_eq!(
        bob.decrypt(&Conversation::group("g1"), &alice_id, &message)
            .unwrap(),
        b"g1 only"
    );
}

#[test]
fn another_version_is_refused_before_decrypting() {
    let mut server = KeyServer::default();
    let mut alice = device(&mut server, "alice", 5);
    let mut bob = device(&mut server, "bob", 5);
    let alice_id = alice.me().clone();
    let bob_id = bob.me().clone();
    connect(&mut server, &mut alice, std::slice::from_ref(&bob_id));
    let payload = alice
        .encrypt_for(&Conversation::Direct, &[bob_id], b"versioned")
        .unwrap();
    let wire = payload.to_wire();

    let future = wire.replacen(r#"{"v":1,"#, r#"{"v":2,"#, 1);
    assert_ne!(future, wire);
    assert!(matches!(
        Payload::from_wire(&future),
        Err(Error::UnsupportedVersion { what: "payload", version, supported: 1 }) if version == "2"
    ));
    let mut in_memory = payload.clone();
    in_memory.v = 2;
    assert!(matches!(
        bob.decrypt(&Conversation::Direct, &alice_id, &in_memory),
        Err(Error::UnsupportedVersion { .. })
    ));
    for broken in [
        wire.replacen(r#"{"v":1,"#, r#"{"#, 1),
        wire.replacen(r#"{"v":1,"#, r#"{"v":"1","#, 1),
        "not json".to_owned(),
        "aGVsbG8=".to_owned(),
        r#"{"v":1,"kind":"carrier pigeon","sender":{"user_id":"1","device_id":"1"}}"#.to_owned(),
        " ".repeat(CONTENT_BYTES_MAX + 1),
    ] {
        assert!(
            matches!(
                Payload::from_wire(&broken),
                Err(Error::Malformed {
                    what: "payload",
                    ..
                })
            ),
            "{broken:.80}"
        );
    }
    // The genuine one still decrypts.
    assert_eq!(
        bob.decrypt(
            &Conversation::Direct,
            &alice_id,
            &Payload::from_wire(&wire).unwrap()
        )
        .unwrap(),
        b"versioned"
    );
}

#[test]
fn removed_member_cannot_decrypt_after_the_rekey() {
    let mut server = KeyServer::default();
    let mut alice = device(&mut server, "alice", 5);
    let mut bob = device(&mut server, "bob", 5);
    let mut carol = device(&mut server, "carol", 5);
    let (alice_id, bob_id, carol_id) = (alice.me().clone(), bob.me().clone(), carol.me().clone());
    let group = Conversation::group("g1");
    let all = [alice_id.clone(), bob_id.clone(), carol_id.clone()];
    connect(&mut server, &mut alice, &all);
    let before = relay(&alice.encrypt_for(&group, &all, b"before").unwrap());
    assert_eq!(
        carol.decrypt(&group, &alice_id, &before).unwrap(),
        b"before"
    );
    assert_eq!(bob.decrypt(&group, &alice_id, &before).unwrap(), b"before");

    // Carol is removed: the next message starts a new session shared with Bob only.
    let remaining = [alice_id.clone(), bob_id.clone()];
    let after = relay(&alice.encrypt_for(&group, &remaining, b"after").unwrap());
    let (
        PayloadBody::Group {
            session_id: old, ..
        },
        PayloadBody::Group {
            session_id: new, ..
        },
    ) = (&before.body, &after.body)
    else {
        panic!("group payloads")
    };
    assert_ne!(old, new, "a re-key starts a new session");
    assert_eq!(after.recipients(), vec![bob_id.clone()]);
    assert!(matches!(
        carol.decrypt(&group, &alice_id, &after),
        Err(Error::UnknownGroupSession { session_id, .. }) if session_id == *new
    ));
    assert_eq!(bob.decrypt(&group, &alice_id, &after).unwrap(), b"after");
}

#[test]
fn a_payload_over_the_content_limit_is_refused() {
    let mut server = KeyServer::default();
    let mut alice = device(&mut server, "alice", 5);
    let bob = device(&mut server, "bob", 5);
    let bob2 = second_device(&mut server, "bob");
    let devices = [bob.me().clone(), bob2.me().clone()];
    connect(&mut server, &mut alice, &devices);
    let text = vec![b'x'; missive_client::PLAINTEXT_BYTES_MAX];
    // One device fits; two copies of 32 KiB do not fit in 64 KiB.
    alice
        .encrypt_for(&Conversation::Direct, &devices[..1], &text)
        .unwrap();
    assert!(matches!(
        alice.encrypt_for(&Conversation::Direct, &devices, &text),
        Err(Error::PayloadTooLarge { bytes, bytes_max: CONTENT_BYTES_MAX }) if bytes > CONTENT_BYTES_MAX
    ));
}
