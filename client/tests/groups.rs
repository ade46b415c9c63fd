//! Megolm groups: three devices talk; a removed member cannot read what follows its removal;
//! an added member cannot read what preceded its joining; missing Olm sessions are reported
//! before anything is sent; a message attributed to the wrong sender does not decrypt.

mod common;

use common::{KeyServer, connect, device};
use missive_client::{Device, Error, GroupMessage, PeerDevice};

const GROUP: &str = "g1";

/// Every device in `receivers` decrypts `message` from `sender` after a trip through JSON.
fn deliver(
    sender: &PeerDevice,
    message: &GroupMessage,
    receivers: &mut [&mut Device],
) -> Vec<Vec<u8>> {
    let wire = message.to_wire();
    receivers
        .iter_mut()
        .map(|d| {
            let parsed = GroupMessage::from_wire(&wire).unwrap();
            d.group_decrypt(GROUP, sender, &parsed).unwrap()
        })
        .collect()
}

#[test]
fn group_of_three_exchanges_messages() {
    let mut server = KeyServer::default();
    let mut alice = device(&mut server, "alice", 5);
    let mut bob = device(&mut server, "bob", 5);
    let mut carol = device(&mut server, "carol", 5);
    let members = [alice.me().clone(), bob.me().clone(), carol.me().clone()];
    for d in [&mut alice, &mut bob, &mut carol] {
        connect(&mut server, d, &members);
    }

    let m = alice.group_encrypt(GROUP, &members, b"hello all").unwrap();
    assert_eq!(m.key_shares.len(), 2, "one share per other member device");
    let id = alice.me().clone();
    assert_eq!(
        deliver(&id, &m, &mut [&mut bob, &mut carol]),
        [b"hello all", b"hello all"]
    );
    // The sender can read its own message when the server echoes it back.
    assert_eq!(alice.group_decrypt(GROUP, &id, &m).unwrap(), b"hello all");

    let m = alice.group_encrypt(GROUP, &members, b"again").unwrap();
    assert!(m.key_shares.is_empty(), "same members, same session");
    assert_eq!(
        deliver(&id, &m, &mut [&mut bob, &mut carol]),
        [b"again", b"again"]
    );

    let id = bob.me().clone();
    let m = bob.group_encrypt(GROUP, &members, b"bob here").unwrap();
    assert_eq!(
        deliver(&id, &m, &mut [&mut alice, &mut carol]),
        [b"bob here", b"bob here"]
    );
    let id = carol.me().clone();
    let m = carol.group_encrypt(GROUP, &members, b"carol here").unwrap();
    assert_eq!(
        deliver(&id, &m, &mut [&mut alice, &mut bob]),
        [b"carol here", b"carol here"]
    );

    // A redelivered message (with its key share) decrypts again rather than failing.
    assert_eq!(alice.group_decrypt(GROUP, &id, &m).unwrap(), b"carol here");
}

#[test]
fn removed_member_cannot_read_new_messages() {
    let mut server = KeyServer::default();
    let mut alice = device(&mut server, "alice", 5);
    let mut bob = device(&mut server, "bob", 5);
    let mut carol = device(&mut server, "carol", 5);
    let members = [alice.me().clone(), bob.me().clone(), carol.me().clone()];
    connect(&mut server, &mut alice, &members);
    let alice_id = alice.me().clone();

    let before = alice.group_encrypt(GROUP, &members, b"before").unwrap();
    deliver(&alice_id, &before, &mut [&mut bob, &mut carol]);

    // Carol is removed.
    let remaining = [alice.me().clone(), bob.me().clone()];
    let after = alice.group_encrypt(GROUP, &remaining, b"after").unwrap();
    assert_ne!(
        after.session_id, before.session_id,
        "a membership change starts a new session"
    );
    assert_eq!(after.key_shares.len(), 1);
    assert_eq!(after.key_shares[0].0, *bob.me());
    assert_eq!(
        bob.group_decrypt(GROUP, &alice_id, &after).unwrap(),
        b"after"
    );
    let err = carol.group_decrypt(GROUP, &alice_id, &after).unwrap_err();
    assert!(matches!(err, Error::UnknownGroupSession { .. }), "{err}");
    // Even a share meant for Bob is useless to Carol.
    let stolen = &after.key_shares[0].1;
    assert!(carol.import_key_share(&alice_id, stolen).is_err());
    assert!(carol.group_decrypt(GROUP, &alice_id, &after).is_err());
    // What she received before still reads.
    assert_eq!(
        carol.group_decrypt(GROUP, &alice_id, &before).unwrap(),
        b"before"
    );
}

