//! kube-proxy's health check node ports: for every `externalTrafficPolicy: Local`
//! LoadBalancer Service, an HTTP server on its `healthCheckNodePort` that answers 200 while
//! this node has a ready endpoint of it and 503 otherwise, so an outside load balancer sends
//! traffic only to nodes that can serve it locally.

use std::{
    collections::HashMap,
    net::{Ipv4Addr, SocketAddr},
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
};

use axum::{Router, extract::State, http::StatusCode, response::IntoResponse};
use tokio::task::JoinHandle;
use tracing::{info, warn};

use super::desired::HealthCheck;
use crate::discovery::view::ServiceRef;

struct Server {
    port: u16,
    local_endpoints: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

struct Answer {
    service: ServiceRef,
    local_endpoints: Arc<AtomicUsize>,
}

/// The health check servers of this node, one per Service.
pub struct HealthChecks {
    address: Ipv4Addr,
    servers: HashMap<ServiceRef, Server>,
}

async fn answer_request(State(answer): State<Arc<Answer>>) -> impl IntoResponse {
    let count = answer.local_endpoints.load(Ordering::Relaxed);
    let body = serde_json::json!({
        "service": {"namespace": answer.service.namespace, "name": answer.service.name},
        "localEndpoints": count,
        "serviceProxyHealthy": true,
    })
    .to_string();
    let status = if count > 0 {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body,
    )
}

impl HealthChecks {
    /// Servers will listen on `address` (the node's address).
    pub fn new(address: Ipv4Addr) -> Self {
        Self {
            address,
            servers: HashMap::new(),
        }
    }

    /// Serve (or stop serving) the health check of `service`.
    pub fn set(&mut self, service: &ServiceRef, check: Option<HealthCheck>) {
        let current = self.servers.get(service).map(|s| s.port);
        match (current, check) {
            (Some(port), Some(check)) if port == check.port => {
                if let Some(server) = self.servers.get(service) {
                    server
                        .local_endpoints
                        .store(check.local_endpoints, Ordering::Relaxed);
                }
            }
            (_, None) => {
                if let Some(server) = self.servers.remove(service) {
                    server.task.abort();
                    info!(%service, port = server.port, "health check node port closed");
                }
            }
            (_, Some(check)) => {
                if let Some(server) = self.servers.remove(service) {
                    server.task.abort();
                }
                let local_endpoints = Arc::new(AtomicUsize::new(check.local_endpoints));
                let answer = Arc::new(Answer {
                    service: service.clone(),
                    local_endpoints: local_endpoints.clone(),
                });
                let listen = SocketAddr::from((self.address, check.port));
                let owner = service.clone();
                let task = tokio::spawn(async move {
                    let listener = match tokio::net::TcpListener::bind(listen).await {
                        Ok(l) => l,
                        Err(e) => {
                            warn!(service = %owner, %listen, error = %e, "cannot serve the health check node port");
                            return;
                        }
                    };
                    info!(service = %owner, %listen, "health check node port serving");
                    // kube-proxy answers on every path.
                    let app = Router::new().fallback(answer_request).with_state(answer);
                    let _ = axum::serve(listener, app).await;
                });
                self.servers.insert(
                    service.clone(),
                    Server {
                        port: check.port,
                        local_endpoints,
                        task,
                    },
                );
            }
        }
    }
}
