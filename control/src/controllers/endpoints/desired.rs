//! What a Service's endpoints should be, as kube-controller-manager computes them: which
//! pods count, their conditions (ready / serving / terminating), named target ports
//! resolved per pod, hostnames for `<hostname>.<subdomain>` pods, zones from nodes. Pure
//! functions over the watched objects.

use std::collections::BTreeMap;

use k8s_openapi::{
    api::{
        core::v1::{EndpointAddress, EndpointPort, EndpointSubset, ObjectReference, Pod, Service},
        discovery::v1::{Endpoint, EndpointConditions, EndpointHints, ForZone},
    },
    apimachinery::pkg::util::intstr::IntOrString,
};

use crate::controllers::workload::is_ready;

/// Node label carrying the zone.
pub const ZONE_LABEL: &str = "topology.kubernetes.io/zone";

/// One port of an endpoint: the Service port's name and protocol, the pod's port number.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ResolvedPort {
    /// The Service port's name ("" for a single unnamed port).
    pub name: String,
    /// The port number on the pod.
    pub port: i32,
    /// TCP, UDP or SCTP.
    pub protocol: String,
    /// The Service port's appProtocol.
    pub app_protocol: Option<String>,
}

/// One pod's endpoint, with the ports it serves (pods resolving named ports differently
/// land in different slices).
#[derive(Debug, Clone, PartialEq)]
pub struct PodEndpoint {
    /// The endpoint.
    pub endpoint: Endpoint,
    /// Its ports.
    pub ports: Vec<ResolvedPort>,
}

/// The pod's endpoint for `service`, or None if the pod does not count: terminal, no IP
/// yet, or terminating while the legacy Endpoints are computed (`include_terminating`).
pub fn pod_endpoint(
    service: &Service,
    pod: &Pod,
    zones: &BTreeMap<String, String>,
    include_terminating: bool,
) -> Option<PodEndpoint> {
    let status = pod.status.as_ref()?;
    if matches!(status.phase.as_deref(), Some("Succeeded" | "Failed")) {
        return None;
    }
    let ip = status.pod_ip.clone().filter(|ip| !ip.is_empty())?;
    let terminating = pod.metadata.deletion_timestamp.is_some();
    if terminating && !include_terminating {
        return None;
    }
    let spec = service.spec.as_ref()?;
    let pod_spec = pod.spec.as_ref()?;
    let publish_not_ready = spec.publish_not_ready_addresses == Some(true);
    let serving = is_ready(pod);
    let ready = publish_not_ready || (serving && !terminating);
    let node_name = pod_spec.node_name.clone().filter(|n| !n.is_empty());
    let zone = node_name.as_ref().and_then(|n| zones.get(n)).cloned();
    let hostname = pod_spec
        .hostname
        .clone()
        .filter(|h| !h.is_empty())
        .filter(|_| {
            pod_spec.subdomain.as_deref() == service.metadata.name.as_deref()
                && pod.metadata.namespace == service.metadata.namespace
        });
    let topology_aware = service
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| {
            a.get("service.kubernetes.io/topology-mode")
                .or_else(|| a.get("service.kubernetes.io/topology-aware-hints"))
        })
        .is_some_and(|mode| mode.eq_ignore_ascii_case("auto"));
    let hints = zone
        .clone()
        .filter(|_| topology_aware)
        .map(|zone| EndpointHints {
            for_zones: Some(vec![ForZone { name: zone }]),
            ..Default::default()
        });
    let endpoint = Endpoint {
        addresses: vec![ip],
        conditions: Some(EndpointConditions {
            ready: Some(ready),
            serving: Some(serving),
            terminating: Some(terminating),
        }),
        hostname,
        node_name,
        zone,
        hints,
        target_ref: Some(ObjectReference {
            kind: Some("Pod".to_owned()),
            namespace: pod.metadata.namespace.clone(),
            name: pod.metadata.name.clone(),
            uid: pod.metadata.uid.clone(),
            ..Default::default()
        }),
        ..Default::default()
    };
    Some(PodEndpoint {
        endpoint,
        ports: resolve_ports(service, pod),
    })
}

