//! The EndpointSlice controller and the legacy Endpoints controller, driven by one set of
//! watches: Services with a selector get slices (discovery.k8s.io/v1, ≤ 100 endpoints
//! each, ready/serving/terminating conditions, nodeName, zone, hints) and an Endpoints
//! object listing the pods their selector picks. Services without a selector are left to
//! their users.
//!
//! Pod, Service, Node and slice changes mark Services dirty; a worker reconciles each dirty
//! Service from the watch caches and writes only what differs. Slices this controller wrote
//! are tracked until the watch shows them, so a reconcile never acts on a stale cache.

pub mod desired;
pub mod slices;

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
    time::Duration,
};

use k8s_openapi::api::{
    core::v1::{Endpoints, Node, Pod, Service},
    discovery::v1::EndpointSlice,
};
use kube::{
    Api, Client, ResourceExt,
    api::{DeleteParams, PostParams},
    runtime::{
        WatchStreamExt,
        reflector::{self, ObjectRef, Store},
        watcher,
    },
};
use tokio::sync::mpsc;
use tracing::{debug, warn};

use self::{
    desired::{PodEndpoint, ZONE_LABEL, legacy_subsets, pod_endpoint},
    slices::{MANAGED_BY, MANAGED_BY_LABEL, SERVICE_NAME_LABEL},
};
use super::drive::feed;

/// Errors that make a Service's reconcile retry.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An API call failed.
    #[error(transparent)]
    Kube(#[from] kube::Error),
    /// The slice cache does not show this controller's last writes yet.
    #[error("the EndpointSlice cache is behind this controller's writes")]
    Stale,
}

/// A dirty Service and when the change that dirtied it was seen.
type Dirty = (ObjectRef<Service>, jiff::Timestamp);

/// The watched state.
#[derive(Clone)]
struct Caches {
    services: Store<Service>,
    pods: Store<Pod>,
    slices: Store<EndpointSlice>,
    endpoints: Store<Endpoints>,
    nodes: Store<Node>,
}

/// Run both controllers until aborted.
pub async fn run(client: Client) {
    let (dirty_tx, mut dirty_rx) = mpsc::unbounded_channel::<Dirty>();
    let managed = watcher::Config::default().labels(&format!("{MANAGED_BY_LABEL}={MANAGED_BY}"));
    let (services, services_w) = reflector::store();
    let (pods, pods_w) = reflector::store();
    let (slices, slices_w) = reflector::store();
    let (endpoints, endpoints_w) = reflector::store();
    let (nodes, nodes_w) = reflector::store();
    let caches = Caches {
        services,
        pods,
        slices,
        endpoints,
        nodes,
    };
    let mut watches = tokio::task::JoinSet::new();
    {
        let tx = dirty_tx.clone();
        let stream = watcher(
            Api::<Service>::all(client.clone()),
            watcher::Config::default(),
        )
        .default_backoff()
        .reflect(services_w)
        .touched_objects();
        watches.spawn(feed("endpointslice", stream, move |svc: Service| {
            let _ = tx.send((ObjectRef::from_obj(&svc), jiff::Timestamp::now()));
        }));
    }
    {
        let tx = dirty_tx.clone();
        let caches = caches.clone();
        let stream = watcher(Api::<Pod>::all(client.clone()), watcher::Config::default())
            .default_backoff()
            .reflect(pods_w)
            .touched_objects();
        watches.spawn(feed("endpointslice", stream, move |pod: Pod| {
            for service in services_of_pod(&caches, &pod) {
                let _ = tx.send((service, jiff::Timestamp::now()));
            }
        }));
    }
    {
        let tx = dirty_tx.clone();
        let stream = watcher(Api::<EndpointSlice>::all(client.clone()), managed)
            .default_backoff()
            .reflect(slices_w)
            .touched_objects();
        watches.spawn(feed(
            "endpointslice",
            stream,
            move |slice: EndpointSlice| {
                if let (Some(name), Some(ns)) =
                    (slice.labels().get(SERVICE_NAME_LABEL), slice.namespace())
                {
                    let _ = tx.send((ObjectRef::new(name).within(&ns), jiff::Timestamp::now()));
                }
            },
        ));
    }
    {
        let tx = dirty_tx.clone();
        let stream = watcher(
            Api::<Endpoints>::all(client.clone()),
            watcher::Config::default(),
        )
        .default_backoff()
        .reflect(endpoints_w)
        .touched_objects();
        watches.spawn(feed("endpointslice", stream, move |ep: Endpoints| {
            if let Some(ns) = ep.namespace() {
                let _ = tx.send((
                    ObjectRef::new(&ep.name_any()).within(&ns),
                    jiff::Timestamp::now(),
                ));
            }
        }));
    }
    {
        // A node's zone label changes endpoints of every pod on it: resync everything.
        let tx = dirty_tx.clone();
        let services = caches.services.clone();
        let stream = watcher(Api::<Node>::all(client.clone()), watcher::Config::default())
            .default_backoff()
            .reflect(nodes_w)
            .applied_objects();
        let mut zones: HashMap<String, Option<String>> = HashMap::new();
        watches.spawn(feed("endpointslice", stream, move |node: Node| {
            let zone = node.labels().get(ZONE_LABEL).cloned();
            if zones
                .insert(node.name_any(), zone.clone())
                .is_some_and(|old| old != zone)
            {
                for svc in services.state() {
                    let _ = tx.send((ObjectRef::from_obj(svc.as_ref()), jiff::Timestamp::now()));
                }
            }
        }));
    }
    for ready in [
        caches.services.wait_until_ready().await,
        caches.pods.wait_until_ready().await,
        caches.slices.wait_until_ready().await,
        caches.endpoints.wait_until_ready().await,
        caches.nodes.wait_until_ready().await,
    ] {
        if ready.is_err() {
            warn!("endpoint controllers: a watch ended before its cache was ready");
            return;
        }
    }
    let worker = Worker {
        client,
        caches,
        written: HashMap::new(),
        requeue: dirty_tx,
    };
    worker.run(&mut dirty_rx).await;
}

