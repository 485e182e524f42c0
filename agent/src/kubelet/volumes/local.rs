//! emptyDir volumes: a directory of the pod's, or tmpfs for medium Memory.
//!
//! A memory-backed emptyDir is sized as kubelet sizes it (`calculateEmptyDirMemorySize` in
//! `pkg/volume/emptydir`): the node's allocatable memory, lowered to the pod's memory limit
//! when every container declares one, lowered again to the volume's `sizeLimit` when that is
//! positive and smaller; a `sizeLimit` of 0 is ignored, never passed on as tmpfs `size=0`
//! (which means unlimited). It is mounted nosuid and nodev.

use std::path::Path;

use k8s_openapi::{
    api::core::v1::{Container, EmptyDirVolumeSource, Pod},
    apimachinery::pkg::api::resource::Quantity,
};
use nix::mount::MsFlags;

use super::payload::{self, Ownership};

/// Mode of an emptyDir (kubelet's).
const WORLD_WRITABLE: u32 = 0o777;

/// The memory limit of a container, if it declares a positive one.
fn memory_limit(container: &Container) -> Option<u64> {
    let quantity = container
        .resources
        .as_ref()?
        .limits
        .as_ref()?
        .get("memory")?;
    skiff_quantity::bytes(&quantity.0)
        .and_then(|b| u64::try_from(b).ok())
        .filter(|b| *b > 0)
}

/// The pod's memory limit as kubelet's `ResourceConfigForPod` computes it for the pod
/// cgroup: only if every container (init containers included) declares one, the larger
/// of the app containers' sum (with sidecars) and the largest init container (with the
/// sidecars started before it), plus the pod's memory overhead.
pub fn pod_memory_limit(pod: &Pod) -> Option<u64> {
    let spec = pod.spec.as_ref()?;
    let mut apps: u64 = 0;
    for container in &spec.containers {
        apps = apps.saturating_add(memory_limit(container)?);
    }
    let mut sidecars: u64 = 0;
    let mut init_peak: u64 = 0;
    for container in spec.init_containers.iter().flatten() {
        let limit = memory_limit(container)?;
        if container.restart_policy.as_deref() == Some("Always") {
            apps = apps.saturating_add(limit);
            sidecars = sidecars.saturating_add(limit);
            init_peak = init_peak.max(sidecars);
        } else {
            init_peak = init_peak.max(limit.saturating_add(sidecars));
        }
    }
    let overhead = spec
        .overhead
        .as_ref()
        .and_then(|o| o.get("memory"))
        .and_then(|q| skiff_quantity::bytes(&q.0))
        .and_then(|b| u64::try_from(b).ok())
        .unwrap_or(0);
    Some(apps.max(init_peak).saturating_add(overhead))
}

/// kubelet's `calculateEmptyDirMemorySize`: the tmpfs size of a memory-backed emptyDir
/// (`None`: the node's memory is unknown and nothing else bounds it).
pub fn memory_volume_size(
    node_memory: Option<u64>,
    pod: &Pod,
    size_limit: Option<&Quantity>,
) -> Option<u64> {
    let fits = |value: u64, size: Option<u64>| value > 0 && size.is_none_or(|s| value <= s);
    let mut size = node_memory;
    if let Some(pod_limit) = pod_memory_limit(pod)
        && fits(pod_limit, size)
    {
        size = Some(pod_limit);
    }
    let volume_limit = size_limit
        .and_then(|q| skiff_quantity::bytes(&q.0))
        .and_then(|b| u64::try_from(b).ok());
    if let Some(limit) = volume_limit
        && fits(limit, size)
    {
        size = Some(limit);
    }
    size
}

/// The node's memory (`MemTotal`), which the node reports as allocatable.
fn node_memory() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kib: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    kib.checked_mul(1024)
}

/// The flags and data of a memory-backed emptyDir's tmpfs mount.
pub fn tmpfs_options(size: Option<u64>) -> (MsFlags, Option<String>) {
    (
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        size.map(|bytes| format!("size={bytes}")),
    )
}

/// Whether `dir` is a tmpfs mount point (or inside one).
pub(super) fn is_tmpfs(dir: &Path) -> bool {
    nix::sys::statfs::statfs(dir)
        .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::TMPFS_MAGIC)
}

