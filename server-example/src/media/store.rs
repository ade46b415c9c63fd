//! [`MediaStore`]: content-addressed blobs on disk and their rows in SQLite.
//!
//! ```text
//! <data-dir>/media.sqlite3          media_blobs, media, media_grants, tus_uploads
//! <data-dir>/media/ab/cdef…         a blob: its SHA-256 in hex, 2 + 62 characters
//! <data-dir>/media/ab/cdef….preview.jpg, ….thumbnail.jpg   image variants of that blob
//! <data-dir>/media/tmp/<random>     uploads in flight (emptied at open)
//! <data-dir>/media/tus/<upload_id>  resumable uploads not yet complete
//! ```
//!
//! A blob is stored once however many uploads carry the same bytes; each upload is a row of
//! `media` (with its own id and owner) pointing at it. A blob with no `media` row left is
//! removed by [`MediaStore::sweep`]. Blob files are written to `tmp/`, fsynced, then renamed
//! into place (and the directory fsynced) before their row commits, so a row never names a
//! missing or partial file; a crash leaves at worst a file in `tmp/`, which the next open
//! removes. Every filesystem step that must agree with a row (rename in, remove) runs under the
//! same lock as the SQL, so a sweep cannot delete a blob that an upload is just reusing.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use parking_lot::Mutex;
use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::thumbs;

/// File name of the media database inside the data directory.
pub const MEDIA_FILE: &str = "media.sqlite3";

/// Directory of the blobs inside the data directory.
pub const MEDIA_DIR: &str = "media";

/// Bytes kept from the start of an upload for MIME sniffing.
pub const SNIFF_BYTES: usize = 8192;

/// Bytes buffered in memory before a write to disk.
const WRITE_BUFFER_BYTES: usize = 256 * 1024;

const _: () = assert!(SNIFF_BYTES <= WRITE_BUFFER_BYTES);

/// A failure of the media store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MediaError {
    /// SQLite refused.
    #[error("media database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A file operation failed.
    #[error("media file {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// No media with this id.
    #[error("no such media")]
    NotFound,
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> MediaError + '_ {
    move |source| MediaError::Io {
        path: path.to_owned(),
        source,
    }
}

/// A representation of a media item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Variant {
    /// The bytes as uploaded.
    #[default]
    Original,
    /// Images: fits in 640×640, JPEG.
    Preview,
    /// Images: fits in 150×150, JPEG.
    Thumbnail,
}

impl Variant {
    /// The name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Original => "original",
            Self::Preview => "preview",
            Self::Thumbnail => "thumbnail",
        }
    }
}

/// Whether a blob's image variants exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VariantState {
    /// Not an image we make variants of.
    None,
    /// Queued or being made.
    Pending,
    /// On disk.
    Ready,
    /// The image could not be decoded (malformed, unsupported or over the limits).
    Failed,
}

impl VariantState {
    fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Pending => "pending",
            Self::Ready => "ready",
            Self::Failed => "failed",
        }
    }

    fn parse(text: &str) -> Self {
        match text {
            "pending" => Self::Pending,
            "ready" => Self::Ready,
            "failed" => Self::Failed,
            _ => Self::None,
        }
    }
}

/// A media item: one upload, and what is known about its blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaInfo {
    /// Opaque id (32 hex digits).
    pub media_id: String,
    /// The uploader.
    pub owner_id: u64,
    /// SHA-256 of the bytes, lowercase hex.
    pub sha256: String,
    /// Bytes.
    pub size: u64,
    /// Sniffed from the bytes.
    pub mime: String,
    /// As the client named it.
    pub file_name: Option<String>,
    /// As the client reported it (voice notes, video).
    pub duration_ms: Option<u64>,
    /// Upload time.
    pub created_at_ms: u64,
    /// Image variants.
    pub variants: VariantState,
    /// Image width (upright), once variants are made.
    pub width: Option<u32>,
    /// Image height (upright), once variants are made.
    pub height: Option<u32>,
}

