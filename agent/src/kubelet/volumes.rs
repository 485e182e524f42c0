//! Pod volumes made real on the node: emptyDir (a directory, or tmpfs for medium Memory),
//! hostPath, configMap, secret, downwardAPI and projected (files written from the API),
//! persistentVolumeClaim (a node-local directory per claim), and the bind mounts each
//! container gets from its volumeMounts.

use std::{
    collections::{BTreeMap, HashMap},
    path::{Path, PathBuf},
};

use k8s_openapi::api::core::v1::{
    ConfigMap, Container, DownwardAPIVolumeFile, KeyToPath, Pod, Secret, Volume,
};
use kube::{Api, Client};

use crate::runtime::spec::BindMount;

/// Why a volume could not be set up (reported as the pod's FailedMount reason).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct VolumeError(pub String);

/// The host directory of each volume by name.
pub type Prepared = HashMap<String, PathBuf>;

/// Create every volume of `pod` under `pod_dir/volumes`.
pub async fn prepare(client: &Client, pod: &Pod, pod_dir: &Path) -> Result<Prepared, VolumeError> {
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let mut prepared = HashMap::new();
    let volumes = pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.clone())
        .unwrap_or_default();
    for volume in &volumes {
        let dir = pod_dir.join("volumes").join(&volume.name);
        let path = prepare_one(client, pod, &namespace, volume, &dir).await?;
        prepared.insert(volume.name.clone(), path);
    }
    Ok(prepared)
}

fn io_error(what: String) -> impl FnOnce(std::io::Error) -> VolumeError {
    move |e| VolumeError(format!("{what}: {e}"))
}

async fn prepare_one(
    client: &Client,
    pod: &Pod,
    namespace: &str,
    volume: &Volume,
    dir: &Path,
) -> Result<PathBuf, VolumeError> {
    let name = &volume.name;
    if let Some(host) = &volume.host_path {
        let path = PathBuf::from(&host.path);
        match host.type_.as_deref().unwrap_or("") {
            "DirectoryOrCreate" => std::fs::create_dir_all(&path)
                .map_err(io_error(format!("hostPath {}", host.path)))?,
            "FileOrCreate" if !path.exists() => {
                std::fs::write(&path, b"").map_err(io_error(format!("hostPath {}", host.path)))?;
            }
            "Directory" if !path.is_dir() => {
                return Err(VolumeError(format!(
                    "MountVolume.SetUp failed for volume \"{name}\" : hostPath type check failed: {} is not a directory",
                    host.path
                )));
            }
            "File" if !path.is_file() => {
                return Err(VolumeError(format!(
                    "MountVolume.SetUp failed for volume \"{name}\" : hostPath type check failed: {} is not a file",
                    host.path
                )));
            }
            _ => {}
        }
        return Ok(path);
    }
    if let Some(claim) = &volume.persistent_volume_claim {
        // A node-local volume per claim (the lab's local-path storage): it outlives the
        // pod, so a StatefulSet pod recreated on this node finds its data again.
        let state_dir = dir.ancestors().nth(4).unwrap_or(dir);
        let path = state_dir
            .join("claims")
            .join(format!("{namespace}_{}", claim.claim_name));
        std::fs::create_dir_all(&path).map_err(io_error(format!("claim {}", claim.claim_name)))?;
        return Ok(path);
    }
    std::fs::create_dir_all(dir).map_err(io_error(format!("volume {name}")))?;
    if let Some(empty) = &volume.empty_dir {
        if empty.medium.as_deref() == Some("Memory") && !is_tmpfs(dir) {
            let size = empty
                .size_limit
                .as_ref()
                .and_then(|q| skiff_quantity::bytes(&q.0))
                .map(|b| format!("size={b}"));
            nix::mount::mount(
                Some("tmpfs"),
                dir,
                Some("tmpfs"),
                nix::mount::MsFlags::empty(),
                size.as_deref(),
            )
            .map_err(|e| VolumeError(format!("mounting tmpfs for emptyDir {name}: {e}")))?;
        }
        return Ok(dir.to_path_buf());
    }
    let mut files: BTreeMap<String, (Vec<u8>, i32)> = BTreeMap::new();
    if let Some(source) = &volume.config_map {
        let data = config_map(client, namespace, &source.name, source.optional).await?;
        project(
            &data,
            source.items.as_deref(),
            source.default_mode.unwrap_or(0o644),
            &mut files,
            name,
            &source.name,
            "configmap",
        )?;
    } else if let Some(source) = &volume.secret {
        let secret_name = source.secret_name.clone().unwrap_or_default();
        let data = secret(client, namespace, &secret_name, source.optional).await?;
        project(
            &data,
            source.items.as_deref(),
            source.default_mode.unwrap_or(0o644),
            &mut files,
            name,
            &secret_name,
            "secret",
        )?;
    } else if let Some(source) = &volume.downward_api {
        downward(
            pod,
            source.items.as_deref().unwrap_or_default(),
            source.default_mode.unwrap_or(0o644),
            &mut files,
        );
    } else if let Some(projected) = &volume.projected {
        let mode = projected.default_mode.unwrap_or(0o644);
        for source in projected.sources.as_deref().unwrap_or_default() {
            if let Some(cm) = &source.config_map {
                let data = config_map(client, namespace, &cm.name, cm.optional).await?;
                project(
                    &data,
                    cm.items.as_deref(),
                    mode,
                    &mut files,
                    name,
                    &cm.name,
                    "configmap",
                )?;
            }
            if let Some(s) = &source.secret {
                let data = secret(client, namespace, &s.name, s.optional).await?;
                project(
                    &data,
                    s.items.as_deref(),
                    mode,
                    &mut files,
                    name,
                    &s.name,
                    "secret",
                )?;
            }
            if let Some(d) = &source.downward_api {
                downward(
                    pod,
                    d.items.as_deref().unwrap_or_default(),
                    mode,
                    &mut files,
                );
            }
        }
    } else {
        return Err(VolumeError(format!(
            "volume \"{name}\": this volume type is not supported by skiff-agent"
        )));
    }
    write_files(dir, &files).map_err(io_error(format!("writing volume {name}")))?;
    Ok(dir.to_path_buf())
}

