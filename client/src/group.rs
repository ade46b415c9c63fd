//! Group messaging on [`Device`]: Megolm sessions, sender-key style.
//!
//! Each sending device has its own outbound Megolm session per group and shares its key with
//! every member device over Olm. A session is only ever shared with the member set it was
//! created for: when the set changes, the next message starts a new session, so a removed
//! device never receives a key for later messages, and an added one never receives a key for
//! earlier ones.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use vodozemac::megolm::{
    GroupSession, InboundGroupSession, MegolmMessage, SessionConfig, SessionKey,
};

use crate::device::PAYLOAD_GROUP_KEY;
use crate::{
    Device, Envelope, Error, GROUP_MEMBER_DEVICES_MAX, GROUP_SESSION_MESSAGES_MAX,
    GROUP_SESSIONS_PER_SENDER_MAX, GroupMessage, PLAINTEXT_BYTES_MAX, PeerDevice,
};

/// This device's sending session in one group.
pub(crate) struct OutboundGroup {
    pub(crate) session: GroupSession,
    /// The member devices (this device excluded) the session key was shared with.
    pub(crate) members: BTreeSet<PeerDevice>,
}

/// The Olm plaintext (after the payload type byte) that carries a Megolm session key.
#[derive(Serialize, Deserialize)]
struct KeyShare {
    group_id: String,
    session_id: String,
    session_key: String,
}

impl Device {
    /// Encrypts `plaintext` for the group `group_id`, whose member devices are `members`
    /// (this device may be listed; it is skipped).
    ///
    /// The first message, and the first after any change of the member set, starts a new
    /// Megolm session and puts its key, Olm-encrypted, in
    /// [`key_shares`](GroupMessage::key_shares) for every other member device. That needs an
    /// Olm session with each of them: if some are missing, nothing is sent and
    /// [`Error::MissingSessions`] lists them (fetch their bundles,
    /// [`Device::create_session`], retry). A session is also replaced after
    /// [`GROUP_SESSION_MESSAGES_MAX`] messages.
    pub fn group_encrypt(
        &mut self,
        group_id: &str,
        members: &[PeerDevice],
        plaintext: &[u8],
    ) -> Result<GroupMessage, Error> {
        if plaintext.len() > PLAINTEXT_BYTES_MAX {
            return Err(Error::PlaintextTooLarge {
                bytes: plaintext.len(),
                bytes_max: PLAINTEXT_BYTES_MAX,
            });
        }
        let members: BTreeSet<PeerDevice> =
            members.iter().filter(|m| **m != self.me).cloned().collect();
        if members.len() > GROUP_MEMBER_DEVICES_MAX {
            return Err(Error::GroupTooLarge {
                members: members.len(),
                members_max: GROUP_MEMBER_DEVICES_MAX,
            });
        }
        let current = self.outbound_groups.get(group_id).filter(|group| {
            group.members == members && group.session.message_index() < GROUP_SESSION_MESSAGES_MAX
        });
        let key_shares = match current {
            Some(_) => Vec::new(),
            None => self.start_group_session(group_id, members)?,
        };
        let group = self
            .outbound_groups
            .get_mut(group_id)
            .expect("the group has an outbound session: found above or just started");
        let message = group.session.encrypt(plaintext);
        Ok(GroupMessage {
            session_id: group.session.session_id(),
            ciphertext: message.to_base64(),
            key_shares,
        })
    }

    /// Starts a new outbound session for `group_id` shared with `members` and returns the
    /// key shares. Changes nothing if a member lacks an Olm session.
    fn start_group_session(
        &mut self,
        group_id: &str,
        members: BTreeSet<PeerDevice>,
    ) -> Result<Vec<(PeerDevice, Envelope)>, Error> {
        let missing: Vec<PeerDevice> = members
            .iter()
            .filter(|m| !self.has_session(m))
            .cloned()
            .collect();
        if !missing.is_empty() {
            return Err(Error::MissingSessions { peers: missing });
        }
        let session = GroupSession::new(SessionConfig::version_1());
        let session_key = session.session_key();
        let share = KeyShare {
            group_id: group_id.to_owned(),
            session_id: session.session_id(),
            session_key: session_key.to_base64(),
        };
        let mut payload = zeroize::Zeroizing::new(vec![PAYLOAD_GROUP_KEY]);
        // Serializing three strings cannot fail.
        payload.extend_from_slice(&serde_json::to_vec(&share).expect("a KeyShare serializes"));
        let mut key_shares = Vec::with_capacity(members.len());
        for member in &members {
            key_shares.push((member.clone(), self.olm_encrypt(member, &payload)?));
        }
        // Our own inbound copy lets this device read its own messages when they come back.
        let own = InboundGroupSession::new(&session_key, SessionConfig::version_1());
        let me = self.me.clone();
        self.add_inbound_group_session(group_id, &me, own);
        self.outbound_groups
            .insert(group_id.to_owned(), OutboundGroup { session, members });
        Ok(key_shares)
    }

