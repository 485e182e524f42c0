//! What a run measured, merged over threads and printed as one JSON object.

use std::{
    collections::{BTreeMap, BTreeSet},
    time::Duration,
};

use hdrhistogram::Histogram;
use serde_json::json;

use crate::Args;

/// The longest latency recorded (60 s), nanoseconds; longer ones count as this.
pub const LATENCY_MAX_NS: u64 = 60_000_000_000;

/// Nanoseconds as microseconds, to 0.001 µs.
fn micros(nanos: u64) -> f64 {
    nanos as f64 / 1000.0
}

/// Measurements of one thread, or of the whole run once merged.
pub struct Report {
    /// Successful requests.
    pub ok: u64,
    /// Failures by kind.
    pub errors: BTreeMap<String, u64>,
    /// Latency of successful requests, nanoseconds (3 significant digits: 0.1 % steps,
    /// fine enough to tell a path 1 % slower than another at any latency).
    pub latency: Histogram<u64>,
    /// Which backend answered, by name.
    pub backends: BTreeMap<String, u64>,
    /// Peer addresses the sockets reported (getpeername / recvfrom).
    pub peers: BTreeSet<String>,
    /// Payload bytes moved (stream).
    pub bytes: u64,
    /// Wall time of the run.
    pub elapsed: Duration,
    /// `wait`: when the first exchange succeeded (µs since the Unix epoch).
    pub succeeded_at: Option<u64>,
}

impl Report {
    /// An empty report.
    pub fn new() -> Self {
        Self {
            ok: 0,
            errors: BTreeMap::new(),
            // 1 ns to 60 s at 3 significant digits (constant, valid bounds).
            latency: Histogram::new_with_bounds(1, LATENCY_MAX_NS, 3)
                .expect("constant histogram bounds are valid"),
            backends: BTreeMap::new(),
            peers: BTreeSet::new(),
            bytes: 0,
            elapsed: Duration::ZERO,
            succeeded_at: None,
        }
    }

    /// Count a success that took `took`.
    pub fn success(&mut self, took: Duration) {
        self.ok += 1;
        let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX).max(1);
        let _ = self.latency.record(nanos.min(LATENCY_MAX_NS));
    }

    /// Count a failure.
    pub fn failure(&mut self, kind: String) {
        *self.errors.entry(kind).or_default() += 1;
    }

    /// Add another thread's report.
    pub fn merge(&mut self, other: Report) {
        self.ok += other.ok;
        for (kind, count) in other.errors {
            *self.errors.entry(kind).or_default() += count;
        }
        let _ = self.latency.add(&other.latency);
        for (name, count) in other.backends {
            *self.backends.entry(name).or_default() += count;
        }
        self.peers.extend(other.peers);
        self.bytes += other.bytes;
        self.succeeded_at = self.succeeded_at.or(other.succeeded_at);
    }

    /// The report as JSON.
    pub fn to_json(&self, args: &Args) -> serde_json::Value {
        let seconds = self.elapsed.as_secs_f64().max(1e-9);
        let failed: u64 = self.errors.values().sum();
        let quantile = |q: f64| micros(self.latency.value_at_quantile(q));
        json!({
            "mode": format!("{:?}", args.mode).to_lowercase(),
            "protocol": format!("{:?}", args.protocol).to_lowercase(),
            "target": args.target.to_string(),
            "and_targets": args.more_targets.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "reconnect_every": args.reconnect_every,
            "local_ports": args.local_ports.map(|p| format!("{}-{}", p.low, p.high)),
            "connections": args.connections,
            "ok": self.ok,
            "failed": failed,
            "errors": self.errors,
            "seconds": seconds,
            "per_second": self.ok as f64 / seconds,
            "latency_us": {
                "p50": quantile(0.50),
                "p90": quantile(0.90),
                "p99": quantile(0.99),
                "p999": quantile(0.999),
                "max": micros(self.latency.max()),
                "mean": self.latency.mean() / 1000.0,
            },
            // Every recorded value (its bucket's highest equivalent, ns) with its count:
            // runs measured apart can be pooled into one distribution.
            "histogram_ns": self
                .latency
                .iter_recorded()
                .map(|v| [v.value_iterated_to(), v.count_at_value()])
                .collect::<Vec<_>>(),
            "backends": self.backends,
            "peers": self.peers,
            "bytes": self.bytes,
            "bits_per_second": self.bytes as f64 * 8.0 / seconds,
            "succeeded_at_unix_us": self.succeeded_at,
        })
    }
}
