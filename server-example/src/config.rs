//! Configuration: flags, `MISSIVE_*` environment variables and a TOML file.
//!
//! One struct, [`Options`], is both the command line (clap derive, each option with its
//! `MISSIVE_*` variable) and the file (serde, keys are the long option names with `_`): every
//! field is optional, so a missing value can be told from a given one. [`Config::load`] merges
//! them with the precedence **flags > environment > file > defaults** (clap already prefers a
//! flag to its variable) and [`Config::from_options`] fills the defaults and checks ranges.
//!
//! ```toml
//! # missive.toml
//! port = 9000
//! data_dir = "/var/lib/missive"
//! allowed_origins = ["https://chat.example.com"]
//! durability = "interval:50"
//! ```

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use clap::Parser;
use serde::Deserialize;

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file named by `--config` could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML or has unknown keys or wrong types.
    #[error("invalid config file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's explanation.
        message: String,
    },
    /// A value is out of range or malformed.
    #[error("invalid value for {option}: {message}")]
    Invalid {
        /// The option's long name.
        option: &'static str,
        /// Why.
        message: String,
    },
}

/// Command-line options and config-file keys. Every field is optional; see [`Config`] for the
/// defaults.
#[derive(Debug, Default, Clone, Parser, Deserialize)]
#[command(
    name = "missive-server",
    version,
    about = "Missive's example messaging server: REST under /api/v1, WebSocket at /ws.",
    long_about = "Missive's example messaging server: REST under /api/v1, WebSocket at /ws, \
                  /healthz and Prometheus /metrics.\n\n\
                  Every option can also be set with its MISSIVE_* environment variable or as a \
                  key of the TOML file given by --config (the long name with '_' for '-'). \
                  Precedence: flags > environment > file > defaults.\n\n\
                  Quick start: missive-server --dev"
)]
#[serde(default, deny_unknown_fields)]
pub struct Options {
    /// TOML file with any of these options as keys (e.g. `port = 9000`).
    #[arg(long, env = "MISSIVE_CONFIG", value_name = "FILE")]
    #[serde(skip)]
    pub config: Option<PathBuf>,

    /// Print the resolved configuration and exit.
    #[arg(long)]
    #[serde(skip)]
    pub print_config: bool,

    /// Development mode: verification responses carry `dev_code`, and the server's own origin
    /// (http://localhost:PORT, http://127.0.0.1:PORT) is an allowed Origin. [default: false]
    #[arg(long, env = "MISSIVE_DEV", value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub dev: Option<bool>,

    /// Address to listen on. [default: 127.0.0.1]
    #[arg(long, env = "MISSIVE_BIND", value_name = "IP")]
    pub bind: Option<IpAddr>,

    /// TCP port; 0 picks a free one (the bound address is printed as `listening on http://…`).
    /// [default: 8080]
    #[arg(long, env = "MISSIVE_PORT")]
    pub port: Option<u16>,

    /// Data directory: accounts.sqlite3 and the engine's files. Created if missing.
    /// [default: ./missive-data]
    #[arg(long, env = "MISSIVE_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// Log filter: a level, or `level,target=level,...` (e.g. `info,missive_server=debug`).
    /// [default: info]
    #[arg(long, env = "MISSIVE_LOG", value_name = "FILTER")]
    pub log: Option<String>,

    /// Engine durability: `always` (fsync before acknowledging), `interval:MS` (fsync at most MS
    /// milliseconds after acknowledging) or `os` (no fsync; survives a process crash only).
    /// [default: always]
    #[arg(long, env = "MISSIVE_DURABILITY", value_name = "LEVEL")]
    pub durability: Option<String>,

    /// Most members in a group. [default: 256]
    #[arg(long, env = "MISSIVE_GROUP_MEMBERS_MAX", value_name = "N")]
    pub group_members_max: Option<u32>,

    /// How long messages are kept, in days: the engine deletes log segments older than this.
    /// [default: 30]
    #[arg(long, env = "MISSIVE_RETENTION_DAYS", value_name = "DAYS")]
    pub retention_days: Option<u64>,

    /// How often the engine applies retention in the background, in seconds (0 = never).
    /// [default: 60]
    #[arg(long, env = "MISSIVE_RETENTION_INTERVAL_S", value_name = "SECONDS")]
    pub retention_interval_s: Option<u64>,

