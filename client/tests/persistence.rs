//! The encrypted store: a save/load round trip keeps Olm and Megolm sessions working (sent
//! before the save, read after the load), a wrong key or passphrase fails with a typed error,
//! and a damaged or foreign file is refused rather than half-loaded.

mod common;

use common::{KeyServer, connect, device};
use missive_client::{Device, Error, KdfParams, StoreKey};

/// Cheap Argon2id parameters so debug-build tests stay fast; real clients use the default.
const TEST_KDF: KdfParams = KdfParams {
    memory_kib: 64,
    iterations: 1,
    parallelism: 1,
};

#[test]
fn save_load_round_trip_keeps_sessions_working() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = KeyServer::default();
    let mut alice = device(&mut server, "alice", 3);
    let mut bob = device(&mut server, "bob", 3);
    let mut carol = device(&mut server, "carol", 3);
    let (alice_id, bob_id, carol_id) = (alice.me().clone(), bob.me().clone(), carol.me().clone());
    let members = [alice_id.clone(), bob_id.clone(), carol_id.clone()];
    connect(&mut server, &mut alice, &members);
    connect(&mut server, &mut bob, &members);

    // Establish sessions, then leave messages in flight both ways, 1:1 and in the group.
    let bundle = server.fetch(&bob_id);
    let first = alice.encrypt_to(&bob_id, Some(&bundle), b"first").unwrap();
    assert_eq!(bob.decrypt_from(&alice_id, &first).unwrap(), b"first");
    let to_alice = bob
        .encrypt_to(&alice_id, None, b"sent before alice saved")
        .unwrap();
    let group_before = alice
        .group_encrypt("g", &members, b"group before save")
        .unwrap();
    let to_bob = alice
        .encrypt_to(&bob_id, None, b"sent before bob saved")
        .unwrap();
    let upload_before = alice.key_bundle_upload();

    let alice_path = dir.path().join("alice.store");
    let bob_path = dir.path().join("bob.store");
    let alice_key = StoreKey::from_bytes([7; 32]);
    let bob_key = StoreKey::from_passphrase("correct horse battery staple", TEST_KDF).unwrap();
    alice.save(&alice_path, &alice_key).unwrap();
    bob.save(&bob_path, &bob_key).unwrap();
    drop((alice, bob));

    let mut alice = Device::load(&alice_path, &alice_key).unwrap();
    let bob_key = StoreKey::unlock(&bob_path, "correct horse battery staple").unwrap();
    let mut bob = Device::load(&bob_path, &bob_key).unwrap();
    assert_eq!(alice.me(), &alice_id);
    assert_eq!(
        alice.key_bundle_upload(),
        upload_before,
        "same keys, same unpublished keys"
    );

    assert_eq!(
        alice.decrypt_from(&bob_id, &to_alice).unwrap(),
        b"sent before alice saved"
    );
    assert_eq!(
        bob.decrypt_from(&alice_id, &to_bob).unwrap(),
        b"sent before bob saved"
    );
    assert_eq!(
        bob.group_decrypt("g", &alice_id, &group_before).unwrap(),
        b"group before save"
    );
    assert_eq!(
        carol.group_decrypt("g", &alice_id, &group_before).unwrap(),
        b"group before save"
    );
    // The outbound group session and its member set survived: same session, no new shares.
    let group_after = alice
        .group_encrypt("g", &members, b"group after load")
        .unwrap();
    assert_eq!(group_after.session_id, group_before.session_id);
    assert!(group_after.key_shares.is_empty());
    assert_eq!(
        bob.group_decrypt("g", &alice_id, &group_after).unwrap(),
        b"group after load"
    );
    // The replay guard survived too.
    assert!(matches!(
        bob.decrypt_from(&alice_id, &to_bob),
        Err(Error::Replay { .. })
    ));

    // Saving over an existing store replaces it; no temporary file is left behind.
    let reply = alice.encrypt_to(&bob_id, None, b"after load").unwrap();
    bob.save(&bob_path, &bob_key).unwrap();
    let mut bob = Device::load(&bob_path, &bob_key).unwrap();
    assert_eq!(bob.decrypt_from(&alice_id, &reply).unwrap(), b"after load");
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
}

