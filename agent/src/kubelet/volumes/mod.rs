//! Pod volumes made real on the node: emptyDir (a directory, or tmpfs for medium Memory),
//! see [`local`]; persistentVolumeClaim (the claim's bound PersistentVolume, see
//! [`local_path`]); hostPath;
//! configMap, secret, downwardAPI and projected (files written from the API, ServiceAccount
//! tokens included); and the bind mounts each container gets from its volumeMounts.
//!
//! Every file the agent writes into a volume, and every subPath it mounts, is resolved
//! beneath the volume's directory (see [`crate::beneath`]); paths that would leave it are
//! refused up front with kubelet's wording. configMap, secret, downwardAPI and projected
//! volumes are mounted read-only, as kubelet mounts them.

pub mod local;
pub mod local_path;
pub mod payload;
pub mod sources;
pub mod subpath;
pub mod token;
pub mod token_cache;

use std::{
    collections::{BTreeMap, HashMap},
    path::{Path, PathBuf},
};

use k8s_openapi::api::core::v1::{Container, Pod, Volume};
use kube::Client;

use self::{
    payload::{Ownership, Payload},
    token::{TokenFile, TokenSource},
};
use super::security;
use crate::runtime::spec::BindMount;

/// Why a volume could not be set up (reported as the pod's FailedMount reason).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct VolumeError(pub String);

/// One volume as set up on the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreparedVolume {
    /// Its host directory (or file, for a hostPath file).
    pub path: PathBuf,
    /// Mounted read-only whatever the volumeMount says (kubelet's read-only volume types).
    pub read_only: bool,
}

/// The pod's volumes, and the projected tokens to keep fresh.
#[derive(Debug, Clone, Default)]
pub struct Prepared {
    /// By volume name.
    pub volumes: HashMap<String, PreparedVolume>,
    /// Projected ServiceAccount token files (the worker refreshes them).
    pub tokens: Vec<TokenFile>,
}

/// kubelet's wording of a volume that could not be set up.
fn setup_failed(volume: &str, message: &str) -> VolumeError {
    VolumeError(format!(
        "MountVolume.SetUp failed for volume \"{volume}\" : {message}"
    ))
}

/// A name the agent uses as one directory name (a volume, a claim, a namespace): no
/// separators, not `.` or `..`. The API validates these as DNS labels; the agent does not
/// rely on it.
pub fn check_single_name(what: &str, name: &str) -> Result<(), String> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') || name.contains('\0') {
        return Err(format!("{what} {name:?} is not a valid name"));
    }
    Ok(())
}

/// Create every volume of `pod` under `pod_dir/volumes`; projected tokens are asked of
/// `tokens`.
pub async fn prepare(
    client: &Client,
    tokens: &dyn TokenSource,
    pod: &Pod,
    pod_dir: &Path,
) -> Result<Prepared, VolumeError> {
    let mut prepared = Prepared::default();
    let volumes = pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.clone())
        .unwrap_or_default();
    for volume in &volumes {
        check_single_name("volume", &volume.name).map_err(VolumeError)?;
        let dir = pod_dir.join("volumes").join(&volume.name);
        let (ready, files) = prepare_one(client, tokens, pod, volume, &dir)
            .await
            .map_err(|message| setup_failed(&volume.name, &message))?;
        prepared.volumes.insert(volume.name.clone(), ready);
        prepared.tokens.extend(files);
    }
    Ok(prepared)
}

