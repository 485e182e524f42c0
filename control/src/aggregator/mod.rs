//! API aggregation, as kube-aggregator does it: `apiregistration.k8s.io/v1` APIServices
//! say which group-versions are served here ("local": built-in kinds and CRDs) and which
//! by an extension API server behind a Service (metrics-server, prometheus-adapter, Skiff's
//! own tests' skiff-echo).
//!
//! Every replica follows the APIServices through a watch cache and
//! - proxies requests under `/apis/<group>/<version>` of a remote APIService to a ready
//!   endpoint of its Service ([`proxy`]), after authenticating and authorizing them as any
//!   other request, over TLS checked against the APIService's caBundle and presenting the
//!   front-proxy client certificate ([`front_proxy`]) with the user in `X-Remote-*`
//!   headers;
//! - merges the remote group-versions into discovery ([`discovery`]) from the resource
//!   lists it fetches from each available backend.
//!
//! The leader's [`availability`] controller registers the local APIServices and keeps
//! every APIService's `Available` condition. A remote APIService that is not available
//! answers 503 and is left out of discovery (kube lists it and lets clients fail on it).

mod apiservice;
pub mod availability;
mod client;
pub mod discovery;
pub mod front_proxy;
mod proxy;

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex, RwLock},
    time::Duration,
};

pub use apiservice::{ApiServiceView, Backend};
use axum::body::Body;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use rustls::ClientConfig;
use serde_json::Value;
use thiserror::Error;

use crate::{
    pki::Pem,
    resources,
    service_endpoints::{EndpointError, ServiceEndpoints},
    store::{Store, WatchCache, object_key},
};

/// The identity the aggregator's own calls (availability checks, discovery) act as.
pub const AGGREGATOR_USER: &str = "system:kube-aggregator";
/// The largest discovery document read from a backend.
const MAX_DISCOVERY: usize = 4 * 1024 * 1024;
/// How long an availability check or a discovery fetch may take (kube's 5 s).
const CHECK_TIMEOUT: Duration = Duration::from_secs(5);
/// How often every replica refreshes the backends' discovery documents.
const DISCOVERY_REFRESH: Duration = Duration::from_secs(10);

/// Why a backend could not be reached or did not answer as an API server.
#[derive(Debug, Clone, Error)]
pub enum BackendError {
    /// The Service reference does not resolve to a ready endpoint.
    #[error(transparent)]
    Endpoint(#[from] EndpointError),
    /// Connecting, TLS or HTTP failed.
    #[error("{0}")]
    Call(String),
    /// The backend answered with a status that is not success.
    #[error("bad status from {url}: {status}")]
    Status {
        /// What was called.
        url: String,
        /// The status it answered.
        status: u16,
    },
}

/// The aggregator state of one replica.
pub struct Aggregator {
    store: Arc<Store>,
    apiservices: Arc<WatchCache>,
    endpoints: ServiceEndpoints,
    /// The front-proxy client certificate presented to backends.
    identity: Pem,
    /// TLS configurations per backend (few APIServices exist).
    configs: Mutex<HashMap<Backend, Arc<ClientConfig>>>,
    /// The APIResourceList each available backend last answered, by APIService name.
    documents: RwLock<BTreeMap<String, Value>>,
}

impl std::fmt::Debug for Aggregator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Aggregator").finish_non_exhaustive()
    }
}

impl Aggregator {
    /// An aggregator over `store`'s APIServices, presenting `identity` to backends.
    pub fn new(store: &Arc<Store>, identity: Pem) -> Arc<Self> {
        Arc::new(Self {
            store: Arc::clone(store),
            apiservices: resources::watch_cache(
                store,
                "apiregistration.k8s.io",
                "v1",
                "apiservices",
            ),
            endpoints: ServiceEndpoints::new(store),
            identity,
            configs: Mutex::new(HashMap::new()),
            documents: RwLock::new(BTreeMap::new()),
        })
    }

    /// Bring this replica's served kinds up to etcd's current revision (CRDs established or
    /// removed elsewhere); true if they reflect it.
    pub async fn served_kinds_current(&self) -> bool {
        crate::crd::serve::catch_up(&self.store).await
    }

    /// The APIService of `group`/`version`, if one is registered.
    pub fn view(&self, group: &str, version: &str) -> Option<ApiServiceView> {
        let name = format!("{version}.{group}");
        let cached = self.apiservices.get(&object_key(
            "apiregistration.k8s.io",
            "apiservices",
            "",
            &name,
        ))?;
        let object: Value = serde_json::from_slice(&cached.raw).ok()?;
        ApiServiceView::from_object(&object)
    }

    /// Every registered APIService.
    pub fn views(&self) -> Vec<ApiServiceView> {
        let Ok(snapshot) = self.apiservices.snapshot("") else {
            return Vec::new();
        };
        snapshot
            .objects
            .iter()
            .filter_map(|cached| serde_json::from_slice::<Value>(&cached.raw).ok())
            .filter_map(|object| ApiServiceView::from_object(&object))
            .collect()
    }

    /// The remote APIService a request path (`/apis/<group>/<version>/…`) belongs to.
    pub fn remote_for_path(&self, path: &str) -> Option<ApiServiceView> {
        let mut segments = path.trim_start_matches('/').split('/');
        if segments.next() != Some("apis") {
            return None;
        }
        let (group, version) = (segments.next()?, segments.next()?);
        self.view(group, version).filter(|v| v.backend.is_some())
    }

