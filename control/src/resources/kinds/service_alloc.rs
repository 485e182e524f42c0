//! Service allocations with kube-apiserver's semantics: cluster IPs from the service CIDR,
//! node ports (and health-check node ports) from the node-port range. Explicit values are
//! honoured or refused (out of range, already allocated); empty ones are chosen at random
//! among the free ones. Every value becomes a store claim (`serviceips/10.96.0.5`,
//! `nodeports/30080`), taken in the same etcd transaction as the Service, so two Services
//! never hold the same one, whichever API server replica wrote them.

use std::{
    net::Ipv4Addr,
    sync::{OnceLock, RwLock},
};

use k8s_openapi::api::core::v1::{Service, ServiceSpec};

use crate::{
    model::validation::{ErrorList, FieldError},
    resources::strategy::Claim,
};

/// The ranges Services are allocated from (kube-apiserver's `--service-cluster-ip-range`
/// and `--service-node-port-range`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceRanges {
    /// Network address of the service CIDR.
    pub network: Ipv4Addr,
    /// Its prefix length.
    pub prefix: u8,
    /// First node port.
    pub node_port_first: u16,
    /// Last node port (inclusive).
    pub node_port_last: u16,
}

impl Default for ServiceRanges {
    fn default() -> Self {
        Self {
            network: Ipv4Addr::new(10, 96, 0, 0),
            prefix: 12,
            node_port_first: 30000,
            node_port_last: 32767,
        }
    }
}

impl ServiceRanges {
    /// Parse `10.96.0.0/12` and `30000-32767`.
    pub fn parse(cidr: &str, node_ports: &str) -> Result<Self, String> {
        let (ip, prefix) = cidr
            .split_once('/')
            .ok_or_else(|| format!("service CIDR {cidr:?} is not of the form a.b.c.d/n"))?;
        let ip: Ipv4Addr = ip
            .parse()
            .map_err(|e| format!("service CIDR {cidr:?}: {e}"))?;
        let prefix: u8 = prefix
            .parse()
            .ok()
            .filter(|p| (8..=30).contains(p))
            .ok_or_else(|| format!("service CIDR {cidr:?}: the prefix must be 8..=30"))?;
        let (first, last) = node_ports
            .split_once('-')
            .and_then(|(a, b)| Some((a.trim().parse::<u16>().ok()?, b.trim().parse::<u16>().ok()?)))
            .filter(|(a, b)| a <= b && *a > 0)
            .ok_or_else(|| {
                format!("node port range {node_ports:?} is not of the form first-last")
            })?;
        let mask = u32::MAX << (32 - u32::from(prefix));
        Ok(Self {
            network: Ipv4Addr::from(u32::from(ip) & mask),
            prefix,
            node_port_first: first,
            node_port_last: last,
        })
    }

    /// The CIDR as text.
    pub fn cidr(&self) -> String {
        format!("{}/{}", self.network, self.prefix)
    }

    fn size(&self) -> u32 {
        1u32 << (32 - u32::from(self.prefix))
    }

    /// Whether `ip` is an allocatable address (not the network or broadcast address).
    pub fn contains_ip(&self, ip: Ipv4Addr) -> bool {
        let offset = u32::from(ip).wrapping_sub(u32::from(self.network));
        offset > 0 && offset < self.size() - 1
    }

    /// The address at `offset` in the CIDR (1 = the `kubernetes` Service's).
    pub fn ip_at(&self, offset: u32) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) + offset)
    }

    fn contains_port(&self, port: i32) -> bool {
        (i32::from(self.node_port_first)..=i32::from(self.node_port_last)).contains(&port)
    }
}

static RANGES: OnceLock<RwLock<ServiceRanges>> = OnceLock::new();

fn ranges_cell() -> &'static RwLock<ServiceRanges> {
    RANGES.get_or_init(|| RwLock::new(ServiceRanges::default()))
}