async fn prepare_one(
    client: &Client,
    tokens: &dyn TokenSource,
    pod: &Pod,
    volume: &Volume,
    dir: &Path,
) -> Result<(PreparedVolume, Vec<TokenFile>), String> {
    let writable = |path: PathBuf| PreparedVolume {
        path,
        read_only: false,
    };
    if let Some(host) = &volume.host_path {
        return host_path(&host.path, host.type_.as_deref()).map(|p| (writable(p), Vec::new()));
    }
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let fs_group = security::fs_group(pod);
    if let Some(claim) = &volume.persistent_volume_claim {
        // The claim's bound volume: it outlives the pod, and its node affinity brings a
        // re-created pod back to this node and its data.
        let bound = local_path::bound_volume(client, &namespace, &claim.claim_name).await?;
        // `dir` is <state dir>/pods/<uid>/volumes/<name>.
        let state_dir = dir.ancestors().nth(4).unwrap_or(dir);
        let path = local_path::host_dir(&bound, &local_path::root(state_dir), fs_group)?;
        let read_only = claim.read_only.unwrap_or(false);
        return Ok((PreparedVolume { path, read_only }, Vec::new()));
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    if let Some(empty) = &volume.empty_dir {
        local::empty_dir(empty, pod, dir, fs_group)?;
        return Ok((writable(dir.to_path_buf()), Vec::new()));
    }
    let ownership = Ownership {
        fs_group,
        read_only: true,
    };
    let mut files = Payload::new();
    let mut issued = Vec::new();
    if let Some(source) = &volume.config_map {
        let data = sources::config_map(client, &namespace, &source.name, source.optional).await?;
        let mode = source.default_mode.map_or(0o644, payload::mode_bits);
        sources::project(
            &data,
            source.items.as_deref(),
            mode,
            &mut files,
            &source.name,
            "configmap",
        )?;
    } else if let Some(source) = &volume.secret {
        let secret_name = source.secret_name.clone().unwrap_or_default();
        let data = sources::secret(client, &namespace, &secret_name, source.optional).await?;
        let mode = source.default_mode.map_or(0o644, payload::mode_bits);
        sources::project(
            &data,
            source.items.as_deref(),
            mode,
            &mut files,
            &secret_name,
            "secret",
        )?;
    } else if let Some(source) = &volume.downward_api {
        let mode = source.default_mode.map_or(0o644, payload::mode_bits);
        sources::downward(
            pod,
            source.items.as_deref().unwrap_or_default(),
            mode,
            &mut files,
        );
    } else if let Some(projected) = &volume.projected {
        let fs_user = security::fs_user(pod);
        (files, issued) =
            sources::projected(client, tokens, pod, projected, ownership, fs_user).await?;
    } else {
        return Err("this volume type is not supported by skiff-agent".to_owned());
    }
    let files = payload::checked(files)?;
    payload::write(dir, &files, ownership)?;
    let token_files = issued
        .into_iter()
        .map(|t| TokenFile {
            volume: volume.name.clone(),
            dir: dir.to_path_buf(),
            uid: files.get(&t.path).and_then(|f| f.uid),
            path: t.path,
            mode: t.mode,
            ownership,
            projection: t.projection,
            issued: t.issued,
        })
        .collect();
    Ok((
        PreparedVolume {
            path: dir.to_path_buf(),
            read_only: true,
        },
        token_files,
    ))
}

/// A hostPath volume after kubelet's type checks (and creation, for the `OrCreate` types).
pub(super) fn host_path(path: &str, type_: Option<&str>) -> Result<PathBuf, String> {
    let host = PathBuf::from(path);
    match type_.unwrap_or("") {
        "DirectoryOrCreate" => {
            std::fs::create_dir_all(&host).map_err(|e| format!("hostPath {path}: {e}"))?;
        }
        "FileOrCreate" if !host.exists() => {
            std::fs::write(&host, b"").map_err(|e| format!("hostPath {path}: {e}"))?;
        }
        "Directory" if !host.is_dir() => {
            return Err(format!(
                "hostPath type check failed: {path} is not a directory"
            ));
        }
        "File" if !host.is_file() => {
            return Err(format!("hostPath type check failed: {path} is not a file"));
        }
        _ => {}
    }
    Ok(host)
}

/// The bind mounts a container gets from its volumeMounts; subPaths are bound safely
/// under `pod_dir` first (see [`subpath`]). A `subPathExpr` is expanded from `env`, the
/// container's environment as kubelet resolved it (see
/// [`super::env::expand_sub_path`]), then checked and bound like a subPath.
pub fn mounts_for(
    container: &Container,
    prepared: &Prepared,
    pod_dir: &Path,
    env: &BTreeMap<String, String>,
) -> Result<Vec<BindMount>, VolumeError> {
    let mut mounts = Vec::new();
    for (index, mount) in container
        .volume_mounts
        .as_deref()
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        let volume = prepared.volumes.get(&mount.name).ok_or_else(|| {
            VolumeError(format!(
                "volumeMount \"{}\" of container \"{}\" names no volume of the pod",
                mount.name, container.name
            ))
        })?;
        let expanded = match mount.sub_path_expr.as_deref().filter(|e| !e.is_empty()) {
            Some(expr) => Some(super::env::expand_sub_path(expr, env).map_err(VolumeError)?),
            None => mount.sub_path.clone(),
        };
        let source = match expanded.as_deref().filter(|s| !s.is_empty()) {
            Some(sub) => {
                subpath::validate(sub).map_err(VolumeError)?;
                check_single_name("container", &container.name).map_err(VolumeError)?;
                let opened = subpath::open(&volume.path, sub).map_err(VolumeError)?;
                let target = subpath::target(pod_dir, &mount.name, &container.name, index);
                subpath::bind(&opened, &target).map_err(VolumeError)?;
                target
            }
            None => volume.path.clone(),
        };
        mounts.push(BindMount {
            source,
            destination: mount.mount_path.clone(),
            read_only: mount.read_only.unwrap_or(false) || volume.read_only,
        });
    }
    Ok(mounts)
}

