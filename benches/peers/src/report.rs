//! Results: the Markdown table (with ratios against each peer and the device), the section of
//! `benches/RESULTS.md` between its markers, and the SVG plot.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use missive_benches::stats::fmt_rate;

use crate::device::Device;
use crate::spec::{PAYLOAD_BYTES_F64, PRODUCERS};

/// The marker lines of the generated section in `RESULTS.md`.
pub const BEGIN: &str = "<!-- peers:begin -->";
/// See [`BEGIN`].
pub const END: &str = "<!-- peers:end -->";

/// How a metric reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    /// Operations per second (higher is better).
    Rate,
    /// Nanoseconds (lower is better).
    Nanos,
    /// Seconds (lower is better).
    Seconds,
    /// Bytes per payload byte (lower is better).
    PerPayloadByte,
}

/// One row of the table.
#[derive(Clone, Copy, Debug)]
pub struct Metric {
    /// Key in [`StoreResult::values`].
    pub key: &'static str,
    /// What it is.
    pub label: &'static str,
    /// Its unit.
    pub unit: Unit,
    /// The label on the plot (`None`: not plotted).
    pub plot: Option<&'static str>,
}

/// Every row, in order.
pub const METRICS: &[Metric] = &[
    Metric {
        key: "durable",
        label: "1:1 appends, fsync per commit, 64 producers (msg/s)",
        unit: Unit::Rate,
        plot: Some("durable 1:1"),
    },
    Metric {
        key: "durable_p99",
        label: "… their ack latency p99",
        unit: Unit::Nanos,
        plot: None,
    },
    Metric {
        key: "buffered",
        label: "1:1 appends, no fsync, 64 producers (msg/s)",
        unit: Unit::Rate,
        plot: Some("buffered 1:1"),
    },
    Metric {
        key: "group",
        label: "group messages to 256 members, fsync per commit (msg/s)",
        unit: Unit::Rate,
        plot: Some("groups of 256"),
    },
    Metric {
        key: "receipts",
        label: "read receipts, fsync per commit (receipts/s)",
        unit: Unit::Rate,
        plot: Some("receipts"),
    },
    Metric {
        key: "latest",
        label: "latest 50 of a chat, p50",
        unit: Unit::Nanos,
        plot: Some("latest 50"),
    },
    Metric {
        key: "latest_p99",
        label: "latest 50 of a chat, p99",
        unit: Unit::Nanos,
        plot: None,
    },
    Metric {
        key: "inbox",
        label: "inbox fetch of 100, p50",
        unit: Unit::Nanos,
        plot: Some("inbox fetch"),
    },
    Metric {
        key: "inbox_p99",
        label: "inbox fetch of 100, p99",
        unit: Unit::Nanos,
        plot: None,
    },
    Metric {
        key: "fill",
        label: "bulk load of the crash dataset, no fsync (msg/s)",
        unit: Unit::Rate,
        plot: Some("bulk load"),
    },
    Metric {
        key: "reopen",
        label: "reopen after a crash + first read (s)",
        unit: Unit::Seconds,
        plot: Some("reopen"),
    },
    Metric {
        key: "ttl",
        label: "TTL expiry of the oldest day of 8 (s)",
        unit: Unit::Seconds,
        plot: Some("TTL expiry"),
    },
    Metric {
        key: "wa_durable",
        label: "bytes written per payload byte, durable 1:1",
        unit: Unit::PerPayloadByte,
        plot: Some("write amp. durable"),
    },
    Metric {
        key: "wa_fill",
        label: "bytes written per payload byte, bulk load",
        unit: Unit::PerPayloadByte,
        plot: Some("write amp. bulk"),
    },
    Metric {
        key: "size",
        label: "on-disk bytes per payload byte",
        unit: Unit::PerPayloadByte,
        plot: Some("disk size"),
    },
];

/// What one store measured.
#[derive(Clone, Debug, Default)]
pub struct StoreResult {
    /// Its name.
    pub name: &'static str,
    /// Metric key → value.
    pub values: BTreeMap<&'static str, f64>,
    /// Phases that failed, with why.
    pub errors: Vec<String>,
}

/// The device's bound for a metric, if it has one.
pub fn limit(metric: &str, device: &Device) -> Option<f64> {
    let fsync_s = device.fsync_p50_ns as f64 / 1e9;
    let by_bandwidth = device.write_bytes_per_s / PAYLOAD_BYTES_F64;
    // Each producer waits for its own commit: at best every fsync commits all of them.
    let by_fsync = PRODUCERS as f64 / fsync_s.max(1e-9);
    match metric {
        "durable" | "group" => Some(by_fsync.min(by_bandwidth)),
        "receipts" => Some(by_fsync),
        "buffered" | "fill" => Some(by_bandwidth),
        "durable_p99" => Some(device.fsync_p50_ns as f64),
        "wa_durable" | "wa_fill" | "size" => Some(1.0),
        _ => None,
    }
}

