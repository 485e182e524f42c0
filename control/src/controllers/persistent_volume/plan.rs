//! What the PV controller should write, decided from its caches alone (kube's
//! `syncClaim` / `syncVolume` of `pkg/controller/volume/persistentvolume`, simplified): each
//! claim and each volume is compared with what it should be, and only differences become
//! [`Action`]s, so a settled cluster plans nothing.

use std::collections::BTreeMap;

use k8s_openapi::api::{
    core::v1::{Node, PersistentVolume, PersistentVolumeClaim},
    storage::v1::StorageClass,
};

use crate::model::storage::{
    self, BIND_COMPLETED, BOUND_BY_CONTROLLER, PROVISIONED_BY, PROVISIONER, SELECTED_NODE,
    claim_class, claim_ref_names, claim_volume,
};

/// The objects the controller decides from.
#[derive(Debug, Default, Clone)]
pub struct World {
    /// Every claim.
    pub claims: Vec<PersistentVolumeClaim>,
    /// Every volume.
    pub volumes: Vec<PersistentVolume>,
    /// StorageClasses by name.
    pub classes: BTreeMap<String, StorageClass>,
    /// Nodes by name.
    pub nodes: BTreeMap<String, Node>,
}

/// One write the controller makes.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Replace the volume's object (claimRef, annotations) with this one.
    UpdateVolume(Box<PersistentVolume>),
    /// Set the volume's `status.phase` (and message).
    VolumePhase {
        /// The volume as cached (its resourceVersion guards the write).
        volume: Box<PersistentVolume>,
        /// The new phase.
        phase: &'static str,
        /// Why, for Failed.
        message: Option<String>,
    },
    /// Replace the claim's object (volumeName, annotations) with this one.
    UpdateClaim(Box<PersistentVolumeClaim>),
    /// Set the claim's status: phase, and for Bound the volume's capacity and access modes.
    ClaimStatus {
        /// The claim as cached.
        claim: Box<PersistentVolumeClaim>,
        /// The new phase.
        phase: &'static str,
        /// The volume it is bound to (Bound only).
        volume: Option<Box<PersistentVolume>>,
    },
    /// Create this volume (the local-path provisioner's).
    Provision(Box<PersistentVolume>),
    /// Delete the volume (reclaim policy Delete of a released volume).
    DeleteVolume(String),
}

fn phase_of_volume(volume: &PersistentVolume) -> &str {
    volume
        .status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or_default()
}

fn phase_of_claim(claim: &PersistentVolumeClaim) -> &str {
    claim
        .status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or_default()
}

fn annotation<'a>(
    meta: &'a k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    key: &str,
) -> Option<&'a str> {
    meta.annotations.as_ref()?.get(key).map(String::as_str)
}

fn key_of_claim(claim: &PersistentVolumeClaim) -> (String, String) {
    (
        claim.metadata.namespace.clone().unwrap_or_default(),
        claim.metadata.name.clone().unwrap_or_default(),
    )
}

/// Everything to write so that claims and volumes are bound, provisioned and reclaimed.
pub fn plan(world: &World) -> Vec<Action> {
    let mut actions = Vec::new();
    let claims: BTreeMap<(String, String), &PersistentVolumeClaim> =
        world.claims.iter().map(|c| (key_of_claim(c), c)).collect();
    let volumes: BTreeMap<&str, &PersistentVolume> = world
        .volumes
        .iter()
        .filter_map(|v| Some((v.metadata.name.as_deref()?, v)))
        .collect();
    // Volumes promised in this pass (two claims never get the same volume at once).
    let mut taken: Vec<String> = Vec::new();
    for claim in &world.claims {
        if claim.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let wanted = claim_volume(claim);
        if wanted.is_empty() {
            plan_unbound_claim(world, claim, &mut taken, &mut actions);
        } else {
            let volume = volumes.get(wanted).copied();
            let ours = volume.is_some_and(|v| {
                claim_ref_names(v, claim) || v.spec.as_ref().is_none_or(|s| s.claim_ref.is_none())
            });
            if ours {
                // This pass decides the volume's phase through its claim.
                taken.push(wanted.to_owned());
            }
            plan_bound_claim(claim, volumes.get(wanted).copied(), &mut actions);
        }
    }
    for volume in &world.volumes {
        if !taken
            .iter()
            .any(|t| Some(t.as_str()) == volume.metadata.name.as_deref())
        {
            plan_volume(volume, &claims, &mut actions);
        }
    }
    actions
}

