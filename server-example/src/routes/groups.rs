//! Groups: `POST /api/v1/groups`, `GET|PUT /api/v1/groups/{group_id}`,
//! `POST /api/v1/groups/{group_id}/members`, `DELETE /api/v1/groups/{group_id}/members/{user_id}`,
//! `PUT|DELETE /api/v1/groups/{group_id}/admins/{user_id}`.

use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;

use crate::auth::Auth;
use crate::error::ApiError;
use crate::extract::{Json, Path};
use crate::messaging::groups::GroupUpdate;
use crate::messaging::ids::parse_chat_id;
use crate::messaging::{CreateGroup, GroupView};
use crate::state::AppState;
use crate::ws::WireId;

/// 201: the new group (`group_id` and `chat_id` are the same string).
pub(super) async fn create(
    State(state): State<AppState>,
    auth: Auth,
    Json(body): Json<CreateGroup>,
) -> Result<(StatusCode, Json<GroupView>), ApiError> {
    let group = state.messenger.create_group(auth, body).await?;
    Ok((StatusCode::CREATED, Json(group)))
}

/// 200: the group, for its members.
pub(super) async fn get(
    State(state): State<AppState>,
    auth: Auth,
    Path(group_id): Path<String>,
) -> Result<Json<GroupView>, ApiError> {
    let chat = parse_chat_id(&group_id)?;
    Ok(Json(state.messenger.group(auth, chat)?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Update {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    description: Option<String>,
    /// `""` removes the picture.
    #[serde(default)]
    picture_media_id: Option<String>,
}

/// 200: the updated group (admins).
pub(super) async fn update(
    State(state): State<AppState>,
    auth: Auth,
    Path(group_id): Path<String>,
    Json(body): Json<Update>,
) -> Result<Json<GroupView>, ApiError> {
    let chat = parse_chat_id(&group_id)?;
    let update = GroupUpdate {
        name: body.name,
        description: body.description,
        picture_media_id: body.picture_media_id,
    };
    Ok(Json(state.messenger.update_group(auth, chat, update)?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Members {
    user_ids: Vec<WireId>,
}

/// 200: the group after adding (admins; `409 group_full` past the cap).
pub(super) async fn add_members(
    State(state): State<AppState>,
    auth: Auth,
    Path(group_id): Path<String>,
    Json(body): Json<Members>,
) -> Result<Json<GroupView>, ApiError> {
    let chat = parse_chat_id(&group_id)?;
    let group = state
        .messenger
        .add_members(auth, chat, body.user_ids)
        .await?;
    Ok(Json(group))
}

/// 204: removed (admins), or left (yourself).
pub(super) async fn remove_member(
    State(state): State<AppState>,
    auth: Auth,
    Path((group_id, user_id)): Path<(String, u64)>,
) -> Result<StatusCode, ApiError> {
    let chat = parse_chat_id(&group_id)?;
    state.messenger.remove_member(auth, chat, user_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// 204: the member is an admin (admins).
pub(super) async fn promote(
    State(state): State<AppState>,
    auth: Auth,
    Path((group_id, user_id)): Path<(String, u64)>,
) -> Result<StatusCode, ApiError> {
    let chat = parse_chat_id(&group_id)?;
    state.messenger.set_admin(auth, chat, user_id, true).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// 204: the admin is a plain member (admins; `409 conflict` for the last admin).
pub(super) async fn demote(
    State(state): State<AppState>,
    auth: Auth,
    Path((group_id, user_id)): Path<(String, u64)>,
) -> Result<StatusCode, ApiError> {
    let chat = parse_chat_id(&group_id)?;
    state
        .messenger
        .set_admin(auth, chat, user_id, false)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