    /// How often the engine checkpoints its index in the background, in seconds (0 = only at
    /// shutdown; restarts then replay more of the log). [default: 60]
    #[arg(long, env = "MISSIVE_CHECKPOINT_INTERVAL_S", value_name = "SECONDS")]
    pub checkpoint_interval_s: Option<u64>,

    /// How long a `client_msg_id` is remembered, in seconds: a retry within this window returns
    /// the original message and stores nothing. [default: 300]
    #[arg(long, env = "MISSIVE_DEDUP_WINDOW_S", value_name = "SECONDS")]
    pub dedup_window_s: Option<u64>,

    /// Live events queued per connected device in the engine before the device counts as
    /// lagging and catches up from the stored inbox instead. [default: 1024]
    #[arg(long, env = "MISSIVE_LIVE_QUEUE_EVENTS", value_name = "N")]
    pub live_queue_events: Option<usize>,

    /// Largest message `content`, in bytes. [default: 65536]
    #[arg(long, env = "MISSIVE_CONTENT_BYTES_MAX", value_name = "BYTES")]
    pub content_bytes_max: Option<usize>,

    /// Largest WebSocket message, in bytes; larger ones close the connection with 1009.
    /// [default: 131072]
    #[arg(long, env = "MISSIVE_FRAME_BYTES_MAX", value_name = "BYTES")]
    pub frame_bytes_max: Option<usize>,

    /// Largest JSON request body, in bytes (413 past it). [default: 131072]
    #[arg(long, env = "MISSIVE_BODY_BYTES_MAX", value_name = "BYTES")]
    pub body_bytes_max: Option<usize>,

    /// Largest media upload, in bytes. [default: 104857600]
    #[arg(long, env = "MISSIVE_MEDIA_BYTES_MAX", value_name = "BYTES")]
    pub media_bytes_max: Option<u64>,

    /// Most open client connections (HTTP and WebSocket together); further ones wait in the
    /// listen backlog. Keep it under the process's open-file limit. [default: 16000]
    #[arg(long, env = "MISSIVE_CONNECTIONS_MAX", value_name = "N")]
    pub connections_max: Option<usize>,

    /// Requests per second allowed from one IP address (0 = unlimited). [default: 100]
    #[arg(long, env = "MISSIVE_IP_REQUESTS_PER_S", value_name = "N")]
    pub ip_requests_per_s: Option<u32>,

    /// Burst of requests allowed from one IP address. [default: 200]
    #[arg(long, env = "MISSIVE_IP_REQUESTS_BURST", value_name = "N")]
    pub ip_requests_burst: Option<u32>,

    /// Authenticated requests per second allowed per user (0 = unlimited). [default: 20]
    #[arg(long, env = "MISSIVE_USER_REQUESTS_PER_S", value_name = "N")]
    pub user_requests_per_s: Option<u32>,

    /// Burst of authenticated requests allowed per user. [default: 50]
    #[arg(long, env = "MISSIVE_USER_REQUESTS_BURST", value_name = "N")]
    pub user_requests_burst: Option<u32>,

    /// WebSocket frames per second allowed per user (0 = unlimited). [default: 30]
    #[arg(long, env = "MISSIVE_WS_FRAMES_PER_S", value_name = "N")]
    pub ws_frames_per_s: Option<u32>,

    /// Burst of WebSocket frames allowed per user. [default: 60]
    #[arg(long, env = "MISSIVE_WS_FRAMES_BURST", value_name = "N")]
    pub ws_frames_burst: Option<u32>,

    /// Phone-verification calls (verify-phone and verify-code) per minute per IP address
    /// (0 = unlimited). [default: 20]
    #[arg(long, env = "MISSIVE_VERIFY_PER_IP_PER_MIN", value_name = "N")]
    pub verify_per_ip_per_min: Option<u32>,

    /// Lifetime of a verification code, in seconds. [default: 300]
    #[arg(long, env = "MISSIVE_VERIFY_CODE_TTL_S", value_name = "SECONDS")]
    pub verify_code_ttl_s: Option<u64>,

