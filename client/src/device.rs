//! [`Device`]: one device's keys and sessions.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};
use vodozemac::megolm::{
    GroupSession, GroupSessionPickle, InboundGroupSession, InboundGroupSessionPickle,
};
use vodozemac::olm::{
    Account, AccountPickle, DecryptionError, OlmMessage, Session, SessionConfig, SessionPickle,
};
use vodozemac::{Curve25519PublicKey, PickleError};

use crate::group::OutboundGroup;
use crate::key_bundle::{decode_curve, signed_prekey_message};
use crate::{
    Envelope, Error, KeyUpload, ONE_TIME_KEYS_MAX, OneTimePrekey, PLAINTEXT_BYTES_MAX, PeerBundle,
    PeerDevice, SEEN_INBOUND_SESSIONS_MAX, SESSIONS_PER_PEER_MAX, SignedPrekey, StoreKey, store,
};

/// The first byte of every Olm plaintext says what follows, so that a message can never be
/// taken for a group key share or the other way round.
pub(crate) const PAYLOAD_MESSAGE: u8 = 1;
/// See [`PAYLOAD_MESSAGE`].
pub(crate) const PAYLOAD_GROUP_KEY: u8 = 2;

/// The version of the JSON state inside the store file.
const STATE_VERSION: u32 = 1;

/// One device's end-to-end encryption state: its Olm account (a Curve25519 identity key, an
/// Ed25519 signing key, one-time keys and a signed fallback prekey), its Olm sessions with
/// other devices, and its Megolm group sessions.
///
/// Nothing here touches the network: the caller uploads [`Device::key_bundle_upload`],
/// fetches [`PeerBundle`]s, and carries [`Envelope`]s and
/// [`GroupMessage`](crate::GroupMessage)s in messages' `content` field.
///
/// Peers' identity keys are pinned on first use: a later bundle or prekey message from the
/// same device with another identity key is refused ([`Error::IdentityChanged`]).
pub struct Device {
    pub(crate) me: PeerDevice,
    pub(crate) account: Account,
    /// The current signed prekey (the account's newest fallback key), kept because vodozemac
    /// only reports the fallback key until it is marked published.
    signed_prekey: SignedPrekey,
    /// Olm sessions per peer device, least recently used first; the last one encrypts.
    sessions: HashMap<PeerDevice, Vec<Session>>,
    /// The identity key pinned for each peer device.
    identities: HashMap<PeerDevice, Curve25519PublicKey>,
    /// Ids of sessions created from prekey messages, oldest first: a replayed prekey message
    /// made with the fallback key (which, unlike a one-time key, is not consumed) would
    /// otherwise create its session again and decrypt a second time.
    seen_inbound_sessions: VecDeque<String>,
    pub(crate) outbound_groups: HashMap<String, OutboundGroup>,
    /// Inbound Megolm sessions per (group, sender device), oldest first.
    pub(crate) inbound_groups: HashMap<(String, PeerDevice), Vec<InboundGroupSession>>,
}

impl fmt::Debug for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Device")
            .field("me", &self.me)
            .field("identity_key", &self.identity_key())
            .field("peers", &self.sessions.len())
            .field("outbound_groups", &self.outbound_groups.len())
            .field("inbound_groups", &self.inbound_groups.len())
            .finish_non_exhaustive()
    }
}

impl Device {
    /// A new device identity for `me` (the ids the server assigned at login), with fresh
    /// identity keys and a signed prekey, and no one-time keys yet (see
    /// [`Device::generate_one_time_keys`]).
    pub fn new(me: PeerDevice) -> Self {
        let mut account = Account::new();
        account.generate_fallback_key();
        let signed_prekey = sign_fallback_key(&account);
        Self {
            me,
            account,
            signed_prekey,
            sessions: HashMap::new(),
            identities: HashMap::new(),
            seen_inbound_sessions: VecDeque::new(),
            outbound_groups: HashMap::new(),
            inbound_groups: HashMap::new(),
        }
    }

    /// The device's own address.
    pub fn me(&self) -> &PeerDevice {
        &self.me
    }

    /// The Curve25519 identity key, base64.
    pub fn identity_key(&self) -> String {
        self.account.curve25519_key().to_base64()
    }

    /// The Ed25519 signing key, base64.
    pub fn signing_key(&self) -> String {
        self.account.ed25519_key().to_base64()
    }

