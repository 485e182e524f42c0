//! The command line: the daemon's flags ([`Args`]) and the helper modes ([`Cli`]).

use std::{net::SocketAddr, path::PathBuf};

use clap::{Parser, Subcommand};
use skiff_agent::datapath::inspect;

/// Command line of skiff-agent.
#[derive(Parser, Debug)]
#[command(
    name = "skiff-agent",
    version,
    about = "Skiff node agent helper modes (run without a subcommand for the daemon)"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Write a container's stdout/stderr (fds 3 and 4) to FILE in CRI log format; started
    /// by containerd's shim, not by hand.
    LogShim {
        /// Log file.
        file: PathBuf,
    },
    /// Manage images in this node's containerd namespace.
    Images {
        #[command(subcommand)]
        command: ImagesCommand,
    },
    /// Inspect the Service datapath of a node: frontends, backends, conntrack, Maglev,
    /// counters, live events (`monitor`) and one flow's path (`trace`).
    Bpf {
        #[command(flatten)]
        target: inspect::Target,
        #[command(subcommand)]
        command: inspect::Command,
    },
}

#[derive(Subcommand, Debug)]
pub enum ImagesCommand {
    /// Import the images of an OCI archive (air-gapped nodes).
    Import {
        /// The archive (`cargo xtask images` writes them to target/images/).
        file: PathBuf,
        /// containerd namespace (the node name).
        #[arg(long, env = "SKIFF_NODE_NAME")]
        namespace: String,
        /// containerd socket.
        #[arg(long, default_value = "/run/containerd/containerd.sock")]
        containerd: PathBuf,
    },
}

