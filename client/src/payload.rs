//! [`Payload`]: what a message's `content` carries end to end, for every device of a
//! conversation at once, and the [`Device::encrypt_for`] / [`Device::decrypt`] pair that
//! writes and reads it.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::{CONTENT_BYTES_MAX, Device, Envelope, Error, GroupMessage, PeerDevice};

/// The payload format version this crate writes and reads.
pub const PAYLOAD_VERSION: u32 = 1;

/// Ciphertexts keyed by recipient: `user_id` → `device_id` → Olm message.
pub type DeviceCiphertexts = BTreeMap<String, BTreeMap<String, Envelope>>;

/// Where a message is sent: the context a [`Payload`] is encrypted for and checked against.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Conversation {
    /// A 1:1 chat: every recipient device gets its own Olm ciphertext.
    Direct,
    /// A group chat (`group_id` is the server's `chat_id`): one Megolm ciphertext for all.
    Group {
        /// The group.
        group_id: String,
    },
}

impl Conversation {
    /// The group `group_id`.
    pub fn group(group_id: impl Into<String>) -> Self {
        Self::Group {
            group_id: group_id.into(),
        }
    }

    fn describe(&self) -> String {
        match self {
            Self::Direct => "a 1:1 chat".into(),
            Self::Group { group_id } => format!("group {group_id}"),
        }
    }
}

/// One end-to-end encrypted message as it travels in a message's `content` field (the server
/// relays it untouched). Its JSON, for a 1:1 message:
///
/// ```json
/// {"v": 1, "kind": "direct", "sender": {"user_id": "1", "device_id": "1"},
///  "olm": {"2": {"1": {"v": 1, "type": "prekey", "body": "<base64 Olm message>"}},
///          "1": {"2": {"v": 1, "type": "normal", "body": "..."}}}}
/// ```
///
/// `olm` maps each recipient device (`user_id` → `device_id`), the peer's devices and the
/// sender's own other devices, to its own Olm [`Envelope`]. For a group message:
///
/// ```json
/// {"v": 1, "kind": "group", "sender": {"user_id": "1", "device_id": "1"},
///  "group_id": "<chat id>", "session_id": "<megolm session id>",
///  "ciphertext": "<base64 Megolm message>",
///  "key_shares": {"2": {"1": {"v": 1, "type": "prekey", "body": "..."}}}}
/// ```
///
/// `ciphertext` is encrypted once for the whole group with the sender device's Megolm
/// session. `key_shares` is empty except on the first message of a new session (the first
/// in the group, or the first after the member devices changed: the re-key), when it holds
/// the session key Olm-encrypted to every member device.
///
/// `v` is checked before anything else: another version is refused with
/// [`Error::UnsupportedVersion`], never guessed at. `sender` must be the device the server
/// names as the sender ([`Error::SenderMismatch`] otherwise); `kind` and `group_id` must match
/// the chat the message arrived in ([`Error::ConversationMismatch`]).
///
/// The server learns who sent to which devices, when, and the sizes; not the text.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payload {
    /// Format version, [`PAYLOAD_VERSION`].
    pub v: u32,
    /// The sending device.
    pub sender: PeerDevice,
    /// The ciphertext.
    #[serde(flatten)]
    pub body: PayloadBody,
}

/// The ciphertext part of a [`Payload`], by conversation kind.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PayloadBody {
    /// A 1:1 message: one Olm message per recipient device.
    Direct {
        /// `user_id` → `device_id` → Olm message.
        olm: DeviceCiphertexts,
    },
    /// A group message: one Megolm message, and the key shares of a new session.
    Group {
        /// The group (the server's `chat_id`).
        group_id: String,
        /// The Megolm session that encrypted `ciphertext`.
        session_id: String,
        /// The Megolm message, base64.
        ciphertext: String,
        /// The session key, Olm-encrypted to each member device (`user_id` → `device_id`).
        #[serde(default)]
        key_shares: DeviceCiphertexts,
    },
}

#[derive(Deserialize)]
struct VersionOnly {
    v: Option<serde_json::Value>,
}

impl Payload {
    /// The JSON text for a message's `content` field.
    pub fn to_wire(&self) -> String {
        // Serializing strings, maps of strings and envelopes cannot fail.
        serde_json::to_string(self).expect("a Payload always serializes")
    }

