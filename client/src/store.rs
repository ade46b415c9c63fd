//! The store file: a 64-byte header, then one XChaCha20-Poly1305 ciphertext of the device's
//! state (JSON, whose secret parts are vodozemac pickles encrypted once more).
//!
//! ```text
//! offset  bytes  field
//!      0      8  magic "MSVCSTOR"
//!      8      2  format, u16 little-endian (1)
//!     10      1  kdf: 0 = raw key, 1 = Argon2id
//!     11      1  reserved, 0
//!     12      4  Argon2id memory, KiB, u32 LE (0 for a raw key)
//!     16      4  Argon2id passes, u32 LE (0 for a raw key)
//!     20      4  Argon2id lanes, u32 LE (0 for a raw key)
//!     24     16  Argon2id salt (zeros for a raw key)
//!     40     24  XChaCha20-Poly1305 nonce, random per save
//!     64      …  ciphertext with its 16-byte tag; the associated data is bytes 0..64
//! ```
//!
//! The store key is never used directly: HKDF-SHA-256 derives one subkey for the file AEAD and
//! one for the vodozemac pickles, so no key serves two algorithms. Because the whole header is
//! authenticated, a file whose KDF parameters or salt were edited fails like a wrong key.
//!
//! Crash model: a save writes a sibling temporary file, fsyncs it, renames it over the store
//! and fsyncs the directory. A crash leaves either the old store or the new one, never a mix.
//! Every save rewrites the whole file from memory, so retrying a save after a failed fsync is
//! sound (nothing relies on pages the kernel may have dropped).

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hkdf::Hkdf;
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::store_key::KdfParams;
use crate::{Error, STORE_BYTES_MAX, StoreKey};

const MAGIC: [u8; 8] = *b"MSVCSTOR";
const FORMAT: u16 = 1;

const MAGIC_OFFSET: usize = 0;
const FORMAT_OFFSET: usize = MAGIC_OFFSET + MAGIC.len();
const KDF_OFFSET: usize = FORMAT_OFFSET + 2;
const RESERVED_OFFSET: usize = KDF_OFFSET + 1;
const MEMORY_OFFSET: usize = RESERVED_OFFSET + 1;
const ITERATIONS_OFFSET: usize = MEMORY_OFFSET + 4;
const PARALLELISM_OFFSET: usize = ITERATIONS_OFFSET + 4;
const SALT_OFFSET: usize = PARALLELISM_OFFSET + 4;
pub(crate) const SALT_BYTES: usize = 16;
const NONCE_OFFSET: usize = SALT_OFFSET + SALT_BYTES;
const NONCE_BYTES: usize = 24;
const HEADER_BYTES: usize = NONCE_OFFSET + NONCE_BYTES;
const TAG_BYTES: usize = 16;

const _: () = assert!(HEADER_BYTES == 64);
const _: () = assert!(HEADER_BYTES + TAG_BYTES < STORE_BYTES_MAX);

const KDF_RAW: u8 = 0;
const KDF_ARGON2ID: u8 = 1;

const FILE_KEY_INFO: &[u8] = b"missive-client/store/file/v1";
const PICKLE_KEY_INFO: &[u8] = b"missive-client/store/pickle/v1";

/// How the store key was made, as recorded in the header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum KdfHeader {
    Raw,
    Argon2id {
        params: KdfParams,
        salt: [u8; SALT_BYTES],
    },
}

/// The header fields that are not per-save (the nonce is).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Header {
    pub(crate) kdf: KdfHeader,
}

