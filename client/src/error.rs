//! The crate's one error type.
//!
//! A failed decryption leaves the sessions as they were (vodozemac commits ratchet state only
//! on success), except where a variant says otherwise: [`Error::KeyShareNotMessage`],
//! [`Error::MessageNotKeyShare`] and [`Error::KeyShareMismatch`] report an Olm message that
//! did decrypt, so its message key is used up.

use std::path::PathBuf;

use crate::PeerDevice;

/// Everything the client library can refuse or fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// There is no Olm session with this device and no bundle was given to create one.
    #[error("no Olm session with {peer}: fetch its key bundle and create one")]
    NoSession {
        /// The device.
        peer: PeerDevice,
    },
    /// A group key could not be shared: these member devices have no Olm session yet. Fetch
    /// their bundles, call [`Device::create_session`](crate::Device::create_session) for each
    /// and retry.
    #[error("no Olm session with {} group member device(s): {peers:?}", peers.len())]
    MissingSessions {
        /// The member devices without a session.
        peers: Vec<PeerDevice>,
    },
    /// The signed prekey in a bundle does not carry a valid signature by the bundle's signing
    /// key: the bundle was tampered with (or corrupted) and is not used.
    #[error("the signed prekey of {peer} has a bad signature")]
    BadPrekeySignature {
        /// The device the bundle claims to be for.
        peer: PeerDevice,
    },
    /// A bundle was given for another device than the one addressed.
    #[error("bundle is for {got}, not {expected}")]
    BundleMismatch {
        /// The device addressed.
        expected: PeerDevice,
        /// The device the bundle names.
        got: PeerDevice,
    },
    /// The device's identity key differs from the one first seen for it (trust on first use).
    /// Either the device was reinstalled or someone (the server included) is impersonating it.
    /// After checking out of band, [`Device::forget_peer`](crate::Device::forget_peer) accepts
    /// the new key.
    #[error("the identity key of {peer} changed")]
    IdentityChanged {
        /// The device.
        peer: PeerDevice,
    },
    /// A key in a bundle, an upload or a key share is not valid base64 or not a valid point.
    #[error("invalid {field}: {source}")]
    InvalidKey {
        /// Which key.
        field: &'static str,
        /// Why.
        #[source]
        source: vodozemac::KeyError,
    },
    /// Bytes from the network do not decode (bad JSON, base64, version or message encoding).
    #[error("malformed {what}: {reason}")]
    Malformed {
        /// What was being decoded.
        what: &'static str,
        /// Why it failed.
        reason: String,
    },
    /// The Olm message was already decrypted once: its message key is used up (or, for a
    /// prekey message, its session was already created). Replays are rejected, never
    /// delivered twice.
    #[error("replayed Olm message from {peer}")]
    Replay {
        /// The claimed sender.
        peer: PeerDevice,
    },
    /// No Olm session with the sender could authenticate the message: it was tampered with,
    /// or it belongs to a session this device no longer has.
    #[error("cannot decrypt Olm message from {peer}: {reason}")]
    Decrypt {
        /// The claimed sender.
        peer: PeerDevice,
        /// The last session's failure.
        reason: String,
    },
    /// An Olm session could not be created (unknown one-time key, bad key exchange, or the
    /// prekey message did not authenticate).
    #[error("cannot create an Olm session with {peer}: {source}")]
    SessionCreation {
        /// The device.
        peer: PeerDevice,
        /// Why.
        #[source]
        source: vodozemac::olm::SessionCreationError,
    },
    /// Olm refused to encrypt (a non-contributory key exchange).
    #[error("cannot encrypt to {peer}: {source}")]
    Encrypt {
        /// The device.
        peer: PeerDevice,
        /// Why.
        #[source]
        source: vodozemac::olm::EncryptionError,
    },
    /// This device holds no Megolm session with this id from this sender in this group: the
    /// message was sent before this device joined, after it was removed, or its key share
    /// never arrived.
    #[error("no group session {session_id} from {sender} in group {group_id}")]
    UnknownGroupSession {
        /// The group.
        group_id: String,
        /// The sender device.
        sender: PeerDevice,
        /// The Megolm session id the message names.
        session_id: String,
    },
    /// A Megolm message did not verify or decrypt (bad signature or MAC, unknown index).
    #[error("cannot decrypt group message from {sender} in group {group_id}: {source}")]
    GroupDecrypt {
        /// The group.
        group_id: String,
        /// The sender device.
        sender: PeerDevice,
        /// Why.
        #[source]
        source: vodozemac::megolm::DecryptionError,
    },
    /// A key share names another group than the message that carried it. The share was
    /// imported for the group it names (it can only ever open the sender's own messages
    /// there).
    #[error("key share from {sender} is for group {share_group_id}, not {group_id}")]
    KeyShareMismatch {
        /// The group the caller decrypts for.
        group_id: String,
        /// The group the share names.
        share_group_id: String,
        /// The sender device.
        sender: PeerDevice,
    },
    /// [`Device::decrypt_from`](crate::Device::decrypt_from) was given a group key share. The
    /// share was imported (state changed); there is no message text to return.
    #[error("the Olm message from {peer} carried a group key share, not a message")]
    KeyShareNotMessage {
        /// The sender device.
        peer: PeerDevice,
    },
    /// [`Device::import_key_share`](crate::Device::import_key_share) was given an ordinary
    /// message. Its plaintext is dropped (the message key is used up).
    #[error("the Olm message from {peer} carried a message, not a group key share")]
    MessageNotKeyShare {
        /// The sender device.
        peer: PeerDevice,
    },
    /// A [`Payload`](crate::Payload) (or another versioned format) of a version this build
    /// does not read. Nothing was decrypted.
    #[error("unsupported {what} version {version} (this build reads {supported})")]
    UnsupportedVersion {
        /// What was being decoded.
        what: &'static str,
        /// The version found, as written.
        version: String,
        /// The version this build reads.
        supported: u32,
    },
    /// The payload has no ciphertext for this device: it was sent before this device existed,
    /// or the sender did not know it yet, or it is a 1:1 message this device sent itself.
    #[error("the message was not encrypted for this device ({device})")]
    NotForThisDevice {
        /// This device.
        device: PeerDevice,
    },
    /// The payload names another sender than the device the server says sent it.
    #[error("the payload claims to be from {claimed}, but {sender} sent it")]
    SenderMismatch {
        /// The sender written in the payload.
        claimed: PeerDevice,
        /// The sender the server names.
        sender: PeerDevice,
    },
    /// The payload was made for another conversation than the one it arrived in (a group
    /// message in a 1:1 chat, or in another group).
    #[error("the payload was encrypted for {got}, not {expected}")]
    ConversationMismatch {
        /// The conversation it arrived in.
        expected: String,
        /// The conversation it was made for.
        got: String,
    },
    /// The encrypted payload would exceed the server's content limit
    /// ([`CONTENT_BYTES_MAX`](crate::CONTENT_BYTES_MAX)): too many recipient devices or too
    /// long a text.
    #[error("encrypted payload of {bytes} bytes exceeds {bytes_max}")]
    PayloadTooLarge {
        /// Its size.
        bytes: usize,
        /// The limit.
        bytes_max: usize,
    },
    /// The plaintext is larger than [`PLAINTEXT_BYTES_MAX`](crate::PLAINTEXT_BYTES_MAX).
    #[error("plaintext of {bytes} bytes exceeds {bytes_max}")]
    PlaintextTooLarge {
        /// Its size.
        bytes: usize,
        /// The limit.
        bytes_max: usize,
    },
    /// The member list is longer than
    /// [`GROUP_MEMBER_DEVICES_MAX`](crate::GROUP_MEMBER_DEVICES_MAX).
    #[error("group of {members} member devices exceeds {members_max}")]
    GroupTooLarge {
        /// Member devices given.
        members: usize,
        /// The limit.
        members_max: usize,
    },
    /// Key-derivation parameters outside the accepted bounds (see
    /// [`KdfParams`](crate::KdfParams)).
    #[error("invalid key-derivation parameters: {reason}")]
    InvalidKdfParams {
        /// Which bound was crossed.
        reason: String,
    },
    /// The store file could not be decrypted: the key (or passphrase) is wrong, or the file
    /// was modified. The two are indistinguishable by design (authenticated encryption).
    #[error("cannot decrypt store {path}: wrong key or modified file")]
    WrongKey {
        /// The store file.
        path: PathBuf,
    },
    /// The file is not a Missive client store, or is truncated, or its decrypted contents do
    /// not decode.
    #[error("store {path} is corrupt: {reason}")]
    StoreCorrupt {
        /// The store file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Reading or writing the store failed. A failed save leaves the previous file in place.
    #[error("store {path}: {source}")]
    Io {
        /// The store file (or its temporary sibling).
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The operating system's random number generator failed.
    #[error("random number generator failed: {reason}")]
    Random {
        /// The error reported.
        reason: String,
    },
}