/// A claim without a volume: bind it to a matching one, or provision one, or wait.
fn plan_unbound_claim(
    world: &World,
    claim: &PersistentVolumeClaim,
    taken: &mut Vec<String>,
    actions: &mut Vec<Action>,
) {
    let class_name = claim_class(claim);
    let class = world.classes.get(class_name);
    let node_name = annotation(&claim.metadata, SELECTED_NODE).unwrap_or_default();
    let waits = storage::waits_for_consumer(class);
    if waits && node_name.is_empty() {
        // WaitForFirstConsumer: nothing happens until the scheduler picks a node.
        return;
    }
    let labels = world
        .nodes
        .get(node_name)
        .and_then(|n| n.metadata.labels.clone())
        .unwrap_or_default();
    let node = waits.then_some((node_name, &labels));
    let free = world.volumes.iter().filter(|v| {
        !taken
            .iter()
            .any(|t| Some(t.as_str()) == v.metadata.name.as_deref())
    });
    if let Some(volume) = storage::find_volume(claim, free, node) {
        let name = volume.metadata.name.clone().unwrap_or_default();
        taken.push(name);
        bind(claim, volume, actions);
        return;
    }
    let ours = class.is_some_and(|c| c.provisioner == PROVISIONER);
    if ours && waits && claim.metadata.uid.is_some() {
        let Some(node) = world.nodes.get(node_name) else {
            // A node that went away: the scheduler picks again.
            return;
        };
        let dir = node
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(storage::LOCAL_PATH_DIR))
            .map_or(storage::DEFAULT_LOCAL_PATH_DIR, String::as_str);
        let hostname = labels
            .get(storage::HOSTNAME_LABEL)
            .map_or(node_name, String::as_str);
        if let Some(class) = class {
            let volume = storage::local_path_volume(claim, class, node_name, hostname, dir);
            if !world
                .volumes
                .iter()
                .any(|v| v.metadata.name == volume.metadata.name)
            {
                actions.push(Action::Provision(Box::new(volume)));
            }
        }
    }
}

/// Both halves of binding `claim` to `volume`, each only where it differs.
fn bind(claim: &PersistentVolumeClaim, volume: &PersistentVolume, actions: &mut Vec<Action>) {
    // The volume first (kube's order): its claimRef is what makes the binding stick.
    if !claim_ref_names(volume, claim)
        || volume
            .spec
            .as_ref()
            .and_then(|s| s.claim_ref.as_ref())
            .is_some_and(|r| r.uid.as_deref().unwrap_or_default().is_empty())
    {
        let mut updated = volume.clone();
        let user_bound = claim_ref_names(volume, claim);
        let spec = updated.spec.get_or_insert_with(Default::default);
        spec.claim_ref = Some(storage::claim_reference(claim));
        if !user_bound {
            updated
                .metadata
                .annotations
                .get_or_insert_with(Default::default)
                .insert(BOUND_BY_CONTROLLER.to_owned(), "yes".to_owned());
        }
        actions.push(Action::UpdateVolume(Box::new(updated)));
        return;
    }
    if phase_of_volume(volume) != "Bound" {
        actions.push(Action::VolumePhase {
            volume: Box::new(volume.clone()),
            phase: "Bound",
            message: None,
        });
    }
    let name = volume.metadata.name.clone().unwrap_or_default();
    let mut updated = claim.clone();
    let spec = updated.spec.get_or_insert_with(Default::default);
    let controller_bound = spec.volume_name.as_deref().unwrap_or_default().is_empty();
    spec.volume_name = Some(name);
    let annotations = updated
        .metadata
        .annotations
        .get_or_insert_with(Default::default);
    if controller_bound {
        annotations.insert(BOUND_BY_CONTROLLER.to_owned(), "yes".to_owned());
    }
    annotations.insert(BIND_COMPLETED.to_owned(), "yes".to_owned());
    if updated != *claim {
        actions.push(Action::UpdateClaim(Box::new(updated)));
        return;
    }
    let status = claim.status.clone().unwrap_or_default();
    let capacity = volume.spec.as_ref().and_then(|s| s.capacity.clone());
    let modes = volume.spec.as_ref().and_then(|s| s.access_modes.clone());
    if phase_of_claim(claim) != "Bound"
        || status.capacity != capacity
        || status.access_modes != modes
    {
        actions.push(Action::ClaimStatus {
            claim: Box::new(claim.clone()),
            phase: "Bound",
            volume: Some(Box::new(volume.clone())),
        });
    }
}