impl Header {
    fn encode(&self, nonce: &[u8; NONCE_BYTES]) -> [u8; HEADER_BYTES] {
        let mut bytes = [0u8; HEADER_BYTES];
        bytes[MAGIC_OFFSET..FORMAT_OFFSET].copy_from_slice(&MAGIC);
        bytes[FORMAT_OFFSET..KDF_OFFSET].copy_from_slice(&FORMAT.to_le_bytes());
        match self.kdf {
            KdfHeader::Raw => bytes[KDF_OFFSET] = KDF_RAW,
            KdfHeader::Argon2id { params, salt } => {
                bytes[KDF_OFFSET] = KDF_ARGON2ID;
                bytes[MEMORY_OFFSET..ITERATIONS_OFFSET]
                    .copy_from_slice(&params.memory_kib.to_le_bytes());
                bytes[ITERATIONS_OFFSET..PARALLELISM_OFFSET]
                    .copy_from_slice(&params.iterations.to_le_bytes());
                bytes[PARALLELISM_OFFSET..SALT_OFFSET]
                    .copy_from_slice(&params.parallelism.to_le_bytes());
                bytes[SALT_OFFSET..NONCE_OFFSET].copy_from_slice(&salt);
            }
        }
        bytes[NONCE_OFFSET..HEADER_BYTES].copy_from_slice(nonce);
        bytes
    }

    fn decode(bytes: &[u8; HEADER_BYTES], path: &Path) -> Result<Self, Error> {
        let corrupt = |reason: String| Error::StoreCorrupt {
            path: path.to_path_buf(),
            reason,
        };
        if bytes[MAGIC_OFFSET..FORMAT_OFFSET] != MAGIC {
            return Err(corrupt("not a Missive client store (bad magic)".into()));
        }
        let format = u16::from_le_bytes([bytes[FORMAT_OFFSET], bytes[FORMAT_OFFSET + 1]]);
        if format != FORMAT {
            return Err(corrupt(format!(
                "format {format} (this build reads {FORMAT})"
            )));
        }
        let u32_at = |offset: usize| {
            u32::from_le_bytes([
                bytes[offset],
                bytes[offset + 1],
                bytes[offset + 2],
                bytes[offset + 3],
            ])
        };
        let kdf = match bytes[KDF_OFFSET] {
            KDF_RAW => KdfHeader::Raw,
            KDF_ARGON2ID => {
                let params = KdfParams {
                    memory_kib: u32_at(MEMORY_OFFSET),
                    iterations: u32_at(ITERATIONS_OFFSET),
                    parallelism: u32_at(PARALLELISM_OFFSET),
                };
                // A crafted header must not make us allocate gigabytes.
                params.check().map_err(|e| corrupt(e.to_string()))?;
                let mut salt = [0u8; SALT_BYTES];
                salt.copy_from_slice(&bytes[SALT_OFFSET..NONCE_OFFSET]);
                KdfHeader::Argon2id { params, salt }
            }
            other => return Err(corrupt(format!("unknown kdf {other}"))),
        };
        Ok(Self { kdf })
    }
}

fn subkey(key: &StoreKey, info: &[u8]) -> Zeroizing<[u8; 32]> {
    let mut out = Zeroizing::new([0u8; 32]);
    Hkdf::<Sha256>::new(None, key.bytes())
        .expand(info, out.as_mut())
        // 32 bytes is far below HKDF-SHA-256's 8160-byte output limit.
        .expect("32 bytes is a valid HKDF-SHA-256 output length");
    out
}

fn file_cipher(key: &StoreKey) -> XChaCha20Poly1305 {
    let file_key = subkey(key, FILE_KEY_INFO);
    let file_key: &[u8; 32] = &file_key;
    XChaCha20Poly1305::new(file_key.into())
}

/// The key vodozemac encrypts pickles with.
pub(crate) fn pickle_key(key: &StoreKey) -> Zeroizing<[u8; 32]> {
    subkey(key, PICKLE_KEY_INFO)
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Reads and checks the header of the store at `path`.
pub(crate) fn read_header(path: &Path) -> Result<Header, Error> {
    let mut file = File::open(path).map_err(io_error(path))?;
    let mut bytes = [0u8; HEADER_BYTES];
    file.read_exact(&mut bytes).map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => Error::StoreCorrupt {
            path: path.to_path_buf(),
            reason: "shorter than its header".into(),
        },
        _ => Error::Io {
            path: path.to_path_buf(),
            source: e,
        },
    })?;
    Header::decode(&bytes, path)
}

