//! Media: uploads streamed to content-addressed storage, image variants, downloads with
//! `Range`, access through the chats a media item was sent in, and retention.
//!
//! **Upload.** `POST /api/v1/media/upload` takes the bytes as the raw body (any
//! `Content-Type`) or as `multipart/form-data` (the first part with a file name, or the part
//! named `file`). Large files go through the tus 1.0 protocol at `/api/v1/media/tus` (core,
//! creation, termination, checksum; see `tus.rs`), which resumes after a dropped connection.
//! Either way the bytes are streamed to disk — never held whole in memory — with SHA-256
//! computed on the way, refused past [`MediaConfig::bytes_max`] with `413 payload_too_large`,
//! and a cut-short upload leaves nothing behind. The MIME type is sniffed from the bytes
//! (`infer`); the client's `Content-Type` is ignored. Clients may attach metadata: `file_name`
//! and `duration_ms` (query parameters of a raw upload, form fields of a multipart one, keys of
//! tus `Upload-Metadata`), kept as given.
//!
//! **Storage.** Blobs are named by their SHA-256 (`<data-dir>/media/ab/cdef…`), so identical
//! bytes are stored once; each upload is its own media item (id, owner = uploader) referencing
//! the blob. See [`MediaStore`] for the layout and crash behaviour.
//!
//! **Variants.** JPEG, PNG and WebP images get a thumbnail (fits 150×150) and a preview (fits
//! 640×640), JPEG, made on the blocking pool after the upload has been answered, a few at a
//! time, with decode limits and EXIF orientation applied (`thumbs.rs`). A download of a variant
//! not yet made waits for it (up to [`MediaConfig::variant_wait_ms`]).
//!
//! **Download.** `GET /api/v1/media/{media_id}?variant=original|preview|thumbnail` with single
//! `Range`s (206, 416), a strong `ETag` (the SHA-256), `If-None-Match` (304), and
//! `Cache-Control: private, max-age=…, immutable` (a media id never changes its bytes).
//! `GET /api/v1/media/{media_id}/info` returns the metadata as JSON.
//!
//! **Access.** The uploader may read their media. Anyone else may read it only if it was
//! *granted* to a chat they are a member of: messaging calls [`Media::grant_until`] when it
//! stores a message carrying a `media_id`, and membership is asked of the [`MediaAccess`] given
//! at open. The server's messenger grants to the message itself (its `message_id`,
//! `<chat_id>:<seq>`, stands in for the chat), and its access check asks the engine whether the
//! reader can see that message ([`crate::messaging::can_see_grant`]), so each message is one
//! reference and deleting it revokes exactly its grant. Stories grant their media to the author's story
//! audience (`story:<author_id>`, see [`crate::stories`]), which is checked against the account
//! store. Strangers get `403 forbidden`; unknown ids `404 not_found`.
//!
//! **Retention.** [`Media::sweep`] removes expired grants, then media that no grant references
//! any more (once older than [`MediaConfig::orphan_grace_ms`], so an upload can still be sent),
//! then blobs no media references, and expired resumable uploads. A grant's expiry is the
//! message's: messaging passes the message's `expires_at` (its TTL, or the engine's retention
//! horizon) to [`Media::grant_until`], and [`Media::revoke`] when a message is deleted for
//! everyone. Run it periodically ([`Media::sweep_every`]).

mod routes;
mod store;
pub mod thumbs;
mod tus;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::{Semaphore, watch};

pub use routes::router;
pub use store::{
    MEDIA_DIR, MEDIA_FILE, MediaError, MediaInfo, MediaStore, NewMedia, SNIFF_BYTES, SweepReport,
    TusUpload, Variant, VariantState, init, sniff,
};
pub use thumbs::{ImageLimits, VariantSizes};
pub use tus::{TUS_CHECKSUM_ALGORITHMS, TUS_EXTENSIONS, TUS_VERSION};

