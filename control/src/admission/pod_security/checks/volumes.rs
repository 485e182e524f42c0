//! Restricted check on volume types: only configMap, csi, downwardAPI, emptyDir, ephemeral,
//! image, persistentVolumeClaim, projected and secret (check_restrictedVolumes.go). It
//! replaces baseline's hostPathVolumes at the restricted level.

use std::collections::BTreeSet;

use k8s_openapi::{
    api::core::v1::{PodSpec, Volume},
    apimachinery::pkg::apis::meta::v1::ObjectMeta,
};

use super::{CheckResult, join_quote, named, pluralize};

/// True for the volume sources restricted allows.
fn allowed_source(v: &Volume) -> bool {
    v.config_map.is_some()
        || v.csi.is_some()
        || v.downward_api.is_some()
        || v.empty_dir.is_some()
        || v.ephemeral.is_some()
        || v.image.is_some()
        || v.persistent_volume_claim.is_some()
        || v.projected.is_some()
        || v.secret.is_some()
}

/// The restricted volume type's name, as kube reports it.
fn restricted_type(v: &Volume) -> &'static str {
    let sources: [(bool, &'static str); 21] = [
        (v.host_path.is_some(), "hostPath"),
        (v.gce_persistent_disk.is_some(), "gcePersistentDisk"),
        (v.aws_elastic_block_store.is_some(), "awsElasticBlockStore"),
        (v.git_repo.is_some(), "gitRepo"),
        (v.nfs.is_some(), "nfs"),
        (v.iscsi.is_some(), "iscsi"),
        (v.glusterfs.is_some(), "glusterfs"),
        (v.rbd.is_some(), "rbd"),
        (v.flex_volume.is_some(), "flexVolume"),
        (v.cinder.is_some(), "cinder"),
        (v.cephfs.is_some(), "cephfs"),
        (v.flocker.is_some(), "flocker"),
        (v.fc.is_some(), "fc"),
        (v.azure_file.is_some(), "azureFile"),
        (v.vsphere_volume.is_some(), "vsphereVolume"),
        (v.quobyte.is_some(), "quobyte"),
        (v.azure_disk.is_some(), "azureDisk"),
        (v.photon_persistent_disk.is_some(), "photonPersistentDisk"),
        (v.portworx_volume.is_some(), "portworxVolume"),
        (v.scale_io.is_some(), "scaleIO"),
        (v.storageos.is_some(), "storageos"),
    ];
    sources
        .into_iter()
        .find(|(set, _)| *set)
        .map_or("unknown", |(_, name)| name)
}

/// `restrictedVolumes`: every volume uses an allowed source.
pub(super) fn restricted_volumes_1_0(_meta: &ObjectMeta, spec: &PodSpec) -> CheckResult {
    let mut bad_volumes = Vec::new();
    let mut bad_types = BTreeSet::new();
    for volume in spec.volumes.iter().flatten() {
        if !allowed_source(volume) {
            bad_volumes.push(volume.name.as_str());
            bad_types.insert(restricted_type(volume));
        }
    }
    if bad_volumes.is_empty() {
        return CheckResult::allow();
    }
    let types: Vec<&str> = bad_types.into_iter().collect();
    CheckResult::forbid(
        "restricted volume types",
        format!(
            "{} {} {} {}",
            named("volume", "volumes", &bad_volumes),
            pluralize("uses", "use", bad_volumes.len()),
            pluralize(
                "restricted volume type",
                "restricted volume types",
                types.len()
            ),
            join_quote(&types),
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{forbidden, spec};
    use super::*;
    use serde_json::json;

    #[test]
    fn allowed_sources_pass() {
        let pod = spec(json!({"containers": [], "volumes": [
            {"name": "a", "configMap": {"name": "c"}},
            {"name": "b", "secret": {"secretName": "s"}},
            {"name": "c", "emptyDir": {}},
            {"name": "d", "projected": {"sources": []}},
            {"name": "e", "downwardAPI": {}},
            {"name": "f", "persistentVolumeClaim": {"claimName": "p"}},
            {"name": "g", "csi": {"driver": "d"}},
            {"name": "h", "ephemeral": {}},
            {"name": "i", "image": {"reference": "r"}},
        ]}));
        assert!(restricted_volumes_1_0(&ObjectMeta::default(), &pod).allowed);
    }

    #[test]
    fn restricted_sources_are_named() {
        let one =
            spec(json!({"containers": [], "volumes": [{"name": "x", "hostPath": {"path": "/"}}]}));
        assert_eq!(
            forbidden(restricted_volumes_1_0(&ObjectMeta::default(), &one)),
            (
                "restricted volume types".into(),
                "volume \"x\" uses restricted volume type \"hostPath\"".into()
            )
        );
        let many = spec(json!({"containers": [], "volumes": [
            {"name": "a", "nfs": {"server": "s", "path": "/"}},
            {"name": "b", "hostPath": {"path": "/"}},
            {"name": "c", "hostPath": {"path": "/c"}},
            {"name": "d"},
        ]}));
        assert_eq!(
            forbidden(restricted_volumes_1_0(&ObjectMeta::default(), &many)).1,
            "volumes \"a\", \"b\", \"c\", \"d\" use restricted volume types \"hostPath\", \"nfs\", \"unknown\""
        );
    }
}
