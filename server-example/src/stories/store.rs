//! [`StoryStore`]: stories and their views, in SQLite.
//!
//! Every read takes `now_ms` and ignores stories whose `expires_at_ms` has passed, so an
//! expired story is never returned even before [`StoryStore::sweep`] deletes it.

use std::path::Path;

use parking_lot::Mutex;
use rusqlite::{Connection, OptionalExtension, params};

/// Default file name of the story database inside the data directory.
pub const STORIES_FILE: &str = "stories.sqlite3";

/// A failure of the story database.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoryStoreError {
    /// SQLite refused.
    #[error("story database: {0}")]
    Sqlite(#[from] rusqlite::Error),
}

/// A story.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Story {
    /// Opaque id (32 hex digits).
    pub story_id: String,
    /// Who posted it.
    pub author_id: u64,
    /// `text`, `image` or `video`.
    pub message_type: String,
    /// Text, or a caption (opaque to the server).
    pub content: Option<String>,
    /// The media shown.
    pub media_id: Option<String>,
    /// Posting time.
    pub created_at_ms: u64,
    /// When it disappears.
    pub expires_at_ms: u64,
}

/// A view of a story.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct View {
    /// The viewer.
    pub viewer_id: u64,
    /// The first time they viewed it.
    pub viewed_at_ms: u64,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS stories (
    story_id TEXT PRIMARY KEY,
    author_id INTEGER NOT NULL,
    message_type TEXT NOT NULL,
    content TEXT,
    media_id TEXT,
    created_at_ms INTEGER NOT NULL,
    expires_at_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS stories_by_author ON stories (author_id, expires_at_ms);
CREATE INDEX IF NOT EXISTS stories_by_expiry ON stories (expires_at_ms);
CREATE TABLE IF NOT EXISTS story_views (
    story_id TEXT NOT NULL,
    viewer_id INTEGER NOT NULL,
    viewed_at_ms INTEGER NOT NULL,
    PRIMARY KEY (story_id, viewer_id)
);
";

/// Creates the story tables in `conn` if they are missing.
pub fn init(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(SCHEMA)
}

const STORY_COLUMNS: &str =
    "story_id, author_id, message_type, content, media_id, created_at_ms, expires_at_ms";

fn story_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Story> {
    Ok(Story {
        story_id: r.get(0)?,
        author_id: r.get::<_, i64>(1)? as u64,
        message_type: r.get(2)?,
        content: r.get(3)?,
        media_id: r.get(4)?,
        created_at_ms: r.get::<_, i64>(5)? as u64,
        expires_at_ms: r.get::<_, i64>(6)? as u64,
    })
}

/// The story database. All methods take `&self`.
pub struct StoryStore {
    conn: Mutex<Connection>,
}

impl std::fmt::Debug for StoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoryStore").finish_non_exhaustive()
    }
}

impl StoryStore {
    /// Opens (creating if needed) the database at `path`.
    pub fn open(path: &Path) -> Result<Self, StoryStoreError> {
        Self::with_connection(Connection::open(path)?)
    }

    /// A private in-memory database: for tests.
    pub fn open_in_memory() -> Result<Self, StoryStoreError> {
        Self::with_connection(Connection::open_in_memory()?)
    }

    /// Uses `conn` (for example one shared with other modules' tables).
    pub fn with_connection(conn: Connection) -> Result<Self, StoryStoreError> {
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        init(&conn)?;
        Ok(Self {
            conn: Mutex::new(conn),
        })
    }

    /// Stores `story`.
    pub fn insert(&self, story: &Story) -> Result<(), StoryStoreError> {
        assert!(story.expires_at_ms > story.created_at_ms);
        self.conn.lock().execute(
            &format!("INSERT INTO stories ({STORY_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"),
            params![
                story.story_id,
                story.author_id as i64,
                story.message_type,
                story.content,
                story.media_id,
                story.created_at_ms as i64,
                story.expires_at_ms as i64
            ],
        )?;
        Ok(())
    }

