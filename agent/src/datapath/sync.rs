//! The programming loop: Services and EndpointSlices from the node's [`ServiceView`] into
//! the maps. After both initial lists it reconciles everything once (and removes what a
//! previous agent left that no longer exists — nothing is flushed); after that it
//! reprograms only the Services that changed, so the cost of a change does not grow with
//! the number of Services.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    sync::{Arc, atomic::Ordering},
    time::{Duration, Instant},
};

use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::ResourceExt;
use skiff_ebpf_common::lb::{BACKEND_ACTIVE, BACKENDS_MAP, SERVICES_MAP};
use tracing::{debug, error, info, warn};

use super::{
    DatapathError,
    desired::{self, DesiredBackend, DesiredService, NodeView},
    health::HealthChecks,
    model::{Address, FrontendKey},
    stats::DatapathMetrics,
    table::Table,
};
use crate::discovery::view::{ServiceRef, ServiceView};

/// Annotation the EndpointSlice controller stamps with the triggering change's time.
const TRIGGER_TIME_ANNOTATION: &str = "endpoints.kubernetes.io/last-change-trigger-time";
/// Delay before retrying Services whose programming failed.
const RETRY_DELAY: Duration = Duration::from_secs(2);

/// What one Service has programmed.
#[derive(Default)]
struct Applied {
    frontends: BTreeSet<FrontendKey>,
    backends: BTreeSet<Address>,
    trigger: Option<String>,
}

/// Someone to tell about backends that are gone (UDP sockets still connected to them are
/// closed so their owners reconnect through the Service).
pub trait BackendsGone: Send {
    /// `backends` no longer exist in any Service.
    fn gone(&mut self, backends: &[Address]);
}

/// Turns desired Service state into map writes, remembering what each Service owns.
pub struct Programmer {
    table: Table,
    node: NodeView,
    applied: HashMap<ServiceRef, Applied>,
    owners: HashMap<FrontendKey, ServiceRef>,
    users: HashMap<Address, BTreeMap<ServiceRef, DesiredBackend>>,
    /// Services turned away from a frontend another Service owns, by frontend.
    waiting: BTreeMap<FrontendKey, BTreeSet<ServiceRef>>,
    /// Services to apply again: a frontend they were turned away from is free now.
    handed_over: BTreeSet<ServiceRef>,
    health: HealthChecks,
    capacities: Capacities,
}

/// Map capacities, for fill metrics.
#[derive(Clone, Copy, Debug)]
pub struct Capacities {
    /// `SERVICES` entries.
    pub services: u32,
    /// `BACKENDS` entries.
    pub backends: u32,
    /// `MAGLEV` tables.
    pub maglev: u32,
}

fn combine(users: &BTreeMap<ServiceRef, DesiredBackend>) -> Option<DesiredBackend> {
    let mut combined: Option<DesiredBackend> = None;
    for backend in users.values() {
        combined = Some(match combined {
            None => *backend,
            Some(c) => DesiredBackend {
                state: if c.state == BACKEND_ACTIVE || backend.state == BACKEND_ACTIVE {
                    BACKEND_ACTIVE
                } else {
                    backend.state
                },
                local: c.local || backend.local,
            },
        });
    }
    combined
}

impl Programmer {
    /// A programmer over `table` for `node`.
    pub fn new(table: Table, node: NodeView, capacities: Capacities) -> Self {
        let address = node
            .addresses
            .first()
            .copied()
            .unwrap_or(std::net::Ipv4Addr::UNSPECIFIED);
        Self {
            table,
            node,
            applied: HashMap::new(),
            owners: HashMap::new(),
            users: HashMap::new(),
            waiting: BTreeMap::new(),
            handed_over: BTreeSet::new(),
            health: HealthChecks::new(address),
            capacities,
        }
    }

    /// Program `service` to `desired`; returns the backends that no Service uses any more.
    pub fn apply(
        &mut self,
        service: &ServiceRef,
        desired: &DesiredService,
    ) -> Result<Vec<Address>, DatapathError> {
        let previous = self.applied.remove(service).unwrap_or_default();
        let mut applied = Applied {
            trigger: previous.trigger.clone(),
            ..Applied::default()
        };
        // This pass says again which frontends the Service is turned away from.
        self.waiting.retain(|_, claimants| {
            claimants.remove(service);
            !claimants.is_empty()
        });
        let result = self.apply_inner(service, desired, &previous, &mut applied);
        if result.is_err() {
            // Until a pass succeeds what was programmed before stays: releasing the
            // frontends this pass had not reached would take them down until the retry.
            applied.frontends.extend(previous.frontends.iter().copied());
            applied.backends.extend(previous.backends.iter().copied());
        }
        // Whatever was written is owned, even if a later write failed.
        let gone = self.release(service, &previous, &applied);
        self.applied.insert(service.clone(), applied);
        self.health.set(service, desired.health);
        result?;
        gone
    }

