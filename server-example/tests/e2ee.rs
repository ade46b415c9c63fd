//! End-to-end encryption through `missive-cli` against a real server on 127.0.0.1: two users
//! exchange messages both ways, a group of three reads each other, a member removed from the
//! group cannot decrypt what is sent after the re-key (checked with its own device state, on a
//! copy of the stored payload), a tampered ciphertext prints `[could not decrypt: …]`, and
//! neither the history endpoint nor the server's data directory holds any plaintext.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::{TestServer, bounded, bounded_test, phone};
use missive_client::{Conversation, Device, Error, Payload, PayloadBody, PeerDevice, StoreKey};
use serde_json::{Value, json};

const CLI: &str = env!("CARGO_BIN_EXE_missive-cli");

/// A CLI user: a phone number, a session file and a data directory of its own.
struct User {
    phone: String,
    name: &'static str,
    session: PathBuf,
    data: PathBuf,
}

impl User {
    fn new(dir: &Path, n: usize, name: &'static str) -> User {
        let data = dir.join(format!("data-{name}"));
        User {
            phone: phone(n),
            name,
            session: dir.join(format!("{name}.json")),
            data,
        }
    }

    fn saved(&self) -> Value {
        serde_json::from_str(&std::fs::read_to_string(&self.session).unwrap()).unwrap()
    }

    fn token(&self) -> String {
        self.saved()["token"].as_str().unwrap().to_owned()
    }

    fn id(&self) -> String {
        self.saved()["user_id"].as_str().unwrap().to_owned()
    }

    fn device(&self) -> PeerDevice {
        PeerDevice::new(self.id(), self.saved()["device_id"].to_string())
    }

    /// Runs `missive-cli` as this user and returns its output.
    async fn run(&self, server: &TestServer, args: &[&str]) -> Output {
        let mut command = Command::new(CLI);
        command
            .arg("--server")
            .arg(format!("http://{}", server.addr))
            .arg("--phone")
            .arg(&self.phone)
            .arg("--session")
            .arg(&self.session)
            .arg("--data-dir")
            .arg(&self.data)
            .args(args)
            .env_remove("MISSIVE_CLI_PASSPHRASE")
            .env_remove("MISSIVE_CLI_STORE_KEY")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let child = command.spawn().expect("missive-cli runs");
        bounded(tokio::task::spawn_blocking(move || {
            child.wait_with_output()
        }))
        .await
        .unwrap()
        .unwrap()
    }

    /// Runs `missive-cli` and returns its standard output, which it must exit 0 with.
    async fn ok(&self, server: &TestServer, args: &[&str]) -> String {
        let output = self.run(server, args).await;
        assert!(
            output.status.success(),
            "{} {args:?}: {}",
            self.name,
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Logs in (uploading keys) with a profile name.
    async fn login(&self, server: &TestServer) {
        self.ok(server, &["--name", self.name, "chats"]).await;
    }

    /// Prints incoming messages until `count` non-system ones were printed (bounded).
    async fn listen(&self, server: &TestServer, count: usize) -> String {
        self.ok(
            server,
            &["listen", "--count", &count.to_string(), "--seconds", "8"],
        )
        .await
    }

    /// This device's state, loaded from its store with the dev-default key file.
    fn load_device(&self) -> Device {
        let host = server_dir_name(&self.data);
        let store = self.data.join(host).join(format!(
            "user-{}-device-{}.store",
            self.id(),
            self.saved()["device_id"]
        ));
        let hex = std::fs::read_to_string(store.with_extension("key")).unwrap();
        let mut key = [0u8; 32];
        for (i, byte) in key.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap();
        }
        Device::load(&store, &StoreKey::from_bytes(key)).unwrap()
    }
}

/// The one per-server directory under a user's data directory.
fn server_dir_name(data: &Path) -> String {
    let mut entries: Vec<_> = std::fs::read_dir(data)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
    entries.pop().unwrap()
}

/// Base64 (standard, padded) as the `--plaintext` codec writes it.
fn base64(bytes: &[u8]) -> String {
    const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            out.push(if i <= chunk.len() {
                B64[((n >> (18 - 6 * i)) & 63) as usize] as char
            } else {
                '='
            });
        }
    }
    out
}

/// Every message of `chat_id`, oldest first, as `user` reads them from the history endpoint.
async fn history(server: &TestServer, user: &User, chat_id: &str) -> Vec<Value> {
    let page = server
        .get(
            &format!("/api/v1/messages/{chat_id}?limit=200"),
            &user.token(),
        )
        .await;
    assert_eq!(page.status, 200, "{}", page.body);
    page.json()["messages"].as_array().unwrap().clone()
}

