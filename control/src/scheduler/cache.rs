//! The scheduler's in-memory view of the cluster: every node's allocatable resources, labels,
//! taints and readiness, and what the pods bound to it request — updated from watch events
//! and from the scheduler's own bindings ("assumed" until the watch confirms), so scheduling
//! never re-lists.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1::{Node, Pod, Taint};

/// Resources a pod asks for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Resources {
    /// CPU in millicores.
    pub cpu: i64,
    /// Memory in bytes.
    pub memory: i64,
}

/// What the scheduler remembers of a bound pod.
#[derive(Debug, Clone)]
pub struct BoundPod {
    /// Node it is on.
    pub node: String,
    /// Its namespace.
    pub namespace: String,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// Its requests.
    pub requests: Resources,
    /// UID of its controller (ReplicaSet…), for spreading.
    pub owner: Option<String>,
    /// Host ports it holds (protocol, port).
    pub host_ports: Vec<(String, i32)>,
}

/// One node as the scheduler sees it.
#[derive(Debug, Clone, Default)]
pub struct NodeInfo {
    /// Name.
    pub name: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Taints, including the implied unschedulable and not-ready ones.
    pub taints: Vec<Taint>,
    /// Allocatable cpu/memory.
    pub allocatable: Resources,
    /// Allocatable pod count.
    pub max_pods: i64,
    /// Sum of bound pods' requests.
    pub requested: Resources,
    /// Bound pods (by UID).
    pub pods: Vec<String>,
}

/// Requests of a pod: the sum over app containers, at least the largest init container.
pub fn pod_requests(pod: &Pod) -> Resources {
    let Some(spec) = &pod.spec else {
        return Resources::default();
    };
    let of = |c: &k8s_openapi::api::core::v1::Container| {
        let resources = c.resources.as_ref();
        let get = |name: &str| {
            resources
                .and_then(|r| {
                    r.requests
                        .as_ref()
                        .and_then(|m| m.get(name))
                        .or_else(|| r.limits.as_ref()?.get(name))
                })
                .map(|q| q.0.clone())
        };
        Resources {
            cpu: get("cpu")
                .and_then(|q| skiff_quantity::millicores(&q))
                .unwrap_or(0),
            memory: get("memory")
                .and_then(|q| skiff_quantity::bytes(&q))
                .unwrap_or(0),
        }
    };
    let mut total = Resources::default();
    for c in &spec.containers {
        let r = of(c);
        total.cpu += r.cpu;
        total.memory += r.memory;
    }
    for c in spec.init_containers.iter().flatten() {
        let r = of(c);
        total.cpu = total.cpu.max(r.cpu);
        total.memory = total.memory.max(r.memory);
    }
    // The pod overhead its RuntimeClass set counts too (kube's PodOverhead).
    if let Some(overhead) = &spec.overhead {
        let quantity = |name: &str| overhead.get(name).map(|q| q.0.as_str());
        total.cpu += quantity("cpu")
            .and_then(skiff_quantity::millicores)
            .unwrap_or(0);
        total.memory += quantity("memory")
            .and_then(skiff_quantity::bytes)
            .unwrap_or(0);
    }
    total
}

fn quantity(node: &Node, name: &str) -> Option<String> {
    node.status
        .as_ref()?
        .allocatable
        .as_ref()?
        .get(name)
        .map(|q| q.0.clone())
}

fn taint(key: &str, effect: &str) -> Taint {
    Taint {
        key: key.to_owned(),
        effect: effect.to_owned(),
        ..Taint::default()
    }
}

