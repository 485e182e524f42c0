//! Filters: can this pod run on this node? Each failing check yields the reason text
//! kube-scheduler uses, so "0/3 nodes are available: 3 Insufficient memory." reads the same.

use std::collections::BTreeMap;

use k8s_openapi::{
    api::core::v1::{NodeSelectorRequirement, Pod, Taint, Toleration},
    apimachinery::pkg::apis::meta::v1::LabelSelector,
};

use super::cache::{Cache, NodeInfo, bound, pod_requests};

/// What a pod needs, computed once per scheduling attempt rather than once per node.
#[derive(Debug, Clone)]
pub struct PodNeeds {
    /// Summed requests.
    pub requests: super::cache::Resources,
    /// Host ports (protocol, port).
    pub host_ports: Vec<(String, i32)>,
}

impl PodNeeds {
    /// The needs of `pod`.
    pub fn of(pod: &Pod) -> Self {
        Self {
            requests: pod_requests(pod),
            host_ports: bound(pod, "").host_ports,
        }
    }
}

/// Why `pod` cannot go to `node` (empty: it fits).
pub fn filter(pod: &Pod, needs: &PodNeeds, node: &NodeInfo, cache: &Cache) -> Vec<String> {
    let mut reasons = Vec::new();
    let empty = k8s_openapi::api::core::v1::PodSpec::default();
    let spec = pod.spec.as_ref().unwrap_or(&empty);
    if let Some(taint) = node
        .taints
        .iter()
        .filter(|t| t.effect == "NoSchedule" || t.effect == "NoExecute")
        .find(|t| !tolerated(t, spec.tolerations.as_deref().unwrap_or_default()))
    {
        reasons.push(format!(
            "node(s) had untolerated taint {{{}: {}}}",
            taint.key,
            taint.value.clone().unwrap_or_default()
        ));
    }
    if !matches_node_selector(pod, node) {
        reasons.push("node(s) didn't match Pod's node affinity/selector".to_owned());
    }
    if i64::try_from(node.pods.len())
        .unwrap_or(i64::MAX)
        .saturating_add(1)
        > node.max_pods
    {
        reasons.push("Too many pods".to_owned());
    }
    // kube-scheduler's NodeResourcesFit: a request larger than what is left is refused,
    // however large (amounts are i128: no sum of quantities overflows).
    let free = node.allocatable.minus(node.requested);
    let requests = needs.requests;
    if requests.cpu > 0 && requests.cpu > free.cpu {
        reasons.push("Insufficient cpu".to_owned());
    }
    if requests.memory > 0 && requests.memory > free.memory {
        reasons.push("Insufficient memory".to_owned());
    }
    let wanted = &needs.host_ports;
    if !wanted.is_empty()
        && node
            .pods
            .iter()
            .filter_map(|uid| cache.pods.get(uid))
            .any(|p| p.host_ports.iter().any(|hp| wanted.contains(hp)))
    {
        reasons.push("node(s) didn't have free ports for the requested pod ports".to_owned());
    }
    if let Some(affinity) = spec.affinity.as_ref() {
        let namespace = pod.metadata.namespace.clone().unwrap_or_default();
        let on_node = |selector: &Option<LabelSelector>, namespaces: &Option<Vec<String>>| {
            let namespaces = namespaces
                .clone()
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| vec![namespace.clone()]);
            node.pods
                .iter()
                .filter_map(|uid| cache.pods.get(uid))
                .any(|p| {
                    namespaces.contains(&p.namespace)
                        && selector
                            .as_ref()
                            .is_some_and(|s| selector_matches(s, &p.labels))
                })
        };
        let hostname_terms = |terms: Option<&Vec<k8s_openapi::api::core::v1::PodAffinityTerm>>| {
            terms
                .into_iter()
                .flatten()
                .filter(|t| t.topology_key == "kubernetes.io/hostname")
                .cloned()
                .collect::<Vec<_>>()
        };
        let anti = hostname_terms(affinity.pod_anti_affinity.as_ref().and_then(|a| {
            a.required_during_scheduling_ignored_during_execution
                .as_ref()
        }));
        if anti
            .iter()
            .any(|t| on_node(&t.label_selector, &t.namespaces))
        {
            reasons.push("node(s) didn't match pod anti-affinity rules".to_owned());
        }
        let required = hostname_terms(affinity.pod_affinity.as_ref().and_then(|a| {
            a.required_during_scheduling_ignored_during_execution
                .as_ref()
        }));
        if !required
            .iter()
            .all(|t| on_node(&t.label_selector, &t.namespaces))
        {
            reasons.push("node(s) didn't match pod affinity rules".to_owned());
        }
    }
    reasons
}

