//! Skiff's additions to kube's bootstrap RBAC policy, each for a way Skiff's components
//! differ from kube's (reconciled at start with the bootstrap policy, and listed by
//! `kubectl get clusterroles,clusterrolebindings -l kubernetes.io/bootstrapping=skiff`):
//!
//! - `skiff:controllers` (ClusterRole and ClusterRoleBinding): Skiff's controllers watch
//!   under their own identities, where kube-controller-manager's shared informers watch as
//!   `system:kube-controller-manager` (which may list and watch everything); and they
//!   write status (and the Deployment controller its revision annotation) with merge
//!   patches, where kube's controller roles grant `update` only.
//! - `skiff:endpoints`: one Skiff controller writes both EndpointSlices and the legacy
//!   Endpoints (kube has two); it runs as `endpointslice-controller` and is also bound to
//!   `system:controller:endpoint-controller`.
//! - `skiff:ttl-after-finished`: the Job controller also deletes finished Jobs after their
//!   `ttlSecondsAfterFinished` (kube's ttl-after-finished controller), so it is bound to
//!   `system:controller:ttl-after-finished-controller` too.
//! - `skiff:customresourcedefinitions`: kube-apiserver runs the CRD naming, establishing
//!   and finalizing controllers in-process as itself; Skiff's run as
//!   `customresourcedefinition-controller`, which writes CRDs and their status and deletes
//!   the objects of a CRD being deleted (of any group: custom groups are not known in
//!   advance).
//! - `skiff:apiservices`: kube-apiserver's aggregator registers the local APIServices and
//!   keeps every APIService's Available condition in-process; Skiff's
//!   `apiservice-controller` does both.
//! - `skiff:node-proxier`: each node's agent is also its kube-proxy (the Service
//!   datapath), so every node is bound to `system:node-proxier`.

use std::collections::BTreeMap;

use k8s_openapi::{
    api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, RoleRef, Subject},
    apimachinery::pkg::apis::meta::v1::ObjectMeta,
};

use super::rbac::bootstrap::{AUTOUPDATE_ANNOTATION, BOOTSTRAPPING_LABEL, CONTROLLER_NAMESPACE};
use crate::model::user::NODES;

/// Label value of Skiff's own bootstrap objects (kube's are `rbac-defaults`).
pub const SKIFF_BOOTSTRAPPING: &str = "skiff";

/// The ServiceAccounts (in kube-system) Skiff's controllers run as: kube's names for the
/// same controllers.
pub const CONTROLLER_ACCOUNTS: &[&str] = &[
    "replicaset-controller",
    "deployment-controller",
    "daemon-set-controller",
    "statefulset-controller",
    "job-controller",
    "cronjob-controller",
    "endpointslice-controller",
    "disruption-controller",
    "namespace-controller",
    "node-controller",
    "generic-garbage-collector",
    "service-controller",
    "service-account-controller",
    "root-ca-cert-publisher",
    "clusterrole-aggregation-controller",
    "customresourcedefinition-controller",
    "resourcequota-controller",
    "apiservice-controller",
    "certificate-controller",
    "persistent-volume-binder",
    "pvc-protection-controller",
];

const RBAC_GROUP: &str = "rbac.authorization.k8s.io";

fn metadata(name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        labels: Some(BTreeMap::from([(
            BOOTSTRAPPING_LABEL.to_owned(),
            SKIFF_BOOTSTRAPPING.to_owned(),
        )])),
        annotations: Some(BTreeMap::from([(
            AUTOUPDATE_ANNOTATION.to_owned(),
            "true".to_owned(),
        )])),
        ..ObjectMeta::default()
    }
}

fn rule(verbs: &[&str], groups: &[&str], resources: &[&str]) -> PolicyRule {
    let owned = |items: &[&str]| items.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    PolicyRule {
        verbs: owned(verbs),
        api_groups: Some(owned(groups)),
        resources: Some(owned(resources)),
        ..PolicyRule::default()
    }
}

fn binding(name: &str, role: &str, subjects: Vec<Subject>) -> ClusterRoleBinding {
    ClusterRoleBinding {
        metadata: metadata(name),
        role_ref: RoleRef {
            api_group: RBAC_GROUP.to_owned(),
            kind: "ClusterRole".to_owned(),
            name: role.to_owned(),
        },
        subjects: Some(subjects),
    }
}

fn service_account(name: &str) -> Subject {
    Subject {
        kind: "ServiceAccount".to_owned(),
        name: name.to_owned(),
        namespace: Some(CONTROLLER_NAMESPACE.to_owned()),
        api_group: None,
    }
}

/// Skiff's ClusterRoles.
pub fn cluster_roles() -> Vec<ClusterRole> {
    vec![
        ClusterRole {
            metadata: metadata("skiff:controllers"),
            rules: Some(vec![
                rule(&["get", "list", "watch"], &["*"], &["*"]),
                // The Deployment controller patches its revision annotation (kube: update).
                rule(&["patch"], &["apps"], &["deployments"]),
                rule(
                    &["patch", "update"],
                    &["apps"],
                    &[
                        "replicasets/status",
                        "deployments/status",
                        "daemonsets/status",
                        "statefulsets/status",
                    ],
                ),
                rule(
                    &["patch", "update"],
                    &["batch"],
                    &["jobs/status", "cronjobs/status"],
                ),
                rule(
                    &["patch", "update"],
                    &[""],
                    &["services/status", "pods/status", "nodes/status"],
                ),
            ]),
            aggregation_rule: None,
        },
        ClusterRole {
            metadata: metadata("skiff:customresourcedefinitions"),
            rules: Some(vec![
                rule(
                    &["update", "patch"],
                    &["apiextensions.k8s.io"],
                    &[
                        "customresourcedefinitions",
                        "customresourcedefinitions/status",
                    ],
                ),
                rule(&["delete"], &["*"], &["*"]),
            ]),
            aggregation_rule: None,
        },
        ClusterRole {
            metadata: metadata("skiff:apiservices"),
            rules: Some(vec![rule(
                &["create", "update", "patch", "delete"],
                &["apiregistration.k8s.io"],
                &["apiservices", "apiservices/status"],
            )]),
            aggregation_rule: None,
        },
    ]
}

/// Skiff's ClusterRoleBindings.
pub fn cluster_role_bindings() -> Vec<ClusterRoleBinding> {
    vec![
        binding(
            "skiff:controllers",
            "skiff:controllers",
            CONTROLLER_ACCOUNTS
                .iter()
                .map(|a| service_account(a))
                .collect(),
        ),
        binding(
            "skiff:customresourcedefinitions",
            "skiff:customresourcedefinitions",
            vec![service_account("customresourcedefinition-controller")],
        ),
        binding(
            "skiff:apiservices",
            "skiff:apiservices",
            vec![service_account("apiservice-controller")],
        ),
        binding(
            "skiff:endpoints",
            "system:controller:endpoint-controller",
            vec![service_account("endpointslice-controller")],
        ),
        binding(
            "skiff:ttl-after-finished",
            "system:controller:ttl-after-finished-controller",
            vec![service_account("job-controller")],
        ),
        binding(
            "skiff:node-proxier",
            "system:node-proxier",
            vec![Subject {
                kind: "Group".to_owned(),
                name: NODES.to_owned(),
                api_group: Some(RBAC_GROUP.to_owned()),
                namespace: None,
            }],
        ),
    ]
}
