//! `missive-client`: the client side of Missive's end-to-end encryption.
//!
//! The server never sees plaintext. A message's `content` on the wire is an opaque string; this
//! crate fills it with ciphertext and reads it back. It does the cryptography with
//! [vodozemac](https://docs.rs/vodozemac), the audited Rust implementation of Olm and Megolm:
//!
//! - **1:1** — Olm: an X3DH-style handshake from the peer's published key bundle, then a double
//!   ratchet, so every message has its own key and a stolen key opens neither earlier nor
//!   (after the next reply) later messages. [`Device::encrypt_to`] produces an [`Envelope`];
//!   [`Device::decrypt_from`] opens one, creating the session from the first (prekey) message.
//! - **Groups** — Megolm, WhatsApp's "sender keys": each sending device encrypts once for the
//!   whole group with its own ratcheting session and shares that session's key with every
//!   member device over Olm. A changed member set starts a new session
//!   ([`Device::group_encrypt`], [`Device::group_decrypt`], [`GroupMessage`]).
//! - **Keys** — [`Device`] owns an Olm account: a Curve25519 identity key, an Ed25519 signing
//!   key, one-time prekeys, and a fallback key signed by the signing key (the *signed
//!   prekey*, used when the server has no one-time prekey left). [`KeyUpload`] and
//!   [`PeerBundle`] are the JSON shapes of `PUT /api/v1/keys` and `GET /api/v1/keys/{user_id}`.
//! - **Persistence** — [`Device::save`] / [`Device::load`] keep everything in one file
//!   encrypted with a [`StoreKey`] (raw, or derived from a passphrase with Argon2id).
//!
//! - **Messages** — [`Device::encrypt_for`] turns a text into a [`Payload`] for every device
//!   of a [`Conversation`] (the peer's devices and the sender's own other devices), and
//!   [`Device::decrypt`] opens one; see [the payload format](#the-payload-a-messages-content).
//!   The lower-level calls above remain for callers that move single Olm messages.
//!
//! There is no networking here: the caller (the CLI, a test) moves bundles and ciphertext.
//! Time is not read either.
//!
//! # The payload: a message's `content`
//!
//! The server's message `content` is an opaque string; [`Payload::to_wire`] fills it with
//! JSON, versioned by `v` ([`PAYLOAD_VERSION`], now 1). No server change is needed: it stores
//! and fans out the same bytes to every member device, and each device picks its part.
//!
//! ```json
//! {"v": 1, "kind": "direct", "sender": {"user_id": "1", "device_id": "1"},
//!  "olm": {"<user_id>": {"<device_id>": {"v": 1, "type": "prekey" | "normal", "body": "<base64>"}}}}
//!
//! {"v": 1, "kind": "group", "sender": {"user_id": "1", "device_id": "1"},
//!  "group_id": "<chat_id>", "session_id": "<megolm session id>", "ciphertext": "<base64>",
//!  "key_shares": {"<user_id>": {"<device_id>": {"v": 1, "type": "...", "body": "..."}}}}
//! ```
//!
//! - **1:1** (`direct`): one Olm message per recipient device, keyed by user then device.
//!   The sending device itself has no entry (Olm encrypts to other devices); its own other
//!   devices do.
//! - **Group**: one Megolm message for everyone. `key_shares` is filled only when the sender
//!   starts a new Megolm session: its first message in the group, after the set of member
//!   devices changed (a member added or removed, a device added: the **re-key**), or after
//!   [`GROUP_SESSION_MESSAGES_MAX`] messages. Each share is the session key Olm-encrypted to
//!   one member device. A removed member never gets the new key, so it cannot read later
//!   messages even from a copy of the stored payload ([`Error::UnknownGroupSession`]).
//!
//! Receiving checks, in order, each with its own [`Error`] and before any key is touched:
//! the version ([`Error::UnsupportedVersion`]), the sender against the one the server names
//! ([`Error::SenderMismatch`]), the kind and group against the chat it arrived in
//! ([`Error::ConversationMismatch`]), an entry for this device
//! ([`Error::NotForThisDevice`]). Then Olm and Megolm authenticate the ciphertext: a
//! tampered one gives [`Error::Decrypt`] or [`Error::GroupDecrypt`], an Olm message read
//! before [`Error::Replay`].
//!
//! What the server sees: the sender and recipient devices, sizes and times, and for groups
//! when a re-key happens. Not the text, and no key that opens it.
//!
//! The whole payload must fit [`CONTENT_BYTES_MAX`] ([`Error::PayloadTooLarge`] otherwise).
//! A key share costs about 0.8 KiB per member device, so a re-key in one message reaches
//! about 75 devices; past that, send the shares apart ([`Device::import_key_share`]).
//!
//! ```
//! use missive_client::{Conversation, Device, Payload, PeerBundle, PeerDevice};
//!
//! let mut alice = Device::new(PeerDevice::new("1", "1"));
//! let mut bob = Device::new(PeerDevice::new("2", "1"));
//! bob.generate_one_time_keys(1);
//! let upload = bob.key_bundle_upload();
//! bob.mark_published();
//! alice.create_session(&PeerBundle {
//!     user_id: "2".into(),
//!     device_id: "1".into(),
//!     identity_key: upload.identity_key,
//!     signing_key: upload.signing_key,
//!     signed_prekey: upload.signed_prekey,
//!     one_time_prekey: upload.one_time_prekeys.into_iter().next(),
//! })?;
//!
//! let devices = [bob.me().clone()];
//! let content = alice
//!     .encrypt_for(&Conversation::Direct, &devices, b"hi Bob")?
//!     .to_wire();
//! // The server stores and relays `content`; it names Alice's device as the sender.
//! let payload = Payload::from_wire(&content)?;
//! let text = bob.decrypt(&Conversation::Direct, alice.me(), &payload)?;
//! assert_eq!(text, b"hi Bob");
//! # Ok::<(), missive_client::Error>(())
//! ```
//!
//! # Example
//!
//! Alice sends Bob a message through a key server and a message relay the caller provides
//! (here, plain variables):
//!
//! ```
//! use missive_client::{Device, Envelope, PeerBundle, PeerDevice};
//!
//! let alice_id = PeerDevice::new("1", "1");
//! let bob_id = PeerDevice::new("2", "1");
//! let mut alice = Device::new(alice_id.clone());
//! let mut bob = Device::new(bob_id.clone());
//!
//! // Bob publishes keys (PUT /api/v1/keys) ...
//! bob.generate_one_time_keys(10);
//! let upload = bob.key_bundle_upload();
//! bob.mark_published();
//!
//! // ... and the server hands Alice a bundle with one of his one-time prekeys.
//! let bundle = PeerBundle {
//!     user_id: bob_id.user_id.clone(),
//!     device_id: bob_id.device_id.clone(),
//!     identity_key: upload.identity_key,
//!     signing_key: upload.signing_key,
//!     signed_prekey: upload.signed_prekey,
//!     one_time_prekey: upload.one_time_prekeys.into_iter().next(),
//! };
//!
//! let content = alice.encrypt_to(&bob_id, Some(&bundle), b"hi Bob")?.to_wire();
//! // `content` goes through the server; Bob decrypts it.
//! let received = bob.decrypt_from(&alice_id, &Envelope::from_wire(&content)?)?;
//! assert_eq!(received, b"hi Bob");
//!
//! // Bob answers in the same session; no bundle is needed any more.
//! let reply = bob.encrypt_to(&alice_id, None, b"hi Alice")?;
//! assert_eq!(alice.decrypt_from(&bob_id, &reply)?, b"hi Alice");
//! # Ok::<(), missive_client::Error>(())
//! ```
//!
//! # Trust
//!
//! A bundle's signed prekey must carry a valid signature by the bundle's signing key, or it is
//! refused ([`Error::BadPrekeySignature`]). A peer device's identity key is pinned the first
//! time it is seen; a different one later is refused ([`Error::IdentityChanged`]). What this
//! cannot stop is a server that lies on first contact (hands out its own keys for a device
//! never seen before): users compare identity keys out of band for that, as in every
//! Signal-style messenger.
//!
//! # Replays
//!
//! A replayed Olm message is **rejected** with [`Error::Replay`]: a normal message's key is
//! gone once used; a prekey message is decrypted in the session it created, where its key is
//! gone too, and the ids of the last [`SEEN_INBOUND_SESSIONS_MAX`] inbound sessions are kept so
//! that a prekey message made with the (not consumed) signed prekey cannot recreate its
//! session. A replayed group message is **harmless** but not refused: it decrypts to the same
//! plaintext, from the same sender; clients drop duplicates by the server's `message_id`.
//!
//! # Persistence
//!
//! The store file is a 64-byte header (magic, format, KDF parameters and salt, nonce) and one
//! XChaCha20-Poly1305 ciphertext of the state, authenticated together with the header. The
//! state's secrets are vodozemac pickles, each encrypted again with vodozemac's pickle cipher
//! under a second subkey. Saves are atomic: a temporary file is written, fsynced, renamed over
//! the store, and the directory fsynced.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod device;
mod envelope;
mod error;
mod group;
mod group_message;
mod key_bundle;
mod payload;
mod peer_device;
mod store;
mod store_key;

