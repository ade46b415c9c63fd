//! `GET /api/v1/devices`, `DELETE /api/v1/devices/{device_id}` (extras: see the README).

use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::auth::Auth;
use crate::error::ApiError;
use crate::extract::{Json, Path};
use crate::state::AppState;
use crate::time::rfc3339;
use crate::ws::CLOSE_TOKEN_REVOKED;

/// 200 `{"devices": [{"device_id", "name", "created_at", "revoked_at"?, "current"}]}`.
pub(super) async fn list(
    State(state): State<AppState>,
    auth: Auth,
) -> Result<Json<Value>, ApiError> {
    let devices: Vec<Value> = state
        .accounts
        .store()
        .devices(auth.user_id)?
        .into_iter()
        .map(|d| {
            let mut v = json!({
                "device_id": d.device_id,
                "name": d.name,
                "created_at": rfc3339(d.created_at_ms),
                "current": d.device_id == auth.device_id,
            });
            if let Some(at) = d.revoked_at_ms {
                v["revoked_at"] = json!(rfc3339(at));
            }
            v
        })
        .collect();
    Ok(Json(json!({ "devices": devices })))
}

/// 204: revokes one of the caller's devices (404 if it has no live token).
pub(super) async fn revoke(
    State(state): State<AppState>,
    auth: Auth,
    Path(device_id): Path<u32>,
) -> Result<StatusCode, ApiError> {
    if !state
        .accounts
        .store()
        .revoke_device(auth.user_id, device_id, state.now_ms())?
    {
        return Err(ApiError::NotFound("no such live device".into()));
    }
    state.connections.close_device(
        auth.user_id,
        device_id,
        CLOSE_TOKEN_REVOKED,
        "token revoked",
    );
    Ok(StatusCode::NO_CONTENT)
}
