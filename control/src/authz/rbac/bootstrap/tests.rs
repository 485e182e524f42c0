//! The bootstrap policy, evaluated: what kube's defaults grant and refuse.

use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule, RoleBinding};

use super::*;
use crate::{
    authz::{
        Attributes, Authorizer,
        rbac::{RbacPolicy, aggregation::aggregate_all},
    },
    model::user::{AUTHENTICATED, MASTERS, NODES, SERVICE_ACCOUNTS, UserInfo},
};

/// The bootstrap policy with its aggregated roles filled in, plus `extra` RoleBindings.
fn evaluated(extra: Vec<RoleBinding>) -> RbacPolicy {
    let mut policy = bootstrap_policy();
    aggregate_all(&mut policy.cluster_roles).expect("bootstrap selectors are valid");
    let mut role_bindings = policy.role_bindings;
    role_bindings.extend(extra);
    RbacPolicy::new(
        policy.roles,
        policy.cluster_roles,
        role_bindings,
        policy.cluster_role_bindings,
    )
}

fn can(policy: &RbacPolicy, user: &UserInfo, verb: &str, target: &str, namespace: &str) -> bool {
    // `target` is `group/resource[/subresource]` ("" group as `core`), or a path.
    let attributes = if target.starts_with('/') {
        Attributes {
            user: user.clone(),
            verb: verb.into(),
            path: target.into(),
            ..Attributes::default()
        }
    } else {
        let mut parts = target.splitn(3, '/');
        let group = parts.next().unwrap_or_default();
        Attributes {
            user: user.clone(),
            verb: verb.into(),
            resource_request: true,
            namespace: namespace.into(),
            api_group: if group == "core" {
                String::new()
            } else {
                group.into()
            },
            resource: parts.next().unwrap_or_default().into(),
            subresource: parts.next().unwrap_or_default().into(),
            ..Attributes::default()
        }
    };
    policy.authorize(&attributes).allowed()
}

fn cluster_role<'a>(roles: &'a [ClusterRole], name: &str) -> &'a ClusterRole {
    roles
        .iter()
        .find(|role| role.metadata.name.as_deref() == Some(name))
        .unwrap_or_else(|| panic!("no ClusterRole {name}"))
}

fn rules_of(roles: &[ClusterRole], name: &str) -> Vec<PolicyRule> {
    cluster_role(roles, name).rules.clone().unwrap_or_default()
}

fn service_account(namespace: &str, name: &str) -> UserInfo {
    UserInfo::authenticated(
        format!("system:serviceaccount:{namespace}:{name}"),
        vec![
            SERVICE_ACCOUNTS.into(),
            format!("{SERVICE_ACCOUNTS}:{namespace}"),
        ],
    )
}

fn bind(namespace: &str, cluster_role: &str, user: &str) -> RoleBinding {
    RoleBinding {
        metadata: ObjectMeta {
            name: Some(format!("{user}-{cluster_role}")),
            namespace: Some(namespace.into()),
            ..ObjectMeta::default()
        },
        role_ref: role_ref("ClusterRole", cluster_role),
        subjects: Some(vec![Subject {
            api_group: Some(RBAC_GROUP.into()),
            kind: "User".into(),
            name: user.into(),
            namespace: None,
        }]),
    }
}

