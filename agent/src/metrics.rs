//! The agent's Prometheus metrics: lock-free counters, rendered in text format on /metrics.

use std::{
    fmt::Write as _,
    sync::atomic::{AtomicU64, Ordering},
};

/// Counters and gauges the agent exposes.
#[derive(Debug, Default)]
pub struct Metrics {
    /// 1 once the socket LB is attached to the node's cgroup.
    pub socket_lb_attached: AtomicU64,
    /// HTTP requests served by the node API.
    pub http_requests: AtomicU64,
}

impl Metrics {
    /// Render every metric in the Prometheus text exposition format.
    pub fn render(&self, node: &str) -> String {
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
        let text = metrics.render("node\"1");
        assert!(text.contains("skiff_agent_info{node=\"node\\\"1\""));
        assert!(text.contains("skiff_datapath_socket_lb_attached 1\n"));
        assert!(
            text.lines()
                .all(|l| l.starts_with('#') || l.split(' ').count() == 2)
        );
    }
}
