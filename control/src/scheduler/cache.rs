//! The scheduler's in-memory view of the cluster: every node's allocatable resources, labels,
//! taints and readiness, and what the pods bound to it request — updated from watch events
//! and from the scheduler's own bindings ("assumed" until the watch confirms), so scheduling
//! never re-lists.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::{
    api::core::v1::{Container, Node, Pod, Taint},
    apimachinery::pkg::api::resource::Quantity,
};

/// Resources a pod asks for, or a node has or has handed out. One quantity reads as at
/// most `i64::MAX` (quantities saturate, see [`skiff_quantity`]); amounts are `i128` so that
/// summing any number of them is exact and never overflows, whatever clients wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Resources {
    /// CPU in millicores.
    pub cpu: i128,
    /// Memory in bytes.
    pub memory: i128,
}

impl Resources {
    /// Both amounts of `self` and `other` added.
    #[must_use]
    pub fn plus(self, other: Self) -> Self {
        Self {
            cpu: self.cpu.saturating_add(other.cpu),
            memory: self.memory.saturating_add(other.memory),
        }
    }

    /// `other` taken away from `self`.
    #[must_use]
    pub fn minus(self, other: Self) -> Self {
        Self {
            cpu: self.cpu.saturating_sub(other.cpu),
            memory: self.memory.saturating_sub(other.memory),
        }
    }

    /// The larger of each amount.
    #[must_use]
    pub fn max(self, other: Self) -> Self {
        Self {
            cpu: self.cpu.max(other.cpu),
            memory: self.memory.max(other.memory),
        }
    }

    /// CPU and memory of a resource list (`requests`, `allocatable`, `overhead`); what is
    /// absent or not a quantity counts as zero.
    pub fn of(list: Option<&BTreeMap<String, Quantity>>) -> Self {
        let amount = |name: &str, read: fn(&skiff_quantity::Quantity) -> i64| {
            list.and_then(|l| l.get(name))
                .and_then(|q| skiff_quantity::Quantity::parse(&q.0).ok())
                .map_or(0, |q| i128::from(read(&q)))
        };
        Self {
            cpu: amount("cpu", skiff_quantity::Quantity::milli_value),
            memory: amount("memory", skiff_quantity::Quantity::value),
        }
    }
}

/// What the scheduler remembers of a bound pod.
#[derive(Debug, Clone)]
pub struct BoundPod {
    /// Node it is on.
    pub node: String,
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// Its priority (`spec.priority`, 0 when unset).
    pub priority: i32,
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

/// Requests of a pod: the sum over app containers, at least the largest init container,
/// plus the RuntimeClass's pod overhead (kube's PodOverhead). A container's request
/// defaults to its limit.
pub fn pod_requests(pod: &Pod) -> Resources {
    let Some(spec) = &pod.spec else {
        return Resources::default();
    };
    let of = |c: &Container| {
        let resources = c.resources.as_ref();
        let requests = Resources::of(resources.and_then(|r| r.requests.as_ref()));
        let limits = Resources::of(resources.and_then(|r| r.limits.as_ref()));
        let has = |name: &str| {
            resources
                .and_then(|r| r.requests.as_ref())
                .is_some_and(|m| m.contains_key(name))
        };
        Resources {
            cpu: if has("cpu") { requests.cpu } else { limits.cpu },
            memory: if has("memory") {
                requests.memory
            } else {
                limits.memory
            },
        }
    };
    let apps = spec
        .containers
        .iter()
        .fold(Resources::default(), |total, c| total.plus(of(c)));
    let with_init = spec
        .init_containers
        .iter()
        .flatten()
        .fold(apps, |total, c| total.max(of(c)));
    with_init.plus(Resources::of(spec.overhead.as_ref()))
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
        let allocatable = node.status.as_ref().and_then(|s| s.allocatable.as_ref());
        Self {
            name: node.metadata.name.clone().unwrap_or_default(),
            labels: node.metadata.labels.clone().unwrap_or_default(),
            taints,
            allocatable: Resources::of(allocatable),
            max_pods: allocatable
                .and_then(|a| a.get("pods"))
                .and_then(|q| skiff_quantity::Quantity::parse(&q.0).ok())
                .map_or(110, |q| q.value()),
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
                    info.requested = info.requested.plus(pod.requests);
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
            node.requested = node.requested.plus(pod.requests);
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
            node.requested = node.requested.minus(pod.requests);
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
        name: pod.metadata.name.clone().unwrap_or_default(),
        priority: spec.and_then(|s| s.priority).unwrap_or(0),
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