/// The Service's ports as this pod serves them; a named targetPort the pod does not
/// declare leaves that port out (kube's findPort).
pub fn resolve_ports(service: &Service, pod: &Pod) -> Vec<ResolvedPort> {
    let ports = service
        .spec
        .as_ref()
        .and_then(|s| s.ports.clone())
        .unwrap_or_default();
    let mut resolved: Vec<ResolvedPort> = ports
        .iter()
        .filter_map(|sp| {
            let protocol = sp.protocol.clone().unwrap_or_else(|| "TCP".to_owned());
            let port = match sp.target_port.as_ref() {
                None => sp.port,
                Some(IntOrString::Int(n)) => *n,
                Some(IntOrString::String(name)) => {
                    pod.spec
                        .as_ref()?
                        .containers
                        .iter()
                        .flat_map(|c| c.ports.iter().flatten())
                        .find(|p| {
                            p.name.as_deref() == Some(name.as_str())
                                && p.protocol.as_deref().unwrap_or("TCP") == protocol
                        })?
                        .container_port
                }
            };
            Some(ResolvedPort {
                name: sp.name.clone().unwrap_or_default(),
                port,
                protocol,
                app_protocol: sp.app_protocol.clone(),
            })
        })
        .collect();
    resolved.sort();
    resolved
}

