//! /healthz, /readyz (etcd reachable) and /livez (process alive).

use axum::{
    http::StatusCode,
    response::{IntoResponse, Response},
};

use super::AppState;

/// 200 "ok" when etcd answers, 503 naming the failure otherwise.
pub async fn healthz(state: &AppState) -> Response {
    match state.store.check().await {
        Ok(()) => (StatusCode::OK, "ok").into_response(),
        // Anyone may ask; the reason goes to the log, not to the caller (as kube).
        Err(e) => {
            tracing::warn!(error = %e, "health check: etcd failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "[-]etcd failed: reason withheld\nhealthz check failed",
            )
                .into_response()
        }
    }
}

/// 200 while the process serves requests.
pub fn livez() -> Response {
    (StatusCode::OK, "ok").into_response()
}
