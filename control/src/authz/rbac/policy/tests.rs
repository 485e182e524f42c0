//! The RBAC authorizer, exercised: scopes, subject kinds, reasons, resolution errors.

use super::*;
use crate::authz::rbac::rules::tests::{path_request, request, rule, url_rule};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

fn meta(namespace: &str, name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        namespace: (!namespace.is_empty()).then(|| namespace.to_owned()),
        ..ObjectMeta::default()
    }
}

pub(crate) fn subject(kind: &str, name: &str) -> Subject {
    Subject {
        kind: kind.to_owned(),
        name: name.to_owned(),
        api_group: (kind != "ServiceAccount").then(|| "rbac.authorization.k8s.io".to_owned()),
        namespace: None,
    }
}

pub(crate) fn service_account(namespace: &str, name: &str) -> Subject {
    Subject {
        namespace: Some(namespace.to_owned()),
        ..subject("ServiceAccount", name)
    }
}

pub(crate) fn role(namespace: &str, name: &str, rules: Vec<PolicyRule>) -> Role {
    Role {
        metadata: meta(namespace, name),
        rules: Some(rules),
    }
}

pub(crate) fn cluster_role(name: &str, rules: Vec<PolicyRule>) -> ClusterRole {
    ClusterRole {
        metadata: meta("", name),
        rules: Some(rules),
        aggregation_rule: None,
    }
}

fn role_ref(kind: &str, name: &str) -> RoleRef {
    RoleRef {
        api_group: "rbac.authorization.k8s.io".to_owned(),
        kind: kind.to_owned(),
        name: name.to_owned(),
    }
}

/// A ClusterRoleBinding.
pub(crate) fn binding(
    name: &str,
    kind: &str,
    role: &str,
    subjects: Vec<Subject>,
) -> ClusterRoleBinding {
    ClusterRoleBinding {
        metadata: meta("", name),
        role_ref: role_ref(kind, role),
        subjects: Some(subjects),
    }
}

pub(crate) fn role_binding(
    namespace: &str,
    name: &str,
    kind: &str,
    role: &str,
    subjects: Vec<Subject>,
) -> RoleBinding {
    RoleBinding {
        metadata: meta(namespace, name),
        role_ref: role_ref(kind, role),
        subjects: Some(subjects),
    }
}

fn as_user(mut attributes: Attributes, user: UserInfo) -> Attributes {
    attributes.user = user;
    attributes
}

fn policy() -> RbacPolicy {
    RbacPolicy::new(
        vec![
            role(
                "dev",
                "pod-reader",
                vec![rule(&[""], &["pods", "pods/log"], &["get", "list"])],
            ),
            role("prod", "pod-reader", vec![rule(&[""], &["pods"], &["get"])]),
        ],
        vec![
            cluster_role("secret-reader", vec![rule(&[""], &["secrets"], &["get"])]),
            cluster_role("health", vec![url_rule(&["/healthz", "/apis/*"], &["get"])]),
            cluster_role("node-admin", vec![rule(&[""], &["nodes"], &["*"])]),
        ],
        vec![
            role_binding(
                "dev",
                "alice-reads-pods",
                "Role",
                "pod-reader",
                vec![subject("User", "alice")],
            ),
            role_binding(
                "dev",
                "secrets",
                "ClusterRole",
                "secret-reader",
                vec![
                    subject("ServiceAccount", "builder"),
                    service_account("ci", "runner"),
                ],
            ),
        ],
        vec![
            binding(
                "health",
                "ClusterRole",
                "health",
                vec![subject("Group", "system:authenticated")],
            ),
            binding(
                "ops",
                "ClusterRole",
                "node-admin",
                vec![
                    subject("User", "nobody"),
                    subject("Group", "ops"),
                    subject("User", "carol"),
                ],
            ),
            binding(
                "namespaceless-sa",
                "ClusterRole",
                "node-admin",
                vec![subject("ServiceAccount", "x")],
            ),
        ],
    )
}

