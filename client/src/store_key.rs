//! [`StoreKey`]: the 32-byte key that encrypts a device's store, raw or derived from a
//! passphrase with Argon2id.
//!
//! Why Argon2id: a passphrase has little entropy, so the only defence of a stolen store file
//! is making each guess expensive. Argon2id (RFC 9106, winner of the Password Hashing
//! Competition) is memory-hard, which takes away most of the advantage of GPUs and ASICs that
//! PBKDF2 or plain SHA-256 leave to an attacker; the `id` variant also resists side channels.
//! The default cost is OWASP's recommended minimum (19 MiB, 2 passes, 1 lane). The salt and
//! the cost are stored in the file's header, so [`StoreKey::unlock`] re-derives the same key.

use std::path::Path;

use zeroize::Zeroizing;

use crate::Error;
use crate::store::{self, Header, KdfHeader};

/// Argon2id memory cost bound in KiB (1 GiB): a header asking for more is refused rather than
/// letting a crafted file exhaust memory.
pub const KDF_MEMORY_KIB_MAX: u32 = 1 << 20;
/// Argon2id pass-count bound.
pub const KDF_ITERATIONS_MAX: u32 = 64;
/// Argon2id lane-count bound.
pub const KDF_PARALLELISM_MAX: u32 = 16;

/// Argon2id cost parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KdfParams {
    /// Memory per derivation, KiB (at least 8 × `parallelism`, at most
    /// [`KDF_MEMORY_KIB_MAX`]).
    pub memory_kib: u32,
    /// Passes over the memory (1 ..= [`KDF_ITERATIONS_MAX`]).
    pub iterations: u32,
    /// Lanes (1 ..= [`KDF_PARALLELISM_MAX`]).
    pub parallelism: u32,
}

impl Default for KdfParams {
    /// OWASP's recommended minimum for Argon2id: 19 MiB, 2 passes, 1 lane.
    fn default() -> Self {
        Self {
            memory_kib: 19 * 1024,
            iterations: 2,
            parallelism: 1,
        }
    }
}

impl KdfParams {
    pub(crate) fn check(&self) -> Result<(), Error> {
        let bad = |reason: String| Err(Error::InvalidKdfParams { reason });
        if !(1..=KDF_PARALLELISM_MAX).contains(&self.parallelism) {
            return bad(format!(
                "parallelism {} not in 1..={KDF_PARALLELISM_MAX}",
                self.parallelism
            ));
        }
        if !(1..=KDF_ITERATIONS_MAX).contains(&self.iterations) {
            return bad(format!(
                "iterations {} not in 1..={KDF_ITERATIONS_MAX}",
                self.iterations
            ));
        }
        let memory_kib_min = 8 * self.parallelism;
        if !(memory_kib_min..=KDF_MEMORY_KIB_MAX).contains(&self.memory_kib) {
            return bad(format!(
                "memory_kib {} not in {memory_kib_min}..={KDF_MEMORY_KIB_MAX}",
                self.memory_kib
            ));
        }
        Ok(())
    }
}

/// The key a [`Device`](crate::Device) store is encrypted with.
///
/// Either 32 raw bytes (from the platform keychain, say) or derived from a passphrase. The
/// key bytes are wiped from memory when the `StoreKey` is dropped.
pub struct StoreKey {
    key: Zeroizing<[u8; 32]>,
    kdf: KdfHeader,
}

impl std::fmt::Debug for StoreKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreKey")
            .field("kdf", &self.kdf)
            .finish_non_exhaustive()
    }
}

impl StoreKey {
    /// A raw 32-byte key. It must be uniformly random (a keychain secret), not a password.
    pub fn from_bytes(key: [u8; 32]) -> Self {
        Self {
            key: Zeroizing::new(key),
            kdf: KdfHeader::Raw,
        }
    }

    /// Derives a key from `passphrase` with Argon2id, a fresh random salt and `params`.
    ///
    /// Use this once, when creating the store; later, [`StoreKey::unlock`] reads the salt and
    /// parameters back from the file. Keep the `StoreKey` for repeated saves: deriving costs
    /// the full Argon2id time each call.
    pub fn from_passphrase(passphrase: &str, params: KdfParams) -> Result<Self, Error> {
        let mut salt = [0u8; store::SALT_BYTES];
        getrandom::fill(&mut salt).map_err(|e| Error::Random {
            reason: e.to_string(),
        })?;
        Self::derive(passphrase, params, salt)
    }

    /// Re-derives the key of the passphrase-protected store at `path`, reading its salt and
    /// parameters from the file's header.
    ///
    /// A wrong passphrase is only detected by [`Device::load`](crate::Device::load)
    /// ([`Error::WrongKey`]). A store written with a raw key gives [`Error::StoreCorrupt`].
    pub fn unlock(path: &Path, passphrase: &str) -> Result<Self, Error> {
        let header = store::read_header(path)?;
        match header.kdf {
            KdfHeader::Argon2id { params, salt } => Self::derive(passphrase, params, salt),
            KdfHeader::Raw => Err(Error::StoreCorrupt {
                path: path.to_path_buf(),
                reason: "the store uses a raw key, not a passphrase".into(),
            }),
        }
    }

    fn derive(
        passphrase: &str,
        params: KdfParams,
        salt: [u8; store::SALT_BYTES],
    ) -> Result<Self, Error> {
        params.check()?;
        let argon_params = argon2::Params::new(
            params.memory_kib,
            params.iterations,
            params.parallelism,
            Some(32),
        )
        .map_err(|e| Error::InvalidKdfParams {
            reason: e.to_string(),
        })?;
        let argon = argon2::Argon2::new(
            argon2::Algorithm::Argon2id,
            argon2::Version::V0x13,
            argon_params,
        );
        let mut key = Zeroizing::new([0u8; 32]);
        argon
            .hash_password_into(passphrase.as_bytes(), &salt, key.as_mut())
            .map_err(|e| Error::InvalidKdfParams {
                reason: e.to_string(),
            })?;
        Ok(Self {
            key,
            kdf: KdfHeader::Argon2id { params, salt },
        })
    }

    pub(crate) fn header(&self) -> Header {
        Header { kdf: self.kdf }
    }

    pub(crate) fn bytes(&self) -> &[u8; 32] {
        &self.key
    }
}