fn unit_of(metric: &str) -> Unit {
    METRICS
        .iter()
        .find(|m| m.key == metric)
        .map_or(Unit::Rate, |m| m.unit)
}

/// How many times better `ours` is than `theirs` (> 1: ours is ahead).
pub fn advantage(metric: &str, ours: f64, theirs: f64) -> f64 {
    match unit_of(metric) {
        Unit::Rate => ours / theirs.max(f64::MIN_POSITIVE),
        _ => theirs / ours.max(f64::MIN_POSITIVE),
    }
}

/// A value for a table cell.
pub fn format(unit: Unit, value: f64) -> String {
    match unit {
        Unit::Rate => fmt_rate(value),
        Unit::Nanos if value >= 1e6 => format!("{:.2} ms", value / 1e6),
        Unit::Nanos => format!("{:.0} µs", value / 1e3),
        Unit::Seconds if value < 0.1 => format!("{:.1} ms", value * 1e3),
        Unit::Seconds => format!("{value:.2} s"),
        Unit::PerPayloadByte => format!("{value:.2}"),
    }
}

fn ratio(x: f64) -> String {
    if x >= 10.0 {
        format!("{x:.0}×")
    } else {
        format!("{x:.1}×")
    }
}

/// The results table: one row per metric; each peer's cell carries how many times better
/// Missive is; the last columns give the device's bound and Missive's share of it.
pub fn table(results: &[StoreResult], device: &Device) -> String {
    let missive = results.iter().find(|r| r.name == "Missive");
    let mut out = String::from("| workload |");
    for r in results {
        out.push_str(&format!(" {} |", r.name));
    }
    out.push_str(" device limit | Missive ÷ limit |\n|---|");
    for _ in results {
        out.push_str("---|");
    }
    out.push_str("---|---|\n");
    for metric in METRICS {
        out.push_str(&format!("| {} |", metric.label));
        let ours = missive.and_then(|m| m.values.get(metric.key)).copied();
        for r in results {
            let cell = match r.values.get(metric.key) {
                None => "—".to_string(),
                Some(&v) => match ours {
                    Some(ours) if r.name != "Missive" => format!(
                        "{} ({})",
                        format(metric.unit, v),
                        ratio(advantage(metric.key, ours, v))
                    ),
                    _ => format(metric.unit, v),
                },
            };
            out.push_str(&format!(" {cell} |"));
        }
        match (limit(metric.key, device), ours) {
            (Some(bound), Some(ours)) => {
                let share = match metric.unit {
                    Unit::Rate => ours / bound,
                    _ => bound / ours.max(f64::MIN_POSITIVE),
                };
                out.push_str(&format!(
                    " {} | {:.0}% |\n",
                    format(metric.unit, bound),
                    share * 100.0
                ));
            }
            (Some(bound), None) => {
                out.push_str(&format!(" {} | — |\n", format(metric.unit, bound)))
            }
            _ => out.push_str(" — | — |\n"),
        }
    }
    out
}

/// Replaces what lies between the markers of `path` with `section` (appending the markers at
/// the end first if they are absent). Nothing else of the file changes.
pub fn write_section(path: &Path, section: &str) -> Result<()> {
    let mut text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    if !(text.contains(BEGIN) && text.contains(END)) {
        if !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(&format!("\n{BEGIN}\n{END}\n"));
    }
    let start = text.find(BEGIN).expect("present") + BEGIN.len();
    let end = text[start..]
        .find(END)
        .context("the end marker comes before the begin marker")?
        + start;
    let mut out = String::with_capacity(text.len() + section.len());
    out.push_str(&text[..start]);
    out.push('\n');
    out.push_str(section.trim_end());
    out.push('\n');
    out.push_str(&text[end..]);
    std::fs::write(path, out).with_context(|| format!("writing {}", path.display()))
}

