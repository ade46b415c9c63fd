//! `missive-cli`: a small terminal client for the example server, so that two people (or two
//! terminals) can chat against `cargo run -p missive-server -- --dev`.
//!
//! ```text
//! missive-cli --phone +15550000001 --name Alice          # terminal 1: interactive chat
//! missive-cli --phone +15550000002 --name Bob            # terminal 2
//!   /to +15550000001        then type lines to send them to Alice
//! missive-cli --phone +15550000002 send --to-phone +15550000001 "hello"
//! missive-cli --phone +15550000002 chats
//! missive-cli --phone +15550000002 listen --seconds 10
//! ```
//!
//! It logs in with the dev code that a `--dev` server returns (each run registers a device,
//! unless `--session FILE` keeps the token between runs), prints incoming messages live and
//! acknowledges each with a `delivered` receipt.
//!
//! Messages are **end-to-end encrypted by default** with `missive-client` (see `e2ee.rs`):
//! at login the device's keys are loaded from (or created in) an encrypted store under
//! `--data-dir`, and uploaded to the key server when it runs low on one-time prekeys;
//! `content` is a versioned [`missive_client::Payload`] with one Olm ciphertext per recipient
//! device (1:1) or one Megolm ciphertext with key shares on re-key (groups). A message that
//! cannot be decrypted prints `[could not decrypt: …]`. `--plaintext` sends base64 of the
//! UTF-8 text instead, for debugging.

#![forbid(unsafe_code)]

#[path = "missive-cli/e2ee.rs"]
mod e2ee;

use std::collections::HashMap;
use std::io::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// How often the client pings (the server's heartbeat timeout is 60 s by default).
const PING_EVERY: Duration = Duration::from_secs(20);
/// How often an interactive session checks that the server has enough one-time prekeys.
const TOP_UP_EVERY: Duration = Duration::from_secs(300);

#[derive(Parser, Debug)]
#[command(
    name = "missive-cli",
    version,
    about = "Chat from a terminal against a Missive example server in --dev mode."
)]
struct Args {
    /// The server.
    #[arg(
        long,
        env = "MISSIVE_SERVER",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    server: String,
    /// Your phone number (E.164), verified with the dev code the server returns.
    #[arg(long, env = "MISSIVE_PHONE", global = true)]
    phone: Option<String>,
    /// Your display name (set on the profile after logging in).
    #[arg(long, global = true)]
    name: Option<String>,
    /// Keep the login (user, device, token) in this file and reuse it.
    #[arg(long, value_name = "FILE", global = true)]
    session: Option<PathBuf>,
    /// Where the encrypted key stores live (one per server, user and device). Default:
    /// `$XDG_DATA_HOME/missive-cli`, else `~/.local/share/missive-cli`, else `./missive-cli-data`.
    #[arg(long, env = "MISSIVE_CLI_DATA", value_name = "DIR", global = true)]
    data_dir: Option<PathBuf>,
    /// Encrypt the key store with a key derived from this passphrase (Argon2id). Without it
    /// or --store-key, a random key is kept in a file next to the store (dev default: anyone
    /// who can read the data directory can read the keys).
    #[arg(
        long,
        env = "MISSIVE_CLI_PASSPHRASE",
        hide_env_values = true,
        global = true
    )]
    passphrase: Option<String>,
    /// Encrypt the key store with this raw key: 64 hex digits (from a keychain, say).
    #[arg(
        long,
        env = "MISSIVE_CLI_STORE_KEY",
        hide_env_values = true,
        global = true
    )]
    store_key: Option<String>,
    /// Send and read base64 plaintext instead of end-to-end encrypted messages (debugging:
    /// the server sees everything).
    #[arg(long, global = true)]
    plaintext: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Interactive chat (the default): type `/help`.
    Chat,
    /// List your chats.
    Chats,
    /// Send one message and exit.
    Send {
        /// To this user id.
        #[arg(long, conflicts_with_all = ["to_phone", "chat"])]
        to: Option<String>,
        /// To the user with this phone number.
        #[arg(long)]
        to_phone: Option<String>,
        /// To this chat (a group).
        #[arg(long)]
        chat: Option<String>,
        /// The text.
        text: String,
    },
    /// Print incoming messages.
    Listen {
        /// Stop after this many seconds (default: never).
        #[arg(long)]
        seconds: Option<u64>,
        /// Stop after printing this many messages other than group changes.
        #[arg(long)]
        count: Option<usize>,
    },
    /// Create a group and print its id.
    Group {
        /// Its name.
        #[arg(value_name = "NAME")]
        title: String,
        /// Members: user ids or phone numbers.
        members: Vec<String>,
    },
}

