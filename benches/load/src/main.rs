//! `missive-load`: drives a running `missive-server` over real WebSockets on loopback and
//! reports delivered messages per second, end-to-end latency (p50/p99/p99.9), errors and the
//! server's resident memory per connection. See `benches/README.md`.
//!
//! ```text
//! cargo build --release -p missive-server -p missive-load
//! target/release/missive-load --spawn-server --quick                  # smoke run
//! target/release/missive-load --spawn-server --users 2000 --rate 20000 --processes 2
//! target/release/missive-load --spawn-server --idle --users 15000 --processes 2 --source-ips 2
//! target/release/missive-load --server http://127.0.0.1:8080 --server-pid 1234 ...
//! ```
//!
//! The coordinator (this process) registers the users through the dev-code flow, creates the
//! groups, writes a plan file and starts `--processes` copies of itself, each connecting its
//! share of the users from 127.0.0.2, 127.0.0.3, … (a process may hold at most 20,000 open
//! files here). It reads the server's `VmRSS` before and after they connect, lets them send,
//! and merges their JSON reports. Every run is bounded in messages and time and stops by itself.

#![forbid(unsafe_code)]

mod http;
mod plan;
mod server;
mod worker;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use hdrhistogram::Histogram;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;
use tokio::sync::Semaphore;

use crate::plan::{Account, Group, Plan, WorkerReport, new_histogram};

/// Errors of this binary.
pub(crate) type AnyResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// Connections one client process may hold: under the 20,000 open files a process may have
/// here, with room for the runtime's own.
const CONNECTIONS_PER_PROCESS_MAX: usize = 19_000;
/// Ephemeral ports per source address: fewer than Linux's default range (32768–60999).
const CONNECTIONS_PER_SOURCE_IP_MAX: usize = 25_000;
/// Registrations in flight.
const REGISTER_CONCURRENCY: usize = 32;