    /// A live story.
    pub fn story(&self, story_id: &str, now_ms: u64) -> Result<Option<Story>, StoryStoreError> {
        let conn = self.conn.lock();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {STORY_COLUMNS} FROM stories WHERE story_id = ?1 AND expires_at_ms > ?2"
        ))?;
        Ok(stmt
            .query_row(params![story_id, now_ms as i64], story_from_row)
            .optional()?)
    }

    /// Live stories of `author_id`, oldest first.
    pub fn live_by(&self, author_id: u64, now_ms: u64) -> Result<Vec<Story>, StoryStoreError> {
        let conn = self.conn.lock();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {STORY_COLUMNS} FROM stories WHERE author_id = ?1 AND expires_at_ms > ?2
             ORDER BY created_at_ms, story_id"
        ))?;
        let rows = stmt.query_map(params![author_id as i64, now_ms as i64], story_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// How many live stories `author_id` has.
    pub fn live_count(&self, author_id: u64, now_ms: u64) -> Result<usize, StoryStoreError> {
        let n: i64 = self.conn.lock().query_row(
            "SELECT COUNT(*) FROM stories WHERE author_id = ?1 AND expires_at_ms > ?2",
            params![author_id as i64, now_ms as i64],
            |r| r.get(0),
        )?;
        Ok(n as usize)
    }

    /// Records that `viewer_id` viewed the story (the first time counts). Returns whether
    /// this was the first view by this viewer.
    pub fn add_view(
        &self,
        story_id: &str,
        viewer_id: u64,
        now_ms: u64,
    ) -> Result<bool, StoryStoreError> {
        let n = self.conn.lock().execute(
            "INSERT OR IGNORE INTO story_views (story_id, viewer_id, viewed_at_ms) VALUES (?1, ?2, ?3)",
            params![story_id, viewer_id as i64, now_ms as i64],
        )?;
        Ok(n == 1)
    }

    /// Whether `viewer_id` has viewed the story.
    pub fn has_viewed(&self, story_id: &str, viewer_id: u64) -> Result<bool, StoryStoreError> {
        let conn = self.conn.lock();
        let mut stmt = conn
            .prepare_cached("SELECT 1 FROM story_views WHERE story_id = ?1 AND viewer_id = ?2")?;
        Ok(stmt.exists(params![story_id, viewer_id as i64])?)
    }

    /// The views of a story, in order.
    pub fn views(&self, story_id: &str) -> Result<Vec<View>, StoryStoreError> {
        let conn = self.conn.lock();
        let mut stmt = conn.prepare_cached(
            "SELECT viewer_id, viewed_at_ms FROM story_views WHERE story_id = ?1
             ORDER BY viewed_at_ms, viewer_id",
        )?;
        let rows = stmt.query_map([story_id], |r| {
            Ok(View {
                viewer_id: r.get::<_, i64>(0)? as u64,
                viewed_at_ms: r.get::<_, i64>(1)? as u64,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Deletes a story of `author_id` and its views; returns whether it existed.
    pub fn delete(&self, story_id: &str, author_id: u64) -> Result<bool, StoryStoreError> {
        let mut conn = self.conn.lock();
        let tx = conn.transaction()?;
        let n = tx.execute(
            "DELETE FROM stories WHERE story_id = ?1 AND author_id = ?2",
            params![story_id, author_id as i64],
        )?;
        if n == 1 {
            tx.execute("DELETE FROM story_views WHERE story_id = ?1", [story_id])?;
        }
        tx.commit()?;
        Ok(n == 1)
    }

    /// Deletes the stories expired by `now_ms` and their views; returns how many stories.
    pub fn sweep(&self, now_ms: u64) -> Result<usize, StoryStoreError> {
        let mut conn = self.conn.lock();
        let tx = conn.transaction()?;
        tx.execute(
            "DELETE FROM story_views WHERE story_id IN
                (SELECT story_id FROM stories WHERE expires_at_ms <= ?1)",
            [now_ms as i64],
        )?;
        let n = tx.execute(
            "DELETE FROM stories WHERE expires_at_ms <= ?1",
            [now_ms as i64],
        )?;
        tx.commit()?;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn story(id: &str, author: u64, at: u64) -> Story {
        Story {
            story_id: id.into(),
            author_id: author,
            message_type: "text".into(),
            content: Some("hi".into()),
            media_id: None,
            created_at_ms: at,
            expires_at_ms: at + 100,
        }
    }

    #[test]
    fn expired_stories_are_invisible_then_swept() {
        let store = StoryStore::open_in_memory().unwrap();
        store.insert(&story("a", 1, 0)).unwrap();
        store.insert(&story("b", 1, 50)).unwrap();
        assert!(store.add_view("a", 2, 10).unwrap());
        assert!(!store.add_view("a", 2, 20).unwrap());
        assert_eq!(
            store.views("a").unwrap(),
            vec![View {
                viewer_id: 2,
                viewed_at_ms: 10
            }]
        );
        assert_eq!(store.live_by(1, 99).unwrap().len(), 2);
        assert_eq!(store.live_by(1, 100).unwrap().len(), 1);
        assert!(store.story("a", 100).unwrap().is_none());
        assert_eq!(store.live_count(1, 100).unwrap(), 1);
        assert_eq!(store.sweep(100).unwrap(), 1);
        assert!(store.views("a").unwrap().is_empty());
        assert!(!store.delete("b", 2).unwrap());
        assert!(store.delete("b", 1).unwrap());
    }
}
