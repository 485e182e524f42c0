//! NodeRestriction, as kube-apiserver's plugin: what a node (`system:node:<name>`) writes
//! about objects the Node authorizer let it reach is limited to its own — its Node (without
//! `node-restriction.kubernetes.io/` labels or taints it may not set), the status and
//! deletion of pods bound to it, and tokens only for its own pods.

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;

use super::{Attributes, Operation, Plugin};
use crate::{
    model::{ApiError, meta},
    store::{Store, object_key},
};

/// Label prefix only the control plane may set on nodes.
const RESTRICTED_LABEL_PREFIX: &str = "node-restriction.kubernetes.io/";

/// Labels a node may set on itself under `kubernetes.io/`/`k8s.io/` (kube's allowed list).
const ALLOWED_KUBERNETES_LABELS: &[&str] = &[
    "kubernetes.io/hostname",
    "kubernetes.io/arch",
    "kubernetes.io/os",
    "beta.kubernetes.io/arch",
    "beta.kubernetes.io/os",
    "beta.kubernetes.io/instance-type",
    "node.kubernetes.io/instance-type",
    "failure-domain.beta.kubernetes.io/region",
    "failure-domain.beta.kubernetes.io/zone",
    "topology.kubernetes.io/region",
    "topology.kubernetes.io/zone",
    "kubelet.kubernetes.io/",
    "node.kubernetes.io/",
];

/// The NodeRestriction admission plugin.
pub struct NodeRestriction {
    store: Option<Arc<Store>>,
}

impl NodeRestriction {
    /// The plugin, reading the pods tokens are bound to from `store`.
    pub fn new(store: Arc<Store>) -> Self {
        Self { store: Some(store) }
    }
}

/// True if a node may set label `key` on itself.
fn label_allowed(key: &str) -> bool {
    if key.starts_with(RESTRICTED_LABEL_PREFIX) {
        return false;
    }
    let namespace = key.split_once('/').map_or("", |(ns, _)| ns);
    let kubernetes = namespace == "kubernetes.io"
        || namespace.ends_with(".kubernetes.io")
        || namespace == "k8s.io"
        || namespace.ends_with(".k8s.io");
    !kubernetes
        || ALLOWED_KUBERNETES_LABELS
            .iter()
            .any(|allowed| key == *allowed || (allowed.ends_with('/') && key.starts_with(allowed)))
}

fn forbidden(attributes: &Attributes<'_>, why: String) -> ApiError {
    attributes.forbidden(&why)
}

impl NodeRestriction {
    fn node_write(
        attributes: &Attributes<'_>,
        node: &str,
        object: &Value,
        old: Option<&Value>,
    ) -> Result<(), ApiError> {
        let target = if attributes.name.is_empty() {
            meta::name(object)
        } else {
            attributes.name
        };
        if target != node {
            let verb = match attributes.operation {
                Operation::Delete => "delete",
                _ => "modify",
            };
            return Err(forbidden(
                attributes,
                format!("node \"{node}\" is not allowed to {verb} node \"{target}\""),
            ));
        }
        if attributes.operation == Operation::Delete {
            return Ok(());
        }
        let labels = meta::string_map(object, "labels");
        let old_labels = old
            .map(|o| meta::string_map(o, "labels"))
            .unwrap_or_default();
        let mut changed: Vec<&String> = labels
            .iter()
            .filter(|(k, v)| old_labels.get(*k) != Some(*v))
            .map(|(k, _)| k)
            .chain(old_labels.keys().filter(|k| !labels.contains_key(*k)))
            .filter(|k| !label_allowed(k))
            .collect();
        changed.sort();
        changed.dedup();
        if !changed.is_empty() {
            let keys: Vec<&str> = changed.iter().map(|k| k.as_str()).collect();
            let verb = if attributes.operation == Operation::Create {
                "set"
            } else {
                "modify"
            };
            return Err(forbidden(
                attributes,
                format!("is not allowed to {verb} labels: {}", keys.join(", ")),
            ));
        }
        if attributes.operation == Operation::Update
            && let Some(old) = old
            && object.pointer("/spec/taints") != old.pointer("/spec/taints")
        {
            return Err(forbidden(
                attributes,
                "node is not allowed to modify taints".to_owned(),
            ));
        }
        Ok(())
    }

