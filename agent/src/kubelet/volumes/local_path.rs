//! PersistentVolumeClaim volumes: the claim's bound PersistentVolume made real on this node.
//!
//! Volumes of Skiff's built-in local-path provisioner (`pv.kubernetes.io/provisioned-by:
//! skiff.dev/local-path`) are directories `<local-path dir>/<volume name>`, the local-path
//! dir being `<state dir>/local-path` and published on the Node (annotation
//! `skiff.dev/local-path-dir`) so the control plane provisions there. Such a volume is
//! mounted only if its path is exactly that directory (a volume naming any other path is
//! refused); it is created 0777 as rancher's local-path makes it, with the pod's fsGroup.
//! Other volumes (made by an administrator) are mounted as kubelet mounts them: hostPath
//! after its type checks, `local` if the directory exists.
//!
//! Reclaiming: when a provisioned volume of this node is deleted (its claim was deleted and
//! its reclaim policy is Delete) it waits on the `skiff.dev/local-path-cleanup` finalizer;
//! [`reclaim`] watches this node's volumes (label `skiff.dev/local-path-node=<node>`),
//! removes the directory and then the finalizer.
//!
//! The names here mirror skiff-control's `model::storage`.

use std::{
    io::ErrorKind,
    os::unix::fs::{DirBuilderExt, PermissionsExt},
    path::{Path, PathBuf},
};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use kube::{
    Api, Client, ResourceExt,
    api::{Patch, PatchParams},
    runtime::{WatchStreamExt, watcher},
};
use serde_json::json;
use tracing::{debug, info, warn};

use super::payload::{self, Ownership};

/// The Node annotation publishing this node's local-path directory.
pub const DIR_ANNOTATION: &str = "skiff.dev/local-path-dir";
/// The built-in provisioner's name.
pub const PROVISIONER: &str = "skiff.dev/local-path";
/// Which provisioner made a volume.
pub const PROVISIONED_BY: &str = "pv.kubernetes.io/provisioned-by";
/// The finalizer the node clears once the directory is gone.
pub const CLEANUP_FINALIZER: &str = "skiff.dev/local-path-cleanup";
/// The label naming the node a provisioned volume lives on.
pub const NODE_LABEL: &str = "skiff.dev/local-path-node";

/// Mode of a new volume directory (rancher's local-path's).
const WORLD_WRITABLE: u32 = 0o777;
/// Mode of the directory holding every volume: only the agent looks inside.
const ROOT_MODE: u32 = 0o750;

/// This node's local-path directory.
pub fn root(state_dir: &Path) -> PathBuf {
    state_dir.join("local-path")
}

/// True if `volume` was made by the built-in provisioner.
pub fn provisioned(volume: &PersistentVolume) -> bool {
    volume.annotations().get(PROVISIONED_BY).map(String::as_str) == Some(PROVISIONER)
}

/// The bound volume of claim `claim` of `namespace`, with kubelet's wording when the claim
/// is missing or not bound yet.
pub async fn bound_volume(
    client: &Client,
    namespace: &str,
    claim: &str,
) -> Result<PersistentVolume, String> {
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), namespace);
    let found = claims
        .get(claim)
        .await
        .map_err(|e| format!("error getting PVC {namespace}/{claim}: {e}"))?;
    let phase = found
        .status
        .as_ref()
        .and_then(|s| s.phase.clone())
        .unwrap_or_default();
    let volume = found
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.clone())
        .unwrap_or_default();
    if phase != "Bound" || volume.is_empty() {
        return Err(format!(
            "PVC {namespace}/{claim} has non-bound phase (\"{phase}\") or empty pvc.Spec.VolumeName (\"{volume}\")"
        ));
    }
    let volumes: Api<PersistentVolume> = Api::all(client.clone());
    volumes
        .get(&volume)
        .await
        .map_err(|e| format!("error getting PV {volume} of PVC {namespace}/{claim}: {e}"))
}

/// The host directory of `volume` on this node (whose local-path dir is `root`), created
/// for a provisioned volume.
pub fn host_dir(
    volume: &PersistentVolume,
    root: &Path,
    fs_group: Option<u32>,
) -> Result<PathBuf, String> {
    let name = volume.name_any();
    let spec = volume.spec.clone().unwrap_or_default();
    if provisioned(volume) {
        super::check_single_name("volume", &name)?;
        let expected = root.join(&name);
        let path = spec.host_path.as_ref().map(|h| PathBuf::from(&h.path));
        if path.as_deref() != Some(expected.as_path()) {
            return Err(format!(
                "local-path volume {name} is not {} on this node",
                expected.display()
            ));
        }
        return volume_dir(root, &name, fs_group);
    }
    if let Some(host) = &spec.host_path {
        return super::host_path(&host.path, host.type_.as_deref());
    }
    if let Some(local) = &spec.local {
        let path = PathBuf::from(&local.path);
        if !path.is_dir() {
            return Err(format!(
                "local volume {name}: {} is not a directory",
                local.path
            ));
        }
        return Ok(path);
    }
    Err(format!(
        "volume {name}: only hostPath and local volumes are supported by skiff-agent"
    ))
}

