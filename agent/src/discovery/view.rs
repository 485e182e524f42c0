//! The node's view of Services and their EndpointSlices, fed by the discovery watches and
//! read by the datapath: slices indexed by their Service, and a set of Services that
//! changed since the reader last looked (so the datapath reprograms only those).

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    sync::{Arc, Mutex, RwLock},
};

use k8s_openapi::api::{core::v1::Service, discovery::v1::EndpointSlice};
use kube::{
    ResourceExt,
    runtime::reflector::{ObjectRef, Store},
};
use tokio::sync::Notify;

/// Label naming an EndpointSlice's Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// A Service by namespace and name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceRef {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
}

impl std::fmt::Display for ServiceRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// What changed since the last [`ServiceView::take_changes`].
#[derive(Debug, Default)]
pub struct Changes {
    /// Services whose object or slices changed.
    pub services: BTreeSet<ServiceRef>,
    /// Both initial lists are complete (set once, the first time).
    pub ready: bool,
}

#[derive(Default)]
struct Pending {
    services: BTreeSet<ServiceRef>,
    services_listed: bool,
    slices_listed: bool,
    ready_reported: bool,
}

/// Services and slices as the watches last saw them.
pub struct ServiceView {
    services: Store<Service>,
    slices: RwLock<HashMap<ServiceRef, BTreeMap<String, Arc<EndpointSlice>>>>,
    pending: Mutex<Pending>,
    notify: Notify,
}

impl ServiceView {
    /// A view over the Service store (slices are fed through [`ServiceView::apply_slice`]).
    pub fn new(services: Store<Service>) -> Arc<Self> {
        Arc::new(Self {
            services,
            slices: RwLock::new(HashMap::new()),
            pending: Mutex::new(Pending::default()),
            notify: Notify::new(),
        })
    }

    /// The Service, if it exists.
    pub fn service(&self, service: &ServiceRef) -> Option<Arc<Service>> {
        self.services
            .get(&ObjectRef::new(&service.name).within(&service.namespace))
    }

    /// Every Service.
    pub fn services(&self) -> Vec<Arc<Service>> {
        self.services.state()
    }

    /// The slices of a Service.
    pub fn slices(&self, service: &ServiceRef) -> Vec<Arc<EndpointSlice>> {
        self.slices
            .read()
            .ok()
            .and_then(|index| index.get(service).map(|s| s.values().cloned().collect()))
            .unwrap_or_default()
    }

    fn mark(&self, service: ServiceRef) {
        if let Ok(mut pending) = self.pending.lock() {
            pending.services.insert(service);
        }
        self.notify.notify_one();
    }

    /// A Service was created, changed or deleted.
    pub fn service_changed(&self, service: &Service) {
        self.mark(ServiceRef {
            namespace: service.namespace().unwrap_or_default(),
            name: service.name_any(),
        });
    }

    /// The Service `namespace/name` changed (known by name only, e.g. gone after a re-list).
    pub fn service_ref_changed(&self, namespace: &str, name: &str) {
        self.mark(ServiceRef {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        });
    }

    /// The Service's slice `slice` is now this (or gone, with `None`).
    pub fn apply_slice(&self, namespace: &str, name: &str, slice: Option<&EndpointSlice>) {
        let owner = slice.and_then(|s| s.labels().get(SERVICE_NAME_LABEL).cloned());
        let mut touched = Vec::new();
        if let Ok(mut index) = self.slices.write() {
            // The slice may have moved between Services (relabelled): drop it everywhere
            // in the namespace first.
            for (service, slices) in index.iter_mut() {
                if service.namespace == namespace && slices.remove(name).is_some() {
                    touched.push(service.clone());
                }
            }
            index.retain(|_, slices| !slices.is_empty());
            if let (Some(slice), Some(owner)) = (slice, owner) {
                let service = ServiceRef {
                    namespace: namespace.to_owned(),
                    name: owner,
                };
                index
                    .entry(service.clone())
                    .or_default()
                    .insert(name.to_owned(), Arc::new(slice.clone()));
                touched.push(service);
            }
        }
        for service in touched {
            self.mark(service);
        }
    }

    /// Forget every slice not in `keep` (after a re-list).
    pub fn retain_slices(&self, keep: &BTreeSet<(String, String)>) {
        let mut touched = Vec::new();
        if let Ok(mut index) = self.slices.write() {
            for (service, slices) in index.iter_mut() {
                let before = slices.len();
                slices.retain(|name, _| keep.contains(&(service.namespace.clone(), name.clone())));
                if slices.len() != before {
                    touched.push(service.clone());
                }
            }
            index.retain(|_, slices| !slices.is_empty());
        }
        for service in touched {
            self.mark(service);
        }
    }

    /// The Service list is complete.
    pub fn services_listed(&self) {
        if let Ok(mut pending) = self.pending.lock() {
            pending.services_listed = true;
        }
        self.notify.notify_one();
    }

    /// The slice list is complete.
    pub fn slices_listed(&self) {
        if let Ok(mut pending) = self.pending.lock() {
            pending.slices_listed = true;
        }
        self.notify.notify_one();
    }

    /// Wait until something changed, then take the changes.
    pub async fn take_changes(&self) -> Changes {
        loop {
            let notified = self.notify.notified();
            if let Some(changes) = self.try_take() {
                return changes;
            }
            notified.await;
        }
    }

    fn try_take(&self) -> Option<Changes> {
        let mut pending = self.pending.lock().ok()?;
        let ready_now = pending.services_listed && pending.slices_listed;
        let ready = ready_now && !pending.ready_reported;
        if !ready_now || (pending.services.is_empty() && !ready) {
            return None;
        }
        pending.ready_reported = true;
        Some(Changes {
            services: std::mem::take(&mut pending.services),
            ready,
        })
    }
}
