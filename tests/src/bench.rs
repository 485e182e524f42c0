//! Measuring helpers for `skiff-bench`: latency histograms, the result rows the report is
//! made of, and the machine's CPU time.

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;

/// A latency recorder (microsecond resolution, up to 60 s).
pub struct Latency {
    histogram: Histogram<u64>,
    errors: u64,
}

impl Default for Latency {
    fn default() -> Self {
        Self::new()
    }
}

impl Latency {
    /// An empty recorder.
    pub fn new() -> Self {
        Self {
            histogram: Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds"),
            errors: 0,
        }
    }

    /// Record one sample.
    pub fn record(&mut self, took: Duration) {
        let micros = u64::try_from(took.as_micros())
            .unwrap_or(u64::MAX)
            .clamp(1, 60_000_000);
        let _ = self.histogram.record(micros);
    }

    /// Record a failed operation.
    pub fn error(&mut self) {
        self.errors += 1;
    }

    /// Merge another recorder.
    pub fn merge(&mut self, other: &Latency) {
        let _ = self.histogram.add(&other.histogram);
        self.errors += other.errors;
    }

    /// The result row, with throughput over `elapsed`.
    pub fn row(&self, name: &str, elapsed: Duration) -> Row {
        let ms = |q: f64| self.histogram.value_at_quantile(q) as f64 / 1000.0;
        let count = self.histogram.len();
        Row {
            name: name.to_owned(),
            count,
            errors: self.errors,
            p50_ms: ms(0.5),
            p90_ms: ms(0.9),
            p99_ms: ms(0.99),
            p999_ms: ms(0.999),
            max_ms: self.histogram.max() as f64 / 1000.0,
            per_second: if elapsed.is_zero() {
                0.0
            } else {
                count as f64 / elapsed.as_secs_f64()
            },
        }
    }
}

/// One measured operation.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// What was measured.
    pub name: String,
    /// Samples.
    pub count: u64,
    /// Failed operations.
    pub errors: u64,
    /// Median latency.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// 99.9th percentile.
    pub p999_ms: f64,
    /// Worst.
    pub max_ms: f64,
    /// Operations per second over the phase.
    pub per_second: f64,
}

/// Busy and total CPU time of the machine so far, in clock ticks (`/proc/stat`).
pub fn cpu_ticks() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let fields: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    let total: u64 = fields.iter().sum();
    let idle = fields.get(3).copied().unwrap_or(0) + fields.get(4).copied().unwrap_or(0);
    (total.saturating_sub(idle), total)
}

/// Wait until the machine is quiet — less than `busy` (a fraction) of its CPU in use over
/// half a second — or `limit` has passed; how long that took. What a run leaves behind
/// (the kernel tearing down network namespaces, containerd collecting snapshots) would
/// otherwise be charged to the next measurement.
pub async fn settle(busy: f64, limit: Duration) -> Duration {
    let started = Instant::now();
    while started.elapsed() < limit {
        let (busy_before, total_before) = cpu_ticks();
        tokio::time::sleep(Duration::from_millis(500)).await;
        let (busy_after, total_after) = cpu_ticks();
        let total = total_after.saturating_sub(total_before).max(1) as f64;
        if (busy_after.saturating_sub(busy_before) as f64) / total < busy {
            break;
        }
    }
    started.elapsed()
}
