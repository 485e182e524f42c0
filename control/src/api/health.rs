//! /healthz, /readyz (etcd reachable) and /livez (process alive).

use axum::{extract::State, http::StatusCode};

use super::AppState;

/// 200 "ok" when etcd answers, 503 naming the failure otherwise.
pub async fn healthz(State(state): State<AppState>) -> (StatusCode, String) {
    match state.store.check().await {
        Ok(()) => (StatusCode::OK, "ok".to_owned()),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("[-]etcd failed: {e}\nhealthz check failed"),
        ),
    }
}

/// 200 while the process serves requests.
pub async fn livez() -> &'static str {
    "ok"
}