    /// The body of `PUT /api/v1/keys`: identity and signing keys, the signed prekey and the
    /// one-time prekeys not yet [published](Device::mark_published), sorted by key id.
    pub fn key_bundle_upload(&self) -> KeyUpload {
        let mut one_time_prekeys: Vec<OneTimePrekey> = self
            .account
            .one_time_keys()
            .into_iter()
            .map(|(key_id, key)| OneTimePrekey {
                key_id: key_id.to_base64(),
                key: key.to_base64(),
            })
            .collect();
        one_time_prekeys.sort_by(|a, b| a.key_id.cmp(&b.key_id));
        KeyUpload {
            identity_key: self.identity_key(),
            signing_key: self.signing_key(),
            signed_prekey: self.signed_prekey.clone(),
            one_time_prekeys,
        }
    }

    /// Records that the server accepted the last [`Device::key_bundle_upload`]: its one-time
    /// prekeys are not offered again. Call it only after a successful upload.
    pub fn mark_published(&mut self) {
        self.account.mark_keys_as_published();
    }

    /// Generates up to `count` one-time keys for the next upload and returns how many were
    /// made: at most [`ONE_TIME_KEYS_MAX`] are ever waiting to be published.
    ///
    /// To top up, a client reads `GET /api/v1/keys/count` and asks for
    /// `ONE_TIME_KEYS_MAX - count`, then uploads and marks them published.
    pub fn generate_one_time_keys(&mut self, count: usize) -> usize {
        let unpublished = self.account.one_time_keys().len();
        let count = count.min(ONE_TIME_KEYS_MAX.saturating_sub(unpublished));
        if count > 0 {
            self.account.generate_one_time_keys(count);
        }
        count
    }

    /// Replaces the signed prekey with a fresh one (upload it next). The previous one still
    /// works for sessions peers start before they see the new one; the one before that is
    /// forgotten.
    pub fn rotate_signed_prekey(&mut self) {
        self.account.generate_fallback_key();
        self.signed_prekey = sign_fallback_key(&self.account);
    }

    /// Whether an Olm session with `peer` exists.
    pub fn has_session(&self, peer: &PeerDevice) -> bool {
        self.sessions.get(peer).is_some_and(|s| !s.is_empty())
    }

    /// The identity key pinned for `peer` (base64), if it was ever seen.
    pub fn peer_identity_key(&self, peer: &PeerDevice) -> Option<String> {
        self.identities
            .get(peer)
            .map(Curve25519PublicKey::to_base64)
    }

    /// Forgets `peer`'s sessions and pinned identity key, so that its next bundle or prekey
    /// message is trusted again. Do this only after the user checked the new key.
    pub fn forget_peer(&mut self, peer: &PeerDevice) {
        self.sessions.remove(peer);
        self.identities.remove(peer);
    }

    /// Creates an outbound Olm session from `bundle` (with its one-time prekey, or with its
    /// signed prekey when the server had none left) and makes it the one that encrypts to
    /// that device.
    ///
    /// The signed prekey's signature is checked first ([`Error::BadPrekeySignature`]), and
    /// the identity key against the pinned one ([`Error::IdentityChanged`]).
    pub fn create_session(&mut self, bundle: &PeerBundle) -> Result<(), Error> {
        let peer = bundle.peer();
        let verified = bundle.verify()?;
        self.check_identity(&peer, &verified.identity_key)?;
        let session = self
            .account
            .create_outbound_session(
                SessionConfig::version_1(),
                verified.identity_key,
                verified.prekey,
            )
            .map_err(|source| Error::SessionCreation {
                peer: peer.clone(),
                source,
            })?;
        self.identities.insert(peer.clone(), verified.identity_key);
        self.push_session(peer, session);
        Ok(())
    }

    /// Encrypts `plaintext` to one device of a peer.
    ///
    /// Uses the existing session with `peer` if there is one (`bundle` is then ignored),
    /// else creates it from `bundle` as [`Device::create_session`] does; with neither,
    /// [`Error::NoSession`].
    pub fn encrypt_to(
        &mut self,
        peer: &PeerDevice,
        bundle: Option<&PeerBundle>,
        plaintext: &[u8],
    ) -> Result<Envelope, Error> {
        if plaintext.len() > PLAINTEXT_BYTES_MAX {
            return Err(Error::PlaintextTooLarge {
                bytes: plaintext.len(),
                bytes_max: PLAINTEXT_BYTES_MAX,
            });
        }
        if !self.has_session(peer) {
            let bundle = bundle.ok_or_else(|| Error::NoSession { peer: peer.clone() })?;
            if bundle.peer() != *peer {
                return Err(Error::BundleMismatch {
                    expected: peer.clone(),
                    got: bundle.peer(),
                });
            }
            self.create_session(bundle)?;
        }
        let mut payload = Vec::with_capacity(1 + plaintext.len());
        payload.push(PAYLOAD_MESSAGE);
        payload.extend_from_slice(plaintext);
        self.olm_encrypt(peer, &payload)
    }

