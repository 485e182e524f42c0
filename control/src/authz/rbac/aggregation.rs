//! ClusterRole aggregation, as kube's clusterrole-aggregation controller computes it
//! (`pkg/controller/clusterroleaggregation`): an aggregated ClusterRole's rules are the
//! rules of every other ClusterRole its `aggregationRule.clusterRoleSelectors` select,
//! selector by selector, the selected roles in name order, each rule once.

use std::collections::BTreeMap;

use k8s_openapi::{
    api::rbac::v1::{ClusterRole, PolicyRule},
    apimachinery::pkg::apis::meta::v1::LabelSelector as MetaLabelSelector,
};

use crate::model::{
    selector::{LabelSelector, Requirement},
    validation::{label_value, qualified_name},
};

/// A selector kube would refuse to evaluate (the controller retries the role until fixed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("clusterrole {role:?}: {message}")]
pub struct AggregationError {
    /// The aggregated ClusterRole.
    pub role: String,
    /// What is wrong with its selector.
    pub message: String,
}

/// The rules `role` should have given `all` ClusterRoles (which may include `role` itself;
/// it never aggregates from itself), or `None` if it has no aggregationRule.
pub fn aggregated_rules(
    role: &ClusterRole,
    all: &[ClusterRole],
) -> Result<Option<Vec<PolicyRule>>, AggregationError> {
    let Some(aggregation) = &role.aggregation_rule else {
        return Ok(None);
    };
    let name = role.metadata.name.as_deref().unwrap_or_default();
    let mut sorted: Vec<&ClusterRole> = all.iter().collect();
    sorted.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));

    let mut rules: Vec<PolicyRule> = Vec::new();
    for selector in aggregation.cluster_role_selectors.iter().flatten() {
        let selector = to_selector(selector).map_err(|message| AggregationError {
            role: name.to_owned(),
            message,
        })?;
        let empty = BTreeMap::new();
        for candidate in &sorted {
            if candidate.metadata.name.as_deref().unwrap_or_default() == name {
                continue;
            }
            let labels = candidate.metadata.labels.as_ref().unwrap_or(&empty);
            if !selector.matches(labels) {
                continue;
            }
            for rule in candidate.rules.iter().flatten() {
                if !rules.iter().any(|known| same_rule(known, rule)) {
                    rules.push(rule.clone());
                }
            }
        }
    }
    Ok(Some(rules))
}

/// True if the role's rules already equal `rules` (kube compares semantically: an absent
/// list equals an empty one).
pub fn rules_equal(role: &ClusterRole, rules: &[PolicyRule]) -> bool {
    let current = role.rules.as_deref().unwrap_or_default();
    current.len() == rules.len() && current.iter().zip(rules).all(|(a, b)| same_rule(a, b))
}

/// Aggregate every aggregated ClusterRole of `all` until nothing changes (aggregated roles
/// may select each other: `admin` selects `edit`, which selects `view`), as the controller
/// converges. Returns the names of the roles whose rules changed. Stops after as many rounds
/// as there are roles, which suffices for any chain without cycles.
pub fn aggregate_all(all: &mut [ClusterRole]) -> Result<Vec<String>, AggregationError> {
    let mut changed: Vec<String> = Vec::new();
    for _ in 0..=all.len() {
        let mut round_changed = false;
        for index in 0..all.len() {
            let Some(rules) = aggregated_rules(&all[index], all)? else {
                continue;
            };
            let role = &mut all[index];
            if rules_equal(role, &rules) {
                continue;
            }
            role.rules = Some(rules);
            round_changed = true;
            let name = role.metadata.name.clone().unwrap_or_default();
            if !changed.contains(&name) {
                changed.push(name);
            }
        }
        if !round_changed {
            break;
        }
    }
    Ok(changed)
}

/// kube's `equality.Semantic.DeepEqual` of two rules: absent and empty lists are equal.
fn same_rule(a: &PolicyRule, b: &PolicyRule) -> bool {
    fn list(field: &Option<Vec<String>>) -> &[String] {
        field.as_deref().unwrap_or_default()
    }
    a.verbs == b.verbs
        && list(&a.api_groups) == list(&b.api_groups)
        && list(&a.resources) == list(&b.resources)
        && list(&a.resource_names) == list(&b.resource_names)
        && list(&a.non_resource_urls) == list(&b.non_resource_urls)
}

/// A metav1.LabelSelector as a selector, refused where kube's `LabelSelectorAsSelector`
/// refuses it. An empty selector selects every ClusterRole.
fn to_selector(selector: &MetaLabelSelector) -> Result<LabelSelector, String> {
    let mut requirements = Vec::new();
    for (key, value) in selector.match_labels.iter().flatten() {
        check_key(key)?;
        check_value(value)?;
        requirements.push(Requirement::Equals(key.clone(), value.clone()));
    }
    for expression in selector.match_expressions.iter().flatten() {
        let key = &expression.key;
        check_key(key)?;
        let values = expression.values.clone().unwrap_or_default();
        let requirement = match expression.operator.as_str() {
            "In" | "NotIn" => {
                if values.is_empty() {
                    return Err("for 'in', 'notin' operators, values set can't be empty".into());
                }
                for value in &values {
                    check_value(value)?;
                }
                if expression.operator == "In" {
                    Requirement::In(key.clone(), values)
                } else {
                    Requirement::NotIn(key.clone(), values)
                }
            }
            "Exists" | "DoesNotExist" => {
                if !values.is_empty() {
                    return Err("values set must be empty for exists and does not exist".into());
                }
                if expression.operator == "Exists" {
                    Requirement::Exists(key.clone())
                } else {
                    Requirement::DoesNotExist(key.clone())
                }
            }
            other => return Err(format!("{other:?} is not a valid label selector operator")),
        };
        requirements.push(requirement);
    }
    Ok(LabelSelector(requirements))
}