    fn apply_inner(
        &mut self,
        service: &ServiceRef,
        desired: &DesiredService,
        previous: &Applied,
        applied: &mut Applied,
    ) -> Result<(), DatapathError> {
        for (address, backend) in &desired.backends {
            let users = self.users.entry(*address).or_default();
            users.insert(service.clone(), *backend);
            let combined = combine(users).unwrap_or(*backend);
            applied.backends.insert(*address);
            self.table.set_backend(*address, combined)?;
        }
        // Backends this Service dropped but others still use may change state.
        for address in previous.backends.difference(&applied.backends) {
            if let Some(users) = self.users.get_mut(address) {
                users.remove(service);
                if let Some(combined) = combine(users) {
                    self.table.set_backend(*address, combined)?;
                }
            }
        }
        for frontend in &desired.frontends {
            if let Some(owner) = self.owners.get(&frontend.key)
                && owner != service
            {
                warn!(%service, %owner, frontend = %frontend.key.address, "two Services claim one frontend; the first keeps it");
                self.waiting
                    .entry(frontend.key)
                    .or_default()
                    .insert(service.clone());
                continue;
            }
            let ids: Vec<u32> = frontend
                .slots
                .iter()
                .filter_map(|a| self.table.backend_id(a))
                .collect();
            self.owners.insert(frontend.key, service.clone());
            applied.frontends.insert(frontend.key);
            self.table.set_frontend(frontend, &ids)?;
        }
        Ok(())
    }

    /// Remove what `previous` had and `applied` no longer has; the backends left unused.
    fn release(
        &mut self,
        service: &ServiceRef,
        previous: &Applied,
        applied: &Applied,
    ) -> Result<Vec<Address>, DatapathError> {
        for key in previous.frontends.difference(&applied.frontends) {
            if self.owners.get(key) == Some(service) {
                self.owners.remove(key);
                self.table.remove_frontend(key)?;
                if let Some(claimants) = self.waiting.remove(key) {
                    self.handed_over.extend(claimants);
                }
            }
        }
        let mut gone = Vec::new();
        for address in previous.backends.difference(&applied.backends) {
            let unused = self.users.get(address).is_none_or(BTreeMap::is_empty);
            if unused {
                self.users.remove(address);
                self.table.remove_backend(address)?;
                gone.push(*address);
            }
        }
        Ok(gone)
    }

    /// After the initial reconcile: remove frontends and backends no Service owns (left by
    /// a previous agent for Services deleted while it was down).
    pub fn prune(&mut self) -> Result<Vec<Address>, DatapathError> {
        let stale: Vec<FrontendKey> = self
            .table
            .frontends()
            .filter(|k| !self.owners.contains_key(k))
            .copied()
            .collect();
        for key in &stale {
            self.table.remove_frontend(key)?;
        }
        let unused: Vec<Address> = self
            .table
            .backend_addresses()
            .filter(|a| !self.users.contains_key(a))
            .copied()
            .collect();
        for address in &unused {
            self.table.remove_backend(address)?;
        }
        if !stale.is_empty() || !unused.is_empty() {
            info!(
                frontends = stale.len(),
                backends = unused.len(),
                "removed datapath entries of Services that no longer exist"
            );
        }
        Ok(unused)
    }

    /// The Services to apply again because a frontend they claim was released.
    fn take_handed_over(&mut self) -> BTreeSet<ServiceRef> {
        std::mem::take(&mut self.handed_over)
    }

    /// Services with programmed state.
    fn applied_services(&self) -> Vec<ServiceRef> {
        self.applied.keys().cloned().collect()
    }

    fn record_fill(&self, metrics: &DatapathMetrics) {
        let (slots, backends, tables) = self.table.counts();
        metrics.set_fill(
            SERVICES_MAP,
            slots as u64,
            u64::from(self.capacities.services),
        );
        metrics.set_fill(
            BACKENDS_MAP,
            backends as u64,
            u64::from(self.capacities.backends),
        );
        metrics.set_fill(
            skiff_ebpf_common::maglev::MAGLEV_MAP,
            tables as u64,
            u64::from(self.capacities.maglev),
        );
        metrics
            .services
            .store(self.applied.len() as u64, Ordering::Relaxed);
    }
}

/// The desired state of `service` in `view` (empty once it is deleted).
fn desired_of(
    view: &ServiceView,
    service: &ServiceRef,
    node: &NodeView,
) -> (DesiredService, Option<String>) {
    let Some(object) = view.service(service) else {
        return (DesiredService::default(), None);
    };
    let slices = view.slices(service);
    let refs: Vec<&EndpointSlice> = slices.iter().map(AsRef::as_ref).collect();
    let trigger = slices
        .iter()
        .filter_map(|s| s.annotations().get(TRIGGER_TIME_ANNOTATION).cloned())
        .max();
    (desired::service(&object, &refs, node), trigger)
}

/// Time since an RFC 3339 trigger time.
fn since(trigger: &str) -> Option<Duration> {
    let stamp: jiff::Timestamp = trigger.parse().ok()?;
    Duration::try_from(jiff::Timestamp::now().duration_since(stamp)).ok()
}

