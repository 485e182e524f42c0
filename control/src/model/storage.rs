//! PersistentVolume/Claim rules without I/O, shared by the PV controller, the scheduler and
//! admission: the annotations and finalizers kube's volume machinery writes, which class is
//! the default, whether a volume can serve a claim (kube's `findMatchingVolume`), whether a
//! volume's node affinity admits a node, and the volume the built-in local-path
//! provisioner makes for a claim.

use std::collections::BTreeMap;

use k8s_openapi::{
    api::{
        core::v1::{
            HostPathVolumeSource, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm,
            ObjectReference, PersistentVolume, PersistentVolumeClaim, PersistentVolumeSpec,
            VolumeNodeAffinity,
        },
        storage::v1::StorageClass,
    },
    apimachinery::pkg::{api::resource::Quantity, apis::meta::v1::ObjectMeta},
};

use super::selector::LabelSelector;

/// The built-in provisioner's name. Not `rancher.io/local-path`: a user who installs
/// rancher's provisioner beside Skiff's gets a class of its own, and the two never act on
/// the same claims.
pub const PROVISIONER: &str = "skiff.dev/local-path";
/// The default StorageClass made at start.
pub const DEFAULT_CLASS: &str = "local-path";
/// The annotation that marks the default StorageClass.
pub const IS_DEFAULT_CLASS: &str = "storageclass.kubernetes.io/is-default-class";
/// The beta spelling of [`IS_DEFAULT_CLASS`], still honoured by kube.
pub const IS_DEFAULT_CLASS_BETA: &str = "storageclass.beta.kubernetes.io/is-default-class";
/// The node the scheduler chose for a WaitForFirstConsumer claim's first pod.
pub const SELECTED_NODE: &str = "volume.kubernetes.io/selected-node";
/// Set on a claim once the controller has finished binding it.
pub const BIND_COMPLETED: &str = "pv.kubernetes.io/bind-completed";
/// Set on a claim or volume whose binding the controller made (not the user).
pub const BOUND_BY_CONTROLLER: &str = "pv.kubernetes.io/bound-by-controller";
/// Which provisioner made a volume.
pub const PROVISIONED_BY: &str = "pv.kubernetes.io/provisioned-by";
/// Which provisioner is to make a claim's volume (set on the claim).
pub const STORAGE_PROVISIONER: &str = "volume.kubernetes.io/storage-provisioner";
/// The beta spelling of [`STORAGE_PROVISIONER`], which older tools read.
pub const STORAGE_PROVISIONER_BETA: &str = "volume.beta.kubernetes.io/storage-provisioner";
/// kube's finalizer that keeps a claim used by a pod from going away.
pub const PVC_PROTECTION: &str = "kubernetes.io/pvc-protection";
/// The finalizer that keeps a provisioned volume until its node removed its directory.
pub const LOCAL_PATH_CLEANUP: &str = "skiff.dev/local-path-cleanup";
/// The label naming the node a provisioned volume lives on (the node's agent watches it).
pub const LOCAL_PATH_NODE: &str = "skiff.dev/local-path-node";
/// The Node annotation where an agent publishes its local-path directory.
pub const LOCAL_PATH_DIR: &str = "skiff.dev/local-path-dir";
/// The local-path directory of a node that publishes none.
pub const DEFAULT_LOCAL_PATH_DIR: &str = "/var/lib/skiff/local-path";
/// The node label local-path volumes are pinned by.
pub const HOSTNAME_LABEL: &str = "kubernetes.io/hostname";

/// True if `class` is marked as the default.
pub fn is_default_class(class: &StorageClass) -> bool {
    let annotations = class.metadata.annotations.as_ref();
    [IS_DEFAULT_CLASS, IS_DEFAULT_CLASS_BETA]
        .iter()
        .any(|key| annotations.and_then(|a| a.get(*key)).map(String::as_str) == Some("true"))
}

/// kube's `GetDefaultClass`: among the default classes, the newest (then the first by name).
pub fn default_class<'a>(
    classes: impl IntoIterator<Item = &'a StorageClass>,
) -> Option<&'a StorageClass> {
    classes
        .into_iter()
        .filter(|c| is_default_class(c))
        .max_by(|a, b| {
            let created = |c: &StorageClass| c.metadata.creation_timestamp.as_ref().map(|t| t.0);
            created(a)
                .cmp(&created(b))
                .then_with(|| b.metadata.name.cmp(&a.metadata.name))
        })
}

