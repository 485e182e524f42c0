//! The columns kubectl shows for each kind (kube's printers): one printer per kind, cells
//! computed from the object's JSON — workloads in `workloads.rs`, the rest in `cluster.rs`.

mod cluster;
mod networking;
mod policy;
mod workloads;

use cluster::*;
use networking::*;
use policy::*;
use workloads::*;

use serde_json::{Value, json};

use super::age;
use crate::model::meta;

/// A column: name, type, priority (0 = default, 1 = `-o wide`).
pub type Column = (&'static str, &'static str, u8);

/// Computes one row's cells, in column order.
pub type Cells = fn(&Value) -> Vec<Value>;

/// Columns and the cell function of one kind.
pub struct Printer {
    /// Column definitions (Name is always first).
    pub columns: &'static [Column],
    /// One row's cells, in column order.
    pub cells: Cells,
}

const NAME: Column = ("Name", "string", 0);
const AGE: Column = ("Age", "string", 0);

/// The printer of `group`/`kind`.
pub fn printer(group: &str, kind: &str) -> Printer {
    let (columns, cells): (&'static [Column], Cells) = match (group, kind) {
        ("", "Pod") => (
            &[
                NAME,
                ("Ready", "string", 0),
                ("Status", "string", 0),
                ("Restarts", "string", 0),
                AGE,
                ("IP", "string", 1),
                ("Node", "string", 1),
                ("Nominated Node", "string", 1),
                ("Readiness Gates", "string", 1),
            ],
            pod,
        ),
        ("apps", "Deployment") => (
            &[
                NAME,
                ("Ready", "string", 0),
                ("Up-to-date", "integer", 0),
                ("Available", "integer", 0),
                AGE,
                ("Containers", "string", 1),
                ("Images", "string", 1),
                ("Selector", "string", 1),
            ],
            deployment,
        ),
        ("apps", "ReplicaSet") | ("", "ReplicationController") => (
            &[
                NAME,
                ("Desired", "integer", 0),
                ("Current", "integer", 0),
                ("Ready", "integer", 0),
                AGE,
                ("Containers", "string", 1),
                ("Images", "string", 1),
                ("Selector", "string", 1),
            ],
            replica_set,
        ),
        ("apps", "StatefulSet") => (
            &[
                NAME,
                ("Ready", "string", 0),
                AGE,
                ("Containers", "string", 1),
                ("Images", "string", 1),
            ],
            stateful_set,
        ),
        ("apps", "DaemonSet") => (
            &[
                NAME,
                ("Desired", "integer", 0),
                ("Current", "integer", 0),
                ("Ready", "integer", 0),
                ("Up-to-date", "integer", 0),
                ("Available", "integer", 0),
                ("Node Selector", "string", 0),
                AGE,
                ("Containers", "string", 1),
                ("Images", "string", 1),
                ("Selector", "string", 1),
            ],
            daemon_set,
        ),
        ("batch", "Job") => (
            &[
                NAME,
                ("Status", "string", 0),
                ("Completions", "string", 0),
                ("Duration", "string", 0),
                AGE,
                ("Containers", "string", 1),
                ("Images", "string", 1),
                ("Selector", "string", 1),
            ],
            job,
        ),
        ("batch", "CronJob") => (
            &[
                NAME,
                ("Schedule", "string", 0),
                ("Timezone", "string", 0),
                ("Suspend", "boolean", 0),
                ("Active", "integer", 0),
                ("Last Schedule", "string", 0),
                AGE,
                ("Containers", "string", 1),
                ("Images", "string", 1),
                ("Selector", "string", 1),
            ],
            cron_job,
        ),
        ("", "Service") => (
            &[
                NAME,
                ("Type", "string", 0),
                ("Cluster-IP", "string", 0),
                ("External-IP", "string", 0),
                ("Port(s)", "string", 0),
                AGE,
                ("Selector", "string", 1),
            ],
            service,
        ),
        ("", "Endpoints") => (&[NAME, ("Endpoints", "string", 0), AGE], endpoints),
        ("discovery.k8s.io", "EndpointSlice") => (
            &[
                NAME,
                ("AddressType", "string", 0),
                ("Ports", "string", 0),
                ("Endpoints", "string", 0),
                AGE,
            ],
            endpoint_slice,
        ),
        ("", "Node") => (
            &[
                NAME,
                ("Status", "string", 0),
                ("Roles", "string", 0),
                AGE,
                ("Version", "string", 0),
                ("Internal-IP", "string", 1),
                ("External-IP", "string", 1),
                ("OS-Image", "string", 1),
                ("Kernel-Version", "string", 1),
                ("Container-Runtime", "string", 1),
            ],
            node,
        ),
        ("", "Namespace") => (&[NAME, ("Status", "string", 0), AGE], namespace),
        ("", "ConfigMap") => (&[NAME, ("Data", "integer", 0), AGE], config_map),
        ("", "Secret") => (
            &[NAME, ("Type", "string", 0), ("Data", "integer", 0), AGE],
            secret,
        ),
        ("", "ServiceAccount") => (&[NAME, ("Secrets", "integer", 0), AGE], service_account),
        ("", "Event") => (
            &[
                ("Last Seen", "string", 0),
                ("Type", "string", 0),
                ("Reason", "string", 0),
                ("Object", "string", 0),
                ("Subobject", "string", 1),
                ("Source", "string", 1),
                ("Message", "string", 0),
                ("First Seen", "string", 1),
                ("Count", "string", 1),
                ("Name", "string", 1),
            ],
            event,
        ),
        ("", "PersistentVolumeClaim") => (
            &[
                NAME,
                ("Status", "string", 0),
                ("Volume", "string", 0),
                ("Capacity", "string", 0),
                ("Access Modes", "string", 0),
                ("StorageClass", "string", 0),
                AGE,
            ],
            pvc,
        ),
        ("", "PersistentVolume") => (
            &[
                NAME,
                ("Capacity", "string", 0),
                ("Access Modes", "string", 0),
                ("Reclaim Policy", "string", 0),
                ("Status", "string", 0),
                ("Claim", "string", 0),
                ("StorageClass", "string", 0),
                AGE,
            ],
            pv,
        ),
        ("storage.k8s.io", "StorageClass") => (
            &[
                NAME,
                ("Provisioner", "string", 0),
                ("ReclaimPolicy", "string", 0),
                ("VolumeBindingMode", "string", 0),
                ("AllowVolumeExpansion", "string", 0),
                AGE,
            ],
            storage_class,
        ),
        ("policy", "PodDisruptionBudget") => (
            &[
                NAME,
                ("Min Available", "string", 0),
                ("Max Unavailable", "string", 0),
                ("Allowed Disruptions", "integer", 0),
                AGE,
            ],
            pod_disruption_budget,
        ),
        ("", "ResourceQuota") => (
            &[NAME, AGE, ("Request", "string", 0), ("Limit", "string", 0)],
            resource_quota,
        ),
        (
            "admissionregistration.k8s.io",
            "MutatingWebhookConfiguration" | "ValidatingWebhookConfiguration",
        ) => (
            &[NAME, ("Webhooks", "integer", 0), AGE],
            webhook_configuration,
        ),
        ("certificates.k8s.io", "CertificateSigningRequest") => (
            &[
                NAME,
                AGE,
                ("SignerName", "string", 0),
                ("Requestor", "string", 0),
                ("RequestedDuration", "string", 0),
                ("Condition", "string", 0),
            ],
            certificate_signing_request,
        ),
        ("apiregistration.k8s.io", "APIService") => (
            &[
                NAME,
                ("Service", "string", 0),
                ("Available", "string", 0),
                AGE,
            ],
            api_service,
        ),
        ("scheduling.k8s.io", "PriorityClass") => (
            &[
                NAME,
                ("Value", "integer", 0),
                ("Global-Default", "boolean", 0),
                AGE,
                ("PreemptionPolicy", "string", 0),
            ],
            priority_class,
        ),
        ("networking.k8s.io", "NetworkPolicy") => {
            (&[NAME, ("Pod-Selector", "string", 0), AGE], network_policy)
        }
        ("networking.k8s.io", "Ingress") => (
            &[
                NAME,
                ("Class", "string", 0),
                ("Hosts", "string", 0),
                ("Address", "string", 0),
                ("Ports", "string", 0),
                AGE,
            ],
            ingress,
        ),
        ("networking.k8s.io", "IngressClass") => (
            &[
                NAME,
                ("Controller", "string", 0),
                ("Parameters", "string", 0),
                AGE,
            ],
            ingress_class,
        ),
        ("coordination.k8s.io", "Lease") => (&[NAME, ("Holder", "string", 0), AGE], lease),
        ("node.k8s.io", "RuntimeClass") => (&[NAME, ("Handler", "string", 0), AGE], runtime_class),
        ("rbac.authorization.k8s.io", "Role" | "ClusterRole") => {
            (&[NAME, ("Created At", "date", 0)], role)
        }
        ("rbac.authorization.k8s.io", "RoleBinding" | "ClusterRoleBinding") => (
            &[
                NAME,
                ("Role", "string", 0),
                AGE,
                ("Users", "string", 1),
                ("Groups", "string", 1),
                ("ServiceAccounts", "string", 1),
            ],
            role_binding,
        ),
        _ => (&[NAME, AGE], plain),
    };
    Printer { columns, cells }
}