use crate::accounts::AccountStore;
use crate::config::Config;
use crate::shutdown::Shutdown;
use crate::time::Clock;

/// Default largest upload: 100 MiB.
pub const BYTES_MAX_DEFAULT: u64 = 100 * 1024 * 1024;

/// Longest client-supplied file name, in bytes.
pub const FILE_NAME_BYTES_MAX: usize = 255;

/// Media settings. Defaults in [`MediaConfig::default`]; [`MediaConfig::from_config`] takes
/// the size limit from the server's `--media-bytes-max`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaConfig {
    /// Largest upload in bytes (raw, multipart or tus). Default 100 MiB.
    pub bytes_max: u64,
    /// Variant sizes (150 and 640).
    pub sizes: VariantSizes,
    /// Image decoding bounds (16 384 px a side, 256 MiB of pixels).
    pub image_limits: ImageLimits,
    /// Images whose variants are made at the same time (2): bounds CPU and memory.
    pub thumbnail_jobs_max: usize,
    /// How long a download of a variant waits for it to be made (10 s), then `503`.
    pub variant_wait_ms: u64,
    /// How long media that no message references is kept after upload (24 h).
    pub orphan_grace_ms: u64,
    /// How long an unfinished tus upload is kept (24 h).
    pub tus_expiry_ms: u64,
    /// Unfinished tus uploads per user (16); more are `429 rate_limited`.
    pub tus_uploads_per_user_max: usize,
    /// `max-age` of downloads, in seconds (one year: media ids are immutable).
    pub cache_max_age_s: u64,
}

impl Default for MediaConfig {
    fn default() -> Self {
        Self {
            bytes_max: BYTES_MAX_DEFAULT,
            sizes: VariantSizes::default(),
            image_limits: ImageLimits::default(),
            thumbnail_jobs_max: 2,
            variant_wait_ms: 10_000,
            orphan_grace_ms: 24 * 3600 * 1000,
            tus_expiry_ms: 24 * 3600 * 1000,
            tus_uploads_per_user_max: 16,
            cache_max_age_s: 365 * 24 * 3600,
        }
    }
}

impl MediaConfig {
    /// The defaults with the server's configured size limit.
    pub fn from_config(config: &Config) -> Self {
        Self {
            bytes_max: config.media_bytes_max,
            ..Self::default()
        }
    }
}

/// Answers whether a user may read media granted to a chat.
///
/// Contract: `is_member(user_id, chat_id)` returns `true` iff `user_id` is *currently* a member
/// of the chat `chat_id` (the wire `chat_id` passed to [`Media::grant`]). It is called on a
/// download by anyone but the uploader, once per live grant of the media until one answers
/// `true`, on the async runtime: it must be quick (memory or an indexed lookup), must not
/// block for long, and must not call back into [`Media`]. Chat ids starting with `story:`
/// never reach it (the media service answers those from the account store). Any
/// `Fn(u64, &str) -> bool` closure implements it.
pub trait MediaAccess: Send + Sync + 'static {
    /// Whether `user_id` is a member of `chat_id` now.
    fn is_member(&self, user_id: u64, chat_id: &str) -> bool;
}

impl<F> MediaAccess for F
where
    F: Fn(u64, &str) -> bool + Send + Sync + 'static,
{
    fn is_member(&self, user_id: u64, chat_id: &str) -> bool {
        self(user_id, chat_id)
    }
}

/// A [`MediaAccess`] with no chats: only uploaders (and story audiences) read media.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoChats;

impl MediaAccess for NoChats {
    fn is_member(&self, _user_id: u64, _chat_id: &str) -> bool {
        false
    }
}

/// The media service: a cheap handle (clone it freely).
#[derive(Clone)]
pub struct Media {
    inner: Arc<Inner>,
}

