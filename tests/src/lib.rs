//! Helpers shared by Skiff's end-to-end tests.
//!
//! The tests run against the real lab `cargo xtask test` brings up (real etcd, containerd,
//! kernel eBPF, kubectl). The lab is described to them through the environment
//! (`SKIFF_LAB_DIR`, `SKIFF_LAB_NODES`, `SKIFF_XTASK_BIN`). Without it a test skips with a
//! message — except under `CI=true`, where a test that cannot run fails.

pub mod bare_node;
pub mod bench;
pub mod cluster;
pub mod control_replica;
pub mod datapath_checks;
pub mod kube_proxy;
pub mod manifests;
pub mod netns;
pub mod oci_runtime;
pub mod process;
pub mod streaming;
pub mod traffic;
pub mod webhook_server;

use std::{
    net::Ipv4Addr,
    path::{Path, PathBuf},
};

/// etcd's client URL in the lab (mutual TLS: see [`etcd_options`]).
pub const ETCD_URL: &str = "https://127.0.0.1:2379";

/// Connection options for the lab's etcd with the client certificate of its PKI in
/// `pki_dir` (`target/lab/etcd-pki`).
pub fn etcd_options(pki_dir: &Path) -> etcd_client::ConnectOptions {
    let read = |name: &str| {
        std::fs::read_to_string(pki_dir.join(name))
            .unwrap_or_else(|e| panic!("reading {}: {e}", pki_dir.join(name).display()))
    };
    etcd_client::ConnectOptions::new().with_tls(
        etcd_client::TlsOptions::new()
            .ca_certificate(etcd_client::Certificate::from_pem(read("ca.crt")))
            .identity(etcd_client::Identity::from_pem(
                read("client.crt"),
                read("client.key"),
            )),
    )
}
/// The underlay address of the root namespace.
pub const BRIDGE_ADDR: Ipv4Addr = Ipv4Addr::new(172, 30, 0, 1);
/// Port of each agent's node API.
pub const AGENT_PORT: u16 = 10250;
/// Port of each agent's plain-HTTP /healthz and /metrics.
pub const AGENT_HEALTH_PORT: u16 = 10248;
/// Prefix of every node namespace name.
pub const NETNS_PREFIX: &str = "skiff-node-";

/// One lab node as the tests see it.
#[derive(Debug, Clone)]
pub struct Node {
    /// Node name (= its network namespace and containerd namespace).
    pub name: String,
    /// Underlay address.
    pub address: Ipv4Addr,
}

/// The lab under test.
#[derive(Debug, Clone)]
pub struct Lab {
    /// `target/lab`.
    pub dir: PathBuf,
    /// The nodes, in order.
    pub nodes: Vec<Node>,
    /// The xtask binary that brought the lab up.
    pub xtask: PathBuf,
    /// The kubectl the tests drive: `SKIFF_KUBECTL`, or the one on PATH (`cargo xtask test`
    /// runs the kubectl sessions once with each).
    pub kubectl: PathBuf,
}

impl Lab {
    /// A client of the lab's etcd (mutual TLS with skiff-control's certificate).
    pub async fn etcd(&self) -> etcd_client::Client {
        etcd_client::Client::connect([ETCD_URL], Some(etcd_options(&self.etcd_pki())))
            .await
            .expect("connecting to the lab etcd")
    }

    /// etcd's PKI directory.
    pub fn etcd_pki(&self) -> PathBuf {
        self.dir.join("etcd-pki")
    }

    /// `etcdctl`'s flags for the lab's etcd (endpoint and client certificate).
    pub fn etcdctl_flags(&self) -> Vec<String> {
        let pki = self.etcd_pki();
        vec![
            format!("--endpoints={ETCD_URL}"),
            format!("--cacert={}", pki.join("ca.crt").display()),
            format!("--cert={}", pki.join("client.crt").display()),
            format!("--key={}", pki.join("client.key").display()),
        ]
    }

