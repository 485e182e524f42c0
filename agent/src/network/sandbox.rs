//! One pod's network: namespace, veth pair (`sk<uid>` on the node, `eth0` in the pod),
//! address, routes; and tearing it down again.

use std::{net::Ipv4Addr, os::fd::AsRawFd, path::Path};

use futures::TryStreamExt;
use netlink_packet_route::{
    link::{InfoData, InfoVeth},
    route::RouteScope,
};
use rtnetlink::{Handle, LinkMessageBuilder, LinkUnspec, LinkVeth, RouteMessageBuilder};

use super::{NetworkError, io, netlink, netns};

/// Name of the node-side veth of a pod (≤ 15 bytes, from the pod UID).
pub fn host_veth(pod_uid: &str) -> String {
    let hex: String = pod_uid
        .chars()
        .filter(char::is_ascii_hexdigit)
        .take(11)
        .collect();
    format!("sk{hex}")
}

/// Index of a link by name in the namespace `handle` talks to.
pub async fn link_index(handle: &Handle, name: &str) -> Result<Option<u32>, NetworkError> {
    let mut links = handle.link().get().match_name(name.to_owned()).execute();
    match links.try_next().await {
        Ok(Some(link)) => Ok(Some(link.header.index)),
        Ok(None) => Ok(None),
        // ENODEV: no such link.
        Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -19 => Ok(None),
        Err(e) => Err(netlink(format!("looking up link {name}"))(e)),
    }
}

/// Prepare the node namespace once: the pod gateway address on `lo` and IPv4 forwarding.
pub async fn prepare_node(handle: &Handle, gateway: Ipv4Addr) -> Result<(), NetworkError> {
    std::fs::write("/proc/sys/net/ipv4/ip_forward", "1")
        .map_err(io("enabling IPv4 forwarding in the node namespace"))?;
    let lo = link_index(handle, "lo")
        .await?
        .ok_or_else(|| NetworkError::Io {
            what: "the node namespace has no lo".to_owned(),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        })?;
    handle
        .link()
        .set(LinkUnspec::new_with_index(lo).up().build())
        .execute()
        .await
        .map_err(netlink("setting lo up"))?;
    add_local_address(handle, gateway).await
}

/// Put `ip`/32 on the node namespace's `lo`, so the node answers for it (the pod gateway,
/// the cluster DNS address). Already present is fine.
pub async fn add_local_address(handle: &Handle, ip: Ipv4Addr) -> Result<(), NetworkError> {
    let lo = link_index(handle, "lo")
        .await?
        .ok_or_else(|| NetworkError::Io {
            what: "the node namespace has no lo".to_owned(),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        })?;
    match handle.address().add(lo, ip.into(), 32).execute().await {
        Ok(()) => Ok(()),
        // EEXIST: already there from a previous run.
        Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -17 => Ok(()),
        Err(e) => Err(netlink(format!("adding {ip} to lo"))(e)),
    }
}

/// Create the pod's namespace (if needed) and wire it: veth, address, routes on both sides.
pub async fn set_up(
    handle: &Handle,
    netns_path: &Path,
    pod_uid: &str,
    ip: Ipv4Addr,
    gateway: Ipv4Addr,
) -> Result<(), NetworkError> {
    netns::create(netns_path).await?;
    let veth = host_veth(pod_uid);
    if let Some(index) = link_index(handle, &veth).await? {
        handle
            .link()
            .del(index)
            .execute()
            .await
            .map_err(netlink(format!("removing stale {veth}")))?;
    }
    let ns =
        std::fs::File::open(netns_path).map_err(io(format!("opening {}", netns_path.display())))?;
    let peer = LinkMessageBuilder::<LinkUnspec>::new()
        .name("eth0".to_owned())
        .setns_by_fd(ns.as_raw_fd())
        .build();
    // Created down: IPv6 goes off on the host side before the link comes up (see
    // `netns::create`); the pod side lands in a namespace where it is off already.
    let pair = LinkVeth::new(&veth, "eth0")
        .set_info_data(InfoData::Veth(InfoVeth::Peer(peer)))
        .build();
    handle
        .link()
        .add(pair)
        .execute()
        .await
        .map_err(netlink(format!("creating veth {veth}")))?;
    drop(ns);
    let index = link_index(handle, &veth)
        .await?
        .ok_or_else(|| NetworkError::Io {
            what: format!("veth {veth} vanished after creation"),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        })?;
    netns::disable_ipv6(&veth);
    set_link_up(handle, index, &veth).await?;
    let route = RouteMessageBuilder::<Ipv4Addr>::new()
        .destination_prefix(ip, 32)
        .output_interface(index)
        .scope(RouteScope::Link)
        .build();
    handle
        .route()
        .add(route)
        .replace()
        .execute()
        .await
        .map_err(netlink(format!("routing {ip} to {veth}")))?;
    netns::run_in(netns_path, move || configure_pod_side(ip, gateway)).await
}

/// Set link `index` (called `name` in errors) up.
async fn set_link_up(handle: &Handle, index: u32, name: &str) -> Result<(), NetworkError> {
    handle
        .link()
        .set(LinkUnspec::new_with_index(index).up().build())
        .execute()
        .await
        .map_err(netlink(format!("setting {name} up")))
}

/// Inside the pod namespace: lo and eth0 up, the address, the gateway link route and the
/// default route.
async fn configure_pod_side(ip: Ipv4Addr, gateway: Ipv4Addr) -> Result<(), NetworkError> {
    let (connection, handle, _) =
        rtnetlink::new_connection().map_err(io("netlink socket in the pod namespace"))?;
    tokio::spawn(connection);
    for name in ["lo", "eth0"] {
        let index = link_index(&handle, name)
            .await?
            .ok_or_else(|| NetworkError::Io {
                what: format!("the pod namespace has no {name}"),
                source: std::io::Error::from(std::io::ErrorKind::NotFound),
            })?;
        set_link_up(&handle, index, name).await?;
        if name == "eth0" {
            match handle.address().add(index, ip.into(), 32).execute().await {
                Ok(()) => {}
                Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -17 => {}
                Err(e) => return Err(netlink(format!("adding {ip} to eth0"))(e)),
            }
            let link_route = RouteMessageBuilder::<Ipv4Addr>::new()
                .destination_prefix(gateway, 32)
                .output_interface(index)
                .scope(RouteScope::Link)
                .build();
            handle
                .route()
                .add(link_route)
                .replace()
                .execute()
                .await
                .map_err(netlink("routing the gateway"))?;
            let default = RouteMessageBuilder::<Ipv4Addr>::new()
                .gateway(gateway)
                .output_interface(index)
                .build();
            handle
                .route()
                .add(default)
                .replace()
                .execute()
                .await
                .map_err(netlink("adding the default route"))?;
        }
    }
    Ok(())
}

/// Remove the pod's veth (its peer goes with it) and namespace; absent parts are fine.
pub async fn tear_down(
    handle: &Handle,
    netns_path: &Path,
    pod_uid: &str,
) -> Result<(), NetworkError> {
    let veth = host_veth(pod_uid);
    if let Some(index) = link_index(handle, &veth).await? {
        handle
            .link()
            .del(index)
            .execute()
            .await
            .map_err(netlink(format!("removing {veth}")))?;
    }
    netns::remove(netns_path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn veth_names_fit_ifnamsiz() {
        let name = host_veth("3f2a9c1e-7b1d-4e0a-9a8b-1c2d3e4f5a6b");
        assert_eq!(name, "sk3f2a9c1e7b1");
        assert!(name.len() <= 15);
    }
}
