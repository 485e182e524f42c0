//! kube's bootstrap ClusterRoles and ClusterRoleBindings (`bootstrappolicy.ClusterRoles()`
//! and `ClusterRoleBindings()` with default feature gates), as data.

use super::{
    BindingSpec, EVENTS, READ, READ_WRITE, RECORD, RoleSpec, SubjectSpec, WRITE, named, rule, urls,
};

#[rustfmt::skip]
pub(super) static CLUSTER_ROLES: &[RoleSpec] = &[
    RoleSpec {
        name: "admin",
        labels: &[],
        aggregate_from: &["rbac.authorization.k8s.io/aggregate-to-admin"],
        rules: &[],
    },
    RoleSpec {
        name: "cluster-admin",
        labels: &[],
        aggregate_from: &[],
        rules: &[
            rule(&["*"], &["*"], &["*"]),
            urls(&["*"], &["*"]),
        ],
    },
    RoleSpec {
        name: "edit",
        labels: &[("rbac.authorization.k8s.io/aggregate-to-admin", "true")],
        aggregate_from: &["rbac.authorization.k8s.io/aggregate-to-edit"],
        rules: &[],
    },
    RoleSpec {
        name: "system:aggregate-to-admin",
        labels: &[("rbac.authorization.k8s.io/aggregate-to-admin", "true")],
        aggregate_from: &[],
        rules: &[
            rule(&["authorization.k8s.io"], &["localsubjectaccessreviews"], &["create"]),
            rule(&["rbac.authorization.k8s.io"], &["rolebindings", "roles"], READ_WRITE),
        ],
    },
    RoleSpec {
        name: "system:aggregate-to-edit",
        labels: &[("rbac.authorization.k8s.io/aggregate-to-edit", "true")],
        aggregate_from: &[],
        rules: &[
            rule(&[""], &["pods/attach", "pods/exec", "pods/portforward", "pods/proxy", "secrets", "services/proxy"], READ),
            rule(&[""], &["serviceaccounts"], &["impersonate"]),
            rule(&[""], &["pods", "pods/attach", "pods/exec", "pods/portforward", "pods/proxy"], WRITE),
            rule(&[""], &["pods/eviction"], &["create"]),
            rule(&[""], &["configmaps", "events", "persistentvolumeclaims", "replicationcontrollers", "replicationcontrollers/scale", "secrets", "serviceaccounts", "services", "services/proxy"], WRITE),
            rule(&[""], &["serviceaccounts/token"], &["create"]),
            rule(&["apps"], &["daemonsets", "deployments", "deployments/rollback", "deployments/scale", "replicasets", "replicasets/scale", "statefulsets", "statefulsets/scale"], WRITE),
            rule(&["autoscaling"], &["horizontalpodautoscalers"], WRITE),
            rule(&["batch"], &["cronjobs", "jobs"], WRITE),
            rule(&["extensions"], &["daemonsets", "deployments", "deployments/rollback", "deployments/scale", "ingresses", "networkpolicies", "replicasets", "replicasets/scale", "replicationcontrollers/scale"], WRITE),
            rule(&["policy"], &["poddisruptionbudgets"], WRITE),
            rule(&["networking.k8s.io"], &["ingresses", "networkpolicies"], WRITE),
            rule(&["coordination.k8s.io"], &["leases"], READ_WRITE),
        ],
    },
    RoleSpec {
        name: "system:aggregate-to-view",
        labels: &[("rbac.authorization.k8s.io/aggregate-to-view", "true")],
        aggregate_from: &[],
        rules: &[
            rule(&[""], &["configmaps", "endpoints", "persistentvolumeclaims", "persistentvolumeclaims/status", "pods", "replicationcontrollers", "replicationcontrollers/scale", "serviceaccounts", "services", "services/status"], READ),
            rule(&[""], &["bindings", "events", "limitranges", "namespaces/status", "pods/log", "pods/status", "replicationcontrollers/status", "resourcequotas", "resourcequotas/status"], READ),
            rule(&[""], &["namespaces"], READ),
            rule(&["discovery.k8s.io"], &["endpointslices"], READ),
            rule(&["apps"], &["controllerrevisions", "daemonsets", "daemonsets/status", "deployments", "deployments/scale", "deployments/status", "replicasets", "replicasets/scale", "replicasets/status", "statefulsets", "statefulsets/scale", "statefulsets/status"], READ),
            rule(&["autoscaling"], &["horizontalpodautoscalers", "horizontalpodautoscalers/status"], READ),
            rule(&["batch"], &["cronjobs", "cronjobs/status", "jobs", "jobs/status"], READ),
            rule(&["extensions"], &["daemonsets", "daemonsets/status", "deployments", "deployments/scale", "deployments/status", "ingresses", "ingresses/status", "networkpolicies", "replicasets", "replicasets/scale", "replicasets/status", "replicationcontrollers/scale"], READ),
            rule(&["policy"], &["poddisruptionbudgets", "poddisruptionbudgets/status"], READ),
            rule(&["networking.k8s.io"], &["ingresses", "ingresses/status", "networkpolicies"], READ),
        ],
    },
    RoleSpec {
        name: "system:auth-delegator",
        labels: &[],
        aggregate_from: &[],
        rules: &[
            rule(&["authentication.k8s.io"], &["tokenreviews"], &["create"]),
            rule(&["authorization.k8s.io"], &["subjectaccessreviews"], &["create"]),
        ],
    },
    RoleSpec {
        name: "system:basic-user",
        labels: &[],
        aggregate_from: &[],
        rules: &[
            rule(&["authorization.k8s.io"], &["selfsubjectaccessreviews", "selfsubjectrulesreviews"], &["create"]),
            rule(&["authentication.k8s.io"], &["selfsubjectreviews"], &["create"]),
        ],
    },
    RoleSpec {
        name: "system:certificates.k8s.io:certificatesigningrequests:nodeclient",
        labels: &[],
        aggregate_from: &[],
        rules: &[
            rule(&["certificates.k8s.io"], &["certificatesigningrequests/nodeclient"], &["create"]),
        ],
    },
    RoleSpec {
        name: "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient",
        labels: &[],
        aggregate_from: &[],
        rules: &[
            rule(&["certificates.k8s.io"], &["certificatesigningrequests/selfnodeclient"], &["create"]),
        ],
    },
    RoleSpec {
        name: "system:certificates.k8s.io:kube-apiserver-client-approver",
        labels: &[],
        aggregate_from: &[],
        rules: &[
            named(&["certificates.k8s.io"], &["signers"], &["kubernetes.io/kube-apiserver-client"], &["approve"]),
        ],
    },
    RoleSpec {
        name: "system:certificates.k8s.io:kube-apiserver-client-kubelet-approver",
        labels: &[],
        aggregate_from: &[],
        rules: &[
            named(&["certificates.k8s.io"], &["signers"], &["kubernetes.io/kube-apiserver-client-kubelet"], &["approve"]),
        ],
    },
    RoleSpec {
        name: "system:certificates.k8s.io:kubelet-serving-approver",
        labels: &[],
        aggregate_from: &[],
        rules: &[
            named(&["certificates.k8s.io"], &["signers"], &["kubernetes.io/kubelet-serving"], &["approve"]),
        ],
    },
    RoleSpec {
        name: "system:certificates.k8s.io:legacy-unknown-approver",
        labels: &[],
        aggregate_from: &[],
        rules: &[
            named(&["certificates.k8s.io"], &["signers"], &["kubernetes.io/legacy-unknown"], &["approve"]),
        ],
    },
    RoleSpec {
        name: "system:discovery",
        labels: &[],
        aggregate_from: &[],
        rules: &[
            urls(&["/api", "/api/*", "/apis", "/apis/*", "/healthz", "/livez", "/openapi", "/openapi/*", "/readyz", "/version", "/version/"], &["get"]),
        ],
    },
    RoleSpec {
        name: "system:heapster",
        labels: &[],
        aggregate_from: &[],
        rules: &[
            rule(&[""], &["events", "namespaces", "nodes", "pods"], READ),
            rule(&["extensions"], &["deployments"], READ),
        ],
    },
    RoleSpec {
        name: "system:kube-aggregator",
        labels: &[],
        aggregate_from: &[],
        rules: &[
            rule(&[""], &["endpoints", "services"], READ),
        ],
    },
    RoleSpec {
        name: "system:kube-controller-manager",
        labels: &[],
        aggregate_from: &[],
        rules: &[
            EVENTS,
            rule(&["coordination.k8s.io"], &["leases"], &["create"]),
            named(&["coordination.k8s.io"], &["leases"], &["kube-controller-manager"], &["get", "update"]),
            rule(&[""], &["secrets", "serviceaccounts"], &["create"]),
            rule(&[""], &["secrets"], &["delete"]),
            rule(&[""], &["configmaps", "namespaces", "secrets", "serviceaccounts"], &["get"]),
            rule(&[""], &["secrets", "serviceaccounts"], &["update"]),
            rule(&["authentication.k8s.io"], &["tokenreviews"], &["create"]),
            rule(&["authorization.k8s.io"], &["subjectaccessreviews"], &["create"]),
            rule(&["*"], &["*"], &["list", "watch"]),
            rule(&[""], &["serviceaccounts/token"], &["create"]),
        ],
    },
    RoleSpec {
        name: "system:kube-dns",
        labels: &[],
        aggregate_from: &[],
        rules: &[
            rule(&[""], &["endpoints", "services"], &["list", "watch"]),
        ],
    },
    RoleSpec {
        name: "system:kube-scheduler",
        labels: &[],
        aggregate_from: &[],
        rules: &[
            EVENTS,
            rule(&["coordination.k8s.io"], &["leases"], &["create"]),
            named(&["coordination.k8s.io"], &["leases"], &["kube-scheduler"], &["get", "update"]),
            rule(&[""], &["nodes"], READ),
            rule(&[""], &["pods"], &["delete", "get", "list", "watch"]),
            rule(&[""], &["bindings", "pods/binding"], &["create"]),
            rule(&[""], &["pods/status"], &["patch", "update"]),
            rule(&[""], &["replicationcontrollers", "services"], READ),
            rule(&["apps", "extensions"], &["replicasets"], READ),
            rule(&["apps"], &["statefulsets"], READ),
            rule(&["policy"], &["poddisruptionbudgets"], READ),
            rule(&[""], &["persistentvolumeclaims", "persistentvolumes"], READ),
            rule(&["authentication.k8s.io"], &["tokenreviews"], &["create"]),
            rule(&["authorization.k8s.io"], &["subjectaccessreviews"], &["create"]),
            rule(&["storage.k8s.io"], &["csinodes"], READ),
            rule(&[""], &["namespaces"], READ),
            rule(&["storage.k8s.io"], &["csidrivers"], READ),
            rule(&["storage.k8s.io"], &["csistoragecapacities"], READ),
        ],
    },
    RoleSpec {
        name: "system:kubelet-api-admin",
        labels: &[],
        aggregate_from: &[],
        rules: &[
            rule(&[""], &["nodes"], READ),
            rule(&[""], &["nodes"], &["proxy"]),
            rule(&[""], &["nodes/log", "nodes/metrics", "nodes/proxy", "nodes/stats"], &["*"]),
        ],
    },
    RoleSpec {
        name: "system:monitoring",
        labels: &[],
        aggregate_from: &[],
        rules: &[
            urls(&["/healthz", "/healthz/*", "/livez", "/livez/*", "/metrics", "/metrics/slis", "/readyz", "/readyz/*"], &["get"]),
        ],
    },
    RoleSpec {
        name: "system:node",
        labels: &[],
        aggregate_from: &[],
        rules: &[
            rule(&["authentication.k8s.io"], &["tokenreviews"], &["create"]),
            rule(&["authorization.k8s.io"], &["localsubjectaccessreviews", "subjectaccessreviews"], &["create"]),
            rule(&[""], &["services"], READ),
            rule(&[""], &["nodes"], &["create", "get", "list", "watch"]),
            rule(&[""], &["nodes/status"], &["patch", "update"]),
            rule(&[""], &["nodes"], &["patch", "update"]),
            rule(&[""], &["events"], RECORD),
            rule(&[""], &["pods"], READ),
            rule(&[""], &["pods"], &["create", "delete"]),
            rule(&[""], &["pods/status"], &["patch", "update"]),
            rule(&[""], &["pods/eviction"], &["create"]),
            rule(&[""], &["configmaps", "secrets"], READ),
            rule(&[""], &["persistentvolumeclaims", "persistentvolumes"], &["get"]),
            rule(&[""], &["endpoints"], &["get"]),
            rule(&["certificates.k8s.io"], &["certificatesigningrequests"], &["create", "get", "list", "watch"]),
            rule(&["coordination.k8s.io"], &["leases"], &["create", "delete", "get", "patch", "update"]),
            rule(&["storage.k8s.io"], &["volumeattachments"], &["get"]),
            rule(&[""], &["serviceaccounts/token"], &["create"]),
            rule(&[""], &["persistentvolumeclaims/status"], &["get", "patch", "update"]),
            rule(&["storage.k8s.io"], &["csidrivers"], READ),
            rule(&["storage.k8s.io"], &["csinodes"], &["create", "delete", "get", "patch", "update"]),
            rule(&["node.k8s.io"], &["runtimeclasses"], READ),
        ],
    },
    RoleSpec {
        name: "system:node-bootstrapper",
        labels: &[],
        aggregate_from: &[],
        rules: &[
            rule(&["certificates.k8s.io"], &["certificatesigningrequests"], &["create", "get", "list", "watch"]),
        ],
    },
    RoleSpec {
        name: "system:node-problem-detector",
        labels: &[],
        aggregate_from: &[],
        rules: &[
            rule(&[""], &["nodes"], &["get"]),
            rule(&[""], &["nodes/status"], &["patch"]),
            EVENTS,
        ],
    },
    RoleSpec {
        name: "system:node-proxier",
        labels: &[],
        aggregate_from: &[],
        rules: &[
            rule(&[""], &["endpoints", "services"], &["list", "watch"]),
            rule(&[""], &["nodes"], READ),
            EVENTS,
            rule(&["discovery.k8s.io"], &["endpointslices"], &["list", "watch"]),
        ],
    },
    RoleSpec {
        name: "system:persistent-volume-provisioner",
        labels: &[],
        aggregate_from: &[],
        rules: &[
            rule(&[""], &["persistentvolumes"], &["create", "delete", "get", "list", "watch"]),
            rule(&[""], &["persistentvolumeclaims"], &["get", "list", "update", "watch"]),
            rule(&["storage.k8s.io"], &["storageclasses"], READ),
            rule(&[""], &["events"], &["watch"]),
            EVENTS,
        ],
    },
    RoleSpec {
        name: "system:public-info-viewer",
        labels: &[],
        aggregate_from: &[],
        rules: &[
            urls(&["/healthz", "/livez", "/readyz", "/version", "/version/"], &["get"]),
        ],
    },
    RoleSpec {
        name: "system:service-account-issuer-discovery",
        labels: &[],
        aggregate_from: &[],
        rules: &[
            urls(&["/.well-known/openid-configuration", "/openid/v1/jwks"], &["get"]),
        ],
    },
    RoleSpec {
        name: "system:volume-scheduler",
        labels: &[],
        aggregate_from: &[],
        rules: &[
            rule(&[""], &["persistentvolumes"], &["get", "list", "patch", "update", "watch"]),
            rule(&["storage.k8s.io"], &["storageclasses"], READ),
            rule(&[""], &["persistentvolumeclaims"], &["get", "list", "patch", "update", "watch"]),
        ],
    },
    RoleSpec {
        name: "view",
        labels: &[("rbac.authorization.k8s.io/aggregate-to-edit", "true")],
        aggregate_from: &["rbac.authorization.k8s.io/aggregate-to-view"],
        rules: &[],
    },
];

