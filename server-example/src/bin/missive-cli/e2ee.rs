//! End-to-end encryption for `missive-cli`, with `missive-client`.
//!
//! - **Keys.** Each (server, user, device) has its own store file under the data directory,
//!   `<data-dir>/<host_port>/user-<id>-device-<id>.store`, encrypted with a key from
//!   `--passphrase` (Argon2id), `--store-key` (64 hex digits), or by default a random key
//!   kept next to the store in `….key` (dev default: whoever can read the data directory can
//!   read the store). A `.lock` file keeps a second `missive-cli` off the same device's state.
//!   At every start the CLI loads or creates its device, and when the server holds fewer than
//!   [`PREKEYS_LOW`] of its one-time prekeys (`GET /api/v1/keys/count`, or never uploaded),
//!   uploads identity key, signed prekey and new one-time prekeys up to
//!   [`ONE_TIME_KEYS_MAX`]; interactive sessions check again every few minutes.
//! - **Sending.** The recipients' device bundles come from `GET /api/v1/keys/{user_id}`, once
//!   per user per run (each fetch takes one one-time prekey per device, so the CLI does not
//!   fetch again while it runs); a session is created for every device without one. A 1:1
//!   message goes to every device of the peer and the sender's own other devices; a group
//!   message to every device of every member (`GET /api/v1/groups/{id}` each time, so a
//!   membership change re-keys on the next message).
//! - **Receiving.** `content` is parsed as a [`Payload`] and decrypted for the chat it came in
//!   (a group if `GET /api/v1/groups/{chat_id}` knows it); failures print
//!   `[could not decrypt: …]`. The store is saved after every encryption and decryption,
//!   before the `delivered` receipt goes out. Texts are remembered by `message_id` for the
//!   run, since an Olm message decrypts only once.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};

use missive_client::{
    Conversation, Device, Error as CryptoError, KdfParams, KeyBundles, ONE_TIME_KEYS_MAX, Payload,
    PeerDevice, StoreKey,
};
use serde_json::Value;

use crate::Http;

/// Top up when the server holds fewer one-time prekeys than this.
pub(crate) const PREKEYS_LOW: usize = ONE_TIME_KEYS_MAX / 2;

/// Where the store key comes from.
pub(crate) enum KeySource {
    /// Derived with Argon2id (salt and cost in the store's header).
    Passphrase(String),
    /// 32 raw bytes.
    Raw([u8; 32]),
    /// The dev default: a random key in a file next to the store, made on first use.
    KeyFile,
}

impl KeySource {
    /// From the `--passphrase` and `--store-key` options (at most one may be given).
    pub(crate) fn from_options(
        passphrase: Option<&str>,
        store_key: Option<&str>,
    ) -> Result<Self, String> {
        match (passphrase, store_key) {
            (Some(_), Some(_)) => Err("give --passphrase or --store-key, not both".into()),
            (Some(""), None) => Err("the passphrase is empty".into()),
            (Some(p), None) => Ok(Self::Passphrase(p.to_owned())),
            (None, Some(hex)) => parse_hex_key(hex)
                .map(Self::Raw)
                .ok_or_else(|| "--store-key must be 64 hex digits (32 bytes)".into()),
            (None, None) => Ok(Self::KeyFile),
        }
    }
}

