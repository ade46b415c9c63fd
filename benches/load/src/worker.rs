//! One client process: connects its share of the users over WebSockets (each from one of the
//! loopback source addresses), then sends its share of the messages at its share of the rate
//! and records what arrives.
//!
//! It talks to the coordinator over stdin/stdout, one line each way per step:
//! `connected OK FAILED` → (`go`) → `report {json}`.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpSocket;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::AnyResult;
use crate::plan::{Plan, WorkerReport, new_histogram};

/// Messages queued per connection before the pacer counts a send as dropped.
const OUTBOX_FRAMES_MAX: usize = 256;
/// Heartbeat interval (the server closes connections silent for its heartbeat timeout, 60 s).
const PING_INTERVAL: Duration = Duration::from_secs(20);
/// Body size of every message (like the storage benchmarks' 256-byte bodies).
pub(crate) const CONTENT_BYTES: usize = 256;
/// Error texts kept for the report.
const ERROR_SAMPLES_MAX: usize = 8;
/// Longest wait for acknowledgements and deliveries after the last send.
const DRAIN_MAX: Duration = Duration::from_secs(10);

/// What every connection of this process adds to.
struct Stats {
    sent: AtomicU64,
    dropped: AtomicU64,
    acked: AtomicU64,
    expected: AtomicU64,
    errors: AtomicU64,
    delivered: AtomicU64,
    disconnects: AtomicU64,
    /// Nanoseconds after `go` of the latest delivery.
    last_delivery_ns: AtomicU64,
    latency_us: Mutex<Histogram<u64>>,
    ack_latency_us: Mutex<Histogram<u64>>,
    samples: Mutex<Vec<String>>,
}

impl Stats {
    fn note(&self, error: String) {
        let mut samples = self.samples.lock().expect("not poisoned");
        if samples.len() < ERROR_SAMPLES_MAX {
            samples.push(error);
        }
    }
}

/// A message for a connection to send.
struct Outgoing {
    client_msg_id: String,
    frame: String,
    /// Deliveries it should cause (1, or the group's members less the sender).
    recipients: u64,
}

fn unix_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// The content of a message: `L<nonce>:<send time, unix ns>:` padded to [`CONTENT_BYTES`].
pub(crate) fn content(nonce: &str, sent_ns: u64) -> String {
    let mut text = format!("L{nonce}:{sent_ns}:");
    while text.len() < CONTENT_BYTES {
        text.push('x');
    }
    text
}

/// The send time stamped in a content of this run, if it is one.
pub(crate) fn sent_ns(nonce: &str, content: &str) -> Option<u64> {
    let rest = content
        .strip_prefix('L')?
        .strip_prefix(nonce)?
        .strip_prefix(':')?;
    rest.split(':').next()?.parse().ok()
}

/// The source address of connection `n`: 127.0.0.2, 127.0.0.3, … round robin over `ips`.
pub(crate) fn source_ip(n: usize, ips: u32) -> IpAddr {
    let k = (n as u32) % ips.max(1);
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2 + k as u8))
}

