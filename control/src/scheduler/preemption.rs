//! Preemption, as kube-scheduler's DefaultPreemption: a pod that fits no node may have
//! lower-priority pods evicted to make room. For each node, every lower-priority pod is
//! taken away in simulation; if the pod then fits, victims are reprieved from the most
//! important down while it still fits, so as few and as unimportant pods as possible go.
//! The node chosen has the lowest highest-victim priority, then the smallest sum of victim
//! priorities, then the fewest victims.

use k8s_openapi::api::core::v1::Pod;

use super::{
    cache::{Cache, NodeInfo},
    predicates::{self, PodNeeds},
};

/// Where to make room and whom to evict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The node the pod is nominated to.
    pub node: String,
    /// UIDs of the pods to evict.
    pub victims: Vec<String>,
}

/// Whether `pod` may preempt at all (`preemptionPolicy: Never` may not).
pub fn may_preempt(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.preemption_policy.as_deref())
        != Some("Never")
}

/// The priority of `pod` (0 when unset).
pub fn priority(pod: &Pod) -> i32 {
    pod.spec.as_ref().and_then(|s| s.priority).unwrap_or(0)
}

/// `node` as it would be without `gone` (UIDs of pods on it).
fn without(node: &NodeInfo, gone: &[String], cache: &Cache) -> NodeInfo {
    let mut simulated = node.clone();
    for uid in gone {
        if let Some(pod) = cache.pods.get(uid) {
            simulated.requested = simulated.requested.minus(pod.requests);
        }
        simulated.pods.retain(|p| p != uid);
    }
    simulated
}

/// The victims on `node` that make room for `pod`, if taking away lower-priority pods can.
fn victims_on(pod: &Pod, needs: &PodNeeds, node: &NodeInfo, cache: &Cache) -> Option<Vec<String>> {
    let mine = priority(pod);
    let mut lower: Vec<&String> = node
        .pods
        .iter()
        .filter(|uid| cache.pods.get(*uid).is_some_and(|p| p.priority < mine))
        .collect();
    if lower.is_empty() {
        return None;
    }
    let all: Vec<String> = lower.iter().map(|u| (*u).clone()).collect();
    if !predicates::filter(pod, needs, &without(node, &all, cache), cache).is_empty() {
        return None;
    }
    // Reprieve the most important first: keep each one whose return still lets the pod fit.
    lower.sort_by_key(|uid| std::cmp::Reverse(cache.pods.get(*uid).map_or(0, |p| p.priority)));
    let mut victims = all;
    for uid in lower {
        let trial: Vec<String> = victims.iter().filter(|v| *v != uid).cloned().collect();
        if predicates::filter(pod, needs, &without(node, &trial, cache), cache).is_empty() {
            victims = trial;
        }
    }
    Some(victims)
}

/// The best place to preempt for `pod`, if any.
pub fn plan(pod: &Pod, cache: &Cache) -> Option<Plan> {
    if !may_preempt(pod) {
        return None;
    }
    let needs = PodNeeds::of(pod);
    let cost = |victims: &[String]| {
        let priorities: Vec<i64> = victims
            .iter()
            .filter_map(|v| cache.pods.get(v))
            .map(|p| i64::from(p.priority))
            .collect();
        (
            priorities.iter().copied().max().unwrap_or(i64::MIN),
            priorities.iter().sum::<i64>(),
            victims.len(),
        )
    };
    cache
        .nodes
        .values()
        .filter_map(|node| {
            victims_on(pod, &needs, node, cache).map(|victims| Plan {
                node: node.name.clone(),
                victims,
            })
        })
        .min_by_key(|plan| cost(&plan.victims))
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::Node;
    use serde_json::json;

    use super::*;
    use crate::scheduler::cache::bound;

    fn node(name: &str, cpu: &str) -> Node {
        serde_json::from_value(json!({"metadata": {"name": name}, "status": {
            "allocatable": {"cpu": cpu, "memory": "8Gi", "pods": "110"},
            "conditions": [{"type": "Ready", "status": "True"}]}}))
        .expect("a node")
    }

    fn pod(name: &str, cpu: &str, priority: i32) -> Pod {
        serde_json::from_value(
            json!({"metadata": {"name": name, "namespace": "default", "uid": name},
            "spec": {"priority": priority, "containers": [{"name": "c", "image": "i",
                "resources": {"requests": {"cpu": cpu}}}]}}),
        )
        .expect("a pod")
    }

    fn cache(placed: &[(&str, &str, &str, i32)]) -> Cache {
        let mut cache = Cache::default();
        cache.upsert_node(&node("a", "2"));
        cache.upsert_node(&node("b", "2"));
        for (name, node, cpu, priority) in placed {
            cache.add_pod(name, bound(&pod(name, cpu, *priority), node));
        }
        cache
    }

    #[test]
    fn the_fewest_least_important_pods_make_room() {
        let full = cache(&[
            ("a-low", "a", "1", 10),
            ("a-mid", "a", "1", 500),
            ("b-mid1", "b", "1", 500),
            ("b-mid2", "b", "1", 500),
        ]);
        let plan = plan(&pod("urgent", "1", 1000), &full).expect("a plan");
        assert_eq!(
            plan,
            Plan {
                node: "a".into(),
                victims: vec!["a-low".into()]
            }
        );
    }

    #[test]
    fn nothing_is_preempted_for_an_equal_priority_or_a_never_policy() {
        let full = cache(&[("a1", "a", "2", 100), ("b1", "b", "2", 100)]);
        assert_eq!(plan(&pod("same", "1", 100), &full), None);
        let mut polite = pod("polite", "1", 1000);
        if let Some(spec) = polite.spec.as_mut() {
            spec.preemption_policy = Some("Never".to_owned());
        }
        assert_eq!(plan(&polite, &full), None);
        assert!(plan(&pod("urgent", "1", 1000), &full).is_some());
    }

    #[test]
    fn a_pod_too_large_for_any_node_preempts_nothing() {
        let full = cache(&[("a1", "a", "1", 0)]);
        assert_eq!(plan(&pod("huge", "4", 1000), &full), None);
    }
}