#[test]
fn added_member_cannot_read_earlier_messages() {
    let mut server = KeyServer::default();
    let mut alice = device(&mut server, "alice", 5);
    let mut bob = device(&mut server, "bob", 5);
    let mut dave = device(&mut server, "dave", 5);
    let alice_id = alice.me().clone();
    let two = [alice.me().clone(), bob.me().clone()];
    connect(&mut server, &mut alice, &two);
    let old = alice.group_encrypt(GROUP, &two, b"old news").unwrap();
    deliver(&alice_id, &old, &mut [&mut bob]);

    // Dave joins: Alice needs a session with him before she can share a key.
    let three = [alice.me().clone(), bob.me().clone(), dave.me().clone()];
    let err = alice.group_encrypt(GROUP, &three, b"welcome").unwrap_err();
    assert!(matches!(err, Error::MissingSessions { ref peers } if peers == &[dave.me().clone()]));
    connect(&mut server, &mut alice, &three);
    let new = alice.group_encrypt(GROUP, &three, b"welcome").unwrap();
    assert_ne!(new.session_id, old.session_id);
    assert_eq!(
        deliver(&alice_id, &new, &mut [&mut bob, &mut dave]),
        [b"welcome", b"welcome"]
    );

    let err = dave.group_decrypt(GROUP, &alice_id, &old).unwrap_err();
    assert!(matches!(err, Error::UnknownGroupSession { .. }), "{err}");
}

#[test]
fn message_attributed_to_another_sender_does_not_decrypt() {
    let mut server = KeyServer::default();
    let mut alice = device(&mut server, "alice", 5);
    let mut bob = device(&mut server, "bob", 5);
    let mut carol = device(&mut server, "carol", 5);
    let members = [alice.me().clone(), bob.me().clone(), carol.me().clone()];
    for d in [&mut alice, &mut bob, &mut carol] {
        connect(&mut server, d, &members);
    }
    let m = carol.group_encrypt(GROUP, &members, b"carol's").unwrap();
    let carol_id = carol.me().clone();
    bob.group_decrypt(GROUP, &carol_id, &m).unwrap();
    // The server claims Alice sent it.
    let alice_id = alice.me().clone();
    let m2 = carol.group_encrypt(GROUP, &members, b"forged").unwrap();
    assert!(bob.group_decrypt(GROUP, &alice_id, &m2).is_err());
    // Tampered group ciphertext fails too.
    let mut bytes = vodozemac::base64_decode(&m2.ciphertext).unwrap();
    bytes[10] ^= 0x40;
    let tampered = GroupMessage {
        ciphertext: vodozemac::base64_encode(&bytes),
        ..m2.clone()
    };
    assert!(bob.group_decrypt(GROUP, &carol_id, &tampered).is_err());
    assert_eq!(bob.group_decrypt(GROUP, &carol_id, &m2).unwrap(), b"forged");
}

#[test]
fn key_shares_can_travel_apart_from_the_message() {
    let mut server = KeyServer::default();
    let mut alice = device(&mut server, "alice", 5);
    let mut bob = device(&mut server, "bob", 5);
    let members = [alice.me().clone(), bob.me().clone()];
    connect(&mut server, &mut alice, &members);
    let alice_id = alice.me().clone();
    let mut m = alice.group_encrypt(GROUP, &members, b"big group").unwrap();
    let shares = std::mem::take(&mut m.key_shares);
    assert!(matches!(
        bob.group_decrypt(GROUP, &alice_id, &m),
        Err(Error::UnknownGroupSession { .. })
    ));
    assert_eq!(
        bob.import_key_share(&alice_id, &shares[0].1).unwrap(),
        GROUP
    );
    assert_eq!(
        bob.group_decrypt(GROUP, &alice_id, &m).unwrap(),
        b"big group"
    );
}
