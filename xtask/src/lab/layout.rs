//! Names, paths and addresses of the lab: the single place that decides them.

use std::{net::Ipv4Addr, path::PathBuf};

use crate::{cmd::workspace_root, host};

/// Name of the underlay bridge in the root namespace.
pub const BRIDGE: &str = "skiff0";
/// Address of the root namespace on the underlay (etcd and the API server listen here too).
pub const BRIDGE_ADDR: Ipv4Addr = Ipv4Addr::new(172, 30, 0, 1);
/// Prefix length of the underlay subnet.
pub const UNDERLAY_PREFIX: u8 = 24;
/// Prefix of every node's network namespace name.
pub const NETNS_PREFIX: &str = "skiff-node-";
/// Prefix of the root-namespace end of every node's veth.
pub const HOST_VETH_PREFIX: &str = "skiff-n";
/// Name of the cgroup (in every hierarchy) and bpffs directory under which the lab lives.
pub const CGROUP_AND_PIN_ROOT: &str = "skiff";
/// etcd client port (on 127.0.0.1 and the bridge address).
pub const ETCD_CLIENT_PORT: u16 = 2379;
/// Plain-HTTP port of etcd's /health and /metrics (127.0.0.1 only).
pub const ETCD_METRICS_PORT: u16 = 2381;
/// etcd peer port (127.0.0.1 only).
pub const ETCD_PEER_PORT: u16 = 2380;
/// HTTPS port of skiff-control (127.0.0.1 and the bridge address).
pub const CONTROL_PORT: u16 = 6443;
/// Plain-HTTP port of skiff-control's health checks (/healthz, /livez, /readyz only) on
/// 127.0.0.1.
pub const CONTROL_HEALTH_PORT: u16 = 10257;
/// Port of each agent's node HTTP API (TLS, client certificates) on its node address.
pub const AGENT_PORT: u16 = 10250;
/// Port of each agent's plain-HTTP /healthz and /metrics on its node address.
pub const AGENT_HEALTH_PORT: u16 = 10248;
/// Port of the lab's image registry on the bridge address (every node's registry mirror).
pub const REGISTRY_PORT: u16 = 5001;
/// LoadBalancer Service addresses on the underlay (the node agents answer for them).
pub const LOAD_BALANCER_POOL: &str = "172.30.0.200-172.30.0.250";
/// Largest node count the underlay subnet has room for.
pub const MAX_NODES: usize = 200;

/// One lab node.
#[derive(Debug, Clone)]
pub struct Node {
    /// Node name, also its network namespace and containerd namespace name.
    pub name: String,
    /// Root-namespace end of its veth (attached to the bridge).
    pub host_veth: String,
    /// Its address on the underlay.
    pub address: Ipv4Addr,
    /// Its pod CIDR (`10.244.N.0/24`).
    pub pod_cidr: String,
}

impl Node {
    /// Node number `index` (1-based).
    pub fn new(index: usize) -> Self {
        let octet = u8::try_from(10 + index).unwrap_or(u8::MAX);
        Self {
            name: format!("{NETNS_PREFIX}{index}"),
            host_veth: format!("{HOST_VETH_PREFIX}{index}"),
            address: Ipv4Addr::new(172, 30, 0, octet),
            pod_cidr: format!("10.244.{index}.0/24"),
        }
    }
}

/// Paths of one lab on this machine.
#[derive(Debug, Clone)]
pub struct Layout {
    /// `target/lab`.
    pub root: PathBuf,
    /// Cargo profile directory the daemons run from (`debug` or `release`).
    pub profile: &'static str,
}

impl Layout {
    /// The lab of this checkout. The target directory is resolved, so a checkout whose
    /// `target` links to a shared one names the lab by the paths the kernel reports for its
    /// mounts (otherwise `down` could not find them).
    pub fn current() -> Self {
        let target = workspace_root().join("target");
        Self {
            root: std::fs::canonicalize(&target).unwrap_or(target).join("lab"),
            profile: "debug",
        }
    }

