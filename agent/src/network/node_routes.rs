//! Routes from this node to every other node's pod CIDR, kept in step with the Node objects
//! (`10.244.M.0/24 via <node M's InternalIP>`).

use std::{collections::BTreeMap, net::Ipv4Addr};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use kube::{
    Api, Client,
    runtime::{WatchStreamExt, watcher},
};
use rtnetlink::{Handle, RouteMessageBuilder};

use super::Cidr;

/// The route another node needs: its pod CIDR via its InternalIP.
fn route_of(node: &Node) -> Option<(Cidr, Ipv4Addr)> {
    let cidr = Cidr::parse(node.spec.as_ref()?.pod_cidr.as_deref()?).ok()?;
    let ip = node
        .status
        .as_ref()?
        .addresses
        .as_ref()?
        .iter()
        .find(|a| a.type_ == "InternalIP")?
        .address
        .parse()
        .ok()?;
    Some((cidr, ip))
}

/// Watch Nodes forever, installing a route for every other node's pod CIDR.
pub async fn sync(client: Client, handle: Handle, own_node: String) {
    let nodes: Api<Node> = Api::all(client);
    let mut installed: BTreeMap<String, (Cidr, Ipv4Addr)> = BTreeMap::new();
    let mut events = watcher(nodes, watcher::Config::default())
        .default_backoff()
        .applied_objects()
        .boxed();
    while let Some(event) = events.next().await {
        let node = match event {
            Ok(node) => node,
            Err(e) => {
                tracing::debug!(error = %e, "node watch interrupted; resuming");
                continue;
            }
        };
        let name = node.metadata.name.clone().unwrap_or_default();
        if name == own_node {
            continue;
        }
        let Some(route) = route_of(&node) else {
            continue;
        };
        if installed.get(&name) == Some(&route) {
            continue;
        }
        let (cidr, via) = route;
        let message = RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(cidr.network, cidr.prefix)
            .gateway(via)
            .build();
        match handle.route().add(message).replace().execute().await {
            Ok(()) => {
                tracing::info!(node = %name, %cidr, %via, "route to the node's pods installed");
                installed.insert(name, route);
            }
            Err(e) => {
                tracing::warn!(node = %name, %cidr, error = %e, "cannot route to the node's pods")
            }
        }
    }
}
