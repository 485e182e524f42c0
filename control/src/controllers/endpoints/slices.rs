//! Turning a Service's desired endpoints into EndpointSlice writes with little churn, as
//! kube's slice reconciler does: endpoints stay in the slice they are in, slices fill up to
//! [`MAX_ENDPOINTS_PER_SLICE`], new slices are made only for what does not fit, pods with
//! different resolved ports go to different slices, and only slices whose content changes
//! are written. A Service with no endpoints keeps one empty placeholder slice.

use std::collections::BTreeMap;

use k8s_openapi::{
    api::{
        core::v1::Service,
        discovery::v1::{Endpoint, EndpointPort, EndpointSlice},
    },
    apimachinery::pkg::apis::meta::v1::ObjectMeta,
};

use super::desired::{PodEndpoint, ResolvedPort};
use crate::controllers::workload::controller_ref;

/// kube-controller-manager's default --max-endpoints-per-slice.
pub const MAX_ENDPOINTS_PER_SLICE: usize = 100;
/// Label naming the Service of a slice.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// Label naming the slice's manager.
pub const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
/// This controller's value of [`MANAGED_BY_LABEL`].
pub const MANAGED_BY: &str = "endpointslice-controller.k8s.io";
/// Annotation with the time of the change that triggered the slice's last write.
pub const TRIGGER_TIME_ANNOTATION: &str = "endpoints.kubernetes.io/last-change-trigger-time";

/// The writes that bring a Service's slices to the desired state.
#[derive(Debug, Default)]
pub struct Plan {
    /// Slices to create (generateName set).
    pub create: Vec<EndpointSlice>,
    /// Slices to replace (name and resourceVersion kept).
    pub update: Vec<EndpointSlice>,
    /// Names of slices to delete.
    pub delete: Vec<String>,
}

impl Plan {
    /// Whether nothing needs writing.
    pub fn is_empty(&self) -> bool {
        self.create.is_empty() && self.update.is_empty() && self.delete.is_empty()
    }
}

fn endpoint_key(endpoint: &Endpoint) -> String {
    endpoint
        .target_ref
        .as_ref()
        .and_then(|r| r.uid.clone())
        .unwrap_or_else(|| endpoint.addresses.join(","))
}

fn slice_ports(ports: &[ResolvedPort]) -> Vec<EndpointPort> {
    ports
        .iter()
        .map(|p| EndpointPort {
            name: Some(p.name.clone()),
            port: Some(p.port),
            protocol: Some(p.protocol.clone()),
            app_protocol: p.app_protocol.clone(),
        })
        .collect()
}

fn port_key(slice: &EndpointSlice) -> Vec<ResolvedPort> {
    let mut ports: Vec<ResolvedPort> = slice
        .ports
        .iter()
        .flatten()
        .map(|p| ResolvedPort {
            name: p.name.clone().unwrap_or_default(),
            port: p.port.unwrap_or_default(),
            protocol: p.protocol.clone().unwrap_or_else(|| "TCP".to_owned()),
            app_protocol: p.app_protocol.clone(),
        })
        .collect();
    ports.sort();
    ports
}

/// The labels of the Service's slices: the Service's own, plus the controller's.
fn slice_labels(service: &Service) -> BTreeMap<String, String> {
    let mut labels = service.metadata.labels.clone().unwrap_or_default();
    labels.insert(
        SERVICE_NAME_LABEL.to_owned(),
        service.metadata.name.clone().unwrap_or_default(),
    );
    labels.insert(MANAGED_BY_LABEL.to_owned(), MANAGED_BY.to_owned());
    let headless = service.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()) == Some("None");
    if headless {
        labels.insert("service.kubernetes.io/headless".to_owned(), String::new());
    } else {
        labels.remove("service.kubernetes.io/headless");
    }
    labels
}

