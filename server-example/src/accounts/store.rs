//! The account database: users, devices and their token hashes, pending phone verifications,
//! contacts, blocks, push tokens and notification settings, in one SQLite file.
//!
//! SQLite runs in WAL mode behind one mutex; every call is a short indexed statement, so callers
//! on the async runtime call it directly. Two hot lookups are mirrored in memory so that the
//! messaging path never touches SQLite for them: the block set ([`AccountStore::is_blocked`])
//! and notification settings ([`AccountStore::notification_settings`]). Both are loaded at open
//! and updated together with the table.
//!
//! Ids: users are numbered from 1 (`AUTOINCREMENT`: never reused); devices are numbered per user
//! from 1, and a revoked device keeps its row so its number is never reused either.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use parking_lot::{Mutex, RwLock};
use rusqlite::{Connection, OptionalExtension, params};

/// A failure of the account database.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// SQLite refused.
    #[error("account database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The file was written by a newer server.
    #[error("account database schema version {found} is newer than this server's {supported}")]
    SchemaTooNew {
        /// In the file.
        found: i64,
        /// What this build knows.
        supported: i64,
    },
}

const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS users (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    phone_number TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL DEFAULT '',
    status_message TEXT NOT NULL DEFAULT '',
    profile_picture_media_id TEXT,
    created_at_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS devices (
    user_id INTEGER NOT NULL REFERENCES users(id),
    device_id INTEGER NOT NULL,
    name TEXT NOT NULL,
    token_hash BLOB UNIQUE,
    created_at_ms INTEGER NOT NULL,
    revoked_at_ms INTEGER,
    PRIMARY KEY (user_id, device_id)
);
CREATE TABLE IF NOT EXISTS verifications (
    phone_number TEXT PRIMARY KEY,
    request_id TEXT NOT NULL,
    code_hash BLOB NOT NULL,
    expires_at_ms INTEGER NOT NULL,
    attempts_left INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS contacts (
    owner_id INTEGER NOT NULL REFERENCES users(id),
    contact_id INTEGER NOT NULL REFERENCES users(id),
    created_at_ms INTEGER NOT NULL,
    PRIMARY KEY (owner_id, contact_id)
);
CREATE INDEX IF NOT EXISTS contacts_by_contact ON contacts (contact_id, owner_id);
CREATE TABLE IF NOT EXISTS blocks (
    blocker_id INTEGER NOT NULL REFERENCES users(id),
    blocked_id INTEGER NOT NULL REFERENCES users(id),
    created_at_ms INTEGER NOT NULL,
    PRIMARY KEY (blocker_id, blocked_id)
);
CREATE TABLE IF NOT EXISTS push_tokens (
    user_id INTEGER NOT NULL,
    device_id INTEGER NOT NULL,
    platform TEXT NOT NULL,
    token TEXT NOT NULL,
    updated_at_ms INTEGER NOT NULL,
    PRIMARY KEY (user_id, device_id),
    FOREIGN KEY (user_id, device_id) REFERENCES devices(user_id, device_id)
);
CREATE TABLE IF NOT EXISTS notification_settings (
    user_id INTEGER PRIMARY KEY REFERENCES users(id),
    do_not_disturb INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS muted_chats (
    user_id INTEGER NOT NULL REFERENCES users(id),
    chat_id TEXT NOT NULL,
    PRIMARY KEY (user_id, chat_id)
);
";

/// A registered user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// From 1.
    pub id: u64,
    /// E.164.
    pub phone_number: String,
    /// Display name ("" until set).
    pub name: String,
    /// "About" text ("" until set).
    pub status_message: String,
    /// A media id, once the user sets a picture.
    pub profile_picture_media_id: Option<String>,
    /// Registration time, ms since the Unix epoch.
    pub created_at_ms: u64,
}

/// A change to a profile: `None` leaves a field alone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProfileUpdate {
    /// New display name.
    pub name: Option<String>,
    /// New "about" text.
    pub status_message: Option<String>,
    /// New picture; `Some("")` removes it.
    pub profile_picture_media_id: Option<String>,
}

/// A device of a user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    /// Per user, from 1.
    pub device_id: u32,
    /// As given at verification ("" if none).
    pub name: String,
    /// Registration time.
    pub created_at_ms: u64,
    /// When its token was revoked, if it was.
    pub revoked_at_ms: Option<u64>,
}