// ---- content ------------------------------------------------------------------------------

/// Turns what the user typed into a message's `content`, and content back into text.
enum Codec {
    /// Base64 of UTF-8 (`--plaintext`): not secret, just opaque-looking.
    Plain,
    /// End-to-end encryption with `missive-client` (the default).
    E2ee(Box<e2ee::E2ee>),
}

impl Codec {
    /// The `content` to send to `to` for `text`.
    async fn seal(
        &mut self,
        http: &Http,
        to: &e2ee::Recipient,
        text: &str,
    ) -> Result<String, String> {
        match self {
            Codec::Plain => Ok(base64(text.as_bytes())),
            Codec::E2ee(e2ee) => e2ee.seal(http, to, text).await,
        }
    }

    /// The text of a message object.
    async fn open(&mut self, http: &Http, message: &Value) -> String {
        match self {
            Codec::Plain => {
                let content = message["content"].as_str().unwrap_or_default();
                unbase64(content)
                    .and_then(|b| String::from_utf8(b).ok())
                    .unwrap_or_else(|| format!("<{} opaque bytes>", content.len()))
            }
            Codec::E2ee(e2ee) => e2ee.open(http, message).await,
        }
    }

    /// A preview of a message without decrypting it (an Olm message decrypts only once, so
    /// the chat list must not use it up before the message is delivered).
    fn preview(&self, message: &Value) -> String {
        match self {
            Codec::Plain => {
                let content = message["content"].as_str().unwrap_or_default();
                unbase64(content)
                    .and_then(|b| String::from_utf8(b).ok())
                    .unwrap_or_else(|| format!("<{} opaque bytes>", content.len()))
            }
            Codec::E2ee(_) => "(encrypted)".to_owned(),
        }
    }

    /// Remembers the text sent as `client_msg_id` (a 1:1 message is not encrypted to its
    /// own sending device).
    fn remember_sent(&mut self, client_msg_id: &str, text: &str) {
        if let Codec::E2ee(e2ee) = self {
            e2ee.remember_sent(client_msg_id, text);
        }
    }

    /// Files the text sent as `client_msg_id` under its `message_id`.
    fn acknowledged(&mut self, client_msg_id: &str, message_id: &str) {
        if let Codec::E2ee(e2ee) = self {
            e2ee.acknowledged(client_msg_id, message_id);
        }
    }

