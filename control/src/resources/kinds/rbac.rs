//! RBAC kinds (rbac.authorization.k8s.io/v1): validation as kube's
//! `pkg/apis/rbac/validation` — rules need verbs and either resources or (cluster roles
//! only) non-resource URLs, bindings a valid roleRef that never changes, subjects of a
//! known kind.

use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject,
};

use crate::{
    model::validation::{ErrorList, FieldError},
    resources::strategy::Kind,
};

const RBAC_GROUP: &str = "rbac.authorization.k8s.io";

fn validate_rules(rules: &[PolicyRule], cluster: bool, errors: &mut ErrorList) {
    for (i, rule) in rules.iter().enumerate() {
        let path = format!("rules[{i}]");
        if rule.verbs.is_empty() {
            errors.push(FieldError::required(
                format!("{path}.verbs"),
                "verbs must contain at least one value",
            ));
        }
        let urls = rule.non_resource_urls.as_deref().unwrap_or_default();
        let resources = rule.resources.as_deref().unwrap_or_default();
        let groups = rule.api_groups.as_deref().unwrap_or_default();
        if !urls.is_empty() {
            if !cluster {
                errors.push(FieldError::invalid(
                    format!("{path}.nonResourceURLs"),
                    urls.join(","),
                    "namespaced rules cannot apply to non-resource URLs",
                ));
            }
            if !groups.is_empty() || !resources.is_empty() {
                errors.push(FieldError::invalid(
                    format!("{path}.nonResourceURLs"),
                    urls.join(","),
                    "rules cannot apply to both regular resources and non-resource URLs",
                ));
            }
            continue;
        }
        if groups.is_empty() {
            errors.push(FieldError::required(
                format!("{path}.apiGroups"),
                "resource rules must supply at least one api group",
            ));
        }
        if resources.is_empty() {
            errors.push(FieldError::required(
                format!("{path}.resources"),
                "resource rules must supply at least one resource",
            ));
        }
    }
}

fn validate_role_ref(role_ref: &RoleRef, cluster: bool, errors: &mut ErrorList) {
    if role_ref.api_group != RBAC_GROUP {
        errors.push(FieldError::not_supported(
            "roleRef.apiGroup",
            &role_ref.api_group,
            &[RBAC_GROUP],
        ));
    }
    let kinds: &[&str] = if cluster {
        &["ClusterRole"]
    } else {
        &["Role", "ClusterRole"]
    };
    if !kinds.contains(&role_ref.kind.as_str()) {
        errors.push(FieldError::not_supported(
            "roleRef.kind",
            &role_ref.kind,
            kinds,
        ));
    }
    if role_ref.name.is_empty() {
        errors.push(FieldError::required("roleRef.name", ""));
    } else if let Some(why) = crate::model::validation::path_segment_name(&role_ref.name) {
        errors.push(FieldError::invalid("roleRef.name", &role_ref.name, why));
    }
}

fn validate_subjects(subjects: &[Subject], cluster: bool, errors: &mut ErrorList) {
    for (i, subject) in subjects.iter().enumerate() {
        let path = format!("subjects[{i}]");
        if subject.name.is_empty() {
            errors.push(FieldError::required(format!("{path}.name"), ""));
        }
        match subject.kind.as_str() {
            "ServiceAccount" => {
                if subject.api_group.as_deref().is_some_and(|g| !g.is_empty()) {
                    errors.push(FieldError::not_supported(
                        format!("{path}.apiGroup"),
                        subject.api_group.as_deref().unwrap_or_default(),
                        &[""],
                    ));
                }
                if cluster && subject.namespace.as_deref().unwrap_or_default().is_empty() {
                    errors.push(FieldError::required(format!("{path}.namespace"), ""));
                }
            }
            "User" | "Group" => {
                if subject.api_group.as_deref() != Some(RBAC_GROUP) {
                    errors.push(FieldError::not_supported(
                        format!("{path}.apiGroup"),
                        subject.api_group.as_deref().unwrap_or_default(),
                        &[RBAC_GROUP],
                    ));
                }
            }
            other => errors.push(FieldError::not_supported(
                format!("{path}.kind"),
                other,
                &["ServiceAccount", "User", "Group"],
            )),
        }
    }
}