/// A media item to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMedia {
    /// Its id.
    pub media_id: String,
    /// The uploader.
    pub owner_id: u64,
    /// SHA-256 of the bytes, lowercase hex.
    pub sha256: String,
    /// Bytes.
    pub size: u64,
    /// Sniffed MIME type.
    pub mime: String,
    /// Client metadata.
    pub file_name: Option<String>,
    /// Client metadata.
    pub duration_ms: Option<u64>,
}

/// A resumable (tus) upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TusUpload {
    /// Its id; also the media id once complete.
    pub upload_id: String,
    /// The uploader.
    pub owner_id: u64,
    /// Declared total length.
    pub length: u64,
    /// Bytes received and synced.
    pub offset: u64,
    /// The `Upload-Metadata` header as sent.
    pub metadata: String,
    /// Client metadata (from `Upload-Metadata`).
    pub file_name: Option<String>,
    /// Client metadata (from `Upload-Metadata`).
    pub duration_ms: Option<u64>,
    /// Creation time.
    pub created_at_ms: u64,
    /// When an unfinished upload is dropped.
    pub expires_at_ms: u64,
    /// Whether the media exists.
    pub completed: bool,
}

/// What [`MediaStore::sweep`] removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Grants whose messages expired.
    pub grants_expired: usize,
    /// Media rows no live grant referenced (past the grace period).
    pub media_removed: usize,
    /// Blob files no media row referenced.
    pub blobs_removed: usize,
    /// Bytes of the removed blobs (originals only).
    pub bytes_freed: u64,
    /// Expired resumable uploads.
    pub uploads_expired: usize,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS media_blobs (
    sha256 TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    mime TEXT NOT NULL,
    variants TEXT NOT NULL,
    width INTEGER,
    height INTEGER,
    created_at_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS media (
    media_id TEXT PRIMARY KEY,
    owner_id INTEGER NOT NULL,
    sha256 TEXT NOT NULL REFERENCES media_blobs(sha256),
    file_name TEXT,
    duration_ms INTEGER,
    created_at_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS media_by_blob ON media (sha256);
CREATE TABLE IF NOT EXISTS media_grants (
    media_id TEXT NOT NULL,
    chat_id TEXT NOT NULL,
    expires_at_ms INTEGER,
    granted_at_ms INTEGER NOT NULL,
    PRIMARY KEY (media_id, chat_id)
);
CREATE INDEX IF NOT EXISTS media_grants_by_expiry ON media_grants (expires_at_ms);
CREATE TABLE IF NOT EXISTS tus_uploads (
    upload_id TEXT PRIMARY KEY,
    owner_id INTEGER NOT NULL,
    length INTEGER NOT NULL,
    offset INTEGER NOT NULL,
    metadata TEXT NOT NULL,
    file_name TEXT,
    duration_ms INTEGER,
    created_at_ms INTEGER NOT NULL,
    expires_at_ms INTEGER NOT NULL,
    completed INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS tus_uploads_by_owner ON tus_uploads (owner_id, completed);
";

/// Creates the media tables in `conn` if they are missing.
pub fn init(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(SCHEMA)
}

const MEDIA_COLUMNS: &str = "m.media_id, m.owner_id, m.sha256, b.size, b.mime, m.file_name,
    m.duration_ms, m.created_at_ms, b.variants, b.width, b.height";

fn media_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<MediaInfo> {
    Ok(MediaInfo {
        media_id: r.get(0)?,
        owner_id: r.get::<_, i64>(1)? as u64,
        sha256: r.get(2)?,
        size: r.get::<_, i64>(3)? as u64,
        mime: r.get(4)?,
        file_name: r.get(5)?,
        duration_ms: r.get::<_, Option<i64>>(6)?.map(|d| d as u64),
        created_at_ms: r.get::<_, i64>(7)? as u64,
        variants: VariantState::parse(&r.get::<_, String>(8)?),
        width: r.get::<_, Option<i64>>(9)?.map(|w| w as u32),
        height: r.get::<_, Option<i64>>(10)?.map(|h| h as u32),
    })
}

const TUS_COLUMNS: &str = "upload_id, owner_id, length, offset, metadata, file_name, duration_ms,
    created_at_ms, expires_at_ms, completed";

fn tus_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<TusUpload> {
    Ok(TusUpload {
        upload_id: r.get(0)?,
        owner_id: r.get::<_, i64>(1)? as u64,
        length: r.get::<_, i64>(2)? as u64,
        offset: r.get::<_, i64>(3)? as u64,
        metadata: r.get(4)?,
        file_name: r.get(5)?,
        duration_ms: r.get::<_, Option<i64>>(6)?.map(|d| d as u64),
        created_at_ms: r.get::<_, i64>(7)? as u64,
        expires_at_ms: r.get::<_, i64>(8)? as u64,
        completed: r.get(9)?,
    })
}

/// The media database and blob directory. All methods take `&self`.
pub struct MediaStore {
    conn: Mutex<Connection>,
    root: PathBuf,
}

impl std::fmt::Debug for MediaStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaStore")
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}

/// Whether `text` is a 64-digit lowercase hex SHA-256.
fn is_sha256_hex(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

impl MediaStore {
    /// Opens `<data_dir>/media.sqlite3` and `<data_dir>/media/`, creating them if needed, and
    /// empties `media/tmp/` (uploads a crash interrupted).
    pub fn open(data_dir: &Path) -> Result<Self, MediaError> {
        let db = data_dir.join(MEDIA_FILE);
        let conn = Connection::open(&db)?;
        Self::with_connection(conn, data_dir.join(MEDIA_DIR))
    }

    /// Uses `conn` for the tables and `root` for the files.
    pub fn with_connection(conn: Connection, root: PathBuf) -> Result<Self, MediaError> {
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        init(&conn)?;
        let store = Self {
            conn: Mutex::new(conn),
            root,
        };
        let tmp = store.tmp_dir();
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).map_err(io_error(&tmp))?;
        }
        for dir in [store.tmp_dir(), store.tus_dir()] {
            std::fs::create_dir_all(&dir).map_err(io_error(&dir))?;
        }
        Ok(store)
    }

    /// The blob directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where uploads in flight are written.
    pub fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    /// Where unfinished resumable uploads are kept.
    pub fn tus_dir(&self) -> PathBuf {
        self.root.join("tus")
    }

    /// The file of a resumable upload.
    pub fn tus_path(&self, upload_id: &str) -> PathBuf {
        assert!(upload_id.bytes().all(|b| b.is_ascii_hexdigit()));
        self.tus_dir().join(upload_id)
    }

    /// The file of a blob or of one of its variants.
    ///
    /// # Panics
    /// If `sha256` is not 64 lowercase hex digits (ids come from this store).
    pub fn path(&self, sha256: &str, variant: Variant) -> PathBuf {
        assert!(is_sha256_hex(sha256), "a SHA-256 in hex");
        let dir = self.root.join(&sha256[..2]);
        match variant {
            Variant::Original => dir.join(&sha256[2..]),
            Variant::Preview => dir.join(format!("{}.preview.jpg", &sha256[2..])),
            Variant::Thumbnail => dir.join(format!("{}.thumbnail.jpg", &sha256[2..])),
        }
    }

    /// Records `media` whose bytes are the (synced) file `tmp`: the file becomes the blob, or
    /// is removed if the blob already exists. Returns the media and whether its variants are
    /// still to be made.
    pub fn commit(
        &self,
        tmp: &Path,
        media: &NewMedia,
        now_ms: u64,
    ) -> Result<(MediaInfo, bool), MediaError> {
        let blob = self.path(&media.sha256, Variant::Original);
        let mut conn = self.conn.lock();
        let tx = conn.transaction()?;
        let existing: Option<String> = tx
            .query_row(
                "SELECT variants FROM media_blobs WHERE sha256 = ?1",
                [&media.sha256],
                |r| r.get(0),
            )
            .optional()?;
        let new_blob = existing.is_none();
        let state = match existing {
            Some(state) => {
                std::fs::remove_file(tmp).map_err(io_error(tmp))?;
                VariantState::parse(&state)
            }
            None => {
                let dir = blob.parent().expect("a blob path has a directory");
                std::fs::create_dir_all(dir).map_err(io_error(dir))?;
                std::fs::rename(tmp, &blob).map_err(io_error(&blob))?;
                // IMPORTANT: fsync the directory, or the rename may not survive a power cut.
                File::open(dir)
                    .and_then(|d| d.sync_all())
                    .map_err(io_error(dir))?;
                let state = if thumbs::has_variants(&media.mime) {
                    VariantState::Pending
                } else {
                    VariantState::None
                };
                tx.execute(
                    "INSERT INTO media_blobs (sha256, size, mime, variants, created_at_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![
                        media.sha256,
                        media.size as i64,
                        media.mime,
                        state.as_str(),
                        now_ms as i64
                    ],
                )?;
                state
            }
        };
        let inserted = tx.execute(
            "INSERT INTO media (media_id, owner_id, sha256, file_name, duration_ms, created_at_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                media.media_id,
                media.owner_id as i64,
                media.sha256,
                media.file_name,
                media.duration_ms.map(|d| d as i64),
                now_ms as i64
            ],
        );
        let committed = inserted.and_then(|_| tx.commit());
        if let Err(e) = committed {
            if new_blob {
                let _ = std::fs::remove_file(&blob);
            }
            return Err(e.into());
        }
        let info = query_media(&conn, &media.media_id)?.ok_or(MediaError::NotFound)?;
        Ok((info, new_blob && state == VariantState::Pending))
    }

    /// A media item.
    pub fn media(&self, media_id: &str) -> Result<Option<MediaInfo>, MediaError> {
        query_media(&self.conn.lock(), media_id)
    }

    /// Records the outcome of making a blob's variants. Returns `false` (and removes the
    /// variant files) if the blob was swept meanwhile.
    pub fn set_variants(
        &self,
        sha256: &str,
        state: VariantState,
        dims: Option<(u32, u32)>,
    ) -> Result<bool, MediaError> {
        let conn = self.conn.lock();
        let updated = conn.execute(
            "UPDATE media_blobs SET variants = ?2, width = ?3, height = ?4 WHERE sha256 = ?1",
            params![sha256, state.as_str(), dims.map(|d| d.0), dims.map(|d| d.1)],
        )?;
        if updated == 0 {
            for variant in [Variant::Preview, Variant::Thumbnail] {
                let _ = std::fs::remove_file(self.path(sha256, variant));
            }
        }
        Ok(updated == 1)
    }

    /// Lets members of `chat_id` read `media_id` until `expires_at_ms` (`None`: until revoked).
    /// A second grant to the same chat keeps the later expiry. `Err(NotFound)` for an unknown
    /// media id.
    pub fn grant(
        &self,
        media_id: &str,
        chat_id: &str,
        expires_at_ms: Option<u64>,
        now_ms: u64,
    ) -> Result<(), MediaError> {
        let conn = self.conn.lock();
        let exists = conn
            .prepare_cached("SELECT 1 FROM media WHERE media_id = ?1")?
            .exists([media_id])?;
        if !exists {
            return Err(MediaError::NotFound);
        }
        conn.execute(
            "INSERT INTO media_grants (media_id, chat_id, expires_at_ms, granted_at_ms)
             VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (media_id, chat_id) DO UPDATE SET
                expires_at_ms = CASE
                    WHEN expires_at_ms IS NULL OR ?3 IS NULL THEN NULL
                    ELSE MAX(expires_at_ms, ?3) END",
            params![
                media_id,
                chat_id,
                expires_at_ms.map(|e| e as i64),
                now_ms as i64
            ],
        )?;
        Ok(())
    }

    /// Withdraws the grant of `media_id` to `chat_id` (its message was deleted).
    pub fn revoke(&self, media_id: &str, chat_id: &str) -> Result<(), MediaError> {
        self.conn.lock().execute(
            "DELETE FROM media_grants WHERE media_id = ?1 AND chat_id = ?2",
            params![media_id, chat_id],
        )?;
        Ok(())
    }

    /// The chats `media_id` is granted to at `now_ms`.
    pub fn live_grants(&self, media_id: &str, now_ms: u64) -> Result<Vec<String>, MediaError> {
        let conn = self.conn.lock();
        let mut stmt = conn.prepare_cached(
            "SELECT chat_id FROM media_grants
             WHERE media_id = ?1 AND (expires_at_ms IS NULL OR expires_at_ms > ?2)
             ORDER BY granted_at_ms",
        )?;
        let rows = stmt.query_map(params![media_id, now_ms as i64], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Removes expired grants, media that no live grant references and that are older than
    /// `orphan_grace_ms` (an upload not yet sent), blobs that no media references (with their
    /// variants), and expired resumable uploads.
    pub fn sweep(&self, now_ms: u64, orphan_grace_ms: u64) -> Result<SweepReport, MediaError> {
        let mut report = SweepReport::default();
        let mut conn = self.conn.lock();
        let tx = conn.transaction()?;
        report.grants_expired = tx.execute(
            "DELETE FROM media_grants WHERE expires_at_ms IS NOT NULL AND expires_at_ms <= ?1",
            [now_ms as i64],
        )?;
        report.media_removed = tx.execute(
            "DELETE FROM media WHERE created_at_ms + ?2 <= ?1 AND NOT EXISTS
                (SELECT 1 FROM media_grants g WHERE g.media_id = media.media_id)",
            params![now_ms as i64, orphan_grace_ms as i64],
        )?;
        let orphans: Vec<(String, u64)> = {
            let mut stmt = tx.prepare(
                "DELETE FROM media_blobs WHERE NOT EXISTS
                    (SELECT 1 FROM media m WHERE m.sha256 = media_blobs.sha256)
                 RETURNING sha256, size",
            )?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))?;
            rows.collect::<Result<_, _>>()?
        };
        let uploads: Vec<(String, bool)> = {
            let mut stmt = tx.prepare(
                "DELETE FROM tus_uploads WHERE expires_at_ms <= ?1 RETURNING upload_id, completed",
            )?;
            let rows = stmt.query_map([now_ms as i64], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect::<Result<_, _>>()?
        };
        tx.commit()?;
        // The rows are gone; the files follow under the same lock, so no upload can revive a
        // blob in between.
        for (sha256, size) in orphans {
            let original = self.path(&sha256, Variant::Original);
            match std::fs::remove_file(&original) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    tracing::warn!(%sha256, "swept blob had no file");
                }
                Err(e) => return Err(io_error(&original)(e)),
            }
            for variant in [Variant::Preview, Variant::Thumbnail] {
                let _ = std::fs::remove_file(self.path(&sha256, variant));
            }
            report.blobs_removed += 1;
            report.bytes_freed += size;
        }
        for (upload_id, completed) in uploads {
            if !completed {
                let _ = std::fs::remove_file(self.tus_path(&upload_id));
            }
            report.uploads_expired += 1;
        }
        drop(conn);
        Ok(report)
    }

    // ---- resumable uploads ----

    /// Records a new resumable upload and creates its empty file.
    pub fn tus_create(&self, upload: &TusUpload) -> Result<(), MediaError> {
        assert!(upload.offset == 0 && !upload.completed);
        let path = self.tus_path(&upload.upload_id);
        File::create_new(&path).map_err(io_error(&path))?;
        let inserted = self.conn.lock().execute(
            "INSERT INTO tus_uploads (upload_id, owner_id, length, offset, metadata, file_name,
                duration_ms, created_at_ms, expires_at_ms, completed)
             VALUES (?1, ?2, ?3, 0, ?4, ?5, ?6, ?7, ?8, 0)",
            params![
                upload.upload_id,
                upload.owner_id as i64,
                upload.length as i64,
                upload.metadata,
                upload.file_name,
                upload.duration_ms.map(|d| d as i64),
                upload.created_at_ms as i64,
                upload.expires_at_ms as i64
            ],
        );
        if let Err(e) = inserted {
            let _ = std::fs::remove_file(&path);
            return Err(e.into());
        }
        Ok(())
    }

    /// A resumable upload.
    pub fn tus_upload(&self, upload_id: &str) -> Result<Option<TusUpload>, MediaError> {
        let conn = self.conn.lock();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {TUS_COLUMNS} FROM tus_uploads WHERE upload_id = ?1"
        ))?;
        Ok(stmt.query_row([upload_id], tus_from_row).optional()?)
    }

    /// Unfinished resumable uploads of `owner_id`.
    pub fn tus_open_count(&self, owner_id: u64) -> Result<usize, MediaError> {
        let n: i64 = self.conn.lock().query_row(
            "SELECT COUNT(*) FROM tus_uploads WHERE owner_id = ?1 AND completed = 0",
            [owner_id as i64],
            |r| r.get(0),
        )?;
        Ok(n as usize)
    }

    /// Records that the upload's file holds `offset` synced bytes.
    pub fn tus_set_offset(&self, upload_id: &str, offset: u64) -> Result<(), MediaError> {
        self.conn.lock().execute(
            "UPDATE tus_uploads SET offset = ?2 WHERE upload_id = ?1 AND completed = 0",
            params![upload_id, offset as i64],
        )?;
        Ok(())
    }

    /// Marks the upload complete (its media row exists).
    pub fn tus_complete(&self, upload_id: &str) -> Result<(), MediaError> {
        self.conn.lock().execute(
            "UPDATE tus_uploads SET completed = 1, offset = length WHERE upload_id = ?1",
            [upload_id],
        )?;
        Ok(())
    }

    /// Forgets a resumable upload and removes its file if unfinished.
    pub fn tus_delete(&self, upload_id: &str) -> Result<(), MediaError> {
        let conn = self.conn.lock();
        conn.execute("DELETE FROM tus_uploads WHERE upload_id = ?1", [upload_id])?;
        let path = self.tus_path(upload_id);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_error(&path)(e)),
        }
    }

    /// Blob files on disk (originals only): for tests and metrics.
    pub fn blob_files(&self) -> Result<usize, MediaError> {
        let mut n = 0;
        let entries = std::fs::read_dir(&self.root).map_err(io_error(&self.root))?;
        for entry in entries {
            let entry = entry.map_err(io_error(&self.root))?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.len() != 2 || !entry.path().is_dir() {
                continue;
            }
            let dir = entry.path();
            for file in std::fs::read_dir(&dir).map_err(io_error(&dir))? {
                let file = file.map_err(io_error(&dir))?;
                if file.file_name().len() == 62 {
                    n += 1;
                }
            }
        }
        Ok(n)
    }
}