    /// Parses a `content` field written by [`Payload::to_wire`].
    ///
    /// Text longer than [`CONTENT_BYTES_MAX`] is refused before parsing; a version other than
    /// [`PAYLOAD_VERSION`] gives [`Error::UnsupportedVersion`].
    pub fn from_wire(text: &str) -> Result<Self, Error> {
        let malformed = |reason: String| Error::Malformed {
            what: "payload",
            reason,
        };
        if text.len() > CONTENT_BYTES_MAX {
            return Err(malformed(format!(
                "{} bytes exceeds {CONTENT_BYTES_MAX}",
                text.len()
            )));
        }
        let version: VersionOnly =
            serde_json::from_str(text).map_err(|e| malformed(e.to_string()))?;
        match version.v {
            Some(serde_json::Value::Number(n)) if n.as_u64() == Some(PAYLOAD_VERSION.into()) => {}
            Some(serde_json::Value::Number(n)) => {
                return Err(Error::UnsupportedVersion {
                    what: "payload",
                    version: n.to_string(),
                    supported: PAYLOAD_VERSION,
                });
            }
            Some(other) => return Err(malformed(format!("version {other} is not a number"))),
            None => return Err(malformed("no version `v`".into())),
        }
        serde_json::from_str(text).map_err(|e| malformed(e.to_string()))
    }

    /// The conversation kind this payload was encrypted for.
    pub fn conversation(&self) -> Conversation {
        match &self.body {
            PayloadBody::Direct { .. } => Conversation::Direct,
            PayloadBody::Group { group_id, .. } => Conversation::group(group_id.clone()),
        }
    }

    /// The devices that can decrypt it: the recipients of a 1:1 message, the devices given
    /// the key of a group message's session by this message (empty when the session was
    /// shared earlier).
    pub fn recipients(&self) -> Vec<PeerDevice> {
        let map = match &self.body {
            PayloadBody::Direct { olm } => olm,
            PayloadBody::Group { key_shares, .. } => key_shares,
        };
        map.iter()
            .flat_map(|(user, devices)| {
                devices
                    .keys()
                    .map(move |device| PeerDevice::new(user.clone(), device.clone()))
            })
            .collect()
    }
}

fn insert(map: &mut DeviceCiphertexts, device: PeerDevice, envelope: Envelope) {
    map.entry(device.user_id)
        .or_default()
        .insert(device.device_id, envelope);
}

fn lookup<'a>(map: &'a DeviceCiphertexts, device: &PeerDevice) -> Option<&'a Envelope> {
    map.get(&device.user_id)?.get(&device.device_id)
}

impl Device {
    /// The devices among `devices` (this one excepted) with which there is no Olm session
    /// yet: fetch their bundles and [`Device::create_session`] before
    /// [`Device::encrypt_for`].
    pub fn missing_sessions(&self, devices: &[PeerDevice]) -> Vec<PeerDevice> {
        let unique: BTreeSet<&PeerDevice> = devices.iter().filter(|d| **d != self.me).collect();
        unique
            .into_iter()
            .filter(|d| !self.has_session(d))
            .cloned()
            .collect()
    }