/// Whether some toleration matches the taint (kube's ToleratesTaint).
pub fn tolerated(taint: &Taint, tolerations: &[Toleration]) -> bool {
    tolerations.iter().any(|t| {
        let effect_ok = t
            .effect
            .as_deref()
            .is_none_or(|e| e.is_empty() || e == taint.effect);
        let key_ok = t
            .key
            .as_deref()
            .is_none_or(|k| k.is_empty() || k == taint.key);
        let value_ok = match t.operator.as_deref() {
            Some("Exists") => true,
            _ => {
                t.value.as_deref().unwrap_or_default() == taint.value.as_deref().unwrap_or_default()
            }
        };
        let empty_key_needs_exists = t.key.as_deref().unwrap_or_default().is_empty()
            && t.operator.as_deref() != Some("Exists");
        effect_ok && key_ok && value_ok && !empty_key_needs_exists
    })
}

fn requirement_matches(req: &NodeSelectorRequirement, value: Option<&String>) -> bool {
    let values = req.values.clone().unwrap_or_default();
    match req.operator.as_str() {
        "In" => value.is_some_and(|v| values.contains(v)),
        "NotIn" => value.is_none_or(|v| !values.contains(v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" | "Lt" => {
            let (Some(v), Some(bound)) = (
                value.and_then(|v| v.parse::<i64>().ok()),
                values.first().and_then(|b| b.parse::<i64>().ok()),
            ) else {
                return false;
            };
            if req.operator == "Gt" {
                v > bound
            } else {
                v < bound
            }
        }
        _ => false,
    }
}

/// nodeSelector and required node affinity.
fn matches_node_selector(pod: &Pod, node: &NodeInfo) -> bool {
    let Some(spec) = &pod.spec else { return true };
    let selector_ok = spec
        .node_selector
        .iter()
        .flatten()
        .all(|(k, v)| node.labels.get(k) == Some(v));
    let terms = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|a| {
            a.required_during_scheduling_ignored_during_execution
                .as_ref()
        })
        .map(|r| r.node_selector_terms.clone());
    let affinity_ok =
        terms.is_none_or(|terms| {
            terms.iter().any(|term| {
                let name = node.name.clone();
                term.match_expressions
                    .iter()
                    .flatten()
                    .all(|req| requirement_matches(req, node.labels.get(&req.key)))
                    && term.match_fields.iter().flatten().all(|req| {
                        req.key == "metadata.name" && requirement_matches(req, Some(&name))
                    })
            })
        });
    selector_ok && affinity_ok
}

