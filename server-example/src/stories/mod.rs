//! Stories ("status"): text or media posts that the author's contacts see for 24 hours.
//!
//! ```text
//! POST   /api/v1/stories                    {"message_type": "text", "content"}
//!                                           {"message_type": "image" | "video", "media_id", "content"?}
//!                                           → 201 a story
//! GET    /api/v1/stories                    → {"stories": [...]}: the caller's and their contacts' live stories
//! DELETE /api/v1/stories/{story_id}         → 204 (the author)
//! POST   /api/v1/stories/{story_id}/views   → 204: the caller viewed it
//! GET    /api/v1/stories/{story_id}/views   → {"story_id", "count", "views": [{"user_id", "viewed_at"}]} (the author)
//! ```
//!
//! A story object: `{"story_id", "author_id", "message_type", "content"?, "media_id"?,
//! "created_at", "expires_at", "viewed"}` (`viewed`: whether the caller has viewed it).
//!
//! **Audience.** A story is visible to its author and to the author's contacts — the users in
//! the author's contact list (`AccountStore::contacts_of`) — unless either has blocked the
//! other ([`can_view`]). To anyone else a story does not exist (`404`), so probing ids reveals
//! nothing. View receipts are the author's alone: others who can see the story get `403` on
//! its views. The author's own views are not recorded.
//!
//! **Expiry.** A story lives [`StoriesConfig::ttl_ms`] (24 h) by the service's [`Clock`]
//! (the server's, or a `ManualClock` in tests). Every read compares with the clock, so an
//! expired story is never returned; [`Stories::sweep`] then deletes it and its views.
//!
//! **Media.** With a [`Media`] service attached, an image or video story must name media the
//! author may read with the matching kind (`image/*`, `video/*`); the media is then granted to
//! the "chat" `story:<author_id>` until the story expires, which the media service resolves to
//! this audience, so the author's contacts can download it.

mod store;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Extension, Router};
use serde::{Deserialize, Serialize};

pub use store::{STORIES_FILE, Story, StoryStore, StoryStoreError, View, init};

use crate::AppState;
use crate::accounts::{AccountStore, StoreError};
use crate::auth::Auth;
use crate::error::ApiError;
use crate::extract::{Json, Path};
use crate::media::{Media, STORY_CHAT_PREFIX};
use crate::shutdown::Shutdown;
use crate::time::{Clock, rfc3339};

/// How long a story lives by default: 24 hours.
pub const STORY_TTL_MS_DEFAULT: u64 = 24 * 3600 * 1000;

/// Story settings (defaults in [`StoriesConfig::default`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoriesConfig {
    /// How long a story is visible (24 h).
    pub ttl_ms: u64,
    /// Largest `content`, in bytes (64 KiB, as for messages).
    pub content_bytes_max: usize,
    /// Live stories one author may have at once (100); more are `429 rate_limited`.
    pub live_per_author_max: usize,
}

impl Default for StoriesConfig {
    fn default() -> Self {
        Self {
            ttl_ms: STORY_TTL_MS_DEFAULT,
            content_bytes_max: 64 * 1024,
            live_per_author_max: 100,
        }
    }
}

/// Whether `viewer_id` is in the audience of `author_id`'s stories: the author themselves, or
/// someone in the author's contacts when neither has blocked the other.
pub fn can_view(
    accounts: &AccountStore,
    viewer_id: u64,
    author_id: u64,
) -> Result<bool, StoreError> {
    if viewer_id == author_id {
        return Ok(true);
    }
    Ok(!accounts.is_blocked(author_id, viewer_id)
        && !accounts.is_blocked(viewer_id, author_id)
        && accounts.is_contact(author_id, viewer_id)?)
}

/// The grant "chat" of `author_id`'s story audience (see [`crate::media`]).
pub fn audience_chat_id(author_id: u64) -> String {
    format!("{STORY_CHAT_PREFIX}{author_id}")
}

/// The story service: a cheap handle.
#[derive(Clone)]
pub struct Stories {
    inner: Arc<Inner>,
}

struct Inner {
    store: StoryStore,
    clock: Arc<dyn Clock>,
    config: StoriesConfig,
    media: Option<Media>,
}

impl std::fmt::Debug for Stories {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stories")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl Stories {
    /// The service over `store`, telling time by `clock`; `media` (if any) checks and grants
    /// the media of image and video stories.
    pub fn new(
        store: StoryStore,
        clock: Arc<dyn Clock>,
        config: StoriesConfig,
        media: Option<Media>,
    ) -> Self {
        assert!(config.ttl_ms > 0, "stories live for some time");
        Self {
            inner: Arc::new(Inner {
                store,
                clock,
                config,
                media,
            }),
        }
    }