/// A pending phone verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingVerification {
    /// Opaque id returned by verify-phone.
    pub request_id: String,
    /// SHA-256 of `request_id:code`.
    pub code_hash: [u8; 32],
    /// When the code stops working.
    pub expires_at_ms: u64,
    /// Wrong codes still allowed.
    pub attempts_left: u32,
}

/// Where a device receives push notifications.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushTarget {
    /// The device.
    pub device_id: u32,
    /// `fcm`, `apns` or `webhook`.
    pub platform: String,
    /// The platform's token.
    pub token: String,
}

/// A user's notification preferences.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NotificationSettings {
    /// Chats that never notify.
    pub muted_chats: HashSet<String>,
    /// Nothing notifies.
    pub do_not_disturb: bool,
}

/// The account database. All methods take `&self`.
pub struct AccountStore {
    conn: Mutex<Connection>,
    /// (blocker, blocked) pairs.
    blocks: RwLock<HashSet<(u64, u64)>>,
    /// Users whose settings differ from the default.
    settings: RwLock<HashMap<u64, NotificationSettings>>,
}

impl std::fmt::Debug for AccountStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccountStore").finish_non_exhaustive()
    }
}

fn user_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<User> {
    Ok(User {
        id: row.get::<_, i64>(0)? as u64,
        phone_number: row.get(1)?,
        name: row.get(2)?,
        status_message: row.get(3)?,
        profile_picture_media_id: row.get(4)?,
        created_at_ms: row.get::<_, i64>(5)? as u64,
    })
}

const USER_COLUMNS: &str =
    "id, phone_number, name, status_message, profile_picture_media_id, created_at_ms";