/// A claim that names a volume: finish the binding, or mark it Lost when its volume is gone.
fn plan_bound_claim(
    claim: &PersistentVolumeClaim,
    volume: Option<&PersistentVolume>,
    actions: &mut Vec<Action>,
) {
    let Some(volume) = volume else {
        if phase_of_claim(claim) == "Bound" {
            actions.push(Action::ClaimStatus {
                claim: Box::new(claim.clone()),
                phase: "Lost",
                volume: None,
            });
        }
        return;
    };
    let bound_elsewhere = volume
        .spec
        .as_ref()
        .and_then(|s| s.claim_ref.as_ref())
        .is_some()
        && !claim_ref_names(volume, claim);
    if bound_elsewhere {
        // kube: "volume already bound to a different claim"; the claim waits.
        return;
    }
    if storage::check_match(volume, claim, None).is_err() && !claim_ref_names(volume, claim) {
        return;
    }
    bind(claim, volume, actions);
}

/// A volume's phase from its claimRef, and reclaiming once its claim is gone.
fn plan_volume(
    volume: &PersistentVolume,
    claims: &BTreeMap<(String, String), &PersistentVolumeClaim>,
    actions: &mut Vec<Action>,
) {
    if volume.metadata.deletion_timestamp.is_some() {
        return;
    }
    let phase = phase_of_volume(volume);
    let set = |phase: &'static str, message: Option<String>, actions: &mut Vec<Action>| {
        actions.push(Action::VolumePhase {
            volume: Box::new(volume.clone()),
            phase,
            message,
        });
    };
    let Some(reference) = volume.spec.as_ref().and_then(|s| s.claim_ref.as_ref()) else {
        if phase != "Available" {
            set("Available", None, actions);
        }
        return;
    };
    let key = (
        reference.namespace.clone().unwrap_or_default(),
        reference.name.clone().unwrap_or_default(),
    );
    let claim = claims.get(&key).copied();
    let uid = reference.uid.as_deref().unwrap_or_default();
    let claim_gone = match claim {
        None => !uid.is_empty(),
        Some(c) => !uid.is_empty() && c.metadata.uid.as_deref() != Some(uid),
    };
    if !claim_gone {
        let bound = claim.is_some_and(|c| {
            claim_volume(c) == volume.metadata.name.as_deref().unwrap_or_default()
        });
        if bound && phase != "Bound" {
            set("Bound", None, actions);
        } else if !bound && uid.is_empty() && phase != "Available" {
            // Pre-bound by its creator to a claim that does not exist (yet).
            set("Available", None, actions);
        }
        return;
    }
    if phase != "Released" && phase != "Failed" {
        set("Released", None, actions);
        return;
    }
    let policy = volume
        .spec
        .as_ref()
        .and_then(|s| s.persistent_volume_reclaim_policy.as_deref())
        .unwrap_or("Retain");
    if phase == "Released" && policy == "Delete" {
        if annotation(&volume.metadata, PROVISIONED_BY) == Some(PROVISIONER) {
            actions.push(Action::DeleteVolume(
                volume.metadata.name.clone().unwrap_or_default(),
            ));
        } else {
            set(
                "Failed",
                Some("error getting deleter volume plugin for volume: no deletable volume plugin matched".to_owned()),
                actions,
            );
        }
    } else if phase == "Released" && policy == "Recycle" {
        set(
            "Failed",
            Some("no volume plugin matched: recycling is not supported".to_owned()),
            actions,
        );
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn class(mode: &str) -> StorageClass {
        let mut object = storage::default_class_object();
        object["volumeBindingMode"] = json!(mode);
        serde_json::from_value(object).expect("class")
    }

    fn claim(extra: serde_json::Value) -> PersistentVolumeClaim {
        let mut object = json!({
            "metadata": {"name": "data", "namespace": "ns", "uid": "u1", "resourceVersion": "5"},
            "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "local-path",
                     "resources": {"requests": {"storage": "1Gi"}}},
            "status": {"phase": "Pending"},
        });
        json_patch::merge(&mut object, &extra);
        serde_json::from_value(object).expect("claim")
    }

    fn node(name: &str) -> Node {
        serde_json::from_value(json!({"metadata": {"name": name,
            "labels": {"kubernetes.io/hostname": name},
            "annotations": {storage::LOCAL_PATH_DIR: format!("/lab/{name}/local-path")}}}))
        .expect("node")
    }

    fn world(
        mode: &str,
        claims: Vec<PersistentVolumeClaim>,
        volumes: Vec<PersistentVolume>,
    ) -> World {
        World {
            claims,
            volumes,
            classes: BTreeMap::from([("local-path".to_owned(), class(mode))]),
            nodes: BTreeMap::from([("n1".to_owned(), node("n1")), ("n2".to_owned(), node("n2"))]),
        }
    }

    /// Apply the actions the way the API would, so a test can run passes until quiet.
    fn apply(world: &mut World, actions: &[Action]) {
        for action in actions {
            match action {
                Action::UpdateVolume(v) | Action::Provision(v) => {
                    world.volumes.retain(|o| o.metadata.name != v.metadata.name);
                    world.volumes.push((**v).clone());
                }
                Action::VolumePhase { volume, phase, .. } => {
                    for v in &mut world.volumes {
                        if v.metadata.name == volume.metadata.name {
                            v.status.get_or_insert_with(Default::default).phase =
                                Some((*phase).to_owned());
                        }
                    }
                }
                Action::UpdateClaim(c) => {
                    world.claims.retain(|o| o.metadata.name != c.metadata.name);
                    world.claims.push((**c).clone());
                }
                Action::ClaimStatus {
                    claim,
                    phase,
                    volume,
                } => {
                    for c in &mut world.claims {
                        if c.metadata.name == claim.metadata.name {
                            let status = c.status.get_or_insert_with(Default::default);
                            status.phase = Some((*phase).to_owned());
                            let spec = volume.as_ref().and_then(|v| v.spec.clone());
                            status.capacity = spec.clone().and_then(|s| s.capacity);
                            status.access_modes = spec.and_then(|s| s.access_modes);
                        }
                    }
                }
                Action::DeleteVolume(name) => {
                    world
                        .volumes
                        .retain(|v| v.metadata.name.as_deref() != Some(name));
                }
            }
        }
    }

    /// Run passes until nothing is planned; returns how many passes wrote.
    fn settle(world: &mut World) -> usize {
        for pass in 0..10 {
            let actions = plan(world);
            if actions.is_empty() {
                return pass;
            }
            apply(world, &actions);
        }
        panic!("the controller never settles: {:?}", plan(world));
    }

    #[test]
    fn a_waiting_claim_is_left_alone_until_a_node_is_selected() {
        let mut w = world("WaitForFirstConsumer", vec![claim(json!({}))], vec![]);
        assert!(plan(&w).is_empty());
        w.claims = vec![claim(
            json!({"metadata": {"annotations": {SELECTED_NODE: "n2"}}}),
        )];
        let actions = plan(&w);
        let [Action::Provision(volume)] = actions.as_slice() else {
            panic!("expected one provisioning, got {actions:?}");
        };
        assert_eq!(
            volume
                .spec
                .as_ref()
                .and_then(|s| s.host_path.as_ref())
                .map(|h| h.path.as_str()),
            Some("/lab/n2/local-path/pvc-u1")
        );
        settle(&mut w);
        let c = &w.claims[0];
        assert_eq!(claim_volume(c), "pvc-u1");
        assert_eq!(phase_of_claim(c), "Bound");
        assert_eq!(annotation(&c.metadata, BIND_COMPLETED), Some("yes"));
        assert_eq!(phase_of_volume(&w.volumes[0]), "Bound");
        // Settled: nothing more to write.
        assert!(plan(&w).is_empty());
    }

    #[test]
    fn an_immediate_claim_binds_to_a_matching_volume() {
        let volume: PersistentVolume = serde_json::from_value(json!({
            "metadata": {"name": "manual"},
            "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "local-path",
                     "capacity": {"storage": "2Gi"}, "hostPath": {"path": "/srv/manual"}},
        }))
        .expect("volume");
        let mut w = world("Immediate", vec![claim(json!({}))], vec![volume]);
        settle(&mut w);
        assert_eq!(claim_volume(&w.claims[0]), "manual");
        assert_eq!(
            annotation(&w.volumes[0].metadata, BOUND_BY_CONTROLLER),
            Some("yes")
        );
        assert_eq!(phase_of_volume(&w.volumes[0]), "Bound");
        assert_eq!(phase_of_claim(&w.claims[0]), "Bound");
    }

    #[test]
    fn an_immediate_claim_without_a_volume_stays_pending() {
        let mut w = world("Immediate", vec![claim(json!({}))], vec![]);
        assert_eq!(settle(&mut w), 0);
        assert_eq!(phase_of_claim(&w.claims[0]), "Pending");
    }

    #[test]
    fn a_deleted_claims_volume_is_released_then_deleted_or_kept() {
        let mut w = world(
            "WaitForFirstConsumer",
            vec![claim(
                json!({"metadata": {"annotations": {SELECTED_NODE: "n1"}}}),
            )],
            vec![],
        );
        settle(&mut w);
        w.claims.clear();
        let actions = plan(&w);
        assert!(matches!(
            actions.as_slice(),
            [Action::VolumePhase {
                phase: "Released",
                ..
            }]
        ));
        apply(&mut w, &actions);
        assert_eq!(plan(&w), [Action::DeleteVolume("pvc-u1".to_owned())]);
        // Retain keeps a released volume.
        let mut kept = w.volumes[0].clone();
        kept.spec
            .get_or_insert_with(Default::default)
            .persistent_volume_reclaim_policy = Some("Retain".to_owned());
        w.volumes = vec![kept];
        assert!(plan(&w).is_empty());
        // A re-created claim of the same name (another uid) does not take it back.
        w.claims = vec![claim(json!({"metadata": {"uid": "u2"}}))];
        assert!(plan(&w).is_empty());
    }

    #[test]
    fn a_volume_without_a_claim_ref_becomes_available() {
        let volume: PersistentVolume = serde_json::from_value(json!({
            "metadata": {"name": "v"}, "spec": {"capacity": {"storage": "1Gi"}},
            "status": {"phase": "Pending"},
        }))
        .expect("volume");
        let w = world("Immediate", vec![], vec![volume]);
        assert!(matches!(
            plan(&w).as_slice(),
            [Action::VolumePhase {
                phase: "Available",
                ..
            }]
        ));
    }

    #[test]
    fn a_claim_whose_volume_is_gone_is_lost() {
        let bound = claim(json!({"spec": {"volumeName": "gone"}, "status": {"phase": "Bound"}}));
        let w = world("Immediate", vec![bound], vec![]);
        assert!(matches!(
            plan(&w).as_slice(),
            [Action::ClaimStatus { phase: "Lost", .. }]
        ));
    }
}
