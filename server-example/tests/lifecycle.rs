//! The server's lifecycle: the binary starts with `--port 0` and prints its address, `--help`
//! documents every option, configuration precedence is flags > environment > file > defaults,
//! slow clients hit the handshake timeout, and shutdown (SIGTERM, or the in-process signal)
//! closes WebSockets with 1001, stops accepting and runs the shutdown hooks.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{TestServer, bounded, close_code, next_json, send_text};
use tokio::io::AsyncReadExt;

const BIN: &str = env!("CARGO_BIN_EXE_missive-server");

#[test]
fn help_documents_every_option() {
    let out = Command::new(BIN).arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for option in [
        "--config",
        "--dev",
        "--bind",
        "--port",
        "--data-dir",
        "--log",
        "--durability",
        "--group-members-max",
        "--content-bytes-max",
        "--frame-bytes-max",
        "--body-bytes-max",
        "--media-bytes-max",
        "--connections-max",
        "--ip-requests-per-s",
        "--ip-requests-burst",
        "--user-requests-per-s",
        "--user-requests-burst",
        "--ws-frames-per-s",
        "--ws-frames-burst",
        "--verify-per-ip-per-min",
        "--verify-code-ttl-s",
        "--verify-attempts-max",
        "--push-window-s",
        "--push-sink",
        "--push-webhook-url",
        "--heartbeat-timeout-s",
        "--handshake-timeout-s",
        "--idle-timeout-s",
        "--shutdown-grace-s",
        "--allowed-origins",
    ] {
        assert!(help.contains(option), "--help lacks {option}");
        let env = format!(
            "MISSIVE_{}",
            option
                .trim_start_matches("--")
                .replace('-', "_")
                .to_uppercase()
        );
        assert!(help.contains(&env), "--help lacks {env}");
    }
}

#[test]
fn flags_beat_environment_beat_file_beat_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("missive.toml");
    std::fs::write(
        &file,
        "port = 9000\ngroup_members_max = 10\npush_window_s = 7\nheartbeat_timeout_s = 9\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["--print-config", "--port", "9200", "--config"])
        .arg(&file)
        .env("MISSIVE_PORT", "9100")
        .env("MISSIVE_PUSH_WINDOW_S", "5")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = String::from_utf8(out.stdout).unwrap();
    assert!(printed.contains("port: 9200,"), "{printed}");
    assert!(printed.contains("push_window: 5s,"), "{printed}");
    assert!(printed.contains("group_members_max: 10,"), "{printed}");
    assert!(printed.contains("heartbeat_timeout: 9s,"), "{printed}");
    assert!(printed.contains("content_bytes_max: 65536,"), "{printed}");

    let bad = Command::new(BIN)
        .args(["--print-config", "--durability", "sometimes"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("durability"));
}

#[test]
fn the_binary_serves_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(BIN)
        .args(["--dev", "--port", "0", "--log", "warn", "--data-dir"])
        .arg(dir.path().join("data"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on http://")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let r = common::raw_request(addr.parse().unwrap(), "GET", "/healthz", &[], None).await;
        assert_eq!(r.status, 200);
    });
    assert!(dir.path().join("data/accounts.sqlite3").exists());
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the server did not stop within 10 s of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}");
}

#[tokio::test]
async fn silent_tcp_clients_hit_the_handshake_timeout() {
    bounded(async {
        let server = TestServer::start(|c| c.handshake_timeout = Duration::from_millis(500)).await;
        let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        let started = Instant::now();
        let mut buf = [0u8; 64];
        let n = stream.read(&mut buf).await.unwrap_or(0);
        assert_eq!(n, 0, "closed without a response");
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(400) && waited < Duration::from_secs(3),
            "{waited:?}"
        );
    })
    .await;
}

#[tokio::test]
async fn graceful_shutdown_closes_websockets_and_runs_hooks() {
    bounded(async {
        let hook_ran = Arc::new(AtomicBool::new(false));
        let flag = hook_ran.clone();
        let server = TestServer::start_with(
            |_| {},
            move |app| {
                app.state()
                    .shutdown
                    .register("test: engine close", move || async move {
                        flag.store(true, Ordering::SeqCst);
                    });
                app
            },
        )
        .await;
        let s = server.login("+15550000001").await;
        let mut ws = server.ws(&s.token).await;
        send_text(&mut ws, r#"{"type":"ping"}"#).await;
        assert_eq!(next_json(&mut ws).await["type"], "pong");
        let addr = server.addr;
        let state = server.state.clone();
        let stopping = tokio::spawn(server.shutdown());
        assert_eq!(close_code(&mut ws).await, Some(1001));
        stopping.await.unwrap();
        assert!(hook_ran.load(Ordering::SeqCst));
        assert!(state.shutdown.is_started());
        assert_eq!(state.connections.len(), 0);
        // No longer accepting.
        assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    })
    .await;
}
