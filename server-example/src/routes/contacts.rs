//! `POST /api/v1/contacts` (discovery), `GET /api/v1/contacts`, `GET /api/v1/contacts/blocked`,
//! `PUT|DELETE /api/v1/contacts/{user_id}/block`.

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::UserView;
use crate::accounts::validate_phone;
use crate::auth::Auth;
use crate::error::ApiError;
use crate::extract::{Json, Path};
use crate::state::AppState;
use crate::ws::WireId;

/// Most phone numbers in one discovery request.
pub(crate) const DISCOVERY_NUMBERS_MAX: usize = 1000;

#[derive(Deserialize)]
pub(super) struct Discover {
    phone_numbers: Vec<String>,
}

/// 200 `{"contacts": [user...]}`: the registered users among the numbers, now in the caller's
/// contacts. An invalid number refuses the whole request.
pub(super) async fn add(
    State(state): State<AppState>,
    auth: Auth,
    Json(body): Json<Discover>,
) -> Result<Json<Value>, ApiError> {
    if body.phone_numbers.len() > DISCOVERY_NUMBERS_MAX {
        return Err(ApiError::InvalidRequest(format!(
            "at most {DISCOVERY_NUMBERS_MAX} phone numbers per request"
        )));
    }
    for phone in &body.phone_numbers {
        validate_phone(phone)?;
    }
    let store = state.accounts.store();
    let mut users = store.users_by_phone(&body.phone_numbers)?;
    users.retain(|u| u.id != auth.user_id);
    users.sort_by_key(|u| u.id);
    let ids: Vec<u64> = users.iter().map(|u| u.id).collect();
    store.add_contacts(auth.user_id, &ids, state.now_ms())?;
    let contacts: Vec<UserView> = users.into_iter().map(|u| UserView::new(u, true)).collect();
    Ok(Json(json!({ "contacts": contacts })))
}

#[derive(Serialize)]
struct ContactView {
    #[serde(flatten)]
    user: UserView,
    blocked: bool,
}

/// 200 `{"contacts": [user + "blocked"...]}`.
pub(super) async fn list(
    State(state): State<AppState>,
    auth: Auth,
) -> Result<Json<Value>, ApiError> {
    let store = state.accounts.store();
    let mut contacts = Vec::new();
    for id in store.contacts_of(auth.user_id)? {
        if let Some(user) = store.user(id)? {
            contacts.push(ContactView {
                user: UserView::new(user, true),
                blocked: store.is_blocked(auth.user_id, id),
            });
        }
    }
    Ok(Json(json!({ "contacts": contacts })))
}

/// 200 `{"user_ids": [...]}`: whom the caller has blocked.
pub(super) async fn blocked(State(state): State<AppState>, auth: Auth) -> Json<Value> {
    let ids: Vec<WireId> = state
        .accounts
        .store()
        .blocked_by(auth.user_id)
        .into_iter()
        .map(WireId)
        .collect();
    Json(json!({ "user_ids": ids }))
}

fn target(state: &AppState, auth: Auth, user_id: u64) -> Result<(), ApiError> {
    if user_id == auth.user_id {
        return Err(ApiError::InvalidRequest("you cannot block yourself".into()));
    }
    if !state.accounts.store().user_exists(user_id)? {
        return Err(ApiError::NotFound("no such user".into()));
    }
    Ok(())
}

/// 204: blocks `user_id` (idempotent).
pub(super) async fn block(
    State(state): State<AppState>,
    auth: Auth,
    Path(user_id): Path<u64>,
) -> Result<StatusCode, ApiError> {
    target(&state, auth, user_id)?;
    state
        .accounts
        .store()
        .block(auth.user_id, user_id, state.now_ms())?;
    Ok(StatusCode::NO_CONTENT)
}

/// 204: unblocks `user_id` (idempotent).
pub(super) async fn unblock(
    State(state): State<AppState>,
    auth: Auth,
    Path(user_id): Path<u64>,
) -> Result<StatusCode, ApiError> {
    target(&state, auth, user_id)?;
    state.accounts.store().unblock(auth.user_id, user_id)?;
    Ok(StatusCode::NO_CONTENT)
}