impl AccountStore {
    /// Opens (creating if needed) the database at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Self::init(Connection::open(path)?)
    }

    /// A private in-memory database: for tests.
    pub fn open_in_memory() -> Result<Self, StoreError> {
        Self::init(Connection::open_in_memory()?)
    }

    fn init(conn: Connection) -> Result<Self, StoreError> {
        // WAL + NORMAL: a commit survives a process crash; a power cut may lose the last few,
        // which for accounts means re-verifying a phone, never a corrupt file.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        if version > SCHEMA_VERSION {
            return Err(StoreError::SchemaTooNew {
                found: version,
                supported: SCHEMA_VERSION,
            });
        }
        conn.execute_batch(SCHEMA)?;
        conn.pragma_update(None, "user_version", SCHEMA_VERSION)?;

        let mut blocks = HashSet::new();
        {
            let mut stmt = conn.prepare("SELECT blocker_id, blocked_id FROM blocks")?;
            let rows = stmt.query_map([], |r| {
                Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64))
            })?;
            for row in rows {
                blocks.insert(row?);
            }
        }
        let mut settings: HashMap<u64, NotificationSettings> = HashMap::new();
        {
            let mut stmt = conn.prepare(
                "SELECT user_id, do_not_disturb FROM notification_settings WHERE do_not_disturb != 0",
            )?;
            let rows = stmt.query_map([], |r| Ok(r.get::<_, i64>(0)? as u64))?;
            for row in rows {
                settings.entry(row?).or_default().do_not_disturb = true;
            }
            let mut stmt = conn.prepare("SELECT user_id, chat_id FROM muted_chats")?;
            let rows = stmt.query_map([], |r| Ok((r.get::<_, i64>(0)? as u64, r.get(1)?)))?;
            for row in rows {
                let (user, chat): (u64, String) = row?;
                settings.entry(user).or_default().muted_chats.insert(chat);
            }
        }
        Ok(Self {
            conn: Mutex::new(conn),
            blocks: RwLock::new(blocks),
            settings: RwLock::new(settings),
        })
    }

    // ---- verification ----

    /// Replaces any pending verification of `phone_number`.
    pub fn put_verification(
        &self,
        phone_number: &str,
        pending: &PendingVerification,
    ) -> Result<(), StoreError> {
        self.conn.lock().execute(
            "INSERT INTO verifications (phone_number, request_id, code_hash, expires_at_ms, attempts_left)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (phone_number) DO UPDATE SET request_id = ?2, code_hash = ?3,
                 expires_at_ms = ?4, attempts_left = ?5",
            params![
                phone_number,
                pending.request_id,
                &pending.code_hash[..],
                pending.expires_at_ms as i64,
                pending.attempts_left
            ],
        )?;
        Ok(())
    }

    /// The pending verification of `phone_number`.
    pub fn verification(
        &self,
        phone_number: &str,
    ) -> Result<Option<PendingVerification>, StoreError> {
        let conn = self.conn.lock();
        let mut stmt = conn.prepare_cached(
            "SELECT request_id, code_hash, expires_at_ms, attempts_left FROM verifications
             WHERE phone_number = ?1",
        )?;
        let row = stmt
            .query_row([phone_number], |r| {
                let hash: Vec<u8> = r.get(1)?;
                Ok((r.get(0)?, hash, r.get::<_, i64>(2)?, r.get::<_, i64>(3)?))
            })
            .optional()?;
        Ok(row.map(|(request_id, hash, expires, attempts)| {
            let mut code_hash = [0; 32];
            if hash.len() == 32 {
                code_hash.copy_from_slice(&hash);
            }
            PendingVerification {
                request_id,
                code_hash,
                expires_at_ms: expires.max(0) as u64,
                attempts_left: attempts.clamp(0, i64::from(u32::MAX)) as u32,
            }
        }))
    }

    /// Counts a wrong code against the request `request_id` of `phone_number`.
    pub fn spend_attempt(&self, phone_number: &str, request_id: &str) -> Result<(), StoreError> {
        self.conn.lock().execute(
            "UPDATE verifications SET attempts_left = MAX(attempts_left - 1, 0)
             WHERE phone_number = ?1 AND request_id = ?2",
            params![phone_number, request_id],
        )?;
        Ok(())
    }

    /// Completes a verification: removes it, creates the user if needed and registers a device
    /// with `token_hash`, in one transaction. Returns (user id, device id, whether the user is
    /// new), or `None` if the request was consumed concurrently.
    pub fn complete_verification(
        &self,
        phone_number: &str,
        request_id: &str,
        device_name: &str,
        token_hash: &[u8; 32],
        now_ms: u64,
    ) -> Result<Option<(u64, u32, bool)>, StoreError> {
        let mut conn = self.conn.lock();
        let tx = conn.transaction()?;
        let removed = tx.execute(
            "DELETE FROM verifications WHERE phone_number = ?1 AND request_id = ?2",
            params![phone_number, request_id],
        )?;
        if removed == 0 {
            return Ok(None);
        }
        let existing: Option<i64> = tx
            .query_row(
                "SELECT id FROM users WHERE phone_number = ?1",
                [phone_number],
                |r| r.get(0),
            )
            .optional()?;
        let (user_id, created) = match existing {
            Some(id) => (id, false),
            None => {
                tx.execute(
                    "INSERT INTO users (phone_number, created_at_ms) VALUES (?1, ?2)",
                    params![phone_number, now_ms as i64],
                )?;
                (tx.last_insert_rowid(), true)
            }
        };
        let device_id: i64 = tx.query_row(
            "SELECT COALESCE(MAX(device_id), 0) + 1 FROM devices WHERE user_id = ?1",
            [user_id],
            |r| r.get(0),
        )?;
        tx.execute(
            "INSERT INTO devices (user_id, device_id, name, token_hash, created_at_ms)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                user_id,
                device_id,
                device_name,
                &token_hash[..],
                now_ms as i64
            ],
        )?;
        tx.commit()?;
        assert!(user_id >= 1 && device_id >= 1, "ids start at 1");
        Ok(Some((user_id as u64, device_id as u32, created)))
    }

    // ---- tokens and devices ----

    /// The (user, device) whose live token hashes to `token_hash`.
    pub fn device_by_token(&self, token_hash: &[u8; 32]) -> Result<Option<(u64, u32)>, StoreError> {
        let conn = self.conn.lock();
        let mut stmt = conn.prepare_cached(
            "SELECT user_id, device_id FROM devices WHERE token_hash = ?1 AND revoked_at_ms IS NULL",
        )?;
        Ok(stmt
            .query_row([&token_hash[..]], |r| {
                Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u32))
            })
            .optional()?)
    }

    /// Revokes the token of `device_id`; `false` if there was no live one.
    pub fn revoke_device(
        &self,
        user_id: u64,
        device_id: u32,
        now_ms: u64,
    ) -> Result<bool, StoreError> {
        let n = self.conn.lock().execute(
            "UPDATE devices SET token_hash = NULL, revoked_at_ms = ?3
             WHERE user_id = ?1 AND device_id = ?2 AND revoked_at_ms IS NULL",
            params![user_id as i64, device_id, now_ms as i64],
        )?;
        if n > 0 {
            self.conn.lock().execute(
                "DELETE FROM push_tokens WHERE user_id = ?1 AND device_id = ?2",
                params![user_id as i64, device_id],
            )?;
        }
        Ok(n > 0)
    }

    /// Every device of `user_id`, revoked ones included, by id.
    pub fn devices(&self, user_id: u64) -> Result<Vec<Device>, StoreError> {
        let conn = self.conn.lock();
        let mut stmt = conn.prepare_cached(
            "SELECT device_id, name, created_at_ms, revoked_at_ms FROM devices
             WHERE user_id = ?1 ORDER BY device_id",
        )?;
        let rows = stmt.query_map([user_id as i64], |r| {
            Ok(Device {
                device_id: r.get::<_, i64>(0)? as u32,
                name: r.get(1)?,
                created_at_ms: r.get::<_, i64>(2)? as u64,
                revoked_at_ms: r.get::<_, Option<i64>>(3)?.map(|v| v as u64),
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The live (not revoked) device ids of `user_id`.
    pub fn live_devices(&self, user_id: u64) -> Result<Vec<u32>, StoreError> {
        Ok(self
            .devices(user_id)?
            .into_iter()
            .filter(|d| d.revoked_at_ms.is_none())
            .map(|d| d.device_id)
            .collect())
    }

    // ---- users ----

    /// The user `id`.
    pub fn user(&self, id: u64) -> Result<Option<User>, StoreError> {
        let conn = self.conn.lock();
        let mut stmt =
            conn.prepare_cached(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?1"))?;
        Ok(stmt.query_row([id as i64], user_from_row).optional()?)
    }

    /// Whether user `id` exists.
    pub fn user_exists(&self, id: u64) -> Result<bool, StoreError> {
        let conn = self.conn.lock();
        let mut stmt = conn.prepare_cached("SELECT 1 FROM users WHERE id = ?1")?;
        Ok(stmt.exists([id as i64])?)
    }

    /// How many users are registered.
    pub fn user_count(&self) -> Result<u64, StoreError> {
        let n: i64 = self
            .conn
            .lock()
            .query_row("SELECT COUNT(*) FROM users", [], |r| r.get(0))?;
        Ok(n as u64)
    }

    /// Applies `update` to user `id` and returns the result (`None` if there is no such user).
    pub fn update_profile(
        &self,
        id: u64,
        update: &ProfileUpdate,
    ) -> Result<Option<User>, StoreError> {
        {
            let conn = self.conn.lock();
            let picture = update
                .profile_picture_media_id
                .as_ref()
                .map(|p| if p.is_empty() { None } else { Some(p.as_str()) });
            conn.execute(
                "UPDATE users SET
                    name = COALESCE(?2, name),
                    status_message = COALESCE(?3, status_message),
                    profile_picture_media_id = CASE WHEN ?4 THEN ?5 ELSE profile_picture_media_id END
                 WHERE id = ?1",
                params![
                    id as i64,
                    update.name,
                    update.status_message,
                    picture.is_some(),
                    picture.flatten()
                ],
            )?;
        }
        self.user(id)
    }

    /// The registered users among `phone_numbers` (in no particular order).
    pub fn users_by_phone(&self, phone_numbers: &[String]) -> Result<Vec<User>, StoreError> {
        let conn = self.conn.lock();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {USER_COLUMNS} FROM users WHERE phone_number = ?1"
        ))?;
        let mut users = Vec::new();
        let mut seen = HashSet::new();
        for phone in phone_numbers {
            if !seen.insert(phone.as_str()) {
                continue;
            }
            if let Some(user) = stmt.query_row([phone], user_from_row).optional()? {
                users.push(user);
            }
        }
        Ok(users)
    }

    // ---- contacts ----

    /// Adds `contact_ids` to `owner_id`'s contacts (existing ones are kept).
    pub fn add_contacts(
        &self,
        owner_id: u64,
        contact_ids: &[u64],
        now_ms: u64,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn.lock();
        let tx = conn.transaction()?;
        {
            let mut stmt = tx.prepare_cached(
                "INSERT OR IGNORE INTO contacts (owner_id, contact_id, created_at_ms) VALUES (?1, ?2, ?3)",
            )?;
            for &contact in contact_ids {
                if contact != owner_id {
                    stmt.execute(params![owner_id as i64, contact as i64, now_ms as i64])?;
                }
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// The users in `user_id`'s contact list (the people they added), ascending.
    pub fn contacts_of(&self, user_id: u64) -> Result<Vec<u64>, StoreError> {
        self.ids(
            "SELECT contact_id FROM contacts WHERE owner_id = ?1 ORDER BY contact_id",
            user_id,
        )
    }

    /// The users who have `user_id` in their contact list (who may see their presence),
    /// ascending.
    pub fn contacted_by(&self, user_id: u64) -> Result<Vec<u64>, StoreError> {
        self.ids(
            "SELECT owner_id FROM contacts WHERE contact_id = ?1 ORDER BY owner_id",
            user_id,
        )
    }

    /// Whether `owner_id` has `other_id` in their contacts.
    pub fn is_contact(&self, owner_id: u64, other_id: u64) -> Result<bool, StoreError> {
        let conn = self.conn.lock();
        let mut stmt =
            conn.prepare_cached("SELECT 1 FROM contacts WHERE owner_id = ?1 AND contact_id = ?2")?;
        Ok(stmt.exists([owner_id as i64, other_id as i64])?)
    }

    fn ids(&self, sql: &str, key: u64) -> Result<Vec<u64>, StoreError> {
        let conn = self.conn.lock();
        let mut stmt = conn.prepare_cached(sql)?;
        let rows = stmt.query_map([key as i64], |r| Ok(r.get::<_, i64>(0)? as u64))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    // ---- blocks ----

    /// `blocker_id` blocks `blocked_id` (idempotent).
    pub fn block(&self, blocker_id: u64, blocked_id: u64, now_ms: u64) -> Result<(), StoreError> {
        let mut blocks = self.blocks.write();
        self.conn.lock().execute(
            "INSERT OR IGNORE INTO blocks (blocker_id, blocked_id, created_at_ms) VALUES (?1, ?2, ?3)",
            params![blocker_id as i64, blocked_id as i64, now_ms as i64],
        )?;
        blocks.insert((blocker_id, blocked_id));
        Ok(())
    }

    /// `blocker_id` unblocks `blocked_id` (idempotent).
    pub fn unblock(&self, blocker_id: u64, blocked_id: u64) -> Result<(), StoreError> {
        let mut blocks = self.blocks.write();
        self.conn.lock().execute(
            "DELETE FROM blocks WHERE blocker_id = ?1 AND blocked_id = ?2",
            params![blocker_id as i64, blocked_id as i64],
        )?;
        blocks.remove(&(blocker_id, blocked_id));
        Ok(())
    }

    /// Whether `blocker_id` has blocked `blocked_id` (in memory; no SQLite access).
    pub fn is_blocked(&self, blocker_id: u64, blocked_id: u64) -> bool {
        self.blocks.read().contains(&(blocker_id, blocked_id))
    }

    /// The users `blocker_id` has blocked, ascending.
    pub fn blocked_by(&self, blocker_id: u64) -> Vec<u64> {
        let mut ids: Vec<u64> = self
            .blocks
            .read()
            .iter()
            .filter(|(b, _)| *b == blocker_id)
            .map(|(_, id)| *id)
            .collect();
        ids.sort_unstable();
        ids
    }

    // ---- push ----

    /// Sets the push token of a device (replacing the previous one).
    pub fn set_push_token(
        &self,
        user_id: u64,
        device_id: u32,
        platform: &str,
        token: &str,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        self.conn.lock().execute(
            "INSERT INTO push_tokens (user_id, device_id, platform, token, updated_at_ms)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (user_id, device_id) DO UPDATE SET platform = ?3, token = ?4, updated_at_ms = ?5",
            params![user_id as i64, device_id, platform, token, now_ms as i64],
        )?;
        Ok(())
    }

    /// The push targets of `user_id`'s devices.
    pub fn push_targets(&self, user_id: u64) -> Result<Vec<PushTarget>, StoreError> {
        let conn = self.conn.lock();
        let mut stmt = conn.prepare_cached(
            "SELECT device_id, platform, token FROM push_tokens WHERE user_id = ?1 ORDER BY device_id",
        )?;
        let rows = stmt.query_map([user_id as i64], |r| {
            Ok(PushTarget {
                device_id: r.get::<_, i64>(0)? as u32,
                platform: r.get(1)?,
                token: r.get(2)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Replaces the muted chats and/or the do-not-disturb flag of `user_id`.
    pub fn set_notification_settings(
        &self,
        user_id: u64,
        muted_chats: Option<&[String]>,
        do_not_disturb: Option<bool>,
    ) -> Result<NotificationSettings, StoreError> {
        let mut cache = self.settings.write();
        let mut conn = self.conn.lock();
        let tx = conn.transaction()?;
        if let Some(chats) = muted_chats {
            tx.execute(
                "DELETE FROM muted_chats WHERE user_id = ?1",
                [user_id as i64],
            )?;
            let mut stmt = tx.prepare_cached(
                "INSERT OR IGNORE INTO muted_chats (user_id, chat_id) VALUES (?1, ?2)",
            )?;
            for chat in chats {
                stmt.execute(params![user_id as i64, chat])?;
            }
        }
        if let Some(dnd) = do_not_disturb {
            tx.execute(
                "INSERT INTO notification_settings (user_id, do_not_disturb) VALUES (?1, ?2)
                 ON CONFLICT (user_id) DO UPDATE SET do_not_disturb = ?2",
                params![user_id as i64, dnd],
            )?;
        }
        tx.commit()?;
        let entry = cache.entry(user_id).or_default();
        if let Some(chats) = muted_chats {
            entry.muted_chats = chats.iter().cloned().collect();
        }
        if let Some(dnd) = do_not_disturb {
            entry.do_not_disturb = dnd;
        }
        let result = entry.clone();
        if result == NotificationSettings::default() {
            cache.remove(&user_id);
        }
        Ok(result)
    }

    /// The notification settings of `user_id` (in memory; no SQLite access).
    pub fn notification_settings(&self, user_id: u64) -> NotificationSettings {
        self.settings
            .read()
            .get(&user_id)
            .cloned()
            .unwrap_or_default()
    }

    /// Whether a notification about `chat_id` may reach `user_id` now (not muted, no
    /// do-not-disturb), without cloning the settings.
    pub fn notifications_allowed(&self, user_id: u64, chat_id: &str) -> bool {
        match self.settings.read().get(&user_id) {
            None => true,
            Some(s) => !s.do_not_disturb && !s.muted_chats.contains(chat_id),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verified(store: &AccountStore, phone: &str, token: u8) -> (u64, u32, bool) {
        let pending = PendingVerification {
            request_id: format!("r{token}"),
            code_hash: [token; 32],
            expires_at_ms: 1000,
            attempts_left: 3,
        };
        store.put_verification(phone, &pending).unwrap();
        store
            .complete_verification(phone, &pending.request_id, "phone", &[token; 32], 5)
            .unwrap()
            .unwrap()
    }

    #[test]
    fn users_and_devices_are_numbered_from_one() {
        let store = AccountStore::open_in_memory().unwrap();
        assert_eq!(verified(&store, "+15550000001", 1), (1, 1, true));
        assert_eq!(verified(&store, "+15550000001", 2), (1, 2, false));
        assert_eq!(verified(&store, "+15550000002", 3), (2, 1, true));
        assert_eq!(store.device_by_token(&[2; 32]).unwrap(), Some((1, 2)));
        assert!(store.revoke_device(1, 2, 9).unwrap());
        assert!(!store.revoke_device(1, 2, 9).unwrap());
        assert_eq!(store.device_by_token(&[2; 32]).unwrap(), None);
        // A revoked device's number is not reused.
        assert_eq!(verified(&store, "+15550000001", 4), (1, 3, false));
        assert_eq!(store.live_devices(1).unwrap(), vec![1, 3]);
        assert_eq!(store.user_count().unwrap(), 2);
    }

    #[test]
    fn a_verification_completes_once() {
        let store = AccountStore::open_in_memory().unwrap();
        verified(&store, "+15550000001", 1);
        let again = store
            .complete_verification("+15550000001", "r1", "x", &[9; 32], 6)
            .unwrap();
        assert_eq!(again, None);
    }

    #[test]
    fn contacts_blocks_and_settings() {
        let store = AccountStore::open_in_memory().unwrap();
        for (i, phone) in ["+15550000001", "+15550000002", "+15550000003"]
            .iter()
            .enumerate()
        {
            verified(&store, phone, i as u8 + 1);
        }
        store.add_contacts(1, &[2, 3, 1], 0).unwrap();
        store.add_contacts(2, &[1], 0).unwrap();
        assert_eq!(store.contacts_of(1).unwrap(), vec![2, 3]);
        assert_eq!(store.contacted_by(1).unwrap(), vec![2]);
        assert!(store.is_contact(1, 3).unwrap());
        assert!(!store.is_contact(3, 1).unwrap());

        store.block(1, 2, 0).unwrap();
        store.block(1, 2, 0).unwrap();
        assert!(store.is_blocked(1, 2));
        assert!(!store.is_blocked(2, 1));
        assert_eq!(store.blocked_by(1), vec![2]);
        store.unblock(1, 2).unwrap();
        assert!(!store.is_blocked(1, 2));

        assert!(store.notifications_allowed(1, "c"));
        store
            .set_notification_settings(1, Some(&["c".to_string()]), None)
            .unwrap();
        assert!(!store.notifications_allowed(1, "c"));
        assert!(store.notifications_allowed(1, "d"));
        store
            .set_notification_settings(1, None, Some(true))
            .unwrap();
        assert!(!store.notifications_allowed(1, "d"));
        let s = store
            .set_notification_settings(1, Some(&[]), Some(false))
            .unwrap();
        assert_eq!(s, NotificationSettings::default());
        assert!(store.notifications_allowed(1, "c"));
    }

    #[test]
    fn the_memory_mirrors_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.sqlite3");
        {
            let store = AccountStore::open(&path).unwrap();
            verified(&store, "+15550000001", 1);
            verified(&store, "+15550000002", 2);
            store.block(2, 1, 0).unwrap();
            store
                .set_notification_settings(1, Some(&["c".to_string()]), Some(true))
                .unwrap();
        }
        let store = AccountStore::open(&path).unwrap();
        assert!(store.is_blocked(2, 1));
        let s = store.notification_settings(1);
        assert!(s.do_not_disturb && s.muted_chats.contains("c"));
    }

    #[test]
    fn profiles_update_field_by_field() {
        let store = AccountStore::open_in_memory().unwrap();
        verified(&store, "+15550000001", 1);
        let u = store
            .update_profile(
                1,
                &ProfileUpdate {
                    name: Some("Ann".into()),
                    profile_picture_media_id: Some("m1".into()),
                    ..Default::default()
                },
            )
            .unwrap()
            .unwrap();
        assert_eq!(
            (u.name.as_str(), u.profile_picture_media_id.as_deref()),
            ("Ann", Some("m1"))
        );
        let u = store
            .update_profile(
                1,
                &ProfileUpdate {
                    status_message: Some("busy".into()),
                    profile_picture_media_id: Some(String::new()),
                    ..Default::default()
                },
            )
            .unwrap()
            .unwrap();
        assert_eq!(u.name, "Ann");
        assert_eq!(u.status_message, "busy");
        assert_eq!(u.profile_picture_media_id, None);
        assert_eq!(
            store.update_profile(99, &ProfileUpdate::default()).unwrap(),
            None
        );
    }
}
