//! What the coordinator hands its client processes (a JSON file) and what they report back (a
//! JSON line).

use std::net::SocketAddr;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// A registered user.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Account {
    /// As the server returned it.
    pub(crate) user_id: String,
    /// Its bearer token.
    pub(crate) token: String,
}

/// A group the coordinator created.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Group {
    /// Its chat.
    pub(crate) chat_id: String,
    /// Its members, as indices into [`Plan::users`].
    pub(crate) members: Vec<usize>,
}

/// Everything a client process needs.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Plan {
    /// The server.
    pub(crate) addr: SocketAddr,
    /// Marks this run's messages.
    pub(crate) nonce: String,
    /// Every user; process `i` of `k` connects `users[i*n/k..(i+1)*n/k]`.
    pub(crate) users: Vec<Account>,
    /// The groups.
    pub(crate) groups: Vec<Group>,
    /// Connect, hold for `hold_s`, send nothing.
    pub(crate) idle: bool,
    /// Seconds an idle run holds its connections.
    pub(crate) hold_s: f64,
    /// Messages per second, all processes together.
    pub(crate) rate: f64,
    /// Messages at most, all processes together.
    pub(crate) messages: u64,
    /// Seconds of sending at most.
    pub(crate) duration_s: f64,
    /// Share of messages sent to the sender's group (if it has one).
    pub(crate) group_share: f64,
    /// Loopback source addresses (127.0.0.2, …).
    pub(crate) source_ips: u32,
    /// Client processes.
    pub(crate) processes: usize,
    /// How often a connection acknowledges deliveries (`receipt` frames); 0: never.
    pub(crate) receipt_interval_ms: u64,
    /// WebSocket handshakes in flight per process.
    pub(crate) connect_concurrency: usize,
}

impl Plan {
    /// The users process `index` connects.
    pub(crate) fn share(&self, index: usize) -> std::ops::Range<usize> {
        let (n, k) = (self.users.len(), self.processes.max(1));
        (index * n / k)..((index + 1) * n / k)
    }

    /// Each user's group, if any.
    pub(crate) fn group_of(&self) -> Vec<Option<usize>> {
        let mut of = vec![None; self.users.len()];
        for (g, group) in self.groups.iter().enumerate() {
            for &m in &group.members {
                of[m] = Some(g);
            }
        }
        of
    }
}

/// What one client process measured.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct WorkerReport {
    /// Connections open.
    pub(crate) connections: u64,
    /// Connections that failed.
    pub(crate) connect_failed: u64,
    /// Messages written to a socket.
    pub(crate) sent: u64,
    /// Messages not sent because their connection's outbox was full.
    pub(crate) dropped: u64,
    /// Messages acknowledged.
    pub(crate) acked: u64,
    /// Deliveries the acknowledged messages should cause.
    pub(crate) expected: u64,
    /// Error frames and unparsable frames.
    pub(crate) errors: u64,
    /// Messages of this run received.
    pub(crate) delivered: u64,
    /// Connections that ended before the run did.
    pub(crate) disconnects: u64,
    /// Seconds from `go` to the last send.
    pub(crate) send_elapsed_s: f64,
    /// Seconds from `go` to the end.
    pub(crate) elapsed_s: f64,
    /// Seconds from `go` to the last delivery.
    pub(crate) last_delivery_s: f64,
    /// End-to-end latency histogram, µs: (value, count) pairs.
    pub(crate) latency_us: Vec<(u64, u64)>,
    /// Send-to-ack latency, µs.
    pub(crate) ack_latency_us: Vec<(u64, u64)>,
    /// A few error texts.
    pub(crate) error_samples: Vec<String>,
}

/// A histogram of 1 µs to 10 min, 3 significant digits.
pub(crate) fn new_histogram() -> Histogram<u64> {
    // Invariant: these bounds are valid (low ≥ 1, high ≥ 2 × low, sigfig ≤ 5).
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds")
}

/// A histogram's recorded values as (value, count) pairs.
pub(crate) fn counts(histogram: &Histogram<u64>) -> Vec<(u64, u64)> {
    histogram
        .iter_recorded()
        .map(|v| (v.value_iterated_to(), v.count_at_value()))
        .collect()
}

/// Adds (value, count) pairs to a histogram.
pub(crate) fn absorb(histogram: &mut Histogram<u64>, counts: &[(u64, u64)]) {
    for &(value, count) in counts {
        // Values came from a histogram with the same bounds; saturate rather than fail.
        histogram.saturating_record_n(value, count);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_cover_every_user_once_and_histograms_round_trip() {
        let plan = Plan {
            addr: "127.0.0.1:1".parse().unwrap(),
            nonce: "n".into(),
            users: (0..10)
                .map(|i| Account {
                    user_id: i.to_string(),
                    token: String::new(),
                })
                .collect(),
            groups: vec![Group {
                chat_id: "g".into(),
                members: vec![1, 4],
            }],
            idle: false,
            hold_s: 0.0,
            rate: 1.0,
            messages: 1,
            duration_s: 1.0,
            group_share: 0.5,
            source_ips: 2,
            processes: 3,
            receipt_interval_ms: 0,
            connect_concurrency: 1,
        };
        let shares: Vec<_> = (0..3).flat_map(|i| plan.share(i)).collect();
        assert_eq!(shares, (0..10).collect::<Vec<_>>());
        assert_eq!(plan.group_of()[4], Some(0));
        assert_eq!(plan.group_of()[5], None);
        let mut h = new_histogram();
        h.record(150).unwrap();
        h.record_n(20_000, 3).unwrap();
        let mut copy = new_histogram();
        absorb(&mut copy, &counts(&h));
        assert_eq!(copy.len(), 4);
        assert_eq!(copy.value_at_quantile(0.5), h.value_at_quantile(0.5));
    }
}