struct Inner {
    store: MediaStore,
    config: MediaConfig,
    access: Arc<dyn MediaAccess>,
    clock: Arc<dyn Clock>,
    /// Variant jobs in flight, by blob: the receiver turns `true` when the job is done.
    jobs: Mutex<HashMap<String, watch::Receiver<bool>>>,
    job_slots: Arc<Semaphore>,
    /// tus uploads with a PATCH in progress.
    tus_busy: Mutex<std::collections::HashSet<String>>,
}

impl std::fmt::Debug for Media {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Media")
            .field("store", &self.inner.store)
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

/// Prefix of the grant "chats" that stand for an author's story audience.
pub const STORY_CHAT_PREFIX: &str = "story:";

impl Media {
    /// Opens the media store under `data_dir` (see [`MediaStore::open`]).
    pub fn open(
        data_dir: &Path,
        config: MediaConfig,
        access: Arc<dyn MediaAccess>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, MediaError> {
        Ok(Self::with_store(
            MediaStore::open(data_dir)?,
            config,
            access,
            clock,
        ))
    }

    /// The service over an opened store.
    pub fn with_store(
        store: MediaStore,
        config: MediaConfig,
        access: Arc<dyn MediaAccess>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        assert!(config.thumbnail_jobs_max >= 1, "at least one variant job");
        Self {
            inner: Arc::new(Inner {
                store,
                job_slots: Arc::new(Semaphore::new(config.thumbnail_jobs_max)),
                config,
                access,
                clock,
                jobs: Mutex::new(HashMap::new()),
                tus_busy: Mutex::new(Default::default()),
            }),
        }
    }

    /// The store.
    pub fn store(&self) -> &MediaStore {
        &self.inner.store
    }

    /// The settings.
    pub fn config(&self) -> &MediaConfig {
        &self.inner.config
    }

    fn now_ms(&self) -> u64 {
        self.inner.clock.now_ms()
    }

    /// A media item's metadata.
    pub fn info(&self, media_id: &str) -> Result<Option<MediaInfo>, MediaError> {
        self.inner.store.media(media_id)
    }

    /// Lets members of `chat_id` read `media_id` for as long as the grant lives (no expiry:
    /// until [`Media::revoke`]). Call it when a message carrying `media_id` is stored.
    pub fn grant(&self, media_id: &str, chat_id: &str) -> Result<(), MediaError> {
        self.grant_until(media_id, chat_id, None)
    }

    /// Like [`Media::grant`], until `expires_at_ms` (the message's expiry); a later grant to the
    /// same chat extends it.
    pub fn grant_until(
        &self,
        media_id: &str,
        chat_id: &str,
        expires_at_ms: Option<u64>,
    ) -> Result<(), MediaError> {
        self.inner
            .store
            .grant(media_id, chat_id, expires_at_ms, self.now_ms())
    }

    /// Withdraws a grant (the message was deleted for everyone).
    pub fn revoke(&self, media_id: &str, chat_id: &str) -> Result<(), MediaError> {
        self.inner.store.revoke(media_id, chat_id)
    }

    /// Whether `user_id` may read `media`: the uploader, a member of a chat it was granted to,
    /// or someone in the audience of a story it belongs to.
    pub fn can_read(
        &self,
        accounts: &AccountStore,
        user_id: u64,
        media: &MediaInfo,
    ) -> Result<bool, MediaError> {
        if media.owner_id == user_id {
            return Ok(true);
        }
        for chat in self
            .inner
            .store
            .live_grants(&media.media_id, self.now_ms())?
        {
            let allowed = match chat.strip_prefix(STORY_CHAT_PREFIX) {
                Some(author) => author.parse().is_ok_and(|author| {
                    crate::stories::can_view(accounts, user_id, author).unwrap_or(false)
                }),
                None => self.inner.access.is_member(user_id, &chat),
            };
            if allowed {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Applies retention at `now_ms` (see the module docs).
    pub fn sweep(&self, now_ms: u64) -> Result<SweepReport, MediaError> {
        self.inner
            .store
            .sweep(now_ms, self.inner.config.orphan_grace_ms)
    }

    /// Sweeps every `interval` until shutdown begins (spawn it).
    pub async fn sweep_every(self, interval: Duration, shutdown: Shutdown) {
        let mut ticks = tokio::time::interval(interval);
        loop {
            tokio::select! {
                _ = shutdown.started() => return,
                _ = ticks.tick() => {
                    let media = self.clone();
                    let now = self.now_ms();
                    match tokio::task::spawn_blocking(move || media.sweep(now)).await {
                        Ok(Ok(report)) => tracing::debug!(?report, "media swept"),
                        Ok(Err(e)) => tracing::error!(error = %e, "media sweep failed"),
                        Err(e) => tracing::error!(error = %e, "media sweep panicked"),
                    }
                }
            }
        }
    }

    /// Starts making the variants of blob `sha256` unless a job is already at it; returns a
    /// receiver that turns `true` when the job is done.
    fn start_variants(&self, sha256: &str) -> watch::Receiver<bool> {
        let mut jobs = self.inner.jobs.lock();
        if let Some(rx) = jobs.get(sha256) {
            return rx.clone();
        }
        let (tx, rx) = watch::channel(false);
        jobs.insert(sha256.to_owned(), rx.clone());
        drop(jobs);
        let media = self.clone();
        let sha256 = sha256.to_owned();
        tokio::spawn(async move {
            let slots = media.inner.job_slots.clone();
            let permit = slots.acquire_owned().await;
            let job = {
                let media = media.clone();
                let sha256 = sha256.clone();
                tokio::task::spawn_blocking(move || {
                    let store = &media.inner.store;
                    let config = &media.inner.config;
                    let result = thumbs::generate(
                        &store.path(&sha256, Variant::Original),
                        &store.path(&sha256, Variant::Preview),
                        &store.path(&sha256, Variant::Thumbnail),
                        config.sizes,
                        config.image_limits,
                    );
                    let (state, dims) = match result {
                        Ok(dims) => (VariantState::Ready, Some(dims)),
                        Err(e) => {
                            tracing::info!(%sha256, error = %e, "no variants for this image");
                            (VariantState::Failed, None)
                        }
                    };
                    if let Err(e) = store.set_variants(&sha256, state, dims) {
                        tracing::error!(%sha256, error = %e, "recording variants failed");
                    }
                })
            };
            if let Err(e) = job.await {
                tracing::error!(%sha256, error = %e, "variant job panicked");
            }
            drop(permit);
            media.inner.jobs.lock().remove(&sha256);
            let _ = tx.send(true);
        });
        rx
    }

    /// Waits (up to the configured time) until the variants of `media` are settled; returns
    /// the state then.
    async fn settled_variants(&self, media: &MediaInfo) -> Result<VariantState, MediaError> {
        if media.variants != VariantState::Pending {
            return Ok(media.variants);
        }
        // Pending without a job means a restart interrupted it: start one.
        let mut rx = self.start_variants(&media.sha256);
        let wait = Duration::from_millis(self.inner.config.variant_wait_ms);
        let _ = tokio::time::timeout(wait, rx.wait_for(|done| *done)).await;
        Ok(self
            .inner
            .store
            .media(&media.media_id)?
            .map_or(VariantState::Failed, |m| m.variants))
    }
}

/// Random 128-bit id in hex.
fn new_id() -> String {
    crate::auth::hex(&crate::auth::random_bytes::<16>())
}

/// Checks client metadata.
fn check_file_name(name: &str) -> Result<(), crate::error::ApiError> {
    if name.len() > FILE_NAME_BYTES_MAX || name.chars().any(char::is_control) {
        return Err(crate::error::ApiError::InvalidRequest(format!(
            "file_name must be at most {FILE_NAME_BYTES_MAX} bytes without control characters"
        )));
    }
    Ok(())
}