    /// The store.
    pub fn store(&self) -> &StoryStore {
        &self.inner.store
    }

    fn now_ms(&self) -> u64 {
        self.inner.clock.now_ms()
    }

    /// Deletes the stories expired by `now_ms`; returns how many.
    pub fn sweep(&self, now_ms: u64) -> Result<usize, StoryStoreError> {
        self.inner.store.sweep(now_ms)
    }

    /// Sweeps every `interval` until shutdown begins (spawn it).
    pub async fn sweep_every(self, interval: Duration, shutdown: Shutdown) {
        let mut ticks = tokio::time::interval(interval);
        loop {
            tokio::select! {
                _ = shutdown.started() => return,
                _ = ticks.tick() => {
                    if let Err(e) = self.sweep(self.now_ms()) {
                        tracing::error!(error = %e, "story sweep failed");
                    }
                }
            }
        }
    }
}

fn store_error(error: StoryStoreError) -> ApiError {
    ApiError::internal(error)
}

/// `/api/v1/stories` and its sub-routes.
pub fn router(stories: Stories) -> Router<AppState> {
    Router::new()
        .route("/api/v1/stories", post(post_story).get(list))
        .route(
            "/api/v1/stories/{story_id}",
            axum::routing::delete(delete_story),
        )
        .route(
            "/api/v1/stories/{story_id}/views",
            post(add_view).get(views),
        )
        .layer(Extension(stories))
}

/// The body of `POST /api/v1/stories`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewStory {
    /// `text`, `image` or `video`.
    pub message_type: String,
    /// The text, or a caption.
    #[serde(default)]
    pub content: Option<String>,
    /// The media of an image or video story.
    #[serde(default)]
    pub media_id: Option<String>,
}

/// A story on the wire.
#[derive(Debug, Clone, Serialize)]
pub struct StoryView {
    story_id: String,
    author_id: String,
    message_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    media_id: Option<String>,
    created_at: String,
    expires_at: String,
    viewed: bool,
}

impl StoryView {
    fn new(story: Story, viewed: bool) -> Self {
        Self {
            story_id: story.story_id,
            author_id: story.author_id.to_string(),
            message_type: story.message_type,
            content: story.content,
            media_id: story.media_id,
            created_at: rfc3339(story.created_at_ms),
            expires_at: rfc3339(story.expires_at_ms),
            viewed,
        }
    }
}

async fn post_story(
    State(state): State<AppState>,
    Extension(stories): Extension<Stories>,
    auth: Auth,
    Json(body): Json<NewStory>,
) -> Result<(StatusCode, Json<StoryView>), ApiError> {
    let config = stories.inner.config;
    let me = auth.user_id;
    match (body.message_type.as_str(), &body.content, &body.media_id) {
        ("text", Some(content), None) if !content.is_empty() => {}
        ("text", _, _) => {
            return Err(ApiError::InvalidRequest(
                "a text story has a non-empty content and no media_id".into(),
            ));
        }
        ("image" | "video", _, Some(_)) => {}
        ("image" | "video", _, None) => {
            return Err(ApiError::InvalidRequest(format!(
                "an {} story names its media_id",
                body.message_type
            )));
        }
        (other, _, _) => {
            return Err(ApiError::InvalidRequest(format!(
                "message_type `{other}` is not a story type (text, image, video)"
            )));
        }
    }
    if body
        .content
        .as_ref()
        .is_some_and(|c| c.len() > config.content_bytes_max)
    {
        return Err(ApiError::too_large(
            "content",
            config.content_bytes_max as u64,
        ));
    }
    let now = stories.now_ms();
    let live = stories
        .inner
        .store
        .live_count(me, now)
        .map_err(store_error)?;
    if live >= config.live_per_author_max {
        return Err(ApiError::rate_limited(
            format!(
                "at most {} live stories at once",
                config.live_per_author_max
            ),
            None,
        ));
    }
    if let (Some(media), Some(media_id)) = (&stories.inner.media, &body.media_id) {
        let info = media
            .info(media_id)
            .map_err(ApiError::internal)?
            .ok_or_else(|| ApiError::NotFound("no such media".into()))?;
        if !media
            .can_read(state.accounts.store(), me, &info)
            .map_err(ApiError::internal)?
        {
            return Err(ApiError::Forbidden("you may not use this media".into()));
        }
        let kind = format!("{}/", body.message_type);
        if !info.mime.starts_with(&kind) {
            return Err(ApiError::InvalidRequest(format!(
                "an {} story needs {}* media, not {}",
                body.message_type, kind, info.mime
            )));
        }
    }
    let story = Story {
        story_id: crate::auth::hex(&crate::auth::random_bytes::<16>()),
        author_id: me,
        message_type: body.message_type,
        content: body.content,
        media_id: body.media_id,
        created_at_ms: now,
        expires_at_ms: now + config.ttl_ms,
    };
    stories.inner.store.insert(&story).map_err(store_error)?;
    if let (Some(media), Some(media_id)) = (&stories.inner.media, &story.media_id) {
        media
            .grant_until(media_id, &audience_chat_id(me), Some(story.expires_at_ms))
            .map_err(ApiError::internal)?;
    }
    Ok((StatusCode::CREATED, Json(StoryView::new(story, false))))
}