#[test]
fn wrong_key_fails_to_load_with_a_typed_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = KeyServer::default();
    let alice = device(&mut server, "alice", 1);
    let path = dir.path().join("alice.store");
    alice.save(&path, &StoreKey::from_bytes([1; 32])).unwrap();

    let err = Device::load(&path, &StoreKey::from_bytes([2; 32])).unwrap_err();
    assert!(matches!(err, Error::WrongKey { .. }), "{err}");
    let err = StoreKey::unlock(&path, "anything").unwrap_err();
    assert!(
        matches!(err, Error::StoreCorrupt { .. }),
        "a raw-key store has no passphrase: {err}"
    );

    let path = dir.path().join("alice-pass.store");
    alice
        .save(
            &path,
            &StoreKey::from_passphrase("right", TEST_KDF).unwrap(),
        )
        .unwrap();
    let wrong = StoreKey::unlock(&path, "wrong").unwrap();
    assert!(matches!(
        Device::load(&path, &wrong),
        Err(Error::WrongKey { .. })
    ));
    // Same passphrase, another salt: another key.
    let other_salt = StoreKey::from_passphrase("right", TEST_KDF).unwrap();
    assert!(matches!(
        Device::load(&path, &other_salt),
        Err(Error::WrongKey { .. })
    ));
    let right = StoreKey::unlock(&path, "right").unwrap();
    assert_eq!(
        Device::load(&path, &right).unwrap().identity_key(),
        alice.identity_key()
    );
}

#[test]
fn damaged_or_foreign_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = KeyServer::default();
    let alice = device(&mut server, "alice", 1);
    let key = StoreKey::from_bytes([3; 32]);
    let path = dir.path().join("alice.store");
    alice.save(&path, &key).unwrap();
    let bytes = std::fs::read(&path).unwrap();

    // One flipped bit anywhere (header or body) fails authentication.
    for at in [12, 30, 50, 64, bytes.len() / 2, bytes.len() - 1] {
        let mut damaged = bytes.clone();
        damaged[at] ^= 1;
        std::fs::write(&path, &damaged).unwrap();
        let err = Device::load(&path, &key).unwrap_err();
        assert!(
            matches!(err, Error::WrongKey { .. } | Error::StoreCorrupt { .. }),
            "{at}: {err}"
        );
    }
    std::fs::write(&path, &bytes[..bytes.len() - 5]).unwrap();
    assert!(matches!(
        Device::load(&path, &key),
        Err(Error::WrongKey { .. })
    ));
    std::fs::write(&path, &bytes[..40]).unwrap();
    assert!(matches!(
        Device::load(&path, &key),
        Err(Error::StoreCorrupt { .. })
    ));
    std::fs::write(
        &path,
        b"not a store at all, just some text that is long enough to parse",
    )
    .unwrap();
    assert!(matches!(
        Device::load(&path, &key),
        Err(Error::StoreCorrupt { .. })
    ));
    let missing = dir.path().join("missing.store");
    assert!(matches!(
        Device::load(&missing, &key),
        Err(Error::Io { .. })
    ));

    // A header asking for absurd Argon2id memory is refused before deriving anything.
    let pass_path = dir.path().join("pass.store");
    alice
        .save(
            &pass_path,
            &StoreKey::from_passphrase("pw", TEST_KDF).unwrap(),
        )
        .unwrap();
    let mut header = std::fs::read(&pass_path).unwrap();
    header[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
    std::fs::write(&pass_path, &header).unwrap();
    assert!(matches!(
        StoreKey::unlock(&pass_path, "pw"),
        Err(Error::StoreCorrupt { .. })
    ));
    assert!(matches!(
        StoreKey::from_passphrase(
            "pw",
            KdfParams {
                memory_kib: 1,
                iterations: 1,
                parallelism: 1
            }
        ),
        Err(Error::InvalidKdfParams { .. })
    ));
}

#[test]
fn default_kdf_parameters_derive_a_working_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("d.store");
    let device = Device::new(missive_client::PeerDevice::new("u", "d"));
    let started = std::time::Instant::now();
    device
        .save(
            &path,
            &StoreKey::from_passphrase("pw", KdfParams::default()).unwrap(),
        )
        .unwrap();
    let key = StoreKey::unlock(&path, "pw").unwrap();
    assert_eq!(
        Device::load(&path, &key).unwrap().identity_key(),
        device.identity_key()
    );
    eprintln!(
        "two Argon2id derivations with the default cost: {:?}",
        started.elapsed()
    );
}
