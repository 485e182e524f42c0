//! The bootstrap RBAC policy kube-apiserver reconciles at start: the default ClusterRoles
//! (cluster-admin, admin/edit/view and their `system:aggregate-to-*` parts, system:discovery,
//! system:basic-user, system:public-info-viewer, system:node, system:kube-scheduler,
//! system:kube-controller-manager…), one `system:controller:<name>` ClusterRole per
//! kube-controller-manager controller, their bindings, and the Roles and RoleBindings in
//! kube-system and kube-public.
//!
//! The rules are Kubernetes' own (`plugin/pkg/auth/authorizer/rbac/bootstrappolicy`,
//! Apache-2.0), written here as data tables checked against kube's rendered test data
//! (`testdata/cluster-roles.yaml` at kubernetes commit 025f2834a128, `controller-roles.yaml`
//! and `controller-role-bindings.yaml` at 0158d1b41c02, `namespace-roles.yaml` and
//! `namespace-role-bindings.yaml` at 008b3652959c, and the cluster-role-bindings kube
//! v1.3x ships). Left out: `system:controller:podcheckpoint-controller` (an API newer than
//! v1.33). Feature-gated roles (DRA's scheduler rules, ClusterTrustBundles…) are not
//! included, as with kube's default gates.
//!
//! Aggregated roles (admin, edit, view) come without rules, as kube creates them; their
//! rules are what [`super::aggregation::aggregate_all`] gathers.

mod cluster_roles;
mod controller_roles;
mod namespaced;

use std::collections::BTreeMap;

use k8s_openapi::{
    api::rbac::v1::{
        AggregationRule, ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef,
        Subject,
    },
    apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta},
};

/// Annotation that lets kube-apiserver reconcile a bootstrap object at start ("false" on an
/// object opts it out).
pub const AUTOUPDATE_ANNOTATION: &str = "rbac.authorization.kubernetes.io/autoupdate";
/// Label every bootstrap object carries.
pub const BOOTSTRAPPING_LABEL: &str = "kubernetes.io/bootstrapping";
/// Value of [`BOOTSTRAPPING_LABEL`].
pub const BOOTSTRAPPING_VALUE: &str = "rbac-defaults";
/// Prefix of the controller roles; the rest is the controller's ServiceAccount name in
/// kube-system.
pub const CONTROLLER_ROLE_PREFIX: &str = "system:controller:";
/// Namespace of the controllers' ServiceAccounts.
pub const CONTROLLER_NAMESPACE: &str = "kube-system";
/// The RBAC API group.
const RBAC_GROUP: &str = "rbac.authorization.k8s.io";

/// The four lists of the bootstrap policy.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BootstrapPolicy {
    /// Default ClusterRoles, then controller ClusterRoles.
    pub cluster_roles: Vec<ClusterRole>,
    /// Default ClusterRoleBindings, then controller ClusterRoleBindings.
    pub cluster_role_bindings: Vec<ClusterRoleBinding>,
    /// Roles in kube-system and kube-public.
    pub roles: Vec<Role>,
    /// RoleBindings in kube-system and kube-public.
    pub role_bindings: Vec<RoleBinding>,
}

/// The bootstrap policy as kube-apiserver reconciles it.
pub fn bootstrap_policy() -> BootstrapPolicy {
    let cluster_roles = cluster_roles::CLUSTER_ROLES
        .iter()
        .chain(controller_roles::CONTROLLER_ROLES)
        .map(RoleSpec::cluster_role)
        .collect();
    let controller_bindings = controller_roles::CONTROLLER_ROLES.iter().map(|role| {
        let account = role
            .name
            .strip_prefix(CONTROLLER_ROLE_PREFIX)
            .unwrap_or(role.name);
        cluster_role_binding(
            role.name,
            role.name,
            &[SubjectSpec::ServiceAccount(CONTROLLER_NAMESPACE, account)],
        )
    });
    let cluster_role_bindings = cluster_roles::CLUSTER_ROLE_BINDINGS
        .iter()
        .map(|spec| cluster_role_binding(spec.name, spec.role, spec.subjects))
        .chain(controller_bindings)
        .collect();
    let roles = namespaced::NAMESPACED_ROLES
        .iter()
        .map(|spec| Role {
            metadata: metadata(spec.name, spec.namespace, &[]),
            rules: Some(spec.rules.iter().map(RuleSpec::policy_rule).collect()),
        })
        .collect();
    let role_bindings = namespaced::NAMESPACED_ROLE_BINDINGS
        .iter()
        .map(|spec| RoleBinding {
            metadata: metadata(spec.name, spec.namespace, &[]),
            role_ref: role_ref("Role", spec.role),
            subjects: Some(spec.subjects.iter().map(SubjectSpec::subject).collect()),
        })
        .collect();
    BootstrapPolicy {
        cluster_roles,
        cluster_role_bindings,
        roles,
        role_bindings,
    }
}

/// The ServiceAccount user name a kube controller's requests carry
/// (`system:serviceaccount:kube-system:<account>`), for a controller role's account
/// (`replicaset-controller`, `generic-garbage-collector`…).
pub fn controller_user_name(account: &str) -> String {
    format!("system:serviceaccount:{CONTROLLER_NAMESPACE}:{account}")
}

/// One rule, as data.
pub(super) struct RuleSpec {
    groups: &'static [&'static str],
    resources: &'static [&'static str],
    names: &'static [&'static str],
    urls: &'static [&'static str],
    verbs: &'static [&'static str],
}

/// A rule on resources.
const fn rule(
    groups: &'static [&'static str],
    resources: &'static [&'static str],
    verbs: &'static [&'static str],
) -> RuleSpec {
    RuleSpec {
        groups,
        resources,
        names: &[],
        urls: &[],
        verbs,
    }
}