/// The StorageClass YAML of the built-in default class.
pub fn default_class_object() -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {
            "name": DEFAULT_CLASS,
            "annotations": {IS_DEFAULT_CLASS: "true"},
        },
        "provisioner": PROVISIONER,
        "reclaimPolicy": "Delete",
        "volumeBindingMode": "WaitForFirstConsumer",
    })
}

/// True if the class waits for the first pod before binding (WaitForFirstConsumer).
pub fn waits_for_consumer(class: Option<&StorageClass>) -> bool {
    class.and_then(|c| c.volume_binding_mode.as_deref()) == Some("WaitForFirstConsumer")
}

/// The class a claim names ("" for none).
pub fn claim_class(claim: &PersistentVolumeClaim) -> &str {
    claim
        .spec
        .as_ref()
        .and_then(|s| s.storage_class_name.as_deref())
        .unwrap_or_default()
}

/// The class a volume belongs to ("" for none).
pub fn volume_class(volume: &PersistentVolume) -> &str {
    volume
        .spec
        .as_ref()
        .and_then(|s| s.storage_class_name.as_deref())
        .unwrap_or_default()
}

/// The volume a claim is bound or pre-bound to ("" for none).
pub fn claim_volume(claim: &PersistentVolumeClaim) -> &str {
    claim
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.as_deref())
        .unwrap_or_default()
}

/// The storage a claim requests, in bytes (0 when absent or unreadable).
pub fn requested_bytes(claim: &PersistentVolumeClaim) -> i128 {
    claim
        .spec
        .as_ref()
        .and_then(|s| s.resources.as_ref())
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"))
        .and_then(|q| skiff_quantity::bytes(&q.0))
        .map_or(0, i128::from)
}

/// The storage a volume offers, in bytes (0 when absent or unreadable).
pub fn capacity_bytes(volume: &PersistentVolume) -> i128 {
    volume
        .spec
        .as_ref()
        .and_then(|s| s.capacity.as_ref())
        .and_then(|c| c.get("storage"))
        .and_then(|q| skiff_quantity::bytes(&q.0))
        .map_or(0, i128::from)
}

/// True if `claim` is the claim `volume`'s claimRef names (its uid too, when the ref has one).
pub fn claim_ref_names(volume: &PersistentVolume, claim: &PersistentVolumeClaim) -> bool {
    let Some(reference) = volume.spec.as_ref().and_then(|s| s.claim_ref.as_ref()) else {
        return false;
    };
    reference.name == claim.metadata.name
        && reference.namespace == claim.metadata.namespace
        && reference
            .uid
            .as_deref()
            .filter(|u| !u.is_empty())
            .is_none_or(|u| claim.metadata.uid.as_deref() == Some(u))
}

