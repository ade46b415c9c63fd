//! [`GroupMessage`]: one Megolm message, with the key shares of a freshly started session.

use serde::{Deserialize, Serialize};

use crate::{Envelope, Error, GROUP_MESSAGE_BYTES_MAX, PeerDevice};

/// One group message on the wire:
///
/// ```json
/// {"session_id": "<megolm session id>", "ciphertext": "<base64 Megolm message>",
///  "key_shares": [[{"user_id": "43", "device_id": "1"}, {"v": 1, "type": "prekey", "body": "..."}]]}
/// ```
///
/// `key_shares` is empty except on the first message of a new Megolm session (the first
/// message in the group, or the first after the member set changed): then it holds the
/// session's key Olm-encrypted to every member device but the sender. The server fans the
/// same `content` out to every member; each device imports the share addressed to it.
///
/// For a large group the shares can exceed the server's content limit; a sender may then
/// send each share as its own 1:1 message and clear `key_shares` here; the receiver imports
/// it with [`Device::import_key_share`](crate::Device::import_key_share) first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupMessage {
    /// The Megolm session that encrypted `ciphertext`.
    pub session_id: String,
    /// The Megolm message (signed by the session's Ed25519 key), base64.
    pub ciphertext: String,
    /// The session key, Olm-encrypted to each member device.
    #[serde(default)]
    pub key_shares: Vec<(PeerDevice, Envelope)>,
}

impl GroupMessage {
    /// The JSON text for a message's `content` field.
    pub fn to_wire(&self) -> String {
        // Serializing strings, string pairs and envelopes cannot fail.
        serde_json::to_string(self).expect("a GroupMessage always serializes")
    }

    /// Parses a `content` field written by [`GroupMessage::to_wire`].
    ///
    /// Text longer than [`GROUP_MESSAGE_BYTES_MAX`] is refused before parsing.
    pub fn from_wire(text: &str) -> Result<Self, Error> {
        if text.len() > GROUP_MESSAGE_BYTES_MAX {
            return Err(Error::Malformed {
                what: "group message",
                reason: format!("{} bytes exceeds {GROUP_MESSAGE_BYTES_MAX}", text.len()),
            });
        }
        serde_json::from_str(text).map_err(|e| Error::Malformed {
            what: "group message",
            reason: e.to_string(),
        })
    }
}
