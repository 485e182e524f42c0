//! What RBAC answers a SelfSubjectRulesReview (kube's `RBACAuthorizer.RulesFor` and the
//! review's conversion in `pkg/registry/authorization/selfsubjectrulesreview`): every rule
//! that applies to the user in the namespace, split into resource and non-resource rules.

use k8s_openapi::api::{
    authorization::v1::{NonResourceRule, ResourceRule, SubjectRulesReviewStatus},
    rbac::v1::PolicyRule,
};

use super::{policy::RbacPolicy, rules::values};
use crate::model::user::UserInfo;

impl RbacPolicy {
    /// The status of a SelfSubjectRulesReview (or SubjectRulesReview) for `user` in
    /// `namespace`, as RBAC alone answers it: never incomplete (kube's RBAC resolver lists
    /// everything it can), with the resolution errors as `evaluationError`.
    pub fn rules_review(&self, user: &UserInfo, namespace: &str) -> SubjectRulesReviewStatus {
        let resolved = self.rules_for(user, namespace);
        let (resource_rules, non_resource_rules) = split_rules(&resolved.rules);
        SubjectRulesReviewStatus {
            resource_rules,
            non_resource_rules,
            incomplete: false,
            evaluation_error: resolved.error(),
        }
    }
}

/// Policy rules as a rules review lists them: a rule with resources becomes a
/// [`ResourceRule`], one with non-resource URLs a [`NonResourceRule`] (a rule with both
/// becomes both; one with neither, nothing).
pub fn split_rules(rules: &[PolicyRule]) -> (Vec<ResourceRule>, Vec<NonResourceRule>) {
    let mut resource_rules = Vec::new();
    let mut non_resource_rules = Vec::new();
    for rule in rules {
        if !values(&rule.resources).is_empty() {
            resource_rules.push(ResourceRule {
                verbs: rule.verbs.clone(),
                api_groups: non_empty(&rule.api_groups),
                resources: non_empty(&rule.resources),
                resource_names: non_empty(&rule.resource_names),
            });
        }
        if !values(&rule.non_resource_urls).is_empty() {
            non_resource_rules.push(NonResourceRule {
                verbs: rule.verbs.clone(),
                non_resource_urls: non_empty(&rule.non_resource_urls),
            });
        }
    }
    (resource_rules, non_resource_rules)
}

/// A list field as Go serializes it with `omitempty`: absent when empty.
fn non_empty(field: &Option<Vec<String>>) -> Option<Vec<String>> {
    field.as_ref().filter(|items| !items.is_empty()).cloned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authz::rbac::policy::tests::{binding, cluster_role, role, role_binding, subject};
    use crate::authz::rbac::rules::tests::{rule, strings, url_rule};

    #[test]
    fn lists_cluster_then_namespace_rules_split_by_kind() {
        let policy = RbacPolicy::new(
            vec![role(
                "dev",
                "pods-reader",
                vec![rule(&[""], &["pods"], &["get"])],
            )],
            vec![cluster_role(
                "basic",
                vec![
                    rule(
                        &["authorization.k8s.io"],
                        &["selfsubjectrulesreviews"],
                        &["create"],
                    ),
                    url_rule(&["/api", "/api/*"], &["get"]),
                ],
            )],
            vec![role_binding(
                "dev",
                "read",
                "Role",
                "pods-reader",
                vec![subject("User", "alice")],
            )],
            vec![binding(
                "basic",
                "ClusterRole",
                "basic",
                vec![subject("Group", "system:authenticated")],
            )],
        );
        let alice = UserInfo::authenticated("alice", vec![]);
        let status = policy.rules_review(&alice, "dev");
        assert!(!status.incomplete);
        assert_eq!(status.evaluation_error, None);
        assert_eq!(
            status.resource_rules,
            vec![
                ResourceRule {
                    verbs: strings(&["create"]),
                    api_groups: Some(strings(&["authorization.k8s.io"])),
                    resources: Some(strings(&["selfsubjectrulesreviews"])),
                    resource_names: None,
                },
                ResourceRule {
                    verbs: strings(&["get"]),
                    api_groups: Some(strings(&[""])),
                    resources: Some(strings(&["pods"])),
                    resource_names: None,
                },
            ]
        );
        assert_eq!(
            status.non_resource_rules,
            vec![NonResourceRule {
                verbs: strings(&["get"]),
                non_resource_urls: Some(strings(&["/api", "/api/*"])),
            }]
        );
        // Another namespace: only the cluster-wide rules.
        assert_eq!(policy.rules_review(&alice, "prod").resource_rules.len(), 1);
        // Another user in the same namespace: not bound there.
        let bob = UserInfo::authenticated("bob", vec![]);
        assert_eq!(policy.rules_review(&bob, "dev").resource_rules.len(), 1);
    }

    #[test]
    fn missing_roles_are_an_evaluation_error() {
        let policy = RbacPolicy::new(
            vec![],
            vec![],
            vec![
                role_binding("dev", "a", "Role", "gone", vec![subject("User", "alice")]),
                role_binding(
                    "dev",
                    "b",
                    "ClusterRole",
                    "lost",
                    vec![subject("User", "alice")],
                ),
            ],
            vec![],
        );
        let alice = UserInfo::authenticated("alice", vec![]);
        let status = policy.rules_review(&alice, "dev");
        assert!(status.resource_rules.is_empty());
        assert!(!status.incomplete);
        assert_eq!(
            status.evaluation_error.as_deref(),
            Some(
                "[role.rbac.authorization.k8s.io \"gone\" not found, \
                 clusterrole.rbac.authorization.k8s.io \"lost\" not found]"
            )
        );
    }
}
