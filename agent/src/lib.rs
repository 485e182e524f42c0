//! skiff-agent: the node agent — the kubelet (pods on containerd, pod networking) and the
//! eBPF Service datapath.
//!
//! The library part is what tests and the binary share; `src/bin/skiff-agent/` is only the
//! daemon's edge (flags, start-up, serving).
//! - [`node`]: Node registration, Lease and status heartbeats.
//! - [`runtime`]: containerd — images (pull through mirrors, import, unpack) and containers.
//! - [`network`]: pod network namespaces, veths, IPAM, routes to other nodes' pods.
//! - [`kubelet`]: pod workers turning bound pods into containers and back into pod status.
//! - [`logs`]: container logs in CRI format (the log shim) and reading them back.
//! - [`server`]: the node HTTP API's container-log endpoint.
//! - [`datapath`]: the eBPF Service datapath.
//! - [`discovery`]: Services for pods — environment variables and the node-local DNS.
//! - [`heap`]: freed heap handed back to the kernel; heap figures on /metrics.
//! - [`beneath`]: files opened strictly beneath a directory (volumes, image root filesystems).

pub mod beneath;
pub mod datapath;
pub mod discovery;
pub mod exec;
pub mod heap;
pub mod kubelet;
pub mod logs;
pub mod metrics;
pub mod netns;
pub mod network;
pub mod node;
pub mod runtime;
pub mod server;
pub mod tls;
