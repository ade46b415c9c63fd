//! 1:1 Olm sessions: the first contact uses a one-time prekey, later ones fall back to the
//! signed prekey; forged bundles, changed identities, tampered ciphertext and replays are
//! refused with typed errors.

mod common;

use common::{KeyServer, device};
use missive_client::{Envelope, EnvelopeKind, Error};

#[test]
fn two_devices_exchange_messages_both_ways() {
    let mut server = KeyServer::default();
    let mut alice = device(&mut server, "alice", 5);
    let mut bob = device(&mut server, "bob", 5);
    let (alice_id, bob_id) = (alice.me().clone(), bob.me().clone());

    let bundle = server.fetch(&bob_id);
    assert!(
        bundle.one_time_prekey.is_some(),
        "the first contact gets a one-time prekey"
    );
    assert_eq!(server.count(&bob_id), 4);

    let first = alice
        .encrypt_to(&bob_id, Some(&bundle), b"hello bob")
        .unwrap();
    assert_eq!(first.kind, EnvelopeKind::Prekey);
    let first = Envelope::from_wire(&first.to_wire()).unwrap();
    assert_eq!(bob.decrypt_from(&alice_id, &first).unwrap(), b"hello bob");

    // Several rounds each way, including two in a row from the same side.
    for round in 0..3 {
        let text = format!("bob {round}");
        let reply = bob.encrypt_to(&alice_id, None, text.as_bytes()).unwrap();
        assert_eq!(reply.kind, EnvelopeKind::Normal);
        assert_eq!(
            alice.decrypt_from(&bob_id, &reply).unwrap(),
            text.as_bytes()
        );
        for n in 0..2 {
            let text = format!("alice {round}.{n}");
            let message = alice.encrypt_to(&bob_id, None, text.as_bytes()).unwrap();
            assert_eq!(
                message.kind,
                EnvelopeKind::Normal,
                "the session is established"
            );
            assert_eq!(
                bob.decrypt_from(&alice_id, &message).unwrap(),
                text.as_bytes()
            );
        }
    }
    assert_eq!(bob.peer_identity_key(&alice_id), Some(alice.identity_key()));
}

#[test]
fn out_of_order_messages_decrypt() {
    let mut server = KeyServer::default();
    let mut alice = device(&mut server, "alice", 1);
    let mut bob = device(&mut server, "bob", 1);
    let (alice_id, bob_id) = (alice.me().clone(), bob.me().clone());
    let bundle = server.fetch(&bob_id);
    let m1 = alice.encrypt_to(&bob_id, Some(&bundle), b"one").unwrap();
    let m2 = alice.encrypt_to(&bob_id, None, b"two").unwrap();
    let m3 = alice.encrypt_to(&bob_id, None, b"three").unwrap();
    assert_eq!(bob.decrypt_from(&alice_id, &m3).unwrap(), b"three");
    assert_eq!(bob.decrypt_from(&alice_id, &m1).unwrap(), b"one");
    assert_eq!(bob.decrypt_from(&alice_id, &m2).unwrap(), b"two");
}

#[test]
fn second_session_uses_the_signed_prekey_when_one_time_keys_are_exhausted() {
    let mut server = KeyServer::default();
    let mut alice = device(&mut server, "alice", 0);
    let mut carol = device(&mut server, "carol", 0);
    let mut bob = device(&mut server, "bob", 1);
    let bob_id = bob.me().clone();

    // Alice takes Bob's only one-time prekey.
    let with_otk = server.fetch(&bob_id);
    assert!(with_otk.one_time_prekey.is_some());
    let m = alice
        .encrypt_to(&bob_id, Some(&with_otk), b"from alice")
        .unwrap();
    assert_eq!(bob.decrypt_from(alice.me(), &m).unwrap(), b"from alice");

    // Carol gets the signed prekey alone.
    assert_eq!(server.count(&bob_id), 0);
    let fallback = server.fetch(&bob_id);
    assert!(fallback.one_time_prekey.is_none());
    let m = carol
        .encrypt_to(&bob_id, Some(&fallback), b"from carol")
        .unwrap();
    assert_eq!(m.kind, EnvelopeKind::Prekey);
    assert_eq!(bob.decrypt_from(carol.me(), &m).unwrap(), b"from carol");
    let reply = bob.encrypt_to(carol.me(), None, b"hi carol").unwrap();
    assert_eq!(carol.decrypt_from(&bob_id, &reply).unwrap(), b"hi carol");

    // A second session between the same two devices (Alice re-keys) also works on the
    // signed prekey, and the newest session is the one both ends continue in.
    alice.create_session(&server.fetch(&bob_id)).unwrap();
    let m = alice.encrypt_to(&bob_id, None, b"new session").unwrap();
    assert_eq!(m.kind, EnvelopeKind::Prekey);
    assert_eq!(bob.decrypt_from(alice.me(), &m).unwrap(), b"new session");
    let reply = bob.encrypt_to(alice.me(), None, b"ok").unwrap();
    assert_eq!(alice.decrypt_from(&bob_id, &reply).unwrap(), b"ok");

    // Topping up: the server count drives how many keys to generate.
    let wanted = missive_client::ONE_TIME_KEYS_MAX - server.count(&bob_id);
    assert_eq!(bob.generate_one_time_keys(wanted), wanted);
    server.publish(&mut bob);
    assert_eq!(server.count(&bob_id), missive_client::ONE_TIME_KEYS_MAX);
    assert!(
        bob.key_bundle_upload().one_time_prekeys.is_empty(),
        "published keys are not re-sent"
    );
}

