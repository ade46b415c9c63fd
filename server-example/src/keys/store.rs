//! [`KeyStore`]: the devices' public keys and their pools of one-time prekeys, in SQLite.
//!
//! Three tables. `key_devices` holds one row per device: its identity and signing keys and its
//! signed prekey (replaced by every upload). `one_time_prekeys` is the pool: each row is handed
//! out by [`KeyStore::claim`] with `DELETE … RETURNING` inside a `BEGIN IMMEDIATE` transaction,
//! so two concurrent claims can never return the same key, even from two processes sharing the
//! file. `consumed_prekeys` remembers the ids handed out, so that a client re-sending an upload
//! (a retry after a lost response) cannot put a consumed key back into the pool: a one-time
//! prekey is handed out at most once, ever, for a given identity key.
//!
//! When a device uploads a different identity key it is a new Olm account (a reinstall): its
//! old pool and tombstones are dropped, because the new account numbers its keys from zero.

use std::path::Path;

use parking_lot::Mutex;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::{KeyUpload, OneTimePrekey, SignedPrekey};

/// Default file name of the key database inside the data directory.
pub const KEYS_FILE: &str = "keys.sqlite3";

/// Most one-time prekeys in one upload.
pub const UPLOAD_PREKEYS_MAX: usize = 100;

/// Most unconsumed one-time prekeys a device may hold on the server.
pub const POOL_PREKEYS_MAX: usize = 200;

const _: () = assert!(UPLOAD_PREKEYS_MAX <= POOL_PREKEYS_MAX);

/// How long the id of a consumed one-time prekey is remembered (30 days): long enough that no
/// client still retries the upload that carried it.
pub const CONSUMED_KEEP_MS: u64 = 30 * 24 * 3600 * 1000;

/// A failure of the key database.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyStoreError {
    /// SQLite refused.
    #[error("key database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The upload would leave more than [`POOL_PREKEYS_MAX`] unconsumed one-time prekeys.
    #[error("a device holds at most {pool_max} one-time prekeys on the server ({pool} now)")]
    PoolFull {
        /// The cap.
        pool_max: usize,
        /// Unconsumed keys before the upload.
        pool: usize,
    },
}

/// What [`KeyStore::publish`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    /// One-time prekeys added to the pool (the rest were already known).
    pub added: usize,
    /// Unconsumed one-time prekeys in the pool now.
    pub pool: usize,
}

/// One device's keys as handed to a peer, with the one-time prekey it consumed (if any).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedBundle {
    /// The device.
    pub device_id: u32,
    /// Curve25519 identity key.
    pub identity_key: String,
    /// Ed25519 signing key.
    pub signing_key: String,
    /// The signed prekey.
    pub signed_prekey: SignedPrekey,
    /// The one-time prekey taken from the pool; `None` once the pool is empty.
    pub one_time_prekey: Option<OneTimePrekey>,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS key_devices (
    user_id INTEGER NOT NULL,
    device_id INTEGER NOT NULL,
    identity_key TEXT NOT NULL,
    signing_key TEXT NOT NULL,
    signed_prekey_id TEXT NOT NULL,
    signed_prekey TEXT NOT NULL,
    signed_prekey_signature TEXT NOT NULL,
    updated_at_ms INTEGER NOT NULL,
    PRIMARY KEY (user_id, device_id)
);
CREATE TABLE IF NOT EXISTS one_time_prekeys (
    user_id INTEGER NOT NULL,
    device_id INTEGER NOT NULL,
    key_id TEXT NOT NULL,
    key TEXT NOT NULL,
    PRIMARY KEY (user_id, device_id, key_id)
);
CREATE TABLE IF NOT EXISTS consumed_prekeys (
    user_id INTEGER NOT NULL,
    device_id INTEGER NOT NULL,
    key_id TEXT NOT NULL,
    consumed_at_ms INTEGER NOT NULL,
    PRIMARY KEY (user_id, device_id, key_id)
);
CREATE INDEX IF NOT EXISTS consumed_prekeys_by_time ON consumed_prekeys (consumed_at_ms);
";

/// Creates the key tables in `conn` if they are missing.
pub fn init(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(SCHEMA)
}

/// The key database. All methods take `&self`; each is one short transaction.
pub struct KeyStore {
    conn: Mutex<Connection>,
}

impl std::fmt::Debug for KeyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyStore").finish_non_exhaustive()
    }
}

impl KeyStore {
    /// Opens (creating if needed) the database at `path`.
    pub fn open(path: &Path) -> Result<Self, KeyStoreError> {
        Self::with_connection(Connection::open(path)?)
    }

    /// A private in-memory database: for tests.
    pub fn open_in_memory() -> Result<Self, KeyStoreError> {
        Self::with_connection(Connection::open_in_memory()?)
    }

    /// Uses `conn` (for example one shared with other modules' tables).
    pub fn with_connection(conn: Connection) -> Result<Self, KeyStoreError> {
        // As for accounts: WAL + NORMAL survives a process crash; a power cut may lose the last
        // commits, which here means a client re-uploads keys it already had.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        init(&conn)?;
        Ok(Self {
            conn: Mutex::new(conn),
        })
    }