    /// kube's admitPodCreate for nodes: only mirror pods, bound to the node, owned by it,
    /// referencing no other API object (so a node cannot widen what the Node authorizer
    /// lets it read by inventing a pod).
    fn mirror_pod(attributes: &Attributes<'_>, node: &str, object: &Value) -> Result<(), ApiError> {
        let refuse = |why: String| Err(forbidden(attributes, why));
        if !meta::string_map(object, "annotations").contains_key("kubernetes.io/config.mirror") {
            return refuse(format!(
                "pod does not have \"kubernetes.io/config.mirror\" annotation, node \"{node}\" can only create mirror pods"
            ));
        }
        if meta::field_value(object, "spec.nodeName") != node {
            return refuse(format!(
                "node \"{node}\" can only create pods with spec.nodeName set to itself"
            ));
        }
        let owners = object
            .pointer("/metadata/ownerReferences")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        match owners.as_slice() {
            [] => {
                return refuse(format!(
                    "node \"{node}\" can only create pods with an owner reference set to itself"
                ));
            }
            [owner] => {
                let text = |f: &str| owner.get(f).and_then(Value::as_str).unwrap_or_default();
                if text("apiVersion") != "v1"
                    || text("kind") != "Node"
                    || text("name") != node
                    || owner.get("controller").and_then(Value::as_bool) != Some(true)
                {
                    return refuse(format!(
                        "node \"{node}\" can only create pods with a controller owner reference set to itself"
                    ));
                }
            }
            _ => {
                return refuse(format!(
                    "node \"{node}\" can only create pods with a single owner reference set to itself"
                ));
            }
        }
        let pod: k8s_openapi::api::core::v1::Pod = serde_json::from_value(object.clone())
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        let named_account = pod
            .spec
            .as_ref()
            .and_then(|s| {
                s.service_account_name
                    .as_deref()
                    .or(s.service_account.as_deref())
            })
            .is_some_and(|n| !n.is_empty());
        if named_account {
            return refuse(format!(
                "node \"{node}\" can not create pods that reference a service account"
            ));
        }
        let refs = crate::authz::node::References::of(&pod);
        for (kind, found) in [
            ("secrets", !refs.secrets.is_empty()),
            ("configmaps", !refs.config_maps.is_empty()),
            ("persistentvolumeclaims", !refs.claims.is_empty()),
        ] {
            if found {
                return refuse(format!(
                    "node \"{node}\" can not create pods that reference {kind}"
                ));
            }
        }
        Ok(())
    }

    /// A node's Lease: only its own, only in kube-node-lease (kube's admitLease).
    fn lease_write(
        attributes: &Attributes<'_>,
        node: &str,
        object: &Value,
    ) -> Result<(), ApiError> {
        if attributes.namespace != "kube-node-lease" {
            return Err(forbidden(
                attributes,
                "can only access leases in the kube-node-lease namespace".to_owned(),
            ));
        }
        let name = if attributes.name.is_empty() {
            meta::name(object)
        } else {
            attributes.name
        };
        if name != node {
            return Err(forbidden(
                attributes,
                "can only access node lease with the same name as the requesting node".to_owned(),
            ));
        }
        Ok(())
    }

    fn pod_write(
        attributes: &Attributes<'_>,
        node: &str,
        object: &Value,
        old: Option<&Value>,
    ) -> Result<(), ApiError> {
        let pod = old.unwrap_or(object);
        let bound_to = meta::field_value(pod, "spec.nodeName");
        match (attributes.operation, attributes.subresource) {
            (Operation::Create, "") => Self::mirror_pod(attributes, node, object),
            (Operation::Create, "eviction")
            | (Operation::Delete, "")
            | (Operation::Update, "status") => {
                if bound_to != node {
                    let what = match (attributes.operation, attributes.subresource) {
                        (Operation::Update, _) => "update pod status for",
                        (Operation::Delete, _) => "delete",
                        _ => "evict",
                    };
                    return Err(forbidden(
                        attributes,
                        format!(
                            "node \"{node}\" can only {what} pods with spec.nodeName set to itself"
                        ),
                    ));
                }
                Ok(())
            }
            (Operation::Update, "") => Err(forbidden(
                attributes,
                format!("node \"{node}\" can only update pod status"),
            )),
            _ => Ok(()),
        }
    }

