//! `PUT /api/v1/push/token`, `PUT|GET /api/v1/settings/notifications`.

use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::accounts::NotificationSettings;
use crate::auth::Auth;
use crate::error::ApiError;
use crate::extract::Json;
use crate::state::AppState;
use crate::ws::ID_BYTES_MAX;

/// Longest push token, in bytes.
pub(crate) const PUSH_TOKEN_BYTES_MAX: usize = 4096;
/// Most muted chats per user.
pub(crate) const MUTED_CHATS_MAX: usize = 1000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PushToken {
    platform: String,
    token: String,
}

/// 204: sets the calling device's push token.
pub(super) async fn set_token(
    State(state): State<AppState>,
    auth: Auth,
    Json(body): Json<PushToken>,
) -> Result<StatusCode, ApiError> {
    if !matches!(body.platform.as_str(), "fcm" | "apns" | "webhook") {
        return Err(ApiError::InvalidRequest(
            "platform is one of fcm, apns, webhook".into(),
        ));
    }
    if body.token.is_empty()
        || body.token.len() > PUSH_TOKEN_BYTES_MAX
        || body.token.chars().any(char::is_control)
    {
        return Err(ApiError::InvalidRequest(format!(
            "token must have 1 to {PUSH_TOKEN_BYTES_MAX} bytes and no control characters"
        )));
    }
    state.accounts.store().set_push_token(
        auth.user_id,
        auth.device_id,
        &body.platform,
        &body.token,
        state.now_ms(),
    )?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Settings {
    #[serde(default)]
    muted_chats: Option<Vec<String>>,
    #[serde(default)]
    do_not_disturb: Option<bool>,
}

fn view(settings: NotificationSettings) -> Json<Value> {
    let mut muted: Vec<String> = settings.muted_chats.into_iter().collect();
    muted.sort();
    Json(json!({ "muted_chats": muted, "do_not_disturb": settings.do_not_disturb }))
}

/// 200 `{"muted_chats", "do_not_disturb"}`: replaces the given fields.
pub(super) async fn set_settings(
    State(state): State<AppState>,
    auth: Auth,
    Json(body): Json<Settings>,
) -> Result<Json<Value>, ApiError> {
    if let Some(chats) = &body.muted_chats {
        if chats.len() > MUTED_CHATS_MAX {
            return Err(ApiError::InvalidRequest(format!(
                "at most {MUTED_CHATS_MAX} muted chats"
            )));
        }
        if chats.iter().any(|c| c.is_empty() || c.len() > ID_BYTES_MAX) {
            return Err(ApiError::InvalidRequest(format!(
                "a chat id has 1 to {ID_BYTES_MAX} bytes"
            )));
        }
    }
    let settings = state.accounts.store().set_notification_settings(
        auth.user_id,
        body.muted_chats.as_deref(),
        body.do_not_disturb,
    )?;
    Ok(view(settings))
}

/// 200 `{"muted_chats", "do_not_disturb"}`.
pub(super) async fn settings(State(state): State<AppState>, auth: Auth) -> Json<Value> {
    view(state.accounts.store().notification_settings(auth.user_id))
}
