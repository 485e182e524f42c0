//! The Node object this agent registers (kubelet's `registerWithAPIServer`).

use std::{collections::BTreeMap, net::Ipv4Addr};

use k8s_openapi::api::core::v1::Node;
use kube::{
    Api, Client,
    api::{Patch, PatchParams, PostParams},
};
use serde_json::{Value, json};

use super::{HostFacts, KUBELET_VERSION};

/// How this node presents itself.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// Node name.
    pub name: String,
    /// Address on the node network.
    pub address: Ipv4Addr,
    /// Pod CIDR to claim when the Node has none.
    pub pod_cidr: Option<String>,
    /// Maximum pods.
    pub max_pods: u32,
    /// containerd version string (`containerd://1.6.20`).
    pub runtime_version: String,
    /// The RuntimeClass handlers this node offers (`status.runtimeHandlers`).
    pub runtime_handlers: Vec<String>,
    /// The directory local-path volumes of this node live in, published on the Node (see
    /// [`crate::kubelet::volumes::local_path`]).
    pub local_path_dir: String,
}

/// The conditions of a healthy node, with `now` as heartbeat and transition time.
pub fn conditions(now: &str) -> Value {
    let condition = |kind: &str, status: &str, reason: &str, message: &str| {
        json!({"type": kind, "status": status, "reason": reason, "message": message,
               "lastHeartbeatTime": now, "lastTransitionTime": now})
    };
    json!([
        condition(
            "MemoryPressure",
            "False",
            "KubeletHasSufficientMemory",
            "kubelet has sufficient memory available"
        ),
        condition(
            "DiskPressure",
            "False",
            "KubeletHasNoDiskPressure",
            "kubelet has no disk pressure"
        ),
        condition(
            "PIDPressure",
            "False",
            "KubeletHasSufficientPID",
            "kubelet has sufficient PID available"
        ),
        condition(
            "Ready",
            "True",
            "KubeletReady",
            "skiff-agent is posting ready status"
        ),
    ])
}

/// The status section: capacity, allocatable, addresses, nodeInfo, conditions.
pub fn status(config: &NodeConfig, facts: &HostFacts, now: &str) -> Value {
    let capacity = json!({
        "cpu": facts.cpus.to_string(),
        "memory": format!("{}Ki", facts.memory_kib),
        "pods": config.max_pods.to_string(),
        "ephemeral-storage": "0",
    });
    let handlers: Vec<Value> = config
        .runtime_handlers
        .iter()
        .map(|name| {
            json!({
                "name": name,
                "features": {"recursiveReadOnlyMounts": false, "userNamespaces": false},
            })
        })
        .collect();
    json!({
        "capacity": capacity,
        "allocatable": capacity,
        "addresses": [
            {"type": "InternalIP", "address": config.address.to_string()},
            {"type": "Hostname", "address": config.name},
        ],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
        "nodeInfo": {
            "machineID": facts.machine_id,
            "systemUUID": facts.machine_id,
            "bootID": facts.boot_id,
            "kernelVersion": facts.kernel,
            "osImage": facts.os_image,
            "containerRuntimeVersion": config.runtime_version,
            "kubeletVersion": KUBELET_VERSION,
            "kubeProxyVersion": "",
            "operatingSystem": "linux",
            "architecture": facts.architecture,
        },
        "runtimeHandlers": handlers,
        "conditions": conditions(now),
    })
}

fn labels(config: &NodeConfig, facts: &HostFacts) -> BTreeMap<String, String> {
    [
        ("kubernetes.io/hostname", config.name.as_str()),
        ("kubernetes.io/os", "linux"),
        ("kubernetes.io/arch", facts.architecture.as_str()),
        ("beta.kubernetes.io/os", "linux"),
        ("beta.kubernetes.io/arch", facts.architecture.as_str()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

fn annotations(config: &NodeConfig) -> BTreeMap<String, String> {
    BTreeMap::from([(
        crate::kubelet::volumes::local_path::DIR_ANNOTATION.to_owned(),
        config.local_path_dir.clone(),
    )])
}

/// Create the Node, or bring an existing one (from an earlier run) up to date; returns it.
pub async fn register(
    client: &Client,
    config: &NodeConfig,
    facts: &HostFacts,
    now: &str,
) -> Result<Node, kube::Error> {
    let nodes: Api<Node> = Api::all(client.clone());
    let node: Node = serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": config.name, "labels": labels(config, facts),
                     "annotations": annotations(config)},
        "spec": {"podCIDR": config.pod_cidr, "podCIDRs": config.pod_cidr.as_ref().map(|c| vec![c.clone()])},
        "status": status(config, facts, now),
    }))
    .map_err(kube::Error::SerdeError)?;
    match nodes.create(&PostParams::default(), &node).await {
        Ok(created) => Ok(created),
        Err(kube::Error::Api(error)) if error.code == 409 => {
            // Registered before: refresh labels and status, keep the spec it has (its podCIDR
            // may have been assigned by the control plane).
            let labels = json!({"metadata": {"labels": labels(config, facts),
                                             "annotations": annotations(config)}});
            nodes
                .patch(
                    &config.name,
                    &PatchParams::default(),
                    &Patch::Merge(&labels),
                )
                .await?;
            let status = json!({"status": status(config, facts, now)});
            nodes
                .patch_status(
                    &config.name,
                    &PatchParams::default(),
                    &Patch::Merge(&status),
                )
                .await
        }
        Err(e) => Err(e),
    }
}
