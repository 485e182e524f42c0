//! The scheduler's VolumeBinding, simplified from kube-scheduler's plugin: a pod's claims
//! must exist and not be going away; a bound claim's volume pins the pod to the nodes its
//! node affinity admits (so a pod rescheduled after deletion goes back to its data); an
//! unbound claim of a WaitForFirstConsumer class is bound for the node the pod goes to
//! (the scheduler writes `volume.kubernetes.io/selected-node` on the claim and waits for
//! the PV controller before it binds the pod); an unbound claim of any other class keeps
//! the pod Pending until the PV controller binds it.

use std::collections::BTreeMap;

use k8s_openapi::api::{
    core::v1::{PersistentVolume, PersistentVolumeClaim, Pod},
    storage::v1::StorageClass,
};
use kube::runtime::watcher::Event;

use super::cache::NodeInfo;
use crate::model::storage::{self, PROVISIONER};

/// kube-scheduler's reason for a node a bound volume cannot reach.
pub const AFFINITY_CONFLICT: &str = "node(s) had volume node affinity conflict";
/// kube-scheduler's reason for a node no free volume can serve.
pub const NO_VOLUME: &str = "node(s) didn't find available persistent volumes to bind";
/// kube-scheduler's reason when a claim is left for the PV controller to bind.
pub const UNBOUND_IMMEDIATE: &str = "pod has unbound immediate PersistentVolumeClaims";

/// What the scheduler knows of claims, volumes and classes (from watches).
#[derive(Debug, Default)]
pub struct VolumeCache {
    /// Claims by (namespace, name).
    pub claims: BTreeMap<(String, String), PersistentVolumeClaim>,
    /// Volumes by name.
    pub volumes: BTreeMap<String, PersistentVolume>,
    /// StorageClasses by name.
    pub classes: BTreeMap<String, StorageClass>,
}

/// Apply one watch event to a cache keyed by `key`; true if something changed.
pub fn apply<K: Keyed>(map: &mut BTreeMap<K::Key, K>, event: Event<K>) -> bool {
    match event {
        Event::Apply(object) | Event::InitApply(object) => {
            map.insert(object.key(), object);
            true
        }
        Event::Delete(object) => map.remove(&object.key()).is_some(),
        Event::Init => {
            map.clear();
            true
        }
        Event::InitDone => true,
    }
}

/// Objects kept in a [`VolumeCache`] map.
pub trait Keyed {
    /// The map key.
    type Key: Ord;
    /// This object's key.
    fn key(&self) -> Self::Key;
}

impl Keyed for PersistentVolumeClaim {
    type Key = (String, String);
    fn key(&self) -> Self::Key {
        (
            self.metadata.namespace.clone().unwrap_or_default(),
            self.metadata.name.clone().unwrap_or_default(),
        )
    }
}

impl Keyed for PersistentVolume {
    type Key = String;
    fn key(&self) -> Self::Key {
        self.metadata.name.clone().unwrap_or_default()
    }
}

impl Keyed for StorageClass {
    type Key = String;
    fn key(&self) -> Self::Key {
        self.metadata.name.clone().unwrap_or_default()
    }
}

/// A pod's claims as they stand for this scheduling attempt.
#[derive(Debug, Default, Clone)]
pub struct PodVolumes {
    /// Volumes the pod's bound claims use.
    pub bound: Vec<PersistentVolume>,
    /// Unbound claims to bind on the chosen node, with the free volumes that could serve
    /// them (empty when the class provisions: any node will do).
    pub delayed: Vec<(PersistentVolumeClaim, Option<Vec<PersistentVolume>>)>,
    /// Some claim is left for the PV controller (not WaitForFirstConsumer).
    pub unbound_immediate: bool,
}

impl PodVolumes {
    /// True if the pod has claims the scheduler must bind before binding the pod.
    pub fn needs_binding(&self) -> bool {
        !self.delayed.is_empty()
    }

    /// The (namespace, name) of every delayed claim.
    pub fn delayed_claims(&self) -> Vec<(String, String)> {
        self.delayed.iter().map(|(c, _)| c.key()).collect()
    }
}

/// The claims `pod` names in its volumes.
fn claim_names(pod: &Pod) -> Vec<String> {
    let pod_name = pod.metadata.name.clone().unwrap_or_default();
    pod.spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
        .filter_map(|v| {
            if let Some(c) = &v.persistent_volume_claim {
                Some(c.claim_name.clone())
            } else {
                v.ephemeral
                    .as_ref()
                    .map(|_| format!("{pod_name}-{}", v.name))
            }
        })
        .collect()
}

/// kube's PreFilter: the state of `pod`'s claims, or why no node can take it (the message
/// kube-scheduler gives, e.g. `persistentvolumeclaim "data" not found`).
pub fn pre_filter(pod: &Pod, cache: &VolumeCache) -> Result<PodVolumes, String> {
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let mut state = PodVolumes::default();
    for name in claim_names(pod) {
        let Some(claim) = cache.claims.get(&(namespace.clone(), name.clone())) else {
            return Err(format!("persistentvolumeclaim \"{name}\" not found"));
        };
        if claim.metadata.deletion_timestamp.is_some() {
            return Err(format!("persistentvolumeclaim \"{name}\" is being deleted"));
        }
        let volume_name = storage::claim_volume(claim);
        if !volume_name.is_empty() {
            match cache.volumes.get(volume_name) {
                Some(volume) => state.bound.push(volume.clone()),
                None => {
                    return Err(format!(
                        "persistentvolume \"{volume_name}\" of persistentvolumeclaim \"{name}\" not found"
                    ));
                }
            }
            continue;
        }
        let class = cache.classes.get(storage::claim_class(claim));
        if !storage::waits_for_consumer(class) {
            state.unbound_immediate = true;
            continue;
        }
        let provisions = class.is_some_and(|c| c.provisioner == PROVISIONER);
        let candidates = (!provisions).then(|| {
            cache
                .volumes
                .values()
                .filter(|v| storage::check_match(v, claim, None).is_ok())
                .cloned()
                .collect()
        });
        state.delayed.push((claim.clone(), candidates));
    }
    Ok(state)
}