fn query_media(conn: &Connection, media_id: &str) -> Result<Option<MediaInfo>, MediaError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {MEDIA_COLUMNS} FROM media m JOIN media_blobs b ON b.sha256 = m.sha256
         WHERE m.media_id = ?1"
    ))?;
    Ok(stmt.query_row([media_id], media_from_row).optional()?)
}

/// The MIME type of bytes that start with `head`: by magic numbers (`infer`), else
/// `text/plain` for UTF-8 without NULs, else `application/octet-stream`. What the client
/// claims is never used.
pub fn sniff(head: &[u8]) -> String {
    if let Some(kind) = infer::get(head) {
        return kind.mime_type().to_owned();
    }
    let text = match std::str::from_utf8(head) {
        Ok(_) => true,
        // A character cut at the end of the sniffed prefix is fine.
        Err(e) => e.error_len().is_none() && head.len() >= SNIFF_BYTES,
    };
    if text && !head.is_empty() && !head.contains(&0) {
        "text/plain".to_owned()
    } else {
        "application/octet-stream".to_owned()
    }
}

/// A digest computed while writing.
#[derive(Debug, Clone)]
pub(crate) enum Hasher {
    /// SHA-256 (content addresses; tus `Upload-Checksum: sha256`).
    Sha256(Sha256),
    /// SHA-1 (tus `Upload-Checksum: sha1`, the algorithm the tus spec requires).
    Sha1(sha1::Sha1),
}

