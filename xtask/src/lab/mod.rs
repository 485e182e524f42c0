//! The local multi-node lab: every node a network namespace on the `skiff0` underlay bridge,
//! one etcd, one containerd (a containerd namespace and cgroup parent per node), the control
//! plane and one agent per node. Layout and addresses are in ARCHITECTURE.md, "The lab".
//!
//! `up` records what it started in `target/lab/lab.json`; `down` stops exactly that (and
//! anything else that names the lab directory) and removes every namespace, link, cgroup and
//! bpffs pin the lab owns, so a killed run never leaves the next one broken.

mod component;
mod daemons;
pub mod down;
mod extra_control;
mod guestbook;
mod layout;
mod network;
mod probe;
pub mod record;
mod status;
mod up;

pub use component::{ComponentArgs, run as component};
pub use down::down;
pub use down::teardown;
pub use extra_control::start_extra_control;
pub use layout::Layout;
pub use record::Record;
pub use status::status;
pub use up::{UpArgs, bring_up, up, write_kubeconfig};

/// `host:port` of the lab registry if a lab is up and it answers.
pub fn registry_if_up() -> Option<String> {
    let addr = std::net::SocketAddrV4::new(layout::BRIDGE_ADDR, layout::REGISTRY_PORT);
    probe::http_get(addr.into(), "/v2/")
        .ok()
        .map(|_| addr.to_string())
}
