//! The key-server JSON shapes: what a device uploads ([`KeyUpload`]) and what a peer fetches
//! ([`PeerBundle`]).
//!
//! Every key is unpadded standard base64, as vodozemac prints it. Key ids are opaque strings
//! (vodozemac's base64 key counters); the server only compares them for equality.

use serde::{Deserialize, Serialize};
use vodozemac::{Curve25519PublicKey, Ed25519PublicKey, Ed25519Signature};

use crate::{Error, PeerDevice};

/// Domain separation for signed-prekey signatures: a signature made for this purpose cannot be
/// replayed as a signature over anything else the account signs.
const SIGNED_PREKEY_CONTEXT: &[u8] = b"missive-client/signed-prekey/v1";

/// The body of `PUT /api/v1/keys`: the caller's device keys.
///
/// ```json
/// {"identity_key": "<curve25519>", "signing_key": "<ed25519>",
///  "signed_prekey": {"key_id": "AAAAAAAAAAE", "key": "<curve25519>", "signature": "<ed25519 sig>"},
///  "one_time_prekeys": [{"key_id": "AAAAAAAAAAA", "key": "<curve25519>"}]}
/// ```
///
/// The server stores the identity and signing keys and the signed prekey (replacing earlier
/// ones) and adds the one-time prekeys to the device's pool (ignoring `key_id`s it already
/// has). The signed prekey is included in every upload, the one-time prekeys only until
/// [`Device::mark_published`](crate::Device::mark_published).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyUpload {
    /// The device's long-term Curve25519 identity key.
    pub identity_key: String,
    /// The device's long-term Ed25519 signing key; it signs the signed prekey.
    pub signing_key: String,
    /// The fallback key handed out when the one-time prekeys run out.
    pub signed_prekey: SignedPrekey,
    /// Fresh one-time prekeys, each to be handed out at most once.
    pub one_time_prekeys: Vec<OneTimePrekey>,
}

/// A Curve25519 prekey with an Ed25519 signature by the device's signing key over
/// `"missive-client/signed-prekey/v1" || identity_key || key` (raw 32-byte keys).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedPrekey {
    /// The key's id.
    pub key_id: String,
    /// The Curve25519 public key.
    pub key: String,
    /// The Ed25519 signature.
    pub signature: String,
}

/// A Curve25519 one-time prekey.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OneTimePrekey {
    /// The key's id.
    pub key_id: String,
    /// The Curve25519 public key.
    pub key: String,
}

/// One device's bundle from `GET /api/v1/keys/{user_id}`, whose body is
/// `{"devices": [PeerBundle, ...]}` (see [`KeyBundles`]).
///
/// ```json
/// {"user_id": "42", "device_id": "1", "identity_key": "...", "signing_key": "...",
///  "signed_prekey": {"key_id": "...", "key": "...", "signature": "..."},
///  "one_time_prekey": {"key_id": "...", "key": "..."}}
/// ```
///
/// `one_time_prekey` is `null` (or absent) once the device's pool is empty; the server must
/// hand each one-time prekey out at most once.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerBundle {
    /// The user the device belongs to.
    pub user_id: String,
    /// The device.
    pub device_id: String,
    /// The device's Curve25519 identity key.
    pub identity_key: String,
    /// The device's Ed25519 signing key.
    pub signing_key: String,
    /// The device's signed prekey.
    pub signed_prekey: SignedPrekey,
    /// One one-time prekey taken from the pool, if any was left.
    #[serde(default)]
    pub one_time_prekey: Option<OneTimePrekey>,
}

/// The body of `GET /api/v1/keys/{user_id}`: one bundle per device of the user.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyBundles {
    /// The bundles.
    pub devices: Vec<PeerBundle>,
}

/// The keys of a bundle, decoded and with the signed prekey verified.
#[derive(Debug)]
pub(crate) struct VerifiedBundle {
    pub(crate) identity_key: Curve25519PublicKey,
    /// The one-time prekey if there is one, else the signed prekey.
    pub(crate) prekey: Curve25519PublicKey,
}

impl PeerBundle {
    /// The device this bundle is for.
    pub fn peer(&self) -> PeerDevice {
        PeerDevice::new(self.user_id.clone(), self.device_id.clone())
    }

    /// Decodes the keys and checks the signed prekey's signature.
    ///
    /// The signature is checked even when a one-time prekey is present, so that a bundle
    /// with a forged signed prekey is refused whichever key would be used.
    pub(crate) fn verify(&self) -> Result<VerifiedBundle, Error> {
        let identity_key = decode_curve(&self.identity_key, "identity_key")?;
        let signing_key = Ed25519PublicKey::from_base64(&self.signing_key).map_err(|source| {
            Error::InvalidKey {
                field: "signing_key",
                source,
            }
        })?;
        let signed_prekey = decode_curve(&self.signed_prekey.key, "signed_prekey.key")?;
        let signature = Ed25519Signature::from_base64(&self.signed_prekey.signature)
            .map_err(|_| Error::BadPrekeySignature { peer: self.peer() })?;
        signing_key
            .verify(
                &signed_prekey_message(&identity_key, &signed_prekey),
                &signature,
            )
            .map_err(|_| Error::BadPrekeySignature { peer: self.peer() })?;
        let prekey = match &self.one_time_prekey {
            Some(one_time) => decode_curve(&one_time.key, "one_time_prekey.key")?,
            None => signed_prekey,
        };
        Ok(VerifiedBundle {
            identity_key,
            prekey,
        })
    }
}

/// The bytes a signed prekey's signature covers.
pub(crate) fn signed_prekey_message(
    identity_key: &Curve25519PublicKey,
    prekey: &Curve25519PublicKey,
) -> Vec<u8> {
    let mut message = Vec::with_capacity(SIGNED_PREKEY_CONTEXT.len() + 64);
    message.extend_from_slice(SIGNED_PREKEY_CONTEXT);
    message.extend_from_slice(identity_key.as_bytes());
    message.extend_from_slice(prekey.as_bytes());
    message
}

pub(crate) fn decode_curve(text: &str, field: &'static str) -> Result<Curve25519PublicKey, Error> {
    Curve25519PublicKey::from_base64(text).map_err(|source| Error::InvalidKey { field, source })
}