    /// Wrong codes allowed per verification request; then 429 until a new code is requested.
    /// [default: 5]
    #[arg(long, env = "MISSIVE_VERIFY_ATTEMPTS_MAX", value_name = "N")]
    pub verify_attempts_max: Option<u32>,

    /// Push batching window in seconds: one "N new messages" notification per user per window.
    /// [default: 30]
    #[arg(long, env = "MISSIVE_PUSH_WINDOW_S", value_name = "SECONDS")]
    pub push_window_s: Option<u64>,

    /// Where push notifications go: `log`, `webhook` (needs --push-webhook-url), `fcm` or `apns`
    /// (shaped, but unreachable from here). [default: log]
    #[arg(long, env = "MISSIVE_PUSH_SINK", value_name = "SINK")]
    pub push_sink: Option<String>,

    /// URL the webhook push sink POSTs JSON to (plain http://host:port/path).
    #[arg(long, env = "MISSIVE_PUSH_WEBHOOK_URL", value_name = "URL")]
    pub push_webhook_url: Option<String>,

    /// A WebSocket connection that sends nothing (no frame, no ping) for this many seconds is
    /// closed and its user goes offline. [default: 60]
    #[arg(long, env = "MISSIVE_HEARTBEAT_TIMEOUT_S", value_name = "SECONDS")]
    pub heartbeat_timeout_s: Option<u64>,

    /// Time allowed for a new connection to send its request headers (the WebSocket upgrade
    /// included); also closes idle keep-alive HTTP connections. [default: 10]
    #[arg(long, env = "MISSIVE_HANDSHAKE_TIMEOUT_S", value_name = "SECONDS")]
    pub handshake_timeout_s: Option<u64>,

    /// A WebSocket connection that sends only heartbeats for this many seconds is closed
    /// (0 = never). [default: 3600]
    #[arg(long, env = "MISSIVE_IDLE_TIMEOUT_S", value_name = "SECONDS")]
    pub idle_timeout_s: Option<u64>,

    /// On SIGINT/SIGTERM, time allowed for open connections to finish before the shutdown hooks
    /// run. [default: 10]
    #[arg(long, env = "MISSIVE_SHUTDOWN_GRACE_S", value_name = "SECONDS")]
    pub shutdown_grace_s: Option<u64>,

    /// How long a call may ring unanswered before it ends as missed, in seconds.
    /// [default: 45]
    #[arg(long, env = "MISSIVE_CALL_RING_TIMEOUT_S", value_name = "SECONDS")]
    pub call_ring_timeout_s: Option<u64>,

    /// How often the media retention sweep runs, in seconds: expired grants, media no live
    /// message references (past the orphan grace), unreferenced blobs and expired resumable
    /// uploads are removed (0 = never). [default: 600]
    #[arg(long, env = "MISSIVE_MEDIA_SWEEP_INTERVAL_S", value_name = "SECONDS")]
    pub media_sweep_interval_s: Option<u64>,

    /// How often expired stories (and their views) are deleted, in seconds (0 = never; expired
    /// stories are never shown either way). [default: 600]
    #[arg(long, env = "MISSIVE_STORY_SWEEP_INTERVAL_S", value_name = "SECONDS")]
    pub story_sweep_interval_s: Option<u64>,

    /// Origins allowed to open WebSockets from a browser, comma-separated (`*` = any). Requests
    /// without an Origin header (non-browser clients) are always allowed. [default: none]
    #[arg(
        long,
        env = "MISSIVE_ALLOWED_ORIGINS",
        value_name = "ORIGINS",
        value_delimiter = ','
    )]
    pub allowed_origins: Option<Vec<String>>,
}

macro_rules! prefer {
    ($high:ident, $low:ident; $($field:ident),* $(,)?) => {
        Options {
            config: $high.config.or($low.config),
            print_config: $high.print_config || $low.print_config,
            $($field: $high.$field.or($low.$field),)*
        }
    };
}

