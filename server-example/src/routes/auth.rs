//! `POST /api/v1/auth/verify-phone`, `POST /api/v1/auth/verify-code`,
//! `DELETE /api/v1/auth/token`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::{Peer, peer_ip};
use crate::auth::Auth;
use crate::error::ApiError;
use crate::extract::Json;
use crate::state::AppState;
use crate::ws::{CLOSE_TOKEN_REVOKED, WireId};

#[derive(Deserialize)]
pub(super) struct VerifyPhone {
    phone_number: String,
}

fn check_verify_limit(state: &AppState, peer: Option<Peer>) -> Result<(), ApiError> {
    if let Some(ip) = peer_ip(peer)
        && let Err(e) = state.limits.verify.check(&ip)
    {
        state.server_metrics.rate_limited_verify.inc();
        return Err(e);
    }
    Ok(())
}

/// 202 `{"request_id", "expires_in_s", "dev_code"?}`.
pub(super) async fn verify_phone(
    State(state): State<AppState>,
    peer: Option<Peer>,
    Json(body): Json<VerifyPhone>,
) -> Result<Response, ApiError> {
    check_verify_limit(&state, peer)?;
    let request = state
        .accounts
        .request_code(&body.phone_number, state.now_ms())?;
    let mut response = json!({
        "request_id": request.request_id,
        "expires_in_s": request.expires_in.as_secs(),
    });
    if let Some(code) = request.dev_code {
        response["dev_code"] = json!(code);
    }
    Ok((StatusCode::ACCEPTED, axum::Json(response)).into_response())
}

#[derive(Deserialize)]
pub(super) struct VerifyCode {
    phone_number: String,
    code: String,
    #[serde(default)]
    device_name: Option<String>,
}

/// 200 `{"user_id", "device_id", "token", "new_user"}`.
pub(super) async fn verify_code(
    State(state): State<AppState>,
    peer: Option<Peer>,
    Json(body): Json<VerifyCode>,
) -> Result<Response, ApiError> {
    check_verify_limit(&state, peer)?;
    let session = state.accounts.verify_code(
        &body.phone_number,
        &body.code,
        body.device_name.as_deref().unwrap_or(""),
        state.now_ms(),
    )?;
    Ok(axum::Json(json!({
        "user_id": WireId(session.user_id),
        "device_id": session.device_id,
        "token": session.token,
        "new_user": session.new_user,
    }))
    .into_response())
}

/// 204: revokes the presented token (log out this device) and closes its WebSockets.
pub(super) async fn revoke_token(
    State(state): State<AppState>,
    auth: Auth,
) -> Result<StatusCode, ApiError> {
    state
        .accounts
        .store()
        .revoke_device(auth.user_id, auth.device_id, state.now_ms())?;
    state.connections.close_device(
        auth.user_id,
        auth.device_id,
        CLOSE_TOKEN_REVOKED,
        "token revoked",
    );
    Ok(StatusCode::NO_CONTENT)
}