    async fn token_request(
        &self,
        attributes: &Attributes<'_>,
        node: &str,
        request: &Value,
    ) -> Result<(), ApiError> {
        let bound = request.pointer("/spec/boundObjectRef");
        let field = |name: &str| {
            bound
                .and_then(|b| b.get(name))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        if field("kind") != "Pod" {
            return Err(forbidden(
                attributes,
                format!("node \"{node}\" can only request tokens bound to pods"),
            ));
        }
        let Some(store) = &self.store else {
            return Ok(());
        };
        let key = object_key("", "pods", attributes.namespace, &field("name"));
        let pod = store.get(&key).await.map_err(|_| {
            forbidden(
                attributes,
                format!("node \"{node}\" can only request tokens bound to its pods"),
            )
        })?;
        if meta::field_value(&pod, "spec.nodeName") != node {
            return Err(forbidden(
                attributes,
                "node requested token bound to a pod scheduled on a different node".to_owned(),
            ));
        }
        let uid = field("uid");
        if !uid.is_empty() && uid != meta::meta_str(&pod, "uid") {
            return Err(forbidden(
                attributes,
                "the UID in the bound object reference does not match the pod's".to_owned(),
            ));
        }
        Ok(())
    }
}

impl NodeRestriction {
    /// A node's write of a PersistentVolume (the Node authorizer allows only its own
    /// local-path volumes): it may only remove finalizers — its agent clears the cleanup
    /// finalizer once the directory is gone — never change the volume's spec, labels or
    /// annotations (a node rewriting a path would mount another node directory).
    fn volume_write(
        attributes: &Attributes<'_>,
        object: &Value,
        old: Option<&Value>,
    ) -> Result<(), ApiError> {
        let Some(old) = old.filter(|_| attributes.operation == Operation::Update) else {
            return Err(attributes.forbidden("node may only update persistentvolumes"));
        };
        let same = |pointer: &str| object.pointer(pointer) == old.pointer(pointer);
        let finalizers = |v: &Value| -> Vec<Value> {
            v.pointer("/metadata/finalizers")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
        };
        let before = finalizers(old);
        let only_removed = finalizers(object).iter().all(|f| before.contains(f));
        let unchanged = ["/spec", "/metadata/labels", "/metadata/annotations"]
            .iter()
            .all(|p| same(p));
        if unchanged && only_removed && attributes.subresource.is_empty() {
            Ok(())
        } else {
            Err(attributes.forbidden("node may only remove finalizers of a persistentvolume"))
        }
    }
}

#[async_trait]
impl Plugin for NodeRestriction {
    fn name(&self) -> &'static str {
        "NodeRestriction"
    }