/// The legacy Endpoints subsets: one subset per distinct port set, ready addresses in
/// `addresses`, the others in `notReadyAddresses`, sorted by IP as kube does.
pub fn legacy_subsets(endpoints: &[PodEndpoint]) -> Vec<EndpointSubset> {
    let mut by_ports: BTreeMap<Vec<ResolvedPort>, (Vec<EndpointAddress>, Vec<EndpointAddress>)> =
        BTreeMap::new();
    for pe in endpoints {
        let ep = &pe.endpoint;
        let Some(ip) = ep.addresses.first() else {
            continue;
        };
        let address = EndpointAddress {
            ip: ip.clone(),
            hostname: ep.hostname.clone(),
            node_name: ep.node_name.clone(),
            target_ref: ep.target_ref.clone(),
        };
        let (ready, not_ready) = by_ports.entry(pe.ports.clone()).or_default();
        if ep.conditions.as_ref().and_then(|c| c.ready) == Some(true) {
            ready.push(address);
        } else {
            not_ready.push(address);
        }
    }
    by_ports
        .into_iter()
        .filter(|(ports, _)| !ports.is_empty())
        .map(|(ports, (mut ready, mut not_ready))| {
            ready.sort_by(|a, b| a.ip.cmp(&b.ip));
            not_ready.sort_by(|a, b| a.ip.cmp(&b.ip));
            EndpointSubset {
                addresses: Some(ready).filter(|a| !a.is_empty()),
                not_ready_addresses: Some(not_ready).filter(|a| !a.is_empty()),
                ports: Some(
                    ports
                        .into_iter()
                        .map(|p| EndpointPort {
                            name: Some(p.name).filter(|n| !n.is_empty()),
                            port: p.port,
                            protocol: Some(p.protocol),
                            app_protocol: p.app_protocol,
                        })
                        .collect(),
                ),
            }
        })
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use k8s_openapi::{
        api::core::v1::{
            Container, ContainerPort, PodCondition, PodSpec, PodStatus, ServicePort, ServiceSpec,
        },
        apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time},
    };

    use super::*;

    pub(crate) fn service(target: IntOrString) -> Service {
        Service {
            metadata: ObjectMeta {
                name: Some("web".to_owned()),
                namespace: Some("default".to_owned()),
                uid: Some("uid-web".to_owned()),
                ..Default::default()
            },
            spec: Some(ServiceSpec {
                ports: Some(vec![ServicePort {
                    name: Some("http".to_owned()),
                    port: 80,
                    target_port: Some(target),
                    protocol: Some("TCP".to_owned()),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    pub(crate) fn pod(name: &str, ip: &str, ready: bool, port: i32) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                namespace: Some("default".to_owned()),
                uid: Some(format!("uid-{name}")),
                ..Default::default()
            },
            spec: Some(PodSpec {
                node_name: Some("n1".to_owned()),
                containers: vec![Container {
                    name: "c".to_owned(),
                    ports: Some(vec![ContainerPort {
                        name: Some("web".to_owned()),
                        container_port: port,
                        ..Default::default()
                    }]),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            status: Some(PodStatus {
                phase: Some("Running".to_owned()),
                pod_ip: Some(ip.to_owned()),
                conditions: Some(vec![PodCondition {
                    type_: "Ready".to_owned(),
                    status: if ready { "True" } else { "False" }.to_owned(),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn conditions_follow_readiness_and_deletion() {
        let svc = service(IntOrString::Int(8080));
        let zones = BTreeMap::from([("n1".to_owned(), "z1".to_owned())]);
        let ready = pod_endpoint(&svc, &pod("a", "10.244.1.2", true, 8080), &zones, true)
            .expect("endpoint");
        let c = ready.endpoint.conditions.clone().expect("conditions");
        assert_eq!(
            (c.ready, c.serving, c.terminating),
            (Some(true), Some(true), Some(false))
        );
        assert_eq!(ready.endpoint.zone.as_deref(), Some("z1"));
        assert_eq!(ready.ports[0].port, 8080);
        let mut deleting = pod("b", "10.244.1.3", true, 8080);
        deleting.metadata.deletion_timestamp = Some(Time(jiff::Timestamp::now()));
        let t = pod_endpoint(&svc, &deleting, &zones, true).expect("terminating endpoint");
        let c = t.endpoint.conditions.expect("conditions");
        assert_eq!(
            (c.ready, c.serving, c.terminating),
            (Some(false), Some(true), Some(true))
        );
        assert!(pod_endpoint(&svc, &deleting, &zones, false).is_none());
        let mut no_ip = pod("c", "", true, 8080);
        no_ip.status.as_mut().expect("status").pod_ip = None;
        assert!(pod_endpoint(&svc, &no_ip, &zones, true).is_none());
    }

    #[test]
    fn named_target_ports_resolve_per_pod() {
        let svc = service(IntOrString::String("web".to_owned()));
        let a = resolve_ports(&svc, &pod("a", "10.244.1.2", true, 8080));
        let b = resolve_ports(&svc, &pod("b", "10.244.1.3", true, 9090));
        assert_eq!((a[0].port, b[0].port), (8080, 9090));
        let other = service(IntOrString::String("metrics".to_owned()));
        assert!(resolve_ports(&other, &pod("a", "10.244.1.2", true, 8080)).is_empty());
    }

    #[test]
    fn legacy_subsets_split_ready_and_not_ready() {
        let svc = service(IntOrString::Int(8080));
        let zones = BTreeMap::new();
        let eps: Vec<PodEndpoint> = [
            ("b", "10.244.1.3", true),
            ("a", "10.244.1.2", true),
            ("c", "10.244.1.4", false),
        ]
        .iter()
        .filter_map(|(n, ip, r)| pod_endpoint(&svc, &pod(n, ip, *r, 8080), &zones, false))
        .collect();
        let subsets = legacy_subsets(&eps);
        assert_eq!(subsets.len(), 1);
        let ips: Vec<&str> = subsets[0]
            .addresses
            .iter()
            .flatten()
            .map(|a| a.ip.as_str())
            .collect();
        assert_eq!(ips, vec!["10.244.1.2", "10.244.1.3"]);
        assert_eq!(
            subsets[0].not_ready_addresses.as_ref().map(Vec::len),
            Some(1)
        );
    }
}