fn role_ref_unchanged(new: &RoleRef, old: Option<&RoleRef>, errors: &mut ErrorList) {
    if let Some(old) = old
        && old != new
    {
        errors.push(FieldError::invalid(
            "roleRef",
            format!("{}/{}", new.kind, new.name),
            "cannot change roleRef",
        ));
    }
}

/// Subjects get kube's default apiGroup for users and groups.
fn default_subjects(subjects: &mut Option<Vec<Subject>>) {
    for subject in subjects.iter_mut().flatten() {
        if matches!(subject.kind.as_str(), "User" | "Group") && subject.api_group.is_none() {
            subject.api_group = Some(RBAC_GROUP.to_owned());
        }
    }
}

impl Kind for Role {
    fn validate(&self, _old: Option<&Self>, errors: &mut ErrorList) {
        validate_rules(self.rules.as_deref().unwrap_or_default(), false, errors);
    }
}

impl Kind for ClusterRole {
    fn validate(&self, _old: Option<&Self>, errors: &mut ErrorList) {
        validate_rules(self.rules.as_deref().unwrap_or_default(), true, errors);
    }
}

impl Kind for RoleBinding {
    fn default_fields(&mut self) {
        default_subjects(&mut self.subjects);
    }

    fn validate(&self, old: Option<&Self>, errors: &mut ErrorList) {
        validate_role_ref(&self.role_ref, false, errors);
        role_ref_unchanged(&self.role_ref, old.map(|o| &o.role_ref), errors);
        validate_subjects(self.subjects.as_deref().unwrap_or_default(), false, errors);
    }
}

impl Kind for ClusterRoleBinding {
    fn default_fields(&mut self) {
        default_subjects(&mut self.subjects);
    }

    fn validate(&self, old: Option<&Self>, errors: &mut ErrorList) {
        validate_role_ref(&self.role_ref, true, errors);
        role_ref_unchanged(&self.role_ref, old.map(|o| &o.role_ref), errors);
        validate_subjects(self.subjects.as_deref().unwrap_or_default(), true, errors);
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::resources::{Strategy, Typed};

    use super::*;

    #[test]
    fn bindings_need_a_valid_role_ref_that_never_changes() {
        let strategy = Typed::<RoleBinding>::new();
        let binding = json!({"metadata": {"name": "b", "namespace": "ns"},
            "roleRef": {"apiGroup": RBAC_GROUP, "kind": "Role", "name": "r"},
            "subjects": [{"kind": "User", "name": "alice"}]});
        let ok = strategy.prepare(&binding, None).expect("decodes");
        assert!(ok.errors.is_empty(), "{:?}", ok.errors);
        assert_eq!(ok.object["subjects"][0]["apiGroup"], RBAC_GROUP);
        let mut changed = binding.clone();
        changed["roleRef"]["name"] = json!("other");
        let refused = strategy.prepare(&changed, Some(&binding)).expect("decodes");
        assert_eq!(refused.errors[0].field, "roleRef");
        let cluster = Typed::<ClusterRoleBinding>::new();
        let wrong_kind = cluster
            .prepare(
                &json!({"metadata": {"name": "b"},
                    "roleRef": {"apiGroup": RBAC_GROUP, "kind": "Role", "name": "r"},
                    "subjects": [{"kind": "ServiceAccount", "name": "sa"}]}),
                None,
            )
            .expect("decodes");
        let fields: Vec<&str> = wrong_kind.errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["roleRef.kind", "subjects[0].namespace"]);
    }

    #[test]
    fn rules_need_verbs_and_namespaced_roles_no_urls() {
        let strategy = Typed::<Role>::new();
        let role = strategy
            .prepare(
                &json!({"metadata": {"name": "r", "namespace": "ns"},
                    "rules": [{"verbs": [], "apiGroups": [""], "resources": ["pods"]},
                              {"verbs": ["get"], "nonResourceURLs": ["/healthz"]}]}),
                None,
            )
            .expect("decodes");
        let fields: Vec<&str> = role.errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["rules[0].verbs", "rules[1].nonResourceURLs"]);
    }
}
