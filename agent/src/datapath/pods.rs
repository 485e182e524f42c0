//! The per-pod part of the datapath: the tc program on every pod's host veth, attached
//! when the kubelet wires a sandbox and forgotten when it tears one down; at start, every
//! veth already there (pods adopted from a previous agent) gets the new program and pins of
//! vanished veths are removed.

use std::sync::{Arc, Mutex};

use tracing::{error, info};

use super::Datapath;
use crate::kubelet::PodVethHook;

/// Host-side pod veths are named `sk<uid prefix>` (see `network::sandbox::host_veth`).
const POD_VETH_PREFIX: &str = "sk";

/// Attaches the pod program for the kubelet.
pub struct PodAttach {
    datapath: Arc<Mutex<Datapath>>,
}

impl PodAttach {
    /// Over the shared datapath.
    pub fn new(datapath: Arc<Mutex<Datapath>>) -> Self {
        Self { datapath }
    }

    /// Attach to every pod veth present now and drop the pins of veths that are gone.
    pub fn reattach_existing(&self) {
        let present: Vec<String> = match nix::net::if_::if_nameindex() {
            Ok(list) => list
                .iter()
                .filter_map(|i| i.name().to_str().ok().map(str::to_owned))
                .filter(|n| n.starts_with(POD_VETH_PREFIX))
                .collect(),
            Err(e) => {
                error!(error = %e, "cannot list interfaces to re-attach pod programs");
                return;
            }
        };
        let Ok(mut datapath) = self.datapath.lock() else {
            return;
        };
        for veth in datapath.pinned_pod_veths() {
            if !present.contains(&veth) {
                let _ = datapath.detach_pod(&veth);
            }
        }
        for veth in &present {
            if let Err(e) = datapath.attach_pod(veth) {
                error!(%veth, error = %e, "cannot attach the pod program");
            }
        }
        if !present.is_empty() {
            info!(
                veths = present.len(),
                "pod programs attached to existing pods"
            );
        }
    }
}

impl PodVethHook for PodAttach {
    fn up(&self, veth: &str) {
        let Ok(mut datapath) = self.datapath.lock() else {
            return;
        };
        if let Err(e) = datapath.attach_pod(veth) {
            error!(%veth, error = %e, "cannot attach the pod program: this pod's per-packet Service traffic is not translated");
        }
    }

    fn down(&self, veth: &str) {
        let Ok(mut datapath) = self.datapath.lock() else {
            return;
        };
        if let Err(e) = datapath.detach_pod(veth) {
            error!(%veth, error = %e, "cannot forget the pod program's link");
        }
    }
}
