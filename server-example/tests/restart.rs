//! Crash and restart: the real server binary is killed with SIGKILL while a client is sending
//! as fast as acks come back, then started again on the same data directory. Every message that
//! was acknowledged before the kill is there — in the chat's history and delivered to the
//! recipient, who was offline the whole time — in order, each once; tokens still work; and the
//! server takes new messages after the restart.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{Client, Session, Ws, bounded, direct_chat, raw_request};
use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const BIN: &str = env!("CARGO_BIN_EXE_missive-server");

/// Messages sent before the kill (the kill comes once some are acknowledged).
const SENDS: usize = 400;
/// Acknowledged messages after which the server is killed.
const KILL_AFTER_ACKS: usize = 60;

struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Server {
    fn start(data: &Path) -> Server {
        let mut child = Command::new(BIN)
            .args([
                "--dev",
                "--port",
                "0",
                "--log",
                "warn",
                "--durability",
                "always",
            ])
            .args(["--ws-frames-per-s", "100000", "--ws-frames-burst", "100000"])
            .arg("--data-dir")
            .arg(data)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("the server binary starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .trim()
            .strip_prefix("listening on http://")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .parse()
            .unwrap();
        Server { child, addr }
    }

    async fn login(&self, phone: &str) -> Session {
        let post = |path: &'static str, body: String| async move {
            let r = raw_request(
                self.addr,
                "POST",
                path,
                &[("content-type".into(), "application/json".into())],
                Some(body.as_bytes()),
            )
            .await;
            assert!(r.status < 300, "{}", r.body);
            r.json()
        };
        let code = post(
            "/api/v1/auth/verify-phone",
            json!({"phone_number": phone}).to_string(),
        )
        .await["dev_code"]
            .as_str()
            .unwrap()
            .to_owned();
        let v = post(
            "/api/v1/auth/verify-code",
            json!({"phone_number": phone, "code": code}).to_string(),
        )
        .await;
        Session {
            user_id: v["user_id"].as_str().unwrap().to_owned(),
            device_id: v["device_id"].as_u64().unwrap() as u32,
            token: v["token"].as_str().unwrap().to_owned(),
        }
    }

    async fn ws(&self, session: &Session) -> Client {
        let mut request = format!("ws://{}/ws", self.addr)
            .into_client_request()
            .unwrap();
        request.headers_mut().insert(
            "authorization",
            format!("Bearer {}", session.token).parse().unwrap(),
        );
        let (ws, _) = bounded(tokio_tungstenite::connect_async(request))
            .await
            .unwrap();
        Client {
            session: session.clone(),
            ws,
            pending: Default::default(),
        }
    }

    async fn history(&self, session: &Session, chat: &str) -> Vec<Value> {
        let mut all = Vec::new();
        let mut after = 0;
        loop {
            let r = raw_request(
                self.addr,
                "GET",
                &format!("/api/v1/messages/{chat}?after_seq={after}&limit=200"),
                &[("authorization".into(), format!("Bearer {}", session.token))],
                None,
            )
            .await;
            let page = r.json();
            let messages = page["messages"].as_array().unwrap().clone();
            after = messages
                .last()
                .map_or(after, |m| m["seq"].as_u64().unwrap());
            all.extend(messages);
            if page["has_more"] != true {
                return all;
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends `SENDS` message frames without waiting, while reading acks; returns the acks read
/// (client_msg_id → seq) when the connection dies.
async fn send_until_killed(
    ws: Ws,
    to: String,
    killed: tokio::sync::oneshot::Sender<()>,
) -> BTreeMap<String, u64> {
    let (mut write, mut read) = ws.split();
    let writer = tokio::spawn(async move {
        for n in 0..SENDS {
            let frame = json!({"type": "message", "data": {
                "client_msg_id": format!("m{n:04}"), "to_user_id": to,
                "message_type": "text", "content": format!("m{n:04}")}});
            let text = tokio_tungstenite::tungstenite::Message::text(frame.to_string());
            if futures_util::SinkExt::send(&mut write, text).await.is_err() {
                return;
            }
        }
    });
    let mut acks = BTreeMap::new();
    let mut killed = Some(killed);
    while let Ok(Some(Ok(message))) =
        tokio::time::timeout(Duration::from_secs(10), read.next()).await
    {
        let Ok(text) = message.to_text() else {
            continue;
        };
        let frame: Value = serde_json::from_str(text).unwrap_or(Value::Null);
        if frame["type"] == "ack" {
            acks.insert(
                frame["data"]["client_msg_id"].as_str().unwrap().to_owned(),
                frame["data"]["seq"].as_u64().unwrap(),
            );
            if acks.len() >= KILL_AFTER_ACKS
                && let Some(killed) = killed.take()
            {
                let _ = killed.send(());
            }
        }
    }
    writer.abort();
    acks
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_messages_survive_sigkill_and_are_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = Server::start(&data);
    let alice = server.login("+15550000001").await;
    let bob = server.login("+15550000002").await;
    let chat = direct_chat(&alice.user_id, &bob.user_id);

    // Mid-traffic: kill as soon as enough acks are back, with more sends in flight.
    let sender = server.ws(&alice).await;
    let (kill_tx, kill_rx) = tokio::sync::oneshot::channel();
    let sending = tokio::spawn(send_until_killed(sender.ws, bob.user_id.clone(), kill_tx));
    bounded(kill_rx).await.expect("enough acks before the kill");
    server.child.kill().expect("SIGKILL");
    server.child.wait().unwrap();
    let acks = bounded(sending).await.unwrap();
    assert!(acks.len() >= KILL_AFTER_ACKS, "{}", acks.len());
    assert!(acks.len() < SENDS, "the kill came mid-traffic");
    println!(
        "acknowledged before SIGKILL: {} of {SENDS} sent",
        acks.len()
    );

    let server = Server::start(&data);
    // Tokens survived; the history has every acknowledged message, in seq order.
    let history = bounded(server.history(&alice, &chat)).await;
    let stored: BTreeMap<String, u64> = history
        .iter()
        .map(|m| {
            (
                m["content"].as_str().unwrap().to_owned(),
                m["seq"].as_u64().unwrap(),
            )
        })
        .collect();
    for (cmid, seq) in &acks {
        assert_eq!(
            stored.get(cmid),
            Some(seq),
            "acknowledged {cmid} is stored at its seq"
        );
    }
    let seqs: Vec<u64> = history.iter().map(|m| m["seq"].as_u64().unwrap()).collect();
    assert_eq!(
        seqs,
        (1..=seqs.len() as u64).collect::<Vec<_>>(),
        "dense, in order"
    );
    println!("stored after restart: {}", seqs.len());

    // Bob, offline until now, receives all of it in order, each once.
    let mut bob_ws = server.ws(&bob).await;
    let mut received = Vec::new();
    bounded(async {
        while received.len() < history.len() {
            let frame = bob_ws.next().await;
            if frame["type"] == "message" {
                received.push(frame["data"]["seq"].as_u64().unwrap());
            }
        }
    })
    .await;
    assert_eq!(received, seqs);
    // Resending an acknowledged id after the restart stores nothing new.
    let mut alice_ws = server.ws(&alice).await;
    let (cmid, seq) = acks.iter().next().unwrap();
    let ack = alice_ws.text_to_user(&bob.user_id, cmid, cmid).await;
    assert_eq!(ack["seq"], *seq);
    // New traffic flows, and nothing was delivered twice before it.
    let ack = alice_ws.text_to_user(&bob.user_id, "after", "after").await;
    assert_eq!(ack["seq"], seqs.len() as u64 + 1);
    let next = bob_ws.next_of("message").await;
    assert_eq!(next["content"], "after");
}