#[derive(Parser, Debug)]
#[command(
    name = "missive-load",
    about = "Load generator for missive-server (WebSockets on loopback)"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Cmd>,
    /// The server, e.g. http://127.0.0.1:8080 (started with `--dev` and the flags in
    /// `benches/README.md`: per-IP and per-user limits off).
    #[arg(long, conflicts_with = "spawn_server")]
    server: Option<String>,
    /// Start `missive-server` ourselves on 127.0.0.1 with a temporary data directory and the
    /// right flags; stop it at the end.
    #[arg(long)]
    spawn_server: bool,
    /// The server binary for --spawn-server [default: missive-server next to this binary].
    #[arg(long)]
    server_bin: Option<PathBuf>,
    /// Extra flags for the spawned server (repeat: --server-arg=--durability --server-arg=os).
    #[arg(long, allow_hyphen_values = true)]
    server_arg: Vec<String>,
    /// The server's process id, for its resident memory (implied by --spawn-server).
    #[arg(long)]
    server_pid: Option<u32>,
    /// Users, each with one WebSocket connection [default: 1000; quick 32].
    #[arg(long)]
    users: Option<usize>,
    /// Messages per second, all processes together [default: 5000; quick 200].
    #[arg(long)]
    rate: Option<f64>,
    /// Messages at most [default: rate × duration; quick 400].
    #[arg(long)]
    messages: Option<u64>,
    /// Seconds of sending at most [default: 10; quick 10].
    #[arg(long)]
    duration: Option<f64>,
    /// Share of messages that go to the sender's group [default: 0.1; quick 0.25].
    #[arg(long)]
    group_share: Option<f64>,
    /// Members per group (users are dealt into groups round robin) [default: 32; quick 8].
    #[arg(long)]
    group_size: Option<usize>,
    /// Client processes [default: 1 per 15,000 users, at least 1; quick 2].
    #[arg(long)]
    processes: Option<usize>,
    /// Loopback source addresses, from 127.0.0.2 [default: 1 per 20,000 users, at least 2].
    #[arg(long)]
    source_ips: Option<u32>,
    /// Idle mode: connect every user, hold --hold seconds, report memory per connection.
    #[arg(long)]
    idle: bool,
    /// Seconds an idle run holds its connections [default: 5].
    #[arg(long, default_value_t = 5.0)]
    hold: f64,
    /// How often clients send `delivered` receipts, ms (0: never).
    #[arg(long, default_value_t = 1000)]
    receipt_interval_ms: u64,
    /// WebSocket handshakes in flight per process.
    #[arg(long, default_value_t = 64)]
    connect_concurrency: usize,
    /// Smoke run: a few dozen users, a few hundred messages.
    #[arg(long)]
    quick: bool,
    /// Also write the merged report as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// (internal) One client process of a run.
    #[command(hide = true)]
    Worker {
        #[arg(long)]
        plan: PathBuf,
        #[arg(long)]
        index: usize,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("missive-load: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match &cli.command {
            Some(Cmd::Worker { plan, index }) => worker::run(plan, *index).await,
            None => coordinate(&cli).await,
        }
    });
    // Connection tasks may still be closing: do not wait for them.
    runtime.shutdown_timeout(Duration::from_secs(1));
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("missive-load: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Registers user `i` through the dev-code flow.
async fn register(addr: SocketAddr, phone: String) -> AnyResult<Account> {
    let (status, answer) = http::post(
        addr,
        "/api/v1/auth/verify-phone",
        None,
        &json!({"phone_number": phone}),
    )
    .await?;
    let code = answer["dev_code"].as_str().ok_or_else(|| {
        format!("verify-phone answered {status} {answer} (is the server in --dev mode?)")
    })?;
    let (status, answer) = http::post(
        addr,
        "/api/v1/auth/verify-code",
        None,
        &json!({"phone_number": phone, "code": code, "device_name": "missive-load"}),
    )
    .await?;
    match (answer["user_id"].as_str(), answer["token"].as_str()) {
        (Some(user_id), Some(token)) => Ok(Account {
            user_id: user_id.to_string(),
            token: token.to_string(),
        }),
        _ => Err(format!("verify-code answered {status} {answer}").into()),
    }
}

async fn register_all(addr: SocketAddr, users: usize, nonce: u64) -> AnyResult<Vec<Account>> {
    let permits = Arc::new(Semaphore::new(REGISTER_CONCURRENCY));
    // E.164: +1 and ten digits, distinct per run (the nonce) and per user.
    let base = 1_000_000_000 + (nonce % 80_000) * 100_000;
    let tasks: Vec<_> = (0..users)
        .map(|i| {
            let permits = Arc::clone(&permits);
            tokio::spawn(async move {
                let _permit = permits.acquire().await;
                register(addr, format!("+1{}", base + i as u64)).await
            })
        })
        .collect();
    let mut accounts = Vec::with_capacity(users);
    for task in tasks {
        accounts.push(
            task.await
                .map_err(|e| format!("registration task: {e}"))??,
        );
    }
    Ok(accounts)
}

async fn create_groups(addr: SocketAddr, users: &[Account], size: usize) -> AnyResult<Vec<Group>> {
    let size = size.clamp(2, users.len().max(2));
    let count = users.len() / size;
    let mut groups = Vec::with_capacity(count);
    for g in 0..count {
        // Round robin, so a group spans the client processes.
        let members: Vec<usize> = (0..size).map(|m| g + m * count).collect();
        let ids: Vec<&str> = members[1..]
            .iter()
            .map(|&m| users[m].user_id.as_str())
            .collect();
        let (status, answer) = http::post(
            addr,
            "/api/v1/groups",
            Some(&users[members[0]].token),
            &json!({"name": format!("load {g}"), "member_ids": ids}),
        )
        .await?;
        let chat_id = answer["chat_id"]
            .as_str()
            .ok_or_else(|| format!("creating a group answered {status} {answer}"))?;
        groups.push(Group {
            chat_id: chat_id.to_string(),
            members,
        });
    }
    Ok(groups)
}

fn parse_server(url: &str) -> AnyResult<SocketAddr> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("ws://"))
        .unwrap_or(url);
    Ok(rest.trim_end_matches('/').parse()?)
}

struct Child {
    process: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
}

async fn next_line(child: &mut Child, prefix: &str, timeout: Duration) -> AnyResult<String> {
    let line = tokio::time::timeout(timeout, async {
        loop {
            match child.lines.next_line().await? {
                Some(line) if line.starts_with(prefix) => {
                    return Ok::<_, std::io::Error>(Some(line));
                }
                Some(_) => continue,
                None => return Ok(None),
            }
        }
    })
    .await
    .map_err(|_| format!("no `{prefix}` line from a client process within {timeout:?}"))??
    .ok_or_else(|| format!("a client process ended before its `{prefix}` line"))?;
    Ok(line[prefix.len()..].trim().to_string())
}