/// Services a pod change concerns: those whose selector matches it now, and those whose
/// slices list it (it may have stopped matching or be gone).
fn services_of_pod(caches: &Caches, pod: &Pod) -> Vec<ObjectRef<Service>> {
    let namespace = pod.namespace().unwrap_or_default();
    let uid = pod.uid();
    let mut found: Vec<ObjectRef<Service>> = caches
        .services
        .state()
        .iter()
        .filter(|s| s.namespace().as_deref() == Some(namespace.as_str()))
        .filter(|s| selects(s, pod))
        .map(|s| ObjectRef::from_obj(s.as_ref()))
        .collect();
    for slice in caches.slices.state() {
        if slice.namespace().as_deref() != Some(namespace.as_str()) {
            continue;
        }
        let lists_pod = slice
            .endpoints
            .iter()
            .any(|e| e.target_ref.as_ref().and_then(|r| r.uid.as_ref()) == uid.as_ref());
        if lists_pod && let Some(name) = slice.labels().get(SERVICE_NAME_LABEL) {
            let service = ObjectRef::new(name).within(&namespace);
            if !found.contains(&service) {
                found.push(service);
            }
        }
    }
    found
}

/// Whether every `selector` label is on the object (a Service's map selector; an empty
/// selector selects nothing, as kube's endpoint controllers treat it).
fn labels_match(
    selector: &BTreeMap<String, String>,
    labels: Option<&BTreeMap<String, String>>,
) -> bool {
    !selector.is_empty()
        && selector
            .iter()
            .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
}

/// The Service's selector, if it manages endpoints (a selector, not ExternalName).
fn selector(service: &Service) -> Option<&BTreeMap<String, String>> {
    let spec = service.spec.as_ref()?;
    if spec.type_.as_deref() == Some("ExternalName") {
        return None;
    }
    spec.selector.as_ref()
}

fn selects(service: &Service, pod: &Pod) -> bool {
    selector(service).is_some_and(|sel| labels_match(sel, pod.metadata.labels.as_ref()))
}

struct Worker {
    client: Client,
    caches: Caches,
    /// Per Service: the slices this controller last wrote, with their resourceVersion
    /// (None: deleted), until the slice cache shows them.
    written: HashMap<ObjectRef<Service>, HashMap<String, Option<u64>>>,
    requeue: mpsc::UnboundedSender<Dirty>,
}

impl Worker {
    async fn run(mut self, dirty: &mut mpsc::UnboundedReceiver<Dirty>) {
        let mut batch: BTreeMap<String, Dirty> = BTreeMap::new();
        while let Some(first) = dirty.recv().await {
            batch.insert(first.0.to_string(), first);
            // Collect everything already queued: one reconcile per Service per batch.
            while let Ok(next) = dirty.try_recv() {
                batch
                    .entry(next.0.to_string())
                    .and_modify(|(_, seen)| *seen = (*seen).min(next.1))
                    .or_insert(next);
            }
            super::metrics::set_gauge("endpoint_controllers_queue_depth", batch.len() as i64);
            for (_, (service, seen)) in std::mem::take(&mut batch) {
                let result =
                    super::metrics::instrumented("endpointslice", self.reconcile(&service, seen))
                        .await;
                if let Err(e) = result {
                    if !matches!(e, Error::Stale) {
                        warn!(service = %service, error = %e, "endpoints sync failed; retrying");
                    }
                    let tx = self.requeue.clone();
                    let delay = if matches!(e, Error::Stale) { 50 } else { 1000 };
                    tokio::spawn(async move {
                        tokio::time::sleep(Duration::from_millis(delay)).await;
                        let _ = tx.send((service, seen));
                    });
                }
            }
            super::metrics::set_gauge("endpoint_controllers_queue_depth", 0);
        }
    }

