//! A quick load figure: N WebSocket clients on loopback chat in pairs for a few seconds; prints
//! messages stored and delivered per second and the delivery latency (from the sender writing
//! the frame to the recipient reading it) at p50 / p99 / max.
//!
//! The server runs in the same process (same cores), with the durability of your choice:
//!
//! ```sh
//! cargo run --release -p missive-server --example load -- --clients 200 --seconds 5
//! cargo run --release -p missive-server --example load -- --durability os
//! ```
//!
//! Each client keeps up to `--window` messages in flight to its partner (client `i` writes to
//! client `i ^ 1`) and sends no receipts, so the figure is the message path alone.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use missive_server::App;
use missive_server::config::{Config, Durability};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

struct Options {
    clients: usize,
    seconds: u64,
    window: usize,
    durability: Durability,
}

fn options() -> Options {
    let mut o = Options {
        clients: 100,
        seconds: 5,
        window: 4,
        durability: Durability::Always,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    for pair in args.chunks(2) {
        let value = pair.get(1).map(String::as_str).unwrap_or("");
        match pair[0].as_str() {
            "--clients" => o.clients = value.parse().expect("--clients N"),
            "--seconds" => o.seconds = value.parse().expect("--seconds S"),
            "--window" => o.window = value.parse().expect("--window W"),
            "--durability" => o.durability = value.parse().expect("always | interval:MS | os"),
            other => panic!("unknown option {other}"),
        }
    }
    assert!(
        o.clients >= 2 && o.clients.is_multiple_of(2),
        "an even number of clients"
    );
    o
}

async fn post(addr: &str, path: &str, body: &Value) -> Value {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let body = body.to_string();
    let req = format!(
        "POST {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    serde_json::from_str(out.split_once("\r\n\r\n").unwrap().1).unwrap()
}

async fn login(addr: &str, n: usize) -> (String, String) {
    let phone = format!("+1555{n:07}");
    let code = post(
        addr,
        "/api/v1/auth/verify-phone",
        &json!({"phone_number": phone}),
    )
    .await["dev_code"]
        .as_str()
        .unwrap()
        .to_owned();
    let v = post(
        addr,
        "/api/v1/auth/verify-code",
        &json!({"phone_number": phone, "code": code}),
    )
    .await;
    (
        v["user_id"].as_str().unwrap().to_owned(),
        v["token"].as_str().unwrap().to_owned(),
    )
}

struct Outcome {
    acked: u64,
    latencies_us: Vec<u64>,
}

async fn client(
    addr: String,
    token: String,
    partner: String,
    base: Instant,
    send_until: Instant,
    window: usize,
) -> Outcome {
    let mut request = format!("ws://{addr}/ws").into_client_request().unwrap();
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    let (ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    let (mut write, mut read) = ws.split();
    let mut outcome = Outcome {
        acked: 0,
        latencies_us: Vec::new(),
    };
    let (mut in_flight, mut sent) = (0usize, 0u64);
    let read_until = send_until + Duration::from_secs(2);
    loop {
        if Instant::now() < send_until && in_flight < window {
            let frame = json!({"type": "message", "data": {
                "client_msg_id": format!("{sent}"), "to_user_id": partner,
                "message_type": "text",
                "content": base.elapsed().as_micros().to_string()}});
            write.send(Message::text(frame.to_string())).await.unwrap();
            in_flight += 1;
            sent += 1;
            continue;
        }
        let next = match tokio::time::timeout_at(read_until.into(), read.next()).await {
            Ok(Some(Ok(Message::Text(text)))) => text,
            Ok(Some(Ok(_))) => continue,
            _ => break,
        };
        let frame: Value = serde_json::from_str(&next).unwrap();
        match frame["type"].as_str() {
            Some("ack") => {
                in_flight -= 1;
                outcome.acked += 1;
            }
            Some("message") => {
                let sent_us: u64 = frame["data"]["content"].as_str().unwrap().parse().unwrap();
                let now_us = base.elapsed().as_micros() as u64;
                outcome.latencies_us.push(now_us.saturating_sub(sent_us));
            }
            Some("error") => panic!("refused: {frame}"),
            _ => {}
        }
        if Instant::now() >= send_until && in_flight == 0 && read_until <= Instant::now() {
            break;
        }
    }
    outcome
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

#[tokio::main]
async fn main() {
    let o = options();
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::for_tests(dir.path());
    config.durability = o.durability;
    config.log = "warn".into();
    let app = App::open(config).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.serve(listener, async {
        let _ = stopped.await;
    }));

    let mut users = Vec::with_capacity(o.clients);
    for n in 0..o.clients {
        users.push(login(&addr, n + 1).await);
    }
    let base = Instant::now();
    let send_until = base + Duration::from_secs(o.seconds) + Duration::from_millis(500);
    let mut tasks = Vec::new();
    for (i, (_, token)) in users.iter().enumerate() {
        let partner = users[i ^ 1].0.clone();
        tasks.push(tokio::spawn(client(
            addr.clone(),
            token.clone(),
            partner,
            base,
            send_until,
            o.window,
        )));
    }
    let mut acked = 0;
    let mut latencies = Vec::new();
    for task in tasks {
        let outcome = task.await.unwrap();
        acked += outcome.acked;
        latencies.extend(outcome.latencies_us);
    }
    let seconds = (send_until - base).as_secs_f64();
    latencies.sort_unstable();
    println!(
        "{} clients, durability {}, window {}, {:.1} s: {} messages acknowledged ({:.0}/s), \
         {} delivered ({:.0}/s); delivery latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        o.clients,
        o.durability,
        o.window,
        seconds,
        acked,
        acked as f64 / seconds,
        latencies.len(),
        latencies.len() as f64 / seconds,
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        percentile(&latencies, 1.0),
    );
    let _ = stop.send(());
    let _ = server.await;
}
