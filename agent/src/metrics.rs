//! The agent's Prometheus metrics: lock-free counters, rendered in text format on /metrics.

use std::{
    fmt::Write as _,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

/// Counters and gauges the agent exposes.
#[derive(Default)]
pub struct Metrics {
    /// 1 once the socket LB is attached to the node's cgroup.
    pub socket_lb_attached: AtomicU64,
    /// HTTP requests served by the node API.
    pub http_requests: AtomicU64,
    /// The datapath's programming, fill and decision metrics.
    pub datapath: Arc<crate::datapath::stats::DatapathMetrics>,
    /// The node-local DNS resolver's counters.
    pub dns: Arc<skiff_dns::Metrics>,
    /// Pod start steps (kubelet).
    pub pod_start: Arc<crate::kubelet::timing::PodStartMetrics>,
}

/// Upper bounds (seconds) of the latency histogram buckets.
const LATENCY_BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// A lock-free Prometheus histogram of durations.
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    /// Record one observation.
    pub fn observe(&self, value: Duration) {
        let seconds = value.as_secs_f64();
        for (bound, bucket) in LATENCY_BUCKETS.iter().zip(&self.buckets) {
            if seconds <= *bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add(
            u64::try_from(value.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    /// Append the histogram as `name` (with HELP `help`).
    pub fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} histogram");
        self.render_series(out, name, "");
    }

    /// Append the series of this histogram with `labels` (`key="value",…`, may be empty)
    /// under a family whose HELP and TYPE lines the caller wrote.
    pub fn render_series(&self, out: &mut String, name: &str, labels: &str) {
        let (braced, lead) = if labels.is_empty() {
            (String::new(), String::new())
        } else {
            (format!("{{{labels}}}"), format!("{labels},"))
        };
        for (bound, bucket) in LATENCY_BUCKETS.iter().zip(&self.buckets) {
            let _ = writeln!(
                out,
                "{name}_bucket{{{lead}le=\"{bound}\"}} {}",
                bucket.load(Ordering::Relaxed)
            );
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{lead}le=\"+Inf\"}} {count}");
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum{braced} {sum:.6}");
        let _ = writeln!(out, "{name}_count{braced} {count}");
    }
}

impl Metrics {
    /// Render every metric in the Prometheus text exposition format; the kernel's
    /// decision counters come from `state` when the datapath is loaded.
    pub fn render(&self, node: &str, state: Option<&crate::datapath::maps::StateMaps>) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP skiff_agent_info Static information about this agent."
        );
        let _ = writeln!(out, "# TYPE skiff_agent_info gauge");
        let _ = writeln!(
            out,
            "skiff_agent_info{{node=\"{}\",version=\"{}\"}} 1",
            escape(node),
            env!("CARGO_PKG_VERSION")
        );
        let _ = writeln!(
            out,
            "# HELP skiff_datapath_socket_lb_attached 1 if the socket load balancer is attached."
        );
        let _ = writeln!(out, "# TYPE skiff_datapath_socket_lb_attached gauge");
        let _ = writeln!(
            out,
            "skiff_datapath_socket_lb_attached {}",
            self.socket_lb_attached.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP skiff_agent_http_requests_total Requests served by the node HTTP API."
        );
        let _ = writeln!(out, "# TYPE skiff_agent_http_requests_total counter");
        let _ = writeln!(
            out,
            "skiff_agent_http_requests_total {}",
            self.http_requests.load(Ordering::Relaxed)
        );
        self.datapath.render(&mut out, state);
        self.dns.render(&mut out);
        self.pod_start.render(&mut out);
        crate::heap::render(&mut out);
        out
    }
}

/// Escape a label value (backslash, quote, newline).
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text_with_escaped_labels() {
        let metrics = Metrics::default();
        metrics.socket_lb_attached.store(1, Ordering::Relaxed);
        let text = metrics.render("node\"1", None);
        assert!(text.contains("skiff_agent_info{node=\"node\\\"1\""));
        assert!(text.contains("skiff_datapath_socket_lb_attached 1\n"));
        assert!(
            text.lines()
                .all(|l| l.starts_with('#') || l.split(' ').count() == 2)
        );
    }

    #[test]
    fn histograms_count_into_cumulative_buckets() {
        let h = Histogram::default();
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_millis(80));
        let mut out = String::new();
        h.render(&mut out, "x", "help");
        assert!(out.contains("x_bucket{le=\"0.005\"} 1\n"));
        assert!(out.contains("x_bucket{le=\"0.1\"} 2\n"));
        assert!(out.contains("x_bucket{le=\"+Inf\"} 2\n"));
        assert!(out.contains("x_count 2\n"));
    }
}
