//! A small Prometheus registry: counters, gauges and histograms, rendered as text at `/metrics`.
//!
//! Each server owns its [`Metrics`] (no global recorder), so tests can run several servers in
//! one process. Registration takes a lock once; updates are lock-free atomics on the returned
//! handles, which are cheap to clone and keep. Values that live elsewhere (the engine's stats)
//! are appended at scrape time by a collector registered with [`Metrics::add_collector`], using
//! [`write_metric`] to format them.
//!
//! ```
//! let metrics = missive_server::metrics::Metrics::new();
//! let sent = metrics.counter("missive_messages_sent_total", "Messages accepted.");
//! sent.inc();
//! metrics.add_collector(|out| {
//!     missive_server::metrics::write_metric(out, "missive_engine_segments", "Open segments.",
//!         "gauge", &[], 3.0);
//! });
//! assert!(metrics.render().contains("missive_messages_sent_total 1"));
//! ```

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use parking_lot::Mutex;

/// A function that appends exposition text at scrape time.
type Collector = Box<dyn Fn(&mut String) + Send + Sync>;

/// A registry of metrics; clones share it.
#[derive(Clone, Default)]
pub struct Metrics {
    inner: Arc<Registry>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

#[derive(Default)]
struct Registry {
    families: Mutex<BTreeMap<&'static str, Family>>,
    collectors: Mutex<Vec<Collector>>,
}

struct Family {
    help: &'static str,
    kind: &'static str,
    series: Vec<(String, Series)>,
}

#[derive(Clone)]
enum Series {
    Counter(Counter),
    Gauge(Gauge),
    Histogram(Histogram),
}

/// A monotonically increasing count.
#[derive(Clone, Debug, Default)]
pub struct Counter(Arc<AtomicU64>);

impl Counter {
    /// Adds one.
    pub fn inc(&self) {
        self.add(1);
    }

    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    /// The current value.
    pub fn value(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down.
#[derive(Clone, Debug, Default)]
pub struct Gauge(Arc<AtomicI64>);

impl Gauge {
    /// Adds one.
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    /// Subtracts one.
    pub fn dec(&self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }

    /// Sets the value.
    pub fn set(&self, value: i64) {
        self.0.store(value, Ordering::Relaxed);
    }

    /// The current value.
    pub fn value(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A distribution over fixed buckets (upper bounds in the metric's unit, e.g. seconds).
#[derive(Clone, Debug)]
pub struct Histogram(Arc<HistogramInner>);

#[derive(Debug)]
struct HistogramInner {
    bounds: &'static [f64],
    buckets: Vec<AtomicU64>,
    count: AtomicU64,
    /// Sum in millionths of the unit, so that it fits an atomic integer.
    sum_micros: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        assert!(
            bounds.windows(2).all(|w| w[0] < w[1]),
            "histogram bounds must increase"
        );
        Self(Arc::new(HistogramInner {
            bounds,
            buckets: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum_micros: AtomicU64::new(0),
        }))
    }

    /// Records one observation.
    pub fn observe(&self, value: f64) {
        let inner = &*self.0;
        if let Some(i) = inner.bounds.iter().position(|b| value <= *b) {
            inner.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        inner.count.fetch_add(1, Ordering::Relaxed);
        let micros = (value.max(0.0) * 1e6) as u64;
        inner.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    /// How many observations were recorded.
    pub fn count(&self) -> u64 {
        self.0.count.load(Ordering::Relaxed)
    }
}

/// Latency buckets in seconds, from 100 µs to 10 s.
pub const LATENCY_BUCKETS_S: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

fn label_string(labels: &[(&str, &str)]) -> String {
    if labels.is_empty() {
        return String::new();
    }
    let mut s = String::from("{");
    for (i, (k, v)) in labels.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        let v = v
            .replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n");
        let _ = write!(s, "{k}=\"{v}\"");
    }
    s.push('}');
    s
}

impl Metrics {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    fn register(
        &self,
        name: &'static str,
        help: &'static str,
        kind: &'static str,
        labels: &[(&str, &str)],
        make: impl FnOnce() -> Series,
    ) -> Series {
        let labels = label_string(labels);
        let mut families = self.inner.families.lock();
        let family = families.entry(name).or_insert_with(|| Family {
            help,
            kind,
            series: Vec::new(),
        });
        assert_eq!(
            family.kind, kind,
            "metric {name} registered as both {} and {kind}",
            family.kind
        );
        if let Some((_, series)) = family.series.iter().find(|(l, _)| *l == labels) {
            return series.clone();
        }
        let series = make();
        family.series.push((labels, series.clone()));
        series
    }

    /// The counter `name` (created on first use; later calls return the same one).
    ///
    /// # Panics
    /// If `name` is already registered as another kind.
    pub fn counter(&self, name: &'static str, help: &'static str) -> Counter {
        self.counter_with(name, help, &[])
    }

    /// The counter `name` with these labels.
    ///
    /// # Panics
    /// If `name` is already registered as another kind.
    pub fn counter_with(
        &self,
        name: &'static str,
        help: &'static str,
        labels: &[(&str, &str)],
    ) -> Counter {
        match self.register(name, help, "counter", labels, || {
            Series::Counter(Counter::default())
        }) {
            Series::Counter(c) => c,
            _ => unreachable!("kind checked in register"),
        }
    }

    /// The gauge `name`.
    ///
    /// # Panics
    /// If `name` is already registered as another kind.
    pub fn gauge(&self, name: &'static str, help: &'static str) -> Gauge {
        self.gauge_with(name, help, &[])
    }

    /// The gauge `name` with these labels.
    ///
    /// # Panics
    /// If `name` is already registered as another kind.
    pub fn gauge_with(
        &self,
        name: &'static str,
        help: &'static str,
        labels: &[(&str, &str)],
    ) -> Gauge {
        match self.register(name, help, "gauge", labels, || {
            Series::Gauge(Gauge::default())
        }) {
            Series::Gauge(g) => g,
            _ => unreachable!("kind checked in register"),
        }
    }

    /// The histogram `name` over `bounds` (increasing upper bounds; `+Inf` is implied).
    ///
    /// # Panics
    /// If `name` is already registered as another kind, or `bounds` do not increase.
    pub fn histogram(
        &self,
        name: &'static str,
        help: &'static str,
        bounds: &'static [f64],
    ) -> Histogram {
        match self.register(name, help, "histogram", &[], || {
            Series::Histogram(Histogram::new(bounds))
        }) {
            Series::Histogram(h) => h,
            _ => unreachable!("kind checked in register"),
        }
    }

    /// Adds a function that appends exposition text at every scrape (for the engine's stats).
    /// It should write whole families with [`write_metric`] and must not block for long.
    pub fn add_collector(&self, collector: impl Fn(&mut String) + Send + Sync + 'static) {
        self.inner.collectors.lock().push(Box::new(collector));
    }

    /// The Prometheus text exposition (format 0.0.4) of every metric.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        for (name, family) in self.inner.families.lock().iter() {
            let _ = writeln!(out, "# HELP {name} {}", family.help);
            let _ = writeln!(out, "# TYPE {name} {}", family.kind);
            for (labels, series) in &family.series {
                match series {
                    Series::Counter(c) => {
                        let _ = writeln!(out, "{name}{labels} {}", c.value());
                    }
                    Series::Gauge(g) => {
                        let _ = writeln!(out, "{name}{labels} {}", g.value());
                    }
                    Series::Histogram(h) => render_histogram(&mut out, name, h),
                }
            }
        }
        for collector in self.inner.collectors.lock().iter() {
            collector(&mut out);
        }
        out
    }
}

fn render_histogram(out: &mut String, name: &str, h: &Histogram) {
    let inner = &*h.0;
    let mut cumulative = 0;
    for (bound, bucket) in inner.bounds.iter().zip(&inner.buckets) {
        cumulative += bucket.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
    }
    let count = inner.count.load(Ordering::Relaxed);
    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
    let sum = inner.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
    let _ = writeln!(out, "{name}_sum {sum}");
    let _ = writeln!(out, "{name}_count {count}");
}

/// Appends one metric family with a single series: `kind` is `counter` or `gauge`.
pub fn write_metric(
    out: &mut String,
    name: &str,
    help: &str,
    kind: &str,
    labels: &[(&str, &str)],
    value: f64,
) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    let _ = writeln!(out, "{name}{} {value}", label_string(labels));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_gauges_histograms_and_collectors() {
        let m = Metrics::new();
        let a = m.counter_with("x_total", "Xs.", &[("kind", "a")]);
        let b = m.counter_with("x_total", "Xs.", &[("kind", "b\"q")]);
        a.add(3);
        b.inc();
        m.counter_with("x_total", "Xs.", &[("kind", "a")]).inc();
        let g = m.gauge("g", "A gauge.");
        g.inc();
        g.inc();
        g.dec();
        let h = m.histogram("lat_seconds", "Latency.", &[0.1, 1.0]);
        h.observe(0.05);
        h.observe(0.5);
        h.observe(5.0);
        m.add_collector(|out| write_metric(out, "engine_x", "From the engine.", "gauge", &[], 7.0));
        let text = m.render();
        assert!(text.contains("# TYPE x_total counter\n"));
        assert!(text.contains("x_total{kind=\"a\"} 4\n"));
        assert!(text.contains("x_total{kind=\"b\\\"q\"} 1\n"));
        assert!(text.contains("g 1\n"));
        assert!(text.contains("lat_seconds_bucket{le=\"0.1\"} 1\n"));
        assert!(text.contains("lat_seconds_bucket{le=\"1\"} 2\n"));
        assert!(text.contains("lat_seconds_bucket{le=\"+Inf\"} 3\n"));
        assert!(text.contains("lat_seconds_count 3\n"));
        assert!(text.contains("engine_x 7\n"));
        assert_eq!(text.matches("# TYPE x_total").count(), 1);
    }

    #[test]
    #[should_panic(expected = "registered as both")]
    fn one_name_one_kind() {
        let m = Metrics::new();
        m.counter("n", "N.");
        m.gauge("n", "N.");
    }
}

/// The server's own metrics, registered once at start.
#[derive(Debug, Clone)]
pub struct ServerMetrics {
    /// HTTP responses by status class (index 0 = 1xx … 4 = 5xx).
    pub http_responses: [Counter; 5],
    /// HTTP request latency.
    pub http_duration: Histogram,
    /// Open WebSocket connections.
    pub ws_connections: Gauge,
    /// WebSocket connections accepted.
    pub ws_connections_total: Counter,
    /// Frames received from clients.
    pub ws_frames_received: Counter,
    /// Frames sent to clients.
    pub ws_frames_sent: Counter,
    /// Client frames refused as malformed.
    pub ws_frame_errors: Counter,
    /// Connections closed with 1009 (message too big).
    pub ws_closed_too_big: Counter,
    /// Connections closed by the heartbeat or idle timeout.
    pub ws_closed_timeout: Counter,
    /// Requests refused by the per-IP limit.
    pub rate_limited_ip: Counter,
    /// Requests refused by the per-user limit.
    pub rate_limited_user: Counter,
    /// Frames refused by the per-user frame limit.
    pub rate_limited_ws: Counter,
    /// Verification calls refused by the per-IP verification limit.
    pub rate_limited_verify: Counter,
    /// Push notices accepted into a batch.
    pub push_notices: Counter,
    /// Push notices dropped for muted chats or do-not-disturb.
    pub push_suppressed: Counter,
    /// Notifications delivered to the sink.
    pub push_delivered: Counter,
    /// Notifications the sink failed to deliver.
    pub push_failed: Counter,
}

impl ServerMetrics {
    /// Registers the server's metrics in `m`.
    pub fn register(m: &Metrics) -> Self {
        let class = |c: &str| {
            m.counter_with(
                "missive_http_responses_total",
                "HTTP responses by status class.",
                &[("class", c)],
            )
        };
        let rate_limited = |scope: &str| {
            m.counter_with(
                "missive_rate_limited_total",
                "Requests or frames refused by a rate limit.",
                &[("scope", scope)],
            )
        };
        let push = |result: &str| {
            m.counter_with(
                "missive_push_total",
                "Push notices and notifications by outcome.",
                &[("result", result)],
            )
        };
        Self {
            http_responses: [
                class("1xx"),
                class("2xx"),
                class("3xx"),
                class("4xx"),
                class("5xx"),
            ],
            http_duration: m.histogram(
                "missive_http_request_duration_seconds",
                "HTTP request latency (WebSocket upgrades count until the 101).",
                LATENCY_BUCKETS_S,
            ),
            ws_connections: m.gauge("missive_ws_connections", "Open WebSocket connections."),
            ws_connections_total: m.counter(
                "missive_ws_connections_total",
                "WebSocket connections accepted.",
            ),
            ws_frames_received: m.counter(
                "missive_ws_frames_received_total",
                "WebSocket frames received from clients.",
            ),
            ws_frames_sent: m.counter(
                "missive_ws_frames_sent_total",
                "WebSocket frames sent to clients.",
            ),
            ws_frame_errors: m.counter(
                "missive_ws_frame_errors_total",
                "Client frames refused as malformed or unknown.",
            ),
            ws_closed_too_big: m.counter(
                "missive_ws_closed_too_big_total",
                "Connections closed with 1009 (message too big).",
            ),
            ws_closed_timeout: m.counter(
                "missive_ws_closed_timeout_total",
                "Connections closed by the heartbeat or idle timeout.",
            ),
            rate_limited_ip: rate_limited("ip"),
            rate_limited_user: rate_limited("user"),
            rate_limited_ws: rate_limited("ws_frames"),
            rate_limited_verify: rate_limited("verify"),
            push_notices: push("queued"),
            push_suppressed: push("suppressed"),
            push_delivered: push("delivered"),
            push_failed: push("failed"),
        }
    }

    /// Counts a response with `status`.
    pub fn count_response(&self, status: u16) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        self.http_responses[class].inc();
    }
}
