//! Messages and chats: `POST /api/v1/messages`, `GET /api/v1/chats`,
//! `PUT /api/v1/chats/{chat_id}/settings`, `GET /api/v1/messages/{chat_id}`,
//! `PUT|GET /api/v1/messages/{message_id}/status`, `DELETE /api/v1/messages/{message_id}`.

use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::Auth;
use crate::error::ApiError;
use crate::extract::{Json, Path, Query};
use crate::messaging::ids::{parse_chat_id, parse_message_id};
use crate::messaging::{HistoryPage, HistoryQuery, StatusView};
use crate::state::AppState;
use crate::ws::{AckFrame, ReceiptStatus, SendMessage};

/// 201 `{"message_id", "chat_id", "seq", "timestamp", "client_msg_id"}`; a retry answers the
/// original.
pub(super) async fn send(
    State(state): State<AppState>,
    auth: Auth,
    Json(message): Json<SendMessage>,
) -> Result<(StatusCode, Json<AckFrame>), ApiError> {
    let ack = state.messenger.send(auth, message).await?;
    Ok((StatusCode::CREATED, Json(ack)))
}

/// 200 `{"chats": [...]}`.
pub(super) async fn chats(
    State(state): State<AppState>,
    auth: Auth,
) -> Result<Json<Value>, ApiError> {
    let chats = state.messenger.chats(auth)?;
    Ok(Json(json!({ "chats": chats })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ChatSettings {
    ttl_s: u64,
}

/// 200 `{"chat_id", "ttl_s"}`: sets the chat's disappearing-messages timer (0: off).
pub(super) async fn chat_settings(
    State(state): State<AppState>,
    auth: Auth,
    Path(chat_id): Path<String>,
    Json(body): Json<ChatSettings>,
) -> Result<Json<Value>, ApiError> {
    let chat = parse_chat_id(&chat_id)?;
    state.messenger.set_chat_ttl(auth, chat, body.ttl_s).await?;
    Ok(Json(
        json!({ "chat_id": chat_id.to_ascii_lowercase(), "ttl_s": body.ttl_s }),
    ))
}

/// 200 `{"messages": [...], "has_more"}`.
pub(super) async fn history(
    State(state): State<AppState>,
    auth: Auth,
    Path(chat_id): Path<String>,
    Query(query): Query<HistoryQuery>,
) -> Result<Json<HistoryPage>, ApiError> {
    let chat = parse_chat_id(&chat_id)?;
    Ok(Json(state.messenger.history(auth, chat, query)?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Mark {
    status: ReceiptStatus,
}

/// 204: raises the caller's watermark to this message.
pub(super) async fn mark(
    State(state): State<AppState>,
    auth: Auth,
    Path(message_id): Path<String>,
    Json(body): Json<Mark>,
) -> Result<StatusCode, ApiError> {
    let (chat, seq) = parse_message_id(&message_id)?;
    state.messenger.mark(auth, chat, seq, body.status).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// 200: where the message got, for its sender (and a group's admins).
pub(super) async fn status(
    State(state): State<AppState>,
    auth: Auth,
    Path(message_id): Path<String>,
) -> Result<Json<StatusView>, ApiError> {
    let (chat, seq) = parse_message_id(&message_id)?;
    Ok(Json(state.messenger.status(auth, chat, seq)?))
}

/// 204: deleted for everyone.
pub(super) async fn delete(
    State(state): State<AppState>,
    auth: Auth,
    Path(message_id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let (chat, seq) = parse_message_id(&message_id)?;
    state.messenger.delete(auth, chat, seq).await?;
    Ok(StatusCode::NO_CONTENT)
}