/// kube's `NodeSelectorRequirement` against one value (`None`: the node lacks the key).
pub fn node_requirement_matches(req: &NodeSelectorRequirement, value: Option<&String>) -> bool {
    let values = req.values.as_deref().unwrap_or_default();
    match req.operator.as_str() {
        "In" => value.is_some_and(|v| values.contains(v)),
        "NotIn" => value.is_none_or(|v| !values.contains(v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" | "Lt" => {
            let (Some(v), Some(bound)) = (
                value.and_then(|v| v.parse::<i64>().ok()),
                values.first().and_then(|b| b.parse::<i64>().ok()),
            ) else {
                return false;
            };
            if req.operator == "Gt" {
                v > bound
            } else {
                v < bound
            }
        }
        _ => false,
    }
}

/// True if some term admits the node `name` with `labels` (terms are ORed, a term's
/// requirements ANDed; `matchFields` know `metadata.name`).
pub fn node_terms_match(
    terms: &[NodeSelectorTerm],
    name: &str,
    labels: &BTreeMap<String, String>,
) -> bool {
    let name = name.to_owned();
    terms.iter().any(|term| {
        term.match_expressions
            .iter()
            .flatten()
            .all(|req| node_requirement_matches(req, labels.get(&req.key)))
            && term
                .match_fields
                .iter()
                .flatten()
                .all(|req| req.key == "metadata.name" && node_requirement_matches(req, Some(&name)))
    })
}

/// True if `volume` can be used on the node `name` with `labels` (a volume without node
/// affinity is reachable everywhere).
pub fn volume_allows_node(
    volume: &PersistentVolume,
    name: &str,
    labels: &BTreeMap<String, String>,
) -> bool {
    volume
        .spec
        .as_ref()
        .and_then(|s| s.node_affinity.as_ref())
        .and_then(|a| a.required.as_ref())
        .is_none_or(|required| node_terms_match(&required.node_selector_terms, name, labels))
}

/// Why `volume` cannot serve `claim`, or `Ok` if it can (kube's `checkVolumeSatisfyClaim`
/// plus the availability rules of `findMatchingVolume`). `node` is the node a
/// WaitForFirstConsumer claim's pod goes to (name and labels), checked against the
/// volume's node affinity.
pub fn check_match(
    volume: &PersistentVolume,
    claim: &PersistentVolumeClaim,
    node: Option<(&str, &BTreeMap<String, String>)>,
) -> Result<(), &'static str> {
    let Some(spec) = &volume.spec else {
        return Err("volume has no spec");
    };
    if volume.metadata.deletion_timestamp.is_some() {
        return Err("volume is being deleted");
    }
    let pre_bound = claim_ref_names(volume, claim);
    if spec.claim_ref.is_some() && !pre_bound {
        return Err("volume is bound to another claim");
    }
    let phase = volume.status.as_ref().and_then(|s| s.phase.as_deref());
    if matches!(phase, Some("Released" | "Failed")) && !pre_bound {
        return Err("volume is not available");
    }
    let wanted = claim_volume(claim);
    if !wanted.is_empty() && volume.metadata.name.as_deref() != Some(wanted) {
        return Err("claim asks for another volume");
    }
    if volume_class(volume) != claim_class(claim) {
        return Err("storage class differs");
    }
    let claim_spec = claim.spec.clone().unwrap_or_default();
    let claim_mode = claim_spec.volume_mode.as_deref().unwrap_or("Filesystem");
    if spec.volume_mode.as_deref().unwrap_or("Filesystem") != claim_mode {
        return Err("volume mode differs");
    }
    let offered = spec.access_modes.as_deref().unwrap_or_default();
    if !claim_spec
        .access_modes
        .iter()
        .flatten()
        .all(|m| offered.contains(m))
    {
        return Err("access modes are not offered");
    }
    if capacity_bytes(volume) < requested_bytes(claim) {
        return Err("capacity is smaller than the request");
    }
    if let Some(selector) = &claim_spec.selector {
        let labels = volume.metadata.labels.clone().unwrap_or_default();
        let matches = LabelSelector::from_api(selector).is_ok_and(|s| s.matches(&labels));
        if !matches {
            return Err("selector does not match");
        }
    }
    if let Some((name, labels)) = node
        && !volume_allows_node(volume, name, labels)
    {
        return Err("node affinity conflict");
    }
    Ok(())
}

/// The volume to bind `claim` to among `volumes`: one pre-bound to it if any, else the
/// smallest that matches (kube's `findMatchingVolume`).
pub fn find_volume<'a>(
    claim: &PersistentVolumeClaim,
    volumes: impl IntoIterator<Item = &'a PersistentVolume>,
    node: Option<(&str, &BTreeMap<String, String>)>,
) -> Option<&'a PersistentVolume> {
    let mut best: Option<&PersistentVolume> = None;
    for volume in volumes {
        if check_match(volume, claim, node).is_err() {
            continue;
        }
        if claim_ref_names(volume, claim) {
            return Some(volume);
        }
        if best.is_none_or(|b| capacity_bytes(volume) < capacity_bytes(b)) {
            best = Some(volume);
        }
    }
    best
}

/// kube's name of a provisioned volume: `pvc-<claim uid>`.
pub fn provisioned_name(claim: &PersistentVolumeClaim) -> String {
    format!("pvc-{}", claim.metadata.uid.as_deref().unwrap_or_default())
}

/// A reference to `claim`, as a volume's claimRef holds it.
pub fn claim_reference(claim: &PersistentVolumeClaim) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".to_owned()),
        kind: Some("PersistentVolumeClaim".to_owned()),
        name: claim.metadata.name.clone(),
        namespace: claim.metadata.namespace.clone(),
        uid: claim.metadata.uid.clone(),
        resource_version: claim.metadata.resource_version.clone(),
        ..ObjectReference::default()
    }
}