    /// Stores `upload` for a device: replaces its identity, signing and signed prekeys and adds
    /// the one-time prekeys whose ids it has not seen (in the pool or handed out already).
    /// Refused whole, changing nothing, if the pool would exceed [`POOL_PREKEYS_MAX`].
    ///
    /// The caller has validated the sizes (see [`super::validate_upload`]).
    pub fn publish(
        &self,
        user_id: u64,
        device_id: u32,
        upload: &KeyUpload,
        now_ms: u64,
    ) -> Result<Published, KeyStoreError> {
        assert!(upload.one_time_prekeys.len() <= UPLOAD_PREKEYS_MAX);
        let (user, device) = (user_id as i64, i64::from(device_id));
        let mut conn = self.conn.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let previous: Option<String> = tx
            .query_row(
                "SELECT identity_key FROM key_devices WHERE user_id = ?1 AND device_id = ?2",
                params![user, device],
                |r| r.get(0),
            )
            .optional()?;
        if previous.is_some_and(|p| p != upload.identity_key) {
            // A new account on this device: its key ids start over.
            tx.execute(
                "DELETE FROM one_time_prekeys WHERE user_id = ?1 AND device_id = ?2",
                params![user, device],
            )?;
            tx.execute(
                "DELETE FROM consumed_prekeys WHERE user_id = ?1 AND device_id = ?2",
                params![user, device],
            )?;
        }
        tx.execute(
            "INSERT INTO key_devices (user_id, device_id, identity_key, signing_key,
                signed_prekey_id, signed_prekey, signed_prekey_signature, updated_at_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
             ON CONFLICT (user_id, device_id) DO UPDATE SET identity_key = ?3,
                signing_key = ?4, signed_prekey_id = ?5, signed_prekey = ?6,
                signed_prekey_signature = ?7, updated_at_ms = ?8",
            params![
                user,
                device,
                upload.identity_key,
                upload.signing_key,
                upload.signed_prekey.key_id,
                upload.signed_prekey.key,
                upload.signed_prekey.signature,
                now_ms as i64
            ],
        )?;
        let pool_before = pool_size(&tx, user, device)?;
        let mut added = 0;
        {
            let mut seen = tx.prepare_cached(
                "SELECT 1 FROM consumed_prekeys WHERE user_id = ?1 AND device_id = ?2 AND key_id = ?3",
            )?;
            let mut insert = tx.prepare_cached(
                "INSERT OR IGNORE INTO one_time_prekeys (user_id, device_id, key_id, key)
                 VALUES (?1, ?2, ?3, ?4)",
            )?;
            for key in &upload.one_time_prekeys {
                if seen.exists(params![user, device, key.key_id])? {
                    continue;
                }
                added += insert.execute(params![user, device, key.key_id, key.key])?;
            }
        }
        let pool = pool_before + added;
        if pool > POOL_PREKEYS_MAX {
            // Dropping `tx` rolls back.
            return Err(KeyStoreError::PoolFull {
                pool_max: POOL_PREKEYS_MAX,
                pool: pool_before,
            });
        }
        tx.commit()?;
        Ok(Published { added, pool })
    }

