//! Accounts: phone verification, users, devices and their tokens, contacts and blocking.
//!
//! [`Accounts`] holds the rules (E.164 numbers, six-digit codes that expire, a limited number of
//! wrong codes per request, one device per verification, tokens stored only as SHA-256 hashes);
//! [`AccountStore`] holds the rows. Messaging code asks the store two things on its hot paths,
//! both answered from memory: [`AccountStore::is_blocked`] and
//! [`AccountStore::notifications_allowed`]; and for presence [`AccountStore::contacted_by`] /
//! [`AccountStore::contacts_of`].
//!
//! Codes leave through an [`SmsSink`]; the default [`LogSmsSink`] writes them to the log. In dev
//! mode the verify-phone response also carries the code (`dev_code`).

pub mod store;

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use sha2::{Digest, Sha256};

pub use store::{
    AccountStore, Device, NotificationSettings, PendingVerification, ProfileUpdate, PushTarget,
    StoreError, User,
};

use crate::auth::{Auth, Token};
use crate::error::ApiError;

/// Longest device name accepted at verification, in bytes.
pub const DEVICE_NAME_BYTES_MAX: usize = 64;

/// Delivers verification codes to phones.
pub trait SmsSink: Send + Sync + 'static {
    /// Sends `text` to `phone_number`. Must not block for long: a sink that talks to a network
    /// service should hand the message to a task of its own.
    fn send(&self, phone_number: &str, text: &str);
}

/// The default sink: writes the message to the log (target `missive_server::sms`).
#[derive(Debug, Default, Clone, Copy)]
pub struct LogSmsSink;

impl SmsSink for LogSmsSink {
    fn send(&self, phone_number: &str, text: &str) {
        tracing::info!(target: "missive_server::sms", phone_number, text, "SMS");
    }
}

/// A sink that keeps every message: for tests.
#[derive(Debug, Default)]
pub struct MemorySmsSink {
    sent: Mutex<Vec<(String, String)>>,
}

impl MemorySmsSink {
    /// Every (phone number, text) sent so far.
    pub fn sent(&self) -> Vec<(String, String)> {
        self.sent.lock().clone()
    }
}

impl SmsSink for MemorySmsSink {
    fn send(&self, phone_number: &str, text: &str) {
        self.sent.lock().push((phone_number.into(), text.into()));
    }
}

/// Checks that `phone_number` is E.164: `+`, a non-zero digit, then 6 to 14 more digits.
pub fn validate_phone(phone_number: &str) -> Result<(), ApiError> {
    let digits = phone_number.strip_prefix('+').unwrap_or("");
    let ok = (7..=15).contains(&digits.len())
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !digits.starts_with('0');
    if ok {
        Ok(())
    } else {
        Err(ApiError::InvalidRequest(format!(
            "`{phone_number}` is not an E.164 phone number (like +15551234567)"
        )))
    }
}

/// The answer to verify-phone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeRequest {
    /// Opaque id of this verification.
    pub request_id: String,
    /// How long the code works.
    pub expires_in: Duration,
    /// The code itself, in dev mode only.
    pub dev_code: Option<String>,
}

/// The answer to a successful verify-code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The user (created by the first verification of the number).
    pub user_id: u64,
    /// The device this verification registered.
    pub device_id: u32,
    /// The bearer token; shown once, stored only as a hash.
    pub token: String,
    /// Whether this verification created the user.
    pub new_user: bool,
}

/// Account rules over the store.
pub struct Accounts {
    store: AccountStore,
    sms: Arc<dyn SmsSink>,
    dev: bool,
    code_ttl: Duration,
    attempts_max: u32,
}

impl std::fmt::Debug for Accounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Accounts")
            .field("dev", &self.dev)
            .field("code_ttl", &self.code_ttl)
            .field("attempts_max", &self.attempts_max)
            .finish_non_exhaustive()
    }
}

fn code_hash(request_id: &str, code: &str) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(request_id.as_bytes());
    hasher.update(b":");
    hasher.update(code.as_bytes());
    hasher.finalize().into()
}

/// A uniformly random six-digit code.
fn random_code() -> String {
    loop {
        let value = u32::from_le_bytes(crate::auth::random_bytes::<4>());
        // Rejection sampling: 4_294_000_000 is the largest multiple of 10^6 below 2^32.
        if value < 4_294_000_000 {
            return format!("{:06}", value % 1_000_000);
        }
    }
}

impl Accounts {
    /// Rules over `store`: codes through `sms`, returned in responses when `dev`.
    pub fn new(
        store: AccountStore,
        sms: Arc<dyn SmsSink>,
        dev: bool,
        code_ttl: Duration,
        attempts_max: u32,
    ) -> Self {
        assert!(attempts_max >= 1, "at least one attempt per code");
        Self {
            store,
            sms,
            dev,
            code_ttl,
            attempts_max,
        }
    }

    /// The database.
    pub fn store(&self) -> &AccountStore {
        &self.store
    }

    /// Starts a verification of `phone_number`: a fresh code replaces any pending one.
    pub fn request_code(&self, phone_number: &str, now_ms: u64) -> Result<CodeRequest, ApiError> {
        validate_phone(phone_number)?;
        let request_id = crate::auth::hex(&crate::auth::random_bytes::<16>());
        let code = random_code();
        let pending = PendingVerification {
            code_hash: code_hash(&request_id, &code),
            request_id: request_id.clone(),
            expires_at_ms: now_ms + self.code_ttl.as_millis() as u64,
            attempts_left: self.attempts_max,
        };
        self.store.put_verification(phone_number, &pending)?;
        self.sms.send(
            phone_number,
            &format!("Your Missive code is {code}. Do not share it."),
        );
        Ok(CodeRequest {
            request_id,
            expires_in: self.code_ttl,
            dev_code: self.dev.then_some(code),
        })
    }

