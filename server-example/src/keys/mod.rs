//! The key server for end-to-end encryption: devices publish public keys, peers fetch bundles.
//!
//! The server stores only public keys and never sees a private key or a plaintext. Each device
//! uploads (`PUT /api/v1/keys`) its Curve25519 identity key, its Ed25519 signing key, a signed
//! prekey (the fallback) and a batch of one-time prekeys. A peer that wants to start an Olm
//! session fetches `GET /api/v1/keys/{user_id}`: one bundle per live device of that user, each
//! carrying one one-time prekey that is removed from the pool as it is handed out, or `null`
//! once the pool is empty (the client then uses the signed prekey). `GET /api/v1/keys/count`
//! tells a device how many of its one-time prekeys are left, so it can top up.
//!
//! The JSON shapes are the client library's (`missive-client`, `client/src/key_bundle.rs`):
//! [`KeyUpload`] in, [`KeyBundles`] out, with ids as strings.
//!
//! Who may fetch: any authenticated user (a first message needs a bundle before any contact
//! exists), except a user the target has blocked, who gets `403 forbidden` — the same rule as
//! sending a message, so a blocked user can neither message nor start a session. Devices that
//! were revoked are never handed out; devices that never uploaded keys are left out.
//!
//! [`KeyStore`] holds the rows (see `store.rs` for how a key is handed out exactly once);
//! [`router`] serves the three routes over a [`Keys`] handle.

mod store;

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, put};
use axum::{Extension, Router};
use serde::{Deserialize, Serialize};

pub use store::{
    CONSUMED_KEEP_MS, ClaimedBundle, KEYS_FILE, KeyStore, KeyStoreError, POOL_PREKEYS_MAX,
    Published, UPLOAD_PREKEYS_MAX, init,
};

use crate::AppState;
use crate::auth::Auth;
use crate::error::ApiError;
use crate::extract::{Json, Path};

/// Longest key, signature or key id accepted, in bytes (a base64 Ed25519 signature is 86).
pub const KEY_TEXT_BYTES_MAX: usize = 128;

/// The body of `PUT /api/v1/keys` (the client's `KeyUpload`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyUpload {
    /// Curve25519 identity key, base64.
    pub identity_key: String,
    /// Ed25519 signing key, base64.
    pub signing_key: String,
    /// The fallback prekey, signed by the signing key.
    pub signed_prekey: SignedPrekey,
    /// One-time prekeys to add to the pool.
    #[serde(default)]
    pub one_time_prekeys: Vec<OneTimePrekey>,
}

/// A signed prekey: `{"key_id", "key", "signature"}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedPrekey {
    /// Opaque id.
    pub key_id: String,
    /// Curve25519 public key, base64.
    pub key: String,
    /// Ed25519 signature, base64 (checked by the clients, not the server).
    pub signature: String,
}

/// A one-time prekey: `{"key_id", "key"}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OneTimePrekey {
    /// Opaque id, unique per device.
    pub key_id: String,
    /// Curve25519 public key, base64.
    pub key: String,
}

/// One device's bundle (the client's `PeerBundle`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerBundle {
    /// The user, as a string.
    pub user_id: String,
    /// The device, as a string.
    pub device_id: String,
    /// Curve25519 identity key.
    pub identity_key: String,
    /// Ed25519 signing key.
    pub signing_key: String,
    /// The signed prekey.
    pub signed_prekey: SignedPrekey,
    /// The one-time prekey consumed by this fetch; `null` once the pool is empty.
    pub one_time_prekey: Option<OneTimePrekey>,
}

/// The body of `GET /api/v1/keys/{user_id}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyBundles {
    /// One bundle per live device with keys.
    pub devices: Vec<PeerBundle>,
}

/// The body of `GET /api/v1/keys/count`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyCount {
    /// Unconsumed one-time prekeys of the caller's device.
    pub count: usize,
}

/// The answer to `PUT /api/v1/keys`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct UploadResult {
    /// One-time prekeys added (ids already seen are skipped).
    pub added: usize,
    /// Unconsumed one-time prekeys now.
    pub count: usize,
}

/// The key service: the store, shared by the routes.
#[derive(Debug, Clone)]
pub struct Keys {
    store: Arc<KeyStore>,
}

impl Keys {
    /// The service over `store`.
    pub fn new(store: KeyStore) -> Self {
        Self {
            store: Arc::new(store),
        }
    }

    /// The store.
    pub fn store(&self) -> &KeyStore {
        &self.store
    }
}

fn check_text(field: &str, value: &str) -> Result<(), ApiError> {
    let ok = !value.is_empty()
        && value.len() <= KEY_TEXT_BYTES_MAX
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=' | b'-' | b'_'));
    if ok {
        Ok(())
    } else {
        Err(ApiError::InvalidRequest(format!(
            "`{field}` must be 1 to {KEY_TEXT_BYTES_MAX} base64 characters"
        )))
    }
}

