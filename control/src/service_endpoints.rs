//! Where a Service reference goes from the control plane: a ready endpoint of the
//! Service (the pod addresses of its EndpointSlices — the control plane routes pod CIDRs, as
//! kube-apiserver with `--enable-aggregator-routing` calls endpoints). Admission webhooks,
//! conversion webhooks and aggregated API servers are all reached this way.

use std::sync::Arc;

use serde_json::Value;
use thiserror::Error;

use crate::{
    resources,
    store::{Store, WatchCache, object_key},
};

/// Why a Service reference has no endpoint to call. The messages are kube-apiserver's.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EndpointError {
    /// The caches have not synced since start.
    #[error("the Service and EndpointSlice caches are not ready yet")]
    NotSynced,
    /// No such Service.
    #[error("service \"{0}\" not found")]
    ServiceNotFound(String),
    /// The Service has no such port.
    #[error("no service port {port} found for service \"{service}\"")]
    NoSuchPort {
        /// The Service.
        service: String,
        /// The port asked for.
        port: i32,
    },
    /// No ready endpoint serves the port.
    #[error("no endpoints available for service \"{0}\"")]
    NoEndpoints(String),
    /// A cached object could not be read.
    #[error("reading the cache: {0}")]
    Unreadable(String),
}

/// Resolves Service references through the Service and EndpointSlice watch caches.
pub struct ServiceEndpoints {
    store: Arc<Store>,
    services: Arc<WatchCache>,
    slices: Arc<WatchCache>,
}

impl ServiceEndpoints {
    /// A resolver reading `store`'s Service and EndpointSlice watch caches.
    pub fn new(store: &Arc<Store>) -> Self {
        Self {
            store: Arc::clone(store),
            services: resources::watch_cache(store, "", "v1", "services"),
            slices: resources::watch_cache(store, "discovery.k8s.io", "v1", "endpointslices"),
        }
    }

    /// Wait until both caches have seen `revision` (tests), at most `timeout`.
    pub async fn wait_for(&self, revision: i64, timeout: std::time::Duration) {
        for cache in [&self.services, &self.slices] {
            let _ = cache.wait_for(revision, timeout).await;
        }
    }

    /// Wait (at most 30 s) for the Service and EndpointSlice caches to sync after start.
    pub async fn synced(&self) {
        if self.services.synced() && self.slices.synced() {
            return;
        }
        if let Ok(revision) = self.store.current_revision().await {
            for cache in [&self.services, &self.slices] {
                let _ = cache
                    .wait_for(revision, std::time::Duration::from_secs(30))
                    .await;
            }
        }
    }

    /// A ready endpoint `ip:port` of Service `namespace/name`'s port `port`, chosen at
    /// random among the ready ones.
    pub fn resolve(&self, namespace: &str, name: &str, port: i32) -> Result<String, EndpointError> {
        if !self.services.synced() || !self.slices.synced() {
            return Err(EndpointError::NotSynced);
        }
        let Some(cached) = self
            .services
            .get(&object_key("", "services", namespace, name))
        else {
            return Err(EndpointError::ServiceNotFound(name.to_owned()));
        };
        let service: Value = serde_json::from_slice(&cached.raw)
            .map_err(|e| EndpointError::Unreadable(e.to_string()))?;
        let port_name = service
            .pointer("/spec/ports")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .find(|p| p.get("port").and_then(Value::as_i64) == Some(i64::from(port)))
            .map(|p| {
                p.get("name")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned()
            })
            .ok_or_else(|| EndpointError::NoSuchPort {
                service: name.to_owned(),
                port,
            })?;
        let snapshot = self
            .slices
            .snapshot(&format!("{namespace}/"))
            .map_err(|e| EndpointError::Unreadable(e.to_string()))?;
        let mut candidates = Vec::new();
        for cached in &snapshot.objects {
            if cached
                .labels
                .get("kubernetes.io/service-name")
                .map(String::as_str)
                != Some(name)
            {
                continue;
            }
            let Ok(slice) = serde_json::from_slice::<Value>(&cached.raw) else {
                continue;
            };
            let Some(target_port) = slice
                .get("ports")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .find(|p| p.get("name").and_then(Value::as_str).unwrap_or_default() == port_name)
                .and_then(|p| p.get("port").and_then(Value::as_u64))
            else {
                continue;
            };
            for endpoint in slice
                .get("endpoints")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let ready = endpoint
                    .pointer("/conditions/ready")
                    .and_then(Value::as_bool)
                    .unwrap_or(true);
                let Some(ip) = endpoint
                    .pointer("/addresses/0")
                    .and_then(Value::as_str)
                    .filter(|_| ready)
                else {
                    continue;
                };
                candidates.push(if ip.contains(':') {
                    format!("[{ip}]:{target_port}")
                } else {
                    format!("{ip}:{target_port}")
                });
            }
        }
        if candidates.is_empty() {
            return Err(EndpointError::NoEndpoints(name.to_owned()));
        }
        Ok(candidates.swap_remove(fastrand::usize(..candidates.len())))
    }
}