    /// Makes the next [`Device::group_encrypt`] in `group_id` start a new session even if
    /// the members did not change (after a suspected compromise, say).
    pub fn rotate_group_session(&mut self, group_id: &str) {
        self.outbound_groups.remove(group_id);
    }

    /// Decrypts a group message that `sender` (as the server names it) sent in `group_id`.
    ///
    /// First imports the key share addressed to this device, if the message carries one and
    /// the session is not known yet. Fails with [`Error::UnknownGroupSession`] when this
    /// device was never given the session's key: the message predates its joining or
    /// follows its removal.
    ///
    /// A replayed group message decrypts again to the same plaintext (Megolm keeps old
    /// message keys so that messages can arrive out of order); clients drop duplicates by
    /// `message_id`, which the server assigns.
    pub fn group_decrypt(
        &mut self,
        group_id: &str,
        sender: &PeerDevice,
        message: &GroupMessage,
    ) -> Result<Vec<u8>, Error> {
        let megolm =
            MegolmMessage::from_base64(&message.ciphertext).map_err(|e| Error::Malformed {
                what: "Megolm message",
                reason: e.to_string(),
            })?;
        if !self.has_group_session(group_id, sender, &message.session_id) {
            let me = self.me.clone();
            for (_, envelope) in message.key_shares.iter().filter(|(to, _)| *to == me) {
                let share_group_id = self.import_key_share(sender, envelope)?;
                if share_group_id != group_id {
                    return Err(Error::KeyShareMismatch {
                        group_id: group_id.to_owned(),
                        share_group_id,
                        sender: sender.clone(),
                    });
                }
            }
        }
        let key = (group_id.to_owned(), sender.clone());
        let session = self
            .inbound_groups
            .get_mut(&key)
            .and_then(|sessions| {
                sessions
                    .iter_mut()
                    .find(|s| s.session_id() == message.session_id)
            })
            .ok_or_else(|| Error::UnknownGroupSession {
                group_id: group_id.to_owned(),
                sender: sender.clone(),
                session_id: message.session_id.clone(),
            })?;
        let decrypted = session
            .decrypt(&megolm)
            .map_err(|source| Error::GroupDecrypt {
                group_id: group_id.to_owned(),
                sender: sender.clone(),
                source,
            })?;
        Ok(decrypted.plaintext)
    }

    /// Imports a group key share that `sender` sent this device over Olm (for shares sent
    /// apart from the group message) and returns the group it is for.
    ///
    /// The session is filed under `sender`: only messages that `sender` signed with it will
    /// decrypt as coming from `sender`.
    pub fn import_key_share(
        &mut self,
        sender: &PeerDevice,
        envelope: &Envelope,
    ) -> Result<String, Error> {
        let payload = zeroize::Zeroizing::new(self.olm_decrypt(sender, envelope)?);
        match payload.first() {
            Some(&PAYLOAD_GROUP_KEY) => self.import_group_key(sender, &payload[1..]),
            _ => Err(Error::MessageNotKeyShare {
                peer: sender.clone(),
            }),
        }
    }

    /// Imports a decrypted key share (the payload after its type byte).
    pub(crate) fn import_group_key(
        &mut self,
        sender: &PeerDevice,
        body: &[u8],
    ) -> Result<String, Error> {
        let malformed = |reason: String| Error::Malformed {
            what: "group key share",
            reason,
        };
        let share: KeyShare = serde_json::from_slice(body).map_err(|e| malformed(e.to_string()))?;
        let session_key =
            SessionKey::from_base64(&share.session_key).map_err(|e| malformed(e.to_string()))?;
        let session = InboundGroupSession::new(&session_key, SessionConfig::version_1());
        if session.session_id() != share.session_id {
            return Err(malformed(
                "session id does not match the session key".into(),
            ));
        }
        if !self.has_group_session(&share.group_id, sender, &share.session_id) {
            self.add_inbound_group_session(&share.group_id, sender, session);
        }
        Ok(share.group_id)
    }

    fn has_group_session(&self, group_id: &str, sender: &PeerDevice, session_id: &str) -> bool {
        self.inbound_groups
            .get(&(group_id.to_owned(), sender.clone()))
            .is_some_and(|sessions| sessions.iter().any(|s| s.session_id() == session_id))
    }

    fn add_inbound_group_session(
        &mut self,
        group_id: &str,
        sender: &PeerDevice,
        session: InboundGroupSession,
    ) {
        let sessions = self
            .inbound_groups
            .entry((group_id.to_owned(), sender.clone()))
            .or_default();
        if sessions.len() == GROUP_SESSIONS_PER_SENDER_MAX {
            sessions.remove(0);
        }
        sessions.push(session);
        assert!(sessions.len() <= GROUP_SESSIONS_PER_SENDER_MAX);
    }
}
