//! Scoring the nodes a pod fits on: least allocated and balanced resource use (as
//! kube-scheduler's NodeResourcesFit/BalancedAllocation) and spreading the replicas of one
//! owner across nodes.

use super::cache::{Cache, NodeInfo, Resources};

/// Higher is better.
pub fn score(node: &NodeInfo, requests: Resources, owner: Option<&str>, cache: &Cache) -> i64 {
    // Fractions in f64: every amount converts (i128 to f64 rounds, never overflows).
    let fraction = |used: i128, total: i128| {
        if total <= 0 {
            1.0
        } else {
            (used as f64 / total as f64).clamp(0.0, 1.0)
        }
    };
    let used = node.requested.plus(requests);
    let cpu = fraction(used.cpu, node.allocatable.cpu);
    let memory = fraction(used.memory, node.allocatable.memory);
    let pods = fraction(
        i128::try_from(node.pods.len())
            .unwrap_or(i128::MAX)
            .saturating_add(1),
        i128::from(node.max_pods),
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
    let spread_penalty = i64::try_from(siblings)
        .unwrap_or(i64::MAX)
        .saturating_mul(1000);
    // Both terms are within 0..=100 (fractions are clamped), so the sum cannot overflow.
    (least_allocated as i64 + balanced as i64 / 2).saturating_sub(spread_penalty)
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

    #[test]
    fn extreme_amounts_score_without_overflow() {
        let node = NodeInfo {
            name: "n".into(),
            allocatable: Resources {
                cpu: i128::from(i64::MAX),
                memory: 0,
            },
            requested: Resources {
                cpu: i128::from(i64::MAX),
                memory: i128::from(i64::MAX),
            },
            max_pods: i64::MIN,
            ..NodeInfo::default()
        };
        let huge = Resources {
            cpu: i128::from(i64::MAX),
            memory: i128::from(i64::MAX),
        };
        // Full on every axis: nothing left to prefer, and no panic on the way.
        assert_eq!(score(&node, huge, None, &Cache::default()), 50);
    }
}