#[rustfmt::skip]
pub(super) static CLUSTER_ROLE_BINDINGS: &[BindingSpec] = &[
    BindingSpec {
        name: "cluster-admin",
        role: "cluster-admin",
        subjects: &[SubjectSpec::Group("system:masters")],
    },
    BindingSpec {
        name: "system:basic-user",
        role: "system:basic-user",
        subjects: &[SubjectSpec::Group("system:authenticated")],
    },
    BindingSpec {
        name: "system:discovery",
        role: "system:discovery",
        subjects: &[SubjectSpec::Group("system:authenticated")],
    },
    BindingSpec {
        name: "system:kube-controller-manager",
        role: "system:kube-controller-manager",
        subjects: &[SubjectSpec::User("system:kube-controller-manager")],
    },
    BindingSpec {
        name: "system:kube-dns",
        role: "system:kube-dns",
        subjects: &[SubjectSpec::ServiceAccount("kube-system", "kube-dns")],
    },
    BindingSpec {
        name: "system:kube-scheduler",
        role: "system:kube-scheduler",
        subjects: &[SubjectSpec::User("system:kube-scheduler")],
    },
    BindingSpec {
        name: "system:monitoring",
        role: "system:monitoring",
        subjects: &[SubjectSpec::Group("system:monitoring")],
    },
    BindingSpec {
        name: "system:node",
        role: "system:node",
        subjects: &[],
    },
    BindingSpec {
        name: "system:node-proxier",
        role: "system:node-proxier",
        subjects: &[SubjectSpec::User("system:kube-proxy")],
    },
    BindingSpec {
        name: "system:public-info-viewer",
        role: "system:public-info-viewer",
        subjects: &[SubjectSpec::Group("system:authenticated"), SubjectSpec::Group("system:unauthenticated")],
    },
    BindingSpec {
        name: "system:service-account-issuer-discovery",
        role: "system:service-account-issuer-discovery",
        subjects: &[SubjectSpec::Group("system:serviceaccounts")],
    },
    BindingSpec {
        name: "system:volume-scheduler",
        role: "system:volume-scheduler",
        subjects: &[SubjectSpec::User("system:kube-scheduler")],
    },
];
