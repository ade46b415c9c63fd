//! Ids on the wire: chats, messages and `client_msg_id`s.
//!
//! - A `chat_id` is the engine's 128-bit [`ChatId`] as 32 lowercase hex digits. Clients treat it
//!   as opaque; a group's `group_id` is the same string.
//! - A `message_id` is `"<chat_id>:<seq>"`.
//! - A `client_msg_id` is any string of 1 to 64 bytes. The engine remembers 16 bytes per send:
//!   [`client_msg_key`] takes the first 16 bytes of SHA-256 over a domain tag, the sending
//!   *device* and the string. Scoping it per device means two devices of one user that happen
//!   to pick the same id (say a counter, `"1"`) never swallow each other's messages; a device
//!   retrying its own send, over REST or WebSocket, is always recognised.

use missive::log::{ChatId, Seq};
use sha2::{Digest, Sha256};

use crate::error::ApiError;

/// Hex digits in a `chat_id`.
pub const CHAT_ID_HEX_DIGITS: usize = 32;

/// The wire form of `chat`.
pub fn chat_id_text(chat: ChatId) -> String {
    format!("{:032x}", chat.to_u128())
}

/// Parses a `chat_id`: exactly 32 hex digits.
pub fn parse_chat_id(text: &str) -> Result<ChatId, ApiError> {
    let bad = || ApiError::InvalidRequest(format!("`{}` is not a chat_id", abbreviate(text)));
    if text.len() != CHAT_ID_HEX_DIGITS || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad());
    }
    u128::from_str_radix(text, 16)
        .map(ChatId::from_u128)
        .map_err(|_| bad())
}

/// The wire form of message `seq` of `chat`.
pub fn message_id_text(chat: ChatId, seq: Seq) -> String {
    format!("{}:{}", chat_id_text(chat), seq.0)
}

/// Parses a `message_id`, `"<chat_id>:<seq>"` with a seq of at least 1.
pub fn parse_message_id(text: &str) -> Result<(ChatId, Seq), ApiError> {
    let bad = || ApiError::InvalidRequest(format!("`{}` is not a message_id", abbreviate(text)));
    let (chat, seq) = text.split_once(':').ok_or_else(bad)?;
    let chat = parse_chat_id(chat).map_err(|_| bad())?;
    if seq.is_empty() || seq.len() > 20 || !seq.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    match seq.parse::<u64>() {
        Ok(seq) if seq > 0 => Ok((chat, Seq(seq))),
        _ => Err(bad()),
    }
}

/// The 16 bytes the engine remembers for `client_msg_id` sent from `device_id` (see the module
/// docs): the first 16 bytes of SHA-256(`"missive/client_msg_id/v1"`, device id LE, the id).
pub fn client_msg_key(device_id: u32, client_msg_id: &str) -> [u8; 16] {
    let mut hasher = Sha256::new();
    hasher.update(b"missive/client_msg_id/v1\0");
    hasher.update(device_id.to_le_bytes());
    hasher.update(client_msg_id.as_bytes());
    let digest = hasher.finalize();
    let mut key = [0; 16];
    key.copy_from_slice(&digest[..16]);
    key
}

/// At most 40 characters of `text`, for error messages.
fn abbreviate(text: &str) -> String {
    let mut out: String = text.chars().take(40).collect();
    if out.len() < text.len() {
        out.push('…');
    }
    out.chars().filter(|c| !c.is_control()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use missive::log::UserId;

    #[test]
    fn chat_ids_round_trip() {
        for chat in [
            ChatId::direct(UserId(1), UserId(2)),
            ChatId::direct(UserId(7), UserId(7)),
            ChatId::group(12345),
        ] {
            let text = chat_id_text(chat);
            assert_eq!(text.len(), 32);
            assert_eq!(parse_chat_id(&text).unwrap(), chat);
            assert_eq!(parse_chat_id(&text.to_uppercase()).unwrap(), chat);
            let message = message_id_text(chat, Seq(42));
            assert_eq!(parse_message_id(&message).unwrap(), (chat, Seq(42)));
        }
    }

    #[test]
    fn malformed_ids_are_invalid_requests() {
        let good = chat_id_text(ChatId::group(1));
        for bad in [
            "",
            "c",
            "+0000000000000000000000000000001",
            &good[1..],
            &format!("{good}0"),
            "zz000000000000000000000000000000",
        ] {
            assert_eq!(parse_chat_id(bad).unwrap_err().code(), "invalid_request");
        }
        for bad in [
            good.clone(),
            format!("{good}:"),
            format!("{good}:0"),
            format!("{good}:-1"),
            format!("{good}:+1"),
            format!("{good}:1:2"),
            format!("{good}:99999999999999999999"),
            "x:1".to_owned(),
        ] {
            assert_eq!(
                parse_message_id(&bad).unwrap_err().code(),
                "invalid_request",
                "{bad}"
            );
        }
    }

    #[test]
    fn client_msg_keys_are_per_device_and_stable() {
        assert_eq!(client_msg_key(1, "a"), client_msg_key(1, "a"));
        assert_ne!(client_msg_key(1, "a"), client_msg_key(2, "a"));
        assert_ne!(client_msg_key(1, "a"), client_msg_key(1, "b"));
        // Fixed forever: retries across a server upgrade must still match.
        assert_eq!(
            crate::auth::hex(&client_msg_key(1, "m1")),
            "5c9356b2f843bcda717b5f8772008ca0"
        );
    }
}