impl NodeInfo {
    /// The scheduling view of a Node object.
    pub fn from_node(node: &Node) -> Self {
        let spec = node.spec.clone().unwrap_or_default();
        let mut taints = spec.taints.unwrap_or_default();
        let has = |t: &[Taint], key: &str| t.iter().any(|x| x.key == key);
        if spec.unschedulable == Some(true) && !has(&taints, "node.kubernetes.io/unschedulable") {
            taints.push(taint("node.kubernetes.io/unschedulable", "NoSchedule"));
        }
        let ready = node
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
            .map(|c| c.status.clone());
        match ready.as_deref() {
            Some("True") => {}
            Some("False") if !has(&taints, "node.kubernetes.io/not-ready") => {
                taints.push(taint("node.kubernetes.io/not-ready", "NoSchedule"));
            }
            _ if !has(&taints, "node.kubernetes.io/unreachable")
                && !has(&taints, "node.kubernetes.io/not-ready") =>
            {
                taints.push(taint("node.kubernetes.io/unreachable", "NoSchedule"));
            }
            _ => {}
        }
        Self {
            name: node.metadata.name.clone().unwrap_or_default(),
            labels: node.metadata.labels.clone().unwrap_or_default(),
            taints,
            allocatable: Resources {
                cpu: quantity(node, "cpu")
                    .and_then(|q| skiff_quantity::millicores(&q))
                    .unwrap_or(0),
                memory: quantity(node, "memory")
                    .and_then(|q| skiff_quantity::bytes(&q))
                    .unwrap_or(0),
            },
            max_pods: quantity(node, "pods")
                .and_then(|q| q.parse().ok())
                .unwrap_or(110),
            requested: Resources::default(),
            pods: Vec::new(),
        }
    }
}

/// Nodes and bound pods.
#[derive(Debug, Default)]
pub struct Cache {
    /// Nodes by name.
    pub nodes: BTreeMap<String, NodeInfo>,
    /// Bound pods by UID.
    pub pods: HashMap<String, BoundPod>,
}

impl Cache {
    /// Add or refresh a node, keeping its pod accounting.
    pub fn upsert_node(&mut self, node: &Node) {
        let mut info = NodeInfo::from_node(node);
        if let Some(old) = self.nodes.get(&info.name) {
            info.requested = old.requested;
            info.pods.clone_from(&old.pods);
        } else {
            for (uid, pod) in &self.pods {
                if pod.node == info.name {
                    info.requested.cpu += pod.requests.cpu;
                    info.requested.memory += pod.requests.memory;
                    info.pods.push(uid.clone());
                }
            }
        }
        self.nodes.insert(info.name.clone(), info);
    }

    /// Forget a node.
    pub fn remove_node(&mut self, name: &str) {
        self.nodes.remove(name);
    }

    /// Account a pod bound to a node (idempotent).
    pub fn add_pod(&mut self, uid: &str, pod: BoundPod) {
        if self.pods.contains_key(uid) {
            return;
        }
        if let Some(node) = self.nodes.get_mut(&pod.node) {
            node.requested.cpu += pod.requests.cpu;
            node.requested.memory += pod.requests.memory;
            node.pods.push(uid.to_owned());
        }
        self.pods.insert(uid.to_owned(), pod);
    }

    /// Stop accounting a pod (deleted or finished).
    pub fn remove_pod(&mut self, uid: &str) -> bool {
        let Some(pod) = self.pods.remove(uid) else {
            return false;
        };
        if let Some(node) = self.nodes.get_mut(&pod.node) {
            node.requested.cpu -= pod.requests.cpu;
            node.requested.memory -= pod.requests.memory;
            node.pods.retain(|p| p != uid);
        }
        true
    }
}

/// The bound-pod record of a pod assigned to `node`.
pub fn bound(pod: &Pod, node: &str) -> BoundPod {
    let spec = pod.spec.as_ref();
    BoundPod {
        node: node.to_owned(),
        namespace: pod.metadata.namespace.clone().unwrap_or_default(),
        labels: pod.metadata.labels.clone().unwrap_or_default(),
        requests: pod_requests(pod),
        owner: pod
            .metadata
            .owner_references
            .as_ref()
            .and_then(|o| o.iter().find(|r| r.controller == Some(true)))
            .map(|r| r.uid.clone()),
        host_ports: spec
            .map(|s| {
                s.containers
                    .iter()
                    .flat_map(|c| c.ports.iter().flatten())
                    .filter_map(|p| {
                        p.host_port
                            .filter(|h| *h > 0)
                            .map(|h| (p.protocol.clone().unwrap_or_else(|| "TCP".into()), h))
                    })
                    .collect()
            })
            .unwrap_or_default(),
    }
}