    /// skiff-control's flags for the lab's etcd (URL, client certificate, encryption at
    /// rest).
    pub fn control_etcd_flags(&self) -> Vec<String> {
        let pki = self.etcd_pki();
        vec![
            "--etcd".to_owned(),
            ETCD_URL.to_owned(),
            "--etcd-cafile".to_owned(),
            pki.join("ca.crt").display().to_string(),
            "--etcd-certfile".to_owned(),
            pki.join("client.crt").display().to_string(),
            "--etcd-keyfile".to_owned(),
            pki.join("client.key").display().to_string(),
            "--encryption-provider-config".to_owned(),
            self.dir
                .join("control")
                .join("encryption.yaml")
                .display()
                .to_string(),
        ]
    }

    /// The lab from the environment. `None` (after saying why) when there is none and the
    /// test may skip; panics under `CI=true`, where skipping is not allowed.
    pub fn from_env() -> Option<Self> {
        let dir = std::env::var_os("SKIFF_LAB_DIR").map(PathBuf::from);
        let nodes = std::env::var("SKIFF_LAB_NODES")
            .ok()
            .and_then(|n| n.parse::<u8>().ok());
        let xtask = std::env::var_os("SKIFF_XTASK_BIN").map(PathBuf::from);
        match (dir, nodes, xtask) {
            (Some(dir), Some(count), Some(xtask)) => Some(Self {
                dir,
                nodes: (1..=count)
                    .map(|i| Node {
                        name: format!("{NETNS_PREFIX}{i}"),
                        address: Ipv4Addr::new(172, 30, 0, 10 + i),
                    })
                    .collect(),
                xtask,
                kubectl: std::env::var_os("SKIFF_KUBECTL")
                    .map_or_else(|| PathBuf::from("kubectl"), PathBuf::from),
            }),
            _ => {
                cannot_run(
                    "no lab described in the environment (run the e2e tests through `cargo xtask test`)",
                );
                None
            }
        }
    }

    /// The kubeconfig `up` wrote.
    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.join("kubeconfig")
    }

    /// containerd's socket.
    pub fn containerd_socket(&self) -> PathBuf {
        self.dir.join("containerd").join("containerd.sock")
    }

    /// Where the lab's binaries are (skiff-control, skiff-agent).
    pub fn bin(&self, name: &str) -> PathBuf {
        std::env::var_os("SKIFF_BIN_DIR")
            .map_or_else(
                || {
                    self.dir
                        .parent()
                        .map_or_else(|| PathBuf::from("target/debug"), |t| t.join("debug"))
                },
                PathBuf::from,
            )
            .join(name)
    }

    /// The record of the last lab `down` removed.
    pub fn last_record(&self) -> PathBuf {
        self.dir.join("logs").join("last-lab.json")
    }
}

/// A test that cannot run: fail under CI, otherwise say why it is skipped.
pub fn cannot_run(why: &str) {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("this end-to-end test cannot run under CI: {why}");
    }
    eprintln!("SKIPPED: {why}");
}

/// Skip (or fail under CI) unless running as root.
pub fn require_root() -> bool {
    if nix::unistd::geteuid().is_root() {
        true
    } else {
        cannot_run("needs root (network namespaces, cgroups, eBPF)");
        false
    }
}

/// The cgroup2 mount point of this host.
pub fn cgroup2_mount() -> Option<PathBuf> {
    std::fs::read_to_string("/proc/self/mounts")
        .ok()?
        .lines()
        .find_map(|l| {
            let mut f = l.split_whitespace();
            let (_, target, fstype) = (f.next()?, f.next()?, f.next()?);
            (fstype == "cgroup2").then(|| PathBuf::from(target))
        })
}

/// Every cgroup mount point (v1 hierarchies and cgroup2).
pub fn cgroup_mounts() -> Vec<PathBuf> {
    std::fs::read_to_string("/proc/self/mounts")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (_, target, fstype) = (f.next()?, f.next()?, f.next()?);
            (fstype == "cgroup2" || fstype == "cgroup").then(|| PathBuf::from(target))
        })
        .collect()
}

/// True if `path` exists.
pub fn exists(path: impl AsRef<Path>) -> bool {
    path.as_ref().exists()
}
