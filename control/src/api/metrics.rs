//! /metrics in the Prometheus text format: requests by verb and code, request latency,
//! etcd reachability, and the controllers' syncs and queues.

use std::{collections::BTreeMap, fmt::Write as _, sync::Mutex, time::Duration};

use axum::{
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};

use super::AppState;

/// Latency bucket bounds in seconds.
const BUCKETS: [f64; 10] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0];

/// Counters of the API server.
#[derive(Debug, Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, u16), u64>>,
    latency: Mutex<(Vec<u64>, f64, u64)>,
}

impl Metrics {
    /// Record one request.
    pub fn observe(&self, verb: &str, code: u16, took: Duration) {
        if let Ok(mut requests) = self.requests.lock() {
            *requests.entry((verb.to_owned(), code)).or_default() += 1;
        }
        if let Ok(mut latency) = self.latency.lock() {
            let seconds = took.as_secs_f64();
            if latency.0.is_empty() {
                latency.0 = vec![0; BUCKETS.len()];
            }
            for (i, bound) in BUCKETS.iter().enumerate() {
                if seconds <= *bound {
                    latency.0[i] += 1;
                }
            }
            latency.1 += seconds;
            latency.2 += 1;
        }
    }
}

/// Render the metrics.
pub async fn render(state: &AppState) -> Response {
    let etcd_up = u8::from(state.store.check().await.is_ok());
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# HELP skiff_control_etcd_up 1 if etcd answered the last check."
    );
    let _ = writeln!(out, "# TYPE skiff_control_etcd_up gauge");
    let _ = writeln!(out, "skiff_control_etcd_up {etcd_up}");
    let _ = writeln!(
        out,
        "# HELP apiserver_request_total Requests by HTTP verb and response code."
    );
    let _ = writeln!(out, "# TYPE apiserver_request_total counter");
    if let Ok(requests) = state.metrics.requests.lock() {
        for ((verb, code), count) in requests.iter() {
            let _ = writeln!(
                out,
                "apiserver_request_total{{verb=\"{verb}\",code=\"{code}\"}} {count}"
            );
        }
    }
    let _ = writeln!(
        out,
        "# HELP apiserver_request_duration_seconds Request latency."
    );
    let _ = writeln!(out, "# TYPE apiserver_request_duration_seconds histogram");
    if let Ok(latency) = state.metrics.latency.lock() {
        for (i, bound) in BUCKETS.iter().enumerate() {
            let _ = writeln!(
                out,
                "apiserver_request_duration_seconds_bucket{{le=\"{bound}\"}} {}",
                latency.0.get(i).copied().unwrap_or(0)
            );
        }
        let _ = writeln!(
            out,
            "apiserver_request_duration_seconds_bucket{{le=\"+Inf\"}} {}",
            latency.2
        );
        let _ = writeln!(out, "apiserver_request_duration_seconds_sum {}", latency.1);
        let _ = writeln!(
            out,
            "apiserver_request_duration_seconds_count {}",
            latency.2
        );
    }
    crate::controllers::metrics::render(&mut out);
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        out,
    )
        .into_response()
}