async fn coordinate(cli: &Cli) -> AnyResult<()> {
    let q = cli.quick;
    let users = cli.users.unwrap_or(if q { 32 } else { 1000 }).max(2);
    let rate = cli.rate.unwrap_or(if q { 200.0 } else { 5000.0 });
    let duration = cli.duration.unwrap_or(10.0);
    let messages = cli
        .messages
        .unwrap_or(if q { 400 } else { (rate * duration) as u64 });
    let processes = cli
        .processes
        .unwrap_or(if q { 2 } else { users.div_ceil(15_000) })
        .max(1);
    let source_ips = cli
        .source_ips
        .unwrap_or(users.div_ceil(20_000).max(2) as u32)
        .clamp(1, 250);
    if users.div_ceil(processes) > CONNECTIONS_PER_PROCESS_MAX {
        return Err(format!(
            "{users} users in {processes} processes is over {CONNECTIONS_PER_PROCESS_MAX} \
             connections per process (the open-file limit is 20,000): use more --processes"
        )
        .into());
    }
    if users.div_ceil(source_ips as usize) > CONNECTIONS_PER_SOURCE_IP_MAX {
        return Err(
            format!("use more --source-ips (≤ {CONNECTIONS_PER_SOURCE_IP_MAX} each)").into(),
        );
    }
    let group_share = if cli.idle {
        0.0
    } else {
        cli.group_share
            .unwrap_or(if q { 0.25 } else { 0.1 })
            .clamp(0.0, 1.0)
    };
    let group_size = cli.group_size.unwrap_or(if q { 8 } else { 32 });

    let spawned = if cli.spawn_server {
        let bin = server::find_binary(cli.server_bin.as_deref())?;
        Some(server::SpawnedServer::start(&bin, &cli.server_arg).await?)
    } else {
        None
    };
    let result = async {
        let (addr, pid) = match (&spawned, &cli.server) {
            (Some(s), _) => (s.addr, Some(s.pid)),
            (None, Some(url)) => (parse_server(url)?, cli.server_pid),
            (None, None) => return Err("give --server URL or --spawn-server".into()),
        };
        run_load(
            cli,
            addr,
            pid,
            LoadSettings {
                users,
                rate,
                duration,
                messages,
                processes,
                source_ips,
                group_share,
                group_size,
            },
        )
        .await
    }
    .await;
    if let Some(server) = spawned {
        server.stop(Duration::from_secs(10)).await;
    }
    result
}

#[derive(Clone, Copy, Debug)]
struct LoadSettings {
    users: usize,
    rate: f64,
    duration: f64,
    messages: u64,
    processes: usize,
    source_ips: u32,
    group_share: f64,
    group_size: usize,
}

