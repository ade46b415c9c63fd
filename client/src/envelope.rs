//! [`Envelope`]: one Olm message on the wire.

use serde::{Deserialize, Serialize};
use vodozemac::olm::OlmMessage;

use crate::{CONTENT_BYTES_MAX, Error};

/// The envelope format version this crate writes and reads.
const ENVELOPE_VERSION: u8 = 1;

/// One Olm-encrypted message from one device to another, as it travels in a message's
/// `content` field:
///
/// ```json
/// {"v": 1, "type": "prekey", "body": "<base64 Olm message>"}
/// ```
///
/// `type` is `"prekey"` until the sender has received a reply in this session (the message
/// then also carries what the receiver needs to create the session), `"normal"` after.
/// The server relays it untouched; it learns the two devices and the length, nothing else.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// Format version, 1.
    pub v: u8,
    /// Olm message type.
    #[serde(rename = "type")]
    pub kind: EnvelopeKind,
    /// The Olm message, unpadded standard base64.
    pub body: String,
}

/// The Olm message type of an [`Envelope`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EnvelopeKind {
    /// A prekey message: creates the receiver's session on first contact.
    Prekey,
    /// A message in an established session.
    Normal,
}

impl Envelope {
    /// The JSON text for a message's `content` field.
    pub fn to_wire(&self) -> String {
        // Serializing a struct of strings and enums cannot fail.
        serde_json::to_string(self).expect("an Envelope always serializes")
    }

    /// Parses a `content` field written by [`Envelope::to_wire`].
    ///
    /// Text longer than [`CONTENT_BYTES_MAX`] is refused before parsing.
    pub fn from_wire(text: &str) -> Result<Self, Error> {
        if text.len() > CONTENT_BYTES_MAX {
            return Err(Error::Malformed {
                what: "envelope",
                reason: format!("{} bytes exceeds {CONTENT_BYTES_MAX}", text.len()),
            });
        }
        let envelope: Self = serde_json::from_str(text).map_err(|e| Error::Malformed {
            what: "envelope",
            reason: e.to_string(),
        })?;
        if envelope.v != ENVELOPE_VERSION {
            return Err(Error::Malformed {
                what: "envelope",
                reason: format!("version {} (expected {ENVELOPE_VERSION})", envelope.v),
            });
        }
        Ok(envelope)
    }

    pub(crate) fn from_olm(message: &OlmMessage) -> Self {
        let (kind, body) = match message {
            OlmMessage::PreKey(m) => (EnvelopeKind::Prekey, m.to_base64()),
            OlmMessage::Normal(m) => (EnvelopeKind::Normal, m.to_base64()),
        };
        Self {
            v: ENVELOPE_VERSION,
            kind,
            body,
        }
    }

    pub(crate) fn to_olm(&self) -> Result<OlmMessage, Error> {
        let malformed = |e: vodozemac::DecodeError| Error::Malformed {
            what: "Olm message",
            reason: e.to_string(),
        };
        if self.v != ENVELOPE_VERSION {
            return Err(Error::Malformed {
                what: "envelope",
                reason: format!("version {} (expected {ENVELOPE_VERSION})", self.v),
            });
        }
        Ok(match self.kind {
            EnvelopeKind::Prekey => OlmMessage::PreKey(
                vodozemac::olm::PreKeyMessage::from_base64(&self.body).map_err(malformed)?,
            ),
            EnvelopeKind::Normal => OlmMessage::Normal(
                vodozemac::olm::Message::from_base64(&self.body).map_err(malformed)?,
            ),
        })
    }
}