    /// Checks `code` for `phone_number`. On success the verification is consumed, the user is
    /// created if new, and a device is registered with a fresh token.
    ///
    /// Errors: `invalid_request` for a malformed number, code or device name; `unauthorized`
    /// for no pending code, an expired one or a wrong one; `rate_limited` once the request's
    /// wrong attempts are spent (until a new code is requested).
    pub fn verify_code(
        &self,
        phone_number: &str,
        code: &str,
        device_name: &str,
        now_ms: u64,
    ) -> Result<Session, ApiError> {
        validate_phone(phone_number)?;
        if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ApiError::InvalidRequest("the code has six digits".into()));
        }
        if device_name.len() > DEVICE_NAME_BYTES_MAX {
            return Err(ApiError::InvalidRequest(format!(
                "device_name is longer than {DEVICE_NAME_BYTES_MAX} bytes"
            )));
        }
        let no_code = || {
            ApiError::Unauthorized(
                "no valid code for this number; request one with verify-phone".into(),
            )
        };
        let Some(pending) = self.store.verification(phone_number)? else {
            return Err(no_code());
        };
        if pending.attempts_left == 0 {
            return Err(ApiError::rate_limited(
                "too many wrong codes; request a new code",
                None,
            ));
        }
        if now_ms >= pending.expires_at_ms {
            return Err(no_code());
        }
        if code_hash(&pending.request_id, code) != pending.code_hash {
            self.store
                .spend_attempt(phone_number, &pending.request_id)?;
            return Err(ApiError::Unauthorized("wrong code".into()));
        }
        let token = Token::generate();
        let Some((user_id, device_id, new_user)) = self.store.complete_verification(
            phone_number,
            &pending.request_id,
            device_name,
            &token.hash(),
            now_ms,
        )?
        else {
            return Err(no_code());
        };
        Ok(Session {
            user_id,
            device_id,
            token: token.as_str().to_owned(),
            new_user,
        })
    }

    /// The device a bearer token belongs to, if the token is well-formed, known and live.
    pub fn authenticate(&self, token: &str) -> Result<Option<Auth>, ApiError> {
        let Some(hash) = Token::hash_of(token) else {
            return Ok(None);
        };
        Ok(self
            .store
            .device_by_token(&hash)?
            .map(|(user_id, device_id)| Auth { user_id, device_id }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accounts(dev: bool) -> (Accounts, Arc<MemorySmsSink>) {
        let sms = Arc::new(MemorySmsSink::default());
        let accounts = Accounts::new(
            AccountStore::open_in_memory().unwrap(),
            sms.clone(),
            dev,
            Duration::from_secs(60),
            3,
        );
        (accounts, sms)
    }

    #[test]
    fn phone_numbers() {
        for ok in ["+15551234567", "+4930123456", "+861234567890123"] {
            validate_phone(ok).unwrap();
        }
        for bad in [
            "15551234567",
            "+0551234567",
            "+1555",
            "+1555123456789012",
            "+1555-123-4567",
            "",
        ] {
            assert!(validate_phone(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn codes_are_six_digits() {
        for _ in 0..100 {
            let c = random_code();
            assert_eq!(c.len(), 6);
            assert!(c.bytes().all(|b| b.is_ascii_digit()));
        }
    }

    #[test]
    fn verification_round_trip_and_sms() {
        let (accounts, sms) = accounts(false);
        let request = accounts.request_code("+15551234567", 0).unwrap();
        assert_eq!(request.dev_code, None);
        let (phone, text) = sms.sent().pop().unwrap();
        assert_eq!(phone, "+15551234567");
        let code: String = text.chars().filter(char::is_ascii_digit).collect();
        let session = accounts
            .verify_code("+15551234567", &code, "laptop", 10)
            .unwrap();
        assert_eq!(
            (session.user_id, session.device_id, session.new_user),
            (1, 1, true)
        );
        let auth = accounts.authenticate(&session.token).unwrap().unwrap();
        assert_eq!(
            auth,
            Auth {
                user_id: 1,
                device_id: 1
            }
        );
        // The code is consumed.
        assert_eq!(
            accounts
                .verify_code("+15551234567", &code, "", 11)
                .unwrap_err()
                .code(),
            "unauthorized"
        );
    }

    #[test]
    fn wrong_codes_are_limited_and_codes_expire() {
        let (accounts, _) = accounts(true);
        let code = accounts
            .request_code("+15551234567", 0)
            .unwrap()
            .dev_code
            .unwrap();
        let wrong = if code == "000000" { "000001" } else { "000000" };
        for _ in 0..3 {
            let e = accounts
                .verify_code("+15551234567", wrong, "", 1)
                .unwrap_err();
            assert_eq!(e.code(), "unauthorized");
        }
        let e = accounts
            .verify_code("+15551234567", &code, "", 1)
            .unwrap_err();
        assert_eq!(e.code(), "rate_limited");

        let code = accounts
            .request_code("+15551234567", 0)
            .unwrap()
            .dev_code
            .unwrap();
        let e = accounts
            .verify_code("+15551234567", &code, "", 60_000)
            .unwrap_err();
        assert_eq!(e.code(), "unauthorized");
        assert_eq!(accounts.store().user_count().unwrap(), 0);
    }

    #[test]
    fn forged_tokens_do_not_authenticate() {
        let (accounts, _) = accounts(true);
        assert_eq!(accounts.authenticate("").unwrap(), None);
        assert_eq!(accounts.authenticate("nothex").unwrap(), None);
        assert_eq!(accounts.authenticate(&"ab".repeat(32)).unwrap(), None);
    }
}