fn is_tmpfs(dir: &Path) -> bool {
    nix::sys::statfs::statfs(dir)
        .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::TMPFS_MAGIC)
}

async fn config_map(
    client: &Client,
    namespace: &str,
    name: &str,
    optional: Option<bool>,
) -> Result<BTreeMap<String, Vec<u8>>, VolumeError> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    match api.get_opt(name).await {
        Ok(Some(cm)) => {
            let mut data: BTreeMap<String, Vec<u8>> = cm
                .data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.into_bytes()))
                .collect();
            for (k, v) in cm.binary_data.unwrap_or_default() {
                data.insert(k, v.0);
            }
            Ok(data)
        }
        Ok(None) if optional == Some(true) => Ok(BTreeMap::new()),
        Ok(None) => Err(VolumeError(format!("configmap \"{name}\" not found"))),
        Err(e) => Err(VolumeError(format!("reading configmap \"{name}\": {e}"))),
    }
}

async fn secret(
    client: &Client,
    namespace: &str,
    name: &str,
    optional: Option<bool>,
) -> Result<BTreeMap<String, Vec<u8>>, VolumeError> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    match api.get_opt(name).await {
        Ok(Some(s)) => {
            let mut data: BTreeMap<String, Vec<u8>> = s
                .data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.0))
                .collect();
            for (k, v) in s.string_data.unwrap_or_default() {
                data.insert(k, v.into_bytes());
            }
            Ok(data)
        }
        Ok(None) if optional == Some(true) => Ok(BTreeMap::new()),
        Ok(None) => Err(VolumeError(format!("secret \"{name}\" not found"))),
        Err(e) => Err(VolumeError(format!("reading secret \"{name}\": {e}"))),
    }
}

/// Keys to files (all keys, or the listed items with their paths and modes).
fn project(
    data: &BTreeMap<String, Vec<u8>>,
    items: Option<&[KeyToPath]>,
    mode: i32,
    files: &mut BTreeMap<String, (Vec<u8>, i32)>,
    volume: &str,
    source: &str,
    kind: &str,
) -> Result<(), VolumeError> {
    match items {
        None => {
            for (key, value) in data {
                files.insert(key.clone(), (value.clone(), mode));
            }
        }
        Some(items) => {
            for item in items {
                let value = data.get(&item.key).ok_or_else(|| {
                    VolumeError(format!(
                        "MountVolume.SetUp failed for volume \"{volume}\" : {kind} \"{source}\" has no key \"{}\"",
                        item.key
                    ))
                })?;
                files.insert(
                    item.path.clone(),
                    (value.clone(), item.mode.unwrap_or(mode)),
                );
            }
        }
    }
    Ok(())
}

fn downward(
    pod: &Pod,
    items: &[DownwardAPIVolumeFile],
    mode: i32,
    files: &mut BTreeMap<String, (Vec<u8>, i32)>,
) {
    for item in items {
        if let Some(field) = &item.field_ref {
            let value = super::env::field_value(pod, &field.field_path).unwrap_or_default();
            files.insert(
                item.path.clone(),
                (value.into_bytes(), item.mode.unwrap_or(mode)),
            );
        }
    }
}

fn write_files(dir: &Path, files: &BTreeMap<String, (Vec<u8>, i32)>) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    for (relative, (data, mode)) in files {
        if relative.split('/').any(|part| part == "..") {
            continue;
        }
        let path = dir.join(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, data)?;
        std::fs::set_permissions(
            &path,
            std::fs::Permissions::from_mode(u32::try_from(*mode).unwrap_or(0o644)),
        )?;
    }
    Ok(())
}

/// The bind mounts a container gets from its volumeMounts.
pub fn mounts_for(
    container: &Container,
    prepared: &Prepared,
) -> Result<Vec<BindMount>, VolumeError> {
    let mut mounts = Vec::new();
    for mount in container.volume_mounts.as_deref().unwrap_or_default() {
        let base = prepared.get(&mount.name).ok_or_else(|| {
            VolumeError(format!(
                "volumeMount \"{}\" of container \"{}\" names no volume of the pod",
                mount.name, container.name
            ))
        })?;
        let source = match mount.sub_path.as_deref().filter(|s| !s.is_empty()) {
            Some(sub) if sub.split('/').any(|p| p == "..") => {
                return Err(VolumeError(format!(
                    "subPath {sub:?} must not contain '..'"
                )));
            }
            Some(sub) => {
                let path = base.join(sub);
                if !path.exists() {
                    std::fs::create_dir_all(&path).map_err(io_error(format!("subPath {sub}")))?;
                }
                path
            }
            None => base.clone(),
        };
        mounts.push(BindMount {
            source,
            destination: mount.mount_path.clone(),
            read_only: mount.read_only.unwrap_or(false),
        });
    }
    Ok(mounts)
}

/// Unmount memory-backed emptyDirs of a pod before its directory is removed.
pub fn unmount_all(pod_dir: &Path) {
    let Ok(entries) = std::fs::read_dir(pod_dir.join("volumes")) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if is_tmpfs(&path) {
            let _ = nix::mount::umount2(&path, nix::mount::MntFlags::MNT_DETACH);
        }
    }
}
