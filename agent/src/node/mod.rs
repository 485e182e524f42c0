//! Node lifecycle: register this node's Node object, keep its Lease renewed (the
//! heartbeat the control plane's node lifecycle watches) and its status fresh.

mod facts;
mod heartbeat;
mod registration;

pub use facts::HostFacts;
pub use heartbeat::run as heartbeat;
pub use registration::{NodeConfig, register};

/// The kubelet version Skiff's agent reports.
pub const KUBELET_VERSION: &str = "v1.33.0-skiff";