async fn run_load(cli: &Cli, addr: SocketAddr, pid: Option<u32>, s: LoadSettings) -> AnyResult<()> {
    let nonce = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    eprintln!("missive-load: server {addr}; registering {} users", s.users);
    let started = Instant::now();
    let accounts = register_all(addr, s.users, nonce / 1000).await?;
    let register_s = started.elapsed().as_secs_f64();
    let groups = if s.group_share > 0.0 {
        create_groups(addr, &accounts, s.group_size).await?
    } else {
        Vec::new()
    };
    let plan = Plan {
        addr,
        nonce: format!("{nonce:x}"),
        users: accounts,
        groups,
        idle: cli.idle,
        hold_s: cli.hold,
        rate: s.rate,
        messages: s.messages,
        duration_s: s.duration,
        group_share: s.group_share,
        source_ips: s.source_ips,
        processes: s.processes,
        receipt_interval_ms: cli.receipt_interval_ms,
        connect_concurrency: cli.connect_concurrency,
    };
    let dir = tempfile::Builder::new().prefix("missive-load-").tempdir()?;
    let plan_path = dir.path().join("plan.json");
    std::fs::write(&plan_path, serde_json::to_vec(&plan)?)?;

    // Let the registrations' allocations settle before the baseline.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_before = pid.and_then(server::rss_bytes);
    eprintln!(
        "missive-load: registered in {register_s:.1} s; {} groups; starting {} client processes",
        plan.groups.len(),
        s.processes
    );
    let exe = std::env::current_exe()?;
    let mut children = Vec::new();
    for index in 0..s.processes {
        let mut process = Command::new(&exe)
            .arg("worker")
            .arg("--plan")
            .arg(&plan_path)
            .arg("--index")
            .arg(index.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()?;
        let stdin = process.stdin.take().ok_or("a child's stdin")?;
        let stdout = process.stdout.take().ok_or("a child's stdout")?;
        children.push(Child {
            process,
            stdin,
            lines: BufReader::new(stdout).lines(),
        });
    }
    let connect_timeout = Duration::from_secs(60 + (s.users / 50) as u64);
    let (mut connected, mut failed) = (0u64, 0u64);
    for child in &mut children {
        let line = next_line(child, "connected", connect_timeout).await?;
        let mut parts = line
            .split_whitespace()
            .map(|p| p.parse::<u64>().unwrap_or(0));
        connected += parts.next().unwrap_or(0);
        failed += parts.next().unwrap_or(0);
    }
    let connect_s = started.elapsed().as_secs_f64() - register_s;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_connected = pid.and_then(server::rss_bytes);
    eprintln!("missive-load: {connected} connected, {failed} failed; go");
    for child in &mut children {
        child.stdin.write_all(b"go\n").await?;
        child.stdin.flush().await?;
    }
    let run_timeout = Duration::from_secs_f64(if cli.idle { cli.hold } else { s.duration } + 60.0);
    let mut reports = Vec::new();
    for child in &mut children {
        let line = next_line(child, "report", run_timeout).await?;
        reports.push(serde_json::from_str::<WorkerReport>(&line)?);
    }
    for mut child in children {
        drop(child.stdin);
        if tokio::time::timeout(Duration::from_secs(10), child.process.wait())
            .await
            .is_err()
        {
            let _ = child.process.kill().await;
        }
    }
    let rss_end = pid.and_then(server::rss_bytes);
    let merged = Merged::from(&reports);
    let summary = summary(
        cli,
        &s,
        &plan,
        &merged,
        [rss_before, rss_connected, rss_end],
        connect_s,
    );
    println!("{}", summary.0);
    if let Some(path) = &cli.json {
        std::fs::write(path, serde_json::to_vec_pretty(&summary.1)?)?;
    }
    if connected == 0 {
        return Err("no connection succeeded".into());
    }
    if !cli.idle && merged.report.delivered == 0 {
        return Err("no message was delivered".into());
    }
    Ok(())
}

struct Merged {
    report: WorkerReport,
    latency: Histogram<u64>,
    ack_latency: Histogram<u64>,
}

impl Merged {
    fn from(reports: &[WorkerReport]) -> Merged {
        let mut merged = Merged {
            report: WorkerReport::default(),
            latency: new_histogram(),
            ack_latency: new_histogram(),
        };
        let m = &mut merged.report;
        for r in reports {
            m.connections += r.connections;
            m.connect_failed += r.connect_failed;
            m.sent += r.sent;
            m.dropped += r.dropped;
            m.acked += r.acked;
            m.expected += r.expected;
            m.errors += r.errors;
            m.delivered += r.delivered;
            m.disconnects += r.disconnects;
            m.send_elapsed_s = m.send_elapsed_s.max(r.send_elapsed_s);
            m.elapsed_s = m.elapsed_s.max(r.elapsed_s);
            m.last_delivery_s = m.last_delivery_s.max(r.last_delivery_s);
            m.error_samples
                .extend(r.error_samples.iter().take(4).cloned());
            plan::absorb(&mut merged.latency, &r.latency_us);
            plan::absorb(&mut merged.ack_latency, &r.ack_latency_us);
        }
        merged
    }
}

fn ms(us: u64) -> String {
    format!("{:.2} ms", us as f64 / 1000.0)
}

fn kib(bytes: f64) -> String {
    format!("{:.1} KiB", bytes / 1024.0)
}

fn summary(
    cli: &Cli,
    s: &LoadSettings,
    plan: &Plan,
    merged: &Merged,
    rss: [Option<u64>; 3],
    connect_s: f64,
) -> (String, serde_json::Value) {
    let r = &merged.report;
    let q = |h: &Histogram<u64>, q: f64| {
        if h.is_empty() {
            0
        } else {
            h.value_at_quantile(q)
        }
    };
    let per_connection = match (rss[0], rss[1]) {
        (Some(before), Some(after)) if r.connections > 0 => {
            Some((after as f64 - before as f64) / r.connections as f64)
        }
        _ => None,
    };
    let window = r.last_delivery_s.max(r.send_elapsed_s).max(1e-9);
    let delivered_per_s = r.delivered as f64 / window;
    let mut out = String::new();
    out.push_str(&format!(
        "## missive-load: {} users, {} client processes, {} source addresses{}\n\n",
        s.users,
        s.processes,
        s.source_ips,
        if cli.idle { ", idle" } else { "" }
    ));
    out.push_str("| measure | value |\n|---|---|\n");
    out.push_str(&format!(
        "| connections open / failed | {} / {} (in {connect_s:.1} s) |\n",
        r.connections, r.connect_failed
    ));
    let rss_cell = |v: Option<u64>| v.map_or("— (no --server-pid)".into(), |b| kib(b as f64));
    out.push_str(&format!(
        "| server RSS before connecting / connected / at the end | {} / {} / {} |\n",
        rss_cell(rss[0]),
        rss_cell(rss[1]),
        rss_cell(rss[2])
    ));
    out.push_str(&format!(
        "| server RSS per connection | {} |\n",
        per_connection.map_or("—".into(), kib)
    ));
    if !cli.idle {
        out.push_str(&format!(
            "| messages sent / acknowledged (target rate) | {} / {} ({}/s, {:.0}% to groups of {}) |\n",
            r.sent,
            r.acked,
            s.rate,
            s.group_share * 100.0,
            plan.groups.first().map_or(0, |g| g.members.len())
        ));
        out.push_str(&format!(
            "| deliveries received / expected | {} / {} |\n",
            r.delivered, r.expected
        ));
        out.push_str(&format!(
            "| delivered messages/s | {delivered_per_s:.0} (over {window:.1} s) |\n"
        ));
        out.push_str(&format!(
            "| end-to-end latency p50 / p99 / p99.9 / max | {} / {} / {} / {} |\n",
            ms(q(&merged.latency, 0.5)),
            ms(q(&merged.latency, 0.99)),
            ms(q(&merged.latency, 0.999)),
            ms(merged.latency.max())
        ));
        out.push_str(&format!(
            "| send → ack p50 / p99 | {} / {} |\n",
            ms(q(&merged.ack_latency, 0.5)),
            ms(q(&merged.ack_latency, 0.99))
        ));
    }
    out.push_str(&format!(
        "| errors / dropped sends / disconnects | {} / {} / {} |\n",
        r.errors, r.dropped, r.disconnects
    ));
    if !r.error_samples.is_empty() {
        out.push_str("\nFirst errors:\n\n");
        for e in r.error_samples.iter().take(8) {
            out.push_str(&format!("- {e}\n"));
        }
    }
    let value = json!({
        "users": s.users, "processes": s.processes, "source_ips": s.source_ips, "idle": cli.idle,
        "connections": r.connections, "connect_failed": r.connect_failed, "connect_s": connect_s,
        "rss_before_bytes": rss[0], "rss_connected_bytes": rss[1], "rss_end_bytes": rss[2],
        "rss_per_connection_bytes": per_connection,
        "rate_target": s.rate, "group_share": s.group_share,
        "sent": r.sent, "acked": r.acked, "dropped": r.dropped, "errors": r.errors,
        "disconnects": r.disconnects, "delivered": r.delivered, "expected": r.expected,
        "delivered_per_s": delivered_per_s,
        "latency_us": {"p50": q(&merged.latency, 0.5), "p99": q(&merged.latency, 0.99),
                        "p999": q(&merged.latency, 0.999), "max": merged.latency.max()},
        "ack_latency_us": {"p50": q(&merged.ack_latency, 0.5), "p99": q(&merged.ack_latency, 0.99)},
        "error_samples": r.error_samples,
    });
    (out, value)
}
