//! What the maps should hold for one Service, computed from the Service and its
//! EndpointSlices as kube-proxy reads them — no I/O, so every rule is unit-tested.
//!
//! - Endpoints: the first address of every IPv4 endpoint whose slice carries the Service
//!   port (by name and protocol). Ready endpoints are selectable; when none is ready, the
//!   serving terminating ones are (kube-proxy's fallback, so a rollout's last pods still
//!   answer). Every other known endpoint stays in `BACKENDS` as terminating, so flows
//!   already on it finish, but it is never chosen.
//! - Frontends: the cluster IPs (internal scope, `internalTrafficPolicy`), and for
//!   NodePort/LoadBalancer/externalIPs the node's addresses, ingress IPs and external IPs in
//!   both scopes — internal with every endpoint, external by `externalTrafficPolicy` with a
//!   Maglev table.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::Ipv4Addr,
};

use k8s_openapi::api::{core::v1::Service, discovery::v1::EndpointSlice};
use skiff_ebpf_common::lb::{
    BACKEND_ACTIVE, BACKEND_TERMINATING, SVC_AFFINITY, SVC_CLUSTER_IP, SVC_EXTERNAL,
    SVC_EXTERNAL_IP, SVC_LOAD_BALANCER, SVC_LOCAL_ONLY, SVC_MAGLEV, SVC_NODE_PORT,
};

use super::model::{Address, FrontendKey, Protocol, Scope};

/// This node, as the computation needs it.
#[derive(Clone, Debug, Default)]
pub struct NodeView {
    /// Node name (endpoints with this `nodeName` are local).
    pub name: String,
    /// Addresses node ports answer on.
    pub addresses: Vec<Ipv4Addr>,
    /// Cluster IPs never programmed (the node-local DNS resolver answers on its own).
    pub reserved: Vec<Ipv4Addr>,
}

/// A backend as one Service sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DesiredBackend {
    /// `BACKEND_ACTIVE` (selectable) or `BACKEND_TERMINATING`.
    pub state: u8,
    /// Runs on this node.
    pub local: bool,
}

/// A frontend entry and its backend slots.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DesiredFrontend {
    /// Address and scope.
    pub key: FrontendKey,
    /// `SVC_*` flags.
    pub flags: u16,
    /// ClientIP affinity timeout (seconds), with `SVC_AFFINITY`.
    pub affinity_timeout: u32,
    /// Selectable backends, sorted (the order is the slot order).
    pub slots: Vec<Address>,
}

/// kube-proxy's health check for an `externalTrafficPolicy: Local` LoadBalancer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HealthCheck {
    /// The Service's `healthCheckNodePort`.
    pub port: u16,
    /// Ready endpoints on this node.
    pub local_endpoints: usize,
}

/// Everything one Service contributes to the maps.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DesiredService {
    /// Frontend entries.
    pub frontends: Vec<DesiredFrontend>,
    /// Every backend the Service knows, selectable or not.
    pub backends: BTreeMap<Address, DesiredBackend>,
    /// The health check node port to serve, if any.
    pub health: Option<HealthCheck>,
}

/// One endpoint of one Service port.
struct Endpoint {
    address: Address,
    ready: bool,
    serving_terminating: bool,
    local: bool,
}

/// The endpoints of the Service port named `name` with `protocol`.
fn endpoints(
    slices: &[&EndpointSlice],
    name: Option<&str>,
    protocol: Protocol,
    node: &str,
) -> Vec<Endpoint> {
    let name = name.unwrap_or("");
    let mut found = Vec::new();
    for slice in slices {
        if slice.address_type != "IPv4" {
            continue;
        }
        let port = slice.ports.iter().flatten().find(|p| {
            p.name.as_deref().unwrap_or("") == name
                && Protocol::from_kubernetes(p.protocol.as_deref()) == Some(protocol)
        });
        let Some(port) = port
            .and_then(|p| p.port)
            .and_then(|p| u16::try_from(p).ok())
        else {
            continue;
        };
        for endpoint in &slice.endpoints {
            let Some(ip) = endpoint
                .addresses
                .first()
                .and_then(|a| a.parse::<Ipv4Addr>().ok())
            else {
                continue;
            };
            let conditions = endpoint.conditions.as_ref();
            let ready = conditions.and_then(|c| c.ready).unwrap_or(true);
            let serving = conditions.and_then(|c| c.serving).unwrap_or(ready);
            let terminating = conditions.and_then(|c| c.terminating).unwrap_or(false);
            found.push(Endpoint {
                address: Address { ip, port, protocol },
                ready: ready && !terminating,
                serving_terminating: serving && terminating,
                local: endpoint.node_name.as_deref() == Some(node),
            });
        }
    }
    found
}

fn parse_ips<'a>(ips: impl Iterator<Item = &'a String>) -> BTreeSet<Ipv4Addr> {
    ips.filter_map(|ip| ip.parse().ok()).collect()
}

