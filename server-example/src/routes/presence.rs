//! `PUT /api/v1/presence/online`, `PUT /api/v1/presence/offline`,
//! `GET /api/v1/presence/{user_id}`.

use axum::extract::State;
use axum::http::StatusCode;

use crate::auth::Auth;
use crate::error::ApiError;
use crate::extract::{Json, Path};
use crate::messaging::PresenceView;
use crate::state::AppState;

/// 204: online for one heartbeat timeout (repeat to stay online).
pub(super) async fn online(State(state): State<AppState>, auth: Auth) -> StatusCode {
    state.messenger.presence_online(auth);
    StatusCode::NO_CONTENT
}

/// 204: offline now (a live WebSocket still counts as online).
pub(super) async fn offline(State(state): State<AppState>, auth: Auth) -> StatusCode {
    state.messenger.presence_offline(auth);
    StatusCode::NO_CONTENT
}

/// 200 `{"user_id", "status", "last_seen"}`, for users who have them in their contacts.
pub(super) async fn get(
    State(state): State<AppState>,
    auth: Auth,
    Path(user_id): Path<u64>,
) -> Result<Json<PresenceView>, ApiError> {
    Ok(Json(state.messenger.presence_of(auth, user_id)?))
}