impl Hasher {
    fn update(&mut self, bytes: &[u8]) {
        match self {
            Self::Sha256(h) => h.update(bytes),
            Self::Sha1(h) => sha1::Digest::update(h, bytes),
        }
    }

    /// The digest.
    pub(crate) fn finish(self) -> Vec<u8> {
        match self {
            Self::Sha256(h) => h.finalize().to_vec(),
            Self::Sha1(h) => sha1::Digest::finalize(h).to_vec(),
        }
    }
}

/// What a [`BlobWriter`] wrote.
#[derive(Debug)]
pub(crate) struct Written {
    /// Bytes written by this writer.
    pub(crate) bytes: u64,
    /// The digest of those bytes, if one was asked for.
    pub(crate) digest: Option<Vec<u8>>,
    /// The first [`SNIFF_BYTES`] of them.
    pub(crate) head: Vec<u8>,
}

/// Appends a stream of chunks to a file without holding more than [`WRITE_BUFFER_BYTES`] in
/// memory; the writes and the hashing run on the blocking pool.
pub(crate) struct BlobWriter {
    file: Option<File>,
    buf: Vec<u8>,
    hasher: Option<Hasher>,
    head: Vec<u8>,
    bytes: u64,
}

impl BlobWriter {
    /// A writer appending to `file` (positioned where the bytes go).
    pub(crate) fn new(file: File, hasher: Option<Hasher>) -> Self {
        Self {
            file: Some(file),
            buf: Vec::with_capacity(WRITE_BUFFER_BYTES),
            hasher,
            head: Vec::new(),
            bytes: 0,
        }
    }

