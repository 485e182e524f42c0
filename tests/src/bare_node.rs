//! A node without Skiff, for the kube-proxy comparison: a namespace on the lab's underlay
//! (`skiff-node-bare`, 172.30.0.50) with one "pod" namespace behind a veth, wired the way a
//! Skiff node wires its pods (a /32 per pod, the gateway on the node's `lo`, routes to the
//! other nodes' pod CIDRs over the underlay) but with no eBPF at all — only the rules
//! kube-proxy would write: its iptables mode's, loaded with `iptables-restore`, or its
//! nftables mode's, loaded with `nft -f` (never both at once). For the iptables mode the
//! legacy (x_tables) backend is used: kube-proxy's classic iptables mode, and on this Debian several times
//! faster to restore than the nft-based `iptables` (2.6 s against 0.3 s for 1,000
//! Services), so the comparison does not charge kube-proxy for the slower backend. Names
//! start with the lab's prefixes, so `cargo xtask down` removes anything a killed benchmark
//! leaves.

use std::{
    net::Ipv4Addr,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use crate::{Lab, process};

/// The node namespace.
pub const NODE: &str = "skiff-node-bare";
/// The pod namespace behind it.
pub const POD: &str = "skiff-node-bare-pod";
/// The node's underlay address.
pub const ADDRESS: Ipv4Addr = Ipv4Addr::new(172, 30, 0, 50);
/// The pod's address.
pub const POD_IP: Ipv4Addr = Ipv4Addr::new(10, 244, 250, 2);
/// The pod CIDR routed to the bare node from the Skiff nodes.
const POD_CIDR: &str = "10.244.250.0/24";
/// The pod's gateway (on the bare node's `lo`).
const GATEWAY: &str = "10.244.250.1";
/// The iptables backend kube-proxy's rules are loaded with.
pub const IPTABLES: &str = "iptables-legacy";
/// Its restore command.
const IPTABLES_RESTORE: &str = "iptables-legacy-restore";
/// nftables' command (kube-proxy's nftables mode).
const NFT: &str = "nft";
/// The longest an `nft -f` load may take: the kernel commits 10,000 Services' anonymous
/// verdict maps (one per Service) in minutes, growing with their square.
const NFT_LOAD_LIMIT: Duration = Duration::from_secs(600);
/// The nftables mode's table.
const NFT_TABLE: &str = crate::kube_proxy::nftables::TABLE;
/// The bridge side of the node's veth.
const WIRE_VETH: &str = "skiff-nb";
/// The node side of the pod's veth.
const POD_VETH: &str = "skbarepod";

fn ip(args: &[&str]) -> Result<String, String> {
    process::run("ip", args)
}

/// `program args…` run in the node namespace; its output.
fn in_node(program: &str, args: &[&str]) -> Result<String, String> {
    let mut all = vec!["netns", "exec", NODE, program];
    all.extend(args);
    ip(&all)
}

/// The bare node, removed when dropped.
pub struct BareNode {
    skiff_nodes: Vec<(String, Ipv4Addr)>,
}

impl BareNode {
    /// Create it beside `lab`'s nodes (removing a leftover first).
    pub fn create(lab: &Lab) -> Result<Self, String> {
        let node = Self {
            skiff_nodes: lab
                .nodes
                .iter()
                .map(|n| (n.name.clone(), n.address))
                .collect(),
        };
        node.remove();
        ip(&["netns", "add", NODE])?;
        ip(&["netns", "add", POD])?;
        ip(&[
            "link",
            "add",
            WIRE_VETH,
            "type",
            "veth",
            "peer",
            "name",
            "skiff-nbp",
        ])?;
        ip(&["link", "set", "skiff-nbp", "netns", NODE])?;
        ip(&["link", "set", WIRE_VETH, "master", "skiff0"])?;
        process::run("ethtool", &["-K", WIRE_VETH, "tx", "off"])?;
        ip(&["link", "set", WIRE_VETH, "up"])?;
        let address = format!("{ADDRESS}/24");
        for args in [
            vec!["link", "set", "skiff-nbp", "name", "eth0"],
            vec!["addr", "add", &address, "dev", "eth0"],
            vec!["link", "set", "eth0", "up"],
            vec!["link", "set", "lo", "up"],
            vec!["addr", "add", &format!("{GATEWAY}/32"), "dev", "lo"],
            vec![
                "link", "add", POD_VETH, "type", "veth", "peer", "name", "eth0", "netns", POD,
            ],
            vec!["link", "set", POD_VETH, "up"],
        ] {
            let mut all = vec!["-n", NODE];
            all.extend(args);
            ip(&all)?;
        }
        let pod_ip = format!("{POD_IP}/32");
        ip(&["-n", NODE, "route", "add", &pod_ip, "dev", POD_VETH])?;
        for args in [
            vec!["addr", "add", &pod_ip, "dev", "eth0"],
            vec!["link", "set", "eth0", "up"],
            vec!["link", "set", "lo", "up"],
            vec!["route", "add", GATEWAY, "dev", "eth0", "scope", "link"],
            vec!["route", "add", "default", "via", GATEWAY, "dev", "eth0"],
        ] {
            let mut all = vec!["-n", POD];
            all.extend(args);
            ip(&all)?;
        }
        in_node("sysctl", &["-qw", "net.ipv4.ip_forward=1"])?;
        for (i, (name, address)) in node.skiff_nodes.iter().enumerate() {
            let cidr = format!("10.244.{}.0/24", i + 1);
            ip(&[
                "-n",
                NODE,
                "route",
                "add",
                &cidr,
                "via",
                &address.to_string(),
            ])?;
            ip(&[
                "-n",
                name,
                "route",
                "replace",
                POD_CIDR,
                "via",
                &ADDRESS.to_string(),
            ])?;
        }
        Ok(node)
    }

    /// Load rules with `iptables-restore` (`--noflush`, as kube-proxy does) in the node
    /// namespace; how long the restore took.
    pub fn restore(&self, rules: &str, noflush: bool) -> Result<Duration, String> {
        let mut args = vec!["-w"];
        if noflush {
            args.push("--noflush");
        }
        feed(IPTABLES_RESTORE, &args, rules)
    }

    /// Load a ruleset with `nft -f -` (one transaction, as kube-proxy's nftables mode
    /// writes it) in the node namespace; how long the load took. A load still running after
    /// [`NFT_LOAD_LIMIT`] is killed and reported as failed (if the kernel was already
    /// committing, the table may be loaded all the same; [`Self::flush`] removes it).
    pub fn nft_load(&self, ruleset: &str) -> Result<Duration, String> {
        let limit = format!("{}s", NFT_LOAD_LIMIT.as_secs());
        feed(
            "timeout",
            &["--kill-after=10s", &limit, NFT, "-f", "-"],
            ruleset,
        )
        .map_err(|e| format!("nft -f: {e} (a load is stopped after {limit})"))
    }

    /// Remove every rule kube-proxy's modes would have left: both iptables tables of the
    /// backend the rules were loaded with, flushed and their chains deleted, and the
    /// nftables mode's table.
    pub fn flush(&self) {
        for table in ["nat", "filter"] {
            for action in ["-F", "-X"] {
                let _ = in_node(IPTABLES, &["-w", "-t", table, action]);
            }
        }
        if self.has_nft_table() {
            let _ = in_node(NFT, &["delete", "table", NFT_TABLE]);
        }
    }

    /// Whether the nftables mode's table is loaded.
    pub fn has_nft_table(&self) -> bool {
        in_node(NFT, &["list", "tables"]).is_ok_and(|tables| {
            tables
                .lines()
                .any(|l| l.trim() == format!("table {NFT_TABLE}"))
        })
    }

    /// Whether the node namespace holds none of kube-proxy's rules: no rule in the iptables
    /// backend's nat and filter tables (only the built-in chains' policies) and no
    /// nftables table. What the floors must be measured on.
    pub fn is_bare(&self) -> bool {
        let no_iptables_rules = ["nat", "filter"].iter().all(|table| {
            in_node(IPTABLES, &["-w", "-t", table, "-S"])
                .is_ok_and(|text| text.lines().all(|l| l.starts_with("-P ")))
        });
        no_iptables_rules && !self.has_nft_table()
    }

    /// A command run in the pod namespace.
    pub fn in_pod(&self, program: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", POD, program]);
        cmd
    }

    fn remove(&self) {
        for (name, _) in &self.skiff_nodes {
            let _ = ip(&["-n", name, "route", "del", POD_CIDR]);
        }
        let _ = ip(&["link", "del", WIRE_VETH]);
        let _ = ip(&["netns", "del", POD]);
        let _ = ip(&["netns", "del", NODE]);
    }
}

/// Run `program args…` in the node namespace with `input` on its stdin; how long it took.
fn feed(program: &str, args: &[&str], input: &str) -> Result<Duration, String> {
    let started = Instant::now();
    let mut child = Command::new("ip")
        .args(["netns", "exec", NODE, program])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{program}: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        use std::io::Write as _;
        stdin
            .write_all(input.as_bytes())
            .map_err(|e| format!("feeding {program}: {e}"))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("{program}: {e}"))?;
    let took = started.elapsed();
    if !out.status.success() {
        return Err(format!(
            "{program} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(took)
}

impl Drop for BareNode {
    fn drop(&mut self) {
        self.remove();
    }
}
