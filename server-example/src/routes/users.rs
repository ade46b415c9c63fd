//! `GET /api/v1/users/me`, `PUT /api/v1/users/me`, `GET /api/v1/users/{user_id}`.

use axum::extract::State;
use serde::Deserialize;

use super::UserView;
use crate::accounts::ProfileUpdate;
use crate::auth::Auth;
use crate::error::ApiError;
use crate::extract::{Json, Path};
use crate::state::AppState;

/// Longest display name, in characters.
pub(crate) const NAME_CHARS_MAX: usize = 64;
/// Longest "about" text, in characters.
pub(crate) const STATUS_CHARS_MAX: usize = 256;
/// Longest media id, in bytes.
const MEDIA_ID_BYTES_MAX: usize = 128;

/// 200: the caller's profile, phone number included.
pub(super) async fn me(
    State(state): State<AppState>,
    auth: Auth,
) -> Result<Json<UserView>, ApiError> {
    let user = state
        .accounts
        .store()
        .user(auth.user_id)?
        .ok_or_else(|| ApiError::internal("an authenticated user has no row"))?;
    Ok(Json(UserView::new(user, true)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct UpdateMe {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    status_message: Option<String>,
    /// `""` removes the picture.
    #[serde(default)]
    profile_picture_media_id: Option<String>,
}

fn check_text(field: &str, value: &Option<String>, chars_max: usize) -> Result<(), ApiError> {
    if let Some(v) = value {
        if v.chars().count() > chars_max {
            return Err(ApiError::InvalidRequest(format!(
                "{field} is longer than {chars_max} characters"
            )));
        }
        if v.chars().any(|c| c.is_control() && c != '\n') {
            return Err(ApiError::InvalidRequest(format!(
                "{field} contains control characters"
            )));
        }
    }
    Ok(())
}

/// 200: the updated profile.
pub(super) async fn update_me(
    State(state): State<AppState>,
    auth: Auth,
    Json(body): Json<UpdateMe>,
) -> Result<Json<UserView>, ApiError> {
    check_text("name", &body.name, NAME_CHARS_MAX)?;
    check_text("status_message", &body.status_message, STATUS_CHARS_MAX)?;
    if let Some(m) = &body.profile_picture_media_id
        && (m.len() > MEDIA_ID_BYTES_MAX || m.chars().any(char::is_control))
    {
        return Err(ApiError::InvalidRequest(
            "profile_picture_media_id is not a media id".into(),
        ));
    }
    let update = ProfileUpdate {
        name: body.name,
        status_message: body.status_message,
        profile_picture_media_id: body.profile_picture_media_id,
    };
    let user = state
        .accounts
        .store()
        .update_profile(auth.user_id, &update)?
        .ok_or_else(|| ApiError::internal("an authenticated user has no row"))?;
    Ok(Json(UserView::new(user, true)))
}

/// 200: another user's profile; the phone number only if they are in the caller's contacts.
pub(super) async fn user(
    State(state): State<AppState>,
    auth: Auth,
    Path(user_id): Path<u64>,
) -> Result<Json<UserView>, ApiError> {
    let store = state.accounts.store();
    let user = store
        .user(user_id)?
        .ok_or_else(|| ApiError::NotFound("no such user".into()))?;
    let show_phone = user_id == auth.user_id || store.is_contact(auth.user_id, user_id)?;
    Ok(Json(UserView::new(user, show_phone)))
}
