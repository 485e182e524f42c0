//! Measuring helpers for `skiff-bench`: latency histograms and the result rows the report
//! is made of.

use std::time::Duration;

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