    /// Whether the slice cache shows every write this controller made for `service`.
    fn cache_is_current(
        &mut self,
        service: &ObjectRef<Service>,
        current: &[Arc<EndpointSlice>],
    ) -> bool {
        let Some(expected) = self.written.get(service) else {
            return true;
        };
        let seen = |name: &str| {
            current
                .iter()
                .find(|s| s.metadata.name.as_deref() == Some(name))
                .and_then(|s| s.resource_version())
                .and_then(|rv| rv.parse::<u64>().ok())
        };
        let caught_up = expected.iter().all(|(name, version)| match version {
            Some(v) => seen(name).is_some_and(|s| s >= *v),
            None => seen(name).is_none(),
        });
        if caught_up {
            self.written.remove(service);
        }
        caught_up
    }

    /// Slices this controller wrote for `service` that the cache does not show may have
    /// been deleted by someone else since (the garbage collector, a user), be on their way
    /// out, or have been relabelled out of this controller's watch: the cache will never
    /// show those as written, so they are expected gone from now on. One GET (a
    /// linearizable read: a slice just written is found) per missing slice, only while the
    /// cache is behind.
    async fn forget_deleted(
        &mut self,
        service: &ObjectRef<Service>,
        api: &Api<EndpointSlice>,
        current: &[Arc<EndpointSlice>],
    ) -> Result<(), Error> {
        let Some(expected) = self.written.get_mut(service) else {
            return Ok(());
        };
        for (name, version) in expected.iter_mut() {
            let missing = version.is_some()
                && !current
                    .iter()
                    .any(|s| s.metadata.name.as_deref() == Some(name.as_str()));
            if !missing {
                continue;
            }
            let still_ours = api.get_opt(name).await?.is_some_and(|slice| {
                slice.metadata.deletion_timestamp.is_none()
                    && slice.labels().get(MANAGED_BY_LABEL).map(String::as_str) == Some(MANAGED_BY)
                    && slice.labels().get(SERVICE_NAME_LABEL) == Some(&service.name)
            });
            if !still_ours {
                *version = None;
            }
        }
        Ok(())
    }

    async fn reconcile(
        &mut self,
        service_ref: &ObjectRef<Service>,
        seen: jiff::Timestamp,
    ) -> Result<(), Error> {
        let Some(service) = self.caches.services.get(service_ref) else {
            // Deleted: the garbage collector removes its slices (they are owned); the
            // Endpoints this controller wrote go here, as kube's endpoints controller does.
            self.written.remove(service_ref);
            return self.delete_orphaned_endpoints(service_ref).await;
        };
        let Some(selector) = selector(&service).cloned() else {
            return Ok(());
        };
        let namespace = service.namespace().unwrap_or_default();
        let zones: BTreeMap<String, String> = self
            .caches
            .nodes
            .state()
            .iter()
            .filter_map(|n| Some((n.name_any(), n.labels().get(ZONE_LABEL)?.clone())))
            .collect();
        let pods: Vec<Arc<Pod>> = self
            .caches
            .pods
            .state()
            .into_iter()
            .filter(|p| p.namespace().as_deref() == Some(namespace.as_str()))
            .filter(|p| labels_match(&selector, p.metadata.labels.as_ref()))
            .collect();
        let mut for_slices: Vec<PodEndpoint> = pods
            .iter()
            .filter_map(|p| pod_endpoint(&service, p, &zones, true))
            .collect();
        for_slices.sort_by(|a, b| {
            a.endpoint
                .target_ref
                .as_ref()
                .and_then(|r| r.name.clone())
                .cmp(&b.endpoint.target_ref.as_ref().and_then(|r| r.name.clone()))
        });
        let publish_not_ready = service
            .spec
            .as_ref()
            .and_then(|s| s.publish_not_ready_addresses)
            == Some(true);
        let for_legacy: Vec<PodEndpoint> = pods
            .iter()
            .filter_map(|p| pod_endpoint(&service, p, &zones, publish_not_ready))
            .collect();
        // RFC 3339 with nanoseconds, as kube writes it.
        let trigger = seen.to_string();
        self.sync_slices(service_ref, &service, &for_slices, &trigger)
            .await?;
        self.sync_endpoints(&service, &for_legacy, &trigger).await
    }