    /// Decrypts an [`Envelope`] from `peer` (the sender the server names), creating the
    /// inbound session from a prekey message on first contact.
    ///
    /// Replays are rejected with [`Error::Replay`]: a normal message's key is used up once
    /// it decrypted, and a prekey message whose session already exists (or existed) is
    /// decrypted in that session, where its key is used up as well. Clients should still drop
    /// duplicates by `message_id` first, since the server redelivers until acknowledged.
    ///
    /// If the envelope carries a group key share instead of a message, the share is imported
    /// and [`Error::KeyShareNotMessage`] returned.
    pub fn decrypt_from(
        &mut self,
        peer: &PeerDevice,
        envelope: &Envelope,
    ) -> Result<Vec<u8>, Error> {
        let mut payload = self.olm_decrypt(peer, envelope)?;
        match payload.first() {
            Some(&PAYLOAD_MESSAGE) => {
                payload.remove(0);
                Ok(payload)
            }
            Some(&PAYLOAD_GROUP_KEY) => {
                self.import_group_key(peer, &payload[1..])?;
                Err(Error::KeyShareNotMessage { peer: peer.clone() })
            }
            _ => Err(Error::Malformed {
                what: "Olm payload",
                reason: "unknown payload type".into(),
            }),
        }
    }

    pub(crate) fn olm_encrypt(
        &mut self,
        peer: &PeerDevice,
        payload: &[u8],
    ) -> Result<Envelope, Error> {
        let session = self
            .sessions
            .get_mut(peer)
            .and_then(|s| s.last_mut())
            .ok_or_else(|| Error::NoSession { peer: peer.clone() })?;
        let message = session.encrypt(payload).map_err(|source| Error::Encrypt {
            peer: peer.clone(),
            source,
        })?;
        Ok(Envelope::from_olm(&message))
    }

    /// Decrypts an Olm message and returns the payload (type byte and body).
    pub(crate) fn olm_decrypt(
        &mut self,
        peer: &PeerDevice,
        envelope: &Envelope,
    ) -> Result<Vec<u8>, Error> {
        let message = envelope.to_olm()?;
        let prekey = match &message {
            OlmMessage::Normal(_) => return self.decrypt_in_sessions(peer, &message, None),
            OlmMessage::PreKey(prekey) => prekey,
        };
        let session_id = prekey.session_id();
        let known = self
            .sessions
            .get(peer)
            .is_some_and(|sessions| sessions.iter().any(|s| s.session_id() == session_id));
        if known {
            return self.decrypt_in_sessions(peer, &message, Some(&session_id));
        }
        if self.seen_inbound_sessions.contains(&session_id) {
            return Err(Error::Replay { peer: peer.clone() });
        }
        self.check_identity(peer, &prekey.identity_key())?;
        let created = self
            .account
            .create_inbound_session(SessionConfig::version_1(), prekey.identity_key(), prekey)
            .map_err(|source| Error::SessionCreation {
                peer: peer.clone(),
                source,
            })?;
        self.identities.insert(peer.clone(), prekey.identity_key());
        if self.seen_inbound_sessions.len() == SEEN_INBOUND_SESSIONS_MAX {
            self.seen_inbound_sessions.pop_front();
        }
        self.seen_inbound_sessions.push_back(session_id);
        self.push_session(peer.clone(), created.session);
        Ok(created.plaintext)
    }