#[test]
fn rotated_signed_prekey_is_used_and_the_previous_one_still_works() {
    let mut server = KeyServer::default();
    let mut alice = device(&mut server, "alice", 0);
    let mut carol = device(&mut server, "carol", 0);
    let mut bob = device(&mut server, "bob", 0);
    let bob_id = bob.me().clone();
    let old = server.fetch(&bob_id);
    bob.rotate_signed_prekey();
    server.publish(&mut bob);
    let new = server.fetch(&bob_id);
    assert_ne!(old.signed_prekey.key, new.signed_prekey.key);

    let m = alice.encrypt_to(&bob_id, Some(&old), b"old").unwrap();
    assert_eq!(bob.decrypt_from(alice.me(), &m).unwrap(), b"old");
    let m = carol.encrypt_to(&bob_id, Some(&new), b"new").unwrap();
    assert_eq!(bob.decrypt_from(carol.me(), &m).unwrap(), b"new");
}

#[test]
fn tampered_signed_prekey_is_refused() {
    let mut server = KeyServer::default();
    let mut alice = device(&mut server, "alice", 0);
    let mallory = device(&mut server, "mallory", 0);
    let bob = device(&mut server, "bob", 2);
    let bob_id = bob.me().clone();

    // The server swaps in a prekey of its own choosing.
    let mut bundle = server.fetch(&bob_id);
    bundle.signed_prekey.key = mallory.key_bundle_upload().signed_prekey.key;
    bundle.one_time_prekey = None;
    let err = alice
        .encrypt_to(&bob_id, Some(&bundle), b"secret")
        .unwrap_err();
    assert!(
        matches!(err, Error::BadPrekeySignature { ref peer } if *peer == bob_id),
        "{err}"
    );

    // A forged signature, a signature by another key, or garbage: all refused, even when a
    // one-time prekey would have been used.
    let mut bundle = server.fetch(&bob_id);
    assert!(bundle.one_time_prekey.is_some());
    bundle.signed_prekey.signature = mallory.key_bundle_upload().signed_prekey.signature;
    assert!(matches!(
        alice.create_session(&bundle),
        Err(Error::BadPrekeySignature { .. })
    ));
    bundle.signed_prekey.signature = "not base64!".into();
    assert!(matches!(
        alice.create_session(&bundle),
        Err(Error::BadPrekeySignature { .. })
    ));
    let mut bundle = server.fetch(&bob_id);
    bundle.signing_key = mallory.signing_key();
    assert!(matches!(
        alice.create_session(&bundle),
        Err(Error::BadPrekeySignature { .. })
    ));

    assert!(
        !alice.has_session(&bob_id),
        "nothing was created from a bad bundle"
    );
    assert!(matches!(
        alice.encrypt_to(&bob_id, None, b"x"),
        Err(Error::NoSession { .. })
    ));
}

#[test]
fn changed_identity_key_is_refused_until_forgotten() {
    let mut server = KeyServer::default();
    let mut alice = device(&mut server, "alice", 0);
    let bob = device(&mut server, "bob", 0);
    let bob_id = bob.me().clone();
    alice.create_session(&server.fetch(&bob_id)).unwrap();

    // Bob's device is replaced by one with new keys under the same ids.
    let mut impostor = missive_client::Device::new(bob_id.clone());
    server.publish(&mut impostor);
    let bundle = server.fetch(&bob_id);
    assert!(matches!(
        alice.create_session(&bundle),
        Err(Error::IdentityChanged { .. })
    ));
    // A prekey message from the new device is refused the same way.
    let fresh = server.fetch(alice.me());
    let m = impostor
        .encrypt_to(alice.me(), Some(&fresh), b"trust me")
        .unwrap();
    assert!(matches!(
        alice.decrypt_from(&bob_id, &m),
        Err(Error::IdentityChanged { .. })
    ));

    alice.forget_peer(&bob_id);
    alice.create_session(&bundle).unwrap();
    assert_eq!(
        alice.peer_identity_key(&bob_id),
        Some(impostor.identity_key())
    );
}

