//! How kube-apiserver brings the bootstrap policy into the cluster at start
//! (`k8s.io/component-helpers/auth/rbac/reconciliation`, as its RBAC post-start hook runs
//! it): a missing object is created; an existing one keeps what it has and gains what the
//! bootstrap version adds (labels and annotations it lacks, rules it does not cover,
//! aggregation selectors, subjects); a binding whose roleRef differs is recreated; an object
//! annotated `rbac.authorization.kubernetes.io/autoupdate: "false"` is left alone.
//!
//! Pure: the caller reads the existing object, calls the matching function and performs the
//! [`Operation`].

use std::collections::BTreeMap;

use k8s_openapi::{
    api::rbac::v1::{
        AggregationRule, ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, Subject,
    },
    apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta},
};

use super::{bootstrap::AUTOUPDATE_ANNOTATION, escalation::covers};

/// What to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// Create the object (it does not exist).
    Create,
    /// Update the existing object (resourceVersion kept) to the reconciled one.
    Update,
    /// Delete the existing binding and create the reconciled one (roleRef is immutable).
    Recreate,
    /// Nothing to do.
    None,
}

/// The outcome of reconciling one object.
#[derive(Debug, Clone, PartialEq)]
pub struct Reconciled<T> {
    /// What to write.
    pub operation: Operation,
    /// The object to write (the existing one when there is nothing to do).
    pub object: T,
    /// The existing object opted out (`autoupdate: "false"`): write nothing, whatever
    /// `operation` says.
    pub protected: bool,
}

impl<T> Reconciled<T> {
    /// The operation to perform, `None` for a protected object.
    pub fn effective_operation(&self) -> Operation {
        if self.protected {
            Operation::None
        } else {
            self.operation
        }
    }
}

/// Reconcile a bootstrap ClusterRole with the existing one, if any.
pub fn reconcile_cluster_role(
    existing: Option<&ClusterRole>,
    expected: &ClusterRole,
) -> Reconciled<ClusterRole> {
    let Some(existing) = existing else {
        return created(expected.clone());
    };
    let mut object = existing.clone();
    let mut operation = merge_metadata(&mut object.metadata, &expected.metadata);
    if let Some(rules) = missing_rules(existing.rules.as_deref(), expected.rules.as_deref()) {
        object.rules.get_or_insert_with(Vec::new).extend(rules);
        operation = Operation::Update;
    }
    match (&expected.aggregation_rule, &existing.aggregation_rule) {
        (None, Some(_)) => {
            object.aggregation_rule = None;
            operation = Operation::Update;
        }
        (Some(wanted), current) => {
            let missing = missing_selectors(current.as_ref(), wanted);
            if !missing.is_empty() {
                object
                    .aggregation_rule
                    .get_or_insert_with(AggregationRule::default)
                    .cluster_role_selectors
                    .get_or_insert_with(Vec::new)
                    .extend(missing);
                operation = Operation::Update;
            }
        }
        (None, None) => {}
    }
    Reconciled {
        operation,
        object,
        protected: protected(&existing.metadata),
    }
}

/// Reconcile a bootstrap Role with the existing one, if any.
pub fn reconcile_role(existing: Option<&Role>, expected: &Role) -> Reconciled<Role> {
    let Some(existing) = existing else {
        return created(expected.clone());
    };
    let mut object = existing.clone();
    let mut operation = merge_metadata(&mut object.metadata, &expected.metadata);
    if let Some(rules) = missing_rules(existing.rules.as_deref(), expected.rules.as_deref()) {
        object.rules.get_or_insert_with(Vec::new).extend(rules);
        operation = Operation::Update;
    }
    Reconciled {
        operation,
        object,
        protected: protected(&existing.metadata),
    }
}

/// Reconcile a bootstrap ClusterRoleBinding with the existing one, if any.
pub fn reconcile_cluster_role_binding(
    existing: Option<&ClusterRoleBinding>,
    expected: &ClusterRoleBinding,
) -> Reconciled<ClusterRoleBinding> {
    let Some(existing) = existing else {
        return created(expected.clone());
    };
    if existing.role_ref != expected.role_ref {
        return recreated(expected.clone(), &existing.metadata);
    }
    let mut object = existing.clone();
    let mut operation = merge_metadata(&mut object.metadata, &expected.metadata);
    if add_missing_subjects(&mut object.subjects, expected.subjects.as_deref()) {
        operation = Operation::Update;
    }
    Reconciled {
        operation,
        object,
        protected: protected(&existing.metadata),
    }
}