    /// The discovery documents of the available backends, with their APIServices.
    pub fn documents(&self) -> Vec<(ApiServiceView, Value)> {
        let documents = self.documents.read().unwrap_or_else(|e| e.into_inner());
        self.views()
            .into_iter()
            .filter(|v| v.available && v.backend.is_some())
            .filter_map(|v| documents.get(&v.name).map(|d| (v, d.clone())))
            .collect()
    }

    fn tls(&self, backend: &Backend) -> Result<Arc<ClientConfig>, BackendError> {
        let mut configs = self.configs.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(config) = configs.get(backend) {
            return Ok(Arc::clone(config));
        }
        let config = client::tls_config(backend, &self.identity).map_err(BackendError::Call)?;
        // Backends come from objects users write: keep the map bounded.
        if configs.len() > 64 {
            configs.clear();
        }
        configs.insert(backend.clone(), Arc::clone(&config));
        Ok(config)
    }

    /// Send `request` to a ready endpoint of `backend`: the endpoint called and the
    /// streaming response.
    pub async fn send<B>(
        &self,
        backend: &Backend,
        request: hyper::Request<B>,
    ) -> Result<(String, hyper::Response<hyper::body::Incoming>), BackendError>
    where
        B: hyper::body::Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        self.endpoints.synced().await;
        let address = self
            .endpoints
            .resolve(&backend.namespace, &backend.name, backend.port)?;
        let config = self.tls(backend)?;
        let response = client::send(config, &address, &backend.server_name(), request)
            .await
            .map_err(BackendError::Call)?;
        Ok((address, response))
    }

    /// GET `/apis/<group>/<version>` from `view`'s backend as the aggregator itself: the
    /// backend's APIResourceList (`None` when it refused the aggregator with 401/403, which
    /// still proves it serves), within [`CHECK_TIMEOUT`].
    pub async fn check(&self, view: &ApiServiceView) -> Result<Option<Value>, BackendError> {
        let Some(backend) = &view.backend else {
            return Ok(None);
        };
        let path = format!("/apis/{}/{}", view.group, view.version);
        let request = hyper::Request::get(path.as_str())
            .header(hyper::header::HOST, backend.server_name())
            .header(hyper::header::ACCEPT, "application/json")
            .header(front_proxy::USER_HEADER, AGGREGATOR_USER)
            .header(front_proxy::GROUP_HEADER, "system:masters")
            .header(front_proxy::GROUP_HEADER, "system:authenticated")
            .body(Empty::<Bytes>::new())
            .map_err(|e| BackendError::Call(e.to_string()))?;
        let call = async {
            let (address, response) = self.send(backend, request).await?;
            let url = format!("https://{address}{path}");
            let status = response.status().as_u16();
            if status == 401 || status == 403 {
                return Ok(None);
            }
            if status != 200 {
                return Err(BackendError::Status { url, status });
            }
            let body = Limited::new(response.into_body(), MAX_DISCOVERY)
                .collect()
                .await
                .map_err(|e| BackendError::Call(format!("reading {url}: {e}")))?
                .to_bytes();
            serde_json::from_slice(&body)
                .map(Some)
                .map_err(|e| BackendError::Call(format!("decoding {url}: {e}")))
        };
        tokio::time::timeout(CHECK_TIMEOUT, call)
            .await
            .map_err(|_| BackendError::Call(format!("{path}: timed out after 5s")))?
    }

    /// Fetch the discovery documents of every available backend; forget the others'.
    pub async fn refresh_documents(&self) {
        let views: Vec<ApiServiceView> = self
            .views()
            .into_iter()
            .filter(|v| v.available && v.backend.is_some())
            .collect();
        let mut fresh = BTreeMap::new();
        for view in &views {
            match self.check(view).await {
                Ok(Some(document)) => {
                    fresh.insert(view.name.clone(), document);
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::debug!(apiservice = %view.name, error = %e, "discovery fetch failed");
                    // Keep the last good document while the condition says available.
                    let documents = self.documents.read().unwrap_or_else(|e| e.into_inner());
                    if let Some(old) = documents.get(&view.name) {
                        fresh.insert(view.name.clone(), old.clone());
                    }
                }
            }
        }
        *self.documents.write().unwrap_or_else(|e| e.into_inner()) = fresh;
    }

    /// Keep the discovery documents fresh: on every APIService change and every
    /// [`DISCOVERY_REFRESH`]. Runs until aborted.
    pub async fn run(self: Arc<Self>) {
        let mut revisions = self.apiservices.revisions();
        loop {
            self.refresh_documents().await;
            tokio::select! {
                changed = revisions.changed() => if changed.is_err() { return },
                () = tokio::time::sleep(DISCOVERY_REFRESH) => {}
            }
        }
    }

    /// Proxy `request` to `view`'s backend on behalf of `user`.
    pub async fn proxy(
        &self,
        view: &ApiServiceView,
        user: &crate::model::user::UserInfo,
        request: axum::extract::Request,
    ) -> axum::response::Response {
        proxy::forward(self, view, user, request.map(Body::new)).await
    }
}
