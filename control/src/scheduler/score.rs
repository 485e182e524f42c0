//! Scoring the nodes a pod fits on: least allocated and balanced resource use (as
//! kube-scheduler's NodeResourcesFit/BalancedAllocation) and spreading the replicas of one
//! owner across nodes.

use super::cache::{Cache, NodeInfo, Resources};

/// Higher is better.
pub fn score(node: &NodeInfo, requests: Resources, owner: Option<&str>, cache: &Cache) -> i64 {
    let fraction = |used: i64, total: i64| {
        if total <= 0 {
            1.0
        } else {
            (used as f64 / total as f64).clamp(0.0, 1.0)
        }
    };
    let cpu = fraction(node.requested.cpu + requests.cpu, node.allocatable.cpu);
    let memory = fraction(
        node.requested.memory + requests.memory,
        node.allocatable.memory,
    );
    let pods = fraction(
        i64::try_from(node.pods.len()).unwrap_or(0) + 1,
        node.max_pods,
    );
    let least_allocated = ((1.0 - cpu) + (1.0 - memory) + (1.0 - pods)) / 3.0 * 100.0;
    let balanced = (1.0 - (cpu - memory).abs()) * 100.0;
    let siblings = owner.map_or(0, |owner| {
        node.pods
            .iter()
            .filter_map(|uid| cache.pods.get(uid))
            .filter(|p| p.owner.as_deref() == Some(owner))
            .count()
    });
    // Spreading dominates: a node with fewer replicas of the same owner always wins.
    least_allocated as i64 + balanced as i64 / 2 - i64::try_from(siblings).unwrap_or(0) * 1000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emptier_nodes_score_higher() {
        let node = |cpu_used| NodeInfo {
            name: "n".into(),
            allocatable: Resources {
                cpu: 1000,
                memory: 1000,
            },
            requested: Resources {
                cpu: cpu_used,
                memory: 0,
            },
            max_pods: 110,
            ..NodeInfo::default()
        };
        let cache = Cache::default();
        let r = Resources {
            cpu: 100,
            memory: 100,
        };
        assert!(score(&node(0), r, None, &cache) > score(&node(800), r, None, &cache));
    }
}