/// Encrypts `plaintext` and replaces the store at `path` atomically.
pub(crate) fn write(path: &Path, key: &StoreKey, plaintext: &[u8]) -> Result<(), Error> {
    assert!(
        HEADER_BYTES + plaintext.len() + TAG_BYTES <= STORE_BYTES_MAX,
        "device state of {} bytes exceeds the store bound",
        plaintext.len()
    );
    let mut nonce = [0u8; NONCE_BYTES];
    getrandom::fill(&mut nonce).map_err(|e| Error::Random {
        reason: e.to_string(),
    })?;
    let header = key.header().encode(&nonce);
    let cipher = file_cipher(key);
    let ciphertext = cipher
        .encrypt(
            &XNonce::from(nonce),
            Payload {
                msg: plaintext,
                aad: &header,
            },
        )
        // XChaCha20-Poly1305 only refuses messages over 256 GiB; the state is bounded far below.
        .expect("the state is within XChaCha20-Poly1305's message limit");

    let temp = temp_path(path);
    let result = write_synced(&temp, &header, &ciphertext).and_then(|()| {
        fs::rename(&temp, path).map_err(io_error(path))?;
        sync_parent(path)
    });
    if result.is_err() {
        // Best effort: the temporary file holds only ciphertext, and the old store is intact.
        let _ = fs::remove_file(&temp);
    }
    result
}

/// Reads the store at `path` and returns its decrypted state.
pub(crate) fn read(path: &Path, key: &StoreKey) -> Result<Vec<u8>, Error> {
    let mut file = File::open(path).map_err(io_error(path))?;
    let bytes_on_disk = file.metadata().map_err(io_error(path))?.len();
    if bytes_on_disk > STORE_BYTES_MAX as u64 {
        return Err(Error::StoreCorrupt {
            path: path.to_path_buf(),
            reason: format!("{bytes_on_disk} bytes exceeds {STORE_BYTES_MAX}"),
        });
    }
    let mut bytes = Vec::with_capacity(bytes_on_disk as usize);
    file.read_to_end(&mut bytes).map_err(io_error(path))?;
    if bytes.len() < HEADER_BYTES + TAG_BYTES {
        return Err(Error::StoreCorrupt {
            path: path.to_path_buf(),
            reason: format!("{} bytes is shorter than a header and a tag", bytes.len()),
        });
    }
    let (header_bytes, ciphertext) = bytes.split_at(HEADER_BYTES);
    let header_bytes: &[u8; HEADER_BYTES] = header_bytes
        .try_into()
        .expect("split_at(HEADER_BYTES) yields HEADER_BYTES bytes");
    // Decoding checks magic and format; the key kind needs no check of its own: a key of
    // the other kind, or with another salt, fails authentication below.
    Header::decode(header_bytes, path)?;
    let mut nonce = [0u8; NONCE_BYTES];
    nonce.copy_from_slice(&header_bytes[NONCE_OFFSET..HEADER_BYTES]);
    let cipher = file_cipher(key);
    cipher
        .decrypt(
            &XNonce::from(nonce),
            Payload {
                msg: ciphertext,
                aad: header_bytes,
            },
        )
        .map_err(|_| Error::WrongKey {
            path: path.to_path_buf(),
        })
}

fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.{}.tmp", std::process::id()))
}

fn write_synced(temp: &Path, header: &[u8], ciphertext: &[u8]) -> Result<(), Error> {
    let mut options = OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        // The file is ciphertext, but there is no reason for anyone else to read it.
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(temp).map_err(io_error(temp))?;
    file.write_all(header).map_err(io_error(temp))?;
    file.write_all(ciphertext).map_err(io_error(temp))?;
    file.sync_all().map_err(io_error(temp))
}

fn sync_parent(path: &Path) -> Result<(), Error> {
    // IMPORTANT: the rename is only durable once the directory entry is fsynced (Unix).
    #[cfg(unix)]
    {
        let parent = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        File::open(parent)
            .and_then(|dir| dir.sync_all())
            .map_err(io_error(parent))?;
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}
