//! [`PeerDevice`]: the address of one device of one user.

use std::fmt;

use serde::{Deserialize, Serialize};

/// One device of one user, as the server names them (`user_id` and `device_id` are strings on
/// the wire, `"42"`).
///
/// Sessions are per device, never per user: a user with a phone and a laptop is two
/// `PeerDevice`s, each with its own keys.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PeerDevice {
    /// The user's id.
    pub user_id: String,
    /// The device's id, unique within the user.
    pub device_id: String,
}

impl PeerDevice {
    /// The device `device_id` of user `user_id`.
    pub fn new(user_id: impl Into<String>, device_id: impl Into<String>) -> Self {
        Self {
            user_id: user_id.into(),
            device_id: device_id.into(),
        }
    }
}

impl fmt::Display for PeerDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.user_id, self.device_id)
    }
}
