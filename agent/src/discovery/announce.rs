//! Layer-2 announcement of LoadBalancer addresses, as MetalLB's L2 mode: for each address
//! in a Service's `status.loadBalancer.ingress`, one Ready node — chosen by hashing the
//! Service's key over the Ready nodes' names, so every agent agrees without talking — puts
//! the address (/32) on its underlay interface. The kernel then answers ARP for it and
//! traffic for it reaches that node, where the datapath takes over. When that node stops
//! being Ready another one takes the address. For `externalTrafficPolicy: Local` only
//! nodes with a ready endpoint of the Service are candidates (traffic must not land where
//! it would be refused), as MetalLB does.
//!
//! The addresses it put there are recorded in a file in the agent's state directory, so
//! after a restart it removes the ones it should no longer hold instead of leaking them;
//! addresses it did not add are never touched.

use std::{collections::BTreeSet, net::Ipv4Addr, path::PathBuf, time::Duration};

use futures::TryStreamExt;
use k8s_openapi::api::core::v1::{Node, Service};
use kube::{ResourceExt, runtime::reflector::Store};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use tracing::{info, warn};

use super::view::{ServiceRef, ServiceView};
use crate::network::sandbox::link_index;

/// How often the desired addresses are recomputed.
const RESYNC: Duration = Duration::from_secs(2);

/// Which node announces a Service's addresses: FNV-1a of `namespace/name` over the sorted
/// Ready node names.
pub fn announcer<'a>(service_key: &str, ready_nodes: &'a [String]) -> Option<&'a String> {
    if ready_nodes.is_empty() {
        return None;
    }
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in service_key.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    let index = usize::try_from(hash % ready_nodes.len() as u64).unwrap_or(0);
    ready_nodes.get(index)
}

fn is_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Nodes with a ready endpoint of `service`.
fn nodes_with_ready_endpoints(view: &ServiceView, service: &ServiceRef) -> BTreeSet<String> {
    view.slices(service)
        .iter()
        .flat_map(|slice| slice.endpoints.iter())
        .filter(|e| e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true))
        .filter_map(|e| e.node_name.clone())
        .collect()
}

/// The addresses this node should announce.
fn desired(
    services: &Store<Service>,
    nodes: &Store<Node>,
    view: &ServiceView,
    me: &str,
) -> BTreeSet<Ipv4Addr> {
    let mut ready: Vec<String> = nodes
        .state()
        .iter()
        .filter(|n| is_ready(n))
        .map(|n| n.name_any())
        .collect();
    ready.sort();
    let mut mine = BTreeSet::new();
    for service in services.state() {
        let is_lb = service.spec.as_ref().and_then(|s| s.type_.as_deref()) == Some("LoadBalancer");
        if !is_lb {
            continue;
        }
        let reference = ServiceRef {
            namespace: service.namespace().unwrap_or_default(),
            name: service.name_any(),
        };
        let key = reference.to_string();
        let local = service
            .spec
            .as_ref()
            .and_then(|s| s.external_traffic_policy.as_deref())
            == Some("Local");
        let chosen = if local {
            let serving = nodes_with_ready_endpoints(view, &reference);
            let candidates: Vec<String> = ready
                .iter()
                .filter(|n| serving.contains(*n))
                .cloned()
                .collect();
            announcer(&key, &candidates).cloned()
        } else {
            announcer(&key, &ready).cloned()
        };
        if chosen.as_deref() != Some(me) {
            continue;
        }
        let ingress = service
            .status
            .as_ref()
            .and_then(|s| s.load_balancer.as_ref())
            .and_then(|lb| lb.ingress.as_ref());
        for ip in ingress
            .into_iter()
            .flatten()
            .filter_map(|i| i.ip.as_deref()?.parse().ok())
        {
            mine.insert(ip);
        }
    }
    mine
}