/// Set the ranges (from skiff-control's flags).
pub fn set_service_ranges(ranges: ServiceRanges) {
    *ranges_cell().write().unwrap_or_else(|e| e.into_inner()) = ranges;
}

/// The configured ranges.
pub fn service_ranges() -> ServiceRanges {
    *ranges_cell().read().unwrap_or_else(|e| e.into_inner())
}

/// Claim name of a cluster IP.
pub fn ip_claim(ip: &str) -> String {
    format!("serviceips/{ip}")
}

/// Claim name of a node port.
pub fn node_port_claim(port: i32) -> String {
    format!("nodeports/{port}")
}

fn service_type(spec: &ServiceSpec) -> &str {
    spec.type_.as_deref().unwrap_or("ClusterIP")
}

/// NodePort and LoadBalancer Services have node ports (unless a LoadBalancer opts out).
fn needs_node_ports(spec: &ServiceSpec) -> bool {
    match service_type(spec) {
        "NodePort" => true,
        "LoadBalancer" => spec.allocate_load_balancer_node_ports != Some(false),
        _ => false,
    }
}

/// kube allocates a health-check node port for LoadBalancers with externalTrafficPolicy Local.
fn needs_health_check_port(spec: &ServiceSpec) -> bool {
    service_type(spec) == "LoadBalancer" && spec.external_traffic_policy.as_deref() == Some("Local")
}

fn needs_cluster_ip(spec: &ServiceSpec) -> bool {
    service_type(spec) != "ExternalName"
}

/// Update-time carry-over (kube's PrepareForUpdate for Services): values the writer left
/// out are kept from the stored object, and type-dependent values the writer did not change
/// are dropped when the new type does not use them.
pub fn carry_over(new: &mut Service, old: &Service) {
    let (Some(spec), Some(old_spec)) = (new.spec.as_mut(), old.spec.as_ref()) else {
        return;
    };
    // Drop what the new type does not use, if the writer left it as it was.
    if !needs_cluster_ip(spec) && spec.cluster_ip == old_spec.cluster_ip {
        spec.cluster_ip = None;
        spec.cluster_ips = None;
    }
    if !needs_node_ports(spec) && needs_node_ports(old_spec) {
        let old_ports = old_spec.ports.as_deref().unwrap_or_default();
        for port in spec.ports.iter_mut().flatten() {
            if port.node_port.is_some() && old_ports.iter().any(|o| o.node_port == port.node_port) {
                port.node_port = None;
            }
        }
    }
    if !needs_health_check_port(spec)
        && spec.health_check_node_port == old_spec.health_check_node_port
    {
        spec.health_check_node_port = None;
    }
    // Keep what the writer left out.
    if needs_cluster_ip(spec) && needs_cluster_ip(old_spec) {
        if spec.cluster_ip.as_deref().is_none_or(str::is_empty) {
            spec.cluster_ip = old_spec.cluster_ip.clone();
        }
        if spec.cluster_ips.as_ref().is_none_or(Vec::is_empty) {
            spec.cluster_ips = old_spec.cluster_ips.clone();
        }
    }
    if needs_node_ports(spec) && needs_node_ports(old_spec) {
        let old_ports = old_spec.ports.clone().unwrap_or_default();
        for port in spec.ports.iter_mut().flatten() {
            if port.node_port.unwrap_or(0) != 0 {
                continue;
            }
            let protocol = port.protocol.as_deref().unwrap_or("TCP");
            port.node_port = old_ports
                .iter()
                .find(|o| o.port == port.port && o.protocol.as_deref().unwrap_or("TCP") == protocol)
                .and_then(|o| o.node_port);
        }
    }
    if needs_health_check_port(spec)
        && needs_health_check_port(old_spec)
        && spec.health_check_node_port.unwrap_or(0) == 0
    {
        spec.health_check_node_port = old_spec.health_check_node_port;
    }
}