/// The body of `GET /api/v1/stories`.
#[derive(Debug, Serialize)]
struct StoryList {
    stories: Vec<StoryView>,
}

async fn list(
    State(state): State<AppState>,
    Extension(stories): Extension<Stories>,
    auth: Auth,
) -> Result<Json<StoryList>, ApiError> {
    let accounts = state.accounts.store();
    let me = auth.user_id;
    let now = stories.now_ms();
    let mut authors = vec![me];
    for author in accounts.contacted_by(me)? {
        if author != me && can_view(accounts, me, author)? {
            authors.push(author);
        }
    }
    let store = &stories.inner.store;
    let mut all = Vec::new();
    for author in authors {
        for story in store.live_by(author, now).map_err(store_error)? {
            let viewed =
                author != me && store.has_viewed(&story.story_id, me).map_err(store_error)?;
            all.push((story.created_at_ms, StoryView::new(story, viewed)));
        }
    }
    all.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.story_id.cmp(&b.1.story_id)));
    Ok(Json(StoryList {
        stories: all.into_iter().map(|(_, s)| s).collect(),
    }))
}

/// A live story the caller may see, or 404.
fn visible(
    state: &AppState,
    stories: &Stories,
    me: u64,
    story_id: &str,
) -> Result<Story, ApiError> {
    let not_found = || ApiError::NotFound("no such story".into());
    let story = stories
        .inner
        .store
        .story(story_id, stories.now_ms())
        .map_err(store_error)?
        .ok_or_else(not_found)?;
    if !can_view(state.accounts.store(), me, story.author_id)? {
        return Err(not_found());
    }
    Ok(story)
}

async fn add_view(
    State(state): State<AppState>,
    Extension(stories): Extension<Stories>,
    auth: Auth,
    Path(story_id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let story = visible(&state, &stories, auth.user_id, &story_id)?;
    if story.author_id != auth.user_id {
        stories
            .inner
            .store
            .add_view(&story.story_id, auth.user_id, stories.now_ms())
            .map_err(store_error)?;
    }
    Ok(StatusCode::NO_CONTENT)
}

/// One entry of a story's views.
#[derive(Debug, Serialize)]
struct ViewEntry {
    user_id: String,
    viewed_at: String,
}

/// The body of `GET /api/v1/stories/{story_id}/views`.
#[derive(Debug, Serialize)]
struct ViewList {
    story_id: String,
    count: usize,
    views: Vec<ViewEntry>,
}

async fn views(
    State(state): State<AppState>,
    Extension(stories): Extension<Stories>,
    auth: Auth,
    Path(story_id): Path<String>,
) -> Result<Json<ViewList>, ApiError> {
    let story = visible(&state, &stories, auth.user_id, &story_id)?;
    if story.author_id != auth.user_id {
        return Err(ApiError::Forbidden(
            "only the author sees who viewed a story".into(),
        ));
    }
    let views: Vec<ViewEntry> = stories
        .inner
        .store
        .views(&story.story_id)
        .map_err(store_error)?
        .into_iter()
        .map(|v| ViewEntry {
            user_id: v.viewer_id.to_string(),
            viewed_at: rfc3339(v.viewed_at_ms),
        })
        .collect();
    Ok(Json(ViewList {
        story_id: story.story_id,
        count: views.len(),
        views,
    }))
}

async fn delete_story(
    Extension(stories): Extension<Stories>,
    auth: Auth,
    Path(story_id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let me = auth.user_id;
    let now = stories.now_ms();
    let store = &stories.inner.store;
    let Some(story) = store.story(&story_id, now).map_err(store_error)? else {
        return Err(ApiError::NotFound("no such story".into()));
    };
    if story.author_id != me || !store.delete(&story_id, me).map_err(store_error)? {
        return Err(ApiError::NotFound("no such story".into()));
    }
    if let (Some(media), Some(media_id)) = (&stories.inner.media, &story.media_id) {
        let still_used = store
            .live_by(me, now)
            .map_err(store_error)?
            .iter()
            .any(|s| s.media_id.as_ref() == Some(media_id));
        if !still_used {
            media
                .revoke(media_id, &audience_chat_id(me))
                .map_err(ApiError::internal)?;
        }
    }
    Ok(StatusCode::NO_CONTENT)
}