/// Plan the writes for `service` given its current managed slices and desired endpoints.
/// `trigger_time` (RFC 3339) goes into every written slice's annotation.
pub fn plan(
    service: &Service,
    existing: &[EndpointSlice],
    desired: &[PodEndpoint],
    trigger_time: &str,
) -> Plan {
    let labels = slice_labels(service);
    // Desired endpoints grouped by port set, keyed by identity.
    let mut groups: BTreeMap<Vec<ResolvedPort>, BTreeMap<String, Endpoint>> = BTreeMap::new();
    for pe in desired {
        groups
            .entry(pe.ports.clone())
            .or_default()
            .insert(endpoint_key(&pe.endpoint), pe.endpoint.clone());
    }
    let mut plan = Plan::default();
    // (the stored slice, its new content, whether that differs)
    let mut kept: Vec<(&EndpointSlice, EndpointSlice, bool)> = Vec::new();
    let mut unused: Vec<&EndpointSlice> = Vec::new();
    let mut slices_by_ports: BTreeMap<Vec<ResolvedPort>, Vec<&EndpointSlice>> = BTreeMap::new();
    // Slices of an earlier Service of the same name (deleted and made again before the
    // garbage collector took its slices) are deleted, never reused: the collector would
    // delete a reused one under the new Service.
    let (owned, foreign): (Vec<&EndpointSlice>, Vec<&EndpointSlice>) =
        existing.iter().partition(|slice| owned_by(slice, service));
    for slice in owned {
        slices_by_ports
            .entry(port_key(slice))
            .or_default()
            .push(slice);
    }
    for (ports, slices) in &slices_by_ports {
        if !groups.contains_key(ports) {
            unused.extend(slices.iter().copied());
        }
    }
    for (ports, mut wanted) in groups {
        let mut group_slices: Vec<(&EndpointSlice, EndpointSlice, bool)> = Vec::new();
        // Keep each endpoint in the slice it is in, updated; drop the ones gone.
        for &old in slices_by_ports.get(&ports).into_iter().flatten() {
            let mut slice = old.clone();
            let endpoints: Vec<Endpoint> = old
                .endpoints
                .iter()
                .filter_map(|e| wanted.remove(&endpoint_key(e)))
                .collect();
            let changed =
                endpoints != old.endpoints || slice.metadata.labels.as_ref() != Some(&labels);
            slice.endpoints = endpoints;
            group_slices.push((old, slice, changed));
        }
        // Fill slices that changed anyway first, then the others, then new slices.
        group_slices.sort_by_key(|(_, _, changed)| !*changed);
        let mut remaining: Vec<Endpoint> = wanted.into_values().collect();
        for (_, slice, changed) in &mut group_slices {
            while slice.endpoints.len() < MAX_ENDPOINTS_PER_SLICE && !remaining.is_empty() {
                slice.endpoints.push(remaining.remove(0));
                *changed = true;
            }
        }
        for chunk in remaining.chunks(MAX_ENDPOINTS_PER_SLICE) {
            plan.create.push(new_slice(
                service,
                &labels,
                &ports,
                chunk.to_vec(),
                trigger_time,
            ));
        }
        kept.extend(group_slices);
    }
    let total_desired = plan.create.len()
        + kept
            .iter()
            .filter(|(_, s, _)| !s.endpoints.is_empty())
            .count();
    for (old, mut slice, changed) in kept {
        if slice.endpoints.is_empty() {
            unused.push(old);
            continue;
        }
        if changed {
            stamp(&mut slice, &labels, trigger_time);
            plan.update.push(slice);
        }
    }
    // A Service without endpoints keeps one empty placeholder slice.
    if total_desired == 0 {
        match unused.pop() {
            Some(placeholder) => {
                if !placeholder.endpoints.is_empty()
                    || placeholder.ports.as_ref().is_some_and(|p| !p.is_empty())
                    || placeholder.metadata.labels.as_ref() != Some(&labels)
                {
                    let mut slice = placeholder.clone();
                    slice.endpoints = Vec::new();
                    slice.ports = Some(Vec::new());
                    stamp(&mut slice, &labels, trigger_time);
                    plan.update.push(slice);
                }
            }
            None => plan
                .create
                .push(new_slice(service, &labels, &[], Vec::new(), trigger_time)),
        }
    }
    plan.delete = unused
        .into_iter()
        .chain(foreign)
        .filter_map(|s| s.metadata.name.clone())
        .collect();
    plan
}

/// Whether `slice` belongs to this very Service (its UID among the slice's owners), as
/// kube's reconciler decides.
fn owned_by(slice: &EndpointSlice, service: &Service) -> bool {
    let Some(uid) = service.metadata.uid.as_deref() else {
        return false;
    };
    slice
        .metadata
        .owner_references
        .iter()
        .flatten()
        .any(|o| o.uid == uid && o.kind == "Service" && o.api_version == "v1")
}

fn stamp(slice: &mut EndpointSlice, labels: &BTreeMap<String, String>, trigger_time: &str) {
    slice.metadata.labels = Some(labels.clone());
    slice
        .metadata
        .annotations
        .get_or_insert_with(BTreeMap::new)
        .insert(TRIGGER_TIME_ANNOTATION.to_owned(), trigger_time.to_owned());
}