/// Checks sizes and characters of an upload (the server cannot check the cryptography: that
/// is the clients' job, and they verify the signed prekey's signature on every bundle).
pub fn validate_upload(upload: &KeyUpload) -> Result<(), ApiError> {
    check_text("identity_key", &upload.identity_key)?;
    check_text("signing_key", &upload.signing_key)?;
    check_text("signed_prekey.key_id", &upload.signed_prekey.key_id)?;
    check_text("signed_prekey.key", &upload.signed_prekey.key)?;
    check_text("signed_prekey.signature", &upload.signed_prekey.signature)?;
    if upload.one_time_prekeys.len() > UPLOAD_PREKEYS_MAX {
        return Err(ApiError::InvalidRequest(format!(
            "at most {UPLOAD_PREKEYS_MAX} one-time prekeys per upload"
        )));
    }
    for key in &upload.one_time_prekeys {
        check_text("one_time_prekeys[].key_id", &key.key_id)?;
        check_text("one_time_prekeys[].key", &key.key)?;
    }
    Ok(())
}

fn store_error(error: KeyStoreError) -> ApiError {
    match error {
        e @ KeyStoreError::PoolFull { .. } => ApiError::Conflict(e.to_string()),
        e => ApiError::internal(e),
    }
}

/// `PUT /api/v1/keys`, `GET /api/v1/keys/count` and `GET /api/v1/keys/{user_id}`.
pub fn router(keys: Keys) -> Router<AppState> {
    Router::new()
        .route("/api/v1/keys", put(upload))
        .route("/api/v1/keys/count", get(count))
        .route("/api/v1/keys/{user_id}", get(fetch))
        .layer(Extension(keys))
}

async fn upload(
    State(state): State<AppState>,
    Extension(keys): Extension<Keys>,
    auth: Auth,
    Json(body): Json<KeyUpload>,
) -> Result<(StatusCode, Json<UploadResult>), ApiError> {
    validate_upload(&body)?;
    let published = keys
        .store
        .publish(auth.user_id, auth.device_id, &body, state.now_ms())
        .map_err(store_error)?;
    Ok((
        StatusCode::OK,
        Json(UploadResult {
            added: published.added,
            count: published.pool,
        }),
    ))
}

async fn count(Extension(keys): Extension<Keys>, auth: Auth) -> Result<Json<KeyCount>, ApiError> {
    let count = keys
        .store
        .count(auth.user_id, auth.device_id)
        .map_err(store_error)?;
    Ok(Json(KeyCount { count }))
}

async fn fetch(
    State(state): State<AppState>,
    Extension(keys): Extension<Keys>,
    auth: Auth,
    Path(user_id): Path<String>,
) -> Result<Json<KeyBundles>, ApiError> {
    let user_id: u64 = user_id
        .parse()
        .map_err(|_| ApiError::InvalidRequest("user_id is a string of digits".into()))?;
    let accounts = state.accounts.store();
    if !accounts.user_exists(user_id)? {
        return Err(ApiError::NotFound("no such user".into()));
    }
    if user_id != auth.user_id && accounts.is_blocked(user_id, auth.user_id) {
        return Err(ApiError::Forbidden(
            "this user does not accept sessions from you".into(),
        ));
    }
    let devices = accounts.live_devices(user_id)?;
    let claimed = keys
        .store
        .claim(user_id, &devices, state.now_ms())
        .map_err(store_error)?;
    let devices = claimed
        .into_iter()
        .map(|b| PeerBundle {
            user_id: user_id.to_string(),
            device_id: b.device_id.to_string(),
            identity_key: b.identity_key,
            signing_key: b.signing_key,
            signed_prekey: b.signed_prekey,
            one_time_prekey: b.one_time_prekey,
        })
        .collect();
    Ok(Json(KeyBundles { devices }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uploads_are_validated() {
        let mut u = KeyUpload {
            identity_key: "abc+/=".into(),
            signing_key: "x".into(),
            signed_prekey: SignedPrekey {
                key_id: "AAAAAAAAAAE".into(),
                key: "k".into(),
                signature: "s".into(),
            },
            one_time_prekeys: vec![],
        };
        validate_upload(&u).unwrap();
        u.identity_key = String::new();
        assert!(validate_upload(&u).is_err());
        u.identity_key = "a b".into();
        assert!(validate_upload(&u).is_err());
        u.identity_key = "a".repeat(KEY_TEXT_BYTES_MAX + 1);
        assert!(validate_upload(&u).is_err());
        u.identity_key = "a".into();
        u.one_time_prekeys = (0..=UPLOAD_PREKEYS_MAX)
            .map(|i| OneTimePrekey {
                key_id: i.to_string(),
                key: "k".into(),
            })
            .collect();
        assert!(validate_upload(&u).is_err());
    }
}