/// A metav1.LabelSelector against labels.
pub fn selector_matches(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let labels_ok = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let expressions_ok = selector.match_expressions.iter().flatten().all(|e| {
        let value = labels.get(&e.key);
        let values = e.values.clone().unwrap_or_default();
        match e.operator.as_str() {
            "In" => value.is_some_and(|v| values.contains(v)),
            "NotIn" => value.is_none_or(|v| !values.contains(v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            _ => false,
        }
    });
    labels_ok && expressions_ok
}

/// kube-scheduler's summary: "0/3 nodes are available: 1 Insufficient cpu, 2 Insufficient
/// memory." (reasons sorted, each with the number of nodes it ruled out).
pub fn summary(node_count: usize, reasons: &[Vec<String>]) -> String {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for node in reasons {
        for reason in node {
            *counts.entry(reason.as_str()).or_default() += 1;
        }
    }
    let parts: Vec<String> = counts.iter().map(|(r, n)| format!("{n} {r}")).collect();
    if parts.is_empty() {
        format!("0/{node_count} nodes are available: no nodes registered.")
    } else {
        format!("0/{node_count} nodes are available: {}.", parts.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::cache::Resources;
    use serde_json::json;

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "p", "namespace": "d"}, "spec": spec}))
            .expect("pod")
    }

    fn node(cpu: i128, memory: i128) -> NodeInfo {
        NodeInfo {
            name: "n1".into(),
            allocatable: Resources { cpu, memory },
            max_pods: 110,
            ..NodeInfo::default()
        }
    }

    #[test]
    fn resources_and_summary() {
        let big = pod(
            json!({"containers": [{"name": "c", "resources": {"requests": {"memory": "64Gi", "cpu": "100m"}}}]}),
        );
        let cache = Cache::default();
        let reasons = filter(&big, &PodNeeds::of(&big), &node(2000, 8 << 30), &cache);
        assert_eq!(reasons, ["Insufficient memory"]);
        assert_eq!(
            summary(3, &[reasons.clone(), reasons.clone(), reasons]),
            "0/3 nodes are available: 3 Insufficient memory."
        );
        let small = pod(
            json!({"containers": [{"name": "c", "resources": {"requests": {"memory": "64Mi"}}}]}),
        );
        assert!(filter(&small, &PodNeeds::of(&small), &node(2000, 8 << 30), &cache).is_empty());
    }

    #[test]
    fn a_request_larger_than_any_node_is_insufficient_not_a_panic() {
        // Issue 21: cpu: 1e30 overflowed the fit check and killed the scheduler.
        let huge = pod(json!({"containers": [
            {"name": "a", "resources": {"requests": {"cpu": "1e30", "memory": "1e30"}}},
            {"name": "b", "resources": {"requests": {"cpu": "1e30", "memory": "8Ei"}}}]}));
        let needs = PodNeeds::of(&huge);
        assert_eq!(needs.requests.cpu, 2 * i128::from(i64::MAX));
        let mut busy = node(i128::from(i64::MAX), i128::from(i64::MAX));
        busy.requested = Resources {
            cpu: i128::from(i64::MAX),
            memory: i128::from(i64::MAX),
        };
        for n in [node(4000, 8 << 30), busy] {
            assert_eq!(
                filter(&huge, &needs, &n, &Cache::default()),
                ["Insufficient cpu", "Insufficient memory"]
            );
        }
        let mut full = node(1000, 1 << 30);
        full.max_pods = i64::MIN;
        let small = pod(json!({"containers": [{"name": "c"}]}));
        assert_eq!(
            filter(&small, &PodNeeds::of(&small), &full, &Cache::default()),
            ["Too many pods"]
        );
    }

    #[test]
    fn taints_need_tolerations() {
        let mut n = node(1000, 1 << 30);
        n.taints.push(Taint {
            key: "dedicated".into(),
            value: Some("db".into()),
            effect: "NoSchedule".into(),
            ..Taint::default()
        });
        let plain = pod(json!({"containers": [{"name": "c"}]}));
        assert_eq!(
            filter(&plain, &PodNeeds::of(&plain), &n, &Cache::default()),
            ["node(s) had untolerated taint {dedicated: db}"]
        );
        let tolerant = pod(
            json!({"containers": [{"name": "c"}], "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "db", "effect": "NoSchedule"}]}),
        );
        assert!(filter(&tolerant, &PodNeeds::of(&tolerant), &n, &Cache::default()).is_empty());
        let everything =
            pod(json!({"containers": [{"name": "c"}], "tolerations": [{"operator": "Exists"}]}));
        assert!(
            filter(
                &everything,
                &PodNeeds::of(&everything),
                &n,
                &Cache::default()
            )
            .is_empty()
        );
    }

    #[test]
    fn node_selector_and_affinity() {
        let mut n = node(1000, 1 << 30);
        n.labels.insert("disk".into(), "ssd".into());
        let want_hdd = pod(json!({"containers": [{"name": "c"}], "nodeSelector": {"disk": "hdd"}}));
        assert_eq!(
            filter(&want_hdd, &PodNeeds::of(&want_hdd), &n, &Cache::default()),
            ["node(s) didn't match Pod's node affinity/selector"]
        );
        let affinity = pod(
            json!({"containers": [{"name": "c"}], "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": [{"key": "disk", "operator": "In", "values": ["ssd"]}]}]}}}}),
        );
        assert!(filter(&affinity, &PodNeeds::of(&affinity), &n, &Cache::default()).is_empty());
    }
}
