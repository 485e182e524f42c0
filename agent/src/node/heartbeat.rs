//! Heartbeats: the node's Lease in kube-node-lease renewed every 10 s, and the node status
//! (conditions with fresh heartbeat times) every minute — kubelet's cadence.

use std::time::Duration;

use k8s_openapi::api::{coordination::v1::Lease, core::v1::Node};
use kube::{
    Api, Client,
    api::{Patch, PatchParams, PostParams},
};
use serde_json::json;
use tracing::{debug, warn};

use super::NodeConfig;

/// Lease renewal period.
pub const LEASE_RENEW: Duration = Duration::from_secs(10);
/// Lease duration the control plane uses to judge the node.
pub const LEASE_DURATION_SECONDS: i32 = 40;
/// Node status update period.
pub const STATUS_UPDATE: Duration = Duration::from_secs(60);

fn now_micro() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%S.%6fZ")
        .to_string()
}

fn now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

async fn renew_lease(leases: &Api<Lease>, node: &str, uid: &str) -> Result<(), kube::Error> {
    let body = json!({
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": node, "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": node, "uid": uid}]},
        "spec": {"holderIdentity": node, "leaseDurationSeconds": LEASE_DURATION_SECONDS, "renewTime": now_micro()},
    });
    match leases
        .patch(node, &PatchParams::default(), &Patch::Merge(&body))
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => {
            let lease: Lease = serde_json::from_value(body).map_err(kube::Error::SerdeError)?;
            leases
                .create(&PostParams::default(), &lease)
                .await
                .map(drop)
        }
        Err(e) => Err(e),
    }
}

/// Renew the lease and refresh the status forever (until the task is dropped).
pub async fn run(client: Client, config: NodeConfig, uid: String) {
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let nodes: Api<Node> = Api::all(client);
    let mut lease_tick = tokio::time::interval(LEASE_RENEW);
    let mut status_tick = tokio::time::interval(STATUS_UPDATE);
    loop {
        tokio::select! {
            _ = lease_tick.tick() => match renew_lease(&leases, &config.name, &uid).await {
                Ok(()) => debug!(node = %config.name, "lease renewed"),
                Err(e) => warn!(node = %config.name, error = %e, "lease renewal failed"),
            },
            _ = status_tick.tick() => {
                // Merged by condition type: only the heartbeat times move.
                let beat = now();
                let conditions: Vec<_> = ["MemoryPressure", "DiskPressure", "PIDPressure", "Ready"]
                    .iter()
                    .map(|kind| json!({"type": kind, "lastHeartbeatTime": beat}))
                    .collect();
                let status = json!({"status": {"conditions": conditions}});
                if let Err(e) = nodes.patch_status(&config.name, &PatchParams::default(), &Patch::Strategic(&status)).await {
                    warn!(node = %config.name, error = %e, "node status update failed");
                }
            }
        }
    }
}
