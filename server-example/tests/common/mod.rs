//! Shared helpers: an in-process server on 127.0.0.1 with a free port, a raw HTTP/1.1 client,
//! a WebSocket client (tokio-tungstenite) and a login helper. Every wait is bounded.

#![allow(dead_code, unreachable_pub)]

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use missive_server::App;
use missive_server::accounts::MemorySmsSink;
use missive_server::config::Config;
use missive_server::push::MemoryPushSink;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Bound for every single wait in the tests.
pub const WAIT: Duration = Duration::from_secs(10);

/// Fails the test if `future` takes longer than [`WAIT`].
pub async fn bounded<T>(future: impl Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, future)
        .await
        .expect("the operation finished in time")
}

/// Bound for a whole test made of many bounded steps.
pub const TEST_WAIT: Duration = Duration::from_secs(60);

/// Fails the test if `future` (a whole test, each step bounded by [`WAIT`]) takes longer than
/// [`TEST_WAIT`].
pub async fn bounded_test<T>(future: impl Future<Output = T>) -> T {
    tokio::time::timeout(TEST_WAIT, future)
        .await
        .expect("the test finished in time")
}

/// A running in-process server.
pub struct TestServer {
    pub addr: SocketAddr,
    pub sms: Arc<MemorySmsSink>,
    pub push: Arc<MemoryPushSink>,
    pub state: missive_server::AppState,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl TestServer {
    /// Starts a server with [`Config::for_tests`] adjusted by `adjust`.
    pub async fn start(adjust: impl FnOnce(&mut Config)) -> TestServer {
        Self::start_with(adjust, |app| app).await
    }

    /// Starts a server, letting `prepare` change the app (hooks, messaging) before it serves.
    pub async fn start_with(
        adjust: impl FnOnce(&mut Config),
        prepare: impl FnOnce(App) -> App,
    ) -> TestServer {
        Self::start_full(adjust, None, prepare).await
    }

    /// Starts a server whose clock (the engine's too) is `clock`.
    pub async fn start_clocked(
        adjust: impl FnOnce(&mut Config),
        clock: Arc<dyn missive_server::time::Clock>,
    ) -> TestServer {
        Self::start_full(adjust, Some(clock), |app| app).await
    }

    async fn start_full(
        adjust: impl FnOnce(&mut Config),
        clock: Option<Arc<dyn missive_server::time::Clock>>,
        prepare: impl FnOnce(App) -> App,
    ) -> TestServer {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let mut config = Config::for_tests(dir.path());
        adjust(&mut config);
        let sms = Arc::new(MemorySmsSink::default());
        let push = Arc::new(MemoryPushSink::default());
        let mut builder = App::builder(config)
            .sms_sink(sms.clone())
            .push_sink(push.clone());
        if let Some(clock) = clock {
            builder = builder.clock(clock);
        }
        let app = builder.build().expect("the server starts");
        let app = prepare(app);
        let state = app.state().clone();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a free port");
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(app.serve(listener, async {
            let _ = stopped.await;
        }));
        TestServer {
            addr,
            sms,
            push,
            state,
            stop: Some(stop),
            task: Some(task),
            _dir: dir,
        }
    }

    /// Starts a server with the default test configuration.
    pub async fn default() -> TestServer {
        Self::start(|_| {}).await
    }

    /// Triggers graceful shutdown and waits for `serve` to return.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            bounded(task).await.expect("serve did not panic");
        }
    }

    /// An HTTP request.
    pub async fn request(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&str>,
    ) -> Response {
        let mut headers = Vec::new();
        if let Some(t) = token {
            headers.push(("authorization".to_string(), format!("Bearer {t}")));
        }
        if body.is_some() {
            headers.push(("content-type".to_string(), "application/json".to_string()));
        }
        raw_request(self.addr, method, path, &headers, body.map(str::as_bytes)).await
    }

    pub async fn get(&self, path: &str, token: &str) -> Response {
        self.request("GET", path, Some(token), None).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: &str) -> Response {
        self.request("POST", path, token, Some(body)).await
    }

    pub async fn put(&self, path: &str, token: &str, body: &str) -> Response {
        self.request("PUT", path, Some(token), Some(body)).await
    }

    pub async fn delete(&self, path: &str, token: &str) -> Response {
        self.request("DELETE", path, Some(token), None).await
    }

    /// Verifies `phone` with its dev code: (user id, device id, token).
    pub async fn login(&self, phone: &str) -> Session {
        let r = self
            .post(
                "/api/v1/auth/verify-phone",
                None,
                &format!(r#"{{"phone_number":"{phone}"}}"#),
            )
            .await;
        assert_eq!(r.status, 202, "{}", r.body);
        let code = r.json()["dev_code"].as_str().expect("dev_code").to_owned();
        let r = self
            .post(
                "/api/v1/auth/verify-code",
                None,
                &format!(r#"{{"phone_number":"{phone}","code":"{code}","device_name":"test"}}"#),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        let v = r.json();
        Session {
            user_id: v["user_id"].as_str().expect("user_id string").to_owned(),
            device_id: v["device_id"].as_u64().expect("device_id") as u32,
            token: v["token"].as_str().expect("token").to_owned(),
        }
    }

    /// `ws://ADDR/ws`.
    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    /// A WebSocket authenticated by header.
    pub async fn ws(&self, token: &str) -> Ws {
        let mut request = self.ws_url().into_client_request().unwrap();
        request
            .headers_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
        let (ws, response) = bounded(tokio_tungstenite::connect_async(request))
            .await
            .expect("the WebSocket opens");
        assert_eq!(response.status(), 101);
        ws
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Sends a text frame.
pub async fn send_text(ws: &mut Ws, text: &str) {
    bounded(ws.send(Message::text(text)))
        .await
        .expect("the frame is sent");
}

/// The next text frame, as JSON (skipping pings and pongs).
pub async fn next_json(ws: &mut Ws) -> Value {
    loop {
        match bounded(ws.next()).await {
            Some(Ok(Message::Text(t))) => return serde_json::from_str(&t).expect("JSON frame"),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            other => panic!("expected a text frame, got {other:?}"),
        }
    }
}

/// Reads until the server closes; returns the close code (None if the stream just ended).
pub async fn close_code(ws: &mut Ws) -> Option<u16> {
    loop {
        match bounded(ws.next()).await {
            Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
            Some(Ok(_)) => continue,
            Some(Err(e)) => panic!("WebSocket error before the close frame: {e}"),
            None => return None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Session {
    pub user_id: String,
    pub device_id: u32,
    pub token: String,
}

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Asserts the protocol's error shape with `status` and `code`.
    pub fn assert_error(&self, status: u16, code: &str) {
        assert_eq!(self.status, status, "body: {}", self.body);
        let v = self.json();
        assert_eq!(v["error"]["code"], code, "body: {}", self.body);
        assert!(v["error"]["message"].is_string(), "body: {}", self.body);
    }
}

/// One HTTP/1.1 request on a fresh connection (`connection: close`), read to the end.
pub async fn raw_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(String, String)],
    body: Option<&[u8]>,
) -> Response {
    bounded(async {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        let mut head = format!("{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n");
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        if let Some(b) = body {
            head.push_str(&format!("content-length: {}\r\n", b.len()));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes()).await.expect("write");
        if let Some(b) = body {
            // The server may answer (413) and close before reading a large body.
            let _ = stream.write_all(b).await;
        }
        let mut raw = Vec::new();
        let _ = stream.read_to_end(&mut raw).await;
        parse_response(&raw)
    })
    .await
}

fn parse_response(raw: &[u8]) -> Response {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP head in {:?}", String::from_utf8_lossy(raw)));
    let head = std::str::from_utf8(&raw[..split]).expect("UTF-8 head");
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status code");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"))
    {
        body = dechunk(&body);
    }
    Response {
        status,
        headers,
        body: String::from_utf8(body).expect("UTF-8 body"),
    }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = data.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size_text = std::str::from_utf8(&data[..eol]).unwrap();
        let size = usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16).unwrap();
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&data[eol + 2..eol + 2 + size]);
        data = &data[eol + 2 + size + 2..];
    }
}

