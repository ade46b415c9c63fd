//! Percentiles and medians: exact, from every sample (a run records at most a few million).

use std::time::Duration;

/// A latency distribution summarised, in nanoseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Latency {
    /// Samples.
    pub count: usize,
    /// Median.
    pub p50_ns: u64,
    /// 99th percentile.
    pub p99_ns: u64,
    /// Largest sample.
    pub max_ns: u64,
    /// Arithmetic mean.
    pub mean_ns: f64,
}

impl Latency {
    /// Summarises `samples` (sorting them in place). Empty input gives all zeros.
    pub fn from_samples(samples: &mut [u64]) -> Latency {
        if samples.is_empty() {
            return Latency::default();
        }
        samples.sort_unstable();
        let sum: u128 = samples.iter().map(|&s| u128::from(s)).sum();
        Latency {
            count: samples.len(),
            p50_ns: percentile(samples, 0.50),
            p99_ns: percentile(samples, 0.99),
            max_ns: *samples.last().expect("not empty"),
            mean_ns: sum as f64 / samples.len() as f64,
        }
    }
}

/// The nearest-rank `q`-quantile (0 < q ≤ 1) of sorted samples; 0 for none.
pub fn percentile(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The median of `values` (the mean of the middle two for an even count); 0 for none.
pub fn median(values: &[f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    if sorted.len() % 2 == 1 {
        sorted[mid]
    } else {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    }
}

/// Nanoseconds in a duration, saturating.
pub fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

/// Formats nanoseconds as milliseconds with two decimals (`3.81 ms`) or microseconds below 1 ms.
pub fn fmt_ns(ns: u64) -> String {
    if ns >= 1_000_000 {
        format!("{:.2} ms", ns as f64 / 1e6)
    } else {
        format!("{:.0} µs", ns as f64 / 1e3)
    }
}

/// Formats a rate with a k/M suffix (`212.4k`).
pub fn fmt_rate(per_second: f64) -> String {
    if per_second >= 1e6 {
        format!("{:.2}M", per_second / 1e6)
    } else if per_second >= 1e3 {
        format!("{:.1}k", per_second / 1e3)
    } else {
        format!("{per_second:.0}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let mut samples: Vec<u64> = (1..=100).rev().collect();
        let latency = Latency::from_samples(&mut samples);
        assert_eq!(latency.count, 100);
        assert_eq!(latency.p50_ns, 50);
        assert_eq!(latency.p99_ns, 99);
        assert_eq!(latency.max_ns, 100);
        assert!((latency.mean_ns - 50.5).abs() < 1e-9);
        assert_eq!(percentile(&[7], 0.99), 7);
        assert_eq!(Latency::from_samples(&mut []), Latency::default());
    }

    #[test]
    fn medians_and_formats() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(median(&[]), 0.0);
        assert_eq!(fmt_ns(3_810_000), "3.81 ms");
        assert_eq!(fmt_ns(45_400), "45 µs");
        assert_eq!(fmt_rate(1_234_567.0), "1.23M");
        assert_eq!(fmt_rate(212_400.0), "212.4k");
        assert_eq!(fmt_rate(260.2), "260");
    }
}