/// The directory `name` under `root`, made 0777 if new; with an fsGroup, its group and
/// setgid bit are set (on an existing one too, its other bits kept).
pub fn volume_dir(root: &Path, name: &str, fs_group: Option<u32>) -> Result<PathBuf, String> {
    super::check_single_name("volume", name)?;
    match std::fs::DirBuilder::new()
        .recursive(false)
        .mode(ROOT_MODE)
        .create(root)
    {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
        Err(e) if e.kind() == ErrorKind::NotFound => {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(ROOT_MODE)
                .create(root)
                .map_err(|e| format!("creating {}: {e}", root.display()))?;
        }
        Err(e) => return Err(format!("creating {}: {e}", root.display())),
    }
    let path = root.join(name);
    let created = match std::fs::DirBuilder::new().mode(0o700).create(&path) {
        Ok(()) => true,
        Err(e) if e.kind() == ErrorKind::AlreadyExists => false,
        Err(e) => return Err(format!("volume {name}: {e}")),
    };
    let meta = std::fs::symlink_metadata(&path).map_err(|e| format!("volume {name}: {e}"))?;
    if !meta.is_dir() {
        return Err(format!(
            "volume {name}: {} is not a directory",
            path.display()
        ));
    }
    let ownership = Ownership {
        fs_group,
        read_only: false,
    };
    if created {
        payload::prepare_root(&path, WORLD_WRITABLE, ownership)?;
    } else if fs_group.is_some() {
        let mode = meta.permissions().mode();
        payload::prepare_root(&path, mode & 0o7777, ownership)?;
    }
    Ok(path)
}

/// Remove the directory of volume `name` under `root` (gone already is fine). Symbolic
/// links inside are removed, never followed.
pub fn remove_volume_dir(root: &Path, name: &str) -> Result<(), String> {
    super::check_single_name("volume", name)?;
    let path = root.join(name);
    match std::fs::symlink_metadata(&path) {
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("{}: {e}", path.display())),
        Ok(meta) if meta.is_dir() => {
            std::fs::remove_dir_all(&path).map_err(|e| format!("removing {}: {e}", path.display()))
        }
        Ok(_) => {
            std::fs::remove_file(&path).map_err(|e| format!("removing {}: {e}", path.display()))
        }
    }
}

/// Watch this node's provisioned volumes until aborted; remove the directory of each one
/// being deleted, then its cleanup finalizer.
pub async fn reclaim(client: Client, node: String, root: PathBuf) {
    let api: Api<PersistentVolume> = Api::all(client);
    let config = watcher::Config::default().labels(&format!("{NODE_LABEL}={node}"));
    let mut events = watcher(api.clone(), config)
        .default_backoff()
        .applied_objects()
        .boxed();
    while let Some(event) = events.next().await {
        let volume = match event {
            Ok(volume) => volume,
            Err(e) => {
                debug!(error = %e, "local-path volume watch interrupted");
                continue;
            }
        };
        let waiting = volume.metadata.deletion_timestamp.is_some()
            && volume.finalizers().iter().any(|f| f == CLEANUP_FINALIZER);
        if !waiting || !provisioned(&volume) {
            continue;
        }
        let name = volume.name_any();
        if let Err(e) = remove_volume_dir(&root, &name) {
            warn!(volume = %name, error = %e, "cannot remove a local-path volume's directory");
            continue;
        }
        let remaining: Vec<String> = volume
            .finalizers()
            .iter()
            .filter(|f| *f != CLEANUP_FINALIZER)
            .cloned()
            .collect();
        let patch = json!({"metadata": {
            "finalizers": remaining,
            "resourceVersion": volume.resource_version(),
        }});
        match api
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => info!(volume = %name, "removed a deleted local-path volume's directory"),
            Err(e) => debug!(volume = %name, error = %e, "cannot clear the cleanup finalizer yet"),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn temp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("skiff-lp-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp");
        dir
    }

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).expect("meta").permissions().mode() & 0o7777
    }

    fn volume(path: &str) -> PersistentVolume {
        serde_json::from_value(json!({
            "metadata": {"name": "pvc-1", "annotations": {PROVISIONED_BY: PROVISIONER}},
            "spec": {"hostPath": {"path": path, "type": "DirectoryOrCreate"}},
        }))
        .expect("volume")
    }

    #[test]
    fn provisioned_volumes_live_only_in_the_nodes_directory() {
        let state = temp("state");
        let root = root(&state);
        let good = volume(&root.join("pvc-1").display().to_string());
        let path = host_dir(&good, &root, None).expect("mounted");
        assert_eq!(path, root.join("pvc-1"));
        assert_eq!(mode(&path), 0o777);
        assert_eq!(mode(&root), 0o750);
        // Written-in paths elsewhere are refused, however they are spelled.
        for bad in ["/etc", "/var/lib/skiff/local-path/pvc-1/../../../etc"] {
            assert!(host_dir(&volume(bad), &root, None).is_err(), "{bad}");
        }
        let escaped = volume(&format!("{}/../pvc-1", root.display()));
        assert!(host_dir(&escaped, &root, None).is_err());
        // Existing data is kept as its users left it.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700)).expect("chmod");
        host_dir(&good, &root, None).expect("again");
        assert_eq!(mode(&path), 0o700);
        let _ = std::fs::remove_dir_all(state);
    }

    #[test]
    fn removing_a_volume_never_follows_links() {
        let state = temp("remove");
        let root = root(&state);
        let outside = state.join("outside");
        std::fs::create_dir_all(&outside).expect("outside");
        std::fs::write(outside.join("keep"), b"x").expect("keep");
        let dir = volume_dir(&root, "pvc-1", None).expect("dir");
        std::fs::write(dir.join("data"), b"y").expect("data");
        std::os::unix::fs::symlink(&outside, dir.join("link")).expect("link");
        remove_volume_dir(&root, "pvc-1").expect("removed");
        assert!(!dir.exists());
        assert!(outside.join("keep").exists());
        remove_volume_dir(&root, "pvc-1").expect("gone already is fine");
        assert!(remove_volume_dir(&root, "..").is_err());
        let _ = std::fs::remove_dir_all(state);
    }
}
