//! The lab's underlay: the `skiff0` bridge and one network namespace per node.
//!
//! xtask drives `ip` (iproute2); the agent itself uses netlink directly.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::layout::{BRIDGE, BRIDGE_ADDR, HOST_VETH_PREFIX, NETNS_PREFIX, Node, UNDERLAY_PREFIX};
use crate::cmd::{command, output, run_cmd, succeeds};

fn ip<const N: usize>(args: [&str; N]) -> Result<()> {
    output(&mut command("ip", args)).map(drop)
}

fn link_exists(name: &str) -> bool {
    succeeds(&mut command("ip", ["link", "show", "dev", name]))
}

/// Create the bridge with the underlay address (idempotent).
pub fn create_bridge() -> Result<()> {
    if !link_exists(BRIDGE) {
        ip(["link", "add", BRIDGE, "type", "bridge"])?;
    }
    let cidr = format!("{BRIDGE_ADDR}/{UNDERLAY_PREFIX}");
    let addrs = output(&mut command(
        "ip",
        ["-4", "-o", "addr", "show", "dev", BRIDGE],
    ))?;
    if !addrs.contains(&format!("inet {cidr}")) {
        ip(["addr", "add", &cidr, "dev", BRIDGE])?;
    }
    ip(["link", "set", BRIDGE, "up"])
}

/// Create a node: its namespace, a veth to the bridge, its underlay address, loopback up.
/// No default route: the node reaches the underlay subnet and nothing else.
pub fn create_node(node: &Node) -> Result<()> {
    let ns = node.name.as_str();
    ip(["netns", "add", ns]).with_context(|| format!("creating network namespace {ns}"))?;
    let peer = format!("{}p", node.host_veth);
    ip([
        "link",
        "add",
        &node.host_veth,
        "type",
        "veth",
        "peer",
        "name",
        &peer,
    ])?;
    ip(["link", "set", &peer, "netns", ns])?;
    ip(["link", "set", &node.host_veth, "master", BRIDGE])?;
    // The bridge side stands for the wire: frames leave it with complete checksums, as
    // they arrive from a real network (XDP on the node's eth0 rewrites checksums
    // incrementally and cannot see a checksum left for offload).
    output(&mut command(
        "ethtool",
        ["-K", &node.host_veth, "tx", "off"],
    ))
    .with_context(|| format!("turning off checksum offload on {}", node.host_veth))?;
    ip(["link", "set", &node.host_veth, "up"])?;
    let in_ns = |args: &[&str]| {
        let mut cmd = command("ip", ["-n", ns]);
        cmd.args(args);
        output(&mut cmd).map(drop)
    };
    in_ns(&["link", "set", &peer, "name", "eth0"])?;
    in_ns(&[
        "addr",
        "add",
        &format!("{}/{UNDERLAY_PREFIX}", node.address),
        "dev",
        "eth0",
    ])?;
    in_ns(&["link", "set", "eth0", "up"])?;
    in_ns(&["link", "set", "lo", "up"])?;
    // The root namespace hosts the API server (the `kubernetes` Service's endpoint): its
    // replies to pods go back through their node, never out of the machine (it goes with
    // the bridge at `down`).
    ip([
        "route",
        "replace",
        &node.pod_cidr,
        "via",
        &node.address.to_string(),
        "dev",
        BRIDGE,
    ])
    .with_context(|| format!("routing {} via {}", node.pod_cidr, node.name))?;
    Ok(())
}

/// Names of every lab network namespace present (`skiff-node-*`).
pub fn lab_namespaces() -> Vec<String> {
    output(&mut command("ip", ["netns", "list"]))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(NETNS_PREFIX))
        .map(str::to_owned)
        .collect()
}

/// Names of every lab link in the root namespace (the bridge and node veths).
pub fn lab_links() -> Vec<String> {
    output(&mut command("ip", ["-o", "link", "show"]))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_owned())
        .filter(|n| n == BRIDGE || n.starts_with(HOST_VETH_PREFIX))
        .collect()
}

/// Remove every lab namespace and link (idempotent).
pub fn remove_all() -> Result<()> {
    for ns in lab_namespaces() {
        run_cmd(command("ip", ["netns", "delete", &ns]).stdout(std::process::Stdio::null()))
            .with_context(|| format!("deleting network namespace {ns}"))?;
    }
    // A deleted namespace takes its veths' root-side peers with it, but the
    // kernel does that asynchronously: a peer listed here may vanish before
    // (or while) it is deleted. Only a link that is still there after a
    // failed delete is an error.
    for link in lab_links() {
        if let Err(err) = ip(["link", "delete", &link])
            && link_exists(&link)
        {
            return Err(err.context(format!("deleting link {link}")));
        }
    }
    // Return only once the kernel has finished, so that a following `up`
    // never meets a half-removed veth of the same name.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = lab_links();
        if left.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            anyhow::bail!(
                "lab links still present 10 s after deleting them: {}",
                left.join(", ")
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The IPv4 address of `eth0` in a node namespace, if it has one.
pub fn node_address(ns: &str) -> Option<Ipv4Addr> {
    let out = output(&mut command(
        "ip",
        ["-n", ns, "-4", "-o", "addr", "show", "dev", "eth0"],
    ))
    .ok()?;
    out.split_whitespace()
        .skip_while(|w| *w != "inet")
        .nth(1)
        .and_then(|cidr| cidr.split('/').next())
        .and_then(|a| a.parse().ok())
}