#[test]
fn every_binding_references_an_existing_role() {
    let policy = bootstrap_policy();
    let index = RbacPolicy::new(
        policy.roles.clone(),
        policy.cluster_roles.clone(),
        vec![],
        vec![],
    );
    for binding in &policy.cluster_role_bindings {
        assert!(
            index.role_reference_rules(&binding.role_ref, "").is_ok(),
            "{:?}",
            binding.metadata.name
        );
    }
    for binding in &policy.role_bindings {
        let namespace = binding.metadata.namespace.as_deref().unwrap_or_default();
        assert!(
            index
                .role_reference_rules(&binding.role_ref, namespace)
                .is_ok(),
            "{:?}",
            binding.metadata.name
        );
    }
    let every_object = policy
        .cluster_roles
        .iter()
        .map(|r| &r.metadata)
        .chain(policy.cluster_role_bindings.iter().map(|b| &b.metadata))
        .chain(policy.roles.iter().map(|r| &r.metadata))
        .chain(policy.role_bindings.iter().map(|b| &b.metadata));
    for metadata in every_object {
        let labels = metadata.labels.clone().unwrap_or_default();
        let annotations = metadata.annotations.clone().unwrap_or_default();
        assert_eq!(
            labels.get(BOOTSTRAPPING_LABEL).map(String::as_str),
            Some(BOOTSTRAPPING_VALUE)
        );
        assert_eq!(
            annotations.get(AUTOUPDATE_ANNOTATION).map(String::as_str),
            Some("true")
        );
    }
}

#[test]
fn cluster_admin_is_system_masters_and_allows_everything() {
    let policy = evaluated(vec![]);
    let root = UserInfo::authenticated("root", vec![MASTERS.into()]);
    for (verb, target, namespace) in [
        ("delete", "core/nodes", ""),
        ("escalate", "rbac.authorization.k8s.io/clusterroles", ""),
        ("create", "core/pods/exec", "kube-system"),
        ("impersonate", "core/users", ""),
        ("frobnicate", "example.com/widgets/status", "any"),
        ("post", "/anything/at/all", ""),
    ] {
        assert!(
            can(&policy, &root, verb, target, namespace),
            "{verb} {target}"
        );
    }
    let attributes = Attributes {
        user: root,
        verb: "get".into(),
        resource_request: true,
        resource: "secrets".into(),
        namespace: "default".into(),
        ..Attributes::default()
    };
    assert_eq!(
        policy.authorize(&attributes).reason(),
        "RBAC: allowed by ClusterRoleBinding \"cluster-admin\" of ClusterRole \"cluster-admin\" to Group \"system:masters\""
    );
}

#[test]
fn authenticated_and_anonymous_users_get_what_kube_grants() {
    let policy = evaluated(vec![]);
    let alice = UserInfo::authenticated("alice", vec![]);
    assert!(alice.in_group(AUTHENTICATED));
    for (verb, target) in [
        ("create", "authorization.k8s.io/selfsubjectaccessreviews"),
        ("create", "authorization.k8s.io/selfsubjectrulesreviews"),
        ("create", "authentication.k8s.io/selfsubjectreviews"),
        ("get", "/api"),
        ("get", "/apis/apps/v1"),
        ("get", "/openapi/v2"),
        ("get", "/version"),
        ("get", "/healthz"),
        ("get", "/readyz"),
    ] {
        assert!(can(&policy, &alice, verb, target, ""), "{verb} {target}");
    }
    for (verb, target) in [
        ("list", "core/pods"),
        ("create", "authorization.k8s.io/subjectaccessreviews"),
        ("get", "/metrics"),
        ("get", "/healthz/etcd"),
        ("post", "/api"),
        ("get", "/.well-known/openid-configuration"),
    ] {
        assert!(
            !can(&policy, &alice, verb, target, "default"),
            "{verb} {target}"
        );
    }
    let anonymous = UserInfo::anonymous();
    for path in ["/healthz", "/livez", "/readyz", "/version", "/version/"] {
        assert!(can(&policy, &anonymous, "get", path, ""), "{path}");
    }
    assert!(!can(&policy, &anonymous, "get", "/api", ""));
    assert!(!can(
        &policy,
        &anonymous,
        "create",
        "authorization.k8s.io/selfsubjectaccessreviews",
        ""
    ));
    // ServiceAccounts read the issuer discovery documents.
    let sa = service_account("default", "app");
    assert!(can(&policy, &sa, "get", "/openid/v1/jwks", ""));
    assert!(!can(&policy, &sa, "list", "core/pods", "default"));
}