/// Reconcile a bootstrap RoleBinding with the existing one, if any.
pub fn reconcile_role_binding(
    existing: Option<&RoleBinding>,
    expected: &RoleBinding,
) -> Reconciled<RoleBinding> {
    let Some(existing) = existing else {
        return created(expected.clone());
    };
    if existing.role_ref != expected.role_ref {
        return recreated(expected.clone(), &existing.metadata);
    }
    let mut object = existing.clone();
    let mut operation = merge_metadata(&mut object.metadata, &expected.metadata);
    if add_missing_subjects(&mut object.subjects, expected.subjects.as_deref()) {
        operation = Operation::Update;
    }
    Reconciled {
        operation,
        object,
        protected: protected(&existing.metadata),
    }
}

fn created<T>(object: T) -> Reconciled<T> {
    Reconciled {
        operation: Operation::Create,
        object,
        protected: false,
    }
}

fn recreated<T>(object: T, existing: &ObjectMeta) -> Reconciled<T> {
    Reconciled {
        operation: Operation::Recreate,
        object,
        protected: protected(existing),
    }
}

fn protected(metadata: &ObjectMeta) -> bool {
    metadata
        .annotations
        .as_ref()
        .and_then(|annotations| annotations.get(AUTOUPDATE_ANNOTATION))
        .is_some_and(|value| value == "false")
}

/// Labels and annotations the existing object lacks are added (its own values win).
/// Returns `Update` if anything changed.
fn merge_metadata(object: &mut ObjectMeta, expected: &ObjectMeta) -> Operation {
    let mut operation = Operation::None;
    for (field, wanted) in [
        (&mut object.annotations, &expected.annotations),
        (&mut object.labels, &expected.labels),
    ] {
        let merged = merge(wanted.as_ref(), field.as_ref());
        if merged != *field {
            *field = merged;
            operation = Operation::Update;
        }
    }
    operation
}

/// kube's `merge(expected, existing)`: later maps win; absent only if both are.
fn merge(
    expected: Option<&BTreeMap<String, String>>,
    existing: Option<&BTreeMap<String, String>>,
) -> Option<BTreeMap<String, String>> {
    if expected.is_none() && existing.is_none() {
        return None;
    }
    let mut merged = expected.cloned().unwrap_or_default();
    merged.extend(existing.cloned().unwrap_or_default());
    Some(merged)
}

/// The atomic rules of `expected` that `existing` does not cover, if any.
fn missing_rules(
    existing: Option<&[PolicyRule]>,
    expected: Option<&[PolicyRule]>,
) -> Option<Vec<PolicyRule>> {
    let (_, missing) = covers(existing.unwrap_or_default(), expected.unwrap_or_default());
    (!missing.is_empty()).then_some(missing)
}

/// Selectors of `wanted` that the existing aggregation rule lacks (compared semantically:
/// absent and empty are equal).
fn missing_selectors(
    existing: Option<&AggregationRule>,
    wanted: &AggregationRule,
) -> Vec<LabelSelector> {
    let have: &[LabelSelector] = existing
        .and_then(|rule| rule.cluster_role_selectors.as_deref())
        .unwrap_or_default();
    wanted
        .cluster_role_selectors
        .iter()
        .flatten()
        .filter(|selector| !have.iter().any(|known| same_selector(known, selector)))
        .cloned()
        .collect()
}

fn same_selector(a: &LabelSelector, b: &LabelSelector) -> bool {
    a.match_labels.clone().unwrap_or_default() == b.match_labels.clone().unwrap_or_default()
        && a.match_expressions.clone().unwrap_or_default()
            == b.match_expressions.clone().unwrap_or_default()
}

/// Append the expected subjects the existing list lacks (each once). True if any was added.
fn add_missing_subjects(subjects: &mut Option<Vec<Subject>>, expected: Option<&[Subject]>) -> bool {
    let mut added = false;
    for subject in expected.unwrap_or_default() {
        let list = subjects.get_or_insert_with(Vec::new);
        if !list.iter().any(|known| same_subject(known, subject)) {
            list.push(subject.clone());
            added = true;
        }
    }
    added
}