    /// For each of `devices` (of `user_id`) that has published keys, its bundle with one
    /// one-time prekey taken out of the pool for good. Devices without keys are skipped.
    ///
    /// One `BEGIN IMMEDIATE` transaction: concurrent claims are serialized, and each key is
    /// deleted by the statement that returns it, so no key is ever returned twice.
    pub fn claim(
        &self,
        user_id: u64,
        devices: &[u32],
        now_ms: u64,
    ) -> Result<Vec<ClaimedBundle>, KeyStoreError> {
        let user = user_id as i64;
        let mut conn = self.conn.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut bundles = Vec::with_capacity(devices.len());
        {
            let mut device_keys = tx.prepare_cached(
                "SELECT identity_key, signing_key, signed_prekey_id, signed_prekey,
                        signed_prekey_signature
                 FROM key_devices WHERE user_id = ?1 AND device_id = ?2",
            )?;
            let mut take = tx.prepare_cached(
                "DELETE FROM one_time_prekeys WHERE rowid = (
                    SELECT rowid FROM one_time_prekeys WHERE user_id = ?1 AND device_id = ?2
                    ORDER BY rowid LIMIT 1)
                 RETURNING key_id, key",
            )?;
            let mut tombstone = tx.prepare_cached(
                "INSERT OR REPLACE INTO consumed_prekeys (user_id, device_id, key_id, consumed_at_ms)
                 VALUES (?1, ?2, ?3, ?4)",
            )?;
            for &device_id in devices {
                let device = i64::from(device_id);
                let Some((identity_key, signing_key, signed_prekey)) = device_keys
                    .query_row(params![user, device], |r| {
                        Ok((
                            r.get::<_, String>(0)?,
                            r.get::<_, String>(1)?,
                            SignedPrekey {
                                key_id: r.get(2)?,
                                key: r.get(3)?,
                                signature: r.get(4)?,
                            },
                        ))
                    })
                    .optional()?
                else {
                    continue;
                };
                let one_time_prekey = take
                    .query_row(params![user, device], |r| {
                        Ok(OneTimePrekey {
                            key_id: r.get(0)?,
                            key: r.get(1)?,
                        })
                    })
                    .optional()?;
                if let Some(key) = &one_time_prekey {
                    tombstone.execute(params![user, device, key.key_id, now_ms as i64])?;
                }
                bundles.push(ClaimedBundle {
                    device_id,
                    identity_key,
                    signing_key,
                    signed_prekey,
                    one_time_prekey,
                });
            }
        }
        tx.commit()?;
        Ok(bundles)
    }

    /// Unconsumed one-time prekeys of a device.
    pub fn count(&self, user_id: u64, device_id: u32) -> Result<usize, KeyStoreError> {
        let conn = self.conn.lock();
        Ok(pool_size(&conn, user_id as i64, i64::from(device_id))?)
    }

    /// Forgets a device's keys (call it when the device is revoked).
    pub fn forget_device(&self, user_id: u64, device_id: u32) -> Result<(), KeyStoreError> {
        let (user, device) = (user_id as i64, i64::from(device_id));
        let mut conn = self.conn.lock();
        let tx = conn.transaction()?;
        for table in ["key_devices", "one_time_prekeys", "consumed_prekeys"] {
            tx.execute(
                &format!("DELETE FROM {table} WHERE user_id = ?1 AND device_id = ?2"),
                params![user, device],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Forgets the ids of one-time prekeys consumed before `cutoff_ms` (see
    /// [`CONSUMED_KEEP_MS`]); returns how many.
    pub fn retain_consumed(&self, cutoff_ms: u64) -> Result<usize, KeyStoreError> {
        Ok(self.conn.lock().execute(
            "DELETE FROM consumed_prekeys WHERE consumed_at_ms < ?1",
            [cutoff_ms as i64],
        )?)
    }
}

fn pool_size(conn: &Connection, user: i64, device: i64) -> rusqlite::Result<usize> {
    conn.query_row(
        "SELECT COUNT(*) FROM one_time_prekeys WHERE user_id = ?1 AND device_id = ?2",
        params![user, device],
        |r| r.get::<_, i64>(0),
    )
    .map(|n| n as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upload(identity: &str, ids: std::ops::Range<u32>) -> KeyUpload {
        KeyUpload {
            identity_key: identity.into(),
            signing_key: "sig".into(),
            signed_prekey: SignedPrekey {
                key_id: "s1".into(),
                key: "spk".into(),
                signature: "sigma".into(),
            },
            one_time_prekeys: ids
                .map(|i| OneTimePrekey {
                    key_id: format!("k{i}"),
                    key: format!("key{i}"),
                })
                .collect(),
        }
    }

    #[test]
    fn claims_hand_each_key_out_once_then_fall_back() {
        let store = KeyStore::open_in_memory().unwrap();
        let p = store.publish(1, 1, &upload("id", 0..2), 0).unwrap();
        assert_eq!(p, Published { added: 2, pool: 2 });
        let mut got = Vec::new();
        for _ in 0..3 {
            let b = store.claim(1, &[1, 2], 5).unwrap();
            assert_eq!(b.len(), 1, "device 2 has no keys");
            got.push(b[0].one_time_prekey.clone().map(|k| k.key_id));
        }
        assert_eq!(got, [Some("k0".into()), Some("k1".into()), None]);
        assert_eq!(store.count(1, 1).unwrap(), 0);
        // Re-sending the same upload does not resurrect consumed keys.
        let p = store.publish(1, 1, &upload("id", 0..3), 6).unwrap();
        assert_eq!(p, Published { added: 1, pool: 1 });
        // A new identity starts over: the old pool and tombstones go.
        let p = store.publish(1, 1, &upload("id2", 0..3), 7).unwrap();
        assert_eq!(p, Published { added: 3, pool: 3 });
        assert_eq!(store.retain_consumed(6).unwrap(), 0);
    }

    #[test]
    fn the_pool_is_capped_and_a_refused_upload_changes_nothing() {
        let store = KeyStore::open_in_memory().unwrap();
        store.publish(1, 1, &upload("id", 0..100), 0).unwrap();
        store.publish(1, 1, &upload("id", 100..200), 0).unwrap();
        let e = store.publish(1, 1, &upload("id", 200..201), 0).unwrap_err();
        assert!(matches!(e, KeyStoreError::PoolFull { pool: 200, .. }));
        assert_eq!(store.count(1, 1).unwrap(), 200);
        store.forget_device(1, 1).unwrap();
        assert_eq!(store.count(1, 1).unwrap(), 0);
        assert!(store.claim(1, &[1], 0).unwrap().is_empty());
    }
}