    /// Encrypts `plaintext` for every device in `devices` (this device is skipped; list the
    /// sender's own other devices too, so that they see what it sent) in `conversation`.
    ///
    /// - [`Conversation::Direct`]: one Olm message per device.
    /// - [`Conversation::Group`]: one Megolm message; when the member devices differ from
    ///   those of this device's current session in the group (or the session is used up), a
    ///   new session is started and its key shared with every device in `devices` (the
    ///   re-key: a removed device is never given a key for later messages).
    ///
    /// Every device needs an Olm session first; otherwise nothing is encrypted and
    /// [`Error::MissingSessions`] lists those without (see [`Device::missing_sessions`]).
    /// A payload whose wire form exceeds [`CONTENT_BYTES_MAX`] gives
    /// [`Error::PayloadTooLarge`]. Save the device after encrypting: ratchets moved.
    pub fn encrypt_for(
        &mut self,
        conversation: &Conversation,
        devices: &[PeerDevice],
        plaintext: &[u8],
    ) -> Result<Payload, Error> {
        if devices.len() > crate::GROUP_MEMBER_DEVICES_MAX {
            return Err(Error::GroupTooLarge {
                members: devices.len(),
                members_max: crate::GROUP_MEMBER_DEVICES_MAX,
            });
        }
        let missing = self.missing_sessions(devices);
        if !missing.is_empty() {
            return Err(Error::MissingSessions { peers: missing });
        }
        let body = match conversation {
            Conversation::Direct => {
                let recipients: BTreeSet<&PeerDevice> =
                    devices.iter().filter(|d| **d != self.me).collect();
                let mut olm = DeviceCiphertexts::new();
                for device in recipients {
                    let envelope = self.encrypt_to(device, None, plaintext)?;
                    insert(&mut olm, device.clone(), envelope);
                }
                PayloadBody::Direct { olm }
            }
            Conversation::Group { group_id } => {
                let GroupMessage {
                    session_id,
                    ciphertext,
                    key_shares: shares,
                } = self.group_encrypt(group_id, devices, plaintext)?;
                let mut key_shares = DeviceCiphertexts::new();
                for (device, envelope) in shares {
                    insert(&mut key_shares, device, envelope);
                }
                PayloadBody::Group {
                    group_id: group_id.clone(),
                    session_id,
                    ciphertext,
                    key_shares,
                }
            }
        };
        let payload = Payload {
            v: PAYLOAD_VERSION,
            sender: self.me.clone(),
            body,
        };
        let bytes = payload.to_wire().len();
        if bytes > CONTENT_BYTES_MAX {
            return Err(Error::PayloadTooLarge {
                bytes,
                bytes_max: CONTENT_BYTES_MAX,
            });
        }
        Ok(payload)
    }

    /// Decrypts a payload that the server says `sender` sent in `conversation`.
    ///
    /// Refused before any decryption: a payload naming another sender
    /// ([`Error::SenderMismatch`]), or made for another conversation
    /// ([`Error::ConversationMismatch`]), or with no ciphertext for this device
    /// ([`Error::NotForThisDevice`]: it was sent before this device existed or was known to
    /// the sender). Then the Olm or Megolm errors: [`Error::Decrypt`] or
    /// [`Error::GroupDecrypt`] for a tampered ciphertext, [`Error::Replay`] for an Olm
    /// message already read, [`Error::UnknownGroupSession`] for a group message whose key
    /// this device was never given (it was removed before the re-key, or joined after).
    ///
    /// A message this device sent itself decrypts only in a group (it keeps its own
    /// session's key); a 1:1 message it sent is [`Error::NotForThisDevice`]: Olm encrypts to
    /// other devices only, so the sender keeps its own copy of the text.
    ///
    /// Save the device after decrypting: a new session or ratchet step must not be lost.
    pub fn decrypt(
        &mut self,
        conversation: &Conversation,
        sender: &PeerDevice,
        payload: &Payload,
    ) -> Result<Vec<u8>, Error> {
        if payload.v != PAYLOAD_VERSION {
            return Err(Error::UnsupportedVersion {
                what: "payload",
                version: payload.v.to_string(),
                supported: PAYLOAD_VERSION,
            });
        }
        if payload.sender != *sender {
            return Err(Error::SenderMismatch {
                claimed: payload.sender.clone(),
                sender: sender.clone(),
            });
        }
        let made_for = payload.conversation();
        if made_for != *conversation {
            return Err(Error::ConversationMismatch {
                expected: conversation.describe(),
                got: made_for.describe(),
            });
        }
        match &payload.body {
            PayloadBody::Direct { olm } => {
                let envelope = lookup(olm, &self.me).ok_or_else(|| Error::NotForThisDevice {
                    device: self.me.clone(),
                })?;
                self.decrypt_from(sender, envelope)
            }
            PayloadBody::Group {
                group_id,
                session_id,
                ciphertext,
                key_shares,
            } => {
                let shares = lookup(key_shares, &self.me)
                    .map(|envelope| vec![(self.me.clone(), envelope.clone())])
                    .unwrap_or_default();
                let message = GroupMessage {
                    session_id: session_id.clone(),
                    ciphertext: ciphertext.clone(),
                    key_shares: shares,
                };
                self.group_decrypt(group_id, sender, &message)
            }
        }
    }
}
