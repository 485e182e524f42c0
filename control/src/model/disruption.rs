//! PodDisruptionBudget rules that both the disruption controller and the eviction subresource
//! apply (kube's `component-helpers/apps/poddisruptionbudget` and the pieces of
//! `pkg/api/v1/pod` they use): which pods a budget selects, which pods count as healthy, and
//! the `DisruptionAllowed` condition.

use std::collections::BTreeMap;

use k8s_openapi::{
    api::{
        core::v1::Pod,
        policy::v1::{PodDisruptionBudget, PodDisruptionBudgetStatus},
    },
    apimachinery::pkg::apis::meta::v1::{Condition, Time},
};

use super::selector::LabelSelector;

/// The condition type a budget's status carries.
pub const DISRUPTION_ALLOWED: &str = "DisruptionAllowed";
/// Reason of `DisruptionAllowed=True`.
pub const SUFFICIENT_PODS: &str = "SufficientPods";
/// Reason of `DisruptionAllowed=False` when too few pods are healthy.
pub const INSUFFICIENT_PODS: &str = "InsufficientPods";
/// Reason of `DisruptionAllowed=False` when the controller could not compute the status.
pub const SYNC_FAILED: &str = "SyncFailed";

/// Whether `budget` selects a pod with `labels`. A budget without a selector selects nothing;
/// an empty selector selects every pod of its namespace (policy/v1). An invalid selector is
/// an error (the eviction subresource skips such a budget, the controller fails its sync).
pub fn selects(
    budget: &PodDisruptionBudget,
    labels: &BTreeMap<String, String>,
) -> Result<bool, String> {
    let Some(selector) = budget.spec.as_ref().and_then(|s| s.selector.as_ref()) else {
        return Ok(false);
    };
    Ok(LabelSelector::from_api(selector)?.matches(labels))
}

/// kube's `IsPodReady`: the pod's `Ready` condition is `True`.
pub fn is_pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True")
}

/// `now` as a `metav1.Time` (whole seconds: what the API stores, so values compare equal after
/// a round trip).
pub fn time(now: jiff::Timestamp) -> Time {
    Time(jiff::Timestamp::from_second(now.as_second()).unwrap_or(now))
}

/// kube's `meta.SetStatusCondition`: add `new` or update the condition of its type; the
/// transition time changes only when the status does. True if anything changed.
pub fn set_condition(conditions: &mut Vec<Condition>, new: Condition) -> bool {
    let Some(existing) = conditions.iter_mut().find(|c| c.type_ == new.type_) else {
        conditions.push(new);
        return true;
    };
    let mut changed = false;
    if existing.status != new.status {
        existing.status = new.status;
        existing.last_transition_time = new.last_transition_time;
        changed = true;
    }
    if existing.reason != new.reason {
        existing.reason = new.reason;
        changed = true;
    }
    if existing.message != new.message {
        existing.message = new.message;
        changed = true;
    }
    if existing.observed_generation.unwrap_or(0) != new.observed_generation.unwrap_or(0) {
        existing.observed_generation = new.observed_generation;
        changed = true;
    }
    changed
}

/// The `DisruptionAllowed` condition with `status`, `reason` and `message`, observing the
/// generation the status observes.
pub fn condition(
    status: &PodDisruptionBudgetStatus,
    allowed: bool,
    reason: &str,
    message: &str,
    now: jiff::Timestamp,
) -> Condition {
    Condition {
        type_: DISRUPTION_ALLOWED.to_owned(),
        status: if allowed { "True" } else { "False" }.to_owned(),
        reason: reason.to_owned(),
        message: message.to_owned(),
        observed_generation: status.observed_generation.filter(|g| *g != 0),
        last_transition_time: time(now),
    }
}

/// kube's `UpdateDisruptionAllowedCondition`: `SufficientPods` when disruptions are allowed,
/// `InsufficientPods` otherwise.
pub fn update_disruption_allowed_condition(
    status: &mut PodDisruptionBudgetStatus,
    now: jiff::Timestamp,
) {
    let new = if status.disruptions_allowed > 0 {
        condition(status, true, SUFFICIENT_PODS, "", now)
    } else {
        condition(status, false, INSUFFICIENT_PODS, "", now)
    };
    set_condition(status.conditions.get_or_insert_with(Vec::new), new);
}