    /// Tries the sessions with `peer`, most recently used first (or only the one with
    /// `session_id`), and makes the one that decrypts the most recently used.
    fn decrypt_in_sessions(
        &mut self,
        peer: &PeerDevice,
        message: &OlmMessage,
        session_id: Option<&str>,
    ) -> Result<Vec<u8>, Error> {
        let sessions = self
            .sessions
            .get_mut(peer)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| Error::NoSession { peer: peer.clone() })?;
        let mut replayed = false;
        let mut last_error = None;
        for index in (0..sessions.len()).rev() {
            if session_id.is_some_and(|id| sessions[index].session_id() != id) {
                continue;
            }
            // A failed decryption leaves the session unchanged (vodozemac commits ratchet
            // state only on success), so trying every session is safe.
            match sessions[index].decrypt(message) {
                Ok(payload) => {
                    let session = sessions.remove(index);
                    sessions.push(session);
                    return Ok(payload);
                }
                Err(DecryptionError::MissingMessageKey(_)) => replayed = true,
                Err(e) => last_error = Some(e),
            }
        }
        if replayed {
            return Err(Error::Replay { peer: peer.clone() });
        }
        Err(Error::Decrypt {
            peer: peer.clone(),
            reason: last_error.map_or_else(|| "no matching session".into(), |e| e.to_string()),
        })
    }

    fn check_identity(&self, peer: &PeerDevice, key: &Curve25519PublicKey) -> Result<(), Error> {
        match self.identities.get(peer) {
            Some(pinned) if pinned != key => Err(Error::IdentityChanged { peer: peer.clone() }),
            _ => Ok(()),
        }
    }

    fn push_session(&mut self, peer: PeerDevice, session: Session) {
        let sessions = self.sessions.entry(peer).or_default();
        if sessions.len() == SESSIONS_PER_PEER_MAX {
            sessions.remove(0);
        }
        sessions.push(session);
        assert!(sessions.len() <= SESSIONS_PER_PEER_MAX);
    }

    /// Writes the whole device state to `path`, encrypted with `key`, atomically: a crash
    /// leaves the previous file or the new one. See the [crate docs](crate#persistence).
    ///
    /// The state holds the account, the Olm sessions and pinned identity keys, the Megolm
    /// sessions and, for each outbound group session, the member devices it was shared with.
    pub fn save(&self, path: &Path, key: &StoreKey) -> Result<(), Error> {
        let pickle_key = store::pickle_key(key);
        let state = StoredDevice {
            version: STATE_VERSION,
            me: self.me.clone(),
            account: self.account.pickle().encrypt(&pickle_key),
            signed_prekey: self.signed_prekey.clone(),
            sessions: self
                .sessions
                .iter()
                .map(|(peer, sessions)| StoredSessions {
                    peer: peer.clone(),
                    sessions: sessions
                        .iter()
                        .map(|s| s.pickle().encrypt(&pickle_key))
                        .collect(),
                })
                .collect(),
            identities: self
                .identities
                .iter()
                .map(|(peer, key)| StoredIdentity {
                    peer: peer.clone(),
                    key: key.to_base64(),
                })
                .collect(),
            seen_inbound_sessions: self.seen_inbound_sessions.iter().cloned().collect(),
            outbound_groups: self
                .outbound_groups
                .iter()
                .map(|(group_id, group)| StoredOutboundGroup {
                    group_id: group_id.clone(),
                    session: group.session.pickle().encrypt(&pickle_key),
                    members: group.members.iter().cloned().collect(),
                })
                .collect(),
            inbound_groups: self
                .inbound_groups
                .iter()
                .map(|((group_id, sender), sessions)| StoredInboundGroup {
                    group_id: group_id.clone(),
                    sender: sender.clone(),
                    sessions: sessions
                        .iter()
                        .map(|s| s.pickle().encrypt(&pickle_key))
                        .collect(),
                })
                .collect(),
        };
        // Serializing strings and vectors of strings cannot fail.
        let json = zeroize::Zeroizing::new(
            serde_json::to_vec(&state).expect("the stored state always serializes"),
        );
        store::write(path, key, &json)
    }

    /// Reads a device saved by [`Device::save`].
    ///
    /// A wrong key (or a modified file) gives [`Error::WrongKey`]; a file that is not a store
    /// gives [`Error::StoreCorrupt`].
    pub fn load(path: &Path, key: &StoreKey) -> Result<Self, Error> {
        let json = zeroize::Zeroizing::new(store::read(path, key)?);
        let corrupt = |reason: String| Error::StoreCorrupt {
            path: path.to_path_buf(),
            reason,
        };
        let state: StoredDevice =
            serde_json::from_slice(&json).map_err(|e| corrupt(e.to_string()))?;
        if state.version != STATE_VERSION {
            return Err(corrupt(format!(
                "state version {} (expected {STATE_VERSION})",
                state.version
            )));
        }
        let pickle_key = store::pickle_key(key);
        let unpickle = |e: PickleError| corrupt(format!("pickle: {e}"));

        let account = Account::from_pickle(
            AccountPickle::from_encrypted(&state.account, &pickle_key).map_err(unpickle)?,
        );
        let mut sessions = HashMap::new();
        for stored in state.sessions {
            if stored.sessions.len() > SESSIONS_PER_PEER_MAX {
                return Err(corrupt(format!(
                    "{} sessions with {}",
                    stored.sessions.len(),
                    stored.peer
                )));
            }
            let list = stored
                .sessions
                .iter()
                .map(|p| SessionPickle::from_encrypted(p, &pickle_key).map(Session::from_pickle))
                .collect::<Result<Vec<_>, _>>()
                .map_err(unpickle)?;
            sessions.insert(stored.peer, list);
        }
        let mut identities = HashMap::new();
        for stored in state.identities {
            let key = decode_curve(&stored.key, "pinned identity key")
                .map_err(|e| corrupt(e.to_string()))?;
            identities.insert(stored.peer, key);
        }
        let mut outbound_groups = HashMap::new();
        for stored in state.outbound_groups {
            let session = GroupSession::from_pickle(
                GroupSessionPickle::from_encrypted(&stored.session, &pickle_key)
                    .map_err(unpickle)?,
            );
            let members: BTreeSet<PeerDevice> = stored.members.into_iter().collect();
            outbound_groups.insert(stored.group_id, OutboundGroup { session, members });
        }
        let mut inbound_groups = HashMap::new();
        for stored in state.inbound_groups {
            let list = stored
                .sessions
                .iter()
                .map(|p| {
                    InboundGroupSessionPickle::from_encrypted(p, &pickle_key)
                        .map(InboundGroupSession::from_pickle)
                })
                .collect::<Result<Vec<_>, _>>()
                .map_err(unpickle)?;
            inbound_groups.insert((stored.group_id, stored.sender), list);
        }
        let mut seen_inbound_sessions: VecDeque<String> =
            state.seen_inbound_sessions.into_iter().collect();
        while seen_inbound_sessions.len() > SEEN_INBOUND_SESSIONS_MAX {
            seen_inbound_sessions.pop_front();
        }
        // The signed prekey must be one this account can sign: a store whose parts were
        // mixed up would otherwise publish a prekey peers cannot verify.
        let identity = account.curve25519_key();
        let prekey = decode_curve(&state.signed_prekey.key, "signed prekey")
            .map_err(|e| corrupt(e.to_string()))?;
        let expected = account
            .sign(signed_prekey_message(&identity, &prekey))
            .to_base64();
        if expected != state.signed_prekey.signature {
            return Err(corrupt(
                "the signed prekey is not signed by this account".into(),
            ));
        }
        Ok(Self {
            me: state.me,
            account,
            signed_prekey: state.signed_prekey,
            sessions,
            identities,
            seen_inbound_sessions,
            outbound_groups,
            inbound_groups,
        })
    }
}