#[test]
fn bundle_for_another_device_is_refused() {
    let mut server = KeyServer::default();
    let mut alice = device(&mut server, "alice", 0);
    let bob = device(&mut server, "bob", 0);
    let carol = device(&mut server, "carol", 0);
    let bundle = server.fetch(carol.me());
    let err = alice.encrypt_to(bob.me(), Some(&bundle), b"x").unwrap_err();
    assert!(matches!(err, Error::BundleMismatch { .. }), "{err}");
}

#[test]
fn tampered_ciphertext_is_rejected() {
    let mut server = KeyServer::default();
    let mut alice = device(&mut server, "alice", 1);
    let mut bob = device(&mut server, "bob", 1);
    let (alice_id, bob_id) = (alice.me().clone(), bob.me().clone());
    let bundle = server.fetch(&bob_id);
    let m = alice.encrypt_to(&bob_id, Some(&bundle), b"first").unwrap();
    bob.decrypt_from(&alice_id, &m).unwrap();
    let reply = bob.encrypt_to(&alice_id, None, b"reply").unwrap();
    alice.decrypt_from(&bob_id, &reply).unwrap();

    let good = alice.encrypt_to(&bob_id, None, b"pay 10").unwrap();
    let mut bytes = vodozemac::base64_decode(&good.body).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 1;
    let tampered = Envelope {
        body: vodozemac::base64_encode(&bytes),
        ..good.clone()
    };
    let err = bob.decrypt_from(&alice_id, &tampered).unwrap_err();
    assert!(
        matches!(err, Error::Decrypt { .. } | Error::Malformed { .. }),
        "{err}"
    );
    // The genuine message still decrypts: the failure changed nothing.
    assert_eq!(bob.decrypt_from(&alice_id, &good).unwrap(), b"pay 10");

    assert!(matches!(
        Envelope::from_wire("{"),
        Err(Error::Malformed { .. })
    ));
    assert!(matches!(
        Envelope::from_wire(r#"{"v":2,"type":"normal","body":""}"#),
        Err(Error::Malformed { .. })
    ));
}

#[test]
fn replayed_olm_messages_are_rejected() {
    let mut server = KeyServer::default();
    let mut alice = device(&mut server, "alice", 0);
    let mut carol = device(&mut server, "carol", 0);
    let mut bob = device(&mut server, "bob", 1);
    let (alice_id, bob_id) = (alice.me().clone(), bob.me().clone());

    // A prekey message made with a one-time prekey, replayed.
    let bundle = server.fetch(&bob_id);
    let prekey = alice.encrypt_to(&bob_id, Some(&bundle), b"once").unwrap();
    assert_eq!(bob.decrypt_from(&alice_id, &prekey).unwrap(), b"once");
    assert!(matches!(
        bob.decrypt_from(&alice_id, &prekey),
        Err(Error::Replay { .. })
    ));

    // A normal message, replayed.
    let reply = bob.encrypt_to(&alice_id, None, b"ack").unwrap();
    alice.decrypt_from(&bob_id, &reply).unwrap();
    let normal = alice.encrypt_to(&bob_id, None, b"pay 10").unwrap();
    assert_eq!(normal.kind, EnvelopeKind::Normal);
    assert_eq!(bob.decrypt_from(&alice_id, &normal).unwrap(), b"pay 10");
    assert!(matches!(
        bob.decrypt_from(&alice_id, &normal),
        Err(Error::Replay { .. })
    ));
    assert!(matches!(
        alice.decrypt_from(&bob_id, &reply),
        Err(Error::Replay { .. })
    ));

    // A prekey message made with the signed prekey (which is not consumed), replayed even
    // after the session it created is gone.
    let fallback = server.fetch(&bob_id);
    assert!(fallback.one_time_prekey.is_none());
    let prekey = carol
        .encrypt_to(&bob_id, Some(&fallback), b"once more")
        .unwrap();
    assert_eq!(bob.decrypt_from(carol.me(), &prekey).unwrap(), b"once more");
    assert!(matches!(
        bob.decrypt_from(carol.me(), &prekey),
        Err(Error::Replay { .. })
    ));
    let carol_id = carol.me().clone();
    bob.forget_peer(&carol_id);
    assert!(matches!(
        bob.decrypt_from(&carol_id, &prekey),
        Err(Error::Replay { .. })
    ));
}

#[test]
fn oversized_plaintext_is_refused() {
    let mut server = KeyServer::default();
    let mut alice = device(&mut server, "alice", 0);
    let bob = device(&mut server, "bob", 0);
    let bundle = server.fetch(bob.me());
    let big = vec![0u8; missive_client::PLAINTEXT_BYTES_MAX + 1];
    assert!(matches!(
        alice.encrypt_to(bob.me(), Some(&bundle), &big),
        Err(Error::PlaintextTooLarge { .. })
    ));
    let max = vec![7u8; missive_client::PLAINTEXT_BYTES_MAX];
    let envelope = alice.encrypt_to(bob.me(), Some(&bundle), &max).unwrap();
    assert!(envelope.to_wire().len() <= missive_client::CONTENT_BYTES_MAX);
}