/// kube's Filter: why `node` cannot take a pod whose claims are `state` (empty: it can).
pub fn filter(state: &PodVolumes, node: &NodeInfo) -> Vec<String> {
    let mut reasons = Vec::new();
    if state.unbound_immediate {
        reasons.push(UNBOUND_IMMEDIATE.to_owned());
        return reasons;
    }
    if state
        .bound
        .iter()
        .any(|v| !storage::volume_allows_node(v, &node.name, &node.labels))
    {
        reasons.push(AFFINITY_CONFLICT.to_owned());
    }
    let unserved = state.delayed.iter().any(|(claim, candidates)| {
        candidates.as_ref().is_some_and(|volumes| {
            !volumes
                .iter()
                .any(|v| storage::check_match(v, claim, Some((&node.name, &node.labels))).is_ok())
        })
    });
    if unserved {
        reasons.push(NO_VOLUME.to_owned());
    }
    reasons
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn pod(claim: &str) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "ns"},
            "spec": {"containers": [{"name": "c"}],
                     "volumes": [{"name": "v", "persistentVolumeClaim": {"claimName": claim}}]},
        }))
        .expect("pod")
    }

    fn node(name: &str) -> NodeInfo {
        NodeInfo {
            name: name.to_owned(),
            labels: BTreeMap::from([(storage::HOSTNAME_LABEL.to_owned(), name.to_owned())]),
            ..NodeInfo::default()
        }
    }

    fn cache(class_mode: &str, claim: serde_json::Value) -> VolumeCache {
        let mut class = storage::default_class_object();
        class["volumeBindingMode"] = json!(class_mode);
        let mut object = json!({
            "metadata": {"name": "data", "namespace": "ns", "uid": "u1"},
            "spec": {"storageClassName": "local-path", "accessModes": ["ReadWriteOnce"],
                     "resources": {"requests": {"storage": "1Gi"}}},
        });
        json_patch::merge(&mut object, &claim);
        let claim: PersistentVolumeClaim = serde_json::from_value(object).expect("claim");
        VolumeCache {
            claims: BTreeMap::from([(claim.key(), claim)]),
            volumes: BTreeMap::new(),
            classes: BTreeMap::from([(
                "local-path".to_owned(),
                serde_json::from_value(class).expect("class"),
            )]),
        }
    }

    #[test]
    fn a_missing_claim_stops_the_pod_with_kubes_words() {
        let c = cache("WaitForFirstConsumer", json!({}));
        assert_eq!(
            pre_filter(&pod("nope"), &c).map(|_| ()),
            Err("persistentvolumeclaim \"nope\" not found".to_owned())
        );
    }

    #[test]
    fn a_bound_volume_pins_the_pod_to_its_node() {
        let mut c = cache(
            "WaitForFirstConsumer",
            json!({"spec": {"volumeName": "pvc-u1"}}),
        );
        let claim = c.claims.values().next().cloned().expect("claim");
        let class: StorageClass =
            serde_json::from_value(storage::default_class_object()).expect("class");
        let volume = storage::local_path_volume(&claim, &class, "n2", "n2", "/d");
        c.volumes.insert("pvc-u1".to_owned(), volume);
        let state = pre_filter(&pod("data"), &c).expect("state");
        assert!(filter(&state, &node("n2")).is_empty());
        assert_eq!(filter(&state, &node("n1")), [AFFINITY_CONFLICT]);
        assert!(!state.needs_binding());
    }

    #[test]
    fn waiting_claims_are_bound_on_the_chosen_node_and_immediate_ones_wait() {
        let c = cache("WaitForFirstConsumer", json!({}));
        let state = pre_filter(&pod("data"), &c).expect("state");
        assert!(filter(&state, &node("n1")).is_empty());
        assert_eq!(
            state.delayed_claims(),
            [("ns".to_owned(), "data".to_owned())]
        );
        let c = cache("Immediate", json!({}));
        let state = pre_filter(&pod("data"), &c).expect("state");
        assert_eq!(filter(&state, &node("n1")), [UNBOUND_IMMEDIATE]);
    }

    #[test]
    fn a_waiting_claim_of_a_class_without_provisioner_needs_a_volume_on_the_node() {
        let mut c = cache("WaitForFirstConsumer", json!({}));
        for class in c.classes.values_mut() {
            class.provisioner = "kubernetes.io/no-provisioner".to_owned();
        }
        let state = pre_filter(&pod("data"), &c).expect("state");
        assert_eq!(filter(&state, &node("n1")), [NO_VOLUME]);
        let volume: PersistentVolume = serde_json::from_value(json!({
            "metadata": {"name": "local-n1"},
            "spec": {"storageClassName": "local-path", "accessModes": ["ReadWriteOnce"],
                     "capacity": {"storage": "5Gi"}, "local": {"path": "/mnt/disk"},
                     "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                        {"key": storage::HOSTNAME_LABEL, "operator": "In", "values": ["n1"]}]}]}}},
        }))
        .expect("volume");
        c.volumes.insert("local-n1".to_owned(), volume);
        let state = pre_filter(&pod("data"), &c).expect("state");
        assert!(filter(&state, &node("n1")).is_empty());
        assert_eq!(filter(&state, &node("n2")), [NO_VOLUME]);
    }
}
