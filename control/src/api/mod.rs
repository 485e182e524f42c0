//! The HTTP surface of skiff-control.

mod health;
mod metrics;
mod version;

use std::sync::Arc;

use axum::{Router, routing::get};

use crate::store::Store;

pub use metrics::Metrics;

/// Shared state of every handler.
#[derive(Clone)]
pub struct AppState {
    /// The etcd store.
    pub store: Arc<Store>,
    /// Request counters.
    pub metrics: Arc<Metrics>,
}

impl AppState {
    /// State over `store` with fresh metrics.
    pub fn new(store: Arc<Store>) -> Self {
        Self {
            store,
            metrics: Arc::new(Metrics::default()),
        }
    }
}

/// Every route the server answers.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/livez", get(health::livez))
        .route("/readyz", get(health::healthz))
        .route("/version", get(version::version))
        .route("/metrics", get(metrics::metrics))
        .with_state(state)
}
