//! Bearer tokens and the [`Auth`] extractor that every authenticated route takes.
//!
//! A token is 32 random bytes from the operating system, shown to the client once as 64 hex
//! digits; the server keeps only SHA-256 of the bytes, so a copy of the database does not let
//! anyone log in. Revoking a token (`DELETE /api/v1/auth/token`, `DELETE /api/v1/devices/{id}`)
//! clears its hash.
//!
//! [`Auth`] reads `Authorization: Bearer <token>`; on WebSocket upgrade requests it also accepts
//! `?token=` because browsers cannot set headers there (query strings are never logged). Once a
//! token is resolved, the user's request quota is charged. The sender of anything is always
//! `Auth::user_id` — never a field of a body.

use axum::extract::{FromRef, FromRequestParts};
use axum::http::header;
use axum::http::request::Parts;
use sha2::{Digest, Sha256};

use crate::error::ApiError;
use crate::state::AppState;

/// `N` random bytes from the operating system.
///
/// # Panics
/// If the operating system has no random source (the server cannot run safely without one).
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0; N];
    getrandom::fill(&mut bytes).expect("the OS random source works");
    bytes
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 15)] as char);
    }
    s
}

fn unhex<const N: usize>(s: &str) -> Option<[u8; N]> {
    let s = s.as_bytes();
    if s.len() != 2 * N {
        return None;
    }
    let nibble = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = [0; N];
    for (i, pair) in s.chunks_exact(2).enumerate() {
        out[i] = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Some(out)
}

/// A freshly generated bearer token.
#[derive(Clone, PartialEq, Eq)]
pub struct Token {
    text: String,
    bytes: [u8; TOKEN_BYTES],
}

/// Random bytes in a token.
pub const TOKEN_BYTES: usize = 32;

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(..)")
    }
}

impl Token {
    /// 32 fresh random bytes.
    pub fn generate() -> Self {
        let bytes = random_bytes::<TOKEN_BYTES>();
        Self {
            text: hex(&bytes),
            bytes,
        }
    }

    /// The text given to the client.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// What the server stores.
    pub fn hash(&self) -> [u8; 32] {
        Sha256::digest(self.bytes).into()
    }

    /// The stored hash for a token the client presents, if it is well-formed.
    pub fn hash_of(text: &str) -> Option<[u8; 32]> {
        let bytes = unhex::<TOKEN_BYTES>(text)?;
        Some(Sha256::digest(bytes).into())
    }
}

/// The authenticated caller: the user and the device whose token was presented.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Auth {
    /// From 1.
    pub user_id: u64,
    /// Per user, from 1.
    pub device_id: u32,
}

fn is_websocket_upgrade(parts: &Parts) -> bool {
    parts
        .headers
        .get(header::UPGRADE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"))
}

/// The token a request presents: the `Authorization: Bearer` header, or (WebSocket upgrades
/// only) the `token` query parameter. `Err` for a malformed header.
fn presented_token(parts: &Parts) -> Result<Option<&str>, ApiError> {
    if let Some(value) = parts.headers.get(header::AUTHORIZATION) {
        let value = value
            .to_str()
            .map_err(|_| ApiError::Unauthorized("malformed Authorization header".into()))?;
        let token = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .ok_or_else(|| {
                ApiError::Unauthorized("expected `Authorization: Bearer <token>`".into())
            })?;
        return Ok(Some(token.trim()));
    }
    if is_websocket_upgrade(parts) {
        let query = parts.uri.query().unwrap_or("");
        return Ok(query
            .split('&')
            .find_map(|pair| pair.strip_prefix("token=")));
    }
    Ok(None)
}

impl<S> FromRequestParts<S> for Auth
where
    AppState: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        if let Some(auth) = parts.extensions.get::<Auth>() {
            return Ok(*auth);
        }
        let state = AppState::from_ref(state);
        let token = presented_token(parts)?
            .ok_or_else(|| ApiError::Unauthorized("a bearer token is required".into()))?;
        let auth = state
            .accounts
            .authenticate(token)?
            .ok_or_else(|| ApiError::Unauthorized("invalid or revoked token".into()))?;
        if let Err(e) = state.limits.user.check(&auth.user_id) {
            state.server_metrics.rate_limited_user.inc();
            return Err(e);
        }
        parts.extensions.insert(auth);
        Ok(auth)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_hash_consistently_and_reject_garbage() {
        let t = Token::generate();
        assert_eq!(t.as_str().len(), 64);
        assert_eq!(Token::hash_of(t.as_str()), Some(t.hash()));
        assert_eq!(Token::hash_of(&t.as_str().to_uppercase()), Some(t.hash()));
        assert_ne!(Token::generate().hash(), t.hash());
        assert_eq!(Token::hash_of(&t.as_str()[1..]), None);
        assert_eq!(Token::hash_of(&"zz".repeat(32)), None);
        assert_eq!(Token::hash_of("é"), None);
        assert_eq!(format!("{t:?}"), "Token(..)");
    }

    #[test]
    fn hex_round_trip() {
        let bytes = [0u8, 1, 0xab, 0xff];
        assert_eq!(hex(&bytes), "0001abff");
        assert_eq!(unhex::<4>("0001abff"), Some(bytes));
    }
}