fn check_key(key: &str) -> Result<(), String> {
    match qualified_name(key) {
        Some(problem) => Err(format!("key: Invalid value: {key:?}: {problem}")),
        None => Ok(()),
    }
}

fn check_value(value: &str) -> Result<(), String> {
    match label_value(value) {
        Some(problem) => Err(format!("values[0]: Invalid value: {value:?}: {problem}")),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authz::rbac::rules::tests::rule;
    use k8s_openapi::{
        api::rbac::v1::AggregationRule,
        apimachinery::pkg::apis::meta::v1::{LabelSelectorRequirement, ObjectMeta},
    };

    fn role(name: &str, labels: &[(&str, &str)], rules: Vec<PolicyRule>) -> ClusterRole {
        ClusterRole {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                labels: Some(
                    labels
                        .iter()
                        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                        .collect(),
                ),
                ..ObjectMeta::default()
            },
            rules: Some(rules),
            aggregation_rule: None,
        }
    }

    fn aggregating(
        name: &str,
        labels: &[(&str, &str)],
        selectors: Vec<MetaLabelSelector>,
    ) -> ClusterRole {
        ClusterRole {
            aggregation_rule: Some(AggregationRule {
                cluster_role_selectors: Some(selectors),
            }),
            rules: None,
            ..role(name, labels, vec![])
        }
    }

    fn match_label(key: &str) -> MetaLabelSelector {
        MetaLabelSelector {
            match_labels: Some([(key.to_owned(), "true".to_owned())].into()),
            match_expressions: None,
        }
    }

    fn expression(key: &str, operator: &str, values: &[&str]) -> MetaLabelSelector {
        MetaLabelSelector {
            match_labels: None,
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: key.to_owned(),
                operator: operator.to_owned(),
                values: (!values.is_empty())
                    .then(|| values.iter().map(|v| (*v).to_owned()).collect()),
            }]),
        }
    }

    #[test]
    fn gathers_selected_roles_in_name_order_once() {
        let get = rule(&[""], &["pods"], &["get"]);
        let list = rule(&[""], &["pods"], &["list"]);
        let all = vec![
            role("zeta", &[("agg", "true")], vec![list.clone(), get.clone()]),
            role("alpha", &[("agg", "true")], vec![get.clone()]),
            role(
                "other",
                &[("agg", "false")],
                vec![rule(&[""], &["secrets"], &["get"])],
            ),
            aggregating("target", &[("agg", "true")], vec![match_label("agg")]),
        ];
        let target = &all[3];
        assert_eq!(aggregated_rules(target, &all), Ok(Some(vec![get, list])));
        assert_eq!(aggregated_rules(&all[0], &all), Ok(None));
    }

    #[test]
    fn selectors_in_order_and_expressions() {
        let a = rule(&[""], &["a"], &["get"]);
        let b = rule(&[""], &["b"], &["get"]);
        let all = vec![
            role("r1", &[("tier", "x")], vec![a.clone()]),
            role("r2", &[("tier", "y")], vec![b.clone()]),
            role("r3", &[], vec![rule(&[""], &["c"], &["get"])]),
        ];
        let target = aggregating(
            "t",
            &[],
            vec![
                expression("tier", "In", &["y"]),
                expression("tier", "Exists", &[]),
            ],
        );
        assert_eq!(aggregated_rules(&target, &all), Ok(Some(vec![b, a])));
        let nothing = aggregating(
            "t",
            &[],
            vec![
                expression("tier", "NotIn", &["x", "y"]),
                match_label("none"),
            ],
        );
        let with_r3_only = aggregated_rules(&nothing, &all).expect("valid");
        assert_eq!(with_r3_only, Some(vec![rule(&[""], &["c"], &["get"])]));
    }

    #[test]
    fn bad_selectors_are_refused() {
        let all = vec![role("r", &[], vec![])];
        for selector in [
            expression("k", "In", &[]),
            expression("k", "Exists", &["v"]),
            expression("k", "Near", &["v"]),
            expression("bad key!", "Exists", &[]),
        ] {
            let target = aggregating("t", &[], vec![selector]);
            assert!(aggregated_rules(&target, &all).is_err());
        }
    }

    #[test]
    fn converges_through_chains() {
        let view_rule = rule(&[""], &["pods"], &["get"]);
        let edit_rule = rule(&[""], &["pods"], &["create"]);
        let mut all = vec![
            aggregating("admin", &[], vec![match_label("to-admin")]),
            aggregating(
                "edit",
                &[("to-admin", "true")],
                vec![match_label("to-edit")],
            ),
            aggregating("view", &[("to-edit", "true")], vec![match_label("to-view")]),
            role("view-bits", &[("to-view", "true")], vec![view_rule.clone()]),
            role("edit-bits", &[("to-edit", "true")], vec![edit_rule.clone()]),
        ];
        let changed = aggregate_all(&mut all).expect("valid selectors");
        assert_eq!(changed.len(), 3);
        assert_eq!(all[2].rules, Some(vec![view_rule.clone()]));
        assert_eq!(
            all[1].rules,
            Some(vec![edit_rule.clone(), view_rule.clone()])
        );
        assert_eq!(all[0].rules, Some(vec![edit_rule, view_rule]));
        assert_eq!(aggregate_all(&mut all), Ok(vec![]));
    }
}
