//! policy/v1 PodDisruptionBudget: how many of a set of pods must stay up while they are
//! evicted (by `kubectl drain`, by the eviction API); validated as kube does.

use k8s_openapi::{
    api::policy::v1::PodDisruptionBudget, apimachinery::pkg::util::intstr::IntOrString,
};

use super::label_selector;
use crate::{
    model::validation::{ErrorList, FieldError},
    resources::strategy::Kind,
};

const EVICTION_POLICIES: &[&str] = &["AlwaysAllow", "IfHealthyBudget"];

/// An absolute number ≥ 0 or a percentage 0%–100%.
fn int_or_percent(value: &IntOrString, field: &str, errors: &mut ErrorList) {
    match value {
        IntOrString::Int(n) => super::non_negative(Some(*n), field, errors),
        IntOrString::String(text) => {
            let percent = text.strip_suffix('%').and_then(|n| n.parse::<i64>().ok());
            match percent {
                Some(p) if (0..=100).contains(&p) => {}
                Some(_) => errors.push(FieldError::invalid(
                    field,
                    text,
                    "must not be greater than 100%",
                )),
                None => errors.push(FieldError::invalid(
                    field,
                    text,
                    "a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')",
                )),
            }
        }
    }
}

impl Kind for PodDisruptionBudget {
    fn validate(&self, _old: Option<&Self>, errors: &mut ErrorList) {
        let Some(spec) = &self.spec else {
            return;
        };
        if spec.min_available.is_some() && spec.max_unavailable.is_some() {
            errors.push(FieldError::invalid(
                "spec",
                "",
                "minAvailable and maxUnavailable cannot be both set",
            ));
        }
        if let Some(min) = &spec.min_available {
            int_or_percent(min, "spec.minAvailable", errors);
        }
        if let Some(max) = &spec.max_unavailable {
            int_or_percent(max, "spec.maxUnavailable", errors);
        }
        if let Some(selector) = &spec.selector {
            label_selector(selector, "spec.selector", errors);
        }
        if let Some(policy) = &spec.unhealthy_pod_eviction_policy
            && !EVICTION_POLICIES.contains(&policy.as_str())
        {
            errors.push(FieldError::not_supported(
                "spec.unhealthyPodEvictionPolicy",
                policy,
                EVICTION_POLICIES,
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn errors(spec: serde_json::Value) -> Vec<String> {
        let pdb: PodDisruptionBudget =
            serde_json::from_value(json!({"metadata": {"name": "b"}, "spec": spec}))
                .expect("a PodDisruptionBudget");
        let mut errors = ErrorList::new();
        pdb.validate(None, &mut errors);
        errors.into_iter().map(|e| e.field).collect()
    }

    #[test]
    fn budgets_as_kube_validates_them() {
        assert!(
            errors(json!({"minAvailable": "50%", "selector": {"matchLabels": {"app": "a"}}}))
                .is_empty()
        );
        assert!(errors(json!({"maxUnavailable": 1})).is_empty());
        assert_eq!(
            errors(json!({"minAvailable": 1, "maxUnavailable": 1})),
            ["spec"]
        );
        assert_eq!(
            errors(json!({"minAvailable": "150%"})),
            ["spec.minAvailable"]
        );
        assert_eq!(
            errors(json!({"maxUnavailable": "x"})),
            ["spec.maxUnavailable"]
        );
        assert_eq!(
            errors(json!({"maxUnavailable": -1})),
            ["spec.maxUnavailable"]
        );
        assert_eq!(
            errors(json!({"unhealthyPodEvictionPolicy": "Sometimes"})),
            ["spec.unhealthyPodEvictionPolicy"]
        );
    }
}