/// Unmount what the pod's volumes mounted on the node (memory-backed emptyDirs, subPath
/// binds) before its directory is removed; true if nothing is left mounted.
pub fn unmount_all(pod_dir: &Path) -> bool {
    let clear = subpath::unmount_all(pod_dir);
    if let Ok(entries) = std::fs::read_dir(pod_dir.join("volumes")) {
        for entry in entries.flatten() {
            let path = entry.path();
            if local::is_tmpfs(&path) {
                let _ = nix::mount::umount2(&path, nix::mount::MntFlags::MNT_DETACH);
            }
        }
    }
    clear
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(json: serde_json::Value) -> Container {
        serde_json::from_value(json).expect("container")
    }

    #[test]
    fn names_used_as_directories_are_single_names() {
        for bad in ["", ".", "..", "a/b", "../x"] {
            assert!(check_single_name("volume", bad).is_err(), "{bad:?}");
        }
        assert_eq!(check_single_name("volume", "kube-api-access-x"), Ok(()));
    }

    #[test]
    fn read_only_volume_types_are_mounted_read_only() {
        let prepared = Prepared {
            volumes: HashMap::from([
                (
                    "cfg".to_owned(),
                    PreparedVolume {
                        path: "/v/cfg".into(),
                        read_only: true,
                    },
                ),
                (
                    "data".to_owned(),
                    PreparedVolume {
                        path: "/v/data".into(),
                        read_only: false,
                    },
                ),
            ]),
            tokens: Vec::new(),
        };
        let c = container(serde_json::json!({
            "name": "app",
            "volumeMounts": [
                {"name": "cfg", "mountPath": "/etc/cfg", "readOnly": false},
                {"name": "data", "mountPath": "/data"},
                {"name": "data", "mountPath": "/ro", "readOnly": true},
            ]
        }));
        let mounts =
            mounts_for(&c, &prepared, Path::new("/pod"), &BTreeMap::new()).expect("mounts");
        let ro: Vec<bool> = mounts.iter().map(|m| m.read_only).collect();
        assert_eq!(ro, [true, false, true]);
    }

    #[test]
    fn an_escaping_sub_path_is_refused_before_anything_is_mounted() {
        let prepared = Prepared {
            volumes: HashMap::from([(
                "data".to_owned(),
                PreparedVolume {
                    path: "/nonexistent-volume".into(),
                    read_only: false,
                },
            )]),
            tokens: Vec::new(),
        };
        for (sub, message) in [
            ("/etc", "error SubPath `/etc` must not be an absolute path"),
            (
                "../../etc",
                "unable to provision SubPath `../../etc`: must not contain '..'",
            ),
        ] {
            let c = container(serde_json::json!({
                "name": "app",
                "volumeMounts": [{"name": "data", "mountPath": "/x", "subPath": sub}]
            }));
            let err =
                mounts_for(&c, &prepared, Path::new("/pod"), &BTreeMap::new()).expect_err(sub);
            assert_eq!(err.0, message);
        }
    }

    #[test]
    fn sub_path_expressions_are_expanded_checked_and_bound_like_sub_paths() {
        let prepared = Prepared {
            volumes: HashMap::from([(
                "data".to_owned(),
                PreparedVolume {
                    path: "/nonexistent-volume".into(),
                    read_only: false,
                },
            )]),
            tokens: Vec::new(),
        };
        let mount = |expr: &str| {
            container(serde_json::json!({
                "name": "app",
                "volumeMounts": [{"name": "data", "mountPath": "/x", "subPathExpr": expr}]
            }))
        };
        let env = BTreeMap::from([
            ("UP".to_owned(), "..".to_owned()),
            ("ROOT".to_owned(), "/etc".to_owned()),
            ("POD".to_owned(), "web-0".to_owned()),
        ]);
        let err = |expr: &str| {
            mounts_for(&mount(expr), &prepared, Path::new("/pod"), &env)
                .expect_err(expr)
                .0
        };
        // The whole volume is not mounted instead: an unresolved expression is refused.
        assert_eq!(err("logs/$(POD_NAME)"), "missing value for POD_NAME");
        // What it expands to is checked as a subPath is.
        assert_eq!(
            err("$(ROOT)"),
            "error SubPath `/etc` must not be an absolute path"
        );
        assert_eq!(
            err("$(UP)/$(UP)/etc"),
            "unable to provision SubPath `../../etc`: must not contain '..'"
        );
        // A good expression reaches the volume (absent here, so opening it fails there).
        let opened = err("logs/$(POD)");
        assert!(opened.contains("/nonexistent-volume"), "{opened}");
    }

    #[test]
    fn host_path_type_checks_are_worded_as_kubelets() {
        assert_eq!(
            host_path("/nonexistent-skiff-dir", Some("Directory")),
            Err("hostPath type check failed: /nonexistent-skiff-dir is not a directory".into())
        );
        assert_eq!(
            host_path("/nonexistent-skiff-dir", None),
            Ok(PathBuf::from("/nonexistent-skiff-dir"))
        );
    }
}
