//! What the engine does not keep about chats: a group's name, description and picture, and a
//! chat's disappearing-messages timer as last set through this server, in one SQLite file
//! (`messaging.sqlite3` in the data directory).
//!
//! The engine is the truth for membership and roles; this store only adds display metadata.
//! A group is created in the engine first and described here second: a crash in between leaves
//! a group without a name (shown as `""`), never a name without a group.

use std::path::Path;

use parking_lot::Mutex;
use rusqlite::{Connection, OptionalExtension, params};

use crate::accounts::StoreError;

const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS groups (
    chat_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    picture_media_id TEXT,
    created_by INTEGER NOT NULL,
    created_at_ms INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS chat_settings (
    chat_id TEXT PRIMARY KEY,
    ttl_s INTEGER NOT NULL,
    updated_by INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL
);
";

/// A group's display metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupInfo {
    /// Shown to members.
    pub name: String,
    /// "About" text ("" if none).
    pub description: String,
    /// A media id, once set.
    pub picture_media_id: Option<String>,
    /// The creator.
    pub created_by: u64,
    /// Creation time, ms since the Unix epoch.
    pub created_at_ms: u64,
}

/// A change to a group's metadata: `None` leaves a field alone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupUpdate {
    /// New name.
    pub name: Option<String>,
    /// New description.
    pub description: Option<String>,
    /// New picture; `Some("")` removes it.
    pub picture_media_id: Option<String>,
}

/// Group metadata and chat settings. All methods take `&self`; each is one short statement.
pub struct GroupStore {
    conn: Mutex<Connection>,
}

impl std::fmt::Debug for GroupStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupStore").finish_non_exhaustive()
    }
}

impl GroupStore {
    /// Opens (creating if needed) the database at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Self::init(Connection::open(path)?)
    }

    /// A private in-memory database: for tests.
    pub fn open_in_memory() -> Result<Self, StoreError> {
        Self::init(Connection::open_in_memory()?)
    }

    fn init(conn: Connection) -> Result<Self, StoreError> {
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
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
        Ok(Self {
            conn: Mutex::new(conn),
        })
    }

    /// Records a new group's metadata.
    pub fn insert(&self, chat_id: &str, info: &GroupInfo) -> Result<(), StoreError> {
        self.conn.lock().execute(
            "INSERT OR REPLACE INTO groups
             (chat_id, name, description, picture_media_id, created_by, created_at_ms, updated_at_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
            params![
                chat_id,
                info.name,
                info.description,
                info.picture_media_id,
                info.created_by as i64,
                info.created_at_ms as i64
            ],
        )?;
        Ok(())
    }

    /// A group's metadata, if any was recorded.
    pub fn get(&self, chat_id: &str) -> Result<Option<GroupInfo>, StoreError> {
        let conn = self.conn.lock();
        let mut stmt = conn.prepare_cached(
            "SELECT name, description, picture_media_id, created_by, created_at_ms
             FROM groups WHERE chat_id = ?1",
        )?;
        Ok(stmt
            .query_row([chat_id], |r| {
                Ok(GroupInfo {
                    name: r.get(0)?,
                    description: r.get(1)?,
                    picture_media_id: r.get(2)?,
                    created_by: r.get::<_, i64>(3)? as u64,
                    created_at_ms: r.get::<_, i64>(4)? as u64,
                })
            })
            .optional()?)
    }

    /// Applies `update` (creating an unnamed row if the group had none) and returns the result.
    pub fn update(
        &self,
        chat_id: &str,
        update: &GroupUpdate,
        by: u64,
        now_ms: u64,
    ) -> Result<GroupInfo, StoreError> {
        {
            let mut conn = self.conn.lock();
            let tx = conn.transaction()?;
            tx.execute(
                "INSERT OR IGNORE INTO groups
                 (chat_id, name, description, created_by, created_at_ms, updated_at_ms)
                 VALUES (?1, '', '', ?2, ?3, ?3)",
                params![chat_id, by as i64, now_ms as i64],
            )?;
            if let Some(name) = &update.name {
                tx.execute(
                    "UPDATE groups SET name = ?2 WHERE chat_id = ?1",
                    params![chat_id, name],
                )?;
            }
            if let Some(description) = &update.description {
                tx.execute(
                    "UPDATE groups SET description = ?2 WHERE chat_id = ?1",
                    params![chat_id, description],
                )?;
            }
            if let Some(picture) = &update.picture_media_id {
                let picture = (!picture.is_empty()).then_some(picture);
                tx.execute(
                    "UPDATE groups SET picture_media_id = ?2 WHERE chat_id = ?1",
                    params![chat_id, picture],
                )?;
            }
            tx.execute(
                "UPDATE groups SET updated_at_ms = ?2 WHERE chat_id = ?1",
                params![chat_id, now_ms as i64],
            )?;
            tx.commit()?;
        }
        Ok(self
            .get(chat_id)?
            .expect("the row was inserted in the transaction above"))
    }

    /// Records a chat's disappearing-messages timer (after the engine stored it).
    pub fn set_chat_ttl(
        &self,
        chat_id: &str,
        ttl_s: u64,
        by: u64,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        self.conn.lock().execute(
            "INSERT INTO chat_settings (chat_id, ttl_s, updated_by, updated_at_ms)
             VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (chat_id) DO UPDATE SET ttl_s = ?2, updated_by = ?3, updated_at_ms = ?4",
            params![chat_id, ttl_s as i64, by as i64, now_ms as i64],
        )?;
        Ok(())
    }

    /// A chat's disappearing-messages timer as last set (0: off or never set).
    pub fn chat_ttl_s(&self, chat_id: &str) -> Result<u64, StoreError> {
        let conn = self.conn.lock();
        let mut stmt = conn.prepare_cached("SELECT ttl_s FROM chat_settings WHERE chat_id = ?1")?;
        Ok(stmt
            .query_row([chat_id], |r| r.get::<_, i64>(0))
            .optional()?
            .map_or(0, |t| t as u64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_and_settings_round_trip() {
        let store = GroupStore::open_in_memory().unwrap();
        assert_eq!(store.get("g").unwrap(), None);
        let info = GroupInfo {
            name: "Lunch".into(),
            description: String::new(),
            picture_media_id: None,
            created_by: 1,
            created_at_ms: 10,
        };
        store.insert("g", &info).unwrap();
        assert_eq!(store.get("g").unwrap(), Some(info.clone()));
        let updated = store
            .update(
                "g",
                &GroupUpdate {
                    description: Some("Fridays".into()),
                    picture_media_id: Some("m1".into()),
                    ..GroupUpdate::default()
                },
                2,
                20,
            )
            .unwrap();
        assert_eq!(updated.name, "Lunch");
        assert_eq!(updated.description, "Fridays");
        assert_eq!(updated.picture_media_id.as_deref(), Some("m1"));
        let cleared = store
            .update(
                "g",
                &GroupUpdate {
                    picture_media_id: Some(String::new()),
                    ..GroupUpdate::default()
                },
                2,
                30,
            )
            .unwrap();
        assert_eq!(cleared.picture_media_id, None);
        // A group the store never saw (a crash between the engine and here) gets a row.
        assert_eq!(
            store
                .update("h", &GroupUpdate::default(), 3, 40)
                .unwrap()
                .created_by,
            3
        );

        assert_eq!(store.chat_ttl_s("c").unwrap(), 0);
        store.set_chat_ttl("c", 60, 1, 50).unwrap();
        store.set_chat_ttl("c", 3600, 2, 60).unwrap();
        assert_eq!(store.chat_ttl_s("c").unwrap(), 3600);
    }
}
