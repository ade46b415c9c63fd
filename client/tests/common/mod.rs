//! A key server in memory, with the contract `PUT /api/v1/keys` and `GET /api/v1/keys/{user_id}`
//! must honour: each one-time prekey is handed out once, then the signed prekey alone. Every
//! upload and bundle goes through JSON, as it would on the wire.

#![allow(dead_code, unreachable_pub)]

use std::collections::{BTreeMap, VecDeque};

use missive_client::{Device, KeyBundles, KeyUpload, OneTimePrekey, PeerBundle, PeerDevice};

struct Published {
    identity_key: String,
    signing_key: String,
    signed_prekey: missive_client::SignedPrekey,
    one_time_prekeys: VecDeque<OneTimePrekey>,
}

#[derive(Default)]
pub struct KeyServer {
    devices: BTreeMap<PeerDevice, Published>,
}

impl KeyServer {
    /// `PUT /api/v1/keys` by `device`, then `mark_published`.
    pub fn publish(&mut self, device: &mut Device) {
        let body = serde_json::to_string(&device.key_bundle_upload()).unwrap();
        let upload: KeyUpload = serde_json::from_str(&body).unwrap();
        let entry = self
            .devices
            .entry(device.me().clone())
            .or_insert_with(|| Published {
                identity_key: String::new(),
                signing_key: String::new(),
                signed_prekey: upload.signed_prekey.clone(),
                one_time_prekeys: VecDeque::new(),
            });
        entry.identity_key = upload.identity_key;
        entry.signing_key = upload.signing_key;
        entry.signed_prekey = upload.signed_prekey;
        for key in upload.one_time_prekeys {
            if !entry
                .one_time_prekeys
                .iter()
                .any(|k| k.key_id == key.key_id)
            {
                entry.one_time_prekeys.push_back(key);
            }
        }
        device.mark_published();
    }

    /// `GET /api/v1/keys/count` for `device`.
    pub fn count(&self, device: &PeerDevice) -> usize {
        self.devices[device].one_time_prekeys.len()
    }

    /// `GET /api/v1/keys/{user_id}`: one bundle per device, each taking a one-time prekey.
    pub fn fetch_user(&mut self, user_id: &str) -> KeyBundles {
        let devices = self
            .devices
            .iter_mut()
            .filter(|(peer, _)| peer.user_id == user_id)
            .map(|(peer, published)| PeerBundle {
                user_id: peer.user_id.clone(),
                device_id: peer.device_id.clone(),
                identity_key: published.identity_key.clone(),
                signing_key: published.signing_key.clone(),
                signed_prekey: published.signed_prekey.clone(),
                one_time_prekey: published.one_time_prekeys.pop_front(),
            })
            .collect();
        let body = serde_json::to_string(&KeyBundles { devices }).unwrap();
        serde_json::from_str(&body).unwrap()
    }

    /// The bundle of one device (taking one of its one-time prekeys if any is left).
    pub fn fetch(&mut self, peer: &PeerDevice) -> PeerBundle {
        self.fetch_user(&peer.user_id)
            .devices
            .into_iter()
            .find(|b| b.device_id == peer.device_id)
            .expect("the device published keys")
    }
}

/// A device with `one_time_keys` one-time keys, published to `server`.
pub fn device(server: &mut KeyServer, user_id: &str, one_time_keys: usize) -> Device {
    let mut device = Device::new(PeerDevice::new(user_id, "1"));
    assert_eq!(device.generate_one_time_keys(one_time_keys), one_time_keys);
    server.publish(&mut device);
    device
}

/// Gives `sender` an Olm session with each of `peers` from freshly fetched bundles.
pub fn connect(server: &mut KeyServer, sender: &mut Device, peers: &[PeerDevice]) {
    for peer in peers {
        if peer != sender.me() && !sender.has_session(peer) {
            sender.create_session(&server.fetch(peer)).unwrap();
        }
    }
}