impl Options {
    /// Each field from `self` where set, else from `lower`.
    pub fn or(self, lower: Options) -> Options {
        prefer!(self, lower;
            dev, bind, port, data_dir, log, durability, group_members_max, retention_days,
            retention_interval_s, checkpoint_interval_s, dedup_window_s, live_queue_events,
            content_bytes_max,
            frame_bytes_max, body_bytes_max, media_bytes_max, connections_max, ip_requests_per_s,
            ip_requests_burst, user_requests_per_s, user_requests_burst, ws_frames_per_s,
            ws_frames_burst, verify_per_ip_per_min, verify_code_ttl_s, verify_attempts_max,
            push_window_s, push_sink, push_webhook_url, heartbeat_timeout_s, handshake_timeout_s,
            idle_timeout_s, shutdown_grace_s, call_ring_timeout_s, media_sweep_interval_s,
            story_sweep_interval_s, allowed_origins,
        )
    }

    /// Parses a TOML config file's text.
    pub fn from_toml(text: &str) -> Result<Options, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }
}

/// How the engine makes appends durable before acknowledging them (the engine maps this to its
/// own setting).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// fsync before acknowledging: survives power loss.
    Always,
    /// Acknowledge after the write; fsync at most this many milliseconds later.
    IntervalMs(u64),
    /// Acknowledge after the write, never fsync: survives a process crash, not a power cut.
    Os,
}

impl FromStr for Durability {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "always" => Ok(Self::Always),
            "os" => Ok(Self::Os),
            _ => match s.strip_prefix("interval:").map(str::parse::<u64>) {
                Some(Ok(ms)) if ms > 0 => Ok(Self::IntervalMs(ms)),
                _ => Err(format!(
                    "`{s}`: expected `always`, `interval:MS` (MS > 0) or `os`"
                )),
            },
        }
    }
}

impl std::fmt::Display for Durability {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Always => f.write_str("always"),
            Self::IntervalMs(ms) => write!(f, "interval:{ms}"),
            Self::Os => f.write_str("os"),
        }
    }
}

/// Where push notifications are delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushSinkKind {
    /// Logged (the default).
    Log,
    /// POSTed as JSON to a URL.
    Webhook {
        /// `http://host:port/path`.
        url: String,
    },
    /// Firebase Cloud Messaging: requests are built but cannot be sent from here.
    Fcm,
    /// Apple Push Notification service: requests are built but cannot be sent from here.
    Apns,
}

/// The resolved configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Development mode (see [`Options::dev`]).
    pub dev: bool,
    /// Address to listen on.
    pub bind: IpAddr,
    /// Port to listen on (0 = any free port).
    pub port: u16,
    /// Data directory.
    pub data_dir: PathBuf,
    /// Log filter.
    pub log: String,
    /// Engine durability.
    pub durability: Durability,
    /// Most members in a group.
    pub group_members_max: u32,
    /// How long messages are kept.
    pub retention: Duration,
    /// How often retention runs in the background (`None` = never).
    pub retention_interval: Option<Duration>,
    /// How often the index is checkpointed in the background (`None` = only at shutdown).
    pub checkpoint_interval: Option<Duration>,
    /// How long a `client_msg_id` is remembered for idempotent sends.
    pub dedup_window: Duration,
    /// Live events queued per device in the engine before it lags.
    pub live_queue_events: usize,
    /// Largest message content in bytes.
    pub content_bytes_max: usize,
    /// Largest WebSocket message in bytes.
    pub frame_bytes_max: usize,
    /// Largest JSON request body in bytes.
    pub body_bytes_max: usize,
    /// Largest media upload in bytes.
    pub media_bytes_max: u64,
    /// Most open client connections.
    pub connections_max: usize,
    /// Requests per second per IP (0 = unlimited).
    pub ip_requests_per_s: u32,
    /// Request burst per IP.
    pub ip_requests_burst: u32,
    /// Authenticated requests per second per user (0 = unlimited).
    pub user_requests_per_s: u32,
    /// Authenticated request burst per user.
    pub user_requests_burst: u32,
    /// WebSocket frames per second per user (0 = unlimited).
    pub ws_frames_per_s: u32,
    /// WebSocket frame burst per user.
    pub ws_frames_burst: u32,
    /// Verification calls per minute per IP (0 = unlimited).
    pub verify_per_ip_per_min: u32,
    /// Lifetime of a verification code.
    pub verify_code_ttl: Duration,
    /// Wrong codes allowed per verification request.
    pub verify_attempts_max: u32,
    /// Push batching window.
    pub push_window: Duration,
    /// Push sink.
    pub push_sink: PushSinkKind,
    /// WebSocket heartbeat timeout.
    pub heartbeat_timeout: Duration,
    /// Request-header (and WebSocket handshake) timeout.
    pub handshake_timeout: Duration,
    /// WebSocket idle timeout (`None` = never).
    pub idle_timeout: Option<Duration>,
    /// Grace period for open connections at shutdown.
    pub shutdown_grace: Duration,
    /// How long a call rings unanswered before it ends as missed (tests set milliseconds).
    pub call_ring_timeout: Duration,
    /// How often the media retention sweep runs (`None` = never).
    pub media_sweep_interval: Option<Duration>,
    /// How often expired stories are deleted (`None` = never).
    pub story_sweep_interval: Option<Duration>,
    /// Allowed browser Origins (`*` = any).
    pub allowed_origins: Vec<String>,
}