/// The claims a Service holds: its cluster IPs and node ports.
pub fn claims(service: &Service) -> Vec<Claim> {
    let Some(spec) = &service.spec else {
        return Vec::new();
    };
    let mut claims = Vec::new();
    let ips = spec
        .cluster_ips
        .clone()
        .filter(|ips| !ips.is_empty())
        .or_else(|| spec.cluster_ip.clone().map(|ip| vec![ip]))
        .unwrap_or_default();
    for ip in ips.iter().filter(|ip| !ip.is_empty() && *ip != "None") {
        claims.push(Claim {
            name: ip_claim(ip),
            error: FieldError::invalid(
                "spec.clusterIPs",
                format!("[]string{{\"{ip}\"}}"),
                format!("failed to allocate IP {ip}: provided IP is already allocated"),
            ),
        });
    }
    for (i, port) in spec.ports.iter().flatten().enumerate() {
        if let Some(node_port) = port.node_port.filter(|p| *p != 0) {
            let name = node_port_claim(node_port);
            // TCP and UDP of one port may share a node port.
            if claims.iter().any(|c| c.name == name) {
                continue;
            }
            claims.push(Claim {
                name,
                error: FieldError::invalid(
                    format!("spec.ports[{i}].nodePort"),
                    node_port,
                    "provided port is already allocated",
                ),
            });
        }
    }
    if let Some(port) = spec.health_check_node_port.filter(|p| *p != 0) {
        claims.push(Claim {
            name: node_port_claim(port),
            error: FieldError::invalid(
                "spec.healthCheckNodePort",
                port,
                "provided port is already allocated",
            ),
        });
    }
    claims
}