/// Asserts that no stored content carries `secret`, as text or as the base64 of any of its
/// three alignments.
fn assert_hidden(messages: &[Value], secret: &str) {
    let raw = serde_json::to_string(messages).unwrap();
    assert!(!raw.contains(secret), "{secret:?} is in the history: {raw}");
    for skip in 0..3 {
        let encoded = base64(&secret.as_bytes()[skip..]);
        // The middle of the encoding does not depend on what precedes or follows.
        let core = &encoded[4..encoded.len() - 4];
        assert!(
            !raw.contains(core),
            "{secret:?} is in the history as base64"
        );
    }
}

/// Whether any file under `dir` contains `needle`.
fn dir_contains(dir: &Path, needle: &[u8]) -> bool {
    std::fs::read_dir(dir).unwrap().any(|entry| {
        let path = entry.unwrap().path();
        if path.is_dir() {
            dir_contains(&path, needle)
        } else {
            let bytes = std::fs::read(&path).unwrap_or_default();
            bytes.windows(needle.len()).any(|w| w == needle)
        }
    })
}

/// The `content` payload of `message`.
fn payload(message: &Value) -> Payload {
    Payload::from_wire(message["content"].as_str().unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_users_exchange_encrypted_messages_both_ways() {
    bounded_test(async {
        let server = TestServer::default().await;
        let dir = tempfile::tempdir().unwrap();
        let alice = User::new(dir.path(), 1, "Alice");
        let bob = User::new(dir.path(), 2, "Bob");
        alice.login(&server).await;
        bob.login(&server).await;

        // Logging in uploaded a full batch of one-time prekeys.
        let count = server.get("/api/v1/keys/count", &bob.token()).await.json();
        assert_eq!(count["count"], 50, "{count}");

        let sent = alice
            .ok(
                &server,
                &["send", "--to-phone", &bob.phone, "alpha secret ✓"],
            )
            .await;
        assert!(sent.starts_with("sent "), "{sent}");
        let heard = bob.listen(&server, 1).await;
        assert!(heard.contains("Alice (1): alpha secret ✓"), "{heard}");

        bob.ok(&server, &["send", "--to", &alice.id(), "beta secret"])
            .await;
        let heard = alice.listen(&server, 1).await;
        assert!(heard.contains("Bob (2): beta secret"), "{heard}");
        assert!(!heard.contains("could not decrypt"), "{heard}");
        // A second round in the established sessions.
        alice
            .ok(&server, &["send", "--to", &bob.id(), "gamma secret"])
            .await;
        bob.ok(&server, &["send", "--to", &alice.id(), "delta secret"])
            .await;
        let heard = bob.listen(&server, 1).await;
        assert!(heard.contains("Alice (1): gamma secret"), "{heard}");
        let heard = alice.listen(&server, 1).await;
        assert!(heard.contains("Bob (2): delta secret"), "{heard}");

        // The server stored ciphertext only: a 1:1 payload per message, an Olm message for
        // the other user's device, nothing readable.
        let chat = common::direct_chat(&alice.id(), &bob.id());
        let messages = history(&server, &alice, &chat).await;
        assert_eq!(messages.len(), 4);
        for secret in [
            "alpha secret",
            "beta secret",
            "gamma secret",
            "delta secret",
        ] {
            assert_hidden(&messages, secret);
        }
        for message in &messages {
            let payload = payload(message);
            assert_eq!(payload.v, 1);
            assert!(matches!(payload.body, PayloadBody::Direct { .. }));
            let to = if payload.sender == alice.device() {
                bob.device()
            } else {
                alice.device()
            };
            assert_eq!(payload.recipients(), vec![to]);
        }

        // The check above can fail: a --plaintext message is visible in the same history,
        // and the receiving CLI marks it as unencrypted.
        alice
            .ok(
                &server,
                &["--plaintext", "send", "--to", &bob.id(), "open postcard"],
            )
            .await;
        let messages = history(&server, &alice, &chat).await;
        let visible = std::panic::catch_unwind(|| assert_hidden(&messages, "open postcard"));
        assert!(visible.is_err(), "a plaintext message must be found");
        let heard = bob.listen(&server, 1).await;
        assert!(heard.contains("[unencrypted] open postcard"), "{heard}");

        // Nor is any secret in the server's files, where the search does find what the
        // server does store in the clear (a phone number, the --plaintext message).
        let data_dir = server.state.config.data_dir.clone();
        assert!(dir_contains(&data_dir, bob.phone.as_bytes()));
        assert!(dir_contains(&data_dir, base64(b"open postcard").as_bytes()));
        for secret in [
            "alpha secret",
            "beta secret",
            "gamma secret",
            "delta secret",
        ] {
            assert!(
                !dir_contains(&data_dir, secret.as_bytes()),
                "{secret:?} is in {}",
                data_dir.display()
            );
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_ciphertext_prints_could_not_decrypt() {
    bounded_test(async {
        let server = TestServer::default().await;
        let dir = tempfile::tempdir().unwrap();
        let alice = User::new(dir.path(), 1, "Alice");
        let bob = User::new(dir.path(), 2, "Bob");
        alice.login(&server).await;
        bob.login(&server).await;
        alice
            .ok(&server, &["send", "--to", &bob.id(), "epsilon secret"])
            .await;
        let chat = common::direct_chat(&alice.id(), &bob.id());
        let original = history(&server, &alice, &chat).await.remove(0);
        // Alice deletes the original before Bob reads it, then a copy with one character of
        // Bob's ciphertext changed is stored, then the genuine copy again.
        let deleted = server
            .delete(
                &format!(
                    "/api/v1/messages/{}",
                    original["message_id"].as_str().unwrap()
                ),
                &alice.token(),
            )
            .await;
        assert_eq!(deleted.status, 204, "{}", deleted.body);
        let mut tampered = payload(&original);
        let PayloadBody::Direct { olm } = &mut tampered.body else {
            panic!("a 1:1 payload")
        };
        let bob_device = bob.device();
        let envelope = olm
            .get_mut(&bob_device.user_id)
            .and_then(|d| d.get_mut(&bob_device.device_id))
            .unwrap();
        let mut body: Vec<char> = envelope.body.chars().collect();
        let at = body.len() / 2;
        body[at] = if body[at] == 'A' { 'B' } else { 'A' };
        envelope.body = body.into_iter().collect();
        for (id, content) in [
            ("tampered", tampered.to_wire()),
            ("genuine", original["content"].as_str().unwrap().to_owned()),
        ] {
            let body = json!({"client_msg_id": id, "to_user_id": bob.id(),
                              "message_type": "text", "content": content});
            let r = server
                .post("/api/v1/messages", Some(&alice.token()), &body.to_string())
                .await;
            assert_eq!(r.status, 201, "{}", r.body);
        }

        let heard = bob.listen(&server, 3).await;
        let lines: Vec<&str> = heard.lines().filter(|l| l.contains("Alice (1)")).collect();
        assert_eq!(lines.len(), 3, "{heard}");
        assert!(lines[0].contains("(deleted)"), "{heard}");
        assert!(
            lines[1].contains("[could not decrypt: cannot create an Olm session"),
            "{heard}"
        );
        assert!(lines[2].contains("Alice (1): epsilon secret"), "{heard}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_of_three_and_a_removed_member_after_the_rekey() {
    bounded_test(async {
        let server = TestServer::default().await;
        let dir = tempfile::tempdir().unwrap();
        let alice = User::new(dir.path(), 1, "Alice");
        let bob = User::new(dir.path(), 2, "Bob");
        let carol = User::new(dir.path(), 3, "Carol");
        for user in [&alice, &bob, &carol] {
            user.login(&server).await;
        }
        let group = alice
            .ok(&server, &["group", "lunch", &bob.phone, &carol.phone])
            .await
            .trim()
            .to_owned();
        for user in [&alice, &bob, &carol] {
            let text = format!("{} says zeta secret", user.name);
            user.ok(&server, &["send", "--chat", &group, &text]).await;
        }
        // Each reads the other two (the server does not echo a message to its sender).
        for user in [&alice, &bob, &carol] {
            let heard = user.listen(&server, 2).await;
            for other in [&alice, &bob, &carol] {
                if other.name != user.name {
                    let line = format!(
                        "{} ({}): {} says zeta secret",
                        other.name,
                        other.id(),
                        other.name
                    );
                    assert!(heard.contains(&line), "{}: {heard}", user.name);
                }
            }
            assert!(!heard.contains("could not decrypt"), "{heard}");
        }

        // Carol is removed; Alice's next message re-keys for Alice and Bob only.
        let removed = server
            .delete(
                &format!("/api/v1/groups/{group}/members/{}", carol.id()),
                &alice.token(),
            )
            .await;
        assert_eq!(removed.status, 204, "{}", removed.body);
        alice
            .ok(
                &server,
                &["send", "--chat", &group, "eta secret after removal"],
            )
            .await;
        let heard = bob.listen(&server, 1).await;
        assert!(
            heard.contains("Alice (1): eta secret after removal"),
            "{heard}"
        );
        let heard = carol.ok(&server, &["listen", "--seconds", "2"]).await;
        assert!(!heard.contains("eta secret"), "{heard}");

        let messages = history(&server, &bob, &group).await;
        for secret in ["zeta secret", "eta secret"] {
            assert_hidden(&messages, secret);
        }
        let from_alice: Vec<&Value> = messages
            .iter()
            .filter(|m| m["sender_id"] == alice.id() && m["message_type"] == "text")
            .collect();
        assert_eq!(from_alice.len(), 2);
        let (before, after) = (payload(from_alice[0]), payload(from_alice[1]));
        let (
            PayloadBody::Group {
                session_id: old, ..
            },
            PayloadBody::Group {
                session_id: new, ..
            },
        ) = (&before.body, &after.body)
        else {
            panic!("group payloads")
        };
        assert_ne!(old, new, "removing a member starts a new session");
        assert_eq!(after.recipients(), vec![bob.device()]);

        // Carol's own device state opens the message from before her removal, not the one
        // after: she never received the new session's key.
        let mut carol_device = carol.load_device();
        let conversation = Conversation::group(group.clone());
        assert_eq!(
            carol_device
                .decrypt(&conversation, &alice.device(), &before)
                .unwrap(),
            b"Alice says zeta secret"
        );
        assert!(matches!(
            carol_device.decrypt(&conversation, &alice.device(), &after),
            Err(Error::UnknownGroupSession { .. })
        ));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_topped_up_when_the_server_runs_low() {
    bounded_test(async {
        let server = TestServer::default().await;
        let dir = tempfile::tempdir().unwrap();
        let alice = User::new(dir.path(), 1, "Alice");
        let bob = User::new(dir.path(), 2, "Bob");
        alice.login(&server).await;
        bob.login(&server).await;
        let count = |user: &User| {
            let token = user.token();
            let server = &server;
            async move {
                server.get("/api/v1/keys/count", &token).await.json()["count"]
                    .as_u64()
                    .unwrap()
            }
        };
        assert_eq!(count(&bob).await, 50);
        // Thirty fetches take thirty of Bob's one-time prekeys.
        for _ in 0..30 {
            let r = server
                .get(&format!("/api/v1/keys/{}", bob.id()), &alice.token())
                .await;
            assert_eq!(r.status, 200, "{}", r.body);
        }
        assert_eq!(count(&bob).await, 20);
        // Bob's next run tops up to fifty; a run with enough left uploads nothing.
        bob.ok(&server, &["chats"]).await;
        assert_eq!(count(&bob).await, 50);
        bob.ok(&server, &["chats"]).await;
        assert_eq!(count(&bob).await, 50);
        // The keys he uploaded are his: a session from one of them works.
        alice
            .ok(&server, &["send", "--to", &bob.id(), "theta secret"])
            .await;
        let heard = bob.listen(&server, 1).await;
        assert!(heard.contains("Alice (1): theta secret"), "{heard}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_passphrase_protects_the_key_store() {
    bounded_test(async {
        let server = TestServer::default().await;
        let dir = tempfile::tempdir().unwrap();
        let alice = User::new(dir.path(), 1, "Alice");
        alice
            .ok(&server, &["--passphrase", "correct horse", "chats"])
            .await;
        // No key file was written: the key comes from the passphrase alone.
        let host = server_dir_name(&alice.data);
        let files: Vec<String> = std::fs::read_dir(alice.data.join(host))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert!(files.iter().any(|f| f.ends_with(".store")), "{files:?}");
        assert!(!files.iter().any(|f| f.ends_with(".key")), "{files:?}");

        let wrong = alice
            .run(&server, &["--passphrase", "wrong horse", "chats"])
            .await;
        assert!(!wrong.status.success());
        let stderr = String::from_utf8_lossy(&wrong.stderr);
        assert!(stderr.contains("wrong key or modified file"), "{stderr}");
        // Without the passphrase there is no key file to fall back on.
        let none = alice.run(&server, &["chats"]).await;
        assert!(!none.status.success());
        let stderr = String::from_utf8_lossy(&none.stderr);
        assert!(
            stderr.contains("give --passphrase or --store-key"),
            "{stderr}"
        );

        alice
            .ok(&server, &["--passphrase", "correct horse", "chats"])
            .await;
    })
    .await;
}