// ---- messaging helpers ----------------------------------------------------------------------

/// A logged-in device with an open WebSocket.
pub struct Client {
    pub session: Session,
    pub ws: Ws,
    /// Frames read while waiting for something else (an ack, a pong), not yet consumed.
    pub pending: std::collections::VecDeque<Value>,
}

impl Client {
    pub fn id(&self) -> &str {
        &self.session.user_id
    }

    pub fn token(&self) -> &str {
        &self.session.token
    }

    /// Sends a `message` frame and returns the `ack` data (panics on an error frame). Frames
    /// that arrive before the ack are returned in `skipped` and stay pending for `next`.
    pub async fn send_ws(&mut self, data: Value) -> (Value, Vec<Value>) {
        let cmid = data["client_msg_id"].clone();
        send_text(
            &mut self.ws,
            &serde_json::json!({"type": "message", "data": data}).to_string(),
        )
        .await;
        let mut skipped = Vec::new();
        loop {
            let frame = next_json(&mut self.ws).await;
            match frame["type"].as_str() {
                Some("ack") if frame["data"]["client_msg_id"] == cmid => {
                    return (frame["data"].clone(), skipped);
                }
                Some("error") if frame["data"]["client_msg_id"] == cmid => {
                    panic!("the send was refused: {frame}")
                }
                _ => {
                    skipped.push(frame.clone());
                    self.pending.push_back(frame);
                }
            }
        }
    }