/// Flags of the daemon.
#[derive(Parser, Debug)]
#[command(
    name = "skiff-agent",
    version,
    about = "Skiff node agent: kubelet and eBPF Service datapath (helper modes: log-shim, images, bpf)"
)]
pub struct Args {
    /// Name of this node.
    #[arg(long, env = "SKIFF_NODE_NAME")]
    pub node_name: String,
    /// Network namespace (under /run/netns) to run in; the host namespace if absent.
    #[arg(long)]
    pub netns: Option<String>,
    /// cgroup2 directory that is the parent of every pod cgroup on this node; the socket LB
    /// attaches here.
    #[arg(long)]
    pub cgroup: PathBuf,
    /// bpffs directory where maps and links are pinned (survive agent restarts).
    #[arg(long)]
    pub bpffs_dir: PathBuf,
    /// Address of the node HTTP API (/healthz, /metrics).
    #[arg(long, default_value = "127.0.0.1:10250")]
    pub listen: SocketAddr,
    /// Directory for this agent's state.
    #[arg(long)]
    pub state_dir: PathBuf,
    /// Kubeconfig to reach the API server (the node's own client certificate).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// Serving certificate of the node API (PEM, signed by the cluster CA so the API
    /// server can verify this node); without it a self-signed one is made.
    #[arg(long, requires = "tls_private_key_file")]
    pub tls_cert_file: Option<PathBuf>,
    /// Private key of --tls-cert-file.
    #[arg(long, requires = "tls_cert_file")]
    pub tls_private_key_file: Option<PathBuf>,
    /// containerd socket.
    #[arg(long, default_value = "/run/containerd/containerd.sock")]
    pub containerd: PathBuf,
    /// Pod CIDR to claim if the Node has none.
    #[arg(long)]
    pub pod_cidr: Option<String>,
    /// Maximum pods on this node.
    #[arg(long, default_value_t = 110)]
    pub max_pods: u32,
    /// Registry mirrors (k3s registries.yaml format).
    #[arg(long)]
    pub registry_config: Option<PathBuf>,
    /// Allow privileged containers.
    #[arg(long)]
    pub allow_privileged: bool,
    /// Most processes (and threads) one pod may run, all its containers together (kubelet's
    /// podPidsLimit): written to the pod cgroup's pids.max and to each container's OCI
    /// `linux.resources.pids.limit`, so a fork bomb in a pod cannot exhaust the node's PIDs.
    /// Skiff limits pods by default; kubelet's default is unlimited (podPidsLimit -1). Give
    /// 0 or a negative value (`--pod-max-pids=-1`) to turn the limit off.
    #[arg(long, default_value_t = 4096, allow_negative_numbers = true)]
    pub pod_max_pids: i64,
    /// Run containers that name no seccomp profile under RuntimeDefault (containerd's
    /// default profile) rather than Unconfined (kubelet's --seccomp-default).
    #[arg(long)]
    pub seccomp_default: bool,
    /// A RuntimeClass handler this node offers, NAME=PATH of an OCI runtime binary (runc's
    /// command line); repeatable. `runc` (the default) and `crun` (where installed) are
    /// always offered.
    #[arg(long = "runtime-handler", value_parser = skiff_agent::kubelet::runtime_class::parse_handler)]
    pub runtime_handlers: Vec<(String, PathBuf)>,
    /// Pod starts (sandbox and containers) run at most this many at once, first come first
    /// served (default: four per CPU; 0: all at once).
    #[arg(long)]
    pub parallel_pod_starts: Option<usize>,
    /// Plain-HTTP address for /healthz and /metrics only (kubelet's healthz port, 10248).
    #[arg(long)]
    pub healthz_listen: Option<SocketAddr>,
    /// The cluster DNS address: the node-local resolver answers on it (pods' resolv.conf
    /// points there).
    #[arg(long, default_value = "10.96.0.10")]
    pub cluster_dns: std::net::Ipv4Addr,
    /// The cluster domain.
    #[arg(long, default_value = "cluster.local")]
    pub cluster_domain: String,
    /// Upstream DNS server for names outside the cluster domain (none: they are REFUSED).
    #[arg(long)]
    pub dns_upstream: Option<SocketAddr>,
    /// Interface on which this node answers (ARP) for LoadBalancer addresses it is chosen
    /// to announce; empty: never.
    #[arg(long, default_value = "eth0")]
    pub announce_interface: String,
    /// The underlay interface: NodePort, LoadBalancer and externalIP traffic arrives here
    /// (tc and XDP attach to it); empty: none.
    #[arg(long, default_value = "eth0")]
    pub external_interface: String,
    /// Translate Service addresses at the socket (connect/sendmsg) for in-cluster clients;
    /// `false` sends east-west traffic through the per-packet tc path instead.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub socket_lb: bool,
    /// NodePort/LoadBalancer acceleration on the underlay interface: `xdp` or `none` (tc
    /// only). Switchable live with `skiff-agent bpf config --xdp on|off`.
    #[arg(long, value_enum, default_value_t = Acceleration::None)]
    pub nodeport_acceleration: Acceleration,
    /// XDP attach mode: `best` (native where the driver has it, generic otherwise) or
    /// `generic`.
    #[arg(long, value_enum, default_value_t = XdpModeArg::Best)]
    pub xdp_mode: XdpModeArg,
    /// Source address of hairpin flows (a pod reaching itself through its Service).
    #[arg(long, default_value = "169.254.42.1")]
    pub hairpin_address: std::net::Ipv4Addr,
    /// Maglev table size M (a prime; the same on every node).
    #[arg(long, default_value_t = skiff_ebpf_common::maglev::MAGLEV_DEFAULT_TABLE_SIZE)]
    pub maglev_table_size: u32,
    /// Maglev hash seed (the same on every node).
    #[arg(long, default_value_t = skiff_agent::datapath::maglev::DEFAULT_SEED)]
    pub maglev_hash_seed: u64,
    /// Capacity of the services map (frontend entries plus one slot per backend).
    #[arg(long, default_value_t = skiff_ebpf_common::lb::SERVICES_MAX_ENTRIES)]
    pub bpf_services_max: u32,
    /// Capacity of the backends map.
    #[arg(long, default_value_t = skiff_ebpf_common::lb::BACKENDS_MAX_ENTRIES)]
    pub bpf_backends_max: u32,
    /// Capacity of the conntrack map (two entries per flow); default: from the host's memory.
    #[arg(long)]
    pub bpf_ct_max: Option<u32>,
    /// Capacity of the ClientIP affinity map.
    #[arg(long, default_value_t = skiff_ebpf_common::affinity::AFFINITY_MAX_ENTRIES)]
    pub bpf_affinity_max: u32,
    /// Capacity of the socket reverse-translation map.
    #[arg(long, default_value_t = skiff_ebpf_common::sock::SOCK_REV_NAT_MAX_ENTRIES)]
    pub bpf_sock_rev_max: u32,
}

/// NodePort acceleration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Acceleration {
    /// tc only.
    None,
    /// XDP on the underlay interface.
    Xdp,
}

/// XDP attach mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum XdpModeArg {
    /// Native where possible.
    Best,
    /// Generic (skb) mode.
    Generic,
}