/// The /32 IPv4 addresses on the interface (with their messages, for deletion).
async fn held(
    netlink: &rtnetlink::Handle,
    index: u32,
) -> Result<Vec<(Ipv4Addr, AddressMessage)>, rtnetlink::Error> {
    let mut addresses = netlink
        .address()
        .get()
        .set_link_index_filter(index)
        .execute();
    let mut held = Vec::new();
    while let Some(message) = addresses.try_next().await? {
        if message.header.prefix_len != 32 {
            continue;
        }
        let ip = message.attributes.iter().find_map(|a| match a {
            AddressAttribute::Address(std::net::IpAddr::V4(ip)) => Some(*ip),
            _ => None,
        });
        if let Some(ip) = ip {
            held.push((ip, message));
        }
    }
    Ok(held)
}

/// Where to announce, and where to remember what was announced.
#[derive(Debug, Clone)]
pub struct Announcer {
    /// This node's name.
    pub node_name: String,
    /// The underlay interface (`eth0`).
    pub interface: String,
    /// The record of addresses this agent added.
    pub record: PathBuf,
}

impl Announcer {
    fn recorded(&self) -> BTreeSet<Ipv4Addr> {
        std::fs::read_to_string(&self.record)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }

    fn remember(&self, ips: &BTreeSet<Ipv4Addr>) {
        let text: String = ips.iter().map(|ip| format!("{ip}\n")).collect();
        if let Err(e) = std::fs::write(&self.record, text) {
            warn!(error = %e, path = %self.record.display(), "cannot record the announced addresses");
        }
    }
}

/// Keep the interface's announced addresses equal to the desired ones, forever.
pub async fn run(
    services: Store<Service>,
    nodes: Store<Node>,
    view: std::sync::Arc<ServiceView>,
    announcer: Announcer,
    netlink: rtnetlink::Handle,
) {
    let _ = services.wait_until_ready().await;
    let _ = nodes.wait_until_ready().await;
    loop {
        if let Err(e) = sync(&services, &nodes, &view, &announcer, &netlink).await {
            let interface = &announcer.interface;
            warn!(error = %e, %interface, "cannot update the announced LoadBalancer addresses");
        }
        tokio::time::sleep(RESYNC).await;
    }
}

async fn sync(
    services: &Store<Service>,
    nodes: &Store<Node>,
    view: &ServiceView,
    announcer: &Announcer,
    netlink: &rtnetlink::Handle,
) -> Result<(), String> {
    let interface = announcer.interface.as_str();
    let Some(index) = link_index(netlink, interface)
        .await
        .map_err(|e| e.to_string())?
    else {
        return Err(format!("no interface {interface}"));
    };
    let want = desired(services, nodes, view, &announcer.node_name);
    let have = held(netlink, index).await.map_err(|e| e.to_string())?;
    let ours = announcer.recorded();
    // Record first: an address added below is always known even if the agent dies.
    announcer.remember(&ours.union(&want).copied().collect());
    for (ip, message) in &have {
        if ours.contains(ip) && !want.contains(ip) {
            netlink
                .address()
                .del(message.clone())
                .execute()
                .await
                .map_err(|e| format!("removing {ip}: {e}"))?;
            info!(%ip, "stopped announcing a LoadBalancer address");
        }
    }
    for &ip in &want {
        if have.iter().any(|(held, _)| *held == ip) {
            continue;
        }
        match netlink.address().add(index, ip.into(), 32).execute().await {
            Ok(()) => info!(%ip, %interface, "announcing a LoadBalancer address"),
            Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -17 => {}
            Err(e) => return Err(format!("adding {ip}: {e}")),
        }
    }
    announcer.remember(&want);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_agent_picks_the_same_ready_node() {
        let nodes: Vec<String> = ["n1", "n2", "n3"].iter().map(|s| (*s).to_owned()).collect();
        let first = announcer("default/front", &nodes).cloned();
        assert_eq!(announcer("default/front", &nodes).cloned(), first);
        assert!(first.is_some());
        assert_eq!(announcer("default/front", &[]), None);
        // Services spread over the nodes.
        let chosen: BTreeSet<&String> = (0..30)
            .filter_map(|i| announcer(&format!("ns/svc{i}"), &nodes))
            .collect();
        assert_eq!(chosen.len(), 3);
    }
}