/// Fill in the cluster IP and node ports the Service needs and does not have, avoiding the
/// claims `held` reports, and check explicit values against the ranges. Returns the claims
/// chosen here (a write that loses them to a racing writer may choose again).
pub fn allocate(
    service: &mut Service,
    held: &dyn Fn(&str) -> bool,
    errors: &mut ErrorList,
) -> Vec<String> {
    let ranges = service_ranges();
    let mut chosen = Vec::new();
    let Some(spec) = service.spec.as_mut() else {
        return chosen;
    };
    if needs_cluster_ip(spec) {
        let requested = spec
            .cluster_ip
            .clone()
            .filter(|ip| !ip.is_empty())
            .or_else(|| {
                spec.cluster_ips
                    .as_ref()
                    .and_then(|ips| ips.first().cloned())
            });
        match requested.as_deref() {
            Some("None") => {}
            Some(ip) => match ip.parse::<Ipv4Addr>() {
                Ok(addr) if ranges.contains_ip(addr) => {}
                Ok(_) => errors.push(FieldError::invalid(
                    "spec.clusterIPs",
                    format!("[]string{{\"{ip}\"}}"),
                    format!(
                        "failed to allocate IP {ip}: the provided IP ({ip}) is not in the valid range. The range of valid IPs is {}",
                        ranges.cidr()
                    ),
                )),
                Err(_) => errors.push(FieldError::invalid(
                    "spec.clusterIPs[0]",
                    ip,
                    "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
                )),
            },
            None => match pick_ip(&ranges, held) {
                Some(ip) => {
                    chosen.push(ip_claim(&ip));
                    spec.cluster_ip = Some(ip);
                }
                None => errors.push(FieldError::invalid(
                    "spec.clusterIPs",
                    "[]string{}",
                    "failed to allocate a serviceIP: range is full",
                )),
            },
        }
        let ip = spec
            .cluster_ip
            .clone()
            .or_else(|| requested.clone())
            .unwrap_or_default();
        spec.cluster_ip = Some(ip.clone());
        spec.cluster_ips = Some(vec![ip]);
        spec.ip_families
            .get_or_insert_with(|| vec!["IPv4".to_owned()]);
        spec.ip_family_policy
            .get_or_insert_with(|| "SingleStack".to_owned());
    }
    let mut taken_here: Vec<i32> = spec
        .ports
        .iter()
        .flatten()
        .filter_map(|p| p.node_port.filter(|n| *n != 0))
        .collect();
    if needs_node_ports(spec) {
        let mut by_port: Vec<(i32, i32)> = Vec::new(); // (service port, node port) shared by TCP/UDP
        for (i, port) in spec.ports.iter_mut().flatten().enumerate() {
            match port.node_port.filter(|n| *n != 0) {
                Some(n) if !ranges.contains_port(n) => errors.push(FieldError::invalid(
                    format!("spec.ports[{i}].nodePort"),
                    n,
                    format!(
                        "provided port is not in the valid range. The range of valid ports is {}-{}",
                        ranges.node_port_first, ranges.node_port_last
                    ),
                )),
                Some(n) => by_port.push((port.port, n)),
                None => {
                    if let Some(&(_, n)) = by_port.iter().find(|(p, _)| *p == port.port) {
                        port.node_port = Some(n);
                        continue;
                    }
                    match pick_port(&ranges, held, &taken_here) {
                        Some(n) => {
                            chosen.push(node_port_claim(n));
                            taken_here.push(n);
                            by_port.push((port.port, n));
                            port.node_port = Some(n);
                        }
                        None => errors.push(FieldError::invalid(
                            format!("spec.ports[{i}].nodePort"),
                            0,
                            "failed to allocate a nodePort: range is full",
                        )),
                    }
                }
            }
        }
    }
    if needs_health_check_port(spec) {
        match spec.health_check_node_port.filter(|n| *n != 0) {
            Some(n) if !ranges.contains_port(n) => errors.push(FieldError::invalid(
                "spec.healthCheckNodePort",
                n,
                format!(
                    "provided port is not in the valid range. The range of valid ports is {}-{}",
                    ranges.node_port_first, ranges.node_port_last
                ),
            )),
            Some(_) => {}
            None => match pick_port(&ranges, held, &taken_here) {
                Some(n) => {
                    chosen.push(node_port_claim(n));
                    spec.health_check_node_port = Some(n);
                }
                None => errors.push(FieldError::invalid(
                    "spec.healthCheckNodePort",
                    0,
                    "failed to allocate a nodePort: range is full",
                )),
            },
        }
    } else if spec.health_check_node_port.is_some_and(|n| n != 0) {
        errors.push(FieldError::invalid(
            "spec.healthCheckNodePort",
            spec.health_check_node_port.unwrap_or_default(),
            "may only be set when `type` is 'LoadBalancer' and `externalTrafficPolicy` is 'Local'",
        ));
    }
    chosen
}

/// A random free address (offsets 2.. — the first is the `kubernetes` Service's).
fn pick_ip(ranges: &ServiceRanges, held: &dyn Fn(&str) -> bool) -> Option<String> {
    let size = ranges.size();
    let usable = size.checked_sub(3)?; // network, first (kubernetes) and broadcast
    if usable == 0 {
        return None;
    }
    let start = fastrand::u32(0..usable);
    // Random start, then a linear scan: finds a free address whenever one exists.
    (0..usable)
        .map(|step| ranges.ip_at(2 + (start + step) % usable).to_string())
        .find(|ip| !held(&ip_claim(ip)))
}

