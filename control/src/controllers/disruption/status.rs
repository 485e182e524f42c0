//! A budget's status from what the caches show, as kube's disruption controller computes it
//! (`getExpectedPodCount`, `buildDisruptedPodMap`, `countHealthyPods`, `updatePdbStatus`,
//! `failSafe`): plain data in, plain data out.

use std::collections::BTreeMap;

use k8s_openapi::{
    api::{
        core::v1::Pod,
        policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec, PodDisruptionBudgetStatus},
    },
    apimachinery::pkg::{apis::meta::v1::Time, util::intstr::IntOrString},
};

use crate::model::disruption::{
    SYNC_FAILED, condition, conditions_are_up_to_date, is_pod_ready, set_condition,
    update_disruption_allowed_condition,
};

/// How long a pod the eviction subresource recorded in `disruptedPods` is expected to take to
/// show a deletion timestamp; after that it counts again (kube's `DeletionTimeout`).
pub const DELETION_TIMEOUT: jiff::SignedDuration = jiff::SignedDuration::from_secs(120);

/// Why the expected and desired pod counts cannot be computed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid value for IntOrString: {0}")]
pub struct CountError(String);

/// Whether the budget's counts come from the pods' controllers' scale (`maxUnavailable`, or
/// a percentage `minAvailable`) rather than from the number of pods (an integer
/// `minAvailable`).
pub fn needs_scale(spec: Option<&PodDisruptionBudgetSpec>) -> bool {
    spec.is_some_and(|s| {
        s.max_unavailable.is_some() || matches!(s.min_available, Some(IntOrString::String(_)))
    })
}

/// kube's `GetScaledValueFromIntOrPercent`: an integer as it is, a percentage of `total`
/// (rounded as asked).
pub fn scaled_value(value: &IntOrString, total: i32, round_up: bool) -> Result<i32, CountError> {
    match value {
        IntOrString::Int(n) => Ok(*n),
        IntOrString::String(text) => {
            let Some(number) = text.strip_suffix('%') else {
                return Err(CountError(
                    "invalid type: string is not a percentage".to_owned(),
                ));
            };
            let percent: i64 = number
                .parse()
                .map_err(|e| CountError(format!("invalid value {text:?}: {e}")))?;
            // Go's float arithmetic, as kube computes it.
            #[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation)]
            let scaled = {
                let exact = percent as f64 * f64::from(total) / 100.0;
                let rounded = if round_up {
                    exact.ceil()
                } else {
                    exact.floor()
                };
                rounded.clamp(f64::from(i32::MIN), f64::from(i32::MAX)) as i32
            };
            Ok(scaled)
        }
    }
}

/// The pods a budget expects and how many of them must stay healthy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// `expectedPods`.
    pub expected: i32,
    /// `desiredHealthy`.
    pub desired_healthy: i32,
}

/// kube's `getExpectedPodCount`: `pods` is the number of pods the budget selects, `scale`
/// the summed scale of their controllers (asked for only when [`needs_scale`]).
pub fn counts(
    spec: Option<&PodDisruptionBudgetSpec>,
    pods: usize,
    scale: Option<i32>,
) -> Result<Counts, CountError> {
    let scale = scale.unwrap_or(0);
    let Some(spec) = spec else {
        return Ok(Counts {
            expected: 0,
            desired_healthy: 0,
        });
    };
    if let Some(max_unavailable) = &spec.max_unavailable {
        let unavailable = scaled_value(max_unavailable, scale, true)?;
        return Ok(Counts {
            expected: scale,
            desired_healthy: scale.saturating_sub(unavailable).max(0),
        });
    }
    match &spec.min_available {
        Some(IntOrString::Int(n)) => Ok(Counts {
            expected: i32::try_from(pods).unwrap_or(i32::MAX),
            desired_healthy: *n,
        }),
        Some(percent @ IntOrString::String(_)) => Ok(Counts {
            expected: scale,
            desired_healthy: scaled_value(percent, scale, true)?,
        }),
        None => Ok(Counts {
            expected: 0,
            desired_healthy: 0,
        }),
    }
}

