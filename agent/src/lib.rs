//! skiff-agent: the node agent. Today it owns the eBPF Service datapath; the kubelet half
//! (pods on containerd) and the node HTTP API grow beside it.
//!
//! The library part is what tests and the binary share; `main.rs` is only the daemon's edge.

pub mod datapath;
pub mod metrics;
pub mod netns;
pub mod node;