/// Signs the account's newest (unpublished) fallback key.
///
/// # Panics
/// If the account has no unpublished fallback key: callers generate one just before.
fn sign_fallback_key(account: &Account) -> SignedPrekey {
    let (key_id, key) = account
        .fallback_key()
        .into_iter()
        .next()
        .expect("a fallback key was generated just before and is unpublished");
    let signature = account.sign(signed_prekey_message(&account.curve25519_key(), &key));
    SignedPrekey {
        key_id: key_id.to_base64(),
        key: key.to_base64(),
        signature: signature.to_base64(),
    }
}

/// The JSON inside the store file. Secrets are vodozemac pickles, each encrypted with the
/// pickle subkey, inside the file's own encryption.
#[derive(Serialize, Deserialize)]
struct StoredDevice {
    version: u32,
    me: PeerDevice,
    account: String,
    signed_prekey: SignedPrekey,
    sessions: Vec<StoredSessions>,
    identities: Vec<StoredIdentity>,
    seen_inbound_sessions: Vec<String>,
    outbound_groups: Vec<StoredOutboundGroup>,
    inbound_groups: Vec<StoredInboundGroup>,
}

#[derive(Serialize, Deserialize)]
struct StoredSessions {
    peer: PeerDevice,
    /// Least recently used first.
    sessions: Vec<String>,
}

#[derive(Serialize, Deserialize)]
struct StoredIdentity {
    peer: PeerDevice,
    key: String,
}

#[derive(Serialize, Deserialize)]
struct StoredOutboundGroup {
    group_id: String,
    session: String,
    /// The member devices the session key was shared with.
    members: Vec<PeerDevice>,
}

#[derive(Serialize, Deserialize)]
struct StoredInboundGroup {
    group_id: String,
    sender: PeerDevice,
    sessions: Vec<String>,
}