    /// Sends a text to a user over the WebSocket; returns the ack data.
    pub async fn text_to_user(&mut self, user_id: &str, cmid: &str, content: &str) -> Value {
        self.send_ws(serde_json::json!({
            "client_msg_id": cmid, "to_user_id": user_id, "message_type": "text", "content": content
        }))
        .await
        .0
    }

    /// Sends a text to a chat over the WebSocket; returns the ack data.
    pub async fn text_to_chat(&mut self, chat_id: &str, cmid: &str, content: &str) -> Value {
        self.send_ws(serde_json::json!({
            "client_msg_id": cmid, "chat_id": chat_id, "message_type": "text", "content": content
        }))
        .await
        .0
    }

    /// The next frame of type `kind`, skipping others.
    pub async fn next_of(&mut self, kind: &str) -> Value {
        loop {
            let frame = self.next().await;
            if frame["type"] == kind {
                return frame["data"].clone();
            }
        }
    }

    /// The next frame, whatever its type.
    pub async fn next(&mut self) -> Value {
        match self.pending.pop_front() {
            Some(frame) => frame,
            None => next_json(&mut self.ws).await,
        }
    }

    /// Sends any frame.
    pub async fn frame(&mut self, kind: &str, data: Value) {
        send_text(
            &mut self.ws,
            &serde_json::json!({"type": kind, "data": data}).to_string(),
        )
        .await;
    }

    /// Sends a receipt frame.
    pub async fn receipt(&mut self, chat_id: &str, seq: u64, status: &str) {
        self.frame(
            "receipt",
            serde_json::json!({"chat_id": chat_id, "seq": seq, "status": status}),
        )
        .await;
    }

    /// Every frame until the connection stays silent for `quiet` (after a ping round trip).
    pub async fn settle(&mut self, quiet: Duration) -> Vec<Value> {
        let mut frames = self.drain().await;
        loop {
            match tokio::time::timeout(quiet, self.next()).await {
                Ok(frame) => frames.push(frame),
                Err(_) => return frames,
            }
        }
    }

    /// Round-trips a ping: every frame the server queued for this connection before the pong
    /// (from its outbox, in order) is returned.
    pub async fn drain(&mut self) -> Vec<Value> {
        send_text(&mut self.ws, r#"{"type":"ping"}"#).await;
        let mut frames = Vec::new();
        loop {
            let frame = self.next().await;
            if frame["type"] == "pong" {
                return frames;
            }
            frames.push(frame);
        }
    }
}

impl TestServer {
    /// Logs in `phone` (a new device) and opens a WebSocket for it.
    pub async fn client(&self, phone: &str) -> Client {
        let session = self.login(phone).await;
        let ws = self.ws(&session.token).await;
        Client {
            session,
            ws,
            pending: Default::default(),
        }
    }

    /// A WebSocket for an existing session.
    pub async fn connect(&self, session: &Session) -> Client {
        let ws = self.ws(&session.token).await;
        Client {
            session: session.clone(),
            ws,
            pending: Default::default(),
        }
    }

    /// POST with a JSON value, by token.
    pub async fn post_json(&self, path: &str, token: &str, body: &Value) -> Response {
        self.post(path, Some(token), &body.to_string()).await
    }

    /// Makes `owner` a contact-owner of `phones` (POST /contacts).
    pub async fn add_contacts(&self, owner: &Session, phones: &[&str]) {
        let r = self
            .post_json(
                "/api/v1/contacts",
                &owner.token,
                &serde_json::json!({ "phone_numbers": phones }),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
    }

    /// Creates a group; returns its id.
    pub async fn create_group(&self, admin: &Session, name: &str, members: &[&str]) -> String {
        let r = self
            .post_json(
                "/api/v1/groups",
                &admin.token,
                &serde_json::json!({ "name": name, "member_ids": members }),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.body);
        r.json()["group_id"].as_str().unwrap().to_owned()
    }
}

/// The phone number of test user `n`.
pub fn phone(n: usize) -> String {
    format!("+1555{n:07}")
}

/// The 1:1 chat id of two user ids, as the server writes it.
pub fn direct_chat(a: &str, b: &str) -> String {
    let (a, b): (u64, u64) = (a.parse().unwrap(), b.parse().unwrap());
    let (lo, hi) = (a.min(b), a.max(b));
    format!("{:032x}", (u128::from(lo) << 64) | u128::from(hi))
}