/// The `disruptedPods` entries that still hold, and what the rest tells.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Disrupted {
    /// Pods the eviction subresource let go that are not yet seen deleting, within
    /// [`DELETION_TIMEOUT`].
    pub pods: BTreeMap<String, Time>,
    /// When the earliest of them times out (look again then).
    pub recheck: Option<jiff::Timestamp>,
    /// Pods that were expected to be deleted but were not (kube's `NotDeleted` event).
    pub not_deleted: Vec<String>,
}

/// kube's `buildDisruptedPodMap`: keep the entries of selected pods that are not being deleted
/// yet and have not timed out.
pub fn disrupted_pods(
    budget: &PodDisruptionBudget,
    pods: &[&Pod],
    now: jiff::Timestamp,
) -> Disrupted {
    let mut result = Disrupted::default();
    let Some(recorded) = budget
        .status
        .as_ref()
        .and_then(|s| s.disrupted_pods.as_ref())
    else {
        return result;
    };
    for pod in pods {
        if pod.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let name = pod.metadata.name.clone().unwrap_or_default();
        let Some(disrupted_at) = recorded.get(&name) else {
            continue;
        };
        let expected_deletion = disrupted_at.0 + DELETION_TIMEOUT;
        if expected_deletion < now {
            result.not_deleted.push(name);
        } else {
            if result.recheck.is_none_or(|r| expected_deletion < r) {
                result.recheck = Some(expected_deletion);
            }
            result.pods.insert(name, disrupted_at.clone());
        }
    }
    result
}

/// kube's `countHealthyPods`: ready pods that are neither being deleted nor about to be (in
/// `disrupted`, within the timeout).
pub fn count_healthy(
    pods: &[&Pod],
    disrupted: &BTreeMap<String, Time>,
    now: jiff::Timestamp,
) -> i32 {
    let healthy = pods
        .iter()
        .filter(|pod| pod.metadata.deletion_timestamp.is_none())
        .filter(|pod| {
            let name = pod.metadata.name.as_deref().unwrap_or_default();
            disrupted
                .get(name)
                .is_none_or(|at| at.0 + DELETION_TIMEOUT <= now)
        })
        .filter(|pod| is_pod_ready(pod))
        .count();
    i32::try_from(healthy).unwrap_or(i32::MAX)
}

/// kube's `updatePdbStatus`: the status to write, or `None` when the stored one already says
/// all of it (then nothing is written).
pub fn desired_status(
    budget: &PodDisruptionBudget,
    current_healthy: i32,
    counts: Counts,
    disrupted: BTreeMap<String, Time>,
    now: jiff::Timestamp,
) -> Option<PodDisruptionBudgetStatus> {
    // A budget that expects no pods allows nothing, so pods that appear before the next sync
    // are safe.
    let mut allowed = current_healthy.saturating_sub(counts.desired_healthy);
    if counts.expected <= 0 || allowed <= 0 {
        allowed = 0;
    }
    let generation = budget.metadata.generation.unwrap_or(0);
    let current = budget.status.clone().unwrap_or_default();
    let up_to_date = current.current_healthy == current_healthy
        && current.desired_healthy == counts.desired_healthy
        && current.expected_pods == counts.expected
        && current.disruptions_allowed == allowed
        && current.disrupted_pods.clone().unwrap_or_default() == disrupted
        && current.observed_generation.unwrap_or(0) == generation
        && conditions_are_up_to_date(budget);
    if up_to_date {
        return None;
    }
    let mut status = PodDisruptionBudgetStatus {
        current_healthy,
        desired_healthy: counts.desired_healthy,
        expected_pods: counts.expected,
        disruptions_allowed: allowed,
        disrupted_pods: Some(disrupted).filter(|d| !d.is_empty()),
        observed_generation: Some(generation),
        conditions: current.conditions,
    };
    update_disruption_allowed_condition(&mut status, now);
    Some(status)
}