    /// The same lab running release builds (for benchmarks).
    pub fn release() -> Self {
        Self {
            profile: "release",
            ..Self::current()
        }
    }
    /// The record of what `up` started.
    pub fn record_file(&self) -> PathBuf {
        self.root.join("lab.json")
    }
    /// Daemon logs.
    pub fn logs(&self) -> PathBuf {
        self.root.join("logs")
    }
    /// etcd's data directory.
    pub fn etcd_data(&self) -> PathBuf {
        self.root.join("etcd")
    }
    /// etcd's own PKI (CA, member and client certificates).
    pub fn etcd_pki(&self) -> PathBuf {
        self.root.join("etcd-pki")
    }
    /// etcd's client URL (mutual TLS).
    pub fn etcd_url(&self) -> String {
        format!("https://127.0.0.1:{ETCD_CLIENT_PORT}")
    }
    /// skiff-control's flags to reach etcd: the URL, mutual TLS, encryption at rest.
    pub fn etcd_client_args(&self) -> Vec<std::ffi::OsString> {
        let pki = self.etcd_pki();
        let mut args: Vec<std::ffi::OsString> = Vec::new();
        for (flag, value) in [
            ("--etcd", std::ffi::OsString::from(self.etcd_url())),
            ("--etcd-cafile", pki.join("ca.crt").into()),
            ("--etcd-certfile", pki.join("client.crt").into()),
            ("--etcd-keyfile", pki.join("client.key").into()),
            (
                "--encryption-provider-config",
                self.control_dir().join("encryption.yaml").into(),
            ),
        ] {
            args.push(flag.into());
            args.push(value);
        }
        args
    }
    /// containerd's root, state and socket live here.
    pub fn containerd_dir(&self) -> PathBuf {
        self.root.join("containerd")
    }
    /// containerd's gRPC socket.
    pub fn containerd_socket(&self) -> PathBuf {
        self.containerd_dir().join("containerd.sock")
    }
    /// The lab registry's storage and config.
    pub fn registry_dir(&self) -> PathBuf {
        self.root.join("registry")
    }
    /// skiff-control's data directory.
    pub fn control_dir(&self) -> PathBuf {
        self.root.join("control")
    }
    /// The key ServiceAccount tokens are signed with (every replica's).
    pub fn service_account_key(&self) -> PathBuf {
        self.control_dir().join("service-account.key")
    }
    /// A node agent's state directory.
    pub fn node_dir(&self, node: &Node) -> PathBuf {
        self.root.join("nodes").join(&node.name)
    }
    /// The kubeconfig `up` writes.
    pub fn kubeconfig(&self) -> PathBuf {
        self.root.join("kubeconfig")
    }
    /// Where built binaries are.
    pub fn bin(&self, name: &str) -> PathBuf {
        workspace_root()
            .join("target")
            .join(self.profile)
            .join(name)
    }
}

/// The cgroup parent of a node in the cgroup2 hierarchy (where the socket LB attaches).
pub fn node_cgroup2(node: &Node) -> Option<PathBuf> {
    host::cgroup2_mount().map(|m| m.join(CGROUP_AND_PIN_ROOT).join(&node.name))
}

/// The bpffs directory where a node's agent pins its maps and links.
pub fn node_pin_dir(node: &Node) -> PathBuf {
    PathBuf::from(host::BPFFS)
        .join(CGROUP_AND_PIN_ROOT)
        .join(&node.name)
}

/// Every cgroup hierarchy's `skiff` directory (v2 and each v1 controller).
pub fn cgroup_roots() -> Vec<PathBuf> {
    host::cgroup2_mount()
        .into_iter()
        .chain(host::cgroup1_mounts())
        .map(|m| m.join(CGROUP_AND_PIN_ROOT))
        .collect()
}