/// kube's `ConditionsAreUpToDate`: the `DisruptionAllowed` condition matches
/// `disruptionsAllowed` and the status observes the current generation.
pub fn conditions_are_up_to_date(budget: &PodDisruptionBudget) -> bool {
    let Some(status) = &budget.status else {
        return false;
    };
    let Some(condition) = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == DISRUPTION_ALLOWED)
    else {
        return false;
    };
    if status.observed_generation.unwrap_or(0) != budget.metadata.generation.unwrap_or(0) {
        return false;
    }
    if status.disruptions_allowed > 0 {
        condition.status == "True" && condition.reason == SUFFICIENT_PODS
    } else {
        condition.status == "False" && condition.reason == INSUFFICIENT_PODS
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn budget(value: serde_json::Value) -> PodDisruptionBudget {
        serde_json::from_value(value).expect("a PodDisruptionBudget")
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn a_missing_selector_selects_nothing_and_an_empty_one_everything() {
        let web = labels(&[("app", "web")]);
        let none = budget(json!({"metadata": {"name": "b"}, "spec": {}}));
        assert_eq!(selects(&none, &web), Ok(false));
        let all = budget(json!({"metadata": {"name": "b"}, "spec": {"selector": {}}}));
        assert_eq!(selects(&all, &web), Ok(true));
        let db = budget(json!({"metadata": {"name": "b"},
            "spec": {"selector": {"matchLabels": {"app": "db"}}}}));
        assert_eq!(selects(&db, &web), Ok(false));
        let bad = budget(json!({"metadata": {"name": "b"},
            "spec": {"selector": {"matchExpressions": [{"key": "app", "operator": "In"}]}}}));
        assert!(selects(&bad, &web).is_err());
    }

    #[test]
    fn the_condition_follows_disruptions_allowed_and_keeps_its_transition_time() {
        let earlier = jiff::Timestamp::from_second(1_000).expect("time");
        let later = jiff::Timestamp::from_second(2_000).expect("time");
        let mut status = PodDisruptionBudgetStatus {
            disruptions_allowed: 1,
            observed_generation: Some(3),
            ..PodDisruptionBudgetStatus::default()
        };
        update_disruption_allowed_condition(&mut status, earlier);
        let conditions = status.conditions.clone().expect("conditions");
        assert_eq!(conditions.len(), 1);
        assert_eq!(
            (conditions[0].status.as_str(), conditions[0].reason.as_str()),
            ("True", SUFFICIENT_PODS)
        );
        assert_eq!(conditions[0].observed_generation, Some(3));
        // Same verdict later: nothing changes, not even the transition time.
        update_disruption_allowed_condition(&mut status, later);
        assert_eq!(status.conditions.as_ref(), Some(&conditions));
        status.disruptions_allowed = 0;
        update_disruption_allowed_condition(&mut status, later);
        let flipped = &status.conditions.as_ref().expect("conditions")[0];
        assert_eq!(
            (flipped.status.as_str(), flipped.reason.as_str()),
            ("False", INSUFFICIENT_PODS)
        );
        assert_eq!(flipped.last_transition_time, time(later));
    }

    #[test]
    fn conditions_are_up_to_date_only_for_the_observed_generation() {
        let mut pdb = budget(json!({"metadata": {"name": "b", "generation": 2}, "spec": {}}));
        assert!(!conditions_are_up_to_date(&pdb), "no status");
        let mut status = PodDisruptionBudgetStatus {
            observed_generation: Some(2),
            ..PodDisruptionBudgetStatus::default()
        };
        update_disruption_allowed_condition(&mut status, jiff::Timestamp::now());
        pdb.status = Some(status.clone());
        assert!(conditions_are_up_to_date(&pdb));
        pdb.metadata.generation = Some(3);
        assert!(!conditions_are_up_to_date(&pdb), "a newer spec");
        pdb.metadata.generation = Some(2);
        status.disruptions_allowed = 1;
        pdb.status = Some(status);
        assert!(
            !conditions_are_up_to_date(&pdb),
            "allowed, condition says not"
        );
    }

    #[test]
    fn readiness_is_the_ready_condition() {
        let pod = |ready: &str| -> Pod {
            serde_json::from_value(json!({"metadata": {"name": "p"},
                "status": {"conditions": [{"type": "Ready", "status": ready}]}}))
            .expect("pod")
        };
        assert!(is_pod_ready(&pod("True")));
        assert!(!is_pod_ready(&pod("False")));
        assert!(!is_pod_ready(&Pod::default()));
    }
}