/// Draws, per workload, each store's speed relative to the baseline (SQLite, or the first
/// store) on a log scale: higher is better for every bar (times and sizes are inverted).
pub fn plot(path: &Path, results: &[StoreResult], title: &str) -> Result<()> {
    use plotters::prelude::*;

    let baseline = results
        .iter()
        .find(|r| r.name == "SQLite")
        .or_else(|| results.first())
        .context("no results to plot")?;
    let metrics: Vec<&Metric> = METRICS
        .iter()
        .filter(|m| m.plot.is_some() && baseline.values.contains_key(m.key))
        .collect();
    let mut bars: Vec<(usize, usize, f64)> = Vec::new();
    for (x, metric) in metrics.iter().enumerate() {
        let base = baseline.values[metric.key];
        for (s, r) in results.iter().enumerate() {
            if let Some(&v) = r.values.get(metric.key) {
                bars.push((x, s, advantage(metric.key, v, base)));
            }
        }
    }
    let (lo, hi) = bars
        .iter()
        .fold((1.0f64, 1.0f64), |(lo, hi), b| (lo.min(b.2), hi.max(b.2)));
    let (lo, hi) = (lo.max(1e-4) / 2.0, hi * 2.0);
    let width = 120 + 110 * metrics.len() as u32;
    let root = SVGBackend::new(path, (width.max(800), 520)).into_drawing_area();
    root.fill(&WHITE)?;
    let labels: Vec<&str> = metrics.iter().map(|m| m.plot.unwrap_or(m.key)).collect();
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..metrics.len() as f64, (lo..hi).log_scale())?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(metrics.len() * 2 + 1)
        .x_label_formatter(&|x| {
            let i = (x - 0.5).round();
            if (x - 0.5 - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < labels.len() {
                labels[i as usize].to_string()
            } else {
                String::new()
            }
        })
        .y_desc(format!(
            "speed relative to {} (×, log scale)",
            baseline.name
        ))
        .y_label_formatter(&|y| format!("{y}×"))
        .draw()?;
    let n = results.len().max(1) as f64;
    let bar_width = 0.8 / n;
    for (s, r) in results.iter().enumerate() {
        let color = Palette99::pick(s).to_rgba();
        chart
            .draw_series(bars.iter().filter(|b| b.1 == s).map(|&(x, _, v)| {
                let left = x as f64 + 0.1 + s as f64 * bar_width;
                Rectangle::new([(left, lo), (left + bar_width * 0.9, v)], color.filled())
            }))?
            .label(r.name)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled()));
    }
    chart.draw_series(std::iter::once(PathElement::new(
        vec![(0.0, 1.0), (metrics.len() as f64, 1.0)],
        BLACK.mix(0.4),
    )))?;
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .draw()?;
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn results() -> Vec<StoreResult> {
        let mut ours = StoreResult {
            name: "Missive",
            ..StoreResult::default()
        };
        let mut theirs = StoreResult {
            name: "SQLite",
            ..StoreResult::default()
        };
        ours.values.insert("durable", 40_000.0);
        theirs.values.insert("durable", 10_000.0);
        ours.values.insert("latest", 5_000.0);
        theirs.values.insert("latest", 50_000.0);
        vec![ours, theirs]
    }

    #[test]
    fn ratios_say_how_far_ahead_missive_is() {
        assert_eq!(advantage("durable", 40_000.0, 10_000.0), 4.0);
        assert_eq!(advantage("latest", 5_000.0, 50_000.0), 10.0);
        let device = Device {
            fsync_p50_ns: 1_000_000,
            fsync_p99_ns: 2_000_000,
            write_bytes_per_s: 256e6,
        };
        let table = table(&results(), &device);
        assert!(table.contains("| 1:1 appends, fsync per commit, 64 producers (msg/s) | 40.0k | 10.0k (4.0×) | 64.0k | 62% |"), "{table}");
        assert!(table.contains("50 µs (10×)"), "{table}");
    }

    #[test]
    fn the_section_replaces_only_what_is_between_the_markers() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("RESULTS.md");
        std::fs::write(&path, "# Results\n\nhand-written\n")?;
        write_section(&path, "first")?;
        assert_eq!(
            std::fs::read_to_string(&path)?,
            format!("# Results\n\nhand-written\n\n{BEGIN}\nfirst\n{END}\n")
        );
        write_section(&path, "second\n")?;
        std::fs::write(&path, std::fs::read_to_string(&path)? + "after\n")?;
        write_section(&path, "third")?;
        assert_eq!(
            std::fs::read_to_string(&path)?,
            format!("# Results\n\nhand-written\n\n{BEGIN}\nthird\n{END}\nafter\n")
        );
        plot(&dir.path().join("p.svg"), &results(), "test")?;
        assert!(std::fs::read_to_string(dir.path().join("p.svg"))?.contains("<svg"));
        Ok(())
    }
}