fn parse_hex_key(text: &str) -> Option<[u8; 32]> {
    let text = text.trim();
    if text.len() != 64 || !text.is_ascii() {
        return None;
    }
    let mut key = [0u8; 32];
    for (i, byte) in key.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(key)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The store file of `me` on `server` under `data_dir`.
pub(crate) fn store_path(data_dir: &Path, server: &str, me: &PeerDevice) -> PathBuf {
    let host: String = server
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    data_dir
        .join(host)
        .join(format!("user-{}-device-{}.store", me.user_id, me.device_id))
}

/// The dev-default key file of the store at `store`.
pub(crate) fn key_file_path(store: &Path) -> PathBuf {
    store.with_extension("key")
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

fn dev_key(store: &Path) -> Result<StoreKey, String> {
    let path = key_file_path(store);
    match fs::read_to_string(&path) {
        Ok(text) => parse_hex_key(&text)
            .map(StoreKey::from_bytes)
            .ok_or_else(|| format!("{} is not a 64-hex-digit key", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if store.exists() {
                return Err(format!(
                    "{} exists but its key file {} does not: give --passphrase or --store-key",
                    store.display(),
                    path.display()
                ));
            }
            let mut key = [0u8; 32];
            getrandom::fill(&mut key).map_err(|e| format!("no randomness: {e}"))?;
            write_private(&path, hex(&key).as_bytes())
                .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
            Ok(StoreKey::from_bytes(key))
        }
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

/// Where a message goes.
#[derive(Clone, Debug)]
pub(crate) enum Recipient {
    /// A user, 1:1.
    User(String),
    /// A chat: a group, or a 1:1 chat by its id.
    Chat(String),
}

/// This device's end-to-end encryption state and what it learned during the run.
pub(crate) struct E2ee {
    device: Device,
    key: StoreKey,
    path: PathBuf,
    /// Held for the whole run: one process per device state.
    _lock: File,
    /// Devices per user, from this run's key fetches (only those with a usable session).
    devices: HashMap<String, Vec<PeerDevice>>,
    /// Whether a chat is a group.
    groups: HashMap<String, bool>,
    /// Texts shown, by `message_id` (redeliveries show the same text).
    opened: HashMap<String, String>,
    /// Texts this device sent, by `client_msg_id` until acknowledged, then by `message_id`.
    sent: HashMap<String, String>,
}

impl E2ee {
    /// Loads (or creates) the device of `me` and tops up its keys on the server.
    pub(crate) async fn start(
        http: &Http,
        data_dir: &Path,
        server: &str,
        me: PeerDevice,
        source: KeySource,
    ) -> Result<E2ee, String> {
        let path = store_path(data_dir, server, &me);
        let dir = path.parent().expect("the store path has a parent");
        fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let lock_path = path.with_extension("lock");
        let lock = File::create(&lock_path)
            .map_err(|e| format!("cannot create {}: {e}", lock_path.display()))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                return Err(format!(
                    "another missive-cli uses device {me} ({}); run one per device",
                    path.display()
                ));
            }
            Err(fs::TryLockError::Error(e)) => {
                return Err(format!("cannot lock {}: {e}", lock_path.display()));
            }
        }
        let exists = path.exists();
        let key = match source {
            KeySource::Passphrase(passphrase) if exists => {
                StoreKey::unlock(&path, &passphrase).map_err(|e| e.to_string())?
            }
            KeySource::Passphrase(passphrase) => {
                StoreKey::from_passphrase(&passphrase, KdfParams::default())
                    .map_err(|e| e.to_string())?
            }
            KeySource::Raw(bytes) => StoreKey::from_bytes(bytes),
            KeySource::KeyFile => dev_key(&path)?,
        };
        let device = if exists {
            let device = Device::load(&path, &key).map_err(|e| e.to_string())?;
            if *device.me() != me {
                return Err(format!(
                    "{} holds device {}, not {me}",
                    path.display(),
                    device.me()
                ));
            }
            device
        } else {
            let device = Device::new(me);
            device.save(&path, &key).map_err(|e| e.to_string())?;
            device
        };
        let mut e2ee = E2ee {
            device,
            key,
            path,
            _lock: lock,
            devices: HashMap::new(),
            groups: HashMap::new(),
            opened: HashMap::new(),
            sent: HashMap::new(),
        };
        e2ee.top_up(http).await?;
        Ok(e2ee)
    }

    /// This device's Curve25519 identity key, base64 (to compare out of band).
    pub(crate) fn identity_key(&self) -> String {
        self.device.identity_key()
    }

    /// The store file.
    pub(crate) fn store(&self) -> &Path {
        &self.path
    }

    fn save(&self) -> Result<(), String> {
        self.device
            .save(&self.path, &self.key)
            .map_err(|e| format!("cannot save the encryption state: {e}"))
    }

    /// Uploads keys if the server holds fewer than [`PREKEYS_LOW`] one-time prekeys; returns
    /// how many were added.
    pub(crate) async fn top_up(&mut self, http: &Http) -> Result<usize, String> {
        let (status, count) = http.call("GET", "/api/v1/keys/count", None).await;
        if status != 200 {
            return Err(format!(
                "GET /api/v1/keys/count: {status} {}",
                message(&count)
            ));
        }
        let count = count["count"].as_u64().unwrap_or(0) as usize;
        if count >= PREKEYS_LOW {
            return Ok(0);
        }
        self.device
            .generate_one_time_keys(ONE_TIME_KEYS_MAX.saturating_sub(count));
        // The private halves must be on disk before the server can hand out the public ones.
        self.save()?;
        let upload =
            serde_json::to_value(self.device.key_bundle_upload()).expect("a key upload serializes");
        let (status, answer) = http.call("PUT", "/api/v1/keys", Some(&upload)).await;
        if status != 200 {
            return Err(format!("PUT /api/v1/keys: {status} {}", message(&answer)));
        }
        self.device.mark_published();
        self.save()?;
        Ok(answer["added"].as_u64().unwrap_or(0) as usize)
    }

    /// The devices of `user_id` this device can encrypt to, fetching their bundles (and
    /// creating sessions) once per run.
    async fn devices_of(&mut self, http: &Http, user_id: &str) -> Result<Vec<PeerDevice>, String> {
        if let Some(devices) = self.devices.get(user_id) {
            return Ok(devices.clone());
        }
        let (status, answer) = http
            .call("GET", &format!("/api/v1/keys/{user_id}"), None)
            .await;
        if status != 200 {
            return Err(format!(
                "cannot fetch the keys of user {user_id}: {status} {}",
                message(&answer)
            ));
        }
        let bundles: KeyBundles = serde_json::from_value(answer)
            .map_err(|e| format!("bad key bundles for user {user_id}: {e}"))?;
        let mut devices = Vec::new();
        for bundle in bundles.devices {
            let peer = bundle.peer();
            if peer.user_id != user_id {
                eprintln!("missive-cli: ignoring a bundle for {peer} among user {user_id}'s");
                continue;
            }
            if peer == *self.device.me() {
                continue;
            }
            let pinned = self.device.peer_identity_key(&peer);
            if pinned.as_ref().is_some_and(|k| *k != bundle.identity_key) {
                eprintln!(
                    "missive-cli: the identity key of {peer} changed; not encrypting to it \
                     (check with its owner)"
                );
                continue;
            }
            if !self.device.has_session(&peer)
                && let Err(e) = self.device.create_session(&bundle)
            {
                eprintln!("missive-cli: not encrypting to {peer}: {e}");
                continue;
            }
            devices.push(peer);
        }
        self.save()?;
        self.devices.insert(user_id.to_owned(), devices.clone());
        Ok(devices)
    }

    /// Whether `chat_id` is a group: `GET /api/v1/groups/{id}` answers 200 for a member,
    /// 403 for a group one left (or was removed from), 404 for a 1:1 chat.
    async fn is_group(&mut self, http: &Http, chat_id: &str) -> bool {
        if let Some(&known) = self.groups.get(chat_id) {
            return known;
        }
        let (status, _) = http
            .call("GET", &format!("/api/v1/groups/{chat_id}"), None)
            .await;
        let group = status != 404;
        self.groups.insert(chat_id.to_owned(), group);
        group
    }

    /// Encrypts `text` for `to`; the result is a message's `content`.
    pub(crate) async fn seal(
        &mut self,
        http: &Http,
        to: &Recipient,
        text: &str,
    ) -> Result<String, String> {
        let (conversation, users) = match to {
            Recipient::User(user) => (Conversation::Direct, vec![user.clone()]),
            Recipient::Chat(chat) if self.is_group(http, chat).await => {
                let (status, group) = http
                    .call("GET", &format!("/api/v1/groups/{chat}"), None)
                    .await;
                if status != 200 {
                    return Err(format!("GET group {chat}: {status} {}", message(&group)));
                }
                let members = group["members"]
                    .as_array()
                    .map(|members| {
                        members
                            .iter()
                            .filter_map(|m| m["user_id"].as_str().map(str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default();
                (Conversation::group(chat.clone()), members)
            }
            Recipient::Chat(chat) => {
                let (_, chats) = http.call("GET", "/api/v1/chats", None).await;
                let me = self.device.me().user_id.clone();
                let other = chats["chats"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|c| c["chat_id"].as_str() == Some(chat))
                    .and_then(|c| c["members"].as_array())
                    .into_iter()
                    .flatten()
                    .filter_map(member_id)
                    .find(|m| *m != me)
                    .ok_or_else(|| format!("chat {chat} is not one of yours"))?;
                (Conversation::Direct, vec![other])
            }
        };
        let me = self.device.me().user_id.clone();
        let mut devices = Vec::new();
        for user in &users {
            let of_user = self.devices_of(http, user).await?;
            if of_user.is_empty() && *user != me && conversation == Conversation::Direct {
                return Err(format!(
                    "user {user} has no device with published keys, so nothing can be \
                     encrypted for them (--plaintext sends unencrypted)"
                ));
            }
            devices.extend(of_user);
        }
        if !users.contains(&me) {
            devices.extend(self.devices_of(http, &me).await?);
        }
        let sealed = self
            .device
            .encrypt_for(&conversation, &devices, text.as_bytes());
        // Ratchets moved even if a later step failed: keep the state either way.
        self.save()?;
        Ok(sealed.map_err(|e| e.to_string())?.to_wire())
    }

    /// Remembers what this device sent as `client_msg_id`, to show it when it comes back.
    pub(crate) fn remember_sent(&mut self, client_msg_id: &str, text: &str) {
        self.sent.insert(client_msg_id.to_owned(), text.to_owned());
    }

    /// Files the text sent as `client_msg_id` under the `message_id` the server gave it.
    pub(crate) fn acknowledged(&mut self, client_msg_id: &str, message_id: &str) {
        if let Some(text) = self.sent.remove(client_msg_id) {
            self.opened.insert(message_id.to_owned(), text);
        }
    }

    /// The text of a message object (`[could not decrypt: …]` when it cannot be read).
    pub(crate) async fn open(&mut self, http: &Http, message: &Value) -> String {
        let message_id = message["message_id"].as_str().unwrap_or_default();
        if let Some(text) = self.opened.get(message_id) {
            return text.clone();
        }
        let text = match self.try_open(http, message).await {
            Ok(text) => text,
            Err(e) => format!("[could not decrypt: {e}]"),
        };
        if !message_id.is_empty() {
            self.opened.insert(message_id.to_owned(), text.clone());
        }
        text
    }

    async fn try_open(&mut self, http: &Http, message: &Value) -> Result<String, String> {
        let chat_id = message["chat_id"].as_str().unwrap_or_default();
        let content = message["content"].as_str().unwrap_or_default();
        let sender = PeerDevice::new(
            message["sender_id"].as_str().unwrap_or_default(),
            message["sender_device_id"]
                .as_u64()
                .map(|d| d.to_string())
                .unwrap_or_default(),
        );
        let payload = match Payload::from_wire(content) {
            Ok(payload) => payload,
            Err(e) => {
                // A `--plaintext` client's message: shown, and marked as such.
                if !content.trim_start().starts_with('{')
                    && let Some(text) =
                        crate::unbase64(content).and_then(|bytes| String::from_utf8(bytes).ok())
                {
                    return Ok(format!("[unencrypted] {text}"));
                }
                return Err(e.to_string());
            }
        };
        let conversation = if self.is_group(http, chat_id).await {
            Conversation::group(chat_id)
        } else {
            Conversation::Direct
        };
        let result = self.device.decrypt(&conversation, &sender, &payload);
        // A new session, a ratchet step or an imported key share must survive a crash.
        self.save()?;
        match result {
            Ok(bytes) => Ok(String::from_utf8_lossy(&bytes).into_owned()),
            Err(CryptoError::NotForThisDevice { .. }) if sender == *self.device.me() => {
                Ok("(sent from this device in an earlier run; its text is not kept)".into())
            }
            Err(e) => Err(e.to_string()),
        }
    }
}

fn member_id(member: &Value) -> Option<String> {
    member
        .as_str()
        .map(str::to_owned)
        .or_else(|| member["user_id"].as_str().map(str::to_owned))
}

fn message(answer: &Value) -> &str {
    answer["error"]["message"].as_str().unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_options_are_parsed_strictly() {
        assert!(matches!(
            KeySource::from_options(None, None),
            Ok(KeySource::KeyFile)
        ));
        assert!(matches!(
            KeySource::from_options(Some("pw"), None),
            Ok(KeySource::Passphrase(p)) if p == "pw"
        ));
        let hex_key = "00ff".repeat(16);
        let Ok(KeySource::Raw(key)) = KeySource::from_options(None, Some(&hex_key)) else {
            panic!("a raw key")
        };
        assert_eq!(key[..2], [0x00, 0xff]);
        assert_eq!(hex(&key), hex_key);
        for bad in [
            "",
            "00ff",
            &"zz".repeat(32),
            &"0".repeat(65),
            &"é".repeat(32),
        ] {
            assert!(KeySource::from_options(None, Some(bad)).is_err(), "{bad:?}");
        }
        assert!(KeySource::from_options(Some(""), None).is_err());
        assert!(KeySource::from_options(Some("pw"), Some(&hex_key)).is_err());
    }

    #[test]
    fn each_server_user_and_device_has_its_own_store() {
        let dir = Path::new("/data");
        let a = store_path(dir, "http://127.0.0.1:8080/", &PeerDevice::new("1", "2"));
        assert_eq!(a, Path::new("/data/127_0_0_1_8080/user-1-device-2.store"));
        assert_eq!(
            key_file_path(&a),
            Path::new("/data/127_0_0_1_8080/user-1-device-2.key")
        );
        let b = store_path(dir, "http://127.0.0.1:8081", &PeerDevice::new("1", "2"));
        let c = store_path(dir, "http://127.0.0.1:8080", &PeerDevice::new("1", "3"));
        assert!(a != b && a != c && b != c);
    }
}