/// Report a failed write loudly (log, metric; the caller retries).
fn report(metrics: &DatapathMetrics, service: &ServiceRef, error: &DatapathError) {
    metrics.sync_errors.fetch_add(1, Ordering::Relaxed);
    if let DatapathError::Full { map } = error {
        metrics.map_full(map);
        error!(%service, %map, "eBPF map full: the Service is only partly programmed; raise the map size flags");
    } else {
        warn!(%service, error = %error, "programming the Service failed; retrying");
    }
}

/// How often a full map is reported as an Event (it is logged and counted every time).
const FULL_EVENT_INTERVAL: Duration = Duration::from_secs(60);

/// Reports full maps as Warning Events on this node's Node object, at most once a minute
/// per map.
pub struct FullMapEvents {
    recorder: skiff_events::Recorder,
    node: k8s_openapi::api::core::v1::ObjectReference,
    last: HashMap<&'static str, Instant>,
}

impl FullMapEvents {
    /// Events about `node`.
    pub fn new(recorder: skiff_events::Recorder, node: &str) -> Self {
        Self {
            recorder,
            node: k8s_openapi::api::core::v1::ObjectReference {
                api_version: Some("v1".to_owned()),
                kind: Some("Node".to_owned()),
                name: Some(node.to_owned()),
                ..Default::default()
            },
            last: HashMap::new(),
        }
    }

    async fn full(&mut self, map: &'static str, service: &ServiceRef) {
        if self
            .last
            .get(map)
            .is_some_and(|at| at.elapsed() < FULL_EVENT_INTERVAL)
        {
            return;
        }
        self.last.insert(map, Instant::now());
        let message = format!(
            "eBPF map {map} is full: Service {service} is only partly programmed; raise the agent's map size flags"
        );
        self.recorder
            .record(&self.node, "Warning", "DatapathMapFull", &message)
            .await;
    }
}

/// Program the view into the maps, forever.
pub async fn run(
    view: Arc<ServiceView>,
    mut programmer: Programmer,
    metrics: Arc<DatapathMetrics>,
    mut on_gone: Box<dyn BackendsGone>,
    mut events: Option<FullMapEvents>,
) {
    let mut retry: BTreeSet<ServiceRef> = BTreeSet::new();
    let mut handed_over: BTreeSet<ServiceRef> = BTreeSet::new();
    let mut reconciled = false;
    let mut listed = false;
    loop {
        // Handed-over frontends are programmed at once (with whatever changes are pending).
        let wait = if !handed_over.is_empty() {
            Some(Duration::ZERO)
        } else if !retry.is_empty() {
            Some(RETRY_DELAY)
        } else {
            None
        };
        let changes = match wait {
            None => view.take_changes().await,
            Some(wait) => tokio::time::timeout(wait, view.take_changes())
                .await
                .unwrap_or_default(),
        };
        let started = Instant::now();
        listed |= changes.ready;
        let initial = listed && !reconciled;
        let mut targets: BTreeSet<ServiceRef> = std::mem::take(&mut retry);
        targets.append(&mut handed_over);
        targets.extend(changes.services);
        if initial {
            for service in view.services() {
                targets.insert(ServiceRef {
                    namespace: service.namespace().unwrap_or_default(),
                    name: service.name_any(),
                });
            }
            targets.extend(programmer.applied_services());
        }
        let mut gone = Vec::new();
        for service in &targets {
            let (desired, trigger) = desired_of(&view, service, &programmer.node);
            match programmer.apply(service, &desired) {
                Ok(removed) => gone.extend(removed),
                Err(e) => {
                    report(&metrics, service, &e);
                    if let (DatapathError::Full { map }, Some(events)) = (&e, events.as_mut()) {
                        events.full(map, service).await;
                    }
                    retry.insert(service.clone());
                    continue;
                }
            }
            if let Some(applied) = programmer.applied.get_mut(service)
                && trigger.is_some()
                && applied.trigger != trigger
            {
                if !initial && let Some(latency) = trigger.as_deref().and_then(since) {
                    metrics.programming_latency.observe(latency);
                }
                applied.trigger = trigger;
            }
            if desired.frontends.is_empty() && desired.backends.is_empty() {
                programmer.applied.remove(service);
            }
        }
        if initial && retry.is_empty() {
            match programmer.prune() {
                Ok(removed) => {
                    gone.extend(removed);
                    reconciled = true;
                    info!(
                        services = programmer.applied.len(),
                        took_ms = started.elapsed().as_millis() as u64,
                        "datapath reconciled with the API"
                    );
                }
                Err(e) => error!(error = %e, "removing stale datapath entries failed; retrying"),
            }
        } else if initial {
            // Keep `reconciled` false: the next batch redoes the full pass (and the prune).
            retry.extend(targets.iter().cloned());
        }
        handed_over = programmer.take_handed_over();
        if !gone.is_empty() {
            on_gone.gone(&gone);
        }
        programmer.record_fill(&metrics);
        metrics.sync_duration.observe(started.elapsed());
        debug!(
            services = targets.len(),
            took_us = started.elapsed().as_micros() as u64,
            "datapath programmed"
        );
    }
}
