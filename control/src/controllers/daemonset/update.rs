//! Which daemon pods to create and delete, decided without I/O as kube's DaemonSet
//! controller does: one pod per eligible node and none elsewhere; a rolling update replaces
//! pods of an old revision at most `maxUnavailable` nodes at a time, or, with `maxSurge`,
//! starts the new pod beside the old one and deletes the old one once the new one has been
//! available for `minReadySeconds` (at most `maxSurge` nodes surging at once).

use std::collections::BTreeMap;

use k8s_openapi::{
    api::{apps::v1::DaemonSetUpdateStrategy, core::v1::Pod},
    apimachinery::pkg::util::intstr::IntOrString,
};
use kube::ResourceExt;

/// How far a rolling update may go at once, resolved against the desired pod count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Nodes that may run an extra (new) pod beside the old one.
    pub max_surge: usize,
    /// Nodes that may be without an available pod.
    pub max_unavailable: usize,
}

/// A count or percentage of `total`, rounded up (kube's `GetScaledValueFromIntOrPercent`
/// with roundUp, as the DaemonSet controller calls it); bad or negative values count 0.
fn scaled(value: Option<&IntOrString>, total: usize) -> usize {
    match value {
        None => 0,
        Some(IntOrString::Int(n)) => usize::try_from(*n).unwrap_or(0),
        Some(IntOrString::String(p)) => {
            let percent: usize = p.trim_end_matches('%').parse().unwrap_or(0);
            (total * percent).div_ceil(100)
        }
    }
}

/// The budget of a rolling update over `desired` nodes; None for `OnDelete`. maxSurge
/// counts only under RollingUpdate; both zero means one unavailable (kube's fallback).
pub fn budget(strategy: Option<&DaemonSetUpdateStrategy>, desired: usize) -> Option<Budget> {
    let kind = strategy.and_then(|s| s.type_.as_deref());
    if kind == Some("OnDelete") {
        return None;
    }
    let rolling = strategy.and_then(|s| s.rolling_update.as_ref());
    let max_surge = scaled(rolling.and_then(|r| r.max_surge.as_ref()), desired);
    let mut max_unavailable = rolling.map_or(1, |r| {
        r.max_unavailable
            .as_ref()
            .map_or(1, |v| scaled(Some(v), desired))
    });
    if desired > 0 && max_surge == 0 && max_unavailable == 0 {
        max_unavailable = 1;
    }
    Some(Budget {
        max_surge,
        max_unavailable,
    })
}

/// What to do.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Nodes that get a new pod.
    pub create_on: Vec<String>,
    /// Pods to delete (by name).
    pub delete: Vec<String>,
}

/// What the controller knows about the pods.
pub struct View<'a, 'p> {
    /// Nodes a daemon pod should run on.
    pub eligible: &'a [String],
    /// Active pods (not terminating, not finished) per node, oldest first.
    pub by_node: &'a BTreeMap<String, Vec<&'p Pod>>,
    /// Whether a pod is of the update revision.
    pub is_new: &'a dyn Fn(&Pod) -> bool,
    /// Whether a pod has been ready for minReadySeconds.
    pub available: &'a dyn Fn(&Pod) -> bool,
}

/// The pods of an eligible node the controller keeps: the oldest new and, when surging,
/// the oldest old one; otherwise just the oldest.
fn kept<'p>(
    pods: &[&'p Pod],
    view: &View<'_, '_>,
    surge: bool,
) -> (Option<&'p Pod>, Option<&'p Pod>) {
    if !surge {
        return match pods.first() {
            Some(p) if (view.is_new)(p) => (Some(p), None),
            Some(p) => (None, Some(p)),
            None => (None, None),
        };
    }
    let new = pods.iter().find(|p| (view.is_new)(p)).copied();
    let old = pods.iter().find(|p| !(view.is_new)(p)).copied();
    (new, old)
}