#[test]
fn admin_edit_view_aggregate_the_upstream_rules() {
    let mut roles = bootstrap_policy().cluster_roles;
    for name in ["admin", "edit", "view"] {
        assert_eq!(cluster_role(&roles, name).rules, None);
    }
    let mut changed = aggregate_all(&mut roles).expect("valid selectors");
    changed.sort();
    assert_eq!(changed, ["admin", "edit", "view"]);
    let to_view = rules_of(&roles, "system:aggregate-to-view");
    let to_edit = rules_of(&roles, "system:aggregate-to-edit");
    let to_admin = rules_of(&roles, "system:aggregate-to-admin");
    let view = rules_of(&roles, "view");
    let edit = rules_of(&roles, "edit");
    let admin = rules_of(&roles, "admin");
    // Selected roles come in name order: "edit" < "system:aggregate-to-admin",
    // "system:aggregate-to-edit" < "view".
    assert_eq!(view, to_view);
    assert_eq!(edit, [to_edit, view.clone()].concat());
    assert_eq!(admin, [edit.clone(), to_admin].concat());
    assert_eq!((view.len(), edit.len(), admin.len()), (10, 23, 25));
}

#[test]
fn view_edit_admin_in_a_namespace() {
    let policy = evaluated(vec![
        bind("dev", "view", "viewer"),
        bind("dev", "edit", "editor"),
        bind("dev", "admin", "owner"),
    ]);
    let viewer = UserInfo::authenticated("viewer", vec![]);
    let editor = UserInfo::authenticated("editor", vec![]);
    let owner = UserInfo::authenticated("owner", vec![]);
    assert!(can(&policy, &viewer, "list", "apps/deployments", "dev"));
    assert!(can(&policy, &viewer, "get", "core/pods/log", "dev"));
    assert!(!can(&policy, &viewer, "get", "core/secrets", "dev"));
    assert!(!can(&policy, &viewer, "create", "core/pods/exec", "dev"));
    assert!(!can(&policy, &viewer, "create", "apps/deployments", "dev"));
    assert!(can(&policy, &editor, "create", "apps/deployments", "dev"));
    assert!(can(
        &policy,
        &editor,
        "patch",
        "apps/deployments/scale",
        "dev"
    ));
    assert!(can(&policy, &editor, "get", "core/secrets", "dev"));
    assert!(can(&policy, &editor, "create", "core/pods/exec", "dev"));
    assert!(!can(
        &policy,
        &editor,
        "create",
        "rbac.authorization.k8s.io/rolebindings",
        "dev"
    ));
    assert!(can(
        &policy,
        &owner,
        "create",
        "rbac.authorization.k8s.io/rolebindings",
        "dev"
    ));
    assert!(can(
        &policy,
        &owner,
        "create",
        "authorization.k8s.io/localsubjectaccessreviews",
        "dev"
    ));
    for user in [&viewer, &editor, &owner] {
        assert!(
            !can(&policy, user, "get", "core/pods", "prod"),
            "{}",
            user.name
        );
        assert!(
            !can(&policy, user, "delete", "core/namespaces", "dev"),
            "{}",
            user.name
        );
        assert!(
            !can(&policy, user, "list", "core/nodes", ""),
            "{}",
            user.name
        );
    }
}