/// Limits that the protocol pins; options may lower or raise them within these ranges.
const FRAME_BYTES_MIN: usize = 1024;
const FRAME_BYTES_CEILING: usize = 16 * 1024 * 1024;
const CONTENT_BYTES_DEFAULT: usize = 64 * 1024;
const FRAME_BYTES_DEFAULT: usize = 128 * 1024;
/// Largest group cap accepted: a group change record lists its users (8 bytes each) and must
/// stay far below the log's 1 MiB record limit.
const GROUP_MEMBERS_CEILING: u32 = 10_000;
const _: () =
    assert!(GROUP_MEMBERS_CEILING as usize * 8 * 4 <= missive::log::RECORD_PAYLOAD_BYTES_MAX);
/// Largest engine queue per device accepted.
const LIVE_QUEUE_EVENTS_CEILING: usize = 1 << 20;
/// Longest retention accepted: ten years.
const RETENTION_DAYS_MAX: u64 = 3650;
// A message frame carries its content plus the envelope: the default frame must hold the
// default content with room to spare.
const _: () = assert!(CONTENT_BYTES_DEFAULT + 4 * 1024 <= FRAME_BYTES_DEFAULT);

impl Default for Config {
    fn default() -> Self {
        Self {
            dev: false,
            bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: 8080,
            data_dir: PathBuf::from("./missive-data"),
            log: "info".into(),
            durability: Durability::Always,
            group_members_max: 256,
            retention: Duration::from_secs(30 * 24 * 3600),
            retention_interval: Some(Duration::from_secs(60)),
            checkpoint_interval: Some(Duration::from_secs(60)),
            dedup_window: Duration::from_secs(300),
            live_queue_events: 1024,
            content_bytes_max: CONTENT_BYTES_DEFAULT,
            frame_bytes_max: FRAME_BYTES_DEFAULT,
            body_bytes_max: FRAME_BYTES_DEFAULT,
            media_bytes_max: 100 * 1024 * 1024,
            connections_max: 16_000,
            ip_requests_per_s: 100,
            ip_requests_burst: 200,
            user_requests_per_s: 20,
            user_requests_burst: 50,
            ws_frames_per_s: 30,
            ws_frames_burst: 60,
            verify_per_ip_per_min: 20,
            verify_code_ttl: Duration::from_secs(300),
            verify_attempts_max: 5,
            push_window: Duration::from_secs(30),
            push_sink: PushSinkKind::Log,
            heartbeat_timeout: Duration::from_secs(60),
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Some(Duration::from_secs(3600)),
            shutdown_grace: Duration::from_secs(10),
            call_ring_timeout: Duration::from_millis(crate::calls::RING_TIMEOUT_MS_DEFAULT),
            media_sweep_interval: Some(Duration::from_secs(600)),
            story_sweep_interval: Some(Duration::from_secs(600)),
            allowed_origins: Vec::new(),
        }
    }
}

fn invalid(option: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        option,
        message: message.into(),
    }
}

fn positive_secs(option: &'static str, value: u64) -> Result<Duration, ConfigError> {
    if value == 0 {
        return Err(invalid(option, "must be at least 1 second"));
    }
    Ok(Duration::from_secs(value))
}

