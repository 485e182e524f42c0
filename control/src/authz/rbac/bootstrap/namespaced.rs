//! kube's bootstrap Roles and RoleBindings in kube-system and kube-public
//! (`bootstrappolicy.NamespaceRoles()` and `NamespaceRoleBindings()`), as data.

use super::{EVENTS, NamespacedBindingSpec, NamespacedRoleSpec, READ, SubjectSpec, named, rule};

#[rustfmt::skip]
pub(super) static NAMESPACED_ROLES: &[NamespacedRoleSpec] = &[
    NamespacedRoleSpec {
        name: "system:controller:bootstrap-signer",
        namespace: "kube-public",
        rules: &[
            rule(&[""], &["configmaps"], READ),
            named(&[""], &["configmaps"], &["cluster-info"], &["update"]),
            EVENTS,
        ],
    },
    NamespacedRoleSpec {
        name: "extension-apiserver-authentication-reader",
        namespace: "kube-system",
        rules: &[
            named(&[""], &["configmaps"], &["extension-apiserver-authentication"], READ),
        ],
    },
    NamespacedRoleSpec {
        name: "system::leader-locking-kube-controller-manager",
        namespace: "kube-system",
        rules: &[
            rule(&["coordination.k8s.io"], &["leases"], &["create", "get", "list", "update", "watch"]),
            rule(&["coordination.k8s.io"], &["leasecandidates"], &["create", "get", "list", "update", "watch"]),
        ],
    },
    NamespacedRoleSpec {
        name: "system::leader-locking-kube-scheduler",
        namespace: "kube-system",
        rules: &[
            rule(&["coordination.k8s.io"], &["leases"], &["create", "get", "list", "update", "watch"]),
            rule(&["coordination.k8s.io"], &["leasecandidates"], &["create", "get", "list", "update", "watch"]),
        ],
    },
    NamespacedRoleSpec {
        name: "system:controller:bootstrap-signer",
        namespace: "kube-system",
        rules: &[
            rule(&[""], &["secrets"], READ),
        ],
    },
    NamespacedRoleSpec {
        name: "system:controller:cloud-provider",
        namespace: "kube-system",
        rules: &[
            rule(&[""], &["configmaps"], &["create", "get", "list", "watch"]),
        ],
    },
    NamespacedRoleSpec {
        name: "system:controller:token-cleaner",
        namespace: "kube-system",
        rules: &[
            rule(&[""], &["secrets"], &["delete", "get", "list", "watch"]),
            EVENTS,
        ],
    },
];

#[rustfmt::skip]
pub(super) static NAMESPACED_ROLE_BINDINGS: &[NamespacedBindingSpec] = &[
    NamespacedBindingSpec {
        name: "system:controller:bootstrap-signer",
        namespace: "kube-public",
        role: "system:controller:bootstrap-signer",
        subjects: &[SubjectSpec::ServiceAccount("kube-system", "bootstrap-signer")],
    },
    NamespacedBindingSpec {
        name: "system::extension-apiserver-authentication-reader",
        namespace: "kube-system",
        role: "extension-apiserver-authentication-reader",
        subjects: &[SubjectSpec::User("system:kube-controller-manager"), SubjectSpec::User("system:kube-scheduler")],
    },
    NamespacedBindingSpec {
        name: "system::leader-locking-kube-controller-manager",
        namespace: "kube-system",
        role: "system::leader-locking-kube-controller-manager",
        subjects: &[SubjectSpec::User("system:kube-controller-manager"), SubjectSpec::ServiceAccount("kube-system", "kube-controller-manager"), SubjectSpec::ServiceAccount("kube-system", "leader-election-controller")],
    },
    NamespacedBindingSpec {
        name: "system::leader-locking-kube-scheduler",
        namespace: "kube-system",
        role: "system::leader-locking-kube-scheduler",
        subjects: &[SubjectSpec::User("system:kube-scheduler"), SubjectSpec::ServiceAccount("kube-system", "kube-scheduler")],
    },
    NamespacedBindingSpec {
        name: "system:controller:bootstrap-signer",
        namespace: "kube-system",
        role: "system:controller:bootstrap-signer",
        subjects: &[SubjectSpec::ServiceAccount("kube-system", "bootstrap-signer")],
    },
    NamespacedBindingSpec {
        name: "system:controller:cloud-provider",
        namespace: "kube-system",
        role: "system:controller:cloud-provider",
        subjects: &[SubjectSpec::ServiceAccount("kube-system", "cloud-provider")],
    },
    NamespacedBindingSpec {
        name: "system:controller:token-cleaner",
        namespace: "kube-system",
        role: "system:controller:token-cleaner",
        subjects: &[SubjectSpec::ServiceAccount("kube-system", "token-cleaner")],
    },
];