pub use device::Device;
pub use envelope::{Envelope, EnvelopeKind};
pub use error::Error;
pub use group_message::GroupMessage;
pub use key_bundle::{KeyBundles, KeyUpload, OneTimePrekey, PeerBundle, SignedPrekey};
pub use payload::{Conversation, DeviceCiphertexts, PAYLOAD_VERSION, Payload, PayloadBody};
pub use peer_device::PeerDevice;
pub use store_key::{
    KDF_ITERATIONS_MAX, KDF_MEMORY_KIB_MAX, KDF_PARALLELISM_MAX, KdfParams, StoreKey,
};

/// The server's limit on a message's `content` (PROTOCOL.md: 64 KiB).
pub const CONTENT_BYTES_MAX: usize = 64 * 1024;
/// The largest plaintext [`Device::encrypt_to`] and [`Device::group_encrypt`] accept, so that
/// its base64 ciphertext with the envelope fits in [`CONTENT_BYTES_MAX`].
pub const PLAINTEXT_BYTES_MAX: usize = 32 * 1024;
/// Room for everything around the ciphertext in an envelope or a group message without key
/// shares: Olm/Megolm headers, MAC, signature, padding, JSON.
const ENVELOPE_OVERHEAD_BYTES_MAX: usize = 1024;
const _: () =
    assert!((PLAINTEXT_BYTES_MAX + 16) * 4 / 3 + ENVELOPE_OVERHEAD_BYTES_MAX <= CONTENT_BYTES_MAX);