/// Go's struct equality of subjects: absent and empty strings are equal.
fn same_subject(a: &Subject, b: &Subject) -> bool {
    a.kind == b.kind
        && a.name == b.name
        && a.api_group.as_deref().unwrap_or_default() == b.api_group.as_deref().unwrap_or_default()
        && a.namespace.as_deref().unwrap_or_default() == b.namespace.as_deref().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authz::rbac::{bootstrap::bootstrap_policy, rules::tests::rule};

    fn find<'a>(roles: &'a [ClusterRole], name: &str) -> &'a ClusterRole {
        roles
            .iter()
            .find(|r| r.metadata.name.as_deref() == Some(name))
            .expect("bootstrap role")
    }

    #[test]
    fn missing_objects_are_created_and_equal_ones_left_alone() {
        let policy = bootstrap_policy();
        let view = find(&policy.cluster_roles, "view");
        assert_eq!(
            reconcile_cluster_role(None, view).operation,
            Operation::Create
        );
        for role in &policy.cluster_roles {
            assert_eq!(
                reconcile_cluster_role(Some(role), role).operation,
                Operation::None
            );
        }
        for binding in &policy.cluster_role_bindings {
            assert_eq!(
                reconcile_cluster_role_binding(Some(binding), binding).operation,
                Operation::None
            );
        }
        for role in &policy.roles {
            assert_eq!(reconcile_role(Some(role), role).operation, Operation::None);
        }
        for binding in &policy.role_bindings {
            assert_eq!(
                reconcile_role_binding(Some(binding), binding).operation,
                Operation::None
            );
        }
    }

    #[test]
    fn existing_roles_keep_their_extras_and_gain_what_is_missing() {
        let policy = bootstrap_policy();
        let expected = find(&policy.cluster_roles, "system:basic-user");
        let mut existing = expected.clone();
        let extra = rule(&[""], &["pods"], &["get"]);
        existing.rules = Some(vec![extra.clone()]);
        existing.metadata.labels = Some([("team".to_owned(), "a".to_owned())].into());
        existing.metadata.resource_version = Some("42".into());
        let reconciled = reconcile_cluster_role(Some(&existing), expected);
        assert_eq!(reconciled.operation, Operation::Update);
        let rules = reconciled.object.rules.clone().unwrap_or_default();
        assert_eq!(rules[0], extra);
        // The three missing permissions come back as atomic rules.
        assert_eq!(rules.len(), 4);
        assert!(rules[1..].iter().all(|r| r.verbs == ["create"]));
        let labels = reconciled
            .object
            .metadata
            .labels
            .clone()
            .unwrap_or_default();
        assert_eq!(labels.get("team").map(String::as_str), Some("a"));
        assert!(labels.contains_key("kubernetes.io/bootstrapping"));
        assert_eq!(
            reconciled.object.metadata.resource_version.as_deref(),
            Some("42")
        );
        // Protected roles are reported, not written.
        existing.metadata.annotations =
            Some([(AUTOUPDATE_ANNOTATION.to_owned(), "false".to_owned())].into());
        let protected = reconcile_cluster_role(Some(&existing), expected);
        assert!(protected.protected);
        assert_eq!(protected.effective_operation(), Operation::None);
    }

    #[test]
    fn aggregation_selectors_are_added_and_unexpected_ones_removed() {
        let policy = bootstrap_policy();
        let admin = find(&policy.cluster_roles, "admin");
        let mut existing = admin.clone();
        existing.aggregation_rule = None;
        existing.rules = Some(vec![rule(&[""], &["pods"], &["get"])]);
        let reconciled = reconcile_cluster_role(Some(&existing), admin);
        assert_eq!(reconciled.operation, Operation::Update);
        assert_eq!(reconciled.object.aggregation_rule, admin.aggregation_rule);
        let plain = find(&policy.cluster_roles, "cluster-admin");
        let mut aggregated = plain.clone();
        aggregated.aggregation_rule = admin.aggregation_rule.clone();
        let reconciled = reconcile_cluster_role(Some(&aggregated), plain);
        assert_eq!(reconciled.operation, Operation::Update);
        assert_eq!(reconciled.object.aggregation_rule, None);
    }

    #[test]
    fn bindings_gain_subjects_and_are_recreated_for_another_role() {
        let policy = bootstrap_policy();
        let expected = policy
            .cluster_role_bindings
            .iter()
            .find(|b| b.metadata.name.as_deref() == Some("system:public-info-viewer"))
            .expect("bootstrap binding");
        let mut existing = expected.clone();
        let mut subjects = expected.subjects.clone().unwrap_or_default();
        let first = subjects.remove(0);
        existing.subjects = Some(subjects);
        let reconciled = reconcile_cluster_role_binding(Some(&existing), expected);
        assert_eq!(reconciled.operation, Operation::Update);
        assert_eq!(reconciled.object.subjects.as_ref().map(Vec::len), Some(2));
        assert_eq!(
            reconciled.object.subjects.as_ref().and_then(|s| s.last()),
            Some(&first)
        );
        existing.role_ref.name = "other".into();
        let recreated = reconcile_cluster_role_binding(Some(&existing), expected);
        assert_eq!(recreated.operation, Operation::Recreate);
        assert_eq!(&recreated.object, expected);
    }
}