    /// Bytes accepted so far.
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Appends `chunk`.
    pub(crate) async fn write(&mut self, chunk: &[u8]) -> io::Result<()> {
        if self.head.len() < SNIFF_BYTES {
            let take = (SNIFF_BYTES - self.head.len()).min(chunk.len());
            self.head.extend_from_slice(&chunk[..take]);
        }
        self.bytes += chunk.len() as u64;
        let mut rest = chunk;
        while !rest.is_empty() {
            let take = (WRITE_BUFFER_BYTES - self.buf.len()).min(rest.len());
            self.buf.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if self.buf.len() == WRITE_BUFFER_BYTES {
                self.flush().await?;
            }
        }
        Ok(())
    }

    async fn flush(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let mut file = self
            .file
            .take()
            .ok_or_else(|| io::Error::other("an earlier write failed"))?;
        let buf = std::mem::take(&mut self.buf);
        let mut hasher = self.hasher.take();
        let (file, mut buf, hasher, result) = tokio::task::spawn_blocking(move || {
            let result = file.write_all(&buf);
            if let Some(h) = hasher.as_mut() {
                h.update(&buf);
            }
            (file, buf, hasher, result)
        })
        .await
        .map_err(io::Error::other)?;
        result?;
        buf.clear();
        self.file = Some(file);
        self.buf = buf;
        self.hasher = hasher;
        Ok(())
    }