/// Decide creations and deletions; `budget` None: no rolling update (`OnDelete`).
pub fn plan(view: &View<'_, '_>, budget: Option<Budget>) -> Plan {
    let mut plan = Plan::default();
    let surge = budget.is_some_and(|b| b.max_surge > 0);
    // Pods where none should run.
    for (node, pods) in view.by_node {
        if !view.eligible.contains(node) {
            plan.delete.extend(pods.iter().map(|p| p.name_any()));
        }
    }
    let empty = Vec::new();
    let mut nodes = Vec::new();
    for node in view.eligible {
        let pods = view.by_node.get(node).unwrap_or(&empty);
        if pods.is_empty() {
            plan.create_on.push(node.clone());
        }
        let (new, old) = kept(pods, view, surge);
        for pod in pods {
            let keep = [new, old]
                .iter()
                .flatten()
                .any(|k| k.name_any() == pod.name_any());
            if !keep {
                plan.delete.push(pod.name_any());
            }
        }
        nodes.push((node, new, old));
    }
    let Some(budget) = budget else {
        return plan;
    };
    if surge {
        surge_update(&nodes, view, budget, &mut plan);
    } else {
        unavailable_update(&nodes, view, budget, &mut plan);
    }
    plan
}

type NodePods<'n, 'p> = (&'n String, Option<&'p Pod>, Option<&'p Pod>);

/// Old pods deleted while at most `maxUnavailable` nodes lack an available pod; an old pod
/// that is not available anyway is always replaced.
fn unavailable_update(
    nodes: &[NodePods<'_, '_>],
    view: &View<'_, '_>,
    budget: Budget,
    plan: &mut Plan,
) {
    let mut unavailable = 0;
    let mut replace = Vec::new();
    let mut candidates = Vec::new();
    for (_, new, old) in nodes {
        match (new, old) {
            (None, None) | (Some(_), Some(_)) => unavailable += 1,
            (Some(new), None) => {
                if !(view.available)(new) {
                    unavailable += 1;
                }
            }
            (None, Some(old)) => {
                if !(view.available)(old) {
                    replace.push(old.name_any());
                } else {
                    candidates.push(old.name_any());
                }
            }
        }
    }
    let room = budget
        .max_unavailable
        .saturating_sub(unavailable)
        .min(candidates.len());
    plan.delete.extend(replace);
    plan.delete.extend(candidates.into_iter().take(room));
}

/// New pods started beside old ones on at most `maxSurge` nodes at once; an old pod goes
/// once the new one beside it is available; a node whose old pod is not available gets its
/// new pod regardless.
fn surge_update(nodes: &[NodePods<'_, '_>], view: &View<'_, '_>, budget: Budget, plan: &mut Plan) {
    let mut surging = 0;
    let mut allowed = Vec::new();
    let mut candidates = Vec::new();
    for (node, new, old) in nodes {
        let Some(old) = old else { continue };
        match new {
            None if !(view.available)(old) => allowed.push((*node).clone()),
            None => candidates.push((*node).clone()),
            Some(new) if (view.available)(new) => plan.delete.push(old.name_any()),
            Some(_) => surging += 1,
        }
    }
    let room = budget
        .max_surge
        .saturating_sub(surging)
        .min(candidates.len());
    plan.create_on.extend(allowed);
    plan.create_on.extend(candidates.into_iter().take(room));
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::apps::v1::RollingUpdateDaemonSet;
    use serde_json::json;

    use super::*;

    fn pod(name: &str, revision: &str, ready: bool) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name, "labels": {"rev": revision}},
            "status": {"conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]},
        }))
        .expect("pod")
    }

    fn is_new(p: &Pod) -> bool {
        p.labels().get("rev").map(String::as_str) == Some("new")
    }

    fn available(p: &Pod) -> bool {
        crate::controllers::workload::is_ready(p)
    }

    fn strategy(surge: i32, unavailable: i32) -> DaemonSetUpdateStrategy {
        DaemonSetUpdateStrategy {
            type_: Some("RollingUpdate".to_owned()),
            rolling_update: Some(RollingUpdateDaemonSet {
                max_surge: Some(IntOrString::Int(surge)),
                max_unavailable: Some(IntOrString::Int(unavailable)),
            }),
        }
    }

    fn run(pods: &[(&str, Vec<Pod>)], eligible: &[&str], budget: Option<Budget>) -> Plan {
        let eligible: Vec<String> = eligible.iter().map(|s| (*s).to_owned()).collect();
        let by_node: BTreeMap<String, Vec<&Pod>> = pods
            .iter()
            .map(|(n, p)| ((*n).to_owned(), p.iter().collect()))
            .collect();
        plan(
            &View {
                eligible: &eligible,
                by_node: &by_node,
                is_new: &is_new,
                available: &available,
            },
            budget,
        )
    }

    #[test]
    fn budgets_round_up_and_never_stall() {
        let percent = DaemonSetUpdateStrategy {
            type_: Some("RollingUpdate".to_owned()),
            rolling_update: Some(RollingUpdateDaemonSet {
                max_surge: Some(IntOrString::String("10%".to_owned())),
                max_unavailable: Some(IntOrString::Int(0)),
            }),
        };
        assert_eq!(
            budget(Some(&percent), 3),
            Some(Budget {
                max_surge: 1,
                max_unavailable: 0
            })
        );
        assert_eq!(
            budget(Some(&strategy(0, 0)), 3).map(|b| b.max_unavailable),
            Some(1)
        );
        let on_delete = DaemonSetUpdateStrategy {
            type_: Some("OnDelete".to_owned()),
            rolling_update: Some(RollingUpdateDaemonSet {
                max_surge: Some(IntOrString::Int(1)),
                max_unavailable: None,
            }),
        };
        assert_eq!(budget(Some(&on_delete), 3), None);
    }

    #[test]
    fn missing_pods_are_created_and_misplaced_ones_deleted() {
        let plan = run(
            &[("gone", vec![pod("x", "new", true)])],
            &["n1"],
            budget(Some(&strategy(0, 1)), 1),
        );
        assert_eq!(plan.create_on, ["n1"]);
        assert_eq!(plan.delete, ["x"]);
    }

    #[test]
    fn without_surge_old_pods_go_within_max_unavailable() {
        let pods = [
            ("n1", vec![pod("a", "old", true)]),
            ("n2", vec![pod("b", "old", true)]),
            ("n3", vec![pod("c", "old", false)]),
        ];
        let plan = run(&pods, &["n1", "n2", "n3"], budget(Some(&strategy(0, 1)), 3));
        // The unavailable old pod is replaced regardless; one more may go.
        assert_eq!(plan.delete, ["c", "a"]);
        // A node already without a pod uses the budget up.
        let pods = [
            ("n1", vec![pod("a", "old", true)]),
            ("n2", vec![pod("b", "new", false)]),
        ];
        let plan = run(&pods, &["n1", "n2"], budget(Some(&strategy(0, 1)), 2));
        assert!(plan.delete.is_empty(), "{plan:?}");
        assert!(plan.create_on.is_empty(), "{plan:?}");
    }

    #[test]
    fn with_surge_the_new_pod_comes_first_and_the_old_goes_once_it_is_available() {
        let nodes = ["n1", "n2"];
        let b = budget(Some(&strategy(1, 0)), 2);
        let start = [
            ("n1", vec![pod("a", "old", true)]),
            ("n2", vec![pod("b", "old", true)]),
        ];
        let plan = run(&start, &nodes, b);
        assert_eq!(plan.create_on, ["n1"], "one node surges at a time");
        assert!(
            plan.delete.is_empty(),
            "no old pod goes before its successor is up"
        );
        let starting = [
            ("n1", vec![pod("a", "old", true), pod("a2", "new", false)]),
            ("n2", vec![pod("b", "old", true)]),
        ];
        let plan = run(&starting, &nodes, b);
        assert_eq!(plan, Plan::default(), "waiting for the new pod");
        let up = [
            ("n1", vec![pod("a", "old", true), pod("a2", "new", true)]),
            ("n2", vec![pod("b", "old", true)]),
        ];
        let plan = run(&up, &nodes, b);
        assert_eq!(plan.delete, ["a"]);
        assert_eq!(
            plan.create_on,
            ["n2"],
            "a node whose old pod goes frees its surge slot (as kube counts)"
        );
        // Extra pods beyond one new and one old are removed.
        let crowded = [(
            "n1",
            vec![
                pod("a", "old", true),
                pod("a2", "new", true),
                pod("a3", "new", true),
            ],
        )];
        let plan = run(&crowded, &["n1"], b);
        assert_eq!(plan.delete, ["a3", "a"]);
    }

    #[test]
    fn on_delete_leaves_old_pods_alone() {
        let pods = [("n1", vec![pod("a", "old", true)])];
        assert_eq!(run(&pods, &["n1"], None), Plan::default());
    }
}