#[test]
fn role_binding_allows_in_its_namespace_only() {
    let policy = policy();
    let alice = UserInfo::authenticated("alice", vec![]);
    let get = as_user(request("get", "", "pods", "dev", "p"), alice.clone());
    assert_eq!(
        policy.authorize(&get),
        Decision::Allow(
            "RBAC: allowed by RoleBinding \"alice-reads-pods/dev\" of Role \"pod-reader\" to User \"alice\""
                .into()
        )
    );
    // The Role of the same name in prod is not hers.
    let prod = as_user(request("get", "", "pods", "prod", "p"), alice.clone());
    assert_eq!(policy.authorize(&prod), Decision::NoOpinion(String::new()));
    // Cluster-wide requests see no RoleBinding.
    let all = as_user(request("list", "", "pods", "", ""), alice.clone());
    assert!(!policy.authorize(&all).allowed());
    // Verb, resource and subresource outside the role.
    for (verb, resource) in [
        ("delete", "pods"),
        ("get", "pods/exec"),
        ("get", "services"),
    ] {
        let other = as_user(request(verb, "", resource, "dev", "p"), alice.clone());
        assert!(!policy.authorize(&other).allowed(), "{verb} {resource}");
    }
    assert!(
        policy
            .authorize(&as_user(request("get", "", "pods/log", "dev", "p"), alice))
            .allowed()
    );
}

#[test]
fn subjects_match_by_kind() {
    let policy = policy();
    // A Group subject named "alice" would not match user alice, nor a User subject a group.
    let carol_group = UserInfo::authenticated("dave", vec!["carol".into()]);
    assert!(
        !policy
            .authorize(&as_user(request("get", "", "nodes", "", "n"), carol_group))
            .allowed()
    );
    let carol = UserInfo::authenticated("carol", vec![]);
    assert_eq!(
        policy.authorize(&as_user(request("delete", "", "nodes", "", "n"), carol)),
        Decision::Allow(
            "RBAC: allowed by ClusterRoleBinding \"ops\" of ClusterRole \"node-admin\" to User \"carol\"".into()
        )
    );
    // The first subject that names the user is the one reported.
    let both = UserInfo::authenticated("carol", vec!["ops".into()]);
    assert_eq!(
        policy
            .authorize(&as_user(request("get", "", "nodes", "", "n"), both))
            .reason(),
        "RBAC: allowed by ClusterRoleBinding \"ops\" of ClusterRole \"node-admin\" to Group \"ops\""
    );
}

#[test]
fn service_accounts() {
    let policy = policy();
    let read_secret = request("get", "", "secrets", "dev", "s");
    // A ServiceAccount subject without namespace is the RoleBinding's namespace's.
    let builder = UserInfo::authenticated("system:serviceaccount:dev:builder", vec![]);
    assert_eq!(
        policy
            .authorize(&as_user(read_secret.clone(), builder))
            .reason(),
        "RBAC: allowed by RoleBinding \"secrets/dev\" of ClusterRole \"secret-reader\" to ServiceAccount \"builder/dev\""
    );
    let runner = UserInfo::authenticated("system:serviceaccount:ci:runner", vec![]);
    assert_eq!(
        policy
            .authorize(&as_user(read_secret.clone(), runner))
            .reason(),
        "RBAC: allowed by RoleBinding \"secrets/dev\" of ClusterRole \"secret-reader\" to ServiceAccount \"runner/ci\""
    );
    // Same name, other namespace; a user merely called like the ServiceAccount.
    for name in [
        "system:serviceaccount:ci:builder",
        "system:serviceaccount:dev:runner",
        "builder",
    ] {
        let user = UserInfo::authenticated(name, vec![]);
        assert!(
            !policy
                .authorize(&as_user(read_secret.clone(), user))
                .allowed(),
            "{name}"
        );
    }
    // In a ClusterRoleBinding a ServiceAccount without namespace names nobody.
    let x = UserInfo::authenticated("system:serviceaccount::x", vec![]);
    assert!(
        !policy
            .authorize(&as_user(request("get", "", "nodes", "", "n"), x))
            .allowed()
    );
}

#[test]
fn non_resource_paths() {
    let policy = policy();
    let alice = UserInfo::authenticated("alice", vec![]);
    assert!(
        policy
            .authorize(&as_user(path_request("get", "/healthz"), alice.clone()))
            .allowed()
    );
    assert!(
        policy
            .authorize(&as_user(path_request("get", "/apis/apps"), alice.clone()))
            .allowed()
    );
    assert!(
        !policy
            .authorize(&as_user(path_request("get", "/apis"), alice.clone()))
            .allowed()
    );
    assert!(
        !policy
            .authorize(&as_user(path_request("post", "/healthz"), alice))
            .allowed()
    );
    let anonymous = UserInfo::anonymous();
    assert!(
        !policy
            .authorize(&as_user(path_request("get", "/healthz"), anonymous))
            .allowed()
    );
}

