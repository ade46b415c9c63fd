//! `missive-cli` against a real server: one user sends by phone number, the other listens and
//! prints it live (acknowledging it, which the sender's status then shows), groups are created,
//! and the chat list shows both chats. Messages are end-to-end encrypted (the default; see
//! `tests/e2ee.rs` for what the server stores); the key stores live in the test's directory.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::{TestServer, bounded, phone};

const CLI: &str = env!("CARGO_BIN_EXE_missive-cli");

async fn cli(server: &TestServer, data: &Path, args: &[&str]) -> Output {
    let mut command = Command::new(CLI);
    command
        .arg("--server")
        .arg(format!("http://{}", server.addr))
        .arg("--data-dir")
        .arg(data)
        .args(args)
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

fn stdout(output: &Output) -> String {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_users_chat_through_the_cli() {
    let server = TestServer::default().await;
    let dir = tempfile::tempdir().unwrap();
    let (alice_phone, bob_phone) = (phone(1), phone(2));
    let alice_session = dir.path().join("alice.json");
    let bob_session = dir.path().join("bob.json");
    let alice_session = alice_session.to_str().unwrap();
    let bob_session = bob_session.to_str().unwrap();

    // Both log in (and keep their sessions), with names.
    let out = cli(
        &server,
        dir.path(),
        &[
            "--phone",
            &alice_phone,
            "--name",
            "Alice",
            "--session",
            alice_session,
            "chats",
        ],
    )
    .await;
    assert!(stdout(&out).contains("no chats yet"));
    let out = cli(
        &server,
        dir.path(),
        &[
            "--phone",
            &bob_phone,
            "--name",
            "Bob",
            "--session",
            bob_session,
            "chats",
        ],
    )
    .await;
    stdout(&out);

    let sent = cli(
        &server,
        dir.path(),
        &[
            "--session",
            alice_session,
            "send",
            "--to-phone",
            &bob_phone,
            "hello Bob ✓",
        ],
    )
    .await;
    let sent = stdout(&sent);
    assert!(sent.starts_with("sent "), "{sent}");
    let group = cli(
        &server,
        dir.path(),
        &["--session", alice_session, "group", "lunch", &bob_phone],
    )
    .await;
    let group = stdout(&group).trim().to_owned();
    assert_eq!(group.len(), 32, "{group}");

    // Bob was offline: listening prints the backlog and acknowledges it.
    let heard = cli(
        &server,
        dir.path(),
        &["--session", bob_session, "listen", "--seconds", "2"],
    )
    .await;
    let heard = stdout(&heard);
    assert!(heard.contains("Alice (1): hello Bob ✓"), "{heard}");
    assert!(heard.contains("#lunch"), "{heard}");

    let chats = cli(&server, dir.path(), &["--session", alice_session, "chats"]).await;
    let chats = stdout(&chats);
    assert!(chats.contains("#lunch"), "{chats}");
    assert!(chats.contains("Bob"), "{chats}");
    // Bob's delivered receipt reached the server.
    let chat = common::direct_chat("1", "2");
    let session: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(alice_session).unwrap()).unwrap();
    let status = server
        .get(
            &format!("/api/v1/messages/{chat}:1/status"),
            session["token"].as_str().unwrap(),
        )
        .await
        .json();
    assert_eq!(status["status"], "delivered", "{status}");
}