fn new_slice(
    service: &Service,
    labels: &BTreeMap<String, String>,
    ports: &[ResolvedPort],
    endpoints: Vec<Endpoint>,
    trigger_time: &str,
) -> EndpointSlice {
    let name = service.metadata.name.clone().unwrap_or_default();
    let mut slice = EndpointSlice {
        metadata: ObjectMeta {
            generate_name: Some(format!("{name}-")),
            namespace: service.metadata.namespace.clone(),
            owner_references: Some(vec![controller_ref("v1", "Service", &service.metadata)]),
            ..Default::default()
        },
        address_type: "IPv4".to_owned(),
        endpoints,
        ports: Some(slice_ports(ports)),
    };
    stamp(&mut slice, labels, trigger_time);
    slice
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

    use super::*;
    use crate::controllers::endpoints::desired::{
        pod_endpoint,
        tests::{pod, service},
    };

    fn endpoints(n: usize, port: i32) -> Vec<PodEndpoint> {
        let svc = service(IntOrString::Int(port));
        (0..n)
            .filter_map(|i| {
                let p = pod(
                    &format!("p{i}"),
                    &format!("10.244.{}.{}", i / 200, i % 200 + 2),
                    true,
                    port,
                );
                pod_endpoint(&svc, &p, &BTreeMap::new(), true)
            })
            .collect()
    }

    /// Apply a plan to a set of slices as the API server would (names for created ones).
    fn apply(mut slices: Vec<EndpointSlice>, plan: Plan) -> Vec<EndpointSlice> {
        slices.retain(|s| {
            !plan
                .delete
                .contains(s.metadata.name.as_ref().expect("name"))
        });
        for update in plan.update {
            let i = slices
                .iter()
                .position(|s| s.metadata.name == update.metadata.name)
                .expect("exists");
            slices[i] = update;
        }
        for (i, mut created) in plan.create.into_iter().enumerate() {
            created.metadata.name = Some(format!("web-new{}-{i}", slices.len()));
            slices.push(created);
        }
        slices
    }

    #[test]
    fn slices_hold_at_most_100_and_updates_touch_only_changed_slices() {
        let svc = service(IntOrString::Int(8080));
        let all = endpoints(250, 8080);
        let first = plan(&svc, &[], &all, "t0");
        assert_eq!(first.create.len(), 3);
        let slices = apply(Vec::new(), first);
        let sizes: Vec<usize> = slices.iter().map(|s| s.endpoints.len()).collect();
        assert_eq!(sizes, vec![100, 100, 50]);
        // Nothing changed: nothing to write.
        assert!(plan(&svc, &slices, &all, "t1").is_empty());
        // One endpoint gone: only its slice is written.
        let fewer: Vec<PodEndpoint> = all
            .iter()
            .filter(|e| e.endpoint.addresses[0] != "10.244.0.2")
            .cloned()
            .collect();
        let p = plan(&svc, &slices, &fewer, "t2");
        assert_eq!((p.create.len(), p.update.len(), p.delete.len()), (0, 1, 0));
        assert_eq!(p.update[0].endpoints.len(), 99);
    }

    /// The plan for Service `web` made again (a new UID) with `endpoints`, while the slices
    /// of the earlier `web`, which had the same endpoints, are still there; checks that the
    /// old slice is deleted and that the one created belongs to the new Service.
    fn made_again(endpoints: &[PodEndpoint]) -> Plan {
        let old_service = service(IntOrString::Int(8080));
        let old_slices = apply(Vec::new(), plan(&old_service, &[], endpoints, "t0"));
        let mut new_service = service(IntOrString::Int(8080));
        new_service.metadata.uid = Some("uid-web-again".to_owned());
        let p = plan(&new_service, &old_slices, endpoints, "t1");
        assert_eq!((p.create.len(), p.update.len()), (1, 0));
        assert_eq!(p.delete, vec!["web-new0-0".to_owned()]);
        let owners = p.create[0].metadata.owner_references.as_ref();
        assert_eq!(owners.expect("owner")[0].uid, "uid-web-again");
        p
    }

    /// `kubectl delete svc web && kubectl apply` before the garbage collector took the old
    /// slices: the new Service gets slices of its own, the old ones are deleted.
    #[test]
    fn slices_of_an_earlier_service_of_the_same_name_are_deleted_not_reused() {
        let p = made_again(&endpoints(3, 8080));
        assert_eq!(p.create[0].endpoints.len(), 3);
    }

    /// The same with no endpoints: the placeholder is a new slice of the new Service's,
    /// never an old one kept (the collector would take it).
    #[test]
    fn a_service_made_again_without_endpoints_gets_a_placeholder_of_its_own() {
        let p = made_again(&[]);
        assert!(p.create[0].endpoints.is_empty());
    }

    #[test]
    fn no_endpoints_leave_one_placeholder_and_port_changes_move_endpoints() {
        let svc = service(IntOrString::Int(8080));
        let slices = apply(Vec::new(), plan(&svc, &[], &endpoints(3, 8080), "t0"));
        let empty = plan(&svc, &slices, &[], "t1");
        assert_eq!(
            (empty.create.len(), empty.update.len(), empty.delete.len()),
            (0, 1, 0)
        );
        assert!(empty.update[0].endpoints.is_empty());
        let moved = plan(&svc, &slices, &endpoints(3, 9090), "t2");
        assert_eq!((moved.create.len(), moved.delete.len()), (1, 1));
        assert_eq!(
            moved.create[0].ports.as_ref().expect("ports")[0].port,
            Some(9090)
        );
    }
}