/// kube's `failSafe`: when the status cannot be computed, at least allow no disruption and say
/// why (`SyncFailed`). `None` when the stored status already says so.
pub fn fail_safe_status(
    budget: &PodDisruptionBudget,
    why: &str,
    now: jiff::Timestamp,
) -> Option<PodDisruptionBudgetStatus> {
    let current = budget.status.clone().unwrap_or_default();
    let mut status = current.clone();
    status.disruptions_allowed = 0;
    let failed = condition(&status, false, SYNC_FAILED, why, now);
    set_condition(status.conditions.get_or_insert_with(Vec::new), failed);
    (status != current).then_some(status)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::model::disruption::{INSUFFICIENT_PODS, SUFFICIENT_PODS};

    fn at(seconds: i64) -> jiff::Timestamp {
        jiff::Timestamp::from_second(1_700_000_000 + seconds).expect("time")
    }

    fn budget(spec: serde_json::Value) -> PodDisruptionBudget {
        serde_json::from_value(
            json!({"metadata": {"name": "b", "namespace": "ns", "generation": 1},
            "spec": spec}),
        )
        .expect("a PodDisruptionBudget")
    }

    fn pod(name: &str, ready: bool, deleting: bool) -> Pod {
        let mut pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "ns"},
            "status": {"phase": "Running",
                       "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]},
        }))
        .expect("pod");
        if deleting {
            pod.metadata.deletion_timestamp = Some(Time(at(0)));
        }
        pod
    }

    fn spec(pdb: &PodDisruptionBudget) -> Option<&PodDisruptionBudgetSpec> {
        pdb.spec.as_ref()
    }

    #[test]
    fn percentages_round_up_as_kube_does() {
        let half = IntOrString::String("50%".into());
        assert_eq!(scaled_value(&half, 3, true), Ok(2));
        assert_eq!(scaled_value(&half, 3, false), Ok(1));
        assert_eq!(scaled_value(&IntOrString::Int(4), 3, true), Ok(4));
        assert!(scaled_value(&IntOrString::String("half".into()), 3, true).is_err());
        assert!(scaled_value(&IntOrString::String("x%".into()), 3, true).is_err());
    }

    #[test]
    fn counts_from_pods_or_from_the_controllers_scale() {
        let min_int = budget(json!({"minAvailable": 2}));
        assert!(!needs_scale(spec(&min_int)));
        assert_eq!(
            counts(spec(&min_int), 3, None),
            Ok(Counts {
                expected: 3,
                desired_healthy: 2
            })
        );
        let min_percent = budget(json!({"minAvailable": "50%"}));
        assert!(needs_scale(spec(&min_percent)));
        assert_eq!(
            counts(spec(&min_percent), 2, Some(5)),
            Ok(Counts {
                expected: 5,
                desired_healthy: 3
            })
        );
        let max_int = budget(json!({"maxUnavailable": 1}));
        assert!(needs_scale(spec(&max_int)));
        assert_eq!(
            counts(spec(&max_int), 4, Some(4)),
            Ok(Counts {
                expected: 4,
                desired_healthy: 3
            })
        );
        let max_percent = budget(json!({"maxUnavailable": "30%"}));
        assert_eq!(
            counts(spec(&max_percent), 4, Some(4)),
            Ok(Counts {
                expected: 4,
                desired_healthy: 2
            })
        );
        let everything_down = budget(json!({"maxUnavailable": 10}));
        assert_eq!(
            counts(spec(&everything_down), 4, Some(4)),
            Ok(Counts {
                expected: 4,
                desired_healthy: 0
            })
        );
        let neither = budget(json!({}));
        assert_eq!(
            counts(spec(&neither), 4, None),
            Ok(Counts {
                expected: 0,
                desired_healthy: 0
            })
        );
    }

    #[test]
    fn healthy_pods_are_ready_not_deleting_and_not_just_evicted() {
        let pods = [
            pod("ready", true, false),
            pod("unready", false, false),
            pod("deleting", true, true),
            pod("evicted", true, false),
            pod("evicted-long-ago", true, false),
        ];
        let refs: Vec<&Pod> = pods.iter().collect();
        let mut pdb = budget(json!({"minAvailable": 1}));
        pdb.status = Some(PodDisruptionBudgetStatus {
            disrupted_pods: Some(BTreeMap::from([
                ("evicted".to_owned(), Time(at(-10))),
                ("evicted-long-ago".to_owned(), Time(at(-600))),
                ("deleting".to_owned(), Time(at(-10))),
                ("gone".to_owned(), Time(at(-10))),
            ])),
            ..PodDisruptionBudgetStatus::default()
        });
        let disrupted = disrupted_pods(&pdb, &refs, at(0));
        assert_eq!(
            disrupted.pods.keys().collect::<Vec<_>>(),
            ["evicted"],
            "pods deleting, gone or past the timeout are dropped"
        );
        assert_eq!(disrupted.not_deleted, ["evicted-long-ago"]);
        assert_eq!(disrupted.recheck, Some(at(110)));
        assert_eq!(count_healthy(&refs, &disrupted.pods, at(0)), 2);
    }

    #[test]
    fn status_allows_what_is_healthy_beyond_the_desired_and_is_written_once() {
        let mut pdb = budget(json!({"minAvailable": 2}));
        let now = at(0);
        let counts = Counts {
            expected: 3,
            desired_healthy: 2,
        };
        let status = desired_status(&pdb, 3, counts, BTreeMap::new(), now).expect("a first status");
        assert_eq!(
            (
                status.current_healthy,
                status.desired_healthy,
                status.expected_pods,
                status.disruptions_allowed,
                status.observed_generation
            ),
            (3, 2, 3, 1, Some(1))
        );
        let condition = &status.conditions.as_ref().expect("conditions")[0];
        assert_eq!(
            (condition.status.as_str(), condition.reason.as_str()),
            ("True", SUFFICIENT_PODS)
        );
        assert_eq!(status.disrupted_pods, None);
        pdb.status = Some(status);
        assert_eq!(
            desired_status(&pdb, 3, counts, BTreeMap::new(), at(60)),
            None,
            "a quiet cluster writes nothing"
        );
        // One pod goes unready: nothing may be disrupted any more.
        let status = desired_status(&pdb, 2, counts, BTreeMap::new(), at(60)).expect("changed");
        assert_eq!(status.disruptions_allowed, 0);
        let condition = &status.conditions.as_ref().expect("conditions")[0];
        assert_eq!(
            (condition.status.as_str(), condition.reason.as_str()),
            ("False", INSUFFICIENT_PODS)
        );
        // A new generation is observed even when the counts are the same.
        pdb.metadata.generation = Some(2);
        let status = desired_status(&pdb, 3, counts, BTreeMap::new(), at(60)).expect("observed");
        assert_eq!(status.observed_generation, Some(2));
    }

    #[test]
    fn a_budget_expecting_no_pods_allows_nothing() {
        let pdb = budget(json!({"maxUnavailable": 1}));
        let counts = Counts {
            expected: 0,
            desired_healthy: 0,
        };
        let status = desired_status(&pdb, 2, counts, BTreeMap::new(), at(0)).expect("status");
        assert_eq!(status.disruptions_allowed, 0);
    }

    #[test]
    fn fail_safe_allows_nothing_and_says_why_once() {
        let mut pdb = budget(json!({"maxUnavailable": 1}));
        pdb.status = Some(PodDisruptionBudgetStatus {
            disruptions_allowed: 2,
            observed_generation: Some(1),
            ..PodDisruptionBudgetStatus::default()
        });
        let status =
            fail_safe_status(&pdb, "found no controllers for pod \"p\"", at(0)).expect("a change");
        assert_eq!(status.disruptions_allowed, 0);
        let condition = &status.conditions.as_ref().expect("conditions")[0];
        assert_eq!(
            (condition.reason.as_str(), condition.message.as_str()),
            (SYNC_FAILED, "found no controllers for pod \"p\"")
        );
        pdb.status = Some(status);
        assert_eq!(
            fail_safe_status(&pdb, "found no controllers for pod \"p\"", at(30)),
            None
        );
    }
}