/// Runs worker `index` of the plan in `plan_path` (see the module documentation).
pub(crate) async fn run(plan_path: &std::path::Path, index: usize) -> AnyResult<()> {
    let plan: Plan = serde_json::from_slice(&std::fs::read(plan_path)?)?;
    let users = plan.share(index);
    let stats = Arc::new(Stats {
        sent: AtomicU64::new(0),
        dropped: AtomicU64::new(0),
        acked: AtomicU64::new(0),
        expected: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        delivered: AtomicU64::new(0),
        disconnects: AtomicU64::new(0),
        last_delivery_ns: AtomicU64::new(0),
        latency_us: Mutex::new(new_histogram()),
        ack_latency_us: Mutex::new(new_histogram()),
        samples: Mutex::new(Vec::new()),
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let go_at = Arc::new(Mutex::new(None::<Instant>));
    let handshakes = Arc::new(Semaphore::new(plan.connect_concurrency.max(1)));
    let mut outboxes = Vec::new();
    let mut connected = Vec::new();
    let mut tasks = Vec::new();
    for n in users.clone() {
        let (tx, rx) = mpsc::channel::<Outgoing>(OUTBOX_FRAMES_MAX);
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<Result<(), String>>();
        outboxes.push(tx);
        connected.push(ready_rx);
        let connection = Connection {
            addr: plan.addr,
            source: source_ip(n, plan.source_ips),
            token: plan.users[n].token.clone(),
            user_id: plan.users[n].user_id.clone(),
            nonce: plan.nonce.clone(),
            receipt_interval: Duration::from_millis(plan.receipt_interval_ms),
            stats: Arc::clone(&stats),
            go_at: Arc::clone(&go_at),
        };
        let (handshakes, stop) = (Arc::clone(&handshakes), stop_rx.clone());
        tasks.push(tokio::spawn(connection.run(rx, ready_tx, handshakes, stop)));
    }
    let mut ok = 0u64;
    let mut failed = 0u64;
    let mut live = vec![false; connected.len()];
    let connect_deadline = tokio::time::Instant::now() + Duration::from_secs(300);
    for (i, ready) in connected.into_iter().enumerate() {
        match tokio::time::timeout_at(connect_deadline, ready).await {
            Ok(Ok(Ok(()))) => {
                ok += 1;
                live[i] = true;
            }
            Ok(Ok(Err(e))) => {
                failed += 1;
                stats.note(format!("connect: {e}"));
            }
            _ => {
                failed += 1;
                stats.note("connect: timed out or task ended".into());
            }
        }
    }
    println!("connected {ok} {failed}");
    let mut stdin = BufReader::new(tokio::io::stdin()).lines();
    match stdin.next_line().await? {
        Some(line) if line.trim() == "go" => {}
        _ => return Err("the coordinator went away before `go`".into()),
    }
    let go = Instant::now();
    *go_at.lock().expect("not poisoned") = Some(go);

    let mut send_elapsed = Duration::ZERO;
    if plan.idle {
        tokio::time::sleep(Duration::from_secs_f64(plan.hold_s)).await;
    } else {
        pace(&plan, index, &users, &outboxes, &live, &stats).await;
        send_elapsed = go.elapsed();
        // Wait for acknowledgements, then until deliveries stop arriving.
        let drain_until = Instant::now() + DRAIN_MAX;
        let mut last = (u64::MAX, Instant::now());
        while Instant::now() < drain_until {
            let sent = stats.sent.load(Ordering::Relaxed);
            let answered =
                stats.acked.load(Ordering::Relaxed) + stats.errors.load(Ordering::Relaxed);
            let delivered = stats.delivered.load(Ordering::Relaxed);
            if delivered != last.0 {
                last = (delivered, Instant::now());
            }
            if answered >= sent && last.1.elapsed() >= Duration::from_millis(1500) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let elapsed = go.elapsed();
    let _ = stop_tx.send(true);
    drop(outboxes);
    for task in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
    }
    let report = WorkerReport {
        connections: ok,
        connect_failed: failed,
        sent: stats.sent.load(Ordering::Relaxed),
        dropped: stats.dropped.load(Ordering::Relaxed),
        acked: stats.acked.load(Ordering::Relaxed),
        expected: stats.expected.load(Ordering::Relaxed),
        errors: stats.errors.load(Ordering::Relaxed),
        delivered: stats.delivered.load(Ordering::Relaxed),
        disconnects: stats.disconnects.load(Ordering::Relaxed),
        send_elapsed_s: send_elapsed.as_secs_f64(),
        elapsed_s: elapsed.as_secs_f64(),
        last_delivery_s: stats.last_delivery_ns.load(Ordering::Relaxed) as f64 / 1e9,
        latency_us: crate::plan::counts(&stats.latency_us.lock().expect("not poisoned")),
        ack_latency_us: crate::plan::counts(&stats.ack_latency_us.lock().expect("not poisoned")),
        error_samples: stats.samples.lock().expect("not poisoned").clone(),
    };
    println!("report {}", serde_json::to_string(&report)?);
    Ok(())
}

/// Sends this worker's share of the messages at its share of the rate, from random local users
/// to random users (or to the sender's group), until the count or the duration runs out.
async fn pace(
    plan: &Plan,
    index: usize,
    users: &std::ops::Range<usize>,
    outboxes: &[mpsc::Sender<Outgoing>],
    live: &[bool],
    stats: &Stats,
) {
    let processes = plan.processes.max(1) as u64;
    let quota = plan.messages / processes + u64::from((index as u64) < plan.messages % processes);
    let rate = plan.rate / processes as f64;
    let senders: Vec<usize> = (0..outboxes.len()).filter(|&i| live[i]).collect();
    if senders.is_empty() || quota == 0 || rate <= 0.0 {
        return;
    }
    let group_of = plan.group_of();
    let mut rng = 0x5EED_u64 ^ (index as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(plan.duration_s);
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    let mut sent = 0u64;
    while sent < quota && Instant::now() < deadline {
        tick.tick().await;
        let due = ((started.elapsed().as_secs_f64() * rate) as u64).min(quota);
        while sent < due {
            let local = senders[(next() % senders.len() as u64) as usize];
            let user = users.start + local;
            let client_msg_id = format!("{}-{index}-{sent}", plan.nonce);
            let content = content(&plan.nonce, unix_ns());
            let group =
                group_of[user].filter(|_| (next() % 10_000) as f64 / 10_000.0 < plan.group_share);
            let (data, recipients) = match group {
                Some(g) => {
                    let group = &plan.groups[g];
                    let data = json!({
                        "client_msg_id": client_msg_id, "chat_id": group.chat_id,
                        "message_type": "text", "content": content,
                    });
                    (data, group.members.len() as u64 - 1)
                }
                None => {
                    let mut to = (next() % plan.users.len() as u64) as usize;
                    if to == user {
                        to = (to + 1) % plan.users.len();
                    }
                    let data = json!({
                        "client_msg_id": client_msg_id, "to_user_id": plan.users[to].user_id,
                        "message_type": "text", "content": content,
                    });
                    (data, 1)
                }
            };
            let frame = json!({"type": "message", "data": data}).to_string();
            let outgoing = Outgoing {
                client_msg_id,
                frame,
                recipients,
            };
            if outboxes[local].try_send(outgoing).is_err() {
                stats.dropped.fetch_add(1, Ordering::Relaxed);
            }
            sent += 1;
        }
    }
}

struct Connection {
    addr: SocketAddr,
    source: IpAddr,
    token: String,
    user_id: String,
    nonce: String,
    receipt_interval: Duration,
    stats: Arc<Stats>,
    go_at: Arc<Mutex<Option<Instant>>>,
}

impl Connection {
    async fn connect(
        &self,
    ) -> AnyResult<tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>> {
        let socket = TcpSocket::new_v4()?;
        socket
            .bind(SocketAddr::new(self.source, 0))
            .map_err(|e| format!("bind {}: {e}", self.source))?;
        let stream = socket.connect(self.addr).await?;
        stream.set_nodelay(true)?;
        let mut request = format!("ws://{}/ws", self.addr).into_client_request()?;
        request
            .headers_mut()
            .insert("Authorization", format!("Bearer {}", self.token).parse()?);
        // Small buffers: the client holds thousands of connections too.
        let config = WebSocketConfig::default()
            .read_buffer_size(4096)
            .write_buffer_size(0);
        let (ws, _) =
            tokio_tungstenite::client_async_with_config(request, stream, Some(config)).await?;
        Ok(ws)
    }

    async fn run(
        self,
        mut outbox: mpsc::Receiver<Outgoing>,
        ready: tokio::sync::oneshot::Sender<Result<(), String>>,
        handshakes: Arc<Semaphore>,
        mut stop: watch::Receiver<bool>,
    ) {
        let ws = {
            let _permit = handshakes.acquire().await;
            self.connect().await
        };
        let ws = match ws {
            Ok(ws) => {
                let _ = ready.send(Ok(()));
                ws
            }
            Err(e) => {
                let _ = ready.send(Err(e.to_string()));
                return;
            }
        };
        let (mut write, mut read) = ws.split();
        let mut in_flight: HashMap<String, (Instant, u64)> = HashMap::new();
        let mut receipts: HashMap<String, u64> = HashMap::new();
        let mut ping = tokio::time::interval(PING_INTERVAL);
        ping.tick().await;
        let mut receipt_tick =
            tokio::time::interval(self.receipt_interval.max(Duration::from_millis(10)));
        let stats = &self.stats;
        loop {
            tokio::select! {
                _ = stop.changed() => break,
                outgoing = outbox.recv() => {
                    let Some(outgoing) = outgoing else { break };
                    in_flight.insert(outgoing.client_msg_id, (Instant::now(), outgoing.recipients));
                    stats.sent.fetch_add(1, Ordering::Relaxed);
                    if let Err(e) = write.send(Message::text(outgoing.frame)).await {
                        stats.note(format!("send: {e}"));
                        stats.disconnects.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                }
                frame = read.next() => {
                    match frame {
                        Some(Ok(Message::Text(text))) => self.on_frame(&text, &mut in_flight, &mut receipts),
                        Some(Ok(Message::Close(close))) => {
                            stats.note(format!("closed by the server: {close:?}"));
                            stats.disconnects.fetch_add(1, Ordering::Relaxed);
                            return;
                        }
                        Some(Ok(_)) => {}
                        Some(Err(e)) => {
                            stats.note(format!("read: {e}"));
                            stats.disconnects.fetch_add(1, Ordering::Relaxed);
                            return;
                        }
                        None => {
                            stats.disconnects.fetch_add(1, Ordering::Relaxed);
                            return;
                        }
                    }
                }
                _ = ping.tick() => {
                    let frame = json!({"type": "ping", "data": {}}).to_string();
                    if write.send(Message::text(frame)).await.is_err() {
                        stats.disconnects.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                }
                _ = receipt_tick.tick(), if !self.receipt_interval.is_zero() && !receipts.is_empty() => {
                    for (chat_id, seq) in receipts.drain() {
                        let frame = json!({"type": "receipt", "data": {
                            "chat_id": chat_id, "seq": seq, "status": "delivered"}});
                        if write.send(Message::text(frame.to_string())).await.is_err() {
                            stats.disconnects.fetch_add(1, Ordering::Relaxed);
                            return;
                        }
                    }
                }
            }
        }
        let _ = write.send(Message::Close(None)).await;
        let _ = write.close().await;
    }

    fn on_frame(
        &self,
        text: &str,
        in_flight: &mut HashMap<String, (Instant, u64)>,
        receipts: &mut HashMap<String, u64>,
    ) {
        let stats = &self.stats;
        let Ok(frame) = serde_json::from_str::<Value>(text) else {
            stats.errors.fetch_add(1, Ordering::Relaxed);
            stats.note(format!("unparsable frame: {text:.200}"));
            return;
        };
        let data = &frame["data"];
        match frame["type"].as_str() {
            Some("ack") => {
                let id = data["client_msg_id"].as_str().unwrap_or_default();
                if let Some((sent, recipients)) = in_flight.remove(id) {
                    stats.acked.fetch_add(1, Ordering::Relaxed);
                    stats.expected.fetch_add(recipients, Ordering::Relaxed);
                    let us = sent.elapsed().as_micros() as u64;
                    let _ = stats
                        .ack_latency_us
                        .lock()
                        .expect("not poisoned")
                        .record(us.max(1));
                }
            }
            Some("message") => {
                let content = data["content"].as_str().unwrap_or_default();
                let Some(sent) = sent_ns(&self.nonce, content) else {
                    return; // a system message (group created) or an earlier run's
                };
                if data["sender_id"].as_str() == Some(self.user_id.as_str()) {
                    return; // our own message, echoed
                }
                let us = unix_ns().saturating_sub(sent) / 1000;
                let _ = stats
                    .latency_us
                    .lock()
                    .expect("not poisoned")
                    .record(us.max(1));
                stats.delivered.fetch_add(1, Ordering::Relaxed);
                if let Some(go) = *self.go_at.lock().expect("not poisoned") {
                    stats
                        .last_delivery_ns
                        .fetch_max(go.elapsed().as_nanos() as u64, Ordering::Relaxed);
                }
                if let (Some(chat), Some(seq)) = (data["chat_id"].as_str(), data["seq"].as_u64()) {
                    let entry = receipts.entry(chat.to_string()).or_insert(0);
                    *entry = (*entry).max(seq);
                }
            }
            Some("error") => {
                stats.errors.fetch_add(1, Ordering::Relaxed);
                if let Some(id) = data["client_msg_id"].as_str() {
                    in_flight.remove(id);
                }
                stats.note(format!("error frame: {data}"));
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contents_carry_their_send_time() {
        let c = content("ab12", 1_234_567);
        assert_eq!(c.len(), CONTENT_BYTES);
        assert_eq!(sent_ns("ab12", &c), Some(1_234_567));
        assert_eq!(sent_ns("zz99", &c), None);
        assert_eq!(sent_ns("ab12", "hello"), None);
    }

    #[test]
    fn sources_go_round_robin_from_127_0_0_2() {
        assert_eq!(source_ip(0, 3).to_string(), "127.0.0.2");
        assert_eq!(source_ip(4, 3).to_string(), "127.0.0.3");
        assert_eq!(source_ip(5, 1).to_string(), "127.0.0.2");
    }
}
