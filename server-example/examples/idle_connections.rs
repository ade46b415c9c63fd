//! Measures what an idle WebSocket connection costs the server.
//!
//! Starts the `missive-server` binary (build it first: `cargo build --release -p
//! missive-server`), logs in N users, opens one idle WebSocket for each (a device with its engine
//! subscription and pump) and reports the growth of the server's
//! resident memory per connection (from `/proc/PID/status`, Linux only).
//!
//! ```sh
//! cargo build --release -p missive-server
//! cargo run --release -p missive-server --example idle_connections -- 10000
//! ```
//!
//! `MISSIVE_SERVER_BIN` overrides the server binary (e.g. a script that runs it under a heap
//! profiler). Every connection costs a file descriptor on both sides: keep N under half the open-file limit.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("Linux /proc");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

async fn post(addr: &str, path: &str, body: &str) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "POST {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out.split_once("\r\n\r\n").unwrap().1.to_owned()
}

fn field(json: &str, name: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(json).unwrap();
    v[name].as_str().unwrap().to_owned()
}

#[tokio::main]
async fn main() {
    let n: usize = std::env::args().nth(1).map_or(2000, |s| s.parse().unwrap());
    let exe = std::env::current_exe().unwrap();
    let bin = std::env::var_os("MISSIVE_SERVER_BIN").map_or_else(
        || {
            exe.parent()
                .unwrap()
                .parent()
                .unwrap()
                .join("missive-server")
        },
        std::path::PathBuf::from,
    );
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(&bin)
        .args([
            "--dev",
            "--port",
            "0",
            "--log",
            "warn",
            "--ip-requests-per-s",
            "0",
            "--verify-per-ip-per-min",
            "0",
        ])
        .args([
            "--user-requests-per-s",
            "0",
            "--connections-max",
            "19000",
            "--data-dir",
        ])
        .arg(dir.path())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {} ({e}); build it first", bin.display()));
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .trim_start_matches("listening on http://")
        .to_owned();
    // One user per connection: each connection is a device with its own subscription (a
    // device that connects twice replaces its older connection).
    let login = |i: usize| {
        let addr = addr.clone();
        async move {
            let phone = format!("+1555{i:07}");
            let code = field(
                &post(
                    &addr,
                    "/api/v1/auth/verify-phone",
                    &format!(r#"{{"phone_number":"{phone}"}}"#),
                )
                .await,
                "dev_code",
            );
            field(
                &post(
                    &addr,
                    "/api/v1/auth/verify-code",
                    &format!(r#"{{"phone_number":"{phone}","code":"{code}"}}"#),
                )
                .await,
                "token",
            )
        }
    };
    let mut tokens = Vec::with_capacity(n + 100);
    for i in 0..n + 100 {
        tokens.push(login(i + 1).await);
    }
    let config = WebSocketConfig::default().read_buffer_size(4096);
    let connect = |i: usize| {
        let url = format!("ws://{addr}/ws?token={}", tokens[i]);
        async move {
            let request = url.into_client_request().unwrap();
            tokio_tungstenite::connect_async_with_config(request, Some(config), false)
                .await
                .expect("connect")
                .0
        }
    };
    // Warm up the allocator and the runtime.
    let mut sockets = Vec::new();
    for i in 0..100 {
        sockets.push(connect(i).await);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = rss_kib(child.id());
    for i in 100..n + 100 {
        sockets.push(connect(i).await);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = rss_kib(child.id());
    let per = (after.saturating_sub(before)) as f64 * 1024.0 / n as f64;
    println!(
        "{n} idle WebSocket connections: server RSS {before} KiB -> {after} KiB, {per:.0} bytes per connection"
    );
    drop(sockets);
    // SIGTERM, so that profilers wrapped around the server can write their output.
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
}