#[test]
fn missing_roles_give_a_reason_but_do_not_stop_an_allow() {
    let policy = RbacPolicy::new(
        vec![],
        vec![cluster_role(
            "reader",
            vec![rule(&[""], &["pods"], &["get"])],
        )],
        vec![role_binding(
            "dev",
            "a",
            "Role",
            "gone",
            vec![subject("User", "alice")],
        )],
        vec![
            binding("b", "ClusterRole", "lost", vec![subject("User", "alice")]),
            binding("c", "ClusterRole", "reader", vec![subject("User", "alice")]),
            binding("d", "Role", "reader", vec![subject("User", "alice")]),
        ],
    );
    let alice = UserInfo::authenticated("alice", vec![]);
    assert!(
        policy
            .authorize(&as_user(
                request("get", "", "pods", "dev", "p"),
                alice.clone()
            ))
            .allowed()
    );
    assert_eq!(
        policy.authorize(&as_user(
            request("list", "", "pods", "dev", ""),
            alice.clone()
        )),
        Decision::NoOpinion(
            "RBAC: [clusterrole.rbac.authorization.k8s.io \"lost\" not found, \
             role.rbac.authorization.k8s.io \"reader\" not found, \
             role.rbac.authorization.k8s.io \"gone\" not found]"
                .into()
        )
    );
    // Nobody else hears of alice's broken bindings.
    let bob = UserInfo::authenticated("bob", vec![]);
    assert_eq!(
        policy.authorize(&as_user(request("list", "", "pods", "dev", ""), bob)),
        Decision::NoOpinion(String::new())
    );
}

#[test]
fn role_references_resolve_as_kube_resolves_them() {
    let policy = policy();
    assert_eq!(
        policy.role_reference_rules(&role_ref("Role", "pod-reader"), "prod"),
        Ok(&[rule(&[""], &["pods"], &["get"])][..])
    );
    assert_eq!(
        policy.role_reference_rules(&role_ref("Role", "pod-reader"), "other"),
        Err("role.rbac.authorization.k8s.io \"pod-reader\" not found".into())
    );
    assert!(
        policy
            .role_reference_rules(&role_ref("ClusterRole", "health"), "dev")
            .is_ok()
    );
    assert_eq!(
        policy.role_reference_rules(&role_ref("Group", "x"), ""),
        Err("unsupported role reference kind: \"Group\"".into())
    );
}

#[test]
fn rules_for_collects_every_applying_rule() {
    let policy = policy();
    let alice = UserInfo::authenticated("alice", vec!["ops".into()]);
    let resolved = policy.rules_for(&alice, "dev");
    assert_eq!(
        resolved.rules,
        vec![
            url_rule(&["/healthz", "/apis/*"], &["get"]),
            rule(&[""], &["nodes"], &["*"]),
            rule(&[""], &["pods", "pods/log"], &["get", "list"]),
        ]
    );
    assert_eq!(resolved.error(), None);
    assert_eq!(policy.rules_for(&alice, "").rules.len(), 2);
}

#[test]
fn many_bindings_stay_cheap_to_search() {
    let bindings = (0..2000)
        .map(|i| {
            role_binding(
                "bench",
                &format!("b{i:04}"),
                "ClusterRole",
                "secret-reader",
                vec![service_account("bench", &format!("sa{i}"))],
            )
        })
        .collect();
    let policy = RbacPolicy::new(
        vec![],
        vec![cluster_role(
            "secret-reader",
            vec![rule(&[""], &["secrets"], &["get"])],
        )],
        bindings,
        vec![],
    );
    let user = UserInfo::authenticated("system:serviceaccount:bench:sa1999", vec![]);
    let scope = policy.namespaces.get("bench").expect("bench scope");
    assert_eq!(scope.applying(&user).len(), 1);
    assert_eq!(
        policy
            .authorize(&as_user(request("get", "", "secrets", "bench", "s"), user))
            .reason(),
        "RBAC: allowed by RoleBinding \"b1999/bench\" of ClusterRole \"secret-reader\" to ServiceAccount \"sa1999/bench\""
    );
}