fn pick_port(ranges: &ServiceRanges, held: &dyn Fn(&str) -> bool, taken: &[i32]) -> Option<i32> {
    let first = i32::from(ranges.node_port_first);
    let count = i32::from(ranges.node_port_last) - first + 1;
    let start = fastrand::i32(0..count);
    (0..count)
        .map(|step| first + (start + step) % count)
        .find(|port| !taken.contains(port) && !held(&node_port_claim(*port)))
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::ServicePort;

    use super::*;

    fn service(kind: &str, ports: &[(i32, Option<i32>)]) -> Service {
        Service {
            spec: Some(ServiceSpec {
                type_: Some(kind.to_owned()),
                ports: Some(
                    ports
                        .iter()
                        .map(|(port, node_port)| ServicePort {
                            port: *port,
                            node_port: *node_port,
                            protocol: Some("TCP".to_owned()),
                            ..Default::default()
                        })
                        .collect(),
                ),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn ranges_parse_and_bound() {
        let r = ServiceRanges::parse("10.96.0.0/12", "30000-32767").expect("parse");
        assert_eq!(r, ServiceRanges::default());
        assert!(r.contains_ip("10.96.0.1".parse().expect("ip")));
        assert!(r.contains_ip("10.111.255.254".parse().expect("ip")));
        assert!(!r.contains_ip("10.111.255.255".parse().expect("ip")));
        assert!(!r.contains_ip("10.96.0.0".parse().expect("ip")));
        assert!(!r.contains_ip("10.112.0.1".parse().expect("ip")));
        assert!(ServiceRanges::parse("10.96.0.0", "1-2").is_err());
        assert!(ServiceRanges::parse("10.96.0.0/12", "3-2").is_err());
    }

    #[test]
    fn allocation_fills_empty_values_and_avoids_held_ones() {
        let mut svc = service("NodePort", &[(80, None), (443, Some(30443))]);
        let mut errors = ErrorList::new();
        let held = |claim: &str| claim.starts_with("nodeports/") && claim != "nodeports/31000";
        // Every port but 31000 (and the explicit 30443) is held: the empty one gets 31000.
        let chosen = allocate(&mut svc, &held, &mut errors);
        assert!(errors.is_empty(), "{errors:?}");
        let spec = svc.spec.as_ref().expect("spec");
        let ports = spec.ports.as_ref().expect("ports");
        assert_eq!(ports[0].node_port, Some(31000));
        assert_eq!(ports[1].node_port, Some(30443));
        let ip = spec.cluster_ip.clone().expect("ip");
        assert_eq!(spec.cluster_ips, Some(vec![ip.clone()]));
        assert_eq!(chosen, vec![ip_claim(&ip), "nodeports/31000".to_owned()]);
        let names: Vec<String> = claims(&svc).into_iter().map(|c| c.name).collect();
        assert_eq!(
            names,
            vec![
                ip_claim(&ip),
                "nodeports/31000".to_owned(),
                "nodeports/30443".to_owned()
            ]
        );
    }

    #[test]
    fn explicit_values_out_of_range_are_refused_and_full_ranges_reported() {
        let mut svc = service("NodePort", &[(80, Some(40000))]);
        svc.spec.as_mut().expect("spec").cluster_ip = Some("10.0.0.1".to_owned());
        let mut errors = ErrorList::new();
        allocate(&mut svc, &|_| false, &mut errors);
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, vec!["spec.clusterIPs", "spec.ports[0].nodePort"]);
        let mut full = service("NodePort", &[(80, None)]);
        let mut errors = ErrorList::new();
        allocate(&mut full, &|c| c.starts_with("nodeports/"), &mut errors);
        assert!(
            errors[0].to_string().contains("range is full"),
            "{errors:?}"
        );
    }

    #[test]
    fn updates_keep_omitted_values_and_drop_unused_ones_on_type_change() {
        let mut old = service("NodePort", &[(80, Some(30080))]);
        old.spec.as_mut().expect("spec").cluster_ip = Some("10.96.0.7".to_owned());
        let mut new = service("NodePort", &[(80, None)]);
        carry_over(&mut new, &old);
        let spec = new.spec.as_ref().expect("spec");
        assert_eq!(spec.cluster_ip.as_deref(), Some("10.96.0.7"));
        assert_eq!(
            spec.ports.as_ref().expect("ports")[0].node_port,
            Some(30080)
        );
        let mut to_cluster_ip = service("ClusterIP", &[(80, Some(30080))]);
        carry_over(&mut to_cluster_ip, &old);
        let spec = to_cluster_ip.spec.as_ref().expect("spec");
        assert_eq!(spec.ports.as_ref().expect("ports")[0].node_port, None);
        assert_eq!(spec.cluster_ip.as_deref(), Some("10.96.0.7"));
    }
}