/// The volume the local-path provisioner makes for `claim` of `class` on `node` (whose
/// `kubernetes.io/hostname` label is `hostname`), in the node's local-path directory `dir`:
/// a hostPath directory `<dir>/<volume name>` (created by the node's agent, 0777 as
/// rancher's local-path makes it), pinned to the node, of the requested capacity, pre-bound
/// to the claim, with the class's reclaim policy; the cleanup finalizer keeps it until the
/// node has removed the directory.
pub fn local_path_volume(
    claim: &PersistentVolumeClaim,
    class: &StorageClass,
    node: &str,
    hostname: &str,
    dir: &str,
) -> PersistentVolume {
    let name = provisioned_name(claim);
    let spec = claim.spec.clone().unwrap_or_default();
    let request = spec
        .resources
        .as_ref()
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"))
        .cloned()
        .unwrap_or_else(|| Quantity("0".to_owned()));
    let access_modes = spec
        .access_modes
        .clone()
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| vec!["ReadWriteOnce".to_owned()]);
    let path = format!("{}/{name}", dir.trim_end_matches('/'));
    PersistentVolume {
        metadata: ObjectMeta {
            name: Some(name),
            labels: Some(BTreeMap::from([(
                LOCAL_PATH_NODE.to_owned(),
                node.to_owned(),
            )])),
            annotations: Some(BTreeMap::from([(
                PROVISIONED_BY.to_owned(),
                PROVISIONER.to_owned(),
            )])),
            finalizers: Some(vec![LOCAL_PATH_CLEANUP.to_owned()]),
            ..ObjectMeta::default()
        },
        spec: Some(PersistentVolumeSpec {
            access_modes: Some(access_modes),
            capacity: Some(BTreeMap::from([("storage".to_owned(), request)])),
            claim_ref: Some(claim_reference(claim)),
            host_path: Some(HostPathVolumeSource {
                path,
                type_: Some("DirectoryOrCreate".to_owned()),
            }),
            node_affinity: Some(VolumeNodeAffinity {
                required: Some(NodeSelector {
                    node_selector_terms: vec![NodeSelectorTerm {
                        match_expressions: Some(vec![NodeSelectorRequirement {
                            key: HOSTNAME_LABEL.to_owned(),
                            operator: "In".to_owned(),
                            values: Some(vec![hostname.to_owned()]),
                        }]),
                        match_fields: None,
                    }],
                }),
            }),
            persistent_volume_reclaim_policy: Some(
                class
                    .reclaim_policy
                    .clone()
                    .unwrap_or_else(|| "Delete".to_owned()),
            ),
            storage_class_name: class.metadata.name.clone(),
            volume_mode: Some(spec.volume_mode.unwrap_or_else(|| "Filesystem".to_owned())),
            ..PersistentVolumeSpec::default()
        }),
        status: None,
    }
}

