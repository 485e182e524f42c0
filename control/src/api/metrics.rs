//! /metrics in the Prometheus text format.

use std::{
    fmt::Write as _,
    sync::atomic::{AtomicU64, Ordering},
};

use axum::{extract::State, http::header, response::IntoResponse};

use super::AppState;

/// Counters of the API server.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Scrapes of /metrics.
    pub scrapes: AtomicU64,
}

/// Render the metrics.
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let scrapes = state.metrics.scrapes.fetch_add(1, Ordering::Relaxed) + 1;
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
        "# HELP skiff_control_metrics_scrapes_total Scrapes of /metrics."
    );
    let _ = writeln!(out, "# TYPE skiff_control_metrics_scrapes_total counter");
    let _ = writeln!(out, "skiff_control_metrics_scrapes_total {scrapes}");
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out)
}