impl Config {
    /// Merges `cli` (flags and environment, as clap parsed them) over the file it names, over
    /// the defaults.
    pub fn load(cli: Options) -> Result<Config, ConfigError> {
        let file = match &cli.config {
            None => Options::default(),
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.clone(),
                    source,
                })?;
                Options::from_toml(&text).map_err(|message| ConfigError::Parse {
                    path: path.clone(),
                    message,
                })?
            }
        };
        Config::from_options(cli.or(file))
    }

    /// Fills unset options with the defaults and checks every value.
    pub fn from_options(o: Options) -> Result<Config, ConfigError> {
        let d = Config::default();
        let durability = match o.durability {
            None => d.durability,
            Some(s) => s.parse().map_err(|m| invalid("durability", m))?,
        };
        if let Durability::IntervalMs(ms) = durability
            && ms > missive::log::SYNC_INTERVAL_MS_MAX
        {
            return Err(invalid(
                "durability",
                format!(
                    "interval:{ms} is longer than {} ms",
                    missive::log::SYNC_INTERVAL_MS_MAX
                ),
            ));
        }
        let retention = match o.retention_days {
            None => d.retention,
            Some(0) => return Err(invalid("retention-days", "must be at least 1 day")),
            Some(days) if days > RETENTION_DAYS_MAX => {
                return Err(invalid(
                    "retention-days",
                    format!("must be at most {RETENTION_DAYS_MAX}"),
                ));
            }
            Some(days) => Duration::from_secs(days * 24 * 3600),
        };
        let every = |value: Option<u64>, default: Option<Duration>| match value {
            None => default,
            Some(0) => None,
            Some(s) => Some(Duration::from_secs(s)),
        };
        let live_queue_events = o.live_queue_events.unwrap_or(d.live_queue_events);
        if !(1..=LIVE_QUEUE_EVENTS_CEILING).contains(&live_queue_events) {
            return Err(invalid(
                "live-queue-events",
                format!("must be between 1 and {LIVE_QUEUE_EVENTS_CEILING}"),
            ));
        }
        let dedup_window = match o.dedup_window_s {
            None => d.dedup_window,
            Some(s) => positive_secs("dedup-window-s", s)?,
        };
        let push_sink = match (o.push_sink.as_deref().unwrap_or("log"), o.push_webhook_url) {
            ("log", _) => PushSinkKind::Log,
            ("webhook", Some(url)) => {
                crate::push::WebhookUrl::parse(&url).map_err(|m| invalid("push-webhook-url", m))?;
                PushSinkKind::Webhook { url }
            }
            ("webhook", None) => {
                return Err(invalid("push-sink", "`webhook` needs --push-webhook-url"));
            }
            ("fcm", _) => PushSinkKind::Fcm,
            ("apns", _) => PushSinkKind::Apns,
            (other, _) => {
                return Err(invalid(
                    "push-sink",
                    format!("`{other}`: expected log, webhook, fcm or apns"),
                ));
            }
        };
        let frame_bytes_max = o.frame_bytes_max.unwrap_or(d.frame_bytes_max);
        if !(FRAME_BYTES_MIN..=FRAME_BYTES_CEILING).contains(&frame_bytes_max) {
            return Err(invalid(
                "frame-bytes-max",
                format!("must be between {FRAME_BYTES_MIN} and {FRAME_BYTES_CEILING}"),
            ));
        }
        let content_bytes_max = o.content_bytes_max.unwrap_or(d.content_bytes_max);
        if content_bytes_max == 0 || content_bytes_max > frame_bytes_max {
            return Err(invalid(
                "content-bytes-max",
                "must be positive and at most frame-bytes-max",
            ));
        }
        let body_bytes_max = o.body_bytes_max.unwrap_or(d.body_bytes_max);
        if body_bytes_max < content_bytes_max {
            return Err(invalid(
                "body-bytes-max",
                "must be at least content-bytes-max",
            ));
        }
        let group_members_max = o.group_members_max.unwrap_or(d.group_members_max);
        if !(2..=GROUP_MEMBERS_CEILING).contains(&group_members_max) {
            return Err(invalid(
                "group-members-max",
                format!("must be between 2 and {GROUP_MEMBERS_CEILING}"),
            ));
        }
        let connections_max = o.connections_max.unwrap_or(d.connections_max);
        if connections_max == 0 {
            return Err(invalid("connections-max", "must be at least 1"));
        }
        let verify_attempts_max = o.verify_attempts_max.unwrap_or(d.verify_attempts_max);
        if verify_attempts_max == 0 {
            return Err(invalid("verify-attempts-max", "must be at least 1"));
        }
        let log = o.log.unwrap_or(d.log);
        if log.parse::<tracing_subscriber::filter::Targets>().is_err() {
            return Err(invalid("log", format!("`{log}` is not a log filter")));
        }
        let mut allowed_origins = o.allowed_origins.unwrap_or_default();
        allowed_origins.retain(|s| !s.trim().is_empty());
        for origin in &mut allowed_origins {
            *origin = origin.trim().trim_end_matches('/').to_ascii_lowercase();
        }
        Ok(Config {
            dev: o.dev.unwrap_or(d.dev),
            bind: o.bind.unwrap_or(d.bind),
            port: o.port.unwrap_or(d.port),
            data_dir: o.data_dir.unwrap_or(d.data_dir),
            log,
            durability,
            group_members_max,
            retention,
            retention_interval: every(o.retention_interval_s, d.retention_interval),
            checkpoint_interval: every(o.checkpoint_interval_s, d.checkpoint_interval),
            dedup_window,
            live_queue_events,
            content_bytes_max,
            frame_bytes_max,
            body_bytes_max,
            media_bytes_max: o.media_bytes_max.unwrap_or(d.media_bytes_max),
            connections_max,
            ip_requests_per_s: o.ip_requests_per_s.unwrap_or(d.ip_requests_per_s),
            ip_requests_burst: o.ip_requests_burst.unwrap_or(d.ip_requests_burst),
            user_requests_per_s: o.user_requests_per_s.unwrap_or(d.user_requests_per_s),
            user_requests_burst: o.user_requests_burst.unwrap_or(d.user_requests_burst),
            ws_frames_per_s: o.ws_frames_per_s.unwrap_or(d.ws_frames_per_s),
            ws_frames_burst: o.ws_frames_burst.unwrap_or(d.ws_frames_burst),
            verify_per_ip_per_min: o.verify_per_ip_per_min.unwrap_or(d.verify_per_ip_per_min),
            verify_code_ttl: match o.verify_code_ttl_s {
                None => d.verify_code_ttl,
                Some(s) => positive_secs("verify-code-ttl-s", s)?,
            },
            verify_attempts_max,
            push_window: match o.push_window_s {
                None => d.push_window,
                Some(s) => positive_secs("push-window-s", s)?,
            },
            push_sink,
            heartbeat_timeout: match o.heartbeat_timeout_s {
                None => d.heartbeat_timeout,
                Some(s) => positive_secs("heartbeat-timeout-s", s)?,
            },
            handshake_timeout: match o.handshake_timeout_s {
                None => d.handshake_timeout,
                Some(s) => positive_secs("handshake-timeout-s", s)?,
            },
            idle_timeout: match o.idle_timeout_s {
                None => d.idle_timeout,
                Some(0) => None,
                Some(s) => Some(Duration::from_secs(s)),
            },
            shutdown_grace: match o.shutdown_grace_s {
                None => d.shutdown_grace,
                Some(s) => Duration::from_secs(s),
            },
            call_ring_timeout: match o.call_ring_timeout_s {
                None => d.call_ring_timeout,
                Some(s) => positive_secs("call-ring-timeout-s", s)?,
            },
            media_sweep_interval: every(o.media_sweep_interval_s, d.media_sweep_interval),
            story_sweep_interval: every(o.story_sweep_interval_s, d.story_sweep_interval),
            allowed_origins,
        })
    }

    /// A configuration for tests and embedding: the defaults, in `data_dir`, on a free port of
    /// 127.0.0.1, in dev mode, with rate limits high enough not to get in the way.
    pub fn for_tests(data_dir: impl Into<PathBuf>) -> Config {
        Config {
            dev: true,
            port: 0,
            data_dir: data_dir.into(),
            ip_requests_per_s: 100_000,
            ip_requests_burst: 100_000,
            user_requests_per_s: 100_000,
            user_requests_burst: 100_000,
            ws_frames_per_s: 100_000,
            ws_frames_burst: 100_000,
            verify_per_ip_per_min: 0,
            shutdown_grace: Duration::from_secs(2),
            ..Config::default()
        }
    }

    /// Whether a browser page from `origin` may open a WebSocket. `port` is the bound port (dev
    /// mode allows the server's own origin).
    pub fn origin_allowed(&self, origin: &str, port: u16) -> bool {
        let origin = origin.trim_end_matches('/').to_ascii_lowercase();
        if self
            .allowed_origins
            .iter()
            .any(|o| o == "*" || *o == origin)
        {
            return true;
        }
        self.dev
            && (origin == format!("http://localhost:{port}")
                || origin == format!("http://127.0.0.1:{port}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Options {
        let mut all = vec!["missive-server"];
        all.extend_from_slice(args);
        Options::try_parse_from(all).expect("valid arguments")
    }

    #[test]
    fn defaults_apply_when_nothing_is_set() {
        let c = Config::from_options(Options::default()).unwrap();
        assert_eq!(c.port, 8080);
        assert_eq!(c.group_members_max, 256);
        assert_eq!(c.content_bytes_max, 64 * 1024);
        assert_eq!(c.frame_bytes_max, 128 * 1024);
        assert_eq!(c.push_window, Duration::from_secs(30));
        assert_eq!(c.durability, Durability::Always);
        assert_eq!(c.call_ring_timeout, Duration::from_secs(45));
        assert_eq!(c.media_sweep_interval, Some(Duration::from_secs(600)));
        assert_eq!(c.story_sweep_interval, Some(Duration::from_secs(600)));
        assert!(!c.dev);
    }

    #[test]
    fn call_and_sweep_settings() {
        let c = Config::from_options(parse(&[
            "--call-ring-timeout-s",
            "30",
            "--media-sweep-interval-s",
            "0",
            "--story-sweep-interval-s",
            "5",
        ]))
        .unwrap();
        assert_eq!(c.call_ring_timeout, Duration::from_secs(30));
        assert_eq!(c.media_sweep_interval, None);
        assert_eq!(c.story_sweep_interval, Some(Duration::from_secs(5)));
        assert!(Config::from_options(parse(&["--call-ring-timeout-s", "0"])).is_err());
    }

    #[test]
    fn flags_beat_the_file_which_beats_defaults() {
        let file = Options::from_toml(
            "port = 9000\ngroup_members_max = 10\ndurability = \"interval:50\"\ndev = true\n",
        )
        .unwrap();
        let cli = parse(&["--port", "7000"]);
        let c = Config::from_options(cli.or(file)).unwrap();
        assert_eq!(c.port, 7000);
        assert_eq!(c.group_members_max, 10);
        assert_eq!(c.durability, Durability::IntervalMs(50));
        assert!(c.dev);
    }

    #[test]
    fn dev_flag_forms() {
        assert_eq!(parse(&["--dev"]).dev, Some(true));
        assert_eq!(parse(&["--dev=false"]).dev, Some(false));
        assert_eq!(parse(&[]).dev, None);
    }

    #[test]
    fn bad_values_are_refused() {
        assert!(Options::from_toml("no_such_key = 1").is_err());
        assert!(Options::from_toml("port = \"x\"").is_err());
        for args in [
            &["--durability", "sometimes"][..],
            &["--durability", "interval:0"],
            &["--frame-bytes-max", "10"],
            &["--push-sink", "webhook"],
            &["--push-sink", "pigeon"],
            &["--log", "info,,=?"],
            &["--group-members-max", "1"],
        ] {
            assert!(Config::from_options(parse(args)).is_err(), "{args:?}");
        }
    }

    #[test]
    fn origins() {
        let c = Config::from_options(parse(&[
            "--allowed-origins",
            "https://Chat.Example.com/, https://b.example",
        ]))
        .unwrap();
        assert!(c.origin_allowed("https://chat.example.com", 80));
        assert!(c.origin_allowed("https://b.example", 80));
        assert!(!c.origin_allowed("https://evil.example", 80));
        assert!(!c.origin_allowed("http://localhost:80", 80));
        let dev = Config::from_options(parse(&["--dev"])).unwrap();
        assert!(dev.origin_allowed("http://localhost:8080", 8080));
        assert!(!dev.origin_allowed("http://localhost:8081", 8080));
    }
}