/// True if a pod's spec (as JSON or typed) uses claim `name` in a volume.
pub fn pod_uses_claim(pod: &k8s_openapi::api::core::v1::Pod, name: &str) -> bool {
    let pod_name = pod.metadata.name.as_deref().unwrap_or_default();
    pod.spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
        .any(|v| {
            v.persistent_volume_claim
                .as_ref()
                .is_some_and(|c| c.claim_name == name)
                || (v.ephemeral.is_some() && format!("{pod_name}-{}", v.name) == name)
        })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn claim(spec: serde_json::Value) -> PersistentVolumeClaim {
        serde_json::from_value(json!({
            "metadata": {"name": "data", "namespace": "ns", "uid": "u1"},
            "spec": spec,
        }))
        .expect("claim")
    }

    fn volume(name: &str, spec: serde_json::Value) -> PersistentVolume {
        serde_json::from_value(json!({
            "metadata": {"name": name, "labels": {"tier": "fast"}},
            "spec": spec,
            "status": {"phase": "Available"},
        }))
        .expect("volume")
    }

    fn rwo(size: &str) -> serde_json::Value {
        json!({"accessModes": ["ReadWriteOnce"], "storageClassName": "manual",
               "resources": {"requests": {"storage": size}}})
    }

    fn offer(size: &str) -> serde_json::Value {
        json!({"accessModes": ["ReadWriteOnce", "ReadOnlyMany"], "storageClassName": "manual",
               "capacity": {"storage": size}, "hostPath": {"path": "/srv"}})
    }

    #[test]
    fn the_smallest_volume_that_fits_is_chosen() {
        let c = claim(rwo("1Gi"));
        let small = volume("small", offer("512Mi"));
        let big = volume("big", offer("10Gi"));
        let right = volume("right", offer("2Gi"));
        let found = find_volume(&c, [&small, &big, &right], None);
        assert_eq!(
            found.and_then(|v| v.metadata.name.as_deref()),
            Some("right")
        );
        assert_eq!(
            check_match(&small, &c, None),
            Err("capacity is smaller than the request")
        );
    }

    #[test]
    fn class_modes_selector_and_claim_refs_are_respected() {
        let mut other_class = offer("1Gi");
        other_class["storageClassName"] = json!("other");
        assert_eq!(
            check_match(&volume("v", other_class), &claim(rwo("1Gi")), None),
            Err("storage class differs")
        );
        let mut rwx = rwo("1Gi");
        rwx["accessModes"] = json!(["ReadWriteMany"]);
        assert_eq!(
            check_match(&volume("v", offer("1Gi")), &claim(rwx), None),
            Err("access modes are not offered")
        );
        let mut selecting = rwo("1Gi");
        selecting["selector"] = json!({"matchLabels": {"tier": "slow"}});
        assert_eq!(
            check_match(&volume("v", offer("1Gi")), &claim(selecting), None),
            Err("selector does not match")
        );
        let mut taken = offer("1Gi");
        taken["claimRef"] = json!({"namespace": "ns", "name": "other"});
        assert_eq!(
            check_match(&volume("v", taken), &claim(rwo("1Gi")), None),
            Err("volume is bound to another claim")
        );
        // A volume pre-bound to the claim wins over a smaller free one.
        let mut mine = offer("5Gi");
        mine["claimRef"] = json!({"namespace": "ns", "name": "data"});
        let free = volume("free", offer("1Gi"));
        let pre = volume("pre", mine);
        let c = claim(rwo("1Gi"));
        assert_eq!(
            find_volume(&c, [&free, &pre], None).and_then(|v| v.metadata.name.as_deref()),
            Some("pre")
        );
        // A claim naming a volume takes only that one.
        let mut named = rwo("1Gi");
        named["volumeName"] = json!("pre");
        assert_eq!(
            find_volume(&claim(named), [&free], None).map(|v| v.metadata.name.clone()),
            None
        );
    }

    #[test]
    fn node_affinity_pins_a_volume_to_its_node() {
        let mut pinned = offer("1Gi");
        pinned["nodeAffinity"] = json!({"required": {"nodeSelectorTerms": [{"matchExpressions": [
            {"key": HOSTNAME_LABEL, "operator": "In", "values": ["n1"]}]}]}});
        let v = volume("v", pinned);
        let on = |name: &str| BTreeMap::from([(HOSTNAME_LABEL.to_owned(), name.to_owned())]);
        assert!(volume_allows_node(&v, "n1", &on("n1")));
        assert!(!volume_allows_node(&v, "n2", &on("n2")));
        assert_eq!(
            check_match(&v, &claim(rwo("1Gi")), Some(("n2", &on("n2")))),
            Err("node affinity conflict")
        );
        assert!(volume_allows_node(
            &volume("free", offer("1Gi")),
            "n2",
            &on("n2")
        ));
    }

    #[test]
    fn provisioned_volumes_are_pinned_prebound_and_sized_as_asked() {
        let c = claim(
            json!({"resources": {"requests": {"storage": "3Gi"}}, "storageClassName": "local-path"}),
        );
        let class: StorageClass = serde_json::from_value(default_class_object()).expect("class");
        let v = local_path_volume(&c, &class, "node-1", "node-1", "/var/lib/skiff/local-path/");
        let spec = v.spec.clone().expect("spec");
        assert_eq!(v.metadata.name.as_deref(), Some("pvc-u1"));
        assert_eq!(
            spec.host_path.map(|h| h.path).as_deref(),
            Some("/var/lib/skiff/local-path/pvc-u1")
        );
        assert_eq!(
            spec.persistent_volume_reclaim_policy.as_deref(),
            Some("Delete")
        );
        assert_eq!(spec.access_modes, Some(vec!["ReadWriteOnce".to_owned()]));
        assert_eq!(capacity_bytes(&v), 3 << 30);
        assert!(claim_ref_names(&v, &c));
        let labels = BTreeMap::from([(HOSTNAME_LABEL.to_owned(), "node-1".to_owned())]);
        assert!(volume_allows_node(&v, "node-1", &labels));
        assert_eq!(check_match(&v, &c, Some(("node-1", &labels))), Ok(()));
        assert!(waits_for_consumer(Some(&class)));
        assert!(is_default_class(&class));
    }

    #[test]
    fn the_newest_default_class_is_the_default() {
        let class = |name: &str, default: bool, created: &str| -> StorageClass {
            serde_json::from_value(json!({
                "metadata": {"name": name, "creationTimestamp": created,
                             "annotations": {IS_DEFAULT_CLASS: if default {"true"} else {"false"}}},
                "provisioner": "p",
            }))
            .expect("class")
        };
        let classes = [
            class("old", true, "2024-01-01T00:00:00Z"),
            class("new", true, "2025-01-01T00:00:00Z"),
            class("newest-not-default", false, "2026-01-01T00:00:00Z"),
        ];
        assert_eq!(
            default_class(&classes).and_then(|c| c.metadata.name.as_deref()),
            Some("new")
        );
        assert!(default_class(&classes[2..]).is_none());
    }
}
