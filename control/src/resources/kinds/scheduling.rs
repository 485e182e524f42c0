//! scheduling.k8s.io/v1 PriorityClass: a named pod priority. Users may define values up
//! to one billion; the `system-` names and the values above are kube's own
//! (`system-node-critical`, `system-cluster-critical`, created at start).

use k8s_openapi::api::scheduling::v1::PriorityClass;

use super::immutable;
use crate::{
    model::validation::{ErrorList, FieldError},
    resources::strategy::Kind,
};

/// The highest priority a user-defined class may have (kube's HighestUserDefinablePriority).
pub const HIGHEST_USER_DEFINABLE_PRIORITY: i32 = 1_000_000_000;
/// kube's SystemCriticalPriority: the base of the two built-in system classes.
pub const SYSTEM_CRITICAL_PRIORITY: i32 = 2 * HIGHEST_USER_DEFINABLE_PRIORITY;
/// The built-in classes: name and value.
pub const SYSTEM_PRIORITY_CLASSES: &[(&str, i32)] = &[
    ("system-node-critical", SYSTEM_CRITICAL_PRIORITY + 1000),
    ("system-cluster-critical", SYSTEM_CRITICAL_PRIORITY),
];
const PREEMPTION_POLICIES: &[&str] = &["Never", "PreemptLowerPriority"];

impl Kind for PriorityClass {
    fn default_fields(&mut self) {
        self.preemption_policy
            .get_or_insert_with(|| "PreemptLowerPriority".to_owned());
    }

    fn validate(&self, old: Option<&Self>, errors: &mut ErrorList) {
        let name = self.metadata.name.as_deref().unwrap_or_default();
        if name.starts_with("system-") {
            if !SYSTEM_PRIORITY_CLASSES
                .iter()
                .any(|(n, v)| *n == name && *v == self.value)
            {
                errors.push(FieldError::forbidden(
                    "metadata.name",
                    "priority class names with 'system-' prefix are reserved for system use only",
                ));
            }
        } else if self.value > HIGHEST_USER_DEFINABLE_PRIORITY {
            errors.push(FieldError::forbidden(
                "value",
                format!(
                    "maximum allowed value of a user defined priority is {HIGHEST_USER_DEFINABLE_PRIORITY}"
                ),
            ));
        }
        if let Some(policy) = &self.preemption_policy
            && !PREEMPTION_POLICIES.contains(&policy.as_str())
        {
            errors.push(FieldError::not_supported(
                "preemptionPolicy",
                policy,
                PREEMPTION_POLICIES,
            ));
        }
        if let Some(old) = old {
            immutable(&self.value, &old.value, "value", errors);
            immutable(
                &self.preemption_policy,
                &old.preemption_policy,
                "preemptionPolicy",
                errors,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn class(name: &str, value: i64) -> PriorityClass {
        let mut class: PriorityClass =
            serde_json::from_value(json!({"metadata": {"name": name}, "value": value}))
                .expect("a PriorityClass");
        class.default_fields();
        class
    }

    fn fields(class: &PriorityClass, old: Option<&PriorityClass>) -> Vec<String> {
        let mut errors = ErrorList::new();
        class.validate(old, &mut errors);
        errors.into_iter().map(|e| e.field).collect()
    }

    #[test]
    fn reserved_names_and_values() {
        assert!(fields(&class("high", 1_000_000), None).is_empty());
        assert_eq!(fields(&class("huge", 1_000_000_001), None), ["value"]);
        assert_eq!(fields(&class("system-mine", 10), None), ["metadata.name"]);
        assert!(fields(&class("system-node-critical", 2_000_001_000), None).is_empty());
        assert_eq!(
            fields(&class("high", 5), Some(&class("high", 6))),
            ["value"]
        );
        assert_eq!(
            class("high", 5).preemption_policy.as_deref(),
            Some("PreemptLowerPriority")
        );
    }
}