    async fn validate(
        &self,
        attributes: &Attributes<'_>,
        object: &Value,
        old: Option<&Value>,
        _warnings: &mut Vec<String>,
    ) -> Result<(), ApiError> {
        let Some(node) = attributes.user.node_name() else {
            return Ok(());
        };
        let resource = attributes.resource;
        match (resource.group, resource.plural) {
            ("", "nodes") => Self::node_write(attributes, node, object, old),
            ("", "pods") => Self::pod_write(attributes, node, object, old),
            ("coordination.k8s.io", "leases") => Self::lease_write(attributes, node, object),
            ("", "persistentvolumes") => Self::volume_write(attributes, object, old),
            ("", "serviceaccounts") if attributes.subresource == "token" => {
                self.token_request(attributes, node, object).await
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::model::user::{NODES, UserInfo};

    fn attributes<'a>(
        user: &'a UserInfo,
        plural: &str,
        operation: Operation,
        subresource: &'a str,
        name: &'a str,
    ) -> Attributes<'a> {
        Attributes {
            operation,
            resource: crate::resources::find("", "v1", plural).expect("served"),
            subresource,
            namespace: "",
            name,
            user,
            dry_run: false,
        }
    }

    #[tokio::test]
    async fn a_node_only_clears_finalizers_of_volumes() {
        let node = UserInfo::authenticated("system:node:n1", vec![NODES.into()]);
        let old = json!({"metadata": {"name": "pvc-1", "finalizers": ["skiff.dev/local-path-cleanup"]},
                         "spec": {"hostPath": {"path": "/var/lib/skiff/local-path/pvc-1"}}});
        let mut cleared = old.clone();
        cleared["metadata"]["finalizers"] = json!([]);
        let mut moved = old.clone();
        moved["spec"]["hostPath"]["path"] = json!("/etc");
        let plugin = NodeRestriction { store: None };
        let update = attributes(&node, "persistentvolumes", Operation::Update, "", "pvc-1");
        let mut warnings = Vec::new();
        assert!(
            plugin
                .validate(&update, &cleared, Some(&old), &mut warnings)
                .await
                .is_ok()
        );
        assert!(
            plugin
                .validate(&update, &moved, Some(&old), &mut warnings)
                .await
                .is_err()
        );
        let delete = attributes(&node, "persistentvolumes", Operation::Delete, "", "pvc-1");
        assert!(
            plugin
                .validate(&delete, &old, Some(&old), &mut warnings)
                .await
                .is_err()
        );
    }

    #[tokio::test]
    async fn a_node_writes_only_its_own_node_and_labels() {
        let node = UserInfo::authenticated("system:node:n1", vec![NODES.into()]);
        let mut warnings = Vec::new();
        let other = json!({"metadata": {"name": "n2"}});
        let refused = NodeRestriction { store: None }
            .validate(
                &attributes(&node, "nodes", Operation::Delete, "", "n2"),
                &other,
                Some(&other),
                &mut warnings,
            )
            .await
            .expect_err("another node");
        assert_eq!(refused.code, 403);
        assert!(
            refused
                .message
                .contains("is not allowed to delete node \"n2\"")
        );
        let own = json!({"metadata": {"name": "n1", "labels": {"kubernetes.io/hostname": "n1"}}});
        NodeRestriction { store: None }
            .validate(
                &attributes(&node, "nodes", Operation::Create, "", "n1"),
                &own,
                None,
                &mut warnings,
            )
            .await
            .expect("own node");
        let labelled = json!({"metadata": {"name": "n1",
            "labels": {"node-restriction.kubernetes.io/pool": "x"}}});
        let refused = NodeRestriction { store: None }
            .validate(
                &attributes(&node, "nodes", Operation::Update, "", "n1"),
                &labelled,
                Some(&own),
                &mut warnings,
            )
            .await
            .expect_err("restricted label");
        assert!(
            refused
                .message
                .contains("node-restriction.kubernetes.io/pool")
        );
    }

    #[tokio::test]
    async fn mirror_pods_reference_nothing_and_leases_are_the_nodes_own() {
        let node = UserInfo::authenticated("system:node:n1", vec![NODES.into()]);
        let mut warnings = Vec::new();
        let mirror = |spec: serde_json::Value| {
            json!({"metadata": {"name": "m", "annotations": {"kubernetes.io/config.mirror": "x"},
                "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": "n1", "uid": "u", "controller": true}]},
                "spec": spec})
        };
        let plain = mirror(json!({"nodeName": "n1", "containers": [{"name": "c", "image": "i"}]}));
        NodeRestriction { store: None }
            .validate(
                &attributes(&node, "pods", Operation::Create, "", "m"),
                &plain,
                None,
                &mut warnings,
            )
            .await
            .expect("a plain mirror pod");
        for (spec, why) in [
            (
                json!({"nodeName": "n1", "serviceAccountName": "admin", "containers": [{"name": "c", "image": "i"}]}),
                "reference a service account",
            ),
            (
                json!({"nodeName": "n1", "containers": [{"name": "c", "image": "i",
                "env": [{"name": "A", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]}]}),
                "reference secrets",
            ),
            (
                json!({"nodeName": "n1", "containers": [{"name": "c", "image": "i"}],
                "volumes": [{"name": "v", "configMap": {"name": "c"}}]}),
                "reference configmaps",
            ),
        ] {
            let refused = NodeRestriction { store: None }
                .validate(
                    &attributes(&node, "pods", Operation::Create, "", "m"),
                    &mirror(spec),
                    None,
                    &mut warnings,
                )
                .await
                .expect_err(why);
            assert!(refused.message.contains(why), "{}", refused.message);
        }
        let leases = crate::resources::find("coordination.k8s.io", "v1", "leases").expect("leases");
        let lease_attributes = |name: &'static str| Attributes {
            operation: Operation::Create,
            resource: leases,
            subresource: "",
            namespace: "kube-node-lease",
            name,
            user: &node,
            dry_run: false,
        };
        let other = json!({"metadata": {"name": "n3"}});
        assert!(
            NodeRestriction { store: None }
                .validate(&lease_attributes("n3"), &other, None, &mut warnings)
                .await
                .is_err(),
            "another node's lease"
        );
        let own = json!({"metadata": {"name": "n1"}});
        NodeRestriction { store: None }
            .validate(&lease_attributes("n1"), &own, None, &mut warnings)
            .await
            .expect("its own lease");
    }

    #[tokio::test]
    async fn a_node_touches_only_pods_bound_to_it() {
        let node = UserInfo::authenticated("system:node:n1", vec![NODES.into()]);
        let mut warnings = Vec::new();
        let theirs = json!({"metadata": {"name": "p"}, "spec": {"nodeName": "n2"}});
        let refused = NodeRestriction { store: None }
            .validate(
                &attributes(&node, "pods", Operation::Update, "status", "p"),
                &theirs,
                Some(&theirs),
                &mut warnings,
            )
            .await
            .expect_err("not its pod");
        assert!(refused.message.contains("can only update pod status"));
        let mine = json!({"metadata": {"name": "p"}, "spec": {"nodeName": "n1"}});
        NodeRestriction { store: None }
            .validate(
                &attributes(&node, "pods", Operation::Delete, "", "p"),
                &mine,
                Some(&mine),
                &mut warnings,
            )
            .await
            .expect("its pod");
        let created = NodeRestriction { store: None }
            .validate(
                &attributes(&node, "pods", Operation::Create, "", "p"),
                &mine,
                None,
                &mut warnings,
            )
            .await
            .expect_err("not a mirror pod");
        assert!(created.message.contains("can only create mirror pods"));
    }
}