    async fn sync_slices(
        &mut self,
        service_ref: &ObjectRef<Service>,
        service: &Service,
        desired: &[PodEndpoint],
        trigger: &str,
    ) -> Result<(), Error> {
        let namespace = service.namespace().unwrap_or_default();
        let name = service.name_any();
        let current: Vec<Arc<EndpointSlice>> = self
            .caches
            .slices
            .state()
            .into_iter()
            .filter(|s| s.namespace().as_deref() == Some(namespace.as_str()))
            .filter(|s| s.labels().get(SERVICE_NAME_LABEL) == Some(&name))
            // Slices being deleted (a finalizer holds them) are as good as gone, as kube's
            // controller has them (dropEndpointSlicesPendingDeletion).
            .filter(|s| s.metadata.deletion_timestamp.is_none())
            .collect();
        let api: Api<EndpointSlice> = Api::namespaced(self.client.clone(), &namespace);
        if !self.cache_is_current(service_ref, &current) {
            self.forget_deleted(service_ref, &api, &current).await?;
            if !self.cache_is_current(service_ref, &current) {
                return Err(Error::Stale);
            }
        }
        let existing: Vec<EndpointSlice> = current.iter().map(|s| (**s).clone()).collect();
        let plan = slices::plan(service, &existing, desired, trigger);
        if plan.is_empty() {
            return Ok(());
        }
        let mut written = HashMap::new();
        let version =
            |s: &EndpointSlice| s.resource_version().and_then(|rv| rv.parse::<u64>().ok());
        for slice in &plan.update {
            let stored = api
                .replace(&slice.name_any(), &PostParams::default(), slice)
                .await?;
            written.insert(stored.name_any(), version(&stored));
        }
        for slice in &plan.create {
            let stored = api.create(&PostParams::default(), slice).await?;
            written.insert(stored.name_any(), version(&stored));
        }
        for gone in &plan.delete {
            match api.delete(gone, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(status)) if status.code == 404 => {}
                Err(e) => return Err(e.into()),
            }
            written.insert(gone.clone(), None);
        }
        debug!(
            service = %service_ref,
            created = plan.create.len(),
            updated = plan.update.len(),
            deleted = plan.delete.len(),
            "endpoint slices written"
        );
        self.written.insert(service_ref.clone(), written);
        Ok(())
    }

    async fn delete_orphaned_endpoints(
        &self,
        service_ref: &ObjectRef<Service>,
    ) -> Result<(), Error> {
        let Some(namespace) = service_ref.namespace.as_deref() else {
            return Ok(());
        };
        let ours = self
            .caches
            .endpoints
            .get(&ObjectRef::new(&service_ref.name).within(namespace))
            .is_some_and(|e| {
                e.annotations()
                    .contains_key(slices::TRIGGER_TIME_ANNOTATION)
            });
        if !ours {
            return Ok(());
        }
        let api: Api<Endpoints> = Api::namespaced(self.client.clone(), namespace);
        match api
            .delete(&service_ref.name, &DeleteParams::default())
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    async fn sync_endpoints(
        &mut self,
        service: &Service,
        desired: &[PodEndpoint],
        trigger: &str,
    ) -> Result<(), Error> {
        let namespace = service.namespace().unwrap_or_default();
        let name = service.name_any();
        let subsets = legacy_subsets(desired);
        let mut labels = service.labels().clone();
        if service.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()) == Some("None") {
            labels.insert("service.kubernetes.io/headless".to_owned(), String::new());
        }
        let current = self
            .caches
            .endpoints
            .get(&ObjectRef::new(&name).within(&namespace));
        let api: Api<Endpoints> = Api::namespaced(self.client.clone(), &namespace);
        let subsets_field = Some(subsets).filter(|s| !s.is_empty());
        match current {
            Some(current) => {
                if current.subsets == subsets_field
                    && current.metadata.labels.as_ref().unwrap_or(&BTreeMap::new()) == &labels
                {
                    return Ok(());
                }
                let mut updated = (*current).clone();
                updated.subsets = subsets_field;
                updated.metadata.labels = Some(labels);
                updated
                    .metadata
                    .annotations
                    .get_or_insert_with(BTreeMap::new)
                    .insert(
                        slices::TRIGGER_TIME_ANNOTATION.to_owned(),
                        trigger.to_owned(),
                    );
                api.replace(&name, &PostParams::default(), &updated).await?;
            }
            None => {
                let endpoints = Endpoints {
                    metadata: kube::api::ObjectMeta {
                        name: Some(name.clone()),
                        namespace: Some(namespace.clone()),
                        labels: Some(labels),
                        annotations: Some(BTreeMap::from([(
                            slices::TRIGGER_TIME_ANNOTATION.to_owned(),
                            trigger.to_owned(),
                        )])),
                        ..Default::default()
                    },
                    subsets: subsets_field,
                };
                match api.create(&PostParams::default(), &endpoints).await {
                    Ok(_) => {}
                    // Created meanwhile: the watch brings it and the next sync compares.
                    Err(kube::Error::Api(status)) if status.code == 409 => {
                        return Err(Error::Stale);
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Ok(())
    }
}