    /// Tops up the one-time prekeys on the server if they run low.
    async fn top_up(&mut self, http: &Http) {
        if let Codec::E2ee(e2ee) = self
            && let Err(e) = e2ee.top_up(http).await
        {
            eprintln!("missive-cli: cannot top up keys: {e}");
        }
    }
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn base64(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(B64[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn unbase64(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let (mut acc, mut bits) = (0u32, 0);
    for c in text.bytes().filter(|c| *c != b'=') {
        let v = B64.iter().position(|b| *b == c)? as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

// ---- HTTP ---------------------------------------------------------------------------------

/// A minimal HTTP/1.1 client: one request per connection, JSON in and out.
#[derive(Clone)]
struct Http {
    host: String,
    token: Option<String>,
}

fn fail(message: impl std::fmt::Display) -> ! {
    eprintln!("missive-cli: {message}");
    std::process::exit(1)
}

impl Http {
    fn new(server: &str) -> Http {
        let host = server
            .strip_prefix("http://")
            .unwrap_or_else(|| fail("the server must be an http:// URL"))
            .trim_end_matches('/')
            .to_owned();
        Http { host, token: None }
    }

    async fn call(&self, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
        let mut stream = TcpStream::connect(&self.host)
            .await
            .unwrap_or_else(|e| fail(format!("cannot reach {}: {e}", self.host)));
        let body = body.map(Value::to_string).unwrap_or_default();
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nhost: {}\r\nconnection: close\r\ncontent-length: {}\r\n",
            self.host,
            body.len()
        );
        if !body.is_empty() {
            head.push_str("content-type: application/json\r\n");
        }
        if let Some(token) = &self.token {
            head.push_str(&format!("authorization: Bearer {token}\r\n"));
        }
        head.push_str("\r\n");
        head.push_str(&body);
        if let Err(e) = stream.write_all(head.as_bytes()).await {
            fail(format!("request failed: {e}"));
        }
        let mut raw = Vec::new();
        let _ = stream.read_to_end(&mut raw).await;
        let text = String::from_utf8_lossy(&raw);
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let chunked = head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked");
        let body = if chunked {
            dechunk(body)
        } else {
            body.to_owned()
        };
        (status, serde_json::from_str(&body).unwrap_or(Value::Null))
    }

    /// The JSON answer of a successful call; exits with the server's error otherwise.
    async fn ok(&self, method: &str, path: &str, body: Option<&Value>) -> Value {
        let (status, value) = self.call(method, path, body).await;
        if !(200..300).contains(&status) {
            fail(format!(
                "{method} {path}: {status} {}",
                value["error"]["message"].as_str().unwrap_or("")
            ));
        }
        value
    }
}

fn dechunk(mut data: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = data.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        data = rest[size..].trim_start_matches("\r\n");
    }
    out
}

// ---- session ------------------------------------------------------------------------------

struct Session {
    user_id: String,
    device_id: u64,
    token: String,
}

async fn login(http: &mut Http, args: &Args) -> Session {
    if let Some(path) = &args.session
        && let Ok(text) = std::fs::read_to_string(path)
        && let Ok(saved) = serde_json::from_str::<Value>(&text)
        && let (Some(user), Some(token)) = (saved["user_id"].as_str(), saved["token"].as_str())
    {
        http.token = Some(token.to_owned());
        let (status, _) = http.call("GET", "/api/v1/users/me", None).await;
        if status == 200 {
            return Session {
                user_id: user.to_owned(),
                device_id: saved["device_id"].as_u64().unwrap_or(0),
                token: token.to_owned(),
            };
        }
        http.token = None;
    }
    let phone = args
        .phone
        .clone()
        .unwrap_or_else(|| fail("give --phone +1555... (or a --session file)"));
    let r = http
        .ok(
            "POST",
            "/api/v1/auth/verify-phone",
            Some(&json!({"phone_number": phone})),
        )
        .await;
    let code = r["dev_code"]
        .as_str()
        .unwrap_or_else(|| fail("the server did not return a dev code: is it running with --dev?"))
        .to_owned();
    let r = http
        .ok(
            "POST",
            "/api/v1/auth/verify-code",
            Some(&json!({"phone_number": phone, "code": code, "device_name": "missive-cli"})),
        )
        .await;
    let session = Session {
        user_id: r["user_id"].as_str().unwrap_or_default().to_owned(),
        device_id: r["device_id"].as_u64().unwrap_or(0),
        token: r["token"].as_str().unwrap_or_default().to_owned(),
    };
    http.token = Some(session.token.clone());
    if let Some(path) = &args.session {
        let saved = json!({"user_id": session.user_id, "device_id": session.device_id,
                           "token": session.token});
        if let Err(e) = std::fs::write(path, saved.to_string()) {
            eprintln!(
                "missive-cli: cannot save the session to {}: {e}",
                path.display()
            );
        }
    }
    session
}

/// A user id for `who`: an id as is, a phone number through contact discovery.
async fn resolve_user(http: &Http, who: &str) -> String {
    if !who.starts_with('+') {
        return who.to_owned();
    }
    let r = http
        .ok(
            "POST",
            "/api/v1/contacts",
            Some(&json!({"phone_numbers": [who]})),
        )
        .await;
    r["contacts"][0]["user_id"]
        .as_str()
        .unwrap_or_else(|| fail(format!("{who} is not registered")))
        .to_owned()
}

fn random_id() -> String {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).unwrap_or_else(|e| fail(format!("no randomness: {e}")));
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

// ---- output -------------------------------------------------------------------------------

/// Remembers names of users and chats for printing.
struct Names {
    http: Http,
    users: HashMap<String, String>,
    chats: HashMap<String, String>,
}

impl Names {
    async fn user(&mut self, id: &str) -> String {
        if let Some(name) = self.users.get(id) {
            return name.clone();
        }
        let (_, v) = self
            .http
            .call("GET", &format!("/api/v1/users/{id}"), None)
            .await;
        let name = match v["name"].as_str() {
            Some(n) if !n.is_empty() => format!("{n} ({id})"),
            _ => format!("user {id}"),
        };
        self.users.insert(id.to_owned(), name.clone());
        name
    }

    async fn chat(&mut self, chat_id: &str) -> String {
        if let Some(name) = self.chats.get(chat_id) {
            return name.clone();
        }
        let (status, v) = self
            .http
            .call("GET", &format!("/api/v1/groups/{chat_id}"), None)
            .await;
        let name = if status == 200 {
            format!("#{}", v["name"].as_str().unwrap_or("group"))
        } else {
            "1:1".to_owned()
        };
        self.chats.insert(chat_id.to_owned(), name.clone());
        name
    }
}

/// Prints a server frame; returns a receipt to send back for messages.
async fn show(
    frame: &Value,
    me: (&str, u64),
    names: &mut Names,
    codec: &mut Codec,
) -> Option<Value> {
    let data = &frame["data"];
    let chat_id = data["chat_id"].as_str().unwrap_or_default();
    match frame["type"].as_str().unwrap_or_default() {
        "message" => {
            let sender = data["sender_id"].as_str().unwrap_or_default();
            let chat = names.chat(chat_id).await;
            let content = data["content"].as_str().unwrap_or_default();
            let line = if data["message_type"] == "system" {
                // A group change: {"op", "by", "users"}.
                let change: Value = serde_json::from_str(content).unwrap_or(Value::Null);
                let mut users = Vec::new();
                for user in change["users"].as_array().cloned().unwrap_or_default() {
                    users.push(names.user(user.as_str().unwrap_or_default()).await);
                }
                let by = names.user(change["by"].as_str().unwrap_or_default()).await;
                format!(
                    "-- {by}: {} {}",
                    change["op"].as_str().unwrap_or("?"),
                    users.join(", ")
                )
            } else {
                let who = if sender != me.0 {
                    names.user(sender).await
                } else if data["sender_device_id"].as_u64() == Some(me.1) {
                    "you".to_owned()
                } else {
                    "you (another device)".to_owned()
                };
                let text = if data["deleted"] == true {
                    "(deleted)".to_owned()
                } else {
                    codec.open(&names.http, data).await
                };
                format!("{who}: {text}")
            };
            println!("[{chat} {chat_id}] {line}  (#{})", data["seq"]);
            Some(
                json!({"type": "receipt", "data": {"chat_id": chat_id, "seq": data["seq"],
                                                     "status": "delivered"}}),
            )
        }
        "ack" => {
            codec.acknowledged(
                data["client_msg_id"].as_str().unwrap_or_default(),
                data["message_id"].as_str().unwrap_or_default(),
            );
            println!("  ✓ sent #{} in {}", data["seq"], chat_id);
            None
        }
        "receipt" => {
            let who = names
                .user(data["user_id"].as_str().unwrap_or_default())
                .await;
            let ticks = if data["status"] == "read" {
                "✓✓ read"
            } else {
                "✓✓ delivered"
            };
            println!("  {ticks} by {who} up to #{} in {chat_id}", data["seq"]);
            None
        }
        "typing" => {
            if data["is_typing"] == true {
                let who = names
                    .user(data["user_id"].as_str().unwrap_or_default())
                    .await;
                println!("  … {who} is typing");
            }
            None
        }
        "presence" => {
            let who = names
                .user(data["user_id"].as_str().unwrap_or_default())
                .await;
            println!("  • {who} is {}", data["status"].as_str().unwrap_or("?"));
            None
        }
        "group" => {
            names.chats.remove(chat_id);
            println!("  group {chat_id}: {} by {}", data["op"], data["by"]);
            None
        }
        "deleted" => {
            println!("  message {} was deleted", data["message_id"]);
            None
        }
        "error" => {
            eprintln!("  ! {}: {}", data["code"], data["message"]);
            None
        }
        _ => None,
    }
}

// ---- commands -----------------------------------------------------------------------------

async fn list_chats(http: &Http, names: &mut Names, codec: &Codec) {
    let r = http.ok("GET", "/api/v1/chats", None).await;
    let chats = r["chats"].as_array().cloned().unwrap_or_default();
    if chats.is_empty() {
        println!("no chats yet");
    }
    for c in chats {
        let chat_id = c["chat_id"].as_str().unwrap_or_default();
        let title = if c["type"] == "group" {
            format!("#{}", c["name"].as_str().unwrap_or_default())
        } else {
            c["name"].as_str().unwrap_or_default().to_owned()
        };
        let last = &c["last_message"];
        let preview = if last.is_object() {
            let sender = names
                .user(last["sender_id"].as_str().unwrap_or_default())
                .await;
            let text = if last["message_type"] == "system" {
                "(group change)".to_owned()
            } else {
                codec.preview(last)
            };
            format!("{sender}: {text}")
        } else {
            String::new()
        };
        println!(
            "{chat_id}  {title:<20} unread {:<3} {preview}",
            c["unread"].as_u64().unwrap_or(0)
        );
    }
}

async fn open_ws(
    server: &str,
    token: &str,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>> {
    let url = format!(
        "ws://{}/ws",
        server.trim_start_matches("http://").trim_end_matches('/')
    );
    let mut request = url
        .into_client_request()
        .unwrap_or_else(|e| fail(format!("bad server URL: {e}")));
    let value = format!("Bearer {token}")
        .parse()
        .unwrap_or_else(|_| fail("bad token"));
    request.headers_mut().insert("authorization", value);
    match tokio_tungstenite::connect_async(request).await {
        Ok((ws, _)) => ws,
        Err(e) => fail(format!("cannot open the WebSocket: {e}")),
    }
}

/// Where typed lines go.
#[derive(Clone)]
enum Target {
    User(String),
    Chat(String),
}

const HELP: &str = "\
commands:
  /to <user id | +phone>     talk to a user (1:1)
  /chat <chat id>            talk in a chat (e.g. a group)
  /group <name> <members...> create a group (user ids or +phones) and talk in it
  /chats                     list your chats
  /history [n]               the last n messages of the current chat
  /read                      mark the current chat read
  /quit                      leave
  anything else              is sent to the current chat";

async fn interactive(args: &Args, http: Http, session: Session, codec: &mut Codec) {
    let ws = open_ws(&args.server, &session.token).await;
    let (mut write, mut read) = ws.split();
    let (out_tx, mut out_rx) = mpsc::unbounded_channel::<Value>();
    // The writer: frames from the reader (receipts) and from the keyboard, plus heartbeats.
    let writer = tokio::spawn(async move {
        let mut ping = tokio::time::interval(PING_EVERY);
        loop {
            let frame = tokio::select! {
                frame = out_rx.recv() => match frame { Some(f) => f, None => return },
                _ = ping.tick() => json!({"type": "ping"}),
            };
            if write.send(Message::text(frame.to_string())).await.is_err() {
                return;
            }
        }
    });
    println!(
        "logged in as user {} (device {}). Type /help.",
        session.user_id, session.device_id
    );
    match &*codec {
        Codec::E2ee(e2ee) => println!(
            "end-to-end encrypted; your identity key is {} (keys in {})",
            e2ee.identity_key(),
            e2ee.store().display()
        ),
        Codec::Plain => println!("--plaintext: the server sees what you type"),
    }
    let mut top_up = tokio::time::interval(TOP_UP_EVERY);
    top_up.tick().await;
    let mut names = Names {
        http: http.clone(),
        users: HashMap::new(),
        chats: HashMap::new(),
    };
    let mut target: Option<Target> = None;
    let mut current_chat: Option<String> = None;
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    loop {
        tokio::select! {
            _ = top_up.tick() => codec.top_up(&http).await,
            incoming = read.next() => match incoming {
                Some(Ok(Message::Text(text))) => {
                    let Ok(frame) = serde_json::from_str::<Value>(&text) else { continue };
                    if frame["type"] == "ack" {
                        current_chat = frame["data"]["chat_id"].as_str().map(str::to_owned);
                    }
                    if let Some(receipt) = show(&frame, (&session.user_id, session.device_id), &mut names, codec).await {
                        let _ = out_tx.send(receipt);
                    }
                }
                Some(Ok(Message::Close(frame))) => {
                    println!("the server closed the connection: {frame:?}");
                    break;
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => { println!("connection lost: {e}"); break; }
                None => break,
            },
            line = lines.next_line() => {
                let Ok(Some(line)) = line else { break };
                let line = line.trim();
                if line.is_empty() { continue; }
                let mut words = line.split_whitespace();
                match words.next().unwrap_or_default() {
                    "/help" => println!("{HELP}"),
                    "/quit" => break,
                    "/chats" => list_chats(&http, &mut names, codec).await,
                    "/to" => match words.next() {
                        Some(who) => {
                            let user = resolve_user(&http, who).await;
                            println!("talking to {}", names.user(&user).await);
                            target = Some(Target::User(user));
                            current_chat = None;
                        }
                        None => println!("/to <user id | +phone>"),
                    },
                    "/chat" => match words.next() {
                        Some(chat) => {
                            target = Some(Target::Chat(chat.to_owned()));
                            current_chat = Some(chat.to_owned());
                            println!("talking in {}", names.chat(chat).await);
                        }
                        None => println!("/chat <chat id>"),
                    },
                    "/group" => {
                        let Some(name) = words.next() else {
                            println!("/group <name> <members...>");
                            continue;
                        };
                        let mut members = Vec::new();
                        for who in words {
                            members.push(resolve_user(&http, who).await);
                        }
                        let (status, r) = http
                            .call("POST", "/api/v1/groups",
                                  Some(&json!({"name": name, "member_ids": members})))
                            .await;
                        if status != 201 {
                            println!("refused: {}", r["error"]["message"]);
                            continue;
                        }
                        let chat = r["chat_id"].as_str().unwrap_or_default().to_owned();
                        println!("created #{name}: {chat}");
                        target = Some(Target::Chat(chat.clone()));
                        current_chat = Some(chat);
                    }
                    "/history" => {
                        let Some(chat) = &current_chat else {
                            println!("no current chat: send something first, or /chat <id>");
                            continue;
                        };
                        let n: usize = words.next().and_then(|n| n.parse().ok()).unwrap_or(20);
                        let (_, page) = http
                            .call("GET", &format!("/api/v1/messages/{chat}?limit={n}"), None)
                            .await;
                        for m in page["messages"].as_array().cloned().unwrap_or_default() {
                            show(&json!({"type": "message", "data": m}),
                                 (&session.user_id, session.device_id), &mut names, codec).await;
                        }
                    }
                    "/read" => {
                        let Some(chat) = &current_chat else { continue };
                        let (_, page) = http
                            .call("GET", &format!("/api/v1/messages/{chat}?limit=1"), None)
                            .await;
                        if let Some(seq) = page["messages"][0]["seq"].as_u64() {
                            let _ = out_tx.send(json!({"type": "receipt", "data":
                                {"chat_id": chat, "seq": seq, "status": "read"}}));
                        }
                    }
                    command if command.starts_with('/') => println!("unknown command; /help"),
                    _ => {
                        let Some(to) = &target else {
                            println!("pick someone first: /to <user id | +phone>  (/help)");
                            continue;
                        };
                        let recipient = match to {
                            Target::User(user) => e2ee::Recipient::User(user.clone()),
                            Target::Chat(chat) => e2ee::Recipient::Chat(chat.clone()),
                        };
                        let content = match codec.seal(&http, &recipient, line).await {
                            Ok(content) => content,
                            Err(e) => {
                                println!("not sent: {e}");
                                continue;
                            }
                        };
                        let client_msg_id = random_id();
                        codec.remember_sent(&client_msg_id, line);
                        let mut data = json!({"client_msg_id": client_msg_id,
                                              "message_type": "text", "content": content});
                        match to {
                            Target::User(user) => data["to_user_id"] = json!(user),
                            Target::Chat(chat) => data["chat_id"] = json!(chat),
                        }
                        let _ = out_tx.send(json!({"type": "message", "data": data}));
                    }
                }
                let _ = std::io::stdout().flush();
            }
        }
    }
    writer.abort();
}

async fn listen(
    args: &Args,
    http: Http,
    session: Session,
    seconds: Option<u64>,
    count: Option<usize>,
    codec: &mut Codec,
) {
    let mut ws = open_ws(&args.server, &session.token).await;
    let mut names = Names {
        http,
        users: HashMap::new(),
        chats: HashMap::new(),
    };
    let deadline = seconds.map(|s| tokio::time::Instant::now() + Duration::from_secs(s));
    let mut printed = 0;
    while count.is_none_or(|count| printed < count) {
        let next = match deadline {
            Some(d) => match tokio::time::timeout_at(d, ws.next()).await {
                Ok(next) => next,
                Err(_) => break,
            },
            None => ws.next().await,
        };
        match next {
            Some(Ok(Message::Text(text))) => {
                let Ok(frame) = serde_json::from_str::<Value>(&text) else {
                    continue;
                };
                if frame["type"] == "message" && frame["data"]["message_type"] != "system" {
                    printed += 1;
                }
                if let Some(receipt) = show(
                    &frame,
                    (&session.user_id, session.device_id),
                    &mut names,
                    codec,
                )
                .await
                {
                    let _ = ws.send(Message::text(receipt.to_string())).await;
                }
                let _ = std::io::stdout().flush();
            }
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
            Some(Ok(_)) => {}
        }
    }
    let _ = ws.close(None).await;
}

/// `$XDG_DATA_HOME/missive-cli`, else `$HOME/.local/share/missive-cli`, else
/// `./missive-cli-data`.
fn default_data_dir() -> PathBuf {
    let from_env = |name: &str| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(dir) = from_env("XDG_DATA_HOME") {
        return dir.join("missive-cli");
    }
    if let Some(home) = from_env("HOME") {
        return home.join(".local/share/missive-cli");
    }
    PathBuf::from("missive-cli-data")
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args = Args::parse();
    let mut http = Http::new(&args.server);
    let session = login(&mut http, &args).await;
    if let Some(name) = &args.name {
        http.ok("PUT", "/api/v1/users/me", Some(&json!({"name": name})))
            .await;
    }
    let mut codec = if args.plaintext {
        Codec::Plain
    } else {
        let me =
            missive_client::PeerDevice::new(session.user_id.clone(), session.device_id.to_string());
        let source =
            e2ee::KeySource::from_options(args.passphrase.as_deref(), args.store_key.as_deref())
                .unwrap_or_else(|e| fail(e));
        let data_dir = args.data_dir.clone().unwrap_or_else(default_data_dir);
        let e2ee = e2ee::E2ee::start(&http, &data_dir, &args.server, me, source)
            .await
            .unwrap_or_else(|e| fail(format!("end-to-end encryption: {e}")));
        Codec::E2ee(Box::new(e2ee))
    };
    match &args.command {
        None | Some(Command::Chat) => interactive(&args, http, session, &mut codec).await,
        Some(Command::Chats) => {
            let mut names = Names {
                http: http.clone(),
                users: HashMap::new(),
                chats: HashMap::new(),
            };
            list_chats(&http, &mut names, &codec).await;
        }
        Some(Command::Send {
            to,
            to_phone,
            chat,
            text,
        }) => {
            let recipient = match (to, to_phone, chat) {
                (Some(user), _, _) => e2ee::Recipient::User(user.clone()),
                (_, Some(phone), _) => e2ee::Recipient::User(resolve_user(&http, phone).await),
                (_, _, Some(chat)) => e2ee::Recipient::Chat(chat.clone()),
                _ => fail("give --to, --to-phone or --chat"),
            };
            let content = codec
                .seal(&http, &recipient, text)
                .await
                .unwrap_or_else(|e| fail(format!("not sent: {e}")));
            let mut data = json!({"client_msg_id": random_id(), "message_type": "text",
                                  "content": content});
            match recipient {
                e2ee::Recipient::User(user) => data["to_user_id"] = json!(user),
                e2ee::Recipient::Chat(chat) => data["chat_id"] = json!(chat),
            }
            let ack = http.ok("POST", "/api/v1/messages", Some(&data)).await;
            println!(
                "sent {} (#{} at {})",
                ack["message_id"].as_str().unwrap_or_default(),
                ack["seq"],
                ack["timestamp"].as_str().unwrap_or_default()
            );
        }
        Some(Command::Listen { seconds, count }) => {
            listen(&args, http, session, *seconds, *count, &mut codec).await;
        }
        Some(Command::Group { title, members }) => {
            let mut ids = Vec::new();
            for who in members {
                ids.push(resolve_user(&http, who).await);
            }
            let r = http
                .ok(
                    "POST",
                    "/api/v1/groups",
                    Some(&json!({"name": title, "member_ids": ids})),
                )
                .await;
            println!("{}", r["group_id"].as_str().unwrap_or_default());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips() {
        for text in ["", "a", "ab", "abc", "hello, world", "héllo ✓"] {
            let encoded = base64(text.as_bytes());
            assert_eq!(unbase64(&encoded).unwrap(), text.as_bytes());
        }
        assert_eq!(base64(b"hi"), "aGk=");
        assert_eq!(base64(b"hello"), "aGVsbG8=");
    }
}