#[test]
fn scheduler_and_controller_manager_identities() {
    let policy = evaluated(vec![]);
    let scheduler = UserInfo::authenticated("system:kube-scheduler", vec![]);
    assert!(can(&policy, &scheduler, "watch", "core/nodes", ""));
    assert!(can(&policy, &scheduler, "list", "core/pods", ""));
    assert!(can(
        &policy,
        &scheduler,
        "create",
        "core/pods/binding",
        "default"
    ));
    assert!(can(
        &policy,
        &scheduler,
        "patch",
        "core/pods/status",
        "default"
    ));
    assert!(!can(&policy, &scheduler, "create", "core/pods", "default"));
    let manager = UserInfo::authenticated("system:kube-controller-manager", vec![]);
    assert!(can(&policy, &manager, "list", "apps/replicasets", ""));
    assert!(can(
        &policy,
        &manager,
        "watch",
        "coordination.k8s.io/leases",
        ""
    ));
    assert!(!can(&policy, &manager, "create", "core/pods", "default"));
    // Leader election in kube-system (Skiff's Lease is kube-system/skiff-controller-manager).
    for user in [&scheduler, &manager] {
        assert!(can(
            &policy,
            user,
            "update",
            "coordination.k8s.io/leases",
            "kube-system"
        ));
        assert!(!can(
            &policy,
            user,
            "update",
            "coordination.k8s.io/leases",
            "default"
        ));
    }
}

#[test]
fn nodes_get_nothing_from_rbac() {
    // system:node is bound to no one: nodes are the Node authorizer's.
    let policy = evaluated(vec![]);
    let node = UserInfo::authenticated("system:node:n1", vec![NODES.into()]);
    assert!(!can(&policy, &node, "get", "core/secrets", "default"));
    assert!(!can(&policy, &node, "patch", "core/nodes/status", ""));
    assert!(can(&policy, &node, "get", "/api", ""));
}

/// What Skiff's controllers do, as the ServiceAccount of the kube controller whose role fits.
const CONTROLLER_NEEDS: &[(&str, &str, &str)] = &[
    ("replicaset-controller", "create", "core/pods"),
    ("replicaset-controller", "delete", "core/pods"),
    ("replicaset-controller", "update", "apps/replicasets/status"),
    (
        "replicaset-controller",
        "update",
        "apps/replicasets/finalizers",
    ),
    ("deployment-controller", "create", "apps/replicasets"),
    ("deployment-controller", "patch", "apps/replicasets"),
    ("deployment-controller", "update", "apps/deployments/status"),
    ("daemon-set-controller", "create", "core/pods"),
    (
        "daemon-set-controller",
        "create",
        "apps/controllerrevisions",
    ),
    ("daemon-set-controller", "update", "apps/daemonsets/status"),
    ("statefulset-controller", "create", "core/pods"),
    (
        "statefulset-controller",
        "create",
        "core/persistentvolumeclaims",
    ),
    (
        "statefulset-controller",
        "update",
        "apps/statefulsets/status",
    ),
    ("job-controller", "create", "core/pods"),
    ("job-controller", "update", "batch/jobs/status"),
    ("job-controller", "update", "batch/jobs/finalizers"),
    ("cronjob-controller", "create", "batch/jobs"),
    ("cronjob-controller", "update", "batch/cronjobs/status"),
    ("endpoint-controller", "update", "core/endpoints"),
    (
        "endpointslice-controller",
        "create",
        "discovery.k8s.io/endpointslices",
    ),
    (
        "namespace-controller",
        "deletecollection",
        "apps/deployments",
    ),
    ("namespace-controller", "update", "core/namespaces/finalize"),
    ("node-controller", "patch", "core/nodes"),
    ("node-controller", "delete", "core/pods"),
    ("generic-garbage-collector", "delete", "example.com/widgets"),
    ("generic-garbage-collector", "patch", "apps/replicasets"),
    (
        "service-account-controller",
        "create",
        "core/serviceaccounts",
    ),
    ("root-ca-cert-publisher", "create", "core/configmaps"),
    ("root-ca-cert-publisher", "update", "core/configmaps"),
    ("service-controller", "patch", "core/services/status"),
    (
        "clusterrole-aggregation-controller",
        "escalate",
        "rbac.authorization.k8s.io/clusterroles",
    ),
    (
        "clusterrole-aggregation-controller",
        "update",
        "rbac.authorization.k8s.io/clusterroles",
    ),
    ("deployment-controller", "create", "events.k8s.io/events"),
    (
        "disruption-controller",
        "update",
        "policy/poddisruptionbudgets/status",
    ),
    ("disruption-controller", "get", "apps/deployments/scale"),
    ("disruption-controller", "create", "core/events"),
    ("resourcequota-controller", "list", "core/pods"),
    ("resourcequota-controller", "watch", "core/configmaps"),
    (
        "resourcequota-controller",
        "update",
        "core/resourcequotas/status",
    ),
    (
        "persistent-volume-binder",
        "create",
        "core/persistentvolumes",
    ),
    (
        "persistent-volume-binder",
        "delete",
        "core/persistentvolumes",
    ),
    (
        "persistent-volume-binder",
        "update",
        "core/persistentvolumes/status",
    ),
    (
        "persistent-volume-binder",
        "update",
        "core/persistentvolumeclaims",
    ),
    (
        "persistent-volume-binder",
        "update",
        "core/persistentvolumeclaims/status",
    ),
    (
        "persistent-volume-binder",
        "watch",
        "storage.k8s.io/storageclasses",
    ),
    ("persistent-volume-binder", "list", "core/nodes"),
    (
        "pvc-protection-controller",
        "update",
        "core/persistentvolumeclaims",
    ),
    ("pvc-protection-controller", "list", "core/pods"),
];