pub(super) fn s<'a>(v: &'a Value, path: &str) -> &'a str {
    path.split('.')
        .try_fold(v, |v, p| v.get(p))
        .and_then(Value::as_str)
        .unwrap_or("")
}

pub(super) fn n(v: &Value, path: &str) -> i64 {
    path.split('.')
        .try_fold(v, |v, p| v.get(p))
        .and_then(Value::as_i64)
        .unwrap_or(0)
}

pub(super) fn list<'a>(v: &'a Value, path: &str) -> &'a [Value] {
    path.split('.')
        .try_fold(v, |v, p| v.get(p))
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

pub(super) fn or_none(text: String) -> Value {
    Value::String(if text.is_empty() {
        "<none>".to_owned()
    } else {
        text
    })
}

pub(super) fn name(o: &Value) -> Value {
    json!(meta::name(o))
}

pub(super) fn created(o: &Value) -> Value {
    json!(age(meta::meta_str(o, "creationTimestamp")))
}

/// Label selector as `k=v,k2 in (a,b)` (maps and LabelSelectors).
pub(super) fn selector(selector: Option<&Value>) -> String {
    selector
        .map(crate::model::selector::render)
        .unwrap_or_default()
}

fn plain(o: &Value) -> Vec<Value> {
    vec![name(o), created(o)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_status_reads_like_kubectl() {
        let crash = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a"}, {"name": "b"}]}, "status": {"phase": "Running",
        "containerStatuses": [
            {"name": "a", "ready": true, "restartCount": 0, "state": {"running": {}}},
            {"name": "b", "ready": false, "restartCount": 4, "state": {"waiting": {"reason": "CrashLoopBackOff"}}}
        ]}});
        let cells = pod(&crash);
        assert_eq!(
            (cells[1].as_str(), cells[2].as_str(), cells[3].as_str()),
            (Some("1/2"), Some("CrashLoopBackOff"), Some("4"))
        );
        let init = json!({"metadata": {"name": "p"}, "spec": {"initContainers": [{"name": "i"}], "containers": [{"name": "a"}]},
            "status": {"phase": "Pending", "initContainerStatuses": [{"name": "i", "state": {"running": {}}}]}});
        assert_eq!(pod(&init)[2], "Init:0/1");
        let deleting = json!({"metadata": {"name": "p", "deletionTimestamp": "2026-01-01T00:00:00Z"}, "spec": {"containers": []}, "status": {"phase": "Running"}});
        assert_eq!(pod(&deleting)[2], "Terminating");
    }

    #[test]
    fn service_columns() {
        let svc = json!({"metadata": {"name": "s"}, "spec": {"type": "NodePort", "clusterIP": "10.96.0.5",
            "ports": [{"port": 80, "nodePort": 30080, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}], "selector": {"app": "web"}}});
        let cells = service(&svc);
        assert_eq!(cells[4], "80:30080/TCP,53/UDP");
        assert_eq!(cells[3], "<none>");
        assert_eq!(cells[6], "app=web");
        let lb = json!({"metadata": {"name": "s"}, "spec": {"type": "LoadBalancer", "clusterIP": "None", "ports": []}});
        assert_eq!(
            (service(&lb)[2].as_str(), service(&lb)[3].as_str()),
            (Some("None"), Some("<pending>"))
        );
    }

    #[test]
    fn storage_classes_show_their_defaults() {
        let default = json!({"metadata": {"name": "local",
            "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
            "provisioner": "rancher.io/local-path"});
        let cells = storage_class(&default);
        assert_eq!(
            (&cells[0], &cells[1], &cells[2], &cells[3], &cells[4]),
            (
                &json!("local (default)"),
                &json!("rancher.io/local-path"),
                &json!("Delete"),
                &json!("Immediate"),
                &json!(false)
            )
        );
        let late = json!({"metadata": {"name": "late"}, "provisioner": "p",
            "reclaimPolicy": "Retain", "volumeBindingMode": "WaitForFirstConsumer",
            "allowVolumeExpansion": true});
        let cells = storage_class(&late);
        assert_eq!(
            (&cells[0], &cells[2], &cells[3], &cells[4]),
            (
                &json!("late"),
                &json!("Retain"),
                &json!("WaitForFirstConsumer"),
                &json!(true)
            )
        );
    }

    #[test]
    fn every_printer_has_a_cell_per_column() {
        for (group, kind) in [
            ("", "Pod"),
            ("apps", "Deployment"),
            ("apps", "ReplicaSet"),
            ("apps", "StatefulSet"),
            ("apps", "DaemonSet"),
            ("batch", "Job"),
            ("batch", "CronJob"),
            ("", "Service"),
            ("", "Endpoints"),
            ("discovery.k8s.io", "EndpointSlice"),
            ("", "Node"),
            ("", "Namespace"),
            ("", "ConfigMap"),
            ("", "Secret"),
            ("", "ServiceAccount"),
            ("", "Event"),
            ("", "PersistentVolumeClaim"),
            ("", "PersistentVolume"),
            ("coordination.k8s.io", "Lease"),
            ("node.k8s.io", "RuntimeClass"),
            ("", "ReplicationController"),
            ("storage.k8s.io", "StorageClass"),
            ("policy", "PodDisruptionBudget"),
            ("scheduling.k8s.io", "PriorityClass"),
            ("apiregistration.k8s.io", "APIService"),
            ("certificates.k8s.io", "CertificateSigningRequest"),
            (
                "admissionregistration.k8s.io",
                "ValidatingWebhookConfiguration",
            ),
            ("networking.k8s.io", "NetworkPolicy"),
            ("networking.k8s.io", "Ingress"),
            ("networking.k8s.io", "IngressClass"),
            ("x", "Unknown"),
        ] {
            let p = printer(group, kind);
            assert_eq!(
                p.columns.len(),
                (p.cells)(&json!({"metadata": {"name": "n"}})).len(),
                "{group}/{kind}"
            );
        }
    }
}