/// The desired state of `service` given its EndpointSlices, on `node`.
pub fn service(service: &Service, slices: &[&EndpointSlice], node: &NodeView) -> DesiredService {
    let mut desired = DesiredService::default();
    let Some(spec) = &service.spec else {
        return desired;
    };
    let kind = spec.type_.as_deref().unwrap_or("ClusterIP");
    if kind == "ExternalName" {
        return desired;
    }
    let mut cluster_ips = parse_ips(spec.cluster_ips.iter().flatten());
    cluster_ips.extend(parse_ips(spec.cluster_ip.iter()));
    cluster_ips.retain(|ip| !node.reserved.contains(ip));
    let exposed = kind == "NodePort" || kind == "LoadBalancer";
    let ingress: BTreeSet<Ipv4Addr> = if kind == "LoadBalancer" {
        parse_ips(
            service
                .status
                .iter()
                .filter_map(|s| s.load_balancer.as_ref())
                .flat_map(|lb| lb.ingress.iter().flatten())
                .filter_map(|i| i.ip.as_ref()),
        )
    } else {
        BTreeSet::new()
    };
    let external_ips = parse_ips(spec.external_ips.iter().flatten());
    let local_external = spec.external_traffic_policy.as_deref() == Some("Local");
    let local_internal = spec.internal_traffic_policy.as_deref() == Some("Local");
    let (affinity, affinity_timeout) = if spec.session_affinity.as_deref() == Some("ClientIP") {
        let timeout = spec
            .session_affinity_config
            .as_ref()
            .and_then(|c| c.client_ip.as_ref())
            .and_then(|c| c.timeout_seconds)
            .and_then(|t| u32::try_from(t).ok())
            .unwrap_or(10_800);
        (SVC_AFFINITY, timeout)
    } else {
        (0, 0)
    };
    let mut local_ready = BTreeSet::new();
    for port in spec.ports.iter().flatten() {
        let Some(protocol) = Protocol::from_kubernetes(port.protocol.as_deref()) else {
            continue;
        };
        let Ok(service_port) = u16::try_from(port.port) else {
            continue;
        };
        let found = endpoints(slices, port.name.as_deref(), protocol, &node.name);
        let any_ready = found.iter().any(|e| e.ready);
        let selectable = |e: &Endpoint| {
            if any_ready {
                e.ready
            } else {
                e.serving_terminating
            }
        };
        let mut all = Vec::new();
        let mut local = Vec::new();
        for endpoint in &found {
            let chosen = selectable(endpoint);
            let state = if chosen {
                BACKEND_ACTIVE
            } else {
                BACKEND_TERMINATING
            };
            let entry = desired
                .backends
                .entry(endpoint.address)
                .or_insert(DesiredBackend {
                    state,
                    local: endpoint.local,
                });
            if chosen {
                entry.state = BACKEND_ACTIVE;
                all.push(endpoint.address);
                if endpoint.local {
                    local.push(endpoint.address);
                    if endpoint.ready {
                        local_ready.insert(endpoint.address.ip);
                    }
                }
            }
        }
        all.sort();
        all.dedup();
        local.sort();
        local.dedup();
        let mut add = |ip: Ipv4Addr, port: u16, scope: Scope, flags: u16, slots: &Vec<Address>| {
            desired.frontends.push(DesiredFrontend {
                key: FrontendKey {
                    address: Address { ip, port, protocol },
                    scope,
                },
                flags: flags | affinity,
                affinity_timeout,
                slots: slots.clone(),
            });
        };
        for &ip in &cluster_ips {
            let slots = if local_internal { &local } else { &all };
            add(ip, service_port, Scope::Internal, SVC_CLUSTER_IP, slots);
        }
        let external_slots = if local_external { &local } else { &all };
        let policy = if local_external { SVC_LOCAL_ONLY } else { 0 };
        let mut exposed_on = Vec::new();
        if exposed && let Some(node_port) = port.node_port.and_then(|p| u16::try_from(p).ok()) {
            for &ip in &node.addresses {
                exposed_on.push((ip, node_port, SVC_NODE_PORT));
            }
        }
        for &ip in &ingress {
            exposed_on.push((ip, service_port, SVC_LOAD_BALANCER));
        }
        for &ip in &external_ips {
            exposed_on.push((ip, service_port, SVC_EXTERNAL_IP));
        }
        for (ip, port, kind) in exposed_on {
            add(ip, port, Scope::Internal, kind | SVC_EXTERNAL, &all);
            add(
                ip,
                port,
                Scope::External,
                kind | SVC_EXTERNAL | SVC_MAGLEV | policy,
                external_slots,
            );
        }
    }
    // Two Service ports may name the same frontend (the same port over TCP twice is
    // invalid, but be safe): the first wins.
    let mut seen = BTreeSet::new();
    desired.frontends.retain(|f| seen.insert(f.key));
    if kind == "LoadBalancer"
        && local_external
        && let Some(port) = spec
            .health_check_node_port
            .and_then(|p| u16::try_from(p).ok())
    {
        desired.health = Some(HealthCheck {
            port,
            local_endpoints: local_ready.len(),
        });
    }
    desired
}

#[cfg(test)]
mod tests;