/// A rule on named objects.
const fn named(
    groups: &'static [&'static str],
    resources: &'static [&'static str],
    names: &'static [&'static str],
    verbs: &'static [&'static str],
) -> RuleSpec {
    RuleSpec {
        groups,
        resources,
        names,
        urls: &[],
        verbs,
    }
}

/// A rule on non-resource URLs.
const fn urls(urls: &'static [&'static str], verbs: &'static [&'static str]) -> RuleSpec {
    RuleSpec {
        groups: &[],
        resources: &[],
        names: &[],
        urls,
        verbs,
    }
}

/// Reading.
const READ: &[&str] = &["get", "list", "watch"];
/// Writing, without reading.
const WRITE: &[&str] = &["create", "delete", "deletecollection", "patch", "update"];
/// Reading and writing.
const READ_WRITE: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];
/// Recording events.
const RECORD: &[&str] = &["create", "patch", "update"];
/// The rule every controller has to record events (core and events.k8s.io).
const EVENTS: RuleSpec = rule(&["", "events.k8s.io"], &["events"], RECORD);

impl RuleSpec {
    fn policy_rule(&self) -> PolicyRule {
        PolicyRule {
            api_groups: list(self.groups),
            resources: list(self.resources),
            resource_names: list(self.names),
            non_resource_urls: list(self.urls),
            verbs: self.verbs.iter().map(|v| (*v).to_owned()).collect(),
        }
    }
}

/// An optional list as kube serializes it: absent when empty.
fn list(items: &[&str]) -> Option<Vec<String>> {
    (!items.is_empty()).then(|| items.iter().map(|i| (*i).to_owned()).collect())
}

/// A ClusterRole, as data.
pub(super) struct RoleSpec {
    name: &'static str,
    /// Labels besides the bootstrapping one.
    labels: &'static [(&'static str, &'static str)],
    /// For an aggregated role: one selector per label key, matching the value "true".
    aggregate_from: &'static [&'static str],
    rules: &'static [RuleSpec],
}

impl RoleSpec {
    fn cluster_role(&self) -> ClusterRole {
        let aggregation_rule = (!self.aggregate_from.is_empty()).then(|| AggregationRule {
            cluster_role_selectors: Some(
                self.aggregate_from
                    .iter()
                    .map(|key| LabelSelector {
                        match_labels: Some([((*key).to_owned(), "true".to_owned())].into()),
                        match_expressions: None,
                    })
                    .collect(),
            ),
        });
        ClusterRole {
            metadata: metadata(self.name, "", self.labels),
            rules: (aggregation_rule.is_none())
                .then(|| self.rules.iter().map(RuleSpec::policy_rule).collect()),
            aggregation_rule,
        }
    }
}

/// A Role, as data.
pub(super) struct NamespacedRoleSpec {
    name: &'static str,
    namespace: &'static str,
    rules: &'static [RuleSpec],
}

/// A ClusterRoleBinding to the ClusterRole `role`, as data.
pub(super) struct BindingSpec {
    name: &'static str,
    role: &'static str,
    subjects: &'static [SubjectSpec],
}

/// A RoleBinding to the Role `role` of its namespace, as data.
pub(super) struct NamespacedBindingSpec {
    name: &'static str,
    namespace: &'static str,
    role: &'static str,
    subjects: &'static [SubjectSpec],
}

/// A subject, as data.
pub(super) enum SubjectSpec {
    User(&'static str),
    Group(&'static str),
    /// Namespace, name.
    ServiceAccount(&'static str, &'static str),
}

impl SubjectSpec {
    fn subject(&self) -> Subject {
        match self {
            Self::User(name) => Subject {
                api_group: Some(RBAC_GROUP.to_owned()),
                kind: "User".to_owned(),
                name: (*name).to_owned(),
                namespace: None,
            },
            Self::Group(name) => Subject {
                api_group: Some(RBAC_GROUP.to_owned()),
                kind: "Group".to_owned(),
                name: (*name).to_owned(),
                namespace: None,
            },
            Self::ServiceAccount(namespace, name) => Subject {
                api_group: None,
                kind: "ServiceAccount".to_owned(),
                name: (*name).to_owned(),
                namespace: Some((*namespace).to_owned()),
            },
        }
    }
}

fn cluster_role_binding(name: &str, role: &str, subjects: &[SubjectSpec]) -> ClusterRoleBinding {
    ClusterRoleBinding {
        metadata: metadata(name, "", &[]),
        role_ref: role_ref("ClusterRole", role),
        subjects: (!subjects.is_empty())
            .then(|| subjects.iter().map(SubjectSpec::subject).collect()),
    }
}

fn role_ref(kind: &str, name: &str) -> RoleRef {
    RoleRef {
        api_group: RBAC_GROUP.to_owned(),
        kind: kind.to_owned(),
        name: name.to_owned(),
    }
}

/// Name, namespace, the bootstrapping label plus `labels`, and the autoupdate annotation.
fn metadata(name: &str, namespace: &str, labels: &[(&str, &str)]) -> ObjectMeta {
    let mut all_labels = BTreeMap::from([(
        BOOTSTRAPPING_LABEL.to_owned(),
        BOOTSTRAPPING_VALUE.to_owned(),
    )]);
    all_labels.extend(
        labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    ObjectMeta {
        name: Some(name.to_owned()),
        namespace: (!namespace.is_empty()).then(|| namespace.to_owned()),
        labels: Some(all_labels),
        annotations: Some(BTreeMap::from([(
            AUTOUPDATE_ANNOTATION.to_owned(),
            "true".to_owned(),
        )])),
        ..ObjectMeta::default()
    }
}

#[cfg(test)]
mod tests;