    /// Writes what is buffered and fsyncs the file.
    pub(crate) async fn finish(mut self) -> io::Result<Written> {
        self.flush().await?;
        let file = self
            .file
            .take()
            .ok_or_else(|| io::Error::other("an earlier write failed"))?;
        tokio::task::spawn_blocking(move || file.sync_all())
            .await
            .map_err(io::Error::other)??;
        Ok(Written {
            bytes: self.bytes,
            digest: self.hasher.take().map(Hasher::finish),
            head: std::mem::take(&mut self.head),
        })
    }
}

/// SHA-256 and the first [`SNIFF_BYTES`] of a whole file (blocking).
pub(crate) fn hash_file(path: &Path) -> io::Result<([u8; 32], Vec<u8>)> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut head = Vec::new();
    let mut buf = vec![0; WRITE_BUFFER_BYTES];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        if head.len() < SNIFF_BYTES {
            let take = (SNIFF_BYTES - head.len()).min(n);
            head.extend_from_slice(&buf[..take]);
        }
        hasher.update(&buf[..n]);
    }
    Ok((hasher.finalize().into(), head))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new_media(id: &str, sha: &str, mime: &str) -> NewMedia {
        NewMedia {
            media_id: id.into(),
            owner_id: 1,
            sha256: sha.into(),
            size: 3,
            mime: mime.into(),
            file_name: None,
            duration_ms: Some(1500),
        }
    }

    fn tmp_file(store: &MediaStore, name: &str) -> PathBuf {
        let p = store.tmp_dir().join(name);
        std::fs::write(&p, b"abc").unwrap();
        p
    }

    #[test]
    fn identical_blobs_are_stored_once_and_swept_when_unreferenced() {
        let dir = tempfile::tempdir().unwrap();
        let store = MediaStore::open(dir.path()).unwrap();
        let sha = "ab".repeat(32);
        let (a, variants) = store
            .commit(
                &tmp_file(&store, "1"),
                &new_media("a", &sha, "image/png"),
                10,
            )
            .unwrap();
        assert!(variants);
        assert_eq!(a.duration_ms, Some(1500));
        let (_, variants) = store
            .commit(
                &tmp_file(&store, "2"),
                &new_media("b", &sha, "image/png"),
                20,
            )
            .unwrap();
        assert!(!variants, "the blob's variants are already on their way");
        assert_eq!(store.blob_files().unwrap(), 1);
        assert_eq!(std::fs::read_dir(store.tmp_dir()).unwrap().count(), 0);

        store.grant("a", "chat", Some(150), 11).unwrap();
        store.grant("a", "chat", Some(50), 12).unwrap();
        assert_eq!(
            store.live_grants("a", 149).unwrap(),
            vec!["chat".to_string()]
        );
        assert!(store.live_grants("a", 150).unwrap().is_empty());
        assert!(matches!(
            store.grant("zz", "chat", None, 0),
            Err(MediaError::NotFound)
        ));
        // Within the grace period nothing goes.
        let r = store.sweep(30, 100).unwrap();
        assert_eq!(r, SweepReport::default());
        // b is unreferenced past its grace; a still has a grant until 150.
        let r = store.sweep(120, 100).unwrap();
        assert_eq!((r.media_removed, r.blobs_removed), (1, 0));
        let r = store.sweep(200, 100).unwrap();
        assert_eq!(
            (r.grants_expired, r.media_removed, r.blobs_removed),
            (1, 1, 1)
        );
        assert_eq!(store.blob_files().unwrap(), 0);
        assert!(
            !store
                .set_variants(&sha, VariantState::Ready, Some((1, 1)))
                .unwrap()
        );
    }

    #[test]
    fn sniffing_ignores_names_and_claims() {
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR"), "image/png");
        assert_eq!(sniff(b"\xff\xd8\xff\xe0\0\x10JFIF\0"), "image/jpeg");
        assert_eq!(sniff(b"hello"), "text/plain");
        assert_eq!(sniff(b"\0\x01\x02binary"), "application/octet-stream");
        assert_eq!(sniff(b""), "application/octet-stream");
    }
}