/// What kube's controller roles do not grant, though Skiff's controllers do it today (kube's
/// controllers update status with PUT, and read through kube-controller-manager's own
/// informers, which list and watch everything).
const KNOWN_GAPS: &[(&str, &str, &str)] = &[
    ("replicaset-controller", "patch", "apps/replicasets/status"),
    ("deployment-controller", "patch", "apps/deployments/status"),
    (
        "statefulset-controller",
        "patch",
        "apps/statefulsets/status",
    ),
    ("daemon-set-controller", "patch", "apps/daemonsets/status"),
    ("job-controller", "patch", "batch/jobs/status"),
    ("cronjob-controller", "patch", "batch/cronjobs/status"),
    ("node-controller", "list", "coordination.k8s.io/leases"),
    ("root-ca-cert-publisher", "list", "core/configmaps"),
    ("service-account-controller", "list", "core/serviceaccounts"),
];

#[test]
fn controller_roles_cover_what_skiff_controllers_need() {
    let policy = evaluated(vec![]);
    for (account, verb, target) in CONTROLLER_NEEDS {
        let user = service_account(CONTROLLER_NAMESPACE, account);
        assert_eq!(user.name, controller_user_name(account));
        assert!(
            can(&policy, &user, verb, target, "default"),
            "{account} {verb} {target}"
        );
    }
    for (account, verb, target) in KNOWN_GAPS {
        let user = service_account(CONTROLLER_NAMESPACE, account);
        assert!(
            !can(&policy, &user, verb, target, "default"),
            "{account} {verb} {target}"
        );
    }
    // Each controller only has its own role: the ReplicaSet controller cannot touch Secrets.
    let replicaset = service_account(CONTROLLER_NAMESPACE, "replicaset-controller");
    assert!(!can(&policy, &replicaset, "get", "core/secrets", "default"));
    assert!(!can(
        &policy,
        &replicaset,
        "create",
        "apps/deployments",
        "default"
    ));
}

#[test]
fn namespaced_bootstrap_roles() {
    let policy = evaluated(vec![]);
    let signer = service_account("kube-system", "bootstrap-signer");
    let update_cluster_info = Attributes {
        user: signer.clone(),
        verb: "update".into(),
        resource_request: true,
        namespace: "kube-public".into(),
        resource: "configmaps".into(),
        name: "cluster-info".into(),
        ..Attributes::default()
    };
    assert!(policy.authorize(&update_cluster_info).allowed());
    let other = Attributes {
        name: "other".into(),
        ..update_cluster_info
    };
    assert!(!policy.authorize(&other).allowed());
    assert!(can(&policy, &signer, "list", "core/secrets", "kube-system"));
    assert!(!can(&policy, &signer, "list", "core/secrets", "default"));
}