/// Set up the emptyDir `source` of `pod` at `dir` (which exists): tmpfs for medium Memory
/// (unless already mounted, by an earlier agent), then kubelet's world-writable root with
/// the fsGroup's bits.
pub fn empty_dir(
    source: &EmptyDirVolumeSource,
    pod: &Pod,
    dir: &Path,
    fs_group: Option<u32>,
) -> Result<(), String> {
    if source.medium.as_deref() == Some("Memory") && !is_tmpfs(dir) {
        let size = memory_volume_size(node_memory(), pod, source.size_limit.as_ref());
        let (flags, data) = tmpfs_options(size);
        nix::mount::mount(Some("tmpfs"), dir, Some("tmpfs"), flags, data.as_deref())
            .map_err(|e| format!("mounting tmpfs: {e}"))?;
    }
    let ownership = Ownership {
        fs_group,
        read_only: false,
    };
    payload::prepare_root(dir, WORLD_WRITABLE, ownership)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const MI: u64 = 1 << 20;

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": spec})).expect("pod")
    }

    fn limited(name: &str, memory: &str) -> serde_json::Value {
        json!({"name": name, "resources": {"limits": {"memory": memory}}})
    }

    fn quantity(text: &str) -> Quantity {
        Quantity(text.to_owned())
    }

    #[test]
    fn the_pods_memory_limit_is_kubelets() {
        let p = pod(json!({"containers": [limited("a", "64Mi"), limited("b", "32Mi")]}));
        assert_eq!(pod_memory_limit(&p), Some(96 * MI));
        let unbounded = pod(json!({"containers": [limited("a", "64Mi"), {"name": "b"}]}));
        assert_eq!(pod_memory_limit(&unbounded), None);
        let init_unbounded = pod(json!({
            "initContainers": [{"name": "i"}],
            "containers": [limited("a", "64Mi")],
        }));
        assert_eq!(pod_memory_limit(&init_unbounded), None);
        let big_init = pod(json!({
            "initContainers": [limited("i", "256Mi")],
            "containers": [limited("a", "64Mi")],
            "overhead": {"memory": "10Mi"},
        }));
        assert_eq!(pod_memory_limit(&big_init), Some(266 * MI));
        let sidecar = pod(json!({
            "initContainers": [
                {"name": "s", "restartPolicy": "Always", "resources": {"limits": {"memory": "16Mi"}}},
                limited("i", "100Mi"),
            ],
            "containers": [limited("a", "64Mi")],
        }));
        assert_eq!(pod_memory_limit(&sidecar), Some(116 * MI));
    }

    #[test]
    fn memory_volumes_are_sized_as_kubelet_sizes_them() {
        let node = Some(8192 * MI);
        let best_effort = pod(json!({"containers": [{"name": "a"}]}));
        let limited_pod = pod(json!({"containers": [limited("a", "256Mi")]}));
        // Without a sizeLimit: the node's memory, or the pod's limit (not half the RAM).
        assert_eq!(memory_volume_size(node, &best_effort, None), node);
        assert_eq!(memory_volume_size(node, &limited_pod, None), Some(256 * MI));
        // sizeLimit 0 is no limit at all, never tmpfs size=0.
        assert_eq!(
            memory_volume_size(node, &limited_pod, Some(&quantity("0"))),
            Some(256 * MI)
        );
        assert_eq!(
            memory_volume_size(node, &best_effort, Some(&quantity("0"))),
            node
        );
        // A smaller sizeLimit wins; a larger one does not.
        assert_eq!(
            memory_volume_size(node, &limited_pod, Some(&quantity("64Mi"))),
            Some(64 * MI)
        );
        assert_eq!(
            memory_volume_size(node, &limited_pod, Some(&quantity("1Gi"))),
            Some(256 * MI)
        );
        assert_eq!(
            memory_volume_size(None, &best_effort, Some(&quantity("1Gi"))),
            Some(1024 * MI)
        );
        assert_eq!(memory_volume_size(None, &best_effort, None), None);
        let (flags, data) = tmpfs_options(Some(64 * MI));
        assert!(flags.contains(MsFlags::MS_NOSUID | MsFlags::MS_NODEV));
        assert_eq!(data.as_deref(), Some("size=67108864"));
        assert_eq!(tmpfs_options(None).1, None);
    }
}