/// The largest [`GroupMessage`] wire text [`GroupMessage::from_wire`] parses (key shares for
/// a large group exceed [`CONTENT_BYTES_MAX`]; see [`GroupMessage`]).
pub const GROUP_MESSAGE_BYTES_MAX: usize = 1024 * 1024;
const _: () = assert!(CONTENT_BYTES_MAX <= GROUP_MESSAGE_BYTES_MAX);
/// The most member devices a group message is shared with (256 members, 4 devices each).
pub const GROUP_MEMBER_DEVICES_MAX: usize = 1024;
/// An outbound Megolm session is replaced after this many messages even if the members stay.
pub const GROUP_SESSION_MESSAGES_MAX: u32 = 1000;
/// Inbound Megolm sessions kept per (group, sender device); the oldest go first.
pub const GROUP_SESSIONS_PER_SENDER_MAX: usize = 32;
/// One-time keys waiting to be published at most (vodozemac's recommended server pool size).
pub const ONE_TIME_KEYS_MAX: usize = 50;
/// Olm sessions kept per peer device; the least recently used go first.
pub const SESSIONS_PER_PEER_MAX: usize = 4;
/// Ids of inbound Olm sessions remembered to refuse replayed prekey messages.
pub const SEEN_INBOUND_SESSIONS_MAX: usize = 4096;
/// The largest store file [`Device::load`] reads.
pub const STORE_BYTES_MAX: usize = 256 * 1024 * 1024;
